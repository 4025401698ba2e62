"""Where in the user's text an SQL error is: DuckDB's `LINE n:` excerpt and caret, or a byte
offset of its syntax tree, turned into the line, column and character position the SQL editor
and the command line's caret use."""

from __future__ import annotations

import duckdb
import pytest

from myapp.backend.store.usersql.errors import (
    DuckError,
    locate,
    position_from_bytes,
    short,
    span,
    sql_error,
)


def duckdb_error(sql: str) -> duckdb.Error:
    try:
        duckdb.connect().execute(sql)
    except duckdb.Error as exc:
        return exc
    raise AssertionError(f"{sql!r} ran without an error")


def pointed_at(sql: str) -> str:
    position = locate(str(duckdb_error(sql)), sql)
    assert position is not None
    return sql[position["position"] : position["position"] + position["length"]]


COLUMNS = ", ".join(f"{i} AS column_number_{i}" for i in range(12))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT nope FROM range(3)",
        "SELECT 1,\n  nope\nFROM range(3)",
        "SELECT 1\r\n, nope FROM range(3)",
        "SELECT 'ø', nope FROM range(1)",
        "SELECT 'é', nope FROM range(1)",
        # DuckDB shows a window of a long line, starting with "..." (and ending with one).
        f"SELECT {COLUMNS}, nope FROM range(1)",
        f"SELECT {COLUMNS}, nope, {COLUMNS} FROM range(1)",
        f"SELECT nope, {COLUMNS} FROM range(1)",
    ],
)
def test_the_position_is_the_word_duckdb_points_at(sql):
    assert pointed_at(sql) == "nope"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1,\n\t\tnope\nFROM range(1)",
        "SELECT '日本語', nope FROM range(1)",
        "SELECT 'e\u0301', nope",
    ],
)
def test_the_position_survives_tabs_and_wide_characters(sql):
    assert pointed_at(sql) == "nope"


def test_an_error_at_the_end_of_the_text_points_at_its_end():
    sql = "SELECT 1 +"
    assert pointed_at(sql) == "+"
    # DuckDB 1.4 says only "at end of input", without an excerpt: just after the last word.
    position = locate("syntax error at end of input", "SELECT 1 +  \n")
    assert position == {"line": 1, "column": 11, "position": 10, "length": 1}


def test_a_message_without_a_position_has_none():
    assert locate("Binder Error: something else entirely", "SELECT 1") is None
    # An excerpt of a line the text does not have is not trusted.
    assert locate("x\n\nLINE 9: nope\n        ^", "SELECT nope") is None


def test_line_and_column_count_characters_from_one():
    text = "SELECT 1,\n  'ø', nope"
    assert span(text, text.index("nope"), 4) == {
        "line": 2,
        "column": 8,
        "position": 17,
        "length": 4,
    }
    # Out of range offsets are held to the text; a length is at least one.
    assert span("ab", 99, 0) == {"line": 1, "column": 3, "position": 2, "length": 1}


def test_byte_offsets_of_the_syntax_tree_become_characters():
    text = "SELECT 'øæå', nope"
    at = len("SELECT 'øæå', ".encode())
    assert position_from_bytes(text, at, 4) == span(text, text.index("nope"), 4)
    assert position_from_bytes(text, len(text.encode()) + 1) is None
    assert position_from_bytes(text, -1) is None


def test_an_error_in_the_users_select_inside_our_wrapping_points_into_the_select():
    body = "SELECT\n  nope FROM range(1)"
    wrapped = f"SELECT * FROM (\n{body}\n) AS myapp_result LIMIT 10"
    error = sql_error(duckdb_error(wrapped), wrapped, body=body)
    assert error.code == "sql_error" and error.status_code == 400
    assert (error.detail["line"], error.detail["column"]) == (2, 3)
    assert "(line 2, column 3)" in error.message
    # DuckDB's hints stay in the detail, its excerpt does not.
    assert "Candidate bindings" in error.detail["message"]
    assert "LINE" not in error.detail["message"]


def test_an_error_in_our_wrapping_has_no_position():
    body = "SELECT 1 AS a"
    wrapped = f"SELECT nope FROM (\n{body}\n) AS myapp_result"
    error = sql_error(duckdb_error(wrapped), wrapped, body=body)
    assert "line" not in error.detail and "(line" not in error.message


@pytest.mark.parametrize(
    ("kind", "message", "status", "code"),
    [
        ("OutOfMemoryException", "Out of Memory Error: failed to allocate", 422, "query_too_large"),
        (
            "TransactionException",
            "TransactionContext Error: Cannot write in a read-only transaction",
            400,
            "statement_not_allowed",
        ),
        ("PermissionException", "Permission Error: file system access", 400, "table_not_allowed"),
        ("IOException", "IO Error: cannot open file", 400, "table_not_allowed"),
        ("ConversionException", "Conversion Error: could not convert", 400, "sql_error"),
    ],
)
def test_errors_from_a_worker_are_translated_by_their_class_name(kind, message, status, code):
    error = sql_error(DuckError(kind, message), "SELECT 1")
    assert (error.status_code, error.code) == (status, code)
    assert error.message.endswith(".")


def test_an_internal_error_is_a_500_that_does_not_echo_duckdb(caplog):
    error = sql_error(DuckError("InternalException", "INTERNAL Error: secret state"), "SELECT 1")
    assert (error.status_code, error.code) == (500, "database_error")
    assert "secret state" not in error.message
    assert "secret state" in caplog.text


def test_the_api_message_is_the_first_sentence_of_duckdbs():
    assert short('Binder Error: Referenced column "x" not found!\nCandidate bindings: "y"') == (
        'Referenced column "x" not found'
    )
    assert short("no prefix here.") == "no prefix here"
