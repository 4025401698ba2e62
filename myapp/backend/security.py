"""Who is calling, and what they may do.

Every route declares the least role it needs through the aliases in deps.py (ViewerDep,
EditorDep, AdminDep), or `PublicDep` for what anyone may call. Roles are ordered:
viewer < editor < admin.

Credentials are bearer secrets: API tokens and sign-in sessions (both rows of the tokens table,
stored as SHA-256 hashes), and `MYAPP_ADMIN_TOKEN`. Without credentials a caller is anonymous,
which is enough only for public routes, for viewer routes under `MYAPP_PUBLIC_READ`, and for
everything in open mode (no account, no admin token, loopback bind).

`install_security(app)` adds, around the routes: a gate that checks the route's requirement
before the request body is read (an anonymous caller cannot make the server spool an upload),
the security headers of every API response, and `x-required-role` on each operation of the
OpenAPI document.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import duckdb
import fastapi.routing as fastapi_routing
from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from myapp.settings import Settings, SettingsError, is_loopback

from .errors import AppError, Forbidden, Unauthorized, error_response
from .passwords import hash_password, verify_password
from .store import accounts as account_store
from .store import tokens as token_store
from .store.audit import record
from .store.usersql.callers import CALLER

log = logging.getLogger("myapp.backend.security")

Role = Literal["viewer", "editor", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "editor", "admin")
ROLE_RANK: dict[str, int] = {"public": 0, "share": 0, "viewer": 1, "editor": 2, "admin": 3}

# A sign-in lasts a working week; people sign in again after that. Absolute, not sliding, so a
# stolen cookie stops working on its own.
SESSION_TTL = timedelta(days=7)
# Ended sessions are kept this long (they explain audit lines), then forgotten at start.
SESSION_RETENTION = timedelta(days=30)
# Tokens start with this, so secret scanners and people recognise them.
TOKEN_PREFIX = "myapp_"  # noqa: S105 - a public prefix, not a secret
HINT_CHARS = len(TOKEN_PREFIX) + 4
# Token lookups kept in memory (security.Authenticator._find_token); more are forgotten at once.
MAX_CACHED_LOOKUPS = 10_000
# last_used_at is a hint, not a log: writing it at most this often keeps reads cheap.
LAST_USED_RESOLUTION_S = 60
# MYAPP_ADMIN_TOKEN guards a public server: refuse short ones there.
ADMIN_TOKEN_MIN_LENGTH = 16

# Login throttling: failures counted per account and per client address over a window. The
# account limit stops guessing one password; the address limit stops spraying many accounts.
LOGIN_WINDOW_S = 600
LOGIN_FAILURES_PER_ACCOUNT = 10
LOGIN_FAILURES_PER_ADDRESS = 30
# Bounds the limiter's memory when many names or addresses are tried.
LOGIN_LIMITER_MAX_KEYS = 50_000

ACTOR_STATE_KEY = "myapp.actor"
_UNRESOLVED = object()


@dataclass(frozen=True)
class Actor:
    """The caller of one request."""

    username: str | None
    role: Role
    # How the caller proved who they are: token, session, admin_token, open (open mode),
    # public (anonymous read under MYAPP_PUBLIC_READ).
    via: str
    token_id: str | None = None

    def can(self, needed: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]

    @property
    def audit_name(self) -> str:
        """The name audit lines carry: the account, or how an account-less caller got in."""
        if self.username:
            return self.username
        return {"admin_token": "admin-token", "open": "open-mode", "share": "share-link"}.get(
            self.via, "anonymous"
        )


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> tuple[str, str, str]:
    """A fresh token: (secret, its hash, a hint of its first characters)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return secret, hash_token(secret), secret[:HINT_CHARS]


def issue_token(
    cur: duckdb.DuckDBPyConnection,
    account_id: int,
    *,
    kind: Literal["api", "session"],
    name: str,
    scope: str,
    expires_at: datetime | None,
) -> tuple[str, token_store.TokenRecord]:
    """Store a new token of the account; return (its secret, to show once, and its record)."""
    secret, digest, hint = new_secret()
    token_id = secrets.token_hex(6)
    token_store.insert_token(
        cur,
        token_id=token_id,
        account_id=account_id,
        kind=kind,
        name=name,
        scope=scope,
        token_hash=digest,
        hint=hint,
        expires_at=expires_at,
    )
    created = token_store.get_token(cur, token_id)
    assert created is not None
    return secret, created


