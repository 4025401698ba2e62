"""Accounts: their rules, audit lines and transactions; signing in and out.

Shared by the API routes, the backend's start (MYAPP_ADMIN_PASSWORD) and the CLI when it works
on a stopped backend's database file, so all enforce the same rules: at least one admin
remains, a new password ends the sign-ins made with the old one, every change is audited in
the same transaction. API tokens are in tokens.py.

The functions taking a cursor work inside the caller's transaction (the CLI opens its own on
the file); the others open one on the backend's database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from myapp.models import usernames

from ..auth.actor import Actor
from ..auth.authenticator import Authenticator, unauthorized
from ..auth.limiter import LoginLimiter
from ..auth.passwords import hash_password, needs_rehash, verify_password
from ..auth.tokens import SESSION_TTL, issue_token
from ..errors import BadRequest, Conflict, NotFound, TooManyRequests
from ..store import accounts as account_store
from ..store import tokens as token_store
from ..store.audit import record
from ..store.database import Cursor, Database


def _ensure_admin_remains(
    cur: Cursor, account: account_store.Account, has_admin_token: bool
) -> None:
    if account.role != "admin" or has_admin_token:
        return
    if account_store.count_accounts(cur, "admin") <= 1:
        raise Conflict(
            "At least one admin account must remain, or nobody could manage accounts; "
            "make another account admin first.",
            code="last_admin",
        )


def get_account_or_404(cur: Cursor, username: str) -> account_store.Account:
    account = account_store.get_account(cur, username)
    if account is None:
        raise NotFound(f"There is no account named {username!r}.", code="account_not_found")
    return account


def create_user(
    cur: Cursor,
    *,
    username: str,
    password: str,
    role: str,
    actor: str,
    ip: str | None,
) -> account_store.Account:
    problem = usernames.problem(username)
    if problem:
        raise BadRequest(problem, code="invalid_username")
    if account_store.get_account(cur, username) is not None:
        raise Conflict(
            f"An account named {account_store.normalize_username(username)!r} already exists.",
            code="account_exists",
        )
    shape = usernames.skeleton(username)
    for existing in account_store.list_accounts(cur):
        if usernames.skeleton(existing.username) == shape:
            raise Conflict(
                f"The username {username!r} looks like the existing account "
                f"{existing.username!r}, so people could mistake one for the other; choose "
                "another.",
                code="username_confusable",
                detail={"existing": existing.username},
            )
    account = account_store.create_account(cur, username, role, hash_password(password))
    record(
        cur,
        actor=actor,
        action="account.created",
        target=account.username,
        ip=ip,
        detail={"role": role},
    )
    return account


def _set_password(
    cur: Cursor,
    account: account_store.Account,
    password: str,
    *,
    keep_session: str | None = None,
) -> int:
    """Store the new password's hash and end every sign-in made with the old one but
    `keep_session` (the caller's own); returns how many ended."""
    account_store.update_account(cur, account.id, password_hash=hash_password(password))
    ended = token_store.revoke_account_tokens(
        cur, account.id, kind="session", except_id=keep_session
    )
    return len(ended)


def update_user(
    cur: Cursor,
    username: str,
    *,
    role: str | None,
    password: str | None,
    actor: str,
    ip: str | None,
    has_admin_token: bool,
) -> account_store.Account:
    account = get_account_or_404(cur, username)
    if role is not None and role != "admin":
        _ensure_admin_remains(cur, account, has_admin_token)
    account_store.update_account(cur, account.id, role=role)
    detail: dict[str, object] = {}
    if role is not None and role != account.role:
        detail.update(role_from=account.role, role_to=role)
    if password is not None:
        ended = _set_password(cur, account, password)
        detail.update(password_reset=True, sessions_ended=ended)
    record(
        cur, actor=actor, action="account.changed", target=account.username, ip=ip, detail=detail
    )
    updated = account_store.get_account_by_id(cur, account.id)
    assert updated is not None
    return updated


def apply_admin_password(cur: Cursor, password: str) -> str | None:
    """Make `admin` an admin account with this password (MYAPP_ADMIN_PASSWORD, at start):
    "created", "changed", or None when it already was."""
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
        return "created"
    password_ok = verify_password(password, account.password_hash)
    if account.role == "admin" and password_ok:
        return None
    # Only a new password ends the account's sign-ins; restoring the role alone does not.
    account_store.update_account(cur, account.id, role="admin")
    if not password_ok:
        _set_password(cur, account, password)
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
    return "changed"


def remove_user(
    cur: Cursor,
    username: str,
    *,
    actor: str,
    ip: str | None,
    has_admin_token: bool,
) -> None:
    account = get_account_or_404(cur, username)
    _ensure_admin_remains(cur, account, has_admin_token)
    token_store.delete_account_tokens(cur, account.id)
    account_store.delete_account(cur, account.id)
    record(
        cur,
        actor=actor,
        action="account.removed",
        target=account.username,
        ip=ip,
        detail={"role": account.role},
    )


# -- the API's account management (one transaction each) ---------------------------------------
def add_account(
    database: Database,
    auth: Authenticator,
    *,
    username: str,
    password: str,
    role: str,
    actor: str,
    ip: str | None,
) -> account_store.Account:
    with database.transaction() as cur:
        account = create_user(
            cur, username=username, password=password, role=role, actor=actor, ip=ip
        )
        auth.accounts_changed(cur)
    return account


def read_account(database: Database, username: str) -> account_store.Account:
    with database.cursor() as cur:
        return get_account_or_404(cur, username)


def list_accounts(database: Database) -> list[account_store.Account]:
    with database.cursor() as cur:
        return account_store.list_accounts(cur)


def change_account(
    database: Database,
    auth: Authenticator,
    username: str,
    *,
    role: str | None,
    password: str | None,
    actor: str,
    ip: str | None,
) -> account_store.Account:
    with database.transaction() as cur:
        return update_user(
            cur,
            username,
            role=role,
            password=password,
            actor=actor,
            ip=ip,
            has_admin_token=auth.has_admin_token,
        )


def remove_account(
    database: Database, auth: Authenticator, username: str, *, actor: str, ip: str | None
) -> None:
    with database.transaction() as cur:
        remove_user(cur, username, actor=actor, ip=ip, has_admin_token=auth.has_admin_token)
        auth.accounts_changed(cur)


# -- signing in and out -------------------------------------------------------------------------
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


@dataclass(frozen=True)
class SignIn:
    token: str
    expires_at: datetime
    account: account_store.Account


def sign_in(
    database: Database, limiter: LoginLimiter, username: str, password: str, *, ip: str
) -> SignIn:
    """A new session for the right password; 401 `invalid_credentials` or 429
    `too_many_attempts` otherwise (each audited or counted by the limiter)."""
    username = account_store.normalize_username(username)
    wait = limiter.retry_after(username, ip)
    if wait is not None:
        raise _throttled(wait)
    with database.cursor() as cur:
        account = account_store.get_account(cur, username)
    # An unknown name is checked against a dummy hash: same answer, same time.
    if not verify_password(password, account.password_hash if account else None):
        limiter.failed(username, ip)
        with database.transaction() as cur:
            record(
                cur,
                actor=None,
                action="login.failed",
                target=username[:AUDIT_USERNAME_CHARS],
                ip=ip,
            )
        raise unauthorized(WRONG_CREDENTIALS, code="invalid_credentials")
    assert account is not None
    limiter.succeeded(username)
    expires_at = datetime.now(UTC) + SESSION_TTL
    upgraded = hash_password(password) if needs_rehash(account.password_hash) else None
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
            ip=ip,
            detail={"session": session.id},
        )
        account = account_store.get_account_by_id(cur, account.id)
    assert account is not None
    return SignIn(token=secret, expires_at=expires_at, account=account)


