"""Faults, each a test (issue 8): SIGKILL during ingest, release, receipt and audit
integration; a full disk; partners' clocks apart; a partner down for an hour.

Real `intelpact serve` processes (tests/served.py), real SQLite files read directly,
the real `intelpact audit verify` command. After every fault: what was acknowledged
is stored exactly once with its audit events, the persisted statuses agree with the
store, the outbox has no duplicate or orphan, nothing is received twice, and the log
verifies. Every wait is bounded; every process a test starts is killed in ``finally``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from intelpact.crypto.eventmacs import EventMacs
from intelpact.services.node import Node
from intelpact.store.sqlite import SQLiteStore

from helpers import T0
from served import (
    Pair,
    assert_exactly_once_and_drained,
    audited,
    bulk,
    faketime_env,
    faketime_library,
    indicators,
    keys,
    marking,
    set_clock,
    wait_for,
)


@pytest.fixture()
def pair(tmp_path: Path) -> Iterator[Pair]:
    """The served pair for faults in federation and the audit log: no publication pool
    (what these tests publish goes in small envelopes, or before the fault)."""
    with Pair(tmp_path, pool=False) as p:
        yield p


@pytest.fixture()
def pooled_pair(tmp_path: Path) -> Iterator[Pair]:
    """The served pair as `serve` runs by default: large envelopes are prepared by the
    node's publication pool, for the faults during publishing."""
    with Pair(tmp_path) as p:
        yield p


def needs_faketime() -> None:
    if faketime_library() is None:
        reason = ("libfaketime is not installed (Debian: apt-get install faketime; .ci/run "
                  "installs it): the clock tests run a node under a skewed clock")
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)


# -- consistency after a crash --------------------------------------------------------------

def assert_node_consistent(pair: Pair, party: str, acknowledged: set[tuple[str, str]],
                           partner: str, *, verify: bool = True) -> None:
    """What ``party``'s store, outbox, statuses and log say agrees, and holds everything
    acknowledged exactly once."""
    rows = pair.rows(party)
    missing = acknowledged - set(rows)
    assert not missing, f"{len(missing)} acknowledged objects lost, e.g. {sorted(missing)[:2]}"
    assert set(rows.values()) <= {1}, "an object version stored twice"
    # every persisted status: its successes are stored (a status is written after them)
    for (body,) in pair.query(party, "SELECT body FROM statuses"):
        status = json.loads(body)
        assert status["success_count"] == len(status["successes"])
        stored = {(s["id"], s["version"]) for s in status["successes"]}
        assert stored <= set(rows), "a status names an object that is not stored"
    # the outbox: exactly one row per (object of ours, partner), none pointing nowhere
    own = pair.query(party, "SELECT seq FROM objects WHERE originator = ?", (party,))
    queued = pair.query(party, "SELECT seq, count(*) FROM outbox WHERE party = ? GROUP BY seq",
                        (partner,))
    assert {seq for seq, _ in queued} == {seq for (seq,) in own}
    assert {n for _, n in queued} <= {1}
    assert pair.query(party, "SELECT count(*) FROM outbox WHERE seq NOT IN "
                             "(SELECT seq FROM objects)") == [(0,)]
    assert pair.query(party, "PRAGMA foreign_key_check") == []
    # the log: a publish event for every object published here, and nothing else
    published = set(pair.query(party, "SELECT object_id, version FROM objects WHERE "
                                      "published_by IS NOT NULL"))
    assert audited(pair, party, "publish") == published
    assert acknowledged <= published
    if verify:
        pair.audit_verify(party)


def successes(response: httpx.Response) -> set[tuple[str, str]]:
    assert response.status_code == 202, response.text[:300]
    status = response.json()
    assert status["failure_count"] == 0, status["failures"][:3]
    return {(s["id"], s["version"]) for s in status["successes"]}


