"""The home page: what changed lately in the workspace, an upload drop zone, and for an empty
workspace a short first-run guide."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, url_for

from ..api_client import BackendError, BackendUnavailable
from . import api

bp = Blueprint("home", __name__)

# Items of each kind the page lists.
RECENT = 8


def _recent(path: str, key: str) -> list[dict[str, Any]] | None:
    """The most recently changed (or run) items, or None when the caller may not list them."""
    try:
        items = api().get(path)[key]
    except BackendUnavailable:
        raise
    except BackendError:
        return None
    for item in items:
        item["run_at"] = item.get("last_run_at")

    def latest(item: dict[str, Any]) -> str:
        return max(str(item.get("updated_at") or ""), str(item.get("run_at") or ""))

    return sorted(items, key=latest, reverse=True)[:RECENT]


@bp.get("/")
def index():
    health = api().health()
    datasets = _recent("/api/datasets", "datasets")
    queries = _recent("/api/queries", "queries")
    dashboards = _recent("/api/dashboards", "dashboards")
    empty = datasets == [] and not queries and not dashboards
    return render_template(
        "home/index.html",
        health=health,
        datasets=datasets,
        queries=queries,
        dashboards=dashboards,
        empty=empty,
    )


@bp.get("/favicon.ico")
def favicon():
    # Browsers ask for /favicon.ico on their own; the icon is an SVG.
    return redirect(url_for("static", filename="favicon.svg"), code=301)
