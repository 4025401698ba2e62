"""POST /api/query/chart: chart data straight from small results, and cut by DuckDB to at most
10,000 points (rows times y columns) from big ones."""

from __future__ import annotations

import pytest

from tests.backend.test_query_support import CLIENT, SALES_ROWS, error_of, make_workspace
from tests.support.servers import ServerProcess

MAX_POINTS = 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("chart")
    data = make_workspace(root)
    process = ServerProcess("backend", root, env={"MYAPP_DATA_DIR": str(data)}).start()
    yield process
    process.stop()  # SIGKILL would orphan the gunicorn worker


def chart(server, sql, **config):
    response = CLIENT.post(server.url + "/api/query/chart", json={"sql": sql, "chart": config})
    return response


def data_of(server, sql, **config):
    response = chart(server, sql, **config)
    assert response.status_code == 200, response.text
    return response.json()


def test_small_results_come_back_as_they_are_in_the_users_order(server):
    body = data_of(
        server,
        "SELECT city, sum(amount) AS total, count(*) AS n FROM sales GROUP BY city "
        "ORDER BY total DESC",
        type="bar",
        x="city",
        y=["total", "n"],
    )
    assert body["reduced"] is None
    assert [c["name"] for c in body["columns"]] == ["city", "total", "n"]
    assert [c["type"] for c in body["columns"]] == ["VARCHAR", "DOUBLE", "DOUBLE"]
    assert [row[0] for row in body["rows"]] == ["Faro", "Kyiv", "Pune", "Lima", "Oslo"]
    assert body["rows"][0][1:] == [257500.0, 5000.0]

    body = data_of(
        server, "SELECT id, amount FROM sales WHERE id < 50", type="line", x="id", y=["amount"]
    )
    assert body["reduced"] is None and body["row_count"] == 50


def test_bar_and_pie_sum_y_per_x_and_series(server):
    body = data_of(
        server,
        "SELECT city, paid, amount FROM sales",
        type="bar",
        x="city",
        y=["amount"],
        series="paid",
    )
    assert body["reduced"] == "aggregated"
    assert body["row_count"] == 10
    totals = {(row[0], row[1]): row[2] for row in body["rows"]}
    assert sum(totals.values()) == sum(range(100)) * SALES_ROWS / 100

    body = data_of(server, "SELECT city, amount FROM sales", type="pie", x="city", y=["amount"])
    assert body["reduced"] == "aggregated" and body["row_count"] == 5


def test_big_line_charts_are_bucketed_to_the_point_budget(server):
    body = data_of(
        server, "SELECT id, amount, price FROM sales", type="line", x="id", y=["amount", "price"]
    )
    assert body["reduced"] == "bucketed"
    assert 0 < body["row_count"] * 2 <= MAX_POINTS
    xs = [row[0] for row in body["rows"]]
    assert xs == sorted(xs) and xs[0] == 0
    # Averages over equal ranges of x (5 ids each): their mean is the overall mean.
    means = [row[1] for row in body["rows"]]
    assert abs(sum(means) / len(means) - 49.5) < 0.5

    body = data_of(
        server,
        "SELECT day, amount, city FROM sales",
        type="area",
        x="day",
        y=["amount"],
        series="city",
    )
    assert body["row_count"] <= MAX_POINTS
    assert body["rows"][0][0] == "2024-01-01"


def test_big_scatter_charts_are_sampled(server):
    body = data_of(
        server, "SELECT amount, price FROM sales", type="scatter", x="amount", y=["price"]
    )
    assert body["reduced"] == "sampled" and body["row_count"] == MAX_POINTS
    again = data_of(
        server, "SELECT amount, price FROM sales", type="scatter", x="amount", y=["price"]
    )
    assert again["rows"] == body["rows"]  # repeatable: the chart does not jump between runs


def test_too_many_categories_are_truncated_with_a_flag(server):
    body = data_of(
        server,
        "SELECT id::VARCHAR AS label, amount FROM sales",
        type="bar",
        x="label",
        y=["amount"],
    )
    assert body["reduced"] == "truncated" and body["row_count"] == MAX_POINTS


@pytest.mark.parametrize(
    ("sql", "config", "code", "words"),
    [
        (
            "SELECT city, amount FROM sales",
            {"x": "town", "y": ["amount"]},
            "unknown_column",
            "town",
        ),
        (
            "SELECT city, amount FROM sales",
            {"x": "amount", "y": ["city"]},
            "chart_not_numeric",
            "numbers",
        ),
        (
            "SELECT city, amount FROM sales",
            {"x": "city", "y": ["amount", "amount"]},
            "bad_chart",
            "once",
        ),
        (
            "SELECT * FROM myapp_internal.migrations",
            {"x": "id", "y": ["id"]},
            "table_not_allowed",
            "myapp_internal",
        ),
    ],
)
def test_chart_errors(server, sql, config, code, words):
    error = error_of(chart(server, sql, type="bar", **config), 400)
    assert error["code"] == code and words in error["message"]


def test_chart_types_are_validated(server):
    error = error_of(chart(server, "SELECT 1 AS a", type="radar", x="a", y=["a"]), 422)
    assert error["code"] == "validation_error"


def test_a_time_of_day_is_an_ordered_x_axis(server):
    # TIME is temporal (myapp/contract/types.py), as the chart panel suggests it: a line over
    # times keeps the rows in order and, when too many, averages equal ranges of time.
    few = data_of(
        server,
        "SELECT TIME '00:00:00' + INTERVAL (i) MINUTE AS t, i AS v FROM range(100) r(i)",
        type="line",
        x="t",
        y=["v"],
    )
    assert few["reduced"] is None and few["row_count"] == 100
    assert few["rows"][0] == ["00:00:00", 0] and few["rows"][-1] == ["01:39:00", 99]
    many = data_of(
        server,
        "SELECT TIME '00:00:00' + INTERVAL (i) SECOND AS t, i AS v FROM range(20000) r(i)",
        type="line",
        x="t",
        y=["v"],
    )
    assert many["reduced"] == "bucketed"
    assert many["row_count"] <= MAX_POINTS
    xs = [row[0] for row in many["rows"]]
    assert xs == sorted(xs) and xs[0] == "00:00:00"
