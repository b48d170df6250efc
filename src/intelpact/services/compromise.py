"""Compromise reports: suspected loss or compromise, told to the originator at once.

Under the agreement, a party that suspects information of another party was lost or
compromised must tell the originator within ``rules.breach_notice_hours`` of
discovering it. A security officer files a report naming the objects; this node sends
one report to each originator of them, signed with its key, carrying the *access
history*: every event of its audit log about those objects, each with an inclusion
proof against a signed checkpoint, so the originator sees who handled its information
(pseudonym, nationality, clearance) in a form the reporter cannot later deny or edit.
The originator verifies and acknowledges; either side closes. Each step is a signed
message, queued in the same transaction that records it and delivered by the courier
with retries, like objects; each side audits each step.

The notice deadline is ``discovered + breach_notice_hours``; ``CompromiseReports.flag``
says exactly when a report is flagged (docs/audit.md, "Compromise reports").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..crypto.merkle import ProofError, verify_consistency
from ..crypto.signing import canonical as jcs
from ..errors import IntelpactError
from ..model.echo import shown, too_many
from ..store.base import (
    AuditEvent,
    CompromiseMessage,
    CompromiseRecord,
    parse_timestamp,
    timestamp,
    utc_now,
)
from .audit import (
    AuditError,
    CheckpointsCrossed,
    LogKey,
    PartnerAudit,
    canonical,
    decode_hash,
    encode_hash,
)
from .federation import (
    MAX_NAMED,
    Federation,
    FederationError,
    sign_payload,
    verify_payload,
)
from .people import Principal, refused_for_node

log = logging.getLogger("intelpact.compromise")

MESSAGE_VERSION = 1
KINDS = ("report", "ack", "close")
MAX_TEXT = 10_000  # characters of "what" or a note
SKEW = dt.timedelta(minutes=5)  # how far ahead of this clock a time given may be
# Events of access history a report carries: with their proofs about 1.5 KB each, so a
# report stays well under a partner's request limit (server.max_content_length, 10 MB).
HISTORY_LIMIT = 2_000
# A reporter's partner audit events below a leaf naming one of some objects
# (Courier.events_before)
Fetch = Callable[[str, int, Sequence[str]], PartnerAudit]


class CompromiseError(IntelpactError):
    """A report, acknowledgement or closure was refused; ``status`` is the HTTP status a
    partner is answered with (409: retry, the state changed under it)."""

    def __init__(self, message: str, *, hint: str | None = None, status: int = 403) -> None:
        super().__init__(message, hint=hint)
        self.status = status


@dataclass(frozen=True)
class Flag:
    """Whether a report is flagged against its deadline: ``late`` (the step due by the
    deadline happened after it) or ``overdue`` (it has not happened and the deadline
    passed), with the reason in words."""

    state: str  # "", "late" or "overdue"
    reason: str = ""


def _text(message: Mapping[str, Any]) -> str:
    """The stored form of a signed message: canonical JSON (what it says, not how it was
    formatted, so a resent message compares equal)."""
    return canonical(message)


def _occurred(value: Any, discovered: str) -> str | None:
    """When a compromise discovered at ``discovered`` occurred (None: not said), which is
    no later than its discovery, as filing and receiving a report check it."""
    if value is None:
        return None
    happened = _when(value, "occurred")
    if happened > discovered:
        raise CompromiseError(f"the compromise occurred ({happened}) after it was "
                              f"discovered ({discovered})")
    return happened


def _when(value: Any, what: str) -> str:
    """A time given by a person or a partner, normalised (so times compare as text)."""
    try:
        return timestamp(parse_timestamp(str(value)))
    except ValueError as exc:
        raise CompromiseError(f"the {what} time is not an RFC 3339 UTC timestamp: {exc}",
                              status=400) from None


class CompromiseReports:
    """Filing, sending, receiving, acknowledging and closing compromise reports."""

    def __init__(self, federation: Federation) -> None:
        self.federation = federation
        self.store = federation.store
        self.audit = federation.audit

    @property
    def party(self) -> str:
        return self.federation.me.party

    @property
    def notice_hours(self) -> int:
        return self.federation.policy.agreement.rules.breach_notice_hours

    def deadline(self, discovered: str) -> str:
        """The agreement's notice deadline for a compromise discovered at ``discovered``."""
        try:
            return timestamp(parse_timestamp(discovered)
                             + dt.timedelta(hours=self.notice_hours))
        except OverflowError:
            raise CompromiseError(f"the discovery time {discovered} is out of range: its "
                                  f"notice deadline, {self.notice_hours} hours later, falls "
                                  "after the year 9999") from None

    # -- signing ------------------------------------------------------------------------
    def _signed(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` signed with the node's current key, over its RFC 8785 form with the
        key id inside (a verifier picks the key by id: old keys stay valid)."""
        me = self.federation.signer()  # never a key a rotation retired
        body = {"intelpact_compromise": MESSAGE_VERSION, **body, "key_id": me.key_id}
        return {**body, "signature": sign_payload(me.key, body)}

    def _check_signature(self, party: str, message: Mapping[str, Any]) -> None:
        """``message`` is signed by a key ``party`` has signed with (old keys included:
        a report filed before a rotation stays verifiable)."""
        key = self.federation.keys_of(party).get(str(message.get("key_id")))
        if key is None:
            raise CompromiseError(f"the {shown(message.get('type'))} is signed with key "
                                  f"{shown(repr(message.get('key_id')))}, not a key of "
                                  f"{party}")
        body = {k: v for k, v in message.items() if k != "signature"}
        if message.get("intelpact_compromise") != MESSAGE_VERSION or \
                not verify_payload(key, str(message.get("signature", "")), body):
            raise CompromiseError(f"the {shown(message.get('type'))}'s signature does not "
                                  "verify "
                                  f"for {party}: altered or forged")

    def _by(self, officer: Principal | None, party: str | None) -> dict[str, Any]:
        """Who acted, as ``party`` may see it: a pseudonym with nationality and clearance
        (as in the audit log), or the node's operator (never an account name)."""
        if officer is None:
            return {"role": "operator"}
        person = officer.person
        return {"role": "security-officer", "id": self.audit.pseudonyms.of(person.name, party),
                "nationality": person.party, "clearance": person.clearance}

    @staticmethod
    def _who(officer: Principal | None, actor: str) -> dict[str, Any]:
        """The audit event's actor fields: the officer, else the operator's account
        (``AuditLog.event`` records it by pseudonym in an event the originator is
        shown)."""
        return {"person": officer.person} if officer is not None else {"operator": actor}

    # -- filing -------------------------------------------------------------------------
    def _held(self, object_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Every version of each object, by originator, whatever anyone's access: the
        report is about what this node holds, not what its officer may read."""
        found: dict[str, list[tuple[str, str]]] = {}
        seen: set[str] = set()
        for row in self.store.held(object_ids):
            pair = (row.object_id, row.version)
            if pair not in found.get(row.originator, []):
                found.setdefault(row.originator, []).append(pair)
            seen.add(row.object_id)
        missing = [oid for oid in object_ids if oid not in seen]
        if missing:
            raise CompromiseError(f"this node holds no object {missing[0]}",
                                  hint="name objects by their STIX id, as `intelpact get` "
                                  "shows them")
        return found

    def file(self, object_ids: Iterable[str], *, what: str, discovered: str,
             occurred: str | None = None, officer: Principal | None = None,
             actor: str = "") -> list[CompromiseRecord]:
        """File a report: one per originator of the objects, each signed, with the access
        history of its objects, queued for the originator in the transaction that stores
        it (a report about our own objects is recorded here only). ``officer`` must hold
        the security-officer role; without one the node's operator ``actor`` files it."""
        ids = list(dict.fromkeys(o.strip() for o in object_ids if o.strip()))
        if not ids:
            raise CompromiseError("name at least one object", hint="--object ID")
        what = what.strip()
        if not what or len(what) > MAX_TEXT:
            raise CompromiseError(f"say what happened (1 to {MAX_TEXT} characters)",
                                  hint="--what TEXT")
        if officer is not None and not officer.has_role("security-officer"):
            raise CompromiseError(f"{officer.name} does not have the security-officer role",
                                  hint="file as a security officer (--as NAME), or give "
                                  "the role with `intelpact user add … --role "
                                  "security-officer`")
        if officer is not None and (why := refused_for_node(
                self.federation.policy, self.audit, officer.person, "report a compromise")):
            raise CompromiseError(why, hint=f"a {self.party} security officer files it")
        now = utc_now()
        filed = timestamp(now)
        found_at = _when(discovered, "discovered")
        if parse_timestamp(found_at) > now + SKEW:
            raise CompromiseError(f"the discovered time {found_at} is in the future")
        happened = _occurred(occurred or None, found_at)
        deadline = self.deadline(found_at)
        held = self._held(ids)
        for originator, pairs in held.items():  # what the originator takes in one report
            problem = too_many("versions", [p[0] for p in pairs], MAX_NAMED)
            if problem is not None:
                raise CompromiseError(f"the report to {originator} would name {problem} "
                                      "report", hint="file several reports, each naming "
                                      "fewer objects")
        records = []
        for originator, pairs in held.items():
            report_id = str(uuid.uuid4())
            message = self._signed({
                "type": "report", "report_id": report_id, "reporter": self.party,
                "originator": originator, "agreement": self.federation.me.agreement_hash,
                "objects": [list(p) for p in pairs], "what": what, "occurred": happened,
                "discovered": found_at, "filed": filed, "deadline": deadline,
                "notice_hours": self.notice_hours, "by": self._by(officer, originator),
                "history": self.audit.history([p[0] for p in pairs], originator,
                                              limit=HISTORY_LIMIT)})
            local = originator == self.party
            record = CompromiseRecord(report_id, "local" if local else "outgoing",
                                      self.party, originator, len({p[0] for p in pairs}),
                                      filed, found_at,
                                      deadline, _text(message))
            event = self.audit.event(
                "compromise-report", party=None if local else originator,
                originator=originator, objects=pairs, report=report_id, direction="filed",
                what=what, discovered=found_at, occurred=happened, filed=filed, deadline=deadline,
                history=len(message["history"]["events"]), **self._who(officer, actor))
            self.store.add_compromise(record, None if local else originator, [event])
            records.append(record)
        return records

    # -- acknowledging and closing --------------------------------------------------------
    def get(self, report_id: str) -> CompromiseRecord:
        """A report by id, filed or received (404 for a partner when there is none)."""
        record = self.store.compromise_report(report_id.strip())
        if record is None:
            raise CompromiseError(f"no compromise report {shown(report_id)}",
                                  hint="list them with: intelpact compromise list DIR",
                                  status=404)
        return record

    def acknowledge(self, report_id: str, *, note: str | None = None,
                    officer: Principal | None = None, actor: str = "") -> CompromiseRecord:
        """The originator acknowledges a report: signed, recorded, and sent back to the
        reporter (through the queue, like the report)."""
        record = self.get(report_id)
        if record.originator != self.party:
            raise CompromiseError(f"only the originator ({record.originator}) acknowledges "
                                  "this report", hint="the reporter can close it instead")
        if record.acknowledged is not None:
            raise CompromiseError(f"report {record.report_id} was acknowledged at "
                                  f"{record.acknowledged}")
        return self._step(record, "ack", note, officer, actor)

    def close(self, report_id: str, *, note: str, officer: Principal | None = None,
              actor: str = "") -> CompromiseRecord:
        """Either side closes a report, saying why; the other side is sent the closure."""
        record = self.get(report_id)
        if record.closed is not None:
            raise CompromiseError(f"report {record.report_id} was closed at {record.closed}")
        if not note.strip():
            raise CompromiseError("say why the report is closed", hint="--note TEXT")
        return self._step(record, "close", note, officer, actor)

    def _step(self, record: CompromiseRecord, kind: str, note: str | None,
              officer: Principal | None, actor: str) -> CompromiseRecord:
        """Sign, record (with its event) and queue an acknowledgement or closure, in one
        transaction: a step is never recorded here without being sent there."""
        if officer is not None and not officer.has_role("security-officer"):
            raise CompromiseError(f"{officer.name} does not have the security-officer role")
        if officer is not None and (why := refused_for_node(
                self.federation.policy, self.audit, officer.person,
                "acknowledge or close a compromise report", report=record.report_id)):
            raise CompromiseError(why)
        if note is not None and len(note) > MAX_TEXT:
            raise CompromiseError(f"the note is longer than {MAX_TEXT} characters")
        other = _other(record, self.party)
        when = timestamp(utc_now())
        message = self._signed({"type": kind, "report_id": record.report_id,
                                "from": self.party, "to": other or self.party, "at": when,
                                "note": note.strip() if note else None,
                                "by": self._by(officer, record.originator)})
        event = self.audit.event(f"compromise-{kind}", party=other,
                                 originator=record.originator, objects=_objects(record),
                                 report=record.report_id, direction="sent" if other
                                 else "local", note=message["note"], when=when,
                                 **self._who(officer, actor))
        if not self.store.compromise_step(record.report_id, kind, when, _text(message), other,
                                          [event]):
            raise CompromiseError(f"report {record.report_id} changed meanwhile; look again",
                                  hint="intelpact compromise show DIR REPORT_ID", status=409)
        return self.get(record.report_id)

    # -- sending --------------------------------------------------------------------------
    def envelope(self, message: CompromiseMessage, held: int) -> bytes:
        """What the courier POSTs for ``message``. A report also carries this node's
        latest checkpoint, proven to extend the largest one of ours the originator holds
        (``held``, asked just before), and proven to extend the report's own checkpoint:
        the originator witnesses it (gossip) and so knows the history it was sent is in
        the log every later checkpoint commits to. Made at delivery, not at filing: a
        report queued for days still proves consistency with what was seen since."""
        signed = json.loads(message.body)
        out: dict[str, Any] = {"type": message.kind, "message": signed}
        if message.kind == "report":
            latest = self.audit.checkpoint()
            size, _ = self.audit.verify_checkpoint(latest.note)
            if held > size:
                raise FederationError(f"{message.party} says it holds a checkpoint of "
                                      f"{held} events of our log, larger than our latest "
                                      f"({size})")
            witness: dict[str, Any] = {"checkpoint": latest.note}
            if 0 < held < size:
                witness["consistency"] = {"from": held, "proof": [
                    encode_hash(h) for h in self.audit.tree.consistency(held, size)]}
            out["witness"] = witness
            signed_size, _ = self.audit.verify_checkpoint(signed["history"]["checkpoint"])
            if 0 < signed_size < size:
                out["prefix"] = [encode_hash(h) for h in self.audit.tree.consistency(signed_size,
                                                                                size)]
        return json.dumps(out, ensure_ascii=False).encode("utf-8")

    def delivered(self, party: str, message: CompromiseMessage, answer: Any) -> None:
        """Check ``party``'s signed receipt for ``message`` and mark it delivered."""
        peer = self.federation.peers().get(party)
        if not isinstance(answer, dict) or not isinstance(answer.get("receipt"), dict):
            raise FederationError(f"{party} returned no receipt for the {message.kind}")
        receipt = answer["receipt"]
        key = self.federation.keys_of(party).get(str(answer.get("key_id")))
        if peer is None or answer.get("key_id") != peer.key_id or key is None:
            raise FederationError(f"the receipt is not signed with {party}'s pinned key")
        if not verify_payload(key, str(answer.get("signature", "")), receipt):
            raise FederationError(f"{party}'s receipt signature does not verify")
        want = {"receiver": party, "sender": self.party, "type": message.kind,
                "report_id": message.report_id, "message_sha256": _digest(message.body)}
        if any(receipt.get(k) != v for k, v in want.items()):
            raise FederationError(f"{party}'s receipt is not for this {message.kind}")
        self.store.compromise_delivered(message.message_id, timestamp(utc_now()),
                                        canonical(answer))

    # -- receiving ------------------------------------------------------------------------
    def receive(self, sender: str, envelope: Any) -> dict[str, Any]:
        """Handle what a partner sent (its request signature is verified already): a
        report about our objects, an acknowledgement or closure of a report, or the
        question of which checkpoint of its log we hold. Returns the answer: a signed
        receipt, or the size held. Raises CompromiseError; refusals are audited."""
        if not isinstance(envelope, dict) or envelope.get("type") not in (*KINDS, "held"):
            raise CompromiseError('send {"type": "report"|"ack"|"close"|"held", …}',
                                  status=400)
        kind = str(envelope["type"])
        if kind == "held":
            return {"held": self.store.partner_size(sender)}
        message = envelope.get("message")
        if not isinstance(message, dict) or message.get("type") != kind:
            raise CompromiseError(f"the envelope holds no signed {kind}", status=400)
        try:
            if kind == "report":
                changed = self._receive_report(sender, message, envelope)
            else:
                changed = self._receive_step(sender, kind, message)
        except CompromiseError as exc:
            if exc.status != 409:  # a conflict is asked again, anything else refused
                self.audit.record(self.audit.event(
                    "refuse", party=sender, actor=sender, reason=exc.message,
                    report=shown(str(message.get("report_id", ""))), message=kind))
                log.warning("refused a compromise %s from %s: %s", kind, sender, exc.message)
            raise
        when = timestamp(utc_now())
        receipt = {"receiver": self.party, "sender": sender, "type": kind,
                   "report_id": str(message["report_id"]), "received": when,
                   "message_sha256": _digest(_text(message)), "stored": changed}
        me = self.federation.me
        return {"receipt": receipt, "key_id": me.key_id, "signature": sign_payload(me.key, receipt)}

    def _receive_report(self, sender: str, message: dict[str, Any],
                        envelope: Mapping[str, Any]) -> bool:
        self._check_signature(sender, message)
        report_id = str(message.get("report_id", ""))
        try:
            uuid.UUID(report_id)
        except ValueError:
            raise CompromiseError("the report id is not a UUID") from None
        if message.get("reporter") != sender:
            raise CompromiseError(f"the report names {shown(repr(message.get('reporter')))}"
                                  f" as reporter, but {sender} sent it")
        if message.get("originator") != self.party:
            raise CompromiseError(f"the report names {shown(repr(message.get('originator')))}"
                                  " as "
                                  f"originator, not {self.party}: a report goes to the "
                                  "originator of the objects")
        if message.get("agreement") != self.federation.me.agreement_hash:
            raise CompromiseError("the report is made under another agreement")
        objects = message.get("objects")
        if not isinstance(objects, list) or not objects or not all(
                isinstance(o, list) and len(o) == 2 and all(isinstance(x, str) for x in o)
                for o in objects):
            raise CompromiseError("the report names no objects as [id, version] pairs")
        problem = too_many("versions", objects, MAX_NAMED)
        if problem is not None:
            raise CompromiseError(f"the report names {problem} report")
        what = message.get("what")
        if not isinstance(what, str) or not what.strip() or len(what) > MAX_TEXT:
            raise CompromiseError(f"the report does not say what happened in 1 to "  # as
                                  f"{MAX_TEXT:,} characters")  # filing checks it
        discovered = _when(message.get("discovered"), "discovered")
        filed = _when(message.get("filed"), "filed")
        # times as filing checks them, within its clock skew: a report filed in the future
        # would sit first in every list
        if parse_timestamp(filed) > utc_now() + SKEW:
            raise CompromiseError(f"the report was filed at {filed}, in the future")
        if parse_timestamp(discovered) > parse_timestamp(filed) + SKEW:
            raise CompromiseError(f"the compromise was discovered ({discovered}) after the "
                                  f"report was filed ({filed})")
        _occurred(message.get("occurred"), discovered)
        if message.get("notice_hours") != self.notice_hours:
            raise CompromiseError(f"the report's notice hours "
                                  f"{shown(repr(message.get('notice_hours')))} are not the "
                                  f"agreement's {self.notice_hours}")
        if message.get("deadline") != self.deadline(discovered):
            raise CompromiseError(f"the report's deadline {shown(repr(message.get('deadline')))}"
                                  " is not "
                                  f"discovery + {self.notice_hours} hours, as the agreement "
                                  "says")
        existing = self.store.compromise_report(report_id)
        if existing is not None:
            if existing.body == _text(message) and existing.direction == "incoming":
                return False  # delivered again: at least once, stored once
            raise CompromiseError(f"a different report {report_id} is stored already")
        keys = self.federation.log_keys(sender)
        try:
            history = message.get("history")
            if not isinstance(history, dict):
                raise AuditError("the report carries no access history")
            size, root, events = self.audit.check_history(
                sender, keys, history, [o[0] for o in objects], self.party)
        except AuditError as exc:
            raise CompromiseError(exc.message) from None
        self._witness(sender, keys, size, root, envelope)
        record = CompromiseRecord(report_id, "incoming", sender, self.party,
                                  len({o[0] for o in objects}),
                                  filed, discovered, str(message["deadline"]), _text(message),
                                  delivered=timestamp(utc_now()))
        event = self.audit.event(
            "compromise-report", party=sender, actor=sender, originator=self.party,
            objects=[(o[0], o[1]) for o in objects], report=report_id, direction="received",
            what=what, discovered=discovered, filed=filed,
            deadline=record.deadline, history=len(events), checkpoint=size)
        detail = (f"{sender} reports suspected compromise of {record.object_count} object(s) "
                  f"of ours (report {report_id}, notice deadline {record.deadline}); "
                  f"acknowledge it: intelpact compromise ack DIR {report_id}")
        # the report, its event and the alert in one transaction: the alert raised after,
        # a crash between lost it for good (the report delivered again is kept already)
        alert = ("compromise-report", sender, detail)
        if not self.store.add_compromise(record, None,
                                         [event, self.audit.alert_event(*alert)], alert):
            return False
        self.audit.alerted(*alert)
        return True

    def _witness(self, sender: str, keys: Sequence[LogKey], size: int, root: bytes,
                 envelope: Mapping[str, Any]) -> None:
        """Witness the sender's latest checkpoint, carried beside the report (gossip), and
        check that the report's checkpoint (``size``, ``root``) is a prefix of it. A
        checkpoint that merely crossed one we fetched meanwhile is a 409 (the courier asks
        again), never a false alarm; two checkpoints that truly disagree raise the
        history-rewritten alert, as gossip does."""
        witness = envelope.get("witness")
        if not isinstance(witness, dict):
            raise CompromiseError("the report comes without the sender's latest checkpoint",
                                  status=400)
        try:
            latest, latest_root = self.audit.partner_checkpoint(
                sender, keys, str(witness.get("checkpoint", "")))
        except AuditError as exc:
            raise CompromiseError(exc.message) from None
        held = self.store.partner_size(sender)
        proof = witness.get("consistency")
        start = proof.get("from") if isinstance(proof, dict) else None
        if held > latest or (0 < held < latest and start != held):
            raise CompromiseError(f"this node now holds a checkpoint of {held} events of "
                                  f"{sender}'s log; send a proof from it", status=409)
        try:  # alerts on a rewritten history
            self.audit.witness(sender, keys, witness, known=held)
        except CheckpointsCrossed as exc:  # we kept a newer one since ``held`` was read
            raise CompromiseError(exc.message, status=409) from None
        except AuditError as exc:
            raise CompromiseError(exc.message) from None
        if size == 0:
            return  # the empty tree is a prefix of every tree
        try:
            prefix = [decode_hash(h) for h in envelope.get("prefix", [])] if size < latest else []
            verify_consistency(size, latest, root, latest_root, prefix)
        except (ProofError, ValueError, TypeError) as exc:
            problem = (f"{sender}'s report checkpoint of {size} events is not a prefix of its "
                       f"checkpoint of {latest}: {exc}")
            self.audit.alert("history-rewritten", sender,
                             f"{problem}: {sender} has rewritten its audit history",
                             once=True, note=str(witness.get("checkpoint", "")))
            raise CompromiseError(problem) from None

    def _receive_step(self, sender: str, kind: str, message: dict[str, Any]) -> bool:
        # the signature first: whether a report exists is told only to a signed step
        self._check_signature(sender, message)
        record = self.get(str(message.get("report_id", "")))
        if sender != _other(record, self.party) or (kind == "ack"
                                                    and sender != record.originator):
            raise CompromiseError(f"{sender} may not {'acknowledge' if kind == 'ack' else kind}"
                                  f" report {record.report_id}")
        if message.get("from") != sender or message.get("to") != self.party:
            raise CompromiseError(f"the {kind} names the wrong parties")
        note = message.get("note")
        if not (note is None or isinstance(note, str) and len(note) <= MAX_TEXT):
            raise CompromiseError(f"the {kind}'s note is not text of at most {MAX_TEXT:,} "
                                  "characters")
        when = _when(message.get("at"), kind)
        event = self.audit.event(f"compromise-{kind}", party=sender, actor=sender,
                                 originator=record.originator, objects=_objects(record),
                                 report=record.report_id, direction="received",
                                 note=note, when=when)
        # Already recorded (resent, or both sides closed at once): the first one stays.
        return self.store.compromise_step(record.report_id, kind, when, _text(message), None,
                                          [event])

    # -- views ----------------------------------------------------------------------------
    def flag(self, record: CompromiseRecord, now: dt.datetime | None = None) -> Flag:
        """The deadline rule (docs/audit.md). Outgoing: the report must reach the
        originator (its signed receipt) by the deadline. Incoming: we must acknowledge (or
        close) it by the deadline. Local (our own objects): it must be filed by then."""
        current = now or utc_now()
        deadline = parse_timestamp(record.deadline)
        done: str | None
        if record.direction == "local":
            step, done = "filed", record.filed
        elif record.direction == "outgoing":
            step, done = "delivered", record.delivered
        else:
            step = "acknowledged"
            done = min((t for t in (record.acknowledged, record.closed) if t), default=None)
        if done is None:
            if current > deadline:
                return Flag("overdue", f"not {step} by the deadline {record.deadline}")
            return Flag("")
        if parse_timestamp(done) > deadline:
            return Flag("late", f"{step} at {done}, after the deadline {record.deadline}")
        return Flag("")

    @staticmethod
    def status(record: CompromiseRecord) -> str:
        if record.closed:
            return "closed"
        return "acknowledged" if record.acknowledged else "open"

    def history(self, record: CompromiseRecord) -> tuple[int, list[dict[str, Any]]]:
        """The report's access history, verified again now: (checkpoint size, events)."""
        report = json.loads(record.body)
        keys = self.federation.log_keys(record.reporter)
        try:  # verified and witnessed when it came: no alert again for a view of it
            size, _, events = self.audit.check_history(
                record.reporter, keys, report.get("history", {}),
                [o[0] for o in report.get("objects", [])], record.originator, alert=False)
        except AuditError as exc:
            raise CompromiseError(f"report {record.report_id}: {exc.message}",
                                  hint="tell your security officer") from None
        return size, events

    def check(self, record: CompromiseRecord, fetch: Fetch, *,
              officer: Principal | None = None, actor: str) -> list[dict[str, Any]]:
        """Check that an incoming report's access history left out no event about the
        objects reported, and record the outcome (``history_check``) with its event
        ``compromise-check``: returns the events left out. ``fetch(reporter, size,
        objects)`` answers the reporter's events about our objects from the start of its
        log below leaf ``size`` naming one of the objects reported, by partner audit,
        none left out: those this node keeps, after fetching what came since
        (Courier.events_before). The history holds every such
        event below its checkpoint's size (AuditLog.history), or, cut short (``more``), up
        to its last.
        Any left out raises the alert ``history-incomplete`` (once for the same finding),
        in the same transaction. A history that cannot be checked (AuditError: the
        reporter's answer does not verify, or has no signed count) is recorded "not
        checked" with the reason, and raised; a partner out of reach (FederationError)
        only raised, to try again."""
        if record.direction != "incoming":
            raise CompromiseError(f"report {record.report_id} was not sent to this node: "
                                  "only the originator checks a reporter's history against "
                                  "its partner audit", hint="run it at the originator's node")
        who = self._who(officer, actor)
        named = {oid for oid, _ in _objects(record)}
        try:
            size, history = self.history(record)
            fetched = fetch(record.reporter, size, sorted(named))
            if fetched.more:
                raise CompromiseError(f"{record.reporter}'s events about our objects were "
                                      f"not all fetched below leaf {size}")
        except (AuditError, CompromiseError) as exc:
            if not isinstance(exc, CheckpointsCrossed):
                self._checked(record, f"not checked: {exc.message}", [], who)
            raise
        held = {e["index"] for e in history}
        cut = json.loads(record.body).get("history", {}).get("more")
        bound = history[-1]["index"] + 1 if history and cut else size
        missing = [e for e in fetched.events if e["index"] < bound and e["index"] not in held]
        indexes = [e["index"] for e in missing]
        outcome = (f"{len(missing)} event(s) of {record.reporter}'s log about these objects "
                   f"left out: leaf {', '.join(map(str, indexes))}" if missing else
                   f"complete: {record.reporter}'s partner audit holds no other event about "
                   f"these objects below leaf {bound}")
        alert = None
        if missing:
            detail = (f"report {record.report_id}: {record.reporter}'s access history left "
                      f"out {len(missing)} of its events about the objects reported, below "
                      f"leaf {bound} of its log. The evidence is kept in this alert's audit "
                      "event.")
            alert = ("history-incomplete", record.reporter, detail,
                     self.audit.alert_event("history-incomplete", record.reporter, detail,
                                            report=record.report_id, indexes=indexes))
        self._checked(record, outcome, indexes, who, alert)
        return missing

    @staticmethod
    def history_state(record: CompromiseRecord) -> str:
        """A line's worth of ``check``'s outcome kept for an incoming report: "complete",
        "N event(s) … left out", "not checked: why" or "not checked yet"."""
        outcome = record.history_check
        if outcome is None:
            return "not checked yet"
        return "complete" if outcome.startswith("complete") else outcome.split(": leaf")[0]

    def _checked(self, record: CompromiseRecord, outcome: str, left_out: list[int],
                 who: dict[str, Any],
                 alert: tuple[str, str | None, str, AuditEvent] | None = None) -> None:
        """Record a check's outcome with its event, and raise ``alert`` (once for the same
        finding, Store.raise_alert), at once."""
        event = self.audit.event("compromise-check", party=record.reporter,
                                 originator=record.originator, objects=_objects(record),
                                 report=record.report_id, outcome=outcome, left_out=left_out,
                                 **who)
        if self.store.compromise_checked(record.report_id, timestamp(utc_now()), outcome,
                                         [event], alert) and alert is not None:
            self.audit.alerted(*alert[:3])


def _other(record: CompromiseRecord, me: str) -> str | None:
    """The party at the other end of a report (None: a local report)."""
    if record.direction == "local":
        return None
    return record.originator if record.reporter == me else record.reporter


def _objects(record: CompromiseRecord) -> list[tuple[str, str]]:
    return [(str(o[0]), str(o[1])) for o in json.loads(record.body).get("objects", [])]


def _digest(text: str) -> str:
    """SHA-256 of a message's RFC 8785 form: what was signed, however it was sent."""
    return hashlib.sha256(jcs(json.loads(text))).hexdigest()


__all__ = ["CompromiseError", "CompromiseReports", "Flag"]
