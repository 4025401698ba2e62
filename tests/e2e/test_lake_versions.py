"""The dataset's versions in a browser, in the lake mode: listed from the dataset page, an
older one browsed, then restored by an editor."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import assert_accessible

# The lake tests' fixtures (a private PostgreSQL cluster, DuckDB 1.4.4, lake backends).
from tests.lake.conftest import catalog, lake_backends, lake_python, postgres_cluster  # noqa: F401
from tests.support.accounts import ADMIN_HEADERS, PASSWORD, Accounts
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.lake


def test_versions_are_listed_browsed_and_restored_in_the_browser(page, request, tmp_path):
    backend = request.getfixturevalue("lake_backends").start()
    accounts = Accounts(backend)
    try:
        editor = accounts.user("editor", "browser")
    finally:
        accounts.close()
    url = f"{backend.url}/api/datasets/sales"
    made = httpx.put(url, headers=ADMIN_HEADERS, content=b"id,city\n1,Oslo\n2,Bergen\n")
    assert made.status_code == 201, made.text
    replaced = httpx.put(
        url, headers=ADMIN_HEADERS, params={"mode": "replace"}, content=b"id,city\n3,Tromso\n"
    )
    assert replaced.status_code == 201, replaced.text
    first = made.json()["dataset"]["version"]

    web = ServerProcess(
        "frontend",
        tmp_path / "frontend",
        env={"MYAPP_BACKEND_URL": backend.url, "MYAPP_SECRET_KEY": "k" * 32},
    ).start()
    try:
        page.goto(web.url + "/login")
        page.get_by_label("Username").fill(editor)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()

        page.goto(web.url + "/datasets/sales")
        page.get_by_test_id("versions-link").click()
        page.wait_for_url("**/datasets/sales/versions")
        rows = page.get_by_test_id("versions").locator("tbody tr")
        assert rows.count() == 2
        assert "(current)" in rows.nth(0).inner_text() and "replaced" in rows.nth(0).inner_text()
        assert_accessible(page)

        page.get_by_test_id(f"browse-{first}").click()
        page.wait_for_load_state()
        assert page.get_by_test_id("old-version").is_visible()
        body = page.locator("main").inner_text()
        assert "Oslo" in body and "Bergen" in body and "Tromso" not in body

        page.goto(web.url + "/datasets/sales/versions")
        page.get_by_test_id(f"restore-{first}").click()
        page.wait_for_load_state()
        assert "is the current data again" in page.locator("body").inner_text()
        assert "restored" in page.get_by_test_id("versions").inner_text()
        page.goto(web.url + "/datasets/sales")
        current = page.locator("main").inner_text()
        assert "Oslo" in current and "Tromso" not in current
    finally:
        web.kill()
