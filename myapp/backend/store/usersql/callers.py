"""Runs per caller: no one caller holds every query worker, or piles up runs without end.

A worker is held for as long as its statement runs, up to the time limit; with a few workers,
one viewer sending slow queries in parallel (or anyone with public read, or the holder of a
share link) would otherwise leave everyone else waiting and then answered 503 `busy`. Each
caller may hold at most all workers but one of the interactive pool at once (at least one);
its further runs wait for one of its own to end, within their own time limit, so a dashboard
whose tiles load together still loads. Past MYAPP_MAX_QUERIES_PER_USER runs running or waiting
at once, the next is answered 429 `too_many_queries` with Retry-After.

Who the caller is: the account; for callers without one (public read, share links), their
address, so two visitors of a public page do not share one allowance. MYAPP_ADMIN_TOKEN and
open mode (the operator, on loopback) are not limited. The access gate sets CALLER for the
request; the runs read it here, in whatever thread the request's handler runs in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from myapp.settings import Settings

from ...errors import AppError

CALLER: ContextVar[str | None] = ContextVar("myapp_usersql_caller", default=None)
POLL_S = 0.1


def too_many(settings: Settings) -> AppError:
    return AppError(
        f"You already have {settings.max_queries_per_user} queries running or waiting; wait "
        "for one to finish (or cancel one), then try again.",
        code="too_many_queries",
        status_code=429,
        detail={"max_queries_per_user": settings.max_queries_per_user},
        headers={"Retry-After": "5"},
    )


def own_share_busy(settings: Settings) -> AppError:
    return AppError(
        "Your other queries kept the query workers busy for as long as this query may run; "
        "wait for them to finish (or cancel one), then try again.",
        code="too_many_queries",
        status_code=429,
        detail={"max_queries_per_user": settings.max_queries_per_user},
        headers={"Retry-After": "5"},
    )


class Callers:
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._admitted: dict[str, int] = {}
        self._holding: dict[str, int] = {}

    def admit(self, settings: Settings, caller: str | None) -> Callable[[], None]:
        """Count a run of `caller` (running or waiting); 429 past the allowance. Returns the
        release, to call once the run is over."""
        if caller is None:
            return lambda: None
        with self._lock:
            if self._admitted.get(caller, 0) >= settings.max_queries_per_user:
                raise too_many(settings)
            self._admitted[caller] = self._admitted.get(caller, 0) + 1
        return _release_once(self._lock, self._admitted, caller)

    def hold(
        self,
        settings: Settings,
        caller: str | None,
        share: int,
        wait_s: float,
        stopped: Callable[[], bool],
    ) -> Callable[[], None] | None:
        """Wait until `caller` holds fewer than `share` workers, then count one more. None when
        `stopped()` (the run was cancelled or timed out) before that; 429 when `wait_s` passed."""
        if caller is None:
            return lambda: None
        deadline = time.monotonic() + wait_s
        with self._lock:
            while self._holding.get(caller, 0) >= share:
                if stopped():
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise own_share_busy(settings)
                self._lock.wait(min(left, POLL_S))
            self._holding[caller] = self._holding.get(caller, 0) + 1
        return self._release_hold(caller)

    def _release_hold(self, caller: str) -> Callable[[], None]:
        """The release of one held worker of `caller` (counted under the lock by the caller);
        calling it twice releases once."""
        return _release_once(self._lock, self._holding, caller, self._lock.notify_all)

    def try_hold(self, caller: str | None, share: int) -> Callable[[], None] | None:
        """`hold` without waiting: the release, or None when `caller` holds its share now."""
        if caller is None:
            return lambda: None
        with self._lock:
            if self._holding.get(caller, 0) >= share:
                return None
            self._holding[caller] = self._holding.get(caller, 0) + 1
        return self._release_hold(caller)


@contextmanager
def admitted(callers: Callers, settings: Settings) -> Iterator[None]:
    """Count the work of this request (a page of rows, facets, a profile: SQL of the backend's
    own that holds one of its threads until its time limit) against the caller's allowance,
    so one caller's parallel requests cannot take every thread the backend serves with."""
    release = callers.admit(settings, CALLER.get())
    try:
        yield
    finally:
        release()


def worker_share(pool_size: int) -> int:
    """Workers one caller may hold at once: all but one, so another caller always finds one."""
    return max(1, pool_size - 1)


class ExportSlots:
    """Exports running per account: each holds a bulk worker and disk until its client is done,
    so one account cannot take them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: dict[str, int] = {}

    def take(self, settings: Settings, owner: str | None) -> Callable[[], None]:
        # Callers without an account count by address (callers.py), not all together: one
        # anonymous visitor must not use up every other visitor's exports.
        key = CALLER.get() or owner or "anonymous"
        with self._lock:
            if self._count.get(key, 0) >= settings.max_exports_per_user:
                raise AppError(
                    f"You already have {settings.max_exports_per_user} exports running; wait "
                    "for one to finish downloading, then try again.",
                    code="too_many_exports",
                    status_code=429,
                    detail={"max_exports_per_user": settings.max_exports_per_user},
                    headers={"Retry-After": "10"},
                )
            self._count[key] = self._count.get(key, 0) + 1
        return _release_once(self._lock, self._count, key)


def _release_once(
    lock: threading.Lock | threading.Condition,
    counts: dict[str, int],
    key: str,
    after: Callable[[], None] | None = None,
) -> Callable[[], None]:
    """The release of one unit counted for `key` (under `lock`, by the caller); calling it
    twice releases once. `after` runs under the lock (a Condition's notify_all)."""
    done = threading.Event()

    def release() -> None:
        if done.is_set():
            return
        done.set()
        with lock:
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]
            if after is not None:
                after()

    return release
