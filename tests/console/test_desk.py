"""The security officer's desk over HTTP, with a partner that asks: NZL holds JPN objects
and asks JPN's consent to pass them on to AUS; JPN's officer approves one on the desk
(with a scope), refuses another (with a reason), and a third is approved by
`intelpact consent approve`, so the desk's outcome (record, signed token, notice, audit
event) can be held against the command's."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_escaping import _Tags

from conftest import Pact, courier, csrf_of, password, serve_console
from intelpact.interfaces.cli import main
from intelpact.services.federation import consent_token, make_card, verify_payload
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import (
    AuditFilter,
    ConsentRecord,
    Notice,
    Query,
    objects_named,
    parse_timestamp,
    timestamp,
    utc_now,
)

from helpers import DATA, _in_thread, indicator, make_node, serving_federation


def _decide(pact: Pact, client: Any, rid: str, **form: str) -> Any:
    return client.post(f"/desk/consent/{rid}", data={"csrf": csrf_of(client, "/desk"), **form})


def _record(pact: Pact, rid: str) -> ConsentRecord:
    record = pact.jpn.store.consent(rid)
    assert record is not None
    return record


def _event(pact: Pact, kind: str, rid: str) -> dict[str, Any]:
    (event,) = [json.loads(e.body) for e in pact.jpn.store.find_audit(AuditFilter(
        kinds=(kind,), limit=1000)) if json.loads(e.body).get("request") == rid]
    return event


def test_approve_and_refuse_on_the_desk_as_the_command_does(pact: Pact) -> None:
    desk_obj, by_desk = pact.ask("desk-approves-this")
    refused_obj, refused = pact.ask("desk-refuses-this")
    cli_obj, by_cli = pact.ask("command-approves-this")
    officer = pact.client("kobayashi")
    page = officer.get("/desk").text
    for rid, oid in ((by_desk, desk_obj), (refused, refused_obj), (by_cli, cli_obj)):
        row = re.search(rf'<tr id="consent-{rid}">(.*?)</tr>', page, re.S)
        assert row and oid in row.group(1) and "NZL → AUS" in row.group(1)
        assert "joint maritime operation" in row.group(1) and "pending" in row.group(1)
        assert _record(pact, rid).versions[0] in row.group(1)  # the versions asked for

    # the scope's checks: a length of 0 days, both a length and a day, a malformed day
    for form in ({"days": "0"}, {"days": "7", "until": "2099-01-01"}, {"until": "soon"}):
        r = _decide(pact, officer, by_desk, action="approve", **form)
        assert r.status_code == 400 and "Scope refused" in r.text
    assert _record(pact, by_desk).status == "pending"
    # only a security officer decides (the page, and the service behind it)
    analyst = pact.client("ito")
    assert _decide(pact, analyst, by_desk, action="approve").status_code == 403

    before = utc_now()
    r = _decide(pact, officer, by_desk, action="approve", days="7")
    assert r.status_code == 303 and r.headers["location"] == "/desk#consents"
    r = _decide(pact, officer, refused, action="refuse", reason="source protection")
    assert r.status_code == 303
    done = CliRunner().invoke(main, ["consent", "approve", str(pact.jpn.config.dir), by_cli,
                                     "--expires", "7d", "--as", "kobayashi"])
    assert done.exit_code == 0, done.output

    # JPN's record: approved, until 7 days from now, with a token signed by JPN's key
    desk, cli = _record(pact, by_desk), _record(pact, by_cli)
    assert desk.status == cli.status == "approved" and desk.decided and desk.token
    expires = parse_timestamp(desk.expires or "")
    assert before + dt.timedelta(days=7) <= expires <= utc_now() + dt.timedelta(days=7)
    tokens = []
    for record in (desk, cli):
        signed = json.loads(record.token or "")
        key = pact.jpn.federation.keys_of("JPN")[signed["key_id"]]
        assert verify_payload(key, signed["signature"], signed["consent"])
        tokens.append(signed["consent"])
        assert consent_token(signed).covers(record.object_id, record.versions[0])
    mine, theirs = tokens
    assert mine.keys() == theirs.keys()
    assert (mine["originator"], mine["holder"], mine["recipient"]) == ("JPN", "NZL", "AUS")
    assert mine["purpose"] == theirs["purpose"] == "joint maritime operation"
    assert mine["objects"][desk_obj] == list(desk.versions)
    assert mine["objects"].keys() - {desk_obj} == theirs["objects"].keys() - {cli_obj}
    assert mine["expires"] == desk.expires
    # the audit events are the command's, field for field
    ours, command = _event(pact, "consent", by_desk), _event(pact, "consent", by_cli)
    assert ours.keys() == command.keys()
    same = ("kind", "node", "person", "party", "originator", "recipient", "purpose",
            "direction")
    assert {k: ours[k] for k in same} == {k: command[k] for k in same}
    assert ours["token"] == mine["id"] and ours["expires"] == desk.expires
    no = _event(pact, "consent-refuse", refused)
    assert no["reason"] == "source protection" and no["person"] == ours["person"]
    assert _record(pact, refused).status == "refused"
    assert _record(pact, refused).reason == "source protection"

    # the command delivered what was queued; NZL holds JPN's token, and the covered
    # object (only it) waits for AUS with it
    assert pact.jpn.store.pending_notices("NZL", 100) == []
    sent = {n.object_id: n.kind for n in pact.jpn.store.notices()
            if n.direction == "out" and n.party == "NZL"}
    assert sent[desk_obj] == "consent" and sent[refused_obj] == "consent-refused"
    held = pact.nzl.store.consent(by_desk)
    assert held is not None and held.status == "approved" and held.token == desk.token
    no_token = pact.nzl.store.consent(refused)
    assert no_token is not None and no_token.status == "refused"
    assert no_token.reason == "source protection" and no_token.token is None
    queued = {row.object_id for _, row in pact.nzl.store.pending("AUS", 100)}
    assert desk_obj in queued and refused_obj not in queued

    # the desk now shows the decisions, with nothing left to decide for them
    page = officer.get("/desk").text
    for rid, shown in ((by_desk, f"approved until {desk.expires}"),
                       (refused, "refused: source protection")):
        row = re.search(rf'<tr id="consent-{rid}">(.*?)</tr>', page, re.S)
        assert row and shown in row.group(1) and "<form" not in row.group(1)
    r = _decide(pact, officer, by_desk, action="approve")
    assert r.status_code == 400 and "approved already" in r.text


def test_approve_until_a_day_and_the_default(pact: Pact) -> None:
    _, until = pact.ask("approved-until-a-day")
    _, default = pact.ask("approved-by-default")
    officer = pact.client("kobayashi")
    day = (utc_now() + dt.timedelta(days=10)).date().isoformat()
    assert _decide(pact, officer, until, action="approve", until=day).status_code == 303
    assert _record(pact, until).expires == f"{day}T23:59:59.000000Z"
    assert _decide(pact, officer, default, action="approve").status_code == 303
    expires = parse_timestamp(_record(pact, default).expires or "")
    assert abs(expires - (utc_now() + dt.timedelta(days=30))) < dt.timedelta(minutes=1)
    assert courier(pact.jpn, lambda c: c.deliver_notices("NZL")) == 2  # as the courier does
    for rid in (until, default):
        held = pact.nzl.store.consent(rid)
        assert held is not None and held.status == "approved"


def test_the_desk_lists_are_pages_of_the_newest(pact: Pact) -> None:
    jpn = pact.jpn
    who = jpn.people.as_person("kobayashi").person
    objs = [indicator(f"paged-{n}") for n in range(205)]
    status = jpn.publisher.publish(who, jpn.default_collection().collection_id, objs,
                                   marking=MarkingRequest("秘", ("NZL",)))
    assert status.body["failure_count"] == 0
    assert courier(jpn, lambda c: c.push_all("NZL")) >= 205
    officer = pact.client("kobayashi")
    row = re.compile(r'<tr><td><a href="/objects/([^"]+)">[^<]*</a></td><td>[^<]*</td>'
                     r'<td>NZL</td>')
    page = officer.get("/desk").text
    dissem = page.split('id="dissem"', 1)[1].split("</section>", 1)[0]
    first = row.findall(dissem)
    assert len(first) == 200 and 'href="/desk?dissem=200#dissem">Older entries' in dissem
    newest = {d.object_id for d in jpn.store.latest_disseminations(200)}
    assert set(first) == newest
    page = officer.get("/desk", params={"dissem": "200"}).text
    dissem = page.split('id="dissem"', 1)[1].split("</section>", 1)[0]
    second = row.findall(dissem)
    assert second and not set(second) & set(first) and "Newer entries" in dissem
    assert officer.get("/desk", params={"dissem": "7"}).status_code == 400


def _at_nzl(pact: Pact, name: str) -> dict[str, Any]:
    """A JPN object 秘 REL TO NZL, pushed to NZL."""
    obj = indicator(name)
    who = pact.jpn.people.as_person("kobayashi").person
    status = pact.jpn.publisher.publish(who, pact.jpn.default_collection().collection_id,
                                        [obj], marking=MarkingRequest("秘", ("NZL",)))
    assert status.body["failure_count"] == 0
    assert courier(pact.jpn, lambda c: c.push_all("NZL")) >= 1
    return obj


def test_the_desk_shows_whether_a_report_history_left_anything_out(pact: Pact) -> None:
    """A report from NZL lists its history check: not checked yet, then what `serve`'s
    check found (Courier.check_reports)."""
    obj = _at_nzl(pact, "lost-on-a-train")
    (filed,) = pact.nzl.compromise.file([obj["id"]], what="lost on a train",
                                        discovered=timestamp(utc_now()))
    assert courier(pact.nzl, lambda c: c.deliver_compromise("JPN")) == 1
    officer = pact.client("kobayashi")

    def row() -> str:
        page = officer.get("/desk").text
        reports = page.split('id="reports"', 1)[1].split("</section>", 1)[0]
        (tr,) = [r for r in reports.split("<tr") if filed.report_id in r]
        return tr

    assert "<td>not checked yet</td>" in row()
    assert courier(pact.jpn, lambda c: c.check_reports()) == 1
    assert "<td>complete: NZL&#39;s partner audit holds no other event about these " \
        "objects below leaf" in row()


def test_the_desk_shows_how_far_each_partner_s_audit_was_checked(pact: Pact) -> None:
    """The partners' table: NZL's largest checkpoint witnessed, and how many of its events
    about JPN's objects the watch has checked, to which leaf, and when."""
    _at_nzl(pact, "checked-at-nzl")
    assert courier(pact.jpn, lambda c: c.watch_once("NZL")) > 0
    count, newest = pact.nzl.store.audit_numbered("JPN")
    watch = pact.jpn.store.partner_audit_watch("NZL")
    assert watch is not None and watch[:2] == (newest, count)
    page = pact.client("kobayashi").get("/desk").text
    table = page.split("Partners' checkpoints", 1)[1].split("</table>", 1)[0]
    assert f"<td>{count}, to leaf {newest}</td><td>{watch[2]}</td>" in table


