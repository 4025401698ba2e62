"""The dataset catalog: which datasets exist, where their data lives, and their names.

A dataset is a view in schema `main` with the dataset's name over the table of its own DuckDB
file (see storage.py); the catalog (an internal table) records that file, its source file, row
count and a version that grows with every change. Only this package changes datasets, always
together with the catalog in one transaction, so the catalog's row counts are exact.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from myapp.contract import names as name_rules
from myapp.settings import Settings

from ..errors import AppError, Conflict, NotFound
from ..lake import engine as lake
from ..lake import history
from . import storage
from .sql import internal, nextval, qualified, quote_ident

log = logging.getLogger("myapp.backend.datasets")

DATASET_SCHEMA = "main"

# Staging tables of uploads in progress lived in `main` under this prefix before datasets had
# files of their own; the query gate still refuses the prefix, and names never start with `_`.
STAGING_PREFIX = "__myapp_staging_"


class InvalidName(AppError):
    status_code, code = 400, "invalid_name"


@dataclass(frozen=True)
class DatasetRecord:
    name: str
    row_count: int
    version: int
    source_filename: str | None
    source_format: str
    source_compression: str | None
    source_bytes: int
    created_at: datetime
    updated_at: datetime
    columns: list[dict[str, str]]
    # Every dataset has its data file once the backend is open (open_datasets).
    file_id: str
    source_encoding: str | None = None
    source_sheet: str | None = None

    @property
    def table(self) -> str:
        """The table holding the data, quoted and qualified (it has a rowid; the view not)."""
        return storage.table_of(self.file_id)

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "row_count": self.row_count,
            "columns": self.columns,
            "source": {
                "filename": self.source_filename,
                "format": self.source_format,
                "compression": self.source_compression,
                "bytes": self.source_bytes,
                "encoding": self.source_encoding,
                "sheet": self.source_sheet,
            },
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "version": self.version,
        }


def normalise_name(text: str) -> str:
    """A safe dataset name from any text (contract/names.py); InvalidName (400) when nothing
    usable is left (e.g. only punctuation)."""
    try:
        return name_rules.normalise_name(text)
    except name_rules.InvalidName as exc:
        raise InvalidName(str(exc), detail={"name": str(text)[:200]}) from None


def name_from_filename(filename: str) -> str:
    """Dataset name for an uploaded file: its base name without directories or extensions."""
    return normalise_name(name_rules.file_stem(filename))


_SELECT_RECORDS = (
    "SELECT name, row_count, version, source_filename, source_format, source_compression, "
    "source_bytes, created_at, updated_at, file_id, source_encoding, source_sheet "
    f"FROM {internal('datasets')}"
)


def _columns_by_table(
    cur: duckdb.DuckDBPyConnection, names: list[str] | None
) -> dict[str, list[dict[str, str]]]:
    if lake.MODE.active:
        # Read from the lake tables: the views follow the catalog only after its commit.
        return lake.columns_by_name(cur, names)
    sql = (
        "SELECT table_name, column_name, data_type FROM duckdb_columns() "
        "WHERE schema_name = $schema AND database_name = current_database()"
    )
    params: dict[str, Any] = {"schema": DATASET_SCHEMA}
    if names is not None:
        sql += " AND list_contains($names, table_name)"
        params["names"] = names
    sql += " ORDER BY table_name, column_index"
    out: dict[str, list[dict[str, str]]] = {}
    for table, column, dtype in cur.execute(sql, params).fetchall():
        out.setdefault(table, []).append({"name": column, "type": dtype})
    return out


def _record(row: tuple, columns: list[dict[str, str]]) -> DatasetRecord:
    return DatasetRecord(
        name=row[0],
        row_count=row[1],
        version=row[2],
        source_filename=row[3],
        source_format=row[4],
        source_compression=row[5],
        source_bytes=row[6],
        created_at=row[7],
        updated_at=row[8],
        columns=columns,
        file_id=row[9],
        source_encoding=row[10],
        source_sheet=row[11],
    )


def list_datasets(cur: duckdb.DuckDBPyConnection) -> list[DatasetRecord]:
    rows = cur.execute(_SELECT_RECORDS + " ORDER BY name").fetchall()
    columns = _columns_by_table(cur, None)
    return [_record(row, columns.get(row[0], [])) for row in rows]


def data_files(cur: duckdb.DuckDBPyConnection, names: list[str]) -> dict[str, str | None]:
    """The data file of each of these datasets that exists (None: not moved into one yet)."""
    rows = cur.execute(
        f"SELECT name, file_id FROM {internal('datasets')} WHERE list_contains($names, name)",
        {"names": names},
    ).fetchall()
    return dict(rows)


def dataset_names(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of all datasets (each a table in schema `main`)."""
    return [r[0] for r in cur.execute(f"SELECT name FROM {internal('datasets')}").fetchall()]


