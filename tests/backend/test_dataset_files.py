"""Each dataset lives in a DuckDB file of its own (store/storage.py): what users notice of it.

Deleting or replacing a dataset gives its disk space back; the files are reachable from SQL only
through the dataset's name; a workspace from before files of their own is moved into them at
start without losing a row; files no dataset names are removed at start.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import duckdb
import httpx
import pytest

from myapp.backend.store import schema
from myapp.backend.store.storage import FilePins
from myapp.settings import load_settings


def data_files(server) -> list[str]:
    return sorted(p.name for p in (server.data_dir / "datasets").iterdir())


def csv(rows: int) -> bytes:
    return ("id,word\n" + "".join(f"{i},w{i % 7}\n" for i in range(rows))).encode()


def test_delete_and_replace_give_the_space_back(start_server):
    server = start_server("backend")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.put("/api/datasets/big", content=csv(50_000)).status_code == 201
        assert client.put("/api/datasets/small", content=csv(10)).status_code == 201
        assert len(data_files(server)) == 2
        before = data_files(server)
        replaced = client.put("/api/datasets/big", content=csv(20), params={"mode": "replace"})
        assert replaced.status_code == 201
        after = data_files(server)
        # The old version's file is gone, a new one holds the new rows.
        assert len(after) == 2 and set(after) != set(before)
        appended = client.put("/api/datasets/big", content=csv(5), params={"mode": "append"})
        assert appended.json()["dataset"]["row_count"] == 25
        assert len(data_files(server)) == 2
        assert client.delete("/api/datasets/big").status_code == 204
        assert client.delete("/api/datasets/small").status_code == 204
        assert data_files(server) == []


def test_sql_reaches_a_dataset_only_by_its_name(start_server):
    server = start_server("backend")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.put("/api/datasets/words", content=csv(100)).status_code == 201
        (file_name,) = data_files(server)
        attached = "myapp_ds_" + file_name.removesuffix(".duckdb")
        for sql in (
            f"SELECT * FROM {attached}.data",
            f"SELECT * FROM {attached}.main.data",
            f'SELECT count(*) FROM "{attached}"."main"."data"',
        ):
            answer = client.post("/api/query", json={"sql": sql})
            assert answer.status_code == 400, sql
            assert answer.json()["error"]["code"] == "table_not_allowed"
        # The files' table is called `data`, a common CTE name, which stays usable.
        answer = client.post(
            "/api/query",
            json={"sql": "WITH data AS (SELECT id FROM words WHERE id < 3) SELECT * FROM data"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["rows"] == [[0], [1], [2]]
        tables = client.post("/api/query", json={"sql": "SHOW TABLES"}).json()["rows"]
        assert tables == [["words"]]


def _old_workspace(data_dir) -> None:
    """A workspace as myapp wrote it before datasets had files: tables in the main database."""
    data_dir.mkdir(parents=True)
    # Without datasets-0002 (data files) and every later datasets migration, which came after.
    old = [
        m
        for m in schema.MIGRATIONS
        if not (m.id.startswith("datasets-") and m.id >= "datasets-0002")
    ]
    with duckdb.connect(str(data_dir / "app.db")) as conn:
        conn.execute(f"CREATE SCHEMA {schema.INTERNAL_SCHEMA}")
        conn.execute(
            f"CREATE TABLE {schema.internal('migrations')} (id VARCHAR PRIMARY KEY, "
            "applied_at TIMESTAMPTZ NOT NULL)"
        )
        for migration in old:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {schema.internal('migrations')} VALUES (?, ?)",
                [migration.id, datetime.now(UTC)],
            )
        conn.execute(
            "CREATE TABLE main.sales AS SELECT range AS id, (range * 1.5)::DOUBLE AS amount, "
            "'city ' || (range % 4) AS city FROM range(12345)"
        )
        conn.execute(
            f"INSERT INTO {schema.internal('datasets')} VALUES ('sales', 12345, 1, 'sales.csv', "
            "'csv', NULL, 999, now(), now(), NULL, NULL)"
        )
    # A file no dataset names, as a load cut short by a crash leaves it.
    (data_dir / "datasets").mkdir()
    (data_dir / "datasets" / "0123456789abcdef0123456789abcdef.duckdb").write_bytes(b"half")


def test_an_older_workspace_moves_into_files_at_start(start_server, tmp_path):
    data_dir = tmp_path / "data"
    _old_workspace(data_dir)
    server = start_server("backend", workdir=tmp_path)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        dataset = client.get("/api/datasets/sales").json()
        assert dataset["row_count"] == 12345
        assert [c["name"] for c in dataset["columns"]] == ["id", "amount", "city"]
        answer = client.post(
            "/api/query", json={"sql": "SELECT count(*), sum(amount), max(city) FROM sales"}
        )
        assert answer.json()["rows"] == [[12345, 114290010.0, "city 3"]]
        page = client.get("/api/datasets/sales/rows", params={"limit": 2, "sort": "-id"}).json()
        assert page["rows"] == [[12344, 18516.0, "city 0"], [12343, 18514.5, "city 3"]]
    (moved,) = data_files(server)
    assert moved != "0123456789abcdef0123456789abcdef.duckdb"
    assert server.stop() == 0
    with duckdb.connect(str(data_dir / "app.db"), read_only=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main'"
        ).fetchone() == (0,)
        file_id = conn.execute("SELECT file_id FROM myapp_internal.datasets").fetchone()[0]
    assert moved == f"{file_id}.duckdb"


def test_a_replaced_file_waits_for_the_export_reading_it(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data")
    settings.datasets_dir.mkdir(parents=True)
    pins = FilePins()
    path = settings.datasets_dir / "f1.duckdb"
    path.write_bytes(b"x")
    assert pins.pin("f1")
    pins.retire(settings, "f1")
    assert path.exists(), "deleted while an export still reads it"
    assert not pins.pin("f1"), "a retired file must not be handed to a new export"
    pins.unpin("f1")
    assert not path.exists()
    # Unpinned files go at once.
    path.write_bytes(b"x")
    pins.retire(settings, "f1")
    assert not path.exists()


@pytest.mark.parametrize("mode", ["replace", "append"])
def test_a_failed_change_keeps_the_dataset_and_leaves_no_file(start_server, mode):
    server = start_server("backend")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.put("/api/datasets/kept", content=csv(10)).status_code == 201
        before = data_files(server)
        # A PDF named as CSV: refused (a few control bytes alone no longer make a file binary).
        bad = b"id,word\nnot a number,x\n" if mode == "append" else b"%PDF-1.4\n\x00\x01\x02junk"
        answer = client.put(
            "/api/datasets/kept", content=bad, params={"mode": mode, "format": "csv"}
        )
        assert 400 <= answer.status_code < 500, answer.text
        assert data_files(server) == before
        assert client.get("/api/datasets/kept").json()["row_count"] == 10


def test_many_exports_at_once_take_turns_and_all_finish(start_server):
    # More exports than side-instance slots (storage.SIDE_INSTANCE_SLOTS): the rest wait
    # their turn instead of each taking its own memory budget at once.
    server = start_server("backend")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.put("/api/datasets/many", content=csv(20_000)).status_code == 201

    def export(i: int) -> tuple[int, int]:
        with httpx.Client(base_url=server.url, timeout=120) as own:
            answer = own.get(
                "/api/query/export",
                params={"sql": f"SELECT * FROM many WHERE id % 10 <> {i % 10}", "format": "csv"},
            )
            return answer.status_code, len(answer.text.splitlines())

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(export, range(12)))
    # 18,000 rows each and a header line.
    assert results == [(200, 18_001)] * 12
    assert list((server.data_dir / ".exports").iterdir()) == []


def test_exporting_one_dataset_again_and_again_never_hangs(start_server):
    # Each export attaches the dataset's file in a new side instance while the main instance
    # has it attached too; one way of attaching spun forever after 4 to 42 rounds.
    server = start_server("backend")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.put("/api/datasets/again", content=csv(100)).status_code == 201
        for _ in range(50):
            answer = client.get("/api/datasets/again/export", params={"format": "csv"})
            assert answer.status_code == 200 and len(answer.text.splitlines()) == 101


def test_a_big_dataset_export_downloads_whole_while_the_dataset_is_replaced(start_server):
    # The export streams while DuckDB still writes it (no length yet); a replace meanwhile
    # does not disturb it: the download holds every row of the version it started on.
    server = start_server("backend")
    rows = 600_000
    with httpx.Client(base_url=server.url, timeout=120) as client:
        assert client.put("/api/datasets/moving", content=csv(rows)).status_code == 201
        with client.stream(
            "GET", "/api/datasets/moving/export", params={"format": "ndjson"}
        ) as response:
            assert response.status_code == 200
            assert "content-length" not in response.headers
            chunks = response.iter_bytes()
            body = bytearray(next(chunks))
            replaced = client.put(
                "/api/datasets/moving", content=csv(10), params={"mode": "replace"}
            )
            assert replaced.status_code == 201, replaced.text
            for chunk in chunks:
                body += chunk
        lines = body.decode().splitlines()
        assert len(lines) == rows
        assert (
            lines[0] == '{"id":0,"word":"w0"}'
            and lines[-1] == f'{{"id":{rows - 1},"word":"w{(rows - 1) % 7}"}}'
        )
        assert client.get("/api/datasets/moving").json()["row_count"] == 10
    # The old version's file goes once the export is done with it.
    deadline = time.monotonic() + 10
    while len(data_files(server)) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(data_files(server)) == 1
