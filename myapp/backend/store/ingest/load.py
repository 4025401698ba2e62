"""Loading an uploaded file into a new dataset file; swap.py then swaps it in atomically.

The upload is already on disk (see ingest_receive.py). Loading happens in two steps so a long
load never holds the write lock that logins, renames and other uploads need:

1. Here, a side instance with the bulk memory limit (storage.py) reads the staging file into a
   new dataset file, skipping and recording rows it cannot parse (`store_rejects`; what they
   say is in reports.py). An append writes the dataset's rows followed by the file's (matched
   by column name), after checking they fit; the dataset's own file is only read.
2. In swap.py, one short transaction under the write lock points the dataset's view and
   catalog entry at the new file and writes the audit line its caller gives (`LoadAudit`). Any
   failure rolls all of it back, so every dataset and the catalog stay as they were; the
   replaced file is deleted afterwards.

The staging files, and the new dataset file unless it was swapped in, are removed in every
outcome.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from myapp.contract.types import is_numeric
from myapp.settings import Settings

from ...errors import BadRequest, Conflict, Unprocessable
from ...lake.engine import attach_base
from .. import storage
from ..datasets import (
    DatasetRecord,
)
from ..file_format import duckdb_version
from ..sql import qualified, quote_ident
from ..values import encode_rows
from . import csvread
from .jsondepth import MAX_DEPTH, nesting_exceeds
from .options import IngestOptions
from .prepare import PreparedFile, StagingFiles
from .refine import Refinement, refine
from .reports import (
    REJECT_SAMPLE,
    load_error,
    not_one_table,
    nothing_loaded,
    plain,
    reject_sample,
    sentence,
)

log = logging.getLogger("myapp.backend.ingest")

# read_json's limit for one object; real exports hold documents of several MB per record.
MAX_JSON_OBJECT_BYTES = 64 * 1024 * 1024
# DuckDB 1.4's read_json allocates two object-size buffers per thread before reading (64 MiB
# objects on 2 threads: 256 MiB, the whole default bulk memory limit, and the load fails out
# of memory); 2.x allocates as it reads. On 1.4 a JSON load therefore reads on one thread.
JSON_ONE_THREAD = duckdb_version() < (2, 0)
# DuckDB 1.4 does not bound JSON nesting and crashes the process on very deep files
# (jsondepth.py); they are checked first there (about 13 MB/s, measured on a busy 2-core host).
JSON_DEPTH_CHECK = duckdb_version() < (2, 0)


# -- loading into a staging table ---------------------------------------------------------


@dataclass
class StagedFile:
    """A dataset file written by a load, not yet any dataset's (see storage.py)."""

    file_id: str
    rows_loaded: int
    rows_rejected: int
    rejects: list[dict[str, Any]]
    # Rows in the file: rows_loaded, plus the dataset's rows for an append.
    row_count: int
    # For an append: the file it was built on; the swap checks it is still the dataset's.
    based_on: str | None = None
    # How the file was read: format, encoding, dialect, sheet; types converted after loading.
    read: dict[str, Any] = field(default_factory=dict)
    refinement: Refinement = field(default_factory=Refinement)
    columns: list[dict[str, str]] = field(default_factory=list)
    # The first rows as loaded (a preview asks for them).
    preview_rows: list[list[Any]] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """What the upload answer says about the reading, beyond the counts."""
        return {
            "read": {
                **self.read,
                "decimal_separator": self.refinement.decimal_separator,
                "thousands": self.refinement.thousands,
            },
            "conversions": self.refinement.conversions,
            "text_columns": self.refinement.text_columns,
        }


def _json_sql(path: Path, fmt: str) -> tuple[str, dict]:
    json_format = "newline_delimited" if fmt == "ndjson" else "auto"
    return (
        f"read_json($path, format = '{json_format}', "
        f"maximum_object_size = {MAX_JSON_OBJECT_BYTES})",
        {"path": str(path.resolve())},
    )


