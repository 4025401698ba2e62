"""The one error the client raises: what the API answered, or that it could not be reached."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """An error answer of the API (`status`, `code`, `message`, `detail` from its JSON error
    body), or `status` None when the backend could not be reached or did not answer in time."""

    def __init__(self, status: int | None, code: str, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        if self.status is None:
            return self.message
        return f"{self.message} ({self.status} {self.code})"

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """The API's error body; an answer without one (a proxy's page) still becomes one."""
        try:
            error = response.json()["error"]
            return cls(response.status_code, error["code"], error["message"], error.get("detail"))
        except (ValueError, KeyError, TypeError):
            return cls(
                response.status_code,
                f"http_{response.status_code}",
                f"the backend answered {response.status_code}",
            )


class ApiUnavailable(ApiError):
    """The backend could not be reached, or did not answer in time (no HTTP status)."""

    def __init__(self, message: str, code: str = "backend_unavailable") -> None:
        super().__init__(None, code, message)
