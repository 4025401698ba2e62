"""Passwords are stored as Argon2id; accounts from before keep signing in and are upgraded."""

from __future__ import annotations

import time

import duckdb
import httpx

from myapp.backend.store.sql import internal
from tests.support.accounts import ADMIN_HEADERS, secured_env

# Written by the previous version's hash_password("correct horse battery"): scrypt with
# N=2^15, r=8, p=1, as every account made before Argon2id has it.
OLD_PASSWORD = "correct horse battery"
OLD_SCRYPT_HASH = (
    "scrypt$32768$8$1$kpuhvDwHJh7OHgWugP9YqA==$DNmfpD1ZeAkIQtM8u3v3tJhTwEBXLCNg3bTlQiizwvg="
)


def _stored_hash(database, username: str) -> str:
    with duckdb.connect(str(database)) as conn:
        row = conn.execute(
            f"SELECT password_hash FROM {internal('accounts')} WHERE username = ?", [username]
        ).fetchone()
    assert row is not None
    return row[0]


def _set_hash(database, username: str, value: str) -> None:
    with duckdb.connect(str(database)) as conn:
        conn.execute(
            f"UPDATE {internal('accounts')} SET password_hash = ? WHERE username = ?",
            [value, username],
        )


def test_new_accounts_get_argon2id_and_old_scrypt_accounts_are_upgraded_at_sign_in(
    start_server,
):
    server = start_server("backend", env=secured_env())
    created = httpx.post(
        f"{server.url}/api/users",
        headers=ADMIN_HEADERS,
        json={"username": "olduser", "password": "some-other-password", "role": "viewer"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    server.stop()
    database = server.data_dir / "app.db"
    fresh = _stored_hash(database, "olduser")
    assert fresh.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), fresh

    # The workspace as the previous version left it: the account's hash is scrypt.
    _set_hash(database, "olduser", OLD_SCRYPT_HASH)
    server.start()
    login = f"{server.url}/api/auth/login"
    wrong = httpx.post(login, json={"username": "olduser", "password": "nope"}, timeout=30)
    assert wrong.status_code == 401
    ok = httpx.post(login, json={"username": "olduser", "password": OLD_PASSWORD}, timeout=30)
    assert ok.status_code == 200, ok.text
    # The session works, and the new hash does too.
    me = httpx.get(
        f"{server.url}/api/auth/me", headers={"Authorization": f"Bearer {ok.json()['token']}"}
    )
    assert me.status_code == 200
    again = httpx.post(login, json={"username": "olduser", "password": OLD_PASSWORD}, timeout=30)
    assert again.status_code == 200, again.text
    server.stop()
    upgraded = _stored_hash(database, "olduser")
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), upgraded


def test_unknown_accounts_take_about_as_long_as_known_ones(start_server):
    server = start_server("backend", env=secured_env())
    httpx.post(
        f"{server.url}/api/users",
        headers=ADMIN_HEADERS,
        json={"username": "timed", "password": "some-other-password", "role": "viewer"},
        timeout=30,
    ).raise_for_status()
    login = f"{server.url}/api/auth/login"

    def best_of(username: str) -> float:
        best = float("inf")
        # Different addresses per try keep the sign-in throttle out of the measurement.
        for i in range(5):
            started = time.perf_counter()
            response = httpx.post(
                login,
                json={"username": username, "password": f"wrong{i}"},
                headers={"X-Forwarded-For": f"10.9.{i}.1"},
                timeout=30,
            )
            best = min(best, time.perf_counter() - started)
            assert response.status_code == 401
        return best

    known, unknown = best_of("timed"), best_of("nobody-here")
    # Without the dummy hash an unknown name answers in a few ms against ~30 ms for a real
    # check: a factor far outside this band.
    assert unknown > known / 3, (known, unknown)
