"""The search indexer `serve` runs: the text index is written in the background, after
the objects' transaction (docs/console.md, "The search indexer")."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from intelpact.model import Label
from intelpact.services.node import SearchIndexer
from intelpact.store.base import Collection, NewObject, StoreFull
from intelpact.store.sqlite import SQLiteStore

LOW = Label("jpn-nzl-isa", 0, "JPN", frozenset({"JPN", "NZL"}))


def _named(n: int, name: str) -> NewObject:
    oid = f"indicator--00000000-0000-4000-8000-{n:012d}"
    body = f'{{"id":"{oid}","name":"{name}"}}'
    return NewObject(oid, "indicator", "2.1", "2026-01-01T00:00:00.000000Z", body,
                     f"h{n}", LOW, LOW, "JPN", False)


def _indexed(path: Path) -> int:
    with sqlite3.connect(path) as c:
        return int(c.execute("SELECT count(*) FROM objects_text").fetchone()[0])


def test_the_background_indexer_catches_up_without_a_search(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    store = SQLiteStore(path)
    store.add_collection(Collection("c1", "one", "", "intel"))
    indexer = SearchIndexer(store, every=0.01)
    indexer.start()
    try:
        store.add_objects("c1", [_named(n, f"patrol boat {n}") for n in range(1, 2501)])
        deadline = time.monotonic() + 30
        while _indexed(path) < 2500 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _indexed(path) == 2500  # in batches of 1,000, by the indexer's own thread
    finally:
        indexer.stop()
        store.close()


def test_a_failing_index_is_logged_once_per_backoff_not_in_a_loop(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[float] = []
    failed = threading.Event()

    class Full:
        text_index_apart = True

        def index_text(self, limit: int = 1000) -> int:
            calls.append(time.monotonic())
            failed.set()
            raise StoreFull("the disk is full", hint="make room")

    indexer = SearchIndexer(Full(), every=0.01, backoff=0.5)
    with caplog.at_level(logging.ERROR, logger="intelpact.node"):
        indexer.start()
        assert failed.wait(5)
        time.sleep(0.3)
        indexer.stop()
    assert len(calls) == 1  # then it waits out the backoff (stop ends the wait)
    assert [r.getMessage() for r in caplog.records] == [
        "search indexing failed; trying again in 0.5 s"]


class _NoTextIndex(SQLiteStore):
    text_index_apart = False  # as PostgreSQL: nothing for index_text to do


def test_no_thread_for_a_store_without_a_text_index(tmp_path: Path) -> None:
    with_index, without = SQLiteStore(tmp_path / "a.db"), _NoTextIndex(tmp_path / "b.db")
    indexers = [SearchIndexer(with_index), SearchIndexer(without)]
    try:
        for indexer in indexers:
            indexer.start()
        assert indexers[0]._thread is not None and indexers[0]._thread.is_alive()
        assert indexers[1]._thread is None
        assert not [t for t in threading.enumerate()
                    if t.name == "intelpact-search-index" and t is not indexers[0]._thread]
    finally:
        for indexer in indexers:
            indexer.stop()
        with_index.close()
        without.close()
