"""The table page's HTML, made in process from canned backend answers, is the same whichever
way its pieces are built: links whose base address is built once per request (table_links)
against url_for for every link."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from myapp.frontend.api_client import ApiClient, BackendError
from myapp.frontend.app import create_web
from myapp.frontend.views import table_links
from myapp.settings import load_settings

COLUMNS = [
    {"name": "id", "type": "BIGINT"},
    {"name": "v", "type": "DOUBLE"},
    {"name": "category", "type": "VARCHAR"},
    {"name": "at", "type": "TIMESTAMP"},
    {"name": "flag", "type": "BOOLEAN"},
]


class _Canned(ApiClient):
    """The backend's answers for two datasets, one of them with a name that needs quoting."""

    def get(self, path: str, params: Any = None, headers: Any = None, **_: Any) -> Any:
        if path == "/api/auth/me":
            return {"user": None, "role": "admin", "via": "open", "open_mode": True}
        for name in ("big", "Grüße & co"):
            base = "/api/datasets/" + quote(name, safe="")
            if path == base:
                return {
                    "name": name,
                    "row_count": 5_000_000,
                    "columns": COLUMNS,
                    "source": {"filename": "big.parquet", "format": "parquet", "bytes": 1234},
                    "created_at": "2024-01-01T00:00:00",
                    "updated_at": "2024-01-02T00:00:00",
                }
            if path == base + "/rows":
                given = dict(params or [])
                start = int(given.get("offset", "0"))
                rows = [
                    [
                        i,
                        i / 7 if i % 3 else None,
                        f"c<{i % 4}>",
                        f"2024-01-01T00:00:0{i % 10}",
                        i % 2 == 0,
                    ]
                    for i in range(start, start + int(given.get("limit", "50")))
                ]
                return {
                    "columns": COLUMNS,
                    "rows": rows,
                    "next": "tok&en" if start < 100 else None,
                    "total": 5_000_000,
                    "total_exact": True,
                    "offset": start,
                    "limit": len(rows),
                }
            if path == base + "/facets":
                columns = [v for k, v in params if k == "column"]
                return {
                    "facets": {
                        c: [{"value": f"x{i}", "count": 10 - i} for i in range(3)] for c in columns
                    },
                    "pending": [],
                }
        raise BackendError(404, "dataset_not_found", "No such dataset.")


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    settings = load_settings(data_dir=tmp_path_factory.mktemp("render") / "data")
    app = create_web(settings, _Canned("http://127.0.0.1:9"))
    return app.test_client()


STATES = [
    "",
    "?sort=-v&limit=25",
    "?category__eq=c%3C1%3E&q=a+b&facet=category&facet=flag",
    "?offset=150&sort=at&v__gt=1",
    "?cursor=abc&flag__isnull=1&limit=100",
]


@pytest.mark.parametrize("name", ["big", "Grüße & co"])
def test_links_built_once_per_request_are_url_fors(web, name, monkeypatch):
    pages = []
    for built_once in (True, False):
        if not built_once:
            monkeypatch.setattr(
                table_links,
                "_endpoint_url",
                lambda endpoint, name: table_links.url_for(endpoint, name=name),
            )
        pages.append([web.get("/datasets/" + quote(name, safe="") + state) for state in STATES])
    for memo, plain in zip(*pages, strict=True):
        assert memo.status_code == plain.status_code == 200
        assert memo.data == plain.data
    assert b"/datasets/Gr%C3%BC%C3%9Fe%20&amp;%20co/export?" in pages[0][0].data or name == "big"
