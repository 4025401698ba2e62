"""The SELECT of a dataset export: its filters, search and sort, without a row cap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from ..datasets import DatasetRecord
from .filters import parse_filters, parse_sort


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
