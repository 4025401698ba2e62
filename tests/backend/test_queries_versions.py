"""Saved queries: a title that exists is a 409 when the client asks, two versions side by side,
and restoring an old version as a new one (audited)."""

from __future__ import annotations

import os

from tests.backend.test_queries import api, create, server  # noqa: F401 (fixture)
from tests.backend.test_query_support import error_of


def _title(stem: str) -> str:
    return f"{stem} {os.urandom(2).hex()}"


def test_an_existing_title_is_a_409_when_asked_and_a_new_slug_otherwise(server):  # noqa: F811
    title = _title("Monthly totals")
    first = create(server, title=title, sql="SELECT 1 AS one")
    response = api(
        server,
        "POST",
        "/queries",
        json={"title": title.upper(), "sql": "SELECT 2", "if_title_exists": "error"},
    )
    error = error_of(response, 409)
    assert error["code"] == "title_exists"
    assert error["detail"] == {"slug": first["slug"], "title": title}
    assert "open it, or save this one under another title" in error["message"]
    # Clients that do not ask keep the old behaviour: another query under a free slug.
    again = create(server, title=title, sql="SELECT 2")
    assert again["slug"] == first["slug"] + "-2"
    other = api(
        server,
        "POST",
        "/queries",
        json={"title": title + " v2", "sql": "SELECT 2", "if_title_exists": "error"},
    )
    assert other.status_code == 201

    # An edit that takes another query's title is asked about too, when the client asks.
    renamed = {"title": title.lower(), "sql": "SELECT 3", "if_title_exists": "error"}
    refused = api(server, "PUT", f"/queries/{other.json()['slug']}", json=renamed)
    assert error_of(refused, 409)["detail"]["slug"] == first["slug"]
    assert api(server, "GET", f"/queries/{other.json()['slug']}").json()["version"] == 1
    # Keeping its own title (in other case, or not) is no conflict; nor is not asking.
    own = {"title": title + " V2", "sql": "SELECT 3", "if_title_exists": "error"}
    assert api(server, "PUT", f"/queries/{other.json()['slug']}", json=own).status_code == 200
    kept = api(
        server,
        "PUT",
        f"/queries/{other.json()['slug']}",
        json={**renamed, "if_title_exists": "keep"},
    )
    assert kept.status_code == 200 and kept.json()["title"] == title.lower()


def test_diff_two_versions_side_by_side(server):  # noqa: F811
    saved = create(server, title=_title("Diffed"), sql="SELECT 1 AS a,\n  2 AS b\nFROM range(3)")
    slug = saved["slug"]
    edit = {"title": saved["title"], "sql": "SELECT 1 AS a,\n  3 AS c\nFROM range(3)\nLIMIT 2"}
    assert api(server, "PUT", f"/queries/{slug}", json=edit).json()["version"] == 2

    body = api(server, "GET", f"/queries/{slug}/diff", params={"from": 1, "to": 2}).json()
    assert body["from"]["version"] == 1 and body["to"]["version"] == 2
    assert body["changed"] == ["sql"]
    ops = [(line["op"], line["from"], line["to"]) for line in body["sql"]]
    assert ops == [
        ("equal", "SELECT 1 AS a,", "SELECT 1 AS a,"),
        ("replace", "  2 AS b", "  3 AS c"),
        ("equal", "FROM range(3)", "FROM range(3)"),
        ("insert", None, "LIMIT 2"),
    ]
    # Without numbers: the latest version against the one before.
    default = api(server, "GET", f"/queries/{slug}/diff").json()
    assert (default["from"]["version"], default["to"]["version"]) == (1, 2)
    missing = api(server, "GET", f"/queries/{slug}/diff", params={"from": 9})
    assert error_of(missing, 404)["code"] == "version_not_found"


def test_restore_saves_a_new_version_and_is_audited(server):  # noqa: F811
    saved = create(server, title=_title("Restored"), sql="SELECT 'first' AS v")
    slug = saved["slug"]
    api(server, "PUT", f"/queries/{slug}", json={"title": saved["title"], "sql": "SELECT 'x'"})

    restored = api(server, "POST", f"/queries/{slug}/versions/1/restore", json={})
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert body["version"] == body["latest_version"] == 3
    assert body["sql"] == "SELECT 'first' AS v"
    versions = api(server, "GET", f"/queries/{slug}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [3, 2, 1]
    # Restoring what is already the latest adds nothing.
    same = api(server, "POST", f"/queries/{slug}/versions/3/restore").json()
    assert same["version"] == 3
    stale = api(server, "POST", f"/queries/{slug}/versions/2/restore", json={"base_version": 2})
    assert error_of(stale, 409)["code"] == "version_conflict"

    events = api(server, "GET", "/api/audit".removeprefix("/api"), params={"target": slug})
    actions = [e["action"] for e in events.json()["events"]]
    assert "query.restored" in actions
    event = next(e for e in events.json()["events"] if e["action"] == "query.restored")
    assert event["detail"]["restored_from"] == 1 and event["detail"]["version"] == 3
