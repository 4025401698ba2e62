"""`myapp datasets …` and `myapp queries …` against a real backend, as a user runs them.

Most cases run in-process (CliRunner) on the shared backend with names of their own; the
confirmation on a terminal and one run of each group go through `myapp` as its own process.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest
from click.testing import CliRunner, Result

from myapp.cli import main
from tests.support.accounts import ADMIN_TOKEN, Accounts, secured_env
from tests.support.servers import clean_env, run_cli

SALES_CSV = b"city,amount,note\nOslo,10,north\nBergen,20,\nTroms\xc3\xb8,30,far north\n"


def run(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env or {}, input=stdin, catch_exceptions=False)


def upload(server_url: str, prefix: str, body: bytes = SALES_CSV) -> str:
    name = f"{prefix}_{os.urandom(3).hex()}"
    response = httpx.put(
        f"{server_url}/api/datasets/{name}",
        params={"format": "csv", "filename": "sales.csv"},
        content=body,
        timeout=30.0,
    )
    assert response.status_code == 201, response.text
    return name


def exists(server_url: str, name: str) -> bool:
    response = httpx.get(f"{server_url}/api/datasets/{name}", timeout=30.0)
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


@pytest.fixture(scope="module")
def sales(backend_server) -> str:
    """A small dataset of this module's own on the shared backend (NULL and non-ASCII text)."""
    return upload(backend_server.url, "cli_ds")


@pytest.fixture
def url(backend_server) -> list[str]:
    return ["--url", backend_server.url]


# -- myapp datasets list / show ------------------------------------------------------------------
def test_list_shows_each_dataset_on_a_line(url, sales):
    result = run("datasets", "list", *url)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ROWS", "COLUMNS", "SOURCE", "FORMAT", "SIZE", "UPDATED"]
    (line,) = [line for line in lines if line.startswith(sales + " ")]
    assert line.split()[:7] == [sales, "3", "3", "sales.csv", "csv", str(len(SALES_CSV)), "bytes"]

    as_json = run("datasets", "list", "--format", "json", *url)
    assert as_json.exit_code == 0, as_json.stderr
    (listed,) = [d for d in json.loads(as_json.stdout)["datasets"] if d["name"] == sales]
    assert (listed["row_count"], listed["source"]["bytes"]) == (3, len(SALES_CSV))


def test_show_gives_the_columns_and_their_types(url, sales):
    result = run("datasets", "show", sales, *url)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        f"{sales}: 3 rows, 3 columns",
        f"source   sales.csv (csv, {len(SALES_CSV)} bytes)",
    ]
    assert lines[-5:] == [
        "COLUMN  TYPE",
        "------  -------",
        "city    VARCHAR",
        "amount  BIGINT",
        "note    VARCHAR",
    ]

    as_json = run("datasets", "show", sales, "--format", "json", *url)
    assert as_json.exit_code == 0, as_json.stderr
    assert [c["name"] for c in json.loads(as_json.stdout)["columns"]] == ["city", "amount", "note"]


def test_an_unknown_dataset_prints_the_servers_message(url, tmp_path):
    missing = "cli_missing_" + os.urandom(3).hex()
    for args in (
        ("show", missing),
        ("rename", missing, missing + "_new"),
        ("delete", missing, "--yes"),
        ("export", missing, "-o", str(tmp_path / "out.csv")),
    ):
        result = run("datasets", *args, *url)
        assert result.exit_code == 1, args
        assert result.stderr == (
            f"myapp: There is no dataset named '{missing}'. (404 dataset_not_found)\n"
        ), args
    assert list(tmp_path.iterdir()) == []


# -- rename / delete -----------------------------------------------------------------------------
def test_rename_then_show_under_the_new_name(backend_server, url):
    name = upload(backend_server.url, "cli_rename")
    result = run("datasets", "rename", name, f"Renamed {name}", *url)
    assert result.exit_code == 0, result.stderr
    # The backend makes the name safe, as for uploads, and the message says what it became.
    assert result.stdout == f"Renamed dataset {name} to renamed_{name}.\n"
    shown = run("datasets", "show", f"renamed_{name}", *url)
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.startswith(f"renamed_{name}: 3 rows, 3 columns\n")
    assert not exists(backend_server.url, name)


