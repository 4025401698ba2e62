"""Access-control benchmark: what checking credentials costs per request, and sign-in cost.

    python bench/auth.py [--requests 400] [--logins 10] [--json PATH]

A real `myapp serve --role backend` subprocess on a free loopback port, with MYAPP_ADMIN_TOKEN
set (so not open mode). Sequential requests from one client, so the figures are latencies:

- GET /api/health: no credentials checked (the floor);
- GET /api/auth/me anonymous, with the admin token (compared in memory), with an API token
  (a hashed lookup in DuckDB, last-used written at most once a minute), with a session token;
- POST /api/auth/login: one scrypt hash (N=2^15, r=8) plus a session row and an audit line.

Target: an API token adds under 2 ms per request over the floor (median). Numbers depend on
the machine and its load: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import free_port

ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"  # noqa: S105 - a throwaway server
PASSWORD = "bench-password-123"  # noqa: S105 - a throwaway account
TOKEN_OVERHEAD_TARGET_MS = 2.0


def start_backend(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")}
    env.update(
        MYAPP_DATA_DIR=str(workdir / "data"),
        MYAPP_ADMIN_TOKEN=ADMIN_TOKEN,
        MYAPP_LOG_LEVEL="warning",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "myapp", "serve", "--role", "backend", "--port", str(port)],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the backend did not start")


def timed(client: httpx.Client, count: int, method: str, path: str, **kwargs) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.request(method, path, **kwargs)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code >= 400:
            raise SystemExit(f"{method} {path}: {response.status_code} {response.text}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--logins", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_backend(Path(tmp))
        try:
            client = httpx.Client(base_url=url, timeout=60)
            admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            client.post(
                "/api/users",
                headers=admin,
                json={"username": "bench", "password": PASSWORD, "role": "editor"},
            )
            token = client.post(
                "/api/tokens", headers=admin, json={"name": "bench", "username": "bench"}
            ).json()["token"]
            session = client.post(
                "/api/auth/login", json={"username": "bench", "password": PASSWORD}
            ).json()["token"]
            n = args.requests
            timed(client, 50, "GET", "/api/health")  # warm up
            rows = [
                ("GET /api/health (no check)", timed(client, n, "GET", "/api/health")),
                ("GET /api/auth/me anonymous", timed(client, n, "GET", "/api/auth/me")),
                (
                    "GET /api/auth/me admin token",
                    timed(client, n, "GET", "/api/auth/me", headers=admin),
                ),
                (
                    "GET /api/auth/me API token",
                    timed(
                        client,
                        n,
                        "GET",
                        "/api/auth/me",
                        headers={"Authorization": f"Bearer {token}"},
                    ),
                ),
                (
                    "GET /api/auth/me session",
                    timed(
                        client,
                        n,
                        "GET",
                        "/api/auth/me",
                        headers={"Authorization": f"Bearer {session}"},
                    ),
                ),
                (
                    "POST /api/auth/login",
                    timed(
                        client,
                        args.logins,
                        "POST",
                        "/api/auth/login",
                        json={"username": "bench", "password": PASSWORD},
                    ),
                ),
            ]
            client.close()
        finally:
            proc.terminate()
            proc.wait(30)

    print(f"{'request':<32} {'n':>5} {'median ms':>10} {'p95 ms':>8}")
    medians, p95s = {}, {}
    for name, times in rows:
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        medians[name] = statistics.median(times)
        p95s[name] = p95
        print(f"{name:<32} {len(times):>5} {medians[name]:>10.2f} {p95:>8.2f}")
    overhead = medians["GET /api/auth/me API token"] - medians["GET /api/auth/me anonymous"]
    verdict = "meets" if overhead < TOKEN_OVERHEAD_TARGET_MS else "misses"
    print(
        f"\nAPI token lookup adds {overhead:.2f} ms per request (median); "
        f"{verdict} the {TOKEN_OVERHEAD_TARGET_MS:g} ms target."
    )
    print(f"load average during the run: {os.getloadavg()[0]:.2f} (2 cores shared)")
    if args.json:
        figures = {
            "requests": {
                name: {"median_ms": medians[name], "p95_ms": p95s[name]} for name in medians
            },
            "token_overhead_ms": overhead,
            "target_ms": TOKEN_OVERHEAD_TARGET_MS,
            "load": list(os.getloadavg()),
        }
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
