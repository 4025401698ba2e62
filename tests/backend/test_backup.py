"""Online backup while writes go on, and restore into a fresh workspace, compared table by table.

Real processes: a backend on its own data dir, the `myapp backup` / `myapp restore` commands as
a user runs them, and a second backend started on the restored workspace.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx

from tests.support.servers import run_cli


def csv_rows(count: int, start: int = 0) -> bytes:
    lines = ["id,city,amount"]
    cities = ["Oslo", "Lima", "Pune", "Kyiv", "Faro"]
    lines += [f"{i},{cities[i % 5]},{i * 0.5}" for i in range(start, start + count)]
    return ("\n".join(lines) + "\n").encode()


def fingerprint(client: httpx.Client, name: str) -> list:
    """Row count and an order-independent checksum of every value of a dataset."""
    answer = client.post(
        "/api/query",
        json={"sql": f'SELECT count(*), sum(hash(t)) FROM "{name}" AS t'},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["rows"][0]


class Writer(threading.Thread):
    """Keeps uploading and appending while the backups run; remembers what was acknowledged."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.created: list[str] = []
        self.errors: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            i = 0
            while not self.stop.is_set():
                name = f"during_{i}"
                answer = client.put(f"/api/datasets/{name}", content=csv_rows(2000, i))
                if answer.status_code != 201:
                    self.errors.append(answer.text)
                else:
                    self.created.append(name)
                answer = client.put(
                    "/api/datasets/growing",
                    content=csv_rows(500, 10_000 + i * 500),
                    params={"mode": "append"},
                )
                if answer.status_code != 201:
                    self.errors.append(answer.text)
                i += 1


def test_backup_while_writing_then_restore_gives_back_every_table(start_server, tmp_path):
    source = start_server("backend", workdir=tmp_path / "source")
    client = httpx.Client(base_url=source.url, timeout=60)
    try:
        assert client.put("/api/datasets/sales", content=csv_rows(30_000)).status_code == 201
        people = b'[{"name": "Ada", "born": "1815-12-10"}, {"name": "Alan", "born": "1912-06-23"}]'
        assert (
            client.put(
                "/api/datasets/people", content=people, params={"format": "json"}
            ).status_code
            == 201
        )
        assert client.put("/api/datasets/growing", content=csv_rows(1000)).status_code == 201
        saved = client.post(
            "/api/queries",
            json={
                "title": "Sales by city",
                "sql": "SELECT city, sum(amount) AS total FROM sales WHERE amount > $min "
                "GROUP BY city ORDER BY city",
                "parameters": [{"name": "min", "type": "number", "default": 1}],
            },
        )
        assert saved.status_code == 201, saved.text
        slug = saved.json()["slug"]

        writer = Writer(source.url)
        writer.start()
        try:
            first = run_cli("backup", "--url", source.url, "--json")
            assert first.returncode == 0, first.stderr
            api_backup = client.post("/api/admin/backup", timeout=120)
            assert api_backup.status_code == 201, api_backup.text
        finally:
            writer.stop.set()
            writer.join(timeout=60)
        assert writer.errors == []
        assert writer.created, "the writer never got an upload through during the backups"

        manifest = json.loads(first.stdout)
        backup_dir = Path(manifest["path"])
        assert backup_dir.parent == source.data_dir / "backups"
        listed = client.get("/api/admin/backups").json()["backups"]
        assert [b["name"] for b in listed] == [api_backup.json()["name"], manifest["name"]]
        in_backup = {d["name"]: d["row_count"] for d in manifest["datasets"]}
        assert {"sales", "people", "growing"} <= set(in_backup)
        assert in_backup["sales"] == 30_000
        # Whatever moment the backup caught, `growing` holds whole appends only.
        assert (in_backup["growing"] - 1000) % 500 == 0
        # Datasets that did not change since are compared with the live ones below.
        unchanged = {"sales", "people"} | {n for n in in_backup if n.startswith("during_")}
        expected = {name: fingerprint(client, name) for name in unchanged}
        # Nothing half-written lies next to the finished backups.
        assert sorted(p.name for p in (source.data_dir / "backups").iterdir()) == sorted(
            [manifest["name"], api_backup.json()["name"]]
        )
    finally:
        client.close()

    # A running backend holds its workspace: restoring into it is refused and changes nothing.
    refused = run_cli(
        "restore", str(backup_dir), "--yes", env={"MYAPP_DATA_DIR": str(source.data_dir)}
    )
    assert refused.returncode == 2
    assert "in use by a running backend" in refused.stderr
    assert not list(source.data_dir.glob("before-restore-*"))
    assert source.stop() == 0

    target_data = tmp_path / "target" / "data"
    restored = run_cli(
        "restore", str(backup_dir), "--yes", env={"MYAPP_DATA_DIR": str(target_data)}
    )
    assert restored.returncode == 0, restored.stderr
    assert f"{len(in_backup)} datasets" in restored.stdout

    target = start_server("backend", workdir=tmp_path / "target")
    with httpx.Client(base_url=target.url, timeout=60) as restored_client:
        datasets = restored_client.get("/api/datasets").json()["datasets"]
        assert {d["name"]: d["row_count"] for d in datasets} == in_backup
        for name, rows in in_backup.items():
            assert fingerprint(restored_client, name)[0] == rows, name
        for name, print_ in expected.items():
            assert fingerprint(restored_client, name) == print_, name
        run = restored_client.post(f"/api/queries/{slug}/run", json={"params": {"min": 100}})
        assert run.status_code == 200, run.text
        assert [r[0] for r in run.json()["rows"]] == ["Faro", "Kyiv", "Lima", "Oslo", "Pune"]
        # The restored workspace takes new writes: sequences went along with the data.
        again = restored_client.put(
            "/api/datasets/growing", content=csv_rows(500, 900_000), params={"mode": "append"}
        )
        assert again.status_code == 201, again.text
        assert again.json()["dataset"]["row_count"] == in_backup["growing"] + 500
        audit = restored_client.get("/api/audit", params={"action": "dataset."}).json()
        assert audit["events"][0]["target"] == "growing"
    assert target.stop() == 0


def test_restore_refuses_what_is_not_a_whole_backup(tmp_path):
    empty = tmp_path / "not-a-backup"
    empty.mkdir()
    env = {"MYAPP_DATA_DIR": str(tmp_path / "data")}
    result = run_cli("restore", str(empty), "--yes", env=env)
    assert result.returncode == 2
    assert "is not a myapp backup" in result.stderr
    (empty / "manifest.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "datasets": [{"name": "sales", "file_id": "abc", "row_count": 3}],
            }
        )
    )
    result = run_cli("restore", str(empty), "--yes", env=env)
    assert result.returncode == 2
    assert "incomplete" in result.stderr and "sales" in result.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
