"""The backend's DuckDB connection in the lake mode, and what the shared store code asks of it.

Shape (measured choices in docs/deployment/lake.md):

- The connection is an in-memory DuckDB. PostgreSQL's schema `myapp_internal` is attached
  under that very name with DuckDB's postgres extension, so every statement of the store
  (`myapp_internal.accounts`, ...) reaches PostgreSQL unchanged: one store implementation for
  both modes. Three things that extension cannot do are done here instead: sequences (created
  and advanced in PostgreSQL itself), `RETURNING`, and writing to two attached databases in one
  transaction.
- The DuckLake is attached read-write as `myapp_lake`. A dataset version is a lake table named
  by its file id (as the embedded mode names a file); the dataset's name is a view in the
  in-memory `main`, kept in step with the catalog by `sync_views`, because a transaction that
  writes the catalog in PostgreSQL cannot also create a view in another database.
- Loads still build their data in a side instance's local file (all their checks and reports
  unchanged); `publish` copies it into a new lake table in one DuckLake transaction before the
  catalog transaction points the dataset at it. Until then no one names that table.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path

import duckdb

from myapp.settings import Settings

from ..errors import AppError
from . import attach
from .catalog import INTERNAL, prepare_catalog

log = logging.getLogger("myapp.backend.lake")

# The datasets' tables in the lake live in its default schema.
LAKE_SCHEMA = "main"
# Lake tables that hold a dataset version are named by a prefix and the version's file id.
TABLE_PREFIX = "ds_"
# How often a backend brings its views in line with the catalog (ViewFollower).
FOLLOW_INTERVAL_S = 0.5
# Measured with DuckDB 1.4.4's postgres extension: each failed connection attempt keeps one
# of the pool's `pg_connection_limit` slots (64 by default) for ever, so 64 requests during an
# outage left the catalog unusable after PostgreSQL came back. The limit is raised far beyond
# what an outage uses (attach.PG_CONNECTION_LIMIT), and for BREAKER_S after each failure
# requests are answered 503 without trying (breaker.py); documented in docs/deployment/lake.md.
BREAKER_S = 1.0
# Columns of lake tables by file id (columns_by_name); a bound on this process's memory.
MAX_CACHED_COLUMNS = 10_000
_COLUMNS: dict[str, list[dict[str, str]]] = {}


class _Mode:
    """Which mode this process serves: set when the backend's database opens.

    One backend per process, so a process-wide switch is what the store's few mode-specific
    statements consult (they have no settings at hand)."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        # Every read gives a new value: see Database.write_generation.
        self._ticks = itertools.count(1)
        self.views_lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self.settings is not None

    def tick(self) -> int:
        return next(self._ticks)

    # While PostgreSQL is away, requests are answered 503 without trying it for
    # BREAKER_S after each failure (see catalog_unreachable): DuckDB's postgres extension
    # 1.4.4 never gives back a pool slot that a failed connection attempt took.
    _down_until = 0.0

    def note_unreachable(self) -> None:
        self._down_until = time.monotonic() + BREAKER_S

    def down(self) -> bool:
        return time.monotonic() < self._down_until


MODE = _Mode()


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def table_name(file_id: str) -> str:
    return TABLE_PREFIX + file_id


def table_of(file_id: str) -> str:
    """The quoted, qualified lake table of a dataset version."""
    return f"{quote(attach.ALIAS)}.{LAKE_SCHEMA}.{quote(table_name(file_id))}"


def connect(settings: Settings, config: dict) -> duckdb.DuckDBPyConnection:
    """The backend's connection: PostgreSQL's schema as `myapp_internal`, the lake as
    `myapp_lake`. Raises duckdb.Error when either cannot be attached."""
    prepare_catalog(settings)
    attach.use_password(settings)
    conn = duckdb.connect(":memory:", config=config)
    try:
        attach.load_extensions(conn)
        conn.execute(f"SET pg_connection_limit = {attach.PG_CONNECTION_LIMIT}")
        conn.execute(
            f"ATTACH {literal(attach.libpq(settings))} AS {quote(INTERNAL)} "
            f"(TYPE postgres, SCHEMA {literal(INTERNAL)})"
        )
        conn.execute(attach.attach_sql(settings, read_only=False))
    except BaseException:
        conn.close()
        raise
    MODE.settings = settings
    return conn


def close() -> None:
    MODE.settings = None


def allowed_directories(settings: Settings) -> list[str]:
    assert settings.lake_data_path is not None
    return [settings.lake_data_path]


# -- sequences ---------------------------------------------------------------------------------
def nextval_sql(sequence: str) -> str:
    """An SQL expression for the next value of `myapp_internal.<sequence>`.

    The postgres extension neither creates nor advances sequences; a scalar subquery over
    `postgres_query` asks PostgreSQL's own `nextval`, so the statements stay one statement."""
    inner = f"SELECT nextval({literal(INTERNAL + '.' + sequence)})"
    return f"(SELECT * FROM postgres_query({literal(INTERNAL)}, {literal(inner)}))"


