"""User SQL: the gate every statement passes, and the runner that executes what it lets through.

User SQL is untrusted code. The database is already sandboxed (store/database.py: external access
off, file access limited to the data dir, configuration locked), but SQL can still read files
inside the data dir (staging uploads, exports, the database itself) and the internal tables that
hold accounts and token hashes. So, whatever the user writes:

1. it must be exactly one statement, of type SELECT (`duckdb.extract_statements`);
2. its syntax tree (`json_serialize_sql`, which serialises only SELECTs) may name only tables and
   views of schema `main` (the datasets) and its own CTEs, only allowlisted table functions, and
   none of the scalar functions that touch state (`nextval`, `current_setting`…);
3. it runs on a cursor of its own inside `BEGIN TRANSACTION READ ONLY`, always rolled back, with
   a time limit enforced by `cursor.interrupt()` (the locked configuration forbids `SET`).

Statement types lie (`EXPLAIN ANALYZE INSERT` is an EXPLAIN that inserts), hence the layers: any
one of them alone would have let something through in the measurements behind DESIGN.md.
Whenever the runner wraps the user's SELECT (to limit, chart or export it), the wrapped text is
put through the gate again, so a mistake in cutting the user's text can only fail, never widen.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import duckdb

from myapp.settings import Settings

from ..errors import AppError, BadRequest, Conflict, NotFound
from . import storage
from .database import Database
from .datasets import STAGING_PREFIX
from .exports import (
    ExportFile,
    ExportFormat,
    Interruptible,
    Watch,
    copy_to,
    export_files,
    pinned_files,
    stream_export,
)
from .sql import quote_ident
from .values import describe_columns, encode_rows

log = logging.getLogger("myapp.backend.query")

# Table functions user SQL may call: they compute rows from their arguments and read nothing.
# Everything else is refused: the read_* family and glob read files, query/query_table run SQL
# text the gate never saw, checkpoint/enable_logging and friends change state, and most
# duckdb_* functions describe internal tables and settings.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "repeat",
        "json_each",
        "json_tree",
        "duckdb_functions",
        "duckdb_keywords",
        "duckdb_types",
        "pg_timezone_names",
        "icu_calendar_names",
    }
)

# Scalar functions refused anywhere in a query: sequences write even in a SELECT, settings and
# variables expose the server's configuration, write_log writes, and json_execute_serialized_sql
# runs a statement the gate never saw.
REFUSED_FUNCTIONS = frozenset(
    {
        "nextval",
        "setval",
        "currval",
        "lastval",
        "current_setting",
        "getvariable",
        "write_log",
        "json_execute_serialized_sql",
    }
)

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

# The alias of the user's SELECT where the runner wraps it as a subquery (see wrap()).
_WRAP_ALIAS = "myapp_result"

# Finished runs stay visible to GET /api/query/{id} for a while, so a client polling progress
# learns how its query ended; bounded so the registry cannot grow without end.
FINISHED_RUN_TTL_S = 300.0
MAX_FINISHED_RUNS = 1000
# How often the watchdog checks deadlines; a timed-out query stops within this plus DuckDB's own
# reaction time (measured: well under a second).
WATCHDOG_INTERVAL_S = 0.1

# Chart queries limit themselves to the points asked for; fetching stops here regardless.
MAX_CHART_FETCH = 100_001

NUMERIC_TYPES = re.compile(
    r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|UHUGEINT|"
    r"FLOAT|DOUBLE|DECIMAL(\(\d+,\s*\d+\))?)$"
)
TEMPORAL_TYPES = re.compile(r"^(DATE|TIMESTAMP( WITH TIME ZONE)?|TIMESTAMP_(S|MS|NS)|TIMESTAMPTZ)$")


# -- errors --------------------------------------------------------------------------------------
class QueryRefused(BadRequest):
    """The gate refused the statement; nothing ran."""

    code = "query_refused"


class SqlError(BadRequest):
    code = "sql_error"


def _refused(message: str, code: str, text: str, location: int | None = None, length: int = 0):
    detail = _position_from_bytes(text, location, length) if location is not None else None
    return QueryRefused(message, code=code, detail=detail)


# -- locating errors in the user's text ----------------------------------------------------------
_LINE = re.compile(r"^LINE (\d+): (.*)\n( *)(\^+)", re.MULTILINE)


def _position(text: str, offset: int, length: int = 1) -> dict[str, int]:
    offset = max(0, min(offset, len(text)))
    before = text[:offset]
    line = before.count("\n") + 1
    column = offset - (before.rfind("\n") + 1) + 1
    return {"line": line, "column": column, "position": offset, "length": max(length, 1)}


def _position_from_bytes(text: str, location: int, length: int = 0) -> dict[str, int] | None:
    """DuckDB's syntax tree counts UTF-8 bytes; the editor counts characters."""
    raw = text.encode()
    if not 0 <= location <= len(raw):
        return None
    start = len(raw[:location].decode(errors="ignore"))
    end = len(raw[: location + length].decode(errors="ignore"))
    return _position(text, start, end - start)


