"""Loading an uploaded file into a dataset: detect what it is, load it, swap it in atomically.

The upload is already on disk (see ingest_receive.py). Loading happens in two steps so a long
load never holds the write lock that logins, renames and other uploads need:

1. A side instance with the bulk memory limit (storage.py) reads the staging file into a new
   dataset file, skipping and recording rows it cannot parse (`store_rejects`). An append
   writes the dataset's rows followed by the file's (matched by column name), after checking
   they fit; the dataset's own file is only read.
2. One short transaction under the write lock points the dataset's view and catalog entry at
   the new file and writes the audit event. Any failure rolls all of it back, so every dataset
   and the catalog stay as they were; the replaced file is deleted afterwards.

The staging files, and the new dataset file unless it was swapped in, are removed in every
outcome.
"""

from __future__ import annotations

import codecs
import gzip
import json
import logging
import re
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from myapp.settings import Settings

from ..errors import AppError, BadRequest, Conflict, PayloadTooLarge, Unprocessable
from . import audit, storage
from .database import Database
from .datasets import (
    DatasetRecord,
    check_name_free,
    drop_profiles,
    find_dataset,
    insert_record,
    release_file,
    update_record,
)
from .ingest_receive import LineMeter
from .sql import qualified, quote_ident

log = logging.getLogger("myapp.backend.ingest")

MODES = ("create", "replace", "append")
FORMATS = ("csv", "tsv", "parquet", "json", "ndjson")
FORMAT_ALIASES = {"jsonl": "ndjson", "pq": "parquet", "tab": "tsv"}

_EXTENSIONS = {
    "csv": "csv",
    "txt": "csv",
    "tsv": "tsv",
    "tab": "tsv",
    "parquet": "parquet",
    "pq": "parquet",
    "json": "json",
    "ndjson": "ndjson",
    "jsonl": "ndjson",
}

# Encodings DuckDB's read_csv decodes itself (offline, only these are built in); any other
# encoding Python knows is transcoded to UTF-8 while preparing the file.
NATIVE_ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "utf-8-sig": "utf-8",
    "utf-16": "utf-16",
    "utf16": "utf-16",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
    "iso8859-1": "latin-1",
    "l1": "latin-1",
}

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"

# How much of the start of a file is looked at to tell its format and encoding.
SNIFF_BYTES = 1024 * 1024
CHUNK_BYTES = 1024 * 1024

# A small gzip can expand enormously; refuse beyond this multiple of the upload limit rather
# than fill the disk.
MAX_EXPANSION = 10

# DuckDB's default limit for one CSV line is 2 MB; a larger limit costs memory on every load,
# so it is only used when a file turns out to need it (long text fields, embedded documents).
LONG_LINE_BYTES = 64 * 1024 * 1024
# Half of DuckDB's default limit (2,000,000 bytes), so a line measured a little short still
# gets the bigger limit.
LONG_LINE_THRESHOLD = 1_000_000

# read_json's limit for one object; real exports hold documents of several MB per record.
MAX_JSON_OBJECT_BYTES = 64 * 1024 * 1024

# How many rejected rows are returned as a sample (the count is always exact).
REJECT_SAMPLE = 20
MAX_REASON_CHARS = 300

# Form fields and query parameters are text: "yes", "1", "true" all mean true.
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


class IngestError(AppError):
    """The file could not be loaded; nothing was changed."""

    status_code, code = 422, "unreadable_file"


@dataclass(frozen=True)
class IngestOptions:
    mode: str = "create"
    format: str | None = None
    delimiter: str | None = None
    header: bool | None = None
    quote: str | None = None
    escape: str | None = None
    encoding: str | None = None
    nullstr: str | None = None
    types: dict[str, str] = field(default_factory=dict)


def _one_char(name: str, value: str) -> str:
    if value in ("\\t", "tab", "TAB"):
        return "\t"
    if len(value) != 1:
        raise BadRequest(
            f"{name} must be a single character (or \\t for a tab), not {value[:20]!r}.",
            code="invalid_option",
            detail={"option": name},
        )
    return value


