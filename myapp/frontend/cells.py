"""Table cells as HTML: the cell rule of myapp/contract/cells.py, with the way to a cut value.

Pages whose values are bounded by the result byte cap (query results) carry the whole of a cut
value in a closed <details>, shown in a box of bounded height when opened; the table page of a
dataset links to the row's own page instead.
"""

from __future__ import annotations

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

__all__ = [
    "CUT_CHARS",
    "CUT_LINES",
    "cut",
    "format_float",
    "format_value",
    "kind",
    "marker",
    "render",
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
