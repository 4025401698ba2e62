"""API tokens: everyone manages their own; admins manage everyone's."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Request, Response

from myapp.models import ErrorBody
from myapp.models.auth import TokenCreate, TokenCreated, TokenList, TokenPublic

from ..auth.dependencies import client_address
from ..deps import DatabaseDep, ViewerDep
from ..services import tokens

router = APIRouter(tags=["tokens"])


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
    secret, created = tokens.add_token(
        database,
        actor,
        username=body.username,
        name=body.name,
        scope=body.scope,
        expires_in_days=body.expires_in_days,
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
    records = tokens.list_tokens(
        database,
        actor,
        username=username,
        all_accounts=all_accounts,
        kind=kind,
        include_inactive=include_inactive,
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
    tokens.end_token(database, actor, token_id, ip=client_address(request))
    return Response(status_code=204)
