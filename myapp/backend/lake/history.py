"""Each change of a dataset in the lake mode is a version of its own (its lake table is kept):
the list a dataset page shows, and what an older version is read or restored from."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import duckdb

from ..errors import Conflict, NotFound
from .catalog import INTERNAL
from .engine import MODE, drop_after_commit, table_of

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


def forget(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    """A deleted dataset's history goes with it, and its versions' lake tables once the
    deletion commits."""
    if not MODE.active:
        return
    rows = cur.execute(f"SELECT file_id FROM {_TABLE} WHERE name = $n", {"n": name}).fetchall()
    cur.execute(f"DELETE FROM {_TABLE} WHERE name = $n", {"n": name})
    drop_after_commit([row[0] for row in rows])


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


def at_version(cur: duckdb.DuckDBPyConnection, record: Any, version: int | None) -> Any:
    """The dataset as it was at `version` (its rows, row count and columns then); the record
    itself for None or its current version. 404 for a version the dataset never had."""
    if version is None or version == record.version:
        return record
    file_id = file_of(cur, record.name, version) if MODE.active else None
    if file_id is None:
        raise NotFound(
            f"The dataset {record.name!r} has no version {version}"
            + ("." if MODE.active else ": older versions are kept in the lake mode only."),
            code="version_not_found",
            detail={"name": record.name, "version": version},
        )
    row = cur.execute(
        f"SELECT row_count FROM {_TABLE} WHERE name = $n AND version = $v",
        {"n": record.name, "v": version},
    ).fetchone()
    columns = [
        {"name": r[0], "type": r[1]}
        for r in cur.execute(f"DESCRIBE {table_of(file_id)}").fetchall()
    ]
    return replace(record, file_id=file_id, version=version, row_count=row[0], columns=columns)


def restore(cur: duckdb.DuckDBPyConnection, dataset: Any, version: int, actor: str | None) -> str:
    """Make `version` the current data of the dataset, inside the caller's transaction, as a
    new version reading the same lake table (nothing is copied); returns the file id it
    replaced (kept: the history names it)."""
    from ..store.datasets import drop_profiles, update_record

    old = at_version(cur, dataset, version)
    if old is dataset:
        raise Conflict(
            f"Version {version} is already the current data of {dataset.name!r}.",
            code="already_current",
            detail={"name": dataset.name, "version": version},
        )
    update_record(
        cur,
        name=dataset.name,
        row_count=old.row_count,
        source=None,
        actor=actor,
        file_id=old.file_id,
    )
    drop_profiles(cur, dataset.name)
    row = cur.execute(
        f'SELECT version FROM "{INTERNAL}".datasets WHERE name = $n', {"n": dataset.name}
    ).fetchone()
    record(
        cur,
        name=dataset.name,
        version=row[0],
        file_id=old.file_id,
        action="restored",
        actor=actor,
        row_count=old.row_count,
    )
    return dataset.file_id
