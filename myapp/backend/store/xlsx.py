"""A query's result as an Excel workbook (.xlsx), written by an export worker.

DuckDB cannot write xlsx here (COPY … (FORMAT xlsx) needs the excel extension, which cannot be
installed offline), so the worker fetches the rows and this module writes the workbook: one
sheet of inline strings and numbers, streamed through Python's zipfile, plus the few fixed
parts every workbook has.

Why not a library: xlsxwriter's constant-memory mode (faster and smaller than openpyxl's
write-only mode, bench/excel.py) spends ~5 µs in checks and bookkeeping per cell. Measured on
this machine on 200,000 rows of 8 columns (bench/excel.py --only api-export has the API-level
figure): xlsxwriter 29.2 s, this writer 1.7 s. At xlsxwriter's speed a result of a few hundred
thousand rows would already reach the query time limit, so the 1,048,575 rows a sheet holds
could not be exported at all. openpyxl reads the files back in the tests, cell by cell.

The workbook is written to a temporary file in the worker's own folder and only copied into the
export's pipe when whole, so every refusal (more rows than a sheet holds, a cell Excel cannot
hold) comes before the first byte of the download, as the usual JSON error. The row count is
asked of DuckDB first, with a LIMIT just past what fits, so a result that is too long is refused
at once instead of after writing a million rows.

Values keep their types: numbers are numbers, dates and timestamps Excel dates with a date
format (TIMESTAMPTZ in UTC), booleans booleans, text always text (inline strings: never a
formula or a link, whatever it starts with). What Excel would change is written as text
instead: integers beyond 2^53 and decimals of more than 15 digits (Excel keeps 15), NaN and
infinities, dates before 1900-03-01 (Excel's calendar starts in 1900 and counts a 29 February
1900 that never was). Lists, structs, maps, UUIDs, intervals and BLOBs are their JSON text
(store/values.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .values import to_json_value

# An Excel sheet: 1,048,576 rows (the header is one of them) and 16,384 columns.
SHEET_ROWS = 1_048_576
MAX_ROWS = SHEET_ROWS - 1
MAX_COLUMNS = 16_384
# The longest text a cell holds.
MAX_CELL_CHARS = 32_767
# Excel's numbers are doubles shown to 15 significant digits.
SAFE_INTEGER = 2**53
MAX_DIGITS = 15
FETCH_ROWS = 2048
MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# zlib's fastest level: the sheet's XML compresses ~8x even so, and level 6 would take about
# as long as building the XML.
COMPRESS_LEVEL = 1
SHEET_NAME = "Result"

# Day 0 of Excel's 1900 date system (serial 1 is 1900-01-01; Excel's phantom 1900-02-29 makes
# serials from 1900-03-01 on count from 1899-12-30).
_EPOCH = dt.date(1899, 12, 30).toordinal()
_FIRST_EXACT_DAY = dt.date(1900, 3, 1)
_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")
# Characters XML 1.0 cannot carry; Excel reads them back from its own _xHHHH_ escapes.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_ESCAPE_LIKE = re.compile("_x[0-9A-Fa-f]{4}_")

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_PARTS = {
    "[Content_Types].xml": _HEAD
    + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    "</Types>",
    "_rels/.rels": _HEAD + f'<Relationships xmlns="{_PKG_REL}">'
    f'<Relationship Id="rId1" Type="{_REL}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>",
    "xl/workbook.xml": _HEAD + f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}">'
    f'<sheets><sheet name="{SHEET_NAME}" sheetId="1" r:id="rId1"/></sheets></workbook>',
    "xl/_rels/workbook.xml.rels": _HEAD + f'<Relationships xmlns="{_PKG_REL}">'
    f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/>'
    "</Relationships>",
}

# Cell styles (indexes into cellXfs): the header's bold, dates, timestamps, times; decimals
# with their scale get styles of their own after these.
_BOLD, _DATE, _TIMESTAMP, _TIME = 1, 2, 3, 4
_FIXED_FORMATS = {_DATE: "yyyy-mm-dd", _TIMESTAMP: "yyyy-mm-dd hh:mm:ss", _TIME: "hh:mm:ss"}
_WIDTHS = {_DATE: 12, _TIMESTAMP: 20, _TIME: 10}


class XlsxRefused(Exception):
    """The result cannot be an Excel sheet; `code` and the message say why and what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def too_many_rows() -> XlsxRefused:
    return XlsxRefused(
        "too_many_rows_for_xlsx",
        f"The result has more than {MAX_ROWS:,} rows, more than an Excel sheet holds "
        f"({SHEET_ROWS:,} rows with the header); export it as CSV or Parquet, or select "
        "fewer rows.",
    )


