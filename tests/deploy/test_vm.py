"""One host without containers: the systemd units in deploy/systemd/ and nginx/vm.conf, run here.

There is no service manager on these machines, so the test does for each unit what systemd does,
from the unit's own text: a fresh environment (systemd's PATH, the user's variables,
NOTIFY_SOCKET, STATE_DIRECTORY), then `Environment=`, then the `EnvironmentFile=` read with
systemd's own rules (`read_environment_file`; python-dotenv's differ: it cuts values at ` #`,
expands ${VAR}, keeps both backslashes of `\\\\` and accepts `export`), the state directory made,
the working directory entered, and the `ExecStart=` command run exactly as written, in a process
group of its own standing in for the unit's cgroup. The only changes are the ones a test must
make: the venv prefix (/opt/myapp/bin is this interpreter's bin), the directories under /var/lib
and /etc/myapp (temp dirs), and the ports (free loopback ports instead of 12000/12001, the same
ones written into the nginx site). Readiness is what systemd waits for with Type=notify: READY=1
from the main process on the notify socket. Stopping is KillMode=mixed: SIGTERM to the main
process only, within TimeoutStopSec. Not emulated: the switch to User= (the processes run as the
test's user; the unit's user is checked to be unprivileged) and the sandboxing settings, which
only `systemd-analyze verify` reads here.

Debian's nginx runs nginx/vm.conf as a site of a stand-in for Debian's nginx.conf, with the
snippets copied where the guide puts them, on a free loopback port.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from myapp.cli import EXIT_CONFIG
from myapp.settings import Settings
from tests.deploy.files import CERT_SCRIPT, HERE_BIN, ROOT, map_paths
from tests.deploy.netns import wait_until
from tests.support.nginx_reload import reload_and_wait
from tests.support.servers import free_port

SYSTEMD_DIR = ROOT / "deploy" / "systemd"
UNITS = {
    "backend": SYSTEMD_DIR / "myapp-backend.service",
    "frontend": SYSTEMD_DIR / "myapp-frontend.service",
}
ENV_EXAMPLE = SYSTEMD_DIR / "myapp.env"
VM_SITE = ROOT / "nginx" / "vm.conf"
COMPOSE_SITE = ROOT / "nginx" / "docker-compose.conf"
SNIPPETS = ROOT / "nginx" / "snippets"

# Where docs/deployment/vm.md makes the venv; here it is this interpreter's environment.
INSTALL_BIN = "/opt/myapp/bin"
# What systemd gives a system service before the unit's own settings (systemd 252 on Debian).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# StateDirectory= names a directory under this one for system units.
STATE_ROOT = "/var/lib"
# The user the guide creates: its home is the state directory, its shell nologin.
USER_SHELL = "/usr/sbin/nologin"
# Settings both units pin (flags or Environment=): the example file must leave them alone.
PINNED = {"MYAPP_ROLE", "MYAPP_HOST", "MYAPP_PORT", "MYAPP_DATA_DIR", "MYAPP_BACKEND_URL",
          "MYAPP_PROXY_HOPS"}  # fmt: skip
SETTINGS_VARIABLES = {f"MYAPP_{name.upper()}" for name in Settings.model_fields}

# What a person could type as a password: systemd keeps all of it (a # inside a value is not a
# comment, $ is not expanded, quotes after the first character stay).
ADMIN_PASSWORD = 'vm pa$$word #1 "ok"'
# Rows of an export bigger than the backend's STREAM_AFTER_BYTES as NDJSON (41 MB).
BIG_EXPORT_ROWS = 600_000
PEOPLE_CSV = "id,name,city\n1,Ada,London\n2,Grace,Arlington\n3,Edsger,Nuenen\n"


# -- systemd's file formats ----------------------------------------------------------------------
@dataclass
class Unit:
    path: Path
    sections: dict[str, dict[str, list[str]]]

    @property
    def name(self) -> str:
        return self.path.name

    def values(self, key: str, section: str = "Service") -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def get(self, key: str, section: str = "Service") -> str | None:
        values = self.values(key, section)
        return values[-1] if values else None


def read_unit(path: Path) -> Unit:
    """A unit file's sections and settings (systemd.syntax: comments, continuation lines)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line[:1] in ("#", ";") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: not a setting: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return Unit(path, sections)


