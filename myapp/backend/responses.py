"""Response helpers shared by routes."""

from __future__ import annotations

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from .store.exports import ExportFile, content_disposition


class ExportResponse(StreamingResponse):
    """Streams an export file and closes it when the response ends, however it ends.

    When the client goes away, the server stops sending with an exception; the generator that
    reads the file would then only be closed by a later garbage collection, keeping the
    unlinked file (possibly gigabytes) on disk until then.
    """

    def __init__(self, export: ExportFile, filename: str) -> None:
        self.export = export
        super().__init__(
            export.chunks(),
            media_type=export.format.media_type,
            headers={
                "Content-Disposition": content_disposition(filename),
                "Content-Length": str(export.size),
                "Cache-Control": "no-store",
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.export.close()


def export_response(export: ExportFile, filename: str) -> StreamingResponse:
    """Stream an export file as a download with its size, type and a good file name."""
    return ExportResponse(export, filename)
