"""Share links: making one (its fixed values checked against the target's parameters) and
revoking it, each audited."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from myapp.models.saved_queries import ParameterValueError, coerce_parameter, parameter_json

from ..errors import BadRequest
from ..store import audit
from ..store import shares as share_store
from ..store.database import Database
from ..store.saved_queries import invalid_parameters
from ..store.shares import ShareRecord, list_shares

__all__ = ["create", "list_shares", "revoke"]


def create(
    database: Database,
    fields: Mapping[str, Any],
    *,
    actor: str | None,
    audit_actor: str | None,
    ip: str | None,
) -> tuple[str, ShareRecord]:
    """A new link; (its secret, shown only now, and its record)."""
    kind, target, version = fields["kind"], fields["target"], fields.get("version")
    keys = share_store.fixable_keys(database, kind, target, version)
    fixed: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, raw in (fields.get("params") or {}).items():
        if name not in keys:
            raise BadRequest(
                f"The {kind} {target!r} has no parameter {name}; it has: "
                + (", ".join(keys) or "none")
                + ".",
                code="unknown_parameter",
                detail={"unknown": [name], "parameters": list(keys)},
            )
        if raw is None or raw == "":
            continue
        try:
            fixed[name] = parameter_json(coerce_parameter(keys[name], raw))
        except ParameterValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise invalid_parameters(problems)
    now = datetime.now(UTC)
    days = fields.get("expires_in_days")
    expires_at = now + timedelta(days=days) if days else None
    secret = share_store.SHARE_PREFIX + secrets.token_urlsafe(32)
    share_id = secrets.token_hex(6)
    with database.transaction() as cur:
        share_store.insert_share(
            cur,
            share_id=share_id,
            secret=secret,
            kind=kind,
            target=target,
            version=version,
            name=fields["name"],
            params=fixed,
            actor=actor,
            now=now,
            expires_at=expires_at,
        )
        audit.record(
            cur,
            actor=audit_actor,
            action="share.created",
            target=f"{kind}:{target}",
            ip=ip,
            detail={
                "id": share_id,
                "name": fields["name"],
                "fixed": sorted(fixed),
                "expires_at": expires_at.isoformat() if expires_at else None,
            },
        )
    return secret, share_store.get_share(database, share_id)


def revoke(
    database: Database, share_id: str, *, audit_actor: str | None, ip: str | None
) -> ShareRecord:
    """Revoke a link (it stops working at once); revoking it again changes nothing."""
    with database.transaction() as cur:
        revoked = share_store.revoke(cur, share_id)
        if revoked is not None:
            kind, target = revoked
            audit.record(
                cur,
                actor=audit_actor,
                action="share.revoked",
                target=f"{kind}:{target}",
                ip=ip,
                detail={"id": share_id},
            )
    return share_store.get_share(database, share_id)
