"""Originator controls across two nodes over real mutual TLS: recall, destruction,
reclassification; and that a holder can never do them to someone else's object."""

from __future__ import annotations

import getpass
import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_federation import pair, people, publish, pull, push

from intelpact.crypto.signing import sign_object
from intelpact.interfaces.cli import main
from intelpact.model import national_marking
from intelpact.services.audit import OPERATOR
from intelpact.services.controls import MAX_REASON, ControlError, Controls
from intelpact.services.courier import BadAnswer, Courier
from intelpact.services.federation import MAX_NAMED, FederationError, sign_payload
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.services.relabel import Relabelled, Relabeller
from intelpact.store.base import AuditFilter, Query, normalise_timestamp, parse_timestamp

from helpers import DEEP, indicator, make_node, partner_answers, serving_federation


@pytest.fixture()
def jpn_nzl(jpn_nzl: list[Node]) -> list[Node]:
    """With NZL's analyst, cleared SECRET."""
    jpn_nzl[1].people.add("analyst", party="NZL", clearance="SECRET")
    return jpn_nzl


def deliver(node: Node, party: str) -> int:
    with Courier(node) as courier:
        return courier.deliver_notices(party)


def seen(node: Node, object_id: str, who: str = "officer") -> list[dict]:
    return node.get(node.people.as_person(who), object_id)


