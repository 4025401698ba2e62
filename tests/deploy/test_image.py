"""The image's start command and health check, exactly as the Dockerfile and compose file write
them, run as real processes (a container stand-in: new network, PID and mount namespaces)."""

from __future__ import annotations

import secrets
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.deploy.containers import run_container
from tests.deploy.files import (
    HERE_BIN,
    NIXPACKS_FILE,
    ROOT,
    Container,
    build_stage_context,
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


def venv_seeing_this_environment(venv: Path) -> None:
    """A virtual environment whose own packages come first, then this environment's.

    `--system-site-packages` would show the base interpreter's packages, which is this
    environment only when the tests run on the system Python (as .ci/run does); run from inside
    a virtual environment (the common way), the dependencies installed there would be missing.
    A .pth line that adds this environment's site directories the way `site` adds the system's
    works in both cases, and processes their .pth files just as `--system-site-packages` would.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    dirs = [d for d in site.getsitepackages() if Path(d).is_dir()]
    if site.ENABLE_USER_SITE and Path(site.getusersitepackages()).is_dir():
        dirs.append(site.getusersitepackages())
    (own,) = (venv / "lib").glob("python3*/site-packages")
    (own / "_outer_environment.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n"
    )


def test_build_stage_packages_everything_the_roles_serve(netns, tmp_path):
    """The image's build stage, without Docker: the files its COPY lines take from the build
    context (after .dockerignore) become a wheel, installed into a fresh virtual environment;
    every template, script and style sheet must be in it, and the pages must render from it."""
    context = tmp_path / "context"
    copied = build_stage_context(context)
    assert "pyproject.toml" in copied and "myapp/cli.py" in copied
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir", "-q",
         "-w", str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheels").glob("myapp-*.whl")
    packaged = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("myapp/")}
    expected = {f for f in copied if f.startswith("myapp/") and "__pycache__" not in f}
    assert expected - packaged == set(), "left out of the package"

    # Installed on its own (dependencies from this environment, myapp only from the wheel).
    venv = tmp_path / "venv"
    venv_seeing_this_environment(venv)
    # This environment's pip, installing into the new one; this environment has myapp too
    # (often editable), which must not count as already installed there.
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install",
         "--no-deps", "--no-index", "--ignore-installed", "-q", str(wheel)],
        check=True,
        timeout=120,
    )  # fmt: skip
    spec = container(
        read_image(),
        environment={"MYAPP_ROLE": "frontend", "MYAPP_SECRET_KEY": SECRET_KEY},
        mounts={"/app/data": tmp_path / "data"},
        workdir=tmp_path / "app",
    )
    spec.env["PATH"] = f"{venv / 'bin'}:{spec.env['PATH']}"
    with run_container(spec, tmp_path / "frontend.log") as frontend:
        frontend.wait_healthy()
        where = frontend.exec(["python", "-c", "import myapp; print(myapp.__file__)"])
        assert where.stdout.startswith(str(venv)), where.stdout
        # Without a backend the home page is the friendly 503 page: a template from the wheel,
        # with its style sheet served from the wheel too.
        fetch = (
            "import sys, urllib.request, urllib.error\n"
            "def get(p):\n"
            "    try:\n"
            "        r = urllib.request.urlopen('http://127.0.0.1:12001' + p, timeout=5)\n"
            "    except urllib.error.HTTPError as e:\n"
            "        r = e\n"
            "    return r.status, r.read().decode()\n"
            "status, page = get('/')\n"
            "import re\n"
            'css = re.findall(r\'href="(/static/[^"]+[.]css)"\', page)\n'
            "print(status, len(css), *[get(c)[0] for c in css])\n"
        )
        result = frontend.exec(["python", "-c", fetch])
        status, count, *assets = result.stdout.split()
        assert status == "503" and int(count) >= 1, result.stdout + result.stderr
        assert set(assets) == {"200"}, result.stdout
        assert frontend.stop() == 0
