"""Dashboard tiles: what a tile costs when its result is cached, against running its query.

    python bench/dashboards.py [--rows 1000000] [--requests 200] [--json PATH]

A real `myapp serve --role backend` subprocess on a free loopback port holds a dataset of
--rows rows and a dashboard of three tiles (a number, a chart and a table) over it, each an
aggregate of the whole dataset with one shared parameter. For each tile, sequential requests
from one client: `refresh: true` (the query runs every time), then cached (the same values
again: no query runs, only the catalog's dataset versions are read). Last, the number tile's
saved query run on its own, the way its page runs it. Every one of these runs is counted
(store/runlog.py); run the script with PYTHONPATH at an older tree to compare.

Target: a cache hit's p50 under 20 ms per tile. Numbers depend on the machine and its load:
the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import free_port, wait_ready

CACHE_HIT_TARGET_MS = 20.0
CITIES = ("Oslo", "Lima", "Pune", "Kyiv", "Faro")


def start_backend(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")}
    env.update(MYAPP_DATA_DIR=str(workdir / "data"), MYAPP_LOG_LEVEL="warning")
    log = workdir / "backend.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "myapp", "serve", "--role", "backend", "--port", str(port)],
        env=env,
        cwd=workdir,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/api/health", proc, log)
    return proc, url


def make_data(workdir: Path, rows: int) -> Path:
    path = workdir / "sales.csv"
    with path.open("w") as out:
        out.write("id,city,amount,day\n")
        for i in range(rows):
            out.write(f"{i},{CITIES[i % 5]},{(i * 7) % 1000 / 10},2024-{1 + i % 12:02d}-01\n")
    return path


def setup(client: httpx.Client, csv: Path) -> str:
    with csv.open("rb") as body:
        answer = client.put("/api/datasets/bench_sales", content=body, timeout=600)
    answer.raise_for_status()
    queries = [
        ("bench total", "SELECT sum(amount) AS total FROM bench_sales WHERE city = $city", None),
        (
            "bench by month",
            "SELECT day, sum(amount) AS amount FROM bench_sales WHERE city = $city "
            "GROUP BY day ORDER BY day",
            {"type": "line", "x": "day", "y": ["amount"]},
        ),
        (
            "bench top",
            "SELECT id, amount FROM bench_sales WHERE city = $city ORDER BY amount DESC, id "
            "LIMIT 100",
            None,
        ),
    ]
    slugs = []
    for title, sql, chart in queries:
        saved = client.post(
            "/api/queries",
            json={
                "title": title,
                "sql": sql,
                "chart": chart,
                "parameters": [{"name": "city", "type": "text", "default": "Oslo"}],
            },
        )
        saved.raise_for_status()
        slugs.append(saved.json()["slug"])
    board = client.post(
        "/api/dashboards",
        json={
            "title": "bench",
            "parameters": [{"name": "city", "type": "text", "default": "Oslo"}],
            "tiles": [
                {"type": "number", "query": slugs[0], "params": {"city": "city"}},
                {"type": "chart", "query": slugs[1], "params": {"city": "city"}},
                {"type": "table", "query": slugs[2], "params": {"city": "city"}},
            ],
        },
    )
    board.raise_for_status()
    return board.json()["slug"]


def timed(client: httpx.Client, path: str, body: dict, count: int) -> tuple[list[float], int]:
    times, hits = [], 0
    for _ in range(count):
        started = time.perf_counter()
        answer = client.post(path, json=body)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: {answer.status_code} {answer.text}")
        hits += bool(answer.json()["cached"])
    return times, hits


def timed_runs(client: httpx.Client, path: str, count: int) -> list[float]:
    """A saved query's own run (`POST /api/queries/{slug}/run`), which counts itself."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        answer = client.post(path, json={})
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{path}: {answer.status_code} {answer.text}")
    return times


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dash-") as tmp:
        workdir = Path(tmp)
        csv = make_data(workdir, args.rows)
        proc, url = start_backend(workdir)
        try:
            with httpx.Client(base_url=url, timeout=120) as client:
                slug = setup(client, csv)
                results = []
                for tile, kind in (("t1", "number"), ("t2", "chart"), ("t3", "table")):
                    path = f"/api/dashboards/{slug}/tiles/{tile}/run"
                    runs = max(10, args.requests // 10)
                    uncached, _ = timed(client, path, {"refresh": True}, runs)
                    cached, hits = timed(client, path, {}, args.requests)
                    results.append(
                        {
                            "tile": f"{tile} ({kind})",
                            "query_p50_ms": statistics.median(uncached),
                            "hit_p50_ms": statistics.median(cached),
                            "hit_p95_ms": p(cached, 0.95),
                            "hits": hits,
                            "requests": args.requests,
                        }
                    )
                total_slug = client.get(f"/api/dashboards/{slug}").json()["tiles"][0]["query"]
                own = timed_runs(client, f"/api/queries/{total_slug}/run", args.requests)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    load = os.getloadavg()
    print(f"rows {args.rows:,}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'tile':<14} {'query p50':>10} {'hit p50':>9} {'hit p95':>9} {'hits':>9}")
    for r in results:
        ok = "ok" if r["hit_p50_ms"] < CACHE_HIT_TARGET_MS else "OVER TARGET"
        print(
            f"{r['tile']:<14} {r['query_p50_ms']:>8.1f}ms {r['hit_p50_ms']:>7.2f}ms "
            f"{r['hit_p95_ms']:>7.2f}ms {r['hits']:>4}/{r['requests']:<4} {ok}"
        )
    print(
        f"saved query run (POST /api/queries/<slug>/run, {args.requests} requests): "
        f"p50 {statistics.median(own):.2f}ms, p95 {p(own, 0.95):.2f}ms"
    )
    print(f"target: cache hit p50 < {CACHE_HIT_TARGET_MS:.0f} ms per tile")
    if args.json:
        summary = {"rows": args.rows, "tiles": results, "query_run_p50_ms": statistics.median(own)}
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
