"""DuckDB as the backend outside store/ names it: the cursor type, its errors, its version and
its memory. Only store/ (and the lake code) import duckdb; everything else takes these names
from here, so DuckDB's Python API is used in one layer."""

from __future__ import annotations

import duckdb

Cursor = duckdb.DuckDBPyConnection
"""A cursor of the backend's connection (`Database.cursor()`, `Database.transaction()`)."""

DatabaseError = duckdb.Error
"""Any error DuckDB raises."""

StoppedError = duckdb.FatalException
"""DuckDB stopped the database (after a failed write, say): it must be reopened."""

# DuckDB puts the operating system's reason into the text of these errors (a write, a commit,
# a checkpoint). Other DuckDB errors may quote the user's SQL, so their text proves nothing.
IO_ERRORS: tuple[type[duckdb.Error], ...] = (
    duckdb.IOException,
    duckdb.TransactionException,
    duckdb.FatalException,
)

VERSION: str = duckdb.__version__


def memory_in_use(cur: Cursor) -> tuple[int, int]:
    """Bytes the instance's buffer manager holds, and bytes it has spilled to temporary files."""
    row = cur.execute(
        "SELECT coalesce(sum(memory_usage_bytes), 0), "
        "coalesce(sum(temporary_storage_bytes), 0) FROM duckdb_memory()"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
