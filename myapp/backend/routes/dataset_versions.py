"""A dataset's history: its versions, and restoring one as the current data.

In the lake mode every change of a dataset keeps its rows as a version of its own
(lake/history.py); `/rows`, `/facets` and `/export` of the datasets resource take `version`
to read an older one. The embedded mode keeps only the current data: its list has one entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from myapp.models import ErrorBody
from myapp.models.datasets import DatasetPublic

from ..auth.dependencies import client_address
from ..deps import DatabaseDep, EditorDep, SettingsDep, ViewerDep
from ..lake import history
from ..lake.engine import MODE
from ..services import datasets
from ..store import datasets as catalog

router = APIRouter(tags=["datasets"])


class Version(BaseModel):
    version: int
    at: datetime = Field(description="When this version was made")
    by: str | None = Field(description="Who made it (an account, a token, or none)")
    action: str = Field(description="created, replaced, appended, restored (or current)")
    row_count: int


class VersionList(BaseModel):
    name: str
    current: int = Field(description="The version the dataset reads now")
    kept: bool = Field(description="Whether older versions are kept (the lake mode)")
    versions: list[Version] = Field(description="Newest first")


@router.get(
    "/datasets/{name}/versions",
    response_model=VersionList,
    summary="The versions of a dataset, newest first",
)
def list_versions(name: str, database: DatabaseDep, actor: ViewerDep) -> dict[str, Any]:
    with database.cursor() as cur:
        record = catalog.get_dataset(cur, name)
        versions = history.versions(cur, record.name) if MODE.active else []
    if not versions:
        versions = [
            {
                "version": record.version,
                "at": record.updated_at,
                "by": None,
                "action": "current",
                "row_count": record.row_count,
            }
        ]
    return {
        "name": record.name,
        "current": record.version,
        "kept": MODE.active,
        "versions": versions,
    }


@router.post(
    "/datasets/{name}/versions/{version}/restore",
    response_model=DatasetPublic,
    responses={
        404: {"model": ErrorBody, "description": "No such dataset or version"},
        409: {"model": ErrorBody, "description": "Already current, or history not kept"},
    },
    summary="Make an older version the current data (a new version)",
)
def restore_version(
    name: str,
    version: Annotated[int, Path(ge=1, le=2**62, description="the version to restore")],
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    actor: EditorDep,
) -> dict[str, Any]:
    restored = datasets.restore_version(
        database,
        settings,
        name,
        version,
        actor=actor.audit_name,
        ip=client_address(request),
    )
    return restored.public()
