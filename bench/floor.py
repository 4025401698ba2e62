"""Floor benchmark: the least a server of myapp's shape can take for a small query, against
myapp and Datasette on the same rows.

    python bench/floor.py [--rows 1000000] [--repeat 300] [--rounds 3] [--datasette EXE]

myapp answers `POST /api/query` through uvicorn, and runs the statement in a worker process
(the sandbox: user SQL never runs in the process that serves everyone). This script serves the
same statements through two servers with nothing else in them, written here in a few lines of
plain ASGI, so their time is what the shape itself costs:

- "uvicorn + thread": uvicorn (uvloop, httptools) reads the JSON body, DuckDB runs the statement
  on a thread of the server's own process, orjson writes the rows. No sandbox.
- "uvicorn + worker": the same, but the statement goes over a socket to a worker process that
  runs it and sends back the JSON, the way myapp's backend talks to its workers. No
  authentication, no statement gate, no limits, no logs.

Beside them: DuckDB in-process (`execute` + `fetchall`), myapp's backend (`myapp serve --role
backend`, the dataset uploaded through the API) and, with --datasette, Datasette on the same rows
in SQLite. Every server is timed with http.client on one kept-alive connection to the last
byte; servers take turns request by request, so all see the same load. The rows are
bench/workers.py's table (id, g, v, s), as bench/small_queries.py uses it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import duckdb
from common import Lean, free_port, wait_ready
from small_queries import make_sqlite
from workers import make_parquet

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work" / "floor"

CASES = {
    "no table (SELECT 42)": "SELECT 42 AS answer",
    "point lookup": "SELECT * FROM t WHERE id = 123457",
    "point lookup, new id": "SELECT * FROM t WHERE id = {id}",
    "1,000 rows": "SELECT * FROM t WHERE id < 1000",
    "10,000 rows": "SELECT * FROM t WHERE id < 10000",
}

# The two minimal servers, run as `python floor.py --serve thread|worker DB PORT`.


def _duckdb(db: str) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(":memory:")
    conn.execute(f"ATTACH '{db}' AS d (READ_ONLY)")
    conn.execute("CREATE VIEW t AS SELECT * FROM d.main.t")
    return conn


def _answer(cur: duckdb.DuckDBPyConnection, sql: str) -> bytes:
    import orjson

    result = cur.execute(sql)
    columns = [{"name": c[0], "type": str(c[1])} for c in result.description]
    return orjson.dumps({"columns": columns, "rows": result.fetchall()})


def _worker_main(sock: socket.socket, db: str) -> None:
    cur = _duckdb(db).cursor()
    cur.execute("BEGIN TRANSACTION READ ONLY")
    while True:
        head = sock.recv(4, socket.MSG_WAITALL)
        if len(head) < 4:
            return
        (size,) = struct.unpack("!i", head)
        sql = sock.recv(size, socket.MSG_WAITALL).decode()
        body = _answer(cur, sql)
        sock.sendall(struct.pack("!i", len(body)) + body)


def serve(kind: str, db: str, port: int) -> None:
    import asyncio
    import threading

    import uvicorn

    if kind == "worker":
        ours, theirs = socket.socketpair()
        if os.fork() == 0:
            ours.close()
            _worker_main(theirs, db)
            os._exit(0)
        theirs.close()
        ours.setblocking(False)
        lock = asyncio.Lock()

        async def run(sql: str) -> bytes:
            loop = asyncio.get_running_loop()
            async with lock:
                data = sql.encode()
                await loop.sock_sendall(ours, struct.pack("!i", len(data)) + data)
                head = bytearray()
                while len(head) < 4:
                    head += await loop.sock_recv(ours, 4 - len(head))
                (size,) = struct.unpack("!i", head)
                body = bytearray()
                while len(body) < size:
                    body += await loop.sock_recv(ours, size - len(body))
                return bytes(body)

    else:
        conn = _duckdb(db)
        local = threading.local()

        def in_thread(sql: str) -> bytes:
            cur = getattr(local, "cur", None)
            if cur is None:
                cur = local.cur = conn.cursor()
            return _answer(cur, sql)

        async def run(sql: str) -> bytes:
            return await asyncio.get_running_loop().run_in_executor(None, in_thread, sql)

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        if scope["path"] == "/health":
            body = b"{}"
        else:
            body = await run(json.loads(b"".join(chunks))["sql"])
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


# -- the benchmark ------------------------------------------------------------------------


def start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=300, help="runs per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--datasette", type=Path, help="a datasette executable")
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "DB", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1], int(args.serve[2]))
        return

    WORK.mkdir(parents=True, exist_ok=True)
    parquet = make_parquet(args.rows)
    db = WORK / f"t-{args.rows}.duckdb"
    if not db.exists():
        partial = db.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        with duckdb.connect(str(partial)) as conn:
            conn.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{parquet}')")
        partial.rename(db)

    procs: list[subprocess.Popen] = []
    tmp = Path(tempfile.mkdtemp(prefix="myapp-floor-"))
    clients: dict[str, tuple[Lean, str]] = {}
    try:
        for kind in ("thread", "worker"):
            port = free_port()
            log = tmp / f"{kind}.log"
            procs.append(
                start([sys.executable, __file__, "--serve", kind, str(db), str(port)], log)
            )
            wait_ready(f"http://127.0.0.1:{port}/health", procs[-1], log)
            clients[f"uvicorn + {kind}"] = (Lean(port), "/q")

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")}
        env |= {"MYAPP_DATA_DIR": str(tmp / "data"), "MYAPP_LOG_LEVEL": "warning"}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT.parent), env.get("PYTHONPATH", "")])
        log = tmp / "myapp.log"
        procs.append(
            start(
                [sys.executable, "-m", "myapp", "serve", "--role", "backend", "--port", str(port)],
                log,
                env,
            )
        )
        wait_ready(f"http://127.0.0.1:{port}/api/health", procs[-1], log)
        lean = Lean(port)
        with parquet.open("rb") as body:
            lean.conn.request("PUT", "/api/datasets/t?format=parquet&mode=replace", body=body)
            response = lean.conn.getresponse()
            response.read()
            if response.status >= 300:
                raise RuntimeError(f"upload: HTTP {response.status}")
        clients["myapp"] = (lean, "/api/query")

        lite_port = None
        if args.datasette:
            lite = make_sqlite(parquet, args.rows)
            lite_port = free_port()
            log = tmp / "datasette.log"
            procs.append(
                start(
                    [
                        str(args.datasette),
                        "serve",
                        str(lite),
                        "--port",
                        str(lite_port),
                        *("--setting", "max_returned_rows", "10000"),
                        *("--setting", "sql_time_limit_ms", "60000"),
                    ],
                    log,
                )
            )
            wait_ready(f"http://127.0.0.1:{lite_port}/-/versions.json", procs[-1], log)
            lite_db = lite.stem

        local = _duckdb(str(db)).cursor()
        ids = random.Random(7)

        def runner(name: str):
            if name == "DuckDB in-process":
                return lambda sql: local.execute(sql).fetchall()
            if name == "Datasette":
                client = Lean(lite_port)
                return lambda sql: client.get(
                    f"/{lite_db}.json?" + urlencode({"sql": sql, "_shape": "array"})
                )
            client, path = clients[name]
            return lambda sql: client.post_json(path, {"sql": sql, "limit": 10000})

        names = ["DuckDB in-process", *clients, *(["Datasette"] if lite_port else [])]
        runners = {name: runner(name) for name in names}
        times: dict[tuple[str, str], list[float]] = {(c, n): [] for c in CASES for n in names}
        rounds: dict[tuple[str, str], list[float]] = {(c, n): [] for c in CASES for n in names}
        for sql in CASES.values():
            for fn in runners.values():
                for _ in range(3):
                    fn(sql.format(id=1))
        for _ in range(args.rounds):
            for case, template in CASES.items():
                this_round: dict[str, list[float]] = {n: [] for n in names}
                for repeat in range(args.repeat):
                    sql = template.format(id=ids.randrange(args.rows))
                    order = names if repeat % 2 == 0 else names[::-1]
                    for name in order:
                        started = time.perf_counter()
                        runners[name](sql)
                        this_round[name].append((time.perf_counter() - started) * 1000)
                for name, values in this_round.items():
                    times[case, name] += values
                    rounds[case, name].append(statistics.median(values))

        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"\n{args.rows:,} rows; median of {args.rounds} x {args.repeat} runs (range of the "
            f"round medians), ms, http.client to the last byte; load {load} on "
            f"{os.cpu_count()} cores"
        )
        header = f"{'case':<22}" + "".join(f"{n:>24}" for n in names)
        print(header)
        print("-" * len(header))
        for case in CASES:
            cells = []
            for name in names:
                med = statistics.median(times[case, name])
                lo, hi = min(rounds[case, name]), max(rounds[case, name])
                cells.append(f"{med:.2f} ({lo:.2f}-{hi:.2f})")
            print(f"{case:<22}" + "".join(f"{c:>24}" for c in cells))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
