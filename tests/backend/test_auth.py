"""Accounts, sessions and tokens against a real backend that has credentials (not open mode)."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from myapp.backend.auth.tokens import new_secret
from myapp.backend.services import accounts as account_service
from myapp.backend.services import tokens as token_service
from myapp.backend.store import tokens as token_store
from myapp.backend.store.database import Database
from myapp.settings import load_settings
from tests.support.accounts import (
    ADMIN_HEADERS,
    PASSWORD,
    Accounts,
    bearer,
    secured_env,
    unique,
)
from tests.support.servers import ServerProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        "backend", tmp_path_factory.mktemp("auth-backend"), env=secured_env()
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def accounts(server: ServerProcess) -> Iterator[Accounts]:
    helper = Accounts(server)
    yield helper
    helper.close()


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code, body
    assert body["error"]["message"].endswith(".")
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return body["error"]


def test_login_gives_a_session_that_says_who_you_are(accounts: Accounts):
    name = accounts.user("editor")
    response = accounts.login(name.upper())  # usernames are case-insensitive
    assert response.status_code == 200
    body = response.json()
    assert body["token"].startswith("myapp_")
    assert body["user"]["username"] == name and body["user"]["role"] == "editor"
    assert body["user"]["last_login_at"] is not None
    assert response.headers["Cache-Control"] == "no-store"
    me = accounts.client.get("/api/auth/me", headers=bearer(body["token"])).json()
    assert me == {
        "user": name,
        "role": "editor",
        "via": "session",
        "open_mode": False,
        "public_read": False,
    }


def test_anonymous_is_nobody_on_a_server_with_credentials(accounts: Accounts):
    me = accounts.client.get("/api/auth/me").json()
    assert me["user"] is None and me["role"] is None and me["open_mode"] is False
    assert_error(accounts.client.get("/api/tokens"), 401, "unauthorized")


def test_wrong_password_and_unknown_user_get_the_same_answer(accounts: Accounts):
    name = accounts.user("viewer")
    wrong = accounts.login(name, "not-the-password", ip="198.51.100.1")
    unknown = accounts.login(unique("ghost"), "not-the-password", ip="198.51.100.1")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "invalid_credentials"
    # An unknown name still costs a password hash, so timing does not tell names apart.
    known_times, unknown_times = [], []
    for i in range(3):
        started = time.perf_counter()
        accounts.login(name, f"wrong-{i}-password", ip="198.51.100.2")
        known_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        accounts.login(unique("ghost"), f"wrong-{i}-password", ip="198.51.100.2")
        unknown_times.append(time.perf_counter() - started)
    assert statistics.median(unknown_times) > 0.3 * statistics.median(known_times)


def test_logout_ends_the_session_at_once(accounts: Accounts):
    token = accounts.session(accounts.user("viewer"))
    assert accounts.client.get("/api/tokens", headers=bearer(token)).status_code == 200
    assert accounts.client.post("/api/auth/logout", headers=bearer(token)).status_code == 204
    error = assert_error(
        accounts.client.get("/api/tokens", headers=bearer(token)), 401, "session_revoked"
    )
    assert "sign in again" in error["message"]


def test_revoked_token_stops_working_at_once(accounts: Accounts):
    name = accounts.user("viewer")
    created = accounts.token(name)
    headers = bearer(created["token"])
    assert accounts.client.get("/api/auth/me", headers=headers).json()["via"] == "token"
    used = accounts.client.get("/api/tokens", headers=headers).json()["tokens"]
    assert used[0]["last_used_at"] is not None and used[0]["created_at"] <= used[0]["last_used_at"]
    response = accounts.client.delete(f"/api/tokens/{created['id']}", headers=headers)
    assert response.status_code == 204
    assert_error(accounts.client.get("/api/auth/me", headers=headers), 401, "token_revoked")
    listed = accounts.client.get(
        "/api/tokens", headers=ADMIN_HEADERS, params={"username": name, "include_inactive": True}
    ).json()["tokens"]
    assert [(t["id"], t["active"]) for t in listed] == [(created["id"], False)]


def test_account_changes_apply_at_once_to_credentials_in_use(accounts: Accounts):
    # The backend keeps what it looked up about a token between requests: a change to the
    # account must still count from the very next request.
    client = accounts.client
    name = accounts.user("editor")
    token = bearer(accounts.token(name, "editor")["token"])
    session = bearer(accounts.session(name))
    for _ in range(3):
        assert client.get("/api/auth/me", headers=token).json()["role"] == "editor"
        assert client.get("/api/auth/me", headers=session).json()["role"] == "editor"
    demoted = client.patch(f"/api/users/{name}", headers=ADMIN_HEADERS, json={"role": "viewer"})
    assert demoted.status_code == 200, demoted.text
    assert client.get("/api/auth/me", headers=token).json()["role"] == "viewer"
    assert client.get("/api/auth/me", headers=session).json()["role"] == "viewer"
    upload = client.put("/api/datasets/cache_demoted", content=b"a\n1\n", headers=token)
    assert_error(upload, 403, "forbidden")
    changed = client.patch(
        f"/api/users/{name}", headers=ADMIN_HEADERS, json={"password": "another-password"}
    )
    assert changed.status_code == 200, changed.text
    assert_error(client.get("/api/auth/me", headers=session), 401, "session_revoked")


def test_bad_credentials_are_refused_never_treated_as_anonymous(accounts: Accounts):
    for header, code in [
        ("Basic dXNlcjpwYXNz", "invalid_authorization"),
        ("Bearer", "invalid_authorization"),
        ("Bearer myapp_not-a-real-token", "invalid_token"),
        ("Bearer " + "x" * 5000, "invalid_token"),
    ]:
        response = accounts.client.get("/api/auth/me", headers={"Authorization": header})
        assert_error(response, 401, code)
    wrong_admin = ADMIN_HEADERS["Authorization"][:-1] + "X"
    assert_error(
        accounts.client.get("/api/users", headers={"Authorization": wrong_admin}),
        401,
        "invalid_token",
    )


def test_token_scope_is_capped_by_the_role_behind_it(accounts: Accounts):
    name = accounts.user("editor")
    session = bearer(accounts.session(name))
    too_wide = accounts.client.post(
        "/api/tokens", headers=session, json={"name": "x", "scope": "admin"}
    )
    assert assert_error(too_wide, 403, "scope_too_wide")["detail"] == {"max_scope": "editor"}
    narrow = accounts.client.post(
        "/api/tokens", headers=session, json={"name": "ro", "scope": "viewer"}
    )
    assert narrow.status_code == 201
    created = narrow.json()
    assert created["scope"] == "viewer" and created["username"] == name
    assert created["hint"] == created["token"][: len(created["hint"])]
    viewer_token = bearer(created["token"])
    assert accounts.client.get("/api/auth/me", headers=viewer_token).json()["role"] == "viewer"
    # A viewer-scoped token cannot mint an editor token for its own account either.
    response = accounts.client.post(
        "/api/tokens", headers=viewer_token, json={"name": "y", "scope": "editor"}
    )
    assert_error(response, 403, "scope_too_wide")

    # Demoting the account demotes its tokens and sessions at once.
    editor_token = bearer(accounts.token(name, "editor")["token"])
    assert accounts.client.get("/api/auth/me", headers=editor_token).json()["role"] == "editor"
    response = accounts.client.patch(
        f"/api/users/{name}", headers=ADMIN_HEADERS, json={"role": "viewer"}
    )
    assert response.status_code == 200 and response.json()["role"] == "viewer"
    assert accounts.client.get("/api/auth/me", headers=editor_token).json()["role"] == "viewer"
    assert accounts.client.get("/api/auth/me", headers=session).json()["role"] == "viewer"


def test_tokens_of_others_need_admin(accounts: Accounts):
    alice, bob = accounts.user("editor", "alice"), accounts.user("editor", "bob")
    alice_token = bearer(accounts.token(alice, "editor")["token"])
    bob_token = accounts.token(bob, "viewer")
    client = accounts.client
    assert_error(
        client.delete(f"/api/tokens/{bob_token['id']}", headers=alice_token), 403, "not_your_token"
    )
    assert_error(
        client.get("/api/tokens", params={"username": bob}, headers=alice_token),
        403,
        "not_your_account",
    )
    assert_error(
        client.get("/api/tokens", params={"all": True}, headers=alice_token),
        403,
        "not_your_account",
    )
    response = client.post("/api/tokens", headers=alice_token, json={"name": "x", "username": bob})
    assert_error(response, 403, "not_your_account")
    # Alice sees only her own; bob's token still works; an admin sees and revokes both.
    mine = client.get("/api/tokens", headers=alice_token).json()["tokens"]
    assert {t["username"] for t in mine} == {alice}
    assert client.get("/api/auth/me", headers=bearer(bob_token["token"])).status_code == 200
    everyone = client.get("/api/tokens", params={"all": True}, headers=ADMIN_HEADERS).json()
    assert {alice, bob} <= {t["username"] for t in everyone["tokens"]}
    assert "token" not in everyone["tokens"][0], "listings never show a secret"
    assert client.delete(f"/api/tokens/{bob_token['id']}", headers=ADMIN_HEADERS).status_code == 204
    assert_error(client.delete("/api/tokens/nope", headers=ADMIN_HEADERS), 404, "token_not_found")


def test_admin_token_needs_a_username_to_make_tokens(accounts: Accounts):
    response = accounts.client.post("/api/tokens", headers=ADMIN_HEADERS, json={"name": "x"})
    assert_error(response, 400, "no_account")


def test_users_admin_crud_and_validation(accounts: Accounts):
    client = accounts.client
    name = unique("carol")
    body = {"username": name, "password": PASSWORD, "role": "viewer"}
    assert client.post("/api/users", headers=ADMIN_HEADERS, json=body).status_code == 201
    assert_error(
        client.post("/api/users", headers=ADMIN_HEADERS, json={**body, "username": name.upper()}),
        409,
        "account_exists",
    )
    for bad in (
        {**body, "username": "no/slashes"},
        {**body, "username": "two  spaces"},
        {**body, "password": "short"},
        {**body, "role": "owner"},
    ):
        response = client.post("/api/users", headers=ADMIN_HEADERS, json=bad)
        assert_error(response, 422, "validation_error")
    assert client.get(f"/api/users/{name}", headers=ADMIN_HEADERS).json()["role"] == "viewer"
    assert_error(
        client.get("/api/users/nobody-here", headers=ADMIN_HEADERS), 404, "account_not_found"
    )

    session = bearer(accounts.session(name))
    token = bearer(accounts.token(name)["token"])
    # A new password from an admin ends the account's sessions, not its API tokens.
    response = client.patch(
        f"/api/users/{name}", headers=ADMIN_HEADERS, json={"password": "another-password"}
    )
    assert response.status_code == 200
    assert_error(client.get("/api/auth/me", headers=session), 401, "session_revoked")
    assert client.get("/api/auth/me", headers=token).status_code == 200
    assert accounts.login(name, PASSWORD).status_code == 401
    assert accounts.login(name, "another-password").status_code == 200

    assert client.delete(f"/api/users/{name}", headers=ADMIN_HEADERS).status_code == 204
    assert_error(client.get("/api/auth/me", headers=token), 401, "invalid_token")
    assert_error(
        client.delete(f"/api/users/{name}", headers=ADMIN_HEADERS), 404, "account_not_found"
    )


def test_change_own_password_ends_other_sessions(accounts: Accounts):
    name = accounts.user("viewer")
    here, elsewhere = bearer(accounts.session(name)), bearer(accounts.session(name))
    client = accounts.client
    response = client.post(
        "/api/auth/password",
        headers=here,
        json={"current_password": "wrong-password", "new_password": "brand-new-password"},
    )
    assert_error(response, 400, "wrong_password")
    response = client.post(
        "/api/auth/password",
        headers=here,
        json={"current_password": PASSWORD, "new_password": "brand-new-password"},
    )
    assert response.status_code == 204
    assert client.get("/api/auth/me", headers=here).json()["user"] == name
    assert_error(client.get("/api/auth/me", headers=elsewhere), 401, "session_revoked")
    assert accounts.login(name, "brand-new-password").status_code == 200
    response = client.post(
        "/api/auth/password",
        headers=ADMIN_HEADERS,
        json={"current_password": "x", "new_password": "brand-new-password"},
    )
    assert_error(response, 400, "no_account")


def test_login_is_throttled_per_account(accounts: Accounts):
    name = accounts.user("viewer")
    for i in range(10):
        # Ten addresses: only the account's own counter can be what stops the next try.
        response = accounts.login(name, "wrong-password", ip=f"192.0.2.{i + 1}")
        assert response.status_code == 401
    refused = accounts.login(name, PASSWORD, ip="192.0.2.200")
    error = assert_error(refused, 429, "too_many_attempts")
    assert "try again in" in error["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    # Unknown names are throttled just the same, so 429 does not reveal that a name exists.
    ghost = unique("ghost")
    for i in range(10):
        accounts.login(ghost, "wrong-password", ip=f"192.0.2.{i + 50}")
    assert_error(
        accounts.login(ghost, "wrong-password", ip="192.0.2.201"), 429, "too_many_attempts"
    )
    # Other accounts are not affected.
    other = accounts.user("viewer")
    assert accounts.login(other, ip="192.0.2.202").status_code == 200


def test_login_is_throttled_per_client_address(accounts: Accounts):
    ip = "203.0.113.77"
    names = [accounts.user("viewer") for _ in range(4)]
    for i in range(30):
        assert accounts.login(names[i % 4], "wrong-password", ip=ip).status_code == 401
    refused = accounts.login(names[0], PASSWORD, ip=ip)
    assert_error(refused, 429, "too_many_attempts")
    assert int(refused.headers["Retry-After"]) >= 1
    assert accounts.login(names[0], PASSWORD, ip="203.0.113.78").status_code == 200


def test_audit_log_records_access_events_without_secrets(accounts: Accounts):
    client = accounts.client
    name = accounts.user("editor", "audited")
    accounts.login(name, "wrong-password", ip="198.51.100.9")
    session = accounts.session(name)
    created = client.post(
        "/api/tokens", headers=bearer(session), json={"name": "audit me", "scope": "viewer"}
    ).json()
    client.delete(f"/api/tokens/{created['id']}", headers=bearer(session))
    client.patch(f"/api/users/{name}", headers=ADMIN_HEADERS, json={"role": "viewer"})
    client.post("/api/auth/logout", headers=bearer(session))
    client.delete(f"/api/users/{name}", headers=ADMIN_HEADERS)

    page = client.get("/api/audit", params={"target": name}, headers=ADMIN_HEADERS).json()
    actions = [e["action"] for e in reversed(page["events"])]
    assert actions == [
        "account.created",
        "login.failed",
        "login",
        "token.created",
        "token.revoked",
        "account.changed",
        "logout",
        "account.removed",
    ]
    events = {e["action"]: e for e in page["events"]}
    assert events["account.created"]["actor"] == "admin-token"
    assert events["login.failed"]["ip"] == "198.51.100.9"
    assert events["token.created"]["actor"] == name
    assert events["token.created"]["detail"]["id"] == created["id"]
    assert events["account.changed"]["detail"] == {"role_from": "editor", "role_to": "viewer"}
    text = str(page)
    assert created["token"] not in text and session not in text and PASSWORD not in text

    # Filters and paging, newest first.
    family = client.get(
        "/api/audit", params={"target": name, "action": "token."}, headers=ADMIN_HEADERS
    ).json()
    assert [e["action"] for e in family["events"]] == ["token.revoked", "token.created"]
    first = client.get(
        "/api/audit", params={"target": name, "limit": 3}, headers=ADMIN_HEADERS
    ).json()
    assert len(first["events"]) == 3 and first["next"] is not None
    rest = client.get(
        "/api/audit",
        params={"target": name, "limit": 10, "before": first["next"]},
        headers=ADMIN_HEADERS,
    ).json()
    assert [e["id"] for e in first["events"] + rest["events"]] == [e["id"] for e in page["events"]]
    assert rest["next"] is None
    assert_error(
        client.get("/api/audit", params={"before": "x"}, headers=ADMIN_HEADERS), 400, "bad_cursor"
    )


def test_access_is_checked_before_a_body_is_read(server: ServerProcess, accounts: Accounts):
    """A refused caller gets its answer without the server waiting for (or spooling) a body."""
    viewer = accounts.user_token("viewer")
    cases = [
        ("/api/tokens", None, 401),
        ("/api/users", viewer, 403),
    ]
    for path, token, status in cases:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            auth = f"Authorization: Bearer {token}\r\n" if token else ""
            sock.sendall(
                (
                    f"POST {path} HTTP/1.1\r\nHost: test\r\n{auth}"
                    "Content-Type: multipart/form-data; boundary=x\r\n"
                    "Content-Length: 500000000\r\n\r\n"
                ).encode()
            )
            # Nothing of the announced 500 MB is sent: the answer must come anyway.
            answer = sock.recv(4096).decode("latin-1")
        assert answer.startswith(f"HTTP/1.1 {status}"), answer


def test_api_responses_carry_security_headers(server: ServerProcess):
    response = httpx.get(server.url + "/api/health")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    for path in ("/api/nope", "/api/tokens"):
        refused = httpx.get(server.url + path)
        assert refused.status_code in (401, 404)
        assert refused.headers["X-Content-Type-Options"] == "nosniff"
    docs = httpx.get(server.url + "/api/docs")
    policy = docs.headers["Content-Security-Policy"]
    assert (
        "script-src 'self' 'sha256-" in policy
        and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    )
    assert "frame-ancestors 'none'" in policy


def test_expired_tokens_and_sessions_are_refused(start_server, tmp_path):
    """Tokens that expired while the backend was stopped are refused once it is back."""
    workdir = tmp_path / "expired"
    settings = load_settings(data_dir=workdir / "data")
    database = Database(settings)
    database.open()
    secrets = {}
    with database.transaction() as cur:
        account = account_service.create_user(
            cur, username="late", password=PASSWORD, role="viewer", actor="test", ip=None
        )
        for kind in ("api", "session"):
            secret, digest, hint = new_secret()
            token_store.insert_token(
                cur,
                token_id=f"expired-{kind}",
                account_id=account.id,
                kind=kind,
                name=kind,
                scope="viewer",
                token_hash=digest,
                hint=hint,
                expires_at=datetime.now(UTC) - timedelta(minutes=1),
            )
            secrets[kind] = secret
        fresh, _ = token_service.create_token(
            cur,
            owner=account,
            name="fresh",
            scope="viewer",
            expires_in_days=1,
            actor="test",
            actor_role="admin",
            ip=None,
        )
    database.close()

    backend = start_server("backend", env=secured_env(), workdir=workdir)
    client = httpx.Client(base_url=backend.url)
    error = assert_error(
        client.get("/api/auth/me", headers=bearer(secrets["api"])), 401, "token_expired"
    )
    assert "expired" in error["message"]
    assert_error(
        client.get("/api/auth/me", headers=bearer(secrets["session"])), 401, "session_expired"
    )
    assert client.get("/api/auth/me", headers=bearer(fresh)).json()["user"] == "late"
    listed = client.get("/api/tokens", params={"username": "late"}, headers=ADMIN_HEADERS).json()[
        "tokens"
    ]
    assert [t["name"] for t in listed] == ["fresh"], "expired tokens are not listed as active"
    client.close()


def test_data_changes_are_audited_with_who_and_where(accounts: Accounts):
    """Datasets and saved queries record their changes in the same audit log."""
    client = accounts.client
    name = accounts.user("editor", "changer")
    editor = {**bearer(accounts.token(name, "editor")["token"]), "X-Forwarded-For": "192.0.2.33"}
    table = f"audited_{name}"
    upload = client.put(
        f"/api/datasets/{table}", params={"format": "csv"}, content=b"a,b\n1,2\n", headers=editor
    )
    assert upload.status_code == 201, upload.text
    client.put(
        f"/api/datasets/{table}",
        params={"format": "csv", "mode": "append"},
        content=b"a,b\n3,4\n",
        headers=editor,
    )
    client.patch(f"/api/datasets/{table}", json={"name": table + "_2"}, headers=editor)
    client.delete(f"/api/datasets/{table}_2", headers=editor)
    query = client.post(
        "/api/queries", json={"title": f"audit {name}", "sql": "SELECT 1 AS x"}, headers=editor
    )
    assert query.status_code == 201, query.text
    slug = query.json()["slug"]
    client.put(
        f"/api/queries/{slug}",
        json={"title": f"audit {name}", "sql": "SELECT 2 AS x"},
        headers=editor,
    )
    client.delete(f"/api/queries/{slug}", headers=editor)

    events = client.get(
        "/api/audit", params={"actor": name, "limit": 50}, headers=ADMIN_HEADERS
    ).json()["events"]
    actions = [e["action"] for e in reversed(events)]
    assert actions == [
        "dataset.created",
        "dataset.appended",
        "dataset.renamed",
        "dataset.deleted",
        "query.created",
        "query.updated",
        "query.deleted",
    ]
    assert {e["ip"] for e in events} == {"192.0.2.33"}
