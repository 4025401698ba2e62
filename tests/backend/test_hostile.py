"""A corpus of hostile requests against a real backend, and what a person then sees in the pages.

Each case is sent as raw bytes over a socket, so nothing between the test and the server tidies
it up (dot segments, invalid UTF-8, NUL bytes, broken lengths and multipart bodies arrive as
written). Each must be answered with a clear 4xx and the one error body, and leave the
workspace as it was: the datasets with their row counts and versions, the saved queries, and
the files in the data directory are compared before and after every case. A few hostile-looking
requests are legitimate (a filter value with a quote in it, a file name with ../ in it): those
are answered as usual and change exactly what they say (a dataset under a tamed name), which
the case then removes again.

Resource bombs (one function call over a huge generated input, endless recursion, huge cross
joins, results past the byte cap) run against small limits: each must be answered with a 4xx
within the time limit and a second, and the next client served at once. SQL that hides SQL in a
string (query(), query_table(), json_execute_serialized_sql…), reads settings, sequences, the
environment or files, and every path into the upload staging folder are refused.

The backend is this module's own, in open mode (loopback, no accounts), with a small upload
limit and small query limits; a frontend talking to it shows the pages whose escaping is
checked at the end.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support.servers import ServerProcess

# Above the multipart field limit (64 KiB), so that limit is reached before this one.
UPLOAD_LIMIT = 128 * 1024
# The backend's bound on bodies other than uploads (myapp/backend/middleware.py).
BODY_LIMIT = 4 * 1024 * 1024
# Small query limits, so resource bombs end quickly.
TIME_LIMIT_MS = 1000
MEMORY_LIMIT = "256MB"
MAX_RESULT_BYTES = 1024 * 1024
# A bomb is answered within its time limit and this (docs/development.md: 1.03-1.12 s for 1 s).
BOMB_MARGIN_S = 1.0

SALES = "hx_sales"
REPORT = "hx-report"
SALES_CSV = b"id,city,amount\n1,Oslo,10.5\n2,Lima,3\n3,Rome,7.25\n"
SMALL_CSV = b"a,b\n1,x\n"


# -- talking to the server in raw bytes -------------------------------------------------------
@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(port: int, request: bytes) -> Answer:
    """Send `request` as it is on a new connection and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # The server may answer and close before the rest arrives; its answer is read below.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, headers, body)


def build(
    method: str,
    target: str | bytes,
    *,
    port: int,
    body: bytes = b"",
    headers: tuple[tuple[str, str | bytes], ...] = (),
    length: bool = True,
) -> bytes:
    """A request as bytes. `target` goes on the request line exactly as given."""
    target_bytes = target.encode("latin-1") if isinstance(target, str) else target
    lines = [
        method.encode() + b" " + target_bytes + b" HTTP/1.1",
        f"Host: 127.0.0.1:{port}".encode(),
    ]
    names = {name.lower() for name, _ in headers}
    for name, value in headers:
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(name.encode() + b": " + raw)
    if length and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}".encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


JSON = (("Content-Type", "application/json"),)


def multipart(
    parts: list[tuple[bytes, bytes]], boundary: bytes = b"hxboundary", end: bool = True
) -> bytes:
    """A multipart body from (part headers, part content) pairs, written by hand."""
    out = b""
    for head, content in parts:
        out += b"--" + boundary + b"\r\n" + head + b"\r\n\r\n" + content + b"\r\n"
    if end:
        out += b"--" + boundary + b"--\r\n"
    return out


def file_part(filename: bytes = b"data.csv", content: bytes = SMALL_CSV) -> tuple[bytes, bytes]:
    head = b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"'
    return head + b"\r\nContent-Type: text/csv", content


def field_part(name: str, value: bytes) -> tuple[bytes, bytes]:
    return f'Content-Disposition: form-data; name="{name}"'.encode(), value


MULTIPART = (("Content-Type", "multipart/form-data; boundary=hxboundary"),)


def chunked(body: bytes, size: int = 64 * 1024) -> bytes:
    out = b""
    for start in range(0, len(body), size):
        piece = body[start : start + size]
        out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out + b"0\r\n\r\n"


CHUNKED = (("Transfer-Encoding", "chunked"),)


def q(text: str) -> str:
    """Percent-encode text for a path segment or a query value, quotes, slashes and all."""
    return quote(text, safe="")


# -- the corpus ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    method: str
    target: str | bytes
    # A tuple when either of several is right (a bomb meets the time limit or the memory cap
    # first, depending on the machine).
    status: int | tuple[int, ...]
    # The error code of a refusal; a tuple when either of two is right.
    code: str | tuple[str, ...] | None = None
    body: bytes = b""
    headers: tuple[tuple[str, str | bytes], ...] = ()
    length: bool = True
    # A request that is not well-formed HTTP, sent exactly as written (the Host is filled in).
    raw: bytes | None = None
    # An accepted request that creates this dataset or saved query; it is removed afterwards.
    creates_dataset: str | None = None
    creates_query: str | None = None
    # More to check in an accepted answer.
    check: Callable[[Answer], None] | None = field(default=None, compare=False)
    # Answered within this many seconds.
    within_s: float | None = None


def no_rows(answer: Answer) -> None:
    assert answer.json()["rows"] == [], "a quote in a value must match nothing, not everything"


def count_is_zero(answer: Answer) -> None:
    assert answer.json()["rows"] == [[0]]


def tame_download_name(answer: Answer) -> None:
    disposition = answer.headers["content-disposition"]
    assert "/" not in disposition and ".." not in disposition and "\\" not in disposition
    assert "\r" not in disposition and "\n" not in disposition


