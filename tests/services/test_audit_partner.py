"""Partner audit and checkpoint gossip between two nodes over real mutual TLS."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_federation import PW, publish, push

from intelpact.crypto.checkpoint import format_checkpoint, parse_checkpoint, sign_note
from intelpact.crypto.merkle import consistency_proof, leaf_hash, root, verify_inclusion
from intelpact.interfaces.cli import main
from intelpact.interfaces.federation import federation_server_options
from intelpact.interfaces.taxii import TAXII
from intelpact.model import national_marking
from intelpact.services import courier as courier_module
from intelpact.services.audit import (
    AuditError,
    EventsWithheld,
    _uncovered,
    canonical,
    count_text,
    decode_hash,
    encode_hash,
    log_origin,
    number_gaps,
    parse_count,
)
from intelpact.services.courier import Courier, Unreachable
from intelpact.services.federation import sign_request
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import (
    MAX_INTEGER,
    AuditEvent,
    AuditFilter,
    KeptEvent,
    PartnerCheckpoint,
    Query,
    event_object_ids,
    objects_named,
    timestamp,
    utc_now,
)
from intelpact.store.sqlite import SQLiteStore

from helpers import _in_thread, indicator, serving, serving_federation


@pytest.fixture()
def jpn_nzl(jpn_nzl: list[Node]) -> list[Node]:
    """With NZL's analyst, cleared SECRET and NZEO, and one cleared RESTRICTED."""
    jpn_nzl[1].people.add("analyst", party="NZL", clearance="SECRET", caveats=["NZEO"])
    jpn_nzl[1].people.add("low", party="NZL", clearance="RESTRICTED")
    return jpn_nzl


def _audit(node: Node, party: str, **kwargs: int) -> tuple[int, list[dict], bool]:
    courier = Courier(node)
    try:
        got = courier.partner_audit(party, **kwargs)
    finally:
        courier.stop()
    return got.size, got.events, got.more


