"""Load benchmark: many concurrent clients through nginx for minutes, a mix of what people do.

    python bench/load.py [--clients 50] [--duration 180] [--rows 1000000] [--json PATH]
                         [--heavy-slots N] [--heavy-queue N] [--interactive-only]

Everything runs on this machine, on free 127.0.0.1 ports: a real `myapp serve --role backend`
and `--role frontend` (as the compose file configures them: an admin password, a secret key, one
trusted proxy hop) as subprocesses, and Debian's nginx, unprivileged, with the repository's
nginx config and its upstreams pointed at those ports (nginx/vm.conf when it exists, otherwise
nginx/docker-compose.conf with the service names swapped for loopback addresses). The data is a
generated `events` table (--rows, default 1M) and a 10k-row `customers` table, written as CSV
with DuckDB into bench/.work/load/ (git-ignored) and uploaded through the API into a fresh data
directory on every run.

Each client is a person with an editor account of its own (so the per-account allowances,
MYAPP_MAX_QUERIES_PER_USER and MYAPP_MAX_EXPORTS_PER_USER, apply per client as they would to
people) and signs in once (a session cookie for pages, an API token for /api), and then
sends requests back to back (no think time, unless --think-ms), each kind drawn by weight:
table pages (/datasets/events with sorts, filters, search and facets in the query string), the
facets and profile APIs, POST /api/query of five shapes, 50k-row CSV and Parquet exports (the
query export API and the table page's download), and 1,000-row CSV uploads that create, append
to and replace the client's own dataset (raw PUT, multipart POST and the upload page's PUT).
Answers are checked (row counts, file sizes, Parquet magic); after the run every dataset must
hold exactly the rows of its acknowledged uploads, and no staging or export file may be left.

Heavy work (profiles, exports, uploads) takes turns in the backend (MYAPP_HEAVY_SLOTS, set by
--heavy-slots) and may be answered 503 server_busy with Retry-After when its queue
(--heavy-queue) is full; the clients then wait that long and send again, as myapp.client does,
for up to BUSY_WAIT_S in all. Those 503s are counted as "busy", apart from failures, and a
request's latency includes its waits. --interactive-only sends no heavy work at all: the
latencies the interactive kinds have on their own.

Reported: requests/s, per kind count and p50/p95/p99 latency, busy answers, errors split into
5xx, 4xx, connection errors (refused, reset, timed out) and wrong answers, and the backend worker's
resident memory (VmRSS) every --rss-every seconds. Targets: no 5xx, no connection errors, and
memory flat after the warm-up (--warmup seconds): the median of the last quarter of the samples
after it is less than RSS_GROWTH_TARGET_MB above the median of the first quarter. The load
generator shares the machine with the servers it measures, and on a shared 2-core machine
figures are indicative: the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import httpx
from common import free_port, rss_mb, wait_ready, worker_pid

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
WORK = ROOT / ".work" / "load"
NGINX_VM_CONF = REPO / "nginx" / "vm.conf"
NGINX_COMPOSE_CONF = REPO / "nginx" / "docker-compose.conf"

ADMIN_PASSWORD = "load-bench-password-1234"  # noqa: S105 - a throwaway server on loopback
SECRET_KEY = "load-bench-secret-key-0123456789abcdef"  # noqa: S105 - a throwaway server

# Relative frequency of each kind of request: mostly reading, as a workspace is used.
WEIGHTS = {
    "table page": 30,
    "facets": 12,
    "profile": 6,
    "query": 30,
    "export csv": 5,
    "export parquet": 5,
    "upload": 12,
}
KINDS = tuple(WEIGHTS)
# What a person waits for at the screen, and the bulk work beside it. Targets for the first
# while the second runs: p95 <= 500 ms and p99 <= 1 s; the second's throughput is reported.
INTERACTIVE = ("table page", "facets", "query")
HEAVY = ("profile", "export csv", "export parquet", "upload")
INTERACTIVE_P95_MS = 500.0
INTERACTIVE_P99_MS = 1000.0
EXPORT_ROWS = 50_000
UPLOAD_ROWS = 1_000
CUSTOMERS = 10_000
CATEGORIES = ["books", "games", "music", "films", "tools", "toys", "food", "garden"]
REGIONS = ["north", "south", "east", "west", "centre"]
STATUSES = ["open", "paid", "refunded"]
# As long as nginx waits for an app (proxy_read_timeout): a slower answer is nginx's 504.
REQUEST_TIMEOUT_S = 300.0
# Memory that grows by more than this from the end of the warm-up to the end of the run is
# growth, not noise: the DuckDB buffer pool and allocator arenas settle within the warm-up.
RSS_GROWTH_TARGET_MB = 50.0
# At most this many requests in one run, whatever the duration: a bound on what the run can do.
MAX_REQUESTS = 1_000_000
# As myapp.client: most seconds one request spends waiting out 503 server_busy answers.
BUSY_WAIT_S = 120.0


# -- data ---------------------------------------------------------------------------------------
def generate_events(path: Path, rows: int) -> None:
    if path.exists():
        return
    print(f"generating {path.name} ({rows:,} rows) …", flush=True)
    tmp = path.with_suffix(".tmp")
    cats = ", ".join(f"'{c}'" for c in CATEGORIES)
    regions = ", ".join(f"'{r}'" for r in REGIONS)
    statuses = ", ".join(f"'{s}'" for s in STATUSES)
    duckdb.execute(
        f"""COPY (
            SELECT i AS id,
                   (i * 7919) % {CUSTOMERS} AS customer_id,
                   [{cats}][1 + i % {len(CATEGORIES)}] AS category,
                   [{regions}][1 + (i // 7) % {len(REGIONS)}] AS region,
                   [{statuses}][1 + (i // 3) % {len(STATUSES)}] AS status,
                   round((i * 104729 % 100000) / 100.0, 2)::DOUBLE AS amount,
                   1 + i % 9 AS quantity,
                   TIMESTAMP '2024-01-01' + to_seconds(i * 30) AS at,
                   md5(CAST(i AS VARCHAR)) AS note
            FROM range({int(rows)}) t(i)
        ) TO '{tmp}' (FORMAT csv, HEADER true)"""
    )
    tmp.rename(path)


def generate_customers(path: Path) -> None:
    if path.exists():
        return
    tmp = path.with_suffix(".tmp")
    duckdb.execute(
        f"""COPY (
            SELECT i AS id, 'customer ' || i AS name,
                   ['NO', 'PE', 'IN', 'UA', 'PT', 'FR', 'JP', 'BR', 'KE', 'CA'][1 + i % 10]
                       AS country
            FROM range({CUSTOMERS}) t(i)
        ) TO '{tmp}' (FORMAT csv, HEADER true)"""
    )
    tmp.rename(path)


def small_csv(rng: random.Random, rows: int) -> bytes:
    out = io.StringIO()
    out.write("id,label,amount,day\n")
    base = rng.randrange(1_000_000)
    for i in range(rows):
        out.write(
            f"{base + i},item {rng.randrange(1000)},{rng.uniform(0, 500):.2f},"
            f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}\n"
        )
    return out.getvalue().encode()


# -- nginx --------------------------------------------------------------------------------------
def loopback_site(text: str, *, listen: int, backend: int, frontend: int, log: Path) -> str:
    """The repository's nginx site with its upstreams and listener moved to loopback ports.

    Works on nginx/vm.conf (upstreams 127.0.0.1:12000/12001) and on nginx/docker-compose.conf
    (upstreams by service name, resolved by Docker's DNS, which does not exist here).
    """
    text = re.sub(r"(?m)^\s*resolver(_timeout)?\s[^;]*;", "", text)
    text = re.sub(r"(?:127\.0\.0\.1|localhost|backend):12000\b", f"127.0.0.1:{backend}", text)
    text = re.sub(r"(?:127\.0\.0\.1|localhost|frontend):12001\b", f"127.0.0.1:{frontend}", text)
    # Every plain-HTTP listener becomes ours; HTTPS (a certificate include) is left out.
    text = re.sub(
        r"(?m)^(\s*)listen\s+[^;]*?\b(?:80|8080)\b([^;]*);",
        lambda m: (
            f"{m.group(1)}listen 127.0.0.1:{listen}"
            + (" default_server" if "default_server" in m.group(2) else "")
            + ";"
        ),
        text,
    )
    text = re.sub(r"(?m)^\s*listen\s+[^;]*\b443\b[^;]*;", "", text)
    text = re.sub(r"(?m)^\s*include\s+[^;]*certs/[^;]*;", "", text)
    text = re.sub(r"(?m)^(\s*)access_log\s+[^;]*?(\s+\w+)?;", rf"\1access_log {log}\2;", text)
    directives = re.sub(r"(?m)#.*$", "", text)
    for port in (12000, 12001):
        if f":{port}" in directives:
            raise RuntimeError(f"the nginx config still names port {port} after rewriting")
    return text


def nginx_prefix(work: Path, *, listen: int, backend: int, frontend: int) -> tuple[Path, str]:
    """A prefix directory with an nginx.conf like the nginx image's own, including the site.

    Returns the nginx.conf and the site file it was made from."""
    prefix = work / "nginx"
    shutil.rmtree(prefix, ignore_errors=True)
    temp = prefix / "temp"
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / name).mkdir(parents=True)
        # Workers run as nobody when nginx starts as root.
        (temp / name).chmod(0o777)
    for directory in (prefix, temp):
        directory.chmod(0o755)
    source = NGINX_VM_CONF if NGINX_VM_CONF.exists() else NGINX_COMPOSE_CONF
    snippets = REPO / "nginx" / "snippets"
    if snippets.is_dir():
        (prefix / "snippets").symlink_to(snippets)
    site = loopback_site(
        source.read_text(),
        listen=listen,
        backend=backend,
        frontend=frontend,
        log=prefix / "access.log",
    )
    if re.search(r"(?m)^\s*http\s*\{", site):
        conf = prefix / "nginx.conf"
        conf.write_text(site)
        return conf, source.name
    (prefix / "conf.d").mkdir()
    (prefix / "conf.d" / "default.conf").write_text(site)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""# Stand-in for the nginx image's /etc/nginx/nginx.conf (worker_processes auto).
worker_processes auto;
error_log {prefix}/error.log notice;
pid {prefix}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    sendfile on;
    keepalive_timeout 65;
    include {prefix}/conf.d/*.conf;
}}
"""
    )
    return conf, source.name


def nginx_version() -> str:
    try:
        result = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10)
    except OSError:
        return "not installed"
    return result.stderr.strip().split("/", 1)[-1]


# -- servers ------------------------------------------------------------------------------------
@dataclass
class Stack:
    work: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    backend_port: int = 0
    frontend_port: int = 0
    nginx_port: int = 0
    backend_master: int = 0
    site_source: str = ""
    # Settings beyond the compose file's (--export-threads, --web-threads).
    backend_env: dict[str, str] = field(default_factory=dict)
    frontend_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    def _serve(self, role: str, port: int, env: dict[str, str]) -> subprocess.Popen:
        full = {k: v for k, v in os.environ.items() if not k.startswith("MYAPP_")}
        full.update({"MYAPP_LOG_LEVEL": "warning", **env})
        log = self.work / f"{role}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "myapp", "serve", "--role", role, "--port", str(port)],
            env=full,
            cwd=self.work,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        health = "/healthz" if role == "frontend" else "/api/health"
        wait_ready(f"http://127.0.0.1:{port}{health}", proc, log)
        return proc

    def start(self) -> None:
        self.backend_port, self.frontend_port, self.nginx_port = (free_port() for _ in range(3))
        backend = self._serve(
            "backend",
            self.backend_port,
            {
                "MYAPP_DATA_DIR": str(self.data_dir),
                "MYAPP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                **self.backend_env,
            },
        )
        self.backend_master = backend.pid
        self._serve(
            "frontend",
            self.frontend_port,
            {
                "MYAPP_BACKEND_URL": f"http://127.0.0.1:{self.backend_port}",
                "MYAPP_SECRET_KEY": SECRET_KEY,
                "MYAPP_PROXY_HOPS": "1",
                **self.frontend_env,
            },
        )
        conf, self.site_source = nginx_prefix(
            self.work,
            listen=self.nginx_port,
            backend=self.backend_port,
            frontend=self.frontend_port,
        )
        command = ["nginx", "-p", f"{conf.parent}/", "-c", str(conf)]
        check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"nginx refused the config: {check.stderr}")
        log = conf.parent / "nginx.out"
        nginx = subprocess.Popen(
            [*command, "-g", "daemon off;"], stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        self.procs.append(nginx)
        wait_ready(self.url + "/healthz", nginx, log, timeout_s=30)

    def stop(self) -> dict[str, int | None]:
        """Stop nginx, the frontend and the backend (in that order); their exit codes."""
        codes: dict[str, int | None] = {}
        named = list(zip(("backend", "frontend", "nginx"), self.procs, strict=False))
        for name, proc in reversed(named):
            if proc.poll() is None:
                # nginx: QUIT is its graceful stop; gunicorn: TERM drains and exits.
                proc.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
            try:
                codes[name] = proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        return codes

    def log_problems(self) -> dict[str, int]:
        """Tracebacks and ERROR lines in each server's log."""
        counts = {}
        for role in ("backend", "frontend"):
            text = (self.work / f"{role}.log").read_text(errors="replace")
            counts[role] = text.count("Traceback") + len(re.findall(r"\bERROR\b", text))
        return counts


# -- the clients --------------------------------------------------------------------------------
class WrongAnswer(Exception):
    """A 2xx answer whose content is not what the request must give."""


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    count: int = 0
    status_5xx: int = 0
    status_4xx: int = 0
    # 503 server_busy answers (sent again after Retry-After), not failures.
    busy: int = 0
    connection: int = 0
    wrong: int = 0
    # Answers that came before the deadline: requests/s is these over the duration, so that one
    # slow answer the run waits for at the end does not dilute it.
    in_time: int = 0
    samples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(text[:300])


@dataclass
class Run:
    url: str
    rows: int
    deadline: float
    think_s: float
    api_token: str
    # Each client's own API token (its own account), by client index.
    client_tokens: list[str] = field(default_factory=list)
    started: float = 0.0
    tallies: dict[str, Tally] = field(default_factory=lambda: {k: Tally() for k in KINDS})
    issued: int = 0
    # dataset name -> rows it must hold (None once an upload's outcome is unknown)
    expected: dict[str, int | None] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=lambda: dict(WEIGHTS))


class Client:
    """One person: a browser session for pages and an API token for /api, one connection."""

    def __init__(self, run: Run, index: int, cookies: httpx.Cookies) -> None:
        self.run = run
        self.index = index
        self.rng = random.Random(index)
        self.http = httpx.AsyncClient(
            base_url=run.url,
            cookies=cookies,
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            event_hooks={"request": [self._tag]},
        )
        self.sent = 0
        self.api_headers = {"Authorization": f"Bearer {run.client_tokens[index]}"}
        self.page_headers = {"Origin": run.url}
        self.dataset = f"load_client_{index:03d}"
        self.uploads = 0

    async def close(self) -> None:
        await self.http.aclose()

    async def _tag(self, request: httpx.Request) -> None:
        # nginx, the frontend and the backend log this id: a failure here can be found there.
        self.sent += 1
        request.headers["X-Request-ID"] = f"load-{self.index}-{self.sent}"

    # -- one request of each kind: the response, or WrongAnswer / an httpx error raised
    async def table_page(self) -> httpx.Response:
        rng = self.rng
        variants = [
            [],
            [("sort", "-amount")],
            [("category__eq", rng.choice(CATEGORIES)), ("sort", "at")],
            [("region__in", ",".join(rng.sample(REGIONS, 2))), ("amount__gt", "500")],
            [("status__eq", rng.choice(STATUSES)), ("sort", "-id"), ("limit", "100")],
            [("q", f"{rng.randrange(16**3):03x}")],
            [("offset", str(rng.randrange(0, 200) * 50))],
            [("facet", "category"), ("facet", "status"), ("quantity__gte", "5")],
        ]
        params = rng.choice(variants)
        response = await self.http.get("/datasets/events", params=params)
        if response.status_code == 200 and "<table" not in response.text:
            raise WrongAnswer("the table page has no table")
        return response

    async def facets(self) -> httpx.Response:
        rng = self.rng
        params = [("column", "category"), ("column", "region"), ("column", "status")]
        if rng.random() < 0.5:
            params.append(("amount__lt", str(rng.randrange(50, 1000))))
        response = await self.http.get(
            "/api/datasets/events/facets", params=params, headers=self.api_headers
        )
        if response.status_code == 200:
            facets = response.json()["facets"]
            if not all(facets.get(c) for c in ("category", "region", "status")):
                raise WrongAnswer(f"facets missing: {facets}")
        return response

    async def profile(self) -> httpx.Response:
        # The big table's profile is cached per version; the clients' own datasets change.
        if self.rng.random() < 0.3 and self.run.expected.get(self.dataset):
            path = f"/api/datasets/{self.dataset}/profile"
        elif self.rng.random() < 0.5:
            response = await self.http.get("/datasets/events/profile")
            if response.status_code == 200 and "amount" not in response.text:
                raise WrongAnswer("the profile page names no column")
            return response
        else:
            path = "/api/datasets/events/profile"
        response = await self.http.get(path, headers=self.api_headers)
        if response.status_code == 200 and not response.json()["columns"]:
            raise WrongAnswer("profile without columns")
        return response

    async def query(self) -> httpx.Response:
        rng = self.rng
        shape = rng.randrange(5)
        expect: int | None = None
        if shape == 0:
            body = {
                "sql": "SELECT * FROM events WHERE id = $id",
                "params": {"id": rng.randrange(self.run.rows)},
            }
            expect = 1
        elif shape == 1:
            body = {
                "sql": "SELECT category, count(*) AS n, sum(amount) AS total FROM events "
                "GROUP BY category ORDER BY category"
            }
            expect = len(CATEGORIES)
        elif shape == 2:
            body = {
                "sql": "SELECT region, avg(amount) AS mean, max(quantity) AS most FROM events "
                'WHERE status = $status AND "at" >= $since GROUP BY region ORDER BY region',
                "params": {"status": rng.choice(STATUSES), "since": "2024-03-01"},
            }
        elif shape == 3:
            body = {
                "sql": "SELECT c.country, count(*) AS n, avg(e.amount) AS mean FROM events e "
                "JOIN customers c ON e.customer_id = c.id GROUP BY c.country ORDER BY c.country"
            }
            expect = 10
        else:
            body = {
                "sql": "SELECT id, amount, note FROM events WHERE category = $category "
                "ORDER BY amount DESC, id LIMIT 100",
                "params": {"category": rng.choice(CATEGORIES)},
            }
            expect = 100
        response = await self.http.post("/api/query", json=body, headers=self.api_headers)
        if response.status_code == 200 and expect is not None:
            got = response.json()["row_count"]
            if got != min(expect, self.run.rows):
                raise WrongAnswer(f"query shape {shape}: {got} rows, expected {expect}")
        return response

    async def export(self, fmt: str) -> httpx.Response:
        start = self.rng.randrange(max(1, self.run.rows - EXPORT_ROWS))
        rows = min(EXPORT_ROWS, self.run.rows)
        if self.rng.random() < 0.5:
            sql = f"SELECT * FROM events WHERE id >= {start} AND id < {start + rows}"
            request = self.http.build_request(
                "GET",
                "/api/query/export",
                params={"sql": sql, "format": fmt},
                headers=self.api_headers,
            )
        else:
            # The table page's download: the same filters as the page, through the frontend.
            request = self.http.build_request(
                "GET",
                "/datasets/events/export",
                params=[("format", fmt), ("id__gte", str(start)), ("id__lt", str(start + rows))],
            )
        response = await self.http.send(request, stream=True)
        try:
            if response.status_code != 200:
                await response.aread()
                return response
            size, newlines, head, tail = 0, 0, b"", b""
            async for chunk in response.aiter_raw(1024 * 1024):
                size += len(chunk)
                newlines += chunk.count(b"\n")
                head = head or chunk[:4]
                tail = (tail + chunk)[-4:]
        finally:
            await response.aclose()
        if fmt == "csv" and newlines != rows + 1:
            raise WrongAnswer(f"CSV export has {newlines} lines, expected {rows + 1}")
        if fmt == "parquet" and (head != b"PAR1" or tail != b"PAR1"):
            raise WrongAnswer(f"not a Parquet file ({size} bytes)")
        return response

    async def upload(self) -> httpx.Response:
        name = self.dataset
        known = self.run.expected.get(name)
        # Create once, then append three times for every replace.
        mode = "create" if known is None else "replace" if self.uploads % 4 == 0 else "append"
        self.uploads += 1
        body = small_csv(self.rng, UPLOAD_ROWS)
        path_kind = self.uploads % 3
        # Until the answer arrives nobody knows whether the upload happened; if it never
        # arrives, that dataset is left out of the final check and the client moves to another.
        self.run.expected[name] = None
        self.dataset = f"load_client_{self.index:03d}_{self.uploads}"
        if path_kind == 0:
            response = await self.http.put(
                f"/api/datasets/{name}",
                params={"mode": mode, "filename": f"{name}.csv"},
                content=body,
                headers={**self.api_headers, "Content-Type": "application/octet-stream"},
            )
        elif path_kind == 1:
            response = await self.http.post(
                "/api/datasets",
                data={"name": name, "mode": mode},
                files={"file": (f"{name}.csv", body, "text/csv")},
                headers=self.api_headers,
            )
        else:
            response = await self.http.put(
                "/datasets/_upload",
                params={"name": name, "mode": mode, "filename": f"{name}.csv"},
                content=body,
                headers={**self.page_headers, "Content-Type": "application/octet-stream"},
            )
        if response.status_code == 201:
            loaded = UPLOAD_ROWS if path_kind == 2 else response.json()["rows_loaded"]
            self.run.expected[name] = loaded + (
                known if known is not None and mode == "append" else 0
            )
            if loaded != UPLOAD_ROWS:
                raise WrongAnswer(f"upload loaded {loaded} rows, not {UPLOAD_ROWS}")
        elif 400 <= response.status_code < 500 or is_busy(response):
            # Refused: nothing changed.
            if known is None:
                del self.run.expected[name]
            else:
                self.run.expected[name] = known
        else:
            return response
        self.dataset = name
        return response

    async def one(self, kind: str) -> httpx.Response:
        if kind == "table page":
            return await self.table_page()
        if kind == "facets":
            return await self.facets()
        if kind == "profile":
            return await self.profile()
        if kind == "query":
            return await self.query()
        if kind == "export csv":
            return await self.export("csv")
        if kind == "export parquet":
            return await self.export("parquet")
        return await self.upload()

    async def one_waiting(self, kind: str, tally: Tally) -> httpx.Response:
        """One request of a kind, sent again after each 503 server_busy's Retry-After (as
        myapp.client does), for up to BUSY_WAIT_S in all."""
        waited = 0.0
        while True:
            response = await self.one(kind)
            if not is_busy(response):
                return response
            tally.busy += 1
            try:
                delay = max(0.1, float(response.headers["Retry-After"]))
            except ValueError:
                delay = 2.0
            delay *= 1 + self.rng.random() * 0.2
            if waited + delay > BUSY_WAIT_S:
                return response
            await asyncio.sleep(delay)
            waited += delay

    async def work(self) -> None:
        run = self.run
        kinds = [k for k, w in run.weights.items() if w > 0]
        weights = [run.weights[k] for k in kinds]
        while time.monotonic() < run.deadline and run.issued < MAX_REQUESTS:
            run.issued += 1
            kind = self.rng.choices(kinds, weights)[0]
            tally = run.tallies[kind]
            started = time.perf_counter()
            try:
                response = await self.one_waiting(kind, tally)
            except httpx.TransportError as exc:
                tally.connection += 1
                try:
                    rid = exc.request.headers.get("X-Request-ID")
                except RuntimeError:  # raised before a request existed
                    rid = None
                tally.note(f"{type(exc).__name__} {exc} after {time.perf_counter() - started:.0f} s"
                           f" ({rid})")  # fmt: skip
            except WrongAnswer as exc:
                tally.wrong += 1
                tally.note(str(exc))
            else:
                status = response.status_code
                if status >= 500:
                    tally.status_5xx += 1
                    tally.note(describe(response))
                elif status >= 400:
                    tally.status_4xx += 1
                    tally.note(describe(response))
            tally.count += 1
            tally.in_time += time.monotonic() <= run.deadline
            tally.latencies.append((time.perf_counter() - started) * 1000)
            if run.think_s:
                await asyncio.sleep(run.think_s)


def is_busy(response: httpx.Response) -> bool:
    """A 503 that says when to come back: the backend's server_busy (JSON), or a page the
    frontend made of it (the same Retry-After). nginx's own 503 has no Retry-After."""
    return response.status_code == 503 and "Retry-After" in response.headers


def describe(response: httpx.Response) -> str:
    """A refusal in one line: status, path, request id and the message (JSON) or title (page)."""
    text = response.text
    title = re.search(r"<title>(.*?)</title>", text, re.S)
    message = " ".join(title.group(1).split()) if title else text[:200]
    rid = response.request.headers.get("X-Request-ID")
    return f"{response.status_code} {response.request.url.path} ({rid}): {message}"


async def sample_rss(
    pid: int, every_s: float, stop: asyncio.Event, started: float
) -> list[tuple[float, float]]:
    samples = []
    while True:
        samples.append((round(time.monotonic() - started, 1), round(rss_mb(pid), 1)))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            samples.append((round(time.monotonic() - started, 1), round(rss_mb(pid), 1)))
            return samples
        except TimeoutError:
            pass


def client_name(index: int) -> str:
    return f"load-client-{index:03d}"


def make_accounts(url: str, admin_token: str, count: int) -> list[str]:
    """An editor account per client and an API token of its own; the tokens, by index."""
    tokens = []
    with httpx.Client(base_url=url, timeout=60) as http:
        admin = {"Authorization": f"Bearer {admin_token}"}
        for index in range(count):
            name = client_name(index)
            http.post(
                "/api/users",
                json={"username": name, "password": ADMIN_PASSWORD, "role": "editor"},
                headers=admin,
            ).raise_for_status()
            credentials = {"username": name, "password": ADMIN_PASSWORD}
            login = http.post("/api/auth/login", json=credentials)
            login.raise_for_status()
            own = {"Authorization": f"Bearer {login.json()['token']}"}
            made = http.post("/api/tokens", json={"name": "load", "scope": "editor"}, headers=own)
            made.raise_for_status()
            tokens.append(made.json()["token"])
    return tokens


async def sign_in(url: str, count: int) -> list[httpx.Cookies]:
    """One browser session per client, through the sign-in page (as people get theirs)."""
    jars = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for index in range(count):
            http.cookies.clear()
            response = await http.post(
                "/login",
                data={"username": client_name(index), "password": ADMIN_PASSWORD, "next": "/"},
                headers={"Origin": url},
            )
            if response.status_code != 302 or "myapp_session" not in http.cookies:
                raise RuntimeError(f"sign-in failed: {response.status_code} {response.text[:300]}")
            jars.append(httpx.Cookies(http.cookies))
    return jars


async def drive(
    url: str,
    *,
    clients: int,
    duration_s: float,
    rows: int,
    think_s: float,
    api_token: str,
    client_tokens: list[str],
    pid: int,
    rss_every_s: float,
    weights: dict[str, int],
) -> tuple[Run, list[tuple[float, float]], float]:
    jars = await sign_in(url, clients)
    run = Run(
        url=url,
        rows=rows,
        deadline=0.0,
        think_s=think_s,
        api_token=api_token,
        client_tokens=client_tokens,
        weights=weights,
    )
    people = [Client(run, i, jar) for i, jar in enumerate(jars)]
    # The clock starts once every client exists (each builds its own connection pool).
    started = run.started = time.monotonic()
    run.deadline = started + duration_s
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pid, rss_every_s, stop, started))
    try:
        await asyncio.gather(*(p.work() for p in people))
    finally:
        elapsed = time.monotonic() - started
        stop.set()
        samples = await sampler
        for p in people:
            await p.close()
    return run, samples, elapsed


