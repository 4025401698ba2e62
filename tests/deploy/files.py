"""Read the deployment files the way Docker and Compose do, and map the image's paths to here.

The tests run the image's and the compose file's own commands as real processes on this machine
(there is no Docker engine here), so the commands, environment and paths come from parsing the
Dockerfile and docker-compose.yml, never from copies in the tests.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
NGINX_CONF = ROOT / "nginx" / "docker-compose.conf"
CERT_SCRIPT = ROOT / "nginx" / "make-dev-cert.sh"
NIXPACKS_FILE = ROOT / "nixpacks.toml"

# The venv the image puts on PATH is this interpreter's environment here.
IMAGE_VENV_BIN = "/opt/myapp/bin"
HERE_BIN = str(Path(sys.executable).parent)


# -- Dockerfile ----------------------------------------------------------------------------------
@dataclass
class Image:
    """The final stage of the Dockerfile: what a container of the image starts with."""

    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = ""
    copies: dict[str, str] = field(default_factory=dict)  # destination in image -> repo path
    args: dict[str, str] = field(default_factory=dict)

    @property
    def command(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    result = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def _expand(value: str, variables: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", sub, value)


def _env_pairs(arguments: str) -> list[tuple[str, str]]:
    parts = shlex.split(arguments)
    if len(parts) >= 2 and "=" not in parts[0]:
        return [(parts[0], " ".join(parts[1:]))]
    return [tuple(part.split("=", 1)) for part in parts]  # type: ignore[misc]


def read_image(path: Path = DOCKERFILE, base_env: dict[str, str] | None = None) -> Image:
    """The final stage's ENV, ARG, WORKDIR, USER, COPY, ENTRYPOINT, CMD and HEALTHCHECK."""
    instructions = dockerfile_instructions(path.read_text())
    stages = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    final = instructions[stages[-1] + 1 :]
    image = Image()
    # The base image's PATH, which the Dockerfile's ENV PATH=…:$PATH extends.
    variables = {"PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"}
    variables.update(base_env or {})
    for keyword, arguments in final:
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            image.args[name] = default
            variables[name] = default
        elif keyword == "ENV":
            for name, value in _env_pairs(arguments):
                value = _expand(value, variables)
                image.env[name] = value
                variables[name] = value
        elif keyword == "WORKDIR":
            image.workdir = _expand(arguments, variables)
        elif keyword == "USER":
            image.user = _expand(arguments, variables)
        elif keyword == "COPY" and "--from" not in arguments:
            source, destination = shlex.split(arguments)[-2:]
            image.copies[destination] = str(ROOT / source)
        elif keyword == "ENTRYPOINT":
            image.entrypoint = json.loads(arguments)
        elif keyword == "CMD":
            image.cmd = json.loads(arguments)
        elif keyword == "HEALTHCHECK":
            options, _, command = arguments.partition("CMD")
            image.healthcheck = json.loads(command)
            for option in options.split():
                name, _, value = option.lstrip("-").partition("=")
                image.healthcheck_options[name] = value
    return image


def dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves `path` out (the .dockerignore forms used here)."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        bare = pattern.removeprefix("**/")
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p.split("/")[-1], bare) for p in prefixes
        ):
            ignored = not negate
    return ignored


def build_stage_context(destination: Path, path: Path = DOCKERFILE) -> list[str]:
    """Copy into `destination` what the first (build) stage's COPY lines take from the build
    context, leaving out what .dockerignore excludes. Returns the copied files, relative."""
    instructions = dockerfile_instructions(path.read_text())
    stages = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    patterns = dockerignore_patterns()
    copied = []
    for keyword, arguments in instructions[stages[0] + 1 : stages[1]]:
        if keyword != "COPY" or "--from" in arguments:
            continue
        for source in shlex.split(arguments)[:-1]:
            top = ROOT / source
            files = [top] if top.is_file() else sorted(f for f in top.rglob("*") if f.is_file())
            for file in files:
                relative = str(file.relative_to(ROOT))
                if dockerignored(relative, patterns):
                    continue
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, destination / relative)
                copied.append(relative)
    return copied


# -- docker-compose.yml ----------------------------------------------------------------------
def read_compose(path: Path = COMPOSE_FILE) -> dict:
    return yaml.safe_load(path.read_text())


