"""nginx keeps /api/metrics off the public side while the rest of /api passes through.

nginx/docker-compose.conf runs unprivileged on a loopback port (its `listen` and its backend's
address rewritten to loopback; the snippets it includes are the repository's own, unchanged)
in front of a real backend: no namespaces needed.
"""

from __future__ import annotations

import subprocess
import time

import httpx

from tests.deploy.files import NGINX_CONF, ROOT, nginx_prefix, read_compose
from tests.support.accounts import ADMIN_HEADERS, bearer, secured_env
from tests.support.servers import free_port

METRICS_TOKEN = "metrics-token-behind-nginx-0123"


def test_nginx_answers_404_for_metrics_and_proxies_the_api(nginx_binary, start_server, tmp_path):
    backend = start_server("backend", env=secured_env(MYAPP_METRICS_TOKEN=METRICS_TOKEN))
    port = free_port()
    site = NGINX_CONF.read_text()
    assert "listen 80 default_server;" in site and "http://backend:12000" in site
    site = site.replace("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;")
    site = site.replace("http://backend:12000", backend.url)
    site = site.replace("access_log /dev/stdout myapp;", "access_log off;")
    rewritten = tmp_path / "default.conf"
    rewritten.write_text(site)
    certs = tmp_path / "certs"
    certs.mkdir()
    conf = nginx_prefix(
        read_compose()["services"]["nginx"],
        tmp_path / "etc-nginx",
        {"./nginx/docker-compose.conf": rewritten, "./nginx/certs": certs},
        tmp_path / "temp",
    )
    assert (ROOT / "nginx/snippets/myapp-server.conf").exists()
    with (tmp_path / "nginx.log").open("wb") as log:
        proc = subprocess.Popen(
            [nginx_binary, "-p", f"{conf.parent}/", "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                health = httpx.get(f"{url}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, (tmp_path / "nginx.log").read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        assert health.status_code == 200
        for headers in ({}, ADMIN_HEADERS, bearer(METRICS_TOKEN)):
            refused = httpx.get(f"{url}/api/metrics", headers=headers, timeout=5)
            assert refused.status_code == 404
            assert refused.json()["error"]["code"] == "not_found"
        # The same request straight to the backend (the private side) is served.
        direct = httpx.get(f"{backend.url}/api/metrics", headers=bearer(METRICS_TOKEN))
        assert direct.status_code == 200 and "myapp_build_info" in direct.text
    finally:
        proc.terminate()
        proc.wait(10)
