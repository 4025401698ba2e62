"""Staged uploads: a file received and read as it would load, kept for a while to be looked at,
read again with other options, and then loaded without being sent again.

A staged upload lives in a directory of its own under the staging dir: the file as it was sent
and the dataset file its last reading wrote (storage.py's layout, not yet any dataset's).
Loading moves that file into the datasets dir and swaps it in like any upload (an append first
writes the dataset's rows followed by it). The staging dir is outside what SQL may read, and is
emptied when the backend starts, so staged uploads do not outlive a restart.

Limits: an upload expires MYAPP_UPLOAD_TTL_S after its last change; one account's staged
uploads together may hold at most MYAPP_MAX_UPLOAD_BYTES (as sent), so staging cannot be used
to hold more than one upload's worth of disk per account.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from myapp.settings import Settings

from ..errors import NotFound, PayloadTooLarge
from . import storage
from .database import Database
from .datasets import find_dataset
from .ingest import (
    IngestOptions,
    LoadAudit,
    StagedFile,
    StagingFiles,
    append_staged,
    build_file,
    check_mode_allows,
    nothing_loaded,
    prepare_file,
    result_body,
    swap_in,
)
from .ingest.options import WORKBOOK_FORMATS, update_options

log = logging.getLogger("myapp.backend.uploads")

BUILT_NAME = "data.duckdb"


@dataclass
class StagedUpload:
    id: str
    owner: str
    directory: Path
    upload: Path
    filename: str | None
    bytes: int
    options: IngestOptions
    expires_at: float
    longest_line: int | None = None
    # The dataset name sent with the file (a form's name field): the load's default.
    name: str | None = None
    staged: StagedFile | None = None
    source: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def built(self) -> Path:
        return self.directory / BUILT_NAME

    def preview(self) -> dict[str, Any]:
        staged = self.staged
        assert staged is not None
        report = staged.report()
        read = dict(report["read"])
        if read.get("format") in WORKBOOK_FORMATS:
            # A sheet is read through a text file of our own making: its encoding and
            # delimiter say nothing about the workbook.
            for key in ("encoding", "delimiter", "quote", "escape", "decimal_separator"):
                read[key] = None
        return {
            "id": self.id,
            "expires_at": datetime.fromtimestamp(self.expires_at, UTC),
            "filename": self.filename,
            "bytes": self.bytes,
            "name": self.name,
            "mode": self.options.mode,
            **{
                k: read.get(k)
                for k in (
                    "format",
                    "encoding",
                    "compression",
                    "delimiter",
                    "quote",
                    "escape",
                    "header",
                    "skip",
                    "sheet",
                    "decimal_separator",
                    "thousands",
                )
            },
            "sheets": read.get("sheets") or [],
            "columns": staged.columns,
            "rows": staged.preview_rows,
            "row_count": staged.rows_loaded,
            "rows_rejected": staged.rows_rejected,
            "rejects": staged.rejects,
            "conversions": report["conversions"],
            "text_columns": report["text_columns"],
            "types": dict(self.options.types),
        }


class StagedUploads:
    """The backend's staged uploads (one instance per API, on app.state)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.staging_dir
        self._lock = threading.Lock()
        self._uploads: dict[str, StagedUpload] = {}

    # -- bookkeeping ----------------------------------------------------------------------
    def new_directory(self) -> tuple[str, Path]:
        upload_id = uuid.uuid4().hex
        directory = self.root / f"upload-{upload_id}"
        directory.mkdir(parents=True)
        return upload_id, directory

    def expire(self) -> None:
        now = time.time()
        with self._lock:
            gone = [u for u in self._uploads.values() if u.expires_at <= now]
            for upload in gone:
                self._uploads.pop(upload.id, None)
        for upload in gone:
            log.info("staged upload %s expired", upload.id)
            _remove_directory(upload.directory)

    def held_by(self, owner: str) -> int:
        with self._lock:
            return sum(u.bytes for u in self._uploads.values() if u.owner == owner)

    def check_room(self, owner: str, incoming: int) -> None:
        """413 when the owner's staged uploads and this one would pass the upload limit."""
        self.expire()
        limit = self.settings.max_upload_bytes
        held = self.held_by(owner)
        if held + incoming > limit:
            raise PayloadTooLarge(
                "Your staged uploads and this file together are larger than the upload limit "
                f"({limit:,} bytes, MYAPP_MAX_UPLOAD_BYTES); load or delete a staged upload "
                "first (they also expire on their own).",
                code="staged_uploads_too_large",
                detail={"limit_bytes": limit, "staged_bytes": held},
            )

    def get(self, upload_id: str, owner: str, is_admin: bool) -> StagedUpload:
        self.expire()
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None or (upload.owner != owner and not is_admin):
            # Someone else's upload is as unknown as one that never was.
            raise NotFound(
                "No such staged upload: it may have expired, been loaded or been deleted.",
                code="upload_not_found",
            )
        return upload

    def _ttl(self) -> float:
        return float(self.settings.upload_ttl_s)

    # -- the operations -------------------------------------------------------------------
    def stage(
        self,
        *,
        upload_id: str,
        directory: Path,
        upload: Path,
        owner: str,
        filename: str | None,
        options: IngestOptions,
        longest_line: int | None,
        name: str | None = None,
    ) -> StagedUpload:
        """Read a received file as it would load; the staged upload, registered."""
        size = upload.stat().st_size
        staged_upload = StagedUpload(
            id=upload_id,
            owner=owner,
            directory=directory,
            upload=upload,
            filename=filename,
            bytes=size,
            options=options,
            expires_at=time.time() + self._ttl(),
            longest_line=longest_line,
            name=(name or "").strip()[:200] or None,
        )
        try:
            self.check_room(owner, size)
            self._read(staged_upload, options)
        except BaseException:
            _remove_directory(directory)
            raise
        with self._lock:
            self._uploads[upload_id] = staged_upload
        return staged_upload

    def _read(self, staged_upload: StagedUpload, options: IngestOptions) -> None:
        settings = self.settings
        staging = StagingFiles(settings, staged_upload.directory)
        target = staged_upload.directory / f"{staging.id}.duckdb"
        try:
            prepared = prepare_file(
                staging,
                staged_upload.upload,
                options,
                settings,
                staged_upload.filename,
                staged_upload.longest_line,
            )
            staged = build_file(settings, prepared, options, staging, None, path=target)
        finally:
            staging.cleanup()
        # The new reading replaces the old only once it is whole.
        target.replace(staged_upload.built)
        staged_upload.staged = staged
        staged_upload.options = options
        staged_upload.source = {
            "filename": staged_upload.filename,
            "format": prepared.source_format or prepared.format,
            "compression": prepared.compression,
            "bytes": staged_upload.bytes,
            "encoding": prepared.encoding,
            "sheet": prepared.sheet,
        }
        staged_upload.expires_at = time.time() + self._ttl()

    def update(self, staged_upload: StagedUpload, changes: dict[str, Any]) -> StagedUpload:
        options = update_options(staged_upload.options, changes)
        with staged_upload.lock:
            self._read(staged_upload, options)
        return staged_upload

    def delete(self, staged_upload: StagedUpload) -> None:
        with self._lock:
            self._uploads.pop(staged_upload.id, None)
        _remove_directory(staged_upload.directory)

    def load(
        self,
        database: Database,
        staged_upload: StagedUpload,
        *,
        name: str,
        mode: str,
        actor: str,
        audit_load: LoadAudit,
    ) -> dict[str, Any]:
        """Make the staged reading the dataset `name`; the staged upload is gone afterwards."""
        settings = self.settings
        check_mode_allows(database, name, mode)
        with staged_upload.lock, database.name_lock(name):
            staged = staged_upload.staged
            assert staged is not None
            if staged.rows_loaded == 0 and staged.rows_rejected > 0:
                raise nothing_loaded(staged.rows_rejected, staged.rejects)
            base = None
            if mode == "append":
                with database.cursor() as cur:
                    base = find_dataset(cur, name)
            if base is not None:
                made = append_staged(settings, staged_upload.built, staged, base)
            else:
                file_id = storage.new_file_id()
                shutil.move(staged_upload.built, storage.path_of(settings, file_id))
                made = StagedFile(
                    file_id=file_id,
                    rows_loaded=staged.rows_loaded,
                    rows_rejected=staged.rows_rejected,
                    rejects=staged.rejects,
                    row_count=staged.rows_loaded,
                    read=staged.read,
                    refinement=staged.refinement,
                    columns=staged.columns,
                )
            try:
                action, record = swap_in(
                    database, made, name, mode, staged_upload.source, actor, audit_load
                )
            except BaseException:
                if base is None:
                    # Its file was moved into place and is gone with the failed swap.
                    self.delete(staged_upload)
                raise
        self.delete(staged_upload)
        return result_body(record, action, made)


def _remove_directory(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def expires_in(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.upload_ttl_s)
