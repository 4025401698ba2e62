"""Dashboards: the list, each dashboard's page of tiles, and its editor.

A dashboard's page renders its parameters and the frame of each tile on the server; the page's
script then asks for every tile's result on its own (POST …/tiles/<id>/run here, passed on to
the backend), so a slow or failing tile shows its own spinner or error and holds up no other.
The parameter values live in the address (`/dashboards/<slug>?city=Oslo`), so a view can be
bookmarked. Keys of the page itself start with `_`.

The editor is a plain form (no build step, no script needed): one row per parameter and per
tile, an empty row to add one, a width and an order per tile, a box to remove it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, flash, redirect, render_template, request, url_for

from myapp.models.dashboards import (
    DASHBOARD_PARAMETER_TYPES,
    GRID_COLUMNS,
    TILE_TYPES,
    value_keys,
)

from ..api_client import BackendError
from ..markdown import render_markdown
from . import api, versions
from .sql import (
    EXPORT_FORMATS,
    EXPORT_READ_TIMEOUT_S,
    export_choice,
    json_body,
    query_timeout_s,
    relay,
)
from .streaming import proxy_download

bp = Blueprint("dashboards", __name__, url_prefix="/dashboards")

VERSION_KEY = "_version"


def _path(slug: str, *rest: str) -> str:
    from urllib.parse import quote

    return "/api/dashboards/" + "/".join(quote(part, safe="") for part in (slug, *rest))


def address_values(parameters: list[dict[str, Any]]) -> dict[str, str]:
    """The dashboard's values given in the address (only its own keys, non-empty)."""
    keys = {key for p in parameters for key in value_keys(p)}
    return {k: v for k, v in request.args.items() if k in keys and v != ""}


def field_values(parameters: list[dict[str, Any]], given: dict[str, str]) -> dict[str, str]:
    """What each value key's field shows: the address's value, else the default."""
    shown: dict[str, str] = {}
    for p in parameters:
        default = p.get("default")
        for index, key in enumerate(value_keys(p)):
            fallback = default[index] if isinstance(default, list) else default
            if isinstance(fallback, bool):
                fallback = "true" if fallback else "false"
            shown[key] = given.get(key, "" if fallback is None else str(fallback))
    return shown


def query_titles() -> dict[str, str]:
    try:
        return {q["slug"]: q["title"] for q in api().get("/api/queries")["queries"]}
    except BackendError:
        return {}


def tile_frames(tiles: list[dict[str, Any]], titles: dict[str, str]) -> list[dict[str, Any]]:
    frames = []
    for tile in tiles:
        frame = dict(tile)
        frame["heading"] = (
            tile.get("title")
            or titles.get(tile.get("query") or "", "")
            or ("Text" if tile["type"] == "text" else tile.get("query") or "")
        )
        if tile["type"] == "text":
            frame["html"] = render_markdown(tile.get("text") or "")
        frames.append(frame)
    # Each tile is a landmark named by its heading, and two landmarks of one name cannot be
    # told apart (two tiles of one query, say): such headings say the tile's kind, then a number.
    for distinguish in (
        lambda f, n: f"{f['heading']} ({f['type']})",
        lambda f, n: f"{f['heading']} {n}",
    ):
        seen: dict[str, int] = {}
        for frame in frames:
            seen[frame["heading"]] = seen.get(frame["heading"], 0) + 1
        numbers: dict[str, int] = {}
        for frame in frames:
            if seen[frame["heading"]] > 1:
                numbers[frame["heading"]] = numbers.get(frame["heading"], 0) + 1
                frame["heading"] = distinguish(frame, numbers[frame["heading"]])
    return frames


def choice_lists(slug: str, dashboard: dict[str, Any], version: int | None, base: str) -> dict:
    lists: dict[str, Any] = {}
    for p in dashboard["parameters"]:
        if p["type"] != "choice":
            continue
        try:
            body = api().get(
                f"{base}/parameters/{p['name']}/choices",
                params={"version": version} if version else None,
                read_timeout_s=query_timeout_s(),
            )
            lists[p["name"]] = [str(c) for c in body["choices"]]
        except BackendError as exc:
            if exc.status >= 500 and exc.status != 503:
                raise
            lists[p["name"]] = {"error": exc.message}
    return lists


@bp.get("")
def index():
    search = request.args.get("q", "").strip()
    body = api().get("/api/dashboards", params={"q": search} if search else None)
    return render_template("dashboards/index.html", dashboards=body["dashboards"], search=search)


