"""Redirect targets a request names (`next`, `back`) stay on this site.

Real processes: a backend with credentials and a frontend, talked to over HTTP as a browser
would. Each hostile target must end at `/`, never at another host and never in a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.support.accounts import PASSWORD, Accounts, secured_env
from tests.support.servers import ServerProcess

SECRET_KEY = "redirect-test-key-0123456789abcdef"

# Each of these, read by some browser or proxy, leaves the site or breaks the Location header.
HOSTILE_TARGETS = [
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "/%09/evil.example",
    "/%0a/x",
    "/%0d/x",
    "/%0d%0aSet-Cookie:%20x=1",
    "/\\evil.example",
    "/%5Cevil.example",
    "/%5C%5Cevil.example",
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "/%252F%252Fevil.example",
    "/%25252F%25252Fevil.example",
    "//evil.example",
    "///evil.example",
    "/./\\evil.example",
    "https://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "evil.example",
    " //evil.example",
    "\x00/x",
    "/x\x7f",
    "/\u0085/evil.example",
]

LOCAL_TARGETS = [
    "/account",
    "/datasets/sales?sort=-amount&city__eq=Lyon",
    "/datasets/a%2Fb",
    "/datasets/sales?q=http://example.com/x",
    "/sql#editor",
]


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> Iterator[ServerProcess]:
    proc = ServerProcess("backend", tmp_path_factory.mktemp("redir-backend"), env=secured_env())
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def web(tmp_path_factory, backend) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        "frontend",
        tmp_path_factory.mktemp("redir-frontend"),
        env={"MYAPP_BACKEND_URL": backend.url, "MYAPP_SECRET_KEY": SECRET_KEY},
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def admin(backend) -> Iterator[str]:
    helper = Accounts(backend)
    yield helper.user("admin", prefix="redirect")
    helper.close()


def browser(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Origin": server.url}, timeout=30.0)


def lands_on_this_site(server: ServerProcess, location: str) -> bool:
    """Where a browser would go: resolved against the page, with tabs and newlines dropped."""
    cleaned = location.replace("\t", "").replace("\n", "").replace("\r", "").replace("\\", "/")
    target = urlsplit(urljoin(server.url + "/login", cleaned))
    return (target.scheme, target.netloc) == ("http", urlsplit(server.url).netloc)


@pytest.mark.parametrize("target", HOSTILE_TARGETS)
def test_sign_in_never_redirects_off_site(web, admin, target):
    with browser(web) as client:
        form = client.get("/login", params={"next": target})
        assert form.status_code == 200, form.text[:300]
        assert 'name="next" value="/"' in form.text
        done = client.post("/login", data={"username": admin, "password": PASSWORD, "next": target})
        assert done.status_code == 302, done.text[:300]
        assert done.headers["Location"] == "/"
        assert lands_on_this_site(web, done.headers["Location"])


@pytest.mark.parametrize("target", LOCAL_TARGETS)
def test_sign_in_returns_to_a_page_of_this_site(web, admin, target):
    with browser(web) as client:
        done = client.post("/login", data={"username": admin, "password": PASSWORD, "next": target})
        assert done.status_code == 302
        assert done.headers["Location"] == target


def test_the_login_page_takes_hostile_targets_from_the_address_bar(web):
    # As the address bar sends them: raw bytes in the query string, not form-encoded.
    with httpx.Client(base_url=web.url, timeout=30.0) as client:
        for query in ("next=/%09/evil.example", "next=/%0a/x", "next=/%0d/x", "next=%2F%5Cevil"):
            page = client.get("/login?" + query)
            assert page.status_code == 200, query
            assert 'name="next" value="/"' in page.text, query


def test_revoking_a_token_goes_back_only_to_this_site(web, backend, admin):
    with browser(web) as client:
        client.post("/login", data={"username": admin, "password": PASSWORD})
        for back, expected in (
            ("/\t/evil.example", "/"),
            ("/admin/tokens?x=1", "/admin/tokens?x=1"),
        ):
            created = client.post("/account/tokens", data={"name": "r", "scope": "viewer"})
            assert created.status_code == 303
            token = client.get(created.headers["Location"])
            assert token.status_code == 200
            listing = httpx.get(
                backend.url + "/api/tokens",
                headers={"Authorization": f"Bearer {client_token(token.text)}"},
            ).json()["tokens"]
            token_id = next(t["id"] for t in listing if t["name"] == "r")
            done = client.post(f"/admin/tokens/{token_id}/revoke", data={"name": "r", "back": back})
            assert done.status_code == 302
            assert done.headers["Location"] == expected


def client_token(page: str) -> str:
    return page.split('data-testid="new-token" readonly value="')[1].split('"')[0]
