"""The TAXII 2.1 API over a real server on 127.0.0.1, driven by taxii2-client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stix2validator
from taxii2client.v21 import ApiRoot, Collection, Server, as_pages

from intelpact.model import Markings, national_marking
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import normalise_timestamp

from helpers import DATA, T0, indicator, make_node, serving, stix_id

TAXII = "application/taxii+json;version=2.1"
PEOPLE = {
    # name: (party, clearance, roles, communities, caveats)
    "tanaka": ("JPN", "機密", ["analyst", "publisher", "security-officer"],
               ["MARITIME", "CLIMATE"], ["JPNEO"]),
    "sato": ("JPN", "秘", ["analyst"], ["MARITIME"], []),
    "suzuki": ("JPN", "取扱注意", ["analyst"], [], []),
    "aroha": ("NZL", "SECRET", ["analyst"], ["MARITIME"], []),
    "ops": ("JPN", "機密", ["operator"], ["MARITIME", "CLIMATE"], ["JPNEO"]),
}


def password(name: str) -> str:
    return f"{name}-test-password"


class World:
    """A populated JPN node behind a real server, and what each object is."""

    def __init__(self, node: Node, url: str, objects: dict[str, dict[str, Any]]) -> None:
        self.node = node
        self.url = url
        self.objects = objects  # object id -> latest body as published
        self.cid = node.default_collection().collection_id

    def collection(self, who: str) -> Collection:
        return Collection(f"{self.url}/intel/collections/{self.cid}/", user=who,
                          password=password(who))

    def get(self, who: str | None, path: str, **kw: Any) -> httpx.Response:
        headers = {"Accept": TAXII, **kw.pop("headers", {})}
        auth = (who, password(who)) if who else None
        return httpx.get(f"{self.url}{path}", headers=headers, auth=auth, **kw)

    def expected_visible(self, who: str) -> set[str]:
        """What the core model says ``who`` may see (base label), independent of the store."""
        principal = self.node.people.as_person(who)
        if not principal.has_role("analyst") and not principal.has_role("publisher") \
                and not principal.has_role("security-officer"):
            return set()
        markings = Markings(self.node.agreement)
        for body in self.node.store.markings():
            markings.add(json.loads(body))
        seen = set()
        for oid, obj in self.objects.items():
            labels = markings.label(obj)
            if self.node.policy.read_object(principal.person, labels).decision.allowed:
                seen.add(oid)
        return seen


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    node = make_node(tmp_path_factory.mktemp("taxii") / "jpn")
    for name, (party, clearance, roles, communities, caveats) in PEOPLE.items():
        node.people.add(name, party=party, clearance=clearance, roles=roles,
                        communities=communities, caveats=caveats, password=password(name))
    tanaka = node.people.as_person("tanaka").person
    a = node.agreement
    top = national_marking(a, "JPN", "機密", rel_to=["NZL"])
    cid = node.default_collection().collection_id
    node.publisher.publish(tanaka, cid, [top])
    plan = [
        ("open", "指定なし", ("JPN", "NZL"), (), ()),
        ("hi-rel-nzl", "秘", ("JPN", "NZL"), (), ()),
        ("gokuhi-rel-nzl", "極秘", ("JPN", "NZL"), (), ()),
        ("gokuhi-jpn-only", "極秘", ("JPN",), (), ()),
        ("kimitsu-jpneo", "機密", ("JPN",), ("JPNEO",), ()),
        ("maritime", "秘", ("JPN", "NZL"), (), ("MARITIME",)),
        ("climate", "秘", ("JPN", "NZL"), (), ("CLIMATE",)),
    ]
    objects: dict[str, dict[str, Any]] = {}
    for name, level, rel, caveats, communities in plan:
        obj = indicator(name)
        if name == "hi-rel-nzl":  # a portion above the object's level
            obj["granular_markings"] = [{"selectors": ["description"], "marking_ref": top["id"]}]
        status = node.publisher.publish(tanaka, cid, [obj], marking=MarkingRequest(
            level, rel, caveats, communities))
        assert status.body["failure_count"] == 0, status.body
        stored = node.get(node.people.as_person("tanaka"), obj["id"])[-1]
        objects[obj["id"]] = stored
    with serving(node) as url:
        yield World(node, url, objects)
    node.close()


def test_discovery_api_root_and_collections_with_taxii2_client(world: World) -> None:
    server = Server(f"{world.url}/taxii2/", user="aroha", password=password("aroha"))
    assert server.title
    root = server.default
    assert isinstance(root, ApiRoot)
    assert root.max_content_length == world.node.config.max_content_length
    assert "application/taxii+json;version=2.1" in root.versions
    (coll,) = root.collections
    assert coll.id == world.cid and coll.can_read and not coll.can_write
    publisher = Server(f"{world.url}/taxii2/", user="tanaka", password=password("tanaka"))
    assert publisher.default.collections[0].can_write


@pytest.mark.parametrize("who", sorted(PEOPLE))
def test_access_matrix_objects_manifest_versions_and_object(world: World, who: str) -> None:
    """For every endpoint, a principal sees exactly what the core model allows."""
    expected = world.expected_visible(who)
    coll = world.collection(who)
    if not expected and who == "ops":
        r = world.get(who, f"/intel/collections/{world.cid}/objects/")
        assert r.status_code == 403
        assert r.json()["http_status"] == "403"
        for oid in world.objects:
            assert world.get(who, f"/intel/collections/{world.cid}/objects/{oid}/"
                             ).status_code == 403
        return
    got = set()
    for page in as_pages(coll.get_objects, per_request=2):
        got.update(o["id"] for o in page.get("objects", []) if o["id"] in world.objects)
    assert got == expected
    manifest = coll.get_manifest()
    assert {m["id"] for m in manifest.get("objects", []) if m["id"] in world.objects} == expected
    for oid in world.objects:
        r_obj = world.get(who, f"/intel/collections/{world.cid}/objects/{oid}/")
        r_ver = world.get(who, f"/intel/collections/{world.cid}/objects/{oid}/versions/")
        if oid in expected:
            assert r_obj.status_code == 200 and r_obj.json()["objects"][0]["id"] == oid
            assert r_ver.status_code == 200 and len(r_ver.json()["versions"]) == 1
        else:  # indistinguishable from an object that does not exist
            missing = "indicator--00000000-0000-4000-8000-000000000000"
            r_none = world.get(who, f"/intel/collections/{world.cid}/objects/{missing}/")
            assert r_obj.status_code == r_none.status_code == 404
            assert r_obj.json() == r_none.json()
            assert r_ver.status_code == 404


def test_a_collection_is_served_under_its_alias_as_under_its_id(world: World) -> None:
    """TAXII 2.1 §5.2.1: a collection's ``alias`` may be used in place of its ``id`` in
    the URL. The node's collections announce one ("intel"), yet every URL naming it
    was 404 "no such collection"."""
    (info,) = world.get("sato", "/intel/collections/").json()["collections"]
    alias = info["alias"]
    assert alias != world.cid
    # (taxii2-client insists that a collection's URL ends in its id: raw requests here)
    info_by_alias = world.get("sato", f"/intel/collections/{alias}/").json()
    assert info_by_alias == world.get("sato", f"/intel/collections/{world.cid}/").json()
    oid = next(iter(world.expected_visible("sato")))
    for path in ("objects/", "manifest/", f"objects/{oid}/", f"objects/{oid}/versions/"):
        r_alias = world.get("sato", f"/intel/collections/{alias}/{path}")
        r_id = world.get("sato", f"/intel/collections/{world.cid}/{path}")
        assert r_alias.status_code == r_id.status_code == 200, (path, r_alias.text)
        assert r_alias.json() == r_id.json(), path
    # what is hidden by id is hidden by alias, byte for byte
    hidden = next(iter(set(world.objects) - world.expected_visible("suzuki")))
    for path in (f"objects/{hidden}/", f"objects/{hidden}/versions/"):
        r_alias = world.get("suzuki", f"/intel/collections/{alias}/{path}")
        r_id = world.get("suzuki", f"/intel/collections/{world.cid}/{path}")
        assert (r_alias.status_code, r_alias.content) == (r_id.status_code, r_id.content)
    assert world.get("ops", f"/intel/collections/{alias}/objects/").status_code == 403
    assert world.get("sato", "/intel/collections/no-such-alias/objects/").status_code == 404


def test_an_object_seen_whose_versions_are_all_filtered_out_is_an_empty_envelope(
        tmp_path: Path) -> None:
    """TAXII 2.1 §5.6: GET .../objects/{id}/ is 404 when the object is not there (for the
    reader: not one they may see). The node answered 404 too for an object the reader
    may see when no version of it passed the filters (match[version], added_after,
    match[spec_version]): an answer that said the object was not there, where it is an
    empty envelope. One they may not be served stays 404, byte for byte as an id held
    nowhere, whatever the filters."""
    node = make_node(tmp_path / "jpn")
    for name, clearance in (("pub", "機密"), ("sato", "秘"), ("suzuki", "取扱注意")):
        node.people.add(name, party="JPN", clearance=clearance, password=password(name),
                        roles=["analyst", "publisher"] if name == "pub" else ["analyst"])
    pub, cid = node.people.as_person("pub").person, node.default_collection().collection_id
    oid = stix_id("indicator")
    node.publisher.publish(pub, cid, [indicator("X", oid=oid)],
                           marking=MarkingRequest("秘", ("NZL",)))
    secret_version = "2026-11-02T00:00:00.000Z"  # a version sato may not read
    node.publisher.publish(pub, cid, [indicator("X", oid=oid, modified=secret_version)],
                           marking=MarkingRequest("極秘", ("JPN",)))
    missing = "indicator--00000000-0000-4000-8000-0000000000ab"
    filters = [{"match[version]": secret_version},
               {"match[version]": "2020-01-01T00:00:00Z"},  # held nowhere
               {"added_after": "2099-01-01T00:00:00Z"},
               {"match[spec_version]": "2.0"}]
    with serving(node) as url:
        def get(who: str, object_id: str, tail: str = "", **params: str) -> httpx.Response:
            return httpx.get(f"{url}/intel/collections/{cid}/objects/{object_id}/{tail}",
                             params=params, auth=(who, password(who)),
                             headers={"Accept": TAXII})

        assert get("sato", oid).json()["objects"][0]["modified"] == T0  # theirs: v1
        for params in filters:
            r = get("sato", oid, **params)
            assert (r.status_code, r.json()) == (200, {"more": False}), (params, r.text)
            assert "X-TAXII-Date-Added-First" not in r.headers
            if "match[version]" not in params:  # the versions endpoint takes the others
                r = get("sato", oid, "versions/", **params)
                assert (r.status_code, r.json()) == (200, {"more": False}), (params, r.text)
            # who may see no version of it is told nothing: 404, as for an id held nowhere
            for tail in ("", "versions/"):
                if tail and "match[version]" in params:
                    continue
                hidden, nowhere = get("suzuki", oid, tail, **params), \
                    get("suzuki", missing, tail, **params)
                assert (hidden.status_code, hidden.content) == (
                    nowhere.status_code, nowhere.content) and hidden.status_code == 404
                assert get("sato", missing, tail, **params).status_code == 404
    node.close()


def test_counts_and_filters_never_reveal_hidden_objects(world: World) -> None:
    hidden = next(iter(set(world.objects) - world.expected_visible("suzuki")))
    r = world.get("suzuki", f"/intel/collections/{world.cid}/objects/",
                  params={"match[id]": hidden})
    assert r.status_code == 200 and r.json() == {"more": False}
    r = world.get("suzuki", f"/intel/collections/{world.cid}/manifest/",
                  params={"match[id]": hidden})
    assert r.json() == {"more": False}
    assert "X-TAXII-Date-Added-First" not in r.headers


def test_next_cursors_say_nothing_of_the_objects_between(tmp_path: Path) -> None:
    """The store's cursor is the global row seq: its difference between two pages told
    how many objects the reader may not see were stored between A and B. Readers get it
    sealed (crypto/cursors.py): opaque, a new value each time, bound to the reader."""
    node = make_node(tmp_path / "jpn")
    for name, clearance, party in (("pub", "機密", "JPN"), ("sato", "秘", "JPN"),
                                   ("aroha", "SECRET", "NZL")):
        node.people.add(name, party=party, clearance=clearance, roles=["analyst",
                        "publisher"] if name == "pub" else ["analyst"],
                        password=password(name))
    pub, cid = node.people.as_person("pub").person, node.default_collection().collection_id
    shown, hidden = MarkingRequest("秘", ("NZL",)), MarkingRequest("極秘", ("JPN",))
    node.publisher.publish(pub, cid, [indicator("warm-up")], marking=hidden)
    node.publisher.publish(pub, cid, [indicator("A")], marking=shown)
    node.publisher.publish(pub, cid, [indicator(f"secret {i}") for i in range(7)],
                           marking=hidden)
    node.publisher.publish(pub, cid, [indicator("B")], marking=shown)
    node.publisher.publish(pub, cid, [indicator("C")], marking=shown)
    path = f"/intel/collections/{cid}/objects/"
    with serving(node) as url:
        def page(who: str, **params: str) -> httpx.Response:
            return httpx.get(url + path, auth=(who, password(who)), headers={
                "Accept": TAXII}, params={"limit": "1", "match[type]": "indicator", **params})

        for who in ("sato", "aroha"):
            p1 = page(who).json()
            p2 = page(who, next=p1["next"]).json()
            assert [p1["objects"][0]["name"], p2["objects"][0]["name"]] == ["A", "B"]
            assert page(who, next=p2["next"]).json()["objects"][0]["name"] == "C"
            cursors = [p1["next"], p2["next"], page(who).json()["next"]]
            assert len(set(cursors)) == 3 and len({len(c) for c in cursors}) == 1
            assert all(c.isascii() and "." not in c and len(c) < 100 for c in cursors)
            assert len(node.cursors.open(p1["next"], who)) < len(p1["next"])  # sealed
        mine = page("sato").json()["next"]
        flipped = mine[:-3] + ("A" if mine[-3] != "A" else "B") + mine[-2:]
        for who, cursor in (("aroha", mine), ("sato", flipped), ("sato", "12.0123456789ab"),
                            ("sato", "x" * 500), ("sato", "é")):
            r = page(who, next=cursor)
            assert r.status_code == 400 and r.json()["title"] == "Bad 'next' value", cursor
    node.close()


def test_withheld_portions_are_declared(world: World) -> None:
    oid = next(o for o, body in world.objects.items() if body["name"] == "hi-rel-nzl")
    mine = world.get("sato", f"/intel/collections/{world.cid}/objects/{oid}/").json()
    obj = mine["objects"][0]
    assert "description" not in obj
    ext = obj["extensions"]["extension-definition--c2d508d4-09fb-4d0f-86a4-ecff0c1b756c"]
    assert ext["withheld"] == ["description"]
    full = world.get("tanaka", f"/intel/collections/{world.cid}/objects/{oid}/").json()
    assert full["objects"][0]["description"] == "hi-rel-nzl: description"


def test_every_served_object_is_valid_stix(world: World) -> None:
    for who in ("tanaka", "sato", "aroha"):
        r = world.get(who, f"/intel/collections/{world.cid}/objects/",
                      params={"match[version]": "all"})
        for obj in r.json().get("objects", []):
            result = stix2validator.validate_parsed_json(obj)
            assert result.is_valid, (obj["id"], [str(e) for e in result.errors])


def test_add_objects_status_persists_and_is_private(world: World, tmp_path: Path) -> None:
    coll = world.collection("tanaka")
    marking = national_marking(world.node.agreement, "JPN", "秘", rel_to=["NZL"])
    new = indicator("posted over TAXII", object_marking_refs=[marking["id"]])
    status = coll.add_objects({"objects": [marking, new]})
    assert status.status == "complete"
    assert status.success_count == 2 and status.failure_count == 0
    again = coll.add_objects({"objects": [marking, new]})
    assert again.success_count == 2  # idempotent
    changed = dict(new, name="tampered")
    conflict = coll.add_objects({"objects": [changed]})
    assert conflict.failure_count == 1 and "immutable" in conflict.failures[0]["message"]
    r = world.get("tanaka", f"/intel/status/{status.id}/")
    assert r.status_code == 200 and r.json()["success_count"] == 2
    assert world.get("aroha", f"/intel/status/{status.id}/").status_code == 404
    reopened = Node.open(world.node.config.dir)
    try:
        persisted = reopened.store.status(status.id)
        assert persisted is not None and persisted.body["success_count"] == 2
    finally:
        reopened.close()


def test_publishing_is_checked(world: World) -> None:
    coll = world.collection("tanaka")
    unmarked = indicator("no marking")
    status = coll.add_objects({"objects": [unmarked]})
    assert status.failure_count == 1
    assert "no classification marking" in status.failures[0]["message"]
    nz = national_marking(world.node.agreement, "NZL", "SECRET", rel_to=["JPN"])
    forged_origin = indicator("claims NZ origin", object_marking_refs=[nz["id"]])
    status = coll.add_objects({"objects": [nz, forged_origin]})
    # NZL's definition is NZL's node's to issue (signed), and the object citing it goes
    # with it: both refused, each saying why
    assert status.failure_count == 2 and all("originated by NZL" in f["message"]
                                             for f in status.failures), status.failures
    r = httpx.post(f"{world.url}/intel/collections/{world.cid}/objects/",
                   auth=("aroha", password("aroha")),
                   headers={"Accept": TAXII, "Content-Type": TAXII}, content=b'{"objects":[]}')
    assert r.status_code == 403


def test_sato_cannot_publish_above_clearance(tmp_path: Path) -> None:
    node = make_node(tmp_path / "n")
    node.people.add("sato", party="JPN", clearance="秘", roles=["publisher"],
                    password=password("sato"))
    sato = node.people.as_person("sato").person
    status = node.publisher.publish(sato, node.default_collection().collection_id,
                                    [indicator("too high")],
                                    marking=MarkingRequest("極秘", ("NZL",)))
    # the marking made for the request, and the object marked with it
    assert status.body["failure_count"] == 2
    assert all("does not dominate" in f["message"] for f in status.body["failures"])
    node.close()


@pytest.mark.parametrize("headers,status", [
    ({"Accept": "application/json"}, 406),
    ({"Accept": "application/taxii+json;version=2.0"}, 406),
    ({}, 406),
    # q=0 is "not acceptable" (RFC 9110 §12.4.2): the one media type the node serves,
    # refused by the client, leaves nothing to answer with
    ({"Accept": f"{TAXII};q=0"}, 406),
    ({"Accept": f"{TAXII}; q=0.000"}, 406),
    ({"Accept": f"application/json, {TAXII};q=0"}, 406),
])
def test_wrong_accept_is_406(world: World, headers: dict[str, str], status: int) -> None:
    r = httpx.get(f"{world.url}/taxii2/", headers=headers, auth=("aroha", password("aroha")))
    assert r.status_code == status
    assert r.headers["content-type"] == TAXII and r.json()["http_status"] == str(status)


@pytest.mark.parametrize("accept", [
    f"{TAXII};q=1", f"{TAXII};q=0.5", f"{TAXII}; q=0.001", f"{TAXII};q=1.000",
    f"application/json;q=0.9, {TAXII};q=0.1",
])
def test_an_accept_with_a_positive_q_is_served(world: World, accept: str) -> None:
    r = httpx.get(f"{world.url}/taxii2/", headers={"Accept": accept},
                  auth=("aroha", password("aroha")))
    assert r.status_code == 200, r.text


def test_post_media_type_and_size(world: World) -> None:
    url = f"{world.url}/intel/collections/{world.cid}/objects/"
    auth = ("tanaka", password("tanaka"))
    r = httpx.post(url, auth=auth, headers={"Accept": TAXII, "Content-Type": "application/json"},
                   content=b'{"objects":[]}')
    assert r.status_code == 415
    big = b'{"objects":[' + b" " * (world.node.config.max_content_length + 10) + b"]}"
    r = httpx.post(url, auth=auth, headers={"Accept": TAXII, "Content-Type": TAXII},
                   content=big)
    assert r.status_code == 413 and r.json()["title"] == "Payload Too Large"
    r = httpx.post(url, auth=auth, headers={"Accept": TAXII, "Content-Type": TAXII},
                   content=b'{"objects": [1, 2,]}')
    assert r.status_code == 400 and r.json()["http_status"] == "400"


def test_authentication(world: World) -> None:
    r = world.get(None, "/taxii2/")
    assert r.status_code == 401 and "Basic" in r.headers["www-authenticate"]
    r = httpx.get(f"{world.url}/taxii2/", headers={"Accept": TAXII},
                  auth=("aroha", "wrong password"))
    assert r.status_code == 401
    token = world.node.people.issue_token("aroha")
    r = httpx.get(f"{world.url}/taxii2/",
                  headers={"Accept": TAXII, "Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    world.node.people.revoke_tokens("aroha", token)
    r = httpx.get(f"{world.url}/taxii2/",
                  headers={"Accept": TAXII, "Authorization": f"Bearer {token}"})
    assert r.status_code == 401


@pytest.mark.parametrize("params", [
    {"limit": "0"}, {"limit": "abc"}, {"added_after": "yesterday"},
    {"match[version]": "2026-13-45T00:00:00Z"}, {"match[id]": "not-an-id"},
    {"match[type]": "Bad Type"}, {"match[spec_version]": "9.9"}, {"next": "garbage"},
    {"match[bogus]": "x"},
])
def test_bad_filters_are_400(world: World, params: dict[str, str]) -> None:
    r = world.get("tanaka", f"/intel/collections/{world.cid}/objects/", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["http_status"] == "400" and r.json()["title"]


def test_unknown_paths_have_the_taxii_error_shape(world: World) -> None:
    for path in ("/nothing/", "/intel/collections/nope/objects/", "/intel/status/nope/"):
        r = world.get("tanaka", path)
        assert r.status_code == 404 and r.json()["http_status"] == "404"


def test_medallion_expectations(tmp_path: Path) -> None:
    """The behaviour medallion's own tests expect, on its fixture data."""
    fixture = json.loads((DATA / "stix" / "medallion" / "default_data.json").read_text())
    coll_data = next(c for c in fixture["trustgroup1"]["collections"] if c["objects"])
    objects = coll_data["objects"]
    node = make_node(tmp_path / "m")
    node.people.add("tanaka", party="JPN", clearance="機密", roles=["analyst", "publisher"],
                    password=password("tanaka"))
    tanaka = node.people.as_person("tanaka").person
    cid = node.default_collection().collection_id
    status = node.publisher.publish(tanaka, cid, objects,
                                    marking=MarkingRequest("秘", ("NZL",)))
    # The fixture's malware object lacks spec_version: not STIX 2.1, refused with the reason.
    assert [(f["id"].split("--")[0], f["message"]) for f in status.body["failures"]] == [
        ("malware", "required property 'spec_version' is missing")]
    objects = [o for o in objects if "spec_version" in o]
    multi = {}
    for o in objects:
        if o["type"] != "marking-definition":
            multi.setdefault(o["id"], []).append(o.get("modified") or o.get("created"))
    with serving(node) as url:
        coll = Collection(f"{url}/intel/collections/{cid}/", user="tanaka",
                          password=password("tanaka"))
        latest = coll.get_objects()["objects"]
        ids = [o["id"] for o in latest if o["type"] != "marking-definition"]
        assert sorted(ids) == sorted(multi)  # one entry per id: the last version
        every = coll.get_objects(version="all")["objects"]
        assert len([o for o in every if o["type"] != "marking-definition"]) == sum(
            len(v) for v in multi.values())
        for oid, versions in multi.items():
            got = coll.object_versions(oid)["versions"]
            assert set(got) == {normalise_timestamp(v) for v in versions}
            assert len(got) == len(set(versions))
            first = coll.get_object(oid, version="first")["objects"][0]
            assert first.get("modified", first.get("created")) == min(versions)
        one = coll.get_objects(limit=1)
        assert one["more"] and len(one["objects"]) == 1
        headers = httpx.get(f"{url}/intel/collections/{cid}/objects/",
                            auth=("tanaka", password("tanaka")),
                            headers={"Accept": TAXII}).headers
        first_added = headers["X-TAXII-Date-Added-First"]
        later = coll.get_objects(added_after=first_added)["objects"]
        assert len(later) == len(latest) - 1
        manifest = coll.get_manifest(type="indicator")["objects"]
        assert {m["id"] for m in manifest} == {o["id"] for o in objects
                                               if o["type"] == "indicator"}
        assert all(len(m["date_added"]) == len("2026-01-01T00:00:00.000000Z") for m in manifest)
        empty = coll.get_objects(type="x-nothing")
        assert empty == {"more": False}
    node.close()


