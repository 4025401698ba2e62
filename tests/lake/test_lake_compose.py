"""docker-compose.lake.yml: valid by the compose specification, and the shape the lake mode
needs (PostgreSQL with a volume, two backends sharing the lake volume and the catalog, nginx
spreading the API over both). The files only; nothing is started."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.lake.yml"
NGINX = ROOT / "nginx" / "docker-compose.lake.conf"

pytestmark = pytest.mark.lake


def test_the_lake_compose_file_is_valid_against_the_compose_spec():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_lake_topology():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "backend-a", "backend-b", "frontend", "nginx"}
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    backends = [services["backend-a"], services["backend-b"]]
    for backend in backends:
        env = backend["environment"]
        assert env["MYAPP_ROLE"] == "backend"
        assert env["MYAPP_CATALOG_URL"].startswith("postgresql://myapp:")
        assert "@postgres:5432/" in env["MYAPP_CATALOG_URL"]
        assert f"lake-data:{env['MYAPP_LAKE_DATA_PATH']}" in backend["volumes"]
        assert backend["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "ports" not in backend  # reached through nginx only
    # Each backend keeps its own local data directory.
    local = [v for b in backends for v in b["volumes"] if v.endswith(":/app/data")]
    assert len(set(local)) == 2
    assert services["frontend"]["environment"]["MYAPP_BACKEND_URL"] == "http://nginx:8080"
    assert {"lake-data", "postgres-data"} <= set(compose["volumes"])

    conf = NGINX.read_text()
    assert "server backend-a:12000" in conf and "server backend-b:12000" in conf
    assert "set $myapp_backend http://myapp_backends;" in conf
    assert (
        "./nginx/docker-compose.lake.conf:/etc/nginx/conf.d/default.conf:ro"
        in (services["nginx"]["volumes"])
    )


def test_the_lake_nginx_site_is_accepted_by_nginx(tmp_path):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "nginx" / "snippets", conf / "snippets")
    (conf / "certs").mkdir()
    (tmp_path / "logs").mkdir()
    # The compose service names resolve only on the compose network; loopback stands in.
    site = NGINX.read_text().replace("backend-a:", "127.0.0.1:").replace("backend-b:", "127.0.0.2:")
    (conf / "default.conf").write_text(site)
    (conf / "nginx.conf").write_text("events {}\nhttp { include default.conf; }\n")
    checked = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", "conf/nginx.conf"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
