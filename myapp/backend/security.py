"""Who is calling, and what they may do.

Every route declares the least role it needs through the aliases in deps.py (ViewerDep,
EditorDep, AdminDep). Roles are ordered: viewer < editor < admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import Request

Role = Literal["viewer", "editor", "admin"]
ROLE_RANK: dict[str, int] = {"viewer": 1, "editor": 2, "admin": 3}


@dataclass(frozen=True)
class Actor:
    """The caller of one request."""

    username: str | None
    role: Role
    # How the caller proved who they are: token, session, admin_token, open (open mode),
    # public (anonymous read under MYAPP_PUBLIC_READ).
    via: str
    token_id: str | None = None

    def can(self, needed: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]


def require(needed: Role):
    """A dependency that resolves the caller and refuses one without the needed role."""

    def dependency(request: Request) -> Actor:
        # Open mode until accounts and tokens exist: everyone on loopback is admin.
        return Actor(username=None, role="admin", via="open")

    dependency.__name__ = f"require_{needed}"
    return dependency


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
