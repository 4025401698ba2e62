"""Browsing datasets through a real backend: rows, cursors, filters, facets, profile, rename,
delete, export, and how values look in JSON."""

from __future__ import annotations

import json
import math

import duckdb
import pytest

from tests.backend import test_datasets_ingest as ingest
from tests.backend.test_datasets_ingest import parquet_bytes, put, rows
from tests.backend.test_errors import assert_error_shape

prefix = ingest.prefix

N = 250


def _people_csv() -> bytes:
    lines = ["id,grp,score,name,day"]
    for i in range(N):
        grp = "" if i % 7 == 0 else ["red", "green", "blue"][i % 3]
        score = "" if i % 11 == 0 else str((i * 37) % 50 / 2)
        lines.append(f"{i},{grp},{score},Name {i:03d},2024-01-{1 + i % 28:02d}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def people(api, prefix) -> str:
    response = put(api, prefix, _people_csv(), filename="people.csv")
    assert response.status_code == 201, response.text
    return prefix


def _python_rows() -> list[list]:
    out = []
    for i in range(N):
        grp = None if i % 7 == 0 else ["red", "green", "blue"][i % 3]
        score = None if i % 11 == 0 else (i * 37) % 50 / 2
        out.append([i, grp, score, f"Name {i:03d}", f"2024-01-{1 + i % 28:02d}"])
    return out


def _sorted(key_index: int | None, descending: bool) -> list[list]:
    data = _python_rows()
    if key_index is None:
        return data
    present = [r for r in data if r[key_index] is not None]
    missing = [r for r in data if r[key_index] is None]
    present.sort(key=lambda r: r[0])
    present.sort(key=lambda r: r[key_index], reverse=descending)
    # Ties keep table order (rowid) in both directions.
    if descending:
        groups: dict = {}
        for r in present:
            groups.setdefault(r[key_index], []).append(r)
        present = [
            r for k in sorted(groups, reverse=True) for r in sorted(groups[k], key=lambda r: r[0])
        ]
    return present + missing


def _page_through(api, name, **params) -> tuple[list[list], int]:
    collected: list[list] = []
    pages = 0
    cursor = None
    while True:
        query = dict(params, limit=37)
        if cursor:
            query["cursor"] = cursor
        page = rows(api, name, **query)
        pages += 1
        collected += page["rows"]
        cursor = page["next"]
        if cursor is None:
            return collected, pages
        assert pages < 50


@pytest.mark.parametrize("sort", [None, "score", "-score", "grp", "-grp", "-name", "day"])
def test_cursor_pages_cover_every_row_once_in_order(api, people, sort):
    column = {"score": 2, "grp": 1, "name": 3, "day": 4}
    key = None if sort is None else column[sort.lstrip("-")]
    expected = _sorted(key, bool(sort and sort.startswith("-")))
    params = {"sort": sort} if sort else {}
    collected, pages = _page_through(api, people, **params)
    assert pages == math.ceil(N / 37)
    assert collected == expected
    # Offsets give the same pages.
    page = rows(api, people, offset=74, limit=37, **params)
    assert page["rows"] == expected[74:111]
    assert page["offset"] == 74


def test_first_page_shape_and_columns(api, people):
    page = rows(api, people, limit=2)
    assert page["columns"] == [
        {"name": "id", "type": "BIGINT"},
        {"name": "grp", "type": "VARCHAR"},
        {"name": "score", "type": "DOUBLE"},
        {"name": "name", "type": "VARCHAR"},
        {"name": "day", "type": "DATE"},
    ]
    assert page["rows"] == _python_rows()[:2]
    assert (page["total"], page["total_exact"], page["limit"]) == (N, True, 2)
    assert page["next"]
    # The limit is capped, not refused.
    assert rows(api, people, limit=5000)["limit"] == 1000


def test_cursors_refuse_other_sorts_filters_and_garbage(api, people):
    cursor = rows(api, people, sort="score", limit=10)["next"]
    error = assert_error_shape(
        api.get(f"/api/datasets/{people}/rows", params={"sort": "-score", "cursor": cursor}),
        400,
        "invalid_cursor",
    )
    assert "first page" in error["message"]
    assert_error_shape(
        api.get(
            f"/api/datasets/{people}/rows",
            params={"sort": "score", "cursor": cursor, "grp__eq": "red"},
        ),
        400,
        "invalid_cursor",
    )
    assert_error_shape(
        api.get(f"/api/datasets/{people}/rows", params={"cursor": "not-a-cursor!"}),
        400,
        "invalid_cursor",
    )
    assert_error_shape(
        api.get(f"/api/datasets/{people}/rows", params={"cursor": cursor, "offset": 3}),
        400,
        "invalid_cursor",
    )


FILTER_CASES = [
    ({"grp__eq": "red"}, lambda r: r[1] == "red"),
    ({"grp__ne": "red"}, lambda r: r[1] is not None and r[1] != "red"),
    ({"score__gt": "20"}, lambda r: r[2] is not None and r[2] > 20),
    ({"score__gte": "20"}, lambda r: r[2] is not None and r[2] >= 20),
    ({"score__lt": "2.5"}, lambda r: r[2] is not None and r[2] < 2.5),
    ({"score__lte": "2.5"}, lambda r: r[2] is not None and r[2] <= 2.5),
    ({"name__contains": "me 02"}, lambda r: "me 02" in r[3]),
    ({"name__startswith": "name 1"}, lambda r: r[3].startswith("Name 1")),
    ({"id__in": "3,5,7,250"}, lambda r: r[0] in (3, 5, 7)),
    ({"grp__isnull": "1"}, lambda r: r[1] is None),
    ({"score__notnull": "1"}, lambda r: r[2] is not None),
    (
        {"day__gte": "2024-01-20", "grp__eq": "blue"},
        lambda r: r[4] >= "2024-01-20" and r[1] == "blue",
    ),
    ({"q": "NAME 00"}, lambda r: "name 00" in r[3].lower()),
    (
        {"q": "green", "score__lt": "10"},
        lambda r: r[1] == "green" and r[2] is not None and r[2] < 10,
    ),
]


@pytest.mark.parametrize(("params", "keep"), FILTER_CASES, ids=[str(c[0]) for c in FILTER_CASES])
def test_filters(api, people, params, keep):
    expected = [r for r in _python_rows() if keep(r)]
    page = rows(api, people, limit=1000, **params)
    assert page["rows"] == expected
    assert (page["total"], page["total_exact"]) == (len(expected), True)


def test_filters_in_the_same_column_combine_with_and(api, people):
    page = rows(api, people, limit=1000, **{"id__gte": "10", "id__lt": "13"})
    assert [r[0] for r in page["rows"]] == [10, 11, 12]


def test_bad_filters_are_clear_400s(api, people):
    base = f"/api/datasets/{people}/rows"
    error = assert_error_shape(api.get(base, params={"colour__eq": "red"}), 400, "unknown_column")
    assert "colour" in error["message"]
    error = assert_error_shape(api.get(base, params={"score__gt": "lots"}), 400, "invalid_filter")
    assert "DOUBLE" in error["message"]
    error = assert_error_shape(api.get(base, params={"score__near": "1"}), 400, "invalid_filter")
    assert "near" in error["message"]
    assert_error_shape(api.get(base, params={"stray": "1"}), 400, "invalid_filter")
    assert_error_shape(api.get(base, params={"sort": "nope"}), 400, "unknown_column")
    assert_error_shape(api.get(base, params={"day__eq": "2024-13-45"}), 400, "invalid_filter")


def test_values_with_sql_in_them_are_only_values(api, people):
    page = rows(api, people, **{"name__eq": "x'; DROP TABLE people; --"})
    assert page["rows"] == []
    assert rows(api, people)["total"] == N


def test_facets_count_top_values_under_the_filters(api, people):
    response = api.get(
        f"/api/datasets/{people}/facets", params={"column": ["grp", "day"], "size": 3}
    )
    assert response.status_code == 200, response.text
    facets = response.json()["facets"]
    data = _python_rows()
    counts: dict = {}
    for r in data:
        counts[r[1]] = counts.get(r[1], 0) + 1
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))[:3]
    assert [(f["value"], f["count"]) for f in facets["grp"]] == expected
    assert len(facets["day"]) == 3

    filtered = api.get(
        f"/api/datasets/{people}/facets", params={"column": "grp", "score__gte": "20"}
    ).json()["facets"]["grp"]
    expected_filtered: dict = {}
    for r in data:
        if r[2] is not None and r[2] >= 20:
            expected_filtered[r[1]] = expected_filtered.get(r[1], 0) + 1
    assert {f["value"]: f["count"] for f in filtered} == expected_filtered
    assert_error_shape(api.get(f"/api/datasets/{people}/facets"), 400, "missing_column")
    assert_error_shape(
        api.get(f"/api/datasets/{people}/facets", params={"column": "nope"}), 400, "unknown_column"
    )


