"""Pass big bodies between the browser and the backend without holding them in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response, request, stream_with_context

from . import api

# Headers of a backend download that the browser needs to see.
_PASSED_HEADERS = ("Content-Type", "Content-Disposition", "Content-Length", "Cache-Control")

UPLOAD_CHUNK_BYTES = 1024 * 1024


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
    client = api()
    context = client.stream(method, path, params=params, json=json, read_timeout_s=read_timeout_s)
    upstream = context.__enter__()

    def body() -> Iterator[bytes]:
        try:
            yield from upstream.iter_bytes(UPLOAD_CHUNK_BYTES)
        finally:
            context.__exit__(None, None, None)

    headers = {k: upstream.headers[k] for k in _PASSED_HEADERS if k in upstream.headers}
    return Response(stream_with_context(body()), status=upstream.status_code, headers=headers)


def request_body_chunks() -> Iterator[bytes]:
    """The incoming request body, as it arrives (for uploads forwarded to the backend)."""
    stream = request.stream
    while chunk := stream.read(UPLOAD_CHUNK_BYTES):
        yield chunk
