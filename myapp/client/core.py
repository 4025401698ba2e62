"""`Client(url, token)`: myapp's API from Python, for scripts, notebooks and the CLI."""

from __future__ import annotations

import contextlib
import io
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from myapp.contract.formats import EXPORT_FORMATS, FORMAT_BY_SUFFIX
from myapp.contract.names import suggested_name

from .errors import ApiError, ApiUnavailable

DEFAULT_URL = "http://127.0.0.1:12000"
CONNECT_TIMEOUT_S = 5.0
# Loads and exports run as long as the server's own limits allow.
LONG_TIMEOUT_S = 3600.0
UPLOAD_CHUNK_BYTES = 1024 * 1024
# Most seconds one call spends waiting out 503 server_busy answers (the server's heavy work
# queue, MYAPP_HEAVY_QUEUE) before it gives up and raises the 503 as ApiError.
BUSY_WAIT_S = 120.0
# A Retry-After the server did not give, or could not be read.
BUSY_RETRY_DEFAULT_S = 2.0
RESULT_KINDS = ("rows", "arrow", "pandas", "polars")


class Result(list):
    """A query's rows as a list of dicts (column name → value), with what came with them."""

    def __init__(self, body: dict[str, Any]) -> None:
        names = [c["name"] for c in body["columns"]]
        super().__init__(dict(zip(names, row, strict=True)) for row in body["rows"])
        self.columns: list[dict[str, str]] = body["columns"]
        self.truncated: bool = bool(body.get("truncated"))
        self.elapsed_ms = body.get("elapsed_ms")


def _need(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"this needs {module}: pip install {extra}") from None


def _read_parquet(data: bytes, to: str) -> Any:
    if to == "polars":
        polars = _need("polars", "polars")
        return polars.read_parquet(io.BytesIO(data))
    _need("pyarrow", "pyarrow")
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    if to == "pandas":
        _need("pandas", "pandas")
        return table.to_pandas()
    return table


def export_format_of(path: str | os.PathLike[str], given: str | None = None) -> str:
    if given is not None:
        if given not in EXPORT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
        return given
    suffix = Path(path).suffix.lower()
    if suffix not in FORMAT_BY_SUFFIX:
        raise ValueError(
            f"cannot tell the format from {Path(path).name!r}; give format= "
            f"({', '.join(EXPORT_FORMATS)})"
        )
    return FORMAT_BY_SUFFIX[suffix]


