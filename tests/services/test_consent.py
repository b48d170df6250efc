"""Consent for third-party release across three nodes (JPN, NZL, AUS) on 127.0.0.1 over
real mutual TLS: the request, the originator's signed consent or refusal, the release
with the token, the recipient's check, expiry and forgery; and that without a valid
token no path releases a third party's object."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_atomic_audit import REFUSED, refusing
from test_federation import pair, people, publish, pull, push, visible_ids
from test_key_rotation import _sql

from intelpact.crypto.keys import key_id, public_raw
from intelpact.crypto.signing import SIGNATURES_EXTENSION_ID, sign_object, signatures
from intelpact.interfaces.cli import main
from intelpact.model import national_marking
from intelpact.services.audit import canonical
from intelpact.services.consent import ConsentError
from intelpact.services.controls import MAX_REASON, ControlError
from intelpact.services.courier import Courier, Refused
from intelpact.services.federation import (
    MAX_CONSENT_OBJECTS,
    MAX_CONSENT_VERSIONS,
    MAX_ENVELOPE,
    MAX_NAMED,
    FederationError,
    sign_payload,
)
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest, canonical_body, object_version
from intelpact.store.base import AuditFilter, Notice, Query, normalise_timestamp, utc_now

from helpers import T0, indicator, make_node, serving_federation, stix_id

Trio = tuple[Node, Node, Node]


@pytest.fixture()
def trio(tmp_path: Path) -> Iterator[Trio]:
    nodes = [make_node(tmp_path / p.lower(), p, agreement="jpn-nzl-aus.toml")
             for p in ("JPN", "NZL", "AUS")]
    for node in nodes:
        people(node)
    jpn, nzl, aus = nodes
    nzl.people.add("analyst", party="NZL", clearance="SECRET", roles=["analyst"])
    jpn.people.add("analyst", party="JPN", clearance="極秘", roles=["analyst"])
    pair(jpn, nzl)
    pair(nzl, aus)
    pair(jpn, aus)
    yield jpn, nzl, aus
    for node in nodes:
        node.close()


@pytest.fixture()
def serving(trio: Trio) -> Iterator[Trio]:
    with ExitStack() as stack:
        for node in trio:
            stack.enter_context(serving_federation(node))
        yield trio


def deliver(node: Node, party: str) -> int:
    with Courier(node) as courier:
        return courier.deliver_notices(party)


def shared(jpn: Node, nzl: Node, name: str = "for NZ, releasable to AUS") -> dict:
    """A JPN object REL TO NZL, AUS that only NZL received (from JPN)."""
    obj = publish(jpn, name, "秘", ("NZL", "AUS"))
    push(jpn, "NZL")
    assert obj["id"] in visible_ids(nzl)
    return obj


def ask(nzl: Node, jpn: Node, obj: dict) -> str:
    record = nzl.consents.request(nzl.people.as_person("analyst"), obj["id"], recipient="AUS",
                                  purpose="joint maritime operation")
    assert deliver(nzl, "JPN") == 1
    return record.request_id


def approve(jpn: Node, nzl: Node, request_id: str, **kwargs: object) -> None:
    jpn.consents.approve(jpn.people.as_person("officer"), request_id, **kwargs)  # type: ignore[arg-type]
    assert deliver(jpn, "NZL") == 1


def consent_request(nzl: Node, object_id: str, versions: list[str],
                    request: str | None = None) -> tuple[str, dict[str, Any]]:
    """NZL's request to JPN to pass ``versions`` of ``object_id`` on to AUS, signed as its
    node signs one (sent by hand): its id, and the notice."""
    request = request or str(uuid.uuid4())
    _, signed = nzl.controls._notice("consent-request", "JPN", {
        "object_id": object_id, "request": request, "versions": versions,
        "recipient": "AUS", "purpose": "joint", "expires": None, "requester": {"id": "x"}})
    return request, signed


def refused_request(jpn: Node, nzl: Node, object_id: str, versions: list[str]) -> str:
    """JPN's refusal of NZL's request about ``versions`` of ``object_id``, nothing of it
    kept: the refusal's message."""
    request, signed = consent_request(nzl, object_id, versions)
    with pytest.raises(ConsentError) as refused:
        jpn.controls.receive("NZL", signed)
    assert jpn.store.consent(request) is None
    return refused.value.message


def held_at(nzl: Node, object_id: str) -> list[dict]:
    """The bodies NZL holds of ``object_id``, with the marking-definitions they use."""
    row = nzl.store.query(nzl.default_collection().collection_id,
                          nzl.access.readable(nzl.people.as_person("officer").person),
                          Query(ids=(object_id,))).rows[0]
    body = json.loads(row.body)
    markings = [json.loads(b) for b in nzl.store.markings()
                if json.loads(b)["id"] in body["object_marking_refs"]]
    return [*markings, body]


def token_of(nzl: Node, request_id: str) -> dict:
    record = nzl.store.consent(request_id)
    assert record is not None and record.token is not None
    return json.loads(record.token)


def post(sender: Node, receiver: Node, objects: list[dict],
         consents: list[dict] | None = None) -> dict[str, str]:
    """POST straight to ``receiver``'s inbox; the failures, by object id."""
    peer = sender.federation.peers()[receiver.party]
    envelope: dict = {"objects": objects}
    if consents is not None:
        envelope["x_intelpact_consents"] = consents
    with Courier(sender) as courier:
        r = courier._request(peer, "POST", "/federation/collections/inbox/objects/",
                             json.dumps(envelope).encode())
    assert r.status_code == 200, r.text
    return {f["id"]: f["message"] for f in r.json()["failures"]}


def kinds(node: Node, *wanted: str) -> set[str]:
    return {r.kind for r in node.store.find_audit(AuditFilter(kinds=wanted))}


def test_consent_request_approval_release_and_the_originator_s_record(serving: Trio) -> None:
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    assert not [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == obj["id"]]
    request_id = ask(nzl, jpn, obj)
    runner = CliRunner()
    listed = runner.invoke(main, ["consent", "list", str(jpn.config.dir)])
    assert listed.exit_code == 0 and "incoming" in listed.output and "pending" in listed.output
    # JPN's security officer approves by command; the token goes to NZL at once
    done = runner.invoke(main, ["consent", "approve", str(jpn.config.dir), request_id,
                                "--expires", "7d", "--as", "officer"])
    assert done.exit_code == 0, done.output
    assert "delivered to NZL" in done.output
    record = nzl.store.consent(request_id)
    assert record is not None and record.status == "approved"
    token = token_of(nzl, request_id)["consent"]
    assert (token["originator"], token["holder"], token["recipient"]) == ("JPN", "NZL", "AUS")
    assert token["objects"][obj["id"]] and token["purpose"] == "joint maritime operation"
    # the covered object is queued for AUS, goes with the token, and AUS accepts it
    assert [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == obj["id"]]
    assert push(nzl, "AUS") >= 1
    assert obj["id"] in visible_ids(aus)
    assert not [f for f in aus.store.refusals() if f[1] == obj["id"]]
    # NZL reports the onward release with AUS's signed receipt; JPN records AUS
    assert deliver(nzl, "JPN") == 1
    (row,) = [d for d in jpn.store.disseminations()
              if d.party == "AUS" and d.object_id == obj["id"]]
    assert row.via == "NZL" and row.receipt_id is not None
    assert '"receiver":"AUS"' in (jpn.store.receipt(row.receipt_id) or "")
    shown = runner.invoke(main, ["disseminations", str(jpn.config.dir), "--party", "AUS"])
    assert shown.exit_code == 0 and "to AUS via NZL" in shown.output
    # every act audited on both sides
    assert kinds(nzl, "consent-request", "consent", "onward-release") == {
        "consent-request", "consent", "onward-release"}
    assert kinds(jpn, "consent-request", "consent", "onward-release") == {
        "consent-request", "consent", "onward-release"}
    assert aus.audit.find(AuditFilter(kinds=("receive",), object_id=obj["id"]))
    (asked,) = jpn.store.find_audit(AuditFilter(kinds=("consent-request",)))
    assert json.loads(asked.body)["requester"]["nationality"] == "NZL"


def test_a_refusal_travels_back_and_nothing_is_released(serving: Trio) -> None:
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    runner = CliRunner()
    asked = runner.invoke(main, ["consent", "request", str(nzl.config.dir), obj["id"], "--to",
                                 "AUS", "--purpose", "briefing", "--as", "analyst"])
    assert asked.exit_code == 0 and "delivered to JPN" in asked.output, asked.output
    (record,) = jpn.consents.requests()
    # only a security officer decides
    with pytest.raises(ConsentError, match="security-officer"):
        jpn.consents.approve(jpn.people.as_person("analyst"), record.request_id)
    refused = runner.invoke(main, ["consent", "refuse", str(jpn.config.dir), record.request_id,
                                   "--reason", "source protection", "--as", "officer"])
    assert refused.exit_code == 0 and "delivered to NZL" in refused.output, refused.output
    mine = nzl.store.consent(record.request_id)
    assert mine is not None and mine.status == "refused" and mine.reason == "source protection"
    listed = runner.invoke(main, ["consent", "list", str(nzl.config.dir)])
    assert "refused: source protection" in listed.output
    with pytest.raises(ConsentError, match="refused already"):
        jpn.consents.approve(jpn.people.as_person("officer"), record.request_id)
    assert nzl.store.pending("AUS", 100) == []
    assert push(nzl, "AUS") == 0 and obj["id"] not in visible_ids(aus)
    assert kinds(jpn, "consent-refuse") == kinds(nzl, "consent-refuse") == {"consent-refuse"}


