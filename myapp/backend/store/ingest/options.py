"""Upload options: what a client may say about its file, parsed from form fields or query
parameters and checked, with a BadRequest that names the option at fault."""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ...errors import BadRequest

MODES = ("create", "replace", "append")
FORMATS = ("csv", "tsv", "parquet", "json", "ndjson", "xlsx", "xls", "ods")
FORMAT_ALIASES = {"jsonl": "ndjson", "pq": "parquet", "tab": "tsv", "xlsm": "xlsx", "excel": "xlsx"}
WORKBOOK_FORMATS = ("xlsx", "xls", "ods")

# Form fields and query parameters are text: "yes", "1", "true" all mean true.
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}

# More preamble lines than this is a mistake, and DuckDB would read the whole file to skip them.
MAX_SKIP = 1_000_000


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
    skip: int | None = None
    sheet: str | None = None
    types: dict[str, str] = field(default_factory=dict)

    def with_changes(self, **changes: object) -> IngestOptions:
        return replace(self, **changes)


def _invalid(message: str, option: str) -> BadRequest:
    return BadRequest(message, code="invalid_option", detail={"option": option})


def _one_char(name: str, value: str) -> str:
    if value in ("\\t", "tab", "TAB"):
        return "\t"
    if len(value) != 1:
        raise _invalid(
            f"{name} must be a single character (or \\t for a tab), not {value[:20]!r}.", name
        )
    return value


def _decodes(info: codecs.CodecInfo) -> bool:
    """Whether the codec turns bytes into text at all ("undefined" refuses everything)."""
    try:
        decoded = codecs.getincrementaldecoder(info.name)(errors="strict").decode(b"", final=True)
    except (UnicodeError, LookupError, TypeError, ValueError):
        return False
    return isinstance(decoded, str)


def check_encoding(encoding: str) -> str:
    """A text codec Python knows, by its canonical name; 400 for anything else."""
    try:
        info = codecs.lookup(encoding)
    except (LookupError, ValueError):
        raise _invalid(
            f"Unknown encoding {encoding[:40]!r}; use for example utf-8, cp1252 (Windows), "
            "latin-1 or utf-16.",
            "encoding",
        ) from None
    # zlib, base64, rot13, hex… are codecs too, but they turn bytes into bytes (or text into
    # text): a file is never "encoded" in them.
    if not getattr(info, "_is_text_encoding", True) or not _decodes(info):
        raise _invalid(
            f"{encoding[:40]!r} is not a text encoding; use for example utf-8, cp1252 "
            "(Windows), latin-1 or utf-16.",
            "encoding",
        )
    return info.name


def parse_options(values: Mapping[str, str]) -> IngestOptions:
    """Options from query parameters or form fields, checked; BadRequest names the culprit."""
    mode = (values.get("mode") or "create").strip().lower()
    if mode not in MODES:
        raise _invalid(f"mode must be one of {', '.join(MODES)}, not {mode[:20]!r}.", "mode")
    fmt = (values.get("format") or "").strip().lower() or None
    if fmt in ("auto",):
        fmt = None
    if fmt is not None:
        fmt = FORMAT_ALIASES.get(fmt, fmt)
        if fmt not in FORMATS:
            raise _invalid(
                f"format must be one of {', '.join(FORMATS)}, not {fmt[:20]!r}.", "format"
            )
    header: bool | None = None
    raw_header = (values.get("header") or "").strip().lower()
    if raw_header and raw_header != "auto":
        if raw_header in _TRUE:
            header = True
        elif raw_header in _FALSE:
            header = False
        else:
            raise _invalid("header must be true or false.", "header")
    delimiter = values.get("delimiter") or values.get("delim") or values.get("sep") or None
    quote = values.get("quote") or None
    escape = values.get("escape") or None
    encoding = (values.get("encoding") or "").strip().lower() or None
    if encoding in ("auto",):
        encoding = None
    if encoding is not None:
        encoding = check_encoding(encoding)
    skip = None
    raw_skip = (values.get("skip") or "").strip().lower()
    if raw_skip and raw_skip != "auto":
        if not raw_skip.isdigit() or int(raw_skip) > MAX_SKIP:
            raise _invalid(
                f"skip must be a number of lines from 0 to {MAX_SKIP:,}, not {raw_skip[:20]!r}.",
                "skip",
            )
        skip = int(raw_skip)
    sheet = (values.get("sheet") or "").strip() or None
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
        skip=skip,
        sheet=sheet,
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
        except (ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            raise _invalid(
                'types must be a JSON object of column names to type names, e.g. {"day": "DATE"}.',
                "types",
            )
        return {k: v.strip() for k, v in parsed.items() if v.strip()}
    out: dict[str, str] = {}
    for part in text.split(","):
        column, sep, dtype = part.partition(":")
        if not sep or not column.strip() or not dtype.strip():
            raise _invalid(
                "types must look like column:TYPE,column:TYPE (e.g. day:DATE,amount:DECIMAL).",
                "types",
            )
        out[column.strip()] = dtype.strip()
    return out


def as_values(options: IngestOptions) -> dict[str, str]:
    """The options as the text fields parse_options reads (to change some and check again)."""
    out: dict[str, str] = {"mode": options.mode}
    for key in ("format", "delimiter", "quote", "escape", "encoding", "nullstr", "sheet"):
        value = getattr(options, key)
        if value is not None:
            out[key] = "\\t" if value == "\t" else value
    if options.header is not None:
        out["header"] = "true" if options.header else "false"
    if options.skip is not None:
        out["skip"] = str(options.skip)
    if options.types:
        out["types"] = json.dumps(options.types)
    return out


def update_options(options: IngestOptions, changes: Mapping[str, object]) -> IngestOptions:
    """`options` with `changes` applied (None: detect again), checked like the originals."""
    values = as_values(options)
    for key, value in changes.items():
        if value is None or value == {}:
            values.pop(key, None)
        elif isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif isinstance(value, dict):
            values[key] = json.dumps(value)
        else:
            values[key] = str(value)
    return parse_options(values)
