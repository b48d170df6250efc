"""Federation under faults: real `intelpact serve` processes, real mutual TLS, SIGKILL.

Two nodes (JPN, NZL, the sample Japan–New Zealand agreement) live in a temporary
directory, each served by its own ``intelpact serve DIR`` process: the TAXII
API, the mutual-TLS federation listener and the courier. Objects are published
over JPN's TAXII API as a JPN publisher. What NZL holds is read straight from
its SQLite file (a concurrent WAL reader), so a test sees exactly the rows the
receiver committed, duplicates included.

Every wait is bounded; every process a test starts is killed in ``finally``.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from intelpact.model import load_agreement, national_marking
from intelpact.services.courier import Courier
from intelpact.services.federation import _public, make_card, verify_payload
from intelpact.services.node import Node
from intelpact.services.publish import object_version

from helpers import AGREEMENTS, T0, free_port, serving_federation

EXE = Path(sys.executable).parent / "intelpact"
TAXII = "application/taxii+json;version=2.1"
AGREEMENT = AGREEMENTS / "jpn-nzl.toml"
PW = "federation-faults-pw"


# -- a pair of served nodes ------------------------------------------------------------

class Pair:
    """JPN and NZL node directories with people and each other's cards pinned, and
    the `intelpact serve` processes this test started."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.dirs: dict[str, Path] = {}
        self.taxii: dict[str, str] = {}
        self.fed_port: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.all_procs: list[subprocess.Popen[bytes]] = []
        self.starts: dict[str, int] = {"JPN": 0, "NZL": 0}
        nodes = {}
        for party in ("JPN", "NZL"):
            port, fed = free_port(), free_port()
            node = Node.create(base / party.lower(), party=party, agreement_file=AGREEMENT,
                               tls=False, port=port, federation_port=fed)
            top = {"JPN": "機密", "NZL": "TOP SECRET"}[party]
            eyes = {"JPN": ["JPNEO"], "NZL": ["NZEO"]}[party]
            node.people.add("officer", party=party, clearance=top, caveats=eyes,
                            communities=list(node.agreement.communities),
                            roles=["analyst", "publisher", "security-officer"], password=PW)
            self.dirs[party] = node.config.dir
            self.taxii[party] = (f"http://127.0.0.1:{port}/intel/collections/"
                                 f"{node.default_collection().collection_id}/objects/")
            self.fed_port[party] = fed
            nodes[party] = node
        self.tokens = {p: n.people.issue_token("officer", "faults") for p, n in nodes.items()}
        nodes["JPN"].federation.add_peer(make_card(nodes["NZL"].identity))
        nodes["NZL"].federation.add_peer(make_card(nodes["JPN"].identity))
        for node in nodes.values():
            node.close()

    # processes
    def start(self, party: str) -> None:
        assert party not in self.procs or self.procs[party].poll() is not None
        self.starts[party] += 1
        log = self.base / f"{party.lower()}-serve-{self.starts[party]}.log"
        with log.open("wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen([str(EXE), "serve", str(self.dirs[party])],
                                    stdout=out, stderr=subprocess.STDOUT)
        self.procs[party] = proc
        self.all_procs.append(proc)
        self._wait_ready(party, proc, log)

    def _wait_ready(self, party: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + 30
        root = self.taxii[party].split("/intel/")[0] + "/taxii2/"
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{party} serve exited {proc.returncode}: "
                                     f"{log.read_text(errors='replace')[-2000:]}")
            try:
                httpx.get(root, timeout=2, trust_env=False)  # any answer: it is up
                with socket.create_connection(("127.0.0.1", self.fed_port[party]), timeout=2):
                    return
            except (httpx.HTTPError, OSError):
                pass
            assert time.monotonic() < deadline, f"{party} did not start in 30 s"
            time.sleep(0.05)

    def kill(self, party: str) -> None:
        proc = self.procs[party]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.all_procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.all_procs:
            with suppress(subprocess.TimeoutExpired):  # SIGKILL is not ignored
                proc.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.base.glob("*-serve-*.log")))

    # publishing over TAXII as the JPN (or NZL) officer
    def publish(self, party: str, objects: list[dict[str, Any]], batch: int = 500) -> None:
        headers = {"Accept": TAXII, "Content-Type": TAXII,
                   "Authorization": f"Bearer {self.tokens[party]}"}
        with httpx.Client(timeout=60, trust_env=False, headers=headers) as c:
            for i in range(0, len(objects), batch):
                chunk = objects[i:i + batch]
                r = c.post(self.taxii[party], content=json.dumps({"objects": chunk}).encode())
                assert r.status_code == 202, r.text[:500]
                status = r.json()
                assert status["failure_count"] == 0, status["failures"][:3]

    # reading the stores directly
    def db(self, party: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.dirs[party] / "node.db", timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def rows(self, party: str) -> dict[tuple[str, str], int]:
        """(object id, version) -> how many rows the store holds for it."""
        with self.db(party) as conn:
            found = conn.execute("SELECT object_id, version, count(*) FROM objects "
                                 "GROUP BY object_id, version").fetchall()
        conn.close()
        return {(oid, version): n for oid, version, n in found}

    def undelivered(self, sender: str, party: str) -> int:
        conn = self.db(sender)
        n = conn.execute("SELECT count(*) FROM outbox WHERE party = ? AND delivered IS NULL",
                         (party,)).fetchone()[0]
        conn.close()
        return int(n)

    def released(self, sender: str, party: str) -> set[tuple[str, str]]:
        conn = self.db(sender)
        found = conn.execute("SELECT o.object_id, o.version FROM outbox b JOIN objects o ON "
                             "o.seq = b.seq WHERE b.party = ?", (party,)).fetchall()
        conn.close()
        return {(a, b) for a, b in found}


@pytest.fixture()
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = Pair(tmp_path)
    try:
        yield p
    finally:
        p.stop_all()


def wait_for(check: Callable[[], bool], seconds: float, what: str,
             pair: Pair | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s: {what}\n"
                                 + (pair.logs() if pair else ""))
        time.sleep(0.05)


# -- objects ----------------------------------------------------------------------------

AGREEMENT_MODEL = load_agreement(AGREEMENT)


def marking(party: str, level: str, rel: tuple[str, ...] = (),
            caveats: tuple[str, ...] = ()) -> dict[str, Any]:
    return national_marking(AGREEMENT_MODEL, party, level, rel_to=rel or None,
                            caveats=caveats)


def indicators(n: int, marking_id: str, tag: str) -> list[dict[str, Any]]:
    return [{"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
             "created": T0, "modified": T0, "name": f"{tag} {i:05d}",
             "description": f"{tag}: relay infrastructure, item {i}",
             "indicator_types": ["malicious-activity"],
             "pattern": f"[ipv4-addr:value = '10.9.{(i >> 8) & 255}.{i & 255}']",
             "pattern_type": "stix", "valid_from": T0, "object_marking_refs": [marking_id]}
            for i in range(n)]


def keys(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(id, version) as the stores key them."""
    return {(o["id"], str(object_version(o))) for o in objects}


def assert_exactly_once_and_drained(pair: Pair, expected: set[tuple[str, str]]) -> None:
    """Every released object is at NZL exactly once, nothing else is, JPN's outbox
    for NZL has drained, and each release has NZL's verified, signed receipt."""
    rows = pair.rows("NZL")
    assert set(rows) == expected, (len(set(rows)), len(expected))
    assert set(rows.values()) == {1}
    assert pair.released("JPN", "NZL") == expected
    assert pair.undelivered("JPN", "NZL") == 0
    conn = pair.db("JPN")
    records = conn.execute("SELECT d.object_id, d.version, r.body FROM disseminations d "
                           "LEFT JOIN receipts r ON r.receipt_id = d.receipt_id "
                           "WHERE d.party = 'NZL'").fetchall()
    public = _public(conn.execute("SELECT public_key FROM peers WHERE party = 'NZL'")
                     .fetchone()[0])
    conn.close()
    assert {(oid, v) for oid, v, _ in records} == expected
    receipts: dict[str, Any] = {}
    for _, _, receipt in records:
        assert receipt, "a release without a receipt"
        receipts.setdefault(receipt, json.loads(receipt))
    held: set[str] = set()
    for signed in receipts.values():  # each distinct receipt: signed by NZL's pinned key
        assert signed["receipt"]["receiver"] == "NZL" and signed["receipt"]["sender"] == "JPN"
        assert verify_payload(public, signed["signature"], signed["receipt"])
        held |= {o["id"] for o in signed["receipt"]["objects"]}
    assert {oid for oid, _ in expected} <= held
    conn = pair.db("NZL")
    refused = conn.execute("SELECT party, object_id, reason FROM refusals").fetchall()
    conn.close()
    assert refused == []


def bulk(n: int, tag: str) -> list[dict[str, Any]]:
    m = marking("JPN", "秘", ("NZL",))
    return [m, *indicators(n, m["id"], tag)]


# -- the tests ----------------------------------------------------------------------------

def test_receiver_killed_mid_bulk_release_gets_everything_exactly_once(pair: Pair) -> None:
    objects = bulk(1600, "receiver-killed")
    expected = keys(objects)
    pair.start("JPN")
    pair.start("NZL")
    pair.publish("JPN", objects)
    # kill NZL as soon as the first batch has committed there, well before the last
    wait_for(lambda: len(pair.rows("NZL")) > 0, 30, "the first objects at NZL", pair)
    pair.kill("NZL")
    held = len(pair.rows("NZL"))
    assert 0 < held < len(expected), f"NZL held {held} of {len(expected)} when killed"
    time.sleep(1.0)  # JPN's pushes fail meanwhile
    pair.start("NZL")
    wait_for(lambda: len(pair.rows("NZL")) == len(expected)
             and pair.undelivered("JPN", "NZL") == 0, 50,
             "every object at NZL and JPN's outbox drained", pair)
    assert_exactly_once_and_drained(pair, expected)


def test_sender_killed_mid_delivery_gets_everything_across_exactly_once(pair: Pair) -> None:
    objects = bulk(1600, "sender-killed")
    expected = keys(objects)
    pair.start("NZL")
    pair.start("JPN")
    pair.publish("JPN", objects)  # committed at JPN (the 202s came back)
    wait_for(lambda: len(pair.rows("NZL")) > 0, 30, "the first objects at NZL", pair)
    pair.kill("JPN")
    held = len(pair.rows("NZL"))
    assert 0 < held < len(expected), f"NZL held {held} of {len(expected)} when JPN died"
    assert pair.undelivered("JPN", "NZL") > 0
    time.sleep(0.5)
    pair.start("JPN")
    wait_for(lambda: len(pair.rows("NZL")) == len(expected)
             and pair.undelivered("JPN", "NZL") == 0, 50,
             "every object at NZL and JPN's outbox drained", pair)
    assert_exactly_once_and_drained(pair, expected)


def test_a_partner_offline_for_a_while_catches_up_by_pull_then_push(pair: Pair) -> None:
    first = bulk(3, "before the outage")
    pair.start("JPN")
    pair.start("NZL")
    pair.publish("JPN", first)
    wait_for(lambda: pair.rows("NZL").keys() >= keys(first), 30, "the first objects", pair)
    wait_for(lambda: pair.undelivered("JPN", "NZL") == 0, 30, "the first receipts", pair)
    pair.kill("NZL")
    # NZL is offline for a while: JPN keeps publishing, its pushes fail and back off
    later = indicators(300, first[0]["id"], "during the outage")
    for i in range(0, 300, 100):
        pair.publish("JPN", later[i:i + 100])
        time.sleep(1.0)
    assert pair.undelivered("JPN", "NZL") == 300
    expected = keys(first) | keys(later)
    # Pull alone: JPN answers on its federation listener (no courier, so no push),
    # and NZL, back, catches up by paging JPN's outbox from its persisted cursor.
    pair.kill("JPN")
    jpn = Node.open(pair.dirs["JPN"])
    try:
        with serving_federation(jpn):
            pair.start("NZL")
            wait_for(lambda: set(pair.rows("NZL")) == expected, 30, "NZL caught up by pull",
                     pair)
        assert pair.undelivered("JPN", "NZL") == 300  # nothing was pushed: it was the pull
        conn = pair.db("NZL")
        cursor = conn.execute("SELECT cursor FROM pull_cursors WHERE party = 'JPN'").fetchone()
        conn.close()
        newest = max(oid for oid, _ in jpn.store.released_after("NZL", 0, 100_000))
        assert cursor is not None and cursor[0] == newest
    finally:
        jpn.close()
    # JPN back: its courier pushes the backlog; NZL already holds it and acknowledges
    pair.start("JPN")
    wait_for(lambda: pair.undelivered("JPN", "NZL") == 0, 30, "JPN's outbox drained", pair)
    assert_exactly_once_and_drained(pair, expected)


def test_nothing_forbidden_crosses_to_a_filtered_partner(pair: Pair) -> None:
    allowed_markings = [marking("JPN", "秘", ("NZL",)), marking("JPN", "指定なし", ("NZL",))]
    forbidden_markings = {
        "japan only": marking("JPN", "極秘"),
        "JPNEO": marking("JPN", "機密", (), ("JPNEO",)),
        "not covered": marking("JPN", "取扱注意", ("NZL",)),
    }
    allowed = [obj for m in allowed_markings for obj in [m, *indicators(20, m["id"], "ok")]]
    forbidden = [obj for name, m in forbidden_markings.items()
                 for obj in [m, *indicators(20, m["id"], f"FORBIDDEN-{uuid.uuid4().hex}")]]
    nz_allowed_marking = marking("NZL", "RESTRICTED", ("JPN",))
    nz_allowed = [nz_allowed_marking, *indicators(5, nz_allowed_marking["id"], "for japan")]
    nzeo = marking("NZL", "SECRET", (), ("NZEO",))
    nz_forbidden = [nzeo, *indicators(5, nzeo["id"], f"FORBIDDEN-NZEO-{uuid.uuid4().hex}")]
    # the forbidden words: every id (the forbidden marking-definitions' too), and
    # every marker in names and descriptions
    jp_words = {o["id"] for o in forbidden} | {
        o["name"].rsplit(" ", 1)[0] for o in forbidden if o["type"] == "indicator"}
    nz_words = {o["id"] for o in nz_forbidden} | {o["name"].rsplit(" ", 1)[0]
                                                  for o in nz_forbidden
                                                  if o["type"] == "indicator"}
    mixed = [x for pair_ in zip(allowed, forbidden, strict=False) for x in pair_]
    mixed += allowed[len(forbidden):] + forbidden[len(allowed):]
    pair.start("JPN")
    pair.start("NZL")
    # markings first, then the objects interleaved: one stream of mixed releases
    pair.publish("JPN", [o for o in mixed if o["type"] == "marking-definition"])
    pair.publish("JPN", [o for o in mixed if o["type"] != "marking-definition"], batch=7)
    pair.publish("NZL", nz_allowed + nz_forbidden)
    wait_for(lambda: set(pair.rows("NZL")) >= keys(allowed)
             and set(pair.rows("JPN")) >= keys(nz_allowed)
             and pair.undelivered("JPN", "NZL") == 0
             and pair.undelivered("NZL", "JPN") == 0, 40, "the exchange", pair)

    def clean(text: str, words: set[str]) -> None:
        leaked = sorted(w for w in words if w in text)
        assert not leaked, f"forbidden material crossed: {leaked[:5]}"

    # everything NZL holds, received or refused, every body in full
    conn = pair.db("NZL")
    nz_bodies = [r[0] for r in conn.execute("SELECT body FROM objects WHERE originator = 'JPN'")]
    nz_bodies += [r[0] for r in conn.execute("SELECT body FROM markings")]
    nz_refusals = conn.execute("SELECT * FROM refusals").fetchall()
    conn.close()
    assert nz_refusals == []  # nothing forbidden was even offered
    assert len(nz_bodies) >= len(allowed)
    clean("\n".join(nz_bodies), jp_words)
    # everything JPN queued, released and recorded as disseminated to NZL
    conn = pair.db("JPN")
    queued = [r[0] for r in conn.execute("SELECT o.body FROM outbox b JOIN objects o ON "
                                         "o.seq = b.seq WHERE b.party = 'NZL'")]
    recorded = conn.execute("SELECT d.object_id, r.body FROM disseminations d LEFT JOIN "
                            "receipts r ON r.receipt_id = d.receipt_id").fetchall()
    jp_bodies = [r[0] for r in conn.execute("SELECT body FROM objects WHERE originator = 'NZL'")]
    conn.close()
    assert keys(allowed) <= pair.released("JPN", "NZL")
    clean("\n".join(queued), jp_words)
    clean(json.dumps(recorded), jp_words)
    clean("\n".join(jp_bodies), nz_words)
    # what each node's outbox endpoint serves its partner, over mutual TLS, page by page
    for server, client, words in (("JPN", "NZL", jp_words), ("NZL", "JPN", nz_words)):
        caller = Node.open(pair.dirs[client])
        courier = Courier(caller)
        try:
            peer = caller.federation.peers()[server]
            after, pages, served = 0, 0, []
            while True:
                r = courier._request(peer, "GET", "/federation/collections/outbox/objects/"
                                     f"?next={after}&limit=7")
                assert r.status_code == 200, r.text[:300]
                served.append(r.text)
                page = r.json()
                pages += 1
                if not page.get("more"):
                    break
                after = int(page["next"])
                assert pages < 100
            clean("\n".join(served), words)
            got = {o["id"] for text in served for o in json.loads(text).get("objects", [])}
            assert got  # the endpoint did serve the allowed releases
            # and a page past the end says nothing, not even how much is withheld
            r = courier._request(peer, "GET", "/federation/collections/outbox/objects/"
                                 "?next=999999&limit=7")
            assert r.status_code == 200 and r.json() == {"more": False}
        finally:
            courier.stop()
            caller.close()


def test_the_marking_of_an_uncovered_level_does_not_cross(pair: Pair) -> None:
    uncovered = marking("JPN", "取扱注意", ("NZL",))
    covered = marking("JPN", "秘", ("NZL",))
    stays = indicators(2, uncovered["id"], f"FORBIDDEN-{uuid.uuid4().hex}")
    goes = indicators(2, covered["id"], "ok")
    pair.start("JPN")
    pair.start("NZL")
    pair.publish("JPN", [uncovered, covered, *stays, *goes])
    wait_for(lambda: set(pair.rows("NZL")) >= keys([covered, *goes])
             and pair.undelivered("JPN", "NZL") == 0, 30, "the exchange", pair)
    assert not {o["id"] for o in stays} & {oid for oid, _ in pair.rows("NZL")}
    assert uncovered["id"] not in {oid for oid, _ in pair.released("JPN", "NZL")}
