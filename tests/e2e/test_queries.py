"""Saved queries in a real browser: the form built from typed parameters, a shareable address,
versions, editing in the SQL editor, deleting."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.e2e.conftest import assert_accessible

SQL = (
    "SELECT range AS n, range * $factor AS scaled, $label AS label, $since AS since\n"
    "FROM range(10) WHERE range < $below AND ($odd_only = false OR range % 2 = 1)"
)
PARAMETERS = [
    {"name": "factor", "type": "number", "default": 1.5, "label": "Factor"},
    {"name": "label", "type": "text", "default": "plain"},
    {"name": "since", "type": "date", "default": "2024-01-31"},
    {"name": "below", "type": "integer"},
    {"name": "odd_only", "type": "boolean", "default": False},
]


def save(server, title: str, **fields) -> dict:
    response = httpx.post(
        server.url + "/api/queries",
        json={"title": title, "sql": SQL, "parameters": PARAMETERS, **fields},
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_parameter_form_runs_and_gives_a_shareable_address(page, all_server):
    saved = save(all_server, "E2E parameter form")
    page.goto(f"{all_server.url}/queries/{saved['slug']}")
    # A required parameter without default: the form is shown, nothing is run yet.
    expect(page.get_by_test_id("results")).to_have_count(0)
    assert page.get_by_test_id("param-factor").get_attribute("type") == "number"
    assert page.get_by_test_id("param-since").get_attribute("type") == "date"
    assert page.get_by_test_id("param-below").get_attribute("step") == "1"
    expect(page.get_by_test_id("param-factor")).to_have_value("1.5")
    expect(page.get_by_label("Factor")).to_have_value("1.5")
    assert_accessible(page)

    page.get_by_test_id("param-below").fill("6")
    page.get_by_test_id("param-odd_only").select_option("true")
    page.get_by_test_id("param-label").fill("odd ones")
    page.get_by_test_id("run-saved").click()
    rows = page.get_by_test_id("results").locator("tbody tr")
    expect(rows).to_have_count(3)
    assert rows.nth(1).locator("td").all_inner_texts() == ["3", "4.5", "odd ones", "2024-01-31"]
    headers = page.get_by_test_id("results").locator("thead th").all_inner_texts()
    assert [h.split("\n")[-1] for h in headers] == ["BIGINT", "DOUBLE", "VARCHAR", "DATE"]
    assert "below=6" in page.url and "odd_only=true" in page.url
    assert_accessible(page)

    # The address (and the share link) shows the same result to whoever opens it.
    shared = page.get_by_test_id("share-link").get_attribute("href")
    other = page.context.new_page()
    other.goto(shared)
    expect(other.get_by_test_id("results").locator("tbody tr")).to_have_count(3)
    other.close()

    # A bad value is explained next to the form, not as a crash.
    page.get_by_test_id("param-below").fill("")
    page.get_by_test_id("param-factor").fill("")
    page.goto(f"{all_server.url}/queries/{saved['slug']}?below=x&_run=1")
    expect(page.get_by_test_id("query-error")).to_contain_text("The parameter below is not valid")

    # Export with the same parameters.
    page.goto(f"{all_server.url}/queries/{saved['slug']}?below=3")
    with page.expect_download() as download:
        page.get_by_test_id("export-csv").click()
    assert download.value.suggested_filename == f"{saved['slug']}.csv"
    assert download.value.path().read_text().splitlines() == [
        "n,scaled,label,since",
        "0,0.0,plain,2024-01-31",
        "1,1.5,plain,2024-01-31",
        "2,3.0,plain,2024-01-31",
    ]


def test_edit_in_the_editor_makes_a_version_and_old_versions_stay(page, all_server):
    saved = save(
        all_server,
        "E2E versions",
        parameters=[{**p, "default": 4} if p["name"] == "below" else p for p in PARAMETERS],
        chart={"type": "line", "x": "n", "y": ["scaled"]},
    )
    slug = saved["slug"]
    page.goto(f"{all_server.url}/queries/{slug}")
    expect(page.get_by_test_id("results").locator("tbody tr")).to_have_count(4)  # auto-run
    expect(page.locator("#chart-note")).to_contain_text("4 points")

    page.get_by_test_id("edit-query").click()
    expect(page.locator("h1")).to_have_text("Edit “E2E versions”")
    assert "range * $factor" in page.locator(".CodeMirror-code").inner_text()
    page.locator(".CodeMirror").click()
    page.keyboard.press("Control+End")
    page.keyboard.insert_text("\nORDER BY n DESC")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("results").locator("tbody td").first).to_have_text("3")
    page.get_by_test_id("save").click()
    expect(page.get_by_test_id("save-title")).to_have_value("E2E versions")
    page.get_by_test_id("save-submit").click()
    expect(page.get_by_test_id("save-status")).to_contain_text("(version 2)")

    page.get_by_test_id("saved-link").click()
    expect(page.get_by_test_id("results").locator("tbody td").first).to_have_text("3")
    expect(page.locator("#chart-note")).to_contain_text("4 points")  # the chart was kept
    versions = page.get_by_test_id("versions")
    versions.locator("summary").click()
    versions.get_by_role("link", name="Version 1: E2E versions").click()
    expect(page.get_by_test_id("old-version")).to_be_visible()
    expect(page.get_by_test_id("results").locator("tbody td").first).to_have_text("0")
    expect(page.get_by_test_id("query-sql")).not_to_contain_text("ORDER BY")
    assert_accessible(page)


def test_list_search_and_delete(page, all_server):
    doomed = save(all_server, "E2E doomed query", description="to be deleted")
    page.goto(f"{all_server.url}/queries?q=doomed")
    listing = page.get_by_test_id("query-list")
    expect(listing.locator("tbody tr")).to_have_count(1)
    assert_accessible(page)
    listing.get_by_role("link", name="E2E doomed query").click()
    page.get_by_text("Delete…").click()
    page.get_by_test_id("delete-query").click()
    expect(page.get_by_role("status").first).to_contain_text("Deleted the saved query")
    assert page.url.endswith("/queries")
    assert httpx.get(f"{all_server.url}/api/queries/{doomed['slug']}").status_code == 404
    response = page.goto(f"{all_server.url}/queries/{doomed['slug']}")
    assert response is not None and response.status == 404
