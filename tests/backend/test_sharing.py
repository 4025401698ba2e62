"""Share links over a real backend with public read off: a link opens exactly its query or
dashboard, with the values it fixes, for a caller without an account, and nothing else; it is
counted, audited, and refused at once when revoked or expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import httpx
import pytest

from tests.backend.test_dashboards import make_dashboard, ok
from tests.support.accounts import ADMIN_HEADERS, Accounts, bearer, secured_env
from tests.support.servers import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    process = ServerProcess("backend", tmp_path_factory.mktemp("share"), env=secured_env()).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def admin(server):
    with httpx.Client(base_url=server.url + "/api", headers=ADMIN_HEADERS, timeout=30) as client:
        yield client


@pytest.fixture
def anonymous(server):
    with httpx.Client(base_url=server.url + "/api", timeout=30) as client:
        yield client


def share(admin, **body) -> dict:
    return ok(admin.post("/shares", json={"name": "test link", **body}), 201)


def test_a_dashboard_link_shows_its_tiles_with_the_fixed_value(admin, anonymous):
    board = make_dashboard(admin, "shared")
    link = share(admin, kind="dashboard", target=board["slug"], params={"city": "Lima"})
    assert link["path"] == f"/s/{link['token']}" and len(link["token"]) > 40
    who = bearer(link["token"])
    assert anonymous.get("/shared").status_code == 401
    shown = ok(anonymous.get("/shared", headers=who))
    assert shown["kind"] == "dashboard" and shown["fixed"] == {"city": "Lima"}
    assert "query" not in shown["dashboard"]["tiles"][0], "the page names no saved query"
    number = ok(anonymous.post("/shared/tiles/t1/run", json={}, headers=who))
    assert number["result"]["rows"] == [[5, 1]] and number["query"] == ""
    # The same numbers as the dashboard itself shows for that value.
    own = ok(
        admin.post(f"/dashboards/{board['slug']}/tiles/t1/run", json={"params": {"city": "Lima"}})
    )
    assert own["result"]["rows"] == number["result"]["rows"]
    changed = anonymous.post("/shared/tiles/t1/run", json={"params": {"city": "Oslo"}}, headers=who)
    assert ok(changed, 400)["error"]["code"] == "parameter_fixed"
    export = anonymous.get("/shared/tiles/t3/export", headers=who)
    assert export.status_code == 200 and export.text.splitlines() == ["city,amount", "Lima,5"]
    assert anonymous.post("/shared/run", json={}, headers=who).status_code == 404


def test_a_link_reaches_nothing_else(admin, anonymous):
    board = make_dashboard(admin, "fenced")
    other = make_dashboard(admin, "fenced_other")
    link = share(admin, kind="dashboard", target=board["slug"])
    who = bearer(link["token"])
    attempts = [
        ("GET", "/datasets", None),
        ("GET", "/datasets/fenced_other", None),
        ("GET", "/datasets/fenced/rows", None),
        ("POST", "/query", {"sql": "SELECT * FROM fenced_other"}),
        ("GET", "/query/export", None),
        ("GET", "/queries", None),
        ("GET", f"/queries/{board['tiles'][0]['query']}", None),
        ("POST", f"/queries/{board['tiles'][0]['query']}/run", {}),
        ("GET", "/dashboards", None),
        ("GET", f"/dashboards/{other['slug']}", None),
        ("POST", f"/dashboards/{other['slug']}/tiles/t1/run", {}),
        ("POST", f"/dashboards/{board['slug']}/tiles/t1/run", {}),
        ("GET", "/shares", None),
        ("POST", "/shares", {"kind": "dashboard", "target": board["slug"], "name": "x"}),
        ("GET", "/tokens", None),
        ("GET", "/audit", None),
    ]
    for method, path, body in attempts:
        response = anonymous.request(method, path, json=body, headers=who)
        assert response.status_code in (403, 404), (method, path, response.status_code)
        assert response.json()["error"]["code"], path
    # A tile id of another dashboard is only looked up in the link's own.
    assert anonymous.post("/shared/tiles/t9/run", json={}, headers=who).status_code == 404


def test_a_query_link_its_open_parameter_and_revocation(admin, anonymous, server):
    board = make_dashboard(admin, "qlink")
    query = board["tiles"][0]["query"]
    link = share(admin, kind="query", target=query)
    who = bearer(link["token"])
    shown = ok(anonymous.get("/shared", headers=who))
    assert shown["query"]["title"] == "qlink total" and "sql" not in shown["query"]
    assert ok(anonymous.post("/shared/run", json={"params": {"city": "Lima"}}, headers=who))[
        "rows"
    ] == [[5, 1]]
    assert ok(anonymous.post("/shared/run", json={}, headers=who))["rows"] == [[30, 2]]
    export = anonymous.get("/shared/export", params={"params": '{"city": "Lima"}'}, headers=who)
    assert export.text.splitlines() == ["total,n", "5,1"]
    listed = ok(admin.get("/shares", params={"kind": "query", "target": query}))["shares"]
    assert [s["id"] for s in listed] == [link["id"]]
    assert listed[0]["use_count"] == 2 and listed[0]["last_used_at"]
    ok(admin.delete(f"/shares/{link['id']}"), 204)
    refused = anonymous.get("/shared", headers=who)
    assert ok(refused, 401)["error"]["code"] == "share_revoked"
    assert anonymous.post("/shared/run", json={}, headers=who).status_code == 401
    events = ok(admin.get("/audit", params={"target": f"query:{query}"}))["events"]
    assert {"share.created", "share.revoked"} <= {e["action"] for e in events}
    assert link["token"] not in str(events)


def test_expired_unknown_and_invalid_links(admin, anonymous, server):
    board = make_dashboard(admin, "expiring")
    link = share(admin, kind="dashboard", target=board["slug"], expires_in_days=1)
    assert link["expires_at"]
    assert anonymous.get("/shared", headers=bearer("myapp_share_guess")).status_code == 401
    bad = admin.post(
        "/shares",
        json={"kind": "dashboard", "target": board["slug"], "name": "x", "params": {"nope": 1}},
    )
    assert ok(bad, 400)["error"]["code"] == "unknown_parameter"
    assert (
        admin.post("/shares", json={"kind": "query", "target": "no-such", "name": "x"}).status_code
        == 404
    )
    # Expiry, by moving it into the past through a second process reading the file is not
    # possible while the server holds it: stop, edit, start.
    assert server.stop() == 0
    with duckdb.connect(str(server.data_dir / "app.db")) as conn:
        conn.execute(
            "UPDATE myapp_internal.share_links SET expires_at = ? WHERE id = ?",
            [datetime.now(UTC) - timedelta(minutes=1), link["id"]],
        )
    server.start()
    with httpx.Client(base_url=server.url + "/api", timeout=30) as client:
        response = client.get("/shared", headers=bearer(link["token"]))
        assert ok(response, 401)["error"]["code"] == "share_expired"


def test_editors_make_links_viewers_cannot(server, admin):
    board = make_dashboard(admin, "whomakes")
    accounts = Accounts(server)
    try:
        viewer = bearer(accounts.user_token("viewer"))
        editor_name = accounts.user("editor")
        editor = bearer(accounts.token(editor_name, "editor")["token"])
    finally:
        accounts.close()
    body = {"kind": "dashboard", "target": board["slug"], "name": "mine"}
    with httpx.Client(base_url=server.url + "/api", timeout=30) as client:
        assert client.post("/shares", json=body, headers=viewer).status_code == 403
        made = ok(client.post("/shares", json=body, headers=editor), 201)
        mine = ok(client.get("/shares", params={"mine": "true"}, headers=editor))["shares"]
        assert [s["id"] for s in mine] == [made["id"]] and mine[0]["created_by"] == editor_name


def test_a_link_dies_with_its_target_even_if_the_slug_comes_back(admin, anonymous):
    board = make_dashboard(admin, "reborn")
    link = share(admin, kind="dashboard", target=board["slug"])
    who = bearer(link["token"])
    assert anonymous.get("/shared", headers=who).status_code == 200
    ok(admin.delete(f"/dashboards/{board['slug']}"), 204)
    assert ok(anonymous.get("/shared", headers=who), 401)["error"]["code"] == "share_target_gone"
    ok(admin.post("/dashboards", json={"title": "other", "slug": board["slug"]}), 201)
    assert ok(anonymous.get("/shared", headers=who), 401)["error"]["code"] == "share_target_gone"
