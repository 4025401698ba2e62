"""The access gate: a route's requirement checked before its body is read, and refusal of
credential-less state changes from other sites.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import AppError, Forbidden, error_response
from ..operations import operations_of
from ..store.usersql.callers import CALLER
from .actor import Actor
from .dependencies import check_access, client_address, current_actor, get_auth

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


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


class AccessGate:
    """Checks the requirement of the endpoint a request is for before the handler runs, and
    so before its body is read: FastAPI parses a multipart body before it runs dependencies,
    so without this an anonymous caller could make the server spool a large upload.

    The dependency in the handler still makes the decision too; this only makes it early.
    """

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self.operations = operations_of(api)

    def _requirement(self, method: str, path: str) -> str | None:
        operation = self.operations.find(method, path).exact
        return operation.role if operation is not None else None

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
