"""A partner, a liaison or a holder probing the originator's controls, consent and
compromise reports (found in review: each docstring says what the node did before its
fix)."""

from __future__ import annotations

import json
import uuid

import pytest
from test_consent import Trio, ask, deliver, shared, trio  # noqa: F401  (fixture)
from test_federation import publish, push

from intelpact.services.compromise import CompromiseError
from intelpact.services.consent import ConsentError
from intelpact.services.controls import ControlError
from intelpact.services.courier import Courier
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import AuditFilter, timestamp, utc_now

from helpers import serving_federation


def test_a_third_party_liaison_at_the_holder_reads_nothing_without_consent(
        trio: Trio) -> None:  # noqa: F811
    """An AUS liaison officer at NZL's node is AUS: serving them a JPN object is
    releasing it to a third party, which needs JPN's consent as a push to AUS does."""
    jpn, nzl, aus = trio
    nzl.people.add("bruce", party="AUS", clearance="SECRET", roles=["analyst"])
    with serving_federation(jpn), serving_federation(nzl):
        obj = shared(jpn, nzl)
    # NZL may not push it to AUS without consent ...
    row = nzl.store.held([obj["id"]])[0]
    labels = nzl.store.labels()
    assert not nzl.federation.may_release_now(labels[row.banner_id], "AUS", row,
                                              nzl.federation.held_consents())
    # ... but its TAXII/get path serves it to an AUS national all the same
    served = nzl.get(nzl.people.as_person("bruce"), obj["id"])
    assert served == [], "an AUS liaison at NZL read JPN's object with no JPN consent"


def test_a_liaison_of_the_holder_at_the_originator_gives_no_consent(
        trio: Trio) -> None:  # noqa: F811
    """Consent is the originator's: "A security officer of the originator decides". A
    NZL liaison officer at JPN's node who holds the security-officer role (roles are not
    tied to nationality) approves NZL's own request to pass JPN's object to AUS, and JPN's
    node signs the token. Publishing is refused to a person of another party ("a person
    publishes only what their own party originates"); consenting for the originator must
    be too."""
    jpn, nzl, aus = trio
    jpn.people.add("kiri", party="NZL", clearance="SECRET",
                   roles=["analyst", "security-officer"])
    with serving_federation(jpn), serving_federation(nzl):
        obj = shared(jpn, nzl)
        request_id = ask(nzl, jpn, obj)
        with pytest.raises(ConsentError, match="only JPN's people decide on consent"):
            jpn.consents.approve(jpn.people.as_person("kiri"), request_id)
    record = jpn.store.consent(request_id)
    assert record is not None and record.status == "pending"


