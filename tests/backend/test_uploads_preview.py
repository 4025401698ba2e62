"""Staged uploads against a real backend: preview, read again with other options, load,
expiry, ownership and limits."""

from __future__ import annotations

import io
import os
import time

import httpx
import openpyxl
import pytest

from tests.backend.test_errors import assert_error_shape
from tests.support.accounts import ADMIN_HEADERS, Accounts, bearer, secured_env

REPORT = (
    b"Statement for account 42\n"
    b"generated 2024-05-01\n"
    b"\n"
    b"day;amount;who\n"
    b"2024-01-01;7,55;Ann\n"
    b"2024-01-02;12,00;Bo\n"
    b"2024-01-03;n/a;Cy\n"
)


@pytest.fixture
def name(request) -> str:
    return "u_" + request.node.name.removeprefix("test_")[:20] + os.urandom(2).hex()


def stage(api: httpx.Client, body: bytes, filename: str = "report.csv", **params):
    return api.post("/api/uploads", content=body, params={"filename": filename, **params})


def test_a_staged_upload_previews_as_it_would_load(api):
    response = stage(api, REPORT)
    assert response.status_code == 201, response.text
    upload = response.json()["upload"]
    assert upload["format"] == "csv" and upload["encoding"] == "utf-8"
    assert (upload["delimiter"], upload["header"], upload["skip"]) == (";", True, 3)
    assert upload["columns"] == [
        {"name": "day", "type": "DATE"},
        {"name": "amount", "type": "DOUBLE"},
        {"name": "who", "type": "VARCHAR"},
    ]
    assert upload["rows"] == [
        ["2024-01-01", 7.55, "Ann"],
        ["2024-01-02", 12.0, "Bo"],
        ["2024-01-03", None, "Cy"],
    ]
    assert upload["decimal_separator"] == ","
    assert upload["rejects"] == [] and upload["row_count"] == 3
    assert upload["expires_at"]
    # Nothing is a dataset yet.
    assert api.get("/api/datasets/report").status_code == 404
    assert api.delete(f"/api/uploads/{upload['id']}").status_code == 204


def test_multipart_staging_and_loading_without_sending_again(api, name):
    response = api.post(
        "/api/uploads",
        files={"file": ("people.csv", b"id,name\n1,Ann\n2,Bo\n", "text/csv")},
    )
    assert response.status_code == 201, response.text
    upload_id = response.json()["upload"]["id"]
    loaded = api.post(f"/api/uploads/{upload_id}/load", json={"name": name})
    assert loaded.status_code == 201, loaded.text
    result = loaded.json()
    assert result["action"] == "created" and result["rows_loaded"] == 2
    assert result["dataset"]["name"] == name
    rows = api.get(f"/api/datasets/{name}/rows").json()["rows"]
    assert rows == [[1, "Ann"], [2, "Bo"]]
    # Loaded means gone.
    assert_error_shape(api.get(f"/api/uploads/{upload_id}"), 404, "upload_not_found")


def test_patch_reads_again_with_other_options_and_types(api, name):
    upload = stage(api, b"a|b\n1|x\n2|y\n3|z\n", "pipes.txt").json()["upload"]
    assert upload["delimiter"] == "|"
    again = api.patch(f"/api/uploads/{upload['id']}", json={"header": False})
    assert again.status_code == 200, again.text
    changed = again.json()["upload"]
    assert changed["header"] is False
    assert [c["name"] for c in changed["columns"]] == ["column0", "column1"]
    assert changed["rows"][0] == ["a", "b"]
    typed = api.patch(
        f"/api/uploads/{upload['id']}", json={"header": None, "types": {"a": "VARCHAR"}}
    ).json()["upload"]
    assert typed["columns"][0] == {"name": "a", "type": "VARCHAR"}
    assert typed["types"] == {"a": "VARCHAR"}
    # A type the values do not fit: they show as rejects in the preview.
    rejected = api.patch(f"/api/uploads/{upload['id']}", json={"types": {"b": "INTEGER"}}).json()[
        "upload"
    ]
    assert rejected["rows_rejected"] == 3 and rejected["rows"] == []
    bad = api.patch(f"/api/uploads/{upload['id']}", json={"delimiter": "::"})
    assert_error_shape(bad, 400, "invalid_option")
    final = api.patch(f"/api/uploads/{upload['id']}", json={"types": {}}).json()["upload"]
    loaded = api.post(f"/api/uploads/{final['id']}/load", json={"name": name, "mode": "create"})
    assert loaded.status_code == 201, loaded.text
    assert loaded.json()["dataset"]["columns"][0] == {"name": "a", "type": "BIGINT"}


