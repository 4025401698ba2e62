"""While the lake's PostgreSQL is away, API requests are answered 503 at once for a second
after each failure instead of trying it again (lake/engine.py: MODE.down)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import CATALOG_UNAVAILABLE_MESSAGE, error_response
from .engine import MODE


class CatalogBreaker:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and MODE.down() and scope["path"].startswith("/api/"):
            response = error_response(
                503,
                "catalog_unavailable",
                CATALOG_UNAVAILABLE_MESSAGE,
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
