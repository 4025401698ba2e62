"""Table cells as HTML: the cell rule of myapp/contract/cells.py, with the way to a cut value.

Pages whose values are bounded by the result byte cap (query results) carry the whole of a cut
value in a closed <details>, shown in a box of bounded height when opened; the table page of a
dataset links to the row's own page instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from markupsafe import Markup, escape

from myapp.contract.cells import (
    CUT_CHARS,
    CUT_LINES,
    cut,
    format_float,
    format_value,
    kind,
    marker,
)
from myapp.contract.types import type_class

__all__ = [
    "CUT_CHARS",
    "CUT_LINES",
    "cut",
    "format_float",
    "format_value",
    "kind",
    "marker",
    "render",
    "render_rows",
]


def render(value: Any, dtype: str | None = None, *, full_href: str | None = None) -> Markup:
    """A cell's content as HTML: its text, or when too long the part shown, the marker and
    the way to the whole value (a link to `full_href`, else the value in a closed details)."""
    text = format_value(value, dtype)
    parts = cut(text)
    if parts is None:
        return escape(text)
    shown, total = parts
    head = Markup('<span class="cell-shown">{}…</span> ').format(shown)
    if full_href is not None:
        return head + Markup(
            '<a class="cell-marker" href="{}" data-testid="cell-cut">{} Show all</a>'
        ).format(full_href, marker(total))
    return Markup(
        '<details class="cell-cut" data-testid="cell-cut"><summary>{}'
        '<span class="cell-marker">{}</span></summary>'
        '<div class="cell-full" tabindex="0">{}</div></details>'
    ).format(head, marker(total), text)


# Integers of fewer than 100 digits are written directly: never cut (at most 132 characters with
# sign and commas, under CUT_CHARS), nothing to escape.
_SHORT_INT = 10**100


def _column_plan(dtype: str | None) -> tuple[str | None, str | None, bool]:
    """(dtype, the class every non-NULL cell of the column has or None when it depends on the
    value, whether a text value reads as it is): `kind` and `format_value` of the contract
    decide both from the type's class, found once per column here instead of once or twice
    per cell (a fifth of render_rows each)."""
    cls = type_class(dtype or "")
    fixed = {"integer": "num", "number": "num", "temporal": "date", "boolean": "bool"}.get(cls)
    # format_value gives a text of a text column back as it is.
    return dtype, fixed, cls == "text" and bool(dtype)


def render_rows(
    rows: list[list[Any]], dtypes: list[str | None], row_href: Callable[[int], str]
) -> Markup:
    """A table body's rows (`<tr>` of `<td>`, each with its kind's class), every cell as
    `render` makes it; `row_href(i)` is the way to row i's whole values, asked only for rows
    with a cut cell.

    The same markup in a Jinja loop took 3.4 ms for 50 rows of 7 columns, a third of the table
    page's rendering, against 1.1 ms here (most of it the row link made for every row); each
    column's class found once rather than per cell, and integers and texts written without
    the general rule's tests (the same text: tests/unit/test_cells.py), 0.5 ms.
    """
    plans = [_column_plan(dtype) for dtype in dtypes]
    out: list[str] = []
    append = out.append
    for index, row in enumerate(rows):
        href: str | None = None
        append("<tr>")
        for value, (dtype, fixed, plain_text) in zip(row, plans, strict=False):
            if value is None:
                append('<td class="cell-null">null</td>')
                continue
            kind_ = fixed or kind(dtype, value)
            if type(value) is int and -_SHORT_INT < value < _SHORT_INT:
                # format_value's grouping of an integer's digits, as Python's own (too short
                # to be cut).
                append(f'<td class="cell-{kind_}">{value:,}</td>')
                continue
            text = value if plain_text and type(value) is str else format_value(value, dtype)
            if len(text) <= CUT_CHARS and text.count("\n") < CUT_LINES:
                # cut()'s own first test: nothing to cut.
                body = escape(text)
            elif cut(text) is None:
                body = escape(text)
            else:
                if href is None:
                    href = row_href(index)
                body = render(value, dtype, full_href=href)
            # kind() is one of a few fixed class names; body is escaped or built by render.
            append(f'<td class="cell-{kind_}">{body}</td>')
        append("</tr>\n")
    # Every piece above is a literal, a fixed class name, digits and commas, or Markup made by
    # escape/render: Markup.format per cell cost as much as the Jinja loop this replaces.
    return Markup("".join(out))  # noqa: S704
