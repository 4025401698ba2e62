"""Attaching the DuckLake to a DuckDB connection: the extensions, the ATTACH, the worker sandbox.

Measured with DuckDB 1.4.4 against PostgreSQL 15 (tests/lake/test_lake_attach.py):

- DuckLake's own tables go to a schema of their own in the catalog database (`METADATA_SCHEMA`),
  so myapp's tables can live beside them in the same database without sharing a namespace.
- A connection that attaches the lake `READ_ONLY` and then applies the query sandbox
  (`allowed_directories` = the data path, `enable_external_access = false`, then
  `lock_configuration`) keeps reading, sees what other processes commit afterwards, and refuses
  writes to the lake, files outside the data path and any further ATTACH. That is how query
  and export workers attach it; loads attach it read-write in processes that run no user SQL.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import duckdb

from myapp.settings import Settings

# What the lake is called inside myapp's DuckDB connections; user SQL never names it (the
# query gate allows datasets only, exposed as views).
ALIAS = "myapp_lake"
# The PostgreSQL schema of DuckLake's own metadata tables.
METADATA_SCHEMA = "ducklake"
EXTENSIONS = ("ducklake", "postgres")
# Far above what any outage uses: DuckDB 1.4.4's postgres extension keeps a pool slot for
# every failed connection attempt (see engine.py).
PG_CONNECTION_LIMIT = 1_000_000


def extension_directory() -> Path | None:
    """The folder of the `duckdb-ext-*` PyPI packages (DuckDB 1.4.4 offline), if installed."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "extensions"
    return folder if folder.is_dir() else None


def load_extensions(conn: duckdb.DuckDBPyConnection) -> None:
    """Load ducklake and postgres: from the PyPI packages when present, else DuckDB's own
    repository (`INSTALL`, which needs the network once)."""
    folder = extension_directory()
    if folder is not None:
        conn.execute("SET extension_directory = $dir", {"dir": str(folder)})
    for name in EXTENSIONS:
        if folder is None:
            conn.execute(f"INSTALL {name}")
        conn.execute(f"LOAD {name}")


def _literal(text: str) -> str:
    # ATTACH takes no parameters: its strings are written as SQL literals.
    return "'" + text.replace("'", "''") + "'"


def libpq(settings: Settings) -> str:
    """The catalog's libpq string without its password, which goes to the environment instead
    (`PGPASSWORD`, set by `use_password`): DuckDB's postgres extension quotes the whole string
    in its connection errors, and those reach logs and, from a worker, users."""
    assert settings.catalog_url is not None
    parts = urlsplit(settings.catalog_url.get_secret_value())
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    if parts.username:
        bare = bare._replace(netloc=f"{parts.username}@{bare.netloc}")
    return Settings(
        catalog_url=urlunsplit(bare), lake_data_path=settings.lake_data_path
    ).catalog_libpq


def use_password(settings: Settings) -> None:
    """Put the catalog URL's password where libpq reads it, for this process and the worker
    processes it starts (the URL itself is in the environment already)."""
    assert settings.catalog_url is not None
    password = urlsplit(settings.catalog_url.get_secret_value()).password
    if password:
        os.environ["PGPASSWORD"] = unquote(password)


def attach_sql(settings: Settings, *, read_only: bool, alias: str = ALIAS) -> str:
    assert settings.lake_mode and settings.lake_data_path is not None
    options = [
        f"DATA_PATH {_literal(settings.lake_data_path)}",
        f"METADATA_SCHEMA {_literal(METADATA_SCHEMA)}",
    ]
    if read_only:
        options.append("READ_ONLY")
    return (
        f"ATTACH {_literal('ducklake:postgres:' + libpq(settings))} "
        f'AS "{alias}" ({", ".join(options)})'
    )


def attach(
    conn: duckdb.DuckDBPyConnection, settings: Settings, *, read_only: bool, alias: str = ALIAS
) -> None:
    use_password(settings)
    load_extensions(conn)
    conn.execute(f"SET pg_connection_limit = {PG_CONNECTION_LIMIT}")
    conn.execute(attach_sql(settings, read_only=read_only, alias=alias))


def sandbox_reader(conn: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """After a read-only attach: only the data path is readable and nothing can be changed.

    Order matters as for the embedded files: allowed_directories cannot be set once external
    access is off, and nothing can be set once the configuration is locked.
    """
    assert settings.lake_data_path is not None
    # Measured with a local directory; an s3:// prefix is expected to work the same way
    # (allowed_directories are prefixes) but is untested here.
    conn.execute("SET allowed_directories = $dirs", {"dirs": [settings.lake_data_path]})
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")
