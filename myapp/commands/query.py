"""CLI commands for SQL: `myapp query SQL` prints a result, `myapp export SQL -o FILE` saves one.

Both send the SQL to a running backend (POST /api/query, POST /api/query/export), which checks
and runs it exactly as it does for the SQL page.
"""

from __future__ import annotations

from typing import Any

import click

from .download import export_format, output_options, save_download
from .errors import about_sql, explained
from .output import print_result, result_format_option
from .params import given, limit_option, param_options, parse_params, read_sql
from .session import ApiSession, api_options


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
    text = read_sql(sql)
    body = given(
        sql=text,
        params=parse_params(param_pairs, params_json),
        limit=limit,
        timeout_ms=timeout_ms,
    )
    with explained(about_sql(text)):
        result = api.post_for_result("/api/query", body)
    print_result(result, fmt, "myapp export")


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
    text = read_sql(sql)
    body: dict[str, Any] = {"sql": text, "format": chosen}
    if bom:
        body["bom"] = True
    params = parse_params(param_pairs, params_json)
    if params is not None:
        body["params"] = params
    save_download(api, output, about_sql(text), "POST", "/api/query/export", json=body)


COMMANDS: list[click.Command] = [query, export]
