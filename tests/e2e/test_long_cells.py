"""A 20,000-character value in every table of the pages: the dataset's table page, a saved
query's results, the SQL page, a dashboard's table tile and a share link's page. Each shows the
start of it, cut, with a visible "(cut, 20,000 characters)" marker; rows stay a few lines tall;
the whole value is one click away; the API and exports keep it whole. The cut is one rule, in
cells.py and cells.js alike."""

from __future__ import annotations

import csv
import io

import httpx
import pytest
from playwright.sync_api import expect

from myapp.frontend import cells
from tests.e2e.conftest import assert_accessible
from tests.support.servers import ServerProcess

DATASET = "long_cells"
# Words, so it wraps like prose would; numbered, so a cut in the wrong place shows.
LONG = "".join(f"w{n:05d} " for n in range(20_000 // 7))[:19_999] + "!"
LINES = "\n".join(f"line {n}" for n in range(40))
MARKER = "(cut, 20,000 characters)"
# A row that holds a cut cell is at most this tall: about ten lines of text and the marker.
MAX_ROW_PX = 360


def _csv() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "note", "city"])
    writer.writerow([1, LONG, "Oslo"])
    writer.writerow([2, "short", "Lima"])
    writer.writerow([3, LINES, "Rome"])
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess("all", tmp_path_factory.mktemp("e2e-long-cells")).start()
    api = httpx.Client(base_url=proc.url + "/api", timeout=30)
    assert api.put(f"/datasets/{DATASET}", content=_csv()).status_code == 201
    saved = api.post(
        "/queries",
        json={
            "slug": "long-cells",
            "title": "Long cells",
            "sql": f"SELECT id, note, city FROM {DATASET} ORDER BY id",
        },
    )
    assert saved.status_code == 201, saved.text
    board = api.post(
        "/dashboards",
        json={
            "slug": "long-board",
            "title": "Long board",
            "tiles": [{"id": "t1", "type": "table", "query": "long-cells", "width": 12}],
        },
    )
    assert board.status_code == 201, board.text
    share = api.post("/shares", json={"kind": "dashboard", "target": "long-board", "name": "long"})
    assert share.status_code == 201, share.text
    proc.share_path = share.json()["path"]  # type: ignore[attr-defined]
    api.close()
    yield proc
    proc.stop()


def box_limit(page) -> float:
    """16rem (.cell-full's max-height) in this page's pixels (Pico scales the root font)."""
    return 16 * page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)") + 2


def assert_cut_and_bounded(table) -> None:
    """The first row's note is cut with the marker shown, and its row stays short."""
    row = table.locator("tbody tr").first
    note = row.locator("td").nth(1)
    expect(note.locator(".cell-marker")).to_be_visible()
    expect(note.locator(".cell-marker")).to_contain_text(MARKER)
    assert row.bounding_box()["height"] <= MAX_ROW_PX, row.bounding_box()
    shown = note.locator(".cell-shown").inner_text()
    assert shown.startswith("w00000 w00001") and shown.endswith("…")
    assert len(shown) <= cells.CUT_CHARS + 1
    # The 40-line value is cut at ten lines.
    lines = table.locator("tbody tr").nth(2)
    assert lines.bounding_box()["height"] <= MAX_ROW_PX
    expect(lines.locator(".cell-marker")).to_contain_text("(cut, ")


def open_details_and_read(page, table) -> None:
    note = table.locator("tbody tr").first.locator("td").nth(1)
    note.locator("summary").click()
    full = note.locator(".cell-full")
    expect(full).to_be_visible()
    assert full.evaluate("e => e.textContent") == LONG
    # Opened, the whole value scrolls inside a box of bounded height.
    assert full.bounding_box()["height"] <= box_limit(page)
    assert table.locator("tbody tr").first.bounding_box()["height"] <= MAX_ROW_PX + box_limit(page)


