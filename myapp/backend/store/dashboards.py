"""Dashboards: a title, typed parameters and an ordered grid of tiles, in numbered versions.

Like saved queries, a dashboard's slug is fixed when it is created and every edit appends a
version. Tiles name saved queries by slug; whether they exist is checked when a version is
saved, and again when a tile runs (a query can be deleted after the dashboard was saved).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import duckdb

from myapp.models.dashboards import value_keys, value_type
from myapp.models.queries import ParameterValueError, coerce_parameter, parameter_json

from ..errors import BadRequest, Conflict, NotFound, Unprocessable
from . import audit
from . import queries as saved_queries
from .database import Database
from .sql import internal
from .textdiff import side_by_side

DASHBOARDS = internal("dashboards")
VERSIONS = internal("dashboard_versions")

# Page addresses under /dashboards/ that a slug must not take.
RESERVED_SLUGS = frozenset({"new"})


def _not_found(slug: str) -> NotFound:
    return NotFound(f"There is no dashboard {slug!r}.", code="dashboard_not_found")


_COLUMNS = (
    "d.slug, v.version, d.version, v.title, v.description, v.parameters, v.tiles, "
    "d.created_at, d.created_by, v.created_at, v.created_by"
)


def _public(row: tuple) -> dict[str, Any]:
    keys = (
        "slug",
        "version",
        "latest_version",
        "title",
        "description",
        "parameters",
        "tiles",
        "created_at",
        "created_by",
        "updated_at",
        "updated_by",
    )
    item = dict(zip(keys, row, strict=True))
    item["parameters"] = json.loads(item["parameters"])
    item["tiles"] = json.loads(item["tiles"])
    return item


def get_dashboard(database: Database, slug: str, version: int | None = None) -> dict[str, Any]:
    with database.cursor() as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM {DASHBOARDS} d JOIN {VERSIONS} v ON v.slug = d.slug "
            "WHERE d.slug = $slug AND v.version = coalesce($version, d.version)",
            {"slug": slug, "version": version},
        ).fetchone()
        if row is None:
            exists = cur.execute(
                f"SELECT version FROM {DASHBOARDS} WHERE slug = $slug", {"slug": slug}
            ).fetchone()
            if exists is None:
                raise _not_found(slug)
            raise NotFound(
                f"The dashboard {slug!r} has no version {version}; its versions are 1 to "
                f"{exists[0]}.",
                code="version_not_found",
            )
    return _public(row)


def list_dashboards(database: Database, search: str | None = None) -> list[dict[str, Any]]:
    with database.cursor() as cur:
        rows = cur.execute(
            "SELECT d.slug, d.version, v.title, v.description, json_array_length(v.tiles), "
            "d.created_at, v.created_at, v.created_by, d.last_run_at, coalesce(d.run_count, 0) "
            f"FROM {DASHBOARDS} d JOIN {VERSIONS} v "
            "ON v.slug = d.slug AND v.version = d.version "
            "WHERE $q IS NULL OR v.title ILIKE $pattern OR v.description ILIKE $pattern "
            "OR d.slug ILIKE $pattern ORDER BY lower(v.title), d.slug",
            {"q": search or None, "pattern": f"%{saved_queries._escape_like(search or '')}%"},
        ).fetchall()
    keys = (
        "slug",
        "version",
        "title",
        "description",
        "tile_count",
        "created_at",
        "updated_at",
        "updated_by",
        "last_run_at",
        "run_count",
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]


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


def _assign_tile_ids(tiles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    taken = {tile["id"] for tile in tiles if tile.get("id")}
    number = 1
    out = []
    for tile in tiles:
        if not tile.get("id"):
            while f"t{number}" in taken:
                number += 1
            tile = {**tile, "id": f"t{number}"}
            taken.add(tile["id"])
        out.append(tile)
    return out


def check_fields(database: Database, fields: Mapping[str, Any]) -> None:
    """Every tile's query (and pinned version) exists, and maps only onto parameters it has
    from values the dashboard declares; every choice list's query exists."""
    keys = {key for parameter in fields["parameters"] for key in value_keys(parameter)}
    problems: list[str] = []
    for parameter in fields["parameters"]:
        if parameter["type"] == "choice":
            try:
                saved_queries.get_query(database, parameter["choices_query"])
            except NotFound as exc:
                problems.append(f"parameter {parameter['name']}: {exc.message}")
    for number, tile in enumerate(fields["tiles"], start=1):
        if tile["type"] == "text":
            continue
        try:
            saved = saved_queries.get_query(database, tile["query"], tile.get("query_version"))
        except NotFound as exc:
            problems.append(f"tile {number}: {exc.message}")
            continue
        declared = {p["name"] for p in saved["parameters"]}
        for target, source in tile.get("params", {}).items():
            if target not in declared:
                problems.append(
                    f"tile {number}: the query {saved['slug']!r} has no parameter {target} "
                    f"(it has: {', '.join(sorted(declared)) or 'none'})"
                )
            if source not in keys:
                problems.append(
                    f"tile {number}: the dashboard has no parameter {source} to map onto {target}"
                )
        if tile["type"] == "chart" and not saved.get("chart"):
            problems.append(
                f"tile {number}: the query {saved['slug']!r} has no saved chart; save one with "
                "it, or show it as a table"
            )
    if problems:
        raise Unprocessable(
            f"The dashboard cannot be saved: {problems[0]}.",
            code="invalid_dashboard",
            detail={"problems": problems},
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
        f"INSERT INTO {VERSIONS} (slug, version, title, description, parameters, tiles, "
        "created_at, created_by) VALUES ($slug, $version, $title, $description, $parameters, "
        "$tiles, $at, $by)",
        {
            "slug": slug,
            "version": version,
            "title": fields["title"],
            "description": fields.get("description") or "",
            "parameters": json.dumps(fields["parameters"]),
            "tiles": json.dumps(fields["tiles"]),
            "at": now,
            "by": actor,
        },
    )


