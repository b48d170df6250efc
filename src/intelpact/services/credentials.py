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
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError

_HASHER = PasswordHasher()
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


class LoginThrottle:
    """``limit`` failures within ``window`` seconds lock a key for ``lockout`` seconds.

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

    def check(self, key: str, now: float) -> float | None:
        """Seconds to wait while ``key`` is locked, else None."""
        with self._lock:
            entry = self._keys.get(key)
            if entry is None or entry.locked_until <= now:
                return None
            return entry.locked_until - now

    def failure(self, key: str, now: float) -> None:
        with self._lock:
            if len(self._keys) >= self.max_keys and key not in self._keys:
                self._evict(now)
            entry = self._keys.setdefault(key, _Key(deque()))
            entry.failures.append(now)
            while entry.failures and entry.failures[0] <= now - self.window:
                entry.failures.popleft()
            if len(entry.failures) >= self.limit:
                entry.locked_until = now + self.lockout
                entry.failures.clear()

    def success(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)

    def _evict(self, now: float) -> None:
        stale = [k for k, e in self._keys.items()
                 if e.locked_until <= now and (not e.failures or
                                               e.failures[-1] <= now - self.window)]
        for k in stale:
            del self._keys[k]
        if len(self._keys) < self.max_keys:
            return
        # Still full: free a tenth of the table at once (so this sort is rare).

        def keep_longest(item: tuple[str, _Key]) -> tuple[bool, float]:
            e = item[1]
            locked = e.locked_until > now
            return locked, e.locked_until if locked else (e.failures[-1] if e.failures else 0.0)

        drop = len(self._keys) - self.max_keys + max(1, self.max_keys // 10)
        for k, _ in sorted(self._keys.items(), key=keep_longest)[:drop]:
            del self._keys[k]
