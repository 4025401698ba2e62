"""Page cursors of the table browser: what a `next` token carries, and that a token we did not
make (edited, from another dataset, sort or version) is a clear 400, never a wrong page."""

from __future__ import annotations

import base64
import json

import pytest

from myapp.backend.errors import BadRequest
from myapp.backend.store.browse import (
    MAX_CURSOR_CHARS,
    MAX_CURSOR_NUMBER,
    MAX_CURSOR_VALUE_CHARS,
    Cursor,
    Sort,
    decode_cursor,
    encode_cursor,
    parse_cursor,
)

FINGERPRINT = "0123456789abcdef"
BY_NAME = Sort({"name": "name", "type": "VARCHAR"}, descending=False)
BY_ROWID = Sort(None, descending=False)


def token(**fields) -> str:
    return encode_cursor({"f": FINGERPRINT, "o": 100, "t": 5000, "x": True, **fields})


def raw_token(payload) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def refusal(call) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        call()
    assert caught.value.code == "invalid_cursor"
    assert "start again from the first page" in caught.value.message
    return caught.value


def test_a_cursor_is_url_safe_text_that_decodes_to_what_was_encoded():
    payload = {"f": FINGERPRINT, "o": 7, "k": "keyset", "r": 6, "v": "Ålesund/ø?&=", "n": False}
    encoded = encode_cursor(payload)
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(encoded) == payload


def test_an_offset_cursor_continues_where_the_page_ended_with_its_total():
    state = parse_cursor(token(k="offset"), FINGERPRINT, BY_ROWID, keyset=False)
    assert state == Cursor(100, False, total=5000, total_exact=True, total_known=True)


def test_a_keyset_cursor_carries_the_last_rows_sort_value_and_rowid():
    state = parse_cursor(token(k="keyset", r=99, v="Oslo", n=False), FINGERPRINT, BY_NAME, True)
    assert state == Cursor(100, True, rowid=99, value="Oslo", total=5000, total_exact=True,
                           total_known=True)  # fmt: skip
    after_null = parse_cursor(token(k="keyset", r=99, n=True), FINGERPRINT, BY_NAME, True)
    assert after_null.value is None and after_null.value_is_null


def test_a_total_not_yet_known_stays_unknown():
    state = parse_cursor(
        encode_cursor({"f": FINGERPRINT, "o": 50, "k": "offset"}), FINGERPRINT, BY_ROWID, False
    )
    assert state.total is None and not state.total_known


def test_a_cursor_of_another_dataset_version_sort_or_filters_is_refused():
    error = refusal(lambda: parse_cursor(token(k="offset"), "fedcba9876543210", BY_ROWID, False))
    assert "another dataset" in error.message


@pytest.mark.parametrize(
    "fields",
    [
        {"k": "offset", "o": -1},
        {"k": "offset", "o": True},  # JSON true is not a row number
        {"k": "offset", "o": 1.5},
        {"k": "offset", "o": "100"},
        {"k": "offset", "o": MAX_CURSOR_NUMBER + 1},
        {"k": "offset", "t": -5},
        {"k": "offset", "x": "yes"},
        {"k": "sideways"},
        {"k": "keyset"},  # a keyset cursor where the page is read by offset
        {"k": "keyset", "r": None, "v": "Oslo"},
        {"k": "keyset", "r": 1, "v": 5},
        {"k": "keyset", "r": 1, "n": 0},
        {"k": "keyset", "r": 1, "v": "x" * (MAX_CURSOR_VALUE_CHARS + 1)},
    ],
)
def test_an_edited_field_is_refused(fields):
    keyset = fields.get("k") == "keyset" and "r" in fields
    refusal(lambda: parse_cursor(token(**fields), FINGERPRINT, BY_NAME, keyset))


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!",
        raw_token([1, 2, 3]),
        raw_token("a string"),
        base64.urlsafe_b64encode(b"\xff\xfe not json").decode(),
        "A" * (MAX_CURSOR_CHARS + 1),
        base64.urlsafe_b64encode(b"[" * 100_000).decode(),
    ],
)
def test_text_that_is_not_a_cursor_is_refused(text):
    refusal(lambda: parse_cursor(text, FINGERPRINT, BY_ROWID, False))
