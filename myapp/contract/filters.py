"""Filter operators of a dataset's rows: one table of key, label, whether it takes a value and
which column-type classes offer it. The SQL of each lives in the backend's browse store, keyed
by the same key.

A filter is `column__op=value`. Which operators make sense depends on the column's type: numbers
and dates compare by value, text compares only by equality and by containment, because an
ordering of text ("9" > "45") is never what someone filtering a table means.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import type_class

_ORDERED = frozenset({"integer", "number", "temporal"})
_ALL = frozenset({"integer", "number", "temporal", "boolean", "text", "other"})


@dataclass(frozen=True)
class Operator:
    key: str
    label: str
    classes: frozenset[str]
    takes_value: bool = True


OPERATORS: tuple[Operator, ...] = (
    Operator("eq", "equals", _ORDERED | {"boolean", "text"}),
    Operator("ne", "does not equal", _ORDERED | {"boolean", "text"}),
    Operator("contains", "contains", frozenset({"text", "other"})),
    Operator("startswith", "starts with", frozenset({"text", "other"})),
    Operator("gt", "greater than", _ORDERED),
    Operator("gte", "at least", _ORDERED),
    Operator("lt", "less than", _ORDERED),
    Operator("lte", "at most", _ORDERED),
    Operator("in", "is one of (comma-separated)", _ORDERED | {"text"}),
    Operator("isnull", "is empty", _ALL, takes_value=False),
    Operator("notnull", "is not empty", _ALL, takes_value=False),
)
BY_KEY = {op.key: op for op in OPERATORS}
ORDERING = frozenset({"gt", "gte", "lt", "lte"})
TEXT_MATCH = frozenset({"contains", "startswith"})


def operators_for(dtype: str) -> tuple[Operator, ...]:
    """The operators the filter builder offers for a column of this type, in menu order."""
    cls = type_class(dtype)
    return tuple(op for op in OPERATORS if cls in op.classes)


__all__ = [
    "BY_KEY",
    "OPERATORS",
    "ORDERING",
    "TEXT_MATCH",
    "Operator",
    "operators_for",
    "type_class",
]
