"""The query workers: the reviewed function list, the sandbox a worker holds by itself (without
the gate in front), exports paced to their client, and the per-account export limit."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import duckdb
import pytest

from myapp.backend.store.usersql.errors import DuckError
from myapp.backend.store.usersql.functions import function_list, unclassified
from myapp.backend.store.usersql.workers import Pool, PoolConfig, Worker
from myapp.settings import load_settings
from tests.backend.test_query_support import (
    CLIENT,
    error_of,
    make_workspace,
    rows,
    run,
)
from tests.support.servers import ServerProcess

SPOOL_BYTES = 16 * 1024 * 1024
TIME_LIMIT_MS = 3000
# About 110 MB of CSV: many times the spool's bound.
BIG_EXPORT = "SELECT range AS n, repeat('x', 100) AS pad FROM range(1_000_000)"


def test_every_function_duckdb_has_is_reviewed():
    """A DuckDB upgrade that adds functions fails here until each is classified in
    store/usersql/functions.tsv (until then they are refused)."""
    with duckdb.connect() as conn:
        assert unclassified(conn) == []


def test_the_list_refuses_what_reads_files_plans_sql_or_reads_settings():
    functions = function_list()
    for name in [
        "query",
        "query_table",
        "json_serialize_sql",
        "json_deserialize_sql",
        "json_execute_serialized_sql",
        "current_setting",
        "getvariable",
        "nextval",
        "read_csv",
        "read_text",
        "read_blob",
        "glob",
        "duckdb_settings",
        "duckdb_tables",
        "histogram_values",
        "version",
    ]:
        assert functions.refusal(name, as_table=True), name
        assert functions.refusal(name, as_table=False), name
    # A name DuckDB might add later is refused until reviewed.
    assert functions.refusal("a_function_of_tomorrow", as_table=False)
    # The aggregate is fine; the table macro of the same name reads a table named by a string.
    assert functions.refusal("histogram", as_table=False) is None
    assert functions.refusal("histogram", as_table=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    env = {
        "MYAPP_DATA_DIR": str(make_workspace(root)),
        "MYAPP_QUERY_TIMEOUT_MS": str(TIME_LIMIT_MS),
        "MYAPP_EXPORT_SPOOL_BYTES": str(SPOOL_BYTES),
        "MYAPP_MAX_EXPORTS_PER_USER": "1",
    }
    process = ServerProcess("backend", root, env=env).start()
    yield process
    process.stop()


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM query('SELECT 1')",
        "SELECT * FROM query_table('sales')",
        "SELECT json_serialize_sql('SELECT 1')",
        "SELECT current_setting('memory_limit')",
        "SELECT * FROM read_csv('.staging/upload.csv')",
        "SELECT content FROM read_text('secret.csv')",
        "SELECT * FROM histogram_values('sales', 'amount')",
        "SELECT * FROM duckdb_settings()",
        "SELECT version()",
        "SELECT pg_catalog.current_setting('threads')",
        "SELECT main.query_table('sales')",
    ],
)
def test_functions_off_the_list_are_refused(server, sql):
    error = error_of(run(server, sql), 400)
    assert error["code"] == "function_not_allowed", error


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT list_sort([3, 1, 2]) AS l", [[[1, 2, 3]]]),
        ("SELECT histogram(city)['Oslo'] AS n FROM sales", [[5000]]),
        ("SELECT count(*) FROM range(3)", [[3]]),
        ("SELECT row_number() OVER () AS r FROM range(1)", [[1]]),
        ("SELECT pg_typeof(1) AS t", [["integer"]]),
    ],
)
def test_functions_on_the_list_work(server, sql, expected):
    assert rows(server, sql) == expected


@pytest.fixture
def worker(tmp_path):
    data = make_workspace(tmp_path)
    settings = load_settings(data_dir=str(data))
    for directory in (settings.datasets_dir, settings.spill_dir, settings.export_dir):
        directory.mkdir(parents=True, exist_ok=True)
    (settings.export_dir / "other.spool").write_text("someone else's export\n")
    config = PoolConfig(name="test", size=1, threads=1, memory_limit="128MB", exports=True)
    started = Worker(settings, config)
    yield started, data
    started.reap()


def test_a_worker_holds_its_sandbox_without_the_gate(worker):
    """Whatever got past the gate, a worker cannot read files beyond the datasets' folder (the
    staging folder, spools, the catalog), change its settings or reach the catalog."""
    process, data = worker
    assert process.facts["rlimit_as"] > process.facts["idle_vsz"]
    forbidden = [
        f"SELECT * FROM read_csv('{data}/.staging/upload.csv')",
        f"SELECT * FROM read_text('{data}/secret.csv')",
        f"SELECT * FROM read_text('{data}/.exports/other.spool')",
        f"SELECT * FROM read_blob('{data}/app.db')",
        "SELECT * FROM read_text('/etc/passwd')",
        f"ATTACH '{data}/app.db' AS stolen",
        "SET enable_external_access = true",
        "SET memory_limit = '100GB'",
        "SELECT * FROM myapp_internal.accounts",
    ]
    for sql in forbidden:
        with pytest.raises(DuckError):
            process.call({"op": "query", "sql": sql, "fetch": 10})
    copy = {
        "op": "copy",
        "sql": "SELECT 1",
        "target": f"{data}/.staging/planted.csv",
        "options": "FORMAT csv",
    }
    with pytest.raises(DuckError):
        process.call(copy)
    assert not (data / ".staging" / "planted.csv").exists()
    # Still serving after all that.
    reply = process.call({"op": "query", "sql": "SELECT 42 AS n", "fetch": 10})
    assert b'"rows":[[42]]' in reply


def _spool_sizes(server: ServerProcess) -> list[int]:
    assert server.proc is not None
    sizes = []
    pids = [server.proc.pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == server.proc.pid:
                pids.append(int(entry.name))
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else []:
            try:
                if ".spool" in os.readlink(fd):
                    sizes.append(os.stat(fd).st_size)
            except OSError:
                continue
    return sizes


def test_a_slow_client_holds_a_bounded_spool_and_still_gets_everything(server):
    run_id = str(uuid.uuid4())
    with CLIENT.stream(
        "GET",
        server.url + "/api/query/export",
        params={"sql": BIG_EXPORT, "format": "csv", "id": run_id},
    ) as response:
        assert response.status_code == 200
        chunks = response.iter_bytes(64 * 1024)
        received = next(chunks)
        # The client pauses longer than the time limit: DuckDB waits on the pipe meanwhile,
        # and waiting for the client does not count against the limit.
        peak = 0
        deadline = time.monotonic() + TIME_LIMIT_MS / 1000 + 1.5
        while time.monotonic() < deadline:
            peak = max([peak, *_spool_sizes(server)])
            time.sleep(0.1)
        assert 0 < peak < SPOOL_BYTES + 24 * 1024 * 1024, peak
        assert CLIENT.get(f"{server.url}/api/query/{run_id}").json()["state"] == "running"
        lines = received.count(b"\n") + sum(chunk.count(b"\n") for chunk in chunks)
    assert lines == 1_000_001
    assert CLIENT.get(f"{server.url}/api/query/{run_id}").json()["state"] == "finished"


def test_one_account_has_a_limited_number_of_exports_at_once(server):
    with CLIENT.stream(
        "GET", server.url + "/api/query/export", params={"sql": BIG_EXPORT, "format": "csv"}
    ) as first:
        assert first.status_code == 200
        body = first.iter_bytes(64 * 1024)  # kept: dropping it would close the download
        next(body)
        second = CLIENT.get(
            server.url + "/api/query/export", params={"sql": "SELECT 1", "format": "csv"}
        )
        error = error_of(second, 429)
        assert error["code"] == "too_many_exports"
        assert int(second.headers["retry-after"]) > 0
        del body
    # The first one's download is over: its slot is free again.
    deadline = time.monotonic() + 5
    while True:
        again = CLIENT.get(
            server.url + "/api/query/export", params={"sql": "SELECT 1 AS one", "format": "csv"}
        )
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert again.status_code == 200 and again.text.splitlines() == ["one", "1"]


def test_the_pool_hands_out_the_worker_that_answered_last(tmp_path):
    """Last in, first out: a run after another gets the warm worker, not the one idle longest
    (a point lookup ~0.3 ms sooner, docs/benchmarks.md); a worker that died is still replaced."""
    data = make_workspace(tmp_path)
    settings = load_settings(data_dir=str(data))
    config = PoolConfig(name="test", size=2, threads=1, memory_limit="128MB", exports=False)
    pool = Pool(settings, config)
    pool.start()
    try:
        first, second = pool.try_acquire(), pool.try_acquire()
        assert first is not None and second is not None and pool.try_acquire() is None
        pool.release(first)
        pool.release(second)
        assert pool.try_acquire() is second
        second.kill()
        pool.release(second)
        assert pool.try_acquire() is first
        pool.release(first)
        deadline = time.monotonic() + 30
        while pool.counts() != (2, 2):
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.05)
        assert second.pid not in pool.pids()
    finally:
        pool.close()


def _workers_of(server: ServerProcess) -> dict[int, dict]:
    """The worker processes under a backend, by pid, with the configuration each was given."""
    assert server.proc is not None
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except OSError:
                continue

    def under_server(pid: int) -> bool:
        while pid in parents:
            pid = parents[pid]
            if pid == server.proc.pid:
                return True
        return False

    found = {}
    for pid in parents:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"myapp.backend.store.usersql.worker" in argv and under_server(pid):
            found[pid] = json.loads(argv[argv.index(b"myapp.backend.store.usersql.worker") + 1])
    return found


def _nice_of_threads(pid: int) -> set[int]:
    return {
        int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
        for task in Path(f"/proc/{pid}/task").iterdir()
    }


def test_export_workers_use_every_core_at_a_lower_priority(server):
    """An export's DuckDB has a thread per core (an export alone on the machine runs as fast as
    DuckDB's own COPY), and every thread of an export worker, DuckDB's included, runs at nice
    MYAPP_EXPORT_WORKER_NICE, so that pages and queries get a core the moment they want one;
    query workers keep the backend's priority."""
    answer = CLIENT.get(
        server.url + "/api/query/export", params={"sql": "SELECT 1 AS one", "format": "csv"}
    )
    assert answer.status_code == 200 and answer.text.splitlines() == ["one", "1"]
    workers = _workers_of(server)
    exporting = {pid: c for pid, c in workers.items() if len(c["allowed_dirs"]) > 1}
    querying = {pid: c for pid, c in workers.items() if pid not in exporting}
    assert exporting and querying, workers
    backend_nice = os.getpriority(os.PRIO_PROCESS, server.proc.pid)
    for pid, config in exporting.items():
        assert config["threads"] == os.cpu_count()
        # DuckDB's own threads are among them: a worker with more than one has them running.
        assert len(list(Path(f"/proc/{pid}/task").iterdir())) >= config["threads"]
        assert _nice_of_threads(pid) == {min(19, backend_nice + 10)}, pid
    for pid in querying:
        assert _nice_of_threads(pid) == {backend_nice}, pid