@bp.post("/new")
def create():
    title = request.form.get("title", "").strip()
    if not title:
        flash("Give the new dashboard a title.", "error")
        return redirect(url_for("dashboards.index"))
    try:
        created = api().post("/api/dashboards", json={"title": title})
    except BackendError as exc:
        if exc.status >= 500:
            raise
        flash(exc.message, "error")
        return redirect(url_for("dashboards.index"))
    flash("Dashboard created: add its tiles below.", "success")
    return redirect(url_for("dashboards.edit", slug=created["slug"]))


@bp.get("/<slug>")
def detail(slug: str):
    version = request.args.get(VERSION_KEY, type=int)
    dashboard = api().get(_path(slug), params={"version": version} if version else None)
    versions = api().get(_path(slug, "versions"))["versions"]
    given = address_values(dashboard["parameters"])
    config = {
        "params": given,
        "version": version,
        "runUrl": url_for("dashboards.run_tile", slug=slug, tile_id="TILE"),
        "exportUrl": url_for("dashboards.export_tile", slug=slug, tile_id="TILE"),
    }
    query_links = {
        tile["id"]: url_for("queries.detail", slug=tile["query"])
        + _mapped_query_string(tile, dashboard["parameters"], given)
        for tile in dashboard["tiles"]
        if tile["type"] != "text"
    }
    return render_template(
        "dashboards/detail.html",
        dashboard=dashboard,
        versions=versions,
        version=version,
        values=field_values(dashboard["parameters"], given),
        choices=choice_lists(slug, dashboard, version, _path(slug)),
        tiles=tile_frames(dashboard["tiles"], query_titles()),
        query_links=query_links,
        config=config,
        export_formats=EXPORT_FORMATS,
        here=request.full_path.rstrip("?"),
    )


def _mapped_query_string(
    tile: dict[str, Any], parameters: list[dict[str, Any]], given: dict[str, str]
) -> str:
    """The address of the tile's saved query with the values the tile runs with."""
    defaults = field_values(parameters, {})
    mapped = {
        target: given.get(source, defaults.get(source, ""))
        for target, source in tile.get("params", {}).items()
    }
    mapped = {k: v for k, v in mapped.items() if v != ""}
    return ("?" + urlencode(mapped)) if mapped else ""


@bp.post("/<slug>/tiles/<tile_id>/run")
def run_tile(slug: str, tile_id: str):
    body = json_body()
    payload = {
        "params": body.get("params") if isinstance(body.get("params"), dict) else None,
        "version": body.get("version") if isinstance(body.get("version"), int) else None,
        "refresh": bool(body.get("refresh")),
    }
    return relay(
        "POST",
        _path(slug, "tiles", tile_id, "run"),
        json_body=payload,
        read_timeout_s=query_timeout_s(),
    )


@bp.get("/<slug>/tiles/<tile_id>/export")
def export_tile(slug: str, tile_id: str):
    dashboard = api().get(_path(slug))
    given = address_values(dashboard["parameters"])
    query: dict[str, Any] = {
        **export_choice(request.args.get("_format", "csv")),
        "params": json.dumps(given),
    }
    version = request.args.get(VERSION_KEY, type=int)
    if version:
        query["version"] = version
    return proxy_download(
        _path(slug, "tiles", tile_id, "export"), params=query, read_timeout_s=EXPORT_READ_TIMEOUT_S
    )


@bp.get("/<slug>/diff")
def diff(slug: str):
    return versions.diff_page("dashboards/diff.html", _path, slug)


@bp.post("/<slug>/restore")
def restore(slug: str):
    return versions.restore(_path, "dashboards.detail", slug)


@bp.post("/<slug>/delete")
def delete(slug: str):
    dashboard = api().get(_path(slug))
    api().delete(_path(slug))
    flash(f"Deleted the dashboard “{dashboard['title']}” and its versions.", "success")
    return redirect(url_for("dashboards.index"))