def count_sql(select_sql: str) -> str:
    """Rows of `select_sql`, counted only to one past what a sheet holds."""
    return f"SELECT count(*) FROM (SELECT 1 FROM (\n{select_sql}\n) LIMIT {MAX_ROWS + 1})"


def column_letter(index: int) -> str:
    """A, B, … Z, AA, … for a 0-based column index."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _escape(text: str) -> str:
    if len(text) > MAX_CELL_CHARS:
        raise XlsxRefused(
            "cell_too_long_for_xlsx",
            f"A value has {len(text):,} characters, more than an Excel cell holds "
            f"({MAX_CELL_CHARS:,}); export it as CSV or Parquet, or shorten the column "
            "(e.g. left(col, 32000)).",
        )
    if "_x" in text:
        # Text that looks like Excel's own escape must not be read as one.
        text = _ESCAPE_LIKE.sub(lambda m: "_x005F" + m[0], text)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if _ILLEGAL.search(text):
        text = _ILLEGAL.sub(lambda m: f"_x{ord(m[0]):04X}_", text)
    return text


def _string(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{_escape(text)}</t></is></c>'


def _json_text(value: Any) -> str:
    encoded = to_json_value(value)
    if isinstance(encoded, (list, dict)):
        return json.dumps(encoded, ensure_ascii=False)
    return str(encoded)


def _serial_day(value: dt.date) -> int | None:
    """Excel's day number of a date, or None before the dates it counts right."""
    return None if value < _FIRST_EXACT_DAY else value.toordinal() - _EPOCH


def _day_fraction(value: dt.time) -> float:
    return (value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6) / 86400


Cell = Callable[[str, Any], str]


def _text_cell(ref: str, value: Any) -> str:
    return _string(ref, value if isinstance(value, str) else _json_text(value))


def _number_cell(style: str) -> Cell:
    def cell(ref: str, value: Any) -> str:
        if isinstance(value, bool):
            return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
        if isinstance(value, int):
            if -SAFE_INTEGER < value < SAFE_INTEGER:
                return f'<c r="{ref}"{style}><v>{value}</v></c>'
            return _string(ref, str(value))
        if isinstance(value, float):
            if math.isfinite(value):
                return f'<c r="{ref}"{style}><v>{value!r}</v></c>'
            return _string(ref, _json_text(value))
        if isinstance(value, Decimal):
            if value.is_finite() and len(value.as_tuple().digits) <= MAX_DIGITS:
                return f'<c r="{ref}"{style}><v>{float(value)!r}</v></c>'
            return _string(ref, str(value))
        return _text_cell(ref, value)

    return cell


