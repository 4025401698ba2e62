"""The query routes and the rows route answer a plain request without FastAPI's generic
per-request work (backend/lean_route.py). Every answer must be the one FastAPI's own handler
gives: the same request is sent with the lean path on and off, on one real app served on a
loopback port."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import fastapi.routing
import httpx
import pytest

from myapp.backend import lean_route
from myapp.backend.app import create_api
from myapp.backend.lean_route import _plan
from myapp.backend.routes import datasets as dataset_routes
from myapp.backend.routes import query as query_routes
from myapp.settings import load_settings
from tests.support.accounts import ADMIN_HEADERS, ADMIN_TOKEN, Accounts, bearer
from tests.support.inprocess import serve_in_thread

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("lean") / "data"
    app = create_api(load_settings(data_dir=data, admin_token=ADMIN_TOKEN))
    with serve_in_thread(app) as url:
        accounts = Accounts(SimpleNamespace(url=url))  # type: ignore[arg-type]
        tokens = {
            "viewer": accounts.user_token("viewer"),
            "editor": accounts.user_token("editor"),
        }
        accounts.close()
        with httpx.Client(base_url=url, timeout=60) as client:
            client.put(
                "/api/datasets/sales",
                headers=ADMIN_HEADERS,
                content=b"id,city,amount\n1,Oslo,10.5\n2,Lima,\n3,Oslo,7\n",
            ).raise_for_status()
            yield client, tokens


@pytest.fixture
def count_solves(monkeypatch):
    """How often FastAPI solved a route's dependencies (its handler's generic path)."""
    calls = []
    solve = fastapi.routing.solve_dependencies

    async def counted(*args: Any, **kwargs: Any):
        calls.append(kwargs.get("dependant"))
        return await solve(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "solve_dependencies", counted)
    return calls


def comparable(response: httpx.Response) -> tuple[int, str, Any]:
    """Status, content type and body, without what differs between runs (ids, times)."""
    kind = response.headers.get("content-type", "")
    if kind.startswith("application/json"):
        body: Any = response.json()
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k not in ("id", "elapsed_ms")}
    else:
        body = response.content
    return response.status_code, kind, body


def both_ways(client: httpx.Client, monkeypatch, path: str, method: str = "POST", **request: Any):
    # Once first, so that what an answer caches (a dataset's exact count) is there for both.
    client.request(method, path, **request)
    monkeypatch.setattr(lean_route, "ENABLED", True)
    lean = comparable(client.request(method, path, **request))
    monkeypatch.setattr(lean_route, "ENABLED", False)
    standard = comparable(client.request(method, path, **request))
    monkeypatch.setattr(lean_route, "ENABLED", True)
    return lean, standard


def body(value: Any) -> dict[str, Any]:
    return {"content": json.dumps(value).encode(), "headers": JSON}


VIEWER_REQUESTS = [
    ("/api/query", body({"sql": "SELECT city, sum(amount) AS s FROM sales GROUP BY 1 ORDER BY 1"})),
    ("/api/query", body({"sql": "SELECT $n::INT + 1 AS x", "params": {"n": 41}, "limit": 5})),
    ("/api/query", body({"sql": "SELECT * FROM sales", "limit": 1, "timeout_ms": 5000})),
    ("/api/query", body({"sql": "SELECT 1", "id": "7d4a1a52-3b7e-4a4e-9a51-1d2f3c4b5a69"})),
    ("/api/query", body({"sql": "SELECT 1", "unknown": True})),
    ("/api/query", body({"sql": "SELECT $x AS x", "params": {"x": 2**70}})),
    (
        "/api/query",
        {"content": b'{"sql": "SELECT $x AS x", "params": {"x": NaN}}', "headers": JSON},
    ),
    ("/api/query", body({"sql": "SELEC 1"})),
    ("/api/query", body({"sql": "DELETE FROM sales"})),
    ("/api/query", body({"sql": "SELECT * FROM nowhere"})),
    ("/api/query", body({"sql": "SELECT $missing"})),
    ("/api/query", body({"sql": ""})),
    ("/api/query", body({"sql": "SELECT 1", "limit": -1})),
    ("/api/query", body({"sql": 42})),
    ("/api/query", body({"params": {}})),
    ("/api/query", body(["SELECT 1"])),
    ("/api/query", body(None)),
    ("/api/query", {"content": b'{"sql": "SELECT 1"', "headers": JSON}),
    ("/api/query", {"content": b'{"sql": "SELECT \xff"}', "headers": JSON}),
    ("/api/query", {"content": b"", "headers": JSON}),
    ("/api/query", {"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON}),
    (
        "/api/query",
        {
            "content": b'{"sql": "SELECT 1", "params": {"x": '
            + b"[" * 50_000
            + b"]" * 50_000
            + b"}}",
            "headers": JSON,
        },
    ),
    ("/api/query", {"content": b'{"sql": "SELECT 1"}', "headers": {"content-type": "text/plain"}}),
    ("/api/query", {"content": b'{"sql": "SELECT 1"}'}),
    (
        "/api/query",
        {
            "content": b'{"sql": "SELECT 1"}',
            "headers": {"content-type": "application/json; charset=utf-8"},
        },
    ),
    (
        "/api/query/chart",
        body(
            {
                "sql": "SELECT id, amount FROM sales",
                "chart": {"type": "bar", "x": "id", "y": ["amount"]},
            }
        ),
    ),
    ("/api/query/chart", body({"sql": "SELECT 1 AS a", "chart": {"type": "pie"}})),
    ("/api/query/export", body({"sql": "SELECT * FROM sales ORDER BY id", "format": "csv"})),
    ("/api/query/export", body({"sql": "SELECT 1", "format": "xml"})),
]


@pytest.mark.parametrize(("path", "request_"), VIEWER_REQUESTS)
def test_every_answer_is_fastapis(served, monkeypatch, path, request_):
    client, tokens = served
    headers = {**request_.get("headers", {}), **bearer(tokens["viewer"])}
    lean, standard = both_ways(client, monkeypatch, path, **{**request_, "headers": headers})
    assert lean == standard


ROWS_REQUESTS = [
    "",
    "?limit=2",
    "?limit=2&sort=-amount",
    "?sort=city&limit=1&offset=1",
    "?city__eq=Oslo&sort=id",
    "?amount__gt=8&amount__isnull=false",
    "?city__in=Oslo,Lima&q=osl",
    "?q=LIM",
    "?version=1",
    "?limit=2&limit=3",
    "?limit=0",
    "?limit=abc",
    "?limit=100000",
    "?offset=-1",
    "?version=0",
    "?sort=nowhere",
    "?cursor=not-a-cursor",
    "?nowhere__eq=1",
    "?amount__gt=abc",
    "?city__bogus=1",
]


OTHER_REQUESTS = [
    ("GET", "/api/query/export?sql=SELECT%20*%20FROM%20sales%20ORDER%20BY%20id&format=tsv"),
    ("GET", "/api/query/export?sql=SELECT%20%24n%3A%3AINT%20AS%20n&params=%7B%22n%22%3A%203%7D"),
    ("GET", "/api/query/export?sql=SELECT%201&params=not-json"),
    ("GET", "/api/query/export?sql=SELECT%201&format=xml"),
    ("GET", "/api/query/export?sql="),
    ("GET", "/api/query/export"),
    ("DELETE", "/api/query/7d4a1a52-3b7e-4a4e-9a51-1d2f3c4b5a69"),
    ("DELETE", "/api/query/not-a-run-id"),
]


@pytest.mark.parametrize(("method", "path"), OTHER_REQUESTS)
def test_exports_and_cancels_are_fastapis(served, monkeypatch, method, path):
    client, tokens = served
    lean, standard = both_ways(client, monkeypatch, path, method, headers=bearer(tokens["viewer"]))
    assert lean == standard


@pytest.mark.parametrize("query", ROWS_REQUESTS)
@pytest.mark.parametrize("name", ["sales", "SALES", "nothing"])
def test_every_page_of_rows_is_fastapis(served, monkeypatch, name, query):
    client, tokens = served
    path = f"/api/datasets/{name}/rows{query}"
    headers = bearer(tokens["viewer"])
    lean, standard = both_ways(client, monkeypatch, path, "GET", headers=headers)
    assert lean == standard


def test_a_cursor_page_is_fastapis(served, monkeypatch):
    client, tokens = served
    headers = bearer(tokens["viewer"])
    first = client.get("/api/datasets/sales/rows?limit=1&sort=-amount", headers=headers).json()
    path = f"/api/datasets/sales/rows?limit=1&sort=-amount&cursor={first['next']}"
    lean, standard = both_ways(client, monkeypatch, path, "GET", headers=headers)
    assert lean == standard and lean[0] == 200 and len(lean[2]["rows"]) == 1


@pytest.mark.parametrize(
    "credentials",
    [{}, bearer("not-a-token"), {"Authorization": "Basic abc"}, "editor", "viewer"],
)
def test_callers_are_told_the_same(served, monkeypatch, credentials):
    client, tokens = served
    headers = bearer(tokens[credentials]) if isinstance(credentials, str) else credentials
    request = body({"sql": "SELECT 1 AS one"})
    lean, standard = both_ways(
        client, monkeypatch, "/api/query", **{**request, "headers": {**JSON, **headers}}
    )
    assert lean == standard
    assert lean[0] == (200 if isinstance(credentials, str) else 401)


def test_a_plain_request_skips_fastapis_dependency_solving(served, count_solves):
    client, tokens = served
    answer = client.post(
        "/api/query", json={"sql": "SELECT 42 AS answer"}, headers=bearer(tokens["viewer"])
    )
    assert answer.status_code == 200 and answer.json()["rows"] == [[42]]
    page = client.get("/api/datasets/sales/rows?sort=id&limit=1", headers=bearer(tokens["viewer"]))
    assert page.status_code == 200 and page.json()["rows"] == [[1, "Oslo", 10.5]]
    assert count_solves == []
    # A body FastAPI must judge goes its way (and gets its error).
    refused = client.post("/api/query", json={"sql": ""}, headers=bearer(tokens["viewer"]))
    assert refused.status_code == 422
    assert len(count_solves) == 1


def test_which_routes_take_the_lean_path():
    lean = sorted(
        (route.path, *sorted(route.methods))
        for route in query_routes.router.routes
        if _plan(route) is not None
    )
    # A run's status is answered as a model (FastAPI's handler validates and writes it).
    assert lean == [
        ("/query", "POST"),
        ("/query/chart", "POST"),
        ("/query/export", "GET"),
        ("/query/export", "POST"),
        ("/query/{query_id:uuid}", "DELETE"),
    ]
    rows = [
        (route.path, *sorted(route.methods))
        for route in dataset_routes.router.routes
        if isinstance(route, lean_route.LeanRoute) and _plan(route) is not None
    ]
    assert rows == [("/datasets/{name}/rows", "GET")]
