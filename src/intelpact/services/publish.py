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

import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import IntelpactError
from ..model import Agreement, Label, LabelPart, Markings, Person, Policy, national_marking
from ..model.errors import LabelError, MarkingError
from ..store.base import (
    AddResult,
    AuditEvent,
    NewObject,
    StatusRecord,
    Store,
    normalise_timestamp,
    timestamp,
    utc_now,
)
from .audit import AuditLog

BATCH = 500


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


def canonical_body(obj: dict[str, Any]) -> tuple[str, str]:
    """The JSON text stored and served for ``obj`` (keys sorted, no whitespace, UTF-8),
    and the SHA-256 of that text, which identifies the version's content everywhere."""
    body = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return body, hashlib.sha256(body.encode("utf-8")).hexdigest()


def object_version(obj: dict[str, Any]) -> str | None:
    """TAXII's version of an object: modified, else created, else None (date_added)."""
    value = obj.get("modified") or obj.get("created")
    return normalise_timestamp(value) if isinstance(value, str) else None


def definition_label(agreement: Agreement, part: LabelPart, origin: str) -> Label:
    """The label of a marking-definition object: the label it gives, so it is seen and
    released exactly where what it marks may go (a statement marking, which marks
    nothing, gets the lowest covered level)."""
    rel = frozenset(part.rel_to) if part.rel_mode == "set" else None
    rank = part.rank if part.rank is not None else min(agreement.covered)
    return Label(agreement.id, rank, origin, rel, part.caveats, part.communities)


class Publisher:
    """Publishes as a person of this node.

    ``sign`` signs what this node originates (crypto.signing); ``releaser`` gives,
    once per publication, the federation's release filter: the partners each
    stored object goes to, written to the outbox in the object's transaction."""

    def __init__(self, policy: Policy, markings: Markings, store: Store,
                 validate: Callable[[dict[str, Any]], None], audit: AuditLog, *,
                 sign: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 releaser: Callable[[], Callable[[NewObject], Iterable[str]]] | None = None,
                 on_stored: Callable[[], None] | None = None) -> None:
        self.policy = policy
        self.markings = markings
        self.store = store
        self.validate = validate
        self.sign = sign
        self.releaser = releaser
        self.on_stored = on_stored
        self.audit = audit

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
                outcome, new = self._definition(person, item)
                if new is None:
                    outcomes.append(outcome)
                else:
                    pending.append((new, item))
        for item in objects:
            if isinstance(item, dict) and item.get("type") == "marking-definition":
                continue
            outcome, new = self._object(person, item, extra_refs, denials)
            if new is None:
                outcomes.append(outcome)
            else:
                pending.append((new, item))
        self.audit.record(*denials)

        if progress is not None and outcomes:
            progress(len(outcomes))  # refused before storing
        release = self.releaser() if self.releaser is not None else None
        for start in range(0, len(pending), BATCH):
            chunk = pending[start:start + BATCH]
            marks = [(n.object_id, n.body) for n, _ in chunk
                     if n.object_type == "marking-definition"]
            batch = [n for n, _ in chunk]
            results = self.store.add_objects(collection_id, batch, marks, release=release,
                                             audit=functools.partial(self._events, person,
                                                                     batch))
            for r in results:
                ok = r.outcome != "conflict"
                outcomes.append(Outcome(r.object_id, r.version, ok, r.message))
            if progress is not None:
                progress(len(chunk))
        if pending and self.on_stored is not None:
            self.on_stored()
        return self._status(person, collection_id, created, outcomes)

    def _events(self, person: Person, batch: Sequence[NewObject],
                results: Sequence[AddResult]) -> list[AuditEvent]:
        """The audit of one stored batch: what was added, by whom (in its transaction)."""
        added = [(r.object_id, r.version, n.originator)
                 for n, r in zip(batch, results, strict=True) if r.outcome == "added"]
        return self.audit.by_originator("publish", added, person=person)

    def _definition(self, person: Person, item: dict[str, Any]
                    ) -> tuple[Outcome, NewObject | None]:
        mid = str(item.get("id", "?"))
        try:
            self.validate(item)
            part = self.markings.add(item)
        except (MarkingError, IntelpactError) as exc:
            return Outcome(mid, None, False, exc.message), None
        except ValueError as exc:
            return Outcome(mid, None, False, str(exc)), None
        origin = part.originator or person.party
        if part.kind == "national" and origin == person.party and self.sign is not None:
            item = self.sign(item)
            self.markings.add(item)
        label = definition_label(self.policy.agreement, part, origin)
        body, digest = canonical_body(item)
        return Outcome(mid, None, True, ""), NewObject(
            mid, "marking-definition", str(item.get("spec_version", "2.1")),
            object_version(item), body, digest, label, label, origin, False,
            published_by=person.name)

    def _object(self, person: Person, item: Any, extra_refs: Iterable[str],
                denials: list[AuditEvent]) -> tuple[Outcome, NewObject | None]:
        if not isinstance(item, dict):
            return Outcome("?", None, False, "not a JSON object"), None
        oid = str(item.get("id", "?"))
        try:
            self.validate(item)
        except Exception as exc:  # noqa: BLE001 - the validator's one error type
            return Outcome(oid, None, False, getattr(exc, "reason", str(exc))), None
        obj = dict(item)
        refs = list(obj.get("object_marking_refs", []))
        for ref in extra_refs:
            if ref not in refs:
                refs.append(ref)
        if refs:
            obj["object_marking_refs"] = refs
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
        if self.sign is not None:
            obj = self.sign(obj)
        body, digest = canonical_body(obj)
        return Outcome(oid, None, True, ""), NewObject(
            oid, str(obj["type"]), str(obj.get("spec_version", "2.1")), object_version(obj),
            body, digest, labels.base, labels.banner, labels.base.originator,
            bool(labels.portions), published_by=person.name)

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


class PublishError(IntelpactError):
    """The whole publication was refused (e.g. a marking the agreement does not allow)."""
