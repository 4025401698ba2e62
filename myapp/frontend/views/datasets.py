"""Pages: datasets."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("datasets", __name__, url_prefix="/datasets")
