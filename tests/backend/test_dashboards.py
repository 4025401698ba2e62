"""Dashboards over a real backend: tiles follow the dashboard's parameters, results are cached
until a dataset they read changes, versions, roles, audit lines, and a workspace from before
dashboards opening intact."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import httpx
import pytest

from myapp.backend.store import schema
from tests.support.accounts import ADMIN_HEADERS, Accounts, bearer, secured_env
from tests.support.servers import ServerProcess

SALES = "city,amount,day\nOslo,10,2024-01-01\nOslo,20,2024-02-01\nLima,5,2024-01-15\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess("backend", tmp_path_factory.mktemp("dash"), env=secured_env()).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def admin(server):
    with httpx.Client(base_url=server.url + "/api", headers=ADMIN_HEADERS, timeout=30) as client:
        yield client


def ok(response: httpx.Response, status: int = 200) -> dict:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def make_queries(admin, prefix: str) -> tuple[str, str, str]:
    """Three saved queries over the dataset `<prefix>`, each with a city parameter."""
    total = ok(
        admin.post(
            "/queries",
            json={
                "title": f"{prefix} total",
                "sql": f"SELECT sum(amount) AS total, count(*) AS n FROM {prefix} "
                "WHERE city = $city",
                "parameters": [{"name": "city", "type": "text", "default": "Oslo"}],
            },
        ),
        201,
    )["slug"]
    by_day = ok(
        admin.post(
            "/queries",
            json={
                "title": f"{prefix} by day",
                "sql": f"SELECT day, amount FROM {prefix} WHERE city = $town ORDER BY day",
                "parameters": [{"name": "town", "type": "text", "default": "Oslo"}],
                "chart": {"type": "bar", "x": "day", "y": ["amount"]},
            },
        ),
        201,
    )["slug"]
    rows = ok(
        admin.post(
            "/queries",
            json={
                "title": f"{prefix} rows",
                "sql": f"SELECT city, amount FROM {prefix} WHERE city = $c ORDER BY amount",
                "parameters": [{"name": "c", "type": "text"}],
            },
        ),
        201,
    )["slug"]
    return total, by_day, rows


def make_dashboard(admin, prefix: str) -> dict:
    ok(admin.put(f"/datasets/{prefix}", content=SALES), 201)
    total, by_day, rows = make_queries(admin, prefix)
    return ok(
        admin.post(
            "/dashboards",
            json={
                "title": f"{prefix} board",
                "parameters": [{"name": "city", "type": "text", "default": "Oslo"}],
                "tiles": [
                    {"type": "number", "query": total, "params": {"city": "city"}, "width": 4},
                    {"type": "chart", "query": by_day, "params": {"town": "city"}, "width": 8},
                    {"type": "table", "query": rows, "params": {"c": "city"}, "width": 12},
                    {"type": "text", "text": "# Notes", "width": 12},
                ],
            },
        ),
        201,
    )


def run(client, slug: str, tile: str, **body) -> httpx.Response:
    return client.post(f"/dashboards/{slug}/tiles/{tile}/run", json=body)


def test_every_tile_follows_the_shared_parameter(admin):
    board = make_dashboard(admin, "follow")
    assert [t["id"] for t in board["tiles"]] == ["t1", "t2", "t3", "t4"]
    slug = board["slug"]
    number = ok(run(admin, slug, "t1"))
    assert number["params"] == {"city": "Oslo"} and number["result"]["rows"] == [[30, 2]]
    number = ok(run(admin, slug, "t1", params={"city": "Lima"}))
    assert number["result"]["rows"] == [[5, 1]]
    chart = ok(run(admin, slug, "t2", params={"city": "Lima"}))
    assert chart["params"] == {"town": "Lima"} and chart["chart"]["type"] == "bar"
    assert len(chart["result"]["rows"]) == 1
    table = ok(run(admin, slug, "t3", params={"city": "Lima"}))
    assert table["params"] == {"c": "Lima"} and table["result"]["rows"] == [["Lima", 5]]
    text = run(admin, slug, "t4")
    assert ok(text, 400)["error"]["code"] == "tile_not_runnable"
    unknown = run(admin, slug, "t1", params={"town": "Lima"})
    assert ok(unknown, 400)["error"]["code"] == "unknown_parameter"
    assert ok(run(admin, slug, "nope"), 404)["error"]["code"] == "tile_not_found"
    runs = ok(admin.get("/recent-runs"))["runs"]
    assert {"kind": "dashboard", "slug": slug} in [
        {k: r[k] for k in ("kind", "slug")} for r in runs
    ]
    assert any(r["kind"] == "query" and r["slug"] == board["tiles"][2]["query"] for r in runs)


def test_a_dashboard_that_names_what_does_not_exist_is_refused(admin):
    board = make_dashboard(admin, "refuse")
    tiles = board["tiles"]
    cases = [
        {"type": "table", "query": "no-such-query"},
        {"type": "table", "query": tiles[0]["query"], "params": {"nope": "city"}},
        {"type": "table", "query": tiles[0]["query"], "params": {"city": "nope"}},
        {"type": "chart", "query": tiles[2]["query"]},  # a query without a chart
    ]
    for tile in cases:
        response = admin.put(f"/dashboards/{board['slug']}", json={"title": "x", "tiles": [tile]})
        assert ok(response, 422)["error"]["code"] == "invalid_dashboard", tile
    bad = admin.post("/dashboards", json={"title": "x", "tiles": [{"type": "text"}]})
    assert bad.status_code == 422
    assert ok(admin.get(f"/dashboards/{board['slug']}"))["version"] == 1


def test_results_are_cached_until_a_dataset_they_read_changes(admin):
    board = make_dashboard(admin, "cached")
    slug = board["slug"]
    first = ok(run(admin, slug, "t1"))
    assert first["cached"] is False
    again = ok(run(admin, slug, "t1"))
    assert again["cached"] is True and again["result"] == first["result"]
    assert ok(run(admin, slug, "t1", refresh=True))["cached"] is False
    # Other values are another entry.
    assert ok(run(admin, slug, "t1", params={"city": "Lima"}))["cached"] is False

    appended = admin.put(
        "/datasets/cached",
        params={"mode": "append"},
        content="city,amount,day\nOslo,1,2024-03-01\n",
    )
    ok(appended, 201)
    after_append = ok(run(admin, slug, "t1"))
    assert after_append["cached"] is False and after_append["result"]["rows"] == [[31, 3]]
    assert ok(run(admin, slug, "t1"))["cached"] is True

    ok(
        admin.put(
            "/datasets/cached", params={"mode": "replace"}, content=SALES.replace("10", "100")
        ),
        201,
    )
    after_replace = ok(run(admin, slug, "t1"))
    assert after_replace["cached"] is False and after_replace["result"]["rows"] == [[120, 2]]

    ok(admin.delete("/datasets/cached"), 204)
    gone = run(admin, slug, "t1")
    assert gone.status_code == 400, gone.text

    ok(admin.put("/datasets/cached", content="city,amount,day\nOslo,7,2024-01-01\n"), 201)
    uploaded = ok(run(admin, slug, "t1"))
    assert uploaded["cached"] is False and uploaded["result"]["rows"] == [[7, 1]]

    ok(admin.patch("/datasets/cached", json={"name": "cached_renamed"}))
    assert run(admin, slug, "t1").status_code == 400
    ok(admin.patch("/datasets/cached_renamed", json={"name": "cached"}))
    assert ok(run(admin, slug, "t1"))["cached"] is False


def test_editing_a_saved_query_changes_the_tile(admin):
    board = make_dashboard(admin, "edited")
    slug, total = board["slug"], board["tiles"][0]["query"]
    assert ok(run(admin, slug, "t1"))["result"]["rows"] == [[30, 2]]
    query = ok(admin.get(f"/queries/{total}"))
    ok(
        admin.put(
            f"/queries/{total}",
            json={
                "title": query["title"],
                "sql": "SELECT max(amount) AS top FROM edited WHERE city = $city",
                "parameters": query["parameters"],
            },
        )
    )
    changed = ok(run(admin, slug, "t1"))
    assert changed["query_version"] == 2 and changed["result"]["rows"] == [[20]]


def test_versions_and_audit_lines(admin):
    board = make_dashboard(admin, "versioned")
    slug = board["slug"]
    fields = {
        "title": "Versioned, renamed",
        "parameters": board["parameters"],
        "tiles": board["tiles"][:2],
    }
    second = ok(admin.put(f"/dashboards/{slug}", json={**fields, "base_version": 1}))
    assert second["version"] == 2 and len(second["tiles"]) == 2
    same = ok(admin.put(f"/dashboards/{slug}", json=fields))
    assert same["version"] == 2, "an edit that changes nothing adds no version"
    stale = admin.put(f"/dashboards/{slug}", json={**fields, "title": "x", "base_version": 1})
    assert ok(stale, 409)["error"]["code"] == "version_conflict"
    first = ok(admin.get(f"/dashboards/{slug}/versions/1"))
    assert first["title"] == "versioned board" and len(first["tiles"]) == 4
    assert first["latest_version"] == 2
    # An older version's tiles still run.
    assert ok(run(admin, slug, "t3", version=1))["tile"] == "t3"
    versions = ok(admin.get(f"/dashboards/{slug}/versions"))["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    ok(admin.delete(f"/dashboards/{slug}"), 204)
    assert admin.get(f"/dashboards/{slug}").status_code == 404
    entries = ok(admin.get("/audit", params={"target": slug}))["events"]
    actions = [(e["action"], e["target"]) for e in entries if e.get("target") == slug]
    assert ("dashboard.created", slug) in actions
    assert ("dashboard.updated", slug) in actions
    assert ("dashboard.deleted", slug) in actions


def test_versions_compare_and_restore(server, admin):
    board = make_dashboard(admin, "restored")
    slug = board["slug"]
    fields = {"title": "Restored, fewer tiles", "tiles": board["tiles"][:1], "parameters": []}
    fields["tiles"] = [{**board["tiles"][0], "params": {}}]
    ok(admin.put(f"/dashboards/{slug}", json=fields))

    diff = ok(admin.get(f"/dashboards/{slug}/diff"))
    assert (diff["from"]["version"], diff["to"]["version"]) == (1, 2)
    assert diff["changed"] == ["title", "parameters", "tiles"]
    removed = [line["from"] for line in diff["tiles"] if line["op"] == "delete"]
    assert any('"text": "# Notes"' in line for line in removed)
    assert all(line["op"] == "equal" for line in diff["description"])
    same = ok(admin.get(f"/dashboards/{slug}/diff", params={"from": 2, "to": 2}))
    assert same["changed"] == []
    assert admin.get(f"/dashboards/{slug}/diff", params={"from": 9}).status_code == 404

    stale = admin.post(f"/dashboards/{slug}/versions/1/restore", json={"base_version": 1})
    assert ok(stale, 409)["error"]["code"] == "version_conflict"
    restored = ok(admin.post(f"/dashboards/{slug}/versions/1/restore", json={"base_version": 2}))
    assert restored["version"] == 3 and restored["title"] == "restored board"
    assert [t["id"] for t in restored["tiles"]] == ["t1", "t2", "t3", "t4"]
    again = ok(admin.post(f"/dashboards/{slug}/versions/3/restore"))
    assert again["version"] == 3, "restoring what the latest holds adds no version"
    assert ok(run(admin, slug, "t3"))["result"]["rows"] == [["Oslo", 10], ["Oslo", 20]]
    versions = ok(admin.get(f"/dashboards/{slug}/versions"))["versions"]
    assert [v["version"] for v in versions] == [3, 2, 1]
    events = ok(admin.get("/audit", params={"target": slug}))["events"]
    restores = [e for e in events if e["action"] == "dashboard.restored"]
    assert len(restores) == 1
    assert restores[0]["detail"] == {"version": 3, "restored_from": 1, "title": "restored board"}

    # Restoring a version whose tile's query was deleted since is refused with the reason.
    ok(admin.delete(f"/queries/{board['tiles'][2]['query']}"), 204)
    ok(admin.put(f"/dashboards/{slug}", json=fields))
    gone = admin.post(f"/dashboards/{slug}/versions/1/restore")
    assert ok(gone, 422)["error"]["code"] == "invalid_dashboard"
    accounts = Accounts(server)
    try:
        viewer = bearer(accounts.user_token("viewer"))
    finally:
        accounts.close()
    refused = httpx.post(
        f"{server.url}/api/dashboards/{slug}/versions/2/restore", headers=viewer, timeout=30
    )
    assert refused.status_code == 403
    assert httpx.get(f"{server.url}/api/dashboards/{slug}/diff", headers=viewer).status_code == 200


def test_viewers_read_and_run_editors_change(server, admin):
    board = make_dashboard(admin, "roles")
    slug = board["slug"]
    accounts = Accounts(server)
    try:
        viewer = bearer(accounts.user_token("viewer"))
        editor = bearer(accounts.user_token("editor"))
    finally:
        accounts.close()
    with httpx.Client(base_url=server.url + "/api", timeout=30) as client:
        assert client.get("/dashboards").status_code == 401
        assert client.get("/dashboards", headers=viewer).status_code == 200
        assert client.get(f"/dashboards/{slug}", headers=viewer).status_code == 200
        assert run(client, slug, "t1").status_code == 401
        response = client.post(f"/dashboards/{slug}/tiles/t1/run", json={}, headers=viewer)
        assert response.status_code == 200
        for method, path, body in (
            ("POST", "/dashboards", {"title": "v"}),
            ("PUT", f"/dashboards/{slug}", {"title": "v"}),
            ("DELETE", f"/dashboards/{slug}", None),
            ("POST", "/shares", {"kind": "dashboard", "target": slug, "name": "v"}),
        ):
            refused = client.request(method, path, json=body, headers=viewer)
            assert refused.status_code == 403, (method, path, refused.text)
        created = client.post("/dashboards", json={"title": "by editor"}, headers=editor)
        assert created.status_code == 201
        assert (
            client.delete(f"/dashboards/{created.json()['slug']}", headers=editor).status_code
            == 204
        )


def test_list_parameter_choices_and_date_ranges(admin):
    ok(admin.put("/datasets/ranges", content=SALES), 201)
    cities = ok(
        admin.post(
            "/queries",
            json={
                "title": "ranges cities",
                "sql": "SELECT DISTINCT city FROM ranges ORDER BY city",
            },
        ),
        201,
    )["slug"]
    between = ok(
        admin.post(
            "/queries",
            json={
                "title": "ranges between",
                "sql": "SELECT count(*) AS n FROM ranges "
                "WHERE city = $city AND day BETWEEN $a AND $b",
                "parameters": [
                    {"name": "city", "type": "text", "default": "Oslo"},
                    {"name": "a", "type": "date", "default": "2000-01-01"},
                    {"name": "b", "type": "date", "default": "2100-01-01"},
                ],
            },
        ),
        201,
    )["slug"]
    board = ok(
        admin.post(
            "/dashboards",
            json={
                "title": "ranges",
                "parameters": [
                    {"name": "city", "type": "choice", "choices_query": cities, "default": "Oslo"},
                    {
                        "name": "period",
                        "type": "daterange",
                        "default": ["2024-01-01", "2024-01-31"],
                    },
                ],
                "tiles": [
                    {
                        "type": "number",
                        "query": between,
                        "params": {"city": "city", "a": "period_from", "b": "period_to"},
                    }
                ],
            },
        ),
        201,
    )
    slug = board["slug"]
    assert ok(admin.get(f"/dashboards/{slug}/parameters/city/choices"))["choices"] == [
        "Lima",
        "Oslo",
    ]
    assert ok(run(admin, slug, "t1"))["result"]["rows"] == [[1]]
    wide = ok(run(admin, slug, "t1", params={"period_to": "2024-12-31"}))
    assert wide["params"] == {"city": "Oslo", "a": "2024-01-01", "b": "2024-12-31"}
    assert wide["result"]["rows"] == [[2]]
    bad = run(admin, slug, "t1", params={"period_from": "not a date"})
    assert ok(bad, 400)["error"]["code"] == "invalid_parameter"


def _old_workspace(data_dir) -> None:
    """A workspace as the version before dashboards wrote it, with a saved query."""
    data_dir.mkdir(parents=True)
    # Also the migrations that came after dashboards: that version did not have them either.
    new = {m.id for m in (*schema.DASHBOARDS, *schema.SHARES)} | {"queries-0002-runs"}
    with duckdb.connect(str(data_dir / "app.db")) as conn:
        conn.execute(f"CREATE SCHEMA {schema.INTERNAL_SCHEMA}")
        conn.execute(
            f"CREATE TABLE {schema.internal('migrations')} (id VARCHAR PRIMARY KEY, "
            "applied_at TIMESTAMPTZ NOT NULL)"
        )
        for migration in schema.MIGRATIONS:
            if migration.id in new:
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


def test_a_workspace_from_before_dashboards_opens_and_gains_them(start_server, tmp_path):
    _old_workspace(tmp_path / "data")
    server = start_server("backend", workdir=tmp_path)
    with httpx.Client(base_url=server.url + "/api", timeout=30) as client:
        assert ok(client.post("/queries/old-one/run", json={}))["rows"] == [[42]]
        assert ok(client.get("/dashboards"))["dashboards"] == []
        board = ok(
            client.post(
                "/dashboards",
                json={"title": "After", "tiles": [{"type": "number", "query": "old-one"}]},
            ),
            201,
        )
        assert ok(run(client, board["slug"], "t1"))["result"]["rows"] == [[42]]
        share = client.post("/shares", json={"kind": "query", "target": "old-one", "name": "x"})
        assert share.status_code == 201
    assert server.stop() == 0
    with duckdb.connect(str(tmp_path / "data" / "app.db"), read_only=True) as conn:
        applied = {
            row[0] for row in conn.execute("SELECT id FROM myapp_internal.migrations").fetchall()
        }
    assert {"dashboards-0001-dashboards", "shares-0001-share-links"} <= applied


def test_a_query_made_again_under_its_slug_is_not_served_from_the_cache(admin):
    board = make_dashboard(admin, "remade")
    slug, total = board["slug"], board["tiles"][0]["query"]
    assert ok(run(admin, slug, "t1"))["result"]["rows"] == [[30, 2]]
    ok(admin.delete(f"/queries/{total}"), 204)
    remade = {
        "title": "remade",
        "slug": total,
        "sql": "SELECT count(*) AS rows_now FROM remade WHERE city = $city",
        "parameters": [{"name": "city", "type": "text", "default": "Oslo"}],
    }
    ok(admin.post("/queries", json=remade), 201)
    again = ok(run(admin, slug, "t1"))
    assert again["cached"] is False and again["result"]["rows"] == [[2]]