# -- datasets ----------------------------------------------------------------------------------
def publish(cur: duckdb.DuckDBPyConnection, local_file: Path, file_id: str) -> None:
    """Copy a load's finished local file into the lake table of `file_id`: one DuckLake
    transaction, so the table is there whole or not at all."""
    source = f"myapp_publish_{file_id}"
    cur.execute(f"ATTACH {literal(str(local_file.resolve()))} AS {quote(source)} (READ_ONLY)")
    try:
        cur.execute(f"CREATE TABLE {table_of(file_id)} AS SELECT * FROM {quote(source)}.main.data")
    finally:
        cur.execute(f"DETACH {quote(source)}")


def attach_base(
    cur: duckdb.DuckDBPyConnection, settings: Settings, file_id: str, alias: str
) -> str | None:
    """In a load's side instance: attach the lake read-only as `alias` and return the table
    of `file_id` in it (an append reads the dataset's rows from there); None in the embedded
    mode."""
    if not MODE.active:
        return None
    attach.attach(cur, settings, read_only=True, alias=alias)
    return f"{quote(alias)}.{LAKE_SCHEMA}.{quote(table_name(file_id))}"


def drop_table(cur: duckdb.DuckDBPyConnection, file_id: str) -> None:
    """A version's lake table that no dataset or history names (a load that was not swapped
    in). Its Parquet files go when DuckLake next cleans up old files."""
    cur.execute(f"DROP TABLE IF EXISTS {table_of(file_id)}")


# Lake tables to drop once the catalog transaction that stopped naming them commits (a deleted
# dataset's versions); per thread, as each transaction runs on one.
_pending = threading.local()


def drop_after_commit(file_ids: list[str]) -> None:
    _pending.__dict__.setdefault("ids", []).extend(file_ids)


def after_transaction(cur: duckdb.DuckDBPyConnection, *, committed: bool) -> None:
    ids, _pending.ids = _pending.__dict__.get("ids", []), []
    if not committed:
        return
    for file_id in ids:
        try:
            drop_table(cur, file_id)
        except duckdb.Error as exc:
            log.warning("could not drop lake table of %s: %s", file_id, exc)


# A lake table no dataset or history names, older than this, was left by a backend that died
# between publishing a load and committing it; younger ones may be a load about to commit.
ORPHAN_AGE_S = 3600


