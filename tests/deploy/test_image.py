"""The image's start command and health check, exactly as the Dockerfile and compose file write
them, run as real processes (a container stand-in: new network, PID and mount namespaces)."""

from __future__ import annotations

import secrets
import shutil
import tomllib
from pathlib import Path

import pytest

from tests.deploy.containers import run_container
from tests.deploy.files import (
    HERE_BIN,
    NIXPACKS_FILE,
    ROOT,
    Container,
    container,
    parse_volume,
    read_compose,
    read_image,
    service_environment,
)

ADMIN_PASSWORD = "image-test-" + secrets.token_urlsafe(12)
SECRET_KEY = secrets.token_urlsafe(32)


@pytest.fixture
def image():
    return read_image()


def docker_run(image, tmp_path: Path, environment: dict[str, str], command=None) -> Container:
    """`docker run -e … -v ./data:/app/data image [command]`."""
    return container(
        image,
        environment=environment,
        command=command,
        mounts={"/app/data": tmp_path / "data"},
        workdir=tmp_path / "app",
    )


def test_image_defaults_are_the_deployment_contract(image):
    assert image.command == ["myapp", "serve"]
    assert image.env["MYAPP_HOST"] == "0.0.0.0"
    assert image.env["MYAPP_DATA_DIR"] == "/app/data"
    assert image.env["PYTHONUNBUFFERED"] == "1"
    assert image.env["PATH"].startswith("/opt/myapp/bin:")
    # A numeric, non-root user, so a bind mount can be handed to it by number.
    assert all(part.isdigit() and int(part) > 0 for part in image.user.split(":")), image.user
    # Exec form with the image's own Python (there is no curl in a slim image).
    assert image.healthcheck[0] == "python"
    assert image.healthcheck[1] in image.copies
    assert image.healthcheck_options["start-period"] == "60s"


def test_image_runs_the_role_from_MYAPP_ROLE_and_its_health_check_passes(netns, image, tmp_path):
    spec = docker_run(
        image,
        tmp_path,
        {"MYAPP_ROLE": "backend", "MYAPP_ADMIN_PASSWORD": ADMIN_PASSWORD},
    )
    with run_container(spec, tmp_path / "backend.log") as backend:
        result = backend.wait_healthy()
        assert "/api/health" in result.stdout and ":12000" in result.stdout
        # PID 1 is the image's own command (nothing in between to swallow SIGTERM), listening
        # on every address of the container as MYAPP_HOST says.
        assert backend.cmdline()[1:] == [shutil.which("myapp", path=spec.env["PATH"]), "serve"]
        assert "Listening at: http://0.0.0.0:12000" in backend.log_text()
        # The check looks at the role's own endpoint: asked as a frontend, nothing answers.
        wrong = backend.exec([*spec.healthcheck, "frontend"])
        assert wrong.returncode == 1 and "unhealthy" in wrong.stdout
        assert backend.stop() == 0, backend.log_text()
    # The data went to the mounted directory, not into the image.
    assert (tmp_path / "data" / "app.db").exists()


def test_image_runs_a_role_given_on_the_command_line(netns, image, tmp_path):
    # `docker run image serve --role frontend --port 8080`: no MYAPP_ROLE in the environment,
    # so the health check has to find role and port from the running server itself.
    spec = docker_run(
        image,
        tmp_path,
        {"MYAPP_SECRET_KEY": SECRET_KEY},
        command=["serve", "--role", "frontend", "--port", "8080"],
    )
    assert "MYAPP_ROLE" not in spec.env
    with run_container(spec, tmp_path / "frontend.log") as frontend:
        result = frontend.wait_healthy()
        assert "/healthz" in result.stdout and ":8080" in result.stdout
        assert frontend.stop() == 0, frontend.log_text()


def test_frontend_refuses_a_public_bind_without_a_secret_key(netns, image, tmp_path):
    spec = docker_run(image, tmp_path, {"MYAPP_ROLE": "frontend"})
    with run_container(spec, tmp_path / "frontend.log") as frontend:
        frontend.proc.wait(30)
        assert frontend.proc.returncode == 2
        assert "MYAPP_SECRET_KEY" in frontend.log_text()
        assert "Traceback" not in frontend.log_text()


@pytest.mark.parametrize("service_name", ["backend", "frontend"])
def test_compose_service_command_and_healthcheck_pass(netns, image, tmp_path, service_name):
    compose = read_compose()
    service = compose["services"][service_name]
    dotenv = {"MYAPP_SECRET_KEY": SECRET_KEY, "MYAPP_ADMIN_PASSWORD": ADMIN_PASSWORD}
    mounts = {}
    for spec in service.get("volumes", []):
        source, target, _ = parse_volume(spec)
        assert source == "./data"
        mounts[target] = tmp_path / "data"
    spec = container(
        image,
        environment=service_environment(service, dotenv),
        command=service.get("command"),
        healthcheck=service["healthcheck"]["test"],
        mounts=mounts,
        workdir=tmp_path / "app",
    )
    with run_container(spec, tmp_path / f"{service_name}.log") as running:
        running.wait_healthy(timeout_s=60)
        assert running.stop() == 0, running.log_text()


def test_nixpacks_start_command_serves_the_role_on_coolify_port(netns, tmp_path):
    """Coolify: the start command from nixpacks.toml (Nixpacks runs it with bash -c), the
    role from MYAPP_ROLE and the port from PORT, checked with the command the Coolify guide
    gives for its health check."""
    plan = tomllib.loads(NIXPACKS_FILE.read_text())
    start = plan["start"]["cmd"]
    variables = plan.get("variables", {})
    assert variables["MYAPP_HOST"] == "0.0.0.0"
    app = tmp_path / "app"
    env = {
        **{k: str(v) for k, v in variables.items()},
        "PATH": f"{HERE_BIN}:/usr/local/bin:/usr/bin:/bin",
        "MYAPP_ROLE": "backend",
        "PORT": "8000",
        "MYAPP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MYAPP_DATA_DIR": str(tmp_path / "data"),
    }
    spec = Container(
        argv=["bash", "-c", start],
        env=env,
        cwd=app,
        healthcheck=["python", str(ROOT / "docker" / "healthcheck.py")],
    )
    with run_container(spec, tmp_path / "coolify.log") as backend:
        result = backend.wait_healthy()
        assert ":8000/api/health" in result.stdout
        # bash hands PID 1 over to the server (exec), so Coolify's SIGTERM reaches it.
        assert "bash" not in Path(backend.cmdline()[0]).name
        assert backend.stop() == 0, backend.log_text()
