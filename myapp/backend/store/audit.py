"""The append-only audit log: who did what, when, from where.

Only `record` writes to it; there is no update or delete anywhere in the code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb

from .sql import internal, nextval


def record(
    cur: duckdb.DuckDBPyConnection,
    *,
    actor: str | None,
    action: str,
    target: str | None = None,
    ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event. Call it with the cursor of the change it records, inside the same
    transaction, so the event and the change are committed (or rolled back) together.

    `action` is a dotted verb such as `dataset.created`, `login.failed`, `token.revoked`.
    `detail` must never hold a password or a token.
    """
    cur.execute(
        f'INSERT INTO {internal("audit_log")} (id, "at", actor, action, target, ip, detail) '
        f"VALUES ({nextval('audit_seq')}, $at, $actor, $action, $target, $ip, "
        "$detail)",
        {
            "at": datetime.now(UTC),
            "actor": actor,
            "action": action,
            "target": target,
            "ip": ip,
            "detail": json.dumps(detail or {}, default=str),
        },
    )


def list_events(
    cur: duckdb.DuckDBPyConnection,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Events newest first. `action` matches exactly, or a family when it ends with a dot
    (`token.` gives token.created and token.revoked); paging is by id (`before_id`)."""
    where = ["TRUE"]
    params: dict[str, Any] = {"limit": limit}
    if actor is not None:
        where.append("actor = $actor")
        params["actor"] = actor
    if action is not None:
        if action.endswith("."):
            where.append("starts_with(action, $action)")
        else:
            where.append("action = $action")
        params["action"] = action
    if target is not None:
        where.append("target = $target")
        params["target"] = target
    if since is not None:
        where.append('"at" >= $since')
        params["since"] = since
    if until is not None:
        where.append('"at" < $until')
        params["until"] = until
    if before_id is not None:
        where.append("id < $before")
        params["before"] = before_id
    rows = cur.execute(
        f'SELECT id, "at", actor, action, target, ip, detail FROM {internal("audit_log")} '
        f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT $limit",
        params,
    ).fetchall()
    return [
        {
            "id": row[0],
            # DuckDB returns the server's time zone; the log is read in UTC.
            "at": row[1].astimezone(UTC),
            "actor": row[2],
            "action": row[3],
            "target": row[4],
            "ip": row[5],
            "detail": json.loads(row[6]) if row[6] else {},
        }
        for row in rows
    ]
