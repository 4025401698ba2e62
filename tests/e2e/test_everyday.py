"""Everyday use in a real browser, at desktop (1280 px) and phone (390 px) widths: no page
scrolls sideways, the header's items are reachable, errors stay where they happen, tables read
well, addresses reproduce results, reloads repeat nothing, search ignores accents, dark mode
reaches the editor, and axe-core finds nothing."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from myapp.frontend import cells
from tests.e2e.conftest import assert_accessible
from tests.support.accounts import ADMIN_HEADERS, secured_env
from tests.support.servers import ServerProcess

ADMIN_PASSWORD = "everyday-admin-password"
WIDTHS = {"desktop": (1280, 800), "tablet": (820, 1180), "phone": (390, 844)}
DATASET = "everyday_sales"
SALES_CSV = (
    "id,quantity,customer,price,day,note\n"
    "1,9,Müller,7.55,2024-03-09,short\n"
    "2,45,MÜLLER GmbH,5314546.740000004,2024-03-10," + "a long note that goes on " * 12 + "\n"
    "3,46,Zoë Ørsted,120.25,2024-04-01,x\n"
    "4,5,Muller,0.1,2024-02-29,y\n"
    "5,100,Crème Café,99.99,2023-12-31,z\n"
    "6,1234567,Smith,3,2024-03-09,w\n"
).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(
        "all",
        tmp_path_factory.mktemp("e2e-everyday"),
        env=secured_env(MYAPP_ADMIN_PASSWORD=ADMIN_PASSWORD),
    ).start()
    response = httpx.put(
        f"{proc.url}/api/datasets/{DATASET}",
        params={"format": "csv", "filename": "sales.csv"},
        content=SALES_CSV,
        headers=ADMIN_HEADERS,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    saved = httpx.post(
        f"{proc.url}/api/queries",
        headers=ADMIN_HEADERS,
        json={
            "title": "Everyday big orders",
            "sql": f"SELECT id, quantity, day FROM {DATASET} WHERE quantity >= $min ORDER BY id",
            "parameters": [{"name": "min", "type": "integer", "default": 40}],
        },
        timeout=30,
    )
    assert saved.status_code == 201, saved.text
    edited = httpx.put(
        f"{proc.url}/api/queries/everyday-big-orders",
        headers=ADMIN_HEADERS,
        json={
            "title": "Everyday big orders",
            "sql": f"SELECT id, quantity, day\nFROM {DATASET}\nWHERE quantity > $min ORDER BY id",
            "parameters": [{"name": "min", "type": "integer", "default": 40}],
        },
        timeout=30,
    )
    assert edited.status_code == 200, edited.text
    board = {
        "title": "Everyday board",
        "parameters": [{"name": "min", "type": "integer", "default": 40}],
        "tiles": [
            {"type": "number", "query": "everyday-big-orders", "params": {"min": "min"}},
            {"type": "table", "query": "everyday-big-orders", "params": {"min": "min"}},
            {"type": "text", "text": "Orders above the minimum, " + "a long line " * 20},
        ],
    }
    for method, path in (("POST", "/api/dashboards"), ("PUT", "/api/dashboards/everyday-board")):
        answer = httpx.request(
            method, proc.url + path, headers=ADMIN_HEADERS, json=board, timeout=30
        )
        assert answer.status_code in (200, 201), answer.text
        board["tiles"][0]["width"] = 6
    share = httpx.post(
        f"{proc.url}/api/shares",
        headers=ADMIN_HEADERS,
        json={"kind": "dashboard", "target": "everyday-board", "name": "everyday"},
        timeout=30,
    )
    assert share.status_code == 201, share.text
    proc.share_path = share.json()["path"]
    yield proc
    proc.stop()


def sign_in(page, server) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def page_width_overflow(page) -> int:
    """How many CSS pixels the page is wider than the window (0 when nothing scrolls sideways)."""
    return page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - window.innerWidth"
    )


PAGES = [
    "/",
    "/datasets",
    f"/datasets/{DATASET}",
    f"/datasets/{DATASET}?quantity__gt=40&sort=-price",
    f"/datasets/{DATASET}/profile",
    "/sql",
    "/queries",
    "/queries/everyday-big-orders",
    "/queries/everyday-big-orders/diff",
    "/dashboards",
    "/dashboards/everyday-board",
    "/dashboards/everyday-board?min=5",
    "/dashboards/everyday-board/edit",
    "/dashboards/everyday-board/diff",
    "/account",
    "/admin",
    "/admin/users/admin",
    "/admin/tokens",
    "/admin/audit",
]
# Pages a visitor without an account sees: the sign-in page and a share link's page.
ANONYMOUS_PAGES = ["/login", "SHARE"]


@pytest.mark.parametrize("width", list(WIDTHS))
def test_no_page_scrolls_sideways_header_reachable_and_accessible(page, server, width):
    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS[width], strict=True)))
    sign_in(page, server)
    for path in PAGES:
        page.goto(server.url + path)
        page.wait_for_load_state("load")
        if path.split("?")[0] == "/dashboards/everyday-board":
            # Every tile's result is in: the page at its full width.
            expect(page.locator(".tile[data-state]")).to_have_count(2)
        assert page_width_overflow(page) <= 0, f"{path} scrolls sideways at {width}"
        assert_accessible(page)
    if width == "phone":
        # The dashboard's tiles stack: each takes the whole width of the grid.
        page.goto(server.url + "/dashboards/everyday-board")
        expect(page.locator(".tile[data-state]")).to_have_count(2)
        boxes = [page.get_by_test_id(f"tile-t{n}").bounding_box() for n in (1, 2, 3)]
        assert boxes[0]["y"] + boxes[0]["height"] <= boxes[1]["y"] + 1
        assert boxes[1]["y"] + boxes[1]["height"] <= boxes[2]["y"] + 1
        assert max(b["width"] for b in boxes) - min(b["width"] for b in boxes) < 1
        assert all(b["x"] >= 0 and b["x"] + b["width"] <= WIDTHS[width][0] for b in boxes)
    anonymous = page.context.browser.new_context(
        viewport=dict(zip(("width", "height"), WIDTHS[width], strict=True))
    )
    try:
        visitor = anonymous.new_page()
        for path in ANONYMOUS_PAGES:
            visitor.goto(server.url + (server.share_path if path == "SHARE" else path))
            visitor.wait_for_load_state("load")
            if path == "SHARE":
                expect(visitor.locator(".tile[data-state]")).to_have_count(2)
            assert page_width_overflow(visitor) <= 0, f"{path} scrolls sideways at {width}"
            assert_accessible(visitor)
    finally:
        anonymous.close()

    page.goto(server.url + f"/datasets/{DATASET}")
    menu_button = page.get_by_test_id("nav-menu-button")
    if width == "phone":
        expect(menu_button).to_be_visible()
        main_nav = page.get_by_role("navigation", name="Main")
        assert not main_nav.get_by_role("link", name="Datasets", exact=True).is_visible()
        menu_button.click()
    else:
        expect(menu_button).to_be_hidden()
    for name in ("Datasets", "SQL", "Queries", "Dashboards", "API", "Admin", "Account (admin)"):
        nav = page.get_by_role("navigation", name="Main")
        link = nav.get_by_role("link", name=name, exact=True)
        expect(link).to_be_visible()
        box = link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= WIDTHS[width][0]
    sign_out = page.get_by_role("button", name="Sign out")
    expect(sign_out).to_be_visible()
    assert_accessible(page)

    # Facets fold above the table on a phone; on a desktop they stand beside it.
    facets = page.get_by_test_id("facets")
    table = page.get_by_test_id("data-table")
    if width == "phone":
        expect(facets).to_be_hidden()
        assert table.bounding_box()["y"] < 900
        page.locator("#facets-box > summary").click()
        expect(facets).to_be_visible()
    else:
        expect(facets).to_be_visible()


def test_a_bad_filter_keeps_the_table_and_the_other_filters(page, server):
    sign_in(page, server)
    page.goto(server.url + f"/datasets/{DATASET}?quantity__gt=5")
    expect(page.get_by_test_id("row-count")).to_contain_text("of 5 matching")
    # The builder offers only what fits the column's type.
    page.select_option("#add-column", "customer")
    offered = page.locator("#add-op option").evaluate_all("os => os.map(o => o.value)")
    assert "gt" not in offered and "contains" in offered
    page.select_option("#add-column", "day")
    page.select_option("#add-op", "gt")
    page.fill("#add-value", "last week")
    page.get_by_test_id("filter-builder").get_by_role("button", name="Add").click()
    page.wait_for_url(re.compile(r"day__gt=last"))

    problem = page.get_by_test_id("filter-error")
    expect(problem).to_contain_text("'last week' is not a valid DATE value for column 'day'")
    # The table of the last good state (quantity > 5) is still there, with its filter.
    expect(page.get_by_test_id("row-count")).to_contain_text("of 5 matching")
    assert page.locator("tbody tr").count() == 5
    chips = page.get_by_test_id("active-filters").inner_text()
    assert "quantity greater than “5”" in chips
    expect(page.get_by_test_id("bad-filter")).to_contain_text("(not applied)")
    # The builder holds the refused value to correct it.
    assert page.input_value("#add-value") == "last week"
    assert page.input_value("#add-column") == "day"
    assert_accessible(page)

    page.fill("#add-value", "2024-03-09")
    page.get_by_test_id("filter-builder").get_by_role("button", name="Add").click()
    page.wait_for_url(re.compile(r"day__gt=2024-03-09"))
    # Dropping the bad chip with its remove link keeps the rest.
    page.get_by_test_id("bad-filter").get_by_role("link").click()
    expect(page.get_by_test_id("row-count")).to_contain_text("of 2 matching")
    assert page.get_by_test_id("filter-error").count() == 0


def test_numeric_filter_compares_numbers(page, server):
    sign_in(page, server)
    page.goto(server.url + f"/datasets/{DATASET}")
    page.select_option("#add-column", "quantity")
    page.select_option("#add-op", "gt")
    page.fill("#add-value", "45")
    page.get_by_test_id("filter-builder").get_by_role("button", name="Add").click()
    page.wait_for_url(re.compile(r"quantity__gt=45"))
    quantities = page.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert quantities == ["46", "100", "1,234,567"]


def test_search_ignores_accents_and_says_when_nothing_matches(page, server):
    sign_in(page, server)
    page.goto(server.url + f"/datasets/{DATASET}")
    page.fill("#table-q", "muller")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile(r"q=muller"))
    customers = page.locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert customers == ["Müller", "MÜLLER GmbH", "Muller"]
    chip = page.get_by_test_id("search-chip")
    expect(chip.get_by_role("link", name="Remove the search muller")).to_be_visible()

    page.fill("#table-q", "creme cafe")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tbody tr td:nth-child(3)")).to_have_text(["Crème Café"])

    page.goto(server.url + f"/datasets/{DATASET}?q=zzzz")
    expect(page.get_by_test_id("row-count")).to_have_text(re.compile(r"\s*No rows match 'zzzz'\."))
    assert "of 0" not in page.get_by_test_id("row-count").inner_text()
    page.get_by_test_id("search-chip").get_by_role("link").click()
    expect(page.get_by_test_id("row-count")).to_contain_text("of 6")


def test_table_cells_read_well(page, server):
    sign_in(page, server)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server.url + f"/datasets/{DATASET}?sort=id")
    row = page.locator("tbody tr").nth(1)
    cells_ = row.locator("td")
    price, day, quantity = cells_.nth(3), cells_.nth(4), cells_.nth(1)
    assert price.inner_text() == "5,314,546.74"  # the DOUBLE's noise rounded off on the page
    assert day.inner_text() == "2024-03-10"
    for cell in (price, day, quantity):
        style = cell.evaluate("c => [getComputedStyle(c).whiteSpace, c.getClientRects().length]")
        assert style[0] == "nowrap"
        # One line: the cell is no taller than one line of its text.
        height = cell.evaluate(
            "c => { const r = document.createRange(); r.selectNodeContents(c);"
            " return r.getClientRects().length; }"
        )
        assert height == 1, f"{cell.inner_text()} breaks across lines"
    assert price.evaluate("c => getComputedStyle(c).textAlign") == "right"
    # Long text wraps within a readable width.
    note = cells_.nth(5)
    assert note.evaluate("c => getComputedStyle(c).whiteSpace") == "pre-wrap"
    assert note.bounding_box()["width"] <= 30 * 16 + 40
    # The header stays in view while the table scrolls.
    th = page.locator("thead th").first
    assert th.evaluate("h => getComputedStyle(h).position") == "sticky"
    # The API keeps full precision.
    api = httpx.get(
        f"{server.url}/api/datasets/{DATASET}/rows",
        params={"id__eq": "2"},
        headers=ADMIN_HEADERS,
    ).json()
    assert api["rows"][0][3] == 5314546.740000004


def test_one_cell_rule_in_python_and_javascript(page, server):
    """The server's Jinja filter and the browser's module render the same values the same."""
    samples = [
        (5314546.740000004, "DOUBLE"),
        (7499.849999999999, "DOUBLE"),
        (0.1 + 0.2, "DOUBLE"),
        (1234567, "BIGINT"),
        (-1234567.5, "DOUBLE"),
        (1e16, "DOUBLE"),
        (1.5e-7, "DOUBLE"),
        (3.0, "DOUBLE"),
        (0.000123, "DOUBLE"),
        ("12345678901234567890", "HUGEINT"),
        ("-1234.5000", "DECIMAL(18,4)"),
        ("NaN", "DOUBLE"),
        ("2024-01-01T00:00:00", "TIMESTAMP"),
        ("2024-01-01T13:45:00", "TIMESTAMP"),
        ("2024-01-01", "DATE"),
        ("2024-01-01T00:00:00+00:00", "TIMESTAMP WITH TIME ZONE"),
        (True, "BOOLEAN"),
        ({"a": [1, 2]}, "STRUCT(a INTEGER[])"),
        ("plain text 1,5", "VARCHAR"),
        (None, "INTEGER"),
        (42, None),
    ]
    sign_in(page, server)
    page.goto(server.url + "/sql")
    in_browser = page.evaluate(
        "samples => samples.map(([v, t]) => window.MyappCells.format(v, t))",
        [list(s) for s in samples],
    )
    on_server = [cells.format_value(v, t) for v, t in samples]
    assert in_browser == on_server
    assert on_server[:3] == ["5,314,546.74", "7,499.85", "0.3"]
    assert on_server[12:14] == ["2024-01-01", "2024-01-01 13:45:00"]


def test_reload_after_creating_a_token_creates_nothing(page, server):
    sign_in(page, server)
    page.goto(server.url + "/account")
    page.get_by_label("Name").fill("everyday reload")
    page.get_by_role("button", name="Create token").click()
    page.wait_for_url(re.compile(r"/account/tokens/created$"))
    secret = page.get_by_test_id("new-token").input_value()
    assert secret.startswith("myapp_")
    page.reload()
    page.wait_for_load_state()
    assert secret not in page.content(), "the secret is shown only once"
    tokens = httpx.get(
        f"{server.url}/api/tokens", params={"username": "admin"}, headers=ADMIN_HEADERS
    ).json()["tokens"]
    assert [t["name"] for t in tokens].count("everyday reload") == 1


def test_an_sql_address_reproduces_its_result_and_a_failed_run_clears_it(page, server, browser):
    sign_in(page, server)
    page.goto(server.url + "/sql")
    page.locator(".CodeMirror").click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(f"SELECT id, price FROM {DATASET} WHERE quantity >= $min ORDER BY id")
    page.get_by_test_id("param-type-min").select_option("integer")
    page.get_by_test_id("param-min").fill("45")
    page.get_by_test_id("run").click()
    table = page.get_by_test_id("results")
    expect(table.locator("tbody tr")).to_have_count(4)
    expected = table.locator("tbody").inner_text()
    page.wait_for_url(re.compile(r"/sql\?sql=SELECT.*&p\.min=45&t\.min=integer"))
    address = page.url
    # The price column is a DOUBLE: right-aligned, same rule as the server-rendered tables.
    assert table.locator("tbody td").nth(1).evaluate("c => getComputedStyle(c).textAlign") == (
        "right"
    )

    other = page.context.new_page()
    other.goto(address)
    expect(other.get_by_test_id("results").locator("tbody tr")).to_have_count(4)
    assert other.get_by_test_id("results").locator("tbody").inner_text() == expected
    other.close()

    # A failed run leaves no earlier result (or its export) on screen.
    page.locator(".CodeMirror").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text("SELECT nosuch FROM range(3)")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("sql-error")).to_be_visible()
    expect(page.locator("#results")).to_be_hidden()
    assert page.get_by_test_id("export-csv").is_disabled()


def test_dark_mode_reaches_the_editor_completion_and_charts(browser, server):
    context = browser.new_context(color_scheme="dark")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, server)
        page.goto(server.url + "/sql")
        luminance = """el => {
            const [r, g, b] = getComputedStyle(el).backgroundColor.match(/\\d+/g).map(Number);
            return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
        }"""
        assert page.locator(".CodeMirror").evaluate(luminance) < 0.3
        assert page.locator(".CodeMirror-gutters").evaluate(luminance) < 0.3
        page.locator(".CodeMirror").click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text("SELECT * FROM ever")
        page.keyboard.press("Control+Space")
        hints = page.locator(".CodeMirror-hints")
        expect(hints).to_be_visible()
        assert hints.evaluate(luminance) < 0.3
        text = page.locator(".CodeMirror-line").first.evaluate(
            "el => getComputedStyle(el.querySelector('.cm-keyword') || el).color"
        )
        assert text != "rgb(119, 0, 136)"  # CodeMirror's light-theme keyword purple
        assert_accessible(page)
        # The vendored API docs (Swagger UI) follow dark mode too.
        page.goto(server.url + "/api/docs")
        page.locator(".swagger-ui").first.wait_for()
        assert "invert" in page.evaluate("getComputedStyle(document.body).filter")
        assert not errors
    finally:
        context.close()


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_dark_mode_pages_are_accessible(browser, server, width):
    """Every page in dark mode: axe-core (contrast included) finds nothing, nothing scrolls."""
    size = dict(zip(("width", "height"), WIDTHS[width], strict=True))
    context = browser.new_context(color_scheme="dark", viewport=size)
    page = context.new_page()
    try:
        sign_in(page, server)
        for path in PAGES:
            page.goto(server.url + path)
            page.wait_for_load_state("load")
            if path.split("?")[0] == "/dashboards/everyday-board":
                expect(page.locator(".tile[data-state]")).to_have_count(2)
            assert page_width_overflow(page) <= 0, f"{path} scrolls sideways in dark mode"
            assert_accessible(page)
    finally:
        context.close()


def test_saved_query_versions_compare_and_restore(page, server):
    sign_in(page, server)
    page.goto(server.url + "/queries/everyday-big-orders")
    page.get_by_test_id("versions").locator("summary").click()
    page.get_by_test_id("compare-1").click()
    page.wait_for_url(re.compile(r"/diff\?from=1&to=2"))
    expect(page.get_by_test_id("diff-summary")).to_contain_text("Changed: sql")
    diff = page.get_by_test_id("diff-sql")
    expect(diff.locator("del").first).to_contain_text("SELECT id, quantity, day FROM")
    expect(diff.locator("ins").last).to_contain_text("WHERE quantity > $min")
    assert_accessible(page)
    page.get_by_test_id("restore-from-diff").click()
    page.wait_for_url(re.compile(r"/queries/everyday-big-orders$"))
    expect(page.get_by_role("status").first).to_contain_text("Restored version 1 as version 3")
    page.reload()  # post/redirect/get: a reload restores nothing again
    versions = httpx.get(
        f"{server.url}/api/queries/everyday-big-orders/versions", headers=ADMIN_HEADERS
    ).json()["versions"]
    assert [v["version"] for v in versions] == [3, 2, 1]
    latest = httpx.get(
        f"{server.url}/api/queries/everyday-big-orders", headers=ADMIN_HEADERS
    ).json()
    assert "quantity >= $min" in latest["sql"]


def test_required_parameters_are_asked_for(page, server):
    created = httpx.post(
        f"{server.url}/api/queries",
        headers=ADMIN_HEADERS,
        json={
            "title": "Everyday by customer",
            "sql": f"SELECT id FROM {DATASET} WHERE customer = $who",
            "parameters": [{"name": "who", "type": "text"}],
        },
    )
    assert created.status_code == 201, created.text
    slug = created.json()["slug"]
    sign_in(page, server)
    page.goto(f"{server.url}/queries/{slug}?_run=1&who=")
    expect(page.get_by_test_id("param-who-error")).to_have_text("A value is required.")
    assert page.get_by_test_id("results").count() == 0
    assert page.get_by_test_id("param-who").get_attribute("required") is not None
    assert_accessible(page)


def test_unicode_username_rule_shown_and_first_admin_signed_in(page, start_server):
    fresh = start_server("all")
    page.goto(fresh.url + "/admin")
    rule = page.get_by_test_id("username-rule")
    expect(rule).to_contain_text("letters (of any alphabet)")
    form = page.get_by_role("form", name="New account")
    form.get_by_label("Username").fill("Zoë  Müller")
    form.get_by_label("Password").fill("zoe-password-1")
    form.get_by_role("button", name="Create account").click()
    # Refused with the rule; the name stays to be corrected, only the password is cleared.
    expect(page.get_by_test_id("user-error")).to_contain_text("single spaces between words")
    assert form.get_by_label("Username").input_value() == "Zoë  Müller"
    assert form.get_by_label("Password").input_value() == ""
    form.get_by_label("Username").fill("Zoë Müller")
    form.get_by_label("Password").fill("zoe-password-1")
    form.get_by_label("Role").select_option("admin")
    form.get_by_role("button", name="Create account").click()
    page.wait_for_url(re.compile(r"/admin$"))
    expect(page.get_by_test_id("user-menu")).to_have_text("Account (zoë müller)")
    expect(page.get_by_role("status").first).to_contain_text("you are signed in")
    # Her name in other case is taken; with one Cyrillic letter in it, it mixes alphabets.
    form = page.get_by_role("form", name="New account")
    form.get_by_label("Username").fill("ZOË MÜLLER")
    form.get_by_label("Password").fill("another-password")
    form.get_by_role("button", name="Create account").click()
    expect(page.get_by_test_id("user-error")).to_contain_text("already exists")
    form.get_by_label("Username").fill("Z\u043e\u00eb M\u00fcller")
    form.get_by_label("Password").fill("another-password")
    form.get_by_role("button", name="Create account").click()
    expect(page.get_by_test_id("user-error")).to_contain_text("cannot mix alphabets")


def test_saving_under_a_title_that_exists_asks(page, server):
    sign_in(page, server)
    page.goto(server.url + "/sql")
    page.locator(".CodeMirror").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(f"SELECT count(*) AS n FROM {DATASET}")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("results").locator("tbody tr")).to_have_count(1)
    page.get_by_test_id("save").click()
    page.get_by_test_id("save-title").fill("everyday BIG orders")
    page.get_by_test_id("save-submit").click()
    error = page.locator("#save-error")
    expect(error).to_contain_text("already exists")
    existing = page.get_by_test_id("open-existing")
    assert existing.get_attribute("href") == "/queries/everyday-big-orders"
    assert page.get_by_test_id("save-title").get_attribute("aria-invalid") == "true"
    listed = httpx.get(f"{server.url}/api/queries", headers=ADMIN_HEADERS).json()["queries"]
    assert not [q for q in listed if q["slug"].startswith("everyday-big-orders-")]
    page.get_by_test_id("save-title").fill("Everyday order count")
    page.get_by_test_id("save-submit").click()
    expect(page.get_by_test_id("saved-link")).to_have_text("Everyday order count")

    # Editing a saved query and saving it as a new query under a title that exists asks too.
    page.goto(server.url + "/sql?query=everyday-big-orders")
    page.get_by_test_id("param-min").fill("40")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("results").locator("tbody tr")).not_to_have_count(0)
    page.get_by_test_id("save").click()
    page.locator("#save-as-new").check()
    page.get_by_test_id("save-submit").click()
    expect(page.locator("#save-error")).to_contain_text("already exists")
    expect(page.get_by_test_id("open-existing")).to_have_attribute(
        "href", "/queries/everyday-big-orders"
    )
    listed = httpx.get(f"{server.url}/api/queries", headers=ADMIN_HEADERS).json()["queries"]
    assert not [q for q in listed if q["slug"].startswith("everyday-big-orders-")]
    page.get_by_test_id("save-title").fill("Everyday big orders, a copy")
    page.get_by_test_id("save-submit").click()
    expect(page.get_by_test_id("saved-link")).to_have_text("Everyday big orders, a copy")
    copy = page.get_by_test_id("saved-link").get_attribute("href").rsplit("/", 1)[1]

    # A new version of the copy that takes the original's title asks as well.
    page.goto(f"{server.url}/sql?query={copy}")
    page.get_by_test_id("param-min").fill("40")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("results").locator("tbody tr")).not_to_have_count(0)
    page.get_by_test_id("save").click()
    page.get_by_test_id("save-title").fill("EVERYDAY big orders")
    page.get_by_test_id("save-submit").click()
    expect(page.locator("#save-error")).to_contain_text("already exists")
    expect(page.get_by_test_id("open-existing")).to_have_attribute(
        "href", "/queries/everyday-big-orders"
    )
    versions = httpx.get(f"{server.url}/api/queries/{copy}/versions", headers=ADMIN_HEADERS)
    assert len(versions.json()["versions"]) == 1


def test_charts_label_dates_without_midnight(page, server):
    sign_in(page, server)
    page.goto(server.url + "/sql")
    page.locator(".CodeMirror").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(
        f"SELECT CAST(day AS TIMESTAMP) AS moment, sum(price) AS total FROM {DATASET} "
        "GROUP BY ALL ORDER BY moment"
    )
    page.get_by_test_id("run").click()
    cells_ = page.get_by_test_id("results").locator("tbody tr").first.locator("td")
    expect(cells_.first).to_have_text("2023-12-31")
    page.get_by_test_id("chart-panel").locator("summary").click()
    expect(page.locator("#chart-note")).to_contain_text("points")
    labels = page.get_by_test_id("chart-canvas").evaluate(
        "c => window.Chart.getChart(c).data.labels"
    )
    assert labels[0] == "2023-12-31" and not [label for label in labels if "T" in label]


def upload(page, server, path) -> None:
    page.goto(server.url + "/datasets")
    page.set_input_files("#upload-file", str(path))
    page.get_by_role("button", name="Upload").click()
    page.get_by_test_id("upload-summary").wait_for()


def test_missing_value_markers_load_as_empty_and_filters_compare_numbers(page, server, tmp_path):
    """A quantity column with a few `n/a` loads as numbers (the markers empty, and the upload
    says so), and "greater than 45" lists only numbers greater than 45."""
    lines = ["id,quantity,city"]
    for i in range(1, 201):
        quantity = "n/a" if i in (7, 70, 140) else str((i * 37) % 100)
        lines.append(f"{i},{quantity},Oslo")
    path = tmp_path / "everyday_na.csv"
    path.write_text("\n".join(lines) + "\n")
    expected = sorted(
        int(q) for q in (line.split(",")[1] for line in lines[1:]) if q != "n/a" and int(q) > 45
    )
    sign_in(page, server)
    upload(page, server, path)
    expect(page.get_by_test_id("rows-loaded")).to_have_text("200")
    expect(page.get_by_test_id("rows-rejected")).to_have_text("0")
    expect(page.get_by_test_id("upload-conversions")).to_contain_text(
        "quantity (BIGINT): 3 values read as empty: n/a"
    )
    assert_accessible(page)

    page.get_by_test_id("uploaded-link").click()
    # The builder's module may still be loading: choose the column again until it has
    # answered (it sets the operators on each change).
    deadline = time.monotonic() + 10
    while True:
        page.select_option("#add-column", "quantity")
        offered = page.locator("#add-op option").evaluate_all("os => os.map(o => o.value)")
        if "contains" not in offered or time.monotonic() > deadline:
            break
        page.wait_for_timeout(200)
    assert "gt" in offered and "contains" not in offered
    page.select_option("#add-op", "gt")
    page.fill("#add-value", "45")
    page.get_by_test_id("filter-builder").get_by_role("button", name="Add").click()
    page.wait_for_url(re.compile(r"quantity__gt=45"))
    expect(page.get_by_test_id("row-count")).to_contain_text(f"of {len(expected)} matching")
    page.goto(page.url + "&sort=quantity")
    shown = page.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert [int(q) for q in shown] == expected[: len(shown)] and len(shown) >= 20


def test_a_german_csv_with_decimal_commas_loads_as_numbers(page, server, tmp_path):
    path = tmp_path / "everyday_preise.csv"
    text = (
        "Artikel;Preis €;Menge\nApfel;7,55;3\nBirne;50,10;2\nKirsche;1.234,50;1\nPflaume;49,99;4\n"
    )
    path.write_bytes(text.encode("cp1252"))
    sign_in(page, server)
    upload(page, server, path)
    expect(page.get_by_test_id("rows-loaded")).to_have_text("4")
    expect(page.get_by_test_id("upload-conversions")).to_contain_text("Preis €")
    expect(page.get_by_test_id("upload-conversions")).to_contain_text("7,55 is 7.55")
    page.get_by_test_id("uploaded-link").click()
    page.select_option("#add-column", "Preis €")
    page.select_option("#add-op", "gt")
    page.fill("#add-value", "50")
    page.get_by_test_id("filter-builder").get_by_role("button", name="Add").click()
    page.wait_for_url(re.compile(r"__gt=50"))
    expect(page.get_by_test_id("row-count")).to_contain_text("of 2 matching")
    names = page.locator("tbody tr td:nth-child(1)").all_inner_texts()
    prices = page.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert sorted(zip(names, prices, strict=True)) == [("Birne", "50.1"), ("Kirsche", "1,234.5")]
    assert (
        page.locator("tbody tr td:nth-child(2)").first.evaluate(
            "c => getComputedStyle(c).textAlign"
        )
        == "right"
    )


def test_the_home_page_counts_runs(page, server):
    sign_in(page, server)
    page.goto(server.url + "/queries/everyday-big-orders")
    expect(page.get_by_test_id("results").locator("tbody tr")).not_to_have_count(0)
    runs = httpx.get(f"{server.url}/api/queries", headers=ADMIN_HEADERS).json()["queries"]
    (listed,) = [q for q in runs if q["slug"] == "everyday-big-orders"]
    page.goto(server.url + "/")
    item = page.get_by_test_id("recent-query").filter(
        has=page.get_by_role("link", name="Everyday big orders", exact=True)
    )
    expect(item).to_contain_text(f"run {listed['run_count']} time")
    assert listed["run_count"] >= 1
    assert_accessible(page)
