"""Uploading files as datasets through a real backend: every format, every mode, bad input.

Each test uses dataset names of its own on the shared backend, and checks after every refused
upload that the other datasets, the catalog and the staging directory are exactly as before.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import time
from urllib.parse import quote

import duckdb
import httpx
import pytest

from tests.backend.test_errors import assert_error_shape


@pytest.fixture
def prefix(request) -> str:
    """Dataset names unique to the test (the shared backend outlives it)."""
    name = request.node.name.lower()
    cleaned = "".join(c if c.isalnum() else "_" for c in name.removeprefix("test_"))
    return "t_" + cleaned[:24].strip("_") + "_" + os.urandom(2).hex()


def put(api: httpx.Client, name: str, body: bytes, **params) -> httpx.Response:
    return api.put(f"/api/datasets/{name}", content=body, params=params)


def rows(api: httpx.Client, name: str, **params) -> dict:
    response = api.get(f"/api/datasets/{name}/rows", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def staging_files(server) -> list[str]:
    return sorted(os.listdir(server.data_dir / ".staging"))


@pytest.fixture
def sentinel(api, prefix, backend_server):
    """A dataset that must survive every failure of the test untouched."""
    name = prefix + "_keep"
    response = put(api, name, b"id,label\n1,one\n2,two\n", filename="keep.csv")
    assert response.status_code == 201, response.text
    before = response.json()["dataset"]

    def check() -> None:
        now = api.get(f"/api/datasets/{name}").json()
        assert now == before
        assert rows(api, name)["rows"] == [[1, "one"], [2, "two"]]
        assert staging_files(backend_server) == []
        listed = [d["name"] for d in api.get("/api/datasets").json()["datasets"]]
        assert not [n for n in listed if n.startswith("_")]

    return check


def parquet_bytes(tmp_path, sql: str) -> bytes:
    path = tmp_path / "data.parquet"
    duckdb.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
    return path.read_bytes()


SAMPLE_ROWS = [[1, "Ann", "2024-01-05"], [2, "Bo", "2024-02-10"], [3, "Cy", None]]


def sample_file(fmt: str, tmp_path) -> bytes:
    if fmt == "csv":
        return b"id,name,day\n1,Ann,2024-01-05\n2,Bo,2024-02-10\n3,Cy,\n"
    if fmt == "tsv":
        return b"id\tname\tday\n1\tAnn\t2024-01-05\n2\tBo\t2024-02-10\n3\tCy\t\n"
    if fmt == "parquet":
        return parquet_bytes(
            tmp_path,
            "SELECT * FROM (VALUES (1, 'Ann', DATE '2024-01-05'), (2, 'Bo', DATE '2024-02-10'), "
            "(3, 'Cy', NULL)) t(id, name, day)",
        )
    records = [dict(zip(("id", "name", "day"), r, strict=True)) for r in SAMPLE_ROWS]
    if fmt == "json":
        return json.dumps(records).encode()
    return "\n".join(json.dumps(r) for r in records).encode() + b"\n"


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "json", "ndjson"])
def test_every_format_loads_with_types(api, prefix, tmp_path, backend_server, fmt, compressed):
    body = sample_file(fmt, tmp_path)
    filename = f"people.{fmt}"
    if compressed:
        body = gzip.compress(body)
        filename += ".gz"
    response = put(api, prefix, body, filename=filename)
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["action"] == "created"
    assert (result["rows_loaded"], result["rows_rejected"], result["rejects"]) == (3, 0, [])
    dataset = result["dataset"]
    assert dataset["name"] == prefix
    assert dataset["row_count"] == 3
    assert {k: v for k, v in dataset["source"].items() if k not in ("encoding", "sheet")} == {
        "filename": filename,
        "format": fmt,
        "compression": "gzip" if compressed else None,
        "bytes": len(body),
    }
    assert [c["name"] for c in dataset["columns"]] == ["id", "name", "day"]
    assert dataset["columns"][0]["type"] == ("INTEGER" if fmt == "parquet" else "BIGINT")
    assert dataset["columns"][2]["type"] == "DATE" or fmt in ("json", "ndjson")
    assert rows(api, prefix)["rows"] == SAMPLE_ROWS
    assert staging_files(backend_server) == []


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson", "parquet"])
def test_format_is_sniffed_without_a_telling_name(api, prefix, tmp_path, fmt):
    response = put(api, prefix, sample_file(fmt, tmp_path), filename="upload.bin")
    assert response.status_code == 201, response.text
    assert response.json()["dataset"]["source"]["format"] == fmt
    assert rows(api, prefix)["rows"] == SAMPLE_ROWS


def test_format_override_beats_the_extension(api, prefix, tmp_path):
    response = put(api, prefix, sample_file("ndjson", tmp_path), filename="x.txt", format="ndjson")
    assert response.status_code == 201, response.text
    response = put(
        api, prefix + "_b", sample_file("csv", tmp_path), filename="x.json", format="csv"
    )
    assert response.status_code == 201, response.text
    assert rows(api, prefix + "_b")["rows"] == SAMPLE_ROWS


def test_multipart_post_derives_the_name_and_takes_options(api, prefix, sentinel):
    body = b"a;b\nx;1\ny;2\n"
    response = api.post(
        "/api/datasets",
        files={"file": (f"{prefix} Übersicht.csv", body, "text/csv")},
        data={"delimiter": ";", "types": "b:DOUBLE"},
    )
    assert response.status_code == 201, response.text
    dataset = response.json()["dataset"]
    assert dataset["name"] == f"{prefix}_übersicht"
    assert dataset["columns"] == [{"name": "a", "type": "VARCHAR"}, {"name": "b", "type": "DOUBLE"}]
    assert dataset["source"]["filename"] == f"{prefix} Übersicht.csv"

    response = api.post(
        "/api/datasets",
        files={"file": ("whatever.csv", body, "text/csv")},
        data={"name": prefix + "_named", "delimiter": ";", "mode": "create"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["dataset"]["name"] == prefix + "_named"

    assert_error_shape(api.post("/api/datasets", data={"name": "x"}), 415, "unsupported_media_type")
    response = api.post("/api/datasets", files={"other": ("a.csv", body)}, data={"name": "x"})
    assert_error_shape(response, 400, "missing_file")
    sentinel()


def test_create_refuses_an_existing_name_with_409(api, prefix, sentinel):
    assert put(api, prefix, b"a\n1\n").status_code == 201
    before = api.get(f"/api/datasets/{prefix}").json()
    error = assert_error_shape(put(api, prefix, b"a\n2\n"), 409, "dataset_exists")
    assert "replace" in error["message"]
    response = api.post("/api/datasets", files={"file": (f"{prefix}.csv", b"a\n3\n")})
    assert_error_shape(response, 409, "dataset_exists")
    assert api.get(f"/api/datasets/{prefix}").json() == before
    sentinel()


def test_replace_swaps_the_table_and_bumps_the_version(api, prefix, sentinel):
    first = put(api, prefix, b"a,b\n1,x\n2,y\n").json()["dataset"]
    response = put(api, prefix, b"c\n2024-01-01\n", mode="replace", filename="new.csv")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["action"] == "replaced"
    dataset = result["dataset"]
    assert dataset["columns"] == [{"name": "c", "type": "DATE"}]
    assert dataset["row_count"] == 1
    assert dataset["version"] > first["version"]
    assert dataset["created_at"] == first["created_at"]
    assert dataset["updated_at"] > first["updated_at"]
    assert rows(api, prefix)["rows"] == [["2024-01-01"]]
    # Replace of a name that does not exist yet simply creates it.
    response = put(api, prefix + "_new", b"a\n1\n", mode="replace")
    assert response.status_code == 201
    assert response.json()["action"] == "created"
    sentinel()


def test_append_matches_columns_by_name(api, prefix, sentinel):
    put(api, prefix, b"id,name,score\n1,a,1.5\n")
    response = put(api, prefix, b"score,id\n2.5,2\n3,3\n", mode="append")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["action"] == "appended"
    assert result["rows_loaded"] == 2
    assert result["dataset"]["row_count"] == 3
    assert rows(api, prefix, sort="id")["rows"] == [[1, "a", 1.5], [2, None, 2.5], [3, None, 3.0]]
    sentinel()


def test_append_with_incompatible_types_is_a_clear_422_and_changes_nothing(api, prefix, sentinel):
    put(api, prefix, b"id,amount\n1,10\n2,20\n")
    before = api.get(f"/api/datasets/{prefix}").json()

    error = assert_error_shape(
        put(api, prefix, b"id,amount\n3,lots\n4,many\n", mode="append"), 422, "incompatible_types"
    )
    assert "amount" in error["message"]
    assert error["detail"]["columns"][0]["column"] == "amount"
    assert error["detail"]["columns"][0]["dataset_type"] == "BIGINT"

    # A fraction into an integer column would be silently rounded: refused too.
    response = put(api, prefix, b"id,amount\n3,1.5\n", mode="append")
    assert_error_shape(response, 422, "incompatible_types")

    error = assert_error_shape(
        put(api, prefix, b"id,colour\n3,red\n", mode="append"), 422, "incompatible_columns"
    )
    assert "colour" in error["message"]

    assert api.get(f"/api/datasets/{prefix}").json() == before
    assert rows(api, prefix)["rows"] == [[1, 10], [2, 20]]
    sentinel()


def test_append_to_a_new_name_creates_it(api, prefix):
    response = put(api, prefix, b"a\n1\n", mode="append")
    assert response.status_code == 201
    assert response.json()["action"] == "created"


# -- bad input ------------------------------------------------------------------------------


def test_empty_file_is_refused(api, prefix, sentinel):
    error = assert_error_shape(put(api, prefix, b""), 422, "empty_file")
    assert "empty" in error["message"]
    assert_error_shape(put(api, prefix, b"  \n\n"), 422, "empty_file")
    assert_error_shape(put(api, prefix, gzip.compress(b"")), 422, "empty_file")
    assert api.get(f"/api/datasets/{prefix}").status_code == 404
    sentinel()


def test_a_multipart_upload_cut_short_is_refused_not_loaded_in_part(api, prefix, sentinel):
    # Megabytes of the file arrive (more than is written to disk at a time), then the body
    # ends without the form's closing boundary: what came is only part of the file.
    boundary = "cutshort"
    body = (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{prefix}.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + b"a,b\n"
        + b"1,x\n" * 600_000
    )
    response = api.post(
        "/api/datasets",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    error = assert_error_shape(response, 400, "truncated_upload")
    assert "cut short" in error["message"]
    assert api.get(f"/api/datasets/{prefix}").status_code == 404
    sentinel()


def test_header_only_gives_an_empty_table_with_its_columns(api, prefix, sentinel):
    response = put(api, prefix, b"name,age,city\n", filename="people.csv")
    assert response.status_code == 201, response.text
    dataset = response.json()["dataset"]
    assert [c["name"] for c in dataset["columns"]] == ["name", "age", "city"]
    assert dataset["row_count"] == 0
    assert rows(api, prefix)["rows"] == []
    sentinel()


def test_binary_junk_named_csv_is_refused(api, prefix, sentinel):
    junk = bytes(range(256)) * 40
    error = assert_error_shape(put(api, prefix, junk, filename="data.csv"), 422, "binary_file")
    assert "binary" in error["message"]
    assert api.get(f"/api/datasets/{prefix}").status_code == 404
    sentinel()


def test_truncated_parquet_is_refused(api, prefix, tmp_path, sentinel):
    whole = parquet_bytes(tmp_path, "SELECT range AS i FROM range(1000)")
    error = assert_error_shape(
        put(api, prefix, whole[: len(whole) // 2], filename="cut.parquet"), 422, "unreadable_file"
    )
    assert "Parquet" in error["message"]
    assert_error_shape(
        put(api, prefix, b"not parquet", filename="x.parquet"), 422, "unreadable_file"
    )
    sentinel()


def test_invalid_json_is_refused_and_a_failed_replace_keeps_the_old_data(api, prefix, sentinel):
    put(api, prefix, b'[{"a": 1}]', filename="a.json")
    before = api.get(f"/api/datasets/{prefix}").json()
    error = assert_error_shape(
        put(api, prefix, b'[{"a": 1}, {"a": 2,]', filename="a.json", mode="replace"),
        422,
        "unreadable_file",
    )
    assert "JSON" in error["message"]
    assert api.get(f"/api/datasets/{prefix}").json() == before
    assert rows(api, prefix)["rows"] == [[1]]
    sentinel()


def test_ndjson_bad_lines_are_skipped_and_reported(api, prefix, sentinel):
    body = b'{"a": 1, "b": "x"}\n{"a": 2, "b":\n{"a": 3, "b": "z"}\n\nnot json\n'
    response = put(api, prefix, body, filename="events.ndjson")
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["rows_loaded"], result["rows_rejected"]) == (2, 2)
    assert [r["line"] for r in result["rejects"]] == [2, 5]
    assert all("invalid JSON" in r["reason"] for r in result["rejects"])
    assert rows(api, prefix)["rows"] == [[1, "x"], [3, "z"]]
    error = assert_error_shape(
        put(api, prefix + "_x", b"{oops\n{nope\n", filename="x.ndjson"), 422, "nothing_loaded"
    )
    assert error["detail"]["rows_rejected"] == 2
    sentinel()


def test_ragged_rows_are_skipped_and_reported(api, prefix, sentinel):
    body = b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n"
    response = put(api, prefix, body, filename="ragged.csv")
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["rows_loaded"], result["rows_rejected"]) == (2, 2)
    assert [(r["line"], r["reason"].split(":")[0]) for r in result["rejects"]] == [
        (3, "too few columns"),
        (4, "too many columns"),
    ]
    assert rows(api, prefix)["rows"] == [[1, 2, 3], [10, 11, 12]]
    sentinel()


def test_a_file_where_nothing_parses_is_a_4xx_with_the_reason(api, prefix, sentinel):
    body = b"a,b\n" + b"x,1\n" * 5
    error = assert_error_shape(
        put(api, prefix, body, filename="x.csv", types="a:INTEGER"),
        422,
        "nothing_loaded",
    )
    assert "does not fit" in error["message"]
    assert len(error["detail"]["rejects"]) == 5
    sentinel()


def test_quoted_fields_with_newlines_and_doubled_quotes(api, prefix):
    body = b'id,text\n1,"line one\nline two"\n2,"she said ""hi"", twice"\n3,plain\n'
    response = put(api, prefix, body, filename="q.csv")
    assert response.status_code == 201, response.text
    assert rows(api, prefix)["rows"] == [
        [1, "line one\nline two"],
        [2, 'she said "hi", twice'],
        [3, "plain"],
    ]


def test_utf8_bom_is_not_part_of_the_first_column_name(api, prefix):
    body = "\ufeffname,city\nÅsa,Malmö\n".encode()
    response = put(api, prefix, body, filename="bom.csv")
    assert response.status_code == 201, response.text
    assert [c["name"] for c in response.json()["dataset"]["columns"]] == ["name", "city"]
    assert rows(api, prefix)["rows"] == [["Åsa", "Malmö"]]


@pytest.mark.parametrize("encoding", [None, "latin-1", "cp1252"])
def test_latin1_text_is_decoded(api, prefix, encoding):
    body = "name,city\nJosé,Zürich\nRenée,Besançon\n".encode("latin-1")
    params = {"encoding": encoding} if encoding else {}
    response = put(api, prefix, body, filename="l1.csv", **params)
    assert response.status_code == 201, response.text
    assert response.json()["rows_rejected"] == 0
    assert rows(api, prefix)["rows"] == [["José", "Zürich"], ["Renée", "Besançon"]]


def test_unknown_encoding_is_a_400(api, prefix, sentinel):
    error = assert_error_shape(
        put(api, prefix, b"a\n1\n", encoding="klingon"), 400, "invalid_option"
    )
    assert "encoding" in error["message"]
    sentinel()


def test_duplicate_and_blank_column_names_become_distinct(api, prefix):
    response = put(api, prefix, b"a,a,,b,\n1,2,3,4,5\n", filename="dup.csv")
    assert response.status_code == 201, response.text
    names = [c["name"] for c in response.json()["dataset"]["columns"]]
    assert len(names) == 5 and len(set(names)) == 5
    assert names[0] == "a" and names[3] == "b"
    assert all(names)
    assert rows(api, prefix)["rows"] == [[1, 2, 3, 4, 5]]


def test_a_thousand_columns(api, prefix):
    header = ",".join(f"c{i}" for i in range(1000))
    line = ",".join(str(i) for i in range(1000))
    response = put(api, prefix, f"{header}\n{line}\n{line}\n".encode(), filename="wide.csv")
    assert response.status_code == 201, response.text
    dataset = response.json()["dataset"]
    assert len(dataset["columns"]) == 1000 and dataset["row_count"] == 2
    page = rows(api, prefix, limit=1)
    assert page["rows"][0][999] == 999


@pytest.mark.parametrize("how", ["raw", "gzip", "multipart"])
def test_a_10mb_single_field(api, prefix, sentinel, how):
    big = "x" * (10 * 1024 * 1024)
    body = f'id,blob\n1,"{big}"\n2,small\n'.encode()
    if how == "multipart":
        response = api.post(
            "/api/datasets", files={"file": ("big.csv", body)}, data={"name": prefix}
        )
    else:
        data = gzip.compress(body, compresslevel=1) if how == "gzip" else body
        response = put(api, prefix, data, filename="big.csv")
    assert response.status_code == 201, response.text
    assert response.json()["rows_loaded"] == 2
    page = rows(api, prefix, sort="id")
    assert len(page["rows"][0][1]) == len(big)
    assert page["rows"][1] == [2, "small"]
    sentinel()


def test_line_meter_finds_the_longest_line_across_chunks():
    from myapp.backend.store.ingest_receive import LineMeter

    meter = LineMeter()
    for chunk in (b"ab\ncd", b"efgh", b"ij\nk", b"", b"\n"):
        meter.feed(chunk)
    assert meter.longest_line == 8  # "cdefghij"
    tail = LineMeter()
    tail.feed(b"x\n" + b"y" * 50)
    assert tail.longest_line == 50


def test_a_gzip_that_is_not_gzip(api, prefix, sentinel):
    # Named .gz but plain text: the bytes decide, and it loads.
    response = put(api, prefix, b"a,b\n1,2\n", filename="plain.csv.gz")
    assert response.status_code == 201, response.text
    assert response.json()["dataset"]["source"]["compression"] is None
    # Starts like gzip but is damaged: refused with a clear reason.
    damaged = gzip.compress(b"a,b\n" + b"1,2\n" * 1000)[:40] + b"garbage" * 10
    error = assert_error_shape(
        put(api, prefix + "_bad", damaged, filename="x.csv.gz"), 422, "invalid_gzip"
    )
    assert "gzip" in error["message"]
    sentinel()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../etc/passwd", "etc_passwd"),
        ("quo\"te's", "quo_te_s"),
        ("a; DROP TABLE x; --", "a_drop_table_x"),
        ("select", "select"),
        ("Größe 2024", "größe_2024"),
        ("2024 sales", "t_2024_sales"),
    ],
)
def test_names_are_normalised_to_safe_identifiers(api, prefix, sentinel, given, expected):
    raw = f"{given} {prefix}"
    response = api.post("/api/datasets", files={"file": ("f.csv", b"a\n1\n")}, data={"name": raw})
    assert response.status_code == 201, response.text
    name = response.json()["dataset"]["name"]
    assert name == f"{expected}_{prefix}"
    assert rows(api, name)["rows"] == [[1]]
    if "/" not in given:
        # Lookups take the same text and find the same dataset.
        assert api.get("/api/datasets/" + quote(raw, safe="")).json()["name"] == name
        assert_error_shape(put(api, raw, b"a\n2\n"), 409, "dataset_exists")
    sentinel()


@pytest.mark.parametrize("given", ["...", "'; --", '""', "  "])
def test_names_with_nothing_usable_are_a_400(api, sentinel, given):
    response = api.post("/api/datasets", files={"file": ("f.csv", b"a\n1\n")}, data={"name": given})
    error = assert_error_shape(response, 400, "invalid_name")
    assert "name" in error["message"]
    sentinel()


def test_bad_options_are_400s(api, prefix, sentinel):
    assert_error_shape(put(api, prefix, b"a\n1\n", mode="upsert"), 400, "invalid_option")
    assert_error_shape(put(api, prefix, b"a\n1\n", format="xlsb"), 400, "invalid_option")
    assert_error_shape(put(api, prefix, b"a\n1\n", delimiter="::"), 400, "invalid_option")
    assert_error_shape(put(api, prefix, b"a\n1\n", types="a:NOPE"), 400, "invalid_option")
    assert_error_shape(put(api, prefix, b"a\n1\n", types="zz:INTEGER"), 400, "invalid_option")
    assert_error_shape(put(api, prefix, b"a\n1\n", types="{bad json"), 400, "invalid_option")
    sentinel()


def test_csv_options_are_honoured(api, prefix):
    body = b"1|NA|2024-03-01\n2|b|2024-03-02\n"
    response = put(
        api,
        prefix,
        body,
        delimiter="|",
        header="false",
        nullstr="NA",
        types='{"column2": "VARCHAR"}',
    )
    assert response.status_code == 201, response.text
    assert rows(api, prefix)["rows"] == [[1, None, "2024-03-01"], [2, "b", "2024-03-02"]]


# -- limits and disconnects -----------------------------------------------------------------


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory):
    from tests.support.servers import ServerProcess

    server = ServerProcess(
        "backend",
        tmp_path_factory.mktemp("small-limit"),
        env={"MYAPP_MAX_UPLOAD_BYTES": "10000"},
    ).start()
    yield server
    server.kill()


def _raw_request(server, head: bytes, body: bytes = b"", wait_s: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait_s) as sock:
        sock.sendall(head + body)
        answer = b""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer and answer.rstrip().endswith(b"}"):
                break
        return answer


def test_413_before_the_body_is_read(small_limit_server):
    # Claims 10 GB and sends nothing: the answer must come at once, from the headers alone.
    head = (
        b"PUT /api/datasets/too_big HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Length: 10000000000\r\n\r\n"
    )
    started = time.monotonic()
    answer = _raw_request(small_limit_server, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"payload_too_large"' in answer
    assert time.monotonic() - started < 3
    assert staging_files(small_limit_server) == []


def test_413_when_a_streamed_body_passes_the_limit(small_limit_server):
    def chunks():
        for _ in range(100):
            yield b"a,b\n" + b"1,2\n" * 250

    with httpx.Client(base_url=small_limit_server.url, timeout=10) as client:
        response = client.put("/api/datasets/streamed", content=chunks())
        assert_error_shape(response, 413, "payload_too_large")
        response = client.post("/api/datasets", files={"file": ("big.csv", b"a\n" + b"1\n" * 6000)})
        assert_error_shape(response, 413, "payload_too_large")
        assert client.get("/api/datasets/streamed").status_code == 404
        # Under the limit still works.
        assert client.put("/api/datasets/small", content=b"a\n1\n").status_code == 201
    assert staging_files(small_limit_server) == []


def test_a_client_that_disconnects_mid_upload_leaves_nothing(small_limit_server):
    head = b"PUT /api/datasets/gone HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 9000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", small_limit_server.port)) as sock:
        sock.sendall(head + b"a,b\n" + b"1,2\n" * 500)
        # The upload is under way: its staging file exists while the client is connected.
        deadline = time.monotonic() + 5
        while not staging_files(small_limit_server) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(staging_files(small_limit_server)) == 1
    deadline = time.monotonic() + 5
    while staging_files(small_limit_server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert staging_files(small_limit_server) == []
    with httpx.Client(base_url=small_limit_server.url) as client:
        assert client.get("/api/datasets/gone").status_code == 404


def test_list_and_read_a_dataset(api, prefix):
    put(api, prefix, b"a,b\n1,x\n", filename="list.csv")
    listed = {d["name"]: d for d in api.get("/api/datasets").json()["datasets"]}
    assert listed[prefix] == api.get(f"/api/datasets/{prefix}").json()
    assert listed[prefix]["columns"] == [
        {"name": "a", "type": "BIGINT"},
        {"name": "b", "type": "VARCHAR"},
    ]
    assert_error_shape(api.get("/api/datasets/no_such_dataset_here"), 404, "dataset_not_found")


def test_failed_loads_leave_nothing_behind(start_server):
    server = start_server("backend")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.put("/api/datasets/kept", content=b"id,amount\n1,10\n").status_code == 201
        failures = [
            client.put(
                "/api/datasets/x1", content=b"a,b\n" + b"x,1\n" * 3, params={"types": "a:INTEGER"}
            ),
            client.put("/api/datasets/x2", content=b"a\n1\n", params={"types": "zz:INTEGER"}),
            client.put(
                "/api/datasets/kept", content=b"id,amount\n2,lots\n", params={"mode": "append"}
            ),
            client.put(
                "/api/datasets/kept", content=b"id,colour\n2,red\n", params={"mode": "append"}
            ),
            client.put("/api/datasets/kept", content=b"x\n1\n", params={"mode": "create"}),
        ]
        assert [r.status_code for r in failures] == [422, 400, 422, 422, 409]
    assert server.stop() == 0
    # The one dataset file left is kept's: the failed loads' files are gone.
    (kept_file,) = os.listdir(server.data_dir / "datasets")
    with duckdb.connect(str(server.data_dir / "app.db"), read_only=True) as conn:
        relations = conn.execute(
            "SELECT table_name, 'table' FROM duckdb_tables() WHERE schema_name = 'main' "
            "UNION ALL SELECT view_name, 'view' FROM duckdb_views() "
            "WHERE schema_name = 'main' AND NOT internal"
        ).fetchall()
        assert relations == [("kept", "view")]
        catalog = conn.execute(
            "SELECT name, row_count, file_id || '.duckdb' FROM myapp_internal.datasets"
        ).fetchall()
        assert catalog == [("kept", 1, kept_file)]
        actions = conn.execute(
            "SELECT action, target FROM myapp_internal.audit_log WHERE action LIKE 'dataset.%'"
        ).fetchall()
        assert actions == [("dataset.created", "kept")]
    with duckdb.connect(str(server.data_dir / "datasets" / kept_file), read_only=True) as conn:
        assert conn.execute("SELECT * FROM data").fetchall() == [(1, 10)]
    assert os.listdir(server.data_dir / ".staging") == []
