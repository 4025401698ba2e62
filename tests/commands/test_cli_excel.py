"""Out to Excel from the command line and the Python client, against a real backend."""

from __future__ import annotations

import os

import httpx
import openpyxl

from myapp.client import Client
from tests.support.servers import run_cli


def test_export_to_xlsx_and_csv_with_a_bom(backend_server, tmp_path):
    url = backend_server.url
    sql = "SELECT 'Zoë' AS who, DATE '2024-05-01' AS day, 2.5 AS n"
    book = tmp_path / "out.xlsx"
    result = run_cli("export", sql, "-o", str(book), "--url", url)
    assert result.returncode == 0, result.stderr
    rows = list(openpyxl.load_workbook(book).active.values)
    assert rows[0] == ("who", "day", "n")
    assert rows[1][0] == "Zoë" and rows[1][1].date().isoformat() == "2024-05-01"
    assert rows[1][2] == 2.5

    marked = tmp_path / "out.csv"
    result = run_cli("export", sql, "-o", str(marked), "--bom", "--url", url)
    assert result.returncode == 0, result.stderr
    assert marked.read_bytes().startswith(b"\xef\xbb\xbfwho,day,n\nZo\xc3\xab,2024-05-01,")

    refused = run_cli("export", sql, "-o", str(tmp_path / "x.parquet"), "--bom", "--url", url)
    assert refused.returncode == 1 and "bom" in refused.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_a_result_too_long_for_excel_leaves_no_file(backend_server, tmp_path):
    target = tmp_path / "big.xlsx"
    result = run_cli(
        "export", "SELECT * FROM range(1048576)", "-o", str(target), "--url", backend_server.url
    )
    assert result.returncode == 1
    assert "more than an Excel sheet holds" in result.stderr and "Traceback" not in result.stderr
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_dataset_and_saved_query_exports_take_xlsx_and_bom(backend_server, tmp_path):
    url = backend_server.url
    name = "cli_xl_" + os.urandom(3).hex()
    assert httpx.put(f"{url}/api/datasets/{name}", content=b"a,b\n1,x\n2,y\n").status_code == 201
    book = tmp_path / "d.xlsx"
    result = run_cli("datasets", "export", name, "-o", str(book), "--sort", "a", "--url", url)
    assert result.returncode == 0, result.stderr
    assert list(openpyxl.load_workbook(book).active.values) == [("a", "b"), (1, "x"), (2, "y")]
    marked = tmp_path / "d.csv"
    result = run_cli("datasets", "export", name, "-o", str(marked), "--bom", "--url", url)
    assert result.returncode == 0, result.stderr
    assert marked.read_bytes().startswith(b"\xef\xbb\xbfa,b\n")

    saved = httpx.post(
        f"{url}/api/queries", json={"title": f"{name} q", "sql": f"SELECT b FROM {name}"}
    )
    slug = saved.json()["slug"]
    out = tmp_path / "q.xlsx"
    result = run_cli("queries", "export", slug, "-o", str(out), "--url", url)
    assert result.returncode == 0, result.stderr
    assert sorted(list(openpyxl.load_workbook(out).active.values)[1:]) == [("x",), ("y",)]

    with Client(url) as client:
        size = client.export(f"SELECT * FROM {name} ORDER BY a", tmp_path / "c.xlsx")
        assert size == (tmp_path / "c.xlsx").stat().st_size
        client.export(f"SELECT * FROM {name} ORDER BY a", tmp_path / "c.csv", bom=True)
        assert (tmp_path / "c.csv").read_bytes() == b"\xef\xbb\xbfa,b\n1,x\n2,y\n"
        client.saved_query(slug).export(tmp_path / "s.csv", bom=True)
        assert (tmp_path / "s.csv").read_bytes().startswith(b"\xef\xbb\xbfb\n")
