"""GET|POST /api/query/export: every format round-trips its rows and types, with no row cap; the
file DuckDB wrote is gone once the download ends, or once the client goes away."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import duckdb
import httpx
import pytest

from myapp.backend.store.exports import FORMATS, STREAM_AFTER_BYTES
from tests.backend.test_query_support import CLIENT, SALES_ROWS, dumps, error_of, make_workspace
from tests.support.servers import ServerProcess

READERS = {
    "csv": "read_csv",
    "tsv": "read_csv",
    "parquet": "read_parquet",
    "json": "read_json",
    "ndjson": "read_json",
}
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}
# A result bigger than STREAM_AFTER_BYTES in every format (Parquet: 11.8 MB).
BIG_ROWS = 600_000
BIG_SQL = f"SELECT range AS n, md5(range::VARCHAR) AS h, range / 7 AS q FROM range({BIG_ROWS})"
# Gigabytes that DuckDB would take far longer to write than any test waits: for cancels.
ENDLESS_EXPORT = "SELECT range AS n, md5(range::VARCHAR) AS h FROM range(100000000)"
SQL = "SELECT id, city, amount, day, paid, price FROM sales WHERE id >= $from ORDER BY id"
TYPES = ["BIGINT", "VARCHAR", "DOUBLE", "DATE", "BOOLEAN", "DECIMAL(10,2)"]
# What the rows must sum up to, whatever the format.
SUMMARY = (
    "SELECT count(*), sum(id), count(DISTINCT city), sum(amount), min(day), max(day), "
    "count(*) FILTER (WHERE paid), round(sum(price), 2) FROM {source}"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    data = make_workspace(root)
    # A row cap far below the export size: exports must not be capped.
    env = {"MYAPP_DATA_DIR": str(data), "MYAPP_MAX_ROWS": "10"}
    process = ServerProcess("backend", root, env=env).start()
    yield process
    process.stop()  # SIGKILL would orphan the gunicorn worker


def export_dir(server: ServerProcess) -> Path:
    return server.data_dir / ".exports"


def download(response, path: Path) -> Path:
    with path.open("wb") as out:
        for chunk in response.iter_bytes():
            out.write(chunk)
    return path


def expected_summary(server: ServerProcess) -> list:
    response = CLIENT.post(
        server.url + "/api/query",
        json={"sql": SUMMARY.format(source="(" + SQL + ")"), "params": {"from": 5}},
    )
    assert response.status_code == 200, response.text
    row = response.json()["rows"][0]
    row[3], row[7] = float(row[3]), float(row[7])  # JSON encodes DECIMAL sums as text
    return row


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("fmt", list(READERS))
def test_every_format_round_trips_rows_and_types(server, tmp_path, fmt, method):
    params = {"from": 5}
    if method == "GET":
        request = CLIENT.build_request(
            "GET",
            server.url + "/api/query/export",
            params={"sql": SQL, "format": fmt, "params": dumps(params)},
        )
    else:
        request = CLIENT.build_request(
            "POST",
            server.url + "/api/query/export",
            json={"sql": SQL, "format": fmt, "params": params, "filename": "sales report"},
        )
    response = CLIENT.send(request, stream=True)
    try:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == MEDIA_TYPES[fmt]
        disposition = response.headers["content-disposition"]
        assert disposition.startswith("attachment; filename=")
        name = "sales_report" if method == "POST" else "query-"
        assert f'filename="{name}' in disposition and f'.{fmt}"' in disposition
        file = download(response, tmp_path / f"export.{fmt}")
    finally:
        response.close()
    assert int(response.headers["content-length"]) == file.stat().st_size

    with duckdb.connect() as conn:
        source = f"{READERS[fmt]}('{file}')"
        got = list(conn.execute(SUMMARY.format(source=source)).fetchone())
        types = [str(col[1]) for col in conn.execute(f"SELECT * FROM {source}").description]
    got[4], got[5] = got[4].isoformat(), got[5].isoformat()
    got[7] = float(got[7])
    assert got == expected_summary(server)
    assert got[0] == SALES_ROWS - 5  # the whole result, far beyond MYAPP_MAX_ROWS
    # Text formats carry no types; DuckDB reads back DECIMAL as DOUBLE, everything else exactly.
    expected_types = TYPES if fmt == "parquet" else [*TYPES[:5], "DOUBLE"]
    assert types == expected_types
    assert list(export_dir(server).iterdir()) == []


def test_file_names_are_safe_and_keep_non_ascii(server):
    response = CLIENT.post(
        server.url + "/api/query/export",
        json={"sql": "SELECT 1 AS a", "format": "csv", "filename": "Ventes été/../2024"},
    )
    assert response.status_code == 200
    disposition = response.headers["content-disposition"]
    assert 'filename="Ventes_ete_.._2024.csv"' in disposition or 'filename="Ventes_' in disposition
    assert "filename*=UTF-8''Ventes_%C3%A9t%C3%A9_.._2024.csv" in disposition
    assert "/" not in disposition.split("filename*=")[1]
    assert response.text.splitlines() == ["a", "1"]


def test_export_errors_are_json_not_files(server):
    error = error_of(
        CLIENT.get(server.url + "/api/query/export", params={"sql": "DROP TABLE sales"}), 400
    )
    assert error["code"] == "statement_not_allowed"
    error = error_of(
        CLIENT.get(
            server.url + "/api/query/export",
            params={"sql": "SELECT * FROM read_csv('/etc/passwd')"},
        ),
        400,
    )
    assert error["code"] == "function_not_allowed"
    error = error_of(
        CLIENT.get(server.url + "/api/query/export", params={"sql": "SELECT 1", "format": "xls"}),
        422,
    )
    assert error["code"] == "validation_error"
    error = error_of(
        CLIENT.get(server.url + "/api/query/export", params={"sql": "SELECT $a", "params": "[1]"}),
        400,
    )
    assert error["code"] == "bad_params"
    error = error_of(
        CLIENT.post(server.url + "/api/query/export", json={"sql": "SELECT nosuch FROM sales"}),
        400,
    )
    assert error["code"] == "sql_error" and error["detail"]["line"] == 1
    assert list(export_dir(server).iterdir()) == []


def _worker_pids(master: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                pids.append(int(entry.name))
    return pids


def _open_export_files(server: ServerProcess) -> list[str]:
    assert server.proc is not None
    found = []
    for pid in [server.proc.pid, *_worker_pids(server.proc.pid)]:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else []:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if ".exports" in target:
                found.append(target)
    return found


def _run_state(server: ServerProcess, run_id: str, *, settled: bool = True) -> str:
    """The state of an export's run; with `settled`, once it is no longer running."""
    deadline = time.monotonic() + 30
    while True:
        state = CLIENT.get(server.url + f"/api/query/{run_id}").json()["state"]
        if not settled or state != "running" or time.monotonic() > deadline:
            return state
        time.sleep(0.05)


