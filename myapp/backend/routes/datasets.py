"""The datasets resource: upload files as tables, list, browse, profile, rename, delete, export.

The two upload routes are `async` because they stream the request body to a staging file as it
arrives, and the rows route because it sends its answer already encoded; every DuckDB call they
make runs on the thread pool. The other routes are plain `def`.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from myapp.models import ErrorBody
from myapp.models.datasets import (
    DatasetList,
    DatasetPublic,
    DatasetUpdate,
    FacetsResult,
    IngestResult,
    ProfileResult,
    RowsPage,
)

from ..admission import preferred_wait
from ..auth.dependencies import client_address
from ..deps import DatabaseDep, EditorDep, SettingsDep, ViewerDep, WorkersDep
from ..lake import history
from ..lean_route import lean_get
from ..metrics import observe_upload
from ..responses import export_response
from ..services import datasets
from ..store import browse
from ..store import browse_profile as profile
from ..store import datasets as catalog
from ..store.exports import download_filename, export_format
from ..store.ingest import StagingFiles, parse_options
from ..store.ingest_receive import (
    LineMeter,
    check_declared_length,
    receive_multipart,
    receive_raw,
)
from ..store.usersql import callers
from ..store.usersql import execute as usersql

log = logging.getLogger("myapp.backend.datasets")

router = APIRouter(tags=["datasets"])

_OPTION_DOCS = {
    "mode": "create (409 if the name exists), replace, or append (columns matched by name)",
    "format": "csv, tsv, parquet, json or ndjson; detected from the file name or content",
    "delimiter": "CSV delimiter, one character (\\t for tab); detected when absent",
    "header": "whether the first CSV line holds column names (true/false); detected",
    "quote": "CSV quote character; detected",
    "escape": "CSV escape character; detected",
    "encoding": "text encoding, e.g. utf-8, latin-1, cp1252, utf-16; detected",
    "nullstr": "CSV text that means NULL, e.g. NA",
    "types": 'explicit column types: {"col": "DATE"} or col:DATE,other:BIGINT',
}

# The raw-body upload reads its options from the query string with the same parser as the
# form's fields (parse_options, which also takes aliases such as `sep`); they are documented
# here rather than declared as parameters the handler would not read.
_RAW_BODY = {
    "requestBody": {
        "required": True,
        "description": "The file itself, sent as the raw request body (streamed to disk).",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    },
    "parameters": [
        {
            "name": key,
            "in": "query",
            "required": False,
            "schema": {"type": "string", **({"default": "create"} if key == "mode" else {})},
            "description": text,
        }
        for key, text in {
            **_OPTION_DOCS,
            "filename": "the original file name (for the catalog and format)",
            "sheet": "a workbook's sheet to read (name or 1-based number); the first by default",
            "skip": "lines to skip before the table; detected",
        }.items()
    ],
}

_MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {
                            "type": "string",
                            "description": "dataset name (default: from the file name)",
                        },
                        **{
                            k: {"type": "string", "description": v} for k, v in _OPTION_DOCS.items()
                        },
                    },
                }
            }
        },
    }
}

_INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "mode=create and the dataset exists"},
    413: {"model": ErrorBody, "description": "The body is larger than MYAPP_MAX_UPLOAD_BYTES"},
    422: {
        "model": ErrorBody,
        "description": "The file cannot be read, or does not fit the dataset (append)",
    },
}


def _quiet_disconnect() -> Response:
    # The client went away mid-upload; nobody reads this answer, and nothing was changed.
    log.info("upload aborted: the client disconnected")
    return Response(status_code=400)


async def _ingest(
    request: Request,
    *,
    settings,
    database,
    actor,
    name: str | None,
    raw: bool,
) -> Response:
    limit = settings.max_upload_bytes
    check_declared_length(request, limit)
    query = dict(request.query_params)
    options = parse_options(query)
    dataset_name = datasets.upload_name(name or query.get("name"))
    await run_in_threadpool(datasets.check_upload, database, dataset_name, options.mode)

    staging = StagingFiles(settings)
    try:
        upload = staging.new("upload")
        filename = query.get("filename") or None
        received_from = time.perf_counter()
        meter = LineMeter()
        try:
            if raw:
                await receive_raw(request, upload, limit, meter)
            else:
                form = await receive_multipart(request, upload, limit, meter)
                filename = form.filename or filename
                if form.fields:
                    options = parse_options({**query, **form.fields})
                if form.fields.get("name"):
                    dataset_name = datasets.upload_name(form.fields["name"])
        except ClientDisconnect:
            return _quiet_disconnect()
        received_bytes = upload.stat().st_size
        log.info(
            "upload received: %d bytes in %.2f s",
            received_bytes,
            time.perf_counter() - received_from,
        )
        loaded = False
        try:
            # A turn of heavy work for the load only, now that the body is here (admission.py):
            # a slow sender holds no turn, and a 503 comes after the body, so the client reads it.
            wait_s = preferred_wait(request.headers.get("prefer"))
            async with request.app.state.heavy.slot(wait_s):
                result = await run_in_threadpool(
                    datasets.load_upload,
                    database,
                    settings,
                    staging,
                    upload,
                    name=dataset_name,
                    filename=filename,
                    source_name=name,
                    options=options,
                    actor=actor.audit_name,
                    ip=client_address(request),
                    longest_line=meter.longest_line,
                )
            loaded = True
        finally:
            observe_upload(request, received_bytes, time.perf_counter() - received_from, ok=loaded)
    finally:
        await run_in_threadpool(staging.cleanup)
    body = IngestResult.model_validate(result).model_dump(mode="json")
    return JSONResponse(body, status_code=201)


@router.get("/datasets", response_model=DatasetList, summary="List datasets")
def list_datasets(settings: SettingsDep, database: DatabaseDep, actor: ViewerDep) -> dict[str, Any]:
    with database.cursor() as cur:
        datasets = [r.public() for r in catalog.list_datasets(cur)]
    # Clients (the upload page, the CLI) check a file's size before sending it.
    return {"datasets": datasets, "limits": {"max_upload_bytes": settings.max_upload_bytes}}


@router.post(
    "/datasets",
    status_code=201,
    response_model=IngestResult,
    responses=_INGEST_RESPONSES,
    openapi_extra=_MULTIPART_BODY,
    summary="Upload a file as a dataset (multipart form)",
)
async def create_dataset(
    request: Request, settings: SettingsDep, database: DatabaseDep, actor: EditorDep
) -> Response:
    """Fields: `file` (required), `name` (default: from the file name), `mode`, `format` and the
    parsing options; they may also be given as query parameters."""
    return await _ingest(
        request, settings=settings, database=database, actor=actor, name=None, raw=False
    )


@router.put(
    "/datasets/{name}",
    status_code=201,
    response_model=IngestResult,
    responses=_INGEST_RESPONSES,
    openapi_extra=_RAW_BODY,
    summary="Upload a file as a dataset (raw body, streamed)",
)
async def put_dataset(
    name: str,
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    actor: EditorDep,
) -> Response:
    """The file is the request body; it is written to disk as it arrives, never held whole."""
    return await _ingest(
        request, settings=settings, database=database, actor=actor, name=name, raw=True
    )


@router.get("/datasets/{name}", response_model=DatasetPublic, summary="One dataset")
def read_dataset(name: str, database: DatabaseDep, actor: ViewerDep) -> dict[str, Any]:
    with database.cursor() as cur:
        return database.dataset(cur, name).public()


@router.patch("/datasets/{name}", response_model=DatasetPublic, summary="Rename a dataset")
def update_dataset(
    name: str, body: DatasetUpdate, request: Request, database: DatabaseDep, actor: EditorDep
) -> dict[str, Any]:
    record = datasets.rename(
        database, name, body.name, actor=actor.audit_name, ip=client_address(request)
    )
    return record.public()


@router.delete("/datasets/{name}", status_code=204, summary="Delete a dataset")
def delete_dataset(
    name: str, request: Request, settings: SettingsDep, database: DatabaseDep, actor: EditorDep
) -> Response:
    datasets.delete(database, settings, name, actor=actor.audit_name, ip=client_address(request))
    return Response(status_code=204)


def _filters(request: Request) -> list[tuple[str, str]]:
    """The query's filters: every parameter but `version`, which chooses what is read (a
    column named `version` is filtered with `version__eq`)."""
    return [(k, v) for k, v in request.query_params.multi_items() if k != "version"]


def _browse_cache(request: Request) -> browse.BrowseCache:
    """The app's cache of counts and facets (made on first use, one per app)."""
    state = request.app.state
    cache = getattr(state, "browse_cache", None)
    if cache is None:
        cache = state.browse_cache = browse.BrowseCache()
    return cache


