"""A publisher at the node probing, through what publishing answers, what they may not
read, or lowering what others published (found in review: each docstring says what the
node did before its fix; one known, unfixed, is a strict xfail)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from intelpact.interfaces.cli import main
from intelpact.model import national_marking
from intelpact.model.markings import ACS_EXTENSION_ID
from intelpact.services.courier import Courier
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import StoreFull

from helpers import T0, indicator, make_node, pin_each_other, serving, serving_federation

TAXII = "application/taxii+json;version=2.1"
PW = "review-pub-password"


def _people(node: Node) -> None:
    node.people.add("pub", party="JPN", clearance="機密", caveats=["JPNEO"],
                    roles=["analyst", "publisher", "security-officer"], password=PW)
    node.people.add("ren", party="JPN", clearance="秘", roles=["analyst", "publisher"],
                    password=PW)
    node.people.add("bo", party="JPN", clearance="秘", roles=["analyst"], password=PW)
    node.people.add("nz", party="NZL", clearance="SECRET", roles=["analyst"], password=PW)


def _jpn_and_nzl(tmp_path: Path, *communities: str) -> tuple[Node, Node]:
    """JPN's node, with the people above, pinned to NZL's, where "mere" (TOP SECRET, of
    ``communities``) publishes (:func:`_nz_publishes`)."""
    jpn = make_node(tmp_path / "jpn", "JPN")
    nzl = make_node(tmp_path / "nzl", "NZL")
    pin_each_other(jpn, nzl)
    _people(jpn)
    nzl.people.add("mere", party="NZL", clearance="TOP SECRET", communities=list(communities),
                   roles=["analyst", "publisher"], password=PW)
    return jpn, nzl


def _nz_publishes(nzl: Node, obj: dict[str, Any], *communities: str) -> None:
    """``obj`` published at NZL's node as NZ SECRET REL TO JPN, of ``communities``."""
    status = nzl.publisher.publish(nzl.people.as_person("mere").person,
                                   nzl.default_collection().collection_id, [obj],
                                   marking=MarkingRequest("SECRET", ("JPN",), (), communities))
    assert status.body["failure_count"] == 0, status.body


