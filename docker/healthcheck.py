"""Container health check for every role of myapp: exit 0 when the role's health URL answers 200.

The image's HEALTHCHECK and the compose file run this with the container's environment. It uses
only the standard library (no curl in the image, and importing myapp would cost a second per
check). The role and port are found the way `myapp serve` finds them, so the check probes what
the server really listens on: the role given to this script, else the running `myapp serve`
process's own --role / --port / --host (`docker run image serve --role backend`), else MYAPP_ROLE
/ MYAPP_PORT / MYAPP_HOST, else the defaults of `myapp serve`.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_PORTS = {"backend": 12000, "frontend": 12001, "all": 12001}
HEALTH_PATHS = {"backend": "/api/health", "frontend": "/healthz", "all": "/api/health"}
# Below Docker's --timeout (5 s) so a hung server is reported by this script, with a reason.
TIMEOUT_S = 4.0
PROC = Path("/proc")


def serve_arguments(proc: Path = PROC) -> list[str]:
    """The arguments after `serve` of the `myapp serve` process in this container, if any."""
    pids = sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit())
    for pid in pids:
        try:
            argv = (proc / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        for i, arg in enumerate(argv[1:], start=1):
            before = argv[i - 1]
            if arg == "serve" and (Path(before).name == "myapp" or before == "-m"):
                return [a for a in argv[i + 1 :] if a]
    return []


def option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def probe_host(host: str) -> str:
    if host in ("", "0.0.0.0"):  # noqa: S104 - a wildcard bind answers on loopback
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def health_url(argv: list[str], env: dict[str, str], serve_args: list[str]) -> str:
    role = (
        (argv[0] if argv else None)
        or option(serve_args, "--role")
        or env.get("MYAPP_ROLE")
        or "all"
    )
    if role not in DEFAULT_PORTS:
        raise ValueError(f"unknown role {role!r} (expected backend, frontend or all)")
    port = option(serve_args, "--port") or env.get("MYAPP_PORT") or str(DEFAULT_PORTS[role])
    host = option(serve_args, "--host") or env.get("MYAPP_HOST", "127.0.0.1")
    return f"http://{probe_host(host)}:{port}{HEALTH_PATHS[role]}"


def main(argv: list[str]) -> int:
    try:
        url = health_url(argv, dict(os.environ), serve_arguments())
    except ValueError as exc:
        print(f"unhealthy: {exc}")
        return 1
    # An HTTP(S)_PROXY set for the app's own downloads must not take the check elsewhere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_S) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(f"unhealthy: {url}: {reason}")
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}")
        return 1
    print(f"healthy: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
