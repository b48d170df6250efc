"""The agreement's lifecycle between two nodes: amendment and termination."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_atomic_audit import refusing
from test_controls import deliver
from test_faults import needs_faketime
from test_federation import pair, people, publish, push

from intelpact.config import staged, write_config
from intelpact.interfaces.cli import main
from intelpact.model import load_agreement, national_marking
from intelpact.model.decisions import PartnerNode
from intelpact.model.errors import MarkingError
from intelpact.model.markings import EXTENSION_ID, parse_marking
from intelpact.services import controls as controls_module
from intelpact.services.audit import AuditError
from intelpact.services.controls import Controls
from intelpact.services.courier import Courier
from intelpact.services.federation import FederationError
from intelpact.services.node import Node, NodeError
from intelpact.services.publish import MarkingRequest
from intelpact.store import sqlite as sqlite_module
from intelpact.store.base import AuditFilter, StoreUnavailable, parse_timestamp

from helpers import AGREEMENTS, indicator, make_node, serving_federation
from served import Pair, bulk, faketime_env, keys, set_clock, wait_for

SAMPLE = (AGREEMENTS / "jpn-nzl.toml").read_text(encoding="utf-8")


def version(tmp_path: Path, name: str, *, number: str = "1.1", terminated: bool = False,
            on_termination: str = "continue-protection", on: dt.date | None = None) -> Path:
    text = SAMPLE.replace('version = "1.0"', f'version = "{number}"')
    if terminated:
        text = text.replace('state = "in-force"', 'state = "terminated"').replace(
            "in_force = 2026-06-01", f"in_force = 2026-06-01\nterminated = {on or '2026-11-20'}")
    text = text.replace('on_termination = "continue-protection"',
                        f'on_termination = "{on_termination}"')
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def reopen(node: Node) -> Node:
    node.close()
    return Node.open(node.config.dir)


def pin(node: Node, path: Path, reason: str = "amendment 1") -> Node:
    node.pin_agreement(path, reason=reason)
    return reopen(node)


def test_exchange_stops_until_both_sides_pin_the_amendment(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    jpn, nzl = jpn_nzl
    amended = version(tmp_path, "v1.1.toml")
    jpn = jpn_nzl[0] = pin(jpn, amended)
    assert jpn.agreement.version == "1.1"
    obj = publish(jpn, "under the amendment", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        with pytest.raises(FederationError, match="agreement"):
            push(jpn, "NZL")  # NZL still holds version 1.0
        assert [row for _, row in jpn.store.pending("NZL", 100)
                if row.object_id == obj["id"]]  # nothing lost: still queued
    nzl = jpn_nzl[1] = pin(nzl, amended)
    with serving_federation(jpn), serving_federation(nzl):
        assert push(jpn, "NZL") >= 1
    assert nzl.get(nzl.people.as_person("officer"), obj["id"])
    (event,) = jpn.store.find_audit(AuditFilter(kinds=("agreement-pin",)))
    assert '"version":"1.1"' in event.body and '"reason":"amendment 1"' in event.body


def test_nothing_is_exchanged_before_the_agreement_enters_into_force(tmp_path: Path) -> None:
    """Both nodes pinned to a text whose state is in-force but whose entry into force is
    a month away: what JPN publishes for NZL is not queued for it nor pushed, and NZL
    would refuse it (the decision on each side is the same: rule agreement-state)."""
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)
    soon = tmp_path / "soon.toml"
    soon.write_text(SAMPLE.replace("in_force = 2026-06-01", f"in_force = {day}"),
                    encoding="utf-8")
    jpn, nzl = make_node(tmp_path / "jpn", "JPN", str(soon)), \
        make_node(tmp_path / "nzl", "NZL", str(soon))
    try:
        for node in (jpn, nzl):
            people(node)
        pair(jpn, nzl)
        obj = publish(jpn, "before the agreement is in force", "極秘", ("NZL",))
        assert [row for _, row in jpn.store.pending("NZL", 100)] == []
        with serving_federation(jpn), serving_federation(nzl):
            assert push(jpn, "NZL") == 0
        assert nzl.get(nzl.people.as_person("officer"), obj["id"]) == []
        banner = jpn.store.labels()[jpn.store.held([obj["id"]])[0].banner_id]
        decision = nzl.federation._refused("JPN", banner, obj["id"], None, (), ())
        assert decision is not None and f"enters into force on {day}" in decision.message
        with Courier(jpn) as courier:  # not due: nothing queued, nothing recorded
            assert courier.catch_up(["NZL"]) == 0
        assert jpn.store.find_audit(AuditFilter(kinds=("peer-catch-up",))) == []
        # both pin a text in force today: what was published before reaches NZL, with no
        # `peer add` again, at the courier's first round (Federation.catch_up)
        jpn, nzl = pin(jpn, version(tmp_path, "now.toml")), pin(nzl, version(tmp_path,
                                                                            "now.toml"))
        assert jpn.agreement.in_force_now
        with serving_federation(jpn), serving_federation(nzl), Courier(
                jpn, interval=0.2, push_interval=0.05) as courier:
            courier.start()
            officer = nzl.people.as_person("officer")
            deadline = time.monotonic() + 20
            while not nzl.get(officer, obj["id"]) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [o["name"] for o in nzl.get(officer, obj["id"])] == [
                "before the agreement is in force"]
        (event,) = jpn.store.find_audit(AuditFilter(kinds=("peer-catch-up",)))
        assert '"party":"NZL"' in event.body and '"queued":2' in event.body  # with its definition
        # once per partner and text: not again in this process, nor after a restart
        assert jpn.federation.catch_up("NZL") is None
        jpn = reopen(jpn)
        assert jpn.federation.catch_up("NZL") is None
        assert len(jpn.store.find_audit(AuditFilter(kinds=("peer-catch-up",)))) == 1
        assert jpn.store.pending("NZL", 100) == []
    finally:
        jpn.close()
        nzl.close()


def test_what_was_published_before_the_day_of_entry_into_force_goes_on_the_day(
        tmp_path: Path) -> None:
    """Both nodes served under one clock, the text pinned in-force with its date of
    entry into force tomorrow: what JPN publishes today is not queued; when the clock
    reaches that day, JPN's courier queues it (Federation.catch_up) and NZL gets it,
    with no operator action."""
    needs_faketime()
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    soon = tmp_path / "soon.toml"
    soon.write_text(SAMPLE.replace("in_force = 2026-06-01", f"in_force = {day}"),
                    encoding="utf-8")
    clock = tmp_path / "clock"
    set_clock(clock, "+0")
    with Pair(tmp_path, pool=False, agreement=soon) as pair:
        for party in ("JPN", "NZL"):
            pair.start(party, env=faketime_env(file=clock))
        before = bulk(1, "published the day before")
        pair.publish("JPN", before)
        time.sleep(3)  # a round or more of JPN's courier: nothing is queued, nothing goes
        assert pair.query("JPN", "SELECT count(*) FROM outbox") == [(0,)]
        assert not set(pair.rows("NZL")) & keys(before)
        set_clock(clock, "+1d")
        wait_for(lambda: set(pair.rows("NZL")) >= keys(before), 60,
                 "what was published before reaches NZL on the day", pair)
        assert len(pair.query("JPN", "SELECT body FROM audit_events WHERE kind = "
                                     "'peer-catch-up'")) == 1


def test_the_catch_up_does_not_send_a_partner_its_own_objects_back(
        jpn_nzl: list[Node]) -> None:
    """The catch-up (and `peer add`) queues everything releasable to a partner, but the
    objects that partner originated: NZL's object held at JPN does not go back to it."""
    jpn, nzl = jpn_nzl
    obj = publish(nzl, "from NZL", "SECRET", ("JPN",))
    with serving_federation(jpn):
        assert push(nzl, "JPN") == 2
    assert jpn.store.held([obj["id"]])
    jpn = jpn_nzl[0] = reopen(jpn)  # `peer add` in this process would count as done
    assert jpn.federation.catch_up("NZL") == 0
    assert jpn.store.pending("NZL", 100) == []


