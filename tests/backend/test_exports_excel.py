"""Out to Excel: xlsx exports keep types and values (opened with openpyxl, a reader of its own),
a result longer than a sheet is refused before anything is written, and CSV can start with the
byte-order mark Excel on Windows needs."""

from __future__ import annotations

import datetime as dt
import io
import json
import os

import openpyxl
import pytest

from tests.backend.test_errors import assert_error_shape

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TYPED_SQL = """
SELECT * FROM (VALUES
  (1, 'Café „Löwe“', DATE '2024-05-01', TIMESTAMP '2024-05-01 13:45:10', 12.5::DOUBLE,
   12.50::DECIMAL(10,2), true, '=1+1', 9007199254740993::BIGINT, [1, 2], NULL::VARCHAR,
   TIMESTAMPTZ '2024-05-01 12:00:00+02', DATE '1850-01-01'),
  (2, 'https://example.com', DATE '2023-12-31', TIMESTAMP '2023-12-31 00:00:00', -0.25::DOUBLE,
   1234567.89::DECIMAL(10,2), false, '', 42::BIGINT, [], 'x',
   TIMESTAMPTZ '2024-01-01 00:00:00+00', DATE '2000-02-29')
) AS t(id, name, day, seen, ratio, price, paid, formula, big, list, maybe, seen_tz, old_day)
ORDER BY id
"""


@pytest.fixture
def name(request) -> str:
    return "x_" + request.node.name.removeprefix("test_")[:20] + os.urandom(2).hex()


def workbook(response) -> openpyxl.Workbook:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX_TYPE
    assert '.xlsx"' in response.headers["content-disposition"]
    return openpyxl.load_workbook(io.BytesIO(response.content))


