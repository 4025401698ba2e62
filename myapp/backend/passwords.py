"""Password hashing with scrypt (the standard library's, from OpenSSL).

A stored hash carries its own parameters and salt: `scrypt$n$r$p$salt$hash` (base64), so the
cost can be raised later and old hashes are upgraded at the next successful sign-in.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

# N=2^15, r=8 costs 32 MiB and about 0.1 s per hash on a small VM core: slow enough that a
# stolen database resists offline guessing, cheap enough that a burst of sign-ins on a 2-core
# machine neither stalls other requests nor exhausts memory.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
# scrypt needs 128 * N * r bytes; OpenSSL refuses anything above maxmem.
_MAXMEM = 128 * SCRYPT_N * SCRYPT_R * 2
_PREFIX = "scrypt"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=max(_MAXMEM, 128 * n * r * 2),
        dklen=size,
    )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"{_PREFIX}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, stored: str | None) -> bool:
    """True if `password` matches `stored`. With no stored hash (an unknown account) a dummy
    hash is checked anyway, so both answers take the same time."""
    target = stored or _dummy_hash()
    try:
        prefix, n, r, p, salt, digest = target.split("$")
        if prefix != _PREFIX:
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p), len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected) and stored is not None


def needs_rehash(stored: str) -> bool:
    return not stored.startswith(f"{_PREFIX}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$")
