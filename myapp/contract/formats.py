"""Export formats: the name a client asks for, what a person reads in a menu, the file's
extension and its media type. How each is written (DuckDB's COPY options, the xlsx writer)
stays with the backend, keyed by the same name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The names as a type, for request bodies (tests/unit/test_contract.py keeps it equal to FORMATS).
ExportFormatName = Literal["csv", "tsv", "parquet", "json", "ndjson", "xlsx"]


@dataclass(frozen=True)
class ExportFormat:
    key: str
    label: str
    extension: str
    media_type: str


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat("csv", "CSV", "csv", "text/csv; charset=utf-8"),
    ExportFormat("tsv", "TSV", "tsv", "text/tab-separated-values; charset=utf-8"),
    ExportFormat("parquet", "Parquet", "parquet", "application/vnd.apache.parquet"),
    ExportFormat("json", "JSON", "json", "application/json"),
    ExportFormat("ndjson", "NDJSON", "ndjson", "application/x-ndjson"),
    ExportFormat(
        "xlsx",
        "Excel (.xlsx)",
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
)
BY_KEY = {f.key: f for f in FORMATS}
EXPORT_FORMATS: tuple[str, ...] = tuple(f.key for f in FORMATS)
# Formats that take a UTF-8 byte-order mark on request (Excel on Windows reads CSV by it).
BOM_FORMATS = ("csv", "tsv")
# A file name's extension → the format written to it; .jsonl is the other name of NDJSON.
FORMAT_BY_SUFFIX: dict[str, str] = {
    ".csv": "csv",
    ".xlsx": "xlsx",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
