"""When each saved query and dashboard last ran, and how many times: kept in the catalog
(`last_run_at`, `run_count` of `saved_queries` and `dashboards`), so the home page's "run
lately" survives a restart.

A run must not wait for a disk write: one autocommitted UPDATE costs ~4 ms on this machine
(DuckDB syncs its WAL on commit), more than a cached dashboard tile takes to answer. So a run
only counts itself in memory, and the counts go to the catalog in one transaction at most once
per `FLUSH_INTERVAL_S`, by whichever run comes after the interval, and at shutdown. Reads add
what is still pending, so a listing right after a run already shows it. What a crash loses is
the last interval's counts, never more.

The flush takes the write lock without waiting (an ingest may hold it for long): when it is
busy the counts stay pending for the next try. It does not move `Database.write_generation`:
run counts are no part of what the token lookups or the query workers' catalogs depend on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import duckdb

from .database import Database
from .sql import internal

log = logging.getLogger(__name__)

Kind = Literal["query", "dashboard"]
TABLES: dict[str, str] = {"query": internal("saved_queries"), "dashboard": internal("dashboards")}
FLUSH_INTERVAL_S = 1.0
# Items `recent()` answers at most.
MAX_RECENT = 200


class RunLog:
    """One per backend app (`app.state.results.run_log`); thread-safe."""

    def __init__(self, database: Database, flush_interval_s: float = FLUSH_INTERVAL_S) -> None:
        self.database = database
        self.flush_interval_s = flush_interval_s
        self._pending: dict[tuple[str, str], tuple[int, datetime]] = {}
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self.flushes = 0

    def note(self, kind: Kind, slug: str) -> None:
        now = datetime.now(UTC)
        with self._lock:
            count, _ = self._pending.get((kind, slug), (0, now))
            self._pending[(kind, slug)] = (count + 1, now)
            due = time.monotonic() - self._last_flush >= self.flush_interval_s
        if due:
            self.flush(wait=False)

    def flush(self, *, wait: bool = True) -> bool:
        """Write the pending counts; False when they stay pending (the write lock was busy,
        or the write failed)."""
        lock = self.database.write_lock
        if not lock.acquire(blocking=wait):
            return False
        try:
            with self._lock:
                pending, self._pending = self._pending, {}
                self._last_flush = time.monotonic()
            if not pending:
                return True
            try:
                with self.database.cursor() as cur:
                    cur.execute("BEGIN TRANSACTION")
                    try:
                        for (kind, slug), (count, at) in pending.items():
                            cur.execute(
                                f"UPDATE {TABLES[kind]} SET run_count = coalesce(run_count, 0) "
                                "+ $count, last_run_at = greatest(coalesce(last_run_at, $at), "
                                "$at) WHERE slug = $slug",
                                {"count": count, "at": at, "slug": slug},
                            )
                        cur.execute("COMMIT")
                    except BaseException:
                        cur.execute("ROLLBACK")
                        raise
            except duckdb.Error as exc:
                log.warning("could not record %d saved-query runs: %s", len(pending), exc)
                self._restore(pending)
                return False
            self.flushes += 1
            return True
        finally:
            lock.release()

    def _restore(self, pending: dict[tuple[str, str], tuple[int, datetime]]) -> None:
        with self._lock:
            for key, (count, at) in pending.items():
                later_count, later_at = self._pending.get(key, (0, at))
                self._pending[key] = (count + later_count, max(at, later_at))

    def overlay(self, kind: Kind, items: Iterable[dict[str, Any]]) -> None:
        """Add the runs not yet written to listed items (`slug`, `last_run_at`, `run_count`)."""
        with self._lock:
            pending = {slug: value for (k, slug), value in self._pending.items() if k == kind}
        if not pending:
            return
        for item in items:
            extra = pending.get(item["slug"])
            if extra is None:
                continue
            count, at = extra
            item["run_count"] = (item.get("run_count") or 0) + count
            stored = item.get("last_run_at")
            item["last_run_at"] = at if stored is None else max(stored, at)

    def recent(self, limit: int = MAX_RECENT) -> list[dict[str, Any]]:
        """The saved queries and dashboards that ran, newest run first."""
        with self.database.cursor() as cur:
            rows = cur.execute(
                f"SELECT 'query', slug, last_run_at, run_count FROM {TABLES['query']} "
                "WHERE last_run_at IS NOT NULL UNION ALL "
                f"SELECT 'dashboard', slug, last_run_at, run_count FROM {TABLES['dashboard']} "
                "WHERE last_run_at IS NOT NULL ORDER BY 3 DESC LIMIT $limit",
                {"limit": limit},
            ).fetchall()
        items = [{"kind": k, "slug": s, "at": at, "count": n or 0} for k, s, at, n in rows]
        with self._lock:
            pending = dict(self._pending)
        known = {(item["kind"], item["slug"]): item for item in items}
        for (kind, slug), (count, at) in pending.items():
            item = known.get((kind, slug))
            if item is None:
                # Only if it still exists: a run of what was deleted meanwhile is not listed.
                with self.database.cursor() as cur:
                    exists = cur.execute(
                        f"SELECT 1 FROM {TABLES[kind]} WHERE slug = $slug", {"slug": slug}
                    ).fetchone()
                if exists:
                    items.append({"kind": kind, "slug": slug, "at": at, "count": count})
            else:
                item["count"] += count
                item["at"] = max(item["at"], at)
        items.sort(key=lambda item: item["at"], reverse=True)
        return items[:limit]
