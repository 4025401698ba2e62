"""A share link's page may be framed by the origins in MYAPP_EMBED_ORIGINS, and only those;
every other page keeps refusing frames."""

from __future__ import annotations

import httpx

from tests.support.accounts import ADMIN_HEADERS, secured_env

SALES = "city,amount\nOslo,10\n"


def test_only_share_pages_may_be_framed_and_only_by_the_listed_origins(start_server):
    server = start_server(
        "all",
        env=secured_env(MYAPP_EMBED_ORIGINS="https://intranet.example, https://wiki.example:8443"),
    )
    with httpx.Client(base_url=server.url, timeout=30) as client:
        api = {"headers": ADMIN_HEADERS}
        assert client.put("/api/datasets/embed", content=SALES, **api).status_code == 201
        saved = client.post(
            "/api/queries", json={"title": "embed", "sql": "SELECT * FROM embed"}, **api
        ).json()
        link = client.post(
            "/api/shares", json={"kind": "query", "target": saved["slug"], "name": "e"}, **api
        ).json()
        page = client.get(link["path"])
        assert page.status_code == 200
        policy = page.headers["Content-Security-Policy"]
        assert "frame-ancestors https://intranet.example https://wiki.example:8443" in policy
        assert "script-src 'self'" in policy
        assert "X-Frame-Options" not in page.headers
        for path in ("/", "/login", "/s/myapp_share_unknown"):
            other = client.get(path)
            if path.startswith("/s/"):
                assert other.status_code == 401
                assert (
                    "frame-ancestors https://intranet.example"
                    in other.headers["Content-Security-Policy"]
                )
                continue
            assert "frame-ancestors 'none'" in other.headers["Content-Security-Policy"]
            assert other.headers["X-Frame-Options"] == "DENY"
        assert client.get("/api/shared").headers["X-Frame-Options"] == "DENY"


def test_without_embed_origins_share_pages_refuse_frames_too(start_server):
    server = start_server("all", env=secured_env())
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = client.get("/s/myapp_share_unknown")
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"
