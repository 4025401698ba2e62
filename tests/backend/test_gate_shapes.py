"""The gate's verdict for a text that differs from one it passed only in small integer literals
(`WHERE id = 42` after `WHERE id = 7`) is reused without a parse. Such a text must get exactly
the verdict a full check gives it, anything else must be checked in full, and the answers the
API gives must not change."""

from __future__ import annotations

import random
import re

import duckdb
import pytest

from myapp.backend.errors import AppError
from myapp.backend.store.usersql.gate import GateMemory, Vetted, vet
from tests.backend.test_query_fast_path import answer, server  # noqa: F401 (fixture)
from tests.backend.test_query_support import run


@pytest.fixture(scope="module")
def conn():
    db = duckdb.connect()
    db.execute("CREATE TABLE sales (id BIGINT, city VARCHAR, amount DOUBLE, day DATE)")
    db.execute("CREATE TABLE cities (city VARCHAR, population BIGINT)")
    db.execute("CREATE TABLE t1 (id BIGINT)")
    yield db
    db.close()


def closed(conn: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor that fails if the gate asks DuckDB anything: the verdict came from memory."""
    cursor = conn.cursor()
    cursor.close()
    return cursor


def verdict(cursor: duckdb.DuckDBPyConnection, sql: str, memory: GateMemory) -> tuple:
    try:
        vetted = vet(cursor, sql, memory)
    except AppError as exc:
        return ("refused", exc.code, (exc.detail or {}).get("message"))
    return ("pass", vetted.text, vetted.body, vetted.parameters, vetted.datasets)


# Non-ASCII text before the numbers: DuckDB's tokenizer counts UTF-8 bytes.
@pytest.mark.parametrize("head", ["SELECT *", "SELECT 'é€' AS e, 2 AS \"ü\", *"])
def test_other_numbers_reuse_the_verdict_without_asking_duckdb(conn, head):
    memory = GateMemory()
    vet(conn.cursor(), f"{head} FROM sales WHERE id = 7 AND city = $city LIMIT 10;", memory)
    sql = f"{head} FROM sales WHERE id = 123456789 AND city = $city LIMIT 0;"
    assert vet(closed(conn), sql, memory) == Vetted(
        text=sql,
        body=sql[:-1],
        parameters=("city",),
        datasets=frozenset({"sales"}),
    )
    with pytest.raises(duckdb.ConnectionException):
        vet(closed(conn), sql.replace("sales", "t1"), memory)


@pytest.mark.parametrize(
    "other",
    [
        "SELECT * FROM t1 WHERE id = 7",  # another table
        "SELECT * FROM sales WHERE id = -7",  # a sign
        "SELECT * FROM sales WHERE id = 7.5",  # a decimal
        "SELECT * FROM sales WHERE id = 7e3",  # an exponent
        "SELECT * FROM sales WHERE id = 1_000",  # digits with an underscore
        "SELECT * FROM sales WHERE id = 7000000000",  # ten digits: not a 32-bit integer
        "SELECT * FROM sales WHERE id = '7'",  # a string
        "SELECT * FROM sales WHERE id = 7 -- 8",  # a comment
        "SELECT * FROM sales WHERE id = $id",  # a parameter
        "SELECT * FROM sales WHERE id = $1",  # a positional parameter
        "SELECT * FROM sales WHERE id = abs(7)",  # a function
        "SELECT * FROM sales WHERE id  = 7",  # spacing
        "SELECT * FROM sales WHERE id = 0x7",  # hex digits
    ],
)
def test_anything_but_small_integers_is_checked_in_full(conn, other):
    memory = GateMemory()
    vet(conn.cursor(), "SELECT * FROM sales WHERE id = 7", memory)
    with pytest.raises(duckdb.ConnectionException):
        vet(closed(conn), other, memory)


def test_a_long_text_is_checked_in_full(conn):
    # Cutting a text into its shape runs on the event loop: only short texts are cut.
    memory = GateMemory()
    comment = " -- " + "x" * 2100
    vet(conn.cursor(), "SELECT * FROM sales WHERE id = 7" + comment, memory)
    with pytest.raises(duckdb.ConnectionException):
        vet(closed(conn), "SELECT * FROM sales WHERE id = 8" + comment, memory)


def test_a_refusal_is_never_reused(conn):
    memory = GateMemory()
    first = verdict(conn.cursor(), "SELECT * FROM sales, read_csv('x') LIMIT 5", memory)
    assert first[:2] == ("refused", "function_not_allowed")
    with pytest.raises(duckdb.ConnectionException):
        vet(closed(conn), "SELECT * FROM sales, read_csv('x') LIMIT 6", memory)


# Statements with small integers in every place the grammar takes them, passing and refused.
CORPUS = [
    "SELECT * FROM sales WHERE id = 7",
    "SELECT id, amount * 2 AS twice FROM sales WHERE id BETWEEN 10 AND 20 ORDER BY 2 LIMIT 5",
    "SELECT city, count(*) FROM sales GROUP BY 1 HAVING count(*) > 3 ORDER BY 2 DESC LIMIT 3",
    "SELECT #1, #2 FROM sales",
    "SELECT * FROM sales USING SAMPLE 10 PERCENT (bernoulli, 42)",
    "SELECT * FROM sales USING SAMPLE 50 ROWS",
    "SELECT CAST(amount AS DECIMAL(10, 2)), CAST(day AS TIMESTAMP(3)) FROM sales",
    "SELECT [1, 2, 3][2], 'x1'[1:1], {'a': 1}.a, INTERVAL 3 DAY FROM sales LIMIT 1 OFFSET 2",
    "SELECT * FROM range(5) r JOIN t1 ON t1.id = r.range + 1",
    "WITH a AS (SELECT 1 AS n), b2 AS (SELECT n + 1 FROM a) SELECT * FROM b2, sales LIMIT 1",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r",
    "SELECT * FROM sales WHERE id = 7 AND city = $city2",
    "SELECT * FROM generate_series(1, 10, 2)",
    "SELECT 1 AS a1, 22 b22, 'x' AS \"3\" FROM cities",
    "SELECT sum(population) FILTER (WHERE population > 1000) OVER (ROWS 2 PRECEDING) FROM cities",
    "SELECT * FROM sales, read_csv('data/1.csv') LIMIT 1",
    "SELECT * FROM information_schema.tables LIMIT 1",
    "SELECT nextval('s1') FROM sales LIMIT 2",
    "SELECT * FROM sales WHERE id = $1",
    'SELECT * FROM "1.csv" LIMIT 1',
    "SELECT 1; SELECT 2",
    "SELECT * FROM sales LIMIT 5 6",
    "SELECT 1 FROM sales WHERE 2 = 2 UNION ALL SELECT 3 FROM nowhere9",
]


@pytest.mark.parametrize("sql", CORPUS)
def test_every_variant_gets_the_verdict_of_a_full_check(conn, sql):
    """The statement, then variants of it with other digits anywhere (in literals, names,
    strings): with the gate's memory of the first, each must get the verdict a fresh gate gives
    it. The one difference allowed: an error DuckDB's parser finds in a value (`SAMPLE 999
    PERCENT`, `#0`) is then found when the statement runs (the API answers the same, tested
    below)."""
    rng = random.Random(sql)
    memory = GateMemory()
    verdict(conn.cursor(), sql, memory)
    for _ in range(30):
        variant = re.sub(
            r"[0-9]+",
            lambda m: (
                str(rng.choice([0, 1, 9, 100, 999999999, 1000000000, rng.randrange(10**6)]))
                if rng.random() < 0.7
                else m.group(0)
            ),
            sql,
        )
        remembered = verdict(conn.cursor(), variant, memory)
        fresh = verdict(conn.cursor(), variant, GateMemory())
        if remembered != fresh:
            # Only where DuckDB's parser refuses a value: running the statement then fails
            # with the very error the gate would have given.
            assert remembered[0] == "pass" and fresh[:2] == ("refused", "sql_error"), (
                variant,
                remembered,
                fresh,
            )
            with pytest.raises(duckdb.ParserException) as raised:
                conn.execute(variant)
            assert fresh[2] in str(raised.value), (variant, fresh)


def test_an_error_in_a_value_reads_the_same_either_way(server):  # noqa: F811
    first = answer(run(server, "SELECT id FROM sales USING SAMPLE 999 PERCENT"))
    assert first[0] == 400 and "between 0 and 100" in first[1]["error"]["message"]
    assert run(server, "SELECT id FROM sales USING SAMPLE 10 PERCENT").status_code == 200
    assert answer(run(server, "SELECT id FROM sales USING SAMPLE 999 PERCENT")) == first


def test_each_new_id_gets_its_own_row(server):  # noqa: F811
    for value in [5, 17, 4, 123, 0, 999]:
        response = run(server, f"SELECT id, amount FROM sales WHERE id = {value}")
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == [[value, float(value % 100)]]