def plain_words(unit: Unit, key: str, text: str) -> list[str]:
    """Split a command line or an Environment= value the way systemd does, for text without
    quotes, escapes, $VARIABLES, %specifiers or prefixes (what systemd would do with those is not
    emulated here, so the units must not use them)."""
    assert not set(text) & set("\"'\\$%"), f"{unit.name}: {key}= needs more than this test reads"
    return text.split()


def exec_start(unit: Unit) -> list[str]:
    lines = unit.values("ExecStart")
    assert len(lines) == 1, f"{unit.name}: one ExecStart= (Type=notify allows no more)"
    assert lines[0][:1] not in ("@", "-", ":", "+", "!"), f"{unit.name}: ExecStart= prefix"
    argv = plain_words(unit, "ExecStart", lines[0])
    assert argv[0].startswith("/"), f"{unit.name}: the command is named by its absolute path"
    return argv


def unit_environment(unit: Unit) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in unit.values("Environment"):
        for word in plain_words(unit, "Environment", line):
            name, sep, value = word.partition("=")
            assert sep, f"{unit.name}: Environment={word}"
            env[name] = value
    return env


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHELL_NEED_ESCAPE = '"\\`$'


def read_environment_file(text: str) -> dict[str, str]:
    """An EnvironmentFile= as systemd reads it (systemd.exec(5); the state machine of systemd's
    env-file.c): lines starting with # or ; are comments, lines without = are ignored, an
    unquoted value keeps interior whitespace, quotes and #, loses trailing whitespace and takes
    backslash escapes; '…' is verbatim; "…" unescapes only \\", \\\\, \\` and \\$; a backslash
    before a newline continues the line. Invalid names are ignored; a later line wins."""
    result: dict[str, str] = {}
    state, key, value = "pre_key", "", ""
    key_ws: int | None = None  # where trailing whitespace of the key starts
    value_ws: int | None = None  # where trailing whitespace of an unquoted value starts

    def push() -> None:
        name = key[:key_ws] if key_ws is not None else key
        if _ENV_NAME.fullmatch(name):
            result[name] = value

    for c in text:
        if state == "pre_key":
            if c in "#;":
                state = "comment"
            elif c not in " \t\n\r":
                state, key, key_ws = "key", c, None
        elif state == "key":
            if c in "\n\r":
                state = "pre_key"
            elif c == "=":
                state, value, value_ws = "pre_value", "", None
            else:
                if c not in " \t\n\r":
                    key_ws = None
                elif key_ws is None:
                    key_ws = len(key)
                key += c
        elif state == "pre_value":
            if c in "\n\r":
                push()
                state = "pre_key"
            elif c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "\\":
                state = "value_escape"
            elif c not in " \t":
                state, value = "value", value + c
        elif state == "value":
            if c in "\n\r":
                push_value = value[:value_ws] if value_ws is not None else value
                value = push_value
                push()
                state = "pre_key"
            elif c == "\\":
                state, value_ws = "value_escape", None
            else:
                if c not in " \t":
                    value_ws = None
                elif value_ws is None:
                    value_ws = len(value)
                value += c
        elif state == "value_escape":
            state = "value"
            if c not in "\n\r":
                value += c
        elif state == "single":
            if c == "'":
                state = "pre_value"
            else:
                value += c
        elif state == "double":
            if c == '"':
                state = "pre_value"
            elif c == "\\":
                state = "double_escape"
            else:
                value += c
        elif state == "double_escape":
            state = "double"
            if c in _SHELL_NEED_ESCAPE:
                value += c
            elif c != "\n":
                value += "\\" + c
        elif state == "comment":
            if c == "\\":
                state = "comment_escape"
            elif c in "\n\r":
                state = "pre_key"
        elif state == "comment_escape":
            state = "comment"
    if state == "value" and value_ws is not None:
        value = value[:value_ws]
    if state in ("pre_value", "value", "value_escape", "single", "double", "double_escape"):
        push()
    return result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\n# B=2\n; C=3\n  # D=4\nE\n", {"A": "1"}),
        ("A=two words  \t\nB=  lead\n", {"A": "two words", "B": "lead"}),
        ('A=pa$$ #1 "x"\n', {"A": 'pa$$ #1 "x"'}),
        ("A='single \\ $x'\n", {"A": "single \\ $x"}),
        ("B=\"dq \\\" \\\\ \\$ \\n\"\n", {"B": 'dq " \\ $ \\n'}),
        ("A=x\\\\y\\ \nB=con\\\ntinued\n", {"A": "x\\y ", "B": "continued"}),
        ("A='multi\nline'\nB=${A}\nexport C=1\n1D=2\nA = spaced\n", {"A": "spaced", "B": "${A}"}),
        ("A=\nB=last", {"A": "", "B": "last"}),
    ],
)  # fmt: skip
def test_environment_file_is_read_as_systemd_reads_it(text, expected):
    assert read_environment_file(text) == expected


