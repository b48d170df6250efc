"""One item a partner fails on for ever (a 5xx to that one notice or compromise message,
every time) against everything else queued for it: a recall of another object, another
report, new objects. Real nodes on 127.0.0.1 over mutual TLS; the partner's own handler
fails for that one item (a bug of its own), and answers 500 as any unexpected failure."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from click.testing import CliRunner
from test_federation import publish, push

from intelpact.interfaces.cli import main
from intelpact.services.courier import Courier
from intelpact.services.federation import FederationError
from intelpact.services.node import Node
from intelpact.store.base import Query, timestamp, utc_now

from helpers import serving_federation


@pytest.fixture()
def jpn_nzl(jpn_nzl: list[Node]) -> list[Node]:
    """With NZL's analyst, cleared SECRET."""
    jpn_nzl[1].people.add("analyst", party="NZL", clearance="SECRET")
    return jpn_nzl


def fails_on(monkeypatch: pytest.MonkeyPatch, service: Any, *markers: str) -> list[str]:
    """Make ``service.receive`` (a partner node's handler of notices, or of compromise
    messages) fail on every request whose body names one of ``markers``: its listener
    answers 500, as for any bug of its own. Returns the markers of the requests it failed
    on, one per request, as they come."""
    real = service.receive
    failed: list[str] = []

    def receive(sender: str, body: Any) -> Any:
        named = [m for m in markers if m in json.dumps(body)]
        if named:
            failed.append(named[0])
            raise RuntimeError(f"a bug of this node's, on {named[0]}")
        return real(sender, body)

    monkeypatch.setattr(service, "receive", receive)
    return failed


def seen(node: Node, object_id: str) -> bool:
    return bool(node.get(node.people.as_person("officer"), object_id))


def rounds(node: Node, party: str, count: int, match: str) -> None:
    """``count`` delivery rounds from ``node`` to ``party``, as serve's lane runs them,
    each failing with ``match`` (the lane backs off after it)."""
    with Courier(node) as courier:
        for _ in range(count):
            with pytest.raises(FederationError, match=match):
                courier.deliver_round(party)


