"""The SQL page in a real browser: write → run → chart → save → export, errors marked in the
editor, progress and cancel, completion from the datasets, session history, and the same page
through the separate frontend role."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from playwright.sync_api import expect

from tests.backend.test_query_support import make_workspace
from tests.e2e.conftest import assert_accessible
from tests.support.servers import ServerProcess

CITIES_CSV = "city,country,population\nOslo,NO,709000\nLima,PE,10092000\nFaro,PT,67000\n"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Role all on a database holding `sales`, plus `cities` uploaded through the API (so the
    datasets list, and with it the sidebar and completion, knows it)."""
    root = tmp_path_factory.mktemp("sqlpage")
    data = make_workspace(root)
    server = ServerProcess("all", root, env={"MYAPP_DATA_DIR": str(data)}).start()
    response = httpx.put(
        server.url + "/api/datasets/towns",
        params={"format": "csv", "filename": "towns.csv"},
        content=CITIES_CSV.encode(),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    yield server
    server.stop()  # SIGKILL would leave the database to the next start's recovery


def set_sql(page, sql: str) -> None:
    page.locator(".CodeMirror").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    # insertText types the text as one edit, without the editor's auto-indentation.
    page.keyboard.insert_text(sql)


def test_write_run_chart_save_export(page, workspace, tmp_path):
    page.goto(workspace.url + "/sql")
    assert page.title() == "SQL · myapp"
    set_sql(
        page,
        "SELECT city, sum(amount) AS total, count(*) AS n\nFROM sales\n"
        "WHERE amount >= $min_amount\nGROUP BY city\nORDER BY total DESC",
    )
    # The parameter panel follows the SQL.
    page.get_by_test_id("param-type-min_amount").select_option("number")
    page.get_by_test_id("param-min_amount").fill("90")
    page.locator(".CodeMirror").click()
    page.keyboard.press("Control+Enter")

    table = page.get_by_test_id("results")
    expect(table.locator("tbody tr")).to_have_count(5)
    headers = table.locator("thead th").all_inner_texts()
    assert [h.split("\n")[0] for h in headers] == ["city", "total", "n"]
    assert [h.split("\n")[-1] for h in headers] == ["VARCHAR", "DOUBLE", "BIGINT"]
    first = table.locator("tbody tr").first.locator("td").all_inner_texts()
    assert first == ["Faro", "48,250", "500"]  # amounts 94 and 99 of 5000 Faro rows, 250 each
    expect(page.get_by_test_id("run-status")).to_contain_text("5 rows in")

    # Chart: suggested from the types (text x, number y), drawn by Chart.js from DuckDB's data.
    page.get_by_test_id("chart-panel").locator("summary").click()
    expect(page.locator("#chart-note")).to_contain_text("5 points")
    assert page.get_by_test_id("chart-type").input_value() == "bar"
    assert page.get_by_test_id("chart-x").input_value() == "city"
    page.get_by_test_id("chart-y").get_by_label("n").uncheck()
    page.get_by_test_id("chart-type").select_option("pie")
    page.get_by_test_id("draw-chart").click()
    expect(page.get_by_test_id("chart-canvas")).to_have_attribute(
        "aria-label", "Pie chart of total by city (5 points)"
    )
    png = page.get_by_test_id("chart-png")
    expect(png).to_be_visible()
    assert png.get_attribute("href").startswith("data:image/png;base64,")
    assert_accessible(page)

    # Save with the chart; the page links to the saved query.
    page.get_by_test_id("save").click()
    page.get_by_test_id("save-title").fill("Browser flow: totals by city")
    expect(page.get_by_test_id("save-chart")).to_be_checked()
    page.get_by_test_id("save-submit").click()
    link = page.get_by_test_id("saved-link")
    expect(link).to_have_text("Browser flow: totals by city")
    expect(page.get_by_test_id("save-status")).to_contain_text("(version 1)")

    # Export the whole result from the SQL page.
    with page.expect_download() as download:
        page.get_by_test_id("export-csv").click()
    assert download.value.suggested_filename == "browser-flow-totals-by-city.csv"
    rows = list(csv.reader(io.StringIO(download.value.path().read_text())))
    assert rows[0] == ["city", "total", "n"] and len(rows) == 6

    # The saved query's page: results, the saved pie chart, and its own export.
    link.click()
    expect(page.get_by_test_id("query-title")).to_have_text("Browser flow: totals by city")
    expect(page.get_by_test_id("param-min_amount")).to_have_value("90.0")
    expect(page.get_by_test_id("results").locator("tbody tr")).to_have_count(5)
    expect(page.locator("#chart-note")).to_contain_text("5 points")
    expect(page.get_by_test_id("chart-canvas")).to_have_attribute(
        "aria-label", "Pie chart of total by city (5 points)"
    )
    with page.expect_download() as download:
        page.get_by_test_id("export-json").click()
    assert download.value.suggested_filename == "browser-flow-totals-by-city.json"
    assert '"city":"Faro"' in download.value.path().read_text().replace(" ", "")
    assert_accessible(page)


def test_sql_errors_are_shown_and_marked_in_the_editor(page, workspace):
    page.goto(workspace.url + "/sql")
    set_sql(page, "SELECT id,\n  nosuch\nFROM sales")
    page.get_by_test_id("run").click()
    error = page.get_by_test_id("sql-error")
    expect(error).to_contain_text('Referenced column "nosuch" not found')
    expect(error).to_contain_text("Line 2, column 3.")
    expect(page.get_by_test_id("error-mark")).to_have_text("nosuch")
    error.get_by_role("button", name="Show in the editor").click()
    selected = page.evaluate("() => window.getSelection().toString()")
    assert selected in ("", "nosuch")  # CodeMirror keeps its own selection
    # Editing clears the mark; a refused statement is explained.
    set_sql(page, "DROP TABLE sales")
    expect(page.get_by_test_id("error-mark")).to_have_count(0)
    page.get_by_test_id("run").click()
    expect(error).to_contain_text("Only SELECT queries can run here")
    assert_accessible(page)


def test_progress_and_cancel(page, workspace):
    page.goto(workspace.url + "/sql")
    set_sql(page, "SELECT count(*) FROM sales a, sales b WHERE (a.id * b.id) % 1000003 = 7")
    page.get_by_test_id("run").click()
    cancel = page.get_by_test_id("cancel")
    expect(cancel).to_be_visible()
    expect(page.get_by_test_id("run-status")).to_contain_text("%", timeout=10_000)
    cancel.click()
    expect(page.get_by_test_id("run-status")).to_contain_text("Cancelled after")
    expect(page.get_by_test_id("sql-error")).to_contain_text("The query was cancelled.")
    expect(cancel).to_be_hidden()
    # The page is ready for the next query.
    set_sql(page, "SELECT 42 AS answer")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("results").locator("tbody td")).to_have_text("42")


