"""Benchmark: what a store does for one object before the planner has statistics.

Run: .venv/bin/python bench/plans.py [--objects N] [--backends sqlite,postgresql]

N versions (default 20,000: N/4 objects of 4 versions each, under 4 labels, each
version queued for NZL) are loaded into a store by SQL, as a restore or a bulk load
leaves them, and not analysed (on PostgreSQL autovacuum is turned off on the store's
tables, so that it does not analyse them during the run). Timed, the median of ROUNDS
calls, each on another object:

- ``publish``: one new version of a stored object, queued for NZL and citing a stored
  marking-definition (``Store.add_objects`` with ``release``, as a publication stores
  it: the superseded marks worked out, the definition queued with it);
- ``relabel``: that object's versions relabelled as a reclassification does
  (``Store.relabel``: the check for a version stored meanwhile, the writes, the marks
  worked out again);
- ``queued_for``, ``enqueue`` and ``withdrawn`` of its id (the last asked on each
  release with a third party's consent).

The peer, in the same run: the same calls on other objects after ``ANALYZE`` (the
statistics the planner otherwise waits for; the store never analyses SQLite). ``ratio``
is before over after: 1.0 when a plan does not wait for statistics. On PostgreSQL the
server is bench/pgserver.py's (durable settings). The last line printed is one JSON
object.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "store"))

import psycopg  # noqa: E402
from test_store import obj  # noqa: E402

import pgserver  # noqa: E402
from intelpact.model import Label  # noqa: E402
from intelpact.store import Store, open_store  # noqa: E402
from intelpact.store.base import Collection  # noqa: E402

ROUNDS = 100  # calls timed of each kind, before and after ANALYZE
VERSIONS = 4  # per object loaded
LABELS = [Label("jpn-nzl-isa", rank, "JPN", frozenset({"JPN", "NZL"})) for rank in range(4)]
# the loaded rows: object g % count, its version g seconds after 2026-01-01, the newest
# of each object current (superseded = 0), queued for NZL
_LOAD = ("INSERT INTO objects (collection_id, object_id, object_type, spec_version, version, "
         "date_added, label_id, banner_id, originator, has_portions, body, body_hash, "
         "superseded) SELECT 'c1', 'indicator--00000000-0000-4000-8000-' || {id12}, "
         "'indicator', '2.1', {version}, {added}, {label}, {label}, 'JPN', 0, {body}, "
         "'h' || g, CASE WHEN g > {n} - {count} THEN 0 ELSE 1 END FROM {rows}")
_POSTGRES = {"id12": "lpad((g % {count})::text, 12, '0')",
             "version": "to_char(timestamp '2026-01-01' + g * interval '1 second', "
                        "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
             "added": "to_char(timestamp '2027-01-01' + g * interval '1 millisecond', "
                      "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
             "body": "repeat('x', 400)", "rows": "generate_series(1, {n}) g"}
_SQLITE = {"id12": "printf('%012d', g % {count})",
           "version": "strftime('%Y-%m-%dT%H:%M:%S.000000Z', '2026-01-01', g || ' seconds')",
           "added": "printf('2027-01-01T00:00:00.%06dZ', g)",
           "body": "printf('%400s', 'x')",
           "rows": "(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s "
                   "WHERE g < {n}) SELECT g FROM s)"}


def _load(database: str, objects: int, label_ids: list[int]) -> Callable[[str], list[Any]]:
    """``objects`` versions loaded by SQL into ``database`` (and queued for NZL), not
    analysed; returns a function that runs a statement there and gives its rows."""
    count = objects // VERSIONS
    label = f"CASE g % 4 {' '.join(f'WHEN {k} THEN {i}' for k, i in enumerate(label_ids))} END"
    if database.startswith("postgresql"):
        parts = {k: v.format(count=count, n=objects) for k, v in _POSTGRES.items()}
        pg = psycopg.connect(database, autocommit=True)
        for table in ("objects", "outbox", "collections", "labels"):
            pg.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")  # type: ignore[arg-type]

        def run(sql: str) -> list[Any]:
            cur = pg.execute(sql)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
    else:
        parts = {k: v.format(count=count, n=objects) for k, v in _SQLITE.items()}
        lite = sqlite3.connect(database, isolation_level=None)

        def run(sql: str) -> list[Any]:
            return lite.execute(sql).fetchall()
    run(_LOAD.format(**parts, label=label, n=objects, count=count))
    run("INSERT INTO outbox (party, seq, enqueued) SELECT 'NZL', seq, date_added FROM objects "
        "WHERE object_type = 'indicator'")
    return run


def _median_ms(calls: list[Callable[[], object]]) -> float:
    took = []
    for call in calls:
        start = time.perf_counter()
        call()
        took.append(time.perf_counter() - start)
    return 1000 * statistics.median(took)


def _timed(store: Store, run: Callable[[str], list[Any]], first: int, step: int,
           definition: str) -> dict[str, float]:
    """Each kind of call on ROUNDS objects (``first``, then every ``step``-th)."""
    ids = [f"indicator--00000000-0000-4000-8000-{first + k * step:012d}" for k in range(ROUNDS)]
    new = "2027-06-01T00:00:00.000Z"
    fresh = [dataclasses.replace(obj(int(oid[-12:]), new, label=LABELS[int(oid[-12:]) % 4]),
                                 marking_refs=(definition,)) for oid in ids]
    figures = {"publish_ms": _median_ms([
        lambda o=o: store.add_objects("c1", [o], release=lambda _: ["NZL"])  # type: ignore[misc]
        for o in fresh])}
    versions = {oid: [str(v) for v, in run(f"SELECT version FROM objects WHERE object_id = "  # noqa: S608
                                           f"'{oid}'")] for oid in ids}
    moved = (LABELS[3], LABELS[3])
    figures["relabel_ms"] = _median_ms([
        lambda oid=oid: store.relabel(oid, "JPN", dict.fromkeys(versions[oid], moved), [],  # type: ignore[misc]
                                      older_than=max(versions[oid]))
        for oid in ids])
    figures["queued_for_ms"] = _median_ms([lambda oid=oid: store.queued_for(oid)  # type: ignore[misc]
                                           for oid in ids])
    figures["enqueue_ms"] = _median_ms([
        lambda oid=oid: store.enqueue("NZL", lambda _: False, [oid])  # type: ignore[misc]
        for oid in ids])
    figures["withdrawn_ms"] = _median_ms([lambda oid=oid: store.withdrawn([oid])  # type: ignore[misc]
                                          for oid in ids])
    return figures


def run(work: Path, database: str | None, objects: int) -> dict[str, Any]:
    """Load, time before ANALYZE, analyse, time again on other objects."""
    url = database or str(work / "node.db")
    store = open_store(url)
    try:
        store.add_collection(Collection("c1", "one", "", "intel"))
        store.add_collection(Collection("c2", "two", "", "intel2"))
        definition = obj(1, kind="marking-definition")
        store.add_objects("c1", [definition, *(obj(10 ** 9 + k, label=label)
                                               for k, label in enumerate(LABELS))])
        by_label = {label: label_id for label_id, label in store.labels().items()}
        label_ids = [by_label[label] for label in LABELS]
        load = _load(url, objects, label_ids)
        count = objects // VERSIONS
        step = max(1, count // (2 * ROUNDS))
        before = _timed(store, load, 0, 2 * step, definition.object_id)
        load("ANALYZE")
        after = _timed(store, load, step, 2 * step, definition.object_id)
    finally:
        store.close()
    figures: dict[str, Any] = {}
    for key, value in before.items():
        name = key.removesuffix("_ms")
        figures[f"{name}_ms"] = value
        figures[f"{name}_analysed_ms"] = after[key]
        figures[f"{name}_ratio"] = value / after[key]
    return figures


def main() -> int:
    return pgserver.main_by_backend(__doc__ or "", 20_000, "intelpact-plans-", run)


if __name__ == "__main__":
    sys.exit(main())
