"""Pages: the datasets list with upload, the table browser, the column profile, rename, delete.

Every piece of state of the table page (filters, search, sort, facets, page) lives in its query
string, so any view can be bookmarked and shared. Uploads pass through to the backend as they
arrive (views/streaming.py); nothing here holds a file in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlencode

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
from werkzeug.wrappers import Response

from myapp.contract import filters as filter_ops
from myapp.contract.names import suggested_name

from .. import cells
from ..api_client import BackendError, BackendUnavailable
from ..security import settle_visitor
from . import api
from .sql import EXPORT_FORMATS, export_choice
from .streaming import proxy_download, request_body_chunks
from .table_links import (
    OPERATOR_WORDS,
    OPERATORS,
    STATE_KEYS,
    VALUELESS,
    builder_state,
    chosen_facet_columns,
    filters_of,
    page_links,
    table_url,
)
from .table_state import rows_in_good_state

bp = Blueprint("datasets", __name__, url_prefix="/datasets")

PAGE_SIZES = (25, 50, 100, 250, 500)
DEFAULT_PAGE_SIZE = 50
FACET_SIZE = 8
# Parsing options the upload form passes on to the backend as they are.
UPLOAD_OPTIONS = (
    "mode",
    "format",
    "delimiter",
    "header",
    "quote",
    "encoding",
    "nullstr",
    "types",
    "sheet",
    "skip",
)
# Loading a big file takes a while after its last byte arrived; the page waits for the summary.
UPLOAD_READ_TIMEOUT_S = 3600.0
EXPORT_READ_TIMEOUT_S = 600.0

# Threads of the process for the backend calls a page sends side by side (the table page sends
# up to three beside its own), made once per app: a pool per request cost a start and a join
# of its threads on every page.
PAGE_CALL_THREADS = 32
# Datasets whose columns the table page remembers, to send the facets call before the
# dataset's own answer is in (it is checked against that answer).
KNOWN_COLUMNS_MAX = 512
# Up to this many rows the table page counts its facets itself, beside the rows; above it,
# it shows the facets already counted for its filters and fetches the others after the page
# (a new filter's facets are a scan of their own, +94 to +642 ms on 1M and 5M rows when the
# page waited for them).
FACETS_IN_PAGE_MAX_ROWS = 100_000


def _path(name: str, *rest: str) -> str:
    return "/api/datasets/" + "/".join([quote(name, safe=""), *rest])


def _name_from_filename(filename: str) -> str:
    return suggested_name(filename)


# -- list and upload ----------------------------------------------------------------------


def _listing() -> dict[str, Any]:
    return api().get("/api/datasets")


@bp.get("", strict_slashes=False)
def index():
    listing = _listing()
    return render_template(
        "datasets/index.html",
        datasets=listing["datasets"],
        max_upload_bytes=(listing.get("limits") or {}).get("max_upload_bytes"),
    )


@bp.get("/_list")
def list_partial():
    """The list alone, for the upload page to refresh after an upload."""
    return render_template("datasets/_list.html", datasets=_listing()["datasets"])


# Marks the upload answers the page may insert as they are (anything else is a whole page).
FRAGMENT_HEADER = {"X-Myapp-Fragment": "upload-result"}


def _upload_fragment(status: int, *, result=None, error: BackendError | None = None):
    body = render_template("datasets/_upload_result.html", result=result, error=error)
    return body, status, FRAGMENT_HEADER


def _upload_error(exc: BackendError):
    status = exc.status if 400 <= exc.status < 600 else 502
    if status == 401:
        exc = BackendError(401, exc.code, "Your session has ended: sign in again, then upload.")
    return _upload_fragment(status, error=exc)


@bp.put("/_upload")
def upload_raw():
    """The upload page's XHR: the raw file as the body, forwarded to the backend as it comes.

    Answers an HTML fragment (the summary, or the reason it failed) for the page to show.
    """
    args = request.args
    filename = args.get("filename", "")
    name = args.get("name", "").strip() or _name_from_filename(filename)
    if not name.strip():
        return _upload_fragment(
            400, error=BackendError(400, "missing_name", "Give the dataset a name.")
        )
    params = {key: args[key] for key in UPLOAD_OPTIONS if args.get(key)}
    if filename:
        params["filename"] = filename
    headers = {"Content-Type": "application/octet-stream"}
    if request.content_length is not None:
        # Lets the backend refuse an oversized file from the headers alone.
        headers["Content-Length"] = str(request.content_length)
    try:
        with api().stream(
            "PUT",
            _path(name),
            params=params,
            content=request_body_chunks(),
            headers=headers,
            read_timeout_s=UPLOAD_READ_TIMEOUT_S,
        ) as response:
            result = json.loads(response.read())
    except BackendUnavailable as exc:
        return _upload_fragment(
            503,
            error=BackendError(
                503,
                exc.code,
                "The upload did not reach the end: the data service stopped answering or "
                "closed the connection (a file over the upload limit is cut off this way). "
                "Try again in a moment.",
            ),
        )
    except BackendError as exc:
        return _upload_error(exc)
    return _upload_fragment(201, result=result)


@bp.post("", strict_slashes=False)
def upload_form():
    """Without JavaScript the form posts multipart; it is forwarded unparsed, as it arrives."""
    headers = {"Content-Type": request.headers.get("Content-Type", "")}
    if request.content_length is not None:
        headers["Content-Length"] = str(request.content_length)
    try:
        with api().stream(
            "POST",
            "/api/datasets",
            content=request_body_chunks(),
            headers=headers,
            read_timeout_s=UPLOAD_READ_TIMEOUT_S,
        ) as response:
            result = json.loads(response.read())
    except BackendError as exc:
        if isinstance(exc, BackendUnavailable) or exc.status in (401, 403):
            raise
        listing = _listing()
        return render_template(
            "datasets/index.html",
            datasets=listing["datasets"],
            max_upload_bytes=(listing.get("limits") or {}).get("max_upload_bytes"),
            upload_error=exc,
        ), exc.status if 400 <= exc.status < 500 or exc.status in (503, 507) else 400
    # Post/redirect/get: reloading the page that reports the upload must not send it again.
    # The report rides in the session cookie, so it is cut to what fits one.
    session["upload_result"] = _upload_report(result)
    return redirect(url_for("datasets.upload_done"), 303)


# The session cookie carries the report of an upload once; browsers refuse cookies over 4 KB,
# and the session needs room for its own fields beside it.
_REPORT_MAX_CHARS = 1500


def _upload_report(result: dict[str, Any]) -> dict[str, Any]:
    dataset = result.get("dataset") or {}
    report = {
        "action": result.get("action"),
        "rows_loaded": result.get("rows_loaded"),
        "rows_rejected": result.get("rows_rejected"),
        "dataset": {
            "name": dataset.get("name"),
            "row_count": dataset.get("row_count"),
            "column_count": len(dataset.get("columns") or []),
            "source": dataset.get("source") or {},
        },
        "conversions": result.get("conversions") or [],
        "text_columns": result.get("text_columns") or [],
        "rejects": result.get("rejects") or [],
    }
    for key in ("rejects", "text_columns", "conversions"):
        while report[key] and len(json.dumps(report)) > _REPORT_MAX_CHARS:
            report[key] = report[key][:-1]
    return report


@bp.get("/_uploaded")
def upload_done():
    report = session.pop("upload_result", None)
    if not report:
        return redirect(url_for("datasets.index"))
    return render_template("datasets/uploaded.html", result=report)


# -- the table page -----------------------------------------------------------------------


@bp.get("/<name>")
def table(name: str):
    args = request.args
    if "add_column" in args:
        return _add_filter(name)
    try:
        limit = int(args.get("limit", DEFAULT_PAGE_SIZE))
    except ValueError:
        limit = DEFAULT_PAGE_SIZE
    limit = max(1, min(limit, max(PAGE_SIZES)))
    filters = filters_of(args)
    passthrough = [(k, v) for k, v in args.items(multi=True) if k not in ("facet", "limit")]
    rows_params = [*passthrough, ("limit", str(limit))]
    client = api()
    headers = client.request_headers()
    calls = _page_calls()

    def read_rows(items: list[tuple[str, str]]) -> Any:
        return client.get(_path(name, "rows"), params=items, headers=headers)

    def read_facets(columns: list[str], stored_only: bool) -> Any:
        return _read_facets(client, name, args.items(multi=True), columns, headers, stored_only)

    # Every call goes out at once: the rows (the slow one), who the visitor is (unless the
    # session check asked already), the dataset, and the facets of the columns this dataset
    # had when last seen; the page waits for the slowest call, not for their sum. The
    # dataset's answer decides: facets of other columns are asked for again. Facets of a big
    # dataset are asked for as stored only: a new filter's facets scan would compete with
    # the rows' query for the cores; those facets come after the page (facets_fragment).
    rows_call = calls.submit(rows_in_good_state, read_rows, rows_params)
    me_call = None
    if g.get("visitor") is None:
        me_call = calls.submit(client.get, "/api/auth/me", headers=headers)
    known = _known_columns().get(name)
    guessed: list[str] = []
    guessed_stored = False
    if known is not None:
        guessed = chosen_facet_columns(known, args)
        guessed_stored = _facets_after_page(known)
    facets_call = calls.submit(read_facets, guessed, guessed_stored) if guessed else None
    dataset, moved = _dataset_named(client, name, args, table_url)
    if moved is not None:
        return moved
    facet_columns = chosen_facet_columns(dataset, args)
    stored_only = _facets_after_page(dataset)
    answer: dict[str, Any] | None = None
    if facet_columns:
        try:
            if facets_call is not None and (guessed, guessed_stored) == (
                facet_columns,
                stored_only,
            ):
                answer = facets_call.result()
            else:
                answer = read_facets(facet_columns, stored_only)
        except BackendError as exc:
            if exc.status != 400:
                raise
    page, good, problems = rows_call.result()
    if me_call is not None:
        settle_visitor(me_call.result)
    if facet_columns and (problems or answer is None):
        # Some of the state was refused: the facets count what the page shows.
        answer = _read_facets(client, name, good, facet_columns, headers, stored_only)
    facets: dict[str, list] = answer["facets"] if answer else {}
    facet_timeouts: list[str] = answer.get("timed_out", []) if answer else []
    pending: list[str] = answer.get("pending", []) if answer else []

    state = list(args.items(multi=True))
    links = page_links(name, args, page, limit, filters, facet_columns)
    if problems:
        # Downloads take what the page shows: the refused parts are left out of them too.
        kept = [(k, v) for k, v in good if k not in STATE_KEYS or k in ("sort", "q")]
        links["export"] = {
            fmt: url_for("datasets.export", name=name)
            + "?"
            + urlencode([*export_choice(fmt).items(), *kept])
            for fmt, _ in EXPORT_FORMATS
        }
    return render_template(
        "datasets/table.html",
        problems=problems,
        bad_filters={(p.key, p.value) for p in problems},
        builder=builder_state(args, problems),
        column_operators={
            c["name"]: [op.key for op in filter_ops.operators_for(c["type"])]
            for c in dataset["columns"]
        },
        dataset=dataset,
        page=page,
        body_rows=cells.render_rows(
            page["rows"], [c["type"] for c in page["columns"]], links["row"]
        ),
        filters=filters,
        operators=OPERATORS,
        operator_words=OPERATOR_WORDS,
        valueless=VALUELESS,
        facets=facets,
        facet_columns=facet_columns,
        facet_timeouts=facet_timeouts,
        pending=pending,
        facets_url=_facets_url(name, state),
        page_sizes=PAGE_SIZES,
        limit=limit,
        sort=args.get("sort", ""),
        q=args.get("q", ""),
        state=state,
        links=links,
        export_formats=EXPORT_FORMATS,
    ), (400 if problems else 200)


def _facet_params(items, columns: list[str]) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in items if k not in STATE_KEYS or k == "q"]
    return kept + [("column", c) for c in columns] + [("size", str(FACET_SIZE))]


def _read_facets(
    client, name: str, items, columns: list[str], headers: dict[str, str], stored_only: bool
) -> Any:
    """The facets call; `headers` from client.request_headers(), as it runs in page_calls."""
    if stored_only:
        headers = {**headers, "Cache-Control": "only-if-cached"}
    params = _facet_params(items, columns)
    return client.get(_path(name, "facets"), params=params, headers=headers)


def _facets_after_page(dataset: dict[str, Any]) -> bool:
    """Whether the table page shows only stored facets and fetches the others after it."""
    return (dataset.get("row_count") or 0) > FACETS_IN_PAGE_MAX_ROWS


def _facets_url(name: str, items) -> str:
    """The facets of a table page's state, on their own (paging does not change them)."""
    kept = [(k, v) for k, v in items if k not in ("cursor", "offset")]
    return table_url(name, kept, endpoint="datasets.facets_fragment")