def test_profile_describes_every_column_and_is_cached_until_the_data_changes(api, people):
    response = api.get(f"/api/datasets/{people}/profile")
    assert response.status_code == 200, response.text
    profile = response.json()
    by_name = {c["name"]: c for c in profile["columns"]}
    data = _python_rows()
    scores = [r[2] for r in data if r[2] is not None]
    score = by_name["score"]
    assert score["type"] == "DOUBLE"
    assert score["null_count"] == N - len(scores)
    assert score["min"] == min(scores) and score["max"] == max(scores)
    assert score["mean"] == pytest.approx(sum(scores) / len(scores))
    assert score["stddev"] > 0
    assert sum(b["count"] for b in score["histogram"]) == len(scores)
    assert score["histogram"][0]["start"] == min(scores)
    grp = by_name["grp"]
    assert grp["null_count"] == sum(1 for r in data if r[1] is None)
    assert 2 <= grp["distinct_count"] <= 4
    assert {v["value"] for v in grp["top_values"]} == {"red", "green", "blue"}
    day = by_name["day"]
    assert (day["min"], day["max"]) == ("2024-01-01", "2024-01-28")
    assert sum(b["count"] for b in day["histogram"]) == N
    assert day["histogram"][0]["start"] == "2024-01-01"
    ids = by_name["id"]
    assert (ids["min"], ids["max"], ids["null_count"]) == (0, N - 1, 0)

    again = api.get(f"/api/datasets/{people}/profile").json()
    assert again["computed_at"] == profile["computed_at"]

    put(api, people, b"id,grp,score,name,day\n999,red,1,x,2024-02-01\n", mode="append")
    changed = api.get(f"/api/datasets/{people}/profile").json()
    assert changed["version"] > profile["version"]
    assert changed["row_count"] == N + 1
    assert {c["name"]: c for c in changed["columns"]}["id"]["max"] == 999


