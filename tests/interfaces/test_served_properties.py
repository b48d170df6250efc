"""Property-based tests (hypothesis) of what a live node serves over TAXII.

Each example publishes new STIX objects (several types, one or two versions each)
under generated national markings, some with a granular-marked portion, over
TAXII POST to one served JPN node, and makes new people (party, clearance,
caveats, communities, roles). Then it reads every read endpoint over HTTP as each
of them (objects and manifest paged with ``next``, object, versions, with
filters) and compares with an oracle written here from the sample agreement's
text (agreements/jpn-nzl.toml): it never asks the node's model. What is served
is exactly what may be read, nothing more or less; counts, ``more`` and the
date headers follow what is served; a withheld portion is declared.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from intelpact.model import national_marking
from intelpact.services.node import Node

from helpers import make_node, serving

TAXII = "application/taxii+json;version=2.1"
WITHHELD = "extension-definition--c2d508d4-09fb-4d0f-86a4-ecff0c1b756c"
EXAMPLES = settings(max_examples=int(os.environ.get("INTELPACT_PROPERTY_EXAMPLES", "40")),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate], deadline=None,
                    database=None, suppress_health_check=[HealthCheck.too_slow,
                                                          HealthCheck.function_scoped_fixture])
PUB_PASSWORD = "publisher-test-password"
T0, T1 = "2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z"

# -- the oracle: the sample agreement's rules, written out from its text ----------------------
# The shared scale, lowest first: U, IC, SENS, R, C, S, TS (ranks 0-6).
# A party's words for a level, and the shared rank each means when JPN publishes with it.
JPN_WORDS = {"指定なし": 0, "Shitei nashi": 0, "取扱注意": 2, "Toriatsukai chūi": 2, "秘": 4,
             "Hi": 4, "極秘": 5, "Gokuhi": 5, "特定秘密": 5, "機密": 6, "Kimitsu": 6}
# A person's clearance, in their words, as a shared rank.
CLEARANCE = {"JPN": {"指定なし": 0, "取扱注意": 2, "秘": 4, "極秘": 5, "機密": 6},
             "NZL": {"UNCLASSIFIED": 0, "IN-CONFIDENCE": 1, "SENSITIVE": 2, "RESTRICTED": 3,
                     "CONFIDENTIAL": 4, "SECRET": 5, "TOP SECRET": 6}}
# The clearance (shared rank) a party needs to read each shared rank: Japan protects
# IN-CONFIDENCE as 取扱注意 and RESTRICTED as 秘 ("treat as": the next level up).
NEEDED = {"JPN": [0, 2, 2, 4, 4, 5, 6], "NZL": [0, 1, 2, 3, 4, 5, 6]}
EYES_ONLY = {"JPN": "JPNEO", "NZL": "NZEO"}  # each party's nationals alone may hold it
COMMUNITIES = ["MARITIME", "CLIMATE", "INFRASTRUCTURE"]
READING_ROLES = {"analyst", "publisher", "security-officer"}
# STIX 2.1 properties a portion selector may point at, and which each type requires.
REQUIRED = {"indicator": {"pattern", "pattern_type", "valid_from"}, "malware": {"name"},
            "threat-actor": {"name"}, "campaign": {"name"}, "attack-pattern": {"name"},
            "vulnerability": {"name"}}


@dataclass(frozen=True)
class Marking:
    words: str
    rel_nzl: bool
    caveats: frozenset[str]
    communities: frozenset[str]

    @property
    def rank(self) -> int:
        return JPN_WORDS[self.words]


@dataclass
class Reader:
    name: str
    party: str
    clearance: str
    caveats: frozenset[str]
    communities: frozenset[str]
    roles: frozenset[str]
    token: str = ""

    def reads_intelligence(self) -> bool:
        return bool(self.roles & READING_ROLES)

    def may_read(self, m: Marking) -> bool:
        """DESIGN.md rule 2, from the agreement's text: level, REL TO, caveats, communities."""
        return (NEEDED[self.party][m.rank] <= CLEARANCE[self.party][self.clearance]
                and (self.party == "JPN" or m.rel_nzl)
                and m.caveats <= self.caveats
                and (not m.communities or bool(m.communities & self.communities)))


@dataclass
class Version:
    object_id: str
    kind: str
    modified: str
    marking: Marking
    portion: tuple[str, Marking] | None  # (top-level property, its marking)

    def served_to(self, r: Reader) -> tuple[bool, str | None]:
        """(served at all, the property withheld from it)."""
        if not r.may_read(self.marking):
            return False, None
        if self.portion is not None and not r.may_read(self.portion[1]):
            return self.portion[0] not in REQUIRED[self.kind], self.portion[0]
        return True, None