def test_verify_on_the_desk_checks_the_partner_evidence_kept_too(pact: Pact) -> None:
    """As `intelpact audit verify`: the verdict covers the partner audit events kept here,
    and one deleted from them is named."""
    _at_nzl(pact, "kept-as-evidence")
    assert courier(pact.jpn, lambda c: c.watch_once("NZL")) > 0
    kept = pact.jpn.store.partner_events("NZL")
    officer = pact.client("kobayashi")

    def verdict() -> str:
        r = officer.post("/desk", data={"csrf": csrf_of(officer, "/desk"), "action": "verify"})
        assert r.status_code == 200, r.text
        found = re.search(r'<p class="verdict [a-z]+" role="status">(.*?)</ul>|'
                          r'<p class="verdict [a-z]+" role="status">(.*?)</p>', r.text, re.S)
        assert found, r.text
        return found.group(0)

    assert f"signed checkpoint(s) and the {len(kept)} partner audit event(s) kept here " \
        "verified." in verdict()
    with pact.jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
        c.execute(f"DELETE FROM partner_events WHERE leaf = {kept[-2].index}")  # noqa: S608
    try:
        shown = verdict()
        assert "FAILED" in shown and f"NZL&#39;s event(s) about our objects numbered " \
            f"{kept[-2].seq} are not kept here" in shown, shown
    finally:  # put it back: the other tests share this node
        after, expect = pact.jpn.store.partner_audit_cursor("NZL")
        pact.jpn.store.set_partner_audit_cursor("NZL", after, expect,
                                                timestamp(utc_now()), [kept[-2]])
    assert "verified." in verdict()


