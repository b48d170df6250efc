"""What a person may read the base label of, but not be served (a portion it cannot lose
is above them), or not every version of: no answer, page or desk tells them it is there
(found in review: each docstring says what the node did before its fix)."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from intelpact.model import national_marking
from intelpact.services.courier import Courier
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import Query, normalise_timestamp

from helpers import (
    T0,
    indicator,
    make_node,
    pin_each_other,
    serving,
    serving_federation,
    stix_id,
)

TAXII = "application/taxii+json;version=2.1"
PW = "review-test-password"
MISSING = "indicator--00000000-0000-4000-8000-0000000000aa"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _people(node: Node) -> None:
    node.people.add("pub", party="JPN", clearance="機密",
                    roles=["analyst", "publisher", "security-officer"], password=PW)
    node.people.add("reader", party="JPN", clearance="秘", roles=["analyst"], password=PW)
    node.people.add("officer", party="JPN", clearance="秘",
                    roles=["analyst", "security-officer"], password=PW)


def _publish(node: Node, objs: list[dict[str, Any]], level: str, rel: tuple[str, ...]
             ) -> None:
    pub = node.people.as_person("pub").person
    cid = node.default_collection().collection_id
    status = node.publisher.publish(pub, cid, objs, marking=MarkingRequest(level, rel))
    assert status.body["failure_count"] == 0, status.body


def _pattern_above_reader(node: Node) -> list[dict[str, Any]]:
    """Granular markings that make an indicator's required ``pattern`` a 機密 portion
    (its marking published): a 秘 reader cannot be served a version carrying them."""
    top = national_marking(node.agreement, "JPN", "機密", rel_to=["NZL"])
    pub = node.people.as_person("pub").person
    node.publisher.publish(pub, node.default_collection().collection_id, [top])
    return [{"selectors": ["pattern"], "marking_ref": top["id"]}]


def _unservable(node: Node, name: str) -> dict[str, Any]:
    """An indicator whose base label (秘 REL TO JPN, NZL) a 秘 reader may read, but whose
    required ``pattern`` is a 機密 portion: for that reader it cannot be served, so it is
    answered as an object that does not exist (GET is 404)."""
    obj = indicator(name, granular_markings=_pattern_above_reader(node))
    _publish(node, [obj], "秘", ("NZL",))
    return obj


def _version(n: int) -> str:
    """The n-th version's timestamp (n from 0): one a minute from 2026-11-02."""
    return f"2026-11-{2 + n // 1440:02d}T{(n // 60) % 24:02d}:{n % 60:02d}:00.000Z"


def _latest(node: Node, who: str, query: Query) -> dict[str, str]:
    """Each object's version ``who`` is served by ``Node.find`` for ``query``."""
    cid = node.default_collection().collection_id
    return {row.object_id: row.version
            for row, _ in node.find(node.people.as_person(who), cid, query)[1]}


def _a_node_with_an_unservable_object(tmp_path: Path) -> tuple[Node, dict[str, Any], str]:
    """A node with an object ``_unservable`` to 秘 readers, and its collection's objects
    path."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    hidden = _unservable(node, "U")
    return node, hidden, f"/intel/collections/{node.default_collection().collection_id}/objects/"


def _get(url: str, who: str, path: str, method: str = "GET", **params: str
         ) -> httpx.Response:
    return httpx.request(method, url + path, auth=(who, PW), headers={"Accept": TAXII},
                         params=params, timeout=30)


def _login(url: str, who: str) -> httpx.Client:
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    token = CSRF.search(client.get("/login").text)
    assert token
    r = client.post("/login", data={"csrf": token.group(1), "name": who, "password": PW})
    assert r.status_code == 303, r.text
    return client


def test_a_page_says_more_only_when_full_of_what_the_reader_may_be_served(
        tmp_path: Path) -> None:
    """A, U, C are stored in that order; the reader may be served A and C, not U (GET
    /objects/U/ is 404, as for an id held nowhere). A page of limit=2 should be A, C;
    it is A alone with more=true: a page shorter than its limit that says "more" tells
    the reader that an object they may not see lies between A and C."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    a = indicator("A")
    _publish(node, [a], "秘", ("NZL",))
    hidden = _unservable(node, "U")
    c = indicator("C")
    _publish(node, [c], "秘", ("NZL",))
    cid = node.default_collection().collection_id
    path = f"/intel/collections/{cid}/objects/"
    with serving(node) as url:
        assert _get(url, "reader", f"{path}{hidden['id']}/").status_code == 404
        assert _get(url, "reader", f"{path}{MISSING}/").status_code == 404
        page = _get(url, "reader", path, **{"match[type]": "indicator", "limit": "2"}).json()
        names = [o["name"] for o in page.get("objects", [])]
        # the page a node without U gives: both objects, nothing more
        assert (names, page["more"]) == (["A", "C"], False), page
    node.close()


