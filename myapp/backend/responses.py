"""Response helpers shared by routes."""

from __future__ import annotations

import logging
import time

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .metrics import observe_export
from .store.exports import ExportFailed, ExportFile, content_disposition

log = logging.getLogger("myapp.backend.exports")


class ExportResponse(StreamingResponse):
    """Streams an export and closes it when the response ends, however it ends.

    When the client goes away, the server stops sending with an exception; the generator that
    reads the export would then only be closed by a later garbage collection, keeping the
    unlinked file (possibly gigabytes) on disk and the COPY running until then.

    An export bigger than STREAM_AFTER_BYTES is sent while DuckDB writes it, without a length
    (chunked). If the COPY fails after that, the response ends without its last chunk: the
    connection is closed, and every HTTP client (browsers, curl, httpx, nginx in between)
    reports the download as cut short rather than taking a part for the whole.
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
            await super().stream_response(send)
        except ExportFailed as exc:
            # Not sending the end of the body is the signal; the server then closes the
            # connection (and logs that the response was not completed).
            self.outcome = "error"
            log.warning("export cut short after the download began: %s", exc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        sent = 0
        self.outcome = "aborted"

        async def counting(message) -> None:
            nonlocal sent
            if message["type"] == "http.response.body":
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
