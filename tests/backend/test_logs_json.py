"""MYAPP_LOG_FORMAT=json: one JSON object per line, and the request id on every line of a
request, across the frontend and the backend."""

from __future__ import annotations

import json
import time

import httpx

from tests.support.servers import ServerProcess


def _records(server: ServerProcess) -> list[dict]:
    lines = [line for line in server.log_text().splitlines() if line.strip()]
    assert lines
    # Every line is one JSON object: a plain line would fail here.
    return [json.loads(line) for line in lines]


def _wait_for(server: ServerProcess, predicate, timeout_s: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        records = _records(server)
        found = [r for r in records if predicate(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_json_lines_carry_the_request_id_across_both_roles(start_server):
    backend = start_server("backend", env={"MYAPP_LOG_FORMAT": "json"})
    web = start_server(
        "frontend", env={"MYAPP_LOG_FORMAT": "json", "MYAPP_BACKEND_URL": backend.url}
    )

    # A store log line (not only the access line) carries the id of the upload's request.
    upload_id = "upload-rid-0001"
    response = httpx.put(
        f"{backend.url}/api/datasets/logged?format=csv",
        content=b"a,b\n1,x\n2,y\n",
        headers={"X-Request-ID": upload_id},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"] == upload_id
    lines = _wait_for(backend, lambda r: r["request_id"] == upload_id and not r.get("access"))
    messages = [r["message"] for r in lines]
    assert any("dataset logged created" in m for m in messages), messages
    for record in lines:
        assert record["role"] == "backend"
        assert {"time", "level", "logger", "message", "request_id"} <= record.keys()

    access = _wait_for(backend, lambda r: r["request_id"] == upload_id and r.get("access"))
    assert len(access) == 1
    assert access[0]["method"] == "PUT"
    assert access[0]["path"] == "/api/datasets/logged"
    assert access[0]["status"] == 201
    assert access[0]["duration_ms"] >= 0
    assert access[0]["logger"] == "myapp.access"

    # A page: the frontend logs its id and forwards it, so the backend's lines for the calls
    # that page made carry the same id.
    page_id = "page-rid-0002"
    page = httpx.get(f"{web.url}/datasets", headers={"X-Request-ID": page_id}, timeout=30)
    assert page.status_code == 200
    assert page.headers["X-Request-ID"] == page_id
    front = _wait_for(web, lambda r: r["request_id"] == page_id and r.get("access"))
    assert [r["path"] for r in front] == ["/datasets"]
    assert front[0]["role"] == "frontend"
    back = _wait_for(backend, lambda r: r["request_id"] == page_id and r.get("access"))
    assert back and all(r["path"].startswith("/api/") for r in back)

    # A page request without an id gets a fresh one, and its backend calls carry it too.
    fresh = httpx.get(f"{web.url}/datasets", timeout=30)
    minted = fresh.headers["X-Request-ID"]
    assert minted and minted not in (page_id, upload_id)
    assert _wait_for(backend, lambda r: r["request_id"] == minted)
    # Lines outside any request (start-up) say so instead of borrowing an id.
    startup = [r for r in _records(backend) if "database" in r["message"].lower()]
    assert startup and all(r["request_id"] in (None, "-") for r in startup[:1])


def test_plain_text_stays_the_default(backend_server: ServerProcess, api: httpx.Client):
    api.get("/api/health", headers={"X-Request-ID": "plain-rid-0003"})
    deadline = time.monotonic() + 10
    while "plain-rid-0003" not in backend_server.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(x for x in backend_server.log_text().splitlines() if "plain-rid-0003" in x)
    assert not line.startswith("{")
    assert "myapp.access: backend GET /api/health 200" in line
