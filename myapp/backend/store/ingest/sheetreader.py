"""The program that turns one sheet of a workbook into a CSV file, run as a short-lived child
process of the backend (`excel.py` starts it): `python -m myapp.backend.store.ingest.sheetreader
'<json config>'`, one JSON answer on stdout.

Why a process of its own: python-calamine holds the whole sheet's cells (and the workbook's
shared strings) in memory while it is walked, ~13x the file's size (689 MB for a 50.5 MB
workbook, bench/ingest.py), and it has no lazy row reader. In the serving process that memory
stays with the allocator after the load and a crafted workbook (a sheet that claims a million
columns, gigabytes of shared strings in a small zip) could take the machine. Here the address
space is capped (RLIMIT_AS, MYAPP_WORKBOOK_MEMORY_LIMIT): past it the child ends, the backend
answers 413, and the memory goes back to the system with the process.

Rows are walked one by one and written in batches, so Python never holds the sheet as a list.
The output is CSV rather than Parquet: a workbook column's type is known only after its last
cell (integers above, a text cell at row 900,000), while a Parquet file fixes its schema before
the first batch. The CSV has a fixed dialect and comes with exact column types (from the cells
themselves: integers, numbers, booleans, dates, date-times; a column holding text and numbers is
text), which the CSV path then hands to DuckDB.

Kept to the standard library and python-calamine (the package's `__init__` imports nothing),
so the child starts in ~0.2 s at ~17 MB (0.5 s and 60 MB with the whole backend).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import resource
import sys

# Rows looked at before writing, to find the header row and the table's width.
LOOKAHEAD_ROWS = 200
WRITE_BATCH_ROWS = 5000
# A row above the header holds fewer filled cells than this share of the table's width
# (a title, a merged banner, a date line).
HEADER_FILL_SHARE = 0.5
# Excel's own widest sheet (XFD).
MAX_COLUMNS = 16384
# Exit status for "the memory cap was reached" (Python's MemoryError; calamine's own
# allocation failures abort the process instead, with SIGABRT).
EXIT_MEMORY = 3

_BIGINT_LIMIT = 2**63


class TooMuchOutput(Exception):
    """The CSV grew past the byte budget the backend gave."""


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


_FINITE_INTEGRAL = float(_BIGINT_LIMIT)


def _encoded(batch, ncols: int, kinds: list[set[str]]) -> list[list[str]]:
    """The rows of `batch` that hold anything, as the CSV's text, cut or padded to `ncols`;
    each column's kinds noted in `kinds`.

    The same as `_kind` and `_text` cell by cell, with the common cell types told by `type()`
    inline: a sheet of a million rows is millions of cells, and two calls per cell took half of
    the conversion's time.
    """
    out: list[list[str]] = []
    for row in batch:
        texts: list[str] = []
        filled = False
        for i, value in enumerate(row[:ncols] if len(row) > ncols else row):
            kind_of = type(value)
            if value is None or (kind_of is str and not value):
                texts.append("")
                continue
            if kind_of is str:
                kind, text = "str", value
            elif kind_of is float:
                if value.is_integer() and -_FINITE_INTEGRAL < value < _FINITE_INTEGRAL:
                    kind, text = "int", str(int(value))
                else:
                    kind, text = "float", repr(value)
            elif kind_of is int:
                kind = "int" if -_BIGINT_LIMIT < value < _BIGINT_LIMIT else "float"
                text = str(value)
            elif kind_of is bool:
                kind, text = "bool", ("true" if value else "false")
            elif kind_of is dt.datetime:
                kind, text = "datetime", value.isoformat(sep=" ")
            elif kind_of is dt.date:
                kind, text = "date", value.isoformat()
            else:
                kind, text = _kind(value), _text(value)
                if kind is None:  # a kind of empty text
                    texts.append(text)
                    continue
            filled = True
            kinds[i].add(kind)
            texts.append(text)
        if not filled and not (len(row) > ncols and _filled(row[ncols:])):
            continue  # an empty row
        if len(texts) < ncols:
            texts += [""] * (ncols - len(texts))
        out.append(texts)
    return out


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


def choose_sheet(sheets: list[str], wanted: str | None) -> str | None:
    """The sheet `wanted` names (exactly, in other case, or by 1-based number); None if none."""
    name = wanted or sheets[0]
    if name in sheets:
        return name
    by_case = {s.lower(): s for s in sheets}
    if name.lower() in by_case:
        return by_case[name.lower()]
    if name.isdigit() and 1 <= int(name) <= len(sheets):
        return sheets[int(name) - 1]
    return None


def write_sheet(rows, handle, header_option: bool | None, budget: int):
    """Write the sheet as CSV with a header line to `handle` (binary); the column types, or None
    for a sheet without rows. At most `budget` bytes (TooMuchOutput past it)."""
    ahead: list[list] = []
    for row in rows:
        if not ahead and not _filled(row):
            continue  # empty rows before the table
        ahead.append(list(row))
        if len(ahead) >= LOOKAHEAD_ROWS:
            break
    if not ahead:
        return None
    if header_option is False:
        start, header = 0, []
    else:
        start = _header_index(ahead)
        candidate = ahead[start]
        # A header holds names: a first row of numbers or dates is data (no header).
        if header_option is None and any(_kind(v) not in (None, "str") for v in candidate):
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
    written = 0

    def write_rows(batch) -> None:
        writer.writerows(_encoded(batch, ncols, kinds))

    def flush() -> None:
        nonlocal written
        data = buffer.getvalue().encode("utf-8")
        written += len(data)
        if written > budget:
            raise TooMuchOutput
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
    return {"types": dict(zip(names, (_column_type(k) for k in kinds), strict=True))}


def _address_space() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[0]) * resource.getpagesize()


def convert(config: dict) -> dict:
    """Read the sheet, write the CSV; the answer for the backend (never raises for the file's
    faults: they come back as {"error": kind, …})."""
    from python_calamine import CalamineError, CalamineWorkbook

    try:
        book = CalamineWorkbook.from_path(config["path"])
    except (CalamineError, OSError, ValueError) as exc:
        return {"error": "unreadable", "reason": str(exc) or type(exc).__name__}
    try:
        sheets = [str(s) for s in book.sheet_names]
        if not sheets:
            return {"error": "no_sheets"}
        name = choose_sheet(sheets, config.get("sheet"))
        if name is None:
            return {"error": "no_such_sheet", "sheet": config.get("sheet"), "sheets": sheets}
        try:
            rows = iter(book.get_sheet_by_name(name).iter_rows())
            with open(config["target"], "wb") as handle:
                written = write_sheet(rows, handle, config.get("header"), config["budget"])
        except TooMuchOutput:
            return {"error": "too_much_output"}
        except MemoryError:
            raise
        except Exception as exc:  # calamine raises its own errors for broken parts
            return {
                "error": "unreadable_sheet",
                "sheet": name,
                "reason": str(exc) or type(exc).__name__,
            }
    finally:
        book.close()
    if written is None:
        return {"error": "empty_sheet", "sheet": name, "sheets": sheets}
    return {"sheet": name, "sheets": sheets, "types": written["types"]}


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    import python_calamine  # noqa: F401 - mapped before the cap is measured

    # Python, the calamine module and the allocator's arenas are mapped by now; the cap is on
    # what reading the workbook adds.
    cap = _address_space() + int(config["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        answer = convert(config)
    except MemoryError:
        return EXIT_MEMORY
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
