"""Where dataset tables live: one DuckDB file per dataset version, written once, then only read.

Why files of their own: DuckDB's buffer pool keeps the blocks it writes and reads, up to its
memory limit: a 1 GB upload loaded by the backend's main instance peaked at 862 MB above idle
(`bench/ingest.py`), in a side instance with 256MB at 261 MB. Loads therefore run in
short-lived *side instances* with a small memory limit (`MYAPP_BULK_MEMORY_LIMIT`) that give
all their memory back when closed, and user SQL and exports run in worker processes
(store/usersql/workers.py) that attach the same files. No instance may share a file another
instance writes, so:

- a load writes a new file `datasets/<file_id>.duckdb` holding one table `data`, checkpoints and
  closes it; nothing writes that file again;
- the main instance attaches it read-only as `myapp_ds_<file_id>` and a view in `main` carries
  the dataset's name, so user SQL says `FROM sales` as before;
- replace and append write a new file; the swap is one transaction on the main database (view
  and catalog), and the old file is deleted once no export reads it any more;
- the query and export workers attach the files read-only too, each in its own process.

The catalog (`myapp_internal.datasets.file_id`) is the truth: at start every catalogued file
is attached and its view recreated, and files no dataset names (a load a crash cut short, an
old version whose deletion was interrupted) are deleted.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from myapp.settings import Settings

from ..errors import AppError
from ..lake import engine as lake
from .file_format import STORAGE_VERSION
from .sql import quote_ident

log = logging.getLogger("myapp.backend.storage")

FILE_SUFFIX = ".duckdb"
# Attached databases are named with this prefix; user SQL can name only `main` (the query gate).
ALIAS_PREFIX = "myapp_ds_"
# The one table in each dataset file.
TABLE = "data"

# Side instances at once (loads): each may use MYAPP_BULK_MEMORY_LIMIT, so this bounds what
# they add to the backend (4 x 256MB by default) however many clients upload at the same
# time; the others wait their turn.
SIDE_INSTANCE_SLOTS = 4
_slots = threading.BoundedSemaphore(SIDE_INSTANCE_SLOTS)
# Side instances in use and callers waiting for a slot, for /api/metrics.
_slot_counts = {"in_use": 0, "waiting": 0}
_slot_counts_lock = threading.Lock()


def side_instance_counts() -> tuple[int, int]:
    """(in use, waiting) side instances right now."""
    with _slot_counts_lock:
        return _slot_counts["in_use"], _slot_counts["waiting"]


def _count_slot(key: str, delta: int) -> None:
    with _slot_counts_lock:
        _slot_counts[key] += delta


def new_file_id() -> str:
    return uuid.uuid4().hex


def alias(file_id: str) -> str:
    return ALIAS_PREFIX + file_id


def table_of(file_id: str) -> str:
    """The quoted, fully qualified table of a dataset file attached under its alias (in the
    lake mode: the lake table of that version)."""
    if lake.MODE.active:
        return lake.table_of(file_id)
    return f"{quote_ident(alias(file_id))}.main.{quote_ident(TABLE)}"


def path_of(settings: Settings, file_id: str) -> Path:
    return settings.datasets_dir / f"{file_id}{FILE_SUFFIX}"


def sql_literal(path: Path) -> str:
    """A path of ours (never user text) as a SQL string literal."""
    return "'" + str(path.resolve()).replace("'", "''") + "'"


def remove_file(settings: Settings, file_id: str) -> None:
    path = path_of(settings, file_id)
    # The version's Parquet copy (parquet_files.py) goes with it.
    for leftover in (path, path.with_name(path.name + ".wal"), path.with_suffix(".parquet")):
        try:
            leftover.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove dataset file %s: %s", leftover, exc)


class FilePins:
    """Which dataset files an export is reading, so a replaced version is deleted only after.

    Queries on the main instance need no pin: a detached file stays readable to the queries
    that already hold it, and Linux keeps an unlinked file's data until its last handle closes.
    An export opens the file by path in another instance, so the path must still exist then.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count: Counter[str] = Counter()
        self._retired: dict[str, Settings] = {}

    def pin(self, file_id: str) -> bool:
        """Hold `file_id`; False when it was already replaced (read the catalog again)."""
        with self._lock:
            if file_id in self._retired:
                return False
            self._count[file_id] += 1
            return True

    def unpin(self, file_id: str) -> None:
        with self._lock:
            self._count[file_id] -= 1
            if self._count[file_id] > 0:
                return
            del self._count[file_id]
            settings = self._retired.pop(file_id, None)
        if settings is not None:
            remove_file(settings, file_id)

    def retire(self, settings: Settings, file_id: str) -> None:
        """`file_id` is no dataset's any more: delete it now, or when its last reader is done."""
        with self._lock:
            if self._count[file_id] > 0:
                self._retired[file_id] = settings
                return
            self._count.pop(file_id, None)
        remove_file(settings, file_id)

    def busy(self) -> set[str]:
        with self._lock:
            return {f for f, n in self._count.items() if n > 0} | set(self._retired)


PINS = FilePins()


