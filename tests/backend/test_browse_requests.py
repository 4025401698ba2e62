"""What a page of rows costs a request, without changing its answer: the route's bytes are the
response model's, an unsorted page's rowid range is put in order in Python, a cursor page
sorted by text runs no statement to check its value, a time budget wakes its watcher only
when the watcher would sleep past it, and a search matches ASCII text with ILIKE."""

from __future__ import annotations

import base64
import json
import random
import time

import duckdb
import pytest
from pydantic import TypeAdapter

from myapp.backend.errors import BadRequest
from myapp.backend.store import browse
from myapp.backend.store import datasets as catalog
from myapp.backend.store.browse import budgets
from myapp.backend.store.browse import filters as browse_filters
from myapp.backend.store.browse import rows as browse_rows
from myapp.models.datasets import RowsPage
from tests.backend import test_datasets_ingest as ingest
from tests.backend.test_browse_fast_paths import _reference, big, db  # noqa: F401
from tests.backend.test_datasets_ingest import parquet_bytes, put
from tests.backend.test_errors import assert_error_shape

prefix = ingest.prefix
PAGE = TypeAdapter(RowsPage)

# Floats whose shortest text has an exponent: pydantic writes 1e+16 where orjson writes 1e16.
_VALUES = """SELECT i AS id,
    [1e16, 1.5e-7, -0.0, 0.1, 1.7976931348623157e308, 'nan'::DOUBLE, 'inf'::DOUBLE,
     123456789012345678.0, NULL][1 + i % 9] AS f,
    CASE WHEN i % 4 = 0 THEN 9007199254740993 * i ELSE i - 20 END AS big,
    CAST(i / 7 AS DECIMAL(12, 4)) AS dec,
    ['Müller', 'a"b\\c', '</script>', chr(1) || chr(31) || chr(127), '😀 ü', '', NULL,
     'line' || chr(10) || 'break', chr(8232)][1 + i % 9] AS s,
    DATE '2024-02-28' + CAST(i AS INTEGER) AS d,
    TIMESTAMP '2024-01-01 00:00:00.123456' + to_seconds(i * 3600) AS ts,
    CASE WHEN i % 3 = 0 THEN NULL ELSE i % 2 = 0 END AS b,
    [i, NULL, i * 2] AS l,
    {'k': i, 'v': 'x' || i} AS st,
    MAP([i % 3], ['m' || i]) AS m,
    to_seconds(i * 61) AS iv,
    CAST(i AS FLOAT) / 3 AS fl
FROM range(120) t(i)"""


