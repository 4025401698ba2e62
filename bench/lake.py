"""The lake mode against the embedded mode: reads per second with one and with two backends,
and upload throughput.

    python bench/lake.py [--rows 200000] [--clients 8] [--seconds 10] [--upload-mb 50]

Needs Debian's PostgreSQL server (a private cluster is started in a temporary directory, as the
lake tests do) and the DuckDB 1.4.4 environment with the ducklake and postgres extension
packages (tests/support/duckdb_env.py builds and caches it). Every server is a real
`myapp serve --role backend` on that DuckDB 1.4.4, so both modes run the same DuckDB:

- embedded: one backend over its own workspace;
- lake, one backend; lake, two backends over the same catalog and data path (the clients
  alternate between them, as a load balancer would).

Reads: --clients threads each with a keep-alive connection, for --seconds, alternately a point
lookup through POST /api/query and a page of /rows (with an API token of a viewer, so the
token check is in every request). Uploads: a CSV of about --upload-mb MB through PUT
/api/datasets/{name}, three times, the median. Printed: one table, and the load average (the
machine is shared: compare rows of one run, not runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import duckdb_env, postgres  # noqa: E402
from tests.support.accounts import ADMIN_HEADERS, secured_env  # noqa: E402
from tests.support.servers import ServerProcess  # noqa: E402

PASSWORD = "bench-password-123"  # noqa: S105 - a throwaway account of the bench


def csv_bytes(rows: int) -> bytes:
    lines = [b"id,g,v,s"]
    lines += [b"%d,%d,%d.5,text %d" % (i, i % 100, i * 7 % 1000, i % 977) for i in range(rows)]
    return b"\n".join(lines) + b"\n"


def viewer_token(url: str) -> str:
    with httpx.Client(base_url=url, headers=ADMIN_HEADERS, timeout=60) as client:
        name = f"bench{int(time.time() * 1000)}"
        made = client.post(
            "/api/users", json={"username": name, "password": PASSWORD, "role": "viewer"}
        )
        made.raise_for_status()
        token = client.post(
            "/api/tokens", json={"name": "bench", "scope": "viewer", "username": name}
        )
        token.raise_for_status()
        return token.json()["token"]


def reads_per_second(urls: list[str], token: str, clients: int, seconds: float) -> float:
    done = [0] * clients
    stop = threading.Event()
    errors: list[str] = []

    def client(index: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=urls[index % len(urls)], headers=headers, timeout=60) as c:
            n = 0
            while not stop.is_set():
                if n % 2:
                    answer = c.post(
                        "/api/query",
                        json={"sql": "SELECT * FROM bench WHERE id = $id", "params": {"id": n}},
                    )
                else:
                    answer = c.get("/api/datasets/bench/rows", params={"limit": 50})
                if answer.status_code != 200:
                    errors.append(answer.text[:200])
                    return
                n += 1
                done[index] = n

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return sum(done) / seconds


def upload_mb_per_s(url: str, body: bytes, name: str) -> float:
    times = []
    with httpx.Client(base_url=url, headers=ADMIN_HEADERS, timeout=600) as client:
        for _ in range(3):
            started = time.perf_counter()
            answer = client.put(f"/api/datasets/{name}", params={"mode": "replace"}, content=body)
            answer.raise_for_status()
            times.append(time.perf_counter() - started)
    return len(body) / 1e6 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--upload-mb", type=float, default=50.0)
    args = parser.parse_args()

    python = duckdb_env.lts_python()
    data = csv_bytes(args.rows)
    upload = csv_bytes(int(args.upload_mb * 1e6 / 28))
    results: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-lake-") as tmp, postgres.running_cluster() as pg:
        root = Path(tmp)
        servers: list[ServerProcess] = []
        try:
            embedded = ServerProcess(
                "backend", root / "embedded", env=secured_env(), python=python
            ).start()
            servers.append(embedded)
            lake_env = secured_env(
                MYAPP_CATALOG_URL=pg.url, MYAPP_LAKE_DATA_PATH=str(root / "lake")
            )
            (root / "lake").mkdir()
            lake_a = ServerProcess("backend", root / "lake-a", env=lake_env, python=python)
            servers.append(lake_a.start())
            lake_b = ServerProcess("backend", root / "lake-b", env=lake_env, python=python)
            servers.append(lake_b.start())

            for server in (embedded, lake_a):
                with httpx.Client(base_url=server.url, headers=ADMIN_HEADERS, timeout=600) as c:
                    c.put("/api/datasets/bench", content=data).raise_for_status()
            time.sleep(1)  # the second lake backend's views follow the catalog
            embedded_token, lake_token = viewer_token(embedded.url), viewer_token(lake_a.url)

            upload_embedded = upload_mb_per_s(embedded.url, upload, "upload")
            upload_lake = upload_mb_per_s(lake_a.url, upload, "upload")
            for label, urls, token, up in (
                ("embedded, one backend", [embedded.url], embedded_token, upload_embedded),
                ("lake, one backend", [lake_a.url], lake_token, upload_lake),
                ("lake, two backends", [lake_a.url, lake_b.url], lake_token, float("nan")),
            ):
                rate = reads_per_second(urls, token, args.clients, args.seconds)
                results.append((label, rate, up))
        finally:
            for server in servers:
                server.kill()

    print(
        f"\n{args.rows:,} rows, {args.clients} clients for {args.seconds:g} s; "
        f"upload {len(upload) / 1e6:.0f} MB CSV; DuckDB 1.4.4; load average "
        f"{os.getloadavg()[0]:.1f}\n"
    )
    print(f"| {'mode':24} | {'reads/s':>8} | {'upload MB/s':>11} |")
    print(f"|{'-' * 26}|{'-' * 10}|{'-' * 13}|")
    for label, rate, up in results:
        shown = f"{up:11.1f}" if up == up else f"{'—':>11}"
        print(f"| {label:24} | {rate:8.1f} | {shown} |")


if __name__ == "__main__":
    main()