def parse_options(values: Mapping[str, str]) -> IngestOptions:
    """Options from query parameters or form fields, checked; BadRequest names the culprit."""
    mode = (values.get("mode") or "create").strip().lower()
    if mode not in MODES:
        raise BadRequest(
            f"mode must be one of {', '.join(MODES)}, not {mode[:20]!r}.",
            code="invalid_option",
            detail={"option": "mode"},
        )
    fmt = (values.get("format") or "").strip().lower() or None
    if fmt in ("auto",):
        fmt = None
    if fmt is not None:
        fmt = FORMAT_ALIASES.get(fmt, fmt)
        if fmt not in FORMATS:
            raise BadRequest(
                f"format must be one of {', '.join(FORMATS)}, not {fmt[:20]!r}.",
                code="invalid_option",
                detail={"option": "format"},
            )
    header: bool | None = None
    raw_header = (values.get("header") or "").strip().lower()
    if raw_header and raw_header != "auto":
        if raw_header in _TRUE:
            header = True
        elif raw_header in _FALSE:
            header = False
        else:
            raise BadRequest(
                "header must be true or false.", code="invalid_option", detail={"option": "header"}
            )
    delimiter = values.get("delimiter") or values.get("delim") or values.get("sep") or None
    quote = values.get("quote") or None
    escape = values.get("escape") or None
    encoding = (values.get("encoding") or "").strip().lower() or None
    if encoding in ("auto",):
        encoding = None
    if encoding is not None and encoding not in NATIVE_ENCODINGS:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise BadRequest(
                f"Unknown encoding {encoding[:40]!r}; use for example utf-8, latin-1, "
                "cp1252 or utf-16.",
                code="invalid_option",
                detail={"option": "encoding"},
            ) from None
    types = _parse_types(values.get("types") or "")
    return IngestOptions(
        mode=mode,
        format=fmt,
        delimiter=_one_char("delimiter", delimiter) if delimiter else None,
        header=header,
        quote=_one_char("quote", quote) if quote else None,
        escape=_one_char("escape", escape) if escape else None,
        encoding=encoding,
        nullstr=values.get("nullstr") or values.get("null") or None,
        types=types,
    )


