"""Compromise reports between two nodes on 127.0.0.1 over real mutual TLS: a report at NZL
about a JPN object reaches JPN with the access history, the acknowledgement and closure
flow back, overdue reports are flagged, forgeries are refused, and a report filed while
JPN is down is delivered by the courier's retry loop."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from test_atomic_audit import refusing
from test_federation import publish, push
from test_key_rotation import _sql

from intelpact.crypto.checkpoint import format_checkpoint, sign_note
from intelpact.crypto.merkle import leaf_hash
from intelpact.interfaces.cli import main
from intelpact.services.audit import (
    OPERATOR,
    AuditError,
    EventsWithheld,
    canonical,
    log_origin,
    operator,
)
from intelpact.services.compromise import MAX_TEXT, CompromiseError
from intelpact.services.courier import HELD_TRIES, BadAnswer, Courier, Unreachable
from intelpact.services.federation import MAX_NAMED, FederationError
from intelpact.services.node import Node
from intelpact.store.base import (
    AuditFilter,
    CompromiseMessage,
    CompromiseRecord,
    Query,
    StoreError,
    timestamp,
    utc_now,
)

from helpers import DEEP, partner_answers, serving_federation


@pytest.fixture()
def jpn_nzl(jpn_nzl: list[Node]) -> list[Node]:
    """With NZL's analyst, cleared SECRET and NZEO."""
    jpn_nzl[1].people.add("analyst", party="NZL", clearance="SECRET", caveats=["NZEO"])
    return jpn_nzl


def _ago(hours: float) -> str:
    return timestamp(utc_now() - dt.timedelta(hours=hours))


def _deliver(node: Node, party: str) -> int:
    with Courier(node) as courier:
        return courier.deliver_compromise(party)


def _gossip(node: Node, party: str) -> None:
    with Courier(node) as courier:
        courier.gossip_once(party)


def _post(sender: Node, receiver: Node, message: CompromiseMessage, held: int = 0,
          status: int = 200) -> dict[str, Any]:
    """POST ``message`` as the courier would, claiming the receiver holds ``held``."""
    with Courier(sender) as courier:
        peer = sender.federation.peers()[receiver.party]
        response = courier._request(peer, "POST", "/federation/compromise",
                                    sender.compromise.envelope(message, held))
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _shared_and_read(jpn: Node, nzl: Node) -> str:
    """A JPN object at NZL, read there by the analyst (NZL must be serving)."""
    secret = publish(jpn, "for NZ", "極秘", ("NZL",))
    push(jpn, "NZL")
    nzl.find(nzl.people.as_person("analyst"), nzl.default_collection().collection_id,
             Query(ids=(secret["id"],)), via="object")
    return str(secret["id"])


