"""The store interface. SQLite implements it now; PostgreSQL will implement it too.

The store knows nothing of people's rights: callers hand it the ids of the
labels a principal may read (computed once per distinct label by the model's
Policy), and every read filters on them *inside* the query. A page of ``limit``
visible objects is one query.

Objects are immutable per (collection, id, version): adding the same body again
is a no-op; a different body under an existing version is refused.
"""

from __future__ import annotations

import abc
import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..crypto.eventmacs import EventMacs
from ..crypto.merkle import Coord, Tree
from ..errors import IntelpactError
from ..model.echo import shown
from ..model.labels import Label
from ..model.markings import same_definition


class StoreError(IntelpactError):
    """The store could not do what was asked (conflict, bad cursor, missing collection...)."""


# A running `serve` holds its database's serve lock shared for its life (each of its
# processes: the supervisor and every worker of `serve --workers N`); applying a
# migration takes it exclusive, without waiting, so a newer intelpact never changes the
# schema under a serve still running (docs/node.md, "Migrations"). SQLite: an flock of
# the file named by the database's with SERVE_LOCK_SUFFIX; PostgreSQL: the session
# advisory lock SERVE_LOCK (an arbitrary constant: "intelpaS").
SERVE_LOCK_SUFFIX = ".serving"
SERVE_LOCK = 0x696E74656C706153
SERVING_HINT = ("stop every serve of this node (an older intelpact's too), then run "
                "intelpact migrate DIR or serve again")


def serving_refusal(where: str) -> str:
    """What a migration refused by a running serve's lock says."""
    return (f"{where}: a serve of this node is running on its database: stop it before "
            "migrating (its schema was not changed)")


def refuse_newer_schema(where: str, current: int, newest: int) -> None:
    """Refuse a store whose schema (``current``) is newer than the newest migration this
    intelpact ships: opened read only (schema_read) or to migrate (``_migrate``)."""
    if current > newest:
        raise StoreError(f"{where}: database schema version {current} is newer than this "
                         f"intelpact ({newest})",
                         hint="upgrade intelpact before opening this node")


def schema_read(where: str, done: Iterable[int], shipped: Iterable[int]) -> int:
    """The version of a store's schema with the migrations ``done`` (of those ``shipped``
    with this intelpact), read for a command that must not migrate it (``migrate=False``:
    every command but `serve`; one may run beside an older serve still running on the
    database, which expects the schema it knows): one with a migration not applied is
    refused, not migrated."""
    done, shipped = set(done), sorted(shipped)
    current, newest = max(done, default=0), (shipped[-1] if shipped else 0)
    refuse_newer_schema(where, current, newest)
    if set(shipped) - done:
        raise StoreError(f"{where}: database schema version {current} is older than this "
                         f"intelpact ({newest}): only `intelpact migrate` and `serve` migrate "
                         "it, not a command that may run beside an older serve still running "
                         "on it",
                         hint="stop the node if an older intelpact still serves it, then "
                         "migrate its database with this intelpact (intelpact migrate DIR, "
                         "or intelpact serve DIR, which migrates first); then run this "
                         "command again")
    return current


class AuditError(IntelpactError):
    """The audit log could not record, prove or verify. Defined beside the store, which
    raises it too: an act whose audit events could not be appended in the act's own
    transaction was rolled back, not done (services/audit.py re-exports it)."""


class BadCursor(StoreError):
    """A ``next`` value that this store did not issue for this query."""


class StoreFull(StoreError):
    """The store could not grow: the disk holding it (or its quota, or a size limit) is
    full. The transaction was rolled back; nothing of it is stored."""

    HINT = ("free space on the disk that holds the node's database (or raise its quota or "
            "size limit), then send again: what was refused was not stored, and sending "
            "again what was stored is answered 'already stored'")


class ReclassifiedMeanwhile(StoreError):
    """A reclassification and a version of its object met, each made on what its caller
    read before the other was kept: ``Store.add_objects`` was to store a version older
    than a reclassification kept since its labels were joined (its ``reclassified``), or
    ``Store.relabel`` found a version older than the reclassified one stored since the
    labels it was given were worked out (its ``older_than``). Either would have left
    that version at its old, lower label. The transaction was rolled back; nothing of it
    is done: the caller reads again and retries."""


class MarkingConflict(StoreError):
    """A marking-definition being stored says something else than the one stored under
    its id: another process of the node (a TAXII worker) stored that one meanwhile. The
    transaction was rolled back; nothing of it is stored. ``marking_ids``: those ids."""

    def __init__(self, marking_ids: Sequence[str]) -> None:
        self.marking_ids = list(marking_ids)
        super().__init__(f"a different marking-definition with id {', '.join(marking_ids)} "
                         "was stored meanwhile",
                         hint="publish again: the stored definition applies; a marking of "
                         "your own needs an id of its own")


def marking_differs(stored: str, body: str) -> bool:
    """True when ``body`` says something else than ``stored``, the marking-definition
    stored under its id (signatures aside: who vouched for it is not what it says)."""
    return stored != body and not same_definition(json.loads(stored), json.loads(body))


class StoreUnavailable(Exception):
    """The store's database server could not be reached, or went away during the
    request (it stopped, crashed or restarted: PostgreSQL stops when it cannot write
    its WAL). Not an IntelpactError on purpose: nothing that catches those (a
    refusal of one object, say) may take an outage for an answer; it is a 503, and
    senders retry."""

    HINT = ("check that the database server runs and has room (its log says why it "
            "stopped); then send again: what is stored already is answered 'already "
            "stored'")

    def __init__(self, message: str, *, hint: str | None = HINT) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        return f"{self.message}\nHint: {self.hint}" if self.hint else self.message


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def timestamp(value: dt.datetime) -> str:
    """RFC 3339 with exactly six fractional digits and 'Z', as TAXII 2.1 wants."""
    v = value if value.tzinfo is dt.UTC else value.astimezone(dt.UTC)
    return (f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:"
            f"{v.second:02d}.{v.microsecond:06d}Z")


# The usual form, parsed without strptime (every object's version goes through here).
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                      r"(?:[Zz]|\+00:00)\Z", re.ASCII)


def parse_timestamp(text: str) -> dt.datetime:
    """Parse an RFC 3339 UTC timestamp ('Z' or +00:00) with up to 9 fractional digits."""
    if not isinstance(text, str) or len(text) > 40:
        raise ValueError(f"not a timestamp: {shown(repr(text))}")  # a partner's, perhaps
    usual = _RFC3339.match(text)
    if usual is not None:
        y, mo, d, h, mi, sec, frac = usual.groups()
        try:
            return dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(sec),
                               int((frac or "0")[:6].ljust(6, "0")), tzinfo=dt.UTC)
        except ValueError:
            pass  # e.g. February 30th: the general parser below says what is wrong
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1]
    elif value.endswith("+00:00"):
        value = value[:-6]
    else:
        raise ValueError(f"timestamp {text!r} must be UTC (end in 'Z')")
    if "." in value:
        head, frac = value.split(".", 1)
        if not frac.isdigit() or not 1 <= len(frac) <= 9:
            raise ValueError(f"timestamp {text!r} has a malformed fraction")
        value = f"{head}.{frac[:6].ljust(6, '0')}"
    else:
        value += ".000000"
    try:
        parsed = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not RFC 3339 (YYYY-MM-DDTHH:MM:SS[.f]Z)")\
            from None
    return parsed.replace(tzinfo=dt.UTC)


def normalise_timestamp(text: str) -> str:
    return timestamp(parse_timestamp(text))


def stored_version(value: object) -> str:
    """A version as a partner's message, an event or a record names it, in the store's
    form; as it is if it is not a timestamp (then it names no version stored)."""
    try:
        return normalise_timestamp(str(value))
    except ValueError:
        return str(value)


@functools.lru_cache(maxsize=4096)
def label_key(label: Label) -> str:
    """A canonical text form of a label, unique per label (labels are few: cached)."""
    return json.dumps({
        "a": label.agreement, "r": label.rank, "o": label.originator,
        "rel": sorted(label.rel_to) if label.rel_to is not None else None,
        "c": sorted(label.caveats), "k": sorted(sorted(c) for c in label.communities),
        "s": sorted(label.sources),
    }, separators=(",", ":"), sort_keys=True)