def _parse_types(text: str) -> dict[str, str]:
    """Column types as JSON (`{"col": "DATE"}`) or `col:DATE,other:BIGINT`."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            raise BadRequest(
                'types must be a JSON object of column names to type names, e.g. {"day": "DATE"}.',
                code="invalid_option",
                detail={"option": "types"},
            )
        return {k: v.strip() for k, v in parsed.items()}
    out: dict[str, str] = {}
    for part in text.split(","):
        column, sep, dtype = part.partition(":")
        if not sep or not column.strip() or not dtype.strip():
            raise BadRequest(
                "types must look like column:TYPE,column:TYPE (e.g. day:DATE,amount:DECIMAL).",
                code="invalid_option",
                detail={"option": "types"},
            )
        out[column.strip()] = dtype.strip()
    return out


# -- staging files ------------------------------------------------------------------------


class StagingFiles:
    """The files of one upload under the staging dir; `cleanup()` removes them all."""

    def __init__(self, settings: Settings) -> None:
        self.directory = settings.staging_dir
        self.directory.mkdir(parents=True, exist_ok=True)
        self.id = uuid.uuid4().hex
        self.paths: list[Path] = []

    def new(self, suffix: str) -> Path:
        path = self.directory / f"{self.id}.{suffix}"
        self.paths.append(path)
        return path

    def cleanup(self) -> None:
        for path in self.paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove staging file %s: %s", path, exc)


@dataclass
class PreparedFile:
    """An uploaded file ready for DuckDB: decompressed, its format and encoding known."""

    path: Path
    format: str
    encoding: str
    compression: str | None
    upload_bytes: int
    filename: str | None
    # Lines longer than DuckDB's default limit were seen while the file passed by.
    long_lines: bool = False


def _read_head(path: Path, size: int = SNIFF_BYTES) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def _decompress(source: Path, target: Path, limit: int, meter: LineMeter) -> None:
    written = 0
    try:
        with gzip.open(source, "rb") as src, target.open("wb") as dst:
            while chunk := src.read(CHUNK_BYTES):
                written += len(chunk)
                if written > limit:
                    raise PayloadTooLarge(
                        f"The file expands to more than {limit // (1024 * 1024)} MB when "
                        "decompressed; upload it uncompressed or split it.",
                        code="decompressed_too_large",
                    )
                dst.write(chunk)
                meter.feed(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(
            "The file starts like a gzip file but cannot be decompressed "
            f"({_plain(str(exc)) or type(exc).__name__}); it may be truncated or damaged.",
            code="invalid_gzip",
        ) from None


def _format_from_filename(filename: str | None) -> str | None:
    if not filename:
        return None
    parts = filename.lower().rsplit("/", 1)[-1].split(".")
    while len(parts) > 1 and parts[-1] in ("gz", "gzip"):
        parts.pop()
    if len(parts) < 2:
        return None
    return _EXTENSIONS.get(parts[-1])


def _sniff_text_format(head: bytes) -> str:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        first_line = text.split(b"\n", 1)[0]
        try:
            json.loads(first_line)
        except ValueError:
            # A pretty-printed object (or several) spans lines: read as JSON, not NDJSON.
            return "json"
        return "ndjson"
    return "csv"


def _valid_utf8_prefix(head: bytes, whole: bool) -> bool:
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        # The sniffed prefix may end inside a multi-byte character.
        return not whole and exc.start >= len(head) - 3


def _detect_encoding(head: bytes, whole: bool) -> str:
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if _valid_utf8_prefix(head, whole):
        return "utf-8"
    # Not UTF-8: most such files are Western European exports (Latin-1 / Windows-1252).
    return "latin-1"


def _transcode(source: Path, target: Path, encoding: str, meter: LineMeter) -> None:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    with source.open("rb") as src, target.open("wb") as dst:
        while True:
            chunk = src.read(CHUNK_BYTES)
            text = decoder.decode(chunk, final=not chunk).encode("utf-8")
            dst.write(text)
            meter.feed(text)
            if not chunk:
                break


def prepare_file(
    staging: StagingFiles,
    upload: Path,
    options: IngestOptions,
    settings: Settings,
    filename: str | None,
    longest_line: int | None = None,
) -> PreparedFile:
    """Decompress, tell the format and the encoding; refuse what cannot be data.

    `longest_line` is what the receiving measured of the upload as sent (None: unknown).
    """
    size = upload.stat().st_size
    if size == 0:
        raise IngestError("The file is empty: there is nothing to load.", code="empty_file")
    path = upload
    compression = None
    head = _read_head(path)
    if head.startswith(GZIP_MAGIC):
        compression = "gzip"
        path = staging.new("data")
        meter = LineMeter()
        _decompress(upload, path, settings.max_upload_bytes * MAX_EXPANSION, meter)
        longest_line = meter.longest_line
        head = _read_head(path)
        if not head:
            raise IngestError(
                "The file is an empty gzip archive: there is nothing to load.", code="empty_file"
            )
    whole = path.stat().st_size <= len(head)

    fmt = options.format
    if fmt is None:
        if head.startswith(PARQUET_MAGIC):
            fmt = "parquet"
        else:
            fmt = _format_from_filename(filename) or _sniff_text_format(head)
    if fmt == "parquet":
        if not head.startswith(PARQUET_MAGIC):
            raise IngestError(
                "The file is not a Parquet file (Parquet files start with the bytes PAR1).",
                code="unreadable_file",
            )
        return PreparedFile(path, fmt, "binary", compression, size, filename)

    if not head.strip(b" \t\r\n\xef\xbb\xbf"):
        raise IngestError(
            "The file holds only blank space: there is nothing to load.", code="empty_file"
        )
    encoding = options.encoding
    utf16 = head.startswith((b"\xff\xfe", b"\xfe\xff")) or (encoding or "").startswith("utf-16")
    if b"\x00" in head[:65536] and not utf16:
        raise IngestError(
            f"The file looks binary, not like {fmt.upper()} text (it contains NUL bytes). "
            "Check that you chose the right file.",
            code="binary_file",
        )
    encoding = encoding or _detect_encoding(head, whole)
    if fmt in ("json", "ndjson") and NATIVE_ENCODINGS.get(encoding) != "utf-8":
        # DuckDB reads JSON as UTF-8 only.
        path, encoding, longest_line = _to_utf8(staging, path, encoding)
    elif encoding not in NATIVE_ENCODINGS:
        path, encoding, longest_line = _to_utf8(staging, path, encoding)
    else:
        encoding = NATIVE_ENCODINGS[encoding]
    long_lines = longest_line is not None and longest_line >= LONG_LINE_THRESHOLD
    return PreparedFile(path, fmt, encoding, compression, size, filename, long_lines)


def _to_utf8(staging: StagingFiles, path: Path, encoding: str) -> tuple[Path, str, int]:
    target = staging.new("utf8")
    meter = LineMeter()
    _transcode(path, target, encoding, meter)
    return target, "utf-8", meter.longest_line


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


# Loads of one dataset name run one after another: an append builds on the dataset's current
# file, and two appends at once would each miss the other's rows.
_name_locks: dict[str, threading.Lock] = {}
_name_locks_guard = threading.Lock()


def _name_lock(name: str) -> threading.Lock:
    with _name_locks_guard:
        return _name_locks.setdefault(name, threading.Lock())


def _plain(message: str) -> str:
    """DuckDB's error text in plain words: no type prefix, no echoed data or SQL excerpt."""
    lines = []
    for line in message.splitlines():
        stripped = line.strip()
        if not stripped:
            if lines:
                break
            continue
        if stripped.startswith(("Original Line:", "LINE ", "Possible Solution")):
            continue
        lines.append(stripped)
    text = " ".join(lines)
    text = re.sub(r"^[A-Za-z ]*Error: ", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1] + "…"
    return text