def test_an_unservable_object_is_404_whatever_the_filters(tmp_path: Path) -> None:
    """An object the reader sees no version of is 404 (an id held nowhere) with filters
    too: that no version passed them (an empty envelope) is told only to who may be
    served one. The unservable object's base label is one the reader may read: a check
    on that alone would answer it with an empty envelope, and so tell them it is there."""
    node, hidden, path = _a_node_with_an_unservable_object(tmp_path)
    with serving(node) as url:
        for params in ({}, {"added_after": "2099-01-01T00:00:00Z"},
                       {"match[version]": "2020-01-01T00:00:00Z"},
                       {"match[spec_version]": "2.0"}):
            for tail in ("", "versions/"):
                if tail and "match[version]" in params:
                    continue
                got_h = _get(url, "reader", f"{path}{hidden['id']}/{tail}", **params)
                got_m = _get(url, "reader", f"{path}{MISSING}/{tail}", **params)
                assert (got_h.status_code, got_h.content) == (404, got_m.content), params
                # the publisher, who may be served it, is answered with an empty page
                if params:
                    mine = _get(url, "pub", f"{path}{hidden['id']}/{tail}", **params)
                    assert (mine.status_code, mine.json()) == (200, {"more": False})
    node.close()


def test_a_page_that_reads_on_stays_oldest_first(tmp_path: Path) -> None:
    """Stored in this order: U's first version, X (unservable to the reader, no other
    version), A, then U's second version (unservable: its first is served instead). A
    page of limit=2 read X and A, dropped X, and read on for one row, U's second version,
    served as U's first: the page was A, U (v1), though U (v1) was added before A, and
    its X-TAXII-Date-Added-First was A's, later than -Last. Every page, of every limit,
    is now oldest first, and the pages together serve what one unpaged read does, each
    once."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    marked = _pattern_above_reader(node)
    u = stix_id("indicator")
    _publish(node, [indicator("U", oid=u, modified=_version(0))], "秘", ("NZL",))
    _publish(node, [indicator("X", granular_markings=marked)], "秘", ("NZL",))
    _publish(node, [indicator("A")], "秘", ("NZL",))
    _publish(node, [indicator("U", oid=u, modified=_version(1), granular_markings=marked)],
             "秘", ("NZL",))
    cid = node.default_collection().collection_id
    path = f"/intel/collections/{cid}/objects/"
    kind = {"match[type]": "indicator"}
    with serving(node) as url:
        def served(r: httpx.Response) -> list[tuple[str, str]]:
            assert r.status_code == 200, r.text
            objects = r.json().get("objects", [])
            added = [node.store.query(cid, list(node.store.labels()), Query(
                ids=(o["id"],), versions=(normalise_timestamp(o["modified"]),))
            ).rows[0].date_added for o in objects]
            assert added == sorted(added), (objects, added)  # oldest first
            if added:
                assert (r.headers["X-TAXII-Date-Added-First"],
                        r.headers["X-TAXII-Date-Added-Last"]) == (added[0], added[-1])
            return [(o["name"], o["modified"]) for o in objects]

        whole = served(_get(url, "reader", path, **kind))
        assert whole == [("U", "2026-11-02T00:00:00.000Z"), ("A", T0)]
        for limit in (1, 2, 3):
            got: list[tuple[str, str]] = []
            params = {**kind, "limit": str(limit)}
            while True:
                r = _get(url, "reader", path, **params)
                got += served(r)
                if not r.json()["more"]:
                    break
                params["next"] = r.json()["next"]
            assert sorted(got) == sorted(whole), (limit, got)  # none skipped nor repeated
    # the console's pages walk newest first: a version served instead turned the page
    # oldest first (U v1, A, B: B was added after U's second version, so stays first)
    _publish(node, [indicator("B")], "秘", ("NZL",))
    reader = node.people.as_person("reader")
    page = node.find(reader, cid, Query(types=("indicator",), newest_first=True))[1]
    assert [(json.loads(body)["name"], row.version) for row, body in page] == [
        ("B", f"{T0[:-1]}000Z"), ("A", f"{T0[:-1]}000Z"), ("U", "2026-11-02T00:00:00.000000Z")]
    node.close()


def test_several_version_choices_each_take_effect_on_what_the_reader_may_see(
        tmp_path: Path) -> None:
    """match[version]=first,last is each object's first and last version the reader may
    see, served together; first,<timestamp> the first and that version. Where a version
    chosen on its base label cannot be served, the one served in its place (docs/node.md)
    was looked for only when match[version] was "first" or "last" alone: with several
    values, W's last version they may see (v1, its v2 being unservable) was left out,
    and only "first" took effect. Z's first and last (v0, v2) are both unservable: v1,
    served for each, is served once, also over pages of one."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    marked = _pattern_above_reader(node)
    w, z = stix_id("indicator"), stix_id("indicator")
    _publish(node, [indicator("W", oid=w, modified=_version(0)),
                    indicator("Z", oid=z, modified=_version(0), granular_markings=marked)],
             "秘", ("NZL",))
    _publish(node, [indicator("A")], "秘", ("NZL",))
    _publish(node, [indicator("W", oid=w, modified=_version(1)),
                    indicator("Z", oid=z, modified=_version(1))], "秘", ("NZL",))
    _publish(node, [indicator("B")], "秘", ("NZL",))
    _publish(node, [indicator("W", oid=w, modified=_version(2), granular_markings=marked),
                    indicator("Z", oid=z, modified=_version(2), granular_markings=marked)],
             "秘", ("NZL",))
    cid = node.default_collection().collection_id
    path = f"/intel/collections/{cid}/objects/"
    v = [_version(n) for n in range(3)]
    with serving(node) as url:
        def versions(oid: str, choice: str) -> list[str]:
            r = _get(url, "reader", f"{path}{oid}/", **{"match[version]": choice})
            assert r.status_code == 200, r.text
            return [o["modified"] for o in r.json().get("objects", [])]

        assert versions(w, "first") == [v[0]] and versions(w, "last") == [v[1]]
        for choice in ("first,last", "last,first", f"{v[0]},last"):
            assert versions(w, choice) == [v[0], v[1]], choice
        assert versions(w, f"first,{v[2]}") == [v[0]]  # v2 is not theirs
        assert versions(w, f"last,{v[1]}") == [v[1]]  # chosen twice, served once
        assert versions(z, "first,last") == [v[1]]
        for limit in ("1", "2", "1000"):
            got: list[tuple[str, str]] = []
            params = {"match[version]": "first,last", "match[id]": f"{w},{z}", "limit": limit}
            while True:
                page = _get(url, "reader", path, **params).json()
                got += [(o["name"], o["modified"]) for o in page.get("objects", [])]
                if not page["more"]:
                    break
                params["next"] = page["next"]
            assert sorted(got) == [("W", v[0]), ("W", v[1]), ("Z", v[1])], (limit, got)
    node.close()


