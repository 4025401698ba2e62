"""docker-compose.lake.yml's cluster, emulated: every service in a network namespace of its own on
one bridge, as on separate machines, and everything a user does going through nginx.

- postgres: a private cluster from Debian's packages (tests/support/postgres.py) listening on
  the service's address and port 5432, with the user, database and password the compose file
  gives the backends.
- backend-a, backend-b: the image's command with the compose file's environment on DuckDB 1.4.4
  (the lake image's packages), each in network, PID and mount namespaces (a container,
  tests/deploy/containers.py). The lake volume is one directory bind-mounted inside each
  backend's own mount namespace, as a shared filesystem is mounted on every host: the mount
  point stays empty from outside. Each keeps a local data directory of its own.
- frontend: reaches the API as http://nginx:8080, nginx's internal listener, as in the compose
  file; nginx: Debian's, running nginx/docker-compose.lake.conf unchanged, its upstream resolved
  through the namespace's /etc/hosts and its `resolver` answered by tests/deploy/dnsstub.py.
- the test's client runs in the bridge's namespace (the Docker host); nothing is sent from the
  host's own namespace, and the request ids in the backends' logs say which one answered.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.deploy.containers import RunningContainer, run_container
from tests.deploy.files import (
    ROOT,
    container,
    nginx_prefix,
    parse_volume,
    read_compose,
    read_image,
    service_environment,
)
from tests.deploy.netns import ComposeNetwork, require_netns, wait_until
from tests.support import postgres

pytestmark = [pytest.mark.lake, pytest.mark.deploy]

COMPOSE_FILE = ROOT / "docker-compose.lake.yml"
DNS_STUB = ROOT / "tests" / "deploy" / "dnsstub.py"
SERVICES = ["postgres", "backend-a", "backend-b", "frontend", "nginx"]
BACKENDS = ("backend-a", "backend-b")
ROWS = 2000
CSV = "id,region,amount\n" + "".join(
    f"{i},{('north', 'south', 'east')[i % 3]},{i * 10}\n" for i in range(ROWS)
)
# Bind-mounts the shared lake directory at the mount point, then runs the server in its place.
MOUNT = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'


@dataclass
class Cluster:
    net: ComposeNetwork
    tmp: Path
    compose: dict
    dotenv: dict[str, str]
    lake_python: Path
    shared: Path  # the lake volume, as the file server holds it
    mount_point: Path  # where every backend mounts it (MYAPP_LAKE_DATA_PATH)
    stack: contextlib.ExitStack
    running: dict[str, RunningContainer] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.net.addresses['nginx']}"

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.dotenv['MYAPP_ADMIN_TOKEN']}"}

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def start_service(self, name: str) -> RunningContainer:
        service = self.compose["services"][name]
        mounts = {}
        for spec in service.get("volumes", []):
            source, target, _ = parse_volume(spec)
            mounts[target] = self.mount_point if source == "lake-data" else self.tmp / source
            if source != "lake-data":
                mounts[target].mkdir(exist_ok=True)
        spec = container(
            read_image(),
            environment=service_environment(service, self.dotenv),
            command=service.get("command"),
            healthcheck=service["healthcheck"]["test"],
            mounts=mounts,
            workdir=self.tmp / f"{name}-app",
        )
        # The lake image's venv: DuckDB 1.4.4 with the extensions, running this checkout.
        assert spec.argv[0] == "myapp", spec.argv
        spec.argv = [str(self.lake_python), "-m", "myapp", *spec.argv[1:]]
        spec.env["PATH"] = f"{self.lake_python.parent}:{spec.env['PATH']}"
        if os.environ.get("PYTHONPATH"):
            spec.env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        if "MYAPP_LAKE_DATA_PATH" in spec.env:
            spec.argv = ["sh", "-c", MOUNT, "mount", str(self.shared), str(self.mount_point),
                         *spec.argv]  # fmt: skip
        running = self.stack.enter_context(
            run_container(spec, self.log(name), netns=self.net.ns(name))
        )
        self.running[name] = running
        return running

    def rids_in(self, name: str) -> set[str]:
        return set(re.findall(r" rid=(\S+)", self.log(name).read_text(errors="replace")))


@pytest.fixture
def cluster(lake_python, tmp_path) -> Iterator[Cluster]:
    try:
        postgres.server_bin()
    except postgres.Unavailable as exc:
        pytest.skip(str(exc))
    require_netns()
    nginx_binary = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if nginx_binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed; .ci/run must install nginx-light")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    compose = read_compose(COMPOSE_FILE)
    dotenv = {
        "MYAPP_SECRET_KEY": secrets.token_urlsafe(32),
        "MYAPP_ADMIN_PASSWORD": "lake-" + secrets.token_urlsafe(12),
        "MYAPP_ADMIN_TOKEN": "myapp-admin-" + secrets.token_urlsafe(24),
    }
    certs = tmp_path / "certs"
    certs.mkdir()
    shared, mount_point = tmp_path / "lake-volume", tmp_path / "mnt-lake"
    shared.mkdir()
    mount_point.mkdir()
    temp = Path(tempfile.mkdtemp(prefix="myapp-nginx-"))
    nginx_conf = nginx_prefix(
        compose["services"]["nginx"], tmp_path / "nginx", {"./nginx/certs": certs}, temp
    )
    net = ComposeNetwork(SERVICES)
    with contextlib.ExitStack() as exits:
        exits.callback(shutil.rmtree, temp, ignore_errors=True)
        exits.callback(net.down)
        net.up()
        catalog = exits.enter_context(
            postgres.running_cluster(
                netns=net.ns("postgres"),
                listen=net.addresses["postgres"],
                port=5432,
                database="myapp",
            )
        )
        dotenv["POSTGRES_PASSWORD"] = catalog.password
        lake = Cluster(net, tmp_path, compose, dotenv, lake_python[0], shared, mount_point, exits)
        net.start(
            "nginx",
            [sys.executable, str(DNS_STUB), str(net.hosts_file(net.ns("nginx")))],
            env={"PATH": "/usr/bin:/bin"},
            cwd=tmp_path,
            log=lake.log("dns"),
        )
        wait_until(lambda: "ready" in lake.log("dns").read_text(), 10, "the DNS stand-in")
        # compose's order: the backends (after postgres is healthy), nginx, the frontend.
        backends = [lake.start_service(name) for name in BACKENDS]
        for backend in backends:
            backend.wait_healthy(timeout_s=90)
        net.start(
            "nginx",
            [nginx_binary, "-p", f"{nginx_conf.parent}/", "-c", str(nginx_conf),
             "-g", "daemon off;"],
            env={"PATH": "/usr/sbin:/usr/bin:/bin"},
            cwd=tmp_path,
            log=lake.log("nginx"),
        )  # fmt: skip
        lake.start_service("frontend").wait_healthy(timeout_s=60)
        yield lake


def test_two_backends_on_two_hosts_behind_nginx(cluster: Cluster):
    admin = cluster.admin
    with cluster.net.client("host") as call:

        def send(method: str, path: str, rid: str | None = None, **kw) -> httpx.Response:
            headers = {**kw.pop("headers", {}), "X-Request-ID": rid or new_rid()}
            return call(
                lambda: httpx.request(method, cluster.url + path, headers=headers, timeout=60, **kw)
            )

        wait_until(lambda: _answers(call, cluster.url), 30, "nginx to listen")

        # -- upload once, read back many times: both backends answer ----------------------
        put = send(
            "PUT",
            "/api/datasets/sales?mode=create&format=csv",
            headers={**admin, "Content-Type": "text/csv"},
            content=CSV.encode(),
        )
        assert put.status_code == 201, put.text
        assert put.json()["dataset"]["row_count"] == ROWS
        reads = _reads(send, admin, 12)
        answered = _answered_by(cluster, reads)
        assert answered["backend-a"] and answered["backend-b"], answered

        # -- the pages: signed in through the frontend, which reaches both backends by nginx --
        signed_in = send(
            "POST",
            "/login",
            data={"username": "admin", "password": cluster.dotenv["MYAPP_ADMIN_PASSWORD"]},
            headers={"Origin": cluster.url},
        )
        assert signed_in.status_code in (302, 303), signed_in.text
        session = {"myapp_session": signed_in.cookies["myapp_session"]}
        page_rids = [new_rid() for _ in range(4)]
        for rid in page_rids:
            page = send("GET", "/datasets/sales", rid, cookies=session)
            assert page.status_code == 200, page.text
            assert "sales" in page.text and re.search(r"2,000|2000", page.text)
            assert "Traceback" not in page.text
        # A page's request id follows its API calls through nginx:8080; a page makes several,
        # and they too are spread over both backends.
        answered = _answered_by(cluster, page_rids, exclusive=False)
        assert answered["backend-a"] and answered["backend-b"], answered

        # -- a token revoked through one backend is refused by both ------------------------
        user = "cluster-" + secrets.token_hex(3)
        made = send(
            "POST",
            "/api/users",
            headers=admin,
            json={"username": user, "password": "correct-horse-battery", "role": "viewer"},
        )
        assert made.status_code == 201, made.text
        token = send(
            "POST",
            "/api/tokens",
            headers=admin,
            json={"username": user, "name": "cluster", "scope": "viewer"},
        ).json()
        viewer = {"Authorization": f"Bearer {token['token']}"}
        _reads(send, viewer, 4)  # accepted by whichever backend answers
        revoked = send("DELETE", f"/api/tokens/{token['id']}", headers=admin)
        assert revoked.status_code == 204, revoked.text
        refused_rids = [new_rid() for _ in range(8)]
        for rid in refused_rids:
            refused = send("GET", "/api/datasets/sales", rid, headers=viewer)
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["code"] == "token_revoked"
        answered = _answered_by(cluster, refused_rids)
        assert answered["backend-a"] and answered["backend-b"], answered

        # -- kill -9 one backend (its whole PID namespace): nginx serves through the other --
        victim = secrets.choice(BACKENDS)
        (survivor,) = set(BACKENDS) - {victim}
        os.kill(cluster.running[victim].pid, signal.SIGKILL)
        cluster.running[victim].proc.wait(20)
        after = _reads(send, admin, 8)
        assert _answered_by(cluster, after) == {victim: set(), survivor: set(after)}
        listed = send("GET", "/api/datasets", headers=admin).json()["datasets"]
        assert [(d["name"], d["row_count"]) for d in listed] == [("sales", ROWS)]
        counted = send(
            "POST",
            "/api/query",
            headers=admin,
            json={"sql": "SELECT count(*), sum(amount) FROM sales"},
        )
        assert counted.status_code == 200, counted.text
        assert counted.json()["rows"] == [[ROWS, 10 * ROWS * (ROWS - 1) // 2]]
        page = send("GET", "/datasets/sales", cookies=session)
        assert page.status_code == 200 and "sales" in page.text

    # The lake's files went through each backend's mount to the one shared volume.
    assert not any(cluster.mount_point.iterdir())
    assert list(cluster.shared.rglob("*.parquet"))


def new_rid() -> str:
    return "lake-" + secrets.token_hex(6)


def _reads(send: Callable[..., httpx.Response], headers: dict, count: int) -> list[str]:
    """`count` reads of the dataset's first rows, each with its own request id; all the same."""
    rids, seen = [], []
    for _ in range(count):
        rid = new_rid()
        rows = send("GET", "/api/datasets/sales/rows", rid, headers=headers, params={"sort": "id"})
        assert rows.status_code == 200, rows.text
        seen.append(rows.json()["rows"][:3])
        rids.append(rid)
    assert seen == [[[0, "north", 0], [1, "south", 10], [2, "east", 20]]] * count, seen
    return rids


def _answered_by(cluster: Cluster, rids: list[str], exclusive: bool = True) -> dict[str, set[str]]:
    """Which backends logged each request id (waits for the log lines); one request of the
    client's (`exclusive`) reaches exactly one."""
    wanted = set(rids)
    found: dict[str, set[str]] = {}

    def logged() -> bool:
        found.update({name: cluster.rids_in(name) & wanted for name in BACKENDS})
        return set().union(*found.values()) >= wanted

    wait_until(logged, 10, "the backends' log lines")
    if exclusive:
        assert not found["backend-a"] & found["backend-b"], found
    return found


def _answers(call, url: str) -> bool:
    try:
        return call(lambda: httpx.get(url + "/api/health", timeout=2)).status_code == 200
    except httpx.TransportError:
        return False
