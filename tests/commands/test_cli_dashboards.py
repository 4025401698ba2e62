"""`myapp dashboards list|show|export` against the shared backend, with names of their own."""

from __future__ import annotations

import os

import httpx
from click.testing import CliRunner

from myapp.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), env={}, catch_exceptions=False)


def make_board(url: str) -> str:
    suffix = os.urandom(3).hex()
    name = f"cli_dash_{suffix}"
    with httpx.Client(base_url=url + "/api", timeout=30) as c:
        assert (
            c.put(f"/datasets/{name}", content="city,amount\nOslo,10\nLima,5\n").status_code == 201
        )
        query = c.post(
            "/queries",
            json={
                "title": f"cli dash {suffix}",
                "sql": f"SELECT city, amount FROM {name} WHERE city = $city",
                "parameters": [{"name": "city", "type": "text", "default": "Oslo"}],
            },
        ).json()["slug"]
        board = c.post(
            "/dashboards",
            json={
                "title": f"CLI board {suffix}",
                "parameters": [{"name": "town", "type": "text", "default": "Oslo"}],
                "tiles": [
                    {"type": "table", "query": query, "params": {"city": "town"}},
                    {"type": "text", "text": "# Notes\n\nplain"},
                ],
            },
        )
        assert board.status_code == 201, board.text
    return board.json()["slug"]


def test_list_show_and_export(backend_server, tmp_path):
    url = ["--url", backend_server.url]
    slug = make_board(backend_server.url)
    listed = run("dashboards", "list", *url)
    assert listed.exit_code == 0 and slug in listed.output
    shown = run("dashboards", "show", slug, *url)
    assert shown.exit_code == 0, shown.output
    assert "town" in shown.output and "city=town" in shown.output and "t2" in shown.output
    out = tmp_path / "board"
    exported = run("dashboards", "export", slug, "-o", str(out), "--param", "town=Lima", *url)
    assert exported.exit_code == 0, exported.output
    assert (out / "t1.csv").read_text().splitlines() == ["city,amount", "Lima,5"]
    assert (out / "t2.md").read_text() == "# Notes\n\nplain"
    missing = run("dashboards", "show", "no-such-board", *url)
    assert missing.exit_code == 1 and "There is no dashboard 'no-such-board'" in missing.output
