"""The one DuckDB connection of the backend process, its cursors, its sandbox and its schema.

Facts this module is built on (measured on DuckDB 2.0): a connection is not for sharing between
threads, so every request takes its own `cursor()`; a second process cannot open the file, so the
backend is one process and waits a bounded time for a lock held by an old instance; the sandbox
settings must be applied in order and then locked.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from myapp.settings import Settings

# Lake mode (MYAPP_CATALOG_URL): the connection, sequences and views come from there.
from ..lake import catalog as lake_catalog
from ..lake import engine as lake
from .datasets import DatasetRecord, FileColumns, get_dataset, open_datasets
from .file_format import check_readable
from .lockfile import (
    LOCK_RETRY_INTERVAL_S,
    DatabaseLockedError,
    locked_message,
    warn_waiting,
)
from .schema import MIGRATIONS, SCHEMA_VERSION, apply_migrations
from .sql import INTERNAL_SCHEMA
from .storage import instance_config

log = logging.getLogger("myapp.backend.database")

# What services are handed inside a transaction; they name it without importing duckdb.
Cursor = duckdb.DuckDBPyConnection

# DuckDB tracks a query's progress only on a connection whose local `enable_progress_bar` is on,
# and nothing can turn it on once the configuration is locked. So a few cursors for user SQL are
# prepared before the lock and lent out one query at a time; when all are busy, a query runs on
# a plain cursor and simply reports no progress.
QUERY_CURSORS = 8

# Records kept by `Database.dataset`; past this many names they are all read again.
_MAX_RECORDS = 1024


class Database:
    """Owns the process's only DuckDB connection. Thread-safe through per-call cursors."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path: Path = settings.database_path
        self._conn: duckdb.DuckDBPyConnection | None = None
        # Serialises catalog-changing transactions (ingest swaps, renames, deletes) so they never
        # fail on DuckDB's optimistic write conflicts; readers are not blocked by it.
        self.write_lock = threading.RLock()
        # Counts committed write transactions: what was read before it last changed may be
        # out of date (the token lookups of auth/authenticator.py cache by it).
        self._write_generation = 0
        self._query_cursors: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
        self._follower: lake.ViewFollower | None = None
        # Each dataset file's columns, read once (datasets.FileColumns), and the records read
        # by the browsing routes, by name, with the write generation they were read at.
        self.file_columns = FileColumns(settings.datasets_dir)
        self._records: dict[str, tuple[int, DatasetRecord]] = {}
        # Loads of one dataset name run one after another (name_lock).
        self._name_locks: dict[str, threading.Lock] = {}
        self._name_locks_guard = threading.Lock()

    # -- lifecycle --------------------------------------------------------------------------
    def open(self) -> None:
        settings = self.settings
        for directory in (
            settings.data_dir,
            self.path.parent,
            settings.datasets_dir,
            settings.staging_dir,
            settings.export_dir,
            settings.spill_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        # The serving process checked the files before forking (server.py); other callers
        # (the CLI's offline commands) get the same one line instead of DuckDB's paragraph.
        if settings.lake_mode:
            config = instance_config(settings, settings.memory_limit, settings.spill_dir)
            self._conn = lake.connect(settings, config)
        else:
            check_readable([self.path])
            self._conn = self._connect_with_retry()
        # Only now, holding the file lock (an old backend may still be finishing during a
        # rolling handover), clear the leftovers of a crash: staging uploads and unfinished
        # exports are never resumed, and side instances' spill directories (storage.py) belong
        # to no one any more.
        side_spills = [p for p in settings.spill_dir.iterdir() if p.name.startswith("side-")]
        for directory in (settings.staging_dir, settings.export_dir):
            for child in directory.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        for spill in side_spills:
            shutil.rmtree(spill, ignore_errors=True)
        try:
            self._apply_sandbox(self._conn)
            with self.cursor() as cur:
                if settings.lake_mode:
                    with lake_catalog.migration_lock(settings):
                        apply_migrations(cur, lake_catalog.MIGRATIONS, in_postgres=True)
                        lake.drop_orphans(cur)
                    lake.sync_views(cur)
                    self._follower = lake.ViewFollower(self._conn)
                    self._follower.start()
                else:
                    apply_migrations(cur)
                    open_datasets(cur, settings)
        except BaseException:
            self._conn.close()
            self._conn = None
            lake.close()
            raise
        log.info(
            "database open: %s (schema version %s, %d migrations)",
            lake_catalog.describe(settings) + " (lake)" if settings.lake_mode else self.path,
            SCHEMA_VERSION,
            len(MIGRATIONS),
        )

    def _connect_with_retry(self) -> duckdb.DuckDBPyConnection:
        settings = self.settings
        config = instance_config(settings, settings.memory_limit, settings.spill_dir)
        deadline = time.monotonic() + settings.lock_timeout_s
        warned = False
        while True:
            try:
                return duckdb.connect(str(self.path), config=config)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise
                if time.monotonic() >= deadline:
                    raise DatabaseLockedError(
                        locked_message(self.path, settings.lock_timeout_s)
                    ) from None
                if not warned:
                    warn_waiting(self.path, settings.lock_timeout_s)
                    warned = True
                time.sleep(LOCK_RETRY_INTERVAL_S)

    def _apply_sandbox(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Limit file access to the app's own directories, then lock the configuration.

        Order matters: allowed_directories cannot be set once external access is off, and
        nothing can be set once the configuration is locked.
        """
        allowed = sorted(
            {
                str(self.settings.data_dir.resolve()) + "/",
                str(self.path.parent.resolve()) + "/",
            }
        )
        if self.settings.lake_mode:
            allowed += lake.allowed_directories(self.settings)
        conn.execute("SET allowed_directories = $dirs", {"dirs": allowed})
        conn.execute("SET enable_external_access = false")
        for _ in range(QUERY_CURSORS):
            cur = conn.cursor()
            cur.execute("SET enable_progress_bar = true")
            cur.execute("SET enable_progress_bar_print = false")
            cur.execute("SET progress_bar_time = 0")
            self._query_cursors.put(cur)
        conn.execute("SET lock_configuration = true")

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._follower is not None:
            self._follower.stop()
            self._follower = None
        while not self._query_cursors.empty():
            self._query_cursors.get_nowait().close()
        try:
            # A checkpoint folds the WAL into the file so a clean stop leaves no .wal behind.
            conn.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.warning("checkpoint at shutdown failed: %s", exc)
        finally:
            conn.close()
            lake.close()
        log.info("database closed: %s", self.path)

    # -- use --------------------------------------------------------------------------------
    @property
    def write_generation(self) -> int:
        """Changes whenever what was read before may be out of date. In the lake mode other
        backends write too and nothing here sees their commits, so it changes on every read:
        nothing is reused from an earlier read (a token revoked elsewhere is refused at once)."""
        return lake.MODE.tick() if lake.MODE.active else self._write_generation

    def dataset(self, cur: duckdb.DuckDBPyConnection, name: str) -> DatasetRecord:
        """The dataset's record (404 when there is none), read again only after a committed
        write: the catalog changes only in `transaction()`, which moves the generation (in the
        lake mode it moves on every read, so nothing is reused). For reads outside a
        transaction; the catalog's SELECT took a quarter of an unsorted page of 1M rows
        (py-spy). The generation is taken before the read: a write committed meanwhile makes
        the entry old at once."""
        generation = self.write_generation
        found = self._records.get(name)
        if found is not None and found[0] == generation:
            return found[1]
        record = get_dataset(cur, name, self.file_columns)
        if len(self._records) >= _MAX_RECORDS:
            self._records.clear()
        self._records[name] = (generation, record)
        return record

    def name_lock(self, name: str) -> threading.Lock:
        """The lock of one dataset name: an append builds on the dataset's current file, and
        two loads of one name at once would each miss the other's rows."""
        with self._name_locks_guard:
            return self._name_locks.setdefault(name, threading.Lock())

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            raise RuntimeError("the database is not open")
        return self._conn

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor of its own for one request or task; closed afterwards."""
        cur = self.connection.cursor()
        try:
            yield cur
        finally:
            cur.close()

    @contextmanager
    def query_cursor(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, bool]]:
        """A cursor for one user query and whether it reports progress (see QUERY_CURSORS).

        The borrower must leave it as it found it: no open transaction.
        """
        try:
            cur, pooled = self._query_cursors.get_nowait(), True
        except queue.Empty:
            cur, pooled = self.connection.cursor(), False
        try:
            yield cur, pooled
        finally:
            if pooled and self._conn is not None:
                self._query_cursors.put(cur)
            else:
                cur.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction under the write lock: committed on success, rolled back on error."""
        with self.write_lock, self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException as exc:
                cur.execute("ROLLBACK")
                if lake.MODE.active:
                    lake.after_transaction(cur, committed=False)
                    if lake_catalog.concurrent_change(exc):
                        raise lake_catalog.conflict() from None
                raise
            if not lake.MODE.active:
                cur.execute("COMMIT")
                self._write_generation += 1
                return
            try:
                lake_catalog.commit(cur)
            except BaseException:
                lake.after_transaction(cur, committed=False)
                raise
            lake.after_transaction(cur, committed=True)
            # The catalog may have changed: this backend's views follow at once.
            lake.sync_views(cur)

    def healthy(self) -> bool:
        if self._conn is None:
            return False
        try:
            with self.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM duckdb_tables() WHERE schema_name = $s",
                    {"s": INTERNAL_SCHEMA},
                ).fetchone()
            return True
        except duckdb.Error:
            return False