def test_a_workbook_preview_lists_sheets_and_switches(api):
    book = openpyxl.Workbook()
    book.active.title = "One"
    book.active.append(["x"])
    book.active.append([1])
    two = book.create_sheet("Two")
    two.append(["y", "z"])
    two.append(["a", 2])
    out = io.BytesIO()
    book.save(out)
    upload = stage(api, out.getvalue(), "book.xlsx").json()["upload"]
    assert (upload["format"], upload["sheet"], upload["sheets"]) == ("xlsx", "One", ["One", "Two"])
    two_preview = api.patch(f"/api/uploads/{upload['id']}", json={"sheet": "Two"}).json()
    assert two_preview["upload"]["rows"] == [["a", 2]]
    api.delete(f"/api/uploads/{upload['id']}")


def test_append_and_replace_from_a_staged_upload(api, name):
    assert api.put(f"/api/datasets/{name}", content=b"id,v\n1,a\n").status_code == 201
    upload = stage(api, b"id,v\n2,b\n").json()["upload"]
    appended = api.post(f"/api/uploads/{upload['id']}/load", json={"name": name, "mode": "append"})
    assert appended.status_code == 201, appended.text
    assert appended.json()["action"] == "appended"
    assert appended.json()["dataset"]["row_count"] == 2
    upload = stage(api, b"id,v\n9,z\n").json()["upload"]
    exists = api.post(f"/api/uploads/{upload['id']}/load", json={"name": name})
    assert_error_shape(exists, 409, "dataset_exists")
    replaced = api.post(f"/api/uploads/{upload['id']}/load", json={"name": name, "mode": "replace"})
    assert replaced.status_code == 201, replaced.text
    assert api.get(f"/api/datasets/{name}/rows").json()["rows"] == [[9, "z"]]


def test_an_unreadable_file_is_refused_at_staging_and_leaves_nothing(api, backend_server):
    before = set((backend_server.data_dir / ".staging").iterdir())
    error = assert_error_shape(stage(api, b"%PDF-1.4\n\x00\x01\x02" * 100), 422, "binary_file")
    assert "PDF" in error["message"]
    assert set((backend_server.data_dir / ".staging").iterdir()) == before


def test_delete_drops_it(api, backend_server):
    upload = stage(api, b"a\n1\n").json()["upload"]
    assert api.delete(f"/api/uploads/{upload['id']}").status_code == 204
    assert_error_shape(api.get(f"/api/uploads/{upload['id']}"), 404, "upload_not_found")
    assert not (backend_server.data_dir / ".staging" / f"upload-{upload['id']}").exists()


def test_staged_uploads_expire_and_count_against_the_limit(start_server):
    server = start_server(
        "backend", env={"MYAPP_UPLOAD_TTL_S": "10", "MYAPP_MAX_UPLOAD_BYTES": "1000"}
    )
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = stage(client, b"a\n" + b"1\n" * 300).json()["upload"]
        # 602 bytes staged; another 602 would pass the 1000-byte limit.
        error = assert_error_shape(
            stage(client, b"a\n" + b"2\n" * 300), 413, "staged_uploads_too_large"
        )
        assert "load or delete" in error["message"]
        time.sleep(10.5)
        assert_error_shape(client.get(f"/api/uploads/{first['id']}"), 404, "upload_not_found")
        assert stage(client, b"a\n" + b"2\n" * 300).status_code == 201
        staged = [p.name for p in (server.data_dir / ".staging").iterdir()]
        assert len(staged) == 1


