"""Loading uploaded files into datasets.

- `options`: what a client may say about its file (form fields, query parameters).
- `prepare`: from the bytes that arrived to a file DuckDB reads (decompress, format, encoding).
- `excel`: a workbook's sheet as CSV with exact column types.
- `csvread`: DuckDB's own dialect detection, then a load with rejects on top of it.
- `refine`: text columns that are numbers or dates but for missing-value markers.
- `load`: the load in a side instance, and the atomic swap into the catalog.
"""

from .load import (
    PREVIEW_ROWS,
    StagedFile,
    append_staged,
    build_file,
    check_mode_allows,
    ingest_file,
    name_lock,
    nothing_loaded,
    plain,
    result_body,
    sentence,
    source_of,
    swap_in,
)
from .options import FORMATS, MODES, IngestOptions, parse_options
from .prepare import IngestError, PreparedFile, StagingFiles, prepare_file

__all__ = [
    "FORMATS",
    "MODES",
    "PREVIEW_ROWS",
    "IngestError",
    "IngestOptions",
    "PreparedFile",
    "StagedFile",
    "StagingFiles",
    "append_staged",
    "build_file",
    "check_mode_allows",
    "ingest_file",
    "name_lock",
    "nothing_loaded",
    "parse_options",
    "plain",
    "prepare_file",
    "result_body",
    "sentence",
    "source_of",
    "swap_in",
]
