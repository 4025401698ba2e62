"""Saved queries: title, description, SQL, typed parameters and a chart, in numbered versions.

A saved query's slug is fixed when it is created, so its address stays the same whatever is
edited later. Every edit appends a version; nothing but deleting the query removes one. The
SQL of versions is in versioned.py, the rules of saving in services/saved_queries.py.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import duckdb

from myapp.models.saved_queries import ParameterValueError, coerce_parameter

from ..errors import BadRequest, Conflict
from .database import Database
from .sql import internal
from .textdiff import side_by_side
from .versioned import VersionedTables

QUERIES = internal("saved_queries")
VERSIONS = internal("saved_query_versions")

# What a version holds (besides its number and who saved it).
CONTENT = ("title", "description", "sql", "parameters", "chart")

TABLES = VersionedTables(
    head=QUERIES,
    versions=VERSIONS,
    columns=CONTENT,
    # Page addresses under /queries/ that a slug must not take.
    reserved=frozenset({"new"}),
    label="saved query",
)
SLUG_STEM_CHARS = 60


def slugify(title: str) -> str:
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:SLUG_STEM_CHARS].strip("-")
    return slug or "query"


_COLUMNS = (
    "h.slug, v.version, h.version, v.title, v.description, v.sql, v.parameters, v.chart, "
    "h.created_at, h.created_by, v.created_at, v.created_by"
)


def _public(row: tuple) -> dict[str, Any]:
    (
        slug,
        version,
        latest,
        title,
        description,
        sql,
        parameters,
        chart,
        created_at,
        created_by,
        updated_at,
        updated_by,
    ) = row
    return {
        "slug": slug,
        "version": version,
        "latest_version": latest,
        "title": title,
        "description": description,
        "sql": sql,
        "parameters": json.loads(parameters) if parameters else [],
        "chart": json.loads(chart) if chart else None,
        "created_at": created_at,
        "created_by": created_by,
        "updated_at": updated_at,
        "updated_by": updated_by,
    }


def get_query(database: Database, slug: str, version: int | None = None) -> dict[str, Any]:
    with database.cursor() as cur:
        return _public(TABLES.get_row(cur, _COLUMNS, slug, version))


def list_queries(database: Database, search: str | None = None) -> list[dict[str, Any]]:
    with database.cursor() as cur:
        return TABLES.list_latest(
            cur,
            {
                "parameter_count": "json_array_length(v.parameters)",
                "has_chart": "v.chart IS NOT NULL",
            },
            search,
        )


def list_versions(database: Database, slug: str) -> list[dict[str, Any]]:
    with database.cursor() as cur:
        return TABLES.list_versions(cur, slug)


def to_values(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A version's content as stored."""
    return {
        "title": fields["title"],
        "description": fields.get("description") or "",
        "sql": fields["sql"],
        "parameters": json.dumps(fields["parameters"]),
        "chart": json.dumps(fields["chart"]) if fields.get("chart") else None,
    }


def refuse_title_taken(
    cur: duckdb.DuckDBPyConnection, title: str, *, other_than: str | None
) -> None:
    """409 `title_exists` when a saved query (other than `other_than`) has this title,
    ignoring case: the page asks whether to open that one or choose another title."""
    same_title = cur.execute(
        f"SELECT q.slug, v.title FROM {QUERIES} q JOIN {VERSIONS} v "
        "ON v.slug = q.slug AND v.version = q.version "
        "WHERE lower(v.title) = lower($title) AND q.slug IS DISTINCT FROM $other "
        "ORDER BY q.slug LIMIT 1",
        {"title": title, "other": other_than},
    ).fetchone()
    if same_title is not None:
        raise Conflict(
            f"A saved query titled {same_title[1]!r} already exists: open it, or save this "
            "one under another title.",
            code="title_exists",
            detail={"slug": same_title[0], "title": same_title[1]},
        )


def diff_versions(database: Database, slug: str, before: int, after: int) -> dict[str, Any]:
    """Two versions side by side: every field, which ones changed, and the SQL line by line."""
    old, new = get_query(database, slug, before), get_query(database, slug, after)
    return {
        "slug": slug,
        "from": old,
        "to": new,
        "changed": [key for key in CONTENT if old[key] != new[key]],
        "sql": side_by_side(old["sql"], new["sql"]),
        "description": side_by_side(old["description"], new["description"]),
    }


def bind_saved_parameters(
    parameters: list[dict[str, Any]], given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The run's values typed by the declarations, defaults filled in; unknown names refused."""
    given = dict(given or {})
    declared = {p["name"]: p for p in parameters}
    unknown = [name for name in given if name not in declared]
    if unknown:
        raise unknown_parameters("The query", unknown, list(declared))
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, parameter in declared.items():
        raw = given.get(name)
        # Missing, null, or a form field left empty (for anything but text): the default.
        if raw is None or (raw == "" and parameter["type"] != "text"):
            raw = parameter.get("default")
            if raw is None:
                problems[name] = "a value is required"
                continue
        try:
            values[name] = coerce_parameter(parameter["type"], raw)
        except ParameterValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise invalid_parameters(problems)
    return values


def unknown_parameters(owner: str, unknown: list[str], declared: list[str]) -> BadRequest:
    """`owner` ("The query") has none of the parameters named `unknown`."""
    return BadRequest(
        f"{owner} has no parameter {', '.join(unknown)}; its parameters are: "
        + (", ".join(declared) or "none")
        + ".",
        code="unknown_parameter",
        detail={"unknown": unknown, "parameters": declared},
    )


def invalid_parameters(problems: dict[str, str]) -> BadRequest:
    """Values that do not fit their parameters' types, by parameter; the first one is told."""
    first = next(iter(problems))
    return BadRequest(
        f"The parameter {first} is not valid: {problems[first]}.",
        code="invalid_parameter",
        detail={"parameters": problems},
    )