class Load:
    """Concurrent TAXII traffic at one node until stopped: one big envelope, several
    posters of small ones, and readers (whose audit events keep the group-committed
    writer busy). Records what was acknowledged (a 202)."""

    def __init__(self, pair: Pair, party: str, tag: str, big: int = 1200) -> None:
        self.pair, self.party = pair, party
        self.mark = marking(party, "秘", ("NZL",))
        self.big = indicators(big, self.mark["id"], f"{tag} big")
        self.acknowledged: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.tag = tag
        self.threads = [threading.Thread(target=self._post_big, daemon=True)]
        self.threads += [threading.Thread(target=self._post_small, args=(i,), daemon=True)
                         for i in range(3)]
        self.threads += [threading.Thread(target=self._read, daemon=True) for _ in range(2)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _ack(self, response: httpx.Response) -> None:
        if response.status_code == 202:  # the checks run in the test's thread
            with self.lock:
                self.acknowledged |= {(s["id"], s["version"])
                                      for s in response.json()["successes"]}

    def _post_big(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self._ack(self.pair.post(self.party, [self.mark, *self.big]))

    def _post_small(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            batch = indicators(40, self.mark["id"], f"{self.tag} poster {n}.{i}")
            i += 1
            try:
                self._ack(self.pair.post(self.party, [self.mark, *batch]))
            except httpx.HTTPError:
                if not self._go_on_after_a_cut():
                    return

    def _go_on_after_a_cut(self) -> bool:
        """A poster's request failed: here the node died, so the poster stops."""
        return False

    def _read(self) -> None:
        url = self.pair.taxii[self.party] + "?limit=50"
        headers = {k: v for k, v in self.pair.headers(self.party).items()
                   if k != "Content-Type"}
        while not self.stop.is_set():
            try:
                httpx.get(url, headers=headers, timeout=30, trust_env=False)
            except httpx.HTTPError:
                return


# -- SIGKILL during ingest ----------------------------------------------------------------

def test_sigkill_during_ingest_loses_nothing_acknowledged(pooled_pair: Pair) -> None:
    pair = pooled_pair
    acknowledged: set[tuple[str, str]] = set()
    for round_, delay in enumerate((0.3, 1.0, 2.0)):  # early, mid-envelope, later
        pair.start("JPN")
        with Load(pair, "JPN", f"ingest round {round_}") as load:
            time.sleep(delay)
            pair.kill("JPN")
        acknowledged |= load.acknowledged
        pair.start("JPN")
        print(f"killed after {delay} s: {len(load.acknowledged)} objects acknowledged")
        assert_node_consistent(pair, "JPN", acknowledged, "NZL", verify=False)
        # the client retries the big envelope: the rest is stored, nothing twice
        acknowledged |= successes(pair.post("JPN", [load.mark, *load.big]))
        assert_node_consistent(pair, "JPN", acknowledged | keys(load.big), "NZL")
        pair.kill("JPN")
    assert len(acknowledged) > 1200


# -- SIGKILL during release and receipt, repeatedly ------------------------------------------

def test_sigkill_of_sender_and_receiver_again_and_again_during_a_release(pair: Pair) -> None:
    objects = bulk(7200, "killed again and again")
    expected = keys(objects)
    pair.start("JPN")
    pair.publish("JPN", objects)
    pair.start("NZL")
    kills = 0
    for victim, after in (("NZL", 0.2), ("JPN", 0.5), ("NZL", 0.9), ("JPN", 0.1)):
        held = len(pair.rows("NZL"))

        def moved(held: int = held) -> bool:
            now = len(pair.rows("NZL"))
            return now > held or now == len(expected)

        wait_for(moved, 30, "more objects at NZL", pair)
        time.sleep(after)
        if len(pair.rows("NZL")) < len(expected):
            pair.kill(victim)
            kills += 1
            pair.start(victim)
    assert kills >= 2, "the release finished before the kills: make it bigger"
    wait_for(lambda: len(pair.rows("NZL")) == len(expected)
             and pair.undelivered("JPN", "NZL") == 0, 60,
             "every object at NZL and JPN's outbox drained", pair)
    assert_exactly_once_and_drained(pair, expected)
    # the release events name nothing more than the outbox
    assert audited(pair, "JPN", "release") == expected


# -- SIGKILL during audit integration --------------------------------------------------------

def test_sigkill_during_audit_integration_and_checkpoint(pair: Pair) -> None:
    # many events pending: the node's own read events, appended and not yet integrated.
    # The integrator takes them 32 at a time (STEP_EVENTS): 30,000 keep it busy for
    # seconds, well past both kills below
    jpn = Node.open(pair.dirs["JPN"])
    try:
        officer = jpn.people.as_person("officer").person
        events = [jpn.audit.event("read", person=officer, originator="JPN",
                                  objects=[(f"indicator--{uuid.UUID(int=i)}", T0)], via="test")
                  for i in range(30_000)]
    finally:
        jpn.close()  # integrates and signs what it appended (nothing new)
    store = SQLiteStore(pair.dirs["JPN"] / "node.db")
    # appended as the node appends them, with its MACs (a test's shortcut, not an insider)
    store.event_macs = EventMacs.read(pair.dirs["JPN"] / "keys" / "audit-events.key")
    try:
        for i in range(0, len(events), 10_000):
            store.append_audit(events[i:i + 10_000])
        total = store.audit_size()
    finally:
        store.close()
    def integrated() -> int:
        return int(pair.query("JPN", "SELECT count(*) FROM audit_nodes WHERE level = 0")[0][0])

    before = integrated()
    assert total - before == len(events)  # every one pending
    signed = pair.query("JPN", "SELECT count(*) FROM audit_checkpoints")  # at close

    objects = bulk(30, "published while integrating")
    started = time.monotonic()
    pair.start("JPN")
    # mid-tree: the first batch committed, the rest not, a publish waiting for the lock
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(pair.post, "JPN", objects)
        wait_for(lambda: integrated() > before, 60, "the integrator's first batch", pair)
        at_kill = integrated()
        pair.kill("JPN")
    print(f"killed {time.monotonic() - started:.1f} s after start, {at_kill} of {total} "
          "events integrated")
    assert at_kill < total, "integration finished before the kill: add events"
    acknowledged: set[tuple[str, str]] = set()
    with contextlib.suppress(httpx.HTTPError):
        answer = posted.result()
        if answer.status_code == 202:
            acknowledged = successes(answer)
    assert pair.query("JPN", "SELECT count(*) FROM audit_checkpoints") == signed  # none new
    # again, at once after start (integrating, or signing the first checkpoint)
    pair.start("JPN")
    time.sleep(0.5)
    pair.kill("JPN")
    pair.start("JPN")
    wait_for(lambda: pair.query("JPN", "SELECT max(size) FROM audit_checkpoints")[0][0]
             is not None and pair.query("JPN", "SELECT max(size) FROM audit_checkpoints")[0][0]
             >= total, 90, "a checkpoint over every event", pair)
    assert_node_consistent(pair, "JPN", acknowledged, "NZL")


# -- a full disk -------------------------------------------------------------------------------

@contextlib.contextmanager
def small_disk(where: Path) -> Iterator[str]:
    """A 4 MiB tmpfs at ``where`` (yields "tmpfs"), or, where mounting is not allowed,
    a plain directory whose serving process gets a file size limit ("rlimit")."""
    where.mkdir()
    mounted = "INTELPACT_TEST_NO_TMPFS" not in os.environ and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
        capture_output=True, check=False).returncode == 0
    print(f"full disk by: {'a 4 MiB tmpfs' if mounted else 'RLIMIT_FSIZE (no tmpfs mount)'}")
    try:
        yield "tmpfs" if mounted else "rlimit"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_is_a_clear_error_and_corrupts_nothing(tmp_path: Path) -> None:
    with small_disk(tmp_path / "small") as how, \
            Pair(tmp_path, dirs={"JPN": tmp_path / "small" / "jpn"}) as pair:
        db = pair.dirs["JPN"] / "node.db"
        limit = db.stat().st_size + 1_500_000 if how == "rlimit" else None
        pair.start("JPN", fsize=limit)
        mark = marking("JPN", "秘", ("NZL",))
        acknowledged: set[tuple[str, str]] = set()
        refused: list[dict[str, Any]] = []
        answer = None
        for i in range(200):  # until the store cannot grow
            batch = indicators(150, mark["id"], f"filling {i} " + "x" * 400)
            answer = pair.post("JPN", [mark, *batch])
            if answer.status_code != 202:
                refused = batch
                break
            acknowledged |= successes(answer)
        assert answer is not None and refused, "the disk never filled"
        # the TAXII error shape, saying what is full and ending with the fix
        assert answer.status_code == 507, answer.text[:500]
        assert answer.headers["content-type"].startswith("application/taxii+json")
        error = answer.json()
        assert error["title"] == "Insufficient Storage" and error["http_status"] == "507"
        assert error["error_code"] == "store-full"
        text = error["description"]
        print(f"after {len(acknowledged)} objects: {text}")
        assert "cannot grow" in text and "full" in text, text
        assert "Hint: free space on the disk" in text and text.endswith("'already stored'")
        # all or nothing: one envelope of fewer than 500 objects is one transaction
        held = set(pair.rows("JPN"))
        stored = keys(refused) & held
        if "every object was stored" in text:  # only its status resource failed
            assert stored == keys(refused)
        else:
            assert stored == set(), f"{len(stored)} of the refused envelope were stored"
        # a read is audited first; with no room for its event, nothing is served
        read = httpx.get(pair.taxii["JPN"], headers=pair.headers("JPN"), timeout=30,
                         trust_env=False)
        assert read.status_code in (200, 507), read.text[:300]
        print(f"a read meanwhile: {read.status_code}")
        # room again: grow the tmpfs (or restart without the limit)
        if how == "tmpfs":
            subprocess.run(["mount", "-o", "remount,size=64m", str(tmp_path / "small")],
                           check=True)
        else:
            pair.kill("JPN")
            pair.start("JPN")
        acknowledged |= successes(pair.post("JPN", [mark, *refused]))
        acknowledged |= successes(pair.post("JPN", [mark, *indicators(50, mark["id"],
                                                                      "after")]))
        assert_node_consistent(pair, "JPN", acknowledged, "NZL")
        assert pair.query("JPN", "PRAGMA integrity_check") == [("ok",)]


# -- clocks apart ------------------------------------------------------------------------------

def exchange_both_ways(pair: Pair, tag: str, n: int = 40) -> tuple[set[tuple[str, str]],
                                                                   set[tuple[str, str]]]:
    jp, nz = bulk(n, f"{tag} from JPN"), bulk(n, f"{tag} from NZL", party="NZL")
    pair.publish("JPN", jp)
    pair.publish("NZL", nz)
    return keys(jp), keys(nz)


def test_clocks_apart_within_tolerance_lose_and_duplicate_nothing(pair: Pair) -> None:
    needs_faketime()
    ahead = faketime_env(offset="+4m")  # NZL's clock 4 minutes ahead (5 are tolerated)
    # push, both ways
    pair.start("JPN")
    pair.start("NZL", env=ahead)
    to_nz, to_jp = exchange_both_ways(pair, "pushed")
    wait_for(lambda: pair.undelivered("JPN", "NZL") == 0 and pair.undelivered("NZL", "JPN")
             == 0, 40, "both pushes acknowledged", pair)
    # pull, both ways: the sender's listener alone (no courier), the other pages it
    pair.kill("NZL")
    jp_pulled = bulk(30, "pulled from JPN")
    pair.publish("JPN", jp_pulled)
    pair.kill("JPN")
    pair.start("JPN", federation_only=True)
    pair.start("NZL", env=ahead)
    wait_for(lambda: set(pair.rows("NZL")) >= keys(jp_pulled), 40, "NZL pulled JPN", pair)
    assert pair.undelivered("JPN", "NZL") == len(keys(jp_pulled) - to_nz)  # pulled, not pushed
    pair.kill("JPN")
    nz_pulled = bulk(30, "pulled from NZL", party="NZL")
    pair.publish("NZL", nz_pulled)
    pair.kill("NZL")
    pair.start("NZL", env=ahead, federation_only=True)
    pair.start("JPN")
    wait_for(lambda: set(pair.rows("JPN")) >= keys(nz_pulled), 40, "JPN pulled NZL", pair)
    assert pair.undelivered("NZL", "JPN") == len(keys(nz_pulled) - to_jp)
    # everyone back: the pushes of what was pulled are acknowledged, stored once
    pair.kill("NZL")
    pair.start("NZL", env=ahead)
    wait_for(lambda: pair.undelivered("JPN", "NZL") == 0 and pair.undelivered("NZL", "JPN")
             == 0, 40, "both outboxes drained", pair)
    assert_exactly_once_and_drained(pair, to_nz | keys(jp_pulled), "JPN", "NZL")
    assert_exactly_once_and_drained(pair, to_jp | keys(nz_pulled), "NZL", "JPN")


def test_clocks_too_far_apart_are_refused_clearly_then_everything_arrives_once(
        pair: Pair) -> None:
    needs_faketime()
    pair.start("JPN")
    pair.start("NZL", env=faketime_env(offset="+10m"))  # over the 5 minutes tolerated
    to_nz, to_jp = exchange_both_ways(pair, "skewed")
    refusal = re.compile(r"request is dated \S+, \d+ s (ahead of|behind) this node's clock")
    wait_for(lambda: bool(refusal.search(pair.log_text("NZL")))
             and bool(refusal.search(pair.log_text("JPN"))), 30,
             "each side refused the other's requests, naming the clock", pair)
    time.sleep(3)  # a few more refused rounds (backoff 0.5, 1, 2 s)
    # the courier warns of the first refusal of a run (then of another kind only): a push
    # or a pull, whichever came first, with NZL's reason
    assert re.search(r"NZL refused the (delivery|pull): 403 .*request is dated",
                     pair.log_text("JPN"))
    assert not set(pair.rows("NZL")) & to_nz and not set(pair.rows("JPN")) & to_jp
    # a clock is not a refusal of the objects: nothing is counted towards giving up
    for sender, party in (("JPN", "NZL"), ("NZL", "JPN")):
        assert pair.query(sender, "SELECT max(attempts) FROM outbox WHERE party = ?",
                          (party,)) == [(0,)]
    # NZL's clock is set right. (Not while it runs: libfaketime would move its monotonic
    # clock back too, which no real clock does, and every timed wait would last 10 min.)
    date_added_before = pair.query("NZL", "SELECT max(date_added) FROM objects")[0][0]
    pair.kill("NZL")
    pair.start("NZL")
    wait_for(lambda: pair.undelivered("JPN", "NZL") == 0 and pair.undelivered("NZL", "JPN")
             == 0, 60, "both outboxes drained once the clock is right", pair)
    assert_exactly_once_and_drained(pair, to_nz, "JPN", "NZL")
    assert_exactly_once_and_drained(pair, to_jp, "NZL", "JPN")
    # NZL's date_added kept increasing although its clock went back 10 minutes
    added = [a for (a,) in pair.query("NZL", "SELECT date_added FROM objects ORDER BY seq")]
    assert added == sorted(added) and len(set(added)) == len(added)
    assert added[-1] > date_added_before


# -- a partner down for an hour ------------------------------------------------------------------

def test_a_partner_down_for_an_hour_gets_everything_once(pair: Pair, tmp_path: Path) -> None:
    needs_faketime()
    clock = tmp_path / "jpn-clock"
    set_clock(clock, "+0")
    pair.start("JPN", env=faketime_env(file=clock))
    pair.start("NZL")
    recalled, nz_obj = bulk(1, "to be recalled"), bulk(1, "lost at JPN", party="NZL")
    pair.publish("JPN", recalled)
    pair.publish("NZL", nz_obj)
    wait_for(lambda: pair.undelivered("JPN", "NZL") == 0 and pair.undelivered("NZL", "JPN")
             == 0 and set(pair.rows("JPN")) >= keys(nz_obj), 40, "the first exchange", pair)
    pair.kill("NZL")
    # while NZL is down: objects, a recall notice, a compromise report
    during = bulk(200, "during the outage")
    pair.publish("JPN", during)
    jpn_dir = str(pair.dirs["JPN"])
    pair.cli("JPN", "recall", jpn_dir, recalled[1]["id"], "--reason", "source at risk",
             "--as", "officer")
    discovered = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pair.cli("JPN", "compromise", "report", jpn_dir, "--object", nz_obj[1]["id"],
             "--what", "a laptop was lost", "--discovered", discovered, "--as", "officer")
    # an hour passes, in six jumps of ten minutes, while JPN keeps trying: after each
    # jump its next retry is due at once, and the test waits for it (at the default log
    # level, only the first failure and a reminder each ten minutes are logged: those)
    def retries() -> list[float]:
        return [float(x) for x in re.findall(r"federation with NZL: .*unreachable.*"
                                             r"\(retry in ([\d.]+)s\)", pair.log_text("JPN"))]

    for minutes in range(10, 61, 10):
        tried = len(retries())
        set_clock(clock, f"+{minutes}m")
        wait_for(lambda tried=tried: len(retries()) > tried, 30,
                 f"JPN to try NZL again at +{minutes}m", pair)
    assert len(retries()) >= 6, pair.logs()
    assert max(retries()) <= 30.0  # the backoff is capped
    # unreachable is not a refusal: nothing given up, nothing counted
    assert pair.query("JPN", "SELECT count(*), max(attempts) FROM notices WHERE direction = "
                             "'out' AND delivered IS NULL") == [(1, 0)]
    assert pair.query("JPN", "SELECT count(*), max(attempts) FROM compromise_messages "
                             "WHERE delivered IS NULL") == [(1, 0)]
    assert pair.query("JPN", "SELECT max(attempts) FROM outbox") == [(0,)]
    # NZL comes back (its clock an hour on too): everything arrives, once, in bounded time
    back = time.monotonic()
    pair.start("NZL", env=faketime_env(offset="+1h"))
    # JPN's clock moves on by the longest backoff (30 s, checked above): its next retry
    # is due now, rather than up to 30 s of the test's time later
    set_clock(clock, "+3630")
    wait_for(lambda: pair.undelivered("JPN", "NZL") == 0
             and pair.query("JPN", "SELECT count(*) FROM notices WHERE direction = 'out' "
                                   "AND delivered IS NULL") == [(0,)]
             and pair.query("JPN", "SELECT count(*) FROM compromise_messages WHERE "
                                   "delivered IS NULL") == [(0,)], 60,
             "the backlog delivered", pair)
    print(f"the partner caught up {time.monotonic() - back:.1f} s after it came back")
    log = pair.log_text("JPN")
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ WARNING intelpact.courier: federation "
                     r"with NZL: still failing \(\d+ tries since \S+Z\): NZL unreachable", log,
                     re.MULTILINE), log
    assert "INFO intelpact.courier: federation with NZL: reached again after " in log
    assert_exactly_once_and_drained(pair, keys(recalled) | keys(during), "JPN", "NZL")
    # the recall was applied (a tombstone), the report received once
    assert pair.query("NZL", "SELECT count(*) FROM objects WHERE object_id = ? AND recalled "
                             "IS NOT NULL", (recalled[1]["id"],)) == [(1,)]
    assert pair.query("NZL", "SELECT count(*) FROM compromise_reports WHERE direction = "
                             "'incoming'") == [(1,)]
    assert pair.query("NZL", "SELECT count(*) FROM notices WHERE direction = 'in' AND "
                             "kind = 'recall'") == [(1,)]
