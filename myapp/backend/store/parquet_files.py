"""Parquet files of datasets and saved-query results, made once and served by byte range.

A dataset's Parquet file belongs to one version of its data: `datasets/<file_id>.parquet`, next
to the version's DuckDB file, written the first time someone asks for it (by a side instance,
from that file alone) and deleted with the version (storage.remove_file), so a replace or append
makes a new one and nothing ever serves stale rows. Its ETag is the version's file id.

A saved query's result is a file per (query version, parameter values, versions of the
datasets): `.parquet-results/<key>.parquet`, where the key hashes all of these, so an edit of
the query or a change of any dataset gives a new file. The query runs through the usual export
path (the gate, read-only, pinned files); a few recent results per query are kept, older ones
are deleted as new ones are made.

Readers (DuckDB's httpfs, pyarrow/fsspec, polars) open such a file many times by range; making
it once per version is what lets each of those requests be a plain file read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from myapp.settings import Settings

from ..errors import AppError, Conflict
from ..lake.engine import attach_base
from . import datasets as catalog
from . import storage
from .database import Database
from .exports import ExportFailed, ExportFile
from .sql import internal

log = logging.getLogger("myapp.backend.parquet")

PARQUET_SUFFIX = ".parquet"
# Written beside the final file and renamed over it when complete; a name no file id has, so a
# leftover (a crash mid-write) is deleted at the next start like any unreferenced file.
_TEMP_PREFIX = "parquet-tmp-"
RESULTS_DIR = ".parquet-results"
# Recent results kept per saved query (different parameter values, data versions); older ones
# are deleted when a new one is made, which bounds the disk a query's results take.
RESULTS_KEPT_PER_QUERY = 8
# Row groups of 122,880 rows (DuckDB's default): a reader that filters on a column's min/max
# skips whole groups, and a group stays a few MB for typical column counts.
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd"
PIN_ATTEMPTS = 3


@dataclass
class ServedFile:
    """An open Parquet file: still readable even if its version is deleted meanwhile."""

    file: IO[bytes]
    size: int
    mtime: float
    etag: str
    filename: str

    def close(self) -> None:
        self.file.close()


def parquet_path(settings: Settings, file_id: str) -> Path:
    return storage.path_of(settings, file_id).with_suffix(PARQUET_SUFFIX)


def _open(path: Path, etag: str, filename: str) -> ServedFile | None:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    stat = os.fstat(handle.fileno())
    return ServedFile(handle, stat.st_size, stat.st_mtime, etag, filename)


class ParquetFiles:
    """Makes each Parquet file once: concurrent first requests for one file wait for one
    writer instead of each writing it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def _writing(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield
        with self._guard:
            if not lock.locked():
                self._locks.pop(key, None)

    # -- datasets ----------------------------------------------------------------------------
    def dataset(self, database: Database, name: str) -> ServedFile:
        for _ in range(PIN_ATTEMPTS):
            with database.cursor() as cur:
                record = catalog.get_dataset(cur, name)
            path = parquet_path(self.settings, record.file_id)
            served = _open(path, f'"{record.file_id}"', f"{record.name}.parquet")
            if served is not None:
                return served
            # Held while the file is written, so the version cannot be deleted under the COPY.
            if not storage.PINS.pin(record.file_id):
                continue  # replaced a moment ago: read the catalog again
            try:
                with self._writing(record.file_id):
                    if not path.exists():
                        self._write_dataset(record.file_id, path)
                served = _open(path, f'"{record.file_id}"', f"{record.name}.parquet")
            finally:
                storage.PINS.unpin(record.file_id)
            if served is not None:
                return served
        raise Conflict("The dataset keeps changing; try again.", code="dataset_changed")

    def _write_dataset(self, file_id: str, path: Path) -> None:
        temp = path.with_name(f"{_TEMP_PREFIX}{uuid.uuid4().hex}{PARQUET_SUFFIX}")
        try:
            with storage.side_instance(self.settings) as conn:
                # In the lake mode the version is a lake table (lake/engine.py).
                table = attach_base(conn, self.settings, file_id, "myapp_source")
                if table is None:
                    storage.attach(conn, self.settings, file_id)
                    table = storage.table_of(file_id)
                conn.execute(
                    f"COPY (SELECT * FROM {table}) "
                    f"TO {storage.sql_literal(temp)} ({PARQUET_OPTIONS})"
                )
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
        log.info("made %s (%d bytes)", path.name, path.stat().st_size)

    # -- saved-query results -----------------------------------------------------------------
    def query_result(
        self,
        database: Database,
        *,
        slug: str,
        version: int,
        values: dict[str, Any],
        export: Callable[[], ExportFile],
    ) -> ServedFile:
        """The result of `slug` at `version` with `values`: the cached file, or `export()`
        run once and kept."""
        key = self._result_key(database, slug, version, values)
        directory = self.settings.data_dir / RESULTS_DIR
        directory.mkdir(parents=True, exist_ok=True)
        prefix = hashlib.sha256(slug.encode()).hexdigest()[:16]
        path = directory / f"{prefix}-{key}{PARQUET_SUFFIX}"
        filename = f"{slug}-v{version}.parquet"
        served = _open(path, f'"{key}"', filename)
        if served is not None:
            return served
        with self._writing(key):
            if not path.exists():
                self._write_result(export, path)
                self._forget_old_results(directory, prefix, keep=path)
        served = _open(path, f'"{key}"', filename)
        if served is None:  # deleted by another query's clean-up in this very moment
            raise Conflict("The result changed while it was read; try again.", code="retry")
        return served

    def _result_key(
        self, database: Database, slug: str, version: int, values: dict[str, Any]
    ) -> str:
        # Every dataset's version, not only the ones the query reads: which those are is known
        # only inside the query runner; a change of any dataset costs one re-run at most.
        with database.cursor() as cur:
            data = cur.execute(
                f"SELECT name, file_id FROM {internal('datasets')} ORDER BY name"
            ).fetchall()
        material = json.dumps(
            {"slug": slug, "version": version, "params": values, "data": data},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    def _write_result(self, export: Callable[[], ExportFile], path: Path) -> None:
        temp = path.with_name(f"{_TEMP_PREFIX}{uuid.uuid4().hex}{PARQUET_SUFFIX}")
        try:
            result = export()
            try:
                with temp.open("wb") as out:
                    for chunk in result.chunks():
                        out.write(chunk)
            except ExportFailed as exc:
                if isinstance(exc.error, AppError):
                    raise exc.error from None
                raise
            finally:
                result.close()
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)

    def _forget_old_results(self, directory: Path, prefix: str, keep: Path) -> None:
        mine = []
        for entry in directory.glob(f"{prefix}-*{PARQUET_SUFFIX}"):
            try:
                mine.append((entry.stat().st_mtime, entry))
            except FileNotFoundError:
                continue
        mine.sort(reverse=True)
        for _, entry in mine[RESULTS_KEPT_PER_QUERY:]:
            if entry != keep:
                entry.unlink(missing_ok=True)
