"""A route class for the busiest routes: the common request without FastAPI's generic
per-request work.

For every request FastAPI parses the content type with `email.message`, solves the route's
dependency tree (cache keys, scope checks, one solve per dependency) and builds an error
context, whatever the route. cProfile of 3,000 point lookups through the app in-process: 3.99M
function calls, a quarter of the time in `solve_dependencies`; through this class 2.32M, and
the backend's CPU per request 0.53-0.56 ms against 0.58-0.83 (alternating builds).

A route of this class whose shape is simple, checked once when the route is built (`_plan`):
path and query parameters, at most one JSON body model, perhaps the request, dependencies that
are coroutines taking only the request and perhaps a security scheme (deps.py,
auth/dependencies.py), no header or cookie parameters, and an endpoint declared to return a
Response, answers a request whose parameters validate (by FastAPI's own
`request_params_to_args`) and whose body, if it has one, is sent as `application/json` and
validates, by calling those same dependencies and the endpoint. Everything else — a parameter
or body that does not validate, another content type, dependency overrides (tests) — goes to
FastAPI's own handler, so errors keep FastAPI's shapes, wording and order (the caller's
credentials before the parameters); so does every request to a route that is not simple. The
route is declared, documented and found (operations.py) like any other.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_params_to_args
from fastapi.routing import APIRoute
from fastapi.security.base import SecurityBase
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

Resolver = Callable[[Request], Awaitable[Any]]

# Tests turn the lean path off to compare its answers with FastAPI's own.
ENABLED = True


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        standard = super().get_route_handler()
        plan = _plan(self)
        if plan is None:
            return standard
        body_name, model, request_name, resolvers = plan
        path_params = self.dependant.path_params
        query_params = self.dependant.query_params
        endpoint = self.endpoint
        is_async = inspect.iscoroutinefunction(endpoint)

        async def handler(request: Request) -> Response:
            if not ENABLED or request.app.dependency_overrides:
                return await standard(request)
            values: dict[str, Any] = {}
            # Path and query parameters by FastAPI's own function; any error is FastAPI's to
            # tell.
            for fields, received in (
                (path_params, request.path_params),
                (query_params, request.query_params),
            ):
                if fields:
                    given, errors = request_params_to_args(fields, received)
                    if errors:
                        return await standard(request)
                    values.update(given)
            if model is not None:
                if request.headers.get("content-type") != "application/json":
                    return await standard(request)
                try:
                    raw = await request.body()
                    # The same parse and validation as FastAPI's (json.loads, then the model
                    # in Python mode); whatever fails here (a bad document, one nested past
                    # the recursion limit, a body cut short) gets FastAPI's own error from it.
                    values[body_name] = model.model_validate(json.loads(raw))
                except Exception:
                    return await standard(request)
            if request_name is not None:
                values[request_name] = request
            for name, resolve in resolvers:
                value = await resolve(request)
                if name is not None:
                    values[name] = value
            if is_async:
                return await endpoint(**values)
            return await run_in_threadpool(endpoint, **values)

        return handler


def lean_get(router: APIRouter, path: str, **options: Any) -> Callable[[Any], Any]:
    """`router.get` for one route of this class (FastAPI's decorators take no route class; a
    router of the class makes all its routes so, as routes/query.py does)."""

    def decorator(endpoint: Any) -> Any:
        router.add_api_route(
            path, endpoint, methods=["GET"], route_class_override=LeanRoute, **options
        )
        return endpoint

    return decorator


def _plan(
    route: APIRoute,
) -> tuple[str, type[BaseModel] | None, str | None, list[tuple[str | None, Resolver]]] | None:
    """(body parameter, its model, request parameter, dependencies) where the route is simple
    enough for the lean path, else None. A route without a body has neither (`"", None`)."""
    dependant = route.dependant
    if (
        _has_params(dependant, path_and_query=False)
        or len(dependant.body_params) > 1
        # FastAPI's own flag for a body of several fields (private: absent means not lean).
        or getattr(route, "_embed_body_fields", True)
        or not _returns_response(route)
    ):
        return None
    body_name, model = "", None
    if dependant.body_params:
        (body,) = dependant.body_params
        body_name, model = body.name, body.field_info.annotation
        if not (inspect.isclass(model) and issubclass(model, BaseModel)):
            return None
    resolvers: list[tuple[str | None, Resolver]] = []
    for dependency in dependant.dependencies:
        resolve = _resolver(dependency)
        if resolve is None:
            return None
        resolvers.append((dependency.name, resolve))
    return body_name, model, dependant.request_param_name, resolvers


def _has_params(dependant: Dependant, *, path_and_query: bool = True) -> bool:
    return bool(
        (path_and_query and (dependant.path_params or dependant.query_params))
        or dependant.header_params
        or dependant.cookie_params
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
    )


def _returns_response(route: APIRoute) -> bool:
    try:
        returned = typing.get_type_hints(route.endpoint).get("return")
    except (NameError, TypeError):
        return False
    return inspect.isclass(returned) and issubclass(returned, Response)


def _resolver(dependency: Dependant) -> Resolver | None:
    """A dependency that is a coroutine of the request alone (and of security schemes, which
    read the request's headers), called as FastAPI would call it; None for any other kind."""
    call = dependency.call
    if (
        call is None
        or not inspect.iscoroutinefunction(call)
        or _has_params(dependency)
        or dependency.body_params
        or dependency.request_param_name is None
    ):
        return None
    schemes: list[tuple[str, SecurityBase]] = []
    for sub in dependency.dependencies:
        scheme = sub.call
        if (
            not isinstance(scheme, SecurityBase)
            or not callable(scheme)
            or not inspect.iscoroutinefunction(scheme.__call__)
            or sub.name is None
            or sub.dependencies
        ):
            return None
        schemes.append((sub.name, scheme))
    request_name = dependency.request_param_name

    async def resolve(request: Request) -> Any:
        values: dict[str, Any] = {request_name: request}
        for name, scheme in schemes:
            values[name] = await scheme(request)  # type: ignore[operator]
        return await call(**values)

    return resolve
