"""API tokens and sign-in sessions: bearer secrets stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Literal

from ..store import tokens as token_store
from ..store.engine import Cursor

# A sign-in lasts a working week; people sign in again after that. Absolute, not sliding, so a
# stolen cookie stops working on its own.
SESSION_TTL = timedelta(days=7)
# Ended sessions are kept this long (they explain audit lines), then forgotten at start.
SESSION_RETENTION = timedelta(days=30)
# Tokens start with this, so secret scanners and people recognise them.
TOKEN_PREFIX = "myapp_"  # noqa: S105 - a public prefix, not a secret
HINT_CHARS = len(TOKEN_PREFIX) + 4


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> tuple[str, str, str]:
    """A fresh token: (secret, its hash, a hint of its first characters)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return secret, hash_token(secret), secret[:HINT_CHARS]


def issue_token(
    cur: Cursor,
    account_id: int,
    *,
    kind: Literal["api", "session"],
    name: str,
    scope: str,
    expires_at: datetime | None,
) -> tuple[str, token_store.TokenRecord]:
    """Store a new token of the account; return (its secret, to show once, and its record)."""
    secret, digest, hint = new_secret()
    token_id = secrets.token_hex(6)
    token_store.insert_token(
        cur,
        token_id=token_id,
        account_id=account_id,
        kind=kind,
        name=name,
        scope=scope,
        token_hash=digest,
        hint=hint,
        expires_at=expires_at,
    )
    created = token_store.get_token(cur, token_id)
    assert created is not None
    return secret, created
