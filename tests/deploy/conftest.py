"""Deployment tests: the Dockerfile, docker-compose.yml, nginx and Coolify files, proven here.

There is no Docker engine on these machines, so the image's and compose file's own commands run
as real processes, in network and PID namespaces standing in for containers. On CI (CI=true) a
missing nginx or namespace support is a failure, not a skip: .ci/run installs what they need.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.deploy.netns import require_netns


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/deploy/" in str(item.fspath):
            item.add_marker(pytest.mark.deploy)


@pytest.fixture
def netns() -> None:
    """Namespaces (root, iproute2, util-linux) or a skip."""
    require_netns()


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    path = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed; .ci/run must install nginx-light")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return path
