"""Sign-in throttling counted in the catalog, so every backend of a lake counts the same
failures (auth/limiter.py counts in memory, which one backend alone would use).

Same limits, same window and the same interface as auth/limiter.LoginLimiter. Times are wall
clock seconds: the backends are separate machines with no monotonic clock in common.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ..auth.limiter import LOGIN_FAILURES_PER_ACCOUNT, LOGIN_FAILURES_PER_ADDRESS, LOGIN_WINDOW_S
from .catalog import INTERNAL

_TABLE = f'"{INTERNAL}".login_failures'


class SharedLoginLimiter:
    def __init__(self, database: Callable[[], Any], clock: Callable[[], float] = time.time):
        self._database = database
        self._clock = clock

    def _limits(self, username: str, address: str) -> list[tuple[str, int]]:
        return [
            (f"account:{username}", LOGIN_FAILURES_PER_ACCOUNT),
            (f"address:{address}", LOGIN_FAILURES_PER_ADDRESS),
        ]

    def retry_after(self, username: str, address: str) -> int | None:
        now = self._clock()
        limits = dict(self._limits(username, address))
        with self._database().cursor() as cur:
            rows = cur.execute(
                f'SELECT "key", "at" FROM {_TABLE} WHERE list_contains($keys, "key") '
                'AND "at" > $since ORDER BY "at" DESC',
                {"keys": list(limits), "since": now - LOGIN_WINDOW_S},
            ).fetchall()
        wait = 0.0
        for key, limit in limits.items():
            times = [at for k, at in rows if k == key]
            if len(times) >= limit:
                wait = max(wait, times[limit - 1] + LOGIN_WINDOW_S - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        with self._database().transaction() as cur:
            for key, _ in self._limits(username, address):
                cur.execute(
                    f'INSERT INTO {_TABLE} ("key", "at") VALUES ($k, $at)', {"k": key, "at": now}
                )
            # What has left the window is never read again.
            cur.execute(f'DELETE FROM {_TABLE} WHERE "at" <= $old', {"old": now - LOGIN_WINDOW_S})

    def succeeded(self, username: str) -> None:
        with self._database().transaction() as cur:
            cur.execute(f'DELETE FROM {_TABLE} WHERE "key" = $k', {"k": f"account:{username}"})
