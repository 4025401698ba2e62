"""Sign-in throttling: failures counted per account and per client address."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

# Login throttling: failures counted per account and per client address over a window. The
# account limit stops guessing one password; the address limit stops spraying many accounts.
LOGIN_WINDOW_S = 600
LOGIN_FAILURES_PER_ACCOUNT = 10
LOGIN_FAILURES_PER_ADDRESS = 30
# Bounds the limiter's memory when many names or addresses are tried.
LOGIN_LIMITER_MAX_KEYS = 50_000


class LoginLimiter:
    """Counts failed sign-ins in memory: the backend is exactly one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _limits(self, username: str, address: str) -> list[tuple[str, int]]:
        return [
            (f"account:{username}", LOGIN_FAILURES_PER_ACCOUNT),
            (f"address:{address}", LOGIN_FAILURES_PER_ADDRESS),
        ]

    def _prune(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - LOGIN_WINDOW_S:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds to wait before the next attempt may be checked, or None if it may now."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key, limit in self._limits(username, address):
                failures = self._prune(key, now)
                if failures is not None and len(failures) >= limit:
                    wait = max(wait, failures[-limit] + LOGIN_WINDOW_S - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) >= LOGIN_LIMITER_MAX_KEYS:
                for key in list(self._failures):
                    self._prune(key, now)
                if len(self._failures) >= LOGIN_LIMITER_MAX_KEYS:
                    # Still full of live entries: forget the oldest half rather than grow.
                    for key in list(self._failures)[: LOGIN_LIMITER_MAX_KEYS // 2]:
                        del self._failures[key]
            for key, limit in self._limits(username, address):
                self._failures.setdefault(key, deque(maxlen=limit)).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"account:{username}", None)
