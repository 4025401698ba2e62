"""`myapp datasets …`: list, show, rename, delete and export datasets of a running backend.

`myapp upload` (datasets.py) loads them; these commands go through the same API
(`/api/datasets`) with the same `--url` and `--token`.
"""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import quote

import click

from .download import export_format, output_options, save_download
from .errors import EXIT_USAGE, fail
from .output import echo_json, format_size, listing, listing_format_option, plural, when
from .session import ApiSession, api_options


def dataset_path(name: str) -> str:
    return "/api/datasets/" + quote(name, safe="")


def _source(dataset: dict[str, Any]) -> str:
    source = dataset["source"]
    kind = source["format"] + (f", {source['compression']}" if source.get("compression") else "")
    return f"{source.get('filename') or '(no file name)'} ({kind}, {format_size(source['bytes'])})"


@click.group("datasets")
def datasets() -> None:
    """List, show, rename, delete and export datasets (`myapp upload` adds them)."""


@datasets.command("list")
@listing_format_option
@api_options
def list_datasets(fmt: str, api: ApiSession) -> None:
    """List datasets: rows, columns, the file each came from, and when it last changed."""
    answer = api.request("GET", "/api/datasets").json()
    if fmt == "json":
        echo_json(answer)
        return
    rows = [
        [
            d["name"],
            f"{d['row_count']:,}",
            len(d["columns"]),
            d["source"].get("filename") or "",
            d["source"]["format"],
            format_size(d["source"]["bytes"]),
            when(d["updated_at"]),
        ]
        for d in answer["datasets"]
    ]
    headers = ["NAME", "ROWS", "COLUMNS", "SOURCE", "FORMAT", "SIZE", "UPDATED"]
    click.echo(listing(headers, rows, numeric={"ROWS", "COLUMNS"}) if rows else "No datasets.")


@datasets.command("show")
@click.argument("name")
@listing_format_option
@api_options
def show_dataset(name: str, fmt: str, api: ApiSession) -> None:
    """Show the dataset NAME: its columns and their types, rows, source file."""
    dataset = api.request("GET", dataset_path(name)).json()
    if fmt == "json":
        echo_json(dataset)
        return
    click.echo(
        f"{dataset['name']}: {plural(dataset['row_count'], 'row')}, "
        f"{plural(len(dataset['columns']), 'column')}"
    )
    click.echo(f"source   {_source(dataset)}")
    click.echo(f"created  {when(dataset['created_at'])}")
    click.echo(f"updated  {when(dataset['updated_at'])}")
    click.echo()
    columns = [[column["name"], column["type"]] for column in dataset["columns"]]
    click.echo(listing(["COLUMN", "TYPE"], columns))


@datasets.command("rename")
@click.argument("name")
@click.argument("new_name", metavar="NEW")
@api_options
def rename_dataset(name: str, new_name: str, api: ApiSession) -> None:
    """Rename the dataset NAME to NEW (made a safe name as uploads are: lower case, …).

    Saved queries that name the old table are not rewritten.
    """
    renamed = api.request("PATCH", dataset_path(name), json={"name": new_name}).json()
    click.echo(f"Renamed dataset {name} to {renamed['name']}.")


@datasets.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask; required when stdin is not a terminal.")
@api_options
def delete_dataset(name: str, yes: bool, api: ApiSession) -> None:
    """Delete the dataset NAME and its data (asks first on a terminal; there is no undo)."""
    if not yes:
        if not sys.stdin.isatty():
            # A script must say what it means: nobody is there to answer a question.
            fail(
                f"not deleting {name}: give --yes to delete without a question "
                "(stdin is not a terminal)",
                EXIT_USAGE,
            )
        dataset = api.request("GET", dataset_path(name)).json()
        click.confirm(
            f"Delete the dataset {dataset['name']} ({plural(dataset['row_count'], 'row')})? "
            "This cannot be undone",
            abort=True,
        )
        name = dataset["name"]
    api.request("DELETE", dataset_path(name))
    click.echo(f"Deleted dataset {name}.")


def _filter_pair(pair: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    column, marker, op = key.rpartition("__")
    if not sep or not marker or not column or not op:
        raise click.BadParameter(
            f"{pair!r} is not COLUMN__OP=VALUE (such as --filter amount__gt=100 or "
            "--filter city__in=Oslo,Bergen)",
            param_hint="--filter",
        )
    return key, value


@datasets.command("export")
@click.argument("name")
@output_options
@click.option(
    "--sort",
    default=None,
    metavar="COLUMN",
    help="Order by COLUMN, or -COLUMN for descending.",
)
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="COLUMN__OP=VALUE",
    help="Keep rows where COLUMN OP VALUE (repeatable, all must hold); OP is one of eq ne gt "
    "gte lt lte contains startswith in isnull notnull; in takes comma-separated values.",
)
@click.option(
    "--q", "q", default=None, metavar="TEXT", help="Keep rows with TEXT in a text column."
)
@api_options
def export_dataset(
    name: str,
    output: str,
    fmt: str | None,
    bom: bool,
    sort: str | None,
    filters: tuple[str, ...],
    q: str | None,
    api: ApiSession,
) -> None:
    """Save the dataset NAME, or the rows that pass the filters, to a file.

    The same filters, search and sort as the table browser; the file is whole or not written
    at all, as with `myapp export`.

    \b
    myapp datasets export sales -o sales.parquet
    myapp datasets export sales -o big.csv --filter amount__gte=100 --sort=-amount
    """
    params: list[tuple[str, str]] = [("format", export_format(output, fmt))]
    if bom:
        params.append(("bom", "true"))
    params.extend(_filter_pair(pair) for pair in filters)
    if sort:
        params.append(("sort", sort))
    if q:
        params.append(("q", q))
    save_download(api, output, None, "GET", dataset_path(name) + "/export", params=params)


COMMANDS: list[click.Command] = [datasets]
