"""What every client command shares: where the API is, the token, and clear errors.

`--url` (MYAPP_URL, default http://127.0.0.1:12000) and `--token` (MYAPP_TOKEN) are options of
each client command; API errors print the server's message on one line and exit 1.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click
import httpx

DEFAULT_URL = "http://127.0.0.1:12000"


class ApiSession:
    def __init__(self, url: str, token: str | None, timeout_s: float = 60.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=5.0)
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            fail(f"cannot reach the backend at {self.url}: {exc}")
        if response.status_code >= 400:
            fail(describe_error(response))
        return response

    def close(self) -> None:
        self.client.close()


def describe_error(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['message']} ({response.status_code} {error['code']})"
    except (ValueError, KeyError, TypeError):
        return f"the backend answered {response.status_code}"


def fail(message: str, code: int = 1) -> None:
    click.echo(f"myapp: {message}", err=True)
    sys.exit(code)


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
