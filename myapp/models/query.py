"""Bodies of the query API: run one SELECT, follow or cancel it, chart it, export it."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, field_validator

from myapp.contract.formats import ExportFormatName

from . import Column

# Far more than any hand-written query; stops a client from posting megabytes as "SQL".
MAX_SQL_CHARS = 100_000

# Charts never receive more points than this; DuckDB aggregates or samples bigger results.
MAX_CHART_POINTS = 10_000

ChartType = Literal["bar", "line", "area", "scatter", "pie"]
QueryState = Literal["running", "finished", "failed", "cancelled", "timed_out"]


class QueryRequest(BaseModel):
    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS, description="One SELECT statement.")
    params: dict[str, Any] | None = Field(
        None, description="Values of the query's named `$parameters`, bound, never interpolated."
    )
    limit: int | None = Field(
        None, ge=0, description="Most rows to return; capped by the server's MYAPP_MAX_ROWS."
    )
    timeout_ms: int | None = Field(
        None, ge=1, description="Time limit; capped by the server's MYAPP_QUERY_TIMEOUT_MS."
    )
    id: UUID | None = Field(
        None,
        description="The client's id for this run, to follow (GET) or cancel (DELETE) it at "
        "/api/query/{id} while it runs; one is generated when absent.",
    )


class QueryResult(BaseModel):
    id: str
    columns: list[Column]
    rows: list[list[Any]]
    row_count: int = Field(description="Rows returned (at most the limit).")
    truncated: bool = Field(description="True when the query had more rows than returned.")
    elapsed_ms: float


class QueryStatus(BaseModel):
    id: str
    state: QueryState
    progress: float | None = Field(
        None, description="Percent done as DuckDB estimates it, when it can tell."
    )
    elapsed_ms: float
    kind: Literal["query", "chart", "export"]


class ChartConfig(BaseModel):
    type: ChartType
    x: str = Field(min_length=1)
    y: list[str] = Field(min_length=1, max_length=12)
    series: str | None = Field(None, description="Column whose values split the data in series.")
    title: str | None = Field(None, max_length=200)

    @field_validator("series")
    @classmethod
    def _blank_series(cls, value: str | None) -> str | None:
        return value or None


class ChartRequest(QueryRequest):
    chart: ChartConfig


class ChartData(BaseModel):
    id: str
    chart: ChartConfig
    columns: list[Column]
    rows: list[list[Any]]
    row_count: int
    reduced: Literal["bucketed", "aggregated", "sampled", "truncated"] | None = Field(
        None,
        description="How DuckDB cut a result of more than "
        f"{MAX_CHART_POINTS} points down: bucketed (line/area: averages over equal x ranges), "
        "aggregated (bar/pie: sums per x), sampled (scatter: a random sample) or truncated.",
    )
    elapsed_ms: float


class ExportRequest(BaseModel):
    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS)
    params: dict[str, Any] | None = None
    format: ExportFormatName = "csv"
    bom: bool = Field(
        False, description="csv/tsv: start with a UTF-8 byte-order mark (Excel on Windows)"
    )
    filename: str | None = Field(
        None, max_length=200, description="File name without extension; a safe one is derived."
    )
    id: UUID | None = None
