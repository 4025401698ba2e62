"""How a value from the API reads in a table cell: the one rule of every page.

Server-rendered tables use it through myapp/frontend/cells.py (which adds the HTML); tables
drawn in the browser use static/js/cells.js, the same rule in JavaScript, fed the constants and
the type classes from here (contract.browser_config); a browser test renders the same values
through both. The API and exports keep full precision; only pages round, to what a double can
carry faithfully:

- numbers: integers with thousands separators; floating point at most 15 significant digits
  (every decimal with 15 digits survives a round trip through a double, so arithmetic noise like
  5314546.740000004 reads 5,314,546.74), in plain notation between 1e-6 and 1e15, else
  d.ddde±x; DECIMALs (strings in the API) as they are, grouped; NaN and infinities as words;
- dates as they are; timestamps with a space instead of "T" and without a midnight time part;
- true/false; text as it is;
- lists and objects as compact JSON, written as a browser's JSON.stringify writes what it
  parsed: numbers in JavaScript's notation (1.0 is 1, 1e21 is 1e+21) and an object's
  array-index keys ("0", "7") first, in ascending order, since a parsed JavaScript object
  keeps them so;
- text longer than CUT_CHARS characters (code points, so JavaScript's UTF-16 and Python count
  alike) or than CUT_LINES lines is cut there and marked "… (cut, 20,000 characters)", with a
  way to the whole value: a value of 20 MB in one cell must neither make a row a screen tall
  nor send the browser megabytes it did not ask for.

Numbers and dates never break inside (the CSS class says so) and numbers align right.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

from .types import type_class

SIGNIFICANT = 15
PLAIN_MIN = 1e-6
PLAIN_MAX = 1e15
# About ten lines of a cell at its widest (30rem): a row stays readable, a value recognisable.
CUT_CHARS = 500
CUT_LINES = 10

_NUMERIC_TEXT = re.compile(r"^([+-]?)(\d+)(\.\d+)?$")
_MIDNIGHT = re.compile(r"^(\d{4,}-\d\d-\d\d)T00:00:00(\.0+)?(Z|[+-]00:?00)?$")
_TIMESTAMP = re.compile(r"^(\d{4,}-\d\d-\d\d)T(\d\d:\d\d)")
_ARRAY_INDEX = re.compile(r"^(0|[1-9]\d{0,9})$")
_MAX_ARRAY_INDEX = 2**32 - 2


def group(digits: str) -> str:
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
    return sign + group(whole) + (fraction or "")


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


def js_number(value: float) -> str:
    """A double as JavaScript's Number#toString writes it (ECMA-262 Number::toString): the
    same shortest round-trip digits as Python's repr, placed by JavaScript's rules."""
    if value != value or value in (float("inf"), float("-inf")):
        return "null"  # what JSON.stringify writes for them
    if value == 0:
        return "0"
    sign, digits_tuple, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digits_tuple)).rstrip("0") or "0"
    exponent = int(exponent) + len(digits_tuple) - len(digits)
    k = len(digits)
    n = k + exponent  # the decimal point sits after n digits
    minus = "-" if sign else ""
    if k <= n <= 21:
        return minus + digits + "0" * (n - k)
    if 0 < n <= 21:
        return minus + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return minus + "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{minus}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _array_index(key: str) -> bool:
    return bool(_ARRAY_INDEX.match(key)) and int(key) <= _MAX_ARRAY_INDEX


def json_text(value: Any) -> str:
    """A list or object as compact JSON, exactly as a browser's JSON.stringify writes the same
    value parsed from the API's JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return js_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        keys = [str(k) for k in value]
        items = dict(zip(keys, value.values(), strict=True))
        indices = sorted((k for k in keys if _array_index(k)), key=int)
        ordered = indices + [k for k in keys if not _array_index(k)]
        inner = ",".join(f"{json_text(k)}:{json_text(items[k])}" for k in ordered)
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_text(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


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
        return json_text(value)
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
    return f"(cut, {group(str(total))} characters)"
