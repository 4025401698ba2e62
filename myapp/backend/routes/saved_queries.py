"""Saved queries: create, read, edit (a new version each time), delete, run, chart, export."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from myapp.models import ErrorBody
from myapp.models.query import MAX_CHART_POINTS, ChartData, ExportFormatName, QueryResult
from myapp.models.saved_queries import (
    SavedQueryChartRequest,
    SavedQueryCreate,
    SavedQueryDiff,
    SavedQueryList,
    SavedQueryPublic,
    SavedQueryRun,
    SavedQueryUpdate,
    SavedQueryVersions,
)
from myapp.settings import Settings

from ..auth.dependencies import client_address
from ..deps import DatabaseDep, EditorDep, SettingsDep, ViewerDep, WorkersDep
from ..errors import BadRequest
from ..metrics import query_run
from ..responses import export_response
from ..services import saved_queries
from ..store.database import Database
from ..store.exports import ExportFormat, download_filename
from ..store.exports import export_format as export_format_named
from ..store.usersql import charts, execute, runs
from ..store.usersql.workers import Workers
from .query import fast_json, json_bytes, parse_params_json
from .versions import add_version_routes, created

router = APIRouter(tags=["queries"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such saved query or version"}
}
_RUN_ERRORS: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    400: {"model": ErrorBody, "description": "Invalid parameters, SQL error or time limit"},
    409: {"model": ErrorBody, "description": "Cancelled while running"},
}


def _fields(body: SavedQueryCreate | SavedQueryUpdate) -> dict[str, Any]:
    return body.model_dump(mode="json", exclude={"base_version"})


@router.get("/queries", response_model=SavedQueryList, summary="List saved queries")
def list_queries(
    request: Request,
    actor: ViewerDep,
    database: DatabaseDep,
    q: str | None = Query(None, max_length=200, description="Search titles and descriptions."),
) -> dict[str, Any]:
    queries = saved_queries.list_queries(database, q)
    request.app.state.results.overlay_runs("query", queries)
    return {"queries": queries}


@router.post(
    "/queries",
    status_code=201,
    response_model=SavedQueryPublic,
    responses={
        400: {"model": ErrorBody, "description": "The SQL is refused or invalid"},
        409: {
            "model": ErrorBody,
            "description": "The slug is taken, or the title is (with `if_title_exists: error`)",
        },
    },
    summary="Save a query (version 1)",
)
def create_query(
    body: SavedQueryCreate,
    request: Request,
    actor: EditorDep,
    database: DatabaseDep,
    workers: WorkersDep,
) -> JSONResponse:
    saved = saved_queries.create(
        database,
        _fields(body),
        workers=workers,
        actor=actor.username,
        audit_actor=actor.audit_name,
        ip=client_address(request),
    )
    return created(SavedQueryPublic, saved, "/queries")


@router.put(
    "/queries/{slug}",
    response_model=SavedQueryPublic,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody, "description": "Edited meanwhile"}},
    summary="Edit a saved query: saves a new version (unless nothing changed)",
)
def update_query(
    slug: str,
    body: SavedQueryUpdate,
    request: Request,
    actor: EditorDep,
    database: DatabaseDep,
    workers: WorkersDep,
) -> dict[str, Any]:
    saved, _ = saved_queries.update(
        database,
        slug,
        _fields(body),
        workers=workers,
        base_version=body.base_version,
        actor=actor.username,
        audit_actor=actor.audit_name,
        ip=client_address(request),
    )
    return saved


add_version_routes(
    router,
    saved_queries.SAVED_QUERIES,
    path="/queries",
    label="saved query",
    public_model=SavedQueryPublic,
    versions_model=SavedQueryVersions,
    diff_model=SavedQueryDiff,
    not_found=_NOT_FOUND,
    restore_errors={**_NOT_FOUND, 409: {"model": ErrorBody, "description": "Edited meanwhile"}},
    read_name="read_query",
    delete_name="delete_query",
)


@router.post(
    "/queries/{slug}/run",
    response_model=QueryResult,
    responses=_RUN_ERRORS,
    summary="Run a saved query with parameters (defaults fill the missing ones)",
)
def run_saved_query(
    slug: str,
    body: SavedQueryRun,
    request: Request,
    actor: ViewerDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
) -> Response:
    saved = saved_queries.get_query(database, slug, body.version)
    values = saved_queries.bind_saved_parameters(saved["parameters"], body.params)
    request.app.state.results.note_run("query", slug)
    with query_run(request, "saved"):
        result = execute.run_select(
            database,
            workers,
            settings,
            sql=saved["sql"],
            params=values,
            limit=body.limit,
            timeout_ms=body.timeout_ms,
            run_id=runs.new_run_id(body.id),
            owner=actor.username,
        )
    return json_bytes(result)


@router.post(
    "/queries/{slug}/chart",
    response_model=ChartData,
    responses=_RUN_ERRORS,
    summary="The data of the saved chart (or another one) of a saved query",
)
def chart_saved_query(
    slug: str,
    body: SavedQueryChartRequest,
    actor: ViewerDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
) -> JSONResponse:
    saved = saved_queries.get_query(database, slug, body.version)
    chart = body.chart.model_dump() if body.chart else saved["chart"]
    if not chart:
        raise BadRequest("This saved query has no chart; send one in `chart`.", code="no_chart")
    values = saved_queries.bind_saved_parameters(saved["parameters"], body.params)
    return fast_json(
        charts.chart_select(
            database,
            workers,
            settings,
            sql=saved["sql"],
            params=values,
            chart=chart,
            timeout_ms=body.timeout_ms,
            run_id=runs.new_run_id(body.id),
            owner=actor.username,
            max_points=MAX_CHART_POINTS,
        )
    )


@router.get(
    "/queries/{slug}/export",
    response_class=StreamingResponse,
    responses={200: {"description": "The whole result as a file"}, **_RUN_ERRORS},
    summary="Export the whole result of a saved query (no row cap) as a download",
)
def export_saved_query(
    slug: str,
    request: Request,
    actor: ViewerDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    format: ExportFormatName = "csv",
    bom: bool = Query(
        False, description="csv/tsv: start with a UTF-8 byte-order mark (Excel on Windows)"
    ),
    params: str | None = Query(None, description="The parameters as a JSON object."),
    version: int | None = Query(None, ge=1),
    filename: str | None = Query(None, max_length=200),
    id: UUID | None = None,
) -> StreamingResponse:
    saved = saved_queries.get_query(database, slug, version)
    values = saved_queries.bind_saved_parameters(saved["parameters"], parse_params_json(params))
    request.app.state.results.note_run("query", slug)
    stem = filename or (slug if version is None else f"{slug}-v{version}")
    return export_saved(
        database,
        workers,
        settings,
        saved,
        values,
        export_format_named(format, bom=bom),
        stem=stem,
        run_id=id,
        owner=actor.username,
    )


def export_saved(
    database: Database,
    workers: Workers,
    settings: Settings,
    saved: Mapping[str, Any],
    values: Mapping[str, Any],
    fmt: ExportFormat,
    *,
    stem: str,
    run_id: UUID | None,
    owner: str | None,
) -> StreamingResponse:
    """The whole result of a saved query (no row cap) as a download named `stem`; the export
    routes of saved queries, dashboard tiles and share links all answer this way."""
    export = execute.export_select(
        database,
        workers,
        settings,
        sql=saved["sql"],
        params=dict(values),
        fmt=fmt,
        timeout_ms=None,
        run_id=runs.new_run_id(run_id),
        owner=owner,
    )
    return export_response(export, download_filename(stem, fmt))
