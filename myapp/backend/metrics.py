"""The backend's Prometheus metrics: one registry per app, small hooks for the routes.

The backend runs as exactly one process (DuckDB's file lock), so its metrics live in that
process and need none of prometheus-client's multiprocess machinery; the scrape reads them
directly. Routes and responses report through the functions below (`query_run`,
`observe_upload`, `observe_export`, `signin_failed`, …) so the counting stays in this one
module; what is read at scrape time (DuckDB's memory, spill files, side instances) is
gathered by a collector when /api/metrics is asked for.

/api/metrics answers admins, and also a caller that sends MYAPP_METRICS_TOKEN as its bearer
token: a Prometheus scraper then needs no account. That token is checked here, before the
access gate, and opens this one path only.
"""

from __future__ import annotations

import hmac
import logging
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from myapp import __version__

from .errors import AppError
from .operations import operations_of
from .store import engine

log = logging.getLogger("myapp.backend.metrics")

METRICS_PATH = "/api/metrics"
# Requests that match no route are counted under one label, so a scan of random URLs cannot
# create a time series per URL.
UNMATCHED = "unmatched"
# Role all serves the pages from the same process: they are counted under one label here
# (per-page detail is the frontend's own access log).
PAGES = "pages"

# Page and API calls are mostly milliseconds; queries and exports run up to minutes.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WORK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# Error codes of a query run that are outcomes of their own; any other error is "error".
_QUERY_OUTCOMES = {
    "query_timeout": "timeout",
    "query_cancelled": "cancelled",
    "result_too_large": "too_large",
    "query_too_complex": "too_large",
    "busy": "busy",
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "myapp_http_requests",
            "HTTP requests answered by the backend, by route template, method and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "myapp_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            ["method", "route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "myapp_http_requests_in_flight", "Requests being answered now.", registry=r
        )
        self.query_runs = Counter(
            "myapp_query_runs",
            "SQL runs (ad hoc, saved, charts) by outcome: ok, error, timeout, cancelled.",
            ["kind", "outcome"],
            registry=r,
        )
        self.query_seconds = Histogram(
            "myapp_query_duration_seconds",
            "Time a SQL run took, whatever its outcome.",
            ["kind"],
            buckets=WORK_BUCKETS,
            registry=r,
        )
        self.upload_bytes = Counter(
            "myapp_upload_bytes", "Bytes of data files received by uploads.", registry=r
        )
        self.uploads = Counter(
            "myapp_uploads", "Uploads by outcome (ok or error).", ["outcome"], registry=r
        )
        self.upload_seconds = Histogram(
            "myapp_upload_duration_seconds",
            "Time an upload took, receiving and loading.",
            buckets=WORK_BUCKETS,
            registry=r,
        )
        self.export_bytes = Counter(
            "myapp_export_bytes", "Bytes sent by exports and data downloads.", ["kind"], registry=r
        )
        self.exports = Counter(
            "myapp_exports",
            "Exports and data downloads by outcome (ok, error, aborted).",
            ["kind", "outcome"],
            registry=r,
        )
        self.export_seconds = Histogram(
            "myapp_export_duration_seconds",
            "Time an export or data download took to send.",
            ["kind"],
            buckets=WORK_BUCKETS,
            registry=r,
        )
        self.signin_failures = Counter(
            "myapp_signin_failures", "Sign-ins refused for a wrong name or password.", registry=r
        )
        self.signin_throttled = Counter(
            "myapp_signin_throttled",
            "Sign-ins refused because of too many recent failures.",
            registry=r,
        )
        self.build = Info("myapp_build", "Versions of myapp, DuckDB and Python.", registry=r)
        self.build.info(
            {
                "version": __version__,
                "duckdb": engine.VERSION,
                "python": platform.python_version(),
            }
        )
        self.database = None
        self.settings = None
        self.workers = None
        # The heavy-work admission (admission.HeavyWork), read when scraped.
        self.heavy = None
        self.registry.register(_LiveCollector(self))

    def attach(self, database: Any, settings: Any) -> None:
        """What the scrape-time collector reads: the open database and the spill dir."""
        self.database = database
        self.settings = settings

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector:
    """Values read when scraped: DuckDB's memory and spill, side instances."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self):
        return []

    def collect(self):
        from .store import storage

        slots = GaugeMetricFamily(
            "myapp_side_instances",
            "DuckDB side instances (loads, exports) in use, waiting for a slot, and the limit.",
            labels=["state"],
        )
        in_use, waiting = storage.side_instance_counts()
        slots.add_metric(["in_use"], in_use)
        slots.add_metric(["waiting"], waiting)
        slots.add_metric(["limit"], storage.SIDE_INSTANCE_SLOTS)
        yield slots

        workers = self.metrics.workers
        if workers is not None:
            pools = GaugeMetricFamily(
                "myapp_query_workers",
                "Worker processes that run user SQL, by pool: running, and idle among them.",
                labels=["pool", "state"],
            )
            for pool in (workers.interactive, workers.bulk):
                running, idle = pool.counts()
                pools.add_metric([pool.config.name, "running"], running)
                pools.add_metric([pool.config.name, "idle"], idle)
            yield pools

        heavy = self.metrics.heavy
        if heavy is not None:
            turns = GaugeMetricFamily(
                "myapp_heavy_requests",
                "Heavy requests (uploads, exports, profiles, backups) running in a slot, and "
                "waiting in the queue for one.",
                labels=["state"],
            )
            turns.add_metric(["running"], heavy.running)
            turns.add_metric(["waiting"], heavy.waiting)
            yield turns
            refused = CounterMetricFamily(
                "myapp_heavy_refused",
                "Heavy requests answered 503 server_busy: the queue was full or the wait ran out.",
            )
            refused.add_metric([], heavy.refused)
            yield refused

        memory = GaugeMetricFamily(
            "myapp_duckdb_memory_bytes",
            "Memory held by the main DuckDB instance's buffer manager (duckdb_memory()).",
        )
        temporary = GaugeMetricFamily(
            "myapp_duckdb_temporary_storage_bytes",
            "Bytes the main DuckDB instance has spilled to temporary files (duckdb_memory()).",
        )
        database = self.metrics.database
        if database is not None:
            try:
                with database.cursor() as cur:
                    held, spilled = engine.memory_in_use(cur)
                memory.add_metric([], float(held))
                temporary.add_metric([], float(spilled))
            except Exception as exc:
                # A scrape must not fail because the database is closing or busy.
                log.debug("duckdb_memory() not read: %s", exc)
        yield memory
        yield temporary

        spill = GaugeMetricFamily(
            "myapp_spill_dir_bytes",
            "Bytes on disk in the spill directory (all instances' temporary files).",
        )
        settings = self.metrics.settings
        if settings is not None:
            spill.add_metric([], float(_dir_bytes(settings.spill_dir)))
        yield spill


def _dir_bytes(path) -> int:
    total = 0
    try:
        for entry in path.rglob("*"):
            try:
                if entry.is_file():
                    total += entry.stat().st_size
            except OSError:
                continue
    except OSError:
        return 0
    return total


def metrics_of(scope_or_request: Any) -> Metrics | None:
    app = (
        scope_or_request.get("app")
        if isinstance(scope_or_request, dict)
        else getattr(scope_or_request, "app", None)
    )
    state = getattr(app, "state", None)
    return getattr(state, "metrics", None)


# -- hooks for routes and responses ---------------------------------------------------------
@contextmanager
def query_run(request: Any, kind: str) -> Iterator[None]:
    """Count one SQL run and its time around the call that runs it."""
    metrics = metrics_of(request)
    started = time.perf_counter()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    except AppError as exc:
        outcome = _QUERY_OUTCOMES.get(exc.code, "error")
        raise
    finally:
        if metrics is not None:
            metrics.query_runs.labels(kind, outcome).inc()
            metrics.query_seconds.labels(kind).observe(time.perf_counter() - started)


def observe_upload(request: Any, size: int, seconds: float, ok: bool) -> None:
    metrics = metrics_of(request)
    if metrics is None:
        return
    metrics.uploads.labels("ok" if ok else "error").inc()
    if ok:
        metrics.upload_bytes.inc(size)
        metrics.upload_seconds.observe(seconds)


def observe_export(scope: Scope, kind: str, size: int, seconds: float, outcome: str) -> None:
    metrics = metrics_of(scope)
    if metrics is None:
        return
    metrics.exports.labels(kind, outcome).inc()
    metrics.export_bytes.labels(kind).inc(size)
    metrics.export_seconds.labels(kind).observe(seconds)


def signin_failed(request: Any) -> None:
    metrics = metrics_of(request)
    if metrics is not None:
        metrics.signin_failures.inc()


def signin_throttled(request: Any) -> None:
    metrics = metrics_of(request)
    if metrics is not None:
        metrics.signin_throttled.inc()


def metrics_response(metrics: Metrics) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts every request by its route template, and answers the metrics token.

    It sits outside the access gate so that MYAPP_METRICS_TOKEN, which is no account's token,
    reaches /api/metrics without being refused as an unknown token; any other caller of that
    path goes on to the route, which requires an admin.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        api: Any = None,
        token: str | None = None,
        pages: bool = False,
    ) -> None:
        self.app = app
        self.pages = pages
        self.metrics = metrics
        self.api = api
        self.operations = operations_of(api) if api is not None else None
        self.token = token.encode("utf-8") if token else None

    def _template(self, method: str, path: str) -> str:
        """The route template a path belongs to, from the app's own routes.

        Matched here rather than read from the scope: where FastAPI leaves the matched route
        (and whether its path includes the router's prefix) has changed between versions.
        """
        if not path.startswith("/api/"):
            return PAGES if self.pages and path != "/api" else UNMATCHED
        if self.operations is None:
            return UNMATCHED
        exact, path_only = self.operations.find(method, path)
        if exact is None and method == "HEAD":
            exact = self.operations.find("GET", path).exact
        operation = exact or path_only
        return operation.template if operation is not None else UNMATCHED

    def _scraper(self, scope: Scope) -> bool:
        if self.token is None:
            return False
        header = HTTPConnection(scope).headers.get("authorization", "")
        scheme, _, credential = header.strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credential.strip().encode("utf-8"), self.token
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == METRICS_PATH and scope["method"] == "GET" and self._scraper(scope):
            await metrics_response(self.metrics)(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            method = scope["method"]
            template = self._template(method, scope["path"])
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.request_seconds.labels(method, template).observe(
                time.perf_counter() - started
            )
