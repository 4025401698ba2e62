"""Exports through the pages (frontend role, and role all): a big one downloads while DuckDB is
still writing it, and one that fails after its download began reaches the browser cut short,
never as a complete-looking file."""

from __future__ import annotations

import httpx
import pytest

ROWS = 600_000
# More than the backend's STREAM_AFTER_BYTES as NDJSON: sent while DuckDB writes it.
BIG_SQL = f"SELECT range AS n, md5(range::VARCHAR) AS h FROM range({ROWS})"
FAILS_LATE = (
    f"SELECT range AS n, md5(range::VARCHAR) AS h, "
    f"CASE WHEN range = {ROWS - 1000} THEN error('row is bad') ELSE range END AS q "
    f"FROM range({ROWS})"
)


@pytest.fixture(params=["frontend", "all"])
def pages(request) -> str:
    server = request.getfixturevalue("web_server" if request.param == "frontend" else "all_server")
    return server.url


def _export(url: str, sql: str) -> httpx.Request:
    return httpx.Request(
        "POST",
        url + "/sql/export",
        data={"sql": sql, "format": "ndjson", "params": "{}"},
        headers={"Origin": url},
    )


def test_a_big_export_arrives_whole(pages):
    with httpx.Client(timeout=120) as client:
        response = client.send(_export(pages, BIG_SQL), stream=True)
        try:
            assert response.status_code == 200
            assert "content-length" not in response.headers
            assert response.headers["content-disposition"].startswith("attachment;")
            body = b"".join(response.iter_bytes())
        finally:
            response.close()
    lines = body.decode().splitlines()
    assert len(lines) == ROWS
    assert lines[-1].startswith(f'{{"n":{ROWS - 1},"h":"')


def test_a_late_failure_reaches_the_browser_as_a_cut_short_download(pages):
    with httpx.Client(timeout=120) as client:
        response = client.send(_export(pages, FAILS_LATE), stream=True)
        try:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in response.iter_raw():
                    pass
        finally:
            response.close()
        # The pages keep working.
        assert client.get(pages + "/sql").status_code == 200


def test_the_download_menus_offer_excel_and_csv_for_excel(pages, all_server, backend_server):
    import io
    import os
    import re

    import openpyxl

    name = "menu_" + os.urandom(3).hex()
    body = "who,n\nZoë,2\nAnn,1\n".encode()
    api_url = all_server.url if pages == all_server.url else backend_server.url
    assert httpx.put(f"{api_url}/api/datasets/{name}", content=body).status_code == 201
    with httpx.Client(base_url=pages, timeout=60) as client:
        page = client.get(f"/datasets/{name}", params={"sort": "n"}).text
        links = dict(re.findall(r'href="([^"]+)" data-testid="export-([a-z-]+)"', page))
        by_choice = {choice: href.replace("&amp;", "&") for href, choice in links.items()}
        assert {"csv", "xlsx", "csv-bom"} <= set(by_choice)
        book = client.get(by_choice["xlsx"])
        assert book.status_code == 200
        rows = list(openpyxl.load_workbook(io.BytesIO(book.content)).active.values)
        assert rows == [("who", "n"), ("Ann", 1), ("Zoë", 2)]
        marked = client.get(by_choice["csv-bom"])
        assert marked.content == b"\xef\xbb\xbf" + "who,n\nAnn,1\nZoë,2\n".encode()
        assert 'filename="' + name + '.csv"' in marked.headers["content-disposition"]
        # The SQL editor's export form takes the same menu values.
        sql = client.post(
            "/sql/export",
            data={"sql": f"SELECT * FROM {name} ORDER BY n", "format": "csv-bom", "params": "{}"},
            headers={"Origin": pages},
        )
        assert sql.content.startswith(b"\xef\xbb\xbfwho,n\nAnn,1\n")
        excel = client.post(
            "/sql/export",
            data={"sql": f"SELECT * FROM {name} ORDER BY n", "format": "xlsx", "params": "{}"},
            headers={"Origin": pages},
        )
        assert list(openpyxl.load_workbook(io.BytesIO(excel.content)).active.values)[1] == (
            "Ann",
            1,
        )


def test_a_dashboard_tile_offers_the_same_download_formats_as_the_query_pages(
    pages, all_server, backend_server
):
    import io
    import os
    import re

    import openpyxl

    tag = os.urandom(3).hex()
    api_url = all_server.url if pages == all_server.url else backend_server.url
    with httpx.Client(base_url=api_url + "/api", timeout=60) as api:
        name = f"tile_{tag}"
        body = b"city,amount\nLima,5\nOslo,7\n"
        assert api.put(f"/datasets/{name}", content=body).status_code == 201
        query = api.post(
            "/queries",
            json={
                "title": f"tile {tag}",
                "sql": f"SELECT city, amount FROM {name} WHERE city = $c",
                "parameters": [{"name": "c", "type": "text", "default": "Oslo"}],
            },
        ).json()["slug"]
        board = api.post(
            "/dashboards",
            json={
                "title": f"tile downloads {tag}",
                "parameters": [{"name": "city", "type": "text", "default": "Oslo"}],
                "tiles": [{"type": "table", "query": query, "params": {"c": "city"}}],
            },
        ).json()
        link = api.post(
            "/shares", json={"kind": "dashboard", "target": board["slug"], "name": tag}
        ).json()
    with httpx.Client(base_url=pages, timeout=60) as client:
        dataset_page = client.get(f"/datasets/{name}").text
        menu = re.findall(r'data-testid="export-([a-z-]+)"', dataset_page)
        for where in (f"/dashboards/{board['slug']}", link["path"]):
            page = client.get(where, params={"city": "Lima"})
            assert page.status_code == 200
            found = re.findall(r'href="([^"]+)" data-testid="tile-t1-export-([a-z-]+)"', page.text)
            links = {choice: href.replace("&amp;", "&") for href, choice in found}
            assert list(links) == menu, where
            book = client.get(links["xlsx"])
            assert book.status_code == 200, book.text
            values = list(openpyxl.load_workbook(io.BytesIO(book.content)).active.values)
            # The page's parameter value travels with the download.
            assert values == [("city", "amount"), ("Lima", 5)], where
            marked = client.get(links["csv-bom"])
            assert marked.content == b"\xef\xbb\xbfcity,amount\nLima,5\n", where
            assert client.get(links["parquet"]).content[:4] == b"PAR1"
