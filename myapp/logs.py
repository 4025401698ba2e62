"""Logging for both roles: plain lines on stdout, one per request, carrying a request id."""

from __future__ import annotations

import logging
import re
import sys
import uuid

REQUEST_ID_HEADER = "X-Request-ID"
# Ids that arrive from outside are echoed into logs and headers, so only a tame shape is kept.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

ACCESS_LOGGER = "myapp.access"


def configure_logging(level: str = "info") -> None:
    """Send myapp's, uvicorn's and gunicorn's logs to stdout in one format; idempotent."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
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
        "%s %s %s %d %.1fms rid=%s ip=%s", role, method, path, status, ms, request_id, client
    )
