"""Passwords, tokens and the login throttle. Time is passed in; nothing sleeps."""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher

from intelpact.services.credentials import (
    TOKEN_PREFIX,
    LoginThrottle,
    hash_password,
    needs_rehash,
    new_token,
    same,
    token_digest,
    verify_password,
)

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module", autouse=True)
def _real_hasher(real_password_hashes: None) -> None:
    """These tests are of the node's own hasher (argon2-cffi's defaults), not of the
    cheap one the other tests hash with (tests/conftest.py)."""


@pytest.fixture(scope="module")
def hashed() -> str:
    return hash_password(PASSWORD)


# -- passwords ---------------------------------------------------------------------------

def test_hash_is_argon2id_and_salted(hashed: str) -> None:
    assert hashed.startswith("$argon2id$")
    assert PASSWORD not in hashed
    assert hash_password(PASSWORD) != hashed  # a fresh salt every time


def test_verify_right_and_wrong(hashed: str) -> None:
    assert verify_password(hashed, PASSWORD) is True
    assert verify_password(hashed, PASSWORD + " ") is False
    assert verify_password(hashed, "") is False


@pytest.mark.parametrize("bad", [
    "", "x", "$argon2id$", "plaintext-password", "$2b$12$abcdefghijklmnopqrstuv",
    "$argon2id$v=19$m=65536,t=3,p=4$é$é",           # not ASCII: argon2-cffi raises
    "$argon2id$v=19$m=999999999999,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
])
def test_verify_malformed_hash_is_false(bad: str) -> None:
    assert verify_password(bad, PASSWORD) is False


def test_verify_damaged_hashes_are_false(hashed: str) -> None:
    for bad in (hashed[:-4], hashed + "é", hashed.replace("argon2id", "argon2d"),
                hashed.replace("$v=19$", "$v=99$")):
        assert verify_password(bad, PASSWORD) is False


@pytest.mark.parametrize("password", ["\ud800", "pass\x00word" + "é" * 5000])
def test_verify_never_raises_on_odd_passwords(hashed: str, password: str) -> None:
    assert verify_password(hashed, password) is False


def test_needs_rehash(hashed: str) -> None:
    assert needs_rehash(hashed) is False
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    assert verify_password(weak, PASSWORD)  # still verifies...
    assert needs_rehash(weak) is True       # ...but is due for a stronger hash
    assert needs_rehash("not a hash") is True


# -- tokens ------------------------------------------------------------------------------

def test_new_token_format_and_uniqueness() -> None:
    tokens = {new_token() for _ in range(500)}
    assert len(tokens) == 500
    for t in tokens:
        assert t.startswith(TOKEN_PREFIX)
        assert re.fullmatch(r"ipt_[A-Za-z0-9_-]{43}", t), t  # 32 random bytes, base64url


def test_token_digest() -> None:
    t = new_token()
    d = token_digest(t)
    assert re.fullmatch(r"[0-9a-f]{64}", d)
    assert token_digest(t) == d
    assert token_digest(t + "x") != d
    assert t not in d
    # known vector: SHA-256 of the UTF-8 bytes
    assert token_digest("abc") == \
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    token_digest("\ud800")  # a lone surrogate is hashed, not an exception


def test_same() -> None:
    assert same("abc", "abc")
    assert not same("abc", "abd")
    assert not same("abc", "ab")
    assert not same("", "a")
    assert same("", "")
    assert same("極秘", "極秘")
    assert not same("\ud800", "\ud801")


# -- the throttle --------------------------------------------------------------------------

def fail(t: LoginThrottle, key: str, times: int, now: float, step: float = 1.0) -> float:
    for i in range(times):
        t.failure(key, now + i * step)
    return now + (times - 1) * step


def test_locks_after_limit_failures_within_window() -> None:
    t = LoginThrottle(limit=5, window=300, lockout=120)
    last = fail(t, "name:a", 4, 1000.0)
    assert t.check("name:a", last) is None  # four are not enough
    t.failure("name:a", last + 1)
    wait = t.check("name:a", last + 1)
    assert wait == pytest.approx(120)
    assert t.check("name:a", last + 61) == pytest.approx(60)


