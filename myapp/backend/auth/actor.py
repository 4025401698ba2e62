"""Who the caller of a request is, and the order of roles: viewer < editor < admin."""

from __future__ import annotations

from dataclasses import dataclass

from myapp.contract.roles import RANK, ROLES, Role

# Anonymous readers and share links rank below every account.
ROLE_RANK: dict[str, int] = {"public": 0, "share": 0, **RANK}

ACTOR_STATE_KEY = "myapp.actor"

__all__ = ["ACTOR_STATE_KEY", "ROLES", "ROLE_RANK", "Actor", "Role"]


@dataclass(frozen=True)
class Actor:
    """The caller of one request."""

    username: str | None
    role: Role
    # How the caller proved who they are: token, session, admin_token, open (open mode),
    # public (anonymous read under MYAPP_PUBLIC_READ).
    via: str
    token_id: str | None = None

    def can(self, needed: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]

    @property
    def audit_name(self) -> str:
        """The name audit lines carry: the account, or how an account-less caller got in."""
        if self.username:
            return self.username
        return {"admin_token": "admin-token", "open": "open-mode", "share": "share-link"}.get(
            self.via, "anonymous"
        )
