"""Request and response bodies of the datasets resource (see the API contract in DESIGN.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from . import Column

IngestMode = Literal["create", "replace", "append"]
SourceFormat = Literal["csv", "tsv", "parquet", "json", "ndjson"]


class SourcePublic(BaseModel):
    """The file a dataset was last loaded from."""

    filename: str | None = Field(None, description="Name of the uploaded file, if it had one")
    format: SourceFormat
    compression: Literal["gzip"] | None = None
    bytes: int = Field(description="Size of the upload as sent, in bytes")


class DatasetPublic(BaseModel):
    name: str
    row_count: int
    columns: list[Column]
    source: SourcePublic
    created_at: datetime
    updated_at: datetime
    version: int = Field(description="Grows with every change of the data; caches key on it")


class UploadLimits(BaseModel):
    max_upload_bytes: int = Field(description="Largest upload the backend accepts")


class DatasetList(BaseModel):
    datasets: list[DatasetPublic]
    limits: UploadLimits | None = None


class RejectPublic(BaseModel):
    """A row of the file that could not be read, and why."""

    line: int | None = Field(None, description="Line number in the file (1 = first line)")
    column: str | None = None
    reason: str


class IngestResult(BaseModel):
    dataset: DatasetPublic
    action: Literal["created", "replaced", "appended"]
    rows_loaded: int
    rows_rejected: int
    rejects: list[RejectPublic] = Field(description="A sample of the rejected rows")


class DatasetUpdate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="The new name")


class RowsPage(BaseModel):
    columns: list[Column]
    rows: list[list[Any]]
    next: str | None = Field(description="Cursor for the next page, or null on the last page")
    total: int | None = Field(description="Rows matching the filters (null when unknown)")
    total_exact: bool
    offset: int | None = None
    limit: int


class FacetValue(BaseModel):
    value: Any
    count: int


class FacetsResult(BaseModel):
    facets: dict[str, list[FacetValue]]
    timed_out: list[str] = Field(
        default_factory=list, description="Columns whose counts did not finish in time"
    )


class HistogramBin(BaseModel):
    start: Any
    end: Any
    count: int


class ColumnProfile(BaseModel):
    name: str
    type: str
    null_count: int
    distinct_count: int | None = Field(None, description="Approximate count of distinct values")
    min: Any = None
    max: Any = None
    mean: Any = None
    stddev: Any = None
    top_values: list[FacetValue] | None = None
    histogram: list[HistogramBin] | None = None


class ProfileResult(BaseModel):
    name: str
    version: int
    row_count: int
    computed_at: datetime
    columns: list[ColumnProfile]
