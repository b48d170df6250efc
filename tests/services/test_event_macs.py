"""Each audit event carries this node's MAC, under a key the database does not hold
(crypto/eventmacs.py), on SQLite and PostgreSQL.

Someone with write access to the database alone can append a well-formed event before
the next checkpoint, and the node signs it: the tree proves that nothing signed was
altered, not who wrote it. Such an event is named by `audit verify` and raises the
alert ``event-forged`` when it is integrated; so is one given another event's MAC, or a
MAC made under another key. The key's file is refused missing once events carry MACs,
and a log from before the MACs is checked from where they began."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from intelpact.crypto.eventmacs import EventMacs
from intelpact.crypto.keys import KeyFileError
from intelpact.services.node import Node

from helpers import insider, make_node


@pytest.fixture()
def node(tmp_path: Path) -> Iterator[Node]:
    n = make_node(tmp_path / "jpn")
    yield n
    n.close()


def key_file(node: Node) -> Path:
    return node.config.signing_key.parent / "audit-events.key"


def append_directly(node: Node, mac: bytes | None = None) -> int:
    """A well-formed event, as the node would write it, appended by ``insider``: its
    leaf index."""
    event = node.audit.event("login-failure", name="nobody", reason="bad password")
    index = node.store.audit_size()
    insider(node, "INSERT INTO audit_events (idx, at, kind, person, body, mac) "
            "VALUES (?, ?, ?, ?, ?, ?)", (index, event.at, event.kind, event.person,
                                          event.body, mac))
    return index


def held_open(node_dir: Path) -> tuple[int, int]:
    """The files of ``node_dir`` this process holds open, and its threads (a
    PostgreSQL store's pool has some)."""
    files = sum(str(node_dir) in os.readlink(fd) for fd in Path("/proc/self/fd").iterdir()
                if fd.is_symlink() and os.path.exists(fd))
    return files, threading.active_count()


def alerts(node: Node) -> list[tuple[str, str]]:
    return [(kind, detail) for _, kind, _, detail, _ in node.store.alerts()]


def test_every_event_appended_carries_the_node_s_mac(node: Node) -> None:
    node.people.add("analyst", party="JPN", clearance="秘")
    node.audit.record(node.audit.event("login-failure", name="x", reason="test"))
    rows = node.store.audit_events(0, node.store.audit_size())
    assert len(rows) == 3 and node.audit.macs.since == 0
    assert all(row.mac == node.audit.macs.of(row.index, row.body) for row in rows)
    assert len({row.mac for row in rows}) == len(rows)
    assert node.audit.verify().problems == ()


def test_an_event_written_into_the_database_directly_is_named_and_alerted(
        node: Node) -> None:
    """Appended before a checkpoint, it is integrated and signed like any other (the
    tree holds what was appended), but it is the node's no longer: verify names it for
    ever, and the integrator raises the alert once."""
    node.audit.checkpoint()
    index = append_directly(node)
    node.audit.checkpoint()
    assert node.audit.latest().size == index + 1  # type: ignore[union-attr]
    assert node.audit.verify().problems == (
        f"event {index} carries no MAC: it was not appended by this node but written into "
        "the database directly",)
    [(kind, detail)] = alerts(node)
    assert kind == "event-forged" and detail.startswith(f"audit event(s) {index} carry no MAC")
    node.audit.checkpoint()  # integrated once: alerted once
    assert len(alerts(node)) == 1


@pytest.mark.parametrize("made", ["another event's", "another key's"])
def test_a_mac_not_made_here_for_that_event_does_not_verify(node: Node, made: str) -> None:
    node.audit.checkpoint()
    index = node.store.audit_size()
    event = node.audit.event("login-failure", name="nobody", reason="bad password")
    mac = (node.store.audit_events(0, 1)[0].mac if made == "another event's"
           else EventMacs(os.urandom(32), 0).of(index, event.body))
    assert append_directly(node, mac) == index
    node.audit.checkpoint()
    assert node.audit.verify().problems == (
        f"event {index}'s MAC does not verify: it was written, altered or moved outside "
        "this node",)
    assert [kind for kind, _ in alerts(node)] == ["event-forged"]


def test_several_forged_events_are_alerted_as_runs(node: Node) -> None:
    first = append_directly(node)
    append_directly(node)
    node.people.add("analyst", party="JPN", clearance="秘")
    last = append_directly(node)
    node.audit.checkpoint()
    [(_, detail)] = alerts(node)
    assert detail.startswith(f"audit event(s) {first}..{first + 1}, {last} carry no MAC")
    assert len(node.audit.verify().problems) == 3


def test_the_key_is_kept_beside_the_node_s_keys_and_its_loss_refused(
        node: Node, tmp_path: Path) -> None:
    path = key_file(node)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["since"] == 0
    node.close()
    backup = tmp_path / "backup.key"
    shutil.move(path, backup)
    before = held_open(tmp_path / "jpn")
    with pytest.raises(KeyFileError) as info:
        Node.open(tmp_path / "jpn")
    assert held_open(tmp_path / "jpn") == before  # the store it opened is closed again
    assert str(path) in info.value.message and "missing" in info.value.message
    assert info.value.hint is not None and "restore" in info.value.hint
    assert not path.exists()  # no new key made over the loss
    shutil.move(backup, path)
    again = Node.open(tmp_path / "jpn")
    try:
        assert again.audit.verify().problems == ()
    finally:
        again.close()


@pytest.mark.parametrize("text", ["", "not json", '{"key": "00", "since": 0}',
                                  '{"key": "' + "0" * 64 + '", "since": -1}',
                                  '{"key": "' + "0" * 64 + '", "since": true}',
                                  '{"key": "' + "x" * 64 + '", "since": 0}'])
def test_a_key_file_that_is_not_one_is_refused(node: Node, tmp_path: Path, text: str) -> None:
    node.close()
    key_file(node).write_text(text)
    with pytest.raises(KeyFileError) as info:
        Node.open(tmp_path / "jpn")
    assert "not an audit event key" in info.value.message


def test_a_log_from_before_the_macs_is_checked_from_where_they_began(
        node: Node, tmp_path: Path) -> None:
    """A log written before migration 0037 has no MACs: the key made at its first open
    since requires them from the log's size then on."""
    node.people.add("analyst", party="JPN", clearance="秘")
    node.audit.checkpoint()
    insider(node, "UPDATE audit_events SET mac = NULL")
    before = node.store.audit_size()
    node.close()
    key_file(node).unlink()
    again = Node.open(tmp_path / "jpn")
    try:
        assert again.audit.macs.since == before
        again.people.add("officer", party="JPN", clearance="秘")
        assert again.audit.verify().problems == ()
        assert again.store.audit_events(before, before + 1)[0].mac is not None
        index = append_directly(again)
        again.audit.checkpoint()
        assert again.audit.verify().problems == (
            f"event {index} carries no MAC: it was not appended by this node but written "
            "into the database directly",)
    finally:
        again.close()
