"""How the command line prints what the API answered: aligned tables, CSV, JSON, sizes.

Results print as a table (cells cut at MAX_CELL_WIDTH, NULL shown as NULL), CSV or the API's
JSON as it is; listings of things are the same tables of plain values. Summaries go to stderr,
so stdout holds only the data.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
import unicodedata
from collections.abc import Collection
from typing import IO, Any, NoReturn

import click

from myapp.contract.types import is_numeric

# Table cells longer than this are cut with an ellipsis, so one long text cannot push every
# other column off the screen; csv and json give whole values.
MAX_CELL_WIDTH = 80


def display_width(text: str) -> int:
    """Terminal columns of `text`: wide East Asian characters take two, combining marks none."""
    return sum(
        0
        if unicodedata.combining(ch)
        else 2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    else:
        text = str(value)
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    if len(text) > MAX_CELL_WIDTH:
        text = text[: MAX_CELL_WIDTH - 1] + "…"
    return text


def render_table(result: dict[str, Any]) -> str:
    columns = result["columns"]
    header = [str(column["name"]) for column in columns]
    body = [[_cell(value) for value in row] for row in result["rows"]]
    widths = [display_width(name) for name in header]
    for row in body:
        widths = [max(w, display_width(cell)) for w, cell in zip(widths, row, strict=True)]
    right = [is_numeric(str(column.get("type", ""))) for column in columns]

    def line(cells: list[str]) -> str:
        parts = []
        for cell, width, is_right in zip(cells, widths, right, strict=True):
            pad = " " * (width - display_width(cell))
            parts.append(pad + cell if is_right else cell + pad)
        return "  ".join(parts).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in body)
    return "\n".join(out)


def when(value: str | None) -> str:
    """An API timestamp to the minute, as a person reads it."""
    return value[:16].replace("T", " ") if value else ""


def listing(headers: list[str], rows: list[list[Any]], numeric: Collection[str] = ()) -> str:
    """An aligned table of plain values (a list of things); `numeric` columns align right."""
    columns = [{"name": h, "type": "BIGINT" if h in numeric else "VARCHAR"} for h in headers]
    return render_table({"columns": columns, "rows": rows})


def echo_json(value: Any) -> None:
    """An API answer as it is, indented, text as it is (not \\u escapes)."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def write_csv(result: dict[str, Any], stream: IO[str]) -> None:
    # "\n" line ends, like the CSV files myapp exports.
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([column["name"] for column in result["columns"]])
    for row in result["rows"]:
        writer.writerow([_csv_value(value) for value in row])


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def format_size(count: int) -> str:
    if count < 1000:
        return plural(count, "byte")
    for unit, scale in (("kB", 1e3), ("MB", 1e6)):
        if count < scale * 1000:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e9:.1f} GB"


def stdout_closed() -> NoReturn:
    """The reader went away (`myapp query … | head`): stop quietly, without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())
    raise click.exceptions.Exit(1)


def print_result(result: dict[str, Any], fmt: str, export_hint: str) -> None:
    """Print a query result as a table, csv or json; with table and csv, a summary on stderr
    (`export_hint` names the command that saves every row when the result was cut)."""
    try:
        if fmt == "json":
            echo_json(result)
            return
        if fmt == "csv":
            write_csv(result, sys.stdout)
        else:
            click.echo(render_table(result))
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_closed()
    summary = f"{plural(result['row_count'], 'row')} in {result['elapsed_ms']:.1f} ms"
    if result.get("truncated"):
        summary += (
            f"; showing the first {plural(result['row_count'], 'row')}: the query has more "
            f"(use `{export_hint}` for all of them)"
        )
    click.echo(summary, err=True)


def listing_format_option(func: Any) -> Any:
    """--format table|json for commands that list or show things."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="table: aligned columns; json: the API's answer as it is.",
    )(func)


def result_format_option(func: Any) -> Any:
    """--format table|csv|json for commands that print a query's result."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "csv", "json"]),
        default="table",
        show_default=True,
        help="table: aligned columns, NULL shown as NULL; csv: header and rows, NULL as an "
        "empty field; json: the API's answer as it is.",
    )(func)
