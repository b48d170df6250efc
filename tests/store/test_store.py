"""Every store backend, on real databases: SQLite files and a real PostgreSQL server
(tests/pg.py starts one; the PostgreSQL cases skip only where it is not installed)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from intelpact.crypto.merkle import leaf_hash
from intelpact.crypto.merkle import root as merkle_root
from intelpact.model import Label
from intelpact.model.markings import SIGNATURES_EXTENSION_ID
from intelpact.store import Store, open_store
from intelpact.store.base import (
    AuditEvent,
    AuditFilter,
    BadCursor,
    Collection,
    HeldCheckpoints,
    KeptEvent,
    MarkingConflict,
    NewObject,
    PeerRecord,
    PersonRecord,
    Query,
    SessionRecord,
    StatusRecord,
    StoreError,
    contains_pattern,
    filed_under,
    label_from_key,
    label_key,
    normalise_timestamp,
)
from intelpact.store.postgres import PostgresStore
from intelpact.store.sqlite import SQLiteStore, _fold_sql, migrations

import pg

A = "jpn-nzl-isa"
LOW = Label(A, 0, "JPN", frozenset({"JPN", "NZL"}))
HIGH = Label(A, 5, "JPN", frozenset({"JPN"}), frozenset({"JPNEO"}))


def obj(n: int, version: str = "2026-01-01T00:00:00.000Z", label: Label = LOW,
        body: str | None = None, kind: str = "indicator") -> NewObject:
    oid = f"{kind}--00000000-0000-4000-8000-{n:012d}"
    text = body if body is not None else f'{{"id":"{oid}","v":"{version}"}}'
    return NewObject(oid, kind, "2.1", normalise_timestamp(version), text, str(hash(text)),
                     label, label, label.originator, False)


Opener = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the same database again each time it is called (every store it opened
    is closed after the test)."""
    database = str(tmp_path / "node.db") if request.param == "sqlite" else pg.database_url()
    opened: list[Store] = []

    def open_it() -> Store:
        opened.append(open_store(database))
        return opened[-1]

    yield open_it
    for s in opened:
        s.close()


@pytest.fixture()
def store(opener: Opener) -> Store:
    s = opener()
    s.add_collection(Collection("c1", "one", "", "intel"))
    return s


def ids_for(store: Store, *labels: Label) -> list[int]:
    return [i for i, lab in store.labels().items() if lab in labels]


def test_migrations_are_recorded_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    s1 = SQLiteStore(path)
    s1.close()
    s2 = SQLiteStore(path)
    assert s2.schema_version == migrations()[-1][0] >= 1
    rows = sqlite3.connect(path).execute("SELECT version FROM schema_migrations").fetchall()
    assert [r[0] for r in rows] == [v for v, _ in migrations()]
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_new_database_and_its_log_are_the_users_alone(tmp_path: Path) -> None:
    """The node's objects and audit log are in node.db: under the usual umask (022)
    SQLite made it, and its write-ahead log, readable by every user of the machine."""
    path = tmp_path / "n.db"
    old = os.umask(0o022)
    try:
        store = SQLiteStore(path)
        store.add_collection(Collection("c1", "one", "", "intel"))
        store.add_objects("c1", [obj(1)])
        made = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()
                if p.name.startswith("n.db")}
        store.close()
    finally:
        os.umask(old)
    assert {"n.db", "n.db-wal"} <= made.keys()
    assert made == dict.fromkeys(made, 0o600)


def test_an_existing_database_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    SQLiteStore(path).close()
    path.chmod(0o640)  # the operator's choice
    SQLiteStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_the_upgrade_that_keeps_partner_events_reads_each_partner_again(
        tmp_path: Path) -> None:
    """Before migration 30 the watch kept nothing of what it read: the upgrade sends it
    back to the start of each partner's log, so that every event below its cursor is
    kept."""
    path = tmp_path / "n.db"
    before = SQLiteStore(path)
    before.set_partner_audit_cursor("NZL", 41, 7, "t")
    before.close()
    with contextlib.closing(sqlite3.connect(path)) as c, c:  # as a node at version 29
        c.execute("DROP TABLE partner_events")
        c.execute("DROP TABLE partner_event_refs")  # and what came after
        c.execute("DROP TABLE partner_checkpoint_tally")
        c.execute("DELETE FROM schema_migrations WHERE version BETWEEN 30 AND 34")
    after = SQLiteStore(path)
    assert after.partner_audit_watch("NZL") is None and after.partner_events("NZL") == []
    after.close()


def open_files(path: Path) -> int:
    """How many of this process's file descriptors are open on the database file."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _target(fd) == str(path))


def _target(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:  # closed since it was listed
        return ""


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    """The server's worker threads come and go: a connection each leaves behind would
    be a page cache that is never given back (the soak's memory creeping up)."""
    path = tmp_path / "n.db"
    store = SQLiteStore(path)
    store.add_collection(Collection("c1", "one", "", "intel"))
    store.add_objects("c1", [obj(1)])

    def read() -> None:
        assert store.count("c1") == 1

    for _ in range(40):  # forty short-lived threads, one after another
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    assert open_files(path) <= 3  # this thread's, the last thread's, and one spare
    store.close()
    assert open_files(path) == 0


def test_a_store_opened_read_only_writes_nothing(store: Store, tmp_path: Path) -> None:
    """`audit verify` opens the store read-only: every write is refused by the store, and
    the database would refuse it too (SQLite's mode=ro, PostgreSQL's READ ONLY
    transactions); reads see what is stored."""
    database = store.path if isinstance(store, SQLiteStore) else \
        store.url  # type: ignore[attr-defined]
    reader = open_store(database, readonly=True)
    try:
        assert reader.readonly and reader.collections() == store.collections()
        with pytest.raises(StoreError, match="opened read-only"):
            reader.add_collection(Collection("c2", "two", "", "more"))
        # below the store's own refusal: the database's
        if isinstance(reader, SQLiteStore):
            with pytest.raises(sqlite3.OperationalError, match="readonly database"):
                reader._conn().execute(  # noqa: SLF001
                    "DELETE FROM collections")
        else:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), \
                    reader._pool.connection() as conn:  # type: ignore[attr-defined]  # noqa: SLF001
                conn.execute("DELETE FROM collections")
    finally:
        reader.close()
    assert [c.collection_id for c in store.collections()] == ["c1"]


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as c:
        c.execute("INSERT INTO schema_migrations VALUES (999, 'x')")
    with pytest.raises(Exception, match="newer than this intelpact"):
        SQLiteStore(path)


def test_same_version_is_idempotent_and_a_different_body_conflicts(store: Store) -> None:
    first = store.add_objects("c1", [obj(1)])
    again = store.add_objects("c1", [obj(1)])
    other = store.add_objects("c1", [obj(1, body='{"tampered":true}')])
    assert [r.outcome for r in first + again + other] == ["added", "exists", "conflict"]
    assert "immutable" in other[0].message
    assert store.count("c1") == 1


def test_one_batch_in_order_with_repeats_conflicts_and_unversioned_objects(
        store: Store) -> None:
    """What one add_objects call gives is what adding its objects one by one gives:
    repeats and conflicts inside the batch, objects without a version (SCOs: the same
    body is the same object), seq/date_added in input order, the outbox, over more rows
    than one INSERT statement takes (the SQLite store inserts runs of rows at once)."""
    def sco(n: int, body: str) -> NewObject:
        return NewObject(f"ipv4-addr--00000000-0000-5000-8000-{n:012d}", "ipv4-addr", "2.1",
                         None, body, str(hash(body)), LOW, LOW, "JPN", False)

    batch = [obj(1), obj(2), obj(1), obj(1, body='{"tampered":true}'), sco(1, '{"a":1}'),
             obj(3), sco(1, '{"a":1}'), sco(1, '{"a":2}'), obj(2),
             *[obj(100 + n) for n in range(1200)], obj(3), sco(2, '{"b":1}'), obj(4)]
    store.add_peer(PeerRecord("NZL", "https://nzl.example", "k", "kid", "", "", "{}",
                              "2026-01-01T00:00:00.000000Z"))
    results = store.add_objects("c1", batch, release=lambda o: ["NZL"])
    outcomes = [r.outcome for r in results]
    assert outcomes[:9] == ["added", "added", "exists", "conflict", "added", "added",
                            "exists", "added", "exists"]
    assert outcomes[9:] == ["added"] * 1200 + ["exists", "added", "added"]
    added = [b for b, r in zip(batch, results, strict=True) if r.outcome == "added"]
    rows = store.query("c1", ids_for(store, LOW), Query(versions=("all",), limit=2000)).rows
    assert [(r.object_id, r.body) for r in rows] == [(b.object_id, b.body) for b in added]
    stamps = [r.date_added for r in rows]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert [r.version for r in rows if r.object_type == "ipv4-addr"] == [
        r.version for r, b in zip(results, batch, strict=True)
        if b.object_type == "ipv4-addr" and r.outcome == "added"]
    assert [o.object_id for _, o in store.pending("NZL", 5000)] == [b.object_id for b in added]


def test_label_filter_runs_in_the_query(store: Store) -> None:
    store.add_objects("c1", [obj(1), obj(2, label=HIGH), obj(3)])
    low_only = store.query("c1", ids_for(store, LOW), Query(versions=("all",)))
    assert [r.object_id[-1] for r in low_only.rows] == ["1", "3"]
    nothing = store.query("c1", [], Query(versions=("all",)))
    assert nothing.rows == [] and not nothing.more


def test_labels_round_trip_through_their_key() -> None:
    label = Label(A, 3, "NZL", None, frozenset({"X"}), frozenset({frozenset({"M", "C"})}),
                  frozenset({"JPN"}))
    assert label_from_key(label_key(label)) == label


def test_versions_first_last_all_and_timestamp(store: Store) -> None:
    versions = ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]
    store.add_objects("c1", [obj(1, v) for v in versions])
    readable = ids_for(store, LOW)

    def got(*choice: str) -> list[str]:
        return [r.version for r in store.query("c1", readable, Query(versions=choice)).rows]

    assert got("last") == [normalise_timestamp(versions[2])]
    assert got("first") == [normalise_timestamp(versions[0])]
    assert got("all") == [normalise_timestamp(v) for v in versions]
    assert got("first", "last") == [normalise_timestamp(versions[0]),
                                    normalise_timestamp(versions[2])]
    assert got(normalise_timestamp(versions[1])) == [normalise_timestamp(versions[1])]


def test_last_means_last_visible_version(store: Store) -> None:
    store.add_objects("c1", [obj(1, "2026-01-01T00:00:00Z"),
                             obj(1, "2026-02-01T00:00:00Z", label=HIGH)])
    rows = store.query("c1", ids_for(store, LOW), Query()).rows
    assert [r.version for r in rows] == [normalise_timestamp("2026-01-01T00:00:00Z")]


MID = Label(A, 3, "JPN", frozenset({"JPN", "NZL"}))
# Rows whose superseded mark is not what its definition says (0016_current_versions.sql).
WRONG_MARKS = ("SELECT o.seq FROM objects o WHERE o.superseded != CASE WHEN EXISTS (SELECT 1 "
               "FROM objects n WHERE n.collection_id = o.collection_id AND n.object_id = "
               "o.object_id AND n.version > o.version AND n.label_id = o.label_id AND "
               "n.spec_version = o.spec_version) THEN 1 ELSE 0 END")


