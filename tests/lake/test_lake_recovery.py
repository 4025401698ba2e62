"""PostgreSQL lost while a lake backend runs: every request that needs it is a 503 with the
usual error body (never the catalog's password), and the backend serves again by itself once
PostgreSQL is back, without a restart."""

from __future__ import annotations

import subprocess
import threading
import time

import httpx
import pytest

from tests.support import postgres
from tests.support.accounts import ADMIN_HEADERS
from tests.support.lake import LakeBackends

pytestmark = pytest.mark.lake


@pytest.fixture
def own_cluster():
    """A cluster of this test's own: it is stopped and started again under the backend."""
    try:
        postgres.server_bin()
    except postgres.Unavailable as exc:
        pytest.skip(str(exc))
    with postgres.running_cluster() as cluster:
        yield cluster


def test_a_lost_catalog_is_a_503_and_the_backend_recovers_by_itself(
    lake_python, own_cluster, tmp_path
):
    backends = LakeBackends(lake_python[0], own_cluster, tmp_path)
    try:
        backend = backends.start()
        with httpx.Client(base_url=backend.url, headers=ADMIN_HEADERS, timeout=60) as client:
            made = client.put("/api/datasets/sales", content=b"id\n1\n2\n")
            assert made.status_code == 201, made.text

            # Load all along: readers on their own connections while PostgreSQL goes and comes
            # back; every answer is a 200 or a 503, never a 500 or a hang.
            stop_load = threading.Event()
            seen: list[int] = []

            def load() -> None:
                with httpx.Client(base_url=backend.url, headers=ADMIN_HEADERS, timeout=30) as c:
                    while not stop_load.is_set():
                        seen.append(c.get("/api/datasets/sales/rows").status_code)
                        seen.append(
                            c.post("/api/query", json={"sql": "SELECT 1 FROM sales"}).status_code
                        )

            loaders = [threading.Thread(target=load) for _ in range(2)]
            for loader in loaders:
                loader.start()
            time.sleep(0.5)
            postgres.stop(own_cluster)
            for method, url, body in (
                ("GET", "/api/datasets", None),
                ("GET", "/api/datasets/sales/rows", None),
                ("POST", "/api/query", {"sql": "SELECT count(*) FROM sales"}),
                ("PUT", "/api/datasets/other", None),
            ):
                if method == "PUT":
                    answer = client.put(url, content=b"id\n1\n")
                else:
                    answer = client.request(method, url, json=body)
                assert answer.status_code == 503, (url, answer.text)
                assert answer.json()["error"]["code"] in (
                    "catalog_unavailable",
                    "database_unavailable",
                ), (url, answer.text)
            assert client.get("/api/health").status_code == 503
            assert backend.proc.poll() is None  # still running

            postgres.start(own_cluster)
            back = time.monotonic()
            # Each connection the extension pooled before the outage fails once when next
            # used (PostgreSQL closed it), and is then replaced: a few more 503s, then none.
            deadline = time.monotonic() + 30
            failures, streak = 0, 0
            while streak < 10:
                assert time.monotonic() < deadline, f"no recovery ({failures} failures)"
                answers = [
                    client.get("/api/datasets"),
                    client.post("/api/query", json={"sql": "SELECT count(*) FROM sales"}),
                ]
                if all(a.status_code == 200 for a in answers):
                    streak += 1
                    continue
                assert {a.status_code for a in answers} <= {200, 503}, [a.text for a in answers]
                failures, streak = failures + 1, 0
                time.sleep(0.05)
            print(f"serving again {time.monotonic() - back:.1f} s after PostgreSQL came back")
            stop_load.set()
            for loader in loaders:
                loader.join(timeout=60)
            assert set(seen) <= {200, 503}, sorted(set(seen))
            assert 200 in seen and 503 in seen
            counted = client.post("/api/query", json={"sql": "SELECT count(*) FROM sales"})
            assert counted.status_code == 200, counted.text
            assert counted.json()["rows"] == [[2]]
            again = client.put("/api/datasets/other", content=b"id\n1\n")
            assert again.status_code == 201, again.text
            # The upload refused during the outage left nothing behind.
            assert [d["name"] for d in client.get("/api/datasets").json()["datasets"]] == [
                "other",
                "sales",
            ]
        log = backend.log_text()
        assert own_cluster.password not in log
    finally:
        backends.stop_all()
    # The catalog database is whole afterwards.
    done = subprocess.run(
        ["psql", own_cluster.url, "-tAc", "SELECT count(*) FROM myapp_internal.datasets"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == "2", done
