"""Charts of a SELECT's result: DuckDB cuts the data to the points a chart can show, in a worker.

Points are rows times y columns. Bar and pie charts sum y per x (and series) in the order the
rows came in; line and area charts of a numeric or temporal x average y over equal x ranges;
scatter charts take a random sample.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from myapp.contract.types import is_numeric, is_temporal
from myapp.settings import Settings

from ...errors import BadRequest
from ..database import Database
from ..sql import quote_ident
from .execute import call, running, vet
from .gate import bind_parameters, vet_wrapped
from .runs import Run
from .statements import wrap
from .workers import Worker, Workers

# Chart queries limit themselves to the points asked for; fetching stops here regardless.
MAX_CHART_FETCH = 100_001


def chart_select(
    database: Database,
    workers: Workers,
    settings: Settings,
    *,
    sql: str,
    params: Mapping[str, Any] | None,
    chart: Mapping[str, Any],
    timeout_ms: int | None,
    run_id: str,
    owner: str | None,
    max_points: int,
) -> dict[str, Any]:
    """The data of one chart of a SELECT's result, cut by DuckDB to at most `max_points` points."""
    kind = chart["type"]
    x, ys, series = chart["x"], list(chart["y"]), chart.get("series") or None
    budget = max(1, max_points // len(ys))
    vetted, probe = vet(database, workers, sql, tail=" LIMIT 0")
    values = bind_parameters(vetted, params)
    with running(
        settings,
        workers,
        run_id=run_id,
        kind="chart",
        owner=owner,
        timeout_ms=timeout_ms,
    ) as (worker, run):

        def rows_of(text: str) -> tuple[list[list[Any]], list[dict[str, str]]]:
            return _chart_rows(database, workers, settings, worker, run, text, values, vetted.body)

        _, probed = rows_of(probe)
        types = {c["name"]: c["type"] for c in probed}
        _check_chart_columns(types, x, ys, series)

        started = time.perf_counter()
        qx = quote_ident(x)
        qs = quote_ident(series) if series else None
        ycols = [f"y{i}" for i in range(len(ys))]
        picks = [f"{qx} AS x"]
        if qs:
            picks.append(f"{qs} AS s")
        picks += [
            f"CAST({quote_ident(y)} AS DOUBLE) AS {c}" for y, c in zip(ys, ycols, strict=True)
        ]
        keys = "x, s" if qs else "x"
        reduced: str | None = None

        if kind in ("bar", "pie") or (kind in ("line", "area") and not _orderable(types[x])):
            # One row per x (and series), in the order the rows came: sums, with the row count so
            # we can tell whether anything was summed at all.
            source = wrap(
                vetted.body, head="SELECT " + ", ".join(picks) + ", row_number() OVER () AS n"
            )
            sums = ", ".join(f"sum({c}) AS {c}" for c in ycols)
            text = (
                f"SELECT {keys}, {sums}, count(*) AS myapp_rows FROM ({source}) AS src "
                f"GROUP BY {keys} ORDER BY min(n) LIMIT {budget + 1}"
            )
            rows, columns = rows_of(text)
            counted = sum(row[-1] for row in rows)
            rows = [row[:-1] for row in rows]
            columns = columns[:-1]
            if len(rows) > budget:
                rows, reduced = rows[:budget], "truncated"
            elif counted > len(rows):
                reduced = "aggregated"
        else:
            text = wrap(vetted.body, head="SELECT " + ", ".join(picks), tail=f" LIMIT {budget + 1}")
            rows, columns = rows_of(text)
            if len(rows) > budget and kind == "scatter":
                text = (
                    wrap(vetted.body, head="SELECT " + ", ".join(picks))
                    + f" USING SAMPLE reservoir({budget} ROWS) REPEATABLE (42)"
                )
                rows, columns = rows_of(text)
                reduced = "sampled"
            elif len(rows) > budget:
                bucketed = _bucket_sql(vetted.body, picks, ycols, types[x], qs, budget)
                rows, columns = rows_of(bucketed)
                reduced = "bucketed"
        run.raise_if_stopped()

    names = ["x", *(["s"] if qs else []), *ycols]
    renamed = {"x": x, "s": series, **dict(zip(ycols, ys, strict=True))}
    out_columns = [
        {"name": renamed[n], "type": col["type"]} for n, col in zip(names, columns, strict=False)
    ]
    # The worker encoded the values already (store/values.py).
    encoded = rows
    return {
        "id": run_id,
        "chart": dict(chart),
        "columns": out_columns,
        "rows": encoded,
        "row_count": len(encoded),
        "reduced": reduced,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _orderable(type_name: str) -> bool:
    return is_numeric(type_name) or is_temporal(type_name)


def _bucket_sql(
    body: str, picks: list[str], ycols: list[str], x_type: str, qs: str | None, budget: int
) -> str:
    key = "epoch(x)" if is_temporal(x_type) else "CAST(x AS DOUBLE)"
    source = wrap(body, head="SELECT " + ", ".join(picks))
    averages = ", ".join(f"avg({c}) AS {c}" for c in ycols)
    series_count = "count(DISTINCT s)" if qs else "1"
    group_series = "s, " if qs else ""
    select_series = "s, " if qs else ""
    bucket = f"least(floor(({key} - lo) / greatest(hi - lo, 1e-9) * per), per - 1)"
    return (
        f"WITH src AS MATERIALIZED ({source}), "
        f"bounds AS (SELECT min({key}) AS lo, max({key}) AS hi, "
        f"greatest({budget} // greatest({series_count}, 1), 1) AS per "
        "FROM src WHERE x IS NOT NULL) "
        f"SELECT min(x) AS x, {select_series}{averages} FROM src, bounds WHERE x IS NOT NULL "
        f"GROUP BY {group_series}{bucket} ORDER BY min({key}) LIMIT {budget}"
    )


def _chart_rows(
    database: Database,
    workers: Workers,
    settings: Settings,
    worker: Worker,
    run: Run,
    text: str,
    values: dict[str, Any],
    body: str,
) -> tuple[list[list[Any]], list[dict[str, str]]]:
    with database.cursor() as cur:
        vet_wrapped(cur, text, workers.gate)
    # Every chart query carries its own LIMIT; this bound is only a guard.
    request = {"op": "query", "sql": text, "params": values, "fetch": MAX_CHART_FETCH}
    reply = orjson.loads(call(database, settings, worker, run, request, text=text, body=body))
    return reply["rows"], reply["columns"]


def _check_chart_columns(types: dict[str, str], x: str, ys: list[str], series: str | None) -> None:
    names = list(types)
    available = ", ".join(names) or "none"
    for role, column in [("x", x), *[("y", y) for y in ys], ("series", series)]:
        if column is not None and column not in types:
            raise BadRequest(
                f'The result has no column "{column}" to use as {role}; its columns are: '
                f"{available}.",
                code="unknown_column",
                detail={"column": column, "columns": names},
            )
    for y in ys:
        if not is_numeric(types[y]):
            raise BadRequest(
                f'The column "{y}" holds {types[y]} values; a chart needs numbers on the y axis.',
                code="chart_not_numeric",
                detail={"column": y, "type": types[y]},
            )
    if len(set(ys)) != len(ys):
        raise BadRequest("Each y column may appear once in a chart.", code="bad_chart")
