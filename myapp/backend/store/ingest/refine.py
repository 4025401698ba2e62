"""Types that match the data: text columns that are numbers or dates but for a few markers.

DuckDB types a column by all of its values, so a column of numbers with three `n/a` among
them, or numbers written with a decimal comma (`7,55`), loads as text, and comparisons on it
are lexical. After loading, each text column is counted once: when every value but the
common missing-value markers reads as an integer, a number (also with a decimal comma or
thousands separators) or a date, the column is converted and the markers become NULL; the
answer says so per column. A column that stays text because of a few values is named, with
those values, so the user can choose its type (the values then become rejects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb

from ..sql import qualified, quote_ident

# Compared with the trimmed, lower-cased value. "" is a quoted empty string.
MISSING_MARKERS = ("", "n/a", "na", "-", "null")
# Wider tables are left as DuckDB typed them: one scan per column is the cost of this step.
MAX_COLUMNS = 300
# A column "fell back to text because of a few values" when at most this many values (or this
# share of them) do not fit the type all the others have.
FEW_VALUES = 3
FEW_SHARE = 0.01
SAMPLE_VALUES = 5

_INT = r"[+-]?\d+"
_DOT_NUMBER = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"
_COMMA_DECIMAL = r"[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?"
_THOUSANDS = r"[+-]?\d{1,3}(,\d{3})+(\.\d+)?"


@dataclass
class Refinement:
    conversions: list[dict[str, Any]] = field(default_factory=list)
    text_columns: list[dict[str, Any]] = field(default_factory=list)
    decimal_separator: str | None = None
    thousands: str | None = None


def _markers_sql() -> str:
    return "(" + ", ".join("'" + m.replace("'", "''") + "'" for m in MISSING_MARKERS) + ")"


def _text_columns(cur: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [
        r[0]
        for r in cur.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'main' "
            "AND database_name = current_database() AND table_name = $table "
            "AND data_type = 'VARCHAR' ORDER BY column_index",
            {"table": table},
        ).fetchall()
    ]


# Each candidate: (key, SQL type, test that the trimmed value `t` fits, conversion of `t`).
_CANDIDATES = (
    (
        "integer",
        "BIGINT",
        f"regexp_full_match(t, '{_INT}') AND TRY_CAST(t AS BIGINT) IS NOT NULL",
        "CAST({t} AS BIGINT)",
    ),
    ("number", "DOUBLE", f"regexp_full_match(t, '{_DOT_NUMBER}')", "CAST({t} AS DOUBLE)"),
    ("date", "DATE", "TRY_CAST(t AS DATE) IS NOT NULL", "CAST({t} AS DATE)"),
    ("timestamp", "TIMESTAMP", "TRY_CAST(t AS TIMESTAMP) IS NOT NULL", "CAST({t} AS TIMESTAMP)"),
    (
        "decimal_comma",
        "DOUBLE",
        f"regexp_full_match(t, '{_COMMA_DECIMAL}')",
        "CAST(replace(replace({t}, '.', ''), ',', '.') AS DOUBLE)",
    ),
    (
        "thousands",
        "DOUBLE",
        f"regexp_full_match(t, '{_THOUSANDS}')",
        "CAST(replace({t}, ',', '') AS DOUBLE)",
    ),
)


def refine(
    cur: duckdb.DuckDBPyConnection, table: str, *, keep: set[str], delimiter: str
) -> Refinement:
    """Convert the text columns of `table` that hold typed values; `keep` (lower-cased names
    with a type the user chose) stay as they are."""
    out = Refinement()
    target = qualified("main", table)
    markers = _markers_sql()
    for column in _text_columns(cur, table)[:MAX_COLUMNS]:
        if column.lower() in keep:
            continue
        try:
            col = quote_ident(column)
        except ValueError:
            continue  # a name with control characters: left as DuckDB read it
        fits = ", ".join(
            f"count(*) FILTER (WHERE NOT is_marker AND NOT ({test}))"
            for _, _, test, _ in _CANDIDATES
        )
        row = cur.execute(
            f"SELECT count(*), count(*) FILTER (WHERE is_marker), "
            f"count(*) FILTER (WHERE regexp_full_match(t, '[+-]?0\\d+')), "
            f"count(*) FILTER (WHERE NOT is_marker AND contains(t, ',')), {fits} "
            f"FROM (SELECT trim({col}) AS t, lower(trim({col})) IN {markers} AS is_marker "
            f"FROM {target} WHERE {col} IS NOT NULL)"
        ).fetchone()
        total, marked, leading_zero, with_comma, *bad = row
        real = total - marked
        if real <= 0:
            continue
        bad_by_key = {c[0]: n for c, n in zip(_CANDIDATES, bad, strict=True)}
        choice = _choose(bad_by_key, marked, leading_zero, with_comma, delimiter)
        if choice is not None:
            key, sql_type, _, convert = next(c for c in _CANDIDATES if c[0] == choice)
            found = _markers_found(cur, target, col, markers) if marked else {}
            expr = convert.format(t=f"trim({col})")
            cur.execute(
                f"ALTER TABLE {target} ALTER {col} TYPE {sql_type} USING "
                f"(CASE WHEN lower(trim({col})) IN {markers} THEN NULL ELSE {expr} END)"
            )
            parts = []
            if marked:
                parts.append(
                    f"{marked} value{'s' if marked != 1 else ''} read as empty: "
                    + ", ".join(repr(m) if m == "" else m for m in found)
                )
            if key == "decimal_comma":
                parts.append("decimal comma read as a number (7,55 is 7.55)")
                out.decimal_separator, out.thousands = ",", "."
            elif key == "thousands":
                parts.append("thousands separators read (1,234.5 is 1234.5)")
                out.thousands = ","
            out.conversions.append(
                {
                    "column": column,
                    "type": sql_type,
                    "empty_markers": found,
                    "message": "; ".join(parts) + ".",
                }
            )
            continue
        near = _near_miss(bad_by_key, real, leading_zero, with_comma)
        if near is not None:
            key, sql_type, test, _ = next(c for c in _CANDIDATES if c[0] == near)
            values = [
                r[0]
                for r in cur.execute(
                    f"SELECT DISTINCT t FROM (SELECT trim({col}) AS t FROM {target} "
                    f"WHERE {col} IS NOT NULL) WHERE lower(t) NOT IN {markers} "
                    f"AND NOT ({test}) ORDER BY t LIMIT {SAMPLE_VALUES}"
                ).fetchall()
            ]
            count = bad_by_key[near]
            out.text_columns.append(
                {
                    "column": column,
                    "suggested_type": sql_type,
                    "count": count,
                    "values": values,
                    "message": (
                        f"Column {column!r} was read as text because {count} "
                        f"value{'s' if count != 1 else ''} "
                        f"({', '.join(repr(v) for v in values)}) "
                        f"{'are' if count != 1 else 'is'} not {sql_type}; choose the type "
                        "to load them as rejects instead."
                    ),
                }
            )
    return out


def _choose(
    bad: dict[str, int], marked: int, leading_zero: int, with_comma: int, delimiter: str
) -> str | None:
    if marked and not leading_zero and bad["integer"] == 0:
        return "integer"
    if marked and bad["number"] == 0 and not leading_zero:
        return "number"
    if marked and bad["date"] == 0:
        return "date"
    if marked and bad["timestamp"] == 0:
        return "timestamp"
    if with_comma and not leading_zero:
        decimal, thousands = bad["decimal_comma"] == 0, bad["thousands"] == 0
        if decimal and thousands:
            # Every comma is followed by three digits: 1,234 is a thousand in a comma-separated
            # file and one point two in a semicolon-separated (European) one.
            return "decimal_comma" if delimiter != "," else "thousands"
        if decimal:
            return "decimal_comma"
        if thousands:
            return "thousands"
    return None


def _near_miss(bad: dict[str, int], real: int, leading_zero: int, with_comma: int) -> str | None:
    allowed = max(FEW_VALUES, int(real * FEW_SHARE))
    keys = ["integer", "number", "date", "timestamp"]
    if with_comma:
        keys += ["decimal_comma", "thousands"]
    best = min(keys, key=lambda k: bad[k])
    if leading_zero and best in ("integer", "number"):
        return None
    if 0 < bad[best] <= allowed and bad[best] * 2 < real:
        return best
    return None


def _markers_found(
    cur: duckdb.DuckDBPyConnection, target: str, col: str, markers: str
) -> dict[str, int]:
    rows = cur.execute(
        f"SELECT trim({col}) AS t, count(*) FROM {target} "
        f"WHERE lower(trim({col})) IN {markers} GROUP BY t ORDER BY count(*) DESC, t"
    ).fetchall()
    return {value: count for value, count in rows}
