"""Bad input, real corpora and deletion over a real TAXII server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from intelpact.maritime.nmea import Position
from intelpact.maritime.vessels import AIS_EXTENSION_ID, Track, sighting_object
from intelpact.model import national_marking
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import AuditFilter, Query, normalise_timestamp

from helpers import DATA, indicator, make_node, serving

TAXII = "application/taxii+json;version=2.1"
SUITE = DATA / "json" / "JSONTestSuite"
N_FILES = sorted(SUITE.glob("n_*.json"))
PW = "publisher-test-password"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, str, str]]:
    node = make_node(tmp_path_factory.mktemp("inputs") / "jpn")
    node.people.add("pub", party="JPN", clearance="機密",
                    roles=["analyst", "publisher", "security-officer"], password=PW)
    node.people.add("reader", party="JPN", clearance="秘", roles=["analyst"], password=PW)
    node.people.add("nz", party="NZL", clearance="TOP SECRET", roles=["analyst"], password=PW)
    with serving(node) as url:
        yield node, url, node.default_collection().collection_id
    node.close()


def post(url: str, cid: str, body: bytes, who: str = "pub") -> httpx.Response:
    return httpx.post(f"{url}/intel/collections/{cid}/objects/", content=body, auth=(who, PW),
                      headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=30)


@pytest.mark.parametrize("path", N_FILES, ids=lambda p: p.name)
def test_jsontestsuite_n_files_are_400_and_change_nothing(served: tuple[Node, str, str],
                                                          path: Path) -> None:
    node, url, cid = served
    before = node.store.count(cid)
    r = post(url, cid, path.read_bytes())
    assert r.status_code == 400, (path.name, r.status_code, r.text[:200])
    body = r.json()
    assert body["http_status"] == "400" and body["title"] and body["description"]
    assert node.store.count(cid) == before


@pytest.mark.parametrize("body,reason", [
    (b"[1, 2]", "Bad envelope"),
    (b'{"objects": {}}', "Bad envelope"),
    (b'{"objects": [], "x": 1}', "Bad envelope"),
    (b'{"objects": [NaN]}', "Malformed JSON"),
    (b"[" * 100_000, "Malformed JSON"),
    (b'{"objects": [1]}\xff', "Malformed JSON"),
])
def test_bad_envelopes_are_400(served: tuple[Node, str, str], body: bytes, reason: str) -> None:
    node, url, cid = served
    r = post(url, cid, body)
    assert r.status_code == 400 and r.json()["title"] == reason


def test_invalid_stix_is_reported_per_object_and_valid_objects_stored(
        served: tuple[Node, str, str]) -> None:
    node, url, cid = served
    marking = national_marking(node.agreement, "JPN", "秘", rel_to=["NZL"])
    good = indicator("good one", object_marking_refs=[marking["id"]])
    invalid_dir = DATA / "stix" / "invalid"
    bad = [json.loads((invalid_dir / name).read_text())
           for name in ("invalid_identity.json", "invalid_timestamp.json")]
    r = post(url, cid, json.dumps({"objects": [marking, good, *bad]}).encode())
    assert r.status_code == 202
    status = r.json()
    assert status["success_count"] == 2 and status["failure_count"] == 2
    messages = " | ".join(f["message"] for f in status["failures"])
    assert "modified" in messages
    assert node.store.query(cid, node.access.readable(node.people.as_person("pub").person),
                            Query(ids=(good["id"],))).rows


def test_a_bundle_among_an_envelopes_objects_is_refused_and_not_stored(
        served: tuple[Node, str, str]) -> None:
    """A bundle is not a STIX object. Posted among an envelope's objects, it passed
    validation as a whole and was stored as one object of type 'bundle', labelled by its
    own markings: the objects inside it (here another party's) were never labelled,
    checked for their originator or release, or signed on their own."""
    node, url, cid = served
    marking = national_marking(node.agreement, "JPN", "秘", rel_to=["NZL"])
    theirs = national_marking(node.agreement, "NZL", "SECRET")
    inside = indicator("another party's", object_marking_refs=[theirs["id"]])
    bundle = {"type": "bundle", "id": "bundle--3d4ae0a4-4b3a-4ab4-9a51-4b2f3c1d7e8f",
              "objects": [theirs, inside], "object_marking_refs": [marking["id"]]}
    r = post(url, cid, json.dumps({"objects": [marking, bundle]}).encode())
    assert r.status_code == 202
    status = r.json()
    assert status["success_count"] == 1 and status["failures"] == [
        {"id": bundle["id"], "message": "a bundle cannot be inside a bundle or envelope"}]
    assert not node.store.held([bundle["id"], inside["id"]])


def test_a_timestamp_beyond_nanoseconds_is_refused_alone(
        served: tuple[Node, str, str]) -> None:
    """STIX puts no bound on a timestamp's fractional digits, but the store reads at most
    9. An object with more passed validation, then raised ValueError when its version
    was read: a 500, and the valid objects beside it were lost with it."""
    node, url, cid = served
    marking = national_marking(node.agreement, "JPN", "秘", rel_to=["NZL"])
    good = indicator("beside a long timestamp", object_marking_refs=[marking["id"]])
    ten = "2026-11-01T00:00:00.0000000001Z"
    long = indicator("long timestamp", created=ten, modified=ten,
                     object_marking_refs=[marking["id"]])
    r = post(url, cid, json.dumps({"objects": [marking, good, long]}).encode())
    assert r.status_code == 202, r.text
    status = r.json()
    assert status["success_count"] == 2 and status["failures"] == [
        {"id": long["id"], "message": "property 'created' has more than 9 fractional digits, "
         f"beyond the nanoseconds intelpact reads: found '{ten}'"}]
    assert node.store.held([good["id"]]) and not node.store.held([long["id"]])


def test_a_malformed_ais_track_is_refused_with_its_reason(
        served: tuple[Node, str, str]) -> None:
    """One stored position whose latitude is not a number would break the console's map
    for everyone who may see it: publish checks the AIS extension's shape, per object."""
    node, url, cid = served
    marking = national_marking(node.agreement, "JPN", "秘", rel_to=["NZL"])
    t = 1_790_000_000.0
    good = sighting_object("JPN", Track(431000001, t, [
        Position(431000001, t, 35.0, 140.0, 12.5, 45.0, 44, 1)]), 600)
    hostile = []
    for i, lat in enumerate(("north", [35], 95)):
        obj = sighting_object("JPN", Track(431000002 + i, t, [
            Position(431000002 + i, t, 35.0, 140.0, None, None, None, 1)]), 600)
        obj["extensions"][AIS_EXTENSION_ID]["track"][0]["lat"] = lat
        hostile.append(obj)
    refs = {"object_marking_refs": [marking["id"]]}
    r = post(url, cid, json.dumps({"objects": [
        marking, {**good, **refs}, *({**h, **refs} for h in hostile)]}).encode())
    assert r.status_code == 202
    status = r.json()
    assert status["success_count"] == 2 and status["failure_count"] == 3, status
    failures = {f["id"]: f["message"] for f in status["failures"]}
    assert failures == {h["id"]: "the intelpact AIS extension (extension-definition--e8cf8e2a-"
                        "cefe-4a52-b04f-b0eff1e3510b): track[0] 'lat' must be a latitude (a "
                        f"number from -90 to 90): found {found}"
                        for h, found in zip(hostile, ("'north'", "[35]", "95"), strict=True)}
    assert not node.store.held([h["id"] for h in hostile])
    assert node.store.held([good["id"]])


def test_naughty_strings_round_trip_exactly(served: tuple[Node, str, str]) -> None:
    node, url, cid = served
    strings = json.loads((DATA / "json" / "naughty-strings" / "blns.json").read_text())
    marking = national_marking(node.agreement, "JPN", "指定なし", rel_to=["NZL"])
    objects = [indicator(f"naughty {i}", description=s or "(empty)",
                         object_marking_refs=[marking["id"]]) for i, s in enumerate(strings)]
    r = post(url, cid, json.dumps({"objects": [marking, *objects]}, ensure_ascii=False)
             .encode("utf-8"))
    assert r.status_code == 202 and r.json()["failure_count"] == 0, r.json()["failures"][:3]
    wanted = {o["id"]: o["description"] for o in objects}
    got: dict[str, str] = {}
    nxt = None
    while True:
        params = {"match[type]": "indicator", "limit": "200"}
        if nxt:
            params["next"] = nxt
        page = httpx.get(f"{url}/intel/collections/{cid}/objects/", params=params,
                         auth=("nz", PW), headers={"Accept": TAXII}).json()
        got.update({o["id"]: o["description"] for o in page.get("objects", [])
                    if o["id"] in wanted})
        if not page["more"]:
            break
        nxt = page["next"]
    assert got == wanted


def test_delete_for_every_kind_of_principal(served: tuple[Node, str, str]) -> None:
    node, url, cid = served
    pub = node.people.as_person("pub").person
    hidden = indicator("jpn only secret")
    node.publisher.publish(pub, cid, [hidden], marking=MarkingRequest("極秘", ("JPN",)))
    path = f"{url}/intel/collections/{cid}/objects/{hidden['id']}/"
    # NZ reader: cannot see it, so it does not exist (404, same as a missing id)
    r = httpx.delete(path, auth=("nz", PW), headers={"Accept": TAXII})
    missing = httpx.delete(f"{url}/intel/collections/{cid}/objects/"
                           "indicator--00000000-0000-4000-8000-000000000001/",
                           auth=("nz", PW), headers={"Accept": TAXII})
    assert r.status_code == missing.status_code == 404 and r.json() == missing.json()
    # a JPN reader below its level: same
    assert httpx.delete(path, auth=("reader", PW), headers={"Accept": TAXII}).status_code == 404
    visible = indicator("visible to reader")
    node.publisher.publish(pub, cid, [visible], marking=MarkingRequest("秘", ("JPN",)))
    r = httpx.delete(f"{url}/intel/collections/{cid}/objects/{visible['id']}/",
                     auth=("reader", PW), headers={"Accept": TAXII})
    assert r.status_code == 403  # sees it, but is no security officer
    r = httpx.delete(path, auth=("pub", PW), headers={"Accept": TAXII})
    assert r.status_code == 200
    assert httpx.get(path, auth=("pub", PW), headers={"Accept": TAXII}).status_code == 404


def test_a_liaison_officer_deletes_nothing_at_the_host_node(
        served: tuple[Node, str, str]) -> None:
    """An NZL officer posted at JPN's node with the security-officer role (a liaison)
    deleted JPN's objects over TAXII: only the role was checked. A node's own officer
    administers its store (Policy.acts_for_node, rule party): the liaison is refused,
    403 for an object they may see (audited as a denial with the reason, under its
    originator), 404 for one they may not, as for an id held nowhere."""
    node, url, cid = served
    node.people.add("nz-officer", party="NZL", clearance="TOP SECRET",
                    roles=["analyst", "security-officer"], password=PW)
    pub = node.people.as_person("pub").person
    shared, hidden = indicator("shared with the liaison"), indicator("JPN eyes only")
    for obj, rel in ((shared, ("JPN", "NZL")), (hidden, ("JPN",))):
        status = node.publisher.publish(pub, cid, [obj], marking=MarkingRequest("秘", rel))
        assert status.body["failure_count"] == 0, status.body["failures"]

    def delete(oid: str) -> httpx.Response:
        return httpx.delete(f"{url}/intel/collections/{cid}/objects/{oid}/",
                            auth=("nz-officer", PW), headers={"Accept": TAXII})

    r = delete(shared["id"])
    assert r.status_code == 403, r.text
    assert "only JPN's people delete objects for JPN's node" in r.json()["description"]
    assert delete(hidden["id"]).json() == delete(
        "indicator--00000000-0000-4000-8000-000000000003").json()
    assert delete(hidden["id"]).status_code == 404
    assert len(versions_held(node, cid, shared["id"])) == 1
    assert len(versions_held(node, cid, hidden["id"])) == 1
    assert not delete_events(node, shared["id"]) and not delete_events(node, hidden["id"])
    refused = [e for e in (json.loads(r.body) for r in node.store.find_audit(
        AuditFilter(kinds=("deny",)))) if e.get("via") == "delete"
        and e["objects"][0][0] == shared["id"]]
    assert refused and all(e["originator"] == "JPN" and "NZL national" in e["reason"]
                           for e in refused)


def test_an_officers_delete_refused_by_clearance_is_audited_with_the_reason(
        served: tuple[Node, str, str]) -> None:
    """A security officer cleared to 秘 deletes an object whose first version is 秘 and
    whose second is 極秘: the first is deleted, the second is left and audited as denied
    with the reason, under its originator; deleting it again (nothing they may see) is a
    404 audited the same way, and an id held nowhere a 404 audited as no such object.
    An officer's delete that found nothing they could see was a 404 recorded nowhere."""
    node, url, cid = served
    node.people.add("low-officer", party="JPN", clearance="秘", roles=["security-officer"],
                    password=PW)
    pub = node.people.as_person("pub").person
    obj = indicator("half hidden")
    for modified, level in (("2026-11-01T00:00:00.000Z", "秘"),
                            ("2026-11-02T00:00:00.000Z", "極秘")):
        status = node.publisher.publish(pub, cid, [dict(obj, modified=modified)],
                                        marking=MarkingRequest(level, ("JPN",)))
        assert status.body["failure_count"] == 0, status.body["failures"]
    first, second = versions_held(node, cid, obj["id"])
    nobody = "indicator--00000000-0000-4000-8000-000000000002"

    def delete(oid: str) -> int:
        return httpx.delete(f"{url}/intel/collections/{cid}/objects/{oid}/",
                            auth=("low-officer", PW), headers={"Accept": TAXII}).status_code

    def denials() -> list[tuple[str | None, list[list[str]], str]]:
        return [(e.get("originator"), e["objects"], e["reason"]) for e in (
            json.loads(r.body) for r in node.store.find_audit(AuditFilter(kinds=("deny",))))
            if e.get("via") == "delete" and e["objects"][0][0] in (obj["id"], nobody)]

    assert delete(obj["id"]) == 200
    assert versions_held(node, cid, obj["id"]) == [second]
    assert delete_events(node, obj["id"]) == [[[obj["id"], first]]]
    ((origin, objects, reason),) = denials()
    assert origin == "JPN" and objects == [[obj["id"], second]]
    assert "clearance" in reason, reason
    assert delete(obj["id"]) == delete(nobody) == 404
    assert denials()[1:] == [("JPN", [[obj["id"], second]], reason),
                             (None, [[nobody, ""]], "no such object")]
    assert versions_held(node, cid, obj["id"]) == [second]


def three_versions(node: Node, cid: str) -> str:
    pub = node.people.as_person("pub").person
    obj = indicator("three versions")
    for day in ("01", "02", "03"):
        status = node.publisher.publish(pub, cid, [dict(obj, modified=f"2026-11-{day}T00:00:"
                                                        "00.000Z")],
                                        marking=MarkingRequest("秘", ("NZL",)))
        assert status.body["failure_count"] == 0, status.body
    return str(obj["id"])


def versions_held(node: Node, cid: str, oid: str) -> list[str]:
    return [r.version for r in node.store.query(cid, list(node.store.labels()), Query(
        ids=(oid,), versions=("all",), limit=100)).rows]


def delete_events(node: Node, oid: str) -> list[list[list[str]]]:
    return [json.loads(e.body)["objects"] for e in node.store.find_audit(
        AuditFilter(kinds=("delete",))) if oid in e.body]


def test_delete_audits_exactly_what_it_deletes(served: tuple[Node, str, str]) -> None:
    """TAXII 2.1 §5.8 filters a delete by match[version] (every version by default) and
    match[spec_version], nothing else: other parameters are refused, not half-honoured
    (the audit once followed a GET's filters while the store deleted every version). The
    rows deleted and the event naming them are one transaction."""
    node, url, cid = served
    oid = three_versions(node, cid)
    path = f"{url}/intel/collections/{cid}/objects/{oid}/"
    every = versions_held(node, cid, oid)
    for params in ({"added_after": "2099-01-01T00:00:00Z"}, {"limit": "1"},
                   {"next": "1"}, {"match[type]": "indicator"}, {"match[id]": oid}):
        r = httpx.delete(path, params=params, auth=("pub", PW), headers={"Accept": TAXII})
        assert r.status_code == 400, (params, r.text)
        assert "DELETE takes match[version] and match[spec_version] only" in r.text
    r = httpx.delete(path, params={"match[spec_version]": "2.0"}, auth=("pub", PW),
                     headers={"Accept": TAXII})
    assert r.status_code == 404  # no STIX 2.0 version: nothing deleted
    assert versions_held(node, cid, oid) == every and delete_events(node, oid) == []
    r = httpx.delete(path, params={"match[version]": every[0]}, auth=("pub", PW),
                     headers={"Accept": TAXII})
    assert r.status_code == 200 and versions_held(node, cid, oid) == every[1:]
    r = httpx.delete(path, params={"match[spec_version]": "2.1"}, auth=("pub", PW),
                     headers={"Accept": TAXII})
    assert r.status_code == 200 and versions_held(node, cid, oid) == []
    assert delete_events(node, oid) == [[[oid, every[0]]], [[oid, v] for v in every[1:]]]


def test_attack_18_then_17_gives_the_right_versions(tmp_path: Path) -> None:
    node = make_node(tmp_path / "attack")
    node.people.add("pub", party="JPN", clearance="機密", roles=["analyst", "publisher"],
                    password=PW)
    pub = node.people.as_person("pub")
    cid = node.default_collection().collection_id
    bundles = {}
    for release in ("18.1", "17.0"):
        bundle = json.loads((DATA / "stix" / "attack-ics" / f"ics-attack-{release}.json")
                            .read_text())
        bundles[release] = {o["id"]: o for o in bundle["objects"]}
        status = node.publisher.publish(pub.person, cid, bundle["objects"],
                                        marking=MarkingRequest("指定なし", ("NZL",)))
        fails = status.body["failures"]
        # The same (id, modified) with a different body is refused, never merged.
        for f in fails:
            assert "immutable" in f["message"], f
    new, old = bundles["18.1"], bundles["17.0"]
    both = [i for i in new if i in old and new[i].get("modified") != old[i].get("modified")
            and new[i]["type"] != "marking-definition"]
    assert both, "expected objects that changed between releases"
    for oid in both[:50]:
        page, visible = node.find(pub, cid, Query(ids=(oid,)))
        (row, body) = visible[0]
        assert row.version == normalise_timestamp(max(new[oid]["modified"],
                                                      old[oid]["modified"]))
        versions = node.find(pub, cid, Query(ids=(oid,), versions=("all",)))[1]
        assert len(versions) == 2
    node.close()
