"""Hostile requests at the edges of browsing and of HTTP itself, against real servers.

Forged browse cursors (wrong types, missing keys, huge numbers, bad base64, another dataset's
or another sort's cursor) are a 400 with the error body, never a 500. Connections that never
finish their request line and headers are closed after MYAPP_HEADER_TIMEOUT_S, on the backend
role and on role all.
"""

from __future__ import annotations

import base64
import json
import socket
import time

import httpx
import pytest

from tests.backend.test_datasets_ingest import prefix, put, rows  # noqa: F401 - fixture
from tests.backend.test_errors import assert_error_shape


def _csv(n: int, offset: int = 0) -> bytes:
    lines = ["id,grp,score"]
    for i in range(offset, offset + n):
        grp = "" if i % 7 == 0 else ["red", "green", "blue"][i % 3]
        score = "" if i % 11 == 0 else str((i * 37) % 50 / 2)
        lines.append(f"{i},{grp},{score}")
    return ("\n".join(lines) + "\n").encode()


def _decode(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _encode(payload) -> str:
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
def numbers(api, prefix) -> str:  # noqa: F811 - the imported fixture
    response = put(api, prefix, _csv(60), filename="numbers.csv")
    assert response.status_code == 201, response.text
    return prefix


def _forgeries(real: dict) -> list[tuple[str, object]]:
    """Cursors made from a real one, each changed the way an attacker would."""
    out: list[tuple[str, object]] = []
    for key in sorted(real):
        out.append((f"without {key}", {k: v for k, v in real.items() if k != key}))
    wrong_values = {
        "o": ["10", 1.5, True, None, [1], {"a": 1}, -1, 10**30, 1e308, -(10**30)],
        "r": ["10", 2.5, False, None, [1], {}, -1, 10**30, 2**63, 1e300],
        "v": [5, 1.5, True, [1, 2], {"x": 1}, "not a number", "9" * 400, "x" * 30_000],
        "n": ["yes", 1, None, [], {}],
        "k": ["offset", "other", 5, None, ["keyset"]],
        "t": ["many", -3, 1.5, 10**40, [1], {}],
        "x": ["yes", 1, [], {}],
        "f": [123, None, [], "0" * 16],
    }
    for key, values in wrong_values.items():
        for value in values:
            out.append((f"{key}={value!r:.40}", {**real, key: value}))
    out += [
        ("a list", [real]),
        ("a number", 5),
        ("a string", "cursor"),
        ("null", None),
    ]
    return out


RAW_FORGERIES = [
    "%%%",
    "a",
    "====",
    "!!not-base64!!",
    base64.urlsafe_b64encode(b"\xff\xfe not json").decode(),
    base64.urlsafe_b64encode(b"{" * 50).decode(),
    base64.urlsafe_b64encode(b"[" * 20_000 + b"]" * 20_000).decode(),
    base64.urlsafe_b64encode(b'{"o": 1e999999}').decode(),
    "A" * 60_000,
]


@pytest.mark.parametrize("sort", ["score", "-score", None])
def test_forged_cursors_are_a_400_never_a_500(api, numbers, sort):
    params = {"limit": 5, "grp__ne": "blue"}
    if sort:
        params["sort"] = sort
    first = rows(api, numbers, **params)
    real = _decode(first["next"])
    problems = []
    for label, payload in _forgeries(real):
        answer = api.get(
            f"/api/datasets/{numbers}/rows", params={**params, "cursor": _encode(payload)}
        )
        if answer.status_code == 200:
            continue  # a change that still names a valid place (e.g. the same value again)
        if answer.status_code != 400 or answer.json()["error"]["code"] != "invalid_cursor":
            problems.append((label, answer.status_code, answer.text[:120]))
        else:
            assert_error_shape(answer, 400, "invalid_cursor")
    for token in RAW_FORGERIES:
        answer = api.get(f"/api/datasets/{numbers}/rows", params={**params, "cursor": token})
        if answer.status_code != 400:
            problems.append((token[:30], answer.status_code, answer.text[:120]))
        else:
            assert_error_shape(answer, 400, "invalid_cursor")
    assert not problems, problems


def test_the_real_cursor_still_pages_after_the_forgeries(api, numbers):
    params = {"limit": 7, "sort": "-score", "grp__ne": "blue"}
    seen = []
    page = rows(api, numbers, **params)
    total = page["total"]
    while True:
        seen += [row[0] for row in page["rows"]]
        assert (page["total"], page["total_exact"]) == (total, True)
        if page["next"] is None:
            break
        page = rows(api, numbers, **params, cursor=page["next"])
    assert len(seen) == len(set(seen)) == total


def test_a_cursor_of_another_dataset_or_version_is_refused(api, numbers, prefix):  # noqa: F811
    other = prefix + "_other"
    assert put(api, other, _csv(60), filename="same.csv").status_code == 201
    cursor = rows(api, numbers, limit=5, sort="score")["next"]
    # The same sort and filters, the same columns: only the rows differ.
    answer = api.get(
        f"/api/datasets/{other}/rows", params={"limit": 5, "sort": "score", "cursor": cursor}
    )
    assert_error_shape(answer, 400, "invalid_cursor")
    # A replace writes new rows: a cursor into the old ones does not continue in them.
    before = rows(api, numbers, limit=5, sort="score", grp__eq="red")
    assert put(api, numbers, _csv(40, offset=1000), mode="replace").status_code == 201
    answer = api.get(
        f"/api/datasets/{numbers}/rows",
        params={"limit": 5, "sort": "score", "grp__eq": "red", "cursor": before["next"]},
    )
    assert_error_shape(answer, 400, "invalid_cursor")
    # And the new rows are counted afresh, not from anything remembered of the old ones.
    after = rows(api, numbers, limit=5, sort="score", grp__eq="red")
    expected = sum(1 for i in range(1000, 1040) if i % 7 and i % 3 == 0)
    assert (after["total"], after["total_exact"]) == (expected, True)
    facets = api.get(f"/api/datasets/{numbers}/facets", params={"column": "grp"}).json()
    counts = {f["value"]: f["count"] for f in facets["facets"]["grp"]}
    assert counts["red"] == expected


def test_an_offset_beyond_any_dataset_is_a_400(api, numbers):
    for offset in (2**62 + 1, 10**30):
        answer = api.get(f"/api/datasets/{numbers}/rows", params={"offset": offset})
        assert answer.status_code in (400, 422), answer.text
        assert "error" in answer.json()
    assert rows(api, numbers, offset=2**40)["rows"] == []


# -- connections that never finish their headers -----------------------------------------

HEADER_TIMEOUT_S = 1.0
# What the test allows beyond the deadline: a loaded machine delays timers a little.
SLACK_S = 2.0


@pytest.fixture(scope="module", params=["backend", "all"])
def impatient(request, tmp_path_factory):
    from tests.support.servers import ServerProcess

    server = ServerProcess(
        request.param,
        tmp_path_factory.mktemp(f"impatient-{request.param}"),
        env={"MYAPP_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S)},
    ).start()
    yield server
    server.stop()


def _address(server) -> tuple[str, int]:
    url = httpx.URL(server.url)
    return url.host, url.port


def _wait_closed(sock: socket.socket, limit_s: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and what it sent before."""
    started = time.monotonic()
    sock.settimeout(limit_s)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"still open after {limit_s:g} s; received {received[:200]!r}")
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return time.monotonic() - started, received


@pytest.mark.parametrize(
    "sent",
    [b"GET /api/hea", b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"G"],
    ids=["half a request line", "headers without their end", "one byte"],
)
def test_an_unfinished_request_is_answered_408_and_closed(impatient, sent):
    with socket.create_connection(_address(impatient)) as sock:
        sock.sendall(sent)
        waited, received = _wait_closed(sock, HEADER_TIMEOUT_S + SLACK_S)
    assert waited <= HEADER_TIMEOUT_S + SLACK_S
    assert received.startswith(b"HTTP/1.1 408 "), received[:200]
    body = json.loads(received.split(b"\r\n\r\n", 1)[1])
    assert body["error"]["code"] == "request_timeout"


def test_a_silent_connection_is_closed(impatient):
    with socket.create_connection(_address(impatient)) as sock:
        waited, received = _wait_closed(sock, HEADER_TIMEOUT_S + SLACK_S)
    assert received == b""
    assert waited <= HEADER_TIMEOUT_S + SLACK_S


def test_a_dribbling_client_is_cut_off_at_the_deadline(impatient):
    """Sending a byte now and then does not extend the deadline (slowloris)."""
    with socket.create_connection(_address(impatient)) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /api/health HTTP/1.1\r\n")
        try:
            for _ in range(int((HEADER_TIMEOUT_S + SLACK_S) / 0.2)):
                sock.sendall(b"X")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        _wait_closed(sock, HEADER_TIMEOUT_S + SLACK_S)
    assert time.monotonic() - started <= HEADER_TIMEOUT_S + SLACK_S + 0.5


def test_whole_requests_and_kept_alive_connections_still_work(impatient):
    with httpx.Client(base_url=impatient.url, timeout=30) as client:
        for _ in range(3):
            assert client.get("/api/health").status_code == 200
            # Idle between requests for less than the deadline: the connection is reused.
            time.sleep(HEADER_TIMEOUT_S / 3)
    with socket.create_connection(_address(impatient)) as sock:
        # Headers in pieces that together arrive within the deadline are fine.
        for piece in (b"GET /api/health HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
            sock.sendall(piece)
            time.sleep(HEADER_TIMEOUT_S / 5)
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_body_that_takes_longer_than_the_deadline_is_read(impatient):
    # The deadline is for the request line and headers; a slow body is the upload's business.
    body = json.dumps({"sql": "SELECT 42 AS answer"}).encode()
    head = (
        b"POST /api/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    with socket.create_connection(_address(impatient)) as sock:
        sock.sendall(head)
        started = time.monotonic()
        for i in range(0, len(body), 4):
            sock.sendall(body[i : i + 4])
            time.sleep((HEADER_TIMEOUT_S * 1.5) / (len(body) / 4))
        assert time.monotonic() - started > HEADER_TIMEOUT_S
        sock.settimeout(10)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert b"42" in answer.split(b"\r\n\r\n", 1)[1]
