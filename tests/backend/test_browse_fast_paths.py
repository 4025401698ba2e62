"""The fast paths of browsing give the answers of the plain queries, on a real DuckDB file.

Each optimisation of store/browse/ is checked against DuckDB's own ORDER BY … NULLS LAST,
rowid and count(*): the sort key's text computed after the LIMIT, the first page and its count
in one scan (max_by/min_by), the keyset range, cursors that count the ties already shown, totals
carried by cursors, and cached counts and facets. Ties, NULLs, NaN, -0.0 beside 0.0 and several
types are in the data on purpose.
"""

from __future__ import annotations

import threading
import time

import duckdb
import pytest

from myapp.backend.store import browse, storage
from myapp.backend.store import datasets as catalog
from myapp.backend.store.browse import facets as browse_facets
from myapp.backend.store.browse import rows as browse_rows
from myapp.backend.store.database import Database
from myapp.settings import load_settings

ROWS = 400

SORTS = [None, "v", "-v", "s", "-s", "d", "-d", "ts", "-ts", "b", "-b", "dec", "-dec"]
FILTERS = [
    [],
    [("s__ne", "b")],
    [("v__gt", "0")],
    [("b__eq", "true"), ("s__isnull", "0")],
    [("s__contains", "zz")],  # nothing matches
]
QUERIES = [None, "a"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    settings = load_settings(data_dir=tmp_path_factory.mktemp("fast") / "data")
    database = Database(settings)
    database.open()
    file_id = storage.new_file_id()
    with storage.side_instance(settings, storage.path_of(settings, file_id)) as conn:
        conn.execute(
            f"""CREATE TABLE data AS SELECT
                i AS id,
                CASE WHEN i % 9 = 0 THEN NULL WHEN i % 13 = 0 THEN 'nan'::DOUBLE
                     WHEN i % 17 = 0 THEN -0.0::DOUBLE WHEN i % 19 = 0 THEN 0.0::DOUBLE
                     ELSE ((i * 37) % 11) - 5.5 END AS v,
                CASE WHEN i % 5 = 0 THEN NULL ELSE ['a', 'b', 'ab', 'B', ''][1 + i % 4] END AS s,
                CASE WHEN i % 7 = 0 THEN NULL
                     ELSE DATE '2024-01-01' + CAST(i % 6 AS INTEGER) END AS d,
                TIMESTAMP '2024-01-01' + to_seconds((i % 17) * 60) AS ts,
                CASE WHEN i % 4 = 0 THEN NULL ELSE i % 3 = 0 END AS b,
                CAST((i % 8) / 4 AS DECIMAL(10, 3)) AS dec
            FROM range({ROWS}) t(i)"""
        )
    with database.cursor() as cur:
        storage.attach(cur, settings, file_id)
    with database.transaction() as cur:
        catalog.insert_record(
            cur,
            name="mixed",
            row_count=ROWS,
            source={"filename": None, "format": "csv", "bytes": 0},
            actor=None,
            file_id=file_id,
        )
    yield database
    database.close()


def _reference(cur, record, sort, items, q) -> tuple[list[int], int]:
    filters = browse.parse_filters(cur, record, items, q)
    order = browse.parse_sort(record, sort)
    sql = f"SELECT id FROM {record.table}{filters.where()}{order.order_by()}"
    ids = [r[0] for r in cur.execute(sql, filters.params).fetchall()]
    count = cur.execute(
        f"SELECT count(*) FROM {record.table}{filters.where()}", filters.params
    ).fetchone()[0]
    return ids, count


def _page_through(cur, record, sort, items, q, cache, limit=7) -> tuple[list[int], list]:
    ids: list[int] = []
    totals = []
    cursor = None
    for _ in range(ROWS):
        page = browse.read_rows(
            cur,
            record,
            items=items,
            limit=limit,
            cursor=cursor,
            offset=None,
            sort=sort,
            q=q,
            timeout_s=60,
            cache=cache,
        )
        ids += [row[0] for row in page["rows"]]
        totals.append((page["total"], page["total_exact"]))
        cursor = page["next"]
        if cursor is None:
            return ids, totals
    raise AssertionError("the cursor never ended")


@pytest.mark.parametrize("sort", SORTS)
def test_every_page_matches_duckdbs_order_and_count(db, sort):
    cache = browse.BrowseCache()
    with db.cursor() as cur:
        record = catalog.get_dataset(cur, "mixed")
        for items in FILTERS:
            for q in QUERIES:
                expected, count = _reference(cur, record, sort, items, q)
                # Cold (one scan for page and count), then warm (cached count), then without a
                # cache: the same rows in the same order and the same totals every time.
                for _ in range(2):
                    ids, totals = _page_through(cur, record, sort, items, q, cache)
                    assert ids == expected, (sort, items, q)
                    assert set(totals) == {(count, True)}, (sort, items, q)
                ids, totals = _page_through(cur, record, sort, items, q, None, limit=50)
                assert ids == expected and set(totals) == {(count, True)}


# Every cursor page with its range, at three page sizes (ties over many pages at 1), and cursor
# pages near the top read with OFFSET (the default) at one: both must give the same pages.
# (OFFSET at every size doubled the suite's slowest test, 5 s a case, for no other path.)
PAGING = [(1, "range only"), (3, "range only"), (7, "range only"), (3, "offset near the top")]


@pytest.fixture
def near_top(request, monkeypatch):
    if request.node.callspec.params["paging"][1] == "range only":
        monkeypatch.setattr(browse_rows, "OFFSET_PAGES_ROWS", 0)


@pytest.mark.parametrize("sort", ["v", "-v", "s", "-s", "b", "-b", "d", "-d", "ts", "dec", "-dec"])
@pytest.mark.parametrize("paging", PAGING, ids=lambda p: f"{p[0]}-{p[1]}")
def test_cursors_that_count_ties_give_the_pages_of_the_rowid_range(db, sort, paging, near_top):
    """A cursor that counts the ties already shown pages with a range and OFFSET; the same
    cursor without that count pages by rowid. Every page must be the same either way, also
    where ties run over several pages and into NULLs; and the count must really be used."""
    limit = paging[0]
    with db.cursor() as cur:
        record = catalog.get_dataset(cur, "mixed")
        for items, q in [([], None), ([("s__ne", "b")], None), ([], "a")]:
            expected, _ = _reference(cur, record, sort, items, q)
            ids: list[int] = []
            cursor, counted = None, 0
            while True:
                page = browse.read_rows(cur, record, items=items, limit=limit, cursor=cursor,
                                        offset=None, sort=sort, q=q, timeout_s=60)  # fmt: skip
                if cursor is not None:
                    state = browse.decode_cursor(cursor)
                    if "e" in state:
                        counted += 1
                        del state["e"]
                        by_rowid = browse.read_rows(
                            cur, record, items=items, limit=limit,
                            cursor=browse.encode_cursor(state), offset=None, sort=sort, q=q,
                            timeout_s=60,
                        )  # fmt: skip
                        assert by_rowid == {**page, "next": by_rowid["next"]}, (sort, ids)
                ids += [row[0] for row in page["rows"]]
                cursor = page["next"]
                if cursor is None:
                    break
            assert ids == expected, (sort, items, q)
            assert counted, "no cursor counted its ties"


def _walk(cur, record, sort, items, q, limit) -> list[dict]:
    pages, cursor = [], None
    while True:
        page = browse.read_rows(cur, record, items=items, limit=limit, cursor=cursor,
                                offset=None, sort=sort, q=q, timeout_s=60)  # fmt: skip
        pages.append(page)
        cursor = page["next"]
        if cursor is None:
            return pages


@pytest.mark.parametrize("sort", SORTS)
def test_rows_read_by_rowid_first_are_the_plain_querys(db, sort, monkeypatch):
    """Pages pick their rowids first and read those rows after (`_late_rows`), near the top
    with OFFSET: every page, cursor and total must be what sorting whole rows gives, for the
    first page with its count in one scan (a search) too."""
    with db.cursor() as cur:
        record = catalog.get_dataset(cur, "mixed")
        assert browse_rows._late_rows(record)
        for items, q in [
            ([], None),
            ([("s__ne", "b")], None),
            ([], "a"),
            ([("b__eq", "true")], "b"),
        ]:
            for limit in (3, 50):
                late = _walk(cur, record, sort, items, q, limit)
                with monkeypatch.context() as plain:
                    plain.setattr(browse_rows, "_late_rows", lambda record: False)
                    assert _walk(cur, record, sort, items, q, limit) == late, (sort, items, q)
                expected, count = _reference(cur, record, sort, items, q)
                assert [row[0] for page in late for row in page["rows"]] == expected
                assert {(page["total"], page["total_exact"]) for page in late} == {(count, True)}


def test_the_one_scan_first_page_gives_the_separate_answer(db):
    """The first page under filters, from max_by/min_by, against the page and count apart."""
    with db.cursor() as cur:
        record = catalog.get_dataset(cur, "mixed")
        for sort in [s for s in SORTS if s]:
            for limit in (1, 7, ROWS):
                page = browse.read_rows(
                    cur,
                    record,
                    items=[("s__contains", "a")],
                    limit=limit,
                    cursor=None,
                    offset=None,
                    sort=sort,
                    q=None,
                    timeout_s=60,
                )
                order = browse.parse_sort(record, sort)
                filters = browse.parse_filters(cur, record, [("s__contains", "a")], None)
                sql, hidden = browse.page_sql(
                    record, order, filters.where(), limit=limit, skip=0, keyset=True
                )
                result = cur.execute(sql, filters.params)
                types = [str(c[1]) for c in result.description[:-hidden]]
                fetched = result.fetchall()
                separate = browse_rows.encode_rows([r[:-hidden] for r in fetched[:limit]], types)
                assert page["rows"] == separate, (sort, limit)
                assert [c["type"] for c in page["columns"]] == types
                assert (page["next"] is None) == (len(fetched) <= limit)


def test_cached_facets_are_the_counted_ones(db):
    cache = browse.BrowseCache()
    with db.cursor() as cur:
        record = catalog.get_dataset(cur, "mixed")
        for items in FILTERS:
            plain = browse.read_facets(
                cur, record, columns=["s", "b", "d"], items=items, q=None, size=5
            )
            cold = browse.read_facets(
                cur, record, columns=["s", "b", "d"], items=items, q=None, size=5, cache=cache
            )
            warm = browse.read_facets(
                cur, record, columns=["s", "b", "d"], items=items, q=None, size=5, cache=cache
            )
            assert plain == cold == warm
            # Another size is another answer, not the cached one cut.
            bigger = browse.read_facets(
                cur, record, columns=["s"], items=items, q=None, size=50, cache=cache
            )
            assert bigger["facets"]["s"][:5] == plain["facets"]["s"]


def test_facets_of_several_columns_from_one_scan_are_each_columns_own(db):
    """Several columns are counted in one GROUPING SETS scan; each must be what counting that
    column alone gives (order of ties and NULLs, NaN, types), also with one of them cached."""
    columns = ["v", "s", "d", "ts", "b", "dec", "id"]
    with db.cursor() as cur:
        record = catalog.get_dataset(cur, "mixed")
        for items in FILTERS:
            for q in QUERIES:
                alone = {
                    c: browse.read_facets(cur, record, columns=[c], items=items, q=q, size=4)
                    for c in columns
                }
                together = browse.read_facets(
                    cur, record, columns=[*columns, "s"], items=items, q=q, size=4
                )
                assert together["timed_out"] == []
                assert together["facets"] == {c: alone[c]["facets"][c] for c in columns}
                # The scan itself answered (not the one-by-one fallback).
                filters = browse.parse_filters(cur, record, items, q)
                scanned = browse_facets._facets_together(cur, record, filters, columns, 4)
                assert scanned == together["facets"]
                cache = browse.BrowseCache()
                browse.read_facets(
                    cur, record, columns=["s"], items=items, q=q, size=4, cache=cache
                )
                mixed = browse.read_facets(
                    cur, record, columns=["b", "s", "v"], items=items, q=q, size=4, cache=cache
                )
                assert mixed["facets"] == {c: alone[c]["facets"][c] for c in ("b", "s", "v")}


def test_the_cache_forgets_the_oldest(db):
    cache = browse.BrowseCache(max_entries=2)
    for i in range(3):
        cache.put(("k", i), i)
    assert cache.get(("k", 0)) is None and cache.get(("k", 2)) == 2


def test_time_budgets_interrupt_their_own_block_only(db):
    """One watcher thread serves every budget: a query past its budget is interrupted soon
    after it, a query within its budget beside it is not, and once a block has ended nothing
    interrupts a later query on the same cursor."""
    slow = "SELECT count(*) FROM range(100000000000) t(i) WHERE i % 7 = 3"
    outcome: dict[str, object] = {}

    def patient() -> None:
        with db.cursor() as cur, browse.time_budget(cur, 30):
            outcome["patient"] = cur.execute("SELECT count(*) FROM range(20000000)").fetchone()

    with db.cursor() as cur:
        beside = threading.Thread(target=patient)
        beside.start()
        started = time.monotonic()
        with pytest.raises(duckdb.InterruptException), browse.time_budget(cur, 0.3):
            cur.execute(slow).fetchall()
        assert 0.3 <= time.monotonic() - started < 3
        beside.join()
        assert outcome["patient"] == (20000000,)
        for _ in range(3):
            with browse.time_budget(cur, 0.05):
                assert cur.execute("SELECT 42").fetchone() == (42,)
        time.sleep(0.3)
        assert cur.execute("SELECT count(*) FROM range(30000000)").fetchone() == (30000000,)


# More than two of DuckDB's row groups (122,880 rows each), so pages, ties and NULLs run
# across them, and cursors go past the rows read with OFFSET.
BIG_ROWS = 260_000


@pytest.fixture(scope="module")
def big(db):
    settings = db.settings
    datasets = {
        "groups": f"""SELECT i AS id,
                CASE WHEN i % 11 = 0 THEN NULL ELSE i % 7 END AS k,
                CASE WHEN i % 13 = 0 THEN NULL ELSE 't' || (i * 7919 % 997) END AS t,
                (i * 104729) % 1000003 / 7.0 AS x
            FROM range({BIG_ROWS}) r(i)""",
        # A column named rowid hides DuckDB's: such a dataset takes the plain query.
        "own_rowid": """SELECT i AS id, 300 - i AS rowid,
                CASE WHEN i % 5 = 0 THEN NULL ELSE i % 4 END AS k
            FROM range(300) r(i)""",
        "changing": "SELECT i AS id FROM range(10) r(i)",
        # Rows deleted after the load: rowids with holes, unless DuckDB closes them.
        "holes": "SELECT i AS id FROM range(1000) r(i)",
    }
    for name, select in datasets.items():
        file_id = storage.new_file_id()
        with storage.side_instance(settings, storage.path_of(settings, file_id)) as conn:
            conn.execute(f"CREATE TABLE data AS {select}")
            if name == "holes":
                conn.execute("DELETE FROM data WHERE id % 3 = 0 OR id > 990")
            rows = conn.execute("SELECT count(*) FROM data").fetchone()[0]
        with db.cursor() as cur:
            storage.attach(cur, settings, file_id)
        with db.transaction() as cur:
            catalog.insert_record(
                cur,
                name=name,
                row_count=rows,
                source={"filename": None, "format": "csv", "bytes": 0},
                actor=None,
                file_id=file_id,
            )
    return db


@pytest.mark.parametrize(
    "sort, items, q",
    [
        ("k", [], None),
        ("-k", [], None),
        ("-t", [], None),
        ("t", [("x__gt", "50000")], "t1"),
    ],
)
def test_cursor_walks_over_row_groups_give_every_row_once_in_duckdbs_order(big, sort, items, q):
    """From the first page to the last, 1,000 rows a page: the ids are DuckDB's own ORDER BY
    … NULLS LAST, rowid, each row exactly once, with the first page's total on every page;
    tie groups longer than a page (k) page by rowid, short ones (t) by counted ties, the first
    ~1,024 rows with OFFSET."""
    with big.cursor() as cur:
        record = catalog.get_dataset(cur, "groups")
        expected, count = _reference(cur, record, sort, items, q)
        pages = _walk(cur, record, sort, items, q, 1000)
        ids = [row[0] for page in pages for row in page["rows"]]
        assert len(ids) == len(set(ids)) == count
        assert ids == expected
        assert {(page["total"], page["total_exact"]) for page in pages} == {(count, True)}
        by_rowid = {browse.decode_cursor(p["next"]).get("e") is None for p in pages[:-1]}
        assert sort.endswith("k") in by_rowid


@pytest.mark.parametrize("sort", [None, "k", "-k", "rowid", "-rowid", "id"])
def test_a_column_named_rowid_is_the_datasets_own(big, sort):
    """Its pages sort whole rows (DuckDB's rowid is hidden by the column) and page by offset;
    ties fall back on the column, as the plain ORDER BY … rowid orders them."""
    with big.cursor() as cur:
        record = catalog.get_dataset(cur, "own_rowid")
        assert not browse_rows._late_rows(record)
        for items, q in [([], None), ([("k__gte", "1")], None)]:
            expected, count = _reference(cur, record, sort, items, q)
            pages = _walk(cur, record, sort, items, q, 7)
            assert [row[0] for page in pages for row in page["rows"]] == expected
            assert [c["name"] for c in pages[0]["columns"]] == ["id", "rowid", "k"]
            assert all(browse.decode_cursor(p["next"])["k"] == "offset" for p in pages[:-1])
            assert {(page["total"], page["total_exact"]) for page in pages} == {(count, True)}


def test_a_data_files_columns_are_read_once_and_are_the_catalogs(big, monkeypatch):
    """find_dataset with the Database's FileColumns answers the record it reads without them,
    reading each file's columns once; another Database starts with none."""
    reads = []
    original = catalog._columns_by_table

    def counted(cur, names):
        reads.append(names)
        return original(cur, names)

    monkeypatch.setattr(catalog, "_columns_by_table", counted)
    cache = catalog.FileColumns(big.settings.datasets_dir)
    with big.cursor() as cur:
        for name in ("groups", "own_rowid", "mixed", "groups"):
            plain = catalog.find_dataset(cur, name)
            assert catalog.get_dataset(cur, name, cache) == plain
            assert catalog.find_dataset(cur, name, big.file_columns) == plain
        assert catalog.find_dataset(cur, "no_such", cache) is None
    # Without the cache every lookup reads; with each cache once per file.
    assert len(reads) == 4 + 3 + 3
    assert catalog.FileColumns(big.settings.datasets_dir)._entries == {}


def test_the_browsing_routes_record_is_read_again_after_a_committed_write(big):
    """Database.dataset reuses a record until a transaction commits; a change made in one
    (here another version of the dataset, with a new data file) is seen at once after it."""
    with big.cursor() as cur:
        first = big.dataset(cur, "changing")
        assert big.dataset(cur, "changing") is first
        assert first == catalog.get_dataset(cur, "changing")
        with pytest.raises(catalog.NotFound):
            big.dataset(cur, "no_such")
    with big.transaction() as cur:
        catalog.update_record(
            cur,
            name="changing",
            row_count=first.row_count,
            source=None,
            actor=None,
            file_id=catalog.get_dataset(cur, "groups").file_id,
        )
    with big.cursor() as cur:
        changed = big.dataset(cur, "changing")
        assert changed == catalog.get_dataset(cur, "changing")
        assert changed.version > first.version
        assert [c["name"] for c in changed.columns] == ["id", "k", "t", "x"]


def test_facets_together_of_columns_named_like_the_scans_own(big):
    """Columns named k or n (or like the scan's output) are counted as themselves."""
    with big.cursor() as cur:
        record = catalog.get_dataset(cur, "groups")
        for items, q in [([], None), ([("x__gt", "70000")], "t1")]:
            alone = {
                c: browse.read_facets(cur, record, columns=[c], items=items, q=q, size=6)
                for c in ("k", "t", "id")
            }
            filters = browse.parse_filters(cur, record, items, q)
            scanned = browse_facets._facets_together(cur, record, filters, ["k", "t", "id"], 6)
            assert scanned == {c: alone[c]["facets"][c] for c in ("k", "t", "id")}


@pytest.mark.parametrize("name", ["groups", "mixed", "holes"])
def test_unsorted_pages_read_as_rowid_ranges_are_the_top_n_ones(big, name):
    """Without sort or filters, a file whose rowids are its row positions pages by rowid
    range: every page (by cursor and by offset) is the one the top-N of rowids gives."""
    with big.cursor() as cur:
        record = catalog.get_dataset(cur, name)
        cache = browse.BrowseCache()
        count, largest = cur.execute(f"SELECT count(*), max(rowid) FROM {record.table}").fetchone()
        assert browse_rows._dense(cur, record, cache) == (largest == count - 1)
        if name != "holes":
            assert browse_rows._dense(cur, record, cache)
        expected, _ = _reference(cur, record, None, [], None)
        for limit in (7, 1000) if count < 5000 else (1000,):
            ranged, cursor = [], None
            while True:
                page = browse.read_rows(cur, record, items=[], limit=limit, cursor=cursor,
                                        offset=None, sort=None, q=None, timeout_s=60,
                                        cache=cache)  # fmt: skip
                plain = browse.read_rows(cur, record, items=[], limit=limit, cursor=cursor,
                                         offset=None, sort=None, q=None, timeout_s=60)  # fmt: skip
                assert page == plain
                ranged += [row[0] for row in page["rows"]]
                cursor = page["next"]
                if cursor is None:
                    break
            assert ranged == expected
        for offset in (0, 5, count - 3, count, count + 10):
            args = dict(items=[], limit=50, cursor=None, offset=offset, sort=None, q=None,
                        timeout_s=60)  # fmt: skip
            assert browse.read_rows(cur, record, **args, cache=cache) == browse.read_rows(
                cur, record, **args
            )
