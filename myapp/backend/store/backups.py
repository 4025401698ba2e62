"""Online backups: a consistent copy of the whole workspace while it keeps working, and restore.

A backup is a directory `<data dir>/backups/<UTC time>/` holding:

- `app.db`: the main database (catalog, accounts, tokens, saved queries, audit log, the
  datasets' views), written by DuckDB inside one transaction with `ATTACH` + `COPY FROM
  DATABASE`. Never a copy of the live file: copies of a live `.db`/`.wal` were broken 4 times
  in 10 when measured.
- `datasets/<file_id>.duckdb`: the data files that catalog names. Nothing writes a dataset file
  after its load (storage.py), so a hard link (a copy across file systems) is already
  consistent; the files are pinned so a replace cannot delete them while they are linked.
- `manifest.json`: when, which myapp and schema version, and each dataset with its row count.

It is written under a hidden temporary name and renamed when complete, so a backup directory
with a manifest is always whole. Restore (offline, the backend stopped) puts those files back
in place; the backend then attaches the files the catalog names, as at every start.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from myapp import __version__
from myapp.settings import Settings

from ..errors import AppError, Conflict
from . import storage
from .database import Database
from .schema import SCHEMA_VERSION
from .sql import internal, quote_ident

MANIFEST = "manifest.json"
# Attached under this name only for the moment of the copy; user SQL can name only `main`.
TARGET_ALIAS = "myapp_backup_target"


class RestoreError(RuntimeError):
    """A restore that cannot be done; the message says why, nothing was changed."""


def backup_root(settings: Settings) -> Path:
    return settings.data_dir / "backups"


def create_backup(database: Database, settings: Settings) -> dict[str, Any]:
    """Write a backup of everything now, while reads and writes go on; return its manifest."""
    if settings.lake_mode:
        raise Conflict(
            "In the lake mode everything lives in PostgreSQL and the lake's data path: back up "
            "the catalog with pg_dump, then copy the data path (docs/deployment/lake.md).",
            code="backup_not_in_lake_mode",
        )
    root = backup_root(settings)
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    name = now.strftime("%Y%m%dT%H%M%S.%fZ")
    partial = root / f".{name}.partial"
    final = root / name
    (partial / "datasets").mkdir(parents=True)
    pinned: list[str] = []
    try:
        with database.cursor() as cur:
            cur.execute(
                f"ATTACH {storage.sql_literal(partial / 'app.db')} AS {quote_ident(TARGET_ALIAS)}"
            )
            try:
                cur.execute("BEGIN TRANSACTION")
                try:
                    # The catalog read and the copy see the same moment: one transaction.
                    rows = cur.execute(
                        f"SELECT name, file_id, row_count FROM {internal('datasets')} ORDER BY name"
                    ).fetchall()
                    for _, file_id, _ in rows:
                        if file_id is None:
                            continue
                        if not storage.PINS.pin(file_id):
                            # Replaced after this transaction began: its file may be gone.
                            raise Conflict(
                                "A dataset was replaced while the backup started; try again.",
                                code="backup_conflict",
                            )
                        pinned.append(file_id)
                    database_name = cur.execute("SELECT current_database()").fetchone()[0]
                    cur.execute(
                        f"COPY FROM DATABASE {quote_ident(database_name)} "
                        f"TO {quote_ident(TARGET_ALIAS)}"
                    )
                    cur.execute("COMMIT")
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
            finally:
                cur.execute(f"DETACH DATABASE IF EXISTS {quote_ident(TARGET_ALIAS)}")
        total = 0
        for file_id in pinned:
            source = storage.path_of(settings, file_id)
            target = partial / "datasets" / source.name
            _link_or_copy(source, target)
            total += target.stat().st_size
        total += (partial / "app.db").stat().st_size
        manifest = {
            "name": name,
            "created_at": now.isoformat(),
            "myapp_version": __version__,
            "schema_version": SCHEMA_VERSION,
            "bytes": total,
            "datasets": [
                {"name": ds_name, "file_id": file_id, "row_count": row_count}
                for ds_name, file_id, row_count in rows
            ],
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        partial.rename(final)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise AppError(
                "There is not enough disk space for a backup; free some space and try again.",
                code="insufficient_storage",
                status_code=507,
            ) from None
        raise
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        for file_id in pinned:
            storage.PINS.unpin(file_id)
    return {**manifest, "path": str(final)}


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(source, target)


def list_backups(settings: Settings) -> list[dict[str, Any]]:
    root = backup_root(settings)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.iterdir(), reverse=True):
        manifest = path / MANIFEST
        if path.name.startswith(".") or not manifest.is_file():
            continue
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        out.append({**data, "path": str(path)})
    return out


# -- restore (offline) ---------------------------------------------------------------------------


def read_manifest(backup: Path) -> dict[str, Any]:
    manifest = backup / MANIFEST
    if not manifest.is_file():
        raise RestoreError(
            f"{backup} is not a myapp backup (no {MANIFEST}); pass a directory made by "
            "`myapp backup`"
        )
    try:
        data = json.loads(manifest.read_text())
    except ValueError:
        raise RestoreError(f"{manifest} is damaged (not JSON)") from None
    if data.get("schema_version", 0) > SCHEMA_VERSION:
        raise RestoreError(
            f"the backup was made by a newer myapp ({data.get('myapp_version')}); upgrade first"
        )
    missing = [
        d["name"]
        for d in data.get("datasets", [])
        if d.get("file_id") and not (backup / "datasets" / f"{d['file_id']}.duckdb").is_file()
    ]
    if missing or not (backup / "app.db").is_file():
        raise RestoreError(
            f"the backup at {backup} is incomplete (missing: {', '.join(missing) or 'app.db'})"
        )
    return data


def restore_backup(settings: Settings, backup: Path) -> dict[str, Any]:
    """Put the backup in place of the current workspace, which is moved aside, not deleted.

    Refused while a backend holds the database. Returns the manifest and where the previous
    workspace went.
    """
    manifest = read_manifest(backup)
    database_path = settings.database_path
    database_path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(database_path):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = settings.data_dir / f"before-restore-{stamp}"
        moved = []
        for path in (
            database_path,
            database_path.with_name(database_path.name + ".wal"),
            settings.datasets_dir,
        ):
            if path.exists():
                aside.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), str(aside / path.name))
                moved.append(path.name)
        settings.datasets_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(backup / "app.db", database_path)
        for entry in manifest.get("datasets", []):
            if entry.get("file_id"):
                name = f"{entry['file_id']}.duckdb"
                _link_or_copy(backup / "datasets" / name, settings.datasets_dir / name)
        # The copy opens like any database: a damaged backup is found now, not at start.
        with duckdb.connect(str(database_path), read_only=True) as conn:
            count = conn.execute(f"SELECT count(*) FROM {internal('datasets')}").fetchone()[0]
        if count != len(manifest.get("datasets", [])):
            raise RestoreError(f"the backup's catalog does not match its manifest ({backup})")
    return {**manifest, "previous": str(aside) if moved else None}


class _exclusive:
    """Hold the database file's lock as DuckDB does (fcntl), so a running backend refuses
    to start meanwhile and a running one makes the restore refuse."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> None:
        if not self.path.exists():
            return
        self.fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise RestoreError(
                f"the database {self.path} is in use by a running backend; stop it, then restore"
            ) from None

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
