"""Dashboards: a title, typed parameters and an ordered grid of tiles, in numbered versions.

Like saved queries, a dashboard's slug is fixed when it is created and every edit appends a
version (versioned.py). Tiles name saved queries by slug; whether they exist is checked when a
version is saved (services/dashboards.py), and again when a tile runs (a query can be deleted
after the dashboard was saved).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from myapp.models.dashboards import value_keys, value_type
from myapp.models.saved_queries import ParameterValueError, coerce_parameter, parameter_json

from ..errors import BadRequest, NotFound
from .database import Database
from .saved_queries import invalid_parameters, unknown_parameters
from .sql import internal
from .textdiff import side_by_side
from .versioned import VersionedTables

DASHBOARDS = internal("dashboards")
VERSIONS = internal("dashboard_versions")

# What a version holds (besides its number and who saved it).
CONTENT = ("title", "description", "parameters", "tiles")

TABLES = VersionedTables(
    head=DASHBOARDS,
    versions=VERSIONS,
    columns=CONTENT,
    # Page addresses under /dashboards/ that a slug must not take.
    reserved=frozenset({"new"}),
    label="dashboard",
)

_COLUMNS = (
    "h.slug, v.version, h.version, v.title, v.description, v.parameters, v.tiles, "
    "h.created_at, h.created_by, v.created_at, v.created_by"
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
        return _public(TABLES.get_row(cur, _COLUMNS, slug, version))


def list_dashboards(database: Database, search: str | None = None) -> list[dict[str, Any]]:
    with database.cursor() as cur:
        return TABLES.list_latest(cur, {"tile_count": "json_array_length(v.tiles)"}, search)


def list_versions(database: Database, slug: str) -> list[dict[str, Any]]:
    with database.cursor() as cur:
        return TABLES.list_versions(cur, slug)


def to_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A version's content as stored."""
    return {
        "title": fields["title"],
        "description": fields.get("description") or "",
        "parameters": json.dumps(fields["parameters"]),
        "tiles": json.dumps(fields["tiles"]),
    }


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
        raise unknown_parameters("The dashboard", unknown, list(declared))
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
        raise invalid_parameters(problems)
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
