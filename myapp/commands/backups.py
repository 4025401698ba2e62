"""`myapp backup` asks a running backend for an online backup; `myapp restore` puts one back
while the backend is stopped (store/backups.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from myapp.settings import SettingsError, load_settings

from .errors import fail
from .session import ApiSession, api_options


@click.command("backup")
@click.option("--json", "as_json", is_flag=True, help="Print the backend's JSON answer.")
@api_options
def backup(as_json: bool, api: ApiSession) -> None:
    """Write a consistent backup of every dataset, saved query and account (admin only).

    The backend keeps serving reads and writes meanwhile. The backup is a directory under
    <data dir>/backups on the backend's machine; copy it elsewhere to keep it safe.
    """
    result = api.request("POST", "/api/admin/backup", timeout=None).json()
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    rows = sum(d["row_count"] for d in result["datasets"])
    click.echo(
        f"Backup written to {result['path']}: {len(result['datasets'])} datasets, "
        f"{rows:,} rows, {result['bytes']:,} bytes."
    )


@click.command("restore")
@click.argument("backup_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--yes", is_flag=True, help="Do not ask; the current workspace is moved aside, not deleted."
)
def restore(backup_dir: Path, yes: bool) -> None:
    """Replace this machine's workspace (MYAPP_DATA_DIR) with the backup in BACKUP_DIR.

    Run it with the backend stopped: a running backend makes it refuse. The current database
    and dataset files are moved to <data dir>/before-restore-<time>/ first.
    """
    from myapp.backend.store.backups import RestoreError, read_manifest, restore_backup

    try:
        settings = load_settings()
        manifest = read_manifest(backup_dir)
    except (SettingsError, RestoreError) as exc:
        fail(str(exc), code=2)
        return
    if not yes:
        click.confirm(
            f"Replace the workspace in {settings.data_dir} with the backup of "
            f"{manifest['created_at']} ({len(manifest['datasets'])} datasets)?",
            abort=True,
        )
    try:
        result = restore_backup(settings, backup_dir)
    except RestoreError as exc:
        fail(str(exc), code=2)
        return
    moved = f" The previous workspace is in {result['previous']}." if result["previous"] else ""
    click.echo(
        f"Restored the backup of {result['created_at']}: {len(result['datasets'])} datasets.{moved}"
    )


COMMANDS: list[click.Command] = [backup, restore]
