"""myapp on DuckDB 1.4 (LTS) as well as 2.x, and one workspace opened by both in turn.

The main suite runs on 2.x; these tests start backends on the cached DuckDB 1.4.4 environment
(tests/support/duckdb_env.py) and skip, saying why, if it cannot be built. The whole backend
suite runs on 1.4.4 with `$(python -m tests.support.duckdb_env) -m pytest tests/backend`.
"""

from __future__ import annotations

import csv
import io
import subprocess

import duckdb
import httpx
import pytest

from myapp.backend.store import storage
from myapp.backend.store.database import Database
from myapp.backend.store.file_format import storage_version_of
from myapp.backend.store.ingest.jsondepth import nesting_exceeds
from myapp.settings import Settings
from tests.support.duckdb_env import DUCKDB_LTS, lts_python_or_skip
from tests.support.servers import ServerProcess, clean_env, free_port

ROWS = 500
# DuckDB's storage version number of the format myapp writes (file_format.STORAGE_VERSION).
LTS_FORMAT = 67


def _csv(rows: int, offset: int = 0) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "city", "amount", "seen"])
    for i in range(offset, offset + rows):
        writer.writerow([i, ["Lyon", "Graz", "Oslo"][i % 3], f"{i * 1.5:.2f}", "2024-05-01 10:00"])
    return out.getvalue().encode()


def _backend(workdir, python=None) -> ServerProcess:
    return ServerProcess("backend", workdir, python=python).start()


def _check_workspace(api: httpx.Client, name: str, rows: int) -> None:
    """Browse, query through the workers, a saved query and an export answer as on 2.x."""
    page = api.get(f"/api/datasets/{name}/rows", params={"limit": 5, "sort": "-id"})
    assert page.status_code == 200, page.text
    assert page.json()["total"] == rows and page.json()["rows"][0][0] == rows - 1
    filtered = api.get(f"/api/datasets/{name}/rows", params={"city__eq": "Oslo", "limit": 1})
    assert filtered.json()["total"] == rows // 3
    query = api.post(
        "/api/query",
        json={
            "sql": f"SELECT city, count(*) AS n, max(seen) AS last, now() IS NOT NULL AS t "
            f"FROM {name} WHERE amount >= $low GROUP BY city ORDER BY city",
            "params": {"low": 0},
        },
    )
    assert query.status_code == 200, query.text
    assert [r[0] for r in query.json()["rows"]] == ["Graz", "Lyon", "Oslo"]
    assert sum(r[1] for r in query.json()["rows"]) == rows
    export = api.get(
        "/api/query/export", params={"sql": f"SELECT id FROM {name} ORDER BY id", "format": "csv"}
    )
    assert export.status_code == 200, export.text
    assert export.text.splitlines()[1:3] == ["0", "1"]
    # 2.x points at the `+`; 1.4 says only "at end of input", so the end is shown.
    broken = api.post("/api/query", json={"sql": "SELECT 1 +"}).json()["error"]
    assert (broken["detail"]["line"], broken["detail"]["column"]) in ((1, 10), (1, 11)), broken
    refused = api.post("/api/query", json={"sql": "SELECT * FROM read_csv('/etc/passwd')"})
    assert refused.status_code == 400 and refused.json()["error"]["code"]