def label_from_key(key: str) -> Label:
    d = json.loads(key)
    return Label(d["a"], d["r"], d["o"], frozenset(d["rel"]) if d["rel"] is not None else None,
                 frozenset(d["c"]), frozenset(frozenset(c) for c in d["k"]), frozenset(d["s"]))


@dataclass(frozen=True)
class NewObject:
    """One object version to store."""

    object_id: str
    object_type: str
    spec_version: str
    version: str | None  # normalised modified/created; None: use date_added
    body: str  # the JSON text served for this version, byte for byte
    body_hash: str
    label: Label  # base: decides visibility
    banner: Label
    originator: str
    has_portions: bool
    published_by: str | None = None
    received_from: str | None = None
    # The marking-definitions it cites (:func:`cited_markings`): queued with it for every
    # partner it is released to, ahead of it, whatever their own labels say.
    marking_refs: tuple[str, ...] = ()


def cited_markings(obj: Any) -> tuple[str, ...]:
    """The marking-definition ids a STIX object cites, in ``object_marking_refs`` and in
    its granular markings, each once, in order (a malformed object gives what it can)."""
    if not isinstance(obj, dict) or obj.get("type") == "marking-definition":
        return ()
    refs = obj.get("object_marking_refs")
    found = [r for r in refs if isinstance(r, str)] if isinstance(refs, list) else []
    granular = obj.get("granular_markings")
    if isinstance(granular, list):
        found += [g["marking_ref"] for g in granular
                  if isinstance(g, dict) and isinstance(g.get("marking_ref"), str)]
    return tuple(dict.fromkeys(r for r in found if r.startswith("marking-definition--")))


@dataclass(frozen=True)
class StoredObject:
    seq: int
    collection_id: str
    object_id: str
    object_type: str
    spec_version: str
    version: str
    date_added: str
    label_id: int
    banner_id: int
    originator: str
    has_portions: bool
    body: str
    body_hash: str = ""


@dataclass(frozen=True)
class Purging:
    """How :meth:`Store.purge_chosen` purges the versions it chose of one object, as
    :meth:`Store.purge` takes them: each row's tombstone, the audit events of the rows
    purged, and the notices made of them and of the object's versions destroyed before."""

    tombstone: Callable[[StoredObject], str]
    audit: Callable[[Sequence[StoredObject]], Sequence[AuditEvent]]
    notices: Callable[[Sequence[StoredObject], Sequence[StoredObject]],
                      Sequence[Notice]] | None = None


@dataclass(frozen=True)
class Purged:
    """What one :meth:`Store.purge_chosen` did: the objects (id, originator) it purged,
    and the last ``seq`` it read."""

    objects: list[tuple[str, str]]
    last: int


@dataclass(frozen=True)
class AddResult:
    object_id: str
    version: str
    outcome: str  # "added", "exists", "conflict" or "recalled" (its originator recalled it)
    message: str


MAX_INTEGER = 2**63 - 1  # the largest integer a store's columns hold (BIGINT, INTEGER)
# Search text shorter than this has no trigram to look up: it is tested only on the
# newest SHORT_TEXT_ROWS rows the reader may see (a bounded scan, said on the console's page).
SHORT_TEXT = 3
SHORT_TEXT_ROWS = 10_000


def fold_text(text: str) -> str:
    """The search's case folding, of the text indexed and of the text searched for alike
    (``Query.text``): both stores index a name and description so folded (SQLite's
    `objects_text`, PostgreSQL's `objects_folded`), and fold the query so, since a query
    folded otherwise than its index ("straße" is "strasse" folded) finds nothing. It is
    Python's full case folding, as the node's re-check of what it serves: not SQLite's
    nor PostgreSQL's own, which differ from each other and by the server's locale."""
    return text.casefold()


def contains_pattern(text: str) -> str:
    """A LIKE pattern (escape character backslash) for text that holds ``text``."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass(frozen=True)
class Query:
    """TAXII filters. ``versions``: "last", "first", "all" or normalised timestamps."""

    ids: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    versions: tuple[str, ...] = ("last",)
    spec_versions: tuple[str, ...] = ()
    added_after: str | None = None
    limit: int = 100
    cursor: str | None = None
    # The console's search (interfaces/console): narrower, never wider.
    text: str | None = None  # in name or description, as fold_text folds (the node re-checks)
    originators: tuple[str, ...] = ()
    label_ids: tuple[int, ...] = ()  # only rows whose base label is one of these
    added_before: str | None = None
    newest_first: bool = False  # pages walk from the newest row back
    # Only rows whose body names this id as a JSON string (a superset of the
    # relationships and sightings that refer to it: the node re-checks which property).
    refers_to: str | None = None

    def fingerprint(self) -> str:
        import hashlib
        fields: list[Any] = [self.ids, self.types, self.versions, self.spec_versions,
                             self.added_after]
        if (self.text is not None or self.originators or self.label_ids
                or self.added_before is not None or self.newest_first):
            fields += [self.text, self.originators, self.label_ids, self.added_before,
                       self.newest_first]
        if self.refers_to is not None:
            fields.append(self.refers_to)
        text = json.dumps(fields)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Page:
    rows: Sequence[StoredObject]
    more: bool
    next: str | None


@dataclass(frozen=True)
class Collection:
    collection_id: str
    title: str
    description: str
    alias: str | None


@dataclass(frozen=True)
class PersonRecord:
    name: str
    party: str
    clearance: str
    caveats: tuple[str, ...]
    communities: tuple[str, ...]
    roles: tuple[str, ...]
    password_hash: str | None
    created: str
    revoked: str | None = None


@dataclass(frozen=True)
class SessionRecord:
    """A console session (interfaces/console/sessions.py): ``digest`` is the SHA-256
    (hex) of the cookie's token, never the token itself."""
    digest: str
    name: str
    csrf: str
    created: str
    seen: str


@dataclass(frozen=True)
class PeerRecord:
    """A partner node, pinned from its signed card."""

    party: str
    url: str
    public_key: str
    key_id: str
    tls_cert: str
    tls_fingerprint: str
    card: str
    added: str


@dataclass(frozen=True)
class Dissemination:
    party: str
    object_id: str
    version: str
    body_hash: str
    released: str
    receipt_at: str | None
    receipt_id: int | None  # the partner's signed receipt: Store.receipt(receipt_id)
    via: str | None = None  # passed on by this holder, with our consent (None: by us)


@dataclass
class StatusRecord:
    status_id: str
    collection_id: str
    owner: str
    created: str
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEvent:
    """One event to append to the audit log. ``body`` is the leaf data: canonical JSON
    that holds everything the event says; the other fields only index it.

    An event about a partner's objects is numbered among this log's events about that
    ``originator``'s objects when it is appended (docs/audit.md, "Completeness"):
    ``seq_at`` is where ``,"seq":N`` goes into ``body`` (``numbered``), which keeps it
    canonical because the keys before that point sort before "seq" and the rest after."""

    at: str
    kind: str
    body: str
    person: str | None = None
    party: str | None = None
    originator: str | None = None
    object_ids: tuple[str, ...] = ()
    seq_at: int | None = None

    def numbered(self, seq: int | None) -> str:
        """The leaf data: ``body``, numbered ``seq`` if it is an event to number."""
        if self.seq_at is None or seq is None:
            return self.body
        return f'{self.body[:self.seq_at]},"seq":{seq}{self.body[self.seq_at:]}'


@dataclass(frozen=True)
class AuditRecord:
    """An appended event at leaf ``index``."""

    index: int
    at: str
    kind: str
    person: str | None
    party: str | None
    originator: str | None
    body: str
    seq: int | None = None  # its number among the events about ``originator``'s objects
    mac: bytes | None = None  # this node's MAC of it (crypto/eventmacs.py), if it has one


