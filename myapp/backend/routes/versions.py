"""The routes of everything kept in numbered versions (saved queries, dashboards): read it,
delete it, list its versions, read one, compare two, restore one as a new version.

No `from __future__ import annotations` here: FastAPI reads the annotations of the handlers,
and those name the models a resource passes in.
"""

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from myapp.models.saved_queries import SavedQueryRestore

from ..auth.dependencies import client_address
from ..deps import DatabaseDep, EditorDep, ViewerDep
from ..services.versions import Versioned


def created(model: type[BaseModel], saved: dict[str, Any], path: str) -> JSONResponse:
    """201 with the new thing, and its address in Location."""
    public = model.model_validate(saved).model_dump(mode="json")
    return JSONResponse(
        public, status_code=201, headers={"Location": f"/api{path}/{saved['slug']}"}
    )


def add_version_routes(
    router: APIRouter,
    things: Versioned,
    *,
    path: str,
    label: str,
    public_model: type,
    versions_model: type,
    diff_model: type,
    not_found: dict[int | str, dict[str, Any]],
    restore_errors: dict[int | str, dict[str, Any]],
    read_name: str,
    delete_name: str,
) -> None:
    """`path` is the collection's ("/queries"), `label` what one is called ("saved query");
    handler names stay those of the routes the resources had, and so the operation ids."""

    @router.get(
        path + "/{slug}",
        response_model=public_model,
        responses=not_found,
        summary=f"A {label}, its latest version or the one asked for",
        name=read_name,
    )
    def read(
        slug: str,
        actor: ViewerDep,
        database: DatabaseDep,
        version: int | None = Query(None, ge=1),
    ) -> dict[str, Any]:
        return things.get(database, slug, version)

    @router.delete(
        path + "/{slug}",
        status_code=204,
        responses=not_found,
        summary=f"Delete a {label} and all its versions",
        name=delete_name,
    )
    def delete(slug: str, request: Request, actor: EditorDep, database: DatabaseDep) -> Response:
        things.delete(database, slug, audit_actor=actor.audit_name, ip=client_address(request))
        return Response(status_code=204)

    @router.get(
        path + "/{slug}/versions",
        response_model=versions_model,
        responses=not_found,
        summary=f"The versions of a {label}, newest first",
    )
    def list_versions(slug: str, actor: ViewerDep, database: DatabaseDep) -> dict[str, Any]:
        return {"slug": slug, "versions": things.list_versions(database, slug)}

    @router.get(
        path + "/{slug}/versions/{version}",
        response_model=public_model,
        responses=not_found,
        summary=f"One version of a {label}",
    )
    def read_version(slug: str, version: int, actor: ViewerDep, database: DatabaseDep) -> dict:
        return things.get(database, slug, version)

    @router.get(
        path + "/{slug}/diff",
        response_model=diff_model,
        responses=not_found,
        summary=f"Two versions of a {label} side by side (default: the latest two)",
    )
    def diff_versions(
        slug: str,
        actor: ViewerDep,
        database: DatabaseDep,
        from_version: int | None = Query(None, ge=1, alias="from"),
        to_version: int | None = Query(None, ge=1, alias="to"),
    ) -> dict[str, Any]:
        return things.diff(database, slug, from_version, to_version)

    @router.post(
        path + "/{slug}/versions/{version}/restore",
        response_model=public_model,
        responses=restore_errors,
        summary="Restore an old version: saves its content as a new version (audited)",
    )
    def restore_version(
        slug: str,
        version: int,
        request: Request,
        actor: EditorDep,
        database: DatabaseDep,
        body: SavedQueryRestore | None = None,
    ) -> dict[str, Any]:
        saved, _ = things.restore(
            database,
            slug,
            version,
            base_version=body.base_version if body else None,
            actor=actor.username,
            audit_actor=actor.audit_name,
            ip=client_address(request),
        )
        return saved
