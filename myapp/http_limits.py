"""Bounds on a request's line and headers for the roles uvicorn serves (backend and all).

uvicorn's httptools parser takes a request line and headers of any size, and holds them in
memory while they arrive: a 20 MB header was answered 200. nginx refuses such requests, but the
backend can also be reached without it (loopback, the compose network, the `all` role). These
limits are checked while the bytes arrive, so a client cannot make the server buffer more than
about one limit, and the refusal is the API's one JSON error body. Requests that are not valid
HTTP get that body too, instead of uvicorn's plain-text 400.

uvicorn also waits forever for headers that never end: its keep-alive timer starts only after a
response and stops at the first byte of the next request, so a client that sends half a request
line (or connects and sends nothing) held a connection and its memory for as long as it liked.
Each connection therefore gets a deadline for its request line and headers
(`MYAPP_HEADER_TIMEOUT_S`), started when it opens and again after each response; a connection
that misses it is answered 408 (if it sent anything) and closed.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker as _UvicornWorker

from myapp.zerocopy import with_zerocopy

# Far beyond what browsers, the CLI and the pages send (nginx's default buffers hold 8 KiB per
# line), small enough that refusing costs little memory.
MAX_URL_BYTES = 64 * 1024
MAX_HEADER_BYTES = 64 * 1024
# gunicorn's own parser allows 100 header fields; the same here.
MAX_HEADER_FIELDS = 100


class Refused(Exception):
    """Stops the parser: the request is answered with this status and error, then closed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def url_too_long() -> Refused:
    return Refused(
        414,
        "url_too_long",
        f"The request's URL is longer than {MAX_URL_BYTES // 1024} KiB; send long values "
        "(SQL, many filters) in a POST body instead.",
    )


def headers_too_large() -> Refused:
    return Refused(
        431,
        "headers_too_large",
        f"The request's headers are larger than {MAX_HEADER_BYTES // 1024} KiB or more than "
        f"{MAX_HEADER_FIELDS} fields; send fewer or shorter headers.",
    )


NOT_HTTP = Refused(400, "bad_request", "The request is not valid HTTP/1.1, so it was not read.")

# Headers are a few hundred bytes: even a slow mobile link sends them in well under a second.
# The deadline only has to be short enough that idle or dribbling connections cannot pile up.
DEFAULT_HEADER_TIMEOUT_S = 10.0


def header_timeout(seconds: float) -> Refused:
    return Refused(
        408,
        "request_timeout",
        f"The request's line and headers did not arrive within {seconds:g} s, so the "
        "connection was closed; send the whole request at once.",
    )


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above."""

    # Set per server by bounded_protocol(); the class default serves tests and --reload.
    header_timeout_s: ClassVar[float] = DEFAULT_HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bytes received since the last request's headers ended (what the parser may hold).
        self._head_bytes = 0
        self._reading_head = True
        self._refusal: Refused | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the deadline for a request's line and headers ---------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # Each request is offered ASGI's zero-copy send (exports send their spool file with
        # sendfile; see zerocopy.py).
        super()._start_asgi_task(cycle, with_zerocopy(cycle, app))

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._reading_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A request is still being answered (the next head came pipelined behind it); the
            # deadline starts again when its response is complete.
            return
        if self._head_bytes:
            self._refusal = header_timeout(self.header_timeout_s)
            self.send_400_response("")
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            self._reading_head
            and self._head_bytes > MAX_URL_BYTES + MAX_HEADER_BYTES
            and not self.transport.is_closing()
        ):
            # The headers have not ended after this many bytes: stop reading them.
            self._refusal = headers_too_large()
            self.send_400_response("")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL_BYTES:
            self._refuse(url_too_long())

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if len(self.headers) > MAX_HEADER_FIELDS:
            self._refuse(headers_too_large())

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._reading_head = False
        self._head_bytes = 0
        if sum(len(name) + len(value) for name, value in self.headers) > MAX_HEADER_BYTES:
            self._refuse(headers_too_large())
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True

    def _refuse(self, refusal: Refused) -> None:
        # Raised inside a parser callback, it surfaces as a parser error, which uvicorn answers
        # through send_400_response below.
        self._refusal = refusal
        raise refusal

    def send_400_response(self, msg: str) -> None:
        refusal = self._refusal or NOT_HTTP
        body = json.dumps({"error": {"code": refusal.code, "message": refusal.message}}).encode()
        phrase = HTTPStatus(refusal.status).phrase
        content = [f"HTTP/1.1 {refusal.status} {phrase}\r\n".encode("ascii")]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"x-content-type-options: nosniff\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()


class UvicornWorker(_UvicornWorker):
    """gunicorn's uvicorn worker, reading requests with the limits above."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **_UvicornWorker.CONFIG_KWARGS,
        "http": BoundedHttpToolsProtocol,
    }


def bounded_protocol(header_timeout_s: float) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for one server, with its header deadline."""
    return type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {"header_timeout_s": header_timeout_s},
    )


def bounded_worker(header_timeout_s: float) -> type[UvicornWorker]:
    """gunicorn's worker class for one server (gunicorn takes the class itself)."""
    return type(
        "UvicornWorker",
        (UvicornWorker,),
        {
            "CONFIG_KWARGS": {
                **UvicornWorker.CONFIG_KWARGS,
                "http": bounded_protocol(header_timeout_s),
            },
            "__module__": __name__,
        },
    )