def _clean_ndjson(prepared: PreparedFile, staging: StagingFiles) -> tuple[Path, int, list]:
    """Copy the lines that are valid JSON to a new file; report the others with their reason.

    Only used when DuckDB refused the file as a whole, so the fast path stays in DuckDB.
    """
    target = staging.new("clean.ndjson")
    rejected = 0
    sample: list[dict[str, Any]] = []
    with prepared.path.open("rb") as src, target.open("wb") as dst:
        for number, raw in enumerate(src, start=1):
            if not raw.strip():
                continue
            try:
                json.loads(raw)
            except (ValueError, RecursionError) as exc:
                rejected += 1
                if len(sample) < REJECT_SAMPLE:
                    if isinstance(exc, RecursionError):
                        reason = "nested too deeply"
                    elif isinstance(exc, json.JSONDecodeError):
                        reason = exc.msg
                    else:
                        reason = str(exc)
                    sample.append(
                        {"line": number, "column": None, "reason": f"invalid JSON: {reason}"}
                    )
                continue
            dst.write(raw if raw.endswith(b"\n") else raw + b"\n")
    return target, rejected, sample


PREVIEW_ROWS = 100


def build_file(
    settings: Settings,
    prepared: PreparedFile,
    options: IngestOptions,
    staging: StagingFiles,
    base: DatasetRecord | None,
    path: Path | None = None,
) -> StagedFile:
    """Load the prepared file into a new dataset file, in a side instance (see storage.py).

    With `base` (an append), the new file holds the dataset's rows followed by the file's. On
    any failure the new file is removed here. `path` puts the file elsewhere than the datasets
    dir (a staged upload's preview), under the file id "staged".
    """
    file_id = storage.new_file_id() if path is None else "staged"
    target = storage.path_of(settings, file_id) if path is None else path
    if base is not None and not storage.PINS.pin(base.file_id):
        raise Conflict(
            f"The dataset {base.name!r} changed while the file was being received; nothing was "
            "appended. Upload it again.",
            code="dataset_changed",
        )
    try:
        with storage.side_instance(settings, target) as conn:
            staged = _load(conn, settings, prepared, options, staging, file_id, base)
            conn.execute("CHECKPOINT")
        if staged.rows_loaded == 0 and staged.rows_rejected > 0 and path is None:
            raise nothing_loaded(staged.rows_rejected, staged.rejects)
        return staged
    except BaseException:
        _remove(settings, file_id, target)
        raise
    finally:
        if base is not None:
            storage.PINS.unpin(base.file_id)


def _read_csv(
    cur: duckdb.DuckDBPyConnection,
    target: str,
    prepared: PreparedFile,
    options: IngestOptions,
    dialect: csvread.Dialect,
) -> tuple[int, list[dict[str, Any]]]:
    source, params = csvread.read_sql(prepared, options, dialect)
    cur.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}", params)
    return reject_sample(cur)


def _read_csv_override(
    cur: duckdb.DuckDBPyConnection,
    target: str,
    prepared: PreparedFile,
    options: IngestOptions,
    dialect: csvread.Dialect,
) -> tuple[csvread.Dialect, int, list[dict[str, Any]]]:
    """Read with a dialect that overrides plain read_csv's; where it fails or does not fit
    the file (csvread.override_fits), read with plain read_csv's own dialect instead."""
    assert dialect.plain is not None
    try:
        rejected, rejects = _read_csv(cur, target, prepared, options, dialect)
        loaded = cur.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
        if csvread.override_fits(cur, prepared, options, dialect, loaded, rejected):
            return dialect, rejected, rejects
    except duckdb.Error:
        pass  # e.g. padded rows with quoted newlines, which DuckDB reads in one thread only
    cur.execute(f"DROP TABLE IF EXISTS {target}")
    # A read without rejects registers no scan: the overriding read's rejects go too.
    for name in (csvread.REJECTS_TABLE, csvread.REJECTS_SCAN):
        cur.execute(f"DROP TABLE IF EXISTS temp.main.{name}")
    rejected, rejects = _read_csv(cur, target, prepared, options, dialect.plain)
    return dialect.plain, rejected, rejects


def _remove(settings: Settings, file_id: str, target: Path) -> None:
    if file_id != "staged":
        storage.remove_file(settings, file_id)
        return
    for leftover in (target, target.with_name(target.name + ".wal")):
        leftover.unlink(missing_ok=True)


