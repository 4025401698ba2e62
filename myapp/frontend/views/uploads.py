"""Pages: look at a file before loading it (a staged upload), change how it is read, load it.

The datasets page's "Preview" sends the file to `POST /datasets/_preview`, which streams it on to
the backend's `POST /api/uploads` as it arrives (multipart from a plain form, the raw file from
the page's script). Every later step is an ordinary form: change the options (`PATCH` on the
backend), load (`POST …/load`) or discard. A form sent by the page's script (header
`X-Myapp-Partial`) gets the preview as an HTML fragment to put in place; a plain form gets a
whole page, so the flow works without JavaScript too.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from flask import Blueprint, redirect, render_template, request, url_for

from ..api_client import BackendError, BackendUnavailable
from . import api
from .datasets import FRAGMENT_HEADER, UPLOAD_READ_TIMEOUT_S, _listing, _name_from_filename
from .streaming import request_body_chunks

bp = Blueprint("uploads", __name__, url_prefix="/datasets")

PARTIAL_HEADER = "X-Myapp-Partial"
PREVIEW_FRAGMENT = {"X-Myapp-Fragment": "upload-preview"}

# Options the preview's first request may carry, passed to the backend as they are (the
# name and mode too: the backend keeps them as the load's defaults).
STAGE_OPTIONS = (
    "name",
    "mode",
    "format",
    "delimiter",
    "header",
    "quote",
    "encoding",
    "nullstr",
    "types",
    "skip",
    "sheet",
)

# What the preview's menus offer; the detected value is added when it is none of these.
DELIMITERS = (
    (",", "comma ,"),
    (";", "semicolon ;"),
    ("\t", "tab"),
    ("|", "pipe |"),
    (":", "colon :"),
    (" ", "space"),
)
ENCODINGS = (
    ("utf-8", "UTF-8"),
    ("cp1252", "Windows-1252 (Excel on Windows)"),
    ("iso8859-1", "Latin-1 (ISO-8859-1)"),
    ("iso8859-15", "Latin-9 (ISO-8859-15)"),
    ("utf-16", "UTF-16"),
    ("mac-roman", "Mac Roman"),
    ("cp1250", "Windows-1250 (Central European)"),
    ("cp1251", "Windows-1251 (Cyrillic)"),
    ("shift_jis", "Shift JIS"),
    ("gb18030", "GB 18030"),
)
COLUMN_TYPES = (
    "VARCHAR",
    "BIGINT",
    "DOUBLE",
    "DECIMAL(18,3)",
    "BOOLEAN",
    "DATE",
    "TIMESTAMP",
    "TIME",
)
# A column's menu field is `type:<column>`; a column name may hold any character.
TYPE_FIELD = "type:"
# A wide file (a sheet may have 16,384 columns) would make a page of millions of cells.
PREVIEW_COLUMNS = 200


def _upload_path(upload_id: str, *rest: str) -> str:
    return "/api/uploads/" + "/".join([quote(upload_id, safe=""), *rest])


def _partial() -> bool:
    return bool(request.headers.get(PARTIAL_HEADER))


def _menu(options: tuple, current: Any) -> list[tuple[str, str]]:
    """A menu's (value, label) pairs with the current value in it."""
    pairs = [(v, label) for v, label in options]
    if current is not None and current != "" and all(v != current for v, _ in pairs):
        pairs.insert(0, (current, repr(current) if len(current) == 1 else current))
    return pairs


def _render(upload: dict[str, Any], status: int, *, error: BackendError | None = None, **extra):
    filename = upload.get("filename") or ""
    context = {
        "upload": upload,
        "error": error,
        "delimiters": _menu(DELIMITERS, upload.get("delimiter")),
        "encodings": _menu(ENCODINGS, upload.get("encoding")),
        "column_types": COLUMN_TYPES,
        "shown_columns": min(len(upload.get("columns") or []), PREVIEW_COLUMNS),
        "type_field": TYPE_FIELD,
        "load_name": extra.pop("load_name", None)
        or upload.get("name")
        or _name_from_filename(filename),
        "load_mode": extra.pop("load_mode", None) or upload.get("mode") or "create",
        **extra,
    }
    if _partial():
        return render_template("datasets/_preview.html", **context), status, PREVIEW_FRAGMENT
    return render_template("datasets/preview.html", **context), status


def _stage_failed(exc: BackendError):
    """The file could not be staged: the reason, where the upload form is."""
    if (isinstance(exc, BackendUnavailable) or exc.status in (401, 403)) and not _partial():
        raise exc
    status = exc.status if 400 <= exc.status < 600 else 502
    if _partial():
        body = render_template("datasets/_upload_result.html", result=None, error=exc)
        return body, status, FRAGMENT_HEADER
    listing = _listing()
    return render_template(
        "datasets/index.html",
        datasets=listing["datasets"],
        max_upload_bytes=(listing.get("limits") or {}).get("max_upload_bytes"),
        upload_error=exc,
    ), status


