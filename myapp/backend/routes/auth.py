"""Signing in and out, who am I, and changing one's own password."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response

from myapp.models import ErrorBody
from myapp.models.auth import LoginRequest, LoginResult, MePublic, PasswordChange, UserPublic

from ..auth.authenticator import unauthorized
from ..auth.dependencies import AuthDep, PublicDep, client_address
from ..auth.passwords import hash_password, needs_rehash, verify_password
from ..auth.tokens import SESSION_TTL, issue_token
from ..deps import DatabaseDep, ViewerDep
from ..errors import BadRequest, TooManyRequests
from ..metrics import signin_failed, signin_throttled
from ..store import accounts as account_store
from ..store import tokens as token_store
from ..store.audit import record

router = APIRouter(tags=["auth"])

# Audit lines keep what was typed as a username, cut short: people sometimes type a password
# into that field, and a line must never hold a whole one.
AUDIT_USERNAME_CHARS = 64

WRONG_CREDENTIALS = "The username or password is not right."


def _throttled(seconds: int) -> TooManyRequests:
    minutes = max(1, round(seconds / 60))
    return TooManyRequests(
        f"Too many failed sign-in attempts; try again in {minutes} minute"
        f"{'s' if minutes != 1 else ''}.",
        code="too_many_attempts",
        detail={"retry_after_s": seconds},
        headers={"Retry-After": str(seconds)},
    )


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
    address = client_address(request)
    username = account_store.normalize_username(body.username)
    wait = auth.limiter.retry_after(username, address)
    if wait is not None:
        signin_throttled(request)
        raise _throttled(wait)
    with database.cursor() as cur:
        account = account_store.get_account(cur, username)
    # An unknown name is checked against a dummy hash: same answer, same time.
    if not verify_password(body.password, account.password_hash if account else None):
        auth.limiter.failed(username, address)
        signin_failed(request)
        with database.transaction() as cur:
            record(
                cur,
                actor=None,
                action="login.failed",
                target=username[:AUDIT_USERNAME_CHARS],
                ip=address,
            )
        raise unauthorized(WRONG_CREDENTIALS, code="invalid_credentials")
    assert account is not None
    auth.limiter.succeeded(username)
    expires_at = datetime.now(UTC) + SESSION_TTL
    upgraded = hash_password(body.password) if needs_rehash(account.password_hash) else None
    with database.transaction() as cur:
        secret, session = issue_token(
            cur,
            account.id,
            kind="session",
            name="session",
            scope=account.role,
            expires_at=expires_at,
        )
        account_store.record_login(cur, account.id, upgraded)
        record(
            cur,
            actor=account.username,
            action="login",
            target=account.username,
            ip=address,
            detail={"session": session.id},
        )
        account = account_store.get_account_by_id(cur, account.id)
    assert account is not None
    return LoginResult(token=secret, expires_at=expires_at, user=UserPublic(**account.public()))


@router.post(
    "/auth/logout",
    status_code=204,
    summary="Sign out: the session token used for this request stops working",
)
def logout(actor: ViewerDep, request: Request, database: DatabaseDep) -> Response:
    if actor.via == "session" and actor.token_id:
        with database.transaction() as cur:
            token_store.revoke_token(cur, actor.token_id)
            record(
                cur,
                actor=actor.audit_name,
                action="logout",
                target=actor.username,
                ip=client_address(request),
                detail={"session": actor.token_id},
            )
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
    if actor.username is None:
        raise BadRequest(
            "Only an account has a password; sign in with one to change it.",
            code="no_account",
        )
    address = client_address(request)
    wait = auth.limiter.retry_after(actor.username, address)
    if wait is not None:
        signin_throttled(request)
        raise _throttled(wait)
    with database.cursor() as cur:
        account = account_store.get_account(cur, actor.username)
    if account is None or not verify_password(body.current_password, account.password_hash):
        auth.limiter.failed(actor.username, address)
        # 400, not 401: the caller's credentials are fine, the form is not.
        raise BadRequest("The current password is not right.", code="wrong_password")
    with database.transaction() as cur:
        new_hash = hash_password(body.new_password)
        account_store.update_account(cur, account.id, password_hash=new_hash)
        ended = token_store.revoke_account_tokens(
            cur, account.id, kind="session", except_id=actor.token_id
        )
        record(
            cur,
            actor=actor.audit_name,
            action="account.password_changed",
            target=account.username,
            ip=address,
            detail={"sessions_ended": len(ended)},
        )
    return Response(status_code=204)
