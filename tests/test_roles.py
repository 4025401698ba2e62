"""Each role as a real process: health, pages, errors, clean stop, lock waits, request ids."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time

import duckdb
import httpx
import pytest

from tests.support.servers import ServerProcess, free_port


def test_backend_health_schema_and_clean_stop(start_server):
    backend = start_server("backend")
    health = httpx.get(backend.url + "/api/health").json()
    assert health["status"] == "ok" and health["database"] == "ok"
    assert re.match(r"^\d+\.\d+", health["version"])
    assert "gunicorn" in backend.log_text() and "UvicornWorker" in backend.log_text()

    assert backend.stop(signal.SIGTERM) == 0
    db_file = backend.data_dir / "app.db"
    assert db_file.exists()
    assert not db_file.with_suffix(".db.wal").exists(), "a clean stop leaves no WAL behind"
    with duckdb.connect(str(db_file), read_only=True) as conn:
        version = conn.execute(
            "SELECT value FROM myapp_internal.meta WHERE key = 'schema_version'"
        ).fetchone()
        assert version is not None and int(version[0]) >= 1


def test_role_all_serves_pages_and_api(all_server):
    page = httpx.get(all_server.url + "/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert 'data-testid="backend-status">ok<' in page.text
    health = httpx.get(all_server.url + "/api/health")
    assert health.json()["status"] == "ok"
    assert httpx.get(all_server.url + "/healthz").json()["status"] == "ok"


@pytest.mark.parametrize("role", ["backend", "all"])
def test_unknown_api_paths_and_wrong_methods_answer_json(role, backend_server, all_server):
    server = backend_server if role == "backend" else all_server
    for path in ("/api/nope", "/api/", "/api/datasets/x/y/z/w"):
        response = httpx.get(server.url + path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] == "not_found"
    response = httpx.delete(server.url + "/api/health")
    assert response.status_code == 405
    assert response.json()["error"] == {
        "code": "method_not_allowed",
        "message": "DELETE is not allowed on /api/health.",
    }


@pytest.mark.parametrize("role", ["backend", "all"])
def test_openapi_and_docs_are_served_locally(role, backend_server, all_server):
    server = backend_server if role == "backend" else all_server
    spec = httpx.get(server.url + "/api/openapi.json").json()
    assert "/api/health" in spec["paths"]
    docs = httpx.get(server.url + "/api/docs")
    assert docs.status_code == 200
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", docs.text)
    assert assets, docs.text
    for asset in assets:
        assert asset.startswith("/api/static/"), f"{asset} is not served by myapp"
        assert httpx.get(server.url + asset).status_code == 200


def test_two_processes_give_the_same_page_and_503_while_backend_is_down(start_server):
    backend = start_server("backend")
    frontend = start_server("frontend", env={"MYAPP_BACKEND_URL": backend.url})
    page = httpx.get(frontend.url + "/")
    assert page.status_code == 200
    assert 'data-testid="backend-status">ok<' in page.text

    assert backend.stop() == 0
    down = httpx.get(frontend.url + "/")
    assert down.status_code == 503
    assert "backend cannot be reached" in down.text
    assert "Traceback" not in down.text
    assert httpx.get(frontend.url + "/healthz").status_code == 200

    # Same port, same data: the frontend recovers without a restart.
    again = start_server("backend", workdir=backend.workdir, port=backend.port)
    assert again.url == backend.url
    assert httpx.get(frontend.url + "/").status_code == 200
    assert frontend.stop() == 0


def test_slow_backend_gives_503_within_the_timeout(start_server):
    # A socket that accepts connections but never answers: a hung backend.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        frontend = start_server(
            "frontend", env={"MYAPP_BACKEND_URL": url, "MYAPP_BACKEND_TIMEOUT_S": "1"}
        )
        started = time.monotonic()
        page = httpx.get(frontend.url + "/", timeout=10)
        assert page.status_code == 503
        assert "did not answer in time" in page.text
        assert time.monotonic() - started < 5


def test_frontend_passes_its_request_id_to_the_backend(backend_server, web_server):
    rid = "test-rid-" + str(time.time_ns())
    page = httpx.get(web_server.url + "/", headers={"X-Request-ID": rid})
    assert page.headers["X-Request-ID"] == rid
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and f"rid={rid}" not in backend_server.log_text():
        time.sleep(0.1)
    backend_lines = [
        line for line in backend_server.log_text().splitlines() if f"rid={rid}" in line
    ]
    assert any("backend GET /api/health 200" in line for line in backend_lines)
    frontend_lines = [line for line in web_server.log_text().splitlines() if f"rid={rid}" in line]
    assert any("frontend GET / 200" in line for line in frontend_lines)


@pytest.mark.parametrize(("hops", "expected"), [("0", "ip=127.0.0.1"), ("1", "ip=203.0.113.9")])
def test_forwarded_headers_trusted_only_for_configured_hops(start_server, hops, expected):
    frontend = start_server(
        "frontend",
        env={"MYAPP_PROXY_HOPS": hops, "MYAPP_BACKEND_URL": "http://127.0.0.1:9"},
    )
    rid = f"hops-{hops}-{time.time_ns()}"
    httpx.get(
        frontend.url + "/healthz", headers={"X-Forwarded-For": "203.0.113.9", "X-Request-ID": rid}
    )
    frontend.stop()
    line = next(line for line in frontend.log_text().splitlines() if f"rid={rid}" in line)
    assert line.endswith(expected)


def test_locked_database_waits_then_exits_with_a_clear_message(start_server):
    first = start_server("backend")
    second = start_server(
        "backend",
        workdir=first.workdir,
        port=free_port(),
        env={"MYAPP_LOCK_TIMEOUT_S": "1.5", "MYAPP_DATA_DIR": str(first.data_dir)},
        wait=False,
    )
    assert second.proc is not None
    started = time.monotonic()
    code = second.proc.wait(30)
    assert code != 0
    assert 1.4 < time.monotonic() - started < 15
    assert "is locked by another process" in second.log_text()
    assert "Traceback" not in second.log_text()
    assert httpx.get(first.url + "/api/health").status_code == 200


def test_rolling_deploy_new_backend_starts_once_the_old_one_stops(start_server):
    old = start_server("backend")
    new = start_server(
        "backend",
        workdir=old.workdir,
        port=free_port(),
        env={"MYAPP_LOCK_TIMEOUT_S": "30", "MYAPP_DATA_DIR": str(old.data_dir)},
        wait=False,
    )
    time.sleep(1.5)
    assert new.proc is not None and new.proc.poll() is None, "the new backend must wait"
    threading.Timer(0.5, old.stop).start()
    new.wait_healthy(timeout_s=30)
    assert httpx.get(new.url + "/api/health").json()["database"] == "ok"


def test_sigterm_exits_zero_for_every_role(start_server):
    backend = start_server("backend")
    frontend = start_server("frontend", env={"MYAPP_BACKEND_URL": backend.url})
    everything = start_server("all")
    assert frontend.stop() == 0
    assert everything.stop() == 0
    assert backend.stop() == 0


def test_frontend_never_imports_duckdb_or_the_backend():
    code = (
        "import sys, myapp.frontend.app, myapp.frontend.api_client, myapp.settings, myapp.models\n"
        "bad = [m for m in sys.modules if m == 'duckdb' or m.startswith('myapp.backend')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_backend_does_not_import_flask():
    code = (
        "import sys, myapp.backend.app\n"
        "bad = [m for m in sys.modules if m == 'flask' or m.startswith('myapp.frontend')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_server_process_helper_reports_an_early_exit(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    server = ServerProcess("backend", tmp_path / "w", env={"MYAPP_DATA_DIR": str(blocker)})
    with pytest.raises(RuntimeError, match="exited with 2"):
        server.start()