def test_a_report_reaches_the_originator_with_the_access_history_and_is_acknowledged(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
        (filed,) = nzl.compromise.file([oid], what="laptop stolen from a car",
                                       discovered=_ago(1), occurred=_ago(3),
                                       officer=nzl.people.as_person("officer"))
        assert filed.direction == "outgoing" and filed.originator == "JPN"
        assert _deliver(nzl, "JPN") == 1
        sent = nzl.store.compromise_report(filed.report_id)
        assert sent is not None and sent.delivered is not None

        got = jpn.store.compromise_report(filed.report_id)
        assert got is not None and got.direction == "incoming" and got.reporter == "NZL"
        assert got.deadline == filed.deadline == jpn.compromise.deadline(got.discovered)
        # the access history: NZL's events about the object, proven in NZL's signed log
        size, events = jpn.compromise.history(got)
        assert size > 0 and all(e["node"] == "NZL" and e["originator"] == "JPN"
                                for e in events)
        (read,) = [e for e in events if e["kind"] == "read"]
        (at_nzl,) = nzl.store.find_audit(AuditFilter(kinds=("read",), originator="JPN"))
        assert read["index"] == at_nzl.index
        assert read["person"] == {"id": nzl.audit.pseudonyms.of("analyst", "JPN"),
                                  "nationality": "NZL", "clearance": "SECRET"}
        assert "receive" in {e["kind"] for e in events}
        assert jpn.store.partner_checkpoints("NZL")  # witnessed: also gossip
        assert [a[1] for a in jpn.store.alerts()] == ["compromise-report"]
        # both sides audited it, with party and originator
        (mine,) = nzl.store.find_audit(AuditFilter(kinds=("compromise-report",)))
        (theirs,) = jpn.store.find_audit(AuditFilter(kinds=("compromise-report",)))
        assert (mine.party, mine.originator) == ("JPN", "JPN")
        assert (theirs.party, theirs.originator) == ("NZL", "JPN")
        assert json.loads(mine.body)["person"]["id"] == nzl.audit.pseudonyms.of("officer",
                                                                                "JPN")

        jpn.compromise.acknowledge(filed.report_id, note="investigating",
                                   officer=jpn.people.as_person("officer"))
        assert _deliver(jpn, "NZL") == 1
        acked = nzl.store.compromise_report(filed.report_id)
        assert acked is not None and acked.acknowledged is not None
        assert nzl.compromise.status(acked) == "acknowledged"
        assert json.loads(acked.ack_body or "{}")["note"] == "investigating"
        assert nzl.store.find_audit(AuditFilter(kinds=("compromise-ack",), party="JPN"))
        assert jpn.store.find_audit(AuditFilter(kinds=("compromise-ack",), party="NZL"))
        assert not nzl.compromise.flag(acked).state and not jpn.compromise.flag(
            jpn.compromise.get(filed.report_id)).state
        # delivered again (at least once): stored once, answered with a receipt again
        (message,) = nzl.store.compromise_messages(filed.report_id)
        nzl.compromise.delivered("JPN", message, _post(nzl, jpn, message))
        assert len(jpn.store.compromise_reports()) == 1
        # NZL rotates its key, then closes: the announcement goes first, the closure
        # (signed with the new key) is accepted, and the report signed before still verifies
        nzl.rotate_key()
        nzl.compromise.close(filed.report_id, note="contained")
        assert _deliver(nzl, "JPN") == 1
        closed = jpn.compromise.get(filed.report_id)
        assert closed.closed is not None and jpn.compromise.history(closed)[1]
    # what each side shows of the report, received or sent, is what its events record
    assert jpn.check_kept()[1] == nzl.check_kept()[1] == []


def test_the_commands_report_acknowledge_close_list_and_show(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    run = CliRunner()
    nz_own = publish(nzl, "nz own", "SECRET", ("JPN",))
    with serving_federation(jpn), serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
        filed = run.invoke(main, ["compromise", "report", str(nzl.config.dir), "--object", oid,
                                  "--object", nz_own["id"], "--what", "USB drive lost",
                                  "--discovered", _ago(2), "--as", "officer"])
        assert filed.exit_code == 0, filed.output
        assert "to JPN: 1 object(s)" in filed.output
        assert "delivered: JPN's signed receipt verified" in filed.output
        assert "Recorded report" in filed.output  # the NZL object: recorded locally
        (report,) = jpn.store.compromise_reports()
        rid = report.report_id

        listed = run.invoke(main, ["compromise", "list", str(jpn.config.dir)])
        assert listed.exit_code == 0, listed.output
        lines = listed.output.strip().splitlines()
        assert lines[0] == lines[-1] and "極秘" in lines[0]  # JPN's words for its object
        assert f"{rid}  from NZL  open" in listed.output and "OVERDUE" not in listed.output

        shown = run.invoke(main, ["compromise", "show", str(jpn.config.dir), rid])
        assert shown.exit_code == 0, shown.output
        assert "USB drive lost" in shown.output and "read" in shown.output
        assert "(NZL, SECRET)" in shown.output and "analyst" not in shown.output
        assert "each proven included in its signed checkpoint" in shown.output
        at_nzl = run.invoke(main, ["compromise", "show", str(nzl.config.dir), rid])
        assert "by analyst (NZL, SECRET)" in at_nzl.output  # NZL resolves its own people

        acked = run.invoke(main, ["compromise", "ack", str(jpn.config.dir), rid, "--note",
                                  "received; assessing", "--as", "officer"])
        assert acked.exit_code == 0, acked.output
        assert "delivered: NZL's signed receipt verified" in acked.output
        again = run.invoke(main, ["compromise", "ack", str(jpn.config.dir), rid])
        assert again.exit_code == 2 and "was acknowledged at" in again.stderr

        closed = run.invoke(main, ["compromise", "close", str(nzl.config.dir), rid, "--note",
                                   "drive recovered, encrypted"])
        assert closed.exit_code == 0 and "delivered" in closed.output, closed.output
    at_jpn = jpn.compromise.get(rid)
    assert at_jpn.closed is not None and jpn.compromise.status(at_jpn) == "closed"
    assert json.loads(at_jpn.close_body or "{}")["by"] == {"role": "operator"}
    assert jpn.store.find_audit(AuditFilter(kinds=("compromise-close",), party="NZL"))
    listed = run.invoke(main, ["compromise", "list", str(nzl.config.dir)])
    assert f"{rid}  to JPN  closed" in listed.output
    assert "local (this node's own objects)  open" in listed.output


def test_the_operator_is_told_to_the_originator_by_pseudonym_never_by_account_name(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """A report filed and closed by NZL's operator (no --as): the events JPN is shown
    name the operator by pseudonym, as JPN is shown people, never by the OS account, in
    its partner audit and in a later report's access history; NZL's own `audit show`
    names the operator running it again. The events' ``actor`` was the account name."""
    jpn, nzl = jpn_nzl
    monkeypatch.setattr(getpass, "getuser", lambda: "jane.smith")
    run = CliRunner()
    with serving_federation(jpn), serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
        filed = run.invoke(main, ["compromise", "report", str(nzl.config.dir), "--object",
                                  oid, "--what", "laptop lost", "--discovered", _ago(2)])
        assert filed.exit_code == 0, filed.output
        (first,) = jpn.store.compromise_reports()
        closed = run.invoke(main, ["compromise", "close", str(nzl.config.dir),
                                   first.report_id, "--note", "laptop found"])
        assert closed.exit_code == 0, closed.output
        (second,) = nzl.compromise.file([oid], what="found open", discovered=_ago(1),
                                        actor=operator())
        with Courier(jpn) as courier:
            events = courier.partner_audit("NZL").events
    history = [json.loads(e["body"]) for e in json.loads(second.body)["history"]["events"]]
    pseudonym = nzl.audit.pseudonyms.of(OPERATOR + "jane.smith", "JPN")
    for shown in (events, history):
        acts = {e["kind"]: e.get("actor") for e in shown if e["kind"].startswith("compromise")}
        assert acts["compromise-report"] == acts["compromise-close"] == pseudonym
        assert "jane.smith" not in json.dumps(shown)
    local = run.invoke(main, ["audit", "show", str(nzl.config.dir), "--kind",
                              "compromise-report"])
    assert local.exit_code == 0, local.output
    assert local.output.count("compromise-report  by jane.smith") == 2, local.output


def test_the_originator_checks_that_a_history_left_nothing_out(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """`compromise show --complete` at JPN fetches NZL's partner audit (every event about
    JPN's objects, numbered, none left out) and finds any event about the reported objects
    below the history's checkpoint that the history does not hold."""
    jpn, nzl = jpn_nzl
    run = CliRunner()

    def show(node: Node, rid: str) -> Any:
        return run.invoke(main, ["compromise", "show", str(node.config.dir), rid,
                                 "--complete"])

    with serving_federation(jpn), serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
        other = publish(jpn, "another", "SECRET", ("NZL",))
        push(jpn, "NZL")  # an event about another JPN object: not this report's
        (honest,) = nzl.compromise.file([oid], what="tablet lost", discovered=_ago(1))
        assert _deliver(nzl, "JPN") == 1
        shown = show(jpn, honest.report_id)
        assert shown.exit_code == 0, shown.output
        size, _ = jpn.compromise.history(jpn.compromise.get(honest.report_id))
        assert ("Complete, checked now: NZL's partner audit holds no other event about these "
                f"objects below leaf {size}.") in shown.output and "LEFT OUT" not in shown.output
        at_nzl = show(nzl, honest.report_id)  # the reporter cannot check its own report
        assert at_nzl.exit_code == 2 and "only the originator checks" in at_nzl.stderr

        # a reporter whose history leaves the read out, in a report it signs all the same
        history = nzl.audit.history
        monkeypatch.setattr(nzl.audit, "history", lambda *a, **k: {
            **(h := history(*a, **k)),
            "events": [e for e in h["events"] if json.loads(e["body"])["kind"] != "read"]})
        (quiet,) = nzl.compromise.file([oid], what="phone lost", discovered=_ago(1))
        assert _deliver(nzl, "JPN") == 1
        received = jpn.compromise.get(quiet.report_id)
        size, events = jpn.compromise.history(received)
        assert "read" not in {e["kind"] for e in events}  # each event proven: accepted
        shown = show(jpn, quiet.report_id)
        assert shown.exit_code == 1, shown.output
        assert "LEFT OUT: 1 event(s) of NZL's log" in shown.output
        (read,) = nzl.store.find_audit(AuditFilter(kinds=("read",), originator="JPN"))
        assert f"#{read.index} " in shown.output.split("LEFT OUT")[1]
        assert str(other["id"]) not in shown.output.split("LEFT OUT")[1]
        assert show(jpn, quiet.report_id).exit_code == 1  # shown again: alerted once
        (alert,) = [a for a in jpn.store.alerts() if a[1] == "history-incomplete"]
        assert alert[2] == "NZL" and quiet.report_id in alert[3]
        (evidence,) = [json.loads(e.body) for e in jpn.store.find_audit(
            AuditFilter(kinds=("alert",), party="NZL"))
            if json.loads(e.body)["alert"] == "history-incomplete"]
        assert evidence["indexes"] == [read.index] and evidence["report"] == quiet.report_id
        # the outcome is kept, and each check is audited with it
        checked = jpn.compromise.get(quiet.report_id)
        assert checked.history_checked is not None
        assert checked.history_check == (f"1 event(s) of NZL's log about these objects left "
                                         f"out: leaf {read.index}")
        checks = [json.loads(e.body) for e in jpn.store.find_audit(
            AuditFilter(kinds=("compromise-check",)))]
        assert [(c["report"], c["left_out"]) for c in checks] == [
            (honest.report_id, []), (quiet.report_id, [read.index]),
            (quiet.report_id, [read.index])]
        listed = run.invoke(main, ["compromise", "list", str(jpn.config.dir)])
        assert "history 1 event(s) of NZL's log about these objects left out" in listed.output
        assert "history complete" in listed.output  # the honest report

        # a history cut short (more): only what comes before its last event is owed
        monkeypatch.setattr(nzl.audit, "history", history)
        monkeypatch.setattr("intelpact.services.compromise.HISTORY_LIMIT", 1)
        (short,) = nzl.compromise.file([oid], what="bag lost", discovered=_ago(1))
        assert _deliver(nzl, "JPN") == 1
        shown = show(jpn, short.report_id)
        assert shown.exit_code == 0 and "see `audit partner`" in shown.output, shown.output
        _, (first,) = jpn.compromise.history(jpn.compromise.get(short.report_id))
        assert f"holds no other event about these objects below leaf {first['index'] + 1}." \
            in shown.output  # only up to its last event
    down = show(jpn, short.report_id)  # NZL is not serving: said so, nothing alerted
    assert down.exit_code == 2 and "NZL unreachable" in down.stderr, down.output
    assert [a[1] for a in jpn.store.alerts()].count("history-incomplete") == 1


def test_a_history_is_checked_against_the_events_kept_and_not_past_a_gap(
        jpn_nzl: tuple[Node, Node]) -> None:
    """The check reads NZL's partner audit as JPN's watch keeps it, asking NZL only for
    what came since; where NZL left one of its events about JPN's objects out of its
    audit answers (alerted when the watch met it), the history cannot be shown complete:
    "not checked", with why."""
    jpn, nzl = jpn_nzl
    courier = Courier(jpn)
    asked: list[str] = []
    fetch = courier._fetch
    hide: set[int] = set()

    def withholding(peer, target, what):  # type: ignore[no-untyped-def]
        answer = fetch(peer, target, what)
        asked.append(target)
        if target.startswith("/federation/audit"):
            answer["events"] = [e for e in answer["events"] if e["index"] not in hide]
        return answer

    courier._fetch = withholding  # type: ignore[method-assign]
    try:
        with serving_federation(jpn), serving_federation(nzl):
            oid = _shared_and_read(jpn, nzl)
            courier.watch_once("NZL")  # read and kept
            (honest,) = nzl.compromise.file([oid], what="tablet lost", discovered=_ago(1))
            assert _deliver(nzl, "JPN") == 1
            asked.clear()
            assert courier.check_reports() == 1
            read_after = [t for t in asked if t.startswith("/federation/audit")]
            kept = jpn.store.partner_events("NZL")
            assert read_after and all(f"after={kept[0].index}&" not in t for t in read_after)
            assert (jpn.compromise.get(honest.report_id).history_check or "").startswith(
                "complete")
            nzl.find(nzl.people.as_person("analyst"), nzl.default_collection().collection_id,
                     Query(ids=(oid,)), via="object")  # a read NZL leaves out of its answers
            (read,) = nzl.store.find_audit(AuditFilter(kinds=("read",), originator="JPN"))[-1:]
            hide.add(read.index)
            (quiet,) = nzl.compromise.file([oid], what="phone lost", discovered=_ago(1))
            assert _deliver(nzl, "JPN") == 1
            with pytest.raises(EventsWithheld):  # met now: alerted
                courier.events_before("NZL", read.index + 2)
            with pytest.raises(AuditError, match="1 of NZL's events about our objects below "
                               "leaf .* are not kept here: NZL left them out"):
                courier.events_before("NZL", read.index + 2)  # read past since: kept so
            assert courier.check_reports() == 0  # not checked, and recorded so
    finally:
        courier.stop()
    assert "events-withheld" in [a[1] for a in jpn.store.alerts()]
    outcome = jpn.compromise.get(quiet.report_id).history_check or ""
    assert outcome.startswith("not checked: 1 of NZL's events about our objects below "
                              "leaf"), outcome


def test_serve_checks_each_report_received_once_and_says_why_one_cannot_be(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """The courier's audit watch checks each report received and not checked yet
    (Courier.check_reports): with the reporter down it waits; with it up, the outcome is
    kept and the report is not checked again; a reporter whose audit answer cannot show
    completeness (no signed count: an older version) is recorded "not checked", with
    why."""
    jpn, nzl = jpn_nzl
    run = CliRunner()
    with serving_federation(jpn), serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
        (filed,) = nzl.compromise.file([oid], what="tablet lost", discovered=_ago(1))
        assert _deliver(nzl, "JPN") == 1
    listed = run.invoke(main, ["compromise", "list", str(jpn.config.dir)])
    assert "history not checked yet" in listed.output, listed.output
    with Courier(jpn) as courier:
        assert courier.check_reports() == 0  # NZL is down: not checked, not recorded
        courier.halt()  # serve stopping: a fetch under way stops at the next page
        with pytest.raises(Unreachable, match="stopping"):
            courier.events_before("NZL", 10)
    assert jpn.compromise.get(filed.report_id).history_checked is None

    with serving_federation(jpn), serving_federation(nzl):
        courier = Courier(jpn, gossip_interval=0.05)
        courier.start()  # serve's loops: the watch checks it
        try:
            deadline = time.monotonic() + 15
            while jpn.compromise.get(filed.report_id).history_checked is None:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            courier.stop()
        record = jpn.compromise.get(filed.report_id)
        assert (record.history_check or "").startswith(
            "complete: NZL's partner audit holds no other event about these objects")
        shown = run.invoke(main, ["compromise", "show", str(jpn.config.dir), filed.report_id])
        assert f"history      {record.history_check} (checked " in shown.output, shown.output
        with Courier(jpn) as courier:
            assert courier.check_reports() == 0  # checked once
            answer = nzl.audit.for_partner
            monkeypatch.setattr(nzl.audit, "for_partner", lambda *a, **k: {
                k: v for k, v in answer(*a, **k).items() if k != "count"})
            (older,) = nzl.compromise.file([oid], what="phone lost", discovered=_ago(1))
            assert _deliver(nzl, "JPN") == 1
            assert courier.check_reports() == 0
            assert courier.check_reports() == 0  # recorded: not tried every round
    record = jpn.compromise.get(older.report_id)
    assert (record.history_check or "").startswith(
        "not checked: NZL's audit answer has no signed count"), record.history_check
    assert [json.loads(e.body)["report"] for e in jpn.store.find_audit(AuditFilter(
        kinds=("compromise-check",)))] == [filed.report_id, older.report_id]
    listed = run.invoke(main, ["compromise", "list", str(jpn.config.dir)])
    assert "history not checked: NZL's audit answer has no signed count" in listed.output
    assert not [a for a in jpn.store.alerts() if a[1] == "history-incomplete"]


def test_overdue_reports_are_flagged_and_a_queued_report_is_retried_by_the_courier(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    with serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
    run = CliRunner()
    # JPN is down: the report stays queued; discovered 30 h ago, past the 24 h deadline
    filed = run.invoke(main, ["compromise", "report", str(nzl.config.dir), "--object", oid,
                              "--what", "server breached", "--discovered", _ago(30)])
    assert filed.exit_code == 0, filed.output
    assert "queued: JPN unreachable" in filed.output and "OVERDUE" in filed.output
    listed = run.invoke(main, ["compromise", "list", str(nzl.config.dir)])
    assert "OVERDUE" in listed.output and "not delivered" in listed.output
    assert "report queued (JPN unreachable" in listed.output
    (record,) = nzl.store.compromise_reports()
    assert nzl.compromise.flag(record).state == "overdue"
    with pytest.raises(FederationError, match="unreachable"):
        _deliver(nzl, "JPN")

    with serving_federation(jpn), serving_federation(nzl):
        _gossip(jpn, "NZL")  # JPN holds a checkpoint of NZL's log already
        courier = Courier(nzl, push_interval=0.05)
        courier.start()  # the serve loop: delivers notices first, retries with backoff
        try:
            deadline = time.monotonic() + 15
            while nzl.compromise.get(record.report_id).delivered is None:
                assert time.monotonic() < deadline, nzl.store.compromise_messages()
                time.sleep(0.05)
        finally:
            courier.stop()
    sent = nzl.compromise.get(record.report_id)
    got = jpn.compromise.get(record.report_id)
    assert nzl.compromise.flag(sent).state == "late"  # delivered after the deadline
    assert jpn.compromise.flag(got).state == "overdue"  # not acknowledged by the deadline
    assert "not acknowledged by the deadline" in jpn.compromise.flag(got).reason
    assert all(a[1] != "history-rewritten" for a in jpn.store.alerts())
    listed = run.invoke(main, ["compromise", "list", str(jpn.config.dir)])
    assert "OVERDUE" in listed.output and "1 flagged" in listed.output


def test_forged_misdirected_and_stale_messages_are_refused(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
        (filed,) = nzl.compromise.file([oid], what="suspected leak", discovered=_ago(1))
        (message,) = nzl.store.pending_compromise("JPN", 10)
        signed = json.loads(message.body)

        def variant(**changes: object) -> CompromiseMessage:
            return CompromiseMessage(0, message.report_id, "JPN", "report",
                                     canonical({**signed, **changes}), message.made)

        def resigned(**changes: object) -> CompromiseMessage:
            body = {k: v for k, v in {**signed, **changes}.items()
                    if k not in ("signature", "key_id", "intelpact_compromise")}
            return CompromiseMessage(0, message.report_id, "JPN", "report",
                                     canonical(nzl.compromise._signed(body)), message.made)

        altered = _post(nzl, jpn, variant(what="nothing happened"), status=403)
        assert "does not verify" in altered["description"]
        other = _post(nzl, jpn, resigned(originator="NZL"), status=403)
        assert "not JPN" in other["description"]
        event = signed["history"]["events"][0]
        forged_history = dict(signed["history"], events=[
            dict(event, body=event["body"].replace("NZL", "AUS", 1))])
        forged = _post(nzl, jpn, resigned(history=forged_history), status=403)
        assert "does not verify" in forged["description"]
        late = _post(nzl, jpn, resigned(deadline=_ago(-100)), status=403)
        assert "deadline" in late["description"]
        # fields filing would never have made (found in review: each was stored)
        for changes, said in [
                ({"what": " "}, "does not say what happened"),
                ({"filed": "9999-01-01T00:00:00Z"}, "in the future"),
                ({"discovered": _ago(-2), "deadline": jpn.compromise.deadline(_ago(-2))},
                 "discovered (.*) after the report was filed"),
                ({"occurred": {"a": 1}}, "occurred time is not an RFC 3339"),
                ({"occurred": _ago(0)}, "occurred (.*) after it was discovered"),
                ({"notice_hours": "72"}, "notice hours '72' are not the agreement's")]:
            status = 400 if "RFC 3339" in said else 403  # a time not of its shape
            refusal = _post(nzl, jpn, resigned(**changes), status=status)
            assert re.search(said, refusal["description"]), (changes, refusal)
        assert jpn.store.compromise_reports() == []
        refused = jpn.store.find_audit(AuditFilter(kinds=("refuse",), party="NZL"))
        assert len(refused) == 10

        # JPN gossips, then a report proving consistency from nothing is stale: 409, no alarm
        _gossip(jpn, "NZL")
        nzl.people.add("later", party="NZL", clearance="SECRET")
        _post(nzl, jpn, message, held=0, status=409)
        assert _deliver(nzl, "JPN") == 1  # the courier asks what JPN holds first
        assert all(a[1] != "history-rewritten" for a in jpn.store.alerts())
        # only the originator acknowledges; the reporter may not
        nzl.store.compromise_step(filed.report_id, "ack", timestamp(utc_now()),
                                  canonical(nzl.compromise._signed(
                                      {"type": "ack", "report_id": filed.report_id,
                                       "from": "NZL", "to": "JPN", "at": _ago(0)})), "JPN")
        with pytest.raises(FederationError, match="may not acknowledge"):
            _deliver(nzl, "JPN")
    assert jpn.compromise.get(filed.report_id).acknowledged is None


@pytest.mark.parametrize(("held", "problem"), [
    (DEEP, "invalid JSON: nesting is 100000 levels deep"),
    (b"[0]", "it is not a JSON object"),
    (b'{"held": Infinity}', "invalid JSON: Infinity is not a JSON number"),
    (b'{"held": "12"}', "its 'held' is not a number of events: '12'"),
    (b'{"held": true}', "its 'held' is not a number of events: 'True'"),
    (b'{"held": -1}', "its 'held' is not a number of events: '-1'"),
    (b'{"held": 1.5}', "its 'held' is not a number of events: '1.5'"),
], ids=["nested 100000 deep", "an array", "Infinity", "a string", "true", "-1", "1.5"])
def test_an_answer_to_the_held_query_that_is_not_a_size_sends_no_report(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch, held: bytes,
        problem: str) -> None:
    """Before a report, NZL asks JPN which checkpoint of NZL's log it holds, to prove
    its report's checkpoint from it. An answer that is not strict JSON, not an object,
    or whose "held" is not a whole number of events is refused with the reason
    (BadAnswer: `compromise report` says it in one line, serve logs a warning), and the
    report is not sent; before, an array or Infinity crashed the command with a
    traceback (TypeError, OverflowError), and true or -1 was taken as a size."""
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
        (filed,) = nzl.compromise.file([oid], what="laptop lost", discovered=_ago(1))
        with monkeypatch.context() as patched:
            patched.setattr(Courier, "_request", partner_answers(
                "/federation/compromise", lambda r: held, asked=b'"type":"held"'))
            with pytest.raises(BadAnswer, match=re.escape(
                    f"JPN's answer to the held query is refused: {problem}")):
                _deliver(nzl, "JPN")
        assert nzl.compromise.get(filed.report_id).delivered is None
        assert jpn.store.compromise_reports() == []  # not sent
        assert _deliver(nzl, "JPN") == 1  # answered as it should be: sent
    assert jpn.compromise.get(filed.report_id).reporter == "NZL"


@pytest.mark.parametrize(("answer", "problem"), [
    (lambda r: DEEP, "invalid JSON: nesting is 100000 levels deep"),
    (lambda r: r.content.replace(b'"receipt":', b'"receipt":NaN,"x":', 1),
     "invalid JSON: NaN is not a JSON number"),
], ids=["nested 100000 deep", "NaN"])
def test_a_report_whose_receipt_cannot_be_read_stays_queued(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch, answer: Any,
        problem: str) -> None:
    """JPN takes the report but answers what no intelpact node sends: the receipt is
    refused with the reason (BadAnswer), the report is not marked delivered, and it goes
    again (received once: receipt is idempotent) until a receipt verifies. The command
    says so in one line, and so does the message's error (`compromise list`), which
    went on saying the failure before; before, a receipt nested 100,000 deep crashed it
    with a RecursionError."""
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
        with monkeypatch.context() as patched:
            patched.setattr(Courier, "_request", partner_answers(
                "/federation/compromise", answer, asked=b'"type": "report"'))
            result = CliRunner().invoke(main, [
                "compromise", "report", str(nzl.config.dir), "--object", oid,
                "--what", "server breached", "--discovered", _ago(1)])
            assert result.exit_code == 0, (result.output, result.exception)
            (filed,) = nzl.store.compromise_reports()
            assert f"JPN's answer to compromise report {filed.report_id} is refused: " \
                f"{problem}" in " ".join(result.output.split()), result.output
        assert nzl.compromise.get(filed.report_id).delivered is None
        (waiting,) = nzl.store.pending_compromise("JPN", 10)
        assert problem in (waiting.error or "") and waiting.attempts == 0, waiting
        assert _deliver(nzl, "JPN") == 1
    assert nzl.compromise.get(filed.report_id).delivered is not None
    assert len(jpn.store.compromise_reports()) == 1


def _report(jpn: Node, nzl: Node) -> tuple[dict[str, Any], Callable[..., CompromiseMessage]]:
    """NZL's report of a JPN object it holds and read, as queued (JPN and NZL serving);
    and a function that makes it again with ``changes``, signed by NZL."""
    oid = _shared_and_read(jpn, nzl)
    nzl.compromise.file([oid], what="suspected leak", discovered=_ago(1))
    (message,) = nzl.store.pending_compromise("JPN", 10)
    signed: dict[str, Any] = json.loads(message.body)

    def resigned(**changes: object) -> CompromiseMessage:
        body = {k: v for k, v in {**signed, **changes}.items()
                if k not in ("signature", "key_id", "intelpact_compromise")}
        return CompromiseMessage(0, message.report_id, "JPN", "report",
                                 canonical(nzl.compromise._signed(body)), message.made)

    return signed, resigned


def test_hostile_reports_are_refused_and_audited_never_a_500(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: validly signed reports whose discovery time was near the year 9999
    (the deadline overflowed), whose history's events were not a list, or whose history
    held an event (in a tree the sender signed) that is JSON but not an object, made the
    listener answer 500. Each is refused with the reason and audited."""
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        signed, resigned = _report(jpn, nzl)

        end = _post(nzl, jpn, resigned(discovered="9999-12-31T23:00:00.000000Z"), status=403)
        assert "after the report was filed" in end["description"], end  # before its deadline
        listless = _post(nzl, jpn, resigned(history=dict(signed["history"], events=5)),
                         status=403)
        assert "not a list" in listless["description"], listless
        body = "[1]"  # its own tree of one leaf, signed with its own key
        origin = log_origin("NZL")
        note = sign_note(format_checkpoint(origin, 1, leaf_hash(body.encode())), origin,
                         nzl.signing_key)
        odd = _post(nzl, jpn, resigned(history={"checkpoint": note, "more": False, "events": [
            {"index": 0, "body": body, "proof": []}]}), status=403)
        assert "not a JSON object" in odd["description"], odd
    assert jpn.store.compromise_reports() == []
    refused = jpn.store.find_audit(AuditFilter(kinds=("refuse",), party="NZL"))
    assert len(refused) == 3


def test_who_may_file_what_and_reports_about_our_own_objects(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    mine = publish(jpn, "jp own", "極秘", ())
    with pytest.raises(CompromiseError, match="holds no object"):
        jpn.compromise.file(["indicator--00000000-0000-4000-8000-000000000000"],
                            what="x", discovered=_ago(1))
    jpn.people.add("reader", party="JPN", clearance="極秘")
    with pytest.raises(CompromiseError, match="security-officer role"):
        jpn.compromise.file([mine["id"]], what="x", discovered=_ago(1),
                            officer=jpn.people.as_person("reader"))
    with pytest.raises(CompromiseError, match="in the future"):
        jpn.compromise.file([mine["id"]], what="x", discovered=_ago(-1))
    with pytest.raises(CompromiseError, match="after it was discovered"):
        jpn.compromise.file([mine["id"]], what="x", discovered=_ago(2), occurred=_ago(1))
    bad = CliRunner().invoke(main, ["compromise", "report", str(jpn.config.dir), "--object",
                                    mine["id"], "--what", "x", "--discovered", "yesterday"])
    assert bad.exit_code == 2 and "error: the discovered time is not" in bad.stderr

    (local,) = jpn.compromise.file([mine["id"]], what="misfiled", discovered=_ago(1))
    assert local.direction == "local" and local.reporter == local.originator == "JPN"
    assert jpn.store.compromise_messages() == []  # nothing to send
    (event,) = jpn.store.find_audit(AuditFilter(kinds=("compromise-report",)))
    assert event.party is None and event.originator == "JPN"
    jpn.compromise.acknowledge(local.report_id)
    jpn.compromise.close(local.report_id, note="refiled correctly")
    assert jpn.compromise.status(jpn.compromise.get(local.report_id)) == "closed"
    assert not jpn.compromise.flag(jpn.compromise.get(local.report_id)).state
    with pytest.raises(CompromiseError, match="no compromise report"):
        jpn.compromise.close("nope", note="x")
    with pytest.raises(CompromiseError, match="only the originator"):
        nzl.compromise.acknowledge(_outgoing(nzl, jpn))


def _outgoing(nzl: Node, jpn: Node) -> str:
    """A report NZL filed about a JPN object, queued (JPN is not serving)."""
    with serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
    (report,) = nzl.compromise.file([oid], what="x", discovered=_ago(1))
    assert [m.kind for m in nzl.store.pending_compromise("JPN", 10)] == ["report"]
    return report.report_id


def test_the_compromise_store_is_idempotent_and_binds_every_value(
        jpn_nzl: tuple[Node, Node]) -> None:
    store = jpn_nzl[0].store
    evil = "x' OR '1'='1"
    record = CompromiseRecord(evil, "outgoing", "JPN", "NZL", 1, "2026-01-01T00:00:00.000000Z",
                              "2026-01-01T00:00:00.000000Z", "2026-01-02T00:00:00.000000Z",
                              '{"objects": []}')
    assert store.add_compromise(record, "NZL")
    assert not store.add_compromise(record, "NZL")
    assert store.compromise_report("x") is None and store.compromise_report(evil) == record
    assert store.compromise_messages("' OR 1=1 --") == []
    (message,) = store.pending_compromise("NZL", 10)
    assert store.pending_compromise("' OR 1=1 --", 10) == []
    store.compromise_failed(message.message_id, "NZL unreachable", False)
    assert store.pending_compromise("NZL", 10)[0].attempts == 0
    store.compromise_delivered(message.message_id, "2026-01-01T01:00:00.000000Z", "first")
    store.compromise_delivered(message.message_id, "2026-01-01T02:00:00.000000Z", "second")
    delivered = store.compromise_report(evil)
    assert delivered is not None and delivered.delivered == "2026-01-01T01:00:00.000000Z"
    assert store.pending_compromise("NZL", 10) == []
    assert store.compromise_step(evil, "close", "2026-01-01T03:00:00.000000Z", "{}", "NZL")
    assert not store.compromise_step(evil, "close", "2026-01-01T04:00:00.000000Z", "{}", None)
    with pytest.raises(StoreError, match="unknown"):
        store.compromise_step(evil, "delete; --", "t", "{}", None)
    kinds = [m.kind for m in store.compromise_messages(evil)]
    assert kinds == ["report", "close"]


def test_a_report_received_its_event_and_the_alert_are_one_transaction(
        jpn_nzl: tuple[Node, Node]) -> None:
    """The originator keeps the report, records it and raises the officer's alert in one
    transaction. Raised after, a crash between the two lost the alert for good: the report
    delivered again is kept already. Here the alert cannot be raised the first time:
    nothing of the report is kept, and the next delivery keeps all three."""
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
        (filed,) = nzl.compromise.file([oid], what="a drive lost", discovered=_ago(1),
                                       occurred=_ago(2), officer=nzl.people.as_person("officer"))
        with refusing(jpn.store, "alerts"), pytest.raises(FederationError):
            _deliver(nzl, "JPN")
        assert jpn.store.compromise_report(filed.report_id) is None
        assert jpn.store.alerts() == []
        assert jpn.store.find_audit(AuditFilter(kinds=("compromise-report", "alert"))) == []
        assert _deliver(nzl, "JPN") == 1
    assert jpn.store.compromise_report(filed.report_id) is not None
    (alert,) = jpn.store.alerts()
    assert alert[1] == "compromise-report" and "1 object(s) of ours" in alert[3]
    assert [e.kind for e in jpn.store.find_audit(
        AuditFilter(kinds=("compromise-report", "alert")))] == ["compromise-report", "alert"]


def test_a_report_names_so_many_versions_and_echoes_what_it_names_cut_short(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: a report could name any number of [id, version] pairs (each named in
    the originator's audit event, each id indexed), say what happened at any length
    (filing checks MAX_TEXT; receiving did not), and its refusals quoted its reporter,
    originator and deadline whole, in the 403 and in the audited refusal. A report names
    at most MAX_NAMED versions; a refusal names each value cut short."""
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        signed, resigned = _report(jpn, nzl)

        many = _post(nzl, jpn, resigned(objects=signed["objects"] * (MAX_NAMED + 1)),
                     status=403)
        assert many["description"].startswith("the report names 10,001 versions (["), many
        assert many["description"].endswith("and 9,998 more): at most 10,000 are taken in "
                                             "one report"), many
        long = _post(nzl, jpn, resigned(what="w" * (MAX_TEXT + 1)), status=403)
        assert "does not say what happened in 1 to 10,000 characters" in \
            long["description"], long
        who = _post(nzl, jpn, resigned(reporter="z" * 100_000), status=403)
        assert who["description"] == (f"the report names '{'z' * 99}… (100,002 characters) "
                                      "as reporter, but NZL sent it"), who
    assert jpn.store.compromise_reports() == []
    refused = jpn.store.find_audit(AuditFilter(kinds=("refuse",), party="NZL"))
    assert len(refused) == 3 and all(len(e.body) < 1_000 for e in refused), refused


def test_reports_deleted_or_altered_beside_the_log_are_caught(jpn_nzl: list[Node]) -> None:
    """Each report, acknowledgement and closure is recorded by an event of the log, in
    the transaction that keeps it: `audit verify` finds a report deleted from the
    table, or marked closed (or open again) there, with no such event."""
    jpn, _ = jpn_nzl
    oid = publish(jpn, "ours", "極秘", ())["id"]
    officer = jpn.people.as_person("officer")
    reports = [jpn.compromise.file([oid], what=what, discovered=_ago(1), officer=officer)[0]
               for what in ("laptop lost", "USB stick lost", "phone lost")]
    jpn.compromise.close(reports[2].report_id, note="found in a drawer", officer=officer)
    assert jpn.check_kept() == (0, [])
    with jpn.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
        first, second, third = (f"'{r.report_id}'" for r in reports)  # uuids
        c.execute(f"DELETE FROM compromise_reports WHERE report_id = {first}")  # noqa: S608
        c.execute("UPDATE compromise_reports SET closed = '2026-11-30T01:00:00Z', "  # noqa: S608
                  f"close_body = '{{}}' WHERE report_id = {second}")
        c.execute("UPDATE compromise_reports SET closed = NULL, close_body = NULL "  # noqa: S608
                  f"WHERE report_id = {third}")
    verified = CliRunner().invoke(main, ["audit", "verify", str(jpn.config.dir)])
    shown = " ".join(verified.output.split())
    assert verified.exit_code == 1, verified.output
    for said in (f"compromise report {reports[0].report_id} was kept (a compromise-report "
                 "event of this log), but is not shown so",
                 f"compromise report {reports[1].report_id} is closed here, but no "
                 "compromise-close event of this log records it",
                 f"compromise report {reports[2].report_id} was closed (a compromise-close "
                 "event of this log), but is not shown so"):
        assert said in shown, verified.output


def test_a_compromise_report_s_deadline_moved_beside_the_log_is_caught(
        jpn_nzl: list[Node]) -> None:
    """check_shown compared only the report ids and whether each was acknowledged or
    closed. The `compromise-report` event records the deadline: an insider who moved it
    in compromise_reports turned a LATE report into one on time, and `audit verify` said
    nothing. What the officer is shown of a report (direction, reporter, originator,
    objects, discovered, filed, deadline; acknowledged and closed: each step's event
    records its time) must be what its events record."""
    jpn, _ = jpn_nzl
    oid = publish(jpn, "lost on a train", "秘", ())["id"]
    officer = jpn.people.as_person("officer")
    (late,) = jpn.compromise.file([oid], what="a laptop lost on a train",
                                  discovered=_ago(72), officer=officer)  # 24 h to report
    (closed,) = jpn.compromise.file([oid], what="a phone lost", discovered=_ago(1),
                                    officer=officer)
    jpn.compromise.close(closed.report_id, note="found", officer=officer)
    assert jpn.compromise.flag(late).state == "late"
    assert jpn.check_kept() == (0, [])
    # an insider, on either store
    _sql(jpn.store, "UPDATE compromise_reports SET deadline = ? WHERE report_id = ?",
         ("2099-01-01T00:00:00.000000Z", late.report_id))
    _sql(jpn.store, "UPDATE compromise_reports SET closed = ? WHERE report_id = ?",
         ("2026-01-01T00:00:00.000000Z", closed.report_id))
    record = jpn.store.compromise_report(late.report_id)
    assert record is not None and jpn.compromise.flag(record).state == ""  # on time now
    assert [p.split(" is ")[0] for p in jpn.check_kept()[1]] == [
        f"compromise report {r.report_id}'s {field}" for r, field in sorted(
            [(late, "deadline"), (closed, "closed")], key=lambda x: x[0].report_id)]


def test_a_report_whose_held_checkpoint_moved_on_is_asked_again_within_the_round(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """JPN takes a newer checkpoint of NZL's log (its audit watch, gossip) between NZL's
    held query and the report: JPN answers 409, send a proof from the one it holds now.
    NZL asks again at once and the report goes in the same round; before, the round
    stopped there and the serving courier backed off (30 s after an outage) with the
    report not sent. A partner that keeps moving gets a bounded number of tries."""
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
        (filed,) = nzl.compromise.file([oid], what="laptop lost", discovered=_ago(1))
        moved = 0
        added = iter(range(100))

        def move_on(times: int) -> Callable[[httpx.Response], httpx.Response]:
            def answer(response: httpx.Response) -> httpx.Response:
                nonlocal moved
                if moved < times:  # JPN witnesses a newer NZL checkpoint meanwhile
                    moved += 1
                    nzl.people.add(f"meanwhile{next(added)}", party="NZL", clearance="SECRET")
                    _gossip(jpn, "NZL")
                return response
            return answer

        with monkeypatch.context() as patched:  # always moved on: the round gives up
            patched.setattr(Courier, "_request", partner_answers(
                "/federation/compromise", move_on(1000), asked=b'"type":"held"'))
            with pytest.raises(FederationError, match="send a proof from it"):
                _deliver(nzl, "JPN")
        assert moved == HELD_TRIES
        (waiting,) = nzl.store.pending_compromise("JPN", 10)
        assert waiting.attempts == 0, waiting  # not counted towards giving it up
        assert jpn.store.compromise_reports() == []

        moved = 0
        with monkeypatch.context() as patched:  # moved on once: sent in the same round
            patched.setattr(Courier, "_request", partner_answers(
                "/federation/compromise", move_on(1), asked=b'"type":"held"'))
            assert _deliver(nzl, "JPN") == 1
        assert moved == 1
    assert nzl.compromise.get(filed.report_id).delivered is not None
    assert jpn.compromise.get(filed.report_id).reporter == "NZL"
    assert all(a[1] != "history-rewritten" for a in jpn.store.alerts())