def _free_slug(cur: duckdb.DuckDBPyConnection, stem: str) -> str:
    taken = {
        row[0]
        for row in cur.execute(
            f"SELECT slug FROM {DASHBOARDS} WHERE slug = $stem OR starts_with(slug, $prefix)",
            {"stem": stem, "prefix": stem + "-"},
        ).fetchall()
    }
    if stem not in taken and stem not in RESERVED_SLUGS:
        return stem
    number = 2
    while f"{stem}-{number}" in taken:
        number += 1
    return f"{stem}-{number}"


def create_dashboard(
    database: Database,
    fields: Mapping[str, Any],
    *,
    actor: str | None,
    audit_actor: str | None,
    ip: str | None,
) -> dict[str, Any]:
    fields = {**fields, "tiles": _assign_tile_ids(list(fields["tiles"]))}
    check_fields(database, fields)
    now = datetime.now(UTC)
    with database.transaction() as cur:
        wanted = fields.get("slug")
        if wanted:
            if wanted in RESERVED_SLUGS:
                raise BadRequest(f"The slug {wanted!r} is reserved; choose another.")
            if cur.execute(f"SELECT 1 FROM {DASHBOARDS} WHERE slug = $s", {"s": wanted}).fetchone():
                raise Conflict(
                    f"A dashboard with the slug {wanted!r} already exists; choose another, or "
                    "leave the slug out to derive a free one from the title.",
                    code="slug_taken",
                )
            slug = wanted
        else:
            slug = _free_slug(cur, saved_queries.slugify(fields["title"]))
        cur.execute(
            f"INSERT INTO {DASHBOARDS} (slug, version, created_at, created_by) "
            "VALUES ($slug, 1, $at, $by)",
            {"slug": slug, "at": now, "by": actor},
        )
        _insert_version(cur, slug, 1, fields, actor, now)
        audit.record(
            cur,
            actor=audit_actor,
            action="dashboard.created",
            target=slug,
            ip=ip,
            detail={"version": 1, "title": fields["title"]},
        )
    return get_dashboard(database, slug)


