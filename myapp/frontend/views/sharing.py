"""Share links: their pages (/s/<secret>), and making, listing and revoking them.

A share page calls the backend with the link's secret as its credential instead of the
visitor's session, so it shows exactly what the link grants, also to a visitor without an
account. Its Content-Security-Policy lets the origins in MYAPP_EMBED_ORIGINS frame it; every
other page keeps refusing frames.
"""

from __future__ import annotations

import json
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from ..api_client import BackendError, BackendUnavailable
from ..security import CONTENT_SECURITY_POLICY, current_visitor, safe_next
from . import api
from .dashboards import choice_lists, field_values, tile_frames
from .sql import (
    EXPORT_FORMATS,
    EXPORT_READ_TIMEOUT_S,
    export_choice,
    json_body,
    query_timeout_s,
    relay,
)
from .streaming import proxy_download

bp = Blueprint("sharing", __name__)

SHARE_PREFIX = "myapp_share_"


def embed_policy() -> str:
    origins = current_app.extensions["myapp.settings"].embed_origins
    return CONTENT_SECURITY_POLICY.replace(
        "frame-ancestors 'none'",
        f"frame-ancestors {origins}" if origins else "frame-ancestors 'none'",
    )


@bp.before_request
def _share_credential() -> None:
    # Runs after the app's own hooks, which load the session: this replaces its token.
    if not request.view_args:
        return
    token = request.view_args.get("token")
    if token is not None:
        # The link, not the visitor's own session, decides what this page may read.
        g.api_token = token if token.startswith(SHARE_PREFIX) else SHARE_PREFIX + "invalid"
        g.share_page = True


@bp.after_app_request
def _frame_policy(response):
    if g.get("share_page"):
        response.headers["Content-Security-Policy"] = embed_policy()
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        if current_app.extensions["myapp.settings"].embed_origins:
            # X-Frame-Options has no allow-list; frame-ancestors above decides.
            response.headers.pop("X-Frame-Options", None)
    return response


def _refused(exc: BackendError):
    status = exc.status if 400 <= exc.status < 600 else 502
    return render_template("sharing/refused.html", message=exc.message, status=status), status


@bp.get("/s/<token>")
def page(token: str):
    try:
        shared = api().get("/api/shared")
    except BackendError as exc:
        return _refused(exc)
    base = f"/s/{token}"
    fixed = shared["fixed"]
    given = {k: v for k, v in request.args.items() if v != "" and k not in fixed}
    if shared["kind"] == "query":
        query = shared["query"]
        parameters = [{**p, "type": p["type"]} for p in query["parameters"]]
        tiles = []
        if query.get("chart"):
            tiles.append({"id": "chart", "type": "chart", "width": 12, "heading": "Chart"})
        tiles.append({"id": "rows", "type": "table", "width": 12, "heading": "Result"})
        title, description = query["title"], query["description"]
        config = {
            "params": {k: v for k, v in given.items() if k in {p["name"] for p in parameters}},
            "runUrl": base + "/run",
            "chartUrl": base + "/chart",
            "chart": query.get("chart"),
            "exportUrl": base + "/export",
        }
    else:
        dashboard = shared["dashboard"]
        parameters = dashboard["parameters"]
        tiles = tile_frames(dashboard["tiles"], {})
        title, description = dashboard["title"], dashboard["description"]
        config = {
            "params": given,
            "runUrl": base + "/tiles/TILE/run",
            "exportUrl": base + "/tiles/TILE/export",
        }
    return render_template(
        "sharing/page.html",
        shared=shared,
        title=title,
        description=description,
        parameters=parameters,
        fixed=fixed,
        values=field_values(parameters, given),
        choices=choice_lists("", {"parameters": parameters}, None, "/api/shared"),
        tiles=tiles,
        config=config,
        form_action=base,
        export_query=("?" + request.query_string.decode()) if request.query_string else "",
        export_formats=EXPORT_FORMATS,
    )


@bp.post("/s/<token>/run")
def run(token: str):
    return relay("POST", "/api/shared/run", json_body=_params(), read_timeout_s=query_timeout_s())


