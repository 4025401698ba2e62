"""nginx/docker-compose.conf as the nginx image loads it, the certificate script, and the
container health check's choice of URL. (Behaviour through nginx: test_compose_network.py.)"""

from __future__ import annotations

import importlib.util
import stat
import subprocess
from pathlib import Path

import pytest

from tests.deploy.files import CERT_SCRIPT, ROOT, nginx_prefix, read_compose


def nginx_test(nginx_binary: str, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx_binary, "-t", "-p", f"{conf.parent}/", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def nginx_dump(nginx_binary: str, conf: Path) -> str:
    return subprocess.run(
        [nginx_binary, "-T", "-p", f"{conf.parent}/", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout


@pytest.fixture
def nginx_conf(tmp_path) -> tuple[Path, Path]:
    certs = tmp_path / "certs"
    certs.mkdir()
    conf = nginx_prefix(
        read_compose()["services"]["nginx"], tmp_path / "etc-nginx", {"./nginx/certs": certs},
        tmp_path / "temp",
    )  # fmt: skip
    return conf, certs


def make_cert(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CERT_SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_config_loads_without_certificates_and_serves_plain_http(nginx_binary, nginx_conf):
    conf, _ = nginx_conf
    result = nginx_test(nginx_binary, conf)
    assert result.returncode == 0, result.stderr
    dump = nginx_dump(nginx_binary, conf)
    assert "listen 443" not in dump.replace("# ", "")
    assert "return 308 https" not in dump


def test_certificate_script_turns_on_https(nginx_binary, nginx_conf):
    conf, certs = nginx_conf
    made = make_cert("--dir", str(certs), "data.example.org", "10.1.2.3")
    assert made.returncode == 0, made.stderr
    key = certs / "myapp.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600, "the private key is readable by others"
    text = subprocess.run(
        ["openssl", "x509", "-in", str(certs / "myapp.crt"), "-noout", "-text"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CN = data.example.org" in text or "CN=data.example.org" in text
    for name in ("DNS:data.example.org", "IP Address:10.1.2.3", "DNS:localhost"):
        assert name in text, name
    result = nginx_test(nginx_binary, conf)
    assert result.returncode == 0, result.stderr
    dump = nginx_dump(nginx_binary, conf)
    assert "listen 443 ssl;" in dump and "return 308 https://$host$request_uri;" in dump

    # Run again (e.g. after putting a real certificate there): the certificate is kept.
    before = (certs / "myapp.crt").read_bytes()
    again = make_cert("--dir", str(certs), "other.example.org")
    assert again.returncode == 0 and "keeping" in again.stdout
    assert (certs / "myapp.crt").read_bytes() == before
    forced = make_cert("--dir", str(certs), "--force", "other.example.org")
    assert forced.returncode == 0 and (certs / "myapp.crt").read_bytes() != before


def test_certificate_script_refuses_unknown_options(tmp_path):
    result = make_cert("--dir", str(tmp_path), "--bogus")
    assert result.returncode == 2 and "--help" in result.stderr
    assert not (tmp_path / "https.conf").exists()
    usage = make_cert("--help")
    assert usage.returncode == 0 and "make-dev-cert.sh" in usage.stdout


def test_repository_holds_no_certificate():
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "nginx/certs"], capture_output=True, text=True
    ).stdout
    assert tracked.strip() == "", f"certificates or keys are committed: {tracked}"


# -- docker/healthcheck.py's choice of URL -------------------------------------------------------
def load_healthcheck():
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "docker/healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("argv", "env", "serve_args", "url"),
    [
        ([], {}, [], "http://127.0.0.1:12001/api/health"),  # role all by default
        ([], {"MYAPP_ROLE": "backend"}, [], "http://127.0.0.1:12000/api/health"),
        ([], {"MYAPP_ROLE": "frontend", "MYAPP_PORT": "9000"}, [], "http://127.0.0.1:9000/healthz"),
        # The running server's own flags win over the environment, as they do in myapp serve.
        ([], {"MYAPP_ROLE": "backend"}, ["--role", "frontend"], "http://127.0.0.1:12001/healthz"),
        ([], {"MYAPP_PORT": "1"}, ["--role=backend", "--port=8000"], "http://127.0.0.1:8000/api/health"),
        (["frontend"], {"MYAPP_ROLE": "backend"}, [], "http://127.0.0.1:12001/healthz"),
        ([], {"MYAPP_HOST": "0.0.0.0"}, [], "http://127.0.0.1:12001/api/health"),
        ([], {"MYAPP_HOST": "::"}, [], "http://[::1]:12001/api/health"),
        ([], {}, ["--host", "10.0.0.5", "--role", "backend"], "http://10.0.0.5:12000/api/health"),
    ],
)  # fmt: skip
def test_healthcheck_probes_what_the_server_listens_on(argv, env, serve_args, url):
    assert load_healthcheck().health_url(argv, env, serve_args) == url


def test_healthcheck_reads_the_serve_process_from_proc(tmp_path):
    proc = tmp_path / "proc"
    for pid, argv in {
        "1": ["/opt/myapp/bin/python", "/opt/myapp/bin/myapp", "serve", "--role", "backend"],
        "7": ["python", "/app/healthcheck.py"],
        "self": ["ignored"],
    }.items():
        (proc / pid).mkdir(parents=True)
        (proc / pid / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    assert load_healthcheck().serve_arguments(proc) == ["--role", "backend"]
    (proc / "1" / "cmdline").write_bytes(b"python\0-m\0myapp\0serve\0--port\0\x39\x30\0")
    assert load_healthcheck().serve_arguments(proc) == ["--port", "90"]


def test_healthcheck_rejects_an_unknown_role(capsys):
    module = load_healthcheck()
    assert module.main(["worker"]) == 1
    assert "unknown role 'worker'" in capsys.readouterr().out