def unauthorized(message: str, code: str = "unauthorized", error: str | None = None) -> AppError:
    challenge = 'Bearer realm="myapp"'
    if error:
        challenge += f', error="{error}"'
    return Unauthorized(message, code=code, headers={"WWW-Authenticate": challenge})


class LoginLimiter:
    """Counts failed sign-ins in memory: the backend is exactly one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _limits(self, username: str, address: str) -> list[tuple[str, int]]:
        return [
            (f"account:{username}", LOGIN_FAILURES_PER_ACCOUNT),
            (f"address:{address}", LOGIN_FAILURES_PER_ADDRESS),
        ]

    def _prune(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - LOGIN_WINDOW_S:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def retry_after(self, username: str, address: str) -> int | None:
        """Seconds to wait before the next attempt may be checked, or None if it may now."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key, limit in self._limits(username, address):
                failures = self._prune(key, now)
                if failures is not None and len(failures) >= limit:
                    wait = max(wait, failures[-limit] + LOGIN_WINDOW_S - now)
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, username: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) >= LOGIN_LIMITER_MAX_KEYS:
                for key in list(self._failures):
                    self._prune(key, now)
                if len(self._failures) >= LOGIN_LIMITER_MAX_KEYS:
                    # Still full of live entries: forget the oldest half rather than grow.
                    for key in list(self._failures)[: LOGIN_LIMITER_MAX_KEYS // 2]:
                        del self._failures[key]
            for key, limit in self._limits(username, address):
                self._failures.setdefault(key, deque(maxlen=limit)).append(now)

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(f"account:{username}", None)


class Authenticator:
    """Resolves credentials to an Actor; one per app, on `app.state.auth`."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self._app = app
        self.settings = settings
        self.limiter = LoginLimiter()
        admin = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self._admin_token = admin.encode("utf-8") if admin else None
        self._has_accounts: bool | None = None
        self._touched: dict[str, datetime] = {}
        # Token hash -> (the database's write generation before it was read, the record).
        self._lookups: dict[str, tuple[int, token_store.TokenRecord]] = {}

    @property
    def database(self):
        return self._app.state.database

    # -- open mode --------------------------------------------------------------------------
    @property
    def has_accounts(self) -> bool:
        if self._has_accounts is None:
            with self.database.cursor() as cur:
                self._has_accounts = account_store.count_accounts(cur) > 0
        return self._has_accounts

    def accounts_changed(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Call after creating or removing accounts (inside the transaction is fine)."""
        self._has_accounts = account_store.count_accounts(cur) > 0

    @property
    def open_mode(self) -> bool:
        return self.settings.loopback_only and self._admin_token is None and not self.has_accounts

    @property
    def has_admin_token(self) -> bool:
        return self._admin_token is not None

    def resolves_without_io(self, request: Request) -> bool:
        """True when resolving this caller reads nothing from the database: no credentials
        were sent and whether accounts exist is already known (or the admin token matches)."""
        header = request.headers.get("authorization")
        if header is None:
            return self._has_accounts is not None
        if self._admin_token is None:
            return False
        credential = header.strip().partition(" ")[2].strip()
        return hmac.compare_digest(credential.encode("utf-8"), self._admin_token)

    # -- credentials ------------------------------------------------------------------------
    def resolve(self, request: Request) -> Actor | None:
        """The caller, or None when anonymous without any anonymous access.

        Bad credentials are always an error, never a fall-back to anonymous: a client with a
        mistyped or expired token should learn it.
        """
        header = request.headers.get("authorization")
        if header is None:
            if self.open_mode:
                if not addressed_to_loopback(request.headers.get("host", "")):
                    # A page of another site reaching us by DNS rebinding, or a proxy making
                    # an open workspace public: open mode is for this machine only.
                    raise unauthorized(OPEN_MODE_LOOPBACK_ONLY, code="open_mode_loopback_only")
                return Actor(username=None, role="admin", via="open")
            if self.settings.public_read:
                return Actor(username=None, role="viewer", via="public")
            return None
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise unauthorized(
                "The Authorization header must be 'Bearer <token>'.",
                code="invalid_authorization",
                error="invalid_request",
            )
        if self._admin_token is not None and hmac.compare_digest(
            credential.encode("utf-8"), self._admin_token
        ):
            return Actor(username=None, role="admin", via="admin_token")
        from . import sharing

        if sharing.is_share_secret(credential):
            share_id, share = sharing.resolve_share(self.database, credential, unauthorized)
            request.scope.setdefault("state", {})[sharing.SHARE_STATE_KEY] = share
            return Actor(username=None, role="share", via="share", token_id=share_id)  # type: ignore[arg-type]
        found = self._find_token(hash_token(credential))
        if found is None:
            raise unauthorized(
                "The token is not valid: it may be mistyped, or its account was removed.",
                code="invalid_token",
                error="invalid_token",
            )
        what = "session" if found.kind == "session" else "token"
        if found.revoked_at is not None:
            message = (
                "This session has ended (signed out, or the password changed); sign in again."
                if found.kind == "session"
                else "This token was revoked; create a new one on your account page."
            )
            raise unauthorized(message, code=f"{what}_revoked", error="invalid_token")
        if found.expired():
            message = (
                "Your session has expired; sign in again."
                if found.kind == "session"
                else "This token has expired; create a new one on your account page."
            )
            raise unauthorized(message, code=f"{what}_expired", error="invalid_token")
        self._touch(found.id, found.last_used_at)
        role = min(found.scope, found.account_role, key=ROLE_RANK.__getitem__)
        return Actor(username=found.username, role=role, via=what, token_id=found.id)  # type: ignore[arg-type]

    def _find_token(self, digest: str) -> token_store.TokenRecord | None:
        """The token's record, from the database or from an earlier lookup when no write
        transaction has committed since (revoking a token, signing out, changing or removing
        its account all commit one), so a revoked token is refused at once. Expiry is checked
        on every use. Saves a DuckDB query per request (bench/auth.py)."""
        database = self.database
        # Read before the query: a commit after it (whose data the query may have missed)
        # makes the entry out of date.
        generation = database.write_generation
        cached = self._lookups.get(digest)
        if cached is not None and cached[0] == generation:
            return cached[1]
        with database.cursor() as cur:
            found = token_store.find_by_hash(cur, digest)
        if found is not None:
            if len(self._lookups) >= MAX_CACHED_LOOKUPS:
                self._lookups.clear()
            self._lookups[digest] = (generation, found)
        return found

    def _touch(self, token_id: str, stored: datetime | None) -> None:
        now = datetime.now(UTC)
        last = self._touched.get(token_id) or stored
        if last is not None and (now - last).total_seconds() < LAST_USED_RESOLUTION_S:
            return
        # Never wait behind a long write (an ingest holds the lock): skip, the next request
        # will record the use.
        lock = self.database.write_lock
        if not lock.acquire(blocking=False):
            return
        try:
            if len(self._touched) > 10_000:
                self._touched.clear()
            self._touched[token_id] = now
            with self.database.cursor() as cur:
                token_store.touch_token(cur, token_id, now)
        except duckdb.Error as exc:
            log.warning("could not record the use of token %s: %s", token_id, exc)
        finally:
            lock.release()


OPEN_MODE_LOOPBACK_ONLY = (
    "This workspace is in open mode, which only answers requests addressed to this machine "
    "(localhost, 127.0.0.1); create an account to use it from elsewhere."
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def host_name(host_header: str) -> str:
    """The name part of a Host header: `[::1]:80` → `::1`, `example.com:8080` → `example.com`."""
    host = host_header.strip()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def addressed_to_loopback(host_header: str) -> bool:
    return is_loopback(host_name(host_header))


def cross_site_refusal(headers: Any) -> str | None:
    """Why a credential-less state change must be refused as coming from another site.

    Browsers send simple cross-site POSTs (forms, multipart) without asking first; without a
    bearer token, the only thing such a request could ride on is open mode or public read.
    """
    site = headers.get("sec-fetch-site")
    if site is not None:
        return None if site.lower() in ("same-origin", "none") else site
    origin = headers.get("origin")
    if origin is not None:
        netloc = origin.split("://", 1)[-1]
        if netloc.lower() != headers.get("host", "").lower():
            return origin
    return None


def get_auth(request: Request) -> Authenticator:
    return request.app.state.auth


AuthDep = Annotated[Authenticator, Depends(get_auth)]

# Declares the bearer scheme in the OpenAPI document (Swagger's "Authorize" button); the
# header itself is parsed by Authenticator.resolve so a wrong scheme is an error, not anonymous.
_bearer = HTTPBearer(
    auto_error=False,
    description="An API token, a session token from /api/auth/login, or MYAPP_ADMIN_TOKEN.",
)


def current_actor(request: Request) -> Actor | None:
    """The caller of this request, resolved once (the gate usually already did)."""
    state = request.scope.setdefault("state", {})
    actor = state.get(ACTOR_STATE_KEY, _UNRESOLVED)
    if actor is _UNRESOLVED:
        actor = get_auth(request).resolve(request)
        state[ACTOR_STATE_KEY] = actor
    return actor  # type: ignore[return-value]


def check_access(actor: Actor | None, needed: str) -> None:
    from . import sharing

    # Share-link credentials reach only the routes made for them (sharing.py).
    if sharing.check_share_access(actor, needed, unauthorized):
        return
    if needed == "public":
        return
    if actor is None or (actor.via == "public" and not actor.can(needed)):
        raise unauthorized(
            "Sign in, or send an API token as 'Authorization: Bearer <token>', to do this."
        )
    if not actor.can(needed):
        holder = "your token" if actor.via == "token" else "your account"
        raise Forbidden(
            f"This needs the {needed} role; {holder} has the {actor.role} role.",
            detail={"required_role": needed, "role": actor.role},
        )


def require(needed: Role):
    """A dependency that resolves the caller and refuses one without the needed role."""

    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Actor:
        # The access gate has usually resolved the caller already; only when it has not does
        # resolving (which may read the database) go to the thread pool.
        state = request.scope.get("state", {})
        actor = state.get(ACTOR_STATE_KEY, _UNRESOLVED)
        if actor is _UNRESOLVED:
            actor = await run_in_threadpool(current_actor, request)
        check_access(actor, needed)
        assert actor is not None
        return actor

    dependency.__name__ = f"require_{needed}"
    dependency.required_role = needed  # type: ignore[attr-defined]
    return dependency


async def allow_anyone(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor | None:
    """For routes anyone may call; still refuses bad credentials. None when anonymous."""
    state = request.scope.get("state", {})
    actor = state.get(ACTOR_STATE_KEY, _UNRESOLVED)
    if actor is _UNRESOLVED:
        actor = await run_in_threadpool(current_actor, request)
    return actor  # type: ignore[return-value]


allow_anyone.required_role = "public"  # type: ignore[attr-defined]

PublicDep = Annotated[Actor | None, Depends(allow_anyone)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def required_role(route: Any) -> str | None:
    """The requirement a route declares through its dependencies (the strictest wins)."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    found: str | None = None
    stack = [dependant]
    while stack:
        current = stack.pop()
        for dep in current.dependencies:
            role = getattr(dep.call, "required_role", None)
            if role is not None and (found is None or ROLE_RANK[role] > ROLE_RANK[found]):
                found = role
            stack.append(dep)
    return found


def _route_contexts(app: FastAPI) -> list[Any]:
    """Every route of the app with its full path, routers included.

    Newer FastAPI keeps included routers as branches and exposes their routes through
    `iter_route_contexts`; older versions copy them into `app.routes`.
    """
    iterate = getattr(fastapi_routing, "iter_route_contexts", None)
    return list(iterate(app.routes)) if iterate else list(app.routes)


def declared_operations(app: FastAPI) -> list[tuple[str, str, set[str], str | None]]:
    """(path with convertors, path as in OpenAPI, methods, requirement) of each endpoint."""
    operations = []
    for route in _route_contexts(app):
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if path is None or not methods:
            continue
        operations.append((path, route.path_format, set(methods), required_role(route)))
    return operations


# -- ASGI pieces ----------------------------------------------------------------------------
class AccessGate:
    """Checks the requirement of the endpoint a request is for before the handler runs, and
    so before its body is read: FastAPI parses a multipart body before it runs dependencies,
    so without this an anonymous caller could make the server spool a large upload.

    The dependency in the handler still makes the decision too; this only makes it early.
    """

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._table: list[tuple[re.Pattern[str], set[str], str | None]] | None = None
        self._lock = threading.Lock()

    def _requirement(self, method: str, path: str) -> str | None:
        if self._table is None:
            with self._lock:
                if self._table is None:
                    self._table = [
                        (compile_path(full_path)[0], methods, role)
                        for full_path, _, methods, role in declared_operations(self.api)
                    ]
        for pattern, methods, role in self._table:
            if method in methods and pattern.match(path):
                return role
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        needed = self._requirement(scope["method"], scope["path"])
        request = Request(scope)
        key: str | None = None
        try:
            if scope["method"] not in SAFE_METHODS and "authorization" not in request.headers:
                origin = cross_site_refusal(request.headers)
                if origin is not None:
                    raise Forbidden(
                        "Requests from another site are refused; call the API from a script "
                        "with a token, or use myapp's own pages.",
                        code="cross_site_request",
                    )
            if needed is not None:
                scope.setdefault("state", {})
                if get_auth(request).resolves_without_io(request):
                    actor = current_actor(request)
                else:
                    # Looking a token up reads DuckDB: not on the event loop.
                    actor = await run_in_threadpool(current_actor, request)
                check_access(actor, needed)
                key = caller_key(actor, request)
        except AppError as exc:
            response = error_response(
                exc.status_code, exc.code, exc.message, exc.detail, exc.headers
            )
            await response(scope, receive, send)
            return
        if needed is None:
            await self.app(scope, receive, send)
            return
        caller = CALLER.set(key)
        try:
            await self.app(scope, receive, send)
        finally:
            CALLER.reset(caller)


def caller_key(actor: Actor | None, request: Request) -> str | None:
    """Whose allowance of query runs a request spends (store/usersql/callers.py): the account,
    else the address; None for the operator (admin token, open mode), who is not limited."""
    if actor is None or actor.via in ("admin_token", "open"):
        return None
    if actor.username:
        return f"account:{actor.username}"
    return f"{actor.via}:{address_block(client_address(request))}"


def address_block(address: str) -> str:
    """An IPv4 address, or the /64 network of an IPv6 one: one IPv6 client usually holds a
    whole /64, and counting each of its addresses apart would hand it endless allowances."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


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


def _annotate_openapi(app: FastAPI) -> None:
    """Put each operation's requirement in the OpenAPI document as `x-required-role`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        paths = schema.get("paths", {})
        for _, path_format, methods, role in declared_operations(app):
            if role is None:
                continue
            for method in methods:
                operation = paths.get(path_format, {}).get(method.lower())
                if operation is not None:
                    operation["x-required-role"] = role
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_security(app: FastAPI, settings: Settings, *, docs_path: str) -> None:
    """Wire authentication into a built app: call once, after its routers are included."""
    app.state.auth = Authenticator(app, settings)
    # Appended, so they sit inside the request-log middleware (their answers are logged with
    # the request id) and the gate inside the headers (its refusals carry them too).
    policy = docs_csp(app.openapi_url or "")
    app.user_middleware.append(Middleware(SecurityHeaders, docs_path=docs_path, docs_policy=policy))
    app.user_middleware.append(Middleware(AccessGate, api=app))
    _annotate_openapi(app)


# -- start-up -------------------------------------------------------------------------------
def credentials_problem(settings: Settings, count_accounts: Callable[[], int]) -> str | None:
    """Why the backend must not start with these settings, in one line; None when it may.

    Off loopback, someone must be able to sign in: an admin token, an admin password, or an
    account already in the database. `count_accounts` is only called when it matters.
    """
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    password = settings.admin_password.get_secret_value() if settings.admin_password else ""
    if settings.admin_password is not None and not _password_ok(password):
        return (
            f"MYAPP_ADMIN_PASSWORD must be {account_password_rule()}; "
            "it becomes the password of the admin account"
        )
    if settings.loopback_only:
        return None
    if settings.admin_token is not None and len(token) < ADMIN_TOKEN_MIN_LENGTH:
        return (
            f"MYAPP_ADMIN_TOKEN must be at least {ADMIN_TOKEN_MIN_LENGTH} characters when "
            f"listening on {settings.host}; generate one with: "
            'python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    if token or password or count_accounts() > 0:
        return None
    return (
        f"refusing to listen on {settings.host} without credentials: nobody could sign in and "
        "open mode is for loopback only; set MYAPP_ADMIN_PASSWORD or MYAPP_ADMIN_TOKEN, or "
        "create an account with 'myapp user add NAME --role admin', or listen on 127.0.0.1"
    )


def account_password_rule() -> str:
    from myapp.models.auth import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH

    return f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters"


def _password_ok(password: str) -> bool:
    from myapp.models.auth import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH

    return PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH


def check_startup(settings: Settings) -> None:
    """Refuse, before anything binds, to serve a public address nobody can sign in to.

    Raises SettingsError with one line. Reads the database file only when the environment has
    no credentials and the bind is public (waiting, like the server, for a lock to go away).
    """

    def count() -> int:
        from myapp.server import wait_for_database_lock

        wait_for_database_lock(settings.database_path, settings.lock_timeout_s)
        try:
            return account_store.accounts_in_file(settings.database_path)
        except duckdb.Error as exc:
            raise SettingsError(
                f"cannot read accounts from {settings.database_path}: {exc}"
            ) from None

    problem = credentials_problem(settings, count)
    if problem:
        raise SettingsError(problem)


def bootstrap(app: FastAPI) -> None:
    """At backend start, with the database open: apply MYAPP_ADMIN_PASSWORD, forget old
    sessions, and re-check that somebody can sign in."""
    settings: Settings = app.state.settings
    auth: Authenticator = app.state.auth
    database = auth.database
    with database.transaction() as cur:
        token_store.purge_sessions(cur, datetime.now(UTC) - SESSION_RETENTION)
        if settings.admin_password is not None:
            _apply_admin_password(cur, settings.admin_password.get_secret_value())
        auth.accounts_changed(cur)
        problem = credentials_problem(settings, lambda: account_store.count_accounts(cur))
    if problem:
        # The CLI refuses earlier with a clean message; this guards other ways of starting.
        raise RuntimeError(problem)
    if auth.open_mode:
        log.warning(
            "open mode: no accounts and no admin token, so every caller on this loopback "
            "address is an administrator; create an account to require sign-in"
        )


def _apply_admin_password(cur: duckdb.DuckDBPyConnection, password: str) -> None:
    account = account_store.get_account(cur, "admin")
    if account is None:
        account_store.create_account(cur, "admin", "admin", hash_password(password))
        record(
            cur,
            actor="startup",
            action="account.created",
            target="admin",
            detail={"role": "admin", "source": "MYAPP_ADMIN_PASSWORD"},
        )
        log.info("created the admin account from MYAPP_ADMIN_PASSWORD")
        return
    password_ok = verify_password(password, account.password_hash)
    if account.role == "admin" and password_ok:
        return
    # Only a new password ends the account's sign-ins; restoring the role alone does not.
    account_store.update_account(
        cur,
        account.id,
        role="admin",
        password_hash=None if password_ok else hash_password(password),
    )
    if not password_ok:
        token_store.revoke_account_tokens(cur, account.id, kind="session")
    record(
        cur,
        actor="startup",
        action="account.changed",
        target="admin",
        detail={
            "role_from": account.role,
            "role_to": "admin",
            "password_reset": not password_ok,
            "source": "MYAPP_ADMIN_PASSWORD",
        },
    )
    log.info("applied MYAPP_ADMIN_PASSWORD to the admin account")
