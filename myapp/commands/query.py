"""CLI commands for SQL: `myapp query SQL` prints a result, `myapp export SQL -o FILE` saves one.

Both send the SQL to a running backend (POST /api/query, POST /api/query/export), which checks
and runs it exactly as it does for the SQL page.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO, Any

import click
import httpx

from myapp.contract.formats import EXPORT_FORMATS, FORMAT_BY_SUFFIX
from myapp.contract.types import is_numeric

from .client import ApiSession, api_options, describe_error, fail

# A query may work up to the server's time limit (MYAPP_QUERY_TIMEOUT_MS, 30 s by default, and
# configurable) before its first byte; wait as long as nginx in front does (proxy_read_timeout).
READ_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 5.0

# Exit code for a command-line usage error, as click uses.
EXIT_USAGE = 2

# Table cells longer than this are cut with an ellipsis, so one long text cannot push every
# other column off the screen; csv and json give whole values.
MAX_CELL_WIDTH = 80
# SQL lines longer than this are shown as a window around the position of an error.
MAX_SHOWN_SQL = 100


# -- input ---------------------------------------------------------------------------------------
def _read_sql(sql: str) -> str:
    text = sys.stdin.read() if sql == "-" else sql
    if not text.strip():
        fail("no SQL given (pass it as the argument, or - to read it from stdin)", EXIT_USAGE)
    return text


def parse_params(pairs: tuple[str, ...], params_json: str | None) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
        except ValueError as exc:
            raise click.BadParameter(
                f"not valid JSON ({exc})", param_hint="--params-json"
            ) from None
        if not isinstance(loaded, dict):
            raise click.BadParameter(
                'must be a JSON object, such as {"city": "Oslo", "n": 5}',
                param_hint="--params-json",
            )
        values.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(
                f"{pair!r} is not NAME=VALUE (such as --param city=Oslo)", param_hint="--param"
            )
        values[name] = value
    return values or None


def make_param_options(param_help: str) -> Callable[[Any], Any]:
    """--param NAME=VALUE (repeatable) and --params-json, read with parse_params."""

    def decorate(func: Any) -> Any:
        func = click.option(
            "--params-json",
            default=None,
            metavar="JSON",
            help="Parameter values as a JSON object with their types, e.g. '{\"n\": 5}'. "
            "--param values win over these.",
        )(func)
        return click.option(
            "--param",
            "-p",
            "param_pairs",
            multiple=True,
            metavar="NAME=VALUE",
            help=param_help,
        )(func)

    return decorate


param_options = make_param_options(
    "Value of $NAME in the SQL, sent as text (repeatable); write $NAME::INTEGER "
    "(or another type) in the SQL to have DuckDB cast it."
)


# -- errors --------------------------------------------------------------------------------------
def error_report(response: httpx.Response, sql: str | None) -> str:
    """The server's message, DuckDB's hints, what is wrong with each parameter, and the SQL
    line with a caret under the position the backend gives (detail.line and detail.column,
    1-based characters of `sql`, the text that ran; None when it is not at hand)."""
    lines = [describe_error(response)]
    try:
        detail = response.json()["error"].get("detail")
    except (ValueError, KeyError, TypeError, AttributeError):
        detail = None
    if not isinstance(detail, dict):
        return lines[0]
    duckdb_text = detail.get("message")
    if isinstance(duckdb_text, str):
        # The first line is what the message already says; what follows are DuckDB's hints
        # (`Did you mean "floor"?`, candidate columns).
        lines.extend("  " + hint for hint in duckdb_text.splitlines()[1:] if hint.strip())
    missing = detail.get("missing")
    if isinstance(missing, list) and missing:
        lines.append("  give " + " ".join(f"--param {name}=VALUE" for name in missing))
    # Saved queries type their parameters, and say which value does not fit and why.
    problems = detail.get("parameters")
    if isinstance(problems, dict):
        lines.extend(f"  --param {name}: {problem}" for name, problem in problems.items())
    line_no, column = detail.get("line"), detail.get("column")
    if sql is not None and isinstance(line_no, int) and isinstance(column, int):
        lines.extend(_caret(sql, line_no, column, detail.get("length")))
    return "\n".join(lines)


def _caret(sql: str, line_no: int, column: int, length: Any) -> list[str]:
    source_lines = sql.split("\n")
    if not 1 <= line_no <= len(source_lines):
        return []
    source = source_lines[line_no - 1].rstrip("\r")
    start = min(max(column - 1, 0), len(source))
    width = length if isinstance(length, int) and length > 0 else 1
    width = max(1, min(width, len(source) - start))
    prefix = ""
    if len(source) > MAX_SHOWN_SQL:
        first = max(0, start - MAX_SHOWN_SQL // 2)
        shown = source[first : first + MAX_SHOWN_SQL]
        if first:
            prefix, start = "…", start - first + 1
        if first + MAX_SHOWN_SQL < len(source):
            shown += "…"
        source = prefix + shown
        width = max(1, min(width, len(source) - start))
    gutter = f"  {line_no} | "
    # Tabs stay tabs under the caret, so it lines up however the terminal shows them.
    pad = "".join("\t" if ch == "\t" else " " * _width(ch) for ch in source[:start])
    return [gutter + source, " " * (len(gutter) - 2) + "| " + pad + "^" * width]


# -- printing results ----------------------------------------------------------------------------
def _width(text: str) -> int:
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
    widths = [_width(name) for name in header]
    for row in body:
        widths = [max(w, _width(cell)) for w, cell in zip(widths, row, strict=True)]
    right = [is_numeric(str(column.get("type", ""))) for column in columns]

    def line(cells: list[str]) -> str:
        parts = []
        for cell, width, is_right in zip(cells, widths, right, strict=True):
            pad = " " * (width - _width(cell))
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


def _write_csv(result: dict[str, Any], stream: IO[str]) -> None:
    # "\n" line ends, like the CSV files myapp exports.
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([column["name"] for column in result["columns"]])
    for row in result["rows"]:
        writer.writerow([_csv_value(value) for value in row])


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _stdout_closed() -> None:
    """The reader went away (`myapp query … | head`): stop quietly, without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())
    raise click.exceptions.Exit(1)


