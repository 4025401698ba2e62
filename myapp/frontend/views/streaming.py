"""Pass big bodies between the browser and the backend without holding them in memory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

from flask import Response, request

from . import api

# Headers of a backend download that the browser needs to see.
_PASSED_HEADERS = ("Content-Type", "Content-Disposition", "Content-Length", "Cache-Control")

CHUNK_BYTES = 1024 * 1024


def proxy_download(
    path: str,
    *,
    params: Any = None,
    method: str = "GET",
    json: Any = None,
    read_timeout_s: float | None = None,
) -> Response:
    """Stream a backend download (an export) to the browser chunk by chunk.

    Errors the backend reports before the first byte raise BackendError as usual.
    """
    # The upstream stays open while the browser reads, and is closed when the WSGI server
    # closes this response: after the last byte, on a disconnect, or if the body is never read.
    stack = ExitStack()
    upstream = stack.enter_context(
        api().stream(method, path, params=params, json=json, read_timeout_s=read_timeout_s)
    )
    try:
        headers = {k: upstream.headers[k] for k in _PASSED_HEADERS if k in upstream.headers}
        response = Response(
            upstream.iter_bytes(CHUNK_BYTES), status=upstream.status_code, headers=headers
        )
    except BaseException:
        stack.close()
        raise
    response.call_on_close(stack.close)
    return response


def request_body_chunks() -> Iterator[bytes]:
    """The incoming request body, as it arrives (for uploads forwarded to the backend)."""
    stream = request.stream
    while chunk := stream.read(CHUNK_BYTES):
        yield chunk
