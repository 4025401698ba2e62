"""Resolves a request's credentials to an Actor.

Credentials are bearer secrets: API tokens and sign-in sessions (both rows of the tokens table,
stored as SHA-256 hashes), share-link secrets (sharing.py), and `MYAPP_ADMIN_TOKEN`. Without
credentials a caller is anonymous, which is enough only for public routes, for viewer routes
under `MYAPP_PUBLIC_READ`, and for everything in open mode (no account, no admin token,
loopback bind).
"""

from __future__ import annotations

import hmac
import logging
from datetime import UTC, datetime

from fastapi import FastAPI, Request

from myapp.settings import Settings, is_loopback

from ..errors import AppError, Unauthorized
from ..lake.limiter import SharedLoginLimiter
from ..store import accounts as account_store
from ..store import tokens as token_store
from ..store.engine import Cursor, DatabaseError
from .actor import ROLE_RANK, Actor
from .limiter import LoginLimiter
from .tokens import hash_token

log = logging.getLogger("myapp.backend.auth")

# Token lookups kept in memory (security.Authenticator._find_token); more are forgotten at once.
MAX_CACHED_LOOKUPS = 10_000
# last_used_at is a hint, not a log: writing it at most this often keeps reads cheap.
LAST_USED_RESOLUTION_S = 60

OPEN_MODE_LOOPBACK_ONLY = (
    "This workspace is in open mode, which only answers requests addressed to this machine "
    "(localhost, 127.0.0.1); create an account to use it from elsewhere."
)


def host_name(host_header: str) -> str:
    """The name part of a Host header: `[::1]:80` → `::1`, `example.com:8080` → `example.com`."""
    host = host_header.strip()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def addressed_to_loopback(host_header: str) -> bool:
    return is_loopback(host_name(host_header))


def unauthorized(message: str, code: str = "unauthorized", error: str | None = None) -> AppError:
    challenge = 'Bearer realm="myapp"'
    if error:
        challenge += f', error="{error}"'
    return Unauthorized(message, code=code, headers={"WWW-Authenticate": challenge})


