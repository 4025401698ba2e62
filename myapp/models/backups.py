"""Backups, as the API returns them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class BackupDataset(BaseModel):
    name: str
    file_id: str | None
    row_count: int


class BackupPublic(BaseModel):
    name: str
    path: str
    created_at: datetime
    myapp_version: str
    schema_version: int
    bytes: int
    datasets: list[BackupDataset]


class BackupList(BaseModel):
    backups: list[BackupPublic]
