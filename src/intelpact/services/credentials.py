"""Passwords, API tokens and login throttling.

Passwords are argon2id hashes (argon2-cffi's defaults). Tokens are random,
shown once, and kept only as SHA-256 digests. Failed logins are counted per
key (a name, a client address) in a sliding window; past the limit the key is
locked for a while.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

_HASHER = PasswordHasher()
# How long LoginThrottle.begin waits for an attempt in flight to end (a password hash
# takes well under a second) before it answers "try again"
BEGIN_PATIENCE = 30.0
TOKEN_PREFIX = "ipt_"  # noqa: S105 - a prefix, not a secret


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``. Raises UnicodeEncodeError for lone surrogates."""
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when ``password`` matches; False on any mismatch or malformed hash. Never raises.

    argon2-cffi raises UnicodeEncodeError (a ValueError) for a hash that is not
    ASCII or a password holding a lone surrogate; both are a plain mismatch here."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, ValueError, TypeError):  # InvalidHashError is a ValueError
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash uses older parameters than the current ones, or is malformed."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except (ValueError, TypeError):  # InvalidHashError is a ValueError
        return True


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"),
                               b.encode("utf-8", "surrogatepass"))


@dataclass
class _Key:
    failures: deque[float]
    locked_until: float = 0.0
    trying: int = 0  # attempts begun and not ended (LoginThrottle.begin, end)


class LoginThrottle:
    """``limit`` failures within ``window`` seconds lock a key for ``lockout`` seconds.

    A password is checked between :meth:`begin` and :meth:`end`: the attempts in flight
    count with the failures, so guesses made at once are bounded as guesses made one
    after another are (checked, then counted after the slow hash, twenty at once all
    passed the check before the first was counted).

    At most ``max_keys`` keys are tracked. When a new key arrives at the limit, keys
    with nothing left to remember go first; if that is not enough, the unlocked keys
    whose last failure is oldest, and only then the locks that end soonest, so a flood
    of new keys cannot grow memory without bound."""

    def __init__(self, limit: int = 5, window: float = 300.0, lockout: float = 300.0,
                 max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.lockout = lockout
        self.max_keys = max_keys
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)  # an attempt in flight ended
        self.waiting = 0  # attempts waiting in begin for one in flight to end

    def check(self, key: str, now: float) -> float | None:
        """Seconds to wait while ``key`` is locked, else None."""
        with self._lock:
            entry = self._keys.get(key)
            if entry is None or entry.locked_until <= now:
                return None
            return entry.locked_until - now

    def begin(self, key: str, now: float, patience: float = BEGIN_PATIENCE) -> float | None:
        """Begin an attempt on ``key`` (a password to check): None when it may go on,
        counted in flight until :meth:`end`; else the seconds to wait while ``key`` is
        locked. While the failures in the window and the attempts in flight reach the
        limit, it waits for one of those attempts to end (failed, it may lock the key;
        succeeded, it clears it), up to ``patience`` seconds (then: try again in a
        second)."""
        started, base = time.monotonic(), now
        with self._lock:
            while True:
                entry = self._keys.get(key)
                if entry is not None and entry.locked_until > now:
                    return entry.locked_until - now
                if entry is None or self._recent(entry, now) + entry.trying < self.limit:
                    self._entry(key, now).trying += 1
                    return None
                left = patience - (time.monotonic() - started)
                if left <= 0:
                    return 1.0
                self.waiting += 1
                try:
                    self._ended.wait(left)
                finally:
                    self.waiting -= 1
                now = base + (time.monotonic() - started)  # the caller's clock, on

    def end(self, key: str, now: float, *, failed: bool) -> None:
        """End an attempt :meth:`begin` let go on: a failure is counted (as
        :meth:`failure`) as it leaves the attempts in flight, in one step."""
        with self._lock:
            entry = self._keys.get(key)
            if entry is not None and entry.trying:
                entry.trying -= 1
            if failed:
                self._failure(key, now)
            elif entry is not None and not entry.trying and not entry.failures \
                    and entry.locked_until <= now:
                del self._keys[key]
            self._ended.notify_all()

    def failure(self, key: str, now: float) -> None:
        with self._lock:
            self._failure(key, now)

    def _failure(self, key: str, now: float) -> None:
        entry = self._entry(key, now)
        entry.failures.append(now)
        self._recent(entry, now)
        if len(entry.failures) >= self.limit:
            entry.locked_until = now + self.lockout
            entry.failures.clear()

    def _entry(self, key: str, now: float) -> _Key:
        if len(self._keys) >= self.max_keys and key not in self._keys:
            self._evict(now)
        return self._keys.setdefault(key, _Key(deque()))

    def _recent(self, entry: _Key, now: float) -> int:
        """How many of ``entry``'s failures are within the window (older ones dropped)."""
        while entry.failures and entry.failures[0] <= now - self.window:
            entry.failures.popleft()
        return len(entry.failures)

    def success(self, key: str) -> None:
        """A password checked right: ``key``'s failures and lock are forgotten (its
        attempts still in flight stay counted until they end)."""
        with self._lock:
            entry = self._keys.get(key)
            if entry is not None and entry.trying:
                entry.failures.clear()
                entry.locked_until = 0.0
            else:
                self._keys.pop(key, None)
            self._ended.notify_all()

    def _evict(self, now: float) -> None:
        stale = [k for k, e in self._keys.items()
                 if not e.trying and e.locked_until <= now
                 and (not e.failures or e.failures[-1] <= now - self.window)]
        for k in stale:
            del self._keys[k]
        if len(self._keys) < self.max_keys:
            return
        # Still full: free a tenth of the table at once (so this sort is rare).

        def keep_longest(item: tuple[str, _Key]) -> tuple[bool, bool, float]:
            e = item[1]  # those with attempts in flight last of all: their count is a bound
            locked = e.locked_until > now
            return bool(e.trying), locked, e.locked_until if locked else (
                e.failures[-1] if e.failures else 0.0)

        drop = len(self._keys) - self.max_keys + max(1, self.max_keys // 10)
        for k, _ in sorted(self._keys.items(), key=keep_longest)[:drop]:
            del self._keys[k]
