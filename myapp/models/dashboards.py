"""Bodies of the dashboards and share-links APIs (shared by both roles and the CLI)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, field_validator, model_validator

from .saved_queries import (
    MAX_SLUG_CHARS,
    SLUG_PATTERN,
    DiffLine,
    ParameterValueError,
    SavedQueryRestore,
    coerce_parameter,
)

GRID_COLUMNS = 12
MAX_TILES = 60
MAX_DASHBOARD_PARAMETERS = 20
MAX_TEXT_CHARS = 20_000
# Rows a table tile shows; its link opens the whole result.
TABLE_TILE_ROWS = 100

TileType = Literal["chart", "table", "number", "text"]
TILE_TYPES: tuple[str, ...] = ("chart", "table", "number", "text")
DashboardParameterType = Literal[
    "text", "integer", "number", "date", "boolean", "daterange", "choice"
]
DASHBOARD_PARAMETER_TYPES: tuple[str, ...] = (
    "text",
    "integer",
    "number",
    "date",
    "boolean",
    "daterange",
    "choice",
)
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
# A date range parameter `period` puts two values in the address: period_from and period_to.
RANGE_SUFFIXES = ("_from", "_to")


def value_keys(parameter: dict[str, Any]) -> list[str]:
    """The names a parameter's values go by, in the address and in tile mappings."""
    if parameter["type"] == "daterange":
        return [parameter["name"] + suffix for suffix in RANGE_SUFFIXES]
    return [parameter["name"]]


def value_type(parameter: dict[str, Any]) -> str:
    """The saved-query type each of a parameter's values has."""
    return {"daterange": "date", "choice": "text"}.get(parameter["type"], parameter["type"])


class DashboardParameter(BaseModel):
    name: str = Field(pattern=NAME_PATTERN, description="Its key in the page's address.")
    type: DashboardParameterType = "text"
    label: str | None = Field(None, max_length=100)
    default: Any = Field(
        None,
        description="A value, or for a date range a two-item list [from, to]; without one the "
        "tiles' own query defaults apply.",
    )
    choices_query: str | None = Field(
        None,
        pattern=SLUG_PATTERN,
        max_length=MAX_SLUG_CHARS,
        description="For type choice: the saved query whose first column lists the choices.",
    )

    @model_validator(mode="after")
    def _check(self) -> DashboardParameter:
        if self.type == "choice" and not self.choices_query:
            raise ValueError(f"the choice parameter {self.name} needs a choices_query")
        if self.type != "choice":
            self.choices_query = None
        if self.default in ("", []):
            self.default = None
        if self.default is None:
            return self
        kind = value_type(self.model_dump())
        try:
            if self.type == "daterange":
                if not isinstance(self.default, list) or len(self.default) != 2:
                    raise ParameterValueError("expected [from, to]")
                self.default = [str(coerce_parameter(kind, v)) for v in self.default]
            else:
                value = coerce_parameter(kind, self.default)
                self.default = value.isoformat() if isinstance(value, dt.date) else value
        except ParameterValueError as exc:
            raise ValueError(f"default of {self.name}: {exc}") from None
        return self


class Tile(BaseModel):
    id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
        description="Stays the same across versions; given by the server when absent.",
    )
    type: TileType
    title: str | None = Field(None, max_length=200)
    width: int = Field(6, ge=1, le=GRID_COLUMNS, description="Columns of a 12-column grid.")
    query: str | None = Field(
        None, pattern=SLUG_PATTERN, max_length=MAX_SLUG_CHARS, description="A saved query slug."
    )
    query_version: int | None = Field(
        None, ge=1, description="Pin a version of the query; the latest when absent."
    )
    params: dict[str, str] = Field(
        default_factory=dict,
        description="Query parameter name -> dashboard value key (a parameter's name, or "
        "<name>_from / <name>_to of a date range). Unmapped parameters take their defaults.",
    )
    text: str | None = Field(
        None, max_length=MAX_TEXT_CHARS, description="Markdown of a text tile."
    )
    compare: bool = Field(
        False,
        description="Number tiles: show the first row's second cell as the comparison value.",
    )

    @model_validator(mode="after")
    def _check(self) -> Tile:
        if self.type == "text":
            if self.text is None:
                raise ValueError("a text tile needs its text")
            self.query = None
            self.query_version = None
            self.params = {}
        elif not self.query:
            raise ValueError(f"a {self.type} tile needs a saved query (query)")
        for target, source in self.params.items():
            if not _NAME.match(target) or not _NAME.match(source):
                raise ValueError(f"the mapping {target} -> {source} is not two parameter names")
        return self


