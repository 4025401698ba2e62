"""From the bytes that arrived to a file DuckDB reads: decompressed, its format told, its text
in UTF-8, a workbook's sheet turned into CSV.

Every file made here on the way (decompressed, transcoded, converted from a workbook) counts
against one byte budget per upload, checked while it is written, so a small upload cannot fill
the disk by expanding twice.
"""

from __future__ import annotations

import codecs
import gzip
import json
import logging
import uuid
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from myapp.settings import Settings

from ...errors import AppError, PayloadTooLarge
from ..ingest_receive import LineMeter
from .options import WORKBOOK_FORMATS, IngestOptions

log = logging.getLogger("myapp.backend.ingest")

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# Formats no one uploads as data, named so the refusal can say what the file is.
_BINARY_MAGIC = {
    b"%PDF": "a PDF document",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"\x7fELF": "a program",
    b"MZ": "a Windows program",
    b"7z\xbc\xaf": "a 7-Zip archive",
    b"BZh": "a bzip2 archive",
    b"\xfd7zXZ": "an xz archive",
    b"\x28\xb5\x2f\xfd": "a zstd archive",
    b"SQLite format 3": "an SQLite database",
}

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
    "xlsx": "xlsx",
    "xlsm": "xlsx",
    "xls": "xls",
    "ods": "ods",
}

# How much of the start of a file is looked at to tell its format and encoding.
SNIFF_BYTES = 1024 * 1024
CHUNK_BYTES = 1024 * 1024

# A small gzip can expand enormously; the files derived from one upload (decompressed,
# transcoded, converted) together may hold at most this multiple of the upload limit.
MAX_EXPANSION = 10

# Share of bytes in the first megabyte that are control characters (other than tab, newlines
# and form feed) from which a file is binary, not text with a stray NUL or escape in it.
BINARY_CONTROL_SHARE = 0.05
# ... and at least this many of them: in a file of a few hundred bytes, a handful of NULs or
# escapes is no sign of binary data (DuckDB reads such files; what is binary and small has a
# magic number, see _BINARY_MAGIC).
BINARY_MIN_CONTROLS = 64

# Bytes Windows-1252 leaves undefined; Windows itself maps them to the same code points, as
# Latin-1 does, so a file holding them still decodes (Python's cp1252 refuses them).
_CP1252_UNDEFINED = {0x81, 0x8D, 0x8F, 0x90, 0x9D}


def _cp1252_undefined(exc: UnicodeError) -> tuple[str, int]:
    if isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start : exc.end]
        if all(b in _CP1252_UNDEFINED for b in bad):
            return "".join(chr(b) for b in bad), exc.end
    raise exc


codecs.register_error("myapp-cp1252", _cp1252_undefined)


class IngestError(AppError):
    """The file could not be loaded; nothing was changed."""

    status_code, code = 422, "unreadable_file"


class StagingFiles:
    """The files of one upload under the staging dir; `cleanup()` removes them all.

    `budget` is what the files derived from the upload may hold together (MAX_EXPANSION times
    the upload limit): `charge()` counts bytes as they are written.
    """

    def __init__(self, settings: Settings, directory: Path | None = None) -> None:
        self.directory = directory or settings.staging_dir
        self.directory.mkdir(parents=True, exist_ok=True)
        self.id = uuid.uuid4().hex
        self.paths: list[Path] = []
        self.budget = settings.max_upload_bytes * MAX_EXPANSION
        self.derived_bytes = 0

    def new(self, suffix: str) -> Path:
        path = self.directory / f"{self.id}.{suffix}"
        self.paths.append(path)
        return path

    def charge(self, n: int) -> None:
        self.derived_bytes += n
        if self.derived_bytes > self.budget:
            raise self.over_budget()

    def over_budget(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The file expands to more than {self.budget // (1024 * 1024)} MB when "
            "decompressed, converted or re-encoded; upload it uncompressed, as UTF-8, or "
            "split it.",
            code="decompressed_too_large",
            detail={"limit_bytes": self.budget},
        )

    def cleanup(self) -> None:
        for path in self.paths:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove staging file %s: %s", path.name, exc)


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
    longest_line: int = 0
    # A workbook's sheet became `path`, a CSV with a known dialect and these column types.
    sheet: str | None = None
    sheets: list[str] = field(default_factory=list)
    column_types: dict[str, str] | None = None
    # The format the user sent (xlsx for a workbook read as CSV).
    source_format: str = ""
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "format": self.source_format or self.format,
            "encoding": self.encoding,
            "compression": self.compression,
            "sheet": self.sheet,
            "sheets": self.sheets,
        }


