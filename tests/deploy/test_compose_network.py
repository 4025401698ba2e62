"""docker-compose.yml's network, emulated: the three services in network namespaces on a bridge,
names resolved as Docker resolves them, and everything a user does going through nginx.

- backend and frontend run the image's command with the compose file's environment, each in a
  namespace named for its service (plus a PID namespace, like a container); the frontend reaches
  the backend as http://backend:12000 through its /etc/hosts (/etc/netns/<ns>/hosts).
- nginx is Debian's, running nginx/docker-compose.conf unchanged, included by a stand-in for the
  nginx image's own nginx.conf; 127.0.0.11 in its namespace answers like Docker's DNS
  (tests/deploy/dnsstub.py), so the config's `resolver` is exercised for real.
- the test's client runs in the bridge's namespace, which plays the Docker host; nothing is sent
  from the host's own namespace.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.deploy.containers import RunningContainer, run_container
from tests.deploy.files import (
    CERT_SCRIPT,
    container,
    nginx_prefix,
    parse_volume,
    read_compose,
    read_image,
    service_environment,
)
from tests.deploy.netns import SUBNET, ComposeNetwork, wait_until
from tests.support.nginx_reload import reload_and_wait

DNS_STUB = Path(__file__).with_name("dnsstub.py")
SERVICES = ["backend", "frontend", "nginx"]

# The upload: a CSV of at least 200 MiB, built from one repeated block so it costs no time.
UPLOAD_MIB = 200
BLOCK_ROWS = 8192
HEADER = b"id,grp,label,note\n"


def csv_block() -> bytes:
    note = "n" * 64
    return "".join(
        f"{i:08d},{i % 97:02d},label-{i % 1000:03d},{note}\n" for i in range(BLOCK_ROWS)
    ).encode()


@dataclass
class Stack:
    net: ComposeNetwork
    tmp: Path
    compose: dict
    dotenv: dict[str, str]
    nginx_conf: Path
    nginx_binary: str
    certs: Path
    stack: contextlib.ExitStack
    running: dict[str, RunningContainer] = field(default_factory=dict)
    nginx: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.net.addresses['nginx']}"

    def log(self, name: str) -> Path:
        return self.tmp / f"{name}.log"

    def start_service(self, name: str) -> RunningContainer:
        service = self.compose["services"][name]
        mounts = {}
        for spec in service.get("volumes", []):
            source, target, _ = parse_volume(spec)
            mounts[target] = self.tmp / source.removeprefix("./")
        spec = container(
            read_image(),
            environment=service_environment(service, self.dotenv),
            command=service.get("command"),
            healthcheck=service["healthcheck"]["test"],
            mounts=mounts,
            workdir=self.tmp / f"{name}-app",
        )
        running = self.stack.enter_context(
            run_container(spec, self.log(name), netns=self.net.ns(name))
        )
        self.running[name] = running
        # depends_on: condition: service_healthy, as compose waits for it.
        running.wait_healthy(timeout_s=60)
        return running

    def start_nginx(self) -> None:
        self.nginx = self.net.start(
            "nginx",
            [*self.nginx_command(), "-g", "daemon off;"],
            env={"PATH": "/usr/sbin:/usr/bin:/bin"},
            cwd=self.tmp,
            log=self.log("nginx"),
        )

    def nginx_command(self) -> list[str]:
        return [self.nginx_binary, "-p", f"{self.nginx_conf.parent}/", "-c", str(self.nginx_conf)]

    def reload_nginx(self) -> None:
        """`docker compose restart nginx` after adding a certificate, without the restart;
        returns once only workers with the new configuration answer."""
        inside = ["ip", "netns", "exec", self.net.ns("nginx")]
        reload_and_wait(
            self.nginx.pid,
            lambda: subprocess.run(
                [*inside, *self.nginx_command(), "-s", "reload"],
                check=True,
                capture_output=True,
                timeout=20,
            ),
        )

    def dns_names(self, **overrides: str | None) -> None:
        """Docker's DNS: a stopped container's name is gone, a recreated one has a new address."""
        names = {k: v for k, v in {**self.net.addresses, **overrides}.items() if v is not None}
        self.net.set_names(names)


@pytest.fixture
def stack(netns, nginx_binary, tmp_path) -> Iterator[Stack]:
    compose = read_compose()
    dotenv = {
        "MYAPP_SECRET_KEY": secrets.token_urlsafe(32),
        "MYAPP_ADMIN_PASSWORD": "compose-" + secrets.token_urlsafe(12),
        "MYAPP_ADMIN_TOKEN": "myapp-admin-" + secrets.token_urlsafe(24),
    }
    certs = tmp_path / "certs"
    certs.mkdir()
    temp = Path(tempfile.mkdtemp(prefix="myapp-nginx-"))
    nginx_conf = nginx_prefix(
        compose["services"]["nginx"], tmp_path / "nginx", {"./nginx/certs": certs}, temp
    )
    net = ComposeNetwork(SERVICES)
    with contextlib.ExitStack() as exits:
        exits.callback(shutil.rmtree, temp, ignore_errors=True)
        exits.callback(net.down)
        net.up()
        st = Stack(net, tmp_path, compose, dotenv, nginx_conf, nginx_binary, certs, exits)
        dns = net.start(
            "nginx",
            [sys.executable, str(DNS_STUB), str(net.hosts_file(net.ns("nginx")))],
            env={"PATH": "/usr/bin:/bin"},
            cwd=tmp_path,
            log=st.log("dns"),
        )
        wait_until(lambda: "ready" in st.log("dns").read_text(), 10, "the DNS stand-in")
        assert dns.poll() is None
        yield st


def request_id() -> str:
    return "deploy-" + secrets.token_hex(6)


def test_compose_stack_through_nginx(stack: Stack):
    net, admin = stack.net, {"Authorization": f"Bearer {stack.dotenv['MYAPP_ADMIN_TOKEN']}"}
    backend = stack.start_service("backend")
    frontend = stack.start_service("frontend")
    stack.start_nginx()
    block = csv_block()
    blocks = -(-UPLOAD_MIB * 1024 * 1024 // len(block))
    rows = blocks * BLOCK_ROWS

    with net.client("host") as call:

        def get(path: str, **kw) -> httpx.Response:
            return call(lambda: httpx.get(stack.url + path, timeout=30, **kw))

        wait_until(lambda: _answers(call, stack.url), 15, "nginx to listen")

        # -- the home page: nginx → frontend → backend, by service name -------------------
        rid = request_id()
        home = get("/", headers={"X-Request-ID": rid})
        assert home.status_code == 200, home.text
        assert "text/html" in home.headers["content-type"]
        assert 'data-testid="backend-status">ok<' in home.text
        assert home.headers["X-Request-ID"] == rid
        assert home.headers.get("Content-Encoding") == "gzip"  # pages are compressed
        assert "Content-Security-Policy" in home.headers  # the frontend's own, kept
        assert home.headers.get_list("X-Content-Type-Options") == ["nosniff"]
        wait_until(lambda: f"rid={rid}" in backend.log_text(), 5, "the backend's log line")

        # -- the API: answered by the backend, with its own headers, client address kept --
        spoofed = request_id()
        health = get(
            "/api/health", headers={"X-Forwarded-For": "203.0.113.9", "X-Request-ID": spoofed}
        )
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.headers.get_list("Referrer-Policy") == ["no-referrer"]  # the app's
        line = _wait_log_line(backend, f"GET /api/health 200 .*rid={spoofed}")
        # nginx replaces a client's X-Forwarded-For with the address it sees (the host).
        assert f"ip={net.gateway} " in line + " " and "203.0.113.9" not in line
        assert get("/api/nope").json()["error"]["code"] == "not_found"
        spec = get("/api/openapi.json", headers={"Accept-Encoding": "gzip"})
        assert spec.headers["Content-Encoding"] == "gzip" and "/api/health" in spec.text

        # -- a 200 MiB upload, streamed through nginx to the backend ----------------------
        length = len(HEADER) + blocks * len(block)
        assert length >= UPLOAD_MIB * 1024 * 1024
        uploaded = call(
            lambda: put_csv(
                f"{stack.url}/api/datasets/deploy_big?mode=create&format=csv",
                block,
                blocks,
                {**admin, "Content-Type": "text/csv"},
            )
        )
        assert uploaded.status_code == 201, uploaded.text
        assert uploaded.json()["rows_loaded"] == rows
        assert uploaded.json()["dataset"]["row_count"] == rows

        # -- the whole table back as one CSV download ----------------------------------------
        headers, size, lines = call(
            lambda: download(
                f"{stack.url}/api/query/export",
                {"sql": "SELECT * FROM deploy_big", "format": "csv"},
                headers=admin,
            )
        )
        assert lines == rows + 1
        assert "attachment" in headers["Content-Disposition"]
        # Not compressed; sent while the backend writes it, so chunked rather than with a length.
        assert "Content-Encoding" not in headers and "Content-Length" not in headers
        assert headers["Transfer-Encoding"] == "chunked"
        assert size > UPLOAD_MIB * 1024 * 1024 // 2

        # -- the browser's way: signed in, upload and download through the pages ------------
        password = stack.dotenv["MYAPP_ADMIN_PASSWORD"]
        signed_in = call(
            lambda: httpx.post(
                stack.url + "/login",
                data={"username": "admin", "password": password},
                headers={"Origin": stack.url},
                timeout=30,
            )
        )
        assert signed_in.status_code in (302, 303), signed_in.text
        assert "Secure" not in signed_in.headers["Set-Cookie"]  # plain HTTP: no Secure flag
        session = {"myapp_session": signed_in.cookies["myapp_session"]}
        web_blocks = blocks // 8
        page_upload = call(
            lambda: put_csv(
                f"{stack.url}/datasets/_upload?filename=deploy_web.csv&format=csv",
                block,
                web_blocks,
                {"Origin": stack.url, "Content-Type": "application/octet-stream"},
                cookies=session,
            )
        )
        assert page_upload.status_code == 201, page_upload.text
        loaded = re.search(r'data-testid="rows-loaded">([^<]+)<', page_upload.text)
        assert loaded and int(re.sub(r"\D", "", loaded.group(1))) == web_blocks * BLOCK_ROWS
        _, _, page_lines = call(
            lambda: download(
                f"{stack.url}/datasets/deploy_web/export", {"format": "csv"}, cookies=session
            )
        )
        assert page_lines == web_blocks * BLOCK_ROWS + 1

        # -- bodies are streamed on both locations, and the limit is the same on both -------
        ip = net.addresses["nginx"]
        # An app that answers before the body is complete (no credentials; an unknown page)
        # is heard at once only if nginx passes the request on without buffering the body.
        for path in ("/api/datasets/streamed?mode=create&format=csv", "/datasets/streamed"):
            status, _ = call(lambda p=path: _send_head(ip, "PUT", p, 100 * 1024 * 1024))
            assert status in (401, 403, 404, 405), (path, status)
        for path in ("/api/datasets/huge?mode=create&format=csv", "/datasets/huge"):
            status, text = call(lambda p=path: _send_head(ip, "PUT", p, 2 * 1024**3 + 1))
            assert status == 413, (path, status)
        assert '"code": "payload_too_large"' in text or "413" in text
        status, text = call(
            lambda: _send_head(ip, "PUT", "/api/datasets/huge?format=csv", 2 * 1024**3 + 1)
        )
        assert '"code": "payload_too_large"' in text

        # -- backend stopped (a stopped container leaves Docker's DNS) --------------------
        assert backend.stop() == 0, backend.log_text()
        stack.dns_names(backend=None)
        down = get("/api/health")
        assert down.status_code == 502
        assert down.json()["error"]["code"] == "backend_unavailable"
        assert down.headers.get_list("X-Content-Type-Options") == ["nosniff"]
        page = get("/")
        assert page.status_code == 503  # the frontend's own page, not nginx's
        assert "backend cannot be reached" in page.text and "Traceback" not in page.text
        assert get("/healthz").json()["status"] == "ok"

        # -- backend recreated with another address: everything recovers -------------------
        new_address = f"{SUBNET}.{40 + secrets.randbelow(100)}"
        net.move("backend", new_address)
        stack.dns_names()
        stack.start_service("backend")
        wait_until(lambda: get("/api/health").status_code == 200, 15, "nginx to find it")
        wait_until(lambda: get("/").status_code == 200, 15, "the pages to recover")
        # nginx keeps a resolved name up to `valid=5s`: until its cache turns over, a request
        # may still go to the old address and time out, so wait for the dataset's answer too.
        wait_until(
            lambda: get("/api/datasets/deploy_big", headers=admin).status_code == 200,
            30,
            "the dataset through the moved backend",
        )
        kept = get("/api/datasets/deploy_big", headers=admin)
        assert kept.status_code == 200 and kept.json()["row_count"] == rows  # the volume

        # -- HTTPS once a certificate is there ----------------------------------------------
        made = subprocess.run(
            [str(CERT_SCRIPT), "--dir", str(stack.certs), ip],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        stack.reload_nginx()
        wait_until(lambda: get("/").status_code == 308, 10, "nginx to reload")
        redirect = get("/api/health?x=1")
        assert redirect.headers["Location"] == f"https://{ip}/api/health?x=1"
        tls = ssl.create_default_context(cafile=str(stack.certs / "myapp.crt"))

        def over_https(path: str, method: str = "GET", **kw) -> httpx.Response:
            return call(
                lambda: httpx.request(method, f"https://{ip}{path}", verify=tls, timeout=30, **kw)
            )

        assert over_https("/api/health").json()["status"] == "ok"
        signed_in = over_https(
            "/login",
            "POST",
            data={"username": "admin", "password": password},
            headers={"Origin": f"https://{ip}"},
        )
        # The frontend knows it is served over HTTPS (X-Forwarded-Proto through ProxyFix):
        # it accepts its own origin and marks the session cookie Secure.
        assert signed_in.status_code in (302, 303), signed_in.text
        cookie = signed_in.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie

        docs = over_https("/api")
        assert docs.status_code == 308 and docs.headers["Location"] == "/api/docs"

        # -- everything stops cleanly, as `docker compose down` asks; with the frontend gone,
        # nginx answers for the pages itself --------------------------------------------------
        assert frontend.stop() == 0, frontend.log_text()
        stack.dns_names(frontend=None)
        gone = over_https("/")
        assert gone.status_code == 502 and "myapp is not available right now" in gone.text
        assert gone.headers.get_list("X-Frame-Options") == ["DENY"]
        assert stack.running["backend"].stop() == 0, stack.running["backend"].log_text()
        assert net.stop(stack.nginx) == 0


def put_csv(
    url: str, block: bytes, blocks: int, headers: dict[str, str], cookies=None
) -> httpx.Response:
    """PUT a CSV of `blocks` copies of `block` as the body, with its length announced (as a
    browser or the CLI sends a file), generated as it is sent."""

    def body() -> Iterator[bytes]:
        yield HEADER
        for _ in range(blocks):
            yield block

    length = len(HEADER) + blocks * len(block)
    return httpx.put(
        url,
        content=body(),
        headers={**headers, "Content-Length": str(length)},
        cookies=cookies,
        timeout=120,
    )


def download(url: str, params: dict, headers=None, cookies=None) -> tuple[httpx.Headers, int, int]:
    """Stream a download; return its headers, its size and how many lines it has."""
    with httpx.stream(
        "GET", url, params=params, headers=headers, cookies=cookies, timeout=120
    ) as response:
        assert response.status_code == 200, response.read()
        size = lines = 0
        for chunk in response.iter_raw(1024 * 1024):
            size += len(chunk)
            lines += chunk.count(b"\n")
        return response.headers, size, lines


def _send_head(host: str, method: str, path: str, length: int) -> tuple[int, str]:
    """Send a request line, headers announcing `length` bytes and only the first 64 KiB of
    them; return the status and text of whatever answer comes within a few seconds."""
    with socket.create_connection((host, 80), timeout=5) as sock:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/csv\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + b"x" * 65536)
        answer = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
                answer += chunk
            head_end = answer.find(b"\r\n\r\n") + 4
            declared = re.search(rb"(?i)\r\ncontent-length: *(\d+)", answer[:head_end])
            while declared and len(answer) - head_end < int(declared.group(1)):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
    if not answer:
        raise AssertionError(f"no answer to {method} {path} before the body was complete")
    status = int(answer.split(b" ", 2)[1])
    return status, answer.decode("latin-1")


def _answers(call, url: str) -> bool:
    try:
        call(lambda: httpx.get(url + "/healthz", timeout=2))
        return True
    except httpx.TransportError:
        return False


def _wait_log_line(running: RunningContainer, pattern: str) -> str:
    found: list[str] = []

    def check() -> bool:
        found[:] = [line for line in running.log_text().splitlines() if re.search(pattern, line)]
        return bool(found)

    wait_until(check, 5, f"a log line matching {pattern!r}")
    return found[-1]