# -- the units as systemd runs them ----------------------------------------------------------------
@dataclass
class Host:
    """Directories and ports standing in for the machine the guide sets up."""

    root: Path
    ports: dict[int, int] = field(default_factory=dict)  # port in the files -> free port here

    @property
    def mapping(self) -> dict[str, str]:
        return {
            INSTALL_BIN: HERE_BIN,
            STATE_ROOT: str(self.root / "var" / "lib"),
            "/etc/myapp": str(self.root / "etc" / "myapp"),
            "/var/log/nginx": str(self.root / "var" / "log" / "nginx"),
        }

    def path(self, inside: str) -> Path:
        return Path(map_paths(inside, self.mapping))

    def port(self, number: int) -> int:
        return self.ports.setdefault(number, free_port())

    def move_ports(self, text: str) -> str:
        """URLs and addresses of the files, with their ports swapped for this host's."""
        return re.sub(
            r"127\.0\.0\.1:(\d+)\b", lambda m: f"127.0.0.1:{self.port(int(m.group(1)))}", text
        )

    def write_env_file(self, text: str) -> Path:
        path = self.path("/etc/myapp/myapp.env")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def filled_env_file(**values: str) -> str:
    """deploy/systemd/myapp.env with values put in, as a person does in an editor: the line
    `NAME=` (or `#NAME=…`) becomes `NAME=value`."""
    text = ENV_EXAMPLE.read_text()
    for name, value in values.items():
        text, count = re.subn(rf"(?m)^#?{name}=.*$", lambda _m, n=name, v=value: f"{n}={v}", text)
        assert count == 1, name
    return text


