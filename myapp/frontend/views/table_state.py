"""The table page's last good state: a bad filter, sort or search value never costs the page.

When the backend refuses a page of rows (400), the parts of the request it names (a filter's
column, operator or value, the sort column, a cursor) are set aside and the rows are asked for
again without them, so the page still shows the table under every other filter, and the refused
part is shown beside its filter with the backend's message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..api_client import BackendError, BackendUnavailable
from .table_links import FILTER_KEY

_PAGING = ("cursor", "offset")
# Each retry drops at least one part, and a page has few; this only bounds a backend that keeps
# refusing for reasons the request does not show.
MAX_RETRIES = 4


@dataclass
class Problem:
    key: str
    value: str
    message: str


def _is_input_error(exc: BackendError) -> bool:
    return not isinstance(exc, BackendUnavailable) and exc.status == 400


def _implicated(items: list[tuple[str, str]], exc: BackendError) -> list[int]:
    """Positions of the request's parts that the backend's error names."""
    detail = exc.detail if isinstance(exc.detail, dict) else {}
    column = str(detail.get("column", "")).lower()
    parameter = detail.get("parameter")
    operator = detail.get("operator")
    value = detail.get("value")
    found = []
    for i, (key, item_value) in enumerate(items):
        if key in _PAGING:
            if exc.code in ("invalid_cursor", "invalid_offset"):
                found.append(i)
            continue
        if key == "sort":
            if column and item_value.lstrip("-").lower() == column:
                found.append(i)
            continue
        if key == "q":
            continue
        match = FILTER_KEY.match(key)
        if match is None:
            if parameter == key:
                found.append(i)
            continue
        if parameter is not None:
            if parameter == key:
                found.append(i)
            continue
        if not column or match["column"].lower() != column:
            continue
        if operator is not None and match["op"] != operator:
            continue
        if value is not None and value not in (item_value, *item_value.split(",")):
            continue
        found.append(i)
    return found


def rows_in_good_state(
    fetch: Callable[[list[tuple[str, str]]], Any], items: list[tuple[str, str]]
) -> tuple[Any, list[tuple[str, str]], list[Problem]]:
    """(page, the items it was read with, the parts set aside and why)."""
    problems: list[Problem] = []
    for _ in range(MAX_RETRIES):
        try:
            return fetch(items), items, problems
        except BackendError as exc:
            if not _is_input_error(exc):
                raise
            bad = _implicated(items, exc)
            if not bad:
                # Nothing named: fall back to the plain table, keeping only the page size.
                bad = [i for i, (k, _) in enumerate(items) if k != "limit"]
                if not bad:
                    raise
            for i in bad:
                key, value = items[i]
                if key not in _PAGING:
                    problems.append(Problem(key, value, exc.message))
            items = [item for i, item in enumerate(items) if i not in bad]
    return fetch(items), items, problems
