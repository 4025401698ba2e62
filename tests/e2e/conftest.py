"""Browser tests: Debian's chromium driven by Playwright, against real servers.

On CI (CI=true) a missing chromium is a failure, not a skip: .ci/run installs it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
AXE_JS = Path(__file__).parents[1] / "vendor" / "axe-core-4.14.1" / "axe.min.js"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed; .ci/run must install it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh browser context per test; console errors and CSP violations fail the test."""
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()
    unexpected = [e for e in errors if "Failed to load resource" not in e]
    assert not unexpected, f"browser console errors: {unexpected}"


def axe_violations(page, *, disable: tuple[str, ...] = ()) -> list[dict]:
    """Run axe-core in the page; return the violations (each with id, help and nodes)."""
    # Evaluated through the DevTools protocol, not added as an inline <script>: the pages'
    # Content-Security-Policy (script-src 'self') rightly blocks inline scripts.
    page.evaluate(AXE_JS.read_text() + "\n;0")
    options = {"rules": {rule: {"enabled": False} for rule in disable}}
    result = page.evaluate(
        "async (options) => JSON.stringify((await axe.run(document, options)).violations)",
        options,
    )
    return json.loads(result)


def assert_accessible(page, **kwargs) -> None:
    violations = axe_violations(page, **kwargs)
    summary = [
        f"{v['id']}: {v['help']} ({len(v['nodes'])} nodes, e.g. {v['nodes'][0]['target']})"
        for v in violations
    ]
    assert not violations, "axe-core found: " + "; ".join(summary)