@bp.get("/<name>/facets")
def facets_fragment(name: str):
    """The facets of a table page's state (its query string): the block the page's script
    puts in place of the facets not counted when the page was made, or, opened as a link
    (no script), a page of its own whose values lead back to the table."""
    args = request.args
    client = api()
    headers = client.request_headers()
    known = _known_columns().get(name)
    guessed = chosen_facet_columns(known, args) if known is not None else []

    def count(columns: list[str]) -> Any:
        def read(items: list[tuple[str, str]]) -> Any:
            return _read_facets(client, name, items, columns, headers, False)

        # A refused filter is left out, as the table page leaves it out of its rows.
        return rows_in_good_state(read, list(args.items(multi=True)))[0]

    guess = _page_calls().submit(count, guessed) if guessed else None
    dataset, moved = _dataset_named(client, name, args, _facets_url)
    if moved is not None:
        return moved
    facet_columns = chosen_facet_columns(dataset, args)
    answer: dict[str, Any] = {"facets": {}}
    if facet_columns:
        answer = guess.result() if guess is not None and guessed == facet_columns else None
        if answer is None:
            answer = count(facet_columns)
    state = [(k, v) for k, v in args.items(multi=True) if k not in ("cursor", "offset")]
    context = {
        "dataset": dataset,
        "facets": answer["facets"],
        "facet_columns": facet_columns,
        "facet_timeouts": answer.get("timed_out", []),
        "pending": [],
        "facets_url": _facets_url(name, state),
        "links": page_links(name, args, {}, DEFAULT_PAGE_SIZE, [], facet_columns),
    }
    if request.headers.get("X-Myapp-Fragment") == "facets":
        body = render_template("datasets/_facets.html", **context)
        return body, 200, {"X-Myapp-Fragment": "facets", "Vary": "X-Myapp-Fragment"}
    back = table_url(name, state)
    return (
        render_template("datasets/facets.html", back=back, **context),
        200,
        {"Vary": "X-Myapp-Fragment"},
    )


