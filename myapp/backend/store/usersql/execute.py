"""Running vetted user SQL in a worker: results as JSON bytes, checks of saved SQL, exports.

The pipeline for every run: the gate (gate.py, in the backend, on the backend's cursor) → a
registered run (runs.py: status, cancel, time limit) → a leased worker (workers.py) that
executes the vetted text and answers with bytes. Whatever the statement does, it does it in
the worker: the backend only forwards bytes, bounded by MYAPP_MAX_RESULT_BYTES.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool

from myapp.settings import Settings

from ...errors import AppError
from ...lake import engine as lake
from ...lake import history
from ..database import Database
from ..exports import ExportFile, ExportFormat, Watch, stream_export
from ..sql import internal
from .callers import CALLER, own_share_busy, worker_share
from .errors import DuckError, sql_error, too_large
from .gate import Vetted, bind_parameters, prepare, prepare_cached
from .runs import Registry, Run, effective_timeout_ms
from .workers import Pool, Worker, WorkerDied, WorkerNotNeeded, Workers


def result_too_large(settings: Settings) -> AppError:
    limit_mb = settings.max_result_bytes / (1024 * 1024)
    return AppError(
        f"The result is larger than {limit_mb:g} MB, the most a query returns here; export it "
        "instead (GET or POST /api/query/export, or the Export button), or select fewer "
        "columns or rows.",
        code="result_too_large",
        status_code=422,
        detail={"max_result_bytes": settings.max_result_bytes},
    )


def _catalog(database: Database) -> dict[str, str]:
    with database.cursor() as cur:
        rows = cur.execute(
            f"SELECT name, file_id FROM {internal('datasets')} WHERE file_id IS NOT NULL"
        ).fetchall()
    return {name: file_id for name, file_id in rows}


def busy(pool: Pool) -> AppError:
    return AppError(
        f"All {pool.config.name} query workers stayed busy for as long as this query may run; "
        "try again in a moment.",
        code="busy",
        status_code=503,
        headers={"Retry-After": "5"},
    )


@contextmanager
def running(
    settings: Settings,
    workers: Workers,
    *,
    run_id: str,
    kind: str,
    owner: str | None,
    timeout_ms: int | None,
) -> Iterator[tuple[Worker, Run]]:
    """A registered run holding a worker of `pool`: killed at its time limit or on cancel;
    its errors as `ended` gives them."""
    pool = workers.interactive
    limit_ms = effective_timeout_ms(settings, timeout_ms)
    caller = CALLER.get()
    admitted = workers.callers.admit(settings, caller)
    held: Callable[[], None] | None = None
    try:
        run = workers.runs.start(run_id, kind=kind, owner=owner, limit_ms=limit_ms)
    except BaseException:
        admitted()
        raise
    try:
        with ended(workers.runs, run, "query") as outcome:
            # Waiting for a worker (and for the caller's own share of them) counts against
            # the time limit, and never lasts longer.
            started = time.monotonic()
            held = workers.callers.hold(
                settings,
                caller,
                worker_share(pool.config.size),
                limit_ms / 1000,
                lambda: run.stop_reason is not None,
            )
            if held is None:
                if run.stop_reason == "timeout":
                    # It never started: the caller's own other runs held its share all along.
                    raise own_share_busy(settings)
                raise run.stopped_error()
            try:
                left_s = max(0.0, limit_ms / 1000 - (time.monotonic() - started))
                worker = pool.acquire(left_s, lambda: run.stop_reason is not None)
            except WorkerNotNeeded:
                if run.stop_reason == "timeout":
                    # It never started: the server is busy, not the query slow.
                    raise busy(pool) from None
                raise run.stopped_error() from None
            if run.stop_reason:
                pool.release(worker)
                raise run.stopped_error()
            try:
                run.use(worker.kill)
                yield worker, run
                run.raise_if_stopped()
                outcome.finished()
            finally:
                run.use(None)
                pool.release(worker)
    finally:
        if held is not None:
            held()
        admitted()


class _Outcome:
    """How a run ended, as the registry records it."""

    def __init__(self) -> None:
        self.state = "failed"

    def finished(self) -> None:
        self.state = "finished"


@contextmanager
def ended(registry: Registry, run: Run, kind: str) -> Iterator[_Outcome]:
    """Records how `run` ended when the block leaves. Errors leave as 4xx: the run's own stop
    (timeout, cancel) wins over whatever the killed worker said; a worker that died otherwise
    ran out of memory (the address-space cap)."""
    outcome = _Outcome()
    try:
        yield outcome
    except WorkerDied:
        if run.stop_reason:
            outcome.state = "timed_out" if run.stop_reason == "timeout" else "cancelled"
            raise run.stopped_error() from None
        raise too_large({"message": f"the {kind} ran out of memory"}) from None
    except AppError as exc:
        if exc.code in ("query_timeout", "query_cancelled"):
            outcome.state = "timed_out" if exc.code == "query_timeout" else "cancelled"
        raise
    finally:
        registry.finish(run, outcome.state)


def _error(exc: DuckError, settings: Settings, run: Run, *, text: str, body: str) -> AppError:
    if run.stop_reason:
        return run.stopped_error()
    if exc.kind == "ResultTooLarge":
        return result_too_large(settings)
    if exc.kind == "XlsxRefused":
        code, message = json.loads(str(exc))
        return AppError(message, code=code, status_code=422)
    return sql_error(exc, text, body=body)


def _catalog_missed(exc: DuckError) -> bool:
    """A dataset changed in a way that did not move the write generation, or was replaced while
    the worker attached it: worth reading the catalog again, once."""
    return exc.kind == "CatalogException" and "does not exist" in str(exc)


def call(
    database: Database,
    settings: Settings,
    worker: Worker,
    run: Run,
    request: dict[str, Any],
    *,
    text: str,
    body: str,
) -> bytes:
    """One request to the run's worker, with the datasets synced first if they changed; DuckDB's
    errors become 4xx with positions in the user's text."""
    for fresh in (False, True):
        generation = database.write_generation
        message = dict(request)
        if lake.MODE.active:
            # The lake mode reads older versions of datasets (lake/history.py).
            with database.cursor() as cur:
                message["sql"] = history.resolve_versions(cur, message["sql"])
        if fresh or worker.catalog_generation != generation:
            message["catalog"] = _catalog(database)
            message["generation"] = generation
        try:
            reply = worker.call(message, run.report)
            if "catalog" in message:
                worker.catalog_generation = generation
            return reply
        except DuckError as exc:
            if "catalog" in message:
                worker.catalog_generation = generation
            if not run.stop_reason and not fresh and _catalog_missed(exc):
                continue
            if lake.MODE.active and lake.unreachable_text(str(exc)):
                # The worker lost the lake's PostgreSQL: a 503 like the backend's own.
                lake.MODE.note_unreachable()
                raise lake.unavailable() from None
            raise _error(exc, settings, run, text=text, body=body) from None
    raise AssertionError("unreachable")


