"""Response helpers shared by routes."""

from __future__ import annotations

from fastapi.responses import StreamingResponse

from .store.exports import ExportFile, content_disposition


def export_response(export: ExportFile, filename: str) -> StreamingResponse:
    """Stream an export file as a download with its size, type and a good file name."""
    return StreamingResponse(
        export.chunks(),
        media_type=export.format.media_type,
        headers={
            "Content-Disposition": content_disposition(filename),
            "Content-Length": str(export.size),
            "Cache-Control": "no-store",
        },
    )
