"""Dashboards: create, read, edit (a new version each time), delete, and run their tiles."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from myapp.models import ErrorBody
from myapp.models.dashboards import (
    ChoicesPublic,
    DashboardCreate,
    DashboardDiff,
    DashboardList,
    DashboardPublic,
    DashboardUpdate,
    DashboardVersions,
    RecentRuns,
    TileResult,
    TileRun,
)
from myapp.models.query import ExportFormatName

from ..auth.dependencies import client_address
from ..deps import DatabaseDep, EditorDep, SettingsDep, ViewerDep, WorkersDep
from ..services import dashboards
from ..store import tiles
from ..store.exports import export_format as export_format_named
from ..store.results import ResultCache
from .query import fast_json, parse_params_json
from .saved_queries import export_saved
from .versions import add_version_routes, created

router = APIRouter(tags=["dashboards"])


async def get_results(request: Request) -> ResultCache:
    return request.app.state.results


ResultsDep = Annotated[ResultCache, Depends(get_results)]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such dashboard, version or tile"}
}
_RUN_ERRORS: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    400: {"model": ErrorBody, "description": "Invalid parameters, SQL error or time limit"},
    409: {"model": ErrorBody, "description": "Cancelled while running"},
}
_SAVE_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "A tile names a missing query or parameter"},
    409: {"model": ErrorBody, "description": "The slug is taken, or edited meanwhile"},
}


def _fields(body: DashboardCreate | DashboardUpdate) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude={"base_version"})


@router.get("/dashboards", response_model=DashboardList, summary="List dashboards")
def list_dashboards(
    actor: ViewerDep,
    database: DatabaseDep,
    results: ResultsDep,
    q: str | None = Query(None, max_length=200, description="Search titles and descriptions."),
) -> dict[str, Any]:
    found = dashboards.list_dashboards(database, q)
    results.overlay_runs("dashboard", found)
    return {"dashboards": found}


@router.post(
    "/dashboards",
    status_code=201,
    response_model=DashboardPublic,
    responses=_SAVE_ERRORS,
    summary="Create a dashboard (version 1)",
)
def create_dashboard(
    body: DashboardCreate, request: Request, actor: EditorDep, database: DatabaseDep
) -> JSONResponse:
    saved = dashboards.create(
        database,
        _fields(body),
        actor=actor.username,
        audit_actor=actor.audit_name,
        ip=client_address(request),
    )
    return created(DashboardPublic, saved, "/dashboards")


@router.put(
    "/dashboards/{slug}",
    response_model=DashboardPublic,
    responses={**_NOT_FOUND, **_SAVE_ERRORS},
    summary="Edit a dashboard: saves a new version (unless nothing changed)",
)
def update_dashboard(
    slug: str, body: DashboardUpdate, request: Request, actor: EditorDep, database: DatabaseDep
) -> dict[str, Any]:
    saved, _ = dashboards.update(
        database,
        slug,
        _fields(body),
        base_version=body.base_version,
        actor=actor.username,
        audit_actor=actor.audit_name,
        ip=client_address(request),
    )
    return saved


add_version_routes(
    router,
    dashboards.DASHBOARDS,
    path="/dashboards",
    label="dashboard",
    public_model=DashboardPublic,
    versions_model=DashboardVersions,
    diff_model=DashboardDiff,
    not_found=_NOT_FOUND,
    restore_errors={**_NOT_FOUND, **_SAVE_ERRORS},
    read_name="read_dashboard",
    delete_name="delete_dashboard",
)


@router.post(
    "/dashboards/{slug}/tiles/{tile_id}/run",
    response_model=TileResult,
    responses=_RUN_ERRORS,
    summary="Run one tile with the dashboard's parameter values (cached until its data changes)",
)
def run_tile(
    slug: str,
    tile_id: str,
    body: TileRun,
    actor: ViewerDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    results: ResultsDep,
) -> JSONResponse:
    dashboard = dashboards.get_dashboard(database, slug, body.version)
    return fast_json(
        tiles.run_tile(
            database,
            workers,
            settings,
            results,
            dashboard,
            tile_id,
            body.params,
            refresh=body.refresh,
            owner=actor.username,
            run_id=body.id,
        )
    )


@router.get(
    "/dashboards/{slug}/tiles/{tile_id}/export",
    response_class=StreamingResponse,
    responses={200: {"description": "The tile's whole result as a file"}, **_RUN_ERRORS},
    summary="Export the whole result of one tile (no row cap) as a download",
)
def export_tile(
    slug: str,
    tile_id: str,
    actor: ViewerDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    format: ExportFormatName = "csv",
    bom: bool = Query(
        False, description="csv/tsv: start with a UTF-8 byte-order mark (Excel on Windows)"
    ),
    params: str | None = Query(None, description="The dashboard's values as a JSON object."),
    version: int | None = Query(None, ge=1),
    id: UUID | None = None,
) -> StreamingResponse:
    dashboard = dashboards.get_dashboard(database, slug, version)
    saved, values = tiles.tile_export_params(
        database, dashboard, tile_id, parse_params_json(params)
    )
    return export_saved(
        database,
        workers,
        settings,
        saved,
        values,
        export_format_named(format, bom=bom),
        stem=f"{slug}-{tile_id}",
        run_id=id,
        owner=actor.username,
    )


@router.get(
    "/dashboards/{slug}/parameters/{name}/choices",
    response_model=ChoicesPublic,
    responses=_RUN_ERRORS,
    summary="The choices of a list parameter (the first column of its query)",
)
def parameter_choices(
    slug: str,
    name: str,
    actor: ViewerDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    results: ResultsDep,
    version: int | None = Query(None, ge=1),
) -> dict[str, Any]:
    dashboard = dashboards.get_dashboard(database, slug, version)
    return {
        "parameter": name,
        "choices": tiles.choices(
            database, workers, settings, results, dashboard, name, owner=actor.username
        ),
    }


@router.get(
    "/recent-runs",
    response_model=RecentRuns,
    summary="Saved queries and dashboards run lately, newest first",
)
def recent_runs(actor: ViewerDep, results: ResultsDep) -> dict[str, Any]:
    return {"runs": results.recent_runs()}