def test_dataset_table_cuts_and_links_to_the_whole_row(page, server):
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(server.url + f"/datasets/{DATASET}?sort=-city")
    table = page.get_by_test_id("data-table")
    # Sorted by city descending: Rome (the 40 lines), Oslo (the long note), Lima.
    expect(table.locator("tbody tr").nth(1).locator(".cell-marker")).to_contain_text(MARKER)
    row = table.locator("tbody tr").nth(1)
    assert row.bounding_box()["height"] <= MAX_ROW_PX
    assert table.locator("tbody tr").first.bounding_box()["height"] <= MAX_ROW_PX
    # The page does not carry the whole value.
    assert LONG not in page.content()
    assert_accessible(page)
    row.locator(".cell-marker").click()
    page.wait_for_url("**/datasets/long_cells/row?*")
    values = page.get_by_test_id("row-value")
    assert values.nth(1).evaluate("e => e.textContent") == LONG
    assert values.nth(2).inner_text() == "Oslo"
    assert values.nth(1).bounding_box()["height"] <= box_limit(page)


def test_saved_query_results_cut_with_the_whole_value_at_hand(page, server):
    page.goto(server.url + "/queries/long-cells")
    table = page.get_by_test_id("results")
    assert_cut_and_bounded(table)
    assert_accessible(page)
    open_details_and_read(page, table)


def test_sql_page_results_cut_with_the_whole_value_at_hand(page, server):
    page.goto(server.url + "/sql")
    page.locator(".CodeMirror").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(f"SELECT id, note, city FROM {DATASET} ORDER BY id")
    page.keyboard.press("Control+Enter")
    table = page.get_by_test_id("results")
    expect(table.locator("tbody tr")).to_have_count(3)
    assert_cut_and_bounded(table)
    open_details_and_read(page, table)


def test_dashboard_tile_and_share_page_cut(browser, page, server):
    page.goto(server.url + "/dashboards/long-board")
    table = page.get_by_test_id("tile-t1-table")
    expect(table.locator("tbody tr")).to_have_count(3)
    assert_cut_and_bounded(table)
    open_details_and_read(page, table)
    visitor_context = browser.new_context()
    try:
        visitor = visitor_context.new_page()
        visitor.goto(server.url + server.share_path)
        shared = visitor.get_by_test_id("tile-t1-table")
        expect(shared.locator("tbody tr")).to_have_count(3)
        assert_cut_and_bounded(shared)
    finally:
        visitor_context.close()


def test_the_api_and_exports_keep_the_whole_value(server):
    rows = httpx.get(f"{server.url}/api/datasets/{DATASET}/rows", params={"sort": "id"}).json()
    assert rows["rows"][0][1] == LONG
    export = httpx.get(f"{server.url}/api/datasets/{DATASET}/export", params={"format": "csv"})
    assert LONG in export.text


def test_one_cut_rule_in_python_and_javascript(page, server):
    samples = [
        LONG,
        LINES,
        "x" * 500,
        "x" * 501,
        "😀" * 500,  # 500 characters, 1,000 UTF-16 units: whole
        "😀" * 501,
        "a😀" * 400,
        "\n" * 10,
        "a\n" * 10,
        "a\n" * 10 + "b",
        "é\u0301" * 300,
        "short",
    ]
    page.goto(server.url + "/sql")
    in_browser = page.evaluate(
        "samples => samples.map(t => { const c = window.MyappCells.cut(t);"
        " return c ? [c.shown, c.total, window.MyappCells.marker(c.total)] : null; })",
        samples,
    )
    on_server = [
        [*parts, cells.marker(parts[1])] if (parts := cells.cut(text)) else None for text in samples
    ]
    assert in_browser == on_server
    assert on_server[0] == [LONG[:500], 20_000, MARKER]
    assert on_server[2] is None and on_server[3] is not None
    assert on_server[4] is None and on_server[5][1] == 501
    assert on_server[1][0] == "\n".join(f"line {n}" for n in range(10))
    assert on_server[7] is None and on_server[8] is None and on_server[9] is not None