def test_delete_of_first_or_last_chooses_among_what_the_officer_may_see(
        tmp_path: Path) -> None:
    """DELETE ?match[version]=last (or first) chose the version on base labels alone, as
    the store does, not among the versions the officer may be served (GET's last is the
    newest they may see: docs/node.md): X's v2, which they cannot be served, was chosen,
    then kept (they may not delete it), and the answer was 404 "no such object" for an
    object they are served; their last version, v1, was not deleted. An analyst was told
    404 too, not 403. Now first and last are theirs; one they may see none of is 404, as
    an id held nowhere, and nothing is deleted."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    marked = _pattern_above_reader(node)
    x, y, z = stix_id("indicator"), stix_id("indicator"), stix_id("indicator")
    _publish(node, [indicator("X", oid=x, modified=_version(0)),
                    indicator("Y", oid=y, modified=_version(0), granular_markings=marked),
                    indicator("Z", oid=z, modified=_version(0), granular_markings=marked)],
             "秘", ("NZL",))
    _publish(node, [indicator("X", oid=x, modified=_version(1), granular_markings=marked),
                    indicator("Y", oid=y, modified=_version(1)),
                    indicator("Z", oid=z, modified=_version(1), granular_markings=marked)],
             "秘", ("NZL",))
    cid = node.default_collection().collection_id
    path = f"/intel/collections/{cid}/objects/"

    def held(oid: str) -> list[str]:
        return [r.version[:16] for r in node.store.query(cid, list(node.store.labels()),
                                                         Query(ids=(oid,), versions=("all",))
                                                         ).rows]

    v0, v1 = _version(0)[:16], _version(1)[:16]
    with serving(node) as url:
        def delete(who: str, oid: str, choice: str) -> httpx.Response:
            return _get(url, who, f"{path}{oid}/", "DELETE", **{"match[version]": choice})

        # the analyst may see X's last version (v1): 403 for the role, as for any object
        assert delete("reader", x, "last").status_code == 403
        assert delete("reader", y, "first").status_code == 403
        assert delete("officer", x, "last").status_code == 200
        assert held(x) == [v1]  # their last (v0) deleted; v1, not theirs, left
        assert delete("officer", y, "first").status_code == 200
        assert held(y) == [v0]
        # Z: they may see no version of it, so no first nor last: as an id held nowhere
        for choice in ("last", "first", "first,last"):
            got, nowhere = delete("officer", z, choice), delete("officer", MISSING, choice)
            assert (got.status_code, got.content) == (404, nowhere.content), choice
            assert delete("reader", z, choice).status_code == 404
        assert held(z) == [v0, v1]
    node.close()


def test_delete_by_an_analyst_answers_an_unservable_object_as_a_missing_one(
        tmp_path: Path) -> None:
    """GET of the unservable object is 404, byte for byte as an id held nowhere; DELETE
    of it by an analyst (not a security officer) is 403 "deleting needs the
    security-officer role", while DELETE of an id held nowhere is 404: the analyst learns
    the object exists."""
    node, hidden, path = _a_node_with_an_unservable_object(tmp_path)
    with serving(node) as url:
        got_h = _get(url, "reader", f"{path}{hidden['id']}/")
        got_m = _get(url, "reader", f"{path}{MISSING}/")
        assert (got_h.status_code, got_h.content) == (got_m.status_code, got_m.content)
        del_h = _get(url, "reader", f"{path}{hidden['id']}/", method="DELETE")
        del_m = _get(url, "reader", f"{path}{MISSING}/", method="DELETE")
        assert (del_h.status_code, del_h.content) == (del_m.status_code, del_m.content), \
            (del_h.status_code, del_h.text, del_m.status_code, del_m.text)
    node.close()


def test_an_officer_deletes_nothing_they_cannot_be_served(
        tmp_path: Path) -> None:
    """A 秘 security officer cannot be served the unservable object (GET 404, as an id
    held nowhere), yet DELETE of it answers 200 and deletes it, where DELETE of an id
    held nowhere is 404: existence is told, and what they cannot see is destroyed."""
    node, hidden, path = _a_node_with_an_unservable_object(tmp_path)
    with serving(node) as url:
        assert _get(url, "officer", f"{path}{hidden['id']}/").status_code == 404
        del_m = _get(url, "officer", f"{path}{MISSING}/", method="DELETE")
        del_h = _get(url, "officer", f"{path}{hidden['id']}/", method="DELETE")
        still = _get(url, "pub", f"{path}{hidden['id']}/").status_code
        assert (del_h.status_code, del_h.content, still) == (del_m.status_code,
                                                            del_m.content, 200), \
            (del_h.status_code, del_h.text, still)
    node.close()


def test_the_desk_says_nothing_of_a_version_the_officer_may_not_read(
        tmp_path: Path) -> None:
    """X has v1 at 秘 REL TO JPN, NZL (the 秘 officer may read it) and v2 at 極秘 JPN only
    (they may not). Over TAXII, v2 does not exist for them (versions lists v1 only). On
    the desk, filtered on X (an object they "may read": some version is), every event
    about v2 is listed under X's id, and a denial of v2 shows its reason, which names
    v2's level: "... does not dominate 極秘 (SECRET)"."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    oid = f"indicator--{uuid.uuid4()}"
    v2 = "2026-11-02T00:00:00.000Z"
    _publish(node, [indicator("X", oid=oid)], "秘", ("NZL",))
    _publish(node, [indicator("X", oid=oid, modified=v2)], "極秘", ("JPN",))
    cid = node.default_collection().collection_id
    path = f"/intel/collections/{cid}/objects/{oid}/"
    with serving(node) as url:
        versions = _get(url, "officer", path + "versions/").json()["versions"]
        assert versions == [T0.replace(".000Z", ".000000Z")]  # v2 is not theirs
        # someone asks for v2 (its time guessed or known): a denial with its reason. The
        # answer is the empty envelope of a version held nowhere: the reader may see X
        # (v1), and TAXII's 404 is for an object that is not there (it was 404 here, as
        # if X were not; a time held nowhere is answered the same, so v2 is not told)
        asked = _get(url, "reader", path, **{"match[version]": v2})
        nowhere = _get(url, "reader", path, **{"match[version]": "2020-01-01T00:00:00Z"})
        assert (asked.status_code, asked.content) == (nowhere.status_code, nowhere.content)
        assert (asked.status_code, asked.json()) == (200, {"more": False})
        with contextlib.closing(_login(url, "officer")) as officer:
            desk = officer.get("/desk", params={"object": oid})
        assert desk.status_code == 200
        assert "極秘" not in desk.text, re.findall(r"[^<>]*極秘[^<>]*", desk.text)
        # nor is any event about v2 listed under X, as a withheld object (that would
        # say a version they may not read is there); those about v1 are
        assert '<span class="withheld">withheld object</span>' not in desk.text
        assert desk.text.count(f'<a href="/objects/{oid}">') >= 2  # v1's publish, read
    node.close()


