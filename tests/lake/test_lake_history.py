"""History in the lake mode: every change of a dataset is a version (when, who, rows, action)
that pages and exports can read and an editor can restore as the current data."""

from __future__ import annotations

import httpx
import pytest

from tests.support.accounts import ADMIN_HEADERS, PASSWORD, Accounts, bearer
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.lake


def test_versions_are_listed_read_exported_and_restored(lake_backends):
    backend = lake_backends.start()
    accounts = Accounts(backend)
    try:
        editor = accounts.token(accounts.user("editor", "ed"), "editor")["token"]
        viewer = accounts.user_token("viewer")
    finally:
        accounts.close()
    with httpx.Client(base_url=backend.url, headers=bearer(editor), timeout=60) as client:
        url = "/api/datasets/sales"
        assert client.put(url, content=b"id,v\n1,a\n2,b\n").status_code == 201
        assert client.put(url, params={"mode": "append"}, content=b"id,v\n3,c\n").status_code == 201
        replaced = client.put(url, params={"mode": "replace"}, content=b"id,v\n9,z\n")
        assert replaced.status_code == 201, replaced.text

        listed = client.get(f"{url}/versions").json()
        assert listed["kept"] is True
        steps = [(v["action"], v["row_count"]) for v in listed["versions"]]
        assert steps == [("replaced", 1), ("appended", 3), ("created", 2)]
        assert all(v["by"] and v["at"] for v in listed["versions"])
        first = listed["versions"][-1]["version"]
        assert listed["current"] == listed["versions"][0]["version"]

        # The first version, read as it was: rows, a filter, facets and an export.
        old = client.get(f"{url}/rows", params={"version": first, "sort": "id"}).json()
        assert old["rows"] == [[1, "a"], [2, "b"]] and old["total"] == 2
        filtered = client.get(f"{url}/rows", params={"version": first, "id__gt": 1}).json()
        assert filtered["rows"] == [[2, "b"]]
        facets = client.get(f"{url}/facets", params={"version": first, "column": "v"}).json()
        assert {f["value"] for f in facets["facets"]["v"]} == {"a", "b"}
        exported = client.get(f"{url}/export", params={"version": first, "format": "csv"})
        assert exported.status_code == 200 and exported.text.split() == ["id,v", "1,a", "2,b"]

        # User SQL reads it too, through the same gate: by version or by time, joined with
        # the current data, with parameters, and in an export.
        def sql(text: str, **params: object) -> httpx.Response:
            return client.post("/api/query", json={"sql": text, "params": params})

        then = sql(f"SELECT id, v FROM sales AT (VERSION => {first}) ORDER BY id")
        assert then.status_code == 200, then.text
        assert then.json()["rows"] == [[1, "a"], [2, "b"]]
        joined = sql(
            f"SELECT o.id, n.id FROM sales AS o AT (VERSION => {first}) "
            "LEFT JOIN sales AS n ON o.id = n.id WHERE o.id >= $low ORDER BY 1",
            low=2,
        )
        assert joined.status_code == 200, joined.text
        assert joined.json()["rows"] == [[2, None]]
        created_at = listed["versions"][-1]["at"]
        by_time = sql(f"SELECT count(*) FROM sales AT (TIMESTAMP => '{created_at}')")
        assert by_time.status_code == 200, by_time.text
        assert by_time.json()["rows"] == [[2]]
        exported_sql = client.get(
            "/api/query/export",
            params={"sql": f"SELECT v FROM sales AT (VERSION => {first})", "format": "csv"},
        )
        assert exported_sql.status_code == 200 and exported_sql.text.split() == ["v", "a", "b"]
        unknown = sql("SELECT * FROM sales AT (VERSION => 424242)")
        assert unknown.status_code == 400
        assert unknown.json()["error"]["code"] == "version_not_found"
        before = sql("SELECT * FROM sales AT (TIMESTAMP => '2001-01-01')")
        assert before.status_code == 400, before.text

        # The current data is untouched by reading the past.
        assert client.get(f"{url}/rows").json()["rows"] == [[9, "z"]]

        missing = client.get(f"{url}/rows", params={"version": 999999})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "version_not_found"

        # A viewer may read history but not restore it.
        refused = httpx.post(
            f"{backend.url}{url}/versions/{first}/restore", headers=bearer(viewer), timeout=60
        )
        assert refused.status_code == 403, refused.text

        restored = client.post(f"{url}/versions/{first}/restore")
        assert restored.status_code == 200, restored.text
        assert restored.json()["row_count"] == 2
        assert client.get(f"{url}/rows", params={"sort": "id"}).json()["rows"] == [
            [1, "a"],
            [2, "b"],
        ]
        query = client.post("/api/query", json={"sql": "SELECT count(*) FROM sales"})
        assert query.json()["rows"] == [[2]]
        again = client.get(f"{url}/versions").json()["versions"]
        assert [(v["action"], v["row_count"]) for v in again][:2] == [
            ("restored", 2),
            ("replaced", 1),
        ]
        # The replaced version is still there to go back to.
        latest_replace = again[1]["version"]
        back = client.get(f"{url}/rows", params={"version": latest_replace}).json()
        assert back["rows"] == [[9, "z"]]
        already = client.post(f"{url}/versions/{again[0]['version']}/restore")
        assert already.status_code == 409

        audit = httpx.get(f"{backend.url}/api/audit", headers=ADMIN_HEADERS).json()
        assert "dataset.restored" in {e["action"] for e in audit["events"]}

        # A renamed dataset keeps its history; a deleted one takes it along.
        assert client.patch(url, json={"name": "revenue"}).status_code == 200
        assert len(client.get("/api/datasets/revenue/versions").json()["versions"]) == 4
        assert client.delete("/api/datasets/revenue").status_code == 204
    assert lake_backends.psql("SELECT count(*) FROM myapp_internal.dataset_history") == [["0"]]
    # Nor does the lake keep any of its versions' tables.
    live = lake_backends.psql(
        "SELECT count(*) FROM ducklake.ducklake_table WHERE end_snapshot IS NULL"
    )
    assert live == [["0"]]


