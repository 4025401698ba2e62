"""The contract's rules as the pages apply them: the SQL page (cells drawn by the browser) and a
saved query's page (cells rendered by the server) show the same result's cells alike, nested
values included, and the browser reads its type classes from the contract's block."""

from __future__ import annotations

from urllib.parse import quote

import httpx
from playwright.sync_api import expect

from myapp.contract import types

# Values whose JSON text differs between Python's json.dumps and a browser's JSON.stringify
# unless one rule writes both: a double that is a whole number, exponents, array-index keys
# of a struct, text with quotes and accents, a JSON column, a list of decimals, a TIME.
SQL = (
    "SELECT {'a': 1.0::DOUBLE, 'b': [1.5e-7, 1e21, 100.0]} AS nested, "
    "{'b': 1, '10': 2, '2': 3} AS keyed, "
    "{'k': 'é \"q\"', 'n': NULL, 't': true} AS texty, "
    "'{\"a\": 1}'::JSON AS j, "
    "[1.0::DECIMAL(4,1), 0.5] AS decimals, "
    "TIME '13:45:00' AS at_time, "
    "1234567.5::DOUBLE AS plain"
)


def cells_of(page) -> list[str]:
    table = page.get_by_test_id("results")
    expect(table.locator("tbody tr")).to_have_count(1)
    return table.locator("tbody tr").first.locator("td").all_inner_texts()


def test_sql_page_and_saved_query_page_render_the_same_cells(page, all_server):
    response = httpx.post(
        all_server.url + "/api/queries",
        json={"title": "Contract cells page", "sql": SQL},
    )
    assert response.status_code == 201, response.text
    slug = response.json()["slug"]

    page.goto(f"{all_server.url}/sql?sql={quote(SQL)}")
    in_browser = cells_of(page)
    page.goto(f"{all_server.url}/queries/{slug}")
    on_server = cells_of(page)

    assert in_browser == on_server
    assert on_server[:3] == [
        '{"a":1,"b":[1.5e-7,1e+21,100]}',
        '{"2":3,"10":2,"b":1}',
        '{"k":"é \\"q\\"","n":null,"t":true}',
    ]
    assert on_server[3:] == ['{"a": 1}', '["1.0","0.5"]', "13:45:00", "1,234,567.5"]
    httpx.delete(f"{all_server.url}/api/queries/{slug}")


def test_the_browser_classifies_types_by_the_contract(page, all_server):
    page.goto(all_server.url + "/sql")
    names = [
        "BIGINT",
        "UHUGEINT",
        "DECIMAL(18,3)",
        "DOUBLE",
        "DATE",
        "TIME",
        "TIME WITH TIME ZONE",
        "TIMESTAMP_NS",
        "TIMESTAMP WITH TIME ZONE",
        "BOOLEAN",
        "VARCHAR",
        "INTERVAL",
        "INTEGER[]",
        "JSON",
    ]
    in_browser = page.evaluate("names => names.map((n) => window.MyappCells.typeClass(n))", names)
    assert in_browser == [types.type_class(n) for n in names]
    # The chart panel offers what the backend can chart: a time of day is a temporal x axis.
    assert page.evaluate("window.MyappChart.isTemporal('TIME')") is True
    assert page.evaluate("window.MyappChart.isNumeric('DECIMAL(18,3)')") is True
