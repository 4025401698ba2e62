"""Saved queries: title, description, SQL, typed parameters and a chart, in numbered versions.

A saved query's slug is fixed when it is created, so its address stays the same whatever is
edited later. Every edit appends a version; nothing but deleting the query removes one.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import duckdb

from myapp.models.queries import ParameterValueError, coerce_parameter

from ..errors import BadRequest, Conflict, NotFound, Unprocessable
from . import audit
from .database import Database
from .sql import internal
from .textdiff import side_by_side
from .usersql.execute import check_sql
from .usersql.workers import Workers

QUERIES = internal("saved_queries")
VERSIONS = internal("saved_query_versions")

# Page addresses under /queries/ that a slug must not take.
RESERVED_SLUGS = frozenset({"new"})
SLUG_STEM_CHARS = 60


def slugify(title: str) -> str:
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:SLUG_STEM_CHARS].strip("-")
    return slug or "query"


def _free_slug(cur: duckdb.DuckDBPyConnection, stem: str) -> str:
    taken = {
        row[0]
        for row in cur.execute(
            f"SELECT slug FROM {QUERIES} WHERE slug = $stem OR starts_with(slug, $prefix)",
            {"stem": stem, "prefix": stem + "-"},
        ).fetchall()
    }
    if stem not in taken and stem not in RESERVED_SLUGS:
        return stem
    number = 2
    while f"{stem}-{number}" in taken:
        number += 1
    return f"{stem}-{number}"


def _not_found(slug: str) -> NotFound:
    return NotFound(f"There is no saved query {slug!r}.", code="query_not_found")


_COLUMNS = (
    "q.slug, v.version, q.version, v.title, v.description, v.sql, v.parameters, v.chart, "
    "q.created_at, q.created_by, v.created_at, v.created_by"
)


def _public(row: tuple) -> dict[str, Any]:
    (
        slug,
        version,
        latest,
        title,
        description,
        sql,
        parameters,
        chart,
        created_at,
        created_by,
        updated_at,
        updated_by,
    ) = row
    return {
        "slug": slug,
        "version": version,
        "latest_version": latest,
        "title": title,
        "description": description,
        "sql": sql,
        "parameters": json.loads(parameters) if parameters else [],
        "chart": json.loads(chart) if chart else None,
        "created_at": created_at,
        "created_by": created_by,
        "updated_at": updated_at,
        "updated_by": updated_by,
    }


def get_query(database: Database, slug: str, version: int | None = None) -> dict[str, Any]:
    with database.cursor() as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM {QUERIES} q JOIN {VERSIONS} v ON v.slug = q.slug "
            "WHERE q.slug = $slug AND v.version = coalesce($version, q.version)",
            {"slug": slug, "version": version},
        ).fetchone()
        if row is None:
            exists = cur.execute(
                f"SELECT version FROM {QUERIES} WHERE slug = $slug", {"slug": slug}
            ).fetchone()
            if exists is None:
                raise _not_found(slug)
            raise NotFound(
                f"The saved query {slug!r} has no version {version}; its versions are 1 to "
                f"{exists[0]}.",
                code="version_not_found",
            )
    return _public(row)


def list_queries(database: Database, search: str | None = None) -> list[dict[str, Any]]:
    with database.cursor() as cur:
        rows = cur.execute(
            f"SELECT q.slug, q.version, v.title, v.description, "
            "json_array_length(v.parameters), v.chart IS NOT NULL, q.created_at, v.created_at, "
            "v.created_by, q.last_run_at, coalesce(q.run_count, 0) "
            f"FROM {QUERIES} q JOIN {VERSIONS} v "
            "ON v.slug = q.slug AND v.version = q.version "
            "WHERE $q IS NULL OR v.title ILIKE $pattern OR v.description ILIKE $pattern "
            "OR q.slug ILIKE $pattern "
            "ORDER BY lower(v.title), q.slug",
            {"q": search or None, "pattern": f"%{_escape_like(search or '')}%"},
        ).fetchall()
    keys = (
        "slug",
        "version",
        "title",
        "description",
        "parameter_count",
        "has_chart",
        "created_at",
        "updated_at",
        "updated_by",
        "last_run_at",
        "run_count",
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]


def _escape_like(text: str) -> str:
    # ILIKE without ESCAPE treats backslash as the escape character.
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_versions(database: Database, slug: str) -> list[dict[str, Any]]:
    with database.cursor() as cur:
        rows = cur.execute(
            f"SELECT version, title, created_at, created_by FROM {VERSIONS} "
            "WHERE slug = $slug ORDER BY version DESC",
            {"slug": slug},
        ).fetchall()
    if not rows:
        raise _not_found(slug)
    return [{"version": v, "title": t, "created_at": at, "created_by": by} for v, t, at, by in rows]


def _check_fields(database: Database, workers: Workers, fields: Mapping[str, Any]) -> None:
    """The SQL must pass the gate and bind (in a query worker: binding folds constants, which
    can run any function), and every $parameter it uses must be declared."""
    defaults = {p["name"]: p.get("default") for p in fields["parameters"]}
    vetted = check_sql(database, workers, database.settings, fields["sql"], defaults)
    declared = {p["name"] for p in fields["parameters"]}
    undeclared = [name for name in vetted.parameters if name not in declared]
    if undeclared:
        names = ", ".join(f"${name}" for name in undeclared)
        raise Unprocessable(
            f"The SQL uses {names}: declare "
            + ("it as a parameter" if len(undeclared) == 1 else "them as parameters")
            + ", with a type and an optional default.",
            code="undeclared_parameter",
            detail={"undeclared": undeclared},
        )


def _insert_version(
    cur: duckdb.DuckDBPyConnection,
    slug: str,
    version: int,
    fields: Mapping[str, Any],
    actor: str | None,
    now: datetime,
) -> None:
    cur.execute(
        f"INSERT INTO {VERSIONS} (slug, version, title, description, sql, parameters, chart, "
        "created_at, created_by) VALUES ($slug, $version, $title, $description, $sql, "
        "$parameters, $chart, $at, $by)",
        {
            "slug": slug,
            "version": version,
            "title": fields["title"],
            "description": fields.get("description") or "",
            "sql": fields["sql"],
            "parameters": json.dumps(fields["parameters"]),
            "chart": json.dumps(fields["chart"]) if fields.get("chart") else None,
            "at": now,
            "by": actor,
        },
    )


def _refuse_title_taken(
    cur: duckdb.DuckDBPyConnection, title: str, *, other_than: str | None
) -> None:
    """409 `title_exists` when a saved query (other than `other_than`) has this title,
    ignoring case: the page asks whether to open that one or choose another title."""
    same_title = cur.execute(
        f"SELECT q.slug, v.title FROM {QUERIES} q JOIN {VERSIONS} v "
        "ON v.slug = q.slug AND v.version = q.version "
        "WHERE lower(v.title) = lower($title) AND q.slug IS DISTINCT FROM $other "
        "ORDER BY q.slug LIMIT 1",
        {"title": title, "other": other_than},
    ).fetchone()
    if same_title is not None:
        raise Conflict(
            f"A saved query titled {same_title[1]!r} already exists: open it, or save this "
            "one under another title.",
            code="title_exists",
            detail={"slug": same_title[0], "title": same_title[1]},
        )


def create_query(
    database: Database,
    fields: Mapping[str, Any],
    *,
    workers: Workers,
    actor: str | None,
    audit_actor: str | None,
    ip: str | None,
) -> dict[str, Any]:
    """`actor` is the account (kept as the author), `audit_actor` the name the audit log uses
    for the caller (also for callers without an account)."""
    _check_fields(database, workers, fields)
    now = datetime.now(UTC)
    with database.transaction() as cur:
        if fields.get("if_title_exists") == "error":
            _refuse_title_taken(cur, fields["title"], other_than=None)
        wanted = fields.get("slug")
        if wanted:
            if wanted in RESERVED_SLUGS:
                raise BadRequest(f"The slug {wanted!r} is reserved; choose another.")
            if cur.execute(f"SELECT 1 FROM {QUERIES} WHERE slug = $s", {"s": wanted}).fetchone():
                raise Conflict(
                    f"A saved query with the slug {wanted!r} already exists; choose another, "
                    "or leave the slug out to derive a free one from the title.",
                    code="slug_taken",
                )
            slug = wanted
        else:
            slug = _free_slug(cur, slugify(fields["title"]))
        cur.execute(
            f"INSERT INTO {QUERIES} (slug, version, created_at, created_by) "
            "VALUES ($slug, 1, $at, $by)",
            {"slug": slug, "at": now, "by": actor},
        )
        _insert_version(cur, slug, 1, fields, actor, now)
        audit.record(
            cur,
            actor=audit_actor,
            action="query.created",
            target=slug,
            ip=ip,
            detail={"version": 1, "title": fields["title"]},
        )
    return get_query(database, slug)


def update_query(
    database: Database,
    slug: str,
    fields: Mapping[str, Any],
    *,
    workers: Workers,
    base_version: int | None,
    actor: str | None,
    audit_actor: str | None,
    ip: str | None,
) -> tuple[dict[str, Any], bool]:
    """Save an edit as a new version; (query, True) when a version was added, False when the
    edit changed nothing."""
    _check_fields(database, workers, fields)
    current = get_query(database, slug)
    if base_version is not None and base_version != current["version"]:
        raise Conflict(
            f"The query was changed by someone else since version {base_version}: it is now at "
            f"version {current['version']}. Reload it, and apply your edit again.",
            code="version_conflict",
            detail={"latest_version": current["version"]},
        )
    if _same(current, fields):
        return current, False
    now = datetime.now(UTC)
    with database.transaction() as cur:
        row = cur.execute(
            f"SELECT version FROM {QUERIES} WHERE slug = $slug", {"slug": slug}
        ).fetchone()
        if row is None:
            raise _not_found(slug)
        version = row[0] + 1
        if base_version is not None and base_version != row[0]:
            raise Conflict(
                f"The query was changed by someone else since version {base_version}.",
                code="version_conflict",
                detail={"latest_version": row[0]},
            )
        if fields.get("if_title_exists") == "error" and fields["title"] != current["title"]:
            _refuse_title_taken(cur, fields["title"], other_than=slug)
        _insert_version(cur, slug, version, fields, actor, now)
        cur.execute(
            f"UPDATE {QUERIES} SET version = $version WHERE slug = $slug",
            {"version": version, "slug": slug},
        )
        audit.record(
            cur,
            actor=audit_actor,
            action="query.updated",
            target=slug,
            ip=ip,
            detail={"version": version, "title": fields["title"]},
        )
    return get_query(database, slug), True


def restore_version(
    database: Database,
    slug: str,
    version: int,
    *,
    base_version: int | None,
    actor: str | None,
    audit_actor: str | None,
    ip: str | None,
) -> tuple[dict[str, Any], bool]:
    """Save an old version's content as the newest version (history only grows); audited as a
    restore. (query, False) when the latest version already has that content."""
    old = get_query(database, slug, version)
    fields = {key: old[key] for key in ("title", "description", "sql", "parameters", "chart")}
    current = get_query(database, slug)
    if base_version is not None and base_version != current["version"]:
        raise Conflict(
            f"The query was changed by someone else since version {base_version}: it is now at "
            f"version {current['version']}. Reload it before restoring.",
            code="version_conflict",
            detail={"latest_version": current["version"]},
        )
    if _same(current, fields):
        return current, False
    now = datetime.now(UTC)
    with database.transaction() as cur:
        row = cur.execute(
            f"SELECT version FROM {QUERIES} WHERE slug = $slug", {"slug": slug}
        ).fetchone()
        if row is None:
            raise _not_found(slug)
        if row[0] != current["version"]:
            raise Conflict(
                "The query was changed by someone else meanwhile; reload it before restoring.",
                code="version_conflict",
                detail={"latest_version": row[0]},
            )
        new_version = row[0] + 1
        _insert_version(cur, slug, new_version, fields, actor, now)
        cur.execute(
            f"UPDATE {QUERIES} SET version = $version WHERE slug = $slug",
            {"version": new_version, "slug": slug},
        )
        audit.record(
            cur,
            actor=audit_actor,
            action="query.restored",
            target=slug,
            ip=ip,
            detail={"version": new_version, "restored_from": version, "title": fields["title"]},
        )
    return get_query(database, slug), True


def diff_versions(database: Database, slug: str, before: int, after: int) -> dict[str, Any]:
    """Two versions side by side: every field, which ones changed, and the SQL line by line."""
    old, new = get_query(database, slug, before), get_query(database, slug, after)
    fields = ("title", "description", "sql", "parameters", "chart")
    return {
        "slug": slug,
        "from": old,
        "to": new,
        "changed": [key for key in fields if old[key] != new[key]],
        "sql": side_by_side(old["sql"], new["sql"]),
        "description": side_by_side(old["description"], new["description"]),
    }


def _same(current: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    return all(
        current[key] == fields.get(key)
        for key in ("title", "description", "sql", "parameters", "chart")
    )


def delete_query(database: Database, slug: str, *, audit_actor: str | None, ip: str | None) -> None:
    with database.transaction() as cur:
        row = cur.execute(
            f"SELECT version FROM {QUERIES} WHERE slug = $slug", {"slug": slug}
        ).fetchone()
        if row is None:
            raise _not_found(slug)
        cur.execute(f"DELETE FROM {VERSIONS} WHERE slug = $slug", {"slug": slug})
        cur.execute(f"DELETE FROM {QUERIES} WHERE slug = $slug", {"slug": slug})
        audit.record(
            cur,
            actor=audit_actor,
            action="query.deleted",
            target=slug,
            ip=ip,
            detail={"versions": row[0]},
        )


def bind_saved_parameters(
    parameters: list[dict[str, Any]], given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The run's values typed by the declarations, defaults filled in; unknown names refused."""
    given = dict(given or {})
    declared = {p["name"]: p for p in parameters}
    unknown = [name for name in given if name not in declared]
    if unknown:
        raise BadRequest(
            f"The query has no parameter {', '.join(unknown)}; its parameters are: "
            + (", ".join(declared) or "none")
            + ".",
            code="unknown_parameter",
            detail={"unknown": unknown, "parameters": list(declared)},
        )
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, parameter in declared.items():
        raw = given.get(name)
        # Missing, null, or a form field left empty (for anything but text): the default.
        if raw is None or (raw == "" and parameter["type"] != "text"):
            raw = parameter.get("default")
            if raw is None:
                problems[name] = "a value is required"
                continue
        try:
            values[name] = coerce_parameter(parameter["type"], raw)
        except ParameterValueError as exc:
            problems[name] = str(exc)
    if problems:
        first = next(iter(problems))
        raise BadRequest(
            f"The parameter {first} is not valid: {problems[first]}.",
            code="invalid_parameter",
            detail={"parameters": problems},
        )
    return values