def test_jpn_sees_exactly_the_events_about_its_objects_at_nzl(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    secret = publish(jpn, "for NZ", "極秘", ("NZL",))
    nz_own = publish(nzl, "nz own", "SECRET", ("JPN",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        push(nzl, "JPN")
        cid = nzl.default_collection().collection_id
        analyst, low = nzl.people.as_person("analyst"), nzl.people.as_person("low")
        nzl.find(analyst, cid, Query(ids=(secret["id"],)), via="object")  # a read
        nzl.find(low, cid, Query(ids=(secret["id"],)), via="object")  # a denial
        nzl.find(analyst, cid, Query(ids=(nz_own["id"],)), via="object")  # not JPN's
        nzl.people.add("someone", party="NZL", clearance="SECRET")  # not JPN's business
        size, events, more = _audit(jpn, "NZL")
    assert not more and events
    kinds = [e["kind"] for e in events]
    assert "receive" in kinds and "read" in kinds and "deny" in kinds
    for e in events:
        assert e["originator"] == "JPN" and e["node"] == "NZL"
        assert all(o[0] != nz_own["id"] for o in e.get("objects", []))
    read = next(e for e in events if e["kind"] == "read")
    assert read["person"]["nationality"] == "NZL" and read["person"]["clearance"] == "SECRET"
    assert read["person"]["id"].startswith("p-") and "analyst" not in json.dumps(read)
    # exactly NZL's events about JPN objects, no more, no fewer
    want = [e.index for e in nzl.store.find_audit(AuditFilter(originator="JPN"))]
    assert [e["index"] for e in events] == want
    # the checkpoint JPN now holds verifies every event's inclusion
    ((held_size, root, _, _),) = jpn.store.partner_checkpoints("NZL")
    assert held_size == size
    for e in events:
        body = next(r.body for r in nzl.store.audit_events(e["index"], e["index"] + 1))
        proof = nzl.audit.tree.inclusion(e["index"], size)
        verify_inclusion(e["index"], size, leaf_hash(body.encode()), proof, root)
    # and NZL recorded that JPN audited it
    assert nzl.store.find_audit(AuditFilter(kinds=("partner-audit",), party="JPN"))


def test_a_read_event_names_only_its_own_originators_withheld_portions(
        jpn_nzl: tuple[Node, Node]) -> None:
    """One page serves a JPN object and an NZL object whose TOP SECRET description is
    withheld from the analyst: each originator's read event says what was withheld of
    its own objects only. The page's ``withheld`` went into every originator's event, so
    JPN's partner audit named NZL's object."""
    jpn, nzl = jpn_nzl
    ours = publish(jpn, "for NZ", "極秘", ("NZL",))
    officer = nzl.people.as_person("officer").person
    cid = nzl.default_collection().collection_id
    publish(nzl, "nz top secret", "TOP SECRET", ())  # stores its marking definition
    top = national_marking(nzl.agreement, "NZL", "TOP SECRET")
    partly = indicator("nz only, partly TS", granular_markings=[
        {"selectors": ["description"], "marking_ref": top["id"]}])
    status = nzl.publisher.publish(officer, cid, [partly],
                                   marking=MarkingRequest("SECRET", (), ("NZEO",)))
    assert status.body["failure_count"] == 0, status.body
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        _, served = nzl.find(nzl.people.as_person("analyst"), cid,
                             Query(ids=(ours["id"], partly["id"])), via="objects")
        assert {r.object_id for r, _ in served} == {ours["id"], partly["id"]}
        _, events, _ = _audit(jpn, "NZL")
    read = [json.loads(e.body) for e in nzl.store.find_audit(AuditFilter(kinds=("read",)))]
    assert {r["originator"]: r.get("withheld") for r in read} == {
        "NZL": {partly["id"]: ["description"]}, "JPN": None}
    shown = [e for e in events if e["kind"] == "read"]
    assert shown and all("withheld" not in e for e in shown)
    assert partly["id"] not in json.dumps(events)


def test_each_version_served_has_its_own_withheld_portions_in_the_read_events(
        jpn_nzl: tuple[Node, Node]) -> None:
    """A page of ``versions=all`` serves two versions of one object, its TOP SECRET
    description withheld from the first and its TOP SECRET labels from the second: the
    read events say which was withheld from which version. ``withheld`` was kept by id,
    so the event named the last version's portions only and lost the first's."""
    _, nzl = jpn_nzl
    officer = nzl.people.as_person("officer").person
    cid = nzl.default_collection().collection_id
    publish(nzl, "nz top secret", "TOP SECRET", ())  # stores its marking definition
    top = national_marking(nzl.agreement, "NZL", "TOP SECRET")
    first = indicator("partly TS", granular_markings=[
        {"selectors": ["description"], "marking_ref": top["id"]}])
    second = indicator("partly TS", oid=first["id"], modified="2026-11-02T00:00:00.000Z",
                       labels=["ts"], granular_markings=[
                           {"selectors": ["labels"], "marking_ref": top["id"]}])
    for version in (first, second):
        status = nzl.publisher.publish(officer, cid, [version],
                                       marking=MarkingRequest("SECRET", (), ("NZEO",)))
        assert status.body["failure_count"] == 0, status.body["failures"]
    before = nzl.store.audit_size()
    _, served = nzl.find(nzl.people.as_person("analyst"), cid,
                         Query(ids=(first["id"],), versions=("all",)), via="objects")
    old, new = sorted(row.version for row, _ in served)
    read = [json.loads(e.body) for e in nzl.store.audit_events(before, nzl.store.audit_size())
            if json.loads(e.body)["kind"] == "read"]
    assert sorted((r["objects"], r["withheld"]) for r in read) == [
        ([[first["id"], old]], {first["id"]: ["description"]}),
        ([[first["id"], new]], {first["id"]: ["labels"]})]


def test_a_refused_delete_of_our_object_is_shown_to_us_as_a_denied_read_is(
        jpn_nzl: tuple[Node, Node]) -> None:
    """NZL readers without the security-officer role DELETE JPN's object over TAXII: one
    who may read it (403), one who may not (404, the answer for an id held nowhere, as
    before). Both denials are filed under JPN, which its partner audit shows, as it shows
    a denied read; one of an id held nowhere is filed under no one. The denial was filed
    under no originator, so JPN was never shown it."""
    jpn, nzl = jpn_nzl
    ours = publish(jpn, "for NZ", "極秘", ("NZL",))
    nobody = "indicator--00000000-0000-4000-8000-000000000001"
    nzl.people.add("clerk", party="NZL", clearance="SECRET", roles=["analyst"], password=PW)
    nzl.people.add("junior", party="NZL", clearance="RESTRICTED", roles=["analyst"],
                   password=PW)
    cid = nzl.default_collection().collection_id
    with serving_federation(jpn), serving_federation(nzl), serving(nzl) as url:
        push(jpn, "NZL")

        def delete(who: str, oid: str) -> httpx.Response:
            return httpx.delete(f"{url}/intel/collections/{cid}/objects/{oid}/",
                                auth=(who, PW), headers={"Accept": TAXII})

        assert delete("clerk", ours["id"]).status_code == 403
        hidden, missing = delete("junior", ours["id"]), delete("junior", nobody)
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json() == missing.json()
        _, events, _ = _audit(jpn, "NZL")
    denials = [(e["person"]["clearance"], e["objects"], e["reason"]) for e in events
               if e["kind"] == "deny" and e.get("via") == "delete"]
    reason = "deleting needs the security-officer role"
    assert denials == [("SECRET", [[ours["id"], ""]], reason),
                       ("RESTRICTED", [[ours["id"], ""]], reason)]
    (unheld,) = [json.loads(e.body) for e in nzl.store.find_audit(AuditFilter(kinds=("deny",)))
                 if nobody in e.body]
    assert "originator" not in unheld and unheld["reason"] == reason


def test_audit_partner_command_shows_the_originator_view(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    secret = publish(jpn, "for NZ", "極秘", ("NZL",))
    unread = CliRunner().invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL", "--kept"])
    assert unread.exit_code == 0 and "Nothing kept of NZL's audit events" in unread.output
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        nzl.find(nzl.people.as_person("analyst"), nzl.default_collection().collection_id,
                 Query(ids=(secret["id"],)), via="object")
        result = CliRunner().invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL"])
    assert result.exit_code == 0, result.output
    assert "read" in result.output and "(NZL, SECRET)" in result.output
    assert "each proven included in its signed log" in result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == lines[-1] and "極秘" in lines[0]  # JPN's words for the object's level
    # NZL out of reach: what JPN keeps still shows, checked again, and nothing else
    gone = CliRunner().invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL"])
    assert gone.exit_code == 2 and "unreachable" in gone.output, gone.output
    assert "--kept shows what this node keeps of NZL's events" in gone.output
    kept = CliRunner().invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL", "--kept"])
    assert kept.exit_code == 0, kept.output
    assert "kept here, read by the audit watch to leaf" in kept.output
    assert "checked again against NZL's signed checkpoint" in kept.output
    assert _events(kept.output) == _events(result.output) and _events(kept.output)


def _events(output: str) -> list[str]:
    """The head lines of the events a command printed (`#index  time  kind  by …`)."""
    return [line for line in output.splitlines() if line.startswith("#")]


def test_what_the_watch_read_is_kept_and_read_on_from(jpn_nzl: tuple[Node, Node]) -> None:
    """Each event read is kept with the proof it came with: `audit partner` shows them
    and asks NZL only for what it logged since; a report's check reads them too."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=3) as secret:
        courier = Courier(jpn)
        asked = _asked(courier)
        try:
            first = courier.partner_events("NZL", limit=100)
            _read(nzl, secret, 2)
            asked.clear()
            second = courier.partner_events("NZL", limit=100)
        finally:
            courier.stop()
    numbered = nzl.store.find_audit(AuditFilter(originator="JPN"))
    assert [e["index"] for e in second.events] == [e.index for e in numbered]
    assert second.events[:len(first.events)] == first.events and not second.more
    assert second.expect == len(numbered) and second.missing == 0
    assert [t.split("after=")[1].split("&")[0] for t in asked] == [
        str(first.events[-1]["index"])]  # only what came after
    kept = jpn.store.partner_events("NZL")
    assert [k.body for k in kept] == [e.body for e in numbered]  # as NZL signed them
    shown, problems = jpn.audit.verify_kept("NZL", jpn.federation.log_keys("NZL"), kept)
    assert problems == [] and shown == second.events


def test_kept_events_are_read_a_page_at_a_time_with_the_same_answer(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of kept events smaller than the answer (KEPT_PAGE): the same events, the
    same bound and numbers, filtered or not, cut short by --limit or not."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=6) as secret:
        courier = Courier(jpn)
        try:
            def answers() -> list[Any]:
                return [courier.partner_events("NZL", limit=limit, kinds=kinds)
                        for limit in (3, 100) for kinds in ((), ("read",))]

            whole = answers()
            monkeypatch.setattr(courier_module, "KEPT_PAGE", 2)
            paged = answers()
        finally:
            courier.stop()
    assert [(a.events, a.more, a.expect, a.missing) for a in paged] == \
        [(a.events, a.more, a.expect, a.missing) for a in whole]
    assert [len(a.events) for a in whole] == [3, 3, 7, 6] and secret
    assert [a.more for a in whole] == [True, True, False, False]


def test_kept_evidence_changed_here_is_caught(jpn_nzl: tuple[Node, Node]) -> None:
    """An event kept here whose body, proof, number or checkpoint was changed in the
    database no longer verifies, and one deleted is missing from the numbers."""
    jpn, nzl = jpn_nzl
    _watched(jpn, nzl, reads=4)
    kept = jpn.store.partner_events("NZL")
    keys = jpn.federation.log_keys("NZL")
    assert len(kept) >= 5 and jpn.audit.verify_kept("NZL", keys, kept)[1] == []
    verified = CliRunner().invoke(main, ["audit", "verify", str(jpn.config.dir)])
    assert verified.exit_code == 0 and f"so do the {len(kept)} partner audit event(s) kept " \
        "here" in verified.output, verified.output
    for changed, problem in [
            ({"body": kept[1].body.replace('"read"', '"deny"')}, "does not verify"),
            ({"proof": kept[1].proof[32:] + kept[1].proof[:32]}, "does not verify"),
            ({"proof": kept[1].proof[:-1]}, "does not verify"),
            ({"seq": (kept[1].seq or 0) + 1}, "its number is not the one its body holds"),
            ({"size": kept[1].size + 1}, "that checkpoint is not kept here")]:
        shown, (line,) = jpn.audit.verify_kept("NZL", keys,
                                               [dataclasses.replace(kept[1], **changed)])
        assert shown == []
        assert f"event {kept[1].index} of NZL's log" in line and problem in line, line
    run = CliRunner()
    named = sorted(objects_named(json.loads(kept[2].body)))
    kind = json.loads(kept[3].body)["kind"]
    assert kept[3].kind == kind != "deny"
    for tamper, problem in [  # what each is filed under: an event hidden from a search,
            (f"UPDATE partner_events SET kind = 'deny' WHERE leaf = {kept[3].index}",
             f"NZL's kept event {kept[3].index} is filed under kind 'deny', but its body's "
             f"kind is '{kind}': searches by kind"),  # or shown where it does not belong
            (f"DELETE FROM partner_event_refs WHERE leaf = {kept[2].index}",
             f"NZL's kept event {kept[2].index} is missing from the object index under "
             f"{len(named)} object(s) it names ({named[0]}…)"),
            ("INSERT INTO partner_event_refs VALUES ('NZL', 'report--x', "
             f"{kept[-1].index})",
             f"NZL's kept event {kept[-1].index} is filed in the object index under 1 "
             "object(s) its body does not name (report--x…)")]:
        with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
            c.execute(tamper)
        verified = run.invoke(main, ["audit", "verify", str(jpn.config.dir)])
        assert verified.exit_code == 1 and problem in " ".join(verified.output.split()), \
            verified.output
    hidden = run.invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL", "--kept",
                               "--object", named[0], "--json"])
    assert hidden.exit_code == 0, hidden.output
    assert [json.loads(line)["index"] for line in hidden.output.splitlines()] == [
        k.index for k in kept if named[0] in event_object_ids(k.body) and k != kept[2]]
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - put back
        c.execute("INSERT INTO partner_event_refs VALUES " + ", ".join(  # noqa: S608
            f"('NZL', '{o}', {kept[2].index})" for o in named))
        c.execute(f"UPDATE partner_events SET kind = NULL WHERE leaf = {kept[3].index}")  # noqa: S608
    assert jpn.audit.check_kept("NZL", keys)[1] == [  # under no kind: found by its body
        f"NZL's kept event {kept[-1].index} is filed in the object index under 1 object(s) "
        "its body does not name (report--x…)"]
    found = run.invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL", "--kept",
                              "--kind", kind, "--json"])
    assert kept[3].index in [json.loads(line)["index"] for line in found.output.splitlines()]
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
        c.execute("UPDATE partner_events SET body = replace(body, '\"read\"', '\"deny\"') "  # noqa: S608
                  f"WHERE leaf = {kept[1].index}")
    tampered = run.invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL", "--kept"])
    verified = run.invoke(main, ["audit", "verify", str(jpn.config.dir)])
    assert verified.exit_code == 1 and f"event {kept[1].index} of NZL's log, kept as proven" \
        in verified.output, verified.output
    assert tampered.exit_code != 0 and "1 of NZL's audit events kept here do not verify" \
        in tampered.output, tampered.output
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
        c.execute(f"DELETE FROM partner_events WHERE leaf = {kept[1].index}")  # noqa: S608
    deleted = run.invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL", "--kept"])
    assert deleted.exit_code == 1 and "NOT COMPLETE: 1 numbered event(s)" in deleted.output
    verified = run.invoke(main, ["audit", "verify", str(jpn.config.dir)])
    assert "no events-withheld alert says NZL left them out: they were deleted from this " \
        "node's evidence" in " ".join(deleted.output.split()), deleted.output
    assert verified.exit_code == 1 and f"NZL's event(s) about our objects numbered " \
        f"{kept[1].seq} are not kept here: no events-withheld alert says NZL left them " \
        "out" in " ".join(verified.output.split()), verified.output
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
        c.execute(f"DELETE FROM partner_events WHERE leaf >= {kept[-2].index}")  # noqa: S608
    assert [kept[1].seq, kept[-2].seq] == [1, 3] and len(kept) == 5
    assert jpn.audit.check_kept("NZL", keys) == (2, [
        f"NZL's event(s) about our objects numbered {numbers} are not kept here: no "
        "events-withheld alert says NZL left them out: they were deleted from this node's "
        "evidence" for numbers in ("1", "3 to 4")])  # the newest: known from the cursor
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
        c.execute("DROP TABLE partner_events")
    dropped = run.invoke(main, ["audit", "verify", str(jpn.config.dir)])
    assert dropped.exit_code == 1 and "NZL's audit events kept here cannot be " \
        "checked" in dropped.output, dropped.output


def test_a_kept_checkpoint_altered_here_is_caught_and_no_evidence_against_the_partner(
        jpn_nzl: tuple[Node, Node]) -> None:
    """The size and root kept beside a partner's signed note are what a witness judges
    the next checkpoint by: changed here, `audit verify` says so, and the next gossip
    round refuses without raising `history-rewritten` against a partner that rewrote
    nothing."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=2):
        courier = Courier(jpn)
        try:
            courier.watch_once("NZL")
            ((size, _, _, _),) = jpn.store.partner_checkpoints("NZL")
            with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
                c.execute("UPDATE partner_checkpoints SET root = " + (  # 32 zero bytes
                    "zeroblob(32)" if isinstance(jpn.store, SQLiteStore)
                    else "decode(repeat('00', 32), 'hex')"))
            verified = CliRunner().invoke(main, ["audit", "verify", str(jpn.config.dir)])
            assert verified.exit_code == 1, verified.output
            assert f"NZL's checkpoint of {size} events kept here is not what its note " \
                "signed" in " ".join(verified.output.split())
            with pytest.raises(AuditError, match="altered here"):
                courier.gossip_once("NZL")
        finally:
            courier.stop()
    assert jpn.store.alerts() == []


def test_the_evidence_of_a_partner_no_longer_pinned_is_still_checked(
        jpn_nzl: tuple[Node, Node]) -> None:
    """`audit verify` checks what is kept of every partner's log, pinned or not: a
    partner's row deleted from the pinned peers does not take its evidence out of the
    check."""
    jpn, nzl = jpn_nzl
    _watched(jpn, nzl, reads=2)
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
        c.execute("DELETE FROM peers WHERE party = 'NZL'")
        c.execute("UPDATE partner_events SET body = replace(body, '\"read\"', '\"deny\"')")
    verified = CliRunner().invoke(main, ["audit", "verify", str(jpn.config.dir)])
    assert verified.exit_code == 1 and "does not verify" in verified.output, verified.output


def _recorded(node: Node) -> list[dict[str, Any]]:
    """The moves of ``node``'s audit watch its log recorded (``partner-audit-kept``)."""
    return [json.loads(r.body) for r in node.store.find_audit(
        AuditFilter(kinds=("partner-audit-kept",)))]


def test_each_move_of_the_watch_is_recorded_in_this_log_and_an_idle_round_is_not(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Each round that keeps NZL's events and moves the watch's cursor on records the
    move in JPN's own log, in the same transaction; a round with nothing new records
    nothing, so an idle node's log does not grow."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=2) as secret:
        courier = Courier(jpn)
        try:
            courier.watch_once("NZL")
            first = _recorded(jpn)
            courier.watch_once("NZL")  # nothing new
            courier.watch_once("NZL")
            idle = _recorded(jpn)
            _read(nzl, secret, 1)
            courier.watch_once("NZL")
        finally:
            courier.stop()
    numbered = [r.index for r in nzl.store.find_audit(AuditFilter(originator="JPN"))]
    assert idle == first and len(numbered) == 4
    assert [{k: v for k, v in e.items() if k != "at"} for e in _recorded(jpn)] == [
        {"v": 2, "node": "JPN", "kind": "partner-audit-kept", "party": "NZL",
         "after": after, "expect": expect, "kept": kept}
        for after, expect, kept in ((numbered[2], 3, 3), (numbered[3], 4, 1))]
    assert jpn.store.partner_audit_cursor("NZL") == (numbered[3], 4)
    assert len(jpn.store.partner_events("NZL")) == 4


def test_the_evidence_deleted_with_the_watch_s_cursor_is_caught_by_this_log(
        jpn_nzl: tuple[Node, Node]) -> None:
    """An insider deleting NZL's newest events kept here and setting the watch's cursor
    back to before them, or deleting everything kept of NZL's log (cursor, checkpoints,
    keys, its pin), leaves no gap in the numbers kept; the moves of the watch recorded in
    JPN's own log say how far it had kept, and `audit verify` names what was deleted."""
    jpn, nzl = jpn_nzl
    _watched(jpn, nzl, reads=3)
    kept = jpn.store.partner_events("NZL")
    after, expect = jpn.store.partner_audit_cursor("NZL")
    (event,) = jpn.store.find_audit(AuditFilter(kinds=("partner-audit-kept",)))
    assert [k.seq for k in kept] == [0, 1, 2, 3] and (after, expect) == (kept[-1].index, 4)
    run, node = CliRunner(), str(jpn.config.dir)
    verified = run.invoke(main, ["audit", "verify", node])
    assert verified.exit_code == 0, verified.output
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
        for table in ("partner_events", "partner_event_refs"):
            c.execute(f"DELETE FROM {table} WHERE leaf >= {kept[2].index}")  # noqa: S608
        c.execute(f"UPDATE partner_audit_cursors SET read_after = {kept[1].index}, "  # noqa: S608
                  "next_seq = 2")
    assert jpn.audit.check_kept("NZL", jpn.federation.log_keys("NZL")) == (2, [
        f"NZL's audit watch is at leaf {kept[1].index} (number 2), but event {event.index} "
        f"of this log recorded it moved to leaf {after} (number 4): the cursor was set back "
        "here, and whatever of NZL's events kept below it is missing was deleted with it",
        "NZL's event(s) about our objects numbered 2 to 3 are not kept here: no "
        "events-withheld alert says NZL left them out: they were deleted from this node's "
        "evidence"])
    # a move written into the database by an insider, past the watch, anchors nothing:
    # its missing MAC is what verify names
    forged = jpn.audit.event("partner-audit-kept", party="NZL", after=after + 100,
                             expect=99, kept=95)
    mark = "?" if isinstance(jpn.store, SQLiteStore) else "%s"
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
        c.execute(f"INSERT INTO audit_events (idx, at, kind, party, body) VALUES ({mark}, "
                  f"{mark}, {mark}, {mark}, {mark})",
                  (jpn.store.audit_size(), forged.at, forged.kind, "NZL", forged.body))
    assert [p for p in jpn.audit.check_kept("NZL", jpn.federation.log_keys("NZL"))[1]
            if "(number 99)" in p] == []
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
        for table in ("partner_events", "partner_event_refs", "partner_audit_cursors",
                      "partner_checkpoints", "party_keys", "peers"):
            c.execute(f"DELETE FROM {table} WHERE party = 'NZL'")  # noqa: S608
    assert "NZL" not in jpn.store.partner_parties() + list(jpn.federation.peers())
    verified = run.invoke(main, ["audit", "verify", node])
    said = " ".join(verified.output.split())
    assert verified.exit_code == 1, verified.output
    assert f"NZL's audit watch keeps no cursor here, but event {event.index} of this log " \
        f"recorded it moved to leaf {after} (number 4): the cursor was deleted here" in said
    assert "NZL's event(s) about our objects numbered 0 to 3 are not kept here: no " \
        "events-withheld alert says NZL left them out" in said, said


def test_the_kept_evidence_checked_beside_a_watch_keeping_more_is_one_state_of_it(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: `audit verify` checked NZL's events kept here page by page, then read
    the watch's cursor: a serving node's watch that kept more of NZL's events and moved
    the cursor in between made the events below the cursor look deleted ("numbered 2 to
    4 are not kept here"), a tamper that was not there. The check reads one snapshot of
    the store (Store.snapshot), as the log's own verify does."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=2) as secret:
        courier = Courier(jpn)
        try:
            courier.watch_once("NZL")
            _read(nzl, secret, 3)
            real, moved = jpn.store.partner_audit_watch, []
            checking = threading.get_ident()

            def watch_moves_meanwhile(party: str) -> Any:
                if threading.get_ident() == checking and not moved:
                    # the check read the events: the watch keeps more, moves the cursor
                    thread = threading.Thread(target=lambda: moved.append(
                        courier.watch_once("NZL")))
                    thread.start()
                    thread.join()
                return real(party)

            before = jpn.store.partner_audit_cursor("NZL")
            monkeypatch.setattr(jpn.store, "partner_audit_watch", watch_moves_meanwhile)
            count, problems = jpn.audit.check_kept("NZL", jpn.federation.log_keys("NZL"))
            monkeypatch.undo()
        finally:
            courier.stop()
    assert moved and jpn.store.partner_audit_cursor("NZL")[1] > before[1]
    assert problems == []
    assert count == before[1]  # what was kept when the check began
    assert jpn.audit.check_kept("NZL", jpn.federation.log_keys("NZL")) == (
        jpn.store.partner_audit_cursor("NZL")[1], [])


@pytest.mark.parametrize(("tamper", "options", "sqlite_only"), [
    ("UPDATE partner_events SET proof = 'abc' WHERE leaf = {first}", (), True),
    ("UPDATE partner_checkpoints SET note = CAST(note AS BLOB)", (), True),
    ("UPDATE partner_events SET kind = NULL, body = '" + "[" * 100_000 + "]" * 100_000
     + "' WHERE leaf = {first}", ("--kind", "read"), False),
], ids=["a proof kept as text", "a note kept as a blob", "a body nested deep, of no kind"])
def test_kept_evidence_altered_into_another_type_is_said_not_a_crash(
        jpn_nzl: tuple[Node, Node], tamper: str, options: tuple[str, ...],
        sqlite_only: bool) -> None:
    """A kept row altered in the database so that its column no longer holds what the
    readers take (SQLite keeps any type in any column; a body no reader decodes, filed
    under no kind so that a search by kind reads it): `audit partner --kept` says the
    evidence does not verify, in one line pointing to `audit verify`, which names it;
    before, a traceback from the store's read, the note's check or the kind filter."""
    jpn, nzl = jpn_nzl
    if sqlite_only and not jpn.config.database.endswith(".db"):
        pytest.skip("PostgreSQL's columns hold only their own type")
    with _shared(jpn, nzl, reads=2):
        courier = Courier(jpn)
        try:
            courier.watch_once("NZL")
        finally:
            courier.stop()
    first = jpn.store.partner_events("NZL")[0].index
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
        c.execute(tamper.format(first=first))
    run = CliRunner()
    shown = run.invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL", "--kept",
                              *options])
    assert shown.exit_code == 2 and isinstance(shown.exception, SystemExit), \
        (shown.output, shown.exception)
    said = " ".join(shown.output.split())
    assert "of NZL's audit events kept here do not verify; the first: event " in said, said
    assert "intelpact audit verify DIR" in said, said
    verified = run.invoke(main, ["audit", "verify", str(jpn.config.dir)])
    assert verified.exit_code == 1 and "kept as proven in its checkpoint of" in \
        verified.output, (verified.output, verified.exception)


def test_evidence_kept_still_verifies_after_the_partner_rotates_its_key(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Events proven in checkpoints NZL signed with a key it has since rotated out are
    checked again under that key, within its bound, beside the ones proven after."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=2) as secret:
        courier = Courier(jpn)
        try:
            courier.watch_once("NZL")
            old_id = nzl.identity.key_id
            nzl.rotate_key()
            push(nzl, "JPN")  # the announcement reaches JPN: the old key retired at a bound
            _read(nzl, secret, 2)
            found = courier.partner_events("NZL", limit=100)
        finally:
            courier.stop()
    assert old_id in jpn.store.retired_keys("NZL")
    sizes = {k.size for k in found.kept}
    assert min(sizes) <= jpn.store.retired_keys("NZL")[old_id] < max(sizes)
    assert found.missing == 0 and len(found.events) == nzl.store.audit_numbered("JPN")[0]


def test_a_body_that_names_a_leaf_does_not_move_the_watch(jpn_nzl: tuple[Node, Node]) -> None:
    """An event is shown and read on from at the leaf it is proven at, whatever its body
    says: a body with an "index" of its own neither hides events nor moves the watch."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=1) as secret:
        nzl.audit.record(nzl.audit.event("read", party="JPN", originator="JPN",
                                         objects=[(secret["id"], secret["modified"])],
                                         index=10**9))
        courier = Courier(jpn)
        try:
            courier.watch_once("NZL")
            _read(nzl, secret, 1)
            courier.watch_once("NZL")
        finally:
            courier.stop()
    count, newest = nzl.store.audit_numbered("JPN")
    assert jpn.store.partner_audit_cursor("NZL") == (newest, count)
    kept = jpn.store.partner_events("NZL")
    assert [k.seq for k in kept] == list(range(count)) and not jpn.store.alerts()
    odd = [k for k in kept if json.loads(k.body).get("index") == 10**9]
    assert len(odd) == 1 and odd[0].index < newest


def test_a_kept_event_naming_an_id_with_a_nul_is_shown(tmp_path: Path) -> None:
    """NZL (on SQLite, which keeps any text) signs an event about JPN's object that also
    names an id holding a NUL; JPN keeps it (the id filed under nothing). `audit
    partner` shows it, with or without --kept: on PostgreSQL, the banner's look-up of
    every id named (Store.held) refused the whole query, and the command failed on
    every run. No stored object has such an id, so none is looked up."""
    from test_federation import pair, people

    from helpers import make_node

    jpn = make_node(tmp_path / "jpn", "JPN")
    nzl = make_node(tmp_path / "nzl", "NZL", database="node.db")
    try:
        for node in (jpn, nzl):
            people(node)
        pair(jpn, nzl)
        obj = publish(jpn, "for NZ", "極秘", ("NZL",))
        with serving_federation(jpn), serving_federation(nzl):
            push(jpn, "NZL")
            nzl.audit.record(nzl.audit.event(
                "read", originator="JPN", via="objects",
                objects=[(obj["id"], "2026-11-01T00:00:00.000Z"), ("x\x00y", "v")]))
            results = [CliRunner().invoke(main, ["audit", "partner", str(jpn.config.dir),
                                                 "NZL", *kept]) for kept in ([], ["--kept"])]
        assert {r.object_id for r in jpn.store.held(["x\x00y", obj["id"]])} == {obj["id"]}
    finally:
        nzl.close()
        jpn.close()
    for result in results:
        assert result.exit_code == 0, (result.output, result.exception)
        assert "Complete: NZL signed that its log held 2 numbered event(s)" in \
            " ".join(result.output.split()), result.output
        assert len(_events(result.output)) == 2


def _witnessed(jpn: Node, nzl: Node) -> tuple[dict, list, int, bytes]:
    """NZL's answer to JPN's partner audit, after JPN's object reached NZL, witnessed by
    JPN: the answer, NZL's keys, and the checkpoint's size and root."""
    publish(jpn, "for NZ", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    answer = nzl.audit.for_partner("JPN")
    keys = jpn.federation.log_keys("NZL")
    return (answer, keys, *jpn.audit.witness("NZL", keys, answer))


def test_a_forged_event_or_proof_is_refused(jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    answer, keys, size, root = _witnessed(jpn, nzl)
    assert jpn.audit.check_partner_events("NZL", keys, size, root, answer, expect=0).events
    forged = json.loads(json.dumps(answer))
    forged["events"][0]["body"] = forged["events"][0]["body"].replace("NZL", "AUS", 1)
    with pytest.raises(AuditError, match="does not verify"):
        jpn.audit.check_partner_events("NZL", keys, size, root, forged)
    unsigned = dict(answer, checkpoint=answer["checkpoint"].replace("\n\n", "\n\n\n"))
    with pytest.raises(AuditError, match="not validly signed"):
        jpn.audit.witness("NZL", jpn.federation.log_keys("NZL"), unsigned)


def test_a_partner_that_rewrites_its_history_is_caught_by_gossip(
        jpn_nzl: tuple[Node, Node], tmp_path: Path) -> None:
    jpn, nzl = jpn_nzl
    publish(jpn, "for NZ", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        courier = Courier(jpn)
        try:
            first = courier.gossip_once("NZL")
            assert first > 0 and not jpn.store.alerts()
            # NZL grows honestly: still consistent
            nzl.people.add("later", party="NZL", clearance="SECRET")
            nzl.audit.checkpoint()
            assert courier.gossip_once("NZL") > first and not jpn.store.alerts()
            # an insider at NZL (who holds its key) rewrites the log and re-signs it
            _rewrite_history(nzl, tmp_path)
            with pytest.raises(AuditError, match="rewritten its audit history"):
                courier.gossip_once("NZL")
        finally:
            courier.stop()
    ((_, kind, party, detail, _),) = jpn.store.alerts()
    assert kind == "history-rewritten" and party == "NZL" and "not consistent" in detail
    assert jpn.store.find_audit(AuditFilter(kinds=("alert",), party="NZL"))
    shown = CliRunner().invoke(main, ["audit", "alerts", str(jpn.config.dir)])
    assert "history-rewritten" in shown.output


def test_the_same_forked_checkpoint_shown_again_is_alerted_once(
        jpn_nzl: list[Node]) -> None:
    """"An alert raised again with the same detail is not raised anew, resolved or not"
    (docs/audit.md, "Alerts"). But `history-rewritten` (AuditLog.witness) was raised
    without ``once``: a partner that kept answering with the same forked checkpoint
    raised the same alert, with its event, every gossip round (every 30 s), every
    `audit partner` and every report's witness, for ever. Three witnesses of the same
    conflicting checkpoint leave one alert."""
    jpn, nzl = jpn_nzl
    keys = jpn.federation.log_keys("NZL")
    honest = nzl.audit.checkpoint()
    jpn.audit.witness("NZL", keys, {"checkpoint": honest.note})
    size = parse_checkpoint(honest.note[: honest.note.rfind("\n\n") + 1]).size
    origin = log_origin("NZL")
    forked = sign_note(format_checkpoint(origin, size, b"\x07" * 32), origin,
                       nzl.identity.key)
    for _ in range(3):
        with pytest.raises(AuditError, match="rewritten its audit history"):
            jpn.audit.witness("NZL", keys, {"checkpoint": forked})
    alerts = [a for a in jpn.store.alerts() if a[1] == "history-rewritten"]
    assert len(alerts) == 1, f"{len(alerts)} identical history-rewritten alerts"
    assert len(jpn.store.find_audit(AuditFilter(kinds=("alert",), party="NZL"))) == 1


def test_an_answer_that_crosses_a_newer_checkpoint_is_asked_again_not_alerted(
        jpn_nzl: tuple[Node, Node]) -> None:
    """While a partner audit's answer is on its way, gossip keeps a newer checkpoint of
    the (honest) partner: the answer, proven from the older one, is asked for again."""
    jpn, nzl = jpn_nzl
    publish(jpn, "for NZ", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        audit, gossip = Courier(jpn), Courier(jpn)
        try:
            first = gossip.gossip_once("NZL")
            sent = audit._request
            asked: list[str] = []

            def crossing(peer, method, target, *args, **kwargs):  # type: ignore[no-untyped-def]
                response = sent(peer, method, target, *args, **kwargs)
                asked.append(target)
                if len(asked) == 1:  # the answer is on its way; NZL grows, gossip keeps it
                    nzl.people.add("later", party="NZL", clearance="SECRET")
                    nzl.audit.checkpoint()
                    gossip.gossip_once("NZL")
                return response

            audit._request = crossing  # type: ignore[method-assign]
            size, events = audit.partner_audit("NZL")[:2]
        finally:
            audit.stop()
            gossip.stop()
    assert not jpn.store.alerts()
    newer = max(h[0] for h in jpn.store.partner_checkpoints("NZL"))
    assert size == newer > first and events
    assert len(asked) == 2 and f"known={first}" in asked[0] and f"known={newer}" in asked[1]


@pytest.mark.parametrize("fields", [{"objects": [7]}, {"objects": {"a": 1}},
                                    {"objects": [[]]}, {"person": "p-1"},
                                    {"v": 2, "seq": 2**70}])  # past any store's integers
def test_a_partner_event_of_the_wrong_shape_is_refused_with_the_reason(
        jpn_nzl: tuple[Node, Node], fields: dict[str, Any]) -> None:
    """Signed and proven in the partner's log, but not what ``audit partner`` reads: the
    reason, and the alert ``event-malformed``, raised once, with the evidence."""
    jpn, nzl = jpn_nzl
    at = timestamp(utc_now())
    body = canonical({"v": 1, "at": at, "kind": "read", "node": "NZL", "originator": "JPN",
                      **fields})
    nzl.audit.record(AuditEvent(at, "read", body, None, None, "JPN"))
    index = nzl.store.audit_size() - 1
    with serving_federation(jpn), serving_federation(nzl):
        results = [CliRunner().invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL"])
                   for _ in range(2)]
    for result in results:
        assert result.exit_code == 2, (result.output, result.exception)  # no traceback
        assert f"NZL sent event {index}, which is malformed: its " in result.output
    assert [a[1] for a in jpn.store.alerts()] == ["event-malformed"]
    (alert,) = [json.loads(e.body) for e in jpn.store.find_audit(AuditFilter(kinds=("alert",)))]
    size, top = jpn.audit.partner_checkpoint("NZL", jpn.federation.log_keys("NZL"),
                                            alert["note"], alert=False)
    assert (alert["index"], alert["size"]) == (index, size)
    verify_inclusion(index, size, decode_hash(alert["leaf"]),
                     [decode_hash(h) for h in alert["proof"]], top)
    assert decode_hash(alert["leaf"]) == leaf_hash(body.encode())


def test_a_checkpoint_past_what_a_store_counts_is_refused_and_alerted_once(
        jpn_nzl: tuple[Node, Node]) -> None:
    """A partner's checkpoint of more events than a store's integers hold (a valid
    C2SP checkpoint goes to 2**64 - 1): refused with the reason and alerted once, not a
    database error every gossip round; the partner's real checkpoints are still kept."""
    jpn, nzl = jpn_nzl
    keys, origin = jpn.federation.log_keys("NZL"), nzl.audit.origin
    for size in (2**63, 2**63, 2**64 - 1):
        note = sign_note(format_checkpoint(origin, size, b"r" * 32), origin, nzl.signing_key)
        with pytest.raises(AuditError, match=f"NZL signed a checkpoint of {size:,} events, "
                           "more than a log can hold"):
            jpn.audit.witness("NZL", keys, {"checkpoint": note})
    assert [a[1] for a in jpn.store.alerts()] == ["checkpoint-refused"] * 2
    assert jpn.store.partner_size("NZL") == 0  # nothing kept of them
    size, _ = jpn.audit.witness("NZL", keys, nzl.audit.for_partner("JPN", limit=0))
    assert 0 < size <= nzl.store.audit_size() and jpn.store.partner_size("NZL") == size


def _branch(nzl: Node, known: int, grow: int, tag: str) -> dict[str, Any]:
    """A checkpoint of NZL's log as an insider holding its key could sign it: the first
    ``known`` events, then ``grow`` others of its choosing, with a valid consistency
    proof from ``known``. Two branches are a forked history."""
    leaves = [leaf_hash(r.body.encode()) for r in nzl.store.audit_events(0, known)]
    leaves += [leaf_hash(f"{tag}{i}".encode()) for i in range(grow)]
    origin = nzl.audit.origin
    note = sign_note(format_checkpoint(origin, len(leaves), root(leaves)), origin,
                     nzl.signing_key)
    return {"checkpoint": note, "consistency": {
        "from": known, "proof": [encode_hash(h) for h in consistency_proof(known, leaves)]}}


def test_two_witnesses_at_once_cannot_both_keep_a_forked_history(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Gossip, a compromise report's witness and ``audit partner`` may witness at the same
    time: each judges against the checkpoints held under the store's write lock, so of two
    branches of a fork one is kept and the other raises the alert."""
    jpn, nzl = jpn_nzl
    for i in range(4):
        nzl.audit.record(nzl.audit.event("login-failure", name=f"a{i}"))
    keys = jpn.federation.log_keys("NZL")
    known, _ = jpn.audit.witness("NZL", keys, nzl.audit.for_partner("JPN", limit=0))
    branches = [_branch(nzl, known, 5, "A"), _branch(nzl, known, 9, "B")]
    # Both read what is held before either keeps its own (the window widened: a
    # witness that read outside the write lock would judge both against ``known``).
    read, together = jpn.store.largest_partner_checkpoint, threading.Barrier(2)

    def held(party: str) -> PartnerCheckpoint | None:
        row = read(party)
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait(2)
        return row

    jpn.store.largest_partner_checkpoint = held  # type: ignore[method-assign]
    refused: list[AuditError] = []

    def witness(answer: dict[str, Any]) -> None:
        try:
            jpn.audit.witness("NZL", keys, answer)
        except AuditError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=witness, args=(b,)) for b in branches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 1 and "rewritten its audit history" in refused[0].message
    ((_, kind, party, _, _),) = jpn.store.alerts()
    assert kind == "history-rewritten" and party == "NZL"
    assert len(jpn.store.partner_checkpoints("NZL")) == 2  # the first, and one branch


def _rewrite_history(nzl: Node, tmp_path: Path) -> None:
    """Drop NZL's log and write a different one of a larger size, then sign it."""
    import sqlite3

    if not nzl.config.database.endswith(".db"):
        pytest.skip("the rewrite edits the SQLite file directly")
    with sqlite3.connect(nzl.config.dir / nzl.config.database) as c:
        for table in ("audit_events", "audit_refs", "audit_nodes", "audit_checkpoints"):
            c.execute(f"DELETE FROM {table}")  # noqa: S608 - constant names
    nzl.audit._cache.clear()
    for i in range(40):
        nzl.audit.record(nzl.audit.event("login-failure", name=f"x{i}", reason="rewrite"))
    nzl.audit.checkpoint()


def test_the_audit_endpoint_needs_a_signed_request_from_a_pinned_partner(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    with serving_federation(nzl):
        url = nzl.config.federation_url + "/federation/audit?limit=10"
        courier = Courier(jpn)
        try:
            client = courier._client(nzl.federation.peers()["JPN"] and
                                     jpn.federation.peers()["NZL"])
            unsigned = client.get(url)
            assert unsigned.status_code == 403
            headers = sign_request(jpn.identity, "GET", "/federation/audit?limit=99999")
            bad = client.get(nzl.config.federation_url + "/federation/audit?limit=99999",
                             headers=headers)
            assert bad.status_code == 400
        finally:
            courier.stop()
        with pytest.raises(httpx.HTTPError):  # no client certificate: the TLS layer refuses
            httpx.get(url, verify=False, timeout=5).raise_for_status()


def test_a_known_past_our_checkpoints_signs_nothing(jpn_nzl: tuple[Node, Node]) -> None:
    """``known`` is the size of the largest checkpoint of ours the caller holds: it
    cannot hold one larger than our latest. A ``known`` past it (up to 2^63 - 1 is
    taken) is answered with the latest checkpoint and no consistency proof, and signs
    nothing: signing to reach it never could (each answer is recorded, so the tree
    always grew), and signed and kept a new checkpoint on every such request."""
    jpn, nzl = jpn_nzl
    latest = nzl.audit.checkpoint()
    held = len(nzl.store.checkpoints())
    for known in (latest.size, latest.size + 1, MAX_INTEGER):
        for _ in range(5):
            answer = nzl.audit.for_partner("JPN", limit=0, known=known)
            assert answer["checkpoint"] == latest.note and "consistency" not in answer
    assert len(nzl.store.checkpoints()) == held
    answer = nzl.audit.for_partner("JPN", limit=0, known=latest.size - 1)  # an honest one
    assert answer["consistency"]["from"] == latest.size - 1
    # a caller that truly holds a larger one (our log cut back to ``latest``): the
    # answer without a proof shows it our log shrank, as it should
    cut_back = nzl.audit.for_partner("JPN", limit=0, known=MAX_INTEGER)
    nzl.people.add("later", party="NZL", clearance="SECRET")
    keys = jpn.federation.log_keys("NZL")
    jpn.audit.witness("NZL", keys, {"checkpoint": nzl.audit.checkpoint().note})
    with pytest.raises(AuditError, match="its log shrank"):
        jpn.audit.witness("NZL", keys, cut_back)
    assert [a[1] for a in jpn.store.alerts()] == ["history-rewritten"]


def test_an_answer_that_says_more_but_does_not_move_on_stops_the_reading(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """NZL answers every request with the same page and "more", whatever leaf it is
    asked to read after (its one event about our objects is from before numbering, so
    no number is given twice). Reading on stops at the second answer with the reason,
    as a pull does for its cursor; before, a search by object (`audit partner
    --object`) or a compromise history check asked for ever."""
    jpn, nzl = jpn_nzl
    at = timestamp(utc_now())
    oid = "indicator--00000000-0000-4000-8000-000000000001"
    body = canonical({"v": 1, "at": at, "kind": "read", "node": "NZL", "originator": "JPN",
                      "objects": [[oid, at]]})
    nzl.store.append_audit([AuditEvent(at, "read", body, None, None, "JPN", (oid,))])
    leaf = nzl.store.audit_size() - 1
    calls = 0
    real = nzl.audit.for_partner

    def same_page(party: str, after: int, limit: int, known: int) -> dict[str, Any]:
        nonlocal calls
        calls += 1  # and, failing, stops after 25: the test must end
        answer = real(party, after=-1, limit=limit, known=known)
        return answer if calls >= 25 else {**answer, "more": True}

    monkeypatch.setattr(nzl.audit, "for_partner", same_page)
    with serving_federation(jpn), serving_federation(nzl):
        courier = Courier(jpn)
        try:
            for search in ({"objects": (oid,)}, {"before": 10**6}):
                calls = 0
                with pytest.raises(AuditError, match="NZL's audit answer says there is more, "
                                   "but does not move on from leaf"):
                    courier.partner_events("NZL", limit=10**6, **search)
                assert calls <= 2  # the second page, or the first, past the leaf kept
        finally:
            courier.stop()
    assert [k.index for k in jpn.store.partner_events("NZL")] == [leaf]  # kept once


def _hostile(answer: Any) -> Any:
    """A stand-in for Courier._request whose audit answers are ``answer(real answer)``:
    bytes as they are, anything else as Python's json.dumps sends it (Infinity too)."""
    real = Courier._request

    def request(self: Courier, peer: Any, method: str, target: str,
                body: bytes = b"") -> httpx.Response:
        response = real(self, peer, method, target, body)
        if not target.startswith("/federation/audit"):
            return response
        made = answer(response.json())
        return httpx.Response(200, content=made if isinstance(made, bytes)
                              else json.dumps(made).encode(), request=response.request)

    return request


def _infinite(answer: dict) -> dict:
    answer["events"][0]["index"] = float("inf")  # json.dumps sends it as Infinity
    return answer


@pytest.mark.parametrize(("answer", "problem"), [
    (lambda a: [a], "NZL's audit answer is not a JSON object"),
    (_infinite, "NZL's answer to the audit request is refused: invalid JSON: Infinity is "
                "not a JSON number"),
    (lambda a: b"[" * 100_000 + b"]" * 100_000,
     "NZL's answer to the audit request is refused: invalid JSON: nesting is 100000 "
     "levels deep"),
], ids=["an array", "an index of Infinity", "nested 100000 deep"])
def test_a_hostile_audit_answer_is_refused_with_the_reason_not_a_crash(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch, answer: Any,
        problem: str) -> None:
    """Whatever NZL answers, asking it is refused with an AuditError saying what was
    wrong: `audit partner` prints one line (exit status 2, no traceback) and the watch
    logs it as it logs any answer it refuses (once, then at debug), not
    log.exception every round. Nothing is kept, nothing alerted."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=1):
        monkeypatch.setattr(Courier, "_request", _hostile(answer))
        courier = Courier(jpn)
        try:
            with pytest.raises(AuditError, match=re.escape(problem)):
                courier.watch_once("NZL")
        finally:
            courier.stop()
        result = CliRunner().invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL"])
    assert result.exit_code == 2, (result.output, result.exception)  # one line, no traceback
    assert isinstance(result.exception, SystemExit), result.exception
    assert problem in " ".join(result.output.split()), result.output
    assert not jpn.store.partner_events("NZL") and not jpn.store.alerts()


@pytest.mark.parametrize("event", [
    pytest.param(lambda body: {"index": float("inf"), "body": body, "proof": []},
                 id="an index of Infinity"),
    pytest.param(lambda body: {"index": float("nan"), "body": body, "proof": []},
                 id="an index of NaN"),
])
def test_an_event_index_that_is_not_a_number_is_refused(
        jpn_nzl: tuple[Node, Node], event: Any) -> None:
    """An answer decoded by a laxer reader than the courier's (Python's own json takes
    Infinity and NaN): the event is refused as not verifying, not an OverflowError."""
    jpn, nzl = jpn_nzl
    answer, keys, size, root = _witnessed(jpn, nzl)
    hostile = {**answer, "events": [event(answer["events"][0]["body"])]}
    with pytest.raises(AuditError, match="NZL sent an audit event that does not verify"):
        jpn.audit.check_partner_events("NZL", keys, size, root, hostile, expect=0)


def test_a_signed_event_body_nested_too_deep_is_refused(jpn_nzl: tuple[Node, Node]) -> None:
    """A body NZL signed into its log (here: the one leaf of a tree), nested deeper than
    any reader here decodes: refused as not verifying, not a RecursionError. The answer
    around it is shallow, so reading the answer strictly does not catch it."""
    jpn, nzl = jpn_nzl
    answer, keys, _, _ = _witnessed(jpn, nzl)
    body = "[" * 100_000 + "]" * 100_000
    deep = {**answer, "events": [{"index": 0, "body": body, "proof": []}]}
    with pytest.raises(AuditError, match="does not verify: its body is nested too deep"):
        jpn.audit.check_partner_events("NZL", keys, 1, leaf_hash(body.encode()), deep,
                                       expect=0)


# -- completeness: numbered events and a signed count ---------------------------------------


@contextlib.contextmanager
def _shared(jpn: Node, nzl: Node, reads: int) -> Iterator[dict]:
    """Both nodes serving; a JPN object pushed to NZL and read there ``reads`` times."""
    secret = publish(jpn, "for NZ", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        _read(nzl, secret, reads)
        yield secret


def _watched(jpn: Node, nzl: Node, reads: int) -> None:
    """A JPN object read at NZL ``reads`` times, and JPN's watch of NZL's log run once."""
    with _shared(jpn, nzl, reads=reads):
        courier = Courier(jpn)
        try:
            courier.watch_once("NZL")
        finally:
            courier.stop()


def _read(nzl: Node, obj: dict, times: int) -> None:
    analyst = nzl.people.as_person("analyst")
    for _ in range(times):
        nzl.find(analyst, nzl.default_collection().collection_id, Query(ids=(obj["id"],)),
                 via="object")


def test_the_answer_is_shown_complete_by_its_numbers_and_a_signed_count(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=4):
        courier = Courier(jpn)
        try:
            first = courier.partner_audit("NZL", limit=2)
            rest = courier.partner_audit("NZL", after=first.events[-1]["index"],
                                         expect=first.expect)
        finally:
            courier.stop()
        result = CliRunner().invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL"])
    assert first.more and first.expect == 2 and not rest.more
    events = first.events + rest.events
    count, _ = nzl.store.audit_numbered("JPN", rest.size)
    assert [e["seq"] for e in events] == list(range(count)) and count >= 5
    assert rest.expect == count
    assert result.exit_code == 0, result.output
    assert f"Complete: NZL signed that its log held {count} numbered event(s)" \
        in result.output
    assert not jpn.store.alerts()


def test_audit_partner_cut_short_by_limit_says_so(jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=3):
        result = CliRunner().invoke(main, ["audit", "partner", str(jpn.config.dir), "NZL",
                                           "--limit", "2"])
    assert result.exit_code == 0, result.output
    assert "Only the first 2: NZL holds more (raise --limit)." in result.output
    assert "Complete" not in result.output


def test_audit_partner_narrowed_by_object_and_kind_still_checks_every_event(
        jpn_nzl: tuple[Node, Node]) -> None:
    """--object and --kind show only what matches; the statement that none is left out
    still covers every event, so a row deleted here outside the filter is still seen."""
    jpn, nzl = jpn_nzl
    other = publish(jpn, "also for NZ", "秘", ("NZL",))
    with _shared(jpn, nzl, reads=2) as secret:
        _read(nzl, other, 3)
        nzl.find(nzl.people.as_person("low"), nzl.default_collection().collection_id,
                 Query(ids=(secret["id"],)), via="object")  # a denial
        run = CliRunner()
        node = str(jpn.config.dir)
        about = run.invoke(main, ["audit", "partner", node, "NZL", "--object", other["id"]])
        reads = run.invoke(main, ["audit", "partner", node, "NZL", "--kind", "read",
                                  "--object", secret["id"], "--json"])
        first = run.invoke(main, ["audit", "partner", node, "NZL", "--kind", "read",
                                  "--limit", "1"])
    every = [json.loads(e.body) | {"index": e.index}
             for e in nzl.store.find_audit(AuditFilter(originator="JPN"))]
    assert about.exit_code == 0, about.output
    want = [e for e in every if other["id"] in objects_named(e)]
    assert len(want) >= 4  # its receipt and the three reads
    assert _events(about.output) == [line for line in _events(run.invoke(
        main, ["audit", "partner", node, "NZL", "--kept"]).output)
        if int(line[1:].split()[0]) in {e["index"] for e in want}]
    assert f"{len(want)} event(s) from NZL's log of about {other['id']}" in about.output
    assert (f"Complete: NZL signed that its log held {len(every)} numbered event(s) about "
            f"our objects, and each is here ({len(want)} of them shown).") in about.output
    assert reads.exit_code == 0, reads.output
    shown = [json.loads(line) for line in reads.output.splitlines()]
    assert [e["index"] for e in shown] == [
        e["index"] for e in every if e["kind"] == "read" and secret["id"] in objects_named(e)]
    assert len(shown) == 2
    assert first.exit_code == 0, first.output
    assert len(_events(first.output)) == 1
    assert "Only the first 1: NZL holds more (raise --limit)." in first.output
    # a row deleted here that the filter does not show still makes the answer incomplete
    denial = next(e for e in every if e["kind"] == "deny")
    assert other["id"] not in objects_named(denial)
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
        c.execute(f"DELETE FROM partner_events WHERE party = 'NZL' AND leaf = "  # noqa: S608
                  f"{denial['index']}")
    for command in (["audit", "partner", node, "NZL", "--kind", "reads"],
                    ["audit", "show", node, "--kind", "reads"]):  # a kind that is not one
        wrong = run.invoke(main, command)
        assert wrong.exit_code == 2 and "'reads' is not one of" in wrong.output
    stranger = run.invoke(main, ["audit", "partner", node, "AUS", "--kept"])
    assert stranger.exit_code == 2 and "AUS is not a pinned partner, and nothing of its " \
        "audit events is kept here" in stranger.output, stranger.output
    for narrowed in (["--kind", "read"], ["--object", other["id"]]):
        gap = run.invoke(main, ["audit", "partner", node, "NZL", "--kept", *narrowed])
        assert gap.exit_code == 1 and "NOT COMPLETE: 1 numbered event(s)" in gap.output
        assert _events(gap.output) == _events(about.output if "--object" in narrowed
                                              else gap.output)


def _asked(courier: Courier) -> list[str]:
    """The targets ``courier`` asks its partners for from now on, in order."""
    asked: list[str] = []
    fetch = courier._fetch

    def counting(peer, target, what):  # type: ignore[no-untyped-def]
        asked.append(target)
        return fetch(peer, target, what)

    courier._fetch = counting  # type: ignore[method-assign]
    return asked


def _answering(courier: Courier, change: Any) -> None:
    """What arrives from NZL's audit endpoint goes through ``change`` first: a partner
    (or an insider at it, holding its key) leaving events out of its answer."""
    fetch = courier._fetch

    def altered(peer, target, what):  # type: ignore[no-untyped-def]
        answer = fetch(peer, target, what)
        if target.startswith("/federation/audit") and "limit=0" not in target:
            change(answer)
        return answer

    courier._fetch = altered  # type: ignore[method-assign]


def _recount(nzl: Node, answer: dict, less: int) -> None:
    """Sign, with NZL's key, a count ``less`` below the true one."""
    origin = nzl.audit.origin
    size, (party, _, count) = parse_count(answer["count"][: answer["count"].rfind("\n\n") + 1],
                                          origin)
    answer["count"] = sign_note(count_text(origin, party, size, count - less), origin,
                                nzl.signing_key)


@pytest.mark.parametrize(("change", "problem"), [
    (lambda a: a["events"].pop(1), "sent event .* numbered 2 among its events about JPN's "
                                   "objects, where 1 was next"),
    (lambda a: a["events"].pop(), "NZL signed that 5 of its events about JPN's objects are "
                                  "numbered in its log, and sent them numbered up to 3"),
], ids=["a middle one", "the last one"])
def test_an_event_left_out_of_the_answer_is_caught_and_alerted(
        jpn_nzl: tuple[Node, Node], change: Any, problem: str) -> None:
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=4):
        courier = Courier(jpn)
        _answering(courier, change)
        try:
            with pytest.raises(AuditError, match=problem):
                courier.partner_audit("NZL")
        finally:
            courier.stop()
    ((_, kind, party, detail, _),) = jpn.store.alerts()
    assert kind == "events-withheld" and party == "NZL" and "left events" in detail
    (event,) = jpn.store.find_audit(AuditFilter(kinds=("alert",), party="NZL"))
    assert json.loads(event.body)["alert"] == "events-withheld"
    jpn.audit.checkpoint()  # the alert's evidence is an event like any other
    assert jpn.audit.verify().problems == ()


def test_an_insider_hiding_the_last_event_is_caught_when_the_next_is_logged(
        jpn_nzl: tuple[Node, Node]) -> None:
    """An insider at NZL, holding its key, leaves the newest read of JPN's object out and
    signs a count one lower: nothing shows yet. Once NZL logs another event about JPN's
    objects, its number is one past the hidden one, and the gap shows."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=2) as secret:
        hidden = nzl.store.audit_numbered("JPN")[1]

        def hide(answer: dict) -> None:
            answer["events"] = [e for e in answer["events"] if e["index"] != hidden]
            if answer["events"][-1]["index"] < hidden:
                _recount(nzl, answer, 1)

        courier = Courier(jpn)
        _answering(courier, hide)
        try:
            shown = courier.partner_audit("NZL")
            assert hidden not in [e["index"] for e in shown.events] and not jpn.store.alerts()
            _read(nzl, secret, 1)
            with pytest.raises(AuditError, match="numbered 3 .* where 2 was next"):
                courier.partner_audit("NZL")
        finally:
            courier.stop()
    assert [a[1] for a in jpn.store.alerts()] == ["events-withheld"]


def test_a_count_missing_forged_or_for_another_party_is_refused(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    answer, keys, size, root = _witnessed(jpn, nzl)
    got = jpn.audit.check_partner_events("NZL", keys, size, root, answer, expect=0)
    events, expect = got.events, got.expect
    assert events and expect == len(events)
    origin = nzl.audit.origin
    other = Ed25519PrivateKey.generate()
    for changed, problem in [
            ({"count": None}, "no signed count"),
            ({"count": sign_note(count_text(origin, "JPN", size, expect), origin, other)},
             "the signed count is not validly signed"),
            ({"count": sign_note(count_text(origin, "AUS", size, expect), origin,
                                 nzl.signing_key)}, "about AUS's objects"),
            ({"count": sign_note(count_text(origin, "JPN", size - 1, expect), origin,
                                 nzl.signing_key)}, f"in its tree of {size - 1}"),
            ({"count": answer["checkpoint"]}, "the signed count is malformed"),
            ({"count": sign_note(count_text(origin, "JPN", size, 2**63 + size), origin,
                                 nzl.signing_key)},  # past what a store counts, too
             f"NZL signed that {2**63 + size} of its events about JPN's objects are in its "
             f"tree of {size} events: more than the tree holds")]:
        with pytest.raises(AuditError, match=problem):
            jpn.audit.check_partner_events("NZL", keys, size, root, {**answer, **changed},
                                           expect=0)
    assert not jpn.store.alerts()  # none of these is evidence against NZL


# -- the watch: every gossip round checks the new events ------------------------------------


@pytest.mark.parametrize("hidden", ["a middle one", "the newest"])
def test_the_watch_alerts_a_withheld_event_once_and_reads_on(
        jpn_nzl: tuple[Node, Node], hidden: str) -> None:
    """Each round reads on from where the last stopped. An event NZL leaves out is
    alerted in the round that meets the gap, once; the rounds after go on past it."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=0) as secret:
        courier = Courier(jpn)
        try:
            courier.watch_once("NZL")
            after, expect = jpn.store.partner_audit_cursor("NZL")
            assert (after, expect) == (nzl.store.audit_numbered("JPN")[1], 1)
            _read(nzl, secret, 3)
            left_out = nzl.store.find_audit(AuditFilter(originator="JPN"))[
                2 if hidden == "a middle one" else -1].index
            _answering(courier, lambda a: a.__setitem__(
                "events", [e for e in a["events"] if e["index"] != left_out]))
            moves = len(_recorded(jpn))
            with pytest.raises(EventsWithheld):
                courier.watch_once("NZL")
            gap = _recorded(jpn)  # the move past the gap is recorded too
            assert len(gap) == moves + 1 and \
                (gap[-1]["after"], gap[-1]["expect"]) == jpn.store.partner_audit_cursor("NZL")
            _read(nzl, secret, 2)
            for _ in range(2):  # past the gap: nothing more to alert
                courier.watch_once("NZL")
        finally:
            courier.stop()
    assert [a[1] for a in jpn.store.alerts()] == ["events-withheld"]
    count, newest = nzl.store.audit_numbered("JPN")
    assert jpn.store.partner_audit_cursor("NZL") == (newest, count)
    # the number left out is not kept, and the alert says why: this node's evidence is whole
    keys = jpn.federation.log_keys("NZL")
    assert jpn.audit.check_kept("NZL", keys) == (count - 1, [])
    run, node = CliRunner(), str(jpn.config.dir)
    shown = run.invoke(main, ["audit", "partner", node, "NZL", "--kept"])
    assert shown.exit_code == 1 and "NOT COMPLETE: 1 numbered event(s) about our objects " \
        "are not here: NZL left them out of its answers (alerted as events-withheld)" in \
        " ".join(shown.output.split()), shown.output
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
        c.execute("DELETE FROM partner_events WHERE seq = 1")  # noqa: S608
    assert jpn.audit.check_kept("NZL", keys) == (count - 2, [
        "NZL's event(s) about our objects numbered 1 are not kept here: no "
        "events-withheld alert says NZL left them out: they were deleted from this node's "
        "evidence"])
    found = Courier(jpn).partner_events("NZL", limit=100, read_on=False)
    assert (found.missing, found.alerted) == (2, 1)
    shown = run.invoke(main, ["audit", "partner", node, "NZL", "--kept"])
    assert shown.exit_code == 1 and "NOT COMPLETE: 2 numbered event(s) about our objects " \
        "are not here: NZL left 1 of them out of its answers (alerted as events-withheld); " \
        "no alert covers the other 1: they were deleted from this node's evidence" in \
        " ".join(shown.output.split()), shown.output


def test_a_count_below_the_numbers_sent_is_alerted_once(jpn_nzl: tuple[Node, Node]) -> None:
    """A count lower than the numbers NZL already proved is its own signed statement
    against its log: alerted the first round it is met, not every round after."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=2):
        courier = Courier(jpn)
        try:
            courier.watch_once("NZL")
            _answering(courier, lambda a: _recount(nzl, a, 2))
            for _ in range(3):
                with pytest.raises(EventsWithheld, match="signed that 1 of"):
                    courier.watch_once("NZL")
        finally:
            courier.stop()
    assert [a[1] for a in jpn.store.alerts()] == ["events-withheld"]
    assert jpn.store.partner_audit_cursor("NZL")[1] == 3


def test_serve_s_courier_watches_each_partner(jpn_nzl: tuple[Node, Node]) -> None:
    """`serve`'s watch checks NZL's events about JPN's objects; `peer list` shows how far
    and when."""
    jpn, nzl = jpn_nzl
    run = CliRunner()
    listed = run.invoke(main, ["peer", "list", str(jpn.config.dir)])
    assert listed.exit_code == 0 and "not yet" in listed.output, listed.output
    with _shared(jpn, nzl, reads=1):
        want = nzl.store.audit_numbered("JPN")
        courier = Courier(jpn, interval=0.05, gossip_interval=0.05)
        courier.start()
        try:
            deadline = time.monotonic() + 20
            while jpn.store.partner_audit_cursor("NZL") != (want[1], want[0]):
                assert time.monotonic() < deadline, jpn.store.partner_audit_cursor("NZL")
                time.sleep(0.05)
        finally:
            courier.stop()
    assert not jpn.store.alerts()
    watch = jpn.store.partner_audit_watch("NZL")
    assert watch is not None and watch[:2] == (want[1], want[0])
    size = max(h[0] for h in jpn.store.partner_checkpoints("NZL"))
    listed = run.invoke(main, ["peer", "list", str(jpn.config.dir)])
    assert listed.exit_code == 0, listed.output
    (row,) = [line for line in listed.output.splitlines() if "to leaf" in line]
    assert row.split()[:7] == ["│", "NZL", "│", f"{size:,}", "events", "│", f"{want[0]:,},"]
    assert f"to leaf {want[1]:,}" in row and watch[2][:19] in row


def test_the_watch_does_not_warn_again_of_a_partner_the_courier_cannot_reach(
        jpn_nzl: tuple[Node, Node], caplog: pytest.LogCaptureFixture) -> None:
    """At start, partners starting beside this node are not listening yet; the courier's
    loop says so with its retries, and the watch does not say it again."""
    jpn, _ = jpn_nzl
    caplog.set_level(logging.DEBUG, logger="intelpact.courier")
    courier = Courier(jpn, interval=0.05, gossip_interval=0.05)
    courier.start()
    try:
        deadline = time.monotonic() + 10
        while not any("audit gossip with NZL" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        courier.stop()
    gossip = [r for r in caplog.records if "audit gossip with NZL" in r.getMessage()]
    assert all(r.levelno == logging.DEBUG and "unreachable" in r.getMessage()
               for r in gossip), [(r.levelname, r.getMessage()) for r in gossip]


def test_the_watch_logs_the_same_failure_once_until_a_round_succeeds(
        jpn_nzl: tuple[Node, Node], caplog: pytest.LogCaptureFixture) -> None:
    """A partner whose answers carry no signed count (an older version) fails every
    round the same way: said as an error once, then at debug; said again once a round
    has succeeded in between."""
    jpn, nzl = jpn_nzl
    caplog.set_level(logging.DEBUG, logger="intelpact.courier")
    older = threading.Event()
    older.set()
    with _shared(jpn, nzl, reads=1):
        courier = Courier(jpn, interval=0.05, gossip_interval=0.05)
        _answering(courier, lambda a: a.pop("count", None) if older.is_set() else None)

        def errors() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.levelno == logging.ERROR
                    and "audit gossip with NZL" in r.getMessage()]

        def rounds(n: int) -> None:  # n more failed rounds, at debug or error
            start = len([r for r in caplog.records if "no signed count" in r.getMessage()])
            deadline = time.monotonic() + 20
            while len([r for r in caplog.records
                       if "no signed count" in r.getMessage()]) < start + n:
                assert time.monotonic() < deadline
                time.sleep(0.02)

        courier.start()
        try:
            rounds(4)
            assert len(errors()) == 1 and "no signed count" in errors()[0].getMessage()
            older.clear()  # a round succeeds: the next failure is news again
            want = nzl.store.audit_numbered("JPN")
            deadline = time.monotonic() + 20
            while jpn.store.partner_audit_cursor("NZL") != (want[1], want[0]):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            older.set()
            rounds(2)
        finally:
            courier.stop()
    assert len(errors()) == 2


def test_a_partner_dribbling_its_audit_answer_cannot_hold_the_watch_for_ever(
        jpn_nzl: list[Node]) -> None:
    """The audit watch (and the courier's loop, the same way) reads each partner in turn,
    in one thread, with httpx's timeout of 30 s, which bounds each read, not the answer:
    NZL answering the audit request with one byte a second (a valid answer: JSON may
    start with whitespace) held the watch as long as it liked, so no other partner was
    gossiped with, no event left out was alerted and no compromise history was checked.
    An answer is now read whole within the courier's ``answer_seconds`` (here 2 s; the
    answer below takes 300 s), else the partner is unreachable, as one not answering."""
    jpn, nzl = jpn_nzl
    stop = threading.Event()

    async def dribbling(scope: dict, receive: Any, send: Any) -> None:  # type: ignore[type-arg]
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", TAXII.encode())]})
        for _ in range(300):
            if stop.is_set():
                break
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await asyncio.sleep(1)
        await send({"type": "http.response.body", "body": b"{}"})

    done = threading.Event()
    failed: list[Exception] = []

    def watch() -> None:
        with Courier(jpn, answer_seconds=2) as courier:
            try:
                courier.watch_once("NZL", seconds=1)
            except Exception as exc:  # noqa: BLE001 - what the watch's round says
                failed.append(exc)
        done.set()

    with _in_thread(dribbling, federation_server_options(nzl)):
        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        held = not done.wait(120)  # far short of the 300 s the answer would take
        stop.set()
        done.wait(15)
    assert not held, "the audit watch was still reading NZL's dribbled answer"
    (exc,) = failed
    assert isinstance(exc, Unreachable), exc
    assert "NZL's answer to GET /federation/audit was not read whole within 2 s" in str(exc)


def test_a_long_watch_holds_up_no_push(jpn_nzl: tuple[Node, Node]) -> None:
    """The watch reads in a thread of its own: while it is held up reading a partner's
    events (a backlog, a slow partner), what JPN publishes still reaches NZL at once."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=0):
        courier = Courier(jpn, interval=0.05, gossip_interval=0.05)
        watching, release = threading.Event(), threading.Event()
        audit = courier.partner_audit

        def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
            watching.set()
            release.wait(30)
            return audit(*args, **kwargs)

        courier.partner_audit = slow  # type: ignore[method-assign]
        courier.start()
        try:
            assert watching.wait(10)
            obj = publish(jpn, "while the watch reads", "極秘", ("NZL",))
            deadline = time.monotonic() + 10
            while not nzl.store.held([obj["id"]]):
                assert time.monotonic() < deadline, "the push waited for the watch"
                time.sleep(0.05)
        finally:
            release.set()
            courier.stop()


NAUGHTY = json.loads((Path(__file__).parents[1] / "data" / "json" / "naughty-strings" /
                      "blns.json").read_text())


def test_hostile_counts_are_refused_with_the_reason(jpn_nzl: tuple[Node, Node]) -> None:
    """Whatever NZL signs as a count (every naughty string in each line, numbers with a
    sign, leading zeroes or 100 digits), the answer is AuditError, never a crash; an
    alert only for a well-formed count of the wrong number (the naughty "0")."""
    jpn, nzl = jpn_nzl
    answer, keys, size, root = _witnessed(jpn, nzl)
    origin = nzl.audit.origin
    good = count_text(origin, "JPN", size, 1).split("\n")
    texts = [good[:i] + [bad] + good[i + 1:] for i in range(5)
             for bad in [*NAUGHTY[:200], "-1", "01", "1" * 100, "1.0", " 1"]]
    refused = 0
    for lines in texts:
        text = "\n".join(lines)
        try:
            note = sign_note(text, origin, nzl.signing_key)
        except Exception:  # noqa: BLE001 - not a note at all: nothing to send
            continue
        try:
            jpn.audit.check_partner_events("NZL", keys, size, root,
                                           {**answer, "count": note}, expect=0)
        except AuditError:
            refused += 1
    assert refused > 900
    assert [a[3].split(":")[0] for a in jpn.store.alerts()] == [
        "NZL signed that 0 of its events about JPN's objects are numbered in its log, and "
        "sent them numbered up to 0"]


def test_the_watch_asks_for_smaller_pages_and_gossips_past_an_event_too_large(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Answers are read only within this node's max_content_length: a page too large is
    asked for again at half as many events; one event past the limit stops the watch
    with the reason (an AuditError, which backs nothing off), and the checkpoint is
    still witnessed."""
    jpn, nzl = jpn_nzl
    with _shared(jpn, nzl, reads=6) as secret:
        count, newest = nzl.store.audit_numbered("JPN")
        jpn.config = dataclasses.replace(jpn.config, max_content_length=3 * 1024)
        courier = Courier(jpn)
        asked = _asked(courier)
        try:
            courier.watch_once("NZL", seconds=30)
            assert jpn.store.partner_audit_cursor("NZL") == (newest, count)
            limits = [int(t.split("limit=")[1].split("&")[0]) for t in asked]
            assert limits[0] == 500 and min(limits) < count, asked
            _read(nzl, secret, 1)
            jpn.config = dataclasses.replace(jpn.config, max_content_length=700)
            held = len(jpn.store.partner_checkpoints("NZL"))
            with pytest.raises(AuditError, match="not checked past leaf") as info:
                courier.watch_once("NZL")
        finally:
            courier.stop()
    assert "max_content_length" in (info.value.hint or "")
    assert jpn.store.partner_audit_cursor("NZL") == (newest, count)  # where it stopped
    assert len(jpn.store.partner_checkpoints("NZL")) > held  # gossip went on
    assert not jpn.store.alerts()


@pytest.mark.parametrize(("covers", "left"), [
    ([], [(3, 9)]),
    ([(3, 9)], []),
    ([(0, 20)], []),
    ([(4, 6)], [(3, 4), (6, 9)]),
    ([(5, 7), (2, 4), (6, 8)], [(4, 5), (8, 9)]),
    ([(0, 3), (9, 12)], [(3, 9)]),
    ([(1, 5), (8, 9)], [(5, 8)]),
])
def test_numbers_left_out_and_alerted_are_taken_from_those_missing(
        covers: list[tuple[int, int]], left: list[tuple[int, int]]) -> None:
    assert list(_uncovered((3, 9), covers)) == left


@pytest.mark.parametrize(("expect", "seqs", "gaps", "after"), [
    (0, [0, 1, 2], [], 3),
    (0, [1, 2, 5, None, 6], [(0, 1), (3, 5)], 7),
    (None, [4, 5, 8], [(6, 8)], 9),  # from the first numbered one
    (None, [None, None], [], None),
    (3, [2, 3, 9], [(4, 9)], 10),  # a number gone back does not open a gap twice
])
def test_the_numbers_missing_among_kept_events(
        expect: int | None, seqs: list[int | None], gaps: list[tuple[int, int]],
        after: int | None) -> None:
    kept = [KeptEvent(leaf, seq, "{}", b"", 1) for leaf, seq in enumerate(seqs)]
    assert number_gaps(kept, expect) == (gaps, after)

