"""DuckDB values as JSON, the same way everywhere (rows of datasets, query results).

- integers beyond ±(2^53 - 1) and all DECIMALs become strings, so no client loses precision;
- NaN and ±Infinity become the strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers);
- dates, times and timestamps are ISO 8601 strings; intervals ISO 8601 durations;
- lists and arrays become arrays, structs objects, maps objects (or [{"key", "value"}] when a
  key is not a string); UUIDs strings; BLOBs DuckDB's text form with \\xNN escapes.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from functools import partial
from operator import is_not, itemgetter
from typing import Any

import orjson

from myapp.contract.types import FLOAT_TYPES, INTEGER_TYPES

MAX_SAFE_INTEGER = 2**53 - 1

# Python values of these DuckDB types are already what JSON needs; skipping conversion for them
# keeps wide text/integer results cheap.
_PASS_THROUGH = frozenset(
    {
        "VARCHAR",
        "BOOLEAN",
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "JSON",
        "NULL",
    }
)


def _interval(value: dt.timedelta) -> str:
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    days = value.days
    seconds = value.seconds + value.microseconds / 1_000_000
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs:.6f}".rstrip("0").rstrip(".")
    return f"{sign}P{days}DT{int(hours)}H{int(minutes)}M{secs_text}S"


def _blob(value: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 and b != 92 else f"\\x{b:02X}" for b in value)


def to_json_value(value: Any) -> Any:
    """One DuckDB value (as the Python client returns it) as a JSON-safe value."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Decimal):
        if value.is_nan():
            return "NaN"
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return _interval(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _blob(bytes(value))
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: to_json_value(item) for key, item in value.items()}
        return [{"key": to_json_value(k), "value": to_json_value(v)} for k, v in value.items()]
    return str(value)


def column_encoders(types: Sequence[str]) -> list[Callable[[Any], Any] | None]:
    """Per column: None where values pass through unchanged, else the converter."""
    return [None if str(t) in _PASS_THROUGH else to_json_value for t in types]


def encode_rows(rows: Sequence[Sequence[Any]], types: Sequence[str]) -> list[list[Any]]:
    """Rows from fetchall/fetchmany as JSON-safe lists, converting only columns that need it."""
    encoders = column_encoders(types)
    if all(e is None for e in encoders):
        return [list(row) for row in rows]
    active = [(i, e) for i, e in enumerate(encoders) if e is not None]
    out = []
    for row in rows:
        values = list(row)
        for i, encode in active:
            values[i] = encode(values[i])
        out.append(values)
    return out


def describe_columns(description: Sequence[Sequence[Any]] | None) -> list[dict[str, str]]:
    """`cursor.description` as [{"name", "type"}] with DuckDB's type names."""
    return [{"name": col[0], "type": str(col[1])} for col in (description or [])]


# Column types whose Python values orjson writes as the rules above want once two things are
# known for a whole batch rather than checked value by value: every integer is within
# ±(2^53 - 1) (orjson's strict integer mode refuses any other, and the batch then takes the
# value-by-value path), and every float is finite (their sum is finite only then).
_INTEGERS = INTEGER_TYPES
_FLOATS = FLOAT_TYPES
_not_none = partial(is_not, None)


def dumps_rows(rows: Sequence[Sequence[Any]], types: Sequence[str]) -> bytes:
    """`orjson.dumps(encode_rows(rows, types))`, the same bytes, without a Python call per value
    of integer and float columns: for a result of numbers that call was most of the cost of a
    query (a 10,000-row result of four columns: 30,000 calls)."""
    names = [str(t) for t in types]
    for i, name in enumerate(names):
        if name in _FLOATS:
            total = sum(filter(_not_none, map(itemgetter(i), rows)), 0.0)
            if not math.isfinite(total):
                return orjson.dumps(encode_rows(rows, types))
    active = [
        i
        for i, name in enumerate(names)
        if name not in _PASS_THROUGH and name not in _INTEGERS and name not in _FLOATS
    ]
    batch: Sequence[Sequence[Any]] = rows
    if active:
        out = []
        for row in rows:
            values = list(row)
            for i in active:
                values[i] = to_json_value(values[i])
            out.append(values)
        batch = out
    try:
        return orjson.dumps(batch, option=orjson.OPT_STRICT_INTEGER)
    except orjson.JSONEncodeError:
        return orjson.dumps(encode_rows(rows, types))
