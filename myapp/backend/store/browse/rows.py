"""Pages of rows: the page query, its total (exact within a budget, else estimated), the cache."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import duckdb
import pydantic_core

from myapp.models.datasets import RowsPage

from ...errors import BadRequest
from ...lake import engine as lake
from ..datasets import DatasetRecord
from ..sql import quote_ident
from ..values import describe_columns, encode_rows
from .budgets import QueryTimeout, time_budget
from .cursors import (
    MAX_CURSOR_NUMBER,
    Cursor,
    can_keyset,
    cursor_fingerprint,
    encode_cursor,
    keyset_clause,
    parse_cursor,
    tie_test,
    ties_shown,
)
from .filters import (
    MAX_LIMIT,
    Filters,
    InvalidFilter,
    Sort,
    has_rowid_column,
    parse_filters,
    parse_sort,
)

# Counting rows under filters is exact when it finishes within this budget; otherwise the
# total is estimated from a sample and flagged as such.
COUNT_BUDGET_S = 1.5
ESTIMATE_BUDGET_S = 1.0
ESTIMATE_SAMPLE_PERCENT = 2

# Cursor pages that start within this many rows of the first are read with OFFSET, not with
# the cursor's range: the top-N keeps at most ~2,000 rowids, and the range filter costs more
# than that near the top (rowid top-N, 51 rows from row 950, load 6-7: 1M sorted by a DOUBLE
# 46 vs 64 ms, by a VARCHAR 96 vs 132 ms; 5M 71 vs 116 and 367 vs 415 ms). From row 5,000 the
# range wins (1M: 49 vs 73 ms by a DOUBLE).
OFFSET_PAGES_ROWS = 1024

# Hidden columns of the page query, after the dataset's own.
_ROWID = "__myapp_rowid"
_KEY = "__myapp_key"
_TOTAL = "__myapp_total"
HIDDEN = "__myapp_"


class BrowseCache:
    """Counts and facets already computed, per data file and filters.

    A dataset's data file is written once and never changed (a replace or append writes a new
    one), so an answer computed for a file and a set of filters stays true for as long as the
    file exists: reloading a page, changing its sort or paging does not count again. Bounded;
    the oldest entries go first.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Any:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: tuple, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def filters_key(filters: Filters) -> str:
    return json.dumps(filters.signature, sort_keys=True, default=str)


# Filter operators whose test costs real work per row (lower-casing and searching text). A count
# under such filters costs about what the page does, so page and count share one scan. Under
# comparisons DuckDB counts from the filtered columns alone in a few ms, while the one-scan
# top-N would give up the sort's dynamic filter: 5M rows, `score > n` sorted by v, 270 ms one
# scan against 67 ms for the page alone (bench/browse.py).
_COSTLY_OPS = frozenset({"contains", "startswith", "q"})


def _costly_to_count(filters: Filters) -> bool:
    return any(item[1] in _COSTLY_OPS for item in filters.signature)


def _late_rows(record: DatasetRecord) -> bool:
    """Whether a page may pick its rows by rowid first and read their columns after.

    A dataset's own table in its data file has DuckDB's rowid; a user column named rowid
    would shadow it, and the lake's tables are read through another extension: those take
    the plain query, which sorts whole rows.
    """
    return not lake.MODE.active and not has_rowid_column(record)


def _late(record: DatasetRecord, order: Sort, picked: str, *, key: bool, lead: str = "") -> str:
    """The page's rows read after the top-N chose their rowids (`picked`, a subquery of
    rowids), in the page's order, with the hidden rowid (and sort key text) columns.

    DuckDB sorts only the sort column and the rowid this way, then reads the other columns of
    the page's rows alone: its own late materialisation stops at 50 rows
    (`late_materialization_max_rows`), and a page asks for limit + 1. 1M rows, sort by a
    DOUBLE, 51 rows: 33 ms against 83-120 ms for the whole rows in the top-N (load 9-15).
    """
    text = ""
    if key and order.column is not None:
        text = f", CAST({quote_ident(order.column['name'])} AS VARCHAR) AS {_KEY}"
    return (
        f"SELECT {lead}*, rowid AS {_ROWID}{text} FROM {record.table} "
        f"WHERE rowid IN ({picked}){order.order_by()}"
    )


