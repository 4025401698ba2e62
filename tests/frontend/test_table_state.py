"""The table page keeps its last good state when a filter, sort or cursor is refused: the
message stands beside the filters and the rows under everything else are still shown."""

from __future__ import annotations

import html
import os

import httpx
import pytest

CSV = b"id,amount,city,day\n1,10,Oslo,2024-01-01\n2,20,Bergen,2024-01-02\n3,30,Oslo,2024-01-03\n"


@pytest.fixture
def web(web_server):
    with httpx.Client(base_url=web_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def name(api) -> str:
    name = "state_" + os.urandom(3).hex()
    response = api.put(f"/api/datasets/{name}", content=CSV, params={"filename": "s.csv"})
    assert response.status_code == 201, response.text
    return name


def text(page: httpx.Response) -> str:
    return " ".join(html.unescape(page.text).split())


def body_rows(page: httpx.Response) -> int:
    return page.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0].count("<tr>")


def test_a_bad_value_keeps_the_other_filters(web, name):
    page = web.get(f"/datasets/{name}", params=[("city__eq", "Oslo"), ("day__gt", "last week")])
    assert page.status_code == 400
    shown = text(page)
    assert "'last week' is not a valid DATE value for column 'day'" in shown
    assert "Rows 1\u20132 of 2 matching" in shown
    assert body_rows(page) == 2
    assert 'data-testid="bad-filter"' in page.text and "(not applied)" in shown


def test_an_ordering_on_text_is_refused_in_place(web, name):
    page = web.get(f"/datasets/{name}", params={"city__gt": "B", "amount__gte": "20"})
    assert page.status_code == 400
    shown = text(page)
    assert "holds text" in shown and "Rows 1\u20132 of 2 matching" in shown


def test_an_unknown_sort_column_keeps_the_filters(web, name):
    page = web.get(f"/datasets/{name}", params={"sort": "-nosuch", "city__eq": "Oslo"})
    assert page.status_code == 400
    shown = text(page)
    assert "has no column 'nosuch'" in shown and "of 2 matching" in shown


def test_a_stale_cursor_starts_again_from_the_first_page(web, name):
    page = web.get(f"/datasets/{name}", params={"cursor": "not-a-cursor"})
    assert page.status_code == 200
    assert "Rows 1\u20133 of 3" in text(page)


def test_search_says_what_matched_nothing(web, name):
    page = web.get(f"/datasets/{name}", params={"q": "tromso"})
    assert page.status_code == 200
    assert "No rows match 'tromso'." in text(page)
    assert "No rows of" not in text(page)