def instance_config(
    settings: Settings, memory_limit: str, spill_dir: Path
) -> dict[str, str | int | bool]:
    """DuckDB's configuration for every instance of the backend, the main one and side ones."""
    config: dict[str, str | int | bool] = {
        "memory_limit": memory_limit,
        "temp_directory": str(spill_dir.resolve()),
        "max_temp_directory_size": settings.temp_dir_limit,
        # Users' SQL must not install or load code; nothing can be downloaded here anyway.
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        # SQL must not reach Python objects of this process by name (replacement scans);
        # the query gate refuses unknown names too, this closes the door underneath it.
        "python_enable_replacements": False,
        # Files this instance creates open on every supported DuckDB (file_format.py).
        "storage_compatibility_version": STORAGE_VERSION,
    }
    if settings.threads:
        config["threads"] = settings.threads
    return config


@contextmanager
def side_instance(
    settings: Settings,
    path: Path | None = None,
    *,
    progress: bool = False,
    wait_s: float = 600.0,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived DuckDB instance with the bulk memory limit, closed afterwards.

    `path` None means in-memory (exports); otherwise the dataset file being written. Waits up
    to `wait_s` for one of the SIDE_INSTANCE_SLOTS, then answers 503. Each instance spills into
    a directory of its own: DuckDB names its spill files per instance only, so two instances
    sharing one directory would overwrite each other's.
    """
    _count_slot("waiting", 1)
    try:
        acquired = _slots.acquire(timeout=wait_s)
    finally:
        _count_slot("waiting", -1)
    if not acquired:
        raise AppError(
            "The server is busy with other uploads and exports; try again in a minute.",
            code="busy",
            status_code=503,
        )
    _count_slot("in_use", 1)
    try:
        with _side_instance(settings, path, progress) as conn:
            yield conn
    finally:
        _count_slot("in_use", -1)
        _slots.release()


@contextmanager
def _side_instance(
    settings: Settings, path: Path | None, progress: bool
) -> Iterator[duckdb.DuckDBPyConnection]:
    spill = settings.spill_dir / f"side-{uuid.uuid4().hex}"
    spill.mkdir(parents=True, exist_ok=True)
    config = instance_config(settings, settings.bulk_memory_limit, spill)
    try:
        conn = duckdb.connect(str(path) if path is not None else ":memory:", config=config)
        try:
            # A Python client prints a progress bar for long statements by default (a server's
            # output is its log); an export's progress is read with query_progress() instead.
            conn.execute(f"SET enable_progress_bar = {'true' if progress else 'false'}")
            conn.execute("SET enable_progress_bar_print = false")
            if progress:
                conn.execute("SET progress_bar_time = 0")
            yield conn
        finally:
            conn.close()
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def attach(cur: duckdb.DuckDBPyConnection, settings: Settings, file_id: str) -> None:
    """Attach a dataset file read-only under its alias.

    Plain ATTACH, never `ATTACH IF NOT EXISTS`: with the file attached in another instance of
    the process, DuckDB 2.0.1's IF NOT EXISTS path was seen to spin forever after a few dozen
    exports (reproduced outside myapp); every caller attaches a file new to its instance.

    In the lake mode the file is a load's local result: it is copied into the lake table of
    `file_id` and removed, and the lake table is what the dataset then reads.
    """
    if lake.MODE.active:
        try:
            lake.publish(cur, path_of(settings, file_id), file_id)
        finally:
            remove_file(settings, file_id)
        return
    cur.execute(
        f"ATTACH {sql_literal(path_of(settings, file_id))} "
        f"AS {quote_ident(alias(file_id))} (READ_ONLY)"
    )


def detach(cur: duckdb.DuckDBPyConnection, file_id: str) -> None:
    if lake.MODE.active:
        # A version the history names stays readable; one it does not was never a dataset's.
        if not lake.in_history(cur, file_id):
            lake.drop_table(cur, file_id)
        return
    cur.execute(f"DETACH DATABASE IF EXISTS {quote_ident(alias(file_id))}")


def view_sql(name: str, file_id: str) -> str:
    return f"CREATE OR REPLACE VIEW main.{quote_ident(name)} AS SELECT * FROM {table_of(file_id)}"


def set_view(cur: duckdb.DuckDBPyConnection, name: str, file_id: str) -> None:
    """Point the dataset's view at its data, inside the catalog's transaction. In the lake
    mode that transaction writes PostgreSQL, which excludes writing the in-memory views too:
    they follow the catalog once it is committed (Database.transaction)."""
    if not lake.MODE.active:
        cur.execute(view_sql(name, file_id))


def rename_view(cur: duckdb.DuckDBPyConnection, old: str, new: str) -> None:
    if not lake.MODE.active:
        cur.execute(f"ALTER VIEW main.{quote_ident(old)} RENAME TO {quote_ident(new)}")


def drop_view(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    if not lake.MODE.active:
        cur.execute(f"DROP VIEW IF EXISTS main.{quote_ident(name)}")


def unreferenced_files(settings: Settings, referenced: set[str]) -> list[Path]:
    """Files in the datasets dir that belong to no dataset and no export in progress."""
    keep = referenced | PINS.busy()
    out = []
    for path in settings.datasets_dir.iterdir():
        stem = path.name.split(".", 1)[0]
        if stem not in keep:
            out.append(path)
    return out