KEPT = re.compile(r'<tr id="kept-(\d+)">(.*?)</tr>', re.S)


def _kept_rows(client: Any, party: str = "NZL", **params: Any) -> dict[int, str]:
    r = client.get(f"/desk/partner/{party}", params=params)
    assert r.status_code == 200, r.text
    return {int(i): row for i, row in KEPT.findall(r.text)}


def test_the_partner_view_shows_how_nzl_handled_our_objects(pact: Pact) -> None:
    """As `audit partner --kept`: NZL's events about JPN's objects kept here, oldest
    first, filtered by object and kind, paged; only the officer sees them."""
    jpn, nzl = pact.jpn, pact.nzl
    obj = _at_nzl(pact, "handled-at-nzl")
    mere = nzl.people.as_person("mere")
    for _ in range(55):  # more than a page of reads
        nzl.find(mere, nzl.default_collection().collection_id, Query(ids=(obj["id"],)),
                 via="object")
    assert courier(jpn, lambda c: c.watch_once("NZL")) > 0
    kept = [(k, json.loads(k.body)) for k in jpn.store.partner_events("NZL")]
    about = [k.index for k, data in kept if obj["id"] in objects_named(data)]
    reads = [k.index for k, data in kept
             if obj["id"] in objects_named(data) and data["kind"] == "read"]
    assert len(reads) == 55
    officer = pact.client("kobayashi")
    first = officer.get("/desk/partner/nzl", params={"object": obj["id"]})
    rows = {int(i): row for i, row in KEPT.findall(first.text)}
    assert list(rows) == about[:50]  # oldest first, 50 to a page
    assert all(f'<a href="/objects/{obj["id"]}">' in row for row in rows.values())
    assert all("proven in NZL's checkpoint of" in row for row in rows.values())
    later = re.search(r'<a href="([^"]+)">Later events</a>', first.text)
    assert later, first.text
    rest = officer.get(later.group(1).replace("&amp;", "&"))
    assert [int(i) for i, _ in KEPT.findall(rest.text)] == about[50:]
    assert "Later events" not in rest.text and "First events" in rest.text
    assert list(_kept_rows(officer, kind="read", object=obj["id"])) == reads[:50]
    assert "receive" in _kept_rows(officer, kind="receive", object=obj["id"])[about[0]]
    assert 'href="/desk/partner/NZL"' in officer.get("/desk").text  # from the desk
    # nobody else; no such partner; a hostile link
    assert pact.client("ito").get("/desk/partner/NZL").status_code == 403
    for path, params, status in (("/desk/partner/AUS", {}, 404),
                                 ("/desk/partner/NZL", {"kind": "no-such-kind"}, 400),
                                 ("/desk/partner/NZL", {"after": "x"}, 400),
                                 ("/desk/partner/NZL", {"after": "9" * 16}, 400)):
        assert officer.get(path, params=params).status_code == status, (path, params)


