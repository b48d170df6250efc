"""What only the PostgreSQL store has to show: its migrations, its plans, and
writers in several processes (tests/pg.py starts the server)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_store import HIGH, LOW, ONE_ID, Recorded, ids_for, obj

from intelpact.model import Label
from intelpact.store import open_store
from intelpact.store import postgres as pgstore
from intelpact.store.base import Collection, Query, StoreError
from intelpact.store.postgres import PostgresStore
from intelpact.store.sqlite import (
    _collections_held,
    _enqueue_select,
    _queue_cited,
    _queued_for,
    _relabel_rows,
    _stored_meanwhile,
    _supersede_added,
    _supersede_again,
    _went,
    _withdrawn,
)
from intelpact.store.sqlite import migrations as sqlite_migrations

import pg

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def url() -> str:
    return pg.database_url("pgstore")


@pytest.fixture()
def store(url: str) -> Iterator[PostgresStore]:
    s = open_store(url)
    assert isinstance(s, PostgresStore)
    s.add_collection(Collection("c1", "one", "", "intel"))
    yield s
    s.close()


def test_migrations_match_sqlite_and_are_recorded_once(url: str) -> None:
    assert [v for v, _ in pgstore.migrations()] == [v for v, _ in sqlite_migrations()]
    PostgresStore(url).close()
    again = PostgresStore(url)
    assert again.schema_version == pgstore.migrations()[-1][0]
    again.close()
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [v for v, _ in pgstore.migrations()]


def test_refuses_a_newer_schema(url: str) -> None:
    PostgresStore(url).close()
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'x')")
    with pytest.raises(StoreError, match="newer than this intelpact"):
        PostgresStore(url)


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    """Said at once with the reason, from one connection attempt, not after the pool's
    retries until its 30 s timeout."""
    port = pg.free_port()
    with pytest.raises(StoreError, match="cannot connect") as caught:
        PostgresStore(f"postgresql://u:hunter2@127.0.0.1:{port}/x")
    assert "hunter2" not in str(caught.value)
    assert "Connection refused" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_commits_are_durable_and_pages_are_not_planned_in_parallel(store: PostgresStore
                                                                    ) -> None:
    with store._pool.connection() as conn:  # noqa: SLF001 - the session the store uses
        row = conn.execute("SHOW synchronous_commit").fetchone()
        parallel = conn.execute("SHOW max_parallel_workers_per_gather").fetchone()
    assert row is not None and row[0] in ("on", "remote_write", "remote_apply")
    assert parallel == ("0",)


def test_the_store_refreshes_the_planner_s_statistics_after_a_large_load(
        store: PostgresStore, url: str) -> None:
    """A load that doubles the objects (1,000 at least) is followed by ANALYZE, by the
    store itself, without waiting for autovacuum; a small one is not."""
    def analysed() -> float:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = "
                               "'objects'::regclass").fetchone()
        assert row is not None
        return float(row[0])

    store.add_objects("c1", [obj(i) for i in range(pgstore.ANALYZE_MIN_ROWS - 1)])
    store._grew(0)  # noqa: SLF001 - nothing due: no analysis started
    assert store._analyser is None  # noqa: SLF001
    store.add_objects("c1", [obj(10_000 + i) for i in range(2)])
    analyser = store._analyser  # noqa: SLF001
    assert analyser is not None
    analyser.join(30)
    assert analysed() == pgstore.ANALYZE_MIN_ROWS + 1  # exact for a table this small


def _plan(store: PostgresStore, query: Query, readable: list[int]) -> str:
    sql, params = pgstore.select("c1", readable, query)
    with store._pool.connection() as conn:  # noqa: SLF001
        rows = conn.execute("EXPLAIN " + sql, params).fetchall()  # type: ignore[arg-type]
    return "\n".join(r[0] for r in rows)


def _twenty_thousand(store: PostgresStore) -> list[int]:
    """20,000 objects under 20 labels (ranks and caveats), 5,000 ids of 4 versions each,
    added a millisecond apart from 2027-01-01, analysed; the label ids."""
    labels = [Label("jpn-nzl-isa", rank, "JPN", frozenset({"JPN", "NZL"}))
              for rank in range(4)]
    labels += [Label("jpn-nzl-isa", rank, "NZL", frozenset({"JPN"}), frozenset({f"C{k}"}))
               for rank in range(4) for k in range(4)]
    store.add_objects("c1", [obj(900_000 + i, label=lab) for i, lab in enumerate(labels)])
    ids = sorted(store.labels())
    with store._pool.connection() as conn:  # noqa: SLF001
        conn.execute(
            "INSERT INTO objects (collection_id, object_id, object_type, spec_version, "
            "version, date_added, label_id, banner_id, originator, has_portions, body, "
            "body_hash) SELECT 'c1', 'indicator--' || lpad(((g %% 5000))::text, 36, '0'), "
            "'indicator', '2.1', to_char(timestamp '2026-01-01' + g * interval '1 second', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), to_char(timestamp '2027-01-01' + g * "
            "interval '1 millisecond', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
            "(%s::bigint[])[1 + g %% %s], (%s::bigint[])[1 + g %% %s], 'JPN', 0, "
            "repeat('x', 400), md5(g::text) FROM generate_series(1, 20000) g",
            (ids, len(ids), ids, len(ids)))
        _supersede_added(conn, "%s", [seq for seq, in conn.execute(  # as add_objects does
            "SELECT seq FROM objects").fetchall()])
        # analysed as a table of this size: the store's own loads are (Store._grew)
        conn.execute("ANALYZE objects")
    assert store.count("c1") == 20_000 + len(labels)
    return ids


def test_the_page_query_uses_an_index_on_objects(store: PostgresStore) -> None:
    """20,000 objects under 20 labels; the planner must page through an index."""
    ids = _twenty_thousand(store)
    readable = ids[:6]
    queries = [Query(), Query(versions=("all",)), Query(versions=("first",)),
               Query(types=("indicator",), versions=("all",)),
               Query(added_after="2027-01-01T00:00:05.000000Z", versions=("all",)),
               Query(cursor=f"10000.{Query().fingerprint()}"),
               Query(ids=("indicator--" + "0" * 32 + "1234",), versions=("all",))]
    for query in queries:
        plan = _plan(store, query, readable)
        assert "Seq Scan on objects" not in plan, plan
        assert " on objects " in plan and "Index" in plan, plan
    # and the answers are right: the 20 ranks/caveats were spread over the rows
    page = store.query("c1", readable, Query(versions=("all",), limit=50))
    assert len(page.rows) == 50 and page.more
    assert {r.label_id for r in page.rows} <= set(readable)


def test_a_page_added_after_a_moment_reads_only_rows_added_since(store: PostgresStore
                                                                 ) -> None:
    """A partner polls with added_after near the end: whichever index the planner walks,
    the first page reads the rows added since, not the collection from its start."""
    ids = _twenty_thousand(store)
    query = Query(types=("indicator",), added_after="2027-01-01T00:00:19.000000Z",
                  versions=("all",))  # the last 1,000 rows
    assert _rows_read(store, query, ids[:6]) <= 1_100
    page = store.query("c1", ids[:6], query)
    assert page.rows and all(r.date_added > "2027-01-01T00:00:19.000000Z" for r in page.rows)


def test_a_page_of_latest_versions_skips_the_versions_superseded(store: PostgresStore
                                                                 ) -> None:
    """Each of the 5,000 objects was published four times, the first three versions
    first: a first page of latest versions (TAXII's default) walks the 5,000 current
    rows only, not the 15,000 superseded ones before them, and is the definition's. (The
    planner reads a page of 1,000 of this small table in one scan.)"""
    ids = _twenty_thousand(store)
    assert _rows_read(store, Query(), ids[:6]) <= 1_000  # 325 seen; 15,000 walked before
    page = store.query("c1", ids[:6], Query())
    everything = store.query("c1", ids[:6], Query(versions=("all",), limit=20_000)).rows
    newest = {r.object_id: r.version for r in everything}  # in version order per object
    assert len(page.rows) == 100 and page.more
    assert all(r.version == newest[r.object_id] for r in page.rows)


def _rows_read(store: PostgresStore, query: Query, readable: list[int]) -> int:
    """The rows that the scans of objects "o" produced or filtered out to answer ``query``
    (EXPLAIN ANALYZE)."""
    sql, params = pgstore.select("c1", readable, query)
    with store._pool.connection() as conn:  # noqa: SLF001
        (plan,), = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()

    def read(node: dict) -> int:
        mine = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) \
            if node.get("Alias") == "o" else 0
        return mine + sum(read(child) for child in node.get("Plans", []))

    return read(plan["Plan"])


@pytest.fixture()
def loaded(store: PostgresStore) -> PostgresStore:
    """5,000 versions (1,000 ids of 5 each, under 4 labels) in c1 of two collections,
    each queued for NZL, loaded by SQL and never analysed (autovacuum off on the tables
    read, as right after a bulk load before autovacuum comes): the planner knows nothing
    of their size. test_store.ONE_ID is one of the ids."""
    labels = [Label("jpn-nzl-isa", rank, "JPN", frozenset({"JPN", "NZL"})) for rank in range(4)]
    store.add_objects("c1", [obj(900_000 + i, label=lab) for i, lab in enumerate(labels)])
    store.add_collection(Collection("c2", "two", "", "intel2"))
    ids = sorted(store.labels())
    with store._pool.connection() as conn:  # noqa: SLF001
        for table in ("objects", "outbox", "collections"):
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        conn.execute(
            "INSERT INTO objects (collection_id, object_id, object_type, spec_version, "
            "version, date_added, label_id, banner_id, originator, has_portions, body, "
            "body_hash) SELECT 'c1', 'indicator--' || lpad((g %% 1000)::text, 36, '0'), "
            "'indicator', '2.1', to_char(timestamp '2026-01-01' + g * interval '1 second', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), to_char(timestamp '2027-01-01' + g * "
            "interval '1 millisecond', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
            "(%s::bigint[])[1 + g %% %s], (%s::bigint[])[1 + g %% %s], 'JPN', 0, "
            "repeat('x', 400), md5(g::text) FROM generate_series(1, 5000) g",
            (ids, len(ids), ids, len(ids)))
        conn.execute("INSERT INTO outbox (party, seq, enqueued) SELECT 'NZL', seq, "
                     "date_added FROM objects")
        row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = "
                           "'objects'::regclass").fetchone()
    assert row == (-1,)  # the premise: never analysed
    return store


def _recorded(store: PostgresStore, run: Callable[[Any], object]
              ) -> list[tuple[str, Sequence[Any]]]:
    """The statements of objects ``run`` ran through a store's connection (rolled back)."""
    with store._pool.connection() as conn:  # noqa: SLF001
        recorded = Recorded(conn)
        run(recorded)
        conn.rollback()
    return recorded.of_objects()


