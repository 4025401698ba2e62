"""Helpers for tests of accounts and tokens against real servers with credentials."""

from __future__ import annotations

import itertools
import os
from typing import Any

import httpx

from tests.support.servers import ServerProcess

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PASSWORD = "correct-horse-battery"

_counter = itertools.count(1)


def unique(prefix: str) -> str:
    """A username of its own per call (tests share servers)."""
    return f"{prefix}{os.getpid()}n{next(_counter)}".lower()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def secured_env(**extra: str) -> dict[str, str]:
    """A server that is not in open mode: it has an admin token."""
    return {"MYAPP_ADMIN_TOKEN": ADMIN_TOKEN, **extra}


class Accounts:
    """Makes accounts and tokens on a server through its API, as an admin would."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.url, timeout=30.0)

    def close(self) -> None:
        self.client.close()

    def user(self, role: str, prefix: str | None = None, password: str = PASSWORD) -> str:
        name = unique(prefix or role)
        response = self.client.post(
            "/api/users",
            headers=ADMIN_HEADERS,
            json={"username": name, "password": password, "role": role},
        )
        assert response.status_code == 201, response.text
        return name

    def login(
        self, username: str, password: str = PASSWORD, ip: str | None = None
    ) -> httpx.Response:
        headers = {"X-Forwarded-For": ip} if ip else {}
        return self.client.post(
            "/api/auth/login", json={"username": username, "password": password}, headers=headers
        )

    def session(self, username: str, password: str = PASSWORD) -> str:
        response = self.login(username, password)
        assert response.status_code == 200, response.text
        return response.json()["token"]

    def token(
        self, username: str, scope: str | None = None, days: int | None = None
    ) -> dict[str, Any]:
        body = {"name": "test", "scope": scope or "viewer", "expires_in_days": days}
        response = self.client.post(
            "/api/tokens", headers=ADMIN_HEADERS, json={**body, "username": username}
        )
        assert response.status_code == 201, response.text
        return response.json()

    def user_token(self, role: str, scope: str | None = None) -> str:
        """A fresh account of `role` and an API token of `scope` (default: the role)."""
        return self.token(self.user(role), scope or role)["token"]