def _load(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    prepared: PreparedFile,
    options: IngestOptions,
    staging: StagingFiles,
    file_id: str,
    base: DatasetRecord | None,
) -> StagedFile:
    table = "incoming" if base is not None else storage.TABLE
    target = qualified("main", table)
    rejected, rejects = 0, []
    read: dict[str, Any] = prepared.describe()
    refinement = Refinement()
    cur = conn  # the side instance's own connection: one load, one thread
    try:
        if prepared.format in ("csv", "tsv"):
            dialect = csvread.sniff(cur, prepared, options)
            auto = dialect.auto and dialect.plain is None
            misfit = csvread.auto_fit(cur, prepared, options, dialect) if auto else None
            if misfit is not None:
                raise not_one_table(*misfit)
            if dialect.plain is None:
                rejected, rejects = _read_csv(cur, target, prepared, options, dialect)
            else:
                dialect, rejected, rejects = _read_csv_override(
                    cur, target, prepared, options, dialect
                )
            read.update(dialect.public())
            keep = {c.lower() for c in options.types}
            refinement = refine(cur, table, keep=keep, delimiter=dialect.delimiter)
        elif prepared.format == "parquet":
            cur.execute(
                f"CREATE TABLE {target} AS SELECT * FROM read_parquet($path)",
                {"path": str(prepared.path.resolve())},
            )
        else:
            if JSON_ONE_THREAD:
                cur.execute("SET threads = 1")
            source, params = _json_sql(prepared.path, prepared.format)
            try:
                if JSON_DEPTH_CHECK and nesting_exceeds(prepared.path):
                    # What DuckDB 2.x says, so both versions answer alike from here on.
                    raise duckdb.InvalidInputException(
                        f"JSON exceeds maximum recursion depth of {MAX_DEPTH}"
                    )
                cur.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}", params)
            except duckdb.InvalidInputException as exc:
                text = str(exc).lower()
                if prepared.format != "ndjson" or (
                    "malformed json" not in text and "recursion depth" not in text
                ):
                    raise
                clean, rejected, rejects = _clean_ndjson(prepared, staging)
                if clean.stat().st_size == 0:
                    raise nothing_loaded(rejected, rejects) from None
                source, params = _json_sql(clean, "ndjson")
                cur.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}", params)
    except duckdb.Error as exc:
        raise load_error(exc, prepared) from None
    loaded = cur.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    if options.types:
        # read_csv ignores types of unknown columns when it detects the dialect itself.
        present = {name.lower() for name, _ in _columns(cur, table)}
        missing = [c for c in options.types if c.lower() not in present]
        if missing:
            raise BadRequest(
                f"'types' names columns the file does not have: {', '.join(missing[:10])}.",
                code="invalid_option",
                detail={"option": "types", "columns": sorted(present)[:200]},
            )
    columns = [{"name": n, "type": t} for n, t in _columns(cur, table)]
    result = cur.execute(f"SELECT * FROM {target} LIMIT {PREVIEW_ROWS}")
    preview = encode_rows(result.fetchall(), [c["type"] for c in columns])
    row_count = loaded
    if base is not None:
        row_count = _append_onto(cur, settings, base, table)
    return StagedFile(
        file_id=file_id,
        rows_loaded=loaded,
        rows_rejected=rejected,
        rejects=rejects,
        row_count=row_count,
        based_on=base.file_id if base is not None else None,
        read=read,
        refinement=refinement,
        columns=columns,
        preview_rows=preview,
    )


def append_staged(
    settings: Settings, staged_path: Path, staged: StagedFile, base: DatasetRecord
) -> StagedFile:
    """A new dataset file: `base`'s rows followed by those of a staged upload's file."""
    file_id = storage.new_file_id()
    target = storage.path_of(settings, file_id)
    if not storage.PINS.pin(base.file_id):
        raise dataset_changed(base.name)
    try:
        with storage.side_instance(settings, target) as cur:
            cur.execute(f"ATTACH {storage.sql_literal(staged_path)} AS myapp_staged (READ_ONLY)")
            cur.execute(
                f"CREATE TABLE {qualified('main', 'incoming')} AS SELECT * FROM "
                f"myapp_staged.main.{quote_ident(storage.TABLE)}"
            )
            cur.execute("DETACH myapp_staged")
            row_count = _append_onto(cur, settings, base, "incoming")
            cur.execute("CHECKPOINT")
    except BaseException:
        storage.remove_file(settings, file_id)
        raise
    finally:
        storage.PINS.unpin(base.file_id)
    return StagedFile(
        file_id=file_id,
        rows_loaded=staged.rows_loaded,
        rows_rejected=staged.rows_rejected,
        rejects=staged.rejects,
        row_count=row_count,
        based_on=base.file_id,
        read=staged.read,
        refinement=staged.refinement,
        columns=staged.columns,
    )


