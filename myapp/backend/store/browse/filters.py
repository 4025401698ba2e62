"""A request's filters, search and sort, checked against the dataset's columns.

Filters arrive as `col__op=value` query parameters. Column names are checked against the
table's columns and reach SQL only through quote_ident(); values are always bound parameters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from ....contract import filters as filter_ops
from ....contract.types import TEXT_TYPES
from ...errors import AppError, BadRequest
from ..datasets import DatasetRecord
from ..sql import quote_ident

DEFAULT_LIMIT = 100
# One page is for people and clients paging through; whole tables go through exports.
MAX_LIMIT = 1000

MAX_IN_VALUES = 200
MAX_FILTERS = 50

# Query parameters of /rows, /facets and /export that are not filters.
RESERVED = frozenset({"limit", "cursor", "offset", "sort", "q", "column", "format", "bom", "size"})

OPERATORS = tuple(op.key for op in filter_ops.OPERATORS)
_COMPARE = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_FALSE = {"0", "false", "no", "off"}

# Type names made of keywords and numbers only may be written into SQL as they are (for
# CAST). Nested types carry field names from the data, so they are compared as text instead.
SIMPLE_TYPE = re.compile(r"^[A-Z][A-Z0-9_ ]*(\(\d+(, ?\d+)?\))?$")
_TEXT_TYPES = TEXT_TYPES


class InvalidFilter(AppError):
    status_code, code = 400, "invalid_filter"


@dataclass
class Filters:
    """The WHERE clause of a request and its bound parameters."""

    clauses: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    # A stable description of the filters; cursors refuse to continue under other filters.
    signature: list[Any] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(self.clauses)

    def where(self, *extra: str) -> str:
        clauses = [*self.clauses, *extra]
        return " WHERE " + " AND ".join(f"({c})" for c in clauses) if clauses else ""

    def bind(self, value: Any) -> str:
        key = f"p{len(self.params)}"
        self.params[key] = value
        return f"${key}"


def _column_index(record: DatasetRecord) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in record.columns}


def resolve_column(record: DatasetRecord, name: str) -> dict[str, str]:
    by_name = _column_index(record)
    if name in by_name:
        return by_name[name]
    folded = [c for c in record.columns if c["name"].lower() == name.lower()]
    if len(folded) == 1:
        return folded[0]
    raise BadRequest(
        f"The dataset {record.name!r} has no column {name[:80]!r}.",
        code="unknown_column",
        detail={"column": name[:200], "columns": [c["name"] for c in record.columns][:200]},
    )


def _typed(filters: Filters, cur: duckdb.DuckDBPyConnection, column: dict, value: str) -> str:
    """A bound value cast to the column's type, checked first so a bad value is a clear 400."""
    dtype = column["type"]
    if dtype in _TEXT_TYPES:
        return filters.bind(value)
    if not SIMPLE_TYPE.match(dtype):
        raise InvalidFilter(
            f"Column {column['name']!r} has the nested type {dtype}; filter it with "
            "contains, startswith, isnull or notnull.",
            detail={"column": column["name"], "type": dtype},
        )
    ok = cur.execute(f"SELECT TRY_CAST($v AS {dtype}) IS NOT NULL", {"v": value}).fetchone()[0]
    if not ok:
        raise InvalidFilter(
            f"{value[:80]!r} is not a valid {dtype} value for column {column['name']!r}.",
            detail={"column": column["name"], "type": dtype, "value": value[:200]},
        )
    return f"CAST({filters.bind(value)} AS {dtype})"


def _folded(expression: str) -> str:
    """Text compared without case or accents, so "muller" finds "Müller" and "MÜLLER"."""
    return f"strip_accents(lower({expression}))"


# Characters an ILIKE pattern gives a meaning (without ESCAPE, which DuckDB then matches on a
# slower path: 47 ms against 25 below).
_LIKE_SPECIAL = frozenset("%_")


def _contains_folded(expression: str, needle: str, text: str) -> str:
    """Whether the folded text contains the folded needle (`needle`, the bound parameter of
    `text`).

    Text of ASCII characters only (as many bytes as characters) has no accents to strip, and
    DuckDB's ILIKE finds the needle in it without lower-casing a copy of every value first:
    the same rows as `contains(lower(…))` in two thirds of the time. Other text is folded as
    before. 1M rows, a search of two text columns under a sort (rowids of the top 51): 25 ms
    against 37 ms. A needle with % or _ keeps the plain test.
    """
    folded = _folded(needle)
    plain = f"contains({_folded(expression)}, {folded})"
    if _LIKE_SPECIAL & set(text):
        return plain
    return (
        f"CASE WHEN strlen({expression}) = length({expression}) "
        f"THEN {expression} ILIKE '%' || {folded} || '%' ELSE {plain} END"
    )