def fused_page_sql(
    record: DatasetRecord, order: Sort, where: str, *, limit: int
) -> tuple[str, int]:
    """A first page and the count under the filters, in one scan.

    Counting separately reads and filters the table a second time, which costs as much as the
    page itself when the filter is a search (1M rows, `q`: page 92 ms, count 104 ms, both
    together in one scan 134 ms). The top-N comes from max_by/min_by over a key whose order is
    the page's: non-NULL before NULL, the column, then the rowid. Columns: the total, the
    dataset's own, the rowid, the sort key as text.
    """
    assert order.column is not None
    ident = quote_ident(order.column["name"])
    if order.descending:
        key = f"struct_pack(k1 := {ident} IS NOT NULL, k2 := {ident}, k3 := -rowid)"
    else:
        key = f"struct_pack(k1 := {ident} IS NULL, k2 := {ident}, k3 := rowid)"
    pick = "max_by" if order.descending else "min_by"
    direction = "DESC" if order.descending else "ASC"
    if _late_rows(record):
        # Only the rowids ride through the aggregate; the rows are read for them after.
        top = f"{pick}(rowid, {key}, {int(limit) + 1})"
        sql = (
            f"WITH top AS MATERIALIZED (SELECT count(*) AS {_TOTAL}, {top} AS ids "
            f"FROM {record.table}{where}) "
        ) + _late(
            record,
            order,
            "SELECT unnest(ids) FROM top",
            key=True,
            lead=f"(SELECT {_TOTAL} FROM top) AS {_TOTAL}, ",
        )
        return sql, 2
    fields = ", ".join(
        f"{quote_ident(c['name'])} := {quote_ident(c['name'])}" for c in record.columns
    )
    row = f"struct_pack({fields}, {_ROWID} := rowid)"
    top = f"{pick}({row}, {key}, {int(limit) + 1})"
    sql = (
        f"SELECT *, CAST({ident} AS VARCHAR) AS {_KEY} FROM ("
        f"SELECT {_TOTAL}, UNNEST(s) FROM (SELECT {_TOTAL}, UNNEST(top) AS s FROM ("
        f"SELECT count(*) AS {_TOTAL}, {top} AS top "
        f"FROM {record.table}{where}))) ORDER BY {ident} {direction} NULLS LAST, {_ROWID}"
    )
    return sql, 2