def _append_onto(
    cur: duckdb.DuckDBPyConnection, settings: Settings, base: DatasetRecord, incoming: str
) -> int:
    """Make `data` the dataset's rows followed by the incoming ones (matched by column name);
    returns the row count. The dataset's own file is only read."""
    _check_append(cur, incoming, base)
    source = "myapp_base"
    # In the lake mode the dataset's rows are a lake table (lake/engine.py).
    base_table = attach_base(cur, settings, base.file_id, source)
    if base_table is None:
        cur.execute(
            f"ATTACH {storage.sql_literal(storage.path_of(settings, base.file_id))} "
            f"AS {source} (READ_ONLY)"
        )
        base_table = f"{source}.main.{quote_ident(storage.TABLE)}"
    data = qualified("main", storage.TABLE)
    try:
        cur.execute(f"CREATE TABLE {data} AS SELECT * FROM {base_table}")
        cur.execute(f"INSERT INTO {data} BY NAME SELECT * FROM {qualified('main', incoming)}")
    except (duckdb.ConversionException, duckdb.BinderException) as exc:
        raise Unprocessable(
            "The file's values do not fit the dataset's columns; nothing was "
            f"appended: {sentence(plain(str(exc)))}",
            code="incompatible_types",
        ) from None
    finally:
        cur.execute(f"DETACH {source}")
    cur.execute(f"DROP TABLE {qualified('main', incoming)}")
    return cur.execute(f"SELECT count(*) FROM {data}").fetchone()[0]


# Type names made only of keywords and numbers can be written into SQL as they are; anything
# else (nested types carry field names from the data) is checked by the insert itself.
_SIMPLE_TYPE = re.compile(r"^[A-Z][A-Z0-9_ ]*(\(\d+(, ?\d+)?\))?$")


def _columns(cur: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    return [
        (r[0], r[1])
        for r in cur.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE schema_name = 'main' "
            "AND database_name = current_database() AND table_name = $table "
            "ORDER BY column_index",
            {"table": table},
        ).fetchall()
    ]


def _check_append(cur: duckdb.DuckDBPyConnection, staged: str, record: DatasetRecord) -> None:
    """Refuse an append whose columns or values do not fit the dataset, naming the columns."""
    target = {c["name"].lower(): c for c in record.columns}
    file_columns = _columns(cur, staged)
    unknown = [name for name, _ in file_columns if name.lower() not in target]
    if unknown:
        raise Unprocessable(
            f"The file has columns the dataset {record.name!r} does not have: "
            f"{', '.join(unknown[:10])}. Append needs matching column names; use mode "
            "replace to change the columns.",
            code="incompatible_columns",
            detail={
                "unknown_columns": unknown,
                "dataset_columns": [c["name"] for c in record.columns],
            },
        )
    problems = []
    for name, file_type in file_columns:
        dataset_type = target[name.lower()]["type"]
        if file_type == dataset_type or not _SIMPLE_TYPE.match(dataset_type):
            continue
        if not _SIMPLE_TYPE.match(file_type):
            problems.append({"column": name, "dataset_type": dataset_type, "file_type": file_type})
            continue
        column = quote_ident(name)
        cast = f"TRY_CAST({column} AS {dataset_type})"
        lossy = (
            f" OR CAST({cast} AS {file_type}) <> {column}"
            if is_numeric(file_type) and is_numeric(dataset_type)
            else ""
        )
        bad = cur.execute(
            f"SELECT count(*) FROM {qualified('main', staged)} "
            f"WHERE {column} IS NOT NULL AND ({cast} IS NULL{lossy})"
        ).fetchone()[0]
        if bad:
            problems.append(
                {
                    "column": name,
                    "dataset_type": dataset_type,
                    "file_type": file_type,
                    "bad_values": bad,
                }
            )
    if problems:
        first = problems[0]
        raise Unprocessable(
            f"Column {first['column']!r} of the file holds {first['file_type']} values that do "
            f"not fit the dataset's {first['dataset_type']} column; nothing was appended. "
            "Fix the file, pass explicit types, or use mode replace.",
            code="incompatible_types",
            detail={"columns": problems},
        )


def dataset_changed(name: str) -> Conflict:
    return Conflict(
        f"The dataset {name!r} was changed or deleted by someone else while this file was being "
        "loaded; nothing was appended. Upload it again.",
        code="dataset_changed",
    )
