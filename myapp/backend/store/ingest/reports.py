"""What a load reports: a sample of the rejected rows with their reasons, and DuckDB's errors
in words a person can act on (no type prefix, no echoed data, no server paths)."""

from __future__ import annotations

import re
from typing import Any

import duckdb

from ...errors import AppError, BadRequest
from .prepare import IngestError, PreparedFile

# How many rejected rows are returned as a sample (the count is always exact).
REJECT_SAMPLE = 20
MAX_REASON_CHARS = 300

# An absolute path of two or more parts, quoted or bare.
_PATH = re.compile(r"""(?<![\w.])/(?:[^\s/'"]+/)+[^\s/'"]*""")


def plain(message: str) -> str:
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
    # Paths of the server's own files say nothing to the user and tell an attacker where the
    # data lives.
    text = _PATH.sub("the uploaded file", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 1] + "…"
    return text


def sentence(text: str) -> str:
    """Error messages are sentences ending with a period, whatever DuckDB's text ends with."""
    text = text.rstrip(" !")
    return text if text.endswith((".", "?")) else text + "."


def reject_sample(cur: duckdb.DuckDBPyConnection) -> tuple[int, list[dict[str, Any]]]:
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
    text = plain(message or "")
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


def not_one_table(fit: int, lines: int) -> IngestError:
    return IngestError(
        f"The file is not one table: no delimiter and quoting fit it throughout, and only "
        f"{fit:,} of its {lines:,} lines have the columns of its first line. If it holds "
        "several tables or a long preamble, save the one table you need as its own file, or "
        "set the delimiter, quote and skip (lines before the header) options.",
        code="unreadable_file",
        detail={"rows_fitting": fit, "lines": lines},
    )


def nothing_loaded(rejected: int, rejects: list[dict[str, Any]]) -> IngestError:
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


def load_error(exc: duckdb.Error, prepared: PreparedFile) -> AppError:
    message = plain(str(exc))
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
