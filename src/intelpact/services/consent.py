"""Consent for third-party release (docs/controls.md, DESIGN.md rule 3).

A holder may pass an object another party originated on to a third party only with the
originator's consent. The workflow runs on the originator-control *notices*
(services/controls.py: signed, queued with their audit events, delivered by the courier
with signed receipts):

1. **consent-request** (holder → originator): a person of the holder who may read the
   object asks to release it (the versions held) to a recipient party, for a purpose,
   until a requested expiry; the person is named by pseudonym, nationality, clearance.
2. **consent** (originator → holder): a security officer of the originator approves,
   with the scope — holder, recipient, the objects and versions (and the marking-
   definitions they use), purpose, issued and expiry — as a **consent token** signed by
   the originator's node key (RFC 8785 JSON, Ed25519). Or **consent-refused**, with the
   reason.
3. The holder keeps the token; its release decision (``Policy.may_release(consents=…)``)
   now allows the covered versions to the recipient, which are queued at once. Every
   push or pull that carries them carries the token; the recipient verifies it against
   the originator's pinned keys and takes its own release decision with it.
4. **onward-release** (holder → originator): once the recipient has them, the holder
   reports the versions passed on with the recipient's signed receipt (a push) — the
   originator verifies it and records the recipient in its dissemination record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..model import PartnerNode
from ..model.decisions import ConsentToken
from ..model.echo import first, shown, too_many
from ..store.base import (
    ConsentRecord,
    Notice,
    Onward,
    StoredObject,
    cited_markings,
    parse_timestamp,
    stored_version,
    timestamp,
    utc_now,
)
from .audit import canonical, operator
from .controls import MAX_REASON, ControlError, Controls
from .federation import (
    CONSENT_VERSION,
    MAX_CONSENT_VERSIONS,
    MAX_NAMED,
    FederationError,
    HeldConsents,
    consent_token,
    sign_payload,
    verify_payload,
)
from .people import Principal, refused_for_node
from .publish import derived_from

log = logging.getLogger("intelpact.consent")
DEFAULT_VALIDITY = dt.timedelta(days=30)
MAX_VALIDITY = dt.timedelta(days=366)


# a third party's object holding a fourth party's information (docs/controls.md)
_FOURTH = ("it goes to a third party only with the consent of each party whose "
           "information it holds, and a holder asks only its originator: it stays here")


class ConsentError(ControlError):
    """A consent request, decision or token was refused; the message says why."""


class Consents:
    def __init__(self, controls: Controls) -> None:
        self.controls = controls
        self.federation = controls.federation
        self.policy = controls.policy
        self.store = controls.store
        self.audit = controls.audit
        controls.on_consent = self.receive

    @property
    def party(self) -> str:
        return self.federation.me.party

    def requests(self) -> list[ConsentRecord]:
        return self.store.consents()

    # -- the holder asks --------------------------------------------------------------
    def request(self, principal: Principal, object_id: str, *, recipient: str, purpose: str,
                expires: dt.datetime | None = None, of: str | None = None) -> ConsentRecord:
        """Ask the originator of ``object_id`` (held here) to let it go to ``recipient``.
        For this node's own object, ask ``of`` instead: a party whose information it
        holds (a portion with that party's marking, docs/controls.md "Derived
        information"), by default the only one."""
        _check_text(purpose, "purpose")
        recipient = recipient.upper()
        rows = self.controls._rows(object_id)
        labels = self.store.labels()
        readable = [r for r in rows
                    if self.policy.may_read(principal.person, labels[r.banner_id]).allowed]
        if not readable:
            raise ConsentError(f"no object {object_id} you may read is held here")
        origin = rows[0].originator
        if origin == self.party:
            sources = sorted(set().union(*(labels[r.banner_id].sources for r in readable))
                             - {self.party})
            if not sources:
                raise ConsentError(f"{object_id} is this node's own: it needs no consent",
                                   hint="its marking decides where it goes")
            if of is None and len(sources) > 1:
                raise ConsentError(f"{object_id} holds the information of "
                                   f"{', '.join(sources)}: each consents for itself",
                                   hint="ask each of them in turn (--of PARTY)")
            origin = sources[0] if of is None else of.upper()
            if origin not in sources:
                raise ConsentError(f"{shown(origin)}'s information is not in {object_id}: "
                                   f"ask {', '.join(sources)}")
        elif of is not None and of.upper() != origin:
            if of.upper() in set().union(*(labels[r.banner_id].sources for r in readable)):
                raise ConsentError(f"{object_id} is {origin}'s and holds {of.upper()}'s "
                                   f"information too: only its originator, {origin}, is "
                                   "asked here", hint=_FOURTH)
            raise ConsentError(f"{object_id} is {origin}'s: ask {origin}",
                               hint="--of names whom to ask about this node's own object")
        parties = self.policy.agreement.parties
        if recipient not in parties or recipient in (self.party, origin):
            third = [p for p in parties if p not in (self.party, origin)]
            raise ConsentError(f"{recipient} is not a third party to {object_id} under "
                               f"{self.policy.agreement.id}: " + (
                                   f"name one of {', '.join(third)}" if third else
                                   "the agreement has no third party to release it to"))
        if origin not in self.federation.peers():
            raise ConsentError(f"{origin} (the originator) is not a pinned partner")
        now = utc_now()
        if expires is not None and expires <= now:
            raise ConsentError("the requested expiry is in the past")
        # of this node's own object, the versions that hold the party's information; of
        # a third party's, those that hold no fourth party's (its originator's consent
        # alone frees none of those, and that party cannot be asked here)
        mine = rows[0].originator == self.party
        versions = tuple(sorted({r.version for r in rows if origin in labels[r.banner_id].sources}
                                if mine else
                                {r.version for r in rows if not labels[r.banner_id].sources
                                 - {self.party, origin, recipient}}))
        if not versions:
            fourth = sorted(set().union(*(labels[r.banner_id].sources for r in readable))
                            - {self.party, origin, recipient})
            whose = ", ".join(fourth) or "another party"
            raise ConsentError(f"every version of {object_id} held here holds {whose}'s "
                               f"information too: {recipient} receives it only with "
                               f"{whose}'s consent as well, and only its originator, "
                               f"{origin}, is asked here", hint=_FOURTH)
        request_id = str(uuid.uuid4())
        person = principal.person
        requester = {"id": self.audit.pseudonyms.of(person.name, origin),
                     "nationality": person.party,
                     "clearance": person.clearance}
        wanted = timestamp(expires) if expires is not None else None
        body = {"object_id": object_id, "request": request_id, "versions": list(versions),
                "recipient": recipient, "purpose": purpose, "expires": wanted,
                "requester": requester}
        event = self.audit.event("consent-request", person=person, party=origin,
                                 originator=origin, objects=[(object_id, v) for v in versions],
                                 recipient=recipient, purpose=purpose, request=request_id,
                                 direction="out")
        made = timestamp(now)
        record = ConsentRecord(request_id, "out", self.party, origin, recipient, object_id,
                               versions, purpose, wanted, canonical(requester), made)
        self.store.consent_step(record, self.controls._outgoing(
            "consent-request", origin, object_id, body, made), [event])
        return record

    # -- the originator decides --------------------------------------------------------
    def _incoming(self, principal: Principal, request_id: str) -> ConsentRecord:
        if not principal.has_role("security-officer"):
            raise ConsentError("deciding on consent needs the security-officer role")
        record = self.store.consent(request_id)
        if record is None or record.direction != "in":
            raise ConsentError(f"no consent request {request_id} was made to this node",
                               hint="`intelpact consent list DIR` shows them")
        if record.status != "pending":
            raise ConsentError(f"consent request {request_id} was {record.status} already")
        if why := refused_for_node(self.policy, self.audit, principal.person,
                                   "decide on consent", request=request_id,
                                   originator=self.party,
                                   objects=[(record.object_id, v) for v in record.versions]):
            raise ConsentError(why)
        return record

    def approve(self, principal: Principal, request_id: str, *,
                expires: dt.datetime | None = None) -> ConsentRecord:
        """Consent to the request: sign a token for its scope and send it to the holder.
        ``expires``: default the requested expiry, else 30 days."""
        record = self._incoming(principal, request_id)
        # recalled since it was asked: nothing of it is passed on (as a request made after
        # the recall is refused), nor given to a party it was recalled from
        for recall in self.store.recalls([record.object_id]):
            if recall.party in (record.holder, record.recipient):
                raise ConsentError(f"{self.party} recalled {record.object_id} from "
                                   f"{recall.party} at {recall.issued}: nothing of it goes "
                                   f"{'on from' if recall.party == record.holder else 'to'} "
                                   f"{recall.party}", hint="refuse the request, saying so")
        now = utc_now()
        if expires is None:
            expires = parse_timestamp(record.requested_expires) if record.requested_expires \
                else now + DEFAULT_VALIDITY
        if expires <= now:
            raise ConsentError("the consent would expire before it is given",
                               hint="give a later --expires")
        if expires - now > MAX_VALIDITY:
            raise ConsentError("a consent is valid for a year at most")
        labels = self.store.labels()
        held = self.controls._rows(record.object_id)
        ours = bool(held) and held[0].originator == self.party
        # this node's own versions; or the holder's own, holding this node's information
        # (docs/controls.md, "Derived information"): this node consents for its part
        rows = [r for r in held if r.version in record.versions and (
            r.originator == self.party if ours else
            r.originator == record.holder and self.party in labels[r.banner_id].sources)]
        if not rows:
            raise ConsentError(f"none of the versions asked for of {record.object_id} is "
                               "held here as this node's own" if ours else
                               f"none of the versions asked for of {record.object_id} is "
                               f"held here as {record.holder}'s holding {self.party}'s "
                               "information")
        for row in rows:  # as only someone who may read an object issues versions of it
            read = self.policy.may_read(principal.person, labels[row.banner_id])
            if not read.allowed:
                self.audit.record(self.audit.event(
                    "deny", person=principal.person, originator=self.party,
                    objects=[(row.object_id, row.version)], via="consent-approve",
                    request=record.request_id, reason=read.reason))
                raise ConsentError(f"you may not read {row.object_id} ({row.version}): "
                                   f"{read.reason}; only someone who may read an object "
                                   "consents to its release",
                                   hint="a security officer cleared for it decides")
        objects: dict[str, list[str]] = {record.object_id: sorted({r.version for r in rows})}
        for row in rows:  # the marking-definitions the versions use go with them (of the
            body = json.loads(row.body)  # holder's own object: ours, on its portions)
            refs = body.get("object_marking_refs", []) if ours else cited_markings(body)
            for ref in refs if isinstance(refs, (list, tuple)) else ():
                if isinstance(ref, str) and self.controls.markings.known(ref) and (
                        ours or self.controls.markings.part(ref).originator == self.party):
                    objects.setdefault(ref, [])
        me = self.federation.signer()  # never a retired key: tokens under one are refused
        body = {"intelpact_consent": CONSENT_VERSION, "id": str(uuid.uuid4()),
                "request": record.request_id, "agreement": self.policy.agreement.id,
                "agreement_hash": me.agreement_hash, "originator": self.party,
                "holder": record.holder, "recipient": record.recipient, "objects": objects,
                "purpose": record.purpose, "issued": timestamp(now),
                "expires": timestamp(expires), "hashes": self._hashes(objects)}
        signed = {"consent": body, "key_id": me.key_id, "signature": sign_payload(me.key, body)}
        try:
            token = consent_token(signed)  # what the holder will take: its size bounded
        except FederationError as exc:
            raise ConsentError(exc.message) from None
        partner = PartnerNode(record.recipient, self.policy.agreement.id)
        for row in rows:  # consent cannot widen the marking: say so now, not at release
            decision = self.policy.may_release(labels[row.banner_id], partner,
                                               holder=record.holder, object_id=row.object_id,
                                               version=row.version, consents=[token])
            if not decision.allowed:
                raise ConsentError(f"even with consent, {record.recipient} may not receive "
                                   f"{row.object_id} ({row.version}): {decision.reason}")
        if not ours and (why := self._withdrawn(record.object_id, rows, record.holder,
                                                record.recipient, token)):
            raise ConsentError(why, hint="refuse the request, saying so")
        event = self.audit.event("consent", person=principal.person, party=record.holder,
                                 originator=self.party,
                                 objects=[(record.object_id, v)
                                          for v in objects[record.object_id]],
                                 recipient=record.recipient, purpose=record.purpose,
                                 request=record.request_id, token=body["id"],
                                 expires=body["expires"], direction="out")
        made = timestamp(now)
        approved = dataclasses.replace(record, status="approved", decided=made,
                                       token=canonical(signed), expires=timestamp(expires))
        self.store.consent_step(approved, self.controls._outgoing(
            "consent", record.holder, record.object_id,
            {"object_id": record.object_id, "request": record.request_id, "token": signed},
            made), [event])
        return approved

    def _withdrawn(self, object_id: str, rows: Sequence[StoredObject], holder: str,
                   recipient: str, token: ConsentToken | None) -> str | None:
        """Why this node's information in ``holder``'s own object ``object_id`` (``rows``:
        its versions held here) may not go on to ``recipient``, or None: an object of this
        node's it derives from (``derived_from``) was recalled from the holder, or may no
        longer go to it (reclassified beyond its release), as this node's object itself
        then could not be passed on. With ``token`` (the consent about to be given), also
        one recalled from the recipient or that the recipient may not receive even with
        it: consent cannot widen the marking of what the object carries."""
        reached, latest = derived_from(self.store, [r.body for r in rows], holder)
        ours = [oid for oid in reached
                if oid in latest and latest[oid].originator == self.party]
        if not ours:
            return None
        said = f"{object_id}, which {holder} asks to pass on, derives from it"
        for recall in self.store.recalls(ours):
            if recall.party == holder or (token is not None and recall.party == recipient):
                return (f"{self.party} recalled {recall.object_id} from {recall.party} at "
                        f"{recall.issued}: {said}; nothing of it goes "
                        f"{'on from' if recall.party == holder else 'to'} {recall.party}")
        labels = self.store.labels()
        partner = PartnerNode(recipient, self.policy.agreement.id)
        versions: dict[str, list[StoredObject]] = {}
        for source in self.store.held(ours):
            if source.originator == self.party:
                versions.setdefault(source.object_id, []).append(source)
        for oid in ours:
            # what the holder holds of it: the versions that went to it (their labels
            # joined with any reclassification since), not a newer one it never had
            went = {d.version for d in self.store.disseminations(object_id=oid, party=holder)}
            held = [r for r in versions.get(oid, []) if r.version in went] or \
                versions.get(oid, [])
            kept = [self.policy.may_keep(labels[r.banner_id], holder, originator=self.party,
                                         object_id=oid, version=r.version) for r in held]
            if kept and not any(kept):
                return (f"{oid}, which {object_id} derives from, may no longer go to "
                        f"{holder} ({kept[0].reason}): nothing of it goes on from {holder}")
            if token is None:
                continue
            for source in [r for r, ok in zip(held, kept, strict=True) if ok.allowed]:
                for row in rows:  # as carried in the holder's version the consent covers
                    decision = self.policy.may_release(labels[source.banner_id], partner,
                                                       holder=holder, object_id=row.object_id,
                                                       version=row.version, consents=[token])
                    if not decision.allowed:
                        return (f"even with consent, {recipient} may not receive {oid} "
                                f"({source.version}), which {object_id} derives from: "
                                f"{decision.reason}")
        return None

    def refuse(self, principal: Principal, request_id: str, *, reason: str) -> ConsentRecord:
        """Refuse the request, with the reason (recorded, and sent to the holder)."""
        _check_text(reason, "reason")
        record = self._incoming(principal, request_id)
        made = timestamp(utc_now())
        event = self.audit.event("consent-refuse", person=principal.person,
                                 party=record.holder, originator=self.party,
                                 objects=[(record.object_id, v) for v in record.versions],
                                 recipient=record.recipient, request=record.request_id,
                                 reason=reason, direction="out")
        refused = dataclasses.replace(record, status="refused", decided=made, reason=reason)
        self.store.consent_step(refused, self.controls._outgoing(
            "consent-refused", record.holder, record.object_id,
            {"object_id": record.object_id, "request": record.request_id, "reason": reason},
            made), [event])
        return refused

    # -- the holder passed it on ---------------------------------------------------------
    def onward(self, party: str, rows: Sequence[StoredObject], how: str,
               receipt: str | None) -> Onward:
        """The notices telling each originator of ``rows`` (a third party's objects that
        went to ``party``) what went, with ``party``'s signed receipt when there is one,
        and their events: for the store to keep in the transaction that records the
        delivery (``Store.mark_delivered``) or the pull (``Store.add_pulled``), so a
        crash between the two never leaves an originator untold."""
        groups: dict[str, list[StoredObject]] = {}
        if not self.policy.agreement.rules.third_party_consent:
            return [], []  # no consent was needed: nothing to report
        labels = self.store.labels()
        for row in rows:
            if row.originator not in (self.party, party):
                groups.setdefault(row.originator, []).append(row)
            elif row.originator == self.party:  # ours, holding another party's information
                for source in sorted(labels[row.banner_id].sources - {self.party, party}):
                    groups.setdefault(source, []).append(row)
        notices, events = [], []
        for origin, passed in groups.items():
            objects = [[r.object_id, r.version, r.body_hash] for r in passed]
            events.append(self.audit.event(
                "onward-release", party=party, originator=origin,
                objects=[(r.object_id, r.version) for r in passed], how=how, direction="out"))
            notices.append(self.controls._outgoing(
                "onward-release", origin, passed[0].object_id,
                {"object_id": passed[0].object_id, "recipient": party, "how": how,
                 "objects": objects, "receipt": json.loads(receipt) if receipt else None}))
        return notices, events

    # -- receiving notices ------------------------------------------------------------------
    def receive(self, sender: str, notice: Mapping[str, Any], stored: Notice) -> None:
        """Apply a consent notice checked by Controls.receive (signature, addressee,
        agreement); once only: a notice delivered twice is only acknowledged again."""
        if self.store.notice(stored.notice_id) is not None:
            if notice["kind"] == "consent":  # kept, then not queued (a full disk): now
                self._queue_kept(str(notice.get("request")))
            return
        kind = notice["kind"]
        if kind == "consent-request":
            self._requested(sender, notice, stored)
        elif kind == "onward-release":
            self._onward(sender, notice, stored)
        else:
            record = self.store.consent(str(notice.get("request")))
            if record is None or record.direction != "out" or record.originator != sender \
                    or record.object_id != notice["object_id"]:
                raise ConsentError(f"{sender} answers a consent request this node did not "
                                   "make to it")
            if record.status != "pending" and not (kind == "consent"
                                                   and record.status == "approved"):
                raise ConsentError(f"consent request {record.request_id} was "
                                   f"{record.status} already")
            if kind == "consent":  # an approval, or one re-issued (``reissue``)
                self._approved(sender, notice, stored, record)
            else:
                self._refused(sender, notice, stored, record)

    def _requested(self, sender: str, notice: Mapping[str, Any], stored: Notice) -> None:
        object_id = str(notice["object_id"])
        rows = self.controls._rows(object_id)
        ours = bool(rows) and rows[0].originator == self.party
        if ours:
            went = {d.version for d in self.store.disseminations(object_id=object_id,
                                                                 party=sender)}
        else:  # the sender's own, holding our information: the versions we hold of it
            labels = self.store.labels()
            went = {r.version for r in rows if r.originator == sender
                    and self.party in labels[r.banner_id].sources}
        # one of ours never released to the sender is answered as one we do not hold: the
        # answer must not tell a partner which ids this node originated (nor which of its
        # own objects holding our information we hold)
        if not rows or not went:
            raise ConsentError(f"{shown(object_id)} was not originated by {self.party}: ask "
                               "its originator")
        request_id, recipient = notice.get("request"), notice.get("recipient")
        versions, purpose = notice.get("versions"), notice.get("purpose")
        requester, wanted = notice.get("requester"), notice.get("expires")
        if not isinstance(request_id, str) or not isinstance(purpose, str) or \
                not isinstance(requester, dict) or not isinstance(versions, list) or \
                not all(isinstance(v, str) for v in versions) or \
                not (wanted is None or isinstance(wanted, str)):
            raise ConsentError("the consent request is malformed")
        _check_text(purpose, "purpose")
        # what one consent may cover: a request for more could not be approved
        problem = too_many("versions", versions, MAX_CONSENT_VERSIONS)
        if problem is not None:
            raise ConsentError(f"the consent request names {problem} request (what one "
                               "consent may cover)")
        try:  # the holder's node names a request by a UUID (request)
            uuid.UUID(request_id)
        except ValueError:
            raise ConsentError(f"the consent request's id {shown(request_id)} is not a "
                               "UUID") from None
        if len(canonical(requester)) > MAX_REASON:
            raise ConsentError(f"the consent request's requester is longer than "
                               f"{MAX_REASON:,} characters (a pseudonym, a nationality "
                               "and a clearance)")
        if recipient not in self.policy.agreement.parties or recipient in (self.party, sender):
            raise ConsentError(f"{shown(recipient)} is not a third party to {object_id}")
        if self.store.consent(request_id) is not None:
            raise ConsentError(f"consent request {request_id} exists already")
        # a holder passes on only what it holds of ours: what went to it, and not recalled
        if any(r.party == sender for r in self.store.recalls([object_id])):
            raise ConsentError(f"{self.party} recalled {object_id} from {sender}: nothing of "
                               "it is passed on")
        if not ours and (why := self._withdrawn(
                object_id, [r for r in rows if r.originator == sender], sender,
                str(recipient), None)):
            raise ConsentError(why)
        if missing := [v for v in versions if stored_version(v) not in went]:
            raise ConsentError(f"the consent request names {len(missing):,} version(s) of "
                               f"{object_id} that did not go to {sender}: {first(missing)}"
                               if ours else
                               f"the consent request names {len(missing):,} version(s) of "
                               f"{object_id} not held here as {sender}'s holding "
                               f"{self.party}'s information: {first(missing)}")
        if wanted is not None:
            try:
                parse_timestamp(wanted)
            except ValueError as exc:
                raise ConsentError(f"the requested expiry: {exc}") from None
        event = self.audit.event("consent-request", party=sender, actor=sender,
                                 originator=self.party,
                                 objects=[(object_id, v) for v in versions],
                                 recipient=recipient, purpose=purpose, request=request_id,
                                 requester=requester, direction="in")
        record = ConsentRecord(request_id, "in", sender, self.party, str(recipient), object_id,
                               tuple(versions), purpose, wanted, canonical(requester),
                               stored.made)
        self.store.consent_step(record, stored, [event])

    def _approved(self, sender: str, notice: Mapping[str, Any], stored: Notice,
                  record: ConsentRecord) -> None:
        signed = notice.get("token")
        try:
            token = consent_token(signed)
        except FederationError as exc:
            raise ConsentError(exc.message) from None
        assert isinstance(signed, dict)
        unsigned = self.federation.consent_unsigned(signed, token)
        if unsigned is not None and str(signed.get("key_id")) in \
                self.store.retired_keys(sender):
            # queued before its originator rotated, delivered after: the notice is the
            # originator's (only it delivers its notices), its token is not used, and
            # the originator re-issues it under its new key (``reissue``). Kept and
            # acknowledged, so it does not hold back the notices queued after it.
            self.store.add_notice(stored, audit=[self.audit.event(
                "refuse", party=sender, actor=sender, originator=sender,
                request=record.request_id, token=token.token_id,
                reason=f"the consent token {unsigned}: it is not used")])
            return
        if unsigned is not None:
            raise ConsentError(f"the consent token {unsigned}")
        if token.originator != sender or token.holder != self.party or \
                token.recipient != record.recipient or \
                token.agreement != self.policy.agreement.id or \
                signed["consent"].get("agreement_hash") != self.federation.me.agreement_hash \
                or record.object_id not in token.objects:
            raise ConsentError("the consent token's scope is not what was asked for")
        reissued = None
        if record.status == "approved":  # the originator rotated: the same consent, signed
            held = json.loads(record.token or "null")  # again with its new key, replaces it
            if not isinstance(held, dict) or _unsigned(_token(held)) != _unsigned(token):
                raise ConsentError(f"consent request {record.request_id} was approved "
                                   "already, and this token is not that consent signed "
                                   "again (its id or scope differs)")
            reissued = str(held.get("key_id"))
        event = self.audit.event("consent", party=sender, actor=sender, originator=sender,
                                 objects=[(record.object_id, v) for v in
                                          sorted(token.objects[record.object_id])],
                                 recipient=token.recipient, request=record.request_id,
                                 token=token.token_id, expires=timestamp(token.expires),
                                 key_id=signed.get("key_id"), reissued=reissued,
                                 direction="in")
        approved = dataclasses.replace(record, status="approved", decided=stored.made,
                                       token=canonical(signed),
                                       expires=timestamp(token.expires))
        if self.store.consent_step(approved, stored, [event]):
            self._release(token, self.federation.held_consents())

    def _queue_kept(self, request_id: str) -> None:
        """Queue what the approval of ``request_id`` kept here covers, as when it was
        kept: its notice came again because this node's answer failed, perhaps in the
        queueing (a full disk). What is queued already stays as it is."""
        record = self.store.consent(request_id)
        kept = _token(json.loads(record.token)) if record is not None and record.token \
            else None
        if kept is None:
            return
        held = self.federation.held_consents()
        for token, _ in held.signed():
            if token.token_id == kept.token_id:
                self._release(token, held)

    # -- the originator rotated its signing key ---------------------------------------
    def reissue(self) -> int:
        """Sign again with this node's current key every consent it gave that is valid
        still and was signed by another key (one a rotation retired since), and queue it
        for its holder as a ``consent`` notice, which the holder takes in place of the
        token it holds (``_approved``): the same request, id, scope, issued and expires.
        Holders release nothing on a token signed by a retired key and recipients refuse
        one (``Federation.consent_unsigned``), so until this is done nothing goes on it.
        ``Node.rotate_key`` does it after the rotation, and the courier as ``serve``
        starts (a rotation whose process died before): each token is re-issued once, kept
        with its notice and audit event in one transaction. Returns how many."""
        me = self.federation.signer()
        now = utc_now()
        done = 0
        for record in self.store.consents():
            if record.direction != "in" or record.status != "approved" or not record.token:
                continue
            old = json.loads(record.token)
            try:
                token = consent_token(old)
            except FederationError:
                continue  # kept before tokens were bounded: a holder uses it no more
            if old.get("key_id") == me.key_id or token.expires <= now:
                continue
            body = dict(old["consent"], hashes=self._hashes(token.objects))
            signed = {"consent": body, "key_id": me.key_id,
                      "signature": sign_payload(me.key, body)}
            event = self.audit.event("consent", operator=operator(), party=record.holder,
                                     originator=self.party,
                                     objects=[(record.object_id, v) for v in
                                              sorted(token.objects.get(record.object_id, ()))],
                                     recipient=record.recipient, request=record.request_id,
                                     token=token.token_id, expires=timestamp(token.expires),
                                     key_id=me.key_id, reissued=str(old.get("key_id")),
                                     direction="out")
            notice = self.controls._outgoing(
                "consent", record.holder, record.object_id,
                {"object_id": record.object_id, "request": record.request_id, "token": signed},
                timestamp(now))
            self.store.consent_step(dataclasses.replace(record, token=canonical(signed)),
                                    notice, [event])
            done += 1
        if done:
            log.warning("re-issued %d consent token(s) under this node's signing key %s: "
                        "queued for their holders", done, me.key_id)
        return done

    def _hashes(self, objects: Mapping[str, Collection[str]]) -> dict[str, dict[str, str]]:
        """{id: {version: body hash}} of this node's own versions that ``objects`` (a
        token's) covers (no versions: every one held): a token names the very bodies it
        consents to, so a version signed by a key retired since, relayed by the holder,
        is taken only if it is one of them (``Federation._unvouched``)."""
        hashes: dict[str, dict[str, str]] = {}
        for row in self.store.held(sorted(objects)):
            wanted = objects.get(row.object_id)
            if row.originator == self.party and row.version is not None and \
                    wanted is not None and (not wanted or row.version in wanted):
                hashes.setdefault(row.object_id, {})[row.version] = row.body_hash
        return hashes

    def release_held(self) -> int:
        """Queue again what every consent held now covers (``serve`` does, as it starts):
        a crash between keeping an approval and queueing what it covers would otherwise
        leave those objects never sent. What is queued already stays as it is."""
        held = self.federation.held_consents()
        return sum(self._release(token, held) for token in held)

    def _release(self, token: ConsentToken, held: HeldConsents) -> int:
        """Queue what ``token`` covers for its recipient (the release decision decides,
        with ``held``, the consents held)."""
        fed = self.federation
        labels = self.store.labels()
        # its originator's objects, or ours holding its information (a portion it marks)
        return self.store.enqueue(token.recipient, lambda row: row.object_id in token.objects
                                  and (row.originator == token.originator or (
                                      row.originator == self.party and token.originator
                                      in labels[row.banner_id].sources))
                                  and fed.may_release_now(labels[row.banner_id],
                                                          token.recipient, row, held),
                                  sorted(token.objects))

    def _refused(self, sender: str, notice: Mapping[str, Any], stored: Notice,
                 record: ConsentRecord) -> None:
        reason = str(notice["reason"])  # text of at most MAX_REASON (Controls._verified)
        event = self.audit.event("consent-refuse", party=sender, actor=sender,
                                 originator=sender,
                                 objects=[(record.object_id, v) for v in record.versions],
                                 recipient=record.recipient, request=record.request_id,
                                 reason=reason, direction="in")
        refused = dataclasses.replace(record, status="refused", decided=stored.made,
                                      reason=reason)
        self.store.consent_step(refused, stored, [event])

    def _onward(self, sender: str, notice: Mapping[str, Any], stored: Notice) -> None:
        recipient, objects = notice.get("recipient"), notice.get("objects")
        if not isinstance(recipient, str) or not isinstance(objects, list) or not all(
                isinstance(o, list) and len(o) == 3 and all(isinstance(x, str) for x in o)
                for o in objects):
            raise ConsentError("the onward-release report is malformed")
        if recipient not in self.policy.agreement.parties:
            raise ConsentError(f"the onward-release report names {shown(recipient)}, not a "
                               f"party to {self.policy.agreement.id}")
        problem = too_many("versions", objects, MAX_NAMED)
        if problem is not None:
            raise ConsentError(f"the onward-release report names {problem} report")
        given = [t for r in self.store.consents()  # (one kept before tokens were bounded
                 if r.direction == "in" and r.status == "approved" and r.token  # covers none)
                 and r.holder == sender and r.recipient == recipient
                 and (t := _token(json.loads(r.token))) is not None]
        for object_id, version, _ in objects:
            if not any(t.covers(object_id, version) for t in given):
                raise ConsentError(f"{sender} reports passing {shown(object_id)} "
                                   f"({shown(version)}) to {recipient}, but this "
                                   "node gave no such consent")
        receipt = notice.get("receipt")
        if receipt is not None:
            self._check_onward_receipt(sender, recipient, objects, receipt)
        event = self.audit.event("onward-release", party=recipient, actor=sender,
                                 originator=self.party,
                                 objects=[(o[0], o[1]) for o in objects], via=sender,
                                 how=str(notice.get("how")), direction="in")
        self.store.add_onward(recipient, sender, [(o[0], o[1], o[2]) for o in objects],
                              stored.made, canonical(receipt) if receipt is not None else None,
                              stored, [event])

    def _check_onward_receipt(self, sender: str, recipient: str, objects: list[list[str]],
                              signed: Any) -> None:
        body = signed.get("receipt") if isinstance(signed, dict) else None
        public = self.federation.keys_of(recipient).get(str(signed.get("key_id"))) \
            if isinstance(signed, dict) else None
        if not isinstance(body, dict) or public is None or \
                not verify_payload(public, str(signed.get("signature", "")), body):
            raise ConsentError(f"the receipt is not signed by a key of {recipient}")
        if body.get("sender") != sender or body.get("receiver") != recipient:
            raise ConsentError(f"the receipt is not {recipient}'s receipt to {sender}")
        acknowledged = body.get("objects")
        if not isinstance(acknowledged, list):
            raise ConsentError(f"{recipient}'s receipt lists no objects")
        held = {(o.get("id"), o.get("body_hash")) for o in acknowledged  # of its shape only
                if isinstance(o, dict) and isinstance(o.get("id"), str)
                and isinstance(o.get("body_hash"), str)}
        missing = [o[0] for o in objects if (o[0], o[2]) not in held]
        if missing:
            raise ConsentError(f"{recipient}'s receipt does not acknowledge {missing[0]}")


def _token(signed: Mapping[str, Any]) -> ConsentToken | None:
    try:
        return consent_token(signed)
    except FederationError:
        return None


def _unsigned(token: ConsentToken | None) -> ConsentToken | None:
    """What ``token`` consents to, whoever signed it: a re-issued token (``reissue``)
    must consent to exactly what the one it replaces did (and names the bodies' hashes,
    which a token from before hashes were named lacks)."""
    return dataclasses.replace(token, signature="", hashes={}) if token is not None else None


def _check_text(text: str, what: str) -> None:
    if not text.strip():
        raise ConsentError(f"give a {what}: it is recorded and sent")
    if len(text) > MAX_REASON:
        raise ConsentError(f"the {what} is longer than {MAX_REASON} characters")
