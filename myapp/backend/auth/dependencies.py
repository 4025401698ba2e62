"""What each route requires, as FastAPI dependencies.

Every route declares the least role it needs through the aliases in deps.py (ViewerDep,
EditorDep, AdminDep), or `PublicDep` for what anyone may call. The requirement is read back
from the routes by `declared_operations` (for the access gate and the OpenAPI document).
"""

from __future__ import annotations

from typing import Annotated, Any

import fastapi.routing as fastapi_routing
from fastapi import Depends, FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from ..errors import Forbidden
from .actor import ACTOR_STATE_KEY, ROLE_RANK, Actor, Role
from .authenticator import Authenticator, unauthorized

_UNRESOLVED = object()


def get_auth(request: Request) -> Authenticator:
    return request.app.state.auth


AuthDep = Annotated[Authenticator, Depends(get_auth)]

# Declares the bearer scheme in the OpenAPI document (Swagger's "Authorize" button); the
# header itself is parsed by Authenticator.resolve so a wrong scheme is an error, not anonymous.
bearer_scheme = HTTPBearer(
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
    from .. import sharing

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
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
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
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
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


def annotate_openapi(app: FastAPI) -> None:
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
