"""Publishing: validate, mark, label, check, store, and report per object.

A person publishes as their own party: every object they publish is
originated by that party. Received information arrives by federation, never
through here.

Publishing someone else's STIX (ATT&CK, say) under a national marking: the
node adds the national marking to ``object_marking_refs`` and keeps ``id`` and
``modified`` (docs/publishing.md says why). The marked copy is then *the* copy
of that version here and, once released, on every partner: a later attempt to
store a different body under the same (id, modified) is refused as a conflict,
never silently merged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..crypto.signing import SignatureError, signed_text
from ..errors import IntelpactError
from ..model import (
    Agreement,
    Label,
    LabelPart,
    Markings,
    Person,
    Policy,
    banner,
    national_marking,
    parse_marking,
)
from ..model.echo import first, shown
from ..model.errors import LabelError, MarkingError
from ..model.labels import join_all
from ..stix.validate import validate_object
from ..store.base import (
    AddResult,
    AuditEvent,
    MarkingConflict,
    NewObject,
    ReclassifiedMeanwhile,
    StatusRecord,
    Store,
    StoredObject,
    StoreFull,
    cited_markings,
    normalise_timestamp,
    parse_timestamp,
    timestamp,
    utc_now,
)
from .access import Access
from .audit import AuditLog
from .prepare import Prepared, Preparer, canonical_body, with_marking_refs

__all__ = ["BATCH", "MarkingRequest", "Outcome", "PublishError", "Publisher", "canonical_body",
           "definition_label", "object_version", "version_labels"]

BATCH = 500  # objects stored in one transaction, at most
MIN_BATCH = 100  # stored early, while the pool prepares the rest, at least


@dataclass(frozen=True)
class MarkingRequest:
    """A national marking to apply to everything published in one go."""

    classification: str
    rel_to: tuple[str, ...] = ()
    caveats: tuple[str, ...] = ()
    communities: tuple[str, ...] = ()


@dataclass
class Outcome:
    object_id: str
    version: str | None
    ok: bool
    message: str
    # refused by the policy, not as malformed: the originator its denial is audited under
    denied: str | None = None


def object_version(obj: dict[str, Any]) -> str | None:
    """TAXII's version of an object: modified, else created, else None (date_added)."""
    value = obj.get("modified") or obj.get("created")
    return normalise_timestamp(value) if isinstance(value, str) else None


def definition_label(agreement: Agreement, part: LabelPart, origin: str) -> Label:
    """The label of a marking-definition object: the label it gives, so it is seen and
    released on its own exactly where what it marks may go (it also goes with each object
    released that cites it: ``NewObject.marking_refs``, docs/federation.md). A statement
    marking (copyright, terms) marks nothing: it gets the lowest covered level, and under
    an agreement that releases only its communities' material, any of those communities,
    so it goes wherever an object citing it may go."""
    rel = frozenset(part.rel_to) if part.rel_mode == "set" else None
    rank = part.rank if part.rank is not None else min(agreement.covered)
    communities = part.communities
    if part.rank is None and not communities and agreement.rules.release_requires_community:
        communities = frozenset({frozenset(agreement.communities)})
    return Label(agreement.id, rank, origin, rel, part.caveats, communities)


def version_labels(agreement: Agreement, markings: Markings, obj: Any, originator: str
                   ) -> tuple[Label, Label]:
    """The (base, banner) labels a version of ``obj`` from ``originator`` is stored under,
    under ``agreement``, as the publisher and the federation's receive give them: a
    marking-definition its own label (:func:`definition_label`, read as stored: a
    national marking by its originator's level under ``agreement``), any other object its
    markings' (``Markings.label``, whose stored definitions are read so too). What works a
    stored version's labels out again under an amended text (services/relabel.py).
    Raises :class:`LabelError` where they give none (a marking-definition that does not
    check, among them)."""
    if not isinstance(obj, dict):
        raise LabelError("the stored body is not a JSON object")
    if obj.get("type") == "marking-definition":
        try:
            part = parse_marking(agreement, obj, stored=True)
        except MarkingError as exc:
            raise LabelError(exc.message, hint=exc.hint) from None
        label = definition_label(agreement, part, originator)
        return label, label
    labels = markings.label(obj, originator=originator)
    return labels.base, labels.banner


