"""Export benchmark: whole results downloaded through the API versus DuckDB's own COPY … TO,
per format, and the backend's memory while it streams them.

    python bench/export.py [--rows 5000000] [--runs 2] [--frontend] [--export-threads N]
                           [--compare-threads N] [--compare-tree DIR] [--json PATH]

The data (5M rows of ids, text, numbers, timestamps and booleans) is generated with DuckDB into
bench/.work/export/ (git-ignored, reused on later runs) as a Parquet file, uploaded through the
API into a fresh workspace as dataset `events`, and as a DuckDB database for DuckDB alone:
`COPY (SELECT * FROM events) TO file` in this process, taking turns with the API run by run.
Through the API: a real `myapp serve --role backend` subprocess on a free loopback port, `GET
/api/query/export` downloaded by curl into /dev/null (a Python client would take a core of its
own); the time runs from sending the request to the last byte, and the time to the first byte
is printed too (a big export begins downloading while DuckDB still writes it). With
--frontend, the same through the frontend role's /sql/export, which streams the backend's
download on to the browser.

The fixed cost of an export is measured apart: a one-row export through the API (httpx on a
kept-alive connection, median of FIXED_RUNS) minus DuckDB's COPY of the same row to a file.
--export-threads sets MYAPP_EXPORT_WORKER_THREADS (DuckDB threads of an export worker, 1 by
default so exports leave the other core to pages and queries; DuckDB alone uses every core).
--compare-threads N starts a second backend whose export workers have N DuckDB threads and
downloads from it in the same turns (DuckDB alone, the first backend, the second), so both
thread counts see the same load. --compare-tree DIR runs that second backend from another
checkout (its PYTHONPATH), e.g. main before a change, in the same turns.

Targets: the API reaches at least 0.7x DuckDB's rows/s in every format; the backend worker's
resident memory (VmRSS from /proc/<pid>/status, sampled every 20 ms) stays flat while it
streams, under 300 MB above idle. Numbers depend on the machine and its load: the load average
is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import duckdb
import httpx
from common import free_port, rss_mb, worker_pid

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work" / "export"
FORMATS = {
    "csv": "FORMAT csv, HEADER true",
    "tsv": "FORMAT csv, HEADER true, DELIMITER '\t'",
    "parquet": "FORMAT parquet, COMPRESSION zstd",
    "json": "FORMAT json, ARRAY true",
    "ndjson": "FORMAT json",
}
RSS_SAMPLE_S = 0.02
FIXED_RUNS = 15
FIXED_SQL = "SELECT * FROM events WHERE id = 42"
THROUGHPUT_TARGET = 0.7
MEMORY_TARGET_MB = 300


def make_data(rows: int) -> tuple[Path, Path]:
    """The rows as a Parquet file (what is uploaded) and as a DuckDB database (for DuckDB
    alone), both made once and reused."""
    parquet = WORK / f"events-{rows}.parquet"
    local = WORK / f"in-process-{rows}.db"
    if parquet.exists() and local.exists():
        return parquet, local
    print(f"generating {rows:,} rows …", flush=True)
    local.unlink(missing_ok=True)
    with duckdb.connect(str(local)) as conn:
        conn.execute(
            f"""CREATE TABLE events AS
            SELECT i AS id,
                   'customer_' || (i % 100000) AS customer,
                   round((i * 7919 % 100000) / 100.0, 2)::DOUBLE AS amount,
                   TIMESTAMP '2024-01-01' + to_seconds(i) AS at,
                   i % 3 = 0 AS flagged
            FROM range({int(rows)}) t(i)"""
        )
        conn.execute(f"COPY events TO '{parquet}' (FORMAT parquet)")
    return parquet, local


def upload(api: str, parquet: Path) -> None:
    """The rows become a dataset the way users make one: uploaded through the API."""
    with parquet.open("rb") as body:
        answer = httpx.put(
            api + "/api/datasets/events",
            params={"format": "parquet", "mode": "replace"},
            content=body,
            timeout=600,
        )
    answer.raise_for_status()


def copy_once(conn: duckdb.DuckDBPyConnection, fmt: str, out_dir: Path) -> float:
    """Seconds DuckDB itself takes to COPY the table to a file in this format."""
    target = out_dir / f"alone.{fmt}"
    started = time.perf_counter()
    conn.execute(f"COPY (SELECT * FROM events) TO '{target}' ({FORMATS[fmt]})")
    seconds = time.perf_counter() - started
    target.unlink()
    return seconds


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(RSS_SAMPLE_S)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start(
    role: str, data_dir: Path, log: Path, env: dict[str, str]
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")}
    full_env.update({"MYAPP_DATA_DIR": str(data_dir), "MYAPP_LOG_LEVEL": "warning", **env})
    proc = subprocess.Popen(
        [sys.executable, "-m", "myapp", "serve", "--role", role, "--port", str(port)],
        env=full_env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=WORK,
    )
    url = f"http://127.0.0.1:{port}"
    health = "/healthz" if role == "frontend" else "/api/health"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + health, timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{role} exited: {log.read_text()}")
        time.sleep(0.2)
    raise RuntimeError(f"{role} did not start")


def download(
    client: httpx.Client, method: str, url: str, **kwargs: object
) -> tuple[float, int, float]:
    """Seconds from sending the request to the last byte, the bytes received, and seconds to
    the first byte of the body (when the download began).

    curl does the downloading when it is installed, as a user's browser or script would: a
    Python client reading hundreds of MB takes a core of its own on a 2-core machine (measured:
    a 275 MB CSV took 2.5-3.0 s through httpx, 1.6-1.75 s through curl, from the same backend).
    """
    curl = shutil.which("curl")
    if curl is None:
        return _download_httpx(client, method, url, **kwargs)
    params = kwargs.get("params") or {}
    data = kwargs.get("data") or {}
    headers = kwargs.get("headers") or {}
    written = "%{http_code} %{size_download} %{time_starttransfer}"
    command = [curl, "-sS", "-o", "/dev/null", "-w", written]
    target = url
    if params:
        target += "?" + urlencode(params)  # type: ignore[arg-type]
    for name, value in headers.items():  # type: ignore[union-attr]
        command += ["-H", f"{name}: {value}"]
    for name, value in data.items():  # type: ignore[union-attr]
        command += ["--data-urlencode", f"{name}={value}"]
    command += ["-X", method, target]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    status, size, first = [*result.stdout.split(), "0", "0", "0"][:3]
    if status != "200":
        raise RuntimeError(f"{url}: {status} {result.stderr[:300]}")
    return seconds, int(size), float(first)


def _download_httpx(
    client: httpx.Client, method: str, url: str, **kwargs: object
) -> tuple[float, int, float]:
    started = time.perf_counter()
    size, first = 0, 0.0
    with client.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.read()[:300]!r}")
        for chunk in response.iter_raw(1024 * 1024):
            if not size:
                first = time.perf_counter() - started
            size += len(chunk)
    return time.perf_counter() - started, size, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=2, help="best of this many runs")
    parser.add_argument("--frontend", action="store_true", help="also through /sql/export")
    parser.add_argument(
        "--memory-limit", help="the backend's MYAPP_MEMORY_LIMIT (default: the server default)"
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--export-threads", type=int, help="MYAPP_EXPORT_WORKER_THREADS")
    parser.add_argument(
        "--compare-threads",
        type=int,
        help="also a backend with this MYAPP_EXPORT_WORKER_THREADS, measured in the same turns",
    )
    parser.add_argument(
        "--compare-tree",
        type=Path,
        help="also a backend run from this checkout (PYTHONPATH), measured in the same turns",
    )
    parser.add_argument(
        "--formats", default=",".join(FORMATS), help="comma-separated (default: all five)"
    )
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        parser.error(f"unknown formats: {', '.join(unknown)}")

    WORK.mkdir(parents=True, exist_ok=True)
    parquet, local_db = make_data(args.rows)
    # A fresh workspace each time; DuckDB in this process reads the same rows from a database
    # of its own, taking turns with the API run by run, so both see the same load.
    data_dir = WORK / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    out_dir = WORK / "out"
    out_dir.mkdir(exist_ok=True)
    local = duckdb.connect(str(local_db), read_only=True)

    backend_env = {"MYAPP_MEMORY_LIMIT": args.memory_limit} if args.memory_limit else {}
    if args.export_threads:
        backend_env["MYAPP_EXPORT_WORKER_THREADS"] = str(args.export_threads)
    backend, api = start("backend", data_dir, WORK / "backend.log", backend_env)
    frontend = other = None
    other_api = None
    try:
        upload(api, parquet)
        if args.compare_threads or args.compare_tree:
            other_dir = WORK / "data-compare"
            shutil.rmtree(other_dir, ignore_errors=True)
            other_env = dict(backend_env)
            if args.compare_threads:
                other_env["MYAPP_EXPORT_WORKER_THREADS"] = str(args.compare_threads)
            if args.compare_tree:
                other_env["PYTHONPATH"] = str(args.compare_tree.resolve())
            other, other_api = start("backend", other_dir, WORK / "backend-compare.log", other_env)
            upload(other_api, parquet)
        worker = worker_pid(backend.pid)
        time.sleep(1)
        idle = rss_mb(worker)
        client = httpx.Client(timeout=600)
        sql = "SELECT * FROM events"
        results = []
        web = None
        if args.frontend:
            frontend, web = start(
                "frontend", WORK / "web", WORK / "frontend.log", {"MYAPP_BACKEND_URL": api}
            )
        fixed: dict[str, float] = {}
        compared: dict[str, list[float]] = {}
        every_run: dict[str, dict[str, list[float]]] = {}

        def other_download(base: str, fmt: str) -> float:
            return download(
                client, "GET", base + "/api/query/export", params={"sql": sql, "format": fmt}
            )[0]

        for fmt in formats:
            tiny_api, tiny_local = [], []
            for run in range(FIXED_RUNS + 1):
                started = time.perf_counter()
                local.execute(f"COPY ({FIXED_SQL}) TO '{out_dir}/tiny.{fmt}' ({FORMATS[fmt]})")
                alone = time.perf_counter() - started
                tiny = {"sql": FIXED_SQL, "format": fmt}
                seconds = _download_httpx(client, "GET", api + "/api/query/export", params=tiny)[0]
                if run:  # the first is a warm-up
                    tiny_local.append(alone)
                    tiny_api.append(seconds)
            fixed[fmt] = statistics.median(tiny_api) - statistics.median(tiny_local)
        for fmt in formats:
            api_times, local_times, first_bytes, peak, size = [], [], [], 0.0, 0
            for run in range(args.runs):
                local_times.append(copy_once(local, fmt, out_dir))
                # The compared backend goes first every other run: neither always follows COPY.
                if other_api is not None and run % 2:
                    compared.setdefault(fmt, []).append(other_download(other_api, fmt))
                with RssSampler(worker) as sampler:
                    seconds, size, first = download(
                        client, "GET", api + "/api/query/export", params={"sql": sql, "format": fmt}
                    )
                api_times.append(seconds)
                first_bytes.append(first)
                peak = max(peak, sampler.peak)
                if other_api is not None and not run % 2:
                    compared.setdefault(fmt, []).append(other_download(other_api, fmt))
            every_run[fmt] = {
                "duckdb_s": local_times,
                "api_s": api_times,
                "compared_api_s": compared.get(fmt, []),
            }
            web_seconds = None
            if web:
                web_seconds = min(
                    download(
                        client,
                        "POST",
                        web + "/sql/export",
                        data={"sql": sql, "format": fmt, "params": "{}"},
                        headers={"Origin": web},
                    )[0]
                    for _ in range(args.runs)
                )
            results.append(
                (
                    fmt,
                    min(local_times),
                    min(api_times),
                    web_seconds,
                    size,
                    peak - idle,
                    min(first_bytes),
                )
            )
        client.close()
        exports_left = list((data_dir / ".exports").iterdir())
    finally:
        local.close()
        for proc in (frontend, other, backend):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)

    rows = args.rows
    print()
    print(
        f"Export of {rows:,} rows (5 columns), best of {args.runs}, MYAPP_MEMORY_LIMIT "
        f"{args.memory_limit or 'default'}; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    header = (
        f"{'format':<8} {'size MB':>8} {'DuckDB COPY':>12} {'API':>12} {'API/DuckDB':>10}"
        f" {'target':>7} {'first byte':>10} {'peak RSS +MB':>12} {'fixed ms':>9}"
    )
    if args.frontend:
        header += f" {'via frontend':>13}"
    if compared:
        label = "compared" if args.compare_tree else f"{args.compare_threads} threads"
        header += f" {label:>12} {'/DuckDB':>8}"
    print(header)
    print("-" * len(header))
    worst_ratio, worst_memory = 1e9, 0.0
    for fmt, t_alone, t_api, t_web, size, memory, first in results:
        ratio = t_alone / t_api
        worst_ratio = min(worst_ratio, ratio)
        worst_memory = max(worst_memory, memory)
        line = (
            f"{fmt:<8} {size / 1e6:>8.1f} {rows / t_alone / 1e6:>9.2f} M/s"
            f" {rows / t_api / 1e6:>8.2f} M/s"
            f" {ratio:>9.2f}x {'ok' if ratio >= THROUGHPUT_TARGET else 'MISS':>7}"
            f" {first:>8.2f} s {memory:>12.1f} {fixed[fmt] * 1000:>9.1f}"
        )
        if t_web is not None:
            line += f" {rows / t_web / 1e6:>9.2f} M/s"
        if fmt in compared:
            t_other = min(compared[fmt])
            line += f" {rows / t_other / 1e6:>8.2f} M/s {t_alone / t_other:>7.2f}x"
        print(line)
    print()
    print(
        f"backend worker idle RSS {idle:.0f} MB; peak above idle {worst_memory:.1f} MB "
        f"(target < {MEMORY_TARGET_MB} MB: {'ok' if worst_memory < MEMORY_TARGET_MB else 'MISS'})"
    )
    print(
        f"slowest format at {worst_ratio:.2f}x DuckDB (target >= {THROUGHPUT_TARGET}x: "
        f"{'ok' if worst_ratio >= THROUGHPUT_TARGET else 'MISS'})"
    )
    print(f"files left in the export directory: {len(exports_left)}")
    print(
        "note: each export runs in a side instance of its own with MYAPP_BULK_MEMORY_LIMIT "
        "(default 256MB), which bounds what DuckDB's ordered COPY holds."
    )
    if args.json:
        figures = {
            "rows": rows,
            "runs": args.runs,
            "memory_limit": args.memory_limit,
            "export_threads": args.export_threads or 1,
            "idle_rss_mb": idle,
            "formats": {
                fmt: {
                    "size_mb": size / 1e6,
                    "duckdb_s": t_alone,
                    "api_s": t_api,
                    "frontend_s": t_web,
                    "ratio": t_alone / t_api,
                    "peak_rss_above_idle_mb": memory,
                    "first_byte_s": first,
                    "fixed_ms": fixed[fmt] * 1000,
                }
                for fmt, t_alone, t_api, t_web, size, memory, first in results
            },
            "target_ratio": THROUGHPUT_TARGET,
            "target_memory_mb": MEMORY_TARGET_MB,
            "files_left": len(exports_left),
            "compare_threads": args.compare_threads,
            "compare_tree": str(args.compare_tree) if args.compare_tree else None,
            "compared_api_s": {fmt: min(times) for fmt, times in compared.items()},
            "every_run": every_run,
            "load": list(os.getloadavg()),
        }
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