def test_the_partner_view_takes_an_id_with_a_nul(tmp_path: Path) -> None:
    """NZL (on SQLite, which keeps any text) signs an event about JPN's object that also
    names an id holding a NUL; JPN keeps it. The partner view shows it (that id as a
    withheld object), and takes such an id as its object filter, finding nothing: on
    PostgreSQL, asking whether the officer may read the id (the store's look-up of the
    objects named) refused the whole query, and the page failed on every visit."""
    jpn = make_node(tmp_path / "jpn", "JPN", agreement="jpn-nzl-aus.toml")
    nzl = make_node(tmp_path / "nzl", "NZL", agreement="jpn-nzl-aus.toml",
                    database="node.db")
    try:
        jpn.people.add("kobayashi", party="JPN", clearance="機密", roles=[
            "analyst", "publisher", "security-officer"], password=password("kobayashi"))
        jpn.federation.add_peer(make_card(nzl.identity))
        nzl.federation.add_peer(make_card(jpn.identity))
        app, _, options = serve_console(jpn)
        with serving_federation(jpn), serving_federation(nzl), _in_thread(app, options):
            pact = Pact(jpn, nzl, f"http://127.0.0.1:{options['port']}")
            obj = _at_nzl(pact, "named-beside-a-nul")
            version = jpn.store.held([obj["id"]])[0].version
            nzl.audit.record(nzl.audit.event("read", originator="JPN", via="objects",
                                             objects=[(obj["id"], version), ("x\x00y", "v")]))
            assert courier(jpn, lambda c: c.watch_once("NZL")) > 0
            (leaf,) = [k.index for k in jpn.store.partner_events("NZL")
                       if "x\\u0000y" in k.body]
            officer = pact.client("kobayashi")
            try:
                row = _kept_rows(officer)[leaf]
                assert f'<a href="/objects/{obj["id"]}">' in row and "withheld object" in row
                assert _kept_rows(officer, object="x\x00y") == {}
            finally:
                officer.close()
    finally:
        nzl.close()
        jpn.close()