@dataclass(frozen=True)
class AuditFilter:
    """Which events to find; every field narrows. Events come oldest first."""

    object_id: str | None = None
    persons: tuple[str, ...] = ()  # any of these pseudonyms (Pseudonyms.every)
    party: str | None = None
    originator: str | None = None
    kinds: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    after: int = -1  # leaf index to continue after
    limit: int = 1000


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint this node signed (a C2SP signed note over the tree of ``size``)."""

    size: int
    note: str
    signed: str


@dataclass(frozen=True)
class KeptEvent:
    """A partner's audit event about our objects, kept as its watch proved it
    (Store.partner_events): its leaf in the partner's log, its number among the events
    about our objects (None: from before numbering), its body as signed into the log,
    and its inclusion proof in the partner's checkpoint of ``size``: the proof's SHA-256
    hashes one after another."""

    index: int
    seq: int | None
    body: str
    proof: bytes
    size: int
    kind: str | None = None  # as the store filed it (filed_under; None: under no kind)


@dataclass(frozen=True)
class CompromiseRecord:
    """A compromise report this node filed or received (services/compromise.py)."""

    report_id: str
    direction: str  # "outgoing" (to the originator), "incoming" (to us), "local" (ours)
    reporter: str
    originator: str
    object_count: int
    filed: str
    discovered: str
    deadline: str  # discovered + the agreement's breach_notice_hours
    body: str  # the signed report, canonical JSON, with its access history
    delivered: str | None = None  # outgoing: receipt verified; incoming: received
    acknowledged: str | None = None
    ack_body: str | None = None  # the originator's signed acknowledgement
    closed: str | None = None
    close_body: str | None = None  # the signed closure, by either side
    history_checked: str | None = None  # incoming: when its history was last checked
    history_check: str | None = None  # and what was found (CompromiseReports.check)


@dataclass(frozen=True)
class CompromiseMessage:
    """A report, acknowledgement or closure queued for one partner."""

    message_id: int
    report_id: str
    party: str
    kind: str  # "report", "ack" or "close"
    body: str  # the signed message, canonical JSON
    made: str
    delivered: str | None = None
    attempts: int = 0  # how often the partner refused it
    error: str | None = None  # why the last attempt failed


def event_object_ids(body: str) -> set[str]:
    """The ids of the objects an event body names (``objects``: [id, version] pairs), as
    the integrator indexes them (``audit_refs``) and ``audit verify`` expects them. None
    for a body that is not a JSON object: such an event is indexed under nothing, and
    ``audit verify`` reports the body."""
    try:
        return objects_named(json.loads(body))
    except (ValueError, RecursionError):  # RecursionError: a row nested deep by hand
        return set()


def filed_under(body: str) -> tuple[str | None, set[str]]:
    """What a partner's audit event kept here is filed under, for the searches by key
    (Store.partner_events): its kind (None if it has none), and the ids of the objects
    it names (objects_named); each only if it holds no NUL character, which PostgreSQL's
    text cannot keep. A body that is not a JSON object is filed under nothing."""
    try:
        return filing(json.loads(body))
    except (ValueError, RecursionError):
        return None, set()


def filing(event: Any) -> tuple[str | None, set[str]]:
    """``filed_under`` of an event body decoded already."""
    kind = event.get("kind") if isinstance(event, dict) else None
    return (kind if isinstance(kind, str) and "\x00" not in kind else None,
            {oid for oid in objects_named(event) if "\x00" not in oid})


def objects_named(event: Any) -> set[str]:
    """``event_object_ids`` of an event body decoded already."""
    found = event.get("objects", []) if isinstance(event, dict) else []
    if not isinstance(found, list):  # altered before it was integrated: indexed under none
        return set()
    return {o[0] for o in found if isinstance(o, list) and o and isinstance(o[0], str)}


# The MACs of the audit events appended in this thread's write transaction, if any
# (Store._appending).
APPENDING: ContextVar[EventMacs | None] = ContextVar("APPENDING", default=None)

# Given the new tree size, its root, and a reader of the tree as integrated so far
# (inside the integrating transaction), return a signed checkpoint note, or None.
Signer = Callable[[int, bytes, Tree], str | None]

# A checkpoint of a partner's log kept here: (size, root, note, received).
PartnerCheckpoint = tuple[int, bytes, str, str]


class HeldCheckpoints(abc.ABC):
    """The checkpoints of a partner kept here, read inside the write transaction that
    keeps another (HeldCheck, RotationCheck): only the ones a judgment needs, each by
    the table's key, however many are kept (a busy partner signs one every few seconds)."""

    @abc.abstractmethod
    def at(self, size: int) -> PartnerCheckpoint | None:
        """The one kept of tree size ``size``."""

    @abc.abstractmethod
    def largest(self, upto: int | None = None) -> PartnerCheckpoint | None:
        """The largest kept (of at most ``upto`` events)."""


# Given the checkpoints kept for a partner, raise if the one about to be kept conflicts
# with them (AuditLog.witness).
HeldCheck = Callable[[HeldCheckpoints], None]

# This node's key rotation (Store.retire_key): given the tree's size, its root and a reader
# of the tree (inside the rotating transaction), return the old key's final checkpoint
# note of that tree, the announcement to queue for every partner, and the audit events.
Sealer = Callable[[int, bytes, Tree], tuple[str, str, Sequence[AuditEvent]]]

# A partner's key rotation (Store.accept_rotation): given the checkpoints of the partner
# held, under the write lock, return the old key's bound and the audit events to append,
# or raise to refuse it.
RotationCheck = Callable[[HeldCheckpoints], tuple[int, Sequence[AuditEvent]]]


@dataclass(frozen=True)
class Notice:
    """A signed notice between nodes (recall, destroyed, reclassify), in or out."""

    notice_id: str
    direction: str  # "out" or "in"
    party: str  # the other node
    kind: str
    object_id: str | None
    body: str  # the signed notice, canonical JSON
    made: str
    delivered: str | None = None
    receipt: str | None = None
    attempts: int = 0
    error: str | None = None


# Notices kept with what records them, and their audit events, in one transaction (the
# onward-release reports of what went: Store.mark_delivered, Store.add_pulled)
Onward = tuple[Sequence[Notice], Sequence[AuditEvent]]


@dataclass(frozen=True)
class RecallRecord:
    """At the originator: an object recalled from a holder, and its confirmation."""

    object_id: str
    party: str
    notice_id: str
    reason: str
    issued: str
    destroyed: str | None  # when the holder's answer to this recall confirmed it
    receipt: str | None  # that answer, the signed destroyed notice
    # why the holder's latest answer to this recall did not confirm it (None: not
    # answered yet, or confirmed)
    unconfirmed: str | None = None


@dataclass(frozen=True)
class ConsentRecord:
    """A request for consent to a third-party release, and its outcome (both sides)."""

    request_id: str
    direction: str  # "out" at the holder that asked, "in" at the originator asked
    holder: str
    originator: str
    recipient: str
    object_id: str
    versions: tuple[str, ...]
    purpose: str
    requested_expires: str | None
    requester: str  # JSON: the asking person's pseudonym, nationality and clearance
    made: str
    status: str = "pending"  # "pending", "approved" or "refused"
    decided: str | None = None
    reason: str | None = None
    token: str | None = None  # the signed consent token, canonical JSON
    expires: str | None = None


