"""The search indexer `serve` runs: the text index is written in the background, after
the objects' transaction (docs/console.md, "The search indexer")."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from intelpact.model import Label, national_marking
from intelpact.services.node import Node, SearchIndexer
from intelpact.services.people import Principal
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import Collection, NewObject, Query, StoreFull
from intelpact.store.sqlite import SQLiteStore

from helpers import indicator, make_node

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


# -- the search's portions (migration 0020): labelled by the node ----------------------------
def _portioned_node(path: Path) -> tuple[Node, Principal, str]:
    """A node holding one 秘 indicator whose description is a 機密 portion; the person
    returned (pub, 機密) may read it."""
    node = make_node(path)
    node.people.add("pub", party="JPN", clearance="機密", roles=["analyst", "publisher"])
    pub = node.people.as_person("pub")
    cid = node.default_collection().collection_id
    top = national_marking(node.agreement, "JPN", "機密", rel_to=["NZL"])
    node.publisher.publish(pub.person, cid, [top])
    x = indicator("harbour report", description="falcon landing", granular_markings=[
        {"selectors": ["description"], "marking_ref": top["id"]}])
    status = node.publisher.publish(pub.person, cid, [x], marking=MarkingRequest("秘", ("NZL",)))
    assert status.body["failure_count"] == 0
    return node, pub, cid


def _finds(node: Node, who: Principal, cid: str, text: str) -> list[str]:
    return [row.object_id for row, _ in node.find(who, cid, Query(text=text))[1]]


def test_the_indexer_labels_the_portions_and_a_search_catches_up(tmp_path: Path) -> None:
    node, pub, cid = _portioned_node(tmp_path / "a")
    try:
        assert len(node.store.portions_pending()) == 1  # stored, not labelled yet
        assert len(_finds(node, pub, cid, "falcon landing")) == 1  # the search labels it
        assert node.store.portions_pending() == []
    finally:
        node.close()
    node, pub, cid = _portioned_node(tmp_path / "b")  # on either store: the thread labels
    node.indexer.every = 0.01
    node.indexer.start()
    try:
        deadline = time.monotonic() + 30
        while node.store.portions_pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert node.store.portions_pending() == []  # by the indexer's thread
    finally:
        node.close()


def test_a_node_opened_under_another_agreement_labels_the_portions_again(
        tmp_path: Path) -> None:
    """Labels are worked out with the node's agreement (an amendment may map a national
    level to another row): opened with another text than the one they were worked out
    under, the node has every version with portions labelled again before it is found."""
    node, pub, cid = _portioned_node(tmp_path / "n")
    assert len(_finds(node, pub, cid, "falcon landing")) == 1
    # the stored labels recorded as under another text, as before an amendment's pin
    assert node.store.begin_relabel("an older text")[0]
    assert node.store.relabel_versions([], "an older text", 2**62, lambda: [])
    node.store.labelled_under = None  # as a tool without a node: the labels' text unchecked
    node.store.label_portions({r.seq: (None, None) for r in node.store.portions_pending()})
    assert node.store.portions_pending() == []
    node.close()
    node = Node.open(tmp_path / "n")
    try:
        assert node.store.labels_agreement() == node.agreement.content_hash
        assert len(node.store.portions_pending()) == 1  # its own agreement's text now
        assert len(_finds(node, node.people.as_person("pub"), cid, "falcon landing")) == 1
    finally:
        node.close()


def test_a_version_whose_markings_do_not_resolve_is_labelled_as_never_searched(
        tmp_path: Path) -> None:
    """A stored body the node cannot label (a marking-definition it does not know, a body
    that is no JSON object) is served to no one, so its portions are searched by no one;
    labelling it does not stop the search for everyone else."""
    node, pub, cid = _portioned_node(tmp_path / "n")
    try:
        x = _finds(node, pub, cid, "falcon landing")[0]
        body = {"id": "indicator--00000000-0000-4000-8000-000000000001", "name": "kestrel",
                "description": "falcon landing", "object_marking_refs": [
                    "marking-definition--00000000-0000-4000-8000-000000000009"],
                "granular_markings": [{"selectors": ["description"], "marking_ref":
                                       "marking-definition--00000000-0000-4000-8000-00000000000a"}]}
        stored = node.store.labels()[node.store.held([x])[0].label_id]
        added = node.store.add_objects(cid, [NewObject(
            f"indicator--00000000-0000-4000-8000-00000000000{i}", "indicator", "2.1",
            "2026-01-01T00:00:00.000000Z", text, f"h{i}", stored, stored, "JPN", True)
            for i, text in ((1, json.dumps(body)), (2, "[]"))])
        assert [r.outcome for r in added] == ["added", "added"]
        assert _finds(node, pub, cid, "falcon landing") == [x]
        assert node.store.portions_pending() == []
        assert _finds(node, pub, cid, "kestrel") == []  # not served: its marking is unknown
    finally:
        node.close()
