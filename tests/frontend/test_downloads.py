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
