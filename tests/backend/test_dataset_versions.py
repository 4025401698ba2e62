"""The versions of a dataset in the embedded mode: only the current data is kept, so the list
has one entry, an older version is a clear 404 and restoring is refused (the lake mode keeps
them: tests/lake/test_lake_history.py)."""

from __future__ import annotations

import uuid


def test_the_embedded_mode_lists_the_current_version_only(api):
    name = f"ver_{uuid.uuid4().hex[:8]}"
    made = api.put(f"/api/datasets/{name}", content=b"id\n1\n2\n")
    assert made.status_code == 201, made.text
    current = made.json()["dataset"]["version"]
    try:
        listed = api.get(f"/api/datasets/{name}/versions").json()
        assert listed["kept"] is False and listed["current"] == current
        assert [(v["version"], v["action"], v["row_count"]) for v in listed["versions"]] == [
            (current, "current", 2)
        ]
        same = api.get(f"/api/datasets/{name}/rows", params={"version": current})
        assert same.status_code == 200 and same.json()["total"] == 2
        # A version it never had (versions are unique across datasets, so never reused).
        older = api.get(f"/api/datasets/{name}/rows", params={"version": current + 1000})
        assert older.status_code == 404
        assert older.json()["error"]["code"] == "version_not_found"
        refused = api.post(f"/api/datasets/{name}/versions/{current}/restore")
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "history_not_kept"
        assert api.get("/api/datasets/nope_nope/versions").status_code == 404
    finally:
        api.delete(f"/api/datasets/{name}")
