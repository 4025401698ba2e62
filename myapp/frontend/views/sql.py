"""The SQL page: an editor, results with types, a chart panel, exports, history and saving.

The page's script talks only to the URLs here; they pass each call on to the backend's query
API and hand its JSON (answer or error body) back unchanged, so the browser never needs to reach
/api itself and the three entry points (:12001 direct, nginx, role all) behave the same.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from flask import Blueprint, current_app, jsonify, render_template, request, url_for
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response

from myapp.contract import formats
from myapp.models.query import MAX_SQL_CHARS

from ..api_client import BackendError, BackendUnavailable
from ..security import current_visitor
from . import api
from .streaming import proxy_download

bp = Blueprint("sql", __name__, url_prefix="/sql")

# The download menus of every page: the contract's formats, the ones people open most first.
EXPORT_FORMATS = (
    ("csv", formats.BY_KEY["csv"].label),
    ("xlsx", formats.BY_KEY["xlsx"].label),
    ("csv-bom", "CSV for Excel on Windows"),
    *((f.key, f.label) for f in formats.FORMATS if f.key not in ("csv", "xlsx")),
)
# Menu entries that are a format with an option: CSV that Excel on Windows opens as UTF-8.
EXPORT_CHOICES = {"csv-bom": {"format": "csv", "bom": "true"}}


def export_choice(value: str) -> dict[str, str]:
    """A download menu's value as the API's export parameters (`format`, maybe `bom`)."""
    return dict(EXPORT_CHOICES.get(value, {"format": value}))


PARAMETER_TYPES = ("text", "integer", "number", "date", "boolean")
EXAMPLE_SQL = "SELECT range AS n, range * range AS square\nFROM range(10)"
# Beyond the query's own time limit, what the page allows for the trip to the backend and back.
RELAY_MARGIN_S = 15.0
# An export streams for as long as the file takes to download.
EXPORT_READ_TIMEOUT_S = 600.0


def query_timeout_s() -> float:
    return current_app.extensions["myapp.settings"].query_timeout_ms / 1000 + RELAY_MARGIN_S


def relay(
    method: str,
    path: str,
    *,
    json_body: Any = None,
    read_timeout_s: float | None = None,
) -> Response:
    """Pass one call to the backend and its JSON answer, or its error body, back as it is."""
    try:
        response = api().request(method, path, json=json_body, read_timeout_s=read_timeout_s)
    except BackendUnavailable as exc:
        return _error(503, exc.code, exc.message)
    except BackendError as exc:
        return _error(exc.status, exc.code, exc.message, exc.detail)
    if response.status_code == 204 or not response.content:
        return Response(status=response.status_code)
    return Response(response.content, status=response.status_code, mimetype="application/json")


def _error(status: int, code: str, message: str, detail: Any = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        error["detail"] = detail
    response = jsonify(error=error)
    response.status_code = status
    return response


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def list_datasets() -> list[dict[str, Any]]:
    """Datasets and their columns for the sidebar and completion; none if the list is missing."""
    try:
        body = api().get("/api/datasets")
    except BackendUnavailable:
        raise
    except BackendError as exc:
        # Signing in is the visitor's to fix (the error page says so); a missing list is not.
        if exc.status in (401, 403):
            raise
        return []
    return [
        {
            "name": d.get("name", ""),
            "columns": [
                {"name": c.get("name", ""), "type": c.get("type", "")}
                for c in d.get("columns") or []
            ],
            "row_count": d.get("row_count"),
        }
        for d in body.get("datasets") or []
        if isinstance(d, dict) and d.get("name")
    ]


def saved_query_path(slug: str, *rest: str) -> str:
    return "/api/queries/" + "/".join([quote(slug, safe=""), *rest])


@bp.get("")
def editor():
    datasets = list_datasets()
    saved = None
    slug = request.args.get("query")
    if slug:
        version = request.args.get("version", type=int)
        saved = api().get(saved_query_path(slug), params={"version": version} if version else None)
    sql = request.args.get("sql", "")[:MAX_SQL_CHARS]
    if saved:
        sql = saved["sql"]
    elif not sql:
        sql = f"SELECT * FROM {_quoted(datasets[0]['name'])} LIMIT 100" if datasets else EXAMPLE_SQL
    config = {
        "datasets": datasets,
        "saved": saved,
        "urls": {
            "run": url_for("sql.run"),
            "status": url_for("sql.status", query_id="QUERY_ID"),
            "cancel": url_for("sql.cancel", query_id="QUERY_ID"),
            "chart": url_for("sql.chart"),
            "save": url_for("sql.save"),
            "query_page": url_for("queries.detail", slug="SLUG"),
        },
        "parameter_types": PARAMETER_TYPES,
        # The address carries an ad-hoc query (?sql=…&p.name=value&t.name=type), so a result
        # can be bookmarked and shared; it runs on load for anyone who may run SQL at all.
        "address": {
            "params": _prefixed(request.args, "p."),
            "types": {
                k: v for k, v in _prefixed(request.args, "t.").items() if v in PARAMETER_TYPES
            },
            "run": bool(request.args.get("sql")) and not saved and _may_run(),
        },
    }
    return render_template(
        "sql/editor.html",
        sql=sql,
        datasets=datasets,
        saved=saved,
        config=config,
        export_formats=EXPORT_FORMATS,
        datasets_url=page_url("datasets.index", "/datasets"),
    )


def _prefixed(args, prefix: str) -> dict[str, str]:
    return {k[len(prefix) :]: v for k, v in args.items() if k.startswith(prefix) and k != prefix}


def _may_run() -> bool:
    visitor = current_visitor()
    return not visitor.known or visitor.can("viewer")


def page_url(endpoint: str, fallback: str) -> str:
    """The address of another group's page, or where it will be if that page is missing."""
    try:
        return url_for(endpoint)
    except BuildError:
        return fallback