def _post(url: str, cid: str, who: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    r = httpx.post(f"{url}/intel/collections/{cid}/objects/", auth=(who, PW),
                   headers={"Accept": TAXII, "Content-Type": TAXII},
                   json={"objects": objects}, timeout=60)
    assert r.status_code == 202, r.text
    return r.json()


def _get(url: str, cid: str, who: str, oid: str, **params: str) -> httpx.Response:
    return httpx.get(f"{url}/intel/collections/{cid}/objects/{oid}/", auth=(who, PW),
                     headers={"Accept": TAXII}, params=params, timeout=30)


def _outcomes(status: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    out = {s["id"]: (True, s.get("message", "")) for s in status["successes"]}
    out.update({f["id"]: (False, f["message"]) for f in status["failures"]})
    return out


def _acs(mid: str, classification: str) -> dict[str, Any]:
    return {"type": "marking-definition", "spec_version": "2.1", "id": mid, "created": T0,
            "extensions": {ACS_EXTENSION_ID: {"extension_type": "property-extension",
                                              "control_set": {
                                                  "classification": classification}}}}


def test_an_object_citing_a_definition_refused_with_it_is_refused(
        tmp_path: Path) -> None:
    """ren (cleared 秘) POSTs an ACS marking-definition under id M saying U. Later pub
    POSTs the genuine definition under M (ACS S, e.g. from an AIS feed) with an indicator
    whose description is an M portion. The definition is refused ("a different
    marking-definition with this id is known"), but the indicator is stored all the
    same, labelled with ren's U body: its SECRET description is served to bo, cleared
    only 秘. (Federation refuses an object that cites a definition refused with it;
    the publish path does not.)"""
    node = make_node(tmp_path / "jpn")
    _people(node)
    cid = node.default_collection().collection_id
    mid = f"marking-definition--{uuid.uuid4()}"
    base = national_marking(node.agreement, "JPN", "秘", rel_to=["NZL"])
    obj = indicator("feed item", description="SECRET text", object_marking_refs=[base["id"]],
                    granular_markings=[{"selectors": ["description"], "marking_ref": mid}])
    with serving(node) as url:
        squat = _post(url, cid, "ren", [_acs(mid, "U")])
        assert squat["failure_count"] == 0, squat
        status = _post(url, cid, "pub", [base, _acs(mid, "S"), obj])
        said = _outcomes(status)
        assert said[mid][0] is False  # the genuine definition is refused
        got = _get(url, cid, "bo", obj["id"])
        served = [o.get("description") for o in got.json().get("objects", [])] \
            if got.status_code == 200 else []
        # the indicator should be refused (it cites a definition refused with it), or at
        # the very least never serve its SECRET portion to a 秘 reader
        assert said[obj["id"]][0] is False and "SECRET text" not in served, \
            (said[obj["id"]], served)
    node.close()


def test_a_national_definition_above_the_publisher_is_refused_whether_or_not_held(
        tmp_path: Path) -> None:
    """National marking ids are derived from the label. pub published an object marked
    極秘 // JPNEO // REL TO JPN (ren, cleared 秘 without JPNEO, may read none of it).
    ren POSTs that marking-definition, and one nobody used (極秘 // JPNEO // CLIMATE):
    the answers differ ("already stored (identical)" vs "stored"), so ren learns that
    material under a label above them is held here. Neither definition should be
    accepted from ren at all (its label is above them), or both should be answered
    alike."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    cid = node.default_collection().collection_id
    pub = node.people.as_person("pub").person
    status = node.publisher.publish(pub, cid, [indicator("eyes only")],
                                    marking=MarkingRequest("極秘", (), ("JPNEO",)))
    assert status.body["failure_count"] == 0, status.body
    used = national_marking(node.agreement, "JPN", "極秘", caveats=["JPNEO"])
    unused = national_marking(node.agreement, "JPN", "極秘", caveats=["JPNEO"],
                              communities=["CLIMATE"])
    with serving(node) as url:
        said_used = _outcomes(_post(url, cid, "ren", [used]))[used["id"]]
        said_unused = _outcomes(_post(url, cid, "ren", [unused]))[unused["id"]]
    node.close()
    assert said_used == said_unused, (said_used, said_unused)


def test_a_version_older_than_a_reclassification_is_held_at_its_join(
        tmp_path: Path) -> None:
    """X is 秘 REL TO JPN, NZL; pub reclassifies it "Japan only" (秘, REL TO JPN): its
    old version is joined with the new marking, so the NZ liaison reads none of X. pub
    (or any publisher who may read the latest) then POSTs a version of X dated between
    the two, same text, marked 秘 REL TO JPN, NZL: it is stored at that label, not at
    the join a reclassification kept here gives every older version (as federation's
    receive and the Relabeller do), and the NZ liaison reads it."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    cid = node.default_collection().collection_id
    pub = node.people.as_person("pub")
    x = indicator("X", description="the text Japan withdrew")
    status = node.publisher.publish(pub.person, cid, [x], marking=MarkingRequest("秘", ("NZL",)))
    assert status.body["failure_count"] == 0, status.body
    node.controls.reclassify(pub, x["id"], MarkingRequest("秘", ()), collection_id=cid,
                             reason="Japan only")
    nz = node.people.as_person("nz")
    assert node.get(nz, x["id"]) == []
    between = dict(x, modified="2026-11-15T00:00:00.000Z")
    mark = national_marking(node.agreement, "JPN", "秘", rel_to=["NZL"])
    between["object_marking_refs"] = [mark["id"]]
    with serving(node) as url:
        status2 = _post(url, cid, "pub", [between])
        served = _get(url, cid, "nz", x["id"], **{"match[version]": "all"})
    texts = [o.get("description") for o in served.json().get("objects", [])] \
        if served.status_code == 200 else []
    # refused, or held at the join (秘 REL TO JPN): never served to the NZ liaison
    assert texts == [], (_outcomes(status2), texts)
    node.close()


def _sco_id(kind: str, value: str) -> str:
    """A STIX 2.1 SCO's deterministic id (UUIDv5 over its id-contributing property)."""
    ns = uuid.UUID("00abedb4-aa42-466c-9c01-fed23315a9b7")
    return f"{kind}--{uuid.uuid5(ns, json.dumps({'value': value}, separators=(',', ':')))}"


def _ipv4(value: str, **extra: Any) -> dict[str, Any]:
    return {"type": "ipv4-addr", "spec_version": "2.1", "id": _sco_id("ipv4-addr", value),
            "value": value, **extra}


@pytest.mark.xfail(strict=True, reason="known, not fixed: an SCO's id is its value, and a "
                   "version of it held above the publisher refuses theirs (docs/node.md, "
                   "Publishing)")
def test_a_hidden_observable_s_value_is_told_by_the_refusal_of_its_id(
        tmp_path: Path) -> None:
    """pub publishes the observable ipv4-addr 203.0.113.9 at 極秘, Japan only. An SCO's id
    is derived from its value, so ren (cleared 秘) can compute it: ren POSTs that
    address, and another one held nowhere, both marked 秘. The first is refused "held
    here in a version you may not read", the second stored: ren learns that the node
    holds 203.0.113.9 in material above their clearance. (docs/node.md accepts that the
    refusal tells an id is taken; for an SCO the id *is* the value.)"""
    node = make_node(tmp_path / "jpn")
    _people(node)
    cid = node.default_collection().collection_id
    pub = node.people.as_person("pub").person
    status = node.publisher.publish(pub, cid, [_ipv4("203.0.113.9")],
                                    marking=MarkingRequest("極秘", ()))
    assert status.body["failure_count"] == 0, status.body
    mark = national_marking(node.agreement, "JPN", "秘", rel_to=["NZL"])
    held = _ipv4("203.0.113.9", object_marking_refs=[mark["id"]])
    fresh = _ipv4("203.0.113.10", object_marking_refs=[mark["id"]])
    with serving(node) as url:
        said = _outcomes(_post(url, cid, "ren", [mark, held, fresh]))
    node.close()
    assert said[held["id"]][0] == said[fresh["id"]][0], said


def test_no_one_here_re_versions_an_object_received_from_its_originator(
        tmp_path: Path) -> None:
    """NZL's node releases X (NZ SECRET, REL TO NZL, JPN) to JPN. At JPN's node a NZ
    liaison officer ("kiri", NZL, SECRET, given the publisher role) POSTs a new version
    of X marked NZ RESTRICTED: accepted, since kiri's party is X's originator. JPN's node
    now serves it as X's latest version, and bo (JPN, 秘, who could not read NZ SECRET)
    reads it: NZL's object was downgraded at the holder, outside NZL's node, and never
    signed by NZL. (configuration.md: people of other parties may be added, "the node
    publishes as this party"; node.md: only an object's originator issues its
    versions.)"""
    jpn, nzl = _jpn_and_nzl(tmp_path)
    jpn.people.add("kiri", party="NZL", clearance="SECRET", roles=["analyst", "publisher"],
                   password=PW)
    x = indicator("NZ's X", description="NZ SECRET text")
    _nz_publishes(nzl, x)
    with serving_federation(jpn), Courier(nzl) as courier:
        assert courier.push_all("JPN") >= 1
    cid = jpn.default_collection().collection_id
    bo = jpn.people.as_person("bo")
    assert jpn.get(bo, x["id"]) == []
    low = national_marking(jpn.agreement, "NZL", "RESTRICTED", rel_to=["JPN"])
    lowered = dict(x, modified="2026-11-02T00:00:00.000Z", object_marking_refs=[low["id"]])
    with serving(jpn) as url:
        said = _outcomes(_post(url, cid, "kiri", [low, lowered]))
    served = [o.get("description") for o in jpn.get(bo, x["id"])]
    jpn.close()
    nzl.close()
    assert said[x["id"]][0] is False and served == [], (said[x["id"]], served)


def test_the_cli_publishes_only_as_a_person_with_the_publisher_role(tmp_path: Path) -> None:
    """`intelpact publish DIR FILE --as bo` where bo has only the analyst role: the
    objects are stored and audited as published by bo. TAXII POST answers 403
    "publishing needs the publisher role" and the console's /publish needs it too;
    `reclassify --as` refuses a person without publisher or security-officer."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    node.close()
    bundle = tmp_path / "one.json"
    obj = indicator("by an analyst")
    bundle.write_text(json.dumps({"type": "bundle", "id": f"bundle--{uuid.uuid4()}",
                                   "objects": [obj]}), encoding="utf-8")
    result = CliRunner().invoke(main, ["publish", str(tmp_path / "jpn"), str(bundle),
                                       "--as", "bo", "--classification", "秘"])
    again = Node.open(tmp_path / "jpn")
    held = again.store.held([obj["id"]])
    again.close()
    assert result.exit_code != 0 and held == [], (result.exit_code, result.output)


def test_a_publication_refused_whole_forgets_the_marking_it_learnt(
        tmp_path: Path, monkeypatch: Any) -> None:
    """The first publication under a new marking fails as the disk is full (StoreFull:
    "nothing of it is stored", "send again"). The publisher had learnt the new
    definition in memory before storing (Markings.add), and does not forget it: sent
    again, the node thinks the definition known, leaves it out (publish(): only an
    unknown one is added), and stores the object citing a marking-definition that is in
    no store. Another worker, a restart or a partner then cannot resolve it."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    cid = node.default_collection().collection_id
    pub = node.people.as_person("pub").person
    real = node.store.add_objects
    calls = {"n": 0}

    def full_once(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise StoreFull("database or disk is full")
        return real(*args, **kw)

    monkeypatch.setattr(node.store, "add_objects", full_once)
    marking = MarkingRequest("機密", ("NZL",))
    mid = national_marking(node.agreement, "JPN", "機密", rel_to=["NZL"])["id"]
    first = indicator("first try")
    with pytest.raises(StoreFull):  # nothing of it stored: "send again"
        node.publisher.publish(pub, cid, [first], marking=marking)
    again = node.publisher.publish(pub, cid, [first], marking=marking)
    said = _outcomes(again.body)
    stored_object = bool(node.store.held([first["id"]]))
    stored_definition = node.store.marking(mid) is not None
    node.close()
    assert said[first["id"]][0] and stored_object and stored_definition, \
        (said, stored_object, stored_definition)


def test_a_partner_s_national_definition_is_refused_alike_whether_or_not_held(
        tmp_path: Path) -> None:
    """NZL released to JPN an object marked NZ SECRET // MARITIME // REL TO NZL, JPN
    (its signed definition is stored at JPN). At JPN, ren (JPN, 秘, not in MARITIME, who
    may read none of it) POSTs that NZL definition (unsigned: ids are derived from the
    label) and one NZL never used (CLIMATE). The answers differ: the first is refused
    "held here in a version you may not read", the second "stored" (a JPN person
    storing an NZL-originated definition at that). Federation's receive takes care
    that the answer never tells a sender which of a party's markings the node holds;
    the publish path tells it to a local publisher."""
    jpn, nzl = _jpn_and_nzl(tmp_path, "MARITIME")
    _nz_publishes(nzl, indicator("NZ maritime"), "MARITIME")
    with serving_federation(jpn), Courier(nzl) as courier:
        assert courier.push_all("JPN") >= 1
    shared = national_marking(jpn.agreement, "NZL", "SECRET", rel_to=["JPN"],
                              communities=["MARITIME"])
    unused = national_marking(jpn.agreement, "NZL", "SECRET", rel_to=["JPN"],
                              communities=["CLIMATE"])
    assert jpn.store.marking(shared["id"]) is not None
    cid = jpn.default_collection().collection_id
    with serving(jpn) as url:
        said_shared = _outcomes(_post(url, cid, "ren", [shared]))[shared["id"]]
        said_unused = _outcomes(_post(url, cid, "ren", [unused]))[unused["id"]]
    jpn.close()
    nzl.close()
    assert said_shared == said_unused, (said_shared, said_unused)


def test_a_publisher_cannot_pre_empt_a_partner_s_national_definition(tmp_path: Path) -> None:
    """ren (JPN, 秘, analyst and publisher) POSTs at JPN the national marking-definition
    NZ SECRET // CLIMATE // REL TO NZL, JPN, unsigned (its id is derived from the label):
    it is stored ("stored"), an NZL-originated definition published by a JPN person and
    signed by no one. When NZL later releases an object under that marking, its genuine
    definition, signed by NZL, is refused at JPN at every push ("a different object with
    id … is already stored"), and JPN keeps holding (and would pass on) ren's unsigned
    copy. A person should publish no definition of another originator (as
    federation's receive takes a national definition only signed by its originator)."""
    jpn, nzl = _jpn_and_nzl(tmp_path, "CLIMATE")
    theirs = national_marking(jpn.agreement, "NZL", "SECRET", rel_to=["JPN"],
                              communities=["CLIMATE"])
    cid = jpn.default_collection().collection_id
    with serving(jpn) as url:
        said = _outcomes(_post(url, cid, "ren", [theirs]))[theirs["id"]]
    _nz_publishes(nzl, indicator("NZ climate"), "CLIMATE")
    with serving_federation(jpn), Courier(nzl) as courier:
        courier.push_all("JPN")
    refused = [r for r in jpn.store.refusals() if r[1] == theirs["id"]]
    jpn.close()
    nzl.close()
    assert said[0] is False and refused == [], (said, refused[:1])


def test_a_publisher_served_part_of_the_latest_version_does_not_replace_it(
        tmp_path: Path) -> None:
    """pub publishes X, 秘 REL TO NZL, whose description is a 機密 portion. ren (秘, a
    publisher) is served X with the description withheld (as the *withheld* extension
    tells them), and POSTs a new version of X with a description of their own, at 秘.
    It was stored: X's latest version, for every reader, was then ren's, and pub's
    機密 text was gone from it, though ren never read it. Only someone who may read all
    of the latest version issues the next one."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    cid = node.default_collection().collection_id
    base = national_marking(node.agreement, "JPN", "秘", rel_to=["NZL"])
    high = national_marking(node.agreement, "JPN", "機密", rel_to=["NZL"])
    x = indicator("X", description="機密 text", object_marking_refs=[base["id"]],
                  granular_markings=[{"selectors": ["description"],
                                      "marking_ref": high["id"]}])
    with serving(node) as url:
        assert _post(url, cid, "pub", [base, high, x])["failure_count"] == 0
        seen = _get(url, cid, "ren", x["id"]).json()["objects"]
        assert [o.get("description") for o in seen] == [None]  # withheld from ren
        mine = dict(x, modified="2026-11-02T00:00:00.000Z", description="ren's text")
        del mine["granular_markings"]
        said = _outcomes(_post(url, cid, "ren", [mine]))
        latest = _get(url, cid, "pub", x["id"]).json()["objects"]
    node.close()
    assert said[x["id"]][0] is False, said
    assert "may not read" in said[x["id"]][1]
    assert [o["description"] for o in latest] == ["機密 text"]
