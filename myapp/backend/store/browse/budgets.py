"""Time budgets for the queries of browsing: one thread interrupts the cursors whose time is up."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import duckdb

from ...errors import AppError

INTERRUPT_REPEAT_S = 0.05
# The longest the watcher sleeps: a block whose time is up later than its next wake-up adds
# itself without waking it (a wake-up per page was a thread switch per request; idle, the
# watcher wakes this often and finds nothing to do).
MAX_SLEEP_S = 0.5


class QueryTimeout(AppError):
    status_code, code = 503, "query_timeout"


class _Budgets:
    """One thread that interrupts the cursors whose time is up, for every `time_budget` block.

    A thread of its own per block cost a start and a join per page, facets or count (py-spy on
    unsorted pages of 1M rows: 16% of the request's samples waiting in Thread.join under load).
    A block's cursor is interrupted only while the block runs: leaving takes the lock the
    interrupts are sent under, so no interrupt reaches a later query on the same cursor.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._entries: dict[int, tuple[float, duckdb.DuckDBPyConnection]] = {}
        self._next_id = 0
        self._thread: threading.Thread | None = None
        # When the watcher wakes next, at the latest (monotonic seconds).
        self._wake_at = 0.0

    def add(self, cur: duckdb.DuckDBPyConnection, seconds: float) -> int:
        with self._lock:
            self._next_id += 1
            deadline = time.monotonic() + seconds
            self._entries[self._next_id] = (deadline, cur)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="query-budget", daemon=True)
                self._thread.start()
            if deadline < self._wake_at:
                self._wake.notify()
            return self._next_id

    def remove(self, entry: int) -> None:
        with self._lock:
            self._entries.pop(entry, None)

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                wait = MAX_SLEEP_S
                for deadline, cur in self._entries.values():
                    if deadline <= now:
                        # Repeated until the block ends: an interrupt that arrives before
                        # DuckDB has started the query is lost.
                        with suppress(Exception):  # a closed cursor
                            cur.interrupt()
                        wait = min(wait, INTERRUPT_REPEAT_S)
                    else:
                        wait = min(wait, deadline - now)
                self._wake_at = now + wait
                self._wake.wait(wait)


_BUDGETS = _Budgets()


@contextmanager
def time_budget(cur: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
    """Interrupt the cursor's query after `seconds` (the configuration is locked: no SET),
    again and again until the block ends."""
    entry = _BUDGETS.add(cur, seconds)
    try:
        yield
    finally:
        _BUDGETS.remove(entry)
