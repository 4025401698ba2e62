"""Dashboards: saving (every tile's query and parameter checked), editing into new versions,
restoring, deleting, each audited."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from myapp.models.dashboards import value_keys

from ..errors import NotFound, Unprocessable
from ..store import dashboards as dashboard_store
from ..store import saved_queries as saved_query_store
from ..store.dashboards import diff_versions, get_dashboard, list_dashboards
from ..store.database import Database
from . import versions

__all__ = [
    "check_fields",
    "create",
    "delete",
    "diff",
    "get_dashboard",
    "list_dashboards",
    "list_versions",
    "restore",
    "update",
]

DASHBOARDS = versions.Versioned(
    tables=dashboard_store.TABLES,
    noun="dashboard",
    content=dashboard_store.CONTENT,
    get=get_dashboard,
    to_values=dashboard_store.to_values,
    slugify=saved_query_store.slugify,
    differ=diff_versions,
    check=lambda database, fields: check_fields(database, fields),
)
restore = DASHBOARDS.restore
delete = DASHBOARDS.delete
list_versions = DASHBOARDS.list_versions
diff = DASHBOARDS.diff


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
                saved_query_store.get_query(database, parameter["choices_query"])
            except NotFound as exc:
                problems.append(f"parameter {parameter['name']}: {exc.message}")
    for number, tile in enumerate(fields["tiles"], start=1):
        if tile["type"] == "text":
            continue
        try:
            saved = saved_query_store.get_query(database, tile["query"], tile.get("query_version"))
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


def _with_tile_ids(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {**fields, "tiles": _assign_tile_ids(list(fields["tiles"]))}


def create(
    database: Database,
    fields: Mapping[str, Any],
    *,
    actor: str | None,
    audit_actor: str | None,
    ip: str | None,
) -> dict[str, Any]:
    fields = _with_tile_ids(fields)
    check_fields(database, fields)
    return DASHBOARDS.create(database, fields, actor=actor, audit_actor=audit_actor, ip=ip)


def _same(current: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    return all(current[key] == fields.get(key, "") for key in dashboard_store.CONTENT)


def update(
    database: Database,
    slug: str,
    fields: Mapping[str, Any],
    *,
    base_version: int | None,
    actor: str | None,
    audit_actor: str | None,
    ip: str | None,
) -> tuple[dict[str, Any], bool]:
    return DASHBOARDS.update(
        database,
        slug,
        _with_tile_ids(fields),
        base_version=base_version,
        actor=actor,
        audit_actor=audit_actor,
        ip=ip,
        same=_same,
    )
