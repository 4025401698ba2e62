"""`myapp user …` and `myapp token …`: on a stopped backend's file, and through a running API."""

from __future__ import annotations

import getpass
import json

import httpx
import pytest
from click.testing import CliRunner, Result

from myapp.cli import main
from tests.support.accounts import ADMIN_TOKEN, PASSWORD, bearer, secured_env
from tests.support.servers import free_port


def run(args: list[str], env: dict[str, str], stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, args, env=env, input=stdin, catch_exceptions=False)


@pytest.fixture
def offline(tmp_path) -> dict[str, str]:
    """No backend answers on this loopback address, so commands work on the file."""
    return {
        "MYAPP_DATA_DIR": str(tmp_path / "data"),
        "MYAPP_URL": f"http://127.0.0.1:{free_port()}",
    }


def test_accounts_and_tokens_on_the_file_then_used_by_the_backend(offline, start_server, tmp_path):
    result = run(["user", "add", "Alice", "--role", "admin", "--password-stdin"], offline, PASSWORD)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Created account alice (admin)."
    assert "working on" in result.stderr and "app.db directly" in result.stderr

    bad = [
        (["user", "add", "bob", "--password-stdin"], "short\n", "8 to 1024 characters"),
        (["user", "add", "no/slashes", "--password-stdin"], PASSWORD, "a username is"),
        (["user", "add", "ALICE", "--password-stdin"], PASSWORD, "already exists"),
        (["user", "role", "alice", "viewer"], None, "At least one admin account must remain"),
        (["user", "remove", "alice", "--yes"], None, "At least one admin account must remain"),
        (["token", "create", "--name", "x"], None, "name the token's account with --user"),
        (["token", "create", "--name", "x", "--user", "nobody"], None, "no account named"),
        (["token", "revoke", "nope"], None, "no token with id"),
    ]
    for args, stdin, message in bad:
        result = run(args, offline, stdin)
        assert result.exit_code == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output

    assert run(["user", "add", "bob", "--password-stdin"], offline, PASSWORD).exit_code == 0
    listing = run(["user", "list"], offline)
    assert listing.stdout.splitlines()[0].split() == [
        "USERNAME",
        "ROLE",
        "CREATED",
        "LAST",
        "SIGN-IN",
    ]
    assert [line.split()[:2] for line in listing.stdout.splitlines()[1:]] == [
        ["alice", "admin"],
        ["bob", "viewer"],
    ]

    created = run(["token", "create", "--name", "ci", "--user", "bob"], offline)
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("myapp_") and "\n" not in secret, "stdout holds just the token"
    assert "shown only once" in created.stderr
    doomed = run(["token", "create", "--name", "old", "--user", "bob"], offline).stdout.strip()
    tokens = run(["token", "list", "--json"], offline)
    ids = {t["name"]: t["id"] for t in json.loads(tokens.stdout)["tokens"]}
    assert set(ids) == {"ci", "old"}
    assert run(["token", "revoke", ids["old"]], offline).exit_code == 0
    assert "old" not in run(["token", "list"], offline).stdout
    assert (
        run(["user", "passwd", "bob", "--password-stdin"], offline, "bobs-new-pass\n").exit_code
        == 0
    )
    assert run(["user", "role", "bob", "editor"], offline).stdout.strip() == "bob is now editor."

    # The backend started on that file honours all of it.
    backend = start_server(
        "backend", workdir=tmp_path, env={"MYAPP_DATA_DIR": offline["MYAPP_DATA_DIR"]}
    )
    client = httpx.Client(base_url=backend.url)
    me = client.get("/api/auth/me", headers=bearer(secret)).json()
    assert (me["user"], me["role"], me["open_mode"]) == ("bob", "viewer", False)
    assert client.get("/api/auth/me", headers=bearer(doomed)).status_code == 401
    login = client.post("/api/auth/login", json={"username": "bob", "password": "bobs-new-pass"})
    assert login.status_code == 200 and login.json()["user"]["role"] == "editor"
    admin = client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    events = client.get("/api/audit", headers=bearer(admin.json()["token"])).json()["events"]
    cli_actor = f"cli:{getpass.getuser()}"
    assert {e["action"] for e in events if e["actor"] == cli_actor} == {
        "account.created",
        "account.changed",
        "token.created",
        "token.revoked",
    }

    # While the backend holds the file, the file cannot be used: one clear line, at once.
    locked = run(["user", "list"], offline)
    assert locked.exit_code == 1
    assert "is locked by another process" in locked.stderr and "--url" in locked.stderr
    client.close()


def test_commands_go_through_a_running_backend(start_server):
    backend = start_server("backend", env=secured_env())
    env = {"MYAPP_URL": backend.url}
    admin = ["--token", ADMIN_TOKEN]
    result = run(
        ["user", "add", "carol", "--role", "editor", "--password-stdin", *admin], env, PASSWORD
    )
    assert result.exit_code == 0, result.output
    assert "working on" not in result.stderr

    created = run(
        ["token", "create", "--name", "etl", "--scope", "editor", "--user", "carol", *admin], env
    )
    secret = created.stdout.strip()
    me = httpx.get(backend.url + "/api/auth/me", headers=bearer(secret)).json()
    assert (me["user"], me["role"]) == ("carol", "editor")
    # With her own token, carol manages her own tokens, not accounts.
    own = run(["token", "create", "--name", "mine"], {**env, "MYAPP_TOKEN": secret})
    assert own.exit_code == 0 and "for carol (viewer" in own.stderr
    listing = run(["token", "list"], {**env, "MYAPP_TOKEN": secret})
    assert {line.split()[1] for line in listing.stdout.splitlines()[1:]} == {"etl", "mine"}
    refused = run(["user", "list"], {**env, "MYAPP_TOKEN": secret})
    assert refused.exit_code == 1 and "needs the admin role" in refused.stderr
    anonymous = run(["user", "list"], env)
    assert anonymous.exit_code == 1 and "(401 unauthorized)" in anonymous.stderr

    token_id = next(
        line.split()[0] for line in listing.stdout.splitlines()[1:] if line.split()[1] == "etl"
    )
    assert run(["token", "revoke", token_id, *admin], env).exit_code == 0
    assert httpx.get(backend.url + "/api/auth/me", headers=bearer(secret)).status_code == 401
    assert (
        run(["user", "remove", "carol", "--yes", *admin], env).stdout.strip()
        == "Removed account carol."
    )


def test_every_command_has_help():
    for group in ("user", "token"):
        command = main.commands[group]
        for name, sub in command.commands.items():
            assert sub.help, f"{group} {name} has no help"
            for param in sub.params:
                if param.param_type_name == "option":
                    assert param.help, f"{group} {name} --{param.name} has no help"
