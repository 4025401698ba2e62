"""`myapp queries …`: list, show, run and export the saved queries of a running backend.

They go through `/api/queries` with the same `--url` and `--token` as the other client
commands; running and exporting print and save exactly as `myapp query` and `myapp export` do.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import click
import httpx

from myapp.client import ApiError

from .download import export_format, output_options, save_download
from .errors import Explain, explained, sql_error_lines
from .output import (
    echo_json,
    listing,
    listing_format_option,
    print_result,
    result_format_option,
    when,
)
from .params import given, limit_option, make_param_options, parse_params
from .session import ApiSession, api_options

saved_param_options = make_param_options(
    "Value of the parameter NAME (repeatable), read as the type the query declares; "
    "parameters not given take their defaults."
)

version_option = click.option(
    "--version",
    type=click.IntRange(min=1),
    default=None,
    help="Use this version of the query (default: the latest).",
)


def query_path(slug: str) -> str:
    return "/api/queries/" + quote(slug, safe="")


def _saved(at: str, by: str | None) -> str:
    return when(at) + (f" by {by}" if by else "")


def _explain(api: ApiSession, slug: str, version: int | None) -> Explain:
    """What helps fix a run's error, with a caret in the saved SQL where the backend points."""

    def explain(exc: ApiError) -> list[str]:
        sql = None
        if exc.status == 400:
            try:
                saved = api.client.get(query_path(slug), params=given(version=version))
                if saved.status_code == 200:
                    sql = saved.json()["sql"]
            except httpx.TransportError:
                pass
        return sql_error_lines(exc, sql)

    return explain


@click.group("queries")
def queries() -> None:
    """List, show, run and export saved queries (saved from the SQL page or the API)."""


@queries.command("list")
@click.option(
    "--q",
    "q",
    default=None,
    metavar="TEXT",
    help="Only queries with TEXT in the title or description.",
)
@listing_format_option
@api_options
def list_queries(q: str | None, fmt: str, api: ApiSession) -> None:
    """List saved queries: slug, title, latest version, last change."""
    answer = api.request("GET", "/api/queries", params=given(q=q or None)).json()
    if fmt == "json":
        echo_json(answer)
        return
    rows = [
        [s["slug"], s["title"], s["version"], s["parameter_count"], when(s["updated_at"])]
        for s in answer["queries"]
    ]
    headers = ["SLUG", "TITLE", "VERSION", "PARAMETERS", "UPDATED"]
    numeric = {"VERSION", "PARAMETERS"}
    click.echo(listing(headers, rows, numeric) if rows else "No saved queries.")


@queries.command("show")
@click.argument("slug")
@version_option
@listing_format_option
@api_options
def show_query(slug: str, version: int | None, fmt: str, api: ApiSession) -> None:
    """Show the saved query SLUG: title, description, parameters and SQL."""
    saved = api.request("GET", query_path(slug), params=given(version=version)).json()
    if fmt == "json":
        echo_json(saved)
        return
    click.echo(f"{saved['slug']}: {saved['title']}")
    click.echo(
        f"version {saved['version']} of {saved['latest_version']}, saved "
        + _saved(saved["updated_at"], saved["updated_by"])
    )
    if saved["description"]:
        click.echo()
        click.echo(saved["description"])
    click.echo()
    if saved["parameters"]:
        rows = [
            [
                p["name"],
                p["type"],
                "(required)" if p.get("default") is None else p["default"],
                p.get("label") or "",
            ]
            for p in saved["parameters"]
        ]
        click.echo(listing(["PARAMETER", "TYPE", "DEFAULT", "LABEL"], rows))
    else:
        click.echo("No parameters.")
    click.echo()
    click.echo(saved["sql"].rstrip())


@queries.command("versions")
@click.argument("slug")
@api_options
def list_versions(slug: str, api: ApiSession) -> None:
    """List the versions of the saved query SLUG, newest first."""
    answer = api.request("GET", query_path(slug) + "/versions").json()
    rows = [
        [v["version"], v["title"], _saved(v["created_at"], v["created_by"])]
        for v in answer["versions"]
    ]
    click.echo(listing(["VERSION", "TITLE", "SAVED"], rows, numeric={"VERSION"}))


@queries.command("run")
@click.argument("slug")
@saved_param_options
@version_option
@limit_option
@result_format_option
@api_options
def run_query(
    slug: str,
    param_pairs: tuple[str, ...],
    params_json: str | None,
    version: int | None,
    limit: int | None,
    fmt: str,
    api: ApiSession,
) -> None:
    """Run the saved query SLUG and print its result, as `myapp query` does.

    \b
    myapp queries run sales-by-city --param city=Oslo
    myapp queries run sales-by-city --version 1 --format csv > by-city.csv
    """
    body = given(params=parse_params(param_pairs, params_json), version=version, limit=limit)
    with explained(_explain(api, slug, version)):
        result = api.post_for_result(query_path(slug) + "/run", body)
    print_result(result, fmt, f"myapp queries export {slug}")


@queries.command("export")
@click.argument("slug")
@output_options
@saved_param_options
@version_option
@api_options
def export_query(
    slug: str,
    output: str,
    fmt: str | None,
    bom: bool,
    param_pairs: tuple[str, ...],
    params_json: str | None,
    version: int | None,
    api: ApiSession,
) -> None:
    """Save the whole result of the saved query SLUG (no row cap) to a file.

    The file is whole or not written at all, as with `myapp export`.

    \b
    myapp queries export sales-by-city --param city=Oslo -o oslo.parquet
    """
    values = parse_params(param_pairs, params_json)
    params = given(
        format=export_format(output, fmt),
        bom="true" if bom else None,
        version=version,
        params=None if values is None else json.dumps(values),
    )
    save_download(
        api,
        output,
        _explain(api, slug, version),
        "GET",
        query_path(slug) + "/export",
        params=params,
    )


COMMANDS: list[click.Command] = [queries]