def page_sql(
    record: DatasetRecord, order: Sort, where: str, *, limit: int, skip: int, keyset: bool
) -> tuple[str, int]:
    """The page query and how many hidden columns end each row.

    The sort key's text (for the next cursor) is computed over the page's rows only: in the
    same projection as the ORDER BY … LIMIT, DuckDB computes it for every row of the table
    before the top-N (1M rows sorted by a DOUBLE: 129 ms with it, 24 ms without).
    """
    offset = f" OFFSET {int(skip)}" if skip else ""
    with_key = order.column is not None and keyset
    if _late_rows(record):
        picked = f"SELECT rowid FROM {record.table}{where}{order.order_by()} LIMIT {int(limit) + 1}"
        return _late(record, order, picked + offset, key=with_key), 2 if with_key else 1
    inner = (
        f"SELECT *, rowid AS {_ROWID} FROM {record.table}{where}{order.order_by()}"
        f" LIMIT {int(limit) + 1}{offset}"
    )
    if not with_key:
        return inner, 1
    assert order.column is not None
    ident = quote_ident(order.column["name"])
    direction = "DESC" if order.descending else "ASC"
    # The outer ORDER BY sorts the page's few rows again: a projection over a subquery keeps
    # its order in DuckDB today, but nothing promises it.
    sql = (
        f"SELECT *, CAST({ident} AS VARCHAR) AS {_KEY} FROM ({inner}) "
        f"ORDER BY {ident} {direction} NULLS LAST, {_ROWID}"
    )
    return sql, 2


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
    cache: BrowseCache | None = None,
) -> dict[str, Any]:
    limit = max(1, min(limit, MAX_LIMIT))
    filters = parse_filters(cur, record, items, q)
    order = parse_sort(record, sort)
    fingerprint = cursor_fingerprint(record, order, filters)
    keyset = can_keyset(record, order)
    start = offset or 0
    extra: list[str] = []
    params = dict(filters.params)
    state: Cursor | None = None
    if cursor is not None:
        if offset is not None:
            raise BadRequest("Give either cursor or offset, not both.", code="invalid_cursor")
        state = parse_cursor(cursor, fingerprint, order, keyset)
        start = state.offset
        if state.keyset:
            # Checked whichever way the page is read: a cursor we did not make is refused alike.
            clause, keyset_params, skip = keyset_clause(cur, order, state)
            if order.column is not None and start < OFFSET_PAGES_ROWS and _late_rows(record):
                # The same rows (a data file never changes; the order is total): near the top
                # a top-N that counts past the rows before is cheaper than the range.
                skip = start
            else:
                extra.append(clause)
                params.update(keyset_params)
        else:
            skip = start
    else:
        skip = start
    if skip < 0:
        raise BadRequest("offset must not be negative.", code="invalid_offset")
    if skip > MAX_CURSOR_NUMBER:
        raise BadRequest(
            f"offset must be at most {MAX_CURSOR_NUMBER}; no dataset has that many rows.",
            code="invalid_offset",
        )

    # The total, when it is already known: from the cursor (tied to this file and these
    # filters, so the first page's total still holds), from the cache, or from the catalog.
    count_key = ("count", record.file_id, filters_key(filters))
    known: tuple[int | None, bool] | None = None
    if state is not None and state.total_known:
        known = (state.total, state.total_exact)
    elif not filters.active:
        known = (record.row_count, True)
    elif cache is not None:
        known = cache.get(count_key)

    where = filters.where(*extra)
    fetched: list[tuple] | None = None
    leading = 0
    if (
        known is None
        and state is None
        and not skip
        and order.column is not None
        and keyset
        and _costly_to_count(filters)
    ):
        fused_sql, n_hidden = fused_page_sql(record, order, where, limit=limit)
        try:
            # Within the count's own budget (and the page's): a count that would not finish
            # in it is an estimate, which the separate path below makes, with the page's
            # whole time limit.
            with time_budget(cur, min(COUNT_BUDGET_S, timeout_s)):
                result = cur.execute(fused_sql, params)
                description = result.description or []
                fetched = result.fetchall()
        except duckdb.InterruptException:
            fetched = None
        except duckdb.ConversionException as exc:
            raise _filter_mismatch(exc) from None
        if fetched is not None:
            leading = 1
            known = (int(fetched[0][0]) if fetched else 0, True)
    if fetched is None:
        sql, n_hidden = page_sql(record, order, where, limit=limit, skip=skip, keyset=keyset)
        in_rowid_order = False
        if order.column is None and not filters.active and _dense(cur, record, cache):
            # Row positions are the rowids: the page is a range of them, which DuckDB reads
            # from the row group that holds it (1M rows, 51 rows from row 500,000: 1.7 ms;
            # the top-N of rowids with OFFSET 49 ms; DuckDB's own LIMIT 51 1.6 ms).
            low = state.rowid + 1 if state is not None and state.keyset else skip
            # No filters: the range's bounds are the only parameters. The rows are put in
            # rowid order here: an ORDER BY cost more than the range's read (1M rows, 51 rows:
            # 0.80 ms without it, 1.09 ms with it), and the range holds each rowid once.
            params = {"lo": low, "hi": low + int(limit) + 1}
            sql = (
                f"SELECT *, rowid AS {_ROWID} FROM {record.table} "
                "WHERE rowid >= $lo AND rowid < $hi"
            )
            n_hidden = 1
            in_rowid_order = True
        try:
            with time_budget(cur, timeout_s):
                result = cur.execute(sql, params)
                description = result.description or []
                fetched = result.fetchall()
            if in_rowid_order:
                fetched.sort(key=itemgetter(-1))
        except duckdb.InterruptException:
            raise QueryTimeout(
                f"Reading rows took longer than {timeout_s:g} s; narrow the filters or sort by "
                "another column."
            ) from None
        except duckdb.ConversionException as exc:
            raise _filter_mismatch(exc) from None
    visible = description[leading : len(description) - n_hidden]
    more = len(fetched) > limit
    page = fetched[:limit]
    types = [str(col[1]) for col in visible]
    rows = encode_rows([row[leading : len(row) - n_hidden] for row in page], types)

    if known is not None:
        total, exact = known
    elif state is None and not skip and not more:
        # The whole filtered table is on this first page: its length is the count.
        total, exact = len(page), True
    else:
        total, exact = count_rows(cur, record, filters)
    if cache is not None and filters.active and exact and cache.get(count_key) is None:
        cache.put(count_key, (total, exact))

    next_token = None
    if more and page:
        last = page[-1]
        token: dict[str, Any] = {
            "f": fingerprint,
            "o": start + len(page),
            "t": total,
            "x": exact,
        }
        if keyset:
            token["k"] = "keyset"
            token["r"] = last[-1] if n_hidden == 1 else last[-2]
            if order.column is not None:
                token["v"] = last[-1]
                token["n"] = last[-1] is None
                names = [c["name"] for c in record.columns]
                position = leading + names.index(order.column["name"])
                tied = tie_test(order.column, position, last) if last[-1] is not None else None
                ties = ties_shown(page, state, start, tied) if tied else None
                if ties is not None:
                    token["e"] = ties
        else:
            token["k"] = "offset"
        next_token = encode_cursor(token)

    return {
        "columns": describe_columns(visible),
        "rows": rows,
        "next": next_token,
        "total": total,
        "total_exact": exact,
        "offset": start,
        "limit": limit,
    }