def locate(message: str, text: str) -> dict[str, int] | None:
    """The position DuckDB's `LINE n:` and caret point at, as offsets into `text`."""
    match = _LINE.search(message)
    if not match:
        return None
    line_no = int(match[1])
    shown = match[2]
    caret = len(match[3]) - len(f"LINE {match[1]}: ")
    lines = text.split("\n")
    if not 1 <= line_no <= len(lines) or caret < 0:
        return None
    source = lines[line_no - 1]
    start = 0
    if shown.startswith("..."):
        # DuckDB shows a window of long lines; find where the window starts in the source.
        core = shown[3:]
        if core.endswith("..."):
            core = core[:-3]
        found = source.find(core[: max(1, min(len(core), 40))])
        if found < 0:
            return None
        start = found - 3
    column = start + caret
    if column > len(source):
        return None
    offset = sum(len(line) + 1 for line in lines[: line_no - 1]) + column
    return _position(text, offset, len(match[4]))


def _duckdb_text(exc: BaseException) -> str:
    """DuckDB's message without the `LINE n:` excerpt (the position is given separately)."""
    text = str(exc)
    cut = text.find("\n\nLINE ")
    return (text[:cut] if cut >= 0 else text).strip()


def _short(message: str) -> str:
    """`Binder Error: x\nCandidate bindings: …` → `x`, for a one-sentence API message."""
    first = message.split("\n", 1)[0]
    if ": " in first and first.split(": ", 1)[0].endswith("Error"):
        first = first.split(": ", 1)[1]
    first = first.strip().rstrip(".!")
    return first


# -- the user's text -----------------------------------------------------------------------------
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


CATALOG = _CatalogCache()


class _VettedCache:
    """Texts that passed the gate, so a query run again (a dashboard, a saved query, a page of
    results) skips the parse, which costs about as much as a point lookup itself.

    Only passes are kept, and a pass cannot turn dangerous later: it names only datasets (plain
    identifiers, never file-like names), its own CTEs and allowed functions; if a named dataset
    goes away, DuckDB simply reports the missing table.
    """

    SIZE = 512

    def __init__(self) -> None:
        self._items: OrderedDict[str, Vetted] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sql: str) -> Vetted | None:
        with self._lock:
            vetted = self._items.get(sql)
            if vetted is not None:
                self._items.move_to_end(sql)
            return vetted

    def put(self, vetted: Vetted) -> None:
        with self._lock:
            self._items[vetted.text] = vetted
            self._items.move_to_end(vetted.text)
            while len(self._items) > self.SIZE:
                self._items.popitem(last=False)


VETTED = _VettedCache()


def vet(cur: duckdb.DuckDBPyConnection, sql: str) -> Vetted:
    """Let through one read-only SELECT over datasets, or raise QueryRefused / SqlError."""
    cached = VETTED.get(sql)
    if cached is not None:
        return cached
    vetted = _vet_uncached(cur, sql)
    VETTED.put(vetted)
    return vetted


def _vet_uncached(cur: duckdb.DuckDBPyConnection, sql: str) -> Vetted:
    if not sql.strip():
        raise QueryRefused("Write a SELECT query: the text is empty.", code="empty_query")
    # json_serialize_sql parses once and serialises only SELECT statements: one answer covers
    # "is it exactly one SELECT" on the common path; refusals are explained below.
    row = cur.execute("SELECT json_serialize_sql($sql)", {"sql": sql}).fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    statements = None if tree.get("error") else tree.get("statements")
    if not statements or len(statements) != 1:
        _explain_refusal(sql, tree)
    gate = _Gate(sql, cur)
    gate.walk(statements[0].get("node"), frozenset())  # type: ignore[index]
    return Vetted(
        text=sql,
        body=statement_body(sql),
        parameters=tuple(gate.parameters),
        datasets=frozenset(gate.datasets),
    )


