"""Cursors of pages: the token a page hands out and the clause that continues after it.

Deep pages stay fast through keyset cursors: the `next` token carries the last row's sort
value and rowid, and the next page asks for rows after them (`WHERE (col, rowid) > …`) instead
of counting past them with OFFSET, which has to read and sort everything it skips.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from ...errors import BadRequest
from ..datasets import DatasetRecord
from ..sql import quote_ident
from .filters import SIMPLE_TYPE, Filters, Sort, has_rowid_column

# Sort columns whose values are equal exactly when their text is (no time zone, no infinite
# dates that Python would see as the largest one): a page's ties are counted on the sort key's
# text. Floats are compared as Python floats, which hold them exactly: -0.0 and 0.0 are one
# value to DuckDB's sort (not to their text), and so are all NaNs.
_TIE_COUNTABLE = re.compile(
    r"^(VARCHAR|BOOLEAN|U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|DATE|TIMESTAMP|DECIMAL\(\d+, ?\d+\))$"
)
_FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE"})


# Offsets and rowids a cursor may name. Beyond them no dataset has rows, and DuckDB refuses
# larger numbers in OFFSET or as a BIGINT parameter.
MAX_CURSOR_NUMBER = 2**62
# A keyset value is one cell as text; longer is not a cursor we made.
MAX_CURSOR_VALUE_CHARS = 64 * 1024
MAX_CURSOR_CHARS = 4 * MAX_CURSOR_VALUE_CHARS


def cursor_fingerprint(record: DatasetRecord, sort: Sort, filters: Filters) -> str:
    """What a cursor continues: this version of this dataset's rows, this sort, these filters.

    The data file is part of it: a cursor of another dataset, or of this one before a replace
    or append, is refused instead of continuing from a row position in other rows.
    """
    raw = json.dumps([record.file_id, sort.text, filters.signature], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _invalid_cursor(why: str = "") -> BadRequest:
    return BadRequest(
        "The cursor is not valid; start again from the first page.",
        code="invalid_cursor",
        detail={"reason": why} if why else None,
    )


def decode_cursor(token: str) -> dict[str, Any]:
    if len(token) > MAX_CURSOR_CHARS:
        raise _invalid_cursor("too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        raise _invalid_cursor("not a cursor") from None
    if not isinstance(payload, dict):
        raise _invalid_cursor("not a cursor")
    return payload


def _count(state: dict[str, Any], key: str, *, required: bool = True) -> int | None:
    value = state.get(key)
    if value is None and not required:
        return None
    # bool is an int to Python; JSON true is not a count.
    if type(value) is not int or not 0 <= value <= MAX_CURSOR_NUMBER:
        raise _invalid_cursor(f"{key} is not a row number")
    return value


@dataclass(frozen=True)
class Cursor:
    """A checked cursor: where the previous page ended, and the total it reported."""

    offset: int
    keyset: bool
    rowid: int | None = None
    value: str | None = None
    value_is_null: bool = False
    total: int | None = None
    total_exact: bool = False
    total_known: bool = False
    # Rows with the cursor's value already shown (the tie group's first rows), when known.
    ties: int | None = None


def parse_cursor(token: str, fingerprint: str, sort: Sort, keyset: bool) -> Cursor:
    """The cursor's state, every field checked: anything we did not make is a clear 400."""
    state = decode_cursor(token)
    if state.get("f") != fingerprint:
        raise BadRequest(
            "The cursor belongs to another dataset, another version of it, another sort or "
            "other filters; start again from the first page.",
            code="invalid_cursor",
        )
    offset = _count(state, "o")
    assert offset is not None
    kind = state.get("k")
    if kind not in ("keyset", "offset") or (kind == "keyset") != keyset:
        raise _invalid_cursor("unknown kind")
    total_known = "t" in state
    total = _count(state, "t", required=False)
    exact = state.get("x", False)
    if type(exact) is not bool:
        raise _invalid_cursor("x is not a flag")
    if kind == "offset":
        return Cursor(offset, False, total=total, total_exact=exact, total_known=total_known)
    rowid = _count(state, "r")
    ties = _count(state, "e", required=False)
    if ties is not None and ties > MAX_TIES:
        raise _invalid_cursor("e is not a row count")
    value, is_null = None, False
    if sort.column is not None:
        is_null = state.get("n", False)
        if type(is_null) is not bool:
            raise _invalid_cursor("n is not a flag")
        if not is_null:
            value = state.get("v")
            if not isinstance(value, str) or len(value) > MAX_CURSOR_VALUE_CHARS:
                raise _invalid_cursor("v is not a value")
    return Cursor(
        offset,
        True,
        rowid=rowid,
        value=value,
        value_is_null=is_null,
        total=total,
        total_exact=exact,
        total_known=total_known,
        ties=ties,
    )


