"""Staged uploads: send a file, see it as it would load, change how it is read, then load it.

`POST /api/uploads` takes the same body as an upload (a multipart form, or the raw file with
the options as query parameters) and answers with a preview instead of a dataset; `PATCH`
reads it again with other options or column types; `POST …/load` makes it a dataset without
sending the file again; `DELETE` drops it. Only its uploader (or an admin) can see it.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from myapp.models import ErrorBody
from myapp.models.datasets import IngestResult, UploadLoad, UploadResult, UploadUpdate

from ..auth.actor import Actor
from ..auth.dependencies import client_address
from ..deps import DatabaseDep, EditorDep, SettingsDep
from ..services import datasets
from ..store.ingest import parse_options
from ..store.ingest_receive import (
    LineMeter,
    check_declared_length,
    receive_multipart,
    receive_raw,
)
from ..store.uploads import StagedUploads
from .datasets import _MULTIPART_BODY, _OPTION_DOCS

log = logging.getLogger("myapp.backend.uploads")

router = APIRouter(tags=["uploads"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "A multipart form (`file` and the parsing options), or the raw file as "
        "the body with the options and `filename` as query parameters.",
        "content": {
            **_MULTIPART_BODY["requestBody"]["content"],
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "parameters": [
        {
            "name": k,
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": v,
        }
        for k, v in {
            **_OPTION_DOCS,
            "filename": "the original file name (format detection, the dataset's default name)",
            "sheet": "a workbook's sheet to read (name or 1-based number); the first by default",
            "skip": "lines to skip before the table; detected",
        }.items()
        if k != "mode"
    ],
}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such staged upload (or someone else's)"},
    413: {"model": ErrorBody, "description": "Larger than MYAPP_MAX_UPLOAD_BYTES"},
    422: {"model": ErrorBody, "description": "The file cannot be read"},
}


def _uploads(request: Request) -> StagedUploads:
    state = request.app.state
    uploads = getattr(state, "staged_uploads", None)
    if uploads is None:
        uploads = state.staged_uploads = StagedUploads(state.settings)
    return uploads


def _answer(upload, status: int = 200) -> JSONResponse:
    body = UploadResult.model_validate({"upload": upload.preview()}).model_dump(mode="json")
    return JSONResponse(body, status_code=status)


def _is_admin(actor: Actor) -> bool:
    return actor.can("admin")


@router.post(
    "/uploads",
    status_code=201,
    response_model=UploadResult,
    responses=_RESPONSES,
    openapi_extra=_UPLOAD_BODY,
    summary="Stage an upload and preview it as it would load",
)
async def create_upload(
    request: Request, settings: SettingsDep, database: DatabaseDep, actor: EditorDep
) -> Response:
    """The answer holds the detected format, encoding, delimiter, quote, header, skipped lines,
    sheet (and the workbook's sheet names), the columns with their types, the first 100 rows as
    they would load and the rejects among the rows. It expires after MYAPP_UPLOAD_TTL_S."""
    uploads = _uploads(request)
    limit = settings.max_upload_bytes
    check_declared_length(request, limit)
    declared = request.headers.get("content-length")
    await run_in_threadpool(uploads.check_room, actor.audit_name, int(declared) if declared else 0)
    query = dict(request.query_params)
    options = parse_options(query)
    filename = query.get("filename") or None
    name = query.get("name")
    upload_id, directory = await run_in_threadpool(uploads.new_directory)
    target = directory / "upload"
    meter = LineMeter()
    multipart = request.headers.get("content-type", "").lower().startswith("multipart/")
    try:
        try:
            if multipart:
                form = await receive_multipart(request, target, limit, meter)
                filename = form.filename or filename
                if form.fields:
                    options = parse_options({**query, **form.fields})
                    name = form.fields.get("name") or name
            else:
                await receive_raw(request, target, limit, meter)
        except ClientDisconnect:
            log.info("staged upload aborted: the client disconnected")
            await run_in_threadpool(_remove, directory)
            return Response(status_code=400)
    except BaseException:
        await run_in_threadpool(_remove, directory)
        raise
    upload = await run_in_threadpool(
        lambda: uploads.stage(
            upload_id=upload_id,
            directory=directory,
            upload=target,
            owner=actor.audit_name,
            filename=filename,
            options=options,
            longest_line=meter.longest_line,
            name=name,
        )
    )
    return _answer(upload, 201)


def _remove(directory) -> None:
    import shutil

    shutil.rmtree(directory, ignore_errors=True)


@router.get(
    "/uploads/{upload_id}",
    response_model=UploadResult,
    responses=_RESPONSES,
    summary="A staged upload's preview",
)
def read_upload(upload_id: str, request: Request, actor: EditorDep) -> Response:
    upload = _uploads(request).get(upload_id, actor.audit_name, _is_admin(actor))
    return _answer(upload)


@router.patch(
    "/uploads/{upload_id}",
    response_model=UploadResult,
    responses=_RESPONSES,
    summary="Read a staged upload again with other options or column types",
)
def update_upload(
    upload_id: str, body: UploadUpdate, request: Request, actor: EditorDep
) -> Response:
    """Fields left out keep their value; null means detect again. `types` sets column types
    (`{}` resets them): values that do not fit become rejects."""
    uploads = _uploads(request)
    upload = uploads.get(upload_id, actor.audit_name, _is_admin(actor))
    changes = body.model_dump(exclude_unset=True)
    uploads.update(upload, changes)
    return _answer(upload)


@router.post(
    "/uploads/{upload_id}/load",
    status_code=201,
    response_model=IngestResult,
    responses={
        **_RESPONSES,
        409: {"model": ErrorBody, "description": "mode=create and the dataset exists"},
    },
    summary="Load a staged upload as a dataset",
)
def load_upload(
    upload_id: str,
    body: UploadLoad,
    request: Request,
    database: DatabaseDep,
    actor: EditorDep,
) -> Response:
    """The same answer as an upload to /api/datasets; the staged upload is gone afterwards."""
    uploads = _uploads(request)
    upload = uploads.get(upload_id, actor.audit_name, _is_admin(actor))
    result = datasets.load_staged(
        database,
        uploads,
        upload,
        name=body.name,
        mode=body.mode,
        actor=actor.audit_name,
        ip=client_address(request),
    )
    body_out = IngestResult.model_validate(result).model_dump(mode="json")
    return JSONResponse(body_out, status_code=201)


@router.delete(
    "/uploads/{upload_id}", status_code=204, responses=_RESPONSES, summary="Drop a staged upload"
)
def delete_upload(upload_id: str, request: Request, actor: EditorDep) -> Response:
    uploads = _uploads(request)
    uploads.delete(uploads.get(upload_id, actor.audit_name, _is_admin(actor)))
    return Response(status_code=204)