@dataclass
class World:
    node: Node
    url: str
    cid: str
    versions: list[Version] = field(default_factory=list)
    definitions: dict[str, Marking] = field(default_factory=dict)  # marking id -> marking
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def get(self, r: Reader, path: str, **params: str) -> httpx.Response:
        return self.http.get(f"{self.url}/intel/collections/{self.cid}/{path}", params=params,
                             headers={"Accept": TAXII, "Authorization": f"Bearer {r.token}"})


# -- generation ---------------------------------------------------------------------------------

markings = st.builds(Marking, st.sampled_from(sorted(JPN_WORDS)), st.booleans(),
                     st.frozensets(st.just("JPNEO")),
                     st.frozensets(st.sampled_from(COMMUNITIES), max_size=2)).map(
    # the agreement refuses REL TO NZL on what is for Japanese eyes only
    lambda m: Marking(m.words, m.rel_nzl and not m.caveats, m.caveats, m.communities))


@st.composite
def objects(draw: st.DrawFn) -> list[Version]:
    kind = draw(st.sampled_from(sorted(REQUIRED)))
    oid = f"{kind}--{uuid.uuid4()}"
    out = []
    for modified in draw(st.sampled_from([[T0], [T0, T1], [T1]])):
        portion = draw(st.none() | st.tuples(st.sampled_from(
            ["description", "name", *sorted(REQUIRED[kind] - {"name"})]), markings))
        out.append(Version(oid, kind, modified, draw(markings), portion))
    return out


@st.composite
def readers(draw: st.DrawFn) -> Reader:
    party = draw(st.sampled_from(["JPN", "NZL"]))
    return Reader(f"p{uuid.uuid4().hex[:12]}", party,
                  draw(st.sampled_from(sorted(CLEARANCE[party]))),
                  draw(st.frozensets(st.just(EYES_ONLY[party]))),
                  draw(st.frozensets(st.sampled_from(COMMUNITIES))),
                  draw(st.frozensets(st.sampled_from(
                      ["analyst", "publisher", "security-officer", "operator"]))))


def stix(v: Version, refs: dict[Marking, str]) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": v.kind, "spec_version": "2.1", "id": v.object_id,
                           "created": T0, "modified": v.modified, "name": f"name {v.modified}",
                           "description": "a description",
                           "object_marking_refs": [refs[v.marking]]}
    if v.kind == "indicator":
        obj.update(pattern="[ipv4-addr:value = '198.51.100.7']", pattern_type="stix",
                   valid_from=T0)
    if v.kind == "malware":
        obj["is_family"] = True
    if v.portion is not None:
        obj["granular_markings"] = [{"selectors": [v.portion[0]],
                                     "marking_ref": refs[v.portion[1]]}]
    return obj


def publish(world: World, versions: list[Version]) -> set[str]:
    """POST the versions and their marking-definitions over TAXII, as the publisher;
    returns the ids of the definitions."""
    a = world.node.agreement
    refs: dict[Marking, str] = {}
    definitions = []
    for m in {v.marking for v in versions} | {v.portion[1] for v in versions if v.portion}:
        d = national_marking(a, "JPN", m.words, rel_to=["NZL"] if m.rel_nzl else [],
                             caveats=sorted(m.caveats), communities=sorted(m.communities))
        refs[m] = d["id"]
        definitions.append(d)
    envelope = {"objects": [*definitions, *(stix(v, refs) for v in versions)]}
    r = world.http.post(f"{world.url}/intel/collections/{world.cid}/objects/", json=envelope,
                        headers={"Accept": TAXII, "Content-Type": TAXII},
                        auth=("pub", PUB_PASSWORD))
    assert r.status_code == 202, r.text
    assert r.json()["failure_count"] == 0, r.json()["failures"]
    world.versions.extend(versions)
    world.definitions.update({mid: m for m, mid in refs.items()})
    return set(refs.values())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    node = make_node(tmp_path_factory.mktemp("served-properties") / "jpn")
    node.people.add("pub", party="JPN", clearance="機密", caveats=["JPNEO"],
                    communities=COMMUNITIES, roles=["publisher"], password=PUB_PASSWORD)
    with serving(node) as url:
        world = World(node, url, node.default_collection().collection_id)
        yield world
        world.http.close()
    node.close()


def add_person(world: World, r: Reader) -> None:
    world.node.people.add(r.name, party=r.party, clearance=r.clearance, caveats=r.caveats,
                          communities=r.communities, roles=r.roles)
    r.token = world.node.people.issue_token(r.name)


def version_of(obj: dict[str, Any]) -> str:
    return str(obj.get("modified") or obj["created"])


