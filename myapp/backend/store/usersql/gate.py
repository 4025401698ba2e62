"""The gate every user statement passes before it runs, in the backend process.

User SQL is untrusted code. It runs in worker processes that see only the datasets' files,
read-only, under a memory cap and a kill at the time limit (workers.py): that is the boundary.
The gate is the policy in front of it, with positions a person can act on:

1. exactly one statement, of type SELECT (`duckdb.extract_statements`);
2. its syntax tree (`json_serialize_sql`, which serialises only SELECTs) names only datasets
   and its own CTEs, and calls only functions on the reviewed list (functions.tsv), so SQL
   text inside a string argument never reaches a function that would plan it.

Statement types lie (`EXPLAIN ANALYZE INSERT` is an EXPLAIN that inserts), hence the layers.
Whenever the runner wraps the user's SELECT (to limit, chart or export it), the wrapped text is
put through the gate again, so a mistake in cutting the user's text can only fail, never widen.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb

from ...errors import AppError, BadRequest
from .. import storage
from ..datasets import STAGING_PREFIX
from .errors import (
    QueryRefused,
    SqlError,
    position_from_bytes,
    refused,
    short,
    sql_error,
    unwrappable,
)
from .functions import allowed_table_functions, function_list
from .statements import split_statement, statement_body, wrap

log = logging.getLogger("myapp.backend.query")

# Table references the parser produces for a SELECT. Anything else is refused, so a new kind of
# reference in a later DuckDB is a clear error rather than an unchecked path to data.
KNOWN_TABLE_REFS = frozenset(
    {
        "BASE_TABLE",
        "TABLE_FUNCTION",
        "SUBQUERY",
        "JOIN",
        "EXPRESSION_LIST",
        "EMPTY",
        "EMPTY_FROM",
        "PIVOT",
        "SHOW_REF",
    }
)

# `SHOW TABLES` lists the datasets (schema main); other SHOW forms list the whole catalog.
ALLOWED_SHOW = frozenset({'"tables"', "tables"})

# DuckDB's statement types, as words for the refusal message.
_STATEMENT_WORDS = {
    "INSERT": "an INSERT, which changes data",
    "UPDATE": "an UPDATE, which changes data",
    "DELETE": "a DELETE or TRUNCATE, which changes data",
    "MERGE_INTO": "a MERGE, which changes data",
    "CREATE": "a CREATE, which changes the database",
    "CREATE_FUNC": "a CREATE FUNCTION, which changes the database",
    "DROP": "a DROP, which changes the database",
    "ALTER": "an ALTER, which changes the database",
    "COPY": "a COPY, which reads or writes files",
    "COPY_DATABASE": "a COPY FROM DATABASE, which writes a database",
    "EXPORT": "an EXPORT, which writes files",
    "ATTACH": "an ATTACH, which opens another database",
    "DETACH": "a DETACH, which closes a database",
    "LOAD": "an INSTALL or LOAD of an extension",
    "EXTENSION": "an extension statement",
    "SET": "a SET, RESET or USE, which changes settings",
    "VARIABLE_SET": "a SET VARIABLE, which changes settings",
    "PRAGMA": "a PRAGMA or IMPORT, which can change settings and data",
    "EXPLAIN": "an EXPLAIN, which can run the statement it explains",
    "TRANSACTION": "a transaction statement",
    "VACUUM": "a VACUUM or ANALYZE, which changes the database",
    "CALL": "a CALL or CHECKPOINT, which runs a procedure",
    "PREPARE": "a PREPARE",
    "EXECUTE": "an EXECUTE",
    "MULTI": "a statement DuckDB runs as several (such as PIVOT on its own)",
}


# -- the gate ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Vetted:
    """A statement that passed the gate: its text without trailing `;`, and its parameters."""

    text: str
    body: str
    parameters: tuple[str, ...]
    # The datasets it reads (names as in the catalog): what an export's side instance attaches.
    datasets: frozenset[str] = frozenset()


@dataclass
class _Catalog:
    database: str
    datasets: set[str]
    elsewhere: set[str]


def _catalog(cur: duckdb.DuckDBPyConnection) -> _Catalog:
    rows = cur.execute(
        """
        SELECT lower(table_name), database_name = current_database() AND schema_name = 'main'
            AND NOT temporary AND NOT starts_with(table_name, $staging)
        FROM duckdb_tables()
        -- Datasets' own files (storage.py) are reached through views in main only.
        WHERE NOT starts_with(database_name, $files)
        UNION ALL
        SELECT lower(view_name), database_name = current_database() AND schema_name = 'main'
            AND NOT temporary AND NOT internal
        FROM duckdb_views()
        """,
        # An upload being loaded is not a dataset yet, whoever guesses its table's name.
        {"staging": STAGING_PREFIX, "files": storage.ALIAS_PREFIX},
    ).fetchall()
    database = cur.execute("SELECT lower(current_database())").fetchone()
    return _Catalog(
        database=str(database[0]) if database else "",
        datasets={name for name, in_main in rows if in_main},
        elsewhere={name for name, in_main in rows if not in_main},
    )


class _CatalogCache:
    """The datasets' names, reused between queries.

    Only a name found here is let through without asking DuckDB; a name that is missing (or
    also exists outside `main`) makes the gate read the catalog afresh, inside the query's own
    transaction, so a dataset uploaded a moment ago is found and the answer is never stale in
    the direction that would let something through.
    """

    def __init__(self) -> None:
        self._value: _Catalog | None = None
        self._lock = threading.Lock()

    def get(self, cur: duckdb.DuckDBPyConnection, *, fresh: bool = False) -> _Catalog:
        with self._lock:
            value = self._value
        if value is None or fresh:
            value = _catalog(cur)
            with self._lock:
                self._value = value
        return value


class _VettedCache:
    """Texts that passed the gate, so a query run again (a dashboard, a saved query, a page of
    results) skips the parse, which costs about as much as a point lookup itself.

    Only passes are kept, and a pass cannot turn dangerous later: it names only datasets (plain
    identifiers, never file-like names), its own CTEs and allowed functions; if a named dataset
    goes away, DuckDB simply reports the missing table.

    A text that differs from a pass only in its small integer literals (`WHERE id = 42` after
    `WHERE id = 7`: what a client that writes values into the text sends) gets the same
    verdict without a parse: see `_shape`.
    """

    SIZE = 512

    def __init__(self) -> None:
        self._items: OrderedDict[str, Vetted] = OrderedDict()
        self._shapes: OrderedDict[tuple[bytes, ...], Vetted] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sql: str) -> Vetted | None:
        with self._lock:
            vetted = self._items.get(sql)
            if vetted is not None:
                self._items.move_to_end(sql)
                return vetted
        shape = _shape(sql)
        if shape is None:
            return None
        with self._lock:
            like = self._shapes.get(shape)
            if like is None:
                return None
            self._shapes.move_to_end(shape)
        return Vetted(
            text=sql,
            body=statement_body(sql),
            parameters=like.parameters,
            datasets=like.datasets,
        )

    def put(self, vetted: Vetted) -> None:
        shape = _shape(vetted.text)
        with self._lock:
            self._items[vetted.text] = vetted
            self._items.move_to_end(vetted.text)
            while len(self._items) > self.SIZE:
                self._items.popitem(last=False)
            if shape is not None:
                self._shapes[shape] = vetted
                self._shapes.move_to_end(shape)
                while len(self._shapes) > self.SIZE:
                    self._shapes.popitem(last=False)


# An integer literal that DuckDB's scanner reads as a 32-bit integer constant, whatever its
# digits: at most nine digits, no sign, point, exponent or underscore. Longer ones may become
# another kind of constant (too big for 32 bits), which the grammar can treat differently.
_SMALL_INTEGER = re.compile(rb"[0-9]{1,9}")
_NUMERIC = duckdb.token_type.numeric_const
# What DuckDB's scanner skips between tokens.
_SPACE = b" \t\n\r\f\v"
# Longer texts are not cut (a parse each time, on a thread): the shape is taken on the event
# loop, at about 2 us a token.
_SHAPE_MAX_CHARS = 2048


def _shape(sql: str) -> tuple[bytes, ...] | None:
    """The text cut at its small integer literals: the pieces between them, or None when it has
    none (or DuckDB's tokenizer does not read it).

    Two texts of the same shape differ only in the digits of such literals. The tokenizer is
    the parser's own scanner, so both scan to the same tokens, of the same kinds, in the same
    places; the grammar sees the same statement with other numbers in it, and the gate, which
    looks at names (tables, functions, CTEs, parameters) and never at a number's value, gives
    both the same verdict. Identifiers (`t1`), strings, comments, parameters and other numbers
    (`1.5`, `1e5`, `10000000000`) stay in the pieces as they are.
    """
    if len(sql) > _SHAPE_MAX_CHARS:
        return None
    try:
        text = sql.encode()  # the tokenizer's positions are of UTF-8 bytes
        tokens = duckdb.tokenize(sql)
    except (UnicodeError, duckdb.Error, RuntimeError, ValueError):
        return None
    pieces: list[bytes] = []
    last = 0
    for i, (start, kind) in enumerate(tokens):
        if kind != _NUMERIC:
            continue
        end = tokens[i + 1][0] if i + 1 < len(tokens) else len(text)
        literal = text[start:end].rstrip(_SPACE)
        if not _SMALL_INTEGER.fullmatch(literal):
            continue
        pieces.append(text[last:start])
        last = start + len(literal)
    if not pieces:
        return None
    pieces.append(text[last:])
    return tuple(pieces)


class GateMemory:
    """What the gate remembers between the queries of one backend: the datasets' names and
    the texts that passed. Held by the worker pools' owner (`Workers.gate`)."""

    def __init__(self) -> None:
        self.catalog = _CatalogCache()
        self.vetted = _VettedCache()


def vet(cur: duckdb.DuckDBPyConnection, sql: str, memory: GateMemory) -> Vetted:
    """Let through one read-only SELECT over datasets, or raise QueryRefused / SqlError."""
    cached = memory.vetted.get(sql)
    if cached is not None:
        return cached
    try:
        vetted = _vet_uncached(cur, sql, memory)
    except RecursionError:
        # Deeply nested SQL (hundreds of nested lists or subqueries) goes beyond what the tree
        # walk and the JSON reader handle; no real query nests that deep.
        raise QueryRefused(
            "The query is nested too deeply to be checked; flatten nested lists, expressions or "
            "subqueries.",
            code="query_too_complex",
        ) from None
    memory.vetted.put(vetted)
    return vetted


def _vet_uncached(cur: duckdb.DuckDBPyConnection, sql: str, memory: GateMemory) -> Vetted:
    if not sql.strip():
        raise QueryRefused("Write a SELECT query: the text is empty.", code="empty_query")
    # json_serialize_sql parses once and serialises only SELECT statements: one answer covers
    # "is it exactly one SELECT" on the common path; refusals are explained below.
    row = cur.execute("SELECT json_serialize_sql($sql)", {"sql": sql}).fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    statements = None if tree.get("error") else tree.get("statements")
    if not statements or len(statements) != 1:
        _explain_refusal(cur, sql, tree)
    gate = _Gate(sql, cur, memory.catalog)
    gate.walk(statements[0].get("node"), frozenset())  # type: ignore[index]
    return Vetted(
        text=sql,
        body=statement_body(sql),
        parameters=tuple(gate.parameters),
        datasets=frozenset(gate.datasets),
    )


def _explain_refusal(cur: duckdb.DuckDBPyConnection, sql: str, tree: dict[str, Any]) -> None:
    """Raise the error that says why `sql` is not exactly one SELECT."""
    try:
        # On the sandboxed cursor, never the module's default connection: DuckDB 1.4's parser
        # expands `IMPORT DATABASE 'dir'` by reading dir/schema.sql and dir/load.sql, and its
        # syntax errors quote what it read.
        statements = cur.extract_statements(sql)
        kinds = [statement.type.name for statement in statements]
    except duckdb.Error as exc:
        raise sql_error(exc, sql) from None
    except ValueError:
        # A statement type the Python client has no name for (UPDATE EXTENSIONS, say).
        raise QueryRefused(
            "Only SELECT queries can run here, and this is another kind of statement.",
            code="statement_not_allowed",
        ) from None
    if not kinds:
        raise QueryRefused(
            "Write a SELECT query: the text holds only comments or semicolons.",
            code="empty_query",
        )
    if len(kinds) > 1:
        raise QueryRefused(
            f"Send one statement at a time: the text holds {len(kinds)} statements.",
            code="multiple_statements",
        )
    if kinds[0] != "SELECT":
        what = _STATEMENT_WORDS.get(kinds[0], f"a {kinds[0]} statement")
        raise QueryRefused(
            f"Only SELECT queries can run here, and this is {what}.",
            code="statement_not_allowed",
            detail={"statement_type": kinds[0]},
        )
    message = tree.get("error_message") or "the query could not be read"
    position = tree.get("position")
    detail: dict[str, Any] = {"message": message}
    if position is not None and str(position).isdigit():
        detail.update(position_from_bytes(sql, int(position)) or {})
    raise SqlError(f"The query has an error: {short(message)}.", detail=detail)


def _is_table_ref(node: dict[str, Any]) -> bool:
    # Expressions carry "class"; query nodes carry "modifiers"; table references neither, but
    # always "sample".
    return (
        "class" not in node
        and "modifiers" not in node
        and "sample" in node
        and isinstance(node.get("type"), str)
    )


# Schemas a function may be qualified with: DuckDB's own built-in ones.
_SCHEMAS = frozenset({"main", "pg_catalog"})

# Characters that make a name look like a file path to DuckDB's replacement scans.
_PATHLIKE = re.compile(r"[./\\:]")


class _Gate:
    """One walk over a statement's syntax tree, refusing what user SQL may not touch."""

    def __init__(self, sql: str, cur: duckdb.DuckDBPyConnection, catalogs: _CatalogCache) -> None:
        self.sql = sql
        self.cur = cur
        self.catalogs = catalogs
        self.catalog = catalogs.get(cur)
        self.fresh = False
        self.parameters: dict[str, None] = {}
        self.datasets: set[str] = set()

    def is_dataset(self, name: str) -> bool:
        if name in self.catalog.datasets and name not in self.catalog.elsewhere:
            return True
        if not self.fresh:
            self.catalog, self.fresh = self.catalogs.get(self.cur, fresh=True), True
        return name in self.catalog.datasets

    def refuse(self, message: str, code: str, node: dict[str, Any] | None = None) -> QueryRefused:
        location = node.get("query_location") if node else None
        if not isinstance(location, int) or location >= 2**63:
            return refused(message, code, self.sql)
        return refused(message, code, self.sql, location, node.get("query_location_length") or 0)

    def walk(self, node: Any, ctes: frozenset[str]) -> None:
        if isinstance(node, list):
            for item in node:
                self.walk(item, ctes)
            return
        if not isinstance(node, dict):
            return
        cte_map = node.get("cte_map")
        if isinstance(cte_map, dict) and cte_map.get("map"):
            # A CTE's body sees the CTEs before it and itself (WITH RECURSIVE), the query all.
            for entry in cte_map["map"]:
                name = str(entry.get("key", "")).lower()
                self._check_cte_name(name)
                ctes = ctes | {name}
                self.walk(entry.get("value"), ctes)
        if _is_table_ref(node):
            self._table_ref(node, ctes)
        elif node.get("class") in ("FUNCTION", "WINDOW"):
            self._function(node)
        elif node.get("class") == "PARAMETER":
            identifier = str(node.get("identifier", ""))
            if not identifier or identifier.isdigit():
                raise self.refuse(
                    "Use named parameters such as $name (with `params` as an object), not ? or $1.",
                    "positional_parameter",
                    node,
                )
            self.parameters[identifier] = None
        for key, value in node.items():
            if key != "cte_map" and isinstance(value, (dict, list)):
                self.walk(value, ctes)

    def _check_cte_name(self, name: str) -> None:
        # If a reference meant for a CTE ever resolved outside it, it must land on a dataset or
        # on nothing: never on a system view or, through a replacement scan, on a file.
        if name in self.catalog.elsewhere or _PATHLIKE.search(name):
            raise self.refuse(
                f'Rename the CTE "{name}": the name belongs to a system table or looks like a '
                "file name.",
                "table_not_allowed",
            )

    def _function(self, node: dict[str, Any]) -> None:
        name = str(node.get("function_name", "")).lower()
        qualified = node.get("schema") or node.get("catalog")
        why = function_list().refusal(name, as_table=False)
        if qualified and why is None and str(node.get("schema", "")).lower() not in _SCHEMAS:
            why = "functions are called by their name alone"
        if why is None:
            return
        raise self.refuse(
            f"The function {name}() is not available in queries: {why}.",
            "function_not_allowed",
            node,
        )

    def _table_ref(self, node: dict[str, Any], ctes: frozenset[str]) -> None:
        kind = node["type"]
        if kind not in KNOWN_TABLE_REFS:
            raise self.refuse(
                f"This kind of table reference ({kind}) is not available in queries.",
                "table_not_allowed",
                node,
            )
        if kind == "BASE_TABLE":
            self._base_table(node, ctes)
        elif kind == "TABLE_FUNCTION":
            self._table_function(node)
        elif (
            kind == "SHOW_REF"
            and node.get("query") is None
            and str(node.get("table_name", "")).lower() not in ALLOWED_SHOW
        ):
            raise self.refuse(
                "Only SHOW TABLES is available; DESCRIBE a dataset to see its columns.",
                "statement_not_allowed",
                node,
            )

    def _base_table(self, node: dict[str, Any], ctes: frozenset[str]) -> None:
        name = str(node.get("table_name", ""))
        schema = str(node.get("schema_name", "")).lower()
        catalog_name = str(node.get("catalog_name", "")).lower()
        lowered = name.lower()
        database = self.catalog.database
        if not schema and not catalog_name and lowered in ctes:
            return
        in_main = catalog_name in ("", database) and schema in ("", "main")
        if not catalog_name and schema == database:
            in_main = True  # database.table
        if in_main and self.is_dataset(lowered):
            self.datasets.add(lowered)
            return
        shown = ".".join(part for part in (catalog_name, schema, name) if part)
        if _PATHLIKE.search(name):
            message = (
                f'Queries can read datasets only, not files: "{name}" is not a dataset. '
                "Upload the file as a dataset first."
            )
        elif not in_main:
            message = (
                f'Queries can read datasets only, and "{shown}" is not one '
                "(the datasets are listed on the Datasets page and at GET /api/datasets)."
            )
        else:
            message = f'There is no dataset named "{name}".'
        raise self.refuse(message, "table_not_allowed", node)

    def _table_function(self, node: dict[str, Any]) -> None:
        function = node.get("function") or {}
        name = str(function.get("function_name", "")).lower()
        why = function_list().refusal(name, as_table=True)
        if why is None and (function.get("schema") or function.get("catalog")):
            why = "table functions are called by their name alone"
        if why is None:
            return
        if name.startswith(("read_", "parquet_", "sniff_")) or name == "glob":
            reason = "queries can read datasets only, not files; upload the file as a dataset"
        elif name in {"query", "query_table"}:
            reason = "it would run SQL text that was never checked"
        else:
            reason = f"{why}; the ones available are " + ", ".join(allowed_table_functions())
        raise self.refuse(
            f"The table function {name}() is not available in queries: {reason}.",
            "function_not_allowed",
            node,
        )


def bind_parameters(vetted: Vetted, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The values of the statement's parameters; missing ones are an error, extra ones ignored."""
    given = dict(params or {})
    missing = [name for name in vetted.parameters if name not in given]
    if missing:
        names = ", ".join(f"${name}" for name in missing)
        raise BadRequest(
            f"The query uses {names} but no value was given: add "
            + ("it" if len(missing) == 1 else "them")
            + " to `params`.",
            code="missing_parameter",
            detail={"missing": missing},
        )
    return {name: given[name] for name in vetted.parameters}


def prepare(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    memory: GateMemory,
    *,
    head: str = "SELECT *",
    tail: str = "",
) -> tuple[Vetted, str]:
    """The user's SELECT wrapped as a subquery, through the gate, and the text to run.

    Only the wrapped text is vetted on the common path (one parse); when it fails, the user's
    own text is vetted to explain why, with positions in what the user wrote.
    """
    body, more = split_statement(sql)
    if more or not body.strip():
        vet(cur, sql, memory)  # raises: several statements, or none
    text = wrap(body, head=head, tail=tail)
    try:
        wrapped = vet(cur, text, memory)
    except AppError:
        vet(cur, sql, memory)
        raise unwrappable() from None
    return (
        Vetted(text=sql, body=body, parameters=wrapped.parameters, datasets=wrapped.datasets),
        text,
    )


def prepare_cached(
    sql: str, memory: GateMemory, *, head: str = "SELECT *", tail: str = ""
) -> tuple[Vetted, str] | None:
    """What `prepare` answers when the gate has already passed the same wrapped text, without
    DuckDB (so on the event loop); None when `prepare` has to run."""
    body, more = split_statement(sql)
    if more or not body.strip():
        return None
    text = wrap(body, head=head, tail=tail)
    wrapped = memory.vetted.get(text)
    if wrapped is None:
        return None
    return (
        Vetted(text=sql, body=body, parameters=wrapped.parameters, datasets=wrapped.datasets),
        text,
    )


def vet_wrapped(cur: duckdb.DuckDBPyConnection, text: str, memory: GateMemory) -> None:
    """The gate again, on exactly the text that will run."""
    try:
        vet(cur, text, memory)
    except AppError as exc:
        log.warning("a wrapped query failed the gate (%s): %s", exc.code, exc.message)
        raise unwrappable() from None
