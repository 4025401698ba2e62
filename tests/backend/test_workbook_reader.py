"""Workbooks are read in a short-lived child process with a memory cap: crafted workbooks end
as a clear 413 there, the serving process neither dies nor grows, and ordinary ones keep every
behaviour of the reading (header, types, sheets, .xls/.ods told apart by their content).

The crafted files are written by hand with zipfile: a sheet whose two cells lie a million rows
and 16,384 columns apart (python-calamine asks for 550 GB for it and aborts its process: in
the serving process that was the end of the backend), and a 0.4 MB workbook whose shared
strings expand to 400 MB.
"""

from __future__ import annotations

import io
import os
import time
import zipfile

import openpyxl
import pytest

from tests.backend.test_datasets_ingest import put, rows, staging_files
from tests.backend.test_errors import assert_error_shape
from tests.backend.test_limits import RssWatch

MB = 1_000_000

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
    'package/2006/content-types"><Default Extension="rels" ContentType="application/'
    'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType='
    '"application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName='
    '"/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
    'spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType='
    '"application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats'
    '.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
    'openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target='
    '"xl/workbook.xml"/></Relationships>'
)
_WORKBOOK = (
    '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/'
    'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships"><sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats'
    '.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
    'openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/'
    'sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/'
    'officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
    "</Relationships>"
)


