"""Console sessions: who is logged in, for how long, and the CSRF token of each.

A session is a random 256-bit token in a cookie (HttpOnly, SameSite=Strict, Secure
when the console is served over TLS), mapped in this process to the person's name,
their CSRF token and when they were last seen. A session idle for longer than the
timeout is gone; logging out ends it at once. Only the SHA-256 of a session token is
kept, so a memory dump does not hand out live sessions. Every request re-reads the
person, so a revoked person is logged out at their next click.

Forms carry the session's CSRF token; a form posted without it, or with another, is
refused. The log-in form, before any session exists, uses a pre-session token bound
to a cookie of its own (the double-submit pattern).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "intelpact_session"
LOGIN_COOKIE = "intelpact_login"
IDLE_SECONDS = 15 * 60
MAX_SESSIONS = 10_000


@dataclass
class Session:
    name: str
    csrf: str
    created: float
    seen: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Sessions:
    """The live sessions of this process. ``clock`` is for tests."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], float] | None = None) -> None:
        self.idle_seconds = idle_seconds
        self._clock = clock or time.monotonic
        self._by_digest: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, name: str) -> tuple[str, Session]:
        """A new session for ``name``: (cookie value, session)."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(name, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._expire(now)
            if len(self._by_digest) >= MAX_SESSIONS:  # the oldest idle goes first
                oldest = min(self._by_digest, key=lambda d: self._by_digest[d].seen)
                del self._by_digest[oldest]
            self._by_digest[_digest(token)] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie value, touched; None when absent or idle."""
        if not token or len(token) > 200:
            return None
        now = self._clock()
        with self._lock:
            session = self._by_digest.get(_digest(token))
            if session is None:
                return None
            if now - session.seen > self.idle_seconds:
                del self._by_digest[_digest(token)]
                return None
            session.seen = now
            return session

    def end(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._by_digest.pop(_digest(token), None)

    def end_person(self, name: str) -> None:
        """End every session of ``name`` (revoked, or their password changed)."""
        with self._lock:
            self._by_digest = {d: s for d, s in self._by_digest.items() if s.name != name}

    def _expire(self, now: float) -> None:
        idle = [d for d, s in self._by_digest.items() if now - s.seen > self.idle_seconds]
        for d in idle:
            del self._by_digest[d]


def same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a posted CSRF token with the expected one."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))


def new_token() -> str:
    return secrets.token_urlsafe(32)