def test_a_liaison_at_the_originator_does_not_recall_or_reclassify(
        jpn_nzl: list[Node]) -> None:
    """Only the originator recalls or reclassifies. A NZL liaison holding the
    security-officer role at JPN's node recalls JPN's object from NZL -- NZL's own
    national decides to withdraw JPN's information from NZL, and JPN's node signs it."""
    jpn, nzl = jpn_nzl
    jpn.people.add("kiri", party="NZL", clearance="SECRET",
                   roles=["analyst", "security-officer"])
    obj = publish(jpn, "japanese", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    kiri = jpn.people.as_person("kiri")
    with pytest.raises(ControlError, match="only JPN's people recall for JPN's node"):
        jpn.controls.recall(kiri, obj["id"], reason="mine")
    assert jpn.controls.recalls() == []
    with pytest.raises(ControlError, match="only JPN's people reclassify"):
        jpn.controls.reclassify(kiri, obj["id"], MarkingRequest("秘", ()),
                                collection_id=jpn.default_collection().collection_id,
                                reason="mine")
    assert len(jpn.store.held([obj["id"]])) == 1  # no new version
    denied = jpn.store.find_audit(AuditFilter(kinds=("deny",)))
    assert [json.loads(e.body)["via"] for e in denied] == ["recall", "reclassify"]


def test_a_liaison_at_a_node_speaks_in_none_of_its_compromise_reports(
        jpn_nzl: list[Node]) -> None:
    """A compromise report, its acknowledgement and its closure are signed by the node.
    A JPN liaison at NZL's node, holding the security-officer role, filed one for NZL
    (about JPN's own object: NZL's node then told JPN, in NZL's name, that NZL lost it);
    a NZL liaison at JPN's node acknowledged NZL's report for JPN."""
    jpn, nzl = jpn_nzl
    nzl.people.add("taro", party="JPN", clearance="極秘", roles=["analyst", "security-officer"])
    jpn.people.add("kiri", party="NZL", clearance="SECRET", roles=["analyst", "security-officer"])
    obj = publish(jpn, "japanese", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        with pytest.raises(CompromiseError, match="only NZL's people report a compromise"):
            nzl.compromise.file([obj["id"]], what="lost", discovered=timestamp(utc_now()),
                                officer=nzl.people.as_person("taro"))
        (filed,) = nzl.compromise.file([obj["id"]], what="lost",
                                       discovered=timestamp(utc_now()),
                                       officer=nzl.people.as_person("officer"))
        with Courier(nzl) as courier:
            assert courier.deliver_compromise("JPN") == 1
    with pytest.raises(CompromiseError, match="only JPN's people acknowledge"):
        jpn.compromise.acknowledge(filed.report_id, officer=jpn.people.as_person("kiri"))
    got = jpn.store.compromise_report(filed.report_id)
    assert got is not None and got.acknowledged is None



def test_a_consent_asked_before_a_recall_is_not_given_after_it(trio: Trio) -> None:  # noqa: F811
    """JPN recalls its object from NZL while a consent request NZL made just before is
    still pending. A request made after the recall is refused ("a holder that kept a
    copy cannot ask to pass it on", docs/controls.md); approving the earlier one was
    not: JPN signed a valid token letting NZL pass the recalled object to AUS, and an
    NZL that kept its copy relayed it with that token to AUS, which took it. Nor is
    consent given for a recipient the object was recalled from."""
    jpn, nzl, aus = trio
    officer = jpn.people.as_person("officer")
    with serving_federation(jpn), serving_federation(nzl), serving_federation(aus):
        obj, other = shared(jpn, nzl), shared(jpn, nzl, "another")
        asked = ask(nzl, jpn, obj), ask(nzl, jpn, other)
        assert jpn.controls.recall(officer, obj["id"], parties=["NZL"],
                                   reason="source at risk") == ["NZL"]
        with pytest.raises(ConsentError, match="recalled .* from NZL .*: nothing of it goes "
                           "on from NZL"):
            jpn.consents.approve(officer, asked[0])
        assert jpn.controls.recall(officer, other["id"], parties=["AUS"],
                                   reason="not for AUS") == ["AUS"]
        with pytest.raises(ConsentError, match="nothing of it goes to AUS"):
            jpn.consents.approve(officer, asked[1])
    assert not [n for n in jpn.store.notices() if n.kind == "consent"]
    assert {jpn.store.consent(r).status for r in asked} == {"pending"}


def test_a_notice_naming_no_stix_id_is_refused_and_nothing_is_kept(jpn_nzl: list[Node]) -> None:
    """A notice's own id must be a UUID ("no id a megabyte long": it is kept and recorded
    whole in the events a partner audit answers with). The object it names is kept and
    recorded whole too -- in the notice, in the recall/refuse/destroy events and in the
    signed destruction receipt sent back -- yet any text is taken: one signed request
    makes the holder keep and log about three copies of a megabyte it was sent."""
    jpn, nzl = jpn_nzl
    huge = "indicator--" + "a" * 1_000_000
    for oid in (huge, "not a stix id at all"):
        _, signed = jpn.controls._notice("recall", "NZL", {"object_id": oid,
                                                           "reason": "r"})
        with pytest.raises(ControlError, match="is not a STIX identifier"):
            nzl.controls.receive("JPN", signed)
    assert not [n for n in nzl.store.notices() if n.kind in ("recall", "destroyed")]


def test_a_destruction_receipt_answering_no_notice_id_is_refused(jpn_nzl: list[Node]) -> None:
    """docs/controls.md: "A `destroyed` notice whose `in_reply_to` is neither a notice id
    nor null ... is refused." Any string is taken and kept."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "japanese", "極秘", ("NZL",))
    _, signed = nzl.controls._notice("destroyed", "JPN", {
        "object_id": obj["id"], "in_reply_to": "not a notice id", "destroyed": [],
        "destroyed_earlier": []})
    with pytest.raises(ControlError, match="in_reply_to"):
        jpn.controls.receive("NZL", signed)



def test_a_compromise_step_about_no_report_is_refused_and_audited(
        jpn_nzl: list[Node]) -> None:
    """A partner's acknowledgement or closure naming a report this node does not have
    was refused (404) but recorded nowhere ("refusals are ... audited (`refuse`),
    whatever shape the fields come in", docs/audit.md). And the report was looked up
    before the signature was checked, so an unsigned step was answered by whether the
    id exists (404, or 403 for its signature)."""
    jpn, nzl = jpn_nzl
    oid = publish(jpn, "japanese", "秘", ("NZL",))["id"]
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        (filed,) = nzl.compromise.file([oid], what="lost", discovered=timestamp(utc_now()),
                                       officer=nzl.people.as_person("officer"))
        with Courier(nzl) as courier:
            assert courier.deliver_compromise("JPN") == 1

    def close(report_id: str, *, signed: bool) -> CompromiseError:
        message = {"type": "close", "report_id": report_id, "from": "NZL", "to": "JPN",
                   "at": timestamp(utc_now()), "note": "probe", "by": {"role": "operator"}}
        if signed:
            message = nzl.compromise._signed(message)
        with pytest.raises(CompromiseError) as raised:
            jpn.compromise.receive("NZL", {"type": "close", "message": message})
        return raised.value

    nowhere = str(uuid.uuid4())
    unsigned = [close(r, signed=False) for r in (filed.report_id, nowhere)]
    assert [(e.status, e.message) for e in unsigned] == [(403, unsigned[0].message)] * 2
    assert close(nowhere, signed=True).status == 404
    refused = jpn.store.find_audit(AuditFilter(kinds=("refuse",), party="NZL"))
    assert len(refused) == 3 and json.loads(refused[-1].body)["report"] == nowhere
    assert jpn.compromise.get(filed.report_id).closed is None


def test_a_recalled_body_is_gone_from_the_holder_s_database_files(
        jpn_nzl: list[Node]) -> None:
    """A recall destroys the holder's copy: "the body is replaced by a tombstone" and
    the destruction is confirmed to the originator with the hash of what was destroyed.
    On SQLite the old body stays readable, in clear, in the write-ahead log of the
    running node (no `secure_delete`, no truncating checkpoint after a purge) until
    later writes happen to overwrite those frames: anyone who copies the node's files
    meanwhile (a disk image, a file-level backup) still reads the destroyed text. (It
    is gone once the node closes its last connection.)"""
    jpn, nzl = jpn_nzl
    if not nzl.config.database.endswith(".db"):
        pytest.skip("SQLite files only")
    marker = "QUOKKA-7731-RECALL-MARKER"
    obj = publish(jpn, marker, "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        assert nzl.get(nzl.people.as_person("officer"), obj["id"])
        jpn.controls.recall(jpn.people.as_person("officer"), obj["id"], reason="at risk")
        assert deliver(jpn, "NZL") == 1
        assert nzl.get(nzl.people.as_person("officer"), obj["id"]) == []
    path = nzl.config.dir / nzl.config.database
    files = [p for p in path.parent.glob(path.name + "*") if p.is_file()]
    holding = [p.name for p in files if p.is_file() and marker.encode() in p.read_bytes()]
    assert holding == [], f"the recalled text is still in {holding}"