def sentence(text: str) -> str:
    """Error messages are sentences ending with a period, whatever DuckDB's text ends with."""
    text = text.rstrip(" !")
    return text if text.endswith((".", "?")) else text + "."


def _csv_sql(prepared: PreparedFile, options: IngestOptions, long_lines: bool) -> tuple[str, dict]:
    args = [
        "$path",
        "store_rejects = true",
        "rejects_table = 'myapp_rejects'",
        "rejects_scan = 'myapp_reject_scans'",
        "encoding = $encoding",
    ]
    params: dict[str, Any] = {"path": str(prepared.path.resolve()), "encoding": prepared.encoding}
    delimiter = options.delimiter or ("\t" if prepared.format == "tsv" else None)
    if delimiter:
        args.append("delim = $delim")
        params["delim"] = delimiter
    if options.header is not None:
        args.append("header = $header")
        params["header"] = options.header
    if options.quote:
        args.append("quote = $quote")
        params["quote"] = options.quote
    if options.escape:
        args.append("escape = $escape")
        params["escape"] = options.escape
    if options.nullstr:
        args.append("nullstr = $nullstr")
        params["nullstr"] = options.nullstr
    if options.types:
        args.append("types = $types")
        params["types"] = options.types
    if long_lines:
        args.append(f"max_line_size = {LONG_LINE_BYTES}")
    return f"read_csv({', '.join(args)})", params


def _json_sql(path: Path, fmt: str) -> tuple[str, dict]:
    json_format = "newline_delimited" if fmt == "ndjson" else "auto"
    return (
        f"read_json($path, format = '{json_format}', "
        f"maximum_object_size = {MAX_JSON_OBJECT_BYTES})",
        {"path": str(path.resolve())},
    )


