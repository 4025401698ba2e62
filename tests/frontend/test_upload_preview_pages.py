"""Look before loading without JavaScript: plain forms, whole pages, the frontend role talking
to a real backend over HTTP."""

from __future__ import annotations

import html
import os
import re

import httpx
import pytest

REPORT = (
    "Bericht Mai \u2013 2024\n\nTag;Betrag;Wer\n2024-05-01;12,50;Café „Löwe“\n2024-05-02;7,00;Zoë\n"
).encode("cp1252")


@pytest.fixture
def web(web_server):
    with httpx.Client(base_url=web_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def name() -> str:
    return "web_preview_" + os.urandom(3).hex()


def _staged(web) -> str:
    """Stage the report as the plain upload form would (multipart), following the redirect."""
    response = web.post(
        "/datasets/_preview",
        files={"file": ("bericht.csv", REPORT, "text/csv")},
        data={"name": "", "mode": "create", "encoding": ""},
    )
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert re.fullmatch(r"/datasets/_uploads/[0-9a-f]{32}", location)
    return location


def test_plain_forms_preview_change_and_load(web, api, name):
    location = _staged(web)
    page = web.get(location)
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert 'data-testid="detected-encoding">cp1252<' in text
    assert 'data-testid="detected-skip">2<' in text
    assert "Café „Löwe“" in text
    assert 'value="bericht"' in text  # the dataset name offered
    # Change a column's type: the menus are ordinary fields of one form.
    form = {"delimiter": ";", "header": "true", "encoding": "cp1252", "skip": "2"}
    changed = web.post(location, data={**form, "type:Wer": "VARCHAR", "type:Betrag": "VARCHAR"})
    assert changed.status_code == 303
    again = html.unescape(web.get(location).text)
    assert "12,50" in again  # the amounts as written, now text
    # Only what was changed is pinned: the delimiter and encoding stay detected.
    upload_id = location.rsplit("/", 1)[1]
    staged = api.get(f"/api/uploads/{upload_id}").json()["upload"]
    assert staged["types"] == {"Betrag": "VARCHAR"}
    loaded = web.post(f"{location}/load", data={"name": name, "mode": "create"})
    assert loaded.status_code == 201
    assert "upload-summary" in loaded.text
    dataset = api.get(f"/api/datasets/{name}").json()
    assert dataset["row_count"] == 2 and dataset["source"]["encoding"] == "cp1252"
    assert api.get(f"/api/uploads/{upload_id}").status_code == 404
    # The dataset's page says how the file was read.
    shown = html.unescape(web.get(f"/datasets/{name}").text)
    assert '<span data-testid="dataset-source">csv, cp1252</span>' in shown


def test_errors_stay_on_the_preview(web, api, name):
    assert api.put(f"/api/datasets/{name}", content=b"a\n1\n").status_code == 201
    location = _staged(web)
    bad = web.post(location, data={"skip": "many"})
    assert bad.status_code == 400 and "whole number" in bad.text
    exists = web.post(f"{location}/load", data={"name": name, "mode": "create"})
    assert exists.status_code == 409
    assert 'data-testid="preview-error"' in exists.text and "exists" in exists.text
    # The page's script gets fragments, and an expired upload is a message, not a page.
    partial = {"X-Myapp-Partial": "1"}
    fragment = web.post(location, data={"header": "false"}, headers=partial)
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert fragment.headers["X-Myapp-Fragment"] == "upload-preview"
    discarded = web.post(f"{location}/discard")
    assert discarded.status_code == 303 and discarded.headers["location"] == "/datasets"
    gone = web.post(location, data={"header": "true"}, headers=partial)
    assert gone.status_code == 404 and "<html" not in gone.text
    assert "No such staged upload" in html.unescape(gone.text)
    assert web.get(location).status_code == 404


def test_an_unreadable_file_comes_back_to_the_upload_form(web):
    response = web.post(
        "/datasets/_preview", files={"file": ("x.csv", b"%PDF-1.4\n\x00\x01\x02" * 100)}
    )
    assert response.status_code == 422
    assert 'data-testid="upload-error"' in response.text and 'id="upload-form"' in response.text


def test_a_very_wide_file_shows_its_first_columns(web):
    header = ",".join(f"c{i}" for i in range(300))
    values = ",".join(str(i) for i in range(300))
    response = web.post(
        "/datasets/_preview",
        params={"filename": "wide.csv"},
        content=f"{header}\n{values}\n".encode(),
        headers={"Content-Type": "application/octet-stream", "X-Myapp-Partial": "1"},
    )
    assert response.status_code == 201, response.text
    assert response.text.count('class="column-type"') == 200
    assert "Showing the first 200 of 300 columns" in response.text
    upload_id = re.search(r'data-upload-id="([0-9a-f]+)"', response.text)[1]
    assert web.post(f"/datasets/_uploads/{upload_id}/discard").status_code == 303


def test_the_dataset_page_names_the_sheet_a_workbook_was_loaded_from(web, api, name):
    import io

    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["n"])
    sales = book.create_sheet("Sales 2024")
    sales.append(["region", "units"])
    sales.append(["North", 12])
    out = io.BytesIO()
    book.save(out)
    response = api.put(
        f"/api/datasets/{name}", content=out.getvalue(), params={"filename": "b.xlsx", "sheet": 2}
    )
    assert response.status_code == 201, response.text
    shown = html.unescape(web.get(f"/datasets/{name}").text)
    assert '<span data-testid="dataset-source">xlsx, sheet “Sales 2024”</span>' in shown