def _quoted(name: str) -> str:
    if name.replace("_", "").isalnum() and not name[0].isdigit() and name.lower() == name:
        return name
    return '"' + name.replace('"', '""') + '"'


@bp.post("/run")
def run():
    body = json_body()
    payload = {
        key: body[key] for key in ("sql", "params", "limit", "timeout_ms", "id") if key in body
    }
    return relay("POST", "/api/query", json_body=payload, read_timeout_s=query_timeout_s())


@bp.get("/status/<uuid:query_id>")
def status(query_id):
    return relay("GET", f"/api/query/{query_id}")


@bp.post("/cancel/<uuid:query_id>")
def cancel(query_id):
    return relay("DELETE", f"/api/query/{query_id}")


@bp.post("/chart")
def chart():
    body = json_body()
    payload = {key: body[key] for key in ("sql", "params", "chart", "id") if key in body}
    return relay("POST", "/api/query/chart", json_body=payload, read_timeout_s=query_timeout_s())


@bp.post("/export")
def export():
    """The whole result as a download, streamed through without being held here."""
    form = request.form
    try:
        params = json.loads(form.get("params") or "{}")
    except ValueError:
        params = {}
    choice = export_choice(form.get("format", "csv"))
    payload = {
        "sql": form.get("sql", ""),
        "params": params if isinstance(params, dict) else {},
        "format": choice["format"],
        "bom": choice.get("bom") == "true",
        "filename": form.get("filename") or None,
    }
    return proxy_download(
        "/api/query/export", method="POST", json=payload, read_timeout_s=EXPORT_READ_TIMEOUT_S
    )


@bp.post("/save")
def save():
    """Save the editor's query: a new saved query, or a new version of the one being edited."""
    body = json_body()
    fields = {
        key: body.get(key)
        for key in ("title", "description", "sql", "parameters", "chart")
        if body.get(key) is not None
    }
    slug = body.get("slug")
    # The page always asks when the title is another query's (409 title_exists).
    fields["if_title_exists"] = "error"
    if slug:
        fields["base_version"] = body.get("base_version")
        return relay("PUT", saved_query_path(str(slug)), json_body=fields)
    return relay("POST", "/api/queries", json_body=fields)
