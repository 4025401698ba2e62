"""One blueprint per page group."""

from __future__ import annotations

from flask import current_app

from ..api_client import ApiClient


def api() -> ApiClient:
    """The process's ApiClient; it reads the request id and the caller's token from flask.g."""
    return current_app.extensions["myapp.api"]
