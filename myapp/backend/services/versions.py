"""Saving in numbered versions, for saved queries and dashboards alike: create, edit,
restore and delete, each refusing a stale edit, audited in its own transaction.

Each resource describes itself with a `Versioned` (its tables, how to read one, how its
content is stored); its own rules (checks of the content, titles) come in as callables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import BadRequest, Conflict
from ..store import audit
from ..store.database import Cursor, Database
from ..store.versioned import VersionedTables

Fields = Mapping[str, Any]


@dataclass(frozen=True)
class Versioned:
    tables: VersionedTables
    # In messages about edits: "query", "dashboard"; in audit actions: "query.created"…
    noun: str
    # The fields a version holds.
    content: tuple[str, ...]
    get: Callable[[Database, str, int | None], dict[str, Any]]
    to_values: Callable[[Fields], dict[str, Any]]
    slugify: Callable[[str], str]
    # Two versions side by side (`store/<resource>.py: diff_versions`).
    differ: Callable[[Database, str, int, int], dict[str, Any]]
    # The resource's check of a version's content, run on edits and restores (None: none here).
    check: Callable[[Database, Fields], None] | None = None

    def _stale(self, current: Mapping[str, Any], base_version: int | None, then: str):
        if base_version is not None and base_version != current["version"]:
            raise Conflict(
                f"The {self.noun} was changed by someone else since version {base_version}: it is "
                f"now at version {current['version']}. {then}",
                code="version_conflict",
                detail={"latest_version": current["version"]},
            )

    def create(
        self,
        database: Database,
        fields: Fields,
        *,
        actor: str | None,
        audit_actor: str | None,
        ip: str | None,
        before: Callable[[Cursor], None] | None = None,
    ) -> dict[str, Any]:
        """Version 1 under the slug asked for, or a free one derived from the title.

        `actor` is the account (kept as the author), `audit_actor` the name the audit log uses for
        the caller (also for callers without an account); `before` runs first in the transaction.
        """
        now = datetime.now(UTC)
        tables = self.tables
        with database.transaction() as cur:
            if before is not None:
                before(cur)
            wanted = fields.get("slug")
            if wanted:
                if wanted in tables.reserved:
                    raise BadRequest(f"The slug {wanted!r} is reserved; choose another.")
                if tables.slug_taken(cur, wanted):
                    raise Conflict(
                        f"A {tables.label} with the slug {wanted!r} already exists; choose "
                        "another, or leave the slug out to derive a free one from the title.",
                        code="slug_taken",
                    )
                slug = wanted
            else:
                slug = tables.free_slug(cur, self.slugify(fields["title"]))
            tables.create(cur, slug, self.to_values(fields), actor, now)
            audit.record(
                cur,
                actor=audit_actor,
                action=f"{self.noun}.created",
                target=slug,
                ip=ip,
                detail={"version": 1, "title": fields["title"]},
            )
        return self.get(database, slug, None)

    def _append(
        self,
        database: Database,
        slug: str,
        fields: Fields,
        *,
        expected: int | None,
        changed_meanwhile: str,
        action: str,
        detail: dict[str, Any],
        actor: str | None,
        audit_actor: str | None,
        ip: str | None,
        before: Callable[[Cursor], None] | None = None,
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        with database.transaction() as cur:
            latest = self.tables.latest(cur, slug)
            if latest is None:
                raise self.tables.not_found(slug)
            if expected is not None and expected != latest:
                raise Conflict(
                    changed_meanwhile, code="version_conflict", detail={"latest_version": latest}
                )
            if before is not None:
                before(cur)
            version = latest + 1
            self.tables.append(cur, slug, version, self.to_values(fields), actor, now)
            audit.record(
                cur,
                actor=audit_actor,
                action=f"{self.noun}.{action}",
                target=slug,
                ip=ip,
                detail={"version": version, **detail, "title": fields["title"]},
            )
        return self.get(database, slug, None)

    def update(
        self,
        database: Database,
        slug: str,
        fields: Fields,
        *,
        base_version: int | None,
        actor: str | None,
        audit_actor: str | None,
        ip: str | None,
        same: Callable[[Mapping[str, Any], Fields], bool],
        before: Callable[[Cursor, Mapping[str, Any]], None] | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Save an edit as a new version; (thing, True) when a version was added, False when the
        edit changed nothing (`same`). An edit made on an older `base_version` is a 409. The
        content is checked once the edit is known not to be stale; `before` (given the current
        version) runs in the transaction."""
        current = self.get(database, slug, None)
        self._stale(current, base_version, "Reload it, and apply your edit again.")
        if self.check is not None:
            self.check(database, fields)
        if same(current, fields):
            return current, False
        saved = self._append(
            database,
            slug,
            fields,
            expected=base_version,
            changed_meanwhile=(
                f"The {self.noun} was changed by someone else since version {base_version}."
            ),
            action="updated",
            detail={},
            actor=actor,
            audit_actor=audit_actor,
            ip=ip,
            before=(lambda cur: before(cur, current)) if before is not None else None,
        )
        return saved, True

    def restore(
        self,
        database: Database,
        slug: str,
        version: int,
        *,
        base_version: int | None,
        actor: str | None,
        audit_actor: str | None,
        ip: str | None,
    ) -> tuple[dict[str, Any], bool]:
        """Save an old version's content as the newest version (history only grows); audited as
        a restore. (thing, False) when the latest version already has that content; the content
        is checked as for an edit."""
        old = self.get(database, slug, version)
        fields = {key: old[key] for key in self.content}
        current = self.get(database, slug, None)
        self._stale(current, base_version, "Reload it before restoring.")
        if all(current[key] == fields[key] for key in self.content):
            return current, False
        if self.check is not None:
            self.check(database, fields)
        saved = self._append(
            database,
            slug,
            fields,
            expected=current["version"],
            changed_meanwhile=(
                f"The {self.noun} was changed by someone else meanwhile; reload it before "
                "restoring."
            ),
            action="restored",
            detail={"restored_from": version},
            actor=actor,
            audit_actor=audit_actor,
            ip=ip,
        )
        return saved, True

    def delete(
        self, database: Database, slug: str, *, audit_actor: str | None, ip: str | None
    ) -> None:
        """The thing and all its versions."""
        with database.transaction() as cur:
            latest = self.tables.latest(cur, slug)
            if latest is None:
                raise self.tables.not_found(slug)
            self.tables.delete(cur, slug)
            audit.record(
                cur,
                actor=audit_actor,
                action=f"{self.noun}.deleted",
                target=slug,
                ip=ip,
                detail={"versions": latest},
            )

    def diff(
        self,
        database: Database,
        slug: str,
        before: int | None,
        after: int | None,
    ) -> dict[str, Any]:
        """Two versions side by side; by default the latest and the one before it."""
        after = after or self.get(database, slug, None)["latest_version"]
        before = before or max(1, after - 1)
        return self.differ(database, slug, before, after)

    def list_versions(self, database: Database, slug: str) -> list[dict[str, Any]]:
        with database.cursor() as cur:
            return self.tables.list_versions(cur, slug)
