"""Logging for both roles: lines on stdout, one access line per request, each carrying a
request id.

The id of the request being served sits in a context variable (set by the backend's ASGI
middleware and the frontend's before_request), and a filter copies it onto every record, so a
line logged anywhere during a request (a store function, a warning from a library) names the
request it belongs to. Starlette's thread pool copies the context into the threads that run
sync routes and stream responses, so the id reaches them too.

`MYAPP_LOG_FORMAT=plain` (the default) writes one readable line per record; `json` writes one
JSON object per line for log collectors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
# Ids that arrive from outside are echoed into logs and headers, so only a tame shape is kept.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

ACCESS_LOGGER = "myapp.access"
LOG_FORMATS = ("plain", "json")
PLAIN_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"

_request_id: ContextVar[str | None] = ContextVar("myapp_request_id", default=None)
# The role of this process, for every record (one process serves one role).
_role = {"name": "-"}


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> Token:
    return _request_id.set(value)


def reset_request_id(token: Token) -> None:
    # A WSGI server may end a request in another context than it began it; the id then simply
    # stays until the next request sets its own.
    with contextlib.suppress(ValueError):
        _request_id.reset(token)


class RequestContextFilter(logging.Filter):
    """Puts `request_id` and `role` on every record that passes through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = _request_id.get() or "-"
        record.role = _role["name"]
        return True


# Attributes every LogRecord has; anything else on a record came from `extra=` and is kept.
_RECORD_FIELDS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "request_id", "role", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, role, logger, message, request_id, and the
    fields passed with `extra=` (the access line's method, path, status, duration_ms, client)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "role": getattr(record, "role", _role["name"]),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or _request_id.get(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def make_formatter(fmt: str = "plain") -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(PLAIN_FORMAT)


def make_handler(fmt: str = "plain") -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(RequestContextFilter())
    return handler


def configure_logging(level: str = "info", fmt: str = "plain", role: str | None = None) -> None:
    """Send myapp's, uvicorn's and gunicorn's logs to stdout in one format; idempotent."""
    if role:
        _role["name"] = role
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(make_handler(fmt))
    root.setLevel(level.upper())
    # Our own access line replaces uvicorn's; httpx logs every call at INFO, which doubles lines.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers = []
        lg.propagate = True


def request_id_from(value: str | None) -> str:
    """Keep a well-formed incoming id (so one id follows a request across roles), else mint one."""
    if value and _REQUEST_ID_RE.match(value):
        return value
    return uuid.uuid4().hex


def log_request(
    role: str, method: str, path: str, status: int, ms: float, request_id: str, client: str
) -> None:
    """One line per request. Query strings are left out: they may carry filter values."""
    logging.getLogger(ACCESS_LOGGER).info(
        "%s %s %s %d %.1fms rid=%s ip=%s",
        role,
        method,
        path,
        status,
        ms,
        request_id,
        client,
        extra={
            "request_id": request_id,
            "access": True,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(ms, 1),
            "client": client,
        },
    )
