"""The one helper that lets an identifier reach SQL. Values are always bound parameters."""

from __future__ import annotations

# Internal tables (catalog, accounts, tokens, audit, saved queries) live in their own schema so
# that dataset names can never collide with them and user SQL can be refused access to them.
INTERNAL_SCHEMA = "myapp_internal"


def quote_ident(name: str) -> str:
    """Quote an identifier for DuckDB: wrap in double quotes, double any inside.

    NUL cannot be represented in an identifier, so it is refused rather than stripped.
    """
    if not isinstance(name, str) or name == "" or "\x00" in name:
        raise ValueError(f"not a usable SQL identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def internal(name: str) -> str:
    """The quoted, schema-qualified name of an internal table."""
    return qualified(INTERNAL_SCHEMA, name)


def nextval(sequence: str) -> str:
    """An SQL expression for the next value of the internal sequence `sequence`."""
    from ..lake.engine import MODE, nextval_sql

    if MODE.active:
        return nextval_sql(sequence)
    return f"nextval('{INTERNAL_SCHEMA}.{sequence}')"
