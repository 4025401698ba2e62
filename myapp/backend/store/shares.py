"""Share links: read-only access to one saved query or one dashboard through a secret address.

Only the SHA-256 of a link's secret is stored, like API tokens: the address is shown once, when
the link is made. A link names its target by slug and follows the target's latest version
unless it is pinned to one; the parameter values it fixes are kept with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb

from myapp.models.dashboards import value_keys, value_type

from ..errors import NotFound
from . import dashboards as dashboard_store
from . import saved_queries as saved_query_store
from .database import Database
from .sql import internal

SHARES = internal("share_links")
# The secret's prefix tells the authenticator (auth/authenticator.py) that a bearer credential
# is a share link's, and people and secret scanners what it is.
SHARE_PREFIX = "myapp_share_"

_COLUMNS = (
    "id, kind, target, version, name, params, created_at, created_by, expires_at, revoked_at, "
    "last_used_at, use_count"
)


@dataclass(frozen=True)
class ShareRecord:
    id: str
    kind: str
    target: str
    version: int | None
    name: str
    params: dict[str, Any]
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    use_count: int

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))

    @property
    def active(self) -> bool:
        return self.revoked_at is None and not self.expired()

    def public(self) -> dict[str, Any]:
        return {**self.__dict__, "active": self.active}


def _record(row: tuple) -> ShareRecord:
    values = list(row)
    values[5] = json.loads(values[5]) if values[5] else {}
    return ShareRecord(*values)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def target_predates(database: Database, share: ShareRecord) -> bool:
    """Whether the link's target exists and was made before the link (a target deleted and
    made again under the same slug is another one)."""
    tables = dashboard_store.TABLES if share.kind == "dashboard" else saved_query_store.TABLES
    with database.cursor() as cur:
        created_at = tables.created_at(cur, share.target)
    return created_at is not None and created_at <= share.created_at


def find_by_secret(database: Database, secret: str) -> ShareRecord | None:
    with database.cursor() as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM {SHARES} WHERE token_hash = $h", {"h": hash_secret(secret)}
        ).fetchone()
    return _record(row) if row else None


def get_share(database: Database, share_id: str) -> ShareRecord:
    with database.cursor() as cur:
        row = cur.execute(
            f"SELECT {_COLUMNS} FROM {SHARES} WHERE id = $id", {"id": share_id}
        ).fetchone()
    if row is None:
        raise NotFound(f"There is no share link {share_id!r}.", code="share_not_found")
    return _record(row)


def list_shares(
    database: Database,
    *,
    kind: str | None = None,
    target: str | None = None,
    created_by: str | None = None,
) -> list[ShareRecord]:
    with database.cursor() as cur:
        rows = cur.execute(
            f"SELECT {_COLUMNS} FROM {SHARES} WHERE ($kind IS NULL OR kind = $kind) "
            "AND ($target IS NULL OR target = $target) "
            "AND ($by IS NULL OR created_by = $by) ORDER BY created_at DESC, id",
            {"kind": kind, "target": target, "by": created_by},
        ).fetchall()
    return [_record(row) for row in rows]


def fixable_keys(database: Database, kind: str, target: str, version: int | None) -> dict[str, str]:
    """The parameter keys a link to this target may fix, with each one's value type."""
    if kind == "query":
        saved = saved_query_store.get_query(database, target, version)
        return {p["name"]: p["type"] for p in saved["parameters"]}
    dashboard = dashboard_store.get_dashboard(database, target, version)
    return {key: value_type(p) for p in dashboard["parameters"] for key in value_keys(p)}


def insert_share(
    cur: duckdb.DuckDBPyConnection,
    *,
    share_id: str,
    secret: str,
    kind: str,
    target: str,
    version: int | None,
    name: str,
    params: Mapping[str, Any],
    actor: str | None,
    now: datetime,
    expires_at: datetime | None,
) -> None:
    cur.execute(
        f"INSERT INTO {SHARES} (id, token_hash, kind, target, version, name, params, "
        "created_at, created_by, expires_at) VALUES ($id, $hash, $kind, $target, $version, "
        "$name, $params, $at, $by, $expires)",
        {
            "id": share_id,
            "hash": hash_secret(secret),
            "kind": kind,
            "target": target,
            "version": version,
            "name": name,
            "params": json.dumps(params),
            "at": now,
            "by": actor,
            "expires": expires_at,
        },
    )


def revoke(cur: duckdb.DuckDBPyConnection, share_id: str) -> tuple[str, str] | None:
    """Revoke a link; its (kind, target) when it was live, None when it was revoked already.
    404 when there is no such link."""
    row = cur.execute(
        f"SELECT kind, target, revoked_at FROM {SHARES} WHERE id = $id", {"id": share_id}
    ).fetchone()
    if row is None:
        raise NotFound(f"There is no share link {share_id!r}.", code="share_not_found")
    if row[2] is not None:
        return None
    cur.execute(
        f"UPDATE {SHARES} SET revoked_at = $now WHERE id = $id",
        {"now": datetime.now(UTC), "id": share_id},
    )
    return row[0], row[1]


def record_use(cur: duckdb.DuckDBPyConnection, share_id: str, now: datetime) -> None:
    cur.execute(
        f"UPDATE {SHARES} SET use_count = use_count + 1, last_used_at = $now WHERE id = $id",
        {"now": now, "id": share_id},
    )
