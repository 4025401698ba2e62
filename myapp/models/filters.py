"""Filter operators and column-type classes, declared once for the API, the pages and the docs.

A filter is `column__op=value`. Which operators make sense depends on the column's type: numbers
and dates compare by value, text compares only by equality and by containment, because an
ordering of text ("9" > "45") is never what someone filtering a table means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Operator:
    key: str
    label: str
    takes_value: bool = True


OPERATORS: tuple[Operator, ...] = (
    Operator("eq", "equals"),
    Operator("ne", "does not equal"),
    Operator("contains", "contains"),
    Operator("startswith", "starts with"),
    Operator("gt", "greater than"),
    Operator("gte", "at least"),
    Operator("lt", "less than"),
    Operator("lte", "at most"),
    Operator("in", "is one of (comma-separated)"),
    Operator("isnull", "is empty", takes_value=False),
    Operator("notnull", "is not empty", takes_value=False),
)
BY_KEY = {op.key: op for op in OPERATORS}
ORDERING = frozenset({"gt", "gte", "lt", "lte"})
TEXT_MATCH = frozenset({"contains", "startswith"})

_INTEGER = re.compile(r"^U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)$")
_NUMBER = re.compile(r"^(FLOAT|DOUBLE|DECIMAL(\(\d+, ?\d+\))?|U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?)$")
_TEMPORAL = re.compile(r"^(DATE|TIME|TIMESTAMP|TIMESTAMP_[A-Z]+|(TIME|TIMESTAMP) WITH TIME ZONE)$")


def type_class(dtype: str) -> str:
    """'integer', 'number', 'temporal', 'boolean', 'text' or 'other' for a DuckDB type name."""
    dtype = (dtype or "").upper()
    if _INTEGER.match(dtype):
        return "integer"
    if _NUMBER.match(dtype):
        return "number"
    if _TEMPORAL.match(dtype):
        return "temporal"
    if dtype == "BOOLEAN":
        return "boolean"
    if dtype == "VARCHAR":
        return "text"
    return "other"


_FOR_CLASS = {
    "integer": ("eq", "ne", "gt", "gte", "lt", "lte", "in", "isnull", "notnull"),
    "number": ("eq", "ne", "gt", "gte", "lt", "lte", "in", "isnull", "notnull"),
    "temporal": ("eq", "ne", "gt", "gte", "lt", "lte", "in", "isnull", "notnull"),
    "boolean": ("eq", "ne", "isnull", "notnull"),
    "text": ("eq", "ne", "contains", "startswith", "in", "isnull", "notnull"),
    "other": ("contains", "startswith", "isnull", "notnull"),
}


def operators_for(dtype: str) -> tuple[Operator, ...]:
    """The operators the filter builder offers for a column of this type, in menu order."""
    keys = _FOR_CLASS[type_class(dtype)]
    return tuple(op for op in OPERATORS if op.key in keys)
