"""The audit log: appends, integration, checkpoints, verification and tampering."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from intelpact.config import staged, write_config
from intelpact.crypto.checkpoint import parse_checkpoint, verify_note
from intelpact.crypto.merkle import leaf_hash, verify_consistency, verify_inclusion
from intelpact.interfaces.cli import main
from intelpact.model import load_agreement
from intelpact.services.audit import AuditError, Sampled, canonical
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import AuditFilter, Collection, Query, normalise_timestamp

from helpers import (
    AGREEMENTS,
    ON_POSTGRESQL,
    T0,
    copy_node,
    database_digest,
    indicator,
    insider,
    make_node,
    node_sql,
    sqlite_only,
)

T1 = "2026-11-02T00:00:00.000000Z"

PW = "audit-test-password"
TAXII = "application/taxii+json;version=2.1"


def _text(note: str) -> str:
    return note[: note.rfind("\n\n") + 1]


def _verify(node: Node) -> tuple[str, ...]:
    return node.audit.verify().problems


def _people(node: Node, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        node.people.add(f"person{i}", party="JPN", clearance="秘")


@pytest.fixture()
def node(tmp_path: Path) -> Node:
    n = make_node(tmp_path / "jpn")
    yield n
    n.close()


def test_events_are_durable_contiguous_and_canonical(node: Node) -> None:
    """Many threads appending at once: every event lands exactly once, at contiguous
    leaf indexes, in canonical JSON, and record() returns only once it is stored."""
    def work(t: int) -> None:
        for i in range(50):
            event = node.audit.event("login-failure", name=f"t{t}-{i}", reason="test")
            node.audit.record(event)
            assert node.store.find_audit(AuditFilter(persons=(event.person,)))  # durable now

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first, *events = node.store.audit_events(0, 10_000)
    assert first.kind == "node-init"  # every log starts with the node's own making
    assert [e.index for e in events] == list(range(1, 401))
    assert len({e.person for e in events}) == 400
    for e in events:
        data = json.loads(e.body)
        assert json.dumps(data, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False) == e.body
        assert data["kind"] == e.kind == "login-failure" and data["node"] == "JPN"


class _Writes:
    """The store's ``append_audit`` as _GroupCommit's tests see it: each batch is recorded
    (thread name, events), ``fail[0]`` is raised if set, and the first batch (``every``:
    each batch) is held until ``hold`` is set, telling ``holding``."""

    def __init__(self, *, every: bool) -> None:
        self.every = every
        self.batches: list[tuple[str, int]] = []
        self.hold, self.holding = threading.Event(), threading.Event()
        self.fail: list[BaseException] = []

    def __call__(self, events: list[object], wait: bool = True) -> int:
        if self.fail:
            raise self.fail[0]
        self.batches.append((threading.current_thread().name, len(events)))
        if self.every or len(self.batches) == 1:
            self.holding.set()
            assert self.hold.wait(10)
        return sum(n for _, n in self.batches) - len(events)


def test_group_commit_writes_on_the_caller_s_thread_and_batches_the_waiters() -> None:
    """An append alone is written by the thread that makes it (no hand-over to a writer
    thread); appends made while a transaction is under way wait and go together in the
    next one, written by one of their own threads; a failure reaches every waiter."""
    from intelpact.services.audit import _GroupCommit
    from intelpact.store.base import StoreFull

    write = _Writes(every=False)
    batches, hold, holding, fail = write.batches, write.hold, write.holding, write.fail
    commit = _GroupCommit(write)
    firsts: dict[str, int] = {}

    def append(name: str, n: int) -> None:
        firsts[name] = commit.append([object()] * n)

    first = threading.Thread(target=append, args=("a", 1), name="a")
    first.start()
    assert holding.wait(10)  # "a" is writing its own event, on its own thread
    waiting = [threading.Thread(target=append, args=(name, 2), name=name) for name in "bcd"]
    for t in waiting:
        t.start()
    while len(commit._waiting) < 3:  # all three queued behind "a"'s transaction
        threading.Event().wait(0.001)
    hold.set()
    for t in [first, *waiting]:
        t.join(10)
    assert batches[0] == ("a", 1)
    assert batches[1][0] in "bcd" and batches[1][1] == 6 and len(batches) == 2
    assert firsts["a"] == 0 and sorted(firsts[x] for x in "bcd") == [1, 3, 5]

    for error, expected in ((RuntimeError("disk on fire"), AuditError),
                            (StoreFull("full", hint="make room"), StoreFull)):
        fail[:] = [error]
        with pytest.raises(expected):
            commit.append([object()])
    commit.close()
    with pytest.raises(AuditError, match="closed"):
        commit.append([object()])


def test_group_commit_submit_does_not_wait_and_the_committer_writes_what_it_queued(
) -> None:
    """``submit`` on a quiet log writes on the caller's thread, as ``append``; behind a
    transaction it returns at once, and its events go in the next batch (with any
    ``append`` queued meanwhile), which the committer thread writes when no caller waits
    to. Its future carries the leaf index or the error; ``close`` drains the queue."""
    from intelpact.services.audit import _GroupCommit
    from intelpact.store.base import StoreFull

    write = _Writes(every=True)
    batches, hold, holding, fail = write.batches, write.hold, write.holding, write.fail
    commit = _GroupCommit(write)
    hold.set()
    quiet = commit.submit([object()])
    assert quiet.done() and quiet.result() == 0
    assert batches == [(threading.current_thread().name, 1)]

    def held(n: int) -> threading.Thread:  # a transaction under way until hold is set
        hold.clear()
        holding.clear()
        t = threading.Thread(target=commit.append, args=([object()] * n,), name="a")
        t.start()
        assert holding.wait(10)
        return t

    a = held(1)
    queued = commit.submit([object()] * 2)  # returns while "a" writes
    assert not queued.done()
    hold.set()
    a.join(10)
    assert queued.result(10) == 2
    assert batches[2] == ("audit-commit", 2)

    a = held(1)  # an append queued with submitted events writes them itself
    queued = commit.submit([object()] * 2)
    waiter = threading.Thread(target=commit.append, args=([object()] * 3,), name="w")
    waiter.start()
    while len(commit._waiting) < 2:
        threading.Event().wait(0.001)
    hold.set()
    for t in (a, waiter):
        t.join(10)
    assert queued.result(10) == 5 and batches[-1][1] == 5 and len(batches) == 5

    for error, expected in ((RuntimeError("disk on fire"), AuditError),
                            (StoreFull("full", hint="make room"), StoreFull)):
        fail[:] = [error]
        assert isinstance(commit.submit([object()]).exception(10), expected)
        fail.clear()
        a = held(1)
        fail[:] = [error]
        queued = commit.submit([object()])
        hold.set()
        a.join(10)
        assert isinstance(queued.exception(10), expected)  # from the committer
        fail.clear()

    a = held(1)
    queued = commit.submit([object()] * 4)
    closing = threading.Thread(target=commit.close)
    closing.start()
    closing.join(0.2)
    assert closing.is_alive() and not queued.done()  # close waits for the queue
    hold.set()
    closing.join(10)
    a.join(10)
    assert not closing.is_alive() and queued.result(0) >= 0 and batches[-1][1] == 4
    with pytest.raises(AuditError, match="closed"):
        commit.submit([object()])


def test_a_read_is_answered_only_once_its_event_is_durable(tmp_path: Path) -> None:
    """Over HTTP, on both ways a GET is handled (a worker thread, for a password not yet
    verified; the event loop, for a bearer token), the answer leaves only after the
    read's event is written; an event that cannot be written is a 503 without the
    object."""
    import httpx

    from helpers import serving

    node = make_node(tmp_path / "jpn")
    node.people.add("reader", party="JPN", clearance="機密", roles=["analyst", "publisher"],
                    communities=["MARITIME", "CLIMATE"], caveats=["JPNEO"], password=PW)
    publisher = node.people.as_person("reader").person
    cid = node.default_collection().collection_id
    ind = indicator("held")
    status = node.publisher.publish(publisher, cid, [ind], marking=MarkingRequest("秘", ("JPN",)))
    assert status.body["success_count"] == 2  # with its marking-definition
    token = node.people.issue_token("reader", "test")
    gate, writing = threading.Event(), threading.Event()
    fail: list[BaseException] = []
    write = node.audit._commit._write

    def gated(events: list, wait: bool = True) -> int | None:
        if any(e.kind == "read" for e in events):
            writing.set()
            assert gate.wait(10)
            if fail:
                raise fail[0]
        return write(events, wait=wait)

    node.audit._commit._write = gated
    ways = {"thread": {"auth": ("reader", PW)},  # the first Basic login: a worker thread
            "loop": {"headers": {"Accept": TAXII, "Authorization": f"Bearer {token}"}}}

    try:
        with serving(node) as url:
            def get(way: str) -> httpx.Response:
                return httpx.get(f"{url}/intel/collections/{cid}/objects/{ind['id']}/",
                                 **{"headers": {"Accept": TAXII}, **ways[way]}, timeout=20)

            for way in ways:
                before = node.store.audit_size()
                gate.clear()
                writing.clear()
                got: list[httpx.Response] = []
                t = threading.Thread(target=lambda: got.append(get(way)))  # noqa: B023
                t.start()
                assert writing.wait(10)
                t.join(0.3)
                assert t.is_alive() and not got, way  # not answered before it is written
                gate.set()
                t.join(10)
                assert got[0].status_code == 200 and ind["id"] in got[0].text, way
                assert "read" in [e.kind for e in node.store.audit_events(before, before + 9)]
            fail[:] = [RuntimeError("disk on fire")]
            for way in ways:
                r = get(way)
                assert r.status_code == 503 and ind["id"] not in r.text, way
    finally:
        gate.set()
        node.close()


@sqlite_only("PostgreSQL's append_audit always waits for the write lock: its reads are "
             "not local, so a read's event is written from a worker thread, never from "
             "the event loop")
def test_submit_does_not_wait_for_another_writer_of_the_store(tmp_path: Path) -> None:
    """``submit`` finds the SQLite store's write lock held, by a thread of this process
    or by another process (the flock), and returns at once: the committer writes the
    events when the lock is free. ``append`` and the store itself still wait."""
    import fcntl
    import os

    node = make_node(tmp_path / "jpn")
    store = node.store
    try:
        def held_by_a_thread() -> tuple[threading.Event, threading.Thread]:
            release, holding = threading.Event(), threading.Event()

            def hold() -> None:
                with store._write():
                    holding.set()
                    assert release.wait(10)
            t = threading.Thread(target=hold)
            t.start()
            assert holding.wait(10)
            return release, t

        other = os.open(store.path + ".writers", os.O_RDWR)  # another open file: as a process
        for holder in ("thread", "process"):
            if holder == "thread":
                release, t = held_by_a_thread()
            else:
                fcntl.flock(other, fcntl.LOCK_EX)
            assert store.append_audit([node.audit.event("login-failure", name="x")],
                                      wait=False) is None
            before = store.audit_size()
            event = node.audit.event("login-failure", name=f"held by a {holder}")
            future = node.audit._commit.submit([event])
            assert not future.done()  # this thread did not wait
            assert store.audit_size() == before
            if holder == "thread":
                release.set()
                t.join(10)
            else:
                fcntl.flock(other, fcntl.LOCK_UN)
            assert future.result(10) == before
            assert store.audit_events(before, before + 1)[0].body == event.body
        os.close(other)
    finally:
        node.close()


@contextmanager
def write_lock_held_elsewhere(node: Node) -> Iterator[None]:
    """The store's write lock held, until the block ends, as by another process: the
    flock of SQLite's ``node.db.writers`` through a file of its own, PostgreSQL's advisory
    WRITE_LOCK in a transaction of another session."""
    if ON_POSTGRESQL:
        import psycopg

        from intelpact.store.postgres import WRITE_LOCK

        with psycopg.connect(node.config.database) as other, other.transaction():
            other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield
        return
    import fcntl
    import os

    other = os.open(node.store.path + ".writers", os.O_RDWR)  # type: ignore[attr-defined]
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        yield
    finally:
        os.close(other)  # the lock with it


def test_the_event_loop_answers_others_while_a_read_waits_for_the_store(
        tmp_path: Path) -> None:
    """A GET (answered on the event loop on SQLite, with a bearer token; in a worker
    thread on PostgreSQL) whose event cannot be written because another process holds the
    store's write lock waits for it without holding up the loop: another request is
    answered meanwhile."""
    import httpx

    from intelpact.interfaces.openapi import TAXII_DOCUMENT_PATH

    from helpers import serving

    node = make_node(tmp_path / "jpn")
    node.people.add("reader", party="JPN", clearance="機密", roles=["analyst", "publisher"],
                    communities=["MARITIME"], password=PW)
    cid = node.default_collection().collection_id
    ind = indicator("held")
    node.publisher.publish(node.people.as_person("reader").person, cid, [ind],
                           marking=MarkingRequest("秘", ("JPN",)))
    token = node.people.issue_token("reader", "test")
    try:
        with serving(node) as url:
            got: list[httpx.Response] = []
            with write_lock_held_elsewhere(node):
                t = threading.Thread(target=lambda: got.append(httpx.get(
                    f"{url}/intel/collections/{cid}/objects/{ind['id']}/", timeout=20,
                    headers={"Accept": TAXII, "Authorization": f"Bearer {token}"})))
                t.start()
                t.join(0.3)
                assert t.is_alive() and not got  # its event is not written yet
                document = httpx.get(f"{url}{TAXII_DOCUMENT_PATH}", timeout=5, headers={
                    "Authorization": f"Bearer {token}"})
                assert document.status_code == 200  # the loop was free meanwhile
                assert t.is_alive() and not got
            t.join(10)
            assert got[0].status_code == 200 and ind["id"] in got[0].text
    finally:
        node.close()


def test_checkpoints_are_signed_c2sp_notes_over_rfc9162_roots(node: Node) -> None:
    _people(node, 5)  # after the node-init event: 6 events
    cp = node.audit.checkpoint()
    text = verify_note(cp.note, "intelpact/JPN/audit", node.signing_key.public_key())
    parsed = parse_checkpoint(text)
    assert parsed.origin == "intelpact/JPN/audit" and parsed.size == cp.size == 6
    leaves = [leaf_hash(e.body.encode()) for e in node.store.audit_events(0, 6)]
    from intelpact.crypto.merkle import root
    assert parsed.root == root(leaves)
    # no new events: no new checkpoint; new events: a consistent one
    assert node.audit.checkpoint() == cp
    _people(node, 3, start=5)
    cp2 = node.audit.checkpoint()
    new = parse_checkpoint(_text(cp2.note))
    assert new.size == 9
    verify_consistency(6, 9, parsed.root, new.root, node.audit.tree.consistency(6, 9))
    leaves = [leaf_hash(e.body.encode()) for e in node.store.audit_events(0, 9)]
    for i in range(9):
        verify_inclusion(i, 9, leaves[i], node.audit.tree.inclusion(i, 9), new.root)
    assert _verify(node) == ()


def test_a_new_log_records_the_node_s_making(node: Node) -> None:
    cp = node.audit.checkpoint()
    assert parse_checkpoint(_text(cp.note)).size == 1
    (made,) = node.store.audit_events(0, 1)
    body = json.loads(made.body)
    assert body["kind"] == "node-init" and body["agreement_hash"] == \
        node.agreement.content_hash
    assert _verify(node) == ()


def test_the_node_never_signs_a_tree_inconsistent_with_its_last_checkpoint(
        tmp_path: Path) -> None:
    node = make_node(tmp_path / "jpn")
    _people(node, 6)
    node.audit.checkpoint()
    node.close()
    node_sql(tmp_path / "jpn", "UPDATE audit_nodes SET hash = ? WHERE level = 2 AND idx = 0",
             (bytes(32),))  # an insider rewrites an integrated subtree hash
    again = Node.open(tmp_path / "jpn")
    try:
        _people(again, 2, start=6)
        with pytest.raises(AuditError, match="refusing to sign"):
            again.audit.checkpoint()
        assert len(again.store.checkpoints()) == 1
    finally:
        again.close()


def test_acts_are_audited_with_pseudonyms_and_reasons(node: Node) -> None:
    node.people.add("aki", party="JPN", clearance="極秘", roles=["analyst", "publisher"],
                    password=PW)
    node.people.add("low", party="JPN", clearance="取扱注意", password=PW)
    aki, low = node.people.as_person("aki"), node.people.as_person("low")
    cid = node.default_collection().collection_id
    obj = indicator("audited")
    node.publisher.publish(aki.person, cid, [obj], marking=MarkingRequest("秘", ("NZL",)))
    node.publisher.publish(low.person, cid, [indicator("too high")],
                           marking=MarkingRequest("極秘", ()))
    node.find(aki, cid, Query(ids=(obj["id"],)), via="object")
    node.find(low, cid, Query(ids=(obj["id"],)), via="object")
    with pytest.raises(Exception):  # noqa: B017 - AuthError
        node.people.login("aki", "wrong password!!")
    node.people.issue_token("aki")
    kinds = [e.kind for e in node.store.audit_events(0, 100)]
    assert kinds.count("person-add") == 2
    for kind in ("publish", "read", "deny", "login-failure", "token-issue"):
        assert kind in kinds, kind
    every = node.audit.pseudonyms.every("aki", node.agreement.parties)
    mine = node.store.find_audit(AuditFilter(persons=every))
    assert {e.kind for e in mine} >= {"person-add", "publish", "read", "login-failure",
                                      "token-issue"}
    for e in node.store.audit_events(0, 100):
        assert "aki" not in e.body and PW not in e.body  # pseudonyms only, no secrets
    (read,) = node.audit.find(AuditFilter(kinds=("read",), object_id=obj["id"]))
    body = json.loads(read.body)
    assert body["person"] == {"id": node.audit.pseudonyms.of("aki", "JPN"),
                              "nationality": "JPN", "clearance": "極秘"}
    assert body["via"] == "object" and body["originator"] == "JPN"
    denials = node.store.find_audit(AuditFilter(kinds=("deny",)))
    reasons = [json.loads(d.body)["reason"] for d in denials]
    assert any("clearance" in r for r in reasons), reasons  # read above clearance
    publish_denial = [json.loads(d.body) for d in denials
                      if json.loads(d.body).get("act") == "publish"]
    assert publish_denial and publish_denial[0]["person"]["clearance"] == "取扱注意"


def test_partners_are_shown_a_person_under_pseudonyms_they_cannot_join(
        tmp_path: Path) -> None:
    """An event about a partner's objects names the person by a pseudonym for that
    partner: two partners comparing what each was shown (partner audit, compromise
    reports) cannot follow one person across both. Here a search by person finds all."""
    node = make_node(tmp_path / "jpn")
    aki = node.policy.person("aki", "JPN", "極秘")
    audit = node.audit
    audit.record(*(audit.event("read", person=aki, originator=origin,
                               objects=[(f"indicator--{i}", "v")])
                   for i, origin in enumerate(("NZL", "AUS", None))))
    ids = [json.loads(e.body)["person"]["id"] for e in node.store.find_audit(
        AuditFilter(kinds=("read",)))]
    assert len(set(ids)) == 3
    assert ids == [audit.pseudonyms.of("aki", "NZL"), audit.pseudonyms.of("aki", "AUS"),
                   audit.pseudonyms.of("aki")]
    found = node.store.find_audit(AuditFilter(
        kinds=("read",), persons=audit.pseudonyms.every("aki", ("NZL", "AUS"))))
    assert len(found) == 3
    node.close()


def test_a_missing_id_and_a_hidden_one_are_both_audited_as_denials(node: Node) -> None:
    node.people.add("aki", party="JPN", clearance="極秘", roles=["publisher"])
    node.people.add("low", party="JPN", clearance="取扱注意")
    cid = node.default_collection().collection_id
    obj = indicator("hidden")
    node.publisher.publish(node.people.as_person("aki").person, cid, [obj],
                           marking=MarkingRequest("極秘", ()))
    low = node.people.as_person("low")
    before = node.store.audit_size()
    node.find(low, cid, Query(ids=(obj["id"],)))
    node.find(low, cid, Query(ids=("indicator--00000000-0000-4000-8000-000000000000",)))
    events = [json.loads(e.body) for e in node.store.audit_events(before, before + 10)]
    assert [e["kind"] for e in events] == ["deny", "deny"]
    assert events[0]["originator"] == "JPN" and "no such object" not in events[0]["reason"]
    assert events[1]["reason"] == "no such object" and "originator" not in events[1]


def test_only_what_access_refused_is_audited_as_denied(node: Node) -> None:
    """An id left to a later page, served on an earlier one, or left out by the request's
    other filters is no denial (it was audited as one, with the reason that every portion
    it needs was withheld, of a reader cleared for it); and an object served from one
    collection is no "no such object" in another."""
    node.people.add("aki", party="JPN", clearance="極秘", roles=["publisher"])
    node.people.add("low", party="JPN", clearance="秘")
    cid = node.default_collection().collection_id
    aki = node.people.as_person("aki").person
    a, b, hidden = indicator("A"), indicator("B"), indicator("hidden")
    node.publisher.publish(aki, cid, [a, b], marking=MarkingRequest("秘", ()))
    node.publisher.publish(aki, cid, [hidden], marking=MarkingRequest("極秘", ()))
    node.store.add_collection(Collection(str(uuid.uuid4()), "second", "another", None))
    low = node.people.as_person("low")
    before = node.store.audit_size()
    page, first = node.find(low, cid, Query(ids=(a["id"], b["id"]), limit=1))
    _, second = node.find(low, cid, dataclasses.replace(
        Query(ids=(a["id"], b["id"]), limit=1), cursor=page.next))
    assert [r.object_id for r, _ in first + second] == [a["id"], b["id"]]
    assert node.find(low, cid, Query(ids=(a["id"],), versions=(T1,)))[1] == []
    assert len(node.get(low, a["id"])) == 1  # served from one of the two collections
    assert node.get(low, hidden["id"]) == []
    events = [json.loads(e.body) for e in node.store.audit_events(before, before + 20)]
    denials = [(e["objects"], e["reason"]) for e in events if e["kind"] == "deny"]
    assert denials == [([[a["id"], ""]], "no such object"),  # no version T1 of it
                       ([[hidden["id"], normalise_timestamp(T0)]],
                        "clearance 秘 (CONFIDENTIAL) does not dominate 極秘 (SECRET)")]


def test_an_object_of_many_versions_does_not_crowd_out_another_asked_for(
        node: Node) -> None:
    """Both ids of a request for every version are audited as denied with their reason,
    however many versions one of them has (the other was looked for among the first
    rows the two shared, and audited as "no such object" when crowded out)."""
    node.people.add("aki", party="JPN", clearance="極秘", roles=["publisher"])
    node.people.add("low", party="JPN", clearance="秘")
    cid = node.default_collection().collection_id
    aki = node.people.as_person("aki").person
    many, other = indicator("many"), indicator("other")
    versions = [dict(many, modified=f"2026-11-01T00:{i // 60:02d}:{i % 60:02d}.000000Z")
                for i in range(120)]
    node.publisher.publish(aki, cid, [*versions, other], marking=MarkingRequest("極秘", ()))
    low = node.people.as_person("low")
    before = node.store.audit_size()
    assert node.find(low, cid, Query(ids=(many["id"], other["id"]), versions=("all",),
                                     limit=1))[1] == []
    events = [json.loads(e.body) for e in node.store.audit_events(before, before + 20)]
    denied = {oid for e in events if e["kind"] == "deny" for oid, _ in e["objects"]}
    reasons = {e["reason"] for e in events if e["kind"] == "deny"}
    assert denied == {many["id"], other["id"]}
    assert reasons == {"clearance 秘 (CONFIDENTIAL) does not dominate 極秘 (SECRET)"}


# -- tampering ------------------------------------------------------------------------------


@pytest.fixture()
def logged(tmp_path: Path) -> Path:
    """A node directory with 13 events (node-init, 12 people) and checkpoints at 8 and 13."""
    n = make_node(tmp_path / "jpn")
    _people(n, 7)
    n.audit.checkpoint()
    _people(n, 5, start=7)
    n.audit.checkpoint()
    n.close()
    return tmp_path / "jpn"


def _stored(node_dir: Path) -> int:
    """How many events the closed node's log holds (its store closed with it)."""
    (top,), = node_sql(node_dir, "SELECT max(idx) FROM audit_events")
    return 0 if top is None else int(top) + 1


