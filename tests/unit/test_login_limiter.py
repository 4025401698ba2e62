"""Sign-in throttling: failures per account and per address over a window, on a clock the test
moves, so ten minutes pass in no time."""

from __future__ import annotations

import pytest

from myapp.backend.auth import limiter as limiter_module
from myapp.backend.auth.limiter import (
    LOGIN_FAILURES_PER_ACCOUNT,
    LOGIN_FAILURES_PER_ADDRESS,
    LOGIN_WINDOW_S,
    LoginLimiter,
)
from tests.support.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def limiter(clock: ManualClock) -> LoginLimiter:
    return LoginLimiter(clock=clock)


def fail_times(limiter: LoginLimiter, times: int, username: str, address: str) -> None:
    for _ in range(times):
        limiter.failed(username, address)


def test_an_account_is_held_after_its_failures_until_the_window_passes(limiter, clock):
    fail_times(limiter, LOGIN_FAILURES_PER_ACCOUNT - 1, "ann", "10.0.0.1")
    assert limiter.retry_after("ann", "10.0.0.1") is None
    limiter.failed("ann", "10.0.0.1")
    assert limiter.retry_after("ann", "10.0.0.1") == LOGIN_WINDOW_S
    # From another address too: the limit stops guessing one account's password.
    assert limiter.retry_after("ann", "10.9.9.9") == LOGIN_WINDOW_S
    assert limiter.retry_after("bob", "10.9.9.9") is None

    clock.advance(LOGIN_WINDOW_S - 90.5)
    assert limiter.retry_after("ann", "10.0.0.1") == 91  # rounded up, never 0
    clock.advance(90.5)
    assert limiter.retry_after("ann", "10.0.0.1") is None


def test_the_wait_ends_when_the_oldest_counted_failure_leaves_the_window(limiter, clock):
    limiter.failed("ann", "a")
    clock.advance(100)
    fail_times(limiter, LOGIN_FAILURES_PER_ACCOUNT - 1, "ann", "a")
    assert limiter.retry_after("ann", "a") == LOGIN_WINDOW_S - 100
    clock.advance(LOGIN_WINDOW_S - 100)
    # The first failure has aged out; nine remain, one short of the limit.
    assert limiter.retry_after("ann", "a") is None
    limiter.failed("ann", "a")
    assert limiter.retry_after("ann", "a") == 100


def test_an_address_trying_many_accounts_is_held(limiter):
    for i in range(LOGIN_FAILURES_PER_ADDRESS):
        assert limiter.retry_after(f"user{i}", "203.0.113.7") is None
        limiter.failed(f"user{i}", "203.0.113.7")
    assert limiter.retry_after("someone-new", "203.0.113.7") == LOGIN_WINDOW_S
    assert limiter.retry_after("someone-new", "198.51.100.1") is None


def test_a_successful_sign_in_clears_the_accounts_failures_not_the_addresss(limiter):
    fail_times(limiter, LOGIN_FAILURES_PER_ACCOUNT, "ann", "a")
    limiter.succeeded("ann")
    assert limiter.retry_after("ann", "b") is None
    fail_times(limiter, LOGIN_FAILURES_PER_ADDRESS - LOGIN_FAILURES_PER_ACCOUNT, "bob", "a")
    assert limiter.retry_after("carol", "a") == LOGIN_WINDOW_S


def test_memory_stays_bounded_when_many_names_are_tried(limiter, clock, monkeypatch):
    monkeypatch.setattr(limiter_module, "LOGIN_LIMITER_MAX_KEYS", 100)
    for i in range(1000):
        limiter.failed(f"name{i}", f"addr{i}")
    assert len(limiter._failures) <= 100
    # Entries that aged out are pruned first, before live ones are forgotten.
    clock.advance(LOGIN_WINDOW_S)
    limiter.failed("late", "late-address")
    assert len(limiter._failures) == 2
