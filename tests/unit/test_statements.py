"""Cutting the user's text into its first statement: what the gate refuses as "more than one
statement", and the text positions of errors are counted in."""

from __future__ import annotations

import duckdb
import pytest

from myapp.backend.store.usersql.statements import split_statement, statement_body, wrap

ONE_STATEMENT = [
    ("SELECT 1", "SELECT 1"),
    ("SELECT 1;", "SELECT 1"),
    ("SELECT 1;;;", "SELECT 1"),
    ("SELECT 1; -- done\n", "SELECT 1"),
    ("SELECT 1; /* only a comment */", "SELECT 1"),
    ("SELECT 1 -- a comment; DROP TABLE t\n; ", "SELECT 1"),
    ("SELECT 1 /* ; /* nested ; */ ; */ ;", "SELECT 1"),
    ("SELECT ';' AS x", "SELECT ';' AS x"),
    ("SELECT 'it''s; fine' ;", "SELECT 'it''s; fine'"),
    ('SELECT 1 AS ";"; ', 'SELECT 1 AS ";"'),
    ('SELECT 1 AS "a "";"" b";', 'SELECT 1 AS "a "";"" b"'),
    ("SELECT $$a;b$$", "SELECT $$a;b$$"),
    ("SELECT $tag$ ; $$ ; $tag$ ;", "SELECT $tag$ ; $$ ; $tag$"),
    ("SELECT E'\\';' AS x;", "SELECT E'\\';' AS x"),
    ("\n  SELECT 1\n;\n", "\n  SELECT 1"),
    ("SELECT 'never closed ; ", "SELECT 'never closed ; "),
    ("   ", ""),
]


@pytest.mark.parametrize(("sql", "first"), ONE_STATEMENT)
def test_one_statement_keeps_its_text_without_trailing_semicolons_and_comments(sql, first):
    assert split_statement(sql) == (first, False)
    assert statement_body(sql) == first


MORE_THAN_ONE = [
    ("SELECT 1; SELECT 2", "SELECT 1"),
    ("SELECT 1;\nDROP TABLE sales", "SELECT 1"),
    ("SELECT 1; -- then\nDELETE FROM sales", "SELECT 1"),
    ("SELECT ';'; ATTACH 'x.db'", "SELECT ';'"),
    ("SELECT $1; SELECT 2", "SELECT $1"),
    # A backslash escapes only in E'' strings: here the quote ends the string.
    ("SELECT 'a\\'; SELECT 2", "SELECT 'a\\'"),
    ("SELECT E'\\';' ; x", "SELECT E'\\';'"),
    # `a$$` is an identifier's end followed by `$$`, not the start of a dollar quote.
    ("SELECT a$$ ; b", "SELECT a$$"),
    ("SELECT 1; 'text'", "SELECT 1"),
    ("SELECT 1; $$text$$", "SELECT 1"),
]


@pytest.mark.parametrize(("sql", "first"), MORE_THAN_ONE)
def test_a_second_statement_is_seen_wherever_it_hides(sql, first):
    assert split_statement(sql) == (first, True)


@pytest.mark.parametrize(("sql", "first"), ONE_STATEMENT[:15])
def test_duckdb_agrees_there_is_one_statement(sql, first):
    # The lexer only has to be right for messages; DuckDB's own parser is the reference.
    assert len(duckdb.extract_statements(sql)) == 1
    assert len(duckdb.extract_statements(first)) == 1


@pytest.mark.parametrize("sql", [s for s, _ in MORE_THAN_ONE[:5]])
def test_duckdb_agrees_there_are_several(sql):
    assert len(duckdb.extract_statements(sql)) > 1


def test_wrapped_text_keeps_a_trailing_line_comment_from_swallowing_the_rest():
    body = statement_body("SELECT 42 AS answer -- the answer;")
    wrapped = wrap(body, tail=" LIMIT 1")
    assert duckdb.sql(wrapped).fetchall() == [(42,)]
    # The user's text is on lines of its own, so positions map back into it.
    assert wrapped.split("\n")[1] == body
