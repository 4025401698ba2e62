"""Accounts: usernames, roles and password hashes. All SQL about accounts lives here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from myapp.models import usernames

from .sql import INTERNAL_SCHEMA, internal, nextval

_COLUMNS = "id, username, role, password_hash, created_at, updated_at, last_login_at"


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    role: str
    password_hash: str
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None

    def public(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "role": self.role,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_login_at": self.last_login_at,
        }


def normalize_username(username: str) -> str:
    """Usernames are case-insensitive: `Alice` and `alice` are one account, stored lowercase
    (and NFC, so a name typed with combining accents finds the same account)."""
    return usernames.normalize(username)


def utc(value: datetime | None) -> datetime | None:
    """DuckDB hands out TIMESTAMPTZ in the server's time zone; the API speaks UTC."""
    return value.astimezone(UTC) if value is not None else None


def _row(row: tuple | None) -> Account | None:
    if not row:
        return None
    return Account(*row[:4], *(utc(v) for v in row[4:]))  # type: ignore[arg-type]


def get_account(cur: duckdb.DuckDBPyConnection, username: str) -> Account | None:
    return _row(
        cur.execute(
            f"SELECT {_COLUMNS} FROM {internal('accounts')} WHERE username = $u",
            {"u": normalize_username(username)},
        ).fetchone()
    )


def get_account_by_id(cur: duckdb.DuckDBPyConnection, account_id: int) -> Account | None:
    return _row(
        cur.execute(
            f"SELECT {_COLUMNS} FROM {internal('accounts')} WHERE id = $id", {"id": account_id}
        ).fetchone()
    )


def list_accounts(cur: duckdb.DuckDBPyConnection) -> list[Account]:
    rows = cur.execute(
        f"SELECT {_COLUMNS} FROM {internal('accounts')} ORDER BY username"
    ).fetchall()
    return [account for row in rows if (account := _row(row)) is not None]


def count_accounts(cur: duckdb.DuckDBPyConnection, role: str | None = None) -> int:
    if role is None:
        row = cur.execute(f"SELECT count(*) FROM {internal('accounts')}").fetchone()
    else:
        row = cur.execute(
            f"SELECT count(*) FROM {internal('accounts')} WHERE role = $r", {"r": role}
        ).fetchone()
    return int(row[0]) if row else 0


def create_account(
    cur: duckdb.DuckDBPyConnection, username: str, role: str, password_hash: str
) -> Account:
    now = datetime.now(UTC)
    cur.execute(
        f"INSERT INTO {internal('accounts')} "
        "(id, username, role, password_hash, created_at, updated_at) "
        f"VALUES ({nextval('account_seq')}, $u, $role, $hash, $now, $now)",
        {"u": normalize_username(username), "role": role, "hash": password_hash, "now": now},
    )
    account = get_account(cur, username)
    assert account is not None
    return account


def update_account(
    cur: duckdb.DuckDBPyConnection,
    account_id: int,
    *,
    role: str | None = None,
    password_hash: str | None = None,
) -> None:
    sets = ["updated_at = $now"]
    params: dict[str, Any] = {"id": account_id, "now": datetime.now(UTC)}
    if role is not None:
        sets.append("role = $role")
        params["role"] = role
    if password_hash is not None:
        sets.append("password_hash = $hash")
        params["hash"] = password_hash
    cur.execute(f"UPDATE {internal('accounts')} SET {', '.join(sets)} WHERE id = $id", params)


def record_login(
    cur: duckdb.DuckDBPyConnection, account_id: int, password_hash: str | None = None
) -> None:
    """Note a successful sign-in; store an upgraded hash when the cost parameters changed."""
    params: dict[str, Any] = {"id": account_id, "now": datetime.now(UTC)}
    extra = ""
    if password_hash is not None:
        extra = ", password_hash = $hash"
        params["hash"] = password_hash
    cur.execute(
        f"UPDATE {internal('accounts')} SET last_login_at = $now{extra} WHERE id = $id", params
    )


def delete_account(cur: duckdb.DuckDBPyConnection, account_id: int) -> None:
    cur.execute(f"DELETE FROM {internal('accounts')} WHERE id = $id", {"id": account_id})


def accounts_in_file(path: Path) -> int:
    """How many accounts a database file holds, read without the backend (which may not run).

    Opens the file read-only; raises duckdb.IOException when another process holds it.
    """
    if not path.exists():
        return 0
    with duckdb.connect(str(path), read_only=True) as conn:
        present = conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = $s AND table_name = $t",
            {"s": INTERNAL_SCHEMA, "t": "accounts"},
        ).fetchone()
        if not present or not present[0]:
            return 0
        return count_accounts(conn)
