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

A sibling test does the same for objects originated by partners under the three-party
sample (agreements/jpn-nzl-aus.toml): New Zealand's and Australia's own nodes publish
them in their own national words, sign them, and deliver them to the JPN node by
federation (a courier over mutual TLS); the oracle translates their levels through the
agreement's equivalence table. What a partner may not release to JPN (JPN not in REL TO,
an eyes-only caveat, a level the exchange does not cover, a third party's object relayed
without consent) is sent to JPN anyway, must be refused, and is never served.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from intelpact.model import national_marking
from intelpact.services.courier import Courier
from intelpact.services.federation import make_card
from intelpact.services.node import Node
from intelpact.store.base import normalise_timestamp

from helpers import make_node, pin_each_other, serving, serving_federation

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
    words: str  # the originator's word for the level
    rel_to: frozenset[str]  # REL TO, besides the originator
    caveats: frozenset[str]
    communities: frozenset[str]
    originator: str = "JPN"


@dataclass(frozen=True)
class Terms:
    """One agreement's rules, written out from its text (never from the node's model)."""
    words: dict[str, dict[str, int]]  # originator -> its words for a level -> shared rank
    clearance: dict[str, dict[str, int]]  # party -> a clearance in its words -> shared rank
    needed: dict[str, list[int]]  # party -> the clearance it needs for each shared rank
    covered: frozenset[int]  # the shared ranks the exchange covers
    releasable_to: dict[str, frozenset[str]]  # caveat -> the parties it may go to

    def __repr__(self) -> str:  # short, in hypothesis's report of a failing example
        return f"Terms({'-'.join(self.words)})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # hypothesis's pretty-printer
        p.text(repr(self))

    def rank(self, m: Marking) -> int:
        return self.words[m.originator][m.words]

    def releasable(self, portions: list[Marking], partner: str) -> bool:
        """The release decision on the banner (the join of ``portions``), for a holder
        that is the originator: covered level, partner in REL TO, every caveat
        releasable to it (every party here has an equivalent of every covered level,
        and every generated community is known)."""
        return (max(self.rank(m) for m in portions) in self.covered
                and all(partner in {m.originator, *m.rel_to} for m in portions)
                and all(partner in self.releasable_to[c] for m in portions for c in m.caveats))


BILATERAL = Terms({"JPN": JPN_WORDS}, CLEARANCE, NEEDED, frozenset({0, 3, 4, 5, 6}),
                  {"JPNEO": frozenset({"JPN"}), "NZEO": frozenset({"NZL"})})
NZ = frozenset({"NZL"})


@dataclass
class Reader:
    name: str
    party: str
    clearance: str
    caveats: frozenset[str]
    communities: frozenset[str]
    roles: frozenset[str]
    token: str = ""
    terms: Terms = field(default_factory=lambda: BILATERAL)
    node: str = "JPN"  # the party of the node they read at

    def reads_intelligence(self) -> bool:
        return bool(self.roles & READING_ROLES)

    def may_read(self, m: Marking) -> bool:
        """DESIGN.md rule 2, from the agreement's text: level (as the reader's party
        protects it), REL TO, caveats, communities; and, as every agreement here needs
        the originator's consent for third-party release, a reader of another party than
        the node's (a liaison) reads only the node's party's and their own party's."""
        t = self.terms
        return (t.needed[self.party][t.rank(m)] <= t.clearance[self.party][self.clearance]
                and self.party in {m.originator, *m.rel_to}
                and m.caveats <= self.caveats
                and (not m.communities or bool(m.communities & self.communities))
                and (self.party == self.node or m.originator in {self.node, self.party}))


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
    partners: dict[str, Node] = field(default_factory=dict)  # their own nodes, by party
    couriers: dict[str, Courier] = field(default_factory=dict)  # each partner's courier
    puller: Courier | None = None  # JPN's courier, pulling from the partners
    roster: list[Reader] = field(default_factory=list)  # a reader at every clearance

    def __repr__(self) -> str:  # short, in hypothesis's report of a failing example
        return f"World({self.node.party} at {self.url}, {len(self.versions)} versions)"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # hypothesis's pretty-printer
        p.text(repr(self))

    def get(self, r: Reader, path: str, **params: str) -> httpx.Response:
        return self.http.get(f"{self.url}/intel/collections/{self.cid}/{path}", params=params,
                             headers={"Accept": TAXII, "Authorization": f"Bearer {r.token}"})


