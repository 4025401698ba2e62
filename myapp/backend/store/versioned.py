"""The SQL of things kept in numbered versions: saved queries and dashboards.

Each has a head table (one row per slug: `version` is the latest, who made it and when, its
runs) and a versions table (one row per version: the content columns, who saved it and when).
A slug is fixed when the thing is made; every edit adds a version and moves the head; only
deleting the thing removes versions. The rules around these steps are in services/.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from ..errors import NotFound


@dataclass(frozen=True)
class VersionedTables:
    head: str
    versions: str
    # The versions table's content columns, in their order.
    columns: tuple[str, ...]
    # Page addresses under /<things>/ that a slug must not take.
    reserved: frozenset[str]
    # What the thing is called in messages: "saved query", "dashboard".
    label: str

    def not_found(self, slug: str) -> NotFound:
        code = "query_not_found" if self.label == "saved query" else f"{self.label}_not_found"
        return NotFound(f"There is no {self.label} {slug!r}.", code=code)

    def get_row(
        self, cur: duckdb.DuckDBPyConnection, columns: str, slug: str, version: int | None
    ) -> tuple:
        """`columns` (head as h, version as v) of a version, the latest when None; 404s
        naming what is missing."""
        row = cur.execute(
            f"SELECT {columns} FROM {self.head} h JOIN {self.versions} v ON v.slug = h.slug "
            "WHERE h.slug = $slug AND v.version = coalesce($version, h.version)",
            {"slug": slug, "version": version},
        ).fetchone()
        if row is not None:
            return row
        latest = self.latest(cur, slug)
        if latest is None:
            raise self.not_found(slug)
        raise NotFound(
            f"The {self.label} {slug!r} has no version {version}; its versions are 1 to {latest}.",
            code="version_not_found",
        )

    def latest(self, cur: duckdb.DuckDBPyConnection, slug: str) -> int | None:
        row = cur.execute(
            f"SELECT version FROM {self.head} WHERE slug = $slug", {"slug": slug}
        ).fetchone()
        return row[0] if row else None

    def list_latest(
        self, cur: duckdb.DuckDBPyConnection, extra: Mapping[str, str], search: str | None
    ) -> list[dict[str, Any]]:
        """Every thing at its latest version, by title, with the `extra` keys (SQL over h and v)
        after its description; `search` looks in titles, descriptions and slugs."""
        rows = cur.execute(
            f"SELECT h.slug, h.version, v.title, v.description, {', '.join(extra.values())}, "
            "h.created_at, v.created_at, v.created_by, h.last_run_at, coalesce(h.run_count, 0) "
            f"FROM {self.head} h JOIN {self.versions} v "
            "ON v.slug = h.slug AND v.version = h.version "
            "WHERE $q IS NULL OR v.title ILIKE $pattern OR v.description ILIKE $pattern "
            "OR h.slug ILIKE $pattern ORDER BY lower(v.title), h.slug",
            {"q": search or None, "pattern": f"%{escape_like(search or '')}%"},
        ).fetchall()
        keys = (
            "slug",
            "version",
            "title",
            "description",
            *extra,
            "created_at",
            "updated_at",
            "updated_by",
            "last_run_at",
            "run_count",
        )
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def list_versions(self, cur: duckdb.DuckDBPyConnection, slug: str) -> list[dict[str, Any]]:
        rows = cur.execute(
            f"SELECT version, title, created_at, created_by FROM {self.versions} "
            "WHERE slug = $slug ORDER BY version DESC",
            {"slug": slug},
        ).fetchall()
        if not rows:
            raise self.not_found(slug)
        return [
            {"version": v, "title": t, "created_at": at, "created_by": by} for v, t, at, by in rows
        ]

    def slug_taken(self, cur: duckdb.DuckDBPyConnection, slug: str) -> bool:
        return bool(
            cur.execute(f"SELECT 1 FROM {self.head} WHERE slug = $s", {"s": slug}).fetchone()
        )

    def free_slug(self, cur: duckdb.DuckDBPyConnection, stem: str) -> str:
        """`stem`, or `stem-2`, `stem-3`… whichever is free first."""
        taken = {
            row[0]
            for row in cur.execute(
                f"SELECT slug FROM {self.head} WHERE slug = $stem OR starts_with(slug, $prefix)",
                {"stem": stem, "prefix": stem + "-"},
            ).fetchall()
        }
        if stem not in taken and stem not in self.reserved:
            return stem
        number = 2
        while f"{stem}-{number}" in taken:
            number += 1
        return f"{stem}-{number}"

    def create(
        self,
        cur: duckdb.DuckDBPyConnection,
        slug: str,
        values: Mapping[str, Any],
        actor: str | None,
        now: datetime,
    ) -> None:
        """The head row and version 1."""
        cur.execute(
            f"INSERT INTO {self.head} (slug, version, created_at, created_by) "
            "VALUES ($slug, 1, $at, $by)",
            {"slug": slug, "at": now, "by": actor},
        )
        self._insert_version(cur, slug, 1, values, actor, now)

    def append(
        self,
        cur: duckdb.DuckDBPyConnection,
        slug: str,
        version: int,
        values: Mapping[str, Any],
        actor: str | None,
        now: datetime,
    ) -> None:
        """A new latest version."""
        self._insert_version(cur, slug, version, values, actor, now)
        cur.execute(
            f"UPDATE {self.head} SET version = $version WHERE slug = $slug",
            {"version": version, "slug": slug},
        )

    def _insert_version(
        self,
        cur: duckdb.DuckDBPyConnection,
        slug: str,
        version: int,
        values: Mapping[str, Any],
        actor: str | None,
        now: datetime,
    ) -> None:
        names = ", ".join(self.columns)
        slots = ", ".join(f"${column}" for column in self.columns)
        cur.execute(
            f"INSERT INTO {self.versions} (slug, version, {names}, created_at, created_by) "
            f"VALUES ($slug, $version, {slots}, $at, $by)",
            {
                **{column: values[column] for column in self.columns},
                "slug": slug,
                "version": version,
                "at": now,
                "by": actor,
            },
        )

    def delete(self, cur: duckdb.DuckDBPyConnection, slug: str) -> None:
        cur.execute(f"DELETE FROM {self.versions} WHERE slug = $slug", {"slug": slug})
        cur.execute(f"DELETE FROM {self.head} WHERE slug = $slug", {"slug": slug})

    def created_at(self, cur: duckdb.DuckDBPyConnection, slug: str) -> datetime | None:
        row = cur.execute(
            f"SELECT created_at FROM {self.head} WHERE slug = $slug", {"slug": slug}
        ).fetchone()
        return row[0] if row else None


def escape_like(text: str) -> str:
    # ILIKE without ESCAPE treats backslash as the escape character.
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