def _same_as_the_model(response) -> dict:
    """The answer is what FastAPI's response model writes for it, to the byte."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.content == PAGE.dump_json(PAGE.validate_json(response.content))
    return response.json()


def test_the_rows_routes_bytes_are_the_response_models(api, prefix, tmp_path):
    """Pages of many types, sorted, filtered, searched, by cursor and by offset, and the
    errors: every answer as the response model wrote it before the route sent bytes."""
    response = put(api, prefix, parquet_bytes(tmp_path, _VALUES), format="parquet")
    assert response.status_code == 201, response.text
    url = f"/api/datasets/{prefix}/rows"
    cases = [
        {},
        {"sort": "f"},
        {"sort": "-f"},
        {"sort": "s"},
        {"sort": "-big"},
        {"sort": "dec", "b__eq": "true"},
        {"q": "mül"},
        {"sort": "-d", "q": "a"},
        {"s__contains": "ü", "sort": "ts"},
        {"offset": "7"},
    ]
    pages = 0
    for params in cases:
        body = _same_as_the_model(api.get(url, params={**params, "limit": 11}))
        cursor = body["next"]
        following = {k: v for k, v in params.items() if k != "offset"}
        while cursor is not None:
            body = _same_as_the_model(
                api.get(url, params={**following, "limit": 11, "cursor": cursor})
            )
            cursor = body["next"]
            pages += 1
    assert pages > 20
    assert_error_shape(api.get(url, params={"sort": "nope"}), 400, "unknown_column")
    assert_error_shape(api.get(url, params={"cursor": "abc"}), 400, "invalid_cursor")
    assert_error_shape(api.get(url, params={"d__gt": "soon"}), 400, "invalid_filter")
    assert_error_shape(api.get(f"/api/datasets/{prefix}_none/rows"), 404, "dataset_not_found")
    assert_error_shape(api.get(url, params={"limit": "0"}), 422, "validation_error")


def test_page_json_writes_what_the_model_writes():
    """The encoder alone, on values whose text differs between JSON writers."""
    rows = [[1e16, -1.5e-7, 1e22, 123456789012345678.0, 5e-324, -0.0, 0.1, "é\u2028\x00"]]
    page = {
        "columns": [{"name": "a", "type": "DOUBLE"}],
        "rows": rows,
        "next": None,
        "total": 1,
        "total_exact": True,
        "offset": 0,
        "limit": 50,
    }
    assert browse.page_json(page) == PAGE.dump_json(PAGE.validate_python(page))


class _Shuffled:
    """A cursor whose unsorted rowid ranges come back in reverse: DuckDB promises no order
    without ORDER BY, so the page must not depend on the one it gives today."""

    def __init__(self, cur) -> None:
        self._cur = cur
        self.ranges = 0

    def execute(self, sql, params=None):
        result = self._cur.execute(sql, params)
        if "rowid >= $lo" in sql:
            self.ranges += 1
            return _Reversed(result)
        return result

    def __getattr__(self, name):
        return getattr(self._cur, name)


class _Reversed:
    def __init__(self, result) -> None:
        self.description = result.description
        self._rows = result.fetchall()

    def fetchall(self):
        return self._rows[::-1]


def test_unsorted_ranges_are_put_in_rowid_order(big):  # noqa: F811
    """Pages across row groups, by cursor and by offset, are the plain query's whatever order
    the range's rows arrive in."""
    with big.cursor() as cur:
        record = catalog.get_dataset(cur, "groups")
        cache = browse.BrowseCache()
        shuffled = _Shuffled(cur)
        cursor = None
        for _ in range(3):
            args = dict(items=[], limit=1000, offset=None, sort=None, q=None, timeout_s=60)
            page = browse.read_rows(shuffled, record, cursor=cursor, cache=cache, **args)
            assert page == browse.read_rows(cur, record, cursor=cursor, **args)
            cursor = page["next"]
        args = dict(items=[], limit=300, cursor=None, sort=None, q=None, timeout_s=60)
        for offset in (0, 122_800, 245_700):
            page = browse.read_rows(shuffled, record, offset=offset, cache=cache, **args)
            assert page == browse.read_rows(cur, record, offset=offset, **args)
        assert shuffled.ranges == 6


class _Logged:
    def __init__(self, cur) -> None:
        self._cur = cur
        self.statements: list[str] = []

    def execute(self, sql, params=None):
        self.statements.append(sql)
        return self._cur.execute(sql, params)

    def __getattr__(self, name):
        return getattr(self._cur, name)


def _with_value(token: str, value) -> str:
    state = browse.decode_cursor(token)
    state["v"] = value
    raw = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_text_cursor_page_runs_one_statement_and_refuses_alike(big, monkeypatch):  # noqa: F811
    """Sorted by a VARCHAR past the OFFSET rows: the page is one statement (no check of the
    cursor's value) and the rows are DuckDB's; a value no VARCHAR holds fails as before, and
    a value that does not fit another type is still a 400."""
    monkeypatch.setattr(browse_rows, "OFFSET_PAGES_ROWS", 0)
    with big.cursor() as cur:
        record = catalog.get_dataset(cur, "groups")
        expected, _ = _reference(cur, record, "t", [], None)
        args = dict(items=[], limit=500, offset=None, sort="t", q=None, timeout_s=60)
        first = browse.read_rows(cur, record, cursor=None, **args)
        logged = _Logged(cur)
        second = browse.read_rows(logged, record, cursor=first["next"], **args)
        assert len(logged.statements) == 1
        assert [r[0] for r in first["rows"] + second["rows"]] == expected[:1000]

        forged = _with_value(first["next"], "\ud800")
        for near_top in (0, 1024):  # read by the range, and with OFFSET (the value unused)
            monkeypatch.setattr(browse_rows, "OFFSET_PAGES_ROWS", near_top)
            with pytest.raises(duckdb.InvalidInputException):
                browse.read_rows(cur, record, cursor=forged, **args)

        by_number = {**args, "sort": "x"}
        token = browse.read_rows(cur, record, cursor=None, **by_number)["next"]
        with pytest.raises(BadRequest) as refused:
            browse.read_rows(cur, record, cursor=_with_value(token, "many"), **by_number)
        assert refused.value.code == "invalid_cursor"