# -- generation ---------------------------------------------------------------------------------

markings = st.builds(Marking, st.sampled_from(sorted(JPN_WORDS)), st.frozensets(st.just("NZL")),
                     st.frozensets(st.just("JPNEO")),
                     st.frozensets(st.sampled_from(COMMUNITIES), max_size=2)).map(
    # the agreement refuses REL TO NZL on what is for Japanese eyes only
    lambda m: Marking(m.words, frozenset() if m.caveats else m.rel_to, m.caveats,
                      m.communities))


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
        d = national_marking(a, "JPN", m.words, rel_to=sorted(m.rel_to),
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
            assert not cursor, "'more' before an empty page reveals objects the reader " \
                "may not see"
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


def check_collection(world: World, r: Reader) -> set[str]:
    """The whole collection, every version, in one page; returns the ids of the
    marking-definitions ``r`` may read."""
    definitions = {mid for mid, m in world.definitions.items() if r.may_read(m)}
    check_objects(paged(world, r, "objects/", 10_000, **{"match[version]": "all"}),
                  expected(world, r), definitions)
    return definitions


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
    definitions = check_collection(world, r)
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
    secret = Marking("極秘", NZ, frozenset(), frozenset())
    low = Marking("秘", NZ, frozenset(), frozenset())
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
    # a version taken instead takes its place by date_added, oldest first (found by the
    # property test above: it came first, added after the page's last row)
    oid3, oid4 = f"campaign--{uuid.uuid4()}", f"campaign--{uuid.uuid4()}"
    publish(world, [Version(oid3, "campaign", T0, low, ("name", secret)),
                    Version(oid4, "campaign", T0, low, None),
                    Version(oid3, "campaign", T1, low, None)])
    page = world.get(r, "objects/", **{"match[id]": f"{oid3},{oid4}", "match[version]": "first"})
    assert [o["id"] for o in page.json()["objects"]] == [oid4, oid3]
    # First is oid4's date_added; Last no later than the last row the page read, oid4 (the
    # walk's place, for a client paging by date), though oid3's version 2 came after it
    assert page.headers["X-TAXII-Date-Added-First"] == page.headers["X-TAXII-Date-Added-Last"]


def test_a_page_of_objects_that_cannot_be_served_is_not_an_empty_page_saying_more(
        world: World) -> None:
    """Found by the test above (one run in a few): a page whose rows the reader may read on
    their base label but cannot be served (a portion the object needs is withheld) was
    answered ``{"more": true, "next": …}`` with no objects, which tells the reader that
    objects they may not see are there. The node reads on to the next page instead."""
    eyes_only = Marking("機密", frozenset(), frozenset({"JPNEO"}), frozenset())
    low = Marking("秘", frozenset(), frozenset(), frozenset())
    hidden, shown = f"campaign--{uuid.uuid4()}", f"campaign--{uuid.uuid4()}"
    publish(world, [Version(hidden, "campaign", T0, low, ("name", eyes_only)),
                    Version(shown, "campaign", T0, low, None)])
    r = Reader(f"p{uuid.uuid4().hex[:12]}", "JPN", "機密", frozenset(), frozenset(),
               frozenset({"analyst"}))
    add_person(world, r)
    for path in ("objects/", "manifest/"):
        got = paged(world, r, path, 1, **{"match[id]": f"{hidden},{shown}"})
        assert [o["id"] for o in got] == [shown]
    # and the versions endpoint: version 1 cannot be served, version 2 can
    oid = f"campaign--{uuid.uuid4()}"
    publish(world, [Version(oid, "campaign", T0, low, ("name", eyes_only)),
                    Version(oid, "campaign", T1, low, None)])
    versions = world.get(r, f"objects/{oid}/versions/", limit="1")
    assert versions.status_code == 200, versions.text
    assert versions.json() == {"more": False, "versions": [T1.replace(".000Z", ".000000Z")]}


def test_more_is_not_said_before_objects_that_cannot_be_served(world: World) -> None:
    """The sibling of the test above: a page whose *next* rows cannot be served said
    ``"more": true``, and the next page was ``{"more": false}``; against an id that does
    not exist, ``"more": false`` at once. The node looks ahead for a row it may serve."""
    eyes_only = Marking("機密", frozenset(), frozenset(), frozenset({"MARITIME"}))
    low = Marking("秘", frozenset(), frozenset(), frozenset())
    shown, hidden = f"campaign--{uuid.uuid4()}", f"campaign--{uuid.uuid4()}"
    publish(world, [Version(shown, "campaign", T0, low, None)])
    publish(world, [Version(hidden, "campaign", T0, low, ("name", eyes_only))])
    r = Reader(f"p{uuid.uuid4().hex[:12]}", "JPN", "機密", frozenset(), frozenset(),
               frozenset({"analyst"}))
    add_person(world, r)
    missing = f"campaign--{uuid.uuid4()}"
    for path in ("objects/", "manifest/"):
        for other in (hidden, missing):
            page = world.get(r, path, limit="1", **{"match[id]": f"{shown},{other}"})
            assert page.status_code == 200 and page.json()["more"] is False, page.text
        assert [o["id"] for o in paged(world, r, path, 1,
                                       **{"match[id]": f"{shown},{hidden}"})] == [shown]
    # the versions endpoint: version 1 can be served, the later version 2 cannot
    oid = f"campaign--{uuid.uuid4()}"
    publish(world, [Version(oid, "campaign", T0, low, None),
                    Version(oid, "campaign", T1, low, ("name", eyes_only))])
    versions = world.get(r, f"objects/{oid}/versions/", limit="1")
    assert versions.status_code == 200, versions.text
    assert versions.json() == {"more": False, "versions": [T0.replace(".000Z", ".000000Z")]}


# -- objects originated by a partner, received by federation ----------------------------------
# The three-party sample (agreements/jpn-nzl-aus.toml), written out from its text. Its
# shared scale, lowest first: UO, U, R, C, S, TS (ranks 0-5); only U to TS are exchanged.
# The rank each partner's words mean when it originates (names and abbreviations):
TRI_WORDS = {
    "NZL": {"UNCLASSIFIED": 1, "U": 1, "RESTRICTED": 2, "R": 2, "CONFIDENTIAL": 3, "C": 3,
            "SECRET": 4, "S": 4, "TOP SECRET": 5, "TS": 5},
    "AUS": {"UNOFFICIAL": 0, "UO": 0, "OFFICIAL": 1, "O": 1, "PROTECTED": 3, "P": 3,
            "SECRET": 4, "S": 4, "TOP SECRET": 5, "TS": 5}}
# Each party protects a row at its own word for it: Japan has no RESTRICTED tier (R is
# protected as 秘) and protects UNOFFICIAL as 指定なし; Australia has no RESTRICTED tier
# (PROTECTED); New Zealand protects UNOFFICIAL as UNCLASSIFIED.
TRI = Terms(TRI_WORDS,
            {"JPN": {"指定なし": 1, "秘": 3, "極秘": 4, "機密": 5},
             "NZL": {"UNCLASSIFIED": 1, "RESTRICTED": 2, "CONFIDENTIAL": 3, "SECRET": 4,
                     "TOP SECRET": 5},
             "AUS": {"UNOFFICIAL": 0, "OFFICIAL": 1, "PROTECTED": 3, "SECRET": 4,
                     "TOP SECRET": 5}},
            {"JPN": [1, 1, 3, 3, 4, 5], "NZL": [1, 1, 2, 3, 4, 5], "AUS": [0, 1, 3, 3, 4, 5]},
            frozenset({1, 2, 3, 4, 5}),
            {"NZEO": frozenset({"NZL"}), "AUSTEO": frozenset({"AUS"})})
TRI_EYES_ONLY = {"NZL": "NZEO", "AUS": "AUSTEO"}
PARTNERS = ("NZL", "AUS")
INBOX = "/federation/collections/inbox/objects/"


def partner_markings(originator: str) -> st.SearchStrategy[Marking]:
    """A partner's national marking in its own words: REL TO any of the other parties
    (mostly with JPN, sometimes without), its eyes-only caveat (then REL TO itself alone,
    as the agreement requires), communities."""
    jpn, third = frozenset({"JPN"}), frozenset(PARTNERS) - {originator}
    return st.builds(
        Marking, st.sampled_from(sorted(TRI_WORDS[originator])),
        st.sampled_from([jpn, jpn, jpn | third, jpn | third, third, frozenset()]),
        st.sampled_from([frozenset()] * 4 + [frozenset({TRI_EYES_ONLY[originator]})]),
        st.frozensets(st.sampled_from(COMMUNITIES), max_size=2), st.just(originator)).map(
        lambda m: Marking(m.words, frozenset() if m.caveats else m.rel_to, m.caveats,
                          m.communities, m.originator))


@st.composite
def partner_objects(draw: st.DrawFn) -> list[Version]:
    """One object a partner originates: its first version, and often a second one the
    originator publishes later (under its own, possibly different, marking)."""
    originator = draw(st.sampled_from(PARTNERS))
    kind = draw(st.sampled_from(sorted(REQUIRED)))
    oid = f"{kind}--{uuid.uuid4()}"
    out = []
    for modified in draw(st.sampled_from([[T0], [T0, T1], [T0, T1], [T1]])):
        portion = draw(st.none() | st.tuples(st.sampled_from(
            ["description", "name", *sorted(REQUIRED[kind] - {"name"})]),
            partner_markings(originator)))
        base = draw(partner_markings(originator))
        out.append(Version(oid, kind, modified, base, portion))
    return out


@st.composite
def tri_readers(draw: st.DrawFn) -> Reader:
    party = draw(st.sampled_from(["JPN", *PARTNERS]))
    eyes = [TRI_EYES_ONLY[party]] if party in TRI_EYES_ONLY else []
    return Reader(f"p{uuid.uuid4().hex[:12]}", party,
                  draw(st.sampled_from(sorted(TRI.clearance[party]))),
                  draw(st.frozensets(st.sampled_from(eyes))) if eyes else frozenset(),
                  draw(st.frozensets(st.sampled_from(COMMUNITIES))),
                  draw(st.frozensets(st.sampled_from(
                      ["analyst", "publisher", "security-officer", "operator"]))), terms=TRI)


def portions(v: Version) -> list[Marking]:
    return [v.marking, *([v.portion[1]] if v.portion else [])]


def originate(partner: Node, versions: list[Version]) -> tuple[dict[Marking, dict[str, Any]],
                                                                dict[str, dict[str, Any]]]:
    """The originator publishes ``versions`` at its own node, which signs them. Returns
    its signed definitions (by marking) and objects (by id), as its store holds them."""
    a = partner.agreement
    unsigned = {m: national_marking(a, partner.party, m.words, rel_to=sorted(m.rel_to),
                                    caveats=sorted(m.caveats), communities=sorted(m.communities))
                for v in versions for m in portions(v)}
    refs = {m: d["id"] for m, d in unsigned.items()}
    who = partner.people.as_person("officer").person
    status = partner.publisher.publish(who, partner.default_collection().collection_id,
                                       [*unsigned.values(), *(stix(v, refs) for v in versions)])
    assert status.body["failure_count"] == 0, status.body
    held: dict[tuple[str, str], dict[str, Any]] = {}
    for row in partner.store.held([*refs.values(), *(v.object_id for v in versions)]):
        obj = json.loads(row.body)
        held[(obj["id"], version_of(obj))] = obj
    return ({m: held[(mid, unsigned[m]["created"])] for m, mid in refs.items()},
            {v.object_id: held[(v.object_id, v.modified)] for v in versions})


def send(world: World, sender: str, objects: list[dict[str, Any]]) -> dict[str, str]:
    """POST ``objects`` to the JPN node's federation inbox as ``sender``'s node would (mutual
    TLS, a signed request), with no consent token; returns what was refused, id -> why."""
    courier = world.couriers[sender]
    peer = world.partners[sender].federation.peers()["JPN"]
    resp = courier._request(peer, "POST", INBOX, json.dumps({"objects": objects},
                                                            ensure_ascii=False).encode())
    assert resp.status_code == 200, resp.text
    return {f["id"]: f["message"] for f in resp.json()["failures"]}


@pytest.fixture(scope="module")
def trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """JPN's node (served: TAXII and its federation listener) and New Zealand's and
    Australia's nodes, each pinning the others, under the three-party sample."""
    root = tmp_path_factory.mktemp("served-partners")
    nodes = {p: make_node(root / p.lower(), p, agreement="jpn-nzl-aus.toml")
             for p in ("JPN", *PARTNERS)}
    for party, node in nodes.items():
        top = {"JPN": "機密", "NZL": "TOP SECRET", "AUS": "TOP SECRET"}[party]
        node.people.add("officer", party=party, clearance=top,
                        caveats=[TRI_EYES_ONLY[party]] if party in TRI_EYES_ONLY else [],
                        communities=COMMUNITIES, roles=["publisher"])
    pin_each_other(*nodes.values())
    jpn = nodes["JPN"]
    with serving(jpn) as url, serving_federation(jpn), serving_federation(nodes["NZL"]), \
            serving_federation(nodes["AUS"]):
        world = World(jpn, url, jpn.default_collection().collection_id,
                      partners={p: nodes[p] for p in PARTNERS},
                      couriers={p: Courier(nodes[p]) for p in PARTNERS}, puller=Courier(jpn),
                      roster=[Reader(f"roster-{party.lower()}-{i}", party, clearance,
                                     frozenset([TRI_EYES_ONLY[party]] if party != "JPN"
                                               else []),
                                     frozenset(COMMUNITIES), frozenset({"analyst"}), terms=TRI)
                              for party in ("JPN", *PARTNERS)
                              for i, clearance in enumerate(sorted(TRI.clearance[party]))])
        for r in world.roster:
            add_person(world, r)
        yield world
        world.http.close()
        for courier in [*world.couriers.values(), world.puller]:
            courier.stop()
    for node in nodes.values():
        node.close()


def receive_round(world: World, versions: list[Version], pull: int = 0) -> set[str]:
    """The partners originate ``versions`` and deliver them to JPN as they really would,
    and as they may not: returns the ids of the marking-definitions they used.

    - Australia pushes its own to New Zealand, and New Zealand relays them to JPN with no
      consent from Australia: JPN refuses every one (a third party's information);
    - each originator sends JPN what it may not release to JPN: JPN refuses each object
      and each definition it may not have, with the reason;
    - with ``pull`` (a page size), JPN first pulls from each originator, ``pull`` rows to
      a page: it receives every version the originator may release to it, each with the
      definitions it cites, wherever the pages are cut;
    - each originator's courier pushes its outbox to JPN over mutual TLS: its release
      filter queued exactly what JPN accepts (nothing is left pending), each object with
      the definitions it cites."""
    marks: set[str] = set()
    for party in PARTNERS:
        mine = [v for v in versions if v.marking.originator == party]
        if not mine:
            continue
        partner, courier = world.partners[party], world.couriers[party]
        definitions, objects = originate(partner, mine)
        marks |= {d["id"] for d in definitions.values()}
        if party == "AUS":
            courier.push_all("NZL")
            nzl = world.partners["NZL"]
            relayed = [json.loads(row.body) for row in nzl.store.held(
                [*(d["id"] for d in definitions.values()), *objects])]
            relayed = [o for o in relayed if o["type"] == "marking-definition"
                       or (o["id"], version_of(o)) in {(v.object_id, v.modified) for v in mine}]
            assert len([o for o in relayed if o["type"] != "marking-definition"]) == len(
                [v for v in mine if TRI.releasable(portions(v), "NZL")])
            refused = send(world, "NZL", relayed)
            for o in relayed:
                assert o["id"] in refused, ("relayed without consent, and accepted", o)
                if o["type"] != "marking-definition" and TRI.releasable(portions(
                        next(v for v in mine if v.object_id == o["id"])), "JPN"):
                    assert "originated by AUS; no consent" in refused[o["id"]], refused[o["id"]]
        withheld = [v for v in mine if not TRI.releasable(portions(v), "JPN")]
        if withheld:
            sent = {m: definitions[m] for v in withheld for m in portions(v)}
            refused = send(world, party, [*sent.values(),
                                          *(objects[v.object_id] for v in withheld)])
            for v in withheld:
                assert f"{party} may not release this to JPN" in refused[v.object_id], refused
            for m, d in sent.items():
                if not TRI.releasable([m], "JPN"):
                    assert d["id"] in refused, ("a definition JPN may not have", m)
        released = [v for v in mine if TRI.releasable(portions(v), "JPN")]
        if pull and world.puller is not None:
            world.puller.pull_once(party, limit=pull)
            held = {(r.object_id, r.version)
                    for r in world.node.store.held([v.object_id for v in released])}
            assert {(v.object_id, normalise_timestamp(v.modified)) for v in released} <= \
                held, ("pulled in pages of", pull, mine)
        courier.push_all("JPN")
        assert partner.store.pending("JPN", 10) == [], mine  # it queued nothing JPN refuses
        world.versions.extend(released)
        # a definition goes on its own label, or with a released object that cites it
        # (an UNOFFICIAL base beside a PROTECTED portion): stored at JPN under its own
        cited = {m for v in released for m in portions(v)}
        world.definitions.update({d["id"]: m for m, d in definitions.items()
                                  if TRI.releasable([m], "JPN") or m in cited})
    return marks


TRI_PUBLISHER = Reader("officer", "JPN", "機密", frozenset(), frozenset(COMMUNITIES),
                       frozenset({"publisher"}), terms=TRI)


@EXAMPLES
@given(batch=st.lists(partner_objects(), min_size=1, max_size=5),
       people=st.lists(tri_readers(), min_size=1, max_size=2), limit=st.integers(1, 4),
       kind=st.sampled_from(sorted(REQUIRED)), cut=st.integers(0, 1000),
       pull=st.sampled_from([0, 0, 1, 2, 3, 500]))
def test_partner_objects_received_by_federation_are_served_exactly_as_the_agreement_allows(
        trio: World, batch: list[list[Version]], people: list[Reader], limit: int,
        kind: str, cut: int, pull: int) -> None:
    """New Zealand and Australia originate objects (their own words, REL TO with or
    without JPN, eyes-only caveats, communities, granular portions) at their own nodes,
    and later new versions of some; they reach JPN's node by federation only. JPN serves
    each of its people exactly what the agreement's equivalence table and rules allow,
    on every read endpoint; what JPN refused is never served. Often JPN pulls first, in
    pages of 1 to 500 rows, before the originators push."""
    marks: set[str] = set()
    for first in (True, False):  # first versions, then the originators' new versions
        marks |= receive_round(trio, [obj[0 if first else 1] for obj in batch
                                      if first or len(obj) > 1], pull)
    if not TRI_PUBLISHER.token:
        TRI_PUBLISHER.token = trio.node.people.issue_token("officer")
    for r in people:
        add_person(trio, r)
    versions = [v for obj in batch for v in obj]
    for r in [TRI_PUBLISHER, *people]:
        check_reader(trio, r, versions, marks, limit, kind, cut)
    for r in trio.roster:  # a reader at every clearance of every party, over everything
        check_collection(trio, r)


def test_a_definition_the_sender_may_not_release_is_refused(trio: World) -> None:
    """Found by the test above: receipt took the release decision on objects only, so a
    partner's marking-definition that it may not release to JPN (New Zealand's
    CONFIDENTIAL // REL TO NZL, or Australia's relayed by New Zealand without consent)
    was stored at JPN, and served there to New Zealand's people. A definition is released
    where what it marks may go: it is refused like any other object."""
    nzl, aus = trio.partners["NZL"], trio.partners["AUS"]
    nz_only = Marking("C", frozenset(), frozenset(), frozenset(), "NZL")
    # all three communities: a marking the generators never make, so JPN does not hold it
    shared = Marking("PROTECTED", frozenset({"JPN", "NZL"}), frozenset(),
                     frozenset(COMMUNITIES), "AUS")
    oid = f"campaign--{uuid.uuid4()}"
    definitions, objects = originate(nzl, [Version(oid, "campaign", T0, nz_only, None)])
    refused = send(trio, "NZL", [definitions[nz_only], objects[oid]])
    assert refused == {oid: "NZL may not release this to JPN: JPN not in REL TO NZL",
                       definitions[nz_only]["id"]: "NZL may not release this to JPN: "
                       "JPN not in REL TO NZL"}
    aid = f"malware--{uuid.uuid4()}"
    theirs, _ = originate(aus, [Version(aid, "malware", T0, shared, None)])
    trio.couriers["AUS"].push_all("NZL")
    relayed = json.loads(nzl.store.held([theirs[shared]["id"]])[0].body)
    assert "originated by AUS; no consent" in send(trio, "NZL", [relayed])[relayed["id"]]
    assert not trio.node.store.held([definitions[nz_only]["id"], relayed["id"], oid])
    reader = next(r for r in trio.roster if r.party == "NZL" and r.clearance == "TOP SECRET")
    assert reader.may_read(nz_only)  # were it held, this reader would be served it
    trio.couriers["AUS"].push_all("JPN")  # the originator sends its own: received
    trio.versions.append(Version(aid, "malware", T0, shared, None))
    trio.definitions[theirs[shared]["id"]] = shared
    check_collection(trio, reader)


def test_an_object_whose_base_level_is_not_exchanged_goes_with_its_definition(
        tmp_path: Path) -> None:
    """An Australian object marked UNOFFICIAL // REL TO JPN, with a PROTECTED // REL TO
    JPN portion: its banner is PROTECTED, a covered level, so Australia may release it to
    JPN; JPN must be able to hold it, which needs both its marking-definitions."""
    nodes = {p: make_node(tmp_path / p.lower(), p, agreement="jpn-nzl-aus.toml")
             for p in ("JPN", "AUS")}
    jpn, aus = nodes["JPN"], nodes["AUS"]
    try:
        aus.people.add("officer", party="AUS", clearance="TOP SECRET", roles=["publisher"])
        jpn.federation.add_peer(make_card(aus.identity))
        aus.federation.add_peer(make_card(jpn.identity))
        to_jpn = frozenset({"JPN"})
        v = Version(f"indicator--{uuid.uuid4()}", "indicator", T0,
                    Marking("UNOFFICIAL", to_jpn, frozenset(), frozenset(), "AUS"),
                    ("description", Marking("PROTECTED", to_jpn, frozenset(), frozenset(),
                                            "AUS")))
        assert TRI.releasable(portions(v), "JPN")
        originate(aus, [v])
        courier = Courier(aus)
        with serving_federation(jpn):
            courier.push_all("JPN")
            courier.stop()  # closes its connection, so the listener stops at once
        assert [row.version for row in jpn.store.held([v.object_id])] != []
        assert aus.store.pending("JPN", 10) == []
    finally:
        for node in nodes.values():
            node.close()
