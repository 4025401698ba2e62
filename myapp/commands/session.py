"""What every client command shares: where the API is, the token, and the calls to it.

`--url` (MYAPP_URL, default http://127.0.0.1:12000) and `--token` (MYAPP_TOKEN) are options of
each client command. The calls go through myapp.client (the same client Python users have),
which raises ApiError; the `myapp` group turns that into one line on stderr and exit 1
(errors.from_api_error), so nothing below the command line ends the process itself.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import click
import httpx

from myapp.client import DEFAULT_URL, Client

__all__ = ["DEFAULT_URL", "QUERY_TIMEOUT", "ApiSession", "api_options", "connection_options"]

# A query may work up to the server's time limit (MYAPP_QUERY_TIMEOUT_MS, 30 s by default, and
# configurable) before its first byte; wait as long as nginx in front does (proxy_read_timeout).
READ_TIMEOUT_S = 300.0
CONNECT_TIMEOUT_S = 5.0
QUERY_TIMEOUT = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)


class ApiSession:
    """The CLI's handle on the API: a myapp.client.Client, plus its httpx client for the
    commands that stream with their own progress and messages."""

    def __init__(self, url: str, token: str | None, timeout_s: float = 60.0) -> None:
        self.api = Client(url, token, timeout_s=timeout_s)
        self.url = self.api.url
        self.client: httpx.Client = self.api.http

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; an error answer raises ApiError."""
        return self.api.request(method, path, **kwargs)

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A download that may take a query's time to begin; an error answer raises ApiError."""
        with self.api.stream(method, path, timeout=QUERY_TIMEOUT, **kwargs) as response:
            yield response

    def post_for_result(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a query body and return its result, waiting as long as a query may run."""
        return self.api.request("POST", path, json=body, timeout=QUERY_TIMEOUT).json()

    def close(self) -> None:
        self.api.close()


def connection_options(url_help: str, token_help: str) -> Callable[[Any], Any]:
    """--url (MYAPP_URL) and --token (MYAPP_TOKEN), with the help a command group gives them."""

    def decorate(func: Any) -> Any:
        func = click.option("--token", envvar="MYAPP_TOKEN", default=None, help=token_help)(func)
        return click.option(
            "--url", envvar="MYAPP_URL", default=DEFAULT_URL, show_default=True, help=url_help
        )(func)

    return decorate


def api_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --url and --token, and pass an ApiSession as `api`."""

    @connection_options(
        "The backend's base URL (or MYAPP_URL).",
        "API token (or MYAPP_TOKEN); not needed in open mode.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, url: str, token: str | None, **kwargs: Any) -> Any:
        api = ApiSession(url, token)
        try:
            return func(*args, api=api, **kwargs)
        finally:
            api.close()

    return wrapper
