"""Reading datasets: pages of rows with filters, sort and cursors; facets; the SELECT of exports.

Filters arrive as `col__op=value` query parameters. Column names are checked against the
table's columns and reach SQL only through quote_ident(); values are always bound parameters.

Deep pages stay fast through keyset cursors: the `next` token carries the last row's sort
value and rowid, and the next page asks for rows after them (`WHERE (col, rowid) > …`) instead
of counting past them with OFFSET, which has to read and sort everything it skips.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb

from ...models import filters as filter_ops
from ..errors import AppError, BadRequest
from .datasets import DatasetRecord
from .sql import quote_ident
from .values import describe_columns, encode_rows

DEFAULT_LIMIT = 100
# One page is for people and clients paging through; whole tables go through exports.
MAX_LIMIT = 1000

# Counting rows under filters is exact when it finishes within this budget; otherwise the
# total is estimated from a sample and flagged as such.
COUNT_BUDGET_S = 1.5
ESTIMATE_BUDGET_S = 1.0
ESTIMATE_SAMPLE_PERCENT = 2

FACET_BUDGET_S = 3.0
INTERRUPT_REPEAT_S = 0.05
DEFAULT_FACET_SIZE = 10
MAX_FACET_SIZE = 100
MAX_FACET_COLUMNS = 10

MAX_IN_VALUES = 200
MAX_FILTERS = 50

# Query parameters of /rows, /facets and /export that are not filters.
RESERVED = frozenset({"limit", "cursor", "offset", "sort", "q", "column", "format", "size"})

OPERATORS = tuple(op.key for op in filter_ops.OPERATORS)
_COMPARE = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_FALSE = {"0", "false", "no", "off"}

# Type names made of keywords and numbers only may be written into SQL as they are (for
# CAST). Nested types carry field names from the data, so they are compared as text instead.
_SIMPLE_TYPE = re.compile(r"^[A-Z][A-Z0-9_ ]*(\(\d+(, ?\d+)?\))?$")
_TEXT_TYPES = {"VARCHAR"}


class QueryTimeout(AppError):
    status_code, code = 503, "query_timeout"


class InvalidFilter(AppError):
    status_code, code = 400, "invalid_filter"


@contextmanager
def time_budget(cur: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
    """Interrupt the cursor's query after `seconds` (the configuration is locked: no SET).

    An interrupt that arrives before DuckDB has started the query is lost, so once the time is
    up the interrupt is repeated until the block ends.
    """
    done = threading.Event()

    def watch() -> None:
        if done.wait(seconds):
            return
        while not done.is_set():
            cur.interrupt()
            done.wait(INTERRUPT_REPEAT_S)

    watcher = threading.Thread(target=watch, name="query-budget", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


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
    if not _SIMPLE_TYPE.match(dtype):
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
            needle = _folded(filters.bind(value))
            filters.clauses.append(f"contains({_folded(f'CAST({ident} AS VARCHAR)')}, {needle})")
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
        needle = _folded(filters.bind(q.strip()))
        if text_columns:
            filters.clauses.append(
                " OR ".join(
                    f"contains({_folded(quote_ident(c['name']))}, {needle})" for c in text_columns
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


def _has_rowid_column(record: DatasetRecord) -> bool:
    return any(c["name"].lower() == "rowid" for c in record.columns)


# -- cursors --------------------------------------------------------------------------------


def _fingerprint(sort: Sort, filters: Filters) -> str:
    raw = json.dumps([sort.text, filters.signature], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict):
            raise ValueError
        return payload
    except (ValueError, TypeError):
        raise BadRequest(
            "The cursor is not valid; start again from the first page.", code="invalid_cursor"
        ) from None


def _keyset_clause(filters: Filters, sort: Sort, cursor: dict[str, Any]) -> str:
    rowid = filters.bind(int(cursor["r"]))
    if sort.column is None:
        return f"rowid > {rowid}"
    ident = quote_ident(sort.column["name"])
    if cursor.get("n"):
        return f"{ident} IS NULL AND rowid > {rowid}"
    value = f"CAST({filters.bind(cursor['v'])} AS {sort.column['type']})"
    beyond = "<" if sort.descending else ">"
    return f"{ident} {beyond} {value} OR ({ident} = {value} AND rowid > {rowid}) OR {ident} IS NULL"


def _can_keyset(record: DatasetRecord, sort: Sort) -> bool:
    if _has_rowid_column(record):
        return False
    return sort.column is None or bool(_SIMPLE_TYPE.match(sort.column["type"]))


# -- rows -----------------------------------------------------------------------------------


def read_rows(
    cur: duckdb.DuckDBPyConnection,
    record: DatasetRecord,
    *,
    items: Sequence[tuple[str, str]],
    limit: int,
    cursor: str | None,
    offset: int | None,
    sort: str | None,
    q: str | None,
    timeout_s: float,
) -> dict[str, Any]:
    limit = max(1, min(limit, MAX_LIMIT))
    filters = parse_filters(cur, record, items, q)
    order = parse_sort(record, sort)
    fingerprint = _fingerprint(order, filters)
    keyset = _can_keyset(record, order)
    start = offset or 0
    extra: list[str] = []
    if cursor is not None:
        if offset is not None:
            raise BadRequest("Give either cursor or offset, not both.", code="invalid_cursor")
        state = decode_cursor(cursor)
        if state.get("f") != fingerprint:
            raise BadRequest(
                "The cursor belongs to another sort or other filters; start again from the "
                "first page.",
                code="invalid_cursor",
            )
        start = int(state.get("o", 0))
        if state.get("k") == "keyset":
            extra.append(_keyset_clause(filters, order, state))
            skip = 0
        else:
            skip = start
    else:
        skip = start
    if skip < 0:
        raise BadRequest("offset must not be negative.", code="invalid_offset")

    hidden = ", rowid AS __myapp_rowid"
    if order.column is not None and keyset:
        hidden = f", CAST({quote_ident(order.column['name'])} AS VARCHAR), rowid"
    sql = (
        f"SELECT *{hidden} FROM {record.table}{filters.where(*extra)}"
        f"{order.order_by()} LIMIT {int(limit) + 1}"
    )
    if skip:
        sql += f" OFFSET {int(skip)}"
    try:
        with time_budget(cur, timeout_s):
            result = cur.execute(sql, filters.params)
            description = result.description or []
            fetched = result.fetchall()
    except duckdb.InterruptException:
        raise QueryTimeout(
            f"Reading rows took longer than {timeout_s:g} s; narrow the filters or sort by "
            "another column."
        ) from None
    except duckdb.ConversionException as exc:
        raise InvalidFilter(
            "A filter value does not fit its column: " + str(exc).splitlines()[0].rstrip(". ") + "."
        ) from None
    n_hidden = 2 if (order.column is not None and keyset) else 1
    visible = description[:-n_hidden]
    more = len(fetched) > limit
    page = fetched[:limit]
    types = [str(col[1]) for col in visible]
    rows = encode_rows([row[:-n_hidden] for row in page], types)

    next_token = None
    if more and page:
        last = page[-1]
        state = {"f": fingerprint, "o": start + len(page)}
        if keyset:
            state["k"] = "keyset"
            state["r"] = last[-1]
            if order.column is not None:
                state["v"] = last[-2]
                state["n"] = last[-2] is None
        else:
            state["k"] = "offset"
        next_token = encode_cursor(state)

    total, exact = count_rows(cur, record, filters)
    return {
        "columns": describe_columns(visible),
        "rows": rows,
        "next": next_token,
        "total": total,
        "total_exact": exact,
        "offset": start,
        "limit": limit,
    }


def count_rows(
    cur: duckdb.DuckDBPyConnection, record: DatasetRecord, filters: Filters
) -> tuple[int | None, bool]:
    """Exact when cheap (no filter: the catalog; else a count within a budget), else estimated."""
    if not filters.active:
        return record.row_count, True
    table = record.table
    try:
        with time_budget(cur, COUNT_BUDGET_S):
            row = cur.execute(
                f"SELECT count(*) FROM {table}{filters.where()}", filters.params
            ).fetchone()
        return int(row[0]), True
    except duckdb.InterruptException:
        pass
    try:
        with time_budget(cur, ESTIMATE_BUDGET_S):
            # A system sample reads whole vectors, so its size varies: scale the share of
            # matching rows in it to the table's exact row count.
            condition = " AND ".join(f"({c})" for c in filters.clauses)
            sampled, matched = cur.execute(
                f"SELECT count(*), count(*) FILTER (WHERE {condition}) FROM (SELECT * FROM "
                f"{table} USING SAMPLE {ESTIMATE_SAMPLE_PERCENT}% (system))",
                filters.params,
            ).fetchone()
        if not sampled:
            return None, False
        return round(record.row_count * matched / sampled), False
    except duckdb.InterruptException:
        return None, False


# -- facets ---------------------------------------------------------------------------------


def read_facets(
    cur: duckdb.DuckDBPyConnection,
    record: DatasetRecord,
    *,
    columns: Sequence[str],
    items: Sequence[tuple[str, str]],
    q: str | None,
    size: int,
) -> dict[str, Any]:
    if not columns:
        raise BadRequest(
            "Name at least one column to count, e.g. facets?column=city.", code="missing_column"
        )
    if len(columns) > MAX_FACET_COLUMNS:
        raise BadRequest(f"At most {MAX_FACET_COLUMNS} columns per facet request.")
    size = max(1, min(size, MAX_FACET_SIZE))
    filters = parse_filters(cur, record, items, q)
    facets: dict[str, list[dict[str, Any]]] = {}
    timed_out: list[str] = []
    for name in columns:
        column = resolve_column(record, name)
        ident = quote_ident(column["name"])
        sql = (
            f"SELECT {ident} AS value, count(*) AS n FROM {record.table}"
            f"{filters.where()} GROUP BY ALL ORDER BY n DESC, value NULLS LAST LIMIT {size}"
        )
        try:
            with time_budget(cur, FACET_BUDGET_S):
                result = cur.execute(sql, filters.params)
                value_type = str(result.description[0][1])
                rows = result.fetchall()
        except duckdb.InterruptException:
            timed_out.append(column["name"])
            facets[column["name"]] = []
            continue
        encoded = encode_rows(rows, [value_type, "BIGINT"])
        facets[column["name"]] = [{"value": v, "count": n} for v, n in encoded]
    return {"facets": facets, "timed_out": timed_out}


# -- exports --------------------------------------------------------------------------------


def export_select(
    cur: duckdb.DuckDBPyConnection,
    record: DatasetRecord,
    *,
    items: Sequence[tuple[str, str]],
    sort: str | None,
    q: str | None,
) -> tuple[str, dict[str, Any]]:
    """The SELECT of an export with the same filters and sort as /rows."""
    filters = parse_filters(cur, record, items, q)
    order = parse_sort(record, sort)
    order_by = order.order_by() if order.column is not None else ""
    return f"SELECT * FROM {record.table}{filters.where()}{order_by}", filters.params
