"""Shared fixtures: real servers on loopback ports, real DuckDB files in temp dirs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.support.servers import ServerProcess


@pytest.fixture(autouse=True)
def _no_myapp_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No MYAPP_* variable or stray .env leaks into a test."""
    for key in list(os.environ):
        if key.startswith("MYAPP_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def backend_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One backend (gunicorn + uvicorn worker) shared by the tests of a worker process.

    Tests that share it must use names of their own (datasets, queries) and leave global state
    alone; tests that need a pristine or specially configured server start their own.
    """
    server = ServerProcess("backend", tmp_path_factory.mktemp("backend")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def web_server(
    tmp_path_factory: pytest.TempPathFactory, backend_server: ServerProcess
) -> Iterator[ServerProcess]:
    """The frontend role, talking to backend_server over HTTP."""
    server = ServerProcess(
        "frontend",
        tmp_path_factory.mktemp("frontend"),
        env={"MYAPP_BACKEND_URL": backend_server.url},
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def all_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Role all: API and pages in one process."""
    server = ServerProcess("all", tmp_path_factory.mktemp("all")).start()
    yield server
    server.stop()


@pytest.fixture
def api(backend_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=backend_server.url, timeout=30.0) as client:
        yield client


@pytest.fixture
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Factory for a server of one's own: start_server(role, env={...}, args=[...])."""
    started: list[ServerProcess] = []

    def start(
        role: str,
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        workdir=None,
        wait: bool = True,
        port: int | None = None,
    ) -> ServerProcess:
        server = ServerProcess(
            role, workdir or tmp_path_factory.mktemp(role), env=env, args=args, port=port
        )
        started.append(server)
        return server.start(wait=wait)

    yield start
    for server in started:
        server.kill()
