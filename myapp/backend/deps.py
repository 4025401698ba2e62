"""Annotated dependency aliases every route uses."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from myapp.settings import Settings

from .auth.actor import Actor
from .auth.dependencies import require
from .store.database import Database
from .store.usersql.workers import Workers


# These are async on purpose: FastAPI runs a plain `def` dependency on its thread pool, and a
# thread hop per dependency costs more than the lookup itself on every request.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.database


async def get_workers(request: Request) -> Workers:
    return request.app.state.workers


async def get_request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
WorkersDep = Annotated[Workers, Depends(get_workers)]
RequestIdDep = Annotated[str, Depends(get_request_id)]

ViewerDep = Annotated[Actor, Depends(require("viewer"))]
EditorDep = Annotated[Actor, Depends(require("editor"))]
AdminDep = Annotated[Actor, Depends(require("admin"))]
