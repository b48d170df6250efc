"""A marking-definition travels with the objects that cite it (docs/federation.md).

Under jpn-nzl-aus.toml, Australia's UNOFFICIAL is not an exchanged (covered) level. An
Australian object marked UNOFFICIAL // REL TO JPN with a PROTECTED // REL TO JPN portion
has a PROTECTED banner, so it goes to Japan; its UNOFFICIAL definition, not releasable on
its own label, must go with it, and only with it: alone, or with an object that does not
cite it, it stays (tests/services/test_federation_faults.py,
test_the_marking_of_an_uncovered_level_does_not_cross, says the same for Japan's 取扱注意).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intelpact.interfaces import federation as federation_api
from intelpact.model import national_marking
from intelpact.services.courier import Courier
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest, definition_label
from intelpact.store.base import AuditFilter, Query

from helpers import T0, make_node, pin_each_other, serving_federation

AGREEMENT = "jpn-nzl-aus.toml"


@pytest.fixture()
def aus_jpn(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    aus = make_node(tmp_path / "aus", "AUS", agreement=AGREEMENT)
    jpn = make_node(tmp_path / "jpn", "JPN", agreement=AGREEMENT)
    try:
        aus.people.add("officer", party="AUS", clearance="TOP SECRET", roles=["publisher"])
        jpn.people.add("low", party="JPN", clearance="指定なし", roles=["analyst"])
        jpn.people.add("high", party="JPN", clearance="秘", roles=["analyst"])
        yield aus, jpn
    finally:
        aus.close()
        jpn.close()


def definitions(node: Node) -> tuple[dict[str, Any], dict[str, Any]]:
    """Australia's UNOFFICIAL // REL TO JPN and PROTECTED // REL TO JPN, unsigned."""
    a = node.agreement
    return (national_marking(a, "AUS", "UNOFFICIAL", rel_to=["JPN"]),
            national_marking(a, "AUS", "PROTECTED", rel_to=["JPN"]))


def indicator(base: dict[str, Any], portion: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
        "created": T0, "modified": T0, "name": "an indicator", "description": "portion",
        "pattern": "[ipv4-addr:value = '198.51.100.7']", "pattern_type": "stix",
        "valid_from": T0, "object_marking_refs": [base["id"]]}
    if portion is not None:
        obj["granular_markings"] = [{"selectors": ["description"], "marking_ref": portion["id"]}]
    return obj