TOP = re.compile(r'<div class="banner band-([a-z-]+)"[^>]*id="banner-top">([^<]+)</div>')


def test_the_desk_banner_is_that_of_what_the_officer_is_served(
        tmp_path: Path) -> None:
    """P is 秘 REL TO JPN, NZL with its description a 機密 portion. The 秘 officer is served
    P without its description, under the banner of what they see (秘). The desk, filtered
    on P, raises the page's banner with P's *stored* banner (_Readable.banners), which
    joins the withheld portion: the officer is shown 機密, the level of what is withheld."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    top = national_marking(node.agreement, "JPN", "機密", rel_to=["NZL"])
    pub = node.people.as_person("pub").person
    node.publisher.publish(pub, node.default_collection().collection_id, [top])
    obj = indicator("P", granular_markings=[{"selectors": ["description"],
                                             "marking_ref": top["id"]}])
    _publish(node, [obj], "秘", ("NZL",))
    with serving(node) as url:
        with contextlib.closing(_login(url, "officer")) as officer:
            page = officer.get(f"/objects/{obj['id']}")
            desk = TOP.search(officer.get("/desk", params={"object": obj["id"]}).text)
        assert page.status_code == 200 and "withheld" in page.text
        seen = TOP.search(page.text)
        assert seen and desk
        assert "機密" not in seen.group(2)  # the object's own page: what they see
        assert desk.groups() == seen.groups(), (desk.groups(), seen.groups())
    node.close()


def test_the_desk_does_not_name_an_object_the_officer_cannot_be_served(tmp_path: Path) -> None:
    """The unservable object U is answered to the 秘 officer as one held nowhere (its
    console page is the 404 of a missing id), but the desk's check is the base label
    alone: filtered on U, the desk lists its events under U's id, as a link; filtered
    on an id held nowhere it lists none."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    hidden = _unservable(node, "U")
    with serving(node) as url:
        with contextlib.closing(_login(url, "officer")) as officer:
            got = officer.get(f"/objects/{hidden['id']}")
            gone = officer.get(f"/objects/{MISSING}")
            desk = officer.get("/desk", params={"object": hidden["id"]}).text
            missing = officer.get("/desk", params={"object": MISSING}).text
        assert got.status_code == gone.status_code == 404
        assert got.text == gone.text
        assert f'<a href="/objects/{hidden["id"]}">' not in desk
        assert ("No event matches." in desk) == ("No event matches." in missing)
    node.close()


