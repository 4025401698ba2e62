"""Pages: queries."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("queries", __name__, url_prefix="/queries")
