"""`myapp lake import`: an embedded workspace, made and stopped, moved into an empty lake; a
lake backend then serves its datasets, accounts, tokens, saved queries and audit."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from tests.support.accounts import ADMIN_HEADERS, Accounts, bearer, secured_env
from tests.support.servers import ServerProcess, clean_env

pytestmark = pytest.mark.lake


def lake_import(lake_backends, source, python) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "myapp", "lake", "import", "--from", str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env({**lake_backends.env(), "MYAPP_DATA_DIR": str(source.parent / "scratch")}),
    )


def test_an_embedded_workspace_moves_into_the_lake(lake_backends, tmp_path):
    python = lake_backends.python
    embedded = ServerProcess("backend", tmp_path / "embedded", env=secured_env(), python=python)
    embedded.start()
    accounts = Accounts(embedded)
    try:
        h = ADMIN_HEADERS
        made = httpx.put(
            f"{embedded.url}/api/datasets/sales", headers=h, content=b"id,v\n1,a\n2,b\n3,c\n"
        )
        assert made.status_code == 201, made.text
        name = accounts.user("editor", "moved")
        token = accounts.token(name, "editor")["token"]
        saved = httpx.post(
            f"{embedded.url}/api/queries",
            headers=h,
            json={"title": "Count", "sql": "SELECT count(*) AS n FROM sales"},
        )
        assert saved.status_code == 201, saved.text
        slug, version = saved.json()["slug"], made.json()["dataset"]["version"]
    finally:
        accounts.close()
        embedded.stop()

    done = lake_import(lake_backends, embedded.data_dir, python)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Imported 1 datasets (3 rows)" in done.stdout
    assert "accounts: 1" in done.stdout and "saved_queries: 1" in done.stdout

    backend = lake_backends.start()
    with httpx.Client(base_url=backend.url, headers=bearer(token), timeout=60) as client:
        rows = client.get("/api/datasets/sales/rows", params={"sort": "id"})
        assert rows.status_code == 200, rows.text
        assert rows.json()["rows"] == [[1, "a"], [2, "b"], [3, "c"]]
        ran = client.post(f"/api/queries/{slug}/run", json={})
        assert ran.status_code == 200 and ran.json()["rows"] == [[3]], ran.text
        versions = client.get("/api/datasets/sales/versions").json()["versions"]
        assert [(v["version"], v["action"]) for v in versions] == [(version, "imported")]
        # New rows continue after the imported ones: versions and ids do not collide.
        replaced = client.put(
            "/api/datasets/sales", params={"mode": "replace"}, content=b"id,v\n9,z\n"
        )
        assert replaced.status_code == 201, replaced.text
        assert replaced.json()["dataset"]["version"] > version
    audit = httpx.get(f"{backend.url}/api/audit", headers=ADMIN_HEADERS).json()["events"]
    assert {"dataset.created", "dataset.replaced"} <= {e["action"] for e in audit}
    newcomer = Accounts(backend)
    try:
        assert newcomer.user("viewer", "new")  # a fresh account id, no clash
    finally:
        newcomer.close()

    # A second import would mix two workspaces: refused in one line.
    again = lake_import(lake_backends, embedded.data_dir, python)
    assert again.returncode == 2, again.stdout + again.stderr
    assert "already has" in again.stderr + again.stdout
