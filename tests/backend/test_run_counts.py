"""When saved queries and dashboards last ran, and how often, kept in the catalog: counted from
every way they run (the query's own run and export, dashboard tiles), on a workspace made by
the version before runs were counted, and still there after a restart or a crash."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import duckdb
import httpx

from myapp.backend.store import runlog, schema
from tests.support.servers import ServerProcess

NEW = {"queries-0002-runs", "dashboards-0002-runs"}


def _previous_version_workspace(data_dir) -> None:
    """A workspace as the version before run counts wrote it: a saved query and a dashboard."""
    data_dir.mkdir(parents=True)
    with duckdb.connect(str(data_dir / "app.db")) as conn:
        conn.execute(f"CREATE SCHEMA {schema.INTERNAL_SCHEMA}")
        conn.execute(
            f"CREATE TABLE {schema.internal('migrations')} (id VARCHAR PRIMARY KEY, "
            "applied_at TIMESTAMPTZ NOT NULL)"
        )
        for migration in schema.MIGRATIONS:
            if migration.id in NEW:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {schema.internal('migrations')} VALUES (?, ?)",
                [migration.id, datetime.now(UTC)],
            )
        conn.execute(
            f"INSERT INTO {schema.internal('saved_queries')} VALUES ('old-one', 1, now(), NULL)"
        )
        conn.execute(
            f"INSERT INTO {schema.internal('saved_query_versions')} VALUES ('old-one', 1, "
            "'Old one', '', 'SELECT 42 AS answer', '[]', NULL, now(), NULL)"
        )
        conn.execute(
            f"INSERT INTO {schema.internal('dashboards')} VALUES ('old-board', 1, now(), NULL)"
        )
        conn.execute(
            f"INSERT INTO {schema.internal('dashboard_versions')} VALUES ('old-board', 1, "
            '\'Old board\', \'\', \'[]\', \'[{"id": "t1", "type": "number", "query": '
            '"old-one", "width": 12, "params": {}}]\', now(), NULL)'
        )


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def listed(client: httpx.Client, kind: str, slug: str) -> dict:
    key = "queries" if kind == "query" else "dashboards"
    (item,) = [i for i in ok(client.get(f"/{key}"))[key] if i["slug"] == slug]
    return item


def test_runs_are_counted_kept_and_survive_restarts(tmp_path):
    data = tmp_path / "data"
    _previous_version_workspace(data)
    server = ServerProcess("backend", tmp_path).start()
    try:
        with httpx.Client(base_url=server.url + "/api", timeout=30) as client:
            before = listed(client, "query", "old-one")
            assert before["run_count"] == 0 and before["last_run_at"] is None
            assert ok(client.get("/recent-runs"))["runs"] == []
            assert ok(client.post("/queries/old-one/run", json={}))["rows"] == [[42]]
            ok(client.post("/queries/old-one/run", json={}))
            export = client.get("/queries/old-one/export", params={"format": "csv"})
            assert export.status_code == 200 and export.text.splitlines() == ["answer", "42"]
            tile = ok(client.post("/dashboards/old-board/tiles/t1/run", json={}))
            assert tile["result"]["rows"] == [[42]]
            # Listed at once, written or not yet: two runs, an export and the tile's run.
            query = listed(client, "query", "old-one")
            assert query["run_count"] == 4 and query["last_run_at"] is not None
            board = listed(client, "dashboard", "old-board")
            assert board["run_count"] == 1 and board["last_run_at"] >= query["updated_at"]
            runs = ok(client.get("/recent-runs"))["runs"]
            # The tile's query ran just after its dashboard was noted.
            assert [(r["kind"], r["slug"], r["count"]) for r in runs] == [
                ("query", "old-one", 4),
                ("dashboard", "old-board", 1),
            ]
            # Refused runs are not runs.
            assert client.post("/queries/nope/run", json={}).status_code == 404
        assert server.stop() == 0  # a clean stop writes what was pending

        with duckdb.connect(str(data / "app.db"), read_only=True) as conn:
            applied = {
                r[0] for r in conn.execute("SELECT id FROM myapp_internal.migrations").fetchall()
            }
            assert applied >= NEW
            stored = conn.execute(
                "SELECT run_count, last_run_at IS NOT NULL FROM myapp_internal.saved_queries"
            ).fetchall()
        assert stored == [(4, True)]

        server = ServerProcess("backend", tmp_path).start()
        with httpx.Client(base_url=server.url + "/api", timeout=30) as client:
            assert listed(client, "query", "old-one")["run_count"] == 4
            assert listed(client, "dashboard", "old-board")["run_count"] == 1
            ok(client.post("/queries/old-one/run", json={}))
            # The next run after the flush interval writes both, with no clean stop after it.
            time.sleep(runlog.FLUSH_INTERVAL_S + 0.2)
            ok(client.post("/queries/old-one/run", json={}))
        server.kill()
        server = ServerProcess("backend", tmp_path).start()
        with httpx.Client(base_url=server.url + "/api", timeout=30) as client:
            assert listed(client, "query", "old-one")["run_count"] == 6
            runs = ok(client.get("/recent-runs"))["runs"]
            assert runs[0]["slug"] == "old-one" and runs[0]["count"] == 6
    finally:
        server.kill()
