"""The session cookie never carries a token that works against /api.

Real processes: a backend with credentials and a frontend. A copied cookie is worth a browser
session at most (ended by sign-out like any other), never a bearer token for the API.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from tests.support.accounts import PASSWORD, Accounts, bearer, secured_env
from tests.support.servers import ServerProcess

SECRET_KEY = "cookie-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> Iterator[ServerProcess]:
    proc = ServerProcess("backend", tmp_path_factory.mktemp("cookie-backend"), env=secured_env())
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def web(tmp_path_factory, backend) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        "frontend",
        tmp_path_factory.mktemp("cookie-frontend"),
        env={"MYAPP_BACKEND_URL": backend.url, "MYAPP_SECRET_KEY": SECRET_KEY},
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def accounts(backend) -> Iterator[Accounts]:
    helper = Accounts(backend)
    yield helper
    helper.close()


def signed_in_cookie(web: ServerProcess, username: str) -> str:
    with httpx.Client(base_url=web.url, headers={"Origin": web.url}, timeout=30.0) as client:
        done = client.post("/login", data={"username": username, "password": PASSWORD})
        assert done.status_code == 302, done.text
        return client.cookies["myapp_session"]


def readable_forms(value: str) -> list[bytes]:
    """What anyone holding the cookie can read from it without the server's key."""
    forms = [value.encode()]
    for part in re.split(r"[.]", value.lstrip(".")):
        try:
            forms.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except ValueError:
            continue
    return forms


def test_the_cookie_holds_no_api_token(web, backend, accounts):
    name = accounts.user("editor", prefix="cookie")
    cookie = signed_in_cookie(web, name)
    assert not any(b"myapp_" in form for form in readable_forms(cookie))
    with httpx.Client(base_url=backend.url, timeout=30.0) as api:
        for candidate in [cookie, *(f.decode("latin-1") for f in readable_forms(cookie))]:
            if not candidate.strip() or not candidate.isprintable():
                continue
            answer = api.get("/api/auth/me", headers=bearer(candidate))
            assert answer.status_code == 401, candidate[:40]
            assert answer.json()["error"]["code"] in ("invalid_token", "invalid_authorization")
    # The cookie still is a browser session, and signing out still ends it at once.
    with httpx.Client(base_url=web.url, headers={"Origin": web.url}, timeout=30.0) as client:
        client.cookies.set("myapp_session", cookie)
        assert client.get("/account").status_code == 200
        assert client.post("/logout").status_code == 302
    with httpx.Client(base_url=web.url, timeout=30.0) as replay:
        replay.cookies.set("myapp_session", cookie)
        assert replay.get("/account").status_code == 302


def test_a_cookie_of_the_signed_only_format_asks_to_sign_in_again(web, accounts):
    name = accounts.user("viewer", prefix="oldcookie")
    token = accounts.login(name).json()["token"]
    old = URLSafeTimedSerializer(SECRET_KEY, salt="myapp.session").dumps({"t": token})
    with httpx.Client(base_url=web.url, timeout=30.0) as client:
        client.cookies.set("myapp_session", old)
        page = client.get("/account")
        assert page.status_code == 302 and page.headers["Location"].startswith("/login")
        assert "myapp_session=" in page.headers.get("set-cookie", ""), "the cookie is cleared"
