"""The table page's state in its address: the filters, sort, search, facets and page in the
query string, and every link of the page, each a full state of its own.

Any view of a table can be bookmarked and shared because nothing of it lives anywhere else.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from flask import g, url_for

from myapp.contract import filters as filter_ops
from myapp.contract.types import type_class

from .sql import EXPORT_FORMATS, export_choice

# What the filter builder offers, in the words people use.
OPERATORS = tuple((op.key, op.label) for op in filter_ops.OPERATORS)
OPERATOR_WORDS = dict(OPERATORS)
VALUELESS = {op.key for op in filter_ops.OPERATORS if not op.takes_value}

DEFAULT_FACETS = 3

# Query parameters that are the page's state, not filters.
STATE_KEYS = {"sort", "q", "limit", "cursor", "offset", "facet"}
FILTER_KEY = re.compile(r"^(?P<column>.+)__(?P<op>[a-z]+)$")


def _is_filter(key: str) -> bool:
    match = FILTER_KEY.match(key)
    return key not in STATE_KEYS and match is not None and match["op"] in OPERATOR_WORDS


def filters_of(args) -> list[dict[str, str]]:
    """The filters in the query string, in order, as (column, op, value)."""
    out = []
    for key, value in args.items(multi=True):
        if _is_filter(key):
            match = FILTER_KEY.match(key)
            assert match is not None
            out.append({"column": match["column"], "op": match["op"], "value": value})
    return out


def _query_items(args, *, drop: set[str] = frozenset(), add: list | None = None) -> list:
    items = [(k, v) for k, v in args.items(multi=True) if k not in drop]
    return items + (add or [])


def table_url(name: str, items: list[tuple[str, str]], endpoint: str = "datasets.table") -> str:
    base = _endpoint_url(endpoint, name)
    return f"{base}?{urlencode(items)}" if items else base


def _endpoint_url(endpoint: str, name: str) -> str:
    """url_for(endpoint, name=name), built once per request: a table page makes some forty
    links to the same few addresses, and werkzeug builds each anew (0.25 ms a page)."""
    built = g.get("_table_urls")
    if built is None:
        built = g._table_urls = {}
    key = (endpoint, name)
    url = built.get(key)
    if url is None:
        url = built[key] = url_for(endpoint, name=name)
    return url


def builder_state(args, problems) -> dict[str, str]:
    """The filter builder's fields: a refused filter comes back into them to be corrected."""
    for problem in problems:
        match = FILTER_KEY.match(problem.key)
        if match and match["op"] in OPERATOR_WORDS:
            return {"column": match["column"], "op": match["op"], "value": problem.value}
    return {"column": args.get("add_column", ""), "op": "", "value": ""}


def chosen_facet_columns(dataset: dict[str, Any], args) -> list[str]:
    if "facet" in args:
        chosen = [c for c in args.getlist("facet") if c]
        known = {c["name"] for c in dataset["columns"]}
        return [c for c in dict.fromkeys(chosen) if c in known]
    text = [c["name"] for c in dataset["columns"] if type_class(c["type"]) in ("text", "boolean")]
    return text[:DEFAULT_FACETS]


def page_links(name, args, page, limit, filters, facet_columns) -> dict[str, Any]:
    """Every link of the table page, each a full state in its query string."""
    no_paging = {"cursor", "offset"}
    base = _query_items(args, drop=no_paging)
    links: dict[str, Any] = {}
    sort = args.get("sort", "")

    def sort_link(column: str) -> tuple[str, str]:
        # Cycle: ascending → descending → unsorted.
        if sort == column:
            target, state = f"-{column}", "ascending"
        elif sort == f"-{column}":
            target, state = "", "descending"
        else:
            target, state = column, "none"
        items = _query_items(args, drop=no_paging | {"sort"})
        if target:
            items.append(("sort", target))
        return table_url(name, items), state

    links["sort"] = sort_link
    start = page.get("offset") or 0
    if page.get("next"):
        links["next"] = table_url(name, [*base, ("cursor", page["next"])])
    if start > 0:
        previous = max(0, start - limit)
        links["previous"] = table_url(
            name, [*base, *([("offset", str(previous))] if previous else [])]
        )
        links["first"] = table_url(name, base)
    items = [(k, v) for k, v in args.items(multi=True) if k not in no_paging]
    positions = [i for i, (k, _) in enumerate(items) if _is_filter(k)]
    links["remove_filter"] = [
        table_url(name, [item for i, item in enumerate(items) if i != position])
        for position in positions
    ]
    links["remove_search"] = table_url(name, [(k, v) for k, v in items if k != "q"])
    links["clear_filters"] = table_url(
        name, [(k, v) for k, v in base if k in STATE_KEYS and k != "q"]
    )
    facet_state = [("facet", c) for c in facet_columns] or [("facet", "")]
    without_facets = [(k, v) for k, v in base if k != "facet"]

    def facet_value_link(column: str, value: Any) -> str:
        if value is None:
            condition = (f"{column}__isnull", "1")
        else:
            condition = (f"{column}__eq", _facet_text(value))
        return table_url(name, [*without_facets, *facet_state, condition])

    links["facet_value"] = facet_value_link
    links["remove_facet"] = {
        column: table_url(
            name,
            [
                *without_facets,
                *([("facet", c) for c in facet_columns if c != column] or [("facet", "")]),
            ],
        )
        for column in facet_columns
    }
    links["export"] = {
        fmt: _endpoint_url("datasets.export", name)
        + "?"
        + urlencode(
            list(export_choice(fmt).items())
            + [
                (k, v)
                for k, v in args.items(multi=True)
                if k not in STATE_KEYS or k in ("sort", "q")
            ]
        )
        for fmt, _ in EXPORT_FORMATS
    }
    links["profile"] = _endpoint_url("datasets.profile", name)
    # The row at a position of this very state (sort, filters, search): its own page shows
    # the values a cell had to cut.
    row_state = [(k, v) for k, v in base if k not in ("limit", "facet")]
    links["row"] = lambda index: table_url(
        name, [*row_state, ("offset", str(start + index))], endpoint="datasets.row"
    )
    links["state_without"] = lambda *keys: [(k, v) for k, v in base if k not in keys]
    return links


def _facet_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