def _page_calls() -> ThreadPoolExecutor:
    """The app's pool for a page's concurrent backend calls (made on first use)."""
    pool = current_app.extensions.get("myapp.page_calls")
    if pool is None:
        # No thread starts before the first call: a pool made twice by a race costs nothing.
        made = ThreadPoolExecutor(max_workers=PAGE_CALL_THREADS, thread_name_prefix="page-call")
        pool = current_app.extensions.setdefault("myapp.page_calls", made)
    return pool


def _known_columns() -> dict[str, dict[str, Any]]:
    """Each dataset's columns and row count as the backend last gave them to this app."""
    return current_app.extensions.setdefault("myapp.dataset_columns", {})


def _dataset_named(client: Any, name: str, args: Any, url: Callable[..., str]) -> tuple:
    """The dataset the address names, and a redirect to its stored name's page if they differ."""
    dataset = client.get(_path(name))
    canonical = dataset["name"]
    _remember_columns(canonical, dataset)
    if canonical != name:
        return dataset, redirect(url(canonical, list(args.items(multi=True))))
    return dataset, None


def _remember_columns(name: str, dataset: dict[str, Any]) -> None:
    known = _known_columns()
    seen = {"columns": dataset["columns"], "row_count": dataset.get("row_count")}
    if known.get(name) != seen:
        if len(known) >= KNOWN_COLUMNS_MAX:
            known.clear()
        known[name] = seen


