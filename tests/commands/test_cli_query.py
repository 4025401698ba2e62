"""`myapp query` and `myapp export` against a real backend, as a user runs them.

Most cases run the command in-process (CliRunner) to keep the file fast; the ones about what
the process does when a download breaks or is interrupted run `myapp` as its own process.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from click.testing import CliRunner, Result

from myapp.cli import main
from tests.support.accounts import ADMIN_TOKEN, Accounts, secured_env
from tests.support.servers import clean_env, free_port, run_cli

BIG_SQL = "SELECT range AS n, md5(range::VARCHAR) AS h FROM range(600000)"
LATE_FAILURE_SQL = (
    "SELECT range AS n, md5(range::VARCHAR) AS h, "
    "CASE WHEN range = 599000 THEN error('row is bad') ELSE range END AS q FROM range(600000)"
)


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env or {}, input=stdin, catch_exceptions=False)


@pytest.fixture(scope="module")
def sales(backend_server) -> str:
    """A small dataset of this module's own on the shared backend (NULL and non-ASCII text)."""
    name = "cli_sales_" + os.urandom(3).hex()
    response = httpx.put(
        f"{backend_server.url}/api/datasets/{name}",
        params={"format": "csv"},
        content=b"city,amount,note\nOslo,10,north\nBergen,20,\nTroms\xc3\xb8,30,far north\n",
        timeout=30.0,
    )
    assert response.status_code == 201, response.text
    return name


@pytest.fixture
def url(backend_server) -> list[str]:
    return ["--url", backend_server.url]


# -- myapp query ---------------------------------------------------------------------------------
def test_query_prints_an_aligned_table_as_the_real_command(backend_server, sales):
    result = run_cli(
        "query",
        f"SELECT city, amount, note FROM {sales} WHERE amount >= $min::INTEGER ORDER BY amount",
        "--param",
        "min=20",
        "--url",
        backend_server.url,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "city    amount  note\n"
        "------  ------  ---------\n"
        "Bergen      20  NULL\n"
        "Tromsø      30  far north\n"
    )
    assert re.fullmatch(r"2 rows in \d+\.\d ms\n", result.stderr), result.stderr


def test_query_csv_and_json_formats_with_typed_params(url, sales):
    sql = f"SELECT city, amount, note FROM {sales} WHERE amount < $max ORDER BY city"
    # --param wins over --params-json, and is sent as text, so DuckDB casts it to the column.
    as_csv = run(
        "query", sql, "--params-json", '{"max": 5}', "--param", "max=25", "--format", "csv", *url
    )
    assert as_csv.exit_code == 0, as_csv.stderr
    assert list(csv.reader(io.StringIO(as_csv.stdout))) == [
        ["city", "amount", "note"],
        ["Bergen", "20", ""],
        ["Oslo", "10", "north"],
    ]
    assert as_csv.stderr.startswith("2 rows in ")

    as_json = run("query", sql, "--params-json", '{"max": 15}', "--format", "json", *url)
    assert as_json.exit_code == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["columns"] == [
        {"name": "city", "type": "VARCHAR"},
        {"name": "amount", "type": "BIGINT"},
        {"name": "note", "type": "VARCHAR"},
    ]
    assert body["rows"] == [["Oslo", 10, "north"]]
    assert (body["row_count"], body["truncated"]) == (1, False)
    assert as_json.stderr == ""


