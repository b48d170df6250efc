"""The audit log: every security act, appended to an RFC 9162 Merkle tree (docs/audit.md).

Three steps, as a transparency log runs them:

1. **Append** (``record``): an event is JSON in canonical form (sorted keys, no spaces,
   UTF-8), the exact bytes of its leaf. Appends from every thread are group-committed:
   one durable transaction for all events waiting, and ``record`` returns only once its
   events are on disk. A read's response waits for its event; an act that changes the
   store (publish, receipt) writes its events in the act's own transaction.
2. **Integrate** (``integrate``): in the background, leaf hashes and the hash of every
   perfect subtree they complete are written beside the events, under the store's write
   lock, so one integrator runs at a time across processes.
3. **Checkpoint**: the node signs the tree's size and root as a C2SP tlog-checkpoint in a
   C2SP signed note with its Ed25519 key, periodically and on demand. Before signing it
   proves, from the stored tree, that the new tree extends the last checkpoint; a node
   never signs two inconsistent checkpoints.

People appear in events only as pseudonyms (``p-`` and 16 hex digits of an HMAC of their
name under a secret of this node), so events can be shown to a partner, with proofs,
without naming anyone; this node's officers resolve them (``audit show``).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import getpass
import hashlib
import hmac
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..crypto.checkpoint import (
    CheckpointError,
    NoteError,
    format_checkpoint,
    parse_checkpoint,
    sign_note,
    verify_note,
)
from ..crypto.eventmacs import EventMacs
from ..crypto.keys import (
    RESTORE,
    KeyFileError,
    key_id,
    node_secret,
    public_key_from_b64,
    public_raw,
)
from ..crypto.merkle import (
    Coord,
    ProofError,
    Tree,
    extend,
    fold,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from ..model import echo
from ..model.decisions import Person
from ..store.base import (
    MAX_INTEGER,
    AuditError,
    AuditEvent,
    AuditFilter,
    AuditRecord,
    Checkpoint,
    CompromiseRecord,
    HeldCheckpoints,
    KeptEvent,
    PartnerCheckpoint,
    Store,
    StoreFull,
    StoreUnavailable,
    event_object_ids,
    filing,
    objects_named,
    timestamp,
    utc_now,
)

log = logging.getLogger("intelpact.audit")
_T = TypeVar("_T")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")  # no sign, no leading zeroes

# 2: an event about a partner's objects carries "seq", its number among the events about
# that originator's objects (docs/audit.md, "Completeness"). Version 1 events have none.
EVENT_VERSION = 2
MAX_NOTE = 10_000  # characters of a note resolving an alert
INTEGRATE_BATCH = 50_000  # events per transaction when integrating on demand
# In the background, a little at a time: a transaction of at most STEP_EVENTS events
# naming at most STEP_REFS objects, then a pause of STEP_PAUSE seconds. Each transaction
# holds the write lock (which every audited read's append waits for) and the integrator
# holds the GIL while it hashes; one long one stalled every read for its length (a GET's
# p99 at 8 clients: 25 ms, against 14 ms in steps; docs/performance.md). A step
# integrates a few thousand events a second at the least, more than reads append.
STEP_EVENTS = 32
STEP_REFS = 2_000
STEP_PAUSE = 0.002
CACHE_NODES = 200_000  # perfect-subtree hashes never change: cached without expiry

# Every kind of event, and what it records (docs/audit.md lists them with their fields).
KINDS = {
    "publish": "a person of this node published objects",
    "receive": "objects arrived from a partner and were stored",
    "release": "objects went to a partner (pushed, or pulled by it)",
    "read": "a person was served objects (with any portions withheld)",
    "deny": "a request was refused by a security decision (with its reason)",
    "refuse": "a partner sent something this node refused",
    "delete": "a person deleted objects",
    "login-failure": "a login failed",
    "person-add": "a person was added", "person-revoke": "a person was revoked",
    "password-set": "a person's password was set",
    "token-issue": "an API token was issued", "token-revoke": "API tokens were revoked",
    "node-init": "this node was made (its party and pinned agreement)",
    "agreement-pin": "a new version of the agreement was pinned (amended, or terminated)",
    "agreement-terminate": "what the pinned text's termination requires (destroy, return) was "
                           "done on its date: how many objects were destroyed",
    "agreement-switch": "a serving node switched to the agreement text pinned beside it, "
                        "without a restart",
    "relabel-agreement": "the stored labels were worked out again under the agreement text "
                         "in force (an amendment pinned, or none recorded)",
    "peer-add": "a partner node was pinned",
    "peer-catch-up": "everything releasable to a partner was queued once the agreement "
                     "came into force (what its state had held back)",
    "key-rotate": "this node's or a partner's signing key was rotated (the old key's bound)",
    "partner-audit": "a partner asked for the events about its objects",
    "partner-audit-kept": "this node's watch of a partner's audit log kept what it read and "
                          "moved its cursor on (the leaf and number it moved to)",
    "alert": "something a security officer must look at",
    "alert-resolve": "a security officer resolved an alert, saying what was done",
    "recall": "an originator recalled objects from a holder (sent or received)",
    "destroy": "a holder destroyed recalled objects (done here, or confirmed by the holder)",
    "reclassify": "an originator reclassified an object (sent or applied to our copies)",
    "consent-request": "a holder asked the originator's consent to release an object to a "
                       "third party (sent, or received)",
    "consent": "an originator consented to a third-party release: a signed token (given, or "
               "received)",
    "consent-refuse": "an originator refused consent to a third-party release (with the "
                      "reason)",
    "onward-release": "a holder passed an object on to a third party with the originator's "
                      "consent (reported, or recorded by the originator)",
    "compromise-report": "a report of suspected loss or compromise",
    "compromise-ack": "a compromise report was acknowledged",
    "compromise-close": "a compromise report was closed",
    "compromise-check": "a compromise report's access history was checked for events "
                        "left out",
}


class CheckpointsCrossed(AuditError):
    """A partner's checkpoint was proven from one of its checkpoints we held when we asked,
    and we kept a newer one while the answer was on its way: two honest fetches crossed.
    Not a rewrite, and no alert: ask again."""


class EventsWithheld(AuditError):
    """A partner left events about our objects out of its audit answer (alerted and
    audited already). ``resume`` is where a reader that goes on should read from next:
    the leaf to read after (None: where it asked from) and the number the next event
    must have, past what was alerted, so that the same gap is not alerted again.
    ``kept``: the events of the answer proven before the gap, up to that leaf."""

    def __init__(self, message: str, resume: tuple[int | None, int], *,
                 kept: Sequence[KeptEvent] = (), hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.resume = resume
        self.kept = kept


KEPT_PAGE = 20_000  # partner audit events kept here, checked again at a time


class PartnerAudit(NamedTuple):
    """A partner's audit events about our objects (Courier.partner_audit: a page;
    Courier.partner_events: from the start of its log)."""

    size: int  # of the partner's checkpoint they are proven in
    events: list[dict[str, Any]]
    more: bool
    expect: int | None  # the number the next event about our objects must have
    kept: Sequence[KeptEvent] = ()  # the events as proven: what the watch keeps
    missing: int = 0  # (partner_events) numbered events in the range not kept here
    alerted: int = 0  # of those, how many this node alerted the partner left out


def why_not_kept(party: str, missing: int, alerted: int) -> str:
    """Why ``missing`` of ``party``'s numbered events about our objects are not kept here,
    ``alerted`` of which this node alerted as left out of its answers (``events-withheld``:
    AuditLog.alerted_left_out): the others were deleted from this node's evidence."""
    if alerted >= missing:
        return f"{party} left them out of its answers (alerted as events-withheld)"
    if not alerted:
        return (f"no events-withheld alert says {party} left them out: they were deleted "
                "from this node's evidence")
    return (f"{party} left {alerted} of them out of its answers (alerted as "
            f"events-withheld); no alert covers the other {missing - alerted}: they were "
            "deleted from this node's evidence")


def number_gaps(kept: Iterable[KeptEvent], expect: int | None
                ) -> tuple[list[tuple[int, int]], int | None]:
    """The numbers missing among ``kept``, a partner's events about our objects by leaf
    ([from, to) each), counting from ``expect`` (None: from the first numbered one); and
    the number the next must have."""
    gaps = []
    for event in kept:
        if event.seq is not None:
            if expect is not None and event.seq > expect:
                gaps.append((expect, event.seq))
            expect = event.seq + 1 if expect is None else max(expect, event.seq + 1)
    return gaps, expect


def _uncovered(span: tuple[int, int], covers: Sequence[tuple[int, int]]
               ) -> Iterator[tuple[int, int]]:
    """The parts of the numbers [from, to) of ``span`` that no span of ``covers`` holds."""
    first, end = span
    for start, stop in sorted(covers):
        if stop <= first or start >= end:
            continue
        if start > first:
            yield first, start
        first = max(first, stop)
        if first >= end:
            return
    if first < end:
        yield first, end


class RetiredKey(AuditError):
    """A checkpoint is signed by a retired key past its bound: the size of the last
    checkpoint that key signed before its rotation. Such a key signs no new history."""

    def __init__(self, kid: str, bound: int, size: int) -> None:
        super().__init__(f"signed by retired key {kid}, which signed nothing past size "
                         f"{bound}")
        self.key_id = kid
        self.bound = bound
        self.size = size


class _Rewritten(Exception):
    """A partner's checkpoint conflicts with those we hold (AuditLog.witness)."""


@dataclass(frozen=True)
class LogKey:
    """A key a log's checkpoints are verified with. ``bound``: for a retired key, the size
    of the last checkpoint it signed (its final one, signed when it was rotated out); a
    checkpoint it signed of a larger tree is refused. None: the party's current key."""

    key_id: str
    public: Ed25519PublicKey
    bound: int | None = None

    @classmethod
    def of(cls, key: Ed25519PrivateKey | Ed25519PublicKey, bound: int | None = None
           ) -> LogKey:
        public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
        return cls(key_id(public_raw(public)), public, bound)


def log_keys(store: Store, party: str, current: Ed25519PublicKey | None = None
             ) -> list[LogKey]:
    """Every key ``party``'s checkpoints are verified with: each key it has signed with
    (``party_keys``), a retired one with its bound, the current ones first; and
    ``current`` (this node's own key, kept in its key file) unless the store has it, in
    which case what the store says of it holds (a process still holding a key rotated
    out by another is not trusted to sign with it)."""
    bounds = store.retired_keys(party)
    keys = [LogKey(kid, public_key_from_b64(pub), bounds.get(kid))
            for kid, pub in store.party_keys(party).items()]
    if current is not None:
        mine = LogKey.of(current)
        if all(k.key_id != mine.key_id for k in keys):
            keys.append(mine)
    return sorted(keys, key=lambda k: k.bound is not None)


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False)  # made once: json.dumps makes one a call


def canonical(data: Mapping[str, Any]) -> str:
    """The event's leaf data as text: JSON, sorted keys, no whitespace, UTF-8."""
    return _CANONICAL.encode(data)


def log_origin(party: str) -> str:
    """The log's name in checkpoints and the signed note's key name."""
    return f"intelpact/{party}/audit"


