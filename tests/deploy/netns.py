"""Network namespaces for the deployment tests: a compose network without Docker.

Every name carries a per-run prefix, so parallel runs and other people's namespaces never
collide; interfaces are created inside the namespaces, never in the host's. Traffic only flows
between the namespaces made here: they have no route anywhere else, and the test's own client
runs inside one of them (a thread that entered it, checked before any socket is opened).
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

NETNS_ETC = Path("/etc/netns")
CLONE_NEWNET = 0x40000000
# A private /24 that nothing on this machine uses (checked before use); it exists only inside
# the namespaces, so even a run in parallel with the same subnet cannot meet this one.
SUBNET = "10.206.6"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def netns_problem() -> str | None:
    """Why namespaces cannot be used here, or None."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "unshare/nsenter (util-linux) are not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"myapp-probe-{os.getpid()}-{secrets.token_hex(3)}"
    made = run("ip", "netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    run("ip", "netns", "del", probe, check=False)
    return None


def require_netns() -> None:
    """Skip without namespaces; on CI (CI=true) that is a failure, since CI runs as root."""
    problem = netns_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the deployment tests need network namespaces on CI: {problem}")
    pytest.skip(f"network namespaces unavailable: {problem}")


def subnet_in_use(prefix: str = SUBNET) -> bool:
    text = run("ip", "-4", "addr").stdout + run("ip", "-4", "route").stdout
    return f" {prefix}." in text or f"\n{prefix}." in text


_OURS = re.compile(r"^myapp-(?:probe-)?(\d+)-[0-9a-f]+")


def sweep_stale() -> None:
    """Remove namespaces of this naming scheme left by a test run that was killed (its pid is
    gone), so they do not pile up; a live run's are never touched."""
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _OURS.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            run("ip", "netns", "del", name, check=False)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)


class ComposeNetwork:
    """A bridge network like compose's app-network: one namespace per service, veth pairs to a
    bridge in a namespace of its own that also plays the Docker host (the gateway address)."""

    def __init__(self, services: list[str], tag: str | None = None) -> None:
        self.prefix = f"myapp-{os.getpid()}-{tag or secrets.token_hex(2)}"
        self.services = services
        self.host_ns = f"{self.prefix}-host"
        self.gateway = f"{SUBNET}.1"
        self.addresses = {name: f"{SUBNET}.{10 + i}" for i, name in enumerate(services)}
        self.processes: list[subprocess.Popen] = []
        self._made: list[str] = []

    def ns(self, service: str) -> str:
        return self.host_ns if service == "host" else f"{self.prefix}-{service}"

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self) -> ComposeNetwork:
        sweep_stale()
        if subnet_in_use():
            raise RuntimeError(f"{SUBNET}.0/24 is in use on this machine; pick another SUBNET")
        for name in [self.host_ns, *(self.ns(s) for s in self.services)]:
            run("ip", "netns", "add", name)
            self._made.append(name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "-n", self.host_ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.host_ns, "addr", "add", f"{self.gateway}/24", "dev", "br0")
        run("ip", "-n", self.host_ns, "link", "set", "br0", "up")
        for service in self.services:
            ns, outside = self.ns(service), f"v-{service}"[:15]
            run("ip", "-n", self.host_ns, "link", "add", outside, "type", "veth",
                "peer", "name", "eth0", "netns", ns)  # fmt: skip
            run("ip", "-n", self.host_ns, "link", "set", outside, "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.addresses[service]}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
        for name in self._made:
            self.write_hosts(name)
        return self

    def down(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                # SIGTERM first: nginx's master takes its workers along only when asked nicely.
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    with suppress(subprocess.TimeoutExpired):
                        proc.wait(10)
        for name in reversed(self._made):
            # Anything still running inside was started by this test (a descendant of ours).
            pids = run("ip", "netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                with suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            # Deleting a namespace also removes the interfaces inside it.
            run("ip", "netns", "del", name, check=False)
            shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        self._made.clear()

    # -- names ------------------------------------------------------------------------------
    def hosts_file(self, ns: str) -> Path:
        return NETNS_ETC / ns / "hosts"

    def hosts_text(self, names: dict[str, str]) -> str:
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        lines += [f"{address} {name}" for name, address in names.items()]
        return "\n".join(lines) + "\n"

    def write_hosts(self, ns: str, names: dict[str, str] | None = None) -> None:
        """`ip netns exec` bind-mounts this file over /etc/hosts; rewriting it in place (same
        inode) lets running processes see a change, as Docker's DNS does."""
        path = self.hosts_file(ns)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.hosts_text(names if names is not None else self.addresses))

    def set_names(self, names: dict[str, str]) -> None:
        """What the service names resolve to from now on, in every namespace."""
        for name in self._made:
            self.write_hosts(name, names)

    def move(self, service: str, address: str) -> None:
        """Give a service a new address, like a container recreated on the same network."""
        ns = self.ns(service)
        run("ip", "-n", ns, "addr", "flush", "dev", "eth0")
        run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        self.addresses[service] = address

    # -- processes --------------------------------------------------------------------------
    def start(
        self,
        service: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        log: Path,
    ) -> subprocess.Popen:
        """Run argv inside a service's namespace (`ip netns exec` execs it: same pid)."""
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(service), *argv],
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.processes.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout_s: float = 40) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise RuntimeError("a service did not stop on SIGTERM") from None
        return proc.returncode

    @contextmanager
    def client(self, service: str = "host") -> Iterator[Callable[[Callable[[], T]], T]]:
        """Run callables on a thread that has entered a namespace: the test's browser/CLI."""
        ns_path = f"/run/netns/{self.ns(service)}"
        expected = os.stat(ns_path).st_ino
        libc = ctypes.CDLL(None, use_errno=True)

        def enter() -> None:
            fd = os.open(ns_path, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)

        def call(fn: Callable[[], T]) -> T:
            def guarded() -> T:
                # Never send a request from the host's own namespace.
                if os.stat("/proc/thread-self/ns/net").st_ino != expected:
                    raise RuntimeError("client thread is not inside the test namespace")
                return fn()

            return pool.submit(guarded).result()

        pool = ThreadPoolExecutor(max_workers=1, initializer=enter)
        try:
            yield call
        finally:
            pool.shutdown(wait=True)


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