def update_dashboard(
    database: Database,
    slug: str,
    fields: Mapping[str, Any],
    *,
    base_version: int | None,
    actor: str | None,
    audit_actor: str | None,
    ip: str | None,
) -> tuple[dict[str, Any], bool]:
    fields = {**fields, "tiles": _assign_tile_ids(list(fields["tiles"]))}
    current = get_dashboard(database, slug)
    if base_version is not None and base_version != current["version"]:
        raise Conflict(
            f"The dashboard was changed by someone else since version {base_version}: it is now "
            f"at version {current['version']}. Reload it, and apply your edit again.",
            code="version_conflict",
            detail={"latest_version": current["version"]},
        )
    check_fields(database, fields)
    if all(
        current[key] == fields.get(key, "")
        for key in ("title", "description", "parameters", "tiles")
    ):
        return current, False
    now = datetime.now(UTC)
    with database.transaction() as cur:
        row = cur.execute(
            f"SELECT version FROM {DASHBOARDS} WHERE slug = $slug", {"slug": slug}
        ).fetchone()
        if row is None:
            raise _not_found(slug)
        if base_version is not None and base_version != row[0]:
            raise Conflict(
                f"The dashboard was changed by someone else since version {base_version}.",
                code="version_conflict",
                detail={"latest_version": row[0]},
            )
        version = row[0] + 1
        _insert_version(cur, slug, version, fields, actor, now)
        cur.execute(
            f"UPDATE {DASHBOARDS} SET version = $version WHERE slug = $slug",
            {"version": version, "slug": slug},
        )
        audit.record(
            cur,
            actor=audit_actor,
            action="dashboard.updated",
            target=slug,
            ip=ip,
            detail={"version": version, "title": fields["title"]},
        )
    return get_dashboard(database, slug), True


# What a version holds (besides its number and who saved it).
CONTENT = ("title", "description", "parameters", "tiles")