def test_the_partner_view_names_no_object_the_officer_may_not_read(pact: Pact) -> None:
    """NZL's denial of an INFRASTRUCTURE object of ours, which JPN's officer is not in:
    listed, with the object withheld, and found by no filter."""
    jpn, nzl = pact.jpn, pact.nzl
    jpn.people.add("hayashi", party="JPN", clearance="機密", roles=["publisher"],
                   communities=["INFRASTRUCTURE"])
    obj = indicator("an-infrastructure-secret")
    status = jpn.publisher.publish(jpn.people.as_person("hayashi").person,
                                   jpn.default_collection().collection_id, [obj],
                                   marking=MarkingRequest("秘", ("NZL",), (),
                                                          ("INFRASTRUCTURE",)))
    assert status.body["failure_count"] == 0, status.body
    assert courier(jpn, lambda c: c.push_all("NZL")) >= 1
    nzl.find(nzl.people.as_person("mere"), nzl.default_collection().collection_id,
             Query(ids=(obj["id"],)), via="object")  # denied: mere is not in it
    assert courier(jpn, lambda c: c.watch_once("NZL")) > 0
    (denial,) = [k.index for k in jpn.store.partner_events("NZL")
                 if json.loads(k.body)["kind"] == "deny"
                 and obj["id"] in objects_named(json.loads(k.body))]
    officer = pact.client("kobayashi")
    page = officer.get("/desk/partner/NZL", params={"kind": "deny"}).text
    row = dict(KEPT.findall(page))[str(denial)]
    assert "withheld object" in row and obj["id"] not in page
    assert _kept_rows(officer, object=obj["id"]) == {}


