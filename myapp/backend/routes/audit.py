"""The audit log, for admins: who did what, when, from where."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query

from myapp.models.auth import AuditEvent, AuditPage

from ..deps import AdminDep, DatabaseDep
from ..errors import BadRequest
from ..store.audit import list_events

router = APIRouter(tags=["audit"])

MAX_PAGE = 500


@router.get("/audit", response_model=AuditPage, summary="Read the audit log, newest first")
def read_audit(
    actor: AdminDep,
    database: DatabaseDep,
    who: str | None = Query(None, alias="actor", description="Only this actor's events."),
    action: str | None = Query(
        None, description="An action (`login.failed`), or a family ending in a dot (`token.`)."
    ),
    target: str | None = Query(None, description="Only events about this target."),
    since: datetime | None = Query(None, description="Events at or after this time."),
    until: datetime | None = Query(None, description="Events before this time."),
    before: str | None = Query(None, description="The `next` value of the previous page."),
    limit: int = Query(50, ge=1, le=MAX_PAGE),
) -> AuditPage:
    before_id = None
    if before is not None:
        if not before.isdigit():
            raise BadRequest(
                "'before' must be the 'next' value of a previous page.", code="bad_cursor"
            )
        before_id = int(before)
    with database.cursor() as cur:
        events = list_events(
            cur,
            actor=who,
            action=action,
            target=target,
            since=since,
            until=until,
            before_id=before_id,
            limit=limit,
        )
    next_cursor = str(events[-1]["id"]) if len(events) == limit else None
    return AuditPage(events=[AuditEvent(**e) for e in events], next=next_cursor)
