"""Whole results as files: DuckDB writes them, the API streams them, nothing is left behind.

DuckDB's own `COPY … TO` is several times faster than encoding rows in Python (see DESIGN.md),
so an export is written into a private directory under the data dir that no user can name, then
opened and immediately unlinked: the open handle streams it, and the disk space is returned when
the handle closes, whether the download finished or the client went away.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote

import duckdb

from myapp.settings import Settings

from .database import Database

# Each chunk is read on a worker thread and handed to the event loop: bigger chunks mean fewer
# hand-offs, and the file streams faster (measured on this machine: 4 MB ~1.3x faster than 1 MB).
CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ExportFormat:
    name: str
    extension: str
    media_type: str
    copy_options: str


FORMATS: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("csv", "csv", "text/csv; charset=utf-8", "FORMAT csv, HEADER true"),
        ExportFormat(
            "tsv",
            "tsv",
            "text/tab-separated-values; charset=utf-8",
            "FORMAT csv, HEADER true, DELIMITER '\t'",
        ),
        ExportFormat(
            "parquet",
            "parquet",
            "application/vnd.apache.parquet",
            "FORMAT parquet, COMPRESSION zstd",
        ),
        ExportFormat("json", "json", "application/json", "FORMAT json, ARRAY true"),
        ExportFormat("ndjson", "ndjson", "application/x-ndjson", "FORMAT json"),
    )
}


@dataclass
class ExportFile:
    handle: BinaryIO
    size: int
    format: ExportFormat

    def chunks(self) -> Iterator[bytes]:
        try:
            while chunk := self.handle.read(CHUNK_BYTES):
                yield chunk
        finally:
            self.handle.close()

    def close(self) -> None:
        """Give the disk space back now (the file is already unlinked); safe to call twice."""
        self.handle.close()


def write_export(
    database: Database,
    settings: Settings,
    select_sql: str,
    params: Mapping[str, Any] | None,
    fmt: ExportFormat,
    *,
    cursor: duckdb.DuckDBPyConnection | None = None,
) -> ExportFile:
    """Run `select_sql` (already vetted: one read-only SELECT) into a file and open it.

    The returned file is already unlinked; iterate `chunks()` to stream and close it. With
    `cursor`, the COPY runs on it (user SQL: inside its read-only transaction, under its time
    limit); otherwise on a cursor of its own.
    """
    path = settings.export_dir / f"{uuid.uuid4().hex}.{fmt.extension}"
    # The path is ours (a fresh uuid under the data dir), never user text; quoted as a literal.
    target = "'" + str(path.resolve()).replace("'", "''") + "'"
    # Newlines around the query so a trailing line comment cannot swallow the COPY tail.
    statement = f"COPY (\n{select_sql}\n) TO {target} ({fmt.copy_options})"
    try:
        if cursor is not None:
            cursor.execute(statement, dict(params or {}))
        else:
            with database.cursor() as cur:
                cur.execute(statement, dict(params or {}))
        handle = path.open("rb")
    finally:
        # Unlinking while open keeps the data readable through the handle only.
        path.unlink(missing_ok=True)
    return ExportFile(handle=handle, size=os.fstat(handle.fileno()).st_size, format=fmt)


_UNSAFE_FILENAME = re.compile(r"[^\w.\-]+", re.UNICODE)


def download_filename(stem: str, fmt: ExportFormat) -> str:
    cleaned = _UNSAFE_FILENAME.sub("_", stem).strip("._") or "export"
    return f"{cleaned[:100]}.{fmt.extension}"


def content_disposition(filename: str) -> str:
    """An attachment header that survives non-ASCII names (RFC 6266 / 5987)."""
    ascii_name = filename.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
