"""Saved queries: saving (the SQL checked in a worker, the title's rule), editing into new
versions, restoring, deleting, each audited; and binding a run's parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Unprocessable
from ..store import saved_queries as saved_query_store
from ..store.database import Cursor, Database
from ..store.saved_queries import bind_saved_parameters, diff_versions, get_query, list_queries
from ..store.usersql.execute import check_sql
from ..store.usersql.workers import Workers
from . import versions

__all__ = [
    "bind_saved_parameters",
    "create",
    "delete",
    "diff",
    "get_query",
    "list_queries",
    "list_versions",
    "restore",
    "update",
]

SAVED_QUERIES = versions.Versioned(
    tables=saved_query_store.TABLES,
    noun="query",
    content=saved_query_store.CONTENT,
    get=get_query,
    to_values=saved_query_store.to_values,
    slugify=saved_query_store.slugify,
    differ=diff_versions,
)
restore = SAVED_QUERIES.restore
delete = SAVED_QUERIES.delete
list_versions = SAVED_QUERIES.list_versions
diff = SAVED_QUERIES.diff


def check_fields(database: Database, workers: Workers, fields: Mapping[str, Any]) -> None:
    """The SQL must pass the gate and bind (in a query worker: binding folds constants, which
    can run any function), and every $parameter it uses must be declared."""
    defaults = {p["name"]: p.get("default") for p in fields["parameters"]}
    vetted = check_sql(database, workers, database.settings, fields["sql"], defaults)
    declared = {p["name"] for p in fields["parameters"]}
    undeclared = [name for name in vetted.parameters if name not in declared]
    if undeclared:
        names = ", ".join(f"${name}" for name in undeclared)
        raise Unprocessable(
            f"The SQL uses {names}: declare "
            + ("it as a parameter" if len(undeclared) == 1 else "them as parameters")
            + ", with a type and an optional default.",
            code="undeclared_parameter",
            detail={"undeclared": undeclared},
        )


def _same(current: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    return all(current[key] == fields.get(key) for key in saved_query_store.CONTENT)


def create(
    database: Database,
    fields: Mapping[str, Any],
    *,
    workers: Workers,
    actor: str | None,
    audit_actor: str | None,
    ip: str | None,
) -> dict[str, Any]:
    """Version 1; with `if_title_exists: error`, a 409 when another query has the title."""
    check_fields(database, workers, fields)

    def title_free(cur: Cursor) -> None:
        if fields.get("if_title_exists") == "error":
            saved_query_store.refuse_title_taken(cur, fields["title"], other_than=None)

    return SAVED_QUERIES.create(
        database,
        fields,
        actor=actor,
        audit_actor=audit_actor,
        ip=ip,
        before=title_free,
    )


def update(
    database: Database,
    slug: str,
    fields: Mapping[str, Any],
    *,
    workers: Workers,
    base_version: int | None,
    actor: str | None,
    audit_actor: str | None,
    ip: str | None,
) -> tuple[dict[str, Any], bool]:
    """Save an edit as a new version; (query, True) when a version was added, False when the
    edit changed nothing."""
    check_fields(database, workers, fields)

    def title_free(cur: Cursor, current: Mapping[str, Any]) -> None:
        if fields.get("if_title_exists") == "error" and fields["title"] != current["title"]:
            saved_query_store.refuse_title_taken(cur, fields["title"], other_than=slug)

    return SAVED_QUERIES.update(
        database,
        slug,
        fields,
        base_version=base_version,
        actor=actor,
        audit_actor=audit_actor,
        ip=ip,
        same=_same,
        before=title_free,
    )