def _tampered(logged: Path, tmp_path: Path,
              *statements: str | tuple[str, tuple[object, ...]]) -> tuple[str, ...]:
    """Verify a copy of ``logged`` (its database copied too) after running
    ``statements`` (SQL, or SQL and its parameters, bound to ``?``) on its database
    directly."""
    copy = tmp_path / "copy"
    shutil.rmtree(copy, ignore_errors=True)
    copy_node(logged, copy)
    try:
        for statement in statements:
            sql, params = (statement, ()) if isinstance(statement, str) else statement
            node_sql(copy, sql, params)
        node = Node.open(copy)
        try:
            return _verify(node)
        finally:
            node.close()
    finally:
        shutil.rmtree(copy)


def test_an_untouched_log_verifies(logged: Path, tmp_path: Path) -> None:
    assert _tampered(logged, tmp_path) == ()


def test_a_changed_event_is_caught_and_located(logged: Path, tmp_path: Path) -> None:
    problems = _tampered(logged, tmp_path, "UPDATE audit_events SET body = replace(body, "
                         "'\"clearance\":\"秘\"', '\"clearance\":\"極秘\"') WHERE idx = 3")
    assert "event 3 was altered: its body no longer hashes to the leaf integrated into the " \
           "tree" in problems
    assert any("checkpoint of size 8" in p for p in problems)


