"""Response helpers shared by routes."""

from __future__ import annotations

import logging
import time

import anyio.to_thread
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .metrics import observe_export
from .store.exports import ExportFailed, ExportFile, content_disposition

log = logging.getLogger("myapp.backend.exports")

# ASGI's zero-copy send, offered by the servers of myapp's roles (myapp/zerocopy.py): the
# server sends a file's region itself (sendfile), and raises OSError if the client is gone.
ZEROCOPY = "http.response.zerocopysend"


class ExportResponse(StreamingResponse):
    """Streams an export and closes it when the response ends, however it ends.

    When the client goes away, the server stops sending with an exception; the generator that
    reads the export would then only be closed by a later garbage collection, keeping the
    unlinked file (possibly gigabytes) on disk and the COPY running until then.

    An export bigger than STREAM_AFTER_BYTES is sent while DuckDB writes it, without a length
    (chunked). If the COPY fails after that, the response ends without its last chunk: the
    connection is closed, and every HTTP client (browsers, curl, httpx, nginx in between)
    reports the download as cut short rather than taking a part for the whole.

    Where the server offers ASGI's zero-copy send (myapp/zerocopy.py), the spool's regions go
    to the socket with sendfile instead of through Python: the same bytes, a third of the
    backend's CPU per byte less.
    """

    def __init__(self, export: ExportFile, filename: str) -> None:
        self.export = export
        headers = {
            "Content-Disposition": content_disposition(filename),
            "Cache-Control": "no-store",
        }
        if export.size is not None:
            headers["Content-Length"] = str(export.size)
        super().__init__(export.chunks(), media_type=export.format.media_type, headers=headers)

    async def stream_response(self, send: Send) -> None:
        try:
            if ZEROCOPY in (self._scope.get("extensions") or {}):
                try:
                    await self._send_regions(send)
                except OSError:
                    # The server's zero-copy send found the client gone: the outcome stays
                    # "aborted".
                    return
            else:
                await super().stream_response(send)
        except ExportFailed as exc:
            # Not sending the end of the body is the signal; the server then closes the
            # connection (and logs that the response was not completed).
            self.outcome = "error"
            log.warning("export cut short after the download began: %s", exc)

    async def _send_regions(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        export = self.export
        if export.format.prefix:
            prefix = export.format.prefix
            await send({"type": "http.response.body", "body": prefix, "more_body": True})
        regions = export.regions()
        while True:
            region = await anyio.to_thread.run_sync(next, regions, None)
            if region is None:
                break
            offset, length = region
            await send(
                {
                    "type": ZEROCOPY,
                    "file": export.fd,
                    "offset": offset,
                    "count": length,
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        started = time.perf_counter()
        sent = 0
        self.outcome = "aborted"

        async def counting(message) -> None:
            nonlocal sent
            if message["type"] == ZEROCOPY:
                sent += message["count"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                if not message.get("more_body", False) and self.outcome == "aborted":
                    self.outcome = "ok"
            await send(message)

        try:
            await super().__call__(scope, receive, counting)
        finally:
            self.export.close()
            observe_export(scope, "export", sent, time.perf_counter() - started, self.outcome)


def export_response(export: ExportFile, filename: str) -> StreamingResponse:
    """Stream an export as a download with its type, a good file name, and its size when it
    is known before the download begins."""
    return ExportResponse(export, filename)