def parse_filters(
    cur: duckdb.DuckDBPyConnection,
    record: DatasetRecord,
    items: Sequence[tuple[str, str]],
    q: str | None,
) -> Filters:
    filters = Filters()
    count = 0
    for key, value in items:
        if key in RESERVED or key.startswith("_"):
            continue
        column_name, sep, op = key.rpartition("__")
        if not sep:
            raise InvalidFilter(
                f"Unknown parameter {key[:80]!r}: filters look like column__op=value with op one "
                f"of {', '.join(OPERATORS)}.",
                detail={"parameter": key[:200]},
            )
        if op not in OPERATORS:
            raise InvalidFilter(
                f"Unknown filter operator {op[:20]!r} in {key[:80]!r}; use one of "
                f"{', '.join(OPERATORS)}.",
                detail={"parameter": key[:200]},
            )
        count += 1
        if count > MAX_FILTERS:
            raise InvalidFilter(f"At most {MAX_FILTERS} filters can be combined.")
        column = resolve_column(record, column_name)
        ident = quote_ident(column["name"])
        filters.signature.append([column["name"], op, value])
        if op in filter_ops.ORDERING and filter_ops.type_class(column["type"]) == "text":
            raise InvalidFilter(
                f"Column {column['name']!r} holds text, so {filter_ops.BY_KEY[op].label!r} "
                'would compare letters, not numbers or dates ("9" comes after "45"). Use '
                "equals, contains, starts with or is one of, or load the column as a number or "
                "date.",
                detail={
                    "column": column["name"],
                    "type": column["type"],
                    "operator": op,
                    "operators": [o.key for o in filter_ops.operators_for(column["type"])],
                },
            )
        if op in _COMPARE:
            filters.clauses.append(f"{ident} {_COMPARE[op]} {_typed(filters, cur, column, value)}")
        elif op == "contains":
            filters.clauses.append(
                _contains_folded(f"CAST({ident} AS VARCHAR)", filters.bind(value), value)
            )
        elif op == "startswith":
            needle = _folded(filters.bind(value))
            filters.clauses.append(f"starts_with({_folded(f'CAST({ident} AS VARCHAR)')}, {needle})")
        elif op == "in":
            values = [v for v in value.split(",")] if value != "" else [""]
            if len(values) > MAX_IN_VALUES:
                raise InvalidFilter(f"At most {MAX_IN_VALUES} values can follow __in.")
            bound = ", ".join(_typed(filters, cur, column, v.strip()) for v in values)
            filters.clauses.append(f"{ident} IN ({bound})")
        elif op == "isnull":
            negate = value.strip().lower() in _FALSE
            filters.clauses.append(f"{ident} IS {'NOT ' if negate else ''}NULL")
        else:  # notnull
            negate = value.strip().lower() in _FALSE
            filters.clauses.append(f"{ident} IS {'' if negate else 'NOT '}NULL")
    if q is not None and q.strip():
        text_columns = [c for c in record.columns if c["type"] in _TEXT_TYPES]
        needle = filters.bind(q.strip())
        if text_columns:
            filters.clauses.append(
                " OR ".join(
                    _contains_folded(quote_ident(c["name"]), needle, q) for c in text_columns
                )
            )
        else:
            filters.clauses.append("FALSE")
        filters.signature.append(["", "q", q.strip()])
    return filters


@dataclass(frozen=True)
class Sort:
    column: dict[str, str] | None
    descending: bool

    @property
    def text(self) -> str:
        if self.column is None:
            return ""
        return ("-" if self.descending else "") + self.column["name"]

    def order_by(self) -> str:
        if self.column is None:
            return " ORDER BY rowid"
        ident = quote_ident(self.column["name"])
        direction = "DESC" if self.descending else "ASC"
        return f" ORDER BY {ident} {direction} NULLS LAST, rowid"


def parse_sort(record: DatasetRecord, sort: str | None) -> Sort:
    if not sort:
        return Sort(None, False)
    descending = sort.startswith("-")
    name = sort[1:] if descending else sort
    return Sort(resolve_column(record, name), descending)


def has_rowid_column(record: DatasetRecord) -> bool:
    return any(c["name"].lower() == "rowid" for c in record.columns)
