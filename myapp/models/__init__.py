"""Pydantic models both roles exchange. One module per resource; shared shapes live here.

Names say their role: `…Public` is what the API returns, `…Create`/`…Update` what it accepts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorInfo(BaseModel):
    code: str = Field(description="snake_case code a client can branch on")
    message: str = Field(description="one sentence a person can act on")
    detail: Any | None = None


class ErrorBody(BaseModel):
    """The one error body: every 4xx/5xx from /api has this shape."""

    error: ErrorInfo


class HealthPublic(BaseModel):
    status: Literal["ok", "unavailable"]
    version: str
    database: Literal["ok", "unavailable"]


class Column(BaseModel):
    name: str
    type: str