def test_tls_with_certificates_made_by_init(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables override a session's own CA file (psf/requests#3829)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    node = make_node(tmp_path / "t", tls=True)
    node.people.add("aroha", party="NZL", clearance="SECRET", password=password("aroha"))
    assert node.config.tls_cert is not None
    with serving(node) as url:
        assert url.startswith("https://")
        # closed before the server stops (the server's connection and its API root's,
        # one each): an idle TLS connection left open holds the server's shutdown for
        # asyncio's TLS shutdown timeout (30 s)
        with Server(f"{url}/taxii2/", user="aroha", password=password("aroha"),
                    verify=str(node.config.tls_cert)) as server, server.default as root:
            assert root.collections[0].can_read
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/taxii2/", headers={"Accept": TAXII})  # not trusted by default
    node.close()


def test_stix2_taxii_collection_source(world: World) -> None:
    from stix2 import Filter, TAXIICollectionSource

    source = TAXIICollectionSource(world.collection("aroha"))
    found = source.query([Filter("type", "=", "indicator")])
    assert {o.id for o in found} & set(world.objects) == world.expected_visible("aroha")


def test_every_endpoint_refuses_an_unauthenticated_caller_alike(world: World) -> None:
    oid = next(iter(world.objects))
    c = f"/intel/collections/{world.cid}"
    paths = ["/taxii2/", "/intel/", "/intel/status/x/", "/intel/collections/", f"{c}/",
             f"{c}/manifest/", f"{c}/objects/", f"{c}/objects/{oid}/",
             f"{c}/objects/{oid}/versions/", "/taxii2/openapi.json"]
    bodies = set()
    for i, path in enumerate(paths):
        for auth in (None, (f"nobody{i}", "x" * 12)):
            r = httpx.get(f"{world.url}{path}", headers={"Accept": TAXII}, auth=auth)
            assert r.status_code == 401, (path, auth, r.status_code)
            assert "Basic" in r.headers["www-authenticate"]
            bodies.add(r.text if auth is None else "")
        r = httpx.post(f"{world.url}{c}/objects/", content=b'{"objects":[]}',
                       headers={"Accept": TAXII, "Content-Type": TAXII})
        assert r.status_code == 401
        r = httpx.delete(f"{world.url}{c}/objects/{oid}/", headers={"Accept": TAXII})
        assert r.status_code == 401
    assert len(bodies - {""}) == 1  # the same error, whatever the path: nothing is revealed
