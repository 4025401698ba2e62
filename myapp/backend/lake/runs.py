"""Query runs shared between the backends of a lake: a run started through one backend can be
watched and cancelled through any other.

A run executes where it started (its worker is that backend's child process). Each backend
publishes the status of its runs to `myapp_internal.query_runs` every PUBLISH_INTERVAL_S and
at their end, and stops the runs another backend has marked for cancelling there. A backend
asked about a run it does not have reads that table (store/usersql/runs.py answers for its
own runs, as in the embedded mode).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import duckdb

from ..errors import Conflict, NotFound
from ..store.usersql.callers import CALLER
from ..store.usersql.runs import FINISHED_RUN_TTL_S, Registry
from .catalog import INTERNAL
from .engine import CatalogTask

log = logging.getLogger("myapp.backend.lake")

_TABLE = f'"{INTERNAL}".query_runs'
# How stale a status read through another backend may be, and how soon a cancel made through
# another backend reaches the run.
PUBLISH_INTERVAL_S = 0.25
# Tries of a cancel that met the run's own status write, 50 ms more apart each time (1.4 s in
# all: several publishing intervals).
CANCEL_ATTEMPTS = 8


class SharedRuns(CatalogTask):
    """This backend's side: publishes its runs and obeys cancels made elsewhere."""

    interval_s = PUBLISH_INTERVAL_S
    failing_words = "share query runs"
    recovered_words = "query runs are shared again"

    def __init__(self, database: Callable[[], Any], registry: Registry) -> None:
        super().__init__("lake-runs")
        self._database = database
        self._registry = registry
        self.backend = uuid.uuid4().hex[:12]
        self._tracked: set[str] = set()
        self._last_purge = 0.0

    def tick(self) -> None:
        active = {run.id: run for run in self._registry.active()}
        ended = [self._registry.get(run_id) for run_id in self._tracked - active.keys()]
        runs = [*active.values(), *(r for r in ended if r is not None)]
        now = time.time()
        with self._database().cursor() as cur:
            for run in runs:
                cur.execute(
                    f"INSERT INTO {_TABLE} (id, backend, owner, caller, state, status, "
                    "cancel, updated_at) VALUES ($id, $backend, $owner, $caller, $state, "
                    "$status, false, $now) ON CONFLICT (id) DO UPDATE SET "
                    "state = excluded.state, status = excluded.status, "
                    "updated_at = excluded.updated_at",
                    {
                        "id": run.id,
                        "backend": self.backend,
                        "owner": run.owner,
                        "caller": run.caller,
                        "state": run.state,
                        "status": json.dumps(run.status()),
                        "now": now,
                    },
                )
            self._tracked = set(active)
            cancelled = cur.execute(
                f"SELECT id FROM {_TABLE} WHERE backend = $b AND cancel AND state = 'running'",
                {"b": self.backend},
            ).fetchall()
            for (run_id,) in cancelled:
                run = active.get(run_id)
                if run is not None:
                    run.stop("cancel")
            if now - self._last_purge > 60:
                self._last_purge = now
                cur.execute(
                    f"DELETE FROM {_TABLE} WHERE updated_at < $old",
                    {"old": now - FINISHED_RUN_TTL_S},
                )


def _find(cur: duckdb.DuckDBPyConnection, run_id: str, actor_name: str | None, is_admin: bool):
    row = cur.execute(
        f"SELECT owner, caller, state, status FROM {_TABLE} WHERE id = $id", {"id": run_id}
    ).fetchone()
    mine = row is not None and (
        (row[0] is not None and row[0] == actor_name)
        or (row[1] is not None and row[1] == CALLER.get())
    )
    if row is None or not (is_admin or mine):
        raise NotFound(
            f"There is no query with id {run_id}: it never ran here, or finished a while ago.",
            code="query_not_found",
        )
    return row


def status(database: Any, run_id: str, *, actor_name: str | None, is_admin: bool) -> dict:
    """The status of a run of another backend, as it last published it."""
    with database.cursor() as cur:
        row = _find(cur, run_id, actor_name, is_admin)
    status = row[3] if isinstance(row[3], dict) else json.loads(row[3])
    return status


def cancel(database: Any, run_id: str, *, actor_name: str | None, is_admin: bool) -> None:
    """Mark a run of another backend for cancelling; its backend stops it within
    PUBLISH_INTERVAL_S (its own request then answers 409 query_cancelled)."""
    for attempt in range(CANCEL_ATTEMPTS):
        try:
            with database.transaction() as cur:
                row = _find(cur, run_id, actor_name, is_admin)
                if row[2] != "running":
                    raise Conflict(
                        f"The query has already ended ({row[2].replace('_', ' ')}).",
                        code="query_not_running",
                        detail={"state": row[2]},
                    )
                cur.execute(f"UPDATE {_TABLE} SET cancel = true WHERE id = $id", {"id": run_id})
            return
        except Conflict as exc:
            # The run's backend publishes its status to the same row every
            # PUBLISH_INTERVAL_S: a cancel that meets one of those writes is tried again, not
            # handed to the person as a conflict of theirs.
            if exc.code != "concurrent_change" or attempt == CANCEL_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