class FileColumns:
    """The columns of each dataset file, read once per file.

    A data file is written once and never changed (a replace or append writes a new one), so
    its columns stay what they were; the key has the file's mtime too, so a file put back in
    place under the same name is read again. Reading them from DuckDB's catalog took more of a
    page of rows than the page's query (py-spy, unsorted pages of 1M rows: 17% in
    `_columns_by_table`). Kept on the Database that owns the connection, bounded.
    """

    MAX_ENTRIES = 1024

    def __init__(self, datasets_dir: Path) -> None:
        self.datasets_dir = datasets_dir
        self._entries: dict[tuple[str, int], list[dict[str, str]]] = {}
        self._lock = threading.Lock()

    def _key(self, file_id: str) -> tuple[str, int] | None:
        path = self.datasets_dir / f"{file_id}{storage.FILE_SUFFIX}"
        try:
            return str(path), os.stat(path).st_mtime_ns
        except OSError:
            return None

    def columns(
        self, cur: duckdb.DuckDBPyConnection, name: str, file_id: str
    ) -> list[dict[str, str]]:
        key = None if lake.MODE.active else self._key(file_id)
        if key is not None:
            with self._lock:
                found = self._entries.get(key)
            if found is not None:
                return [dict(c) for c in found]
        columns = _columns_by_table(cur, [name]).get(name, [])
        if key is not None and columns:
            with self._lock:
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = [dict(c) for c in columns]
        return columns


def find_dataset(
    cur: duckdb.DuckDBPyConnection, name: str, file_columns: FileColumns | None = None
) -> DatasetRecord | None:
    row = cur.execute(_SELECT_RECORDS + " WHERE name = $name", {"name": name}).fetchone()
    if row is None:
        return None
    if file_columns is not None and row[9]:
        return _record(row, file_columns.columns(cur, name, row[9]))
    return _record(row, _columns_by_table(cur, [name]).get(name, []))


def lookup_name(name: str) -> str:
    """The catalog name a client means: names are compared in their normalised form."""
    try:
        return normalise_name(name)
    except InvalidName:
        raise _not_found(name) from None


def get_dataset(
    cur: duckdb.DuckDBPyConnection, name: str, file_columns: FileColumns | None = None
) -> DatasetRecord:
    record = find_dataset(cur, lookup_name(name), file_columns)
    if record is None:
        raise _not_found(name)
    return record


def _not_found(name: str) -> NotFound:
    return NotFound(
        f"There is no dataset named {name[:80]!r}.",
        code="dataset_not_found",
        detail={"name": name[:200]},
    )


def next_version(cur: duckdb.DuckDBPyConnection) -> int:
    return cur.execute(f"SELECT {nextval('dataset_version_seq')}").fetchone()[0]


def insert_record(
    cur: duckdb.DuckDBPyConnection,
    *,
    name: str,
    row_count: int,
    source: dict[str, Any],
    actor: str | None,
    file_id: str,
) -> None:
    now = datetime.now(UTC)
    storage.set_view(cur, name, file_id)
    cur.execute(
        f"INSERT INTO {internal('datasets')} (name, row_count, version, source_filename, "
        "source_format, source_compression, source_bytes, created_at, updated_at, created_by, "
        "updated_by, file_id, source_encoding, source_sheet) VALUES ($name, $rows, $version, "
        "$filename, $format, $compression, $bytes, $now, $now, $actor, $actor, $file_id, "
        "$encoding, $sheet)",
        {
            "file_id": file_id,
            "name": name,
            "rows": row_count,
            "version": next_version(cur),
            "filename": source.get("filename"),
            "format": source["format"],
            "compression": source.get("compression"),
            "bytes": source["bytes"],
            "encoding": source.get("encoding"),
            "sheet": source.get("sheet"),
            "now": now,
            "actor": actor,
        },
    )


def update_record(
    cur: duckdb.DuckDBPyConnection,
    *,
    name: str,
    row_count: int,
    source: dict[str, Any] | None,
    actor: str | None,
    file_id: str,
) -> None:
    """A changed dataset: its new data file, row count and version, and the file it was last
    loaded from; the view follows the data file."""
    storage.set_view(cur, name, file_id)
    params: dict[str, Any] = {
        "name": name,
        "rows": row_count,
        "version": next_version(cur),
        "now": datetime.now(UTC),
        "actor": actor,
        "file_id": file_id,
    }
    sets = (
        "row_count = $rows, version = $version, updated_at = $now, updated_by = $actor, "
        "file_id = $file_id"
    )
    if source is not None:
        sets += (
            ", source_filename = $filename, source_format = $format, "
            "source_compression = $compression, source_bytes = $bytes, "
            "source_encoding = $encoding, source_sheet = $sheet"
        )
        params.update(
            filename=source.get("filename"),
            format=source["format"],
            compression=source.get("compression"),
            bytes=source["bytes"],
            encoding=source.get("encoding"),
            sheet=source.get("sheet"),
        )
    cur.execute(f"UPDATE {internal('datasets')} SET {sets} WHERE name = $name", params)


