"""The API's routing, checked on the app as built: every endpoint is reached by its own paths
(the routers are included busiest first, so an order that let an earlier pattern take another
endpoint's paths would break a route silently), and the lookup the access gate and the metrics
share (backend/operations.py) names the endpoint FastAPI runs."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Match

from myapp.backend.app import create_api
from myapp.backend.auth.dependencies import _route_contexts
from myapp.backend.operations import REMEMBERED, Operations
from myapp.settings import Settings


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    return create_api(Settings(data_dir=tmp_path_factory.mktemp("data")))


SAMPLES = {"uuid": "00000000-0000-4000-8000-000000000001", "int": "1", "path": "x1/y1"}


def sample(path: str) -> str:
    """A concrete path for a route's path: each parameter a value its convertor takes."""
    return re.sub(r"\{[^}:]+(?::([a-z]+))?\}", lambda m: SAMPLES.get(m.group(1) or "", "x1"), path)


def endpoint_for(api, method: str, path: str):
    """The endpoint FastAPI runs for a request: the first top-level route that matches, then
    (an included router) the first of its routes that matches."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    for route in api.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            if hasattr(route, "_match"):  # a router included with its own routes
                match, _, inner, _ = route._match(scope)
                return getattr(inner, "endpoint", None) if match == Match.FULL else None
            return getattr(route, "endpoint", None)
    return None


def test_every_endpoint_is_reached_by_its_own_paths(api):
    checked = 0
    for route in _route_contexts(api):
        template = getattr(route, "path_format", None)
        if not template or not template.startswith("/api/") or route.endpoint is None:
            continue
        path = sample(route.path)
        for method in (getattr(route, "methods", None) or set()) - {"HEAD"}:
            got = endpoint_for(api, method, path)
            assert got is route.endpoint, f"{method} {path} runs {got} instead"
            checked += 1
    assert checked > 50


def test_the_shared_lookup_names_the_endpoint_and_its_requirement(api):
    operations = Operations(api)
    found = operations.find("POST", "/api/query")
    assert found.exact is not None and found.exact.template == "/api/query"
    assert found.exact.role == "viewer"
    rows = operations.find("GET", "/api/datasets/sales/rows").exact
    assert rows is not None and rows.template == "/api/datasets/{name}/rows"
    # Another method on a known path: the template for the metrics, no requirement.
    wrong = operations.find("PATCH", "/api/query")
    assert wrong.exact is None and wrong.path_only is not None
    assert operations.find("GET", "/api/no-such-thing") == (None, None)
    # Remembered, and bounded: a caller walking endless names cannot grow it.
    for n in range(REMEMBERED + 10):
        operations.find("GET", f"/api/datasets/d{n}/rows")
    assert len(operations._seen) <= REMEMBERED
    assert operations.find("GET", "/api/datasets/sales/rows").exact == rows