# The reclassifications kept here, by (object id, originator): each one's version and its
# new marking's label (None: that marking no longer checks under the agreement in force).
# Controls.raises reads them: those applied as a holder (reclassify notices) and this
# node's own (docs/controls.md, "Reclassification").
Raises = Mapping[tuple[str, str], Sequence[tuple[dt.datetime, Label | None]]]


def reclassified_labels(raises: Raises, object_id: str, originator: str, version: str,
                        base: Label, banner: Label) -> tuple[Label, Label, int] | None:
    """A version's (base, banner) labels joined with the new marking of each kept
    reclassification of its object made at a later version (the versions it is about:
    the reclassified one and newer ones carry their own marking), and how many there
    were; None where one of those markings no longer gives a label (the version is
    closed). As the holder's relabelling joins them when a notice is applied
    (Controls._joined): what a version stored, received or worked out again later is
    held to."""
    made = parse_timestamp(version)
    later = [label for when, label in raises.get((object_id, originator), ()) if made < when]
    for label in later:
        if label is None:
            return None
        base, banner = base.join(label), banner.join(label)
    return base, banner, len(later)


# How many times a batch is joined and stored again when a reclassification of one of its
# objects was kept meanwhile (Store.add_objects: ReclassifiedMeanwhile), each time a race
# with another reclassification, before the publication fails (send again)
RECLASSIFIED_TRIES = 5


def reclassified_versions(raises: Raises) -> dict[str, set[dt.datetime]]:
    """By object id, the versions of the reclassifications in ``raises``: what labels
    joined with them were joined with (``Store.add_objects``' ``reclassified``)."""
    out: dict[str, set[dt.datetime]] = {}
    for (object_id, _), kept in raises.items():
        out.setdefault(object_id, set()).update(when for when, _ in kept)
    return out