def test_only_the_uploader_or_an_admin_sees_a_staged_upload(start_server):
    server = start_server("backend", env=secured_env())
    accounts = Accounts(server)
    try:
        alice = bearer(accounts.user_token("editor"))
        bob = bearer(accounts.user_token("editor"))
        viewer = bearer(accounts.user_token("viewer"))
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post(
                "/api/uploads", content=b"a\n1\n", params={"filename": "a.csv"}, headers=alice
            )
            assert response.status_code == 201, response.text
            upload_id = response.json()["upload"]["id"]
            for method, path, body in (
                ("GET", f"/api/uploads/{upload_id}", None),
                ("PATCH", f"/api/uploads/{upload_id}", {"header": True}),
                ("POST", f"/api/uploads/{upload_id}/load", {"name": "stolen"}),
                ("DELETE", f"/api/uploads/{upload_id}", None),
            ):
                answer = client.request(method, path, json=body, headers=bob)
                assert_error_shape(answer, 404, "upload_not_found")
            assert client.post("/api/uploads", content=b"a\n", headers=viewer).status_code == 403
            assert client.get(f"/api/uploads/{upload_id}", headers=ADMIN_HEADERS).status_code == 200
            assert client.get(f"/api/uploads/{upload_id}", headers=alice).status_code == 200
    finally:
        accounts.close()


def test_user_sql_cannot_read_a_staged_upload(api, backend_server):
    upload = stage(api, b"secret\nhunter2\n").json()["upload"]
    staged = backend_server.data_dir.resolve() / ".staging" / f"upload-{upload['id']}" / "upload"
    assert staged.exists()
    response = api.post("/api/query", json={"sql": f"SELECT * FROM read_csv('{staged}')"})
    assert response.status_code in (400, 403, 422)
    assert "hunter2" not in response.text
    api.delete(f"/api/uploads/{upload['id']}")


def test_openapi_documents_the_upload_routes(api):
    paths = api.get("/api/openapi.json").json()["paths"]
    assert {"post"} <= set(paths["/api/uploads"])
    assert {"get", "patch", "delete"} <= set(paths["/api/uploads/{upload_id}"])
    assert "post" in paths["/api/uploads/{upload_id}/load"]


def test_the_name_and_mode_sent_with_the_file_are_the_loads_defaults(api, name):
    assert api.put(f"/api/datasets/{name}", content=b"id,v\n1,a\n").status_code == 201
    upload = stage(api, b"id,v\n2,b\n", name=name, mode="append").json()["upload"]
    assert (upload["name"], upload["mode"]) == (name, "append")
    # Kept when the file is read again with other options.
    again = api.patch(f"/api/uploads/{upload['id']}", json={"delimiter": ","}).json()["upload"]
    assert (again["name"], again["mode"]) == (name, "append")
    loaded = api.post(f"/api/uploads/{upload['id']}/load", json={})
    assert loaded.status_code == 201, loaded.text
    assert loaded.json()["action"] == "appended"
    assert api.get(f"/api/datasets/{name}").json()["row_count"] == 2
    # A multipart form's fields say the same; the load's own body still wins.
    form = api.post(
        "/api/uploads",
        files={"file": ("other.csv", b"id,v\n3,c\n")},
        data={"name": name, "mode": "replace"},
    ).json()["upload"]
    assert (form["name"], form["mode"], form["filename"]) == (name, "replace", "other.csv")
    created = api.post(f"/api/uploads/{form['id']}/load", json={"name": name + "_new"})
    assert created.status_code == 201 and created.json()["action"] == "created"
    assert created.json()["dataset"]["name"] == name + "_new"
    # Without a name sent anywhere, the file name names the dataset, as before.
    plain = stage(api, b"x\n1\n", filename=f"{name}_file.csv").json()["upload"]
    assert (plain["name"], plain["mode"]) == (None, "create")
    assert api.delete(f"/api/uploads/{plain['id']}").status_code == 204
