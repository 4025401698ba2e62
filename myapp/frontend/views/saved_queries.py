"""Saved queries: the list, and each query's page with a form built from its parameters.

A query's page runs it on the server, so its address with the parameters in the query string
(`/queries/<slug>?city=Oslo`) is a link that shows the same result to whoever opens it; the
script of the page only draws the saved chart. Keys that are not parameters start with `_`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, flash, redirect, render_template, request, url_for

from ..api_client import BackendError
from . import api, versions
from .sql import (
    EXPORT_FORMATS,
    EXPORT_READ_TIMEOUT_S,
    export_choice,
    json_body,
    query_timeout_s,
    relay,
    saved_query_path,
)
from .streaming import proxy_download

bp = Blueprint("queries", __name__, url_prefix="/queries")

# The page's own keys in the query string; everything else is a parameter value.
VERSION_KEY = "_version"
RUN_KEY = "_run"
FORMAT_KEY = "_format"
META_KEYS = frozenset({VERSION_KEY, RUN_KEY, FORMAT_KEY})
# Rows a saved query's page shows; the export has them all.
PAGE_ROWS = 1000


def _params_from_args(parameters: list[dict[str, Any]]) -> dict[str, str]:
    names = {p["name"] for p in parameters}
    return {k: v for k, v in request.args.items() if k in names and k not in META_KEYS}


@bp.get("")
def index():
    search = request.args.get("q", "").strip()
    body = api().get("/api/queries", params={"q": search} if search else None)
    return render_template("queries/index.html", queries=body["queries"], search=search)


@bp.get("/<slug>")
def detail(slug: str):
    version = request.args.get(VERSION_KEY, type=int)
    saved = api().get(saved_query_path(slug), params={"version": version} if version else None)
    versions = api().get(saved_query_path(slug, "versions"))["versions"]
    parameters = saved["parameters"]
    given = _params_from_args(parameters)
    values = {p["name"]: given.get(p["name"], _default_text(p)) for p in parameters}
    # Run at once when nothing needs filling in, or when the form was sent.
    ready = all(p.get("default") is not None for p in parameters)
    should_run = RUN_KEY in request.args or bool(given) or ready
    result = error = None
    status = 200
    # A required parameter left empty is asked for beside its field rather than run as "".
    field_errors: dict[str, str] = {}
    if should_run:
        field_errors = {
            p["name"]: "A value is required."
            for p in parameters
            if p.get("default") is None and not given.get(p["name"], "").strip()
        }
    if field_errors:
        error = {
            "code": "invalid_parameter",
            "message": "Fill in the required parameters to run the query.",
            "detail": None,
        }
        status = 400
    elif should_run:
        try:
            result = api().post(
                saved_query_path(slug, "run"),
                json={"params": given, "version": version, "limit": PAGE_ROWS},
                read_timeout_s=query_timeout_s(),
            )
        except BackendError as exc:
            if exc.status >= 500:
                raise
            error, status = {"code": exc.code, "message": exc.message, "detail": exc.detail}, 400
            problems = (
                (exc.detail or {}).get("parameters") if isinstance(exc.detail, dict) else None
            )
            if isinstance(problems, dict):
                field_errors = {
                    name: f"{text[:1].upper()}{text[1:]}." for name, text in problems.items()
                }
    export_args = {**given, **({VERSION_KEY: version} if version else {})}
    chart_config = {
        "url": url_for("queries.chart", slug=slug),
        "params": given,
        "version": version,
        "chart": saved["chart"],
    }
    return (
        render_template(
            "queries/detail.html",
            saved=saved,
            versions=versions,
            values=values,
            field_errors=field_errors,
            result=result,
            error=error,
            version=version,
            export_formats=EXPORT_FORMATS,
            export_query=urlencode(export_args),
            chart_config=chart_config if result and saved["chart"] else None,
            share_url=url_for("queries.detail", slug=slug, **export_args, _external=True),
        ),
        status,
    )


def _default_text(parameter: dict[str, Any]) -> str:
    default = parameter.get("default")
    if default is None:
        return ""
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


@bp.post("/<slug>/chart")
def chart(slug: str):
    body = json_body()
    payload = {key: body[key] for key in ("params", "chart", "version") if body.get(key)}
    return relay(
        "POST",
        saved_query_path(slug, "chart"),
        json_body=payload,
        read_timeout_s=query_timeout_s(),
    )


@bp.get("/<slug>/export")
def export(slug: str):
    saved = api().get(saved_query_path(slug))
    given = {
        k: v
        for k, v in request.args.items()
        if k not in META_KEYS and k in {p["name"] for p in saved["parameters"]}
    }
    query: dict[str, Any] = {
        **export_choice(request.args.get(FORMAT_KEY, "csv")),
        "params": json.dumps(given),
    }
    version = request.args.get(VERSION_KEY, type=int)
    if version:
        query["version"] = version
    return proxy_download(
        saved_query_path(slug, "export"), params=query, read_timeout_s=EXPORT_READ_TIMEOUT_S
    )


@bp.get("/<slug>/diff")
def diff(slug: str):
    return versions.diff_page("queries/diff.html", saved_query_path, slug)


@bp.post("/<slug>/restore")
def restore(slug: str):
    return versions.restore(saved_query_path, "queries.detail", slug)


@bp.post("/<slug>/delete")
def delete(slug: str):
    saved = api().get(saved_query_path(slug))
    api().delete(saved_query_path(slug))
    flash(f"Deleted the saved query “{saved['title']}” and its versions.", "success")
    return redirect(url_for("queries.index"))