def test_only_an_officer_who_may_read_the_object_consents_to_its_release(serving: Trio
                                                                         ) -> None:
    """Regression: a security officer cleared below the object, who may not read it,
    consented to its release to a third party. Refused, with the reason, and audited as
    denied; an officer cleared for it consents."""
    jpn, nzl, aus = serving
    jpn.people.add("low-officer", party="JPN", clearance="秘", roles=["security-officer"])
    obj = publish(jpn, "too high for the low officer", "極秘", ("NZL", "AUS"))
    push(jpn, "NZL")
    request_id = ask(nzl, jpn, obj)
    low = jpn.people.as_person("low-officer")
    with pytest.raises(ConsentError, match=r"you may not read .*: clearance .*only someone "
                       "who may read an object consents"):
        jpn.consents.approve(low, request_id)
    (denied,) = jpn.audit.find(AuditFilter(kinds=("deny",), object_id=obj["id"]))
    body = json.loads(denied.body)
    assert body["via"] == "consent-approve" and body["request"] == request_id
    assert "clearance" in body["reason"]
    record = jpn.store.consent(request_id)
    assert record is not None and record.status == "pending"  # nothing decided or sent
    assert deliver(jpn, "NZL") == 0
    approve(jpn, nzl, request_id)
    assert [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == obj["id"]]


def test_an_expired_consent_releases_nothing(serving: Trio) -> None:
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    request_id = ask(nzl, jpn, obj)
    expires = utc_now() + dt.timedelta(seconds=3)
    approve(jpn, nzl, request_id, expires=expires)
    assert [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == obj["id"]]
    time.sleep(max(0.0, (expires - utc_now()).total_seconds()) + 0.2)
    # the decision is taken again as it leaves: nothing goes, by push or by pull
    assert push(nzl, "AUS") == 0
    assert pull(aus, "NZL") == 0
    assert obj["id"] not in visible_ids(aus)
    # and AUS refuses it with the expired token, if NZL's node sent it anyway
    failures = post(nzl, aus, held_at(nzl, obj["id"]), [token_of(nzl, request_id)])
    assert "not valid now" in failures[obj["id"]]
    with pytest.raises(ConsentError, match="before it is given"):
        jpn.consents.approve(jpn.people.as_person("officer"), ask(nzl, jpn, obj),
                             expires=utc_now() - dt.timedelta(minutes=1))


def test_forged_altered_and_mismatched_tokens_are_refused(serving: Trio) -> None:
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    other = shared(jpn, nzl, "another JPN object")
    request_id = ask(nzl, jpn, obj)
    approve(jpn, nzl, request_id)
    good = token_of(nzl, request_id)
    objects = held_at(nzl, other["id"])
    # no token at all
    assert "no consent" in post(nzl, aus, objects)[other["id"]]
    # a token for another object
    assert "does not cover" in post(nzl, aus, objects, [good])[other["id"]]
    # the token altered to cover it: JPN's signature no longer verifies
    altered = json.loads(json.dumps(good))
    altered["consent"]["objects"][other["id"]] = []
    assert "forged or altered" in post(nzl, aus, objects, [altered])[other["id"]]
    # a token made by NZL, claiming to be JPN's
    forged = {"consent": altered["consent"], "key_id": jpn.identity.key_id,
              "signature": sign_payload(nzl.signing_key, altered["consent"])}
    assert "not signed by a key of JPN" in post(nzl, aus, objects, [forged])[other["id"]]
    assert other["id"] not in visible_ids(aus)
    assert aus.audit.find(AuditFilter(kinds=("refuse",), object_id=other["id"]))
    # a consent notice "from JPN" that JPN did not sign is refused by NZL...
    second = nzl.consents.request(nzl.people.as_person("analyst"), other["id"],
                                  recipient="AUS", purpose="x")
    _, notice = nzl.controls._notice("consent", "NZL", {
        "object_id": other["id"], "request": second.request_id, "token": forged})
    body = dict(notice["notice"], **{"from": "JPN"})
    with pytest.raises(ControlError, match="not signed by a key of JPN"):
        nzl.controls.receive("JPN", {"notice": body, "key_id": jpn.identity.key_id,
                                     "signature": sign_payload(nzl.signing_key, body)})
    # ...and so is a genuine JPN notice carrying a token JPN did not sign
    _, signed = jpn.controls._notice("consent", "NZL", {
        "object_id": other["id"], "request": second.request_id, "token": forged})
    with pytest.raises(ConsentError, match="not signed by a key of JPN"):
        nzl.controls.receive("JPN", signed)
    assert not [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == other["id"]]
    # the genuine token still works for what it covers
    assert push(nzl, "AUS") >= 1 and obj["id"] in visible_ids(aus)


def test_versions_of_one_object_from_two_originators_in_one_envelope_are_refused(
        serving: Trio) -> None:
    """Regression: a holder relaying the originator's object with consent could send, in
    the same envelope, a newer version of it under its own marking and signature. The
    recipient, holding neither, took both: the object became the holder's there (its
    latest version's originator), and its originator could no longer recall, reclassify
    or re-version it. Which of the two originated the id cannot be told, so neither is
    taken; the originator's own delivery then is."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    approve(jpn, nzl, ask(nzl, jpn, obj))
    low = sign_object(national_marking(nzl.agreement, "NZL", "UNCLASSIFIED",
                                       rel_to=["NZL", "AUS"]), nzl.signing_key, "NZL")
    mine = dict(obj, modified="2026-11-02T00:00:00.000Z", object_marking_refs=[low["id"]])
    mine = sign_object(mine, nzl.signing_key, "NZL")
    (token,) = [token_of(nzl, r.request_id) for r in nzl.store.consents()
                if r.direction == "out"]
    failures = post(nzl, aus, [*held_at(nzl, obj["id"]), low, mine], [token])
    assert "sent together are JPN and NZL's" in failures[obj["id"]], failures
    assert aus.store.held([obj["id"]]) == []
    refused = [json.loads(e.body) for e in aus.audit.find(AuditFilter(kinds=("refuse",)))]
    assert {e["objects"][0][1] for e in refused if e["objects"][0][0] == obj["id"]} == {
        "2026-11-01T00:00:00.000000Z", "2026-11-02T00:00:00.000000Z"}
    push(jpn, "AUS")
    assert [(r.originator, r.version) for r in aus.store.held([obj["id"]])] == [
        ("JPN", "2026-11-01T00:00:00.000000Z")]


@pytest.mark.parametrize("listed", [5, [{"id": ["a list"], "body_hash": {}}]],
                         ids=["not a list", "an id that is a list"])
def test_an_onward_release_report_whose_receipt_lists_no_objects_is_refused(
        serving: Trio, listed: object) -> None:
    """Regression: a recipient's receipt (signed) whose "objects" was not a list, or
    listed an object whose id was a list (found in review: unhashable), made the
    originator's listener answer 500 to the holder's onward-release report, which the
    holder sent again for ever, holding back its later notices."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    approve(jpn, nzl, ask(nzl, jpn, obj))
    (row,) = nzl.store.held([obj["id"]])
    receipt = {"receiver": "AUS", "sender": "NZL", "objects": listed}
    _, signed = nzl.controls._notice("onward-release", "JPN", {
        "object_id": obj["id"], "recipient": "AUS", "how": "push",
        "objects": [[obj["id"], row.version, row.body_hash]],
        "receipt": {"receipt": receipt, "key_id": aus.identity.key_id,
                    "signature": sign_payload(aus.signing_key, receipt)}})
    with pytest.raises(ConsentError, match="AUS's receipt (lists no objects|does not "
                       "acknowledge)"):
        jpn.controls.receive("NZL", signed)
    assert not kinds(jpn, "onward-release")


def test_without_consent_no_path_releases_a_third_party_s_object(serving: Trio) -> None:
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    assert nzl.store.pending("AUS", 100) == []  # the release filter queued nothing
    # even if the outbox held it, push and pull take the decision again and send nothing
    assert nzl.store.enqueue("AUS", lambda row: row.originator == "JPN") >= 1
    assert push(nzl, "AUS") == 0
    assert pull(aus, "NZL") == 0
    assert obj["id"] not in visible_ids(aus)
    assert "no consent" in post(nzl, aus, held_at(nzl, obj["id"]))[obj["id"]]
    # asking is refused for what the holder originated itself, or for a non-third party
    own = publish(nzl, "nz own", "SECRET", ("AUS",))
    officer = nzl.people.as_person("officer")
    with pytest.raises(ConsentError, match="needs no consent"):
        nzl.consents.request(officer, own["id"], recipient="AUS", purpose="x")
    with pytest.raises(ConsentError, match="not a third party"):
        nzl.consents.request(officer, obj["id"], recipient="JPN", purpose="x")
    # and a holder cannot approve consent for someone else's object
    with pytest.raises(ConsentError, match="no consent request"):
        nzl.consents.approve(officer, "no-such-request")


def derived_report(*refs: str, **extra: Any) -> dict:
    return {"type": "report", "spec_version": "2.1", "id": stix_id("report"), "created": T0,
            "modified": T0, "name": "NZ's analysis", "published": T0,
            "object_refs": list(refs), **extra}