@bp.post("/_preview")
def stage():
    """Send the file to the backend as a staged upload, streamed as it arrives."""
    args = request.args
    params = {key: args[key] for key in STAGE_OPTIONS if args.get(key)}
    if args.get("filename"):
        params["filename"] = args["filename"]
    content_type = request.headers.get("Content-Type", "") or "application/octet-stream"
    if not content_type.lower().startswith("multipart/"):
        content_type = "application/octet-stream"
    headers = {"Content-Type": content_type}
    if request.content_length is not None:
        # Lets the backend refuse an oversized file from the headers alone.
        headers["Content-Length"] = str(request.content_length)
    try:
        with api().stream(
            "POST",
            "/api/uploads",
            params=params,
            content=request_body_chunks(),
            headers=headers,
            read_timeout_s=UPLOAD_READ_TIMEOUT_S,
        ) as response:
            upload = json.loads(response.read())["upload"]
    except BackendUnavailable as exc:
        if not _partial():
            raise
        return _stage_failed(
            BackendError(
                503,
                exc.code,
                "The file did not reach the end: the data service stopped answering or closed "
                "the connection (a file over the upload limit is cut off this way). Try again "
                "in a moment.",
            )
        )
    except BackendError as exc:
        return _stage_failed(exc)
    if _partial():
        return _render(upload, 201)
    # A plain form: the preview is a page of its own, so a reload repeats nothing.
    return redirect(url_for("uploads.show", upload_id=upload["id"]), 303)


@bp.get("/_uploads/<upload_id>")
def show(upload_id: str):
    upload = api().get(_upload_path(upload_id))["upload"]
    return _render(upload, 200)


def _changes(form, upload: dict[str, Any]) -> dict[str, Any]:
    """What the options form changes, compared with the preview it was shown with: detected
    values the person left alone stay detected."""
    changes: dict[str, Any] = {}
    for key in ("delimiter", "encoding", "sheet"):
        if key in form:
            value = form[key]
            if key == "delimiter" and value == "\\t":
                value = "\t"
            if value != (upload.get(key) or ""):
                changes[key] = value or None
    if "header" in form:
        header = {"true": True, "false": False}.get(form["header"])
        if header != upload.get("header"):
            changes["header"] = header
    if "skip" in form:
        text = form["skip"].strip()
        if text != str(upload.get("skip") if upload.get("skip") is not None else ""):
            changes["skip"] = text or None
    types = dict(upload.get("types") or {})
    current = {c["name"]: c["type"] for c in upload.get("columns", [])}
    for field, value in form.items():
        if field.startswith(TYPE_FIELD):
            column = field[len(TYPE_FIELD) :]
            if column in current and value and value != current[column]:
                types[column] = value
    if types != (upload.get("types") or {}):
        changes["types"] = types
    return changes


def _current(upload_id: str) -> dict[str, Any]:
    """The staged upload's preview; for the page's script, an expired one is a message in
    place (a plain form gets the usual 404 page)."""
    try:
        return api().get(_upload_path(upload_id))["upload"]
    except BackendError as exc:
        if exc.status == 404 and _partial():
            raise _Gone(exc) from None
        raise


class _Gone(Exception):
    def __init__(self, error: BackendError) -> None:
        super().__init__(error.message)
        self.error = error


@bp.errorhandler(_Gone)
def _gone(exc: _Gone):
    body = render_template("datasets/_upload_result.html", result=None, error=exc.error)
    return body, 404, FRAGMENT_HEADER


@bp.post("/_uploads/<upload_id>")
def update(upload_id: str):
    """The options form: read the staged file again with what was changed."""
    client = api()
    upload = _current(upload_id)
    form = request.form
    changes = _changes(form, upload)
    if "reset_types" in form:
        changes["types"] = {}
    if not changes:
        return _render(upload, 200) if _partial() else _back(upload_id)
    if "skip" in changes and changes["skip"] is not None:
        try:
            changes["skip"] = int(changes["skip"])
        except ValueError:
            error = BackendError(400, "invalid_option", "Lines to skip must be a whole number.")
            return _render(upload, 400, error=error)
    try:
        upload = client.patch(_upload_path(upload_id), json=changes)["upload"]
    except BackendError as exc:
        if exc.status == 404 and _partial():
            raise _Gone(exc) from None
        if isinstance(exc, BackendUnavailable) or exc.status in (401, 403, 404):
            raise
        return _render(upload, exc.status if 400 <= exc.status < 500 else 400, error=exc)
    return _render(upload, 200) if _partial() else _back(upload_id)


def _back(upload_id: str):
    return redirect(url_for("uploads.show", upload_id=upload_id), 303)


@bp.post("/_uploads/<upload_id>/load")
def load(upload_id: str):
    client = api()
    form = request.form
    name = form.get("name", "").strip()
    mode = form.get("mode", "create")
    body = {"mode": mode, **({"name": name} if name else {})}
    try:
        result = client.post(
            _upload_path(upload_id, "load"), json=body, read_timeout_s=UPLOAD_READ_TIMEOUT_S
        )
    except BackendError as exc:
        if exc.status == 404 and _partial():
            raise _Gone(exc) from None
        if isinstance(exc, BackendUnavailable) or exc.status in (401, 403, 404):
            raise
        upload = _current(upload_id)
        # Busy (the backend's queue of heavy work is full) stays a 503: try again shortly.
        status = exc.status if 400 <= exc.status < 500 else 400
        if exc.code == "server_busy":
            status = 503
        return _render(upload, status, error=exc, load_name=name, load_mode=mode)
    if _partial():
        body_html = render_template("datasets/_upload_result.html", result=result, error=None)
        return body_html, 201, FRAGMENT_HEADER
    return render_template("datasets/uploaded.html", result=result), 201


@bp.post("/_uploads/<upload_id>/discard")
def discard(upload_id: str):
    try:
        api().delete(_upload_path(upload_id))
    except BackendError as exc:
        # Gone already (expired or loaded) is what was asked for.
        if exc.status != 404:
            raise
    if _partial():
        return "", 204
    return redirect(url_for("datasets.index"), 303)
