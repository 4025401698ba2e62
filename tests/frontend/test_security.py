"""The pages' security: session cookies, CSRF refusal, headers, sign-in redirects, open mode.

Real processes: a backend with credentials and two frontend replicas sharing one key (one of
them behind a pretend HTTPS proxy), talked to over HTTP as a browser would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import ADMIN_HEADERS, PASSWORD, Accounts, secured_env
from tests.support.servers import ServerProcess

SECRET_KEY = "frontend-test-key-0123456789abcdef"
TEMPLATES = Path(__file__).parents[2] / "myapp" / "frontend" / "templates"


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> Iterator[ServerProcess]:
    proc = ServerProcess("backend", tmp_path_factory.mktemp("sec-backend"), env=secured_env())
    proc.start()
    yield proc
    proc.stop()


def _frontend(tmp_path_factory, backend: ServerProcess, **env: str) -> ServerProcess:
    return ServerProcess(
        "frontend",
        tmp_path_factory.mktemp("sec-frontend"),
        env={"MYAPP_BACKEND_URL": backend.url, "MYAPP_SECRET_KEY": SECRET_KEY, **env},
    ).start()


@pytest.fixture(scope="module")
def web(tmp_path_factory, backend) -> Iterator[ServerProcess]:
    proc = _frontend(tmp_path_factory, backend)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory, backend) -> Iterator[ServerProcess]:
    """A second replica, as if behind one reverse proxy that terminates HTTPS."""
    proc = _frontend(tmp_path_factory, backend, MYAPP_PROXY_HOPS="1")
    yield proc
    proc.stop()


@pytest.fixture
def accounts(backend) -> Iterator[Accounts]:
    helper = Accounts(backend)
    yield helper
    helper.close()


def browser(server: ServerProcess) -> httpx.Client:
    """Like a browser on the page: same-origin requests carry Origin."""
    return httpx.Client(base_url=server.url, headers={"Origin": server.url}, timeout=30.0)


def sign_in(client: httpx.Client, username: str, password: str = PASSWORD) -> httpx.Response:
    response = client.post("/login", data={"username": username, "password": password})
    assert response.status_code == 302, response.text
    return response


def set_cookie_header(response: httpx.Response, name: str = "myapp_session") -> str:
    return next(v for v in response.headers.get_list("set-cookie") if v.startswith(f"{name}="))


def test_every_page_response_carries_the_security_headers(web):
    for path, status in [
        ("/", 200),
        ("/login", 200),
        ("/static/css/app.css", 200),
        ("/no/such/page", 404),
        ("/healthz", 200),
        ("/admin", 302),
    ]:
        response = httpx.get(web.url + path)
        assert response.status_code == status, path
        policy = response.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["script-src"] == "'self'", path
        assert directives["frame-ancestors"] == "'none'"
        assert directives["object-src"] == "'none'"
        assert directives["base-uri"] == "'self'"
        assert directives["form-action"] == "'self'"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert response.headers["X-Frame-Options"] == "DENY"


def test_no_template_has_inline_script():
    """The policy forbids inline script; a template that has some would break in browsers."""
    problems = []
    for template in sorted(TEMPLATES.rglob("*.html")):
        text = template.read_text()
        name = template.relative_to(TEMPLATES)
        for match in re.finditer(r"<script\b([^>]*)>(.*?)</script>", text, re.S | re.I):
            attributes, body = match.groups()
            if body.strip() and "application/json" not in attributes:
                problems.append(f"{name}: inline <script>")
        if re.search(r"\son[a-z]+\s*=", text, re.I):
            problems.append(f"{name}: on…= event attribute")
        if "javascript:" in text.lower():
            problems.append(f"{name}: javascript: URL")
    assert not problems, problems


def test_sign_in_sets_a_safe_cookie_and_sign_out_ends_the_session(web, accounts):
    name = accounts.user("editor")
    with browser(web) as client:
        response = client.post(
            "/login", data={"username": name, "password": PASSWORD, "next": "/account"}
        )
        assert response.status_code == 302 and response.headers["Location"] == "/account"
        cookie = set_cookie_header(response)
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "expires", "path"} <= attributes
        assert "samesite=lax" in cookie.lower() and "secure" not in attributes
        value = client.cookies["myapp_session"]
        page = client.get("/account")
        assert page.status_code == 200
        assert f'data-testid="account-username">{name}<' in page.text
        assert page.headers["Cache-Control"] == "no-store"
        assert "Sign out" in page.text

        out = client.post("/logout")
        assert out.status_code == 302
        assert 'myapp_session=""' in set_cookie_header(out) or "Max-Age=0" in set_cookie_header(out)
    # The old cookie, replayed, is worth nothing: the backend revoked its session.
    with browser(web) as replay:
        replay.cookies.set("myapp_session", value)
        again = replay.get("/account")
        assert again.status_code == 302 and again.headers["Location"].startswith("/login")
        assert "Max-Age=0" in set_cookie_header(again) or "expires=Thu, 01 Jan 1970" in (
            set_cookie_header(again)
        )


def test_signing_in_over_an_existing_session_keeps_the_new_one(web, accounts):
    first, second = accounts.user("viewer"), accounts.user("editor")
    with browser(web) as client:
        sign_in(client, first)
        old = client.cookies["myapp_session"]
        response = sign_in(client, second)
        cookies = [c for c in response.headers.get_list("set-cookie") if "myapp_session=" in c]
        assert len(cookies) == 1 and "Max-Age=0" not in cookies[0]
        assert client.cookies["myapp_session"] != old
        page = client.get("/account")
        assert page.status_code == 200 and f">{second}<" in page.text


def test_wrong_password_page_says_nothing_about_the_account(web, accounts):
    name = accounts.user("viewer")
    with browser(web) as client:
        wrong = client.post("/login", data={"username": name, "password": "nope-nope-nope"})
        unknown = client.post("/login", data={"username": name + "x", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    message = 'data-testid="login-error">The username or password is not right.<'
    assert message in wrong.text and message in unknown.text
    assert "myapp_session=" not in wrong.headers.get("set-cookie", "")


def test_too_many_failures_show_a_wait_page(web, accounts):
    name = accounts.user("viewer")
    with browser(web) as client:
        for _ in range(10):
            client.post("/login", data={"username": name, "password": "not-it-at-all"})
        page = client.post("/login", data={"username": name, "password": PASSWORD})
    assert page.status_code == 429
    assert "Too many failed sign-in attempts" in page.text
    assert int(page.headers["Retry-After"]) > 0


def test_a_tampered_or_foreign_cookie_is_dropped(web, accounts):
    name = accounts.user("viewer")
    with browser(web) as client:
        sign_in(client, name)
        good = client.cookies["myapp_session"]
    payload, _, signature = good.rpartition(".")
    forged = [
        payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:],
        # Cut short by two characters of data: cryptography 51+ reads a Fernet token without
        # its base64 padding, so cutting a trailing "==" would leave the same token.
        good.rstrip("=")[:-2],
        "eyJ0IjoibXlhcHBfZ3Vlc3NlZCJ9.Zz1x.forged",
        # Garbage, in characters a cookie may hold (Werkzeug 3.1.9+ ignores a value with
        # spaces altogether, so there would be nothing to clear).
        "not-even-close",
    ]
    for value in forged:
        with browser(web) as client:
            client.cookies.set("myapp_session", value)
            page = client.get("/account")
            assert page.status_code == 302, value
            assert page.headers["Location"].startswith("/login")
            assert "myapp_session=" in page.headers.get("set-cookie", ""), "the cookie is cleared"
            home = client.get("/")
            assert home.status_code == 200 and 'data-testid="sign-in-link"' in home.text


def test_any_replica_with_the_same_key_serves_the_session(web, proxied, accounts):
    name = accounts.user("viewer")
    with browser(web) as client:
        sign_in(client, name)
        cookie = client.cookies["myapp_session"]
    with httpx.Client(base_url=proxied.url) as other:
        other.cookies.set("myapp_session", cookie)
        page = other.get("/account")
        assert page.status_code == 200 and f">{name}<" in page.text


def test_without_a_key_every_worker_of_one_frontend_shares_the_generated_one(
    tmp_path_factory, backend, accounts
):
    # An empty MYAPP_SECRET_KEY= (as a copied env file leaves it) counts as unset: one key is
    # generated for the whole process group, so any of the 2 workers accepts the session.
    proc = _frontend(tmp_path_factory, backend, MYAPP_SECRET_KEY="")
    try:
        name = accounts.user("viewer")
        with browser(proc) as client:
            sign_in(client, name)
            cookie = client.cookies["myapp_session"]
        statuses = []
        for _ in range(12):
            # A new connection each time, so the requests spread over the workers.
            with httpx.Client(base_url=proc.url, follow_redirects=False) as fresh:
                fresh.cookies.set("myapp_session", cookie)
                statuses.append(fresh.get("/account").status_code)
        assert statuses == [200] * 12
    finally:
        proc.stop()


def test_the_cookie_is_secure_behind_https(proxied, accounts):
    name = accounts.user("viewer")
    with httpx.Client(base_url=proxied.url) as client:
        response = client.post(
            "/login",
            data={"username": name, "password": PASSWORD},
            headers={"X-Forwarded-Proto": "https"},
        )
    assert response.status_code == 302
    assert "secure" in [p.strip().lower() for p in set_cookie_header(response).split(";")]


def test_cross_site_state_changes_are_refused(web, accounts):
    name = accounts.user("viewer")
    with browser(web) as client:
        sign_in(client, name)
        cookie = client.cookies["myapp_session"]

    def post(path: str, headers: dict[str, str], with_cookie: bool = True, method: str = "POST"):
        with httpx.Client(base_url=web.url) as client:
            if with_cookie:
                client.cookies.set("myapp_session", cookie)
            return client.request(method, path, headers=headers, data={"name": "x"})

    refused = [
        ({"Origin": "https://evil.example"}, True, "POST"),
        ({"Origin": "null"}, True, "POST"),
        ({"Sec-Fetch-Site": "cross-site"}, True, "POST"),
        ({"Sec-Fetch-Site": "same-site", "Origin": web.url}, True, "POST"),
        ({}, True, "POST"),  # a cookie but no sign of where the request came from
        ({"Origin": "https://evil.example"}, False, "POST"),  # login CSRF
        ({"Origin": "https://evil.example"}, True, "DELETE"),
        ({"Sec-Fetch-Site": "cross-site"}, True, "PUT"),
    ]
    for headers, with_cookie, method in refused:
        response = post("/account/tokens", headers, with_cookie, method)
        assert response.status_code == 403, (headers, with_cookie, method)
        assert "came from another site" in response.text
    as_json = post(
        "/account/tokens", {"Origin": "https://evil.example", "Accept": "application/json"}
    )
    assert as_json.status_code == 403 and as_json.json()["error"]["code"] == "forbidden"
    # The session survived every refused attempt, and same-origin requests work.
    for headers in ({"Origin": web.url}, {"Sec-Fetch-Site": "same-origin"}):
        response = post("/account/tokens", headers)
        # Created, then redirected to the page that shows the token once (post/redirect/get).
        assert response.status_code == 303, response.text
    # Without a cookie and without browser headers (curl, scripts) there is nothing to forge.
    assert post("/login", {}, with_cookie=False).status_code == 400


def test_anonymous_visitors_are_sent_to_sign_in_and_back(web, accounts):
    with browser(web) as client:
        page = client.get("/admin")
        assert page.status_code == 302
        assert page.headers["Location"] == "/login?next=/admin"
        login = client.get(page.headers["Location"])
        assert 'name="next" value="/admin"' in login.text
        admin = accounts.user("admin")
        response = client.post(
            "/login", data={"username": admin, "password": PASSWORD, "next": "/admin"}
        )
        assert response.headers["Location"] == "/admin"
        assert client.get("/admin").status_code == 200
        # Only paths of this site are followed after signing in.
        client.post("/logout")
        for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            response = client.post(
                "/login", data={"username": admin, "password": PASSWORD, "next": target}
            )
            assert response.headers["Location"] == "/", target


def test_a_viewer_gets_a_not_allowed_page_for_admin_pages(web, accounts):
    with browser(web) as client:
        sign_in(client, accounts.user("viewer"))
        page = client.get("/admin")
        assert page.status_code == 403
        assert "Not allowed" in page.text and "needs the admin role" in page.text
        home = client.get("/")
        assert ">Admin<" not in home.text and 'data-testid="user-menu"' in home.text


def test_open_mode_banner_only_in_open_mode(web_server, web):
    open_page = httpx.get(web_server.url + "/")
    assert 'data-testid="open-mode-banner"' in open_page.text
    assert 'data-testid="sign-in-link"' not in open_page.text
    # Open mode answers only under this machine's own names.
    assert httpx.get(web_server.url + "/", headers={"Host": "localhost"}).status_code == 200
    for host in ("evil.example", "192.0.2.7:12001"):
        elsewhere = httpx.get(web_server.url + "/admin", headers={"Host": host})
        assert elsewhere.status_code == 403, host
        assert "only answers on this machine" in elsewhere.text
    closed = httpx.get(web.url + "/")
    assert 'data-testid="open-mode-banner"' not in closed.text
    assert 'data-testid="sign-in-link"' in closed.text


def test_session_ended_elsewhere_sends_back_to_sign_in(web, accounts):
    name = accounts.user("viewer")
    with browser(web) as client:
        sign_in(client, name)
        sessions = accounts.client.get(
            "/api/tokens", params={"username": name, "kind": "session"}, headers=ADMIN_HEADERS
        ).json()["tokens"]
        accounts.client.delete(f"/api/tokens/{sessions[0]['id']}", headers=ADMIN_HEADERS)
        page = client.get("/account", follow_redirects=True)
        assert page.url.path == "/login"
        assert "Sign in to see your account." in page.text or "session has ended" in page.text
        assert "myapp_session" not in client.cookies


def test_admin_pages_manage_accounts_tokens_and_show_the_audit_log(web, accounts):
    admin = accounts.user("admin")
    target = accounts.user("viewer", "managed")
    token = accounts.token(target)
    with browser(web) as client:
        sign_in(client, admin)
        users = client.get("/admin")
        assert users.status_code == 200 and f">{target}</a>" in users.text

        short = client.post("/admin/users", data={"username": "newbie", "password": "x"})
        assert short.status_code == 400 and "at least 8 characters" in short.text
        taken = client.post(
            "/admin/users", data={"username": target, "password": PASSWORD, "role": "viewer"}
        )
        assert taken.status_code == 409 and "already exists" in taken.text

        saved = client.post(f"/admin/users/{target}", data={"role": "editor", "password": ""})
        assert saved.status_code == 302
        detail = client.get(f"/admin/users/{target}")
        assert '<option value="editor" selected>' in detail.text
        assert token["name"] in detail.text and token["token"] not in detail.text

        everyone = client.get("/admin/tokens")
        assert f"<td>{target}</td>" in everyone.text
        revoked = client.post(f"/admin/tokens/{token['id']}/revoke", data={"name": token["name"]})
        assert revoked.status_code == 302
        assert (
            accounts.client.get(
                "/api/auth/me", headers={"Authorization": f"Bearer {token['token']}"}
            ).status_code
            == 401
        )

        log = client.get("/admin/audit", params={"target": target})
        rows = re.findall(r'data-testid="audit-row"', log.text)
        assert len(rows) == 4, log.text  # created, token created, role changed, token revoked
        assert "token.revoked" in log.text and admin in log.text
        family = client.get("/admin/audit", params={"target": target, "action": "token."})
        assert len(re.findall(r'data-testid="audit-row"', family.text)) == 2

        confirm = client.get(f"/admin/users/{target}/delete")
        assert f"Remove account {target}?" in confirm.text
        removed = client.post(f"/admin/users/{target}/delete")
        assert removed.status_code == 302 and removed.headers["Location"] == "/admin"
        assert f">{target}</a>" not in client.get("/admin").text
