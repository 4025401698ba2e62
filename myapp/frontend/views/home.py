"""The home page: what the workspace holds and whether the backend is well."""

from __future__ import annotations

from flask import Blueprint, render_template

from . import api

bp = Blueprint("home", __name__)


@bp.get("/")
def index():
    health = api().health()
    return render_template("home/index.html", health=health)