def _rows_json(
    request: Request,
    settings,
    database,
    workers,
    name: str,
    version: int | None,
    **query: Any,
) -> bytes:
    """The page as the JSON the response model would give (the same bytes: pydantic's own
    encoder, without validating rows the store already made JSON-safe)."""
    with callers.admitted(workers.callers, settings), database.cursor() as cur:
        record = history.at_version(cur, database.dataset(cur, name), version)
        page = browse.read_rows(
            cur,
            record,
            items=_filters(request),
            timeout_s=settings.query_timeout_ms / 1000,
            cache=_browse_cache(request),
            **query,
        )
    return browse.page_json(page)


# The busiest read of the API, without FastAPI's generic per-request work (lean_route.py).
@lean_get(
    router,
    "/datasets/{name}/rows",
    response_model=RowsPage,
    summary="A page of rows, filtered and sorted",
)
async def read_rows(
    name: str,
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    workers: WorkersDep,
    actor: ViewerDep,
    limit: Annotated[
        int, Query(ge=1, description="rows per page (at most 1000)")
    ] = browse.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="the `next` of the previous page")] = None,
    offset: Annotated[
        int | None, Query(ge=0, description="rows to skip (cursor is faster)")
    ] = None,
    sort: Annotated[str | None, Query(description="column, or -column for descending")] = None,
    q: Annotated[str | None, Query(description="text searched in the text columns")] = None,
    version: Annotated[
        int | None,
        Query(ge=1, le=2**62, description="an older version to read (see /versions)"),
    ] = None,
) -> Response:
    """Filters: `column__op=value` with op in eq ne gt gte lt lte contains startswith in
    isnull notnull, combined with AND; `in` takes comma-separated values."""
    # One hop to a thread for the store's work and the encoding. As a plain `def` with its
    # response model, FastAPI ran the handler on a thread and then validated the answer on
    # another hop; the page is already in the model's shape, and the bytes are the same.
    body = await run_in_threadpool(
        _rows_json,
        request,
        settings,
        database,
        workers,
        name,
        version,
        limit=limit,
        cursor=cursor,
        offset=offset,
        sort=sort,
        q=q,
    )
    return Response(content=body, media_type="application/json")