# -- results -------------------------------------------------------------------------------------
def run_select(
    database: Database,
    workers: Workers,
    settings: Settings,
    *,
    sql: str,
    params: Mapping[str, Any] | None,
    limit: int | None,
    timeout_ms: int | None,
    run_id: str,
    owner: str | None,
) -> bytes:
    """Run one vetted SELECT; the response body as JSON bytes, at most `limit` (capped by
    MYAPP_MAX_ROWS) rows and MYAPP_MAX_RESULT_BYTES bytes."""
    cap = settings.max_rows if limit is None else min(limit, settings.max_rows)
    # LIMIT in SQL rather than only in fetching: DuckDB then keeps a top-N instead of sorting
    # everything, and stops scanning early.
    vetted, text = vet(database, workers, sql, tail=f" LIMIT {cap + 1}")
    values = bind_parameters(vetted, params)
    with running(
        settings,
        workers,
        run_id=run_id,
        kind="query",
        owner=owner,
        timeout_ms=timeout_ms,
    ) as (worker, run):
        started = time.perf_counter()
        request = {
            "op": "query",
            "sql": text,
            "params": values,
            "fetch": cap,
            "max_bytes": settings.max_result_bytes,
        }
        result = call(database, settings, worker, run, request, text=text, body=vetted.body)
        elapsed = round((time.perf_counter() - started) * 1000, 1)
    return _result_body(run_id, result, elapsed)


# The longest SQL `run_select_async` checks on the event loop (`split_statement` is Python and
# reads every character); longer statements take the thread.
LOOP_SQL_CHARS = 4000


