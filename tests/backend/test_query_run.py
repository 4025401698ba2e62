"""POST /api/query: results, parameters, errors with positions, row limits, time limits, cancel
and progress, memory limits."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.backend.test_query_support import (
    CLIENT,
    ENDLESS_SQL,
    Background,
    error_of,
    make_workspace,
    rows,
    run,
)
from tests.support.servers import ServerProcess

MAX_ROWS = 100
TIME_LIMIT_MS = 2500


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("query")
    data = make_workspace(root)
    env = {
        "MYAPP_DATA_DIR": str(data),
        "MYAPP_MAX_ROWS": str(MAX_ROWS),
        "MYAPP_QUERY_TIMEOUT_MS": str(TIME_LIMIT_MS),
    }
    process = ServerProcess("backend", root, env=env).start()
    yield process
    process.stop()  # SIGKILL would orphan the gunicorn worker


def healthy(server: ServerProcess) -> bool:
    return CLIENT.get(server.url + "/api/health").json()["status"] == "ok" and rows(
        server, "SELECT 41 + 1"
    ) == [[42]]


def test_result_has_columns_with_types_rows_and_timing(server):
    response = run(
        server,
        "SELECT city, count(*) AS n, sum(amount) AS total, min(day) AS first_day, "
        "bool_and(paid) AS all_paid, max(price) AS top_price "
        "FROM sales GROUP BY city ORDER BY city",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["columns"] == [
        {"name": "city", "type": "VARCHAR"},
        {"name": "n", "type": "BIGINT"},
        {"name": "total", "type": "DOUBLE"},
        {"name": "first_day", "type": "DATE"},
        {"name": "all_paid", "type": "BOOLEAN"},
        {"name": "top_price", "type": "DECIMAL(10,2)"},
    ]
    assert [row[0] for row in body["rows"]] == ["Faro", "Kyiv", "Lima", "Oslo", "Pune"]
    assert body["rows"][3][1:] == [5000, 237500.0, "2024-01-01", False, "9.95"]
    assert body["row_count"] == 5 and body["truncated"] is False
    assert isinstance(body["elapsed_ms"], float) and body["elapsed_ms"] >= 0
    assert uuid.UUID(body["id"])


def test_values_are_encoded_for_json(server):
    (row,) = rows(
        server,
        "SELECT 9007199254740993::BIGINT AS big, 'NaN'::DOUBLE AS nan, [1, 2] AS list, "
        "{'a': 1} AS struct, TIMESTAMP '2024-05-06 07:08:09' AS ts, NULL AS nothing, "
        "INTERVAL 90 MINUTE AS span",
    )
    assert row == [
        "9007199254740993",
        "NaN",
        [1, 2],
        {"a": 1},
        "2024-05-06T07:08:09",
        None,
        "P0DT1H30M0S",
    ]


def test_rows_are_limited_and_marked_truncated(server):
    body = run(server, "SELECT id FROM sales ORDER BY id DESC", limit=3).json()
    assert body["rows"] == [[24999], [24998], [24997]]
    assert body["truncated"] is True and body["row_count"] == 3

    body = run(server, "SELECT id FROM sales", limit=10**6).json()
    assert body["row_count"] == MAX_ROWS and body["truncated"] is True  # capped by the server

    body = run(server, "SELECT id FROM sales LIMIT 100").json()
    assert body["row_count"] == 100 and body["truncated"] is False

    body = run(server, "SELECT id, city FROM sales", limit=0).json()
    assert body["rows"] == [] and [c["name"] for c in body["columns"]] == ["id", "city"]


def test_user_order_survives_the_row_limit(server):
    got = rows(server, "SELECT id FROM sales WHERE id < 10 ORDER BY id % 3, id DESC")
    assert [r[0] for r in got] == [9, 6, 3, 0, 7, 4, 1, 8, 5, 2]


def test_parameters_are_bound_never_interpolated(server):
    hostile = "x'; DROP TABLE sales; --"
    got = rows(
        server,
        "SELECT $text AS t, $n + 1 AS n, $f * 2 AS f, $flag AS b, $none IS NULL AS is_null, "
        "len($list) AS l",
        params={"text": hostile, "n": 41, "f": 1.25, "flag": True, "none": None, "list": [1, 2]},
    )
    assert got == [[hostile, 42, 2.5, True, True, 2]]
    assert rows(
        server, "SELECT count(*) FROM sales WHERE city = $city", params={"city": hostile}
    ) == [[0]]
    assert rows(server, "SELECT count(*) FROM sales") == [[25000]]

    # Parameters work in filters over datasets, and extra values are ignored.
    got = rows(
        server,
        "SELECT count(*) FROM sales WHERE city = $city AND day >= $since",
        params={"city": "Oslo", "since": "2024-12-01", "unused": 1},
    )
    expected = rows(
        server, "SELECT count(*) FROM sales WHERE city = 'Oslo' AND day >= DATE '2024-12-01'"
    )
    assert got == expected and expected[0][0] > 0


def test_missing_and_positional_parameters_are_explained(server):
    error = error_of(run(server, "SELECT $a + $b", params={"a": 1}), 400)
    assert error["code"] == "missing_parameter" and "$b" in error["message"]
    assert error["detail"] == {"missing": ["b"]}

    error = error_of(run(server, "SELECT ? + 1", params={}), 400)
    assert error["code"] == "positional_parameter" and "$name" in error["message"]


@pytest.mark.parametrize(
    ("sql", "line", "column", "points_at", "words"),
    [
        ("SELECT nosuch FROM sales", 1, 8, "nosuch", "nosuch"),
        ("SELECT id,\n       amount\nFROM sales\nWHERE nosuch > 1", 4, 7, "nosuch", "nosuch"),
        ("SELEKT 1", 1, 1, "SELEKT", "syntax error"),
        ("SELECT 1 +", 1, 10, "+", "syntax error"),
        ("SELECT 'ü' || missing FROM sales", 1, 15, "missing", "missing"),
        ("SELECT 'x'::INTEGER", 1, 11, "::INTEGER", "convert"),
        ("SELECT * FROM sales WHERE city = 1", None, None, None, "city"),
    ],
)
def test_sql_errors_carry_duckdbs_message_and_the_position(
    server, sql, line, column, points_at, words
):
    error = error_of(run(server, sql), 400)
    assert error["code"] == "sql_error"
    assert words.lower() in error["message"].lower()
    assert words.lower() in error["detail"]["message"].lower()
    if line is None:
        return
    assert (error["detail"]["line"], error["detail"]["column"]) == (line, column), error
    assert sql[error["detail"]["position"] :].startswith(points_at), error
    assert f"line {line}, column {column}" in error["message"]


def test_error_position_in_a_long_line(server):
    select = ", ".join(f"id AS c{i}" for i in range(60))
    sql = f"SELECT {select}, nosuch FROM sales"
    error = error_of(run(server, sql), 400)
    assert sql[error["detail"]["position"] :].startswith("nosuch")


def test_empty_and_comment_only_text(server):
    for sql in ("   ", "-- nothing here", ";"):
        error = error_of(run(server, sql), 400)
        assert error["code"] == "empty_query", sql
    error = error_of(CLIENT.post(server.url + "/api/query", json={"sql": ""}), 422)
    assert error["code"] == "validation_error"


def test_time_limit_stops_a_runaway_query_and_the_server_stays_healthy(server):
    started = time.monotonic()
    error = error_of(run(server, ENDLESS_SQL, timeout_ms=700), 400)
    took = time.monotonic() - started
    assert error["code"] == "query_timeout"
    assert error["detail"] == {"timeout_ms": 700}
    assert 0.7 <= took < 1.7 + 0.5, took  # within a second of the limit (plus HTTP and load)
    assert healthy(server)


def test_requests_cannot_raise_the_servers_time_limit(server):
    started = time.monotonic()
    error = error_of(run(server, ENDLESS_SQL, timeout_ms=10**7), 400)
    took = time.monotonic() - started
    assert error["code"] == "query_timeout"
    assert error["detail"] == {"timeout_ms": TIME_LIMIT_MS}
    assert TIME_LIMIT_MS / 1000 <= took < TIME_LIMIT_MS / 1000 + 1.5, took
    assert healthy(server)


def wait_for(predicate, timeout_s: float = 10.0, interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError("condition not reached in time")


def test_cancel_stops_a_running_query_and_progress_is_reported(server):
    query_id = str(uuid.uuid4())
    sql = (
        "SELECT count(*) FROM sales a, sales b, range(4) r WHERE a.amount + b.amount + r.range = -1"
    )
    pending = Background("POST", server.url + "/api/query", json={"sql": sql, "id": query_id})
    status_url = f"{server.url}/api/query/{query_id}"

    def progressing():
        response = CLIENT.get(status_url)
        if response.status_code != 200:
            return None
        body = response.json()
        return body if body["state"] == "running" and body["progress"] else None

    status = wait_for(progressing)
    assert status["id"] == query_id and status["kind"] == "query"
    assert 0 < status["progress"] <= 100
    assert status["elapsed_ms"] > 0

    # The same id cannot start a second run while the first is going.
    error = error_of(run(server, "SELECT 1", id=query_id), 409)
    assert error["code"] == "query_id_in_use"

    started = time.monotonic()
    cancel = CLIENT.delete(status_url)
    assert cancel.status_code == 204
    response = pending.join()
    assert time.monotonic() - started < 1.5
    error = error_of(response, 409)
    assert error["code"] == "query_cancelled"

    status = CLIENT.get(status_url).json()
    assert status["state"] == "cancelled"
    error = error_of(CLIENT.delete(status_url), 409)
    assert error["code"] == "query_not_running"
    assert healthy(server)


def test_status_of_finished_and_unknown_queries(server):
    query_id = str(uuid.uuid4())
    assert run(server, "SELECT 1", id=query_id).status_code == 200
    status = CLIENT.get(f"{server.url}/api/query/{query_id}").json()
    assert status["state"] == "finished" and status["progress"] == 100

    failed_id = str(uuid.uuid4())
    run(server, "SELECT nosuch FROM sales", id=failed_id)
    assert CLIENT.get(f"{server.url}/api/query/{failed_id}").json()["state"] == "failed"

    unknown = CLIENT.get(f"{server.url}/api/query/{uuid.uuid4()}")
    assert error_of(unknown, 404)["code"] == "query_not_found"
    assert error_of(CLIENT.delete(f"{server.url}/api/query/{uuid.uuid4()}"), 404)
    # Run ids are UUIDs: any other name is no endpoint at all.
    assert error_of(CLIENT.get(f"{server.url}/api/query/not-a-uuid"), 404)["code"] == "not_found"


def test_memory_and_disk_limits_are_a_clear_4xx(start_server, tmp_path):
    server = start_server(
        "backend",
        env={
            "MYAPP_DATA_DIR": str(make_workspace(tmp_path)),
            "MYAPP_MEMORY_LIMIT": "64MB",
            "MYAPP_TEMP_DIR_LIMIT": "16MB",
        },
        workdir=tmp_path,
    )
    try:
        error = error_of(
            run(
                server,
                "SELECT count(*) FROM (SELECT range % 5000000 AS g, list(range) AS l "
                "FROM range(20000000) GROUP BY g)",
            ),
            422,
        )
        assert error["code"] == "query_too_large"
        assert "memory" in error["message"] and "SET" not in error["message"]
        assert healthy(server)
    finally:
        server.stop()


def test_a_query_run_again_after_its_dataset_is_gone_is_a_clear_4xx(api):
    """The gate remembers texts that passed; a dataset deleted since then must not turn the
    same text into a server error, and a new dataset of that name is found again."""
    name = f"gone_{uuid.uuid4().hex[:8]}"
    sql = f"SELECT count(*) AS n FROM {name}"
    upload = api.put(f"/api/datasets/{name}", params={"format": "csv"}, content=b"a\n1\n2\n")
    assert upload.status_code == 201, upload.text
    first = api.post("/api/query", json={"sql": sql})
    assert first.status_code == 200 and first.json()["rows"] == [[2]]

    assert api.delete(f"/api/datasets/{name}").status_code == 204
    again = api.post("/api/query", json={"sql": sql})
    assert again.status_code == 400, again.text
    assert name in again.json()["error"]["message"]

    upload = api.put(f"/api/datasets/{name}", params={"format": "csv"}, content=b"a\n1\n")
    assert upload.status_code == 201, upload.text
    third = api.post("/api/query", json={"sql": sql})
    assert third.status_code == 200 and third.json()["rows"] == [[1]]
