"""Ingest benchmark: uploading through the API versus DuckDB's own read_csv, the backend's
memory during a 1 GB upload, and an Excel workbook (about 50 MB) through the API next to the
same rows as CSV.

    python bench/ingest.py [--rows 5000000] [--memory-gb 1.0] [--runs 3] [--skip-memory]
                           [--xlsx-rows 1000000] [--skip-xlsx] [--only-xlsx]
                           [--before-tree PATH] [--json PATH]

Files are generated with DuckDB in bench/.work/ (git-ignored) and reused on later runs. The
backend is a real `myapp serve --role backend` subprocess on a free loopback port; uploads are
raw-body PUTs streamed from disk, as the CLI and the upload page send them.

Targets: the API reaches at least 0.7x DuckDB's throughput on the same file; the backend's
peak resident memory during a 1 GB upload stays under 300 MB above its idle level (sampled
from /proc/<worker pid>/status, VmRSS). Numbers depend on the machine and its load: the load
average is printed with the results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import httpx
from common import free_port, rss_mb

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work"
CHUNK_BYTES = 1024 * 1024
RSS_SAMPLE_S = 0.02

THROUGHPUT_TARGET = 0.7
MEMORY_TARGET_MB = 300


def generate_csv(path: Path, rows: int) -> None:
    if path.exists():
        return
    print(f"generating {path.name} ({rows:,} rows) …", flush=True)
    tmp = path.with_suffix(".tmp")
    # A mix of the column types real exports have: ids, text, decimals, dates, categories.
    duckdb.execute(
        f"""COPY (
            SELECT i AS id,
                   'customer_' || (i % 100000) AS customer,
                   round(random() * 1000, 2) AS amount,
                   DATE '2020-01-01' + CAST(i % 1500 AS INTEGER) AS day,
                   ['red', 'green', 'blue'][1 + CAST(i % 3 AS INTEGER)] AS colour,
                   md5(CAST(i AS VARCHAR)) AS note
            FROM range({int(rows)}) t(i)
        ) TO '{tmp}' (FORMAT csv, HEADER true)"""
    )
    tmp.rename(path)


def rows_for_bytes(target_bytes: float) -> int:
    # The generated rows average about 78 bytes.
    return int(target_bytes / 78.4)


def duckdb_alone(csv: Path) -> float:
    db = WORK / "duckdb-alone.db"
    for suffix in ("", ".wal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    started = time.perf_counter()
    with duckdb.connect(str(db)) as conn:
        conn.execute("CREATE TABLE t AS SELECT * FROM read_csv($p)", {"p": str(csv)})
        rows = conn.execute("SELECT count(*) FROM t").fetchone()[0]
    elapsed = time.perf_counter() - started
    db.unlink(missing_ok=True)
    assert rows > 0
    return elapsed


class Backend:
    def __init__(self, name: str, env_extra: dict[str, str] | None = None) -> None:
        self.dir = WORK / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")}
        env["MYAPP_DATA_DIR"] = str(self.dir / "data")
        env["MYAPP_LOG_LEVEL"] = "info"
        env.update(env_extra or {})
        self.log = (self.dir / "backend.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "myapp", "serve", "--role", "backend", "--port", str(self.port)],
            cwd=self.dir,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the backend did not start; see " + str(self.dir / "backend.log"))

    def worker_pid(self) -> int:
        """Gunicorn's one worker process: the child of the master we started."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        pids = [int(p) for p in children.split()]
        if len(pids) != 1:
            raise RuntimeError(f"expected one backend worker, found {pids}")
        return pids[0]

    def phase_lines(self) -> list[str]:
        """The backend's own account of each upload: receive, load and swap times."""
        self.log.flush()
        text = (self.dir / "backend.log").read_text(errors="replace")
        keep = ("upload received", "rows loaded")
        return [
            line.split(": ", 1)[-1] for line in text.splitlines() if any(k in line for k in keep)
        ]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def upload(port: int, csv: Path, name: str, sent: threading.Event | None = None) -> float:
    """PUT the file as the raw body; returns the seconds until the backend's answer.

    The request is written by hand and the body sent with sendfile(2): on a shared 2-core
    machine a Python HTTP client would take CPU from the backend being measured, and in real
    use the client runs elsewhere.
    """
    size = csv.stat().st_size
    head = (
        f"PUT /api/datasets/{name}?filename={csv.name}&mode=replace HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock, csv.open("rb") as body:
        sock.sendall(head)
        sock.sendfile(body)
        if sent is not None:
            sent.set()
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    elapsed = time.perf_counter() - started
    status = answer.split(b" ", 2)[1]
    if status != b"201":
        raise RuntimeError(f"upload failed: {answer[:500]!r}")
    return elapsed


def generate_xlsx(path: Path, rows: int) -> None:
    """A workbook of `rows` rows and 8 typed columns (about 50 MB at 1M rows), and beside it
    the same rows as CSV (`path` with .csv)."""
    if path.exists() and path.with_suffix(".csv").exists():
        return
    import datetime as dt

    import xlsxwriter

    print(f"generating {path.name} ({rows:,} rows) …", flush=True)
    tmp = path.with_suffix(".tmp.xlsx")
    book = xlsxwriter.Workbook(str(tmp), {"constant_memory": True})
    sheet = book.add_worksheet("data")
    date_format = book.add_format({"num_format": "yyyy-mm-dd"})
    header = ["id", "customer", "amount", "day", "paid", "note", "region", "code"]
    sheet.write_row(0, 0, header)
    base = dt.date(2020, 1, 1)
    regions = ("north", "south", "east", "west")
    with path.with_suffix(".tmp.csv").open("w") as csv:
        csv.write(",".join(header) + "\n")
        for i in range(rows):
            amount = (i * 7919 % 100000) / 100
            day = base + dt.timedelta(days=i % 1500)
            paid = i % 3 == 0
            note = f"note {i * 31 % 9973}"
            region = regions[i % 4]
            code = f"C{i * 13 % 1000003:07d}"
            sheet.write_number(i + 1, 0, i)
            sheet.write_string(i + 1, 1, f"customer_{i % 100000}")
            sheet.write_number(i + 1, 2, amount)
            sheet.write_datetime(i + 1, 3, day, date_format)
            sheet.write_boolean(i + 1, 4, paid)
            sheet.write_string(i + 1, 5, note)
            sheet.write_string(i + 1, 6, region)
            sheet.write_string(i + 1, 7, code)
            csv.write(
                f"{i},customer_{i % 100000},{amount},{day},{str(paid).lower()},{note},"
                f"{region},{code}\n"
            )
    book.close()
    tmp.rename(path)
    path.with_suffix(".tmp.csv").rename(path.with_suffix(".csv"))


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (a workbook's reader, the query workers), whichever of its
    threads started them."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                kids = [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def measure_upload(path: Path, name: str, tree: Path | None = None) -> dict[str, float]:
    """One upload to a fresh backend (running the code in `tree` if given): seconds, the
    worker's peak RSS above idle, and the largest RSS any process it started for this upload
    reached (a workbook's reader)."""
    backend = Backend(f"xlsx-{name}", {"PYTHONPATH": str(tree)} if tree else None)
    try:
        pid = backend.worker_pid()
        time.sleep(1.0)
        idle = rss_mb(pid)
        before = set(descendants(pid))
        peak = idle
        child_peak = 0.0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak, child_peak
            while not done.is_set():
                peak = max(peak, rss_mb(pid))
                for kid in set(descendants(pid)) - before:
                    # It may end between the listing and the read.
                    with contextlib.suppress(OSError, RuntimeError):
                        child_peak = max(child_peak, rss_mb(kid))
                time.sleep(RSS_SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        seconds = upload(backend.port, path, name)
        done.set()
        sampler.join()
    finally:
        backend.stop()
    return {"seconds": seconds, "idle": idle, "peak": peak - idle, "child_peak": child_peak}


def measure_xlsx(rows: int, runs: int, before_tree: Path | None = None) -> dict:
    """The workbook and the same rows as CSV through the API, and DuckDB's read_csv of that CSV
    alone; with `before_tree`, the same uploads to a backend running that tree's code, taking
    turns with this one so both see the same load on the machine."""
    book = WORK / f"ingest-{rows}.xlsx"
    generate_xlsx(book, rows)
    csv = book.with_suffix(".csv")
    out: dict = {"rows": rows, "duckdb_csv_s": []}
    trees = {"": None} if before_tree is None else {"": None, "before_": before_tree}
    results: dict[str, list[dict[str, float]]] = {}
    for _ in range(runs):
        for kind, path in (("xlsx", book), ("csv", csv)):
            for prefix, tree in trees.items():
                key = prefix + kind
                results.setdefault(key, []).append(measure_upload(path, f"{kind}_bench", tree))
        out["duckdb_csv_s"].append(duckdb_alone(csv))
    for key, found in results.items():
        out[key] = {
            "size_mb": (book if key.endswith("xlsx") else csv).stat().st_size / 1e6,
            "seconds": [r["seconds"] for r in found],
            "peak_mb": [r["peak"] for r in found],
            "idle_mb": [r["idle"] for r in found],
            "child_peak_mb": [r["child_peak"] for r in found],
        }
    print()
    print(
        f"The same {rows:,} rows as an Excel workbook and as CSV, through the API (best of {runs})"
    )
    print(
        f"{'file':<34}{'MB':>7}{'seconds':>9}{'MB/s':>7}{'rows/s':>11}"
        f"{'backend peak +MB':>18}{'reader peak MB':>16}"
    )
    labels = [("csv", "csv through the API"), ("xlsx", "xlsx through the API")]
    if before_tree is not None:
        labels = [
            ("before_csv", "csv, before"),
            ("csv", "csv, now"),
            ("before_xlsx", "xlsx, before"),
            ("xlsx", "xlsx, now"),
        ]
    for key, label in labels:
        f = out[key]
        seconds = min(f["seconds"])
        child = max(f["child_peak_mb"])
        print(
            f"{label:<34}{f['size_mb']:>7.1f}{seconds:>9.2f}{f['size_mb'] / seconds:>7.1f}"
            f"{rows / seconds:>11,.0f}{max(f['peak_mb']):>18.0f}"
            f"{(f'{child:.0f}' if child else '-'):>16}"
        )
    seconds = min(out["duckdb_csv_s"])
    size = out["csv"]["size_mb"]
    print(
        f"{'csv, DuckDB read_csv alone':<34}{size:>7.1f}{seconds:>9.2f}{size / seconds:>7.1f}"
        f"{rows / seconds:>11,.0f}{'-':>18}{'-':>16}"
    )
    return out


def measure_memory(csv: Path, memory_limit: str | None) -> dict[str, float]:
    backend = Backend("memory", {"MYAPP_MEMORY_LIMIT": memory_limit} if memory_limit else None)
    try:
        pid = backend.worker_pid()
        time.sleep(1.0)
        idle = rss_mb(pid)
        sent = threading.Event()
        peaks = {"transfer": idle, "load": idle}
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                phase = "load" if sent.is_set() else "transfer"
                peaks[phase] = max(peaks[phase], rss_mb(pid))
                time.sleep(RSS_SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        elapsed = upload(backend.port, csv, "memory_bench", sent)
        done.set()
        sampler.join()
        after = rss_mb(pid)
    finally:
        backend.stop()
    return {
        "idle": idle,
        "transfer": peaks["transfer"] - idle,
        "load": peaks["load"] - idle,
        "peak": max(peaks.values()) - idle,
        "after": after - idle,
        "seconds": elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--memory-gb", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--memory-limit",
        action="append",
        default=None,
        help="MYAPP_MEMORY_LIMIT for the memory run (repeat to compare; default: the default)",
    )
    parser.add_argument("--xlsx-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-xlsx", action="store_true")
    parser.add_argument("--only-xlsx", action="store_true", help="only the workbook figures")
    parser.add_argument(
        "--before-tree",
        type=Path,
        help="also upload the workbook to backends running this source tree (e.g. a checkout "
        "of the previous commit), taking turns, for a before/after table",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    WORK.mkdir(exist_ok=True)
    if args.only_xlsx:
        xlsx = measure_xlsx(args.xlsx_rows, args.runs, args.before_tree)
        if args.json:
            args.json.write_text(json.dumps({"xlsx": xlsx}, indent=1))
        return 0
    csv = WORK / f"ingest-{args.rows}.csv"
    generate_csv(csv, args.rows)
    size_mb = csv.stat().st_size / 1e6
    load_before = os.getloadavg()

    alone: list[float] = []
    api: list[float] = []
    phases: list[str] = []
    for run in range(args.runs):
        # Interleaved, so both paths see the same (shared, changing) load on the machine.
        alone.append(duckdb_alone(csv))
        # A fresh backend (and database file) per run, like DuckDB's fresh database above.
        backend = Backend(f"throughput-{run}")
        try:
            api.append(upload(backend.port, csv, "ingest_bench"))
            phases += backend.phase_lines()
        finally:
            backend.stop()
    best_alone, best_api = min(alone), min(api)
    ratio = best_alone / best_api

    print()
    print(
        f"CSV: {csv.name}, {args.rows:,} rows, {size_mb:.0f} MB; {args.runs} runs each, best shown"
    )
    print(f"{'path':<42}{'seconds':>10}{'MB/s':>10}{'rows/s':>14}")
    for label, seconds in (
        ("DuckDB read_csv → fresh file database", best_alone),
        ("myapp API: PUT /api/datasets/{name}", best_api),
    ):
        print(f"{label:<42}{seconds:>10.2f}{size_mb / seconds:>10.0f}{args.rows / seconds:>14,.0f}")
    print(
        f"{'API / DuckDB throughput':<42}{ratio:>10.2f}x  (target ≥ {THROUGHPUT_TARGET}x: "
        f"{'met' if ratio >= THROUGHPUT_TARGET else 'NOT met'})"
    )
    print(f"  medians: DuckDB {statistics.median(alone):.2f} s, API {statistics.median(api):.2f} s")
    print("  the backend's log of each upload:")
    for line in phases:
        print("    " + line)

    code = 0 if ratio >= THROUGHPUT_TARGET else 1
    figures: dict = {
        "rows": args.rows,
        "size_mb": size_mb,
        "runs": args.runs,
        "duckdb_s": alone,
        "api_s": api,
        "ratio_best": ratio,
        "ratio_median": statistics.median(alone) / statistics.median(api),
        "target_ratio": THROUGHPUT_TARGET,
        "memory": [],
        "target_memory_mb": MEMORY_TARGET_MB,
    }
    if not args.skip_memory:
        big = WORK / f"ingest-{args.memory_gb:g}gb.csv"
        generate_csv(big, rows_for_bytes(args.memory_gb * 1e9))
        for limit in args.memory_limit or [None]:
            memory = measure_memory(big, limit)
            print()
            print(
                f"Backend worker memory during a {big.stat().st_size / 1e9:.2f} GB upload "
                f"(MYAPP_MEMORY_LIMIT={limit or 'default, 4GB'})"
            )
            print(f"{'phase':<42}{'MB above idle':>16}")
            print(f"{'idle RSS (absolute)':<42}{memory['idle']:>16.0f}")
            print(f"{'peak while the body streams to disk':<42}{memory['transfer']:>16.0f}")
            print(f"{'peak while DuckDB loads and swaps':<42}{memory['load']:>16.0f}")
            print(f"{'after the upload':<42}{memory['after']:>16.0f}")
            met = memory["peak"] < MEMORY_TARGET_MB
            print(
                f"{'peak above idle':<42}{memory['peak']:>16.0f}  (target < {MEMORY_TARGET_MB} "
                f"MB: {'met' if met else 'NOT met'}); upload took {memory['seconds']:.1f} s"
            )
            code = code or (0 if met else 1)
            figures["memory"].append(
                {"limit": limit, "size_gb": big.stat().st_size / 1e9, **memory}
            )
    if not args.skip_xlsx:
        figures["xlsx"] = measure_xlsx(args.xlsx_rows, args.runs, args.before_tree)
    load_after = os.getloadavg()
    print()
    print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"on {os.cpu_count()} cores (shared machine: figures are indicative)"
    )
    if args.json:
        figures["load"] = {"before": list(load_before), "after": list(load_after)}
        args.json.write_text(json.dumps(figures, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
