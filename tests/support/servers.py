"""Real servers for tests: each role as its own subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTUP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any MYAPP_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ServerProcess:
    """`python -m myapp serve --role ROLE` in its own working directory and data dir."""

    def __init__(
        self,
        role: str,
        workdir: Path,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        python: Path | str | None = None,
    ) -> None:
        self.role = role
        # Another interpreter runs the server on another DuckDB (tests/support/duckdb_env.py).
        self.python = str(python or sys.executable)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.env = clean_env({"MYAPP_DATA_DIR": str(self.workdir / "data"), **(env or {})})
        self.args = args or []
        self.log_path = self.workdir / f"{role}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return Path(self.env["MYAPP_DATA_DIR"])

    @property
    def health_path(self) -> str:
        return "/healthz" if self.role == "frontend" else "/api/health"

    def start(self, wait: bool = True) -> ServerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                self.python,
                "-m",
                "myapp",
                "serve",
                "--role",
                self.role,
                "--port",
                str(self.port),
                *self.args,
            ],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own process group, so cleanup reaches gunicorn's workers too.
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.role} exited with {self.proc.returncode} during start:\n"
                    + self.log_text()
                )
            try:
                if httpx.get(self.url + self.health_path, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.role} did not become healthy in {timeout_s} s:\n{self.log_text()}"
        )

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 40.0) -> int:
        """Send `sig` and wait; returns the exit code (kills and fails loudly on a hang)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError(f"{self.role} did not stop within {timeout_s} s") from None
        return self.proc.returncode

    def kill(self) -> None:
        """Stop the server and every process it started, whatever state it is in.

        SIGKILL to the master alone would orphan gunicorn's workers (they keep the port and the
        database lock), so the whole process group goes.
        """
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`myapp ARGS…` as a user runs it, with only the given MYAPP_* variables."""
    return subprocess.run(
        [sys.executable, "-m", "myapp", *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=120,
    )