def _reject_sample(cur: duckdb.DuckDBPyConnection) -> tuple[int, list[dict[str, Any]]]:
    scan = cur.execute("SELECT max(scan_id) FROM temp.main.myapp_reject_scans").fetchone()
    if not scan or scan[0] is None:
        return 0, []
    count = cur.execute(
        "SELECT count(DISTINCT line) FROM temp.main.myapp_rejects WHERE scan_id = $scan",
        {"scan": scan[0]},
    ).fetchone()[0]
    rows = cur.execute(
        # A row can fail on several columns; the first problem of each row is reported.
        "SELECT DISTINCT ON (line) line, column_name, CAST(error_type AS VARCHAR), "
        "error_message FROM temp.main.myapp_rejects WHERE scan_id = $scan "
        f"ORDER BY line, column_idx LIMIT {REJECT_SAMPLE}",
        {"scan": scan[0]},
    ).fetchall()
    return count, [
        {
            "line": int(line) if line is not None else None,
            "column": column,
            "reason": _reason(kind, msg),
        }
        for line, column, kind, msg in rows
    ]


def _reason(kind: str | None, message: str | None) -> str:
    text = _plain(message or "")
    labels = {
        "CAST": "value does not fit the column's type",
        "MISSING COLUMNS": "too few columns",
        "TOO MANY COLUMNS": "too many columns",
        "UNQUOTED VALUE": "quote in an unquoted value",
        "LINE SIZE OVER MAXIMUM": "line too long",
        "INVALID ENCODING": "not valid text in the file's encoding",
        "INVALID STATE": "malformed quoting",
    }
    label = labels.get(kind or "", (kind or "").lower())
    return f"{label}: {text}" if label and text else (label or text or "unreadable row")


def _is_long_line_error(message: str) -> bool:
    return "maximum line size" in message.lower()


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
            except ValueError as exc:
                rejected += 1
                if len(sample) < REJECT_SAMPLE:
                    reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                    sample.append(
                        {"line": number, "column": None, "reason": f"invalid JSON: {reason}"}
                    )
                continue
            dst.write(raw if raw.endswith(b"\n") else raw + b"\n")
    return target, rejected, sample


def build_file(
    settings: Settings,
    prepared: PreparedFile,
    options: IngestOptions,
    staging: StagingFiles,
    base: DatasetRecord | None,
) -> StagedFile:
    """Load the prepared file into a new dataset file, in a side instance (see storage.py).

    With `base` (an append), the new file holds the dataset's rows followed by the file's. On
    any failure the new file is removed here.
    """
    file_id = storage.new_file_id()
    path = storage.path_of(settings, file_id)
    if base is not None and not storage.PINS.pin(base.file_id):
        raise Conflict(
            f"The dataset {base.name!r} changed while the file was being received; nothing was "
            "appended. Upload it again.",
            code="dataset_changed",
        )
    try:
        with storage.side_instance(settings, path) as conn:
            staged = _load(conn, settings, prepared, options, staging, file_id, base)
            conn.execute("CHECKPOINT")
        return staged
    except BaseException:
        storage.remove_file(settings, file_id)
        raise
    finally:
        if base is not None:
            storage.PINS.unpin(base.file_id)


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
    cur = conn  # the side instance's own connection: one load, one thread
    try:
        if prepared.format in ("csv", "tsv"):
            source, params = _csv_sql(prepared, options, long_lines=prepared.long_lines)
            try:
                cur.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}", params)
            except duckdb.InvalidInputException as exc:
                if prepared.long_lines or not _is_long_line_error(str(exc)):
                    raise
                source, params = _csv_sql(prepared, options, long_lines=True)
                cur.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}", params)
            rejected, rejects = _reject_sample(cur)
        elif prepared.format == "parquet":
            cur.execute(
                f"CREATE TABLE {target} AS SELECT * FROM read_parquet($path)",
                {"path": str(prepared.path.resolve())},
            )
        else:
            source, params = _json_sql(prepared.path, prepared.format)
            try:
                cur.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}", params)
            except duckdb.InvalidInputException as exc:
                if prepared.format != "ndjson" or "malformed json" not in str(exc).lower():
                    raise
                clean, rejected, rejects = _clean_ndjson(prepared, staging)
                if clean.stat().st_size == 0:
                    raise _nothing_loaded(rejected, rejects) from None
                source, params = _json_sql(clean, "ndjson")
                cur.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}", params)
    except duckdb.Error as exc:
        raise _load_error(exc, prepared) from None
    loaded = cur.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
    if options.types:
        # read_csv ignores types of unknown columns when it stores rejects: check here.
        present = {name.lower() for name, _ in _columns(cur, table)}
        missing = [c for c in options.types if c.lower() not in present]
        if missing:
            raise BadRequest(
                f"'types' names columns the file does not have: {', '.join(missing[:10])}.",
                code="invalid_option",
                detail={"option": "types", "columns": sorted(present)[:200]},
            )
    if loaded == 0 and rejected > 0:
        raise _nothing_loaded(rejected, rejects)
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
    )


