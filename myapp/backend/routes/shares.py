"""Share links: editors make and revoke them; their visitors read exactly what they share.

The routes under /api/shared answer only a share link's secret (sharing.py): each reads the
link's own target, so no path or body can point them anywhere else.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from myapp.models import ErrorBody
from myapp.models.dashboards import (
    ChoicesPublic,
    ShareCreate,
    ShareCreated,
    SharedPublic,
    SharedRun,
    ShareList,
    TileResult,
)
from myapp.models.query import ExportFormatName, QueryResult
from myapp.settings import Settings

from ..auth.dependencies import client_address
from ..deps import DatabaseDep, EditorDep, SettingsDep, WorkersDep
from ..errors import NotFound
from ..services import dashboards, saved_queries, shares
from ..sharing import ShareDep, record_use
from ..store import tiles
from ..store.database import Database
from ..store.exports import export_format
from ..store.results import ResultCache, run_saved
from ..store.shares import ShareRecord
from ..store.usersql.workers import Workers
from .dashboards import ResultsDep
from .query import fast_json, parse_params_json
from .saved_queries import export_saved

router = APIRouter(tags=["share links"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "The shared target, or the tile, is gone"},
    400: {"model": ErrorBody, "description": "Invalid or fixed parameters, SQL error, time limit"},
}


@router.get("/shares", response_model=ShareList, summary="List share links")
def list_shares(
    actor: EditorDep,
    database: DatabaseDep,
    kind: Literal["query", "dashboard"] | None = None,
    target: str | None = Query(None, max_length=100),
    mine: bool = Query(False, description="Only the links made by the caller."),
) -> dict[str, Any]:
    records = shares.list_shares(
        database, kind=kind, target=target, created_by=actor.username if mine else None
    )
    return {"shares": [record.public() for record in records]}


@router.post(
    "/shares",
    status_code=201,
    response_model=ShareCreated,
    responses={
        404: {"model": ErrorBody, "description": "No such query, dashboard or version"},
        400: {"model": ErrorBody, "description": "A fixed value is not a parameter or invalid"},
    },
    summary="Make a share link; its secret address is in the answer, and only there",
)
def create_share(
    body: ShareCreate, request: Request, actor: EditorDep, database: DatabaseDep
) -> JSONResponse:
    secret, record = shares.create(
        database,
        body.model_dump(mode="json"),
        actor=actor.username,
        audit_actor=actor.audit_name,
        ip=client_address(request),
    )
    created = ShareCreated(**record.public(), token=secret, path=f"/s/{secret}")
    return JSONResponse(
        created.model_dump(mode="json"),
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


@router.delete(
    "/shares/{share_id}",
    status_code=204,
    responses={404: {"model": ErrorBody, "description": "No such share link"}},
    summary="Revoke a share link: it stops working at once",
)
def revoke_share(
    share_id: str, request: Request, actor: EditorDep, database: DatabaseDep
) -> Response:
    shares.revoke(database, share_id, audit_actor=actor.audit_name, ip=client_address(request))
    return Response(status_code=204)


# -- what a link's visitor may do -------------------------------------------------------------
@router.get(
    "/shared",
    response_model=SharedPublic,
    responses=_ERRORS,
    summary="What the share link (the bearer credential) shows; counts one use",
)
def read_shared(share: ShareDep, database: DatabaseDep) -> dict[str, Any]:
    body = tiles.shared_view(database, share)
    record_use(database, share.id)
    return body


def _query_only(share) -> None:
    if share.kind != "query":
        raise NotFound("This share link shows a dashboard: run its tiles.", code="not_a_query")


def _dashboard_only(share) -> None:
    if share.kind != "dashboard":
        raise NotFound(
            "This share link shows a saved query, not a dashboard.", code="not_a_dashboard"
        )


@router.post(
    "/shared/run",
    response_model=QueryResult,
    responses=_ERRORS,
    summary="Run the shared saved query with the open parameters",
)
def run_shared(
    body: SharedRun,
    share: ShareDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    results: ResultsDep,
) -> JSONResponse:
    return _run_shared(database, workers, settings, results, share, body, mode="rows")


@router.post(
    "/shared/chart",
    responses=_ERRORS,
    summary="The chart data of the shared saved query",
)
def chart_shared(
    body: SharedRun,
    share: ShareDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    results: ResultsDep,
) -> JSONResponse:
    return _run_shared(database, workers, settings, results, share, body, mode="chart")


def _run_shared(
    database: Database,
    workers: Workers,
    settings: Settings,
    results: ResultCache,
    share: ShareRecord,
    body: SharedRun,
    *,
    mode: Literal["rows", "chart"],
) -> JSONResponse:
    _query_only(share)
    saved = saved_queries.get_query(database, share.target, share.version)
    given = tiles.with_fixed(saved["parameters"], body.params, share.params)
    result, _, _, _ = run_saved(
        database, workers, settings, results, saved, given, mode=mode, owner=None, run_id=body.id
    )
    return fast_json(result)


@router.get(
    "/shared/export",
    response_class=StreamingResponse,
    responses={200: {"description": "The whole result as a file"}, **_ERRORS},
    summary="Export the shared saved query's whole result",
)
def export_shared(
    share: ShareDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    format: ExportFormatName = "csv",
    bom: bool = Query(
        False, description="csv/tsv: start with a UTF-8 byte-order mark (Excel on Windows)"
    ),
    params: str | None = Query(None, description="The open parameters as a JSON object."),
    id: UUID | None = None,
) -> StreamingResponse:
    return _export_shared(
        database, workers, settings, share, format, params, id, tile_id=None, bom=bom
    )


@router.post(
    "/shared/tiles/{tile_id}/run",
    response_model=TileResult,
    responses=_ERRORS,
    summary="Run one tile of the shared dashboard",
)
def run_shared_tile(
    tile_id: str,
    body: SharedRun,
    share: ShareDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    results: ResultsDep,
) -> JSONResponse:
    _dashboard_only(share)
    dashboard = dashboards.get_dashboard(database, share.target, share.version)
    answer = tiles.run_tile(
        database,
        workers,
        settings,
        results,
        dashboard,
        tile_id,
        body.params,
        fixed=share.params,
        owner=None,
        run_id=body.id,
    )
    # The visitor learns the results, not which saved queries make them.
    answer["query"] = ""
    return fast_json(answer)


@router.get(
    "/shared/tiles/{tile_id}/export",
    response_class=StreamingResponse,
    responses={200: {"description": "The tile's whole result as a file"}, **_ERRORS},
    summary="Export the whole result of one tile of the shared dashboard",
)
def export_shared_tile(
    tile_id: str,
    share: ShareDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    format: ExportFormatName = "csv",
    bom: bool = Query(
        False, description="csv/tsv: start with a UTF-8 byte-order mark (Excel on Windows)"
    ),
    params: str | None = Query(None, description="The open values as a JSON object."),
    id: UUID | None = None,
) -> StreamingResponse:
    return _export_shared(
        database, workers, settings, share, format, params, id, tile_id=tile_id, bom=bom
    )


def _export_shared(
    database: Database,
    workers: Workers,
    settings: Settings,
    share: ShareRecord,
    format: str,
    params: str | None,
    run_id: UUID | None,
    *,
    tile_id: str | None,
    bom: bool = False,
) -> StreamingResponse:
    """The link's saved query, or one tile of its dashboard, under the link's fixed values; a
    use is counted once the values are accepted."""
    if tile_id is None:
        _query_only(share)
        saved = saved_queries.get_query(database, share.target, share.version)
        given = tiles.with_fixed(saved["parameters"], parse_params_json(params), share.params)
        values = saved_queries.bind_saved_parameters(saved["parameters"], given)
        stem = share.target
    else:
        _dashboard_only(share)
        dashboard = dashboards.get_dashboard(database, share.target, share.version)
        saved, values = tiles.tile_export_params(
            database, dashboard, tile_id, parse_params_json(params), fixed=share.params
        )
        stem = f"{share.target}-{tile_id}"
    record_use(database, share.id)
    return export_saved(
        database,
        workers,
        settings,
        saved,
        values,
        export_format(format, bom=bom),
        stem=stem,
        run_id=run_id,
        owner=None,
    )


@router.get(
    "/shared/parameters/{name}/choices",
    response_model=ChoicesPublic,
    responses=_ERRORS,
    summary="The choices of a list parameter of the shared dashboard",
)
def shared_choices(
    name: str,
    share: ShareDep,
    database: DatabaseDep,
    workers: WorkersDep,
    settings: SettingsDep,
    results: ResultsDep,
) -> dict[str, Any]:
    _dashboard_only(share)
    dashboard = dashboards.get_dashboard(database, share.target, share.version)
    return {
        "parameter": name,
        "choices": tiles.choices(database, workers, settings, results, dashboard, name, owner=None),
    }