def _read_head(path: Path, size: int = SNIFF_BYTES) -> bytes:
    with path.open("rb") as handle:
        return handle.read(size)


def plain_reason(exc: BaseException) -> str:
    """An exception's text without any path of ours in it."""
    from .reports import plain

    return plain(str(exc)) or type(exc).__name__


def _decompress(source: Path, target: Path, staging: StagingFiles, meter: LineMeter) -> None:
    try:
        with gzip.open(source, "rb") as src, target.open("wb") as dst:
            while chunk := src.read(CHUNK_BYTES):
                staging.charge(len(chunk))
                dst.write(chunk)
                meter.feed(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(
            "The file starts like a gzip file but cannot be decompressed "
            f"({plain_reason(exc)}); it may be truncated or damaged.",
            code="invalid_gzip",
        ) from None


def format_from_filename(filename: str | None) -> str | None:
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
        except (ValueError, RecursionError):
            # A pretty-printed object (or several) spans lines: read as JSON, not NDJSON.
            return "json"
        return "ndjson"
    return "csv"


def _zip_format(path: Path) -> str | None:
    """xlsx or ods for a workbook, None for any other zip archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist()[:10000])
            if "xl/workbook.xml" in names or "xl/workbook.bin" in names:
                return "xlsx"
            if "mimetype" in names:
                kind = archive.read("mimetype")[:100]
                if b"opendocument.spreadsheet" in kind:
                    return "ods"
    except (zipfile.BadZipFile, OSError, KeyError, ValueError):
        return None
    return None


def _magic_format(head: bytes, path: Path, named: str | None = None) -> str | None:
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(ZIP_MAGIC):
        found = _zip_format(path)
        if found is None and named in WORKBOOK_FORMATS:
            return named  # a damaged workbook: the reader says what is wrong with it
        if found is None:
            raise IngestError(
                "The file is a zip archive, not a data file or an Excel workbook; unpack it and "
                "upload the file inside.",
                code="unsupported_format",
            )
        return found
    if head.startswith(OLE_MAGIC):
        return "xls"
    return None


# -- text encodings -----------------------------------------------------------------------


def _bom_encoding(head: bytes) -> tuple[str, int] | None:
    """(encoding, BOM length) for a byte-order mark; UTF-32's before UTF-16's, which it starts."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32", 0
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", 0
    return None


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text without a BOM has a NUL in every other byte for ASCII characters."""
    sample = head[:65536]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    guess = None
    if odd.count(0) > 0.4 * len(odd) and even.count(0) < 0.05 * len(even):
        guess = "utf-16-le"
    elif even.count(0) > 0.4 * len(even) and odd.count(0) < 0.05 * len(odd):
        guess = "utf-16-be"
    if guess is None:
        return None
    # Binary data with NULs in every other byte fits that pattern too; text decodes to few
    # control characters.
    text = sample[: len(sample) // 2 * 2].decode(guess, errors="replace")
    controls = len(text) - len(text.translate(_CONTROL_CHARS))
    return guess if controls <= BINARY_CONTROL_SHARE * len(text) else None


_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 26, 27))
_CONTROL_CHARS = dict.fromkeys(_CONTROL)


def _looks_binary(head: bytes) -> bool:
    # NUL bytes after the text (a file written into a preallocated, zero-filled block) are
    # padding, not content.
    sample = head[:65536].rstrip(b"\x00")
    if not sample:
        return False
    controls = len(sample) - len(sample.translate(None, _CONTROL))
    if controls and sample.startswith(tuple(_BINARY_MAGIC)):
        return True  # a small image or document: its magic number, and bytes no text has
    return controls >= BINARY_MIN_CONTROLS and controls > BINARY_CONTROL_SHARE * len(sample)


def _is_utf8(path: Path, skip: int = 0) -> bool:
    """Whether the whole file is valid UTF-8, read in chunks (C-speed; about 1 GB/s here)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        handle.seek(skip)
        try:
            while chunk := handle.read(CHUNK_BYTES):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _transcode(
    source: Path, target: Path, encoding: str, staging: StagingFiles, meter: LineMeter, *, strict
) -> None:
    errors = "strict" if strict else ("myapp-cp1252" if encoding == "cp1252" else "replace")
    decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
    offset = 0
    try:
        with source.open("rb") as src, target.open("wb") as dst:
            while True:
                chunk = src.read(CHUNK_BYTES)
                text = decoder.decode(chunk, final=not chunk).encode("utf-8", "surrogatepass")
                staging.charge(len(text))
                dst.write(text)
                meter.feed(text)
                if not chunk:
                    break
                offset += len(chunk)
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"The file is not valid {encoding} text (byte {offset + exc.start + 1:,} cannot be "
            f"decoded). Check the encoding: files saved by Excel on Windows are usually "
            "cp1252, older ones latin-1; set the encoding option (encoding=…) to the right one, "
            "or leave it out to have it detected.",
            code="invalid_encoding",
            detail={"encoding": encoding, "byte": offset + exc.start + 1},
        ) from None
    except UnicodeError:
        # Lone surrogates from a broken UTF-16/32 file, UTF-16 without its byte order mark,
        # and codecs that refuse in their own words (punycode, "undefined").
        raise IngestError(
            f"The file is not valid {encoding} text. Set the encoding option (encoding=…) to "
            "the file's real encoding, or leave it out to have it detected.",
            code="invalid_encoding",
            detail={"encoding": encoding},
        ) from None