def paged(world: World, r: Reader, path: str, limit: int, **params: str
          ) -> list[dict[str, Any]]:
    """Every page of a list endpoint, following ``next``; checks each page's counts and
    headers against what it serves."""
    items: list[dict[str, Any]] = []
    cursor: dict[str, str] = {}
    for _ in range(1000):
        resp = world.get(r, path, limit=str(limit), **params, **cursor)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        got = page.get("objects", [])
        assert "objects" not in page or got, "an empty list is left out"
        assert len(got) <= limit
        first, last = (resp.headers.get(f"X-TAXII-Date-Added-{h}") for h in ("First", "Last"))
        if not got:  # nothing served: nothing said about anything
            assert first is None and last is None and page == {"more": False}, page
        elif path == "manifest/":
            assert (first, last) == (got[0]["date_added"], got[-1]["date_added"])
        else:
            assert first is not None and last is not None and first <= last
        items.extend(got)
        if not page["more"]:
            assert "next" not in page
            return items
        assert got, "'more' with an empty page reveals objects the reader may not see"
        cursor = {"next": page["next"]}
    raise AssertionError("paging did not end")


def expected(world: World, r: Reader, ids: set[str] | None = None
             ) -> dict[tuple[str, str], str | None]:
    """(id, version) of every version ``r`` is served -> the property withheld, if any."""
    out: dict[tuple[str, str], str | None] = {}
    for v in world.versions:
        served, withheld = v.served_to(r)
        if served and (ids is None or v.object_id in ids):
            out[(v.object_id, v.modified)] = withheld
    return out


def pick(world: World, r: Reader, which: str, ids: set[str] | None = None
         ) -> dict[tuple[str, str], str | None]:
    """The first or last version of each object that ``r`` is served: among the versions
    ``r`` may see (a version whose withheld portion is one the object needs is not one of
    them, so an earlier or later one is chosen instead)."""
    by_id: dict[str, list[tuple[Version, str | None]]] = {}
    for v in world.versions:
        served, withheld = v.served_to(r)
        if served and (ids is None or v.object_id in ids):
            by_id.setdefault(v.object_id, []).append((v, withheld))
    out: dict[tuple[str, str], str | None] = {}
    for oid, vs in by_id.items():
        v, withheld = (min if which == "first" else max)(vs, key=lambda p: p[0].modified)
        out[(oid, v.modified)] = withheld
    return out


def check_objects(served: list[dict[str, Any]], want: dict[tuple[str, str], str | None],
                  definitions: set[str], note: object = "") -> None:
    keys = [(o["id"], version_of(o)) for o in served]
    assert len(keys) == len(set(keys)), "an object version was served twice"
    got = {k for k in keys if not k[0].startswith("marking-definition--")}
    assert got == set(want), {"extra": got - set(want), "missing": set(want) - got,
                              "note": note}
    got_definitions = {k[0] for k in keys if k[0].startswith("marking-definition--")}
    assert got_definitions == definitions, {"extra": got_definitions - definitions,
                                            "missing": definitions - got_definitions}
    for o in served:
        withheld = want.get((o["id"], version_of(o)))
        ext = o.get("extensions", {}).get(WITHHELD)
        if withheld is None:
            assert ext is None, o
        else:  # removed, and declared
            assert withheld not in o and ext == {"extension_type": "property-extension",
                                                 "withheld": [withheld]}, o
            assert all(withheld not in gm["selectors"] for gm in o.get("granular_markings", []))


