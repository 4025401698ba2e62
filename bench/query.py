"""Query benchmark: end-to-end time of POST /api/query against DuckDB in-process, and against
Datasette on the same data in SQLite, for a point lookup, a GROUP BY over 5M rows and a join.

    python bench/query.py [--rows 5000000] [--repeat 20] [--no-datasette] [--json PATH]

The data (`events`: 5M rows; `users`: 100k rows) is generated with DuckDB into bench/.work/query/
(git-ignored) and reused: a DuckDB database, and Parquet files uploaded through the API into a
fresh workspace. DuckDB in-process: the same SQL on a read-only connection to that database,
fetching every row. myapp: a real `myapp
serve --role backend` subprocess on a free loopback port; one kept-alive HTTP client posts the
query and reads the JSON answer. Datasette: installed from PyPI into its own virtualenv under
bench/.work/, serving the same tables copied into SQLite (events.id is its INTEGER PRIMARY KEY, so
the point lookup uses the index SQLite users would have), queried at /<db>.json?sql=… with the
same SQL.

The API and DuckDB in-process take turns, run by run, so both see the same load; each figure is
the median of --repeat runs after one warm-up run. Target: the API adds at most 20% or 5 ms,
whichever is larger, to DuckDB in-process. Numbers depend on the machine and its load: the load
average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
from common import free_port, wait_ready

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work" / "query"
VENV = ROOT / ".work" / "datasette-venv"
DATASETTE_VERSION = "0.65.5"

QUERIES = {
    "point lookup": "SELECT * FROM events WHERE id = 4242424",
    "group by (5M rows)": (
        "SELECT category, count(*) AS n, sum(amount) AS total, avg(amount) AS mean "
        "FROM events GROUP BY category ORDER BY category"
    ),
    "join + group by": (
        "SELECT u.country, count(*) AS n, avg(e.amount) AS mean "
        "FROM events e JOIN users u ON e.user_id = u.id GROUP BY u.country ORDER BY u.country"
    ),
}
OVERHEAD_SHARE = 0.20
OVERHEAD_FLOOR_MS = 5.0


def make_data(rows: int) -> Path:
    """The tables in a DuckDB database of their own (DuckDB in-process reads it; they are
    exported from it as Parquet to be uploaded), made once and reused."""
    db = WORK / f"source-{rows}.db"
    marker = WORK / f"source-{rows}.done"
    if marker.exists() and db.exists():
        return db
    db.unlink(missing_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"generating {rows:,} events …", flush=True)
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            f"""CREATE TABLE events AS
            SELECT i AS id,
                   (i * 7919) % 100000 AS user_id,
                   ['books', 'games', 'music', 'films', 'tools', 'toys', 'food',
                    'garden'][1 + i % 8] AS category,
                   round((i * 104729 % 100000) / 100.0, 2)::DOUBLE AS amount,
                   TIMESTAMP '2024-01-01' + to_seconds(i) AS at
            FROM range({int(rows)}) t(i)"""
        )
        conn.execute(
            """CREATE TABLE users AS
            SELECT i AS id, 'user ' || i AS name,
                   ['NO', 'PE', 'IN', 'UA', 'PT', 'FR', 'JP', 'BR', 'KE',
                    'CA'][1 + i % 10] AS country
            FROM range(100000) t(i)"""
        )
        for table in ("events", "users"):
            conn.execute(f"COPY {table} TO '{WORK / table}-{rows}.parquet' (FORMAT parquet)")
    marker.touch()
    return db


def upload(url: str, rows: int) -> None:
    """The tables become datasets the way users make them: uploaded through the API."""
    for table in ("events", "users"):
        with (WORK / f"{table}-{rows}.parquet").open("rb") as body:
            answer = httpx.put(
                f"{url}/api/datasets/{table}",
                params={"format": "parquet", "mode": "replace"},
                content=body,
                timeout=600,
            )
        answer.raise_for_status()


def make_sqlite(db: Path, target: Path, rows: int) -> Path:
    marker = target.with_suffix(f".rows-{rows}")
    if marker.exists() and target.exists():
        return target
    target.unlink(missing_ok=True)
    # The marker of another row count would otherwise vouch for this file later.
    for stale in target.parent.glob(f"{target.stem}.rows-*"):
        stale.unlink()
    print("copying the tables into SQLite for Datasette …", flush=True)
    lite = sqlite3.connect(target)
    lite.execute(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER, category TEXT, "
        "amount REAL, at TEXT)"
    )
    lite.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, country TEXT)")
    with duckdb.connect(str(db), read_only=True) as conn:
        for table, columns in (("events", 5), ("users", 3)):
            cur = conn.execute(f"SELECT * FROM {table} ORDER BY id")
            placeholders = ", ".join("?" * columns)
            while batch := cur.fetchmany(100_000):
                lite.executemany(
                    f"INSERT INTO {table} VALUES ({placeholders})",
                    [tuple(str(v) if hasattr(v, "isoformat") else v for v in row) for row in batch],
                )
    lite.commit()
    lite.close()
    marker.touch()
    return target


def ensure_datasette() -> Path:
    exe = VENV / "bin" / "datasette"
    if exe.exists():
        return exe
    print(f"installing datasette {DATASETTE_VERSION} from PyPI into {VENV} …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "-q", f"datasette=={DATASETTE_VERSION}"],
        check=True,
    )
    return exe


def timed_once(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def timed(fn, repeat: int) -> tuple[float, object]:
    result = fn()  # warm-up: caches, first-use compilation
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-datasette", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    db = make_data(args.rows)
    # A fresh workspace; DuckDB in this process reads the same rows from the source database,
    # and the two take turns query by query, sharing whatever load the machine has.
    data_dir = WORK / "data"
    shutil.rmtree(data_dir, ignore_errors=True)

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")}
    env.update({"MYAPP_DATA_DIR": str(data_dir), "MYAPP_LOG_LEVEL": "warning"})
    log = WORK / "backend.log"
    backend = subprocess.Popen(
        [sys.executable, "-m", "myapp", "serve", "--role", "backend", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=WORK,
    )
    inproc: dict[str, float] = {}
    api: dict[str, float] = {}
    expected: dict[str, int] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/api/health", backend, log)
        upload(url, args.rows)
        with (
            httpx.Client(base_url=url, timeout=120) as client,
            duckdb.connect(str(db), read_only=True) as conn,
        ):
            for label, sql in QUERIES.items():

                def call(sql=sql, client=client):
                    response = client.post("/api/query", json={"sql": sql})
                    response.raise_for_status()
                    return response.json()

                def local(sql=sql, conn=conn):
                    return conn.execute(sql).fetchall()

                expected[label] = len(local())
                assert call()["row_count"] == expected[label], label
                api_times, local_times = [], []
                for _ in range(args.repeat):
                    api_times.append(timed_once(call))
                    local_times.append(timed_once(local))
                api[label] = statistics.median(api_times)
                inproc[label] = statistics.median(local_times)
    finally:
        backend.send_signal(signal.SIGTERM)
        backend.wait(60)

    lite: dict[str, float | None] = dict.fromkeys(QUERIES)
    datasette_version = sqlite_version = None
    if not args.no_datasette:
        sqlite_db = make_sqlite(db, WORK / "bench.db", args.rows)
        exe = ensure_datasette()
        port = free_port()
        log = WORK / "datasette.log"
        proc = subprocess.Popen(
            [
                str(exe),
                "serve",
                str(sqlite_db),
                "--port",
                str(port),
                "--setting",
                "sql_time_limit_ms",
                "120000",
                "--setting",
                "max_returned_rows",
                "10000",
                "--setting",
                "num_sql_threads",
                "2",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url + "/-/versions.json", proc, log)
            versions = httpx.get(url + "/-/versions.json").json()
            datasette_version = versions["datasette"]["version"]
            sqlite_version = versions["sqlite"]["version"]
            with httpx.Client(base_url=url, timeout=300) as client:
                for label, sql in QUERIES.items():

                    def call(sql=sql, client=client):
                        response = client.get("/bench.json", params={"sql": sql, "_shape": "array"})
                        response.raise_for_status()
                        return response.json()

                    lite[label], body = timed(call, max(3, args.repeat // 4))
                    assert len(body) == expected[label], label  # type: ignore[arg-type]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)

    print()
    print(
        f"Queries on {args.rows:,} events, median of {args.repeat} (Datasette: of "
        f"{max(3, args.repeat // 4)}); load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    header = (
        f"{'query':<20} {'DuckDB in-process':>18} {'myapp API':>11} {'added':>9} {'allowed':>9}"
        f" {'target':>7} {'Datasette/SQLite':>17}"
    )
    print(header)
    print("-" * len(header))
    for label in QUERIES:
        added = api[label] - inproc[label]
        allowed = max(inproc[label] * OVERHEAD_SHARE, OVERHEAD_FLOOR_MS)
        lite_ms = lite[label]
        print(
            f"{label:<20} {inproc[label]:>15.1f} ms {api[label]:>8.1f} ms {added:>6.1f} ms"
            f" {allowed:>6.1f} ms {'ok' if added <= allowed else 'MISS':>7}"
            f" {(f'{lite_ms:.1f} ms' if lite_ms is not None else 'skipped'):>17}"
        )
    if args.json:
        figures = {
            "rows": args.rows,
            "repeat": args.repeat,
            "datasette": datasette_version,
            "sqlite": sqlite_version if datasette_version else None,
            "queries": {
                label: {
                    "duckdb_ms": inproc[label],
                    "api_ms": api[label],
                    "added_ms": api[label] - inproc[label],
                    "allowed_ms": max(inproc[label] * OVERHEAD_SHARE, OVERHEAD_FLOOR_MS),
                    "datasette_ms": lite[label],
                }
                for label in QUERIES
            },
            "load": list(os.getloadavg()),
        }
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
