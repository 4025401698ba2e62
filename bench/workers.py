"""Query workers: what running user SQL in worker processes costs and holds.

    python bench/workers.py [--rows 1000000] [--repeat 30] [--json PATH]

Starts a real backend (`python -m myapp serve --role backend`, whatever code PYTHONPATH gives,
so the same script measures an older tree for comparison), uploads a table of --rows rows as a
Parquet dataset, then prints a table of medians (min-max) over --repeat runs after a warm-up:

- point lookup (`WHERE id = k`), a 1,000-row result and a GROUP BY with 1,000 groups through
  POST /api/query, beside the same SQL in DuckDB in-process on the same rows in a table;
- the time limit answered for `list_sort(range(50M))` with MYAPP_QUERY_TIMEOUT_MS=1000;
- the serving process's RSS before and after that, and the workers' start time, idle address
  space and RSS (what each worker reports when it starts, read from the log at debug level).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx
from common import free_port, rss_mb, wait_ready, worker_pid

WORK = Path(__file__).resolve().parent / ".work" / "workers"


def make_parquet(rows: int) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"t-{rows}.parquet"
    if not path.exists():
        with duckdb.connect() as conn:
            conn.execute(
                f"COPY (SELECT range AS id, range % 1000 AS g, (range * 7919) % 100000 AS v, "
                f"'name ' || range AS s FROM range({rows})) TO '{path}' (FORMAT parquet)"
            )
    return path


def spread(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} ({min(times):.2f}-{max(times):.2f})"


def timed(fn, repeat: int) -> list[float]:
    fn()
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    parquet = make_parquet(args.rows)
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    port = free_port()
    log = tmp / "backend.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")},
        "MYAPP_DATA_DIR": str(tmp / "data"),
        "MYAPP_QUERY_TIMEOUT_MS": "1000",
        "MYAPP_LOG_LEVEL": "debug",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "myapp", "serve", "--role", "backend", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # Not this tree: `-m` puts the working directory first on the path, before
            # PYTHONPATH, and the tree to measure is the one PYTHONPATH names.
            cwd=tmp,
        )
    url = f"http://127.0.0.1:{port}"
    results: dict[str, object] = {}
    try:
        wait_ready(url + "/api/health", proc, log)
        serving = worker_pid(proc.pid)
        with parquet.open("rb") as body:
            httpx.put(
                f"{url}/api/datasets/t", params={"format": "parquet"}, content=body, timeout=600
            ).raise_for_status()
        # The same rows in a DuckDB table, as a dataset is stored.
        local = duckdb.connect()
        local.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{parquet}')")
        cases = {
            "point lookup": "SELECT * FROM t WHERE id = 123457",
            "1,000 rows": "SELECT * FROM t WHERE id < 1000",
            "GROUP BY, 1,000 groups": "SELECT g, count(*) AS n, sum(v) AS total FROM t GROUP BY g",
        }
        rows = []
        with httpx.Client(base_url=url, timeout=120) as client:
            for name, sql in cases.items():

                def api(sql=sql):
                    answer = client.post("/api/query", json={"sql": sql, "limit": 10000})
                    answer.raise_for_status()

                def engine(sql=sql):
                    local.execute(sql).fetchall()

                api_ms = timed(api, args.repeat)
                engine_ms = timed(engine, args.repeat)
                rows.append((name, spread(api_ms), spread(engine_ms)))
                results[name] = {"api_ms": api_ms, "duckdb_ms": engine_ms}
            rss_before = rss_mb(serving)
            started = time.perf_counter()
            bomb = client.post(
                "/api/query", json={"sql": "SELECT len(list_sort(range(50_000_000)))"}
            )
            bomb_s = time.perf_counter() - started
            rss_after = rss_mb(serving)
        facts = [
            json.loads(line.split("ready: ", 1)[1].replace("'", '"'))
            for line in log.read_text().splitlines()
            if "pool) ready: " in line
        ]
        print(f"\n{args.rows:,} rows, median (min-max) of {args.repeat} runs, ms")
        print(f"{'case':<26} {'POST /api/query':>26} {'DuckDB in-process':>26}")
        for name, api_text, engine_text in rows:
            print(f"{name:<26} {api_text:>26} {engine_text:>26}")
        print(
            f"\nlist_sort(range(50M)), 1 s limit: HTTP {bomb.status_code} "
            f"{bomb.json().get('error', {}).get('code')} after {bomb_s:.2f} s; serving "
            f"process RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after"
        )
        if facts:
            idle_mb = statistics.median(f["idle_vsz"] for f in facts) / 2**20
            caps = sorted({round(f["rlimit_as"] / 2**20) for f in facts})
            print(
                f"workers: {len(facts)} started; start {spread([f['spawn_ms'] for f in facts])}"
                f" ms; idle address space {idle_mb:.0f} MB; RLIMIT_AS {caps} MB"
            )
        pids = [
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit()
            and b"usersql.worker" in (p / "cmdline").read_bytes()
            and str(tmp) in (p / "cmdline").read_text(errors="replace")
        ]
        if pids:
            print(f"worker RSS at rest: {spread([rss_mb(p) for p in pids])} MB")
        results.update(
            bomb_s=bomb_s, rss_before_mb=rss_before, rss_after_mb=rss_after, workers=facts
        )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)


if __name__ == "__main__":
    main()
