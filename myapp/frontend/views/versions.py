"""Comparing and restoring versions, the same for saved queries and dashboards: the backend
pairs the lines (GET …/diff), the pages show them with the macros of versions/_diff.html."""

from __future__ import annotations

from collections.abc import Callable

from flask import flash, redirect, render_template, request, url_for

from ..api_client import BackendError
from . import api


def diff_page(template: str, path: Callable[..., str], slug: str):
    """Two versions side by side (by default the latest against the one before)."""
    params = {
        key: value
        for key in ("from", "to")
        if (value := request.args.get(key, type=int)) is not None and value >= 1
    }
    body = api().get(path(slug, "diff"), params=params)
    versions = api().get(path(slug, "versions"))["versions"]
    return render_template(
        template, diff=body, old=body["from"], new=body["to"], versions=versions, slug=slug
    )


def restore(path: Callable[..., str], page: str, slug: str):
    """Save an old version as the newest (post/redirect/get: a reload restores nothing again)."""
    version = request.form.get("version", type=int)
    base = request.form.get("base_version", type=int)
    if not version:
        flash("Choose the version to restore.", "error")
        return redirect(url_for(page, slug=slug), 303)
    try:
        saved = api().post(
            path(slug, "versions", str(version), "restore"),
            json={"base_version": base} if base else {},
        )
    except BackendError as exc:
        if exc.status >= 500 or exc.status in (401, 403):
            raise
        flash(exc.message, "error")
        return redirect(url_for(page, slug=slug, _version=version), 303)
    if saved["version"] == base:
        flash(f"Version {version} is already what the latest version holds.", "info")
    else:
        flash(f"Restored version {version} as version {saved['version']}.", "success")
    return redirect(url_for(page, slug=slug), 303)
