"""CLI commands for datasets: `myapp upload FILE` sends a file to a running backend."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx

from myapp.client import ApiError, ApiUnavailable
from myapp.contract.names import suggested_name

from .errors import fail
from .output import plural, render_table
from .session import ApiSession, api_options

CHUNK_BYTES = 1024 * 1024
# The answer comes once the backend has loaded the whole file, which can take minutes.
LOAD_TIMEOUT_S = 3600.0
SHOWN_REJECTS = 5

# The preview's first rows on a terminal, and at most this many of their columns.
PREVIEW_ROWS = 10
PREVIEW_COLUMNS = 20


def name_for(path: Path) -> str:
    """The dataset name a file gets by default (the same rule as the backend's)."""
    return suggested_name(path.name)


def _chunks(path: Path, progress: Any) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            if progress is not None:
                progress.update(len(chunk))
            yield chunk


class _NoBar:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _get(api: ApiSession, path: str) -> httpx.Response | None:
    try:
        return api.client.get(path)
    except httpx.TransportError:
        return None


def _upload_limit(api: ApiSession) -> int | None:
    response = _get(api, "/api/datasets")
    if response is None or response.status_code != 200:
        return None
    return (response.json().get("limits") or {}).get("max_upload_bytes")


def _summary(result: dict[str, Any]) -> str:
    dataset = result["dataset"]
    lines = [
        f"{result['action'].capitalize()} dataset {dataset['name']}: "
        f"{result['rows_loaded']:,} rows loaded, {result['rows_rejected']:,} rejected "
        f"({len(dataset['columns'])} columns, {dataset['row_count']:,} rows in all)."
    ]
    for reject in result["rejects"][:SHOWN_REJECTS]:
        where = f"line {reject['line']}" if reject.get("line") is not None else "a row"
        column = f", column {reject['column']}" if reject.get("column") else ""
        lines.append(f"  rejected {where}{column}: {reject['reason']}")
    if result["rows_rejected"] > SHOWN_REJECTS:
        lines.append(f"  … and {result['rows_rejected'] - SHOWN_REJECTS:,} more rejected rows")
    return "\n".join(lines)


def _delimiter_words(value: str | None) -> str:
    return {"\t": "tab", " ": "space", ",": "comma", ";": "semicolon", "|": "pipe"}.get(
        value or "", repr(value)
    )


def preview_text(upload: dict[str, Any]) -> str:
    """A staged upload as a person reads it: how it was read, its columns, the first rows."""
    read = [upload["format"] + (f" ({upload['compression']})" if upload.get("compression") else "")]
    if upload.get("encoding"):
        read.append(f"encoding {upload['encoding']}")
    if upload.get("delimiter") is not None:
        read.append(f"delimiter {_delimiter_words(upload['delimiter'])}")
    if upload.get("header") is not None:
        read.append("header" if upload["header"] else "no header")
    if upload.get("skip"):
        read.append(f"{plural(upload['skip'], 'line')} skipped")
    if upload.get("decimal_separator"):
        read.append(f"decimal separator {upload['decimal_separator']!r}")
    if upload.get("sheet"):
        sheets = upload.get("sheets") or []
        others = f" of {', '.join(sheets)}" if len(sheets) > 1 else ""
        read.append(f"sheet {upload['sheet']}{others}")
    lines = [
        f"Preview of {upload.get('filename') or 'the file'}: {', '.join(read)}.",
        f"{plural(upload['row_count'], 'row')} would load, {upload['rows_rejected']:,} rejected; "
        f"{plural(len(upload['columns']), 'column')}:",
    ]
    chosen = upload.get("types") or {}
    width = max((len(c["name"]) for c in upload["columns"]), default=0)
    for column in upload["columns"]:
        mark = "  (chosen)" if column["name"] in chosen else ""
        lines.append(f"  {column['name'].ljust(width)}  {column['type']}{mark}")
    rows = upload["rows"][:PREVIEW_ROWS]
    if rows:
        total = upload["row_count"]
        shown = f"first {len(rows)} of {total:,}" if total > len(rows) else "all"
        columns = upload["columns"][:PREVIEW_COLUMNS]
        if len(upload["columns"]) > len(columns):
            shown += f", the first {len(columns)} columns"
        lines.append(f"Rows ({shown}):")
        table = render_table({"columns": columns, "rows": [row[: len(columns)] for row in rows]})
        lines.extend("  " + line for line in table.splitlines())
    for note in [*upload.get("conversions", []), *upload.get("text_columns", [])]:
        lines.append(f"Note: {note['column']}: {note['message']}")
    for reject in upload["rejects"][:SHOWN_REJECTS]:
        where = f"line {reject['line']}" if reject.get("line") is not None else "a row"
        column = f", column {reject['column']}" if reject.get("column") else ""
        lines.append(f"  rejected {where}{column}: {reject['reason']}")
    if upload["rows_rejected"] > SHOWN_REJECTS:
        lines.append(f"  … and {upload['rows_rejected'] - SHOWN_REJECTS:,} more rejected rows")
    lines.append("Nothing was loaded; run the same command without --preview to load it.")
    return "\n".join(lines)


@click.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", "-n", default=None, help="Dataset name (default: from the file name).")
@click.option(
    "--mode",
    "-m",
    type=click.Choice(["create", "replace", "append"]),
    default="create",
    show_default=True,
    help="create refuses an existing name; replace swaps the data; append adds rows by column.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "tsv", "parquet", "json", "ndjson", "xlsx", "xls", "ods"]),
    default=None,
    help="File format (default: detected from the name or the content).",
)
@click.option("--sheet", default=None, help="A workbook's sheet, name or number (default: first).")
@click.option(
    "--skip",
    type=click.IntRange(min=0),
    default=None,
    help="Lines before the table (default: detect).",
)
@click.option("--delimiter", default=None, help="CSV delimiter, one character (\\t for tab).")
@click.option("--header/--no-header", default=None, help="Whether the first CSV line has names.")
@click.option("--encoding", default=None, help="Text encoding, e.g. latin-1 (default: detect).")
@click.option("--nullstr", default=None, help="CSV text that means NULL, e.g. NA.")
@click.option("--types", default=None, help="Column types, e.g. zip:VARCHAR,day:DATE.")
@click.option(
    "--preview",
    is_flag=True,
    help="Show how the file would load (how it is read, columns, first rows, rejects); "
    "load nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the backend's JSON answer.")
@api_options
def upload(
    file: Path,
    name: str | None,
    mode: str,
    fmt: str | None,
    delimiter: str | None,
    header: bool | None,
    encoding: str | None,
    nullstr: str | None,
    types: str | None,
    sheet: str | None,
    skip: int | None,
    preview: bool,
    as_json: bool,
    api: ApiSession,
) -> None:
    """Upload FILE (CSV, TSV, Excel .xlsx/.xls, OpenDocument .ods, Parquet, JSON, NDJSON; text
    files also .gz) as a dataset.

    The file is streamed to the backend, never read into memory whole; a progress bar shows
    on a terminal. Prints what was loaded and which rows were rejected. With --preview, prints
    how it would load and loads nothing.
    """
    size = file.stat().st_size
    params: dict[str, str] = {"mode": mode, "filename": file.name}
    for key, value in (
        ("format", fmt),
        ("delimiter", delimiter),
        ("encoding", encoding),
        ("nullstr", nullstr),
        ("types", types),
        ("sheet", sheet),
        ("skip", None if skip is None else str(skip)),
    ):
        if value:
            params[key] = value
    if header is not None:
        params["header"] = "true" if header else "false"
    if preview:
        options = {k: v for k, v in params.items() if k not in ("mode", "filename")}
        staged = api.api.stage(file, **options)
        # A look, not a load: the staged copy would only hold the account's upload quota.
        api.api.discard_staged(staged["id"])
        if as_json:
            click.echo(json.dumps({"upload": staged}, indent=2, ensure_ascii=False))
        else:
            click.echo(preview_text(staged))
        return
    target = name or name_for(file)
    path = "/api/datasets/" + quote(target, safe="")
    if mode == "create":
        # The backend refuses an existing name before reading the body, and a client still
        # sending a big file may only see the connection close: ask first, answer clearly.
        existing = _get(api, path)
        if existing is not None and existing.status_code == 200:
            fail(
                f"a dataset named {existing.json()['name']} already exists; use --mode replace "
                "or --mode append, or choose another --name"
            )
            return
    show_bar = sys.stderr.isatty() and not as_json
    bar_context = (
        click.progressbar(
            length=size, label=f"Uploading {file.name}", file=sys.stderr, show_pos=False
        )
        if show_bar
        else _NoBar()
    )
    try:
        with bar_context as bar:
            response = api.client.put(
                path,
                params=params,
                content=_chunks(file, bar),
                headers={
                    "Content-Type": "application/octet-stream",
                    # Lets the backend refuse an oversized file before a byte is sent.
                    "Content-Length": str(size),
                },
                timeout=httpx.Timeout(LOAD_TIMEOUT_S, connect=5.0),
            )
    except httpx.TransportError as exc:
        limit = _upload_limit(api)
        if limit is not None and size > limit:
            raise ApiUnavailable(
                f"{file.name} is {size:,} bytes, more than the backend accepts ({limit:,} bytes, "
                "MYAPP_MAX_UPLOAD_BYTES); nothing was loaded",
                code="upload_too_large",
            ) from None
        raise ApiUnavailable(
            f"the upload to {api.url} broke off ({exc or type(exc).__name__}); nothing was loaded",
            code="upload_broke_off",
        ) from None
    if response.status_code >= 400:
        raise ApiError.from_response(response)
    result = response.json()
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(_summary(result))


COMMANDS: list[click.Command] = [upload]