def test_profile_of_an_empty_table_and_odd_types(api, prefix, tmp_path):
    put(api, prefix, b"a,b\n", filename="empty.csv")
    profile = api.get(f"/api/datasets/{prefix}/profile").json()
    assert [c["null_count"] for c in profile["columns"]] == [0, 0]
    body = parquet_bytes(
        tmp_path,
        "SELECT [1, 2] AS l, {'x': 1} AS s, 'NaN'::DOUBLE AS nan, 'inf'::DOUBLE AS inf, "
        "true AS flag, TIMESTAMP '2024-01-01 10:00:00' AS ts",
    )
    put(api, prefix + "_odd", body, filename="odd.parquet")
    response = api.get(f"/api/datasets/{prefix}_odd/profile")
    assert response.status_code == 200, response.text
    columns = {c["name"]: c for c in response.json()["columns"]}
    assert columns["flag"]["top_values"] == [{"value": True, "count": 1}]
    assert columns["inf"]["max"] == "Infinity"
    assert columns["nan"]["histogram"] == []
    assert columns["ts"]["histogram"][0]["start"] == "2024-01-01T10:00:00"


def test_rename_and_delete(api, people, prefix):
    new = prefix + "_renamed"
    response = api.patch(f"/api/datasets/{people}", json={"name": new.upper()})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == new
    assert_error_shape(api.get(f"/api/datasets/{people}"), 404, "dataset_not_found")
    assert rows(api, new)["total"] == N
    api.get(f"/api/datasets/{new}/profile")

    put(api, people, b"a\n1\n")
    error = assert_error_shape(
        api.patch(f"/api/datasets/{people}", json={"name": new}), 409, "dataset_exists"
    )
    assert new in error["message"]
    assert_error_shape(
        api.patch(f"/api/datasets/{people}", json={"name": "!!!"}), 400, "invalid_name"
    )
    assert_error_shape(api.patch(f"/api/datasets/{people}", json={}), 422, "validation_error")
    assert_error_shape(
        api.patch("/api/datasets/nope_not_here", json={"name": "x"}), 404, "dataset_not_found"
    )

    assert api.delete(f"/api/datasets/{new}").status_code == 204
    assert_error_shape(api.get(f"/api/datasets/{new}"), 404, "dataset_not_found")
    assert_error_shape(api.delete(f"/api/datasets/{new}"), 404, "dataset_not_found")
    assert_error_shape(api.get(f"/api/datasets/{new}/rows"), 404, "dataset_not_found")
    # The name is free again, and a new dataset there does not see the old profile.
    put(api, new, b"z\n5\n")
    profile = api.get(f"/api/datasets/{new}/profile").json()
    assert [c["name"] for c in profile["columns"]] == ["z"]
    assert rows(api, people)["rows"] == [[1]]


