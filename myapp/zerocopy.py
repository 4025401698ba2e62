"""ASGI's zero-copy send (`http.response.zerocopysend`) for the roles uvicorn serves.

An export's bytes sit in a spool file (backend/store/exports.py). Sent as ordinary body
messages, each byte is copied three more times in the backend: read from the file into Python,
joined with its chunk header by uvicorn, and written into the socket. Measured on a 1M-row CSV
export (54 MB): the backend's CPU was 70 ms, of which pread, the user-space copy and the socket
write were about 40%; DuckDB's COPY wants both cores meanwhile. With this extension the server
hands the file's pages to the socket with sendfile(2) instead, and the app sends
`{"type": "http.response.zerocopysend", "file": fd, "offset": o, "count": n, "more_body": b}`.

uvicorn does not offer the extension, so it is added here around each request (see
`BoundedHttpToolsProtocol._start_asgi_task`), for plain-TCP connections only (TLS must go through
the transport). Before the file is sent, everything the transport holds has been written; the
sending runs in a thread on a duplicate of the socket's descriptor (the event loop may close its
own when the client goes away), waits for the socket with poll(2), and stops when the client
has taken nothing for `stall_s` or the connection is closed.
"""

from __future__ import annotations

import asyncio
import os
import select
import time
from typing import Any

import anyio.to_thread

EXTENSION = "http.response.zerocopysend"

# How long the socket may stay full before the send gives up (the client stopped reading).
DEFAULT_STALL_S = 300.0
# How often a waiting send looks whether the connection was closed meanwhile.
POLL_MS = 500


class ClientGone(OSError):
    """The connection was closed, or the client took nothing for the stall limit."""


def socket_fd(transport: asyncio.Transport) -> int | None:
    """The descriptor to send a file into, or None where sendfile cannot be used (TLS, not a
    socket)."""
    if transport.get_extra_info("sslcontext") is not None:
        return None
    if transport.get_extra_info("ssl_object") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        fd = sock.fileno()
    except (OSError, ValueError):
        return None
    return fd if fd >= 0 else None


def with_zerocopy(cycle: Any, app: Any, stall_s: float = DEFAULT_STALL_S) -> Any:
    """`app` for one request of uvicorn's httptools protocol (`cycle`), offered zero-copy send
    when the connection allows it."""
    fd = socket_fd(cycle.transport)
    if fd is None:
        return app
    cycle.scope.setdefault("extensions", {})[EXTENSION] = {}

    async def zerocopy_app(scope: Any, receive: Any, send: Any) -> None:
        async def zerocopy_send(message: Any) -> None:
            if message["type"] != EXTENSION:
                await send(message)
                return
            await _send_file(cycle, fd, message, stall_s)
            if not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await app(scope, receive, zerocopy_send)

    return zerocopy_app


async def _send_file(cycle: Any, fd: int, message: Any, stall_s: float) -> None:
    if not cycle.response_started or cycle.response_complete:
        raise RuntimeError(f"{EXTENSION} before the response started or after it ended")
    if cycle.disconnected or cycle.scope["method"] == "HEAD":
        return
    file = message["file"]
    file_fd = file if isinstance(file, int) else file.fileno()
    offset = int(message.get("offset") or 0)
    count = message.get("count")
    if count is None:
        count = os.fstat(file_fd).st_size - offset
    count = int(count)
    if count <= 0:
        return
    if cycle.chunked_encoding:
        head, tail = b"%x\r\n" % count, b"\r\n"
    else:
        if count > cycle.expected_content_length:
            raise RuntimeError("Response content longer than Content-Length")
        cycle.expected_content_length -= count
        head, tail = b"", b""
    # What the transport still holds (the headers, an earlier body) goes first.
    transport = cycle.transport
    began = time.monotonic()
    while transport.get_write_buffer_size() and not transport.is_closing():
        if time.monotonic() - began > stall_s:
            transport.close()
            raise ClientGone("the client stopped reading")
        if cycle.flow.write_paused:
            await cycle.flow.drain()
        else:
            await asyncio.sleep(0.001)
    if transport.is_closing():
        raise ClientGone("the connection was closed")
    sock = os.dup(fd)
    try:
        await anyio.to_thread.run_sync(
            _write_all, sock, head, file_fd, offset, count, tail, transport, stall_s
        )
    except BaseException:
        # Part of a body was sent: the response cannot go on on this connection.
        transport.close()
        raise
    finally:
        os.close(sock)


def _write_all(
    sock: int,
    head: bytes,
    file_fd: int,
    offset: int,
    count: int,
    tail: bytes,
    transport: asyncio.Transport,
    stall_s: float,
) -> None:
    """`head`, `count` bytes of the file from `offset`, then `tail`, into the non-blocking
    socket `sock`."""
    waiter = _Waiter(sock, transport, stall_s)
    _write_bytes(sock, head, waiter)
    end = offset + count
    while offset < end:
        try:
            sent = os.sendfile(sock, file_fd, offset, end - offset)
        except BlockingIOError:
            waiter.wait()
            continue
        except (BrokenPipeError, ConnectionError) as exc:
            raise ClientGone(str(exc)) from exc
        if sent == 0:
            raise ClientGone("the file ended before its count")
        offset += sent
        waiter.progressed()
    _write_bytes(sock, tail, waiter)


def _write_bytes(sock: int, data: bytes, waiter: _Waiter) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = os.write(sock, view)
        except BlockingIOError:
            waiter.wait()
            continue
        except (BrokenPipeError, ConnectionError) as exc:
            raise ClientGone(str(exc)) from exc
        view = view[sent:]
        waiter.progressed()


class _Waiter:
    """Waits for room in the socket, not forever: the client may have stopped reading or gone."""

    def __init__(self, sock: int, transport: asyncio.Transport, stall_s: float) -> None:
        self.poller = select.poll()
        self.poller.register(sock, select.POLLOUT)
        self.transport = transport
        self.stall_s = stall_s
        self.last = time.monotonic()

    def progressed(self) -> None:
        self.last = time.monotonic()

    def wait(self) -> None:
        events = self.poller.poll(POLL_MS)
        if any(ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, ev in events):
            raise ClientGone("the client closed the connection")
        if self.transport.is_closing():
            raise ClientGone("the connection was closed")
        if time.monotonic() - self.last > self.stall_s:
            raise ClientGone("the client stopped reading")
