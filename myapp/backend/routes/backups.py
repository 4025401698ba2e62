"""Online backups, for admins: written while the workspace keeps working (store/backups.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from myapp.models.backups import BackupList, BackupPublic

from ..auth.dependencies import client_address
from ..deps import AdminDep, DatabaseDep, SettingsDep
from ..services import backups

router = APIRouter(tags=["backups"])


@router.post(
    "/admin/backup",
    status_code=201,
    response_model=BackupPublic,
    summary="Write a consistent backup of everything, while reads and writes go on",
)
def create_backup(
    request: Request, settings: SettingsDep, database: DatabaseDep, actor: AdminDep
) -> dict[str, Any]:
    return backups.create(database, settings, actor=actor.audit_name, ip=client_address(request))


@router.get("/admin/backups", response_model=BackupList, summary="The backups, newest first")
def list_backups(settings: SettingsDep, actor: AdminDep) -> dict[str, Any]:
    return {"backups": backups.list_backups(settings)}
