"""Saved queries: create, versions on every edit, typed parameters with defaults, run, chart,
export, delete, and the audit trail of each change."""

from __future__ import annotations

import time

import duckdb
import pytest

from tests.backend.test_query_support import (
    CLIENT,
    ENDLESS_SQL,
    Background,
    dumps,
    error_of,
    make_workspace,
)
from tests.support.accounts import Accounts, bearer, secured_env
from tests.support.servers import ServerProcess

TYPED_SQL = (
    "SELECT count(*) AS n, $city AS city, $since AS since, $min_amount AS min_amount "
    "FROM sales WHERE city = $city AND day >= $since AND amount >= $min_amount "
    "AND id < $below AND paid = $paid"
)
TYPED_PARAMETERS = [
    {"name": "city", "type": "text", "default": "Oslo", "label": "City"},
    {"name": "since", "type": "date", "default": "2024-06-01"},
    {"name": "min_amount", "type": "number", "default": 10},
    {"name": "below", "type": "integer"},
    {"name": "paid", "type": "boolean", "default": True},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    data = make_workspace(root)
    process = ServerProcess("backend", root, env={"MYAPP_DATA_DIR": str(data)}).start()
    yield process
    process.stop()  # SIGKILL would orphan the gunicorn worker


def api(server, method: str, path: str, **kwargs):
    return CLIENT.request(method, server.url + "/api" + path, **kwargs)


def create(server, **fields):
    response = api(server, "POST", "/queries", json=fields)
    assert response.status_code == 201, response.text
    return response.json()


def test_create_read_list_and_the_slug_from_the_title(server):
    saved = create(
        server,
        title="Sales by City: 2024 — Überblick",
        sql="SELECT city, sum(amount) AS total FROM sales GROUP BY city ORDER BY city",
        description="Totals per city.",
        chart={"type": "bar", "x": "city", "y": ["total"]},
    )
    assert saved["slug"] == "sales-by-city-2024-uberblick"
    assert saved["version"] == saved["latest_version"] == 1
    assert saved["chart"]["type"] == "bar" and saved["parameters"] == []

    again = create(server, title="Sales by City: 2024 — Überblick", sql="SELECT 1")
    assert again["slug"] == "sales-by-city-2024-uberblick-2"

    read = api(server, "GET", f"/queries/{saved['slug']}").json()
    assert read == saved
    listed = api(server, "GET", "/queries", params={"q": "überblick"}).json()["queries"]
    assert [q["slug"] for q in listed] == [saved["slug"], again["slug"]]
    assert listed[0]["has_chart"] is True and listed[0]["parameter_count"] == 0

    response = api(
        server, "POST", "/queries", json={"title": "x", "sql": "SELECT 1", "slug": "new"}
    )
    assert error_of(response, 400)["code"] == "bad_request"
    response = api(
        server, "POST", "/queries", json={"title": "x", "sql": "SELECT 1", "slug": saved["slug"]}
    )
    assert error_of(response, 409)["code"] == "slug_taken"


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"title": "t", "sql": "DELETE FROM sales"}, 400, "statement_not_allowed"),
        (
            {"title": "t", "sql": "SELECT * FROM myapp_internal.migrations"},
            400,
            "table_not_allowed",
        ),
        ({"title": "t", "sql": "SELECT nosuch FROM sales"}, 400, "sql_error"),
        ({"title": "t", "sql": "SELECT $undeclared"}, 422, "undeclared_parameter"),
        ({"title": "   ", "sql": "SELECT 1"}, 422, "validation_error"),
        (
            {
                "title": "t",
                "sql": "SELECT $d",
                "parameters": [{"name": "d", "type": "date", "default": "tomorrow"}],
            },
            422,
            "validation_error",
        ),
        (
            {
                "title": "t",
                "sql": "SELECT $a",
                "parameters": [{"name": "a", "type": "text"}, {"name": "a", "type": "text"}],
            },
            422,
            "validation_error",
        ),
        (
            {"title": "t", "sql": "SELECT 1", "parameters": [{"name": "1x", "type": "text"}]},
            422,
            "validation_error",
        ),
        (
            {"title": "t", "sql": "SELECT 1", "chart": {"type": "radar", "x": "a", "y": ["b"]}},
            422,
            "validation_error",
        ),
    ],
)
def test_saving_refuses_what_could_never_run(server, fields, status, code):
    before = api(server, "GET", "/queries").json()
    error = error_of(api(server, "POST", "/queries", json=fields), status)
    assert error["code"] == code
    assert api(server, "GET", "/queries").json() == before


