"""The lake mode's PostgreSQL catalog: reaching it at start, and what DuckDB cannot create.

psycopg (the `lake` extra) checks the catalog at start and creates what DuckDB's postgres
extension cannot: the schema before it is attached, the sequences, and a lock that lets one
backend at a time apply migrations. Everything else, the store's own statements included,
reaches PostgreSQL through DuckDB (engine.py; the measurements behind that choice are in
docs/deployment/lake.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

import duckdb

from myapp.settings import Settings

from ..errors import Conflict
from ..store import schema
from ..store.schema import Migration

# A backend that cannot reach its catalog at start says so instead of waiting on a dead host.
CONNECT_TIMEOUT_S = 5
# The PostgreSQL schema of myapp's own tables, attached in DuckDB under the same name so the
# store's `myapp_internal.<table>` reaches it unchanged.
INTERNAL = "myapp_internal"
# The store's sequences (schema.py creates them as DuckDB sequences in the embedded mode).
SEQUENCES = ("audit_seq", "dataset_version_seq", "account_seq")
# pg_advisory_lock key held while one backend applies migrations ("myapp" in ASCII).
MIGRATION_LOCK = 0x6D79617070


class CatalogUnavailable(RuntimeError):
    """The catalog cannot be used; the message is one line for the person starting myapp."""


def describe(settings: Settings) -> str:
    """host:port/dbname of the catalog: what a message may show (never the password)."""
    assert settings.catalog_url is not None
    parts = urlsplit(settings.catalog_url.get_secret_value())
    return f"{parts.hostname}:{parts.port or 5432}/{unquote(parts.path.lstrip('/'))}"


def check_catalog(settings: Settings) -> str:
    """Connect, authenticate and ask the server's version; raise CatalogUnavailable if not."""
    try:
        import psycopg
    except ImportError:
        raise CatalogUnavailable(
            "MYAPP_CATALOG_URL: the lake mode needs the PostgreSQL driver psycopg: "
            "pip install 'myapp[lake]'"
        ) from None
    assert settings.catalog_url is not None
    try:
        with psycopg.connect(
            settings.catalog_url.get_secret_value(), connect_timeout=CONNECT_TIMEOUT_S
        ) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CatalogUnavailable(
            f"MYAPP_CATALOG_URL: cannot reach the PostgreSQL catalog at {describe(settings)}: "
            f"{reason}"
        ) from None
    return str(row[0]) if row else "unknown"


def check_lake(settings: Settings) -> None:
    """DuckDB's ducklake and postgres extensions load here and the lake attaches (made on the
    first start); raise CatalogUnavailable with one line if not, e.g. a data path other than
    the one the lake was made with."""
    from .attach import EXTENSIONS, attach, load_extensions

    conn = duckdb.connect()
    try:
        try:
            load_extensions(conn)
        except duckdb.Error as exc:
            raise CatalogUnavailable(
                f"MYAPP_CATALOG_URL: the lake mode needs DuckDB's {' and '.join(EXTENSIONS)} "
                f"extensions (DuckDB {duckdb.__version__}): {_one_line(exc)}"
            ) from None
        try:
            prepare_catalog(settings)
            # Backends starting together: one makes the lake, the others then find it.
            with migration_lock(settings):
                attach(conn, settings, read_only=False)
        except duckdb.Error as exc:
            raise CatalogUnavailable(
                f"MYAPP_LAKE_DATA_PATH: cannot open the lake in the catalog at "
                f"{describe(settings)}: {_one_line(exc)}"
            ) from None
    finally:
        conn.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _connect(settings: Settings):  # type: ignore[no-untyped-def]
    import psycopg

    assert settings.catalog_url is not None
    return psycopg.connect(
        settings.catalog_url.get_secret_value(),
        connect_timeout=CONNECT_TIMEOUT_S,
        autocommit=True,
    )


def prepare_catalog(settings: Settings) -> None:
    """The schema and sequences, idempotently (several backends may start at once)."""
    with _connect(settings) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {INTERNAL}")
        for name in SEQUENCES:
            conn.execute(f"CREATE SEQUENCE IF NOT EXISTS {INTERNAL}.{name}")


@contextlib.contextmanager
def migration_lock(settings: Settings) -> Iterator[None]:
    """Held while migrations run: two backends starting together apply them once."""
    with _connect(settings) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


# The lake mode's own tables, applied after the store's (schema.py) in the lake mode only.
HISTORY: list[Migration] = [
    Migration(
        "lake-0001-dataset-history",
        (
            # One row per change of a dataset: the version it made and the lake table holding
            # that version's rows, kept so older versions stay readable and restorable.
            f"CREATE TABLE IF NOT EXISTS {INTERNAL}.dataset_history ("
            "name VARCHAR NOT NULL, version BIGINT NOT NULL, file_id VARCHAR NOT NULL, "
            '"at" TIMESTAMPTZ NOT NULL, actor VARCHAR, action VARCHAR NOT NULL, '
            "row_count BIGINT NOT NULL, PRIMARY KEY (name, version))",
        ),
    ),
    Migration(
        "lake-0002-login-failures",
        # Failed sign-ins of the last window, counted by every backend (lake/limiter.py).
        (
            f"CREATE TABLE IF NOT EXISTS {INTERNAL}.login_failures "
            '("key" VARCHAR NOT NULL, "at" DOUBLE NOT NULL)',
        ),
    ),
    Migration(
        "lake-0003-query-runs",
        # Runs of user SQL as their backend last published them (lake/runs.py).
        (
            f"CREATE TABLE IF NOT EXISTS {INTERNAL}.query_runs (id VARCHAR PRIMARY KEY, "
            "backend VARCHAR NOT NULL, owner VARCHAR, caller VARCHAR, state VARCHAR NOT NULL, "
            "status VARCHAR NOT NULL, cancel BOOLEAN NOT NULL, updated_at DOUBLE NOT NULL)",
        ),
    ),
]
MIGRATIONS: list[Migration] = [*schema.MIGRATIONS, *HISTORY]


def concurrent_change(exc: BaseException) -> bool:
    """PostgreSQL refused a statement or a commit because another backend changed the same
    rows first (the postgres extension's transactions are REPEATABLE READ)."""
    text = str(exc)
    return isinstance(exc, duckdb.Error) and (
        "could not serialize access" in text or "deadlock detected" in text
    )


def conflict() -> Conflict:
    return Conflict(
        "Someone else changed the same thing at the same moment; nothing was changed by this "
        "request. Try again.",
        code="concurrent_change",
    )


def commit(cur: duckdb.DuckDBPyConnection) -> None:
    """COMMIT a transaction that wrote the catalog; a conflict with another backend's commit
    is a 409 to retry, never a lost change."""
    try:
        cur.execute("COMMIT")
    except duckdb.Error as exc:
        if concurrent_change(exc):
            raise conflict() from None
        raise


def advance_sequences(settings: Settings, highest: dict[str, int]) -> None:
    """Make each sequence continue after `highest[name]` (an import copied ids up to it)."""
    with _connect(settings) as conn:
        for name, value in highest.items():
            assert name in SEQUENCES
            if value:
                conn.execute(f"SELECT setval('{INTERNAL}.{name}', %s)", (int(value),))
