"""The audit log on the security officer's desk, over HTTP against the live console: the
newest events first, paged, filtered as `intelpact audit show` filters; each event's
objects named only when the officer may read them; whether the latest signed checkpoint
proves it; hostile text escaped; the desk's banner the join of what it shows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from markupsafe import escape

from conftest import World, csrf_of, login, password, serving_world
from intelpact.interfaces.console.desk import EVENTS, SCAN_PAGES
from intelpact.services.audit import operator
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import AuditFilter

from helpers import indicator

ROW = re.compile(r'<tr id="event-(\d+)">(.*?)</tr>', re.S)
TOP = re.compile(r'<div class="banner band-([a-z-]+)"[^>]*id="banner-top">([^<]+)</div>')
HOSTILE = "<img src=x onerror=alert(1)>\"quoted\" 'single' &amp; <b>bold"


def _rows(client: httpx.Client, **params: str) -> dict[int, str]:
    r = client.get("/desk", params=params)
    assert r.status_code == 200, r.text
    return {int(i): row for i, row in ROW.findall(r.text)}


def _newest(world: World, object_id: str | None = None, kinds: tuple[str, ...] = (),
            party: str | None = None) -> list[dict[str, object]]:
    found = world.node.audit.newest(AuditFilter(object_id=object_id, kinds=kinds,
                                                party=party, limit=1000))
    return [{"index": e.index, **json.loads(e.body)} for e in found]


def _banner(client: httpx.Client, **params: str) -> tuple[str, str]:
    found = TOP.search(client.get("/desk", params=params).text)
    assert found
    return found.group(1), found.group(2)


@pytest.fixture(scope="module")
def acts(world: World) -> dict[str, str]:
    """A publish, a read and a denial about an object the officer may read; the same about
    one they may not (an INFRASTRUCTURE object: tanaka is not in that community)."""
    node = world.node
    cid = node.default_collection().collection_id
    node.people.add("mori", party="JPN", clearance="機密", roles=["analyst", "publisher"],
                    communities=["INFRASTRUCTURE"], password=password("mori"))
    mori = node.people.as_person("mori").person
    tanaka = node.people.as_person("tanaka").person
    shown, hidden = indicator("desk-audit-shown"), indicator("desk-audit-hidden")
    for who, obj, marking in ((tanaka, shown, MarkingRequest("秘", ("JPN", "NZL"))),
                              (mori, hidden, MarkingRequest("秘", ("JPN",), (),
                                                            ("INFRASTRUCTURE",)))):
        status = node.publisher.publish(who, cid, [obj], marking=marking)
        assert status.body["failure_count"] == 0, status.body
    node.get(node.people.as_person("mori"), hidden["id"])  # a read of the hidden one
    sato, suzuki = world.client("sato"), world.client("suzuki")
    assert sato.get(f"/objects/{shown['id']}").status_code == 200  # a read
    assert suzuki.get(f"/objects/{shown['id']}").status_code == 404  # a denial
    assert sato.get(f"/objects/{hidden['id']}").status_code == 404  # a denial, hidden
    return {"shown": shown["id"], "hidden": hidden["id"]}


def test_publish_read_and_denial_appear_with_who_party_objects_and_reason(
        world: World, acts: dict[str, str]) -> None:
    officer = world.client("tanaka")
    shown = acts["shown"]
    link = f'<a href="/objects/{shown}">{shown}</a>'
    rows = _rows(officer, object=shown)
    kinds = {re.findall(r"<td>([a-z-]+)</td>", row)[0] for row in rows.values()}
    assert {"publish", "read", "deny"} <= kinds
    assert all(link in row for row in rows.values())
    assert list(rows) == sorted(rows, reverse=True)  # newest first
    (read,) = [e for e in _newest(world, object_id=shown, kinds=("read",))
               if e["via"] == "console-object"]
    assert "sato (JPN, 秘)" in rows[int(str(read["index"]))]
    (deny,) = _newest(world, object_id=shown, kinds=("deny",))
    assert deny["reason"] and str(escape(str(deny["reason"]))) in rows[int(str(deny["index"]))]
    assert "suzuki (JPN, 取扱注意)" in rows[int(str(deny["index"]))]
    (publish,) = _newest(world, object_id=shown, kinds=("publish",))
    assert "tanaka (JPN, 機密)" in rows[int(str(publish["index"]))]
    # the page's banner is the join of what it shows: the 秘 object here
    band, text = _banner(officer, object=shown)
    assert band == "confidential" and text.startswith("秘 ")


def test_an_object_the_officer_may_not_read_is_never_named(world: World,
                                                            acts: dict[str, str]) -> None:
    officer = world.client("tanaka")
    hidden = acts["hidden"]
    pages = [officer.get("/desk", params=p).text for p in (
        {}, {"person": "mori"}, {"person": "sato"}, {"kind": "deny"}, {"kind": "publish"},
        {"person": "mori", "kind": "read"})]
    for text in pages:
        assert hidden not in text and hidden.split("--")[1] not in text
        assert "desk-audit-hidden" not in text
    for kind in ("publish", "read"):  # mori's acts on it: listed, the object withheld
        rows = _rows(officer, person="mori", kind=kind)
        assert rows and all("withheld object" in row for row in rows.values())
    # sato's denial of it: the event is listed, its object and reason are not
    (deny,) = _newest(world, object_id=hidden, kinds=("deny",))
    row = _rows(officer, person="sato", kind="deny")[int(str(deny["index"]))]
    assert "withheld object" in row and "withheld (about a withheld object)" in row
    assert str(deny["reason"]) not in row
    # filtering by its id finds nothing, as for an id nothing names
    assert _rows(officer, object=hidden) == {}
    assert _rows(officer, object="indicator--00000000-0000-4000-8000-000000000001") == {}
    # nor does it raise the banner: mori's events name only what the officer cannot see
    band, _ = _banner(officer, person="mori")
    assert band == "unclassified"


def test_paging_newest_first(world: World) -> None:
    audit = world.node.audit
    audit.record(*[audit.event("login-failure", name="desk-pager", reason=f"attempt {i:03d}")
                   for i in range(120)])
    officer = world.client("tanaka")

    def page(url: str | None = None, **params: str) -> tuple[list[int], str]:
        r = officer.get(url, params=None) if url else officer.get("/desk", params=params)
        assert r.status_code == 200
        found = [int(n) for n in re.findall(r"attempt (\d{3})", r.text)]
        return found, r.text

    def link(text: str, name: str) -> str | None:
        found = re.search(rf'<a href="([^"]+)">{name} events</a>', text)
        return found.group(1).replace("&amp;", "&") if found else None

    first, text = page(person="desk-pager")
    assert first == list(range(119, 69, -1)) and link(text, "Newer") is None
    second, text = page(link(text, "Older"))
    assert second == list(range(69, 19, -1))
    third, text = page(link(text, "Older"))
    assert third == list(range(19, -1, -1)) and link(text, "Older") is None
    again, text = page(link(text, "Newer"))
    assert again == second
    newest, text = page(link(text, "Newer"))
    assert newest == first and link(text, "Newer") is None
    assert officer.get("/desk", params={"audit_before": "x"}).status_code == 400
    assert officer.get("/desk", params={"audit_before": "1", "audit_after": "0"}
                       ).status_code == 400


def test_filters_by_kind_person_party_and_object(world: World, acts: dict[str, str]) -> None:
    audit = world.node.audit
    audit.record(audit.event("refuse", party="NZL", actor="NZL", reason="bad signature"))
    officer = world.client("tanaka")
    nzl = _rows(officer, party="nzl")
    assert nzl and all("<td>NZL</td>" in row for row in nzl.values())
    assert all(e["party"] == "NZL" for e in _newest(world, party="NZL"))
    assert set(nzl) == {int(str(e["index"])) for e in _newest(world, party="NZL")[:50]}
    reads = _rows(officer, kind="read", person="sato")
    assert reads and all("<td>read</td>" in r and "sato (JPN, 秘)" in r for r in reads.values())
    # a pseudonym works as well as a name
    pseudonym = world.node.audit.pseudonyms.of("sato", "JPN")  # as its events about JPN's
    assert _rows(officer, kind="read", person=pseudonym) == reads
    both = _rows(officer, kind="publish", object=acts["shown"])
    assert len(both) == 1
    assert _rows(officer, kind="publish", person="nobody-at-all") == {}
    assert officer.get("/desk", params={"kind": "no-such-kind"}).status_code == 400


def test_the_operator_serving_the_desk_is_named_where_an_event_has_a_pseudonym(
        world: World, acts: dict[str, str]) -> None:
    """An act of the operator outside a login about a partner's object is recorded with
    the operator's pseudonym (the partner is shown it); the desk names the operator
    account serving it, as `audit show` names the one running it. It showed the
    pseudonym."""
    audit = world.node.audit
    oid = "indicator--00000000-0000-4000-8000-00000000d35c"
    audit.record(audit.event("destroy", operator=operator(), originator="NZL",
                             objects=[(oid, "2026-11-01T00:00:00.000000Z")]))
    (event,) = _newest(world, object_id=oid)
    assert str(event["actor"]).startswith("p-")  # as NZL is shown it
    row = _rows(world.client("tanaka"), kind="destroy")[int(str(event["index"]))]
    assert f"<td>{escape(operator())}</td>" in row and str(event["actor"]) not in row


def test_checkpoint_status_and_verify_stay(world: World, acts: dict[str, str]) -> None:
    node = world.node
    checkpoint = node.audit.checkpoint()
    size = int(checkpoint.note.splitlines()[1])
    node.audit.record(node.audit.event("login-failure", name="after-the-checkpoint",
                                       reason="late"))
    officer = world.client("tanaka")
    rows = _rows(officer, person="after-the-checkpoint")
    assert len(rows) == 1 and "not yet in a signed checkpoint" in next(iter(rows.values()))
    rows = _rows(officer, object=acts["shown"])
    assert all(f"proven by checkpoint {size}" in row for row in rows.values())
    assert all(i < size for i in rows)
    r = officer.post("/desk", data={"csrf": csrf_of(officer, "/desk"), "action": "verify"})
    assert r.status_code == 200 and 'class="verdict ok"' in r.text
    assert 'id="h-events"' in r.text and ROW.search(r.text)


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000, '{"objects":5}', "[1,2]"],
                         ids=["nested 100000 deep", "objects 5", "an array"])
def test_an_event_altered_into_what_no_reader_takes_is_listed_not_a_crash(
        tmp_path: Path, body: str) -> None:
    """An event row altered in the database (a body nested too deep to decode, objects
    that are not pairs, a body that is not an object): the desk lists it by its row's
    time and kind, naming nothing of it, with its proof failing; before, a body nested
    too deep made every visit a 500."""
    with serving_world(tmp_path) as world:
        node = world.node
        node.audit.record(node.audit.event("login-failure", name="to-be-altered",
                                           reason="test"))
        node.audit.checkpoint()
        index = node.store.audit_size() - 1
        with node.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
            c.execute(f"UPDATE audit_events SET body = '{body}' WHERE idx = {index}")  # noqa: S608
        row = _rows(world.client("tanaka"))[index]
        assert "login-failure" in row and "does NOT verify" in row, row


def test_only_the_officer_sees_the_events(world: World, acts: dict[str, str]) -> None:
    for who in ("sato", "suzuki"):
        r = world.client(who).get("/desk", params={"object": acts["shown"]})
        assert r.status_code == 403 and not ROW.search(r.text)
        assert "<td>publish</td>" not in r.text


def test_hostile_reason_and_person_name_are_escaped(world: World) -> None:
    node = world.node
    node.people.add(HOSTILE, party="JPN", clearance="秘", roles=["analyst"],
                    password=password("hostile"))
    assert login(world.client(), HOSTILE, "not-the-password-at-all").status_code == 401
    node.audit.record(node.audit.event("refuse", party="NZL", actor="NZL", reason=HOSTILE))
    officer = world.client("tanaka")
    for params in ({"person": HOSTILE}, {"party": "NZL", "kind": "refuse"}):
        text = officer.get("/desk", params=params).text
        assert HOSTILE not in text and "<img" not in text and "<b>bold" not in text
        assert str(escape(HOSTILE)) in text
    rows = _rows(officer, person=HOSTILE)
    assert any(f"about {escape(HOSTILE)}" in row for row in rows.values())


def test_a_filter_on_an_object_reads_a_bounded_number_of_events_a_page(
        tmp_path: Path) -> None:
    """Filtered on an object, the desk shows only the events about versions of it the
    officer could be served, and reads on to fill the page. Over a long run of events
    about a version they may not be served (here: one this node does not hold), a page
    reads SCAN_PAGES store pages at most, says so, and links on from where it stopped;
    following the links reaches the older events. Before, one page read the whole run
    (every event about the object, in one request); an object they may not read at all
    reads nothing."""
    with serving_world(tmp_path) as world:
        node = world.node
        obj = indicator("desk-audit-scan")
        who = node.people.as_person("tanaka").person
        status = node.publisher.publish(who, node.default_collection().collection_id,
                                        [obj], marking=MarkingRequest("秘", ("JPN",)))
        assert status.body["failure_count"] == 0, status.body
        run = SCAN_PAGES * (EVENTS + 1) + 40
        audit = node.audit
        audit.record(*[audit.event("read", person=who, objects=[
            (obj["id"], "2020-01-01T00:00:00.000Z")], via="object") for _ in range(run)])
        read: list[int] = []
        real = node.store.latest_audit

        def counted(where: AuditFilter, before: int | None = None) -> list[Any]:
            found = real(where, before)
            read.append(len(found))
            return found

        def counted_find(find: Any, where: AuditFilter) -> list[Any]:
            found = find(where)
            read.append(len(found))
            return found  # type: ignore[no-any-return]

        node.store.latest_audit = counted  # type: ignore[method-assign]
        officer = world.client("tanaka")
        r = officer.get("/desk", params={"object": obj["id"]})
        assert r.status_code == 200, r.text
        assert sum(read) <= SCAN_PAGES * (EVENTS + 1), sum(read)
        assert ROW.findall(r.text) == [] and 'id="searched"' in r.text
        older = re.search(r'<a href="([^"]+)">Older events</a>', r.text)
        assert older, r.text
        r = officer.get(older.group(1).replace("&amp;", "&"))
        assert r.status_code == 200
        kinds = [re.findall(r"<td>([a-z-]+)</td>", row)[0] for _, row in ROW.findall(r.text)]
        assert "publish" in kinds and 'id="searched"' not in r.text
        # and back: newer than those, the same run read from the other end, bounded alike
        newer = re.search(r'<a href="([^"]+)">Newer events</a>', r.text)
        assert newer, r.text
        read.clear()
        find = node.store.find_audit
        node.store.find_audit = lambda where: counted_find(find, where)  # type: ignore
        r = officer.get(newer.group(1).replace("&amp;", "&"))
        assert r.status_code == 200 and ROW.findall(r.text) == [] and 'id="searched"' in r.text
        assert 0 < sum(read) <= SCAN_PAGES * (EVENTS + 1), sum(read)
        assert re.search(r'<a href="([^"]+)">Newer events</a>', r.text), r.text
        # an object the officer may not read: no event of it is read at all
        read.clear()
        hidden = indicator("desk-audit-scan-hidden")
        node.people.add("mori2", party="JPN", clearance="機密", roles=["analyst", "publisher"],
                        communities=["INFRASTRUCTURE"])
        mori = node.people.as_person("mori2").person
        status = node.publisher.publish(mori, node.default_collection().collection_id,
                                        [hidden], marking=MarkingRequest(
                                            "秘", ("JPN",), (), ("INFRASTRUCTURE",)))
        assert status.body["failure_count"] == 0, status.body
        assert _rows(officer, object=hidden["id"]) == {}
        assert sum(read) == 0, read
