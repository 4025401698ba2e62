"""Running a dashboard's tiles, the choices of its list parameters, and what share links show.

Everything here reads: the values a tile runs with come from the dashboard's parameters (typed
and defaulted by `dashboards.bind_dashboard_values`), are mapped onto the tile's saved query
(`dashboards.tile_query_params`) and then typed again by the query's own declarations, exactly
as a run of the saved query would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from myapp.models.dashboards import TABLE_TILE_ROWS
from myapp.models.saved_queries import ParameterValueError, coerce_parameter
from myapp.settings import Settings

from ..errors import BadRequest, NotFound
from . import dashboards as dashboard_store
from . import saved_queries as saved_query_store
from .database import Database
from .results import ResultCache, run_saved
from .usersql.workers import Workers

# The most choices a list parameter offers.
MAX_CHOICES = 1000


def tile_query(database: Database, tile: Mapping[str, Any]) -> dict[str, Any]:
    if tile["type"] == "text":
        raise BadRequest(
            "A text tile has no query to run or export; its text is part of the dashboard.",
            code="tile_not_runnable",
        )
    return saved_query_store.get_query(database, tile["query"], tile.get("query_version"))


def run_tile(
    database: Database,
    workers: Workers,
    settings: Settings,
    cache: ResultCache,
    dashboard: Mapping[str, Any],
    tile_id: str,
    given: Mapping[str, Any] | None,
    *,
    fixed: Mapping[str, Any] | None = None,
    refresh: bool = False,
    owner: str | None,
    run_id: Any = None,
) -> dict[str, Any]:
    tile = dashboard_store.find_tile(dashboard, tile_id)
    saved = tile_query(database, tile)
    values = dashboard_store.bind_dashboard_values(dashboard["parameters"], given, fixed=fixed)
    cache.note_run("dashboard", dashboard["slug"])
    mode = "chart" if tile["type"] == "chart" else "rows"
    limit = 2 if tile["type"] == "number" else TABLE_TILE_ROWS
    result, cached, computed_at, shown = run_saved(
        database,
        workers,
        settings,
        cache,
        saved,
        dashboard_store.tile_query_params(tile, values),
        mode=mode,
        limit=limit,
        refresh=refresh,
        owner=owner,
        run_id=run_id,
    )
    return {
        "tile": tile["id"],
        "type": tile["type"],
        "query": saved["slug"],
        "query_version": saved["version"],
        "params": shown,
        "chart": saved["chart"] if mode == "chart" else None,
        "cached": cached,
        "computed_at": computed_at.isoformat(),
        "result": result,
    }


def tile_export_params(
    database: Database,
    dashboard: Mapping[str, Any],
    tile_id: str,
    given: Mapping[str, Any] | None,
    *,
    fixed: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the tile's saved query, its typed values) for an export of the tile's whole result."""
    tile = dashboard_store.find_tile(dashboard, tile_id)
    saved = tile_query(database, tile)
    values = dashboard_store.bind_dashboard_values(dashboard["parameters"], given, fixed=fixed)
    mapped = dashboard_store.tile_query_params(tile, values)
    return saved, saved_query_store.bind_saved_parameters(saved["parameters"], mapped)


def choices(
    database: Database,
    workers: Workers,
    settings: Settings,
    cache: ResultCache,
    dashboard: Mapping[str, Any],
    name: str,
    *,
    owner: str | None,
) -> list[Any]:
    """The first column of the list parameter's query, each value once, in its order."""
    parameter = next((p for p in dashboard["parameters"] if p["name"] == name), None)
    if parameter is None or parameter["type"] != "choice":
        raise BadRequest(
            f"The dashboard has no list parameter {name!r}.", code="not_a_choice_parameter"
        )
    saved = saved_query_store.get_query(database, parameter["choices_query"])
    result, _, _, _ = run_saved(
        database, workers, settings, cache, saved, None, mode="rows", limit=MAX_CHOICES, owner=owner
    )
    seen: dict[Any, None] = {}
    for row in result["rows"]:
        if row and row[0] is not None:
            seen.setdefault(row[0], None)
    return list(seen)


def with_fixed(
    parameters: list[dict[str, Any]], given: Mapping[str, Any] | None, fixed: Mapping[str, Any]
) -> dict[str, Any]:
    """A saved query's values with a share link's fixed ones put in; a visitor's different
    value for a fixed one is refused."""
    types = {p["name"]: p["type"] for p in parameters}
    merged = dict(given or {})
    for name, value in fixed.items():
        sent = merged.get(name)
        if sent not in (None, "") and name in types:
            try:
                same = coerce_parameter(types[name], sent) == coerce_parameter(types[name], value)
            except ParameterValueError:
                same = False
            if not same:
                raise BadRequest(
                    f"The value of {name} is fixed by this link and cannot be changed.",
                    code="parameter_fixed",
                    detail={"parameter": name},
                )
        merged[name] = value
    return merged


def shared_view(database: Database, share: Any) -> dict[str, Any]:
    """What a share link's page shows: its target without SQL, query names or other links."""
    body: dict[str, Any] = {
        "kind": share.kind,
        "name": share.name,
        "expires_at": share.expires_at,
        "fixed": share.params,
    }
    if share.kind == "query":
        saved = saved_query_store.get_query(database, share.target, share.version)
        body["query"] = {
            "title": saved["title"],
            "description": saved["description"],
            "version": saved["version"],
            "parameters": saved["parameters"],
            "chart": saved["chart"],
        }
    else:
        dashboard = dashboard_store.get_dashboard(database, share.target, share.version)
        body["dashboard"] = {
            "title": dashboard["title"],
            "description": dashboard["description"],
            "version": dashboard["version"],
            "parameters": [
                {k: v for k, v in p.items() if k != "choices_query"}
                for p in dashboard["parameters"]
            ],
            "tiles": [
                {
                    **{k: tile.get(k) for k in ("id", "type", "width", "text", "compare")},
                    "title": tile.get("title") or _query_title(database, tile),
                }
                for tile in dashboard["tiles"]
            ],
        }
    return body


def _query_title(database: Database, tile: Mapping[str, Any]) -> str:
    """A tile's heading when it has none of its own: its query's title."""
    if tile["type"] == "text":
        return "Text"
    try:
        saved = saved_query_store.get_query(database, tile["query"], tile.get("query_version"))
    except NotFound:
        return "Unavailable"
    return saved["title"]
