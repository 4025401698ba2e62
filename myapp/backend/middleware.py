"""ASGI middleware of the backend: request ids and one access-log line per request.

Pure ASGI rather than BaseHTTPMiddleware so streamed downloads and uploads pass through
without being buffered.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from myapp.logs import REQUEST_ID_HEADER, log_request, request_id_from


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
