"""The datasets pages in a real browser: upload → table → filter → facet → profile."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import assert_accessible


def _csv(rows: int = 60) -> bytes:
    lines = ["id,city,amount,note", '999,Oslo,1,"<script>window.pwned = 1</script>"']
    for i in range(rows):
        city = ["Oslo", "Bergen", "Tromsø"][i % 3]
        lines.append(f"{i},{city},{i * 2.5},plain {i}")
    lines.append("1,2")  # ragged: rejected and reported
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def name() -> str:
    return "e2e_" + os.urandom(3).hex()


@pytest.mark.parametrize("entry", ["all", "frontend"])
def test_upload_browse_filter_facet_profile(page, entry, all_server, web_server, tmp_path, name):
    server = all_server if entry == "all" else web_server
    path = tmp_path / f"{name}.csv"
    path.write_bytes(_csv())

    page.goto(server.url + "/datasets")
    assert_accessible(page)
    page.set_input_files("#upload-file", str(path))
    assert f"{name}.csv" in page.locator("#dropzone").inner_text()
    page.get_by_role("button", name="Upload").click()
    summary = page.get_by_test_id("upload-summary")
    summary.wait_for()
    assert page.get_by_test_id("rows-loaded").inner_text() == "61"
    assert page.get_by_test_id("rows-rejected").inner_text() == "1"
    assert "too few columns" in page.get_by_test_id("rejects").inner_text()
    assert page.locator("#upload-bar").evaluate("bar => bar.value") == 100
    # The list below refreshed itself with the new dataset.
    page.get_by_test_id("dataset-list").get_by_role("link", name=name).wait_for()
    assert_accessible(page)

    page.get_by_test_id("uploaded-link").click()
    page.wait_for_url(re.compile(rf"/datasets/{name}$"))
    assert page.get_by_test_id("dataset-name").inner_text() == name
    assert "of 61" in page.get_by_test_id("row-count").inner_text()
    # A cell holding markup shows it as text and runs nothing.
    table = page.get_by_test_id("data-table")
    assert "<script>window.pwned = 1</script>" in table.inner_text()
    assert page.evaluate("window.pwned") is None
    assert_accessible(page)

    # Sort by a header: descending after two clicks, with aria-sort telling it.
    page.get_by_role("link", name="amount", exact=True).click()
    page.get_by_role("link", name=re.compile(r"^amount")).click()
    header = page.locator("th[aria-sort]")
    assert header.get_attribute("aria-sort") == "descending"
    assert page.locator("tbody tr").first.locator("td").first.inner_text() == "59"
    assert "sort=-amount" in page.url

    # Filter builder: city equals Oslo.
    page.select_option("#add-column", "city")
    page.select_option("#add-op", "eq")
    page.fill("#add-value", "Oslo")
    page.get_by_role("button", name="Add", exact=True).first.click()
    page.wait_for_url(re.compile(r"city__eq=Oslo"))
    assert "of 21 matching" in page.get_by_test_id("row-count").inner_text()
    assert "sort=-amount" in page.url
    cities = page.locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert set(cities) == {"Oslo"}

    # Facets beside the table: remove the filter, then narrow by a facet value.
    page.get_by_role("link", name=re.compile("Remove filter city")).click()
    page.wait_for_url(re.compile(rf"/datasets/{name}\?sort=-amount$"))
    facet = page.get_by_test_id("facet-city")
    assert "Tromsø" in facet.inner_text()
    facet.get_by_role("link", name="Tromsø").click()
    page.wait_for_url(re.compile(r"city__eq=Troms"))
    assert "of 20 matching" in page.get_by_test_id("row-count").inner_text()
    assert set(page.locator("tbody tr td:nth-child(2)").all_inner_texts()) == {"Tromsø"}

    # The whole state is in the address: opening it afresh gives the same view.
    url = page.url
    page.goto(url)
    assert "of 20 matching" in page.get_by_test_id("row-count").inner_text()

    # Downloads keep the filters.
    with page.expect_download() as download_info:
        page.locator("details.dropdown summary").click()
        page.get_by_test_id("export-csv").click()
    download = download_info.value
    assert download.suggested_filename == f"{name}.csv"
    exported = Path(download.path()).read_text(encoding="utf-8").strip().splitlines()
    assert len(exported) == 21 and all(",Tromsø," in line for line in exported[1:])

    page.get_by_test_id("profile-link").click()
    page.wait_for_url(re.compile(rf"/datasets/{name}/profile$"))
    amount = page.get_by_test_id("profile-amount")
    assert "Mean" in amount.inner_text()
    # Chart.js drew into the canvas (a blank canvas has no pixels set).
    drawn = page.locator("canvas.histogram").first.evaluate(
        "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(v => v !== 0)"
    )
    assert drawn
    assert "Oslo" in page.get_by_test_id("profile-city").inner_text()
    assert_accessible(page)


def test_upload_errors_show_the_reason_and_keyboard_works(page, all_server, tmp_path, name):
    path = tmp_path / "junk.csv"
    path.write_bytes(bytes(range(256)) * 20)
    page.goto(all_server.url + "/datasets")
    page.set_input_files("#upload-file", str(path))
    page.fill("#upload-name", name)
    # Submit from the keyboard.
    page.focus("#upload-name")
    page.keyboard.press("Enter")
    failed = page.get_by_test_id("upload-failed")
    failed.wait_for()
    assert "binary" in failed.inner_text()
    assert "failed" in page.get_by_test_id("upload-status").inner_text()
    assert httpx.get(f"{all_server.url}/api/datasets/{name}").status_code == 404
    assert_accessible(page)


def test_rename_and_delete_pages(page, all_server, name):
    assert httpx.put(f"{all_server.url}/api/datasets/{name}", content=b"a\n1\n").status_code == 201
    page.goto(f"{all_server.url}/datasets/{name}")
    page.get_by_role("link", name="Rename").click()
    assert_accessible(page)
    page.fill("#new-name", f"{name} Renamed")
    page.get_by_role("button", name="Rename").click()
    page.wait_for_url(re.compile(rf"/datasets/{name}_renamed$"))
    page.get_by_role("link", name="Delete").click()
    assert_accessible(page)
    page.fill("#confirm-name", "wrong")
    page.get_by_role("button", name="Delete the dataset").click()
    assert "exactly" in page.get_by_test_id("delete-error").inner_text()
    page.fill("#confirm-name", f"{name}_renamed")
    page.get_by_role("button", name="Delete the dataset").click()
    page.wait_for_url(re.compile(r"/datasets$"))
    assert f"Deleted the dataset {name}_renamed" in page.content()
    assert httpx.get(f"{all_server.url}/api/datasets/{name}_renamed").status_code == 404


def _big_csv(rows: int) -> bytes:
    cities = ["Oslo", "Bergen", "Tromsø"]
    lines = ["id,city,k"] + [f"{i},{cities[i % 3]},{i % 7}" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def test_facets_of_a_big_table_arrive_after_the_page(page, browser, all_server, name):
    """A big table's page shows a new filter's rows without waiting for its facets; the
    script fetches them into the page and their values still filter. Without scripts the
    page is whole too, and a link opens the counts."""
    from myapp.frontend.views.datasets import FACETS_IN_PAGE_MAX_ROWS

    rows = FACETS_IN_PAGE_MAX_ROWS + 2
    response = httpx.put(
        f"{all_server.url}/api/datasets/{name}",
        params={"format": "csv"},
        content=_big_csv(rows),
        timeout=60,
    )
    assert response.status_code == 201, response.text
    in_k3 = {c: 0 for c in ("Oslo", "Bergen", "Tromsø")}
    for i in range(rows):
        if i % 7 == 3:
            in_k3[["Oslo", "Bergen", "Tromsø"][i % 3]] += 1

    page.goto(f"{all_server.url}/datasets/{name}?k__eq=3")
    facet = page.get_by_test_id("facet-city")
    oslo = facet.get_by_role("link", name="Oslo")
    oslo.wait_for()
    assert page.get_by_test_id("facet-pending").count() == 0
    assert page.locator("#facet-lists").get_attribute("aria-busy") is None
    assert f"{in_k3['Oslo']:,}" in facet.inner_text()
    assert_accessible(page)
    oslo.click()
    page.wait_for_url(re.compile(r"k__eq=3.*city__eq=Oslo"))
    assert f"of {in_k3['Oslo']:,} matching" in page.get_by_test_id("row-count").inner_text()
    assert set(page.locator("tbody tr td:nth-child(2)").all_inner_texts()) == {"Oslo"}
    # The counts' own page (what the no-script link opens) passes the same checks.
    page.goto(f"{all_server.url}/datasets/{name}/facets?k__eq=3")
    assert "Tromsø" in page.get_by_test_id("facet-city").inner_text()
    assert_accessible(page)

    # Without JavaScript: the rows are there, and the note links to the counts.
    context = browser.new_context(java_script_enabled=False)
    try:
        plain = context.new_page()
        plain.goto(f"{all_server.url}/datasets/{name}?k__eq=5&sort=-id")
        assert "matching" in plain.get_by_test_id("row-count").inner_text()
        assert plain.locator("tbody tr").count() == 50
        plain.get_by_test_id("facet-city").get_by_role("link", name="Show the counts").click()
        plain.wait_for_url(re.compile(rf"/datasets/{name}/facets\?k__eq=5&sort=-id$"))
        plain.get_by_test_id("facet-city").get_by_role("link", name="Bergen").click()
        plain.wait_for_url(re.compile(r"k__eq=5&sort=-id.*city__eq=Bergen"))
        cities = plain.locator("tbody tr td:nth-child(2)").all_inner_texts()
        assert set(cities) == {"Bergen"}
        ids = [
            int(t.replace(",", ""))
            for t in plain.locator("tbody tr td:nth-child(1)").all_inner_texts()
        ]
        assert ids == sorted(ids, reverse=True) and all(i % 7 == 5 for i in ids)
    finally:
        context.close()