def test_query_from_stdin_and_a_truncated_result(url):
    result = run("query", "-", "--limit", "2", *url, stdin="SELECT range AS n FROM range(5)\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "n\n-\n0\n1\n"
    assert "2 rows in" in result.stderr
    assert "showing the first 2 rows" in result.stderr
    assert "myapp export" in result.stderr


def test_sql_error_shows_the_message_and_a_caret_at_the_position(url, sales):
    result = run("query", f"SELECT city,\n  amout FROM {sales}", *url)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == (
        'myapp: The query has an error: Referenced column "amout" not found in FROM clause '
        "(line 2, column 3). (400 sql_error)"
    )
    assert '  Candidate bindings: "amount"' in lines
    assert lines[-2:] == [f"  2 |   amout FROM {sales}", "    |   ^^^^^"]
    assert result.stdout == ""


def test_refused_statements_and_bad_input(url):
    refused = run("query", "DROP TABLE x", *url)
    assert refused.exit_code == 1
    assert refused.stderr == (
        "myapp: Only SELECT queries can run here, and this is a DROP, which changes the "
        "database. (400 statement_not_allowed)\n"
    )

    missing = run("query", "SELECT $city AS c, $n AS n", *url)
    assert missing.exit_code == 1
    assert "(400 missing_parameter)" in missing.stderr
    assert "give --param city=VALUE --param n=VALUE" in missing.stderr

    assert run("query", "SELECT 1", "--param", "novalue", *url).exit_code == 2
    not_object = run("query", "SELECT 1", "--params-json", "[1]", *url)
    assert not_object.exit_code == 2 and "must be a JSON object" in not_object.stderr
    assert run("query", "  ", *url).exit_code == 2

    down = run("query", "SELECT 1", "--url", f"http://127.0.0.1:{free_port()}")
    assert down.exit_code == 1 and down.stderr.startswith("myapp: cannot reach the backend")


# -- myapp export --------------------------------------------------------------------------------
def _read_back(path: Path, reader: str) -> tuple[int, int]:
    with duckdb.connect() as con:
        row = con.execute(f"SELECT count(*), sum(n) FROM {reader}(?)", [str(path)]).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize(
    ("filename", "reader"),
    [
        ("out.csv", "read_csv"),
        ("out.tsv", "read_csv"),
        ("out.parquet", "read_parquet"),
        ("out.json", "read_json"),
        ("out.ndjson", "read_ndjson"),
        ("out.jsonl", "read_ndjson"),
    ],
)
def test_export_round_trips_with_the_format_from_the_extension(url, tmp_path, filename, reader):
    target = tmp_path / filename
    result = run(
        "export",
        "SELECT range AS n, md5(range::VARCHAR) AS h FROM range($k::INTEGER)",
        "--param",
        "k=1000",
        "-o",
        str(target),
        *url,
    )
    assert result.exit_code == 0, result.stderr
    assert _read_back(target, reader) == (1000, 499500)
    assert re.fullmatch(
        rf"wrote {re.escape(str(target))} \(\d+\.\d kB\) in \d+\.\d s\n", result.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [filename]


def test_export_format_option_stdout_and_unknown_extension(url, tmp_path, sales):
    chosen = tmp_path / "data.bin"
    result = run(
        "export", f"SELECT amount AS n FROM {sales}", "-o", str(chosen), "--format", "parquet", *url
    )
    assert result.exit_code == 0, result.stderr
    assert _read_back(chosen, "read_parquet") == (3, 60)

    to_stdout = run("export", f"SELECT city, amount FROM {sales} ORDER BY amount", "-o", "-", *url)
    assert to_stdout.exit_code == 0, to_stdout.stderr
    assert to_stdout.stdout == "city,amount\nOslo,10\nBergen,20\nTromsø,30\n"
    assert to_stdout.stderr.startswith("wrote 41 bytes to stdout in ")

    unknown = run("export", "SELECT 1 AS n", "-o", str(tmp_path / "data.docx"), *url)
    assert unknown.exit_code == 2
    assert "cannot tell the format from the name" in unknown.stderr
    assert "--format csv|tsv|parquet|json|ndjson|xlsx" in unknown.stderr

    error = run("export", "SELECT nope FROM range(3)", "-o", str(tmp_path / "e.csv"), *url)
    assert error.exit_code == 1 and "(400 sql_error)" in error.stderr
    assert "  1 | SELECT nope FROM range(3)" in error.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_a_big_export_streams_to_the_end(url, tmp_path):
    target = tmp_path / "big.ndjson"
    result = run("export", BIG_SQL, "-o", str(target), *url)
    assert result.exit_code == 0, result.stderr
    # Bigger than the 8 MiB the backend holds back before it streams without a length.
    assert target.stat().st_size > 8 * 1024 * 1024
    assert _read_back(target, "read_ndjson") == (600000, 599999 * 600000 // 2)
    assert re.search(r"\(\d+\.\d MB\)", result.stderr)


def test_a_failure_after_the_download_began_leaves_no_file(backend_server, tmp_path):
    target = tmp_path / "late.ndjson"
    result = run_cli("export", LATE_FAILURE_SQL, "-o", str(target), "--url", backend_server.url)
    assert result.returncode == 1
    assert re.fullmatch(
        # How much arrived depends on timing: the backend cuts the download once it knows.
        r"myapp: the export failed after [^:]+ were received: the query failed part way, "
        r"reached the server's time limit, or the connection broke; no file was written\n",
        result.stderr,
    ), result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_stays_as_it_was_when_an_export_fails(url, tmp_path):
    target = tmp_path / "kept.ndjson"
    target.write_text('{"n": 1}\n')
    result = run("export", LATE_FAILURE_SQL, "-o", str(target), *url)
    assert result.exit_code == 1
    assert f"no file was written ({target} is as it was)" in result.stderr
    assert target.read_text() == '{"n": 1}\n'
    assert list(tmp_path.iterdir()) == [target]


# -- a connection that breaks ---------------------------------------------------------------------
class BrokenBackend:
    """A loopback HTTP server that answers with a head and part of a body, then stops.

    It stands in for what the real backend cannot be made to do on purpose: a body shorter
    than its Content-Length (a proxy or network that gives up), or a download that stalls.
    """

    def __init__(self, head: bytes, body: bytes, *, hang: bool) -> None:
        self.head, self.body, self.hang = head, body, hang
        self.done = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            head, _, body = request.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
            while len(body) < length:
                body += conn.recv(65536)
            conn.sendall(self.head + self.body)
            if self.hang:
                self.done.wait(30)

    def close(self) -> None:
        self.done.set()
        self.listener.close()
        self.thread.join(5)


@pytest.fixture
def broken() -> Iterator:
    servers: list[BrokenBackend] = []

    def make(head: bytes, body: bytes, *, hang: bool = False) -> BrokenBackend:
        servers.append(BrokenBackend(head, body, hang=hang))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_a_body_shorter_than_its_length_leaves_no_file(broken, tmp_path):
    server = broken(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\n", b"n\n1\n"
    )
    result = run("export", "SELECT 1 AS n", "-o", str(tmp_path / "short.csv"), "--url", server.url)
    assert result.exit_code == 1
    assert "the export failed after 4 bytes were received" in result.stderr
    assert "no file was written" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_a_download_leaves_no_file(broken, tmp_path):
    chunk = b"x" * 256 * 1024
    server = broken(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"%x\r\n" % len(chunk) + chunk + b"\r\n",
        hang=True,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "myapp", "export", "SELECT 1", "-o", "out.csv", "--url", server.url],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        # Wait until the download is under way: the bytes are in the temporary file.
        while not any(p.stat().st_size for p in tmp_path.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the download did not begin"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert stderr == "myapp: interrupted; no file was written\n"
    assert list(tmp_path.iterdir()) == []


# -- tokens --------------------------------------------------------------------------------------
def test_a_secured_backend_needs_a_token(start_server, tmp_path):
    server = start_server("backend", env=secured_env())
    target = tmp_path / "out.csv"

    anonymous = run("query", "SELECT 42 AS answer", "--url", server.url)
    assert anonymous.exit_code == 1 and "(401 unauthorized)" in anonymous.stderr
    refused = run("export", "SELECT 42 AS answer", "-o", str(target), "--url", server.url)
    assert refused.exit_code == 1 and "(401 unauthorized)" in refused.stderr
    assert list(tmp_path.iterdir()) == []

    accounts = Accounts(server)
    try:
        viewer = accounts.user_token("viewer")
    finally:
        accounts.close()
    env = {"MYAPP_URL": server.url, "MYAPP_TOKEN": viewer}
    answered = run("query", "SELECT 42 AS answer", "--format", "csv", env=env)
    assert answered.exit_code == 0, answered.stderr
    assert answered.stdout == "answer\n42\n"
    exported = run(
        "export",
        "SELECT 42 AS answer",
        "-o",
        str(target),
        "--token",
        ADMIN_TOKEN,
        "--url",
        server.url,
    )
    assert exported.exit_code == 0, exported.stderr
    assert target.read_text() == "answer\n42\n"


def test_every_option_has_help():
    for name in ("query", "export"):
        command = main.commands[name]
        assert command.help
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{name} --{param.name} has no help"
