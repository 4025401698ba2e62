"""Run every benchmark several times and write docs/benchmarks.md with the medians.

    python bench/run.py [--runs 3] [--quick] [--only ingest,query,...] [--output PATH]

Each benchmark script (ingest, query, small_queries, export, auth, load) runs --runs times in
turn, as a subprocess writing its figures with --json; its printed table goes to
bench/.work/run/<name>-<n>.log. The report gives the machine and the versions, then per
benchmark the median of the runs (with the range) and its ratio to DuckDB doing the same work
in-process and, for queries, to Datasette on the same data in SQLite. A benchmark that fails is
reported as failed with the end of its log, and the others still run. --quick runs every
benchmark on small data for a short while, to check the runner: its figures say little.
Unattended and bounded: every run has a time limit (RUN_TIMEOUT_S).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
WORK = ROOT / ".work" / "run"
OUTPUT = REPO / "docs" / "benchmarks.md"
DATASETTE = ROOT / ".work" / "datasette-venv" / "bin" / "datasette"
# The longest one run may take: a first full run generates 5M-row tables and a 1 GB CSV and
# copies 5M rows into SQLite before it measures anything.
RUN_TIMEOUT_S = 3600
# What `python bench/run.py` took here: one round of the five was 14-17 min on 2 cores shared
# with other work (the first round also generates the data); a load run waits up to 5 more
# minutes when an answer is slow to come.
FULL_RUN_MIN = "45-60"


@dataclass(frozen=True)
class Bench:
    name: str
    title: str
    args: tuple[str, ...]
    quick: tuple[str, ...]


BENCHES = (
    Bench("ingest", "Ingest", (), ("--rows", "200000", "--memory-gb", "0.1", "--runs", "1")),
    Bench("query", "Queries", (), ("--rows", "200000", "--repeat", "5")),
    Bench(
        "small_queries",
        "Small queries",
        (),
        ("--rows", "200000", "--repeat", "20", "--rounds", "1"),
    ),
    Bench("export", "Exports", (), ("--rows", "200000", "--runs", "1")),
    Bench("auth", "Access checks", (), ("--requests", "100", "--logins", "3")),
    Bench("load", "Load", (), ("--clients", "10", "--duration", "20", "--rows", "100000")),
)


@dataclass
class Outcome:
    bench: Bench
    figures: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)  # 1-minute load averages, before and after
    logs: list[Path] = field(default_factory=list)


def run_bench(bench: Bench, index: int, quick: bool, outcome: Outcome) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    figures_path = WORK / f"{bench.name}-{index}.json"
    figures_path.unlink(missing_ok=True)
    log = WORK / f"{bench.name}-{index}.log"
    command = [
        sys.executable,
        str(ROOT / f"{bench.name}.py"),
        *(bench.quick if quick else bench.args),
        "--json",
        str(figures_path),
    ]
    print(f"[{time.strftime('%H:%M:%S')}] {bench.name} run {index}: {' '.join(command[1:])}")
    outcome.load.append(os.getloadavg()[0])
    started = time.monotonic()
    with log.open("w") as out:
        try:
            # A benchmark exits 1 when it misses its target; its figures still count.
            code: int | str = subprocess.run(
                command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S
            ).returncode
        except subprocess.TimeoutExpired:
            code = f"timed out after {RUN_TIMEOUT_S} s"
    outcome.seconds.append(time.monotonic() - started)
    outcome.load.append(os.getloadavg()[0])
    outcome.logs.append(log)
    if figures_path.exists():
        outcome.figures.append(json.loads(figures_path.read_text()))
        print(f"    done in {outcome.seconds[-1]:.0f} s (exit {code})", flush=True)
    else:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        outcome.failures.append(f"run {index}: exit {code}\n{tail}")
        print(f"    FAILED (exit {code}); see {log}", flush=True)


# -- numbers ------------------------------------------------------------------------------------
def med(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def spread(values: list[float | None], fmt: str, suffix: str = "") -> str:
    """The median, and the range when there is more than one value: `0.82x (0.79…0.85)`."""
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    text = f"{statistics.median(present):{fmt}}{suffix}"
    if len(present) > 1:
        text += f" ({min(present):{fmt}}…{max(present):{fmt}})"
    return text


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# -- the machine ----------------------------------------------------------------------------
def _first(path: str, pattern: str) -> str:
    with contextlib.suppress(OSError):
        match = re.search(pattern, Path(path).read_text(), re.M)
        if match:
            return match.group(1).strip()
    return "unknown"


def _command_version(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return (result.stdout + result.stderr).strip().splitlines()[0] if result else "unknown"


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> list[tuple[str, str]]:
    memory_kb = _first("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    memory = f"{int(memory_kb) / 1024**2:.1f} GiB" if memory_kb.isdigit() else "unknown"
    datasette = (
        _command_version([str(DATASETTE), "--version"]) if DATASETTE.exists() else "not installed"
    )
    commit = _command_version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    system = _first("/etc/os-release", r'^PRETTY_NAME="?([^"\n]+)')
    return [
        ("CPU", _first("/proc/cpuinfo", r"^model name\s*:\s*(.+)$")),
        ("cores", str(os.cpu_count())),
        ("memory", memory),
        ("OS", f"{system}, Linux {platform.release()}"),
        ("Python", platform.python_version()),
        ("DuckDB", duckdb.__version__),
        ("nginx", _command_version(["nginx", "-v"]).split("/", 1)[-1]),
        ("Datasette", datasette.replace("datasette, version ", "")),
        ("myapp", f"{_package('myapp')} (commit {commit})"),
        (
            "servers",
            f"gunicorn {_package('gunicorn')}, uvicorn {_package('uvicorn')}, "
            f"FastAPI {_package('fastapi')}, Flask {_package('flask')}, "
            f"httpx {_package('httpx')} (clients)",
        ),
    ]


# -- the report -----------------------------------------------------------------------------
def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def ingest_section(figures: list[dict]) -> list[str]:
    first = figures[0]
    duck = [f["size_mb"] / min(f["duckdb_s"]) for f in figures]
    api = [f["size_mb"] / min(f["api_s"]) for f in figures]
    lines = [
        f"A {first['rows']:,}-row CSV ({first['size_mb']:.0f} MB) uploaded as a raw-body `PUT "
        f"/api/datasets/{{name}}` to a fresh backend, against DuckDB's own `read_csv` into a fresh "
        f"database file; each run takes the best of {plural(first['runs'], 'attempt')} per "
        "side.",
        "",
        *table(
            ["path", "MB/s", "vs DuckDB (target ≥ 0.7x)"],
            [
                ["DuckDB `read_csv`", spread(duck, ".0f"), "1x"],
                [
                    "myapp API",
                    spread(api, ".0f"),
                    spread([f["ratio_best"] for f in figures], ".2f", "x"),
                ],
            ],
        ),
    ]
    memory = [m for f in figures for m in f["memory"]]
    if memory:
        size = memory[0]["size_gb"]
        lines += [
            "",
            f"The backend worker's resident memory while a {size:.2f} GB CSV uploads (MB above "
            f"its idle {spread([m['idle'] for m in memory], '.0f')} MB; target < "
            f"{first['target_memory_mb']} MB): while the body streams to disk "
            f"{spread([m['transfer'] for m in memory], '.0f')}, while DuckDB loads it "
            f"{spread([m['load'] for m in memory], '.0f')}, after "
            f"{spread([m['after'] for m in memory], '.0f')}.",
        ]
    xlsx = [f["xlsx"] for f in figures if f.get("xlsx")]
    if xlsx:
        lines += ["", *xlsx_lines(xlsx)]
    return lines


def xlsx_lines(figures: list[dict]) -> list[str]:
    """The same rows as an Excel workbook and as CSV through the API, and DuckDB's read_csv of
    the CSV alone (bench/ingest.py)."""
    rows = figures[0]["rows"]
    out = []
    for kind, label in (("csv", "CSV through the API"), ("xlsx", "Excel workbook (.xlsx)")):
        sized = [f[kind] for f in figures]
        children = [max(s.get("child_peak_mb") or [0]) for s in sized]
        out.append(
            [
                label,
                f"{sized[0]['size_mb']:.1f}",
                spread([min(s["seconds"]) for s in sized], ".2f"),
                spread([rows / min(s["seconds"]) for s in sized], ",.0f"),
                spread([max(s["peak_mb"]) for s in sized], ".0f"),
                spread(children, ".0f") if any(children) else "-",
            ]
        )
    alone = [min(f["duckdb_csv_s"]) for f in figures if f.get("duckdb_csv_s")]
    if alone:
        out.append(
            [
                "CSV, DuckDB `read_csv` alone",
                f"{figures[0]['csv']['size_mb']:.1f}",
                spread(alone, ".2f"),
                spread([rows / a for a in alone], ",.0f"),
                "-",
                "-",
            ]
        )
    return [
        f"The same {rows:,} rows (8 columns: integers, text, numbers, dates, booleans) as an "
        "Excel workbook and as CSV, each uploaded as a raw-body `PUT /api/datasets/{name}` to "
        "a fresh backend (best of the attempts per run). A workbook's sheet is read by "
        "python-calamine in a short-lived child process (its cells in memory there, capped by "
        "`MYAPP_WORKBOOK_MEMORY_LIMIT`) and written to a CSV that DuckDB then loads.",
        "",
        *table(
            [
                "file",
                "MB",
                "seconds",
                "rows/s",
                "backend worker peak RSS, MB above idle",
                "workbook reader peak RSS, MB",
            ],
            out,
        ),
    ]


def query_section(figures: list[dict]) -> list[str]:
    first = figures[0]
    rows = []
    for label in first["queries"]:
        per = [f["queries"][label] for f in figures]
        duck = [p["duckdb_ms"] for p in per]
        api = [p["api_ms"] for p in per]
        lite = [p["datasette_ms"] for p in per]
        rows.append(
            [
                re.sub(r"\(\d+M rows\)", "(all rows)", label),
                spread(duck, ".1f"),
                spread(api, ".1f"),
                spread([p["added_ms"] for p in per], "+.1f"),
                spread([ratio(d, a) for d, a in zip(duck, api, strict=True)], ".2f", "x"),
                spread(lite, ".1f"),
                spread([ratio(x, a) for x, a in zip(lite, api, strict=True)], ".1f", "x"),
            ]
        )
    versions = f"Datasette {first['datasette']} (SQLite {first['sqlite']})"
    return [
        f"`POST /api/query` on {first['rows']:,} events and 100k users, end to end through one "
        f"kept-alive HTTP client, against the same SQL on DuckDB in-process (taking turns, median "
        f"of {first['repeat']}) and against {versions} serving the same tables "
        f"(`/<db>.json?sql=`). Speed is time taken by the other ÷ time taken by myapp: "
        f"1x is as fast; above 1x myapp is faster. Target: the API adds at most 20% or 5 ms.",
        "",
        *table(
            [
                "query",
                "DuckDB ms",
                "myapp ms",
                "added ms",
                "speed vs DuckDB",
                "Datasette ms",
                "speed vs Datasette",
            ],
            rows,
        ),
    ]


SMALL_DUCK = "DuckDB in-process"
SMALL_API = "myapp (http.client)"
SMALL_LITE = "Datasette (http.client)"


def small_queries_section(figures: list[dict]) -> list[str]:
    first = figures[0]
    names = list(next(iter(first["cases"].values())))
    rows = []
    for case in first["cases"]:
        per = [f["cases"][case] for f in figures]

        def ms(name: str, per: list[dict] = per) -> list[float | None]:
            return [p[name]["median_ms"] if name in p else None for p in per]

        duck, api, lite = ms(SMALL_DUCK), ms(SMALL_API), ms(SMALL_LITE)
        rows.append(
            [
                case,
                *(spread(ms(name), ".2f") for name in names),
                spread([a - d for a, d in zip(api, duck, strict=True) if a and d], "+.2f"),
                spread([ratio(d, a) for d, a in zip(duck, api, strict=True)], ".2f", "x"),
                spread([ratio(x, a) for x, a in zip(lite, api, strict=True)], ".2f", "x"),
            ]
        )
    return [
        f"`POST /api/query` on a {first['rows']:,}-row dataset, DuckDB in-process reading the "
        "dataset's own file, and Datasette serving the same rows in SQLite (id its INTEGER "
        "PRIMARY KEY), every case in turn run by run; medians in ms. Two HTTP clients on a "
        "kept-alive connection: httpx and http.client (the least a Python client adds). "
        "\"added\" is myapp (http.client) minus DuckDB; speeds are the other's time ÷ myapp's "
        "(http.client). Targets: added at most 1.5 ms for the point lookup, 1,000 and 10,000 "
        "rows within 1.2x of DuckDB.",
        "",
        *table(
            ["case", *(f"{n} ms" for n in names), "added ms", "speed vs DuckDB", "vs Datasette"],
            rows,
        ),
    ]


def export_section(figures: list[dict]) -> list[str]:
    first = figures[0]
    rows = []
    for fmt in first["formats"]:
        per = [f["formats"][fmt] for f in figures]
        rows.append(
            [
                fmt,
                f"{per[0]['size_mb']:.1f}",
                spread([first["rows"] / p["duckdb_s"] / 1e6 for p in per], ".2f"),
                spread([first["rows"] / p["api_s"] / 1e6 for p in per], ".2f"),
                spread([p["ratio"] for p in per], ".2f", "x"),
                spread([p["first_byte_s"] for p in per], ".2f"),
                spread([p["peak_rss_above_idle_mb"] for p in per], ".0f"),
                spread([p.get("fixed_ms") for p in per], ".1f"),
            ]
        )
    return [
        f"The whole of a {first['rows']:,}-row table downloaded from `GET /api/query/export`, "
        f"from request to last byte, against DuckDB's own `COPY … TO` a file (best of "
        f"{plural(first['runs'], 'attempt')} per run). Targets: at least 0.7x DuckDB's rows/s; "
        f"the backend worker under {first['target_memory_mb']} MB above its idle memory. Export "
        f"files left behind: {sum(f['files_left'] for f in figures)}.",
        "",
        *table(
            [
                "format",
                "MB",
                "DuckDB M rows/s",
                "myapp M rows/s",
                "vs DuckDB",
                "first byte s",
                "RSS +MB",
                "fixed ms",
            ],
            rows,
        ),
    ]


def auth_section(figures: list[dict]) -> list[str]:
    first = figures[0]
    rows = [
        [
            name,
            spread([f["requests"][name]["median_ms"] for f in figures], ".2f"),
            spread([f["requests"][name]["p95_ms"] for f in figures], ".2f"),
        ]
        for name in first["requests"]
    ]
    overhead = spread([f["token_overhead_ms"] for f in figures], ".2f")
    return [
        "Sequential requests to a backend with accounts: what checking each kind of credential "
        f"costs. An API token adds {overhead} ms per request (target < "
        f"{first['target_ms']:g} ms). No DuckDB or Datasette counterpart.",
        "",
        *table(["request", "median ms", "p95 ms"], rows),
    ]


def load_section(figures: list[dict]) -> list[str]:
    first = figures[0]
    cfg = first["config"]
    kinds = [*first["kinds"], "all"]

    def pick(f: dict, kind: str) -> dict:
        return f["overall"] if kind == "all" else f["kinds"][kind]

    rows = []
    for kind in kinds:
        per = [pick(f, kind) for f in figures]
        rows.append(
            [
                f"**{kind}**" if kind == "all" else kind,
                str(sum(p["count"] for p in per)),
                spread([p["rps"] for p in per], ".1f"),
                spread([p["p50"] for p in per], ".0f"),
                spread([p["p95"] for p in per], ".0f"),
                spread([p["p99"] for p in per], ".0f"),
                str(sum(p["status_5xx"] for p in per)),
                str(sum(p["status_4xx"] for p in per)),
                str(sum(p["connection"] for p in per)),
                str(sum(p["wrong"] for p in per)),
            ]
        )
    rss = [f["rss"] for f in figures]
    growth = [r["after_warmup"]["growth"] for r in rss]
    last = rss[-1]
    series = ", ".join(f"{t:.0f} s {mb:.0f}" for t, mb in last["samples"])
    integrity = [f["integrity"] for f in figures]
    problems = [f["log_problems"] for f in figures]
    codes = [f["exit_codes"] for f in figures]
    return [
        f"{cfg['clients']} clients for {cfg['duration_s']:.0f} s, each sending requests back to "
        f"back, through nginx {cfg['nginx']} ({cfg['nginx_site']} on loopback ports) to a real "
        f"frontend and backend, on a {cfg['rows']:,}-row table. The mix (weights): "
        + ", ".join(f"{k} {w}" for k, w in cfg["weights"].items())
        + ". Latencies in ms; counts and errors are totals over the runs, the rest medians "
        "(range); req/s counts the answers that came before the deadline. After it the runs "
        f"waited {spread([f['config']['drain_s'] for f in figures], '.0f')} s for the last "
        "answers. Targets: no 5xx, no connection errors, memory flat after the warm-up.",
        "",
        *table(
            ["kind", "requests", "req/s", "p50", "p95", "p99", "5xx", "4xx", "conn", "wrong"],
            rows,
        ),
        "",
        f"Backend worker resident memory (VmRSS, MB): idle before the load "
        f"{spread([r['idle'] for r in rss], '.0f')}; growth from the end of the "
        f"{cfg['warmup_s']:g} s warm-up to the end {spread(growth, '+.0f')} MB (target < "
        f"{last['target_growth_mb']:g} MB), peak after warm-up "
        f"{spread([r['after_warmup']['peak'] for r in rss], '.0f')}. The last run, every "
        f"{cfg['rss_every_s']:g} s: {series}; when the last answer had come "
        f"{last['final'][1]:.0f}.",
        "",
        "Datasets holding exactly the rows of their acknowledged uploads after the runs: "
        f"{sum(i['right'] for i in integrity)} of {sum(i['checked'] for i in integrity)} checked "
        f"({sum(i['unknown'] for i in integrity)} whose last upload's outcome was unknown were "
        f"not). Staging or export files left: {sum(f['leftover_files'] for f in figures)}. ERROR "
        f"lines or tracebacks in the server logs: "
        f"{sum(p['backend'] for p in problems)} backend, "
        f"{sum(p['frontend'] for p in problems)} frontend. Exit codes after SIGTERM: "
        + ", ".join(sorted({f"{k} {v}" for c in codes for k, v in c.items()}))
        + ".",
        *errors_seen(figures),
    ]


def errors_seen(figures: list[dict]) -> list[str]:
    notes = [
        f"- {kind}: {' '.join(note.split())}"
        for f in figures
        for kind, row in f["kinds"].items()
        for note in row["samples"]
    ]
    if not notes:
        return []
    # A page's title or an API's message, with the request id nginx and the apps logged.
    return ["", "Failed requests (up to five of each kind per run):", "", *notes]


SECTIONS = {
    "ingest": ingest_section,
    "query": query_section,
    "small_queries": small_queries_section,
    "export": export_section,
    "auth": auth_section,
    "load": load_section,
}


def render(outcomes: list[Outcome], *, runs: int, quick: bool, took_s: float, when: str) -> str:
    command = "python bench/run.py" + (" --quick" if quick else "") + f" --runs {runs}"
    loads = [x for o in outcomes for x in o.load]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on {when} (UTC); the whole run took {took_s / 60:.0f} min. "
        "Do not edit by hand: run it again (`python bench/run.py` for the full run, about "
        f"{FULL_RUN_MIN} min on 2 shared cores; each script in `bench/` also runs alone and "
        "prints its own table).",
        "",
    ]
    if quick:
        lines += [
            "> **This is a `--quick` smoke run**: small tables, short runs and 10 load clients "
            "instead of 50, made to check that the runner works. Its figures do not describe "
            "myapp; the full run (`python bench/run.py`) replaces them.",
            "",
        ]
    lines += [
        f"Every benchmark ran {plural(runs, 'time')}, round by round; figures are medians of "
        "the runs with the range in brackets. The machine is small and was shared with other "
        "work, so figures are indicative: the 1-minute load average was "
        f"{min(loads):.1f}…{max(loads):.1f} at the starts and ends of the runs.",
        "",
        "## Machine",
        "",
        *table(["", ""], [[k, v] for k, v in machine()]),
        "",
        "## Summary",
        "",
    ]
    lines += table(
        ["benchmark", "myapp vs DuckDB alone", "myapp vs Datasette"], summary_rows(outcomes)
    )
    lines += ["", "Speed ratios: 1x is as fast as the other; above 1x myapp is faster."]
    load = next((o.figures for o in outcomes if o.bench.name == "load" and o.figures), None)
    if load:
        errors = sum(f["overall"]["status_5xx"] + f["overall"]["connection"] for f in load)
        lines[-1] += (
            f" Under load ({load[0]['config']['clients']} clients through nginx) myapp answered "
            f"{spread([f['overall']['rps'] for f in load], '.1f')} requests/s with {errors} 5xx "
            f"or connection errors; backend memory grew "
            f"{spread([f['rss']['after_warmup']['growth'] for f in load], '+.0f')} MB after the "
            "warm-up."
        )
    for outcome in outcomes:
        bench = outcome.bench
        lines += ["", f"## {bench.title}", "", f"`python bench/{bench.name}.py` — "]
        lines[-1] += (
            f"{len(outcome.figures)} of {len(outcome.seconds)} runs succeeded, "
            f"{statistics.median(outcome.seconds):.0f} s each (median)."
            if outcome.seconds
            else "not run."
        )
        lines.append("")
        if outcome.figures:
            lines += SECTIONS[bench.name](outcome.figures)
        for failure in outcome.failures:
            lines += ["", "Failed " + failure.split("\n", 1)[0] + ":", "", "```text"]
            lines += [failure.split("\n", 1)[-1], "```"]
    return "\n".join(lines) + "\n"


def summary_rows(outcomes: list[Outcome]) -> list[list[str]]:
    rows = []
    by_name = {o.bench.name: o.figures for o in outcomes if o.figures}
    if "ingest" in by_name:
        values = [f["ratio_best"] for f in by_name["ingest"]]
        rows.append(["CSV ingest throughput", spread(values, ".2f", "x"), "-"])
    if "query" in by_name:
        figures = by_name["query"]
        for label in figures[0]["queries"]:
            per = [f["queries"][label] for f in figures]
            vs_duck = [ratio(p["duckdb_ms"], p["api_ms"]) for p in per]
            vs_lite = [ratio(p["datasette_ms"], p["api_ms"]) for p in per]
            name = re.sub(r"\(\d+M rows\)", "(all rows)", label)
            rows.append(
                [f"query: {name}", spread(vs_duck, ".2f", "x"), spread(vs_lite, ".1f", "x")]
            )
    if "small_queries" in by_name:
        figures = by_name["small_queries"]
        for case in figures[0]["cases"]:
            per = [f["cases"][case] for f in figures]
            api = [p[SMALL_API]["median_ms"] for p in per]
            vs_duck = [ratio(p[SMALL_DUCK]["median_ms"], a) for p, a in zip(per, api, strict=True)]
            vs_lite = [
                ratio(p[SMALL_LITE]["median_ms"], a) if SMALL_LITE in p else None
                for p, a in zip(per, api, strict=True)
            ]
            rows.append(
                [f"small query: {case}", spread(vs_duck, ".2f", "x"), spread(vs_lite, ".2f", "x")]
            )
    if "export" in by_name:
        figures = by_name["export"]
        for fmt in figures[0]["formats"]:
            values = [f["formats"][fmt]["ratio"] for f in figures]
            rows.append([f"export: {fmt}", spread(values, ".2f", "x"), "-"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each benchmark (median)")
    parser.add_argument("--quick", action="store_true", help="small data, short runs")
    parser.add_argument(
        "--only", help="comma-separated benchmarks to run (default: all: "
        + ",".join(b.name for b in BENCHES) + ")",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    chosen = BENCHES
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = set(names) - {b.name for b in BENCHES}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = tuple(b for b in BENCHES if b.name in names)

    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    started = time.monotonic()
    outcomes = [Outcome(bench) for bench in chosen]
    # Round by round, so a change in the machine's load spreads over every benchmark.
    for index in range(1, args.runs + 1):
        for outcome in outcomes:
            run_bench(outcome.bench, index, args.quick, outcome)
    took = time.monotonic() - started
    text = render(outcomes, runs=args.runs, quick=args.quick, took_s=took, when=when)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output} after {took / 60:.1f} min")
    return 1 if any(o.failures for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