# -- the editor ------------------------------------------------------------------------------
def _editor_rows(dashboard: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    parameters = []
    for p in dashboard["parameters"]:
        default = p.get("default")
        if isinstance(default, list):
            default = "..".join(str(v) for v in default)
        elif isinstance(default, bool):
            default = "true" if default else "false"
        parameters.append({**p, "default": "" if default is None else str(default)})
    tiles = []
    for order, tile in enumerate(dashboard["tiles"], start=1):
        mapping = ", ".join(f"{k}={v}" for k, v in tile.get("params", {}).items())
        tiles.append({**tile, "order": order, "mapping": mapping})
    return parameters, tiles


def _render_editor(dashboard, parameters, tiles, error=None, status=200):
    return (
        render_template(
            "dashboards/edit.html",
            dashboard=dashboard,
            parameters=parameters,
            tiles=tiles,
            error=error,
            queries=api().get("/api/queries")["queries"],
            parameter_types=DASHBOARD_PARAMETER_TYPES,
            tile_types=TILE_TYPES,
            widths=range(1, GRID_COLUMNS + 1),
        ),
        status,
    )


@bp.get("/<slug>/edit")
def edit(slug: str):
    dashboard = api().get(_path(slug))
    parameters, tiles = _editor_rows(dashboard)
    return _render_editor(dashboard, parameters, tiles)


def _rows(prefix: str) -> list[dict[str, str]]:
    """The form's rows `prefix-<n>-<field>`, in n order."""
    rows: dict[int, dict[str, str]] = {}
    for key, value in request.form.items():
        parts = key.split("-", 2)
        if len(parts) == 3 and parts[0] == prefix and parts[1].isdigit():
            rows.setdefault(int(parts[1]), {})[parts[2]] = value
    return [rows[n] for n in sorted(rows)]


def _parse_mapping(text: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for part in text.replace("\n", ",").split(","):
        if not part.strip():
            continue
        target, sep, source = part.partition("=")
        if not sep:
            raise ValueError(
                f"“{part.strip()}” is not a mapping: write query_parameter=dashboard_parameter"
            )
        mapping[target.strip()] = source.strip()
    return mapping


def _form_fields() -> tuple[dict[str, Any], list[dict], list[dict]]:
    parameters_in, tiles_in = _rows("p"), _rows("t")
    parameters: list[dict[str, Any]] = []
    for row in parameters_in:
        if row.get("remove") or not row.get("name", "").strip():
            continue
        default: Any = row.get("default", "").strip() or None
        if default and row.get("type") == "daterange":
            default = [part.strip() for part in default.split("..", 1)]
        parameters.append(
            {
                "name": row["name"].strip(),
                "type": row.get("type", "text"),
                "label": row.get("label", "").strip() or None,
                "default": default,
                "choices_query": row.get("choices_query") or None,
            }
        )
    kept = [
        row
        for row in tiles_in
        if not row.get("remove") and (row.get("query") or row.get("text", "").strip())
    ]

    def order(row: dict[str, str]) -> float:
        try:
            return float(row.get("order") or 1e9)
        except ValueError:
            return 1e9

    tiles: list[dict[str, Any]] = []
    for row in sorted(kept, key=order):
        kind = row.get("type") or ("text" if row.get("text", "").strip() else "table")
        tile: dict[str, Any] = {
            "type": kind,
            "title": row.get("title", "").strip() or None,
            "width": int(row["width"]) if row.get("width", "").isdigit() else 6,
            "compare": bool(row.get("compare")),
        }
        if row.get("id"):
            tile["id"] = row["id"]
        if kind == "text":
            tile["text"] = row.get("text", "")
        else:
            tile["query"] = row.get("query") or None
            tile["params"] = _parse_mapping(row.get("mapping", ""))
        tiles.append(tile)
    fields = {
        "title": request.form.get("title", ""),
        "description": request.form.get("description", ""),
        "parameters": parameters,
        "tiles": tiles,
    }
    return fields, parameters_in, tiles_in


@bp.post("/<slug>/edit")
def save(slug: str):
    dashboard = api().get(_path(slug))
    try:
        fields, parameters_in, tiles_in = _form_fields()
    except ValueError as exc:
        parameters_in, tiles_in = _rows("p"), _rows("t")
        return _render_editor(dashboard, parameters_in, tiles_in, {"message": str(exc)}, 400)
    base = request.form.get("base_version", type=int)
    try:
        saved = api().put(_path(slug), json={**fields, "base_version": base})
    except BackendError as exc:
        if exc.status >= 500:
            raise
        error = {"message": exc.message, "detail": exc.detail}
        keep = {**dashboard, "title": fields["title"], "description": fields["description"]}
        return _render_editor(keep, parameters_in, tiles_in, error, 400)
    flash(f"Saved version {saved['version']}.", "success")
    return redirect(url_for("dashboards.detail", slug=slug))
