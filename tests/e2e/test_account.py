"""Accounts in a real browser: sign in, tokens shown once, revoke, sign out; an admin making a
viewer; every page free of Content-Security-Policy violations (the `page` fixture fails a test
on any console error, and a CSP violation is one)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.conftest import assert_accessible
from tests.support.accounts import ADMIN_HEADERS, bearer, secured_env

ADMIN_PASSWORD = "admin-browser-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.support.servers import ServerProcess

    proc = ServerProcess(
        "all",
        tmp_path_factory.mktemp("e2e-accounts"),
        env=secured_env(MYAPP_ADMIN_PASSWORD=ADMIN_PASSWORD),
    ).start()
    yield proc
    proc.stop()


def sign_in(page, server, username: str, password: str) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/login$"))


def test_sign_in_create_a_token_revoke_it_and_sign_out(page, server):
    page.goto(server.url + "/login")
    assert_accessible(page)
    sign_in(page, server, "admin", ADMIN_PASSWORD)
    page.get_by_test_id("user-menu").click()
    page.wait_for_url(re.compile(r"/account$"))
    assert page.get_by_test_id("account-username").inner_text() == "admin"
    assert page.get_by_test_id("no-tokens").is_visible()
    assert_accessible(page)

    page.get_by_label("Name").fill("browser report")
    page.get_by_label("Scope").select_option("editor")
    page.get_by_label("Expires after").select_option("30")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_test_id("new-token").input_value()
    assert secret.startswith("myapp_")
    assert "shown only this once" in page.content()
    assert_accessible(page)
    me = httpx.get(server.url + "/api/auth/me", headers=bearer(secret)).json()
    assert (me["user"], me["role"], me["via"]) == ("admin", "editor", "token")

    page.get_by_role("link", name="Back to your account").click()
    row = page.get_by_test_id("token-row")
    # count() does not wait for the account page to load; waiting for its row does.
    row.first.wait_for()
    assert row.count() == 1 and "browser report" in row.inner_text()
    assert secret not in page.content(), "the secret is never shown again"
    page.get_by_role("button", name="Revoke token browser report").click()
    assert "is revoked" in page.get_by_role("status").first.inner_text()
    assert page.get_by_test_id("no-tokens").is_visible()
    assert httpx.get(server.url + "/api/auth/me", headers=bearer(secret)).status_code == 401

    sign_out(page)
    assert "You are signed out." in page.content()
    page.goto(server.url + "/account")
    assert page.url.endswith("/login?next=/account")


def test_admin_creates_a_viewer_who_cannot_do_editor_things(page, server):
    sign_in(page, server, "admin", ADMIN_PASSWORD)
    page.get_by_role("link", name="Admin", exact=True).click()
    assert_accessible(page)
    form = page.get_by_role("form", name="New account")
    form.get_by_label("Username").fill("vera")
    form.get_by_label("Password").fill("vera-password-1")
    form.get_by_label("Role").select_option("viewer")
    form.get_by_role("button", name="Create account").click()
    assert "Account vera created with the viewer role." in page.content()
    assert "vera" in page.get_by_test_id("user-row").all_inner_texts()[-1]
    sign_out(page)

    sign_in(page, server, "vera", "vera-password-1")
    assert page.get_by_test_id("user-menu").inner_text() == "Account (vera)"
    assert page.get_by_role("link", name="Admin", exact=True).count() == 0
    page.goto(server.url + "/account")
    assert page.get_by_label("Scope").locator("option").all_inner_texts() == [
        "viewer: browse, query and export"
    ]
    page.get_by_label("Name").fill("vera's script")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_test_id("new-token").input_value()
    # An editor action with the viewer's token is refused by the API.
    refused = httpx.put(
        server.url + "/api/datasets/vera_try",
        headers=bearer(secret),
        content=b"a,b\n1,2\n",
        params={"format": "csv"},
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["detail"] == {"required_role": "editor", "role": "viewer"}
    response = page.goto(server.url + "/admin")
    assert response is not None and response.status == 403
    assert "needs the admin role" in page.get_by_test_id("error-message").inner_text()

    # An editor action in the pages: deleting a dataset is refused, and the data stays.
    uploaded = httpx.put(
        server.url + "/api/datasets/vera_keeps",
        headers=ADMIN_HEADERS,
        content=b"a,b\n1,2\n",
        params={"format": "csv"},
    )
    assert uploaded.status_code == 201, uploaded.text
    page.goto(server.url + "/datasets/vera_keeps/delete")
    page.get_by_label("to confirm").fill("vera_keeps")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Delete the dataset").click()
    assert posted.value.status == 403
    assert "needs the editor role" in page.get_by_test_id("error-message").inner_text()
    kept = httpx.get(server.url + "/api/datasets/vera_keeps", headers=ADMIN_HEADERS)
    assert kept.status_code == 200


def test_pages_show_no_policy_violations(page, server):
    """Every page reachable from the navigation, and the API docs, as a signed-in admin."""
    sign_in(page, server, "admin", ADMIN_PASSWORD)
    links = page.locator("header nav a").evaluate_all("els => els.map(e => e.href)")
    seen = set()
    for href in [
        *links,
        server.url + "/admin/tokens",
        server.url + "/admin/audit",
        server.url + "/logout",
        server.url + "/admin/users/admin",
    ]:
        if href in seen or not href.startswith(server.url):
            continue
        seen.add(href)
        response = page.goto(href)
        assert response is not None and response.status == 200, href
        assert response.headers["content-security-policy"]
    page.goto(server.url + "/api/docs")
    page.get_by_text("/api/auth/login").first.wait_for()
    errors = page.console_errors  # type: ignore[attr-defined]
    assert [e for e in errors if "Failed to load resource" not in e] == []


def test_open_mode_is_announced_on_every_page(page, all_server):
    page.goto(all_server.url + "/")
    banner = page.get_by_test_id("open-mode-banner")
    assert "Open mode" in banner.inner_text()
    page.get_by_role("link", name="Create an admin account").click()
    assert page.url.endswith("/admin")
    assert page.get_by_test_id("open-mode-banner").is_visible()
    assert_accessible(page)
