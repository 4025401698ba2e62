"""The template filters every page uses to show values: cells, statistics, sizes, counts, times.

One rule per kind of value, shared by all pages (and by the browser's cells.js for cells); the
blueprint has no routes of its own, only these filters.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from markupsafe import Markup

from myapp.contract.types import type_class

from .. import cells

bp = Blueprint("formatting", __name__)


@bp.app_template_filter("cell")
def format_cell(value: Any, dtype: str | None = None) -> str:
    """A JSON value as text for a table cell (Jinja escapes it); one rule for every page."""
    return cells.format_value(value, dtype)


@bp.app_template_filter("cell_html")
def cell_html(value: Any, dtype: str | None = None, full_href: str | None = None) -> Markup:
    """A cell's content as HTML, cut and marked when too long (cells.render)."""
    return cells.render(value, dtype, full_href=full_href)


@bp.app_template_filter("cell_short")
def cell_short(value: Any, dtype: str | None = None) -> str:
    """A value as text for a label (a facet's value): cut and marked when too long."""
    text = cells.format_value(value, dtype)
    parts = cells.cut(text)
    return text if parts is None else f"{parts[0]}… {cells.marker(parts[1])}"


@bp.app_template_filter("cell_kind")
def cell_kind(dtype: str | None, value: Any = 0) -> str:
    """The cell's class (num, date, bool, text, null): alignment and where it may break."""
    return cells.kind(dtype, value)


@bp.app_template_filter("type_class")
def type_class_filter(dtype: str | None) -> str:
    """The column-type class (contract/types.py): integer, number, temporal, boolean, text,
    other."""
    return type_class(dtype)


@bp.app_template_filter("stat")
def format_stat(value: Any) -> str:
    return cells.format_value(value)


@bp.app_template_filter("filesize")
def format_size(value: Any) -> str:
    try:
        size = float(value)
    except (TypeError, ValueError):
        return "—"
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


@bp.app_template_filter("thousands")
def format_thousands(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return "—" if value is None else str(value)


@bp.app_template_filter("when")
def format_when(value: Any) -> str:
    text = str(value or "")
    return text[:16].replace("T", " ") if text else "—"
