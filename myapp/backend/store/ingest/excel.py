"""Workbooks (.xlsx, .xls, .ods) in: one sheet becomes a CSV file with a known dialect and
column types, which the CSV path then loads like any other upload.

The reader is python-calamine (Rust). bench/excel.py on a 37.5 MB, 1M-row workbook: calamine
walked every row in 3.8 s at 490 MB peak, openpyxl's read_only mode in 44 s at 123 MB. At
openpyxl's 23k rows/s a large sheet would outlast any request, so calamine; its memory is held
in Rust (the sheet's cells), never as a Python list of the sheet: rows are written to the CSV
as they are walked, in batches.

Cell types are exact in a workbook, so the column types come from the cells themselves rather
than from a sample: integers, numbers, booleans, dates, date-times; a column holding text and
numbers is text (the type step after loading turns markers like n/a into NULL).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from pathlib import Path

from ...errors import BadRequest
from .options import IngestOptions
from .prepare import IngestError, PreparedFile, StagingFiles, plain_reason

# Rows looked at before writing, to find the header row and the table's width.
LOOKAHEAD_ROWS = 200
WRITE_BATCH_ROWS = 5000
# A row above the header holds fewer filled cells than this share of the table's width
# (a title, a merged banner, a date line).
HEADER_FILL_SHARE = 0.5
MAX_COLUMNS = 16384

_BIGINT_LIMIT = 2**63


def _kind(value: object) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if abs(value) < _BIGINT_LIMIT else "float"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < _BIGINT_LIMIT:
            return "int"
        return "float"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time"
    if isinstance(value, dt.timedelta):
        return "interval"
    return "str"


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < _BIGINT_LIMIT:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return f"{value.total_seconds()} seconds"
    return str(value)


def _column_type(kinds: set[str]) -> str:
    if not kinds:
        return "VARCHAR"
    if kinds == {"int"}:
        return "BIGINT"
    if kinds <= {"int", "float"}:
        return "DOUBLE"
    if kinds == {"bool"}:
        return "BOOLEAN"
    if kinds == {"date"}:
        return "DATE"
    if kinds <= {"date", "datetime"}:
        return "TIMESTAMP"
    if kinds == {"time"}:
        return "TIME"
    if kinds == {"interval"}:
        return "INTERVAL"
    return "VARCHAR"


def _filled(row: list) -> int:
    return sum(1 for v in row if v is not None and v != "")


def _last_filled(row: list) -> int:
    for i in range(len(row) - 1, -1, -1):
        if row[i] is not None and row[i] != "":
            return i + 1
    return 0


def _header_index(rows: list[list]) -> int:
    """The first row that fills at least half of the table's width: rows above it are titles."""
    width = max((_filled(r) for r in rows), default=0)
    for i, row in enumerate(rows):
        filled = _filled(row)
        if filled and filled >= max(1, math.ceil(width * HEADER_FILL_SHARE)):
            return i
    return 0


def _names(header: list, ncols: int) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for i in range(ncols):
        value = header[i] if i < len(header) else None
        name = _text(value).strip() or f"column{i}"
        base, n = name, 1
        while name.lower() in seen:
            name = f"{base}_{n}"
            n += 1
        seen.add(name.lower())
        names.append(name)
    return names


def _open(path: Path, fmt: str):
    from python_calamine import CalamineError, CalamineWorkbook

    try:
        return CalamineWorkbook.from_path(str(path))
    except (CalamineError, OSError, ValueError) as exc:
        raise IngestError(
            f"The file could not be read as an Excel/OpenDocument workbook ({fmt}): "
            f"{plain_reason(exc)}. It may be damaged, encrypted or of another format.",
            code="unreadable_workbook",
        ) from None


def workbook_to_csv(
    staging: StagingFiles,
    path: Path,
    fmt: str,
    options: IngestOptions,
    compression: str | None,
    upload_bytes: int,
    filename: str | None,
) -> PreparedFile:
    book = _open(path, fmt)
    try:
        sheets = list(book.sheet_names)
        if not sheets:
            raise IngestError("The workbook has no sheets.", code="empty_file")
        name = options.sheet or sheets[0]
        if name not in sheets:
            by_case = {s.lower(): s for s in sheets}
            if name.lower() in by_case:
                name = by_case[name.lower()]
            elif name.isdigit() and 1 <= int(name) <= len(sheets):
                name = sheets[int(name) - 1]
            else:
                raise BadRequest(
                    f"The workbook has no sheet {name[:60]!r}; its sheets are "
                    f"{', '.join(repr(s) for s in sheets[:20])}.",
                    code="invalid_option",
                    detail={"option": "sheet", "sheets": sheets},
                )
        try:
            rows = iter(book.get_sheet_by_name(name).iter_rows())
            target = staging.new("sheet.csv")
            types = _write_sheet(rows, target, staging, options)
        except (IngestError, BadRequest):
            raise
        except Exception as exc:  # calamine raises its own errors for broken parts
            if type(exc).__name__ == "PayloadTooLarge":
                raise
            raise IngestError(
                f"The sheet {name!r} could not be read: {plain_reason(exc)}.",
                code="unreadable_workbook",
            ) from None
    finally:
        book.close()
    if types is None:
        raise IngestError(
            f"The sheet {name!r} is empty: there is nothing to load. Choose another sheet "
            f"(sheet=…); the workbook has {', '.join(repr(s) for s in sheets[:20])}.",
            code="empty_file",
            detail={"sheets": sheets},
        )
    return PreparedFile(
        target,
        "csv",
        "utf-8",
        compression,
        upload_bytes,
        filename,
        sheet=name,
        sheets=sheets,
        column_types=types,
        source_format=fmt,
    )


def _write_sheet(rows, target: Path, staging: StagingFiles, options: IngestOptions):
    """Write the sheet as CSV with a header line; the column types, or None for no rows."""
    ahead: list[list] = []
    for row in rows:
        if not ahead and not _filled(row):
            continue  # empty rows before the table
        ahead.append(list(row))
        if len(ahead) >= LOOKAHEAD_ROWS:
            break
    if not ahead:
        return None
    if options.header is False:
        start, header = 0, []
    else:
        start = _header_index(ahead)
        candidate = ahead[start]
        # A header holds names: a first row of numbers or dates is data (no header).
        if options.header is None and any(_kind(v) not in (None, "str") for v in candidate):
            header = []
        else:
            header, start = candidate, start + 1
    body = ahead[start:]
    ncols = min(MAX_COLUMNS, max([_last_filled(header)] + [_last_filled(r) for r in body] + [1]))
    names = _names(header, ncols)
    kinds: list[set[str]] = [set() for _ in range(ncols)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)

    def write_rows(batch) -> None:
        for row in batch:
            if not _filled(row):
                continue
            cells = list(row[:ncols])
            for i, value in enumerate(cells):
                kind = _kind(value)
                if kind is not None:
                    kinds[i].add(kind)
            writer.writerow([_text(v) for v in cells] + [""] * (ncols - len(cells)))

    with target.open("wb") as handle:

        def flush() -> None:
            data = buffer.getvalue().encode("utf-8")
            staging.charge(len(data))
            handle.write(data)
            buffer.seek(0)
            buffer.truncate()

        write_rows(body)
        flush()
        batch: list = []
        for row in rows:
            batch.append(row)
            if len(batch) >= WRITE_BATCH_ROWS:
                write_rows(batch)
                batch.clear()
                flush()
        write_rows(batch)
        flush()
    return {name: _column_type(k) for name, k in zip(names, kinds, strict=True)}
