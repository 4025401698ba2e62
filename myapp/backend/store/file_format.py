"""Which DuckDB storage format the backend writes, and whether this DuckDB can read a file.

myapp runs on DuckDB 1.4 (LTS) and 2.x. DuckDB 2.x writes its newest storage format by default,
which 1.4 cannot open ("Trying to read a database file with version number …"), and a 1.4
process that finds such a file fails in its worker, which gunicorn restarts forever. So:

- every DuckDB instance of the backend creates files (app.db, dataset files, backups) in
  the format of the oldest supported DuckDB, `STORAGE_VERSION`, which every supported DuckDB
  reads and writes: a workspace moves between versions in both directions;
- files made before (DuckDB 2.x's newest format) keep working on 2.x; on 1.4 the backend
  refuses to start with one line naming the file, before any worker opens it.

The check reads the file's header, not DuckDB: the serving process must not open DuckDB before
it forks its worker. Header layout (DuckDB's MainHeader): an 8-byte checksum, the magic `DUCK`,
the storage version number (uint64, little-endian), then the writer's library version string.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

# The format of DuckDB 1.4, what every supported DuckDB reads (DuckDB's own name for it).
STORAGE_VERSION = "v1.4.0"

MAGIC = b"DUCK"
_MAGIC_AT = 8
_VERSION_AT = 12
_WRITER_AT = 52
_WRITER_LENGTH = 32
# The highest storage version number each supported DuckDB line reads (1.4.x: 64-67, measured
# with 1.4.4). DuckDB 2.x reads every format up to its own, so it has no entry.
HIGHEST_READABLE = {(1, 4): 67}


class UnreadableFile(RuntimeError):
    """A database file written in a format this DuckDB cannot read; one line for a person."""


def duckdb_version() -> tuple[int, int]:
    major, minor, *_ = version("duckdb").split(".")
    return int(major), int(minor)


def storage_version_of(path: Path) -> tuple[int, str] | None:
    """The storage version number and the writer's DuckDB version of a DuckDB file, or None
    when it is not one (empty, cut short, another format)."""
    try:
        with path.open("rb") as f:
            head = f.read(_WRITER_AT + _WRITER_LENGTH)
    except OSError:
        return None
    if len(head) < _WRITER_AT + _WRITER_LENGTH or head[_MAGIC_AT:_VERSION_AT] != MAGIC:
        return None
    number = int.from_bytes(head[_VERSION_AT : _VERSION_AT + 8], "little")
    writer = head[_WRITER_AT:].split(b"\0", 1)[0].decode("ascii", "replace")
    return number, writer or "an unknown version"


def check_readable(paths: list[Path]) -> None:
    """Raise UnreadableFile for the first file this DuckDB cannot open."""
    running = duckdb_version()
    highest = HIGHEST_READABLE.get(running)
    if highest is None:
        return
    for path in paths:
        found = storage_version_of(path)
        if found is None or found[0] <= highest:
            continue
        number, writer = found
        raise UnreadableFile(
            f"{path} was written by DuckDB {writer} in a storage format (version {number}) "
            f"that this DuckDB {version('duckdb')} cannot read; run myapp with DuckDB 2.x "
            f"(pip install 'duckdb>=2,<3'), which reads it"
        )