def test_delete_needs_yes_without_a_terminal(backend_server, url):
    name = upload(backend_server.url, "cli_delete")
    refused = run("datasets", "delete", name, *url, stdin="y\n")
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"myapp: not deleting {name}: give --yes to delete without a question "
        "(stdin is not a terminal)\n"
    )
    assert exists(backend_server.url, name)

    deleted = run("datasets", "delete", name, "--yes", *url)
    assert deleted.exit_code == 0, deleted.stderr
    assert deleted.stdout == f"Deleted dataset {name}.\n"
    assert not exists(backend_server.url, name)


def _delete_on_a_terminal(server_url: str, name: str, answer: bytes) -> tuple[int, str]:
    """`myapp datasets delete NAME` with its stdin on a terminal that types `answer`."""
    main_fd, child_fd = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "myapp", "datasets", "delete", name],
            stdin=child_fd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=clean_env({"MYAPP_URL": server_url}),
        )
        os.close(child_fd)
        os.write(main_fd, answer)
        output, _ = proc.communicate(timeout=60)
    finally:
        os.close(main_fd)
    return proc.returncode, output.decode()


def test_delete_asks_on_a_terminal(backend_server):
    name = upload(backend_server.url, "cli_ask")
    question = f"Delete the dataset {name} (3 rows)? This cannot be undone [y/N]: "

    code, output = _delete_on_a_terminal(backend_server.url, name, b"n\n")
    assert code == 1, output
    assert output.startswith(question) and "Aborted" in output
    assert exists(backend_server.url, name)

    code, output = _delete_on_a_terminal(backend_server.url, name, b"y\n")
    assert code == 0, output
    assert output == f"{question}Deleted dataset {name}.\n"
    assert not exists(backend_server.url, name)


# -- myapp datasets export -----------------------------------------------------------------------
def test_export_round_trips_the_rows(url, sales, tmp_path):
    target = tmp_path / "sales.parquet"
    result = run("datasets", "export", sales, "-o", str(target), *url)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith(f"wrote {target} (")
    with duckdb.connect() as con:
        rows = con.execute("SELECT * FROM read_parquet(?) ORDER BY amount", [str(target)])
        assert rows.fetchall() == [
            ("Oslo", 10, "north"),
            ("Bergen", 20, None),
            ("Tromsø", 30, "far north"),
        ]
    assert [p.name for p in tmp_path.iterdir()] == ["sales.parquet"]


