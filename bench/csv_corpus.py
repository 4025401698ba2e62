"""Upload every file of a folder of real-world CSVs and compare each with plain DuckDB.

    python bench/csv_corpus.py DIR [--out results.json] [--limit N]

For each file (any name; `.gz` too), plain DuckDB in a child process (`SELECT * FROM
read_csv(file)`, its column names and `count(*)`) is the reference; then the file is uploaded
to a real backend (`POST /api/datasets`, multipart, as the upload page sends it). Each file
lands in one class:

- exact: DuckDB reads it and myapp loads DuckDB's rows and columns;
- rejects on top: DuckDB's rows are myapp's loaded plus reported rejects;
- other shape: myapp's table differs from DuckDB's (its reading deliberately overrides DuckDB's
  one-text-column fallback, or a path DuckDB reads as hive partitions…); listed file by file;
- refused, DuckDB reads: a 4xx for a file DuckDB reads (empty files, zstd archives…);
- refused / loaded, DuckDB refuses: a 4xx, or a load with its rejects reported;
- failure: a 5xx, no answer, an answer slower than 30 s, a memory refusal, or a dead backend.

DuckDB's corpus of test files (`data/csv` in its repository) is a good folder to point it at.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from common import free_port, wait_ready

SLOW_S = 30.0

REFERENCE = """
import json, sys, duckdb
path = sys.argv[1]
try:
    con = duckdb.connect()
    # An upload has no path: no hive partition columns from the folder names.
    args = "$p, hive_partitioning = false"
    result = con.execute(f"SELECT * FROM read_csv({args}) LIMIT 0", {"p": path})
    names = [d[0] for d in result.description]
    rows = con.execute(f"SELECT count(*) FROM read_csv({args})", {"p": path}).fetchone()[0]
    print(json.dumps({"rows": rows, "cols": len(names)}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__ + ": " + str(exc).splitlines()[0][:200]}))
"""


def reference(path: Path) -> dict:
    try:
        out = subprocess.run(
            [sys.executable, "-c", REFERENCE, str(path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, IndexError, json.JSONDecodeError) as exc:
        return {"error": f"reference failed: {exc}"}


def classify(ref: dict, status: int, secs: float, body: dict) -> str:
    if status < 0 or status >= 500 or secs > SLOW_S or "allocate" in json.dumps(body):
        return "failure"
    if "error" in ref:
        return "loaded, DuckDB refuses" if status == 201 else "refused, DuckDB refuses"
    if status != 201:
        return "refused, DuckDB reads"
    rows, rejected = body["rows_loaded"], body["rows_rejected"]
    cols = len(body["dataset"]["columns"])
    if rows == ref["rows"] and cols == ref["cols"]:
        return "exact"
    if cols == ref["cols"] and rows + rejected == ref["rows"]:
        return "rejects on top"
    return "other shape"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, help="Write every file's result here as JSON")
    parser.add_argument("--limit", type=int, help="Only the first N files")
    args = parser.parse_args()
    files = sorted(p for p in args.folder.rglob("*") if p.is_file() and not p.is_symlink())
    files = files[: args.limit] if args.limit else files
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        refs = list(pool.map(reference, files))

    work = Path(tempfile.mkdtemp(prefix="myapp-csv-corpus-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")}
    env["MYAPP_DATA_DIR"] = str(work / "data")
    log = work / "backend.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "myapp", "serve", "--role", "backend", "--port", str(port)],
            cwd=work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    results = []
    try:
        wait_ready(url + "/api/health", proc, log)
        with httpx.Client(base_url=url, timeout=SLOW_S * 4) as client:
            for number, (path, ref) in enumerate(zip(files, refs, strict=True)):
                began = time.monotonic()
                try:
                    with path.open("rb") as handle:
                        response = client.post(
                            "/api/datasets",
                            files={"file": (path.name, handle)},
                            data={"name": f"corpus_{number:05d}"},
                        )
                    status = response.status_code
                    kind = response.headers.get("content-type", "")
                    body = response.json() if "json" in kind else {}
                except httpx.HTTPError as exc:
                    status, body = -1, {"transport": str(exc)}
                secs = time.monotonic() - began
                kind = classify(ref, status, secs, body)
                if proc.poll() is not None:
                    kind = "failure"
                row = {
                    "file": str(path.relative_to(args.folder)),
                    "class": kind,
                    "duckdb": ref,
                    "status": status,
                    "seconds": round(secs, 3),
                }
                if status == 201:
                    row.update(
                        rows=body["rows_loaded"],
                        rejected=body["rows_rejected"],
                        cols=len(body["dataset"]["columns"]),
                    )
                else:
                    row["error"] = (body.get("error") or body).get("code", body)
                results.append(row)
                if proc.poll() is not None:
                    break
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)

    counts = collections.Counter(r["class"] for r in results)
    reads = sum(v for k, v in counts.items() if "DuckDB refuses" not in k)
    print(f"{len(results)} files in {time.monotonic() - started:.0f} s; DuckDB reads {reads}")
    print("\n| class | files | share of the files DuckDB reads |\n|---|---|---|")
    for kind in (
        "exact",
        "rejects on top",
        "other shape",
        "refused, DuckDB reads",
        "loaded, DuckDB refuses",
        "refused, DuckDB refuses",
        "failure",
    ):
        share = f"{100 * counts[kind] / reads:.1f}%" if reads and "refuses" not in kind else "-"
        print(f"| {kind} | {counts[kind]} | {share} |")
    slowest = max(results, key=lambda r: r["seconds"], default=None)
    if slowest:
        print(f"\nslowest answer: {slowest['seconds']:.2f} s ({slowest['file']})")
    for row in results:
        if row["class"] in ("other shape", "refused, DuckDB reads", "failure"):
            ours = (
                f"{row['rows']} rows + {row['rejected']} rejects x {row['cols']} columns"
                if row["status"] == 201
                else f"{row['status']} {row['error']}"
            )
            ref = row["duckdb"]
            print(f"- {row['class']}: {row['file']}: DuckDB {ref['rows']} x {ref['cols']}; {ours}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
