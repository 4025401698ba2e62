"""Liveness and readiness of the backend."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from myapp import __version__
from myapp.models import HealthPublic

from ..deps import DatabaseDep

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "DuckDB is not usable"}},
    summary="Is the backend up and its database usable?",
)
def read_health(database: DatabaseDep) -> JSONResponse:
    ok = database.healthy()
    body = HealthPublic(
        status="ok" if ok else "unavailable",
        version=__version__,
        database="ok" if ok else "unavailable",
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
