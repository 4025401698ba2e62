"""/api/metrics: Prometheus' text format, for admins and the metrics token only, moving with
what the backend does."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.accounts import ADMIN_HEADERS, Accounts, bearer, secured_env

METRICS_TOKEN = "metrics-scraper-token-0123456789"


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def server(start_server):
    return start_server("backend", env=secured_env(MYAPP_METRICS_TOKEN=METRICS_TOKEN))


def test_metrics_are_refused_to_anyone_but_admins_and_the_metrics_token(server):
    accounts = Accounts(server)
    try:
        viewer = accounts.user_token("viewer")
        editor = accounts.user_token("editor")
    finally:
        accounts.close()
    url = f"{server.url}/api/metrics"
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
    for token in (viewer, editor):
        refused = httpx.get(url, headers=bearer(token))
        assert refused.status_code == 403
        assert refused.json()["error"]["detail"]["required_role"] == "admin"
    assert httpx.get(url, headers=bearer("not-the-metrics-token")).status_code == 401
    for headers in (ADMIN_HEADERS, bearer(METRICS_TOKEN)):
        ok = httpx.get(url, headers=headers)
        assert ok.status_code == 200
        assert ok.headers["content-type"].startswith("text/plain")
        assert "myapp_build_info{" in ok.text
    # The metrics token opens nothing else.
    other = httpx.get(f"{server.url}/api/datasets", headers=bearer(METRICS_TOKEN))
    assert other.status_code == 401


def test_metrics_move_with_requests_queries_uploads_exports_and_sign_ins(server):
    api = httpx.Client(base_url=server.url, headers=ADMIN_HEADERS, timeout=60)

    def scrape():
        response = httpx.get(f"{server.url}/api/metrics", headers=bearer(METRICS_TOKEN))
        assert response.status_code == 200
        return _samples(response.text)

    before = scrape()
    build = [k for k in before if k[0] == "myapp_build_info"]
    assert build and dict(build[0][1])["version"]

    body = b"id,city\n" + b"".join(f"{i},c{i % 7}\n".encode() for i in range(2000))
    uploaded = api.put("/api/datasets/metered?format=csv", content=body)
    assert uploaded.status_code == 201, uploaded.text
    assert api.get("/api/datasets/metered").status_code == 200
    assert api.get("/api/datasets/no_such_one").status_code == 404
    ok = api.post("/api/query", json={"sql": "SELECT count(*) FROM metered"})
    assert ok.status_code == 200
    bad = api.post("/api/query", json={"sql": "SELECT nope FROM metered"})
    assert bad.status_code == 400
    slow = api.post(
        "/api/query",
        json={"sql": "SELECT count(*) FROM range(1000000000000) t(x) WHERE x % 7 = 3",
              "timeout_ms": 200},
    )  # fmt: skip
    assert slow.status_code == 400 and slow.json()["error"]["code"] == "query_timeout"
    export = api.get("/api/query/export", params={"sql": "SELECT * FROM metered", "format": "csv"})
    assert export.status_code == 200
    wrong = httpx.post(
        f"{server.url}/api/auth/login", json={"username": "nobody", "password": "wrong-one"}
    )
    assert wrong.status_code == 401

    after = scrape()

    def moved(name, **labels):
        return _value(after, name, **labels) - _value(before, name, **labels)

    # Requests by route template, not by URL.
    assert moved("myapp_http_requests_total", method="GET", route="/api/datasets/{name}",
                 status="200") == 1  # fmt: skip
    assert moved("myapp_http_requests_total", method="GET", route="/api/datasets/{name}",
                 status="404") == 1  # fmt: skip
    assert not [k for k in after if "metered" in str(k[1]) or "no_such_one" in str(k[1])]
    assert moved("myapp_http_request_duration_seconds_count", method="PUT",
                 route="/api/datasets/{name}") == 1  # fmt: skip
    assert moved("myapp_query_runs_total", kind="adhoc", outcome="ok") == 1
    assert moved("myapp_query_runs_total", kind="adhoc", outcome="error") == 1
    assert moved("myapp_query_runs_total", kind="adhoc", outcome="timeout") == 1
    assert moved("myapp_query_duration_seconds_count", kind="adhoc") == 3
    assert moved("myapp_upload_bytes_total") == len(body)
    assert moved("myapp_uploads_total", outcome="ok") == 1
    assert moved("myapp_upload_duration_seconds_count") == 1
    assert moved("myapp_exports_total", kind="export", outcome="ok") == 1
    assert moved("myapp_export_bytes_total", kind="export") == len(export.content)
    assert moved("myapp_signin_failures_total") == 1
    # Read at scrape time from DuckDB and the side-instance slots.
    assert _value(after, "myapp_duckdb_memory_bytes") > 0
    assert ("myapp_duckdb_temporary_storage_bytes", ()) in after
    assert ("myapp_spill_dir_bytes", ()) in after
    assert _value(after, "myapp_side_instances", state="limit") >= 1
    assert _value(after, "myapp_side_instances", state="in_use") == 0
    assert _value(after, "myapp_side_instances", state="waiting") == 0
    # The worker pools that ran the queries above, all back to idle.
    for pool in ("interactive", "export"):
        running = _value(after, "myapp_query_workers", pool=pool, state="running")
        assert running >= 1
        assert _value(after, "myapp_query_workers", pool=pool, state="idle") == running
    api.close()


def test_sign_in_throttles_are_counted(server):
    login = f"{server.url}/api/auth/login"
    statuses = []
    for _ in range(30):
        response = httpx.post(login, json={"username": "victim", "password": "guess"})
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    text = httpx.get(f"{server.url}/api/metrics", headers=bearer(METRICS_TOKEN)).text
    samples = _samples(text)
    assert _value(samples, "myapp_signin_throttled_total") >= 1
    assert _value(samples, "myapp_signin_failures_total") == statuses.count(401)
