"""kill -9 the backend at random points of uploads, appends, replaces, queries and exports.

One data dir lives through all the rounds. Each round starts one operation, kills the backend
with SIGKILL at a point chosen for the round (while the body is still arriving, while DuckDB
loads, right after the answer, at a random moment), starts it again on the same data dir and
checks through the API what a user would check: the database opens, every acknowledged upload
is there with its rows, an unacknowledged one is either wholly there or wholly absent, nothing
else appeared, the catalog, the listing and SQL agree, and no stray files are left.

Every row carries the number of the round that uploaded it, so a dataset's content tells which
uploads it holds; a partly applied upload would show as a round with too few rows.

The rounds are random but seeded (CRASH_SEED=… to vary); timings still vary with the machine's
load, so a failure names the round, the operation and where the kill fell.
"""

from __future__ import annotations

import gzip
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import httpx

from myapp.settings import Settings, load_settings
from tests.support.servers import ServerProcess

SEED = int(os.environ.get("CRASH_SEED", "7"))
ROUNDS = 20
NAMES = ("crash_a", "crash_b", "crash_c", "crash_d")

# Small enough that 20 rounds stay well under a minute, big enough that a load or an export
# takes long enough (tenths of a second) to be hit by a kill.
MIN_ROWS, MAX_ROWS = 3_000, 200_000

SEND_CHUNK = 64 * 1024

# How each round ends; the upload modes are spread over create, replace and append.
KILL_MODES = (
    ["while-sending"] * 5
    + ["while-loading"] * 5
    + ["after-answer"] * 3
    + ["random-moment"] * 3
    + ["during-query"] * 2
    + ["during-export"] * 2
)
assert len(KILL_MODES) == ROUNDS

# Kill only gunicorn's worker (what the kernel's OOM killer picks) in this share of the rounds:
# the master starts a new worker by itself. The other rounds kill the whole process group.
WORKER_ONLY_SHARE = 0.5


# -- what must not be on disk after a restart -----------------------------------------------


def _files_under(directory: Path) -> Iterator[Path]:
    if directory.is_dir():
        yield from (p for p in directory.rglob("*") if p.is_file() or p.is_symlink())


def _staging_and_exports(settings: Settings, datasets: Collection[str]) -> Iterator[Path]:
    """Uploads being received and exports being written never survive their process."""
    yield from _files_under(settings.staging_dir)
    yield from _files_under(settings.export_dir)


def _dataset_files_of_no_dataset(settings: Settings, datasets: Collection[str]) -> Iterator[Path]:
    """Every dataset has exactly one data file (store/storage.py), closed and checkpointed:
    more files than datasets are a load a crash cut short, a `.wal` a file left unfinished.
    The API does not name the files, so the count is what can be checked from outside."""
    files = sorted(_files_under(settings.datasets_dir))
    unfinished = [p for p in files if not p.name.endswith(".duckdb")]
    yield from unfinished
    finished = [p for p in files if p.name.endswith(".duckdb")]
    if len(finished) != len(datasets):
        yield from finished


def _side_instance_spills(settings: Settings, datasets: Collection[str]) -> Iterator[Path]:
    """Loads' and exports' own spill directories go with their instance."""
    for spill in settings.spill_dir.glob("side-*"):
        yield from _files_under(spill) if any(_files_under(spill)) else [spill]


# One function per kind of stray file, each given the data dir's settings and the names of the
# datasets the API lists (for checks that a file belongs to one of them).
STRAY_CHECKS: tuple[Callable[[Settings, Collection[str]], Iterator[Path]], ...] = (
    _staging_and_exports,
    _dataset_files_of_no_dataset,
    _side_instance_spills,
)


def leftover_files(data_dir: Path, datasets: Collection[str] = ()) -> list[str]:
    """Files in `data_dir` that should not be there after a restart, relative to it."""
    settings = load_settings(data_dir=data_dir)
    strays = {path for check in STRAY_CHECKS for path in check(settings, datasets)}
    return sorted(str(path.relative_to(data_dir)) for path in strays)


# -- the data and what the datasets may hold --------------------------------------------------

Composition = tuple[int, ...]  # the rounds whose rows a dataset holds, in upload order


def csv_rows(round_no: int, rows: int) -> bytes:
    lines = [f"{round_no},{i},r{round_no}x{i * 7919 % 100_003:x}" for i in range(rows)]
    return ("batch,i,s\n" + "\n".join(lines) + "\n").encode()


def multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[str, bytes]:
    boundary = "crash" + os.urandom(8).hex()
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
    )
    body = b"".join(parts) + data + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