def test_every_edit_is_a_new_version_and_old_versions_stay_readable(server):
    saved = create(server, title="Versioned test query", sql="SELECT 1 AS v")
    slug = saved["slug"]
    edit = {"title": "Versioned test query", "sql": "SELECT 2 AS v", "base_version": 1}
    second = api(server, "PUT", f"/queries/{slug}", json=edit).json()
    assert second["version"] == 2 and second["slug"] == slug
    third = api(
        server,
        "PUT",
        f"/queries/{slug}",
        json={**edit, "title": "Versioned, renamed", "sql": "SELECT 3 AS v", "base_version": 2},
    ).json()
    assert third["version"] == 3 and third["title"] == "Versioned, renamed"
    assert third["slug"] == slug  # the address never changes

    # An edit based on an old version is refused rather than silently overwriting.
    error = error_of(api(server, "PUT", f"/queries/{slug}", json=edit), 409)
    assert error["code"] == "version_conflict" and error["detail"] == {"latest_version": 3}
    # Saving without changes adds no version.
    same = {k: third[k] for k in ("title", "sql", "description", "parameters", "chart")}
    assert api(server, "PUT", f"/queries/{slug}", json=same).json()["version"] == 3

    versions = api(server, "GET", f"/queries/{slug}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert versions[0]["title"] == "Versioned, renamed"

    first = api(server, "GET", f"/queries/{slug}/versions/1").json()
    assert first["sql"] == "SELECT 1 AS v" and first["version"] == 1
    assert first["latest_version"] == 3
    assert api(server, "GET", f"/queries/{slug}", params={"version": 2}).json()["sql"] == (
        "SELECT 2 AS v"
    )
    assert error_of(api(server, "GET", f"/queries/{slug}/versions/9"), 404)["code"] == (
        "version_not_found"
    )

    assert api(server, "POST", f"/queries/{slug}/run", json={}).json()["rows"] == [[3]]
    old = api(server, "POST", f"/queries/{slug}/run", json={"version": 1}).json()
    assert old["rows"] == [[1]]


def test_parameters_are_typed_and_defaults_fill_the_gaps(server):
    saved = create(
        server, title="Typed parameters test", sql=TYPED_SQL, parameters=TYPED_PARAMETERS
    )
    assert saved["parameters"][2]["default"] == 10.0
    slug = saved["slug"]

    def run(params):
        return api(server, "POST", f"/queries/{slug}/run", json={"params": params})

    # Strings (as an HTML form sends them) are typed by the declaration.
    body = run({"below": "20000", "min_amount": "50.5", "paid": "false", "since": "2024-03-01"})
    assert body.status_code == 200, body.text
    n, city, since, min_amount = body.json()["rows"][0]
    assert (city, since, min_amount) == ("Oslo", "2024-03-01", 50.5)
    expected = CLIENT.post(
        server.url + "/api/query",
        json={
            "sql": "SELECT count(*) FROM sales WHERE city = 'Oslo' AND day >= DATE '2024-03-01' "
            "AND amount >= 50.5 AND id < 20000 AND NOT paid"
        },
    ).json()["rows"][0][0]
    assert n == expected

    # JSON values work as well, and an empty form field means "use the default".
    body = run({"below": 20000, "paid": True, "city": "Lima", "min_amount": ""}).json()
    assert body["rows"][0][1:] == ["Lima", "2024-06-01", 10.0]

    error = error_of(run({}), 400)
    assert error["code"] == "invalid_parameter" and "below" in error["message"]
    assert error["detail"]["parameters"] == {"below": "a value is required"}
    for bad in (
        {"below": "1.5"},
        {"below": 1, "since": "June"},
        {"below": 1, "paid": "maybe"},
        {"below": 1, "min_amount": "lots"},
        {"below": True},
    ):
        assert error_of(run(bad), 400)["code"] == "invalid_parameter", bad
    error = error_of(run({"below": 1, "town": "Oslo"}), 400)
    assert error["code"] == "unknown_parameter" and "city" in error["message"]


def test_charts_are_saved_with_the_query_and_drawn_from_it(server):
    saved = create(
        server,
        title="Chart test daily amounts",
        sql="SELECT day, city, amount FROM sales WHERE amount >= $min",
        parameters=[{"name": "min", "type": "number", "default": 0}],
        chart={"type": "line", "x": "day", "y": ["amount"], "series": "city", "title": "Daily"},
    )
    data = api(server, "POST", f"/queries/{saved['slug']}/chart", json={}).json()
    assert data["chart"]["series"] == "city" and data["reduced"] == "bucketed"
    assert [c["name"] for c in data["columns"]] == ["day", "city", "amount"]
    assert 0 < data["row_count"] <= 10_000

    other = api(
        server,
        "POST",
        f"/queries/{saved['slug']}/chart",
        json={"params": {"min": 98}, "chart": {"type": "bar", "x": "city", "y": ["amount"]}},
    ).json()
    assert other["reduced"] == "aggregated"
    assert [row[0] for row in other["rows"]] == ["Kyiv", "Faro"]  # amounts 98 and 99

    plain = create(server, title="Chart test without chart", sql="SELECT 1 AS a")
    error = error_of(api(server, "POST", f"/queries/{plain['slug']}/chart", json={}), 400)
    assert error["code"] == "no_chart"


def test_saved_query_export_uses_parameters_and_versions(server, tmp_path):
    saved = create(
        server,
        title="Export test",
        sql="SELECT id FROM sales WHERE id < $below ORDER BY id",
        parameters=[{"name": "below", "type": "integer", "default": 3}],
    )
    slug = saved["slug"]
    response = api(server, "GET", f"/queries/{slug}/export")
    assert response.status_code == 200
    assert f'filename="{slug}.csv"' in response.headers["content-disposition"]
    assert response.text.split() == ["id", "0", "1", "2"]

    response = api(
        server,
        "GET",
        f"/queries/{slug}/export",
        params={"format": "parquet", "params": dumps({"below": "12000"})},
    )
    assert response.status_code == 200
    path = tmp_path / "export.parquet"
    path.write_bytes(response.content)
    with duckdb.connect() as conn:
        assert conn.execute(f"SELECT count(*) FROM '{path}'").fetchone() == (12000,)

    api(
        server,
        "PUT",
        f"/queries/{slug}",
        json={"title": "Export test", "sql": "SELECT 'v2' AS id"},
    )
    response = api(server, "GET", f"/queries/{slug}/export", params={"version": 1})
    assert response.text.split() == ["id", "0", "1", "2"]
    assert f'filename="{slug}-v1.csv"' in response.headers["content-disposition"]
    error = error_of(
        api(server, "GET", f"/queries/{slug}/export", params={"params": dumps({"x": 1})}), 400
    )
    assert error["code"] == "unknown_parameter"


def test_delete_removes_every_version_and_changes_are_audited(start_server, tmp_path):
    data = make_workspace(tmp_path)
    server = start_server("backend", env={"MYAPP_DATA_DIR": str(data)}, workdir=tmp_path)
    try:
        slug = create(server, title="Doomed", sql="SELECT 1")["slug"]
        api(server, "PUT", f"/queries/{slug}", json={"title": "Doomed", "sql": "SELECT 2"})
        assert api(server, "DELETE", f"/queries/{slug}").status_code == 204
        assert error_of(api(server, "GET", f"/queries/{slug}"), 404)["code"] == "query_not_found"
        assert error_of(api(server, "GET", f"/queries/{slug}/versions"), 404)
        assert error_of(api(server, "DELETE", f"/queries/{slug}"), 404)
        # The slug is free again.
        assert create(server, title="Doomed", sql="SELECT 3")["slug"] == slug
    finally:
        assert server.stop() == 0
    with duckdb.connect(str(data / "app.db"), read_only=True) as conn:
        events = conn.execute(
            "SELECT action, target, detail->>'version' FROM myapp_internal.audit_log "
            "WHERE action LIKE 'query.%' ORDER BY id"
        ).fetchall()
        versions = conn.execute(
            "SELECT version, sql FROM myapp_internal.saved_query_versions WHERE slug = ?", [slug]
        ).fetchall()
    assert events == [
        ("query.created", slug, "1"),
        ("query.updated", slug, "2"),
        ("query.deleted", slug, None),
        ("query.created", slug, "1"),
    ]
    assert versions == [(1, "SELECT 3")]


def test_roles_viewers_run_and_read_editors_change(start_server, tmp_path):
    data = make_workspace(tmp_path)
    server = start_server("backend", env=secured_env(MYAPP_DATA_DIR=str(data)), workdir=tmp_path)
    accounts = Accounts(server)
    try:
        editor_name = accounts.user("editor")
        editor = bearer(accounts.token(editor_name, "editor")["token"])
        viewer = bearer(accounts.user_token("viewer"))
        other_viewer = bearer(accounts.user_token("viewer"))

        fields = {"title": "Roles test", "sql": "SELECT 1 AS one"}
        assert error_of(api(server, "POST", "/queries", json=fields), 401)
        assert error_of(api(server, "POST", "/queries", json=fields, headers=viewer), 403)
        created = api(server, "POST", "/queries", json=fields, headers=editor)
        assert created.status_code == 201 and created.json()["created_by"] == editor_name
        slug = created.json()["slug"]

        # Viewers read, run, chart and export; they cannot change anything.
        for method, path, body in [
            ("GET", "/queries", None),
            ("GET", f"/queries/{slug}", None),
            ("GET", f"/queries/{slug}/versions", None),
            ("POST", f"/queries/{slug}/run", {}),
            (
                "POST",
                f"/queries/{slug}/chart",
                {"chart": {"type": "bar", "x": "one", "y": ["one"]}},
            ),
            ("GET", f"/queries/{slug}/export", None),
            ("POST", "/query", {"sql": "SELECT 2"}),
        ]:
            response = api(server, method, path, json=body, headers=viewer)
            assert response.status_code == 200, (method, path, response.text)
        assert error_of(api(server, "PUT", f"/queries/{slug}", json=fields, headers=viewer), 403)
        assert error_of(api(server, "DELETE", f"/queries/{slug}", headers=viewer), 403)

        # A running query is visible to, and cancellable by, its owner only.
        query_id = "4d1e0c52-8f0e-4b8e-9d3a-0c6f5c1d2e3f"
        pending = Background(
            "POST",
            server.url + "/api/query",
            json={"sql": ENDLESS_SQL, "id": query_id},
            headers=viewer,
        )
        status_path = f"/query/{query_id}"
        deadline = time.monotonic() + 10
        while api(server, "GET", status_path, headers=viewer).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert error_of(api(server, "GET", status_path, headers=other_viewer), 404)
        assert error_of(api(server, "DELETE", status_path, headers=other_viewer), 404)
        assert api(server, "DELETE", status_path, headers=viewer).status_code == 204
        assert error_of(pending.join(), 409)["code"] == "query_cancelled"

        assert api(server, "DELETE", f"/queries/{slug}", headers=editor).status_code == 204
    finally:
        accounts.close()
        assert server.stop() == 0
    with duckdb.connect(str(data / "app.db"), read_only=True) as conn:
        actors = conn.execute(
            "SELECT action, actor FROM myapp_internal.audit_log WHERE target = ? ORDER BY id",
            [slug],
        ).fetchall()
    assert actors == [("query.created", editor_name), ("query.deleted", editor_name)]
