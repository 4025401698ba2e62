"""What the command line prints, without a server: result tables, the caret under an SQL error,
the one way an API error becomes a message, and the choices read from the arguments."""

from __future__ import annotations

import click
import pytest

from myapp.client import ApiError
from myapp.commands.download import export_format
from myapp.commands.errors import (
    CliError,
    about_sql,
    caret_lines,
    explained,
    from_api_error,
    sql_error_lines,
)
from myapp.commands.output import display_width, format_size, render_table
from myapp.commands.params import parse_params


def test_a_table_aligns_by_terminal_columns_and_numbers_to_the_right():
    table = render_table(
        {
            "columns": [{"name": "city", "type": "VARCHAR"}, {"name": "n", "type": "BIGINT"}],
            "rows": [["東京", 1], ["Oslo\nx", 12345], [None, None], ["x" * 100, True]],
        }
    ).splitlines()
    # One long text is cut at 80 columns rather than push the others off the screen.
    assert table[5] == "x" * 79 + "…" + "   true"
    assert table[0] == "city" + " " * 76 + "      n"
    assert table[1] == "-" * 80 + "  " + "-" * 5
    # 東京 takes four columns of the terminal, not two.
    assert table[2] == "東京" + " " * 76 + "      1"
    # A line break cannot break the table; NULL reads NULL.
    assert table[3] == "Oslo\\nx" + " " * 73 + "  12345"
    assert table[4] == "NULL" + " " * 76 + "   NULL"
    assert {display_width(line) for line in table} == {87}


def test_the_caret_stands_under_the_position_whatever_comes_before_it():
    assert caret_lines("SELECT 1,\n  nope", 2, 3, 4) == ["  2 |   nope", "    |   ^^^^"]
    # Wide characters take two columns; tabs stay tabs, so the caret lines up on any terminal.
    assert caret_lines("SELECT '日本', nope", 1, 14, 4)[1] == "    | " + " " * 15 + "^^^^"
    assert caret_lines("SELECT\tnope", 1, 8, 4)[1] == "    |       \t^^^^"
    # A position beyond the text shows nothing rather than a wrong line.
    assert caret_lines("a\nb", 3, 1, 1) == []


def test_a_long_line_is_shown_as_a_window_around_the_position():
    sql = "SELECT " + "x, " * 60 + "nope FROM t"
    source, caret = caret_lines(sql, 1, sql.index("nope") + 1, 4)
    assert source.startswith("  1 | …") and len(source) <= 6 + 1 + 100 + 1
    assert source[caret.index("^") : caret.index("^") + 4] == "nope"


def test_an_api_error_is_one_message_with_the_lines_that_help_fix_it():
    error = ApiError(
        400,
        "sql_error",
        "The query has an error: Referenced column nope not found (line 1, column 8).",
        {
            "message": "Binder Error: Referenced column nope not found\nCandidate bindings: a",
            "line": 1,
            "column": 8,
            "length": 4,
            "missing": ["city"],
        },
    )
    with pytest.raises(ApiError) as caught, explained(about_sql("SELECT nope FROM t")):
        raise error
    message = from_api_error(caught.value)
    assert isinstance(message, click.ClickException) and message.exit_code == 1
    assert message.format_message().splitlines() == [
        "The query has an error: Referenced column nope not found (line 1, column 8). "
        "(400 sql_error)",
        "  Candidate bindings: a",
        "  give --param city=VALUE",
        "  1 | SELECT nope FROM t",
        "    |        ^^^^",
    ]


def test_an_error_without_detail_or_sql_is_its_message_alone():
    unreachable = ApiError(None, "backend_unavailable", "cannot reach the backend at x")
    assert sql_error_lines(unreachable, "SELECT 1") == []
    assert from_api_error(unreachable).format_message() == "cannot reach the backend at x"
    typed = ApiError(400, "invalid_parameter", "m.", {"parameters": {"n": "not an integer"}})
    assert sql_error_lines(typed, None) == ["  --param n: not an integer"]


def test_the_command_lines_own_errors_print_as_one_line_with_their_code(capsys):
    CliError("no SQL given", 2).show()
    assert capsys.readouterr().err == "myapp: no SQL given\n"


@pytest.mark.parametrize(
    ("output", "fmt", "chosen"),
    [
        ("out.CSV", None, "csv"),
        ("out.jsonl", None, "ndjson"),
        ("out.xlsx", None, "xlsx"),
        ("-", None, "csv"),
        ("out.dat", "parquet", "parquet"),
    ],
)
def test_the_export_format_comes_from_the_name_unless_given(output, fmt, chosen):
    assert export_format(output, fmt) == chosen


def test_an_unknown_suffix_asks_for_a_format():
    with pytest.raises(CliError) as caught:
        export_format("out.dat", None)
    assert caught.value.exit_code == 2
    assert "--format csv|tsv|parquet|json|ndjson|xlsx" in caught.value.format_message()


def test_parameters_from_pairs_win_over_json():
    assert parse_params(("city=Oslo", "note=a=b"), '{"city": "Bergen", "n": 5}') == {
        "city": "Oslo",
        "n": 5,
        "note": "a=b",
    }
    assert parse_params((), None) is None
    for pairs, given_json in [(("city",), None), (("=x",), None), ((), "[1]"), ((), "{")]:
        with pytest.raises(click.BadParameter):
            parse_params(pairs, given_json)


def test_sizes_read_as_a_person_expects():
    assert [format_size(n) for n in (1, 999, 1000, 41_500, 2_500_000, 3_000_000_000)] == [
        "1 byte",
        "999 bytes",
        "1.0 kB",
        "41.5 kB",
        "2.5 MB",
        "3.0 GB",
    ]
