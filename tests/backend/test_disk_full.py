"""A full disk: uploads and exports answer 507 with a sentence a person can act on, what is
stored stays readable, nothing half-written stays behind, and it all works again once space
returns, without a restart.

The data dir is a small tmpfs of its own, filled by a file the test writes next to the data,
as another program on the same volume would. Mounting needs root (CI runs as root); elsewhere
these tests are skipped, saying why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend.test_crash_recovery import leftover_files
from tests.backend.test_errors import assert_error_shape
from tests.support.servers import ServerProcess

MIB = 1024 * 1024


@contextlib.contextmanager
def small_disk(where: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of `size_mib` mounted at `where`; unmounted afterwards, whatever happens."""
    where.mkdir(parents=True)
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("the disk-full tests mount a small tmpfs, and mount/umount are missing")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(
            "the disk-full tests mount a small tmpfs as the data dir, which needs root or "
            f"CAP_SYS_ADMIN: {result.stderr.strip() or 'mount failed'}"
        )
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            # Something still holds a file there; detach it now, it goes when released.
            subprocess.run(["umount", "-l", str(where)], check=True)


class Filler:
    """Takes the free space of a volume, all or all but some, and gives it back."""

    def __init__(self, disk: Path) -> None:
        self.path = disk / "filler.bin"

    def fill(self, leave_bytes: int = 0) -> None:
        self.free()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for block in (MIB, 4096, 512):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * block)
        finally:
            os.close(fd)
        if leave_bytes:
            os.truncate(self.path, max(0, self.path.stat().st_size - leave_bytes))

    def free(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def disk_server(tmp_path_factory) -> Iterator[tuple[ServerProcess, Filler]]:
    """One backend on a small disk for the tests of this module; each uses names of its own."""
    root = tmp_path_factory.mktemp("small-disk")
    with small_disk(root / "disk", 48) as disk:
        server = ServerProcess("backend", root / "work", env={"MYAPP_DATA_DIR": str(disk)})
        try:
            server.start()
            yield server, Filler(disk)
        finally:
            server.kill()


@pytest.fixture
def disk_backend(disk_server) -> Iterator[tuple[ServerProcess, Filler]]:
    server, filler = disk_server
    try:
        yield server, filler
    finally:
        filler.free()


def csv_rows(rows: int, start: int = 0) -> bytes:
    lines = (f"{i},item {i},{i * 37 % 1000}.25" for i in range(start, start + rows))
    return ("id,label,amount\n" + "\n".join(lines) + "\n").encode()


def assert_disk_full(response: httpx.Response) -> None:
    message = assert_error_shape(response, 507, "insufficient_storage")["message"]
    assert "disk is full" in message and "free space" in message, message


def disk_full_lines(server: ServerProcess) -> list[str]:
    return [line for line in server.log_text().splitlines() if "disk full on" in line]


def test_full_disk_answers_507_keeps_data_readable_and_recovers(disk_backend):
    server, filler = disk_backend
    body = csv_rows(30_000)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        created = client.put("/api/datasets/kept", content=body, params={"filename": "kept.csv"})
        assert created.status_code == 201, created.text
        kept = created.json()["dataset"]
        listing = client.get("/api/datasets").json()

        filler.fill()
        # The body cannot even be received.
        assert_disk_full(client.put("/api/datasets/new_put", content=body))
        assert_disk_full(client.post("/api/datasets", files={"file": ("new_post.csv", body)}))
        assert_disk_full(client.put("/api/datasets/kept", content=body, params={"mode": "append"}))
        # Exports are written to disk before they are sent.
        assert_disk_full(client.get("/api/datasets/kept/export", params={"format": "csv"}))
        assert_disk_full(
            client.get(
                "/api/query/export",
                params={"sql": "SELECT * FROM kept ORDER BY id", "format": "parquet"},
            )
        )
        assert leftover_files(server.data_dir, ["kept"]) == []

        # Room for the body, not for DuckDB's copy of it: the load fails, and says so.
        filler.fill(leave_bytes=len(body) + 256 * 1024)
        logged = len(disk_full_lines(server))
        assert_disk_full(client.put("/api/datasets/new_load", content=body))
        assert_disk_full(client.put("/api/datasets/kept", content=body, params={"mode": "replace"}))
        # The second refusal came from DuckDB, not from receiving the body.
        assert any("Could not write file" in line for line in disk_full_lines(server)[logged:])
        assert leftover_files(server.data_dir, ["kept"]) == []

        # What is stored stays readable on the full disk (profiles: see the test below).
        filler.fill()
        assert client.get("/api/health").json()["database"] == "ok"
        assert client.get("/api/datasets").json() == listing
        assert client.get("/api/datasets/kept").json() == kept
        page = client.get("/api/datasets/kept/rows", params={"limit": 3, "sort": "-id"})
        assert page.status_code == 200, page.text
        assert [r[0] for r in page.json()["rows"]] == [29_999, 29_998, 29_997]
        counted = client.post("/api/query", json={"sql": "SELECT count(*), sum(id) FROM kept"})
        assert counted.status_code == 200, counted.text
        assert counted.json()["rows"] == [[30_000, 30_000 * 29_999 // 2]]

        # Space comes back: everything works again, nothing was half-done before.
        filler.free()
        appended = client.put(
            "/api/datasets/kept", content=csv_rows(500, 30_000), params={"mode": "append"}
        )
        assert appended.status_code == 201, appended.text
        assert appended.json()["dataset"]["row_count"] == 30_500
        assert client.put("/api/datasets/new_put", content=body).status_code == 201
        export = client.get("/api/datasets/kept/export", params={"format": "csv"})
        assert export.status_code == 200, export.text
        assert export.content.count(b"\n") == 30_501
        names = {d["name"] for d in client.get("/api/datasets").json()["datasets"]}
        assert {"kept", "new_put"} <= names
        assert not names & {"new_post", "new_load"}
        assert client.get("/api/health").status_code == 200
    assert leftover_files(server.data_dir, names) == []


def test_only_real_disk_errors_count_as_a_full_disk(disk_backend):
    server, _ = disk_backend
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # DuckDB quotes the query in its error; the words in it are the user's, not the disk's.
        sql = "SELECT 'IO Error: No space left on device' AS reason FROM no_such_table"
        error = client.post("/api/query", json={"sql": sql})
        assert 400 <= error.status_code < 500, error.text
        assert error.json()["error"]["code"] != "insufficient_storage"


def test_a_profile_can_be_read_on_a_full_disk(disk_backend):
    server, filler = disk_backend
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.put("/api/datasets/profiled", content=csv_rows(5_000)).status_code == 201
        filler.fill()
        profile = client.get("/api/datasets/profiled/profile")
        assert profile.status_code == 200, profile.text
        assert [c["name"] for c in profile.json()["columns"]] == ["id", "label", "amount"]


def test_pages_explain_a_full_disk(disk_backend, start_server):
    server, filler = disk_backend
    web = start_server("frontend", env={"MYAPP_BACKEND_URL": server.url})
    with httpx.Client(base_url=server.url, timeout=30) as api:
        assert api.put("/api/datasets/paged", content=csv_rows(5_000)).status_code == 201
    filler.fill()
    with httpx.Client(base_url=web.url, timeout=30) as browser:
        download = browser.get("/datasets/paged/export", params={"format": "csv"})
        assert download.status_code == 507
        assert download.headers["content-type"].startswith("text/html")
        assert "The server&#39;s disk is full" in download.text
        assert "free space on the data volume" in download.text
        # The upload page's XHR gets the reason as a fragment to show next to the form.
        upload = browser.put(
            "/datasets/_upload",
            params={"name": "more", "filename": "more.csv"},
            content=csv_rows(20_000),
            headers={"Origin": web.url},
        )
        assert upload.status_code == 507
        assert 'data-testid="upload-failed"' in upload.text
        assert "disk is full" in upload.text
        # Pages that only read keep working.
        table = browser.get("/datasets/paged")
        assert table.status_code == 200
        assert ">item 0<" in table.text


def test_a_disk_filling_up_under_uploads_loses_nothing_acknowledged(tmp_path):
    """Uploads until the disk refuses one, then a restart: every acknowledged one is whole.

    On the way DuckDB may also fold its write-ahead log into the database file (it does once
    the log passes 16 MB); when that checkpoint cannot be written, DuckDB refuses everything
    until the database is opened again, and the backend must say so.
    """
    with small_disk(tmp_path / "disk", 96) as disk:
        server = ServerProcess("backend", tmp_path / "work", env={"MYAPP_DATA_DIR": str(disk)})
        filler = Filler(disk)
        try:
            server.start()
            _fill_up_and_restart(server, filler)
        finally:
            server.kill()


def _fill_up_and_restart(server: ServerProcess, filler: Filler) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.put("/api/datasets/kept", content=csv_rows(100_000)).status_code == 201
        acknowledged = ["kept"]
        filler.fill(leave_bytes=12 * MIB)
        for n in range(1, 41):
            answer = client.put(f"/api/datasets/grow_{n}", content=csv_rows(100_000, n * 100_000))
            if answer.status_code != 201:
                break
            acknowledged.append(f"grow_{n}")
        else:
            pytest.fail("the disk never filled up")
        assert len(acknowledged) > 1, "the first upload already failed: the disk was too small"
        assert_disk_full(answer)
        print(f"\n{len(acknowledged) - 1} uploads of 100,000 rows before the disk was full")

        health = client.get("/api/health")
        stopped = health.status_code == 503
        if stopped:
            assert health.json()["database"] == "unavailable"
            listing = client.get("/api/datasets")
            error = assert_error_shape(listing, 503, "database_unavailable")
            assert "restart the backend" in error["message"]
        else:
            listed = [d["name"] for d in client.get("/api/datasets").json()["datasets"]]
            assert sorted(listed) == sorted(acknowledged)

        filler.free()
        recovered_in_place = client.get("/api/health").status_code == 200

    assert server.stop() == 0
    server.start()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        # Every acknowledged upload is there, the refused one is not.
        listed = {d["name"]: d["row_count"] for d in client.get("/api/datasets").json()["datasets"]}
        assert listed == dict.fromkeys(acknowledged, 100_000)
        last = acknowledged[-1]
        counted = client.post("/api/query", json={"sql": f"SELECT count(*) FROM {last}"})
        assert counted.json()["rows"] == [[listed[last]]]
        again = client.put("/api/datasets/kept", content=csv_rows(10), params={"mode": "append"})
        assert again.status_code == 201, again.text
    assert leftover_files(server.data_dir, acknowledged) == []
    if stopped and not recovered_in_place:
        pytest.xfail(
            "DuckDB stopped the database after a failed checkpoint on the full disk, and the "
            "backend needs a restart to open it again (reported to the lead)"
        )
