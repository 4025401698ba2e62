"""Two backends over one lake (one PostgreSQL catalog, one data path, a data directory each),
standing for two machines behind a load balancer: what one does, the other answers at once."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from myapp.backend.auth.limiter import LOGIN_FAILURES_PER_ACCOUNT
from tests.support.accounts import ADMIN_HEADERS, Accounts, bearer

pytestmark = pytest.mark.lake

CSV = b"id,region,amount\n1,north,10\n2,south,20\n3,north,30\n"


def query(url: str, headers: dict, sql: str) -> httpx.Response:
    return httpx.post(f"{url}/api/query", headers=headers, json={"sql": sql}, timeout=60)


def test_a_token_revoked_on_one_backend_is_refused_by_the_other(lake_backends):
    one, two = lake_backends.start(), lake_backends.start()
    accounts = Accounts(one)
    try:
        name = accounts.user("editor")
        made = accounts.token(name, "editor")
        headers = bearer(made["token"])
        # Made on one, accepted by the other; a session made on the other works on the first.
        assert httpx.get(f"{two.url}/api/datasets", headers=headers).status_code == 200
        other = Accounts(two)
        try:
            session = other.session(name)
        finally:
            other.close()
        assert httpx.get(f"{one.url}/api/datasets", headers=bearer(session)).status_code == 200

        revoked = httpx.delete(f"{one.url}/api/tokens/{made['id']}", headers=ADMIN_HEADERS)
        assert revoked.status_code == 204, revoked.text
        refused = httpx.get(f"{two.url}/api/datasets", headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "token_revoked"

        # A password changed on the second ends the sessions everywhere, the first included.
        changed = httpx.patch(
            f"{two.url}/api/users/{name}",
            headers=ADMIN_HEADERS,
            json={"password": "another-password-42"},
        )
        assert changed.status_code == 200, changed.text
        ended = httpx.get(f"{one.url}/api/datasets", headers=bearer(session))
        assert ended.status_code == 401, ended.text

        # Failed sign-ins count across the backends: half on each reach the limit.
        for attempt in range(LOGIN_FAILURES_PER_ACCOUNT):
            server = one if attempt % 2 else two
            wrong = httpx.post(
                f"{server.url}/api/auth/login",
                json={"username": name, "password": f"wrong-{attempt}"},
                headers={"X-Forwarded-For": f"198.51.100.{attempt}"},
            )
            assert wrong.status_code == 401, wrong.text
        for server in (one, two):
            throttled = httpx.post(
                f"{server.url}/api/auth/login",
                json={"username": name, "password": "another-password-42"},
            )
            assert throttled.status_code == 429, throttled.text
            assert int(throttled.headers["Retry-After"]) > 0
    finally:
        accounts.close()


def test_what_one_backend_loads_the_other_serves(lake_backends):
    one, two = lake_backends.start(), lake_backends.start()
    h = ADMIN_HEADERS
    put = httpx.put(f"{one.url}/api/datasets/sales", headers=h, content=CSV, timeout=60)
    assert put.status_code == 201, put.text

    # The catalog and the rows are shared: listed and browsed on the other at once.
    listed = httpx.get(f"{two.url}/api/datasets", headers=h).json()["datasets"]
    assert [(d["name"], d["row_count"], len(d["columns"])) for d in listed] == [("sales", 3, 3)]
    rows = httpx.get(f"{two.url}/api/datasets/sales/rows", headers=h, params={"sort": "id"})
    assert rows.status_code == 200 and rows.json()["rows"][2] == [3, "north", 30]

    # User SQL there admits the name once that backend's views have followed the catalog
    # (within half a second; see lake/engine.py).
    deadline = time.monotonic() + 10
    while True:
        answer = query(two.url, h, "SELECT region, sum(amount) FROM sales GROUP BY 1 ORDER BY 1")
        if answer.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [["north", 40], ["south", 20]]

    # A saved query saved on one runs on the other at once.
    saved = httpx.post(
        f"{one.url}/api/queries",
        headers=h,
        json={"title": "By region", "sql": "SELECT count(*) AS n FROM sales"},
    )
    assert saved.status_code == 201, saved.text
    ran = httpx.post(f"{two.url}/api/queries/{saved.json()['slug']}/run", headers=h, json={})
    assert ran.status_code == 200, ran.text
    assert ran.json()["rows"] == [[3]]

    # An append on the second lands on top of the first's load; the first sees all rows.
    more = httpx.put(
        f"{two.url}/api/datasets/sales",
        headers=h,
        params={"mode": "append"},
        content=b"id,region,amount\n4,east,40\n",
        timeout=60,
    )
    assert more.status_code == 201, more.text
    assert query(one.url, h, "SELECT count(*) FROM sales").json()["rows"] == [[4]]

    # The audit log is one for the cluster.
    actions = httpx.get(f"{one.url}/api/audit", headers=h).json()
    found = {e["action"] for e in actions["events"]}
    assert {"dataset.created", "dataset.appended"} <= found, found


def test_appends_through_both_backends_at_once_land_or_are_refused_whole(lake_backends):
    one, two = lake_backends.start(), lake_backends.start()
    h = ADMIN_HEADERS
    made = httpx.put(f"{one.url}/api/datasets/events", headers=h, content=b"who,n\nstart,0\n")
    assert made.status_code == 201, made.text
    per_backend = 4

    def append(server, who: str) -> list[tuple[int, str]]:
        out = []
        for n in range(per_backend):
            body = f"who,n\n{who},{n}\n{who},{n}\n".encode()
            answer = httpx.put(
                f"{server.url}/api/datasets/events",
                headers=h,
                params={"mode": "append"},
                content=body,
                timeout=120,
            )
            code = answer.json()["error"]["code"] if answer.status_code != 201 else ""
            out.append((answer.status_code, code))
        return out

    with ThreadPoolExecutor(2) as pool:
        results = dict(
            zip(("one", "two"), pool.map(append, (one, two), ("one", "two")), strict=True)
        )
    landed = {who: sum(1 for status, _ in r if status == 201) for who, r in results.items()}
    for answers in results.values():
        # Each append lands whole, or is a 409 to retry with nothing changed.
        assert all(
            status == 201 or (status == 409 and code in ("dataset_changed", "concurrent_change"))
            for status, code in answers
        ), results
    counted = query(
        one.url, h, "SELECT who, count(*) FROM events GROUP BY who ORDER BY who"
    ).json()["rows"]
    expected = [["start", 1]] + [[w, 2 * landed[w]] for w in ("one", "two") if landed[w]]
    assert sorted(counted) == sorted(expected), (counted, results)
    assert landed["one"] + landed["two"] >= per_backend, results
    print(f"appends landed: {landed}; answers: {results}")


def test_two_backends_started_together_and_one_killed_during_an_upload(lake_backends):
    one, two = lake_backends.start_together(2)
    h = ADMIN_HEADERS
    assert httpx.get(f"{two.url}/api/datasets", headers=h).status_code == 200
    migrations = lake_backends.psql("SELECT id, count(*) FROM myapp_internal.migrations GROUP BY 1")
    assert migrations and all(count == "1" for _, count in migrations)

    rows = 300_000
    body = b"id,label\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(rows))
    uploading = ThreadPoolExecutor(1)
    try:
        sent = uploading.submit(
            lambda: httpx.put(f"{one.url}/api/datasets/big", headers=h, content=body, timeout=120)
        )
        # Kill -9 the first backend (and its workers) once it has the whole upload in hand.
        deadline = time.monotonic() + 60
        while "upload received" not in one.log_text():
            assert time.monotonic() < deadline and not sent.done(), one.log_text()[-2000:]
            time.sleep(0.01)
        time.sleep(0.05)
        one.kill()
        with pytest.raises(httpx.HTTPError):
            sent.result(timeout=120).raise_for_status()
    finally:
        uploading.shutdown(wait=True)

    # The other backend keeps serving: the dataset is whole or absent, never part of it.
    listed = {
        d["name"]: d for d in httpx.get(f"{two.url}/api/datasets", headers=h).json()["datasets"]
    }
    if "big" in listed:
        assert listed["big"]["row_count"] == rows
        counted = query(two.url, h, "SELECT count(*), max(id) FROM big").json()["rows"]
        assert counted == [[rows, rows - 1]]
    print(f"after kill -9: {'whole' if 'big' in listed else 'absent'}")
    again = httpx.put(
        f"{two.url}/api/datasets/big",
        headers=h,
        params={"mode": "replace"},
        content=b"id,label\n1,x\n",
        timeout=120,
    )
    assert again.status_code == 201, again.text
    assert query(two.url, h, "SELECT count(*) FROM big").json()["rows"] == [[1]]


def test_a_query_started_on_one_backend_is_watched_and_cancelled_through_the_other(
    lake_backends,
):
    one, two = lake_backends.start(), lake_backends.start()
    h = ADMIN_HEADERS
    query_id = str(uuid.uuid4())
    slow = "SELECT sum(range % 7) FROM range(50000000000)"
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            httpx.post,
            f"{one.url}/api/query",
            headers=h,
            json={"sql": slow, "id": query_id},
            timeout=120,
        )
        status_url = f"{two.url}/api/query/{query_id}"
        deadline = time.monotonic() + 30
        while True:
            seen = httpx.get(status_url, headers=h)
            if seen.status_code == 200 and seen.json()["state"] == "running":
                break
            assert time.monotonic() < deadline and not pending.done(), seen.text
            time.sleep(0.1)
        assert seen.json()["id"] == query_id and seen.json()["kind"] == "query"

        started = time.monotonic()
        cancelled = httpx.delete(status_url, headers=h)
        assert cancelled.status_code == 204, cancelled.text
        answer = pending.result(timeout=60)
    assert time.monotonic() - started < 5
    assert answer.status_code == 409, answer.text
    assert answer.json()["error"]["code"] == "query_cancelled"

    deadline = time.monotonic() + 10
    while httpx.get(status_url, headers=h).json()["state"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    again = httpx.delete(status_url, headers=h)
    assert again.status_code == 409 and again.json()["error"]["code"] == "query_not_running"
    # Another caller cannot see or cancel it through either backend.
    stranger = Accounts(two)
    try:
        other = bearer(stranger.user_token("viewer"))
    finally:
        stranger.close()
    assert httpx.get(status_url, headers=other).status_code == 404
    assert httpx.delete(f"{one.url}/api/query/{query_id}", headers=other).status_code == 404
