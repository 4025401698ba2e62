"""`myapp lake import`: move an embedded workspace into the lake (docs/deployment/lake.md)."""

from __future__ import annotations

from pathlib import Path

import click

from myapp.settings import SettingsError, load_settings


@click.group("lake")
def lake() -> None:
    """The lake mode: several backends over one DuckLake (docs/deployment/lake.md)."""


@lake.command("import")
@click.option(
    "--from",
    "source",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The embedded workspace's data directory (default: MYAPP_DATA_DIR).",
)
def import_(source: Path | None) -> None:
    """Copy an embedded workspace (datasets, accounts, tokens, saved queries, dashboards,
    share links, audit) into the empty lake named by MYAPP_CATALOG_URL and
    MYAPP_LAKE_DATA_PATH. Stop the embedded backend first; the workspace is only read."""
    from myapp.backend.lake.catalog import CatalogUnavailable, check_catalog, check_lake
    from myapp.backend.lake.importer import ImportRefused, import_workspace

    try:
        settings = load_settings()
        if not settings.lake_mode:
            raise SettingsError(
                "set MYAPP_CATALOG_URL and MYAPP_LAKE_DATA_PATH to the lake to import into"
            )
        settings.check("backend")
        check_catalog(settings)
        check_lake(settings)
        embedded = settings.model_copy(
            update={
                "catalog_url": None,
                "lake_data_path": None,
                **(
                    {"data_dir": source, "database": source / "app.db"}
                    if source is not None
                    else {}
                ),
            }
        )
        report = import_workspace(embedded, settings)
    except (SettingsError, CatalogUnavailable, ImportRefused) as exc:
        # One line and exit 2, as every refusal of the command line.
        click.echo(f"myapp: {exc}", err=True)
        raise SystemExit(2) from None
    rows = sum(d["row_count"] for d in report["datasets"])
    click.echo(f"Imported {len(report['datasets'])} datasets ({rows:,} rows) into the lake.")
    for table, count in report["tables"].items():
        click.echo(f"  {table}: {count}")


COMMANDS: list[click.Command] = [lake]
