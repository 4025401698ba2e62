"""create_all(settings): the `all` role, FastAPI with the Flask frontend mounted at `/`."""

from __future__ import annotations

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from starlette.routing import Match, Mount
from starlette.types import Scope

from myapp.settings import Settings

# Threads a2wsgi gives the Flask pages. A page waits on its own /api calls, which the event loop
# and Starlette's separate thread pool (40 threads) serve, so page threads never starve the API.
# Sixteen lets a small team load pages concurrently while long SQL pages are in flight, without
# letting a burst of page loads pile up unbounded behind DuckDB's two cores.
WEB_THREADS = 16


class FrontendMount(Mount):
    """Mount for the pages that leaves every /api path to the API, so an unknown /api path or a
    wrong method answers the API's JSON 404/405 rather than an HTML page."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/api" or path.startswith("/api/")):
            return Match.NONE, {}
        return super().matches(scope)


def create_all(settings: Settings) -> FastAPI:
    # Imported here so `import myapp.asgi` stays cheap and the import rule stays visible:
    # only this module knows both roles.
    from myapp.backend.app import create_api
    from myapp.frontend.app import create_web

    api = create_api(settings, role="all")
    web = create_web(settings, role="all")
    # Every /api route is registered above; the pages go last, at /.
    api.router.routes.append(FrontendMount("/", app=WSGIMiddleware(web, workers=WEB_THREADS)))
    return api


# Factories for `myapp serve --reload`: uvicorn re-imports them on every change, and the CLI has
# put its flags into the environment, so settings come from there.
def _settings_from_environment() -> Settings:
    from myapp.logs import configure_logging
    from myapp.settings import load_settings

    settings = load_settings()
    # The reloader's child process starts without the parent's logging setup.
    configure_logging(settings.log_level, settings.log_format)
    return settings


def all_from_environment() -> FastAPI:
    return create_all(_settings_from_environment())


def backend_from_environment() -> FastAPI:
    from myapp.backend.app import create_api

    return create_api(_settings_from_environment())


def frontend_from_environment() -> WSGIMiddleware:
    from myapp.frontend.app import create_web

    return WSGIMiddleware(create_web(_settings_from_environment()), workers=WEB_THREADS)
