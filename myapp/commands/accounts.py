"""`myapp user …` and `myapp token …`: accounts and API tokens from the command line.

While the backend runs, the database file is locked, so the commands go through the API
(`--url`, `--token`/MYAPP_TOKEN). When no backend answers at a loopback address, they work on
the database file directly (MYAPP_DATA_DIR / MYAPP_DATABASE): that is how the first admin
account of a server is made before it is started. Both ways apply the same rules and write the
same audit lines.
"""

from __future__ import annotations

import functools
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import click
import httpx

from myapp.contract.roles import ROLES
from myapp.models import usernames
from myapp.models.auth import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    TOKEN_MAX_DAYS,
)

from .errors import fail
from .session import ApiSession, connection_options

# A running backend answers its health check at once; a stopped one refuses the connection.
PROBE_TIMEOUT_S = 3.0


# -- where the accounts live ----------------------------------------------------------------
class ApiTarget:
    """A running backend, through its API."""

    where = "api"

    def __init__(self, api: ApiSession) -> None:
        self.api = api

    def add_user(self, username: str, password: str, role: str) -> dict[str, Any]:
        body = {"username": username, "password": password, "role": role}
        return self.api.request("POST", "/api/users", json=body).json()

    def update_user(
        self, username: str, *, role: str | None = None, password: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"role": role}
        if password is not None:
            body["password"] = password
        return self.api.request("PATCH", _user_path(username), json=body).json()

    def list_users(self) -> list[dict[str, Any]]:
        return self.api.request("GET", "/api/users").json()["users"]

    def remove_user(self, username: str) -> None:
        self.api.request("DELETE", _user_path(username))

    def create_token(
        self, name: str, scope: str, days: int | None, user: str | None
    ) -> dict[str, Any]:
        body = {"name": name, "scope": scope, "expires_in_days": days, "username": user}
        return self.api.request("POST", "/api/tokens", json=body).json()

    def list_tokens(
        self, user: str | None, all_accounts: bool, inactive: bool
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"include_inactive": str(inactive).lower()}
        if all_accounts:
            params["all"] = "true"
        if user:
            params["username"] = user
        return self.api.request("GET", "/api/tokens", params=params).json()["tokens"]

    def revoke_token(self, token_id: str) -> None:
        self.api.request("DELETE", "/api/tokens/" + quote(token_id, safe=""))


class FileTarget:
    """A stopped backend's database file, opened directly."""

    where = "file"

    def __init__(self, settings: Any) -> None:
        # A locked file means a backend runs somewhere: say so at once rather than wait for it.
        self.settings = settings.model_copy(update={"lock_timeout_s": 0})
        self.actor = f"cli:{_os_user()}"

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        from myapp.backend.errors import AppError
        from myapp.backend.store.database import Database, DatabaseLockedError

        database = Database(self.settings)
        try:
            database.open()
        except DatabaseLockedError:
            fail(
                f"the database file {self.settings.database_path} is locked by another process "
                "(a backend at another address?); pass that backend's --url, or stop it"
            )
        except Exception as exc:  # any failure to open is reported in one line
            fail(f"cannot open the database file {self.settings.database_path}: {exc}")
        try:
            with database.transaction() as cur:
                yield cur
        except AppError as exc:
            fail(f"{exc.message} ({exc.status_code} {exc.code})")
        finally:
            database.close()

    def require_file(self) -> None:
        if not self.settings.database_path.exists():
            fail(
                f"there is no database at {self.settings.database_path} yet, and no backend "
                "answers; check MYAPP_DATA_DIR, or pass the backend's --url"
            )

    def add_user(self, username: str, password: str, role: str) -> dict[str, Any]:
        from myapp.backend.services import accounts as access

        with self._transaction() as cur:
            account = access.create_user(
                cur, username=username, password=password, role=role, actor=self.actor, ip=None
            )
            return _jsonable(account.public())

    def update_user(
        self, username: str, *, role: str | None = None, password: str | None = None
    ) -> dict[str, Any]:
        from myapp.backend.services import accounts as access

        self.require_file()
        with self._transaction() as cur:
            account = access.update_user(
                cur,
                username,
                role=role,
                password=password,
                actor=self.actor,
                ip=None,
                has_admin_token=False,
            )
            return _jsonable(account.public())

    def list_users(self) -> list[dict[str, Any]]:
        from myapp.backend.store import accounts

        self.require_file()
        with self._transaction() as cur:
            return [_jsonable(a.public()) for a in accounts.list_accounts(cur)]

    def remove_user(self, username: str) -> None:
        from myapp.backend.services import accounts as access

        self.require_file()
        with self._transaction() as cur:
            access.remove_user(cur, username, actor=self.actor, ip=None, has_admin_token=False)

    def create_token(
        self, name: str, scope: str, days: int | None, user: str | None
    ) -> dict[str, Any]:
        from myapp.backend.services import tokens as access

        if not user:
            fail("working on the database file, name the token's account with --user")
        self.require_file()
        with self._transaction() as cur:
            owner = access.get_account_or_404(cur, user)
            secret, created = access.create_token(
                cur,
                owner=owner,
                name=name,
                scope=scope,
                expires_in_days=days,
                actor=self.actor,
                actor_role="admin",
                ip=None,
            )
            return {**_jsonable(created.public()), "token": secret}

    def list_tokens(
        self, user: str | None, all_accounts: bool, inactive: bool
    ) -> list[dict[str, Any]]:
        from myapp.backend.services import accounts as access
        from myapp.backend.store import tokens

        self.require_file()
        with self._transaction() as cur:
            account_id = access.get_account_or_404(cur, user).id if user else None
            records = tokens.list_tokens(cur, account_id=account_id, include_inactive=inactive)
            return [_jsonable(r.public()) for r in records]

    def revoke_token(self, token_id: str) -> None:
        from myapp.backend.services import tokens as access

        self.require_file()
        with self._transaction() as cur:
            access.revoke_token(cur, token_id, caller=None, actor=self.actor, ip=None)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(values, default=lambda v: v.isoformat()))


