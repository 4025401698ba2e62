"""Accounts and their roles: admins only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from myapp.models import ErrorBody
from myapp.models.auth import UserCreate, UserList, UserPublic, UserUpdate

from .. import access
from ..auth.dependencies import AuthDep, client_address
from ..deps import AdminDep, DatabaseDep
from ..store import accounts as account_store

router = APIRouter(tags=["users"])


@router.get("/users", response_model=UserList, summary="List accounts")
def list_users(actor: AdminDep, database: DatabaseDep) -> UserList:
    with database.cursor() as cur:
        accounts = account_store.list_accounts(cur)
    return UserList(users=[UserPublic(**a.public()) for a in accounts])


@router.post(
    "/users",
    status_code=201,
    response_model=UserPublic,
    responses={409: {"model": ErrorBody, "description": "The username is taken"}},
    summary="Create an account",
)
def create_user(
    body: UserCreate, actor: AdminDep, request: Request, database: DatabaseDep, auth: AuthDep
) -> UserPublic:
    with database.transaction() as cur:
        account = access.create_user(
            cur,
            username=body.username,
            password=body.password,
            role=body.role,
            actor=actor.audit_name,
            ip=client_address(request),
        )
        auth.accounts_changed(cur)
    return UserPublic(**account.public())


@router.get("/users/{username}", response_model=UserPublic, summary="Read one account")
def read_user(username: str, actor: AdminDep, database: DatabaseDep) -> UserPublic:
    with database.cursor() as cur:
        account = access.get_account_or_404(cur, username)
    return UserPublic(**account.public())


@router.patch(
    "/users/{username}",
    response_model=UserPublic,
    responses={409: {"model": ErrorBody, "description": "It would leave no admin account"}},
    summary="Change an account's role or reset its password (ends its sessions)",
)
def update_user(
    username: str,
    body: UserUpdate,
    actor: AdminDep,
    request: Request,
    database: DatabaseDep,
    auth: AuthDep,
) -> UserPublic:
    with database.transaction() as cur:
        account = access.update_user(
            cur,
            username,
            role=body.role,
            password=body.password,
            actor=actor.audit_name,
            ip=client_address(request),
            has_admin_token=auth.has_admin_token,
        )
    return UserPublic(**account.public())


@router.delete(
    "/users/{username}",
    status_code=204,
    responses={409: {"model": ErrorBody, "description": "It would leave no admin account"}},
    summary="Remove an account and all its tokens",
)
def delete_user(
    username: str, actor: AdminDep, request: Request, database: DatabaseDep, auth: AuthDep
) -> Response:
    with database.transaction() as cur:
        access.remove_user(
            cur,
            username,
            actor=actor.audit_name,
            ip=client_address(request),
            has_admin_token=auth.has_admin_token,
        )
        auth.accounts_changed(cur)
    return Response(status_code=204)