class Publisher:
    """Publishes as a person of this node.

    ``preparer`` validates and signs each object (services/prepare.py, on every core for
    a large publication); ``sign`` signs the national marking-definitions this node
    originates (crypto.signing); ``releaser`` gives,
    once per publication, the federation's release filter: the partners each
    stored object goes to, written to the outbox in the object's transaction."""

    def __init__(self, policy: Policy, markings: Markings, store: Store,
                 preparer: Preparer, audit: AuditLog, access: Access, *,
                 sign: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 releaser: Callable[[], Callable[[NewObject], Iterable[str]]] | None = None,
                 on_stored: Callable[[], None] | None = None, party: str | None = None
                 ) -> None:
        self.policy = policy
        self.party = party  # this node's: another party's objects held here are its node's
        self.markings = markings
        self.store = store
        self.preparer = preparer
        self.sign = sign
        self.releaser = releaser
        self.on_stored = on_stored
        self.audit = audit
        self.access = access
        # the reclassifications kept here about some objects (Controls.raises, which sets
        # this): a version older than one is held at their join, as when it is received
        self.reclassifications: Callable[[Sequence[str]], Raises] = lambda ids: {}

    def publish(self, person: Person, collection_id: str, objects: Sequence[Any], *,
                marking: MarkingRequest | None = None,
                progress: Callable[[int], None] | None = None) -> StatusRecord:
        """Publish ``objects`` as ``person``; returns the (persisted) status resource.

        Per-object failures are reported, valid objects are stored; nothing is
        half-stored (each batch is one transaction)."""
        agreement = self.policy.agreement
        created = timestamp(utc_now())
        outcomes: list[Outcome] = []
        extra_refs: list[str] = []
        definitions: list[dict[str, Any]] = []
        if marking is not None:
            try:
                applied = national_marking(agreement, person.party, marking.classification,
                                           rel_to=marking.rel_to, caveats=marking.caveats,
                                           communities=marking.communities)
            except MarkingError as exc:
                raise PublishError(exc.message, hint=exc.hint) from None
            if not self.markings.known(applied["id"]):  # already signed and stored once
                definitions.append(applied)
            extra_refs.append(applied["id"])

        # marking-definitions first: objects may use them
        denials: list[AuditEvent] = []
        pending: list[tuple[NewObject, dict[str, Any]]] = []
        for item in [*definitions, *objects]:
            if isinstance(item, dict) and item.get("type") == "marking-definition":
                outcome, new = self._definition(person, item, denials)
                if new is None:
                    outcomes.append(outcome)
                else:
                    pending.append((new, item))
        # an object citing a definition refused here would be labelled with whatever
        # this node holds under that id (perhaps lower, as another person defined it):
        # refused too, as a partner's is (Federation.receive)
        refused = {o.object_id: (o.message, o.denied) for o in outcomes if not o.ok}
        learnt = [new.object_id for new, _ in pending]
        items = [item for item in objects
                 if not (isinstance(item, dict) and item.get("type") == "marking-definition")]
        sources = {id(item): source_refs(item) for item in items if isinstance(item, dict)}
        inside = {item.get("id") for item in items if isinstance(item, dict)}
        # A publication of BATCH objects or fewer is one transaction: all or nothing. A
        # larger one whose objects refer to each other is decided whole before any of it is
        # stored (an object derived from another in it is checked against that one's
        # verdict), then stored BATCH at a time. Otherwise what is decided is stored while
        # the preparer's pool works on the rest: a batch of BATCH, or, rather than wait for
        # the pool, at least MIN_BATCH (so that little is left to store after the last
        # result is back).
        linked = any(ref in inside for refs in sources.values() for ref in refs)
        split = not linked and len(pending) + len(items) > BATCH
        run = _Run(self, person, collection_id, outcomes, denials, sources, progress)
        try:
            with self.preparer.prepare(items, extra_refs) as results:
                for item, prepared in zip(items, results, strict=True):
                    outcome, new = self._object(person, item, prepared, extra_refs, denials,
                                                refused)
                    if new is None:
                        outcomes.append(outcome)
                    else:
                        pending.append((new, item))
                    if split and (len(pending) >= BATCH or
                                  (len(pending) >= MIN_BATCH and results.waiting)):
                        run.store(pending)
                        pending = []
            run.store(pending)
        except StoreFull:
            if not run.sent:  # nothing stored: what was learnt for it is not known here
                self.markings.forget(learnt)
            raise
        try:
            return self._status(person, collection_id, created, [*outcomes, *run.stored])
        except StoreFull as exc:
            if not run.sent:
                raise
            raise StoreFull(f"{exc.message}; every object was stored, but not the status "
                            "resource", hint=exc.hint) from None

    def _originators(self, person: Person, pending: list[tuple[NewObject, dict[str, Any]]],
                     outcomes: list[Outcome], denials: list[AuditEvent]
                     ) -> list[tuple[NewObject, dict[str, Any]]]:
        """Only an object's originator issues its versions, and only a person who may read
        all of its latest version held here. A version of another party's object would
        reclassify (and release again) what only its originator controls
        (docs/controls.md); one by a person who may not read the latest, or is served it
        with a portion withheld, would put their text, under their marking, in its place
        for every reader. An id held here that the person may not read is
        refused alike whoever originated it and however it is marked (:func:`_unreadable`):
        that a write under the id is refused is all they learn."""
        ids = [new.object_id for new, _ in pending if new.object_type != "marking-definition"]
        labels = self.store.labels()
        owners: dict[str, str] = {}
        hidden: set[str] = set()
        received: set[str] = set()  # another party's: its versions are its node's
        for row in self.store.held(ids, versions=("last",)) if ids else []:
            owners[row.object_id] = row.originator
            if self.party is not None and row.originator != self.party:
                received.add(row.object_id)
            if self.access.view(person, row, labels) is None or not \
                    self.policy.may_read(person, labels[row.banner_id]).allowed:
                hidden.add(row.object_id)  # or served in part: a portion is withheld
        keep = []
        for new, item in pending:
            owner = owners.get(new.object_id, new.originator)
            if new.object_type == "marking-definition" or (
                    owner == new.originator and new.object_id not in hidden | received):
                keep.append((new, item))
                continue
            # (a person of the originator's party here, a liaison, issues none either: the
            # originator's node signs its versions, and a version made here would lower it
            # at this holder, unknown to that node)
            reason = _unreadable(new.object_id) if new.object_id in hidden else (
                f"{new.object_id} is {owner}'s object: only "
                + ("its originator" if owner != new.originator else f"{owner}'s node")
                + " issues new versions of it; publish your own object, with a new id, that "
                "refers to it")
            denials.append(self._denial(person, item, owner, reason))
            outcomes.append(Outcome(new.object_id, None, False, reason))
        return keep

    def _reclassified(self, person: Person, pending: list[tuple[NewObject, dict[str, Any]]],
                      outcomes: list[Outcome], denials: list[AuditEvent]
                      ) -> tuple[list[tuple[NewObject, dict[str, Any]]],
                                 dict[str, set[dt.datetime]]]:
        """A version older than a reclassification kept here is held at the join of its
        labels with the new marking's (``reclassified_labels``), as one received or
        worked out again is: published with its old marking, it would else be served
        and released below what the reclassification made of the versions before it.
        The person must be allowed to publish at that join; one whose new marking no
        longer checks under the agreement in force is refused (closed). Returns those
        kept, and the reclassifications they were joined with (for ``add_objects``,
        which refuses them if one was kept since: ReclassifiedMeanwhile)."""
        ids = sorted({new.object_id for new, _ in pending
                      if new.object_type != "marking-definition" and new.version})
        raises = self.reclassifications(ids) if ids else {}
        if not raises:
            return pending, {}
        keep = []
        for new, item in pending:
            if new.object_type == "marking-definition" or not new.version:
                keep.append((new, item))
                continue
            joined = reclassified_labels(raises, new.object_id, new.originator, new.version,
                                         new.label, new.banner)
            if joined is None:
                reason = (f"{new.originator} reclassified {new.object_id} after this "
                          "version, under a marking that no longer checks under the "
                          "agreement in force: not held here")
            else:
                decision = self.policy.check_publish(person, joined[1])
                if decision.allowed:
                    keep.append((dataclasses.replace(new, label=joined[0], banner=joined[1]),
                                 item))
                    continue
                reason = (f"{new.originator} reclassified {new.object_id} after this "
                          f"version, which is held at that marking too: {decision.reason}")
            denials.append(self._denial(person, item, new.originator, reason))
            outcomes.append(Outcome(new.object_id, None, False, reason))
        return keep, reclassified_versions(raises)

    def _derived(self, person: Person, pending: list[tuple[NewObject, dict[str, Any]]],
                 outcomes: list[Outcome], denials: list[AuditEvent],
                 refs_of: dict[int, list[str]]) -> list[tuple[NewObject, dict[str, Any]]]:
        """Information derived from other objects (a report's ``object_refs``, the ends of
        a relationship, a sighting's ``sighting_of_ref``...) must carry at least their
        markings: a higher or equal level, no wider REL TO, every caveat and community.
        The sources are the referenced objects in this publication or held here, as the
        person is served them (:meth:`_seen`); an object that would lower them is refused,
        with the reason. Where the agreement needs a party's consent to pass its
        information to a third party, the object's banner must also name every party of
        their provenance (``Label.sources``: a portion with that party's marking), or it
        would be released without that consent (:func:`_unmarked_sources`).
        ``refs_of``: each object's sources (:func:`source_refs`) by ``id()``, if known."""
        here = {new.object_id: new.banner for new, _ in pending}
        refs = [refs_of[id(item)] if id(item) in refs_of else source_refs(item)
                for _, item in pending]
        stored = self._seen(person, sorted({r for rs in refs for r in rs} - here.keys()))
        consent = self.policy.agreement.rules.third_party_consent
        keep = []
        for (new, item), sources in zip(pending, refs, strict=True):
            found = [(r, here.get(r) or stored.get(r)) for r in sources]
            known = [(r, label) for r, label in found if label is not None]
            if known:
                needed = join_all(label for _, label in known)
                reason = None
                if not new.banner.dominates(needed):
                    words = banner(needed, self.policy.agreement, person.party)
                    reason = (f"derived from {known[0][0]}"
                              + (f" and {len(known) - 1} other object(s)" if len(known) > 1
                                 else "")
                              + f", which together are marked {words}: mark it at least "
                              "that restrictively (level, REL TO, caveats, communities)")
                elif consent and needed.sources - new.banner.sources:
                    reason = _unmarked_sources(item, known, needed.sources - new.banner.sources)
                if reason is not None:
                    denials.append(self._denial(person, item, new.originator, reason))
                    outcomes.append(Outcome(new.object_id, None, False, reason))
                    continue
            keep.append((new, item))
        return keep

    def _seen(self, person: Person, ids: Sequence[str]) -> dict[str, Label]:
        """The label of what ``person`` is served of each of ``ids`` held here
        (``Access.seen``): in each collection, the latest version they may see, as a read
        serves it (docs/node.md); joined across collections. An object they are served
        nothing of is left out, exactly as an id not held here: they cannot have derived
        from what they cannot read, and a refusal naming it would tell them that it
        exists and how it is marked (docs/controls.md)."""
        if not ids:
            return {}
        labels = self.store.labels()
        chosen: dict[tuple[str, str], tuple[str, Label]] = {}  # (collection, id): newest
        unseen = []
        for row in self.store.held(ids, versions=("last",)):
            label = self.access.seen(person, row, labels)
            if label is None:
                unseen.append(row.object_id)
            else:
                chosen[(row.collection_id, row.object_id)] = (row.version, label)
        for row in self.store.held(unseen) if unseen else []:  # an earlier version, then
            key = (row.collection_id, row.object_id)
            if key in chosen and chosen[key][0] >= row.version:
                continue
            label = self.access.seen(person, row, labels)
            if label is not None:
                chosen[key] = (row.version, label)
        found: dict[str, Label] = {}
        for (_, oid), (_, label) in chosen.items():
            previous = found.get(oid)
            found[oid] = label if previous is None else previous.join(label)
        return found

    def _events(self, person: Person, batch: Sequence[NewObject],
                results: Sequence[AddResult]) -> list[AuditEvent]:
        """The audit of one stored batch: what was added, by whom (in its transaction)."""
        added = [(r.object_id, r.version, n.originator)
                 for n, r in zip(batch, results, strict=True) if r.outcome == "added"]
        return self.audit.by_originator("publish", added, person=person)

    def _definition(self, person: Person, item: dict[str, Any], denials: list[AuditEvent]
                    ) -> tuple[Outcome, NewObject | None]:
        mid = str(item.get("id", "?"))
        try:
            validate_object(item)
            part = self.markings.parse(item)
        except (MarkingError, IntelpactError) as exc:
            return Outcome(mid, None, False, exc.message), None
        except ValueError as exc:
            return Outcome(mid, None, False, str(exc)), None
        origin = part.originator or person.party
        if part.kind == "national":
            # a partner's is issued by its node, signed (Federation.receive takes it only
            # so); one of ours, only at a label the person may publish: else the answer
            # (stored, or held already) would tell them whether anyone here used it
            label = definition_label(self.policy.agreement, part, origin)
            decision = self.policy.check_publish(person, label)
            if not decision.allowed:
                denials.append(self._denial(person, item, origin, decision.reason))
                return Outcome(mid, None, False, decision.reason, denied=origin), None
        else:  # TLP, a statement...: no national label to check, yet published here all the same
            decision = self.policy.publishes_here(person)
            if not decision.allowed:
                denials.append(self._denial(person, item, origin, decision.reason))
                return Outcome(mid, None, False, decision.reason, denied=origin), None
        text = None
        if part.kind == "national" and origin == person.party and self.sign is not None:
            try:  # a signer's refusal (a retired key, KeyRetired) refuses it all
                item = self.sign(item)
            except SignatureError as exc:  # this definition cannot be signed: it alone
                return Outcome(mid, None, False, exc.message), None
            text = signed_text(item)
        try:
            self.markings.add(item)  # learnt as stored: signed, if it is ours
        except (MarkingError, IntelpactError) as exc:
            return Outcome(mid, None, False, exc.message), None
        label = definition_label(self.policy.agreement, part, origin)
        body, digest = canonical_body(item, text)
        return Outcome(mid, None, True, ""), NewObject(
            mid, "marking-definition", str(item.get("spec_version", "2.1")),
            object_version(item), body, digest, label, label, origin, False,
            published_by=person.name)

    def _object(self, person: Person, item: Any, prepared: Prepared,
                extra_refs: Sequence[str], denials: list[AuditEvent],
                refused: Mapping[str, tuple[str, str | None]] = {}  # noqa: B006 - read only
                ) -> tuple[Outcome, NewObject | None]:
        """One object, validated and signed already (``prepared``): label it and check
        that ``person`` may publish it (``refused``: the definitions refused in this
        publication, by id: why, and whether by the policy, which refuses the objects
        marked with it too, audited as it)."""
        oid = str(item.get("id", "?")) if isinstance(item, dict) else "?"
        if prepared.reason is not None:
            return Outcome(oid, None, False, prepared.reason), None
        obj = with_marking_refs(item, extra_refs)  # what was signed, without the signature
        for ref in cited_markings(obj):
            if ref in refused:
                why, origin = refused[ref]
                reason = f"it cites {ref}, a marking-definition refused here: {why}"
                if origin is not None:  # marked so, it is refused by the policy too
                    denials.append(self._denial(person, obj, origin, why))
                return Outcome(oid, None, False, reason, denied=origin), None
        try:
            labels = self.markings.label(obj, originator=person.party)
        except LabelError as exc:
            return Outcome(oid, None, False, exc.message), None
        if labels.base.originator != person.party:
            reason = (f"marked as originated by {labels.base.originator}; a "
                      f"{person.party} person publishes only {person.party}-originated "
                      "information")
            denials.append(self._denial(person, obj, labels.base.originator, reason))
            return Outcome(oid, None, False, reason), None
        decision = self.policy.check_publish(person, labels.banner)
        if not decision.allowed:
            denials.append(self._denial(person, obj, labels.base.originator, decision.reason))
            return Outcome(oid, None, False, decision.reason), None
        return Outcome(oid, None, True, ""), NewObject(
            oid, str(obj["type"]), str(obj.get("spec_version", "2.1")), object_version(obj),
            prepared.body, prepared.digest, labels.base, labels.banner,
            labels.base.originator, bool(labels.portions), published_by=person.name,
            marking_refs=cited_markings(obj))

    def _denial(self, person: Person, obj: dict[str, Any], originator: str,
                reason: str) -> AuditEvent:
        version = obj.get("modified") or obj.get("created") or ""
        return self.audit.event("deny", person=person, originator=originator,
                                objects=[(str(obj.get("id", "?")), str(version))],
                                act="publish", reason=reason)

    def _status(self, person: Person, collection_id: str, created: str,
                outcomes: list[Outcome]) -> StatusRecord:
        successes = [o for o in outcomes if o.ok]
        failures = [o for o in outcomes if not o.ok]

        def entry(o: Outcome) -> dict[str, str]:
            e = {"id": o.object_id, "message": o.message}
            if o.version:
                e["version"] = o.version
            return e

        status_id = str(uuid.uuid4())
        body: dict[str, Any] = {
            "id": status_id,
            "status": "complete",
            "request_timestamp": created,
            "total_count": len(outcomes),
            "success_count": len(successes),
            "successes": [entry(o) for o in successes],
            "failure_count": len(failures),
            "failures": [entry(o) for o in failures],
            "pending_count": 0,
            "pendings": [],
        }
        record = StatusRecord(status_id, collection_id, person.name, created, body)
        self.store.save_status(record)
        return record


