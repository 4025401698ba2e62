"""The program of one worker process: runs user statements the backend has vetted.

Started by workers.py as `python -m myapp.backend.store.usersql.worker CONFIG` with one end of
a socket pair. It opens an in-memory DuckDB, sandboxes it (only the datasets' folder and, for
bulk workers, its own export folder are readable; external access off; configuration locked),
caps its own address space (RLIMIT_AS: what it uses at idle plus the DuckDB memory limit plus a
margin) and then answers requests one at a time:

- `query`: run a SELECT in a read-only transaction and send the result as JSON bytes, encoded
  here (store/values.py) and measured while encoding, stopping at the byte cap;
- `copy`: COPY a SELECT into a path (an export's named pipe);
- `xlsx`: the same as an Excel workbook, which DuckDB cannot write (store/xlsx.py).

The datasets are the backend's files, attached READ_ONLY, with a view per dataset name, synced
from the catalog the backend sends when it changed. While a statement runs a thread reports its
progress. The backend kills the process at the time limit or on cancel, so nothing here needs
to be interruptible.

Messages both ways are framed by multiprocessing.connection; replies start with one byte:
H hello, P progress, R result, E error. Only JSON crosses, never pickles: the backend must not
trust what a process running user SQL sends beyond bytes it forwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import resource
import sys
import threading
import time
import uuid
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any

import duckdb
import orjson

from .. import xlsx
from ..values import describe_columns, dumps_rows
from ..xlsx import XlsxRefused

# Rows fetched per batch while encoding: big enough to keep DuckDB's fetch cheap, small enough
# that a result of huge cells stops near the byte cap instead of far past it.
FIRST_BATCH = 1
MAX_BATCH = 4096
PROGRESS_INTERVAL_S = 0.1
ALIAS_PREFIX = "myapp_ds_"


class ResultTooLarge(Exception):
    pass


def vsz_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def parse_size(text: str) -> int:
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
    units |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    number = text.rstrip("KMGTiBb")
    return int(float(number) * units[text[len(number) :].upper()])


class Worker:
    def __init__(self, conn: Connection, config: dict[str, Any]) -> None:
        started = time.perf_counter()
        self.pipe = conn
        self.send_lock = threading.Lock()
        self.db = duckdb.connect(
            ":memory:",
            config={
                "memory_limit": config["memory_limit"],
                "temp_directory": config["temp_dir"],
                "max_temp_directory_size": config["temp_dir_limit"],
                "threads": config["threads"],
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "python_enable_replacements": False,
            },
        )
        self.cur = self.db.cursor()
        # The datasets' views live in a database named like the backend's, so that
        # `app.sales` means in a worker what the gate let through in the backend.
        name = config["database_name"]
        if name.lower() != "memory":
            self.db.execute(f"ATTACH ':memory:' AS {quote(name)}")
            self.cur.execute(f"USE {quote(name)}")
        # The lake mode: the datasets are the lake's tables, attached read-only (lake/workers.py).
        self.lake = config.get("lake")
        if self.lake:
            attach_lake(self.db, self.lake)
        # Progress is tracked only where the connection's own setting is on, and nothing can
        # be set once the configuration is locked.
        self.cur.execute("SET enable_progress_bar = true")
        self.cur.execute("SET enable_progress_bar_print = false")
        self.cur.execute("SET progress_bar_time = 0")
        self.db.execute("SET allowed_directories = $d", {"d": config["allowed_dirs"]})
        self.db.execute("SET enable_external_access = false")
        self.db.execute("SET lock_configuration = true")
        self.datasets_dir = config["datasets_dir"]
        self.views: dict[str, str] = {}  # dataset name -> file id
        self.attached: set[str] = set()
        self.catalog_gen: int | None = None
        # Warm up the thread pool and allocator before measuring what idle costs.
        self.cur.execute("SELECT sum(range) FROM range(100000)").fetchall()
        idle = vsz_bytes()
        cap = idle + parse_size(config["memory_limit"]) + config["as_margin"]
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        self.running = False
        self.reading = False
        self.send(
            b"H",
            orjson.dumps(
                {
                    "pid": os.getpid(),
                    "idle_vsz": idle,
                    "rlimit_as": cap,
                    "start_ms": round((time.perf_counter() - started) * 1000, 1),
                }
            ),
        )

    def send(self, kind: bytes, payload: bytes) -> None:
        with self.send_lock:
            self.pipe.send_bytes(kind + payload)

    # -- catalog --------------------------------------------------------------------------
    def sync(self, catalog: dict[str, str]) -> None:
        for name in list(self.views):
            if name not in catalog:
                self.cur.execute(f"DROP VIEW IF EXISTS main.{quote(name)}")
                del self.views[name]
        for name, file_id in catalog.items():
            if self.views.get(name) == file_id:
                continue
            try:
                if self.lake:
                    self.cur.execute(
                        f"CREATE OR REPLACE VIEW main.{quote(name)} AS SELECT * FROM "
                        f'{self.lake["table_prefix"]}{file_id}"'
                    )
                    self.views[name] = file_id
                    continue
                if file_id not in self.attached:
                    path = os.path.join(self.datasets_dir, f"{file_id}.duckdb")
                    self.cur.execute(
                        f"ATTACH {literal(path)} AS {quote(ALIAS_PREFIX + file_id)} (READ_ONLY)"
                    )
                    self.attached.add(file_id)
                self.cur.execute(
                    f"CREATE OR REPLACE VIEW main.{quote(name)} AS SELECT * FROM "
                    f"{quote(ALIAS_PREFIX + file_id)}.main.data"
                )
                self.views[name] = file_id
            except duckdb.Error:
                # Replaced and deleted since the backend read the catalog: the backend sends
                # a fresh one when a query then misses it.
                self.cur.execute(f"DROP VIEW IF EXISTS main.{quote(name)}")
                self.views.pop(name, None)
        for file_id in self.attached - set(self.views.values()):
            self.cur.execute(f"DETACH DATABASE IF EXISTS {quote(ALIAS_PREFIX + file_id)}")
            self.attached.discard(file_id)

    # -- requests -------------------------------------------------------------------------
    def serve(self) -> None:
        threading.Thread(target=self.report_progress, daemon=True).start()
        while True:
            try:
                request = json.loads(self.pipe.recv_bytes(), object_hook=untag)
            except (EOFError, OSError):
                return
            keep = False
            try:
                if request.get("catalog") is not None:
                    self.end_reading()
                    self.sync(request["catalog"])
                    self.catalog_gen = request.get("generation")
                self.running = True
                try:
                    op = request["op"]
                    if op == "copy":
                        self.end_reading()
                        reply = self.copy(request)
                    elif op == "xlsx":
                        self.end_reading()
                        reply = self.xlsx(request)
                    else:
                        reply, keep = self.query(request)
                finally:
                    self.running = False
                self.send(b"R", reply)
            except ResultTooLarge:
                self.send(b"E", error_message("ResultTooLarge", ""))
            except XlsxRefused as exc:
                self.send(b"E", error_message("XlsxRefused", json.dumps([exc.code, exc.message])))
            except MemoryError:
                self.send(b"E", error_message("OutOfMemoryException", "out of memory"))
            except duckdb.Error as exc:
                self.send(b"E", error_message(type(exc).__name__, str(exc)))
            finally:
                if not keep:
                    self.end_reading()

    # -- the read-only transaction ------------------------------------------------------------
    # Every query runs inside a READ ONLY transaction. Beginning and rolling one back around
    # each statement costs two more statements (0.15-0.3 ms of a 0.8 ms point lookup, measured
    # in-process): so the transaction stays open from one query to the next while nothing can
    # change under it. The dataset files are attached READ_ONLY and never change (a new
    # version is a new file); the views change only in `sync`, which ends the transaction
    # first. It ends as well after an error (the transaction is then aborted), after a result
    # that was not read to its end (so its executor state is freed) and before exports. In the
    # lake mode the tables change under a worker (other backends write to the lake), so there
    # each query gets a transaction of its own and sees the lake's latest snapshot.
    def begin_reading(self) -> None:
        if not self.reading:
            self.cur.execute("BEGIN TRANSACTION READ ONLY")
            self.reading = True

    def end_reading(self) -> None:
        self.reading = False
        with contextlib.suppress(duckdb.Error):
            self.cur.execute("ROLLBACK")

    def report_progress(self) -> None:
        last = None
        parent = os.getppid()
        while True:
            time.sleep(PROGRESS_INTERVAL_S)
            if os.getppid() != parent:
                # The backend is gone (killed without its shutdown): nobody will read the
                # answer, nor kill this process at the time limit.
                os._exit(1)
            if not self.running:
                last = None
                continue
            try:
                value = self.cur.query_progress()
            except duckdb.Error:  # between statements there is nothing to ask about
                continue
            if value >= 0 and value != last:
                last = value
                try:
                    self.send(b"P", str(float(value)).encode())
                except OSError:
                    return

    def query(self, request: dict[str, Any]) -> tuple[bytes, bool]:
        """The result as JSON bytes, and whether the transaction may stay open."""
        cur = self.cur
        self.begin_reading()
        cur.execute(request["sql"], request.get("params") or {})
        columns = describe_columns(cur.description)
        types = [c["type"] for c in columns]
        fetch = int(request.get("fetch", 0))
        max_bytes = int(request.get("max_bytes") or 0)
        parts: list[bytes] = []
        size = 0
        count = 0
        batch = FIRST_BATCH
        while count < fetch:
            rows = cur.fetchmany(min(batch, fetch - count))
            if not rows:
                break
            encoded = dumps_rows(rows, types)[1:-1]
            size += len(encoded) + 1
            if max_bytes and size > max_bytes:
                raise ResultTooLarge
            parts.append(encoded)
            count += len(rows)
            # Grow the batch while rows are small, so a huge result is fetched in few calls but
            # a result of huge cells is measured every few rows.
            per_row = max(1, size // count)
            room = (max_bytes - size) // per_row if max_bytes else MAX_BATCH
            batch = max(1, min(MAX_BATCH, batch * 4, room // 2 or 1))
        truncated = count >= fetch and cur.fetchone() is not None
        keep = not truncated and not self.lake
        return b"".join(
            [
                b'{"columns":',
                orjson.dumps(columns),
                b',"rows":[',
                b",".join(parts),
                b'],"row_count":',
                str(count).encode(),
                b',"truncated":',
                b"true" if truncated else b"false",
                b"}",
            ]
        ), keep

    def copy(self, request: dict[str, Any]) -> bytes:
        target = literal(request["target"])
        statement = f"COPY (\n{request['sql']}\n) TO {target} ({request['options']})"
        self.cur.execute(statement, request.get("params") or {})
        return b"{}"

    def xlsx(self, request: dict[str, Any]) -> bytes:
        cur = self.cur
        params = request.get("params") or {}
        # One snapshot for the count and the rows.
        cur.execute("BEGIN TRANSACTION READ ONLY")
        row = cur.execute(xlsx.count_sql(request["sql"]), params).fetchone()
        if row is not None and row[0] > xlsx.MAX_ROWS:
            raise xlsx.too_many_rows()
        cur.execute(request["sql"], params)
        target = request["target"]
        # xlsxwriter's temporary files go beside the pipe, in this worker's own folder, which
        # the backend removes with the worker.
        xlsx.write_xlsx(cur, target, os.path.dirname(target))
        return b"{}"


_TAGGED = {
    "timestamp": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "decimal": Decimal,
    "uuid": uuid.UUID,
}


def untag(obj: dict[str, Any]) -> Any:
    """A parameter value the backend tagged with its type (workers.py)."""
    kind = obj.get("$type")
    if isinstance(kind, str) and kind in _TAGGED and set(obj) == {"$type", "value"}:
        return _TAGGED[kind](obj["value"])
    return obj


def error_message(kind: str, message: str) -> bytes:
    # The standard encoder: a message may quote a lone surrogate the user sent.
    return json.dumps({"kind": kind, "message": message}).encode()


def attach_lake(db: duckdb.DuckDBPyConnection, lake: dict[str, Any]) -> None:
    folder = lake["extension_directory"]
    if folder:
        db.execute("SET extension_directory = $d", {"d": folder})
    for name in lake["extensions"]:
        db.execute(f"{'' if folder else 'INSTALL ' + name + '; '}LOAD {name}")
    for statement in lake["settings"]:
        db.execute(statement)
    db.execute(lake["attach"])


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def main() -> None:
    config = json.loads(sys.argv[1])
    conn = Connection(config["fd"])
    if config.get("nice"):
        # Before DuckDB starts its threads: each thread inherits the nice value of the one
        # that creates it.
        os.nice(config["nice"])
    try:
        worker = Worker(conn, config)
    except Exception as exc:
        conn.send_bytes(b"E" + error_message(type(exc).__name__, str(exc)))
        raise SystemExit(1) from None
    worker.serve()


if __name__ == "__main__":
    main()