@bp.post("/s/<token>/chart")
def chart(token: str):
    return relay("POST", "/api/shared/chart", json_body=_params(), read_timeout_s=query_timeout_s())


@bp.post("/s/<token>/tiles/<tile_id>/run")
def run_tile(token: str, tile_id: str):
    return relay(
        "POST",
        f"/api/shared/tiles/{tile_id}/run",
        json_body=_params(),
        read_timeout_s=query_timeout_s(),
    )


def _params() -> dict[str, Any]:
    params = json_body().get("params")
    return {"params": params if isinstance(params, dict) else None}


def _export_args() -> dict[str, Any]:
    given = {k: v for k, v in request.args.items() if not k.startswith("_") and v != ""}
    return {**export_choice(request.args.get("_format", "csv")), "params": json.dumps(given)}


@bp.get("/s/<token>/export")
def export(token: str):
    try:
        return proxy_download(
            "/api/shared/export", params=_export_args(), read_timeout_s=EXPORT_READ_TIMEOUT_S
        )
    except BackendError as exc:
        return _refused(exc)


@bp.get("/s/<token>/tiles/<tile_id>/export")
def export_tile(token: str, tile_id: str):
    try:
        return proxy_download(
            f"/api/shared/tiles/{tile_id}/export",
            params=_export_args(),
            read_timeout_s=EXPORT_READ_TIMEOUT_S,
        )
    except BackendError as exc:
        return _refused(exc)


# -- making and revoking links (editors) --------------------------------------------------------
@bp.post("/shares/new")
def create():
    kind = request.form.get("kind", "")
    target = request.form.get("target", "")
    back = safe_next(request.form.get("next"))
    fixed: dict[str, str] = {}
    for line in request.form.get("fixed", "").splitlines():
        name, sep, value = line.partition("=")
        if not line.strip():
            continue
        if not sep or not name.strip():
            flash(f"“{line.strip()}” is not name=value; the share link was not made.", "error")
            return redirect(back)
        fixed[name.strip()] = value.strip()
    days = request.form.get("expires_in_days", "").strip()
    body = {
        "kind": kind,
        "target": target,
        "name": request.form.get("name", "").strip() or "Share link",
        "params": fixed,
        "expires_in_days": int(days) if days.isdigit() else None,
    }
    try:
        created = api().post("/api/shares", json=body)
    except BackendUnavailable:
        raise
    except BackendError as exc:
        if exc.status >= 500:
            raise
        flash(f"The share link was not made: {exc.message}", "error")
        return redirect(back)
    # Post/redirect/get: reloading the page that shows the address must not make another
    # link. The secret rides in the signed session until that page has shown it once.
    session["new_share"] = {"share": created, "back": back}
    return redirect(url_for("sharing.created"), 303)


@bp.get("/shares/created")
def created():
    made = session.pop("new_share", None)
    if not isinstance(made, dict):
        flash("A share link's address is shown only once; the link is listed here.", "info")
        return redirect(url_for("account.account"))
    share = made["share"]
    url = request.host_url.rstrip("/") + share["path"]
    page = render_template("sharing/created.html", share=share, url=url, back=made["back"])
    return page, 200, {"Cache-Control": "no-store"}


@bp.post("/shares/<share_id>/revoke")
def revoke(share_id: str):
    back = safe_next(request.form.get("next"))
    try:
        api().delete(f"/api/shares/{share_id}")
    except BackendError as exc:
        if exc.status >= 500:
            raise
        flash(exc.message, "error")
        return redirect(back)
    flash("The share link is revoked: it stops working at once.", "success")
    return redirect(back)


@bp.app_template_global("share_links")
def share_links(kind: str | None = None, target: str | None = None, mine: bool = False):
    """Share links for a page's list (editors only; nothing for others or on errors)."""
    visitor = current_visitor()
    if visitor.known and not visitor.can("editor"):
        return []
    params: dict[str, Any] = {"mine": "true"} if mine else {}
    if kind:
        params.update(kind=kind, target=target)
    try:
        return api().get("/api/shares", params=params)["shares"]
    except BackendError:
        return []