def test_nothing_is_left_when_the_client_goes_away_mid_download(server):
    run_id = str(uuid.uuid4())
    request = CLIENT.build_request(
        "GET",
        server.url + "/api/query/export",
        params={"sql": ENDLESS_EXPORT, "format": "csv", "id": run_id},
    )
    response = CLIENT.send(request, stream=True)
    assert response.status_code == 200
    body = response.iter_raw(64 * 1024)  # kept: dropping the iterator would close the stream
    assert next(body).startswith(b"n,h\n")
    # Only the unlinked spool is left: already invisible, held open by the download.
    assert list(export_dir(server).iterdir()) == []
    assert any("(deleted)" in target for target in _open_export_files(server))
    assert _run_state(server, run_id, settled=False) == "running"
    response.close()  # the client walks away with most of the file unread
    del body

    # DuckDB stops writing (the COPY of 5 GB is cancelled, not finished) and the space is back.
    assert _run_state(server, run_id) == "cancelled"
    deadline = time.monotonic() + 10
    while _open_export_files(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _open_export_files(server) == []
    assert CLIENT.get(server.url + "/api/health").json()["status"] == "ok"


@pytest.mark.parametrize("fmt", list(READERS))
def test_a_big_export_downloads_while_duckdb_writes_it(server, tmp_path, fmt):
    """Past STREAM_AFTER_BYTES the download starts before the COPY ends (no length known
    yet), and what arrives is exactly what DuckDB writes, in order."""
    with CLIENT.stream(
        "GET", server.url + "/api/query/export", params={"sql": BIG_SQL, "format": fmt}
    ) as response:
        assert response.status_code == 200, response.read()
        assert "content-length" not in response.headers
        assert response.headers["transfer-encoding"] == "chunked"
        file = download(response, tmp_path / f"export.{fmt}")
    assert file.stat().st_size > STREAM_AFTER_BYTES
    expected = tmp_path / f"expected.{fmt}"
    with duckdb.connect() as conn:
        conn.execute(f"COPY ({BIG_SQL}) TO '{expected}' ({FORMATS[fmt].copy_options})")
        if fmt == "parquet":  # row groups may be cut elsewhere; the rows are the same
            left, right = f"read_parquet('{file}')", f"read_parquet('{expected}')"
            assert conn.execute(f"SELECT count(*) FROM {left}").fetchone() == (BIG_ROWS,)
            for a, b in ((left, right), (right, left)):
                diff = f"SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})"
                assert conn.execute(diff).fetchone() == (0,)
        else:
            assert file.read_bytes() == expected.read_bytes()
    assert list(export_dir(server).iterdir()) == []


def _export_run(server: ServerProcess, sql: str, run_id: str):
    """An NDJSON export of `sql` as the run `run_id`, streamed (a context manager)."""
    params = {"sql": sql, "format": "ndjson", "id": run_id}
    return CLIENT.stream("GET", server.url + "/api/query/export", params=params)


def test_an_error_after_the_download_began_cuts_it_short(server):
    """A row that fails near the end, after the download began (a 200 without a length): the
    client must not take what it got for the whole file, so the download ends without its last
    chunk. (How much arrived before depends on timing: the cut comes as soon as it is known.)"""
    run_id = str(uuid.uuid4())
    sql = BIG_SQL.replace(
        "range / 7 AS q",
        f"CASE WHEN range = {BIG_ROWS - 1000} THEN error('row is bad') ELSE range / 7 END AS q",
    )
    with _export_run(server, sql, run_id) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            for _ in response.iter_raw():
                pass
    assert _run_state(server, run_id) == "failed"
    assert list(export_dir(server).iterdir()) == []
    # The same error before the download begins is the usual JSON error.
    early = sql.replace(f"range = {BIG_ROWS - 1000}", "range = 10")
    error = error_of(
        CLIENT.get(server.url + "/api/query/export", params={"sql": early, "format": "ndjson"}),
        400,
    )
    assert error["code"] == "sql_error" and "row is bad" in error["message"]
    assert CLIENT.get(server.url + "/api/health").json()["status"] == "ok"


def test_cancel_stops_an_export_that_is_downloading(server):
    run_id = str(uuid.uuid4())
    with _export_run(server, ENDLESS_EXPORT, run_id) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        assert next(chunks).startswith(b'{"n":0,')
        cancel = CLIENT.delete(server.url + f"/api/query/{run_id}")
        assert cancel.status_code == 204, cancel.text
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass
    assert _run_state(server, run_id) == "cancelled"
    assert list(export_dir(server).iterdir()) == []