def _along_the_id(store: PostgresStore, statements: Sequence[tuple[str, Any]]) -> None:
    """Each read of objects in the plans of ``statements`` is by primary key (seq) or a
    range of one id (or the marking-definitions) of the collections held, by index; no
    table is read whole."""
    def scans(node: dict[str, Any]) -> list[dict[str, Any]]:
        mine = "Relation Name" in node and node["Node Type"] != "ModifyTable"
        return ([node] if mine else []) + [
            scan for child in node.get("Plans", []) for scan in scans(child)]

    assert statements
    for sql, params in statements:
        with store._pool.connection() as conn:  # noqa: SLF001
            (plan,), = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchall()
            shown = "\n".join([sql, *(str(r[0]) for r in conn.execute("EXPLAIN " + sql,
                                                                        params))])
        for scan in scans(plan[0]["Plan"]):
            assert scan["Node Type"] != "Seq Scan", shown
            cond = scan.get("Index Cond", scan.get("Recheck Cond", ""))
            if scan["Relation Name"] == "objects" and not cond.startswith("(seq = "):
                assert "collection_id" in cond, shown
                assert "object_id" in cond or "'marking-definition'" in cond, shown


def test_superseded_marks_are_worked_out_along_the_id_before_any_analysis(
        loaded: PostgresStore) -> None:
    """Right after a bulk load, before (auto)analyze: the `superseded` marks of an
    object's versions (relabel, delete, a reclassification) and of the rows a
    publication adds are worked out through the unique (collection, id, version) index,
    not by walking the whole index with the id alone, nor a label's rows per row."""
    with loaded._pool.connection() as conn:  # noqa: SLF001
        seqs = [seq for seq, in conn.execute("SELECT seq FROM objects WHERE object_id = %s",
                                              (ONE_ID,))]
    _along_the_id(loaded, _recorded(loaded, lambda c: _supersede_again(c, "%s", ONE_ID)))
    _along_the_id(loaded, _recorded(loaded, lambda c: _supersede_added(c, "%s", seqs)))