class _DashboardFields(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    parameters: list[DashboardParameter] = Field(
        default_factory=list, max_length=MAX_DASHBOARD_PARAMETERS
    )
    tiles: list[Tile] = Field(default_factory=list, max_length=MAX_TILES, description="In order.")

    @field_validator("title")
    @classmethod
    def _title(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("the title must not be blank")
        return value

    @model_validator(mode="after")
    def _unique(self) -> _DashboardFields:
        keys: set[str] = set()
        for parameter in self.parameters:
            for key in value_keys(parameter.model_dump()):
                if key in keys:
                    raise ValueError(f"the parameter name {key} is used twice")
                keys.add(key)
        ids = [tile.id for tile in self.tiles if tile.id]
        if len(ids) != len(set(ids)):
            raise ValueError("two tiles have the same id")
        return self


class DashboardCreate(_DashboardFields):
    slug: str | None = Field(
        None,
        pattern=SLUG_PATTERN,
        max_length=MAX_SLUG_CHARS,
        description="The dashboard's address; derived from the title when absent.",
    )


class DashboardUpdate(_DashboardFields):
    base_version: int | None = Field(
        None, ge=1, description="The version this edit started from; a newer one is a 409."
    )


class TilePublic(Tile):
    id: str  # type: ignore[assignment]


class DashboardPublic(BaseModel):
    slug: str
    version: int
    latest_version: int
    title: str
    description: str
    parameters: list[DashboardParameter]
    tiles: list[TilePublic]
    created_at: dt.datetime
    created_by: str | None
    updated_at: dt.datetime
    updated_by: str | None


class DashboardSummary(BaseModel):
    slug: str
    version: int
    title: str
    description: str
    tile_count: int
    created_at: dt.datetime
    updated_at: dt.datetime
    updated_by: str | None
    last_run_at: dt.datetime | None = Field(None, description="When a tile of it last ran.")
    run_count: int = Field(0, description="Tile runs since runs were first counted.")


class DashboardList(BaseModel):
    dashboards: list[DashboardSummary]


class DashboardVersion(BaseModel):
    version: int
    title: str
    created_at: dt.datetime
    created_by: str | None


class DashboardVersions(BaseModel):
    slug: str
    versions: list[DashboardVersion] = Field(description="Newest first.")


class DashboardDiff(BaseModel):
    slug: str
    from_: DashboardPublic = Field(alias="from", serialization_alias="from")
    to: DashboardPublic
    changed: list[str] = Field(description="The fields that differ.")
    description: list[DiffLine] = Field(description="The description, line by line.")
    parameters: list[DiffLine] = Field(description="The parameters as indented JSON.")
    tiles: list[DiffLine] = Field(description="The tiles as indented JSON.")


# Restoring takes the same body for dashboards as for saved queries.
DashboardRestore = SavedQueryRestore


class TileRun(BaseModel):
    params: dict[str, Any] | None = Field(
        None, description="Dashboard values by key; missing ones take their defaults."
    )
    version: int | None = Field(None, ge=1, description="Run the tile of an older version.")
    refresh: bool = Field(False, description="Run the query even when a cached result exists.")
    id: UUID | None = None


class TileResult(BaseModel):
    tile: str
    type: TileType
    query: str
    query_version: int
    params: dict[str, Any] = Field(description="The values the query ran with.")
    chart: dict[str, Any] | None = Field(None, description="Chart tiles: the query's chart.")
    cached: bool = Field(description="True when the result came from the cache.")
    computed_at: dt.datetime
    result: dict[str, Any] = Field(
        description="A query result (table, number) or chart data (chart), as /api/query and "
        "/api/queries/{slug}/chart answer."
    )


class ChoicesPublic(BaseModel):
    parameter: str
    choices: list[Any]


# -- share links ---------------------------------------------------------------------------
ShareKind = Literal["query", "dashboard"]


class ShareCreate(BaseModel):
    kind: ShareKind
    target: str = Field(pattern=SLUG_PATTERN, max_length=MAX_SLUG_CHARS)
    name: str = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Values the link fixes (visitors cannot change them); the others stay open.",
    )
    version: int | None = Field(None, ge=1, description="Pin a version; the latest when absent.")
    expires_in_days: int | None = Field(None, ge=1, le=3650)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("the name must not be blank")
        return value


class SharePublic(BaseModel):
    id: str
    kind: ShareKind
    target: str
    version: int | None
    name: str
    params: dict[str, Any]
    created_at: dt.datetime
    created_by: str | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    use_count: int
    active: bool


class ShareCreated(SharePublic):
    token: str = Field(description="The secret of the link; shown only now.")
    path: str = Field(description="The page of the link: /s/<token>.")


class ShareList(BaseModel):
    shares: list[SharePublic]


class SharedRun(BaseModel):
    params: dict[str, Any] | None = None
    id: UUID | None = None


class SharedPublic(BaseModel):
    """What a share link shows: the query or dashboard, without its SQL."""

    kind: ShareKind
    name: str
    expires_at: dt.datetime | None
    fixed: dict[str, Any] = Field(description="Values the link fixes.")
    query: dict[str, Any] | None = None
    dashboard: dict[str, Any] | None = None


class RecentRun(BaseModel):
    kind: Literal["query", "dashboard"]
    slug: str
    at: dt.datetime
    count: int = Field(0, description="Runs so far (a dashboard's: its tile runs).")


class RecentRuns(BaseModel):
    runs: list[RecentRun] = Field(
        description="The last run of each saved query and dashboard (on its page, through the "
        "API, a dashboard or a share link), newest first; kept across restarts."
    )
