"""Workbooks (.xlsx, .xls, .ods) in: one sheet becomes a CSV file with a known dialect and
column types, which the CSV path then loads like any other upload.

The reader is python-calamine (Rust). bench/excel.py on a 37.5 MB, 1M-row workbook: calamine
walked every row in 3.8 s at 490 MB peak, openpyxl's read_only mode in 44 s at 123 MB. At
openpyxl's 23k rows/s a large sheet would outlast any request, so calamine. Its memory (the
sheet's cells, ~13x the file) is why the reading happens in a child process of its own
(`sheetreader.py`) with its address space capped at MYAPP_WORKBOOK_MEMORY_LIMIT: the serving
process stays at its size, and a workbook that needs more than the cap (a crafted one that
claims a million columns or expands to gigabytes of strings) is a 413, not a swelling backend.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from myapp.settings import Settings

from ...errors import BadRequest, PayloadTooLarge
from ..usersql.worker import parse_size
from .options import IngestOptions
from .prepare import IngestError, PreparedFile, StagingFiles, plain_reason

log = logging.getLogger("myapp.backend.ingest")

# Workbooks read at once: each child may use MYAPP_WORKBOOK_MEMORY_LIMIT, so this bounds what
# they take from the machine together; further uploads wait their turn.
READER_SLOTS = 2
_slots = threading.BoundedSemaphore(READER_SLOTS)
# A child that takes longer than this is ended (a sheet of 1M rows takes well under a minute).
READER_TIMEOUT_S = 30 * 60
# Two malloc arenas, not 8 per core: the cap is on address space, which idle arenas reserve.
READER_ENV = {"MALLOC_ARENA_MAX": "2"}


def _sheet_list(sheets: list[str]) -> str:
    return ", ".join(repr(s) for s in sheets[:20])


def _too_big(settings: Settings, fmt: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The workbook ({fmt}) needs more than {settings.workbook_memory_limit} of memory to "
        "read: its sheet holds too many cells or too much text. Save the sheet as CSV and "
        "upload that, split the workbook, or raise MYAPP_WORKBOOK_MEMORY_LIMIT.",
        code="workbook_too_large",
        detail={"memory_limit": settings.workbook_memory_limit},
    )


def _run_reader(config: dict, settings: Settings, fmt: str) -> dict:
    """Start the sheet reader, wait for its one answer; its failures as our errors."""
    with _slots:
        process = subprocess.Popen(
            [sys.executable, "-m", "myapp.backend.store.ingest.sheetreader", json.dumps(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # Nothing of the backend's settings (tokens, passwords) reaches the process that
            # parses an untrusted file.
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")},
                **READER_ENV,
            },
            close_fds=True,
        )
        try:
            out, err = process.communicate(timeout=READER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise IngestError(
                f"Reading the workbook ({fmt}) took longer than {READER_TIMEOUT_S // 60} "
                "minutes and was stopped. Save the sheet as CSV and upload that.",
                code="workbook_too_slow",
            ) from None
        except BaseException:
            process.kill()
            process.communicate()
            raise
    if process.returncode == 0:
        try:
            return json.loads(out)
        except ValueError:
            pass
    text = err.decode("utf-8", "replace")
    # Out of memory: Python's MemoryError (exit 3), or Rust's allocator giving up ("memory
    # allocation of N bytes failed", then abort).
    if process.returncode in (3, -signal.SIGABRT, -signal.SIGSEGV) or "memory allocation" in text:
        log.info(
            "workbook reader stopped at its memory cap (exit %s): %s",
            process.returncode,
            text.strip()[-300:],
        )
        raise _too_big(settings, fmt)
    log.error("workbook reader failed (exit %s): %s", process.returncode, text.strip()[-2000:])
    raise IngestError(
        f"The workbook ({fmt}) could not be read: its reader stopped unexpectedly. It may be "
        "damaged; open it in a spreadsheet program and save it again, or save the sheet as CSV.",
        code="unreadable_workbook",
    )


def workbook_to_csv(
    staging: StagingFiles,
    path: Path,
    fmt: str,
    options: IngestOptions,
    compression: str | None,
    upload_bytes: int,
    filename: str | None,
    settings: Settings,
) -> PreparedFile:
    target = staging.new("sheet.csv")
    config = {
        "path": str(path),
        "target": str(target),
        "sheet": options.sheet,
        "header": options.header,
        "budget": max(0, staging.budget - staging.derived_bytes),
        "memory_bytes": parse_size(settings.workbook_memory_limit),
    }
    answer = _run_reader(config, settings, fmt)
    error = answer.get("error")
    sheets = answer.get("sheets") or []
    if error == "unreadable":
        raise IngestError(
            f"The file could not be read as an Excel/OpenDocument workbook ({fmt}): "
            f"{plain_reason(Exception(answer['reason']))}. It may be damaged, encrypted or of "
            "another format.",
            code="unreadable_workbook",
        )
    if error == "no_sheets":
        raise IngestError("The workbook has no sheets.", code="empty_file")
    if error == "no_such_sheet":
        raise BadRequest(
            f"The workbook has no sheet {str(answer['sheet'])[:60]!r}; its sheets are "
            f"{_sheet_list(sheets)}.",
            code="invalid_option",
            detail={"option": "sheet", "sheets": sheets},
        )
    if error == "unreadable_sheet":
        raise IngestError(
            f"The sheet {answer['sheet']!r} could not be read: "
            f"{plain_reason(Exception(answer['reason']))}.",
            code="unreadable_workbook",
        )
    if error == "too_much_output":
        raise staging.over_budget()
    if error == "empty_sheet":
        raise IngestError(
            f"The sheet {answer['sheet']!r} is empty: there is nothing to load. Choose another "
            f"sheet (sheet=…); the workbook has {_sheet_list(sheets)}.",
            code="empty_file",
            detail={"sheets": sheets},
        )
    staging.charge(target.stat().st_size)
    return PreparedFile(
        target,
        "csv",
        "utf-8",
        compression,
        upload_bytes,
        filename,
        sheet=answer["sheet"],
        sheets=sheets,
        column_types=answer["types"],
        source_format=fmt,
    )
