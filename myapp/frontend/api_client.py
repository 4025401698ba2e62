"""The frontend's calls to the backend's /api, through the one API client (myapp.client).

Non-2xx answers become BackendError carrying the backend's error code and message; a backend
that cannot be reached or does not answer in time becomes BackendUnavailable, which the app
renders as a friendly 503 page.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from flask import g, has_request_context

from myapp.client import ApiError, Client
from myapp.logs import REQUEST_ID_HEADER

# A backend that does not accept a connection this fast is treated as down: people should see
# the 503 page quickly rather than wait on a dead host.
CONNECT_TIMEOUT_S = 3.0
# Most seconds a page's upload, export or profile waits in the backend's queue of heavy work
# (sent as `Prefer: wait=N`; the backend's own limit is MYAPP_HEAVY_WAIT_S). A page holds one
# of the few threads of its process meanwhile, and pages behind it would wait for a thread:
# the "busy" page with Retry-After comes instead.
PAGE_HEAVY_WAIT_S = 2


class BackendError(ApiError):
    """The backend answered with an error body (an ApiError whose text is its message alone,
    the sentence a page shows)."""

    def __str__(self) -> str:
        return self.message


class BackendUnavailable(BackendError):
    """The backend could not be reached, or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "backend_unavailable", message)


def error_from_response(response: httpx.Response) -> BackendError:
    try:
        body = response.json()
        err = body["error"]
        error = BackendError(response.status_code, err["code"], err["message"], err.get("detail"))
        if err["code"] == "server_busy" and has_request_context():
            # The page that fails for it answers 503 with the same Retry-After (app.py).
            g.retry_after = response.headers.get("Retry-After", "")
        return error
    except (ValueError, KeyError, TypeError):
        if response.status_code in (502, 503, 504):
            return BackendUnavailable(f"The backend answered {response.status_code}.")
        return BackendError(
            response.status_code, "backend_error", f"The backend answered {response.status_code}."
        )


class ApiClient(Client):
    """The API client (myapp.client) as the pages use it: one per frontend process (httpx's
    client pools connections and is thread-safe); every call carries the page request's id,
    token and client address, and errors are sentences a page can show."""

    def __init__(
        self,
        base_url: str,
        *,
        read_timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            base_url,
            timeout_s=read_timeout_s,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            transport=transport,
            # A page does not wait out the backend's queue of heavy work: a 503 server_busy
            # becomes the "busy, try again shortly" page at once (app.py).
            busy_wait_s=0.0,
        )
        self.base_url = self.url
        self.read_timeout_s = read_timeout_s

    # -- plumbing ---------------------------------------------------------------------------
    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers: dict[str, str] = {"Prefer": f"wait={PAGE_HEAVY_WAIT_S}"}
        if has_request_context():
            request_id = g.get("request_id")
            if request_id:
                headers[REQUEST_ID_HEADER] = request_id
            token = g.get("api_token")
            if token:
                headers["Authorization"] = f"Bearer {token}"
            client_ip = g.get("client_ip")
            if client_ip:
                headers["X-Forwarded-For"] = client_ip
        if extra:
            headers.update(extra)
        return headers

    def _error(self, response: httpx.Response) -> BackendError:
        return error_from_response(response)

    def _unavailable(self, exc: httpx.TransportError, timeout: Any = None) -> BackendUnavailable:
        if isinstance(exc, httpx.TimeoutException):
            return BackendUnavailable("The backend did not answer in time.")
        return BackendUnavailable("The backend cannot be reached.")

    def request_headers(self) -> dict[str, str]:
        """This request's headers for backend calls (id, token, client address), to pass as
        `headers=` from a thread that has no request context (calls made concurrently)."""
        return self._headers()

    def _timeout(self, read_timeout_s: float | None) -> httpx.Timeout:
        return httpx.Timeout(read_timeout_s or self.read_timeout_s, connect=CONNECT_TIMEOUT_S)

    def request(  # type: ignore[override]
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        content: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        read_timeout_s: float | None = None,
    ) -> httpx.Response:
        """Send one request to /api…; raise BackendError for any non-2xx answer."""
        return super().request(
            method,
            path,
            params=params,
            json=json,
            content=content,
            headers=headers,
            timeout=self._timeout(read_timeout_s),
            follow_redirects=False,
        )

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post(self, path: str, **kwargs: Any) -> Any:
        response = self.request("POST", path, **kwargs)
        return response.json() if response.content else None

    def put(self, path: str, **kwargs: Any) -> Any:
        response = self.request("PUT", path, **kwargs)
        return response.json() if response.content else None

    def patch(self, path: str, **kwargs: Any) -> Any:
        response = self.request("PATCH", path, **kwargs)
        return response.json() if response.content else None

    def delete(self, path: str, **kwargs: Any) -> None:
        self.request("DELETE", path, **kwargs)

    @contextmanager
    def stream(  # type: ignore[override]
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        content: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        read_timeout_s: float | None = None,
    ) -> Iterator[httpx.Response]:
        """A streamed request (uploads in, downloads out); the body is never held whole."""
        with super().stream(
            method,
            path,
            params=params,
            json=json,
            content=content,
            headers=headers,
            timeout=self._timeout(read_timeout_s),
        ) as response:
            yield response

    # -- calls ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The backend's health; a backend whose database is unusable counts as unavailable."""
        try:
            return self.get("/api/health")
        except BackendUnavailable:
            raise
        except BackendError as exc:
            if exc.status == 503:
                raise BackendUnavailable("The backend's database is not available.") from None
            raise