def test_a_workspace_moves_between_duckdb_lts_and_2x_both_ways(tmp_path):
    lts = lts_python_or_skip()
    workdir = tmp_path / "ws"

    server = _backend(workdir, python=lts)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            assert api.put("/api/datasets/sales", content=_csv(ROWS)).status_code == 201
            _check_workspace(api, "sales", ROWS)
            saved = api.post(
                "/api/queries", json={"title": "By city", "sql": "SELECT city FROM sales"}
            )
            assert saved.status_code == 201, saved.text
            slug = saved.json()["slug"]
            assert api.post(f"/api/queries/{slug}/run", json={}).json()["row_count"] == ROWS
            # DuckDB 1.4's parser reads the files IMPORT DATABASE names: never outside the
            # sandbox, so nothing of them reaches the answer.
            dump = tmp_path / "dump"
            dump.mkdir()
            (dump / "schema.sql").write_text("CREATE TABLE t (x INT);\n")
            (dump / "load.sql").write_text("confidential-token text;\n")
            imported = api.post("/api/query", json={"sql": f"IMPORT DATABASE '{dump}'"})
            assert imported.status_code == 400, imported.text
            assert "confidential" not in imported.text and "CREATE TABLE" not in imported.text
    finally:
        assert server.stop() == 0

    # Written in the format every supported DuckDB reads.
    files = [server.data_dir / "app.db", *sorted((server.data_dir / "datasets").glob("*.duckdb"))]
    assert {storage_version_of(f) for f in files} == {(LTS_FORMAT, f"v{DUCKDB_LTS}")}

    # 2.x opens what 1.4 wrote, appends and writes a second dataset, in that format too.
    server = _backend(workdir)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            _check_workspace(api, "sales", ROWS)
            appended = api.put(
                "/api/datasets/sales", params={"mode": "append"}, content=_csv(ROWS, ROWS)
            )
            assert appended.status_code == 201, appended.text
            assert api.put("/api/datasets/more", content=_csv(30)).status_code == 201
    finally:
        assert server.stop() == 0
    written_by_2x = [f for f in (server.data_dir / "datasets").glob("*.duckdb") if f not in files]
    assert written_by_2x and all(storage_version_of(f)[0] == LTS_FORMAT for f in written_by_2x)

    # And 1.4 opens what 2.x wrote.
    server = _backend(workdir, python=lts)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as api:
            _check_workspace(api, "sales", 2 * ROWS)
            _check_workspace(api, "more", 30)
            assert api.post(f"/api/queries/{slug}/run", json={}).json()["row_count"] == 2 * ROWS
    finally:
        assert server.stop() == 0


def test_duckdb_lts_refuses_a_file_in_2x_newest_format_with_one_line(tmp_path):
    lts = lts_python_or_skip()
    data = tmp_path / "data"
    data.mkdir()
    # What DuckDB 2.x writes by default, as myapp's earlier versions did.
    with duckdb.connect(str(data / "app.db")) as conn:
        conn.execute("CREATE TABLE t AS SELECT 1 AS x")
    started = subprocess.run(
        [str(lts), "-m", "myapp", "serve", "--role", "backend", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_env({"MYAPP_DATA_DIR": str(data)}),
    )
    assert started.returncode == 1
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr
    assert "app.db was written by DuckDB v2." in lines[0]
    assert f"this DuckDB {DUCKDB_LTS} cannot read" in lines[0] and "Traceback" not in started.stdout


def test_the_main_database_and_dataset_files_are_written_in_the_lts_format(tmp_path):
    """On the DuckDB this suite runs (2.x), without a server: the instances the backend makes."""
    settings = Settings(data_dir=tmp_path / "data")
    database = Database(settings)
    database.open()
    database.close()
    dataset = settings.datasets_dir / "probe.duckdb"
    with storage.side_instance(settings, dataset) as conn:
        conn.execute("CREATE TABLE data AS SELECT 1 AS x")
    running = f"v{duckdb.__version__}"
    assert storage_version_of(settings.database_path) == (LTS_FORMAT, running)
    assert storage_version_of(dataset) == (LTS_FORMAT, running)


@pytest.mark.parametrize(
    ("body", "too_deep"),
    [
        (b'{"a": 1}\n{"b": [1, 2, {"c": 3}]}\n', False),
        (b'{"x": ' + b"[" * 127 + b"]" * 127 + b"}\n", False),
        (b'{"x": ' + b"[" * 128 + b"]" * 128 + b"}\n", True),
        (b'{"a": 1}\n{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", True),
        (b'{"x": "' + b"[" * 1000 + b'\\"[["}\n', False),  # brackets inside a string
        (b"[" + b"[]," * 1000 + b"1]\n", False),  # many siblings, shallow
        (b"[[]," * 200 + b"1" + b"]" * 200 + b"\n", True),  # deep behind siblings
        (b"\n".join([b"["] * 200 + [b"]"] * 200) + b"\n", True),  # deep across lines
        (b'{"a": [[[1]]]}', False),
        (b"", False),
    ],
)
def test_json_nesting_is_bounded_as_duckdb_2x_bounds_it(tmp_path, body, too_deep):
    """DuckDB 1.4 crashes on very deep JSON; on 1.4 loads check the depth first."""
    path = tmp_path / "f.json"
    path.write_bytes(body)
    assert nesting_exceeds(path) is too_deep