def test_the_desk_filtered_on_an_object_reads_on_past_events_about_versions_withheld(
        tmp_path: Path) -> None:
    """Filtered on X, the desk leaves out the events about a version of X the officer
    may not read, and reads on for a full page: the 60 newest events are about v2 (a page
    is 50), and the page shows those about v1 below them, with no "older" link after."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    oid = f"indicator--{uuid.uuid4()}"
    _publish(node, [indicator("X", oid=oid)], "秘", ("NZL",))
    _publish(node, [indicator("X", oid=oid, modified="2026-11-02T00:00:00.000Z")], "極秘",
             ("JPN",))
    pub = node.people.as_person("pub")
    cid = node.default_collection().collection_id
    for _ in range(60):  # each read names both versions: about v2 too, so left out
        assert len(node.find(pub, cid, Query(ids=(oid,), versions=("all",)))[1]) == 2
    with serving(node) as url, contextlib.closing(_login(url, "officer")) as officer:
        desk = officer.get("/desk", params={"object": oid}).text
    kinds = re.findall(r'<tr id="event-\d+"><td>\d+</td><td>[^<]*</td><td>([^<]*)</td>', desk)
    assert kinds == ["publish"], kinds  # v1's: none of the 61 events about v2
    assert '<span class="withheld">withheld object</span>' not in desk
    assert "audit_before=" not in desk  # no older page: nothing more it may see
    node.close()


def test_an_object_page_names_the_senders_of_that_version_only(tmp_path: Path) -> None:
    """At NZL, the page of JPN's X (the version JPN pushed) said it was received from
    every party that ever sent a version of X: one relayed by AUS, which the viewer may
    not read, named AUS too."""
    jpn = make_node(tmp_path / "jpn", "JPN", agreement="jpn-nzl-aus.toml")
    nzl = make_node(tmp_path / "nzl", "NZL", agreement="jpn-nzl-aus.toml")
    pin_each_other(jpn, nzl)
    _people(jpn)
    nzl.people.add("mere", party="NZL", clearance="SECRET", roles=["analyst"], password=PW)
    obj = indicator("X")
    _publish(jpn, [obj], "秘", ("NZL", "AUS"))
    with serving_federation(nzl), Courier(jpn) as courier:
        assert courier.push_all("NZL") >= 1
    hidden = "2026-11-09T00:00:00.000000Z"  # a later version relayed by AUS: not read here
    nzl.audit.record(nzl.audit.event("receive", party="AUS", actor="AUS", originator="JPN",
                                     objects=[(obj["id"], hidden)]))
    with serving(nzl) as url, contextlib.closing(_login(url, "mere")) as mere:
        page = mere.get(f"/objects/{obj['id']}").text
    assert "Originated by JPN; received from JPN." in page, re.findall(r"<li>Orig[^<]*", page)
    jpn.close()
    nzl.close()


def test_the_last_version_served_instead_is_the_newest_servable_not_the_hundredth(
        tmp_path: Path) -> None:
    """TAXII's default read is each object's latest version *the person may see*: when the
    newest version cannot be served to them, the next older one that can takes its place
    (docs/node.md, `match[version]`). With more than 100 older versions, Node._instead
    looked only at the 100 oldest (its query's limit was 100 per row dropped), so the
    reader was served the 100th version as the latest, and a later one (a revocation, a
    new position) never reached them."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    oid = stix_id("indicator")
    _publish(node, [indicator("buoy", oid=oid, modified=_version(n)) for n in range(120)],
             "秘", ("NZL",))
    _publish(node, [indicator("buoy", oid=oid, modified=_version(120),
                              granular_markings=_pattern_above_reader(node))], "秘", ("NZL",))
    # the 120th version (n = 119): the newest the reader may see
    assert _latest(node, "reader", Query(ids=(oid,))) == {oid: "2026-11-02T01:59:00.000000Z"}
    node.close()


def test_an_object_whose_newest_version_is_withheld_does_not_vanish_from_a_listing(
        tmp_path: Path) -> None:
    """The same look-up on a page of several objects: Node._instead fetched every version
    of the page's unservable objects in one query limited to 100 rows per object, oldest
    first by seq. One object with many versions filled it, and another object's older
    versions were never looked at: that object, which the reader may see in an older
    version, was left out of TAXII's objects and manifest altogether."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    marked = _pattern_above_reader(node)
    busy, quiet = stix_id("indicator"), stix_id("indicator")
    _publish(node, [indicator("busy", oid=busy, modified=_version(n)) for n in range(250)],
             "秘", ("NZL",))
    _publish(node, [indicator("quiet", oid=quiet, modified=_version(0))], "秘", ("NZL",))
    _publish(node, [indicator("busy", oid=busy, modified=_version(250), granular_markings=marked),
                    indicator("quiet", oid=quiet, modified=_version(1), granular_markings=marked)],
             "秘", ("NZL",))
    assert _latest(node, "reader", Query(types=("indicator",))) == {
        busy: "2026-11-02T04:09:00.000000Z", quiet: "2026-11-02T00:00:00.000000Z"}
    node.close()


def test_a_search_by_classification_shows_only_objects_of_that_classification(
        tmp_path: Path) -> None:
    """The console's classification filter matches "the object's own marking (its base
    label)" (docs/console.md). When the version found could not be served to the viewer (a
    portion it needs is withheld), Node._instead served an older version in its place,
    looked up without the search's filters: the page for 秘 then listed an object whose
    shown version is 取扱注意, and so told the viewer that a newer 秘 version, which for
    them does not exist (docs/node.md), is stored. The same went for the dates added."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    oid = stix_id("indicator")
    _publish(node, [indicator("tanker", oid=oid, modified=_version(0))], "取扱注意", ("NZL",))
    _publish(node, [indicator("tanker", oid=oid, modified=_version(1),
                              granular_markings=_pattern_above_reader(node))], "秘", ("NZL",))
    labels = node.store.labels()
    cid = node.default_collection().collection_id
    older, newest = node.store.query(cid, list(labels), Query(ids=(oid,), versions=("all",))
                                     ).rows
    level = labels[newest.label_id].rank
    wanted = tuple(i for i, lb in labels.items() if lb.rank == level)  # as console/read.py
    kind = ("indicator",)
    assert _latest(node, "reader", Query(types=kind, label_ids=wanted, newest_first=True)) == {}
    assert _latest(node, "reader", Query(types=kind, newest_first=True)) == {oid: older.version}
    # and the dates: only the newest version was added after the older one
    assert _latest(node, "reader", Query(types=kind, added_after=older.date_added)) == {}
    node.close()