def _encodable(text: str | None) -> bool:
    try:
        (text or "").encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def keyset_clause(
    cur: duckdb.DuckDBPyConnection, sort: Sort, cursor: Cursor
) -> tuple[str, dict[str, Any], int]:
    """The rows after the cursor's, its parameters (kept apart from the filters', which the
    count also binds) and how many rows the page skips."""
    params: dict[str, Any] = {"k_rowid": cursor.rowid}
    if sort.column is None:
        return "rowid > $k_rowid", params, 0
    ident = quote_ident(sort.column["name"])
    if cursor.value_is_null:
        return f"{ident} IS NULL AND rowid > $k_rowid", params, 0
    dtype = sort.column["type"]
    # Every text DuckDB can take is a VARCHAR: a statement less for a page sorted by text
    # (0.2-0.3 ms). A text it cannot take (a lone surrogate) is checked as before.
    if dtype != "VARCHAR" or not _encodable(cursor.value):
        fits = cur.execute(
            f"SELECT TRY_CAST($v AS {dtype}) IS NOT NULL", {"v": cursor.value}
        ).fetchone()
        if not fits or not fits[0]:
            raise _invalid_cursor("v does not fit the sort column")
    value = f"CAST($k_value AS {dtype})"
    beyond = "<" if sort.descending else ">"
    if cursor.ties is not None:
        # The cursor's value onwards, skipping the ties already shown: a range DuckDB pushes
        # into the scan, with nothing left to test row by row (the range below keeps a filter
        # on rowid for every row in range: a cursor page of 1M rows sorted by a VARCHAR, 46-64
        # ms this way against 77-128 ms, with 29-70 ms for DuckDB's own ORDER BY … LIMIT).
        return (
            f"({ident} {beyond}= {value} OR {ident} IS NULL)",
            {"k_value": cursor.value},
            cursor.ties,
        )
    params["k_value"] = cursor.value
    # Written as a range on the column AND the tie-break (the same rows as `col beyond value
    # OR (col = value AND rowid > r) OR col IS NULL`): DuckDB pushes the range into the scan,
    # which the single OR it replaces kept from it (a cursor page of 5M rows sorted by name:
    # 114 ms as one OR, 86 ms as a range).
    clause = (
        f"({ident} {beyond}= {value} OR {ident} IS NULL) AND "
        f"({ident} {beyond} {value} OR rowid > $k_rowid OR {ident} IS NULL)"
    )
    return clause, params, 0


# The most ties a cursor counts: at most one page's rows, and a page has at most MAX_LIMIT.
MAX_TIES = 1000


def tie_test(column: dict[str, str], position: int, last: tuple) -> Callable[[tuple], bool] | None:
    """Whether a row of the page has the last row's sort value, as DuckDB's sort sees it."""
    if column["type"] in _FLOAT_TYPES:
        value = last[position]
        if value != value:  # NaN
            return lambda row: row[position] != row[position]
        return lambda row: row[position] == value
    if _TIE_COUNTABLE.match(column["type"]):
        key = last[-1]
        return lambda row: row[-1] == key
    return None


def ties_shown(
    page: Sequence[tuple], state: Cursor | None, start: int, tied: Callable[[tuple], bool]
) -> int | None:
    """How many rows with the last row's sort value the pages so far have shown, when the page
    tells: its last rows up to one with another value; the whole first page; or the whole page
    continuing the ties the cursor counted. Else None (the cursor then pages by rowid)."""
    trailing = 0
    for row in reversed(page):
        if not tied(row):
            return trailing
        trailing += 1
    if state is None:
        # A page from an offset may begin inside the ties.
        return trailing if start == 0 else None
    if state.ties is not None and not state.value_is_null and state.value == page[-1][-1]:
        shown = state.ties + trailing
        return shown if shown <= MAX_TIES else None
    return None


def can_keyset(record: DatasetRecord, sort: Sort) -> bool:
    if has_rowid_column(record):
        return False
    return sort.column is None or bool(SIMPLE_TYPE.match(sort.column["type"]))
