"""People of a node: adding, revoking, passwords, tokens and authentication.

A person's party, clearance, caveats and communities are checked against the
agreement when they are added (through the model's Policy.person), so a stored
person always makes sense to the decision code. Passwords are kept as argon2
hashes, tokens only as SHA-256 digests. Each change (a person added or revoked, a
password set, tokens issued or revoked) is stored with its audit event in one
transaction: none is done unrecorded. Failed logins are throttled per name
and per client address, in each process and for the whole node (the store counts
them: several workers, or a restart, give no more guesses), and unknown bearer tokens
per client address. Every failure
is audited; once a name or client is locked out, its refusals are recorded at most
once every ``RECORD_EVERY`` seconds, each record saying how many refusals it stands
for (``refusals``): a flood of attempts cannot fill the audit log.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import threading
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import IntelpactError
from ..model import Person, Policy
from ..store.base import PersonRecord, Store, timestamp, utc_now
from .audit import AuditLog, Sampled, operator
from .credentials import LoginThrottle, hash_password, new_token, token_digest, verify_password

_CACHE_SECONDS = 60.0
MIN_PASSWORD = 12
MAX_NAME = 64  # characters in a person's name
READING_ROLES = ("analyst", "publisher", "security-officer")  # an operator alone reads none
NO_READING_ROLE = "reading intelligence needs the analyst, publisher or security-officer role"
RECORD_EVERY = 10.0  # seconds between audited refusals of one locked-out name or client
MAX_REFUSING = 10_000  # locked-out keys whose refusals are being counted, at most


@functools.cache
def _dummy_hash() -> str:
    """A hash no password matches: checked when there is nothing real to check, so a
    missing, revoked or password-less person costs the same time as a wrong password."""
    return hash_password(secrets.token_urlsafe(32))


def _check_name(name: str) -> str:
    name = name.strip()
    bad = [c for c in name if c in ":/\\" or unicodedata.category(c)[0] == "C"
           or unicodedata.category(c) in ("Zl", "Zp")]
    if not name or len(name) > MAX_NAME or bad:
        raise PeopleError(f"invalid name {name!r}",
                          hint="use 1-64 characters without ':', '/', '\\' or control "
                          "or format characters")
    return name


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise PeopleError("password too short", hint=f"use at least {MIN_PASSWORD} characters")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise PeopleError("password is not valid Unicode text",
                          hint="give the password as UTF-8 text") from None


class PeopleError(IntelpactError):
    """A person could not be added, found or changed."""


class AuthError(IntelpactError):
    """Authentication failed. The message never says which part was wrong, unless
    ``signed_in``: the secret checked, and what was refused is the person's record (it may
    be shown to them)."""

    def __init__(self, message: str = "authentication failed", *,
                 retry_after: float | None = None, signed_in: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.signed_in = signed_in


@dataclass(frozen=True)
class Principal:
    """An authenticated person: the model's Person plus their roles."""

    person: Person
    record: PersonRecord

    @property
    def name(self) -> str:
        return self.person.name

    def has_role(self, role: str) -> bool:
        return role in self.record.roles

    @property
    def reads(self) -> bool:
        """Whether the person may read intelligence at all (docs/node.md: an operator
        alone reads none)."""
        return any(self.has_role(r) for r in READING_ROLES)


def refused_for_node(policy: Policy, audit: AuditLog, person: Person, act: str,
                     **fields: Any) -> str | None:
    """Why ``person`` may not ``act`` in the node's name (``Policy.acts_for_node``), the
    refusal audited as a ``deny`` with ``fields``; None when they may."""
    decision = policy.acts_for_node(person, act)
    if decision.allowed:
        return None
    audit.record(audit.event("deny", person=person, via=act, reason=decision.reason,
                             **fields))
    return decision.reason


