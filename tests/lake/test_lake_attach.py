"""myapp's own way of attaching the lake (myapp/backend/lake/attach.py), from the settings:
a writer attaches it read-write; a reader (as a query worker will) attaches it read-only and
then locks itself in the sandbox, keeps seeing new commits and can change nothing."""

from __future__ import annotations

import json
import subprocess

import pytest

pytestmark = pytest.mark.lake

COMMON = """
import json, sys
import duckdb
from myapp.settings import Settings
from myapp.backend.lake.attach import ALIAS, attach, sandbox_reader
settings = Settings(catalog_url=sys.argv[1], lake_data_path=sys.argv[2])
con = duckdb.connect()
"""

WRITE = (
    COMMON
    + """
attach(con, settings, read_only=False)
rows = int(sys.argv[3])
con.execute(f"CREATE OR REPLACE TABLE {ALIAS}.sales AS SELECT range AS id FROM range({rows})")
print(json.dumps(con.execute(f"SELECT count(*) FROM {ALIAS}.sales").fetchone()[0]))
"""
)

READ = (
    COMMON
    + """
attach(con, settings, read_only=True)
sandbox_reader(con, settings)
out = {"before": con.execute(f"SELECT count(*) FROM {ALIAS}.sales").fetchone()[0]}
sys.stdout.write(json.dumps(out) + "\\n"); sys.stdout.flush()
sys.stdin.readline()  # the test writes again meanwhile
out["after"] = con.execute(f"SELECT count(*) FROM {ALIAS}.sales").fetchone()[0]
refused = {}
for name, sql in {
    "insert": f"INSERT INTO {ALIAS}.sales VALUES (1)",
    "file": "SELECT * FROM read_csv('/etc/passwd')",
    "attach": "ATTACH ':memory:' AS other (READ_ONLY)",
    "setting": "SET enable_external_access = true",
}.items():
    try:
        con.execute(sql)
        refused[name] = None
    except duckdb.Error as exc:
        refused[name] = type(exc).__name__
out["refused"] = refused
print(json.dumps(out))
"""
)


def _run(lake, script: str, *args: str) -> object:
    done = subprocess.run(
        [str(lake.python), "-c", script, lake.catalog.url, str(lake.data_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_sandboxed_read_only_reader_sees_new_commits_and_changes_nothing(lake):
    assert _run(lake, WRITE, "300") == 300
    reader = subprocess.Popen(
        [str(lake.python), "-c", READ, lake.catalog.url, str(lake.data_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(reader.stdout.readline() or "null")
        assert first == {"before": 300}, reader.stderr.read() if first is None else first
        assert _run(lake, WRITE, "450") == 450
        out, err = reader.communicate("go\n", timeout=120)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["after"] == 450
    assert all(result["refused"].values()), result["refused"]
    # DuckLake keeps its own tables in a schema of their own in the catalog database.
    tables = subprocess.run(
        ["psql", lake.catalog.url, "-tAc",
         "SELECT DISTINCT schemaname FROM pg_tables WHERE tablename LIKE 'ducklake_%'"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert tables.stdout.split() == ["ducklake"], tables
