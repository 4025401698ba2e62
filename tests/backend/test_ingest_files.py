"""Files people really bring, uploaded to a real backend: legacy encodings, preambles, long
lines, stray control bytes, workbooks, missing-value markers and decimal commas.

Where the loaded table differs from what plain `read_csv` finds, the test says so and why.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import os

import duckdb
import httpx
import openpyxl
import pytest

from tests.backend.test_datasets_ingest import put, rows
from tests.backend.test_errors import assert_error_shape


@pytest.fixture
def prefix(request) -> str:
    return "f_" + request.node.name.removeprefix("test_")[:20].strip("_") + os.urandom(2).hex()


def duckdb_reads(tmp_path, body: bytes, **options) -> tuple[list[str], list[tuple]]:
    path = tmp_path / "plain.csv"
    path.write_bytes(body)
    args = "".join(f", {k} = '{v}'" for k, v in options.items())
    result = duckdb.connect().execute(f"SELECT * FROM read_csv('{path}'{args})")
    return [d[0] for d in result.description], result.fetchall()


def loaded(api: httpx.Client, name: str) -> tuple[list[str], list[list]]:
    page = rows(api, name, limit=1000)
    return [c["name"] for c in page["columns"]], page["rows"]


# -- encodings ------------------------------------------------------------------------------


def test_windows_1252_from_excel_loads_with_its_typographic_characters(api, prefix):
    # Euro sign, low and high curly quotes, en and em dash: all in cp1252's 0x80-0x9F.
    note = "\u201egut\u201c \u2013 \u201cquoted\u201d \u2014 ok"
    text = f"Artikel;Preis;Notiz\nKaffee;4 €;{note}\nTee;3 €;naïve\n"
    body = text.replace("\n", "\r\n").encode("cp1252")
    response = put(api, prefix, body, filename="export.csv")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["dataset"]["source"]["encoding"] == "cp1252"
    assert result["read"]["encoding"] == "cp1252"
    _, data = loaded(api, prefix)
    assert data == [["Kaffee", "4 €", note], ["Tee", "3 €", "naïve"]]


def test_utf8_that_turns_invalid_late_is_read_as_cp1252_not_mojibake(api, prefix):
    body = b"name\n" + b"plain\n" * 30000 + "Müller\n".encode("cp1252")
    response = put(api, prefix, body, filename="late.csv")
    assert response.status_code == 201, response.text
    assert response.json()["read"]["encoding"] == "cp1252"
    assert rows(api, prefix, offset=30000)["rows"] == [["Müller"]]


@pytest.mark.parametrize("codec", ["utf-16", "utf-32", "utf-8-sig", "utf-16-le"])
def test_unicode_with_and_without_bom(api, prefix, codec):
    body = "city,n\nMalmö,1\nZürich,2\n".encode(codec)
    response = put(api, prefix, body, filename="u.csv")
    assert response.status_code == 201, response.text
    assert loaded(api, prefix) == (["city", "n"], [["Malmö", 1], ["Zürich", 2]])


def test_utf16_with_a_line_over_a_megabyte_loads(api, prefix):
    long = "x" * 1_500_000
    body = f"id,text\n1,{long}\n2,short\n".encode("utf-16")
    response = put(api, prefix, body, filename="long.csv")
    assert response.status_code == 201, response.text
    page = rows(api, prefix)
    assert [len(r[1]) for r in page["rows"]] == [1_500_000, 5]


def test_latin1_long_line_in_gzip_loads(api, prefix):
    body = gzip.compress(("id,t\n1," + "é" * 1_200_000 + "\n").encode("latin-1"))
    response = put(api, prefix, body, filename="long.csv.gz")
    assert response.status_code == 201, response.text
    assert response.json()["read"]["encoding"] == "cp1252"


@pytest.mark.parametrize(
    "body",
    [
        b"a;b\n\xe9;1\n",  # 6 bytes of Latin-1: once refused as "could not allocate 1 GiB"
        b"x\n" + b"\xff\xfe" + b"\x00" * 3,
        b"\xff\xfea\x00\n\x00",
        b"col\n1\n2\n" + b"\x00",
    ],
)
def test_tiny_files_never_fail_for_memory(api, prefix, body):
    response = put(api, prefix, body, filename="tiny.csv")
    assert response.status_code in (201, 422), response.text
    if response.status_code == 422:
        assert "allocate" not in response.text


def test_a_named_encoding_that_does_not_fit_says_what_to_do(api, prefix):
    body = "name\nMüller\n".encode("cp1252")
    error = assert_error_shape(
        put(api, prefix, body, filename="x.csv", encoding="utf-8"), 422, "invalid_encoding"
    )
    assert "encoding=cp1252" in error["message"]
    error = assert_error_shape(
        put(api, prefix, b"a,b\n1,2\n", filename="x.csv", encoding="utf-32"),
        422,
        "invalid_encoding",
    )
    assert "encoding" in error["message"]


@pytest.mark.parametrize("codec", ["zlib", "base64", "rot13", "hex", "bz2", "no-such-codec"])
def test_non_text_codecs_are_400(api, prefix, codec):
    error = assert_error_shape(
        put(api, prefix, b"a,b\n1,2\n", filename="x.csv", encoding=codec), 400, "invalid_option"
    )
    assert error["detail"]["option"] == "encoding"


def test_a_stray_nul_or_control_byte_is_still_text(api, prefix):
    body = b"id,note\n1,ok\n2,bad\x00byte\n3,esc\x1b[0m\n"
    response = put(api, prefix, body, filename="nul.csv")
    assert response.status_code == 201, response.text
    assert rows(api, prefix)["rows"][1] == [2, "bad\x00byte"]


def test_real_binary_is_still_refused_by_what_it_is(api, prefix):
    error = assert_error_shape(
        put(api, prefix, b"%PDF-1.7\n" + bytes(range(256)) * 8, filename="r.csv"),
        422,
        "binary_file",
    )
    assert "PDF" in error["message"]


def test_transcoding_counts_against_the_expansion_cap(start_server, tmp_path):
    # 10x the upload limit for everything derived: a gzip that expands to 9x and is then
    # transcoded (another copy) must be cut while the copy is written.
    server = start_server("backend", env={"MYAPP_MAX_UPLOAD_BYTES": "200000"})
    body = gzip.compress(b"a\n" + b"x" * 1_800_000)
    assert len(body) < 200_000
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = client.put(
            "/api/datasets/big", content=body, params={"encoding": "ascii", "filename": "b.gz"}
        )
    error = assert_error_shape(response, 413, "decompressed_too_large")
    assert "re-encoded" in error["message"]
    assert sorted(p.name for p in (server.data_dir / ".staging").iterdir()) == []


def test_load_errors_do_not_reveal_server_paths(api, prefix):
    response = put(api, prefix, b'{"a": [1, 2}\n{"b": \n', filename="x.json", format="json")
    assert response.status_code == 422
    assert "/.staging" not in response.text and "/tmp/" not in response.text


def test_ndjson_nested_100k_deep_is_a_4xx(api, prefix):
    body = b'{"a": 1}\n' + b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    response = put(api, prefix, body, filename="deep.ndjson")
    assert 400 <= response.status_code < 500 or response.status_code == 201, response.text
    if response.status_code == 201:
        assert response.json()["rows_rejected"] == 1


def test_a_multipart_boundary_over_256_characters_is_400(api):
    boundary = "b" * 300
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
        f"\r\na,b\n1,2\n\r\n--{boundary}--\r\n"
    ).encode()
    response = api.post(
        "/api/datasets",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_error_shape(response, 400, "invalid_multipart")


# -- dialect and shape ---------------------------------------------------------------------


def test_a_report_with_a_preamble_loads_as_duckdb_reads_it(api, prefix, tmp_path):
    columns = [f"c{i}" for i in range(18)]
    lines = [
        "Monthly statement",
        "Account 12345;generated 2024-05-01",
        "",
        ";".join(columns),
        *(";".join(str(r * 100 + i) for i in range(18)) for r in range(40)),
    ]
    body = ("\n".join(lines) + "\n").encode()
    names, expected = duckdb_reads(tmp_path, body)
    assert names == columns
    response = put(api, prefix, body, filename="report.csv")
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["rows_loaded"], result["rows_rejected"]) == (40, 0)
    assert result["read"]["skip"] == 3 and result["read"]["delimiter"] == ";"
    got_names, got = loaded(api, prefix)
    assert got_names == columns
    assert [tuple(r) for r in got] == expected


def test_a_bad_value_past_the_sample_is_a_reject_not_a_failure(api, prefix, tmp_path):
    body = b"id,n\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(30000)) + b"30000,oops\n"
    with pytest.raises(duckdb.Error):
        duckdb_reads(tmp_path, body)  # plain DuckDB refuses the whole file
    response = put(api, prefix, body, filename="late.csv")
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["rows_loaded"], result["rows_rejected"]) == (30000, 1)
    assert result["rejects"][0]["line"] == 30002


def test_trailing_delimiters_load_as_duckdb_reads_them(api, prefix, tmp_path):
    body = b"a,b,c,\n1,2,3,\n4,5,6,\n"
    names, expected = duckdb_reads(tmp_path, body)
    response = put(api, prefix, body, filename="t.csv")
    assert response.status_code == 201, response.text
    got_names, got = loaded(api, prefix)
    assert (got_names, [tuple(r) for r in got]) == (names, expected)


def test_uneven_rows_keep_the_header_table_where_duckdb_gives_up(api, prefix, tmp_path):
    # Deliberately better than plain read_csv, which reads this file as ONE text column named
    # "a,b,c" (delimiter "|"): the header's delimiter is kept and the two uneven rows (of 12)
    # are rejects on top of it, each reported with its line.
    good = [f"{i},{i + 1},{i + 2}" for i in range(0, 30, 3)]
    body = ("\n".join(["a,b,c", *good[:3], "4,5", "6,7,8,9", *good[3:]]) + "\n").encode()
    names, plain = duckdb_reads(tmp_path, body)
    assert names == ["a,b,c"] and len(plain) == 12
    response = put(api, prefix, body, filename="ragged.csv")
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["rows_loaded"], result["rows_rejected"]) == (10, 2)
    assert sorted(r["line"] for r in result["rejects"]) == [5, 6]
    names, data = loaded(api, prefix)
    assert names == ["a", "b", "c"]
    assert data == [[i, i + 1, i + 2] for i in range(0, 30, 3)]


def test_where_most_rows_do_not_fit_the_headers_delimiter_duckdb_reading_stands(
    api, prefix, tmp_path
):
    # Numbers with thousands separators: the "delimiter" in the first line is no delimiter.
    # Splitting on it would make most rows rejects, so the file loads as plain read_csv reads
    # it, every line a row.
    body = b"100,000.00\n300,000.20\n300,000,000.40\n50\n9999999999.20\n"
    names, plain = duckdb_reads(tmp_path, body)
    response = put(api, prefix, body, filename="amounts.csv")
    assert response.status_code == 201, response.text
    assert response.json()["rows_rejected"] == 0
    assert loaded(api, prefix) == (names, [list(r) for r in plain])


def test_a_reading_that_would_drop_lines_gives_way_to_duckdbs(api, prefix, tmp_path):
    # An opening quote that never closes: read with the header's delimiter and quotes, the
    # lines after it would vanish into one cell. Plain read_csv keeps every line, so that is
    # what loads: no line of the file goes missing without a reject saying so.
    lines = ["id,note", *[f"{i},row {i}" for i in range(1, 6)], '6,"never closed']
    lines += [f"{i},row {i},extra" for i in range(7, 9)] + [f"{i},row {i}" for i in range(9, 30)]
    body = ("\n".join(lines) + "\n").encode()
    _, plain = duckdb_reads(tmp_path, body)
    response = put(api, prefix, body, filename="open-quote.csv")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["rows_loaded"] + result["rows_rejected"] == len(plain)


def test_a_report_of_several_tables_is_refused_at_once_saying_why(api, prefix, tmp_path):
    # An energy market's daily report: four tables one after another, each with its own header
    # line ("I,…") and width. Plain read_csv refuses it; read from its first line, all but one
    # row would be rejects, which DuckDB records cell by cell (9 s for a real 1.4 MB report).
    lines = ["C,NEM.WORLD,DAILY,AEMO,PUBLIC,2023/12/15,04:05:05,0000000405621952,,0000000405621952"]
    for table, width, count in ((0, 45, 2784), (1, 120, 1441), (2, 130, 1441), (3, 25, 289)):
        lines.append(f"I,DISPATCH,T{table},1," + ",".join(f"COL{i}" for i in range(width - 4)))
        lines += [
            f'D,DISPATCH,T{table},1,"2023/12/14 04:{r % 60:02d}:00",'
            + ",".join(str(i * r % 97) for i in range(width - 5))
            for r in range(count)
        ]
    body = ("\n".join(lines) + "\n").encode()
    path = tmp_path / "report.csv"
    path.write_bytes(body)
    with pytest.raises(duckdb.InvalidInputException):
        duckdb.connect().execute(f"SELECT * FROM read_csv('{path}')")
    error = assert_error_shape(
        put(api, prefix, body, filename="report.csv"), 422, "unreadable_file"
    )
    assert "not one table" in error["message"] and "skip" in error["message"]
    assert error["detail"] == {"rows_fitting": 1, "lines": len(lines)}


def test_a_tsv_that_tabs_alone_do_not_read_loads_as_duckdb_reads_it(api, prefix, tmp_path):
    # Backslash-escaped tabs and newlines (PostgreSQL's text COPY format) in a .tsv: sniffing
    # with the tab the name promises fails, so the file is sniffed as plain read_csv does
    # (before, 7 rows loaded and 20 were rejects of the 26 DuckDB reads).
    lines = ["0\t\\\\\t0", "1\t\\\t\t1", "2\t\\", "\t2", "3\ta\\\\a\t3", "4\tb\\\tb\t4"]
    lines += ["5\tc\\", "c\t5", "6\t\\\\d\t6", "7\t\\\te\t7"]
    body = ("\n".join(lines) + "\n").encode()
    names, plain = duckdb_reads(tmp_path, body)
    response = put(api, prefix, body, filename="export.tsv")
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["rows_loaded"], result["rows_rejected"]) == (len(plain), 0)
    assert loaded(api, prefix)[0] == names


def test_a_quoted_report_with_a_stray_quote_keeps_its_columns(api, prefix, tmp_path):
    # A bank's export: every cell quoted, commas inside cells, one cell with unescaped quotes.
    # Deliberately better than plain read_csv, which gives up on the dialect and reads ONE
    # text column: the header's columns load and the one broken row is a reject.
    lines = ['"id","name","amount","note"']
    lines += [f'"{i}","Smith, John","{i},50","ok"' for i in range(1, 61)]
    lines[21] = '"21","a "quoted" word","21,50","ok"'
    body = ("\n".join(lines) + "\n").encode()
    names, plain = duckdb_reads(tmp_path, body)
    assert len(names) == 1 and len(plain) == 60
    response = put(api, prefix, body, filename="bank.csv")
    assert response.status_code == 201, response.text
    result = response.json()
    assert (result["rows_loaded"], result["rows_rejected"]) == (59, 1)
    assert [r["line"] for r in result["rejects"]] == [22]
    names, data = loaded(api, prefix)
    assert names == ["id", "name", "amount", "note"]
    assert data[0] == [1, "Smith, John", 1.5, "ok"]  # decimal commas read as numbers


def test_a_header_wider_than_its_rows_pads_them_where_duckdb_gives_up(api, prefix, tmp_path):
    # Deliberately better than plain read_csv, which reads this file as ONE text column named
    # "day,item,amount,note,checked" (delimiter "|"); read with rejects, every row was a
    # reject. The rows leave out their empty last cells: they are padded, as
    # read_csv(…, null_padding = true) reads them.
    rows = [f"2024-01-{d:02d},item {d},{d}.5" for d in range(1, 31)]
    lines = ["day,item,amount,note,checked", *rows]
    body = ("\n".join(lines) + "\n").encode()
    names, _ = duckdb_reads(tmp_path, body)
    assert names == ["day,item,amount,note,checked"]
    padded = duckdb_reads(tmp_path, body, null_padding="true")
    response = put(api, prefix, body, filename="report.csv")
    assert response.status_code == 201, response.text
    assert (response.json()["rows_loaded"], response.json()["rows_rejected"]) == (30, 0)
    got_names, got = loaded(api, prefix)
    assert got_names == padded[0] == ["day", "item", "amount", "note", "checked"]
    assert got[0] == ["2024-01-01", "item 1", 1.5, None, None]
    assert len(got) == len(padded[1]) == 30


@pytest.mark.parametrize(
    "body",
    [b"hello\n\x00world\x00\n", b"a\x00b", b'3,3 \x12"200,12,\x00@,15,15","6,'],
    ids=["nul-terminated", "one-line", "fuzzed"],
)
def test_a_small_file_with_a_few_control_bytes_loads_as_duckdb_reads_it(
    api, prefix, tmp_path, body
):
    # A handful of NULs or escapes in a few bytes is a large share but no sign of binary data.
    names, plain = duckdb_reads(tmp_path, body)
    response = put(api, prefix, body, filename="small.csv")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["rows_loaded"] + result["rows_rejected"] == len(plain)
    assert len(result["dataset"]["columns"]) == len(names)


def test_a_tiny_image_is_still_refused_by_what_it_is(api, prefix):
    # A 1x1 PNG (70 bytes, 29 control bytes: fewer than make a file binary by their count):
    # its magic number and the bytes no text has give it away.
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    error = assert_error_shape(put(api, prefix, png, filename="chart.csv"), 422, "binary_file")
    assert "PNG" in error["message"]
    # Text that merely starts like one is text.
    response = put(api, prefix, b"MZN,amount\n1,2\n", filename="codes.csv")
    assert response.status_code == 201, response.text


def test_nul_padding_after_the_text_is_not_binary(api, prefix):
    # A file written into a zero-filled block: the text, then NUL bytes to the block's end.
    body = b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(40)) + b"\x00" * 600
    response = put(api, prefix, body, filename="padded.csv")
    assert response.status_code == 201, response.text
    assert response.json()["rows_loaded"] == 40
    assert loaded(api, prefix)[0] == ["id", "name"]


def test_utf16_big_endian_with_its_bom_loads(api, prefix):
    # Deliberately better than read_csv(…, encoding = 'utf-16'), which reads big-endian text
    # as little-endian (one column of CJK-looking characters).
    body = "\ufeffid,city\n1,Zürich\n2,Łódź\n".encode("utf-16-be")
    response = put(api, prefix, body, filename="be.csv")
    assert response.status_code == 201, response.text
    assert response.json()["read"]["encoding"] == "utf-16"
    assert loaded(api, prefix) == (["id", "city"], [[1, "Zürich"], [2, "Łódź"]])


# -- types that match the data --------------------------------------------------------------


def test_missing_value_markers_become_null_in_a_numeric_column(api, prefix):
    lines = ["id,quantity,region"] + [f"{i},{i % 50},NA" for i in range(1, 200)]
    lines += ["200,n/a,EU", "201,n/a,EU", "202,n/a,EU", "203,-,EU"]
    response = put(api, prefix, ("\n".join(lines) + "\n").encode(), filename="sales.csv")
    assert response.status_code == 201, response.text
    result = response.json()
    types = {c["name"]: c["type"] for c in result["dataset"]["columns"]}
    assert types["quantity"] == "BIGINT"
    # "NA" in a text column is a value (Namibia, North America), not a missing one.
    assert types["region"] == "VARCHAR"
    conversion = next(c for c in result["conversions"] if c["column"] == "quantity")
    assert conversion["empty_markers"] == {"n/a": 3, "-": 1}
    assert "4 values read as empty: n/a, -" in conversion["message"]
    page = rows(api, prefix, quantity__gt="45", limit=1000)
    assert sorted({r[1] for r in page["rows"]}) == [46, 47, 48, 49]


def test_a_german_csv_with_decimal_commas_loads_as_numbers(api, prefix):
    text = "Artikel;Preis €;Menge\nBrot;7,55;2\nWein;1.234,50;1\nKäse;12,00;3\n"
    response = put(api, prefix, text.encode("cp1252"), filename="preise.csv")
    assert response.status_code == 201, response.text
    result = response.json()
    types = {c["name"]: c["type"] for c in result["dataset"]["columns"]}
    assert types["Preis €"] == "DOUBLE"
    assert result["read"]["decimal_separator"] == ","
    page = rows(api, prefix, **{"Preis €__gt": "50"})
    assert [r[0] for r in page["rows"]] == ["Wein"]
    assert loaded(api, prefix)[1][1][1] == 1234.5


def test_a_column_that_fell_back_to_text_is_named_with_its_values(api, prefix):
    lines = ["id,amount"] + [f"{i},{i * 3}" for i in range(500)] + ["500,lots", "501,?"]
    response = put(api, prefix, ("\n".join(lines) + "\n").encode(), filename="a.csv")
    assert response.status_code == 201, response.text
    text = response.json()["text_columns"]
    assert [(t["column"], t["suggested_type"], t["count"]) for t in text] == [
        ("amount", "BIGINT", 2)
    ]
    assert sorted(text[0]["values"]) == ["?", "lots"]
    # Choosing the type loads those values as rejects.
    body = ("\n".join(lines) + "\n").encode()
    again = put(api, prefix, body, mode="replace", types="amount:BIGINT")
    assert again.status_code == 201, again.text
    assert (again.json()["rows_loaded"], again.json()["rows_rejected"]) == (500, 2)


def test_leading_zero_codes_stay_text(api, prefix):
    body = b"zip,city\n01234,A\n-,B\n02345,C\n"
    response = put(api, prefix, body, filename="z.csv")
    assert response.status_code == 201, response.text
    assert loaded(api, prefix)[1][0] == ["01234", "A"]


# -- workbooks -----------------------------------------------------------------------------


def workbook() -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Sales"
    sheet["A1"] = "Quarterly sales report"
    sheet.merge_cells("A1:E1")
    sheet.append([])
    sheet.append(["day", "amount", "paid", "customer", "when"])
    sheet.append([dt.date(2024, 1, 2), 3.5, True, "Ann", dt.datetime(2024, 1, 2, 9, 30)])
    sheet.append([dt.date(2024, 1, 3), 4, False, "Bo", dt.datetime(2024, 1, 3, 17, 0)])
    sheet.append([dt.date(2024, 1, 4), 10.25, True, "Cy", None])
    other = book.create_sheet("Costs")
    other.append(["item", "cost"])
    other.append(["rent", 1200])
    other.append(["power", 80])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_a_workbook_loads_its_first_sheet_with_types(api, prefix):
    response = put(api, prefix, workbook(), filename="report.xlsx")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["read"]["sheets"] == ["Sales", "Costs"]
    assert result["read"]["sheet"] == "Sales"
    assert result["dataset"]["source"]["format"] == "xlsx"
    assert result["dataset"]["source"]["sheet"] == "Sales"
    assert {c["name"]: c["type"] for c in result["dataset"]["columns"]} == {
        "day": "DATE",
        "amount": "DOUBLE",
        "paid": "BOOLEAN",
        "customer": "VARCHAR",
        "when": "TIMESTAMP",
    }
    page = rows(api, prefix)
    assert page["rows"][0][:4] == ["2024-01-02", 3.5, True, "Ann"]
    assert len(page["rows"]) == 3


def test_a_workbook_sheet_is_chosen_by_name_and_a_wrong_one_lists_them(api, prefix):
    response = put(api, prefix, workbook(), filename="r.xlsx", sheet="Costs")
    assert response.status_code == 201, response.text
    assert loaded(api, prefix) == (["item", "cost"], [["rent", 1200], ["power", 80]])
    error = assert_error_shape(
        put(api, prefix + "x", workbook(), filename="r.xlsx", sheet="Nope"), 400, "invalid_option"
    )
    assert error["detail"]["sheets"] == ["Sales", "Costs"]


def test_a_workbook_is_told_by_its_content_whatever_its_name(api, prefix):
    response = put(api, prefix, workbook(), filename="download.bin")
    assert response.status_code == 201, response.text
    assert response.json()["dataset"]["source"]["format"] == "xlsx"


def test_a_damaged_workbook_is_a_422(api, prefix):
    body = workbook()
    assert_error_shape(
        put(api, prefix, body[: len(body) // 2], filename="cut.xlsx"), 422, "unreadable_workbook"
    )