def _walk(url: str, who: str, path: str, by: str, limit: int, **params: str
          ) -> list[tuple[str, str]]:
    """Every page of a list endpoint (objects, manifest, versions), ``by`` "next" or by
    "date" (each page's X-TAXII-Date-Added-Last as the next one's added_after, as TAXII
    2.1 §3.6 lets a client page, and many do): the (id, version) of each item served."""
    got: list[tuple[str, str]] = []
    params = {**params, "limit": str(limit)}
    for _ in range(100):
        r = _get(url, who, path, **params)
        assert r.status_code == 200, r.text
        page = r.json()
        if "versions" in page:
            got += [(path, v) for v in page["versions"]]
        else:
            got += [(o["id"], normalise_timestamp(o.get("version") or o["modified"]))
                    for o in page.get("objects", [])]
        if page["more"]:  # a page by date starts after the last one's Last: it moves on
            first, last = (r.headers[f"X-TAXII-Date-Added-{h}"] for h in ("First", "Last"))
            assert params.get("added_after", "") < first <= last, (params, first, last)
        if not page["more"]:
            return got
        if by == "next":
            params["next"] = page["next"]
        else:
            params["added_after"] = r.headers["X-TAXII-Date-Added-Last"]
    raise AssertionError(f"paging {path} by {by} did not end: {got}")


