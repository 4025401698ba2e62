"""Dashboards and share links in a real browser, on a workspace with public read off: build a
dashboard from three saved queries with one shared parameter in the editor, watch every tile
follow the parameter, share it with a fixed value, open the link in a fresh anonymous context,
and revoke it."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import assert_accessible
from tests.support.accounts import ADMIN_HEADERS, PASSWORD, Accounts, secured_env
from tests.support.servers import ServerProcess

SALES = "city,amount,day\nOslo,10,2024-01-01\nOslo,20,2024-02-01\nLima,5,2024-01-15\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess("all", tmp_path_factory.mktemp("e2e-dash"), env=secured_env()).start()
    yield proc
    proc.stop()


def api(server, method: str, path: str, **kwargs) -> httpx.Response:
    response = httpx.request(method, server.url + "/api" + path, headers=ADMIN_HEADERS, **kwargs)
    assert response.status_code < 300, response.text
    return response


def seed(server) -> None:
    api(server, "PUT", "/datasets/e2e_sales", content=SALES)
    api(server, "PUT", "/datasets/e2e_secret", content="x\n1\n")
    for title, sql, name, chart in (
        (
            "E2E total",
            "SELECT sum(amount) AS total FROM e2e_sales WHERE city = $city",
            "city",
            None,
        ),
        (
            "E2E by day",
            "SELECT day, amount FROM e2e_sales WHERE city = $town ORDER BY day",
            "town",
            {"type": "bar", "x": "day", "y": ["amount"]},
        ),
        (
            "E2E rows",
            "SELECT city, amount FROM e2e_sales WHERE city = $c ORDER BY amount",
            "c",
            None,
        ),
    ):
        api(
            server,
            "POST",
            "/queries",
            json={
                "title": title,
                "sql": sql,
                "parameters": [{"name": name, "type": "text", "default": "Oslo"}],
                "chart": chart,
            },
        )


def sign_in(page, server, username: str) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def add_tile(page, row: int, kind: str, query: str, mapping: str, width: str) -> None:
    page.locator(f"#t-{row}-type").select_option(kind)
    page.locator(f"#t-{row}-query").select_option(label=query)
    page.locator(f"#t-{row}-mapping").fill(mapping)
    page.locator(f"#t-{row}-width").select_option(width)


def tiles_loaded(page, count: int) -> None:
    expect(page.locator(".tile[data-state]")).to_have_count(count)


def test_build_follow_share_and_revoke(browser, page, server):
    seed(server)
    accounts = Accounts(server)
    editor = accounts.user("editor")
    accounts.close()
    sign_in(page, server, editor)

    page.goto(server.url + "/dashboards")
    assert_accessible(page)
    page.get_by_test_id("new-dashboard-title").fill("E2E sales board")
    page.get_by_test_id("create-dashboard").click()
    page.wait_for_url(re.compile(r"/dashboards/e2e-sales-board/edit$"))
    page.locator("#p-0-name").fill("city")
    page.locator("#p-0-default").fill("Oslo")
    page.get_by_test_id("save-dashboard").click()
    page.wait_for_url(re.compile(r"/dashboards/e2e-sales-board$"))
    # Tiles one at a time, each through the empty row the editor always offers.
    for row, (kind, query, mapping, width) in enumerate(
        (
            ("number", "E2E total", "city=city", "4"),
            ("chart", "E2E by day", "town=city", "8"),
            ("table", "E2E rows", "c=city", "12"),
        )
    ):
        page.get_by_test_id("edit-dashboard").click()
        add_tile(page, row, kind, query, mapping, width)
        page.get_by_test_id("save-dashboard").click()
        page.wait_for_url(re.compile(r"/dashboards/e2e-sales-board$"))
    tiles_loaded(page, 3)
    expect(page.get_by_test_id("tile-t1-number")).to_have_text("30")
    expect(page.get_by_test_id("tile-t3-table").locator("tbody tr")).to_have_count(2)
    assert_accessible(page)

    # Reorder and resize: the table first, full width stays; the number becomes 6 wide.
    page.get_by_test_id("edit-dashboard").click()
    page.locator("#t-2-order").fill("0")
    page.locator("#t-0-width").select_option("6")
    page.get_by_test_id("save-dashboard").click()
    page.wait_for_url(re.compile(r"/dashboards/e2e-sales-board$"))
    ids = page.locator(".tile").evaluate_all("els => els.map(e => e.dataset.tileId)")
    assert ids == ["t3", "t1", "t2"]
    expect(page.get_by_test_id("tile-t1")).to_have_class(re.compile(r"tile-w6"))

    # Change the parameter: every tile follows, and the value is in the address.
    page.get_by_test_id("param-city").fill("Lima")
    page.get_by_test_id("apply-params").click()
    page.wait_for_url(re.compile(r"city=Lima"))
    tiles_loaded(page, 3)
    expect(page.get_by_test_id("tile-t1-number")).to_have_text("5")
    expect(page.get_by_test_id("tile-t3-table").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id("tile-t2-chart")).to_have_attribute("data-points", "1")
    # A second opening is served from the cache.
    page.reload()
    tiles_loaded(page, 3)
    expect(page.locator('.tile[data-state="cached"]')).to_have_count(3)
    page.get_by_test_id("refresh").click()
    expect(page.locator('.tile[data-state="loaded"]')).to_have_count(3)

    # A share link with the city fixed to Lima.
    page.get_by_test_id("share-links").locator("summary").click()
    page.get_by_test_id("share-name").fill("for the board")
    page.get_by_test_id("share-fixed").fill("city=Lima")
    page.get_by_test_id("create-share").click()
    url = page.get_by_test_id("share-url").input_value()
    assert re.search(r"/s/myapp_share_[\w-]{40,}$", url)
    token = url.rsplit("/", 1)[1]

    anonymous = browser.new_context()
    errors: list[str] = []
    visitor = anonymous.new_page()
    visitor.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    visitor.goto(url)
    expect(visitor.get_by_test_id("shared-title")).to_have_text("E2E sales board")
    expect(visitor.locator(".tile[data-state]")).to_have_count(3)
    expect(visitor.get_by_test_id("tile-t1-number")).to_have_text("5")
    expect(visitor.get_by_test_id("tile-t3-table").locator("tbody tr")).to_have_count(1)
    # No way to change the fixed value, and no navigation to the rest of the workspace.
    expect(visitor.get_by_test_id("param-city")).to_have_count(0)
    expect(visitor.locator("nav")).to_have_count(0)
    assert_accessible(visitor)
    assert not errors, errors
    # The link's credential against other data and SQL: refused.
    bearer = {"Authorization": f"Bearer {token}"}
    for method, path, body in (
        ("GET", "/api/datasets/e2e_secret/rows", None),
        ("POST", "/api/query", {"sql": "SELECT * FROM e2e_secret"}),
        ("GET", "/api/dashboards", None),
    ):
        answer = httpx.request(method, server.url + path, json=body, headers=bearer)
        assert answer.status_code in (403, 404), (path, answer.status_code)
    # Nor do the workspace's pages open for the anonymous visitor (public read is off).
    visitor.goto(server.url + "/datasets/e2e_secret")
    assert "/login" in visitor.url

    # The owner sees the link counted, and revokes it.
    page.get_by_test_id("share-back").click()
    expect(page.get_by_test_id("share-uses")).to_have_text("1")
    page.get_by_test_id("revoke-share").click()
    expect(page.get_by_test_id("share-row")).to_contain_text("revoked")
    visitor.goto(url)
    expect(visitor.get_by_test_id("share-refused")).to_contain_text("revoked")
    anonymous.close()


def test_home_page_shows_recent_work_and_the_favicon(page, server):
    seed_name = "e2e_home"
    api(server, "PUT", f"/datasets/{seed_name}", content="a\n1\n2\n")
    accounts = Accounts(server)
    editor = accounts.user("editor")
    accounts.close()
    sign_in(page, server, editor)
    page.goto(server.url + "/")
    expect(page.get_by_test_id("recent-datasets")).to_contain_text(seed_name)
    expect(page.locator("#dropzone")).to_be_visible()
    assert page.locator('link[rel="icon"]').get_attribute("href").endswith("favicon.svg")
    assert httpx.get(server.url + "/favicon.ico", follow_redirects=True).status_code == 200
    assert_accessible(page)


def test_an_empty_workspace_shows_the_first_run_guide(page, start_server):
    server = start_server("all")
    page.goto(server.url + "/")
    expect(page.get_by_test_id("first-run")).to_contain_text("Upload a file")
    assert_accessible(page)


def test_a_failing_tile_shows_its_own_error_and_a_query_link_page(browser, page, server):
    api(server, "PUT", "/datasets/e2e_fail", content=SALES)
    good = api(
        server,
        "POST",
        "/queries",
        json={
            "title": "E2E fail good",
            "sql": "SELECT city, sum(amount) AS total FROM e2e_fail GROUP BY city ORDER BY city",
            "chart": {"type": "bar", "x": "city", "y": ["total"]},
        },
    ).json()["slug"]
    doomed = api(
        server, "POST", "/queries", json={"title": "E2E fail doomed", "sql": "SELECT 1 AS one"}
    ).json()["slug"]
    board = api(
        server,
        "POST",
        "/dashboards",
        json={
            "title": "E2E failing tile",
            "tiles": [
                {"type": "table", "query": good},
                {"type": "number", "query": doomed},
                {"type": "text", "text": "See [the docs](https://example.com) <b>raw</b>"},
            ],
        },
    ).json()
    api(server, "DELETE", f"/queries/{doomed}")
    accounts = Accounts(server)
    editor = accounts.user("editor")
    accounts.close()
    sign_in(page, server, editor)
    page.goto(f"{server.url}/dashboards/{board['slug']}")
    expect(page.get_by_test_id("tile-t2-error")).to_contain_text("no saved query")
    expect(page.get_by_test_id("tile-t1-table").locator("tbody tr")).to_have_count(2)
    text = page.get_by_test_id("tile-t3")
    expect(text.locator("a")).to_have_attribute("href", "https://example.com")
    expect(text).to_contain_text("<b>raw</b>")
    assert_accessible(page)

    # A saved query's own share link: its result and chart, for an anonymous visitor.
    page.goto(f"{server.url}/queries/{good}")
    page.get_by_test_id("share-links").locator("summary").click()
    page.get_by_test_id("share-name").fill("query link")
    page.get_by_test_id("create-share").click()
    url = page.get_by_test_id("share-url").input_value()
    anonymous = browser.new_context()
    visitor = anonymous.new_page()
    errors: list[str] = []
    visitor.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    visitor.goto(url)
    expect(visitor.get_by_test_id("shared-title")).to_have_text("E2E fail good")
    expect(visitor.get_by_test_id("tile-rows-table").locator("tbody tr")).to_have_count(2)
    expect(visitor.get_by_test_id("tile-chart-chart")).to_have_attribute("data-points", "2")
    assert_accessible(visitor)
    assert not errors, errors
    visitor.get_by_test_id("tile-rows-export").locator("summary").click()
    with visitor.expect_download() as download:
        visitor.get_by_test_id("tile-rows-export-csv").click()
    assert download.value.path().read_text().splitlines()[0] == "city,total"
    # The same formats as the query pages' menus, Excel among them (the menu stays open).
    with visitor.expect_download() as download:
        visitor.get_by_test_id("tile-rows-export-xlsx").click()
    assert download.value.suggested_filename.endswith(".xlsx")
    assert download.value.path().read_bytes()[:2] == b"PK"
    anonymous.close()


def test_tiles_stack_on_a_phone(browser, server):
    api(server, "PUT", "/datasets/e2e_phone", content=SALES)
    query = api(
        server, "POST", "/queries", json={"title": "E2E phone", "sql": "SELECT 1 AS one"}
    ).json()["slug"]
    board = api(
        server,
        "POST",
        "/dashboards",
        json={
            "title": "E2E phone board",
            "tiles": [
                {"type": "number", "query": query, "width": 4},
                {"type": "number", "query": query, "width": 8},
            ],
        },
    ).json()
    link = api(
        server, "POST", "/shares", json={"kind": "dashboard", "target": board["slug"], "name": "p"}
    ).json()
    for width, stacked in ((390, True), (1200, False)):
        context = browser.new_context(viewport={"width": width, "height": 800})
        phone = context.new_page()
        phone.goto(server.url + link["path"])
        expect(phone.locator(".tile[data-state]")).to_have_count(2)
        first, second = (phone.get_by_test_id(f"tile-t{n}").bounding_box() for n in (1, 2))
        assert (second["y"] > first["y"] + first["height"] - 1) is stacked, (width, first, second)
        if stacked:
            assert abs(first["width"] - second["width"]) < 1
        context.close()


def test_dashboard_versions_compare_and_restore(page, server):
    query = api(
        server, "POST", "/queries", json={"title": "E2E versions one", "sql": "SELECT 1 AS one"}
    ).json()["slug"]
    board = api(
        server,
        "POST",
        "/dashboards",
        json={
            "title": "E2E versions board",
            "tiles": [{"type": "number", "query": query}, {"type": "text", "text": "First note"}],
        },
    ).json()
    slug = board["slug"]
    api(
        server,
        "PUT",
        f"/dashboards/{slug}",
        json={"title": "E2E versions board", "tiles": [{"type": "number", "query": query}]},
    )
    accounts = Accounts(server)
    editor = accounts.user("editor")
    accounts.close()
    sign_in(page, server, editor)
    page.goto(f"{server.url}/dashboards/{slug}")
    tiles_loaded(page, 1)
    page.get_by_test_id("versions").locator("summary").click()
    page.get_by_test_id("compare-1").click()
    page.wait_for_url(re.compile(r"/diff\?from=1&to=2"))
    expect(page.get_by_test_id("diff-summary")).to_contain_text("Changed: tiles")
    expect(page.get_by_test_id("diff-tiles").locator("del").first).to_be_visible()
    removed = page.get_by_test_id("diff-tiles").locator("del").all_inner_texts()
    assert any('"text": "First note"' in line for line in removed), removed
    assert_accessible(page)
    page.get_by_test_id("restore-from-diff").click()
    page.wait_for_url(re.compile(rf"/dashboards/{slug}$"))
    expect(page.get_by_role("status").first).to_contain_text("Restored version 1 as version 3")
    tiles_loaded(page, 1)
    expect(page.get_by_test_id("tile-t2")).to_contain_text("First note")
    page.reload()  # post/redirect/get: a reload restores nothing again
    versions = api(server, "GET", f"/dashboards/{slug}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [3, 2, 1]


def test_account_lists_my_share_links_with_their_use(browser, page, server):
    query = api(
        server, "POST", "/queries", json={"title": "E2E account link", "sql": "SELECT 7 AS n"}
    ).json()["slug"]
    accounts = Accounts(server)
    editor = accounts.user("editor")
    accounts.close()
    sign_in(page, server, editor)
    page.goto(f"{server.url}/queries/{query}")
    page.get_by_test_id("share-links").locator("summary").click()
    page.get_by_test_id("share-name").fill("account listed")
    page.get_by_test_id("create-share").click()
    url = page.get_by_test_id("share-url").input_value()
    page.wait_for_url(re.compile(r"/shares/created$"))
    assert_accessible(page)
    # Post/redirect/get: a reload shows the address no more and makes no second link.
    page.reload()
    assert url not in page.content()
    made = api(server, "GET", "/shares", params={"kind": "query", "target": query}).json()
    assert [s["name"] for s in made["shares"]] == ["account listed"]
    anonymous = browser.new_context()
    anonymous.new_page().goto(url)
    page.goto(server.url + "/account")
    mine = page.get_by_test_id("account-share").filter(has_text="account listed")
    expect(mine).to_contain_text("1 use, last ")
    mine.get_by_role("button", name="Revoke").click()
    expect(page.get_by_test_id("account-share").filter(has_text="account listed")).to_contain_text(
        "revoked"
    )
    # Refused at once, with no wait for a cache to expire.
    visitor = anonymous.new_page()
    visitor.goto(url)
    expect(visitor.get_by_test_id("share-refused")).to_contain_text("revoked")
    token = url.rsplit("/", 1)[1]
    refused = httpx.get(server.url + "/api/shared", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code in (401, 403), refused.text
    anonymous.close()


def test_the_editor_works_without_javascript(browser, server):
    """Add, resize, reorder and remove tiles with plain forms, scripts off, then the page."""
    query = api(
        server, "POST", "/queries", json={"title": "E2E no script", "sql": "SELECT 3 AS three"}
    ).json()["slug"]
    board = api(server, "POST", "/dashboards", json={"title": "E2E no script board"}).json()
    slug = board["slug"]
    accounts = Accounts(server)
    editor = accounts.user("editor")
    accounts.close()
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page, server, editor)
        for row, kind in enumerate(("number", "table")):
            page.goto(f"{server.url}/dashboards/{slug}/edit")
            add_tile(page, row, kind, "E2E no script", "", "6")
            page.get_by_test_id("save-dashboard").click()
            page.wait_for_url(re.compile(rf"/dashboards/{slug}$"))
        page.goto(f"{server.url}/dashboards/{slug}/edit")
        page.locator("#t-0-width").select_option("12")
        page.locator("#t-1-order").fill("0")
        page.locator("#t-2-type").select_option("text")
        page.locator("#t-2-text").fill("A note")
        page.get_by_test_id("save-dashboard").click()
        page.wait_for_url(re.compile(rf"/dashboards/{slug}$"))
        tiles = api(server, "GET", f"/dashboards/{slug}").json()["tiles"]
        assert [(t["id"], t["type"], t["width"]) for t in tiles] == [
            ("t2", "table", 6),
            ("t1", "number", 12),
            ("t3", "text", 6),
        ]
        assert tiles[0]["query"] == query
        page.goto(f"{server.url}/dashboards/{slug}/edit")
        page.get_by_test_id("tile-remove-0").check()
        page.get_by_test_id("save-dashboard").click()
        page.wait_for_url(re.compile(rf"/dashboards/{slug}$"))
        tiles = api(server, "GET", f"/dashboards/{slug}").json()["tiles"]
        assert [t["id"] for t in tiles] == ["t1", "t3"]
        # The page itself lays the tiles out without a script (their results need one).
        ids = page.locator(".tile").evaluate_all("els => els.map(e => e.dataset.tileId)")
        assert ids == ["t1", "t3"]
        expect(page.get_by_test_id("tile-t3")).to_contain_text("A note")
        versions = api(server, "GET", f"/dashboards/{slug}/versions").json()["versions"]
        assert len(versions) == 5
    finally:
        context.close()


def test_a_dashboard_of_many_slow_tiles_loads_every_one(page, start_server, tmp_path):
    """The server answers a viewer's runs past MYAPP_MAX_QUERIES_PER_USER with 429: the page
    asks for a few tiles at once and asks again after Retry-After, so all twelve slow tiles
    load under an allowance of two, none refused."""
    small = start_server(
        "all", env=secured_env(MYAPP_MAX_QUERIES_PER_USER="2"), workdir=tmp_path / "small"
    )
    api(
        small,
        "POST",
        "/queries",
        json={
            "slug": "e2e-slow-count",
            "title": "E2E slow count",
            "sql": "SELECT count(*) AS n FROM range(20000000) t WHERE t.range % 7 = 3",
        },
    )
    api(
        small,
        "POST",
        "/dashboards",
        json={
            "slug": "e2e-many-tiles",
            "title": "E2E many tiles",
            "tiles": [
                {"id": f"n{i}", "type": "table", "query": "e2e-slow-count", "width": 3}
                for i in range(12)
            ],
        },
    )
    accounts = Accounts(small)
    viewer = accounts.user("viewer")
    accounts.close()
    sign_in(page, small, viewer)
    page.goto(small.url + "/dashboards/e2e-many-tiles")
    expect(page.locator(".tile[data-state]")).to_have_count(12, timeout=60_000)
    expect(page.locator('.tile[data-state="error"]')).to_have_count(0)
    expect(page.locator("#dash-status")).to_have_text("All tiles loaded.")