def test_the_catch_up_counts_the_entries_it_queued_not_those_queued_already(
        jpn_nzl: list[Node]) -> None:
    """Found in review: the catch-up's count (its peer-catch-up event's ``queued``, and
    the log) was the entries it chose, so an object queued already (here at its
    publication, the agreement in force) was counted again though nothing was queued."""
    jpn = jpn_nzl[0]
    publish(jpn, "queued at its publication", "極秘", ("NZL",))
    waiting = jpn.store.pending("NZL", 100)
    assert len(waiting) == 2  # the indicator and its marking
    jpn = jpn_nzl[0] = reopen(jpn)  # `peer add` in this process would count as done
    assert jpn.federation.catch_up("NZL") == 0
    (event,) = jpn.store.find_audit(AuditFilter(kinds=("peer-catch-up",)))
    assert json.loads(event.body)["queued"] == 0
    assert jpn.store.pending("NZL", 100) == waiting
    # one object not queued yet (its entry gone, as before the text came into force)
    late = publish(jpn, "not queued yet", "極秘", ("NZL",))
    (seq,) = [row.seq for _, row in jpn.store.pending("NZL", 100)
              if row.object_id == late["id"]]
    with jpn.store._write() as c:  # noqa: SLF001 - as if never queued
        c.execute(f"DELETE FROM outbox WHERE seq = {seq}")  # noqa: S608
    assert jpn.store.enqueue("NZL", lambda row: True) == 1


