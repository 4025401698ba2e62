"""The lake mode's PostgreSQL catalog: reaching it at start.

The catalog is reached with psycopg (the `lake` extra), not through DuckDB: accounts, tokens,
sessions and counters are small transactional rows every request reads, and DuckDB's
postgres extension is a way to scan tables, not a connection pool; DuckLake itself reaches
the same database through DuckDB's postgres extension for the datasets' metadata.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from myapp.settings import Settings

# A backend that cannot reach its catalog at start says so instead of waiting on a dead host.
CONNECT_TIMEOUT_S = 5


class CatalogUnavailable(RuntimeError):
    """The catalog cannot be used; the message is one line for the person starting myapp."""


def describe(settings: Settings) -> str:
    """host:port/dbname of the catalog: what a message may show (never the password)."""
    assert settings.catalog_url is not None
    parts = urlsplit(settings.catalog_url.get_secret_value())
    return f"{parts.hostname}:{parts.port or 5432}/{unquote(parts.path.lstrip('/'))}"


def check_catalog(settings: Settings) -> str:
    """Connect, authenticate and ask the server's version; raise CatalogUnavailable if not."""
    try:
        import psycopg
    except ImportError:
        raise CatalogUnavailable(
            "MYAPP_CATALOG_URL: the lake mode needs the PostgreSQL driver psycopg: "
            "pip install 'myapp[lake]'"
        ) from None
    assert settings.catalog_url is not None
    try:
        with psycopg.connect(
            settings.catalog_url.get_secret_value(), connect_timeout=CONNECT_TIMEOUT_S
        ) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CatalogUnavailable(
            f"MYAPP_CATALOG_URL: cannot reach the PostgreSQL catalog at {describe(settings)}: "
            f"{reason}"
        ) from None
    return str(row[0]) if row else "unknown"
