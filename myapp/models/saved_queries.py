"""Bodies of the saved-queries API, and the typing of their parameters (shared by both roles)."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, field_validator, model_validator

from .query import MAX_SQL_CHARS, ChartConfig

ParameterType = Literal["text", "integer", "number", "date", "boolean"]
PARAMETER_TYPES: tuple[str, ...] = ("text", "integer", "number", "date", "boolean")

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
MAX_SLUG_CHARS = 80
MAX_PARAMETERS = 50

_TRUE = frozenset({"true", "t", "yes", "y", "on", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "off", "0"})
_INTEGER = re.compile(r"^[+-]?\d+$")


class ParameterValueError(ValueError):
    """A parameter value that cannot be read as its declared type; the message says why."""


def coerce_parameter(kind: str, value: Any) -> Any:
    """A parameter value as its type: int, float, datetime.date, bool or str. None stays None.

    Accepts JSON values and the strings an HTML form or a query string sends.
    """
    if value is None:
        return None
    if isinstance(value, (list, dict)):
        raise ParameterValueError("expected a single value, not a list or an object")
    if kind == "text":
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    if kind == "integer":
        if isinstance(value, bool):
            raise ParameterValueError("expected a whole number, got true/false")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INTEGER.match(value.strip()):
            return int(value.strip())
        raise ParameterValueError(f"expected a whole number, got {value!r}")
    if kind == "number":
        if isinstance(value, bool):
            raise ParameterValueError("expected a number, got true/false")
        if isinstance(value, (int, float)):
            number = float(value)
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                raise ParameterValueError(f"expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ParameterValueError(f"expected a finite number, got {value!r}")
        return number
    if kind == "date":
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value).strip())
        except ValueError:
            raise ParameterValueError(f"expected a date as YYYY-MM-DD, got {value!r}") from None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ParameterValueError(f"expected true or false, got {value!r}")
    raise ParameterValueError(f"unknown parameter type {kind!r}")


def parameter_json(value: Any) -> Any:
    """A typed parameter value as JSON (dates as YYYY-MM-DD)."""
    return value.isoformat() if isinstance(value, dt.date) else value


class QueryParameter(BaseModel):
    name: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
        description="Used in the SQL as $name.",
    )
    type: ParameterType = "text"
    default: Any = Field(
        None, description="Used when a run gives no value; without one, a value is required."
    )
    label: str | None = Field(None, max_length=100, description="Shown on the form.")

    @model_validator(mode="after")
    def _typed_default(self) -> QueryParameter:
        if isinstance(self.default, str) and self.default == "" and self.type != "text":
            self.default = None
        try:
            self.default = parameter_json(coerce_parameter(self.type, self.default))
        except ParameterValueError as exc:
            raise ValueError(f"default of {self.name}: {exc}") from None
        return self


class _SavedQueryFields(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS)
    description: str = Field("", max_length=5000)
    parameters: list[QueryParameter] = Field(default_factory=list, max_length=MAX_PARAMETERS)
    chart: ChartConfig | None = None

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("the title must not be blank")
        return value

    @field_validator("parameters")
    @classmethod
    def _unique(cls, value: list[QueryParameter]) -> list[QueryParameter]:
        seen: set[str] = set()
        for parameter in value:
            if parameter.name in seen:
                raise ValueError(f"the parameter {parameter.name} is declared twice")
            seen.add(parameter.name)
        return value


class SavedQueryCreate(_SavedQueryFields):
    slug: str | None = Field(
        None,
        pattern=SLUG_PATTERN,
        max_length=MAX_SLUG_CHARS,
        description="The query's address, /queries/<slug>; derived from the title when absent.",
    )
    if_title_exists: Literal["new", "error"] = Field(
        "new",
        description="When a saved query already has this title (ignoring case): `new` saves "
        "another query under a free slug (`title-2`), `error` answers 409 `title_exists` with "
        "the existing query's slug, so a person can open it or choose another title.",
    )


class SavedQueryUpdate(_SavedQueryFields):
    if_title_exists: Literal["keep", "error"] = Field(
        "keep",
        description="When another saved query already has the new title (ignoring case): "
        "`keep` saves anyway, `error` answers 409 `title_exists` with that query's slug.",
    )
    base_version: int | None = Field(
        None,
        ge=1,
        description="The version this edit started from; a newer current version is a 409, "
        "so two people editing at once do not overwrite each other silently.",
    )


class SavedQueryPublic(BaseModel):
    slug: str
    version: int = Field(description="The version shown.")
    latest_version: int
    title: str
    description: str
    sql: str
    parameters: list[QueryParameter]
    chart: ChartConfig | None
    created_at: dt.datetime
    created_by: str | None
    updated_at: dt.datetime = Field(description="When this version was saved.")
    updated_by: str | None


class SavedQuerySummary(BaseModel):
    slug: str
    version: int
    title: str
    description: str
    parameter_count: int
    has_chart: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    updated_by: str | None
    last_run_at: dt.datetime | None = Field(
        None, description="When it last ran (its page, the API, a dashboard or a share link)."
    )
    run_count: int = Field(0, description="Runs and exports since runs were first counted.")


class SavedQueryList(BaseModel):
    queries: list[SavedQuerySummary]


class SavedQueryVersion(BaseModel):
    version: int
    title: str
    created_at: dt.datetime
    created_by: str | None


class SavedQueryVersions(BaseModel):
    slug: str
    versions: list[SavedQueryVersion] = Field(description="Newest first.")


class SavedQueryRestore(BaseModel):
    base_version: int | None = Field(
        None, ge=1, description="The latest version the restorer saw; a newer one is a 409."
    )


class DiffLine(BaseModel):
    op: Literal["equal", "replace", "delete", "insert"]
    from_line: int | None = Field(description="Line number in the older text; null if added.")
    to_line: int | None = Field(description="Line number in the newer text; null if removed.")
    from_: str | None = Field(alias="from", serialization_alias="from")
    to: str | None


class SavedQueryDiff(BaseModel):
    slug: str
    from_: SavedQueryPublic = Field(alias="from", serialization_alias="from")
    to: SavedQueryPublic
    changed: list[str] = Field(description="The fields that differ.")
    sql: list[DiffLine] = Field(description="The SQL, line by line, side by side.")
    description: list[DiffLine]


class SavedQueryRun(BaseModel):
    params: dict[str, Any] | None = Field(
        None, description="Values by parameter name; missing ones take their defaults."
    )
    version: int | None = Field(None, ge=1, description="Run an older version.")
    limit: int | None = Field(None, ge=0)
    timeout_ms: int | None = Field(None, ge=1)
    id: UUID | None = None


class SavedQueryChartRequest(SavedQueryRun):
    chart: ChartConfig | None = Field(None, description="Defaults to the saved chart.")
