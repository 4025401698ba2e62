"""`myapp dashboards …`: list, show and export the dashboards of a running backend.

`export` writes each tile's whole result (no row cap) to a file of its own in a directory,
with the dashboard's parameter values given as for `myapp queries export`; text tiles are
written as their Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args
from urllib.parse import quote

import click

from myapp.models.query import ExportFormatName

from .download import save_download
from .errors import about_sql, fail
from .output import echo_json, listing, listing_format_option, when
from .params import given, make_param_options, parse_params
from .session import ApiSession, api_options

dashboard_param_options = make_param_options(
    "Value of the dashboard parameter NAME (repeatable); a date range `period` takes "
    "period_from and period_to. Parameters not given take their defaults."
)
version_option = click.option(
    "--version",
    type=click.IntRange(min=1),
    default=None,
    help="Use this version of the dashboard (default: the latest).",
)


def dashboard_path(slug: str, *rest: str) -> str:
    return "/api/dashboards/" + "/".join(quote(part, safe="") for part in (slug, *rest))


@click.group("dashboards")
def dashboards() -> None:
    """List, show and export dashboards (pages of tiles from saved queries)."""


@dashboards.command("list")
@click.option("--q", "q", default=None, metavar="TEXT", help="Only dashboards with TEXT.")
@listing_format_option
@api_options
def list_dashboards(q: str | None, fmt: str, api: ApiSession) -> None:
    """List dashboards: slug, title, tiles, latest version, last change."""
    answer = api.request("GET", "/api/dashboards", params=given(q=q or None)).json()
    if fmt == "json":
        echo_json(answer)
        return
    rows = [
        [d["slug"], d["title"], d["tile_count"], d["version"], when(d["updated_at"])]
        for d in answer["dashboards"]
    ]
    headers = ["SLUG", "TITLE", "TILES", "VERSION", "UPDATED"]
    click.echo(listing(headers, rows, {"TILES", "VERSION"}) if rows else "No dashboards.")


@dashboards.command("show")
@click.argument("slug")
@version_option
@listing_format_option
@api_options
def show_dashboard(slug: str, version: int | None, fmt: str, api: ApiSession) -> None:
    """Show the dashboard SLUG: its parameters and tiles in order."""
    board = api.request("GET", dashboard_path(slug), params=given(version=version)).json()
    if fmt == "json":
        echo_json(board)
        return
    click.echo(f"{board['slug']}: {board['title']}")
    click.echo(f"version {board['version']} of {board['latest_version']}")
    if board["description"]:
        click.echo()
        click.echo(board["description"])
    click.echo()
    if board["parameters"]:
        rows = [
            [p["name"], p["type"], "" if p.get("default") is None else json.dumps(p["default"])]
            for p in board["parameters"]
        ]
        click.echo(listing(["PARAMETER", "TYPE", "DEFAULT"], rows))
        click.echo()
    rows = [
        [
            t["id"],
            t["type"],
            t["width"],
            t.get("query") or "",
            ", ".join(f"{k}={v}" for k, v in t.get("params", {}).items()),
            t.get("title") or "",
        ]
        for t in board["tiles"]
    ]
    headers = ["TILE", "TYPE", "WIDTH", "QUERY", "MAPPING", "TITLE"]
    click.echo(listing(headers, rows, {"WIDTH"}) if rows else "No tiles.")


@dashboards.command("export")
@click.argument("slug")
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory to write the tiles' files into (made if missing).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(get_args(ExportFormatName)),
    default="csv",
    show_default=True,
    help="File format of each tile's result.",
)
@dashboard_param_options
@version_option
@api_options
def export_dashboard(
    slug: str,
    output: str,
    fmt: str,
    param_pairs: tuple[str, ...],
    params_json: str | None,
    version: int | None,
    api: ApiSession,
) -> None:
    """Write each tile's whole result of the dashboard SLUG to OUTPUT/<tile>.<format>.

    \b
    myapp dashboards export sales --param city=Oslo -o sales-oslo/
    """
    board = api.request("GET", dashboard_path(slug), params=given(version=version)).json()
    values = parse_params(param_pairs, params_json)
    directory = Path(output)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot make the directory {output}: {exc.strerror}")
    params = given(
        format=fmt, version=version, params=None if values is None else json.dumps(values)
    )
    for tile in board["tiles"]:
        if tile["type"] == "text":
            target = directory / f"{tile['id']}.md"
            target.write_text(tile.get("text") or "", encoding="utf-8")
        else:
            target = directory / f"{tile['id']}.{fmt}"
            save_download(
                api,
                str(target),
                about_sql(None),
                "GET",
                dashboard_path(slug, "tiles", tile["id"], "export"),
                params=params,
            )
        click.echo(f"{target}", err=True)


COMMANDS: list[click.Command] = [dashboards]
