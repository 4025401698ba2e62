"""Exports sent without copying them through Python: the server's zero-copy send (sendfile from
the spool) puts exactly the file's bytes on the wire, in chunks or with a length, whatever the
client's pace, and a big export is byte for byte DuckDB's own COPY, rows in order."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path

import duckdb
import httpx
import pytest
import uvicorn

from myapp.backend.store.exports import FORMATS, STREAM_AFTER_BYTES
from myapp.http_limits import BoundedHttpToolsProtocol
from myapp.zerocopy import EXTENSION
from tests.backend.test_exports import BIG_ROWS, export_dir, server  # noqa: F401
from tests.support.servers import free_port

# Bytes no two places of which look alike, so a piece out of place or twice cannot pass.
PAYLOAD = random.Random(15).randbytes(3 * 1024 * 1024 + 7)


def _zerocopy_app(file: Path):
    """Sends a prefix, then the file from its sixth byte in two regions."""

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        assert EXTENSION in scope["extensions"]
        data = file.read_bytes()[5:]
        sized = scope["path"] == "/sized"
        headers = [(b"content-length", str(3 + len(data)).encode())] if sized else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"BOM", "more_body": True})
        with file.open("rb") as handle:
            half = len(data) // 2
            first = {"type": EXTENSION, "file": handle, "offset": 5, "count": half}
            await send({**first, "more_body": True})
            # A plain descriptor too, and the count up to the end of the file left out.
            rest = {"type": EXTENSION, "file": handle.fileno(), "offset": 5 + half}
            await send({**rest, "more_body": False})

    return app


def test_zero_copy_send_puts_exactly_the_bytes_on_the_wire(tmp_path):
    file = tmp_path / "data.bin"
    file.write_bytes(PAYLOAD)
    port = free_port()
    config = uvicorn.Config(
        _zerocopy_app(file),
        port=port,
        log_config=None,
        lifespan="off",
        http=BoundedHttpToolsProtocol,
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(uv.serve()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not uv.started and time.monotonic() < deadline:
            time.sleep(0.05)
        expected = b"BOM" + PAYLOAD[5:]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            # Twice on one connection: the chunks are framed so that the next answer follows.
            for path in ("/chunked", "/sized", "/chunked"):
                with client.stream("GET", path) as response:
                    chunked = response.headers.get("transfer-encoding") == "chunked"
                    assert chunked == (path == "/chunked")
                    got = bytearray()
                    for number, piece in enumerate(response.iter_bytes()):
                        if number == 1:
                            time.sleep(0.3)  # the socket fills: the rest waits for the client
                        got += piece
                assert bytes(got) == expected
    finally:
        uv.should_exit = True
        thread.join(10)


def test_a_slow_client_gets_an_ordered_export_whole(server, tmp_path):  # noqa: F811
    """Through the backend: a client that reads nothing for a while, then slowly, then fast
    gets exactly DuckDB's own COPY of an ORDER BY result, in that order."""
    sql = f"SELECT range AS n, md5(range::VARCHAR) AS h FROM range({BIG_ROWS}) ORDER BY h DESC"
    got = bytearray()
    with httpx.stream(
        "GET",
        server.url + "/api/query/export",
        params={"sql": sql, "format": "csv"},
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.read()
        for number, piece in enumerate(response.iter_bytes(256 * 1024)):
            if number == 1:
                time.sleep(1.0)
            elif number < 20:
                time.sleep(0.02)
            got += piece
    expected = tmp_path / "expected.csv"
    with duckdb.connect() as conn:
        conn.execute(f"COPY ({sql}) TO '{expected}' ({FORMATS['csv'].copy_options})")
    assert len(got) > STREAM_AFTER_BYTES
    assert bytes(got) == expected.read_bytes()
    assert list(export_dir(server).iterdir()) == []


@pytest.mark.parametrize("fmt", ["csv", "tsv", "json", "ndjson"])
def test_a_big_ordered_export_is_byte_for_byte_duckdbs_own(server, tmp_path, fmt):  # noqa: F811
    """The row order of an ORDER BY result and every byte, in each text format."""
    sql = f"SELECT range AS n, md5(range::VARCHAR) AS h FROM range({BIG_ROWS}) ORDER BY h"
    with httpx.stream(
        "GET",
        server.url + "/api/query/export",
        params={"sql": sql, "format": fmt},
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.read()
        got = b"".join(response.iter_bytes())
    expected = tmp_path / f"expected.{fmt}"
    with duckdb.connect() as conn:
        conn.execute(f"COPY ({sql}) TO '{expected}' ({FORMATS[fmt].copy_options})")
    assert got == expected.read_bytes()
