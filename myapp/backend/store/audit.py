"""The append-only audit log: who did what, when, from where.

Only `record` writes to it; there is no update or delete anywhere in the code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import duckdb

from .sql import INTERNAL_SCHEMA, internal


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
        f"VALUES (nextval('{INTERNAL_SCHEMA}.audit_seq'), $at, $actor, $action, $target, $ip, "
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