def _explain_refusal(sql: str, tree: dict[str, Any]) -> None:
    """Raise the error that says why `sql` is not exactly one SELECT."""
    try:
        statements = duckdb.extract_statements(sql)
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
        detail.update(_position_from_bytes(sql, int(position)) or {})
    raise SqlError(f"The query has an error: {_short(message)}.", detail=detail)


def _is_table_ref(node: dict[str, Any]) -> bool:
    # Expressions carry "class"; query nodes carry "modifiers"; table references neither, but
    # always "sample".
    return (
        "class" not in node
        and "modifiers" not in node
        and "sample" in node
        and isinstance(node.get("type"), str)
    )


# Characters that make a name look like a file path to DuckDB's replacement scans.
_PATHLIKE = re.compile(r"[./\\:]")


class _Gate:
    """One walk over a statement's syntax tree, refusing what user SQL may not touch."""

    def __init__(self, sql: str, cur: duckdb.DuckDBPyConnection) -> None:
        self.sql = sql
        self.cur = cur
        self.catalog = CATALOG.get(cur)
        self.fresh = False
        self.parameters: dict[str, None] = {}
        self.datasets: set[str] = set()

    def is_dataset(self, name: str) -> bool:
        if name in self.catalog.datasets and name not in self.catalog.elsewhere:
            return True
        if not self.fresh:
            self.catalog, self.fresh = CATALOG.get(self.cur, fresh=True), True
        return name in self.catalog.datasets

    def refuse(self, message: str, code: str, node: dict[str, Any] | None = None) -> QueryRefused:
        location = node.get("query_location") if node else None
        if not isinstance(location, int) or location >= 2**63:
            return _refused(message, code, self.sql)
        return _refused(message, code, self.sql, location, node.get("query_location_length") or 0)

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
        elif node.get("class") == "FUNCTION":
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
        if name not in REFUSED_FUNCTIONS:
            return
        why = (
            "sequences change the database"
            if name in {"nextval", "setval", "currval", "lastval"}
            else "it reads or changes the server's state"
        )
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
        if name in ALLOWED_TABLE_FUNCTIONS and not (
            function.get("schema") or function.get("catalog")
        ):
            return
        if name.startswith(("read_", "parquet_", "sniff_")) or name == "glob":
            reason = "queries can read datasets only, not files; upload the file as a dataset"
        elif name in {"query", "query_table"}:
            reason = "it would run SQL text that was never checked"
        else:
            reason = "the ones available are " + ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS))
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


# -- translating DuckDB's errors -----------------------------------------------------------------
def sql_error(exc: BaseException, text: str, *, body: str | None = None) -> AppError:
    """A DuckDB error in the user's SQL as a 4xx with DuckDB's message and the position.

    `text` is what ran; when it wraps the user's SELECT, `body` is that SELECT, and positions
    are given in it (an error outside it, in our wrapping, has no position).
    """
    full = str(exc)
    message = _duckdb_text(exc)
    position = locate(full, text)
    if body is not None and position is not None:
        start = text.find("(\n" + body + "\n)")
        offset = position["position"] - (start + 2)
        if start < 0 or not 0 <= offset <= len(body):
            position = None
        else:
            position = _position(body, offset, position["length"])
    detail: dict[str, Any] = {"message": message}
    where = ""
    if position:
        detail.update(position)
        where = f" (line {position['line']}, column {position['column']})"
    if isinstance(exc, duckdb.OutOfMemoryException):
        return AppError(
            "The query needs more memory or temporary disk space than this server allows; "
            "filter or aggregate the data further, or export the result instead.",
            code="query_too_large",
            status_code=422,
            detail=detail,
        )
    if isinstance(exc, duckdb.TransactionException) and "read-only" in full:
        return QueryRefused(
            "Only read-only queries can run here: this one tried to change the database.",
            code="statement_not_allowed",
            detail=detail,
        )
    if isinstance(exc, (duckdb.PermissionException, duckdb.IOException)):
        return QueryRefused(
            "Queries can read datasets only, not files or other databases.",
            code="table_not_allowed",
            detail=detail,
        )
    if isinstance(exc, (duckdb.InternalException, duckdb.FatalException)):
        log.error("DuckDB internal error on user SQL: %s", full)
        return AppError(
            "The database failed on this query (an internal error, logged); try again, and "
            "report it if it keeps happening.",
            code="database_error",
            status_code=500,
        )
    return SqlError(f"The query has an error: {_short(message)}{where}.", detail=detail)