def _append_onto(
    cur: duckdb.DuckDBPyConnection, settings: Settings, base: DatasetRecord, incoming: str
) -> int:
    """Make `data` the dataset's rows followed by the incoming ones (matched by column name);
    returns the row count. The dataset's own file is only read."""
    _check_append(cur, incoming, base)
    source = "myapp_base"
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
            f"appended: {sentence(_plain(str(exc)))}",
            code="incompatible_types",
        ) from None
    finally:
        cur.execute(f"DETACH {source}")
    cur.execute(f"DROP TABLE {qualified('main', incoming)}")
    return cur.execute(f"SELECT count(*) FROM {data}").fetchone()[0]


def _nothing_loaded(rejected: int, rejects: list[dict[str, Any]]) -> IngestError:
    first = rejects[0]["reason"] if rejects else "unreadable rows"
    return IngestError(
        f"None of the {rejected} rows could be read (first problem: {first}). "
        "Check the file's delimiter, encoding and column types.",
        code="nothing_loaded",
        detail={"rows_rejected": rejected, "rejects": rejects},
    )


_FORMAT_NAMES = {
    "csv": "CSV",
    "tsv": "TSV",
    "parquet": "Parquet",
    "json": "JSON",
    "ndjson": "newline-delimited JSON",
}


def _load_error(exc: duckdb.Error, prepared: PreparedFile) -> AppError:
    message = _plain(str(exc))
    what = _FORMAT_NAMES[prepared.format]
    if isinstance(exc, duckdb.CatalogException) and "type" in message.lower():
        found = re.search(r"Type with name (\S+) does not exist", message)
        named = f"{found.group(1)!r} " if found else ""
        return BadRequest(
            f"'types' names a type {named}that DuckDB does not know; use for example VARCHAR, "
            "BIGINT, DOUBLE, DECIMAL(18,2), DATE, TIMESTAMP or BOOLEAN.",
            code="invalid_option",
            detail={"option": "types", "reason": message},
        )
    if isinstance(exc, duckdb.BinderException) and "COLUMN_TYPES" in str(exc):
        return BadRequest(
            f"'types' names a column the file does not have: {sentence(message)}",
            code="invalid_option",
            detail={"option": "types"},
        )
    hint = ""
    if "sniff" in message.lower() or "dialect" in message.lower():
        hint = " Is it really a delimited text file? You can set the delimiter and quote."
        message = "could not detect its delimiter and quoting"
    return IngestError(
        f"The file could not be read as {what}: {sentence(message)}{hint}",
        detail={"format": prepared.format, "reason": message},
    )


# -- the swap -----------------------------------------------------------------------------

# Type names made only of keywords and numbers can be written into SQL as they are; anything
# else (nested types carry field names from the data) is checked by the insert itself.
_SIMPLE_TYPE = re.compile(r"^[A-Z][A-Z0-9_ ]*(\(\d+(, ?\d+)?\))?$")
_NUMERIC = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT|FLOAT|DOUBLE|DECIMAL)")


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
            if _NUMERIC.match(file_type) and _NUMERIC.match(dataset_type)
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