def test_export_applies_filters_search_and_sort(url, sales, tmp_path):
    target = tmp_path / "big.csv"
    result = run(
        "datasets", "export", sales, "-o", str(target), "--filter", "amount__gte=20",
        "--sort", "-amount", *url,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert list(csv.reader(io.StringIO(target.read_text()))) == [
        ["city", "amount", "note"],
        ["Tromsø", "30", "far north"],
        ["Bergen", "20", ""],
    ]

    searched = run(
        "datasets", "export", sales, "-o", "-", "--format", "ndjson", "--q", "NORTH",
        "--filter", "city__in=Oslo,Bergen", *url,
    )  # fmt: skip
    assert searched.exit_code == 0, searched.stderr
    assert [json.loads(line) for line in searched.stdout.splitlines()] == [
        {"city": "Oslo", "amount": 10, "note": "north"}
    ]


def test_export_refuses_bad_filters_and_writes_nothing(url, sales, tmp_path):
    target = str(tmp_path / "out.csv")
    not_a_filter = run("datasets", "export", sales, "-o", target, "--filter", "amount=5", *url)
    assert not_a_filter.exit_code == 2
    assert "'amount=5' is not COLUMN__OP=VALUE" in not_a_filter.stderr

    bad_op = run("datasets", "export", sales, "-o", target, "--filter", "amount__near=5", *url)
    assert bad_op.exit_code == 1
    assert bad_op.stderr.startswith("myapp: Unknown filter operator 'near' in 'amount__near'")
    assert "(400 invalid_filter)" in bad_op.stderr

    no_format = run("datasets", "export", sales, "-o", str(tmp_path / "out.docx"), *url)
    assert no_format.exit_code == 2 and "cannot tell the format" in no_format.stderr
    assert list(tmp_path.iterdir()) == []


# -- myapp queries -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(backend_server, sales) -> str:
    """A saved query with a typed parameter in two versions: v1 keeps amounts >= min, v2 < max."""
    slug = "cli-q-" + os.urandom(3).hex()
    with httpx.Client(base_url=backend_server.url, timeout=30.0) as client:
        created = client.post(
            "/api/queries",
            json={
                "slug": slug,
                "title": f"Sales from {slug}",
                "description": "Cities with at least min.",
                "sql": f"SELECT city, amount FROM {sales}\nWHERE amount >= $min ORDER BY amount",
                "parameters": [{"name": "min", "type": "integer", "default": 15}],
            },
        )
        assert created.status_code == 201, created.text
        edited = client.put(
            f"/api/queries/{slug}",
            json={
                "title": f"Sales below {slug}",
                "sql": f"SELECT city, amount FROM {sales} WHERE amount < $max ORDER BY amount",
                "parameters": [{"name": "max", "type": "integer"}],
            },
        )
        assert edited.status_code == 200 and edited.json()["version"] == 2, edited.text
    return slug


def test_queries_list_and_show(url, saved, sales):
    listed = run("queries", "list", *url)
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == [
        "SLUG", "TITLE", "VERSION", "PARAMETERS", "UPDATED"
    ]  # fmt: skip
    (line,) = [line for line in listed.stdout.splitlines() if line.startswith(saved + " ")]
    assert line.split()[:6] == [saved, "Sales", "below", saved, "2", "1"]

    latest = run("queries", "show", saved, *url)
    assert latest.exit_code == 0, latest.stderr
    lines = latest.stdout.splitlines()
    assert lines[0] == f"{saved}: Sales below {saved}"
    assert lines[1].startswith("version 2 of 2, saved ")
    assert lines[-5:] == [
        "PARAMETER  TYPE     DEFAULT     LABEL",
        "---------  -------  ----------  -----",
        "max        integer  (required)",
        "",
        f"SELECT city, amount FROM {sales} WHERE amount < $max ORDER BY amount",
    ]

    first = run("queries", "show", saved, "--version", "1", *url)
    assert first.exit_code == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == f"{saved}: Sales from {saved}"
    assert lines[1].startswith("version 1 of 2, saved ")
    assert lines[2:] == [
        "",
        "Cities with at least min.",
        "",
        "PARAMETER  TYPE     DEFAULT  LABEL",
        "---------  -------  -------  -----",
        "min        integer  15",
        "",
        f"SELECT city, amount FROM {sales}",
        "WHERE amount >= $min ORDER BY amount",
    ]

    versions = run("queries", "versions", saved, *url)
    assert versions.exit_code == 0, versions.stderr
    assert [line.split()[:2] for line in versions.stdout.splitlines()[2:]] == [
        ["2", "Sales"],
        ["1", "Sales"],
    ]


def test_queries_run_with_parameters_versions_and_formats(url, saved):
    table = run("queries", "run", saved, "--param", "max=25", *url)
    assert table.exit_code == 0, table.stderr
    assert table.stdout == "city    amount\n------  ------\nOslo        10\nBergen      20\n"
    assert table.stderr.startswith("2 rows in ")

    older = run("queries", "run", saved, "--version", "1", "--format", "csv", *url)
    assert older.exit_code == 0, older.stderr
    # Version 1's default (min = 15) fills the parameter not given.
    assert older.stdout == "city,amount\nBergen,20\nTromsø,30\n"

    as_json = run("queries", "run", saved, "--params-json", '{"max": 99}', "--format", "json", *url)
    assert as_json.exit_code == 0, as_json.stderr
    assert json.loads(as_json.stdout)["rows"] == [["Oslo", 10], ["Bergen", 20], ["Tromsø", 30]]

    cut = run("queries", "run", saved, "-p", "max=100", "--limit", "1", *url)
    assert cut.exit_code == 0, cut.stderr
    assert f"use `myapp queries export {saved}` for all of them" in cut.stderr


def test_queries_run_reports_bad_parameters_and_unknown_queries(url, saved):
    required = run("queries", "run", saved, *url)
    assert required.exit_code == 1
    assert required.stderr == (
        "myapp: The parameter max is not valid: a value is required. (400 invalid_parameter)\n"
        "  --param max: a value is required\n"
    )
    typed = run("queries", "run", saved, "--param", "max=lots", *url)
    assert typed.exit_code == 1
    assert "expected a whole number, got 'lots'" in typed.stderr
    assert run("queries", "run", saved, "--param", "max", *url).exit_code == 2

    missing = "cli-missing-" + os.urandom(3).hex()
    for args in (("show", missing), ("run", missing), ("versions", missing)):
        result = run("queries", *args, *url)
        assert result.exit_code == 1, args
        assert result.stderr == (
            f"myapp: There is no saved query '{missing}'. (404 query_not_found)\n"
        ), args


def test_a_failing_saved_query_shows_the_caret_in_its_sql(backend_server, url):
    name = upload(backend_server.url, "cli_gone")
    slug = "cli-gone-" + os.urandom(3).hex()
    created = httpx.post(
        f"{backend_server.url}/api/queries",
        json={"slug": slug, "title": slug, "sql": f"SELECT city\nFROM {name}"},
        timeout=30.0,
    )
    assert created.status_code == 201, created.text
    assert run("datasets", "delete", name, "--yes", *url).exit_code == 0
    result = run("queries", "run", slug, *url)
    assert result.exit_code == 1
    assert "(400 sql_error)" in result.stderr
    assert result.stderr.endswith(f"  2 | FROM {name}\n    |      {'^' * len(name)}\n")


def test_queries_export_round_trips_with_parameters(url, saved, tmp_path):
    target = tmp_path / "below.parquet"
    result = run("queries", "export", saved, "-o", str(target), "--param", "max=25", *url)
    assert result.exit_code == 0, result.stderr
    with duckdb.connect() as con:
        rows = con.execute("SELECT * FROM read_parquet(?)", [str(target)]).fetchall()
    assert rows == [("Oslo", 10), ("Bergen", 20)]

    older = tmp_path / "older.csv"
    result = run("queries", "export", saved, "-o", str(older), "--version", "1", *url)
    assert result.exit_code == 0, result.stderr
    assert older.read_text() == "city,amount\nBergen,20\nTromsø,30\n"

    refused = run("queries", "export", saved, "-o", str(tmp_path / "none.csv"), *url)
    assert refused.exit_code == 1 and "(400 invalid_parameter)" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["below.parquet", "older.csv"]


def test_both_groups_as_real_commands(backend_server, saved, sales, tmp_path):
    shown = run_cli("datasets", "show", sales, env={"MYAPP_URL": backend_server.url})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{sales}: 3 rows, 3 columns\n")

    target = tmp_path / "out.ndjson"
    exported = run_cli(
        "queries", "export", saved, "-p", "max=15", "-o", str(target), "--url", backend_server.url
    )
    assert exported.returncode == 0, exported.stderr
    assert target.read_text() == '{"city":"Oslo","amount":10}\n'


# -- tokens --------------------------------------------------------------------------------------
def test_a_secured_backend_needs_a_token(start_server, tmp_path):
    server = start_server("backend", env=secured_env())
    name = "cli_secured"
    uploaded = httpx.put(
        f"{server.url}/api/datasets/{name}",
        params={"format": "csv"},
        content=SALES_CSV,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30.0,
    )
    assert uploaded.status_code == 201, uploaded.text

    for args in (("datasets", "list"), ("queries", "list"), ("datasets", "show", name)):
        anonymous = run(*args, "--url", server.url)
        assert anonymous.exit_code == 1, args
        assert "(401 unauthorized)" in anonymous.stderr, args

    with contextlib.closing(Accounts(server)) as accounts:
        env = {"MYAPP_URL": server.url, "MYAPP_TOKEN": accounts.user_token("viewer")}
    listed = run("datasets", "list", env=env)
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.splitlines()[2].startswith(f"{name}  ")
    # A viewer reads and exports, but may not change data.
    target = tmp_path / "out.csv"
    assert run("datasets", "export", name, "-o", str(target), env=env).exit_code == 0
    assert target.read_bytes() == SALES_CSV
    forbidden = run("datasets", "delete", name, "--yes", env=env)
    assert forbidden.exit_code == 1 and "(403 " in forbidden.stderr
    renamed = run("datasets", "rename", name, "cli_new", "--token", ADMIN_TOKEN, env=env)
    assert renamed.exit_code == 0, renamed.stderr


def test_every_command_and_option_has_help():
    for group_name in ("datasets", "queries"):
        group = main.commands[group_name]
        assert group.help
        for name, command in group.commands.items():
            assert command.help, f"{group_name} {name}"
            for param in command.params:
                if param.param_type_name == "option":
                    assert param.help, f"{group_name} {name} --{param.name} has no help"


def test_readme_mentions_every_command():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for group_name in ("datasets", "queries"):
        for name in main.commands[group_name].commands:
            assert f"myapp {group_name} {name}" in readme, f"myapp {group_name} {name}"