def test_what_a_partner_wrote_in_its_events_is_shown_as_text(pact: Pact) -> None:
    """A partner's event is its own text, signed: hostile strings in it (tests/data/json/
    naughty-strings) come back on the page as text, never markup."""
    jpn, nzl = pact.jpn, pact.nzl
    obj = _at_nzl(pact, "named-in-hostile-events")
    version = jpn.store.held([obj["id"]])[0].version
    strings = [s for s in json.loads((DATA / "json" / "naughty-strings" / "blns.json")
                                     .read_text()) if "<" in s or "&" in s][:40]
    mere = nzl.people.as_person("mere").person
    nzl.audit.record(*(nzl.audit.event("deny", person=mere, originator="JPN",
                                       objects=[(obj["id"], version)], reason=text)
                       for text in strings))
    assert courier(jpn, lambda c: c.watch_once("NZL")) > 0
    page = pact.client("kobayashi").get("/desk/partner/NZL", params={
        "object": obj["id"], "kind": "deny"}).text
    tags = _Tags()
    tags.feed(page)
    assert tags.problems == []
    shown = "".join(tags.text)
    assert all(text.strip() in shown for text in strings)
    assert len(KEPT.findall(page)) == len(strings)


def test_the_partner_view_says_which_numbers_are_not_kept(pact: Pact) -> None:
    """A row deleted from the evidence kept here: the page says the number is missing;
    a row changed: the page says it does not verify, and shows nothing."""
    obj = _at_nzl(pact, "counted-at-nzl")
    nzl = pact.nzl
    for _ in range(3):
        nzl.find(nzl.people.as_person("mere"), nzl.default_collection().collection_id,
                 Query(ids=(obj["id"],)), via="object")
    assert courier(pact.jpn, lambda c: c.watch_once("NZL")) > 0
    kept = pact.jpn.store.partner_events("NZL")
    before, middle = kept[len(kept) // 2 - 1: len(kept) // 2 + 1]
    officer = pact.client("kobayashi")
    assert "Not complete" not in officer.get("/desk/partner/NZL").text
    store = pact.jpn.store
    try:
        with store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
            c.execute(f"DELETE FROM partner_events WHERE leaf = {middle.index}")  # noqa: S608
        page = " ".join(officer.get("/desk/partner/NZL", params={"after": before.index})
                        .text.split())
        deleted = "no events-withheld alert says NZL left them out: they were deleted " \
            "from this node&#39;s evidence"  # no alert: not NZL's doing
        assert f"Not complete: NZL's event(s) about our objects numbered {middle.seq} " \
            f"are not kept here: {deleted}." in page, page
        for params in ({}, {"object": obj["id"]}):  # the whole log, whatever is shown
            page = " ".join(officer.get("/desk/partner/NZL", params=params).text.split())
            assert 'id="missing">Not complete: 1 of those' in page, page
            assert f"are not kept here: {deleted} (" in page, page
        with store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
            c.execute("UPDATE partner_events SET body = body || ' ' "  # noqa: S608
                      f"WHERE leaf = {kept[-1].index}")
        page = officer.get("/desk/partner/NZL", params={"after": kept[-2].index}).text
        assert "FAILED: 1 of NZL" in page and f"event {kept[-1].index} of NZL&#39;s log" \
            in page and not KEPT.search(page)
    finally:  # put them back: the other tests share this node
        with store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
            c.execute(f"DELETE FROM partner_events WHERE leaf = {kept[-1].index}")  # noqa: S608
        after, expect = store.partner_audit_cursor("NZL")
        store.set_partner_audit_cursor("NZL", after, expect, timestamp(utc_now()),
                                       [middle, kept[-1]])
    assert "FAILED" not in officer.get("/desk/partner/NZL").text


def test_an_officer_resolves_an_alert_on_the_desk(pact: Pact) -> None:
    """The desk lists the open alerts, each with a form to resolve it (as `intelpact audit
    resolve`: a note, once, by a security officer), and counts those resolved."""
    jpn = pact.jpn
    jpn.audit.alert("history-rewritten", "NZL", "a drill: NZL rewrote its history")
    jpn.audit.alert("events-withheld", "NZL", "a drill: NZL left an event out")
    first, second = [a[0] for a in jpn.store.alerts() if a[3].startswith("a drill")]
    officer, analyst = pact.client("kobayashi"), pact.client("ito")

    def resolve(client: Any, aid: object, note: str) -> Any:
        return client.post(f"/desk/alert/{aid}", data={"csrf": csrf_of(client, "/desk"),
                                                       "note": note})

    assert resolve(analyst, first, "not mine to say").status_code == 403
    # a liaison officer (NZL, posted at JPN's node) administers nothing there
    if "tane" not in {p.name for p in jpn.store.people()}:
        jpn.people.add("tane", party="NZL", clearance="SECRET",
                       roles=["analyst", "security-officer"], password=password("tane"))
    r = resolve(pact.client("tane"), first, "closed by the guest")
    assert r.status_code == 403 and "only JPN&#39;s people resolve alerts" in r.text, r.text
    for aid, note, problem in ((first, " ", "say what was done"),
                               (10**9, "done", f"no alert #{10**9}")):
        r = resolve(officer, aid, note)
        assert r.status_code == 400 and problem in r.text, r.text
    assert resolve(officer, "x", "done").status_code == 404
    assert first not in jpn.store.alert_resolutions()
    r = resolve(officer, first, "a drill, nothing to do")
    assert r.status_code == 303 and r.headers["location"] == "/desk#alerts"
    assert jpn.store.alert_resolutions()[first][1] == "a drill, nothing to do"
    (event,) = [json.loads(e.body) for e in jpn.store.find_audit(AuditFilter(
        kinds=("alert-resolve",), limit=1000)) if json.loads(e.body)["alert_id"] == first]
    assert event["person"]["id"] == jpn.audit.pseudonyms.of("kobayashi", None)
    assert resolve(officer, first, "again").status_code == 400  # once

    alerts = officer.get("/desk").text.split('<h3 id="alerts">Alerts</h3>', 1)[1]
    assert f'action="/desk/alert/{second}"' in alerts and "NZL left an event out" in alerts
    assert f'action="/desk/alert/{first}"' not in alerts and "rewrote" not in alerts
    resolved = len(jpn.store.alert_resolutions())
    assert f"<p>{resolved} resolved (<code>intelpact audit alerts DIR --all</code>)" in alerts


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000, '{"objects":5}'],
                         ids=["nested 100000 deep", "objects 5"])
