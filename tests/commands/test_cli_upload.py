"""`myapp upload FILE` against a real backend, as a user runs it."""

from __future__ import annotations

import gzip
import json
import os
import pty
import subprocess
import sys

import httpx
import pytest

from tests.support.servers import clean_env, free_port, run_cli


@pytest.fixture
def csv_file(tmp_path):
    suffix = os.urandom(3).hex()
    path = tmp_path / f"Sales Report {suffix}.csv"
    path.write_text("region,amount\nnorth,10\nsouth,20\nwest\neast,40\n")
    return path


def test_upload_prints_the_summary_and_the_rejects(backend_server, csv_file):
    result = run_cli("upload", str(csv_file), "--url", backend_server.url)
    assert result.returncode == 0, result.stderr
    name = "sales_report_" + csv_file.stem.rsplit(" ", 1)[1]
    assert result.stdout.splitlines()[0] == (
        f"Created dataset {name}: 3 rows loaded, 1 rejected (2 columns, 3 rows in all)."
    )
    assert "rejected line 4, column amount: too few columns" in result.stdout
    # Not a terminal: no progress bar in the output.
    assert "Uploading" not in result.stderr
    rows = httpx.get(f"{backend_server.url}/api/datasets/{name}/rows").json()["rows"]
    assert rows == [["north", 10], ["south", 20], ["east", 40]]


def test_upload_with_name_mode_options_and_json(backend_server, tmp_path):
    name = "cli_" + os.urandom(3).hex()
    path = tmp_path / "data.tsv.gz"
    path.write_bytes(gzip.compress(b"a\tb\n1\tx\n"))
    first = run_cli("upload", str(path), "--name", name, "--url", backend_server.url, "--json")
    assert first.returncode == 0, first.stderr
    body = json.loads(first.stdout)
    assert body["dataset"]["name"] == name
    assert body["dataset"]["source"] == {
        "filename": "data.tsv.gz",
        "format": "tsv",
        "compression": "gzip",
        "bytes": path.stat().st_size,
        "encoding": "utf-8",
        "sheet": None,
    }

    again = run_cli("upload", str(path), "--name", name, "--url", backend_server.url)
    assert again.returncode == 1
    assert again.stderr == (
        f"myapp: a dataset named {name} already exists; use --mode replace or --mode append, "
        "or choose another --name\n"
    )

    other = tmp_path / "more.txt"
    other.write_text("b;a\ny;2\n")
    appended = run_cli(
        "upload",
        str(other),
        "--name",
        name,
        "--mode",
        "append",
        "--delimiter",
        ";",
        "--format",
        "csv",
        "--url",
        backend_server.url,
    )
    assert appended.returncode == 0, appended.stderr
    assert appended.stdout.startswith(f"Appended dataset {name}: 1 rows loaded, 0 rejected")
    assert "2 rows in all" in appended.stdout


def test_upload_errors_are_one_line(backend_server, tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(range(256)) * 8)
    result = run_cli("upload", str(junk), "--url", backend_server.url)
    assert result.returncode == 1
    assert result.stderr.startswith("myapp: The file looks binary")
    assert len(result.stderr.strip().splitlines()) == 1

    down = run_cli("upload", str(junk), "--url", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 1
    assert "broke off" in down.stderr or "cannot reach" in down.stderr
    assert "Traceback" not in down.stderr

    missing = run_cli("upload", str(tmp_path / "nope.csv"), "--url", backend_server.url)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr


def test_progress_bar_on_a_terminal(backend_server, tmp_path):
    path = tmp_path / "bar.csv"
    path.write_text("n\n" + "".join(f"{i}\n" for i in range(300_000)))
    name = "cli_bar_" + os.urandom(3).hex()
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "myapp", "upload", str(path), "-n", name],
        stdin=child,
        stdout=child,
        stderr=child,
        env=clean_env({"MYAPP_URL": backend_server.url, "COLUMNS": "100"}),
    )
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    proc.wait(timeout=60)
    os.close(main)
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    assert f"Uploading {path.name}" in text
    assert "100%" in text
    assert f"Created dataset {name}: 300,000 rows loaded" in text


