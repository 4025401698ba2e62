"""What the benchmarks share: ports, the backend's worker process, its memory, readiness.

Benchmarks run as scripts (`python bench/<name>.py`), so this module is imported by its name.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_pid(master: int, timeout_s: float = 10.0) -> int:
    """The gunicorn worker of a backend master: the process that opens DuckDB and serves."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                return int(entry.name)
        time.sleep(0.1)
    raise RuntimeError("no gunicorn worker found")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    """Wait until `url` answers 200; fail with the server's log if it exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


class Lean:
    """http.client on one kept-alive connection: the least time a Python client adds."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post_json(self, path: str, body: dict) -> bytes:
        data = json.dumps(body).encode()
        return self._send("POST", path, data, {"content-type": "application/json"})

    def get(self, path: str) -> bytes:
        return self._send("GET", path, None, {})

    def _send(self, method: str, path: str, data: bytes | None, headers: dict) -> bytes:
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            # The server closed the kept-alive connection while it sat idle (myapp after
            # MYAPP_HEADER_TIMEOUT_S, when a loaded machine stretches a turn): once more on a
            # new one, as httpx does.
            self.conn.close()
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        return self._read(response)

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {body[:300]!r}")
        return body
