"""The security headers of every API response, and the API docs page's own policy."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.openapi.docs import get_swagger_ui_html
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


def docs_csp(openapi_url: str) -> str:
    """The Swagger page's policy: its bundle from here, and exactly its one inline script.

    The inline script depends only on the OpenAPI URL and Swagger's default parameters, so its
    hash is computed from the same function that renders the page.
    """
    html = get_swagger_ui_html(
        openapi_url=openapi_url, title="", swagger_js_url="", swagger_css_url=""
    )
    hashes = []
    for script in _INLINE_SCRIPT.findall(bytes(html.body).decode("utf-8")):
        digest = hashlib.sha256(script.encode("utf-8")).digest()
        hashes.append("'sha256-" + base64.b64encode(digest).decode("ascii") + "'")
    return (
        "default-src 'self'; "
        f"script-src 'self' {' '.join(hashes)}; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )


class SecurityHeaders:
    """The headers every API response carries (pages of role all set their own first)."""

    def __init__(self, app: ASGIApp, docs_path: str, docs_policy: str) -> None:
        self.app = app
        self.docs_path = docs_path
        self.docs_policy = docs_policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/api" or path.startswith("/api/")):
            await self.app(scope, receive, send)
            return
        policy = self.docs_policy if path == self.docs_path else API_CSP
        # Answers that may carry a secret (sign-in, tokens) must not be kept by any cache.
        sensitive = path.startswith(("/api/auth/", "/api/tokens", "/api/users"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                wanted = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", policy.encode()),
                ]
                if sensitive:
                    wanted.append((b"cache-control", b"no-store"))
                headers.extend((k, v) for k, v in wanted if k not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
