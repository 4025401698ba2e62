"""The one JSON error body, for errors the framework raises and for a crash in a handler."""

from __future__ import annotations

import httpx
from fastapi import Query

from myapp.backend.app import create_api
from myapp.backend.errors import Conflict
from myapp.settings import load_settings
from tests.support.inprocess import serve_in_thread


def make_app(tmp_path):
    app = create_api(load_settings(data_dir=tmp_path / "data"))

    @app.get("/api/_test/crash")
    def crash() -> None:
        raise RuntimeError("secret internal detail")

    @app.get("/api/_test/number")
    def number(n: int = Query(...)) -> dict:
        return {"n": n}

    @app.get("/api/_test/conflict")
    def conflict() -> None:
        raise Conflict("A dataset named sales already exists.", detail={"name": "sales"})

    return app


def assert_error_shape(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) <= {"code", "message", "detail"}
    assert body["error"]["code"] == code
    message = body["error"]["message"]
    assert isinstance(message, str) and message.endswith(".") and len(message) > 10
    return body["error"]


def test_every_framework_error_has_the_one_body(tmp_path):
    with serve_in_thread(make_app(tmp_path)) as url, httpx.Client(base_url=url) as client:
        assert_error_shape(client.get("/api/does-not-exist"), 404, "not_found")
        assert_error_shape(client.post("/api/health"), 405, "method_not_allowed")
        # Fixed paths under /api/query are not taken for a run's id.
        assert_error_shape(client.get("/api/query/chart"), 405, "method_not_allowed")
        assert_error_shape(client.delete("/api/query/export"), 405, "method_not_allowed")
        assert_error_shape(client.get("/api/query/not-a-run-id"), 404, "not_found")
        error = assert_error_shape(client.get("/api/_test/number?n=abc"), 422, "validation_error")
        assert "n" in error["message"]
        assert error["detail"][0]["loc"] == ["query", "n"]
        assert_error_shape(client.get("/api/_test/number"), 422, "validation_error")
        error = assert_error_shape(client.get("/api/_test/conflict"), 409, "conflict")
        assert error["detail"] == {"name": "sales"}


def test_a_crash_is_a_500_without_internals(tmp_path, caplog):
    with serve_in_thread(make_app(tmp_path)) as url:
        response = httpx.get(url + "/api/_test/crash")
    error = assert_error_shape(response, 500, "internal_error")
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert "was logged" in error["message"]
    assert "secret internal detail" in caplog.text
