"""What the command line says when something goes wrong: one line on stderr and an exit code.

The API client (myapp.client) raises ApiError; `from_api_error` is the one place that turns it
into what the command line prints (the `myapp` group calls it for every command). A command
that sent SQL passes an `Explain` to add what helps fix it (DuckDB's hints, the parameters
missing or refused, the SQL line with a caret under the position): those lines travel as notes
of the error, so the error itself is never caught and printed anywhere else. Errors of the
command line's own (usage, files) are raised with `fail`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import click

from myapp.client import ApiError

from .output import display_width

# Exit code for a command-line usage error, as click uses.
EXIT_USAGE = 2

# SQL lines longer than this are shown as a window around the position of an error.
MAX_SHOWN_SQL = 100

Explain = Callable[[ApiError], list[str]]
"""The lines a command adds under an API error's message (what helps fix it)."""


class CliError(click.ClickException):
    """One line on stderr, `myapp: <message>`, and the exit code (1 unless given)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"myapp: {self.format_message()}", err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


def from_api_error(exc: ApiError) -> CliError:
    """The one place an API error becomes what the command line prints: its message, then
    the lines a command added (`explained`)."""
    return CliError("\n".join([str(exc), *getattr(exc, "__notes__", ())]))


@contextlib.contextmanager
def explained(explain: Explain | None) -> Iterator[None]:
    """An ApiError raised inside carries the lines `explain` gives for it."""
    try:
        yield
    except ApiError as exc:
        if explain is not None:
            for line in explain(exc):
                exc.add_note(line)
        raise


def sql_error_lines(exc: ApiError, sql: str | None) -> list[str]:
    """DuckDB's hints, what is wrong with each parameter, and the SQL line with a caret under
    the position the backend gives (detail.line and detail.column, 1-based characters of
    `sql`, the text that ran; None when it is not at hand)."""
    detail = exc.detail
    if not isinstance(detail, dict):
        return []
    lines: list[str] = []
    duckdb_text = detail.get("message")
    if isinstance(duckdb_text, str):
        # The first line is what the message already says; what follows are DuckDB's hints
        # (`Did you mean "floor"?`, candidate columns).
        lines.extend("  " + hint for hint in duckdb_text.splitlines()[1:] if hint.strip())
    missing = detail.get("missing")
    if isinstance(missing, list) and missing:
        lines.append("  give " + " ".join(f"--param {name}=VALUE" for name in missing))
    # Saved queries type their parameters, and say which value does not fit and why.
    problems = detail.get("parameters")
    if isinstance(problems, dict):
        lines.extend(f"  --param {name}: {problem}" for name, problem in problems.items())
    line_no, column = detail.get("line"), detail.get("column")
    if sql is not None and isinstance(line_no, int) and isinstance(column, int):
        lines.extend(caret_lines(sql, line_no, column, detail.get("length")))
    return lines


def about_sql(sql: str | None) -> Explain:
    """Explain the errors of running `sql` (None: the SQL is not at hand, so no caret)."""
    return lambda exc: sql_error_lines(exc, sql)


def caret_lines(sql: str, line_no: int, column: int, length: Any) -> list[str]:
    source_lines = sql.split("\n")
    if not 1 <= line_no <= len(source_lines):
        return []
    source = source_lines[line_no - 1].rstrip("\r")
    start = min(max(column - 1, 0), len(source))
    width = length if isinstance(length, int) and length > 0 else 1
    width = max(1, min(width, len(source) - start))
    prefix = ""
    if len(source) > MAX_SHOWN_SQL:
        first = max(0, start - MAX_SHOWN_SQL // 2)
        shown = source[first : first + MAX_SHOWN_SQL]
        if first:
            prefix, start = "…", start - first + 1
        if first + MAX_SHOWN_SQL < len(source):
            shown += "…"
        source = prefix + shown
        width = max(1, min(width, len(source) - start))
    gutter = f"  {line_no} | "
    # Tabs stay tabs under the caret, so it lines up however the terminal shows them.
    pad = "".join("\t" if ch == "\t" else " " * display_width(ch) for ch in source[:start])
    return [gutter + source, " " * (len(gutter) - 2) + "| " + pad + "^" * width]