# The answer's fields in the order the response model writes them.
_PAGE_FIELDS = tuple(RowsPage.model_fields)


def page_json(page: dict[str, Any]) -> bytes:
    """A page of `read_rows` as the bytes FastAPI's response model writes for it: pydantic's
    own encoder, without validating the rows again (they are JSON-safe already, and the
    model's `Any` cells would pass as they are). A whole page of 50 rows: 10 µs against 21."""
    return pydantic_core.to_json({field: page[field] for field in _PAGE_FIELDS})


def _dense(
    cur: duckdb.DuckDBPyConnection, record: DatasetRecord, cache: BrowseCache | None
) -> bool:
    """Whether the data file's rowids are 0 … rows - 1, each row's position (a file is written
    once, so they are; checked once per file all the same: distinct non-negative numbers whose
    largest is their count less one are exactly those)."""
    if cache is None or not _late_rows(record):
        return False
    key = ("dense", record.file_id)
    found = cache.get(key)
    if found is None:
        count, largest = cur.execute(f"SELECT count(*), max(rowid) FROM {record.table}").fetchone()
        found = "yes" if count == record.row_count and largest == count - 1 else "no"
        cache.put(key, found)
    return found == "yes"


def _filter_mismatch(exc: duckdb.ConversionException) -> InvalidFilter:
    return InvalidFilter(
        "A filter value does not fit its column: " + str(exc).splitlines()[0].rstrip(". ") + "."
    )


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
