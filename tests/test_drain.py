"""SIGTERM drains in-flight requests: a query running when the signal arrives still answers 200,
and the server then exits 0 (backend under gunicorn, and role all under uvicorn)."""

from __future__ import annotations

import signal
import time
import uuid

import httpx
import pytest

from tests.backend.test_query_support import Background

# Long enough to be surely running when the signal comes, short enough for the suite.
QUERY_MS = 2500


@pytest.mark.parametrize("role", ["backend", "all"])
def test_sigterm_lets_a_running_query_finish_then_exits_0(start_server, role):
    server = start_server(role)
    query_id = str(uuid.uuid4())
    pending = Background(
        "POST",
        server.url + "/api/query",
        json={"sql": f"SELECT sleep_ms({QUERY_MS}) IS NULL AS slept, 42 AS answer", "id": query_id},
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = httpx.get(f"{server.url}/api/query/{query_id}")
        if status.status_code == 200 and status.json()["state"] == "running":
            break
        time.sleep(0.05)
    else:
        pytest.fail("the query did not start")

    started = time.monotonic()
    code = server.stop(signal.SIGTERM)
    response = pending.join()
    assert response.status_code == 200, response.text
    assert response.json()["rows"] == [[True, 42]]
    assert response.json()["elapsed_ms"] >= QUERY_MS * 0.9
    assert code == 0
    # Generous: a loaded machine slows the shutdown, but it must not hang.
    assert time.monotonic() - started < QUERY_MS / 1000 + 25
