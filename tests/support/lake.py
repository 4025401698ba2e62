"""DuckLake for tests: DuckDB 1.4.4 with the ducklake and postgres extensions, over a private
PostgreSQL catalog (tests/support/postgres.py) and a data path in a temporary directory.

The extensions come from the PyPI packages `duckdb-ext-ducklake` and `duckdb-ext-postgres`
(DuckDB 1.4.4 only; tests/support/duckdb_env.py), so everything that touches the lake runs in
that environment's interpreter, as a separate process: `LakeEnv.run(script, …)` runs Python
source there with `con`, a connection with the lake attached as `lake`, already made.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from tests.support.accounts import secured_env
from tests.support.postgres import Cluster
from tests.support.servers import ServerProcess

# Attaches the lake in a fresh DuckDB 1.4.4 process. argv: extension dir, libpq string, data
# path, then the script's own arguments (as `args`).
PRELUDE = textwrap.dedent(
    """
    import json, sys
    import duckdb
    extensions, libpq, data_path, *args = sys.argv[1:]
    con = duckdb.connect()
    con.execute("SET extension_directory = ?", [extensions])
    con.execute("LOAD ducklake")
    con.execute("LOAD postgres")
    def literal(text):
        return "'" + text.replace("'", "''") + "'"
    # ATTACH takes no parameters: the strings are quoted as SQL literals.
    con.execute(
        f"ATTACH {literal('ducklake:postgres:' + libpq)} AS lake "
        f"(DATA_PATH {literal(data_path)})"
    )
    """
)


@dataclass(frozen=True)
class LakeEnv:
    python: Path
    extensions: str
    catalog: Cluster
    data_path: Path

    def command(self, script: str, *args: str) -> list[str]:
        return [
            str(self.python),
            "-c",
            PRELUDE + textwrap.dedent(script),
            self.extensions,
            self.catalog.libpq,
            str(self.data_path) + "/",
            *args,
        ]

    def run(self, script: str, *args: str, timeout: float = 120) -> object:
        """Run `script` with the lake attached; it prints one JSON value, returned decoded."""
        done = subprocess.run(
            self.command(script, *args), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise AssertionError(f"lake script failed:\n{done.stderr}")
        return json.loads(done.stdout)


class LakeBackends:
    """Backends in the lake mode sharing one catalog and one data path (tests/lake)."""

    def __init__(self, python: Path, catalog: Cluster, root: Path) -> None:
        self.python = python
        self.catalog = catalog
        self.root = root
        self.data_path = root / "lake-data"
        self.data_path.mkdir(exist_ok=True)
        self.servers: list[ServerProcess] = []

    def env(self, **extra: str) -> dict[str, str]:
        return secured_env(
            **{
                "MYAPP_CATALOG_URL": self.catalog.url,
                "MYAPP_LAKE_DATA_PATH": str(self.data_path),
                **extra,
            }
        )

    def start(self, **extra: str) -> ServerProcess:
        server = ServerProcess(
            "backend",
            self.root / f"backend-{len(self.servers) + 1}",
            env=self.env(**extra),
            python=self.python,
        )
        self.servers.append(server)
        server.start()
        return server

    def start_together(self, count: int) -> list[ServerProcess]:
        """Start `count` backends at the same moment (a fresh catalog: one applies the
        migrations and makes the lake, the others wait for it), then wait for all."""
        servers = []
        for _ in range(count):
            server = ServerProcess(
                "backend",
                self.root / f"backend-{len(self.servers) + 1}",
                env=self.env(),
                python=self.python,
            )
            self.servers.append(server)
            servers.append(server.start(wait=False))
        for server in servers:
            server.wait_healthy(timeout_s=120)
        return servers

    def stop_all(self) -> None:
        for server in self.servers:
            server.kill()

    def psql(self, sql: str) -> list[list[str]]:
        """Rows of a query run by psql against the catalog database, as text."""
        done = subprocess.run(
            ["psql", self.catalog.url, "-tAF", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return [line.split("\t") for line in done.stdout.splitlines() if line]
