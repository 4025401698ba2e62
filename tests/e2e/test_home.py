"""The home page in a real browser, on every entry point."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import assert_accessible


@pytest.mark.parametrize("entry", ["all", "frontend"])
def test_home_shows_backend_status_and_is_accessible(page, entry, all_server, web_server):
    server = all_server if entry == "all" else web_server
    page.goto(server.url + "/")
    assert page.get_by_test_id("backend-status").inner_text() == "ok"
    assert page.get_by_test_id("database-status").inner_text() == "ok"
    assert page.title() == "Home · myapp"
    assert_accessible(page)


def test_error_page_is_friendly(page, all_server):
    response = page.goto(all_server.url + "/no/such/page")
    assert response is not None and response.status == 404
    assert "There is no page at this address" in page.get_by_test_id("error-message").inner_text()
    assert_accessible(page)
