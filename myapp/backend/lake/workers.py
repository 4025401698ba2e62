"""What a query or export worker (store/usersql/worker.py) needs to read the lake.

Measured with DuckDB 1.4.4 (tests/lake/test_lake_attach.py): a worker that attaches the lake
`READ_ONLY` before locking itself in the sandbox (only the data path and its own folders
readable, external access off, configuration locked) reads every table, sees commits made
afterwards by other processes and can neither write to the lake nor attach anything else.
The worker gets plain strings, so it needs nothing of myapp's settings at start.
"""

from __future__ import annotations

from typing import Any

from myapp.settings import Settings

from . import attach
from .engine import LAKE_SCHEMA, TABLE_PREFIX


def worker_config(settings: Settings) -> dict[str, Any] | None:
    """The `lake` entry of a worker's configuration; None in the embedded mode."""
    if not settings.lake_mode:
        return None
    assert settings.lake_data_path is not None
    folder = attach.extension_directory()
    return {
        "extension_directory": str(folder) if folder is not None else None,
        "extensions": list(attach.EXTENSIONS),
        "settings": [f"SET pg_connection_limit = {attach.PG_CONNECTION_LIMIT}"],
        "attach": attach.attach_sql(settings, read_only=True),
        "data_path": settings.lake_data_path,
        # The table a dataset's view reads: `<alias>.<schema>."<prefix><file id>"`.
        "table_prefix": f'"{attach.ALIAS}".{LAKE_SCHEMA}."{TABLE_PREFIX}',
    }