class NotifySocket:
    """The socket systemd listens on for Type=notify, with the sender's pid (NotifyAccess=main)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def wait_ready(self, service: Service, timeout_s: float) -> None:
        creds = struct.calcsize("3i")
        deadline = time.monotonic() + timeout_s
        while True:
            if service.proc.poll() is not None:
                raise AssertionError(
                    f"{service.unit.name} exited with {service.proc.returncode} during start:\n"
                    + service.log_text()
                )
            self.sock.settimeout(0.2)
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(creds))
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{service.unit.name}: no READY=1 within TimeoutStartSec "
                        f"({timeout_s} s):\n{service.log_text()}"
                    ) from None
                continue
            sender = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    sender = struct.unpack("3i", payload[:creds])[0]
            if sender == service.proc.pid and "READY=1" in data.decode().splitlines():
                return

    def close(self) -> None:
        self.sock.close()


def seconds(value: str | None) -> float:
    """A systemd time span of the forms the units use (`40s`, `90`, `1min 30s`)."""
    assert value is not None
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(min|ms|s|)", value):
        total += float(number) * {"min": 60, "s": 1, "": 1, "ms": 0.001}[unit]
    return total


@dataclass
class Service:
    unit: Unit
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    notify: NotifySocket
    proc: subprocess.Popen = field(init=False)
    # Once stopped with nothing left of its group, the group id is no longer ours to signal.
    done: bool = field(init=False, default=False)

    def start(self) -> Service:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # The unit's cgroup: everything it starts, stopped together at the end.
                start_new_session=True,
            )
        return self

    def wait_ready(self) -> Service:
        self.notify.wait_ready(self, seconds(self.unit.get("TimeoutStartSec") or "90s"))
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """`systemctl stop` with KillMode=mixed: KillSignal to the main process, then wait up to
        TimeoutStopSec; nothing of the unit may be left for the final SIGKILL."""
        assert self.unit.get("KillMode") == "mixed"
        sig = getattr(signal, self.unit.get("KillSignal") or "SIGTERM")
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(seconds(self.unit.get("TimeoutStopSec")))
        finally:
            leftover = _group_alive(self.proc.pid)
            self.kill()
        assert not leftover, f"{self.unit.name}: processes outlived the main one"
        return code

    def kill(self) -> None:
        if self.done:
            return
        self.done = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def service(unit: Unit, host: Host, notify_dir: Path) -> Service:
    """What systemd starts for `unit` on `host` (see the module docstring)."""
    argv = [map_paths(arg, host.mapping) for arg in exec_start(unit)]
    # The unit's --port, moved to this host's port for it.
    index = argv.index("--port") + 1
    argv[index] = str(host.port(int(argv[index])))

    notify = NotifySocket(notify_dir / f"{unit.path.stem}-{secrets.token_hex(3)}.sock")
    env = {"PATH": SYSTEMD_PATH, "INVOCATION_ID": secrets.token_hex(16)}
    assert unit.get("Type") == "notify" and unit.get("NotifyAccess") == "main"
    env["NOTIFY_SOCKET"] = str(notify.path)
    user = unit.get("User")
    assert user and user != "root"
    state = unit.get("StateDirectory")
    home = host.path(f"{STATE_ROOT}/{user}")
    env.update(USER=user, LOGNAME=user, HOME=str(home), SHELL=USER_SHELL)
    if state:
        directory = host.path(f"{STATE_ROOT}/{state}")
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(int(unit.get("StateDirectoryMode") or "0755", 8))
        env["STATE_DIRECTORY"] = str(directory)
    for name, value in unit_environment(unit).items():
        env[name] = host.move_ports(map_paths(value, host.mapping))
    for spec in unit.values("EnvironmentFile"):
        optional = spec.startswith("-")
        path = host.path(spec.lstrip("-"))
        if optional and not path.exists():
            continue
        env.update(read_environment_file(path.read_text()))
    working = unit.get("WorkingDirectory")
    cwd = host.path(working) if working else Path("/")
    log = host.root / f"{unit.path.stem}.log"
    return Service(unit, argv, env, cwd, log, notify)


# -- nginx as Debian runs a site -----------------------------------------------------------------
@dataclass
class Nginx:
    binary: str
    prefix: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf), *extra]

    def start(self) -> None:
        with (self.prefix / "stderr.log").open("ab") as stderr:
            self.proc = subprocess.Popen(
                self.command("-g", "daemon off;"), stdout=subprocess.DEVNULL, stderr=stderr
            )
        wait_until(self._answers, 10, "nginx to listen")

    def _answers(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.error_log()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def reload(self) -> None:
        """Reload the configuration; returns once only workers with the new one answer."""
        assert self.proc is not None
        reload_and_wait(
            self.proc.pid,
            lambda: subprocess.run(
                self.command("-s", "reload"), check=True, capture_output=True, timeout=20
            ),
        )

    def error_log(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in self.prefix.glob("*.log") if p.is_file()
        )

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.terminate()
        return self.proc.wait(10)


def install_site(site_text: str, host: Host, nginx_binary: str, temp: Path) -> Nginx:
    """nginx/vm.conf installed as the guide installs it, in a stand-in for Debian's /etc/nginx:
    the site in sites-enabled/, the snippets in snippets/, certificates in certs/; only the
    listener, the upstream ports and the log directory moved to this host's."""
    prefix = host.root / "etc" / "nginx"
    for name in ("sites-enabled", "snippets", "certs"):
        (prefix / name).mkdir(parents=True, exist_ok=True)
    for snippet in SNIPPETS.glob("*.conf"):
        (prefix / "snippets" / snippet.name).symlink_to(snippet)
    text = host.move_ports(map_paths_in_text(site_text, host))
    port = free_port()
    text, listeners = re.subn(
        r"(?m)^(\s*)listen 80 default_server;", rf"\1listen 127.0.0.1:{port} default_server;",
        text,
    )  # fmt: skip
    assert listeners == 1, "the site listens on port 80 as the default server"
    host.path("/var/log/nginx").mkdir(parents=True, exist_ok=True)
    (prefix / "sites-enabled" / "myapp").write_text(text)
    temp.chmod(0o755)
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / name).mkdir(parents=True, exist_ok=True)
        # Workers run as nobody here, as Debian's run as www-data.
        (temp / name).chmod(0o777)
    (prefix / "nginx.conf").write_text(
        f"""# Stand-in for Debian's /etc/nginx/nginx.conf: sites-enabled/* inside http {{}}.
worker_processes 2;
error_log {prefix}/error.log notice;
pid {prefix}/nginx.pid;
events {{ worker_connections 768; }}
http {{
    sendfile on;
    tcp_nopush on;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    access_log {prefix}/access.log;
    gzip on;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {prefix}/conf.d/*.conf;
    include {prefix}/sites-enabled/*;
}}
"""
    )
    return Nginx(nginx_binary, prefix, port)


