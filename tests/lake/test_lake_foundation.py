"""The parts the lake mode stands on, proven together: DuckDB 1.4.4 with DuckLake, a private
PostgreSQL catalog, a local data path; concurrent writers from separate processes, snapshots."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

pytestmark = pytest.mark.lake

WRITERS = 2
BATCHES = 15
BATCH_ROWS = 40

# Inserts BATCHES transactions of BATCH_ROWS rows tagged with the writer's id. DuckLake commits
# optimistically: a commit that meets another writer's may fail with a conflict, and is then
# retried; it prints the batches it saw committed.
WRITER = """
import os, time
writer = int(args[0])
gate = args[3]
# Both writers attach first, then start inserting at the same moment.
open(os.path.join(gate, f"ready-{writer}"), "w").close()
while not os.path.exists(os.path.join(gate, "go")):
    time.sleep(0.01)
committed, conflicts = [], 0
for batch in range(int(args[1])):
    for attempt in range(20):
        try:
            con.execute("BEGIN")
            con.execute(
                "INSERT INTO lake.events SELECT $w, $b, range FROM range($n)",
                {"w": writer, "b": batch, "n": int(args[2])},
            )
            con.execute("COMMIT")
            committed.append(batch)
            break
        except duckdb.Error as exc:
            if "conflict" not in str(exc).lower():
                raise
            conflicts += 1
            con.execute("ROLLBACK")
print(json.dumps({"committed": committed, "conflicts": conflicts}))
"""


def test_ctas_snapshots_and_the_data_path(lake):
    made = lake.run(
        """
        con.execute(
            "CREATE TABLE lake.sales AS SELECT range AS id, range % 7 AS grp FROM range(5000)"
        )
        con.execute("INSERT INTO lake.sales SELECT range + 5000, 99 FROM range(250)")
        con.execute("DELETE FROM lake.sales WHERE id < 100")
        def one(sql):
            return con.execute(sql).fetchone()
        snapshots = con.execute("SELECT snapshot_id FROM lake.snapshots()").fetchall()
        print(json.dumps({
            "snapshots": [r[0] for r in snapshots],
            "now": one("SELECT count(*), max(grp) FROM lake.sales"),
            "v1": one("SELECT count(*), max(grp) FROM lake.sales AT (VERSION => 1)"),
            "v2": one("SELECT count(*) FROM lake.sales AT (VERSION => 2)"),
        }))
        """
    )
    assert made["now"] == [5150, 99]
    assert made["v1"] == [5000, 6]  # the CTAS alone, before the insert and the delete
    assert made["v2"] == [5250]
    assert made["snapshots"][-1] == 3
    # The rows live as Parquet files under the data path, the metadata in PostgreSQL.
    assert list(lake.data_path.rglob("*.parquet"))

    # Another process (another machine, in the lake mode) sees the same tables and snapshots.
    again = lake.run(
        """
        print(json.dumps(con.execute(
            "SELECT (SELECT count(*) FROM lake.sales), "
            "(SELECT count(*) FROM lake.sales AT (VERSION => 1))"
        ).fetchone()))
        """
    )
    assert again == [5150, 5000]


def test_two_processes_inserting_at_once_lose_nothing(lake, tmp_path):
    lake.run('con.execute("CREATE TABLE lake.events (writer INT, batch INT, n BIGINT)"); print(1)')
    gate = tmp_path / "gate"
    gate.mkdir()
    writers = [
        subprocess.Popen(
            lake.command(WRITER, str(w), str(BATCHES), str(BATCH_ROWS), str(gate)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(WRITERS)
    ]
    deadline = time.monotonic() + 120
    while len(list(gate.glob("ready-*"))) < WRITERS:
        assert all(p.poll() is None for p in writers), [p.communicate() for p in writers]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (gate / "go").touch()
    committed = {}
    for w, proc in enumerate(writers):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        committed[w] = json.loads(out)["committed"]
    assert all(committed[w] == list(range(BATCHES)) for w in committed), committed

    counts = lake.run(
        """
        print(json.dumps(con.execute(
            "SELECT writer, count(*), count(DISTINCT batch) FROM lake.events "
            "GROUP BY ALL ORDER BY 1"
        ).fetchall()))
        """
    )
    assert counts == [[w, BATCHES * BATCH_ROWS, BATCHES] for w in range(WRITERS)]
