"""Changes to accounts and tokens, with their rules and audit lines.

Shared by the API routes and by the CLI when it works on a stopped backend's database file, so
both enforce the same rules: at least one admin remains, a token's scope never exceeds its
account's role, every change is audited in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from myapp.models import usernames

from .auth.actor import ROLE_RANK, ROLES, Actor
from .auth.passwords import hash_password
from .auth.tokens import issue_token
from .errors import BadRequest, Conflict, Forbidden, NotFound
from .store import accounts as account_store
from .store import tokens as token_store
from .store.audit import record


def _ensure_admin_remains(
    cur: duckdb.DuckDBPyConnection, account: account_store.Account, has_admin_token: bool
) -> None:
    if account.role != "admin" or has_admin_token:
        return
    if account_store.count_accounts(cur, "admin") <= 1:
        raise Conflict(
            "At least one admin account must remain, or nobody could manage accounts; "
            "make another account admin first.",
            code="last_admin",
        )


def get_account_or_404(cur: duckdb.DuckDBPyConnection, username: str) -> account_store.Account:
    account = account_store.get_account(cur, username)
    if account is None:
        raise NotFound(f"There is no account named {username!r}.", code="account_not_found")
    return account


def create_user(
    cur: duckdb.DuckDBPyConnection,
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


def update_user(
    cur: duckdb.DuckDBPyConnection,
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
    account_store.update_account(
        cur,
        account.id,
        role=role,
        password_hash=hash_password(password) if password is not None else None,
    )
    detail: dict[str, object] = {}
    if role is not None and role != account.role:
        detail.update(role_from=account.role, role_to=role)
    if password is not None:
        # A reset password ends every sign-in made with the old one.
        ended = token_store.revoke_account_tokens(cur, account.id, kind="session")
        detail.update(password_reset=True, sessions_ended=len(ended))
    record(
        cur, actor=actor, action="account.changed", target=account.username, ip=ip, detail=detail
    )
    updated = account_store.get_account_by_id(cur, account.id)
    assert updated is not None
    return updated


def remove_user(
    cur: duckdb.DuckDBPyConnection,
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


def create_token(
    cur: duckdb.DuckDBPyConnection,
    *,
    owner: account_store.Account,
    name: str,
    scope: str,
    expires_in_days: int | None,
    actor: str,
    actor_role: str,
    ip: str | None,
) -> tuple[str, token_store.TokenRecord]:
    """A new API token for `owner`; returns (secret, record). The secret is shown once."""
    limit = min(owner.role, actor_role, key=ROLE_RANK.__getitem__)
    if ROLE_RANK[scope] > ROLE_RANK[limit]:
        allowed = [role for role in ROLES if ROLE_RANK[role] <= ROLE_RANK[limit]]
        raise Forbidden(
            f"A token's scope cannot exceed the role behind it ({limit}); "
            f"choose {' or '.join(allowed)}.",
            code="scope_too_wide",
            detail={"max_scope": limit},
        )
    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    secret, created = issue_token(
        cur, owner.id, kind="api", name=name, scope=scope, expires_at=expires_at
    )
    record(
        cur,
        actor=actor,
        action="token.created",
        target=owner.username,
        ip=ip,
        detail={
            "id": created.id,
            "name": name,
            "scope": scope,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return secret, created


def revoke_token(
    cur: duckdb.DuckDBPyConnection,
    token_id: str,
    *,
    caller: Actor | None,
    actor: str,
    ip: str | None,
) -> token_store.TokenRecord:
    """Revoke a token; `caller` None means the CLI on the database file (may revoke any)."""
    found = token_store.get_token(cur, token_id)
    if found is None:
        raise NotFound(f"There is no token with id {token_id!r}.", code="token_not_found")
    if caller is not None and caller.role != "admin" and found.username != caller.username:
        raise Forbidden("Only an admin can revoke another account's token.", code="not_your_token")
    if found.revoked_at is None:
        token_store.revoke_token(cur, token_id)
        record(
            cur,
            actor=actor,
            action="token.revoked",
            target=found.username,
            ip=ip,
            detail={"id": found.id, "name": found.name, "kind": found.kind},
        )
    updated = token_store.get_token(cur, token_id)
    assert updated is not None
    return updated