def _user_path(username: str) -> str:
    return "/api/users/" + quote(username, safe="")


def _backend_answers(url: str) -> bool:
    try:
        httpx.get(url.rstrip("/") + "/api/health", timeout=PROBE_TIMEOUT_S)
    except httpx.TransportError:
        return False
    return True


def target_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --url and --token, and pass `target`: the API if a backend answers, else the file."""

    @connection_options(
        "The backend's base URL (or MYAPP_URL). When nothing answers on loopback, "
        "commands work on the database file (MYAPP_DATA_DIR, MYAPP_DATABASE) instead.",
        "An admin's API token (or MYAPP_TOKEN); not needed in open mode or on the file.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, url: str, token: str | None, **kwargs: Any):
        if _backend_answers(url):
            api = ApiSession(url, token)
            try:
                return func(*args, target=ApiTarget(api), **kwargs)
            finally:
                api.close()
        from myapp.settings import SettingsError, is_loopback, load_settings

        if not is_loopback(httpx.URL(url).host):
            # A backend elsewhere is down or mistyped: the local file is not the one it uses.
            fail(f"cannot reach the backend at {url}")

        try:
            settings = load_settings()
        except SettingsError as exc:
            fail(str(exc))
        click.echo(
            f"No backend answers at {url}; working on {settings.database_path} directly.",
            err=True,
        )
        return func(*args, target=FileTarget(settings), **kwargs)

    return wrapper


# -- input ----------------------------------------------------------------------------------
def _check_username(username: str) -> str:
    problem = usernames.problem(username)
    if problem:
        fail(problem[0].lower() + problem[1:].rstrip("."))
    return username


def _read_password(from_stdin: bool, prompt: str) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(prompt, hide_input=True, confirmation_prompt=True, err=True)
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        fail(f"a password has {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters")
    return password


password_stdin = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of asking.",
)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    for row in rows:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def _when(value: str | None, size: int = 16) -> str:
    return value[:size].replace("T", " ") if value else "never"


# -- myapp user -----------------------------------------------------------------------------
@click.group()
def user() -> None:
    """Manage accounts (admins; or on the database file while the backend is stopped)."""


@user.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="viewer",
    show_default=True,
    help="viewer: browse, query, export; editor: also change data; admin: also accounts.",
)
@password_stdin
@target_options
def user_add(username: str, role: str, password_stdin: bool, target: Any) -> None:
    """Create an account USERNAME; asks for its password."""
    _check_username(username)
    password = _read_password(password_stdin, f"Password for {username}")
    created = target.add_user(username, password, role)
    click.echo(f"Created account {created['username']} ({created['role']}).")


@user.command("passwd")
@click.argument("username")
@password_stdin
@target_options
def user_passwd(username: str, password_stdin: bool, target: Any) -> None:
    """Set a new password for USERNAME; its sign-ins end."""
    password = _read_password(password_stdin, f"New password for {username}")
    changed = target.update_user(username, password=password)
    click.echo(f"Password of {changed['username']} changed; its sign-ins have ended.")


@user.command("role")
@click.argument("username")
@click.argument("role", type=click.Choice(ROLES))
@target_options
def user_role(username: str, role: str, target: Any) -> None:
    """Give USERNAME another ROLE (viewer, editor or admin)."""
    changed = target.update_user(username, role=role)
    click.echo(f"{changed['username']} is now {changed['role']}.")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@target_options
def user_list(as_json: bool, target: Any) -> None:
    """List accounts."""
    users = target.list_users()
    if as_json:
        click.echo(json.dumps({"users": users}, indent=2))
        return
    if not users:
        click.echo("No accounts.")
        return
    rows = [
        [u["username"], u["role"], _when(u["created_at"], 10), _when(u["last_login_at"])]
        for u in users
    ]
    click.echo(_table(rows, ["USERNAME", "ROLE", "CREATED", "LAST SIGN-IN"]))


@user.command("remove")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@target_options
def user_remove(username: str, yes: bool, target: Any) -> None:
    """Remove the account USERNAME and all its tokens."""
    if not yes:
        click.confirm(f"Remove the account {username} and all its tokens?", abort=True, err=True)
    target.remove_user(username)
    click.echo(f"Removed account {username}.")


# -- myapp token ----------------------------------------------------------------------------
@click.group()
def token() -> None:
    """Manage API tokens (your own; admins: anyone's)."""


@token.command("create")
@click.option("--name", required=True, help="What the token is for, e.g. 'nightly report'.")
@click.option(
    "--scope",
    type=click.Choice(ROLES),
    default="viewer",
    show_default=True,
    help="What the token may do; at most its account's role.",
)
@click.option(
    "--expires-in-days",
    type=click.IntRange(1, TOKEN_MAX_DAYS),
    default=None,
    help="Days until it stops working (default: never).",
)
@click.option("--user", "owner", default=None, help="Whose token (admins); default: yours.")
@target_options
def token_create(
    name: str, scope: str, expires_in_days: int | None, owner: str | None, target: Any
) -> None:
    """Create a token and print it (it is shown only this once)."""
    created = target.create_token(name, scope, expires_in_days, owner)
    expires = f"expires {created['expires_at'][:10]}" if created["expires_at"] else "no expiry"
    click.echo(
        f"Token {created['id']} for {created['username']} ({created['scope']}, {expires}). "
        "Copy it now: it is shown only once.",
        err=True,
    )
    # Alone on stdout, so `TOKEN=$(myapp token create …)` captures just the secret.
    click.echo(created["token"])


@token.command("list")
@click.option("--user", "owner", default=None, help="Whose tokens (admins: anyone's).")
@click.option("--all", "all_accounts", is_flag=True, help="Every account's tokens (admins).")
@click.option("--inactive", is_flag=True, help="Include revoked and expired tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@target_options
def token_list(
    owner: str | None, all_accounts: bool, inactive: bool, as_json: bool, target: Any
) -> None:
    """List API tokens (never their secrets)."""
    tokens = target.list_tokens(owner, all_accounts, inactive)
    if as_json:
        click.echo(json.dumps({"tokens": tokens}, indent=2))
        return
    if not tokens:
        click.echo("No tokens.")
        return
    rows = [
        [
            t["id"],
            t["name"],
            t["username"],
            t["scope"],
            _when(t["expires_at"], 10),
            _when(t["last_used_at"]),
            "active" if t["active"] else ("revoked" if t["revoked_at"] else "expired"),
        ]
        for t in tokens
    ]
    click.echo(_table(rows, ["ID", "NAME", "USER", "SCOPE", "EXPIRES", "LAST USED", "STATE"]))


@token.command("revoke")
@click.argument("token_id")
@target_options
def token_revoke(token_id: str, target: Any) -> None:
    """Revoke the token TOKEN_ID (from `myapp token list`): it stops working at once."""
    target.revoke_token(token_id)
    click.echo(f"Revoked token {token_id}.")


COMMANDS: list[click.Command] = [user, token]