def _unreadable(object_id: str) -> str:
    """The refusal of a version of an object held here in a version the publisher may not
    read: the same words whoever originated it, however it is marked, whichever version
    it is (a new one, or one stored already with another body). Never naming a marking or
    a version, it tells them only what the refusal itself does: that the id is taken."""
    return (f"{object_id} is held here in a version you may not read in full: only someone "
            "who may read all of an object issues versions of it; publish yours with a new id")


def _unmarked_sources(obj: Any, known: Sequence[tuple[str, Label]],
                      missing: Iterable[str]) -> str:
    """The refusal of an object derived from other parties' information that its marking
    does not name (``missing``: parties among its sources' provenance, not its banner's),
    under an agreement that releases a party's information to a third party only with
    that party's consent: unmarked, it would go to a third party without it (and from
    every later holder too, as its marking travels with it). Says, per party, which
    sources carry its information and under which properties they are named: where its
    national marking goes, as a granular marking."""
    whose, how = [], []
    for party in sorted(missing):
        refs = [ref for ref, label in known if party in label.sources]
        named = set(refs)  # a set: a report may name thousands
        keys = sorted({key for key, value in obj.items()
                       if key not in _NOT_SOURCES and key.endswith(("_ref", "_refs"))
                       and (value in named if isinstance(value, str) else
                            isinstance(value, list) and any(isinstance(v, str) and v in named
                                                            for v in value))}
                      ) if isinstance(obj, dict) else []
        whose.append(f"{party}'s information ({first(refs)}, named by "
                     f"{', '.join(keys) or 'a property'})")
        how.append(f"a granular marking whose marking_ref is {party}'s national marking "
                   f"(as {shown(refs[0])} carries) and whose selectors are "
                   f"[{', '.join(keys)}]")
    return (f"derived from {'; and '.join(whose)}, which its marking does not name: under "
            "this agreement a party's information goes to a third party only with that "
            "party's consent, so it must carry that party's marking where it names it; "
            f"add {'; and '.join(how)}")


