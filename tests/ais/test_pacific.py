"""Communities under the Pacific arrangement: three real nodes over real mutual TLS.

New Zealand ingests AIS (the real ingest service, the pyais sample) and publishes a
matrix of markings; Fiji must receive exactly the arrangement's communities at its
covered levels, REL TO Fiji, and nothing else: no level outside `covered`, no
community the arrangement does not carry (an ACS entity community), nothing REL TO
JPN/NZL only, nothing with no community at all (REL TO Fiji is not enough). Japan
receives what is REL TO it and carries a community, and passes none of New Zealand's
objects on to Fiji (a third party: consent). At Fiji a person without MARITIME sees
none of the picture over TAXII.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_ingest import T0, position, static

from intelpact.maritime.rules import load_rules
from intelpact.model import PartnerNode
from intelpact.model.markings import ACS_EXTENSION_ID
from intelpact.services.ais import AisIngest, default_marking
from intelpact.services.courier import Courier
from intelpact.services.federation import FederationError, make_card
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import Query

from helpers import DATA, indicator, make_node, pin_each_other, serving, serving_federation

SAMPLE = DATA / "ais" / "pyais" / "nmea_data_sample.txt"
TAXII = "application/taxii+json;version=2.1"
PW = "pacific-test-password"
ALL = ("NZL", "JPN", "FJI", "TON", "WSM")
TOP = {"NZL": "CONFIDENTIAL", "JPN": "秘", "FJI": "RESTRICTED"}
ACS_GOV = {"type": "marking-definition", "spec_version": "2.1",
           "id": "marking-definition--7b1c8e0c-3a2f-4a7e-9a51-2d6f0f1b6a01",
           "created": "2026-01-01T00:00:00.000Z",
           "extensions": {ACS_EXTENSION_ID: {"extension_type": "property-extension",
                                              "control_set": {"classification": "U",
                                                              "entity": ["GOV"]}}}}

# name: (level, REL TO, communities, with the ACS entity marking, reaches FJI, reaches JPN)
CASES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], bool, bool, bool]] = {
    "u-maritime": ("UNCLASSIFIED", ALL, ("MARITIME",), False, True, True),
    "r-maritime": ("RESTRICTED", ALL, ("MARITIME",), False, True, True),
    "r-climate": ("RESTRICTED", ALL, ("CLIMATE",), False, True, True),
    "u-infrastructure": ("UNCLASSIFIED", ALL, ("INFRASTRUCTURE",), False, True, True),
    "u-maritime-nzl-jpn": ("UNCLASSIFIED", ("NZL", "JPN"), ("MARITIME",), False, False, True),
    "r-maritime-nzl-jpn": ("RESTRICTED", ("NZL", "JPN"), ("MARITIME",), False, False, True),
    "r-maritime-nzl": ("RESTRICTED", ("NZL",), ("MARITIME",), False, False, False),
    "c-maritime-nzl-jpn": ("CONFIDENTIAL", ("NZL", "JPN"), ("MARITIME",), False, False, False),
    "u-maritime-acs-gov": ("UNCLASSIFIED", ALL, ("MARITIME",), True, False, False),
    "u-no-community": ("UNCLASSIFIED", ALL, (), False, False, False),
    "r-no-community-fji": ("RESTRICTED", ("NZL", "FJI"), (), False, False, False),
}


def _courier(node: Node, party: str, pull: bool = False) -> int:
    with Courier(node) as courier:
        return courier.pull_once(party) if pull else courier.push_all(party)


def _ids(node: Node, who: str, kind: str | None = None) -> set[str]:
    principal = node.people.as_person(who)
    query = Query(types=(kind,) if kind else (), limit=10_000)
    _, rows = node.find(principal, node.default_collection().collection_id, query)
    return {row.object_id for row, _ in rows if row.object_type != "marking-definition"}


@pytest.fixture()
def pacific(tmp_path: Path) -> Iterator[dict[str, Node]]:
    nodes = {p: make_node(tmp_path / p.lower(), p, agreement="pacific-maritime.toml")
             for p in ("NZL", "JPN", "FJI")}
    for party, node in nodes.items():
        everything = ["MARITIME", "CLIMATE", "INFRASTRUCTURE", "ACS-ENTITY-GOV"]
        node.people.add("officer", party=party, clearance=TOP[party], communities=everything,
                        roles=["analyst", "publisher", "security-officer"], password=PW)
    nodes["FJI"].people.add("lagi", party="FJI", clearance="RESTRICTED",
                            communities=["CLIMATE"], password=PW)
    pin_each_other(*nodes.values())
    yield nodes
    for node in nodes.values():
        node.close()


def _ingest(node: Node, lines: list[bytes], marking: MarkingRequest) -> set[str]:
    person = node.people.as_person("officer").person
    cid = node.default_collection().collection_id
    before = _ids(node, "officer")
    run = AisIngest(node.publisher, person, cid, marking=marking, rules=load_rules(None))
    summary = run.run(iter(b"".join(lines).splitlines(keepends=True)))
    assert summary.rejected == 0 and summary.accepted > 0, summary.failures
    return _ids(node, "officer") - before


def _publish(nzl: Node) -> dict[str, str]:
    person = nzl.people.as_person("officer").person
    cid = nzl.default_collection().collection_id
    made = {}
    for name, (level, rel, communities, acs, _, _) in CASES.items():
        obj: dict[str, Any] = indicator(name)
        items: list[dict[str, Any]] = [obj]
        if acs:
            obj["object_marking_refs"] = [ACS_GOV["id"]]
            items.insert(0, ACS_GOV)
        status = nzl.publisher.publish(person, cid, items, marking=MarkingRequest(
            level, rel, (), communities))
        assert status.body["failure_count"] == 0, status.body
        made[name] = obj["id"]
    return made


def test_a_statement_marking_goes_with_the_picture(pacific: dict[str, Node]) -> None:
    """A statement marking (terms of use) marks nothing, so it names no community; under
    the arrangement's community rule it must still reach Fiji with the objects citing
    it, or Fiji would refuse them as citing an unknown marking-definition."""
    nzl, fji = pacific["NZL"], pacific["FJI"]
    terms = {"type": "marking-definition", "spec_version": "2.1",
             "id": "marking-definition--2f0c6a4e-8d1b-4c3e-9f5a-7e6d5c4b3a21",
             "created": "2026-01-01T00:00:00.000Z", "definition_type": "statement",
             "definition": {"statement": "For maritime surveillance only."}}
    sighting = dict(indicator("under terms"), object_marking_refs=[terms["id"]])
    status = nzl.publisher.publish(nzl.people.as_person("officer").person,
                                   nzl.default_collection().collection_id, [terms, sighting],
                                   marking=MarkingRequest("UNCLASSIFIED", ALL, (),
                                                          ("MARITIME",)))
    assert status.body["failure_count"] == 0, status.body
    with serving_federation(fji):
        assert _courier(nzl, "FJI") > 0
    assert {row.object_id for row in fji.store.held([terms["id"], sighting["id"]])} == {
        terms["id"], sighting["id"]}
    assert not fji.store.refusals()


def _taxii_ids(url: str, cid: str, who: str) -> set[str]:
    ids: set[str] = set()
    params: dict[str, str] = {"limit": "1000"}
    with httpx.Client(verify=False, timeout=30) as client:
        while True:
            r = client.get(f"{url}/intel/collections/{cid}/objects/", params=params,
                           headers={"Accept": TAXII}, auth=(who, PW))
            assert r.status_code == 200, r.text
            body = r.json()
            ids |= {o["id"] for o in body.get("objects", [])}
            if not body.get("more"):
                return ids
            params["next"] = body["next"]


def test_fiji_gets_exactly_the_arrangements_communities_at_its_covered_levels(
        pacific: dict[str, Node], tmp_path: Path) -> None:
    nzl, jpn, fji = pacific["NZL"], pacific["JPN"], pacific["FJI"]
    # the maritime picture, ingested at NZL under the default marking (U // MARITIME // all)
    picture = _ingest(nzl, SAMPLE.read_bytes().splitlines(keepends=True),
                      default_marking(nzl.agreement))
    assert len(picture) > 300
    # and a picture for Japan only: RESTRICTED // MARITIME // REL TO NZL, JPN
    feed = [static(412000007, T0, "NZ-JPN ONLY")]
    feed += [position(412000007, T0 + 60 * i, -18.0, 178.0 + 0.01 * i) for i in range(5)]
    bilateral = _ingest(nzl, feed, MarkingRequest("RESTRICTED", ("NZL", "JPN"), (),
                                                  ("MARITIME",)))
    assert len(bilateral) == 2  # the vessel and its track
    made = _publish(nzl)

    with serving_federation(nzl), serving_federation(jpn), serving_federation(fji):
        assert _courier(nzl, "FJI") > 0 and _courier(nzl, "JPN") > 0
        _courier(fji, "NZL", pull=True)  # what NZL's outbox offers FJI: the same
        _courier(jpn, "FJI")  # JPN holds NZL's objects: none is JPN's to pass on

    expect_fji = picture | {made[n] for n, case in CASES.items() if case[4]}
    expect_jpn = picture | bilateral | {made[n] for n, case in CASES.items() if case[5]}
    assert _ids(fji, "officer") == expect_fji
    assert _ids(jpn, "officer") == expect_jpn
    # FJI holds nothing else at all, whoever might ask (the store, not a person's view)
    held = {row.object_id for row in fji.store.held(sorted(
        bilateral | set(made.values()) | picture))}
    assert held == expect_fji
    # what reached FJI came with the arrangement's communities and covered levels
    labels = fji.store.labels()
    covered = {fji.agreement.rows[r].name for r in fji.agreement.covered}
    for row in fji.store.held(sorted(expect_fji)):
        label = labels[row.banner_id]
        assert fji.agreement.rows[label.rank].name in covered
        assert label.rel_to is not None and "FJI" in label.rel_to
        named = {c for clause in label.communities for c in clause}
        assert named and named <= set(fji.agreement.communities)
    # NZL never queued the rest for FJI: no outbox row, delivered or waiting; FJI and
    # NZL recorded no refusal (nothing was offered that either had to refuse)
    to_fji = {d.object_id for d in nzl.store.disseminations() if d.party == "FJI"}
    labels_nzl = nzl.store.labels()
    used = {ref for row in fji.store.held(sorted(expect_fji))
            for ref in json.loads(row.body)["object_marking_refs"]}
    assert len(used) == 4 and ACS_GOV["id"] not in used  # U and R, MARITIME/CLIMATE/INFRA.
    assert to_fji == expect_fji | used and not nzl.store.pending("FJI", 10_000)
    assert all(d.receipt_id for d in nzl.store.disseminations() if d.party == "FJI")
    assert not fji.store.refusals() and not nzl.store.refusals()
    assert not {d.object_id for d in jpn.store.disseminations() if d.party == "FJI"}
    # REL TO Fiji without a community: the arrangement's rule, not REL TO, kept it home
    for name in ("u-no-community", "r-no-community-fji"):
        row = nzl.store.held([made[name]])[0]
        decision = nzl.policy.may_release(labels_nzl[row.banner_id],
                                          PartnerNode("FJI", nzl.agreement.id), holder="NZL",
                                          object_id=made[name])
        assert decision.rule == "community" and "names no community" in decision.reason

    # at FJI, over TAXII: the officer sees the picture; lagi (CLIMATE, not MARITIME) none
    cid = fji.default_collection().collection_id
    with serving(fji) as url:
        seen_by_officer = _taxii_ids(url, cid, "officer")
        seen_by_lagi = _taxii_ids(url, cid, "lagi")
    assert picture <= seen_by_officer
    assert not seen_by_lagi & picture
    assert seen_by_lagi - {i for i in seen_by_lagi if i.startswith("marking-definition")} == {
        made["r-climate"]}
    # and a node pinning the bilateral agreement cannot be a Pacific partner at all
    bilateral_nzl = make_node(tmp_path / "nzl-bilateral", "NZL")
    try:
        with pytest.raises(FederationError, match="agreement"):
            fji.federation.add_peer(make_card(bilateral_nzl.identity))
    finally:
        bilateral_nzl.close()
