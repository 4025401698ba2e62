"""How a server starts: open mode on loopback, refusal on a public bind without credentials,
MYAPP_ADMIN_PASSWORD, MYAPP_PUBLIC_READ, and the rule that at least one admin remains."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest

from myapp.backend.auth.startup import check_startup
from myapp.backend.services import accounts as account_service
from myapp.backend.store.database import Database
from myapp.settings import SettingsError, load_settings
from tests.support.accounts import ADMIN_HEADERS, PASSWORD, bearer, secured_env
from tests.support.inprocess import serve_in_thread
from tests.support.servers import clean_env


def test_open_mode_on_loopback_until_the_first_account(start_server):
    backend = start_server("backend")
    client = httpx.Client(base_url=backend.url)
    me = client.get("/api/auth/me").json()
    assert me == {
        "user": None,
        "role": "admin",
        "via": "open",
        "open_mode": True,
        "public_read": False,
    }
    assert client.get("/api/users").json() == {"users": []}
    assert "open mode" in backend.log_text()
    # Only for requests addressed to this machine (a page of another site resolving its own
    # name to 127.0.0.1 gets nothing), and never for a cross-site form or upload.
    for host in ("localhost", f"[::1]:{backend.port}"):
        assert client.get("/api/users", headers={"Host": host}).status_code == 200
    rebound = client.get("/api/users", headers={"Host": "evil.example"})
    assert rebound.status_code == 401
    assert rebound.json()["error"]["code"] == "open_mode_loopback_only"
    body = {"username": "x", "password": PASSWORD}
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
        forged = client.post("/api/users", json=body, headers=headers)
        assert forged.status_code == 403, headers
        assert forged.json()["error"]["code"] == "cross_site_request"
    created = client.post(
        "/api/users", json={"username": "first", "password": PASSWORD, "role": "admin"}
    )
    assert created.status_code == 201
    # The first account ends open mode at once: anonymous callers are nobody now.
    assert client.get("/api/auth/me").json()["open_mode"] is False
    assert client.get("/api/users").status_code == 401
    login = client.post("/api/auth/login", json={"username": "first", "password": PASSWORD})
    assert client.get("/api/users", headers=bearer(login.json()["token"])).status_code == 200
    audit = client.get("/api/audit", headers=bearer(login.json()["token"])).json()["events"]
    assert [(e["action"], e["actor"]) for e in audit][-1] == ("account.created", "open-mode")
    client.close()


def test_admin_token_or_public_read_is_not_open_mode(start_server):
    backend = start_server("backend", env=secured_env(MYAPP_PUBLIC_READ="true"))
    client = httpx.Client(base_url=backend.url)
    me = client.get("/api/auth/me").json()
    assert me["open_mode"] is False and me["public_read"] is True
    assert (me["role"], me["via"]) == ("viewer", "public")
    assert client.get("/api/users").status_code == 401
    assert client.get("/api/users", headers=ADMIN_HEADERS).status_code == 200
    client.close()


def _serve(args: list[str], env: dict[str, str], cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "myapp", "serve", *args],
        env=clean_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("role", ["backend", "all"])
def test_public_bind_without_credentials_is_refused_before_binding(tmp_path, role):
    env = {"MYAPP_DATA_DIR": str(tmp_path / "data"), "MYAPP_SECRET_KEY": "k" * 32}
    # The port is taken: a server that tried to bind before checking would fail differently.
    with socket.socket() as occupied:
        occupied.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        occupied.bind(("0.0.0.0", 0))
        port = occupied.getsockname()[1]
        result = _serve(["--role", role, "--host", "0.0.0.0", "--port", str(port)], env, tmp_path)
    assert result.returncode == 2, result.stderr
    output = (result.stdout + result.stderr).strip().splitlines()
    assert len(output) == 1, output
    assert output[0].startswith("myapp: refusing to listen on 0.0.0.0 without credentials")
    assert "MYAPP_ADMIN_PASSWORD" in output[0] and "Traceback" not in result.stderr


def test_short_admin_token_or_password_is_refused(tmp_path):
    env = {"MYAPP_DATA_DIR": str(tmp_path / "data"), "MYAPP_ADMIN_TOKEN": "short"}
    result = _serve(["--role", "backend", "--host", "0.0.0.0", "--port", "1"], env, tmp_path)
    assert result.returncode == 2 and "MYAPP_ADMIN_TOKEN must be at least 16" in result.stderr
    env = {"MYAPP_DATA_DIR": str(tmp_path / "data"), "MYAPP_ADMIN_PASSWORD": "short"}
    result = _serve(["--role", "backend", "--port", "1"], env, tmp_path)
    assert result.returncode == 2 and "MYAPP_ADMIN_PASSWORD must be 8" in result.stderr


def test_an_account_in_the_database_allows_a_public_bind(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", host="0.0.0.0")
    with pytest.raises(SettingsError, match="without credentials"):
        check_startup(settings)
    database = Database(settings)
    database.open()
    with database.transaction() as cur:
        account_service.create_user(
            cur, username="boss", password=PASSWORD, role="admin", actor="test", ip=None
        )
    database.close()
    check_startup(settings)  # no error: someone can sign in
    check_startup(load_settings(data_dir=tmp_path / "empty", host="0.0.0.0", admin_token="t" * 20))


def test_admin_password_creates_then_resets_the_admin_account(tmp_path):
    data = tmp_path / "data"

    def login(client: httpx.Client, password: str) -> httpx.Response:
        return client.post("/api/auth/login", json={"username": "admin", "password": password})

    from myapp.backend.app import create_api

    first = create_api(load_settings(data_dir=data, admin_password="first-password"))
    with serve_in_thread(first) as url, httpx.Client(base_url=url) as client:
        response = login(client, "first-password")
        assert response.status_code == 200 and response.json()["user"]["role"] == "admin"
        kept = response.json()["token"]
        # Demoted meanwhile: the next start makes it admin again.
        client.post(
            "/api/users",
            headers=bearer(kept),
            json={"username": "other", "password": PASSWORD, "role": "admin"},
        )
        other = login_as(client, "other")
        client.patch("/api/users/admin", headers=bearer(other), json={"role": "viewer"})

    same = create_api(load_settings(data_dir=data, admin_password="first-password"))
    with serve_in_thread(same) as url, httpx.Client(base_url=url) as client:
        me = client.get("/api/auth/me", headers=bearer(kept)).json()
        assert me["role"] == "admin", "the role is restored"
        # The password did not change, so the session survived the restart.
        assert me["user"] == "admin"

    changed = create_api(load_settings(data_dir=data, admin_password="second-password"))
    with serve_in_thread(changed) as url, httpx.Client(base_url=url) as client:
        assert login(client, "first-password").status_code == 401
        assert login(client, "second-password").status_code == 200
        assert client.get("/api/auth/me", headers=bearer(kept)).status_code == 401
        events = client.get(
            "/api/audit", params={"actor": "startup"}, headers=bearer(login_as(client, "other"))
        ).json()["events"]
        assert [e["action"] for e in events] == [
            "account.changed",
            "account.changed",
            "account.created",
        ]


def login_as(client: httpx.Client, username: str, password: str = PASSWORD) -> str:
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["token"]


def test_the_last_admin_account_cannot_be_demoted_or_removed(tmp_path):
    from myapp.backend.app import create_api

    app = create_api(load_settings(data_dir=tmp_path / "data", admin_password="admin-password"))
    with serve_in_thread(app) as url, httpx.Client(base_url=url) as client:
        admin = bearer(login_as(client, "admin", "admin-password"))
        for response in (
            client.patch("/api/users/admin", headers=admin, json={"role": "editor"}),
            client.delete("/api/users/admin", headers=admin),
        ):
            assert response.status_code == 409
            assert response.json()["error"]["code"] == "last_admin"
        client.post(
            "/api/users",
            headers=admin,
            json={"username": "deputy", "password": PASSWORD, "role": "admin"},
        )
        assert (
            client.patch("/api/users/admin", headers=admin, json={"role": "editor"}).status_code
            == 200
        )
        deputy = bearer(login_as(client, "deputy"))
        response = client.delete("/api/users/deputy", headers=deputy)
        assert response.status_code == 409, "deputy is the last admin now"
        assert client.delete("/api/users/admin", headers=deputy).status_code == 204


def test_no_password_or_token_reaches_the_logs(start_server):
    """Sign-ins (good and bad), password changes, token creation and use, at debug level."""
    env = secured_env(MYAPP_LOG_LEVEL="debug")
    backend = start_server("backend", env=env)
    frontend = start_server(
        "frontend", env={"MYAPP_BACKEND_URL": backend.url, "MYAPP_LOG_LEVEL": "debug"}
    )
    password, new_password, wrong = "s3cret-Pass-word", "n3w-Pass-word-x", "wr0ng-Pass-word"
    secrets = [env["MYAPP_ADMIN_TOKEN"], password, new_password, wrong]
    api = httpx.Client(base_url=backend.url)
    api.post(
        "/api/users",
        headers=ADMIN_HEADERS,
        json={"username": "logged", "password": password, "role": "editor"},
    )
    api.post("/api/auth/login", json={"username": "logged", "password": wrong})
    api.post("/api/auth/login", json={"username": password, "password": wrong})
    session = login_as(api, "logged", password)
    token = api.post(
        "/api/tokens", headers=bearer(session), json={"name": "t", "scope": "viewer"}
    ).json()["token"]
    secrets += [session, token]
    api.get("/api/auth/me", headers=bearer(token))
    api.get("/api/tokens", params={"token": token}, headers=bearer(token))
    api.post(
        "/api/auth/password",
        headers=bearer(session),
        json={"current_password": password, "new_password": new_password},
    )
    api.close()
    web = httpx.Client(base_url=frontend.url, headers={"Origin": frontend.url})
    web.post("/login", data={"username": "logged", "password": wrong})
    signed_in = web.post("/login", data={"username": "logged", "password": new_password})
    assert signed_in.status_code == 302
    created = web.post("/account/tokens", data={"name": "web", "scope": "viewer"})
    assert created.status_code == 303
    page = web.get(created.headers["Location"])
    assert page.status_code == 200
    web_token = page.text.split('data-testid="new-token" readonly value="')[1].split('"')[0]
    secrets += [web_token, web.cookies["myapp_session"]]
    web.close()
    frontend.stop()
    backend.stop()
    logs = backend.log_text() + frontend.log_text()
    assert "POST /api/auth/login 401" in logs and "frontend POST /login 302" in logs
    leaked = [s for s in secrets if s in logs]
    assert not leaked, f"{len(leaked)} secret(s) found in the logs"