def test_a_deleted_event_is_caught(logged: Path, tmp_path: Path) -> None:
    problems = _tampered(logged, tmp_path, "DELETE FROM audit_events WHERE idx = 4")
    assert "events 4..4 are missing: the log was cut" in problems


def test_a_truncated_log_is_caught(logged: Path, tmp_path: Path) -> None:
    problems = _tampered(logged, tmp_path, "DELETE FROM audit_events WHERE idx >= 10")
    assert any("beyond the 10 events stored" in p for p in problems)


def test_the_last_events_before_a_close_cannot_be_cut_unseen(tmp_path: Path) -> None:
    """A command's events (opened, acted, closed: no server signing every 10 s) are
    signed at close, so cutting them from the end shows, as anywhere else."""
    node = make_node(tmp_path / "jpn")
    node.audit.checkpoint()
    _people(node, 3)
    node.close()
    appended = _stored(tmp_path / "jpn")
    problems = _tampered(tmp_path / "jpn", tmp_path,
                         f"DELETE FROM audit_events WHERE idx = {appended - 1}")
    assert any(f"beyond the {appended - 1} events stored" in p for p in problems)


def test_a_node_closed_twice_closes_once_quietly(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Regression: a second ``Node.close()`` (a command's ``finally`` after its own
    close, a test's fixture after the test's) integrated and signed again: on PostgreSQL
    on a pool closed already, logging "audit integration at close failed: the pool …
    is already closed"; on SQLite quietly, on a connection opened again and left open.
    The second close does nothing, on both stores."""
    node = make_node(tmp_path / "jpn")
    _people(node, 2)
    node.close()
    before = database_digest(tmp_path / "jpn")
    caplog.set_level(logging.DEBUG, logger="intelpact")
    node.close()
    assert [(r.levelname, r.getMessage()) for r in caplog.records
            if r.levelno >= logging.WARNING] == []
    assert database_digest(tmp_path / "jpn") == before  # nothing integrated or signed again


def test_reordered_events_are_caught(logged: Path, tmp_path: Path) -> None:
    problems = _tampered(
        logged, tmp_path,
        "UPDATE audit_events SET idx = -1 WHERE idx = 1",
        "UPDATE audit_events SET idx = 1 WHERE idx = 2",
        "UPDATE audit_events SET idx = 2 WHERE idx = -1")
    assert "event 1 was altered: its body no longer hashes to the leaf integrated into the " \
           "tree" in problems
    assert "event 2 was altered: its body no longer hashes to the leaf integrated into the " \
           "tree" in problems


DEEP = "[" * 100_000 + "]" * 100_000  # past the JSON decoder's recursion limit
# What SQLite alone keeps: PostgreSQL's columns hold only their own type, and its text
# only valid UTF-8 (the server refuses the write).
UNTYPED = sqlite_only("PostgreSQL's columns hold only their own type")
NOT_UTF8 = sqlite_only("PostgreSQL's text holds only UTF-8: it refuses other bytes")


@pytest.mark.parametrize(("statement", "said"), [
    pytest.param("UPDATE audit_events SET body = CAST(body AS BLOB) WHERE idx = 3",
                 "event 3: body is not text", marks=UNTYPED, id="blob body"),
    pytest.param("UPDATE audit_events SET body = replace(body, '\"v\":2', '\"v\":NaN') "
                 "WHERE idx = 3", "event 3: body is not in canonical form", id="NaN"),
    pytest.param(("UPDATE audit_events SET body = ? WHERE idx = 3", (DEEP,)),
                 "event 3: body is not JSON", id="nested deep"),
    pytest.param("UPDATE audit_checkpoints SET note = CAST(note AS BLOB) WHERE size = 8",
                 "its note is not text", marks=UNTYPED, id="blob note"),
    pytest.param("INSERT INTO audit_nodes VALUES (0, 'x', zeroblob(32))",
                 "audit_nodes holds 1 row(s) with a level or index that is not an integer",
                 marks=UNTYPED, id="text node index"),
    pytest.param("INSERT INTO audit_refs VALUES ('indicator--x', 'x')",
                 "audit_refs holds 1 row(s) with an event index that is not an integer",
                 marks=UNTYPED, id="text ref index"),
    pytest.param(("INSERT INTO audit_nodes VALUES (0, 1000, ?)", (bytes(32),)),
                 "the stored tree holds the leaf hash of event 1000, past the 13 events "
                 "stored", id="hash past the end"),
    pytest.param("INSERT INTO audit_events (idx, at, kind, body) VALUES (-1, 'x', 'read', "
                 "'{}')", "an event is stored at index -1, below the log's first (0): it "
                 "was added", id="negative index"),
    pytest.param("INSERT INTO audit_events (idx, at, kind, body) VALUES "
                 "(4611686018427387904, 'x', 'read', '{}')",
                 "events 13..4611686018427387903 are missing: the log was cut",
                 id="huge index"),
    pytest.param("UPDATE audit_events SET body = CAST(X'7BFF7D' AS TEXT) WHERE idx = 3",
                 "event 3: body is not text: its bytes are not UTF-8", marks=NOT_UTF8,
                 id="body not UTF-8"),
    pytest.param("UPDATE audit_events SET person = CAST(X'FF' AS TEXT) WHERE idx = 3",
                 "event 3: its person column (b'\\xff') differs from its body",
                 marks=NOT_UTF8, id="person not UTF-8"),
    pytest.param("UPDATE audit_checkpoints SET note = CAST(X'FF' AS TEXT) WHERE size = 13",
                 "its note is not text", marks=NOT_UTF8, id="note not UTF-8"),
    pytest.param("INSERT INTO audit_refs VALUES (CAST(X'FF' AS TEXT), 3)",
                 "event 3 is filed in the object index under 1 object(s) its body does not "
                 "name (b'\\xff'", marks=NOT_UTF8, id="ref not UTF-8"),
])
def test_whatever_an_insider_writes_into_the_tables_gets_a_verdict(
        logged: Path, tmp_path: Path, statement: str | tuple[str, tuple[object, ...]],
        said: str) -> None:
    """SQLite keeps a value of any type in any column, and an insider may write rows the
    log never had (on either store): each gets a problem that says what, not a traceback
    or a walk through every number up to a far index."""
    problems = _tampered(logged, tmp_path, statement)
    assert any(said in p for p in problems), problems


def test_alerts_deleted_added_or_resolved_beside_the_log_are_caught(node: Node) -> None:
    """An alert is raised with its `alert` event, and resolved only with its
    `alert-resolve` event: `audit verify` finds an alert deleted from the table the
    security officer reads, one added there, or one marked resolved (or open again)
    there."""
    node.audit.alert("history-rewritten", "NZL", "NZL signed two different roots")
    node.audit.alert("events-withheld", "NZL", "NZL left events out")
    node.audit.alert("retired-key", "AUS", "AUS signed past its bound")
    (_, second, third) = node.store.alerts()
    node.audit.resolve_alert(third[0], "rotated", actor="operator")
    assert node.check_kept() == (0, [])
    with node.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
        c.execute("DELETE FROM alerts WHERE kind = 'history-rewritten'")
        c.execute("UPDATE alerts SET resolved = 't', resolution = 'nothing to see' "
                  "WHERE kind = 'events-withheld'")
        c.execute("UPDATE alerts SET resolved = NULL, resolution = NULL "
                  "WHERE kind = 'retired-key'")
        c.execute("INSERT INTO alerts (kind, party, detail, raised) VALUES "
                  "('history-rewritten', 'FJI', 'made up', 't')")
    problems = node.check_kept()[1]
    assert [p.split(":")[0] for p in problems] == [
        "the alert history-rewritten (FJI", "the alert history-rewritten (NZL",
        f"alert #{second[0]} is shown resolved, but no alert-resolve event of this log "
        "resolved it so",
        f"alert #{third[0]} was resolved (an alert-resolve event of this log), but is shown "
        "open"], problems


def test_an_alert_swapped_with_a_resolved_one_is_caught(node: Node) -> None:
    """check_shown matched alerts to `alert` events by (kind, party, detail) as a
    multiset, and resolutions to `alert-resolve` events by alert id alone. An insider who
    swapped the kind, party and detail of an open `history-rewritten` alert with those of
    a resolved trivial one kept both multisets equal: the security officer was shown the
    rewrite resolved (with the trivial one's note) and the trivial one open, and `audit
    verify` said nothing. The `alert-resolve` event records which alert (kind, party,
    detail) it resolved: the alert shown resolved that no event resolved is named."""
    node.audit.alert("history-rewritten", "NZL", "NZL signed two different roots")
    node.audit.alert("retired-key", "AUS", "AUS signed past its bound (a test)")
    rewritten, minor = node.store.alerts()
    node.audit.resolve_alert(minor[0], "a drill, nothing to do", actor="operator")
    assert node.check_kept() == (0, [])
    insider(node, "UPDATE alerts SET kind = ?, party = ?, detail = ? WHERE alert_id = ?",
            (rewritten[1], rewritten[2], rewritten[3], minor[0]))
    insider(node, "UPDATE alerts SET kind = ?, party = ?, detail = ? WHERE alert_id = ?",
            (minor[1], minor[2], minor[3], rewritten[0]))
    shown = {a[0]: a[1] for a in node.store.alerts()}
    assert shown[minor[0]] == "history-rewritten" and minor[0] in node.store.alert_resolutions()
    assert node.check_kept()[1] == [
        f"alert #{minor[0]} is shown resolved, but no alert-resolve event of this log "
        "resolved it so: it was marked here"]


@NOT_UTF8
def test_an_alert_altered_into_bytes_that_are_not_utf8_is_caught(node: Node) -> None:
    """SQLite keeps such bytes in a text column; sqlite3 refuses to read them: the
    security officer still gets the list of alerts, and verify says which was altered."""
    node.audit.alert("history-rewritten", "NZL", "NZL signed two different roots")
    with node.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
        c.execute("UPDATE alerts SET detail = CAST(X'FF' AS TEXT)")
    assert [a[3] for a in node.store.alerts()] == [b"\xff"]
    assert node.check_kept()[1] == [
        "the alert history-rewritten (NZL: b'\\xff'…) is shown to the security officer, but "
        "no alert event of this log raised it: it was added here",
        "the alert history-rewritten (NZL: NZL signed two different roots…) of this log is "
        "not among the alerts shown to the security officer: it was deleted here"]


def test_an_altered_subtree_hash_and_a_forged_checkpoint_are_caught(
        logged: Path, tmp_path: Path) -> None:
    problems = _tampered(logged, tmp_path, ("UPDATE audit_nodes SET hash = ? WHERE level = 1 "
                                            "AND idx = 2", (bytes(32),)))
    assert "the stored hash of the subtree over events 4..5 was altered" in problems
    problems = _tampered(logged, tmp_path, ("UPDATE audit_checkpoints SET note = "
                                            "replace(note, ?, ?)", ("audit\n8", "audit\n7")))
    assert any("not validly signed" in p for p in problems)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_changed_in_any_event_fails_verification(
        logged: Path, tmp_path: Path, data: st.DataObject) -> None:
    node = Node.open(logged)
    bodies = [e.body for e in node.store.audit_events(0, 13)]
    node.close()
    index = data.draw(st.integers(0, 12))
    body = bodies[index].encode()
    at = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = body[:at] + bytes([body[at] ^ flip]) + body[at + 1:]
    value: bytes | str = changed  # as text, NUL and broken UTF-8 included
    if ON_POSTGRESQL:  # whose text is UTF-8 without NUL: it refuses any other
        value = changed.decode(errors="replace")
        assume(value.encode() == changed and "\0" not in value)
    problems = _tampered(logged, tmp_path,
                         ("UPDATE audit_events SET body = CAST(? AS TEXT) WHERE idx = ?",
                          (value, index)))
    assert problems, (index, at)
    assert any(f"event {index}" in p for p in problems)


def test_every_prefix_is_consistent_with_the_whole(node: Node) -> None:
    _people(node, 20)
    size, root = node.audit.integrate()
    assert size == 21
    for m in range(1, 22):
        old_root = node.audit.tree.root(m)
        verify_consistency(m, 21, old_root, root, node.audit.tree.consistency(m, 21))


def test_the_background_integrator_s_steps_build_the_same_signed_tree(node: Node) -> None:
    """In steps (a few events per transaction, pausing between), as the background thread
    integrates, the tree and its checkpoint are those of one transaction."""
    from intelpact.crypto.merkle import root
    from intelpact.services.audit import STEP_EVENTS

    _people(node, 2 * STEP_EVENTS + 5)
    size, tree_root = node.audit.integrate(sign=True, force=True, steps=True)
    assert size == 2 * STEP_EVENTS + 6 == node.store.audit_size()
    leaves = [leaf_hash(e.body.encode()) for e in node.store.audit_events(0, size)]
    assert tree_root == root(leaves)
    latest = node.audit.latest()
    assert latest is not None and parse_checkpoint(_text(latest.note)).size == size
    assert _verify(node) == ()


def test_the_object_index_is_verified_event_by_event(tmp_path: Path) -> None:
    """``audit show --object``, the console's object filter and a compromise report's
    access history search the object index (audit_refs); a row deleted from it hides the
    event from all three, and one added files an event under an object it does not name."""
    node = make_node(tmp_path / "jpn")
    node.people.add("aki", party="JPN", clearance="極秘", roles=["analyst", "publisher"],
                    password=PW)
    aki = node.people.as_person("aki")
    cid = node.default_collection().collection_id
    obj = indicator("watched")
    node.publisher.publish(aki.person, cid, [obj], marking=MarkingRequest("秘", ()))
    node.find(aki, cid, Query(ids=(obj["id"],)), via="object")
    node.audit.checkpoint()
    (read,) = node.audit.find(AuditFilter(object_id=obj["id"], kinds=("read",)))
    size = node.store.audit_size()
    node.close()
    assert _tampered(tmp_path / "jpn", tmp_path) == ()
    problems = _tampered(tmp_path / "jpn", tmp_path,
                         ("DELETE FROM audit_refs WHERE idx = ?", (read.index,)),
                         ("INSERT INTO audit_refs VALUES (?, 1)", (obj["id"],)),
                         ("INSERT INTO audit_refs VALUES (?, ?)", (obj["id"], size + 5)))
    assert problems == (
        f"event 1 is filed in the object index under 1 object(s) its body does not name "
        f"({obj['id']}…)",
        f"event {read.index} is missing from the object index under 1 object(s) it names "
        f"({obj['id']}…): searches by object (audit show --object, the console, compromise "
        "reports) do not find it",
        f"event {size + 5} is filed in the object index under 1 object(s) its body does not "
        f"name ({obj['id']}…)")
    # the same, read a few events at a time
    copy = copy_node(tmp_path / "jpn", tmp_path / "chunked")
    node_sql(copy, "DELETE FROM audit_refs WHERE idx = ?", (read.index,))
    node = Node.open(copy)
    try:
        chunked = node.audit.verify(chunk=2).problems
    finally:
        node.close()
    assert len(chunked) == 1 and chunked[0].startswith(f"event {read.index} is missing")


# -- the command line -----------------------------------------------------------------------


def test_audit_verify_and_show_commands(logged: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", str(logged)])
    assert ok.exit_code == 0, ok.output
    assert "OK: 13 events, 2 signed checkpoint(s)" in ok.output
    shown = runner.invoke(main, ["audit", "show", str(logged), "--person", "person3"])
    assert shown.exit_code == 0, shown.output
    assert "subject person3" in shown.output and "person-add" in shown.output
    assert "person4" not in shown.output and "1 event(s)" in shown.output
    lines = shown.output.strip().splitlines()
    assert lines[0] == lines[-1] == "指定なし"  # JPN's words for its lowest level, top and bottom
    as_json = runner.invoke(main, ["audit", "show", str(logged), "--kind", "person-add",
                                   "--json", "--limit", "3"])
    assert [json.loads(x)["kind"] for x in as_json.output.splitlines()] == ["person-add"] * 3
    copy = copy_node(logged, tmp_path / "bad")
    node_sql(copy, "UPDATE audit_events SET body = replace(body, 'person', 'persom') "
             "WHERE idx = 5")
    bad = runner.invoke(main, ["audit", "verify", str(copy)])
    assert bad.exit_code == 1
    assert "FAILED" in bad.output and "event 5 was altered" in bad.output
    cp = runner.invoke(main, ["audit", "checkpoint", str(logged)])
    assert cp.exit_code == 0 and cp.output.startswith("intelpact/JPN/audit\n13\n")


def test_audit_show_json_escapes_terminal_controls(tmp_path: Path) -> None:
    """Some events quote a partner's words (a refused request's claimed party, a reason):
    `audit show --json` printed the bodies raw, so a right-to-left override, a C1 control
    (U+009B, CSI to some terminals) or a line separator reached the operator's terminal.
    They are escaped as `get` escapes them: the same JSON value."""
    node = make_node(tmp_path / "jpn")
    hostile = "NZL\u202egnp.exe\u009b2J\u2028next"
    node.audit.record(node.audit.event("refuse", party="NZL", reason=hostile))
    node.close()
    shown = CliRunner().invoke(main, ["audit", "show", str(tmp_path / "jpn"), "--kind",
                                      "refuse", "--json"])
    assert shown.exit_code == 0, shown.output
    assert not {"\u202e", "\u009b", "\u2028"} & set(shown.output)
    (line,) = shown.output.splitlines()
    assert json.loads(line)["reason"] == hostile


NOT_PAIRS = "its objects are not [id, version] pairs"


@pytest.mark.parametrize(("altered", "why"), [
    (lambda d: canonical({**d, "objects": 5}), NOT_PAIRS),
    (lambda d: canonical({**d, "objects": [5]}), NOT_PAIRS),
    (lambda d: canonical({**d, "objects": [[]]}), NOT_PAIRS),
    (lambda d: canonical({**d, "objects": {"a": 1}}), NOT_PAIRS),
    (lambda d: canonical({**d, "person": "p-1"}), "its person is not a JSON object"),
    (lambda d: "[1,2]", "its body is not a JSON object"),
    (lambda d: "{", "its body is not JSON"),
    (lambda d: "[" * 100_000 + "]" * 100_000, "its body is nested too deep to read"),
    pytest.param(lambda d: b"{\xff}", "its body is not UTF-8 text", marks=NOT_UTF8),
], ids=["objects 5", "objects [5]", "objects [[]]", "objects {}", "person a string",
        "an array", "not JSON", "nested 100000 deep", "not UTF-8"])
def test_audit_show_says_which_event_it_cannot_read_and_shows_the_rest(
        tmp_path: Path, altered: Any, why: str) -> None:
    """An event row altered in the database into something no reader takes (what
    `audit verify` names too): `audit show` says so on that event's lines, pointing to
    `audit verify`, names nothing of it, and shows the others; before, a traceback."""
    node = make_node(tmp_path / "jpn")
    try:
        _people(node, 3)
        node.audit.checkpoint()  # integrated and signed, then altered
        events = node.store.find_audit(AuditFilter())
        (event,) = [e for e in events if e.kind == "person-add"][1:2]
        body = altered(json.loads(event.body))
        insider(node, "UPDATE audit_events SET body = CAST(? AS TEXT) WHERE idx = ?",
                (body, event.index))
    finally:
        node.close()
    shown = CliRunner().invoke(main, ["audit", "show", str(tmp_path / "jpn")])
    assert shown.exit_code == 0, (shown.output, shown.exception)
    lines = shown.output.splitlines()
    at = lines.index(f"#{event.index}  {event.at}  person-add")
    assert lines[at + 1] == (f"    UNREADABLE: {why}: altered? intelpact audit verify DIR "
                             "checks every event")
    assert len([line for line in lines if line.startswith("#")]) == len(events)
    assert f"{len(events)} event(s)" in lines and lines[0] == lines[-1] == "指定なし"


def test_audit_show_keeps_the_banner_of_an_object_deleted_since(tmp_path: Path) -> None:
    """`audit show`'s banner is "the highest label of the objects the shown events name"
    (docs/audit.md, "Filtering"), but it was worked out from the objects the store holds
    now: once a security officer deleted a 極秘 object, every event about it (who read
    it, who was denied it and why, its deletion) was printed between 指定なし banners,
    the lowest level, though what the events say is as sensitive as before. An object
    named and not held now counts as the agreement's highest covered level (機密), REL
    TO JPN alone: never under the label it had."""
    node = make_node(tmp_path / "jpn")
    try:
        node.people.add("aki", party="JPN", clearance="機密",
                        roles=["analyst", "publisher", "security-officer"], password=PW)
        node.people.add("ken", party="JPN", clearance="秘", password=PW)
        aki, ken = node.people.as_person("aki"), node.people.as_person("ken")
        cid = node.default_collection().collection_id
        obj = indicator("top secret source")
        node.publisher.publish(aki.person, cid, [obj], marking=MarkingRequest("極秘", ()))
        node.find(aki, cid, Query(ids=(obj["id"],)), via="object")
        node.find(ken, cid, Query(ids=(obj["id"],)), via="object")  # denied: its reason
        before = CliRunner().invoke(main, ["audit", "show", str(tmp_path / "jpn"),
                                           "--object", obj["id"], "--kind", "read",
                                           "--kind", "deny"])
        readable = node.access.readable(aki.person, node.store.labels())
        node.store.delete(cid, readable, obj["id"], ("all",), audit=lambda rows: (
            node.audit.by_originator("delete", [(r.object_id, r.version, r.originator)
                                                for r in rows], person=aki.person)))
    finally:
        node.close()
    after = CliRunner().invoke(main, ["audit", "show", str(tmp_path / "jpn"),
                                      "--object", obj["id"], "--kind", "read", "--kind",
                                      "deny", "--kind", "delete"])
    assert before.exit_code == after.exit_code == 0, (before.output, after.output)
    assert before.output.splitlines()[0].startswith("極秘"), before.output
    assert "read" in after.output and "deny" in after.output and "delete" in after.output
    lines = after.output.splitlines()
    assert lines[0] == lines[-1] == "機密 // REL TO JPN", after.output


def test_audit_verify_runs_on_a_tree_the_integrator_cannot_extend(
        logged: Path, tmp_path: Path) -> None:
    """A deleted stored hash stops the integrator: verify, which integrates nothing (it
    writes nothing), names every hash missing, the one the integrator needs among
    them."""
    runner = CliRunner()
    for sql, found in (
            ("DELETE FROM audit_nodes WHERE level = 2 AND idx = 2",  # on the frontier
             ["the stored hash of the subtree over events 8..11 is missing: it was deleted"]),
            ("DELETE FROM audit_nodes WHERE level = 0 AND idx >= 11",  # the last leaves
             ["the leaf hash of event 11 is missing from the stored tree: it was deleted",
              "the leaf hash of event 12 is missing from the stored tree: it was deleted"]),
            ("DELETE FROM audit_nodes WHERE level = 0 AND idx = 5",  # below: none needs it
             ["the leaf hash of event 5 is missing from the stored tree: it was deleted"])):
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        node_sql(copy_node(logged, copy), sql)
        result = runner.invoke(main, ["audit", "verify", str(copy)])
        assert result.exit_code == 1 and "FAILED" in result.output, (sql, result.output)
        problems = [line for line in result.output.splitlines() if line.startswith("  - ")]
        assert found[0] in problems[0], (sql, result.output)
        for wanted in found[1:]:
            assert any(wanted in line for line in problems), (sql, result.output)


@pytest.mark.parametrize(("altered", "said"), [
    (lambda data: json.dumps({**data, "objects": 5}, sort_keys=True, separators=(",", ":"),
                             ensure_ascii=False), "its objects are not [id, version] pairs"),
    (lambda data: DEEP, "body is not JSON"),
    pytest.param(lambda data: b"{\xff}", "body is not text: its bytes are not UTF-8",
                 marks=NOT_UTF8),
], ids=["objects a number", "nested deep", "not UTF-8"])
def test_an_event_altered_before_it_was_integrated_does_not_stop_the_integrator(
        tmp_path: Path, altered: Callable[[dict], str], said: str) -> None:
    """Its ``objects`` made a number, or its body nested past the decoder's limit: the
    integrator indexes it under no object and goes on, and verify names the event."""
    node = make_node(tmp_path / "jpn")
    node.audit.checkpoint()
    node.people.add("late", party="JPN", clearance="秘")  # appended, not yet integrated
    index = node.store.audit_size() - 1
    data = json.loads(node.store.audit_events(index, index + 1)[0].body)
    node.store.close()
    node_sql(tmp_path / "jpn", "UPDATE audit_events SET body = CAST(? AS TEXT) WHERE idx = ?",
             (altered(data), index))
    result = CliRunner().invoke(main, ["audit", "verify", str(tmp_path / "jpn")])
    assert result.exit_code == 1, result.output
    assert f"event {index}: {said}" in result.output
    assert f"event {index}'s MAC does not verify" in result.output
    again = Node.open(tmp_path / "jpn")
    try:
        again.people.add("later", party="JPN", clearance="秘")
        size = again.store.audit_size()  # `audit verify` integrated nothing
        assert again.audit.integrate()[0] == size == index + 2
        # the officer is told that an event this node did not write was integrated
        assert [(kind, detail.split(" carry")[0]) for _, kind, _, detail, _
                in again.store.alerts()] == [("event-forged", f"audit event(s) {index}")]
    finally:
        again.close()


def test_many_ids_denied_at_once_make_one_event_per_originator_and_reason(
        node: Node) -> None:
    node.people.add("low", party="JPN", clearance="取扱注意")
    low = node.people.as_person("low")
    cid = node.default_collection().collection_id
    ids = tuple(f"indicator--00000000-0000-4000-8000-{i:012d}" for i in range(300))
    before = node.store.audit_size()
    node.find(low, cid, Query(ids=ids, limit=1000))
    (event,) = node.store.audit_events(before, before + 10)
    body = json.loads(event.body)
    assert body["kind"] == "deny" and body["reason"] == "no such object"
    assert len(body["objects"]) == 300


def test_a_publish_refused_for_want_of_the_role_is_audited(tmp_path: Path) -> None:
    """A `deny` event records "a security decision refused a request", and deleting
    without the role is one (docs/audit.md, "What is recorded"). Publishing without the
    publisher role was refused the same way (403 over TAXII, an error on the command
    line), and reading a collection without a reading role too, but nothing was
    recorded: an analyst trying to inject objects into the node's collection left no
    trace in the log. Each is now a `deny` event with its reason, as a delete without
    the role is."""
    from helpers import serving

    node = make_node(tmp_path / "jpn")
    node.people.add("ken", party="JPN", clearance="秘", roles=["analyst"], password=PW)
    node.people.add("ops", party="JPN", clearance="秘", roles=["operator"], password=PW)
    cid = node.default_collection().collection_id
    before = node.store.audit_size()
    try:
        with serving(node) as url:
            envelope = json.dumps({"objects": [indicator("planted")]}).encode()
            r = httpx.post(f"{url}/intel/collections/{cid}/objects/", content=envelope,
                           auth=("ken", PW), timeout=20,
                           headers={"Accept": TAXII, "Content-Type": TAXII})
            assert r.status_code == 403 and "publisher role" in r.text, r.text
            # deleting without the role: refused and recorded, as docs/audit.md says
            d = httpx.delete(f"{url}/intel/collections/{cid}/objects/{indicator('x')['id']}/",
                             auth=("ken", PW), timeout=20, headers={"Accept": TAXII})
            assert d.status_code == 404, d.text
            g = httpx.get(f"{url}/intel/collections/{cid}/objects/", auth=("ops", PW),
                          timeout=20, headers={"Accept": TAXII})
            assert g.status_code == 403, g.text
    finally:
        node.close()
    bundle = tmp_path / "planted.json"
    bundle.write_text(json.dumps([indicator("planted by the command line")]))
    cli = CliRunner().invoke(main, ["publish", str(tmp_path / "jpn"), str(bundle),
                                    "--as", "ken", "--classification", "秘"])
    assert cli.exit_code != 0 and "publishing needs the publisher role" in cli.output
    node = Node.open(tmp_path / "jpn")
    try:
        denied = [(json.loads(e.body)["via"], json.loads(e.body)["reason"])
                  for e in node.store.audit_events(before, node.store.audit_size())
                  if e.kind == "deny"]
    finally:
        node.close()
    assert denied == [
        ("publish", "publishing needs the publisher role"),
        ("delete", "deleting needs the security-officer role"),
        ("collection", "reading intelligence needs the analyst, publisher or "
         "security-officer role"),
        ("publish", "publishing needs the publisher role")], denied


def test_sampled_events_record_every_one_without_a_record_each(tmp_path: Path) -> None:
    """A flood (a partner retrying a refused request, a locked-out name) is recorded per
    key at most once every ``every`` seconds, each record counting what it stands for;
    what is still counted when the node closes is recorded then: the sum is every one."""
    node = make_node(tmp_path / "n")
    try:
        sampled = Sampled(node.audit, "refuse", every=10.0, most=2)

        def records() -> list[dict]:
            return [json.loads(e.body)
                    for e in node.store.find_audit(AuditFilter(kinds=("refuse",)))]

        for now in (0.0, 1.0, 2.0, 9.9):
            sampled.record("NZL", now, party="NZL", reason=f"refused at {now}")
        assert [(r["reason"], r["refusals"]) for r in records()] == [("refused at 0.0", 1)]
        sampled.record("NZL", 10.0, party="NZL", reason="refused at 10.0")
        assert [r["refusals"] for r in records()] == [1, 4]  # itself and the three since
        sampled.record("AUS", 10.5, party="AUS", reason="refused at 10.5")
        sampled.record("NZL", 11.0, party="NZL", reason="refused at 11.0")  # counted
        # a third key is more than ``most``: the keys quiet for 10 s are forgotten, their
        # counts recorded (none here yet), and the rest keep counting
        sampled.record("JPN", 30.0, party="JPN", reason="refused at 30.0")
        assert sorted((r["party"], r["refusals"]) for r in records()[-2:]) == [
            ("JPN", 1), ("NZL", 1)]  # JPN's, and NZL's count from 11.0, forgotten at 30.0
        sampled.record("JPN", 31.0, party="JPN", reason="refused at 31.0")
        sampled.flush()
        got = records()
        assert got[-1]["reason"] == "refused at 31.0" and got[-1]["refusals"] == 1
        assert sum(r["refusals"] for r in got) == 9  # every one of the nine
    finally:
        node.close()


def test_sampled_refusals_are_recorded_without_waiting_for_the_next_or_a_clean_close(
        node: Node) -> None:
    """Refused federation requests and the attempts of a locked-out login are sampled
    (`Sampled`): the first is recorded at once, the rest counted in memory. A count was
    written only when the same key was refused again after its window, or when the node
    closed cleanly: a burst of 9,999 refusals followed by silence stayed one record of 1
    in the log for as long as the server ran, and a crash (OOM, kill -9, power) lost the
    count for good. Now a timer writes each count once its window has passed: here, with
    a window of 0.2 s, the log accounts for all five refusals without anyone calling
    flush(), and the key's next refusal within the window is counted, not recorded."""
    sampled = Sampled(node.audit, "refuse", every=0.2)
    before = node.store.audit_size()

    def counted() -> list[int]:
        return [json.loads(e.body)["refusals"]
                for e in node.store.audit_events(before, node.store.audit_size())]

    start = time.monotonic()
    for i in range(5):
        sampled.record("NZL\0rate", start + i * 0.01, party="NZL", actor="NZL",
                       reason="NZL sent more requests than this node takes from one partner")
    for _ in range(600):  # the timer is due 0.2 s after the first; ends when it wrote
        if sum(counted()) == 5:
            break
        time.sleep(0.05)
    assert counted() == [1, 4]
    sampled.flush()
    assert counted() == [1, 4]  # nothing held twice


def test_a_sampled_count_whose_write_failed_is_written_by_the_next_round(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer took the counts due and dropped them when the write failed (a full disk,
    a locked store): the refusals they stood for were never recorded. They are kept, and
    written by the next round."""
    clock = [0.0]
    sampled = Sampled(node.audit, "refuse", every=10.0, clock=lambda: clock[0])
    before = node.store.audit_size()
    for now in (0.0, 1.0, 2.0):
        sampled.record("NZL", now, party="NZL", reason=f"refused at {now}")
    record = node.audit.record

    def failing(*events: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(node.audit, "record", failing)
    clock[0] = 10.0
    sampled._due()  # the write fails: logged, the count kept
    monkeypatch.setattr(node.audit, "record", record)
    sampled.record("NZL", 11.0, party="NZL", reason="refused at 11.0")
    clock[0] = 20.0
    sampled._due()
    counted = [json.loads(e.body)["refusals"]
               for e in node.store.audit_events(before, node.store.audit_size())]
    assert counted == [1, 3]  # the first, then the two of the failed round and 11.0's
    sampled.flush()
    assert node.store.audit_size() == before + 2  # nothing held twice


# -- numbering: what makes a partner's view complete ---------------------------------------


def test_events_about_a_partner_s_objects_are_numbered_per_originator(node: Node) -> None:
    """Each originator's events are numbered 0, 1, 2… in leaf order, within one append and
    across appends; the number is in the leaf (the body, still canonical) and its column;
    an event about no partner's objects has none."""
    def about(party: str, i: int) -> object:
        return node.audit.event("read", originator=party,
                                objects=[(f"indicator--{i}", T0)], reason=f"r{i}")

    node.audit.record(about("NZL", 0), about("AUS", 1), about("NZL", 2))
    node.audit.record(node.audit.event("login-failure", name="x", reason="test"))
    node.audit.record(about("NZL", 3))
    rows = node.store.find_audit(AuditFilter(kinds=("read",)))
    numbers = [(r.originator, r.seq, json.loads(r.body)["seq"]) for r in rows]
    assert numbers == [("NZL", 0, 0), ("AUS", 0, 0), ("NZL", 1, 1), ("NZL", 2, 2)]
    for r in rows:
        assert r.body == canonical(json.loads(r.body))
    (login,) = node.store.find_audit(AuditFilter(kinds=("login-failure",)))
    assert login.seq is None and "seq" not in json.loads(login.body)
    assert node.store.audit_numbered("NZL") == (3, rows[-1].index)
    assert node.store.audit_numbered("NZL", rows[-1].index) == (2, rows[2].index)
    assert node.store.audit_numbered("FRA") == (0, -1)
    assert _verify(node) == ()


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(detail=st.dictionaries(st.text(min_size=1).filter(lambda k: k != "seq"),
                              st.one_of(st.text(), st.integers(), st.none(),
                                        st.lists(st.text(), max_size=3)), max_size=6),
       seq=st.integers(0, 2**40))
def test_a_numbered_body_is_the_canonical_body_with_its_number(
        node: Node, detail: dict[str, object], seq: int) -> None:
    """``,"seq":N`` goes in where canonical JSON puts it, whatever the other keys are."""
    try:
        event = node.audit.event("deny", originator="NZL", **detail)  # type: ignore[arg-type]
    except TypeError:
        return  # a key that is one of event()'s own parameters
    data = json.loads(event.body)
    assert event.numbered(seq) == canonical({**data, "seq": seq})


def test_a_number_skipped_or_given_twice_is_caught_by_verify(tmp_path: Path) -> None:
    """A node that skipped a number, or gave one twice, signed a tree a partner would
    find a gap in: `audit verify` says where, though every hash is intact (and every
    event is the node's own: each is written here with its MAC)."""
    node = make_node(tmp_path / "jpn")
    for i in range(2):
        node.audit.record(node.audit.event("read", originator="NZL",
                                           objects=[(f"indicator--{i}", T0)]))
    node.close()
    size = _stored(tmp_path / "jpn")

    def event(index: int, seq: int | None, column: int | None = None
              ) -> tuple[str, tuple[object, ...]]:
        data = {"v": 2, "at": T0, "kind": "read", "node": "JPN", "originator": "NZL"}
        body = canonical(data if seq is None else {**data, "seq": seq})
        return ("INSERT INTO audit_events (idx, at, kind, originator, body, seq, mac) "
                "VALUES (?, ?, 'read', 'NZL', ?, ?, ?)",
                (index, T0, body, seq if column is None else column,
                 node.audit.macs.of(index, body)))

    assert _tampered(tmp_path / "jpn", tmp_path, event(size, 2)) == ()
    problems = _tampered(tmp_path / "jpn", tmp_path, event(size, 4))
    assert problems == (f"event {size} is numbered 4 among the events about NZL's objects, "
                        "where 2 was next: NZL would find events missing in this log",)
    # the store refuses a number twice; one in the body only is caught all the same
    problems = _tampered(tmp_path / "jpn", tmp_path, event(size, 2),
                         event(size + 1, 1, column=3))
    assert problems == (f"event {size + 1}: its seq column (3) differs from its body",
                        f"event {size + 1} is numbered 1 among the events about NZL's "
                        "objects, where 3 was next: NZL would find a number given twice in "
                        "this log")
    problems = _tampered(tmp_path / "jpn", tmp_path, event(size, None))
    assert problems == (f"event {size}: it is not numbered among the events about its "
                        "originator's objects",)


def test_an_officer_resolves_an_alert_saying_what_was_done(node: Node) -> None:
    """`audit resolve` takes an alert off the open list with a note, recorded in the log;
    only a security officer (or the operator) may, once, with something said."""
    node.people.add("officer", party="JPN", clearance="機密", roles=["security-officer"])
    node.people.add("analyst", party="JPN", clearance="機密")
    node.people.add("liaison", party="NZL", clearance="TOP SECRET",
                    roles=["security-officer"])
    node.audit.alert("history-rewritten", "NZL", "NZL has rewritten its audit history")
    node.audit.alert("events-withheld", "NZL", "NZL left events about our objects out")
    first, second = (a[0] for a in node.store.alerts())
    run = CliRunner()
    d = str(node.config.dir)

    def resolve(*args: str) -> Any:
        return run.invoke(main, ["audit", "resolve", d, *args])

    for args, refusal in (
            ([str(first), "--note", "  "], "say what was done"),
            ([str(first), "--note", "x" * 10_001], "longer than 10,000 characters"),
            ([str(first), "--note", "done", "--as", "analyst"],
             "analyst does not have the security-officer role"),
            # a liaison officer administers nothing at the host's node (acts_for_node)
            ([str(first), "--note", "done", "--as", "liaison"],
             "liaison is a NZL national: only JPN's people resolve alerts for JPN's node"),
            (["99", "--note", "done"], "no alert #99")):
        refused = resolve(*args)
        assert refused.exit_code == 2 and refusal in refused.stderr, refused.output
    assert node.store.alert_resolutions() == {}
    assert [json.loads(e.body)["via"] for e in node.store.find_audit(
        AuditFilter(kinds=("deny",)))] == ["resolve alerts"]
    done = resolve(str(first), "--note", "NZ's officer: restored from backup", "--as", "officer")
    assert done.exit_code == 0 and f"Resolved alert #{first}" in done.output, done.output
    again = resolve(str(first), "--note", "again")
    assert again.exit_code == 2 and "resolved already" in again.stderr

    listed = run.invoke(main, ["audit", "alerts", d])
    assert "events-withheld" in listed.output and "history-rewritten" not in listed.output
    assert "1 alert(s) (1 resolved not shown: --all)" in listed.stderr
    everything = run.invoke(main, ["audit", "alerts", d, "--all"])
    assert "history-rewritten" in everything.output and "restored from backup" in \
        everything.output and "open" in everything.output
    (event,) = node.store.find_audit(AuditFilter(kinds=("alert-resolve",)))
    body = json.loads(event.body)
    assert (body["alert_id"], body["alert"], body["party"], body["note"]) == (
        first, "history-rewritten", "NZL", "NZ's officer: restored from backup")
    assert body["person"]["id"] == node.audit.pseudonyms.of("officer", None)
    assert resolve(str(second), "--note", "asked NZ").exit_code == 0  # the operator
    (_, by_operator) = node.store.find_audit(AuditFilter(kinds=("alert-resolve",)))
    assert "actor" in json.loads(by_operator.body)
    assert run.invoke(main, ["audit", "alerts", d]).output.startswith("No open alerts.")
    assert not _verify(node)


def test_audit_verify_beside_a_serving_node_reads_one_state_of_the_log(tmp_path: Path) -> None:
    """Regression: `audit verify DIR` beside a serving node read the checkpoints, the
    log's size, the hashes integrated and the events each at its own moment. The node
    appended and integrated in between, and verify reported a tamper that was not there
    (more leaf hashes stored than events). Verify reads one snapshot of the store now
    (one read transaction; REPEATABLE READ on PostgreSQL): the log as it was then."""
    from helpers import test_database
    from served import Pair, bulk, wait_for

    url = test_database()
    with Pair(tmp_path, databases={"JPN": url} if url else None, pool=False) as pair:
        pair.start("JPN")
        pair.publish("JPN", bulk(3, "before"))
        node = Node.open(pair.dirs["JPN"])
        real, grown = node.store.audit_integrated, []

        def size(table: str, where: str = "") -> int:
            (top,), = pair.query("JPN", f"SELECT max(idx) FROM {table}{where}")  # noqa: S608
            return -1 if top is None else int(top)

        def integrated_meanwhile() -> int:
            # verify has read the log's size: the serving node appends, and integrates
            # past it, before verify reads how far the tree goes
            if not grown:
                appended = size("audit_events")
                pair.publish("JPN", bulk(3, "meanwhile"))
                wait_for(lambda: size("audit_nodes", " WHERE level = 0") > appended, 60,
                         "the serving node integrates what it appended", pair)
                grown.append(appended)
            return real()

        try:
            node.store.audit_integrated = integrated_meanwhile  # type: ignore[method-assign]
            verdict = node.audit.verify()
        finally:
            node.close()
        assert grown
        assert verdict.ok, verdict.problems
        assert verdict.size <= grown[0] + 1
        pair.audit_verify("JPN")  # the command, still beside the serving node


def test_audit_verify_does_not_migrate_a_database_older_than_the_code(tmp_path: Path) -> None:
    """Regression: `audit verify DIR` opened the node as every command does, and so
    migrated a database whose schema was older than the code (a write, made by a
    command that must only read; beside an older `serve`, a schema it does not know).
    It now opens the store without migrating: an older schema is refused, saying to
    run the node once to migrate it, and the database is left as it was."""
    from helpers import migrated, migrations_applied, older_schema

    node = make_node(tmp_path / "jpn")
    d = node.config.dir
    node.close()
    row = older_schema(d)
    older = migrations_applied(d)
    verified = CliRunner().invoke(main, ["audit", "verify", str(d)])
    said = " ".join(verified.output.split())
    assert verified.exit_code != 0, said
    assert f"database schema version {older[-1]} is older than this intelpact" in said
    assert "intelpact migrate DIR" in said, said
    assert migrations_applied(d) == older  # not migrated
    migrated(d, row)  # as the node run would; then verify reads it
    verified = CliRunner().invoke(main, ["audit", "verify", str(d)])
    assert verified.exit_code == 0, verified.output


def test_what_the_officer_is_shown_is_checked_in_one_state_of_the_store(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: check_shown read the log's `alert` events, then the alerts table, each
    at its own moment. An alert raised between the two reads (by a serving node's watch,
    beside `audit verify`) was in the table and not among the events read: "shown to the
    security officer, but no alert event of this log raised it: it was added here", a
    tamper that was not there. The check reads one snapshot of the store (Store.snapshot),
    as the log's own verify does."""
    real, raised = node.store.alerts, []
    checking = threading.get_ident()

    def raised_meanwhile() -> Any:
        if threading.get_ident() == checking and not raised:
            # the check has read the events: an alert is raised and committed now
            thread = threading.Thread(target=lambda: raised.append(node.audit.alert(
                "history-rewritten", "NZL", "NZL signed two different roots")))
            thread.start()
            thread.join()
        return real()

    monkeypatch.setattr(node.store, "alerts", raised_meanwhile)
    count, problems = node.check_kept()
    monkeypatch.undo()
    assert raised == [True]
    assert (count, problems) == (0, [])
    assert node.check_kept() == (0, [])  # and the next check sees the alert and its event
    assert [a[1] for a in node.store.alerts()] == ["history-rewritten"]


def _login_failures(node: Node, count: int) -> None:
    for i in range(count):
        node.audit.record(node.audit.event("login-failure", name=f"guess{i}", reason="test"))


def test_audit_verify_writes_nothing_and_checks_pending_events_as_pending(
        tmp_path: Path) -> None:
    """Regression: `audit verify DIR` integrated the events appended and not yet
    integrated (the tree's hashes, the object index, the head file) and signed a
    checkpoint as it closed the node: a verifier that changed what it verified. It
    writes nothing now, on either store (SQLite opened read-only, PostgreSQL's every
    transaction READ ONLY), and checks the pending events as far as they can be (their
    indexes, MACs, columns and numbers, and the tree they extend), saying how many."""
    node = make_node(tmp_path / "jpn")
    d = node.config.dir
    try:
        node.audit.checkpoint()
        _login_failures(node, 3)  # appended, not integrated: the node is still open
        assert node.store.audit_size() - node.store.audit_integrated() == 3
        before, head = database_digest(d), (d / "keys" / "audit-head.json").read_bytes()
        verified = CliRunner().invoke(main, ["audit", "verify", str(d)])
        said = " ".join(verified.output.split())
        assert verified.exit_code == 0, verified.output
        assert database_digest(d) == before
        assert (d / "keys" / "audit-head.json").read_bytes() == head
        assert node.store.audit_size() - node.store.audit_integrated() == 3
        assert said.startswith("OK: 4 events (3 pending integration"), said
    finally:
        node.close()
    verified = CliRunner().invoke(main, ["audit", "verify", str(d)])
    assert verified.exit_code == 0 and "pending" not in verified.output, verified.output


def test_audit_verify_reads_a_read_only_copy_of_the_node(tmp_path: Path) -> None:
    """A security officer verifies a copy, a backup or a read-only mount: `audit verify`
    failed there ("the integrator cannot hash…", the writers' lock file not makeable) or
    changed the copy. It opens the database read-only (SQLite's mode=ro) and verifies,
    pending events and all."""
    from helpers import read_only, test_database

    if test_database() is not None:
        pytest.skip("a SQLite file: PostgreSQL's read-only verify is the test above")
    node = make_node(tmp_path / "jpn")
    copy = tmp_path / "copy"
    try:
        node.audit.checkpoint()
        _login_failures(node, 2)  # pending in the copy
        with sqlite3.connect(node.config.dir / "node.db") as c:  # all of it in node.db
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        shutil.copytree(node.config.dir, copy,
                        ignore=shutil.ignore_patterns("*-wal", "*-shm", "*.writers",
                                                      "*.serving"))
    finally:
        node.close()
    before = database_digest(copy)
    files = sorted(p.name for p in copy.rglob("*"))
    with read_only(copy):
        verified = CliRunner().invoke(main, ["audit", "verify", str(copy)])
    said = " ".join(verified.output.split())
    assert verified.exit_code == 0, verified.output
    assert said.startswith("OK: 3 events (2 pending integration"), said
    assert database_digest(copy) == before
    assert sorted(p.name for p in copy.rglob("*")) == files  # no lock file made


EMPTY = hashlib.sha256(b"").hexdigest()


def test_a_read_only_open_writes_nothing_in_the_node_directory(tmp_path: Path) -> None:
    """Regression: a read-only open (`audit verify`) still wrote in the node directory.
    Opening a node whose agreement pin was cut short (node.toml names the new text,
    staged beside the old: ``Node.pin_agreement``) moved the staged text into place
    (``load_config``), and a node of before ``keys/cursors.key`` had that secret made:
    on a read-only mount verify failed, and on a copy it changed what it verified. A
    read-only open reads the pinned text where it is staged and makes no secret; every
    file, and the database, is as it was. The next read-write open finishes the pin."""
    from helpers import files_digest, read_only

    d = tmp_path / "jpn"
    node = make_node(d)
    _login_failures(node, 2)
    target = node.config.agreement_path
    amended = (AGREEMENTS / "jpn-nzl.toml").read_text(encoding="utf-8").replace(
        'version = "1.0"', 'version = "1.1"')
    node.close()
    staged(target).write_text(amended, encoding="utf-8")  # the pin, up to the crash
    write_config(dataclasses.replace(node.config, agreement_hash=load_agreement(
        staged(target), stored=True).content_hash))
    (d / "keys" / "cursors.key").unlink()  # a node of before the cursors' secret
    files, before = files_digest(d), database_digest(d)
    with read_only(d):
        verified = CliRunner().invoke(main, ["audit", "verify", str(d)])
    assert verified.exit_code == 0, verified.output
    assert " ".join(verified.output.split()).startswith("OK: 3 events"), verified.output
    reader = Node.open(d, migrate=False, readonly=True)  # and on a writable directory
    try:
        assert reader.agreement.version == "1.1"  # the text pinned, read where it waits
    finally:
        reader.close()
    # but SQLite's own: the shared-memory index a reader beside a writer needs, and an
    # empty write-ahead log (on a read-only medium, neither: the file is read immutable)
    after = files_digest(d)
    assert after.pop("node.db-shm", None) is None or not ON_POSTGRESQL
    assert after.pop("node.db-wal", EMPTY) == EMPTY
    assert after == files
    assert database_digest(d) == before
    node = Node.open(d, migrate=False)  # read-write: the pin is finished, as before
    try:
        assert node.agreement.version == "1.1"
        assert target.read_text(encoding="utf-8") == amended and not staged(target).exists()
        assert (d / "keys" / "cursors.key").exists()
    finally:
        node.close()