# -- running and printing ------------------------------------------------------------------------
Report = Callable[[httpx.Response], str]
"""Turns an error answer of the backend into what the user reads."""


def given(**fields: Any) -> dict[str, Any]:
    """A request body of the fields given: the API's own defaults stand for the others."""
    return {key: value for key, value in fields.items() if value is not None}


def post_for_result(
    api: ApiSession, path: str, body: dict[str, Any], report: Report
) -> dict[str, Any]:
    """POST a query body and return the result; errors are reported and exit 1."""
    try:
        response = api.client.post(
            path, json=body, timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        )
    except httpx.TimeoutException:
        fail(f"the backend at {api.url} did not answer within {READ_TIMEOUT_S:.0f} s")
        return {}
    except httpx.TransportError as exc:
        fail(f"cannot reach the backend at {api.url}: {exc}")
        return {}
    if response.status_code >= 400:
        fail(report(response))
    return response.json()


def print_result(result: dict[str, Any], fmt: str, export_hint: str) -> None:
    """Print a query result as a table, csv or json; with table and csv, a summary on stderr
    (`export_hint` names the command that saves every row when the result was cut)."""
    try:
        if fmt == "json":
            echo_json(result)
            return
        if fmt == "csv":
            _write_csv(result, sys.stdout)
        else:
            click.echo(render_table(result))
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_closed()
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
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "csv", "json"]),
        default="table",
        show_default=True,
        help="table: aligned columns, NULL shown as NULL; csv: header and rows, NULL as an "
        "empty field; json: the API's answer as it is.",
    )(func)


def limit_option(func: Any) -> Any:
    return click.option(
        "--limit",
        type=click.IntRange(min=0),
        default=None,
        help="Most rows to return (the server caps it at MYAPP_MAX_ROWS).",
    )(func)


