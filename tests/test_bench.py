"""The load benchmark's own arithmetic and its nginx site: the repository's config moved to
loopback ports must still be a config nginx accepts, routing to those ports only."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"


@pytest.fixture(scope="module")
def load():
    # The benchmarks run as scripts and import their helpers by module name.
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_load", BENCH / "load.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        yield module
    finally:
        for name in ("bench_load", "common"):
            sys.modules.pop(name, None)
        sys.path.remove(str(BENCH))


def test_percentiles_are_nearest_rank(load):
    values = [float(v) for v in range(1, 101)]
    assert load.percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert load.percentiles([7.0]) == {"p50": 7.0, "p95": 7.0, "p99": 7.0}
    assert load.percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_memory_growth_ignores_a_passing_peak_but_not_a_climb(load):
    flat = [(t, 300.0) for t in range(0, 200, 5)]
    flat[20] = (100, 450.0)  # one export's buffers, gone by the next sample
    summary = load.rss_summary(flat, warmup_s=30, end_s=200)
    assert summary["growth"] == 0 and summary["peak"] == 450
    climbing = [(t, 300.0 + t) for t in range(0, 200, 5)]
    summary = load.rss_summary(climbing, warmup_s=30, end_s=200)
    assert summary["growth"] > load.RSS_GROWTH_TARGET_MB
    assert summary["slope"] == pytest.approx(60.0)
    # Samples after the deadline (waiting for the last answers) are not the load's.
    assert load.rss_summary(climbing, warmup_s=30, end_s=40)["growth"] == 10  # 330 → 340
    assert load.rss_summary(climbing[:3], warmup_s=30, end_s=200)["growth"] is None


@pytest.mark.parametrize("site", ["vm.conf", "docker-compose.conf"])
def test_the_repository_site_runs_on_loopback_ports(load, site, tmp_path, monkeypatch):
    source = BENCH.parent / "nginx" / site
    if not source.exists():
        pytest.skip(f"nginx/{site} is not in this checkout")
    monkeypatch.setattr(load, "NGINX_VM_CONF", source)
    monkeypatch.setattr(load, "NGINX_COMPOSE_CONF", source)
    conf, name = load.nginx_prefix(tmp_path, listen=18080, backend=18000, frontend=18001)
    assert name == site
    text = "".join(p.read_text() for p in conf.parent.rglob("*.conf") if p.is_file())
    assert "listen 127.0.0.1:18080" in text
    assert "127.0.0.1:18000" in text and "127.0.0.1:18001" in text
    assert "backend:12000" not in text and "127.0.0.1:12000" not in text
    assert "resolver 127.0.0.11" not in text
    nginx = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if nginx is None:
        pytest.skip("nginx is not installed")
    check = subprocess.run(
        [nginx, "-t", "-p", f"{conf.parent}/", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr


def test_the_browse_benchmark_runs_at_a_tiny_size(tmp_path):
    """bench/browse.py end to end on 1,000 rows, once: servers, upload, every case, the
    side-by-side table of both sizes (the real run is 1M and 5M rows)."""
    out = tmp_path / "browse.json"
    run = subprocess.run(
        [sys.executable, "browse.py", "--rows", "1000,1200", "--repeat", "1", "--json", str(out)],
        cwd=BENCH,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "side by side" in run.stdout
    results = json.loads(out.read_text())
    assert set(results) == {"1000", "1200"}
    for figures in results.values():
        assert "search + sort, cold" in figures["myapp"]
        for by in figures["myapp"].values():
            assert {"api", "page", "duckdb"} <= set(by)