# -- running queries: registry, watchdog, time limits ---------------------------------------------
@dataclass(eq=False)
class Run:
    id: str
    kind: str
    owner: str | None
    cursor: duckdb.DuckDBPyConnection | None
    tracks_progress: bool
    deadline: float
    limit_ms: int
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    state: str = "running"
    stop_reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def active(self) -> bool:
        return self.ended is None

    def stop(self, reason: str) -> bool:
        """Ask the query to stop; True if it was still running."""
        with self.lock:
            if not self.active or self.cursor is None:
                return False
            if self.stop_reason is None:
                self.stop_reason = reason
            self.cursor.interrupt()
            return True

    def use(self, cursor: duckdb.DuckDBPyConnection) -> None:
        """Interrupts and progress go to `cursor` from now on (an export's side instance)."""
        with self.lock:
            if self.active:
                self.cursor = cursor
                self.tracks_progress = True
            if self.stop_reason:
                cursor.interrupt()

    def nudge(self) -> None:
        """Interrupt again: an interrupt that lands between two statements is not remembered."""
        with self.lock:
            if self.active and self.stop_reason and self.cursor is not None:
                self.cursor.interrupt()

    def progress(self) -> float | None:
        with self.lock:
            if not self.active or not self.tracks_progress or self.cursor is None:
                return 100.0 if self.state == "finished" else None
            value = self.cursor.query_progress()
        return round(min(value, 100.0), 1) if value >= 0 else None

    def end(self, state: str) -> None:
        with self.lock:
            self.ended = time.monotonic()
            self.state = state
            self.cursor = None

    def elapsed_ms(self) -> float:
        return round(((self.ended or time.monotonic()) - self.started) * 1000, 1)

    def raise_if_stopped(self) -> None:
        if self.stop_reason:
            raise self.stopped_error()

    def stopped_error(self) -> AppError:
        if self.stop_reason == "timeout":
            return AppError(
                f"The query ran longer than its time limit of {self.limit_ms / 1000:g} s and was "
                "stopped; filter the data further, or aggregate before selecting.",
                code="query_timeout",
                status_code=400,
                detail={"timeout_ms": self.limit_ms},
            )
        return AppError(
            "The query was cancelled.",
            code="query_cancelled",
            status_code=409,
        )

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "progress": self.progress(),
            "elapsed_ms": self.elapsed_ms(),
            "kind": self.kind,
        }


