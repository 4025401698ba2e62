"""The user's SQL text: where its one statement ends, and the runner's wrapping of it.

Python, not DuckDB: it runs on the event loop for texts the gate has seen (execute.py), and
only has to be right for messages and error positions, since whatever it cuts is wrapped and
put through the gate again (gate.py) before it runs.
"""

from __future__ import annotations

import re

# The alias of the user's SELECT where the runner wraps it as a subquery (see wrap()).
_WRAP_ALIAS = "myapp_result"

_DOLLAR_QUOTE = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statement(sql: str) -> tuple[str, bool]:
    """The first statement's text up to its last token (trailing semicolons and comments go),
    and whether any other statement follows.

    A small lexer (strings, quoted identifiers, dollar quotes, comments) finds semicolons
    outside them. It only has to be right for messages and error positions: whatever it cuts
    is wrapped and put through the gate again before it runs.
    """
    i, n = 0, len(sql)
    end = 0  # end of the last token seen
    body_end: int | None = None  # where the first statement ended
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            escapes = (
                ch == "'" and i > 0 and sql[i - 1] in "eE" and (i < 2 or not _word(sql[i - 2]))
            )
            j = i + 1
            while j < n:
                if escapes and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:
                        j += 2
                        continue
                    break
                j += 1
            i = end = min(j + 1, n)
            if body_end is not None:
                return sql[:body_end], True
            continue
        if sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline + 1
            continue
        if sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
            continue
        if ch == "$":
            quote = _DOLLAR_QUOTE.match(sql, i)
            if quote and not (quote[1] is None and i > 0 and _word(sql[i - 1])):
                if body_end is not None:
                    return sql[:body_end], True
                close = sql.find(quote[0], quote.end())
                i = end = n if close < 0 else close + len(quote[0])
                continue
        if ch == ";":
            if body_end is None:
                body_end = end
        elif not ch.isspace():
            if body_end is not None:
                return sql[:body_end], True
            end = i + 1
        i += 1
    return sql[: end if body_end is None else body_end], False


def statement_body(sql: str) -> str:
    return split_statement(sql)[0]


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def wrap(body: str, head: str = "SELECT *", tail: str = "") -> str:
    """The user's SELECT as a subquery. The newlines keep a trailing line comment of the user
    from swallowing the rest, and put the user's text on lines of its own, so a position DuckDB
    reports maps back into it (sql_error)."""
    return f"{head} FROM (\n{body}\n) AS {_WRAP_ALIAS}{tail}"
