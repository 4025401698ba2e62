"""API tokens: their rules (a token's scope never exceeds the role behind it; only admins
manage other accounts' tokens), audit lines and transactions. Used by the API routes and by the
CLI on a stopped backend's database file (the functions taking a cursor)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ..auth.actor import ROLE_RANK, ROLES, Actor
from ..auth.tokens import issue_token
from ..errors import BadRequest, Forbidden, NotFound
from ..store import accounts as account_store
from ..store import tokens as token_store
from ..store.audit import record
from ..store.database import Cursor, Database
from .accounts import get_account_or_404

__all__ = [
    "add_token",
    "create_token",
    "end_token",
    "get_account_or_404",
    "list_tokens",
    "revoke_token",
    "token_owner",
]


def create_token(
    cur: Cursor,
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
    cur: Cursor,
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


# -- the API's tokens (one transaction each) ---------------------------------------------------
def token_owner(actor: Actor, requested: str | None) -> str:
    """Whose tokens a caller manages: their own, or (admins) the account they name."""
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


def add_token(
    database: Database,
    caller: Actor,
    *,
    username: str | None,
    name: str,
    scope: str,
    expires_in_days: int | None,
    ip: str | None,
) -> tuple[str, token_store.TokenRecord]:
    owner_name = token_owner(caller, username)
    with database.transaction() as cur:
        owner = get_account_or_404(cur, owner_name)
        return create_token(
            cur,
            owner=owner,
            name=name,
            scope=scope,
            expires_in_days=expires_in_days,
            actor=caller.audit_name,
            actor_role=caller.role,
            ip=ip,
        )


def list_tokens(
    database: Database,
    caller: Actor,
    *,
    username: str | None,
    all_accounts: bool,
    kind: str,
    include_inactive: bool,
) -> list[token_store.TokenRecord]:
    with database.cursor() as cur:
        if all_accounts and caller.role != "admin":
            raise Forbidden(
                "Only an admin can list every account's tokens.", code="not_your_account"
            )
        if all_accounts or (username is None and caller.username is None and caller.can("admin")):
            # Open mode and the admin token have no account of their own: they see everyone's.
            account_id = None
        else:
            account_id = get_account_or_404(cur, token_owner(caller, username)).id
        return token_store.list_tokens(
            cur, account_id=account_id, kind=kind, include_inactive=include_inactive
        )


def end_token(database: Database, caller: Actor, token_id: str, *, ip: str | None) -> None:
    with database.transaction() as cur:
        revoke_token(cur, token_id, caller=caller, actor=caller.audit_name, ip=ip)
