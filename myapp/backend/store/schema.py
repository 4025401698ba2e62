"""The internal schema, as an ordered list of migrations applied once each at start.

A migration is never edited after it has shipped: change the schema by appending a new one with
a new id to the list of its resource. Each id is recorded in `migrations` when applied, inside
the same transaction as its statements, so a crash never leaves half a migration behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from .sql import INTERNAL_SCHEMA, internal


@dataclass(frozen=True)
class Migration:
    id: str
    statements: tuple[str, ...]


CORE: list[Migration] = [
    Migration(
        "core-0001-meta",
        (
            f"CREATE TABLE IF NOT EXISTS {internal('meta')} "
            "(key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
        ),
    ),
    Migration(
        "core-0002-audit-log",
        (
            f"CREATE SEQUENCE IF NOT EXISTS {INTERNAL_SCHEMA}.audit_seq",
            f"CREATE TABLE IF NOT EXISTS {internal('audit_log')} ("
            'id BIGINT PRIMARY KEY, "at" TIMESTAMPTZ NOT NULL, actor VARCHAR, '
            "action VARCHAR NOT NULL, target VARCHAR, ip VARCHAR, detail JSON)",
        ),
    ),
]

# One list per resource; each resource appends its own migrations to its own list.
DATASETS: list[Migration] = [
    Migration(
        "datasets-0001-catalog",
        (
            # One version sequence for all datasets: a name that is deleted and created again
            # never reuses a version, so caches keyed on (name, version) cannot serve stale data.
            f"CREATE SEQUENCE IF NOT EXISTS {INTERNAL_SCHEMA}.dataset_version_seq",
            f"CREATE TABLE IF NOT EXISTS {internal('datasets')} ("
            "name VARCHAR PRIMARY KEY, row_count BIGINT NOT NULL, version BIGINT NOT NULL, "
            "source_filename VARCHAR, source_format VARCHAR NOT NULL, source_compression VARCHAR, "
            "source_bytes BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL, "
            "updated_at TIMESTAMPTZ NOT NULL, created_by VARCHAR, updated_by VARCHAR)",
            f"CREATE TABLE IF NOT EXISTS {internal('dataset_profiles')} ("
            "name VARCHAR NOT NULL, version BIGINT NOT NULL, computed_at TIMESTAMPTZ NOT NULL, "
            "body JSON NOT NULL, PRIMARY KEY (name, version))",
        ),
    ),
    Migration(
        # Each dataset's data moves into a DuckDB file of its own (see storage.py); NULL until
        # the start-up step has moved a dataset stored as a table of the main database.
        "datasets-0002-data-files",
        (f"ALTER TABLE {internal('datasets')} ADD COLUMN file_id VARCHAR",),
    ),
    Migration(
        # The text encoding the source file was read in, and a workbook's sheet; NULL for
        # datasets loaded before they were recorded.
        "datasets-0003-source-encoding",
        (
            f"ALTER TABLE {internal('datasets')} ADD COLUMN source_encoding VARCHAR",
            f"ALTER TABLE {internal('datasets')} ADD COLUMN source_sheet VARCHAR",
        ),
    ),
]
QUERIES: list[Migration] = [
    Migration(
        "queries-0001-saved-queries",
        (
            # The slug is the saved query's address and never changes; `version` is its latest.
            f"CREATE TABLE IF NOT EXISTS {internal('saved_queries')} ("
            "slug VARCHAR PRIMARY KEY, version INTEGER NOT NULL, "
            "created_at TIMESTAMPTZ NOT NULL, created_by VARCHAR)",
            # Every edit appends a row; rows are only removed with their query.
            f"CREATE TABLE IF NOT EXISTS {internal('saved_query_versions')} ("
            "slug VARCHAR NOT NULL, version INTEGER NOT NULL, title VARCHAR NOT NULL, "
            "description VARCHAR NOT NULL, sql VARCHAR NOT NULL, parameters JSON NOT NULL, "
            "chart JSON, created_at TIMESTAMPTZ NOT NULL, created_by VARCHAR, "
            "PRIMARY KEY (slug, version))",
        ),
    ),
    Migration(
        # When a saved query last ran and how many times (store/runlog.py); NULL and 0 for
        # queries saved before runs were recorded.
        "queries-0002-runs",
        (
            f"ALTER TABLE {internal('saved_queries')} ADD COLUMN last_run_at TIMESTAMPTZ",
            f"ALTER TABLE {internal('saved_queries')} ADD COLUMN run_count BIGINT DEFAULT 0",
        ),
    ),
]
AUTH: list[Migration] = [
    Migration(
        "auth-0001-accounts",
        (
            f"CREATE SEQUENCE IF NOT EXISTS {INTERNAL_SCHEMA}.account_seq",
            f"CREATE TABLE IF NOT EXISTS {internal('accounts')} ("
            "id BIGINT PRIMARY KEY, username VARCHAR NOT NULL UNIQUE, role VARCHAR NOT NULL, "
            "password_hash VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL, "
            "updated_at TIMESTAMPTZ NOT NULL, last_login_at TIMESTAMPTZ)",
        ),
    ),
    Migration(
        "auth-0002-tokens",
        (
            f"CREATE TABLE IF NOT EXISTS {internal('tokens')} ("
            "id VARCHAR PRIMARY KEY, account_id BIGINT NOT NULL, kind VARCHAR NOT NULL, "
            "name VARCHAR NOT NULL, scope VARCHAR NOT NULL, token_hash VARCHAR NOT NULL UNIQUE, "
            "hint VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ, "
            "last_used_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ)",
        ),
    ),
]

DASHBOARDS: list[Migration] = [
    Migration(
        "dashboards-0001-dashboards",
        (
            # Like saved queries: a fixed slug, `version` its latest; each edit appends a row.
            f"CREATE TABLE IF NOT EXISTS {internal('dashboards')} ("
            "slug VARCHAR PRIMARY KEY, version INTEGER NOT NULL, "
            "created_at TIMESTAMPTZ NOT NULL, created_by VARCHAR)",
            f"CREATE TABLE IF NOT EXISTS {internal('dashboard_versions')} ("
            "slug VARCHAR NOT NULL, version INTEGER NOT NULL, title VARCHAR NOT NULL, "
            "description VARCHAR NOT NULL, parameters JSON NOT NULL, tiles JSON NOT NULL, "
            "created_at TIMESTAMPTZ NOT NULL, created_by VARCHAR, PRIMARY KEY (slug, version))",
        ),
    ),
    Migration(
        # When a dashboard's tiles last ran and how many tile runs there were (store/runlog.py).
        "dashboards-0002-runs",
        (
            f"ALTER TABLE {internal('dashboards')} ADD COLUMN last_run_at TIMESTAMPTZ",
            f"ALTER TABLE {internal('dashboards')} ADD COLUMN run_count BIGINT DEFAULT 0",
        ),
    ),
]
SHARES: list[Migration] = [
    Migration(
        "shares-0001-share-links",
        (
            # Only the secret's hash is kept; `params` holds the values the link fixes.
            f"CREATE TABLE IF NOT EXISTS {internal('share_links')} ("
            "id VARCHAR PRIMARY KEY, token_hash VARCHAR NOT NULL UNIQUE, kind VARCHAR NOT NULL, "
            "target VARCHAR NOT NULL, version INTEGER, name VARCHAR NOT NULL, "
            "params JSON NOT NULL, created_at TIMESTAMPTZ NOT NULL, created_by VARCHAR, "
            "expires_at TIMESTAMPTZ, revoked_at TIMESTAMPTZ, last_used_at TIMESTAMPTZ, "
            "use_count BIGINT NOT NULL DEFAULT 0)",
        ),
    ),
]

MIGRATIONS: list[Migration] = [*CORE, *DATASETS, *QUERIES, *AUTH, *DASHBOARDS, *SHARES]

# The schema version recorded in meta: the number of migrations this code knows.
SCHEMA_VERSION = len(MIGRATIONS)


def apply_migrations(
    cur: duckdb.DuckDBPyConnection,
    migrations: list[Migration] = MIGRATIONS,
    *,
    in_postgres: bool = False,
) -> list[str]:
    """Apply every migration not yet recorded; return the ids applied now.

    `in_postgres`: the internal schema is PostgreSQL's (the lake mode), which already holds
    the schema and the sequences (DuckDB's postgres extension cannot create sequences)."""
    if not in_postgres:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {INTERNAL_SCHEMA}")
    cur.execute(
        f"CREATE TABLE IF NOT EXISTS {internal('migrations')} "
        "(id VARCHAR PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
    )
    done = {row[0] for row in cur.execute(f"SELECT id FROM {internal('migrations')}").fetchall()}
    known = {m.id for m in migrations}
    unknown = done - known
    if unknown:
        raise RuntimeError(
            "the database was written by a newer myapp (unknown migrations: "
            + ", ".join(sorted(unknown))
            + "); upgrade myapp to open it"
        )
    applied = []
    for migration in migrations:
        if migration.id in done:
            continue
        cur.execute("BEGIN TRANSACTION")
        try:
            for statement in migration.statements:
                if in_postgres and statement.startswith("CREATE SEQUENCE"):
                    continue
                cur.execute(statement)
            cur.execute(
                f"INSERT INTO {internal('migrations')} VALUES ($id, $at)",
                {"id": migration.id, "at": datetime.now(UTC)},
            )
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        applied.append(migration.id)
    cur.execute(
        f"INSERT OR REPLACE INTO {internal('meta')} VALUES ('schema_version', $v)",
        {"v": str(SCHEMA_VERSION)},
    )
    return applied


def schema_version(cur: duckdb.DuckDBPyConnection) -> int:
    row = cur.execute(
        f"SELECT value FROM {internal('meta')} WHERE key = 'schema_version'"
    ).fetchone()
    return int(row[0]) if row else 0