def test_the_outbox_finds_an_object_s_versions_along_the_id_before_any_analysis(
        loaded: PostgresStore) -> None:
    """Right after a bulk load, before (auto)analyze: the marking-definition a
    publication cites queued with it, the parties an object is queued for, and what
    enqueue chooses from are read through the index of the id, not a scan of objects."""
    cites = dataclasses.replace(obj(1), marking_refs=(ONE_ID,))
    _along_the_id(loaded, _recorded(loaded, lambda c: _queue_cited(
        c, "%s", "AUS", cites, "2027-02-01T00:00:00.000000Z", set(), _collections_held(c))))
    _along_the_id(loaded, _recorded(loaded, lambda c: _queued_for(c, "%s", ONE_ID)))
    _along_the_id(loaded, [_enqueue_select([ONE_ID], pgstore._any, ["c1", "c2"])])  # noqa: SLF001


def test_a_relabel_finds_the_object_s_versions_along_the_id_before_any_analysis(
        loaded: PostgresStore) -> None:
    """Right after a bulk load, before (auto)analyze: a relabelling's check for a version
    stored meanwhile, its look for the parties an older version went to, and its writes
    of the new labels find the object's versions through the index of the id, not every
    object of its originator, nor the table."""
    version = "2026-01-01T00:03:54.000000Z"  # ONE_ID's first
    _along_the_id(loaded, _recorded(loaded, lambda c: (
        _stored_meanwhile(c, "%s", ONE_ID, "JPN", "2000-01-01T00:00:00.000000Z", {}),
        _went(c, "%s", ONE_ID, "JPN", version),
        _relabel_rows(c, "%s", ONE_ID, "JPN", {version: (1, 1)}))))