def test_a_holder_s_own_object_derived_from_a_third_party_s_is_not_released_without_it(
        serving: Trio) -> None:
    """NZL's own report (or relationship) over JPN's object carries JPN's information: it
    is published only marked with JPN's national marking where it names JPN's object, and
    then goes to AUS only with JPN's consent, as JPN's object itself would."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)  # JPN 秘 REL TO NZL, AUS, held at NZL
    (jpn_marking,) = held_at(nzl, obj["id"])[-1]["object_marking_refs"]
    officer = nzl.people.as_person("officer").person
    cid = nzl.default_collection().collection_id
    report = derived_report(obj["id"])
    relationship = {"type": "relationship", "spec_version": "2.1",
                    "id": stix_id("relationship"), "created": T0, "modified": T0,
                    "relationship_type": "related-to", "source_ref": obj["id"],
                    "target_ref": report["id"]}
    body = nzl.publisher.publish(officer, cid, [report, relationship],
                                 marking=MarkingRequest("SECRET", ("AUS",))).body
    push(nzl, "AUS")
    pull(aus, "NZL")
    assert not {report["id"], relationship["id"]} & visible_ids(aus)
    # refused at NZL, saying which party's marking is missing and where to put it
    failures = {f["id"]: f["message"] for f in body["failures"]}
    assert set(failures) == {report["id"], relationship["id"]}, body
    assert "JPN" in failures[report["id"]] and "object_refs" in failures[report["id"]]
    assert "granular marking" in failures[report["id"]]
    assert "source_ref" in failures[relationship["id"]], failures
    denied = [json.loads(e.body) for e in nzl.store.find_audit(AuditFilter(kinds=("deny",)))]
    assert {e["objects"][0][0] for e in denied if "JPN" in e["reason"]} >= {
        report["id"], relationship["id"]}
    # marked so, it publishes at NZL, and carries JPN's marking with it: no consent, no AUS
    marked = derived_report(obj["id"], granular_markings=[
        {"marking_ref": jpn_marking, "selectors": ["object_refs"]}])
    body = nzl.publisher.publish(officer, cid, [marked],
                                 marking=MarkingRequest("SECRET", ("AUS",))).body
    assert body["failure_count"] == 0, body
    assert not [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == marked["id"]]
    assert nzl.store.enqueue("AUS", lambda row: row.object_id == marked["id"]) >= 1
    assert push(nzl, "AUS") == 0
    assert pull(aus, "NZL") == 0
    assert marked["id"] not in visible_ids(aus)
    sent = [*held_at(nzl, obj["id"])[:-1], *held_at(nzl, marked["id"])]  # JPN's marking too
    assert "no consent" in post(nzl, aus, sent)[marked["id"]]


def test_what_is_derived_from_a_portion_names_its_party_unless_the_portion_was_withheld(
        serving: Trio) -> None:
    """Provenance travels through a holder's own objects: NZL's X with a JPN portion is
    JPN's information too, so a report over X must name JPN, as one over a JPN object
    must. A publisher served X with that portion withheld derived nothing of JPN's from
    it: JPN is not asked of them (and the refusal would tell them the portion is JPN's)."""
    jpn, nzl, _ = serving
    top = publish(jpn, "for NZ eyes", "機密", ("NZL",))
    push(jpn, "NZL")
    (jpn_marking,) = held_at(nzl, top["id"])[-1]["object_marking_refs"]
    cid = nzl.default_collection().collection_id
    officer = nzl.people.as_person("officer").person
    analyst = nzl.people.as_person("analyst").person  # SECRET: not cleared for the portion
    x = indicator("NZ's own, with a JPN portion", granular_markings=[
        {"marking_ref": jpn_marking, "selectors": ["description"]}])
    body = nzl.publisher.publish(officer, cid, [x],
                                 marking=MarkingRequest("RESTRICTED", ("AUS",))).body
    assert body["failure_count"] == 0, body
    # at X's banner (TOP SECRET, NZL only) but not naming JPN: refused, saying so
    body = nzl.publisher.publish(officer, cid, [derived_report(x["id"])],
                                 marking=MarkingRequest("TOP SECRET", ())).body
    (failure,) = body["failures"]
    assert "JPN's information" in failure["message"] and x["id"] in failure["message"]
    marked = derived_report(x["id"], granular_markings=[
        {"marking_ref": jpn_marking, "selectors": ["object_refs"]}])
    body = nzl.publisher.publish(officer, cid, [marked],
                                 marking=MarkingRequest("TOP SECRET", ())).body
    assert body["failure_count"] == 0, body
    # served X without its JPN portion, the analyst derives nothing of JPN's from it
    body = nzl.publisher.publish(analyst, cid, [derived_report(x["id"])],
                                 marking=MarkingRequest("RESTRICTED", ("AUS",))).body
    assert body["failure_count"] == 0, body


@pytest.mark.parametrize("how", ["push", "pull"])
def test_a_holder_asks_a_source_party_to_let_its_own_object_go_to_a_third_party(
        serving: Trio, how: str) -> None:
    """NZL's own report with a JPN portion goes to AUS only with JPN's consent: NZL asks
    JPN (which holds the report, released to it as to any party in its REL TO), JPN's
    officer approves, and the report goes to AUS with the token, which AUS checks;
    JPN is told it went. Without the consent it goes nowhere but JPN."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    (jpn_marking,) = held_at(nzl, obj["id"])[-1]["object_marking_refs"]
    officer = nzl.people.as_person("officer")
    marked = derived_report(obj["id"], granular_markings=[
        {"marking_ref": jpn_marking, "selectors": ["object_refs"]}])
    body = nzl.publisher.publish(officer.person, nzl.default_collection().collection_id,
                                 [marked], marking=MarkingRequest("SECRET", ("JPN", "AUS"))).body
    assert body["failure_count"] == 0, body
    push(nzl, "JPN")  # JPN is no third party to it: it goes there as NZL's object does
    assert marked["id"] in visible_ids(jpn) and marked["id"] not in visible_ids(aus)
    with pytest.raises(ConsentError, match="not a third party"):
        nzl.consents.request(officer, marked["id"], recipient="JPN", purpose="x")
    with pytest.raises(ConsentError, match="AUS's information is not in"):
        nzl.consents.request(officer, marked["id"], recipient="JPN", purpose="x", of="AUS")
    record = nzl.consents.request(officer, marked["id"], recipient="AUS", purpose="joint")
    assert record.originator == "JPN"
    assert deliver(nzl, "JPN") == 1
    assert [r.status for r in jpn.consents.requests()] == ["pending"]
    approve(jpn, nzl, record.request_id)
    token = token_of(nzl, record.request_id)["consent"]
    assert (token["originator"], token["holder"], token["recipient"]) == ("JPN", "NZL", "AUS")
    assert set(token["objects"]) == {marked["id"], jpn_marking}
    if how == "push":
        assert push(nzl, "AUS") >= 1
    else:
        assert pull(aus, "NZL") >= 1
    assert marked["id"] in visible_ids(aus)
    assert not [f for f in aus.store.refusals() if f[1] == marked["id"]]
    assert deliver(nzl, "JPN") == 1  # the onward release, reported to JPN
    (row,) = [d for d in jpn.store.disseminations()
              if d.party == "AUS" and d.object_id == marked["id"]]
    assert row.via == "NZL"


def test_a_source_party_answers_a_request_about_what_it_does_not_hold_as_unknown(
        serving: Trio) -> None:
    """Asked about NZL's object that never reached JPN, or that JPN holds with nothing
    of JPN's in it, JPN answers as about an id it does not hold: the answer tells NZL
    nothing of what JPN holds."""
    jpn, nzl, _ = serving
    obj = shared(jpn, nzl)
    (jpn_marking,) = held_at(nzl, obj["id"])[-1]["object_marking_refs"]
    officer = nzl.people.as_person("officer")
    cid = nzl.default_collection().collection_id
    unshared = derived_report(obj["id"], granular_markings=[
        {"marking_ref": jpn_marking, "selectors": ["object_refs"]}])
    nz_only = indicator("NZ's alone")
    for item, rel in ((unshared, ("AUS",)), (nz_only, ("JPN", "AUS"))):
        body = nzl.publisher.publish(officer.person, cid, [item],
                                     marking=MarkingRequest("SECRET", rel)).body
        assert body["failure_count"] == 0, body
    push(nzl, "JPN")
    assert nz_only["id"] in visible_ids(jpn) and unshared["id"] not in visible_ids(jpn)
    refused = [refused_request(jpn, nzl, object_id, [T0]).replace(object_id, "ID")
               for object_id in (unshared["id"], nz_only["id"], f"report--{uuid.uuid4()}")]
    assert refused == ["ID was not originated by JPN: ask its originator"] * 3


def test_pulled_with_consent(serving: Trio) -> None:
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    approve(jpn, nzl, ask(nzl, jpn, obj))
    assert pull(aus, "NZL") >= 1  # the token travels in the outbox page too
    assert obj["id"] in visible_ids(aus)
    assert deliver(nzl, "JPN") == 1  # reported, without a receipt (a pull has none)
    (row,) = [d for d in jpn.store.disseminations()
              if d.party == "AUS" and d.object_id == obj["id"]]
    assert row.via == "NZL" and row.receipt_id is None



class _Killed(BaseException):
    """The process killed at that point (nothing after it runs)."""


@pytest.mark.parametrize("how", ["push", "pull"])
def test_an_onward_release_is_reported_even_if_the_holder_dies_as_it_goes(
        serving: Trio, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Regression: the holder recorded a third party's object as delivered (push: the
    receipt) or released (pull: the dissemination record of a page) in one transaction,
    and queued its onward-release report to the originator in the next. Killed between
    the two, it never reported it: the object was not pushed again, and the page pulled
    again was not new. The report is now kept in the same transaction. The kill is made
    to happen as the report is signed."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    approve(jpn, nzl, ask(nzl, jpn, obj))
    sign = nzl.controls._notice

    def killed(kind: str, to: str, body: Any) -> Any:
        if kind == "onward-release":
            raise _Killed
        return sign(kind, to, body)

    monkeypatch.setattr(nzl.controls, "_notice", killed)
    if how == "push":
        with pytest.raises(_Killed):
            push(nzl, "AUS")
    else:
        with pytest.raises(FederationError):  # NZL's listener fails the page: a 500
            pull(aus, "NZL")
    monkeypatch.undo()
    assert (push(nzl, "AUS") if how == "push" else pull(aus, "NZL")) >= 0
    assert obj["id"] in visible_ids(aus)
    assert [n.kind for n in nzl.store.pending_notices("JPN", 10)] == ["onward-release"]
    assert deliver(nzl, "JPN") == 1
    assert [d.via for d in jpn.store.disseminations()
            if d.party == "AUS" and d.object_id == obj["id"]] == ["NZL"]


def test_a_request_names_who_may_be_asked_for(serving: Trio, tmp_path: Path) -> None:
    """The refusal of a recipient who is no third party names those who are; under a
    bilateral agreement it says there is none, rather than "name one of " and nothing."""
    jpn, nzl, _ = serving
    obj = shared(jpn, nzl)
    analyst = nzl.people.as_person("analyst")
    with pytest.raises(ConsentError, match="name one of AUS$"):
        nzl.consents.request(analyst, obj["id"], recipient="JPN", purpose="none")
    a, b = make_node(tmp_path / "two-jpn", "JPN"), make_node(tmp_path / "two-nzl", "NZL")
    try:
        people(a)
        people(b)
        b.people.add("analyst", party="NZL", clearance="SECRET", roles=["analyst"])
        pair(a, b)
        with serving_federation(a), serving_federation(b):
            obj = publish(a, "bilateral", "秘", ("NZL",))
            push(a, "NZL")
            with pytest.raises(ConsentError, match="the agreement has no third party to "
                                                   "release it to$"):
                b.consents.request(b.people.as_person("analyst"), obj["id"], recipient="AUS",
                                   purpose="none")
    finally:
        a.close()
        b.close()


def approved_not_queued(jpn: Node, nzl: Node) -> tuple[dict, str]:
    """A JPN object NZL holds (``shared``), NZL's request to pass it on to AUS, and JPN's
    approval, kept at NZL while the queueing of what it covers failed (a trigger on NZL's
    outbox refused it, as a full disk would): (the object, the request's id)."""
    obj = shared(jpn, nzl)
    request_id = ask(nzl, jpn, obj)
    jpn.consents.approve(jpn.people.as_person("officer"), request_id)
    with refusing(nzl.store, "outbox"), pytest.raises(FederationError):
        deliver(jpn, "NZL")
    record = nzl.store.consent(request_id)
    assert record is not None and record.status == "approved"  # kept, nothing queued
    return obj, request_id


def test_what_an_approval_covers_is_queued_again_when_the_holder_serves(
        serving: Trio) -> None:
    """The holder keeps the originator's approval, then queues what it covers for the
    recipient: two transactions. Here the queueing fails (a trigger on the outbox, as a
    crash between the two would leave it): the approval is kept and nothing queued, and
    the notice is not delivered again (its coming again would queue it: the test of
    that is further down). When the holder's courier starts (``serve``), it queues what
    every consent held covers."""
    jpn, nzl, aus = serving
    obj, _ = approved_not_queued(jpn, nzl)
    assert not [r for _, r in nzl.store.released_after("AUS", 0, 100)
                if r.object_id == obj["id"]]
    courier = Courier(nzl, interval=3600)
    courier.start()  # its thread may push what is queued at once
    courier.stop()
    assert [r for _, r in nzl.store.released_after("AUS", 0, 100)
            if r.object_id == obj["id"]]
    push(nzl, "AUS")
    assert obj["id"] in visible_ids(aus)


def _resign(jpn: Node, notice: Notice, more: int) -> dict:
    """JPN's consent ``notice`` (as first queued) kept again with ``more`` short ids added to
    its token, token and notice signed again with JPN's key, as JPN's node would (a
    partner's token is input this node does not control: any string is taken as an object
    id). Returns the signed token."""
    signed = json.loads(notice.body)
    token = signed["notice"]["token"]
    token["consent"]["objects"].update({f"{i:x}": [] for i in range(more)})
    token["signature"] = sign_payload(jpn.signing_key, token["consent"])
    signed["signature"] = sign_payload(jpn.signing_key, signed["notice"])
    _sql(jpn.store, "UPDATE notices SET body = ? WHERE notice_id = ?",
         (canonical(signed), notice.notice_id))
    return dict(token)


def test_a_token_names_so_many_objects_and_no_more(serving: Trio) -> None:
    """Regression: a consent token could name any number of object ids. The holder kept
    the approval, then queued what it covers with one SQL parameter per id: 260,000 short
    ids (3 MB, under the body limit) failed that after the approval was kept (answered
    500), and its ``serve`` at every start until the token expired. A token names at most
    MAX_CONSENT_OBJECTS: one more is refused, with the reason, by the holder (nothing is
    kept) and by the recipient."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    request_id = ask(nzl, jpn, obj)
    jpn.consents.approve(jpn.people.as_person("officer"), request_id)
    (notice,) = jpn.store.pending_notices("NZL", 10)
    named = len(json.loads(notice.body)["notice"]["token"]["consent"]["objects"])
    too_many = _resign(jpn, notice, MAX_CONSENT_OBJECTS - named + 1)
    with pytest.raises(FederationError, match="403 .*names 1,001 objects and 1 versions: a "
                       "token may name at most 1,000 objects and 10,000 versions"):
        deliver(jpn, "NZL")
    record = nzl.store.consent(request_id)
    assert record is not None and record.status == "pending" and record.token is None
    assert not [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == obj["id"]]
    # the recipient refuses it too, whoever sends it
    failure = post(nzl, aus, held_at(nzl, obj["id"]), [too_many])[obj["id"]]
    assert "a token may name at most 1,000 objects" in failure, failure
    assert obj["id"] not in visible_ids(aus)
    # as many as a token may name are taken (JPN's notice made again from the first)
    _resign(jpn, notice, MAX_CONSENT_OBJECTS - named)
    assert deliver(jpn, "NZL") == 1
    record = nzl.store.consent(request_id)
    assert record is not None and record.status == "approved"
    assert [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == obj["id"]]


def _oversized(jpn: Node, nzl: Node, more: int) -> tuple[dict, str, dict[str, Any]]:
    """A JPN object at NZL, the consent JPN gave NZL to pass it to AUS, and that token
    signed again naming ``more`` ids more: as one kept before tokens were bounded."""
    obj = shared(jpn, nzl)
    request_id = ask(nzl, jpn, obj)
    jpn.consents.approve(jpn.people.as_person("officer"), request_id)
    (notice,) = jpn.store.pending_notices("NZL", 10)
    return obj, request_id, _resign(jpn, notice, more)


def test_serve_starts_with_a_token_kept_before_a_token_s_size_was_bounded(
        serving: Trio, caplog: pytest.LogCaptureFixture) -> None:
    """Regression: a holder that kept a token naming 260,000 ids (taken before tokens were
    bounded) could not start ``serve``: its courier's start queued what the token covers,
    with one SQL parameter per id, and raised (SQLite: "too many SQL variables"). The
    token is not used now (the reason logged), and the courier starts."""
    jpn, nzl, aus = serving
    obj, request_id, token = _oversized(jpn, nzl, 260_000)
    _sql(nzl.store, "UPDATE consents SET status = 'approved', token = ?, expires = ? "
         "WHERE request_id = ?", (canonical(token), token["consent"]["expires"], request_id))
    courier = Courier(nzl, interval=3600)
    with caplog.at_level(logging.WARNING, logger="intelpact"):
        try:
            courier.start()  # what `serve` does first
        finally:
            courier.stop()
    assert f"consent request {request_id}: its token is not used: the consent token names " \
        "260,002 objects" in caplog.text, caplog.text
    assert not [r for _, r in nzl.store.released_after("AUS", 0, 100)
                if r.object_id == obj["id"]]


def test_an_onward_release_report_on_a_token_kept_before_tokens_were_bounded(
        serving: Trio) -> None:
    """Found in review: at the originator, a token it gave before tokens were bounded
    made every onward-release report from that holder fail with a FederationError, a
    500 the holder sent again for ever. Such a token covers nothing now: the report is
    refused with the reason."""
    jpn, nzl, aus = serving
    obj, request_id, token = _oversized(jpn, nzl, 2_000)
    _sql(jpn.store, "UPDATE consents SET token = ? WHERE request_id = ?",
         (canonical(token), request_id))
    (row,) = nzl.store.held([obj["id"]])
    _, signed = nzl.controls._notice("onward-release", "JPN", {
        "object_id": obj["id"], "recipient": "AUS", "how": "pull",
        "objects": [[obj["id"], row.version, row.body_hash]]})
    with pytest.raises(ConsentError, match="this node gave no such consent"):
        jpn.controls.receive("NZL", signed)


def test_serve_starts_when_what_consents_cover_cannot_be_queued_and_queues_it_later(
        serving: Trio, caplog: pytest.LogCaptureFixture) -> None:
    """Regression: a failure to queue what the consents held cover, as the courier starts
    (``serve``), was raised unless it was this node's own error (a database's error is
    not): ``serve`` did not start. And queued only then, a failure left it unqueued until
    ``serve`` started again. It is logged with the reason, and tried again until done."""
    jpn, nzl, aus = serving
    obj, _ = approved_not_queued(jpn, nzl)

    def queued() -> bool:
        return any(r.object_id == obj["id"] for _, r in nzl.store.released_after("AUS", 0, 100))

    with Courier(nzl, interval=0.2, gossip_interval=3600) as courier:
        with caplog.at_level(logging.WARNING, logger="intelpact.courier"), \
                refusing(nzl.store, "outbox"):
            courier.start()
            assert not queued()
        assert "or queue what the consents held cover (retry in 0.2s)" in caplog.text
        assert REFUSED in caplog.text
        deadline = time.monotonic() + 10
        while not queued() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert queued(), "never queued once the outbox took it"
    push(nzl, "AUS")
    assert obj["id"] in visible_ids(aus)


def _inbox(sender: Node, receiver: Node, envelope: dict) -> Any:
    """POST ``envelope`` straight to ``receiver``'s inbox; the response."""
    with Courier(sender) as courier:
        return courier._request(sender.federation.peers()[receiver.party], "POST",
                                "/federation/collections/inbox/objects/",
                                json.dumps(envelope).encode())


def test_an_envelope_holds_so_many_objects_and_consent_tokens_and_no_more(
        serving: Trio) -> None:
    """Regression: an envelope could hold any number of objects, each refused with its own
    refusal row and audit event (in a transaction of its own), and any number of consent
    tokens, of which the first 100 were read and the rest silently ignored. 10 MiB holds
    millions of "1,". At most MAX_ENVELOPE of each: one more is refused whole (413, the
    count and the first few named, one refuse event), and nothing is kept."""
    _, nzl, aus = serving
    before = len(aus.audit.find(AuditFilter(kinds=("refuse",))))
    kept = aus.store.refusals()
    r = _inbox(nzl, aus, {"objects": [1] * (MAX_ENVELOPE + 1)})
    assert r.status_code == 413, r.text
    assert r.json()["description"] == ("the envelope holds 10,001 objects (1, 1, 1 and 9,998 "
                                       "more): at most 10,000 are taken in one envelope")
    r = _inbox(nzl, aus, {"objects": [1], "x_intelpact_consents": [{}] * (MAX_ENVELOPE + 1)})
    assert r.status_code == 413, r.text
    assert "holds 10,001 consent tokens ({}, {}, {} and 9,998 more)" in r.json()["description"]
    refused = aus.audit.find(AuditFilter(kinds=("refuse",)))
    assert len(refused) == before + 2, refused  # one each: no object's refusal kept
    assert aus.store.refusals() == kept
    # as many as an envelope may hold are taken: each object refused with its reason
    r = _inbox(nzl, aus, {"objects": [1] * 3, "x_intelpact_consents": [{}] * MAX_ENVELOPE})
    assert r.status_code == 200 and r.json()["failure_count"] == 3, r.text


def test_a_refusal_names_the_first_few_tokens_refused_not_every_one(serving: Trio) -> None:
    """Regression: an object that needed consent was refused with every problem of every
    token sent with it (up to 100, each naming the token's id, of any length), in each
    object's refusal: answered, kept and audited once per object, it grew with the
    input. It names how many tokens were refused and the first few, each cut short."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    approve(jpn, nzl, ask(nzl, jpn, obj))
    good = token_of(nzl, nzl.store.consents()[0].request_id)
    unsigned = []
    for i in range(200):  # NZL's own tokens "of JPN", each with a long id: not JPN's
        consent = dict(good["consent"], id=f"{i}-" + "x" * 5_000, recipient="JPN")
        unsigned.append({"consent": consent, "key_id": "k",
                         "signature": sign_payload(nzl.signing_key, consent)})
    failure = post(nzl, aus, held_at(nzl, obj["id"]), unsigned)[obj["id"]]
    assert len(failure) < 1_000, (len(failure), failure[:300])
    assert "and 197 more" in failure and "(5,002 characters)" in failure, failure
    reason = json.loads(aus.audit.find(AuditFilter(kinds=("refuse",),
                                                   object_id=obj["id"]))[-1].body)["reason"]
    assert reason == failure


def test_a_consent_request_names_so_many_versions_and_no_more(serving: Trio) -> None:
    """Regression: a consent request could name any number of versions, each kept in the
    request and in its audit event. It names at most MAX_CONSENT_VERSIONS (what one
    consent may cover): one more is refused with the count, audited, nothing kept."""
    jpn, nzl, _ = serving
    obj = shared(jpn, nzl)
    versions = [f"2026-11-01T00:00:{i // 1000 % 60:02d}.{i % 1000:03d}Z"
                for i in range(MAX_CONSENT_VERSIONS + 1)]
    request, signed = consent_request(nzl, obj["id"], versions)
    with pytest.raises(ConsentError, match=r"names 10,001 versions \(2026-11-01T00:00:00.000Z, "
                       r".* and 9,998 more\): at most 10,000 are taken in one request"):
        jpn.controls.receive("NZL", signed)
    assert jpn.store.consent(request) is None
    (event,) = jpn.audit.find(AuditFilter(kinds=("refuse",), party="NZL"))
    assert json.loads(event.body)["message"] == "consent-request"
    # as many as a consent may cover are taken (each one that went to NZL: recorded here
    # as pulled, as 10,000 versions published and released would be)
    jpn.store.add_pulled("NZL", [(obj["id"], normalise_timestamp(v), "sha256:0")
                                 for v in versions[:-1]], "2026-11-02T00:00:00.000000Z",
                         lambda _: [])
    _, signed = consent_request(nzl, obj["id"], versions[:-1], request)
    jpn.controls.receive("NZL", signed)
    record = jpn.store.consent(request)
    assert record is not None and len(record.versions) == MAX_CONSENT_VERSIONS


def test_a_request_about_an_object_never_released_to_the_asker_is_answered_as_unknown(
        serving: Trio) -> None:
    """Regression: a consent request about an id JPN originated but never released to
    NZL was taken (pending), one about an id JPN does not hold refused: NZL could learn
    which ids JPN originated. Both are refused alike now."""
    jpn, nzl, _ = serving
    unshared = publish(jpn, "JPN only so far", "秘", ("NZL", "AUS"))  # never pushed
    refused = [refused_request(jpn, nzl, object_id, [unshared["modified"]])
               .replace(object_id, "ID")
               for object_id in (unshared["id"], f"indicator--{uuid.uuid4()}")]
    assert refused == ["ID was not originated by JPN: ask its originator"] * 2
    push(jpn, "NZL")  # released to NZL now: its request is taken
    assert jpn.store.consent(ask(nzl, jpn, unshared)) is not None


def test_an_onward_release_report_names_so_many_versions_and_no_more(serving: Trio) -> None:
    """Regression: an onward-release report could name any number of [id, version, hash]
    entries, each checked against every consent given, kept as a dissemination row and
    named in its audit event. It names at most MAX_NAMED: one more is refused with the
    count, audited, nothing kept."""
    jpn, nzl, _ = serving
    obj = shared(jpn, nzl)
    approve(jpn, nzl, ask(nzl, jpn, obj))
    (row,) = nzl.store.held([obj["id"]])
    entry = [obj["id"], row.version, row.body_hash]
    _, signed = nzl.controls._notice("onward-release", "JPN", {
        "object_id": obj["id"], "recipient": "AUS", "how": "pull",
        "objects": [entry] * (MAX_NAMED + 1), "receipt": None})
    with pytest.raises(ConsentError, match="names 10,001 versions .* at most 10,000 are "
                       "taken in one report"):
        jpn.controls.receive("NZL", signed)
    assert not kinds(jpn, "onward-release")
    assert jpn.audit.find(AuditFilter(kinds=("refuse",), party="NZL"))


def test_a_consent_refusal_s_reason_is_kept_whole_or_the_notice_refused(
        serving: Trio) -> None:
    """Regression: a consent-refused notice's reason longer than MAX_REASON was cut short
    silently by the holder, which kept and audited only part of what the originator said
    (and took a reason that was not text as its repr). Such a notice is refused with the
    reason why, audited, the request left pending; a reason of MAX_REASON characters is
    kept whole. Refusing with a longer one is refused before anything is signed."""
    jpn, nzl, _ = serving
    obj = shared(jpn, nzl)
    request_id = ask(nzl, jpn, obj)
    officer = jpn.people.as_person("officer")
    with pytest.raises(ConsentError, match="the reason is longer than 2000 characters"):
        jpn.consents.refuse(officer, request_id, reason="x" * (MAX_REASON + 1))
    assert jpn.store.pending_notices("NZL", 10) == []
    for reason, why in (("x" * (MAX_REASON + 1), r" \(it has 2,001\)"), (5, "")):
        _, signed = jpn.controls._notice("consent-refused", "NZL", {
            "object_id": obj["id"], "request": request_id, "reason": reason})
        with pytest.raises(ControlError, match="the notice's reason is not text of at most "
                           f"2,000 characters{why}$"):
            nzl.controls.receive("JPN", signed)
    record = nzl.store.consent(request_id)
    assert record is not None and record.status == "pending"
    refused = [json.loads(e.body) for e in nzl.audit.find(AuditFilter(kinds=("refuse",),
                                                                      party="JPN"))]
    assert [e["message"] for e in refused] == ["consent-refused"] * 2
    jpn.consents.refuse(officer, request_id, reason="y" * MAX_REASON)
    assert deliver(jpn, "NZL") == 1
    record = nzl.store.consent(request_id)
    assert record is not None and record.status == "refused"
    assert record.reason == "y" * MAX_REASON


def test_an_approval_whose_queueing_failed_is_queued_when_its_notice_comes_again(
        serving: Trio) -> None:
    """Regression: the holder keeps an approval, then queues what it covers; when the
    queueing failed (here a trigger on the outbox, as a full disk would), the originator's
    notice failed and came again, was answered "kept already", and queued nothing: the
    objects waited for the next start of `serve`. Now the notice coming again queues
    them."""
    jpn, nzl, _ = serving
    obj, _ = approved_not_queued(jpn, nzl)
    assert not [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == obj["id"]]
    assert deliver(jpn, "NZL") == 1
    assert [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == obj["id"]]


# -- a retired signing key vouches for no consent (docs/federation.md, "Key rotation") ----

def rotated(jpn: Node, *partners: str) -> Ed25519PrivateKey:
    """JPN rotates its signing key and announces it to ``partners`` (nothing else is sent);
    returns the retired private key, as whoever stole an old backup would hold it."""
    old = jpn.signing_key
    jpn.rotate_key()
    with Courier(jpn) as courier:
        for party in partners:
            courier.announce_keys(party)
    return old


def signed_by(key: Ed25519PrivateKey, token: dict, **changes: Any) -> dict:
    """``token`` (signed) with ``changes`` to its body, signed again by ``key``."""
    body = dict(token["consent"], **changes)
    return {"consent": body, "key_id": key_id(public_raw(key)),
            "signature": sign_payload(key, body)}


def test_a_consent_token_signed_by_a_retired_key_is_refused(serving: Trio) -> None:
    """Regression: every key JPN had verified its consent tokens, retired ones included.
    Whoever held JPN's retired private key (an old backup) and NZL's node could forge
    JPN's consent and pass JPN's objects on to AUS, which recorded a consent JPN never
    gave. Now a token signed by a retired key is refused, with the reason, by the
    recipient and by the holder, and the holder uses none it holds for release."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    other = shared(jpn, nzl, "another JPN object")
    request_id = ask(nzl, jpn, obj)
    approve(jpn, nzl, request_id)
    genuine = token_of(nzl, request_id)
    old = rotated(jpn, "NZL", "AUS")
    old_id = key_id(public_raw(old))
    assert post(jpn, aus, held_at(nzl, obj["id"])[:-1]) == {}  # JPN's marking, from JPN
    markings = {k: v for k, v in genuine["consent"]["objects"].items()
                if k.startswith("marking-definition--")}
    forged = signed_by(old, genuine, id=str(uuid.uuid4()), objects={other["id"]: [], **markings},
                       hashes={})
    failure = post(nzl, aus, held_at(nzl, other["id"]), [forged])[other["id"]]
    assert f"is signed by JPN's retired key {old_id}" in failure, failure
    assert other["id"] not in visible_ids(aus)
    # the genuine token JPN signed before it rotated vouches for nothing more either: NZL
    # releases nothing on it, and AUS refuses it
    assert [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == obj["id"]]
    assert nzl.federation.held_consents().signed() == []
    assert push(nzl, "AUS") == 0
    failure = post(nzl, aus, held_at(nzl, obj["id"]), [genuine])[obj["id"]]
    assert "retired key" in failure, failure
    assert obj["id"] not in visible_ids(aus)
    # the holder does not take a token signed by the retired key: not from a notice JPN
    # queued before it rotated (acknowledged, so it holds back no notice after it; the
    # token is not used, the refusal audited) ...
    asked = nzl.consents.request(nzl.people.as_person("analyst"), other["id"],
                                 recipient="AUS", purpose="x")
    stale = signed_by(old, forged, request=asked.request_id)
    _, notice = jpn.controls._notice("consent", "NZL", {
        "object_id": other["id"], "request": asked.request_id, "token": stale})
    assert nzl.controls.receive("JPN", notice)["receipt"]["notice"] == notice["notice"]["id"]
    record = nzl.store.consent(asked.request_id)
    assert record is not None and record.status == "pending" and record.token is None
    assert [e for e in nzl.store.find_audit(AuditFilter(kinds=("refuse",)))
            if f"signed by JPN's retired key {old_id}" in e.body
            and asked.request_id in e.body]
    # ... nor under a key JPN never had
    stranger = signed_by(nzl.signing_key, stale)
    _, notice = jpn.controls._notice("consent", "NZL", {
        "object_id": other["id"], "request": asked.request_id, "token": stranger})
    with pytest.raises(ConsentError, match="not signed by a key of JPN"):
        nzl.controls.receive("JPN", notice)
    assert not [r for _, r in nzl.store.pending("AUS", 100) if r.object_id == other["id"]]


def test_a_rotation_re_issues_the_consents_given_and_the_holder_releases_on_them(
        serving: Trio) -> None:
    """JPN rotates its key: its consent to NZL is signed again with the new key (the same
    request, id, scope and expiry) and sent to NZL, which takes it in place of the one it
    holds (audited on both sides). Nothing goes to AUS on the old token meanwhile; then
    NZL passes the object on with the new token, over real served nodes."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    request_id = ask(nzl, jpn, obj)
    approve(jpn, nzl, request_id)
    before = token_of(nzl, request_id)
    rotated(jpn, "NZL", "AUS")
    new_id = jpn.identity.key_id
    assert push(nzl, "AUS") == 0 and obj["id"] not in visible_ids(aus)
    assert deliver(jpn, "NZL") == 1  # the consent re-issued
    after = token_of(nzl, request_id)
    assert after["key_id"] == new_id != before["key_id"]
    assert after["consent"] == before["consent"]
    record = nzl.store.consent(request_id)
    assert record is not None and record.status == "approved"
    for node, direction in ((jpn, "out"), (nzl, "in")):
        (event,) = [json.loads(e.body) for e in node.store.find_audit(
            AuditFilter(kinds=("consent",))) if '"reissued"' in e.body]
        assert (event["direction"], event["reissued"], event["key_id"], event["token"]) == (
            direction, before["key_id"], new_id, before["consent"]["id"])
    assert nzl.federation.consents_for("AUS", nzl.store.held([obj["id"]])) == [after]
    assert push(nzl, "AUS") >= 1
    assert obj["id"] in visible_ids(aus)
    assert not [f for f in aus.store.refusals() if f[1] == obj["id"]]
    # what went is signed by JPN's retired key (and so is its marking-definition, which
    # AUS did not hold): the re-issued token names their bodies' hashes
    for body in held_at(aus, obj["id"]):
        assert signatures(body)[0]["thumbprint"] == before["key_id"]
        assert after["consent"]["hashes"][body["id"]] == {
            object_version(body): canonical_body(body)[1]}
    # re-issued once: a second rotation's re-issue signs it again, nothing else does
    assert jpn.consents.reissue() == 0
    # a token not that consent (another scope) does not replace it
    _, notice = jpn.controls._notice("consent", "NZL", {
        "object_id": obj["id"], "request": request_id,
        "token": signed_by(jpn.signing_key, after, purpose="another purpose")})
    with pytest.raises(ConsentError, match="approved already, and this token is not that "
                       "consent signed again"):
        nzl.controls.receive("JPN", notice)
    assert token_of(nzl, request_id) == after


def test_consents_are_re_issued_when_the_node_serves_if_the_rotation_did_not(
        serving: Trio) -> None:
    """The rotation is recorded, then re-issuing fails (here the notices table refuses,
    as a process dying between the two would leave it): the courier re-issues them as
    ``serve`` starts."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    request_id = ask(nzl, jpn, obj)
    approve(jpn, nzl, request_id)
    with refusing(jpn.store, "notices"):
        rotated(jpn, "NZL", "AUS")
    assert jpn.store.pending_notices("NZL", 10) == []
    courier = Courier(jpn, interval=3600)
    courier.start()  # what `serve` does first
    courier.stop()
    deliver(jpn, "NZL")
    assert token_of(nzl, request_id)["key_id"] == jpn.identity.key_id
    assert push(nzl, "AUS") >= 1 and obj["id"] in visible_ids(aus)


def test_a_version_signed_by_a_retired_key_is_taken_from_a_holder_only_as_consented(
        serving: Trio) -> None:
    """Regression: whoever held JPN's retired key and NZL's node could forge a version
    "by JPN" (any body, under the id and version of one JPN consented to) and pass it on
    to AUS with JPN's genuine token. A relayed version signed by a retired key is now
    taken only when a token sent with it, signed by JPN's current key, names its body
    hash; a token naming no hashes (an older intelpact's) vouches for none, though it
    still lets a version signed by the current key go."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    request_id = ask(nzl, jpn, obj)
    approve(jpn, nzl, request_id)
    old = rotated(jpn, "NZL", "AUS")
    old_id = key_id(public_raw(old))
    deliver(jpn, "NZL")  # the consent re-issued under JPN's new key
    token = token_of(nzl, request_id)
    *markings, genuine = held_at(nzl, obj["id"])
    # a token naming no hashes (an older intelpact's), signed by JPN's current key,
    # vouches for no version signed by the retired key, nor for a marking-definition
    # signed by it that AUS does not hold
    unhashed = {k: v for k, v in token["consent"].items() if k != "hashes"}
    older = {"consent": unhashed, "key_id": jpn.identity.key_id,
             "signature": sign_payload(jpn.signing_key, unhashed)}
    failure = post(nzl, aus, markings, [older])[markings[0]["id"]]
    assert f"signed by JPN's retired key {old_id} and relayed by NZL" in failure, failure
    assert "no consent token sent with it names this version's body hash" in failure, failure
    # a forged version under the id and version JPN consented to, with JPN's token (which
    # vouches for the genuine marking-definition sent with it)
    forged = sign_object(dict(genuine, name="forged by whoever holds the retired key"), old,
                         "JPN")
    assert (forged["id"], forged["modified"]) == (genuine["id"], genuine["modified"])
    failures = post(nzl, aus, [*markings, forged], [token])
    assert list(failures) == [obj["id"]], failures
    assert f"signed by JPN's retired key {old_id} and relayed by NZL" in failures[obj["id"]]
    assert "names another body for this version" in failures[obj["id"]]
    assert obj["id"] not in visible_ids(aus)
    failure = post(nzl, aus, [genuine], [older])[obj["id"]]
    assert "no consent token sent with it names this version's body hash" in failure, failure
    # the genuine version, with the token JPN re-issued, is taken
    assert post(nzl, aus, [*markings, genuine], [token]) == {}
    assert obj["id"] in visible_ids(aus)
    # a version JPN signed with its current key goes with a token naming no hashes
    fresh = shared(jpn, nzl, "published after the rotation")
    scope = dict(unhashed, id=str(uuid.uuid4()), objects={fresh["id"]: []})
    plain = {"consent": scope, "key_id": jpn.identity.key_id,
             "signature": sign_payload(jpn.signing_key, scope)}
    assert post(nzl, aus, held_at(nzl, fresh["id"])[-1:], [plain]) == {}
    assert fresh["id"] in visible_ids(aus)


def test_a_holder_cannot_add_unsigned_content_to_an_originators_object_it_relays(
        serving: Trio) -> None:
    """crypto/signing.py: a signature covers the object "with the ``value`` of that
    signature removed", and ignores the entries added after it. So a holder relaying
    JPN's object (with JPN's consent) could append a signatures entry carrying anything
    it liked; AUS verified JPN's signature, stored the altered body as JPN's version and
    served it (and then refused JPN's genuine body for that version as "a different
    object"). The consent token names the body hash JPN consented to, but it is checked
    only for versions signed by a retired key. Now the originator's signature must be
    the last entry: anything after it, even the holder's own valid signature, is
    refused, and the genuine body is taken."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    request_id = ask(nzl, jpn, obj)
    approve(jpn, nzl, request_id)
    *markings, genuine = held_at(nzl, obj["id"])
    token = token_of(nzl, request_id)
    noted = copy.deepcopy(genuine)
    noted["extensions"][SIGNATURES_EXTENSION_ID]["signatures"].append({
        "algorithm": "Ed25519", "hash_algorithm": "none", "thumbprint": "x", "signer": "JPN",
        "value": "AAAA", "x_note": "JPN withdraws this assessment; act on NZL's instead"})
    countersigned = sign_object(genuine, nzl.signing_key, "NZL")
    for altered, problem in ((noted, "signed with key 'x', which is not a pinned key of JPN"),
                             (countersigned, "a signature entry follows JPN's, which does "
                              "not cover it")):
        failures = post(nzl, aus, [*markings, altered], [token])
        assert list(failures) == [obj["id"]], failures
        assert problem in failures[obj["id"]]
    stored = aus.store.held([obj["id"]])
    assert not any("withdraws" in row.body for row in stored), \
        "AUS keeps and serves, as JPN's signed object, content JPN never signed"
    assert post(nzl, aus, [*markings, genuine], [token]) == {}
    assert obj["id"] in visible_ids(aus)


def test_an_approval_queued_before_a_rotation_holds_back_nothing_and_is_re_issued(
        serving: Trio) -> None:
    """JPN approves, then rotates before the approval is delivered: the queued notice
    carries a token signed by the retired key. NZL acknowledges it without using it (a
    refusal would hold back every notice after it, a recall included, until given up),
    then takes the one JPN re-issued, and releases on it."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    request_id = ask(nzl, jpn, obj)
    jpn.consents.approve(jpn.people.as_person("officer"), request_id)
    rotated(jpn, "NZL", "AUS")
    assert len(jpn.store.pending_notices("NZL", 10)) == 2  # the approval, re-issued
    assert deliver(jpn, "NZL") == 2
    assert token_of(nzl, request_id)["key_id"] == jpn.identity.key_id
    assert push(nzl, "AUS") >= 1 and obj["id"] in visible_ids(aus)


def test_a_holder_asks_to_pass_on_only_what_went_to_it_and_was_not_recalled(
        serving: Trio) -> None:
    """Regression (found in review): JPN took a consent request from NZL for any version
    of an object that went to NZL once, also after JPN recalled it from NZL (a holder that
    kept a copy could still ask, and an officer approve), and for versions that never went
    to NZL. Both are refused now, with the reason, and nothing is kept."""
    jpn, nzl, _ = serving
    obj = shared(jpn, nzl)
    (row,) = jpn.store.held([obj["id"]])
    later = dict(obj, name="JPN only", modified="2026-11-03T00:00:00.000Z")
    status = jpn.publisher.publish(  # a version that never went to NZL
        jpn.people.as_person("officer").person, jpn.default_collection().collection_id,
        [later], marking=MarkingRequest("秘", ("AUS",)))
    assert status.body["failure_count"] == 0, status.body

    assert refused_request(jpn, nzl, obj["id"], [row.version, later["modified"]]) == (
        f"the consent request names 1 version(s) of {obj['id']} that did not go to NZL: "
        f"{later['modified']}")
    jpn.controls.recall(jpn.people.as_person("officer"), obj["id"], reason="source at risk")
    assert refused_request(jpn, nzl, obj["id"], [row.version]) == (
        f"JPN recalled {obj['id']} from NZL: nothing of it is passed on")


def test_a_stix_object_signed_by_the_originator_is_no_consent_token(serving: Trio) -> None:
    """Regression: the node's key signs every object its people publish, over the RFC 8785
    form of the object (its signature value left out), and protocol messages over the
    RFC 8785 form of their body, with nothing to tell the two apart. A JPN analyst (no
    officer: none may consent) published a custom object whose properties are those of a
    consent token; its signed form, read back, verified as a token JPN signed, and NZL
    passed JPN's object on to AUS on it with no consent given."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    other = shared(jpn, nzl, "never consented to")
    approve(jpn, nzl, ask(nzl, jpn, obj))
    genuine = next(token_of(nzl, r.request_id)["consent"] for r in nzl.store.consents()
                   if r.token is not None)
    now = normalise_timestamp(utc_now().isoformat())
    crafted = {**genuine, "type": "x-memo", "id": f"x-memo--{uuid.uuid4()}",
               "spec_version": "2.1", "created": now, "modified": now,
               "objects": {other["id"]: [object_version(other)]}, "hashes": {}}
    analyst = jpn.people.as_person("analyst").person
    status = jpn.publisher.publish(analyst, jpn.default_collection().collection_id,
                                   [crafted], marking=MarkingRequest("秘", (), ()))
    assert status.body["failure_count"] == 0, status.body
    (stored,) = jpn.get(jpn.people.as_person("analyst"), crafted["id"])
    entry = signatures(stored)[-1]
    view = copy.deepcopy(stored)
    del signatures(view)[-1]["value"]
    token = {"consent": view, "key_id": entry["thumbprint"], "signature": entry["value"]}
    refused = post(nzl, aus, held_at(nzl, other["id"]), [token])
    assert "not signed by a key of JPN" in refused.get(other["id"], "(accepted)")
    assert other["id"] not in visible_ids(aus)


def nz_report_over(jpn: Node, nzl: Node, obj: dict) -> dict:
    """NZL's own report over JPN's ``obj`` (held at NZL), marked with JPN's marking where
    it names it, REL TO JPN, AUS, and pushed to JPN (to which it goes as NZL's own)."""
    (jpn_marking,) = held_at(nzl, obj["id"])[-1]["object_marking_refs"]
    marked = derived_report(obj["id"], granular_markings=[
        {"marking_ref": jpn_marking, "selectors": ["object_refs"]}])
    body = nzl.publisher.publish(nzl.people.as_person("officer").person,
                                 nzl.default_collection().collection_id, [marked],
                                 marking=MarkingRequest("SECRET", ("JPN", "AUS"))).body
    assert body["failure_count"] == 0, body
    push(nzl, "JPN")
    assert marked["id"] in visible_ids(jpn)
    return marked


def withdraw(jpn: Node, nzl: Node, obj: dict, how: str) -> None:
    """JPN recalls ``obj`` from NZL, or reclassifies it so that NZL may no longer hold it
    (REL TO AUS only) or AUS may not receive it (REL TO NZL only); NZL applies it."""
    officer = jpn.people.as_person("officer")
    if how == "recall":
        jpn.controls.recall(officer, obj["id"], parties=["NZL"], reason="source at risk")
    else:
        rel = {"beyond NZL": ("AUS",), "beyond AUS": ("NZL",)}[how]
        jpn.controls.reclassify(officer, obj["id"], MarkingRequest("秘", rel),
                                collection_id=jpn.default_collection().collection_id,
                                reason="a second source")
    assert deliver(jpn, "NZL") == 1
    push(jpn, "NZL")
    assert (obj["id"] in visible_ids(nzl)) == (how == "beyond AUS")


@pytest.mark.parametrize(("how", "reason"), [
    ("recall", "JPN recalled {obj} from NZL at .*: {report}, which NZL asks to pass on, "
     "derives from it"),
    ("beyond NZL", "{obj}, which {report} derives from, may no longer go to NZL"),
    ("beyond AUS", "even with consent, AUS may not receive {obj} \\(.*\\), which {report} "
     "derives from")])
def test_a_source_party_refuses_to_approve_a_release_of_what_it_withdrew_from_the_holder(
        serving: Trio, how: str, reason: str) -> None:
    """Regression (found in review): JPN approved NZL's request to pass on NZL's report
    derived from a JPN object after JPN had recalled that object from NZL (or
    reclassified it beyond NZL's release, or AUS's): it checked recalls of the report
    only, which is NZL's and never recalled by JPN. Refused now, saying why; the request
    stays pending. A request made after the recall is refused as it comes."""
    jpn, nzl, _ = serving
    obj = shared(jpn, nzl)
    report = nz_report_over(jpn, nzl, obj)
    request_id = ask(nzl, jpn, report)
    withdraw(jpn, nzl, obj, how)
    with pytest.raises(ConsentError, match=reason.format(obj=obj["id"],
                                                         report=report["id"])):
        jpn.consents.approve(jpn.people.as_person("officer"), request_id)
    assert [r.status for r in jpn.consents.requests()] == ["pending"]
    # asked after it (NZL was told), it is refused as it comes, as for JPN's own object;
    # what AUS may receive is JPN's to say when it decides
    again = nzl.consents.request(nzl.people.as_person("officer"), report["id"],
                                 recipient="AUS", purpose="joint")
    if how == "beyond AUS":
        assert deliver(nzl, "JPN") == 1
    else:
        with pytest.raises(Refused, match=reason.format(obj=obj["id"], report=report["id"])):
            deliver(nzl, "JPN")
    assert (jpn.store.consent(again.request_id) is None) == (how != "beyond AUS")



def passed_on_with_consent(jpn: Node, nzl: Node) -> tuple[dict, dict, dict]:
    """Two JPN objects at NZL and NZL's report over the first, the report and the second
    approved by JPN to go on to AUS: (the source, JPN's other object, the report)."""
    obj = shared(jpn, nzl)
    plain = shared(jpn, nzl, "JPN's own, passed on with consent")
    report = nz_report_over(jpn, nzl, obj)
    for item in (report, plain):
        approve(jpn, nzl, ask(nzl, jpn, item))
    return obj, plain, report


@pytest.mark.parametrize("how", ["recall", "beyond NZL", "beyond AUS"])
@pytest.mark.parametrize("release", ["push", "pull"])
def test_a_consent_to_pass_on_a_holder_s_own_object_covers_it_no_more_once_its_source_is_withdrawn(
        serving: Trio, how: str, release: str) -> None:
    """Regression (found in review): a consent JPN gave NZL to pass on NZL's report
    derived from a JPN object still released the report after JPN recalled that object
    from NZL (or reclassified it beyond NZL's, or AUS's, release). JPN's own object under
    such a consent goes no more (recalled, NZL holds nothing of it; reclassified, its
    marking stops it), and now neither does what NZL derived from it: NZL's release
    decision no longer counts JPN's consent for it, saying why."""
    jpn, nzl, aus = serving
    obj, plain, report = passed_on_with_consent(jpn, nzl)
    withdraw(jpn, nzl, obj, how)
    if how != "beyond AUS":  # the other JPN object goes as before
        withdraw(jpn, nzl, plain, how)
    (push if release == "push" else lambda n, p: pull(aus, "NZL"))(nzl, "AUS")
    assert report["id"] not in visible_ids(aus)
    assert obj["id"] not in visible_ids(aus)
    assert (plain["id"] in visible_ids(aus)) == (how == "beyond AUS")
    labels = nzl.store.labels()
    (row,) = [r for r in nzl.store.held([report["id"]])]
    decision = nzl.federation._may_release(labels[row.banner_id], "AUS", row,
                                           nzl.federation.held_consents())
    assert not decision.allowed and obj["id"] in decision.reason, decision


@pytest.mark.parametrize("release", ["push", "pull"])
def test_a_recipient_refuses_a_holder_s_own_object_derived_from_what_was_recalled_from_it(
        serving: Trio, release: str) -> None:
    """Regression (found in review): once JPN had consented to NZL passing on NZL's report
    derived from a JPN object, recalling that object from AUS did not stop the report
    reaching AUS on the token (NZL is not told of a recall from AUS). AUS, which keeps
    the recall, refuses it now, saying why, as it refuses JPN's object itself."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    report = nz_report_over(jpn, nzl, obj)
    request_id = ask(nzl, jpn, report)
    approve(jpn, nzl, request_id)
    jpn.controls.recall(jpn.people.as_person("officer"), obj["id"], parties=["AUS"],
                        reason="source at risk")
    assert deliver(jpn, "AUS") == 1
    push(nzl, "AUS") if release == "push" else pull(aus, "NZL")
    assert report["id"] not in visible_ids(aus)
    refused = {f[2] for f in aus.store.refusals() if f[1] == report["id"]}
    assert refused and all(f"JPN withdrew {obj['id']} from AUS (recalled" in why
                           for why in refused), refused


def test_the_source_party_s_record_says_which_objects_passed_on_are_the_holder_s(
        serving: Trio) -> None:
    """Regression (found in review): JPN's `disseminations` listed NZL's own report, passed
    on to AUS with JPN's consent for the JPN information it holds, as it lists JPN's
    objects ("via NZL with consent"), and counted it with them ("3 to AUS via NZL"):
    nothing said the report is NZL's. Each row and the count say whose it is now."""
    jpn, nzl, _ = serving
    obj, plain, report = passed_on_with_consent(jpn, nzl)
    assert push(nzl, "AUS") >= 2
    assert deliver(nzl, "JPN") == 1  # the onward release: JPN's objects and NZL's report
    shown = CliRunner(env={"COLUMNS": "400"}).invoke(
        main, ["disseminations", str(jpn.config.dir), "--party", "AUS"])
    assert shown.exit_code == 0, shown.output
    (mine,) = [line for line in shown.output.splitlines() if plain["id"] in line]
    (theirs,) = [line for line in shown.output.splitlines() if report["id"] in line]
    assert "via NZL with consent" in mine and "NZL's own" not in mine
    assert "NZL's own, holding our information: via NZL with consent" in theirs
    assert ("Passed on by holders with this node's consent: 2 of ours to AUS via NZL; "
            "1 of NZL's own holding our information to AUS via NZL") in shown.output


def test_a_third_party_s_object_holding_a_fourth_party_s_portion_is_asked_of_no_one(
        tmp_path: Path) -> None:
    """A JPN object with a FJI portion, held at NZL, goes to TON only with the consent of
    JPN and of FJI, and NZL can ask only JPN (its originator). Regression (found in
    review): NZL's request was sent all the same, for JPN's officer to find that even
    with JPN's consent TON may not receive it, and ``--of FJI`` answered "ask JPN".
    Refused at NZL now, saying whose consent it needs and that FJI cannot be asked
    here; what JPN's consent alone frees (a version without FJI's portion) is asked for
    alone."""
    nodes = {p: make_node(tmp_path / p.lower(), p, agreement="pacific-maritime.toml")
             for p in ("JPN", "NZL", "FJI", "TON")}
    try:
        for party, node in nodes.items():
            node.people.add("officer", party=party, clearance={"JPN": "秘"}.get(
                party, "RESTRICTED"), communities=["MARITIME"],
                roles=["analyst", "publisher", "security-officer"], password="x" * 16)
        jpn, nzl, fji = nodes["JPN"], nodes["NZL"], nodes["FJI"]
        for a, b in (("FJI", "JPN"), ("JPN", "NZL"), ("FJI", "NZL")):
            pair(nodes[a], nodes[b])
        with ExitStack() as stack:
            for node in nodes.values():
                stack.enter_context(serving_federation(node))

            def put(node: Node, items: list[dict], level: str, rel: tuple[str, ...]) -> None:
                who = node.people.as_person("officer").person
                body = node.publisher.publish(who, node.default_collection().collection_id,
                                              items, marking=MarkingRequest(
                                                  level, rel, (), ("MARITIME",))).body
                assert body["failure_count"] == 0, body["failures"]

            sighted = indicator("FJI's sighting")
            put(fji, [sighted], "UNCLASSIFIED", ("JPN", "NZL", "TON"))
            assert push(fji, "JPN") >= 1
            (fji_marking,) = json.loads(jpn.store.held([sighted["id"]])[0].body)[
                "object_marking_refs"]
            portion = [{"marking_ref": fji_marking, "selectors": ["object_refs"]}]
            whole = derived_report(sighted["id"], granular_markings=portion)
            mixed = derived_report(sighted["id"], granular_markings=portion)
            later = dict(derived_report(stix_id("indicator")), id=mixed["id"],
                         modified="2026-11-02T00:00:00.000Z")
            for item in (whole, mixed, later):
                put(jpn, [item], "指定なし", ("NZL", "FJI", "TON"))
            assert push(jpn, "FJI") >= 1
            for item in (whole, mixed):  # JPN passes FJI's information to NZL with consent
                asked = jpn.consents.request(jpn.people.as_person("officer"), item["id"],
                                             recipient="NZL", purpose="x", of="FJI")
                assert deliver(jpn, "FJI") == 1
                fji.consents.approve(fji.people.as_person("officer"), asked.request_id)
                assert deliver(fji, "JPN") == 1
            assert push(jpn, "NZL") >= 1
            officer = nzl.people.as_person("officer")
            assert len(nzl.store.held([whole["id"]])) == 1
            assert len(nzl.store.held([mixed["id"]])) == 2
            with pytest.raises(ConsentError, match=(
                    f"{whole['id']} is JPN's and holds FJI's information too: only its "
                    "originator, JPN, is asked here")):
                nzl.consents.request(officer, whole["id"], recipient="TON", purpose="x",
                                     of="FJI")
            with pytest.raises(ConsentError, match=(
                    f"every version of {whole['id']} held here holds FJI's information too: "
                    "TON receives it only with FJI's consent as well, and only its "
                    "originator, JPN, is asked here")):
                nzl.consents.request(officer, whole["id"], recipient="TON", purpose="x")
            # the later version holds none of FJI's: JPN's consent frees it, and it alone
            record = nzl.consents.request(officer, mixed["id"], recipient="TON", purpose="x")
            assert record.versions == (normalise_timestamp(later["modified"]),)
    finally:
        for node in nodes.values():
            node.close()


def test_a_source_party_s_newer_version_that_never_went_to_the_holder_does_not_stop_its_consent(
        serving: Trio) -> None:
    """What JPN's consent frees of a JPN object NZL's report derives from is what went to
    NZL: a newer version JPN published for itself alone (no reclassification: the
    versions NZL holds keep their marking) neither withdraws it nor narrows it. The
    approval reads the versions that went to NZL, not JPN's latest."""
    jpn, nzl, aus = serving
    obj = shared(jpn, nzl)
    report = nz_report_over(jpn, nzl, obj)
    request_id = ask(nzl, jpn, report)
    newer = dict(obj, name="JPN only", modified="2026-11-03T00:00:00.000Z")
    status = jpn.publisher.publish(jpn.people.as_person("officer").person,
                                   jpn.default_collection().collection_id, [newer],
                                   marking=MarkingRequest("秘", ()))
    assert status.body["failure_count"] == 0, status.body
    approve(jpn, nzl, request_id)
    assert push(nzl, "AUS") >= 1
    assert report["id"] in visible_ids(aus)
