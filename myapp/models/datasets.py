"""Request and response bodies of the datasets resource (the API in README.md, "Datasets")."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from . import Column

IngestMode = Literal["create", "replace", "append"]
SourceFormat = Literal["csv", "tsv", "parquet", "json", "ndjson", "xlsx", "xls", "ods"]


class SourcePublic(BaseModel):
    """The file a dataset was last loaded from."""

    filename: str | None = Field(None, description="Name of the uploaded file, if it had one")
    format: SourceFormat
    compression: Literal["gzip"] | None = None
    bytes: int = Field(description="Size of the upload as sent, in bytes")
    encoding: str | None = Field(
        None, description="Text encoding the file was read in (utf-8, cp1252, utf-16…)"
    )
    sheet: str | None = Field(None, description="The workbook sheet that was loaded")


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


class ReadOptions(BaseModel):
    """How the file was read: detected, or as the upload's options said."""

    format: str
    encoding: str | None = None
    compression: str | None = None
    delimiter: str | None = None
    quote: str | None = None
    escape: str | None = None
    header: bool | None = None
    skip: int | None = Field(None, description="Lines skipped before the table (a preamble)")
    sheet: str | None = None
    sheets: list[str] = Field(default_factory=list, description="A workbook's sheet names")
    decimal_separator: str | None = Field(None, description="',' when decimal commas were read")
    thousands: str | None = None


class ColumnConversion(BaseModel):
    """A text column read as numbers or dates, its missing-value markers as NULL."""

    column: str
    type: str
    empty_markers: dict[str, int] = Field(
        default_factory=dict, description="Marker text (n/a, NA, -…) and how often it was read"
    )
    message: str


class TextColumn(BaseModel):
    """A column left as text because of a few values; choose its type to load them as rejects."""

    column: str
    suggested_type: str
    count: int
    values: list[str]
    message: str


class IngestResult(BaseModel):
    dataset: DatasetPublic
    action: Literal["created", "replaced", "appended"]
    rows_loaded: int
    rows_rejected: int
    rejects: list[RejectPublic] = Field(description="A sample of the rejected rows")
    read: ReadOptions | None = None
    conversions: list[ColumnConversion] = Field(default_factory=list)
    text_columns: list[TextColumn] = Field(default_factory=list)


class UploadPreview(BaseModel):
    """A staged upload: the file as it would load, kept until it expires or is loaded."""

    id: str
    expires_at: datetime
    filename: str | None = None
    bytes: int
    format: str
    encoding: str | None = None
    compression: str | None = None
    delimiter: str | None = None
    quote: str | None = None
    escape: str | None = None
    header: bool | None = None
    skip: int | None = None
    sheet: str | None = None
    sheets: list[str] = Field(default_factory=list)
    decimal_separator: str | None = None
    thousands: str | None = None
    columns: list[Column]
    rows: list[list[Any]] = Field(description="The first 100 rows as they would load")
    row_count: int = Field(description="Rows that would load")
    rows_rejected: int
    rejects: list[RejectPublic]
    conversions: list[ColumnConversion] = Field(default_factory=list)
    text_columns: list[TextColumn] = Field(default_factory=list)
    types: dict[str, str] = Field(default_factory=dict, description="Column types chosen")
    name: str | None = Field(
        None, description="The dataset name sent with the file, the load's default name"
    )
    mode: IngestMode = Field("create", description="The mode sent with the file")


class UploadResult(BaseModel):
    upload: UploadPreview


class UploadUpdate(BaseModel):
    """Other options for a staged upload; absent fields keep their value, null means detect."""

    format: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    quote: str | None = None
    escape: str | None = None
    header: bool | None = None
    skip: int | None = None
    sheet: str | None = None
    nullstr: str | None = None
    types: dict[str, str] | None = Field(
        None, description='Column types, e.g. {"amount": "DOUBLE"}; {} resets them'
    )


class UploadLoad(BaseModel):
    name: str | None = Field(
        None,
        max_length=200,
        description="Dataset name (default: the name sent with the file, else the file name)",
    )
    mode: IngestMode | None = Field(
        None, description="create, replace or append (default: the mode sent with the file)"
    )


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
    pending: list[str] = Field(
        default_factory=list,
        description="Columns not counted yet, left out because the request carried "
        "`Cache-Control: only-if-cached` (ask again without it to count them)",
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