def test_whether_an_object_was_withdrawn_is_read_along_the_id_before_any_analysis(
        loaded: PostgresStore) -> None:
    """Right after a bulk load, before (auto)analyze: whether the objects a release
    derives from were withdrawn here (Store.withdrawn, asked on each release with a
    third party's consent) reads their versions through the index of the id."""
    _along_the_id(loaded, _recorded(loaded, lambda c: _withdrawn(c, "%s", [ONE_ID])))

WRITER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[3])
    from intelpact.store import open_store
    from test_store import obj
    store = open_store(sys.argv[1])
    base = int(sys.argv[2])
    for batch in range(20):
        store.add_objects("c1", [obj(base + batch * 5 + k) for k in range(5)])
    store.close()
""")


def test_writers_in_several_processes_keep_date_added_and_cursors_in_order(
        store: PostgresStore, url: str) -> None:
    """Three processes write 100 objects each while this one pages: date_added rises
    strictly with seq, and paging sees every object once."""
    readable = ids_for(store, LOW)
    store.add_objects("c1", [obj(1)])
    readable = ids_for(store, LOW)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url, str(10_000 * (w + 1)),
                                 str(ROOT / "tests" / "store")],
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                    [str(ROOT / "src"), str(ROOT / "tests")])})
               for w in range(3)]
    seen: list[str] = []
    cursor = None
    while True:
        page = store.query("c1", readable, Query(limit=7, cursor=cursor, versions=("all",)))
        seen.extend(r.object_id for r in page.rows)
        if page.rows:
            cursor = f"{page.rows[-1].seq}.{Query(versions=('all',)).fingerprint()}"
        if not page.more and all(w.poll() is not None for w in writers):
            final = store.query("c1", readable, Query(limit=7, cursor=cursor,
                                                      versions=("all",)))
            seen.extend(r.object_id for r in final.rows)
            if not final.more:
                break
    assert [w.wait() for w in writers] == [0, 0, 0]
    assert len(seen) == len(set(seen)) == 301
    rows = store.query("c1", readable, Query(limit=1000, versions=("all",))).rows
    added = [r.date_added for r in rows]
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert added == sorted(added) and len(set(added)) == 301


def test_labels_added_by_another_process_are_learnt(store: PostgresStore, url: str) -> None:
    other = open_store(url)
    try:
        other.add_objects("c1", [obj(1, label=HIGH)])
        assert HIGH in store.labels().values()
        rows = store.query("c1", ids_for(store, HIGH), Query()).rows
        assert [json.loads(r.body)["id"] for r in rows] == [obj(1).object_id]
    finally:
        other.close()
