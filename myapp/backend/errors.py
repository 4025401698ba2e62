"""Domain errors and the handlers that turn every failure into the one JSON error body."""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .store.engine import IO_ERRORS, DatabaseError, StoppedError

log = logging.getLogger("myapp.backend")


class AppError(Exception):
    """An error a client can act on. Raise a subclass, or this with an explicit status."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status_code: int | None = None,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code
        self.detail = detail
        self.headers = headers


class BadRequest(AppError):
    status_code, code = 400, "bad_request"


class Unauthorized(AppError):
    status_code, code = 401, "unauthorized"


class Forbidden(AppError):
    status_code, code = 403, "forbidden"


class NotFound(AppError):
    status_code, code = 404, "not_found"


class Conflict(AppError):
    status_code, code = 409, "conflict"


class PayloadTooLarge(AppError):
    status_code, code = 413, "payload_too_large"


class Unprocessable(AppError):
    status_code, code = 422, "unprocessable"


class TooManyRequests(AppError):
    status_code, code = 429, "too_many_requests"


class ServiceUnavailable(AppError):
    status_code, code = 503, "service_unavailable"


class InsufficientStorage(AppError):
    status_code, code = 507, "insufficient_storage"


DISK_FULL_MESSAGE = (
    "The server's disk is full, so this could not be saved and nothing was changed; free space "
    "on the data volume (or ask the administrator to), then try again."
)

# After a failed checkpoint DuckDB refuses every further statement until the database is opened
# again; saying "disk full" on every read would send people to free space that will not help.
DATABASE_STOPPED_MESSAGE = (
    "The database stopped after a write failed (most often because the disk was full); "
    "free space if needed, then restart the backend."
)

_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_DISK_FULL_TEXTS = ("no space left on device", "disk quota exceeded")


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc` and the errors it was raised while handling.

    The store translates errors where they happen (a failed load becomes "unreadable file", a
    failed COPY a query error, a write inside the multipart parser "malformed body"); the
    original error stays on the chain, and a full disk wins over those readings of it.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_disk_full(exc: BaseException | None) -> bool:
    for error in _chain(exc):
        if isinstance(error, OSError) and error.errno in _DISK_FULL_ERRNOS:
            return True
        if isinstance(error, IO_ERRORS):
            text = str(error).lower()
            if any(t in text for t in _DISK_FULL_TEXTS):
                return True
    return False


def is_database_stopped(exc: BaseException | None) -> bool:
    return any(
        isinstance(error, StoppedError) and "invalidated" in str(error) for error in _chain(exc)
    )


def error_response(
    status_code: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    return JSONResponse({"error": error}, status_code=status_code, headers=headers)


# FastAPI's words when a body is not JSON it can decode (e.g. not UTF-8), and ours instead.
_UNREADABLE_BODY = "There was an error parsing the body"
_UNREADABLE_BODY_MESSAGE = "The request body could not be read; send JSON encoded as UTF-8."

# Codes for statuses Starlette raises by itself (routing, method mismatch…).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        out.append(
            {
                "loc": [str(part) for part in err.get("loc", ())],
                "msg": err.get("msg", ""),
                "type": err.get("type", ""),
            }
        )
    return out


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "The request is not valid."
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    where = ".".join(loc)
    msg = first.get("msg", "invalid value")
    return f"Invalid request: {where}: {msg}." if where else f"Invalid request: {msg}."


CATALOG_UNAVAILABLE_MESSAGE = (
    "The shared catalog (PostgreSQL) cannot be reached right now; try again in a moment."
)


async def _storage_error(request: Request, exc: BaseException) -> JSONResponse | None:
    """The answer for a full disk, a stopped database or an unreachable catalog; None for
    anything else."""
    from .lake.engine import MODE, catalog_unreachable  # the lake package imports this module

    if catalog_unreachable(exc):
        # The lake mode's PostgreSQL is away: a 503 until it answers again (no restart needed).
        MODE.note_unreachable()
        log.error("catalog unreachable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "catalog_unavailable", CATALOG_UNAVAILABLE_MESSAGE)
    # A stopped side instance (a load or an export of its own) is gone with its request; only
    # the process's database staying unusable needs a restart.
    if is_database_stopped(exc) and not await _database_usable(request):
        log.error("database unusable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "database_unavailable", DATABASE_STOPPED_MESSAGE)
    if is_disk_full(exc):
        # No traceback: the cause is outside the program, and the administrator needs the line.
        log.error("disk full on %s %s: %s", request.method, request.url.path, exc)
        return error_response(507, InsufficientStorage.code, DISK_FULL_MESSAGE)
    return None


async def _database_usable(request: Request) -> bool:
    database = getattr(request.app.state, "database", None)
    return database is not None and await run_in_threadpool(database.healthy)


def _internal_error(request: Request, exc: BaseException) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        500,
        "internal_error",
        "Something went wrong on the server; the error was logged. Try again, "
        "and report it if it keeps happening.",
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        if exc.status_code != InsufficientStorage.status_code:
            storage = await _storage_error(request, exc)
            if storage is not None:
                return storage
        return error_response(exc.status_code, exc.code, exc.message, exc.detail, exc.headers)

    # Handled here rather than by the catch-all below, which answers and then re-raises (so
    # every full disk would also print a traceback).
    @app.exception_handler(OSError)
    @app.exception_handler(DatabaseError)
    async def _io_error(request: Request, exc: Exception) -> JSONResponse:
        return await _storage_error(request, exc) or _internal_error(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        if exc.status_code == 404 and exc.detail in (None, "Not Found"):
            message = f"There is no API endpoint at {request.url.path}."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        elif exc.detail == _UNREADABLE_BODY:
            message = _UNREADABLE_BODY_MESSAGE
        elif isinstance(exc.detail, str):
            message = exc.detail
        else:
            message = HTTPStatus(exc.status_code).phrase + "."
        return error_response(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(
            422, "validation_error", _validation_message(exc), _validation_detail(exc)
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return await _storage_error(request, exc) or _internal_error(request, exc)
