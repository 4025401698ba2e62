"""A container without Docker: a process in new network, PID and mount namespaces.

The image's command becomes PID 1 of a fresh PID namespace with its own loopback, so it listens
on its real default ports without meeting anything else on this machine, and the health check
runs inside the same namespaces as `docker exec` would run it (seeing only the container's
processes in /proc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.files import Container

# Docker gives a container its own loopback; the namespace's starts down.
INIT = 'ip link set lo up && exec "$@"'


@dataclass
class RunningContainer:
    spec: Container
    proc: subprocess.Popen
    pid: int  # PID 1 of the container, as seen from here
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def cmdline(self) -> list[str]:
        raw = Path(f"/proc/{self.pid}/cmdline").read_bytes()
        return raw.decode().split("\0")[:-1]

    def exec(self, argv: list[str], timeout_s: float = 10) -> subprocess.CompletedProcess[str]:
        """`docker exec`: argv inside the container's namespaces, with its environment."""
        return subprocess.run(
            ["nsenter", f"--target={self.pid}", "--net", "--pid", "--mount", "--", *argv],
            env=self.spec.env,
            cwd=self.spec.cwd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        return self.exec(self.spec.healthcheck)

    def wait_healthy(self, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the health check as Docker does until it passes (the image's start period)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"container exited with {self.proc.returncode}:\n{self.log_text()}"
                )
            try:
                result = self.healthcheck()
            except subprocess.TimeoutExpired as exc:
                # Docker counts a check that outlives its timeout as failed and checks again; on
                # a loaded machine the check's own Python start-up can take that long.
                result = subprocess.CompletedProcess(exc.cmd, -1, "", "the check timed out")
            if result.returncode == 0:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"health check still failing after {timeout_s} s: {result.stdout}"
                    f"{result.stderr}\n{self.log_text()}"
                )
            time.sleep(0.3)

    def stop(self, timeout_s: float = 40) -> int:
        """`docker stop`: SIGTERM to PID 1, then wait (compose allows 40 s)."""
        if self.proc.poll() is None:
            # unshare waits for PID 1, so the pid cannot have been reused by anyone else.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            self.proc.wait(timeout_s)
        return self.proc.returncode


def _child_of(pid: int, timeout_s: float = 10) -> int:
    deadline = time.monotonic() + timeout_s
    children = Path(f"/proc/{pid}/task/{pid}/children")
    while time.monotonic() < deadline:
        try:
            text = children.read_text().split()
        except FileNotFoundError:
            text = []
        if text:
            return int(text[0])
        time.sleep(0.02)
    raise RuntimeError("the container's first process did not start")


@contextmanager
def run_container(
    spec: Container, log: Path, netns: str | None = None
) -> Iterator[RunningContainer]:
    """Start the container's command as PID 1 of a new PID namespace; in a network namespace of
    its own, or in the named one (a service of the emulated compose network)."""
    spec.cwd.mkdir(parents=True, exist_ok=True)
    pid_ns = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
    if netns is None:
        argv = [*pid_ns, "--net", "sh", "-c", INIT, "container", *spec.argv]
    else:
        # `ip netns exec` execs unshare in place, after mounting the namespace's own /etc/hosts.
        argv = ["ip", "netns", "exec", netns, *pid_ns, *spec.argv]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            env=spec.env,
            cwd=spec.cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        running = RunningContainer(spec, proc, _child_of(proc.pid), log)
        yield running
    finally:
        if proc.poll() is None:
            # unshare --kill-child takes PID 1, and with it the whole PID namespace.
            proc.kill()
        proc.wait(20)
