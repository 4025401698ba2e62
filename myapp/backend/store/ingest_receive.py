"""Receiving an upload: the request body streamed to a staging file chunk by chunk.

Nothing here holds a whole body in memory. FastAPI's UploadFile would parse and spool a
multipart body before the handler runs; instead the raw body (PUT) is written as it arrives,
and a multipart body (POST) goes through python-multipart's streaming parser, whose callbacks
write the file part straight into the staging file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ..errors import BadRequest, PayloadTooLarge

# Form fields other than the file are small options; a bigger one is a mistake or an attack.
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 50
# RFC 2046 allows 70 characters; a longer boundary is no client's, and the parser's cost per
# byte grows with it.
MAX_BOUNDARY_CHARS = 256

# Chunks from the server are small (tens of KB); writing them in bigger batches costs fewer
# system calls without holding more than this much in memory.
WRITE_BATCH_BYTES = 1024 * 1024


class LineMeter:
    """The longest run of bytes without a newline, measured as chunks pass by.

    DuckDB's CSV reader needs a bigger line limit for files with very long lines (documents in
    a cell); knowing it before the load saves a failed first attempt. Two C-speed searches per
    chunk cost next to nothing. Lines inside one chunk are shorter than the chunk, and chunks
    are at most a megabyte, well under the limit that matters.
    """

    def __init__(self) -> None:
        self.run = 0
        self.longest = 0

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        data = bytes(chunk) if isinstance(chunk, memoryview) else chunk
        first = data.find(b"\n")
        if first == -1:
            self.run += len(data)
            return
        self.longest = max(self.longest, self.run + first)
        self.run = len(data) - data.rfind(b"\n") - 1

    @property
    def longest_line(self) -> int:
        return max(self.longest, self.run)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload is larger than the limit of {_size(limit)} (MYAPP_MAX_UPLOAD_BYTES).",
        detail={"limit_bytes": limit},
    )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def check_declared_length(request: Request, limit: int) -> None:
    """Refuse before reading a byte when the declared body is over the limit."""
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise BadRequest("The Content-Length header is not a number.") from None
    if length > limit:
        raise too_large(limit)


async def receive_raw(
    request: Request, target: Path, limit: int, meter: LineMeter | None = None
) -> int:
    """Write the body to `target`; returns its size. 413 as soon as it passes `limit`."""
    received = 0
    # Unbuffered: the server's chunks are already tens of KB, and copying them into a buffer
    # first costs more than the system calls it saves.
    with target.open("wb", buffering=0) as handle:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large(limit)
            handle.write(chunk)
            if meter is not None:
                meter.feed(chunk)
    return received


@dataclass
class MultipartUpload:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    has_file: bool = False
    bytes: int = 0
    # The closing boundary arrived: without it the body was cut short, and its last part (the
    # file, perhaps) is only the beginning of what was sent.
    complete: bool = False


class _Collector:
    """python-multipart callbacks: the `file` part to disk, other parts into small strings."""

    def __init__(self, handle, result: MultipartUpload, meter: LineMeter | None) -> None:
        self.handle = handle
        self.result = result
        self.meter = meter
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[bytes, bytes] = {}
        self.part_name: str | None = None
        self.part_is_file = False
        self.value = bytearray()
        self.batch = bytearray()
        self.error: Exception | None = None

    def on_part_begin(self) -> None:
        self.headers = {}
        self.part_name = None
        self.part_is_file = False
        self.value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[bytes(self.header_field).lower()] = bytes(self.header_value)
        self.header_field = bytearray()
        self.header_value = bytearray()

    def on_headers_finished(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        name = params.get(b"name")
        self.part_name = name.decode("utf-8", "replace") if name is not None else None
        if self.part_name == "file":
            if self.result.has_file:
                raise BadRequest("Send one file per upload (the form has two 'file' parts).")
            self.part_is_file = True
            self.result.has_file = True
            filename = params.get(b"filename")
            if filename is not None:
                self.result.filename = filename.decode("utf-8", "replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part_is_file:
            self.batch += data[start:end]
            self.result.bytes += end - start
            if self.meter is not None:
                self.meter.feed(data[start:end])
            if len(self.batch) >= WRITE_BATCH_BYTES:
                self.handle.write(self.batch)
                self.batch.clear()
        else:
            self.value += data[start:end]
            if len(self.value) > MAX_FIELD_BYTES:
                raise BadRequest(
                    f"The form field {self.part_name!r} is too long.", code="invalid_option"
                )

    def on_part_end(self) -> None:
        if self.part_is_file:
            self.handle.write(self.batch)
            self.batch.clear()
        elif self.part_name is not None:
            if len(self.result.fields) >= MAX_FIELDS:
                raise BadRequest("The form has too many fields.", code="invalid_option")
            self.result.fields[self.part_name] = self.value.decode("utf-8", "replace")

    def on_end(self) -> None:
        self.result.complete = True

    def callbacks(self) -> dict:
        return {
            "on_end": self.on_end,
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }


async def receive_multipart(
    request: Request, target: Path, limit: int, meter: LineMeter | None = None
) -> MultipartUpload:
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise BadRequest(
            "Send the file as multipart/form-data with a 'file' field, or PUT the raw file "
            "to /api/datasets/{name}.",
            code="unsupported_media_type",
            status_code=415,
        )
    if len(boundary) > MAX_BOUNDARY_CHARS:
        raise BadRequest(
            f"The multipart boundary is longer than {MAX_BOUNDARY_CHARS} characters; "
            "send the form with an ordinary boundary.",
            code="invalid_multipart",
        )
    result = MultipartUpload()
    received = 0
    with target.open("wb") as handle:
        collector = _Collector(handle, result, meter)
        parser = MultipartParser(boundary, collector.callbacks())
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large(limit)
            try:
                parser.write(chunk)
            except BadRequest:
                raise
            except Exception as exc:
                # python-multipart raises its own errors for malformed bodies.
                raise BadRequest(f"The upload is not a valid multipart form: {exc}.") from None
        try:
            parser.finalize()
        except Exception as exc:
            raise BadRequest(f"The upload is not a valid multipart form: {exc}.") from None
    if not result.complete:
        raise BadRequest(
            "The upload ended before the end of its form (no closing boundary): it was cut "
            "short on the way; send it again.",
            code="truncated_upload",
        )
    if not result.has_file:
        raise BadRequest("The form has no 'file' field with the data file.", code="missing_file")
    return result