def _first_and_last_unservable(node: Node) -> dict[str, str]:
    """Stored in this order: U v0 (unservable to the reader), B, U v1, L v0, C, L v1
    (unservable). The reader's first version of U is v1, added after B; their last of L
    is v0, added before C."""
    marked = _pattern_above_reader(node)
    ids = {name: stix_id("indicator") for name in "UBLC"}
    for name, n, portions in (("U", 0, marked), ("B", 0, None), ("U", 1, None),
                              ("L", 0, None), ("C", 0, None), ("L", 1, marked)):
        extra = {"granular_markings": portions} if portions else {}
        _publish(node, [indicator(name, oid=ids[name], modified=_version(n), **extra)],
                 "秘", ("NZL",))
    return ids


def _paged(tmp_path: Path) -> tuple[Node, dict[str, str], dict[str, str], str]:
    """A JPN node with its people and the objects of _first_and_last_unservable: the
    node, their ids by name, their names by id, and the collection's path."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    ids = _first_and_last_unservable(node)
    cid = node.default_collection().collection_id
    return node, ids, {oid: name for name, oid in ids.items()}, f"/intel/collections/{cid}/"


def test_paging_by_date_added_last_serves_what_paging_by_next_does(tmp_path: Path) -> None:
    """A client paging by date sends each page's X-TAXII-Date-Added-Last as the next
    page's added_after. With match[version]=first, U's v0 (unservable) was read first and
    U's v1 served in its place, so a page of one said Last = U v1's date_added, after B's:
    the next page, added after it, never served B, which paging by `next` serves."""
    node, ids, names, base = _paged(tmp_path)
    with serving(node) as url:
        def walk(path: str, by: str, limit: int, **params: str) -> list[tuple[str, str]]:
            return sorted((names.get(oid, oid), v[11:16])
                          for oid, v in _walk(url, "reader", path, by, limit, **params))

        for endpoint in ("objects/", "manifest/"):
            for choice in ("first", "all"):
                kind = {"match[type]": "indicator", "match[version]": choice}
                whole = walk(base + endpoint, "next", 1000, **kind)
                assert whole == [("B", "00:00"), ("C", "00:00"), ("L", "00:00"),
                                 ("U", "00:01")], whole
                for limit in (1, 2, 3):
                    for by in ("next", "date"):
                        got = walk(base + endpoint, by, limit, **kind)
                        assert got == whole, (endpoint, choice, limit, by, got)
        for name in "UL":
            path = f"{base}objects/{ids[name]}/versions/"
            assert walk(path, "date", 1) == walk(path, "next", 1000) == [(path, "00:01" if
                                                                         name == "U" else "00:00")]
    node.close()



@pytest.mark.xfail(strict=True, reason="not fixed: a version served instead for 'last' "
                   "sits at its base's place in the walk, not at its own date (docs/node.md)")
def test_paging_latest_versions_by_date_serves_what_paging_by_next_does(
        tmp_path: Path) -> None:
    """The same with match[version]=last (TAXII's default): L's v1 cannot be served, so
    its v0 is L's latest for the reader. The walk reads latest versions on their base
    label, so reaches L at v1 (after C), where v0 is served instead: paged by `next`, v0
    comes after C; paged by date, the page after C asks for what was added after C, and
    v0, added before C, is left out (a poll's added_after must leave it out: the reader
    has it, and serving it again would tell them a newer version is there). Not fixed:
    v0 would have to be read at its own place in the walk (it is superseded there)."""
    node, ids, names, base = _paged(tmp_path)
    with serving(node) as url:
        for endpoint in ("objects/", "manifest/"):
            kind = {"match[type]": "indicator"}
            for limit in (1000, 1, 2, 3):
                for by in ("next", "date"):
                    got = sorted((names[oid], v[11:16]) for oid, v in _walk(
                        url, "reader", base + endpoint, by, limit, **kind))
                    assert got == [("B", "00:00"), ("C", "00:00"), ("L", "00:00"),
                                   ("U", "00:01")], (endpoint, limit, by, got)
    node.close()


@pytest.mark.xfail(strict=True, reason="not fixed: 'first' is chosen on base labels, and "
                   "added_after filters what it chose (docs/node.md)")
def test_polling_first_versions_by_date_serves_a_first_version_added_since(
        tmp_path: Path) -> None:
    """A client polling with added_after = B's date_added (a time after U's v0, which the
    reader cannot be served, and before U's v1) asks for first versions added since:
    U's v1 is the reader's first version of U, added since, but "first" chose U's v0 on
    its base label, which added_after then left out, so U is never served to them."""
    node, ids, names, base = _paged(tmp_path)
    kind = {"match[type]": "indicator"}
    with serving(node) as url:
        added = {names[o["id"]]: o["date_added"] for o in _get(
            url, "reader", base + "manifest/", **kind).json()["objects"]}
        got = sorted(names[oid] for oid, _ in _walk(
            url, "reader", base + "objects/", "date", 1000, added_after=added["B"],
            **kind, **{"match[version]": "first"}))
        assert got == ["C", "L", "U"], got
    node.close()

def test_a_batch_paged_by_date_loses_none_of_it(tmp_path: Path) -> None:
    """TAXII's added_after is strict (">"): a page cut inside a run of rows sharing one
    date_added would lose the rest of the run for a client paging by date. There is no
    such run: each row gets its own date_added, strictly increasing with seq, also
    within one transaction (the stores' _Clock, one writer at a time)."""
    node = make_node(tmp_path / "jpn")
    _people(node)
    _publish(node, [indicator(f"N{n}") for n in range(7)], "秘", ("NZL",))
    cid = node.default_collection().collection_id
    base = f"/intel/collections/{cid}/"
    with serving(node) as url:
        kind = {"match[type]": "indicator"}
        added = [o["date_added"] for o in _get(url, "reader", base + "manifest/", **kind
                                               ).json()["objects"]]
        assert len(added) == 7 and added == sorted(set(added)), added
        whole = sorted(_walk(url, "reader", base + "objects/", "next", 1000, **kind))
        for endpoint in ("objects/", "manifest/"):
            for limit in (2, 3):
                got = sorted(_walk(url, "reader", base + endpoint, "date", limit, **kind))
                assert got == whole, (endpoint, limit, got)
    node.close()
