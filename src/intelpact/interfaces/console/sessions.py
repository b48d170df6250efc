"""Console sessions: who is logged in, for how long, and the CSRF token of each.

A session is a random 256-bit token in a cookie (HttpOnly, SameSite=Strict, Secure
when the console is served over TLS). The node's store keeps, per session, only the
SHA-256 of the token (a copy of the database hands out no live session), the person,
their CSRF token and when the session began and was last seen: every process of
``intelpact serve --workers N`` knows every session. A session idle for longer than the
timeout is never found (the store's look-up tests when it was last seen), and is
deleted at the next log-in; one older than its lifetime (12 hours) is ended however
busy it is; logging out ends it at once, and revoking the person or
changing their password ends all of theirs. ``seen`` is written at most once every
``TOUCH_SECONDS`` per session, not on every click. Every request re-reads the person,
so a revoked person is logged out at their next click.

Forms carry the session's CSRF token; a form posted without it, or with another, is
refused. The log-in form, before any session exists, uses a pre-session token bound
to a cookie of its own (the double-submit pattern).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from ...store.base import SessionRecord, Store, parse_timestamp, timestamp, utc_now

COOKIE = "intelpact_session"
LOGIN_COOKIE = "intelpact_login"
IDLE_SECONDS = 15 * 60
LIFETIME_SECONDS = 12 * 3600  # a working day: then the person logs in again
TOUCH_SECONDS = 30.0


@dataclass
class Session:
    name: str
    csrf: str
    created: str
    seen: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Sessions:
    """The node's console sessions, kept in its store. ``clock`` is for tests."""

    def __init__(self, store: Store, idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], dt.datetime] | None = None,
                 lifetime_seconds: float = LIFETIME_SECONDS) -> None:
        self.store = store
        self.idle_seconds = idle_seconds
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock or utc_now

    def _idle_before(self, now: dt.datetime) -> str:
        return timestamp(now - dt.timedelta(seconds=self.idle_seconds))

    def start(self, name: str) -> tuple[str, Session]:
        """A new session for ``name``: (cookie value, session). Idle sessions go."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        when = timestamp(now)
        record = SessionRecord(_digest(token), name, secrets.token_urlsafe(32), when, when)
        self.store.add_session(record, idle_before=self._idle_before(now))
        return token, Session(name, record.csrf, when, when)

    def get(self, token: str | None) -> Session | None:
        """The live session of a cookie value; None when absent, ended, idle, or older
        than its lifetime (a cookie copied and kept busy lasts no longer: that session
        is ended). Its ``seen`` is written when the last write is ``TOUCH_SECONDS`` old
        (or a quarter of the idle timeout, if shorter)."""
        if not token or len(token) > 200:
            return None
        now = self._clock()
        digest = _digest(token)
        record = self.store.session(digest, idle_before=self._idle_before(now))
        if record is None:
            return None
        if (now - parse_timestamp(record.created)).total_seconds() > self.lifetime_seconds:
            self.store.end_session(digest)
            return None
        every = min(TOUCH_SECONDS, self.idle_seconds / 4)
        if (now - parse_timestamp(record.seen)).total_seconds() >= every:
            self.store.touch_session(digest, timestamp(now))
        return Session(record.name, record.csrf, record.created, record.seen)

    def end(self, token: str | None) -> None:
        if token and len(token) <= 200:
            self.store.end_session(_digest(token))

    def end_person(self, name: str) -> None:
        """End every session of ``name`` (revoked, or their password changed)."""
        self.store.end_sessions(name)


def same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a posted CSRF token with the expected one."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                               expected.encode("utf-8", "surrogatepass"))


def new_token() -> str:
    return secrets.token_urlsafe(32)
