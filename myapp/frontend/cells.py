"""How a value from the API reads in a table cell: the rule every server-rendered page uses.

static/js/cells.js is the same rule for the tables drawn in the browser (the SQL page); a test
renders the same values through both. The API and exports keep full precision; only pages
round, to what a double can carry faithfully:

- numbers: integers with thousands separators; floating point at most 15 significant digits
  (every decimal with 15 digits survives a round trip through a double, so arithmetic noise like
  5314546.740000004 reads 5,314,546.74), in plain notation between 1e-6 and 1e15, else
  d.ddde±x; DECIMALs (strings in the API) as they are, grouped; NaN and infinities as words;
- dates as they are; timestamps with a space instead of "T" and without a midnight time part;
- true/false; lists and objects as JSON; text as it is;
- text longer than CUT_CHARS characters (code points, so JavaScript's UTF-16 and Python count
  alike) or than CUT_LINES lines is cut there and marked "… (cut, 20,000 characters)", with a
  way to the whole value: a value of 20 MB in one cell must neither make a row a screen tall
  nor send the browser megabytes it did not ask for. Pages whose values are bounded by the
  result byte cap (query results) carry the whole value in a closed <details>, shown in a box
  of bounded height when opened; the table page of a dataset links to the row's own page.

Numbers and dates never break inside (the CSS class says so) and numbers align right.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from markupsafe import Markup, escape

from myapp.models.filters import type_class

SIGNIFICANT = 15
PLAIN_MIN = 1e-6
PLAIN_MAX = 1e15
_NUMERIC_TEXT = re.compile(r"^([+-]?)(\d+)(\.\d+)?$")
_MIDNIGHT = re.compile(r"^(\d{4,}-\d\d-\d\d)T00:00:00(\.0+)?(Z|[+-]00:?00)?$")
_TIMESTAMP = re.compile(r"^(\d{4,}-\d\d-\d\d)T(\d\d:\d\d)")
# About ten lines of a cell at its widest (30rem): a row stays readable, a value recognisable.
CUT_CHARS = 500
CUT_LINES = 10


def _group(digits: str) -> str:
    out = []
    while len(digits) > 3:
        out.insert(0, digits[-3:])
        digits = digits[:-3]
    out.insert(0, digits)
    return ",".join(out)


def _grouped(text: str) -> str:
    match = _NUMERIC_TEXT.match(text)
    if match is None:
        return text
    sign, whole, fraction = match.groups()
    return sign + _group(whole) + (fraction or "")


def format_float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= PLAIN_MAX or magnitude < PLAIN_MIN:
        mantissa, exponent = f"{value:.{SIGNIFICANT - 1}e}".split("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{'+' if int(exponent) >= 0 else '-'}{abs(int(exponent))}"
    rounded = float(f"{value:.{SIGNIFICANT}g}")
    text = format(Decimal(repr(rounded)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return _grouped(text)


def kind(dtype: str | None, value: Any = None) -> str:
    """'num', 'date', 'bool', 'text' or 'null': the cell's class."""
    if value is None:
        return "null"
    cls = type_class(dtype or "")
    if cls in ("integer", "number"):
        return "num"
    if cls == "temporal":
        return "date"
    if cls == "boolean" or isinstance(value, bool):
        return "bool"
    if cls == "other" and not dtype and isinstance(value, (int, float)):
        return "num"
    return "text"


def format_value(value: Any, dtype: str | None = None) -> str:
    """The text of a cell for `value` of a column of type `dtype` (None when unknown)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return _grouped(str(value))
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    cls = type_class(dtype or "")
    if cls in ("integer", "number"):
        return _grouped(text)
    if cls == "temporal" or (dtype is None and _TIMESTAMP.match(text)):
        midnight = _MIDNIGHT.match(text)
        if midnight:
            return midnight.group(1)
        if _TIMESTAMP.match(text):
            return text.replace("T", " ", 1)
    return text


def cut(text: str) -> tuple[str, int] | None:
    """(the part shown, the whole text's length in characters) when `text` is too long for a
    cell, else None. cells.js cut() is the same rule."""
    if len(text) <= CUT_CHARS and text.count("\n") < CUT_LINES:
        return None
    shown = text[:CUT_CHARS]
    position = -1
    for _ in range(CUT_LINES):
        position = shown.find("\n", position + 1)
        if position < 0:
            break
    # A line break that ends the text hides nothing.
    if position >= 0 and position < len(text) - 1:
        shown = shown[:position]
    if len(shown) == len(text):
        return None
    return shown, len(text)


def marker(total: int) -> str:
    return f"(cut, {_group(str(total))} characters)"


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