_NOT_SOURCES = frozenset({"object_marking_refs", "created_by_ref"})


def source_refs(obj: dict[str, Any]) -> list[str]:
    """The ids an object's content derives from: its top-level ``*_ref`` and ``*_refs``
    properties, except markings and authorship (``created_by_ref`` names who wrote it,
    not what it says). A marking-definition derives from nothing."""
    out: list[str] = []
    if obj.get("type") == "marking-definition":
        return out
    for key, value in obj.items():
        if key in _NOT_SOURCES or not key.endswith(("_ref", "_refs")):
            continue
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, str) and "--" in ref and \
                    not ref.startswith("marking-definition--"):
                out.append(ref)
    return out


MAX_DERIVED = 1_000  # objects derived_from follows, at most


def derived_from(store: Store, bodies: Iterable[str], through: str
                 ) -> tuple[list[str], dict[str, StoredObject]]:
    """What the objects ``bodies`` (their stored STIX text) derive from
    (:func:`source_refs`), and in turn what those derive from where ``through`` (their
    holder) originated them: a holder's own object holds another party's information by
    naming that party's object, or its own object that does (docs/controls.md,
    "Derived information"). Returns every id reached, in the order reached (at most
    ``MAX_DERIVED``), and the latest version held here of each (one purged or never held
    has none). Read for a consent's release, never to serve a person."""
    reached: dict[str, None] = {}
    latest: dict[str, StoredObject] = {}
    wave = [ref for body in bodies for ref in source_refs(json.loads(body))]
    while wave:
        fresh = [ref for ref in dict.fromkeys(wave) if ref not in reached]
        fresh = fresh[:MAX_DERIVED - len(reached)]
        if not fresh:
            break
        reached.update(dict.fromkeys(fresh))
        for row in store.held(fresh, versions=("last",)):
            if row.object_id not in latest or latest[row.object_id].version < row.version:
                latest[row.object_id] = row
        wave = [ref for oid in fresh if oid in latest and latest[oid].originator == through
                for ref in source_refs(json.loads(latest[oid].body))]
    return list(reached), latest


