"""Data URL benchmark: how much of a dataset's Parquet file remote readers fetch.

    python bench/data_urls.py [--rows 2000000]

A dataset of ids, a small group number, a timestamp and an incompressible text column (hex of
a hash) is generated with DuckDB into bench/.work/data_urls/ (git-ignored), uploaded to a real
`myapp serve --role backend` on a loopback port, and read from
/api/datasets/events/data.parquet by pyarrow through fsspec's HTTP file system (one column) and
by polars' own reader (one column; one column filtered to a range of ids, so row groups are
skipped). The bytes each read moved are the backend's own count
(`myapp_export_bytes_total{kind="parquet"}` in /api/metrics); the first read of the URL, which
makes the file, is timed separately.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
from common import free_port, wait_ready
from prometheus_client.parser import text_string_to_metric_families

WORK = Path(__file__).parent / ".work" / "data_urls"


def served_bytes(url: str) -> float:
    for family in text_string_to_metric_families(httpx.get(url + "/api/metrics").text):
        for sample in family.samples:
            if sample.name == "myapp_export_bytes_total" and sample.labels == {"kind": "parquet"}:
                return sample.value
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    source = WORK / f"events-{args.rows}.parquet"
    if not source.exists():
        duckdb.sql(
            f"COPY (SELECT i AS id, i % 7 AS grp, TIMESTAMP '2024-01-01' + to_seconds(i) AS at, "
            f"md5(i::VARCHAR) AS token FROM range({args.rows}) t(i)) TO '{source}' (FORMAT parquet)"
        )
    data = WORK / "data"
    subprocess.run(["rm", "-rf", str(data)], check=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = WORK / "backend.log"
    env = {**os.environ, "MYAPP_DATA_DIR": str(data)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "myapp", "serve", "--role", "backend", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_ready(url + "/api/health", proc, log)
        with source.open("rb") as body:
            loaded = httpx.put(url + "/api/datasets/events?format=parquet", content=body,
                               timeout=600)  # fmt: skip
        loaded.raise_for_status()
        data_url = url + "/api/datasets/events/data.parquet"
        started = time.perf_counter()
        size = int(httpx.head(data_url, timeout=600).headers["content-length"])
        made_s = time.perf_counter() - started

        import fsspec
        import polars
        import pyarrow.parquet as pq

        fs = fsspec.filesystem("http", block_size=256 * 1024)
        rows = []

        def measure(label, read):
            before = served_bytes(url)
            started = time.perf_counter()
            n = read()
            seconds = time.perf_counter() - started
            moved = served_bytes(url) - before
            rows.append((label, n, moved, moved / size, seconds))

        def arrow_column():
            with fs.open(data_url, "rb") as handle:
                return pq.read_table(handle, columns=["grp"]).num_rows

        def polars_filtered():
            frame = polars.scan_parquet(data_url).filter(polars.col("id") < 100_000)
            return frame.select("token").collect().height

        def polars_column():
            return polars.scan_parquet(data_url).select("grp").collect().height

        measure("pyarrow+fsspec, column grp", arrow_column)
        measure("polars, column grp", polars_column)
        measure("polars, token where id < 100000", polars_filtered)
    finally:
        proc.terminate()
        proc.wait(60)

    print(f"rows {args.rows:,}; Parquet file {size:,} bytes, made in {made_s:.2f} s on first read")
    print(f"| {'read':<42} | {'rows':>10} | {'bytes served':>13} | {'of file':>7} | {'s':>6} |")
    print(f"|{'-' * 44}|{'-' * 12}|{'-' * 15}|{'-' * 9}|{'-' * 8}|")
    for label, n, moved, share, seconds in rows:
        print(f"| {label:<42} | {n:>10,} | {int(moved):>13,} | {share:>6.1%} | {seconds:>6.2f} |")


if __name__ == "__main__":
    main()
