"""The deployment files themselves: lint, schema, the compose topology, and that the settings in
the compose file, .env.example, nginx and the app agree with each other."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from myapp.settings import Settings
from tests.deploy.files import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    HERE_BIN,
    NGINX_CONF,
    ROOT,
    InterpolationError,
    dockerfile_instructions,
    dockerignore_patterns,
    dockerignored,
    interpolate,
    parse_volume,
    read_compose,
    read_dotenv,
    service_environment,
)

NGINX_SNIPPETS = ROOT / "nginx" / "snippets"
SETTINGS_VARIABLES = {f"MYAPP_{name.upper()}" for name in Settings.model_fields}
# Read by docker-compose.yml itself (ports, the backend's user), never by the app.
# Variables of the compose files and the image build, not settings of the app: the container's
# user, the published ports, the lake catalog's database password, extra packages of the image.
COMPOSE_ONLY = {
    "MYAPP_UID",
    "MYAPP_GID",
    "MYAPP_HTTP_PORT",
    "MYAPP_HTTPS_PORT",
    "MYAPP_EXTRA_PACKAGES",
    "POSTGRES_PASSWORD",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return read_compose()


def compose_variables(text: str) -> set[str]:
    """Variables the compose file reads from .env: interpolated ones and value-less entries."""
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    names |= set(re.findall(r"^\s+(MYAPP_[A-Z0-9_]+):\s*$", text, re.M))
    return names


def test_dockerfile_is_hadolint_clean():
    hadolint = Path(HERE_BIN) / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_dockerfile_is_multi_stage_and_drops_root():
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    stages = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(stages) == 2 and " AS " in stages[0].upper()
    final = instructions[[k for k, _ in instructions].index("FROM", 1) :]
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert any("--from=build" in args for args in copies), "the runtime copies the built venv"
    users = [args for keyword, args in final if keyword == "USER"]
    assert users and not users[-1].startswith(("root", "0")), users
    # Exec form only: a shell in between would swallow SIGTERM and the graceful drain.
    for keyword in ("ENTRYPOINT", "CMD", "HEALTHCHECK"):
        args = [a for k, a in final if k == keyword][-1]
        assert "[" in args, f"{keyword} must use the exec form: {args}"


def test_compose_file_is_valid_against_the_compose_spec():
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE_FILE)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_topology(compose):
    services = compose["services"]
    assert set(services) == {"backend", "frontend", "nginx"}
    backend, frontend, nginx = services["backend"], services["frontend"], services["nginx"]

    # One image, run twice with different roles.
    assert backend["build"] == frontend["build"] == "."
    assert backend["image"] == frontend["image"]
    dotenv = {"MYAPP_SECRET_KEY": "s" * 32, "MYAPP_ADMIN_PASSWORD": "p" * 12}
    assert service_environment(backend, dotenv)["MYAPP_ROLE"] == "backend"
    assert service_environment(frontend, dotenv)["MYAPP_ROLE"] == "frontend"
    assert service_environment(frontend, dotenv)["MYAPP_BACKEND_URL"] == "http://backend:12000"

    def container_ports(service):
        return {str(p).rsplit(":", 1)[-1] for p in service.get("ports", [])}

    assert container_ports(backend) == {"12000"}
    assert container_ports(frontend) == {"12001"}
    assert container_ports(nginx) == {"80", "443"}
    # The apps' own ports are for the host itself, not the network: everyone else uses nginx.
    for service in (backend, frontend):
        assert all(str(p).startswith("127.0.0.1:") for p in service["ports"])

    # Data lives on the host, mounted into the backend only.
    assert [parse_volume(v)[:2] for v in backend["volumes"]] == [("./data", "/app/data")]
    assert "volumes" not in frontend
    assert not any("data" in parse_volume(v)[0] for v in nginx["volumes"])
    mounts = {parse_volume(v)[1]: parse_volume(v)[0] for v in nginx["volumes"]}
    assert mounts["/etc/nginx/conf.d/default.conf"] == "./nginx/docker-compose.conf"
    # The snippets the site includes (shared with nginx/vm.conf) are mounted where it looks.
    included = re.findall(r"^\s*include\s+snippets/([^;]+);", NGINX_CONF.read_text(), re.M)
    assert included and mounts["/etc/nginx/snippets"] == "./nginx/snippets"
    assert all((NGINX_SNIPPETS / name).is_file() for name in included), included

    for name in ("backend", "frontend"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    assert frontend["depends_on"] == {"backend": {"condition": "service_healthy"}}
    assert set(nginx["depends_on"]) == {"backend", "frontend"}

    for service in services.values():
        assert service["networks"] == ["app-network"]
        assert service["restart"] == "unless-stopped"
    assert compose["networks"]["app-network"]["driver"] == "bridge"


def test_compose_requires_the_secrets_with_a_message(compose):
    text = COMPOSE_FILE.read_text()
    for name in ("MYAPP_SECRET_KEY", "MYAPP_ADMIN_PASSWORD"):
        assert re.search(r"\$\{" + name + r":\?[^}]*\.env", text), name
    # Compose refuses to start with either missing or empty, naming .env.
    for missing in ("MYAPP_SECRET_KEY", "MYAPP_ADMIN_PASSWORD"):
        dotenv = {"MYAPP_SECRET_KEY": "s" * 32, "MYAPP_ADMIN_PASSWORD": "p" * 12, missing: ""}
        with pytest.raises(InterpolationError, match=f"{missing}.*\\.env"):
            for service in compose["services"].values():
                service_environment(service, dotenv)


def test_optional_variables_reach_the_container_only_when_set(compose):
    backend = compose["services"]["backend"]
    required = {"MYAPP_SECRET_KEY": "s" * 32, "MYAPP_ADMIN_PASSWORD": "p" * 12}
    # An admin token the user did not set must not arrive empty (the backend refuses an empty
    # one on a public bind); one that is set arrives as it is.
    assert "MYAPP_ADMIN_TOKEN" not in service_environment(backend, required)
    token = {**required, "MYAPP_ADMIN_TOKEN": "t" * 40, "MYAPP_MEMORY_LIMIT": "2GB"}
    environment = service_environment(backend, token)
    assert environment["MYAPP_ADMIN_TOKEN"] == "t" * 40
    assert environment["MYAPP_MEMORY_LIMIT"] == "2GB"
    # What compose pins cannot be broken by a stray line in .env.
    assert (
        service_environment(backend, {**required, "MYAPP_HOST": "127.0.0.1"})["MYAPP_HOST"]
        == "0.0.0.0"
    )


def test_every_variable_is_documented_and_real():
    text = COMPOSE_FILE.read_text()
    used = compose_variables(text)
    example = ENV_EXAMPLE.read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.M))
    assert used <= documented, f"missing from .env.example: {sorted(used - documented)}"
    # Everything passed to the app is one of its settings (no typo goes silently ignored).
    passed = set(re.findall(r"^\s+(MYAPP_[A-Z0-9_]+):", text, re.M))
    assert passed <= SETTINGS_VARIABLES, sorted(passed - SETTINGS_VARIABLES)
    assert documented <= SETTINGS_VARIABLES | COMPOSE_ONLY, sorted(
        documented - SETTINGS_VARIABLES - COMPOSE_ONLY
    )
    # The required ones are present but empty: copying the example cannot start a server.
    values = read_dotenv(ENV_EXAMPLE)
    assert values["MYAPP_SECRET_KEY"] == "" and values["MYAPP_ADMIN_PASSWORD"] == ""


def test_env_example_defaults_are_the_apps_defaults():
    for name, value in re.findall(r"^#(MYAPP_[A-Z0-9_]+)=(\S+)$", ENV_EXAMPLE.read_text(), re.M):
        field = name.removeprefix("MYAPP_").lower()
        if field not in Settings.model_fields:
            continue
        default = Settings.model_fields[field].default
        if default is None:
            continue  # worked out at start (workers: 2, threads: one per core)
        assert getattr(Settings(**{field: value}), field) == default, f"{name}={value}"


def test_nginx_limits_match_the_app():
    # The limits live in the snippet both sites include.
    conf = (NGINX_SNIPPETS / "myapp-server.conf").read_text()
    assert "include snippets/myapp-server.conf;" in NGINX_CONF.read_text()
    size = re.search(r"client_max_body_size\s+(\d+)([kmg]?);", conf)
    assert size is not None
    unit = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[size.group(2)]
    assert int(size.group(1)) * unit == Settings.model_fields["max_upload_bytes"].default
    read = re.search(r"proxy_read_timeout\s+(\d+)s;", conf)
    assert read is not None
    assert int(read.group(1)) * 1000 > Settings.model_fields["query_timeout_ms"].default
    # The compose file's stop grace period covers the app's own drain.
    compose = read_compose()
    grace = compose["services"]["backend"]["stop_grace_period"]
    assert int(grace.rstrip("s")) > Settings.model_fields["graceful_timeout_s"].default


def test_dockerignore_keeps_secrets_and_data_out_and_what_the_build_needs_in():
    patterns = dockerignore_patterns()
    for path in (".git/config", ".env", "data/app.db", "tests/conftest.py", "bench/x.py",
                 "myapp/__pycache__/cli.cpython-311.pyc", "nginx/certs/myapp.key"):  # fmt: skip
        assert dockerignored(path, patterns), path
    needed = []
    for keyword, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if keyword == "COPY" and "--from" not in args:
            needed += args.split()[:-1]
    assert needed, "the Dockerfile copies files from the context"
    for path in needed:
        assert not dockerignored(path, patterns), path
        assert (ROOT / path).exists(), path


def test_interpolation_matches_compose_rules():
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d}/${EMPTY:-d}/${EMPTY-d}/${UNSET-d}/$$SET", env) == "v/d//d/$SET"
    with pytest.raises(InterpolationError):
        interpolate("${EMPTY:?needed}", env)
    assert interpolate("${EMPTY?needed}", env) == ""


DOCS = [
    ROOT / "docs" / "deployment" / "docker-compose.md",
    ROOT / "docs" / "deployment" / "coolify.md",
    ROOT / "docs" / "deployment" / "vm.md",
    ROOT / "docs" / "deployment" / "lake.md",
    ROOT / "docs" / "architecture" / "deployment-view.md",
]


def test_deployment_docs_name_real_files_and_settings():
    patterns = dockerignore_patterns()
    for doc in DOCS:
        text = doc.read_text()
        for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (doc.parent / link).resolve().exists(), f"{doc.name}: broken link {link}"
        for path in re.findall(r"`((?:nginx|docker|docs|tests|deploy)/[\w./-]+)`", text):
            if path.startswith("nginx/certs/"):
                continue  # made by the certificate script, never committed
            assert (ROOT / path.rstrip("/")).exists(), f"{doc.name}: no {path}"
        for name in set(re.findall(r"\b(MYAPP_[A-Z0-9_]+)\b", text)):
            assert name in SETTINGS_VARIABLES | COMPOSE_ONLY, f"{doc.name}: {name}"
        # Files the guides tell Coolify to run inside a Nixpacks image (the repository at /app).
        for inside in re.findall(r"`python (/app/[\w./-]+)`", text):
            if doc.name == "coolify.md":
                relative = inside.removeprefix("/app/")
                assert (ROOT / relative).exists() and not dockerignored(relative, patterns)
