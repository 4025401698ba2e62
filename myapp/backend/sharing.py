"""The share-link credential: what a visitor of /s/<secret> may do, and nothing more.

A share link's secret is sent as a bearer token like any other (`Authorization: Bearer
myapp_share_…`). It resolves to an Actor with the role `share` (below viewer), which the access
gate lets through only on routes declaring `ShareDep`, the routes under /api/shared. Those read
the link's own target from the actor, so the secret reaches exactly one saved query or one
dashboard, with the values the link fixes; every other route refuses it with 403, whatever
MYAPP_PUBLIC_READ says.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from .auth.dependencies import bearer_scheme, check_access, current_actor
from .errors import AppError, Forbidden
from .store import shares as share_store
from .store.database import Database
from .store.engine import DatabaseError

log = logging.getLogger("myapp.backend.sharing")

SHARE_ROLE = "share"
SHARE_PREFIX = share_store.SHARE_PREFIX
SHARE_STATE_KEY = "myapp.share"


def is_share_secret(credential: str) -> bool:
    return credential.startswith(SHARE_PREFIX)


def resolve_share(database: Database, credential: str, unauthorized) -> tuple[str, object]:
    """(share id, record) of a live link, or the 401 that says why not. Read from the database
    on every request, so a revoked link is refused at once."""
    found = share_store.find_by_secret(database, credential)
    if found is None:
        raise unauthorized(
            "This share link is not valid: it may be mistyped, or its target was deleted.",
            code="invalid_share",
            error="invalid_token",
        )
    if found.revoked_at is not None:
        raise unauthorized(
            "This share link was revoked; ask whoever sent it for a new one.",
            code="share_revoked",
            error="invalid_token",
        )
    if not share_store.target_predates(database, found):
        # Deleted, and maybe made again under the same slug: not what the link was made for.
        raise unauthorized(
            "What this share link showed was deleted; ask whoever sent it for a new one.",
            code="share_target_gone",
            error="invalid_token",
        )
    if found.expired():
        raise unauthorized(
            "This share link has expired; ask whoever sent it for a new one.",
            code="share_expired",
            error="invalid_token",
        )
    return found.id, found


def check_share_access(actor, needed: str, unauthorized) -> bool:
    """True when the gate's decision is made here: routes that need a share credential, and
    share credentials on any other route (refused)."""
    via = getattr(actor, "via", None)
    if needed == SHARE_ROLE:
        if via == SHARE_ROLE:
            return True
        if actor is None or via == "public":
            raise unauthorized("Open a share link's address to see what it shares.")
        raise Forbidden(
            "These addresses answer only share links; use the pages and routes of the workspace.",
            code="share_link_required",
        )
    if via == SHARE_ROLE and needed != "public":
        raise Forbidden(
            "A share link opens only what it shares: this needs an account.",
            code="share_link_scope",
            detail={"required_role": needed},
        )
    return False


def current_share(request: Request) -> share_store.ShareRecord:
    state = request.scope.setdefault("state", {})
    record = state.get(SHARE_STATE_KEY)
    if record is None:
        raise AppError("The share link was not resolved.", code="share_missing", status_code=500)
    return record


def record_use(database: Database, share_id: str) -> None:
    """Count one opening of a link. Never waits behind a long write: a busy moment loses a
    count rather than holding up the visitor."""
    lock = database.write_lock
    if not lock.acquire(timeout=1.0):
        log.info("did not count a use of share link %s: the database was busy", share_id)
        return
    try:
        with database.transaction() as cur:
            share_store.record_use(cur, share_id, datetime.now(UTC))
    except DatabaseError as exc:
        log.warning("could not count a use of share link %s: %s", share_id, exc)
    finally:
        lock.release()


def _share_dependency():
    async def dependency(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> share_store.ShareRecord:
        actor = await run_in_threadpool(current_actor, request)
        check_access(actor, SHARE_ROLE)
        return current_share(request)

    dependency.__name__ = "require_share"
    dependency.required_role = SHARE_ROLE  # type: ignore[attr-defined]
    return dependency


require_share = _share_dependency()
ShareDep = Annotated[share_store.ShareRecord, Depends(require_share)]
