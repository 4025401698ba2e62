"""The one Settings object: read from MYAPP_* variables and `.env`, validated once at start.

The CLI builds it (flags override the environment) and passes it down; nothing else reads the
environment. Both roles import this module, so it must stay free of duckdb, FastAPI and Flask.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Role = Literal["backend", "frontend", "all"]

DEFAULT_PORTS: dict[str, int] = {"backend": 12000, "frontend": 12001, "all": 12001}

# Values people copy from examples and forget to change; refused on a public bind.
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", "dev", "please-change"})

GIB = 1024**3


class SettingsError(ValueError):
    """A setting is invalid; the message is one line a person can act on."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MYAPP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    role: Role | None = Field(None, description="Which part to run: backend, frontend or all.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Port (default 12000 backend, 12001 frontend and all)."
    )
    workers: int | None = Field(
        None, ge=1, le=64, description="Worker processes (frontend only; backend is always 1)."
    )
    threads: int | None = Field(
        None, ge=1, le=256, description="DuckDB threads (default: one per core)."
    )
    web_threads: int = Field(8, ge=1, le=256, description="Threads per frontend worker.")

    data_dir: Path = Field(
        Path("data"), description="Directory holding the database and staging files."
    )
    database: Path | None = Field(None, description="DuckDB file (default <data dir>/app.db).")
    backend_url: str = Field(
        "http://127.0.0.1:12000", description="Where the frontend reaches the backend's HTTP API."
    )
    backend_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="Frontend's read timeout for ordinary backend calls."
    )
    secret_key: SecretStr | None = Field(
        None, description="Signs session cookies; required when listening beyond loopback."
    )

    max_upload_bytes: int = Field(2 * GIB, ge=1, description="Largest accepted upload, in bytes.")
    upload_ttl_s: int = Field(
        3600,
        ge=10,
        le=7 * 24 * 3600,
        description="How long a staged upload (POST /api/uploads) is kept after its last change.",
    )
    query_timeout_ms: int = Field(
        30_000, ge=100, le=24 * 3600 * 1000, description="Query time limit."
    )
    max_rows: int = Field(
        10_000, ge=1, le=1_000_000, description="Most rows a query returns as JSON."
    )
    memory_limit: str = Field("4GB", description="DuckDB memory limit, e.g. 4GB.")
    bulk_memory_limit: str = Field(
        "256MB",
        description="Memory limit of the short-lived DuckDB instances that load uploads and "
        "write exports.",
    )
    workbook_memory_limit: str = Field(
        "2GB",
        description="Most memory the short-lived process that reads an uploaded Excel or "
        "OpenDocument workbook may use (its address space is capped at this; the reader holds "
        "a sheet's cells, ~13x the file's size). A workbook that needs more is refused (413).",
    )
    temp_dir_limit: str = Field("20GB", description="Most disk DuckDB may spill to.")
    max_result_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024,
        le=4 * GIB,
        description="Most bytes of JSON a query returns; bigger results are for exports.",
    )
    query_workers: int = Field(
        2, ge=1, le=64, description="Worker processes that run queries and charts."
    )
    query_worker_threads: int = Field(
        2, ge=1, le=256, description="DuckDB threads of each query worker."
    )
    query_worker_memory_limit: str | None = Field(
        None,
        description="DuckDB memory limit of each query worker (default: MYAPP_MEMORY_LIMIT "
        "shared among MYAPP_QUERY_WORKERS); its address space is capped at this plus a margin.",
    )
    export_workers: int = Field(
        2, ge=1, le=64, description="Worker processes that write exports (others queue)."
    )
    export_worker_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="DuckDB threads of each export worker (default: one per core; they run at "
        "MYAPP_EXPORT_WORKER_NICE, so pages and queries still come first).",
    )
    export_worker_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="How much lower the CPU priority of export workers is than the backend's "
        "(nice): an export uses every core nothing else wants, and gives way to pages and "
        "queries the moment they want one.",
    )
    max_exports_per_user: int = Field(
        16,
        ge=1,
        le=1000,
        description="Exports one account may have running or downloading at once (each may "
        "hold up to MYAPP_EXPORT_SPOOL_BYTES of disk); more are answered 429.",
    )
    max_queries_per_user: int = Field(
        8,
        ge=1,
        le=1000,
        description="Queries, charts, dashboard tiles and pages of rows, facets and profiles one "
        "account (or, without one, one address) may have running or waiting at once; more are "
        "answered 429. One caller "
        "never holds every query worker: its runs past all workers but one wait for its own.",
    )
    export_spool_bytes: int = Field(
        32 * 1024 * 1024,
        ge=16 * 1024 * 1024,
        description="Most bytes of an export written ahead of what the client has read.",
    )
    heavy_slots: int = Field(
        1,
        ge=1,
        le=64,
        description="Uploads, exports, profiles and backups that run at once; more wait their "
        "turn, so that pages and queries stay quick.",
    )
    heavy_queue: int = Field(
        16,
        ge=0,
        le=10_000,
        description="Heavy requests that may wait for a turn; more are answered 503 "
        "server_busy with Retry-After.",
    )
    heavy_wait_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="How long a heavy request waits for a turn before it is answered 503.",
    )
    lock_timeout_s: float = Field(
        30.0, ge=0, le=3600, description="How long the backend waits for a locked database file."
    )
    graceful_timeout_s: int = Field(30, ge=1, le=3600, description="Drain time on SIGTERM.")
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="How long a client may take to send a request's line and headers (backend "
        "and all roles); connections that take longer are closed.",
    )

    proxy_hops: int = Field(
        0, ge=0, le=5, description="Reverse proxies in front whose X-Forwarded-* are trusted."
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1", description="Proxy addresses gunicorn trusts for X-Forwarded-* headers."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )
    log_format: Literal["plain", "json"] = Field(
        "plain", description="`json`: one JSON object per log line, with the request id."
    )

    admin_password: SecretStr | None = Field(
        None, description="Creates or resets the `admin` account at backend start."
    )
    admin_token: SecretStr | None = Field(None, description="Accepted as an admin API token.")
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token that may read /api/metrics (and nothing else)."
    )
    public_read: bool = Field(
        False, description="Let anonymous visitors browse and query read-only."
    )
    embed_origins: str = Field(
        "",
        description="Origins (space or comma separated, e.g. https://intranet.example.com) "
        "whose pages may frame share links; no other page may frame myapp.",
    )
    catalog_url: SecretStr | None = Field(
        None,
        description="Lake mode: PostgreSQL URL of the shared catalog, "
        "postgresql://user:password@host:5432/dbname (with MYAPP_LAKE_DATA_PATH).",
    )
    lake_data_path: str | None = Field(
        None,
        description="Lake mode: where the lake's Parquet files live, a directory every backend "
        "mounts (absolute path), or s3://bucket/prefix/ where DuckDB's httpfs is available.",
    )

    @field_validator(
        "memory_limit",
        "bulk_memory_limit",
        "temp_dir_limit",
        "query_worker_memory_limit",
        "workbook_memory_limit",
    )
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip().replace(" ", "")
        number = text.rstrip("KMGTiBb")
        try:
            ok = float(number) > 0 and text[len(number) :].upper() in {
                "",
                "B",
                "KB",
                "MB",
                "GB",
                "TB",
                "KIB",
                "MIB",
                "GIB",
                "TIB",
            }
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"expected a size like 4GB or 512MB, got {value!r}")
        return text

    @field_validator("embed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        origins = value.replace(",", " ").split()
        for origin in origins:
            scheme, sep, rest = origin.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
                raise ValueError(
                    f"{origin!r} is not an origin: write scheme and host, like "
                    "https://intranet.example.com (no path)"
                )
            if any(ch in rest for ch in "'; \"\t"):
                raise ValueError(f"{origin!r} is not an origin")
        return " ".join(origins)

    @field_validator("catalog_url", mode="before")
    @classmethod
    def _catalog_url(cls, value: object) -> object:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or (isinstance(text, str) and not text.strip()):
            return None
        if not isinstance(text, str):
            raise ValueError("expected a postgresql:// URL")
        text = text.strip()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises on a port that is not a number in range
        except ValueError:
            raise ValueError(
                "expected a URL like postgresql://user:password@host:5432/dbname"
            ) from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(
                "expected a PostgreSQL URL, postgresql://user:password@host:5432/dbname "
                f"(the scheme was {parts.scheme or 'missing'!r})"
            )
        if not parts.hostname:
            raise ValueError("the PostgreSQL URL names no host (postgresql://user@HOST/dbname)")
        if not unquote(parts.path.lstrip("/")):
            raise ValueError("the PostgreSQL URL names no database (postgresql://user@host/DBNAME)")
        return text

    @field_validator("lake_data_path")
    @classmethod
    def _lake_data_path(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        text = value.strip()
        if text.startswith("s3://"):
            if not text[len("s3://") :].strip("/"):
                raise ValueError("an s3:// data path needs a bucket, e.g. s3://bucket/lake/")
        elif "://" in text:
            raise ValueError("expected an absolute directory or an s3://bucket/prefix/ URL")
        elif not Path(text).is_absolute():
            raise ValueError(
                "expected an absolute directory (every backend must name the same place)"
            )
        # DuckLake takes the data path as a prefix: one trailing slash, whatever was written.
        return text.rstrip("/") + "/"

    @field_validator("backend_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _database_default(self) -> Settings:
        if self.database is None:
            self.database = self.data_dir / "app.db"
        return self

    # -- derived values -------------------------------------------------------------------
    @property
    def effective_role(self) -> Role:
        return self.role or "all"

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.effective_role]

    @property
    def database_path(self) -> Path:
        assert self.database is not None
        return self.database

    @property
    def datasets_dir(self) -> Path:
        """One DuckDB file per dataset version, written once by a load, then only read."""
        return self.data_dir / "datasets"

    @property
    def staging_dir(self) -> Path:
        """Uploads land here before DuckDB loads them; inside the sandbox's allowed directories."""
        return self.data_dir / ".staging"

    @property
    def export_dir(self) -> Path:
        """DuckDB writes exports here, then they are streamed and deleted."""
        return self.data_dir / ".exports"

    @property
    def spill_dir(self) -> Path:
        return self.data_dir / ".tmp"

    @property
    def query_worker_memory(self) -> str:
        """Each query worker's DuckDB memory limit, in bytes as DuckDB reads them."""
        if self.query_worker_memory_limit:
            return self.query_worker_memory_limit
        return f"{size_bytes(self.memory_limit) // self.query_workers}B"

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.host)

    @property
    def lake_mode(self) -> bool:
        """Datasets in a DuckLake and shared state in PostgreSQL (see docs/deployment/lake.md)."""
        return self.catalog_url is not None and self.lake_data_path is not None

    @property
    def catalog_libpq(self) -> str:
        """The catalog URL as libpq's key=value string, the form DuckDB's postgres extension
        takes after `ducklake:postgres:` (a URL's `@` and `:` would end that prefix's parsing)."""
        assert self.catalog_url is not None
        parts = urlsplit(self.catalog_url.get_secret_value())
        pairs = {
            "dbname": unquote(parts.path.lstrip("/")),
            "host": parts.hostname,
            "port": str(parts.port) if parts.port else None,
            "user": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
        }
        for option in filter(None, parts.query.split("&")):
            key, _, value = option.partition("=")
            pairs[unquote(key)] = unquote(value)
        return " ".join(f"{key}={_libpq_value(v)}" for key, v in pairs.items() if v is not None)

    def check(self, role: Role) -> None:
        """Checks that need the role and the file system; raise SettingsError with one line."""
        if (self.catalog_url is None) != (self.lake_data_path is None):
            given, missing = (
                ("MYAPP_CATALOG_URL", "MYAPP_LAKE_DATA_PATH")
                if self.catalog_url is not None
                else ("MYAPP_LAKE_DATA_PATH", "MYAPP_CATALOG_URL")
            )
            raise SettingsError(
                f"{given} is set but {missing} is not: the lake mode needs both (the catalog "
                "in PostgreSQL and the data path every backend shares); set neither for the "
                "embedded mode"
            )
        if role in ("backend", "all"):
            _check_writable_dir(self.data_dir, "MYAPP_DATA_DIR")
            _check_writable_dir(self.database_path.parent, "MYAPP_DATABASE")
            if self.lake_data_path is not None and not self.lake_data_path.startswith("s3://"):
                _check_writable_dir(Path(self.lake_data_path), "MYAPP_LAKE_DATA_PATH")
        if role in ("frontend", "all") and not self.loopback_only:
            secret = self.secret_key.get_secret_value() if self.secret_key else ""
            if secret.strip().lower() in PLACEHOLDER_SECRETS or len(secret) < 16:
                raise SettingsError(
                    f"MYAPP_SECRET_KEY must be set to a random value of at least 16 characters "
                    f"when listening on {self.host} (it signs session cookies); "
                    "generate one with: "
                    'python -c "import secrets; print(secrets.token_urlsafe(32))"'
                )


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def size_bytes(text: str) -> int:
    """A validated size such as 4GB in bytes, with DuckDB's units (KB = 1000, KiB = 1024)."""
    number = text.rstrip("KMGTiBb")
    return int(float(number) * _UNITS[text[len(number) :].upper()])


def _libpq_value(value: str) -> str:
    """A value of a libpq key=value string: quoted when empty or holding spaces or quotes."""
    if value and not any(ch in value for ch in " '\\\t\n"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Asked of every anonymous request's Host header in open mode; a caller sending endless
# names only cycles the cache.
@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_writable_dir(path: Path, variable: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"{variable}: cannot create directory {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise SettingsError(f"{variable}: {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise SettingsError(f"{variable}: directory {path} is not writable by this user")


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment and `.env`, with non-None overrides (CLI flags) on top.

    Raises SettingsError with a one-line message naming the variable at fault.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "settings"
    value = error.get("input")
    # A secret (a password, or a URL carrying one) is never echoed back.
    model_field = Settings.model_fields.get(str(error["loc"][0]) if error["loc"] else "")
    secret = model_field is not None and "SecretStr" in str(model_field.annotation)
    shown = "" if secret or isinstance(value, dict) or value is None else f" (got {value!r})"
    return f"MYAPP_{field.upper()}: {error['msg']}{shown}"