def drop_profiles(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    cur.execute(f"DELETE FROM {internal('dataset_profiles')} WHERE name = $name", {"name": name})


def rename_dataset(
    cur: duckdb.DuckDBPyConnection, old: str, new_text: str, actor: str | None
) -> tuple[DatasetRecord, str]:
    """Rename inside the caller's transaction; returns the renamed record and the old name."""
    record = get_dataset(cur, old)
    new = normalise_name(new_text)
    if new == record.name:
        return record, record.name
    if find_dataset(cur, new) is not None or _table_exists(cur, new):
        raise Conflict(
            f"A dataset named {new!r} already exists; choose another name or delete it first.",
            code="dataset_exists",
            detail={"name": new},
        )
    storage.rename_view(cur, record.name, new)
    history.renamed(cur, record.name, new)
    cur.execute(
        f"UPDATE {internal('datasets')} SET name = $new, updated_at = $now, updated_by = $actor "
        "WHERE name = $old",
        {"new": new, "old": record.name, "now": datetime.now(UTC), "actor": actor},
    )
    drop_profiles(cur, record.name)
    renamed = find_dataset(cur, new)
    assert renamed is not None
    return renamed, record.name


def delete_dataset(cur: duckdb.DuckDBPyConnection, name: str) -> DatasetRecord:
    """Drop the view and the catalog entry inside the caller's transaction; once committed,
    the caller lets the data file go (`release_file`)."""
    record = get_dataset(cur, name)
    storage.drop_view(cur, record.name)
    cur.execute(f"DELETE FROM {internal('datasets')} WHERE name = $name", {"name": record.name})
    history.forget(cur, record.name)
    drop_profiles(cur, record.name)
    return record


def _table_exists(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
    """A table or view in `main` with this name, whatever its case."""
    row = cur.execute(
        "SELECT count(*) FROM (SELECT schema_name, database_name, table_name AS n "
        "FROM duckdb_tables() UNION ALL SELECT schema_name, database_name, view_name "
        "FROM duckdb_views() WHERE NOT internal) WHERE schema_name = $schema "
        "AND database_name = current_database() AND lower(n) = lower($name)",
        {"schema": DATASET_SCHEMA, "name": name},
    ).fetchone()
    return bool(row and row[0])


def table_exists(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
    return _table_exists(cur, name)


def check_name_free(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    if find_dataset(cur, name) is not None:
        raise Conflict(
            f"A dataset named {name!r} already exists; upload with mode replace or append, "
            "or choose another name.",
            code="dataset_exists",
            detail={"name": name},
        )
    if _table_exists(cur, name):
        # A table the catalog does not know (never made by myapp): refuse rather than clobber.
        raise Conflict(
            f"The name {name!r} is taken by a table that is not a dataset; choose another name.",
            code="name_taken",
            detail={"name": name},
        )


def release_file(cur: duckdb.DuckDBPyConnection, settings: Settings, file_id: str) -> None:
    """After a committed change: detach a data file no dataset uses any more and delete it
    (once no export reads it). Failing here leaves only an orphan file, removed at next start."""
    try:
        storage.detach(cur, file_id)
    except duckdb.Error as exc:
        log.warning("could not detach dataset file %s: %s", file_id, exc)
    storage.PINS.retire(settings, file_id)


def open_datasets(cur: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """At start: attach every dataset's file, recreate its view, move datasets still stored as
    tables of the main database (before files of their own) into files, and delete files that
    belong to no dataset (a load cut short by a crash, an interrupted deletion)."""
    settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    rows = cur.execute(f"SELECT name, file_id FROM {internal('datasets')} ORDER BY name").fetchall()
    referenced = {file_id for _, file_id in rows if file_id}
    for path in storage.unreferenced_files(settings, referenced):
        log.info("removing a dataset file no dataset uses: %s", path.name)
        path.unlink(missing_ok=True)
    for name, file_id in rows:
        if file_id is None:
            _move_table_to_file(cur, settings, name)
            continue
        if not storage.path_of(settings, file_id).exists():
            log.error(
                "the data file of dataset %s is missing (%s); the dataset cannot be read",
                name,
                storage.path_of(settings, file_id),
            )
            continue
        storage.attach(cur, settings, file_id)
        cur.execute(storage.view_sql(name, file_id))


def _move_table_to_file(cur: duckdb.DuckDBPyConnection, settings: Settings, name: str) -> None:
    file_id = storage.new_file_id()
    path = storage.path_of(settings, file_id)
    writer = f"myapp_move_{file_id}"
    log.info("moving dataset %s into a file of its own (%s)", name, path.name)
    cur.execute(f"ATTACH {storage.sql_literal(path)} AS {quote_ident(writer)}")
    try:
        cur.execute(
            f"CREATE TABLE {quote_ident(writer)}.main.{quote_ident(storage.TABLE)} AS "
            f"SELECT * FROM {qualified(DATASET_SCHEMA, name)}"
        )
    finally:
        cur.execute(f"DETACH {quote_ident(writer)}")
    storage.attach(cur, settings, file_id)
    cur.execute("BEGIN TRANSACTION")
    try:
        cur.execute(f"DROP TABLE {qualified(DATASET_SCHEMA, name)}")
        cur.execute(storage.view_sql(name, file_id))
        cur.execute(
            f"UPDATE {internal('datasets')} SET file_id = $file_id WHERE name = $name",
            {"file_id": file_id, "name": name},
        )
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