def raw(store: Store, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read straight from ``store``'s database."""
    if isinstance(store, SQLiteStore):
        return store._conn().execute(sql).fetchall()  # noqa: SLF001
    return store._all(sql)  # type: ignore[attr-defined]  # noqa: SLF001


def _undo(store: Store, statements: list[str]) -> None:
    """Run ``statements`` on the store's database directly: a migration taken back."""
    if isinstance(store, SQLiteStore):
        for statement in statements:
            store._conn().execute(statement)  # noqa: SLF001
    else:
        with store._pool.connection() as conn:  # type: ignore[attr-defined]  # noqa: SLF001
            for statement in statements:
                conn.execute(statement)


def test_latest_versions_agree_with_their_definition_whatever_was_done(store: Store
                                                                       ) -> None:
    """Versions of a few objects under three labels and two spec versions, added in any
    order (some in one batch), relabelled (some of an object's versions) and deleted at
    random: after every step, each reader's latest versions (TAXII's default, with and
    without a type or spec_version filter) are those of the definition, computed here
    from every stored row, and every row's superseded mark, which the page walks by, is
    what its definition says."""
    rng = random.Random(6)
    labels = [LOW, MID, HIGH]
    store.add_objects("c1", [obj(0, label=lab) for lab in labels])  # the label ids
    ids = {lab: i for i, lab in store.labels().items()}
    store.delete("c1", list(ids.values()), obj(0).object_id, ("all",))
    readers = [[ids[LOW]], [ids[LOW], ids[MID]], list(ids.values()), [ids[HIGH]]]

    def new(n: int) -> NewObject:
        kind, spec = rng.choice(["indicator", "malware"]), rng.choice(["2.1", "2.0"])
        version = normalise_timestamp(f"2026-01-0{rng.randrange(1, 8)}T00:00:00Z")
        oid = f"{kind}--00000000-0000-4000-8000-{n:012d}"
        label = rng.choice(labels)
        return NewObject(oid, kind, spec, version, f'{{"id":"{oid}","v":"{version}"}}',
                         f"{oid}{version}", label, label, label.originator, False)

    everything = Query(versions=("all",), limit=1000)
    stored = store.query("c1", list(ids.values()), everything).rows
    for _ in range(60):
        step = rng.random()
        if step < 0.7 or not stored:
            store.add_objects("c1", [new(rng.randrange(4)) for _ in range(rng.randrange(1, 5))])
        elif step < 0.85:
            target = rng.choice(stored).object_id  # some of its versions, each its label
            versions = sorted({r.version for r in stored if r.object_id == target})
            chosen = rng.sample(versions, rng.randrange(1, len(versions) + 1))
            store.relabel(target, "JPN", {v: (lab, lab) for v in chosen
                                          if (lab := rng.choice(labels))}, [])
        else:
            store.delete("c1", rng.choice(readers), rng.choice(stored).object_id,
                         (rng.choice(["last", "first"]),))
        stored = store.query("c1", list(ids.values()), everything).rows
        for readable in readers:
            for query in (Query(limit=1000), Query(types=("malware",), limit=1000),
                          Query(spec_versions=("2.0",), limit=1000)):
                seen = [r for r in stored if r.label_id in readable
                        and (not query.types or r.object_type in query.types)
                        and (not query.spec_versions or r.spec_version in query.spec_versions)]
                wanted = [(r.object_id, r.version) for r in seen if not any(
                    m.object_id == r.object_id and m.version > r.version for m in seen)]
                got = [(r.object_id, r.version) for r in store.query("c1", readable, query).rows]
                assert got == wanted, (readable, query)
        assert raw(store, WRONG_MARKS) == []
    assert {n for n, in raw(store, "SELECT superseded FROM objects")} == {0, 1}


def test_migration_0016_marks_the_versions_stored_before_it(opener: Opener) -> None:
    """A store of versions under one label and under two, taken back to before migration
    0016 (its column and indexes dropped): opened again, it is migrated, every row's mark
    is what its definition says, and every reader's latest versions are what they were."""
    store = opener()
    store.add_collection(Collection("c1", "one", "", "intel"))
    store.add_objects("c1", [obj(n, f"2026-01-0{v}T00:00:00Z", label=HIGH if n == v else LOW)
                             for v in range(1, 5) for n in range(4)])
    readers = [ids_for(store, LOW), ids_for(store, LOW, HIGH), ids_for(store, HIGH)]
    before = [store.query("c1", r, Query()).rows for r in readers]
    undo = ["DROP INDEX objects_current_by_seq", "DROP INDEX objects_current_by_type",
            "ALTER TABLE objects DROP COLUMN superseded",
            "DELETE FROM schema_migrations WHERE version = 16"]
    _undo(store, undo)
    store.close()
    again = opener()
    assert again.schema_version == migrations()[-1][0]
    assert raw(again, WRONG_MARKS) == []
    assert sorted(n for n, in raw(again, "SELECT superseded FROM objects")) == [0] * 7 + [1] * 9
    assert [again.query("c1", r, Query()).rows for r in readers] == before


def test_date_added_strictly_increases_with_seq(store: Store) -> None:
    for n in range(5):
        store.add_objects("c1", [obj(20 * n + k) for k in range(20)])
    rows = store.query("c1", ids_for(store, LOW), Query(limit=1000)).rows
    added = [r.date_added for r in rows]
    assert added == sorted(added) and len(set(added)) == len(added) == 100
    assert all(len(a) == len("2026-01-01T00:00:00.000000Z") for a in added)


def test_paging_survives_concurrent_writes(store: Store) -> None:
    store.add_objects("c1", [obj(n) for n in range(50)])
    readable = ids_for(store, LOW)
    seen: list[str] = []
    cursor = None
    writer_done = threading.Event()

    def writer() -> None:
        for n in range(50, 80):
            store.add_objects("c1", [obj(n)])
        writer_done.set()

    t = threading.Thread(target=writer)
    started = False
    while True:
        page = store.query("c1", readable, Query(limit=7, cursor=cursor))
        seen.extend(r.object_id for r in page.rows)
        if not started:
            t.start()
            started = True
        if not page.more:
            if writer_done.is_set() and store.count("c1") == 80 and len(seen) == 80:
                break
            t.join()
            if page.rows:
                cursor = f"{page.rows[-1].seq}.{Query(limit=7).fingerprint()}"
            continue
        cursor = page.next
    assert len(seen) == len(set(seen)) == 80  # nothing skipped, nothing repeated


def test_paging_does_not_skip_an_object_stored_after_a_delete(store: Store) -> None:
    """docs/node.md: "new writes always land after every cursor, so paging never skips or
    repeats an object while others write". On SQLite `objects.seq` is an INTEGER PRIMARY
    KEY without AUTOINCREMENT: once the newest rows were deleted (TAXII DELETE by a
    security officer), the next object stored was given a seq a reader's cursor had
    already passed, and that reader's next page (seq > cursor) never showed it.
    (PostgreSQL's sequence never goes back; migration 0035 fixed the same reuse for the
    outbox.)"""
    store.add_objects("c1", [obj(1), obj(2), obj(3)])
    readable = ids_for(store, LOW)
    page = store.query("c1", readable, Query(limit=2))
    seen = [r.object_id for r in page.rows]
    assert seen == [obj(1).object_id, obj(2).object_id] and page.more
    for n in (2, 3):  # the newest two, the cursor's own row among them
        assert store.delete("c1", readable, obj(n).object_id, ("all",)) == 1
    store.add_objects("c1", [obj(4), obj(5)])
    cursor = page.next
    while cursor:
        page = store.query("c1", readable, Query(limit=2, cursor=cursor))
        seen += [r.object_id for r in page.rows]
        cursor = page.next
    assert seen == [obj(n).object_id for n in (1, 2, 4, 5)]


def test_migration_0039_gives_no_seq_a_cursor_may_have_passed(tmp_path: Path) -> None:
    """Seqs deleted before migration 0039 left no record: the first row stored after it
    is given a seq above any the rows at the top could have had."""
    store = SQLiteStore(tmp_path / "n.db")
    store.add_collection(Collection("c1", "one", "", "intel"))
    store.add_objects("c1", [obj(1), obj(2)])
    _undo(store, ["DROP TRIGGER objects_seq_above_floor", "DROP TRIGGER objects_seq_deleted",
                  "DROP TABLE objects_seq_floor",
                  "DELETE FROM schema_migrations WHERE version = 39"])
    readable = ids_for(store, LOW)
    (highest,) = raw(store, "SELECT max(seq) FROM objects")[0]
    assert store.delete("c1", readable, obj(2).object_id, ("all",)) == 1
    store.close()
    again = SQLiteStore(tmp_path / "n.db")
    try:
        again.add_objects("c1", [obj(3), obj(4)])
        seqs = [seq for (seq,) in raw(again, "SELECT seq FROM objects ORDER BY seq")]
        assert seqs == [highest - 1, highest + 1_000_000, highest + 1_000_001]
    finally:
        again.close()


def test_cursor_from_another_query_is_refused(store: Store) -> None:
    store.add_objects("c1", [obj(n) for n in range(5)])
    page = store.query("c1", ids_for(store, LOW), Query(limit=2))
    assert page.more and page.next
    with pytest.raises(BadCursor):
        store.query("c1", ids_for(store, LOW), Query(limit=2, types=("malware",),
                                                     cursor=page.next))
    with pytest.raises(BadCursor):
        store.query("c1", ids_for(store, LOW), Query(limit=2, cursor="x' OR 1=1 --"))


def test_filters_are_parameters_not_sql(store: Store) -> None:
    store.add_objects("c1", [obj(1)])
    hostile = ("indicator' OR '1'='1", "x\"); DROP TABLE objects; --")
    for value in hostile:
        assert store.query("c1", ids_for(store, LOW), Query(types=(value,))).rows == []
        assert store.query("c1", ids_for(store, LOW), Query(ids=(value,))).rows == []
    assert store.count("c1") == 1


def test_delete_only_visible_versions(store: Store) -> None:
    store.add_objects("c1", [obj(1, "2026-01-01T00:00:00Z"),
                             obj(1, "2026-02-01T00:00:00Z", label=HIGH)])
    assert store.delete("c1", ids_for(store, LOW), obj(1).object_id, ("all",)) == 1
    assert store.count("c1") == 1


def test_delete_audits_exactly_its_rows_in_its_transaction(store: Store) -> None:
    """The rows match[version] and match[spec_version] select are deleted, and the events
    ``audit`` makes of exactly them appended, in one transaction: an audit that fails
    leaves every row in place."""
    store.add_objects("c1", [obj(1, "2026-01-01T00:00:00Z"), obj(1, "2026-02-01T00:00:00Z"),
                             obj(1, "2026-03-01T00:00:00Z")])
    readable, oid = ids_for(store, LOW), obj(1).object_id
    seen: list[list[str]] = []

    def audit(rows: Any) -> list[AuditEvent]:
        seen.append([r.version for r in rows])
        return [AuditEvent("2026-01-01T00:00:00.000000Z", "delete", f'"{len(rows)}"')]

    def failing(rows: Any) -> list[AuditEvent]:
        raise RuntimeError("the audit could not be written")

    with pytest.raises(RuntimeError):
        store.delete("c1", readable, oid, ("all",), audit=failing)
    assert store.count("c1") == 3  # rolled back with its audit
    assert store.delete("c1", readable, oid, ("all",), ("2.0",), audit=audit) == 0
    assert store.delete("c1", readable, oid, ("first",), ("2.1",), audit=audit) == 1
    assert store.delete("c1", readable, oid, ("all",), audit=audit) == 2
    assert seen == [["2026-01-01T00:00:00.000000Z"],
                    ["2026-02-01T00:00:00.000000Z", "2026-03-01T00:00:00.000000Z"]]
    assert [r.body for r in store.find_audit(AuditFilter(kinds=("delete",)))] == ['"1"', '"2"']


def test_statuses_persist(opener: Opener) -> None:
    s = opener()
    s.save_status(StatusRecord("s1", "c1", "tanaka", "2026-01-01T00:00:00.000000Z",
                               {"id": "s1", "status": "complete"}))
    s.close()
    again = opener().status("s1")
    assert again is not None and again.body["status"] == "complete" and again.owner == "tanaka"


def test_people_and_tokens(store: Store) -> None:
    store.add_person(PersonRecord("kiri", "NZL", "SECRET", (), ("MARITIME",), ("analyst",),
                                  None, "2026-01-01T00:00:00Z"))
    with pytest.raises(Exception, match="already exists"):
        store.add_person(PersonRecord("kiri", "NZL", "SECRET", (), (), (), None, "t"))
    store.add_token("d1", "kiri", "", "t")
    assert store.token_owner("d1") == "kiri"
    assert store.revoke_person("kiri", "t2")
    assert store.token_owner("d1") is None
    assert not store.revoke_person("kiri", "t3")


def test_a_failed_batch_changes_nothing(store: Store) -> None:
    with pytest.raises(Exception, match="no collection"):
        store.add_objects("missing", [obj(1)], markings=[("marking-definition--x", "{}")])
    assert store.count("c1") == 0 and store.markings() == []


def test_a_different_marking_definition_under_a_stored_id_refuses_the_batch(
        store: Store) -> None:
    """Regression: a TAXII worker that had not seen a definition another worker stored
    learnt a different body under its id; the store kept the first (ON CONFLICT DO
    NOTHING) and the rest of the batch, labelled with the other body, was stored. Now the
    whole batch is refused, nothing of it stored. The same definition signed otherwise, or
    in other JSON text, is no conflict."""
    mid = "marking-definition--8f3b8a3e-6f37-4d2e-9d54-0a3b6c1d2e4f"
    defined = {"type": "marking-definition", "spec_version": "2.1", "id": mid,
               "created": "2026-01-01T00:00:00.000Z", "definition_type": "statement",
               "definition": {"statement": "S"}}
    text = json.dumps(defined, sort_keys=True)
    store.add_objects("c1", [obj(1)], markings=[(mid, text)])
    signed = {**defined, "extensions": {SIGNATURES_EXTENSION_ID: {"signatures": []}}}
    assert [r.outcome for r in store.add_objects(
        "c1", [obj(2)], markings=[(mid, json.dumps(signed, indent=1))])] == ["added"]
    other = json.dumps({**defined, "definition": {"statement": "U"}})
    new = ("marking-definition--00000000-0000-4000-8000-000000000001", "{}")
    with pytest.raises(MarkingConflict, match=f"a different marking-definition with id {mid} "
                       "was stored meanwhile") as info:
        store.add_objects("c1", [obj(3)], markings=[new, (mid, other)])
    assert info.value.marking_ids == [mid]
    assert store.count("c1") == 2 and store.markings() == [text]
    assert store.marking(mid) == text and store.marking(new[0]) is None


def test_enqueue_of_some_objects_takes_the_definitions_they_cite(store: Store) -> None:
    """``enqueue`` with object ids (a consent's release) reads only those objects and
    the marking-definitions, and queues each object after a definition it cites."""
    definition = obj(9, kind="marking-definition")
    oid = obj(1).object_id
    cites = obj(1, body=json.dumps({"id": oid, "object_marking_refs": [definition.object_id]}))
    store.add_objects("c1", [definition, cites, obj(2)])
    chosen = store.enqueue("NZL", lambda o: o.object_type != "marking-definition", [oid])
    assert chosen == 2
    assert [o.object_id for _, o in store.pending("NZL", 10)] == [definition.object_id, oid]
    assert store.enqueue("NZL", lambda o: True, []) == 0
    # queued once: what was queued stays, and is not counted as queued again
    assert store.enqueue("NZL", lambda o: True, [oid, "indicator--absent"]) == 0
    assert len(store.pending("NZL", 10)) == 2


def test_enqueue_takes_any_number_of_object_ids(store: Store) -> None:
    """Regression: ``enqueue`` bound one parameter per object id, and a consent token (a
    partner's input) may name any number: past SQLite's limit on variables (250,000 in
    this build, 32,766 by default) it raised "too many SQL variables", past PostgreSQL's
    65,535 a StoreUnavailable, and the holder's ``serve`` could no longer start. The ids
    are one parameter now."""
    store.add_objects("c1", [obj(1), obj(2)])
    many = [f"{i:x}" for i in range(300_000)] + [obj(2).object_id]
    assert store.enqueue("NZL", lambda o: True, many) == 1
    assert [o.object_id for _, o in store.pending("NZL", 10)] == [obj(2).object_id]


def test_outbox_in_the_same_transaction_and_federation_records(store: Store) -> None:
    results = store.add_objects("c1", [obj(1), obj(2, label=HIGH)],
                                markings=[("marking-definition--b", "{\"b\":1}"),
                                          ("marking-definition--a", "{\"a\":1}")],
                                release=lambda o: ["NZL"] if o.label == LOW else [])
    assert [r.outcome for r in results] == ["added", "added"]
    assert store.markings() == ['{"b":1}', '{"a":1}']  # in the order stored
    pending = store.pending("NZL", 10)
    assert [o.object_id for _, o in pending] == [obj(1).object_id]
    assert store.enqueue("NZL", lambda o: True) == 1  # the first is not queued, nor counted, twice
    entries = store.released_after("NZL", 0, 10)
    assert [o.object_id for _, o in entries] == [obj(1).object_id, obj(2).object_id]
    assert entries[0][0] < entries[1][0]
    assert store.released_after("NZL", entries[0][0], 10)[0][0] == entries[1][0]
    first = entries[0][0]
    for _ in range(20):
        store.failed_attempt("NZL", [first])
    assert [i for i, _ in store.pending("NZL", 10)] == [entries[1][0]]  # gave up pushing
    # a release is recorded once per entry, however often it is pushed, with its events
    size, ids = store.audit_size(), [i for i, _ in entries]
    made: list[list[int]] = []

    def events(fresh: Sequence[int]) -> list[AuditEvent]:
        made.append(list(fresh))
        return [_event(n) for n in fresh]

    assert store.record_release("NZL", ids[:1], "t1", events) == ids[:1]
    assert store.record_release("NZL", ids, "t2", events) == ids[1:]
    assert store.record_release("NZL", ids, "t3", events) == []
    assert store.record_release("AUS", ids, "t3", events) == []  # not AUS's entries
    assert made == [ids[:1], ids[1:]] and store.audit_size() == size + 2
    store.mark_delivered("NZL", [entries[1][0]], "2026-01-02T00:00:00.000000Z", "{}")
    assert store.pending("NZL", 10) == []
    [d] = store.disseminations()
    assert (d.party, d.object_id, d.receipt_at) == ("NZL", obj(2).object_id,
                                                    "2026-01-02T00:00:00.000000Z")
    store.set_pull_cursor("NZL", 5)
    store.set_pull_cursor("NZL", 3)  # never goes back
    assert store.pull_cursor("NZL") == 5 and store.pull_cursor("AUS") == 0
    store.add_refusals("NZL", [("indicator--x", "bad signature")], "t")
    assert store.refusals() == [("NZL", "indicator--x", "bad signature", "t")]
    store.add_refusals("NZL", [], "t")  # nothing refused: nothing kept
    assert len(store.refusals()) == 1
    store.add_peer(PeerRecord("NZL", "https://nz", "pub3", "k3", "pem", "fp", "{}", "t"))
    store.add_peer(PeerRecord("NZL", "https://nz2", "pub3", "k3", "pem", "fp", "{}", "t"))
    assert [p.url for p in store.peers()] == ["https://nz2"]
    assert store.party_keys("NZL") == {"k3": "pub3"}
    store.add_peer(PeerRecord("AUS", "https://au", "pub4", "k4", "pem", "fp", "{}", "t"))
    store.retire_key("JPN", ("j1", "pub-j1"), ("j2", "pub-j2"), "t",
                     lambda size, root, tree: ("note", '{"rotate":1}', []))
    [(aid, body)] = store.undelivered_announcements("NZL")
    store.announcement_delivered(aid, "NZL", "t2")
    assert store.undelivered_announcements("NZL") == []
    assert store.undelivered_announcements("AUS") == [(aid, body)]


def test_each_partner_s_outbox_is_numbered_apart(store: Store) -> None:
    """Regression: the cursor of a partner's pull was the outbox id, counted over every
    partner's entries, so the numbers it was given told it how many versions went to the
    others in between. Each partner's entries are numbered on their own now; a number is
    never given again, even after its entry is deleted (a recall's purge)."""
    store.add_objects("c1", [obj(n) for n in range(1, 7)],
                      release=lambda o: ["NZL", "AUS"] if o.object_id.endswith("1")
                      else ["AUS"] if int(o.object_id[-1]) % 2 else ["NZL"])
    nzl = store.released_after("NZL", 0, 10)
    assert [n for n, _ in nzl] == [1, 2, 3, 4]  # obj 1, 2, 4, 6: nothing of AUS's 3 and 5
    assert [n for n, _ in store.released_after("AUS", 0, 10)] == [1, 2, 3]
    assert [n for n, _ in store.released_after("NZL", 2, 10)] == [3, 4]
    store.purge(obj(6).object_id, "JPN", lambda row: "{}", "t", lambda rows: [])
    store.add_objects("c1", [obj(7)], release=lambda o: ["NZL"])
    assert [n for n, _ in store.released_after("NZL", 0, 10)] == [1, 2, 3, 5]


def _destruction_steps(tmp_path: Path, objects: int, queued: int = 0
                        ) -> tuple[float, float]:
    """SQLite's virtual machine instructions, and SQL statements other than a row
    written (a tombstone, a notice, an event), per object destroyed (each with its
    notice to the originator), purging from a fresh
    store its ``objects`` indicators received from NZL (two versions each) with
    ``purge_chosen`` in batches of 100 then the final pass over the whole store, as
    Controls.destroy_received does: the work, counted exactly (not timed). The store
    also holds ``queued`` outbox entries, of 1% as many objects of its own, each queued
    for a hundred partners."""
    from intelpact.store.base import Notice, Purging

    received = Label(A, 0, "NZL", frozenset({"JPN", "NZL"}))
    s = open_store(str(tmp_path / f"{objects}-{queued}.db"))
    try:
        s.add_collection(Collection("c1", "one", "", "intel"))
        s.add_objects("c1", [obj(10**6 + n) for n in range(queued // 100)],
                      release=lambda o: [f"P{p:02d}" for p in range(100)])
        for first in range(0, objects, 500):
            s.add_objects("c1", [o for n in range(first, min(objects, first + 500))
                                 for o in (obj(n, label=received),
                                           obj(n, "2026-02-01T00:00:00Z", label=received))])

        def purging(object_id: str, originator: str) -> Purging:
            return Purging(lambda row: "{}", lambda rows: [_event(len(rows), originator,
                                                                  (object_id,))],
                           lambda rows, earlier: [Notice(f"n-{object_id}", "out", originator,
                                                         "destroyed", object_id, "{}", "t")])

        def choose(originator: str, banner_id: int) -> bool:
            return originator == "NZL"

        assert isinstance(s, SQLiteStore)
        steps = [0]

        def step() -> int:
            steps[0] += 1
            return 0  # go on

        statements: list[str] = []
        s._conn().set_progress_handler(step, 100)  # noqa: SLF001 - the purge's connection
        s._conn().set_trace_callback(statements.append)  # noqa: SLF001
        purged, after = 0, 0
        while True:
            done = s.purge_chosen(choose, purging, "t", after=after, limit=100)
            assert done is not None
            purged += len(done.objects)
            if done.last == after:
                break
            after = done.last
        final = s.purge_chosen(choose, purging, "t")
        assert final is not None and final.objects == []
        s._conn().set_progress_handler(None, 0)  # noqa: SLF001
        s._conn().set_trace_callback(None)  # noqa: SLF001
        assert purged == objects
        written = ("UPDATE objects SET body", "INSERT INTO notices", "INSERT INTO audit_events")
        return (steps[0] * 100 / purged,
                len([s for s in statements if not s.startswith(written)]) / purged)
    finally:
        s.close()


def test_a_destruction_costs_the_same_per_object_whatever_the_store_holds(
        tmp_path: Path) -> None:
    """Regression: each object purge_chosen destroyed had its versions read by object id
    and originator, which no index of objects leads with: a scan of the whole table
    per object, so destroying N objects cost N times the store (5,000 received
    objects took 9.5 s, 500 took 0.17 s; bench/destroy.py). Counted in SQLite's
    instructions, an object costs no more in a store five times larger."""
    (small, _), (large, _) = (_destruction_steps(tmp_path, n) for n in (200, 1_000))
    assert large < 1.3 * small, (small, large)


def test_a_destruction_costs_the_same_per_object_whatever_the_outbox_holds(
        tmp_path: Path) -> None:
    """Regression: each version destroyed had its entries not yet delivered deleted
    from the outbox by seq, which SQLite's outbox had no index of (PostgreSQL's has,
    0002): a scan of every entry queued or delivered, per version, so a node that
    shares much paid for it on every object it destroyed. Counted in SQLite's
    instructions, an object costs no more beside 5,000 entries than beside none."""
    (small, _), (large, _) = (_destruction_steps(tmp_path, 200, queued=n)
                              for n in (0, 5_000))
    assert large < 1.3 * small, (small, large)


def test_a_destruction_deletes_a_batch_of_objects_a_statement_at_a_time(
        tmp_path: Path) -> None:
    """A purge_chosen batch reads its objects' versions, checks their notices, deletes
    their outbox entries and portions, and numbers their events in a statement each for
    the whole batch: only the rows written (a tombstone, a notice, an event) are a
    statement each. Before, each of those was a statement per object or per version:
    ten more for an object of two versions, each a round trip to PostgreSQL."""
    _, statements = _destruction_steps(tmp_path, 500)
    assert statements < 0.5, statements


def test_migration_0035_numbers_every_partner_s_entries_above_the_cursors_given(
        opener: Opener) -> None:
    """A partner keeps its cursor of our outbox: the entries queued before migration 0035
    keep their outbox id as their number, and every partner's numbers go on above the
    highest outbox id handed out, even one of an entry deleted since."""
    store = opener()
    store.add_collection(Collection("c1", "one", "", "intel"))
    store.add_objects("c1", [obj(n) for n in range(1, 5)],
                      release=lambda o: ["NZL"] if int(o.object_id[-1]) % 2 else ["AUS"])
    before = [i for i, _ in store._outbox("b.party = ?" if isinstance(store, SQLiteStore)  # noqa: SLF001
                                           else "b.party = %s", ("NZL", 10))]
    highest = max(i for i, _ in store._outbox("1 = 1", (10,)))  # noqa: SLF001
    store.purge(obj(4).object_id, "JPN", lambda row: "{}", "t", lambda rows: [])
    undo = ["DROP TRIGGER outbox_number" + ("" if isinstance(store, SQLiteStore)
                                            else " ON outbox"),
            "DROP INDEX outbox_numbered", "ALTER TABLE outbox DROP COLUMN number",
            "DROP TABLE outbox_numbers", "DROP TABLE outbox_floor",
            "DELETE FROM schema_migrations WHERE version = 35"]
    if not isinstance(store, SQLiteStore):
        undo.insert(1, "DROP FUNCTION outbox_number()")
    _undo(store, undo)
    store.close()
    again = opener()
    assert [n for n, _ in again.released_after("NZL", 0, 10)] == before
    again.add_objects("c1", [obj(5), obj(6)], release=lambda o: ["NZL", "AUS", "FRA"])
    new = [n for n, _ in again.released_after("FRA", 0, 10)]
    assert new[0] > highest and new[1] == new[0] + 1  # above the purged entry's id too
    for party, old in (("NZL", before), ("AUS", [before[0] + 1])):
        assert [n for n, _ in again.released_after(party, 0, 10)] == old + new, party
    assert [n for n, _ in again.released_after("NZL", before[-1], 10)] == new


def test_what_a_partner_pulls_is_in_the_dissemination_record(store: Store) -> None:
    """A pull has no receipt: its rows are recorded without one, with its audit event, once
    however often the partner pulls them; a push's receipt fills the row in, and a later
    pull leaves the receipt there."""
    store.add_objects("c1", [obj(1), obj(2)], release=lambda o: ["NZL"])
    (_, one), (second, two) = store.released_after("NZL", 0, 10)
    pulled = [(one.object_id, one.version, one.body_hash),
              (two.object_id, two.version, two.body_hash)]
    size = store.audit_size()
    audited: list[Sequence[tuple[str, str, str]]] = []

    def audit(fresh: Sequence[tuple[str, str, str]]) -> list[AuditEvent]:
        audited.append(fresh)
        return [_event(1)]

    assert store.add_pulled("NZL", pulled, "2026-01-02T00:00:00.000000Z", audit) == pulled
    assert store.add_pulled("NZL", pulled, "2026-01-03T00:00:00.000000Z", audit) == []
    assert audited == [pulled] and store.audit_size() == size + 1  # pulled again: nothing
    assert [(d.party, d.object_id, d.released, d.receipt_id, d.via)
            for d in store.disseminations()] == [
        ("NZL", o, "2026-01-02T00:00:00.000000Z", None, None) for o, _, _ in pulled]
    assert store.queued_for(one.object_id) == ["NZL"]  # pulled: no receipt, not delivered
    store.mark_delivered("NZL", [second], "2026-01-04T00:00:00.000000Z", "{}")
    assert store.add_pulled("NZL", pulled, "2026-01-05T00:00:00.000000Z", audit) == []
    assert [(d.object_id, d.receipt_at) for d in store.disseminations()] == [
        (one.object_id, None), (two.object_id, "2026-01-04T00:00:00.000000Z")]
    # an object's rows, a party's rows; and where an object still waits to go
    assert [d.object_id for d in store.disseminations(object_id=two.object_id)] == [
        two.object_id]
    assert len(store.disseminations(party="NZL")) == 2
    assert store.disseminations(party="AUS") == []
    assert store.disseminations(object_id=one.object_id, party="AUS") == []
    assert store.queued_for(two.object_id) == [] and store.queued_for("indicator--x") == []
    store.add_objects("c1", [obj(3)], release=lambda o: ["NZL", "AUS"])
    assert store.queued_for(obj(3).object_id) == ["AUS", "NZL"]


def test_collections_and_tokens(store: Store) -> None:
    store.add_collection(Collection("c0", "zero", "d", None))
    assert [c.collection_id for c in store.collections()] == ["c1", "c0"]
    assert store.collection("c0") == Collection("c0", "zero", "d", None)
    assert store.collection("nope") is None
    store.add_person(PersonRecord("ana", "JPN", "SECRET", ("X",), (), ("admin",), None, "t"))
    store.add_person(PersonRecord("aki", "JPN", "SECRET", (), (), (), None, "t"))
    assert [p.name for p in store.people()] == ["aki", "ana"]
    store.set_password("ana", "hash")
    person = store.person("ana")
    assert person is not None and person.password_hash == "hash" and person.caveats == ("X",)
    store.add_token("d1", "ana", "laptop", "t")
    store.add_token("d2", "ana", "phone", "t")
    assert store.revoke_tokens("ana", "t2", "d1") == 1
    assert store.token_owner("d1") is None and store.token_owner("d2") == "ana"
    assert store.revoke_tokens("ana", "t2") == 1
    assert store.token_owner("d2") is None


def test_objects_without_a_version_are_idempotent_by_body(store: Store) -> None:
    """An SCO has no created/modified: its version is its date_added, so the same body
    posted (or received) again must be recognised by its content."""
    sco = NewObject("ipv4-addr--00000000-0000-4000-8000-000000000001", "ipv4-addr", "2.1",
                    None, '{"value":"198.51.100.7"}', "h1", LOW, LOW, "JPN", False)
    first = store.add_objects("c1", [sco])
    again = store.add_objects("c1", [sco])
    assert [r.outcome for r in first + again] == ["added", "exists"]
    assert again[0].version == first[0].version
    assert store.holds("c1", sco.object_id, None, "h1")
    assert not store.holds("c1", sco.object_id, None, "other")
    assert store.count("c1") == 1


# -- key rotation (migration 0019) ---------------------------------------------------------


def _peer(party: str, key: str, when: str = "t") -> PeerRecord:
    return PeerRecord(party, f"https://{party.lower()}", f"pub-{key}", key, "pem", "fp", "{}",
                      when)


def test_retire_key_writes_the_rotation_whole_or_not_at_all(store: Store) -> None:
    """This node's rotation: the tree brought up to the last event, the old key's final
    checkpoint of it, the old key retired at its size, the new key current, the
    announcement queued for every partner and the events appended, in one transaction; a
    failure anywhere (here the seal, as a signing failure would) writes none of it."""
    store.add_peer(_peer("NZL", "nz1"))
    store.add_peer(_peer("AUS", "au1"))
    store.append_audit([_event(i) for i in range(5)])
    store.integrate_audit(2)  # three appended events are not yet in the tree

    def failing(size: int, root: bytes, tree: object) -> tuple[str, str, list[AuditEvent]]:
        raise RuntimeError("the old key could not sign")

    with pytest.raises(RuntimeError, match="could not sign"):
        store.retire_key("JPN", ("k1", "pub1"), ("k2", "pub2"), "t", failing)
    assert store.retired_keys("JPN") == {} and store.party_keys("JPN") == {}
    assert store.checkpoints() == [] and store.undelivered_announcements("NZL") == []
    assert store.audit_size() == 5 and store.audit_integrated() == 2
    seen: list[tuple[int, bytes]] = []

    def seal(size: int, root: bytes, tree: object) -> tuple[str, str, list[AuditEvent]]:
        seen.append((size, root))
        return "final note", '{"announced":1}', [_event(99)]

    assert store.retire_key("JPN", ("k1", "pub1"), ("k2", "pub2"), "t", seal) == 5
    leaves = [leaf_hash(e.body.encode()) for e in store.audit_events(0, 5)]
    assert seen == [(5, merkle_root(leaves))]  # the whole tree, integrated first
    assert [(c.size, c.note) for c in store.checkpoints()] == [(5, "final note")]
    assert store.retired_keys("JPN") == {"k1": 5}
    assert store.party_keys("JPN") == {"k1": "pub1", "k2": "pub2"}
    for party in ("NZL", "AUS"):
        assert [b for _, b in store.undelivered_announcements(party)] == ['{"announced":1}']
    assert store.audit_size() == 6 and json.loads(store.audit_events(5, 6)[0].body)["i"] == 99
    # a checkpoint of the tree signed already is not signed twice: its note stays
    store.retire_key("JPN", ("k2", "pub2"), ("k3", "pub3"), "t",
                     lambda n, r, t: ("another note", "{}", []))
    assert store.retired_keys("JPN") == {"k1": 5, "k2": 6}
    assert [c.note for c in store.checkpoints()] == ["final note", "another note"]


def test_accept_rotation_writes_the_partners_rotation_whole_or_not_at_all(
        store: Store) -> None:
    store.add_peer(_peer("NZL", "nz1"))
    store.add_partner_checkpoint("NZL", 3, b"r3", "note 3", "t")
    new = _peer("NZL", "nz2", "t2")
    judged: list[list[int]] = []

    def refuse(held: HeldCheckpoints) -> tuple[int, list[AuditEvent]]:
        largest = held.largest()
        judged.append([largest[0]] if largest else [])
        raise RuntimeError("a rewritten history")

    with pytest.raises(RuntimeError, match="rewritten"):
        store.accept_rotation("NZL", "nz1", new, (7, b"r7", "note 7"), refuse)
    assert judged == [[3]]  # the checkpoints held, read in the transaction
    assert store.peers()[0].key_id == "nz1" and store.retired_keys("NZL") == {}
    assert set(store.party_keys("NZL")) == {"nz1"}
    assert [h[0] for h in store.partner_checkpoints("NZL")] == [3] and store.audit_size() == 0
    assert store.count_partner_checkpoints("NZL") == 1

    def judge(held: HeldCheckpoints) -> tuple[int, list[AuditEvent]]:
        return 7, [_event(1)]

    assert store.accept_rotation("NZL", "nz1", new, (7, b"r7", "note 7"), judge)
    assert store.peers()[0].key_id == "nz2" and store.retired_keys("NZL") == {"nz1": 7}
    assert store.party_keys("NZL") == {"nz1": "pub-nz1", "nz2": "pub-nz2"}
    assert [(h[0], h[1], h[2]) for h in store.partner_checkpoints("NZL")] == [
        (3, b"r3", "note 3"), (7, b"r7", "note 7")]
    assert store.audit_size() == 1 and store.count_partner_checkpoints("NZL") == 2
    # delivered again (at least once), or applied meanwhile by another process: nothing
    assert not store.accept_rotation("NZL", "nz1", new, (7, b"r7", "note 7"), judge)
    assert store.audit_size() == 1


def test_migration_0019_bounds_the_keys_retired_before_it(opener: Opener) -> None:
    """Keys retired by an older intelpact have no announced bound: taken back to before
    migration 0019 and opened again, a partner's old keys are bounded by the largest
    checkpoint of its log held, this node's own (a party that is no partner) by the
    largest checkpoint of its own log; current keys stay unbounded."""
    store = opener()
    store.add_peer(_peer("NZL", "nz1"))
    store.add_peer(_peer("NZL", "nz2"))  # rotated: nz1 is retired, nz2 current
    store.add_peer(_peer("AUS", "au1"))  # never rotated, no checkpoint held
    with store._write() as c:  # noqa: SLF001 - this node's keys, retired by an older intelpact
        for kid in ("jp1", "jp2"):
            c.execute("INSERT INTO party_keys (party, key_id, public_key, added) VALUES "
                      f"('JPN', '{kid}', 'pub-{kid}', 't')")
    for size in (4, 9):
        store.add_partner_checkpoint("NZL", size, bytes([size]), f"note {size}", "t")
    store.append_audit([_event(i) for i in range(12)])
    store.integrate_audit(100, lambda n, r, t: "checkpoint")
    undo = ["ALTER TABLE party_keys DROP COLUMN last_size",
            "DELETE FROM schema_migrations WHERE version = 19"]
    _undo(store, undo)
    store.close()
    again = opener()
    assert again.schema_version == migrations()[-1][0]
    assert again.retired_keys("NZL") == {"nz1": 9}
    assert again.retired_keys("AUS") == {}
    assert again.retired_keys("JPN") == {"jp1": 12, "jp2": 12}


# -- the audit log ------------------------------------------------------------------------


def _event(i: int, originator: str | None = None, objects: tuple[str, ...] = ()) -> AuditEvent:
    import json

    body = json.dumps({"at": f"2026-01-01T00:00:{i % 60:02d}.000000Z", "i": i,
                       "kind": "read", "originator": originator,
                       "objects": [[o, "v"] for o in objects]}, sort_keys=True)
    return AuditEvent(f"2026-01-01T00:00:{i % 60:02d}.000000Z", "read", body,
                      person=f"p-{i % 3}", originator=originator, object_ids=objects)


def test_audit_appends_are_contiguous_across_writers(opener: Opener) -> None:
    """Two stores on one database, four threads each: every event once, no gap (leaf
    indexes are given under the write lock, never by a sequence)."""
    stores = [opener(), opener()]

    def work(s: Store, t: int) -> None:
        for i in range(25):
            s.append_audit([_event(t * 1000 + i), _event(t * 1000 + i + 500)])

    threads = [threading.Thread(target=work, args=(stores[t % 2], t)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = stores[0].audit_events(0, 10_000)
    assert [e.index for e in events] == list(range(400)) and stores[1].audit_size() == 400


def test_audit_add_objects_writes_its_events_in_the_same_transaction(store: Store) -> None:
    def events(results: object) -> list[AuditEvent]:
        return [_event(0, "JPN", (obj(1).object_id,))]

    store.add_objects("c1", [obj(1)], audit=events)
    store.integrate_audit(100)  # objects are indexed to events as they are integrated
    (only,) = store.find_audit(AuditFilter(object_id=obj(1).object_id))
    assert only.index == 0 and only.originator == "JPN"

    def failing(results: object) -> list[AuditEvent]:
        raise RuntimeError("the audit could not be written")

    with pytest.raises(RuntimeError):
        store.add_objects("c1", [obj(2)], audit=failing)
    assert store.query("c1", ids_for(store, LOW), Query(ids=(obj(2).object_id,))).rows == []


def test_audit_filters(store: Store) -> None:
    store.append_audit([_event(i, "JPN" if i % 2 else "NZL",
                               (obj(i % 4).object_id,)) for i in range(20)])
    assert store.find_audit(AuditFilter(object_id=obj(2).object_id)) == []  # not yet indexed
    store.integrate_audit(8)
    store.integrate_audit(100)  # in two steps: the index is filled as the tree grows
    assert [e.index for e in store.find_audit(AuditFilter(originator="JPN", limit=3))] == \
        [1, 3, 5]
    assert [e.index for e in store.find_audit(AuditFilter(originator="JPN", after=15))] == \
        [17, 19]
    assert {e.index for e in store.find_audit(AuditFilter(object_id=obj(2).object_id))} == \
        {2, 6, 10, 14, 18}
    assert len(store.find_audit(AuditFilter(persons=("p-0",)))) == 7
    assert store.find_audit(AuditFilter(since="2026-01-01T00:00:18.000000Z"))[0].index == 18
    assert store.find_audit(AuditFilter(kinds=("deny",))) == []
    assert store.find_audit(AuditFilter(persons=("x' OR 1=1 --",))) == []  # bound, not spliced


def test_sqlite_writers_of_other_processes_queue_on_the_writers_file(tmp_path: Path) -> None:
    """A write waits while another process holds the writers' lock (an flock of the file
    beside the database) and goes ahead as soon as it is released."""
    path = tmp_path / "n.db"
    store = SQLiteStore(path)
    store.add_collection(Collection("c1", "one", "", "intel"))
    with subprocess.Popen(
            [sys.executable, "-c", "import fcntl, os, sys\n"
             "fd = os.open(sys.argv[1], os.O_RDWR)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
             "print('held', flush=True)\nsys.stdin.readline()", f"{path}.writers"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "held"
        done = threading.Event()

        def write() -> None:
            store.add_objects("c1", [obj(1)])
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        try:
            assert not done.wait(0.5), "wrote while another process held the writers' lock"
        finally:
            holder.stdin.write("\n")
            holder.stdin.flush()
            writer.join(10)
        assert holder.wait(10) == 0 and done.is_set()
    assert store.count("c1") == 1
    store.close()


def test_audit_integration_in_steps_bounded_by_the_objects_named(store: Store) -> None:
    """The background integrator's steps: no more events than name ``refs`` objects in all,
    one at least, and the same tree whatever the steps."""
    many = tuple(obj(100 + k).object_id for k in range(30))
    events = [_event(0, "JPN", many), _event(1, "JPN", many[:5]), _event(2, "JPN", many[:5]),
              _event(3, "JPN")]
    store.append_audit(events)
    assert store.integrate_audit(100, refs=10)[0] == 1  # the first names 30: alone
    assert store.integrate_audit(100, refs=10)[0] == 3  # 5 + 5
    assert store.integrate_audit(100, refs=10) == (
        4, merkle_root([leaf_hash(e.body.encode()) for e in events]))
    assert {e.index for e in store.find_audit(AuditFilter(object_id=many[3]))} == {0, 1, 2}


def test_audit_pages_newest_first_with_a_bound(store: Store) -> None:
    """The desk's audit page: newest first, below a leaf index, the LIMIT in the query."""
    store.append_audit([_event(i, "JPN" if i % 2 else "NZL",
                               (obj(i % 4).object_id,)) for i in range(20)])
    store.integrate_audit(100)
    assert [e.index for e in store.latest_audit(AuditFilter(limit=3))] == [19, 18, 17]
    assert [e.index for e in store.latest_audit(AuditFilter(limit=3), before=17)] == \
        [16, 15, 14]
    assert [e.index for e in store.latest_audit(AuditFilter(originator="JPN", limit=2),
                                                before=19)] == [17, 15]
    assert [e.index for e in store.latest_audit(AuditFilter(object_id=obj(2).object_id,
                                                            after=6))] == [18, 14, 10]
    assert [e.index for e in store.latest_audit(AuditFilter(persons=("p-0",), limit=10),
                                                before=10)] == [9, 6, 3, 0]
    assert store.latest_audit(AuditFilter(), before=0) == []
    assert store.latest_audit(AuditFilter(persons=("x' OR 1=1 --",))) == []


def test_audit_integration_is_single_and_incremental(opener: Opener) -> None:
    """Integrators in two stores (processes) at once build one tree, equal to the RFC
    9162 tree over the events, and sign one checkpoint per size."""
    from intelpact.crypto.merkle import Tree, leaf_hash, root

    a, b = opener(), opener()
    a.append_audit([_event(i) for i in range(300)])
    signed: list[int] = []

    def sign(size: int, r: bytes, tree: Tree) -> str:
        signed.append(size)
        return f"note {size}"

    def work(s: Store) -> None:
        for _ in range(5):
            s.integrate_audit(37, sign)

    threads = [threading.Thread(target=work, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    size, tree_root = a.integrate_audit(1000)
    leaves = [leaf_hash(e.body.encode()) for e in a.audit_events(0, 300)]
    assert size == 300 and tree_root == root(leaves)
    assert [c.size for c in a.checkpoints()] == sorted(set(signed))
    assert a.latest_checkpoint() is not None and a.latest_checkpoint().size == 300
    tree = Tree(b.audit_nodes)
    assert tree.root(123) == root(leaves[:123])


def test_partner_checkpoints_and_alerts(store: Store) -> None:
    assert store.add_partner_checkpoint("NZL", 5, b"r" * 32, "note", "t")
    assert not store.add_partner_checkpoint("NZL", 5, b"x" * 32, "other", "t")
    assert store.partner_checkpoints("NZL") == [(5, b"r" * 32, "note", "t")]
    assert store.partner_checkpoints("AUS") == []
    assert store.partner_checkpoint_at("NZL", 5) == (5, b"r" * 32, "note", "t")
    assert store.partner_checkpoint_at("NZL", 4) is None
    assert store.partner_size("AUS") == 0 and store.largest_partner_checkpoint("AUS") is None
    store.raise_alert("history-rewritten", "NZL", "detail", "t")
    assert [a[1:] for a in store.alerts()] == [("history-rewritten", "NZL", "detail", "t")]
    (alert_id,) = [a[0] for a in store.alerts()]
    assert store.alert_resolutions() == {}
    assert not store.resolve_alert(alert_id + 1, "t2", "no such alert")
    assert store.resolve_alert(alert_id, "t2", "restored from backup")
    assert not store.resolve_alert(alert_id, "t3", "twice")  # the first stands
    assert store.alert_resolutions() == {alert_id: ("t2", "restored from backup")}
    assert len(store.alerts()) == 1  # the alert stays


def test_an_alert_raised_once_is_raised_once_by_writers_at_once(opener: Opener) -> None:
    """Two processes (a watch, a command) meeting the same finding at once: the check
    that it was raised before is made in the transaction that raises it."""
    stores = [opener() for _ in range(6)]
    start = threading.Barrier(len(stores))
    raised: list[bool] = []

    def raise_it(store: Store, n: int) -> None:
        start.wait()
        event = AuditEvent("2026-01-01T00:00:00.000000Z", "alert", json.dumps({"n": n}))
        raised.append(store.raise_alert("events-withheld", None, "the same gap", f"t{n}",
                                        [event], once=True))

    threads = [threading.Thread(target=raise_it, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(raised) == [False] * 5 + [True]
    store = stores[0]
    assert [a[1:4] for a in store.alerts()] == [("events-withheld", None, "the same gap")]
    assert store.audit_size() == 1  # the alert's event, once
    assert not store.raise_alert("events-withheld", None, "the same gap", "t", once=True)
    for party, detail in (("NZL", "the same gap"), (None, "another gap")):  # others are new
        assert store.raise_alert("events-withheld", party, detail, "t", once=True)
    assert store.raise_alert("events-withheld", None, "the same gap", "t")  # not once
    assert len(store.alerts()) == 4


def test_a_witness_judges_by_the_checkpoints_it_needs_however_many_are_kept(
        store: Store) -> None:
    """HeldCheckpoints reads the one of a size and the largest (below a bound) by the
    table's key, inside the transaction that keeps the next."""
    for size in (3, 10, 7, 20):
        assert store.add_partner_checkpoint("NZL", size, bytes([size]) * 32, f"n{size}", "t")
    store.add_partner_checkpoint("AUS", 99, b"a" * 32, "other party", "t")
    seen: list[Any] = []

    def judge(held: HeldCheckpoints) -> None:
        seen.extend([held.at(7), held.at(8), held.largest(), held.largest(upto=19),
                     held.largest(upto=2)])

    assert store.add_partner_checkpoint("NZL", 25, b"z" * 32, "n25", "t", judge)
    assert [row[0] if row else None for row in seen] == [7, None, 20, 10, None]
    assert seen[0] == (7, bytes([7]) * 32, "n7", "t")
    assert store.largest_partner_checkpoint("NZL") == (25, b"z" * 32, "n25", "t")
    assert store.partner_size("NZL") == 25 and store.count_partner_checkpoints("NZL") == 5

    def refuse(held: HeldCheckpoints) -> None:
        raise ValueError("conflicts")

    with pytest.raises(ValueError, match="conflicts"):
        store.add_partner_checkpoint("NZL", 30, b"y" * 32, "n30", "t", refuse)
    assert store.partner_size("NZL") == 25  # nothing kept
    assert store.count_partner_checkpoints("NZL") == 5


def test_the_checkpoints_kept_of_each_partner_are_counted_once_each(store: Store) -> None:
    """The desk's count of a partner's checkpoints is a tally read by key: each
    checkpoint kept counts once, one of a size kept already not again, and every party
    (whatever its name) apart."""
    parties = ["NZL", "AUS", "nzl", "N'Z\"L", "\u30cb\u30e5\u30fc"]
    for n, party in enumerate(parties, 1):
        assert store.count_partner_checkpoints(party) == 0
        for size in range(1, n + 1):
            assert store.add_partner_checkpoint(party, size, b"r" * 32, f"n{size}", "t")
        assert not store.add_partner_checkpoint(party, n, b"s" * 32, "again", "t")
    assert [store.count_partner_checkpoints(p) for p in parties] == [1, 2, 3, 4, 5]
    assert [len(store.partner_checkpoints(p)) for p in parties] == [1, 2, 3, 4, 5]


def test_the_upgrade_counts_the_checkpoints_kept_before(opener: Opener) -> None:
    """Migration 34 counts each partner's checkpoints kept before it."""
    before = opener()
    for party, sizes in (("NZL", (3, 10, 7)), ("AUS", (99,))):
        for size in sizes:
            before.add_partner_checkpoint(party, size, b"r" * 32, f"n{size}", "t")
    _undo(before, ["DROP TABLE partner_checkpoint_tally",
                   "DELETE FROM schema_migrations WHERE version = 34"])
    before.close()
    after = opener()
    assert after.schema_version == migrations()[-1][0]
    assert [after.count_partner_checkpoints(p) for p in ("NZL", "AUS", "FJI")] == [3, 1, 0]
    assert after.add_partner_checkpoint("NZL", 11, b"r" * 32, "n11", "t")
    assert after.count_partner_checkpoints("NZL") == 4


def test_the_partner_audit_watch_state(store: Store) -> None:
    assert store.partner_audit_watch("NZL") is None
    assert store.partner_audit_cursor("NZL") == (-1, 0)
    store.set_partner_audit_cursor("NZL", 41, 7, "t")
    store.set_partner_audit_cursor("NZL", 42, 8, "t2")
    assert store.partner_audit_watch("NZL") == (42, 8, "t2")
    assert store.partner_audit_cursor("NZL") == (42, 8)
    assert store.partner_audit_watch("AUS") is None


def test_the_partner_events_kept_move_with_the_cursor_never_back(store: Store) -> None:
    """The watch keeps what it read in the transaction that moves its cursor; a watch
    that read less (another process) moves nothing back, and an event kept stays as it
    was first kept."""
    def kept(leaf: int, seq: int | None, size: int = 100) -> KeptEvent:
        return KeptEvent(leaf, seq, f'{{"leaf": {leaf}, "é": "\\u00e9"}}', bytes(range(64)),
                         size)

    store.set_partner_audit_cursor("NZL", 12, 3, "t", [kept(3, None), kept(7, 0), kept(12, 1)])
    store.set_partner_audit_cursor("NZL", 12, 3, "t1", [kept(12, 2, size=200)])  # again
    assert store.partner_events("NZL") == [kept(3, None), kept(7, 0), kept(12, 1)]
    store.set_partner_audit_cursor("NZL", 20, 4, "t2", [kept(20, 2)])
    store.set_partner_audit_cursor("NZL", 7, 1, "t3", [kept(7, 0)])  # a slower reader
    assert store.partner_audit_watch("NZL") == (20, 4, "t2")
    assert [e.index for e in store.partner_events("NZL", after=3, before=20)] == [7, 12]
    assert [e.index for e in store.partner_events("NZL", limit=2)] == [3, 7]
    assert [e.index for e in store.partner_events("NZL", after=12)] == [20]
    assert store.partner_events("AUS") == []
    store.set_partner_audit_cursor("NZL", 20, 5, "t4")  # past a gap at the end: no event
    assert store.partner_audit_cursor("NZL") == (20, 5)


def test_the_watch_records_each_move_of_its_cursor_in_the_same_transaction(
        store: Store) -> None:
    """The event recording a move of the watch's cursor (``partner-audit-kept``) is
    appended in the transaction that moves it, and only if it moves: a round that read
    nothing new, or a slower reader in another process, appends nothing. The parties of
    those events are found by kind (what `audit verify` checks, whatever else is kept)."""
    def moved(party: str, after: int, expect: int) -> list[AuditEvent]:
        body = json.dumps({"after": after, "expect": expect, "kind": "partner-audit-kept",
                           "party": party})
        return [AuditEvent("2026-01-01T00:00:00.000000Z", "partner-audit-kept", body,
                           party=party)]

    def recorded() -> list[tuple[str | None, int, int]]:
        found = store.find_audit(AuditFilter(kinds=("partner-audit-kept",)))
        return [(r.party, json.loads(r.body)["after"], json.loads(r.body)["expect"])
                for r in found]

    kept = KeptEvent(7, 0, '{"leaf": 7}', b"p" * 32, 100)
    assert not store.set_partner_audit_cursor("NZL", -1, 0, "t", audit=moved("NZL", -1, 0))
    assert store.set_partner_audit_cursor("NZL", 7, 1, "t1", [kept],
                                          audit=moved("NZL", 7, 1))
    assert not store.set_partner_audit_cursor("NZL", 7, 1, "t2", audit=moved("NZL", 7, 1))
    assert not store.set_partner_audit_cursor("NZL", 3, 0, "t3", audit=moved("NZL", 3, 0))
    assert store.set_partner_audit_cursor("NZL", 7, 2, "t4", audit=moved("NZL", 7, 2))
    assert store.set_partner_audit_cursor("AUS", 4, 1, "t5", audit=moved("AUS", 4, 1))
    assert recorded() == [("NZL", 7, 1), ("NZL", 7, 2), ("AUS", 4, 1)]
    assert store.partner_audit_watch("NZL") == (7, 2, "t4")
    assert store.partner_events("NZL") == [kept]
    assert store.audit_parties("partner-audit-kept") == ["AUS", "NZL"]
    assert store.audit_parties("alert") == []


def _naming(leaf: int, seq: int | None, *objects: str) -> KeptEvent:
    body = json.dumps({"kind": "read", "objects": [[o, "v"] for o in objects]})
    return KeptEvent(leaf, seq, body, b"p" * 32, 100)


def test_the_partner_events_kept_are_found_by_the_objects_they_name(store: Store) -> None:
    """Each kept event's objects are indexed with it (partner_event_refs): the events
    about some objects are found by key, and the numbered ones kept below a leaf
    counted."""
    a, b, c = (f"indicator--00000000-0000-4000-8000-00000000000{i}" for i in range(3))
    store.set_partner_audit_cursor("NZL", 9, 4, "t", [
        _naming(1, None, a), _naming(3, 0, a, b), _naming(5, 1, b), _naming(7, 2, c),
        KeptEvent(8, 3, '{"objects": "not a list"}', b"p" * 32, 100),
        KeptEvent(9, 4, "not json", b"p" * 32, 100)])
    store.set_partner_audit_cursor("AUS", 3, 1, "t", [_naming(3, 0, a)])
    assert [e.index for e in store.partner_events("NZL", objects=[a])] == [1, 3]
    assert [e.index for e in store.partner_events("NZL", objects=[b, c])] == [3, 5, 7]
    assert [e.index for e in store.partner_events("NZL", objects=[a, b], after=1,
                                                  before=5)] == [3]
    assert [e.index for e in store.partner_events("NZL", objects=[b], limit=1)] == [3]
    assert store.partner_events("NZL", objects=["indicator--nothing"]) == []
    assert store.partner_event_refs("NZL", 0) == [(a, 1), (a, 3), (b, 3), (b, 5), (c, 7)]
    assert store.partner_event_refs("NZL", 3, 7) == [(a, 3), (b, 3), (b, 5)]
    assert store.partner_event_refs("NZL", 8) == [] and store.partner_event_refs(
        "AUS", 0) == [(a, 3)]
    assert store.numbered_partner_events("NZL", 100) == 5
    assert store.numbered_partner_events("NZL", 7) == 2  # 3 and 5; 1 has no number
    assert store.numbered_partner_events("AUS", 100) == 1


def _of(leaf: int, seq: int, kind: Any, *objects: str) -> KeptEvent:
    body = json.dumps({"kind": kind, "objects": [[o, "v"] for o in objects]})
    return KeptEvent(leaf, seq, body, b"p" * 32, 100)


def test_the_partner_events_kept_are_found_by_kind(store: Store,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each kept event is filed under its body's kind, and found by it: several kinds
    merged by leaf, with the objects filter, within bounds. An event filed under no kind
    (kept before kinds were filed) is found by what its body says, and one whose body
    does not decode is found by any kind, for its check to say what is wrong."""
    from intelpact.store import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "KIND_PAGE", 2)  # the unfiled, two at a time
    a, b = "indicator--00000000-0000-4000-8000-00000000000a", "report--b"
    store.set_partner_audit_cursor("NZL", 14, 9, "t", [
        _of(1, 0, "receive", a), _of(2, 1, "read", a), _of(3, 2, "deny", b),
        _of(4, 3, "read", b), _of(5, 4, "read", a), _of(6, 5, "destroy", a),
        _of(7, 6, "read", a), _of(8, 7, None, a), _of(9, 8, ["read"], a),
        KeptEvent(10, None, "not json", b"p" * 32, 100), _of(12, 9, "read", a),
        _of(14, 10, "deny", a)])
    store.set_partner_audit_cursor("AUS", 1, 1, "t", [_of(1, 0, "read", a)])
    assert [e.kind for e in store.partner_events("NZL")][:3] == ["receive", "read", "deny"]
    with store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - as kept before
        c.execute("UPDATE partner_events SET kind = NULL WHERE leaf IN (4, 5, 12)")

    def leaves(**kw: Any) -> list[int]:
        return [e.index for e in store.partner_events("NZL", **kw)]

    assert leaves(kinds=["read"]) == [2, 4, 5, 7, 10, 12]
    assert leaves(kinds=["deny", "read"]) == [2, 3, 4, 5, 7, 10, 12, 14]
    assert leaves(kinds=["read"], limit=3) == [2, 4, 5]
    assert leaves(kinds=["read", "deny"], after=3, before=12, limit=4) == [4, 5, 7, 10]
    assert leaves(kinds=["read"], objects=[b]) == [4]
    assert leaves(kinds=["destroy"]) == [6, 10] and leaves(kinds=["alert"]) == [10]
    assert [e.index for e in store.partner_events("AUS", kinds=["read"])] == [1]


def test_what_a_store_cannot_keep_is_filed_under_nothing(store: Store) -> None:
    """A kind or an object id holding a NUL character (PostgreSQL's text cannot keep
    one) is filed under nothing, and the event is kept all the same: a partner's event
    does not stop its watch."""
    a = "indicator--00000000-0000-4000-8000-00000000000a"
    body = json.dumps({"kind": "re\x00ad", "objects": [[a, "v"], ["x\x00y", "v"]]})
    store.set_partner_audit_cursor("NZL", 3, 1, "t", [KeptEvent(3, 0, body, b"p" * 32, 9)])
    (kept,) = store.partner_events("NZL")
    assert (kept.body, kept.kind) == (body, None)
    assert store.partner_event_refs("NZL", 0) == [(a, 3)]
    assert filed_under(body) == (None, {a})


def test_hostile_kinds_and_ids_are_filed_and_found_as_they_are(store: Store) -> None:
    """Every naughty string, as a kept event's kind and as the id of an object it names,
    is filed as it is and found by it, on either store; one with a NUL is filed under
    nothing, its event kept all the same."""
    naughty = json.loads((Path(__file__).parents[1] / "data" / "json" / "naughty-strings" /
                          "blns.json").read_text()) + ["a\x00b", "\x00"]
    store.set_partner_audit_cursor("NZL", len(naughty), len(naughty), "t", [
        _of(leaf, leaf - 1, text, text) for leaf, text in enumerate(naughty, 1)])
    kept = store.partner_events("NZL")
    assert [k.body for k in kept] == [_of(i, i - 1, t, t).body
                                       for i, t in enumerate(naughty, 1)]
    filed = [t for t in naughty if "\x00" not in t]
    assert [k.kind for k in kept] == [t if "\x00" not in t else None for t in naughty]
    assert sorted(store.partner_event_refs("NZL", 0), key=lambda r: r[1]) == [
        (t, leaf) for leaf, t in enumerate(naughty, 1) if "\x00" not in t]
    for text in filed:
        want = [leaf for leaf, t in enumerate(naughty, 1) if t == text]
        assert [k.index for k in store.partner_events("NZL", kinds=[text])] == want, text
        assert [k.index for k in store.partner_events("NZL", objects=[text])] == want, text


def test_the_upgrade_files_no_kind_for_the_partner_events_kept_before(
        opener: Opener) -> None:
    """Migration 33 files the events kept before it under no kind: a search by kind
    reads their bodies."""
    before = opener()
    before.set_partner_audit_cursor("NZL", 3, 2, "t", [_of(2, 0, "read"), _of(3, 1, "deny")])
    with before._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - as version 32
        c.execute("DROP INDEX partner_events_by_kind")
        c.execute("ALTER TABLE partner_events DROP COLUMN kind")
        c.execute("DELETE FROM schema_migrations WHERE version = 33")
    before.close()
    after = opener()
    assert [e.kind for e in after.partner_events("NZL")] == [None, None]
    assert [e.index for e in after.partner_events("NZL", kinds=["deny"])] == [3]


def test_the_upgrade_indexes_the_partner_events_kept_before(opener: Opener) -> None:
    """Migration 31 indexes, from their bodies, the events kept before it (a NUL escape,
    which PostgreSQL's jsonb refuses, read all the same)."""
    a, b = "indicator--00000000-0000-4000-8000-00000000000a", "report--x"
    before = opener()
    before.set_partner_audit_cursor("NZL", 11, 3, "t", [
        _naming(3, 0, a, b), _naming(5, 1, b),
        KeptEvent(9, 2, '{"objects": [7, [8], [null, "v"], "x"]}', b"p" * 32, 100),
        KeptEvent(11, 3, '{"objects": [["' + a + '", "v"]], "reason": "\\u0000"}',
                  b"p" * 32, 100)])
    with before._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - as version 30
        c.execute("DROP TABLE partner_event_refs")
        c.execute("DROP INDEX partner_events_by_kind")  # and what came after
        c.execute("ALTER TABLE partner_events DROP COLUMN kind")
        c.execute("DROP TABLE partner_checkpoint_tally")
        c.execute("DELETE FROM schema_migrations WHERE version BETWEEN 31 AND 34")
    before.close()
    after = opener()
    assert [e.index for e in after.partner_events("NZL", objects=[a])] == [3, 11]
    assert [e.index for e in after.partner_events("NZL", objects=[b])] == [3, 5]
    assert sum(len(after.partner_events("NZL", objects=[o])) for o in (a, b, "x")) == 4


def test_the_fast_timestamp_parser_agrees_with_the_general_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Versions are parsed without strptime when in the usual form; the verdict and the
    value (or the error) are the general parser's, on valid and invalid dates alike."""
    import random
    import re

    from intelpact.store import base

    rng = random.Random(5)
    cases = ["2026-02-30T00:00:00Z", "2026-01-01T00:00:60Z", "2026-01-01t00:00:00Z",
             "2026-01-01T00:00:00.123456789Z", " 2026-01-01T00:00:00Z", "2026-1-01T00:00:00Z"]
    for _ in range(3000):
        t = (f"{rng.randint(0, 9999):04d}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}T"
             f"{rng.randint(0, 25):02d}:{rng.randint(0, 61):02d}:{rng.randint(0, 61):02d}")
        if rng.random() < 0.7:
            t += "." + str(rng.randint(0, 10 ** rng.randint(1, 9)))
        cases.append(t + rng.choice(["Z", "z", "+00:00"]))

    def outcome(text: str) -> object:
        try:
            return base.parse_timestamp(text)
        except ValueError as exc:
            return str(exc)

    fast = [outcome(c) for c in cases]
    monkeypatch.setattr(base, "_RFC3339", re.compile(r"(?!)"))  # only the general parser
    assert fast == [outcome(c) for c in cases]


def test_sqlite_pages_start_where_they_should(tmp_path: Path) -> None:
    """The plans behind the first page of a filtered query: `added_after` starts the
    seq walk after the last row added by then (found through objects_by_added), and one
    type walks that type's rows only; neither reads the collection from its start. The
    answers are those of the plain definitions."""
    from intelpact.store.sqlite import _select

    s = SQLiteStore(tmp_path / "n.db")
    s.add_collection(Collection("c1", "one", "", "intel"))
    s.add_objects("c1", [obj(i) for i in range(30)])
    s.add_objects("c1", [obj(99, kind="malware")])
    everything = list(s.labels())
    rows = s.query("c1", everything, Query(versions=("all",), limit=100)).rows
    middle = rows[19].date_added
    after = s.query("c1", everything, Query(added_after=middle, limit=100)).rows
    assert [r.object_id for r in after] == [r.object_id for r in rows[20:]]
    (malware,) = s.query("c1", everything, Query(types=("malware",), limit=100)).rows
    assert malware.object_id == obj(99, kind="malware").object_id
    conn = sqlite3.connect(tmp_path / "n.db")
    for query, wanted in ((Query(added_after=middle), "objects_by_added"),
                          (Query(types=("malware",)), "objects_current_by_type"),
                          (Query(types=("malware",), versions=("all",)), "objects_by_type"),
                          (Query(), "objects_current_by_seq")):
        sql, params = _select("c1", everything, query)
        plan = " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert wanted in plan, plan
    conn.close()
    s.close()


ONE_ID = "indicator--" + "0" * 33 + "234"


class Recorded:
    """A connection of a store's (sqlite3 or psycopg) whose statements run through
    ``execute`` and ``executemany`` are also kept (the first parameters of an
    executemany), to be explained after. Not a stand-in: each statement runs."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements: list[tuple[str, Sequence[Any]]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.statements.append((sql, params))
        return self.conn.cursor().execute(sql, params)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self.statements.append((sql, params[0]))
        self.conn.cursor().executemany(sql, params)

    def of_objects(self) -> list[tuple[str, Sequence[Any]]]:
        return [(sql, params) for sql, params in self.statements if " objects " in sql]


def test_sqlite_finds_an_object_s_versions_along_the_id(tmp_path: Path) -> None:
    """Among 5,000 versions (1,000 ids of 5, each queued for NZL): the statements that
    read one object's versions (its `superseded` marks, the definitions a publication
    cites, the parties it is queued for, what enqueue chooses from, a relabelling's
    check for a version stored meanwhile, its look for where older versions went, its
    writes, whether it was withdrawn) search the unique (collection, id, version) index
    for the id, or the marking-definitions by type: none scans objects, nor reads every
    object of an originator or a label."""
    from intelpact.store.sqlite import (
        _collections_held,
        _enqueue_select,
        _in,
        _queue_cited,
        _queued_for,
        _relabel_rows,
        _stored_meanwhile,
        _supersede_added,
        _supersede_again,
        _went,
        _withdrawn,
    )

    s = SQLiteStore(tmp_path / "n.db")
    s.add_collection(Collection("c1", "one", "", "intel"))
    s.add_collection(Collection("c2", "two", "", "intel2"))
    s.add_objects("c1", [obj(900_000 + rank, label=dataclasses.replace(LOW, rank=rank))
                         for rank in range(4)])
    s.close()
    conn = sqlite3.connect(tmp_path / "n.db")
    conn.execute(
        "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 5000) "
        "INSERT INTO objects (collection_id, object_id, object_type, spec_version, version, "
        "date_added, label_id, banner_id, originator, has_portions, body, body_hash) "
        "SELECT 'c1', 'indicator--' || printf('%036d', n % 1000), 'indicator', '2.1', "
        "printf('2026-01-01T00:00:00.%06dZ', n), printf('2027-01-01T00:00:00.%06dZ', n), "
        "(SELECT min(label_id) FROM labels) + n % 4, (SELECT min(label_id) FROM labels), "
        "'JPN', 0, 'x', 'h' FROM g")
    conn.execute("INSERT INTO outbox (party, seq, enqueued) SELECT 'NZL', seq, date_added "
                 "FROM objects")
    seqs = [seq for seq, in conn.execute("SELECT seq FROM objects WHERE object_id = ?",
                                         (ONE_ID,))]
    recorded = Recorded(conn)
    _supersede_again(recorded, "?", ONE_ID)
    _supersede_added(recorded, "?", seqs)
    _queue_cited(recorded, "?", "AUS", dataclasses.replace(obj(1), marking_refs=(ONE_ID,)),
                 "2027-02-01T00:00:00.000000Z", set(), _collections_held(conn))
    _stored_meanwhile(recorded, "?", ONE_ID, "JPN", "2000-01-01T00:00:00.000000Z", {})
    _went(recorded, "?", ONE_ID, "JPN", "2026-01-01T00:00:00.001234Z")
    assert _relabel_rows(recorded, "?", ONE_ID, "JPN", {"2026-01-01T00:00:00.000234Z": (1, 1)})
    _queued_for(recorded, "?", ONE_ID)
    _withdrawn(recorded, "?", [ONE_ID])
    statements = [*recorded.of_objects(), _enqueue_select([ONE_ID], _in, ["c1", "c2"])]
    for sql, params in statements:
        plan = [str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        shown = "\n".join([sql, *plan])
        for line in plan:
            assert not line.startswith("SCAN ") or line.startswith("SCAN json_each"), shown
            if line.startswith(("SEARCH objects ", "SEARCH o ")) \
                    and "INTEGER PRIMARY KEY" not in line:
                assert "(collection_id=? AND object_id=?" in line or \
                    "(collection_id=? AND object_type=?)" in line, shown
    conn.rollback()
    conn.close()


def test_notices_are_kept_once_and_found_by_id(store: Store) -> None:
    from intelpact.store.base import Notice

    notice = Notice("n-1", "out", "NZL", "recall", obj(1).object_id, '{"n":1}', "t")
    assert store.add_notice(notice, recall_reason="why")
    assert not store.add_notice(notice)  # the same id again: kept once
    assert store.notice("n-1") == notice
    assert store.notice("n-2") is None
    assert [n.notice_id for n in store.pending_notices("NZL", 10)] == ["n-1"]
    store.notice_delivered("n-1", "t2", "receipt")
    assert store.pending_notices("NZL", 10) == []
    (recall,) = store.recalls()
    assert recall.party == "NZL" and recall.reason == "why" and recall.destroyed is None
    other = Notice("n-2", "out", "AUS", "recall", obj(2).object_id, '{"n":2}', "t")
    assert store.add_notice(other, recall_reason="because")
    assert [r.notice_id for r in store.recalls()] == ["n-1", "n-2"]
    assert store.recalls([obj(2).object_id]) == [store.recalls()[1]]
    assert store.recalls([obj(3).object_id]) == [] and store.recalls([]) == []


def test_nothing_more_of_an_object_recalled_from_here_is_stored(store: Store) -> None:
    """Once its originator's recall is kept here, no version of the object is stored
    (whoever sends it): "recalled", in its place in the batch; other objects go in."""
    from intelpact.store.base import Notice

    recalled = obj(1).object_id
    store.add_notice(Notice("r-1", "in", str(LOW.originator), "recall", recalled, "{}", "t"))
    batch = [obj(2), obj(1, "2026-02-01T00:00:00Z"), obj(3), obj(1, "2026-03-01T00:00:00Z")]
    results = store.add_objects("c1", batch)
    assert [r.outcome for r in results] == ["added", "recalled", "added", "recalled"]
    assert "recalled" in results[1].message and results[1].object_id == recalled
    assert store.held([recalled]) == []


def test_migration_0023_keeps_the_answers_that_named_nothing(opener: Opener) -> None:
    """Answers to a recall kept before migration 0023 that named nothing destroyed are
    shown as such after it (its column and index dropped, then opened again); one that
    named something, or answered no recall, is not."""
    from intelpact.store.base import Notice

    store = opener()
    for n, named in ((1, []), (2, [["2026-01-01T00:00:00.000000Z", "h"]]), (3, [])):
        oid = obj(n).object_id
        store.add_notice(Notice(f"r-{n}", "out", "NZL", "recall", oid, "{}", "t1"),
                         recall_reason="why")
        answer = {"notice": {"destroyed": named, "in_reply_to": f"r-{n}" if n < 3 else None,
                             "kind": "destroyed", "object_id": oid}}
        store.add_notice(Notice(f"d-{n}", "in", "NZL", "destroyed", oid,
                                json.dumps(answer, separators=(",", ":"), sort_keys=True),
                                "t2"))
    _undo(store, ["DROP INDEX notices_recalled_here",
                  "ALTER TABLE recalls DROP COLUMN unconfirmed",
                  "DELETE FROM schema_migrations WHERE version = 23"])
    store.close()
    again = opener()
    assert again.schema_version == migrations()[-1][0]
    assert [r.unconfirmed for r in sorted(again.recalls(), key=lambda r: r.object_id)] == [
        "answered, naming nothing destroyed", None, None]


def test_console_sessions_are_shared_expire_in_the_query_and_end(opener: Opener) -> None:
    """Kept by digest (never the token), found by every opener of the database (another
    process), not found once idle, touched only forward, and ended by log-out,
    revocation and a changed password."""
    one, other = opener(), opener()
    for name in ("kiri", "ana"):
        one.add_person(PersonRecord(name, "NZL", "SECRET", (), (), ("analyst",), "h", "t"))
    t0, t1, t2 = ("2026-05-01T10:00:00.000000Z", "2026-05-01T10:10:00.000000Z",
                  "2026-05-01T10:20:00.000000Z")
    early = "2026-05-01T09:00:00.000000Z"
    one.add_session(SessionRecord("a" * 64, "kiri", "csrf-a", t0, t0), idle_before=early)
    one.add_session(SessionRecord("b" * 64, "kiri", "csrf-b", t0, t0), idle_before=early)
    one.add_session(SessionRecord("c" * 64, "ana", "csrf-c", t0, t0), idle_before=early)
    found = other.session("a" * 64, idle_before=early)
    assert found == SessionRecord("a" * 64, "kiri", "csrf-a", t0, t0)
    assert other.session("a" * 64, idle_before=t1) is None  # idle: the query says no
    other.touch_session("a" * 64, t1)
    other.touch_session("a" * 64, t0)  # never backwards
    assert one.session("a" * 64, idle_before=t1) == SessionRecord("a" * 64, "kiri",
                                                                   "csrf-a", t0, t1)
    assert one.session("d" * 64, idle_before=early) is None
    # a log-in deletes the idle ones: b and c were last seen at t0
    one.add_session(SessionRecord("e" * 64, "ana", "csrf-e", t2, t2), idle_before=t1)
    assert other.session("b" * 64, idle_before=early) is None
    assert other.session("c" * 64, idle_before=early) is None
    assert other.session("a" * 64, idle_before=early) is not None
    one.end_session("e" * 64)
    assert other.session("e" * 64, idle_before=early) is None
    one.set_password("kiri", "new-hash")  # a new password ends every session of kiri
    assert other.session("a" * 64, idle_before=early) is None
    for digest in ("f" * 64, "0" * 64):
        one.add_session(SessionRecord(digest, "ana", "x", t2, t2), idle_before=t1)
    assert one.revoke_person("ana", t2)  # so does revocation
    assert other.session("f" * 64, idle_before=t1) is None
    one.add_session(SessionRecord("1" * 64, "kiri", "x", t2, t2), idle_before=t1)
    assert other.end_sessions("kiri") == 1 and other.end_sessions("kiri") == 0


def test_refers_to_finds_the_rows_that_name_an_id(store: Store) -> None:
    target = "indicator--00000000-0000-4000-8000-000000000001"
    rel = '{"id":"%s","source_ref":"%s","target_ref":"%s"}'
    rows = [obj(10, kind="relationship", body=rel % (
                "relationship--00000000-0000-4000-8000-000000000010", target, "x--1")),
            obj(11, kind="relationship", body=rel % (
                "relationship--00000000-0000-4000-8000-000000000011", "x--2", "x--3")),
            obj(12, kind="relationship", body=rel % (
                "relationship--00000000-0000-4000-8000-000000000012", "x--4", target + "0"))]
    store.add_objects("c1", rows)
    page = store.query("c1", ids_for(store, LOW), Query(types=("relationship",),
                                                        refers_to=target, newest_first=True))
    assert [r.object_id for r in page.rows] == [rows[0].object_id]


def test_text_with_a_nul_is_refused_or_matches_nothing(store: Store) -> None:
    """SQLite keeps NUL characters, so such a value simply matches nothing; PostgreSQL's
    text cannot hold one, so the store refuses it with its own error: never a driver's
    exception (a 500 at the API)."""
    lookups = (store.person, store.collection, store.status, store.consent)
    for lookup in lookups:
        if isinstance(store, SQLiteStore):
            assert lookup("c1\x00") is None
        else:
            with pytest.raises(StoreError, match="NUL"):
                lookup("c1\x00")


def test_the_desk_lists_are_bounded_newest_first(store: Store) -> None:
    store.add_objects("c1", [obj(n) for n in range(1, 6)], release=lambda o: ["NZL"])
    for n, (entry, _) in enumerate(store.pending("NZL", 10)):
        store.mark_delivered("NZL", [entry], f"2026-01-0{n + 1}T00:00:00.000000Z", "{}")
    newest = [obj(n).object_id for n in range(5, 0, -1)]
    assert [d.object_id for d in store.latest_disseminations(2)] == newest[:2]
    assert [d.object_id for d in store.latest_disseminations(2, 2)] == newest[2:4]
    assert [d.object_id for d in store.latest_disseminations(2, 4)] == newest[4:]
    assert store.latest_disseminations(2, 6) == []
    assert store.latest_recalls(5) == [] and store.latest_consents(5) == []
    assert store.latest_compromise_reports(5) == []


def test_short_text_looks_only_at_the_newest_rows(store: Store,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import intelpact.store.postgres as pgstore
    import intelpact.store.sqlite as sqlitestore
    for module in (sqlitestore, pgstore):
        monkeypatch.setattr(module, "SHORT_TEXT_ROWS", 3)
    rows = [obj(n, body=f'{{"id":"indicator--00000000-0000-4000-8000-{n:012d}",'
                f'"name":"x{"z" if n != 4 else "y"}q"}}') for n in range(1, 7)]
    hidden = obj(7, label=HIGH,
                 body='{"id":"indicator--00000000-0000-4000-8000-000000000007","name":"xzq"}')
    store.add_objects("c1", [*rows, hidden])  # the newest row, which the reader may not see
    readable = ids_for(store, LOW)

    def found(text: str) -> list[str]:
        page = store.query("c1", readable, Query(text=text, newest_first=True))
        return [r.object_id for r in page.rows]

    # the newest 3 rows the reader may see are 6, 5 and 4 (7 is not theirs); 4 has "yq"
    assert found("zq") == [rows[5].object_id, rows[4].object_id]
    assert found("xzq") == [r.object_id for r in reversed(rows) if r is not rows[3]]


def test_text_holding_like_wildcards_is_found_as_written(store: Store) -> None:
    """Both stores look for a text with a LIKE as well as their index (SQLite for text too
    short for a trigram, PostgreSQL first of all, along its trigram index): ``%``, ``_``
    and a backslash in it are the characters, not patterns."""
    names = ["50% off", "500 off", "a_b", "axb", "back\\slash", "backslash"]
    store.add_objects("c1", [obj(n, body=json.dumps({
        "id": f"indicator--00000000-0000-4000-8000-{n:012d}", "name": name}))
        for n, name in enumerate(names, 1)])
    readable = ids_for(store, LOW)
    for text, wanted in (("%", [1]), ("0%", [1]), ("0% o", [1]), ("_", [3]), ("a_b", [3]),
                         ("\\", [5]), ("k\\s", [5]), ("o", [1, 2])):
        page = store.query("c1", readable, Query(text=text))
        assert [int(r.object_id[-3:]) for r in page.rows] == wanted, text


def test_postgresql_searches_along_its_trigram_index() -> None:
    """Migration 0041 makes a trigram index (pg_trgm) of the folded text, and the search
    asks whether a version holds the text as that index is written, so that a rare word
    is found along it, not by reading every version (written with chr(10) for E'\\n',
    the planner did not match it to the index, which went unused)."""
    from intelpact.store.postgres import _HOLDS_TEXT

    url = pg.database_url()
    store = open_store(url)
    try:
        store.add_collection(Collection("c1", "one", "", "intel"))
        store.add_objects("c1", [_named(n, f"harbour {n}") for n in range(1, 30)])
        with psycopg.connect(url) as c:
            c.execute("SET enable_seqscan = off")  # a table this small is read whole else
            plan = "\n".join(str(r[0]) for r in c.execute(
                f"EXPLAIN SELECT h.seq FROM objects_folded h WHERE {_HOLDS_TEXT}",
                (contains_pattern("harbour 7"),)))
        assert "objects_folded_trigrams" in plan, plan
        page = store.query("c1", ids_for(store, LOW), Query(text="Harbour 7"))
        assert [r.object_id[-3:] for r in page.rows] == ["007"]
    finally:
        store.close()


def test_a_postgresql_role_that_may_not_make_pg_trgm_still_migrates_and_searches() -> None:
    """Where the node's role may not create the extension (no CREATE on the database),
    migration 0041 makes no index, and the search reads every version, as before it."""
    url = pg.database_url()
    role = f"plain_{uuid.uuid4().hex[:8]}"
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as c:
        c.execute('DROP INDEX objects_folded_trigrams')
        c.execute("DROP EXTENSION pg_trgm")
        c.execute("DELETE FROM schema_migrations WHERE version = 41")
        c.execute(f'CREATE ROLE "{role}" LOGIN')
        c.execute(f'REVOKE CREATE ON DATABASE "{name}" FROM PUBLIC')
        c.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
        c.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        c.execute(f'GRANT ALL ON SCHEMA public TO "{role}"')
    store = open_store(url.replace("://postgres@", f"://{role}@", 1))
    assert isinstance(store, PostgresStore)
    try:
        assert store.schema_version == migrations()[-1][0]
        store.add_collection(Collection("c1", "one", "", "intel"))
        store.add_objects("c1", [_named(n, f"harbour {n}") for n in range(1, 4)])
        page = store.query("c1", ids_for(store, LOW), Query(text="harbour 2"))
        assert [r.object_id[-3:] for r in page.rows] == ["002"]
    finally:
        store.close()
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM pg_indexes WHERE indexname = "
                         "'objects_folded_trigrams'").fetchone() == (0,)


def _named(n: int, name: str, label: Label = LOW) -> NewObject:
    oid = f"indicator--00000000-0000-4000-8000-{n:012d}"
    return obj(n, label=label, body=f'{{"id":"{oid}","name":"{name}"}}')


def _writing(path: Path) -> sqlite3.Connection:
    """A connection of our own to the database at ``path``, as the store makes them: the
    search index's triggers call fold_text (migration 0040)."""
    conn = sqlite3.connect(path)
    conn.create_function("fold_text", 1, _fold_sql, deterministic=True)
    return conn


def _indexed(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as c:
        return c.execute("SELECT rowid, text FROM objects_text ORDER BY rowid").fetchall()


def test_both_stores_find_the_same_objects_for_the_same_search(store: Store) -> None:
    """Store parity: the same data and the same search give the same answer on SQLite
    and PostgreSQL (docs/node.md). SQLite's trigram index folded the case of every
    letter (É/é, Σ/σ); PostgreSQL used lower(), which in a database of the "C" locale
    (as tests/pg.py makes, and as many servers are) folds ASCII only: "élan" found
    "ÉLAN CYBER" on SQLite and nothing on PostgreSQL. Neither folded as the query is
    folded (casefold: "Straße" is "strasse", "ﬁ" is "fi"), so a name searched as
    written was not found on either. Both now hold and search the text fold_text
    folds."""
    names = ["ÉLAN CYBER", "ΣΟΦΟΣ freighter", "plain harbour", "Hafenstraße patrol",
             "ﬁsh market", "ДОК Ёлка", "ǅemal İzmir"]
    store.add_objects("c1", [_named(n, name) for n, name in enumerate(names, 1)])
    readable = ids_for(store, LOW)

    def found(text: str) -> list[int]:
        page = store.query("c1", readable, Query(text=text, newest_first=False))
        return [int(r.object_id[-3:]) for r in page.rows]

    for text, wanted in (("élan", [1]), ("Élan", [1]), ("ÉLAN".casefold(), [1]),
                         ("σοφος", [2]), ("ΣΟΦΟΣ", [2]), ("harbour", [3]),
                         ("Hafenstraße", [4]), ("HAFENSTRASSE", [4]), ("straß", [4]),
                         ("fish", [5]), ("ﬁsh", [5]), ("док ёлка", [6]), ("ǆemal", [7]),
                         ("izmir", []), ("ss", [4]), ("ſs", [4])):
        assert found(text) == wanted, text
    # a recall's tombstone keeps none of the text, folded or not
    store.purge(_named(1, "").object_id, "JPN", lambda row: json.dumps({"id": row.object_id}),
                normalise_timestamp("2026-02-01T00:00:00Z"), lambda rows: [])
    assert found("élan") == []
    if not isinstance(store, SQLiteStore):
        assert raw(store, "SELECT count(*) FROM objects_folded") == [(len(names) - 1,)]


def test_the_text_index_is_written_after_the_objects_and_before_a_search(
        tmp_path: Path) -> None:
    """SQLite's search index is not written in the objects' transaction (ingest does not
    wait for FTS5): ``index_text`` writes it in batches, and a search brings it up to
    date first, so it never misses what was stored before it."""
    path = tmp_path / "n.db"
    store = SQLiteStore(path)
    store.add_collection(Collection("c1", "one", "", "intel"))
    store.add_objects("c1", [_named(n, f"harbour crane {n}") for n in range(1, 6)])
    assert _indexed(path) == []
    assert store.index_text(2) == 2 and len(_indexed(path)) == 2
    assert store.index_text() == 3 and store.index_text() == 0
    assert [text for _, text in _indexed(path)] == [f"harbour crane {n}\n" for n in range(1, 6)]

    store.add_objects("c1", [_named(6, "container ship")])
    page = store.query("c1", ids_for(store, LOW), Query(text="container", newest_first=True))
    assert [r.object_id for r in page.rows] == [_named(6, "").object_id]
    assert store.index_text() == 0  # the search indexed it
    store.close()


def test_a_row_changed_or_deleted_before_or_after_indexing_is_searched_as_it_is(
        tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    store = SQLiteStore(path)
    store.add_collection(Collection("c1", "one", "", "intel"))
    store.add_objects("c1", [_named(n, f"old name {n}") for n in range(1, 4)])
    readable = ids_for(store, LOW)

    def found(text: str) -> list[int]:
        page = store.query("c1", readable, Query(text=text, newest_first=False))
        return [int(r.object_id[-3:]) for r in page.rows]

    assert store.index_text() == 3
    with _writing(path) as c:  # a body changed after it was indexed (a tombstone)
        c.execute("UPDATE objects SET body = ? WHERE seq = 1",
                  ('{"id":"indicator--00000000-0000-4000-8000-000000000001","name":"new"}',))
    store.add_objects("c1", [_named(4, "old name 4")])
    with _writing(path) as c:  # ... and one changed before it was indexed
        c.execute("UPDATE objects SET body = ? WHERE seq = 4",
                  ('{"id":"indicator--00000000-0000-4000-8000-000000000004","name":"newer"}',))
    assert found("old name") == [2, 3]
    assert found("new") == [1, 4]

    # the highest row deleted: its seq is not given again (0039), and the next row stored
    # is indexed all the same
    assert store.delete("c1", readable, _named(4, "").object_id, ("all",)) == 1
    store.add_objects("c1", [_named(5, "fresh fish")])
    (seq,) = sqlite3.connect(path).execute(
        "SELECT seq FROM objects WHERE object_id LIKE '%005'").fetchone()
    assert seq == 5
    assert found("fresh") == [5] and found("newer") == []
    store.close()


def test_an_older_store_keeps_its_index_across_the_indexer_migration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 0014 starts the indexer's mark at the highest row, which the trigger
    of 0011 had indexed already: nothing indexed twice, nothing missed."""
    import intelpact.store.sqlite as sqlitestore
    path = tmp_path / "n.db"
    with monkeypatch.context() as m:
        m.setattr(sqlitestore, "migrations", lambda: [v for v in migrations() if v[0] < 14])
        older = SQLiteStore(path)
        assert older.schema_version == 13
        older.add_collection(Collection("c1", "one", "", "intel"))
        older.add_objects("c1", [_named(n, f"reef {n}") for n in range(1, 3)])
        older.close()
    before = _indexed(path)
    assert len(before) == 2  # by 0011's trigger
    store = SQLiteStore(path)
    assert store.schema_version == migrations()[-1][0] and _indexed(path) == before
    assert store.index_text() == 0
    store.add_objects("c1", [_named(3, "reef 3")])
    page = store.query("c1", ids_for(store, LOW), Query(text="reef"))
    assert len(page.rows) == 3 and len(_indexed(path)) == 3
    store.close()


def test_text_in_a_marked_name_or_description_is_never_searched(opener: Opener,
                                                                 tmp_path: Path) -> None:
    """A granular-marked name or description may be withheld from the reader, and a row
    found on withheld text (then dropped by the node) would change the page: the search
    looks only in a name or description no granular marking selects (docs/console.md)."""
    store = opener()
    store.add_collection(Collection("c1", "one", "", "intel"))

    def portioned(n: int, selectors: list[str], **props: str) -> NewObject:
        oid = f"indicator--00000000-0000-4000-8000-{n:012d}"
        body = json.dumps({"id": oid, **props, "granular_markings": [
            {"selectors": selectors, "marking_ref": "marking-definition--x"}]})
        return NewObject(oid, "indicator", "2.1", normalise_timestamp("2026-01-01T00:00:00Z"), body,
                         str(hash(body)), LOW, HIGH, "JPN", True)

    rows = [portioned(1, ["description"], name="falcon one", description="falcon landing"),
            portioned(2, ["name"], name="falcon two", description="harbour"),
            portioned(3, ["pattern"], name="falcon three", description="falcon"),
            _named(4, "falcon four")]
    store.add_objects("c1", rows)
    readable = ids_for(store, LOW, HIGH)

    def found(text: str) -> list[int]:
        page = store.query("c1", readable, Query(text=text, newest_first=False))
        return [int(r.object_id[-3:]) for r in page.rows]

    assert found("falcon") == [1, 3, 4]  # 2's name is marked; 1's name is not
    assert found("landing") == [] and found("harbour") == [2]
    assert found("falcon two") == [] and found("fa") == [1, 3, 4]
    if isinstance(store, SQLiteStore):  # a tombstone (a body changed) is indexed alike
        with _writing(Path(store.path)) as c:
            c.execute("UPDATE objects SET body = ? WHERE seq = 3",
                      (json.dumps({"id": rows[2].object_id, "name": "gone",
                                   "granular_markings": [{"selectors": ["name"]}]}),))
        assert found("falcon") == [1, 4] and found("gone") == []


OLD_TEXT = ("coalesce(json_extract(body, '$.name'), '') || char(10) || "
            "coalesce(json_extract(body, '$.description'), '')")


def test_migration_0017_indexes_again_only_the_rows_with_portions(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    import intelpact.store.sqlite as sqlitestore
    path = tmp_path / "n.db"
    body = json.dumps({"id": "indicator--00000000-0000-4000-8000-000000000001",
                       "name": "falcon", "description": "falcon landing",
                       "granular_markings": [{"selectors": ["description"],
                                              "marking_ref": "marking-definition--x"}]})
    with monkeypatch.context() as m:
        m.setattr(sqlitestore, "migrations", lambda: [v for v in migrations() if v[0] < 17])
        older = SQLiteStore(path)
        older.add_collection(Collection("c1", "one", "", "intel"))
        older.add_objects("c1", [NewObject(  # with portions (below: this code queues
            # those for migration 0020's labels, a table the older schema has not)
            "indicator--00000000-0000-4000-8000-000000000001", "indicator", "2.1",
            normalise_timestamp("2026-01-01T00:00:00Z"), body, "h", LOW, HIGH, "JPN", False),
            _named(2, "falcon two")])
        older.close()
    with sqlite3.connect(path) as c:  # indexed as before 0017: the marked text too
        c.execute("UPDATE objects SET has_portions = 1 WHERE seq = 1")
        c.execute(f"INSERT INTO objects_text (rowid, text) SELECT seq, {OLD_TEXT} "
                  "FROM objects")
        c.execute("UPDATE objects_text_indexed SET seq = 2")
    assert _indexed(path) == [(1, "falcon\nfalcon landing"), (2, "falcon two\n")]
    store = SQLiteStore(path)
    assert _indexed(path) == [(1, "falcon\n"), (2, "falcon two\n")]
    assert store.query("c1", ids_for(store, LOW, HIGH), Query(text="landing")).rows == []
    store.close()


# -- the search's portions (migration 0020) ---------------------------------------------
PORTION = Label(A, 3, "JPN", frozenset({"JPN"}))  # what gates a marked name or description
RAISED = Label(A, 4, "JPN", frozenset({"JPN"}))  # a holder's reclassification


def _with_portions(n: int, selectors: list[str], **props: str) -> NewObject:
    oid = f"indicator--00000000-0000-4000-8000-{n:012d}"
    body = json.dumps({"id": oid, **props, "granular_markings": [
        {"selectors": selectors, "marking_ref": "marking-definition--x"}]})
    return NewObject(oid, "indicator", "2.1", normalise_timestamp("2026-01-01T00:00:00Z"), body,
                     f"p{n}", LOW, LOW.join(PORTION), "JPN", True)


def _pages(store: Store, cid: str, readable: list[int], text: str,
           newest_first: bool = True) -> list[tuple[list[str], bool]]:
    """Every page of a search (50 to a page, following the cursor): its ids, and whether
    it says there are more (the console's 'Older results' link)."""
    out: list[tuple[list[str], bool]] = []
    cursor = None
    while True:
        page = store.query(cid, readable, Query(text=text, newest_first=newest_first,
                                                limit=50, cursor=cursor))
        out.append(([r.object_id for r in page.rows], page.more))
        if not page.more:
            return out
        cursor = page.next


def _relabelled(store: Store, text: str) -> bool:
    """Record, as a node's relabel does with nothing to change, that the stored labels are
    under the agreement text ``text``; False when they were under it already."""
    begun, _ = store.begin_relabel(text)
    if begun:
        assert store.relabel_versions([], text, 2**62, lambda: [])
    return begun


def _portion_rows(store: Store) -> list[int]:
    """The versions whose portions the search holds (on SQLite, its text index holds the
    same rows)."""
    rows = [int(r[0]) for r in raw(store, "SELECT seq FROM object_portions ORDER BY seq")]
    if isinstance(store, SQLiteStore):
        assert rows == [r[0] for r in raw(store, "SELECT rowid FROM objects_portion_text "
                                                 "ORDER BY rowid")]
    return rows


def test_a_portion_is_searched_by_exactly_the_readers_of_its_label(opener: Opener) -> None:
    """A marked description holds the word 50 unmarked names hold too. A reader who may
    not read the portion's label gets the pages (ids, 'more', the next page) they would
    get were the portion's text not there at all (a second collection, where it is not);
    a reader who may read it finds it too, on the page after (docs/console.md)."""
    store = opener()
    for cid in ("c1", "c2"):
        store.add_collection(Collection(cid, cid, "", "intel" if cid == "c1" else None))
    secret = {"c1": "the falcon landing is on the 14th", "c2": "nothing of interest"}
    for cid in ("c1", "c2"):  # the marked one is the oldest: on the second page
        store.add_objects(cid, [_with_portions(1, ["description"], name="harbour report",
                                               description=secret[cid])]
                          + [_named(n, f"falcon {n}") for n in range(2, 52)]
                          + [_with_portions(60, ["name"], name="kestrel",
                                            description="plain words")])
    waiting = store.portions_pending()
    assert sorted(r.object_id[-2:] for r in waiting) == ["01", "01", "60", "60"]
    reader = ids_for(store, LOW)
    unmarked = [f"indicator--00000000-0000-4000-8000-{n:012d}" for n in range(51, 1, -1)]
    x = "indicator--00000000-0000-4000-8000-000000000001"
    # not labelled yet: nobody finds it (as before migration 0020)
    assert _pages(store, "c1", reader, "falcon") == [(unmarked, False)]
    gates = {r.seq: ((PORTION, None) if r.object_id.endswith("60") else (None, PORTION))
             for r in waiting}
    assert store.label_portions(gates) == 4 and store.portions_pending() == []
    assert store.label_portions(gates) == 0  # given already: left as it is
    cleared = ids_for(store, LOW, PORTION)
    assert sorted(cleared) != sorted(reader)

    for newest_first in (True, False):
        without = _pages(store, "c2", reader, "falcon", newest_first)
        assert _pages(store, "c1", reader, "falcon", newest_first) == without
        assert _pages(store, "c2", cleared, "falcon", newest_first) == without
        ids = [*unmarked, x] if newest_first else [x, *unmarked[::-1]]
        assert without == [([i for i in ids if i != x], False)]
        assert _pages(store, "c1", cleared, "falcon", newest_first) == (
            [(ids[:50], True), (ids[50:], False)])
    for text in ("landing", "nd", "14th", "kestrel", "ke"):  # the trigram index, and short text
        assert _pages(store, "c1", reader, text) == [([], False)]
        assert _pages(store, "c1", cleared, text) == [([
            f"indicator--00000000-0000-4000-8000-0000000000{'60' if 'e' in text else '01'}"],
            False)]
    assert _pages(store, "c1", reader, "plain words")[0][0][0].endswith("60")  # not a portion
    assert _pages(store, "c1", reader, "harbour")[0][0] == [x]

    # A holder's reclassification raises the row's label and banner, not the portion's:
    # the portion is found by a reader of both, not of the banner alone (Access.view).
    version = normalise_timestamp("2026-01-01T00:00:00Z")
    assert store.relabel(x, "JPN", {version: (RAISED, RAISED.join(PORTION))}, []) == 2
    assert x not in _pages(store, "c1", cleared, "landing")[0][0]  # the row is not theirs
    banner = ids_for(store, LOW, RAISED, RAISED.join(PORTION))
    assert _pages(store, "c1", banner, "landing") == [([], False)]
    assert _pages(store, "c1", banner, "harbour")[0][0] == [x]
    assert _pages(store, "c1", [*banner, *ids_for(store, PORTION)], "landing")[0][0] == [x]

    # Labels worked out under another agreement text: every portion's label is dropped
    # in the transaction that records the text, every version with portions waits again
    seqs = sorted(r.seq for r in waiting)
    assert _portion_rows(store) == seqs
    assert _relabelled(store, "one") and _portion_rows(store) == []
    assert len(store.portions_pending()) == 4
    assert _pages(store, "c1", cleared, "kestrel") == [([], False)]
    assert store.label_portions({r.seq: gates[r.seq] for r in store.portions_pending()}) == 4
    assert not _relabelled(store, "one")  # under it already: nothing waits
    assert store.portions_pending() == [] and _portion_rows(store) == seqs
    assert _relabelled(store, "two") and len(store.portions_pending()) == 4
    store.label_portions({r.seq: gates[r.seq] for r in store.portions_pending()})
    assert _portion_rows(store) == seqs

    # A recall's tombstone has no text, and a deleted version none either
    purged = store.purge(x, "JPN", lambda row: json.dumps({"id": row.object_id}),
                         normalise_timestamp("2026-02-01T00:00:00Z"), lambda rows: [])
    assert len(purged) == 2
    kept = [s for s in seqs if s not in {r.seq for r in purged}]
    assert _portion_rows(store) == kept
    store.delete("c1", list(store.labels()), "indicator--00000000-0000-4000-8000-000000000060",
                 ("all",))
    assert len(_portion_rows(store)) == 1 and store.portions_pending() == []
    assert _relabelled(store, "three")
    assert len(store.portions_pending()) == 1  # only what is held, not recalled
    assert [r.object_id[-2:] for r in store.portions_pending()] == ["60"]


def _execute(store: Store, sql: str) -> None:
    """Run ``sql`` on ``store``'s database, as a store of an older schema would have."""
    if isinstance(store, SQLiteStore):
        store._conn().execute(sql)  # noqa: SLF001
    else:
        with store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
            c.execute(sql)


@contextlib.contextmanager
def _store_before(version: int, backend: str, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Store, str]]:
    """A store of ``backend`` in a new database, migrated only to below ``version``, with
    collection c1: to fill as an older intelpact would (closed on leaving), then open
    again with every migration. Yields it and its database."""
    import intelpact.store.postgres as pgstore
    import intelpact.store.sqlite as sqlitestore
    module: Any = sqlitestore
    database = str(tmp_path / "n.db")
    if backend != "sqlite":  # an empty database (pg.database_url's hold the current schema)
        server, name = pg.cluster(), f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        module, database = pgstore, server.url_for(name)
    shipped = module.migrations()
    with monkeypatch.context() as m:
        m.setattr(module, "migrations", lambda: [v for v in shipped if v[0] < version])
        older = open_store(database)
        try:
            older.add_collection(Collection("c1", "one", "", "intel"))
            yield older, database
        finally:
            older.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0040_folds_the_text_stored_before_it(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The text searched of the versions stored before migration 0040 is folded as the
    query is: on SQLite the index is folded again where that changes more than ASCII
    letters (the tokenizer folds those alike), on PostgreSQL every version is folded
    into objects_folded as the store opens."""
    names = ["Hafenstraße patrol", "ÉLAN CYBER", "Plain Harbour"]
    with _store_before(40, backend, tmp_path, monkeypatch) as (older, database):
        older.add_objects("c1", [_named(n, name) for n, name in enumerate(names, 1)])
        if isinstance(older, SQLiteStore):  # indexed as before 0040: not folded
            _execute(older, "INSERT INTO objects_text (rowid, text) SELECT seq, "
                     "json_extract(body, '$.name') || char(10) FROM objects")
            _execute(older, "UPDATE objects_text_indexed SET seq = 3")
    store = open_store(database)
    try:
        if isinstance(store, SQLiteStore):
            assert [text for _, text in _indexed(Path(database))] == [
                "hafenstrasse patrol\n", "élan cyber\n", "Plain Harbour\n"]
        readable = ids_for(store, LOW)
        for text, wanted in (("Hafenstraße", 1), ("élan", 2), ("harbour", 3)):
            page = store.query("c1", readable, Query(text=text))
            assert [int(r.object_id[-3:]) for r in page.rows] == [wanted], text
    finally:
        store.close()


def _version_and_folded(database: str) -> tuple[int, bool]:
    """The schema version recorded in ``database``, and whether migration 0040's change
    is there (read without opening a store, which would migrate it)."""
    if database.startswith("postgresql://"):
        with psycopg.connect(database) as conn:
            row = conn.execute("SELECT max(version), to_regclass('objects_folded') IS NOT "
                               "NULL FROM schema_migrations").fetchone()
            assert row is not None
            return int(row[0]), bool(row[1])
    with contextlib.closing(sqlite3.connect(database)) as conn:
        (version,) = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        (trigger,) = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                                  "AND name = 'objects_text_change'").fetchone()
    return version, "fold_text" in trigger


# The upgrade of test_a_migration_killed_midway_…: open_store(argv[1]), its statement
# runner made to stop, and touch argv[2], after the last statement of migration 0040.
_PAUSED_IN_0040 = """
import pathlib, sys, time
import intelpact.store.postgres as pgstore, intelpact.store.sqlite as sqlitestore
from intelpact.store import open_store
def pausing(module):
    real, last = module._statements, dict(module.migrations())[40]
    def statements(sql):
        yield from real(sql)
        if sql == last:
            pathlib.Path(sys.argv[2]).touch()
            time.sleep(600)
    module._statements = statements
pausing(sqlitestore)
pausing(pgstore)
open_store(sys.argv[1]).close()
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_migration_killed_midway_leaves_the_old_schema_and_the_next_start_completes_it(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade SIGKILLed as it migrates (the machine lost, the service manager's
    timeout): every migration due runs in one transaction, with the version it records,
    so the database is left at the old version, nothing of the new one applied; the
    next start migrates it whole. Here from version 39, killed in 0040's folding of the
    text stored before it, after the statements that come before it (a migration that
    committed as it went would leave them)."""
    count = 5_000
    with _store_before(40, backend, tmp_path, monkeypatch) as (older, database):
        older.add_objects("c1", [_named(n, f"Hafenstraße patrol {n}")
                                 for n in range(1, count + 1)])
        if isinstance(older, SQLiteStore):  # indexed as before 0040: not folded
            _execute(older, "INSERT INTO objects_text (rowid, text) SELECT seq, "
                     "json_extract(body, '$.name') || char(10) FROM objects")
            _execute(older, f"UPDATE objects_text_indexed SET seq = {count}")
    assert _version_and_folded(database) == (39, False)
    # The upgrade, in a process of its own that stops, and says so, once 0040's statements
    # have all run in its transaction, before the version is recorded and committed (on
    # PostgreSQL, before the folding that follows them): then it is killed there.
    paused = tmp_path / "paused"
    child = subprocess.Popen([sys.executable, "-c", _PAUSED_IN_0040, database, str(paused)],
                             stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while child.poll() is None and not paused.exists():
            assert time.monotonic() < deadline, "the upgrade never reached migration 0040"
            time.sleep(0.01)
        assert child.poll() is None, "the upgrade ended before it could be killed"
        child.kill()  # SIGKILL, in the middle of migration 0040
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(30)
    assert child.returncode == -signal.SIGKILL
    assert _version_and_folded(database) == (39, False)  # the old version, nothing between
    store = open_store(database)  # the next start
    try:
        assert store.schema_version == migrations()[-1][0]
        assert _version_and_folded(database) == (migrations()[-1][0], True)
        page = store.query("c1", ids_for(store, LOW), Query(text="hafenstrasse patrol 7"))
        assert {int(r.object_id[-6:]) for r in page.rows} >= {7}
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0020_has_the_versions_stored_before_labelled(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store from before 0020 has versions with portions and no labels for them: the
    first node to open it (its relabel, with no agreement text recorded yet: migration
    0021) has them all wait for its labels; a recalled version does not."""
    with _store_before(20, backend, tmp_path, monkeypatch) as (older, database):
        older.add_objects("c1", [  # with portions (as this code would not store them: below)
            dataclasses.replace(_with_portions(n, ["description"], name=f"report {n}",
                                               description="falcon landing"),
                                has_portions=False) for n in (1, 2)] + [_named(3, "falcon")])
        for sql in ("UPDATE objects SET has_portions = 1 WHERE seq < 3",
                    "UPDATE objects SET recalled = '2026-02-01T00:00:00.000000Z', "
                    "body = '{}' WHERE seq = 2"):  # 2 recalled (its tombstone)
            _execute(older, sql)
    store = open_store(database)
    try:
        assert store.schema_version >= 20
        assert _relabelled(store, "agreement")  # as the first node to open it does
        (waiting,) = store.portions_pending()
        assert waiting.object_id.endswith("01")
        store.label_portions({waiting.seq: (None, PORTION)})
        found = store.query("c1", ids_for(store, LOW, PORTION), Query(text="landing")).rows
        assert [r.object_id for r in found] == [waiting.object_id]
        assert store.query("c1", ids_for(store, LOW), Query(text="landing")).rows == []
    finally:
        store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("portions_under", ["one", "two"])
def test_migration_0022_keeps_the_portion_labels_only_under_the_stored_labels_text(
        backend: str, portions_under: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """0022 drops the portions' own record of the agreement text (one record is left,
    labels_agreement): portion labels kept under the stored labels' text stay; under
    another, they are dropped and their versions wait to be labelled again."""
    with _store_before(22, backend, tmp_path, monkeypatch) as (older, database):
        older.add_objects("c1", [_with_portions(n, ["description"], name=f"report {n}",
                                                description="falcon landing")
                                 for n in (1, 2)])
        older.label_portions({r.seq: (None, PORTION) for r in older.portions_pending()})
        for sql in ("INSERT INTO labels_agreement (one, content_hash) VALUES (1, 'one')",
                    "INSERT INTO object_portions_agreement (one, content_hash) VALUES "
                    f"(1, '{portions_under}')"):
            _execute(older, sql)
        assert older.portions_pending() == [] and len(_portion_rows(older)) == 2
    store = open_store(database)
    try:
        assert store.schema_version >= 22 and store.labels_agreement() == "one"
        if portions_under == "one":  # the same text: kept
            assert store.portions_pending() == [] and len(_portion_rows(store)) == 2
        else:
            assert _portion_rows(store) == [] and len(store.portions_pending()) == 2
        found = store.query("c1", ids_for(store, LOW, PORTION), Query(text="landing")).rows
        assert len(found) == (2 if portions_under == "one" else 0)
    finally:
        store.close()


def test_stored_labels_are_worked_out_again_under_another_agreement_text(store: Store
                                                                         ) -> None:
    """Migration 0021 (services/relabel.py): the text the labels are under, recorded in the
    last batch's transaction with its event; from the first batch on, a process under
    another text stores no label."""
    store.add_objects("c1", [obj(1), obj(1, "2026-02-01T00:00:00Z"), obj(2), obj(3)])
    store.purge(obj(3).object_id, "JPN", lambda row: "{}", "2026-03-01T00:00:00.000Z",
                lambda rows: [])
    assert store.labels_agreement() is None  # a store from before 0021: none recorded
    store.labelled_under = "one"
    with pytest.raises(StoreError, match="none recorded"):
        store.add_objects("c1", [obj(4)])
    rows = store.versions_after(0, 10)
    assert [r.object_id for r in rows] == [obj(n).object_id for n in (1, 1, 2)]  # not 3
    assert store.versions_after(rows[0].seq, 1) == rows[1:2]
    assert store.begin_relabel("one") == (True, None)
    assert store.labels_agreement() is None  # not yet: being worked out
    with pytest.raises(StoreError, match="being worked out under one"):
        store.add_objects("c1", [obj(4)])
    event = AuditEvent("2026-03-01T00:00:00.000000Z", "relabel-agreement", '"done"')
    # the older version of object 1 becomes HIGH: neither is superseded by the other now
    assert not store.relabel_versions([(rows[0], HIGH, HIGH)], "one", rows[1].seq,
                                      lambda: [event])
    assert raw(store, WRONG_MARKS) == [] and store.audit_size() == 0
    low, high = ids_for(store, LOW), ids_for(store, HIGH)
    latest = store.query("c1", high, Query(ids=(obj(1).object_id,)))
    assert [r.version for r in latest.rows] == [rows[0].version]
    assert store.relabel_versions([(rows[2], MID, HIGH)], "one", rows[2].seq,
                                  lambda: [event])
    assert store.labels_agreement() == "one" and store.audit_size() == 1
    found = {r.seq: (r.label_id, r.banner_id) for r in store.versions_after(0, 10)}
    assert found == {rows[0].seq: (high[0], high[0]), rows[1].seq: (low[0], low[0]),
                     rows[2].seq: (ids_for(store, MID)[0], high[0])}
    store.add_objects("c1", [obj(4)])  # under the text recorded: stored
    assert store.begin_relabel("one") == (False, "one")
    assert store.relabel_versions([], "one", 0, lambda: [event])  # recorded: nothing written
    assert store.audit_size() == 1
    assert store.begin_relabel("two") == (True, "one")
    with pytest.raises(StoreError, match="not being worked out under agreement text one"):
        store.relabel_versions([], "one", 0, lambda: [event])
    with pytest.raises(StoreError, match="being worked out under two"):
        store.relabel(obj(2).object_id, "JPN", {rows[2].version: (HIGH, HIGH)}, [])
