"""Fixtures of the lake tests: a private PostgreSQL cluster and DuckDB 1.4.4 with DuckLake.

Only tests under tests/lake use them; each skips, saying why, when PostgreSQL's server or the
DuckDB 1.4.4 extension packages cannot be had here.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.support import duckdb_env, postgres
from tests.support.lake import LakeBackends, LakeEnv

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def lake_python() -> tuple:
    """The DuckDB 1.4.4 interpreter and the folder of its extension packages."""
    python = duckdb_env.lts_python_or_skip()
    return python, duckdb_env.extension_directory(python)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[postgres.Cluster]:
    """One private cluster per test session (a few seconds to start); tests get a database
    of their own in it (`catalog`)."""
    try:
        postgres.server_bin()
    except postgres.Unavailable as exc:
        pytest.skip(str(exc))
    with postgres.running_cluster() as cluster:
        yield cluster


@pytest.fixture
def catalog(postgres_cluster: postgres.Cluster) -> postgres.Cluster:
    """A fresh, empty PostgreSQL database for one test's lake catalog."""
    name = f"lake_{next(_databases)}"
    created = subprocess.run(
        [
            str(postgres.server_bin() / "psql"),
            postgres_cluster.url,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            f"CREATE DATABASE {name}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    return replace(postgres_cluster, database=name)


@pytest.fixture
def lake(lake_python, catalog, tmp_path) -> LakeEnv:
    """A new DuckLake: its catalog in `catalog`, its Parquet files under a temporary data path."""
    python, extensions = lake_python
    data_path = tmp_path / "lake-data"
    data_path.mkdir()
    return LakeEnv(python, extensions, catalog, data_path)


@pytest.fixture
def lake_backends(lake_python, catalog, tmp_path) -> Iterator[LakeBackends]:
    """Starts backends in the lake mode (DuckDB 1.4.4) over one catalog and one data path,
    each with a local data directory of its own, as on separate machines; all stopped after."""
    backends = LakeBackends(lake_python[0], catalog, tmp_path)
    try:
        yield backends
    finally:
        backends.stop_all()
