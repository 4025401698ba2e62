"""Roles of accounts and token scopes, in order: each one may do what the ones before it may."""

from __future__ import annotations

from typing import Literal

Role = Literal["viewer", "editor", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "editor", "admin")
RANK: dict[str, int] = {role: rank for rank, role in enumerate(ROLES, start=1)}


def at_least(role: str | None, needed: str) -> bool:
    """Whether `role` may do what `needed` may (False for no role)."""
    return role is not None and RANK[role] >= RANK[needed]


def up_to(role: str | None) -> list[str]:
    """The roles at most `role` (the scopes a token of such an account may have)."""
    if role is None:
        return []
    return list(ROLES[: ROLES.index(role) + 1])  # type: ignore[arg-type]