def filename_kept(expected: str) -> Callable[[Answer], None]:
    def check(answer: Answer) -> None:
        assert answer.json()["dataset"]["source"]["filename"] == expected

    return check


ROWS = f"/api/datasets/{SALES}/rows"
BIG = b"x" * (BODY_LIMIT + 1)

CASES: list[Case] = [
    # SQL escapes: in dataset names, filters, sort, search, facets, queries and saved queries.
    Case(
        "sql-in-new-dataset-name",
        "PUT",
        "/api/datasets/" + q("x'; DROP TABLE " + SALES + "; --"),
        201,
        body=SMALL_CSV,
        creates_dataset=f"x_drop_table_{SALES}",
    ),
    Case(
        "sql-in-dataset-name",
        "GET",
        "/api/datasets/" + q(SALES + "' OR '1'='1"),
        404,
        "dataset_not_found",
    ),
    Case(
        "sql-in-dataset-name-rows",
        "GET",
        "/api/datasets/" + q(SALES + '"; DROP TABLE ' + SALES + "; --") + "/rows",
        404,
        "dataset_not_found",
    ),
    Case(
        "sql-in-new-name-of-rename",
        "PATCH",
        f"/api/datasets/{SALES}",
        400,
        "invalid_name",
        body=json_body({"name": "'; --"}),
        headers=JSON,
    ),
    Case("sql-in-filter-value", "GET", ROWS + "?city__eq=" + q("' OR 1=1 --"), 200, check=no_rows),
    Case(
        "sql-in-filter-list",
        "GET",
        ROWS + "?city__in=" + q("Oslo') OR ('1'='1"),
        200,
        check=no_rows,
    ),
    Case(
        "sql-in-filter-column",
        "GET",
        ROWS + "?" + q('city" OR 1=1 --') + "__eq=x",
        400,
        "unknown_column",
    ),
    Case(
        "sql-in-filter-operator",
        "GET",
        f"{ROWS}?city__{q('eq) OR 1=1 --')}=x",
        400,
        "invalid_filter",
    ),
    Case(
        "sql-in-sort",
        "GET",
        f"{ROWS}?sort={q(f'amount; DROP TABLE {SALES}')}",
        400,
        "unknown_column",
    ),
    Case(
        "sql-in-sort-descending",
        "GET",
        f"{ROWS}?sort={q('-id DESC, (SELECT 1)')}",
        400,
        "unknown_column",
    ),
    Case("sql-in-search", "GET", ROWS + "?q=" + q("%' OR '1'='1"), 200, check=no_rows),
    Case(
        "sql-in-facet-column",
        "GET",
        f"/api/datasets/{SALES}/facets?column={q(f'city) FROM {SALES}; DROP TABLE {SALES}; --')}",
        400,
        "unknown_column",
    ),
    Case(
        "sql-in-limit",
        "GET",
        f"{ROWS}?limit={q(f'1; DROP TABLE {SALES}')}",
        422,
        "validation_error",
    ),
    Case("sql-in-offset", "GET", f"{ROWS}?offset={q('-1 OR 1=1')}", 422, "validation_error"),
    Case(
        "sql-in-export-format",
        "GET",
        f"/api/datasets/{SALES}/export?format=" + q("csv') TO '/tmp/hx"),
        400,
        "invalid_format",
    ),
    Case(
        "sql-stacked-statements",
        "POST",
        "/api/query",
        400,
        "multiple_statements",
        body=json_body({"sql": f"SELECT 1; DROP TABLE {SALES}"}),
        headers=JSON,
    ),
    Case(
        "sql-statement-after-comment",
        "POST",
        "/api/query",
        400,
        "multiple_statements",
        body=json_body({"sql": f"SELECT * FROM {SALES}; --\nDELETE FROM {SALES}"}),
        headers=JSON,
    ),
    Case(
        "sql-drop-table",
        "POST",
        "/api/query",
        400,
        "statement_not_allowed",
        body=json_body({"sql": f"DROP TABLE {SALES}"}),
        headers=JSON,
    ),
    Case(
        "sql-value-in-bound-parameter",
        "POST",
        "/api/query",
        200,
        body=json_body(
            {
                "sql": f"SELECT count(*) AS n FROM {SALES} WHERE city = $city",
                "params": {"city": "' OR '1'='1"},
            }
        ),
        headers=JSON,
        check=count_is_zero,
    ),
    Case(
        "sql-internal-table",
        "POST",
        "/api/query",
        400,
        "table_not_allowed",
        body=json_body({"sql": "SELECT * FROM myapp_internal.accounts"}),
        headers=JSON,
    ),
    Case(
        "sql-copy-to-file",
        "POST",
        "/api/query",
        400,
        "statement_not_allowed",
        body=json_body({"sql": f"COPY {SALES} TO '/tmp/hx-stolen.csv'"}),
        headers=JSON,
    ),
    Case(
        "sql-attach",
        "POST",
        "/api/query",
        400,
        "statement_not_allowed",
        body=json_body({"sql": "ATTACH ':memory:' AS elsewhere"}),
        headers=JSON,
    ),
    Case(
        "sql-saved-query-that-writes",
        "POST",
        "/api/queries",
        400,
        "statement_not_allowed",
        body=json_body({"title": "hx writes", "sql": f"DELETE FROM {SALES}"}),
        headers=JSON,
    ),
    Case(
        "sql-in-saved-query-slug",
        "POST",
        "/api/queries",
        422,
        "validation_error",
        body=json_body({"title": "hx slug", "sql": "SELECT 1", "slug": "x'; drop"}),
        headers=JSON,
    ),
    Case(
        "sql-in-saved-query-parameter-name",
        "POST",
        "/api/queries",
        422,
        "validation_error",
        body=json_body(
            {
                "title": "hx parameter",
                "sql": "SELECT $x AS x",
                "parameters": [{"name": "x; DROP TABLE hx_sales", "type": "text"}],
            }
        ),
        headers=JSON,
    ),
    Case(
        "sql-in-saved-query-parameter-value",
        "POST",
        f"/api/queries/{REPORT}/run",
        400,
        "invalid_parameter",
        body=json_body({"params": {"min_id": "0 OR 1=1"}}),
        headers=JSON,
    ),
    Case(
        "sql-in-saved-query-export-parameters",
        "GET",
        f"/api/queries/{REPORT}/export?params=" + q(json.dumps({"min_id": "1; DROP TABLE x"})),
        400,
        "invalid_parameter",
    ),
    Case(
        "sql-write-through-export",
        "GET",
        f"/api/query/export?sql={q(f'DELETE FROM {SALES}')}",
        400,
        "statement_not_allowed",
    ),
    # Path traversal: in names and parameters, encoded, absolute, with NUL bytes.
    Case(
        "traversal-encoded-slashes",
        "PUT",
        "/api/datasets/..%2F..%2Fetc%2Fpasswd",
        404,
        "not_found",
        body=SMALL_CSV,
    ),
    Case("traversal-encoded-dots", "GET", "/api/datasets/%2e%2e/%2e%2e/app.db", 404, "not_found"),
    Case("traversal-literal-dots", "GET", "/api/datasets/../../app.db", 404, "not_found"),
    Case("traversal-dots-as-name", "GET", "/api/datasets/../rows", 404, "dataset_not_found"),
    Case("traversal-absolute-path", "GET", "/api/datasets/%2Fetc%2Fpasswd/rows", 404, "not_found"),
    Case("traversal-nul-in-name", "GET", f"/api/datasets/{SALES}%00.csv", 404, "dataset_not_found"),
    Case(
        "traversal-nul-as-new-name", "PUT", "/api/datasets/%00", 400, "invalid_name", body=SMALL_CSV
    ),
    Case(
        "traversal-in-upload-filename",
        "PUT",
        f"/api/datasets/hx_named?filename={q('../../../../etc/passwd')}",
        201,
        body=SMALL_CSV,
        creates_dataset="hx_named",
        check=filename_kept("../../../../etc/passwd"),
    ),
    Case(
        "traversal-in-multipart-filename",
        "POST",
        "/api/datasets",
        201,
        body=multipart([file_part(b"../../../../tmp/hx_evil.csv")]),
        headers=MULTIPART,
        creates_dataset="hx_evil",
    ),
    Case(
        "traversal-windows-multipart-filename",
        "POST",
        "/api/datasets",
        201,
        body=multipart([file_part(b"..\\..\\windows\\hx_win.csv")]),
        headers=MULTIPART,
        creates_dataset="hx_win",
    ),
    Case(
        "traversal-file-in-query",
        "POST",
        "/api/query",
        400,
        "function_not_allowed",
        body=json_body({"sql": "SELECT * FROM read_csv('../app.db')"}),
        headers=JSON,
    ),
    Case(
        "traversal-path-as-table",
        "POST",
        "/api/query",
        400,
        ("table_not_allowed", "statement_not_allowed", "function_not_allowed"),
        body=json_body({"sql": "SELECT * FROM '/etc/passwd'"}),
        headers=JSON,
    ),
    Case(
        "traversal-in-download-name",
        "POST",
        "/api/query/export",
        200,
        body=json_body({"sql": "SELECT 1 AS a", "filename": '../../etc/passwd"\r\nX-Evil: 1'}),
        headers=JSON,
        check=tame_download_name,
    ),
    Case(
        "traversal-in-cursor",
        "GET",
        f"{ROWS}?cursor={q('../../etc/passwd')}",
        400,
        "invalid_cursor",
    ),
    Case("traversal-in-saved-query-slug", "GET", "/api/queries/..%2F..%2Fetc", 404, "not_found"),
    Case("traversal-dots-as-slug", "GET", "/api/queries/..", 404, "query_not_found"),
    Case(
        "traversal-in-export-format",
        "GET",
        f"/api/datasets/{SALES}/export?format={q('../../x')}",
        400,
        "invalid_format",
    ),
    Case(
        "traversal-in-encoding-option",
        "PUT",
        f"/api/datasets/hx_enc?encoding={q('../../etc/passwd')}",
        400,
        "invalid_option",
        body=SMALL_CSV,
    ),
    # Oversized headers and bodies (no nginx in front: the backend's own limits).
    Case(
        "huge-header",
        "GET",
        "/api/health",
        431,
        "headers_too_large",
        headers=(("X-Filler", "a" * 100_000),),
    ),
    Case(
        "too-many-headers",
        "GET",
        "/api/health",
        431,
        "headers_too_large",
        headers=tuple((f"X-Filler-{n}", "a") for n in range(150)),
    ),
    Case("huge-url", "GET", f"{ROWS}?q={'a' * 100_000}", 414, "url_too_long"),
    Case(
        "huge-json-declared",
        "POST",
        "/api/query",
        413,
        "payload_too_large",
        # Only the headers go out: the answer must come before the body is read.
        headers=(*JSON, ("Content-Length", str(BODY_LIMIT + 1))),
    ),
    Case(
        "huge-json-chunked",
        "POST",
        "/api/query",
        413,
        "payload_too_large",
        body=chunked(b'{"sql": "' + BIG + b'"}', size=BODY_LIMIT + 16),
        headers=(*JSON, *CHUNKED),
    ),
    Case(
        "huge-upload-declared",
        "PUT",
        "/api/datasets/hx_big",
        413,
        "payload_too_large",
        headers=(("Content-Length", str(UPLOAD_LIMIT + 1)),),
    ),
    Case(
        "huge-upload-chunked",
        "PUT",
        "/api/datasets/hx_big",
        413,
        "payload_too_large",
        body=chunked(b"a\n" + b"1\n" * (UPLOAD_LIMIT // 2), size=UPLOAD_LIMIT + 16),
        headers=CHUNKED,
    ),
    Case(
        "huge-multipart-declared",
        "POST",
        "/api/datasets",
        413,
        "payload_too_large",
        headers=(*MULTIPART, ("Content-Length", str(UPLOAD_LIMIT * 10))),
    ),
    Case(
        "length-not-a-number",
        "PUT",
        "/api/datasets/hx_len",
        400,
        "bad_request",
        body=SMALL_CSV,
        headers=(("Content-Length", "abc"),),
    ),
    Case(
        "length-negative",
        "PUT",
        "/api/datasets/hx_len",
        400,
        "bad_request",
        body=SMALL_CSV,
        headers=(("Content-Length", "-1"),),
    ),
    Case(
        "not-http",
        "",
        "",
        400,
        "bad_request",
        raw=b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ),
    # Malformed multipart.
    Case(
        "multipart-without-boundary",
        "POST",
        "/api/datasets",
        415,
        "unsupported_media_type",
        body=multipart([file_part()]),
        headers=(("Content-Type", "multipart/form-data"),),
    ),
    Case(
        "multipart-truncated",
        "POST",
        "/api/datasets?name=hx_cut",
        400,
        "truncated_upload",
        body=multipart([file_part()], end=False)[:-10],
        headers=MULTIPART,
    ),
    Case(
        "multipart-without-file",
        "POST",
        "/api/datasets",
        400,
        "missing_file",
        body=multipart([field_part("name", b"hx_nofile")]),
        headers=MULTIPART,
    ),
    Case(
        "multipart-huge-part-header",
        "POST",
        "/api/datasets",
        400,
        "bad_request",
        body=multipart(
            [(file_part()[0] + b"\r\nX-Filler: " + b"a" * 20_000, SMALL_CSV)],
        ),
        headers=MULTIPART,
    ),
    Case(
        "multipart-two-files",
        "POST",
        "/api/datasets?name=hx_two",
        400,
        "bad_request",
        body=multipart([file_part(), file_part()]),
        headers=MULTIPART,
    ),
    Case(
        "multipart-other-boundary",
        "POST",
        "/api/datasets",
        400,
        "bad_request",
        body=multipart([file_part()], boundary=b"otherboundary"),
        headers=MULTIPART,
    ),
    Case(
        "multipart-part-without-disposition",
        "POST",
        "/api/datasets",
        400,
        "missing_file",
        body=multipart([(b"Content-Type: text/csv", SMALL_CSV)]),
        headers=MULTIPART,
    ),
    Case(
        "multipart-too-many-fields",
        "POST",
        "/api/datasets",
        400,
        "invalid_option",
        body=multipart([field_part(f"f{n}", b"x") for n in range(60)] + [file_part()]),
        headers=MULTIPART,
    ),
    Case(
        "multipart-field-too-long",
        "POST",
        "/api/datasets",
        400,
        "invalid_option",
        body=multipart([field_part("name", b"a" * 70_000), file_part()]),
        headers=(("Content-Type", "multipart/form-data; boundary=hxboundary"),),
    ),
    Case(
        "multipart-garbage",
        "POST",
        "/api/datasets",
        400,
        "bad_request",
        body=b"\x00\x01garbage" * 100,
        headers=MULTIPART,
    ),
    Case(
        "upload-form-as-text",
        "POST",
        "/api/datasets",
        415,
        "unsupported_media_type",
        body=SMALL_CSV,
        headers=(("Content-Type", "text/plain"),),
    ),
    # Invalid UTF-8: in JSON bodies, query strings, paths, file names and headers.
    Case(
        "utf8-invalid-in-json",
        "POST",
        "/api/query",
        400,
        "bad_request",
        body=b'{"sql": "SELECT \xff\xfe"}',
        headers=JSON,
    ),
    Case(
        "utf8-lone-surrogate-in-json",
        "POST",
        "/api/query",
        422,
        "validation_error",
        body=b'{"sql": "SELECT \'\\ud800\'"}',
        headers=JSON,
    ),
    Case(
        "utf8-lone-surrogate-in-parameter",
        "POST",
        "/api/query",
        400,
        "sql_error",
        body=b'{"sql": "SELECT $x AS x", "params": {"x": "\\ud800"}}',
        headers=JSON,
    ),
    Case(
        "utf8-lone-surrogate-in-rename",
        "PATCH",
        f"/api/datasets/{SALES}",
        422,
        "validation_error",
        body=b'{"name": "\\udfff"}',
        headers=JSON,
    ),
    Case("utf8-invalid-in-sort", "GET", f"{ROWS}?sort=%FF%FE", 400, "unknown_column"),
    Case("utf8-invalid-in-filter-column", "GET", f"{ROWS}?%FF__eq=1", 400, "unknown_column"),
    Case("utf8-invalid-in-search", "GET", f"{ROWS}?q=%FF%FE", 200, check=no_rows),
    Case("utf8-invalid-in-name", "GET", "/api/datasets/%FF%FE", 404, "dataset_not_found"),
    Case(
        "utf8-invalid-as-new-name",
        "PUT",
        "/api/datasets/%FF%FE",
        400,
        "invalid_name",
        body=SMALL_CSV,
    ),
    Case(
        "utf8-raw-bytes-in-path",
        "GET",
        # Not valid on a request line at all: the HTTP parser refuses it.
        b"/api/datasets/\xff\xfe/rows",
        400,
        "bad_request",
    ),
    Case(
        "utf8-invalid-in-upload-filename",
        "POST",
        "/api/datasets",
        400,
        "invalid_name",
        body=multipart([file_part(b"\xff\xfe.csv")]),
        headers=MULTIPART,
    ),
    Case(
        "utf8-invalid-in-token",
        "GET",
        "/api/datasets",
        401,
        ("invalid_token", "unauthorized"),
        headers=(("Authorization", b"Bearer \xff\xfe"),),
    ),
    # Markup in names: answered as JSON, names tamed (the pages are checked below).
    Case(
        "markup-in-dataset-name",
        "GET",
        f"/api/datasets/{q('<img src=x onerror=alert(1)>')}",
        404,
        "dataset_not_found",
    ),
    Case(
        "markup-in-api-path",
        "GET",
        # The encoded slash makes this a path no route has; the message repeats it, as JSON.
        f"/api/datasets/{q('<script>alert(1)</script>')}",
        404,
        "not_found",
    ),
    Case(
        "markup-as-new-dataset-name",
        "PUT",
        f"/api/datasets/{q('<img src=x onerror=alert(1)>')}",
        201,
        body=SMALL_CSV,
        creates_dataset="img_src_x_onerror_alert_1",
    ),
    Case(
        "markup-in-saved-query-title",
        "POST",
        "/api/queries",
        201,
        body=json_body(
            {"title": "<script>alert(1)</script>", "sql": "SELECT 1", "slug": "hx-markup"}
        ),
        headers=JSON,
        creates_query="hx-markup",
        check=lambda answer: answer.json()["title"] == "<script>alert(1)</script>" or None,
    ),
]


def query_case(
    id: str,
    sql: str,
    status: int | tuple[int, ...],
    code: str | tuple[str, ...] | None,
    *,
    within_s: float | None = None,
) -> Case:
    return Case(
        id,
        "POST",
        "/api/query",
        status,
        code,
        body=json_body({"sql": sql}),
        headers=JSON,
        within_s=within_s,
    )


BOMB_STATUS = (400, 422)
BOMB_CODES = ("query_timeout", "query_too_large", "result_too_large")
BOMB_WITHIN_S = TIME_LIMIT_MS / 1000 + BOMB_MARGIN_S
# One function call over a huge generated input (DuckDB neither interrupts it nor counts its
# memory), endless or exploding recursion, huge cross joins, and results past the byte cap.
BOMBS = {
    "list-sort-of-a-huge-range": "SELECT len(list_sort(range(50_000_000))) AS n",
    "regexp-over-a-huge-string": (
        "SELECT length(regexp_replace(repeat('x', 200_000_000), 'x', 'yy', 'g')) AS n"
    ),
    "endless-recursive-cte": (
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t"
    ),
    "doubling-recursive-cte": (
        "WITH RECURSIVE t(n, s) AS (SELECT 1, 'x' UNION ALL SELECT n + 1, s || s FROM t "
        "WHERE n < 40) SELECT max(length(s)) FROM t"
    ),
    "huge-cross-join": "SELECT count(*) FROM range(1000000) a, range(1000000) b",
    "huge-three-way-cross-join": (
        "SELECT count(*) FROM range(100000) a, range(100000) b, range(100000) c"
    ),
    "huge-string-agg": "SELECT length(string_agg(repeat('x', 1000), '')) FROM range(10_000_000)",
    "huge-lpad": "SELECT length(lpad('x', 2_000_000_000, 'y'))",
    "huge-printf-width": "SELECT length(printf('%0999999999d', 1))",
    "huge-list-to-string": "SELECT length(array_to_string(range(50_000_000), ','))",
    "huge-string-split": "SELECT len(string_split(repeat('a,', 100_000_000), ','))",
    "quadratic-levenshtein": "SELECT levenshtein(repeat('a', 200000), repeat('b', 200000))",
    "huge-generate-series": "SELECT count(*) FROM generate_series(1, 9_000_000_000_000_000_000)",
    "huge-md5-input": "SELECT length(md5(repeat('x', 1_000_000_000)))",
    "result-past-the-byte-cap": "SELECT repeat('x', 2_000_000) AS s FROM range(40)",
}
CASES += [
    query_case(f"bomb-{name}", sql, BOMB_STATUS, BOMB_CODES, within_s=BOMB_WITHIN_S)
    for name, sql in BOMBS.items()
]
CASES += [
    Case(
        "bomb-through-export",
        "GET",
        "/api/query/export?format=csv&sql=" + q(BOMBS["regexp-over-a-huge-string"]),
        BOMB_STATUS,
        BOMB_CODES,
        within_s=BOMB_WITHIN_S,
    ),
    Case(
        "bomb-through-chart",
        "POST",
        "/api/query/chart",
        BOMB_STATUS,
        BOMB_CODES,
        body=json_body(
            {
                "sql": BOMBS["endless-recursive-cte"].replace("count(*)", "count(*) AS n"),
                "chart": {"type": "bar", "x": "n", "y": ["n"]},
            }
        ),
        headers=JSON,
        within_s=BOMB_WITHIN_S,
    ),
    # Saving binds the SQL without reading data; whether DuckDB folds the constant call while
    # binding (and so meets the limits) is its optimizer's choice, so a quick 201 is right too:
    # what matters is an answer within the limit and a backend that keeps serving.
    Case(
        "bomb-through-saving",
        "POST",
        "/api/queries",
        (201, *BOMB_STATUS),
        BOMB_CODES,
        body=json_body({"title": "hx bomb", "sql": BOMBS["regexp-over-a-huge-string"]}),
        headers=JSON,
        within_s=BOMB_WITHIN_S,
        creates_query="hx-bomb",
    ),
    query_case(
        "deeply-nested-list-literals",
        "SELECT " + "[" * 900 + "1" + "]" * 900,
        400,
        "query_too_complex",
    ),
    query_case(
        "deeply-nested-parentheses",
        "SELECT " + "(" * 3000 + "1" + ")" * 3000,
        400,
        ("query_too_complex", "sql_error"),
    ),
    query_case(
        "very-long-expression",
        "SELECT " + "1+" * 20000 + "1",
        400,
        ("query_too_complex", "sql_error"),
    ),
]

# SQL text inside a string is planned by the function that gets it, never seen by the gate;
# settings, sequences, the environment and files are out whatever the spelling.
SQL_IN_STRINGS = {
    "query-function": "SELECT * FROM query('SELECT * FROM myapp_internal.accounts')",
    "query-function-quoted": "SELECT * FROM \"query\"('SELECT 1')",
    "query-function-qualified": "SELECT * FROM system.main.query('SELECT 1')",
    "query-function-upper-case": "SELECT * FROM QUERY('SELECT 1')",
    "query-function-in-subquery": "SELECT (SELECT 1 FROM query('SELECT 2'))",
    "query-function-in-lambda": (
        "SELECT list_transform([1], x -> (SELECT count(*) FROM query('SELECT 1')))"
    ),
    "query-function-lateral": f"SELECT * FROM {SALES}, LATERAL query('SELECT 1')",
    "query-table": f"SELECT * FROM query_table('{SALES}')",
    "json-execute-serialized-sql": (
        "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))"
    ),
    "json-serialize-sql": "SELECT json_serialize_sql('SELECT * FROM myapp_internal.accounts')",
    "json-serialize-plan": "SELECT json_serialize_plan('SELECT 1')",
    "current-setting": "SELECT current_setting('allowed_directories')",
    "duckdb-settings": "SELECT * FROM duckdb_settings()",
    "getvariable": "SELECT getvariable('x')",
    "nextval": "SELECT nextval('hx_sequence')",
    "currval": "SELECT currval('hx_sequence')",
    "getenv": "SELECT getenv('HOME')",
    "pragma-table-info": "SELECT * FROM pragma_table_info('myapp_internal.accounts')",
    "duckdb-columns": "SELECT * FROM duckdb_columns()",
    "duckdb-databases": "SELECT * FROM duckdb_databases()",
    "duckdb-secrets": "SELECT * FROM duckdb_secrets()",
    "read-text": "SELECT * FROM read_text('app.db')",
    "read-blob": "SELECT * FROM read_blob('app.db')",
    "read-duckdb": "SELECT * FROM read_duckdb('app.db')",
    "glob": "SELECT * FROM glob('*')",
    "sniff-csv": "SELECT * FROM sniff_csv('app.db')",
    "parquet-metadata": "SELECT * FROM parquet_metadata('x.parquet')",
    "checkpoint-function": "SELECT * FROM checkpoint()",
}
CASES += [
    query_case(f"sql-in-string-{name}", sql, 400, "function_not_allowed")
    for name, sql in SQL_IN_STRINGS.items()
]


def cursor_token(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


FORGED_CURSORS = {
    "not-json": base64.urlsafe_b64encode(b"\xff\xfe not json").decode(),
    "a-list": cursor_token([1]),
    "empty-object": cursor_token({}),
    "huge-offset": cursor_token({"k": "offset", "o": 10**30}),
    "float-offset": cursor_token({"k": "offset", "o": 1e308}),
    "keyset-without-keys": cursor_token({"k": "keyset"}),
    "deep-json": base64.urlsafe_b64encode(b"[" * 20_000 + b"]" * 20_000).decode(),
    "long": "A" * 60_000,
}
CASES += [
    Case(f"forged-cursor-{name}", "GET", f"{ROWS}?cursor={token}", 400, "invalid_cursor")
    for name, token in FORGED_CURSORS.items()
]

# Encodings: codecs that are not text (bytes to bytes, or text to text) or refuse everything,
# and UTF-16/32 files without their byte order mark.
CASES += [
    Case(
        f"encoding-{name}",
        "PUT",
        f"/api/datasets/hx_enc?encoding={q(name)}",
        status,
        code,
        body=SMALL_CSV,
    )
    for name, status, code in (
        ("zlib", 400, "invalid_option"),
        ("base64", 400, "invalid_option"),
        ("rot13", 400, "invalid_option"),
        ("hex", 400, "invalid_option"),
        ("undefined", 400, "invalid_option"),
        ("punycode", 422, "invalid_encoding"),
        ("utf-16", 422, "invalid_encoding"),
        ("utf-32", 422, "invalid_encoding"),
    )
]
CASES += [
    Case(
        f"staged-encoding-{name}",
        "POST",
        f"/api/uploads?encoding={q(name)}",
        status,
        code,
        body=multipart([file_part()]),
        headers=MULTIPART,
    )
    for name, status, code in (
        ("zlib", 400, "invalid_option"),
        ("undefined", 400, "invalid_option"),
        ("punycode", 422, "invalid_encoding"),
        ("utf-16", 422, "invalid_encoding"),
    )
]

LONG_BOUNDARY = b"b" * 300
DEEP_NDJSON = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
CASES += [
    Case(
        "multipart-boundary-too-long",
        "POST",
        "/api/datasets",
        400,
        ("invalid_multipart", "bad_request"),
        body=multipart([file_part()], boundary=LONG_BOUNDARY),
        headers=(("Content-Type", "multipart/form-data; boundary=" + "b" * 300),),
    ),
    Case(
        "staged-multipart-boundary-too-long",
        "POST",
        "/api/uploads",
        400,
        ("invalid_multipart", "bad_request"),
        body=multipart([file_part()], boundary=LONG_BOUNDARY),
        headers=(("Content-Type", "multipart/form-data; boundary=" + "b" * 300),),
    ),
    Case(
        "ndjson-nested-deep",
        "PUT",
        "/api/datasets/hx_deep?format=ndjson",
        (400, 413, 422),
        ("payload_too_large", "invalid_file", "too_deep", "load_failed", "invalid_json"),
        body=DEEP_NDJSON,
    ),
    Case(
        "json-body-nested-deep",
        "POST",
        "/api/query",
        400,
        "bad_request",
        body=b'{"sql": "SELECT 1", "params": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        headers=JSON,
    ),
]


def test_the_corpus_is_large_and_named_uniquely() -> None:
    assert len(CASES) >= 50
    assert len({case.id for case in CASES}) == len(CASES)


# -- the server and its state ----------------------------------------------------------------
@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(
        "backend",
        tmp_path_factory.mktemp("hostile"),
        env={
            "MYAPP_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
            "MYAPP_QUERY_TIMEOUT_MS": str(TIME_LIMIT_MS),
            "MYAPP_MEMORY_LIMIT": MEMORY_LIMIT,
            "MYAPP_MAX_RESULT_BYTES": str(MAX_RESULT_BYTES),
        },
    ).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            response = client.put(
                f"/api/datasets/{SALES}", params={"filename": "sales.csv"}, content=SALES_CSV
            )
            assert response.status_code == 201, response.text
            response = client.post(
                "/api/queries",
                json={
                    "slug": REPORT,
                    "title": "Sales from an id on",
                    "sql": f"SELECT * FROM {SALES} WHERE id >= $min_id",
                    "parameters": [{"name": "min_id", "type": "integer", "default": 0}],
                },
            )
            assert response.status_code == 201, response.text
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(backend: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=backend.url, timeout=30.0) as api:
        yield api


def files(root: Path) -> set[str]:
    """Every file and directory the server has, but DuckDB's own spill and log files."""
    return {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if ".tmp" not in path.parts and not path.name.endswith((".wal", ".log"))
    }


def snapshot(client: httpx.Client, root: Path) -> dict[str, Any]:
    datasets = client.get("/api/datasets").json()["datasets"]
    queries = client.get("/api/queries").json()["queries"]
    return {
        "datasets": {d["name"]: (d["row_count"], d["version"]) for d in datasets},
        "queries": {s["slug"]: s["version"] for s in queries},
        "files": files(root),
    }


def assert_error_body(answer: Answer, code: str | tuple[str, ...] | None) -> None:
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    # Browsers must not guess another type (HTML) from what the message repeats.
    assert answer.headers.get("x-content-type-options") == "nosniff", answer
    body = answer.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "detail"}, error
    codes = code if isinstance(code, tuple) else (code,)
    assert error["code"] in codes, error
    message = error["message"]
    assert isinstance(message, str) and message.endswith(".") and len(message) > 10, error
    assert "Traceback" not in message


# -- the corpus, case by case ----------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_request(
    case: Case, backend: ServerProcess, client: httpx.Client, tmp_path: Path
) -> None:
    before = snapshot(client, backend.workdir)
    if case.raw is not None:
        request = case.raw
    else:
        request = build(
            case.method,
            case.target,
            port=backend.port,
            body=case.body,
            headers=case.headers,
            length=case.length,
        )
    started = time.monotonic()
    answer = exchange(backend.port, request)
    took = time.monotonic() - started

    statuses = case.status if isinstance(case.status, tuple) else (case.status,)
    assert answer.status in statuses, (answer.status, answer.body[:500])
    if answer.status >= 400:
        assert_error_body(answer, case.code)
    if case.within_s is not None:
        assert took < case.within_s, took
    if case.check is not None:
        case.check(answer)

    after = snapshot(client, backend.workdir)
    if case.creates_dataset:
        created = after["datasets"].pop(case.creates_dataset, None)
        assert created is not None, (case.creates_dataset, sorted(after["datasets"]))
        assert client.delete(f"/api/datasets/{case.creates_dataset}").status_code == 204
        after = snapshot(client, backend.workdir)
    if case.creates_query and answer.status < 400:
        # Created exactly when accepted; a refusal created nothing (checked below).
        assert after["queries"].pop(case.creates_query, None) == 1
        assert client.delete(f"/api/queries/{case.creates_query}").status_code == 204
        after = snapshot(client, backend.workdir)
    assert after == before
    # The server is still well and still answers the next client.
    assert client.get(f"/api/datasets/{SALES}/rows").json()["total"] == 3


# -- markup in data and names, as the pages show it ------------------------------------------
MARKUP_CSV = (
    b'id,city,"<img src=x onerror=alert(1)>"\n'
    b'1,"<script>alert(2)</script>","</td><svg onload=alert(3)>"\n'
    b'2,Oslo,"""><iframe src=javascript:alert(4)>"\n'
)
MARKUP_FILENAME = "<svg onload=alert(5)>.csv"
MARKUP_TITLE = "<script>alert(6)</script>"
MARKUP_DESCRIPTION = "<img src=x onerror=alert(7)>"
MARKUP_SEARCH = "<script>alert(8)</script>"
MARKUP_CELLS = ("<script>alert(2)</script>", "</td><svg onload=alert(3)>")


class MarkupAudit(HTMLParser):
    """What a browser would run in a page: event handlers, javascript: URLs, inline scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.handlers: list[str] = []
        self.inline_scripts: list[dict[str, str | None]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.handlers += [f"<{tag} {name}>" for name, _ in attrs if name.startswith("on")]
        self.handlers += [
            f"<{tag} {name}={value}>"
            for name, value in attrs
            if (value or "").strip().lower().startswith("javascript:")
        ]
        values = dict(attrs)
        if tag == "script" and "src" not in values and values.get("type") != "application/json":
            self.inline_scripts.append(values)


@pytest.fixture(scope="module")
def web(backend: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = ServerProcess(
        "frontend", tmp_path_factory.mktemp("hostile-web"), env={"MYAPP_BACKEND_URL": backend.url}
    ).start()
    try:
        yield server.url
    finally:
        server.stop()


def test_markup_in_data_and_names_is_stored_verbatim_and_shown_escaped(
    client: httpx.Client, web: str
) -> None:
    uploaded = client.put(
        "/api/datasets/hx_markup", params={"filename": MARKUP_FILENAME}, content=MARKUP_CSV
    )
    assert uploaded.status_code == 201, uploaded.text
    dataset = uploaded.json()["dataset"]
    assert dataset["source"]["filename"] == MARKUP_FILENAME
    header = [c["name"] for c in dataset["columns"]]
    assert header[2] == "<img src=x onerror=alert(1)>"
    rows = client.get("/api/datasets/hx_markup/rows").json()["rows"]
    assert rows[0][1:] == list(MARKUP_CELLS)
    saved = client.post(
        "/api/queries",
        json={
            "slug": "hx-markup-page",
            "title": MARKUP_TITLE,
            "description": MARKUP_DESCRIPTION,
            "sql": "SELECT * FROM hx_markup",
        },
    )
    assert saved.status_code == 201, saved.text
    assert saved.json()["title"] == MARKUP_TITLE

    try:
        pages = {
            "/datasets": [MARKUP_FILENAME],
            "/datasets/hx_markup": [*MARKUP_CELLS, header[2], MARKUP_FILENAME],
            f"/datasets/hx_markup?q={q(MARKUP_SEARCH)}": [MARKUP_SEARCH],
            f"/datasets/hx_markup?city__eq={q(MARKUP_CELLS[0])}": [MARKUP_CELLS[0]],
            "/datasets/hx_markup/profile": [header[2]],
            "/queries": [MARKUP_TITLE],
            "/queries/hx-markup-page": [MARKUP_TITLE, MARKUP_DESCRIPTION],
        }
        with httpx.Client(base_url=web, timeout=30.0) as browser:
            for path, payloads in pages.items():
                page = browser.get(path)
                assert page.status_code == 200, (path, page.status_code)
                html = page.text
                for payload in payloads:
                    assert escape(payload) in html, (path, payload)
                    assert payload not in html, (path, payload)
                audit = MarkupAudit()
                audit.feed(html)
                assert audit.handlers == [], (path, audit.handlers)
                assert audit.inline_scripts == [], (path, audit.inline_scripts)
                assert "iframe" not in audit.tags, path

            # A name that cannot exist gets the friendly page, with the name escaped.
            missing = browser.get("/datasets/" + q("<img src=x onerror=alert(9)>"))
            assert missing.status_code == 404
            assert "<img src=x onerror=alert(9)>" not in missing.text
            audit = MarkupAudit()
            audit.feed(missing.text)
            assert audit.handlers == [], audit.handlers
    finally:
        assert client.delete("/api/queries/hx-markup-page").status_code == 204
        assert client.delete("/api/datasets/hx_markup").status_code == 204


# -- a staged upload, out of reach of every SQL path -----------------------------------------
STAGED_SECRET = b"secret_column\nhx-staged-value-4711\n"


def test_a_staged_upload_is_out_of_reach_of_every_sql_path(
    backend: ServerProcess, client: httpx.Client
) -> None:
    staged = client.post("/api/uploads", files={"file": ("private.csv", STAGED_SECRET, "text/csv")})
    assert staged.status_code == 201, staged.text
    upload_id = staged.json()["upload"]["id"]
    try:
        folders = [p for p in backend.data_dir.rglob("*") if p.is_dir() and upload_id in p.name]
        assert folders, "the staged upload's folder"
        folder = folders[0]
        files_in = [p for p in folder.rglob("*") if p.is_file()]
        assert files_in
        reads = []
        for path in [folder, *files_in]:
            text = str(path)
            reads += [
                f"SELECT * FROM read_csv('{text}')",
                f"SELECT * FROM read_csv_auto('{text}', all_varchar=true)",
                f"SELECT * FROM '{text}'",
                f"SELECT * FROM read_text('{text}')",
                f"SELECT * FROM read_blob('{text}')",
                f"SELECT * FROM read_duckdb('{text}')",
                f"SELECT * FROM read_parquet('{text}')",
                f"SELECT * FROM read_json_auto('{text}')",
                f"SELECT * FROM glob('{text}/*')",
                f"SELECT * FROM '{text}/*'",
                f"SELECT * FROM sniff_csv('{text}')",
                f"SELECT * FROM query('SELECT * FROM read_csv(''{text}'')')",
                f"ATTACH '{text}' AS staged (READ_ONLY)",
                f"COPY (SELECT 1) TO '{text}.csv'",
            ]
        for sql in reads:
            for method, path, kwargs in (
                ("POST", "/api/query", {"json": {"sql": sql}}),
                ("POST", "/api/queries", {"json": {"title": "hx staged", "sql": sql}}),
                ("GET", "/api/query/export", {"params": {"sql": sql, "format": "csv"}}),
            ):
                answer = client.request(method, path, **kwargs)
                assert answer.status_code == 400, (sql, path, answer.text)
                code = answer.json()["error"]["code"]
                assert code in (
                    "function_not_allowed",
                    "table_not_allowed",
                    "statement_not_allowed",
                ), (sql, code)
                assert b"hx-staged-value" not in answer.content
    finally:
        assert client.delete(f"/api/uploads/{upload_id}").status_code == 204
