"""Backups: writing one while the workspace keeps working, audited."""

from __future__ import annotations

from typing import Any

from myapp.settings import Settings

from ..store import audit
from ..store import backups as backup_store
from ..store.backups import list_backups
from ..store.database import Database

__all__ = ["create", "list_backups"]


def create(
    database: Database, settings: Settings, *, actor: str | None, ip: str | None
) -> dict[str, Any]:
    """Write a backup; its manifest. The audit line follows once the backup is whole."""
    manifest = backup_store.create_backup(database, settings)
    with database.transaction() as cur:
        audit.record(
            cur,
            actor=actor,
            action="backup.created",
            target=manifest["name"],
            ip=ip,
            detail={"datasets": len(manifest["datasets"]), "bytes": manifest["bytes"]},
        )
    return manifest