def test_json_values_keep_their_meaning(api, prefix, tmp_path):
    body = parquet_bytes(
        tmp_path,
        "SELECT DATE '2024-02-29' AS d, TIMESTAMP '2024-02-29 13:45:01.5' AS ts, "
        "TIMESTAMPTZ '2024-02-29 13:45:01+00' AS tstz, "
        "123456789012345678.123456789::DECIMAL(38, 9) AS dec, 9007199254740993::BIGINT AS big, "
        "12::BIGINT AS small, 'NaN'::DOUBLE AS nan, '-inf'::DOUBLE AS neg_inf, 0.1::DOUBLE AS f, "
        "[1, NULL, 3] AS list, {'a': 1, 'b': ['x', 'y']} AS struct, NULL::VARCHAR AS nothing, "
        "'<script>alert(1)</script>' AS html",
    )
    assert put(api, prefix, body, filename="types.parquet").status_code == 201
    page = rows(api, prefix)
    names = [c["name"] for c in page["columns"]]
    row = dict(zip(names, page["rows"][0], strict=True))
    assert row["d"] == "2024-02-29"
    assert row["ts"] == "2024-02-29T13:45:01.500000"
    assert row["tstz"].startswith("2024-02-29T13:45:01")
    assert row["dec"] == "123456789012345678.123456789"
    assert row["big"] == "9007199254740993"
    assert row["small"] == 12
    assert (row["nan"], row["neg_inf"], row["f"]) == ("NaN", "-Infinity", 0.1)
    assert row["list"] == [1, None, 3]
    assert row["struct"] == {"a": 1, "b": ["x", "y"]}
    assert row["nothing"] is None
    assert row["html"] == "<script>alert(1)</script>"
    # The body is strict JSON (no NaN literals).
    json.loads(
        api.get(f"/api/datasets/{prefix}/rows").text,
        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"),
    )
    # Sorting and paging by a decimal and by a timestamp keep working through cursors.
    for sort in ("dec", "-ts", "struct"):
        assert rows(api, prefix, sort=sort)["rows"] == page["rows"]


def test_export_with_filters_and_sort(api, people, tmp_path):
    base = f"/api/datasets/{people}/export"
    response = api.get(base, params={"format": "csv", "grp__eq": "red", "sort": "-id"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert f'filename="{people}.csv"' in response.headers["content-disposition"]
    lines = response.text.strip().splitlines()
    assert lines[0] == "id,grp,score,name,day"
    expected = sorted((r for r in _python_rows() if r[1] == "red"), key=lambda r: -r[0])
    assert [int(line.split(",")[0]) for line in lines[1:]] == [r[0] for r in expected]

    response = api.get(base, params={"format": "parquet", "score__isnull": "1"})
    assert response.status_code == 200
    path = tmp_path / "export.parquet"
    path.write_bytes(response.content)
    table = duckdb.execute("SELECT * FROM read_parquet($p)", {"p": str(path)}).fetchall()
    assert [r[0] for r in table] == [r[0] for r in _python_rows() if r[2] is None]

    ndjson = api.get(base, params={"format": "ndjson", "id__lt": "2"}).text.strip().splitlines()
    assert [json.loads(line)["id"] for line in ndjson] == [0, 1]
    assert_error_shape(api.get(base, params={"format": "docx"}), 400, "invalid_format")
    assert_error_shape(api.get(base, params={"nope__eq": "1"}), 400, "unknown_column")


def test_deep_keyset_pages_do_not_slow_down(api, prefix, tmp_path):
    """A smoke check of the keyset path on a bigger table (speed itself is measured in bench/)."""
    body = parquet_bytes(tmp_path, "SELECT range AS id, range % 97 AS g FROM range(200000)")
    put(api, prefix, body, filename="many.parquet")
    page = rows(api, prefix, sort="g", limit=1000)
    seen = 0
    cursor = page["next"]
    for _ in range(5):
        page = rows(api, prefix, sort="g", limit=1000, cursor=cursor)
        seen += len(page["rows"])
        cursor = page["next"]
    assert seen == 5000
    assert page["offset"] == 5000
    expected = sorted(range(200000), key=lambda i: (i % 97, i))[5000]
    assert page["rows"][0] == [expected, expected % 97]


def test_facets_stored_only_give_what_was_counted(api, people):
    """`Cache-Control: only-if-cached` counts nothing: columns not counted yet for these
    filters are listed as pending; once counted, the stored answer is the counted one."""
    url = f"/api/datasets/{people}/facets"
    params = {"column": ["grp", "day"], "size": 3, "score__gte": "7.5"}
    stored = {"Cache-Control": "only-if-cached"}
    first = api.get(url, params=params, headers=stored)
    assert first.status_code == 200, first.text
    assert first.json() == {"facets": {}, "timed_out": [], "pending": ["grp", "day"]}
    counted = api.get(url, params={**params, "column": "grp"})
    assert counted.json()["pending"] == []
    second = api.get(url, params=params, headers=stored).json()
    assert second["facets"] == {"grp": counted.json()["facets"]["grp"]}
    assert second["pending"] == ["day"]
    whole = api.get(url, params=params).json()
    assert api.get(url, params=params, headers=stored).json() == whole
    assert whole["pending"] == []
    # Filters are checked all the same.
    refused = api.get(url, params={**params, "grp__gt": "x"}, headers=stored)
    assert refused.status_code == 400
