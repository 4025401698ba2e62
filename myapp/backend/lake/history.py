"""Each change of a dataset in the lake mode is a version of its own (its lake table is kept):
the list a dataset page shows, and what an older version is read or restored from."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import duckdb

from ..errors import BadRequest, Conflict, NotFound
from .attach import ALIAS
from .catalog import INTERNAL
from .engine import LAKE_SCHEMA, MODE, drop_after_commit, table_name, table_of

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


def resolve_versions(cur: duckdb.DuckDBPyConnection, sql: str) -> str:
    """User SQL that reads an older version of a dataset, `FROM sales AT (VERSION => 3)` or
    `AT (TIMESTAMP => '2026-01-01')`, made to read that version's lake table.

    A dataset is a view in the workers, and DuckDB refuses time travel on views, so the
    statement the gate passed is parsed again (`json_serialize_sql`), each such table
    reference is pointed at the version's table (the gate has already checked the name is a
    dataset) and the text is rebuilt (`json_deserialize_sql`). Versions are the numbers
    `/versions` lists; a timestamp picks the version current then. Text without `AT` is
    returned as it is, unparsed."""
    if not MODE.active or not _AT.search(sql):
        return sql
    tree = json.loads(cur.execute("SELECT json_serialize_sql($s)", {"s": sql}).fetchone()[0])
    if tree.get("error"):
        return sql  # DuckDB will say what is wrong with it, with positions
    changed = False
    for node in _table_refs(tree):
        clause = node.get("at_clause")
        if not clause or node.get("catalog_name") or node.get("schema_name") not in ("", "main"):
            continue
        name = node["table_name"]
        expr = clause.get("expr") or {}
        if expr.get("class") != "CONSTANT" or (expr.get("value") or {}).get("is_null"):
            raise BadRequest(
                f"AT ({clause.get('unit')} => …) on {name!r} takes a constant.",
                code="invalid_version",
            )
        value = expr["value"]["value"]
        file_id = _file_at(cur, name, str(clause.get("unit", "")).upper(), value)
        node["at_clause"] = None
        node["catalog_name"], node["schema_name"] = ALIAS, LAKE_SCHEMA
        node["table_name"] = table_name(file_id)
        if not node.get("alias"):
            # Column references written as `sales.amount` keep working.
            node["alias"] = name
        changed = True
    if not changed:
        return sql
    rebuilt = cur.execute("SELECT json_deserialize_sql($t::JSON)", {"t": json.dumps(tree)})
    return rebuilt.fetchone()[0]


_AT = re.compile(r"\bAT\s*\(", re.IGNORECASE)


def _table_refs(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        if obj.get("type") == "BASE_TABLE":
            yield obj
        for value in obj.values():
            yield from _table_refs(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _table_refs(value)


def _file_at(cur: duckdb.DuckDBPyConnection, name: str, unit: str, value: Any) -> str:
    lowered = name.lower()
    if unit == "VERSION":
        # A constant too large for BIGINT arrives as a HUGEINT's parts: no such version.
        version = value if isinstance(value, int) and 0 < value < 2**62 else None
        row = None
        if version is not None:
            row = cur.execute(
                f"SELECT file_id FROM {_TABLE} WHERE lower(name) = $n AND version = $v",
                {"n": lowered, "v": version},
            ).fetchone()
        what = f"version {version}" if version is not None else "such version"
    elif unit == "TIMESTAMP":
        try:
            row = cur.execute(
                f'SELECT file_id FROM {_TABLE} WHERE lower(name) = $n AND "at" <= $t::TIMESTAMPTZ '
                'ORDER BY "at" DESC LIMIT 1',
                {"n": lowered, "t": str(value)},
            ).fetchone()
        except duckdb.ConversionException:
            raise BadRequest(
                f"{str(value)[:80]!r} is not a timestamp.", code="invalid_version"
            ) from None
        what = f"a version as of {value}"
    else:
        raise BadRequest(f"AT ({unit} => …) is not supported.", code="invalid_version")
    if row is None:
        raise BadRequest(
            f"The dataset {name!r} has no {what} (GET /api/datasets/{name}/versions lists them).",
            code="version_not_found",
            detail={"name": name},
        )
    return row[0]
