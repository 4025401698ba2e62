"""Results of saved queries kept for dashboards and share links, and the runs that fill them.

A result is kept under (saved query, its version, what was asked of it: rows or a chart, the
parameter values, and the data version of every dataset its SQL reads). A dataset's version
grows with every change to it (upload, append, replace, rename, delete: see store/datasets.py,
and a name that comes back never reuses a version), so a changed dataset simply makes the
next lookup miss; the entries that held its older version are dropped at that moment. The SQL
of a saved-query version never changes, so which datasets it reads is learnt once from the
gate (`check_sql`) and remembered.

Runs go through the same entry points a saved-query run uses (`usersql/execute.py:
run_select`, `usersql/charts.py: chart_select`), so they run in the query workers, and time
limits, cancelling and the gate apply unchanged.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from myapp.models.query import MAX_CHART_POINTS
from myapp.models.saved_queries import parameter_json
from myapp.settings import Settings

from ..errors import BadRequest
from .database import Database
from .runlog import Kind, RunLog
from .saved_queries import bind_saved_parameters
from .sql import internal
from .usersql import charts, execute, runs
from .usersql.workers import Workers

# Results kept at once, and the most bytes of JSON they may hold together; the least recently
# used go first. A tile's result is at most TABLE_TILE_ROWS rows or MAX_CHART_POINTS points.
MAX_ENTRIES = 512
MAX_BYTES = 64 * 1024 * 1024
# A result bigger than this is not kept at all: it would push out many small ones.
MAX_ENTRY_BYTES = 8 * 1024 * 1024
MAX_REMEMBERED_QUERIES = 4096


@dataclass
class _Entry:
    value: dict[str, Any]
    size: int
    computed_at: datetime
    datasets: tuple[tuple[str, int | None], ...]


@dataclass
class ResultCache:
    """One per backend app (`app.state.results`); thread-safe, bounded."""

    max_entries: int = MAX_ENTRIES
    max_bytes: int = MAX_BYTES
    _items: OrderedDict[tuple, _Entry] = field(default_factory=OrderedDict)
    _bytes: int = 0
    _reads: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # Set once the database is open (the lifespan): runs are counted in the catalog.
    run_log: RunLog | None = None
    hits: int = 0
    misses: int = 0

    def note_run(self, kind: Kind, slug: str) -> None:
        if self.run_log is not None:
            self.run_log.note(kind, slug)

    def overlay_runs(self, kind: Kind, items: list[dict[str, Any]]) -> None:
        """Add the runs not yet in the catalog to listed items (see RunLog.overlay)."""
        if self.run_log is not None:
            self.run_log.overlay(kind, items)

    def recent_runs(self) -> list[dict[str, Any]]:
        """The last run of each saved query and dashboard, newest first."""
        return self.run_log.recent() if self.run_log is not None else []

    def reads(self, slug: str, version: str) -> frozenset[str] | None:
        with self._lock:
            return self._reads.get((slug, version))

    def remember_reads(self, slug: str, version: str, datasets: frozenset[str]) -> None:
        with self._lock:
            if len(self._reads) >= MAX_REMEMBERED_QUERIES:
                self._reads.clear()
            self._reads[(slug, version)] = datasets

    def get(self, key: tuple) -> _Entry | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: tuple, entry: _Entry) -> None:
        if entry.size > MAX_ENTRY_BYTES:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._items[key] = entry
            self._bytes += entry.size
            while self._items and (
                len(self._items) > self.max_entries or self._bytes > self.max_bytes
            ):
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.size

    def drop_older(self, current: Mapping[str, int | None]) -> int:
        """Drop every entry that holds another version of one of these datasets."""
        with self._lock:
            stale = [
                key
                for key, entry in self._items.items()
                if any(name in current and current[name] != v for name, v in entry.datasets)
            ]
            for key in stale:
                self._bytes -= self._items.pop(key).size
        return len(stale)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._reads.clear()
            self._bytes = 0


def dataset_versions(database: Database, names: frozenset[str]) -> dict[str, int | None]:
    """The data version of each named dataset (None for one that does not exist now)."""
    if not names:
        return {}
    with database.cursor() as cur:
        rows = cur.execute(
            f"SELECT lower(name), version FROM {internal('datasets')} "
            "WHERE list_contains($names, lower(name))",
            {"names": sorted(names)},
        ).fetchall()
    found = dict(rows)
    return {name: found.get(name) for name in sorted(names)}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def run_saved(
    database: Database,
    workers: Workers,
    settings: Settings,
    cache: ResultCache,
    saved: Mapping[str, Any],
    given: Mapping[str, Any] | None,
    *,
    mode: str,
    limit: int | None = None,
    refresh: bool = False,
    owner: str | None,
    run_id: Any = None,
) -> tuple[dict[str, Any], bool, datetime, dict[str, Any]]:
    """(result, whether it came from the cache, when it was computed, the values it ran with)
    of a saved query (one version of it) run for rows (`mode` "rows") or its chart."""
    values = bind_saved_parameters(saved["parameters"], given)
    cache.note_run("query", saved["slug"])
    shown = {name: parameter_json(value) for name, value in values.items()}
    if mode == "chart":
        chart = saved.get("chart")
        if not chart:
            raise BadRequest("This saved query has no chart.", code="no_chart")
        what: tuple = ("chart", _canonical(chart))
    else:
        what = ("rows", limit)
    # The time a version was saved tells a query deleted and made again under the same slug
    # (its version 1 is another text) from the one the cache saw.
    slug, version = saved["slug"], f"{saved['version']}@{saved['updated_at']}"
    reads = cache.reads(slug, version)
    if reads is None:
        # The gate alone names them; binding in a worker is not needed for that.
        reads = execute.vet(database, workers, saved["sql"])[0].datasets
        cache.remember_reads(slug, version, reads)
    versions = dataset_versions(database, reads)
    key = (slug, version, what, _canonical(shown), tuple(versions.items()))
    if not refresh:
        entry = cache.get(key)
        if entry is not None:
            return entry.value, True, entry.computed_at, shown
    cache.drop_older(versions)
    if mode == "chart":
        result = charts.chart_select(
            database,
            workers,
            settings,
            sql=saved["sql"],
            params=values,
            chart=saved["chart"],
            timeout_ms=None,
            run_id=runs.new_run_id(run_id),
            owner=owner,
            max_points=MAX_CHART_POINTS,
        )
    else:
        result = orjson.loads(
            execute.run_select(
                database,
                workers,
                settings,
                sql=saved["sql"],
                params=values,
                limit=limit,
                timeout_ms=None,
                run_id=runs.new_run_id(run_id),
                owner=owner,
            )
        )
    computed_at = datetime.now(UTC)
    size = len(_canonical(result))
    cache.put(key, _Entry(result, size, computed_at, tuple(versions.items())))
    return result, False, computed_at, shown
