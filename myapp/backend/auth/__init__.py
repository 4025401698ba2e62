"""Authentication and access: who is calling, and what they may do.

- actor.py: the caller of a request and the order of roles.
- tokens.py: API tokens and sessions (issuing, hashing).
- limiter.py: sign-in throttling.
- authenticator.py: credentials to an Actor (`app.state.auth`).
- dependencies.py: each route's requirement as a FastAPI dependency (deps.py names them).
- gate.py: the requirement checked before a body is read; cross-site refusals.
- headers.py: security headers and the docs page's CSP.
- startup.py: start-up checks and bootstrap of the admin account.
- passwords.py: password hashing (Argon2id).

`install_security(app)` adds, around the routes: the gate, the security headers of every API
response, and `x-required-role` on each operation of the OpenAPI document.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware import Middleware

from myapp.settings import Settings

from .authenticator import Authenticator
from .dependencies import annotate_openapi
from .gate import AccessGate
from .headers import SecurityHeaders, docs_csp


def install_security(app: FastAPI, settings: Settings, *, docs_path: str) -> None:
    """Wire authentication into a built app: call once, after its routers are included."""
    app.state.auth = Authenticator(app, settings)
    # Appended, so they sit inside the request-log middleware (their answers are logged with
    # the request id) and the gate inside the headers (its refusals carry them too).
    policy = docs_csp(app.openapi_url or "")
    app.user_middleware.append(Middleware(SecurityHeaders, docs_path=docs_path, docs_policy=policy))
    app.user_middleware.append(Middleware(AccessGate, api=app))
    annotate_openapi(app)