def _binary_refusal(head: bytes, fmt: str) -> IngestError:
    for magic, what in _BINARY_MAGIC.items():
        if head.startswith(magic):
            return IngestError(
                f"The file is {what}, not a data file. Upload CSV, TSV, JSON, Parquet or an "
                "Excel workbook.",
                code="binary_file",
            )
    return IngestError(
        f"The file looks binary, not like {fmt.upper()} text (most of its first bytes are "
        "control characters). Check that you chose the right file; if it is text in an "
        "unusual encoding, set the encoding option (encoding=…).",
        code="binary_file",
    )


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
        _decompress(upload, path, staging, meter)
        longest_line = meter.longest_line
        head = _read_head(path)
        if not head:
            raise IngestError(
                "The file is an empty gzip archive: there is nothing to load.", code="empty_file"
            )

    named = format_from_filename(filename)
    fmt = options.format or _magic_format(head, path, named) or named
    if fmt is None:
        fmt = _sniff_text_format(head)
    if fmt == "parquet":
        if not head.startswith(PARQUET_MAGIC):
            raise IngestError(
                "The file is not a Parquet file (Parquet files start with the bytes PAR1).",
                code="unreadable_file",
            )
        return PreparedFile(path, fmt, "binary", compression, size, filename)
    if fmt in WORKBOOK_FORMATS:
        from .excel import workbook_to_csv

        return workbook_to_csv(staging, path, fmt, options, compression, size, filename, settings)

    bom = _bom_encoding(head)
    encoding = options.encoding
    if encoding is None:
        encoding = bom[0] if bom is not None else _utf16_without_bom(head)
    if encoding is None or encoding == "utf-8":
        magic = _magic_format(head, path)
        if magic is not None or _looks_binary(head):
            raise _binary_refusal(head, fmt)
    text_head = head[bom[1] :] if bom and encoding == "utf-8" else head
    if encoding in ("utf-8", None) and not text_head.strip(b" \t\r\n"):
        raise IngestError(
            "The file holds only blank space: there is nothing to load.", code="empty_file"
        )
    strict = options.encoding is not None
    if encoding is None:
        # Valid UTF-8 all through is UTF-8; anything else is taken for Windows-1252, which
        # Excel on Western Windows writes and which is Latin-1 plus the typographic
        # characters (euro sign, curly quotes, dashes) that Latin-1 turns into control characters.
        encoding = "utf-8" if _is_utf8(path) else "cp1252"
    elif encoding == "utf-8" and strict and not _is_utf8(path):
        raise IngestError(
            "The file is not valid UTF-8 text. Files saved by Excel on Windows are usually "
            "cp1252: set the encoding option (encoding=cp1252), or leave it out to have it "
            "detected.",
            code="invalid_encoding",
            detail={"encoding": "utf-8"},
        )
    if encoding != "utf-8":
        target = staging.new("utf8")
        meter = LineMeter()
        _transcode(path, target, encoding, staging, meter, strict=strict)
        path, longest_line = target, meter.longest_line
        if not _read_head(path).strip(b" \t\r\n\xef\xbb\xbf"):
            raise IngestError(
                "The file holds only blank space: there is nothing to load.", code="empty_file"
            )
    long_lines = longest_line is not None and longest_line >= LONG_LINE_THRESHOLD
    return PreparedFile(
        path,
        fmt,
        encoding,
        compression,
        size,
        filename,
        long_lines=long_lines,
        longest_line=longest_line or 0,
    )


# DuckDB's default limit for one CSV line is 2 MB; lines from half of that on get a limit
# fitted to the longest line seen, so a line measured a little short still fits.
LONG_LINE_THRESHOLD = 1_000_000