def _moment_cell(ref: str, value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        day = _serial_day(value.date())
        if day is None:
            return _string(ref, value.isoformat(sep=" "))
        serial = day + _day_fraction(value.time())
        return f'<c r="{ref}" s="{_TIMESTAMP}"><v>{serial!r}</v></c>'
    if isinstance(value, dt.date):
        day = _serial_day(value)
        if day is None:
            return _string(ref, value.isoformat())
        return f'<c r="{ref}" s="{_DATE}"><v>{day}</v></c>'
    if isinstance(value, dt.time):
        return f'<c r="{ref}" s="{_TIME}"><v>{_day_fraction(value)!r}</v></c>'
    return _text_cell(ref, value)


def _boolean_cell(ref: str, value: Any) -> str:
    return f'<c r="{ref}" t="b"><v>{1 if value else 0}</v></c>'


class _Styles:
    """The cell styles a sheet uses: the fixed ones, and one per decimal scale."""

    def __init__(self) -> None:
        self.formats: dict[int, str] = dict(_FIXED_FORMATS)

    def decimal(self, scale: int) -> int:
        code = "0." + "0" * scale
        for style, existing in self.formats.items():
            if existing == code:
                return style
        style = max(self.formats) + 1
        self.formats[style] = code
        return style

    def xml(self) -> str:
        # Custom number formats are numbered from 164; style n > 1 uses format 162 + n.
        num_fmts = "".join(
            f'<numFmt numFmtId="{162 + style}" formatCode="{code}"/>'
            for style, code in sorted(self.formats.items())
        )
        xfs = [
            '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>',
            '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>',
        ] + [
            f'<xf numFmtId="{162 + style}" fontId="0" fillId="0" borderId="0" xfId="0" '
            'applyNumberFormat="1"/>'
            for style in sorted(self.formats)
        ]
        return (
            _HEAD + f'<styleSheet xmlns="{_MAIN}">'
            f'<numFmts count="{len(self.formats)}">{num_fmts}</numFmts>'
            '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
            '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
            '<fills count="2"><fill><patternFill patternType="none"/></fill>'
            '<fill><patternFill patternType="gray125"/></fill></fills>'
            '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border>'
            "</borders>"
            '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
            "</cellStyleXfs>"
            f'<cellXfs count="{len(xfs)}">{"".join(xfs)}</cellXfs>'
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/>'
            "</cellStyles></styleSheet>"
        )


def _column(dtype: str, styles: _Styles) -> tuple[Cell, int]:
    """How a column's cells are written, and its width (0: Excel's default)."""
    dtype = dtype.upper()
    if dtype == "DATE":
        return _moment_cell, _WIDTHS[_DATE]
    if dtype.startswith("TIMESTAMP") or dtype == "DATETIME":
        return _moment_cell, _WIDTHS[_TIMESTAMP]
    if dtype.startswith("TIME"):
        return _moment_cell, _WIDTHS[_TIME]
    if dtype == "BOOLEAN":
        return _boolean_cell, 0
    decimal = _DECIMAL.match(dtype)
    if decimal:
        scale = int(decimal[2])
        return _number_cell(f' s="{styles.decimal(scale)}"' if scale else ""), 0
    if dtype in ("DOUBLE", "FLOAT", "REAL") or dtype.endswith("INT") or dtype == "INTEGER":
        return _number_cell(""), 0
    return _text_cell, 0


def write_xlsx(cursor: Any, target: str, tmpdir: str) -> int:
    """Write the result `cursor` has just executed to `target` as a workbook; its row count.

    The workbook is built in a temporary file in `tmpdir` and copied to `target` (the export's
    pipe) only once whole: a refusal leaves `target` untouched."""
    description = cursor.description or []
    if len(description) > MAX_COLUMNS:
        raise XlsxRefused(
            "too_many_columns_for_xlsx",
            f"The result has {len(description):,} columns, more than an Excel sheet holds "
            f"({MAX_COLUMNS:,}); export it as CSV or Parquet, or select fewer columns.",
        )
    styles = _Styles()
    columns = [_column(str(column[1]), styles) for column in description]
    cells = [cell for cell, _ in columns]
    letters = [column_letter(i) for i in range(len(description))]
    widths = "".join(
        f'<col min="{i + 1}" max="{i + 1}" width="{width}" customWidth="1"/>'
        for i, (_, width) in enumerate(columns)
        if width
    )
    header = "".join(
        _string(f"{letter}1", str(column[0])).replace("<c ", f'<c s="{_BOLD}" ', 1)
        for letter, column in zip(letters, description, strict=True)
    )
    handle, path = tempfile.mkstemp(suffix=".xlsx", dir=tmpdir)
    os.close(handle)
    try:
        with zipfile.ZipFile(
            path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL
        ) as book:
            for name, text in _PARTS.items():
                book.writestr(name, text)
            with book.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
                sheet.write(
                    (
                        _HEAD + f'<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}"><sheetViews>'
                        '<sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" '
                        'activePane="bottomLeft" state="frozen"/>'
                        '<selection pane="bottomLeft"/></sheetView></sheetViews>'
                        + (f"<cols>{widths}</cols>" if widths else "")
                        + f'<sheetData><row r="1">{header}</row>'
                    ).encode()
                )
                rows = _write_rows(cursor, sheet, cells, letters)
                sheet.write(b"</sheetData></worksheet>")
            book.writestr("xl/styles.xml", styles.xml())
        with open(path, "rb") as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return rows


def _write_rows(cursor: Any, sheet: Any, cells: list[Cell], letters: list[str]) -> int:
    row = 1
    pairs = list(zip(cells, letters, strict=True))
    while batch := cursor.fetchmany(FETCH_ROWS):
        if row + len(batch) > SHEET_ROWS:
            raise too_many_rows()
        parts = []
        for values in batch:
            row += 1
            r = str(row)
            parts.append(
                f'<row r="{r}">'
                + "".join(
                    [
                        cell(letter + r, value)
                        for (cell, letter), value in zip(pairs, values, strict=True)
                        if value is not None
                    ]
                )
                + "</row>"
            )
        sheet.write("".join(parts).encode())
    return row - 1
