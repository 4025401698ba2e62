"""Accounts, tokens, sessions and the audit log, as the API accepts and returns them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from myapp.contract.roles import Role

from . import usernames

# The ASCII shape usernames had first; every such name still follows the rule in usernames.py.
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Long enough to resist guessing under the login rate limit; the upper bound keeps one hash cheap.
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024
TOKEN_MAX_DAYS = 3650


class LoginRequest(BaseModel):
    username: str = Field(max_length=200)
    password: str = Field(max_length=PASSWORD_MAX_LENGTH)


class UserPublic(BaseModel):
    username: str
    role: Role
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None = None


class LoginResult(BaseModel):
    token: str = Field(description="A session token; send it as `Authorization: Bearer …`.")
    expires_at: datetime
    user: UserPublic


class MePublic(BaseModel):
    user: str | None = Field(description="The account's username; null when anonymous.")
    role: Role | None = Field(description="What the caller may do; null when nothing.")
    via: str | None = Field(
        description="How the caller is known: session, token, admin_token, open, public."
    )
    open_mode: bool = Field(description="No credentials exist: everyone on loopback is admin.")
    public_read: bool = Field(description="Anonymous callers may browse and query.")


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=PASSWORD_MAX_LENGTH)
    new_password: str = Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)


class UserCreate(BaseModel):
    username: str = Field(max_length=200, description=usernames.RULE)
    password: str = Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)
    role: Role = "viewer"

    @field_validator("username")
    @classmethod
    def _username_rule(cls, value: str) -> str:
        problem = usernames.problem(value)
        if problem:
            raise ValueError(problem)
        return value


class UserUpdate(BaseModel):
    role: Role | None = None
    password: str | None = Field(
        None, min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH
    )


class UserList(BaseModel):
    users: list[UserPublic]


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scope: Role = "viewer"
    expires_in_days: int | None = Field(
        None, ge=1, le=TOKEN_MAX_DAYS, description="Days until it stops working; null: never."
    )
    username: str | None = Field(
        None, description="Whose token (admins only); default: the caller's own account."
    )


class TokenPublic(BaseModel):
    id: str
    name: str
    scope: Role
    kind: Literal["api", "session"]
    username: str
    hint: str = Field(description="The token's first characters, to recognise it.")
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    active: bool


class TokenCreated(TokenPublic):
    token: str = Field(description="The secret itself: shown only in this answer.")


class TokenList(BaseModel):
    tokens: list[TokenPublic]


class AuditEvent(BaseModel):
    id: int
    at: datetime
    actor: str | None
    action: str
    target: str | None
    ip: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    events: list[AuditEvent]
    next: str | None = Field(description="Pass as `before` for the next (older) page.")
