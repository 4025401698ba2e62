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