def test_a_notice_the_partner_fails_on_for_ever_holds_back_no_other(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """NZL answers 500 to the recall of one object, every time. Before, that stopped
    every round at it: the recall of another object queued after it, and every object
    published since, never reached NZL. Now they go; the failing recall is tried again
    every round, never given up (nothing is counted against it), and a later notice about
    the same object waits behind it (each object's notices in order)."""
    jpn, nzl = jpn_nzl
    stuck, other = (publish(jpn, name, "極秘", ("NZL",)) for name in ("stuck", "other"))
    officer = jpn.people.as_person("officer")
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        failed = fails_on(monkeypatch, nzl.controls, stuck["id"])
        jpn.controls.recall(officer, stuck["id"], reason="its holder fails on it")
        after = jpn.controls._queue("destroyed", "NZL", stuck["id"], {
            "object_id": stuck["id"], "in_reply_to": 5, "destroyed": []}, [])
        jpn.controls.recall(officer, other["id"], reason="queued behind the failing one")
        new = publish(jpn, "published after", "極秘", ("NZL",))
        rounds(jpn, "NZL", 3, "recall notice .*: 500 nothing was stored")
        assert not seen(nzl, other["id"]), "the recall of another object did not go"
        assert seen(nzl, new["id"]), "the objects published since did not go"
        assert seen(nzl, stuck["id"])  # its recall failed
        assert failed == [stuck["id"]] * 3  # tried again every round
        waiting = jpn.store.pending_notices("NZL", 10)
        assert [(n.kind, n.object_id) for n in waiting] == [("recall", stuck["id"]),
                                                            ("destroyed", stuck["id"])]
        assert waiting[0].attempts == 0 and "500" in (waiting[0].error or "")
        assert waiting[1].notice_id == after and waiting[1].error is None  # never sent
        monkeypatch.undo()  # NZL's bug is fixed: the recall goes
        with Courier(jpn) as courier, pytest.raises(
                FederationError, match=f"refused destroyed notice {after}"):
            courier.deliver_round("NZL")  # the malformed one behind it is refused
        assert not seen(nzl, stuck["id"])


def _recalled_while_failing(jpn: Node, nzl: Node, monkeypatch: pytest.MonkeyPatch
                            ) -> tuple[list[str], list[str]]:
    """Four objects JPN published and pushed to NZL (both serving), each then recalled
    while NZL fails on every notice about them (fails_on): their ids, and the list
    fails_on fills."""
    objects = [publish(jpn, f"object {n}", "極秘", ("NZL",)) for n in range(4)]
    officer = jpn.people.as_person("officer")
    push(jpn, "NZL")
    ids = [o["id"] for o in objects]
    failed = fails_on(monkeypatch, nzl.controls, *ids)
    for oid in ids:
        jpn.controls.recall(officer, oid, reason="to a partner failing on each")
    return ids, failed


def test_two_notices_failing_in_a_row_stop_the_round(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """A partner that fails on every request (a 500 each) is asked twice a round, not
    once for every item queued: the second failure in a row stops the round, as a
    partner unreachable stops it at the first. Items that failed before go after the
    others the round after, so two stuck ones in a row hold back nothing either once
    the partner answers the rest."""
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        ids, failed = _recalled_while_failing(jpn, nzl, monkeypatch)
        new = publish(jpn, "published after", "極秘", ("NZL",))
        rounds(jpn, "NZL", 1, "recall notice .*: 500 nothing was stored")
        assert failed == ids[:2]  # the round stopped at the second failure in a row
        assert not seen(nzl, new["id"])  # nor was anything pushed to it
        # NZL fails on the first two only, for ever; the two after them and the object go
        monkeypatch.undo()
        failed = fails_on(monkeypatch, nzl.controls, *ids[:2])
        rounds(jpn, "NZL", 2, "recall notice .*: 500 nothing was stored")
        assert seen(nzl, new["id"])
        assert [seen(nzl, oid) for oid in ids] == [True, True, False, False]
        assert sorted(failed) == sorted(ids[:2] * 2)  # each tried every round


def test_stuck_notices_are_each_tried_again_in_turn_with_nothing_else_to_send(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Four notices NZL fails on for ever, and nothing else to send: each round stops at
    its second failure (nothing answered well in it), so the retries start at the next
    one each round and each is tried again in turn. Before, the same first two were
    tried every round, and the others never again while nothing else went."""
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        ids, failed = _recalled_while_failing(jpn, nzl, monkeypatch)
        rounds(jpn, "NZL", 6, "recall notice .*: 500 nothing was stored")
        assert len(failed) == 12  # two a round
        assert set(failed[-6:]) == set(ids), failed  # the last three rounds: each of them


def test_a_compromise_message_the_partner_fails_on_for_ever_holds_back_no_other(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """JPN answers 500 to one compromise report of NZL's, every time. Before, every round
    stopped at it: NZL's other report, its notices and its objects never reached JPN. Now
    they go; the failing report is tried again every round, nothing counted against it."""
    jpn, nzl = jpn_nzl
    officer = nzl.people.as_person("officer")
    discovered = timestamp(utc_now() - dt.timedelta(hours=1))
    with serving_federation(jpn), serving_federation(nzl):
        stuck, other = (_shared_and_read(jpn, nzl, name) for name in ("stuck", "other"))
        (failing,) = nzl.compromise.file([stuck], what="a laptop stolen",
                                         discovered=discovered, officer=officer)
        (behind,) = nzl.compromise.file([other], what="a server breached",
                                        discovered=discovered, officer=officer)
        failed = fails_on(monkeypatch, jpn.compromise, failing.report_id)
        new = publish(nzl, "nz own, published after", "SECRET", ("JPN",))
        rounds(nzl, "JPN", 3, f"compromise report {failing.report_id}: 500 ")
        assert jpn.store.compromise_report(behind.report_id) is not None, \
            "the other report did not go"
        assert seen(jpn, new["id"]), "the objects published since did not go"
        assert jpn.store.compromise_report(failing.report_id) is None
        assert failed == [failing.report_id] * 3  # tried again every round
        (waiting,) = nzl.store.pending_compromise("JPN", 10)
        assert waiting.report_id == failing.report_id and waiting.attempts == 0
        assert "500" in (waiting.error or "")


def test_what_waits_for_a_partner_and_why_is_shown(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """`peer list` shows, for each partner, what waits to go to it and, for each message
    or notice that failed at its last try, the partner's last answer and whether it is
    counted (refusals, given up after 20) or tried every round (a 5xx). Before, a
    destruction receipt or reclassification failing round after round showed nowhere,
    and a recall failing so only as "not delivered yet" in `recalls`."""
    jpn, nzl = jpn_nzl
    stuck, other = (publish(jpn, name, "極秘", ("NZL",)) for name in ("stuck", "other"))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        fails_on(monkeypatch, nzl.controls, stuck["id"])
        jpn.controls.recall(jpn.people.as_person("officer"), stuck["id"],
                            reason="its holder fails on it")
        refused = jpn.controls._queue("destroyed", "NZL", other["id"], {
            "object_id": other["id"], "in_reply_to": 5, "destroyed": []}, [])
        rounds(jpn, "NZL", 2, "recall notice .*: 500 nothing was stored")
    listed = CliRunner().invoke(main, ["peer", "list", str(jpn.config.dir)])
    assert listed.exit_code == 0, listed.output
    text = " ".join(listed.output.split())
    (recall,) = [n for n in jpn.store.pending_notices("NZL", 10) if n.kind == "recall"]
    assert "Waiting to go to NZL: 0 compromise message(s), 2 notice(s); 2 failed at " \
        "their last try:" in text, text
    assert f"recall notice {recall.notice_id} about {stuck['id']}, queued {recall.made}: " \
        "NZL failed: 500 nothing was stored (not counted: tried again every round)" \
        in text, text
    assert f"destroyed notice {refused} about {other['id']}" in text, text
    assert "(refused 2 of 20 times)" in text, text
    recalls = CliRunner().invoke(main, ["recalls", str(jpn.config.dir)])
    assert "failed: 500" in " ".join(recalls.output.split()), recalls.output  # already


def _shared_and_read(jpn: Node, nzl: Node, name: str) -> str:
    """A JPN object at NZL, read there by the analyst (both serving)."""
    secret = publish(jpn, name, "極秘", ("NZL",))
    push(jpn, "NZL")
    nzl.find(nzl.people.as_person("analyst"), nzl.default_collection().collection_id,
             Query(ids=(secret["id"],)), via="object")
    return str(secret["id"])


def test_serve_sends_new_objects_at_once_beside_an_item_held_back(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve`'s lane backs off after a round in which an item failed, and tries it
    again at each retry, the wait doubling (to ``max_backoff``): the partner is not asked
    it four times a second. Before, everything else waited out the same backoff: with a
    notice failing for ever, each object published reached the partner up to
    ``max_backoff`` (30 s) late, for as long as it failed (27 s measured). Now new
    messages, notices and objects go at once, between the retries."""
    jpn, nzl = jpn_nzl
    stuck = publish(jpn, "stuck", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        failed = fails_on(monkeypatch, nzl.controls, stuck["id"])
        jpn.controls.recall(jpn.people.as_person("officer"), stuck["id"], reason="stuck")
        courier = Courier(jpn, push_interval=0.05, max_backoff=8.0)
        courier.start()
        try:
            deadline = time.monotonic() + 30
            while len(failed) < 4:  # backing off 0.5, 1, 2 s, then 4 s after this one
                assert time.monotonic() < deadline, failed
                time.sleep(0.05)
            tried = len(failed)
            new = publish(jpn, "published beside it", "極秘", ("NZL",))
            started = time.monotonic()
            while not seen(nzl, new["id"]):
                assert time.monotonic() - started < 2, "the new object waited the backoff"
                time.sleep(0.05)
            assert len(failed) == tried  # the failing one is not asked again meanwhile
        finally:
            courier.stop()