async def run_select_async(
    database: Database,
    workers: Workers,
    settings: Settings,
    *,
    sql: str,
    params: Mapping[str, Any] | None,
    limit: int | None,
    timeout_ms: int | None,
    run_id: str,
    owner: str | None,
) -> bytes:
    """`run_select` for an async route: the same answers and errors. The run waits for its
    worker on the event loop when one is idle (the gate's check of a new text, which reads
    DuckDB in this process, is the one step on a thread); otherwise `run_select` on a thread.
    A point lookup then costs no thread hops when its text was seen before, the thread pool
    stays free for what must block, and the request waits without holding a thread."""
    cap = settings.max_rows if limit is None else min(limit, settings.max_rows)
    prepared = None
    if len(sql) <= LOOP_SQL_CHARS:
        prepared = prepare_cached(sql, workers.gate, tail=f" LIMIT {cap + 1}")
        if prepared is None:
            # A text the gate has not seen: only the gate (DuckDB's parser, in this process)
            # goes to a thread; the run then waits for its worker here like any other. Under
            # load every extra hand-over between the loop and a thread costs milliseconds.
            prepared = await run_in_threadpool(
                vet, database, workers, sql, tail=f" LIMIT {cap + 1}"
            )
    worker = workers.interactive.try_acquire() if prepared is not None else None
    admitted: Callable[[], None] | None = None
    held: Callable[[], None] | None = None
    if worker is not None:
        # The caller's allowance (callers.py) holds here too: a run that would have to wait
        # for its own share goes the thread path, which waits.
        try:
            admitted = workers.callers.admit(settings, CALLER.get())
        except BaseException:
            workers.interactive.release(worker)
            raise
        held = workers.callers.try_hold(CALLER.get(), worker_share(workers.interactive.config.size))
        if held is None:
            admitted()
            workers.interactive.release(worker)
            worker = None
    if prepared is None or worker is None:
        return await run_in_threadpool(
            run_select,
            database,
            workers,
            settings,
            sql=sql,
            params=params,
            limit=limit,
            timeout_ms=timeout_ms,
            run_id=run_id,
            owner=owner,
        )
    assert admitted is not None and held is not None
    try:
        return await _run_on_loop(
            database, workers, settings, prepared, worker, cap=cap, params=params,
            timeout_ms=timeout_ms, run_id=run_id, owner=owner,
        )  # fmt: skip
    finally:
        held()
        admitted()


async def _run_on_loop(
    database: Database,
    workers: Workers,
    settings: Settings,
    prepared: tuple[Vetted, str],
    worker: Worker,
    *,
    cap: int,
    params: Mapping[str, Any] | None,
    timeout_ms: int | None,
    run_id: str,
    owner: str | None,
) -> bytes:
    pool = workers.interactive
    vetted, text = prepared
    try:
        values = bind_parameters(vetted, params)
        limit_ms = effective_timeout_ms(settings, timeout_ms)
        run = workers.runs.start(run_id, kind="query", owner=owner, limit_ms=limit_ms)
    except BaseException:
        pool.release(worker)
        raise
    request = {
        "op": "query",
        "sql": text,
        "params": values,
        "fetch": cap,
        "max_bytes": settings.max_result_bytes,
    }
    started = time.perf_counter()
    with ended(workers.runs, run, "query") as outcome:
        try:
            run.use(worker.kill)
            result: bytes | bytearray
            try:
                if worker.catalog_generation != database.write_generation:
                    raise _Stale
                result = await worker.acall(request, run.report)
            except (DuckError, _Stale) as exc:
                if isinstance(exc, DuckError) and (run.stop_reason or not _catalog_missed(exc)):
                    raise _error(exc, settings, run, text=text, body=vetted.body) from None
                # The worker needs the catalog, which is read from DuckDB: on a thread.
                worker.catalog_generation = None
                result = await run_in_threadpool(
                    call, database, settings, worker, run, request, text=text, body=vetted.body
                )
            run.raise_if_stopped()
            outcome.finished()
        finally:
            run.use(None)
            pool.release(worker)
    return _result_body(run_id, result, round((time.perf_counter() - started) * 1000, 1))


class _Stale(Exception):
    """The worker's catalog is older than the database's last write."""


def _result_body(run_id: str, result: bytes | bytearray, elapsed: float) -> bytes:
    # The worker's bytes go out as they are: {"id", …the worker's fields…, "elapsed_ms"}.
    return b"".join(
        [
            b'{"id":',
            orjson.dumps(run_id),
            b",",
            memoryview(result)[1:-1],
            b',"elapsed_ms":',
            str(float(elapsed)).encode(),
            b"}",
        ]
    )


