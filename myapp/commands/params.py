"""What a command sends besides its arguments: SQL text (or - for stdin), `$name` parameter
values (--param NAME=VALUE, --params-json), and request fields left to the API's defaults."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from .errors import EXIT_USAGE, fail


def read_sql(sql: str) -> str:
    """The SQL argument, or stdin for -; empty SQL is a usage error."""
    text = sys.stdin.read() if sql == "-" else sql
    if not text.strip():
        fail("no SQL given (pass it as the argument, or - to read it from stdin)", EXIT_USAGE)
    return text


def parse_params(pairs: tuple[str, ...], params_json: str | None) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
        except ValueError as exc:
            raise click.BadParameter(
                f"not valid JSON ({exc})", param_hint="--params-json"
            ) from None
        if not isinstance(loaded, dict):
            raise click.BadParameter(
                'must be a JSON object, such as {"city": "Oslo", "n": 5}',
                param_hint="--params-json",
            )
        values.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(
                f"{pair!r} is not NAME=VALUE (such as --param city=Oslo)", param_hint="--param"
            )
        values[name] = value
    return values or None


def make_param_options(param_help: str) -> Callable[[Any], Any]:
    """--param NAME=VALUE (repeatable) and --params-json, read with parse_params."""

    def decorate(func: Any) -> Any:
        func = click.option(
            "--params-json",
            default=None,
            metavar="JSON",
            help="Parameter values as a JSON object with their types, e.g. '{\"n\": 5}'. "
            "--param values win over these.",
        )(func)
        return click.option(
            "--param",
            "-p",
            "param_pairs",
            multiple=True,
            metavar="NAME=VALUE",
            help=param_help,
        )(func)

    return decorate


param_options = make_param_options(
    "Value of $NAME in the SQL, sent as text (repeatable); write $NAME::INTEGER "
    "(or another type) in the SQL to have DuckDB cast it."
)


def limit_option(func: Any) -> Any:
    return click.option(
        "--limit",
        type=click.IntRange(min=0),
        default=None,
        help="Most rows to return (the server caps it at MYAPP_MAX_ROWS).",
    )(func)


def given(**fields: Any) -> dict[str, Any]:
    """A request body of the fields given: the API's own defaults stand for the others."""
    return {key: value for key, value in fields.items() if value is not None}
