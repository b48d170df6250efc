"""Federation under faults: real `intelpact serve` processes, real mutual TLS, SIGKILL.

The served pair of nodes (JPN and NZL) and the checks shared with
tests/services/test_faults.py live in tests/served.py. Every wait is bounded;
every process a test starts is killed in ``finally``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from intelpact.services.courier import Courier
from intelpact.services.node import Node

from helpers import serving_federation
from served import (
    Pair,
    assert_exactly_once_and_drained,
    bulk,
    indicators,
    keys,
    marking,
    wait_for,
)


@pytest.fixture()
def pair(tmp_path: Path) -> Iterator[Pair]:
    """No publication pool: the faults here are in federation, after publishing."""
    with Pair(tmp_path, pool=False) as p:
        yield p


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


def test_a_clock_that_goes_back_does_not_postpone_the_courier() -> None:
    """The courier's retries, pulls and gossip are due once their interval has passed,
    and also when the monotonic clock reads earlier than when they were last done (a
    faked clock was seen an hour back): never postponed by the size of the jump."""
    from intelpact.services.courier import _due

    assert not _due(now=102.0, last=100.0, interval=5.0)
    assert _due(now=105.0, last=100.0, interval=5.0)
    assert _due(now=100.0 - 3600, last=100.0, interval=5.0)
