"""create_web(settings, api=None): the frontend's Flask application."""

from __future__ import annotations

import logging
import secrets
import time

from flask import Flask, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from myapp import __version__
from myapp.contract import browser_config
from myapp.logs import (
    REQUEST_ID_HEADER,
    log_request,
    request_id_from,
    reset_request_id,
    set_request_id,
)
from myapp.settings import Settings

from .api_client import ApiClient, BackendError, BackendUnavailable
from .security import install_security
from .views import (
    account,
    dashboards,
    datasets,
    formatting,
    home,
    saved_queries,
    sharing,
    sql,
    uploads,
)

log = logging.getLogger("myapp.frontend")

BLUEPRINTS = (
    formatting.bp,
    home.bp,
    account.bp,
    datasets.bp,
    uploads.bp,
    sql.bp,
    saved_queries.bp,
    dashboards.bp,
    sharing.bp,
)

# Main navigation; an entry shows once a blueprint provides its endpoint.
NAV_ITEMS = (
    ("datasets.index", "Datasets"),
    ("sql.editor", "SQL"),
    ("queries.index", "Queries"),
    ("dashboards.index", "Dashboards"),
)


def create_web(
    settings: Settings, api: ApiClient | None = None, *, role: str = "frontend"
) -> Flask:
    app = Flask(__name__)
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    # On loopback without a configured key, a per-process random key is safe: nobody else can
    # reach the server, and sessions simply end when it restarts. Settings.check refuses a
    # missing key on any other bind.
    app.secret_key = secret or secrets.token_urlsafe(32)
    app.config.update(
        MAX_CONTENT_LENGTH=None,  # uploads stream through to the backend, which enforces the limit
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.extensions["myapp.settings"] = settings
    app.extensions["myapp.api"] = api or ApiClient(
        settings.backend_url, read_timeout_s=settings.backend_timeout_s
    )
    # The contract's rules that page scripts apply, as every page's JSON block (base.html).
    app.jinja_env.globals.update(app_version=__version__, contract_config=browser_config())

    if settings.proxy_hops:
        # Trust X-Forwarded-* only from as many proxies as are really in front of us.
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)

    @app.before_request
    def _start() -> None:
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        g.request_id_context = set_request_id(g.request_id)
        g.started = time.perf_counter()
        g.client_ip = request.remote_addr

    @app.after_request
    def _finish(response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        retry_after = g.get("retry_after")
        if response.status_code == 503 and retry_after and "Retry-After" not in response.headers:
            # The backend's queue of heavy work was full: say when to come back, as it did.
            response.headers["Retry-After"] = retry_after
        g.status = response.status_code
        return response

    @app.teardown_request
    def _log(exc: BaseException | None) -> None:
        context = g.pop("request_id_context", None)
        try:
            _access_line(exc)
        finally:
            if context is not None:
                reset_request_id(context)

    def _access_line(exc: BaseException | None) -> None:
        started = g.get("started")
        if started is None or role == "all":
            # In role all the ASGI middleware around both apps writes the access line.
            return
        status = g.get("status", 500 if exc else 200)
        log_request(
            role,
            request.method,
            request.path,
            status,
            (time.perf_counter() - started) * 1000,
            g.get("request_id", "-"),
            request.remote_addr or "-",
        )

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", version=__version__)

    for bp in BLUEPRINTS:
        app.register_blueprint(bp)

    nav_items = [
        (endpoint, label) for endpoint, label in NAV_ITEMS if endpoint in app.view_functions
    ]

    @app.context_processor
    def _nav():
        return {"nav_items": nav_items}

    _install_error_pages(app)
    # Last: it wraps the error pages (a 401 from the backend becomes the sign-in page).
    install_security(app)
    return app


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def _install_error_pages(app: Flask) -> None:
    def page(status: int, title: str, message: str, code: str):
        if _wants_json():
            return jsonify(error={"code": code, "message": message}), status
        return render_template(
            "errors/error.html", status=status, title=title, message=message
        ), status

    @app.errorhandler(BackendUnavailable)
    def _backend_down(exc: BackendUnavailable):
        log.warning("backend unavailable: %s", exc.message)
        return page(
            503,
            "The data service is not available",
            "myapp's backend cannot be reached right now, so no data can be shown. "
            "This page works again as soon as the backend is back; try again in a moment. "
            f"({exc.message})",
            exc.code,
        )

    @app.errorhandler(BackendError)
    def _backend_error(exc: BackendError):
        if exc.code == "server_busy":
            retry = g.get("retry_after") or "a few"
            return page(
                503,
                "Busy right now",
                "myapp is busy with other uploads, exports and profiles at the moment, and this "
                f"one waits its turn. Try again in {retry} seconds; browsing and queries keep "
                "working meanwhile.",
                exc.code,
            )
        status = exc.status if 400 <= exc.status < 600 else 502
        title = {
            401: "Please sign in",
            403: "Not allowed",
            404: "Not found",
            507: "The server's disk is full",
        }.get(status, "Something went wrong")
        return page(status, title, exc.message, exc.code)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        messages = {
            404: "There is no page at this address. Check the link, or start from the home page.",
            405: "This page does not accept that kind of request.",
        }
        return page(
            status,
            exc.name,
            messages.get(status, exc.description or exc.name),
            exc.name.lower().replace(" ", "_"),
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return page(
            500,
            "Something went wrong",
            "An unexpected error happened and was logged. Try again, and tell your administrator "
            f"if it keeps happening (request id {g.get('request_id', '-')}).",
            "internal_error",
        )
