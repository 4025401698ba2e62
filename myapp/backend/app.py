"""create_api(settings): the backend's FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware

from myapp import __version__
from myapp.models import ErrorBody
from myapp.settings import Settings

from .admission import HeavyAdmission, HeavyWork
from .auth import install_security
from .auth.startup import bootstrap
from .errors import install_error_handlers
from .lake.breaker import CatalogBreaker
from .lake.runs import SharedRuns
from .metrics import Metrics, MetricsMiddleware
from .middleware import BodyLimit, RequestLogMiddleware
from .routes import (
    audit,
    auth,
    backups,
    dashboards,
    data_urls,
    dataset_versions,
    datasets,
    health,
    metrics,
    query,
    saved_queries,
    shares,
    tokens,
    uploads,
    users,
)
from .store.database import Database
from .store.parquet_files import ParquetFiles
from .store.results import ResultCache
from .store.runlog import RunLog
from .store.usersql.functions import unclassified
from .store.usersql.workers import Workers

log = logging.getLogger("myapp.backend")

API_PREFIX = "/api"
STATIC_DIR = Path(__file__).parent / "static"
SWAGGER_DIR = "swagger-ui-5.35.0"

# Busiest first: FastAPI tries the routers in this order on every request, and reaching the
# ninth cost POST /api/query ~0.13 ms before it ran (tests/unit/test_routes.py checks that no
# router takes another's paths).
ROUTERS = (
    query,
    health,
    datasets,
    dataset_versions,
    saved_queries,
    dashboards,
    shares,
    data_urls,
    auth,
    users,
    tokens,
    uploads,
    audit,
    backups,
    metrics,
)


def create_api(settings: Settings, *, role: str = "backend") -> FastAPI:
    """Build the API. DuckDB is opened in the lifespan, not here, so building is cheap and safe."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings)
        # Opening may wait for a lock held by another process; keep the event loop free.
        await run_in_threadpool(database.open)
        app.state.database = database
        app.state.results.run_log = RunLog(database)
        app.state.metrics.attach(database, settings)
        # User SQL runs in worker processes (store/usersql/workers.py), started before the
        # first request so that no query pays their start-up.
        workers = Workers(settings)
        # The lake mode: this backend's query runs are seen and cancelled through the others.
        shared_runs = SharedRuns(lambda: database, workers.runs) if settings.lake_mode else None
        try:
            if shared_runs is not None:
                shared_runs.start()
            await run_in_threadpool(workers.start)
            app.state.workers = workers
            app.state.metrics.workers = workers
            # Applies MYAPP_ADMIN_PASSWORD; inside the try so the database closes if it fails.
            await run_in_threadpool(bootstrap, app)
            with database.cursor() as cur:
                unreviewed = unclassified(cur)
            if unreviewed:
                log.warning(
                    "DuckDB has functions the reviewed list does not mention (refused in "
                    "queries until reviewed in store/usersql/functions.tsv): %s",
                    ", ".join(unreviewed),
                )
            yield
        finally:
            # The run counts not written yet; a failure is logged, the rest still closes.
            await run_in_threadpool(app.state.results.run_log.flush)
            if shared_runs is not None:
                await run_in_threadpool(shared_runs.stop)
            await run_in_threadpool(workers.close)
            await run_in_threadpool(database.close)

    app = FastAPI(
        title="myapp API",
        version=__version__,
        description=(
            "Every action of myapp as JSON: datasets, SQL queries, saved queries, exports, "
            'tokens. Errors always have the body `{"error": {"code", "message", "detail"}}`.'
        ),
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
        responses={
            "4XX": {"model": ErrorBody, "description": "A request the client can correct"},
            "5XX": {"model": ErrorBody, "description": "A failure on the server"},
        },
    )
    app.state.settings = settings
    app.state.parquet_files = ParquetFiles(settings)
    # Results of saved queries for dashboards and share links; owned by this app, so a fresh
    # app (a test, a restart) starts empty.
    app.state.results = ResultCache()
    install_error_handlers(app)
    app.add_middleware(RequestLogMiddleware, role=role)

    for module in ROUTERS:
        app.include_router(module.router, prefix=API_PREFIX)

    app.mount(
        f"{API_PREFIX}/static",
        StaticFiles(directory=STATIC_DIR),
        name="api-static",
    )

    @app.get(f"{API_PREFIX}/docs", include_in_schema=False)
    def read_docs(request: Request) -> HTMLResponse:
        static = f"{API_PREFIX}/static/{SWAGGER_DIR}"
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "",
            title="myapp API",
            swagger_js_url=f"{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{static}/swagger-ui.css",
            swagger_favicon_url=f"{static}/favicon-32x32.png",
        )
        # Dark mode for the vendored Swagger UI, which has none of its own.
        dark = f'<link rel="stylesheet" href="{API_PREFIX}/static/swagger-dark.css">'
        return HTMLResponse(bytes(page.body).decode().replace("</head>", dark + "</head>", 1))

    install_security(app, settings, docs_path=f"{API_PREFIX}/docs")
    # Innermost, after the access gate: a caller without access is refused before any body.
    app.user_middleware.append(Middleware(BodyLimit))
    # Inside the gate too: a caller without access never takes a turn of heavy work.
    app.state.heavy = HeavyWork(settings.heavy_slots, settings.heavy_queue, settings.heavy_wait_s)
    app.user_middleware.append(Middleware(HeavyAdmission, heavy=app.state.heavy))
    if settings.lake_mode:
        app.user_middleware.append(Middleware(CatalogBreaker))
    # Right inside the request log, outside the access gate (see metrics.py).
    app.state.metrics = Metrics()
    app.state.metrics.heavy = app.state.heavy
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    app.user_middleware.insert(
        1,
        Middleware(
            MetricsMiddleware, metrics=app.state.metrics, api=app, token=token, pages=role == "all"
        ),
    )
    return app