def test_an_xlsx_export_keeps_types_and_values(api):
    response = api.post(
        "/api/query/export", json={"sql": TYPED_SQL, "format": "xlsx", "filename": "typed"}
    )
    sheet = workbook(response).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == (
        "id", "name", "day", "seen", "ratio", "price", "paid", "formula", "big", "list", "maybe",
        "seen_tz", "old_day",
    )  # fmt: skip
    first, second = rows[1], rows[2]
    assert first[0] == 1 and isinstance(first[0], int)
    assert first[1] == "Café „Löwe“"
    assert first[2] == dt.datetime(2024, 5, 1)  # an Excel date (openpyxl reads datetimes)
    assert first[3] == dt.datetime(2024, 5, 1, 13, 45, 10)
    assert first[4] == 12.5 and second[4] == -0.25
    assert first[5] == 12.5 and second[5] == 1234567.89
    assert first[6] is True and second[6] is False
    # Text stays text: never a formula, never a link.
    assert first[7] == "=1+1"
    assert second[1] == "https://example.com"
    # Beyond 2^53 Excel would round the number: it is written as its exact text.
    assert first[8] == "9007199254740993" and second[8] == 42
    assert first[9] == "[1, 2]" and second[9] == "[]"
    assert first[10] is None and second[10] == "x"
    assert first[11] == dt.datetime(2024, 5, 1, 10, 0)  # TIMESTAMPTZ in UTC
    # Excel has no dates before 1900: the date as text rather than a wrong number.
    assert first[12] == "1850-01-01" and second[12] == dt.datetime(2000, 2, 29)
    cells = {c.column_letter: c for c in sheet[2]}
    assert cells["C"].number_format == "yyyy-mm-dd"
    assert cells["D"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert cells["F"].number_format == "0.00"
    assert cells["H"].data_type == "s"
    assert sheet.freeze_panes == "A2"


def test_text_comes_back_exactly_and_the_workbook_loads_as_a_dataset(api, name):
    sql = (
        "SELECT * FROM (VALUES (1, '  padded  ', 'bell\x07 and tab\t', '_x0041_ stays', "
        "'a < b & c > d', TIME '13:45:10'), (2, '', 'Zoë', '=SUM(A1:A2)', '\u20ac \u201cq\u201d', "
        "NULL)) AS t(id, spaced, control, looks_escaped, markup, clock) ORDER BY id"
    )
    response = api.post("/api/query/export", json={"sql": sql, "format": "xlsx"})
    rows = list(workbook(response).active.iter_rows(values_only=True))
    assert (rows[1][1], rows[1][4]) == ("  padded  ", "a < b & c > d")
    assert rows[1][5] == dt.time(13, 45, 10)
    assert rows[2][1:5] == ("", "Zoë", "=SUM(A1:A2)", "\u20ac \u201cq\u201d")  # "" is not NULL
    # Control characters travel as Excel's _xHHHH_ escapes (XML cannot carry them), and text
    # that looks like one is escaped in turn; Excel and calamine (the reader uploads use) undo
    # both, openpyxl does not, so calamine checks them.
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_filelike(io.BytesIO(response.content))
    assert book.sheet_names == ["Result"]
    cells = book.get_sheet_by_index(0).to_python()
    assert cells[1][2:4] == ["bell\x07 and tab\t", "_x0041_ stays"]
    assert cells[2][3] == "=SUM(A1:A2)"
    loaded = api.put(
        f"/api/datasets/{name}", params={"filename": "result.xlsx"}, content=response.content
    )
    assert loaded.status_code == 201, loaded.text
    back = api.get(f"/api/datasets/{name}/rows", params={"sort": "id"}).json()["rows"]
    assert back[0][1] == "  padded  " and back[1][3] == "=SUM(A1:A2)"


def test_a_result_longer_than_a_sheet_is_refused_before_anything_is_written(api, backend_server):
    exports = backend_server.data_dir / ".exports"
    before = set(exports.iterdir()) if exports.exists() else set()
    response = api.post(
        "/api/query/export", json={"sql": "SELECT range AS n FROM range(1048576)", "format": "xlsx"}
    )
    error = assert_error_shape(response, 422, "too_many_rows_for_xlsx")
    assert "1,048,575 rows" in error["message"] and "CSV or Parquet" in error["message"]
    assert response.headers["content-type"].startswith("application/json")
    assert (set(exports.iterdir()) if exports.exists() else set()) == before
    # The same through GET, and a cell longer than Excel holds.
    long_cell = api.get(
        "/api/query/export", params={"sql": "SELECT repeat('a', 40000) AS t", "format": "xlsx"}
    )
    assert_error_shape(long_cell, 422, "cell_too_long_for_xlsx")
    # The workers are fine afterwards.
    fine = api.get("/api/query/export", params={"sql": "SELECT 1 AS one", "format": "xlsx"})
    assert list(workbook(fine).active.iter_rows(values_only=True)) == [("one",), (1,)]


def test_csv_with_a_byte_order_mark(api, name):
    sql = "SELECT 'Müller' AS who, 7 AS n"
    plain = api.get("/api/query/export", params={"sql": sql, "format": "csv"})
    assert plain.content == "who,n\nMüller,7\n".encode()
    marked = api.get("/api/query/export", params={"sql": sql, "format": "csv", "bom": "true"})
    assert marked.status_code == 200
    assert marked.content == b"\xef\xbb\xbf" + plain.content
    assert int(marked.headers["content-length"]) == len(marked.content)
    posted = api.post("/api/query/export", json={"sql": sql, "format": "tsv", "bom": True})
    assert posted.content.startswith(b"\xef\xbb\xbfwho\tn\n")
    refused = api.get("/api/query/export", params={"sql": sql, "format": "parquet", "bom": "1"})
    assert_error_shape(refused, 400, "invalid_option")


def test_dataset_and_saved_query_exports_offer_xlsx_and_bom(api, name):
    body = "day,amount,who\n2024-01-02,3.5,Zoë\n2024-01-01,1.25,Ann\n".encode()
    assert api.put(f"/api/datasets/{name}", content=body).status_code == 201
    dataset = api.get(f"/api/datasets/{name}/export", params={"format": "xlsx", "sort": "day"})
    assert list(workbook(dataset).active.iter_rows(values_only=True)) == [
        ("day", "amount", "who"),
        (dt.datetime(2024, 1, 1), 1.25, "Ann"),
        (dt.datetime(2024, 1, 2), 3.5, "Zoë"),
    ]
    marked = api.get(f"/api/datasets/{name}/export", params={"format": "csv", "bom": "true"})
    assert marked.content.startswith(b"\xef\xbb\xbfday,amount,who\n")
    bad = api.get(f"/api/datasets/{name}/export", params={"format": "xls"})
    assert_error_shape(bad, 400, "invalid_format")

    saved = api.post(
        "/api/queries",
        json={"title": f"{name} q", "sql": f"SELECT who, amount FROM {name} ORDER BY who"},
    )
    assert saved.status_code == 201, saved.text
    slug = saved.json()["slug"]
    exported = api.get(f"/api/queries/{slug}/export", params={"format": "xlsx"})
    assert list(workbook(exported).active.iter_rows(values_only=True))[1:] == [
        ("Ann", 1.25),
        ("Zoë", 3.5),
    ]
    csv = api.get(f"/api/queries/{slug}/export", params={"format": "csv", "bom": "true"})
    assert csv.content.startswith(b"\xef\xbb\xbfwho,amount\n")


def test_openapi_names_xlsx_and_bom(api):
    spec = api.get("/api/openapi.json").json()
    text = json.dumps(spec)
    assert '"xlsx"' in text
    params = spec["paths"]["/api/query/export"]["get"]["parameters"]
    assert "bom" in {p["name"] for p in params}
