"""Originator controls: recall and destruction, reclassification (docs/controls.md).

Under the agreement the originator keeps sovereignty over what it shared: it alone
reclassifies or recalls, and holders obey at once. Each control is a *notice* signed
by the sending node's key (RFC 8785 JSON, Ed25519, like receipts), kept and queued in
the transaction that records it (with its audit events), and delivered by the courier
over mutual TLS with retries, so a holder that is offline gets it when it comes back.
The receiver verifies the signature under the sender's pinned keys, that it is the
addressee, the agreement, and that the sender originated the object; it applies the
notice once (notices are kept by id) and answers with a signed receipt.

- **recall**: the holder purges every version's content, keeping a tombstone (id,
  version, markings, the hash of what was destroyed) that no query serves; drops what
  it had queued onward; and answers with a signed **destroyed** notice (``in_reply_to``
  the recall) listing the versions and hashes destroyed, and apart those it destroyed
  before (its tombstones). The originator records it beside the recall as its
  confirmation — the answer to the latest recall only, if it accounts for every version
  the dissemination record says went to the holder — or why not. From the recall on,
  the originator releases nothing more of that object to that party, and the holder
  stores nothing more of it.
- **reclassify**: the originator publishes a new version under the new marking (the
  publish path: validated, signed, the publisher's clearance checked) and tells every
  holder of earlier versions, with the new marking-definition and the new version. A
  holder relabels at once each version it holds older than that one, with the join of
  its label and the new marking's (its body still carries the old marking); if that no
  longer lets it hold them, it purges them as for a recall and says so with a destroyed
  notice. The originator joins its own older versions so too, and keeps the
  reclassification; an older version either receives later is joined with the
  reclassifications kept there (:meth:`Controls.raises`), or refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..errors import IntelpactError
from ..model import Label, LabelPart, Markings, Policy, parse_marking
from ..model.decisions import Person
from ..model.echo import first, shown, too_many
from ..model.errors import MarkingError
from ..model.markings import SIGNATURES_EXTENSION_ID
from ..stix.validate import is_identifier
from ..store.base import (
    AuditEvent,
    AuditFilter,
    Dissemination,
    Notice,
    Purging,
    RecallRecord,
    ReclassifiedMeanwhile,
    Store,
    StoredObject,
    normalise_timestamp,
    parse_timestamp,
    timestamp,
    utc_now,
)
from .audit import AuditLog, canonical, operator
from .federation import (
    MAX_NAMED,
    Federation,
    FederationError,
    sign_payload,
    verify_payload,
)
from .people import Principal, refused_for_node
from .publish import RECLASSIFIED_TRIES, MarkingRequest, Publisher, definition_label

T = TypeVar("T")
NOTICE_VERSION = 1
NOTICE_KINDS = ("recall", "destroyed", "reclassify")
# Consent for third-party release (services/consent.py): the same notices, other kinds.
CONSENT_KINDS = ("consent-request", "consent", "consent-refused", "onward-release")
MAX_REASON = 2_000
# Objects destroyed in one transaction by destroy_received: about 0.05-0.15 s of the
# store's write lock at the rate measured (bench/destroy.py, docs/performance.md)
DESTROY_BATCH = 100
log = logging.getLogger("intelpact.controls")


class ControlError(IntelpactError):
    """A control was refused (who may do it, what it names, a notice that does not check)."""


class Controls:
    def __init__(self, federation: Federation, policy: Policy, markings: Markings,
                 store: Store, audit: AuditLog, publisher: Publisher) -> None:
        self.federation = federation
        self.policy = policy
        self.markings = markings
        self.store = store
        self.audit = audit
        self.publisher = publisher
        # set by services/consent.py: applies the consent notices this node receives
        self.on_consent: Callable[[str, Mapping[str, Any], Notice], None] | None = None
        # what an older version arriving later is joined with, as the notice joined the
        # versions held when it was applied (Federation.receive)
        federation.reclassifications = self.raises
        publisher.reclassifications = self.raises
        federation.on_pinned = self._tell_pinned
        self._terminated: str | None = None  # the text whose termination is done (hash)

    @property
    def party(self) -> str:
        return self.federation.me.party

    # -- what we hold -----------------------------------------------------------------
    def _rows(self, object_id: str) -> list[StoredObject]:
        """Every stored version of ``object_id`` in every collection, whatever its label."""
        return self.store.held([object_id])

    def _own(self, object_id: str, what: str) -> list[StoredObject]:
        rows = self._rows(object_id)
        if not rows:
            raise ControlError(f"no object {object_id} is held here")
        origin = rows[0].originator
        if origin != self.party:
            raise ControlError(f"{object_id} was originated by {origin}: only the originator "
                               f"may {what} it", hint=f"ask {origin} to {what} it")
        return rows

    # -- signed notices -----------------------------------------------------------------
    def _notice(self, kind: str, to: str, body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        me = self.federation.signer()  # partners verify a notice under any key of ours
        notice = {"intelpact_notice": NOTICE_VERSION, "kind": kind, "id": str(uuid.uuid4()),
                  "from": me.party, "to": to, "agreement": me.agreement_hash,
                  "issued": timestamp(utc_now()), **body}
        signed = {"notice": notice, "key_id": me.key_id,
                  "signature": sign_payload(me.key, notice)}
        return notice["id"], signed

    def _outgoing(self, kind: str, to: str, object_id: str | None, body: Mapping[str, Any],
                  made: str | None = None) -> Notice:
        """A notice for ``to``, signed (:meth:`_notice`), as the outgoing queue keeps it
        (``made``: when, now unless given)."""
        notice_id, signed = self._notice(kind, to, body)
        return Notice(notice_id, "out", to, kind, object_id, canonical(signed),
                      made or timestamp(utc_now()))

    def _queue(self, kind: str, to: str, object_id: str | None, body: Mapping[str, Any],
               events: Sequence[Any], recall_reason: str | None = None) -> str:
        notice = self._outgoing(kind, to, object_id, body)
        self.store.add_notice(notice, recall_reason=recall_reason, audit=events)
        return notice.notice_id

    # -- recall (originator) ------------------------------------------------------------
    def recall(self, principal: Principal | None, object_id: str, *,
               parties: Sequence[str] = (), reason: str) -> list[str]:
        """Recall ``object_id`` from ``parties`` (default: every party it went to, and
        every party a version of it waits in the outbox to go to: a partner offline when
        it is recalled must not get it when it comes back). Returns the parties a recall
        notice was queued for."""
        _check_reason(reason)
        if principal is not None and not principal.has_role("security-officer"):
            raise ControlError("recalling needs the security-officer role")
        rows = self._own(object_id, "recall")
        if principal is not None and (why := refused_for_node(
                self.policy, self.audit, principal.person, "recall", originator=self.party,
                objects=[(r.object_id, r.version) for r in rows])):
            raise ControlError(why)
        peers = self.federation.peers()
        # the outbox before the dissemination record: an entry delivered between the two
        # reads (its receipt moves it from one to the other) is in the first
        queued = set(self.store.queued_for(object_id))
        holders = sorted({d.party for d in self.store.disseminations(object_id=object_id)}
                         | queued)
        targets = [p.upper() for p in parties] if parties else holders
        for party in targets:
            if party not in peers:
                raise ControlError(f"{party} is not a pinned partner")
        if not targets:
            raise ControlError(f"{object_id} has not gone to any partner, and waits to go to "
                               "none: nothing to recall",
                               hint="name a partner with --party to stop it going there")
        person = principal.person if principal is not None else None
        account = None if principal is not None else operator()
        for party in targets:
            event = self.audit.event("recall", person=person, operator=account, party=party,
                                     originator=self.party,
                                     objects=[(r.object_id, r.version) for r in rows],
                                     reason=reason, direction="out")
            self._queue("recall", party, object_id, {"object_id": object_id, "reason": reason},
                        [event], recall_reason=reason)
        return targets

    def recall_all(self, principal: Principal | None, party: str, *,
                   reason: str) -> list[str]:
        """Recall every object this node originated that went to ``party``."""
        ids = sorted({d.object_id for d in self.store.disseminations(party=party.upper())})
        own = [oid for oid in ids if (rows := self._rows(oid))
               and rows[0].originator == self.party]
        if not own:
            raise ControlError(f"nothing this node originated has gone to {party.upper()}")
        for object_id in own:
            self.recall(principal, object_id, parties=[party], reason=reason)
        return own

    def destroy_received(self, reason: str, *, once: str | None = None,
                         done: Callable[[int], AuditEvent] | None = None) -> int | None:
        """Destroy every object received from partners (the agreement ended and says so):
        purged to tombstones and each originator told with a signed destroyed notice.
        The versions of this node's own objects that hold a partner's material (a
        portion, or a marking, of another party: their banner's sources) are destroyed
        too, audited; nothing is sent about them. Each transaction chooses what it destroys
        as it finds it (Store.purge_chosen), in batches, and the last reads the whole
        store: an object stored as this runs is destroyed too. ``done``: an event recorded
        in that last transaction (given the count), once (``once``: its kind; recorded
        already, by this call's batches' start or another process, nothing more is done
        and None returned). Cut short, what was destroyed stays so; a second run destroys
        the rest. Returns how many objects."""
        labels = self.store.labels()

        def partners(banner_id: int) -> bool:
            """The banner's label has a source other than this party (a label stored since
            they were read is read again)."""
            label = labels.get(banner_id) or self.store.labels()[banner_id]
            return bool(label.sources - {self.party})

        def choose(originator: str, banner_id: int) -> bool:
            return originator != self.party or partners(banner_id)

        when = timestamp(utc_now())

        def purging(object_id: str, originator: str) -> Purging:
            if originator == self.party:  # ours, its versions holding a partner's material
                return Purging(_tombstone(when), lambda rows: self.audit.by_originator(
                    "destroy", [(r.object_id, r.version, r.originator) for r in rows],
                    operator=operator(), reason=reason, held="a partner's material"))
            # purged and the originator's notice queued in one transaction: a crash
            # between the two would leave it never told (a second run finds nothing)
            return Purging(
                _tombstone(when),
                lambda rows: [
                    *self.audit.by_originator(
                        "destroy", [(r.object_id, r.version, r.originator) for r in rows],
                        party=originator, operator=operator(), reason=reason),
                    self.audit.event("destroy", party=originator, originator=originator,
                                     objects=[(r.object_id, r.version) for r in rows],
                                     reason=reason, direction="out")],
                notices=lambda rows, _: [
                    self._confirmation(originator, object_id, rows, None, reason=reason)])
        # in batches of DESTROY_BATCH objects, a transaction each, in seq order (each
        # holds the write lock: every write of the node waits), then one reading the whole
        # store again: what was stored meanwhile, before a batch read past it, is in it
        purged: set[tuple[str, str]] = set()
        after = 0
        while True:
            step = self.store.purge_chosen(choose, purging, when, after=after,
                                           limit=DESTROY_BATCH, once=once)
            if step is None:
                return None  # done already
            purged.update(step.objects)
            if step.last == after:
                break
            after = step.last
        last = self.store.purge_chosen(
            choose, purging, when, once=once,
            done=None if done is None else lambda objects: done(len(purged | set(objects))))
        if last is None:
            return None
        return len(purged | set(last.objects))

    def terminate(self, day: dt.date | None = None) -> int | None:
        """Do what the pinned text's termination requires, once its date has come (``day``:
        today, UTC, unless given): when its rules say ``destroy`` or ``return``, destroy
        what was received (:meth:`destroy_received`) and record it done, with the count,
        as one ``agreement-terminate`` event (the text's hash, its date, its rule). Once
        per node: a call after that event (a later round, a restart, the same text pinned
        again, or another process at the same time) does nothing: the event is recorded
        in the destruction's last transaction, and each of its transactions does nothing
        if it finds one. A destruction cut short records nothing, so the next call
        finishes it. Returns
        how many objects were destroyed; None when nothing was due, or done already."""
        agreement = self.policy.agreement
        if agreement.state != "terminated" or \
                agreement.rules.on_termination not in ("destroy", "return") or \
                not agreement.terminated_on(day or utc_now().date()):
            return None
        if self._terminated == agreement.content_hash or self.terminated_at() is not None:
            self._terminated = agreement.content_hash
            return None
        count = self.destroy_received(
            f"agreement {agreement.id} terminated ({agreement.rules.on_termination})",
            once="agreement-terminate", done=lambda destroyed: self.audit.event(
                "agreement-terminate", agreement=agreement.id, version=agreement.version,
                agreement_hash=agreement.content_hash, terminated=str(agreement.terminated),
                on_termination=agreement.rules.on_termination, destroyed=destroyed,
                operator=operator()))
        self._terminated = agreement.content_hash
        return count

    def terminated_at(self) -> str | None:
        """When the pinned text's termination was done here (its ``agreement-terminate``
        event's time), or None."""
        agreement = self.policy.agreement
        for record in self.store.latest_audit(AuditFilter(kinds=("agreement-terminate",),
                                                          limit=1)):
            said = json.loads(record.body)
            if said.get("agreement_hash") == agreement.content_hash:
                return str(said.get("at"))
        return None

    def recalls(self) -> list[RecallRecord]:
        return self.store.recalls()

    # -- reclassify (originator) -------------------------------------------------------
    def reclassify(self, principal: Principal, object_id: str, marking: MarkingRequest, *,
                   collection_id: str, reason: str) -> tuple[str, list[str]]:
        """Publish a new version of our ``object_id`` under ``marking`` and tell every
        holder of earlier versions. Returns the new version and the parties told."""
        _check_reason(reason)
        if not (principal.has_role("publisher") or principal.has_role("security-officer")):
            raise ControlError("reclassifying needs the publisher or security-officer role")
        rows = self._own(object_id, "reclassify")
        if why := refused_for_node(self.policy, self.audit, principal.person, "reclassify",
                                   originator=self.party,
                                   objects=[(r.object_id, r.version) for r in rows]):
            raise ControlError(why)
        latest = max(rows, key=lambda r: r.version)
        obj = json.loads(latest.body)
        refs = self._without_national(obj.get("object_marking_refs", []), self.party)
        obj.pop("object_marking_refs", None)
        if refs:
            obj["object_marking_refs"] = refs  # TLP and others stay; ours is replaced
        extensions = {k: v for k, v in obj.pop("extensions", {}).items()
                      if k != SIGNATURES_EXTENSION_ID}  # signed afresh when published
        if extensions:
            obj["extensions"] = extensions
        obj["modified"] = _later(latest.version)
        # Kept before the new version is published, and forgotten in the transaction that
        # completes the reclassification: one cut short between the two (a crash, a failed
        # write) is completed when the node next opens (resume)
        planned = normalise_timestamp(obj["modified"])
        self.store.intend_reclassify(object_id, planned, reason)
        try:
            status = self.publisher.publish(principal.person, collection_id, [obj],
                                            marking=marking)
        except IntelpactError:  # refused, nothing published
            self.store.intend_reclassify(object_id, planned, None)
            raise
        done = [s for s in status.body["successes"] if s["id"] == object_id]
        if not done:
            self.store.intend_reclassify(object_id, planned, None)
            failure = next((f["message"] for f in status.body["failures"]
                            if f["id"] == object_id), "refused")
            raise ControlError(f"the reclassified version was refused: {failure}")
        version = str(done[0].get("version", planned))
        return version, self._complete(object_id, version, reason, person=principal.person)

    def resume(self, *, begun_before: float = 0.0) -> int:
        """Complete each reclassification of ours cut short after its new version was
        published (a crash, a failed write: Store.reclassify_intents), as it would have
        been, its events recorded as the operator's and ``resumed``; forget one whose
        version was never published, or that was completed. Run when the node opens,
        before anything is served, and by ``serve``'s courier for those begun more than
        ``begun_before`` seconds ago (one begun since may be under way in another
        thread: it would be completed as the operator's). Returns how many were
        completed."""
        completed = 0
        cutoff = utc_now() - dt.timedelta(seconds=begun_before)
        for object_id, version, reason, made in self.store.reclassify_intents():
            if begun_before and parse_timestamp(made) > cutoff:
                continue
            published = any(r.version == version for r in self._rows(object_id))
            kept = any(v == version for _, v, _, _ in self.store.reclassifications([object_id]))
            if published and not kept:
                try:
                    self._complete(object_id, version, reason)
                    completed += 1
                    continue
                except ControlError as exc:  # it never can be: say so, and forget it
                    log.error("the reclassification of %s to version %s, cut short, cannot "
                              "be completed: %s", object_id, version, exc.message)
            self.store.intend_reclassify(object_id, version, None)
        return completed

    def _complete(self, object_id: str, version: str, reason: str, *,
                  person: Person | None = None) -> list[str]:
        """The reclassification of our ``object_id`` whose new ``version`` is published:
        join the older versions with its marking, keep it, and queue the holders'
        notices, with the events (``person``'s, or the operator's when the node completes
        one cut short), in one transaction. Returns the parties told. Done again, from
        the versions read again, when an older version was stored after they were read
        (ReclassifiedMeanwhile: it would have kept its old label)."""
        return _again(lambda: self._complete_once(object_id, version, reason, person=person))

    def _complete_once(self, object_id: str, version: str, reason: str, *,
                       person: Person | None) -> list[str]:
        rows = self._rows(object_id)
        new_rows = [r for r in rows if r.version == version]
        definition = self._definition_of(new_rows[0]) if new_rows else None
        if definition is None:
            raise ControlError("the new version carries no national marking of this node")
        _, part = self._notice_marking(self.party, definition)
        # Our own older versions are joined as a holder's are (their bodies still carry
        # the old marking): what we serve, release (push, pull, a partner pinned later)
        # and what waits in the outbox (decided again as it leaves) follow the new one.
        older = self._older(rows, version)
        relabelled = self._joined(older, definition_label(self.policy.agreement, part,
                                                          self.party))
        queued = self._queued(object_id, older, relabelled)  # first, as recall reads them
        holders = sorted(({d.party for d in self.store.disseminations(object_id=object_id)
                           if d.version != version} | queued) - self._recalled_from(object_id))
        who: dict[str, Any] = ({"person": person} if person is not None else
                               {"operator": operator(), "resumed": True})
        # the older versions joined here, recorded whether or not any partner is told
        events = [self.audit.event("reclassify", **who, originator=self.party,
                                   objects=[(object_id, r.version) for r in older],
                                   reason=reason, marking=definition["id"],
                                   reclassified=version)]
        recalled = self._recalled_from(object_id)

        def tell(parties: Sequence[str]) -> tuple[list[Notice], list[Any]]:
            notices, told, sent = [], [], []
            for party in parties:
                if party in recalled or party in told:
                    continue
                told.append(party)
                sent.append(self.audit.event(
                    "reclassify", **who, party=party, originator=self.party,
                    objects=[(object_id, version)], reason=reason, marking=definition["id"],
                    direction="out"))
                notices.append(self._outgoing("reclassify", party, object_id, {
                    "object_id": object_id, "version": version, "reason": reason,
                    "marking": definition}))
            holders[:] = sorted(told)
            return notices, sent

        # kept (for the Relabeller and for what arrives later), joined and the holders'
        # notices queued in one transaction, its intent forgotten; the new version was
        # stored before it, by the publish path (docs/controls.md, "Reclassification").
        # The holders are those found above and those the transaction finds an older
        # version went or may be going to: a push or pull decided before the relabelling
        # and recorded before this transaction is told of it, one recorded after decides
        # again on the new labels (Courier.push_once, the federation outbox)
        self.store.relabel(object_id, self.party, relabelled, events,
                           reclassified=(version, canonical(definition), reason),
                           tell=lambda went: tell(sorted(set(holders) | set(went))),
                           older_than=version)
        return holders

    def _tell_pinned(self, party: str) -> int:
        """Tell ``party``, pinned now and an older version of one of our reclassified
        objects queued for it, of each reclassification that version is older than, as a
        holder was told: it would hold that version under its old marking. Returns how
        many notices were queued."""
        told = 0
        labels = self.store.labels()
        for object_id, version, marking, reason in self.store.reclassifications():
            older = self._older(self._rows(object_id), version)
            if party in self._recalled_from(object_id) or party not in self._queued(
                    object_id, older, {
                    r.version: (labels[r.label_id], labels[r.banner_id]) for r in older}):
                continue
            event = self.audit.event("reclassify", operator=operator(), party=party,
                                     originator=self.party, objects=[(object_id, version)],
                                     reason=reason, marking=json.loads(marking).get("id"),
                                     direction="out")
            self._queue("reclassify", party, object_id,
                        {"object_id": object_id, "version": version, "reason": reason,
                         "marking": json.loads(marking)}, [event])
            told += 1
        return told

    def _queued(self, object_id: str, older: Sequence[StoredObject],
                labels: Mapping[str, tuple[Label, Label]]) -> set[str]:
        """The partners an older version of ``object_id`` waits in the outbox to go to
        and may still go to under its joined ``labels``: told as holders are, since it
        reaches them under its old marking (a partner it may no longer go to gets
        nothing of it: the outbox decides again as it leaves, and is told nothing)."""
        parties = set(self.store.queued_for(object_id))
        return {party for party in parties if any(
            self.federation.may_release_now(labels[row.version][1], party, row)
            for row in older)}

    def _recalled_from(self, object_id: str) -> set[str]:
        """The partners ``object_id`` was recalled from: nothing more of it goes to them,
        a reclassification's notice included (it would tell them its new marking and the
        reason)."""
        return {r.party for r in self.store.recalls([object_id])}

    def _is_ours(self, marking_id: str) -> bool:
        return self._national_of(marking_id, self.party)

    def _definition_of(self, row: StoredObject) -> dict[str, Any] | None:
        for ref in json.loads(row.body).get("object_marking_refs", []):
            if self._is_ours(ref):
                return self.markings.definition(ref)
        return None

    # -- receiving notices ----------------------------------------------------------------
    def receive(self, sender: str, signed: Any) -> dict[str, Any]:
        """Check and apply a notice from ``sender``; returns the signed receipt. Raises
        ControlError with the reason, recorded as a ``refuse`` event (nothing kept)."""
        try:
            return self._receive(sender, signed)
        except ControlError as exc:
            notice = signed.get("notice") if isinstance(signed, dict) else None
            kind = notice.get("kind") if isinstance(notice, dict) else None
            self.audit.record(self.audit.event(
                "refuse", party=sender, actor=sender, reason=exc.message,
                notice=shown(notice.get("id")) if isinstance(notice, dict) else None,
                message=kind if kind in NOTICE_KINDS + CONSENT_KINDS else shown(kind)))
            raise

    def _receive(self, sender: str, signed: Any) -> dict[str, Any]:
        notice = self._verified(sender, signed)
        kind = notice["kind"]
        stored = Notice(notice["id"], "in", sender, kind,
                        str(notice.get("object_id")) if notice.get("object_id") else None,
                        canonical(signed), timestamp(utc_now()), timestamp(utc_now()))
        if kind == "recall":
            self._recalled(sender, notice, stored)
        elif kind == "destroyed":
            self._destroyed(sender, notice, stored)
        elif kind == "reclassify":
            self._reclassified(sender, notice, stored)
        elif self.on_consent is not None:
            self.on_consent(sender, notice, stored)
        else:
            raise ControlError(f"this node does not take {kind} notices")
        receipt = {"receiver": self.party, "sender": sender, "notice": notice["id"],
                   "sha256": hashlib.sha256(canonical(signed).encode()).hexdigest()}
        me = self.federation.me
        return {"receipt": receipt, "key_id": me.key_id,
                "signature": sign_payload(me.key, receipt)}

    def _verified(self, sender: str, signed: Any) -> dict[str, Any]:
        if not isinstance(signed, dict) or not isinstance(signed.get("notice"), dict):
            raise ControlError("not a signed notice")
        notice = signed["notice"]
        keys = self.federation.keys_of(sender)
        public = keys.get(str(signed.get("key_id")))
        if public is None or not verify_payload(public, str(signed.get("signature", "")),
                                                notice):
            raise ControlError(f"the notice is not signed by a key of {sender}")
        if notice.get("intelpact_notice") != NOTICE_VERSION or \
                notice.get("kind") not in NOTICE_KINDS + CONSENT_KINDS:
            raise ControlError(f"unknown notice {shown(repr(notice.get('kind')))}")
        if notice.get("from") != sender or notice.get("to") != self.party:
            raise ControlError(f"the notice is from {shown(notice.get('from'))} to "
                               f"{shown(notice.get('to'))}, not from {sender} to "
                               f"{self.party}")
        if notice.get("agreement") != self.federation.me.agreement_hash:
            raise ControlError("the notice is under another agreement text")
        if not isinstance(notice.get("id"), str) or not isinstance(notice.get("object_id"),
                                                                    str):
            raise ControlError("the notice names no object")
        if not _uuid(notice["id"]):  # as every node makes them: kept, and recorded in
            # events a partner audit answers with, whole (no id a megabyte long)
            raise ControlError(f"the notice's id {shown(notice['id'])} is not a UUID")
        if not is_identifier(notice["object_id"]):  # kept and recorded whole, as its id
            raise ControlError(f"the notice's object {shown(notice['object_id'])} is not a "
                               "STIX identifier")
        reason = notice.get("reason")
        if notice["kind"] in ("recall", "reclassify", "consent-refused") and \
                (not isinstance(reason, str) or len(reason) > MAX_REASON):
            # a reason is recorded with every event the notice makes, whole: the sender's
            # node refuses one longer when it is given (_check_reason, consent's _check_text)
            raise ControlError(f"the notice's reason is not text of at most {MAX_REASON:,} "
                               "characters" + (f" (it has {len(reason):,})"
                                               if isinstance(reason, str) else ""))
        return dict(notice)

    def _held_from(self, sender: str, notice: Mapping[str, Any]) -> list[StoredObject]:
        """The versions held here of the object ``notice`` (a recall or reclassification)
        is about that ``sender`` originated: only the originator recalls or reclassifies.
        A notice about an object held here from another originator applies to nothing,
        and is answered exactly as one about an object not held: refused, it told the
        sender that this node holds that object, and from whom. The refusal is recorded
        here, with the reason, under the object's originator (shown to it by partner
        audit); the sender is not told."""
        object_id = str(notice["object_id"])
        rows = self._rows(object_id)
        self.audit.record(*self._not_theirs(sender, notice, rows, sender, lambda others: (
            f"{sender} did not originate {shown(object_id)} (its originator is {others}): "
            "only the originator may recall or reclassify it. Its notice applies to "
            "nothing here")))
        return [r for r in rows if r.originator == sender]

    def _not_theirs(self, sender: str, notice: Mapping[str, Any],
                    rows: Sequence[StoredObject], owner: str, why: Callable[[str], str]
                    ) -> list[AuditEvent]:
        """The ``refuse`` events of a notice from ``sender`` about an object held here
        (``rows``) that ``owner`` did not originate, one under each originator, who sees it
        by partner audit: ``why`` of the originators named. The notice is answered
        as one about an object not held; a refusal told the sender that this node holds
        that object, and from whom."""
        others = sorted({r.originator for r in rows} - {owner})
        return [self.audit.event(
            "refuse", party=sender, actor=sender, originator=origin,
            objects=[(str(notice["object_id"]), "")], notice=notice["id"],
            message=notice["kind"],
            reason=why(", ".join(others)) + ", and is answered as one about an "
            "object not held") for origin in others]

    def _purge(self, sender: str, notice: Mapping[str, Any], why: str, kind: str,
               stored: Notice, older_than: str | None = None) -> None:
        """Tombstone every version held (or those older than ``older_than``, as the
        transaction finds them: one stored after the caller read the versions is
        destroyed too), record ``notice`` as
        applied and queue the originator's confirmation of what was destroyed: in one
        transaction, so a crash can neither leave the notice unapplied with the copies
        gone (applied again, it would confirm nothing destroyed) nor the originator never
        told."""
        object_id = str(notice["object_id"])
        when = timestamp(utc_now())
        self.store.purge(
            object_id, sender, _tombstone(when), when,
            lambda rows: [
                *self.audit.by_originator(
                    "destroy", [(r.object_id, r.version, r.originator) for r in rows],
                    party=sender, actor=sender, reason=why, notice=notice["id"]),
                self.audit.event(kind, party=sender, actor=sender, originator=sender,
                                 objects=[(object_id, "")], reason=str(notice.get("reason")),
                                 notice=notice["id"], direction="in"),
                self.audit.event("destroy", party=sender, originator=sender,
                                 objects=[(object_id, r.version) for r in rows],
                                 reason=why, notice=notice["id"], direction="out")],
            # a recall's answer also says what was destroyed here before (tombstones): a
            # holder that held nothing more by then still accounts for what it was given
            notices=lambda rows, earlier: [stored, self._confirmation(
                sender, object_id, rows, notice["id"],
                **({"destroyed_earlier": _pairs(earlier, but=rows)} if kind == "recall"
                   else {}))],
            older_than=older_than)

    def _confirmation(self, originator: str, object_id: str, rows: Sequence[StoredObject],
                      in_reply_to: str | None, **more: Any) -> Notice:
        """The signed ``destroyed`` notice telling ``originator`` which versions of
        ``object_id`` were destroyed here (``rows``, as they were)."""
        notice_id, signed = self._notice("destroyed", originator, {
            "object_id": object_id, "in_reply_to": in_reply_to, **more,
            "destroyed": _pairs(rows)})
        return Notice(notice_id, "out", originator, "destroyed", object_id, canonical(signed),
                      timestamp(utc_now()))

    def _recalled(self, sender: str, notice: Mapping[str, Any], stored: Notice) -> None:
        if self.store.notice(stored.notice_id) is not None:
            return  # applied already: answer with the receipt again
        self._held_from(sender, notice)  # its versions are those purge takes
        self._purge(sender, notice, f"recalled by {sender}: {notice.get('reason', '')}",
                    "recall", stored)

    def _destroyed(self, sender: str, notice: Mapping[str, Any], stored: Notice) -> None:
        object_id = str(notice["object_id"])
        # what it destroyed answering, and (a recall's answer, from nodes that say it)
        # what it had destroyed before: each a list of [version, body hash] pairs
        destroyed, earlier = _named(notice, "destroyed"), _named(notice, "destroyed_earlier")
        problem = too_many("versions", [v for v, _ in destroyed + earlier], MAX_NAMED)
        if problem is not None:
            raise ControlError(f"the destruction receipt names {problem} receipt")
        answers = notice.get("in_reply_to")
        if answers is not None and not (isinstance(answers, str) and _uuid(answers)):
            raise ControlError("the destruction receipt is malformed: 'in_reply_to' must be "
                               "the id of the notice it answers, or null")
        refused = self._not_theirs(sender, notice, self._rows(object_id), self.party,
                                   lambda others: (
                                       f"{shown(object_id)} is not ours (its originator is "
                                       f"{others}): a destruction receipt for it is not for "
                                       "us. Kept"))
        if refused:
            self.store.add_notice(stored, audit=refused)
            return
        more: dict[str, Any] = {"earlier": [[object_id, v] for v, _ in earlier]} \
            if earlier else {}
        event = self.audit.event("destroy", party=sender, actor=sender,
                                 originator=self.party,
                                 objects=[(object_id, version) for version, _ in destroyed],
                                 notice=notice["id"], direction="in", **more)
        # Only the holder's answer to the latest recall of this object from it (the store
        # checks ``answers``) confirms it, and only if it accounts for every version the
        # dissemination record says went to the holder, destroyed answering or before: it
        # destroyed every version it held then, and nothing more went to it after the
        # recall. A reclassification's purge destroys only the older versions and the
        # agreement's end answers nothing. Kept, recorded and the recall marked in one
        # transaction: a crash between them left the recall unconfirmed for good (a
        # resent receipt is kept).
        self.store.add_notice(
            stored, confirms=answers, audit=[event],
            accounted=lambda delivered: _unaccounted(delivered, destroyed, earlier,
                                                     "destroyed_earlier" in notice))

    def _reclassified(self, sender: str, notice: Mapping[str, Any], stored: Notice) -> None:
        """Apply a reclassification notice from ``sender`` (done again, from the versions
        read again, when an older version arrived after they were read:
        ReclassifiedMeanwhile)."""
        _again(lambda: self._reclassified_once(sender, notice, stored))

    def _reclassified_once(self, sender: str, notice: Mapping[str, Any],
                           stored: Notice) -> None:
        object_id = str(notice["object_id"])
        if self.store.notice(stored.notice_id) is not None:
            return
        rows = self._held_from(sender, notice)
        definition, part = self._notice_marking(sender, notice.get("marking"))
        try:  # its signature before we learn it: a refused marking leaves nothing behind
            self.federation.verify_definition(sender, definition)
            self.markings.add(definition)
        except (MarkingError, FederationError) as exc:
            raise ControlError(f"the new marking does not check: {exc.message}") from None
        label = definition_label(self.policy.agreement, part, sender)
        older = self._older(rows, notice.get("version"))
        relabelled = self._joined(older, label)
        # Kept or not, version by version, on the banner (a base that is not exchanged may
        # be held under a portion that is, docs/federation.md): as release decides while
        # the agreement is in force, and after a termination that continues protection,
        # as long as this node can protect the new label (Policy.may_keep)
        for held in [banner for _, banner in relabelled.values()] or ([] if rows else [label]):
            allowed = self.policy.may_keep(held, self.party, originator=sender,
                                           object_id=object_id)
            if not allowed.allowed:  # the versions it is about: a newer one has its own
                self._purge(sender, notice, f"reclassified by {sender}; no longer held here: "
                            f"{allowed.reason}", "reclassify", stored,
                            older_than=str(notice.get("version")))
                return
        event = self.audit.event("reclassify", party=sender, actor=sender, originator=sender,
                                 objects=[(r.object_id, r.version) for r in older],
                                 marking=str(definition.get("id")),
                                 reason=str(notice.get("reason")), notice=notice["id"],
                                 direction="in")
        # kept, recorded and applied in one transaction: a crash between them left the
        # reclassification recorded as applied, and never applied (a resent notice is kept)
        self.store.relabel(object_id, sender, relabelled, [event], notice=stored,
                           older_than=str(notice.get("version")))

    def _notice_marking(self, sender: str, definition: Any, *, kept: bool = False
                        ) -> tuple[dict[str, Any], LabelPart]:
        """The new marking-definition a reclassification notice from ``sender`` carries,
        and what it says, checked under the agreement in force (not learnt): a national
        marking of ``sender``. ``kept``: a notice applied before, read as stored
        (``parse_marking``): its level under the agreement in force."""
        if not isinstance(definition, dict):
            raise ControlError("the notice carries no marking-definition")
        try:
            part = parse_marking(self.policy.agreement, definition, stored=True) if kept \
                else self.markings.parse(definition)
        except MarkingError as exc:
            raise ControlError(f"the new marking does not check: {exc.message}") from None
        if part.kind != "national" or part.originator != sender:
            raise ControlError(f"the new marking is not a national marking of {sender}")
        return definition, part

    def raises(self, object_ids: Sequence[str] | None = None
               ) -> dict[tuple[str, str], list[tuple[dt.datetime, Label | None]]]:
        """What the reclassifications kept here join with the labels of the versions
        they are about, under the agreement in force (of ``object_ids``, or all): the
        notices applied here (:meth:`_reclassified`) and this node's own
        (:meth:`reclassify`); by (object id, originator), each one's version and its new
        marking's label, to join with every version older than that one
        (``reclassified_labels``); None where that marking no longer checks under the
        agreement (an amendment changed what it means: the versions are closed,
        services/relabel.py). A notice that withdrew the object destroyed those
        versions here: one that arrives later is refused (Federation.receive)."""
        out: dict[tuple[str, str], list[tuple[dt.datetime, Label | None]]] = {}
        for own, version, marking, _ in self.store.reclassifications(object_ids):
            made = parse_timestamp(version)
            try:
                _, part = self._notice_marking(self.party, json.loads(marking), kept=True)
                mine: Label | None = definition_label(self.policy.agreement, part, self.party)
            except (ControlError, ValueError):
                mine = None
            out.setdefault((own, self.party), []).append((made, mine))
        for kept in self.store.reclassify_notices(object_ids):
            try:  # checked before it was kept
                notice = json.loads(kept.body)["notice"]
                object_id, made = str(notice["object_id"]), parse_timestamp(notice["version"])
            except (ValueError, TypeError, KeyError):
                log.error("the kept reclassification notice %s is malformed: not applied "
                          "again", kept.notice_id)
                continue
            try:
                _, part = self._notice_marking(kept.party, notice.get("marking"), kept=True)
                label: Label | None = definition_label(self.policy.agreement, part, kept.party)
            except ControlError:
                label = None
            out.setdefault((object_id, kept.party), []).append((made, label))
        return out

    @staticmethod
    def _older(rows: Sequence[StoredObject], version: Any) -> list[StoredObject]:
        """The versions in ``rows`` older than the reclassified ``version``: the ones the
        notice is about. That version and any newer one carry their own marking, signed
        by the originator, which a notice that arrives late must not overwrite."""
        try:
            made = parse_timestamp(version)
        except ValueError:
            raise ControlError(f"the notice names no valid version "
                               f"({shown(repr(version))})") from None
        return [r for r in rows if parse_timestamp(r.version) < made]

    def _joined(self, rows: Sequence[StoredObject], label: Label
                ) -> dict[str, tuple[Label, Label]]:
        """Each version's base and banner label joined with the new marking's ``label``.
        A join, not a replacement: an old version's body still carries the old marking,
        so a lowered marking leaves it as restrictive as it was (it opens the new version
        only), a raised one closes it at once, and a narrower REL TO narrows it. The
        banner keeps the version's marked portions, as the originator's new version
        does; and an older notice that arrives after a newer one cannot undo it."""
        labels = self.store.labels()
        out: dict[str, tuple[Label, Label]] = {}
        for row in rows:
            base = labels[row.label_id].join(label)
            banner = labels[row.banner_id].join(label)
            if row.version in out:  # the same version in two collections: the stricter
                base, banner = out[row.version][0].join(base), out[row.version][1].join(banner)
            out[row.version] = (base, banner)
        return out

    def _without_national(self, refs: Sequence[Any], party: str) -> list[Any]:
        """``refs`` without ``party``'s national markings (TLP and the rest stay): what a
        reclassification replaces."""
        return [r for r in refs if not self._national_of(r, party)]

    def _national_of(self, marking_id: Any, party: str) -> bool:
        """Whether ``marking_id`` is a national marking of ``party`` known here."""
        if not isinstance(marking_id, str) or not self.markings.known(marking_id):
            return False
        part = self.markings.part(marking_id)
        return part.kind == "national" and part.originator == party

    # -- delivery receipts ---------------------------------------------------------------
    def check_receipt(self, party: str, notice: Notice, answer: Any) -> str:
        """The partner's signed receipt for ``notice``, verified; returns it as text. A
        receipt is signed as it is answered, never queued: by the partner's pinned key,
        as object and compromise receipts are, not a key it rotated out."""
        signed = answer if isinstance(answer, dict) else {}
        receipt = signed.get("receipt")
        peer = self.federation.peers().get(party)
        public = self.federation.keys_of(party).get(str(signed.get("key_id"))) \
            if peer is not None and signed.get("key_id") == peer.key_id else None
        if not isinstance(receipt, dict) or public is None or \
                not verify_payload(public, str(signed.get("signature", "")), receipt):
            raise FederationError(f"{party}'s receipt for notice {notice.notice_id} is not "
                                  "signed by its pinned key")
        want = hashlib.sha256(notice.body.encode()).hexdigest()
        if receipt.get("notice") != notice.notice_id or receipt.get("sha256") != want or \
                receipt.get("receiver") != party or receipt.get("sender") != self.party:
            raise FederationError(f"{party}'s receipt does not acknowledge notice "
                                  f"{notice.notice_id}")
        return canonical(signed)


def _tombstone(when: str) -> Any:
    def make(row: StoredObject) -> str:
        old = json.loads(row.body)
        stone = {"type": row.object_type, "id": row.object_id, "spec_version": row.spec_version,
                 "x_intelpact_tombstone": {"version": row.version, "destroyed": when,
                                           "body_hash": row.body_hash}}
        if "object_marking_refs" in old:
            stone["object_marking_refs"] = old["object_marking_refs"]
        return json.dumps(stone, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return make


def _named(notice: Mapping[str, Any], field: str) -> list[tuple[str, str]]:
    """The [version, body hash] pairs a destroyed notice names in ``field`` (what it
    destroyed; ``destroyed_earlier``, absent from older nodes' notices: what it had
    destroyed before); refused with the reason unless it is a list of them."""
    pairs = notice.get(field, None if field == "destroyed" else [])
    if not isinstance(pairs, list) or not all(
            isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
            for v in pairs):
        raise ControlError(f"the destruction receipt is malformed: '{field}' must be a list "
                           "of [version, body hash] pairs of strings")
    return [(v, h) for v, h in pairs]


def _pairs(rows: Sequence[StoredObject], but: Sequence[StoredObject] = ()) -> list[list[str]]:
    """[version, body hash] of each version of ``rows`` (once: a version may be stored in
    two collections) that is not in ``but``."""
    skip = {(r.version, r.body_hash) for r in but}
    return [[v, h] for v, h in dict.fromkeys((r.version, r.body_hash) for r in rows)
            if (v, h) not in skip]


def _unaccounted(delivered: Sequence[Dissemination],
                 destroyed: Sequence[tuple[str, str]], earlier: Sequence[tuple[str, str]],
                 says_earlier: bool) -> str | None:
    """Why a holder's answer to a recall, naming ``destroyed`` (now) and ``earlier`` (its
    tombstones; ``says_earlier``: the answer has that field, older nodes' do not), does
    not confirm it, given what the dissemination record says went to the holder
    (``delivered``); None when it confirms it: it names something, and every version
    delivered, by its body hash."""
    named = {h for _, h in [*destroyed, *earlier]}
    missing = [d for d in delivered if d.body_hash not in named]
    signed = sum(d.receipt_id is not None for d in missing)
    what = f"{first([d.version for d in missing], cut=False)} (" + (
        "acknowledged by its signed receipt" if signed == len(missing) else
        "pulled, with no receipt" if not signed else
        f"{signed:,} acknowledged by its signed receipt, the others pulled") + ")"
    if not named:
        if not says_earlier:  # an older node: it cannot say what it destroyed before
            return "answered, naming nothing destroyed"
        return ("answered that it holds and held nothing of the object" +
                (f", though the dissemination record says {len(missing):,} version(s) went "
                 f"to it: {what}" if missing else ""))
    if missing:
        return (f"its answer does not account for {len(missing):,} version(s) the "
                f"dissemination record says went to it: {what}")
    return None


def _again(step: Callable[[], T]) -> T:
    """``step`` (which reads the versions of an object, then relabels them), done again
    while the store finds a version stored since they were read (ReclassifiedMeanwhile),
    up to RECLASSIFIED_TRIES times."""
    for _ in range(RECLASSIFIED_TRIES - 1):
        try:
            return step()
        except ReclassifiedMeanwhile:
            continue
    return step()


def _later(version: str) -> str:
    """A ``modified`` after ``version`` and not before now, in STIX's millisecond form."""
    now = utc_now()
    try:
        floor = parse_timestamp(version) + dt.timedelta(milliseconds=1)
    except OverflowError:
        raise ControlError(f"version {version} is the last a STIX timestamp can hold: no "
                           "later version can be made of this object") from None
    when = max(now, floor)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _check_reason(reason: str) -> None:
    if not reason.strip():
        raise ControlError("give a reason (--reason): it is recorded and sent")
    if len(reason) > MAX_REASON:
        raise ControlError(f"the reason is longer than {MAX_REASON} characters")


def _uuid(text: str) -> bool:
    """Whether ``text`` is a UUID in the form ``str(uuid.UUID(...))`` gives."""
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
