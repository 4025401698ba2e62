"""Time budgets of browsing, on a real DuckDB file: a count that takes too long becomes an
estimate, a facet that takes too long is reported as such, a page that takes too long is a 503.

The budgets are shrunk for the test instead of growing the data, so it stays fast.
"""

from __future__ import annotations

import pytest

from myapp.backend.errors import AppError
from myapp.backend.store import browse, storage
from myapp.backend.store import datasets as catalog
from myapp.backend.store.browse import facets as browse_facets
from myapp.backend.store.browse import rows as browse_rows
from myapp.backend.store.database import Database
from myapp.settings import load_settings


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    settings = load_settings(data_dir=tmp_path_factory.mktemp("budgets") / "data")
    database = Database(settings)
    database.open()
    # A dataset made the way a load makes one: a file of its own, attached, then catalogued.
    file_id = storage.new_file_id()
    with storage.side_instance(settings, storage.path_of(settings, file_id)) as conn:
        conn.execute(
            "CREATE TABLE data AS SELECT range AS id, md5(CAST(range AS VARCHAR)) AS h "
            "FROM range(3000000)"
        )
    with database.cursor() as cur:
        storage.attach(cur, settings, file_id)
    with database.transaction() as cur:
        catalog.insert_record(
            cur,
            name="big",
            row_count=3_000_000,
            source={"filename": None, "format": "csv", "bytes": 0},
            actor=None,
            file_id=file_id,
        )
    with database.cursor() as cur:
        # Read once, as a dataset that has been browsed: the budgets below are about counting,
        # not about the first read of a fresh file.
        cur.execute("SELECT count(*) FROM big WHERE h LIKE '%ab%'").fetchall()
    yield database
    database.close()


def test_a_slow_count_becomes_an_estimate(big, monkeypatch):
    with big.cursor() as cur:
        record = catalog.get_dataset(cur, "big")
        exact = browse.read_rows(
            cur,
            record,
            items=[("h__contains", "ab")],
            limit=5,
            cursor=None,
            offset=None,
            sort=None,
            q=None,
            timeout_s=60,
        )
        assert exact["total_exact"] is True
        monkeypatch.setattr(browse_rows, "COUNT_BUDGET_S", 0.0)
        estimated = browse.read_rows(
            cur,
            record,
            items=[("h__contains", "ab")],
            limit=5,
            cursor=None,
            offset=None,
            sort=None,
            q=None,
            timeout_s=60,
        )
    assert estimated["rows"] == exact["rows"]
    assert estimated["total_exact"] is False
    assert estimated["total"] is not None
    assert abs(estimated["total"] - exact["total"]) < exact["total"] * 0.3


def test_without_filters_the_count_is_the_catalogs(big, monkeypatch):
    monkeypatch.setattr(browse_rows, "COUNT_BUDGET_S", 0.0)
    with big.cursor() as cur:
        record = catalog.get_dataset(cur, "big")
        page = browse.read_rows(
            cur,
            record,
            items=[],
            limit=1,
            cursor=None,
            offset=None,
            sort=None,
            q=None,
            timeout_s=60,
        )
    assert (page["total"], page["total_exact"]) == (3_000_000, True)


def test_slow_facets_are_reported_not_fatal(big, monkeypatch):
    monkeypatch.setattr(browse_facets, "FACET_BUDGET_S", 0.0)
    with big.cursor() as cur:
        record = catalog.get_dataset(cur, "big")
        facets = browse.read_facets(cur, record, columns=["h"], items=[], q=None, size=5)
    assert facets == {"facets": {"h": []}, "timed_out": ["h"], "pending": []}


def test_a_page_over_the_time_limit_is_a_503(big):
    with big.cursor() as cur:
        record = catalog.get_dataset(cur, "big")
        with pytest.raises(AppError) as caught:
            browse.read_rows(
                cur,
                record,
                items=[],
                limit=5,
                cursor=None,
                offset=None,
                sort="-h",
                q="zz",
                timeout_s=0.0,
            )
    assert caught.value.status_code == 503
    assert caught.value.code == "query_timeout"