def test_the_dataset_pages_list_browse_and_restore_versions(lake_backends, tmp_path):
    backend = lake_backends.start()
    accounts = Accounts(backend)
    try:
        editor = accounts.user("editor", "pages")
    finally:
        accounts.close()
    h = ADMIN_HEADERS
    url = f"{backend.url}/api/datasets/sales"
    assert httpx.put(url, headers=h, content=b"id,v\n1,old\n").status_code == 201
    replaced = httpx.put(url, headers=h, params={"mode": "replace"}, content=b"id,v\n2,new\n")
    assert replaced.status_code == 201, replaced.text
    versions = httpx.get(f"{url}/versions", headers=h).json()["versions"]
    first = versions[-1]["version"]

    web = ServerProcess(
        "frontend",
        tmp_path / "frontend",
        env={"MYAPP_BACKEND_URL": backend.url, "MYAPP_SECRET_KEY": "k" * 32},
    ).start()
    try:
        with httpx.Client(base_url=web.url, headers={"Origin": web.url}, timeout=60) as client:
            assert client.get("/login").status_code == 200
            signed = client.post("/login", data={"username": editor, "password": PASSWORD})
            assert signed.status_code == 302, signed.text[:300]
            table = client.get("/datasets/sales")
            assert 'data-testid="versions-link"' in table.text
            page = client.get("/datasets/sales/versions")
            assert page.status_code == 200, page.text[:500]
            assert f'data-testid="version-{first}"' in page.text and "replaced" in page.text
            old = client.get("/datasets/sales", params={"version": first})
            assert old.status_code == 200 and 'data-testid="old-version"' in old.text
            assert ">old<" in old.text and ">new<" not in old.text
            restored = client.post(f"/datasets/sales/versions/{first}/restore")
            assert restored.status_code == 302, restored.text[:300]
            after = client.get("/datasets/sales/versions")
            assert "restored" in after.text and "is the current data again" in after.text
        rows = httpx.get(f"{url}/rows", headers=h).json()["rows"]
        assert rows == [[1, "old"]]
    finally:
        web.kill()