def vet(
    database: Database, workers: Workers, sql: str, *, head: str = "SELECT *", tail: str = ""
) -> tuple[Vetted, str]:
    with database.cursor() as cur:
        return prepare(cur, sql, workers.gate, head=head, tail=tail)


def check_sql(
    database: Database,
    workers: Workers,
    settings: Settings,
    sql: str,
    params: Mapping[str, Any] | None = None,
) -> Vetted:
    """Put `sql` through the gate and let DuckDB bind it in a worker, without reading data
    (saving a query checks its SQL). Parameters without a value are bound as NULL."""
    vetted, text = vet(database, workers, sql, tail=" LIMIT 0")
    values = {name: (params or {}).get(name) for name in vetted.parameters}
    with running(settings, workers, run_id=new_id(), kind="check", owner=None, timeout_ms=None) as (
        worker,
        run,
    ):
        request = {"op": "query", "sql": text, "params": values, "fetch": 0}
        call(database, settings, worker, run, request, text=text, body=vetted.body)
    return vetted


def new_id() -> str:
    return str(uuid.uuid4())


# -- exports -------------------------------------------------------------------------------------


def export_select(
    database: Database,
    workers: Workers,
    settings: Settings,
    *,
    sql: str,
    params: Mapping[str, Any] | None,
    fmt: ExportFormat,
    timeout_ms: int | None,
    run_id: str,
    owner: str | None,
) -> ExportFile:
    """The whole result of one vetted SELECT (no row cap), streaming as DuckDB writes it."""
    # COPY cannot go through the syntax-tree check; the same body as a subquery can, and the
    # export wraps it the same way.
    vetted, _ = vet(database, workers, sql)
    values = bind_parameters(vetted, params)
    return export_sql(
        database,
        workers,
        settings,
        select_sql=vetted.body,
        params=values,
        fmt=fmt,
        timeout_ms=timeout_ms,
        run_id=run_id,
        owner=owner,
    )


def export_sql(
    database: Database,
    workers: Workers,
    settings: Settings,
    *,
    select_sql: str,
    params: Mapping[str, Any],
    fmt: ExportFormat,
    timeout_ms: int | None,
    run_id: str,
    owner: str | None,
) -> ExportFile:
    """COPY `select_sql` (vetted, or built by the backend from a dataset's filters) in a bulk
    worker into an export's pipe; the download paces the COPY (exports.py)."""
    release_slot = workers.export_slots.take(settings, owner)
    copy_text = f"COPY (\n{select_sql}\n)"  # as the worker builds it
    try:
        # The worker is leased here, in the request, so a busy server answers 503 before the
        # download starts; the COPY thread gives it back.
        limit_ms = effective_timeout_ms(settings, timeout_ms)
        worker = workers.bulk.acquire(limit_ms / 1000)
    except BaseException:
        release_slot()
        raise
    run_box: list[Run] = []

    def write(target: str, watch: Watch) -> None:
        try:
            with running_on(
                settings, workers, worker, run_id=run_id, owner=owner, timeout_ms=timeout_ms
            ) as run:
                run_box.append(run)
                request = {
                    "op": fmt.worker_op,
                    "sql": select_sql,
                    "params": dict(params),
                    "target": target,
                    "options": fmt.copy_options,
                }
                watch(_RunStopper(run))
                try:
                    call(database, settings, worker, run, request, text=copy_text, body=select_sql)
                finally:
                    watch(None)
        finally:
            workers.bulk.release(worker)

    def stalled(waiting: bool) -> None:
        if run_box:
            run_box[0].pause(waiting)

    try:
        return stream_export(
            settings,
            fmt,
            write,
            directory=worker.export_dir,
            on_stall=stalled,
            on_close=release_slot,
        )
    except BaseException:
        release_slot()
        raise


@contextmanager
def running_on(
    settings: Settings,
    workers: Workers,
    worker: Worker,
    *,
    run_id: str,
    owner: str | None,
    timeout_ms: int | None,
) -> Iterator[Run]:
    """Like `running`, for a worker already leased (an export's)."""
    limit_ms = effective_timeout_ms(settings, timeout_ms)
    run = workers.runs.start(run_id, kind="export", owner=owner, limit_ms=limit_ms)
    with ended(workers.runs, run, "export") as outcome:
        try:
            run.use(worker.kill)
            yield run
            run.raise_if_stopped()
            outcome.finished()
        finally:
            run.use(None)


class _RunStopper:
    def __init__(self, run: Run) -> None:
        self.run = run

    def interrupt(self) -> None:
        self.run.stop("cancel")
