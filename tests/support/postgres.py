"""A private PostgreSQL cluster for tests, from Debian's packages (`apt-get install postgresql`).

Each cluster lives in a temporary directory of its own on a free 127.0.0.1 port with a
password, as a catalog server would, and is stopped and removed in a finally. PostgreSQL
refuses to run as root, so when the tests run as root (CI) `initdb` and the server run as the
`postgres` user the package creates, in a directory that user owns. Without the package the
tests that need it skip, saying how to install it.

`running_cluster(netns=…, listen=…)` starts the server inside a network namespace instead (the
catalog host of a cluster of backends in namespaces of their own; tests/lake/test_lake_cluster.py):
only initdb and the stop work from outside, everything that listens or connects runs inside.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port

PG_ROOT = Path("/usr/lib/postgresql")
START_TIMEOUT_S = 60
USER = "myapp"
DATABASE = "lake"


class Unavailable(RuntimeError):
    """No PostgreSQL server here (or no way to run it); tests skip on it."""


@dataclass(frozen=True)
class Cluster:
    host: str
    port: int
    user: str
    password: str
    database: str
    directory: Path
    netns: str | None = None

    @property
    def url(self) -> str:
        """The MYAPP_CATALOG_URL form."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.database}"

    @property
    def libpq(self) -> str:
        """The key=value form DuckDB's postgres extension takes after `ducklake:postgres:`."""
        return (
            f"dbname={self.database} host={self.host} port={self.port} "
            f"user={self.user} password={self.password}"
        )


def server_bin() -> Path:
    """The bin directory of the newest PostgreSQL server installed by Debian's packages."""
    found = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists() and (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not found:
        raise Unavailable(
            "PostgreSQL's server is not installed (apt-get install -y postgresql); "
            "the lake tests need it"
        )
    return found[-1]


def _runner() -> tuple[dict, int | None]:
    """Popen arguments that run a command as `postgres` when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return {}, None
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable(
            "running as root and there is no `postgres` user to run PostgreSQL as "
            "(Debian's postgresql package creates it)"
        ) from None
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}, account.pw_uid


def _in_netns(netns: str | None) -> tuple[list[str], dict]:
    """The command prefix and Popen arguments that run a command as PostgreSQL's user, inside
    `netns` if given. Entering a namespace needs root, so there the user is dropped after it
    (setpriv), not by Popen before it."""
    as_user, uid = _runner()
    if netns is None:
        return [], as_user
    prefix = ["ip", "netns", "exec", netns]
    if uid is not None:
        prefix += ["setpriv", f"--reuid={uid}", f"--regid={as_user['group']}", "--clear-groups"]
    return prefix, {}


def _start_command(
    bin_dir: Path, directory: Path, port: int, listen: str = "127.0.0.1"
) -> list[str]:
    options = (
        f"-c listen_addresses={listen} -p {port} -k {directory} "
        "-c fsync=off -c full_page_writes=off -c max_connections=50"
    )
    return [
        str(bin_dir / "pg_ctl"),
        "-D",
        str(directory / "data"),
        "-l",
        str(directory / "server.log"),
        "-o",
        options,
        "-w",
        "-t",
        str(START_TIMEOUT_S),
        "start",
    ]


def _pg_ctl(args: list[str], netns: str | None = None) -> None:
    prefix, as_user = _in_netns(netns)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    done = subprocess.run(
        [*prefix, *args], capture_output=True, text=True, env=env, timeout=120, **as_user
    )
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctl failed: {done.stderr.strip() or done.stdout}")


def stop(cluster: Cluster) -> None:
    """Stop the server at once, as a crash or a lost host would (`immediate`)."""
    data = str(cluster.directory / "data")
    _pg_ctl([str(server_bin() / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop"])


def start(cluster: Cluster) -> None:
    """Start a stopped cluster again on its port."""
    _pg_ctl(
        _start_command(server_bin(), cluster.directory, cluster.port, cluster.host),
        cluster.netns,
    )


@contextlib.contextmanager
def running_cluster(
    *,
    netns: str | None = None,
    listen: str = "127.0.0.1",
    port: int | None = None,
    database: str = DATABASE,
) -> Iterator[Cluster]:
    """Start a fresh cluster (listening on `listen`, inside `netns` if given) with an empty
    `database`; stop it and delete its directory afterwards, whatever happens."""
    bin_dir = server_bin()
    as_user, uid = _runner()
    inside, inside_user = _in_netns(netns)
    # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="myapp-pg-"))
    data = directory / "data"
    password = secrets.token_hex(12)
    port = port or free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    started = False
    try:
        (directory / "pwfile").write_text(password + "\n")
        if uid is not None:
            os.chown(directory, uid, -1)
            os.chown(directory / "pwfile", uid, -1)

        def run(*args: str, prefix: list[str] | None = None, user: dict = as_user) -> None:
            done = subprocess.run(
                [*(prefix or []), *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
                **user,
            )
            if done.returncode != 0:
                raise RuntimeError(f"{args[0]} failed: {done.stderr.strip() or done.stdout}")

        run(
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            USER,
            f"--pwfile={directory / 'pwfile'}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        )
        started = True
        if listen != "127.0.0.1":
            # initdb admits loopback only; a catalog server admits its own network, by password.
            with (data / "pg_hba.conf").open("a") as hba:
                hba.write("host all all samenet scram-sha-256\n")
        run(*_start_command(bin_dir, directory, port, listen), prefix=inside, user=inside_user)
        run(
            str(bin_dir / "psql"),
            f"postgresql://{USER}:{password}@{listen}:{port}/postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            f"CREATE DATABASE {database}",
            prefix=inside,
            user=inside_user,
        )
        yield Cluster(listen, port, USER, password, database, directory, netns)
    finally:
        if started:
            subprocess.run(
                [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                env=env,
                timeout=60,
                **as_user,
            )
        shutil.rmtree(directory, ignore_errors=True)
