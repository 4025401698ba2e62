"""One caller cannot hold every query worker: a viewer sending slow queries in parallel leaves
a worker for everyone else, its own further runs wait for its own, and past
MYAPP_MAX_QUERIES_PER_USER running or waiting it is answered 429 with Retry-After. Callers
without an account (public read, share links) count by address."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.backend.test_query_support import ENDLESS_SQL, Background, error_of
from tests.support.accounts import ADMIN_HEADERS, Accounts, secured_env
from tests.support.servers import ServerProcess

TIME_LIMIT_MS = 4000
MAX_PER_USER = 3
DATASET = "fair_cities"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        "backend",
        tmp_path_factory.mktemp("fairness"),
        env=secured_env(
            MYAPP_QUERY_WORKERS="2",
            MYAPP_QUERY_TIMEOUT_MS=str(TIME_LIMIT_MS),
            MYAPP_MAX_QUERIES_PER_USER=str(MAX_PER_USER),
            MYAPP_PUBLIC_READ="true",
        ),
    ).start()
    answer = httpx.put(
        f"{process.url}/api/datasets/{DATASET}",
        content=b"id,city\n1,Oslo\n2,Lima\n",
        headers=ADMIN_HEADERS,
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    yield process
    process.stop()


@pytest.fixture(scope="module")
def tokens(server: ServerProcess) -> dict[str, str]:
    accounts = Accounts(server)
    try:
        return {
            "hog": accounts.user_token("viewer"),
            "other": accounts.user_token("viewer"),
        }
    finally:
        accounts.close()


def query(server: ServerProcess, sql: str, token: str | None = None, **extra) -> Background:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(extra.pop("headers", {}))
    return Background(
        "POST", server.url + "/api/query", json={"sql": sql, **extra}, headers=headers
    )


def test_one_viewer_with_slow_queries_leaves_a_worker_for_others(server, tokens):
    hogs = [query(server, ENDLESS_SQL, tokens["hog"]) for _ in range(2)]
    time.sleep(0.8)
    started = time.monotonic()
    answer = query(server, "SELECT 42 AS n", tokens["other"]).join()
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [[42]]
    assert time.monotonic() - started < 1.5
    for hog in hogs:
        assert hog.join().status_code in (400, 429)


def test_runs_past_the_allowance_are_429_with_retry_after(server, tokens):
    held = [query(server, ENDLESS_SQL, tokens["hog"], timeout_ms=2500) for _ in range(3)]
    time.sleep(0.8)
    started = time.monotonic()
    refused = query(server, "SELECT 1", tokens["hog"]).join()
    assert time.monotonic() - started < 1.0
    error = error_of(refused, 429)
    assert error["code"] == "too_many_queries"
    assert error["detail"] == {"max_queries_per_user": MAX_PER_USER}
    assert int(refused.headers["retry-after"]) > 0
    # A page of rows, facets and a profile (SQL on the backend's own threads) count too, so
    # parallel requests of one caller cannot take every thread the backend serves with.
    hog = {"Authorization": f"Bearer {tokens['hog']}"}
    for path in ("rows", "facets?column=city", "profile"):
        answer = httpx.get(f"{server.url}/api/datasets/{DATASET}/{path}", headers=hog)
        assert error_of(answer, 429)["code"] == "too_many_queries", path
    # Another account is not affected.
    assert query(server, "SELECT 2 AS n", tokens["other"]).join().status_code == 200
    other = {"Authorization": f"Bearer {tokens['other']}"}
    assert httpx.get(f"{server.url}/api/datasets/{DATASET}/rows", headers=other).status_code == 200
    for run in held:
        run.join()


def test_a_callers_further_runs_wait_for_its_own_and_then_run(server, tokens):
    first = query(server, ENDLESS_SQL, tokens["hog"], timeout_ms=1000)
    time.sleep(0.3)
    started = time.monotonic()
    second = query(server, "SELECT 7 AS n", tokens["hog"]).join()
    assert second.status_code == 200, second.text
    assert second.json()["rows"] == [[7]]
    # It waited for the first, which its time limit ended.
    assert time.monotonic() - started >= 0.5
    assert error_of(first.join(), 400)["code"] == "query_timeout"


def test_anonymous_callers_count_by_address(server):
    one = {"X-Forwarded-For": "192.0.2.10"}
    two = {"X-Forwarded-For": "192.0.2.20"}
    hogs = [query(server, ENDLESS_SQL, headers=one, timeout_ms=2500) for _ in range(3)]
    time.sleep(0.8)
    error = error_of(query(server, "SELECT 1", headers=one).join(), 429)
    assert error["code"] == "too_many_queries"
    answer = query(server, "SELECT 3 AS n", headers=two).join()
    assert answer.status_code == 200, answer.text
    for hog in hogs:
        hog.join()


def test_callers_without_an_account_cannot_read_or_cancel_each_others_runs(server, tokens):
    one = {"X-Forwarded-For": "192.0.2.30"}
    two = {"X-Forwarded-For": "192.0.2.40"}
    run_id = str(uuid.uuid4())
    pending = query(server, ENDLESS_SQL, headers=one, id=run_id, timeout_ms=2500)
    status_url = f"{server.url}/api/query/{run_id}"
    deadline = time.monotonic() + 5
    while httpx.get(status_url, headers=one).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert httpx.get(status_url, headers=one).json()["state"] == "running"
    # Another anonymous visitor, and another account, see no such run and cannot stop it.
    for headers in (two, {"Authorization": f"Bearer {tokens['other']}"}):
        assert error_of(httpx.get(status_url, headers=headers), 404)["code"] == "query_not_found"
        assert error_of(httpx.delete(status_url, headers=headers), 404)["code"] == (
            "query_not_found"
        )
    assert error_of(pending.join(), 400)["code"] == "query_timeout"


def test_ipv6_callers_count_by_their_64_network(server):
    """One IPv6 client usually holds a whole /64: its other addresses share its allowance."""
    hogs = [
        query(server, ENDLESS_SQL, headers={"X-Forwarded-For": f"2001:db8::{n}"}, timeout_ms=2500)
        for n in (1, 2, 3)
    ]
    time.sleep(0.8)
    refused = query(server, "SELECT 1", headers={"X-Forwarded-For": "2001:db8::ffff"}).join()
    assert error_of(refused, 429)["code"] == "too_many_queries"
    other = query(server, "SELECT 4 AS n", headers={"X-Forwarded-For": "2001:db8:0:1::1"}).join()
    assert other.status_code == 200, other.text
    for hog in hogs:
        hog.join()
