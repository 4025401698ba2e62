"""Look before loading, in a real browser: a Windows-1252 report with a preamble and a workbook
with two sheets are previewed, read again with other options, and loaded."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import time
from types import SimpleNamespace

import httpx
import openpyxl
import pytest

from tests.deploy.files import NGINX_CONF, nginx_prefix, read_compose
from tests.e2e.conftest import assert_accessible
from tests.support.servers import free_port

REPORT = (
    "Kontoauszug für Konto 42 \u2013 Mai 2024\n"
    "Erstellt am 01.05.2024\n"
    "\n"
    "Datum;Betrag;Empfänger;PLZ\n"
    "2024-05-01;12,50;Café „Zum Löwen“;01234\n"
    "2024-05-02;7,00;Bäckerei \u2013 Müller;04567\n"
    "2024-05-03;99,90;€-Fonds “Süd”;10115\n"
).encode("cp1252")


@pytest.fixture
def name() -> str:
    return "e2e_preview_" + os.urandom(3).hex()


@pytest.fixture(scope="module")
def nginx_server(web_server, backend_server, tmp_path_factory):
    """The repository's nginx site on a loopback port in front of the frontend and its backend
    (the third entry point), as tests/deploy/test_nginx_metrics.py runs it."""
    binary = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed; .ci/run must install nginx-light")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    root = tmp_path_factory.mktemp("nginx")
    port = free_port()
    site = NGINX_CONF.read_text()
    site = site.replace("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;")
    site = site.replace("http://backend:12000", backend_server.url)
    site = site.replace("http://frontend:12001", web_server.url)
    site = site.replace("access_log /dev/stdout myapp;", "access_log off;")
    (root / "default.conf").write_text(site)
    (root / "certs").mkdir()
    conf = nginx_prefix(
        read_compose()["services"]["nginx"],
        root / "etc-nginx",
        {"./nginx/docker-compose.conf": root / "default.conf", "./nginx/certs": root / "certs"},
        root / "temp",
    )
    with (root / "nginx.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, "-p", f"{conf.parent}/", "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, (root / "nginx.log").read_text()
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.1)
        yield SimpleNamespace(url=url)
    finally:
        proc.terminate()
        proc.wait(10)


def overflow(page) -> int:
    return page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - window.innerWidth"
    )


def header_names(page) -> list[str]:
    return page.locator("[data-testid=preview-table] thead .column-name").all_inner_texts()


@pytest.mark.parametrize("entry", ["all", "frontend", "nginx"])
def test_a_windows_report_is_previewed_changed_and_loaded(page, entry, request, tmp_path, name):
    server = request.getfixturevalue(
        {"all": "all_server", "frontend": "web_server", "nginx": "nginx_server"}[entry]
    )
    path = tmp_path / "kontoauszug.csv"
    path.write_bytes(REPORT)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(server.url + "/datasets")
    page.set_input_files("#upload-file", str(path))
    page.get_by_test_id("preview-button").click()
    preview = page.get_by_test_id("upload-preview")
    preview.wait_for()
    assert page.get_by_test_id("detected-encoding").inner_text() == "cp1252"
    assert page.get_by_test_id("detected-delimiter").inner_text() == ";"
    assert page.get_by_test_id("detected-skip").inner_text() == "3"
    assert header_names(page) == ["Datum", "Betrag", "Empfänger", "PLZ"]
    table = page.get_by_test_id("preview-table")
    # The characters Windows-1252 has and Latin-1 has not came through.
    assert "Café „Zum Löwen“" in table.inner_text()
    assert "€-Fonds “Süd”" in table.inner_text()
    assert "Bäckerei \u2013 Müller" in table.inner_text()
    # Nothing is a dataset yet.
    assert httpx.get(f"{server.url}/datasets/kontoauszug").status_code == 404
    assert overflow(page) <= 0
    assert_accessible(page)

    # Another delimiter: the menu reads the file again at once.
    page.select_option("#preview-delimiter", ",")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=preview-table] thead th').length !== 4"
    )
    assert page.locator("#preview-delimiter").input_value() == ","
    page.select_option("#preview-delimiter", ";")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=preview-table] thead th').length === 4"
    )
    assert header_names(page) == ["Datum", "Betrag", "Empfänger", "PLZ"]

    # A column's type: the post codes as numbers lose their leading zeros, as asked.
    page.get_by_test_id("type-PLZ").focus()
    page.get_by_test_id("type-PLZ").select_option("BIGINT")
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"type-PLZ\"]').value === 'BIGINT'"
        " && !document.querySelector('#preview[aria-busy]')"
    )
    last_column = page.locator("[data-testid=preview-table] tbody td:nth-child(4)")
    assert last_column.all_inner_texts() == ["1,234", "4,567", "10,115"]
    # The keyboard stays on the menu that was used.
    assert page.evaluate("document.activeElement.dataset.testid") == "type-PLZ"
    assert_accessible(page)

    page.fill("#preview-name", name)
    page.get_by_test_id("preview-load-button").click()
    summary = page.get_by_test_id("upload-summary")
    summary.wait_for()
    assert page.get_by_test_id("rows-loaded").inner_text() == "3"
    page.get_by_test_id("dataset-list").get_by_role("link", name=name).wait_for()
    assert overflow(page) <= 0
    assert_accessible(page)

    page.get_by_test_id("uploaded-link").click()
    page.wait_for_url(re.compile(rf"/datasets/{name}$"))
    text = page.get_by_test_id("data-table").inner_text()
    assert "Café „Zum Löwen“" in text and "10115" in text.replace(",", "")
    if entry != "frontend":
        dataset = httpx.get(f"{server.url}/api/datasets/{name}").json()
        assert dataset["source"]["encoding"] == "cp1252"
        assert {c["name"]: c["type"] for c in dataset["columns"]}["PLZ"] == "BIGINT"


def _two_sheets() -> bytes:
    book = openpyxl.Workbook()
    first = book.active
    first.title = "Summary"
    first.append(["note"])
    first.append(["see the other sheet"])
    second = book.create_sheet("Sales 2024")
    second.append(["region", "units", "day"])
    second.append(["North", 12, "2024-01-05"])
    second.append(["South", 7, "2024-01-06"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_a_workbook_previews_its_second_sheet_and_loads_it(page, all_server, tmp_path, name):
    path = tmp_path / "sales.xlsx"
    path.write_bytes(_two_sheets())
    page.goto(all_server.url + "/datasets")
    page.set_input_files("#upload-file", str(path))
    page.get_by_test_id("preview-button").click()
    page.get_by_test_id("upload-preview").wait_for()
    assert page.get_by_test_id("detected-format").inner_text() == "xlsx"
    assert page.get_by_test_id("detected-sheet").inner_text() == "Summary"
    assert header_names(page) == ["note"]
    page.select_option("#preview-sheet", "Sales 2024")
    page.wait_for_function(
        "() => (document.querySelector('[data-testid=detected-sheet]') || {}).textContent"
        " === 'Sales 2024'"
    )
    assert header_names(page) == ["region", "units", "day"]
    assert "North" in page.get_by_test_id("preview-table").inner_text()
    assert_accessible(page)
    page.fill("#preview-name", name)
    page.get_by_test_id("preview-load-button").click()
    page.get_by_test_id("upload-summary").wait_for()
    rows = httpx.get(f"{all_server.url}/api/datasets/{name}/rows").json()["rows"]
    assert [r[:2] for r in rows] == [["North", 12], ["South", 7]]
    assert httpx.get(f"{all_server.url}/api/datasets/{name}").json()["source"]["sheet"] == (
        "Sales 2024"
    )


@pytest.mark.parametrize("script", [True, False], ids=["with_js", "without_js"])
def test_the_name_and_mode_typed_in_the_upload_form_reach_the_preview(
    browser, all_server, tmp_path, name, script
):
    """What was typed above the Preview button is what the preview's load form starts with,
    whether the page's script sends the file or the plain form does."""
    api = f"{all_server.url}/api/datasets/{name}"
    assert httpx.put(api, content=b"region,units\nWest,1\n").status_code == 201
    path = tmp_path / "sales.xlsx"
    path.write_bytes(_two_sheets())
    context = browser.new_context(java_script_enabled=script)
    page = context.new_page()
    try:
        page.goto(all_server.url + "/datasets")
        page.set_input_files("#upload-file", str(path))
        page.fill("#upload-name", name)
        page.select_option("#upload-mode", "replace")
        page.locator("#upload-form details > summary").click()
        page.fill("#upload-sheet", "2")
        page.get_by_test_id("preview-button").click()
        page.get_by_test_id("upload-preview").wait_for()
        assert page.get_by_test_id("detected-sheet").inner_text() == "Sales 2024"
        assert page.locator("#preview-name").input_value() == name
        assert page.locator("#preview-mode").input_value() == "replace"
        if script:
            # Reading it again with another option keeps them.
            page.select_option("#preview-sheet", "Summary")
            page.wait_for_function(
                "() => (document.querySelector('[data-testid=detected-sheet]') || {})"
                ".textContent === 'Summary'"
            )
            page.select_option("#preview-sheet", "Sales 2024")
            page.wait_for_function(
                "() => (document.querySelector('[data-testid=detected-sheet]') || {})"
                ".textContent === 'Sales 2024'"
            )
            assert page.locator("#preview-name").input_value() == name
            assert page.locator("#preview-mode").input_value() == "replace"
        page.get_by_test_id("preview-load-button").click()
        page.get_by_test_id("upload-summary").wait_for()
    finally:
        context.close()
    rows = httpx.get(api + "/rows").json()["rows"]
    assert [r[:2] for r in rows] == [["North", 12], ["South", 7]]
