"""Running the roles: gunicorn for backend and frontend, one uvicorn process for `all`.

Apps are built inside the serving process (gunicorn's load() runs in the worker), never at
import time, so DuckDB is opened only where requests are served.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from myapp.logs import configure_logging
from myapp.settings import Settings

log = logging.getLogger("myapp.server")

# Gunicorn kills a worker that has not checked in for this long. The backend's worker may spend
# the lock wait in its lifespan before it checks in, so the allowance grows with that wait.
WORKER_TIMEOUT_FLOOR_S = 60


class ServeError(RuntimeError):
    """The server cannot start; the message is one line for the person running it."""


def _log_config(level: str, fmt: str = "plain") -> dict[str, Any]:
    """Gunicorn's loggers go to stdout through the root logger, in our one format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"myapp": {"()": "myapp.logs.make_formatter", "fmt": fmt}},
        "filters": {"context": {"()": "myapp.logs.RequestContextFilter"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "myapp",
                "filters": ["context"],
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


class GunicornApp(BaseApplication):
    def __init__(
        self, factory: Callable[[], Any], options: dict[str, Any], level: str, fmt: str = "plain"
    ) -> None:
        self.factory = factory
        self.options = options
        self.level = level
        self.fmt = fmt
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Runs in the worker after fork: our handlers replace the ones the worker installed.
        configure_logging(self.level, self.fmt)
        return self.factory()


def wait_for_database_lock(path: Path, timeout_s: float) -> None:
    """The backend's wait for another process's lock on its database, as a one-line error."""
    from myapp.backend.store.lockfile import DatabaseLockedError, wait_for_lock

    try:
        wait_for_lock(path, timeout_s)
    except DatabaseLockedError as exc:
        raise ServeError(str(exc)) from None
    except OSError as exc:
        raise ServeError(f"cannot open the database file {path}: {exc.strerror}") from None


def check_files_readable(settings: Settings) -> None:
    """Refuse to start, in one line, on database files this DuckDB cannot read (a workspace
    written by DuckDB 2.x's newest format, served with DuckDB 1.4): the worker would otherwise
    fail to open them and be restarted forever."""
    from myapp.backend.store.file_format import UnreadableFile, check_readable

    paths = [settings.database_path]
    if settings.datasets_dir.is_dir():
        paths += sorted(settings.datasets_dir.glob("*.duckdb"))
    try:
        check_readable(paths)
    except UnreadableFile as exc:
        raise ServeError(str(exc)) from None


def self_url(host: str, port: int) -> str:
    """Where the pages of the `all` role reach their own /api."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind is reachable on loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def serve_backend(settings: Settings, host: str, port: int) -> None:
    from myapp.backend.app import create_api
    from myapp.http_limits import bounded_worker

    wait_for_database_lock(settings.database_path, settings.lock_timeout_s)
    check_files_readable(settings)
    GunicornApp(
        lambda: create_api(settings),
        {
            "bind": _bind(host, port),
            # DuckDB allows one process per database file: one worker, concurrency by threads.
            "workers": 1,
            # uvicorn's worker with bounds on request lines and headers and a deadline for
            # them (see http_limits.py).
            "worker_class": bounded_worker(settings.header_timeout_s),
            "graceful_timeout": settings.graceful_timeout_s,
            "timeout": max(WORKER_TIMEOUT_FLOOR_S, int(settings.lock_timeout_s) + 30),
            "keepalive": 5,
            "forwarded_allow_ips": settings.forwarded_allow_ips,
            "proc_name": "myapp-backend",
            "logconfig_dict": _log_config(settings.log_level, settings.log_format),
            "accesslog": None,
            # The control socket could add workers at run time (two backends would fight over
            # the database lock), and two roles on one host would share its default path.
            "control_socket_disable": True,
        },
        settings.log_level,
        settings.log_format,
    ).run()


def serve_frontend(settings: Settings, host: str, port: int) -> None:
    from myapp.frontend.app import create_web

    GunicornApp(
        lambda: create_web(settings),
        {
            "bind": _bind(host, port),
            "workers": settings.workers or 2,
            "worker_class": "gthread",
            "threads": settings.web_threads,
            "graceful_timeout": settings.graceful_timeout_s,
            # A page may wait on a query for as long as the query time limit allows.
            "timeout": max(WORKER_TIMEOUT_FLOOR_S, settings.query_timeout_ms // 1000 + 30),
            "keepalive": 5,
            "forwarded_allow_ips": settings.forwarded_allow_ips,
            "proc_name": "myapp-frontend",
            "logconfig_dict": _log_config(settings.log_level, settings.log_format),
            "accesslog": None,
            # The control socket could add workers at run time (two backends would fight over
            # the database lock), and two roles on one host would share its default path.
            "control_socket_disable": True,
        },
        settings.log_level,
        settings.log_format,
    ).run()


def serve_all(settings: Settings, host: str, port: int) -> int:
    import uvicorn

    from myapp.asgi import create_all
    from myapp.http_limits import bounded_protocol

    wait_for_database_lock(settings.database_path, settings.lock_timeout_s)
    check_files_readable(settings)
    config = uvicorn.Config(
        create_all(settings),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        lifespan="on",
        http=bounded_protocol(settings.header_timeout_s),
    )
    server = uvicorn.Server(config)

    # uvicorn re-raises the signal that stopped it once it has shut down; a no-op handler makes
    # that re-raise harmless so a drained SIGTERM ends with exit code 0.
    def _ignore(signum: int, frame: object) -> None:
        return None

    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    server.run()
    if not server.started:
        return 3
    return 0


def serve_reload(role: str, host: str, port: int, level: str) -> None:
    """Development: uvicorn with auto-reload; the app is rebuilt from the environment."""
    import uvicorn

    factory = {
        "backend": "myapp.asgi:backend_from_environment",
        "frontend": "myapp.asgi:frontend_from_environment",
        "all": "myapp.asgi:all_from_environment",
    }[role]
    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        reload=True,
        reload_dirs=[str(Path(__file__).parent)],
        log_config=None,
        access_log=False,
        log_level=level,
    )


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_role(settings: Settings, role: str, host: str, port: int, reload: bool) -> int:
    configure_logging(settings.log_level, settings.log_format, role)
    if reload:
        serve_reload(role, host, port, settings.log_level)
        return 0
    if role == "backend":
        serve_backend(settings, host, port)
    elif role == "frontend":
        serve_frontend(settings, host, port)
    else:
        return serve_all(settings, host, port)
    return 0
