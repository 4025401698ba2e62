"""What every client command shares: where the API is, the token, and clear errors.

`--url` (MYAPP_URL, default http://127.0.0.1:12000) and `--token` (MYAPP_TOKEN) are options of
each client command. The calls go through myapp.client (the same client Python users have),
which raises ApiError; the `myapp` group turns that into one line on stderr and exit 1
(`CliError`), so nothing below the command line ends the process itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NoReturn

import click
import httpx

from myapp.client import DEFAULT_URL, ApiError, Client

__all__ = ["DEFAULT_URL", "ApiSession", "CliError", "api_options", "describe_error", "fail"]


class CliError(click.ClickException):
    """One line on stderr, `myapp: <message>`, and the exit code (1 unless given)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"myapp: {self.format_message()}", err=True)


def from_api_error(exc: ApiError) -> CliError:
    """The one place an API error becomes what the command line prints."""
    return CliError(str(exc))


class ApiSession:
    """The CLI's handle on the API: a myapp.client.Client, plus its httpx client for the
    commands that stream with their own progress and messages."""

    def __init__(self, url: str, token: str | None, timeout_s: float = 60.0) -> None:
        self.api = Client(url, token, timeout_s=timeout_s)
        self.url = self.api.url
        self.client: httpx.Client = self.api.http

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.api.request(method, path, **kwargs)

    def close(self) -> None:
        self.api.close()


def describe_error(response: httpx.Response) -> str:
    return str(ApiError.from_response(response))


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


def api_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --url and --token, and pass an ApiSession as `api`."""

    @click.option(
        "--url",
        envvar="MYAPP_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="The backend's base URL (or MYAPP_URL).",
    )
    @click.option(
        "--token",
        envvar="MYAPP_TOKEN",
        default=None,
        help="API token (or MYAPP_TOKEN); not needed in open mode.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, url: str, token: str | None, **kwargs: Any) -> Any:
        api = ApiSession(url, token)
        try:
            return func(*args, api=api, **kwargs)
        finally:
            api.close()

    return wrapper