def test_rows_altered_into_what_no_reader_takes_are_no_500(pact: Pact, body: str) -> None:
    """A consent request's requester and a compromise report's body altered in JPN's
    database (nested too deep to decode, objects that are not a list): the desk still
    answers, the request listed with the start of its requester's text as kept (not all
    200 KB of it), the report not listed (its objects unknown, none may be read);
    before, each made every visit a 500."""
    jpn = pact.jpn
    _, rid = pact.ask("its requester altered")
    obj = _at_nzl(pact, "its report altered")
    (filed,) = pact.nzl.compromise.file([obj["id"]], what="altered here",
                                        discovered=timestamp(utc_now()))
    assert courier(pact.nzl, lambda c: c.deliver_compromise("JPN")) == 1
    report = jpn.store.compromise_report(filed.report_id)
    assert report is not None
    kept = _record(pact, rid).requester, report.body

    def alter(requester: str, report_body: str) -> None:
        def quoted(text: str) -> str:
            return "'" + text.replace("'", "''") + "'"

        with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
            c.execute(f"UPDATE consents SET requester = {quoted(requester)} "  # noqa: S608
                      f"WHERE request_id = {quoted(rid)}")
            c.execute(f"UPDATE compromise_reports SET body = {quoted(report_body)} "  # noqa: S608
                      f"WHERE report_id = {quoted(filed.report_id)}")

    officer = pact.client("kobayashi")
    alter("[" * 100_000 + "]" * 100_000, body)
    try:
        page = officer.get("/desk")
        assert page.status_code == 200, page.text[:300]
        row = re.search(rf'<tr id="consent-{rid}">(.*?)</tr>', page.text, re.S)
        assert row and "[[[" in row.group(1)
        assert len(row.group(1)) < 2000 and "… (199,800 more characters)" in row.group(1)
        assert filed.report_id not in _reports(page.text)
    finally:
        alter(*kept)
    assert filed.report_id in _reports(officer.get("/desk").text)


