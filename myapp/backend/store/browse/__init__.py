"""Reading datasets: pages of rows with filters, sort and cursors; facets; the SELECT of exports.

One module per topic: `filters` (a request's filters, search, sort and limits), `cursors` (page
tokens and keyset clauses), `rows` (pages and their totals), `facets`, `exports`, and `budgets`
(time limits of these queries). The names below are what routes and services use.
"""

from .budgets import QueryTimeout, time_budget
from .cursors import (
    MAX_CURSOR_CHARS,
    MAX_CURSOR_NUMBER,
    MAX_CURSOR_VALUE_CHARS,
    Cursor,
    decode_cursor,
    encode_cursor,
    parse_cursor,
)
from .exports import export_select
from .facets import DEFAULT_FACET_SIZE, read_facets
from .filters import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    OPERATORS,
    RESERVED,
    Filters,
    InvalidFilter,
    Sort,
    parse_filters,
    parse_sort,
    resolve_column,
)
from .rows import BrowseCache, count_rows, page_json, page_sql, read_rows

__all__ = [
    "DEFAULT_FACET_SIZE",
    "DEFAULT_LIMIT",
    "MAX_CURSOR_CHARS",
    "MAX_CURSOR_NUMBER",
    "MAX_CURSOR_VALUE_CHARS",
    "MAX_LIMIT",
    "OPERATORS",
    "RESERVED",
    "BrowseCache",
    "Cursor",
    "Filters",
    "InvalidFilter",
    "QueryTimeout",
    "Sort",
    "count_rows",
    "decode_cursor",
    "encode_cursor",
    "export_select",
    "page_json",
    "page_sql",
    "parse_cursor",
    "parse_filters",
    "parse_sort",
    "read_facets",
    "read_rows",
    "resolve_column",
    "time_budget",
]