# -- figures ------------------------------------------------------------------------------------
def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p95 and p99 of the values (nearest rank), None when there are none."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        index = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
        return round(ordered[index], 1)

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99)}


def rss_summary(
    samples: list[tuple[float, float]], warmup_s: float, end_s: float
) -> dict[str, float | None]:
    """Resident memory after the warm-up: at its start and at the end (each the median of a
    quarter of the samples after the warm-up, so that one export's passing peak is not taken
    for growth), the growth between them, the peak, and the least-squares slope (MB/min)."""
    after = [(t, mb) for t, mb in samples if warmup_s <= t <= end_s]
    if len(after) < 2:
        return {"at_warmup": None, "end": None, "growth": None, "peak": None, "slope": None}
    times = [t for t, _ in after]
    values = [mb for _, mb in after]
    slope = statistics.linear_regression(times, values).slope * 60 if len(set(times)) > 1 else 0.0
    window = max(1, len(values) // 4)
    start, end = statistics.median(values[:window]), statistics.median(values[-window:])
    return {
        "at_warmup": round(start, 1),
        "end": round(end, 1),
        "growth": round(end - start, 1),
        "peak": max(values),
        "slope": round(slope, 2),
    }


def summarize(run: Run, duration_s: float) -> dict[str, dict]:
    kinds: dict[str, dict] = {}
    every: list[float] = []
    totals = {
        "count": 0,
        "in_time": 0,
        "status_5xx": 0,
        "status_4xx": 0,
        "busy": 0,
        "connection": 0,
        "wrong": 0,
    }
    for kind, tally in run.tallies.items():
        every += tally.latencies
        row = {
            "count": tally.count,
            "rps": round(tally.in_time / duration_s, 2),
            **percentiles(tally.latencies),
            "status_5xx": tally.status_5xx,
            "status_4xx": tally.status_4xx,
            "busy": tally.busy,
            "connection": tally.connection,
            "wrong": tally.wrong,
            "in_time": tally.in_time,
            "samples": tally.samples,
        }
        for key in totals:
            totals[key] += row[key]
        kinds[kind] = row
    overall = {**totals, "rps": round(totals["in_time"] / duration_s, 2), **percentiles(every)}
    groups = {}
    for name, members in (("interactive", INTERACTIVE), ("heavy", HEAVY)):
        tallies = [run.tallies[k] for k in members if k in run.tallies]
        latencies = [ms for tally in tallies for ms in tally.latencies]
        in_time = sum(tally.in_time for tally in tallies)
        groups[name] = {
            "kinds": list(members),
            "count": sum(tally.count for tally in tallies),
            "rps": round(in_time / duration_s, 2),
            "busy": sum(tally.busy for tally in tallies),
            **percentiles(latencies),
        }
    return {"kinds": kinds, "overall": overall, "groups": groups}


async def check_data(url: str, token: str, run: Run, rows: int) -> dict[str, int]:
    """Every dataset holds the rows its acknowledged uploads put there."""
    result = {"checked": 0, "right": 0, "unknown": 0, "wrong": 0}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as http:
        expected: dict[str, int | None] = {"events": rows, "customers": CUSTOMERS, **run.expected}
        for name, count in expected.items():
            if count is None:
                result["unknown"] += 1
                continue
            response = await http.get(f"/api/datasets/{name}")
            result["checked"] += 1
            if response.status_code == 200 and response.json()["row_count"] == count:
                result["right"] += 1
            else:
                result["wrong"] += 1
                print(f"  {name}: expected {count} rows, got {response.text[:200]}")
    return result


def leftover_files(data_dir: Path) -> int:
    return sum(
        1
        for sub in (".staging", ".exports")
        if (data_dir / sub).is_dir()
        for entry in (data_dir / sub).iterdir()
    )


def seed(url: str, work: Path, rows: int) -> tuple[str, str]:
    """Upload the tables through the API as the admin; returns the admin's session token and an
    editor API token."""
    events = work / f"events-{rows}.csv"
    customers = work / "customers.csv"
    generate_events(events, rows)
    generate_customers(customers)
    with httpx.Client(base_url=url, timeout=600) as http:
        login = http.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        login.raise_for_status()
        admin = {"Authorization": f"Bearer {login.json()['token']}"}
        made = http.post("/api/tokens", json={"name": "load", "scope": "editor"}, headers=admin)
        made.raise_for_status()
        token = made.json()["token"]
        for name, path in (("events", events), ("customers", customers)):
            with path.open("rb") as body:
                answer = http.put(
                    f"/api/datasets/{name}",
                    params={"filename": path.name},
                    content=body,
                    headers={**admin, "Content-Type": "application/octet-stream"},
                )
            if answer.status_code != 201:
                raise RuntimeError(f"seeding {name} failed: {answer.text[:500]}")
    return login.json()["token"], token


def print_report(result: dict) -> None:
    cfg = result["config"]
    print()
    print(
        f"Load: {cfg['clients']} clients for {cfg['duration_s']:.0f} s through nginx "
        f"{cfg['nginx']} ({cfg['nginx_site']}, loopback) to the frontend and backend; "
        f"{cfg['rows']:,}-row table; load average {' '.join(f'{x:.2f}' for x in result['load'])}"
        f" on {os.cpu_count()} cores (shared: figures are indicative)"
    )
    header = (
        f"{'kind':<15}{'count':>8}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'busy':>6}{'5xx':>6}{'4xx':>6}{'conn':>6}{'wrong':>7}"
    )
    print(header)
    print("-" * len(header))

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    for kind, row in [*result["kinds"].items(), ("all", result["overall"])]:
        if kind == "all":
            print("-" * len(header))
        print(
            f"{kind:<15}{row['count']:>8}{row['rps']:>8.1f}{ms(row['p50']):>9}{ms(row['p95']):>9}"
            f"{ms(row['p99']):>9}{row.get('busy', 0):>6}{row['status_5xx']:>6}"
            f"{row['status_4xx']:>6}"
            f"{row['connection']:>6}{row['wrong']:>7}"
        )
    for kind, row in result["kinds"].items():
        for sample in row["samples"]:
            print(f"  {kind}: {sample}")
    groups = result.get("groups")
    if groups:
        inter, heavy = groups["interactive"], groups["heavy"]
        met = (
            inter["p95"] is not None
            and inter["p95"] <= INTERACTIVE_P95_MS
            and inter["p99"] <= INTERACTIVE_P99_MS
        )
        print()
        print(
            f"interactive ({', '.join(inter['kinds'])}): {inter['count']} requests, "
            f"p50 {ms(inter['p50'])} ms, p95 {ms(inter['p95'])} ms, p99 {ms(inter['p99'])} ms "
            f"(target p95 <= {INTERACTIVE_P95_MS:.0f}, p99 <= {INTERACTIVE_P99_MS:.0f}: "
            f"{'met' if met else 'NOT met'})"
        )
        print(
            f"heavy work beside it ({', '.join(heavy['kinds'])}): {heavy['count']} done, "
            f"{heavy['rps']:.2f}/s, p50 {ms(heavy['p50'])} ms, p95 {ms(heavy['p95'])} ms, "
            f"{heavy.get('busy', 0)} busy answers (503 server_busy, waited out and sent again)"
        )
        print(
            f"in one line: interactive p50/p95/p99 {ms(inter['p50'])}/{ms(inter['p95'])}/"
            f"{ms(inter['p99'])} ms, heavy {heavy['rps']:.2f} ops/s (heavy slots "
            f"{cfg.get('heavy_slots') or 'default'}, queue {cfg.get('heavy_queue') or 'default'})"
        )
    rss = result["rss"]
    print()
    print(f"backend worker RSS (MB) every {cfg['rss_every_s']:g} s, idle before the load "
          f"{rss['idle']:.0f}:")  # fmt: skip
    samples = rss["samples"]
    for start in range(0, len(samples), 8):
        print("  " + "  ".join(f"{t:>5.0f}s {mb:>6.0f}" for t, mb in samples[start : start + 8]))
    t, mb = rss["final"]
    print(f"  {mb:.0f} MB at {t:.0f} s, when the last answer had come ({cfg['drain_s']:.0f} s "
          "after the deadline)")  # fmt: skip
    summary = rss["after_warmup"]
    if summary["growth"] is not None:
        flat = summary["growth"] < RSS_GROWTH_TARGET_MB
        print(
            f"after the {cfg['warmup_s']:g} s warm-up: {summary['at_warmup']:.0f} → "
            f"{summary['end']:.0f} MB (growth {summary['growth']:+.0f} MB, peak "
            f"{summary['peak']:.0f}, slope {summary['slope']:+.1f} MB/min; target growth < "
            f"{RSS_GROWTH_TARGET_MB:g} MB: {'met' if flat else 'NOT met'})"
        )
    data = result["integrity"]
    print(
        f"datasets with exactly the rows of their acknowledged uploads: {data['right']}/"
        f"{data['checked']} ({data['unknown']} with an upload of unknown outcome not checked); "
        f"staging/export files left: {result['leftover_files']}; ERROR lines or tracebacks in "
        f"the logs: {result['log_problems']}; exit codes: {result['exit_codes']}"
    )
    overall = result["overall"]
    met = overall["status_5xx"] == 0 and overall["connection"] == 0
    print(f"target: no 5xx and no connection errors: {'met' if met else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the events table")
    parser.add_argument("--warmup", type=float, default=None, help="seconds (default: 30)")
    parser.add_argument("--rss-every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--think-ms", type=float, default=0.0, help="pause after each request")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument("--export-threads", type=int, help="MYAPP_EXPORT_WORKER_THREADS")
    parser.add_argument("--web-threads", type=int, help="MYAPP_WEB_THREADS of the frontend")
    parser.add_argument("--heavy-slots", type=int, help="MYAPP_HEAVY_SLOTS of the backend")
    parser.add_argument("--heavy-queue", type=int, help="MYAPP_HEAVY_QUEUE of the backend")
    parser.add_argument(
        "--interactive-only",
        action="store_true",
        help="only table pages, facets and queries: no profiles, exports or uploads",
    )
    args = parser.parse_args()
    if args.clients < 1 or args.duration <= 0:
        parser.error("--clients and --duration must be positive")
    warmup = args.warmup if args.warmup is not None else min(30.0, args.duration / 4)

    WORK.mkdir(parents=True, exist_ok=True)
    run_dir = WORK / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    stack = Stack(run_dir)
    if args.export_threads:
        stack.backend_env["MYAPP_EXPORT_WORKER_THREADS"] = str(args.export_threads)
    if args.web_threads:
        stack.frontend_env["MYAPP_WEB_THREADS"] = str(args.web_threads)
    if args.heavy_slots is not None:
        stack.backend_env["MYAPP_HEAVY_SLOTS"] = str(args.heavy_slots)
    if args.heavy_queue is not None:
        stack.backend_env["MYAPP_HEAVY_QUEUE"] = str(args.heavy_queue)
    weights = {k: 0 if args.interactive_only and k in HEAVY else w for k, w in WEIGHTS.items()}
    exit_codes: dict[str, int | None] = {}
    try:
        stack.start()
        admin_token, token = seed(stack.url, WORK, args.rows)
        client_tokens = make_accounts(stack.url, admin_token, args.clients)
        pid = worker_pid(stack.backend_master)
        time.sleep(1.0)
        idle = rss_mb(pid)
        print(f"{args.clients} clients for {args.duration:g} s through {stack.url} …", flush=True)
        run, samples, elapsed = asyncio.run(
            drive(
                stack.url,
                clients=args.clients,
                duration_s=args.duration,
                rows=args.rows,
                think_s=args.think_ms / 1000,
                api_token=token,
                client_tokens=client_tokens,
                pid=pid,
                rss_every_s=args.rss_every,
                weights=weights,
            )
        )
        load = os.getloadavg()
        integrity = asyncio.run(check_data(stack.url, token, run, args.rows))
    finally:
        exit_codes = stack.stop()
    result = {
        "config": {
            "clients": args.clients,
            "duration_s": args.duration,
            "elapsed_s": round(elapsed, 1),
            # How long the last answers took to come after the deadline.
            "drain_s": round(max(0.0, elapsed - args.duration), 1),
            "rows": args.rows,
            "warmup_s": warmup,
            "rss_every_s": args.rss_every,
            "think_ms": args.think_ms,
            "export_threads": args.export_threads,
            "web_threads": args.web_threads,
            "heavy_slots": args.heavy_slots,
            "heavy_queue": args.heavy_queue,
            "interactive_only": args.interactive_only,
            "weights": weights,
            "nginx": nginx_version(),
            "nginx_site": f"nginx/{stack.site_source}",
        },
        **summarize(run, args.duration),
        "rss": {
            "idle": round(idle, 1),
            # During the load; `final` when the last answer had come.
            "samples": [(t, mb) for t, mb in samples if t <= args.duration],
            "final": samples[-1],
            "after_warmup": rss_summary(samples, warmup, args.duration),
            "target_growth_mb": RSS_GROWTH_TARGET_MB,
        },
        "integrity": integrity,
        "leftover_files": leftover_files(stack.data_dir),
        "log_problems": stack.log_problems(),
        "exit_codes": exit_codes,
        "load": list(load),
    }
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    growth = result["rss"]["after_warmup"]["growth"]
    ok = (
        result["overall"]["status_5xx"] == 0
        and result["overall"]["connection"] == 0
        and integrity["wrong"] == 0
        and (growth is None or growth < RSS_GROWTH_TARGET_MB)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