def _reports(page: str) -> str:
    """The desk's list of compromise reports (the alerts name reports too)."""
    return page.split('id="reports"', 1)[1].split("</section>", 1)[0]


def test_the_desk_says_which_objects_passed_on_are_the_holder_s(pact: Pact) -> None:
    """Regression (found in review): the desk's dissemination record showed NZL's own
    report, passed on to AUS with JPN's consent for the JPN information it holds, as it
    shows JPN's objects passed on ("AUS (via NZL)"): nothing said the report is NZL's.
    The onward release is recorded as JPN's node records NZL's report of it
    (``Store.add_onward``; the pact has no AUS node to pass it to)."""
    jpn, nzl = pact.jpn, pact.nzl
    obj = indicator("JPN's, for NZ and AU")
    who = jpn.people.as_person("kobayashi").person
    status = jpn.publisher.publish(who, jpn.default_collection().collection_id, [obj],
                                   marking=MarkingRequest("秘", ("NZL", "AUS")))
    assert status.body["failure_count"] == 0
    assert courier(jpn, lambda c: c.push_all("NZL")) >= 1
    (held,) = nzl.store.held([obj["id"]])
    (jpn_marking,) = json.loads(held.body)["object_marking_refs"]
    report = {"type": "report", "spec_version": "2.1", "id": f"report--{uuid.uuid4()}",
              "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
              "name": "NZ's analysis", "published": "2026-11-01T00:00:00.000Z",
              "object_refs": [obj["id"]],
              "granular_markings": [{"marking_ref": jpn_marking, "selectors": ["object_refs"]}]}
    nzl.people.add("wiremu", party="NZL", clearance="SECRET", roles=["publisher"])
    status = nzl.publisher.publish(nzl.people.as_person("wiremu").person,
                                   nzl.default_collection().collection_id, [report],
                                   marking=MarkingRequest("SECRET", ("JPN", "AUS")))
    assert status.body["failure_count"] == 0, status.body
    assert courier(nzl, lambda c: c.push_all("JPN")) >= 1
    made = timestamp(utc_now())
    for item in (obj, report):
        (row,) = jpn.store.held([item["id"]])
        assert jpn.store.add_onward("AUS", "NZL", [(row.object_id, row.version, row.body_hash)],
                                    made, None, Notice(str(uuid.uuid4()), "in", "NZL",
                                                       "onward-release", row.object_id, "{}",
                                                       made))
    page = pact.client("kobayashi").get("/desk").text
    dissem = page.split('id="dissem"', 1)[1].split("</section>", 1)[0]
    rows = re.findall(r'<tr><td><a href="/objects/([^"]+)">.*?</td>(.*?)</tr>', dissem)
    (mine,) = [cells for oid, cells in rows if oid == obj["id"] and "AUS" in cells]
    (theirs,) = [cells for oid, cells in rows if oid == report["id"]]
    assert "<td>AUS (via NZL)</td>" in mine
    assert "<td>AUS (via NZL; NZL's own, holding our information)</td>" in theirs