@bp.get("/<name>/row")
def row(name: str):
    """One row of the table page's state, every value whole (what a cut cell links to)."""
    args = request.args
    try:
        offset = max(0, int(args.get("offset", "0")))
    except ValueError:
        offset = 0
    items = [(k, v) for k, v in args.items(multi=True) if k not in ("offset", "cursor", "limit")]
    dataset = api().get(_path(name))
    page = api().get(_path(name, "rows"), params=[*items, ("offset", str(offset)), ("limit", "1")])
    back = [*items, *([("offset", str(offset - offset % DEFAULT_PAGE_SIZE))] if offset else [])]
    return render_template(
        "datasets/row.html",
        dataset=dataset,
        columns=page["columns"],
        values=page["rows"][0] if page["rows"] else None,
        position=offset + 1,
        back=table_url(dataset["name"], back),
    ), (200 if page["rows"] else 404)


def _add_filter(name: str) -> Response:
    """The filter builder's GET form: turn its fields into a `column__op=value` parameter."""
    args = request.args
    column = args.get("add_column", "")
    op = args.get("add_op", "eq")
    value = args.get("add_value", "")
    keep = [
        (k, v)
        for k, v in args.items(multi=True)
        if k not in ("add_column", "add_op", "add_value", "cursor", "offset")
    ]
    if column and op in OPERATOR_WORDS:
        keep.append((f"{column}__{op}", "1" if op in VALUELESS else value))
    return redirect(table_url(name, keep))


