"""ASGI middleware of the backend: request ids and one access-log line per request, and a
bound on request bodies other than uploads.

Pure ASGI rather than BaseHTTPMiddleware so streamed downloads and uploads pass through
without being buffered.
"""

from __future__ import annotations

import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from myapp.logs import (
    REQUEST_ID_HEADER,
    log_request,
    request_id_from,
    reset_request_id,
    set_request_id,
)

from .errors import error_response

# The biggest legitimate body besides an upload is a saved query (100,000 characters of SQL,
# a description, parameters) or a query's parameter values: well under this. FastAPI reads a
# JSON body whole into memory, so without a bound one request could claim gigabytes.
MAX_BODY_BYTES = 4 * 1024 * 1024
# Uploads stream to disk under MYAPP_MAX_UPLOAD_BYTES instead (routes/datasets.py).
_UPLOADS = (
    ("POST", re.compile(r"^/api/datasets/?$")),
    ("PUT", re.compile(r"^/api/datasets/[^/]+$")),
    ("POST", re.compile(r"^/api/uploads/?$")),
)


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, role: str = "backend") -> None:
        self.app = app
        self.role = role

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = request_id_from(incoming)
        scope.setdefault("state", {})["request_id"] = request_id
        if incoming != request_id:
            # Role all: the pages mounted below read the id from the header, so they log and
            # forward the same one.
            scope = {
                **scope,
                "headers": [
                    *(h for h in scope["headers"] if h[0] != b"x-request-id"),
                    (b"x-request-id", request_id.encode()),
                ],
            }
        started = time.perf_counter()
        status = 500
        # Every log line written while this request is served carries its id (logs.py).
        context = set_request_id(request_id)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log_request(
                self.role,
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                request_id,
                scope["client"][0] if scope.get("client") else "-",
            )
            reset_request_id(context)


class BodyLimit:
    """Refuses an API request body over MAX_BODY_BYTES with 413, uploads excepted.

    A declared Content-Length is checked before anything is read; a chunked body is read up to
    the bound, then handed on (small, by then) or refused.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith("/api/")
            or any(scope["method"] == m and p.match(scope["path"]) for m, p in _UPLOADS)
        ):
            await self.app(scope, receive, send)
            return
        declared = None
        chunked = False
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = value
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if declared is not None:
            # The server reads no more than the declared length (and refuses one that is not
            # a number before the app sees it).
            if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                await _too_large()(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if not chunked:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > MAX_BODY_BYTES:
                await _too_large()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _too_large():
    return error_response(
        413,
        "payload_too_large",
        f"The request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB; only uploads "
        "of data files may be bigger.",
        {"limit_bytes": MAX_BODY_BYTES},
    )
