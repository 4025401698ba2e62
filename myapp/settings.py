"""The one Settings object: read from MYAPP_* variables and `.env`, validated once at start.

The CLI builds it (flags override the environment) and passes it down; nothing else reads the
environment. Both roles import this module, so it must stay free of duckdb, FastAPI and Flask.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Literal

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
    temp_dir_limit: str = Field("20GB", description="Most disk DuckDB may spill to.")
    lock_timeout_s: float = Field(
        30.0, ge=0, le=3600, description="How long the backend waits for a locked database file."
    )
    graceful_timeout_s: int = Field(30, ge=1, le=3600, description="Drain time on SIGTERM.")

    proxy_hops: int = Field(
        0, ge=0, le=5, description="Reverse proxies in front whose X-Forwarded-* are trusted."
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1", description="Proxy addresses gunicorn trusts for X-Forwarded-* headers."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level."
    )

    admin_password: SecretStr | None = Field(
        None, description="Creates or resets the `admin` account at backend start."
    )
    admin_token: SecretStr | None = Field(None, description="Accepted as an admin API token.")
    public_read: bool = Field(
        False, description="Let anonymous visitors browse and query read-only."
    )

    @field_validator("memory_limit", "bulk_memory_limit", "temp_dir_limit")
    @classmethod
    def _size(cls, value: str) -> str:
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
    def loopback_only(self) -> bool:
        return is_loopback(self.host)

    def check(self, role: Role) -> None:
        """Checks that need the role and the file system; raise SettingsError with one line."""
        if role in ("backend", "all"):
            _check_writable_dir(self.data_dir, "MYAPP_DATA_DIR")
            _check_writable_dir(self.database_path.parent, "MYAPP_DATABASE")
        if role in ("frontend", "all") and not self.loopback_only:
            secret = self.secret_key.get_secret_value() if self.secret_key else ""
            if secret.strip().lower() in PLACEHOLDER_SECRETS or len(secret) < 16:
                raise SettingsError(
                    f"MYAPP_SECRET_KEY must be set to a random value of at least 16 characters "
                    f"when listening on {self.host} (it signs session cookies); "
                    "generate one with: "
                    'python -c "import secrets; print(secrets.token_urlsafe(32))"'
                )


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
    shown = "" if isinstance(value, dict) or value is None else f" (got {value!r})"
    return f"MYAPP_{field.upper()}: {error['msg']}{shown}"
