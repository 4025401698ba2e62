"""Usernames in any alphabet: one account per name whatever its case or Unicode form, and no
account whose name merely looks like an existing one."""

from __future__ import annotations

import unicodedata

import pytest

from myapp.models import usernames
from tests.backend.test_errors import assert_error_shape
from tests.support.accounts import ADMIN_HEADERS, PASSWORD, secured_env

# Written with escapes: the point of these names is that they look like others.
CYRILLIC_ADMIN = "\u0430dmin"  # a Cyrillic letter a, then Latin "dmin": mixes alphabets
ALL_CYRILLIC_LOOKALIKE = "\u0441\u0430\u0440\u0435"  # all Cyrillic, reads "cape"
GREEK_LOOKALIKE = "\u03c1\u03bf\u03ba"  # all Greek, reads "pok"


@pytest.mark.parametrize(
    "name",
    [
        "Zoë Müller",
        "alice",
        "Иван Петров",
        "李雷",
        "山田たろう",
        "Δημήτρης",
        "ann.lee-2",
        "7eleven",
    ],
)
def test_names_of_people_are_accepted(name):
    assert usernames.problem(name) is None


@pytest.mark.parametrize(
    "name",
    ["", " bob", "bob ", "two  spaces", "semi;colon", "a/b", "-dash", "x" * 65, CYRILLIC_ADMIN],
)
def test_names_that_break_the_rule_are_refused(name):
    assert usernames.problem(name) is not None


def test_skeletons_match_look_alikes_and_keep_real_differences():
    assert usernames.skeleton(ALL_CYRILLIC_LOOKALIKE) == usernames.skeleton("cape")
    assert usernames.skeleton(GREEK_LOOKALIKE) == usernames.skeleton("pok")
    fullwidth = "\uff21\uff24\uff2d\uff29\uff2e"
    assert usernames.skeleton(fullwidth) == usernames.skeleton("admin")
    assert usernames.skeleton("rnary") == usernames.skeleton("mary")
    assert usernames.skeleton("Zoë") != usernames.skeleton("Zoe")
    decomposed = unicodedata.normalize("NFD", "Zoë Müller")
    assert usernames.normalize(decomposed) == usernames.normalize("ZOË MÜLLER") == "zoë müller"


def test_the_api_keeps_one_account_per_name_and_refuses_look_alikes(start_server):
    import httpx

    server = start_server("backend", env=secured_env())
    with httpx.Client(base_url=server.url, headers=ADMIN_HEADERS, timeout=30) as client:

        def create(name: str) -> httpx.Response:
            return client.post(
                "/api/users", json={"username": name, "password": PASSWORD, "role": "viewer"}
            )

        created = create("Zoë Müller")
        assert created.status_code == 201, created.text
        assert created.json()["username"] == "zoë müller"
        # Same name in other case or Unicode form: the same account.
        again = create(unicodedata.normalize("NFD", "ZOË MÜLLER"))
        assert_error_shape(again, 409, "account_exists")
        assert create("cape").status_code == 201
        look_alike = assert_error_shape(create(ALL_CYRILLIC_LOOKALIKE), 409, "username_confusable")
        assert look_alike["detail"] == {"existing": "cape"}
        mixed = assert_error_shape(create(CYRILLIC_ADMIN), 422, "validation_error")
        assert "mix alphabets" in str(mixed)
        # Signing in works with any case and form of the name.
        login = client.post(
            "/api/auth/login",
            json={"username": unicodedata.normalize("NFD", "zoë MÜLLER"), "password": PASSWORD},
        )
        assert login.status_code == 200, login.text
