"""Admission of heavy work: uploads, exports, profiles and backups take turns.

Under load, heavy requests (a load, an export's query, a profile's full scans, a backup) take
the cores that pages, facets and queries need, and every person waits. So each heavy request
takes one of MYAPP_HEAVY_SLOTS before it starts, or waits for one in a queue of at most
MYAPP_HEAVY_QUEUE for up to MYAPP_HEAVY_WAIT_S; past the queue or the wait it is answered 503
`server_busy` with a `Retry-After` header, which the client (myapp.client) and the CLI honour.
Interactive requests never pass through here.

A caller may ask to wait less than MYAPP_HEAVY_WAIT_S with `Prefer: wait=N` (RFC 7240): the
frontend does, so that its page threads, a few per process, are not held in this queue while
pages wait for a thread; the browser gets the 503 and its Retry-After instead.

Where a slot is held:
- exports, profiles, backups and the load of a staged upload: from before the route runs until
  the answer starts (`HeavyAdmission` releases at `http.response.start`). An export starts
  answering once its query runs and the first bytes are written; the rest streams at the
  client's pace without a slot (the export worker pool and the spool bound that part).
- uploads with a body (`PUT /api/datasets/{name}`, `POST /api/datasets`): only around the load,
  after the body has been received (routes/datasets.py). A slow sender holds no slot, and the
  503 comes after the body, so the client always reads it (a server that answers before reading
  a big body gets its connection closed under the client's feet).

Everything runs on the event loop: no locks.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import AppError, error_response

# Heavy requests admitted by the middleware, by method and path. Uploads with a body take
# their slot in the route, after the body (see above); Parquet data URLs are left out: a
# reader (DuckDB, a notebook) sends many small range requests and each must stay quick.
HEAVY_ROUTES: tuple[tuple[frozenset[str], re.Pattern[str]], ...] = tuple(
    (frozenset(methods), re.compile(pattern))
    for methods, pattern in (
        (("GET", "POST"), r"^/api/query/export$"),
        (("GET",), r"^/api/datasets/[^/]+/export$"),
        (("GET",), r"^/api/datasets/[^/]+/profile$"),
        (("GET",), r"^/api/queries/[^/]+/export$"),
        (("GET",), r"^/api/dashboards/[^/]+/tiles/[^/]+/export$"),
        (("GET",), r"^/api/shared/export$"),
        (("GET",), r"^/api/shared/tiles/[^/]+/export$"),
        (("POST",), r"^/api/admin/backup$"),
        (("POST",), r"^/api/uploads/[^/]+/load$"),
    )
)
# Retry-After bounds: never "now" (the client would knock again at once), never more than a
# person would wait for before giving up.
RETRY_AFTER_MIN_S = 1
RETRY_AFTER_MAX_S = 60
# `Prefer: wait=N` (RFC 7240), seconds.
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
# Weight of the newest hold time in the running average the Retry-After estimate uses.
HOLD_SMOOTHING = 0.2


class ServerBusy(AppError):
    status_code, code = 503, "server_busy"


def is_heavy(method: str, path: str) -> bool:
    return any(method in methods and pattern.match(path) for methods, pattern in HEAVY_ROUTES)


def preferred_wait(prefer: str | None) -> float | None:
    """The seconds of a `Prefer: wait=N` header, None without one."""
    match = _PREFER_WAIT.search(prefer or "")
    return float(match.group(1)) if match else None


class HeavyWork:
    """The slots and the queue (first come, first served); counts for the metrics."""

    def __init__(self, slots: int, queue: int, wait_s: float) -> None:
        self.slots = slots
        self.queue = queue
        self.wait_s = wait_s
        self.running = 0
        self.refused = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        # How long a slot is held, on average (seconds): the Retry-After estimate.
        self._hold_s = 1.0

    @property
    def waiting(self) -> int:
        return sum(1 for fut in self._waiters if not fut.done())

    def retry_after_s(self) -> int:
        """Seconds until a slot is likely free for one more request."""
        turns = (self.waiting + 1) / self.slots
        estimate = math.ceil(self._hold_s * turns)
        return max(RETRY_AFTER_MIN_S, min(RETRY_AFTER_MAX_S, estimate))

    def _busy(self, waited: float | None) -> ServerBusy:
        self.refused += 1
        retry = self.retry_after_s()
        why = "the queue is full" if waited is None else f"this one waited {waited:g} s"
        return ServerBusy(
            f"The server is busy with other uploads, exports and profiles ({self.running} "
            f"running, {self.waiting} waiting; {why}): try again in {retry} s.",
            detail={"retry_after_s": retry, "running": self.running, "waiting": self.waiting},
            headers={"Retry-After": str(retry)},
        )

    async def acquire(self, wait_s: float | None = None) -> float:
        """Take a slot (waiting in the queue if need be, for at most MYAPP_HEAVY_WAIT_S or
        `wait_s` if less); when it was taken. ServerBusy when the queue is full or the wait runs
        out."""
        if self.running < self.slots and not self.waiting:
            self.running += 1
            return time.monotonic()
        wait_s = self.wait_s if wait_s is None else min(wait_s, self.wait_s)
        if self.waiting >= self.queue or wait_s <= 0:
            raise self._busy(waited=None)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), wait_s)
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                # The slot came in the same instant as the time limit: take it after all.
                return time.monotonic()
            fut.cancel()
            raise self._busy(waited=wait_s) from None
        except BaseException:
            # Cancelled (the client went away): a slot handed over meanwhile passes on.
            if fut.done() and not fut.cancelled():
                self.release(time.monotonic())
            else:
                fut.cancel()
            raise
        finally:
            if fut in self._waiters and fut.done():
                self._waiters.remove(fut)
        return time.monotonic()

    def release(self, taken: float) -> None:
        """Give the slot back: to the first in the queue, or free."""
        held = time.monotonic() - taken
        self._hold_s += HOLD_SMOOTHING * (held - self._hold_s)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.running -= 1

    @asynccontextmanager
    async def slot(self, wait_s: float | None = None) -> AsyncIterator[None]:
        taken = await self.acquire(wait_s)
        try:
            yield
        finally:
            self.release(taken)


class HeavyAdmission:
    """ASGI middleware: heavy routes (HEAVY_ROUTES) take a slot before the app runs and give it
    back when the answer starts, or when the app ends without one."""

    def __init__(self, app: ASGIApp, heavy: HeavyWork) -> None:
        self.app = app
        self.heavy = heavy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_heavy(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        prefer = next((v for k, v in scope["headers"] if k == b"prefer"), b"")
        try:
            taken = await self.heavy.acquire(preferred_wait(prefer.decode("latin-1")))
        except ServerBusy as exc:
            refusal = error_response(exc.status_code, exc.code, exc.message, exc.detail)
            refusal.headers.update(exc.headers or {})
            await refusal(scope, receive, send)
            return
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                self.heavy.release(taken)

        async def send_releasing(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The answer starts: the rest is the client's pace, not the server's work.
                give_back()
            await send(message)

        try:
            await self.app(scope, receive, send_releasing)
        finally:
            give_back()
