"""Serving a file by byte range, with validators: what remote readers of Parquet need.

DuckDB's httpfs, fsspec's HTTPFileSystem (pyarrow, pandas) and polars read a Parquet file by
asking for its size (HEAD), its footer (the last bytes), then only the column chunks of the row
groups they need, each with `Range: bytes=a-b`. One range per request is all they send; a
request for several ranges gets the whole file (200), which RFC 9110 allows. A range past the
end is 416 with `Content-Range: bytes */size` and the API's JSON error body; a Range header that
is not `bytes=…` is ignored (the whole file), as RFC 9110 says.

`ETag` names the content exactly (a version of a dataset, a cached result), so
`If-None-Match` answers 304 and `If-Range` guards a resumed read against a changed file.
"""

from __future__ import annotations

import os
import re
import time
from email.utils import formatdate, parsedate_to_datetime

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .errors import error_response
from .metrics import observe_export
from .store.parquet_files import ServedFile

CHUNK_BYTES = 256 * 1024
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range, None for the whole file."""
    if header is None:
        return None
    value = header.strip().replace(" ", "")
    if "," in value:
        return None
    match = _RANGE.match(value)
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        # The last N bytes (a Parquet reader's first request: the footer).
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable
        return max(0, size - length), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or (last != "" and int(last) < start):
        raise RangeNotSatisfiable
    return start, end


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or etag in tags or f"W/{etag}" in tags


class RangeFileResponse(Response):
    """An open file answered with ranges and validators, counted as a data download."""

    def __init__(self, served: ServedFile, *, kind: str = "parquet") -> None:
        # A Response so the framework passes it through as it is; the headers are built per
        # request in __call__, where the request's Range and validators are known.
        super().__init__(media_type=PARQUET_MEDIA_TYPE)
        self.served = served
        self.kind = kind
        self.last_modified = formatdate(served.mtime, usegmt=True)

    def _headers(self, extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
        headers = {
            "accept-ranges": "bytes",
            "etag": self.served.etag,
            "last-modified": self.last_modified,
            # A private download that may change with the data: keep it, but ask again each
            # time (a 304 is cheap).
            "cache-control": "private, no-cache",
            "content-disposition": f'inline; filename="{self.served.filename}"',
            **extra,
        }
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    def _not_modified(self, request_headers: dict[str, str]) -> bool:
        if_none_match = request_headers.get("if-none-match")
        if if_none_match is not None:
            return _etag_matches(if_none_match, self.served.etag)
        since = request_headers.get("if-modified-since")
        if since:
            try:
                return int(self.served.mtime) <= parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError):
                return False
        return False

    def _range_applies(self, request_headers: dict[str, str]) -> bool:
        if_range = request_headers.get("if-range")
        if if_range is None:
            return True
        # Only a strong, exact validator resumes a range; anything else gets the whole file.
        return if_range == self.served.etag or if_range == self.last_modified

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._respond(scope, receive, send)
        finally:
            self.served.close()

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                           for k, v in scope["headers"]}  # fmt: skip
        head = scope["method"] == "HEAD"
        size = self.served.size
        if self._not_modified(request_headers):
            await send({"type": "http.response.start", "status": 304,
                        "headers": self._headers({})})  # fmt: skip
            await send({"type": "http.response.body", "body": b""})
            return
        wanted: tuple[int, int] | None = None
        if self._range_applies(request_headers):
            try:
                wanted = parse_range(request_headers.get("range"), size)
            except RangeNotSatisfiable:
                refusal = error_response(
                    416,
                    "range_not_satisfiable",
                    f"The range asked for is outside the file, which has {size:,} bytes.",
                    {"size": size},
                    {"Content-Range": f"bytes */{size}"},
                )
                await refusal(scope, receive, send)
                return
        if size == 0:
            wanted = None
        first, last = wanted if wanted is not None else (0, size - 1)
        length = last - first + 1 if size else 0
        extra = {"content-type": PARQUET_MEDIA_TYPE, "content-length": str(length)}
        if wanted is not None:
            extra["content-range"] = f"bytes {first}-{last}/{size}"
        await send({
            "type": "http.response.start",
            "status": 206 if wanted is not None else 200,
            "headers": self._headers(extra),
        })  # fmt: skip
        if head:
            await send({"type": "http.response.body", "body": b""})
            return
        sent = 0
        outcome = "aborted"
        try:
            position = first
            while sent < length:
                size_now = min(CHUNK_BYTES, length - sent)
                chunk = await run_in_threadpool(_pread, self.served, size_now, position)
                if not chunk:
                    break
                position += len(chunk)
                sent += len(chunk)
                await send({"type": "http.response.body", "body": chunk,
                            "more_body": sent < length})  # fmt: skip
            if sent >= length:
                if length == 0:
                    await send({"type": "http.response.body", "body": b""})
                outcome = "ok"
        finally:
            observe_export(scope, self.kind, sent, time.perf_counter() - started, outcome)


def _pread(served: ServedFile, size: int, offset: int) -> bytes:
    return os.pread(served.file.fileno(), size, offset)
