"""Small queries side by side: POST /api/query vs DuckDB in-process vs Datasette on SQLite.

    python bench/small_queries.py [--rows 1000000] [--repeat 200] [--rounds 3]
                                  [--no-datasette] [--before-tree PATH] [--json PATH]

One table of --rows rows (id, g, v, s: bench/workers.py's) uploaded as a Parquet dataset into a
fresh workspace served by a real `myapp serve --role backend`; DuckDB in-process reads that
dataset's own file (attached read-only, as the query workers do); Datasette (bench/query.py
installs it into its own virtualenv) serves the same rows copied into SQLite with id as its
INTEGER PRIMARY KEY. All three answer every case in turn, run by run, so they share the load;
each server's runners go together, after one unmeasured request to that server, so every
figure is of a server that just answered (one that sat idle answers up to a millisecond later).

Cases: a statement that reads no table (`SELECT 42`: what each server's stack costs without its
engine's work), a point lookup (the same text each time, as a client with parameters sends it;
and a new id in the text each time), a 1,000-row and a 10,000-row result.
The HTTP clients keep their connection: httpx (what bench/query.py and the tests use) and
http.client (the least a Python client adds), which also runs without decoding the JSON
("bytes": the time to the last byte, what serving costs; DuckDB in-process hands over Python
objects, an HTTP client has to decode them, and json.loads of 10,000 rows takes ~3 ms).
Printed per case: medians with the range of the --rounds round medians, the API's overhead
(myapp minus DuckDB) and its ratio to DuckDB, both with and without the decoding, and the load
average. With --before-tree, a second backend runs that tree's code (PYTHONPATH) on its own
copy of the rows, and its rows ("before") are measured in the same turns.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import duckdb
import httpx
from common import Lean, free_port, wait_ready
from query import ensure_datasette
from workers import make_parquet

POINT_ID = 123457
CASES = {
    "no table (SELECT 42)": "SELECT 42 AS answer",
    "point lookup": f"SELECT * FROM t WHERE id = {POINT_ID}",
    "point lookup, new id": "SELECT * FROM t WHERE id = {id}",
    "1,000 rows": "SELECT * FROM t WHERE id < 1000",
    "10,000 rows": "SELECT * FROM t WHERE id < 10000",
}
EXPECTED_ROWS = {
    "no table (SELECT 42)": 1,
    "point lookup": 1,
    "point lookup, new id": 1,
    "1,000 rows": 1000,
    "10,000 rows": 10000,
}


def make_sqlite(parquet: Path, rows: int) -> Path:
    target = parquet.with_name(f"t-{rows}.sqlite")
    if target.exists():
        return target
    partial = target.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    print("copying the rows into SQLite for Datasette …", flush=True)
    lite = sqlite3.connect(partial)
    lite.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, g INTEGER, v INTEGER, s TEXT)")
    with duckdb.connect() as conn:
        cur = conn.execute(f"SELECT id, g, v, s FROM read_parquet('{parquet}') ORDER BY id")
        while batch := cur.fetchmany(100_000):
            lite.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", batch)
    lite.commit()
    lite.close()
    partial.rename(target)
    return target


def median_range(values: list[float], rounds: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(rounds):.2f}-{max(rounds):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200, help="runs per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-datasette", action="store_true")
    parser.add_argument("--datasette", type=Path, help="a datasette executable to use")
    parser.add_argument(
        "--before-tree", type=Path, help="also serve the same rows with the code of this tree"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    parquet = make_parquet(args.rows)
    tmp = Path(tempfile.mkdtemp(prefix="bench-small-"))
    procs: list[subprocess.Popen] = []
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")},
        "MYAPP_DATA_DIR": str(tmp / "data"),
        "MYAPP_LOG_LEVEL": "warning",
    }
    backends: dict[str, str] = {}

    def start_backend(label: str, tree: Path | None) -> None:
        data = tmp / f"data{label}"
        backend_env = {**env, "MYAPP_DATA_DIR": str(data)}
        if tree is not None:
            backend_env["PYTHONPATH"] = str(tree.resolve())
        port = free_port()
        log = tmp / f"backend{label}.log"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "myapp", "serve", "--role", "backend", "--port", str(port)],
                env=backend_env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Not this tree: `-m` puts the working directory first on the path.
                cwd=tmp,
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/api/health", procs[-1], log)
        with parquet.open("rb") as body:
            httpx.put(
                f"{url}/api/datasets/t", params={"format": "parquet"}, content=body, timeout=600
            ).raise_for_status()
        backends[label] = url

    lite_url = lite_port = None
    try:
        start_backend("", None)
        if args.before_tree is not None:
            start_backend("-before", args.before_tree)
        url = backends[""]
        port = int(url.rsplit(":", 1)[1])
        (data_file,) = (tmp / "data" / "datasets").glob("*.duckdb")
        local = duckdb.connect()
        local.execute(f"ATTACH '{data_file}' AS ds (READ_ONLY)")
        local.execute("CREATE VIEW t AS SELECT * FROM ds.main.data")
        if not args.no_datasette:
            sqlite_db = make_sqlite(parquet, args.rows)
            exe = args.datasette or ensure_datasette()
            lite_port = free_port()
            lite_log = tmp / "datasette.log"
            procs.append(
                subprocess.Popen(
                    [
                        str(exe),
                        "serve",
                        str(sqlite_db),
                        "--port",
                        str(lite_port),
                        *("--setting", "max_returned_rows", "10000"),
                        *("--setting", "sql_time_limit_ms", "60000"),
                    ],
                    stdout=lite_log.open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            lite_url = f"http://127.0.0.1:{lite_port}"
            wait_ready(lite_url + "/-/versions.json", procs[-1], lite_log)
        db_name = f"t-{args.rows}"
        client = httpx.Client(base_url=url, timeout=120)
        lean = Lean(port)
        lite_client = httpx.Client(base_url=lite_url, timeout=120) if lite_url else None
        lite_lean = Lean(lite_port) if lite_port else None
        ids = random.Random(7)

        def text(case: str) -> str:
            sql = CASES[case]
            return sql.format(id=ids.randrange(args.rows)) if "{id}" in sql else sql

        def myapp_httpx(sql: str) -> int:
            answer = client.post("/api/query", json={"sql": sql, "limit": 10000})
            answer.raise_for_status()
            return answer.json()["row_count"]

        def myapp_lean(sql: str) -> int:
            return json.loads(lean.post_json("/api/query", {"sql": sql, "limit": 10000}))[
                "row_count"
            ]

        def myapp_bytes(sql: str) -> bytes:
            return lean.post_json("/api/query", {"sql": sql, "limit": 10000})

        def lite_bytes(sql: str) -> bytes:
            assert lite_lean is not None
            return lite_lean.get(f"/{db_name}.json?{urlencode({'sql': sql, '_shape': 'array'})}")

        def lite_httpx(sql: str) -> int:
            assert lite_client is not None
            answer = lite_client.get(f"/{db_name}.json", params={"sql": sql, "_shape": "array"})
            answer.raise_for_status()
            return len(answer.json())

        def lite_lean_call(sql: str) -> int:
            assert lite_lean is not None
            query = urlencode({"sql": sql, "_shape": "array"})
            return len(json.loads(lite_lean.get(f"/{db_name}.json?{query}")))

        def duck(sql: str) -> int:
            return len(local.execute(sql).fetchall())

        runners = {
            "DuckDB in-process": duck,
            "myapp (httpx)": myapp_httpx,
            "myapp (http.client)": myapp_lean,
            "myapp (bytes)": myapp_bytes,
        }
        if "-before" in backends:
            before = Lean(int(backends["-before"].rsplit(":", 1)[1]))
            before_client = httpx.Client(base_url=backends["-before"], timeout=120)

            def before_httpx(sql: str) -> int:
                answer = before_client.post("/api/query", json={"sql": sql, "limit": 10000})
                answer.raise_for_status()
                return answer.json()["row_count"]

            def before_lean(sql: str) -> int:
                return json.loads(before.post_json("/api/query", {"sql": sql, "limit": 10000}))[
                    "row_count"
                ]

            def before_bytes(sql: str) -> bytes:
                return before.post_json("/api/query", {"sql": sql, "limit": 10000})

            # The same runners in the same order as myapp's: what a runner measures depends on
            # what the client did just before (decoding 10,000 rows with httpx, say).
            runners["before (httpx)"] = before_httpx
            runners["before (http.client)"] = before_lean
            runners["before (bytes)"] = before_bytes
        if lite_client is not None:
            runners["Datasette (httpx)"] = lite_httpx
            runners["Datasette (http.client)"] = lite_lean_call
            runners["Datasette (bytes)"] = lite_bytes
        # Runners by the server they ask, with a call that warms that server up.
        groups: dict = {None: ["DuckDB in-process"]}
        groups[myapp_bytes] = [n for n in runners if n.startswith("myapp")]
        if "-before" in backends:
            groups[before_bytes] = [n for n in runners if n.startswith("before")]
        if lite_client is not None:
            groups[lite_bytes] = [n for n in runners if n.startswith("Datasette")]
        times = {(case, name): [] for case in CASES for name in runners}
        round_medians = {(case, name): [] for case in CASES for name in runners}
        loads = [os.getloadavg()[0]]
        for case in CASES:  # warm-up, and every runner gives the same number of rows
            for name, fn in runners.items():
                for _ in range(3):
                    got = fn(text(case))
                if isinstance(got, bytes):
                    decoded = json.loads(got)
                    got = len(decoded["rows"] if isinstance(decoded, dict) else decoded)
                assert got == EXPECTED_ROWS[case], (case, name, got)
        for _ in range(args.rounds):
            this_round = {key: [] for key in times}
            for repeat in range(args.repeat):
                # A server that sat idle while the others answered is slower to answer next
                # (its processes and caches go cold: up to a millisecond for myapp's two
                # processes). So each server's runners go in a group, after one unmeasured
                # request to it; the groups take turns in either order.
                turn = list(groups.items())
                if repeat % 2:
                    turn.reverse()
                for case in CASES:
                    for warm, names in turn:
                        if warm is not None:
                            warm(text(case))
                        for name in names:
                            sql = text(case)
                            started = time.perf_counter()
                            runners[name](sql)
                            this_round[case, name].append((time.perf_counter() - started) * 1000)
            for key, values in this_round.items():
                times[key].extend(values)
                round_medians[key].append(statistics.median(values))
            loads.append(os.getloadavg()[0])
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(30)
        # The workspaces (a copy of the rows each) and the logs.
        shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\n{args.rows:,} rows; median of {args.rounds} x {args.repeat} runs (range of the round "
        f"medians), ms; load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores"
    )
    names = list(runners)
    print(
        f"{'case':<22}"
        + "".join(f"{n:>26}" for n in names)
        + f"{'overhead':>12}{'ratio':>8}{'bytes ovh':>12}{'ratio':>8}"
    )
    figures: dict[str, dict] = {}
    for case in CASES:
        cells = [median_range(times[case, n], round_medians[case, n]) for n in names]
        duck_ms = statistics.median(times[case, "DuckDB in-process"])
        lean_ms = statistics.median(times[case, "myapp (http.client)"])
        bytes_ms = statistics.median(times[case, "myapp (bytes)"])
        print(
            f"{case:<22}"
            + "".join(f"{c:>26}" for c in cells)
            + f"{lean_ms - duck_ms:>9.2f} ms{lean_ms / duck_ms:>7.2f}x"
            + f"{bytes_ms - duck_ms:>9.2f} ms{bytes_ms / duck_ms:>7.2f}x"
        )
        figures[case] = {
            name: {
                "median_ms": statistics.median(times[case, name]),
                "round_medians_ms": round_medians[case, name],
            }
            for name in names
        }
    print(
        "overhead and ratio: myapp (http.client) against DuckDB in-process; bytes: the same "
        "without decoding the JSON"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"rows": args.rows, "load": loads, "cases": figures}, indent=1)
        )


if __name__ == "__main__":
    main()
