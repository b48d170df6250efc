"""The node's record of its log's head, outside the database (``keys/audit-head.json``,
services/audit.py ``Head``), on SQLite and PostgreSQL.

A checkpoint is signed every 10 seconds; before, the events appended since the last one
could be deleted from the end of the table, or the whole store rolled back, by someone
with write access to the database alone, and `audit verify` could not tell. The head is
written after each integration: the integrator raises the alert ``log-cut`` when the
tree no longer extends it, and `audit verify` checks the log against it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_event_macs import alerts, insider

from intelpact.services.audit import Head, decode_hash
from intelpact.services.node import Node

from helpers import make_node


@pytest.fixture()
def node(tmp_path: Path) -> Iterator[Node]:
    n = make_node(tmp_path / "jpn")
    yield n
    n.close()


def head_file(node: Node) -> Path:
    return node.config.signing_key.parent / "audit-head.json"


def cut(node: Node, keep: int) -> None:
    """Delete every event from ``keep`` on, with the hashes and checkpoints over them,
    as someone with write access to the database: what a rollback leaves too."""
    for sql in (f"DELETE FROM audit_events WHERE idx >= {keep}",
                f"DELETE FROM audit_refs WHERE idx >= {keep}",
                f"DELETE FROM audit_nodes WHERE ((idx + 1) << level) > {keep}",
                f"DELETE FROM audit_checkpoints WHERE size > {keep}"):
        insider(node, sql)


def test_the_head_is_recorded_after_each_integration(node: Node) -> None:
    node.people.add("analyst", party="JPN", clearance="秘")
    size, root = node.audit.integrate()
    data = json.loads(head_file(node).read_text())
    assert (data["size"], decode_hash(data["root"])) == (size, root) == (
        node.store.audit_size(), root)
    assert node.audit.verify().problems == ()


def test_events_cut_from_the_end_before_a_checkpoint_are_caught(tmp_path: Path) -> None:
    """Appended and integrated, not yet signed (the node then stopped by a crash), then
    deleted with their hashes: before, verify found nothing wrong (docs/audit.md said
    so)."""
    node = make_node(tmp_path / "jpn")
    node.audit.checkpoint()
    keep = node.store.audit_size()
    for name in ("a", "b", "c"):
        node.people.add(name, party="JPN", clearance="秘")
    had, _ = node.audit.integrate()
    node.audit._commit.close()
    node.store.close()  # a crash: nothing signed at close
    down = Node.open(tmp_path / "jpn")  # only to reach its database, as the insider
    cut(down, keep)
    down.audit._commit.close()
    down.store.close()
    again = Node.open(tmp_path / "jpn")
    try:
        assert again.audit.verify().problems == (
            f"the {keep} events stored are fewer than the {had} this node recorded outside "
            "the database (keys/audit-head.json): events were deleted from the end, or the "
            "store was rolled back",)
        again.audit.integrate()  # and the integrator says so at once
        [(kind, detail)] = alerts(again)
        assert kind == "log-cut" and f"holds {keep} integrated events, but its own record " \
            f"outside the database (audit-head.json) says it had {had}" in detail
    finally:
        again.close()


def test_events_cut_while_the_node_runs_are_alerted(node: Node) -> None:
    node.audit.checkpoint()
    keep = node.store.audit_size()
    node.people.add("a", party="JPN", clearance="秘")
    node.audit.integrate()
    cut(node, keep)
    node.audit.integrate()
    assert [kind for kind, _ in alerts(node)] == ["log-cut"]


def test_a_log_cut_and_appended_to_again_is_caught(node: Node) -> None:
    """The events deleted from the end, and new ones appended in their place by the node
    itself (every MAC good): the tree no longer extends the head recorded."""
    node.audit.checkpoint()
    keep = node.store.audit_size()
    for name in ("a", "b"):
        node.people.add(name, party="JPN", clearance="秘")
    node.audit.integrate()
    cut(node, keep)
    for name in ("c", "d", "e"):
        node.people.add(name, party="JPN", clearance="秘")
    node.audit.integrate()
    [(kind, detail)] = alerts(node)
    assert kind == "log-cut" and "do not extend the" in detail and \
        "the log was cut and appended to again, or the store was replaced" in detail


def test_a_store_rolled_back_is_caught(node: Node, tmp_path: Path) -> None:
    """Restored from a backup, or rolled back by an insider, checkpoints and all: the
    log is consistent in itself, and only the head says what it had."""
    node.people.add("a", party="JPN", clearance="秘")
    node.audit.checkpoint()
    backup = node.store.audit_size()
    for name in ("b", "c"):
        node.people.add(name, party="JPN", clearance="秘")
    node.audit.checkpoint()
    had = node.store.audit_size()
    node.close()
    restored = Node.open(tmp_path / "jpn")  # as a restore, or the insider, leaves it
    cut(restored, backup)
    restored.audit._commit.close()
    restored.store.close()
    again = Node.open(tmp_path / "jpn")
    try:
        assert any(f"fewer than the {had} this node recorded outside the database" in p
                   for p in again.audit.verify().problems)
        again.audit.integrate()
        assert [kind for kind, _ in alerts(again)] == ["log-cut"]
    finally:
        again.close()
    # the alert stays; the head moved on, and the log as it is now verifies against it
    last = Node.open(tmp_path / "jpn")
    try:
        assert last.audit.verify().problems == ()
        assert [kind for kind, _ in alerts(last)] == ["log-cut"]
    finally:
        last.close()


def test_a_head_of_no_events_is_extended_by_any_log(node: Node, tmp_path: Path) -> None:
    node.close()
    head_file(node).write_text(json.dumps({"size": 0, "root": "A" * 43 + "="}))
    again = Node.open(tmp_path / "jpn")
    try:
        assert again.audit.verify().problems == ()
        size, _ = again.audit.integrate()
        assert alerts(again) == [] and json.loads(head_file(again).read_text())["size"] == size
    finally:
        again.close()


@pytest.mark.parametrize("text", ["", "{", '{"size": -1, "root": ""}', '{"size": 3}',
                                  '{"size": 3, "root": "not base64!"}', "[]"])
def test_a_head_file_that_is_not_one_is_said_and_written_again(
        node: Node, tmp_path: Path, text: str) -> None:
    node.close()
    head_file(node).write_text(text)
    again = Node.open(tmp_path / "jpn")  # the node opens all the same
    try:
        problems = again.audit.verify().problems
        assert len(problems) == 1 and "not this node's record of its log's head" in \
            problems[0], problems
        again.people.add("a", party="JPN", clearance="秘")
        again.audit.integrate()  # written again, whole
        assert json.loads(head_file(again).read_text())["size"] == again.store.audit_size()
    finally:
        again.close()


def test_writers_at_once_leave_a_whole_head(tmp_path: Path) -> None:
    """Two processes of a node may record the head at once: each writes a file of its
    own and moves it over, so the head is always one of theirs, whole."""
    head = Head(tmp_path / "audit-head.json")
    failed: list[BaseException] = []

    def write(size: int) -> None:
        try:
            for _ in range(200):
                head.write(size, bytes([size]) * 32)
                assert head.read() in ((1, b"\x01" * 32), (2, b"\x02" * 32))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failed.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == [] and sorted(p.name for p in tmp_path.iterdir()) == ["audit-head.json"]