class Registry:
    """The runs of this process: for progress, cancel and the time limit watchdog."""

    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
        self._active: dict[str, Run] = {}
        # Ended runs in the order they ended, so forgetting old ones never scans them all.
        self._ended: deque[Run] = deque()
        self._lock = threading.Lock()
        self._watchdog: threading.Thread | None = None

    def start(
        self,
        run_id: str,
        *,
        kind: str,
        owner: str | None,
        cursor: duckdb.DuckDBPyConnection,
        tracks_progress: bool,
        limit_ms: int,
    ) -> Run:
        run = Run(
            id=run_id,
            kind=kind,
            owner=owner,
            cursor=cursor,
            tracks_progress=tracks_progress,
            deadline=time.monotonic() + limit_ms / 1000,
            limit_ms=limit_ms,
        )
        with self._lock:
            if run_id in self._active:
                raise Conflict(
                    f"A query with id {run_id} is already running; use a new id for each run.",
                    code="query_id_in_use",
                )
            self._forget_old()
            self._runs[run_id] = run
            self._active[run_id] = run
            if self._watchdog is None or not self._watchdog.is_alive():
                self._watchdog = threading.Thread(
                    target=self._watch, name="myapp-query-watchdog", daemon=True
                )
                self._watchdog.start()
        return run

    def finish(self, run: Run, state: str) -> None:
        run.end(state)
        with self._lock:
            if self._active.get(run.id) is run:
                del self._active[run.id]
            self._ended.append(run)

    def get(self, run_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def active(self) -> list[Run]:
        with self._lock:
            return list(self._active.values())

    def _forget_old(self) -> None:
        now = time.monotonic()
        while self._ended and (
            len(self._ended) > MAX_FINISHED_RUNS
            or now - (self._ended[0].ended or now) > FINISHED_RUN_TTL_S
        ):
            run = self._ended.popleft()
            if self._runs.get(run.id) is run:
                del self._runs[run.id]

    def _watch(self) -> None:
        while True:
            time.sleep(WATCHDOG_INTERVAL_S)
            now = time.monotonic()
            for run in self.active():
                try:
                    if run.stop_reason:
                        run.nudge()
                    elif now >= run.deadline:
                        run.stop("timeout")
                except Exception:  # a watchdog that dies would leave runaways running
                    log.exception("query watchdog failed on run %s", run.id)


REGISTRY = Registry()


def effective_timeout_ms(settings: Settings, requested: int | None) -> int:
    limit = settings.query_timeout_ms
    return min(requested, limit) if requested else limit


def new_run_id(given: Any = None) -> str:
    return str(given) if given else str(uuid.uuid4())


@contextmanager
def guarded(
    database: Database,
    settings: Settings,
    *,
    run_id: str,
    kind: str,
    owner: str | None,
    timeout_ms: int | None,
) -> Iterator[tuple[duckdb.DuckDBPyConnection, Run]]:
    """A cursor inside a read-only transaction, registered for progress, cancel and time limit.

    Everything done on it is rolled back. DuckDB errors raised inside become 4xx errors here
    only for interrupts; callers translate the rest with the text they ran.
    """
    limit_ms = effective_timeout_ms(settings, timeout_ms)
    with database.query_cursor() as (cur, tracks_progress):
        _begin_read_only(cur)
        state = "failed"
        try:
            run = REGISTRY.start(
                run_id,
                kind=kind,
                owner=owner,
                cursor=cur,
                tracks_progress=tracks_progress,
                limit_ms=limit_ms,
            )
        except BaseException:
            _rollback(cur)
            raise
        try:
            yield cur, run
            run.raise_if_stopped()
            state = "finished"
        except duckdb.InterruptException:
            state = "timed_out" if run.stop_reason == "timeout" else "cancelled"
            raise run.stopped_error() from None
        except AppError as exc:
            if exc.code in ("query_timeout", "query_cancelled"):
                state = "timed_out" if exc.code == "query_timeout" else "cancelled"
            raise
        finally:
            REGISTRY.finish(run, state)
            _rollback(cur)


def _begin_read_only(cur: duckdb.DuckDBPyConnection) -> None:
    try:
        cur.execute("BEGIN TRANSACTION READ ONLY")
    except duckdb.TransactionException:
        # A borrowed cursor left in a transaction by a failure: end it and start afresh.
        _rollback(cur)
        cur.execute("BEGIN TRANSACTION READ ONLY")


def _rollback(cur: duckdb.DuckDBPyConnection) -> None:
    with suppress(duckdb.Error):  # nothing to roll back after some failures
        cur.execute("ROLLBACK")


def _execute(
    cur: duckdb.DuckDBPyConnection, run: Run, text: str, params: dict[str, Any], body: str
) -> duckdb.DuckDBPyConnection:
    """Execute vetted `text` (a wrapping of the user's SELECT); DuckDB errors become 4xx."""
    run.raise_if_stopped()
    try:
        return cur.execute(text, params)
    except duckdb.InterruptException:
        raise
    except duckdb.Error as exc:
        if run.stop_reason:
            raise run.stopped_error() from None
        raise sql_error(exc, text, body=body) from None


def _fetch(
    cur: duckdb.DuckDBPyConnection, run: Run, count: int, text: str, body: str
) -> list[tuple]:
    try:
        return cur.fetchmany(count) if count else []
    except duckdb.InterruptException:
        raise
    except duckdb.Error as exc:
        if run.stop_reason:
            raise run.stopped_error() from None
        raise sql_error(exc, text, body=body) from None


def prepare(
    cur: duckdb.DuckDBPyConnection, sql: str, *, head: str = "SELECT *", tail: str = ""
) -> tuple[Vetted, str]:
    """The user's SELECT wrapped as a subquery, through the gate, and the text to run.

    Only the wrapped text is vetted on the common path (one parse); when it fails, the user's
    own text is vetted to explain why, with positions in what the user wrote.
    """
    body, more = split_statement(sql)
    if more or not body.strip():
        vet(cur, sql)  # raises: several statements, or none
    text = wrap(body, head=head, tail=tail)
    try:
        wrapped = vet(cur, text)
    except AppError:
        vet(cur, sql)
        raise _unwrappable() from None
    return (
        Vetted(text=sql, body=body, parameters=wrapped.parameters, datasets=wrapped.datasets),
        text,
    )


def _vet_wrapped(cur: duckdb.DuckDBPyConnection, text: str) -> None:
    """The gate again, on exactly the text that will run."""
    try:
        vet(cur, text)
    except AppError as exc:
        log.warning("a wrapped query failed the gate (%s): %s", exc.code, exc.message)
        raise _unwrappable() from None


def _unwrappable() -> QueryRefused:
    return QueryRefused(
        "This query cannot be run safely as written; remove trailing comments or semicolons "
        "and try again.",
        code="query_refused",
    )


def check_sql(database: Database, sql: str, params: Mapping[str, Any] | None = None) -> Vetted:
    """Put `sql` through the gate and let DuckDB bind it, without running it (saving a query
    checks its SQL). Parameters without a value are bound as NULL."""
    with database.query_cursor() as (cur, _):
        _begin_read_only(cur)
        try:
            vetted, text = prepare(cur, sql, tail=" LIMIT 0")
            values = {name: (params or {}).get(name) for name in vetted.parameters}
            try:
                # LIMIT 0: DuckDB binds and plans the query but reads nothing.
                cur.execute(text, values)
            except duckdb.Error as exc:
                raise sql_error(exc, text, body=vetted.body) from None
            return vetted
        finally:
            _rollback(cur)


# -- results -------------------------------------------------------------------------------------
def run_select(
    database: Database,
    settings: Settings,
    *,
    sql: str,
    params: Mapping[str, Any] | None,
    limit: int | None,
    timeout_ms: int | None,
    run_id: str,
    owner: str | None,
) -> dict[str, Any]:
    """Run one vetted SELECT; at most `limit` (capped by MYAPP_MAX_ROWS) rows come back."""
    cap = settings.max_rows if limit is None else min(limit, settings.max_rows)
    with guarded(
        database, settings, run_id=run_id, kind="query", owner=owner, timeout_ms=timeout_ms
    ) as (cur, run):
        # LIMIT in SQL rather than only fetchmany: DuckDB then keeps a top-N instead of sorting
        # everything, and stops scanning early.
        vetted, text = prepare(cur, sql, tail=f" LIMIT {cap + 1}")
        values = bind_parameters(vetted, params)
        started = time.perf_counter()
        _execute(cur, run, text, values, vetted.body)
        description = cur.description
        rows = _fetch(cur, run, cap + 1, text, vetted.body)
        run.raise_if_stopped()
    columns = describe_columns(description)
    truncated = len(rows) > cap
    rows = rows[:cap]
    encoded = encode_rows(rows, [c["type"] for c in columns])
    return {
        "id": run_id,
        "columns": columns,
        "rows": encoded,
        "row_count": len(encoded),
        "truncated": truncated,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def export_select(
    database: Database,
    settings: Settings,
    *,
    sql: str,
    params: Mapping[str, Any] | None,
    fmt: ExportFormat,
    timeout_ms: int | None,
    run_id: str,
    owner: str | None,
) -> ExportFile:
    """The whole result of one vetted SELECT (no row cap), streaming as DuckDB writes it."""

    def write(target: str, watch: Watch) -> None:
        with guarded(
            database, settings, run_id=run_id, kind="export", owner=owner, timeout_ms=timeout_ms
        ) as (cur, run):
            # COPY cannot go through the syntax-tree check; the same body as a subquery can,
            # and the export wraps it the same way.
            vetted, _ = prepare(cur, sql)
            values = bind_parameters(vetted, params)
            run.raise_if_stopped()

            def follow(conn: Interruptible | None) -> None:
                # Progress and interrupts follow the COPY's connection while it runs; a client
                # going away stops the run like a cancel, so it ends as cancelled.
                run.use(conn if isinstance(conn, duckdb.DuckDBPyConnection) else cur)
                watch(_RunStopper(run) if conn is not None else None)

            try:
                with pinned_files(database, vetted.datasets) as files:
                    if files is None:
                        copy_to(cur, target, vetted.body, values, fmt, follow)
                    else:
                        export_files(settings, files, vetted.body, values, fmt, target, follow)
            except duckdb.InterruptException:
                raise
            except duckdb.Error as exc:
                if run.stop_reason:
                    raise run.stopped_error() from None
                copy_text = f"COPY (\n{vetted.body}\n)"  # as the export builds it
                raise sql_error(exc, copy_text, body=vetted.body) from None

    return stream_export(settings, fmt, write)


@dataclass(frozen=True)
class _RunStopper:
    run: Run

    def interrupt(self) -> None:
        self.run.stop("cancel")


# -- charts --------------------------------------------------------------------------------------
def _is_numeric(type_name: str) -> bool:
    return bool(NUMERIC_TYPES.match(type_name))


def _is_temporal(type_name: str) -> bool:
    return bool(TEMPORAL_TYPES.match(type_name))


def chart_select(
    database: Database,
    settings: Settings,
    *,
    sql: str,
    params: Mapping[str, Any] | None,
    chart: Mapping[str, Any],
    timeout_ms: int | None,
    run_id: str,
    owner: str | None,
    max_points: int,
) -> dict[str, Any]:
    """The data of one chart of a SELECT's result, cut by DuckDB to at most `max_points` points.

    Points are rows times y columns. Bar and pie charts sum y per x (and series) in the order
    the rows came in; line and area charts of a numeric or temporal x average y over equal x
    ranges; scatter charts take a random sample.
    """
    kind = chart["type"]
    x, ys, series = chart["x"], list(chart["y"]), chart.get("series") or None
    budget = max(1, max_points // len(ys))
    with guarded(
        database, settings, run_id=run_id, kind="chart", owner=owner, timeout_ms=timeout_ms
    ) as (cur, run):
        vetted, probe = prepare(cur, sql, tail=" LIMIT 0")
        values = bind_parameters(vetted, params)
        _execute(cur, run, probe, values, vetted.body)
        types = {c["name"]: c["type"] for c in describe_columns(cur.description)}
        _check_chart_columns(types, x, ys, series)

        started = time.perf_counter()
        qx = quote_ident(x)
        qs = quote_ident(series) if series else None
        ycols = [f"y{i}" for i in range(len(ys))]
        picks = [f"{qx} AS x"]
        if qs:
            picks.append(f"{qs} AS s")
        picks += [
            f"CAST({quote_ident(y)} AS DOUBLE) AS {c}" for y, c in zip(ys, ycols, strict=True)
        ]
        keys = "x, s" if qs else "x"
        reduced: str | None = None

        if kind in ("bar", "pie") or (kind in ("line", "area") and not _orderable(types[x])):
            # One row per x (and series), in the order the rows came: sums, with the row count so
            # we can tell whether anything was summed at all.
            source = wrap(
                vetted.body, head="SELECT " + ", ".join(picks) + ", row_number() OVER () AS n"
            )
            sums = ", ".join(f"sum({c}) AS {c}" for c in ycols)
            text = (
                f"SELECT {keys}, {sums}, count(*) AS myapp_rows FROM ({source}) AS src "
                f"GROUP BY {keys} ORDER BY min(n) LIMIT {budget + 1}"
            )
            rows, columns = _chart_rows(cur, run, text, values, vetted.body)
            counted = sum(row[-1] for row in rows)
            rows = [row[:-1] for row in rows]
            columns = columns[:-1]
            if len(rows) > budget:
                rows, reduced = rows[:budget], "truncated"
            elif counted > len(rows):
                reduced = "aggregated"
        else:
            text = wrap(vetted.body, head="SELECT " + ", ".join(picks), tail=f" LIMIT {budget + 1}")
            rows, columns = _chart_rows(cur, run, text, values, vetted.body)
            if len(rows) > budget and kind == "scatter":
                text = (
                    wrap(vetted.body, head="SELECT " + ", ".join(picks))
                    + f" USING SAMPLE reservoir({budget} ROWS) REPEATABLE (42)"
                )
                rows, columns = _chart_rows(cur, run, text, values, vetted.body)
                reduced = "sampled"
            elif len(rows) > budget:
                bucketed = _bucket_sql(vetted.body, picks, ycols, types[x], qs, budget)
                rows, columns = _chart_rows(cur, run, bucketed, values, vetted.body)
                reduced = "bucketed"
        run.raise_if_stopped()

    names = ["x", *(["s"] if qs else []), *ycols]
    renamed = {"x": x, "s": series, **dict(zip(ycols, ys, strict=True))}
    out_columns = [
        {"name": renamed[n], "type": col["type"]} for n, col in zip(names, columns, strict=False)
    ]
    encoded = encode_rows(rows, [c["type"] for c in out_columns])
    return {
        "id": run_id,
        "chart": dict(chart),
        "columns": out_columns,
        "rows": encoded,
        "row_count": len(encoded),
        "reduced": reduced,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _orderable(type_name: str) -> bool:
    return _is_numeric(type_name) or _is_temporal(type_name)


def _bucket_sql(
    body: str, picks: list[str], ycols: list[str], x_type: str, qs: str | None, budget: int
) -> str:
    key = "epoch(x)" if _is_temporal(x_type) else "CAST(x AS DOUBLE)"
    source = wrap(body, head="SELECT " + ", ".join(picks))
    averages = ", ".join(f"avg({c}) AS {c}" for c in ycols)
    series_count = "count(DISTINCT s)" if qs else "1"
    group_series = "s, " if qs else ""
    select_series = "s, " if qs else ""
    bucket = f"least(floor(({key} - lo) / greatest(hi - lo, 1e-9) * per), per - 1)"
    return (
        f"WITH src AS MATERIALIZED ({source}), "
        f"bounds AS (SELECT min({key}) AS lo, max({key}) AS hi, "
        f"greatest({budget} // greatest({series_count}, 1), 1) AS per "
        "FROM src WHERE x IS NOT NULL) "
        f"SELECT min(x) AS x, {select_series}{averages} FROM src, bounds WHERE x IS NOT NULL "
        f"GROUP BY {group_series}{bucket} ORDER BY min({key}) LIMIT {budget}"
    )


def _chart_rows(
    cur: duckdb.DuckDBPyConnection, run: Run, text: str, values: dict[str, Any], body: str
) -> tuple[list[tuple], list[dict[str, str]]]:
    _vet_wrapped(cur, text)
    _execute(cur, run, text, values, body)
    columns = describe_columns(cur.description)
    # Every chart query carries its own LIMIT; this bound is only a guard.
    rows = _fetch(cur, run, MAX_CHART_FETCH, text, body)
    return rows, columns


def _check_chart_columns(types: dict[str, str], x: str, ys: list[str], series: str | None) -> None:
    names = list(types)
    available = ", ".join(names) or "none"
    for role, column in [("x", x), *[("y", y) for y in ys], ("series", series)]:
        if column is not None and column not in types:
            raise BadRequest(
                f'The result has no column "{column}" to use as {role}; its columns are: '
                f"{available}.",
                code="unknown_column",
                detail={"column": column, "columns": names},
            )
    for y in ys:
        if not _is_numeric(types[y]):
            raise BadRequest(
                f'The column "{y}" holds {types[y]} values; a chart needs numbers on the y axis.',
                code="chart_not_numeric",
                detail={"column": y, "type": types[y]},
            )
    if len(set(ys)) != len(ys):
        raise BadRequest("Each y column may appear once in a chart.", code="bad_chart")


# -- status and cancel ---------------------------------------------------------------------------
def get_run(run_id: str, *, actor_name: str | None, is_admin: bool) -> Run:
    run = REGISTRY.get(run_id)
    if run is None or not (is_admin or run.owner == actor_name):
        raise NotFound(
            f"There is no query with id {run_id}: it never ran here, or finished a while ago.",
            code="query_not_found",
        )
    return run
