"""`myapp lake import`: an embedded workspace (MYAPP_DATA_DIR's app.db and dataset files) moved
into an empty lake (MYAPP_CATALOG_URL, MYAPP_LAKE_DATA_PATH).

Run with the embedded backend stopped (its database is opened read-only, and a running backend
holds its lock). Every table of the embedded catalog is copied row for row into PostgreSQL,
where the same migrations made the same tables; each dataset's file becomes its lake table
(same id), with one version in its history ("imported"); the sequences continue after the
largest ids copied. The lake must be empty (no dataset, no account): importing twice, or into
a lake in use, would mix two workspaces.
"""

from __future__ import annotations

from typing import Any

import duckdb

from myapp.settings import Settings

from ..store.file_format import check_readable
from ..store.schema import apply_migrations
from ..store.storage import instance_config, path_of
from . import catalog, engine

SOURCE = "myapp_embedded"
# Copied in this order; `datasets` and the bookkeeping tables are handled on their own.
TABLES = (
    "accounts",
    "tokens",
    "saved_queries",
    "saved_query_versions",
    "dashboards",
    "dashboard_versions",
    "share_links",
    "audit_log",
    "dataset_profiles",
)
SEQUENCES = {"audit_seq": "audit_log", "account_seq": "accounts"}


class ImportRefused(RuntimeError):
    """The import cannot start; the message is one line for the person running it."""


def import_workspace(embedded: Settings, lake: Settings) -> dict[str, Any]:
    if not embedded.database_path.exists():
        raise ImportRefused(f"no embedded workspace at {embedded.database_path}")
    check_readable([embedded.database_path])
    config = instance_config(lake, lake.bulk_memory_limit, lake.spill_dir)
    lake.spill_dir.mkdir(parents=True, exist_ok=True)
    conn = engine.connect(lake, config)
    try:
        cur = conn.cursor()
        with catalog.migration_lock(lake):
            apply_migrations(cur, catalog.MIGRATIONS, in_postgres=True)
        _refuse_unless_empty(cur)
        try:
            cur.execute(
                f"ATTACH {engine.literal(str(embedded.database_path))} AS {SOURCE} (READ_ONLY)"
            )
        except duckdb.IOException as exc:
            raise ImportRefused(
                f"cannot open {embedded.database_path} (stop the embedded backend first): "
                + " ".join(str(exc).split())[:200]
            ) from None
        copied = {table: _copy_table(cur, table) for table in TABLES if _has(cur, table)}
        datasets = _copy_datasets(cur, embedded)
        _advance_sequences(cur, lake)
        return {"tables": copied, "datasets": datasets}
    finally:
        conn.close()
        engine.close()


def _refuse_unless_empty(cur: duckdb.DuckDBPyConnection) -> None:
    for table in ("datasets", "accounts"):
        row = cur.execute(f'SELECT count(*) FROM "{catalog.INTERNAL}".{table}').fetchone()
        if row and row[0]:
            raise ImportRefused(
                f"the lake's catalog already has {table} ({row[0]}); import into an empty one"
            )


def _has(cur: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = cur.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = $db "
        "AND schema_name = $schema AND table_name = $t",
        {"db": SOURCE, "schema": catalog.INTERNAL, "t": table},
    ).fetchone()
    return bool(row and row[0])


def _copy_table(cur: duckdb.DuckDBPyConnection, table: str) -> int:
    target = f'"{catalog.INTERNAL}".{table}'
    source = f'{SOURCE}."{catalog.INTERNAL}".{table}'
    cur.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {source}")
    return int(cur.execute(f"SELECT count(*) FROM {target}").fetchone()[0])


def _copy_datasets(cur: duckdb.DuckDBPyConnection, embedded: Settings) -> list[dict[str, Any]]:
    from . import history

    rows = cur.execute(
        f'SELECT name, file_id, row_count, version, updated_by FROM {SOURCE}."{catalog.INTERNAL}"'
        ".datasets ORDER BY name"
    ).fetchall()
    out = []
    for name, file_id, row_count, version, actor in rows:
        if file_id is None:
            raise ImportRefused(
                f"dataset {name} is not in a file of its own yet: start the embedded backend "
                "once with this version of myapp, stop it, and import again"
            )
        engine.publish(cur, path_of(embedded, file_id), file_id)
        cur.execute("BEGIN")
        cur.execute(
            f'INSERT INTO "{catalog.INTERNAL}".datasets BY NAME SELECT * FROM '
            f'{SOURCE}."{catalog.INTERNAL}".datasets WHERE name = $n',
            {"n": name},
        )
        history.record(
            cur,
            name=name,
            version=version,
            file_id=file_id,
            action="imported",
            actor=actor,
            row_count=row_count,
        )
        cur.execute("COMMIT")
        out.append({"name": name, "row_count": row_count})
    return out


def _advance_sequences(cur: duckdb.DuckDBPyConnection, lake: Settings) -> None:
    """Continue PostgreSQL's sequences after the largest ids and versions copied."""
    highest = {
        seq: cur.execute(
            f'SELECT coalesce(max(id), 0) FROM "{catalog.INTERNAL}".{table}'
        ).fetchone()[0]
        for seq, table in SEQUENCES.items()
    }
    highest["dataset_version_seq"] = cur.execute(
        f'SELECT coalesce(max(version), 0) FROM "{catalog.INTERNAL}".datasets'
    ).fetchone()[0]
    catalog.advance_sequences(lake, highest)
