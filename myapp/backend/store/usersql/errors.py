"""Errors in user SQL: the refusal and SQL-error types, and where in the user's text they are.

DuckDB reports positions as `LINE n:` with a caret, or as byte offsets in its syntax tree; the
editor counts characters in what the user wrote. Errors from a worker process (execute.py) come
as DuckDB's exception class name and message, so they are translated by name here.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from typing import Any

from ...errors import AppError, BadRequest

log = logging.getLogger("myapp.backend.query")


# -- errors --------------------------------------------------------------------------------------
class QueryRefused(BadRequest):
    """The gate refused the statement; nothing ran."""

    code = "query_refused"


class SqlError(BadRequest):
    code = "sql_error"


def refused(message: str, code: str, text: str, location: int | None = None, length: int = 0):
    detail = position_from_bytes(text, location, length) if location is not None else None
    return QueryRefused(message, code=code, detail=detail)


# -- locating errors in the user's text ----------------------------------------------------------
_LINE = re.compile(r"^LINE (\d+): (.*)\n( *)(\^+)", re.MULTILINE)


def span(text: str, offset: int, length: int = 1) -> dict[str, int]:
    offset = max(0, min(offset, len(text)))
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return {"line": line, "column": column, "position": offset, "length": max(length, 1)}


def position_from_bytes(text: str, location: int, length: int = 0) -> dict[str, int] | None:
    """DuckDB's syntax tree counts UTF-8 bytes; the editor counts characters."""
    raw = text.encode()
    if not 0 <= location <= len(raw):
        return None
    start = len(raw[:location].decode(errors="ignore"))
    end = len(raw[: location + length].decode(errors="ignore"))
    return span(text, start, end - start)


def locate(message: str, text: str) -> dict[str, int] | None:
    """The position DuckDB's `LINE n:` and caret point at, as offsets into `text`."""
    match = _LINE.search(message)
    if not match:
        if "at end of input" in message:
            # DuckDB 1.4 says where no more text came, without a `LINE n:` excerpt: the end.
            return span(text, len(text.rstrip()), 1)
        return None
    line_no = int(match[1])
    shown = match[2]
    caret = len(match[3]) - len(f"LINE {match[1]}: ")
    lines = text.split("\n")
    if not 1 <= line_no <= len(lines) or caret < 0:
        return None
    source = lines[line_no - 1]
    start = 0
    if shown.startswith("..."):
        # DuckDB shows a window of long lines; find where the window starts in the source.
        core = shown[3:]
        if core.endswith("..."):
            core = core[:-3]
        found = source.find(core[: max(1, min(len(core), 40))])
        if found < 0:
            return None
        start = found - 3
    column = start + _index_at_width(shown, caret)
    if column > len(source):
        return None
    offset = sum(len(line) + 1 for line in lines[: line_no - 1]) + column
    return span(text, offset, len(match[4]))


def _width(char: str) -> int:
    """Terminal columns of one character, as DuckDB counts them when it places its caret."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Cc", "Cf", "Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _index_at_width(shown: str, columns: int) -> int:
    """The character of `shown` that starts at terminal column `columns` (DuckDB's caret counts
    columns: a tab or a combining mark takes none, a wide character two)."""
    used = 0
    for index, char in enumerate(shown):
        width = _width(char)
        if used >= columns and width:
            return index
        used += width
    return len(shown)


def _duckdb_text(text: str) -> str:
    """DuckDB's message without the `LINE n:` excerpt (the position is given separately)."""
    cut = text.find("\n\nLINE ")
    return (text[:cut] if cut >= 0 else text).strip()


def short(message: str) -> str:
    """`Binder Error: x\nCandidate bindings: …` → `x`, for a one-sentence API message."""
    first = message.split("\n", 1)[0]
    if ": " in first and first.split(": ", 1)[0].endswith("Error"):
        first = first.split(": ", 1)[1]
    first = first.strip().rstrip(".!")
    return first


# -- translating DuckDB's errors -----------------------------------------------------------------
class DuckError(Exception):
    """A DuckDB error raised in a worker process: its exception class name and message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def sql_error(exc: BaseException, text: str, *, body: str | None = None) -> AppError:
    """A DuckDB error in the user's SQL as a 4xx with DuckDB's message and the position.

    `exc` is a duckdb.Error or a DuckError from a worker. `text` is what ran; when it wraps the
    user's SELECT, `body` is that SELECT, and positions are given in it (an error outside it, in
    our wrapping, has no position).
    """
    kind = exc.kind if isinstance(exc, DuckError) else type(exc).__name__
    full = str(exc)
    message = _duckdb_text(full)
    position = locate(full, text)
    if body is not None and position is not None:
        start = text.find("(\n" + body + "\n)")
        offset = position["position"] - (start + 2)
        if start < 0 or not 0 <= offset <= len(body):
            position = None
        else:
            position = span(body, offset, position["length"])
    detail: dict[str, Any] = {"message": message}
    where = ""
    if position:
        detail.update(position)
        where = f" (line {position['line']}, column {position['column']})"
    if kind == "OutOfMemoryException":
        return too_large(detail)
    if kind == "TransactionException" and "read-only" in full:
        return QueryRefused(
            "Only read-only queries can run here: this one tried to change the database.",
            code="statement_not_allowed",
            detail=detail,
        )
    if kind in ("PermissionException", "IOException"):
        return QueryRefused(
            "Queries can read datasets only, not files or other databases.",
            code="table_not_allowed",
            detail=detail,
        )
    if kind in ("InternalException", "FatalException"):
        log.error("DuckDB internal error on user SQL: %s", full)
        return AppError(
            "The database failed on this query (an internal error, logged); try again, and "
            "report it if it keeps happening.",
            code="database_error",
            status_code=500,
        )
    return SqlError(f"The query has an error: {short(message)}{where}.", detail=detail)


def too_large(detail: dict[str, Any] | None = None) -> AppError:
    return AppError(
        "The query needs more memory or temporary disk space than this server allows; "
        "filter or aggregate the data further, or export the result instead.",
        code="query_too_large",
        status_code=422,
        detail=detail,
    )


def unwrappable() -> QueryRefused:
    return QueryRefused(
        "This query cannot be run safely as written; remove trailing comments or semicolons "
        "and try again.",
        code="query_refused",
    )