class Client:
    """A connection to a myapp backend (`url`, e.g. http://127.0.0.1:12000, and an API token).

    Every method raises ApiError when the API refuses (its status, code, message and detail)
    and ApiUnavailable (an ApiError without a status) when the backend cannot be reached.
    Use it as a context manager, or call close().
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout_s: float = 60.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        busy_wait_s: float = BUSY_WAIT_S,
    ) -> None:
        self.url = url.rstrip("/")
        # 503 server_busy answers are tried again after their Retry-After, for this long in all.
        self.busy_wait_s = busy_wait_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.connect_timeout_s = connect_timeout_s
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
        )

    # -- plumbing ----------------------------------------------------------------------------
    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _unavailable(self, exc: httpx.TransportError, timeout: Any = None) -> ApiUnavailable:
        if isinstance(exc, httpx.TimeoutException):
            waited = httpx.Timeout(timeout).read if timeout is not None else self.http.timeout.read
            within = "in time" if waited is None else f"within {waited:g} s"
            return ApiUnavailable(
                f"the backend at {self.url} did not answer {within}", code="backend_timeout"
            )
        return ApiUnavailable(f"cannot reach the backend at {self.url}: {exc}")

    def _headers(self, given: dict[str, str] | None) -> dict[str, str] | None:
        """The headers of one call (a subclass adds its own, as the frontend does)."""
        return given

    def _error(self, response: httpx.Response) -> ApiError:
        return ApiError.from_response(response)

    def _busy_delay(self, response: httpx.Response, waited: float, replayable: bool) -> float:
        """Seconds to wait before sending again after a 503 server_busy (the server's queue of
        heavy work was full), honouring Retry-After; 0 when the answer is to be raised."""
        if response.status_code != 503 or not replayable:
            return 0.0
        try:
            if response.json()["error"]["code"] != "server_busy":
                return 0.0
        except (ValueError, KeyError, TypeError):
            return 0.0
        try:
            delay = max(0.1, float(response.headers.get("Retry-After", "")))
        except ValueError:
            delay = BUSY_RETRY_DEFAULT_S
        # A little spread, so that clients refused together do not all come back together.
        delay *= 1 + random.random() * 0.2  # noqa: S311 - not for security
        if waited + delay > self.busy_wait_s:
            return 0.0
        return delay

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; an error answer raises ApiError. A 503 server_busy is sent again after
        its Retry-After (for up to busy_wait_s in all); `content` may be a function giving the
        body, so that a streamed body can be sent again."""
        kwargs["headers"] = self._headers(kwargs.get("headers"))
        content = kwargs.pop("content", None)
        replayable = content is None or isinstance(content, bytes | str) or callable(content)
        waited = 0.0
        while True:
            body = content() if callable(content) else content
            try:
                response = self.http.request(method, path, content=body, **kwargs)
            except httpx.TransportError as exc:
                raise self._unavailable(exc, kwargs.get("timeout")) from None
            if response.status_code < 400:
                return response
            delay = self._busy_delay(response, waited, replayable)
            if not delay:
                raise self._error(response)
            time.sleep(delay)
            waited += delay

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A streamed request or answer (uploads in, downloads out), never held whole; an error
        answer raises ApiError before any body. A 503 server_busy is tried again as in
        request()."""
        kwargs["headers"] = self._headers(kwargs.get("headers"))
        content = kwargs.pop("content", None)
        replayable = content is None or isinstance(content, bytes | str) or callable(content)
        waited = 0.0
        try:
            while True:
                body = content() if callable(content) else content
                with self.http.stream(method, path, content=body, **kwargs) as response:
                    if response.status_code >= 400:
                        response.read()
                        delay = self._busy_delay(response, waited, replayable)
                        if not delay:
                            raise self._error(response)
                    else:
                        yield response
                        return
                time.sleep(delay)
                waited += delay
        except httpx.TransportError as exc:
            raise self._unavailable(exc, kwargs.get("timeout")) from None

    # -- datasets ----------------------------------------------------------------------------
    def datasets(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/datasets").json()["datasets"]

    def dataset(self, name: str) -> dict[str, Any]:
        return self.request("GET", _dataset_path(name)).json()

    def upload(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        mode: str = "create",
        format: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Load a file as dataset `name` (default: from the file name), streamed from disk.

        `mode` is create, replace or append; `format` and parsing `options` (delimiter,
        header, encoding, …) as the API takes them. Returns the API's answer: `dataset`,
        `rows_loaded`, `rows_rejected`, `rejects`.
        """
        file = Path(path)
        target = name or _name_from_filename(file)
        params = {"mode": mode, "filename": file.name, **options}
        if format is not None:
            params["format"] = format

        return self.request(
            "PUT",
            _dataset_path(target),
            params={k: _param(v) for k, v in params.items() if v is not None},
            content=lambda: _file_chunks(file),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(file.stat().st_size),
            },
            timeout=httpx.Timeout(LONG_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        ).json()

    def delete_dataset(self, name: str) -> None:
        self.request("DELETE", _dataset_path(name))

    # -- staged uploads: look before loading --------------------------------------------------
    def stage(
        self, path: str | os.PathLike[str], *, format: str | None = None, **options: Any
    ) -> dict[str, Any]:
        """Send a file to be read as it would load, without loading it (streamed from disk).

        Returns the preview: `id`, the detected `format`, `encoding`, `delimiter`, `header`,
        `skip`, `sheet` (and `sheets`), `columns`, the first `rows`, `row_count` and `rejects`.
        Change it with `restage`, load it with `load_staged`, drop it with `discard_staged`;
        it expires on its own after the server's MYAPP_UPLOAD_TTL_S.
        """
        file = Path(path)
        params = {"filename": file.name, "format": format, **options}
        return self.request(
            "POST",
            "/api/uploads",
            params={k: _param(v) for k, v in params.items() if v is not None},
            content=lambda: _file_chunks(file),
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(file.stat().st_size),
            },
            timeout=httpx.Timeout(LONG_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        ).json()["upload"]

    def restage(self, upload_id: str, **changes: Any) -> dict[str, Any]:
        """Read a staged upload again with other options (None: detect again) or `types`."""
        return self.request(
            "PATCH",
            _upload_path(upload_id),
            json=changes,
            timeout=httpx.Timeout(LONG_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        ).json()["upload"]

    def load_staged(
        self, upload_id: str, name: str | None = None, *, mode: str = "create"
    ) -> dict[str, Any]:
        """Make a staged upload a dataset; the same answer as `upload`."""
        return self.request(
            "POST",
            _upload_path(upload_id) + "/load",
            json=_given(name=name, mode=mode),
            timeout=httpx.Timeout(LONG_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        ).json()

    def discard_staged(self, upload_id: str) -> None:
        self.request("DELETE", _upload_path(upload_id))

    # -- SQL ---------------------------------------------------------------------------------
    def query(
        self,
        sql: str,
        params: dict[str, Any] | None = None,
        *,
        to: str = "rows",
        limit: int | None = None,
        timeout_ms: int | None = None,
    ) -> Any:
        """Run one SELECT (named parameters as `$name`, values in `params`).

        to="rows" (default): a Result, the rows as a list of dicts, at most `limit` (or the
        server's cap; `result.truncated` says when rows were left out). to="arrow", "pandas"
        or "polars": every row, fetched as Parquet so that column types come through exactly
        (needs pyarrow, pandas or polars installed).
        """
        if to not in RESULT_KINDS:
            raise ValueError(f"to must be one of {', '.join(RESULT_KINDS)}")
        if to != "rows":
            body = _given(sql=sql, params=params, format="parquet")
            return _read_parquet(self._download_bytes("POST", "/api/query/export", json=body), to)
        body = _given(sql=sql, params=params, limit=limit, timeout_ms=timeout_ms)
        return Result(self.request("POST", "/api/query", json=body).json())

    def export(
        self,
        sql: str,
        path: str | os.PathLike[str],
        params: dict[str, Any] | None = None,
        *,
        format: str | None = None,
        bom: bool = False,
    ) -> int:
        """Save the whole result of a SELECT to `path` (format from its suffix, or `format`;
        xlsx holds at most 1,048,575 rows). `bom=True` starts a csv/tsv with a UTF-8
        byte-order mark (for Excel on Windows).

        The file appears only when complete; returns its size in bytes."""
        fmt = export_format_of(path, format)
        body = _given(sql=sql, params=params, format=fmt, bom=bom or None)
        return self._download_to(path, "POST", "/api/query/export", json=body)

    def saved_query(self, slug: str) -> SavedQuery:
        return SavedQuery(self, slug)

    def saved_queries(self, q: str | None = None) -> list[dict[str, Any]]:
        return self.request("GET", "/api/queries", params=_given(q=q)).json()["queries"]

    # -- downloads ---------------------------------------------------------------------------
    def _download_bytes(self, method: str, path: str, **kwargs: Any) -> bytes:
        buffer = io.BytesIO()
        self._download(buffer, method, path, **kwargs)
        return buffer.getvalue()

    def _download_to(
        self, target: str | os.PathLike[str], method: str, path: str, **kwargs: Any
    ) -> int:
        target = Path(target)
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        try:
            with os.fdopen(fd, "wb") as out:
                size = self._download(out, method, path, **kwargs)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return size

    def _download(self, out: Any, method: str, path: str, **kwargs: Any) -> int:
        received = 0
        began = False
        timeout = httpx.Timeout(LONG_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
        try:
            with self.stream(method, path, timeout=timeout, **kwargs) as response:
                began = True
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    received += len(chunk)
        except ApiUnavailable:
            if not began:
                raise
            # A big export is sent while the server still writes it; a failure after that
            # ends the response early, and a part must never pass for the whole.
            raise ApiError(
                None,
                "export_incomplete",
                f"the export broke off after {received:,} bytes: the query failed part way, "
                "reached the server's time limit, or the connection broke",
            ) from None
        return received


class SavedQuery:
    """A saved query by its slug: `run(params)` and `export(path, params)`."""

    def __init__(self, client: Client, slug: str) -> None:
        self.client = client
        self.slug = slug
        self.path = "/api/queries/" + quote(slug, safe="")

    def info(self, version: int | None = None) -> dict[str, Any]:
        return self.client.request("GET", self.path, params=_given(version=version)).json()

    def run(
        self,
        params: dict[str, Any] | None = None,
        *,
        version: int | None = None,
        limit: int | None = None,
        timeout_ms: int | None = None,
        to: str = "rows",
    ) -> Any:
        """Run it (missing parameters take their defaults); `to` as in Client.query."""
        if to not in RESULT_KINDS:
            raise ValueError(f"to must be one of {', '.join(RESULT_KINDS)}")
        if to != "rows":
            query = self._export_params(params, version, "parquet")
            data = self.client._download_bytes("GET", self.path + "/export", params=query)
            return _read_parquet(data, to)
        body = _given(params=params, version=version, limit=limit, timeout_ms=timeout_ms)
        return Result(self.client.request("POST", self.path + "/run", json=body).json())

    def export(
        self,
        path: str | os.PathLike[str],
        params: dict[str, Any] | None = None,
        *,
        version: int | None = None,
        format: str | None = None,
        bom: bool = False,
    ) -> int:
        fmt = export_format_of(path, format)
        query = self._export_params(params, version, fmt)
        if bom:
            query["bom"] = "true"
        return self.client._download_to(path, "GET", self.path + "/export", params=query)

    @staticmethod
    def _export_params(
        params: dict[str, Any] | None, version: int | None, fmt: str
    ) -> dict[str, Any]:
        import json

        return _given(format=fmt, version=version, params=json.dumps(params) if params else None)


def _dataset_path(name: str) -> str:
    return "/api/datasets/" + quote(name, safe="")


def _upload_path(upload_id: str) -> str:
    return "/api/uploads/" + quote(upload_id, safe="")


def _file_chunks(file: Path) -> Iterator[bytes]:
    with file.open("rb") as handle:
        while chunk := handle.read(UPLOAD_CHUNK_BYTES):
            yield chunk


def _name_from_filename(path: Path) -> str:
    return suggested_name(path.name)


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _given(**fields: Any) -> dict[str, Any]:
    """The fields given: the API's own defaults stand for the others."""
    return {key: value for key, value in fields.items() if value is not None}
