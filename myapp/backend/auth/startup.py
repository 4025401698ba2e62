"""Start-up checks and bootstrap: nobody may serve a public address that nobody can sign in
to, and MYAPP_ADMIN_PASSWORD is applied to the admin account.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI

from myapp.settings import Settings, SettingsError

from ..services import accounts
from ..store import accounts as account_store
from ..store import tokens as token_store
from ..store.engine import DatabaseError
from ..store.lockfile import DatabaseLockedError, wait_for_lock
from .authenticator import Authenticator
from .tokens import SESSION_RETENTION

log = logging.getLogger("myapp.backend.auth")

# MYAPP_ADMIN_TOKEN guards a public server: refuse short ones there.
ADMIN_TOKEN_MIN_LENGTH = 16


def credentials_problem(settings: Settings, count_accounts: Callable[[], int]) -> str | None:
    """Why the backend must not start with these settings, in one line; None when it may.

    Off loopback, someone must be able to sign in: an admin token, an admin password, or an
    account already in the database. `count_accounts` is only called when it matters.
    """
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    password = settings.admin_password.get_secret_value() if settings.admin_password else ""
    if settings.admin_password is not None and not _password_ok(password):
        return (
            f"MYAPP_ADMIN_PASSWORD must be {account_password_rule()}; "
            "it becomes the password of the admin account"
        )
    if settings.loopback_only:
        return None
    if settings.admin_token is not None and len(token) < ADMIN_TOKEN_MIN_LENGTH:
        return (
            f"MYAPP_ADMIN_TOKEN must be at least {ADMIN_TOKEN_MIN_LENGTH} characters when "
            f"listening on {settings.host}; generate one with: "
            'python -c "import secrets; print(secrets.token_urlsafe(32))"'
        )
    if token or password or count_accounts() > 0:
        return None
    return (
        f"refusing to listen on {settings.host} without credentials: nobody could sign in and "
        "open mode is for loopback only; set MYAPP_ADMIN_PASSWORD or MYAPP_ADMIN_TOKEN, or "
        "create an account with 'myapp user add NAME --role admin', or listen on 127.0.0.1"
    )


def account_password_rule() -> str:
    from myapp.models.auth import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH

    return f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters"


def _password_ok(password: str) -> bool:
    from myapp.models.auth import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH

    return PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH


def check_startup(settings: Settings) -> None:
    """Refuse, before anything binds, to serve a public address nobody can sign in to.

    Raises SettingsError with one line. Reads the database file only when the environment has
    no credentials and the bind is public (waiting, like the server, for a lock to go away).
    """

    def count() -> int:
        try:
            wait_for_lock(settings.database_path, settings.lock_timeout_s)
        except (DatabaseLockedError, OSError) as exc:
            raise SettingsError(str(exc)) from None
        try:
            return account_store.accounts_in_file(settings.database_path)
        except DatabaseError as exc:
            raise SettingsError(
                f"cannot read accounts from {settings.database_path}: {exc}"
            ) from None

    problem = credentials_problem(settings, count)
    if problem:
        raise SettingsError(problem)


def bootstrap(app: FastAPI) -> None:
    """At backend start, with the database open: apply MYAPP_ADMIN_PASSWORD, forget old
    sessions, and re-check that somebody can sign in."""
    settings: Settings = app.state.settings
    auth: Authenticator = app.state.auth
    database = auth.database
    with database.transaction() as cur:
        token_store.purge_sessions(cur, datetime.now(UTC) - SESSION_RETENTION)
        if settings.admin_password is not None:
            applied = accounts.apply_admin_password(cur, settings.admin_password.get_secret_value())
            if applied == "created":
                log.info("created the admin account from MYAPP_ADMIN_PASSWORD")
            elif applied == "changed":
                log.info("applied MYAPP_ADMIN_PASSWORD to the admin account")
        auth.accounts_changed(cur)
        problem = credentials_problem(settings, lambda: account_store.count_accounts(cur))
    if problem:
        # The CLI refuses earlier with a clean message; this guards other ways of starting.
        raise RuntimeError(problem)
    if auth.open_mode:
        log.warning(
            "open mode: no accounts and no admin token, so every caller on this loopback "
            "address is an administrator; create an account to require sign-in"
        )