def operator() -> str:
    """Who runs a command on this machine (the OS account), for acts outside a login."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid
        return "unknown"


# What an operator's OS account is pseudonymised under (AuditLog.event): no person's
# name holds a ':' (people._check_name), so an operator never shares a person's pseudonym.
OPERATOR = "operator:"


class Pseudonyms:
    """Stable pseudonyms for people: ``p-`` + 16 hex digits of HMAC-SHA256 under the
    node's secret, of the name, or of the partner and the name for what that partner may
    see (its objects' events, its consent requests, reports to it): two partners cannot
    join what each was shown to follow one person across both."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def from_file(cls, path: Path, size: Callable[[], int], *, make: bool = True
                  ) -> Pseudonyms:
        """The node's secret, made with its log (mode 0600, like the node's keys; not
        kept with ``make`` False, a node opened read-only: its log holds no event).
        Refused when the file is missing but the log holds events (``size()``): they
        name people by pseudonyms made with the secret it held, and a new one would give
        everyone new pseudonyms, here and at partners, so that no search by person
        finds what they did before."""
        if not path.exists() and (events := size()):
            raise KeyFileError(f"{path}: missing, but the audit log holds {events:,} "
                               "events that name people by pseudonyms made with the "
                               "secret it held", hint=RESTORE)
        return cls(node_secret(path, make=make).encode("ascii"))

    def of(self, name: str, party: str | None = None) -> str:
        """``name``'s pseudonym here, or as ``party`` is shown it."""
        message = name if party is None else f"{party}\0{name}"
        digest = hmac.new(self._secret, message.encode("utf-8"), hashlib.sha256).hexdigest()
        return "p-" + digest[:16]

    def every(self, name: str, parties: Iterable[str]) -> tuple[str, ...]:
        """Each pseudonym ``name`` may have in this log: here, and as each of ``parties``
        is shown it (a search by person looks for them all)."""
        return (self.of(name), *(self.of(name, p) for p in parties))

    def names(self, names: Iterable[str], parties: Iterable[str], *,
              operator: str | None = None) -> dict[str, str]:
        """Pseudonym -> name, for every pseudonym of each of ``names``, and of the
        operator's account ``operator`` (AuditLog.event)."""
        parties = tuple(parties)
        found = {pseudonym: name for name in names
                 for pseudonym in self.every(name, parties)}
        if operator is not None:
            found |= {p: operator for p in self.every(OPERATOR + operator, parties)}
        return found


class Head:
    """This node's own record, outside the database, of how far its log was integrated:
    the size and root of the tree (``keys/audit-head.json``, beside the node's keys),
    written after each integration. A checkpoint is signed only every 10 seconds; the
    events after it could be deleted from the end of the table, or the whole store
    rolled back, by someone with write access to the database alone, and nothing in the
    database would say so. The integrator (the alert ``log-cut``) and ``audit verify``
    check the tree against it (docs/audit.md, "Who wrote each event")."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> tuple[int, bytes] | None:
        """(size, root) recorded, or None before the first (or once the file is
        removed). AuditError if the file is not one."""
        try:
            data = json.loads(self.path.read_text(encoding="ascii"))
            size, root = data["size"], decode_hash(data["root"])
            if type(size) is not int or size < 0:
                raise ValueError("its size is not a count of events")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AuditError(f"{self.path}: not this node's record of its log's head ({exc})",
                             hint="remove it: it is written again at the next integration"
                             ) from None
        return size, root

    def write(self, size: int, root: bytes) -> None:
        """Record (size, root), durably and whole: a new file of this writer's own (two
        processes may write at once), moved over the old."""
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".new",
                                   dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(json.dumps({"size": size, "root": encode_hash(root)}))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


@dataclass(frozen=True)
class Verdict:
    """What ``verify`` found: ``ok`` and, when not, every problem with where it is."""

    size: int
    checkpoints: int
    problems: tuple[str, ...]
    # events appended and not yet integrated (no leaf hash stored, none covered by a
    # checkpoint or the head): checked as far as they can be (verify_log)
    pending: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class _Append:
    """One caller's events waiting to be made durable, and what became of them; a caller
    that does not wait (``submit``) hears through ``future``."""

    __slots__ = ("done", "error", "events", "first", "future")

    def __init__(self, events: Sequence[AuditEvent], future: Future[int] | None = None
                 ) -> None:
        self.events = events
        self.done = False
        self.first = -1
        self.error: BaseException | None = None
        self.future = future


class _GroupCommit:
    """Appends from many threads, one durable transaction per batch waiting. The thread
    that finds no transaction under way writes one itself, with its own events and every
    event queued meanwhile: an append alone is not handed to a writer thread and back
    (two thread switches, under the GIL, on the path of every read). The others queue:
    ``append`` waits, and when that transaction ends the first waiting caller whose events
    are still unwritten writes the next batch, with everything queued by then; ``submit``
    does not wait, and when only such events are queued the committer thread writes them.
    A served request's thread is then free at once, and only one thread waits on the
    disk however many requests wait for it (interfaces/taxii.py). Nor does ``submit`` wait
    for another of the store's writers (a publication, the integrator, another worker):
    if the store declines to write without waiting, the committer writes for it.

    ``write(events, wait=)`` is the store's ``append_audit``."""

    def __init__(self, write: Callable[..., int | None]) -> None:
        self._write = write
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._wake = threading.Condition(lock)  # the committer's
        self._waiting: list[_Append] = []
        self._writing = False
        self._closed = False
        self._committer: threading.Thread | None = None

    def append(self, events: Sequence[AuditEvent]) -> int:
        """Append ``events`` durably; returns the leaf index of the first."""
        mine = _Append(events)
        with self._cond:
            self._queue(mine)
            while self._writing and not mine.done:
                self._cond.wait()
            batch: list[_Append] = []
            if not mine.done:  # nobody is writing: this thread writes what is waiting
                batch = self._take()
        if batch:
            self._commit(batch)
        if mine.error is not None:
            raise mine.error
        return mine.first

    def submit(self, events: Sequence[AuditEvent]) -> Future[int]:
        """Append ``events`` without waiting for them: the future's result is the leaf
        index of the first once they are durable, or the error ``append`` would raise.
        With no transaction under way this thread writes them itself, as ``append``."""
        future: Future[int] = Future()
        with self._cond:
            self._queue(_Append(events, future))
            if self._writing:  # they go with the next batch
                self._start_committer()
                return future
            batch = self._take()
        self._commit(batch, wait=False)
        return future

    def _start_committer(self) -> None:
        if self._committer is None:
            self._committer = threading.Thread(target=self._commit_queued,
                                               name="audit-commit", daemon=True)
            self._committer.start()

    def _queue(self, mine: _Append) -> None:
        if self._closed:
            raise AuditError("the audit log is closed")
        self._waiting.append(mine)

    def _take(self) -> list[_Append]:
        self._writing = True
        batch, self._waiting = self._waiting, []
        return batch

    def _commit(self, batch: list[_Append], *, wait: bool = True) -> None:
        """Write ``batch`` in one transaction (this thread took it), tell each caller, and
        hand on: to a waiting ``append`` if one is queued, else to the committer. Unless
        ``wait``, a batch the store declines to write at once goes back to the queue,
        first, for the committer."""
        try:
            first = self._write([e for waiting in batch for e in waiting.events], wait=wait)
        except BaseException as exc:  # noqa: BLE001 - every caller must hear of it
            log.exception("audit append failed")
            error = _append_error(exc)
            for waiting in batch:
                waiting.error, waiting.done = error, True
        else:
            if first is None:  # another writer holds the store: not on this thread
                with self._cond:
                    self._waiting[:0] = batch
                    self._writing = False
                    self._start_committer()
                    self._wake.notify()
                    self._cond.notify_all()
                return
            for waiting in batch:
                waiting.first, waiting.done = first, True
                first += len(waiting.events)
        with self._cond:
            self._writing = False
            if any(w.future is None for w in batch) or self._closed or \
                    any(w.future is None for w in self._waiting):
                self._cond.notify_all()
            if self._waiting:
                self._wake.notify()
        for waiting in batch:
            if waiting.future is not None:
                if waiting.error is not None:
                    waiting.future.set_exception(waiting.error)
                else:
                    waiting.future.set_result(waiting.first)

    def _commit_queued(self) -> None:
        """The committer: writes what ``submit`` queued while a transaction was under way
        and no ``append`` waits to write it; drains the queue when the log closes."""
        while True:
            with self._cond:
                while not self._waiting or self._writing:
                    if self._closed and not self._waiting and not self._writing:
                        return
                    self._wake.wait()
                batch = self._take()
            self._commit(batch)

    def close(self) -> None:
        """Refuse new appends; return once those already made are written."""
        with self._cond:
            self._closed = True
            self._wake.notify()
            while self._writing or self._waiting:
                self._cond.wait()
            committer, self._committer = self._committer, None
            self._wake.notify()
        if committer is not None:
            committer.join()


def _append_error(exc: BaseException) -> BaseException:
    """What an append that failed raises: the store's full or unavailable as they are
    (507, 503), anything else as the audit log's error (the act was not done)."""
    if isinstance(exc, AuditError):  # the store's: it says so already
        return AuditError(exc.message, hint=exc.hint)
    if isinstance(exc, StoreFull):
        return StoreFull(exc.message, hint=exc.hint)
    if isinstance(exc, StoreUnavailable):
        return StoreUnavailable(exc.message, hint=exc.hint)
    return AuditError(f"the audit log could not record: {exc}",
                      hint="the act was not done; check the database and disk")


