"""A backend in the lake mode: datasets are DuckLake tables (catalog in PostgreSQL, Parquet under
the data path), changed all or nothing, read by pages, SQL and exports through the usual gate
and worker processes."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.support.accounts import ADMIN_HEADERS
from tests.support.servers import clean_env, free_port

pytestmark = pytest.mark.lake

CSV = b"id,name,amount\n1,a,10\n2,b,20\n3,c,30\n"


def put(client: httpx.Client, name: str, body: bytes, mode: str = "create") -> httpx.Response:
    return client.put(f"/api/datasets/{name}", params={"mode": mode}, content=body)


def sql(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/api/query", json={"sql": text})


def live_lake_tables(lake_backends) -> list[str]:
    return [
        row[0]
        for row in lake_backends.psql(
            "SELECT table_name FROM ducklake.ducklake_table WHERE end_snapshot IS NULL"
        )
    ]


def test_a_dataset_lives_in_the_lake_from_upload_to_delete(lake_backends):
    backend = lake_backends.start()
    with httpx.Client(base_url=backend.url, headers=ADMIN_HEADERS, timeout=60) as client:
        created = put(client, "sales", CSV)
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["action"] == "created" and body["dataset"]["row_count"] == 3
        assert [c["name"] for c in body["dataset"]["columns"]] == ["id", "name", "amount"]

        # The rows are Parquet files under the data path, the catalog rows in PostgreSQL, and
        # nothing of the dataset stays in the backend's own data directory.
        assert list(lake_backends.data_path.rglob("*.parquet"))
        assert lake_backends.psql("SELECT name, row_count FROM myapp_internal.datasets") == [
            ["sales", "3"]
        ]
        assert not list((backend.data_dir / "datasets").glob("*.duckdb"))

        rows = client.get("/api/datasets/sales/rows", params={"sort": "-amount"}).json()
        assert rows["rows"][0] == [3, "c", 30] and rows["total"] == 3
        assert sql(client, "SELECT sum(amount) AS s FROM sales").json()["rows"] == [[60]]

        appended = put(client, "sales", CSV, mode="append")
        assert appended.status_code == 201, appended.text
        assert appended.json()["dataset"]["row_count"] == 6
        assert sql(client, "SELECT count(*) FROM sales").json()["rows"] == [[6]]

        replaced = put(client, "sales", b"id,name,amount\n9,z,90\n", mode="replace")
        assert replaced.status_code == 201, replaced.text
        assert sql(client, "SELECT * FROM sales").json()["rows"] == [[9, "z", 90]]

        renamed = client.patch("/api/datasets/sales", json={"name": "revenue"})
        assert renamed.status_code == 200, renamed.text
        assert renamed.json()["columns"], renamed.json()
        assert sql(client, "SELECT amount FROM revenue").json()["rows"] == [[90]]
        gone = sql(client, "SELECT * FROM sales")
        assert gone.status_code == 400 and "sales" in gone.json()["error"]["message"]

        facets = client.get("/api/datasets/revenue/facets", params={"column": "name"}).json()
        assert facets["facets"]["name"] == [{"value": "z", "count": 1}]
        profile = client.get("/api/datasets/revenue/profile").json()
        assert {c["name"]: c["max"] for c in profile["columns"]}["amount"] == 90
        export = client.get(
            "/api/query/export", params={"sql": "SELECT * FROM revenue", "format": "csv"}
        )
        assert export.status_code == 200 and export.text.splitlines() == [
            "id,name,amount",
            "9,z,90",
        ]

        # Its Parquet file by URL (made once per version, from the lake table).
        parquet = client.get("/api/datasets/revenue/data.parquet")
        assert parquet.status_code == 200 and parquet.content[:4] == b"PAR1", parquet.text[:200]

        assert client.delete("/api/datasets/revenue").status_code == 204
        assert client.get("/api/datasets").json()["datasets"] == []
        assert client.get("/api/datasets/revenue/rows").status_code == 404
        assert lake_backends.psql("SELECT count(*) FROM myapp_internal.datasets") == [["0"]]


def test_the_embedded_backup_is_refused_with_what_to_do_instead(lake_backends):
    backend = lake_backends.start()
    refused = httpx.post(f"{backend.url}/api/admin/backup", headers=ADMIN_HEADERS, timeout=60)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "backup_not_in_lake_mode" and "pg_dump" in error["message"]


def test_a_load_that_fails_changes_nothing(lake_backends):
    backend = lake_backends.start()
    with httpx.Client(base_url=backend.url, headers=ADMIN_HEADERS, timeout=60) as client:
        assert put(client, "sales", CSV).status_code == 201
        tables = live_lake_tables(lake_backends)
        # Columns that do not match: refused before anything is swapped in.
        bad = put(client, "sales", b"other,columns\n1,2\n", mode="append")
        assert bad.status_code in (409, 422), bad.text
        assert bad.json()["error"]["code"]
        taken = put(client, "sales", CSV)
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "dataset_exists"
        assert sql(client, "SELECT count(*) FROM sales").json()["rows"] == [[3]]
        # No lake table was left behind by the refused loads.
        assert live_lake_tables(lake_backends) == tables


def test_user_sql_cannot_reach_the_lake_or_the_catalog_directly(lake_backends):
    backend = lake_backends.start()
    with httpx.Client(base_url=backend.url, headers=ADMIN_HEADERS, timeout=60) as client:
        assert put(client, "sales", CSV).status_code == 201
        file_id = lake_backends.psql("SELECT file_id FROM myapp_internal.datasets")[0][0]
        for text in (
            f"SELECT * FROM myapp_lake.main.ds_{file_id}",
            "SELECT * FROM myapp_internal.tokens",
            "SELECT * FROM myapp_internal.accounts",
            "SELECT * FROM postgres_query('myapp_internal', 'SELECT 1')",
            "SELECT * FROM ducklake_snapshots('myapp_lake')",
            "SELECT * FROM read_parquet('" + str(lake_backends.data_path) + "/**/*.parquet')",
        ):
            refused = sql(client, text)
            assert refused.status_code == 400, (text, refused.text)
            assert refused.json()["error"]["code"], text


def test_a_backend_given_another_data_path_exits_2_in_one_line(lake_backends, tmp_path):
    first = lake_backends.start()
    assert first.proc is not None and first.proc.poll() is None
    other = tmp_path / "elsewhere"
    other.mkdir()
    env = clean_env(lake_backends.env(MYAPP_LAKE_DATA_PATH=str(other)))
    env["MYAPP_DATA_DIR"] = str(tmp_path / "second-data")
    done = subprocess.run(
        [str(lake_backends.python), "-m", "myapp", "serve", "--role", "backend",
         "--port", str(free_port())],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1 and lines[0].startswith("myapp: MYAPP_LAKE_DATA_PATH"), lines
    assert lake_backends.catalog.password not in lines[0]


ORPHANS = """
import json, sys, time
from myapp.settings import Settings
from myapp.backend.store.database import Database
from myapp.backend.lake import engine
settings = Settings(data_dir=sys.argv[1], catalog_url=sys.argv[2], lake_data_path=sys.argv[3])
db = Database(settings)
db.open()
try:
    with db.cursor() as cur:
        # What a backend killed between publishing a load and committing it leaves behind.
        cur.execute("CREATE TABLE myapp_lake.main.ds_leftover AS SELECT 1 AS a")
        young = engine.drop_orphans(cur)
        engine.ORPHAN_AGE_S = 0
        time.sleep(1.1)
        old = engine.drop_orphans(cur)
        rows = cur.execute("SELECT count(*) FROM sales").fetchone()[0]
finally:
    db.close()
print(json.dumps({"young": young, "old": old, "rows": rows}))
"""


def test_lake_tables_no_dataset_names_are_dropped_once_old(lake_backends, tmp_path):
    backend = lake_backends.start()
    with httpx.Client(base_url=backend.url, headers=ADMIN_HEADERS, timeout=60) as client:
        assert put(client, "sales", CSV).status_code == 201
        assert put(client, "sales", CSV, mode="replace").status_code == 201
    backend.kill()
    done = subprocess.run(
        [str(lake_backends.python), "-c", ORPHANS, str(tmp_path / "data"),
         lake_backends.catalog.url, str(lake_backends.data_path)],
        capture_output=True, text=True, timeout=120, env=clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    # Young leftovers may be a load about to commit; old ones go; datasets and versions stay.
    assert result == {"young": [], "old": ["ds_leftover"], "rows": 3}, result