def test_a_budget_past_the_watchers_wake_up_waits_for_it(db, monkeypatch):  # noqa: F811
    """A block whose time is up after the watcher's next wake-up does not wake it, and is
    interrupted on time all the same; one whose time is up before it wakes the watcher."""
    slow = "SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3"
    monkeypatch.setattr(budgets, "MAX_SLEEP_S", 0.2)
    with db.cursor() as cur:
        with browse.time_budget(cur, 60):
            pass
        time.sleep(0.3)  # the watcher sleeps 0.2 s at a time now
        started = time.monotonic()
        with pytest.raises(duckdb.InterruptException), browse.time_budget(cur, 0.7):
            cur.execute(slow).fetchall()
        assert 0.7 <= time.monotonic() - started < 2.5

        monkeypatch.setattr(budgets, "MAX_SLEEP_S", 30.0)
        time.sleep(0.5)  # now it sleeps up to 30 s
        started = time.monotonic()
        with pytest.raises(duckdb.InterruptException), browse.time_budget(cur, 0.3):
            cur.execute(slow).fetchall()
        assert 0.3 <= time.monotonic() - started < 5
        assert cur.execute("SELECT 42").fetchone() == (42,)


# ASCII with LIKE's own characters; accents, a combining mark, the Kelvin sign, dotted and
# dotless i, a ligature, a fullwidth percent sign, NUL.
_LETTERS = [*"abcXYZ %_\\'.-0", "é", "É", "ü", "ß", "\u212a", "İ", "\u0131", "\u0301"]
_LETTERS += ["😀", "Æ", "ø", "Ω", "ﬁ", "Å", "\uff05", "\x00", "\n"]


def test_a_search_finds_what_folding_every_value_finds():
    """Row by row, the search's test (ILIKE for ASCII text, else folded) is the plain
    `contains(strip_accents(lower(text)), strip_accents(lower(needle)))`, for needles cut from
    the values and made up, with LIKE's % and _ in them too, ASCII or not, and NULL."""
    rng = random.Random(15)

    def text(n: int) -> str:
        return "".join(rng.choice(_LETTERS) for _ in range(n))

    values = [text(rng.randint(0, 8)) for _ in range(2000)]
    values += [None, "", "MÜLLER", "Muller", "100%_sure\\", "a_b", "a%b", "ABC"]
    needles = {"muller", "MÜL", "a_b", "100%", "%", "_", "\\", "k", "ss", "é", "e", "Abc"}
    for _ in range(150):
        value = rng.choice(values) or "x"
        i = rng.randint(0, len(value))
        needles.add(value[i : rng.randint(i, len(value))] if rng.random() < 0.7 else text(2))
    conn = duckdb.connect()
    conn.execute("CREATE TABLE t (s VARCHAR)")
    conn.executemany("INSERT INTO t VALUES (?)", [[v] for v in values])
    plain = "contains(strip_accents(lower(s)), strip_accents(lower($n)))"
    ascii_paths = 0
    for needle in sorted(n for n in needles if n.strip()):
        test = browse_filters._contains_folded("s", "$n", needle)
        ascii_paths += "ILIKE" in test
        mismatched = conn.execute(
            f"SELECT s FROM t WHERE ({plain}) IS DISTINCT FROM ({test})", {"n": needle}
        ).fetchall()
        assert mismatched == [], (needle, mismatched[:5])
    assert ascii_paths > 50