def test_schema_sidebar_and_completion(page, workspace):
    page.goto(workspace.url + "/sql")
    schema = page.get_by_test_id("schema")
    expect(schema).to_contain_text("towns")
    schema.get_by_text("towns").click()
    expect(schema).to_contain_text("population")
    set_sql(page, "SELECT  FROM towns")
    page.keyboard.press("Home")
    for _ in range(7):
        page.keyboard.press("ArrowRight")
    schema.get_by_role("button", name="population").click()
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("results").locator("tbody tr")).to_have_count(3)

    set_sql(page, "SELECT * FROM tow")
    page.keyboard.press("Control+Space")
    hints = page.locator(".CodeMirror-hints li")
    expect(hints.first).to_be_visible()
    assert "towns" in hints.all_inner_texts()
    page.keyboard.press("Enter")
    set_text = page.locator(".CodeMirror-code").inner_text()
    assert "FROM towns" in set_text
    page.keyboard.insert_text(" WHERE towns")
    page.keyboard.type(".")
    expect(hints.first).to_be_visible()
    assert "towns.country" in hints.all_inner_texts() or "country" in hints.all_inner_texts()


def test_history_of_the_session_survives_a_reload(page, workspace):
    page.goto(workspace.url + "/sql")
    for sql in ("SELECT 1 AS one", "SELECT 2 AS two"):
        set_sql(page, sql)
        page.get_by_test_id("run").click()
        expect(page.get_by_test_id("run-status")).to_contain_text("1 row in")
    page.reload()
    history = page.get_by_test_id("history")
    expect(history.locator("li")).to_have_count(2)
    assert history.locator("button").all_inner_texts() == ["SELECT 2 AS two", "SELECT 1 AS one"]
    history.locator("button").nth(1).click()
    assert "SELECT 1 AS one" in page.locator(".CodeMirror-code").inner_text()


def test_sql_page_through_the_frontend_role(page, start_server):
    """The separate frontend, on a backend without any dataset: the page still works."""
    backend = start_server("backend")
    web_server = start_server("frontend", env={"MYAPP_BACKEND_URL": backend.url})
    page.goto(web_server.url + "/sql")
    expect(page.get_by_test_id("schema-empty")).to_be_visible()
    set_sql(page, "SELECT range AS n, range * 2.5 AS value FROM range(4)")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("results").locator("tbody tr")).to_have_count(4)
    page.get_by_test_id("chart-panel").locator("summary").click()
    expect(page.locator("#chart-note")).to_contain_text("4 points")
    assert page.get_by_test_id("chart-type").input_value() == "scatter"
    with page.expect_download() as download:
        page.get_by_test_id("export-tsv").click()
    assert download.value.suggested_filename == "query.tsv"
    assert download.value.path().read_text().splitlines() == [
        "n\tvalue",
        "0\t0.0",
        "1\t2.5",
        "2\t5.0",
        "3\t7.5",
    ]
    assert_accessible(page)
    # SIGKILL (the fixture's clean-up) would orphan the gunicorn workers.
    web_server.stop()
    backend.stop()
