"""API tokens and sign-in sessions: both are bearer secrets of an account, stored as hashes.

The secret itself is never stored: only its SHA-256 (a random 256-bit secret needs no slow
hash) and a short hint of its first characters so people can recognise it in a list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from .accounts import utc
from .sql import internal

_COLUMNS = (
    "t.id, t.account_id, a.username, a.role, t.kind, t.name, t.scope, t.hint, t.created_at, "
    "t.expires_at, t.last_used_at, t.revoked_at"
)
_FROM = f"{internal('tokens')} t JOIN {internal('accounts')} a ON a.id = t.account_id"


def _record(row: tuple) -> TokenRecord:
    # The last four columns are timestamps: created, expires, last used, revoked.
    return TokenRecord(*row[:8], *(utc(v) for v in row[8:]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class TokenRecord:
    id: str
    account_id: int
    username: str
    account_role: str
    kind: str
    name: str
    scope: str
    hint: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))

    @property
    def active(self) -> bool:
        return self.revoked_at is None and not self.expired()

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "kind": self.kind,
            "username": self.username,
            "hint": self.hint,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
            "active": self.active,
        }


def insert_token(
    cur: duckdb.DuckDBPyConnection,
    *,
    token_id: str,
    account_id: int,
    kind: str,
    name: str,
    scope: str,
    token_hash: str,
    hint: str,
    expires_at: datetime | None,
) -> None:
    cur.execute(
        f"INSERT INTO {internal('tokens')} "
        "(id, account_id, kind, name, scope, token_hash, hint, created_at, expires_at) "
        "VALUES ($id, $account, $kind, $name, $scope, $hash, $hint, $now, $expires)",
        {
            "id": token_id,
            "account": account_id,
            "kind": kind,
            "name": name,
            "scope": scope,
            "hash": token_hash,
            "hint": hint,
            "now": datetime.now(UTC),
            "expires": expires_at,
        },
    )


def find_by_hash(cur: duckdb.DuckDBPyConnection, token_hash: str) -> TokenRecord | None:
    row = cur.execute(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE t.token_hash = $h", {"h": token_hash}
    ).fetchone()
    return _record(row) if row else None


def get_token(cur: duckdb.DuckDBPyConnection, token_id: str) -> TokenRecord | None:
    row = cur.execute(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE t.id = $id", {"id": token_id}
    ).fetchone()
    return _record(row) if row else None


def list_tokens(
    cur: duckdb.DuckDBPyConnection,
    *,
    account_id: int | None = None,
    kind: str | None = "api",
    include_inactive: bool = False,
) -> list[TokenRecord]:
    where = ["TRUE"]
    params: dict[str, Any] = {}
    if account_id is not None:
        where.append("t.account_id = $account")
        params["account"] = account_id
    if kind is not None:
        where.append("t.kind = $kind")
        params["kind"] = kind
    if not include_inactive:
        where.append("t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > $now)")
        params["now"] = datetime.now(UTC)
    rows = cur.execute(
        f"SELECT {_COLUMNS} FROM {_FROM} WHERE {' AND '.join(where)} "
        "ORDER BY a.username, t.created_at DESC",
        params,
    ).fetchall()
    return [_record(row) for row in rows]


def revoke_token(cur: duckdb.DuckDBPyConnection, token_id: str) -> None:
    cur.execute(
        f"UPDATE {internal('tokens')} SET revoked_at = $now WHERE id = $id AND revoked_at IS NULL",
        {"id": token_id, "now": datetime.now(UTC)},
    )


def revoke_account_tokens(
    cur: duckdb.DuckDBPyConnection,
    account_id: int,
    *,
    kind: str | None = None,
    except_id: str | None = None,
) -> list[str]:
    """Revoke the account's live tokens (of one kind, or all); return the revoked ids."""
    where = ["account_id = $account", "revoked_at IS NULL"]
    params: dict[str, Any] = {"account": account_id}
    if kind is not None:
        where.append("kind = $kind")
        params["kind"] = kind
    if except_id is not None:
        where.append("id <> $except")
        params["except"] = except_id
    # Selected, then updated, rather than UPDATE ... RETURNING: PostgreSQL's tables in the
    # lake mode are reached through DuckDB's postgres extension, which has no RETURNING.
    ids = [
        row[0]
        for row in cur.execute(
            f"SELECT id FROM {internal('tokens')} WHERE {' AND '.join(where)}", params
        ).fetchall()
    ]
    if ids:
        cur.execute(
            f"UPDATE {internal('tokens')} SET revoked_at = $now WHERE list_contains($ids, id)",
            {"now": datetime.now(UTC), "ids": ids},
        )
    return ids


def delete_account_tokens(cur: duckdb.DuckDBPyConnection, account_id: int) -> None:
    cur.execute(f"DELETE FROM {internal('tokens')} WHERE account_id = $a", {"a": account_id})


def touch_token(cur: duckdb.DuckDBPyConnection, token_id: str, at: datetime) -> None:
    cur.execute(
        f"UPDATE {internal('tokens')} SET last_used_at = $at WHERE id = $id",
        {"id": token_id, "at": at},
    )


def purge_sessions(cur: duckdb.DuckDBPyConnection, before: datetime) -> int:
    """Forget sign-in sessions that ended (expired or revoked) before `before`."""
    ended = "kind = 'session' AND (expires_at < $before OR revoked_at < $before)"
    # Counted, then deleted: no RETURNING in the lake mode (see revoke_account_tokens).
    row = cur.execute(
        f"SELECT count(*) FROM {internal('tokens')} WHERE {ended}", {"before": before}
    ).fetchone()
    cur.execute(f"DELETE FROM {internal('tokens')} WHERE {ended}", {"before": before})
    return int(row[0]) if row else 0
