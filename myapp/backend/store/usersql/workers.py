"""The worker processes that run user SQL, in two pools, seen from the backend.

Why processes: a single DuckDB function call over a huge generated input (a sort of a list built
from a 50M range, a regex over a 200 MB string) is neither interrupted by `interrupt()` nor
counted by DuckDB's memory limit (measured with DuckDB 2.0). In a thread of the backend it
ran 8-58 s past a 1 s limit and took the backend to 15 GB. In a process of its own it meets a
hard address-space cap (RLIMIT_AS, set by the worker itself, worker.py) and is killed with
SIGKILL at the time limit or on cancel; the pool then starts a fresh worker.

Why pre-started and long-lived: starting Python and DuckDB takes a few hundred milliseconds; a
point lookup should pay a pipe round trip instead (docs/development.md has the figures).

Two pools, each with its own size, DuckDB memory limit and thread budget (settings): the
interactive pool (queries, charts, checks of saved SQL) and the bulk pool (exports), so exports
queue behind each other instead of starving pages and queries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any

import orjson

from myapp.settings import Settings

from ...errors import AppError
from ...lake.workers import worker_config as lake_worker_config
from .callers import Callers, ExportSlots
from .errors import DuckError
from .gate import GateMemory
from .runs import Registry

log = logging.getLogger("myapp.backend.workers")

# How long a worker may take to start before the backend gives up on it.
START_TIMEOUT_S = 30.0
# Address space a worker may use beyond its idle size and DuckDB's memory limit: DuckDB's
# allocations outside its buffer pool, Python's objects for one batch of rows, and the
# result being encoded (bounded by MYAPP_MAX_RESULT_BYTES, added on top).
AS_MARGIN_BYTES = 256 * 1024 * 1024
# One glibc malloc arena per thread reserves 64 MB of address space each: with a cap on the
# address space, that reservation (not use) would be what runs out first.
WORKER_ENV = {"MALLOC_ARENA_MAX": "2"}


def _tagged(value: Any) -> dict[str, str]:
    """Parameter values JSON has no type for, tagged so the worker binds them typed."""
    if isinstance(value, dt.datetime):
        return {"$type": "timestamp", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$type": "date", "value": value.isoformat()}
    if isinstance(value, dt.time):
        return {"$type": "time", "value": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$type": "decimal", "value": str(value)}
    if isinstance(value, uuid.UUID):
        return {"$type": "uuid", "value": str(value)}
    raise TypeError(f"a parameter of type {type(value).__name__} cannot be sent to a worker")


# The folders of a worker (spill files, an export worker's pipes) under the spill folder.
WORKER_DIR_PREFIX = "worker-"


# How often a request waiting for a worker checks whether its run was stopped meanwhile.
ACQUIRE_POLL_S = 0.1


class WorkerNotNeeded(Exception):
    """The run waiting for a worker was stopped (cancel, time limit) before it got one."""


class WorkerDied(Exception):
    """The worker ended while answering: killed (time limit, cancel) or it crashed."""


@dataclass(frozen=True)
class PoolConfig:
    name: str
    size: int
    threads: int
    memory_limit: str
    # Bulk workers write exports into a folder of their own, the only place besides the
    # datasets they can reach.
    exports: bool
    # Added to the worker's nice value: export workers take every core with DuckDB threads
    # and rely on the scheduler to give way to pages and queries (DuckDB's thread count
    # cannot change once the sandbox locks its configuration).
    nice: int = 0


class Worker:
    """One worker process and the backend's end of its socket."""

    def __init__(self, settings: Settings, config: PoolConfig) -> None:
        self.settings = settings
        self.config = config
        self.id = uuid.uuid4().hex[:12]
        self.spill_dir = settings.spill_dir / f"{WORKER_DIR_PREFIX}{self.id}"
        # Beside the spill folder; both are cleared when the pools start (after a crash).
        self.export_dir = settings.spill_dir / f"{WORKER_DIR_PREFIX}{self.id}-exports"
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        allowed = [str(settings.datasets_dir.resolve()) + "/"]
        if config.exports:
            self.export_dir.mkdir(parents=True, exist_ok=True)
            allowed.append(str(self.export_dir.resolve()) + "/")
        ours, theirs = socket.socketpair()
        child_config = {
            "fd": theirs.fileno(),
            "memory_limit": config.memory_limit,
            "threads": config.threads,
            "nice": config.nice,
            "temp_dir": str(self.spill_dir.resolve()),
            "temp_dir_limit": settings.temp_dir_limit,
            "allowed_dirs": allowed,
            "datasets_dir": str(settings.datasets_dir.resolve()),
            "database_name": settings.database_path.stem,
            "as_margin": AS_MARGIN_BYTES + settings.max_result_bytes,
        }
        lake = lake_worker_config(settings)
        if lake is not None:
            child_config["lake"] = lake
            child_config["allowed_dirs"] = [*allowed, lake["data_path"]]
            # The backend's datasets are views in its in-memory database.
            child_config["database_name"] = "memory"
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "myapp.backend.store.usersql.worker", json.dumps(child_config)],
            pass_fds=[theirs.fileno()],
            env={**os.environ, **WORKER_ENV},
            stdin=subprocess.DEVNULL,
            close_fds=True,
        )
        theirs.close()
        ours.setblocking(True)
        self.conn = Connection(ours.detach())
        # The same socket for `acall` on the event loop (a duplicate descriptor: closing one
        # leaves the other open).
        self.sock = socket.socket(fileno=os.dup(self.conn.fileno()))
        self.catalog_generation: int | None = None
        self.dead = False
        try:
            if not self.conn.poll(START_TIMEOUT_S):
                raise WorkerDied("the worker did not start in time")
            hello = self.conn.recv_bytes()
        except (EOFError, OSError, WorkerDied):
            self.reap()
            raise WorkerDied("the worker failed to start") from None
        if hello[:1] != b"H":
            self.reap()
            raise WorkerDied(f"the worker failed to start: {hello[1:200]!r}")
        self.facts = orjson.loads(hello[1:])
        self.facts["spawn_ms"] = round((time.perf_counter() - started) * 1000, 1)
        log.debug("worker %s (%s pool) ready: %s", self.id, config.name, self.facts)

    @property
    def pid(self) -> int:
        return self.process.pid

    def call(
        self,
        request: dict[str, Any],
        on_progress: Callable[[float], None] | None = None,
    ) -> bytes:
        """Send one request and wait for its answer; raise DuckError for DuckDB's errors and
        WorkerDied if the process ends (killed at the time limit, on cancel, or crashed)."""
        try:
            self.conn.send_bytes(_encode(request))
            while True:
                answer = _answer(self.conn.recv_bytes(), on_progress)
                if answer is not None:
                    return answer
        except (EOFError, OSError):
            self.dead = True
            raise WorkerDied("the worker ended") from None

    async def acall(
        self,
        request: dict[str, Any],
        on_progress: Callable[[float], None] | None = None,
    ) -> bytes | bytearray:
        """`call` on the event loop: no thread waits for the worker, so a point lookup does not
        pay a hop to the thread pool and back, and a busy server does not run out of threads.
        The messages are those of multiprocessing.connection, which `call` and the worker use."""
        loop = asyncio.get_running_loop()
        data = _encode(request)
        finished = False
        try:
            self.sock.setblocking(False)
            try:
                await loop.sock_sendall(self.sock, struct.pack("!i", len(data)) + data)
                while True:
                    (size,) = struct.unpack("!i", await self._read(loop, 4))
                    if size == -1:
                        (size,) = struct.unpack("!Q", await self._read(loop, 8))
                    answer = _answer(await self._read(loop, size), on_progress)
                    if answer is not None:
                        finished = True
                        return answer
            finally:
                with suppress(OSError):
                    self.sock.setblocking(True)
        except (EOFError, OSError):
            self.dead = True
            raise WorkerDied("the worker ended") from None
        except DuckError:
            finished = True
            raise
        finally:
            if not finished and not self.dead:
                # Left in the middle of a message (the request was cancelled): what follows
                # on the socket can no longer be told apart, so the worker is not used again.
                self.kill()

    async def _read(self, loop: asyncio.AbstractEventLoop, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            count = await loop.sock_recv_into(self.sock, view[got:])
            if count == 0:
                raise EOFError
            got += count
        return buffer

    def kill(self) -> None:
        """SIGKILL: the one way to stop a DuckDB call that will not be interrupted."""
        self.dead = True
        with suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)

    def reap(self) -> None:
        self.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.error("worker %s did not end after SIGKILL", self.id)
        self.conn.close()
        self.sock.close()
        shutil.rmtree(self.spill_dir, ignore_errors=True)
        shutil.rmtree(self.export_dir, ignore_errors=True)