# -- myapp query ---------------------------------------------------------------------------------
@click.command("query")
@click.argument("sql")
@param_options
@limit_option
@click.option(
    "--timeout-ms",
    type=click.IntRange(min=1),
    default=None,
    help="Time limit in ms (the server caps it at MYAPP_QUERY_TIMEOUT_MS).",
)
@result_format_option
@api_options
def query(
    sql: str,
    param_pairs: tuple[str, ...],
    params_json: str | None,
    limit: int | None,
    timeout_ms: int | None,
    fmt: str,
    api: ApiSession,
) -> None:
    """Run one read-only SELECT and print its result (SQL - reads it from stdin).

    The table format is the default, on a terminal or not; cells longer than 80 characters
    are cut there (csv and json give whole values). With table and csv, a line on stderr says
    how many rows came back and how long the query took, and whether there were more rows than
    returned (`myapp export` saves all of them). An SQL error prints the server's message with
    the SQL line and a caret under the position, and exits 1.

    \b
    myapp query 'SELECT city, sum(amount) FROM sales GROUP BY 1'
    myapp query 'SELECT * FROM sales WHERE amount > $min::INTEGER' --param min=100
    myapp query - --format csv < report.sql > report.csv
    """
    text = _read_sql(sql)
    body = given(
        sql=text,
        params=parse_params(param_pairs, params_json),
        limit=limit,
        timeout_ms=timeout_ms,
    )
    result = post_for_result(api, "/api/query", body, lambda r: error_report(r, text))
    print_result(result, fmt, "myapp export")


# -- downloads -----------------------------------------------------------------------------------
def format_size(count: int) -> str:
    if count < 1000:
        return plural(count, "byte")
    for unit, scale in (("kB", 1e3), ("MB", 1e6)):
        if count < scale * 1000:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e9:.1f} GB"