class AuditLog:
    """This node's log. ``key`` gives the current signing key (it may rotate); the keys
    it signed with before, and their bounds, are the store's (``party_keys``)."""

    def __init__(self, store: Store, party: str, key: Callable[[], Ed25519PrivateKey],
                 pseudonyms: Pseudonyms, macs: EventMacs, head: Head, *,
                 checkpoint_interval: float = 10.0) -> None:
        self.store = store
        self.macs = store.event_macs = macs  # every event appended from here carries one
        self.head = head
        # as this process found it, before it integrated anything: what `audit verify`
        # checks the log against (an integration moves the head on, once it has alerted)
        self.head_found: tuple[int, bytes] | None = None
        self._head_unread: str | None = None
        try:
            self.head_found = head.read()
        except AuditError as exc:  # the node opens; `audit verify` says it
            self._head_unread = exc.message
        self.party = party
        self.origin = log_origin(party)
        self.pseudonyms = pseudonyms
        self._key = key
        self.checkpoint_interval = checkpoint_interval
        self._commit = _GroupCommit(store.append_audit)
        self._answering = threading.local()
        self._cache: dict[Coord, bytes] = {}
        self._cache_lock = threading.Lock()
        self.tree = Tree(self._fetch)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._integrated = -1

    # -- events -------------------------------------------------------------------------
    def event(self, kind: str, *, person: Person | None = None, name: str | None = None,
              actor: str | None = None, operator: str | None = None,
              party: str | None = None, originator: str | None = None,
              objects: Iterable[tuple[str, str]] = (), **detail: Any) -> AuditEvent:
        """An event of ``kind``. ``person`` (who acted) is recorded by pseudonym, with
        clearance (in their national words) and nationality; ``name`` is the person the
        act was about (``subject``: a person added, a login attempted), by pseudonym;
        ``actor`` names a partner that acted, or an operator in an event no partner is
        shown; ``operator`` is the OS account of an operator who acted outside a login
        (``operator()``), recorded as ``actor``: by name, but by pseudonym (as a person's)
        in an event about a partner's objects, which that partner is shown; ``objects``
        are (id, version) pairs, all of one ``originator``."""
        if operator is not None:
            if actor is not None:
                raise AuditError("an event names an actor or an operator, not both")
            shown = originator is not None and originator != self.party
            actor = self.pseudonyms.of(OPERATOR + operator, originator) if shown \
                else operator
        if kind not in KINDS:
            raise AuditError(f"unknown audit event kind {kind!r}")
        at = timestamp(utc_now())
        pairs = [[oid, version] for oid, version in objects]
        data: dict[str, Any] = {"v": EVENT_VERSION, "at": at, "kind": kind, "node": self.party}
        pseudonym = None
        if person is not None:
            pseudonym = self.pseudonyms.of(person.name, originator)
            data["person"] = {"id": pseudonym, "nationality": person.party,
                              "clearance": person.clearance}
        elif name is not None:
            pseudonym = self.pseudonyms.of(name, originator)
            data["subject"] = pseudonym
        if actor is not None:
            data["actor"] = actor
        if party is not None:
            data["party"] = party
        if originator is not None:
            data["originator"] = originator
        if pairs:
            data["objects"] = pairs
        for key, value in detail.items():
            if value is not None:
                data[key] = value
        if "seq" in detail:  # an event's own number, given when it is appended
            raise AuditError("an event's detail cannot be named 'seq': it is its number")
        ids = tuple(p[0] for p in pairs)
        if originator is None:
            return AuditEvent(at, kind, canonical(data), pseudonym, party, None, ids)
        # Numbered when appended: "seq" goes between the keys that sort before it ("at"
        # always) and those after ("v" always), so the body stays canonical. Canonical
        # text is its items in key order, so the ones after "seq" are the body's last
        # len(tail) - 2 characters, before its "}", and "seq" goes before their comma.
        body = canonical(data)
        tail = canonical({k: data[k] for k in data if k > "seq"})
        return AuditEvent(at, kind, body, pseudonym, party, originator, ids,
                          seq_at=len(body) - len(tail))

    def by_originator(self, kind: str, rows: Iterable[tuple[str, str, str]], *,
                      withheld: Mapping[tuple[str, str], Sequence[str]] | None = None,
                      **fields: Any) -> list[AuditEvent]:
        """One event per originator for (id, version, originator) rows: an event about
        several partners' objects would tell each about the others'. ``withheld`` (the
        portions withheld from each object, by (id, version)) is split the same way: each
        event names only its own objects' (the same ``fields`` go into every event, so
        they must name no object). An event's ``withheld`` names portions by id, so
        versions of one object with portions withheld (a page of ``versions=all``) go
        into events of their own, one version of it in each."""
        withheld = withheld or {}
        split = {oid for oid, _ in withheld}
        groups: dict[str, list[list[tuple[str, str]]]] = {}
        seen: dict[str, int] = {}  # versions of each split id placed so far
        for oid, version, origin in rows:
            layers = groups.setdefault(origin, [[]])
            depth = 0
            if oid in split:  # its n-th version goes into its originator's n-th event
                depth = seen.get(oid, 0)
                seen[oid] = depth + 1
            if depth == len(layers):
                layers.append([])
            layers[depth].append((oid, version))
        events = []
        for origin, layers in groups.items():
            for pairs in layers:
                mine = {oid: list(withheld[oid, version]) for oid, version in pairs
                        if (oid, version) in withheld}
                events.append(self.event(kind, originator=origin, objects=pairs,
                                         withheld=mine or None, **fields))
        return events

    def find(self, where: AuditFilter) -> list[AuditRecord]:
        """Events matching ``where``, oldest first. Objects are indexed as events are
        integrated, so a search by object integrates first; on a log opened read-only
        (`audit show` on a copy, a backup or a read-only mount), which integrates
        nothing, it reads the objects the events pending integration name from their
        bodies, as the integrator will index them."""
        if where.object_id is None:
            return self.store.find_audit(where)
        if not self.store.readonly:
            self.integrate()
            return self.store.find_audit(where)
        found = self.store.find_audit(where)  # those integrated, and indexed
        pending = dataclasses.replace(where, object_id=None, after=max(
            where.after, self.store.audit_integrated() - 1))
        while len(found) < where.limit:
            page = self.store.find_audit(pending)
            found += [e for e in page if where.object_id in event_object_ids(e.body)]
            if len(page) < pending.limit:
                break
            pending = dataclasses.replace(pending, after=page[-1].index)
        return found[:where.limit]

    def newest(self, where: AuditFilter, before: int | None = None) -> list[AuditRecord]:
        """Events matching ``where``, newest first, below leaf ``before`` if given (at
        most ``where.limit``: the store's query is bounded). A search by object
        integrates first, as ``find``."""
        if where.object_id is not None:
            self.integrate()
        return self.store.latest_audit(where, before)

    def record(self, *events: AuditEvent) -> None:
        """Append ``events``; returns once they are durable (raises AuditError if not)."""
        if events:
            self._commit.append(events)

    def record_served(self, *events: AuditEvent) -> None:
        """Append the events of an answer not yet given: a read, and what it denied.
        Inside ``answering`` on this thread they are queued, and whoever gives the answer
        waits until they are durable; elsewhere this is ``record``."""
        pending = getattr(self._answering, "pending", None)
        if pending is None:
            self.record(*events)
        elif events:
            pending.append(self._commit.submit(events))

    @contextlib.contextmanager
    def answering(self) -> Iterator[list[Future[int]]]:
        """A block in which ``record_served`` does not wait: each append's future is
        added to the list yielded, and the answer must not leave before every one of
        them is done without error (``Future.result``). The HTTP API answers this way: the
        request's thread is free while the disk flushes (interfaces/taxii.py)."""
        pending: list[Future[int]] = []
        self._answering.pending = pending
        try:
            yield pending
        finally:
            self._answering.pending = None

    # -- the tree -----------------------------------------------------------------------
    def _fetch(self, coords: Sequence[Coord]) -> dict[Coord, bytes]:
        with self._cache_lock:
            found = {c: self._cache[c] for c in coords if c in self._cache}
        missing = [c for c in coords if c not in found]
        if missing:
            fetched = self.store.audit_nodes(missing)
            with self._cache_lock:
                if len(self._cache) > CACHE_NODES:
                    self._cache.clear()
                self._cache.update(fetched)
            found.update(fetched)
        return found

    def _sign(self, size: int, root: bytes, tree: Tree, force: bool,
              key: Ed25519PrivateKey | None = None) -> str | None:
        """Inside the integrating transaction: sign a checkpoint for (size, root) if the
        tree grew (or ``force``), after proving it extends the last checkpoint. Signed
        with ``key`` (default the current key), which must not be retired: a process
        still holding a key another process rotated out refuses, and says so."""
        last = self.latest()
        if last is not None:
            old = parse_checkpoint(self._text(last.note))
            if old.size > size:
                raise AuditError(f"the tree ({size} events) is smaller than the last "
                                 f"checkpoint ({old.size}): events were removed",
                                 hint="run 'intelpact audit verify' on this node")
            if old.size == size:
                if old.root != root:
                    raise AuditError(f"the tree of {size} events no longer has the root of "
                                     "its checkpoint: events were altered; refusing to sign",
                                     hint="run 'intelpact audit verify' on this node")
                return None  # signed already
            try:
                verify_consistency(old.size, size, old.root, root,
                                   tree.consistency(old.size, size))
            except ProofError as exc:
                raise AuditError(f"the tree of {size} events does not extend the checkpoint "
                                 f"of {old.size}: {exc}; refusing to sign",
                                 hint="run 'intelpact audit verify' on this node") from None
        elif size == 0 and not force:
            return None
        key = self._signing_key(key, f"the checkpoint of size {size}")
        body = format_checkpoint(self.origin, size, root)
        return sign_note(body, self.origin, key)

    def _signing_key(self, key: Ed25519PrivateKey | None, what: str) -> Ed25519PrivateKey:
        """``key`` (default the current key), if it was not retired: a process still
        holding a key another process rotated out refuses to sign ``what``, and says so.
        Read in the signing transaction where there is one: a rotation commits first."""
        key = key or self._key()
        kid = key_id(public_raw(key))
        bound = self.store.retired_keys(self.party).get(kid)
        if bound is not None:
            raise AuditError(f"this node's signing key {kid} was retired by a key rotation "
                             f"(it signed nothing past size {bound}); refusing to sign "
                             f"{what} with it",
                             hint="restart this node's processes (intelpact serve): they "
                             "load the new key")
        return key

    def final_checkpoint(self, size: int, root: bytes, tree: Tree,
                         key: Ed25519PrivateKey) -> str:
        """Inside a key rotation's transaction (Store.retire_key): the final checkpoint of
        the whole tree (``size``, ``root``) signed by ``key``, the key being rotated out,
        whose bound it is. Signed now, or the latest checkpoint if it is of this tree
        already (signed by that key: the tree grows after every rotation, by its
        ``key-rotate`` event)."""
        note = self._sign(size, root, tree, True, key)
        if note is None:
            latest = self.latest()
            if latest is None:  # pragma: no cover - _sign returns None only after one
                raise AuditError("no checkpoint to end the key's history with")
            note = latest.note
        try:
            verify_checkpoint_note(note, self.origin, [LogKey.of(key)])
        except AuditError as exc:
            raise AuditError(f"the latest checkpoint, of size {size}, is not signed by the "
                             f"key being rotated out ({exc.message}); refusing to rotate",
                             hint="run 'intelpact audit verify' on this node") from None
        return note

    def integrate(self, *, sign: bool = False, force: bool = False,
                  steps: bool = False) -> tuple[int, bytes]:
        """Hash everything appended into the tree; then, if ``sign``, sign a checkpoint
        when the tree grew since the last (or ``force``: e.g. the first, of an empty log).
        Returns the tree's size and root. ``steps``: a little at a time, pausing between
        (the background integrator's way: see STEP_EVENTS)."""
        limit, refs = (STEP_EVENTS, STEP_REFS) if steps else (INTEGRATE_BATCH, None)
        appended = self.store.audit_size()
        forged: list[int] = []
        try:
            while True:
                size, root = self.store.integrate_audit(limit, refs=refs, forged=forged)
                if size >= appended:
                    break
                if steps:
                    time.sleep(STEP_PAUSE)
            if sign:
                size, root = self.store.integrate_audit(
                    limit, lambda n, r, t: self._sign(n, r, t, force), refs, forged)
        finally:
            if forged:
                self._forged(forged)
        self._integrated = size
        self._advance_head(size, root)
        return size, root

    def _advance_head(self, size: int, root: bytes) -> None:
        """Check the tree integrated against this node's record of its head (``Head``),
        and move the record on to it. A tree that does not extend the head recorded
        (fewer events than were integrated, or other ones) raises the alert ``log-cut``:
        events were deleted from the end of the log, or the store was rolled back. The
        record is moved on all the same: the alert, in the log, is what stays."""
        try:
            head = self.head.read()
        except AuditError as exc:
            log.error("%s (%s)", exc.message, exc.hint)
            head = None
        if head is not None:
            problem = self._against(head, size, root)
            if problem is not None:
                self.alert("log-cut", None, problem, once=True)
            elif head[0] >= size:
                return  # recorded already, or further by another process
        if size:
            try:
                self.head.write(size, root)
            except OSError as exc:  # the log stands; only this check of it is behind
                log.error("%s: cannot record the audit log's head: %s", self.head.path,
                          exc.strerror or exc)

    def _against(self, head: tuple[int, bytes], size: int, root: bytes) -> str | None:
        """What is wrong with the tree of ``size`` events (``root``) as an extension of
        the ``head`` recorded, or None."""
        recorded, recorded_root = head
        if recorded > size:  # this process's tree may be behind another's: the store's?
            size = self.store.audit_integrated()
            if size >= recorded:
                return None
            return (f"this node's log holds {size} integrated events, but its own record "
                    f"outside the database ({self.head.path.name}) says it had {recorded}: "
                    "events were deleted from the end of the log, or the store was rolled "
                    "back (restored from a backup)")
        if recorded == 0:  # the empty tree: every tree extends it
            return None
        try:
            verify_consistency(recorded, size, recorded_root, root,
                               self.tree.consistency(recorded, size))
        except ProofError as exc:
            return (f"the {size} events integrated do not extend the {recorded} this node "
                    f"recorded outside the database ({self.head.path.name}): {exc}: the "
                    "log was cut and appended to again, or the store was replaced")
        return None

    def _forged(self, indexes: Sequence[int]) -> None:
        """Alert the security officer to events just integrated whose MAC does not verify
        (EventMacs): they were hashed into the log like any other, and ``audit verify``
        names each of them for ever."""
        spans = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in _runs(indexes))
        self.alert("event-forged", None,
                   f"audit event(s) {spans} carry no MAC of this node's that verifies: they "
                   "were written into the database by something other than this node (or "
                   "altered or moved there), and have been hashed into the log as they "
                   "are; run 'intelpact audit verify' and find who has write access to the "
                   "database", once=True)

    def checkpoint(self) -> Checkpoint:
        """Integrate everything and sign now (on demand). Returns the latest checkpoint."""
        self.integrate(sign=True, force=self.latest() is None)
        latest = self.latest()
        if latest is None:  # pragma: no cover - integrate(force=True) always signs
            raise AuditError("no checkpoint was signed")
        return latest

    def latest(self) -> Checkpoint | None:
        return self.store.latest_checkpoint()

    def verify(self, progress: Callable[[int], None] | None = None, *,
               chunk: int = 20_000) -> Verdict:
        """This whole log re-checked (``verify_log``): what `audit verify` says of it.
        Read in one snapshot of the store (Store.snapshot): beside a serving node, which
        appends and integrates meanwhile, reads made at different moments disagree (more
        hashes than events, an event filed under objects not yet read), a false tamper."""
        with self.store.snapshot():
            verdict = verify_log(self.store, self.origin, self.log_keys(), self.macs,
                                 self.head_found, progress=progress, chunk=chunk)
        if self._head_unread is None:
            return verdict
        return dataclasses.replace(verdict, problems=(self._head_unread, *verdict.problems))

    @staticmethod
    def _text(note: str) -> str:
        """The checkpoint text of a note this node keeps (refused if the row was altered
        into something other than text)."""
        if not isinstance(note, str):
            raise CheckpointError("the stored note of the last checkpoint is not text")
        return note[: note.rfind("\n\n") + 1]

    # -- keys ---------------------------------------------------------------------------
    def log_keys(self) -> list[LogKey]:
        """Every key this node has signed its checkpoints with, a retired one with its
        bound."""
        return log_keys(self.store, self.party, self._key().public_key())

    def verify_checkpoint(self, note: str) -> tuple[int, bytes]:
        """(size, root) of a checkpoint note signed by a key this node has used (a retired
        key only up to its bound)."""
        return verify_checkpoint_note(note, self.origin, self.log_keys())

    def partner_checkpoint(self, party: str, keys: Iterable[LogKey], note: str, *,
                           alert: bool = True) -> tuple[int, bytes]:
        """(size, root) of a checkpoint ``party`` showed us, signed by one of its ``keys``
        (a retired key only up to its bound). A checkpoint a retired key signed past its
        bound is new history signed by a key that was rotated out: refused, and, unless
        ``alert`` is false, the alert ``retired-key`` is raised (an honest node never
        signs one: its processes refuse to sign with a retired key). So is a checkpoint
        of more events than this node's store can count (MAX_INTEGER: no log holds that
        many), with the alert ``checkpoint-refused``: every later checkpoint of that log
        must be at least as large, so it cannot be witnessed here from then on."""
        try:
            size, root = verify_checkpoint_note(note, log_origin(party), keys)
        except RetiredKey as exc:
            if alert:
                self.alert("retired-key", party,
                           f"{party}'s checkpoint of {exc.size} events is {exc.message}: a "
                           f"key {party} rotated out signs new history (stolen?). The "
                           "checkpoint is kept in this alert's audit event.", once=True,
                           note=note)
            raise AuditError(f"{party}'s checkpoint of {exc.size} events is {exc.message}",
                             hint="tell your security officer (intelpact audit alerts DIR)"
                             ) from None
        if size > MAX_INTEGER:
            problem = (f"{party} signed a checkpoint of {size:,} events, more than a log "
                       f"can hold ({MAX_INTEGER:,} here)")
            if alert:
                self.alert("checkpoint-refused", party,
                           f"{problem}: every later checkpoint of its log must be at least "
                           "as large, so its log cannot be witnessed here from now on. The "
                           "checkpoint is kept in this alert's audit event.", once=True,
                           note=note)
            raise AuditError(f"{problem}: refused",
                             hint="tell your security officer (intelpact audit alerts DIR)")
        return size, root

    # -- partner audit: serving ------------------------------------------------------------
    def for_partner(self, party: str, *, after: int = -1, limit: int = 1000,
                    known: int = 0) -> dict[str, Any]:
        """What ``party`` may see of this log: the events about objects it originated
        after leaf ``after`` (at most ``limit``; 0 for only the checkpoint), each with an
        inclusion proof, against a signed checkpoint that covers them, plus a proof that
        the tree of ``known`` leaves (the largest checkpoint of ours it holds) is a prefix
        of that checkpoint's (none when ``known`` is past our latest checkpoint: no
        checkpoint is signed for it). Nothing about anyone else's objects.

        Every such event below the checkpoint's size is in the answer or a later page of
        it. The last page (``more`` false) carries ``count``: a note signed like a
        checkpoint saying how many of them were numbered below that size, so that
        ``party`` sees that none is left out (``check_partner_events``)."""
        _, newest = self.store.audit_numbered(party) if limit else (0, -1)
        latest = self.latest()
        size = parse_checkpoint(self._text(latest.note)).size if latest is not None else -1
        # ``known`` counts only up to our latest checkpoint: the caller can hold none of
        # ours larger. Past it (a hostile caller, or our log cut back from a backup), the
        # answer is that checkpoint, with no consistency proof, and the caller's witness
        # finds our log shrank; signing to reach ``known`` never could (each answer is
        # itself recorded), and signed and kept a checkpoint on every request.
        need = max(newest + 1, min(known, size), 1 if limit else 0)
        if latest is None or size < need:
            latest = self.checkpoint()
            size = parse_checkpoint(self._text(latest.note)).size
        events = self.store.find_audit(AuditFilter(originator=party, after=after,
                                                   limit=limit + 1), before=size
                                       ) if limit else []
        more = len(events) > limit
        events = events[:limit]
        proofs = self.tree.inclusions([e.index for e in events], size) if events else []
        answer: dict[str, Any] = {
            "checkpoint": latest.note, "more": more,
            "events": [{"index": e.index, "body": e.body, "proof": [encode_hash(h) for h in proof]}
                       for e, proof in zip(events, proofs, strict=True)]}
        if events:
            answer["next"] = events[-1].index
        if limit and not more:
            count, _ = self.store.audit_numbered(party, size)
            answer["count"] = sign_note(count_text(self.origin, party, size, count),
                                        self.origin, self._signing_key(None, "a count"))
        if 0 < known < size:
            answer["consistency"] = {"from": known,
                                     "proof": [encode_hash(h) for h in self.tree.consistency(known,
                                                                                      size)]}
        self.record(self.event("partner-audit", party=party, actor=party, after=after,
                               count=len(events), checkpoint=size))
        return answer

    # -- partner audit: witnessing --------------------------------------------------------
    def witness(self, party: str, keys: Iterable[LogKey],
                answer: Mapping[str, Any], *, known: int | None = None) -> tuple[int, bytes]:
        """Check and keep a checkpoint ``party`` showed us (gossip): validly signed by one
        of its keys (a retired one only up to its bound: ``partner_checkpoint``), and
        consistent with every checkpoint of it we hold. Two inconsistent checkpoints
        signed by the same partner mean it rewrote its history: an alert is raised (and
        audited) and AuditError says so.

        ``known`` is the size of the largest checkpoint of ``party`` held when the answer
        was asked for (its consistency proof starts there). If a newer one was kept
        meanwhile (gossip, another fetch), an answer that fails only against that newer
        one merely crossed it: CheckpointsCrossed, no alert, and the caller asks again.
        An answer that conflicts with what was held when it was asked is a rewrite."""
        if not isinstance(answer, Mapping):  # what a partner sends is checked before use
            raise AuditError(f"{party}'s audit answer is not a JSON object")
        keys = list(keys)
        size, root = self.partner_checkpoint(party, keys, str(answer.get("checkpoint", "")))
        proof = answer.get("consistency")

        def judge(held: HeldCheckpoints) -> None:
            """Under the store's write lock, with the checkpoints of ``party`` held."""
            problem = _conflict(party, held, size, root, proof)
            if problem is None:
                return
            # judged by the size and root kept beside each note: unless the notes signed
            # them, the rows were altered here, and that is no evidence against ``party``
            for altered in self._unsigned_held(party, keys, [
                    row for row in (held.at(size), held.largest()) if row is not None]):
                raise AuditError(altered, hint="run 'intelpact audit verify' on this node")
            largest = held.largest()
            if known is not None and (largest[0] if largest else 0) != known \
                    and _conflict(party, held, size, root, proof, upto=known) is None:
                raise CheckpointsCrossed(
                    f"{party}'s checkpoint of {size} events was proven from our checkpoint "
                    f"of {known}, and a newer one was kept meanwhile", hint="ask again")
            raise _Rewritten(problem)

        try:
            self.store.add_partner_checkpoint(party, size, root, str(answer["checkpoint"]),
                                              timestamp(utc_now()), judge)
        except _Rewritten as exc:
            problem = str(exc)
            self.alert("history-rewritten", party,
                       f"{problem}: {party} has rewritten its audit history. The conflicting "
                       "checkpoint is kept in this alert's audit event; the earlier one in "
                       "the partner checkpoints.", once=True,
                       note=str(answer.get("checkpoint", "")))
            raise AuditError(f"{problem}: {party} has rewritten its audit history",
                             hint="tell your security officer (intelpact audit alerts DIR)"
                             ) from None
        return size, root

    def check_partner_events(self, party: str, keys: Iterable[LogKey], size: int,
                             root: bytes, answer: Mapping[str, Any], *,
                             expect: int | None = None) -> PartnerAudit:
        """The events of a partner-audit answer, each proven included in the tree
        (``size``, ``root``), about an object this node originated, and of the shape its
        readers index into (``objects`` [id, version] pairs, ``person`` an object).

        And none left out (docs/audit.md, "Completeness"): each event about our objects
        is numbered in ``party``'s log, and the numbers must follow on from ``expect`` (0
        when reading from the start of the log; None: from the first one here) without a
        gap; on the last page (``more`` false), the count ``party`` signed at ``size``
        (one of ``keys``) must be the number after the last. A missing number, or a
        count past the numbers sent, means ``party`` left events about our objects out
        of its answer: the alert ``events-withheld`` is raised, with the signed evidence,
        and EventsWithheld says so. Returns the page: its events, whether there are more,
        the number the next must have, and the events as proven (``kept``)."""
        out: list[dict[str, Any]] = []
        kept: list[KeptEvent] = []
        for index, data, body, proof in _proven(party, size, root, answer.get("events", [])):
            if data.get("node") != party or data.get("originator") != self.party:
                self._malformed_event(party, size, answer, index, body, proof,
                                      f"which is not its record of an object {self.party} "
                                      "originated")
            shape = _malformed(data) or _unnumbered(data, bool(expect))
            if shape is not None:  # signed, but what would be shown of it is not there
                self._malformed_event(party, size, answer, index, body, proof,
                                      f"which is malformed: {shape}")
            seq = data.get("seq")
            if seq is not None:
                if expect is not None and seq != expect:
                    twice = seq < expect  # then passed over; a gap: read again from it
                    self._withheld(party, f"{party} sent event {index} numbered {seq} among "
                                   f"its events about {self.party}'s objects, where {expect} "
                                   f"was next{': a number given twice' if twice else ''}",
                                   (index, expect) if twice else (index - 1, seq), kept,
                                   index=index, numbered=seq, expected=expect)
                expect = seq + 1
            out.append({**data, "index": index})  # the leaf proven, whatever the body says
            kept.append(KeptEvent(index, seq, body, proof, size))
        more = bool(answer.get("more"))
        if not more:
            count = self._count(party, keys, size, answer.get("count"))
            if expect is not None and count != expect:
                # past the gap (counted: the next is numbered after it); a count below
                # stands until the partner's count grows, and is alerted once
                self._withheld(party, f"{party} signed that {count} of its events about "
                               f"{self.party}'s objects are numbered in its log, and sent "
                               f"them numbered up to {expect - 1}",
                               (out[-1]["index"] if out else None, max(count, expect)),
                               kept, count=count, expected=expect, size=size,
                               note=answer.get("count"))
        return PartnerAudit(size, out, more, expect, kept)

    def verify_kept(self, party: str, keys: Iterable[LogKey], kept: Iterable[KeptEvent]
                    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Check again the events of ``party``'s log that the watch kept
        (Store.partner_events): each still proven included in the checkpoint it was
        proven in, kept here and validly signed by one of ``keys`` (its signed note is
        checked, not the root stored beside it), and numbered as its body says. Returns
        the events that verify, decoded (with their ``index``), and what does not, a
        line each."""
        keys = list(keys)
        roots: dict[int, bytes | str] = {}  # a checkpoint's root, or why it has none
        events: list[dict[str, Any]] = []
        problems = []
        for event in kept:
            if event.size not in roots:
                held = self.store.partner_checkpoint_at(party, event.size)
                roots[event.size] = self._kept_root(party, keys, event.size,
                                                    held[2] if held else None)
            root = roots[event.size]
            try:
                if isinstance(root, str):
                    raise ValueError(root)
                verify_inclusion(event.index, event.size, leaf_hash(event.body.encode()),
                                 [event.proof[i:i + 32]
                                  for i in range(0, len(event.proof), 32)], root)
                data = json.loads(event.body)
                if not isinstance(data, dict) or data.get("seq") != event.seq:
                    raise ValueError("its number is not the one its body holds")
            except RecursionError:  # signed deeper than a reader here decodes: the watch
                # refuses such an event now (_proven), but must not crash on one kept
                problems.append(f"event {event.index} of {party}'s log, kept as proven in "
                                f"its checkpoint of {event.size} events, cannot be read: "
                                "its body is nested too deep")
                continue
            except (ProofError, ValueError) as exc:
                problems.append(f"event {event.index} of {party}'s log, kept as proven in "
                                f"its checkpoint of {event.size} events, does not verify: "
                                f"{exc}")
                continue
            events.append({**data, "index": event.index})
        return events, problems

    def check_kept(self, party: str, keys: Iterable[LogKey],
                   advance: Callable[[int], None] = lambda n: None) -> tuple[int, list[str]]:
        """Check again every event of ``party``'s log kept here (``verify_kept``), a page
        of KEPT_PAGE at a time so memory stays bounded, and that none is missing: the
        numbers kept run on from 0 to the watch's cursor, but for the numbers this node
        alerted ``party`` left out (``events-withheld``: those alerts are events of this
        node's own log, with the numbers), and the cursor is where this log's
        ``partner-audit-kept`` events recorded it moved to (``_cursor_anchored``); and
        that each is filed under its body's kind, if under any (an event kept before
        kinds were filed is under none), and under exactly the objects its body names
        (filing; what is filed under a leaf not kept finds nothing). Returns how many
        events are kept and what is wrong, a line each. Read in one snapshot of the store
        (Store.snapshot): beside a serving node, whose watch keeps more events and moves
        its cursor meanwhile, the events read before the cursor would look deleted."""
        with self.store.snapshot():
            return self._check_kept(party, list(keys), advance)

    def _check_kept(self, party: str, keys: list[LogKey],
                    advance: Callable[[int], None]) -> tuple[int, list[str]]:
        count, after = 0, -1
        expect: int | None = 0
        problems: list[str] = []
        while held := self.store.partner_checkpoints(party, after, KEPT_PAGE):
            problems += self._unsigned_held(party, keys, held)
            after = held[-1][0]
            advance(len(held))
        after = -1
        absent: list[tuple[int, int]] = []  # numbers not kept: [from, to)
        name, searches = f"{party}'s kept event", (
            "audit partner --object, the console's partner view, compromise history checks")
        while page := self.store.partner_events(party, after=after, limit=KEPT_PAGE):
            events, failed = self.verify_kept(party, keys, page)
            problems += failed  # and what those that verify are filed under:
            filed = {data["index"]: filing(data) for data in events}
            problems += [
                f"{party}'s kept event {kept.index} is filed under kind {kept.kind!r}, but "
                f"its body's kind is {filed[kept.index][0]!r}: searches by kind (audit "
                "partner --kind, the console's partner view) do not find it as what it is"
                for kept in page if kept.index in filed and kept.kind is not None
                and kept.kind != filed[kept.index][0]]
            named = {index: ids for index, (_, ids) in filed.items()}
            problems += _check_refs(named, [  # a leaf not kept is found by no search
                (oid, leaf) for oid, leaf in self.store.partner_event_refs(
                    party, page[0].index, page[-1].index + 1) if leaf in named],
                event=name, searches=searches)
            gaps, expect = number_gaps(page, expect)
            absent += gaps
            count += len(page)
            after = page[-1].index
            advance(len(page))
        problem, cursor = self._cursor_anchored(party)
        problems += problem
        if expect is not None and cursor > expect:
            absent.append((expect, cursor))
        alerted = self._left_out(party)
        for first, end in (gap for span in absent for gap in _uncovered(span, alerted)):
            numbers = f"{first}" if end - first == 1 else f"{first} to {end - 1}"
            problems.append(f"{party}'s event(s) about our objects numbered {numbers} are "
                            f"not kept here: {why_not_kept(party, end - first, 0)}")
        return count, problems

    def _cursor_anchored(self, party: str) -> tuple[list[str], int]:
        """Whether the watch's cursor of ``party`` kept here is where this log's
        ``partner-audit-kept`` events recorded it moved to (the furthest of them, of those
        this node wrote: the cursor never moves back), and the number the events kept
        must run to: the
        cursor's, or the one recorded if it is further. A cursor set back or deleted here,
        with the evidence kept below it, is named, and the numbers deleted with it are
        then found missing."""
        watch = self.store.partner_audit_watch(party)
        after, cursor = (-1, 0) if watch is None else watch[:2]
        furthest: tuple[int, int, int] | None = None  # (leaf, number, index of the event)
        where = AuditFilter(kinds=("partner-audit-kept",), party=party, limit=KEPT_PAGE)
        while found := self.store.find_audit(where):
            for record in found:
                data = _decoded(record.body)  # one that does not decode: verify_log says
                if not isinstance(data, dict) or self.macs.problem(
                        record.index, record.body, record.mac):
                    continue  # not this node's (verify_log names it): it anchors nothing
                leaf, number = data.get("after"), data.get("expect")
                if type(leaf) is int and type(number) is int and \
                        (furthest is None or (leaf, number) > furthest[:2]):
                    furthest = (leaf, number, record.index)
            where = dataclasses.replace(where, after=found[-1].index)
        if furthest is None or (after >= furthest[0] and cursor >= furthest[1]):
            return [], cursor
        leaf, number, index = furthest
        at = "keeps no cursor here" if watch is None else \
            f"is at leaf {after} (number {cursor})"
        return [f"{party}'s audit watch {at}, but event {index} of this log recorded it "
                f"moved to leaf {leaf} (number {number}): the cursor was "
                f"{'deleted' if watch is None else 'set back'} here, and whatever of "
                f"{party}'s events kept below it is missing was deleted with it"], \
            max(cursor, number)

    def not_kept(self, party: str, expect: int, before: int) -> tuple[int, int]:
        """How many of ``party``'s first ``expect`` numbered events about our objects are
        not kept below leaf ``before``, and how many of those this node alerted as left
        out of its answers (why_not_kept: the others were deleted here)."""
        missing = expect - self.store.numbered_partner_events(party, before)
        if not missing:
            return 0, 0
        return missing, min(self.alerted_left_out(party, [(0, expect)])[0], missing)

    def alerted_left_out(self, party: str, spans: Sequence[tuple[int, int]]) -> list[int]:
        """For each span [from, to) of the numbers of ``party``'s events about our
        objects, how many this node alerted as left out of its answers: numbers that are
        not kept and not alerted were deleted here (why_not_kept)."""
        alerted = self._left_out(party) if spans else []
        return [end - first - sum(e - f for f, e in _uncovered((first, end), alerted))
                for first, end in spans]

    def check_shown(self) -> list[str]:
        """What the security officer is shown, in tables beside the log, must be what the
        log records: every alert raised is one of its `alert` events (the same kind,
        party and detail), and every such event an alert; an alert is resolved as one
        `alert-resolve` event says (that alert's kind, party and detail, with that note),
        and only so; every compromise report kept is one of its `compromise-report`
        events, and acknowledged or closed as one of its `compromise-ack` or
        `compromise-close` events says, and only so. An insider who deleted an alert,
        marked one resolved (or swapped an open one with a resolved one), or deleted or
        closed a report in those tables is caught here. A line for each thing wrong. Read
        in one snapshot of the store (Store.snapshot): beside a serving node, an alert
        raised (or a report kept) between reading the events and reading the tables
        would look added here, a tamper that was not there."""
        with self.store.snapshot():
            return self._check_shown()

    def _check_shown(self) -> list[str]:
        raised: Counter[tuple[Any, Any, Any]] = Counter()
        resolves: dict[Any, Any] = {}
        steps: dict[str, dict[Any, dict[str, Any]]] = {"report": {}, "ack": {}, "close": {}}
        where = AuditFilter(kinds=("alert", "alert-resolve", "compromise-report",
                                   "compromise-ack", "compromise-close"), limit=KEPT_PAGE)
        while found := self.store.find_audit(where):
            for record in found:
                data = _decoded(record.body)  # one that does not decode: verify_log says
                if not isinstance(data, dict):
                    continue
                if record.kind == "alert":
                    raised[(data.get("alert"), data.get("party"), data.get("detail"))] += 1
                elif record.kind == "alert-resolve":
                    resolves[data.get("alert_id")] = (data.get("alert"), data.get("party"),
                                                      data.get("detail"), data.get("note"))
                else:
                    steps[record.kind.removeprefix("compromise-")][data.get("report")] = data
            where = dataclasses.replace(where, after=found[-1].index)
        alerts = self.store.alerts()
        shown = Counter((kind, party, detail) for _, kind, party, detail, _ in alerts)
        problems = [f"the alert {kind} ({party or 'no party'}: {detail[:60]}…) is shown to "
                    "the security officer, but no alert event of this log raised it: it was "
                    "added here" for kind, party, detail in (shown - raised).elements()]
        problems += [f"the alert {kind} ({party or 'no party'}: {str(detail)[:60]}…) of this "
                     "log is not among the alerts shown to the security officer: it was "
                     "deleted here" for kind, party, detail in (raised - shown).elements()]
        resolved = self.store.alert_resolutions()
        held = {alert_id: (kind, party, detail) for alert_id, kind, party, detail, _ in alerts}
        for alert_id, (_, note) in sorted(resolved.items()):
            # the alert itself too: an open alert's kind, party and detail swapped with a
            # resolved one's keep the multisets above equal
            if resolves.get(alert_id) != (*held.get(alert_id, (None,) * 3), note):
                problems.append(f"alert #{alert_id} is shown resolved, but no alert-resolve "
                                "event of this log resolved it so: it was marked here")
        problems += [f"alert #{alert_id} was resolved (an alert-resolve event of this log), "
                     "but is shown open: its resolution was deleted here"
                     for alert_id in sorted(resolves.keys() - resolved.keys(), key=str)]
        reports = {r.report_id: r for r in self.store.compromise_reports()}
        done = {"report": set(reports),
                "ack": {i for i, r in reports.items() if r.acknowledged is not None},
                "close": {i for i, r in reports.items() if r.closed is not None}}
        what = {"report": "kept", "ack": "acknowledged", "close": "closed"}
        for step, recorded in steps.items():
            problems += [f"compromise report {i} is {what[step]} here, but no compromise-"
                         f"{step} event of this log records it: it was altered here"
                         for i in sorted(done[step] - recorded.keys())]
            problems += [f"compromise report {i} was {what[step]} (a compromise-{step} event "
                         f"of this log), but is not shown so: it was altered here"
                         for i in sorted(recorded.keys() - done[step], key=str)]
        for report_id, report in sorted(reports.items()):
            problems += [f"compromise report {report_id}'s {field} is {echo.shown(kept)} here, "
                         f"but its events recorded {echo.shown(logged)}: it was altered here"
                         for field, kept, logged in self._report_differs(report, steps)]
        return problems

    def _report_differs(self, record: CompromiseRecord,
                        steps: Mapping[str, Mapping[Any, Mapping[str, Any]]]
                        ) -> Iterator[tuple[str, Any, Any]]:
        """Each (field, shown, recorded) where ``record``, as kept in compromise_reports,
        differs from what its `compromise-report`, `-ack` and `-close` events recorded:
        a deadline moved there turns a late report into one on time. A field an event
        does not record (``filed``, ``when``: not before 2026-12-02) is not compared."""
        report = steps["report"].get(record.report_id)
        if report is None:  # named above
            return
        received = report.get("direction") == "received"
        direction = "incoming" if received else (
            "local" if report.get("originator") == self.party else "outgoing")
        body = _decoded(record.body)
        expected = {"direction": direction,
                    "reporter": report.get("party") if received else self.party,
                    "originator": report.get("originator"),
                    "objects": report.get("objects"),
                    "object_count": len({o[0] for o in report.get("objects") or ()
                                         if isinstance(o, list) and o}),
                    "discovered": report.get("discovered"), "deadline": report.get("deadline")}
        if "filed" in report:
            expected["filed"] = report["filed"]
        for step, field in (("ack", "acknowledged"), ("close", "closed")):
            if "when" in steps[step].get(record.report_id, {}):
                expected[field] = steps[step][record.report_id]["when"]
        for field, logged in expected.items():
            kept = body.get("objects") if field == "objects" and isinstance(body, dict) \
                else getattr(record, field, None)
            if kept != logged:
                yield field, kept, logged

    def _left_out(self, party: str) -> list[tuple[int, int]]:
        """The numbers [from, to) of ``party``'s events about our objects this node alerted
        as left out of its answers (the evidence of each ``events-withheld`` alert)."""
        spans = []
        where = AuditFilter(kinds=("alert",), party=party, limit=KEPT_PAGE)
        while found := self.store.find_audit(where):
            for record in found:
                data = json.loads(record.body)
                end = data.get("numbered", data.get("count"))
                if data.get("alert") == "events-withheld" and isinstance(end, int) \
                        and isinstance(data.get("expected"), int) and end > data["expected"]:
                    spans.append((data["expected"], end))
            where = dataclasses.replace(where, after=found[-1].index)
        return spans

    def _unsigned_held(self, party: str, keys: Sequence[LogKey],
                       held: Iterable[PartnerCheckpoint]) -> Iterator[str]:
        """What is wrong with ``party``'s checkpoints kept here (``held``): each must be
        the size and root its note says, validly signed by one of ``keys`` (``_kept_root``,
        as for the checkpoint a kept event was proven in). A witness judges the next by
        the size and root kept beside the note, and a watch proves events with them."""
        for size, root, note, _ in held:
            signed = self._kept_root(party, keys, size, note)
            if signed != root:
                why = signed if isinstance(signed, str) else "another root"
                yield (f"{party}'s checkpoint of {size} events kept here is not what its "
                       f"note signed ({why}): it was altered here")

    def _kept_root(self, party: str, keys: Sequence[LogKey], size: int,
                   note: str | None) -> bytes | str:
        """The root ``party`` signed for its tree of ``size`` in the checkpoint kept here,
        or what is wrong with it."""
        if note is None:
            return "that checkpoint is not kept here"
        try:
            signed, root = self.partner_checkpoint(party, keys, note, alert=False)
        except AuditError as exc:
            return f"that checkpoint is not valid: {exc.message}"
        return root if signed == size else f"the checkpoint kept for it is of {signed}"

    def _count(self, party: str, keys: Iterable[LogKey], size: int, note: Any) -> int:
        """The count in ``party``'s signed count note for our objects at ``size``."""
        if not isinstance(note, str):
            raise AuditError(f"{party}'s audit answer has no signed count of the events "
                             f"about {self.party}'s objects: it cannot be shown complete",
                             hint=f"{party} may run an older intelpact; ask its operator")
        origin = log_origin(party)
        about, at, count = _verified(note, origin, keys, lambda text: parse_count(text, origin))
        if about != self.party or at != size:
            raise AuditError(f"{party}'s signed count is of the events about {about}'s "
                             f"objects in its tree of {at}, not {self.party}'s in its tree "
                             f"of {size}")
        if count > size:  # impossible, and past MAX_INTEGER the watch's cursor cannot hold it
            raise AuditError(f"{party} signed that {count} of its events about "
                             f"{self.party}'s objects are in its tree of {size} events: more "
                             "than the tree holds", hint="tell your security officer; ask "
                             f"{party}'s operator")
        return count

    def _malformed_event(self, party: str, size: int, answer: Mapping[str, Any],
                         index: int, body: str, proof: bytes, problem: str) -> NoReturn:
        """Refuse ``party``'s event at ``index``, proven in its checkpoint of ``size`` but
        not one this node can keep and show (AuditError): the audit watch reads no further
        until it is dealt with, so the alert ``event-malformed`` is raised, once, with
        the evidence (the leaf's hash, its inclusion proof and the checkpoint)."""
        detail = (f"{party} sent event {index} of its signed log, {problem}: its events "
                  f"about our objects from there on cannot be checked here")
        self.alert("event-malformed", party, detail, once=True, index=index, size=size,
                   leaf=encode_hash(leaf_hash(body.encode("utf-8"))),
                   proof=[encode_hash(proof[i:i + 32]) for i in range(0, len(proof), 32)],
                   note=str(answer.get("checkpoint", "")))
        raise AuditError(f"{party} sent event {index}, {problem}",
                         hint="tell your security officer (intelpact audit alerts DIR)")

    def _withheld(self, party: str, problem: str, resume: tuple[int | None, int],
                  kept: Sequence[KeptEvent], **evidence: Any) -> None:
        """Alert ``events-withheld`` (once for the same ``problem``: a partner's watch
        meets a count it disputes every round), and raise EventsWithheld with the events
        proven before the problem (``kept``)."""
        detail = (f"{problem}: {party} left events about our objects out of its audit "
                  "answer. The evidence is kept in this alert's audit event.")
        self.alert("events-withheld", party, detail, once=True, **evidence)
        raise EventsWithheld(f"{problem}: {party} left events about our objects out of its "
                             "answer", resume, kept=kept, hint="tell your security officer "
                             "(intelpact audit alerts DIR)")

    # -- compromise reports: the access history --------------------------------------------
    def history(self, object_ids: Iterable[str], originator: str, *,
                limit: int = 10_000) -> dict[str, Any]:
        """This log's events about ``object_ids`` (objects ``originator`` originated; one
        originator per event, so nothing about anyone else's objects), oldest first, at
        most ``limit``, each with an inclusion proof against a checkpoint signed now: every
        such event below its size, so that the originator can check that none was left
        out (CompromiseReports.check). The access history a compromise report carries,
        shaped like ``for_partner``'s answer."""
        latest = self.checkpoint()  # integrated and signed: every event below it indexed
        size = parse_checkpoint(self._text(latest.note)).size
        found: dict[int, AuditRecord] = {}
        for object_id in dict.fromkeys(object_ids):
            for event in self.store.find_audit(AuditFilter(
                    object_id=object_id, originator=originator, limit=limit + 1), size):
                found[event.index] = event
        events = [found[i] for i in sorted(found)]
        more = len(events) > limit
        events = events[:limit]
        proofs = self.tree.inclusions([e.index for e in events], size) if events else []
        return {"checkpoint": latest.note, "more": more,
                "events": [{"index": e.index, "body": e.body,
                            "proof": [encode_hash(h) for h in proof]}
                           for e, proof in zip(events, proofs, strict=True)]}

    def check_history(self, party: str, keys: Iterable[LogKey],
                      history: Mapping[str, Any], object_ids: Iterable[str],
                      originator: str, *, alert: bool = True
                      ) -> tuple[int, bytes, list[dict[str, Any]]]:
        """Verify an access history ``party`` sent (see ``history``): its checkpoint signed
        by one of ``keys`` (a retired one only up to its bound; ``alert``: see
        ``partner_checkpoint``), every event proven included in that tree, recorded by
        ``party``, about objects ``originator`` originated, naming at least one of
        ``object_ids``. Returns the checkpoint's size and root, and the events."""
        size, root = self.partner_checkpoint(party, keys, str(history.get("checkpoint", "")),
                                             alert=alert)
        wanted = set(object_ids)
        out: list[dict[str, Any]] = []
        for index, data, _, _ in _proven(party, size, root, history.get("events", [])):
            try:
                named = {str(o[0]) for o in data.get("objects", [])}
            except (KeyError, TypeError, IndexError):
                named = set()  # names none of them: refused below
            if data.get("node") != party or data.get("originator") != originator \
                    or not named & wanted:
                raise AuditError(f"{party} sent event {index}, which is not its record of "
                                 f"the objects reported")
            out.append({**data, "index": index})
        return size, root, out

    def alert(self, kind: str, party: str | None, detail: str, *, once: bool = False,
              **fields: Any) -> bool:
        """Raise an alert for the security officer, and audit it, in one transaction: an
        alert is never raised unrecorded, nor recorded unraised. ``once``: not if this
        very alert was raised before, open or resolved (an alert met again round after
        round, or by two processes at once: Store.raise_alert). Whether it was raised."""
        raised = self.store.raise_alert(kind, party, detail, timestamp(utc_now()),
                                        [self.alert_event(kind, party, detail, **fields)],
                                        once=once)
        if raised:
            self.alerted(kind, party, detail)
        return raised

    def resolve_alert(self, alert_id: int, note: str, *, person: Person | None = None,
                      actor: str) -> None:
        """Resolve an open alert, saying what was done, as ``person`` (who must hold the
        security-officer role) or, without one, the operator ``actor``: recorded with
        its event ``alert-resolve`` (the alert's kind, party and detail, and the note), in
        one transaction. The alert stays, with its own event; it is only no longer
        open."""
        if person is not None and "security-officer" not in person.roles:
            raise AuditError(f"{person.name} does not have the security-officer role",
                             hint="resolving an alert needs it")
        note = note.strip()
        if not note:
            raise AuditError("say what was done (--note): it is recorded with the alert")
        if len(note) > MAX_NOTE:
            raise AuditError(f"the note is longer than {MAX_NOTE:,} characters")
        alert = next((a for a in self.store.alerts() if a[0] == alert_id), None)
        if alert is None:
            raise AuditError(f"no alert #{alert_id}", hint="intelpact audit alerts DIR --all")
        event = self.event("alert-resolve", person=person,
                           actor=None if person is not None else actor, party=alert[2],
                           alert=alert[1], alert_id=alert_id, detail=alert[3], note=note)
        if not self.store.resolve_alert(alert_id, timestamp(utc_now()), note, [event]):
            when, _ = self.store.alert_resolutions()[alert_id]
            raise AuditError(f"alert #{alert_id} was resolved already, at {when}")

    def alert_event(self, kind: str, party: str | None, detail: str,
                    **fields: Any) -> AuditEvent:
        """The event of an alert raised in the transaction of another act (``alert``)."""
        return self.event("alert", party=party, alert=kind, detail=detail, **fields)

    @staticmethod
    def alerted(kind: str, party: str | None, detail: str) -> None:
        """Say in the node's log that an alert was raised (once it is durable)."""
        log.error("ALERT %s %s: %s", kind, party or "", detail)

    # -- background ---------------------------------------------------------------------
    def start(self, *, integrate_every: float = 0.5) -> None:
        """Integrate in the background; sign every ``checkpoint_interval`` seconds when
        the tree grew."""
        if self._worker is not None:
            return
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, args=(integrate_every,),
                                        name="intelpact-integrator", daemon=True)
        self._worker.start()

    def _run(self, every: float) -> None:
        signed_at = 0.0
        while not self._stop.wait(every):
            try:
                due = time.monotonic() - signed_at >= self.checkpoint_interval
                if self.store.audit_size() == self._integrated and not due:
                    continue  # nothing new: leave the write lock alone
                self.integrate(sign=due, steps=True)
                if due:
                    signed_at = time.monotonic()
            except Exception:  # noqa: BLE001 - keep integrating; the officer is told below
                log.exception("audit integration failed")

    def close(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        self._commit.close()
        if self.store.readonly:  # `audit verify`: it changes nothing it verifies
            return
        try:
            # Signed, so events appended since the last checkpoint (a CLI command's, or a
            # server's last seconds) cannot be cut from the end unseen while it is down.
            self.integrate(sign=True)
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.error("audit integration at close failed: %s (intelpact audit verify DIR)",
                      getattr(exc, "message", None) or exc)


class Sampled:
    """Events that may come in floods (the refusals of a locked-out name, of a partner's
    requests): per ``key``, the first is recorded at once, then at most one every
    ``every`` seconds, each saying how many it stands for (``refusals``: itself and those
    since the last record, with the fields of the latest). A count is recorded as soon as
    its window has passed, from a timer (:meth:`_due`), not when the same key comes
    again: a burst followed by silence is in the log within ``every`` seconds, and a
    crash loses at most that much; a count whose write fails is kept for the next
    round. Counts still held when the node closes are recorded then (:meth:`flush`), as
    are those of keys forgotten to bound memory (more than ``most``). The sum of
    ``refusals`` is every event: a flood cannot fill the log, and none goes
    unrecorded."""

    def __init__(self, audit: AuditLog, kind: str, *, every: float = 10.0,
                 most: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.audit, self.kind, self.every, self.most = audit, kind, every, most
        self.clock = clock  # what ``record``'s ``now`` is read from, for the timer
        self._lock = threading.Lock()
        # key -> (when its last event was recorded, events since not recorded)
        self._counts: dict[str, tuple[float, int]] = {}
        self._latest: dict[str, dict[str, Any]] = {}  # the fields each count is about
        self._timer: threading.Timer | None = None  # set while a count waits for it

    def record(self, key: str, now: float, **fields: Any) -> bool:
        """One event under ``key`` at ``now`` (``clock``'s reading); recorded as the
        audit log's ``record_served`` (True), or counted (False) and recorded by the
        timer once ``every`` seconds have passed since the key's last record."""
        with self._lock:
            last, count = self._counts.get(key, (-self.every, 0))
            if 0 <= now - last < self.every:
                self._counts[key] = (last, count + 1)
                self._latest[key] = fields
                self._arm(last + self.every - now)
                return False
            self._counts[key] = (now, 0)
            self._latest.pop(key, None)
            held = self._forget(now) if len(self._counts) > self.most else []
        self.audit.record_served(self.audit.event(self.kind, **fields, refusals=count + 1),
                                 *held)
        return True

    def _arm(self, delay: float) -> None:
        """Under the lock: run :meth:`_due` in ``delay`` seconds, unless it is set to."""
        if self._timer is None:
            self._timer = threading.Timer(max(delay, 0.0), self._due)
            self._timer.daemon = True
            self._timer.start()

    def _due(self) -> None:
        """The timer: record every count whose window has passed (its key's next window
        starts now, so a key still makes at most one record every ``every`` seconds), and
        set the timer again for the counts still waiting."""
        now = self.clock()
        with self._lock:
            self._timer = None
            taken = []
            for key, (last, count) in self._counts.items():
                if count and now - last >= self.every:
                    taken.append((key, self._latest.pop(key), count))
                    self._counts[key] = (now, 0)
            waiting = [last + self.every - now for last, count in self._counts.values()
                       if count]
            if waiting:
                self._arm(min(waiting))
        if not taken:
            return
        try:
            self.audit.record(*(self.audit.event(self.kind, **fields, refusals=count)
                                for _, fields, count in taken))
        except Exception:  # noqa: BLE001 - a thread of its own: nothing above it to tell
            log.exception("%d sampled %s record(s) could not be written; kept for the "
                          "next round", len(taken), self.kind)
            with self._lock:  # counted again, the newer fields kept, and tried again
                for key, fields, count in taken:
                    last, since = self._counts.get(key, (now, 0))
                    self._counts[key] = (last, since + count)
                    self._latest.setdefault(key, fields)
                self._arm(self.every)

    def _forget(self, now: float) -> list[AuditEvent]:
        """Under the lock: forget the keys with nothing recorded for ``every`` seconds;
        returns the counts they still held, as events to record."""
        out = []
        for key, (last, count) in list(self._counts.items()):
            if now - last >= self.every:
                del self._counts[key]
                fields = self._latest.pop(key, None)
                if count and fields is not None:
                    out.append(self.audit.event(self.kind, **fields, refusals=count))
        return out

    def flush(self) -> None:
        """Record every count not recorded yet (the node is closing), the timer stopped
        first, so none is written after."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            timer.join()  # one already running writes what it took before we go on
        with self._lock:
            held = self._forget(float("inf"))
        self.audit.record(*held)


def verify_checkpoint_note(note: str, origin: str,
                           keys: Iterable[LogKey]) -> tuple[int, bytes]:
    """Size and root of a signed checkpoint for ``origin`` under one of ``keys``: a
    retired key's signature counts only on a tree no larger than its bound (RetiredKey
    says so when nothing else signed it)."""
    cp = _verified(note, origin, keys, lambda text: _checkpoint(text, origin))
    return cp.size, cp.root


def _checkpoint(text: str, origin: str) -> tuple[int, Any]:
    try:
        cp = parse_checkpoint(text)
    except CheckpointError as exc:
        raise AuditError(f"checkpoint is malformed: {exc.message}") from None
    if cp.origin != origin:
        raise AuditError(f"checkpoint is for log {cp.origin!r}, expected {origin!r}")
    return cp.size, cp


def _verified(note: str, origin: str, keys: Iterable[LogKey],
              parse: Callable[[str], tuple[int, _T]]) -> _T:
    """What ``parse`` reads from the text of ``note``, a signed note of ``origin``'s under
    one of ``keys``; ``parse`` gives the tree size it is about, and a retired key's
    signature counts only up to its bound (RetiredKey says so when nothing else signed
    it)."""
    problem = "no key"
    retired: RetiredKey | None = None
    for key in keys:
        try:
            text = verify_note(note, origin, key.public)
        except NoteError as exc:
            problem = exc.message
            continue
        size, value = parse(text)
        if key.bound is not None and size > key.bound:
            retired = RetiredKey(key.key_id, key.bound, size)
            continue  # another key may have signed it too
        return value
    if retired is not None:
        raise retired
    raise AuditError(f"{_kind(note)} is not validly signed for {origin}: {problem}")


COUNT_LINE = "intelpact partner-audit count v1"


def count_text(origin: str, party: str, size: int, count: int) -> str:
    """The text of a count note: how many events about ``party``'s objects were numbered
    in the tree of ``size`` of the log ``origin``. Its first line is not a log's origin,
    so that it is never read as a checkpoint, nor a checkpoint as one."""
    return f"{COUNT_LINE}\n{origin}\n{party}\n{size}\n{count}\n"


def parse_count(text: str, origin: str) -> tuple[int, tuple[str, int, int]]:
    """(size, (party, size, count)) of a count note's ``text`` for the log ``origin``."""
    lines = text.split("\n")
    if len(lines) != 6 or lines[0] != COUNT_LINE or lines[5] or not all(
            _DECIMAL.fullmatch(n) for n in lines[3:5]):
        raise AuditError("the signed count is malformed")
    if lines[1] != origin:
        raise AuditError(f"the signed count is for log {lines[1]!r}, expected {origin!r}")
    size = int(lines[3])
    return size, (lines[2], size, int(lines[4]))


def _kind(note: str) -> str:
    # a note kept as a BLOB (a row altered) is not text: no count, and not verified
    return "the signed count" if isinstance(note, str) and note.startswith(
        COUNT_LINE + "\n") else "checkpoint"


def _unnumbered(data: Mapping[str, Any], numbered_before: bool) -> str | None:
    """What is wrong with the number of an event about a partner's objects, or None:
    from version 2 each has one (a whole number, below MAX_INTEGER: the next number is
    kept in a store's integer column), and one of version 1, from before numbering,
    never follows a numbered one."""
    seq = data.get("seq")
    if seq is None:
        if data.get("v") == 1 and not numbered_before:
            return None
        return "it is not numbered among the events about its originator's objects"
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        return "its number is not a whole number"
    if seq >= MAX_INTEGER:
        return f"its number, {seq}, is past what a store can count"
    return None


def _proven(party: str, size: int, root: bytes, events: Any
            ) -> list[tuple[int, dict[str, Any], str, bytes]]:
    """The events ``party`` sent (each its leaf index, body and inclusion proof), each
    proven included in its tree (``size``, ``root``): (index, the body decoded, the body,
    the proof's hashes one after another). Whatever is not of that shape is refused as
    not verifying (AuditError), never let through to fail further on: what a partner
    sends is checked before it is used."""
    if not isinstance(events, list):
        raise AuditError(f"{party} sent audit events that are not a list")
    out = []
    for item in events:
        try:
            index, body = int(item["index"]), str(item["body"])
            proof = [decode_hash(h) for h in item["proof"]]
            verify_inclusion(index, size, leaf_hash(body.encode("utf-8")), proof, root)
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("its body is not a JSON object")
        except RecursionError:  # signed, but no reader here could decode it
            raise AuditError(f"{party} sent an audit event that does not verify: its body "
                             "is nested too deep to read") from None
        except (KeyError, TypeError, ValueError, OverflowError, ProofError) as exc:
            # OverflowError: an "index" of Infinity, which int() cannot take
            raise AuditError(f"{party} sent an audit event that does not verify: "
                             f"{exc}") from None
        out.append((index, data, body, b"".join(proof)))
    return out


def _conflict(party: str, held: HeldCheckpoints, size: int, root: bytes, proof: Any, *,
              upto: int | None = None) -> str | None:
    """What makes ``party``'s checkpoint (``size``, ``root``, with its consistency
    ``proof``) inconsistent with the checkpoints of it ``held`` (of at most ``upto``
    events), or None: a different root for a size held, a smaller tree than the largest
    held, or no valid proof that it extends the largest held."""
    same = held.at(size) if upto is None or size <= upto else None
    if same is not None and same[1] != root:
        return f"{party} signed two different roots for its tree of {size} events"
    largest = held.largest(upto)
    if largest is None or largest[0] == size:
        return None
    if largest[0] > size:
        return (f"{party} showed a tree of {size} events after signing one of "
                f"{largest[0]}: its log shrank")
    try:
        if not isinstance(proof, dict) or proof.get("from") != largest[0]:
            raise ProofError(f"no consistency proof from {largest[0]} events")
        verify_consistency(largest[0], size, largest[1], root,
                           [decode_hash(h) for h in proof.get("proof", [])])
    except (ProofError, ValueError, TypeError) as exc:
        return (f"{party}'s checkpoint of {size} events is not consistent with its "
                f"earlier checkpoint of {largest[0]}: {exc}")
    return None


def _runs(indexes: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Sorted ``indexes`` as runs of consecutive ones, (first, last) each."""
    run: list[int] = []
    for i in sorted(indexes):
        if run and i != run[1] + 1:
            yield run[0], run[1]
            run = []
        run = [run[0] if run else i, i]
    if run:
        yield run[0], run[1]


def encode_hash(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_hash(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("a proof hash is not a string")
    return base64.b64decode(text.encode("ascii"), validate=True)


# -- full verification ---------------------------------------------------------------------


def verify_log(store: Store, origin: str, keys: Sequence[LogKey], macs: EventMacs,
               head: tuple[int, bytes] | None = None, *,
               progress: Callable[[int], None] | None = None,
               chunk: int = 20_000) -> Verdict:
    """Re-check the whole log from its event bodies: indexes contiguous; each event
    appended by this node (its MAC, ``macs``, from ``macs.since`` on); each event's
    leaf hash, and each subtree hash, equal to the one stored when it was integrated;
    the object index exactly the objects each integrated event names; every checkpoint
    validly signed (by a retired key only up to its bound, and each retired key's final
    checkpoint still there), with the root recomputed at its size, and each checkpoint a
    prefix of the next; and the tree at the size of ``head``, this node's record outside
    the database of how far it had integrated (Head), with the root recorded. Events
    appended and not yet integrated (past the hashes stored, every checkpoint and the
    head: ``Verdict.pending``) are checked as far as they can be: indexes, MACs, columns,
    well-formed fields and numbers; no stored hash, signed root or head covers them yet,
    nor does the object index file them. A range of
    ``chunk`` events at a time: memory stays bounded. Problems say where: the first
    altered event, the missing range, the checkpoint that no longer matches."""
    problems: list[str] = store.audit_mistyped()
    marks: dict[int, bytes] = {}
    checkpoints = store.checkpoints()
    stored_sizes = {cp.size for cp in checkpoints}
    for key in sorted((k for k in keys if k.bound), key=lambda k: k.bound or 0):
        if key.bound not in stored_sizes:
            problems.append(f"no checkpoint of size {key.bound} is stored: the final "
                            f"checkpoint of retired key {key.key_id} was deleted")
    for cp in checkpoints:
        if not isinstance(cp.note, str):
            problems.append(f"checkpoint of size {cp.size} (signed {cp.signed}): its note is "
                            "not text")
            continue
        try:
            size, root = verify_checkpoint_note(cp.note, origin, keys)
        except AuditError as exc:
            problems.append(f"checkpoint of size {cp.size} (signed {cp.signed}): "
                            f"{exc.message}")
            continue
        if size != cp.size:
            problems.append(f"checkpoint stored as size {cp.size} says size {size}")
        marks[size] = root
    # Every hash below this many events was stored when they were integrated (a signed
    # checkpoint promises its size was): one missing is a deletion.
    appended = store.audit_size()
    hashed = store.audit_integrated()
    if hashed > appended:
        problems.append(f"the stored tree holds the leaf hash of event {hashed - 1}, past the "
                        f"{appended} events stored: events were deleted from the end, or "
                        "hashes added")
    if head is not None and head[0] > appended:
        problems.append(f"the {appended} events stored are fewer than the {head[0]} this "
                        "node recorded outside the database (keys/audit-head.json): "
                        "events were deleted from the end, or the store was rolled back")
    stops = {*marks, *([head[0]] if head is not None else [])}
    integrated = max([min(hashed, appended), *stops])
    stray = store.audit_events(-MAX_INTEGER - 1, 0, limit=1)
    if stray:
        problems.append(f"an event is stored at index {stray[0].index}, below the log's "
                        "first (0): it was added")
    size = 0  # leaves rebuilt so far, contiguous from 0
    frontier: list[bytes] = []
    broken = False  # a gap: the tree cannot be rebuilt past it
    bad: set[Coord] = set()
    following: dict[str, int] = {}  # each originator's next number
    start = 0
    # ``chunk`` events at a time, from each chunk's last on: a gap (however wide) is not
    # walked through
    while rows := store.audit_events(start, appended, limit=chunk):
        stop = rows[-1].index + 1
        stored_leaves = store.audit_nodes([(0, r.index) for r in rows])
        leaves: list[bytes] = []
        named: dict[int, set[str]] = {}  # what each integrated event should be indexed under
        for row in rows:
            if not broken and row.index != size + len(leaves):
                first = size + len(leaves)
                problems.append(f"events {first}..{row.index - 1} are missing: the log was "
                                "cut")
                broken = True
            data = _decoded(row.body)
            if forged := macs.problem(row.index, row.body, row.mac):
                problems.append(forged)
            problems.extend(_check_row(row, data))
            problems.extend(_check_number(row.index, data, following))
            if row.index < integrated:
                named[row.index] = objects_named(data)
            leaf = leaf_hash(row.body.encode("utf-8") if isinstance(row.body, str)
                             else bytes(row.body))
            have = stored_leaves.get((0, row.index))
            if have is None and row.index < integrated:
                bad.add((0, row.index))
                problems.append(f"the leaf hash of event {row.index} is missing from the "
                                "stored tree: it was deleted")
            if have is not None and have != leaf:
                bad.add((0, row.index))
                problems.append(f"event {row.index} was altered: its body no longer hashes "
                                "to the leaf integrated into the tree")
            if not broken:
                leaves.append(leaf)
        made: list[tuple[int, int, bytes]] = []
        at = 0
        while at < len(leaves):  # integrate up to each checkpoint size, to compare roots
            upto = min((m for m in stops if m > size), default=None)
            step = len(leaves) - at if upto is None else min(len(leaves) - at, upto - size)
            more, frontier = extend(size, frontier, leaves[at:at + step])
            made.extend(more)
            size += step
            at += step
            if size in marks and fold(frontier) != marks[size]:
                problems.append(f"the {size} events of the checkpoint of size {size} no "
                                "longer hash to its signed root: the log was altered "
                                "before that point")
            if head is not None and size == head[0] and fold(frontier) != head[1]:
                problems.append(f"the first {size} events no longer hash to the root this "
                                "node recorded of them outside the database "
                                "(keys/audit-head.json): the log was altered before that "
                                "point, or the store replaced")
        upper = [(lvl, i, h) for lvl, i, h in made if lvl > 0]
        stored = store.audit_nodes([(lvl, i) for lvl, i, _ in upper])
        for lvl, i, h in upper:
            have = stored.get((lvl, i))
            lo, hi = i << lvl, (i + 1) << lvl
            if have is None and hi <= integrated:
                bad.add((lvl, i))
                problems.append(f"the stored hash of the subtree over events {lo}..{hi - 1} "
                                "is missing: it was deleted")
            if have is None or have == h:
                continue
            bad.add((lvl, i))
            if (lvl - 1, 2 * i) in bad or (lvl - 1, 2 * i + 1) in bad:
                continue  # follows from an altered event or subtree below
            problems.append(f"the stored hash of the subtree over events {lo}..{hi - 1} was "
                            "altered")
        problems.extend(_check_refs(named, store.audit_refs(start, stop)))
        if progress is not None:
            progress(len(rows))
        start = stop
    problems.extend(_check_refs({}, store.audit_refs(start)))
    for cp_size in sorted(marks):
        if cp_size > appended:
            problems.append(f"the checkpoint of size {cp_size} is beyond the {appended} "
                            "events stored: events were deleted from the end")
    ordered = sorted(m for m in marks if m > 0)
    for older, newer in zip(ordered, ordered[1:], strict=False):
        try:
            verify_consistency(older, newer, marks[older], marks[newer],
                               _proof_from(store, older, newer))
        except (ProofError, AuditError) as exc:
            problems.append(f"the checkpoint of size {older} is not a prefix of the "
                            f"checkpoint of size {newer} (stored tree): {exc}")
    return Verdict(appended, len(checkpoints), tuple(dict.fromkeys(problems)),
                   max(0, appended - integrated))


def _proof_from(store: Store, size1: int, size2: int) -> list[bytes]:
    tree = Tree(store.audit_nodes)
    return tree.consistency(size1, size2)


def _check_refs(want: Mapping[int, set[str]], stored: Iterable[tuple[str, int]], *,
                event: str = "event",
                searches: str = "audit show --object, the console, compromise reports"
                ) -> list[str]:
    """An object index (``audit_refs``: what ``audit show --object``, the console's object
    filter and a compromise report's access history search; ``partner_event_refs``, for
    the partner events kept) must file each event under exactly the objects its body
    names (``want``), as it was when filed. ``event``: what the problems call an event,
    before its leaf; ``searches``: what searches by the index."""
    stored = list(stored)
    if stored == [(oid, index) for index in sorted(want) for oid in sorted(want[index])]:
        return []  # each as filed, in the store's order: the usual case, told quickly
    have: dict[int, set[str]] = {}
    for object_id, index in stored:
        have.setdefault(index, set()).add(object_id)
    problems = []
    for index in sorted(want.keys() | have.keys()):
        missing = want.get(index, set()) - have.get(index, set())
        extra = have.get(index, set()) - want.get(index, set())
        if missing:
            problems.append(f"{event} {index} is missing from the object index under "
                            f"{len(missing)} object(s) it names ({min(missing)}…): searches "
                            f"by object ({searches}) do not find it")
        if extra:
            problems.append(f"{event} {index} is filed in the object index under "
                            f"{len(extra)} object(s) its body does not name ({min(extra)}…)")
    return problems


def _malformed(data: Mapping[str, Any]) -> str | None:
    """What is wrong with the fields of an event body that its readers index into
    (``objects``: [id, version] pairs; ``person``: an object), or None."""
    objects = data.get("objects", [])
    if not isinstance(objects, list) or not all(
            isinstance(o, list) and len(o) == 2 and all(isinstance(x, str) for x in o)
            for o in objects):
        return "its objects are not [id, version] pairs"
    if "person" in data and not isinstance(data["person"], dict):
        return "its person is not a JSON object"
    return None


def readable(event: str | bytes | dict[str, Any]
             ) -> tuple[dict[str, Any], None] | tuple[None, str]:
    """An event (its body, or the body decoded) as `audit show`, `audit partner` and
    the desk read it, or why it cannot be shown: not JSON, or nested too deep to decode,
    not a JSON object, or a field its readers index into of the wrong shape
    (``_malformed``, which `audit verify` and the watch check too). A row altered in the
    database must not stop the listing of the others with a traceback."""
    data: Any = event
    if isinstance(event, str | bytes):
        try:
            data = json.loads(event)
        except RecursionError:
            return None, "its body is nested too deep to read"
        except UnicodeDecodeError:  # bytes a loosely typed store kept in a text column
            return None, "its body is not UTF-8 text"
        except ValueError:
            return None, "its body is not JSON"
    if not isinstance(data, dict):
        return None, "its body is not a JSON object"
    shape = _malformed(data)
    return (None, shape) if shape is not None else (data, None)


_NOT_JSON = object()


def _decoded(body: str) -> Any:
    if not isinstance(body, str):  # a loosely typed store's BLOB: _check_row says so
        return _NOT_JSON
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        return _NOT_JSON


def _check_row(row: AuditRecord, data: Any) -> Iterator[str]:
    """The indexed columns must say what the body (decoded: ``data``) says."""
    if not isinstance(row.body, str):
        try:
            bytes(row.body).decode("utf-8")
            why = ""
        except UnicodeDecodeError:  # SQLite keeps such bytes as text: SQLiteStore._judged
            why = ": its bytes are not UTF-8"
        yield f"event {row.index}: body is not text{why}"
        return
    if data is _NOT_JSON:
        yield f"event {row.index}: body is not JSON"
        return
    if not isinstance(data, dict):
        yield f"event {row.index}: body is not a JSON object"
        return
    try:
        form = canonical(data)
    except ValueError:  # NaN or an infinity: no canonical form has one
        form = None
    if form != row.body:
        yield f"event {row.index}: body is not in canonical form"
    shape = _malformed(data)
    if shape is not None:
        yield f"event {row.index}: {shape}"
    person = data.get("person")
    who = person.get("id") if isinstance(person, dict) else data.get("subject")
    checks = (("at", row.at, data.get("at")), ("kind", row.kind, data.get("kind")),
              ("person", row.person, who),
              ("party", row.party, data.get("party")),
              ("originator", row.originator, data.get("originator")),
              ("seq", row.seq, data.get("seq")))
    for name, column, value in checks:
        if column != value:
            yield f"event {row.index}: its {name} column ({column!r}) differs from its body"


def _check_number(index: int, data: Any, following: dict[str, int]) -> Iterator[str]:
    """Each event about a partner's objects must be numbered next among the events about
    that originator's objects (``following``: the next number of each), from the first
    one numbered: a gap is what a partner reading the events about its objects would
    take for one left out of its answer."""
    if not isinstance(data, dict):
        return
    origin = data.get("originator")
    if not isinstance(origin, str):
        if "seq" in data:
            yield f"event {index} is numbered, but is about no partner's objects"
        return
    want = following.get(origin, 0)
    shape = _unnumbered(data, want > 0)
    if shape is not None:
        yield f"event {index}: {shape}"
        return
    seq = data.get("seq")
    if seq is None:
        return
    if seq != want:
        yield (f"event {index} is numbered {seq} among the events about {origin}'s objects, "
               f"where {want} was next: {origin} would find "
               f"{'events missing' if seq > want else 'a number given twice'} in this log")
    following[origin] = seq + 1


__all__ = [
    "KINDS", "AuditError", "AuditLog", "CheckpointsCrossed", "EventsWithheld", "LogKey",
    "Pseudonyms", "RetiredKey", "Verdict", "canonical", "count_text", "log_keys",
    "log_origin", "operator", "verify_checkpoint_note", "verify_log",
]