def test_termination_stops_new_exchange_and_keeps_what_was_received_protected(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    jpn, nzl = jpn_nzl
    before = publish(jpn, "before the end", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    queued = publish(jpn, "queued when the agreement ended", "極秘", ("NZL",))  # not pushed
    ended = version(tmp_path, "ended.toml", terminated=True)
    jpn = jpn_nzl[0] = pin(jpn, ended, "terminated by notice")
    nzl = jpn_nzl[1] = pin(nzl, ended, "terminated by notice")
    after = publish(jpn, "after the end", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        assert push(jpn, "NZL") == 0  # mid-exchange: what was queued does not leave
    officer = nzl.people.as_person("officer")
    assert nzl.get(officer, before["id"])  # still held, still protected by the labels
    assert nzl.get(officer, queued["id"]) == [] and nzl.get(officer, after["id"]) == []


def test_a_reclassification_after_termination_keeps_what_protection_continues_for(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    """After a termination that says continue-protection, NZL keeps what it received. JPN
    then raises its object: NZL applies the notice and keeps the copy, relabelled, as
    long as it can protect the new label (Policy.may_keep, rule keep); it was destroyed,
    since the release decision that judged it refuses everything once the agreement has
    ended. A new marking NZL cannot hold (REL TO JPN only) still destroys it."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "kept after the end", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    ended = version(tmp_path, "ended.toml", terminated=True)
    jpn = jpn_nzl[0] = pin(jpn, ended, "terminated by notice")
    nzl = jpn_nzl[1] = pin(nzl, ended, "terminated by notice")
    officer = jpn.people.as_person("officer")
    cid = jpn.default_collection().collection_id
    jpn.controls.reclassify(officer, obj["id"], MarkingRequest("機密", ("NZL",)),
                            collection_id=cid, reason="raised after the end")
    with serving_federation(jpn), serving_federation(nzl):
        assert deliver(jpn, "NZL") == 1
    held = nzl.get(nzl.people.as_person("officer"), obj["id"])
    assert [o["name"] for o in held] == ["kept after the end"]
    (row,) = nzl.store.held([obj["id"]])
    assert nzl.store.labels()[row.banner_id].rank == nzl.agreement.shared_rank("TOP SECRET")
    assert nzl.store.find_audit(AuditFilter(kinds=("destroy",))) == []
    assert nzl.store.find_audit(AuditFilter(kinds=("reclassify",)))
    # a marking NZL cannot protect: destroyed, after the end as before it
    jpn.controls.reclassify(officer, obj["id"], MarkingRequest("機密", ()),
                            collection_id=cid, reason="Japan only now")
    with serving_federation(jpn), serving_federation(nzl):
        assert deliver(jpn, "NZL") == 1
    assert nzl.get(nzl.people.as_person("officer"), obj["id"]) == []
    destroyed = nzl.store.find_audit(AuditFilter(kinds=("destroy",)))
    assert destroyed and any("NZL not in REL TO JPN" in e.body for e in destroyed), \
        [e.body for e in destroyed]


def test_termination_that_says_destroy(jpn_nzl: list[Node], tmp_path: Path) -> None:
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "to be destroyed at the end", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    ended = version(tmp_path, "ended.toml", terminated=True, on_termination="destroy")
    jpn = jpn_nzl[0] = pin(jpn, ended)
    nzl.close()
    runner = CliRunner()
    with serving_federation(jpn):
        done = runner.invoke(main, ["agreement", "pin", str(tmp_path / "nzl"), str(ended),
                                    "--reason", "the agreement ended"])
    jpn_nzl[1] = nzl = Node.open(tmp_path / "nzl")
    assert done.exit_code == 0, done.output
    # the object and its marking
    assert "destroyed 2 object(s) holding partners' material" in done.output
    assert "delivered to JPN" in done.output
    assert nzl.get(nzl.people.as_person("officer"), obj["id"]) == []
    assert jpn.store.find_audit(AuditFilter(kinds=("destroy",), party="NZL"))


def _terminated_ahead(jpn: Node, nzl: Node, tmp_path: Path
                      ) -> tuple[dt.date, Path, dict[str, Any]]:
    """A text terminated, saying destroy, a month from today (not pinned yet), and a JPN
    object NZL received before: the day, the text, the object."""
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=30)
    ending = version(tmp_path, "ending.toml", terminated=True, on_termination="destroy",
                     on=day)
    obj = publish(jpn, "received before the pin", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    return day, ending, obj


def test_a_termination_dated_ahead_acts_on_its_date(jpn_nzl: list[Node], tmp_path: Path) -> None:
    """A text terminated (saying destroy) with its date of termination a month away: until
    that day the agreement is in force, so what JPN publishes still goes to NZL, and the
    pin destroys nothing at NZL; the command prints how to destroy on the day."""
    jpn, nzl = jpn_nzl
    day, ending, before = _terminated_ahead(jpn, nzl, tmp_path)
    jpn = jpn_nzl[0] = pin(jpn, ending, "terminated by notice")
    assert jpn.agreement.in_force_now and not jpn.agreement.terminated_now
    nzl.close()
    done = CliRunner().invoke(main, ["agreement", "pin", str(tmp_path / "nzl"), str(ending),
                                     "--reason", "terminated by notice"])
    jpn_nzl[1] = nzl = Node.open(tmp_path / "nzl")
    assert done.exit_code == 0, done.output
    assert f"terminated on {day} (UTC): exchange continues until that day" in done.output
    said = " ".join(done.output.split())
    assert "on that day `intelpact serve` destroys what was received (destroy)" in said, said
    assert "run `intelpact agreement pin" not in said and "destroyed" not in said
    officer = nzl.people.as_person("officer")
    assert nzl.get(officer, before["id"])  # not destroyed ahead of the day
    after = publish(jpn, "published after the pin, before the day", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        assert push(jpn, "NZL") == 1
    assert nzl.get(officer, after["id"])
    # from the day on, the decision on each side refuses: terminated
    banner = jpn.store.labels()[jpn.store.held([after["id"]])[0].banner_id]
    on_the_day = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    refused = nzl.policy.may_release(banner, PartnerNode("NZL", banner.agreement),
                                     holder="JPN", object_id=after["id"], now=on_the_day)
    assert (refused.allowed, refused.rule) == (False, "agreement-state")
    assert "is terminated: no exchange" in refused.reason


def test_a_termination_dated_ahead_is_done_by_the_node_on_its_date_once(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    """Found in review: a termination saying destroy, pinned ahead of its date, destroyed
    nothing on the day unless the operator remembered to pin the same text again then.
    The node does it (Controls.terminate, run by the courier's rounds): nothing before
    the day, everything received on it, once (not again on a later day, after a restart,
    or by the same text pinned again), recorded as one agreement-terminate event."""
    jpn, nzl = jpn_nzl
    day, ending, obj = _terminated_ahead(jpn, nzl, tmp_path)
    nzl = jpn_nzl[1] = pin(nzl, ending, "terminated by notice")
    officer = nzl.people.as_person("officer")
    assert nzl.controls.terminate(day - dt.timedelta(days=1)) is None  # not yet
    with Courier(nzl) as courier:  # today, a month ahead: not due
        assert courier.terminate() is None
    assert nzl.get(officer, obj["id"])
    assert nzl.store.find_audit(AuditFilter(kinds=("agreement-terminate",))) == []
    assert nzl.controls.terminate(day) == 2  # the object and its marking
    assert nzl.get(officer, obj["id"]) == []
    destroyed = nzl.store.find_audit(AuditFilter(kinds=("destroy",)))
    assert destroyed
    assert nzl.controls.terminate(day + dt.timedelta(days=1)) is None  # once
    nzl = jpn_nzl[1] = reopen(nzl)
    assert nzl.controls.terminate(day) is None  # not again after a restart
    (event,) = nzl.store.find_audit(AuditFilter(kinds=("agreement-terminate",)))
    said = json.loads(event.body)
    assert (said["terminated"], said["on_termination"], said["destroyed"]) == (
        str(day), "destroy", 2)
    assert said["agreement_hash"] == nzl.agreement.content_hash
    assert len(nzl.store.find_audit(AuditFilter(kinds=("destroy",)))) == len(destroyed)
    # the originator is told
    assert sorted((n.party, n.kind) for n in nzl.store.notices() if n.direction == "out") \
        == [("JPN", "destroyed")] * 2  # the object and its marking


def test_a_node_not_serving_on_the_day_of_termination_destroys_when_it_next_serves(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    """A text terminated (saying destroy) with its date come, pinned without the command's
    destruction (``Node.pin_agreement``, as a pin made ahead of a day that has passed
    since): the courier's first round does it, and a pin of the same text afterwards
    says it was done, destroying nothing more."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "to be destroyed by the courier", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    ended = version(tmp_path, "ended.toml", terminated=True, on_termination="destroy")
    nzl = jpn_nzl[1] = pin(nzl, ended, "terminated by notice")
    assert nzl.get(nzl.people.as_person("officer"), obj["id"])
    with Courier(nzl, interval=0.05, push_interval=0.02) as courier:
        courier.start()
        wait_for(lambda: nzl.store.find_audit(AuditFilter(kinds=("agreement-terminate",))),
                 20, "the courier does what the termination requires")
    assert nzl.get(nzl.people.as_person("officer"), obj["id"]) == []
    destroyed = len(nzl.store.find_audit(AuditFilter(kinds=("destroy",))))
    nzl.close()
    again = CliRunner().invoke(main, ["agreement", "pin", str(tmp_path / "nzl"), str(ended),
                                      "--reason", "terminated by notice"])
    jpn_nzl[1] = nzl = Node.open(tmp_path / "nzl")
    assert again.exit_code == 0, again.output
    assert "destroyed already, at " in again.output and "destroyed 0" not in again.output
    assert len(nzl.store.find_audit(AuditFilter(kinds=("destroy",)))) == destroyed
    assert len(nzl.store.find_audit(AuditFilter(kinds=("agreement-terminate",)))) == 1


def test_a_serving_node_destroys_on_the_day_of_termination(tmp_path: Path) -> None:
    """NZL pins a termination saying destroy, dated tomorrow, and serves under a clock
    the test moves: what it received stays until the clock reaches that day, then the
    serving node destroys it by itself and says so in its log; a restart does not do it
    again."""
    from helpers import test_database

    needs_faketime()
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    ending = version(tmp_path, "ending.toml", terminated=True, on_termination="destroy",
                     on=day)
    clock = tmp_path / "clock"
    set_clock(clock, "+0")
    url = test_database()
    with Pair(tmp_path, pool=False, databases={"NZL": url} if url else None) as pair:
        for party in ("JPN", "NZL"):
            pair.start(party)
        sent = bulk(1, "received before the day")
        pair.publish("JPN", sent)
        wait_for(lambda: set(pair.rows("NZL")) >= keys(sent), 60, "NZL receives", pair)
        pair.stop("NZL")
        pair.cli("NZL", "agreement", "pin", str(pair.dirs["NZL"]), str(ending),
                 "--reason", "terminated by notice")
        pair.start("NZL", env=faketime_env(file=clock))

        def held() -> int:
            return int(pair.query("NZL", "SELECT count(*) FROM objects WHERE originator = "
                                         "'JPN' AND recalled IS NULL")[0][0])
        time.sleep(3)  # a round or more of NZL's courier: not the day yet
        assert held() == 2
        set_clock(clock, "+1d")
        wait_for(lambda: held() == 0, 60, "NZL destroys on the day", pair)

        def terminations() -> int:
            return len(pair.query("NZL", "SELECT body FROM audit_events WHERE kind = "
                                         "'agreement-terminate'"))
        said = f"agreement jpn-nzl-isa terminated on {day} (UTC): destroyed 2 object(s)"
        # the line is logged once the destruction and its event are committed
        wait_for(lambda: said in pair.log_text("NZL"), 30, "the operator is told", pair)
        assert terminations() == 1
        pair.stop("NZL")
        pair.start("NZL", env=faketime_env(file=clock))
        time.sleep(3)  # a round or more of the restarted courier: nothing again
        assert terminations() == 1
        assert pair.log_text("NZL").count("destroyed 2 object(s)") == 1


def test_a_terminated_agreement_is_final(jpn_nzl: list[Node], tmp_path: Path) -> None:
    """Found in review: after a termination (here one that says destroy), a text of the
    same agreement in force could be pinned again, as if nothing had ended."""
    jpn = jpn_nzl[0]
    ended = version(tmp_path, "ended.toml", terminated=True, on_termination="destroy")
    jpn = jpn_nzl[0] = pin(jpn, ended)
    revived = version(tmp_path, "revived.toml", number="1.2")
    with pytest.raises(NodeError, match="was terminated .*: a terminated agreement is final"):
        jpn.pin_agreement(revived, reason="signed again")
    assert jpn.agreement.state == "terminated"


def test_a_destruction_cut_short_is_finished_by_pinning_again(
        jpn_nzl: list[Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pin of a terminated agreement that says destroy is committed before the
    destruction; if that is cut short (here the store fails in it), pinning the same text
    again finishes it instead of refusing it as pinned already."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "to be destroyed, in the end", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    nzl.close()
    ended = version(tmp_path, "ended.toml", terminated=True, on_termination="destroy")
    pin_it = ["agreement", "pin", str(tmp_path / "nzl"), str(ended), "--reason", "ended"]

    def cut_short(self: Controls, reason: str) -> int:
        raise StoreUnavailable("the database went away")

    with monkeypatch.context() as m:
        m.setattr(Controls, "destroy_received", cut_short)
        first = CliRunner().invoke(main, pin_it)
    assert first.exit_code != 0
    jpn_nzl[1] = nzl = Node.open(tmp_path / "nzl")
    assert nzl.agreement.state == "terminated"
    assert nzl.get(nzl.people.as_person("officer"), obj["id"])  # not destroyed yet
    nzl.close()
    again = CliRunner().invoke(main, pin_it)
    assert again.exit_code == 0, again.output
    assert "pinned already (terminated): finishing" in again.output
    assert "destroyed 2 object(s) holding partners' material" in again.output
    jpn_nzl[1] = nzl = Node.open(tmp_path / "nzl")
    assert nzl.get(nzl.people.as_person("officer"), obj["id"]) == []


def test_a_pin_cut_short_is_finished_when_the_node_opens(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    """Pinning stages the new text, makes node.toml name it, then puts it in place. A
    crash after node.toml was written and before the text was moved leaves both on disk:
    the node finishes the move when it opens, instead of refusing a hash mismatch."""
    jpn = jpn_nzl[0]
    amended = version(tmp_path, "v1.1.toml")
    target = jpn.config.agreement_path
    staged(target).write_bytes(amended.read_bytes())  # the pin, up to the crash
    new_hash = load_agreement(amended).content_hash
    write_config(dataclasses.replace(jpn.config, agreement_hash=new_hash))
    jpn.close()
    jpn_nzl[0] = jpn = Node.open(jpn.config.dir)
    assert jpn.agreement.version == "1.1" and jpn.agreement.content_hash == new_hash
    assert target.read_bytes() == amended.read_bytes() and not staged(target).exists()
    assert (jpn.config.dir / "node.toml").stat().st_mode & 0o777 == 0o600
    assert_pin_recorded_once(jpn, new_hash)


def assert_pin_recorded_once(node: Node, new_hash: str) -> None:
    """The pin's event, recorded when the node opened after the pin was cut short
    before it, once however often the node opens again."""
    for _ in range(2):
        (event,) = [json.loads(e.body) for e in node.audit.find(
            AuditFilter(kinds=("agreement-pin",)))]
        assert event["new_hash"] == new_hash and event["version"] == "1.1"
        assert event["reason"].startswith("recorded when the node was next opened")
        node.close()
        node = Node.open(node.config.dir)
    node.close()


def test_a_pin_whose_event_was_not_recorded_is_recorded_when_the_node_opens(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    """A pin is files, so its event is recorded after it: here the event cannot be
    appended (as a crash right after the pin would leave it). The node opened next
    records it, saying so; before, the agreement had changed with nothing in the log."""
    jpn = jpn_nzl[0]
    amended = version(tmp_path, "v1.1.toml")
    with refusing(jpn.store, "audit_events", when="NEW.kind = 'agreement-pin'"), \
            pytest.raises(AuditError):
        jpn.pin_agreement(amended, reason="amendment 1")
    assert not jpn.audit.find(AuditFilter(kinds=("agreement-pin",)))
    jpn.close()
    jpn_nzl[0] = Node.open(jpn.config.dir)
    assert jpn_nzl[0].agreement.version == "1.1"
    assert_pin_recorded_once(jpn_nzl[0], load_agreement(amended).content_hash)
    jpn_nzl[0] = Node.open(jpn.config.dir)


def test_what_cannot_be_pinned(jpn_nzl: list[Node], tmp_path: Path) -> None:
    jpn = jpn_nzl[0]
    with pytest.raises(NodeError, match="pinned already"):
        jpn.pin_agreement(AGREEMENTS / "jpn-nzl.toml", reason="x")
    with pytest.raises(NodeError, match="not jpn-nzl-isa"):
        jpn.pin_agreement(AGREEMENTS / "jpn-nzl-aus.toml", reason="x")
    with pytest.raises(NodeError, match="reason"):
        jpn.pin_agreement(version(tmp_path, "v2.toml", number="2.0"), reason=" ")
    assert Node.open(jpn.config.dir).agreement.version == "1.0"  # nothing was changed


def test_recall_everything_that_went_to_a_party(jpn_nzl: list[Node]) -> None:
    jpn, nzl = jpn_nzl
    objs = [publish(jpn, f"batch {i}", "極秘", ("NZL",)) for i in range(3)]
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        result = CliRunner().invoke(main, ["recall", str(jpn.config.dir), "--all", "--party",
                                           "NZL", "--reason", "all of it"])
        assert result.exit_code == 0, result.output
        with Courier(nzl) as courier:
            courier.deliver_notices("JPN")
    officer = nzl.people.as_person("officer")
    assert all(nzl.get(officer, o["id"]) == [] for o in objs)
    assert {r.object_id for r in jpn.controls.recalls() if r.destroyed} >= {o["id"] for o in objs}


def trilateral(tmp_path: Path) -> Path:
    """Version 2.0 of the sample: Australia joins, with the scale and rules unchanged."""
    import re

    text = SAMPLE.replace('version = "1.0"', 'version = "2.0"').replace(
        'parties = ["JPN", "NZL"]', 'parties = ["JPN", "NZL", "AUS"]')
    nzl = text[text.index("[schemes.NZL]"):text.index("# --- the equivalence table")]
    aus = nzl.replace("schemes.NZL", "schemes.AUS").replace('"New Zealand"', '"Australia"')
    text = text.replace("# --- the equivalence table", aus + "# --- the equivalence table")
    text = re.sub(r"^NZL = (.*)$", r"NZL = \1\nAUS = \1", text, flags=re.MULTILINE)
    path = tmp_path / "trilateral.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_party_joins_without_losing_history(jpn_nzl: list[Node], tmp_path: Path) -> None:

    jpn, nzl = jpn_nzl
    before = publish(jpn, "shared with NZ under 1.0", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    three = trilateral(tmp_path)
    jpn = jpn_nzl[0] = pin(jpn, three, "Australia accedes")
    nzl = jpn_nzl[1] = pin(nzl, three, "Australia accedes")
    aus = make_node(tmp_path / "aus", "AUS", agreement=str(three))
    jpn_nzl.append(aus)
    people(aus)
    pair(jpn, aus)
    officer = nzl.people.as_person("officer")
    assert nzl.get(officer, before["id"])  # history kept, labels still resolve
    to_all = publish(jpn, "for both partners", "極秘", ("NZL", "AUS"))
    with serving_federation(jpn), serving_federation(nzl), serving_federation(aus):
        assert push(jpn, "NZL") >= 1 and push(jpn, "AUS") >= 1
    assert nzl.get(officer, to_all["id"])
    assert aus.get(aus.people.as_person("officer"), to_all["id"])
    assert aus.get(aus.people.as_person("officer"), before["id"]) == []  # REL TO NZL only


def nz_retires_confidential(tmp_path: Path) -> Path:
    """Version 1.1: New Zealand retires CONFIDENTIAL and protects that row as SECRET (the
    rows kept, so `agreement pin` takes it)."""
    text = SAMPLE.replace('version = "1.0"', 'version = "1.1"')
    text = text.replace('[[schemes.NZL.levels]]\nname = "CONFIDENTIAL"\nabbrev = "C"\n', "")
    text = text.replace('NZL = "CONFIDENTIAL"', 'NZL = { treat_as = "SECRET" }')
    assert text.count('treat_as = "SECRET"') == 1
    path = tmp_path / "v1.1.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_objects_queued_before_an_amendment_are_delivered_once_both_sides_pin_it(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    """Found in review: "objects stay queued, nothing is lost" did not hold when the
    amendment moved a cell on the row of a queued object's marking. Its national
    marking lists the equivalents of the text it was made under (秘 = NZ CONFIDENTIAL),
    and NZL, under 1.1, refused it ("its equivalents disagree with the agreement's
    table"), then the object as citing an unknown marking: retried, then given up.
    A node keeps the texts it pinned before (``agreement-history/``), and takes a
    partner's marking whose equivalents are those of one of them."""
    jpn, nzl = jpn_nzl
    queued = publish(jpn, "queued before the amendment", "秘", ("NZL",))
    amended = nz_retires_confidential(tmp_path)
    jpn = jpn_nzl[0] = pin(jpn, amended)
    nzl = jpn_nzl[1] = pin(nzl, amended)
    assert [a.version for a in nzl.agreement.earlier] == ["1.0"]
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    officer = nzl.people.as_person("officer")
    assert [o["name"] for o in nzl.get(officer, queued["id"])] == [queued["name"]]
    # a marking whose equivalents no text pinned here had is still refused
    forged = national_marking(jpn.agreement.earlier[0], "JPN", "秘", rel_to=["NZL"])
    forged["extensions"][EXTENSION_ID]["equivalents"][1]["level"] = "RESTRICTED"
    with pytest.raises(MarkingError, match="equivalents disagree"):
        parse_marking(nzl.agreement, forged)


def _report_on_nz_material(jpn: Node, nzl: Node) -> dict[str, Any]:
    """A JPN report (極秘 REL TO NZL) whose description is NZL material, marked as a portion
    with the NZ marking of a SECRET source NZL pushed to JPN: published by JPN's officer."""
    source = publish(nzl, "NZ source", "SECRET", ("JPN",))
    with serving_federation(jpn), serving_federation(nzl):
        assert push(nzl, "JPN") >= 1
    (held,) = jpn.store.held([source["id"]])
    nz_marking = json.loads(held.body)["object_marking_refs"][0]
    report = indicator("JPN report drawing on NZ material",
                       description="NZ-ONLY DETAIL taken from the NZ source",
                       granular_markings=[{"selectors": ["description"],
                                           "marking_ref": nz_marking}])
    who = jpn.people.as_person("officer").person
    status = jpn.publisher.publish(who, jpn.default_collection().collection_id, [report],
                                   marking=MarkingRequest("極秘", ("NZL",)))
    assert status.body["failure_count"] == 0, status.body
    return report


def test_a_termination_that_says_destroy_destroys_a_partners_portions_too(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    """Found in review: a JPN report whose description is NZL material, marked as a
    portion with NZL's national marking (docs/markings.md), kept that text in clear
    after a termination that says destroy (only rows NZL originated were destroyed),
    under NZL's definition destroyed, so it could no longer even be labelled. Its
    versions holding NZL's material are destroyed too; JPN's own object without any
    stays."""
    jpn, nzl = jpn_nzl
    mine = publish(jpn, "JPN's own", "極秘", ("NZL",))
    report = _report_on_nz_material(jpn, nzl)
    ended = version(tmp_path, "ended.toml", terminated=True, on_termination="destroy")
    jpn = jpn_nzl[0] = pin(jpn, ended, "the agreement ended")
    assert jpn.controls.destroy_received("the agreement ended") == 3  # source, marking, report
    assert not any("NZ-ONLY DETAIL" in row.body for row in jpn.store.held([report["id"]]))
    assert [json.loads(r.body)["name"] for r in jpn.store.held([mine["id"]])] == ["JPN's own"]
    destroyed = jpn.store.find_audit(AuditFilter(kinds=("destroy",), originator="JPN"))
    assert [json.loads(e.body)["held"] for e in destroyed] == ["a partner's material"]


def test_a_version_holding_a_partners_material_stored_as_it_is_destroyed_is_destroyed_too(
        jpn_nzl: list[Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a termination that says destroy destroyed the versions of JPN's own
    report holding NZL material that it had read before its transaction; a version
    stored in between (a publication made as the destruction ran) kept NZL's text in
    clear. The versions to destroy are chosen as the purge's transaction finds them."""
    jpn, nzl = jpn_nzl
    report = _report_on_nz_material(jpn, nzl)
    who = jpn.people.as_person("officer").person
    cid = jpn.default_collection().collection_id
    ended = version(tmp_path, "ended.toml", terminated=True, on_termination="destroy")
    jpn = jpn_nzl[0] = pin(jpn, ended, "the agreement ended")
    later = dict(report, modified="2099-01-01T00:00:00.000Z",
                 description="NZ-ONLY LATER DETAIL taken from the NZ source")
    published: list[Any] = []

    def land() -> None:  # after the scan, before the report's purge: a new version
        if not published:
            published.append(jpn.publisher.publish(
                who, cid, [later], marking=MarkingRequest("極秘", ())))

    _before_purging(jpn, monkeypatch, land)
    assert jpn.controls.destroy_received("the agreement ended") == 3  # source, marking, report
    assert published[0].body["failure_count"] == 0, published[0].body
    assert jpn.store.held([report["id"]]) == []  # no version of it is held any more
    destroyed = jpn.store.find_audit(AuditFilter(kinds=("destroy",), originator="JPN"))
    assert sorted(parse_timestamp(v) for e in destroyed
                  for _, v in json.loads(e.body)["objects"]) == [
        parse_timestamp(report["modified"]), parse_timestamp(later["modified"])]


def _before_purging(node: Node, monkeypatch: pytest.MonkeyPatch,
                    act: Callable[[], None]) -> None:
    """Run ``act`` whenever the destruction calls ``node``'s store to purge: after it
    read what to destroy, where that is read before the purge's transaction, and before
    that transaction starts."""
    for name in ("purge", "purge_chosen"):
        real = getattr(node.store, name, None)
        if real is None:
            continue

        def purging(*args: Any, real: Callable[..., Any] = real, **kwargs: Any) -> Any:
            act()
            return real(*args, **kwargs)

        monkeypatch.setattr(node.store, name, purging)


@pytest.mark.parametrize("batch", [1, 100])
def test_an_object_first_received_as_the_destruction_runs_is_destroyed_too(
        jpn_nzl: list[Node], monkeypatch: pytest.MonkeyPatch, batch: int) -> None:
    """Regression: the destruction a termination requires read which objects were
    received, then purged them one by one: an object whose first version arrived in
    between (a push landing as the destruction ran) was kept in clear until the
    destruction ran again. The objects are chosen by the purge's own transactions (of
    one object each, the rows read two at a time, here; or of the default batch)."""
    jpn, nzl = jpn_nzl
    monkeypatch.setattr(controls_module, "DESTROY_BATCH", batch, raising=False)
    if batch == 1:  # and the rows read two at a time
        monkeypatch.setattr(sqlite_module, "PURGE_SCAN", 2, raising=False)
    first = publish(nzl, "received before", "SECRET", ("JPN",))
    with serving_federation(jpn):
        assert push(nzl, "JPN") >= 1
    landed: list[dict[str, Any]] = []

    def land() -> None:
        if not landed:
            landed.append(publish(nzl, "received as the destruction runs", "SECRET", ("JPN",)))
            with serving_federation(jpn):
                assert push(nzl, "JPN") >= 1

    _before_purging(jpn, monkeypatch, land)
    count = jpn.controls.destroy_received("the agreement ended")
    assert landed
    assert jpn.store.held([first["id"]]) == []
    assert jpn.store.held([landed[0]["id"]]) == []  # destroyed too
    assert count == 3  # both objects and their marking
    told = sorted(n.object_id or "" for n in jpn.store.notices() if n.direction == "out")
    assert first["id"] in told and landed[0]["id"] in told