def drop_orphans(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop the lake tables of loads that never reached the catalog (a backend killed between
    the two transactions); returns their names."""
    meta = quote(f"__ducklake_metadata_{attach.ALIAS}")
    rows = cur.execute(
        f"SELECT t.table_name FROM {meta}.{quote(attach.METADATA_SCHEMA)}.ducklake_table t "
        f"JOIN {meta}.{quote(attach.METADATA_SCHEMA)}.ducklake_snapshot s "
        "ON s.snapshot_id = t.begin_snapshot "
        "WHERE t.end_snapshot IS NULL AND starts_with(t.table_name, $prefix) "
        "AND s.snapshot_time < now() - to_seconds($age)",
        {"prefix": TABLE_PREFIX, "age": ORPHAN_AGE_S},
    ).fetchall()
    referenced = {
        table_name(row[0])
        for row in cur.execute(
            f"SELECT file_id FROM {quote(INTERNAL)}.datasets WHERE file_id IS NOT NULL "
            f"UNION SELECT file_id FROM {quote(INTERNAL)}.dataset_history"
        ).fetchall()
    }
    dropped = []
    for (name,) in rows:
        if name in referenced:
            continue
        log.info("dropping lake table %s: no dataset or version names it", name)
        cur.execute(f"DROP TABLE IF EXISTS {quote(attach.ALIAS)}.{LAKE_SCHEMA}.{quote(name)}")
        dropped.append(name)
    return dropped


def in_history(cur: duckdb.DuckDBPyConnection, file_id: str) -> bool:
    row = cur.execute(
        f"SELECT count(*) FROM {quote(INTERNAL)}.dataset_history WHERE file_id = $f",
        {"f": file_id},
    ).fetchone()
    return bool(row and row[0])


def columns_by_name(
    cur: duckdb.DuckDBPyConnection, names: list[str] | None
) -> dict[str, list[dict[str, str]]]:
    """Each dataset's columns, from its current lake table (the catalog names it).

    A version's table never changes, so its columns are read once per backend (DESCRIBE) and
    kept: `duckdb_columns()` would list every table of PostgreSQL and of the lake (about 20 ms
    here) to answer for a few."""
    sql = f"SELECT name, file_id FROM {quote(INTERNAL)}.datasets WHERE file_id IS NOT NULL"
    params: dict = {}
    if names is not None:
        sql += " AND list_contains($names, name)"
        params["names"] = names
    out: dict[str, list[dict[str, str]]] = {}
    for name, file_id in cur.execute(sql, params).fetchall():
        columns = _COLUMNS.get(file_id)
        if columns is None:
            try:
                described = cur.execute(f"DESCRIBE {table_of(file_id)}").fetchall()
            except duckdb.CatalogException:
                continue  # replaced and cleaned up since the catalog was read
            columns = [{"name": row[0], "type": row[1]} for row in described]
            if len(_COLUMNS) > MAX_CACHED_COLUMNS:
                _COLUMNS.clear()
            _COLUMNS[file_id] = columns
        out[name] = columns
    return out


def view_sql(name: str, file_id: str) -> str:
    return f"CREATE OR REPLACE VIEW main.{quote(name)} AS SELECT * FROM {table_of(file_id)}"


def sync_views(cur: duckdb.DuckDBPyConnection) -> None:
    """Make the in-memory views in `main` match the catalog in PostgreSQL: another backend may
    have created, replaced, renamed or deleted datasets since."""
    with MODE.views_lock:
        rows = cur.execute(
            f"SELECT name, file_id FROM {quote(INTERNAL)}.datasets WHERE file_id IS NOT NULL"
        ).fetchall()
        wanted = dict(rows)
        present = dict(
            cur.execute(
                "SELECT view_name, sql FROM duckdb_views() WHERE database_name = "
                "current_database() AND schema_name = 'main' AND NOT internal AND NOT temporary"
            ).fetchall()
        )
        for name in present.keys() - wanted.keys():
            cur.execute(f"DROP VIEW IF EXISTS main.{quote(name)}")
        for name, file_id in wanted.items():
            if quote(table_name(file_id)) in (present.get(name) or ""):
                continue
            try:
                cur.execute(view_sql(name, file_id))
            except duckdb.CatalogException as exc:
                # Its table is gone (replaced and cleaned up meanwhile): the next sync sees
                # the catalog's newer answer.
                log.warning("dataset %s: its lake table is missing: %s", name, exc)


class CatalogTask:
    """A thread that does `tick()` every `interval_s` while the catalog answers: paused while
    the lake mode's breaker is open, a failure logged once until it answers again."""

    interval_s = 1.0
    # What the log says the task could not do, and that it does again.
    failing_words = "reach the catalog"
    recovered_words = "the catalog answers again"

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.interval_s):
            if MODE.down():
                continue
            try:
                self.tick()
                if failing:
                    log.info("%s", self.recovered_words)
                failing = False
            except duckdb.Error as exc:
                if catalog_unreachable(exc):
                    MODE.note_unreachable()
                if not failing:
                    log.warning("cannot %s: %s", self.failing_words, " ".join(str(exc).split()))
                failing = True


class ViewFollower(CatalogTask):
    """Keeps this backend's views in step with what other backends commit to the catalog.

    Pages and the API read the catalog in PostgreSQL directly and see another backend's
    change at once; the views matter to user SQL, whose gate admits only names it finds there,
    so a dataset created on another backend can be queried here within FOLLOW_INTERVAL_S."""

    interval_s = FOLLOW_INTERVAL_S
    failing_words = "follow the catalog"
    recovered_words = "the catalog answers again; views follow it"

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        super().__init__("lake-views")
        self._conn = conn

    def tick(self) -> None:
        cur = self._conn.cursor()
        try:
            sync_views(cur)
        finally:
            cur.close()


# What DuckDB's postgres extension says when PostgreSQL cannot be reached or went away.
_UNREACHABLE = (
    "unable to connect to postgres",
    "failed to get connection from postgresconnectionpool",
    "server closed the connection",
    "terminated abnormally",
    "connection refused",
    "could not connect to server",
    "terminating connection",
    "no connection to the server",
    "connection to server",
    "the database system is starting up",
    "the database system is shutting down",
)


def catalog_unreachable(exc: BaseException) -> bool:
    """A failure that is PostgreSQL being away, not the request: answered 503 while it lasts;
    the extension reconnects by itself once PostgreSQL answers again."""
    if not MODE.active or not isinstance(exc, duckdb.Error):
        return False
    return unreachable_text(str(exc))


# DuckLake's own words for a catalog transaction that PostgreSQL ended under it (its
# connection died mid-transaction): seen on the first read after PostgreSQL went away.
_ABORTED_UNDER_DUCKLAKE = ("ducklake", "current transaction is aborted")


def unreachable_text(message: str) -> bool:
    """The same, from a message only (a worker's error crosses as text)."""
    text = message.lower()
    if all(part in text for part in _ABORTED_UNDER_DUCKLAKE):
        return True
    return any(marker in text for marker in _UNREACHABLE)


def unavailable() -> AppError:
    from ..errors import CATALOG_UNAVAILABLE_MESSAGE

    return AppError(
        CATALOG_UNAVAILABLE_MESSAGE,
        code="catalog_unavailable",
        status_code=503,
        headers={"Retry-After": "1"},
    )
