"""Column-type classes: what kind of value a DuckDB type name holds.

One ordered table of (class, pattern); the first pattern that matches a type name wins, and a
name no pattern matches is "other" (lists, structs, maps, UUID, BLOB, INTERVAL, JSON …). The
patterns are written in the part of regular-expression syntax Python and JavaScript read alike,
because the pages compile the same table (contract.browser_config).

TIME counts as temporal: a time of day is ordered and has an epoch (seconds since midnight), so
it filters, charts and bins like a date.
"""

from __future__ import annotations

import re

INTEGER_TYPES = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
    }
)
FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE"})
TEXT_TYPES = frozenset({"VARCHAR"})

CLASS_PATTERNS: tuple[tuple[str, str], ...] = (
    ("integer", r"^U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)$"),
    ("number", r"^(FLOAT|DOUBLE|DECIMAL(\(\d+,\s*\d+\))?)$"),
    ("temporal", r"^(DATE|TIME|TIMESTAMP|TIMESTAMP_[A-Z]+|(TIME|TIMESTAMP) WITH TIME ZONE)$"),
    ("boolean", r"^BOOLEAN$"),
    ("text", r"^VARCHAR$"),
)
CLASSES = (*(name for name, _ in CLASS_PATTERNS), "other")

_COMPILED = tuple((name, re.compile(pattern)) for name, pattern in CLASS_PATTERNS)
# Nested types carry field names and element types inside their name.
_NESTED = re.compile(r"(\[|STRUCT\(|MAP\(|UNION\()")


def type_class(dtype: str | None) -> str:
    """'integer', 'number', 'temporal', 'boolean', 'text' or 'other' for a DuckDB type name."""
    text = (dtype or "").upper()
    for name, pattern in _COMPILED:
        if pattern.match(text):
            return name
    return "other"


def is_numeric(dtype: str | None) -> bool:
    """Integers, floating point and decimals: what a chart can put on its y axis."""
    return type_class(dtype) in ("integer", "number")


def is_integer(dtype: str | None) -> bool:
    return type_class(dtype) == "integer"


def is_temporal(dtype: str | None) -> bool:
    """Dates, times and timestamps (with or without a time zone or a precision suffix)."""
    return type_class(dtype) == "temporal"


def is_text(dtype: str | None) -> bool:
    return type_class(dtype) == "text"


def is_nested(dtype: str | None) -> bool:
    """Lists, arrays, structs, maps and unions."""
    return bool(_NESTED.search(dtype or ""))