@dataclass
class Model:
    """What each dataset may hold: one composition once known, several after a kill."""

    rows_of_round: dict[int, int] = field(default_factory=dict)
    # name -> possible compositions; None means the dataset does not exist.
    possible: dict[str, set[Composition | None]] = field(
        default_factory=lambda: {name: {None} for name in NAMES}
    )

    def known(self, name: str) -> Composition | None:
        (state,) = self.possible[name]
        return state

    def apply(self, name: str, mode: str, round_no: int, acknowledged: bool) -> None:
        old = self.known(name)
        new = (round_no,) if mode in ("create", "replace") else (*(old or ()), round_no)
        self.possible[name] = {new} if acknowledged else {old, new}

    def rows(self, state: Composition) -> dict[int, int]:
        return {r: self.rows_of_round[r] for r in state}


# -- the backend and its log -------------------------------------------------------------------


def worker_pid(server: ServerProcess) -> int:
    assert server.proc is not None
    master = server.proc.pid
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, f"expected one gunicorn worker, found {children}"
    return int(children[0])


def log_since(server: ServerProcess, offset: int) -> str:
    with server.log_path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")


def log_size(server: ServerProcess) -> int:
    return server.log_path.stat().st_size if server.log_path.exists() else 0


def wait_for(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


class Request(threading.Thread):
    """One HTTP request on its own thread, so the test can kill the server under it.

    With `pause_at`, the body stops after that many bytes until `resume` is set: the kill then
    falls while the server is still receiving.
    """

    def __init__(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        json: dict | None = None,
        pause_at: int | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.method, self.url, self.body = method, url, body
        self.headers, self.params, self.json = headers or {}, params, json
        self.pause_at = pause_at
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.response: httpx.Response | None = None
        self.error: Exception | None = None

    def chunks(self) -> Iterator[bytes]:
        assert self.body is not None
        cut = self.pause_at if self.pause_at is not None else 0
        for start in range(0, cut, SEND_CHUNK):
            yield self.body[start : min(start + SEND_CHUNK, cut)]
        if self.pause_at is not None:
            self.paused.set()
            self.resume.wait(30)
        for start in range(cut, len(self.body), SEND_CHUNK):
            yield self.body[start : start + SEND_CHUNK]

    def run(self) -> None:
        headers = dict(self.headers)
        content = None
        if self.body is not None:
            headers["Content-Length"] = str(len(self.body))
            content = self.chunks()
        try:
            with httpx.Client(timeout=60) as client:
                self.response = client.request(
                    self.method,
                    self.url,
                    content=content,
                    headers=headers,
                    params=self.params,
                    json=self.json,
                )
        except httpx.HTTPError as exc:
            self.error = exc

    @property
    def acknowledged(self) -> bool:
        return self.response is not None and self.response.status_code == 201


# -- checking a restarted backend --------------------------------------------------------------


def query(client: httpx.Client, sql: str) -> list[list]:
    response = client.post("/api/query", json={"sql": sql})
    assert response.status_code == 200, response.text
    return response.json()["rows"]


def observe(client: httpx.Client, model: Model) -> dict[str, Composition | None]:
    """Read every dataset through the API and say which uploads each holds."""
    listing = client.get("/api/datasets")
    assert listing.status_code == 200, listing.text
    listed = {d["name"]: d for d in listing.json()["datasets"]}
    unknown = set(listed) - set(NAMES)
    assert not unknown, f"datasets nobody created are visible: {sorted(unknown)}"
    seen: dict[str, Composition | None] = {}
    for name in NAMES:
        if name not in listed:
            assert client.get(f"/api/datasets/{name}").status_code == 404
            seen[name] = None
            continue
        one = client.get(f"/api/datasets/{name}")
        assert one.status_code == 200, one.text
        catalog_rows = one.json()["row_count"]
        assert listed[name]["row_count"] == catalog_rows
        ((sql_rows,),) = query(client, f'SELECT count(*) FROM "{name}"')
        assert sql_rows == catalog_rows, f"{name}: SQL counts {sql_rows}, catalog {catalog_rows}"
        per_round = dict(
            query(client, f'SELECT batch, count(*) FROM "{name}" GROUP BY batch ORDER BY batch')
        )
        # Appends keep their order in the composition; the counts cannot, so match by content.
        matches = [
            state
            for state in model.possible[name]
            if state is not None and model.rows(state) == per_round
        ]
        assert matches, (
            f"{name} holds rows of rounds {per_round}, which is none of the states it may be "
            f"in: {[model.rows(s) if s else None for s in model.possible[name]]}"
        )
        seen[name] = matches[0]
    for name, state in seen.items():
        assert state in model.possible[name], (
            f"{name} is {'absent' if state is None else state}, expected one of "
            f"{model.possible[name]}"
        )
    return seen


# -- the rounds ------------------------------------------------------------------------------


@dataclass
class Round:
    number: int
    kill_mode: str
    operation: str = ""
    name: str = ""
    rows: int = 0
    via: str = ""
    target: str = "group"
    phase: str = ""
    strays_after_kill: int = 0
    # For an upload the kill cut short: whether the restarted backend shows it.
    outcome: str = ""
    seconds: float = 0.0


def plan(rng: random.Random) -> list[Round]:
    modes = list(KILL_MODES)
    rng.shuffle(modes)
    # The first upload must stay (no operation deletes), so queries always have a dataset.
    modes.insert(0, modes.pop(modes.index("after-answer")))
    return [
        Round(
            number=i + 1,
            kill_mode=mode,
            target="worker" if rng.random() < WORKER_ONLY_SHARE else "group",
        )
        for i, mode in enumerate(modes)
    ]


def upload_phase(log: str, name: str, acknowledged: bool) -> str:
    if acknowledged:
        return "after the 201"
    if re.search(rf"dataset {name} (created|replaced|appended)", log):
        return "committed, before the 201"
    if "upload received" in log:
        return "while DuckDB loads"
    return "while the body arrives"


def run_upload(
    server: ServerProcess, rng: random.Random, model: Model, rnd: Round, log_offset: int
) -> Request:
    present = [n for n in NAMES if model.known(n) is not None]
    absent = [n for n in NAMES if model.known(n) is None]
    weights = {"create": 3 if absent else 0, "replace": 3 if present else 0}
    weights["append"] = 5 if present else 0
    rnd.operation = rng.choices(list(weights), weights=list(weights.values()))[0]
    rnd.name = rng.choice(absent if rnd.operation == "create" else present)
    rnd.rows = int(MIN_ROWS * (MAX_ROWS / MIN_ROWS) ** rng.random())
    model.rows_of_round[rnd.number] = rnd.rows
    data = csv_rows(rnd.number, rnd.rows)
    filename = f"round{rnd.number}.csv"
    if rng.random() < 0.25:
        data, filename = gzip.compress(data, compresslevel=1), filename + ".gz"
    rnd.via = rng.choice(["PUT", "POST"])
    pause_at = int(len(data) * rng.uniform(0.1, 0.9)) if rnd.kill_mode == "while-sending" else None
    if rnd.via == "PUT":
        request = Request(
            "PUT",
            f"{server.url}/api/datasets/{rnd.name}",
            body=data,
            params={"mode": rnd.operation, "filename": filename},
            headers={"Content-Type": "application/octet-stream"},
            pause_at=pause_at,
        )
    else:
        content_type, body = multipart({"name": rnd.name, "mode": rnd.operation}, filename, data)
        request = Request(
            "POST",
            f"{server.url}/api/datasets",
            body=body,
            headers={"Content-Type": content_type},
            pause_at=pause_at,
        )
    staging = load_settings(data_dir=server.data_dir).staging_dir
    request.start()
    if rnd.kill_mode == "while-sending":
        assert request.paused.wait(30), "the upload never reached its pause"
        # The server has the first part: its staging file exists.
        assert wait_for(lambda: any(_files_under(staging)), 10), "no staging file appeared"
    elif rnd.kill_mode == "while-loading":
        wait_for(lambda: "upload received" in log_since(server, log_offset), 30)
        time.sleep(rng.uniform(0, 0.25))
    elif rnd.kill_mode == "after-answer":
        request.join(60)
    else:
        time.sleep(rng.uniform(0, 0.6))
    return request


def run_read(server: ServerProcess, rng: random.Random, model: Model, rnd: Round) -> Request:
    present = [n for n in NAMES if model.known(n) is not None]
    rnd.name = rng.choice(present)
    # A self-join with few distinct keys makes the work long (seconds on the bigger datasets),
    # so the kill lands in it.
    joined = (
        f'SELECT a.batch, a.i, b.s FROM "{rnd.name}" a JOIN "{rnd.name}" b ON a.i % 50 = b.i % 50'
    )
    if rnd.kill_mode == "during-query":
        rnd.operation = "query"
        request = Request(
            "POST",
            f"{server.url}/api/query",
            json={"sql": f"SELECT count(*), max(s) FROM ({joined})"},
        )
    else:
        rnd.operation = "export"
        request = Request(
            "GET",
            f"{server.url}/api/query/export",
            params={"sql": f"{joined} LIMIT 5000000", "format": rng.choice(["csv", "parquet"])},
        )
    request.start()
    time.sleep(rng.uniform(0.05, 0.4))
    return request


def kill(server: ServerProcess, target: str) -> None:
    if target == "worker":
        os.kill(worker_pid(server), signal.SIGKILL)
    else:
        server.kill()


def restart(server: ServerProcess, target: str, old_worker: int | None) -> None:
    if target == "worker":
        # gunicorn's master notices the dead worker and starts another on its own.
        assert server.proc is not None and server.proc.poll() is None, "the master died too"
        assert wait_for(
            lambda: (pid := _worker_or_none(server)) is not None and pid != old_worker, 20, 0.02
        )
        server.wait_healthy()
    else:
        server.start()


def _worker_or_none(server: ServerProcess) -> int | None:
    try:
        return worker_pid(server)
    except (AssertionError, OSError, ValueError):
        return None


def test_kill_9_at_random_points_loses_nothing_acknowledged(start_server, tmp_path):
    rng = random.Random(SEED)
    server = start_server("backend", workdir=tmp_path)
    model = Model()
    rounds = plan(rng)
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for rnd in rounds:
            began = time.monotonic()
            where = f"round {rnd.number} (seed {SEED}, kill {rnd.kill_mode}, {rnd.target})"
            offset = log_size(server)
            old_worker = worker_pid(server)
            if rnd.kill_mode.startswith("during"):
                request = run_read(server, rng, model, rnd)
            else:
                request = run_upload(server, rng, model, rnd, offset)
            kill(server, rnd.target)
            # Staging and export files right after the kill (dataset files are counted after
            # the restart, against the datasets then listed).
            rnd.strays_after_kill = len(
                list(_staging_and_exports(load_settings(data_dir=server.data_dir), ()))
            )
            request.resume.set()
            request.join(60)
            assert not request.is_alive(), f"{where}: the client hung after the kill"
            if request.response is not None:
                # An answer that arrived before the kill is a real one, never an error.
                assert request.response.status_code in (200, 201), (
                    f"{where}: {request.response.status_code} {request.response.text[:300]}"
                )
            if rnd.operation in ("create", "replace", "append"):
                model.apply(rnd.name, rnd.operation, rnd.number, request.acknowledged)
                rnd.phase = upload_phase(log_since(server, offset), rnd.name, request.acknowledged)
            else:
                rnd.phase = "answered" if request.response is not None else "while running"

            restart(server, rnd.target, old_worker)
            health = client.get("/api/health")
            assert health.status_code == 200, f"{where}: {health.text}"
            try:
                seen = observe(client, model)
            except AssertionError as exc:
                raise AssertionError(f"{where}, {rnd.operation} {rnd.name}: {exc}") from None
            names = [n for n, state in seen.items() if state is not None]
            assert leftover_files(server.data_dir, names) == [], where
            if rnd.phase not in ("after the 201", "answered", "while running"):
                applied = seen[rnd.name] is not None and rnd.number in seen[rnd.name]
                rnd.outcome = "applied" if applied else "not applied"
                if applied:
                    # Killed between the commit and its log line: the log cannot tell.
                    rnd.phase = "committed, before the 201"
            model.possible = {name: {state} for name, state in seen.items()}
            rnd.seconds = time.monotonic() - began

        # A clean upload afterwards works, and clears what the crashed loads left in DuckDB.
        final = client.put("/api/datasets/crash_final", content=csv_rows(0, 10))
        assert final.status_code == 201, final.text
    assert server.stop() == 0
    # Whether a dataset is a table or a view of a file of its own, `main` names nothing else.
    with duckdb.connect(str(server.data_dir / "app.db"), read_only=True) as conn:
        relations = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                "UNION SELECT view_name FROM duckdb_views() "
                "WHERE schema_name = 'main' AND NOT internal"
            ).fetchall()
        }
    expected = {n for n, state in model.possible.items() if state != {None}} | {"crash_final"}
    assert relations == expected

    _report(rounds, time.monotonic() - started)
    kinds = Counter(r.operation for r in rounds)
    assert {"create", "replace", "append", "query", "export"} <= set(kinds), kinds
    # The synchronised kill mode always lands where it aims.
    assert all(
        r.phase == "while the body arrives" for r in rounds if r.kill_mode == "while-sending"
    )


def _report(rounds: list[Round], total_s: float) -> None:
    print(f"\nseed {SEED}: {len(rounds)} rounds in {total_s:.1f} s")
    for r in rounds:
        print(
            f"  {r.number:2d} {r.operation:8s} {r.name:8s} {r.rows:7d} rows {r.via:4s} "
            f"kill {r.kill_mode:14s} {r.target:6s} -> {r.phase:28s} "
            f"{r.outcome:11s} strays {r.strays_after_kill}  {r.seconds:.1f} s"
        )
    print("  phases hit:", dict(Counter(r.phase for r in rounds)))
