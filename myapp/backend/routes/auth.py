"""Signing in and out, who am I, and changing one's own password."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from myapp.models import ErrorBody
from myapp.models.auth import LoginRequest, LoginResult, MePublic, PasswordChange, UserPublic

from ..auth.dependencies import AuthDep, PublicDep, client_address
from ..deps import DatabaseDep, ViewerDep
from ..errors import AppError
from ..metrics import signin_failed, signin_throttled
from ..services import accounts

router = APIRouter(tags=["auth"])


def _count_refusal(request: Request, exc: AppError) -> None:
    if exc.code == "too_many_attempts":
        signin_throttled(request)
    elif exc.code == "invalid_credentials":
        signin_failed(request)


@router.post(
    "/auth/login",
    response_model=LoginResult,
    responses={
        401: {"model": ErrorBody, "description": "Wrong username or password"},
        429: {"model": ErrorBody, "description": "Too many failed attempts; see Retry-After"},
    },
    summary="Sign in with a username and password; returns a session token",
)
def login(body: LoginRequest, request: Request, database: DatabaseDep, auth: AuthDep):
    try:
        signed_in = accounts.sign_in(
            database, auth.limiter, body.username, body.password, ip=client_address(request)
        )
    except AppError as exc:
        _count_refusal(request, exc)
        raise
    return LoginResult(
        token=signed_in.token,
        expires_at=signed_in.expires_at,
        user=UserPublic(**signed_in.account.public()),
    )


@router.post(
    "/auth/logout",
    status_code=204,
    summary="Sign out: the session token used for this request stops working",
)
def logout(actor: ViewerDep, request: Request, database: DatabaseDep) -> Response:
    accounts.sign_out(database, actor, ip=client_address(request))
    return Response(status_code=204)


@router.get(
    "/auth/me",
    response_model=MePublic,
    summary="Who the caller is, and whether the workspace is open or publicly readable",
)
def read_me(actor: PublicDep, auth: AuthDep) -> MePublic:
    return MePublic(
        user=actor.username if actor else None,
        # A share link's holder has no role in the workspace (via says "share").
        role=actor.role if actor and actor.can("viewer") else None,
        via=actor.via if actor else None,
        open_mode=auth.open_mode,
        public_read=auth.settings.public_read,
    )


@router.post(
    "/auth/password",
    status_code=204,
    responses={400: {"model": ErrorBody, "description": "The current password is not right"}},
    summary="Change your own password; your other sessions are signed out",
)
def change_password(
    body: PasswordChange, actor: ViewerDep, request: Request, database: DatabaseDep, auth: AuthDep
) -> Response:
    try:
        accounts.change_own_password(
            database,
            auth.limiter,
            actor,
            current_password=body.current_password,
            new_password=body.new_password,
            ip=client_address(request),
        )
    except AppError as exc:
        _count_refusal(request, exc)
        raise
    return Response(status_code=204)
