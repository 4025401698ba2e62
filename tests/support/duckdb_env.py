"""A second Python environment with DuckDB 1.4.4 (LTS), built once and cached.

The main environment runs DuckDB 2.x. The extension packages on PyPI (`duckdb-ext-httpfs`,
`duckdb-ext-ducklake`, `duckdb-ext-postgres`) exist for DuckDB 1.4.4 only, and myapp supports
1.4.4 as well, so the tests that need either build this environment once in
`~/.cache/myapp-tests` (`$XDG_CACHE_HOME` if set) and reuse it. It sees the main environment's
packages (`--system-site-packages`), so only DuckDB and its extensions are installed into it and
myapp runs in it from PYTHONPATH or the editable install; its own DuckDB comes first on sys.path.

Run any test file on 1.4.4:  `$(python -m tests.support.duckdb_env) -m pytest tests/backend/…`.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

DUCKDB_LTS = "1.4.4"
# The extension packages carry a build date after the DuckDB version (1.4.4.20260205).
PACKAGES = (
    f"duckdb=={DUCKDB_LTS}",
    f"duckdb-ext-httpfs=={DUCKDB_LTS}.*",
    f"duckdb-ext-ducklake=={DUCKDB_LTS}.*",
    f"duckdb-ext-postgres=={DUCKDB_LTS}.*",
)
PIP_TIMEOUT_S = 600


class Unavailable(RuntimeError):
    """The environment could not be built (no network, no such package); tests skip on it."""


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "myapp-tests"


def lts_python() -> Path:
    """The interpreter of the cached DuckDB 1.4.4 environment, built on first use.

    A file lock makes parallel test workers wait for one build instead of racing; the `ready`
    file, written last, names what was installed, so a changed package list rebuilds it.
    """
    cache = cache_dir()
    venv = cache / f"duckdb-{DUCKDB_LTS}"
    python = venv / "bin" / "python"
    wanted = "\n".join(PACKAGES) + "\n"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"duckdb-{DUCKDB_LTS}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = venv / "ready"
        if ready.exists() and ready.read_text() == wanted and python.exists():
            return python
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", "--system-site-packages", str(venv)],
            check=True,
            capture_output=True,
        )
        installed = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PACKAGES],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
        )
        if installed.returncode != 0:
            last = (installed.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise Unavailable(
                f"DuckDB {DUCKDB_LTS} and its extensions could not be installed: {last}"
            )
        ready.write_text(wanted)
    return python


def lts_python_or_skip() -> Path:
    import pytest

    try:
        return lts_python()
    except Unavailable as exc:
        pytest.skip(str(exc))


def extension_directory(python: Path) -> str:
    """Where the extension packages put their files (`SET extension_directory` to it)."""
    found = subprocess.run(
        [
            str(python),
            "-c",
            # A namespace package (no __init__.py): its folder comes from __path__.
            "import duckdb_ext, json, os; "
            "print(json.dumps(os.path.join(list(duckdb_ext.__path__)[0], 'extensions')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(found.stdout)


if __name__ == "__main__":
    print(lts_python())
