"""The swap: one short transaction points a dataset at the file a load wrote (see load.py), and
the whole path of one received upload, from prepared file to answer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from myapp.settings import Settings

from ...lake import history
from .. import storage
from ..database import Database
from ..datasets import (
    DatasetRecord,
    check_name_free,
    drop_profiles,
    find_dataset,
    insert_record,
    release_file,
    update_record,
)
from .load import StagedFile, build_file, dataset_changed
from .options import IngestOptions
from .prepare import PreparedFile, StagingFiles, prepare_file

log = logging.getLogger("myapp.backend.ingest")

# Writes a load's audit line inside the swap's transaction: (cursor, action, dataset, detail).
# The caller (services/datasets.py) owns what the line says and who made the change.
LoadAudit = Callable[[duckdb.DuckDBPyConnection, str, str, dict[str, Any]], None]


def swap_in(
    database: Database,
    staged: StagedFile,
    name: str,
    mode: str,
    source: dict[str, Any],
    actor: str | None,
    audit_load: LoadAudit,
) -> tuple[str, DatasetRecord]:
    """Make the staged file the dataset `name` in one transaction with its audit line; return
    (action, record).

    On failure the staged file is detached and removed; on success the replaced file is let go.
    """
    settings = database.settings
    replaced: str | None = None
    try:
        with database.cursor() as cur:
            storage.attach(cur, settings, staged.file_id)
        with database.transaction() as cur:
            existing = find_dataset(cur, name)
            fields = dict(
                name=name,
                row_count=staged.row_count,
                source=source,
                actor=actor,
                file_id=staged.file_id,
            )
            if mode == "create" or existing is None:
                if staged.based_on is not None:
                    raise dataset_changed(name)
                check_name_free(cur, name)
                insert_record(cur, **fields)
                action = "created"
            else:
                if mode == "append" and existing.file_id != staged.based_on:
                    raise dataset_changed(name)
                update_record(cur, **fields)
                drop_profiles(cur, name)
                replaced = existing.file_id
                action = "replaced" if mode == "replace" else "appended"
            audit_load(
                cur,
                action,
                name,
                {
                    "rows_loaded": staged.rows_loaded,
                    "rows_rejected": staged.rows_rejected,
                    **source,
                },
            )
            record = find_dataset(cur, name)
            assert record is not None
            history.record(
                cur,
                name=name,
                version=record.version,
                file_id=record.file_id,
                action=action,
                actor=actor,
                row_count=record.row_count,
            )
    except BaseException:
        with database.cursor() as cur:
            release_file(cur, settings, staged.file_id)
        raise
    if replaced is not None:
        with database.cursor() as cur:
            release_file(cur, settings, replaced)
    assert record is not None
    return action, record


def check_mode_allows(database: Database, name: str, mode: str) -> None:
    """Answer 409 before any byte is read when a create would fail anyway."""
    if mode != "create":
        return
    with database.cursor() as cur:
        check_name_free(cur, name)


def ingest_file(
    database: Database,
    settings: Settings,
    staging: StagingFiles,
    upload: Path,
    *,
    name: str,
    options: IngestOptions,
    filename: str | None,
    actor: str | None,
    audit_load: LoadAudit,
    longest_line: int | None = None,
) -> dict[str, Any]:
    """The whole load of one received upload; the caller cleans up `staging` afterwards."""
    started = time.perf_counter()
    prepared = prepare_file(staging, upload, options, settings, filename, longest_line)
    prepared_at = time.perf_counter()
    with database.name_lock(name):
        base = None
        if options.mode == "append":
            with database.cursor() as cur:
                base = find_dataset(cur, name)
        staged = build_file(settings, prepared, options, staging, base)
        staged_at = time.perf_counter()
        source = source_of(prepared, filename)
        action, record = swap_in(database, staged, name, options.mode, source, actor, audit_load)
    log.info(
        "dataset %s %s: %d rows loaded, %d rejected, from %d bytes (%s); prepared in %.2f s, "
        "loaded in %.2f s, swapped in %.2f s",
        name,
        action,
        staged.rows_loaded,
        staged.rows_rejected,
        prepared.upload_bytes,
        prepared.format,
        prepared_at - started,
        staged_at - prepared_at,
        time.perf_counter() - staged_at,
    )
    return result_body(record, action, staged)


def source_of(prepared: PreparedFile, filename: str | None) -> dict[str, Any]:
    return {
        "filename": filename,
        "format": prepared.source_format or prepared.format,
        "compression": prepared.compression,
        "bytes": prepared.upload_bytes,
        "encoding": prepared.encoding,
        "sheet": prepared.sheet,
    }


def result_body(record: DatasetRecord, action: str, staged: StagedFile) -> dict[str, Any]:
    return {
        "dataset": record.public(),
        "action": action,
        "rows_loaded": staged.rows_loaded,
        "rows_rejected": staged.rows_rejected,
        "rejects": staged.rejects,
        **staged.report(),
    }
