"""Which functions user SQL may call: the reviewed list in functions.tsv, its one home.

Every name DuckDB's catalog lists (`duckdb_functions()`: scalar, aggregate, window, table,
macro, table macro, pragma) has a line there: `allow`, `expression` (allowed in expressions but
not as a table function, e.g. the aggregate `histogram(x)` beside the table macro that reads a
table named by a string) or `refuse` with why. A name that is not listed is refused, so a
function a newer DuckDB adds stays unavailable until someone reviews it (tests/backend/
test_workers.py fails on such names; the backend logs them at start too).

SQL's value keywords (`current_user`, `user`, `session_user`, `current_role`, `current_schema`,
`current_catalog`, `current_date`…) parse as column names and bind to functions only where no
column has that name, so the gate cannot tell them from columns. They are left to bind: in a
worker they can only report the worker's own constants (`duckdb`, `main`, the database's name).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

LIST_PATH = Path(__file__).with_name("functions.tsv")

# What the user reads when a refused function is named.
REASONS = {
    "files": "it reads files; queries can read datasets only (upload the file as a dataset)",
    "sql_text": "it would plan or run SQL text the query check never saw",
    "environment": "it reads the server's settings, catalog or session",
    "sequence": "sequences change the database",
    "state": "it changes the session's state",
    "statement": "it is a configuration or maintenance command",
    "internal": "it is internal to DuckDB's planner",
    "unreviewed": "it is not on the list of functions available in queries",
}


@dataclass(frozen=True)
class FunctionList:
    allowed: frozenset[str]
    expression_only: frozenset[str]
    refused: dict[str, str]

    def refusal(self, name: str, *, as_table: bool) -> str | None:
        """Why `name` may not be called (as a table function if `as_table`), or None."""
        if name in self.allowed:
            return None
        if name in self.expression_only and not as_table:
            return None
        return REASONS[self.refused.get(name, "unreviewed")]

    @property
    def classified(self) -> frozenset[str]:
        return self.allowed | self.expression_only | frozenset(self.refused)


@cache
def function_list() -> FunctionList:
    allowed: set[str] = set()
    expression: set[str] = set()
    refused: dict[str, str] = {}
    for line in LIST_PATH.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _types, verdict, *why = line.split("\t")
        if verdict == "allow":
            allowed.add(name)
        elif verdict == "expression":
            expression.add(name)
        else:
            refused[name] = why[0] if why else "unreviewed"
    return FunctionList(frozenset(allowed), frozenset(expression), refused)


def allowed_table_functions() -> list[str]:
    fl = function_list()
    return sorted(n for n in fl.allowed if n in _TABLE_NAMES)


# Named in refusals of table functions, so a user learns what is there instead.
_TABLE_NAMES = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "repeat",
        "json_each",
        "json_tree",
        "duckdb_functions",
        "duckdb_keywords",
        "duckdb_types",
        "pg_timezone_names",
        "icu_calendar_names",
        "generate_subscripts",
        "regexp_split_to_table",
    }
)


def unclassified(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """Functions this DuckDB has that the reviewed list does not mention (all refused)."""
    rows = cur.execute("SELECT DISTINCT function_name FROM duckdb_functions()").fetchall()
    names = {r[0] for r in rows}
    return sorted(names - function_list().classified)
