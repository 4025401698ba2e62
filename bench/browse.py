"""Browse benchmark: a page of rows through GET /api/datasets/{name}/rows and the HTML table page,
against DuckDB's own `ORDER BY … LIMIT` in-process on the same rows, at 1M and 5M rows.

    python bench/browse.py [--rows 1000000,5000000] [--repeat 15] [--datasette] [--json PATH]
                           [--base TREE]

The table (`big`: id, v DOUBLE with NULLs, category, name, score, at, flag) is generated with
DuckDB into bench/.work/browse/ (git-ignored) and uploaded as Parquet through the API into a
fresh workspace. A real `myapp serve --role backend` and a `--role frontend` pointed at it run
as subprocesses on free loopback ports; one kept-alive HTTP client each, and the API is timed
twice per run: with httpx, as a Python program reads it, and with http.client to the last byte,
the least a client adds (the two take turns going first). Datasette is timed the same two ways.

Cases: unsorted; sorted by a DOUBLE (descending) and by a VARCHAR, first page and a later cursor
page (the 20th); a filter and a search (`q`) with a sort. DuckDB alone runs `SELECT * FROM big
[WHERE …] ORDER BY col LIMIT 51` on a read-only connection (the page plus the row that tells
whether there is a next one); for the 20th page its own way to the same rows, `… LIMIT 51 OFFSET
950`, and the ratio to its first page is printed too. "cold" rows change the filter value on
every run, so nothing computed for an earlier run (the count of the filtered rows) can be
reused; the other rows repeat one request, as a person reloading or paging does. The HTML page
is /datasets/big with the same state; it shows the default facets (category, name, flag) too.
When the page leaves facets to be fetched after it (`data-facets-src`, big tables under a new
filter), that block is fetched as the page's script does, and "facets in" is page + block: when
the facets are on screen.

DuckDB and the API take turns run by run, so both see the same load; figures are medians with
the range (min-max) of --repeat runs after one warm-up. Target: API <= 1.5x DuckDB; page <= API
+ 15 ms. The servers run the tree this script is in; --base TREE (another checkout, e.g. a
`git worktree` of main) also starts that tree's backend and frontend on a workspace of its own
with the same rows, and the two take turns request by request (who goes first alternates run
by run), so a change is compared with the code before under the same load.

--datasette also times Datasette (installed from PyPI as bench/query.py does) serving the rows
copied into SQLite, on its JSON table view with the same sort.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import duckdb
import httpx
from common import Lean, free_port, wait_ready

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work" / "browse"
TARGET_RATIO = 1.5
PAGE_MARGIN_MS = 15.0
LIMIT = 50
CURSOR_DEPTH = 20


def make_data(rows: int) -> Path:
    db = WORK / f"source-{rows}.db"
    marker = WORK / f"source-{rows}.done"
    if marker.exists() and db.exists():
        return db
    db.unlink(missing_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    print(f"generating {rows:,} rows …", flush=True)
    with duckdb.connect(str(db)) as conn:
        conn.execute(
            f"""CREATE TABLE big AS SELECT i AS id,
                CASE WHEN i % 97 = 0 THEN NULL ELSE ((i * 104729) % 1000003) / 7.0 END AS v,
                ['books', 'games', 'music', 'films', 'tools', 'toys', 'food',
                 'garden'][1 + i % 8] AS category,
                'user ' || ((i * 7919) % 200000) AS name,
                (i * 31) % 1000 AS score,
                TIMESTAMP '2024-01-01' + to_seconds(i) AS at,
                i % 3 = 0 AS flag
            FROM range({int(rows)}) t(i)"""
        )
        conn.execute(f"COPY big TO '{WORK / f'big-{rows}.parquet'}' (FORMAT parquet)")
    marker.touch()
    return db


def cases(run: int) -> list[dict]:
    """Each case: its label, the API's parameters and DuckDB's WHERE and ORDER BY."""
    cold_user = f"user {10 + run % 89}"
    cold_score = str(100 + (run * 7) % 800)
    return [
        {"label": "unsorted", "params": {}, "where": "", "order": ""},
        {"label": "sort -v", "params": {"sort": "-v"}, "where": "", "order": "v DESC"},
        {
            "label": f"sort -v, page {CURSOR_DEPTH}",
            "params": {"sort": "-v"},
            "where": "",
            "order": "v DESC",
            "depth": CURSOR_DEPTH,
        },
        {"label": "sort name", "params": {"sort": "name"}, "where": "", "order": "name"},
        {
            "label": f"sort name, page {CURSOR_DEPTH}",
            "params": {"sort": "name"},
            "where": "",
            "order": "name",
            "depth": CURSOR_DEPTH,
        },
        {
            "label": "filter + sort",
            "params": {"sort": "-v", "category__eq": "toys"},
            "where": "category = 'toys'",
            "order": "v DESC",
        },
        {
            "label": "filter + sort, cold",
            "params": {"sort": "-v", "score__gt": cold_score},
            "where": f"score > {cold_score}",
            "order": "v DESC",
        },
        {
            "label": "search + sort",
            "params": {"sort": "-v", "q": "user 12"},
            "where": "contains(lower(category), 'user 12') OR contains(lower(name), 'user 12')",
            "order": "v DESC",
        },
        {
            "label": "search + sort, cold",
            "params": {"sort": "-v", "q": cold_user},
            "where": f"contains(lower(category), '{cold_user}') "
            f"OR contains(lower(name), '{cold_user}')",
            "order": "v DESC",
        },
    ]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def start(role: str, port: int, env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "myapp", "serve", "--role", role, "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=WORK,
    )


def cursor_for(api: httpx.Client, params: dict, depth: int) -> str:
    token = None
    for _ in range(depth - 1):
        query = {**params, "limit": LIMIT, **({"cursor": token} if token else {})}
        token = api.get("/api/datasets/big/rows", params=query).raise_for_status().json()["next"]
    assert token
    return token


class Side:
    """One tree's backend and frontend on a workspace of their own, with a client each."""

    def __init__(self, label: str, tree: Path, rows: int) -> None:
        self.label = label
        data_dir = WORK / f"data-{rows}-{label}"
        shutil.rmtree(data_dir, ignore_errors=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")}
        env.update(
            {
                "MYAPP_DATA_DIR": str(data_dir),
                "MYAPP_LOG_LEVEL": "warning",
                "PYTHONPATH": str(tree),
            }
        )
        api_port, web_port = free_port(), free_port()
        self.logs = (WORK / f"backend-{label}.log", WORK / f"frontend-{label}.log")
        self.backend = start("backend", api_port, env, self.logs[0])
        web_env = {**env, "MYAPP_BACKEND_URL": f"http://127.0.0.1:{api_port}"}
        self.frontend = start("frontend", web_port, web_env, self.logs[1])
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.web_url = f"http://127.0.0.1:{web_port}"
        self.api = httpx.Client(base_url=self.api_url, timeout=120)
        self.web = httpx.Client(base_url=self.web_url, timeout=120)
        self.lean = Lean(api_port)

    def load(self, rows: int) -> None:
        wait_ready(self.api_url + "/api/health", self.backend, self.logs[0])
        wait_ready(self.web_url + "/healthz", self.frontend, self.logs[1])
        with (WORK / f"big-{rows}.parquet").open("rb") as body:
            self.api.put(
                "/api/datasets/big",
                params={"format": "parquet", "mode": "replace"},
                content=body,
                timeout=600,
            ).raise_for_status()

    def stop(self) -> None:
        self.api.close()
        self.web.close()
        self.lean.conn.close()
        for proc in (self.frontend, self.backend):
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


FACETS_SRC = re.compile(r'data-facets-src="([^"]*)"')


def time_side(side: Side, case: dict, run: int, labels: list[str]) -> dict[str, float]:
    """One run of one case on one side: the API (httpx, and http.client to the last byte), the
    HTML page, and the page with its facets."""
    params = {**case["params"], "limit": LIMIT}
    if case.get("depth"):
        params["cursor"] = cursor_for(side.api, case["params"], case["depth"])

    def call() -> None:
        side.api.get("/api/datasets/big/rows", params=params).raise_for_status()

    path = "/api/datasets/big/rows?" + urlencode(params)

    def lean() -> None:
        side.lean.get(path)

    # The two clients take turns going first: the second request of a pair finds the server
    # warm from the first.
    ms: dict[str, float] = {}
    for key, fn in [("api", call), ("bytes", lean)][:: 1 if run % 2 == 0 else -1]:
        ms[key] = timed(fn)
    page_params = params
    if case["label"].endswith("cold"):
        # A fresh value again, for the page: the API's run just counted it.
        fresh = cases(run + 1000)[labels.index(case["label"])]
        page_params = {**fresh["params"], "limit": LIMIT}
    started = time.perf_counter()
    page = side.web.get("/datasets/big", params=page_params).raise_for_status()
    ms["page"] = (time.perf_counter() - started) * 1000
    src = FACETS_SRC.search(page.text)
    if src:
        # What the page's script does next: the facets left out of the page.
        block = side.web.get(
            html.unescape(src.group(1)), headers={"X-Myapp-Fragment": "facets"}
        ).raise_for_status()
        assert block.headers.get("X-Myapp-Fragment") == "facets", block.text[:200]
    ms["facets"] = (time.perf_counter() - started) * 1000
    return ms


def measure(rows: int, repeat: int, base: Path | None = None) -> dict:
    """{side: {case: {measure: summary}}} for this tree ("myapp") and, with `base`, that
    tree ("base"), taking turns."""
    db = make_data(rows)
    sides: list[Side] = []
    figures: dict = {}
    try:
        sides.append(Side("myapp", ROOT.parent, rows))
        if base is not None:
            sides.append(Side("base", base.resolve(), rows))
        for side in sides:
            side.load(rows)
        with duckdb.connect(str(db), read_only=True) as conn:
            labels = [c["label"] for c in cases(0)]
            times: dict[str, dict[str, dict[str, list[float]]]] = {
                side.label: {
                    label: {
                        "duckdb": [],
                        "duckdb_first": [],
                        "api": [],
                        "bytes": [],
                        "page": [],
                        "facets": [],
                    }
                    for label in labels
                }
                for side in sides
            }
            for run in range(repeat + 1):
                order = sides if run % 2 == 0 else sides[::-1]
                for case in cases(run):
                    where = f" WHERE {case['where']}" if case["where"] else ""
                    by = f" ORDER BY {case['order']}" if case["order"] else ""
                    sql = f"SELECT * FROM big{where}{by} LIMIT {LIMIT + 1}"
                    # A later page, DuckDB's own way: the same ORDER BY … LIMIT past the rows
                    # before it. Its first page is timed too ("duckdb_first").
                    skip = (case.get("depth", 1) - 1) * LIMIT
                    page_sql = sql + (f" OFFSET {skip}" if skip else "")

                    def local(sql=page_sql):
                        conn.execute(sql).fetchall()

                    def first(sql=sql):
                        conn.execute(sql).fetchall()

                    duck = timed(local)
                    duck_first = timed(first) if skip else duck
                    for side in order:
                        ms = {
                            "duckdb": duck,
                            "duckdb_first": duck_first,
                            **time_side(side, case, run, labels),
                        }
                        if run:  # the first run warms caches and connections
                            for key, value in ms.items():
                                times[side.label][case["label"]][key].append(value)
            figures = {
                side: {
                    label: {key: summary(values) for key, values in by_case.items()}
                    for label, by_case in cases_.items()
                }
                for side, cases_ in times.items()
            }
    finally:
        for side in sides:
            side.stop()
    return figures


def datasette_figures(rows: int, repeat: int) -> dict:
    """Datasette's JSON table view on the same rows in SQLite, where it has the operation."""
    sys.path.insert(0, str(ROOT))
    from query import ensure_datasette  # the one pinned Datasette install

    lite = WORK / f"big-{rows}.sqlite"
    if not lite.exists():
        print(f"copying {rows:,} rows into SQLite for Datasette …", flush=True)
        # Written aside and renamed when whole: a copy cut short is not taken for the table.
        partial = lite.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        target = sqlite3.connect(partial)
        target.execute(
            "CREATE TABLE big (id INTEGER PRIMARY KEY, v REAL, category TEXT, name TEXT, "
            "score INTEGER, at TEXT, flag INTEGER)"
        )
        with duckdb.connect(str(make_data(rows)), read_only=True) as conn:
            # `at` is a keyword of DuckDB's (time travel): quoted.
            cur = conn.execute(
                'SELECT id, v, category, name, score, CAST("at" AS VARCHAR), flag FROM big'
            )
            while batch := cur.fetchmany(100_000):
                target.executemany("INSERT INTO big VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
        target.commit()
        target.close()
        partial.rename(lite)
    exe = ensure_datasette()
    port = free_port()
    log = WORK / "datasette.log"
    proc = subprocess.Popen(
        [
            str(exe),
            "serve",
            str(lite),
            "--port",
            str(port),
            "--setting",
            "sql_time_limit_ms",
            "60000",
            "--setting",
            "facet_time_limit_ms",
            "60000",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    out: dict = {}
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/-/versions.json", proc, log)
        db = lite.stem
        views = {
            "unsorted": {},
            "sort -v": {"_sort_desc": "v"},
            "sort name": {"_sort": "name"},
            "filter + sort": {"_sort_desc": "v", "category__exact": "toys"},
        }
        lean = Lean(port)
        with httpx.Client(base_url=url, timeout=300) as client:
            for label, params in views.items():
                query = {**params, "_size": LIMIT, "_nofacet": "1", "_nocount": "1"}
                path = f"/{db}/big.json?" + urlencode(query)
                pair = [
                    ("api", lambda p=path: client.get(p).raise_for_status()),
                    ("bytes", lambda p=path: lean.get(p)),
                ]
                runs: dict[str, list[float]] = {"api": [], "bytes": []}
                for run in range(max(3, repeat // 3) + 1):
                    for key, fn in pair[:: 1 if run % 2 == 0 else -1]:
                        ms = timed(fn)
                        if run:
                            runs[key].append(ms)
                out[label] = {key: summary(values) for key, values in runs.items()}
        lean.conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return out


def fmt(s: dict | None) -> str:
    if not s:
        return "-"
    return f"{s['median']:.1f} ({s['min']:.0f}-{s['max']:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1000000,5000000")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--datasette", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--base", type=Path, help="another tree to compare with, turn by turn")
    args = parser.parse_args()
    results = {}
    for rows in [int(r) for r in args.rows.split(",")]:
        figures = measure(rows, args.repeat, args.base)
        lite = datasette_figures(rows, args.repeat) if args.datasette else {}
        results[rows] = {"myapp": figures["myapp"], "datasette": lite}
        if "base" in figures:
            results[rows]["base"] = figures["base"]
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        for side in figures:
            print()
            print(
                f"{side} ({ROOT.parent if side == 'myapp' else args.base}), {rows:,} rows, "
                f"{LIMIT} per page, ms: median (min-max) of {args.repeat}; load {load} on "
                f"{os.cpu_count()} cores"
            )
            print_table(figures[side], lite if side == "myapp" else {})
        if "base" in figures:
            print_comparison(rows, figures["base"], figures["myapp"])
    if len(results) > 1:
        print_side_by_side(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def print_table(figures: dict, lite: dict) -> None:
    """API: httpx, as a Python program reads it; bytes: http.client to the last byte, the least
    a client adds (bench/common.py, Lean). Datasette likewise: httpx / http.client."""
    header = (
        f"{'case':<22} {'DuckDB alone':>18} {'API (httpx)':>18} {'/DuckDB':>10} "
        f"{'API (bytes)':>18} {'/DuckDB':>10} {'HTML page':>18} {'page-API':>9} "
        f"{'facets in':>18} {'Datasette httpx / bytes':>30}"
    )
    print(header)
    print("-" * len(header))
    for label, by in figures.items():
        duck = by["duckdb"]["median"]
        ratio, lean = by["api"]["median"] / duck, by["bytes"]["median"] / duck
        extra = by["page"]["median"] - by["api"]["median"]
        ok = "ok" if ratio <= TARGET_RATIO else "MISS"
        lean_ok = "ok" if lean <= TARGET_RATIO else "MISS"
        page_ok = "ok" if extra <= PAGE_MARGIN_MS else "MISS"
        peer = lite.get(label)
        peer_text = f"{fmt(peer['api'])} / {fmt(peer['bytes'])}" if peer else "-"
        print(
            f"{label:<22} {fmt(by['duckdb']):>18} {fmt(by['api']):>18} "
            f"{ratio:>5.2f} {ok:<4} {fmt(by['bytes']):>18} {lean:>5.2f} {lean_ok:<4}"
            f"{fmt(by['page']):>18} {extra:>5.1f} {page_ok:<4}"
            f"{fmt(by['facets']):>18}{peer_text:>30}"
        )
    for label, by in figures.items():
        first = by["duckdb_first"]["median"]
        if by["duckdb"]["median"] != first:
            print(
                f"  {label}: DuckDB's own page (OFFSET) {by['duckdb']['median']:.1f} ms, its "
                f"first page {first:.1f} ms; API/first page {by['api']['median'] / first:.2f} "
                f"(httpx), {by['bytes']['median'] / first:.2f} (bytes)"
            )


def print_comparison(rows: int, base: dict, new: dict) -> None:
    """The two trees' medians, case by case: API/DuckDB, page - API, and when facets are in."""
    print()
    print(f"{rows:,} rows, base -> this tree (medians of runs taken in turns)")
    header = (
        f"{'case':<22} {'API/DuckDB':>14} {'bytes/DuckDB':>14} {'page-API ms':>16} "
        f"{'facets in ms':>18}"
    )
    print(header)
    print("-" * len(header))
    for label in new:
        b, n = base[label], new[label]

        def ratio(by: dict, key: str = "api") -> float:
            return by[key]["median"] / by["duckdb"]["median"]

        def extra(by: dict) -> float:
            return by["page"]["median"] - by["api"]["median"]

        print(
            f"{label:<22} {ratio(b):>5.2f} -> {ratio(n):<5.2f} "
            f"{ratio(b, 'bytes'):>5.2f} -> {ratio(n, 'bytes'):<5.2f} "
            f"{extra(b):>+6.1f} -> {extra(n):<+6.1f} "
            f"{b['facets']['median']:>7.1f} -> {n['facets']['median']:<7.1f}"
        )


def print_side_by_side(results: dict) -> None:
    """Every size in one table: medians of myapp's API, the HTML page, DuckDB in-process, and
    the two targets (API/DuckDB <= 1.5, page - API <= 15 ms), API by httpx and by http.client."""
    sizes = list(results)
    print()
    print(
        "side by side, ms (medians): API httpx | API bytes | HTML page | DuckDB | "
        "API/DuckDB httpx, bytes | page-API"
    )
    header = f"{'case':<22}" + "".join(f" | {f'{rows:,} rows':^51}" for rows in sizes)
    print(header)
    print("-" * len(header))
    for label in results[sizes[0]]["myapp"]:
        line = f"{label:<22}"
        for rows in sizes:
            by = results[rows]["myapp"][label]
            api, lean, page, duck = (by[k]["median"] for k in ("api", "bytes", "page", "duckdb"))
            line += (
                f" | {api:6.1f} {lean:6.1f} {page:6.1f} {duck:6.1f} {api / duck:5.2f} "
                f"{lean / duck:5.2f} {page - api:+6.1f}"
            )
        print(line)


if __name__ == "__main__":
    main()