def sign_out(database: Database, caller: Actor, *, ip: str | None) -> None:
    """End the session the caller used; other credentials have nothing to end."""
    if caller.via != "session" or not caller.token_id:
        return
    with database.transaction() as cur:
        token_store.revoke_token(cur, caller.token_id)
        record(
            cur,
            actor=caller.audit_name,
            action="logout",
            target=caller.username,
            ip=ip,
            detail={"session": caller.token_id},
        )


def change_own_password(
    database: Database,
    limiter: LoginLimiter,
    caller: Actor,
    *,
    current_password: str,
    new_password: str,
    ip: str,
) -> None:
    """Change the caller's password after checking the current one (throttled like a
    sign-in); the caller's other sessions end, the one in use stays."""
    if caller.username is None:
        raise BadRequest(
            "Only an account has a password; sign in with one to change it.",
            code="no_account",
        )
    wait = limiter.retry_after(caller.username, ip)
    if wait is not None:
        raise _throttled(wait)
    with database.cursor() as cur:
        account = account_store.get_account(cur, caller.username)
    if account is None or not verify_password(current_password, account.password_hash):
        limiter.failed(caller.username, ip)
        # 400, not 401: the caller's credentials are fine, the form is not.
        raise BadRequest("The current password is not right.", code="wrong_password")
    with database.transaction() as cur:
        ended = _set_password(cur, account, new_password, keep_session=caller.token_id)
        record(
            cur,
            actor=caller.audit_name,
            action="account.password_changed",
            target=account.username,
            ip=ip,
            detail={"sessions_ended": ended},
        )