def publish(node: Node, objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Publish at ``node`` as its officer; every body as stored (signed), by id."""
    who = node.people.as_person("officer").person
    status = node.publisher.publish(who, node.default_collection().collection_id, objects)
    assert status.body["failure_count"] == 0, status.body
    return {row.object_id: json.loads(row.body)
            for row in node.store.held([o["id"] for o in objects])}


def outbox(node: Node, party: str) -> list[str]:
    return [row.object_id for _, row in node.store.pending(party, 1000)]


def seen(node: Node, reader: str, oid: str) -> dict[str, Any] | None:
    """What ``reader`` at ``node`` is served of ``oid`` (None: nothing)."""
    _, rows = node.find(node.people.as_person(reader), node.default_collection().collection_id,
                        Query(ids=(oid,), versions=("all",)))
    return json.loads(rows[0][1]) if rows else None


def test_the_definition_goes_once_with_the_objects_that_need_it(
        aus_jpn: tuple[Node, Node]) -> None:
    aus, jpn = aus_jpn
    pin_each_other(aus, jpn)
    unofficial, protected = definitions(aus)
    alone = indicator(unofficial)  # banner UNOFFICIAL: not exchanged, nothing goes
    held = publish(aus, [unofficial, protected, alone])
    assert outbox(aus, "JPN") == [protected["id"]]  # covered: released on its own label
    first, second = indicator(unofficial, protected), indicator(unofficial, protected)
    held |= publish(aus, [unofficial, protected, first])
    # queued with the object that needs it, ahead of it, in its transaction
    assert outbox(aus, "JPN") == [protected["id"], unofficial["id"], first["id"]]
    held |= publish(aus, [second])
    assert outbox(aus, "JPN") == [protected["id"], unofficial["id"], first["id"], second["id"]]

    courier = Courier(aus)
    with serving_federation(jpn):
        assert courier.push_all("JPN") == 4
        courier.stop()
    assert outbox(aus, "JPN") == []
    gone = [d.object_id for d in aus.store.disseminations() if d.party == "JPN"]
    assert sorted(gone) == sorted([protected["id"], unofficial["id"], first["id"],
                                   second["id"]])
    assert not jpn.store.held([alone["id"]])
    assert jpn.store.refusals() == []

    # stored at JPN under its own label: what it marks, UNOFFICIAL // REL TO AUS, JPN
    row = jpn.store.held([unofficial["id"]])[0]
    part = jpn.markings.part(unofficial["id"])
    assert jpn.store.labels()[row.label_id] == definition_label(jpn.agreement, part, "AUS")
    assert row.body == aus.store.held([unofficial["id"]])[0].body
    # every JPN reader reads the base (UNOFFICIAL, treated as 指定なし) and its definition;
    # the PROTECTED portion, and its definition, only a reader cleared to 秘
    low = seen(jpn, "low", first["id"])
    assert low is not None and "description" not in low and "granular_markings" not in low
    assert seen(jpn, "low", unofficial["id"]) is not None
    assert seen(jpn, "low", protected["id"]) is None
    assert seen(jpn, "high", first["id"]) == held[first["id"]]
    assert seen(jpn, "high", protected["id"]) is not None


def test_the_receiver_takes_the_definition_only_with_an_object_that_cites_it(
        aus_jpn: tuple[Node, Node]) -> None:
    aus, jpn = aus_jpn
    pin_each_other(aus, jpn)
    unofficial, protected = definitions(aus)
    alone, mixed = indicator(unofficial), indicator(unofficial, protected)
    other = indicator(protected)  # released, but does not cite UNOFFICIAL
    held = publish(aus, [unofficial, protected, alone, mixed, other])
    cid = jpn.default_collection().collection_id

    def receive(*ids: str) -> dict[str, str]:
        results, _ = jpn.federation.receive("AUS", cid, [held[i] for i in ids])
        return {r.object_id: "" if r.ok else r.message for r in results}

    refused = "AUS may not release this to JPN: UNOFFICIAL is not covered"
    assert receive(unofficial["id"]) == {unofficial["id"]: refused + " by agreement "
                                         "jpn-nzl-aus-isa"}
    assert receive(unofficial["id"], alone["id"])[unofficial["id"]].startswith(refused)
    assert receive(unofficial["id"], protected["id"], other["id"]) == {
        unofficial["id"]: refused + " by agreement jpn-nzl-aus-isa", protected["id"]: "",
        other["id"]: ""}
    assert not jpn.store.held([unofficial["id"], alone["id"]])
    # an object citing a definition this node refused (parsed, never stored) is refused too
    assert receive(mixed["id"]) == {mixed["id"]: f"unknown marking-definition "
                                    f"{unofficial['id']}: this node does not hold it; send it "
                                    "with (or before) the objects that use it"}
    assert receive(unofficial["id"], mixed["id"]) == {unofficial["id"]: "", mixed["id"]: ""}
    assert {r.object_id for r in jpn.store.held([unofficial["id"], mixed["id"]])} == {
        unofficial["id"], mixed["id"]}
    assert jpn.store.marking(unofficial["id"]) is not None  # known after a restart too


def test_a_definition_cut_off_from_its_object_waits_for_the_next_envelope(
        aus_jpn: tuple[Node, Node]) -> None:
    aus, jpn = aus_jpn
    pin_each_other(aus, jpn)
    unofficial, protected = definitions(aus)
    mixed = indicator(unofficial, protected)
    publish(aus, [unofficial, protected, mixed])
    entries = aus.store.pending("JPN", 10)
    assert [row.object_id for _, row in entries] == [protected["id"], unofficial["id"],
                                                     mixed["id"]]
    ids = [oid for oid, _ in entries]
    fed = aus.federation
    going, later = fed.outgoing("JPN", entries)
    assert [oid for oid, _ in going] == ids and later == []
    going, later = fed.outgoing("JPN", entries[:2], more=True)  # the object is past the cut
    assert [oid for oid, _ in going] == ids[:1] and later == [ids[1]]
    going, later = fed.outgoing("JPN", entries[:2])  # no object after it: it does not go
    assert [oid for oid, _ in going] == ids[:1] and later == []


def test_a_partner_pinned_later_gets_the_definitions_queued_with_the_objects(
        aus_jpn: tuple[Node, Node]) -> None:
    aus, jpn = aus_jpn
    unofficial, protected = definitions(aus)
    alone, mixed = indicator(unofficial), indicator(unofficial, protected)
    publish(aus, [unofficial, protected, alone, mixed])
    pin_each_other(aus, jpn)
    assert outbox(aus, "JPN") == [protected["id"], unofficial["id"], mixed["id"]]
    courier = Courier(aus)
    with serving_federation(jpn):
        assert courier.push_all("JPN") == 3
        courier.stop()
    assert {r.object_id for r in jpn.store.held([unofficial["id"], mixed["id"],
                                                 alone["id"]])} == {unofficial["id"],
                                                                    mixed["id"]}


@pytest.mark.parametrize("limit", [1, 2])
def test_a_pull_takes_the_definition_with_its_object_even_across_pages(
        aus_jpn: tuple[Node, Node], limit: int) -> None:
    """Pulled two rows to a page, the definition would end one page and its object start
    the next: the page ends before the definition instead. One row to a page, the page
    that starts with the definition reads on to its object. Either way both come together."""
    aus, jpn = aus_jpn
    pin_each_other(aus, jpn)
    unofficial, protected = definitions(aus)
    mixed = indicator(unofficial, protected)
    publish(aus, [unofficial, protected, mixed])
    courier = Courier(jpn)
    with serving_federation(aus):
        assert courier.pull_once("AUS", limit=limit) == 3
        courier.stop()
    assert {r.object_id for r in jpn.store.held([unofficial["id"], mixed["id"],
                                                 protected["id"]])} == {
        unofficial["id"], mixed["id"], protected["id"]}
    assert jpn.store.refusals() == []


def test_a_base_reclassified_to_a_level_not_exchanged_stays_held_under_its_portion(
        aus_jpn: tuple[Node, Node]) -> None:
    """Australia lowers an object's base to UNOFFICIAL (not exchanged) while its PROTECTED
    portion stays: Japan may still hold its copy, which keeps the PROTECTED its body says
    (a lowered marking opens the new version only), instead of destroying it; and it
    holds the new version on its banner, as release decides."""
    aus, jpn = aus_jpn
    pin_each_other(aus, jpn)
    _, protected = definitions(aus)
    obj = indicator(protected, protected)
    publish(aus, [protected, obj])
    with Courier(aus) as courier, serving_federation(jpn), serving_federation(aus):
        assert courier.push_all("JPN") == 2
        (held,) = jpn.store.held([obj["id"]])
        officer = aus.people.as_person("officer")
        cid = aus.default_collection().collection_id
        version, told = aus.controls.reclassify(
            officer, obj["id"], MarkingRequest("UNOFFICIAL", ("JPN",)), collection_id=cid,
            reason="the base is not sensitive")
        assert told == ["JPN"] and courier.deliver_notices("JPN") == 1
        (after,) = jpn.store.held([obj["id"]])  # kept, not destroyed
        labels = jpn.store.labels()
        assert labels[after.label_id] == labels[held.label_id]  # PROTECTED, as its body
        assert labels[after.banner_id] == labels[held.banner_id]  # PROTECTED: the portion
        assert not jpn.store.find_audit(AuditFilter(kinds=("destroy",)))
        assert courier.push_all("JPN") >= 1  # the new version, under its own marking
        courier.stop()  # its connections closed before the listeners stop (below)
    # The old version's body still says PROTECTED: only a reader cleared for that reads
    # it. The new version's base is UNOFFICIAL: every reader reads that, without the
    # PROTECTED portion.
    assert versions(jpn, "high", obj["id"]) == sorted([held.version, version])
    assert versions(jpn, "low", obj["id"]) == [version]
    low = seen(jpn, "low", obj["id"])
    assert low is not None and "description" not in low


def versions(node: Node, reader: str, oid: str) -> list[str]:
    _, rows = node.find(node.people.as_person(reader), node.default_collection().collection_id,
                        Query(ids=(oid,), versions=("all",)))
    return sorted(row.version for row, _ in rows)


@pytest.mark.parametrize("early", [False, True])
def test_a_pull_that_passed_a_waiting_definition_carries_it_with_its_next_object(
        aus_jpn: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch, early: bool) -> None:
    """A definition whose first citing object was recalled waits in the outbox; the next
    object citing it is queued behind more rows than a page reads on (MAX_PAGE, 4 here).
    Pulled a row to a page, the page that starts with the definition reads on to its
    bound without finding the object, and its ``next`` passes the definition; pulled
    ``early`` (before the object is published), the cursor passes it with nothing to
    read on to. Either way the definition goes with the object when that is pulled
    (Federation.passed_definitions): without it the partner refuses the object."""
    monkeypatch.setattr(federation_api, "MAX_PAGE", 4)
    aus, jpn = aus_jpn
    pin_each_other(aus, jpn)
    unofficial, protected = definitions(aus)
    first = indicator(unofficial, protected)
    publish(aus, [unofficial, protected, first])
    aus.controls.recall(None, first["id"], reason="source at risk")
    fillers = [indicator(protected) for _ in range(6)]
    second = indicator(unofficial, protected)
    publish(aus, fillers)
    courier = Courier(jpn)
    with serving_federation(aus):
        if early:
            assert courier.pull_once("AUS", limit=1) == 7  # PROTECTED and the fillers
        publish(aus, [second])
        assert outbox(aus, "JPN")[-8:] == [unofficial["id"]] + [f["id"] for f in fillers] \
            + [second["id"]]
        assert courier.pull_once("AUS", limit=1) == (2 if early else 9)
        courier.stop()
    assert {r.object_id for r in jpn.store.held([unofficial["id"], second["id"]])} == {
        unofficial["id"], second["id"]}
    assert jpn.store.refusals() == []
    assert unofficial["id"] in {d.object_id for d in aus.store.disseminations(party="JPN")}
