"""The embedded store, on real SQLite files."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from intelpact.model import Label
from intelpact.store.base import (
    BadCursor,
    Collection,
    NewObject,
    PersonRecord,
    Query,
    StatusRecord,
    label_from_key,
    label_key,
    normalise_timestamp,
)
from intelpact.store.sqlite import SQLiteStore, migrations

A = "jpn-nzl-isa"
LOW = Label(A, 0, "JPN", frozenset({"JPN", "NZL"}))
HIGH = Label(A, 5, "JPN", frozenset({"JPN"}), frozenset({"JPNEO"}))


def obj(n: int, version: str = "2026-01-01T00:00:00.000Z", label: Label = LOW,
        body: str | None = None, kind: str = "indicator") -> NewObject:
    oid = f"{kind}--00000000-0000-4000-8000-{n:012d}"
    text = body if body is not None else f'{{"id":"{oid}","v":"{version}"}}'
    return NewObject(oid, kind, "2.1", normalise_timestamp(version), text, str(hash(text)),
                     label, label, label.originator, False)


@pytest.fixture()
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "node.db")
    s.add_collection(Collection("c1", "one", "", "intel"))
    return s


def ids_for(store: SQLiteStore, *labels: Label) -> list[int]:
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


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as c:
        c.execute("INSERT INTO schema_migrations VALUES (999, 'x')")
    with pytest.raises(Exception, match="newer than this intelpact"):
        SQLiteStore(path)


def test_same_version_is_idempotent_and_a_different_body_conflicts(store: SQLiteStore) -> None:
    first = store.add_objects("c1", [obj(1)])
    again = store.add_objects("c1", [obj(1)])
    other = store.add_objects("c1", [obj(1, body='{"tampered":true}')])
    assert [r.outcome for r in first + again + other] == ["added", "exists", "conflict"]
    assert "immutable" in other[0].message
    assert store.count("c1") == 1


def test_label_filter_runs_in_the_query(store: SQLiteStore) -> None:
    store.add_objects("c1", [obj(1), obj(2, label=HIGH), obj(3)])
    low_only = store.query("c1", ids_for(store, LOW), Query(versions=("all",)))
    assert [r.object_id[-1] for r in low_only.rows] == ["1", "3"]
    nothing = store.query("c1", [], Query(versions=("all",)))
    assert nothing.rows == [] and not nothing.more


def test_labels_round_trip_through_their_key() -> None:
    label = Label(A, 3, "NZL", None, frozenset({"X"}), frozenset({frozenset({"M", "C"})}),
                  frozenset({"JPN"}))
    assert label_from_key(label_key(label)) == label


def test_versions_first_last_all_and_timestamp(store: SQLiteStore) -> None:
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


def test_last_means_last_visible_version(store: SQLiteStore) -> None:
    store.add_objects("c1", [obj(1, "2026-01-01T00:00:00Z"),
                             obj(1, "2026-02-01T00:00:00Z", label=HIGH)])
    rows = store.query("c1", ids_for(store, LOW), Query()).rows
    assert [r.version for r in rows] == [normalise_timestamp("2026-01-01T00:00:00Z")]


def test_date_added_strictly_increases_with_seq(store: SQLiteStore) -> None:
    for n in range(5):
        store.add_objects("c1", [obj(20 * n + k) for k in range(20)])
    rows = store.query("c1", ids_for(store, LOW), Query(limit=1000)).rows
    added = [r.date_added for r in rows]
    assert added == sorted(added) and len(set(added)) == len(added) == 100
    assert all(len(a) == len("2026-01-01T00:00:00.000000Z") for a in added)


def test_paging_survives_concurrent_writes(store: SQLiteStore) -> None:
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


def test_cursor_from_another_query_is_refused(store: SQLiteStore) -> None:
    store.add_objects("c1", [obj(n) for n in range(5)])
    page = store.query("c1", ids_for(store, LOW), Query(limit=2))
    assert page.more and page.next
    with pytest.raises(BadCursor):
        store.query("c1", ids_for(store, LOW), Query(limit=2, types=("malware",),
                                                     cursor=page.next))
    with pytest.raises(BadCursor):
        store.query("c1", ids_for(store, LOW), Query(limit=2, cursor="x' OR 1=1 --"))


def test_filters_are_parameters_not_sql(store: SQLiteStore) -> None:
    store.add_objects("c1", [obj(1)])
    hostile = ("indicator' OR '1'='1", "x\"); DROP TABLE objects; --")
    for value in hostile:
        assert store.query("c1", ids_for(store, LOW), Query(types=(value,))).rows == []
        assert store.query("c1", ids_for(store, LOW), Query(ids=(value,))).rows == []
    assert store.count("c1") == 1


def test_delete_only_visible_versions(store: SQLiteStore) -> None:
    store.add_objects("c1", [obj(1, "2026-01-01T00:00:00Z"),
                             obj(1, "2026-02-01T00:00:00Z", label=HIGH)])
    assert store.delete("c1", ids_for(store, LOW), obj(1).object_id, ("all",)) == 1
    assert store.count("c1") == 1


def test_statuses_persist(tmp_path: Path) -> None:
    s = SQLiteStore(tmp_path / "n.db")
    s.save_status(StatusRecord("s1", "c1", "tanaka", "2026-01-01T00:00:00.000000Z",
                               {"id": "s1", "status": "complete"}))
    s.close()
    again = SQLiteStore(tmp_path / "n.db").status("s1")
    assert again is not None and again.body["status"] == "complete" and again.owner == "tanaka"


def test_people_and_tokens(store: SQLiteStore) -> None:
    store.add_person(PersonRecord("kiri", "NZL", "SECRET", (), ("MARITIME",), ("analyst",),
                                  None, "2026-01-01T00:00:00Z"))
    with pytest.raises(Exception, match="already exists"):
        store.add_person(PersonRecord("kiri", "NZL", "SECRET", (), (), (), None, "t"))
    store.add_token("d1", "kiri", "", "t")
    assert store.token_owner("d1") == "kiri"
    assert store.revoke_person("kiri", "t2")
    assert store.token_owner("d1") is None
    assert not store.revoke_person("kiri", "t3")


def test_a_failed_batch_changes_nothing(store: SQLiteStore) -> None:
    with pytest.raises(Exception, match="no collection"):
        store.add_objects("missing", [obj(1)], markings=[("marking-definition--x", "{}")])
    assert store.count("c1") == 0 and store.markings() == []
