"""Typed calls from the frontend to the backend's /api over httpx.

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

from myapp.logs import REQUEST_ID_HEADER

# A backend that does not accept a connection this fast is treated as down: people should see
# the 503 page quickly rather than wait on a dead host.
CONNECT_TIMEOUT_S = 3.0


class BackendError(Exception):
    """The backend answered with an error body."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail


class BackendUnavailable(BackendError):
    """The backend could not be reached, or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(503, "backend_unavailable", message)


def error_from_response(response: httpx.Response) -> BackendError:
    try:
        body = response.json()
        err = body["error"]
        return BackendError(response.status_code, err["code"], err["message"], err.get("detail"))
    except (ValueError, KeyError, TypeError):
        if response.status_code in (502, 503, 504):
            return BackendUnavailable(f"The backend answered {response.status_code}.")
        return BackendError(
            response.status_code, "backend_error", f"The backend answered {response.status_code}."
        )


class ApiClient:
    """One per frontend process; httpx.Client pools connections and is thread-safe."""

    def __init__(
        self,
        base_url: str,
        *,
        read_timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.read_timeout_s = read_timeout_s
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(read_timeout_s, connect=CONNECT_TIMEOUT_S),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    # -- plumbing ---------------------------------------------------------------------------
    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
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

    def request_headers(self) -> dict[str, str]:
        """This request's headers for backend calls (id, token, client address), to pass as
        `headers=` from a thread that has no request context (calls made concurrently)."""
        return self._headers()

    def _timeout(self, read_timeout_s: float | None) -> httpx.Timeout:
        return httpx.Timeout(read_timeout_s or self.read_timeout_s, connect=CONNECT_TIMEOUT_S)

    def request(
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
        try:
            response = self._client.request(
                method,
                path,
                params=params,
                json=json,
                content=content,
                headers=self._headers(headers),
                timeout=self._timeout(read_timeout_s),
            )
        except httpx.TimeoutException:
            raise BackendUnavailable("The backend did not answer in time.") from None
        except httpx.TransportError:
            raise BackendUnavailable("The backend cannot be reached.") from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

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
    def stream(
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
        request = self._client.build_request(
            method,
            path,
            params=params,
            json=json,
            content=content,
            headers=self._headers(headers),
            timeout=self._timeout(read_timeout_s),
        )
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise BackendUnavailable("The backend did not answer in time.") from None
        except httpx.TransportError:
            raise BackendUnavailable("The backend cannot be reached.") from None
        try:
            if response.status_code >= 400:
                response.read()
                raise error_from_response(response)
            yield response
        finally:
            response.close()

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
