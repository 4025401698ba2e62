"""Reloading nginx and knowing when the reload has landed.

`nginx -s reload` returns as soon as the signal is sent. The master then starts new workers and
asks the old ones to finish; until they have exited, a request can reach a worker with the old
configuration. A test that changes the configuration waits for the old workers to be gone, not
for one answer from a new one (the next request may still reach an old worker)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def children(pid: int) -> set[int]:
    """The processes whose parent is pid (read from /proc; no `children` file is needed)."""
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # pid (comm) state ppid …; comm may hold spaces and parentheses: split after the last ')'.
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def reload_and_wait(
    master_pid: int, send_reload: Callable[[], None], timeout_s: float = 30
) -> None:
    """Send a reload to the nginx master and return once every worker it had before is gone and
    new workers run, so every later request is answered by the new configuration."""
    before = children(master_pid)
    send_reload()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        old_left = {pid for pid in before if _alive(pid)}
        if not old_left and children(master_pid) - before:
            return
        time.sleep(0.05)
    raise AssertionError(f"nginx's old workers {sorted(before)} did not exit after the reload")