@bp.get("/<name>/export")
def export(name: str):
    params = [(k, v) for k, v in request.args.items(multi=True)]
    return proxy_download(
        _path(name, "export"), params=params, read_timeout_s=EXPORT_READ_TIMEOUT_S
    )


# -- profile ------------------------------------------------------------------------------


@bp.get("/<name>/profile")
def profile(name: str):
    dataset = api().get(_path(name))
    if dataset["name"] != name:
        return redirect(url_for("datasets.profile", name=dataset["name"]))
    body = api().get(_path(name, "profile"), read_timeout_s=120.0)
    charts = {}
    for index, column in enumerate(body["columns"]):
        if column.get("histogram"):
            charts[f"histogram-{index}"] = {
                "label": column["name"],
                "labels": [
                    cells.format_value(b["start"], column["type"]) for b in column["histogram"]
                ],
                "counts": [b["count"] for b in column["histogram"]],
            }
    return render_template("datasets/profile.html", dataset=dataset, profile=body, charts=charts)


# -- rename and delete --------------------------------------------------------------------


@bp.route("/<name>/rename", methods=["GET", "POST"])
def rename(name: str):
    dataset = api().get(_path(name))
    error = None
    if request.method == "POST":
        new_name = request.form.get("new_name", "").strip()
        try:
            renamed = api().patch(_path(name), json={"name": new_name})
        except BackendError as exc:
            if isinstance(exc, BackendUnavailable) or exc.status in (401, 403):
                raise
            error = exc.message
        else:
            flash(f"Renamed {dataset['name']} to {renamed['name']}.", "success")
            return redirect(url_for("datasets.table", name=renamed["name"]))
    return render_template("datasets/rename.html", dataset=dataset, error=error), (
        400 if error else 200
    )


@bp.route("/<name>/delete", methods=["GET", "POST"])
def delete(name: str):
    dataset = api().get(_path(name))
    if request.method == "POST":
        if request.form.get("confirm") != dataset["name"]:
            return render_template(
                "datasets/delete.html",
                dataset=dataset,
                error="Type the dataset's name exactly to confirm.",
            ), 400
        api().delete(_path(dataset["name"]))
        flash(f"Deleted the dataset {dataset['name']}.", "success")
        return redirect(url_for("datasets.index"))
    return render_template("datasets/delete.html", dataset=dataset, error=None)


# -- versions -----------------------------------------------------------------------------


@bp.get("/<name>/versions")
def versions(name: str):
    dataset = api().get(_path(name))
    if dataset["name"] != name:
        return redirect(url_for("datasets.versions", name=dataset["name"]))
    listed = api().get(_path(name, "versions"))
    return render_template("datasets/versions.html", dataset=dataset, listed=listed)


@bp.post("/<name>/versions/<int:version>/restore")
def restore_version(name: str, version: int):
    try:
        api().post(_path(name, "versions", str(version), "restore"))
    except BackendError as exc:
        if isinstance(exc, BackendUnavailable) or exc.status in (401, 403):
            raise
        flash(exc.message, "error")
        return redirect(url_for("datasets.versions", name=name))
    flash(f"Version {version} of {name} is the current data again.", "success")
    return redirect(url_for("datasets.versions", name=name))
