"""Column profiles: per column statistics, top values and histograms, computed by DuckDB.

A profile reads the whole table, so it is cached in an internal table keyed by the dataset's
name and version: any change of the data gives a new version, and the cached body is simply
not found any more (renames and deletes drop it).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from ...contract.types import is_integer, is_nested, is_temporal, type_class
from .browse import time_budget
from .database import Database
from .datasets import DatasetRecord, find_dataset, get_dataset
from .sql import internal, quote_ident
from .values import encode_rows, to_json_value

log = logging.getLogger("myapp.backend.profile")

# Columns per aggregate query: one query for 1,000 columns binds slowly; a few hundred is fine.
AGGREGATE_BATCH = 100
HISTOGRAM_BINS = 20
TOP_VALUES = 5
# Top values and histograms cost one scan each; beyond this many columns only the statistics
# are computed (wide tables are profiled column by column in the SQL workspace).
MAX_DETAILED_COLUMNS = 100
# Each detail query and the whole profile have a time budget so a huge table answers anyway.
DETAIL_BUDGET_S = 5.0
PROFILE_BUDGET_S = 30.0

_ORDERABLE = re.compile(r"^(VARCHAR|BOOLEAN|DATE|TIME.*|TIMESTAMP.*|UUID|INTERVAL)$")


def _kind(dtype: str) -> str:
    if is_nested(dtype):
        return "nested"
    cls = type_class(dtype)
    if cls in ("integer", "number"):
        return "number"
    if cls == "temporal":
        return "temporal"
    if cls in ("text", "boolean"):
        return "text"
    return "other"


def _aggregates(cur: duckdb.DuckDBPyConnection, record: DatasetRecord) -> list[dict[str, Any]]:
    out = []
    table = record.table
    for start in range(0, len(record.columns), AGGREGATE_BATCH):
        batch = record.columns[start : start + AGGREGATE_BATCH]
        exprs: list[str] = []
        layout: list[list[str]] = []
        for column in batch:
            ident = quote_ident(column["name"])
            kind = _kind(column["type"])
            parts = ["nulls", "distinct"]
            exprs.append(f"count(*) - count({ident})")
            exprs.append(f"approx_count_distinct({ident})")
            if kind in ("number", "temporal") or _ORDERABLE.match(column["type"]):
                parts += ["min", "max"]
                exprs += [f"min({ident})", f"max({ident})"]
            if kind == "number":
                parts += ["mean", "stddev"]
                exprs += [
                    f"avg(CAST({ident} AS DOUBLE))",
                    f"stddev_samp(CAST({ident} AS DOUBLE))",
                ]
            layout.append(parts)
        result = cur.execute(f"SELECT {', '.join(exprs)} FROM {table}")
        types = [str(d[1]) for d in result.description]
        values = encode_rows([result.fetchone()], types)[0]
        position = 0
        for column, parts in zip(batch, layout, strict=True):
            entry: dict[str, Any] = {"name": column["name"], "type": column["type"]}
            for part in parts:
                entry[part] = values[position]
                position += 1
            out.append(
                {
                    "name": column["name"],
                    "type": column["type"],
                    "null_count": int(entry["nulls"]),
                    "distinct_count": entry["distinct"],
                    "min": entry.get("min"),
                    "max": entry.get("max"),
                    "mean": entry.get("mean"),
                    "stddev": entry.get("stddev"),
                    "top_values": None,
                    "histogram": None,
                }
            )
    return out


def _top_values(
    cur: duckdb.DuckDBPyConnection, record: DatasetRecord, column: dict[str, str]
) -> list[dict[str, Any]]:
    ident = quote_ident(column["name"])
    result = cur.execute(
        f"SELECT {ident} AS value, count(*) AS n FROM {record.table} "
        f"WHERE {ident} IS NOT NULL GROUP BY ALL ORDER BY n DESC, value LIMIT {TOP_VALUES}"
    )
    rows = encode_rows(result.fetchall(), [str(result.description[0][1]), "BIGINT"])
    return [{"value": v, "count": n} for v, n in rows]


def _edge_decimals(width: float) -> int:
    """Decimals that show a bin edge to the data's scale: two digits finer than the bin width,
    so 7499.849999999999 (a sum of doubles) reads 7499.85 and a width of 375 gives whole numbers.
    """
    if width <= 0 or not math.isfinite(width):
        return 6
    return max(0, min(12, 2 - math.floor(math.log10(width))))


def _edge(value: float, dtype: str, decimals: int = 12) -> Any:
    if is_temporal(dtype):
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=value)
        if dtype == "DATE":
            return moment.date().isoformat()
        if dtype.startswith("TIME") and not dtype.startswith("TIMESTAMP"):
            # A time of day's epoch is its seconds since midnight.
            return moment.time().isoformat()
        if "TIME ZONE" in dtype:
            return moment.isoformat()
        return moment.replace(tzinfo=None).isoformat()
    if is_integer(dtype) and float(value).is_integer():
        return to_json_value(int(value))
    return to_json_value(round(float(value), decimals))


def _histogram(
    cur: duckdb.DuckDBPyConnection, record: DatasetRecord, column: dict[str, str]
) -> list[dict[str, Any]]:
    ident = quote_ident(column["name"])
    dtype = column["type"]
    # Dates and times are binned on their epoch seconds, numbers as doubles; infinities and NaN
    # cannot be placed in a bin and are left out.
    x = f"epoch({ident})" if is_temporal(dtype) else f"CAST({ident} AS DOUBLE)"
    table = record.table
    low, high = cur.execute(
        f"SELECT min(x), max(x) FROM (SELECT {x} AS x FROM {table}) WHERE isfinite(x)"
    ).fetchone()
    if low is None or high is None:
        return []
    bins = HISTOGRAM_BINS
    if is_integer(dtype) and high - low < HISTOGRAM_BINS:
        # Few distinct integers: one bar per value reads better than fractional bins.
        bins = int(high - low) + 1
        width = 1.0
    elif high == low:
        bins, width = 1, 1.0
    else:
        width = (high - low) / bins
    decimals = _edge_decimals(width)
    counts = dict(
        cur.execute(
            f"SELECT least(CAST(floor((x - $low) / $width) AS BIGINT), $last) AS b, count(*) "
            f"FROM (SELECT {x} AS x FROM {table}) WHERE isfinite(x) GROUP BY b",
            {"low": low, "width": width, "last": bins - 1},
        ).fetchall()
    )
    return [
        {
            "start": _edge(low + i * width, dtype, decimals),
            "end": _edge(low + (i + 1) * width, dtype, decimals),
            "count": int(counts.get(i, 0)),
        }
        for i in range(bins)
    ]


def compute_profile(cur: duckdb.DuckDBPyConnection, record: DatasetRecord) -> dict[str, Any]:
    started = time.monotonic()
    columns = _aggregates(cur, record)
    detailed = 0
    for entry, column in zip(columns, record.columns, strict=True):
        kind = _kind(column["type"])
        if kind not in ("text", "number", "temporal"):
            continue
        if detailed >= MAX_DETAILED_COLUMNS or time.monotonic() - started > PROFILE_BUDGET_S:
            break
        detailed += 1
        try:
            with time_budget(cur, DETAIL_BUDGET_S):
                if kind == "text":
                    entry["top_values"] = _top_values(cur, record, column)
                else:
                    entry["histogram"] = _histogram(cur, record, column)
        except duckdb.InterruptException:
            log.info("profile of %s: %s took too long, left out", record.name, column["name"])
    for entry in columns:
        for key in ("mean", "stddev"):
            value = entry[key]
            if isinstance(value, float) and not math.isfinite(value):
                entry[key] = to_json_value(value)
    return {
        "name": record.name,
        "version": record.version,
        "row_count": record.row_count,
        "computed_at": datetime.now(UTC).isoformat(),
        "columns": columns,
    }


def get_profile(database: Database, name: str) -> dict[str, Any]:
    """The cached profile of the dataset's current version, computing it when missing."""
    with database.cursor() as cur:
        record = get_dataset(cur, name)
        cached = cur.execute(
            f"SELECT body FROM {internal('dataset_profiles')} WHERE name = $name "
            "AND version = $version",
            {"name": record.name, "version": record.version},
        ).fetchone()
        if cached:
            return json.loads(cached[0])
        body = compute_profile(cur, record)
    try:
        _cache(database, record, body)
    except duckdb.Error as exc:
        # The cache is only a saving: a profile that cannot be stored (a full disk) is still
        # the right answer, and is computed again next time.
        log.warning("could not cache the profile of %s: %s", record.name, exc)
    return body


def _cache(database: Database, record: DatasetRecord, body: dict[str, Any]) -> None:
    with database.transaction() as cur:
        current = find_dataset(cur, record.name)
        # Store it only if the data did not change while it was computed.
        if current is not None and current.version == record.version:
            cur.execute(
                f"DELETE FROM {internal('dataset_profiles')} WHERE name = $name",
                {"name": record.name},
            )
            cur.execute(
                f"INSERT INTO {internal('dataset_profiles')} VALUES ($name, $version, $at, $body)",
                {
                    "name": record.name,
                    "version": record.version,
                    "at": datetime.now(UTC),
                    "body": json.dumps(body),
                },
            )
