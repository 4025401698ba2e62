"""POST /api/query answers a statement the gate passed before on the event loop, without a
thread (execute.run_select_async). Every answer there must be the one the first run (on a
thread, through the gate) gave: rows, types, limits, errors, time limits, cancel, a catalog that
changed, results larger than one socket read, and more requests than workers."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from tests.backend.test_query_support import (
    CLIENT,
    ENDLESS_SQL,
    Background,
    error_of,
    make_workspace,
    run,
)
from tests.support.servers import ServerProcess

MAX_ROWS = 3000
TIME_LIMIT_MS = 3000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fast-path")
    env = {
        "MYAPP_DATA_DIR": str(make_workspace(root)),
        "MYAPP_MAX_ROWS": str(MAX_ROWS),
        "MYAPP_QUERY_TIMEOUT_MS": str(TIME_LIMIT_MS),
    }
    process = ServerProcess("backend", root, env=env).start()
    yield process
    process.stop()


def answer(response) -> tuple[int, Any]:
    """Status and body without what differs between runs (run id, elapsed time)."""
    body = response.json()
    if response.status_code == 200:
        body = {k: v for k, v in body.items() if k not in ("id", "elapsed_ms")}
    return response.status_code, body


def twice(server: ServerProcess, sql: str, **body: Any) -> tuple[Any, Any]:
    """The answers of a first run and of a run of the same text again."""
    first = answer(run(server, sql, **body))
    again = answer(run(server, sql, **body))
    return first, again


def test_rows_types_and_parameters_are_the_same_again(server):
    sql = (
        "SELECT id, city, amount, day, paid, price, 9007199254740993::BIGINT AS big, "
        "'NaN'::DOUBLE AS nan, [id, 2] AS list, {'a': city} AS s, $day::DATE AS given "
        "FROM sales WHERE city = $city AND day >= $day ORDER BY id LIMIT 7"
    )
    params = {"city": "Lima", "day": "2024-03-01"}
    first, again = twice(server, sql, params=params)
    assert first == again
    status, body = again
    assert status == 200 and body["row_count"] == 7 and body["truncated"] is False
    assert body["rows"][0][1] == "Lima" and body["rows"][0][6] == "9007199254740993"
    assert body["rows"][0][10] == "2024-03-01"
    # Other values for the same text are bound, not remembered.
    other = answer(run(server, sql, params={"city": "Oslo", "day": "2024-12-30"}))
    assert other[0] == 200 and {row[1] for row in other[1]["rows"]} == {"Oslo"}
    assert all(row[3] >= "2024-12-30" for row in other[1]["rows"])


def test_missing_parameter_is_the_same_error_again(server):
    sql = "SELECT count(*) FROM sales WHERE city = $city"
    assert answer(run(server, sql, params={"city": "Oslo"}))[0] == 200
    error = error_of(run(server, sql), 400)
    assert error["code"] == "missing_parameter" and error["detail"] == {"missing": ["city"]}


def test_row_limit_and_truncation_are_the_same_again(server):
    sql = "SELECT id, city FROM sales ORDER BY id DESC"
    for limit in (None, 5, 0):
        body = {} if limit is None else {"limit": limit}
        first, again = twice(server, sql, **body)
        assert first == again
        expected = MAX_ROWS if limit is None else limit
        assert again[1]["row_count"] == expected and again[1]["truncated"] is True
        if expected:
            assert again[1]["rows"][0] == [24999, "Faro"]


def test_a_result_of_many_socket_reads_arrives_whole(server):
    # ~1 MB: many reads of the worker's socket on the event loop.
    sql = "SELECT id, repeat(city, 60) AS long_text FROM sales ORDER BY id"
    first, again = twice(server, sql)
    assert first == again
    rows = again[1]["rows"]
    assert len(rows) == MAX_ROWS and rows[-1] == [MAX_ROWS - 1, "Faro" * 60]


def test_errors_of_duckdb_are_the_same_again(server):
    sql = "SELECT CAST(city AS INTEGER) AS n FROM sales"
    first, again = twice(server, sql)
    assert first == again
    error = again[1]["error"]
    assert again[0] == 400 and error["code"] == "sql_error"
    assert "Oslo" in error["message"] or "Conversion" in error["message"]


def test_answers_do_not_depend_on_what_the_worker_ran_before(server):
    """A worker keeps its read-only transaction from one query to the next (worker.py): after
    an error (an aborted transaction), a truncated result or a catalog change, the next answer
    is the one it would be on a fresh worker."""
    steps = [
        "SELECT count(*) AS n, sum(amount) AS total FROM sales",
        "SELECT CAST(city AS INTEGER) AS n FROM sales",
        "SELECT id FROM sales ORDER BY id",
        "SELECT city, count(*) AS n FROM sales GROUP BY city ORDER BY city",
        "SELECT 1 / 0 AS n",
        "SELECT error('stop here') AS n",
    ]
    expected = {sql: answer(run(server, sql)) for sql in steps}
    assert expected[steps[0]][0] == 200 and expected[steps[1]][0] == 400
    assert expected[steps[2]][1]["truncated"] is True
    name = f"held_{uuid.uuid4().hex[:8]}"
    url = f"{server.url}/api/datasets/{name}"
    for turn in range(3):
        for sql in steps[turn:] + steps[:turn]:
            assert answer(run(server, sql)) == expected[sql], (turn, sql)
        # A catalog change between runs: a dataset made and replaced is read at once.
        put = CLIENT.put(
            url,
            params={"format": "csv", "mode": "replace" if turn else "create"},
            content=f"a\n{turn}\n".encode(),
        )
        assert put.status_code in (200, 201), put.text
        assert answer(run(server, f"SELECT sum(a) AS total FROM {name}"))[1]["rows"] == [[turn]]
    assert CLIENT.delete(url).status_code == 204


def test_time_limit_stops_a_query_run_again(server):
    for _ in range(2):
        started = time.monotonic()
        error = error_of(run(server, ENDLESS_SQL, timeout_ms=600), 400)
        assert error["code"] == "query_timeout" and error["detail"] == {"timeout_ms": 600}
        assert time.monotonic() - started < 600 / 1000 + 2
    assert answer(run(server, "SELECT 41 + 1 AS n"))[1]["rows"] == [[42]]


def test_cancel_stops_a_query_run_again(server):
    sql = (
        "SELECT count(*) FROM sales a, sales b, range(4) r WHERE a.amount + b.amount + r.range = -1"
    )
    # The gate passes the text once (ended by its time limit), so the run below is a repeat.
    error_of(run(server, sql, timeout_ms=200), 400)
    query_id = str(uuid.uuid4())
    pending = Background("POST", server.url + "/api/query", json={"sql": sql, "id": query_id})
    status_url = f"{server.url}/api/query/{query_id}"
    deadline = time.monotonic() + 10
    while CLIENT.get(status_url).status_code != 200:
        assert time.monotonic() < deadline, "the run never showed up"
        time.sleep(0.02)
    error = error_of(run(server, "SELECT 1", id=query_id), 409)
    assert error["code"] == "query_id_in_use"
    assert CLIENT.delete(status_url).status_code == 204
    assert error_of(pending.join(), 409)["code"] == "query_cancelled"
    assert CLIENT.get(status_url).json()["state"] == "cancelled"
    assert answer(run(server, "SELECT 41 + 1 AS n"))[1]["rows"] == [[42]]


def test_a_replaced_dataset_is_read_again(server):
    name = f"fast_{uuid.uuid4().hex[:8]}"
    sql = f"SELECT sum(a) AS total FROM {name}"
    url = f"{server.url}/api/datasets/{name}"
    # The gate passes the text that holds a worker below once, so that run takes the fast path,
    # which holds its worker before the run shows up.
    error_of(run(server, ENDLESS_SQL, timeout_ms=200), 400)
    put = CLIENT.put(url, params={"format": "csv"}, content=b"a\n1\n2\n")
    assert put.status_code == 201, put.text
    assert twice(server, sql) == ((200, _total(3)), (200, _total(3)))
    put = CLIENT.put(url, params={"format": "csv", "mode": "replace"}, content=b"a\n10\n20\n30\n")
    assert put.status_code in (200, 201), put.text
    # The pool hands out the worker that answered last (workers.py), so runs one after another
    # all take the same one; the other, idle since before the replace, answers only while the
    # first is held by a run that does not end. Each must see the new file.
    for _ in range(2):
        assert answer(run(server, sql)) == (200, _total(60))
    query_id = str(uuid.uuid4())
    held = Background("POST", server.url + "/api/query", json={"sql": ENDLESS_SQL, "id": query_id})
    status_url = f"{server.url}/api/query/{query_id}"
    deadline = time.monotonic() + 10
    while CLIENT.get(status_url).status_code != 200:
        assert time.monotonic() < deadline, "the run never showed up"
        time.sleep(0.02)
    for _ in range(2):
        assert answer(run(server, sql)) == (200, _total(60))
    assert CLIENT.delete(status_url).status_code == 204
    assert error_of(held.join(), 409)["code"] == "query_cancelled"
    assert CLIENT.delete(url).status_code == 204
    for _ in range(2):
        error = error_of(run(server, sql), 400)
        assert name in error["message"]


def _total(value: int) -> dict[str, Any]:
    return {
        "columns": [{"name": "total", "type": "HUGEINT"}],
        "rows": [[value]],
        "row_count": 1,
        "truncated": False,
    }


def test_more_requests_than_workers_all_get_their_answer(server):
    sqls = [f"SELECT {n} AS n, count(*) AS c FROM sales WHERE id % 7 = {n % 7}" for n in range(12)]
    for sql in sqls:
        assert run(server, sql).status_code == 200
    results: dict[int, Any] = {}

    def ask(n: int) -> None:
        results[n] = answer(run(server, sqls[n]))

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for n in range(12):
        expected = len([i for i in range(25_000) if i % 7 == n % 7])
        assert results[n] == (
            200,
            {
                "columns": [{"name": "n", "type": "INTEGER"}, {"name": "c", "type": "BIGINT"}],
                "rows": [[n, expected]],
                "row_count": 1,
                "truncated": False,
            },
        )
