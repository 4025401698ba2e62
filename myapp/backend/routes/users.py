"""Accounts and their roles: admins only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from myapp.models import ErrorBody
from myapp.models.auth import UserCreate, UserList, UserPublic, UserUpdate

from ..auth.dependencies import AuthDep, client_address
from ..deps import AdminDep, DatabaseDep
from ..services import accounts

router = APIRouter(tags=["users"])


@router.get("/users", response_model=UserList, summary="List accounts")
def list_users(actor: AdminDep, database: DatabaseDep) -> UserList:
    return UserList(users=[UserPublic(**a.public()) for a in accounts.list_accounts(database)])


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
    account = accounts.add_account(
        database,
        auth,
        username=body.username,
        password=body.password,
        role=body.role,
        actor=actor.audit_name,
        ip=client_address(request),
    )
    return UserPublic(**account.public())


@router.get("/users/{username}", response_model=UserPublic, summary="Read one account")
def read_user(username: str, actor: AdminDep, database: DatabaseDep) -> UserPublic:
    return UserPublic(**accounts.read_account(database, username).public())


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
    account = accounts.change_account(
        database,
        auth,
        username,
        role=body.role,
        password=body.password,
        actor=actor.audit_name,
        ip=client_address(request),
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
    accounts.remove_account(
        database, auth, username, actor=actor.audit_name, ip=client_address(request)
    )
    return Response(status_code=204)
