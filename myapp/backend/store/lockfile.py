"""Waiting for another process's lock on the database file, with one message for both waits.

DuckDB takes a POSIX write lock on its file; a second process opening it fails. The serving
process tests the lock with fcntl before it forks workers (without importing duckdb), and the
database retries its own open for the same bounded time (an old container may still be
finishing during a rolling deploy). Both give up with `DatabaseLockedError` and this message.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("myapp.backend.database")

# Re-try interval while another process holds the database file's lock.
LOCK_RETRY_INTERVAL_S = 0.5


class DatabaseLockedError(RuntimeError):
    """Another process holds the database file for longer than the configured wait."""


def locked_message(path: Path, timeout_s: float) -> str:
    return (
        f"the database file {path} is locked by another process (waited {timeout_s:g} s, "
        "MYAPP_LOCK_TIMEOUT_S); only one backend may open it at a time: stop the other backend "
        "and start again"
    )


def warn_waiting(path: Path, timeout_s: float) -> None:
    log.warning("database %s is locked by another process; waiting up to %g s", path, timeout_s)


def wait_for_lock(path: Path, timeout_s: float) -> None:
    """Wait until no other process holds DuckDB's lock on `path` (OSError if it cannot be
    opened at all, DatabaseLockedError after `timeout_s`)."""
    if not path.exists():
        return
    deadline = time.monotonic() + timeout_s
    warned = False
    while True:
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.lockf(fd, fcntl.LOCK_UN)
            return
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
        finally:
            os.close(fd)
        if time.monotonic() >= deadline:
            raise DatabaseLockedError(locked_message(path, timeout_s))
        if not warned:
            warn_waiting(path, timeout_s)
            warned = True
        time.sleep(LOCK_RETRY_INTERVAL_S)
