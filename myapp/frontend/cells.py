"""How a value from the API reads in a table cell: the rule every server-rendered page uses.

static/js/cells.js is the same rule for the tables drawn in the browser (the SQL page); a test
renders the same values through both. The API and exports keep full precision; only pages
round, to what a double can carry faithfully:

- numbers: integers with thousands separators; floating point at most 15 significant digits
  (every decimal with 15 digits survives a round trip through a double, so arithmetic noise like
  5314546.740000004 reads 5,314,546.74), in plain notation between 1e-6 and 1e15, else
  d.ddde±x; DECIMALs (strings in the API) as they are, grouped; NaN and infinities as words;
- dates as they are; timestamps with a space instead of "T" and without a midnight time part;
- true/false; lists and objects as JSON; text as it is.

Numbers and dates never break inside (the CSS class says so) and numbers align right.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from myapp.models.filters import type_class

SIGNIFICANT = 15
PLAIN_MIN = 1e-6
PLAIN_MAX = 1e15
_NUMERIC_TEXT = re.compile(r"^([+-]?)(\d+)(\.\d+)?$")
_MIDNIGHT = re.compile(r"^(\d{4,}-\d\d-\d\d)T00:00:00(\.0+)?(Z|[+-]00:?00)?$")
_TIMESTAMP = re.compile(r"^(\d{4,}-\d\d-\d\d)T(\d\d:\d\d)")


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