def map_paths_in_text(text: str, host: Host) -> str:
    for inside, here in host.mapping.items():
        text = text.replace(inside + "/", here + "/")
    return text


@pytest.fixture
def host(tmp_path) -> Host:
    return Host(tmp_path / "host")


@pytest.fixture
def notify_dir() -> Iterator[Path]:
    # Socket paths must stay under 108 bytes; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="myapp-notify-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def nginx_temp() -> Iterator[Path]:
    # Reachable by nginx's workers (nobody), unlike pytest's tmp_path under /root.
    path = Path(tempfile.mkdtemp(prefix="myapp-vm-nginx-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def running() -> Iterator[list]:
    """Everything a test starts, stopped at the end whatever happened."""
    started: list = []
    yield started
    for thing in reversed(started):
        if isinstance(thing, Service):
            if getattr(thing, "proc", None) is not None:
                thing.kill()
            thing.notify.close()
        else:
            with contextlib.suppress(Exception):
                thing.stop()


def units() -> dict[str, Unit]:
    return {role: read_unit(path) for role, path in UNITS.items()}


def port_of(unit: Unit) -> int:
    argv = exec_start(unit)
    return int(argv[argv.index("--port") + 1])


# -- the files agree with each other and with the app --------------------------------------------
def test_units_keep_the_rules_of_the_roles():
    backend, frontend = units()["backend"], units()["frontend"]
    graceful = Settings.model_fields["graceful_timeout_s"].default
    lock_wait = Settings.model_fields["lock_timeout_s"].default
    for role, unit in units().items():
        argv = exec_start(unit)
        assert argv[0] == f"{INSTALL_BIN}/myapp" and argv[1:4] == ["serve", "--role", role]
        assert argv[argv.index("--host") + 1] == "127.0.0.1", "only nginx is in front"
        assert unit.get("User") == unit.get("Group") == "myapp"
        assert unit.values("EnvironmentFile") == ["/etc/myapp/myapp.env"]
        assert unit.get("Restart") == "on-failure"
        assert unit.get("RestartPreventExitStatus") == str(EXIT_CONFIG)
        # Stopping drains first: SIGTERM, and longer to stop than the app's own drain.
        assert unit.get("KillSignal") == "SIGTERM" and unit.get("KillMode") == "mixed"
        assert seconds(unit.get("TimeoutStopSec")) > graceful
        assert unit.get("ProtectSystem") == "strict" and unit.get("NoNewPrivileges") == "yes"
        assert unit.get("WantedBy", "Install") == "multi-user.target"
    # The backend: its data in the state directory, one process, never two at once.
    assert backend.get("StateDirectory") == "myapp"
    assert unit_environment(backend)["MYAPP_DATA_DIR"] == f"{STATE_ROOT}/myapp"
    assert backend.get("WorkingDirectory") == f"{STATE_ROOT}/myapp"
    argv = exec_start(backend)
    assert argv[argv.index("--workers") + 1] == "1"
    # gunicorn's HUP starts new workers before the old ones stop: no reload for the backend.
    assert backend.get("ExecReload") is None
    assert seconds(backend.get("TimeoutStartSec")) > lock_wait + 30
    # The frontend: after the backend, pointed at it, one proxy in front.
    assert "myapp-backend.service" in (frontend.get("After", "Unit") or "").split()
    assert frontend.get("Wants", "Unit") == "myapp-backend.service"
    environment = unit_environment(frontend)
    assert environment["MYAPP_BACKEND_URL"] == f"http://127.0.0.1:{port_of(backend)}"
    assert environment["MYAPP_PROXY_HOPS"] == "1"
    assert frontend.get("StateDirectory") is None


def test_nginx_site_proxies_to_the_units_and_shares_the_compose_settings():
    site = VM_SITE.read_text()
    upstreams = dict(re.findall(r"upstream (\w+) \{\s*server 127\.0\.0\.1:(\d+);", site))
    assert upstreams == {
        "myapp_backend": str(port_of(units()["backend"])),
        "myapp_frontend": str(port_of(units()["frontend"])),
    }
    assert "set $myapp_backend http://myapp_backend;" in site
    assert "set $myapp_frontend http://myapp_frontend;" in site
    # The same snippets in both sites, in the same places, and nothing they set repeated.
    for conf in (site, COMPOSE_SITE.read_text()):
        directives = re.sub(r"(?m)#.*$", "", conf)
        includes = re.findall(r"include (snippets/[\w.-]+|certs/\*\.conf);", directives)
        assert includes == [
            "snippets/myapp-http.conf", "certs/*.conf", "snippets/myapp-server.conf"
        ], includes  # fmt: skip
        for owned in ("location", "proxy_", "client_max_body_size", "add_header", "gzip",
                      "log_format", "map $http_x_request_id"):  # fmt: skip
            assert owned not in directives, f"{owned} belongs in nginx/snippets/"


def test_example_environment_file():
    text = ENV_EXAMPLE.read_text()
    values = read_environment_file(text)
    # Copying it cannot start a server: the two required values are there, empty.
    assert values == {"MYAPP_SECRET_KEY": "", "MYAPP_ADMIN_PASSWORD": ""}
    documented = set(re.findall(r"^#?(MYAPP_[A-Z0-9_]+)=", text, re.M))
    assert documented <= SETTINGS_VARIABLES, sorted(documented - SETTINGS_VARIABLES)
    assert not documented & PINNED, "the units set these; a line here would override them"
    for name, value in re.findall(r"^#(MYAPP_[A-Z0-9_]+)=(\S+)$", text, re.M):
        field_name = name.removeprefix("MYAPP_").lower()
        default = Settings.model_fields[field_name].default
        if default is not None:
            assert getattr(Settings(**{field_name: value}), field_name) == default, name


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI") == "true":
            pytest.fail("systemd-analyze is missing on CI (Debian's systemd package has it)")
        pytest.skip("systemd-analyze is not installed here, so the units are not verified")

    def verify(texts: dict[str, str]) -> str:
        for name, text in texts.items():
            (tmp_path / name).write_text(text)
        result = subprocess.run(
            [analyze, "verify", "--man=no", *(str(tmp_path / n) for n in texts)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        # Only what concerns these units: the host's own units are not ours to judge.
        lines = [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if "myapp" in line or str(tmp_path) in line
        ]
        return "\n".join([f"rc={result.returncode}", *lines])

    # verify checks that ExecStart= names an executable: the venv is this interpreter's here,
    # exactly as the units are run by the other tests.
    texts = {
        path.name: path.read_text().replace(f"{INSTALL_BIN}/", f"{HERE_BIN}/")
        for path in UNITS.values()
    }
    assert verify(texts) == "rc=0"
    # A mistake is reported (a check that cannot fail would prove nothing).
    broken = {**texts, "myapp-backend.service": texts["myapp-backend.service"] + "Restrat=no\n"}
    assert "Unknown key" in verify(broken)


# -- running it ----------------------------------------------------------------------------------
def test_vm_stack_through_nginx(host, notify_dir, nginx_temp, nginx_binary, running):
    unit = units()
    secret_key = secrets.token_urlsafe(32)
    host.write_env_file(
        filled_env_file(MYAPP_SECRET_KEY=secret_key, MYAPP_ADMIN_PASSWORD=ADMIN_PASSWORD)
    )
    # systemd starts the backend, and the frontend once the backend says it is ready.
    backend = service(unit["backend"], host, notify_dir)
    running.append(backend.start())
    backend.wait_ready()
    frontend = service(unit["frontend"], host, notify_dir)
    running.append(frontend.start())
    frontend.wait_ready()
    nginx = install_site(VM_SITE.read_text(), host, nginx_binary, nginx_temp)
    running.append(nginx)
    nginx.start()
    url = nginx.url

    def get(path: str, **kw) -> httpx.Response:
        return httpx.get(url + path, timeout=30, **kw)

    # -- the home page: nginx -> frontend -> backend --------------------------------------------
    wait_until(lambda: get("/").status_code == 200, 20, "the home page through nginx")
    home = get("/", headers={"X-Request-ID": "vm-home-1"})
    assert 'data-testid="backend-status">ok<' in home.text
    assert home.headers["X-Request-ID"] == "vm-home-1"
    assert "Content-Security-Policy" in home.headers
    assert home.headers.get("Content-Encoding") == "gzip"

    # -- the API, its health, and the access log without query strings -----------------------
    health = get("/api/health?token=not-for-logs")
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok" and health.json()["database"] == "ok"
    log = host.path("/var/log/nginx/myapp.access.log")
    wait_until(lambda: "GET /api/health " in log.read_text(), 5, "nginx's access log line")
    assert "not-for-logs" not in log.read_text()
    assert get("/api/nope").json()["error"]["code"] == "not_found"
    # The database is in the state directory.
    assert host.path(f"{STATE_ROOT}/myapp/app.db").is_file()

    # -- an upload and an export, signed in with the password from the environment file -------
    login = httpx.post(
        url + "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=30
    )
    assert login.status_code == 200, login.text
    auth = {"Authorization": f"Bearer {login.json()['token']}"}
    upload = httpx.put(
        url + "/api/datasets/vm_people?mode=create&format=csv",
        content=PEOPLE_CSV.encode(),
        headers={**auth, "Content-Type": "text/csv"},
        timeout=60,
    )
    assert upload.status_code == 201, upload.text
    assert upload.json()["rows_loaded"] == 3
    export = get(
        "/api/query/export",
        params={"sql": "SELECT * FROM vm_people ORDER BY id", "format": "csv"},
        headers=auth,
    )
    assert export.status_code == 200, export.text
    assert "attachment" in export.headers["Content-Disposition"]
    assert list(csv.reader(io.StringIO(export.text))) == list(csv.reader(io.StringIO(PEOPLE_CSV)))
    # A big export streams through nginx while DuckDB writes it; one that fails late reaches
    # the client cut short (nginx does not end a body its upstream did not end).
    big_sql = f"SELECT range AS n, md5(range::VARCHAR) AS h FROM range({BIG_EXPORT_ROWS})"
    late_sql = big_sql.replace(
        " AS h", f" AS h, CASE WHEN range = {BIG_EXPORT_ROWS - 1000} THEN error('bad') END AS e"
    )
    export_url = url + "/api/query/export"
    params = {"sql": big_sql, "format": "ndjson"}
    with httpx.stream("GET", export_url, params=params, headers=auth, timeout=120) as big:
        assert big.status_code == 200 and "content-length" not in big.headers
        assert sum(chunk.count(b"\n") for chunk in big.iter_bytes()) == BIG_EXPORT_ROWS
    params = {"sql": late_sql, "format": "ndjson"}
    with httpx.stream("GET", export_url, params=params, headers=auth, timeout=120) as cut:
        assert cut.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in cut.iter_raw():
                pass

    # -- the pages, signed in: every frontend worker knows the key from the environment file -----
    signed_in = httpx.post(
        url + "/login",
        data={"username": "admin", "password": ADMIN_PASSWORD},
        headers={"Origin": url},
        timeout=30,
    )
    assert signed_in.status_code in (302, 303), signed_in.text
    cookies = {"myapp_session": signed_in.cookies["myapp_session"]}
    for _ in range(6):
        page = get("/datasets", cookies=cookies)
        assert page.status_code == 200 and "vm_people" in page.text

    # -- restart of the backend: stopped completely, then started; data kept -----------------
    assert backend.stop() == 0, backend.log_text()
    down = get("/api/health")
    assert down.status_code == 502 and down.json()["error"]["code"] == "backend_unavailable"
    page = get("/")
    assert page.status_code == 503 and "Traceback" not in page.text
    backend = service(unit["backend"], host, notify_dir)
    running.append(backend.start())
    backend.wait_ready()
    wait_until(lambda: get("/api/health").status_code == 200, 20, "the API after the restart")
    kept = get("/api/datasets/vm_people", headers=auth)
    assert kept.status_code == 200 and kept.json()["row_count"] == 3

    # -- HTTPS with the certificate script, as the guide turns it on ----------------------------
    certs = nginx.prefix / "certs"
    made = subprocess.run(
        [str(CERT_SCRIPT), "--dir", str(certs), "127.0.0.1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    tls_port = free_port()
    https_conf = certs / "https.conf"
    text, count = re.subn(r"(?m)^listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;",
                          https_conf.read_text())  # fmt: skip
    assert count == 1
    https_conf.write_text(text)
    nginx.reload()
    wait_until(lambda: get("/api/health").status_code == 308, 10, "nginx to reload")
    assert get("/api/health?x=1").headers["Location"] == "https://127.0.0.1/api/health?x=1"
    tls = ssl.create_default_context(cafile=str(certs / "myapp.crt"))
    secure = f"https://127.0.0.1:{tls_port}"
    assert httpx.get(secure + "/api/health", verify=tls, timeout=30).json()["status"] == "ok"
    over_tls = httpx.post(
        secure + "/login",
        data={"username": "admin", "password": ADMIN_PASSWORD},
        headers={"Origin": secure},
        verify=tls,
        timeout=30,
    )
    # The frontend believes nginx's X-Forwarded-Proto (MYAPP_PROXY_HOPS=1 from its unit).
    assert over_tls.status_code in (302, 303), over_tls.text
    assert "Secure" in over_tls.headers["Set-Cookie"]

    # -- systemctl stop: both drain and exit 0 within TimeoutStopSec ------------------------------
    assert frontend.stop() == 0, frontend.log_text()
    assert backend.stop() == 0, backend.log_text()
    assert nginx.stop() == 0, nginx.error_log()


def test_backend_refuses_the_example_file_until_it_is_filled_in(host, notify_dir, running):
    host.write_env_file(ENV_EXAMPLE.read_text())
    backend = service(units()["backend"], host, notify_dir)
    running.append(backend.start())
    code = backend.proc.wait(60)
    # The code the unit does not restart on, and one line saying what to fix.
    assert code == EXIT_CONFIG
    assert "MYAPP_ADMIN_PASSWORD must be" in backend.log_text()
    assert "Traceback" not in backend.log_text()


def test_site_keeps_open_mode_on_this_machine(host, notify_dir, nginx_temp, nginx_binary, running):
    """With no account and no admin token the backend on loopback is in open mode (everyone on
    this machine is the admin). Behind nginx a client elsewhere must not get in by naming a
    loopback Host; nginx/vm.conf treats only 127.0.0.1 and ::1 as this machine, so a client
    from 127.0.0.2 stands in for one elsewhere."""
    # A file whose admin password line was taken out again, on a workspace without accounts.
    text = filled_env_file(MYAPP_SECRET_KEY=secrets.token_urlsafe(32))
    text, count = re.subn(r"(?m)^MYAPP_ADMIN_PASSWORD=$", "#MYAPP_ADMIN_PASSWORD=", text)
    assert count == 1
    host.write_env_file(text)
    backend = service(units()["backend"], host, notify_dir)
    running.append(backend.start())
    backend.wait_ready()
    nginx = install_site(VM_SITE.read_text(), host, nginx_binary, nginx_temp)
    running.append(nginx)
    nginx.start()
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")

    def me(host_header: str, transport=None) -> httpx.Response:
        with httpx.Client(transport=transport, timeout=30) as client:
            return client.get(nginx.url + "/api/auth/me", headers={"Host": host_header})

    wait_until(lambda: me("localhost").status_code == 200, 20, "the API through nginx")
    local = me(f"localhost:{nginx.port}").json()
    assert local["open_mode"] is True and local["role"] == "admin"
    for name in ("localhost", f"127.0.0.1:{nginx.port}", "[::1]", "LOCALHOST", "[0:0::1]"):
        assert me(name, elsewhere).status_code == 421, name
    # Under its public name the app itself refuses open mode.
    public = me("data.example.org", elsewhere)
    assert public.status_code == 401
    assert public.json()["error"]["code"] == "open_mode_loopback_only"

    # Without the guard the same request would be the admin's: the guard is what stops it.
    site = nginx.prefix / "sites-enabled" / "myapp"
    guard = re.compile(r"\n\s*if \(\$myapp_foreign_loopback_host\) \{[^}]*\}")
    unguarded, count = guard.subn("", site.read_text())
    assert count == 1
    site.write_text(unguarded)
    nginx.reload()
    # Old workers may still answer 421 while the reload lands, and a worker that is being
    # replaced can answer an nginx error page: wait for the new configuration's answer itself.
    wait_until(lambda: me("localhost", elsewhere).status_code == 200, 20, "nginx to reload")
    assert me("localhost", elsewhere).json()["role"] == "admin"