def _as_text(value: Any) -> str:
    """Parameters and tiles as indented JSON, one key a line, so a diff shows what moved."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def diff_versions(database: Database, slug: str, before: int, after: int) -> dict[str, Any]:
    """Two versions side by side: every field, which ones changed, and each text field line by
    line (parameters and tiles as JSON)."""
    old, new = get_dashboard(database, slug, before), get_dashboard(database, slug, after)
    return {
        "slug": slug,
        "from": old,
        "to": new,
        "changed": [key for key in CONTENT if old[key] != new[key]],
        "description": side_by_side(old["description"], new["description"]),
        "parameters": side_by_side(_as_text(old["parameters"]), _as_text(new["parameters"])),
        "tiles": side_by_side(_as_text(old["tiles"]), _as_text(new["tiles"])),
    }


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
    """Save an old version's content as the newest version (history only grows); audited as
    `dashboard.restored`. (dashboard, False) when the latest version already holds it. The old
    version is checked like an edit: a tile whose query was deleted since is a 422."""
    old = get_dashboard(database, slug, version)
    fields = {key: old[key] for key in CONTENT}
    current = get_dashboard(database, slug)
    if base_version is not None and base_version != current["version"]:
        raise Conflict(
            f"The dashboard was changed by someone else since version {base_version}: it is now "
            f"at version {current['version']}. Reload it before restoring.",
            code="version_conflict",
            detail={"latest_version": current["version"]},
        )
    if all(current[key] == fields[key] for key in CONTENT):
        return current, False
    check_fields(database, fields)
    now = datetime.now(UTC)
    with database.transaction() as cur:
        row = cur.execute(
            f"SELECT version FROM {DASHBOARDS} WHERE slug = $slug", {"slug": slug}
        ).fetchone()
        if row is None:
            raise _not_found(slug)
        if row[0] != current["version"]:
            raise Conflict(
                "The dashboard was changed by someone else meanwhile; reload it before restoring.",
                code="version_conflict",
                detail={"latest_version": row[0]},
            )
        new_version = row[0] + 1
        _insert_version(cur, slug, new_version, fields, actor, now)
        cur.execute(
            f"UPDATE {DASHBOARDS} SET version = $version WHERE slug = $slug",
            {"version": new_version, "slug": slug},
        )
        audit.record(
            cur,
            actor=audit_actor,
            action="dashboard.restored",
            target=slug,
            ip=ip,
            detail={"version": new_version, "restored_from": version, "title": fields["title"]},
        )
    return get_dashboard(database, slug), True


def delete_dashboard(
    database: Database, slug: str, *, audit_actor: str | None, ip: str | None
) -> None:
    with database.transaction() as cur:
        row = cur.execute(
            f"SELECT version FROM {DASHBOARDS} WHERE slug = $slug", {"slug": slug}
        ).fetchone()
        if row is None:
            raise _not_found(slug)
        cur.execute(f"DELETE FROM {VERSIONS} WHERE slug = $slug", {"slug": slug})
        cur.execute(f"DELETE FROM {DASHBOARDS} WHERE slug = $slug", {"slug": slug})
        audit.record(
            cur,
            actor=audit_actor,
            action="dashboard.deleted",
            target=slug,
            ip=ip,
            detail={"versions": row[0]},
        )


def find_tile(dashboard: Mapping[str, Any], tile_id: str) -> dict[str, Any]:
    for tile in dashboard["tiles"]:
        if tile["id"] == tile_id:
            return tile
    raise NotFound(
        f"The dashboard {dashboard['slug']!r} (version {dashboard['version']}) has no tile "
        f"{tile_id!r}.",
        code="tile_not_found",
    )


def bind_dashboard_values(
    parameters: list[dict[str, Any]],
    given: Mapping[str, Any] | None,
    *,
    fixed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dashboard's values by key (typed, defaults filled in, None where there is none).

    `fixed` values (a share link's) win; a different value for one of them is refused, so a
    visitor learns that the link does not let them change it.
    """
    given = {k: v for k, v in (given or {}).items()}
    fixed = dict(fixed or {})
    declared: dict[str, tuple[dict[str, Any], int | None]] = {}
    for parameter in parameters:
        keys = value_keys(parameter)
        for index, key in enumerate(keys):
            declared[key] = (parameter, index if parameter["type"] == "daterange" else None)
    unknown = [key for key in given if key not in declared]
    if unknown:
        raise BadRequest(
            f"The dashboard has no parameter {', '.join(unknown)}; its parameters are: "
            + (", ".join(declared) or "none")
            + ".",
            code="unknown_parameter",
            detail={"unknown": unknown, "parameters": list(declared)},
        )
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for key, (parameter, index) in declared.items():
        kind = value_type(parameter)
        if key in fixed:
            raw_fixed = fixed[key]
            if (
                key in given
                and given[key] not in (None, "")
                and not _same_value(kind, given[key], raw_fixed)
            ):
                raise BadRequest(
                    f"The value of {key} is fixed by this link and cannot be changed.",
                    code="parameter_fixed",
                    detail={"parameter": key},
                )
            raw = raw_fixed
        else:
            raw = given.get(key)
        if raw is None or (raw == "" and kind != "text"):
            default = parameter.get("default")
            raw = default[index] if (index is not None and default) else default
            if index is None and parameter["type"] == "daterange":
                raw = None
        if raw is None:
            values[key] = None
            continue
        try:
            values[key] = coerce_parameter(kind, raw)
        except ParameterValueError as exc:
            problems[key] = str(exc)
    if problems:
        first = next(iter(problems))
        raise BadRequest(
            f"The parameter {first} is not valid: {problems[first]}.",
            code="invalid_parameter",
            detail={"parameters": problems},
        )
    return values


def _same_value(kind: str, a: Any, b: Any) -> bool:
    try:
        return coerce_parameter(kind, a) == coerce_parameter(kind, b)
    except ParameterValueError:
        return False


def tile_query_params(tile: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values a tile's query gets: each mapped dashboard value that is set, as JSON."""
    return {
        target: parameter_json(values[source])
        for target, source in tile.get("params", {}).items()
        if values.get(source) is not None
    }