class Store(abc.ABC):
    """What every backend provides. All methods are safe to call from any thread."""

    schema_version: int
    # Whether index_text has work to do: the backend keeps a text index apart from the
    # objects' transaction (SQLite's FTS5 index; PostgreSQL searches the bodies themselves)
    text_index_apart: bool = False
    # Whether reads run in this process on local files, waiting on no server: quick
    # enough for the HTTP API to make a one-object read on its event loop (SQLite)
    reads_local: bool = False
    # What gives each audit event appended its MAC, and checks it as it is integrated
    # (crypto/eventmacs.py): set by the node's AuditLog; None, events carry none
    event_macs: EventMacs | None = None
    # Opened read-only (``open_store(readonly=True)``: `audit verify`): every write is
    # refused, by the store and by the database itself (SQLite's mode=ro; PostgreSQL's
    # default_transaction_read_only)
    readonly: bool = False

    def _refuse_write(self) -> None:
        """Before any write transaction: refused on a store opened read-only."""
        if self.readonly:
            raise StoreError("this store was opened read-only (intelpact audit verify): "
                             "nothing may be written to it")

    @contextmanager
    def _appending(self) -> Iterator[None]:
        """Around a write transaction: the audit events it appends (``_append_audit``,
        which only the transaction's connection reaches) carry this store's MACs."""
        token = APPENDING.set(self.event_macs)
        try:
            yield
        finally:
            APPENDING.reset(token)

    # labels ------------------------------------------------------------------------
    @abc.abstractmethod
    def labels(self) -> dict[int, Label]:
        """Every label the store knows, by id."""

    # collections -------------------------------------------------------------------
    @abc.abstractmethod
    def add_collection(self, collection: Collection,
                       audit: Sequence[AuditEvent] = ()) -> None:
        """Add ``collection`` and append ``audit``, in one transaction."""

    @abc.abstractmethod
    def collections(self) -> list[Collection]: ...

    @abc.abstractmethod
    def collection(self, collection_id: str) -> Collection | None: ...

    # objects -----------------------------------------------------------------------
    @abc.abstractmethod
    def add_objects(self, collection_id: str, objects: Sequence[NewObject],
                    markings: Iterable[tuple[str, str]] = (),
                    release: Callable[[NewObject], Iterable[str]] | None = None,
                    audit: Callable[[Sequence[AddResult]], Sequence[AuditEvent]] | None = None,
                    reclassified: Mapping[str, Iterable[dt.datetime]] | None = None
                    ) -> list[AddResult]:
        """Store object versions and marking-definitions (id, body) in one durable
        transaction, with an outbox row for every party ``release`` names for each
        newly added object, preceded by one for each stored marking-definition it cites
        (``NewObject.marking_refs``) not yet queued for that party, and the audit events
        ``audit`` makes of the results. Returns one result per object, in order. A
        version of an object its originator recalled from this node (an incoming recall
        notice kept) is not stored: "recalled". A
        marking-definition whose id holds a different body already raises
        :class:`MarkingConflict`: nothing of the batch is stored. ``reclassified``: by
        object id, the versions of the kept reclassifications (this node's own, and the
        notices applied here) the caller joined the labels of ``objects`` with
        (``reclassified_labels``); a version older than one kept and not named there
        (kept since the caller read them) raises :class:`ReclassifiedMeanwhile`, and
        nothing is stored. None: the labels were not joined, nothing is checked."""

    @abc.abstractmethod
    def query(self, collection_id: str, readable: Sequence[int], query: Query) -> Page:
        """Visible object versions, oldest date_added first, one page."""

    def index_text(self, limit: int = 1000) -> int:
        """Add up to ``limit`` stored versions, oldest first, to the search's text index,
        where the backend keeps one apart from the objects' transaction; returns how many
        (0: the index is current). A query with text brings the index up to date itself
        first; calling this in the background only keeps that short. A backend without a
        text index has nothing to do."""
        return 0

    # The search's portions (migration 0020, docs/console.md): a granular-marked name or
    # description is searched only by a reader who may read the label that gates it. The
    # node works those labels out from the body, as it serves it (services/access.py,
    # portion_gates); the store keeps them, and a query with text matches a portion's
    # text only where its label is one of ``readable``.
    @abc.abstractmethod
    def portions_pending(self, limit: int = 1000) -> list[StoredObject]:
        """Up to ``limit`` stored versions (oldest first) whose portions' labels the
        search does not have yet: those stored with portions since the node last gave
        them (:meth:`label_portions`), and all of them after the stored labels were worked
        out under another agreement text (:meth:`relabel_versions`)."""

    @abc.abstractmethod
    def label_portions(self, gates: Mapping[int, tuple[Label | None, Label | None]]) -> int:
        """Keep, for each ``seq`` of :meth:`portions_pending`, the labels that gate its name
        and its description (None: that property is not a portion; both None: the version
        has no portion the search looks in), in one transaction, and stop waiting for it.
        A version no longer waiting (recalled meanwhile, or given by another thread) is
        left as it is. Returns how many were kept."""

    # The agreement text the stored labels are under (migration 0021, services/relabel.py):
    # a version's labels are worked out from its markings under the text in force when it
    # is stored, and again under a text pinned since. ``labelled_under``: the text this
    # process applies, once the stored labels are under it (set by the node); while they
    # are under another text, or being worked out under one, this process's writes of
    # labels (add_objects, relabel, label_portions) are refused in their transaction, so
    # that a process started before an amendment cannot store labels under the old text
    # after the new one's. None: not checked (a store used without a node).
    labelled_under: str | None = None

    @abc.abstractmethod
    def labels_agreement(self) -> str | None:
        """The content hash of the agreement text the stored labels were worked out under;
        None when not recorded (a store from before migration 0021) or while they are being
        worked out again (:meth:`begin_relabel`, until :meth:`relabel_versions` is done)."""

    @abc.abstractmethod
    def begin_relabel(self, content_hash: str) -> tuple[bool, str | None]:
        """Record that the stored labels are being worked out under the agreement text of
        ``content_hash`` (from now on a process under another text writes none), unless
        they are under it already. Returns whether it was recorded, and the text they were
        under (None: not recorded)."""

    @abc.abstractmethod
    def versions_after(self, seq: int, limit: int) -> list[StoredObject]:
        """Up to ``limit`` stored versions, not recalled, with ``seq`` above ``seq``, in
        ``seq`` order, whatever their labels: for the node to work their labels out."""

    @abc.abstractmethod
    def relabel_versions(self, labels: Sequence[tuple[StoredObject, Label, Label]],
                         content_hash: str, upto: int,
                         audit: Callable[[], Sequence[AuditEvent]]) -> bool:
        """In one transaction: give each version of ``labels`` (as
        :meth:`versions_after` read it; one recalled since is left) its (base, banner)
        labels, worked out under the text of ``content_hash`` (:meth:`begin_relabel`),
        and work out again which versions of their objects are superseded; then, if no
        version (not recalled) has a ``seq`` above ``upto``, record that the stored
        labels are under that text, have every version with portions wait for its
        portions' labels again (:meth:`portions_pending`), and append the events
        ``audit`` makes. Returns whether it recorded so (or found it recorded by another
        process: nothing is written then). Raises :class:`StoreError` when the labels
        are not being worked out under that text (another process began a relabel under
        another one)."""

    def held(self, object_ids: Sequence[str],
             versions: tuple[str, ...] = ("all",)) -> list[StoredObject]:
        """Every stored row of these objects, in every collection, whatever its label:
        for the node's own bookkeeping (recalls, reports, the sources of what is
        published, banners of the audit log), never to serve a person. An id holding a
        NUL character names nothing stored (no STIX id has one, and PostgreSQL's text
        cannot hold one), so none is looked up: a partner's event kept here may name one,
        and PostgreSQL refused the whole query (audit partner's banner, the desk)."""
        everything = list(self.labels())
        unique = [oid for oid in dict.fromkeys(object_ids) if "\x00" not in oid]
        rows: list[StoredObject] = []
        for start in range(0, len(unique), 500):
            chunk = tuple(unique[start:start + 500])
            for collection in self.collections():
                cursor = None
                while True:
                    page = self.query(collection.collection_id, everything,
                                      Query(ids=chunk, versions=versions, limit=1000,
                                            cursor=cursor))
                    rows.extend(page.rows)
                    if not page.more:
                        break
                    cursor = page.next
        return rows

    def originators(self, object_ids: Sequence[str]) -> dict[str, str]:
        """The originator of each of these objects held here (its latest version's): only
        that party issues new versions of it (docs/controls.md)."""
        return {row.object_id: row.originator
                for row in (self.held(object_ids, versions=("last",)) if object_ids else [])}

    @abc.abstractmethod
    def delete(self, collection_id: str, readable: Sequence[int], object_id: str,
               versions: tuple[str, ...], spec_versions: tuple[str, ...] = (),
               audit: Callable[[Sequence[StoredObject]], Sequence[AuditEvent]] | None = None,
               keep: Callable[[StoredObject], bool] | None = None) -> int:
        """Delete the visible versions of an object that ``versions`` and
        ``spec_versions`` select (TAXII's match[version] and match[spec_version]), only
        those ``keep`` takes if given (the ones the person could be served), and append
        the audit events ``audit`` makes of exactly the rows deleted, in one
        transaction. Returns how many were deleted."""

    @abc.abstractmethod
    def holds(self, collection_id: str, object_id: str, version: str | None,
              body_hash: str) -> bool:
        """True when exactly this body is stored for (collection, id, version), and not
        recalled: a tombstone keeps the body hash of what it replaced, but holds nothing
        (a receipt saying a recalled version is held would be false)."""

    @abc.abstractmethod
    def markings(self) -> list[str]:
        """The bodies of every marking-definition stored."""

    @abc.abstractmethod
    def marking(self, marking_id: str) -> str | None:
        """The body of one stored marking-definition."""

    @abc.abstractmethod
    def count(self, collection_id: str) -> int: ...

    # statuses ----------------------------------------------------------------------
    @abc.abstractmethod
    def save_status(self, status: StatusRecord) -> None: ...

    @abc.abstractmethod
    def status(self, status_id: str) -> StatusRecord | None: ...

    # people and tokens ----------------------------------------------------------------
    @abc.abstractmethod
    def add_person(self, person: PersonRecord, audit: Sequence[AuditEvent] = ()) -> None:
        """Add ``person`` and append ``audit``, in one transaction (a name taken already:
        StoreError, nothing changed)."""

    @abc.abstractmethod
    def person(self, name: str) -> PersonRecord | None: ...

    @abc.abstractmethod
    def people(self) -> list[PersonRecord]: ...

    @abc.abstractmethod
    def revoke_person(self, name: str, when: str, audit: Sequence[AuditEvent] = ()) -> bool:
        """Revoke ``name`` and their tokens, end their console sessions and append
        ``audit``, in one transaction; False (and no event appended) if they were revoked
        already."""

    @abc.abstractmethod
    def set_password(self, name: str, password_hash: str,
                     audit: Sequence[AuditEvent] = ()) -> None:
        """Replace ``name``'s password hash, end their console sessions and append
        ``audit``, in one transaction."""

    # -- failed logins, counted for the whole node (services/people.py) -----------------
    @abc.abstractmethod
    def login_failed(self, key: str, now: float, window: float, limit: int,
                     lockout: float) -> float:
        """Count a failed login against ``key`` (a digest of a throttle's key) at ``now``
        (Unix seconds), in a window of ``window`` seconds from its first failure; the
        ``limit``-th locks it for ``lockout`` seconds and starts the count again. Returns
        when its lock ends (0.0: not locked). Keys whose window and lock are both over
        are deleted in the same transaction."""

    @abc.abstractmethod
    def login_lock(self, key: str) -> tuple[float, int]:
        """When ``key``'s lock ends (0.0: none) and its failures counted: (0.0, 0) for a
        key with none."""

    @abc.abstractmethod
    def login_cleared(self, key: str) -> None:
        """Forget ``key``'s failures and lock (a password checked right)."""

    # -- console sessions (interfaces/console/sessions.py) ---------------------------------
    @abc.abstractmethod
    def add_session(self, session: SessionRecord, *, idle_before: str) -> None:
        """Keep a new session, and delete every session last seen before
        ``idle_before`` (idle ones, never returned again), in one transaction."""

    @abc.abstractmethod
    def session(self, digest: str, *, idle_before: str) -> SessionRecord | None:
        """The session whose token has SHA-256 ``digest``, unless it was last seen
        before ``idle_before`` (the idle timeout is enforced here, in the query)."""

    @abc.abstractmethod
    def touch_session(self, digest: str, when: str) -> None:
        """Note that the session was seen at ``when`` (``seen`` only moves forward)."""

    @abc.abstractmethod
    def end_session(self, digest: str) -> None:
        """End one session (log-out)."""

    @abc.abstractmethod
    def end_sessions(self, name: str) -> int:
        """End every session of ``name``; how many there were."""

    @abc.abstractmethod
    def add_token(self, digest: str, name: str, label: str, created: str,
                  audit: Sequence[AuditEvent] = ()) -> None:
        """Keep a token's digest and append ``audit``, in one transaction."""

    @abc.abstractmethod
    def token_owner(self, digest: str) -> str | None:
        """The name of the person holding an unrevoked token with this digest."""

    @abc.abstractmethod
    def revoke_tokens(self, name: str, when: str, digest: str | None = None,
                      audit: Callable[[int], Sequence[AuditEvent]] | None = None) -> int:
        """Revoke ``name``'s unrevoked tokens (the one with ``digest``, if given) and
        append the events ``audit`` makes of how many that was, in one transaction;
        returns how many."""

    # federation ----------------------------------------------------------------------
    @abc.abstractmethod
    def add_peer(self, peer: PeerRecord, audit: Sequence[AuditEvent] = ()) -> None:
        """Pin a partner (replacing an earlier card of the same party) and append
        ``audit``, in one transaction."""

    @abc.abstractmethod
    def peers(self) -> list[PeerRecord]: ...

    @abc.abstractmethod
    def enqueue(self, party: str, decide: Callable[[StoredObject], bool],
                object_ids: Sequence[str] | None = None) -> int:
        """Put every stored object ``decide`` allows (of ``object_ids`` only, if given)
        into ``party``'s outbox, each preceded by the stored marking-definitions it cites
        (as :meth:`add_objects` does). An entry queued already stays as it is. Returns
        how many entries were added (one queued already is not counted)."""

    @abc.abstractmethod
    def pending(self, party: str, limit: int) -> list[tuple[int, StoredObject]]:
        """Undelivered outbox entries for ``party``, oldest first."""

    @abc.abstractmethod
    def released_after(self, party: str, after: int,
                       limit: int) -> list[tuple[int, StoredObject]]:
        """Every outbox entry for ``party`` numbered after ``after``, with its number (for
        the partner's pull: its cursor). Each partner's entries are numbered apart
        (migration 0035), so the numbers it is given say nothing of what went to others."""

    @abc.abstractmethod
    def mark_delivered(self, party: str, outbox_ids: Sequence[int], when: str,
                       receipt: str, onward: Onward = ((), ())) -> None:
        """Record delivery of these entries and the partner's receipt, and keep the
        ``onward`` notices with their events (the onward-release reports of a third
        party's objects among them), in one transaction: killed after the entries were
        marked, the reports were never made (nothing is pushed again)."""

    @abc.abstractmethod
    def failed_attempt(self, party: str, outbox_ids: Sequence[int]) -> None: ...

    @abc.abstractmethod
    def record_release(self, party: str, outbox_ids: Sequence[int], when: str,
                       audit: Callable[[Sequence[int]], Sequence[AuditEvent]]) -> list[int]:
        """Before ``party``'s outbox entries ``outbox_ids`` are pushed: in one transaction,
        the events ``audit`` makes for those of them whose release is not recorded yet
        (an earlier push of theirs did not arrive), and their release recorded at
        ``when``. Returns those ids: one ``release`` event per entry, however often it
        is tried."""

    @abc.abstractmethod
    def add_pulled(self, party: str, objects: Sequence[tuple[str, str, str]], when: str,
                   audit: Callable[[Sequence[tuple[str, str, str]]], Sequence[AuditEvent]],
                   onward: Callable[[Sequence[tuple[str, str, str]]], Onward] | None = None
                   ) -> list[tuple[str, str, str]]:
        """``party`` pulled ``objects`` ((id, version, body hash)) from our outbox: a
        dissemination row for each it did not hold yet, without a receipt (a pull has
        none; a row there already, e.g. pushed, keeps its receipt), the audit events
        ``audit`` makes of those, and the notices with their events ``onward`` makes of
        them (onward-release reports), in one transaction. Returns those: a page pulled
        again (the partner chooses its cursor) records and reports nothing more."""

    @abc.abstractmethod
    def disseminations(self, *, object_id: str | None = None,
                       party: str | None = None) -> list[Dissemination]:
        """The dissemination record: every (partner, id, version) released to a partner
        (pushed, with its receipt; pulled, without), or passed on by a holder with our
        consent (``via``); only ``object_id``'s, or only ``party``'s, when given. Recall
        and reclassify find an object's holders here."""

    @abc.abstractmethod
    def queued_for(self, object_id: str) -> list[str]:
        """The parties a version of ``object_id`` waits in the outbox to go to (not
        delivered yet, given up or not): a recall stops it going there too."""

    @abc.abstractmethod
    def receipt(self, receipt_id: int) -> str | None:
        """A partner's signed receipt (JSON) as it was received."""

    @abc.abstractmethod
    def pull_cursor(self, party: str) -> int: ...

    @abc.abstractmethod
    def set_pull_cursor(self, party: str, cursor: int) -> None: ...

    @abc.abstractmethod
    def party_keys(self, party: str) -> dict[str, str]:
        """Every key id -> public key (base64) known for ``party``."""

    @abc.abstractmethod
    def retired_keys(self, party: str) -> dict[str, int]:
        """Each retired key of ``party`` (key id) -> its bound: the size of the last
        checkpoint of the party's audit log it signed. A key not here is current."""

    @abc.abstractmethod
    def retire_key(self, party: str, old: tuple[str, str], new: tuple[str, str], when: str,
                   seal: Sealer) -> int:
        """This node's key rotation, in one write transaction: every event appended is
        integrated into the tree; ``seal(size, root, tree)`` gives the old key's final
        checkpoint of it (kept, if it is new), the announcement to queue for every pinned
        partner and the audit events to append; ``old`` (key id, public key) is retired
        at that size and ``new`` recorded as ``party``'s current key. Returns the size:
        the old key's bound. Nothing of it is written if anything fails."""

    @abc.abstractmethod
    def accept_rotation(self, party: str, old_key_id: str, peer: PeerRecord,
                        final: tuple[int, bytes, str] | None, judge: RotationCheck) -> bool:
        """A partner's key rotation, in one write transaction: ``judge(held)``, with the
        checkpoints of ``party`` held (read under the write lock), gives the old key's
        bound and the audit events to append, or raises; ``final`` (size, root, note),
        the old key's final checkpoint, is kept with the checkpoints of ``party``; the old
        key is retired at the bound; ``peer``, the partner with its new key, replaces the
        pinned record (its key recorded). False, with nothing written, when ``party``'s
        pinned key is no longer ``old_key_id`` (the rotation was applied already)."""

    @abc.abstractmethod
    def undelivered_announcements(self, party: str) -> list[tuple[int, str]]: ...

    @abc.abstractmethod
    def announcement_delivered(self, announcement_id: int, party: str, when: str) -> None: ...

    @abc.abstractmethod
    def add_refusals(self, party: str, refused: Sequence[tuple[str, str]], when: str,
                     audit: Sequence[AuditEvent] = ()) -> None:
        """Keep what ``party`` sent that was refused, each (object id, reason), and append
        ``audit``, in one transaction."""

    @abc.abstractmethod
    def refusals(self) -> list[tuple[str, str, str, str]]: ...

    # audit log ------------------------------------------------------------------------
    @abc.abstractmethod
    def append_audit(self, events: Sequence[AuditEvent], *, wait: bool = True) -> int | None:
        """Append events in one durable transaction; returns the first one's leaf index.
        With ``wait`` false, a backend whose writers queue for a lock in this process
        (SQLite) writes nothing and returns None if another writer holds it: the caller
        may be the event loop, which must not wait for a publication's transaction."""

    @abc.abstractmethod
    def audit_size(self) -> int:
        """How many events have been appended."""

    @abc.abstractmethod
    def audit_events(self, start: int, stop: int, limit: int | None = None
                     ) -> list[AuditRecord]:
        """The events with leaf index in [start, stop), in order; the first ``limit``."""

    @abc.abstractmethod
    def find_audit(self, where: AuditFilter, before: int | None = None
                   ) -> list[AuditRecord]:
        """Events matching ``where``, each with index below ``before`` (when given).
        Filtering by object sees integrated events only (the integrator indexes
        objects): ``AuditLog.find`` integrates first."""

    @abc.abstractmethod
    def audit_numbered(self, originator: str, before: int | None = None
                       ) -> tuple[int, int]:
        """Of the events about ``originator``'s objects with index below ``before`` (when
        given): how many were numbered (``AuditEvent.seq_at``), and the newest one's
        index (-1 if none)."""

    @abc.abstractmethod
    def latest_audit(self, where: AuditFilter, before: int | None = None
                     ) -> list[AuditRecord]:
        """At most ``where.limit`` events matching ``where``, newest (highest leaf index)
        first, each with index below ``before`` (when given) and above ``where.after``:
        one page of the log read backwards, the LIMIT in the query. Filtering by object
        sees integrated events only, as ``find_audit``."""

    @abc.abstractmethod
    def audit_macs_from(self) -> int | None:
        """The leaf index of the first event that carries a MAC, or None."""

    @abc.abstractmethod
    def audit_parties(self, kind: str) -> list[str]:
        """Every party named by an event of ``kind`` of this log, in order."""

    @abc.abstractmethod
    def audit_integrated(self) -> int:
        """How many events the integrator hashed into the tree: the highest leaf hash
        stored, plus one."""

    def audit_mistyped(self) -> list[str]:
        """What of the audit log's tables holds a value of the wrong type, a line each
        (``audit verify``): a store whose columns are loosely typed (SQLite) keeps what
        an insider writes there, and its readers pass such rows by. None here: the
        database refuses them."""
        return []

    @abc.abstractmethod
    def audit_refs(self, start: int, stop: int | None = None) -> list[tuple[str, int]]:
        """The object index: (object id, leaf index) of every event with index in
        [start, stop) (stop None: to the end), by index then id."""

    @abc.abstractmethod
    def audit_nodes(self, coords: Sequence[Coord]) -> dict[Coord, bytes]:
        """Integrated perfect-subtree hashes (level 0: leaf hashes) by coordinate."""

    @abc.abstractmethod
    def integrate_audit(self, limit: int, sign: Signer | None = None,
                        refs: int | None = None, forged: list[int] | None = None
                        ) -> tuple[int, bytes]:
        """Under the write lock: hash up to ``limit`` appended events into the tree (and,
        given ``refs``, no more events than those that name about that many objects in
        all; one at least), then store the checkpoint ``sign`` returns (if any). Returns
        the tree's size and root. One integrator at a time, whatever the number of
        processes. The leaf index of each event hashed whose MAC ``event_macs`` does not
        verify is added to ``forged``: it is hashed all the same (the log is what was
        appended; ``audit verify`` names it for ever)."""

    @abc.abstractmethod
    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint this node signed, smallest first."""

    @abc.abstractmethod
    def latest_checkpoint(self) -> Checkpoint | None: ...

    @abc.abstractmethod
    def add_partner_checkpoint(self, party: str, size: int, root: bytes, note: str,
                               when: str, check: HeldCheck | None = None) -> bool:
        """Keep a checkpoint ``party`` signed; False if one of that size was kept already.
        Under the write lock, ``check`` is first given the checkpoints kept for ``party``
        (HeldCheckpoints); if it raises, nothing is kept. Two witnesses at once (in
        threads or processes) then cannot both judge against the same checkpoints."""

    @abc.abstractmethod
    def partner_checkpoints(self, party: str, after: int = -1, limit: int | None = None
                            ) -> list[PartnerCheckpoint]:
        """The checkpoints kept for ``party`` of more than ``after`` events, smallest
        first, the first ``limit``: a listing, for inspection and ``audit verify``. What
        runs every round reads one (``partner_checkpoint_at``,
        ``largest_partner_checkpoint``): a partner's are many."""

    @abc.abstractmethod
    def partner_parties(self) -> list[str]:
        """Every party of whose audit log anything is kept here (checkpoints, events, the
        watch's cursor), or a key: pinned now or not."""

    @abc.abstractmethod
    def partner_checkpoint_at(self, party: str, size: int) -> PartnerCheckpoint | None:
        """The checkpoint of ``party``'s tree of ``size`` kept here."""

    @abc.abstractmethod
    def largest_partner_checkpoint(self, party: str) -> PartnerCheckpoint | None:
        """The largest checkpoint of ``party`` kept here."""

    @abc.abstractmethod
    def count_partner_checkpoints(self, party: str) -> int:
        """How many checkpoints of ``party`` are kept here: a tally kept as each is kept,
        read by key (the console's desk shows it for every partner)."""

    def partner_size(self, party: str) -> int:
        """The size of the largest checkpoint of ``party`` kept here (0: none)."""
        largest = self.largest_partner_checkpoint(party)
        return 0 if largest is None else largest[0]

    def partner_audit_cursor(self, party: str) -> tuple[int, int]:
        """How far this node's watch has checked ``party``'s events about our objects:
        the leaf to read after, and the number the next event must have ((-1, 0) before
        the first)."""
        watch = self.partner_audit_watch(party)
        return (-1, 0) if watch is None else (watch[0], watch[1])

    @abc.abstractmethod
    def partner_audit_watch(self, party: str) -> tuple[int, int, str] | None:
        """``partner_audit_cursor`` and when it was last set (the watch's last round that
        reached ``party``); None before the first."""

    @abc.abstractmethod
    def set_partner_audit_cursor(self, party: str, after: int, expect: int, when: str,
                                 events: Sequence[KeptEvent] = (),
                                 audit: Sequence[AuditEvent] = ()) -> bool:
        """Move the watch of ``party`` to leaf ``after`` and number ``expect`` (never
        back: a watch that read less, in another process, leaves it where it is), keeping
        ``events``, the ones it read up to there, in the same transaction; an event kept
        already stays as it is. ``audit`` (the ``partner-audit-kept`` event recording the
        move) is appended in that transaction only if the cursor moves: a round that
        read nothing new appends nothing. Whether it moved."""

    @abc.abstractmethod
    def partner_events(self, party: str, *, after: int = -1, before: int | None = None,
                       limit: int | None = None, objects: Sequence[str] = (),
                       kinds: Sequence[str] = ()) -> list[KeptEvent]:
        """The events of ``party``'s log kept by its watch, by leaf, after leaf ``after``
        (below ``before``; at most ``limit``; naming one of ``objects``, and of one of
        ``kinds``, found by what each is filed under, if given: ``filed_under``)."""

    @abc.abstractmethod
    def partner_event_refs(self, party: str, start: int, stop: int | None = None
                           ) -> list[tuple[str, int]]:
        """The index of the objects ``party``'s kept events name (what ``partner_events``
        finds ``objects`` by): (object id, leaf) of every event with leaf in [start,
        stop) (stop None: to the end), by leaf then id."""

    @abc.abstractmethod
    def numbered_partner_events(self, party: str, before: int) -> int:
        """How many numbered events of ``party``'s log are kept below leaf ``before``."""

    @abc.abstractmethod
    def raise_alert(self, kind: str, party: str | None, detail: str, when: str,
                    audit: Sequence[AuditEvent] = (), *, once: bool = False) -> bool:
        """Raise an alert for the security officer and append ``audit``, in one
        transaction; ``once``: not if the same alert (kind, party, detail) was raised
        before, open or resolved, decided in that transaction (two processes that meet
        the same finding at once raise it once). Whether it was raised."""

    @abc.abstractmethod
    def alerts(self) -> list[tuple[int, str, str | None, str, str]]:
        """(id, kind, party, detail, raised), oldest first."""

    @abc.abstractmethod
    def alert_resolutions(self) -> dict[int, tuple[str, str]]:
        """(resolved, note) of each alert resolved, by id."""

    @abc.abstractmethod
    def resolve_alert(self, alert_id: int, when: str, note: str,
                      audit: Sequence[AuditEvent] = ()) -> bool:
        """Mark an alert resolved at ``when`` with ``note`` and append ``audit``, in one
        transaction. False, with nothing changed, when no open alert has that id."""

    # compromise reports ----------------------------------------------------------------
    @abc.abstractmethod
    def add_compromise(self, report: CompromiseRecord, send_to: str | None,
                       audit: Sequence[AuditEvent] = (),
                       alert: tuple[str, str | None, str] | None = None) -> bool:
        """Store a report, queue it for ``send_to`` (None: nothing to send), raise
        ``alert`` (kind, party, detail; raised when the report was filed) and append
        ``audit``, in one durable transaction. False (and nothing changed) when a report
        with that id is stored already."""

    @abc.abstractmethod
    def compromise_step(self, report_id: str, step: str, when: str, body: str,
                        send_to: str | None, audit: Sequence[AuditEvent] = ()) -> bool:
        """Record the acknowledgement (``step`` "ack") or closure ("close") of a report,
        queue ``body`` for ``send_to`` and append ``audit``, in one transaction. False
        (and nothing changed) when that step is recorded already."""

    @abc.abstractmethod
    def compromise_checked(self, report_id: str, when: str, outcome: str,
                           audit: Sequence[AuditEvent] = (),
                           alert: tuple[str, str | None, str, AuditEvent] | None = None
                           ) -> bool:
        """Record when a report's access history was checked and ``outcome`` and append
        ``audit``, and raise ``alert`` (kind, party, detail, its event) once
        (``raise_alert``), in one transaction. Whether the alert was raised."""

    @abc.abstractmethod
    def compromise_report(self, report_id: str) -> CompromiseRecord | None: ...

    @abc.abstractmethod
    def compromise_reports(self) -> list[CompromiseRecord]:
        """Every report, oldest filed first."""

    @abc.abstractmethod
    def compromise_messages(self, report_id: str | None = None) -> list[CompromiseMessage]:
        """Every queued or sent message (of one report), oldest first."""

    @abc.abstractmethod
    def pending_compromise(self, party: str, limit: int) -> list[CompromiseMessage]:
        """Undelivered messages for ``party`` it has not refused too often, oldest first."""

    @abc.abstractmethod
    def compromise_delivered(self, message_id: int, when: str, receipt: str) -> None:
        """Mark a message delivered with the partner's signed receipt; a report message
        marks its report delivered too."""

    @abc.abstractmethod
    def compromise_failed(self, message_id: int, error: str, refused: bool) -> None:
        """Note why a delivery failed; ``refused`` (by the partner, not unreachable)
        counts an attempt."""

    # originator controls --------------------------------------------------------------
    @abc.abstractmethod
    def add_notice(self, notice: Notice, *, recall_reason: str | None = None,
                   confirms: str | None = None,
                   accounted: Callable[[Sequence[Dissemination]], str | None] | None = None,
                   audit: Sequence[AuditEvent] = ()) -> bool:
        """Keep a notice (False, and nothing changed, if its id is kept already), with its
        audit events, in one transaction. An outgoing recall (``recall_reason``) also
        records the recall — recalled again, the latest notice and reason, its
        confirmation cleared: ``recalls`` shows the latest recall, which only its own
        answer confirms — and from then on nothing of that object goes to that party
        (pending, pulled). An incoming answer to a recall (``confirms``: the id of the
        notice it answers), if that notice is the latest recall of its object from its
        party: ``accounted`` is given the dissemination record of that object to that
        party, read in the transaction, and returns why the answer does not confirm the
        recall (None: it does, or no ``accounted``); the recall is then marked destroyed
        (when, and the notice as its receipt) or unconfirmed with that reason."""

    @abc.abstractmethod
    def pending_notices(self, party: str, limit: int) -> list[Notice]:
        """Outgoing notices to ``party`` not yet delivered (and not given up), oldest first."""

    @abc.abstractmethod
    def notice_delivered(self, notice_id: str, when: str, receipt: str) -> None: ...

    @abc.abstractmethod
    def notice_failed(self, notice_id: str, error: str, *, refused: bool) -> None:
        """Record why a delivery failed; ``refused`` (by the partner) counts an attempt."""

    @abc.abstractmethod
    def notices(self) -> list[Notice]:
        """Every notice, oldest first."""

    @abc.abstractmethod
    def notice(self, notice_id: str) -> Notice | None:
        """One notice, in or out, by id."""

    @abc.abstractmethod
    def recalls(self, object_ids: Sequence[str] | None = None) -> list[RecallRecord]:
        """Every recall this node issued (of ``object_ids``, or all), oldest first."""

    @abc.abstractmethod
    def purge(self, object_id: str, originator: str, tombstone: Callable[[StoredObject], str],
              when: str, audit: Callable[[Sequence[StoredObject]], Sequence[AuditEvent]],
              notices: Callable[[Sequence[StoredObject], Sequence[StoredObject]],
                                Sequence[Notice]] | None = None,
              which: Callable[[StoredObject], bool] | None = None,
              older_than: str | None = None) -> list[StoredObject]:
        """Holder side of a recall, in one transaction: replace the body of every stored
        version of ``object_id`` originated by ``originator`` (or only those ``which``
        chooses, or only those older than ``older_than``, each as this transaction finds
        them: a version stored after the caller read the versions must not escape) by
        its tombstone, mark it
        recalled (no query serves it again), drop its undelivered outbox entries, add the
        ``notices`` made of the rows and of the tombstones of the object's versions
        destroyed before (the notice applied, the originator's confirmation), and append
        the audit events. Returns the rows as they were. If one of ``notices`` is stored
        already (the notice applied, delivered twice at once), it was applied: nothing
        is done, and nothing returned."""

    @abc.abstractmethod
    def purge_chosen(self, choose: Callable[[str, int], bool],
                     purging: Callable[[str, str], Purging], when: str, *,
                     after: int = 0, limit: int | None = None, once: str | None = None,
                     done: Callable[[Sequence[tuple[str, str]]], AuditEvent] | None = None
                     ) -> Purged | None:
        """Purge, in one transaction, the stored versions not recalled whose originator
        and banner label id ``choose`` picks, as this transaction finds them: an object
        whose first version is stored after the caller decided to purge must not escape,
        as one read before the transaction would. The versions are read in ``seq`` order
        from after ``after``, for at most ``limit`` objects (by id and originator), each
        purged as :meth:`purge` purges it, every version of it ``choose`` picks, with
        ``purging(object_id, originator)``'s tombstone, audit events and notices.
        ``done(objects)`` is appended to the audit log in the same transaction. ``once``:
        an event kind; when one of that kind is recorded already, nothing is done and
        None is returned (so two callers at once do it once). Returns the objects purged
        and the last ``seq`` read (``after`` when none was)."""

    @abc.abstractmethod
    def relabel(self, object_id: str, originator: str,
                labels: Mapping[str, tuple[Label, Label]], audit: Sequence[AuditEvent],
                notice: Notice | None = None, *,
                reclassified: tuple[str, str, str] | None = None,
                notices: Sequence[Notice] = (),
                tell: Callable[[Sequence[str]], Onward] | None = None,
                older_than: str | None = None) -> int | None:
        """A reclassification applied: each version of ``object_id`` originated by
        ``originator`` that ``labels`` names gets the (base, banner) labels it gives;
        ``older_than`` (the reclassified version): every version older than it not
        recalled must be named, and one that is not (stored since ``labels`` was worked
        out) raises :class:`ReclassifiedMeanwhile`, nothing done;
        with the audit events, ``notice`` (at a holder: the reclassification applied),
        ``reclassified`` (at the originator: the reclassified version, its new
        marking-definition and the reason, kept for :meth:`reclassifications`) and
        ``notices`` (at the originator: those queued for the holders), in one
        transaction, forgetting the intent of that reclassification
        (:meth:`intend_reclassify`). With ``reclassified``, ``tell`` makes the notices and
        events for the parties an older version went or may be going to, as this
        transaction finds them (a dissemination, or an outbox entry whose release was
        recorded: the courier sends only what it decided on after recording it), so a
        push or pull racing the reclassification is told of it or sends the version under
        its new label. Returns how many rows changed, or None when
        ``notice`` is kept already (it was applied before: nothing changed), or
        ``reclassified`` is (another process completed it: only its intent, if left, is
        forgotten)."""

    @abc.abstractmethod
    def reclassifications(self, object_ids: Sequence[str] | None = None
                          ) -> list[tuple[str, str, str, str]]:
        """The reclassifications this node made of its own objects (of ``object_ids``,
        or all), oldest first: (object id, the reclassified version, its new
        marking-definition as JSON, the reason)."""

    @abc.abstractmethod
    def intend_reclassify(self, object_id: str, version: str, reason: str | None) -> None:
        """Keep that this node is about to publish ``version`` of its ``object_id`` as a
        reclassification, for ``reason`` (durably, before it is published); with
        ``reason`` None, forget it (the publication was refused). A completed one is
        forgotten by :meth:`relabel`, in its transaction."""

    @abc.abstractmethod
    def reclassify_intents(self) -> list[tuple[str, str, str, str]]:
        """The reclassifications begun and not completed, oldest first: (object id, the
        version it publishes, the reason, when it was begun)."""

    @abc.abstractmethod
    def withdrawn(self, object_ids: Sequence[str]) -> set[tuple[str, str]]:
        """(id, originator) of each of ``object_ids`` its originator withdrew from this
        node: recalled (a recall notice from it kept here), or every version held here
        purged (a tombstone: a reclassification beyond this node's release, a recall). A
        holder's own object derived from one goes on no more with that originator's
        consent (``Federation._may_release``)."""

    @abc.abstractmethod
    def reclassify_notices(self, object_ids: Sequence[str] | None = None) -> list[Notice]:
        """The reclassify notices applied here (direction in) about ``object_ids`` (or
        all), oldest first."""

    # -- consent for third-party release (services/consent.py) ---------------------------
    @abc.abstractmethod
    def consent_step(self, record: ConsentRecord, notice: Notice | None,
                     audit: Sequence[AuditEvent] = ()) -> bool:
        """Write ``record`` (insert, or update its status, decision, reason, token and
        expiry), keep ``notice`` (sent or received) and append ``audit``, in one
        transaction. False (and nothing changed) when the notice is kept already."""

    @abc.abstractmethod
    def consents(self) -> list[ConsentRecord]:
        """Every consent request, oldest first."""

    @abc.abstractmethod
    def consent(self, request_id: str) -> ConsentRecord | None: ...

    @abc.abstractmethod
    def add_onward(self, party: str, via: str, objects: Sequence[tuple[str, str, str]],
                   when: str, receipt: str | None, notice: Notice,
                   audit: Sequence[AuditEvent] = ()) -> bool:
        """At the originator: ``via`` passed ``objects`` (id, version, body hash) on to
        ``party`` with our consent; record them in the dissemination record (with the
        recipient's signed receipt, if any), keep ``notice`` and append ``audit``, in one
        transaction. False (and nothing changed) when the notice is kept already."""

    # -- the security officer's desk: bounded, newest first --------------------------------
    @abc.abstractmethod
    def latest_disseminations(self, limit: int, offset: int = 0) -> list[Dissemination]:
        """At most ``limit`` entries of the dissemination record, newest released
        first, after skipping the ``offset`` newest."""

    @abc.abstractmethod
    def latest_recalls(self, limit: int, offset: int = 0) -> list[RecallRecord]:
        """At most ``limit`` recalls, newest issued first, after the ``offset`` newest."""

    @abc.abstractmethod
    def latest_compromise_reports(self, limit: int, offset: int = 0
                                  ) -> list[CompromiseRecord]:
        """At most ``limit`` compromise reports, newest filed first, after the ``offset``
        newest."""

    @abc.abstractmethod
    def latest_consents(self, limit: int, offset: int = 0) -> list[ConsentRecord]:
        """At most ``limit`` consent requests, newest made first, after the ``offset``
        newest."""

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Within the block, this thread's reads all see the store as it was at the first
        of them (one read transaction: SQLite's; REPEATABLE READ on PostgreSQL), whatever
        other processes write meanwhile: for a reader that judges what several reads say
        together (``verify_log``: the checkpoints, the log's size, the hashes and the
        events) beside a serving node. Nothing may be written by this thread in it."""
        yield

    @abc.abstractmethod
    def close(self) -> None: ...