def _encode(request: dict[str, Any]) -> bytes:
    # The standard encoder: it escapes a lone surrogate in a parameter (which orjson refuses),
    # and DuckDB then answers for it as for any other bad value.
    return json.dumps(request, default=_tagged).encode()


def _answer(
    message: bytes | bytearray, on_progress: Callable[[float], None] | None
) -> bytes | bytearray | None:
    """The result in a worker's message; None for a progress report (more follows)."""
    kind, payload = message[:1], message[1:]
    if kind == b"P":
        if on_progress is not None:
            on_progress(float(payload))
        return None
    if kind == b"R":
        return payload
    if kind == b"E":
        error = json.loads(payload)
        raise DuckError(str(error.get("kind")), str(error.get("message")))
    raise WorkerDied(f"unexpected message from worker: {bytes(kind)!r}")


class Pool:
    """A fixed number of workers; a lease hands one out, and a broken one is replaced."""

    def __init__(self, settings: Settings, config: PoolConfig) -> None:
        self.settings = settings
        self.config = config
        # Last in, first out: the worker that answered last is handed out next. Its DuckDB
        # threads, caches and pages are still warm; the one idle longest answers a point
        # lookup ~0.3 ms slower (docs/benchmarks.md, "Small queries").
        self._idle: queue.LifoQueue[Worker] = queue.LifoQueue()
        self._all: set[Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._starting = 0

    def start(self) -> None:
        with self._lock:
            self._starting += self.config.size
        threads = [threading.Thread(target=self._add) for _ in range(self.config.size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._idle.qsize() < self.config.size:
            raise RuntimeError(f"the {self.config.name} query workers failed to start")

    def _add(self) -> None:
        """Start one worker (the caller counted it in `_starting`)."""
        try:
            for attempt in range(3):
                if self._closed:
                    return
                try:
                    worker = Worker(self.settings, self.config)
                except (WorkerDied, OSError) as exc:
                    name = self.config.name
                    log.error("starting a %s worker failed (%s): %s", name, attempt, exc)
                    time.sleep(0.5)
                    continue
                with self._lock:
                    if self._closed:
                        worker.reap()
                        return
                    self._all.add(worker)
                self._idle.put(worker)
                return
        finally:
            with self._lock:
                self._starting -= 1

    def _top_up(self) -> None:
        """Start workers for those that are missing (replaced ones whose start failed)."""
        with self._lock:
            missing = self.config.size - len(self._all) - self._starting
            if self._closed or missing <= 0:
                return
            self._starting += missing
        for _ in range(missing):
            threading.Thread(target=self._add, name="myapp-worker-start", daemon=True).start()

    def _replace(self, worker: Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        threading.Thread(target=worker.reap, name="myapp-worker-reap", daemon=True).start()
        self._top_up()

    @contextmanager
    def lease(self, wait_s: float) -> Iterator[Worker]:
        """A worker for one run; back to the pool afterwards, or replaced if it died."""
        worker = self.acquire(wait_s)
        try:
            yield worker
        finally:
            self.release(worker)

    def acquire(self, wait_s: float, stopped: Callable[[], bool] | None = None) -> Worker:
        """An idle worker, waiting up to `wait_s` (then 503 `busy`); raises WorkerNotNeeded
        once `stopped()` says the run that waits was cancelled or timed out meanwhile."""
        self._top_up()
        deadline = time.monotonic() + wait_s
        while True:
            left = deadline - time.monotonic()
            try:
                return self._idle.get(timeout=max(0.0, min(left, ACQUIRE_POLL_S)))
            except queue.Empty:
                if stopped is not None and stopped():
                    raise WorkerNotNeeded from None
                if left <= ACQUIRE_POLL_S:
                    break
        raise AppError(
            f"All {self.config.name} query workers are busy; try again in a moment.",
            code="busy",
            status_code=503,
            headers={"Retry-After": "5"},
        )

    def try_acquire(self) -> Worker | None:
        """An idle worker if there is one right now, else None: never waits."""
        self._top_up()
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return None

    def release(self, worker: Worker) -> None:
        if worker.dead or worker.process.poll() is not None:
            self._replace(worker)
        else:
            self._idle.put(worker)

    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._all]

    def counts(self) -> tuple[int, int]:
        """(running workers, idle ones): what /api/metrics shows of the pool."""
        with self._lock:
            return len(self._all), self._idle.qsize()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.reap()


class Workers:
    """Both pools of the backend, started in its lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # What running user SQL keeps besides the pools: the runs (progress, cancel, the time
        # limit's watchdog), each caller's allowance of runs and workers, and of exports.
        self.runs = Registry()
        self.callers = Callers()
        self.export_slots = ExportSlots()
        self.gate = GateMemory()
        self.interactive = Pool(
            settings,
            PoolConfig(
                name="interactive",
                size=settings.query_workers,
                threads=settings.query_worker_threads,
                memory_limit=settings.query_worker_memory,
                exports=False,
            ),
        )
        self.bulk = Pool(
            settings,
            PoolConfig(
                name="export",
                size=settings.export_workers,
                threads=settings.export_worker_threads or os.cpu_count() or 1,
                memory_limit=settings.bulk_memory_limit,
                exports=True,
                nice=settings.export_worker_nice,
            ),
        )

    def start(self) -> None:
        for directory in (self.settings.spill_dir, self.settings.export_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # Workers of a backend that ended without its shutdown: called after the database is
        # open, so no other backend uses this data dir.
        for stale in self.settings.spill_dir.glob(f"{WORKER_DIR_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        errors: list[BaseException] = []

        def run(pool: Pool) -> None:
            try:
                pool.start()
            except BaseException as exc:
                errors.append(exc)

        pools = [threading.Thread(target=run, args=(p,)) for p in (self.interactive, self.bulk)]
        for thread in pools:
            thread.start()
        for thread in pools:
            thread.join()
        if errors:
            self.close()
            raise errors[0]

    def close(self) -> None:
        self.interactive.close()
        self.bulk.close()
