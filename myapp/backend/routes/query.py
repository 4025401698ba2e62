"""Run SQL: one read-only SELECT at a time, followed, cancelled, charted or exported."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from myapp.models import ErrorBody
from myapp.models.query import (
    MAX_CHART_POINTS,
    MAX_SQL_CHARS,
    ChartData,
    ChartRequest,
    ExportFormatName,
    ExportRequest,
    QueryRequest,
    QueryResult,
    QueryStatus,
)

from ..deps import DatabaseDep, SettingsDep, ViewerDep, WorkersDep
from ..errors import BadRequest, Conflict, NotFound
from ..lake import engine as lake
from ..lake import runs as shared_runs
from ..lean_route import LeanRoute
from ..metrics import query_run
from ..responses import export_response
from ..store.exports import download_filename
from ..store.exports import export_format as export_format_named
from ..store.usersql import charts, execute, runs

# Requests answered without FastAPI's generic per-request work where the route allows it
# (lean_route.py): a point lookup is mostly fixed costs.
router = APIRouter(tags=["query"], route_class=LeanRoute)

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Refused, invalid SQL, or the time limit passed"},
    409: {"model": ErrorBody, "description": "Cancelled while running"},
    422: {
        "model": ErrorBody,
        "description": "Needs more memory or disk than allowed, or the result is bigger than "
        "MYAPP_MAX_RESULT_BYTES",
    },
    503: {"model": ErrorBody, "description": "All query workers are busy"},
}


@router.post(
    "/query",
    response_model=QueryResult,
    responses=_ERRORS,
    summary="Run one read-only SELECT",
)
async def run_query(
    body: QueryRequest,
    request: Request,
    actor: ViewerDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
) -> Response:
    # Async: the common case waits for its worker on the event loop (execute.run_select_async).
    with query_run(request, "adhoc"):
        result = await execute.run_select_async(
            database,
            workers,
            settings,
            sql=body.sql,
            params=body.params,
            limit=body.limit,
            timeout_ms=body.timeout_ms,
            run_id=runs.new_run_id(body.id),
            owner=actor.username,
        )
    return json_bytes(result)


@router.post(
    "/query/chart",
    response_model=ChartData,
    responses=_ERRORS,
    summary="The data of a chart of a SELECT's result, cut to at most 10,000 points by DuckDB",
)
def chart_query(
    body: ChartRequest,
    request: Request,
    actor: ViewerDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
) -> JSONResponse:
    with query_run(request, "chart"):
        result = charts.chart_select(
            database,
            workers,
            settings,
            sql=body.sql,
            params=body.params,
            chart=body.chart.model_dump(),
            timeout_ms=body.timeout_ms,
            run_id=runs.new_run_id(body.id),
            owner=actor.username,
            max_points=MAX_CHART_POINTS,
        )
    return fast_json(result)


def json_bytes(body: bytes) -> Response:
    """A result the worker already encoded as JSON (store/usersql/worker.py), sent as it is."""
    return Response(content=body, media_type="application/json")


def fast_json(body: dict[str, Any]) -> JSONResponse:
    """The body as it is: rows are already JSON-safe (store/values.py), and validating up to
    MYAPP_MAX_ROWS rows against the response model would cost more than the query."""
    return JSONResponse(body)


def _export(
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    actor: Any,
    *,
    sql: str,
    params: dict[str, Any] | None,
    fmt: str,
    bom: bool,
    filename: str | None,
    run_id: UUID | None,
) -> StreamingResponse:
    export_format = export_format_named(fmt, bom=bom)
    export = execute.export_select(
        database,
        workers,
        settings,
        sql=sql,
        params=params,
        fmt=export_format,
        timeout_ms=None,
        run_id=runs.new_run_id(run_id),
        owner=actor.username,
    )
    stem = filename or f"query-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    return export_response(export, download_filename(stem, export_format))


@router.get(
    "/query/export",
    response_class=StreamingResponse,
    responses={200: {"description": "The whole result as a file"}, **_ERRORS},
    summary="Export the whole result of a SELECT (no row cap) as a download",
)
def export_query_get(
    actor: ViewerDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    sql: str = Query(min_length=1, max_length=MAX_SQL_CHARS),
    format: ExportFormatName = "csv",
    bom: bool = Query(
        False, description="csv/tsv: start with a UTF-8 byte-order mark (Excel on Windows)"
    ),
    params: str | None = Query(None, description="The parameters as a JSON object."),
    filename: str | None = Query(None, max_length=200),
    id: UUID | None = None,
) -> StreamingResponse:
    values = parse_params_json(params)
    return _export(
        database,
        workers,
        settings,
        actor,
        sql=sql,
        params=values,
        fmt=format,
        bom=bom,
        filename=filename,
        run_id=id,
    )


@router.post(
    "/query/export",
    response_class=StreamingResponse,
    responses={200: {"description": "The whole result as a file"}, **_ERRORS},
    summary="Export the whole result of a SELECT (no row cap) as a download",
)
def export_query_post(
    body: ExportRequest,
    actor: ViewerDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
) -> StreamingResponse:
    return _export(
        database,
        workers,
        settings,
        actor,
        sql=body.sql,
        params=body.params,
        fmt=body.format,
        bom=body.bom,
        filename=body.filename,
        run_id=body.id,
    )


@router.get(
    "/query/{query_id:uuid}",
    response_model=QueryStatus,
    summary="State and progress of a query run (running or recently ended)",
)
def read_query_status(
    query_id: UUID, database: DatabaseDep, workers: WorkersDep, actor: ViewerDep
) -> dict[str, Any]:
    who = {"actor_name": actor.username, "is_admin": actor.can("admin")}
    try:
        run = runs.get_run(workers.runs, str(query_id), **who)
    except NotFound:
        if not lake.MODE.active:
            raise
        # The lake mode: a run of another backend (lake/runs.py).
        return shared_runs.status(database, str(query_id), **who)
    return run.status()


@router.delete(
    "/query/{query_id:uuid}",
    status_code=204,
    responses={409: {"model": ErrorBody, "description": "The query has already ended"}},
    summary="Cancel a running query; its own request answers 409 query_cancelled",
)
def cancel_query(
    query_id: UUID, database: DatabaseDep, workers: WorkersDep, actor: ViewerDep
) -> Response:
    who = {"actor_name": actor.username, "is_admin": actor.can("admin")}
    try:
        run = runs.get_run(workers.runs, str(query_id), **who)
    except NotFound:
        if not lake.MODE.active:
            raise
        shared_runs.cancel(database, str(query_id), **who)
        return Response(status_code=204)
    if not run.stop("cancel"):
        raise Conflict(
            f"The query has already ended ({run.state.replace('_', ' ')}).",
            code="query_not_running",
            detail={"state": run.state},
        )
    return Response(status_code=204)


def parse_params_json(text: str | None) -> dict[str, Any] | None:
    """`params` given in a query string, as a JSON object."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise BadRequest(
            'params must be a JSON object, such as {"city": "Oslo"}.', code="bad_params"
        ) from None
    if not isinstance(value, dict):
        raise BadRequest(
            'params must be a JSON object, such as {"city": "Oslo"}.', code="bad_params"
        )
    return value