def test_unlocks_after_lockout_and_starts_afresh() -> None:
    t = LoginThrottle(limit=5, window=300, lockout=120)
    last = fail(t, "k", 5, 0.0)
    assert t.check("k", last + 119.9) is not None
    assert t.check("k", last + 120) is None
    # the failures that caused the lock are forgotten: one more does not relock
    t.failure("k", last + 121)
    assert t.check("k", last + 121) is None
    fail(t, "k", 4, last + 122)
    assert t.check("k", last + 126) is not None


def test_sliding_window_forgets_old_failures() -> None:
    t = LoginThrottle(limit=5, window=300, lockout=120)
    fail(t, "k", 4, 0.0)            # at 0, 1, 2, 3
    t.failure("k", 300.5)           # 0 has left the window: 1, 2, 3, 300.5
    assert t.check("k", 300.5) is None
    t.failure("k", 301.5)           # 1 has left too: 2, 3, 300.5, 301.5
    assert t.check("k", 301.5) is None
    t.failure("k", 302.0)           # 2 is exactly a window old: gone
    assert t.check("k", 302.0) is None
    t.failure("k", 302.5)           # 3, 300.5, 301.5, 302, 302.5: five in the window
    assert t.check("k", 302.5) is not None


def test_slow_guessing_never_locks() -> None:
    # one failure every 76 s: never five inside 300 s
    t = LoginThrottle(limit=5, window=300, lockout=120)
    for i in range(100):
        t.failure("k", i * 76.0)
        assert t.check("k", i * 76.0) is None


def test_success_resets() -> None:
    t = LoginThrottle(limit=5, window=300, lockout=120)
    fail(t, "k", 4, 0.0)
    t.success("k")
    fail(t, "k", 4, 10.0)
    assert t.check("k", 14.0) is None
    t.success("never-seen")  # harmless


def test_keys_are_independent() -> None:
    t = LoginThrottle(limit=3, window=60, lockout=60)
    fail(t, "name:a", 3, 0.0)
    assert t.check("name:a", 3.0) is not None
    assert t.check("name:b", 3.0) is None
    assert t.check("client:127.0.0.1", 3.0) is None
    fail(t, "name:b", 2, 3.0)
    assert t.check("name:b", 5.0) is None
    t.success("name:b")
    assert t.check("name:a", 5.0) is not None


def test_max_keys_evicts_stale_keys_first() -> None:
    t = LoginThrottle(limit=3, window=60, lockout=600, max_keys=3)
    fail(t, "locked", 3, 0.0)        # locked until 602
    t.failure("old", 0.0)            # stale after 60 s
    t.failure("fresh", 100.0)
    t.failure("new", 101.0)          # full: "old" is stale and goes
    assert set(t._keys) == {"locked", "fresh", "new"}
    assert t.check("locked", 101.0) is not None


def test_max_keys_bounds_memory_when_nothing_is_stale() -> None:
    t = LoginThrottle(limit=3, window=600, lockout=600, max_keys=100)
    fail(t, "locked", 3, 0.0)
    for i in range(1000):            # a flood of fresh keys inside the window
        t.failure(f"flood-{i}", 1.0 + i / 1000)
        assert len(t._keys) <= 100
    # unlocked keys go before locks: the lock survives the flood
    assert t.check("locked", 2.0) is not None
    assert "flood-999" in t._keys


def test_max_keys_when_everything_is_locked() -> None:
    t = LoginThrottle(limit=1, window=600, lockout=600, max_keys=10)
    for i in range(50):
        t.failure(f"k{i}", float(i))
        assert len(t._keys) <= 10
    # the locks that end soonest went first; the newest remain
    assert t.check("k49", 50.0) is not None
    assert t.check("k0", 50.0) is None


def test_attempts_in_flight_count_with_the_failures() -> None:
    t = LoginThrottle(limit=5, window=300, lockout=120)
    t.failure("k", 0.0)
    assert [t.begin("k", 1.0) for _ in range(4)] == [None] * 4  # one failed, four in flight
    assert t.begin("k", 1.0, patience=0) == 1.0  # a sixth waits for one of them: "later"
    t.end("k", 2.0, failed=False)  # one ended, not a failure (its check was not a guess)
    assert t.begin("k", 2.0, patience=0) is None
    for _ in range(4):
        t.end("k", 3.0, failed=True)
    assert t.begin("k", 3.0) == pytest.approx(120)  # locked: refused, not waiting
    t.end("k", 3.0, failed=True)  # the last one in flight ends after the lock
    assert t.check("k", 4.0) == pytest.approx(119)
