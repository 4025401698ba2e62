"""Datasets: loading an upload (sent whole or staged first), renaming, deleting, restoring a
version, each with its audit line.

A load's transaction (the swap of the new data file into the catalog) runs in
store/ingest/swap.py; its `dataset.created|replaced|appended` line is written here
(`_audit_load`), handed to the swap so that it lands in that same transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from myapp.settings import Settings

from ..errors import BadRequest, Conflict
from ..lake import history
from ..lake.engine import MODE
from ..store import audit
from ..store import datasets as catalog
from ..store.database import Cursor, Database
from ..store.datasets import DatasetRecord
from ..store.ingest import (
    IngestOptions,
    LoadAudit,
    StagingFiles,
    check_mode_allows,
    ingest_file,
)
from ..store.uploads import StagedUpload, StagedUploads


def upload_name(name: str | None) -> str | None:
    """The dataset an upload names (None: not named yet), normalised; refused if invalid."""
    return catalog.normalise_name(name) if name else None


def check_upload(database: Database, name: str | None, mode: str) -> None:
    """Refuse, before any byte is read, an upload that could not be loaded anyway."""
    if name is not None:
        check_mode_allows(database, name, mode)


def load_upload(
    database: Database,
    settings: Settings,
    staging: StagingFiles,
    upload: Path,
    *,
    name: str | None,
    filename: str | None,
    options: IngestOptions,
    actor: str | None,
    ip: str,
    longest_line: int | None = None,
    source_name: str | None = None,
) -> dict[str, Any]:
    """Load a received upload as the dataset `name` (default: from the file name); the
    catalog's source file name is `filename`, else `source_name` (what the address named)."""
    if name is None:
        if not filename:
            raise BadRequest(
                "Give the dataset a name (the 'name' field), or send a file name.",
                code="missing_name",
            )
        name = catalog.name_from_filename(filename)
    return ingest_file(
        database,
        settings,
        staging,
        upload,
        name=name,
        options=options,
        filename=filename or source_name,
        actor=actor,
        audit_load=_audit_load(actor, ip),
        longest_line=longest_line,
    )


def load_staged(
    database: Database,
    uploads: StagedUploads,
    upload: StagedUpload,
    *,
    name: str | None,
    mode: str | None,
    actor: str,
    ip: str,
) -> dict[str, Any]:
    """Load a staged upload as the dataset `name` (else the name sent with the file, else one
    from its file name), in `mode` (else the mode sent with the file)."""
    if name or upload.name:
        name = catalog.normalise_name(name or upload.name)
    elif upload.filename:
        name = catalog.name_from_filename(upload.filename)
    else:
        raise BadRequest(
            "Give the dataset a name: the upload had no file name.", code="missing_name"
        )
    return uploads.load(
        database,
        upload,
        name=name,
        mode=mode or upload.options.mode,
        actor=actor,
        audit_load=_audit_load(actor, ip),
    )


def _audit_load(actor: str | None, ip: str) -> LoadAudit:
    """The audit line of a load (`dataset.created`, `.replaced`, `.appended`), written in the
    transaction that makes the new file the dataset."""

    def write(cur: Cursor, action: str, name: str, detail: dict[str, Any]) -> None:
        audit.record(
            cur, actor=actor, action=f"dataset.{action}", target=name, ip=ip, detail=detail
        )

    return write


def rename(
    database: Database, name: str, new_name: str, *, actor: str | None, ip: str | None
) -> DatasetRecord:
    with database.transaction() as cur:
        record, old = catalog.rename_dataset(cur, name, new_name, actor)
        if old != record.name:
            audit.record(
                cur,
                actor=actor,
                action="dataset.renamed",
                target=record.name,
                ip=ip,
                detail={"from": old, "to": record.name},
            )
    return record


def delete(
    database: Database, settings: Settings, name: str, *, actor: str | None, ip: str | None
) -> None:
    with database.transaction() as cur:
        record = catalog.delete_dataset(cur, name)
        audit.record(
            cur,
            actor=actor,
            action="dataset.deleted",
            target=record.name,
            ip=ip,
            detail={"row_count": record.row_count},
        )
    # Only once the catalog no longer names it may the data file go.
    with database.cursor() as cur:
        catalog.release_file(cur, settings, record.file_id)


def restore_version(
    database: Database,
    settings: Settings,
    name: str,
    version: int,
    *,
    actor: str | None,
    ip: str | None,
) -> DatasetRecord:
    """Make an older version (lake mode) the current data, as a new version of its own."""
    if not MODE.active:
        raise Conflict(
            "Older versions are kept in the lake mode only; this workspace has none to restore.",
            code="history_not_kept",
        )
    with database.transaction() as cur:
        record = catalog.get_dataset(cur, name)
        replaced = history.restore(cur, record, version, actor)
        audit.record(
            cur,
            actor=actor,
            action="dataset.restored",
            target=record.name,
            ip=ip,
            detail={"version": version},
        )
        restored = catalog.get_dataset(cur, record.name)
    with database.cursor() as cur:
        catalog.release_file(cur, settings, replaced)
    return restored
