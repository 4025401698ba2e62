"""The `myapp` command: serve a role, and client commands that talk to the API."""

from __future__ import annotations

import os
import secrets
import sys
from typing import NoReturn

import click
from pydantic import SecretStr

from myapp import __version__
from myapp.client import ApiError
from myapp.commands.errors import CliError, from_api_error
from myapp.settings import Settings, SettingsError, load_settings

ROLES = ("backend", "frontend", "all")

# Exit code for bad configuration, as for a command-line usage error.
EXIT_CONFIG = 2


def fail(message: str, code: int = EXIT_CONFIG) -> NoReturn:
    raise CliError(message, code)


class MyappGroup(click.Group):
    """Turns the API client's errors into one line and exit 1, for every client command."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            raise from_api_error(exc) from None


@click.group(cls=MyappGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="myapp")
def main() -> None:
    """myapp: a self-hosted data workspace on DuckDB.

    Upload CSV, Parquet and JSON files, browse and profile them, query them with SQL, chart and
    export the results, from a browser or through the JSON API.
    """


@main.command()
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default=None,
    help="What to run: backend (API + DuckDB, :12000), frontend (pages, :12001) or all "
    "(both in one process, :12001). Default: MYAPP_ROLE, else all.",
)
@click.option(
    "--host", default=None, help="Address to listen on. Default: MYAPP_HOST, else 127.0.0.1."
)
@click.option(
    "--port",
    default=None,
    metavar="PORT",
    help="Port to listen on. Default: MYAPP_PORT, else 12000 (backend) or 12001 (frontend, all).",
)
@click.option(
    "--workers",
    default=None,
    metavar="N",
    help="Frontend worker processes (default 2). The backend always runs exactly one.",
)
@click.option("--reload", is_flag=True, help="Restart on code changes (development only).")
def serve(
    role: str | None, host: str | None, port: str | None, workers: str | None, reload: bool
) -> None:
    """Run a role of myapp until stopped (SIGTERM or Ctrl+C drains requests, then exits 0)."""
    from myapp.server import ServeError, run_role, self_url

    try:
        settings = load_settings(role=role, host=host, port=port, workers=workers)
        chosen = settings.effective_role
        listen_port = settings.effective_port
        if chosen == "backend" and (settings.workers or 1) > 1:
            raise SettingsError(
                "the backend runs as exactly one process: DuckDB lets only one process open "
                f"{settings.database_path} (a second fails with 'Could not set lock on file'); "
                "it serves requests concurrently with threads, so leave --workers unset"
            )
        if chosen == "all" and (settings.workers or 1) > 1:
            raise SettingsError(
                "role all runs in one process (it opens DuckDB); "
                "use --role frontend for more workers"
            )
        if chosen == "all":
            # The pages of role all reach the API in the same process, over loopback.
            settings = settings.model_copy(
                update={"backend_url": self_url(settings.host, listen_port)}
            )
        settings.check(chosen)
        if chosen in ("backend", "all"):
            # Before anything binds: a public address nobody can sign in to is refused here.
            from myapp.backend.auth.startup import check_startup

            check_startup(settings)
            if settings.lake_mode:
                _check_lake(settings)
        if settings.secret_key is None or not settings.secret_key.get_secret_value().strip():
            # One key shared by every worker forked below, so a session cookie signed by one
            # worker is accepted by the others (an empty MYAPP_SECRET_KEY= counts as unset).
            settings = settings.model_copy(
                update={"secret_key": SecretStr(secrets.token_urlsafe(32))}
            )
    except SettingsError as exc:
        fail(str(exc))
        return
    except ServeError as exc:
        fail(str(exc), code=1)
        return

    if reload:
        # The reloader rebuilds the app in a fresh process from the environment.
        os.environ.update(
            {
                "MYAPP_ROLE": chosen,
                "MYAPP_HOST": settings.host,
                "MYAPP_PORT": str(listen_port),
                "MYAPP_BACKEND_URL": settings.backend_url,
            }
        )
    try:
        code = run_role(settings, chosen, settings.host, listen_port, reload)
    except ServeError as exc:
        fail(str(exc), code=1)
        return
    sys.exit(code)


def _check_lake(settings: Settings) -> None:
    """The lake settings name a catalog and extensions this backend can use, before anything
    binds."""
    from myapp.backend.lake.catalog import CatalogUnavailable, check_catalog, check_lake

    try:
        check_catalog(settings)
        check_lake(settings)
    except CatalogUnavailable as exc:
        raise SettingsError(str(exc)) from None


def _register_client_commands() -> None:
    from myapp.commands import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_register_client_commands()
