"""Datasets and saved-query results as Parquet URLs, read by the real clients people use:
pyarrow through fsspec's HTTP file system, polars, and DuckDB's httpfs extension. Each reads a
column subset, and the backend's own count of bytes served shows that only part of the file
went over the wire."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import textwrap
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.accounts import ADMIN_HEADERS, ADMIN_TOKEN, Accounts, bearer, secured_env
from tests.support.duckdb_env import lts_python_or_skip

ROWS = 40_000


def _csv(rows: int, salt: str = "") -> bytes:
    # `token` is incompressible (hex of a hash), so a reader that skips it transfers far less.
    lines = ["id,grp,token"]
    for i in range(rows):
        lines.append(f"{i},{i % 7},{hashlib.sha256(f'{salt}{i}'.encode()).hexdigest()}")
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.support.servers import ServerProcess

    server = ServerProcess(
        "backend", tmp_path_factory.mktemp("data-urls"), env=secured_env()
    ).start()
    with httpx.Client(base_url=server.url, headers=ADMIN_HEADERS, timeout=120) as api:
        loaded = api.put("/api/datasets/wide?format=csv", content=_csv(ROWS))
        assert loaded.status_code == 201, loaded.text
    yield server
    server.stop()


@pytest.fixture
def api(server):
    with httpx.Client(base_url=server.url, headers=ADMIN_HEADERS, timeout=120) as client:
        yield client


def _served_bytes(api: httpx.Client) -> float:
    text = api.get("/api/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "myapp_export_bytes_total" and sample.labels == {"kind": "parquet"}:
                return sample.value
    return 0.0


def _parquet_files(server) -> list[Path]:
    return sorted((server.data_dir / "datasets").glob("*.parquet"))


def test_ranges_validators_and_errors(server, api):
    url = "/api/datasets/wide/data.parquet"
    head = api.head(url)
    assert head.status_code == 200
    assert head.headers["accept-ranges"] == "bytes"
    assert head.headers["content-type"] == "application/vnd.apache.parquet"
    size = int(head.headers["content-length"])
    etag, modified = head.headers["etag"], head.headers["last-modified"]
    assert etag.startswith('"') and modified.endswith("GMT")

    whole = api.get(url)
    assert whole.status_code == 200 and len(whole.content) == size
    table = pq.read_table(io.BytesIO(whole.content))
    assert table.num_rows == ROWS and table.column_names == ["id", "grp", "token"]

    first = api.get(url, headers={"Range": "bytes=0-3"})
    assert first.status_code == 206 and first.content == b"PAR1"
    assert first.headers["content-range"] == f"bytes 0-3/{size}"
    footer = api.get(url, headers={"Range": "bytes=-4"})
    assert footer.status_code == 206 and footer.content == b"PAR1"
    middle = api.get(url, headers={"Range": f"bytes=100-{size + 50}"})
    assert middle.status_code == 206 and middle.content == whole.content[100:]

    past = api.get(url, headers={"Range": f"bytes={size}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{size}"
    assert past.json()["error"]["code"] == "range_not_satisfiable"
    # Several ranges, or a unit that is not bytes: the whole file, as RFC 9110 allows.
    assert api.get(url, headers={"Range": "bytes=0-1,5-6"}).status_code == 200
    assert api.get(url, headers={"Range": "lines=1-2"}).status_code == 200

    assert api.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert api.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    resumed = api.get(url, headers={"Range": "bytes=0-3", "If-Range": etag})
    assert resumed.status_code == 206
    changed = api.get(url, headers={"Range": "bytes=0-3", "If-Range": '"older-version"'})
    assert changed.status_code == 200 and len(changed.content) == size

    # Made once: the second reader gets the same file, not a new one.
    assert api.head(url).headers["last-modified"] == modified
    assert len(_parquet_files(server)) == 1

    assert httpx.get(server.url + url).status_code == 401
    missing = api.get("/api/datasets/no_such_dataset/data.parquet")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "dataset_not_found"


def test_a_new_version_gets_a_new_file_and_the_old_one_goes(server, api):
    url = "/api/datasets/versioned/data.parquet"
    assert api.put("/api/datasets/versioned?format=csv", content=_csv(10)).status_code == 201
    before = api.get(url)
    old_files = set(_parquet_files(server))
    replaced = api.put(
        "/api/datasets/versioned?format=csv&mode=replace", content=_csv(20, salt="b")
    )
    assert replaced.status_code == 201, replaced.text
    after = api.get(url)
    assert after.headers["etag"] != before.headers["etag"]
    assert pq.read_table(io.BytesIO(after.content)).num_rows == 20
    # The replaced version's Parquet file was removed with it; a resumed read of the old
    # version gets the new file whole instead of mixing the two.
    assert len(_parquet_files(server)) == len(old_files)
    stale = api.get(url, headers={"Range": "bytes=0-3", "If-Range": before.headers["etag"]})
    assert stale.status_code == 200
    assert api.delete("/api/datasets/versioned").status_code == 204
    assert len(_parquet_files(server)) == len(old_files) - 1


def test_pyarrow_through_fsspec_reads_one_column_and_transfers_part_of_the_file(server, api):
    fsspec = pytest.importorskip("fsspec")
    url = f"{server.url}/api/datasets/wide/data.parquet"
    size = int(api.head(url).headers["content-length"])
    before = _served_bytes(api)
    fs = fsspec.filesystem("http", headers=bearer(ADMIN_TOKEN), block_size=64 * 1024)
    with fs.open(url, "rb") as handle:
        table = pq.read_table(handle, columns=["id"])
    moved = _served_bytes(api) - before
    assert table.num_rows == ROWS and table.column("id").to_pylist()[-1] == ROWS - 1
    assert 0 < moved < size / 2, (moved, size)


def test_polars_reads_one_column_and_transfers_part_of_the_file(start_server):
    """polars' own HTTP reader (object_store) sends no Authorization header (storage_options
    are not headers for http URLs in polars 2.1), so it reads from a workspace without
    sign-in (open mode on loopback; MYAPP_PUBLIC_READ is the same for a viewer); with a token,
    read through pyarrow/fsspec as above (polars.from_arrow)."""
    polars = pytest.importorskip("polars")
    server = start_server("backend")
    with httpx.Client(base_url=server.url, timeout=120) as api:
        assert api.put("/api/datasets/wide?format=csv", content=_csv(ROWS)).status_code == 201
        url = f"{server.url}/api/datasets/wide/data.parquet"
        size = int(api.head(url).headers["content-length"])
        before = _served_bytes(api)
        frame = polars.scan_parquet(url).select("grp").collect()
        moved = _served_bytes(api) - before
    assert frame.shape == (ROWS, 1) and frame["grp"].max() == 6
    assert 0 < moved < size / 2, (moved, size)


# -- DuckDB's httpfs: only DuckDB 1.4.4 has a pip-installable httpfs here -------------------------
def test_duckdb_httpfs_reads_with_a_bearer_secret_and_transfers_part_of_the_file(server, api):
    python = lts_python_or_skip()
    url = f"{server.url}/api/datasets/wide/data.parquet"
    size = int(api.head(url).headers["content-length"])
    script = textwrap.dedent(
        """
        import json, os, site, sys
        import duckdb
        url, token = sys.argv[1], sys.argv[2]
        extensions = os.path.join(site.getsitepackages()[0], "duckdb_ext", "extensions")
        con = duckdb.connect()
        con.execute("SET extension_directory = ?", [extensions])
        con.execute("LOAD httpfs")
        con.execute(f"CREATE SECRET myapp (TYPE http, BEARER_TOKEN '{token}')")
        rows = con.execute(
            "SELECT count(*), sum(grp), max(id) FROM read_parquet(?)", [url]
        ).fetchone()
        print(json.dumps(rows))
        """
    )
    before = _served_bytes(api)
    ran = subprocess.run(
        [str(python), "-c", script, url, ADMIN_TOKEN],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert ran.returncode == 0, ran.stderr
    count, total, largest = json.loads(ran.stdout)
    moved = _served_bytes(api) - before
    assert (count, largest) == (ROWS, ROWS - 1)
    assert total == sum(i % 7 for i in range(ROWS))
    assert 0 < moved < size / 2, (moved, size)

    refused = subprocess.run(
        [str(python), "-c", script, url, "not-a-token"],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert refused.returncode != 0 and "401" in refused.stderr


# -- saved queries ---------------------------------------------------------------------------------
def test_saved_query_result_is_cached_per_version_params_and_data(server, api):
    slug = "wide-by-group"
    created = api.post(
        "/api/queries",
        json={
            "slug": slug,
            "title": "Wide rows of one group",
            "sql": "SELECT id, token FROM wide WHERE grp = $g ORDER BY id",
            "parameters": [{"name": "g", "type": "integer", "default": 3}],
        },
    )
    assert created.status_code == 201, created.text
    url = f"/api/queries/{slug}/data.parquet"
    first = api.get(url)
    assert first.status_code == 200
    rows = pq.read_table(io.BytesIO(first.content))
    assert rows.num_rows == len([i for i in range(ROWS) if i % 7 == 3])
    again = api.get(url)
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["last-modified"] == first.headers["last-modified"]
    assert api.get(url, headers={"Range": "bytes=-4"}).content == b"PAR1"

    other = api.get(url, params={"params": json.dumps({"g": 5})})
    assert other.headers["etag"] != first.headers["etag"]
    assert pq.read_table(io.BytesIO(other.content)).column("id")[0].as_py() == 5
    # The same values spelt as a form would send them are the same result.
    spelt = api.get(url, params={"params": json.dumps({"g": "5"})})
    assert spelt.headers["etag"] == other.headers["etag"]

    edited = api.put(
        f"/api/queries/{slug}",
        json={
            "title": "Wide rows of one group",
            "sql": "SELECT id FROM wide WHERE grp = $g ORDER BY id",
            "parameters": [{"name": "g", "type": "integer", "default": 3}],
        },
    )
    assert edited.status_code == 200, edited.text
    newer = api.get(url)
    assert newer.headers["etag"] != first.headers["etag"]
    assert pq.read_table(io.BytesIO(newer.content)).column_names == ["id"]
    older = api.get(url, params={"version": 1})
    assert older.headers["etag"] == first.headers["etag"]

    bad = api.get(url, params={"params": json.dumps({"g": "not a number"})})
    assert bad.status_code == 400 and bad.json()["error"]["code"]
    assert api.get("/api/queries/no-such-query/data.parquet").status_code == 404


def test_saved_query_result_follows_a_change_of_its_data(server, api):
    assert api.put("/api/datasets/moving?format=csv", content=_csv(30)).status_code == 201
    slug = "moving-count"
    created = api.post(
        "/api/queries",
        json={"slug": slug, "title": "Moving count", "sql": "SELECT count(*) AS n FROM moving"},
    )
    assert created.status_code == 201, created.text
    url = f"/api/queries/{slug}/data.parquet"
    before = api.get(url)
    assert pq.read_table(io.BytesIO(before.content)).column("n")[0].as_py() == 30
    appended = api.put("/api/datasets/moving?format=csv&mode=append", content=_csv(5))
    assert appended.status_code == 201
    after = api.get(url)
    assert after.headers["etag"] != before.headers["etag"]
    assert pq.read_table(io.BytesIO(after.content)).column("n")[0].as_py() == 35


def test_viewers_read_data_urls_and_anonymous_callers_do_not(server):
    accounts = Accounts(server)
    try:
        viewer = accounts.user_token("viewer")
    finally:
        accounts.close()
    url = f"{server.url}/api/datasets/wide/data.parquet"
    assert httpx.head(url, headers=bearer(viewer)).status_code == 200
    assert httpx.head(url).status_code == 401