def swap_in(
    database: Database,
    staged: StagedFile,
    name: str,
    mode: str,
    source: dict[str, Any],
    actor: str | None,
    ip: str,
) -> tuple[str, DatasetRecord]:
    """Make the staged file the dataset `name` in one transaction; return (action, record).

    On failure the staged file is detached and removed; on success the replaced file is let go.
    """
    settings = database.settings
    replaced: str | None = None
    try:
        with database.cursor() as cur:
            storage.attach(cur, settings, staged.file_id)
        with database.transaction() as cur:
            existing = find_dataset(cur, name)
            fields = dict(
                name=name,
                row_count=staged.row_count,
                source=source,
                actor=actor,
                file_id=staged.file_id,
            )
            if mode == "create" or existing is None:
                if staged.based_on is not None:
                    raise _changed(name)
                check_name_free(cur, name)
                insert_record(cur, **fields)
                action = "created"
            else:
                if mode == "append" and existing.file_id != staged.based_on:
                    raise _changed(name)
                update_record(cur, **fields)
                drop_profiles(cur, name)
                replaced = existing.file_id
                action = "replaced" if mode == "replace" else "appended"
            audit.record(
                cur,
                actor=actor,
                action=f"dataset.{action}",
                target=name,
                ip=ip,
                detail={
                    "rows_loaded": staged.rows_loaded,
                    "rows_rejected": staged.rows_rejected,
                    **source,
                },
            )
            record = find_dataset(cur, name)
    except BaseException:
        with database.cursor() as cur:
            release_file(cur, settings, staged.file_id)
        raise
    if replaced is not None:
        with database.cursor() as cur:
            release_file(cur, settings, replaced)
    assert record is not None
    return action, record


def _changed(name: str) -> Conflict:
    return Conflict(
        f"The dataset {name!r} was changed or deleted by someone else while this file was being "
        "loaded; nothing was appended. Upload it again.",
        code="dataset_changed",
    )


def check_mode_allows(database: Database, name: str, mode: str) -> None:
    """Answer 409 before any byte is read when a create would fail anyway."""
    if mode != "create":
        return
    with database.cursor() as cur:
        check_name_free(cur, name)


def ingest_file(
    database: Database,
    settings: Settings,
    staging: StagingFiles,
    upload: Path,
    *,
    name: str,
    options: IngestOptions,
    filename: str | None,
    actor: str | None,
    ip: str,
    longest_line: int | None = None,
) -> dict[str, Any]:
    """The whole load of one received upload; the caller cleans up `staging` afterwards."""
    started = time.perf_counter()
    prepared = prepare_file(staging, upload, options, settings, filename, longest_line)
    prepared_at = time.perf_counter()
    with _name_lock(name):
        base = None
        if options.mode == "append":
            with database.cursor() as cur:
                base = find_dataset(cur, name)
        staged = build_file(settings, prepared, options, staging, base)
        staged_at = time.perf_counter()
        source = {
            "filename": filename,
            "format": prepared.format,
            "compression": prepared.compression,
            "bytes": prepared.upload_bytes,
        }
        action, record = swap_in(database, staged, name, options.mode, source, actor, ip)
    log.info(
        "dataset %s %s: %d rows loaded, %d rejected, from %d bytes (%s); prepared in %.2f s, "
        "loaded in %.2f s, swapped in %.2f s",
        name,
        action,
        staged.rows_loaded,
        staged.rows_rejected,
        prepared.upload_bytes,
        prepared.format,
        prepared_at - started,
        staged_at - prepared_at,
        time.perf_counter() - staged_at,
    )
    return {
        "dataset": record.public(),
        "action": action,
        "rows_loaded": staged.rows_loaded,
        "rows_rejected": staged.rows_rejected,
        "rejects": staged.rejects,
    }
