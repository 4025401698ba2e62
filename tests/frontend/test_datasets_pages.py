"""The datasets pages of the frontend role, talking to a real backend over HTTP."""

from __future__ import annotations

import html
import os
import re

import httpx
import pytest


@pytest.fixture
def web(web_server):
    with httpx.Client(base_url=web_server.url, timeout=30) as client:
        yield client


@pytest.fixture
def name() -> str:
    return "web_" + os.urandom(3).hex()


def _seed(api, name: str, body: bytes, **params) -> dict:
    response = api.put(f"/api/datasets/{name}", content=body, params=params)
    assert response.status_code == 201, response.text
    return response.json()


def test_list_page_shows_datasets_with_size_and_upload_form(web, api, name):
    _seed(api, name, b"a,b\n1,x\n2,y\n", filename="two.csv")
    page = web.get("/datasets")
    assert page.status_code == 200
    assert f'href="/datasets/{name}"' in page.text
    assert 'id="upload-form"' in page.text
    assert 'data-max-bytes="2147483648"' in page.text
    assert web.get("/datasets/").status_code == 200
    fragment = web.get("/datasets/_list")
    assert f">{name}</a>" in fragment.text and "<html" not in fragment.text


def test_raw_upload_answers_a_summary_fragment(web, api, name):
    body = b"id,city\n1,Oslo\n2,Bergen\n3\n"
    response = web.put(
        "/datasets/_upload",
        params={"filename": f"{name}.csv.gz", "name": ""},
        content=body,
    )
    assert response.status_code == 201, response.text
    assert 'data-testid="upload-summary"' in response.text
    assert re.search(r'data-testid="rows-loaded">2<', response.text)
    assert re.search(r'data-testid="rows-rejected">1<', response.text)
    assert "too few columns" in response.text
    # The name came from the file name without its extensions.
    assert api.get(f"/api/datasets/{name}").json()["row_count"] == 2


def test_raw_upload_errors_and_options(web, api, name):
    junk = web.put(
        "/datasets/_upload", params={"filename": "x.csv", "name": name}, content=b"\x00\x01" * 900
    )
    assert junk.status_code == 422
    assert "Nothing was loaded" in junk.text and "binary" in junk.text
    assert api.get(f"/api/datasets/{name}").status_code == 404

    ok = web.put(
        "/datasets/_upload",
        params={"filename": "semi.txt", "name": name, "delimiter": ";", "format": "csv"},
        content=b"a;b\n1;2\n",
    )
    assert ok.status_code == 201, ok.text
    exists = web.put("/datasets/_upload", params={"name": name}, content=b"a\n1\n")
    assert exists.status_code == 409
    assert "already exists" in exists.text
    assert web.put("/datasets/_upload", content=b"a\n1\n").status_code == 400