def export_format(output: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    if output == "-":
        return "csv"
    suffix = Path(output).suffix.lower()
    if suffix in FORMAT_BY_SUFFIX:
        return FORMAT_BY_SUFFIX[suffix]
    fail(
        f"cannot tell the format from the name {output} (known: "
        + ", ".join(FORMAT_BY_SUFFIX)
        + "); give --format "
        + "|".join(EXPORT_FORMATS),
        EXIT_USAGE,
    )
    return ""


def output_options(func: Any) -> Any:
    """-o FILE and --format, as every command that saves a download takes them."""
    func = click.option(
        "--format",
        "fmt",
        type=click.Choice(EXPORT_FORMATS),
        default=None,
        help="File format (default: from FILE's extension: .csv .tsv .parquet .json .ndjson "
        ".jsonl .xlsx; csv for stdout). xlsx holds at most 1,048,575 rows.",
    )(func)
    func = click.option(
        "--bom",
        is_flag=True,
        help="csv/tsv: start with a UTF-8 byte-order mark, so Excel on Windows reads the "
        "text right.",
    )(func)
    return click.option(
        "--output",
        "-o",
        required=True,
        metavar="FILE",
        help="File to write (replaced if it exists), or - for stdout.",
    )(func)


class _Incomplete(Exception):
    """The download ended before its end: the server cut it, or the connection broke."""


def _download(
    api: ApiSession, out: IO[bytes], report: Report, method: str, path: str, **request: Any
) -> int:
    """Stream the export into `out`; returns the bytes written. Raises _Incomplete (with the
    bytes received so far) when the download began but did not end whole."""
    received = 0
    began = False
    try:
        with api.client.stream(
            method,
            path,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            **request,
        ) as response:
            if response.status_code >= 400:
                response.read()
                fail(report(response))
            began = True
            expected = response.headers.get("Content-Length")
            for chunk in response.iter_bytes():
                out.write(chunk)
                received += len(chunk)
            # httpx checks this too; a short body must never pass for a whole file.
            if (
                expected is not None
                and expected.isdigit()
                and response.num_bytes_downloaded < int(expected)
            ):
                raise _Incomplete(received)
    except httpx.TimeoutException:
        if began:
            raise _Incomplete(received) from None
        fail(f"the backend at {api.url} did not answer within {READ_TIMEOUT_S:.0f} s")
    except httpx.TransportError as exc:
        if began:
            # A big export is sent while DuckDB still writes it; when the query fails after
            # that (a bad row, the time limit), the backend ends the response without its
            # last chunk, and this is how that arrives.
            raise _Incomplete(received) from None
        fail(f"cannot reach the backend at {api.url}: {exc}")
    return received


def _new_file_mode() -> int:
    """The mode a file created normally would get (mkstemp makes it private to its owner)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def save_download(
    api: ApiSession, output: str, report: Report, method: str, path: str, **request: Any
) -> None:
    """Download an export (`request` as httpx takes it) to `output`, or stdout for -.

    The bytes go to a temporary file next to `output`, renamed to it only once whole: a
    download that breaks off, a lost connection or Ctrl+C leave no file behind and exit 1
    (130 for Ctrl+C); an existing file stays as it was. Prints what was written on stderr.
    """
    started = time.monotonic()
    if output == "-":
        stdout = sys.stdout.buffer
        try:
            written = _download(api, stdout, report, method, path, **request)
            stdout.flush()
        except BrokenPipeError:
            _stdout_closed()
            return
        except _Incomplete as exc:
            fail(
                f"the export failed after {format_size(exc.args[0])} were received: the query "
                "failed part way, reached the server's time limit, or the connection broke; "
                "what was written to stdout is incomplete"
            )
            return
        elapsed = time.monotonic() - started
        click.echo(f"wrote {format_size(written)} to stdout in {elapsed:.1f} s", err=True)
        return

    target = Path(output)
    if target.is_dir():
        fail(f"{output} is a directory; give a file name with -o", EXIT_USAGE)
    try:
        fd, part_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_USAGE)
        return
    part = Path(part_name)
    kept = "no file was written"
    if target.exists():
        kept += f" ({output} is as it was)"
    done = False
    try:
        with os.fdopen(fd, "wb") as out:
            written = _download(api, out, report, method, path, **request)
            out.flush()
            # Renamed only once on disk, so FILE never names a half-written file after a crash.
            os.fsync(out.fileno())
        part.chmod(_new_file_mode())
        part.replace(target)
        done = True
    except _Incomplete as exc:
        fail(
            f"the export failed after {format_size(exc.args[0])} were received: the query "
            f"failed part way, reached the server's time limit, or the connection broke; {kept}"
        )
        return
    except KeyboardInterrupt:
        fail(f"interrupted; {kept}", 130)
        return
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}; {kept}")
        return
    finally:
        if not done:
            part.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    click.echo(f"wrote {output} ({format_size(written)}) in {elapsed:.1f} s", err=True)


# -- myapp export --------------------------------------------------------------------------------
@click.command("export")
@click.argument("sql")
@output_options
@param_options
@api_options
def export(
    sql: str,
    output: str,
    fmt: str | None,
    bom: bool,
    param_pairs: tuple[str, ...],
    params_json: str | None,
    api: ApiSession,
) -> None:
    """Save the whole result of a SELECT (no row cap) to a file (SQL - reads it from stdin).

    DuckDB writes the file on the server and it streams to a temporary file next to FILE,
    which becomes FILE only once the download is complete: a query that fails part way (the
    download breaks off), a lost connection or Ctrl+C leave no file behind and exit 1 (130 for
    Ctrl+C); an existing FILE stays as it was.

    \b
    myapp export 'SELECT * FROM sales' -o sales.parquet
    myapp export 'SELECT * FROM sales' -o sales.xlsx
    myapp export 'SELECT * FROM events WHERE day = $day::DATE' --param day=2024-06-01 -o day.csv
    """
    chosen = export_format(output, fmt)
    text = _read_sql(sql)
    body: dict[str, Any] = {"sql": text, "format": chosen}
    if bom:
        body["bom"] = True
    params = parse_params(param_pairs, params_json)
    if params is not None:
        body["params"] = params
    save_download(
        api, output, lambda r: error_report(r, text), "POST", "/api/query/export", json=body
    )


COMMANDS: list[click.Command] = [query, export]
