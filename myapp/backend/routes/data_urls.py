"""Datasets and saved-query results as Parquet URLs that other tools read directly.

    SELECT * FROM read_parquet('https://myapp.example.org/api/datasets/sales/data.parquet')

DuckDB (httpfs, with a bearer-token secret), pyarrow/fsspec and polars fetch only the byte
ranges they need from these (ranges.py); the files are made once per version of the data
(store/parquet_files.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from myapp.models import ErrorBody

from ..deps import DatabaseDep, SettingsDep, ViewerDep, WorkersDep
from ..ranges import PARQUET_MEDIA_TYPE, RangeFileResponse
from ..services import saved_queries
from ..store.exports import FORMATS
from ..store.usersql import execute, runs
from .query import parse_params_json

router = APIRouter(tags=["data urls"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {PARQUET_MEDIA_TYPE: {}}, "description": "The whole file"},
    206: {"content": {PARQUET_MEDIA_TYPE: {}}, "description": "The byte range asked for"},
    304: {"description": "Not changed since the ETag given in If-None-Match"},
    416: {"model": ErrorBody, "description": "The range is outside the file"},
}


@router.get(
    "/datasets/{name}/data.parquet",
    response_class=Response,
    responses=_RESPONSES,
    operation_id="dataset_parquet",
    summary="The dataset as one Parquet file, served by byte range (for DuckDB, polars, pyarrow)",
)
@router.head(
    "/datasets/{name}/data.parquet",
    response_class=Response,
    responses=_RESPONSES,
    operation_id="dataset_parquet_head",
    # HEAD (size and validators, what range readers ask first) answers as GET without a
    # body; an error answer then has no JSON body either, so it stays out of the document.
    include_in_schema=False,
    summary="The dataset as one Parquet file, served by byte range (for DuckDB, polars, pyarrow)",
)
async def dataset_parquet(
    name: str, request: Request, database: DatabaseDep, actor: ViewerDep
) -> RangeFileResponse:
    files = request.app.state.parquet_files
    served = await run_in_threadpool(files.dataset, database, name)
    return RangeFileResponse(served)


@router.get(
    "/queries/{slug}/data.parquet",
    response_class=Response,
    responses=_RESPONSES,
    operation_id="saved_query_parquet",
    summary="A saved query's result as one Parquet file, served by byte range",
)
@router.head(
    "/queries/{slug}/data.parquet",
    response_class=Response,
    responses=_RESPONSES,
    operation_id="saved_query_parquet_head",
    # HEAD (size and validators, what range readers ask first) answers as GET without a
    # body; an error answer then has no JSON body either, so it stays out of the document.
    include_in_schema=False,
    summary="A saved query's result as one Parquet file, served by byte range",
)
async def saved_query_parquet(
    slug: str,
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    workers: WorkersDep,
    actor: ViewerDep,
    params: str | None = Query(None, description="The parameters as a JSON object."),
    version: int | None = Query(None, ge=1),
) -> RangeFileResponse:
    files = request.app.state.parquet_files

    def serve():
        saved = saved_queries.get_query(database, slug, version)
        values = saved_queries.bind_saved_parameters(saved["parameters"], parse_params_json(params))

        def export():
            return execute.export_select(
                database,
                workers,
                settings,
                sql=saved["sql"],
                params=values,
                fmt=FORMATS["parquet"],
                timeout_ms=None,
                run_id=runs.new_run_id(None),
                owner=actor.username,
            )

        return files.query_result(
            database, slug=saved["slug"], version=saved["version"], values=values, export=export
        )

    return RangeFileResponse(await run_in_threadpool(serve))
