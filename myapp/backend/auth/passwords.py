"""Password hashing with Argon2id (argon2-cffi), reading the scrypt hashes of earlier versions.

A stored hash carries its own parameters and salt (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`),
so the cost can be raised later: a hash made with other parameters, or an old
`scrypt$n$r$p$salt$hash`, verifies as before and is replaced at the account's next sign-in
(routes/auth.py asks needs_rehash after a successful check).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# OWASP's Password Storage Cheat Sheet (2025): Argon2id with at least 19 MiB of memory, 2
# iterations and 1 lane. One lane keeps a burst of sign-ins from taking both cores of a small
# machine; about 30 ms and 19 MiB per hash here.
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
SALT_BYTES = 16
HASH_BYTES = 32

_HASHER = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_KIB,
    parallelism=ARGON2_PARALLELISM,
    hash_len=HASH_BYTES,
    salt_len=SALT_BYTES,
    type=Type.ID,
)

# Hashes written before Argon2id: scrypt, verified so their accounts can still sign in (and be
# upgraded). Nothing new is written in this form.
_SCRYPT_PREFIX = "scrypt"
_SCRYPT_MAXMEM_FLOOR = 64 * 1024 * 1024


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _prefix, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        n_, r_, p_ = int(n), int(r), int(p)
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=n_,
            r=r_,
            p=p_,
            maxmem=max(_SCRYPT_MAXMEM_FLOOR, 128 * n_ * r_ * 2),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def verify_password(password: str, stored: str | None) -> bool:
    """True if `password` matches `stored`. With no stored hash (an unknown account) a dummy
    Argon2id hash is checked anyway, so both answers take the same time."""
    if stored is not None and stored.startswith(f"{_SCRYPT_PREFIX}$"):
        return _verify_scrypt(password, stored)
    target = stored or _dummy_hash()
    try:
        ok = _HASHER.verify(target, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return ok and stored is not None


def needs_rehash(stored: str) -> bool:
    """True for a scrypt hash or an Argon2 hash made with other parameters than today's."""
    if not stored.startswith("$argon2"):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True
