"""values.dumps_rows writes the bytes encode_rows + orjson wrote, for values at every edge of
its batch checks (the 2^53 bound, NaN and infinities among NULLs, floats whose sum overflows),
straight from DuckDB as a query's result is."""

from __future__ import annotations

import duckdb
import orjson
import pytest

from myapp.backend.store.values import dumps_rows, encode_rows

CASES = {
    "integers inside the bound": "SELECT * FROM (VALUES (9007199254740991::BIGINT, "
    "-9007199254740991::BIGINT, 1::TINYINT, 2::UBIGINT), (NULL, 0, NULL, 0)) t(a, b, c, d)",
    "an integer past the bound": "SELECT * FROM (VALUES (1::BIGINT), (9007199254740992::BIGINT), "
    "(NULL)) t(a)",
    "a negative integer past the bound": "SELECT -9007199254740992::BIGINT AS a, 'x' AS s",
    "hugeint beyond 64 bits": "SELECT 170141183460469231731687303715884105727::HUGEINT AS h, "
    "1::HUGEINT AS small",
    "ubigint maximum": "SELECT 18446744073709551615::UBIGINT AS u",
    "finite floats among NULLs": "SELECT * FROM (VALUES (1.5::DOUBLE, 2.5::FLOAT), (NULL, NULL), "
    "(-0.0, 1e-45)) t(d, f)",
    "NaN among NULLs": "SELECT * FROM (VALUES (NULL::DOUBLE), ('NaN'::DOUBLE), (1.0)) t(d)",
    "infinities": "SELECT 'Infinity'::DOUBLE AS p, '-Infinity'::FLOAT AS n",
    "plus and minus infinity": "SELECT * FROM (VALUES ('Infinity'::DOUBLE), ('-Infinity')) t(d)",
    "floats whose sum overflows": "SELECT * FROM (VALUES (1e308::DOUBLE), (1e308)) t(d)",
    "only NULL floats": "SELECT NULL::DOUBLE AS d, NULL::BIGINT AS b",
    "mixed with values to convert": "SELECT 9007199254740993::BIGINT AS big, 1.25::DECIMAL(5,2) "
    "AS dec, DATE '2024-02-29' AS day, [1, 2] AS list, {'a': 'NaN'::DOUBLE} AS s, "
    "'\\x00\\xff'::BLOB AS b, INTERVAL 90 MINUTE AS i, 'é' AS t, true AS flag, "
    "'{\"k\": 1}'::JSON AS j",
    "converted columns beside safe numbers": "SELECT range AS id, range * 0.5 AS half, "
    "DATE '2024-01-01' + range::INTEGER AS day FROM range(50)",
    "no rows": "SELECT 1::BIGINT AS a WHERE false",
    "generated numbers": "SELECT range AS id, range % 1000 AS g, range * 7919 % 100000 AS v, "
    "'name ' || range AS s, range / 3 AS third FROM range(2000)",
}


@pytest.mark.parametrize("sql", CASES.values(), ids=CASES.keys())
def test_dumps_rows_writes_what_encode_rows_wrote(sql):
    with duckdb.connect() as conn:
        result = conn.execute(sql)
        types = [str(column[1]) for column in result.description]
        rows = result.fetchall()
    assert dumps_rows(rows, types) == orjson.dumps(encode_rows(rows, types))


def test_the_edges_are_the_json_rules():
    with duckdb.connect() as conn:
        result = conn.execute(
            "SELECT * FROM (VALUES (9007199254740992::BIGINT, 'NaN'::DOUBLE), "
            "(9007199254740991, NULL)) t(a, d)"
        )
        rows = result.fetchall()
    assert orjson.loads(dumps_rows(rows, ["BIGINT", "DOUBLE"])) == [
        ["9007199254740992", "NaN"],
        [9007199254740991, None],
    ]