class Authenticator:
    """Resolves credentials to an Actor; one per app, on `app.state.auth`."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self._app = app
        self.settings = settings
        # In the lake mode every backend counts the same failures (lake/limiter.py).
        self.limiter = (
            SharedLoginLimiter(lambda: self.database) if settings.lake_mode else LoginLimiter()
        )
        admin = settings.admin_token.get_secret_value() if settings.admin_token else ""
        self._admin_token = admin.encode("utf-8") if admin else None
        # Read on every anonymous request; parsing the bind address each time showed in
        # profiles of a point lookup.
        self._loopback_only = settings.loopback_only
        self._has_accounts: bool | None = None
        self._touched: dict[str, datetime] = {}
        # Token hash -> (the database's write generation before it was read, the record).
        self._lookups: dict[str, tuple[int, token_store.TokenRecord]] = {}

    @property
    def database(self):
        return self._app.state.database

    # -- open mode --------------------------------------------------------------------------
    @property
    def has_accounts(self) -> bool:
        if self._has_accounts is None:
            with self.database.cursor() as cur:
                self._has_accounts = account_store.count_accounts(cur) > 0
        return self._has_accounts

    def accounts_changed(self, cur: Cursor) -> None:
        """Call after creating or removing accounts (inside the transaction is fine)."""
        self._has_accounts = account_store.count_accounts(cur) > 0

    @property
    def open_mode(self) -> bool:
        return self._loopback_only and self._admin_token is None and not self.has_accounts

    @property
    def has_admin_token(self) -> bool:
        return self._admin_token is not None

    def resolves_without_io(self, request: Request) -> bool:
        """True when resolving this caller reads nothing from the database: no credentials
        were sent and whether accounts exist is already known (or the admin token matches)."""
        header = request.headers.get("authorization")
        if header is None:
            return self._has_accounts is not None
        if self._admin_token is None:
            return False
        credential = header.strip().partition(" ")[2].strip()
        return hmac.compare_digest(credential.encode("utf-8"), self._admin_token)

    # -- credentials ------------------------------------------------------------------------
    def resolve(self, request: Request) -> Actor | None:
        """The caller, or None when anonymous without any anonymous access.

        Bad credentials are always an error, never a fall-back to anonymous: a client with a
        mistyped or expired token should learn it.
        """
        header = request.headers.get("authorization")
        if header is None:
            if self.open_mode:
                if not addressed_to_loopback(request.headers.get("host", "")):
                    # A page of another site reaching us by DNS rebinding, or a proxy making
                    # an open workspace public: open mode is for this machine only.
                    raise unauthorized(OPEN_MODE_LOOPBACK_ONLY, code="open_mode_loopback_only")
                return Actor(username=None, role="admin", via="open")
            if self.settings.public_read:
                return Actor(username=None, role="viewer", via="public")
            return None
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise unauthorized(
                "The Authorization header must be 'Bearer <token>'.",
                code="invalid_authorization",
                error="invalid_request",
            )
        if self._admin_token is not None and hmac.compare_digest(
            credential.encode("utf-8"), self._admin_token
        ):
            return Actor(username=None, role="admin", via="admin_token")
        from .. import sharing

        if sharing.is_share_secret(credential):
            share_id, share = sharing.resolve_share(self.database, credential, unauthorized)
            request.scope.setdefault("state", {})[sharing.SHARE_STATE_KEY] = share
            return Actor(username=None, role="share", via="share", token_id=share_id)  # type: ignore[arg-type]
        found = self._find_token(hash_token(credential))
        if found is None:
            raise unauthorized(
                "The token is not valid: it may be mistyped, or its account was removed.",
                code="invalid_token",
                error="invalid_token",
            )
        what = "session" if found.kind == "session" else "token"
        if found.revoked_at is not None:
            message = (
                "This session has ended (signed out, or the password changed); sign in again."
                if found.kind == "session"
                else "This token was revoked; create a new one on your account page."
            )
            raise unauthorized(message, code=f"{what}_revoked", error="invalid_token")
        if found.expired():
            message = (
                "Your session has expired; sign in again."
                if found.kind == "session"
                else "This token has expired; create a new one on your account page."
            )
            raise unauthorized(message, code=f"{what}_expired", error="invalid_token")
        self._touch(found.id, found.last_used_at)
        role = min(found.scope, found.account_role, key=ROLE_RANK.__getitem__)
        return Actor(username=found.username, role=role, via=what, token_id=found.id)  # type: ignore[arg-type]

    def _find_token(self, digest: str) -> token_store.TokenRecord | None:
        """The token's record, from the database or from an earlier lookup when no write
        transaction has committed since (revoking a token, signing out, changing or removing
        its account all commit one), so a revoked token is refused at once. Expiry is checked
        on every use. Saves a DuckDB query per request (bench/auth.py)."""
        database = self.database
        # Read before the query: a commit after it (whose data the query may have missed)
        # makes the entry out of date.
        generation = database.write_generation
        cached = self._lookups.get(digest)
        if cached is not None and cached[0] == generation:
            return cached[1]
        with database.cursor() as cur:
            found = token_store.find_by_hash(cur, digest)
        if found is not None:
            if len(self._lookups) >= MAX_CACHED_LOOKUPS:
                self._lookups.clear()
            self._lookups[digest] = (generation, found)
        return found

    def _touch(self, token_id: str, stored: datetime | None) -> None:
        now = datetime.now(UTC)
        last = self._touched.get(token_id) or stored
        if last is not None and (now - last).total_seconds() < LAST_USED_RESOLUTION_S:
            return
        # Never wait behind a long write (an ingest holds the lock): skip, the next request
        # will record the use.
        lock = self.database.write_lock
        if not lock.acquire(blocking=False):
            return
        try:
            if len(self._touched) > 10_000:
                self._touched.clear()
            self._touched[token_id] = now
            with self.database.cursor() as cur:
                token_store.touch_token(cur, token_id, now)
        except DatabaseError as exc:
            log.warning("could not record the use of token %s: %s", token_id, exc)
        finally:
            lock.release()