@router.get(
    "/datasets/{name}/facets",
    response_model=FacetsResult,
    summary="Top values of columns, with counts, under the filters",
)
def read_facets(
    name: str,
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    workers: WorkersDep,
    actor: ViewerDep,
    column: Annotated[list[str], Query(description="column to count (repeatable)")] = [],  # noqa: B006
    size: Annotated[
        int, Query(ge=1, description="values per column (at most 100)")
    ] = browse.DEFAULT_FACET_SIZE,
    q: Annotated[str | None, Query(description="text searched in the text columns")] = None,
    version: Annotated[
        int | None,
        Query(ge=1, le=2**62, description="an older version to read (see /versions)"),
    ] = None,
) -> dict[str, Any]:
    """With `Cache-Control: only-if-cached` only counts already made are given; the other
    columns are listed in `pending`."""
    stored_only = "only-if-cached" in request.headers.get("cache-control", "").lower()
    with callers.admitted(workers.callers, settings), database.cursor() as cur:
        record = history.at_version(cur, database.dataset(cur, name), version)
        return browse.read_facets(
            cur,
            record,
            columns=column,
            items=_filters(request),
            q=q,
            size=size,
            cache=_browse_cache(request),
            stored_only=stored_only,
        )


@router.get(
    "/datasets/{name}/profile",
    response_model=ProfileResult,
    summary="Per-column statistics, histograms and top values",
)
def read_profile(
    name: str, settings: SettingsDep, database: DatabaseDep, workers: WorkersDep, actor: ViewerDep
) -> dict[str, Any]:
    with callers.admitted(workers.callers, settings):
        return profile.get_profile(database, name)


@router.get(
    "/datasets/{name}/export",
    response_class=StreamingResponse,
    summary="Download the dataset (filtered and sorted like /rows)",
)
def export_dataset(
    name: str,
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    workers: WorkersDep,
    actor: ViewerDep,
    format: Annotated[str, Query(description="csv, tsv, parquet, json, ndjson or xlsx")] = "csv",
    bom: Annotated[
        bool, Query(description="csv/tsv: start with a UTF-8 byte-order mark (Excel on Windows)")
    ] = False,
    sort: Annotated[str | None, Query(description="column, or -column for descending")] = None,
    q: Annotated[str | None, Query(description="text searched in the text columns")] = None,
    version: Annotated[
        int | None,
        Query(ge=1, le=2**62, description="an older version to read (see /versions)"),
    ] = None,
) -> Response:
    fmt = export_format(format, bom=bom)
    with database.cursor() as cur:
        record = history.at_version(cur, catalog.get_dataset(cur, name), version)
        select_sql, params = browse.export_select(
            cur, record, items=_filters(request), sort=sort, q=q
        )
    # Written by an export worker, like every export (store/usersql/execute.py).
    export = usersql.export_sql(
        database,
        workers,
        settings,
        select_sql=select_sql,
        params=params,
        fmt=fmt,
        timeout_ms=None,
        run_id=usersql.new_id(),
        owner=actor.username,
    )
    return export_response(export, download_filename(record.name, fmt))