def crafted_workbook(cells: str, strings_mb: int = 0) -> bytes:
    """An .xlsx with one sheet holding `cells` (sheetData XML) and shared strings of about
    `strings_mb` MB (at least one string), deflated: repeated text shrinks ~1000x."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as book:
        book.writestr("[Content_Types].xml", _CONTENT_TYPES)
        book.writestr("_rels/.rels", _RELS)
        book.writestr("xl/workbook.xml", _WORKBOOK)
        book.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        book.writestr(
            "xl/worksheets/sheet1.xml",
            '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.'
            f'openxmlformats.org/spreadsheetml/2006/main"><sheetData>{cells}</sheetData>'
            "</worksheet>",
        )
        with book.open("xl/sharedStrings.xml", "w", force_zip64=True) as strings:
            strings.write(
                b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.'
                b'openxmlformats.org/spreadsheetml/2006/main"><si><t>name</t></si>'
            )
            item = b"<si><t>" + b"x" * 10_000 + b"</t></si>"
            block = item * 100
            for _ in range(strings_mb * MB // len(block)):
                strings.write(block)
            strings.write(b"</sst>")
    return out.getvalue()


# Two cells at opposite corners of Excel's largest sheet: 1,048,576 x 16,384 cells between.
WIDE = (
    '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
    '<row r="1048576"><c r="XFD1048576" t="s"><v>0</v></c></row>'
)
ONE_CELL = '<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="2"><c r="A2"><v>7</v></c></row>'


def healthy(api) -> None:
    response = api.get("/api/health")
    assert response.status_code == 200 and response.json()["database"] == "ok"


@pytest.fixture
def name(request) -> str:
    return "wb_" + request.node.name.removeprefix("test_")[:20] + os.urandom(2).hex()


def test_a_sheet_that_claims_a_million_rows_and_columns_is_a_413_and_the_backend_lives(
    api, backend_server, name
):
    body = crafted_workbook(WIDE)
    assert len(body) < 5000
    before = staging_files(backend_server)
    started = time.monotonic()
    error = assert_error_shape(
        put(api, name, body, filename="wide.xlsx"), 413, "workbook_too_large"
    )
    assert time.monotonic() - started < 10
    assert "MYAPP_WORKBOOK_MEMORY_LIMIT" in error["message"]
    assert "CSV" in error["message"]
    # The staged preview reads through the same reader.
    staged = api.post("/api/uploads", content=body, params={"filename": "wide.xlsx"})
    assert_error_shape(staged, 413, "workbook_too_large")
    healthy(api)
    assert api.get(f"/api/datasets/{name}").status_code == 404
    assert staging_files(backend_server) == before
    # The same server goes on reading ordinary workbooks.
    ok = put(api, name, crafted_workbook(ONE_CELL), filename="fine.xlsx")
    assert ok.status_code == 201, ok.text
    assert rows(api, name)["rows"] == [[7]]


def test_shared_strings_past_the_cap_are_a_413_and_the_serving_process_stays_small(
    start_server,
):
    import httpx

    server = start_server("backend", env={"MYAPP_WORKBOOK_MEMORY_LIMIT": "150MB"})
    body = crafted_workbook(ONE_CELL, strings_mb=400)
    assert len(body) < 2 * MB
    with httpx.Client(base_url=server.url, timeout=60) as api:
        healthy(api)
        idle = RssWatch(server)
        with idle:
            time.sleep(0.3)
        with RssWatch(server) as watch:
            error = assert_error_shape(
                put(api, "strings", body, filename="strings.xlsx"), 413, "workbook_too_large"
            )
        assert error["detail"] == {"memory_limit": "150MB"}
        # Read in the serving process, these strings took 400 MB of it.
        assert watch.peak - idle.peak < 60 * MB, (idle.peak, watch.peak)
        healthy(api)
        ok = put(api, "small", crafted_workbook(ONE_CELL), filename="small.xlsx")
        assert ok.status_code == 201, ok.text


def test_a_workbook_keeps_its_header_types_and_leading_rows_through_the_reader(api, name):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Übersicht"
    sheet["B2"] = "Report 2024"
    sheet.merge_cells("B2:D2")
    sheet.append([])
    sheet.append([None, "id", "ok", "note"])
    for i in range(1, 2001):
        sheet.append([None, i, i % 2 == 0, f"n{i}" if i != 1500 else 15])
    out = io.BytesIO()
    book.save(out)
    response = put(api, name, out.getvalue(), filename="b.xlsx", sheet="übersicht")
    assert response.status_code == 201, response.text
    dataset = response.json()["dataset"]
    assert dataset["row_count"] == 2000
    assert dataset["source"]["sheet"] == "Übersicht"
    assert [(c["name"], c["type"]) for c in dataset["columns"]] == [
        ("id", "BIGINT"),
        ("ok", "BOOLEAN"),
        # A number among the text (past the first batch written) keeps the column text.
        ("note", "VARCHAR"),
    ]
    page = rows(api, name, sort="id", limit=2)["rows"]
    assert page == [[1, False, "n1"], [2, True, "n2"]]


def ods_workbook() -> bytes:
    """An OpenDocument spreadsheet as LibreOffice writes one (the parts calamine reads): a
    title row above the header, then typed cells (dates, numbers, booleans, text)."""

    def cell(kind: str, value: str, text: str | None = None) -> str:
        attribute = {"float": "value", "date": "date-value", "boolean": "boolean-value"}
        extra = f' office:{attribute[kind]}="{value}"' if kind in attribute else ""
        return (
            f'<table:table-cell office:value-type="{kind}"{extra}>'
            f"<text:p>{text if text is not None else value}</text:p></table:table-cell>"
        )

    def row(*cells: str) -> str:
        return "<table:table-row>" + "".join(cells) + "</table:table-row>"

    body = (
        row(cell("string", "Budget 2024"))
        + row(cell("string", "day"), cell("string", "amount"), cell("string", "paid"))
        + row(cell("date", "2024-01-02", "02.01.24"), cell("float", "3.5"), cell("boolean", "true"))
        + row(cell("date", "2024-01-03", "03.01.24"), cell("float", "4"), cell("boolean", "false"))
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?><office:document-content '
        'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        '<office:body><office:spreadsheet><table:table table:name="Budget">'
        f"{body}</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:'
        'names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2"><manifest:file-entry '
        'manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.'
        'spreadsheet"/><manifest:file-entry manifest:full-path="content.xml" '
        'manifest:media-type="text/xml"/></manifest:manifest>'
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as book:
        book.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
        book.writestr("META-INF/manifest.xml", manifest, zipfile.ZIP_DEFLATED)
        book.writestr("content.xml", content, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def test_an_opendocument_spreadsheet_loads_with_types_below_its_title(api, name):
    response = put(api, name, ods_workbook(), filename="budget.ods")
    assert response.status_code == 201, response.text
    result = response.json()
    assert result["dataset"]["source"]["format"] == "ods"
    assert result["read"]["sheets"] == ["Budget"]
    assert [(c["name"], c["type"]) for c in result["dataset"]["columns"]] == [
        ("day", "DATE"),
        ("amount", "DOUBLE"),
        ("paid", "BOOLEAN"),
    ]
    assert rows(api, name)["rows"] == [["2024-01-02", 3.5, True], ["2024-01-03", 4.0, False]]
    # Told by its content under another name, too.
    again = put(api, name + "b", ods_workbook(), filename="download")
    assert again.status_code == 201 and again.json()["dataset"]["source"]["format"] == "ods"