def test_a_file_over_the_limit_is_named_as_such(start_server, tmp_path):
    server = start_server("backend", env={"MYAPP_MAX_UPLOAD_BYTES": "100000"})
    big = tmp_path / "big.csv"
    big.write_bytes(b"n\n" + b"123456789\n" * 400_000)
    result = run_cli("upload", str(big), "--url", server.url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        "more than the backend accepts (100,000 bytes" in result.stderr
        or "larger than the limit" in result.stderr
    ), result.stderr


PREAMBLE_REPORT = (
    "Kontoauszug f\u00fcr Konto 42 \u2013 Mai 2024\n"
    "Erstellt am 01.05.2024\n"
    "\n"
    "Datum;Betrag;Empf\u00e4nger;PLZ\n"
    "2024-05-01;12,50;Caf\u00e9 \u201eZum L\u00f6wen\u201c;01234\n"
    "2024-05-02;7,00;B\u00e4ckerei \u2013 M\u00fcller;04567\n"
    "2024-05-03;n/a;\u20ac-Fonds;10115\n"
    "2024-05-04;1,00;Wien;A-1010\n"
).encode("cp1252")


def test_preview_prints_how_it_would_load_and_loads_nothing(backend_server, tmp_path):
    path = tmp_path / f"konto_{os.urandom(3).hex()}.csv"
    path.write_bytes(PREAMBLE_REPORT)
    result = run_cli("upload", str(path), "--preview", "--url", backend_server.url)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == (
        f"Preview of {path.name}: csv, encoding cp1252, delimiter semicolon, header, "
        "3 lines skipped, decimal separator ','."
    )
    assert out[1] == "4 rows would load, 0 rejected; 4 columns:"
    assert out[2:6] == [
        "  Datum      DATE",
        "  Betrag     DOUBLE",
        "  Empf\u00e4nger  VARCHAR",
        "  PLZ        VARCHAR",
    ]
    assert "Caf\u00e9 \u201eZum L\u00f6wen\u201c" in result.stdout
    assert "01234" in result.stdout and "NULL" in result.stdout
    assert out[-1].startswith("Nothing was loaded")
    name = path.stem
    assert httpx.get(f"{backend_server.url}/api/datasets/{name}").status_code == 404
    # The look leaves no staged copy behind.
    assert not list((backend_server.data_dir / ".staging").glob("upload-*"))

    typed = run_cli(
        "upload", str(path), "--preview", "--types", "PLZ:BIGINT", "--json",
        "--url", backend_server.url,
    )  # fmt: skip
    assert typed.returncode == 0, typed.stderr
    upload = json.loads(typed.stdout)["upload"]
    assert upload["columns"][3] == {"name": "PLZ", "type": "BIGINT"}
    assert [row[3] for row in upload["rows"]] == [1234, 4567, 10115]
    assert upload["rows_rejected"] == 1 and upload["rejects"][0]["line"] == 8
    shown = run_cli(
        "upload", str(path), "--preview", "--types", "PLZ:BIGINT", "--url", backend_server.url
    )
    assert "3 rows would load, 1 rejected" in shown.stdout
    assert "  PLZ        BIGINT  (chosen)" in shown.stdout
    assert "rejected line 8, column PLZ" in shown.stdout


def test_preview_of_a_workbook_names_its_sheets(backend_server, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["text"])
    sales = book.create_sheet("Sales")
    sales.append(["region", "units"])
    sales.append(["North", 12])
    path = tmp_path / "book.xlsx"
    book.save(path)
    result = run_cli(
        "upload", str(path), "--preview", "--sheet", "Sales", "--url", backend_server.url
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "Preview of book.xlsx: xlsx, header, sheet Sales of Notes, Sales."
    )
    assert "North" in result.stdout
    bad = run_cli("upload", str(path), "--preview", "--sheet", "Nope", "--url", backend_server.url)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "Nope" in bad.stderr