class _Run:
    """One publication's storing: each part decided (the originator and derivation checks,
    its denials audited) and stored in transactions of ``BATCH`` objects, in order."""

    def __init__(self, publisher: Publisher, person: Person, collection_id: str,
                 refused: list[Outcome], denials: list[AuditEvent],
                 sources: dict[int, list[str]],
                 progress: Callable[[int], None] | None) -> None:
        self.publisher = publisher
        self.person = person
        self.collection_id = collection_id
        self.refused = refused  # shared with the caller, which adds to it too
        self.denials = denials
        self.sources = sources
        self.progress = progress
        self.stored: list[Outcome] = []
        self.sent = 0  # objects handed to the store
        self.reported = 0  # of refused, counted in progress
        self.release: Callable[[NewObject], Iterable[str]] | None = None
        self.conflict: MarkingConflict | None = None  # the store refused a definition
        self.forgotten: set[str] = set()  # the definitions forgotten then

    def store(self, pending: list[tuple[NewObject, dict[str, Any]]]) -> None:
        p = self.publisher
        pending = p._originators(self.person, pending, self.refused, self.denials)
        pending, joined = p._reclassified(self.person, pending, self.refused, self.denials)
        pending = p._derived(self.person, pending, self.refused, self.denials, self.sources)
        p.audit.record(*self.denials)
        self.denials.clear()
        if self.progress is not None and len(self.refused) > self.reported:
            self.progress(len(self.refused) - self.reported)  # refused before storing
            self.reported = len(self.refused)
        if pending and self.release is None and p.releaser is not None:
            self.release = p.releaser()  # once per publication
        for start in range(0, len(pending), BATCH):
            chunk = pending[start:start + BATCH]
            size, tries = len(chunk), 0
            results: list[AddResult] | None = None
            while True:
                marks = [(n.object_id, n.body) for n, _ in chunk
                         if n.object_type == "marking-definition"]
                batch = [n for n, _ in chunk]
                try:
                    if self.conflict is not None and any(
                            ref in self.forgotten for n in batch for ref in n.marking_refs):
                        raise self.conflict  # labelled with a definition the store refused
                    results = p.store.add_objects(
                        self.collection_id, batch, marks, release=self.release,
                        audit=functools.partial(p._events, self.person, batch),
                        reclassified=joined)
                except ReclassifiedMeanwhile:
                    # one of these objects was reclassified since they were joined: joined
                    # again (a join again with what they were joined with changes nothing)
                    tries += 1
                    if tries >= RECLASSIFIED_TRIES:
                        raise
                    chunk, again = p._reclassified(self.person, chunk, self.refused,
                                                   self.denials)
                    joined = {**joined, **again}
                    p.audit.record(*self.denials)
                    self.denials.clear()
                    continue
                except StoreFull as exc:
                    if not self.sent:
                        raise
                    raise StoreFull(f"{exc.message}; the first {self.sent} objects to store "
                                    "were stored before (each batch is one transaction), the "
                                    "rest were not", hint=exc.hint) from None
                except MarkingConflict as exc:
                    self._refuse(batch, [mid for mid, _ in marks], exc)
                    results = None
                break
            if results is None:
                continue
            self.sent += len(batch)
            unreadable = self._unreadable_conflicts(results)
            for r in results:
                message = _unreadable(r.object_id) if (r.object_id, r.version) in unreadable \
                    else r.message
                self.stored.append(Outcome(r.object_id, r.version, r.outcome in ("added", "exists"),
                                           message))
            if self.progress is not None:
                self.progress(size)
        if pending and p.on_stored is not None:
            p.on_stored()  # the courier sends this part while the next is decided

    def _refuse(self, batch: Sequence[NewObject], definitions: Sequence[str],
                conflict: MarkingConflict) -> None:
        """Refuse all of ``batch``, which the store refused whole: a definition in it (or
        one its objects were labelled with) differs from the one another worker stored
        under that id meanwhile. This process forgets the definitions it learnt for the
        batch, so the next use reads the stored one; objects of later batches that cite
        them were labelled with them, so they are refused too. Audited as denials."""
        p = self.publisher
        self.forgotten.update(definitions)
        p.markings.forget(definitions)
        self.conflict = conflict
        reason = f"{conflict.message}; publish again"
        p.audit.record(*p.audit.by_originator(
            "deny", [(n.object_id, n.version or "", n.originator) for n in batch],
            person=self.person, act="publish", reason=reason))
        self.stored.extend(Outcome(n.object_id, None, False, reason) for n in batch)
        if self.progress is not None:
            self.progress(len(batch))

    def _unreadable_conflicts(self, results: Sequence[AddResult]) -> set[tuple[str, str]]:
        """The (id, version) of each conflict with a stored version the person may not
        read: refused in the words of :func:`_unreadable`, not the store's, which say that
        this very version is stored (an earlier version of an object whose latest they
        may read)."""
        conflicts = {(r.object_id, r.version) for r in results if r.outcome == "conflict"}
        if not conflicts:
            return set()
        p = self.publisher
        labels = p.store.labels()
        rows = p.store.held(sorted({oid for oid, _ in conflicts}),
                            versions=tuple(sorted({v for _, v in conflicts})))
        return {(row.object_id, row.version) for row in rows
                if (row.object_id, row.version) in conflicts
                and p.access.view(self.person, row, labels) is None}


class PublishError(IntelpactError):
    """The whole publication was refused (e.g. a marking the agreement does not allow)."""
