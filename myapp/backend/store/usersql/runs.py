"""The runs of user SQL in this process: registry, status, cancel and the time-limit watchdog.

A run's statement executes in a worker process (workers.py); stopping a run (a cancel, or its
time limit passing) kills that worker, which a thread running DuckDB could never be made to do
reliably: a single function call over a huge input is not interruptible.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from myapp.settings import Settings

from ...errors import AppError, Conflict, NotFound
from .callers import CALLER

log = logging.getLogger("myapp.backend.query")

# Finished runs stay visible to GET /api/query/{id} for a while, so a client polling progress
# learns how its query ended; bounded so the registry cannot grow without end.
FINISHED_RUN_TTL_S = 300.0
MAX_FINISHED_RUNS = 1000
# How often the watchdog checks deadlines; a timed-out query is answered within this plus the
# time to kill its worker (measured: a few milliseconds).
WATCHDOG_INTERVAL_S = 0.1


@dataclass(eq=False)
class Run:
    """One run of user SQL. `stopper` ends what runs it (kills its worker); progress comes
    from the worker while it runs."""

    id: str
    kind: str
    owner: str | None
    deadline: float
    limit_ms: int
    stopper: Callable[[], None] | None = None
    last_progress: float | None = None
    paused_at: float | None = None
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    state: str = "running"
    stop_reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Who started it (callers.py): an account, or an address for callers without one.
    caller: str | None = None

    @property
    def active(self) -> bool:
        return self.ended is None

    def stop(self, reason: str) -> bool:
        """Stop the run; True if it was still running."""
        with self.lock:
            if not self.active:
                return False
            if self.stop_reason is None:
                self.stop_reason = reason
            stopper = self.stopper
        if stopper is not None:
            stopper()
        return True

    def use(self, stopper: Callable[[], None] | None) -> None:
        """What stops the run from now on (None: nothing is running for it right now)."""
        with self.lock:
            self.stopper = stopper
            stopped = self.stop_reason is not None and self.active
        if stopped and stopper is not None:
            stopper()

    def report(self, progress: float) -> None:
        self.last_progress = progress

    def pause(self, paused: bool) -> None:
        """Stop or restart the clock: an export waiting for its client is not DuckDB's time."""
        with self.lock:
            now = time.monotonic()
            if paused and self.paused_at is None:
                self.paused_at = now
            elif not paused and self.paused_at is not None:
                self.deadline += now - self.paused_at
                self.paused_at = None

    def progress(self) -> float | None:
        if not self.active:
            return 100.0 if self.state == "finished" else None
        value = self.last_progress
        return round(min(value, 100.0), 1) if value is not None and value >= 0 else None

    def end(self, state: str) -> None:
        with self.lock:
            self.ended = time.monotonic()
            self.state = state
            self.stopper = None

    def elapsed_ms(self) -> float:
        return round(((self.ended or time.monotonic()) - self.started) * 1000, 1)

    def raise_if_stopped(self) -> None:
        if self.stop_reason:
            raise self.stopped_error()

    def stopped_error(self) -> AppError:
        if self.stop_reason == "timeout":
            return AppError(
                f"The query ran longer than its time limit of {self.limit_ms / 1000:g} s and was "
                "stopped; filter the data further, or aggregate before selecting.",
                code="query_timeout",
                status_code=400,
                detail={"timeout_ms": self.limit_ms},
            )
        return AppError(
            "The query was cancelled.",
            code="query_cancelled",
            status_code=409,
        )

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "progress": self.progress(),
            "elapsed_ms": self.elapsed_ms(),
            "kind": self.kind,
        }


class Registry:
    """The runs of this process: for progress, cancel and the time limit watchdog."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._active: dict[str, Run] = {}
        # Ended runs in the order they ended, so forgetting old ones never scans them all.
        self._ended: deque[Run] = deque()
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None

    def start(
        self,
        run_id: str,
        *,
        kind: str,
        owner: str | None,
        limit_ms: int,
    ) -> Run:
        run = Run(
            id=run_id,
            kind=kind,
            owner=owner,
            deadline=time.monotonic() + limit_ms / 1000,
            limit_ms=limit_ms,
            caller=CALLER.get(),
        )
        with self._lock:
            if run_id in self._active:
                raise Conflict(
                    f"A query with id {run_id} is already running; use a new id for each run.",
                    code="query_id_in_use",
                )
            self._forget_old()
            self._runs[run_id] = run
            self._active[run_id] = run
            if self._watchdog is None or not self._watchdog.is_alive():
                self._watchdog = threading.Thread(
                    target=self._watch, name="myapp-query-watchdog", daemon=True
                )
                self._watchdog.start()
        return run

    def finish(self, run: Run, state: str) -> None:
        run.end(state)
        with self._lock:
            if self._active.get(run.id) is run:
                del self._active[run.id]
            self._ended.append(run)

    def get(self, run_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def active(self) -> list[Run]:
        with self._lock:
            return list(self._active.values())

    def _forget_old(self) -> None:
        now = time.monotonic()
        while self._ended and (
            len(self._ended) > MAX_FINISHED_RUNS
            or now - (self._ended[0].ended or now) > FINISHED_RUN_TTL_S
        ):
            run = self._ended.popleft()
            if self._runs.get(run.id) is run:
                del self._runs[run.id]

    def _watch(self) -> None:
        while True:
            time.sleep(WATCHDOG_INTERVAL_S)
            now = time.monotonic()
            for run in self.active():
                try:
                    if not run.stop_reason and run.paused_at is None and now >= run.deadline:
                        run.stop("timeout")
                except Exception:  # a watchdog that dies would leave runaways running
                    log.exception("query watchdog failed on run %s", run.id)


def effective_timeout_ms(settings: Settings, requested: int | None) -> int:
    limit = settings.query_timeout_ms
    return min(requested, limit) if requested else limit


def new_run_id(given: Any = None) -> str:
    return str(given) if given else str(uuid.uuid4())


# -- status and cancel ---------------------------------------------------------------------------
def get_run(registry: Registry, run_id: str, *, actor_name: str | None, is_admin: bool) -> Run:
    run = registry.get(run_id)
    # Callers without an account all have the name None: they are told apart by address, so
    # one anonymous visitor cannot read or cancel another's run (or a share link's, or the
    # admin token's).
    mine = (run is not None and run.owner is not None and run.owner == actor_name) or (
        run is not None and run.caller is not None and run.caller == CALLER.get()
    )
    if run is None or not (is_admin or mine):
        raise NotFound(
            f"There is no query with id {run_id}: it never ran here, or finished a while ago.",
            code="query_not_found",
        )
    return run
