"""Each change of a dataset in the lake mode is a version of its own (its lake table is kept):
the list a dataset page shows, and what an older version is read or restored from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb

from .catalog import INTERNAL
from .engine import MODE

_TABLE = f'"{INTERNAL}".dataset_history'


def record(
    cur: duckdb.DuckDBPyConnection,
    *,
    name: str,
    version: int,
    file_id: str,
    action: str,
    actor: str | None,
    row_count: int,
) -> None:
    """Inside the catalog transaction that made the version (nothing in the embedded mode)."""
    if not MODE.active:
        return
    cur.execute(
        f'INSERT INTO {_TABLE} (name, version, file_id, "at", actor, action, row_count) '
        "VALUES ($name, $version, $file_id, $at, $actor, $action, $rows)",
        {
            "name": name,
            "version": version,
            "file_id": file_id,
            "at": datetime.now(UTC),
            "actor": actor,
            "action": action,
            "rows": row_count,
        },
    )


def renamed(cur: duckdb.DuckDBPyConnection, old: str, new: str) -> None:
    if MODE.active:
        cur.execute(f"UPDATE {_TABLE} SET name = $new WHERE name = $old", {"new": new, "old": old})


def forget(cur: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    """A deleted dataset's history goes with it; returns the lake tables of its versions."""
    if not MODE.active:
        return []
    rows = cur.execute(f"SELECT file_id FROM {_TABLE} WHERE name = $n", {"n": name}).fetchall()
    cur.execute(f"DELETE FROM {_TABLE} WHERE name = $n", {"n": name})
    return [row[0] for row in rows]


def versions(cur: duckdb.DuckDBPyConnection, name: str) -> list[dict[str, Any]]:
    rows = cur.execute(
        f'SELECT version, "at", actor, action, row_count FROM {_TABLE} WHERE name = $n '
        "ORDER BY version DESC",
        {"n": name},
    ).fetchall()
    return [
        {"version": v, "at": at, "by": actor, "action": action, "row_count": rows}
        for v, at, actor, action, rows in rows
    ]


def file_of(cur: duckdb.DuckDBPyConnection, name: str, version: int) -> str | None:
    row = cur.execute(
        f"SELECT file_id FROM {_TABLE} WHERE name = $n AND version = $v",
        {"n": name, "v": version},
    ).fetchone()
    return row[0] if row else None