def check_reader(world: World, r: Reader, batch: list[Version], marks: set[str], limit: int,
                 kind: str, cut: int) -> None:
    ours = {v.object_id for v in batch}
    collections = world.get(r, "").json()
    assert collections["can_read"] == r.reads_intelligence()
    assert collections["can_write"] == ("publisher" in r.roles)
    if not r.reads_intelligence():
        for path in ("objects/", "manifest/", f"objects/{batch[0].object_id}/",
                     f"objects/{batch[0].object_id}/versions/"):
            resp = world.get(r, path)
            assert resp.status_code == 403 and resp.json()["http_status"] == "403"
        return
    definitions = {mid for mid, m in world.definitions.items() if r.may_read(m)}
    everything = expected(world, r)
    # the whole collection, every version, in one page
    check_objects(paged(world, r, "objects/", 10_000, **{"match[version]": "all"}),
                  everything, definitions)
    # this example's objects and definitions, in small pages, each version choice
    ids = ",".join(sorted(ours | marks))
    mine = expected(world, r, ours)
    for which in ("all", "first", "last"):
        want = mine if which == "all" else pick(world, r, which, ours)
        got = paged(world, r, "objects/", limit, **{"match[id]": ids, "match[version]": which})
        check_objects(got, want, definitions & marks, (which, r, batch))
    manifest = paged(world, r, "manifest/", limit, **{"match[id]": ids, "match[version]": "all"})
    assert {(m["id"], m["version"]) for m in manifest if m["id"] in ours} == {
        (oid, mod.replace(".000Z", ".000000Z")) for oid, mod in mine}
    # a type filter, over everything
    got = paged(world, r, "objects/", 10_000, **{"match[type]": kind})
    check_objects(got, {k: w for k, w in pick(world, r, "last").items()
                        if k[0].startswith(kind + "--")}, set())
    # added_after: what was added after a served version's date_added, and only that
    if manifest:
        after = manifest[cut % len(manifest)]["date_added"]
        later = {(m["id"], m["version"]) for m in manifest if m["date_added"] > after}
        got = paged(world, r, "manifest/", limit, added_after=after,
                    **{"match[id]": ids, "match[version]": "all"})
        assert {(m["id"], m["version"]) for m in got} == later
    # one object, and its versions: 404 exactly as for an object that does not exist
    missing = world.get(r, f"objects/indicator--{uuid.uuid4()}/")
    assert missing.status_code == 404
    for oid in sorted(ours):
        last = pick(world, r, "last", {oid})
        one = world.get(r, f"objects/{oid}/")
        if last:
            assert one.status_code == 200
            check_objects(one.json()["objects"], last, set())
        else:
            assert one.status_code == 404
            assert one.json() == missing.json() and one.headers.keys() == missing.headers.keys()
        versions = world.get(r, f"objects/{oid}/versions/")
        listed = sorted(mod.replace(".000Z", ".000000Z") for o, mod in mine if o == oid)
        if listed:
            assert versions.status_code == 200
            assert versions.json() == {"more": False, "versions": listed}
        else:
            assert versions.status_code == 404 and versions.json() == missing.json()


PUBLISHER = Reader("pub", "JPN", "機密", frozenset({"JPNEO"}), frozenset(COMMUNITIES),
                   frozenset({"publisher"}))


@EXAMPLES
@given(batch=st.lists(objects(), min_size=1, max_size=3),
       people=st.lists(readers(), min_size=1, max_size=2), limit=st.integers(1, 4),
       kind=st.sampled_from(sorted(REQUIRED)), cut=st.integers(0, 1000))
def test_every_read_endpoint_serves_exactly_what_the_agreement_allows(
        world: World, batch: list[list[Version]], people: list[Reader], limit: int,
        kind: str, cut: int) -> None:
    versions = [v for obj in batch for v in obj]
    marks = publish(world, versions)
    if not PUBLISHER.token:
        PUBLISHER.token = world.node.people.issue_token("pub")
    for r in people:
        add_person(world, r)
    for r in [PUBLISHER, *people]:
        check_reader(world, r, versions, marks, limit, kind, cut)


def test_a_withheld_required_portion_does_not_hide_the_earlier_version(world: World) -> None:
    """docs/node.md: match[version]=last is the last version the person *may see*. A reader
    who may see version 1 whole, and version 2 only without its (required) name, is
    served version 1 (version 2 cannot be served)."""
    secret = Marking("極秘", True, frozenset(), frozenset())
    low = Marking("秘", True, frozenset(), frozenset())
    oid = f"campaign--{uuid.uuid4()}"
    publish(world, [Version(oid, "campaign", T0, low, None),
                    Version(oid, "campaign", T1, low, ("name", secret))])
    r = Reader(f"p{uuid.uuid4().hex[:12]}", "NZL", "CONFIDENTIAL", frozenset(), frozenset(),
               frozenset({"analyst"}))
    add_person(world, r)
    assert world.get(r, f"objects/{oid}/versions/").json()["versions"] == [
        T0.replace(".000Z", ".000000Z")]  # version 1 is there for this reader
    one = world.get(r, f"objects/{oid}/")
    assert one.status_code == 200 and version_of(one.json()["objects"][0]) == T0
    last = {"match[id]": oid, "match[version]": "last"}
    assert [version_of(o) for o in world.get(r, "objects/", **last).json()["objects"]] == [T0]
    assert [m["version"] for m in world.get(r, "manifest/", **last).json()["objects"]] == [
        T0.replace(".000Z", ".000000Z")]
    # and the other way: the first version the reader may see is version 2
    oid2 = f"campaign--{uuid.uuid4()}"
    publish(world, [Version(oid2, "campaign", T0, low, ("name", secret)),
                    Version(oid2, "campaign", T1, low, None)])
    first = {"match[id]": oid2, "match[version]": "first"}
    assert [version_of(o) for o in world.get(r, "objects/", **first).json()["objects"]] == [T1]
