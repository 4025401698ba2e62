"""API tokens: everyone manages their own; admins manage everyone's."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from myapp.models import ErrorBody
from myapp.models.auth import TokenCreate, TokenCreated, TokenList, TokenPublic

from .. import access
from ..auth.actor import Actor
from ..auth.dependencies import client_address
from ..deps import DatabaseDep, ViewerDep
from ..errors import BadRequest, Forbidden
from ..store import tokens as token_store

router = APIRouter(tags=["tokens"])


def _owner_name(actor: Actor, requested: str | None) -> str:
    if requested is not None and requested.lower() != (actor.username or ""):
        if actor.role != "admin":
            raise Forbidden(
                "Only an admin can manage another account's tokens.", code="not_your_account"
            )
        return requested
    if actor.username is None:
        raise BadRequest(
            "Tokens belong to accounts, and this caller has none (open mode or the admin "
            "token); name the account in 'username', creating it first if needed.",
            code="no_account",
        )
    return actor.username


@router.post(
    "/tokens",
    status_code=201,
    response_model=TokenCreated,
    responses={403: {"model": ErrorBody, "description": "Scope wider than the role allows"}},
    summary="Create an API token (the secret is in this answer only)",
)
def create_token(
    body: TokenCreate, actor: ViewerDep, request: Request, database: DatabaseDep
) -> TokenCreated:
    owner_name = _owner_name(actor, body.username)
    with database.transaction() as cur:
        owner = access.get_account_or_404(cur, owner_name)
        secret, created = access.create_token(
            cur,
            owner=owner,
            name=body.name,
            scope=body.scope,
            expires_in_days=body.expires_in_days,
            actor=actor.audit_name,
            actor_role=actor.role,
            ip=client_address(request),
        )
    return TokenCreated(token=secret, **created.public())


@router.get("/tokens", response_model=TokenList, summary="List tokens")
def list_tokens(
    actor: ViewerDep,
    database: DatabaseDep,
    username: str | None = Query(None, description="Whose tokens (admins: anyone's)."),
    all_accounts: bool = Query(False, alias="all", description="Admins: every account's."),
    kind: Literal["api", "session"] = Query("api", description="API tokens or sign-ins."),
    include_inactive: bool = Query(False, description="Also revoked and expired ones."),
) -> TokenList:
    with database.cursor() as cur:
        if all_accounts and actor.role != "admin":
            raise Forbidden(
                "Only an admin can list every account's tokens.", code="not_your_account"
            )
        if all_accounts or (username is None and actor.username is None and actor.can("admin")):
            # Open mode and the admin token have no account of their own: they see everyone's.
            account_id = None
        else:
            owner = access.get_account_or_404(cur, _owner_name(actor, username))
            account_id = owner.id
        records = token_store.list_tokens(
            cur, account_id=account_id, kind=kind, include_inactive=include_inactive
        )
    return TokenList(tokens=[TokenPublic(**r.public()) for r in records])


@router.delete(
    "/tokens/{token_id}",
    status_code=204,
    responses={
        403: {"model": ErrorBody, "description": "Another account's token"},
        404: {"model": ErrorBody, "description": "No such token"},
    },
    summary="Revoke a token: it stops working at once",
)
def revoke_token(
    token_id: str, actor: ViewerDep, request: Request, database: DatabaseDep
) -> Response:
    with database.transaction() as cur:
        access.revoke_token(
            cur, token_id, caller=actor, actor=actor.audit_name, ip=client_address(request)
        )
    return Response(status_code=204)