def test_a_recall_purges_every_copy_and_comes_back_as_a_destruction_receipt(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "to be recalled", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        assert seen(nzl, obj["id"])
        officer = jpn.people.as_person("officer")
        assert jpn.controls.recall(officer, obj["id"], reason="source at risk") == ["NZL"]
        assert deliver(jpn, "NZL") == 1
        # NZL: gone from every path, a tombstone kept
        assert seen(nzl, obj["id"]) == []
        cid = nzl.default_collection().collection_id
        _, rows = nzl.find(nzl.people.as_person("officer"), cid, Query(versions=("all",)))
        assert obj["id"] not in {r.object_id for r, _ in rows}
        if nzl.config.database.endswith(".db"):  # look at the tombstone itself
            with sqlite3.connect(nzl.config.dir / nzl.config.database) as c:
                body, recalled = c.execute("SELECT body, recalled FROM objects WHERE "
                                           "object_id = ?", (obj["id"],)).fetchone()
            stone = json.loads(body)
            assert recalled and "description" not in stone and "name" not in stone
            assert stone["x_intelpact_tombstone"]["body_hash"] and stone["object_marking_refs"]
        # the destruction receipt goes back and is recorded beside the recall
        assert deliver(nzl, "JPN") == 1
        (record,) = jpn.controls.recalls()
        assert record.party == "NZL" and record.destroyed and "destroyed" in record.receipt
        # pushing the same object again does not bring it back
        push(jpn, "NZL")
        assert seen(nzl, obj["id"]) == []
    # both sides audited it
    assert jpn.audit.find(AuditFilter(kinds=("recall",), object_id=obj["id"]))
    assert jpn.store.find_audit(AuditFilter(kinds=("destroy",), party="NZL"))
    assert nzl.store.find_audit(AuditFilter(kinds=("recall",), party="JPN"))
    assert nzl.audit.find(AuditFilter(kinds=("destroy",), object_id=obj["id"]))


def test_a_recall_is_applied_whole_or_not_at_all(jpn_nzl: tuple[Node, Node],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder tombstones its copies, records the recall as applied and queues its
    confirmation in one transaction. Here the confirmation cannot be made the first time
    (its signing fails): nothing of the recall is applied, the originator's next delivery
    applies it, and the originator hears what was destroyed. Applied in three steps, the
    copies were gone and the recall recorded with no confirmation, ever."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "to be recalled, at the second try", "極秘", ("NZL",))
    real = Controls._notice

    def unsigned(self: Controls, kind: str, to: str, body: Any) -> Any:
        if kind == "destroyed":
            raise RuntimeError("the signing key is unavailable")
        return real(self, kind, to, body)

    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        jpn.controls.recall(jpn.people.as_person("officer"), obj["id"], reason="at risk")
        with monkeypatch.context() as m:
            m.setattr(Controls, "_notice", unsigned)
            with pytest.raises(FederationError):
                deliver(jpn, "NZL")
        assert seen(nzl, obj["id"])  # nothing applied
        assert not [n for n in nzl.store.notices() if n.kind == "recall"]
        assert deliver(jpn, "NZL") == 1
        assert seen(nzl, obj["id"]) == []
        assert deliver(nzl, "JPN") == 1
    (record,) = jpn.controls.recalls()
    assert record.destroyed and obj["id"] in record.receipt


def test_nothing_more_of_a_recalled_object_goes_to_that_party(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "recalled before delivery", "極秘", ("NZL",))
    officer = jpn.people.as_person("officer")
    jpn.controls.recall(officer, obj["id"], parties=["NZL"], reason="changed our mind")
    assert not [row for _, row in jpn.store.pending("NZL", 100) if row.object_id == obj["id"]]
    assert not [row for _, row in jpn.store.released_after("NZL", 0, 100)
                if row.object_id == obj["id"]]
    newer = dict(obj, modified="2026-11-02T00:00:00.000Z", name="a newer version")
    newer.pop("extensions", None)
    jpn.publisher.publish(officer.person, jpn.default_collection().collection_id, [newer],
                          marking=MarkingRequest("極秘", ("NZL",)))
    assert not [row for _, row in jpn.store.pending("NZL", 100) if row.object_id == obj["id"]]
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        assert seen(nzl, obj["id"]) == []


def test_a_recall_stops_what_waits_to_go_to_a_partner_that_has_not_had_it_yet(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: a recall with no party named went only to the partners the
    dissemination record says received the object. One it waited in the outbox for (NZL
    down when it was published) still got it when it came back, after the recall. Now a
    recall stops it going there too, and tells that partner (a push in flight may have
    brought it there)."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "queued while NZ is down", "極秘", ("NZL",))
    assert jpn.store.queued_for(obj["id"]) == ["NZL"]
    officer = jpn.people.as_person("officer")
    assert jpn.controls.recall(officer, obj["id"], reason="source at risk") == ["NZL"]
    assert not [row for _, row in jpn.store.pending("NZL", 100) if row.object_id == obj["id"]]
    assert not [row for _, row in jpn.store.released_after("NZL", 0, 100)
                if row.object_id == obj["id"]]
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        pull(nzl, "JPN")
        assert seen(nzl, obj["id"]) == []
        assert deliver(jpn, "NZL") == 1  # the recall notice: NZL holds nothing of it
    assert jpn.store.disseminations(object_id=obj["id"]) == []
    with pytest.raises(ControlError, match="has not gone to any partner"):
        jpn.controls.recall(officer, publish(jpn, "for no one", "極秘", ())["id"],
                            reason="nothing to recall")


def test_a_refused_notice_holds_back_no_recall_of_another_object(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: the first notice a partner refused stopped every round, so the notices
    queued after it (a recall of another object) waited until it had been refused 20
    times. Now the round goes on with the notices about other objects; a later notice
    about the refused one's object still waits behind it (each object's in order)."""
    jpn, nzl = jpn_nzl
    other, recalled = (publish(jpn, name, "極秘", ("NZL",)) for name in ("other", "recalled"))
    officer = jpn.people.as_person("officer")
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        # NZL refuses a malformed destruction receipt (it answers no notice of NZL's)
        bad = jpn.controls._queue("destroyed", "NZL", other["id"], {
            "object_id": other["id"], "in_reply_to": 5, "destroyed": []}, [])
        jpn.controls.recall(officer, other["id"], reason="behind the refused one")
        jpn.controls.recall(officer, recalled["id"], reason="source at risk")
        with pytest.raises(FederationError, match=f"NZL refused destroyed notice {bad}"):
            deliver(jpn, "NZL")
        assert seen(nzl, recalled["id"]) == []  # its recall went past the refused notice
        assert seen(nzl, other["id"])  # this object's recall waits behind it, in order
        waiting = jpn.store.pending_notices("NZL", 10)
        assert [(n.kind, n.object_id) for n in waiting] == [("destroyed", other["id"]),
                                                             ("recall", other["id"])]
        assert waiting[0].attempts == 1 and waiting[1].attempts == 0


@pytest.mark.parametrize(("answer", "problem"), [
    (lambda r: DEEP, "invalid JSON: nesting is 100000 levels deep"),
    (lambda r: r.content[:-1] + b',"x":NaN}', "invalid JSON: NaN is not a JSON number"),
], ids=["nested 100000 deep", "NaN"])
def test_a_notice_whose_receipt_cannot_be_read_stays_queued(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch, answer: Any,
        problem: str) -> None:
    """NZL applies the recall but answers what no intelpact node sends: the receipt is
    refused with the reason (BadAnswer; `recall` says it in one line), the notice stays
    queued with no refusal counted, and NZL's answer when it goes again confirms it.
    Before, a receipt nested 100,000 deep crashed the command with a RecursionError, and
    one carrying NaN was taken; and the notice's error went on saying the failure before
    (`recalls` showed a stale reason)."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "recalled, its receipt unread", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        with monkeypatch.context() as patched:
            patched.setattr(Courier, "_request", partner_answers("/federation/notices",
                                                                 answer))
            done = CliRunner().invoke(main, ["recall", str(jpn.config.dir), obj["id"],
                                             "--reason", "source at risk", "--as",
                                             "officer"])
            assert done.exit_code == 0, (done.output, done.exception)
            (notice,) = jpn.store.pending_notices("NZL", 10)
            assert f"NZL's answer to recall notice {notice.notice_id} is refused: " \
                f"{problem}" in " ".join(done.output.split()), done.output
            with pytest.raises(BadAnswer, match=re.escape(problem)):
                deliver(jpn, "NZL")
        (waiting,) = jpn.store.pending_notices("NZL", 10)
        assert waiting.notice_id == notice.notice_id and waiting.attempts == 0
        assert problem in (waiting.error or ""), waiting.error  # not an older failure's
        assert seen(nzl, obj["id"]) == []  # NZL applied it: only its answer was unread
        assert deliver(jpn, "NZL") == 1
    assert jpn.store.pending_notices("NZL", 10) == []


def test_an_offline_holder_gets_the_recall_when_it_comes_back(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "recalled while NZ is down", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    jpn.controls.recall(jpn.people.as_person("officer"), obj["id"], reason="compromised")
    with pytest.raises(FederationError, match="NZL unreachable") as down:
        deliver(jpn, "NZL")  # NZL's listener is down: the notice waits
    peer = jpn.federation.peers()["NZL"]
    assert down.value.hint is not None and "intelpact serve" in down.value.hint \
        and peer.url in down.value.hint  # where this node looked for it
    assert seen(nzl, obj["id"])
    (notice,) = jpn.store.pending_notices("NZL", 10)
    assert notice.kind == "recall" and "unreachable" in (notice.error or "")
    with serving_federation(nzl):
        assert deliver(jpn, "NZL") == 1
    assert seen(nzl, obj["id"]) == []


def test_only_the_originator_recalls_or_reclassifies(jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "japanese", "極秘", ("NZL",))
    theirs = publish(nzl, "new zealand's", "SECRET", ("JPN",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        push(nzl, "JPN")
    nz_officer = nzl.people.as_person("officer")
    with pytest.raises(ControlError, match="only the originator may recall"):
        nzl.controls.recall(nz_officer, obj["id"], parties=["JPN"], reason="no")
    with pytest.raises(ControlError, match="only the originator may reclassify"):
        nzl.controls.reclassify(nz_officer, obj["id"], MarkingRequest("SECRET", ("JPN",)),
                                collection_id=nzl.default_collection().collection_id,
                                reason="no")
    # a notice from NZL claiming to recall or reclassify JPN's object applies to nothing
    # at JPN, and is answered as one about an object JPN does not hold: a refusal told
    # NZL that JPN holds it, and from whom. JPN records the refusal, under its originator
    unknown = indicator("held nowhere")["id"]
    answers = []
    for oid in (obj["id"], unknown):
        _, signed = nzl.controls._notice("recall", "JPN", {"object_id": oid,
                                                            "reason": "mine now"})
        answers.append(jpn.controls.receive("NZL", signed)["receipt"])
        marking = sign_object(national_marking(nzl.agreement, "NZL", "SECRET",
                                               rel_to=["JPN"]), nzl.signing_key, "NZL")
        _, signed = nzl.controls._notice("reclassify", "JPN", {
            "object_id": oid, "version": "2099-01-01T00:00:00.000Z", "reason": "mine now",
            "marking": marking})
        answers.append(jpn.controls.receive("NZL", signed)["receipt"])
    assert [set(a) for a in answers] == [set(answers[0])] * 4
    assert seen(jpn, obj["id"]) and len(seen(jpn, obj["id"])) == 1  # nothing applied
    refused = jpn.audit.find(AuditFilter(kinds=("refuse",), object_id=obj["id"]))
    assert [(json.loads(e.body)["message"], e.originator, e.party) for e in refused] == [
        ("recall", "JPN", "NZL"), ("reclassify", "JPN", "NZL")]
    assert all("NZL did not originate" in json.loads(e.body)["reason"] for e in refused)
    assert not jpn.audit.find(AuditFilter(kinds=("refuse",), object_id=unknown))
    # each recall is answered alike, with a destruction receipt naming nothing
    sent = [json.loads(n.body)["notice"] for n in jpn.store.notices()
            if n.direction == "out" and n.kind == "destroyed"]
    assert sorted(n["object_id"] for n in sent) == sorted((obj["id"], unknown))
    assert all(n["destroyed"] == [] and n["destroyed_earlier"] == [] for n in sent)
    # a destruction receipt about an object JPN holds but did not originate, alike
    _, signed = nzl.controls._notice("destroyed", "JPN", {
        "object_id": theirs["id"], "in_reply_to": None, "destroyed": []})
    assert set(jpn.controls.receive("NZL", signed)["receipt"]) == set(answers[0])
    (refusal,) = jpn.audit.find(AuditFilter(kinds=("refuse",), object_id=theirs["id"]))
    assert "is not ours (its originator is NZL)" in json.loads(refusal.body)["reason"]
    assert not jpn.audit.find(AuditFilter(kinds=("destroy",), object_id=theirs["id"]))
    # ...and a notice "from JPN" not signed by JPN's key is refused by NZL
    _, signed = nzl.controls._notice("recall", "JPN", {"object_id": obj["id"],
                                                        "reason": "mine now"})
    body = dict(signed["notice"], **{"from": "JPN", "to": "NZL"})
    forged = {"notice": body, "key_id": jpn.identity.key_id,
              "signature": sign_payload(nzl.signing_key, body)}
    with pytest.raises(ControlError, match="not signed by a key of JPN"):
        nzl.controls.receive("JPN", forged)
    assert seen(nzl, obj["id"])  # still held: nothing was applied
    by_command = CliRunner().invoke(main, ["recall", str(nzl.config.dir), obj["id"],
                                           "--reason", "x"])
    assert by_command.exit_code == 2 and "only the originator may recall" in by_command.output


def test_a_refused_reclassification_leaves_its_marking_unlearnt(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: the marking a reclassify notice carries was learnt before it was found
    not to be the sender's. NZL sent JPN one of JPN's own national markings, altered
    where its id does not look ("created") and signed by NZL: refused, but kept, so JPN
    could no longer publish at that marking ("a different marking-definition with this
    id is known") until it restarted. (Such a copy is now refused for its content: a
    national definition carries nothing its id does not cover.)"""
    jpn, nzl = jpn_nzl
    theirs = sign_object(dict(national_marking(jpn.agreement, "JPN", "機密", rel_to=["NZL"]),
                              created="2020-01-01T00:00:00.000Z"), nzl.signing_key, "NZL")
    _, signed = nzl.controls._notice("reclassify", "JPN", {
        "object_id": indicator("x")["id"], "version": "2026-11-02T00:00:00.000Z",
        "reason": "mine now", "marking": theirs})
    with pytest.raises(ControlError, match="differs in created"):
        jpn.controls.receive("NZL", signed)
    assert jpn.markings.definition(theirs["id"]) is None
    publish(jpn, "at that very marking", "機密", ("NZL",))  # asserts it was not refused


def test_an_object_of_the_last_version_a_timestamp_holds_is_refused_a_reclassification(
        tmp_path: Path) -> None:
    """An object whose version is the last instant STIX's timestamps can write
    (9999-12-31T23:59:59.999Z) has no later version: reclassifying it raised an
    OverflowError (a traceback at the CLI, a 500 at the console). It is refused with the
    reason, and nothing is kept of the attempt."""
    node = make_node(tmp_path / "jpn")
    node.people.add("pub", party="JPN", clearance="機密", roles=["publisher"])
    pub = node.people.as_person("pub")
    cid = node.default_collection().collection_id
    obj = indicator("future", modified="9999-12-31T23:59:59.999Z")
    node.publisher.publish(pub.person, cid, [obj], marking=MarkingRequest("秘", ("NZL",)))
    with pytest.raises(ControlError, match="no later version"):
        node.controls.reclassify(pub, obj["id"], MarkingRequest("機密", ("NZL",)),
                                 collection_id=cid, reason="up")
    assert [r.version for r in node.store.query(cid, list(node.store.labels()), Query(
        ids=(obj["id"],), versions=("all",))).rows] == [normalise_timestamp(obj["modified"])]
    node.close()


def test_reclassification_relabels_every_holder_s_copies(jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "going up", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        assert seen(nzl, obj["id"], "analyst")  # SECRET sees 秘 (CONFIDENTIAL)
        officer = jpn.people.as_person("officer")
        version, told = jpn.controls.reclassify(
            officer, obj["id"], MarkingRequest("機密", ("NZL",)),
            collection_id=jpn.default_collection().collection_id, reason="new source")
        assert told == ["NZL"] and version > obj["modified"].replace("Z", "")
        assert deliver(jpn, "NZL") == 1
        # every version NZL holds is now TOP SECRET: the SECRET analyst sees none of them
        assert seen(nzl, obj["id"], "analyst") == []
        assert seen(nzl, obj["id"])  # the TOP SECRET officer still does
        push(jpn, "NZL")  # the new version itself, under the new marking
        versions = [o["modified"] for o in seen(nzl, obj["id"])]
        assert len(versions) == 2
        # going to JPN only: NZL may no longer hold it at all, and purges it
        jpn.controls.reclassify(officer, obj["id"], MarkingRequest("機密", ()),
                                collection_id=jpn.default_collection().collection_id,
                                reason="Japan only now")
        assert deliver(jpn, "NZL") == 1
        assert seen(nzl, obj["id"]) == []
        assert deliver(nzl, "JPN") == 1  # its destruction receipt
    assert nzl.audit.find(AuditFilter(kinds=("reclassify",), object_id=obj["id"]))
    assert jpn.store.find_audit(AuditFilter(kinds=("reclassify",), party="NZL"))


def test_a_partner_the_object_was_recalled_from_is_not_told_of_its_reclassification(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: a reclassification told every partner the dissemination record or the
    outbox named, the ones the object had been recalled from too: its new marking and
    the reason went to a partner nothing more of it may go to."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "recalled, then raised", "秘", ("NZL",))
    officer = jpn.people.as_person("officer")
    cid = jpn.default_collection().collection_id
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        queued = publish(jpn, "queued, recalled, then raised", "秘", ("NZL",))
        assert jpn.store.queued_for(queued["id"]) == ["NZL"]  # never pushed
        for oid in (obj["id"], queued["id"]):
            assert jpn.controls.recall(officer, oid, reason="source at risk") == ["NZL"]
        assert deliver(jpn, "NZL") == 2
        for oid in (obj["id"], queued["id"]):
            version, told = jpn.controls.reclassify(officer, oid,
                                                    MarkingRequest("機密", ("NZL",)),
                                                    collection_id=cid, reason="raised")
            assert told == [], oid
        assert deliver(jpn, "NZL") == 0
    assert not [n for n in jpn.store.notices() if n.kind == "reclassify"]


def test_a_malformed_destruction_receipt_is_refused_with_the_reason(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: a destruction receipt whose "destroyed" was not a list of pairs ([[]],
    a number) made the listener answer 500, which the sender retries for ever, holding
    back every notice after it. It is refused (403, counted) and nothing is recorded."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "destroyed, they say", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        with Courier(nzl) as courier:
            for bad in ([[]], 5, None, [["2026-11-01T00:00:00.000000Z"]], [[1, 2]]):
                _, signed = nzl.controls._notice("destroyed", "JPN", {
                    "object_id": obj["id"], "in_reply_to": None, "destroyed": bad})
                r = courier._request(nzl.federation.peers()["JPN"], "POST",
                                     "/federation/notices", json.dumps(signed).encode())
                assert r.status_code == 403, (bad, r.text)
                assert "'destroyed' must be a list of [version, body hash] pairs" in \
                    r.json()["description"], r.json()
    assert not jpn.store.find_audit(AuditFilter(kinds=("destroy",), party="NZL"))


def test_the_commands(jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "by command", "極秘", ("NZL",))
    runner = CliRunner()
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        done = runner.invoke(main, ["recall", str(jpn.config.dir), obj["id"], "--reason",
                                    "leak suspected", "--as", "officer"])
        assert done.exit_code == 0, done.output
        assert "queued for NZL" in done.output and "delivered to NZL" in done.output
        deliver(nzl, "JPN")
    listed = runner.invoke(main, ["recalls", str(jpn.config.dir)])
    assert listed.exit_code == 0 and "destroyed" in listed.output
    refused = runner.invoke(main, ["recall", str(jpn.config.dir), obj["id"], "--reason", "x",
                                   "--as", "analyst-none"])
    assert refused.exit_code == 2 and "error:" in refused.output


def test_get_and_search_show_the_label_a_reclassification_gave_not_the_body_s(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: `get` and `search` printed the banner of the markings in the body,
    which a holder's reclassification leaves as they were: the raised object was shown
    to the reader under its old, lower banner."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "raised later", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        jpn.controls.reclassify(jpn.people.as_person("officer"), obj["id"],
                                MarkingRequest("機密", ("NZL",)),
                                collection_id=jpn.default_collection().collection_id,
                                reason="a second source")
        assert deliver(jpn, "NZL") == 1
    runner = CliRunner(env={"COLUMNS": "400"})
    got = runner.invoke(main, ["get", str(nzl.config.dir), obj["id"], "--as", "officer"])
    assert got.exit_code == 0, got.output
    lines = got.output.splitlines()
    assert lines[0] == lines[-1] == "TOP SECRET // REL TO JPN, NZL", got.output
    found = runner.invoke(main, ["search", str(nzl.config.dir), "raised later", "--as",
                                 "officer"])
    assert found.exit_code == 0, found.output
    assert "TOP SECRET // REL TO JPN, NZL" in found.output
    assert "CONFIDENTIAL" not in found.output and "1 match(es)" in found.output


def test_what_the_operator_destroys_is_told_to_the_originator_by_pseudonym(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """The agreement ended and NZL's operator destroys what it received (as `peer
    agreement` does): JPN's partner audit names the operator by pseudonym, as it is
    shown people, never by the OS account (the ``destroy`` events' ``actor`` was it)."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "to be destroyed", "極秘", ("NZL",))
    monkeypatch.setattr(getpass, "getuser", lambda: "jane.smith")
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        assert nzl.controls.destroy_received("the agreement ended")  # and its marking
        with Courier(jpn) as courier:
            events = courier.partner_audit("NZL").events
    destroyed = {e["objects"][0][0]: e["actor"] for e in events
                 if e["kind"] == "destroy" and "actor" in e}
    assert destroyed[obj["id"]] == nzl.audit.pseudonyms.of(OPERATOR + "jane.smith", "JPN")
    assert set(destroyed.values()) == {destroyed[obj["id"]]}
    assert "jane.smith" not in json.dumps(events)


def test_a_reclassified_base_keeps_the_portions_in_the_holder_s_banner(
        jpn_nzl: tuple[Node, Node]) -> None:
    """The originator lowers the base of an object whose description is marked higher:
    at the holder the old version keeps the base its body says (a lowered marking opens
    the new version only) and its banner keeps that portion, never the new base alone
    (the banner is what release decisions and derived information are held to)."""
    jpn, nzl = jpn_nzl
    base = national_marking(jpn.agreement, "JPN", "極秘", rel_to=["NZL"])
    portion = national_marking(jpn.agreement, "JPN", "機密", rel_to=["NZL"])
    obj = indicator("a portion marked higher")
    obj["object_marking_refs"] = [base["id"]]
    obj["granular_markings"] = [{"selectors": ["description"], "marking_ref": portion["id"]}]
    officer = jpn.people.as_person("officer")
    cid = jpn.default_collection().collection_id
    status = jpn.publisher.publish(officer.person, cid, [base, portion, obj])
    assert status.body["failure_count"] == 0, status.body
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        (held,) = nzl.store.held([obj["id"]])
        labels = nzl.store.labels()
        top = labels[held.banner_id]
        assert held.has_portions and top.rank > labels[held.label_id].rank
        jpn.controls.reclassify(officer, obj["id"], MarkingRequest("秘", ("NZL",)),
                                collection_id=cid, reason="the base is less sensitive")
        assert deliver(jpn, "NZL") == 1
        (after,) = nzl.store.held([obj["id"]])
        labels = nzl.store.labels()
        assert labels[after.label_id] == labels[held.label_id]  # its body's 極秘, joined
        assert labels[after.banner_id] == top  # the portion kept
        # the SECRET analyst reads the base, and the TOP SECRET portion stays withheld
        (shown,) = seen(nzl, obj["id"], "analyst")
        assert "description" not in shown


def test_a_lowered_marking_opens_the_new_version_not_the_old_ones(
        jpn_nzl: tuple[Node, Node]) -> None:
    """The holder relabels an old version with the join of its label and the new
    marking: lowered from 機密 (TOP SECRET) to 秘, the old version's body still says
    機密, so a SECRET reader reads the new version only."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "going down", "機密", ("NZL",))
    officer = jpn.people.as_person("officer")
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        assert seen(nzl, obj["id"]) and seen(nzl, obj["id"], "analyst") == []
        version, told = jpn.controls.reclassify(
            officer, obj["id"], MarkingRequest("秘", ("NZL",)),
            collection_id=jpn.default_collection().collection_id, reason="downgrade")
        assert told == ["NZL"] and deliver(jpn, "NZL") == 1
        assert seen(nzl, obj["id"], "analyst") == []  # the old 機密 body stays closed
        push(jpn, "NZL")  # the new version, under its own 秘 marking
        assert len(seen(nzl, obj["id"])) == 2
        (shown,) = seen(nzl, obj["id"], "analyst")
        assert parse_timestamp(shown["modified"]) == parse_timestamp(version)


def reclassified_then_newer(jpn: Node, nzl: Node, first: str, reclassified: MarkingRequest,
                            newer: tuple[str, str]) -> tuple[dict, dict, int]:
    """JPN publishes an object at ``first`` REL TO NZL, pushes it and reclassifies it;
    then publishes a newer version (``newer``: its name, and level REL TO NZL), which NZL
    pulls before the reclassify notice gets through (queued at JPN). Returns the two, and
    how many objects NZL pulled."""
    officer = jpn.people.as_person("officer")
    cid = jpn.default_collection().collection_id
    obj = indicator("v1")
    jpn.publisher.publish(officer.person, cid, [obj], marking=MarkingRequest(first, ("NZL",)))
    push(jpn, "NZL")
    _, told = jpn.controls.reclassify(officer, obj["id"], reclassified, collection_id=cid,
                                      reason="reclassified")
    assert told == ["NZL"]
    later = {k: v for k, v in obj.items() if k != "extensions"}
    later.update(modified="2030-01-01T00:00:00.000Z", name=newer[0])
    status = jpn.publisher.publish(officer.person, cid, [later],
                                   marking=MarkingRequest(newer[1], ("NZL",)))
    assert status.body["failure_count"] == 0, status.body
    pulled = pull(nzl, "JPN")
    assert newer[0] in {o["name"] for o in seen(nzl, obj["id"])}
    return obj, later, pulled


def test_a_late_notice_leaves_the_newer_versions_alone(jpn_nzl: tuple[Node, Node]) -> None:
    """JPN lowers an object to 秘, then publishes a newer version at 機密 (TOP SECRET);
    NZL pulls both before the reclassify notice arrives. The notice is about the versions
    older than the one it made: the 機密 version keeps its own signed marking."""
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        obj, _, pulled = reclassified_then_newer(
            jpn, nzl, "極秘", MarkingRequest("秘", ("NZL",)), ("top secret now", "機密"))
        assert pulled >= 2  # both, before the notice gets through
        assert deliver(jpn, "NZL") == 1
        names = {o["name"] for o in seen(nzl, obj["id"], "analyst")}
        assert names == {"v1"}, "the newer 機密 version was relabelled by an older notice"
        assert "top secret now" in {o["name"] for o in seen(nzl, obj["id"])}


def test_a_late_notice_that_withdraws_the_object_destroys_only_the_versions_it_is_about(
        jpn_nzl: tuple[Node, Node]) -> None:
    """JPN withdraws an object from NZL (reclassified for Japan's eyes only), then
    publishes a newer version released to NZL again, which NZL pulls before the notice
    gets through. The notice destroys the versions older than the one it made, and the
    confirmation names only those: the newer version, under its own signed marking, is
    not the notice's to destroy."""
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        obj, _, _ = reclassified_then_newer(jpn, nzl, "秘", MarkingRequest("秘", ()),
                                            ("released again", "秘"))
        assert {o["name"] for o in seen(nzl, obj["id"])} == {"v1", "released again"}
        assert deliver(jpn, "NZL") == 1
        assert [o["name"] for o in seen(nzl, obj["id"])] == ["released again"]
        destroyed = {parse_timestamp(v) for e in nzl.audit.find(
            AuditFilter(kinds=("destroy",), object_id=obj["id"]))
            for _, v in json.loads(e.body)["objects"]}
        assert destroyed == {parse_timestamp(obj["modified"])}
        assert deliver(nzl, "JPN") == 1  # the confirmation names the same one version
        (receipt,) = [n for n in jpn.store.notices() if n.kind == "destroyed"]
        assert [parse_timestamp(v) for v, _ in json.loads(receipt.body)["notice"]["destroyed"]] == [
            parse_timestamp(obj["modified"])]


def _arrives_while_applied(jpn: Node, nzl: Node, monkeypatch: pytest.MonkeyPatch,
                           method: str, marking: MarkingRequest, reason: str
                           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """JPN publishes an object released to NZL (pushed), then a version of it dated
    between (not pushed yet) and reclassifies it to ``marking``; NZL applies the notice,
    and the version pushed before the reclassification arrives as NZL's store is
    about to ``method`` (purge, relabel) the versions it read. Returns the first
    version and the one that arrived meanwhile (received by NZL)."""
    officer = jpn.people.as_person("officer")
    cid = jpn.default_collection().collection_id
    obj = publish(jpn, "v1", "秘", ("NZL",))
    between = {k: v for k, v in obj.items() if k != "extensions"}
    between.update(modified="2026-11-01T00:00:01.000Z", name="in flight")
    real, arrived = getattr(nzl.store, method), []

    def applying(*args: Any, **kwargs: Any) -> Any:
        if not arrived:  # the version pushed before the reclassification arrives now
            arrived.extend(nzl.federation.receive(
                "JPN", nzl.default_collection().collection_id, [sent])[0])
        return real(*args, **kwargs)

    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        status = jpn.publisher.publish(officer.person, cid, [between],
                                       marking=MarkingRequest("秘", ("NZL",)))
        assert status.body["failure_count"] == 0, status.body
        (sent,) = [json.loads(r.body) for r in jpn.store.held([obj["id"]])
                   if parse_timestamp(r.version) == parse_timestamp(between["modified"])]
        jpn.controls.reclassify(officer, obj["id"], marking, collection_id=cid,
                                reason=reason)
        monkeypatch.setattr(nzl.store, method, applying)
        assert deliver(jpn, "NZL") == 1
    assert [r.ok for r in arrived] == [True]
    return obj, between


def test_a_version_received_as_a_notice_withdraws_the_object_is_destroyed_too(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: NZL applied JPN's notice withdrawing an object (reclassified for
    Japan's eyes only) by destroying the older versions it had read before its
    transaction; a version older than the reclassified one that arrived in between (a
    push JPN decided before the reclassification) was kept, under its old marking, and
    NZL's officer still read it. The purge now takes every version older than the
    reclassified one, as its transaction finds them (``Store.purge``'s ``older_than``)."""
    jpn, nzl = jpn_nzl
    obj, between = _arrives_while_applied(jpn, nzl, monkeypatch, "purge",
                                          MarkingRequest("秘", ()), "Japan only now")
    assert seen(nzl, obj["id"]) == []
    destroyed = {parse_timestamp(v) for e in nzl.audit.find(
        AuditFilter(kinds=("destroy",), object_id=obj["id"]))
        for _, v in json.loads(e.body)["objects"]}
    assert destroyed == {parse_timestamp(obj["modified"]), parse_timestamp(between["modified"])}


def test_a_version_received_as_a_notice_raises_the_object_is_held_at_the_join(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """The holder's side of a version stored as its object is reclassified: NZL applied
    JPN's notice raising an object to 極秘 by relabelling the older versions it had read;
    a version older than the reclassified one that arrived in between (a push JPN
    decided before the reclassification) kept its 秘 label, read by NZL's analyst
    (SECRET). The relabelling finds it (ReclassifiedMeanwhile) and reads them again."""
    jpn, nzl = jpn_nzl
    obj, _ = _arrives_while_applied(jpn, nzl, monkeypatch, "relabel",
                                    MarkingRequest("機密", ("NZL",)), "a new source")
    assert len(seen(nzl, obj["id"])) == 2  # the TOP SECRET officer reads both
    assert seen(nzl, obj["id"], "analyst") == []
    assert_relabeller_agrees(nzl, obj["id"])


def test_an_older_notice_arriving_late_does_not_undo_a_newer_one(
        jpn_nzl: tuple[Node, Node]) -> None:
    """JPN lowers an object from 極秘 to 秘, then raises it to 機密 (TOP SECRET); NZL gets
    the second notice first. The first, applied after, cannot open what the second
    closed: each notice joins, and the join of 機密 and 秘 is 機密."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "up and down", "極秘", ("NZL",))
    officer = jpn.people.as_person("officer")
    cid = jpn.default_collection().collection_id
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    assert seen(nzl, obj["id"], "analyst")  # SECRET reads 極秘 (SECRET)
    for level, why in (("秘", "down"), ("機密", "up again")):
        jpn.controls.reclassify(officer, obj["id"], MarkingRequest(level, ("NZL",)),
                                collection_id=cid, reason=why)
    first, second = jpn.store.pending_notices("NZL", 10)
    for notice in (second, first):
        nzl.controls.receive("JPN", json.loads(notice.body))
    assert seen(nzl, obj["id"]) and seen(nzl, obj["id"], "analyst") == []


def test_a_version_queued_before_a_reclassification_that_withdraws_the_partner_stays(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: a version queued for NZL while it was down went to it after JPN
    reclassified the object for Japan's eyes only, pushed or pulled: the reclassification
    left JPN's own older versions at their old labels, which the release decision read
    as they left. JPN's older versions carry the join of their label and the new
    marking's, so neither a push nor a pull takes them to NZL, and NZL, which never held
    the object and may not now, is told nothing of it."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "queued while NZ is down", "秘", ("NZL",))
    assert jpn.store.queued_for(obj["id"]) == ["NZL"]
    _, told = jpn.controls.reclassify(jpn.people.as_person("officer"), obj["id"],
                                      MarkingRequest("秘", ()),
                                      collection_id=jpn.default_collection().collection_id,
                                      reason="Japan only now")
    assert told == []
    with serving_federation(jpn):  # NZL pulls
        pull(nzl, "JPN")
        assert seen(nzl, obj["id"]) == []
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        assert seen(nzl, obj["id"]) == []
    assert jpn.store.disseminations(object_id=obj["id"]) == []


def test_an_older_version_that_arrives_after_the_notice_is_held_at_the_join(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: NZL held v1, JPN published v2 while NZL was down, then raised the
    object to 機密 (TOP SECRET). NZL applied the notice to v1, then got v2 (older than the
    reclassified version) under its 秘 marking and stored it so: its SECRET analyst read
    it. A version older than a reclassification applied here is held at the join of its
    label and the new marking's, as the notice would have relabelled it."""
    jpn, nzl = jpn_nzl
    officer = jpn.people.as_person("officer")
    cid = jpn.default_collection().collection_id
    obj = publish(jpn, "v1", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        v2 = {k: v for k, v in obj.items() if k != "extensions"}
        v2.update(modified="2026-11-02T00:00:00.000Z", name="v2")
        status = jpn.publisher.publish(officer.person, cid, [v2],
                                       marking=MarkingRequest("秘", ("NZL",)))
        assert status.body["failure_count"] == 0, status.body
        _, told = jpn.controls.reclassify(officer, obj["id"], MarkingRequest("機密", ("NZL",)),
                                          collection_id=cid, reason="a new source")
        assert told == ["NZL"]
        assert deliver(jpn, "NZL") == 1  # the notice first: v1 relabelled
        push(jpn, "NZL")  # then v2 and the reclassified version
        assert {o["name"] for o in seen(nzl, obj["id"])} == {"v1", "v2"}
        assert len(seen(nzl, obj["id"])) == 3
        assert seen(nzl, obj["id"], "analyst") == []


def test_an_older_version_a_push_brings_after_a_notice_that_withdraws_it_is_refused(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: JPN's push read v2 for NZL; meanwhile JPN reclassified the object for
    Japan's eyes only and NZL applied the notice (destroying v1); then the push sent v2,
    and NZL stored it under its old marking. NZL refuses it, audited with the reason,
    and does not acknowledge it."""
    jpn, nzl = jpn_nzl
    officer = jpn.people.as_person("officer")
    cid = jpn.default_collection().collection_id
    obj = publish(jpn, "v1", "秘", ("NZL",))
    v2 = {k: v for k, v in obj.items() if k != "extensions"}
    v2.update(modified="2026-11-02T00:00:00.000Z", name="v2")
    real = type(jpn.federation).outgoing
    decisions: list[str] = []

    def reclassified_meanwhile(fed: Any, party: str, entries: Any, *args: Any,
                               **kw: Any) -> Any:
        # the push has decided twice (the second time with its release recorded): its
        # decision made, the reclassification lands before it is sent
        if any(row.object_id == obj["id"] for _, row in entries):
            decisions.append(party)
        if len(decisions) == 2:
            monkeypatch.setattr(type(jpn.federation), "outgoing", real)
            _, told = jpn.controls.reclassify(officer, obj["id"], MarkingRequest("秘", ()),
                                              collection_id=cid, reason="Japan only now")
            assert told == ["NZL"] and deliver(jpn, "NZL") == 1
        return real(fed, party, entries, *args, **kw)

    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        status = jpn.publisher.publish(officer.person, cid, [v2],
                                       marking=MarkingRequest("秘", ("NZL",)))
        assert status.body["failure_count"] == 0, status.body
        monkeypatch.setattr(type(jpn.federation), "outgoing", reclassified_meanwhile)
        assert push(jpn, "NZL") == 0  # sent, and refused
    assert seen(nzl, obj["id"]) == []
    (refused,) = nzl.store.find_audit(AuditFilter(kinds=("refuse",), party="JPN"))
    assert "reclassified by JPN" in json.loads(refused.body)["reason"]
    assert [parse_timestamp(d.version) for d in jpn.store.disseminations()
            if d.object_id == obj["id"]] == [parse_timestamp(obj["modified"])]


def test_an_upgrade_closes_the_originator_s_own_older_versions(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: JPN raised its object from 秘 to 極秘; a JPN reader cleared 秘 still
    read the old version (TAXII's versions, `get --all-versions`), JPN's copy being at
    its old label. The originator's older versions carry the join too, and the Relabeller
    works the same labels out again (an amended agreement)."""
    jpn, _ = jpn_nzl
    jpn.people.add("kato", party="JPN", clearance="秘")
    obj = publish(jpn, "going up", "秘", ("NZL",))
    assert seen(jpn, obj["id"], "kato")
    jpn.controls.reclassify(jpn.people.as_person("officer"), obj["id"],
                            MarkingRequest("極秘", ("NZL",)),
                            collection_id=jpn.default_collection().collection_id,
                            reason="a new source")
    assert seen(jpn, obj["id"], "kato") == []
    assert len(seen(jpn, obj["id"])) == 2
    assert_relabeller_agrees(jpn, obj["id"])
    # recorded here, beside the event of the notice to NZL (the old version waits for it)
    found = jpn.audit.find(AuditFilter(kinds=("reclassify",), object_id=obj["id"]))
    assert sorted(str(e.party) for e in found) == ["NZL", "None"]
    (event,) = [e for e in found if e.party is None]
    body = json.loads(event.body)
    assert body["objects"] == [[obj["id"], body["objects"][0][1]]]
    assert parse_timestamp(body["objects"][0][1]) == parse_timestamp(obj["modified"])
    assert body["reason"] == "a new source" and body["reclassified"] > body["objects"][0][1]


@pytest.mark.parametrize("waits", ["relabel", "add_objects"])
def test_a_version_stored_as_its_object_is_reclassified_is_held_at_the_join(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch, waits: str) -> None:
    """Regression: JPN raised its object from 秘 to 極秘 while a version of it older than
    the reclassified one (between the two) was being stored. ``relabel``: the
    reclassification had read the versions to join when that version was stored, and
    relabelled the others only; ``add_objects``: the publication had read the
    reclassifications (none) before the reclassification was kept, and stored its version
    after. Either way that version stayed at 秘, read by a JPN reader cleared 秘. Now
    each transaction finds what the other did meanwhile and the caller reads again."""
    jpn, _ = jpn_nzl
    jpn.people.add("kato", party="JPN", clearance="秘")
    officer = jpn.people.as_person("officer")
    cid = jpn.default_collection().collection_id
    obj = publish(jpn, "going up", "秘", ("NZL",))
    between = {k: v for k, v in obj.items() if k != "extensions"}
    between.update(modified="2026-11-01T00:00:01.000Z", name="stored meanwhile")

    def reclassify() -> None:
        jpn.controls.reclassify(officer, obj["id"], MarkingRequest("極秘", ("NZL",)),
                                collection_id=cid, reason="a new source")

    def store_between() -> None:
        status = jpn.publisher.publish(officer.person, cid, [between],
                                       marking=MarkingRequest("秘", ("NZL",)))
        assert status.body["failure_count"] == 0, status.body

    # the store call of one of them (in its thread) waits, as it is made, for the other
    # to be done whole
    first, other = (reclassify, store_between) if waits == "relabel" else \
        (store_between, reclassify)
    real, held, go, failed = getattr(jpn.store, waits), threading.Event(), \
        threading.Event(), []

    def paused(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is thread and not held.is_set():
            held.set()
            assert go.wait(60)
        return real(*args, **kwargs)

    def run() -> None:
        try:
            first()
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            failed.append(exc)

    monkeypatch.setattr(jpn.store, waits, paused)
    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert held.wait(60)
        other()
    finally:
        go.set()
        thread.join(60)
    assert not failed, failed
    assert len(seen(jpn, obj["id"])) == 3
    assert seen(jpn, obj["id"], "kato") == []  # every version older than the 極秘 one too
    assert_relabeller_agrees(jpn, obj["id"])


def assert_relabeller_agrees(node: Node, object_id: str) -> None:
    """The labels of ``object_id``'s versions are those the Relabeller works out again."""
    relabeller = Relabeller(node.policy, node.markings, node.store, node.audit, node.controls)
    raises, labels = node.controls.raises(), node.store.labels()
    for row in node.store.held([object_id]):
        base, banner = relabeller.labels_of(row, labels, raises, Relabelled())
        assert (base, banner) == (labels[row.label_id], labels[row.banner_id]), row.version


def test_a_partner_pinned_after_a_reclassification_gets_no_version_it_excludes(
        tmp_path: Path) -> None:
    """Regression: JPN reclassified an object it had released to no one yet for Japan's
    eyes only; NZL, pinned after, had the old version queued for it (add_peer decided on
    JPN's stored labels). With no holder no notice is kept: the reclassification is
    kept all the same, and the Relabeller finds it."""
    jpn, nzl = make_node(tmp_path / "jpn", "JPN"), make_node(tmp_path / "nzl", "NZL")
    try:
        for node in (jpn, nzl):
            people(node)
        obj = publish(jpn, "before NZ was pinned", "秘", ("NZL",))
        version, told = jpn.controls.reclassify(
            jpn.people.as_person("officer"), obj["id"], MarkingRequest("秘", ()),
            collection_id=jpn.default_collection().collection_id, reason="Japan only")
        assert told == []
        (event,) = jpn.audit.find(AuditFilter(kinds=("reclassify",), object_id=obj["id"]))
        assert event.party is None and json.loads(event.body)["reclassified"] == version
        pair(jpn, nzl)
        assert not [row for _, row in jpn.store.pending("NZL", 100)
                    if row.object_id == obj["id"]]
        with serving_federation(jpn), serving_federation(nzl):
            push(jpn, "NZL")
            pull(nzl, "JPN")
        assert seen(nzl, obj["id"]) == []
        assert_relabeller_agrees(jpn, obj["id"])
    finally:
        jpn.close()
        nzl.close()


def test_a_partner_pinned_after_a_reclassification_is_told_of_it_with_the_old_version(
        tmp_path: Path) -> None:
    """Regression: JPN raised an object it had released to no one yet from 秘 to 機密;
    NZL, pinned after and allowed both, got the old version under its 秘 marking and no
    notice (there was no holder to tell): its SECRET analyst read it. A partner pinned
    later with an older version queued is told, as a holder would have been."""
    jpn, nzl = make_node(tmp_path / "jpn", "JPN"), make_node(tmp_path / "nzl", "NZL")
    try:
        for node in (jpn, nzl):
            people(node)
        nzl.people.add("analyst", party="NZL", clearance="SECRET")
        obj = publish(jpn, "before NZ was pinned", "秘", ("NZL",))
        _, told = jpn.controls.reclassify(
            jpn.people.as_person("officer"), obj["id"], MarkingRequest("機密", ("NZL",)),
            collection_id=jpn.default_collection().collection_id, reason="a new source")
        assert told == []
        pair(jpn, nzl)
        with serving_federation(jpn), serving_federation(nzl):
            assert deliver(jpn, "NZL") == 1
            push(jpn, "NZL")
        assert len(seen(nzl, obj["id"])) == 2
        assert seen(nzl, obj["id"], "analyst") == []
    finally:
        jpn.close()
        nzl.close()


def test_a_partner_that_pulled_is_told_of_reclassifications_and_recalls(
        jpn_nzl: tuple[Node, Node]) -> None:
    """A pull has no receipt, but what it serves is in the dissemination record: a partner
    that only pulls (pushes to it fail, e.g. its listener is down) is a holder, so a
    reclassification closes its copy and a recall purges it."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "pulled", "秘", ("NZL",))
    officer = jpn.people.as_person("officer")
    cid = jpn.default_collection().collection_id
    with serving_federation(jpn):  # only JPN's listener: NZL pulls, JPN cannot push
        assert pull(nzl, "JPN") >= 1
    assert seen(nzl, obj["id"], "analyst")  # SECRET reads 秘
    (record,) = [d for d in jpn.store.disseminations() if d.object_id == obj["id"]]
    assert record.party == "NZL" and record.receipt_id is None
    shown = CliRunner().invoke(main, ["disseminations", str(jpn.config.dir)])
    assert shown.exit_code == 0 and "0 release(s) acknowledged, 2 pulled" in shown.output
    _, told = jpn.controls.reclassify(officer, obj["id"], MarkingRequest("機密", ("NZL",)),
                                      collection_id=cid, reason="new source")
    assert told == ["NZL"]
    with serving_federation(jpn), serving_federation(nzl):  # NZL reachable again
        assert deliver(jpn, "NZL") == 1
        assert seen(nzl, obj["id"]) and seen(nzl, obj["id"], "analyst") == []
        assert jpn.controls.recall(officer, obj["id"], reason="source at risk") == ["NZL"]
        assert deliver(jpn, "NZL") == 1
        assert seen(nzl, obj["id"]) == []


def test_a_recall_is_confirmed_only_by_the_holder_s_answer_to_it(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: the originator took any destruction receipt for the object as
    confirming its recall. JPN reclassifies an object for Japan's eyes only and releases a
    newer version to NZL again, which NZL pulls; the notice destroys only the older
    version at NZL, which confirms that one. JPN then recalls the object; NZL's
    confirmation of the reclassification arrives before the recall reaches it, and the
    recall was shown destroyed, although NZL held the newer version and had never heard
    of the recall. Only NZL's answer to the recall confirms it."""
    jpn, nzl = jpn_nzl
    officer = jpn.people.as_person("officer")
    with serving_federation(jpn), serving_federation(nzl):
        obj, newer, _ = reclassified_then_newer(jpn, nzl, "秘", MarkingRequest("秘", ()),
                                                ("released again", "秘"))
        assert deliver(jpn, "NZL") == 1  # the reclassification: v1 destroyed, v2 kept
        assert [o["name"] for o in seen(nzl, obj["id"])] == ["released again"]
        assert jpn.controls.recall(officer, obj["id"], reason="withdrawn") == ["NZL"]
        assert deliver(nzl, "JPN") == 1  # the reclassification's confirmation (v1 only)
        (recall,) = jpn.controls.recalls()
        assert recall.destroyed is None and recall.receipt is None, recall
        assert jpn.store.find_audit(AuditFilter(kinds=("destroy",), party="NZL"))  # kept
        # the recall reaches NZL: it destroys what it held, and its answer confirms it
        assert deliver(jpn, "NZL") == 1
        assert seen(nzl, obj["id"]) == []
        assert deliver(nzl, "JPN") == 1
        (recall,) = jpn.controls.recalls()
        answer = json.loads(recall.receipt or "{}")["notice"]
        assert recall.destroyed and answer["in_reply_to"] == recall.notice_id
        assert [parse_timestamp(v) for v, _ in answer["destroyed"]] == [
            parse_timestamp(newer["modified"])]


def test_a_recall_made_again_is_confirmed_by_the_answer_to_it(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: recalling an object again from the same holder kept the confirmation
    of the first recall, so the new one showed confirmed before the holder had heard of
    it. ``recalls`` shows the latest recall, unconfirmed until the answer to it comes (an
    answer to the earlier one confirms nothing more); the holder, having destroyed
    everything answering the first, answers with what it destroyed before, which
    confirms it. Both recalls stay in the notices and the audit log."""
    jpn, nzl = jpn_nzl
    officer = jpn.people.as_person("officer")
    obj = publish(jpn, "recalled twice", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        jpn.controls.recall(officer, obj["id"], reason="first")
        assert deliver(jpn, "NZL") == 1 and deliver(nzl, "JPN") == 1
        (first,) = jpn.controls.recalls()
        assert first.destroyed
        late = json.loads(first.receipt or "{}")
        assert jpn.controls.recall(officer, obj["id"], reason="again") == ["NZL"]
        (again,) = jpn.controls.recalls()
        assert again.notice_id != first.notice_id and again.reason == "again"
        assert again.destroyed is None and again.receipt is None and again.unconfirmed is None
        # the first recall's answer, sent again under a new id, does not confirm this one
        _, resent = nzl.controls._notice("destroyed", "JPN", {
            k: v for k, v in late["notice"].items()
            if k in ("object_id", "in_reply_to", "destroyed")})
        jpn.controls.receive("NZL", resent)
        assert jpn.controls.recalls()[0].destroyed is None
        assert deliver(jpn, "NZL") == 1 and deliver(nzl, "JPN") == 1
    (again,) = jpn.controls.recalls()
    answer = json.loads(again.receipt or "{}")["notice"]
    assert again.destroyed and answer["in_reply_to"] == again.notice_id
    assert answer["destroyed"] == []
    assert [parse_timestamp(v) for v, _ in answer["destroyed_earlier"]] == [
        parse_timestamp(obj["modified"])]
    sent = [n.notice_id for n in jpn.store.notices() if n.kind == "recall"]
    assert sent == [first.notice_id, again.notice_id]
    assert len(jpn.audit.find(AuditFilter(kinds=("recall",), object_id=obj["id"]))) == 2


def test_a_recall_of_what_the_holder_destroyed_before_is_confirmed_by_its_tombstones(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: a holder that had destroyed every version already (here when JPN
    withdrew the object, reclassified for Japan's eyes only) answered a recall naming
    nothing, and the recall was never confirmed. Its answer names, apart, what it
    destroyed before (its tombstones' versions and hashes): that accounts for every
    version that went to it, so it confirms the recall."""
    jpn, nzl = jpn_nzl
    officer = jpn.people.as_person("officer")
    cid = jpn.default_collection().collection_id
    obj = publish(jpn, "withdrawn, then recalled", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        jpn.controls.reclassify(officer, obj["id"], MarkingRequest("秘", ()),
                                collection_id=cid, reason="for Japan only")
        assert deliver(jpn, "NZL") == 1 and seen(nzl, obj["id"]) == []
        assert deliver(nzl, "JPN") == 1  # the reclassification's confirmation
        assert jpn.controls.recall(officer, obj["id"], reason="at risk") == ["NZL"]
        assert deliver(jpn, "NZL") == 1 and deliver(nzl, "JPN") == 1
    (record,) = jpn.controls.recalls()
    assert record.destroyed and record.unconfirmed is None, record
    answer = json.loads(record.receipt or "{}")["notice"]
    assert nzl.store.held([obj["id"]]) == [] and answer["destroyed"] == []
    assert [parse_timestamp(v) for v, _ in answer["destroyed_earlier"]] == [
        parse_timestamp(obj["modified"])]
    (delivered,) = [d for d in jpn.store.disseminations() if d.object_id == obj["id"]]
    assert answer["destroyed_earlier"][0][1] == delivered.body_hash
    listed = CliRunner(env={"COLUMNS": "400"}).invoke(main, ["recalls", str(jpn.config.dir)])
    assert listed.exit_code == 0 and "destroyed (receipt" in listed.output, listed.output


def test_a_push_that_read_its_rows_before_the_recall_brings_nothing_more_to_the_holder(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a push reads the outbox, then sends. JPN's push read a newer version
    for NZL; the recall was recorded, delivered and answered before the push sent it, and
    NZL stored the newer version after answering: it held the recalled object, the
    recall confirmed. A holder takes nothing more of an object its originator recalled
    from it (whoever sends it): the version is refused, not acknowledged, so it is not in
    JPN's dissemination record either, and the recall stays confirmed truly."""
    jpn, nzl = jpn_nzl
    officer = jpn.people.as_person("officer")
    obj = publish(jpn, "recalled while a push is under way", "秘", ("NZL",))
    newer = {k: v for k, v in obj.items() if k != "extensions"}
    newer.update(modified="2030-01-01T00:00:00.000Z", name="sent after the recall")
    real = type(jpn.federation).outgoing
    decisions: list[str] = []

    def recalled_meanwhile(fed: Any, party: str, entries: Any, *args: Any, **kw: Any) -> Any:
        # the push has read its rows and decided twice (the second time with its release
        # recorded): now the recall is recorded, applied and answered
        if any(row.object_id == obj["id"] for _, row in entries):
            decisions.append(party)
        if len(decisions) == 2:
            monkeypatch.setattr(type(jpn.federation), "outgoing", real)
            jpn.controls.recall(officer, obj["id"], reason="at risk")
            assert deliver(jpn, "NZL") == 1 and deliver(nzl, "JPN") == 1
        return real(fed, party, entries, *args, **kw)

    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        jpn.publisher.publish(officer.person, jpn.default_collection().collection_id,
                              [newer], marking=MarkingRequest("秘", ("NZL",)))
        monkeypatch.setattr(type(jpn.federation), "outgoing", recalled_meanwhile)
        assert push(jpn, "NZL") == 0  # sent, and refused
    assert seen(nzl, obj["id"]) == []
    (refused,) = nzl.store.find_audit(AuditFilter(kinds=("refuse",), party="JPN"))
    assert "JPN recalled" in json.loads(refused.body)["reason"]
    assert [parse_timestamp(d.version) for d in jpn.store.disseminations()
            if d.object_id == obj["id"]] == [parse_timestamp(obj["modified"])]
    (record,) = jpn.controls.recalls()
    assert record.destroyed and record.unconfirmed is None


def test_a_destruction_receipt_confirms_no_recall_it_does_not_answer(
        jpn_nzl: tuple[Node, Node]) -> None:
    """A receipt answering nothing, naming nothing destroyed, or answering the recall of
    another object confirms no recall (`recalls` says when an answer named nothing); one
    whose ``in_reply_to`` is not a notice id is refused with the reason. Each one kept is
    audited."""
    jpn, nzl = jpn_nzl
    recalled, other = (publish(jpn, name, "秘", ("NZL",)) for name in ("recalled", "other"))
    officer = jpn.people.as_person("officer")
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    for obj in (recalled, other):
        jpn.controls.recall(officer, obj["id"], reason="at risk")
    notice_of = {r.object_id: r.notice_id for r in jpn.controls.recalls()}
    (held,) = nzl.store.held([recalled["id"]])
    destroyed = [[held.version, held.body_hash]]

    def answer(in_reply_to: object, names: list[list[str]]) -> None:
        _, signed = nzl.controls._notice("destroyed", "JPN", {
            "object_id": recalled["id"], "in_reply_to": in_reply_to, "destroyed": names})
        jpn.controls.receive("NZL", signed)

    with pytest.raises(ControlError, match="'in_reply_to' must be the id of the notice it "
                       "answers, or null"):
        answer(5, destroyed)
    answer(None, destroyed)  # as at the agreement's end: it answers no recall
    answer(notice_of[recalled["id"]], [])  # it destroyed nothing
    answer(notice_of[other["id"]], destroyed)  # the recall of another object
    assert all(r.destroyed is None for r in jpn.controls.recalls())
    assert len(jpn.store.find_audit(AuditFilter(kinds=("destroy",), party="NZL"))) == 3
    listed = CliRunner(env={"COLUMNS": "400"}).invoke(main, ["recalls", str(jpn.config.dir)])
    assert listed.exit_code == 0 and listed.output.count(
        "answered, naming nothing destroyed: not confirmed") == 1, listed.output
    answer(notice_of[recalled["id"]], destroyed)
    assert [r.object_id for r in jpn.controls.recalls() if r.destroyed] == [recalled["id"]]


def test_a_recall_answer_that_does_not_account_for_what_went_to_the_holder_confirms_nothing(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: an answer to a recall that named any version destroyed confirmed it,
    though the dissemination record said more had gone to the holder. It confirms the
    recall only if it accounts (by body hash, destroyed now or before) for every version
    that went there; otherwise ``recalls`` says what it does not account for, and an
    answer saying the holder never held anything is shown as that discrepancy."""
    jpn, nzl = jpn_nzl
    officer = jpn.people.as_person("officer")
    obj = publish(jpn, "two versions", "秘", ("NZL",))
    newer = {k: v for k, v in obj.items() if k != "extensions"}
    newer.update(modified="2030-01-01T00:00:00.000Z", name="the second")
    jpn.publisher.publish(officer.person, jpn.default_collection().collection_id, [newer],
                          marking=MarkingRequest("秘", ("NZL",)))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    jpn.controls.recall(officer, obj["id"], reason="at risk")
    (recall,) = jpn.controls.recalls()
    one, two = ([r.version, r.body_hash] for r in sorted(nzl.store.held([obj["id"]]),
                                                          key=lambda r: r.version))

    def answer(destroyed: list[list[str]], earlier: list[list[str]]) -> str | None:
        """Why the answer does not confirm the recall (None: it does)."""
        _, signed = nzl.controls._notice("destroyed", "JPN", {
            "object_id": obj["id"], "in_reply_to": recall.notice_id, "destroyed": destroyed,
            "destroyed_earlier": earlier})
        jpn.controls.receive("NZL", signed)
        (record,) = jpn.controls.recalls()
        return None if record.destroyed is not None else record.unconfirmed or "?"

    assert answer([one], []) == (
        "its answer does not account for 1 version(s) the dissemination record says went "
        f"to it: {two[0]} (acknowledged by its signed receipt)")
    listed = CliRunner(env={"COLUMNS": "400"}).invoke(main, ["recalls", str(jpn.config.dir)])
    assert listed.exit_code == 0 and "its signed receipt): not confirmed" in listed.output, \
        listed.output
    assert answer([], []) == (
        "answered that it holds and held nothing of the object, though the dissemination "
        f"record says 2 version(s) went to it: {one[0]}, {two[0]} (acknowledged by its "
        "signed receipt)")
    assert answer([], [["2026-01-01T00:00:00.000Z", "0" * 64]]) is not None  # not ours
    assert answer([two], [one]) is None  # every version: destroyed now or before
    (record,) = jpn.controls.recalls()
    assert record.destroyed and record.unconfirmed is None
    assert recall.notice_id in (record.receipt or "")
    with pytest.raises(ControlError, match="'destroyed_earlier' must be a list of"):
        answer([two], "everything")  # type: ignore[arg-type]


def _notice(sender: Node, receiver: Node, signed: dict) -> Any:
    """POST a signed notice straight to ``receiver``'s listener; the response."""
    with Courier(sender) as courier:
        return courier._request(sender.federation.peers()[receiver.party], "POST",
                                "/federation/notices", json.dumps(signed).encode())


def test_a_destruction_receipt_names_so_many_versions_and_no_more(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: a destruction receipt could name any number of versions, each named in
    the originator's audit event. It names at most MAX_NAMED (the versions of one object
    a holder destroyed): one more is refused (403, the count and the first few named,
    audited), nothing kept."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "destroyed, they say", "秘", ("NZL",))
    pair = ["2026-11-01T00:00:00.000000Z", "0" * 64]
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        _, signed = nzl.controls._notice("destroyed", "JPN", {
            "object_id": obj["id"], "in_reply_to": None, "destroyed": [pair] * (MAX_NAMED + 1)})
        r = _notice(nzl, jpn, signed)
        assert r.status_code == 403, r.text
        assert r.json()["description"] == (
            "the destruction receipt names 10,001 versions (2026-11-01T00:00:00.000000Z, "
            "2026-11-01T00:00:00.000000Z, 2026-11-01T00:00:00.000000Z and 9,998 more): at "
            "most 10,000 are taken in one receipt")
        assert not jpn.store.find_audit(AuditFilter(kinds=("destroy",), party="NZL"))
        (refused,) = jpn.store.find_audit(AuditFilter(kinds=("refuse",), party="NZL"))
        assert json.loads(refused.body)["message"] == "destroyed"
        # as many as a receipt may name are taken
        _, signed = nzl.controls._notice("destroyed", "JPN", {
            "object_id": obj["id"], "in_reply_to": None, "destroyed": [pair] * MAX_NAMED})
        assert _notice(nzl, jpn, signed).status_code == 200
        assert jpn.store.find_audit(AuditFilter(kinds=("destroy",), party="NZL"))


def test_a_notice_refused_echoes_what_it_names_cut_short_and_is_audited(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: a notice's refusal quoted its kind, its parties, its object id whole
    (any length: a 403 of megabytes, logged whole), and was not audited; a recall's or
    reclassification's reason was any length, recorded in every event it made. A
    refusal names each cut to 100 characters, and is audited; a reason is at most
    MAX_REASON characters, as the sender's node checks it."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "recalled", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        _, odd = jpn.controls._notice("x" * 100_000, "NZL", {"object_id": obj["id"]})
        r = _notice(jpn, nzl, odd)
        assert r.status_code == 403, r.text
        assert r.json()["description"] == f"unknown notice '{'x' * 99}… (100,002 characters)"
        _, elsewhere = jpn.controls._notice("recall", "y" * 100_000, {
            "object_id": obj["id"], "reason": "r"})
        r = _notice(jpn, nzl, elsewhere)
        assert r.status_code == 403 and len(r.text) < 500, r.text
        _, long = jpn.controls._notice("recall", "NZL", {"object_id": obj["id"],
                                                         "reason": "r" * (MAX_REASON + 1)})
        r = _notice(jpn, nzl, long)
        assert r.status_code == 403, r.text
        assert "reason is not text of at most 2,000 characters" in r.json()["description"]
        assert [o["name"] for o in seen(nzl, obj["id"])] == ["recalled"]  # not applied
        refused = nzl.store.find_audit(AuditFilter(kinds=("refuse",), party="JPN"))
        assert len(refused) == 3 and all(len(e.body) < 1_000 for e in refused), refused
        _, fine = jpn.controls._notice("recall", "NZL", {"object_id": obj["id"],
                                                         "reason": "r" * MAX_REASON})
        assert _notice(jpn, nzl, fine).status_code == 200
        assert seen(nzl, obj["id"]) == []