class People:
    def __init__(self, policy: Policy, store: Store, audit: AuditLog,
                 throttle: LoginThrottle | None = None,
                 client_throttle: LoginThrottle | None = None) -> None:
        self.policy = policy
        self.store = store
        self.audit = audit
        # Per name: 5 failures in 5 minutes lock that name. Per client address: a
        # higher limit (analysts may share a proxy, and one attacker must not lock
        # them all out), and a success does not reset it (no spraying between
        # guesses with one valid account).
        self.throttle = throttle or LoginThrottle()
        self.client_throttle = client_throttle or throttle or LoginThrottle(limit=30)
        # HMAC(name, password) -> (when, name, the password hash it was checked against)
        self._verified: dict[str, tuple[float, str, str]] = {}
        self._cache_secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        # the refusals of a locked-out name or client: at most one record every
        # RECORD_EVERY seconds, each saying how many it stands for
        self._refused = Sampled(audit, "login-failure", every=RECORD_EVERY, most=MAX_REFUSING)

    def add(self, name: str, *, party: str, clearance: str, caveats: Iterable[str] = (),
            communities: Iterable[str] = (), roles: Iterable[str] = ("analyst",),
            password: str | None = None) -> PersonRecord:
        name = _check_name(name)
        caveats, communities, roles = tuple(caveats), tuple(communities), tuple(roles)
        try:
            person = self.policy.person(name, party, clearance, caveats=caveats,
                                        communities=communities, roles=roles)
        except ValueError as exc:
            raise PeopleError(str(exc)) from None
        if password is not None:
            _check_password(password)
        record = PersonRecord(name, party, person.clearance, tuple(sorted(set(caveats))),
                              tuple(sorted(set(communities))), tuple(sorted(set(roles))),
                              hash_password(password) if password else None,
                              timestamp(utc_now()))
        self.store.add_person(record, [self.audit.event(
            "person-add", name=name, actor=operator(), nationality=party,
            clearance=record.clearance, caveats=list(record.caveats),
            communities=list(record.communities), roles=list(record.roles))])
        return record

    def get(self, name: str) -> PersonRecord:
        record = self.store.person(name)
        if record is None:
            raise PeopleError(f"no person named {name!r}",
                              hint="list people with: intelpact user list DIR")
        return record

    def principal(self, record: PersonRecord) -> Principal:
        """The person a stored record makes under the agreement in force. Refused
        (:class:`PeopleError`) when revoked, or when the record no longer holds: an
        amendment dropped a level, caveat or community it names."""
        if record.revoked:
            raise PeopleError(f"{record.name} was revoked on {record.revoked}")
        try:
            person = self.policy.person(record.name, record.party, record.clearance,
                                        caveats=record.caveats,
                                        communities=record.communities, roles=record.roles)
        except ValueError as exc:
            agreement = self.policy.agreement
            raise PeopleError(f"{record.name}'s record does not hold under agreement "
                              f"{agreement.id} version {agreement.version}: {exc}",
                              hint="a security officer revokes it and adds the person again "
                              "under the agreement in force") from None
        return Principal(person, record)

    def _signed_in(self, record: PersonRecord, client: str) -> Principal:
        """``principal`` for a login whose secret checked: a record that does not hold is
        a login refused (with its reason, which the person may see), and audited."""
        try:
            return self.principal(record)
        except PeopleError as exc:
            self._failed(record.name, client, exc.message)
            raise AuthError(exc.message, signed_in=True) from None

    def as_person(self, name: str) -> Principal:
        """Act as a named person (the CLI, run by the node's operator)."""
        return self.principal(self.get(name))

    def revoke(self, name: str) -> None:
        self.get(name)
        if not self.store.revoke_person(name, timestamp(utc_now()), [self.audit.event(
                "person-revoke", name=name, actor=operator())]):
            raise PeopleError(f"{name} is already revoked")
        self._forget(name)

    def set_password(self, name: str, password: str) -> None:
        """Replace a person's password; logins with the old one stop at once."""
        record = self.get(name)
        if record.revoked:
            raise PeopleError(f"{name} is revoked: the password cannot be changed")
        _check_password(password)
        self.store.set_password(name, hash_password(password), [self.audit.event(
            "password-set", name=name, actor=operator())])
        self._forget(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            self._verified = {k: v for k, v in self._verified.items() if v[1] != name}

    def issue_token(self, name: str, label: str = "") -> str:
        record = self.get(name)
        if record.revoked:
            raise PeopleError(f"{name} is revoked: no tokens can be issued")
        token = new_token()
        self.store.add_token(token_digest(token), name, label, timestamp(utc_now()),
                             [self.audit.event("token-issue", name=name, actor=operator(),
                                               token=token_digest(token)[:16])])
        return token

    def revoke_tokens(self, name: str, token: str | None = None) -> int:
        self.get(name)
        with self._lock:
            self._verified.clear()
        return self.store.revoke_tokens(
            name, timestamp(utc_now()), token_digest(token) if token else None,
            lambda count: [self.audit.event(
                "token-revoke", name=name, actor=operator(), count=count,
                token=token_digest(token)[:16] if token else None)])

    # -- authentication ------------------------------------------------------------------
    def login(self, name: str, password: str, client: str = "") -> Principal:
        """Check a password (HTTP Basic). Throttled; raises :class:`AuthError`."""
        now = time.monotonic()
        if len(name) > MAX_NAME:  # nobody's: keyed and audited by its start, or each
            name = name[:MAX_NAME] + "…"  # wrong guess would keep all of it in memory
        keys = ((self.throttle, f"name:{name}"), (self.client_throttle, f"client:{client}"))
        for throttle, key in keys:
            self._throttled(throttle.check(key, now), key, now, name, client)
        cache_key = self._cache_key(name, password)
        with self._lock:
            hit = self._verified.get(cache_key)
        if hit is not None and now - hit[0] < _CACHE_SECONDS:
            # A cached check counts only against the same stored hash: a password changed
            # anywhere (this process or another) or a revocation ends it at once. Never
            # waits: answered on the event loop (TAXII's quick reads).
            record = self._record(name)
            if record is not None and not record.revoked and record.password_hash == hit[2]:
                return self._signed_in(record, client)
        # A password to check. The node's count of failures comes first (every process
        # of the node, and over a restart: `serve --workers N` is not N times the
        # guesses); then each throttle counts the attempt in flight until it ends
        # (begin, end). Checked above and counted only after the slow hash, guesses made
        # at once all passed the check before the first was counted.
        for _, key in keys:
            self._throttled(self._node_wait(key), key, now, name, client)
        begun: list[tuple[LoginThrottle, str]] = []
        failed = False
        try:
            for throttle, key in keys:
                self._throttled(throttle.begin(key, now), key, now, name, client)
                begun.append((throttle, key))
            try:
                return self._verify(name, password, client, now, cache_key)
            except AuthError as exc:
                failed = not exc.signed_in  # the password checked: no guess
                raise
        finally:
            for throttle, key in reversed(begun):
                throttle.end(key, now, failed=failed)
                if failed:
                    self._node_failure(throttle, key)

    def _node_wait(self, key: str) -> float | None:
        """Seconds ``key`` stays locked by the node's count of failures, else None."""
        left = self.store.login_lock(token_digest(key))[0] - time.time()
        return left if left > 0 else None

    def _node_failure(self, throttle: LoginThrottle, key: str) -> None:
        """Count a failure against ``key`` in the node's count, by ``throttle``'s rule."""
        self.store.login_failed(token_digest(key), time.time(), throttle.window,
                                throttle.limit, throttle.lockout)

    def _throttled(self, wait: float | None, key: str, now: float, name: str,
                   client: str) -> None:
        """Refuse the login (audited, sampled) if ``key`` is throttled (``wait``)."""
        if wait is not None:
            self._refuse(key, now, name=name, client=client or None,
                         reason="throttled: too many failed logins")
            raise AuthError("too many failed logins; try again later", retry_after=wait)

    def _record(self, name: str) -> PersonRecord | None:
        # A name with a NUL is nobody's (no name added holds one): not looked up, since
        # PostgreSQL's text cannot hold it and its store refuses the look-up (StoreError),
        # which would end the login before the failure is counted and audited.
        return self.store.person(name) if "\x00" not in name else None

    def _verify(self, name: str, password: str, client: str, now: float,
                cache_key: str) -> Principal:
        """``login``'s check of the password against the stored hash: AuthError when it
        is wrong (the failure is counted by the caller, as the attempt ends)."""
        record = self._record(name)
        ok = False
        if record is not None and record.password_hash is not None and not record.revoked:
            ok = verify_password(record.password_hash, password)
        else:
            verify_password(_dummy_hash(), password)  # spend the same time as a real check
        if not ok or record is None or record.password_hash is None:
            self._failed(name, client, "wrong name or password, or the person is revoked")
            raise AuthError()
        self.throttle.success(f"name:{name}")
        if self.store.login_lock(token_digest(f"name:{name}")) != (0.0, 0):
            self.store.login_cleared(token_digest(f"name:{name}"))
        with self._lock:
            self._verified[cache_key] = (now, name, record.password_hash)
        return self._signed_in(record, client)

    def malformed(self, client: str = "") -> AuthError:
        """A failed login whose credentials are not a name and a password at all (HTTP
        Basic not base64, not UTF-8, no colon): counted against the client's address
        and audited, as a wrong password is. Returns the error to raise."""
        now = time.monotonic()
        key = f"client:{client}"
        wait = self.client_throttle.check(key, now) or self._node_wait(key)
        if wait is not None:
            self._refuse(key, now, client=client or None,
                         reason="throttled: too many failed logins")
            return AuthError("too many failed logins; try again later", retry_after=wait)
        self.client_throttle.failure(key, now)
        self._node_failure(self.client_throttle, key)
        self.audit.record_served(self.audit.event(
            "login-failure", client=client or None,
            reason="malformed credentials: not a name and a password"))
        return AuthError()

    def verified(self, name: str, password: str) -> bool:
        """Whether ``login`` with this password would need no password hash: it was
        verified in this process within the cache's time (the stored hash it was verified
        against, and the throttles, are still checked by ``login``)."""
        with self._lock:
            hit = self._verified.get(self._cache_key(name, password))
        return hit is not None and time.monotonic() - hit[0] < _CACHE_SECONDS

    def _cache_key(self, name: str, password: str) -> str:
        return hmac.new(self._cache_secret, f"{name}\0{password}".encode(
            "utf-8", "surrogatepass"), hashlib.sha256).hexdigest()

    def login_token(self, token: str, client: str = "") -> Principal:
        """Check a bearer token; raises :class:`AuthError`. Unknown or revoked tokens
        are throttled per client address, apart from passwords (a script with a revoked
        token must not lock out the people who share its address)."""
        now = time.monotonic()
        key = f"token:{client}"
        wait = self.client_throttle.check(key, now)
        if wait is not None:
            self._refuse(key, now, actor="bearer-token", client=client or None,
                         token=token_digest(token)[:16],
                         reason="throttled: too many unknown tokens")
            raise AuthError("too many failed logins; try again later", retry_after=wait)
        name = self.store.token_owner(token_digest(token))
        record = self.store.person(name) if name is not None else None
        if name is None or record is None or record.revoked:
            self.client_throttle.failure(key, now)
            self.audit.record_served(self.audit.event(
                "login-failure", actor="bearer-token", client=client or None,
                token=token_digest(token)[:16], reason="unknown or revoked token"))
            raise AuthError()
        return self._signed_in(record, client)

    def _failed(self, name: str, client: str, reason: str) -> None:
        self.audit.record_served(self.audit.event("login-failure", name=name, client=client or None,
                                           reason=reason))

    def _refuse(self, key: str, now: float, **fields: Any) -> None:
        """Audit a login refused because ``key`` is locked out (``fields``: the
        login-failure event's), sampled (:class:`Sampled`): the sum of the records'
        ``refusals`` is every refusal."""
        self._refused.record(key, now, **fields)

    def flush_refusals(self) -> None:
        """Record every count of refusals not recorded yet (the node is closing)."""
        self._refused.flush()