def test_cross_site_upload_is_refused(web, name):
    response = web.put(
        "/datasets/_upload",
        params={"name": name},
        content=b"a\n1\n",
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403


def test_multipart_form_without_javascript(web, api, name):
    response = web.post(
        "/datasets",
        files={"file": ("people.csv", b"n\n1\n2\n", "text/csv")},
        data={"name": name, "mode": "create", "format": "", "delimiter": ""},
    )
    # Post/redirect/get: the report is a page of its own, shown once; a reload sends nothing.
    assert response.status_code == 303, response.text
    report = web.get(response.headers["Location"])
    assert report.status_code == 200
    assert "Upload finished" in report.text
    assert f'href="/datasets/{name}"' in report.text
    assert re.search(r'data-testid="rows-loaded">2<', report.text)
    assert "1 columns from people.csv" in report.text
    reload = web.get(response.headers["Location"])
    assert reload.status_code == 302 and reload.headers["Location"].endswith("/datasets")
    assert api.get(f"/api/datasets/{name}").json()["row_count"] == 2
    again = web.post(
        "/datasets", files={"file": ("people.csv", b"n\n1\n", "text/csv")}, data={"name": name}
    )
    assert again.status_code == 409
    assert 'data-testid="upload-error"' in again.text and "already exists" in again.text


def test_table_page_escapes_cells_and_keeps_state_in_links(web, api, name):
    _seed(api, name, b'id,note\n1,"<script>alert(1)</script>"\n2,"a & b"\n3,plain\n')
    page = web.get(f"/datasets/{name}", params={"sort": "-id", "limit": "2"})
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in page.text
    assert html.escape("<script>alert(1)</script>") in page.text
    assert "a &amp; b" in page.text
    assert 'aria-sort="descending"' in page.text
    # The next page link carries the sort and page size with a cursor.
    next_link = re.search(r'href="([^"]+)" rel="next"', page.text)
    assert next_link
    link = html.unescape(next_link.group(1))
    assert "sort=-id" in link and "limit=2" in link and "cursor=" in link
    second = web.get(link)
    assert second.status_code == 200
    assert "Rows 3\u20133 of 3" in " ".join(second.text.split())
    assert 'rel="prev"' in second.text

    # The filter builder turns its fields into a column__op=value parameter.
    built = web.get(
        f"/datasets/{name}",
        params={"sort": "-id", "add_column": "note", "add_op": "contains", "add_value": "PLAIN"},
    )
    assert built.status_code == 302
    assert built.headers["location"] == f"/datasets/{name}?sort=-id&note__contains=PLAIN"
    filtered = web.get(built.headers["location"])
    assert "Rows 1\u20131 of 1 matching" in " ".join(filtered.text.split())
    # Downloads keep filters and sort.
    assert f"/datasets/{name}/export?format=csv&amp;sort=-id&amp;note__contains=PLAIN" in (
        filtered.text
    )


def test_table_page_errors_are_friendly(web, api, name):
    _seed(api, name, b"a\n1\n")
    missing = web.get("/datasets/no_such_dataset_anywhere")
    assert missing.status_code == 404
    assert "no dataset named" in missing.text
    bad = web.get(f"/datasets/{name}", params={"nope__eq": "1"})
    assert bad.status_code == 400
    assert "has no column" in bad.text
    assert "Traceback" not in bad.text
    # A name written differently leads to the dataset's own address.
    moved = web.get(f"/datasets/{name.upper()}", params={"sort": "a"})
    assert moved.status_code == 302
    assert moved.headers["location"] == f"/datasets/{name}?sort=a"
    # So does the address of its facets (paging left out: it does not change them).
    moved = web.get(f"/datasets/{name.upper()}/facets", params={"a__gt": "0", "offset": "50"})
    assert moved.status_code == 302
    assert moved.headers["location"] == f"/datasets/{name}/facets?a__gt=0"


def test_export_streams_through_the_frontend(web, api, name):
    _seed(api, name, b"id,grp\n1,a\n2,b\n3,a\n")
    response = web.get(f"/datasets/{name}/export", params={"format": "tsv", "grp__eq": "a"})
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith(f'attachment; filename="{name}.tsv"')
    assert response.text.splitlines() == ["id\tgrp", "1\ta", "3\ta"]
    assert web.get(f"/datasets/{name}/export", params={"format": "xls"}).status_code == 400


def test_profile_page(web, api, name):
    _seed(api, name, b"n,word\n1,x\n2,y\n3,y\n10,\n")
    page = web.get(f"/datasets/{name}/profile")
    assert page.status_code == 200
    assert 'data-testid="profile-n"' in page.text
    assert 'id="histograms"' in page.text and '"counts"' in page.text
    assert "chart.umd.min.js" in page.text
    assert re.search(r"<td>y</td><td class=\"num\">2</td>", page.text)


def test_rename_and_delete_forms(web, api, name):
    _seed(api, name, b"a\n1\n")
    form = web.get(f"/datasets/{name}/rename")
    assert form.status_code == 200 and 'name="new_name"' in form.text
    bad = web.post(f"/datasets/{name}/rename", data={"new_name": "!!!"})
    assert bad.status_code == 400 and "cannot be made into a dataset name" in bad.text
    done = web.post(f"/datasets/{name}/rename", data={"new_name": f"{name} two"})
    assert done.status_code == 302
    assert done.headers["location"] == f"/datasets/{name}_two"

    refused = web.post(f"/datasets/{name}_two/delete", data={"confirm": "nope"})
    assert refused.status_code == 400
    assert api.get(f"/api/datasets/{name}_two").status_code == 200
    deleted = web.post(f"/datasets/{name}_two/delete", data={"confirm": f"{name}_two"})
    assert deleted.status_code == 302 and deleted.headers["location"] == "/datasets"
    assert api.get(f"/api/datasets/{name}_two").status_code == 404


def test_uploads_need_an_account_when_the_workspace_has_them(start_server):
    from tests.support.accounts import secured_env

    backend = start_server("backend", env=secured_env())
    frontend = start_server("frontend", env={"MYAPP_BACKEND_URL": backend.url})
    with httpx.Client(base_url=frontend.url, timeout=30) as client:
        response = client.put("/datasets/_upload", params={"name": "nope"}, content=b"a\n1\n")
        assert response.status_code == 401
        assert response.headers["X-Myapp-Fragment"] == "upload-result"
        assert "sign in again" in response.text
        page = client.get("/datasets")
        assert page.status_code == 302 and "/login" in page.headers["location"]
    assert httpx.get(f"{backend.url}/api/datasets/nope").status_code == 401


def test_the_report_of_an_upload_with_many_rejects_fits_its_cookie(web, api, name):
    long = "x" * 300
    body = b"a,b\n" + b"".join(f"{i},{long}\n{i},{long},extra\n".encode() for i in range(200))
    response = web.post(
        "/datasets", files={"file": ("many.csv", body, "text/csv")}, data={"name": name}
    )
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert len(cookie) < 4096, len(cookie)
    report = web.get(response.headers["Location"])
    assert re.search(r'data-testid="rows-loaded">200<', report.text)
    assert re.search(r'data-testid="rows-rejected">200<', report.text)


def _facet_counts(text: str, column: str) -> dict[str, int]:
    """The values and counts of one facet of a table page."""
    section = re.search(rf'data-testid="facet-{column}">(.*?)</section>', text, re.S)
    assert section, f"no facet {column}"
    pairs = re.findall(r'<a href="[^"]*">([^<]*)</a> <span class="count">([\d,]+)</span>',
                       section.group(1))  # fmt: skip
    return {html.unescape(v): int(n.replace(",", "")) for v, n in pairs}


def test_facets_follow_the_datasets_columns_and_rows(web, api, name):
    """The page sends its facets call beside the dataset's with the columns it saw last time;
    after a replace with other columns, or other rows, it shows the new ones' facets."""
    _seed(api, name, b"a,b\nx,p\nx,q\ny,q\n", filename="t.csv")
    first = web.get(f"/datasets/{name}")
    assert first.status_code == 200
    assert _facet_counts(first.text, "a") == {"x": 2, "y": 1}
    assert _facet_counts(first.text, "b") == {"q": 2, "p": 1}
    _seed(api, name, b"c,d\nm,1\nn,2\nn,3\n", filename="t.csv", mode="replace")
    second = web.get(f"/datasets/{name}")
    assert 'data-testid="facet-a"' not in second.text
    assert _facet_counts(second.text, "c") == {"n": 2, "m": 1}
    _seed(api, name, b"c,d\nk,1\n", filename="t.csv", mode="replace")
    third = web.get(f"/datasets/{name}", params={"c__ne": "zz"})
    assert _facet_counts(third.text, "c") == {"k": 1}
    # Columns the last guess still finds, and one more: the page counts that one too.
    _seed(api, name, b"c,e,d\nk,u,1\nj,u,1\n", filename="t.csv", mode="replace")
    fifth = web.get(f"/datasets/{name}")
    assert _facet_counts(fifth.text, "c") == {"j": 1, "k": 1}
    assert _facet_counts(fifth.text, "e") == {"u": 2}
    _seed(api, name, b"c,d\nk,1\n", filename="t.csv", mode="replace")
    # A chosen facet of a column the dataset no longer has is left out, as before.
    fourth = web.get(f"/datasets/{name}", params=[("facet", "a"), ("facet", "d")])
    assert 'data-testid="facet-a"' not in fourth.text
    assert _facet_counts(fourth.text, "d") == {"1": 1}


def _big_csv(rows: int) -> bytes:
    lines = ["id,city,k"] + [
        f"{i},{['Oslo', 'Bergen', 'Tromsø'][i % 3]},{i % 7}" for i in range(rows)
    ]
    return ("\n".join(lines) + "\n").encode()


def test_big_tables_show_new_facets_after_the_page(web, api, name):
    """Above FACETS_IN_PAGE_MAX_ROWS the page does not wait for a new filter's facets: it
    shows them as pending with their own address, which gives the counts as a block for the
    page's script or as a page of their own; once counted, the table page shows them itself."""
    from myapp.frontend.views.datasets import FACETS_IN_PAGE_MAX_ROWS

    rows = FACETS_IN_PAGE_MAX_ROWS + 10
    _seed(api, name, _big_csv(rows), filename="big.csv")
    state = [("k__eq", "3"), ("sort", "-id"), ("limit", "25")]
    page = web.get(f"/datasets/{name}", params=state)
    assert page.status_code == 200
    assert page.text.count('data-testid="facet-pending"') == 1  # city; k is a number
    src = re.search(r'data-facets-src="([^"]*)"', page.text)
    assert src, "no address for the pending facets"
    address = html.unescape(src.group(1))
    assert address == f"/datasets/{name}/facets?k__eq=3&sort=-id&limit=25"
    # The rows did not wait: they are there in full.
    assert page.text.count("<tr>") == 26  # a header row and 25 rows

    expected = {"Oslo": 0, "Bergen": 0, "Tromsø": 0}
    for i in range(rows):
        if i % 7 == 3:
            expected[["Oslo", "Bergen", "Tromsø"][i % 3]] += 1
    block = web.get(address, headers={"X-Myapp-Fragment": "facets"})
    assert block.status_code == 200 and block.headers["X-Myapp-Fragment"] == "facets"
    assert "<html" not in block.text and "facet-pending" not in block.text
    assert _facet_counts(block.text, "city") == expected
    # The values lead to the table under the same state plus the value.
    assert (
        f'href="/datasets/{name}?k__eq=3&amp;sort=-id&amp;limit=25&amp;facet=city&amp;city__eq=Oslo"'
        in block.text
    )

    # Without scripts the same address is a page with a way back to the table.
    alone = web.get(address)
    assert alone.status_code == 200 and "<html" in alone.text
    assert _facet_counts(alone.text, "city") == expected
    assert (
        f'href="/datasets/{name}?k__eq=3&amp;sort=-id&amp;limit=25" data-testid="facets-back"'
        in alone.text
    )

    # Counted once, they are stored: the table page now shows them itself.
    again = web.get(f"/datasets/{name}", params=state)
    assert "facet-pending" not in again.text and "data-facets-src" not in again.text
    assert _facet_counts(again.text, "city") == expected

    # A refused filter is left out of the counts, as it is of the rows.
    bad = web.get(address + "&k__gt=abc", headers={"X-Myapp-Fragment": "facets"})
    assert bad.status_code == 200
    assert _facet_counts(bad.text, "city") == expected
    assert web.get(f"/datasets/{name}_none/facets").status_code == 404