class InterpolationError(ValueError):
    """What Compose reports for a required variable without a value."""


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's interpolation for the forms the compose file uses (no nesting)."""

    def sub(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("bare"):
            return variables.get(match.group("bare"), "")
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = variables.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if empty else value  # type: ignore[return-value]
        if op in (":?", "?"):
            if empty:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return value  # type: ignore[return-value]
        return value or ""

    return _INTERPOLATION.sub(sub, value)


def service_environment(service: dict, dotenv: dict[str, str]) -> dict[str, str]:
    """A service's `environment:` as the container gets it: keys without a value are passed on
    only when .env sets them."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(
            item.split("=", 1) if "=" in item else (item, None) for item in environment
        )
    result = {}
    for key, value in environment.items():
        if value is None:
            if key in dotenv:
                result[key] = dotenv[key]
            continue
        result[key] = interpolate(str(value), dotenv)
    return result


def parse_volume(spec: str) -> tuple[str, str, str]:
    parts = spec.split(":")
    source, target = parts[0], parts[1]
    mode = parts[2] if len(parts) > 2 else "rw"
    return source, target, mode


def read_dotenv(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


# -- running a container's command here ----------------------------------------------------------
@dataclass
class Container:
    """What one container of the image would run, with its paths mapped to this machine."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    healthcheck: list[str]


def map_paths(value: str, mapping: dict[str, str]) -> str:
    # Longest prefixes first, so /app/data wins over /app.
    for inside in sorted(mapping, key=len, reverse=True):
        if value == inside or value.startswith(inside + "/") or value.startswith(inside + ":"):
            return mapping[inside] + value[len(inside) :]
        value = value.replace(":" + inside, ":" + mapping[inside])
    return value


def container(
    image: Image,
    *,
    environment: dict[str, str],
    command: list[str] | None = None,
    healthcheck: list[str] | None = None,
    mounts: dict[str, Path],
    workdir: Path,
) -> Container:
    """The process a container runs: image ENV overlaid with the service's environment, the
    image's ENTRYPOINT with the given command (else CMD), and paths inside the image (the venv,
    files the Dockerfile copies, volume targets) mapped to their places here."""
    mapping = {IMAGE_VENV_BIN: HERE_BIN, image.workdir: str(workdir)}
    mapping.update({inside: str(Path(here)) for inside, here in image.copies.items()})
    mapping.update({inside: str(here) for inside, here in mounts.items()})
    env = {**image.env, **environment}
    env = {key: map_paths(value, mapping) for key, value in env.items()}
    argv = [*image.entrypoint, *(command if command is not None else image.cmd)]
    check = healthcheck if healthcheck is not None else image.healthcheck
    if check and check[0] == "CMD":
        check = check[1:]
    return Container(
        argv=[map_paths(arg, mapping) for arg in argv],
        env=env,
        cwd=workdir,
        healthcheck=[map_paths(arg, mapping) for arg in check],
    )


# -- nginx as the official image runs it ---------------------------------------------------------
NGINX_IMAGE_CONF_DIR = "/etc/nginx"


def nginx_prefix(service: dict, prefix: Path, replace_sources: dict[str, Path], temp: Path) -> Path:
    """A directory standing in for the nginx image's /etc/nginx: its volumes from the compose
    service linked in unchanged (a source in `replace_sources` is swapped for a test directory,
    e.g. the certificate folder), and an nginx.conf like the image's own, which includes
    conf.d/*.conf inside http {}. Only what the image keeps elsewhere (pid, temp files, logs) is
    pointed elsewhere: `temp` must be reachable by nginx's workers (they run as nobody, as the
    image's run as `nginx`). Returns the nginx.conf to pass to `nginx -c`."""
    prefix.mkdir(parents=True, exist_ok=True)
    for spec in service.get("volumes", []):
        source, target, _mode = parse_volume(spec)
        assert target.startswith(NGINX_IMAGE_CONF_DIR + "/"), target
        here = prefix / target[len(NGINX_IMAGE_CONF_DIR) + 1 :]
        here.parent.mkdir(parents=True, exist_ok=True)
        real = replace_sources.get(source, (ROOT / source).resolve())
        here.symlink_to(real)
    temp.mkdir(parents=True, exist_ok=True)
    temp.chmod(0o755)
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / name).mkdir(parents=True, exist_ok=True)
        # Workers run as nobody, as the image's run as `nginx`.
        (temp / name).chmod(0o777)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""# Stand-in for the official nginx image's /etc/nginx/nginx.conf.
worker_processes 2;
error_log stderr notice;
pid {prefix}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    access_log off;
    sendfile on;
    keepalive_timeout 65;
    include {prefix}/conf.d/*.conf;
}}
"""
    )
    return conf
