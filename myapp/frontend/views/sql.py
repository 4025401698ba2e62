"""Pages: sql."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("sql", __name__, url_prefix="/sql")
