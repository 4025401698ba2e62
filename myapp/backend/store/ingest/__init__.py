"""Loading uploaded files into datasets.

- `options`: what a client may say about its file (form fields, query parameters).
- `prepare`: from the bytes that arrived to a file DuckDB reads (decompress, format, encoding).
- `excel`: a workbook's sheet as CSV with exact column types, read by `sheetreader` in a
  short-lived child process with a memory cap.
- `csvread`: DuckDB's own dialect detection, then a load with rejects on top of it.
- `refine`: text columns that are numbers or dates but for missing-value markers.
- `load`: the load in a side instance (and an append's checks).
- `reports`: the rejects a load reports and its errors in plain words.
- `swap`: the atomic swap into the catalog, and the whole path of one upload.

The names below are imported on first use: the sheet reader runs as
`python -m myapp.backend.store.ingest.sheetreader`, which imports this package, and should
start without duckdb, pydantic and the rest of the backend (0.19 s and 17 MB instead of 0.5 s
and 60 MB).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "PREVIEW_ROWS": "load",
    "StagedFile": "load",
    "LoadAudit": "swap",
    "append_staged": "load",
    "build_file": "load",
    "check_mode_allows": "swap",
    "ingest_file": "swap",
    "nothing_loaded": "reports",
    "plain": "reports",
    "result_body": "swap",
    "sentence": "reports",
    "source_of": "swap",
    "swap_in": "swap",
    "FORMATS": "options",
    "MODES": "options",
    "IngestOptions": "options",
    "parse_options": "options",
    "IngestError": "prepare",
    "PreparedFile": "prepare",
    "StagingFiles": "prepare",
    "prepare_file": "prepare",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value
