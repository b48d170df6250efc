"""The commands that only show what a node holds open it read-only (docs/node.md,
"Commands that only read"): they run against a copy, a backup or a read-only mount, and
write nothing, on either store."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from test_compromise import _ago, _deliver, _shared_and_read

from intelpact.interfaces.cli import main
from intelpact.services.courier import Courier
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import Query

from helpers import (
    AGREEMENTS,
    database_digest,
    files_digest,
    indicator,
    make_node,
    read_only,
    serving_federation,
)


@pytest.fixture()
def jpn_nzl(jpn_nzl: list[Node]) -> list[Node]:
    """With NZL's analyst, cleared SECRET and NZEO (test_compromise's)."""
    jpn_nzl[1].people.add("analyst", party="NZL", clearance="SECRET", caveats=["NZEO"])
    return jpn_nzl


def _written(node_dir: Path) -> tuple[dict[str, str], dict[str, tuple[int, str]]]:
    """Every file of the node directory and every table of its database, but SQLite's
    shared-memory index, which its readers write to as they read (it holds no data)."""
    files = files_digest(node_dir)
    files.pop("node.db-shm", None)
    return files, database_digest(node_dir)


def test_the_commands_that_only_read_write_nothing_and_read_a_read_only_mount(
        jpn_nzl: list[Node]) -> None:
    """Regression: `audit show`, `audit alerts`, `audit partner --kept`, `user list`,
    `peer list`, `compromise list` and `show`, `consent list`, `recalls`, `card` and
    `disseminations` opened the node read-write: on closing it they integrated and
    signed the events appended and not yet integrated (a serving node's last half
    second, a command killed), and they failed on a read-only mount. They open it
    read-only now, and write nothing: every file and every table is as it was, with
    events pending integration (an `audit show --object` finds those naming the object
    from their bodies, as the integrator will file them), and each runs on the node
    directory mounted read-only."""
    jpn, nzl = jpn_nzl
    with serving_federation(jpn), serving_federation(nzl):
        oid = _shared_and_read(jpn, nzl)
        (filed,) = nzl.compromise.file([oid], what="laptop stolen from a car",
                                       discovered=_ago(1),
                                       officer=nzl.people.as_person("officer"))
        assert _deliver(nzl, "JPN") == 1
        with Courier(jpn) as courier:  # NZL's events about our object, kept here
            assert courier.partner_events("NZL", limit=100).events
    jpn.audit.integrate()
    officer = jpn.people.as_person("officer")  # appended, not integrated: pending
    jpn.find(officer, jpn.default_collection().collection_id, Query(ids=(oid,)), via="get")
    read = jpn.store.audit_size() - 1
    assert jpn.store.audit_integrated() == read
    d = str(jpn.config.dir)
    commands = {
        ("user", "list", d): "officer",
        ("audit", "show", d): "node-init",
        ("audit", "show", d, "--object", oid): f"#{read} ",
        ("audit", "alerts", d, "--all"): "compromise-report NZL",
        ("audit", "partner", d, "NZL", "--kept"): "kept here, read by the audit watch",
        ("compromise", "list", d): filed.report_id,
        ("compromise", "show", d, filed.report_id): "laptop stolen from a car",
        ("consent", "list", d): "No consent requests.",
        ("recalls", d): "No recalls.",
        ("card", d): jpn.identity.key_id,
        ("peer", "list", d): "NZL",
        ("disseminations", d): "2 release(s) acknowledged"}
    run = CliRunner()

    def each() -> None:
        for args, said in commands.items():
            done = run.invoke(main, list(args))
            assert done.exit_code == 0, (args, done.output)
            assert said in " ".join(done.output.split()), (args, done.output)

    before = _written(jpn.config.dir)
    each()  # beside the node open, its last event pending
    assert _written(jpn.config.dir) == before
    assert jpn.store.audit_integrated() == read  # nothing integrated
    jpn.close()
    before = _written(jpn.config.dir)
    with read_only(jpn.config.dir):
        each()
    assert _written(jpn.config.dir) == before


def test_a_listing_read_before_the_labels_are_worked_out_again_is_marked_highest(
        tmp_path: Path) -> None:
    """A node opened read-only works no label out again (services/relabel.py), and after
    a pin the stored labels stay under the text before it until a read-write open (the
    next command that writes, or `serve`): an amendment may map them higher. So the
    banner of `audit show` (and of `audit partner`, `compromise list` and `show`) counts
    every object its events name as the agreement's highest covered level, REL TO this
    node's party alone, until then, never lower than the text in force requires."""
    d = tmp_path / "jpn"
    node = make_node(d)
    try:
        node.people.add("aki", party="JPN", clearance="機密",
                        roles=["analyst", "publisher"])
        aki = node.people.as_person("aki")
        cid = node.default_collection().collection_id
        obj = indicator("a secret")
        node.publisher.publish(aki.person, cid, [obj], marking=MarkingRequest("秘", ()))
    finally:
        node.close()
    show = ["audit", "show", str(d), "--object", obj["id"]]
    first = CliRunner().invoke(main, show)
    assert first.exit_code == 0 and first.output.splitlines()[0] == "秘 // REL TO JPN", \
        first.output
    amended = tmp_path / "v1.1.toml"
    amended.write_text((AGREEMENTS / "jpn-nzl.toml").read_text(encoding="utf-8").replace(
        'version = "1.0"', 'version = "1.1"'), encoding="utf-8")
    node = Node.open(d, migrate=False)
    try:
        node.pin_agreement(amended, reason="amendment 1")
    finally:
        node.close()
    stale = CliRunner().invoke(main, show)
    assert stale.exit_code == 0 and stale.output.splitlines()[0] == "機密 // REL TO JPN", \
        stale.output
    Node.open(d, migrate=False).close()  # read-write: the labels worked out again
    again = CliRunner().invoke(main, show)
    assert again.exit_code == 0 and again.output.splitlines()[0] == "秘 // REL TO JPN", \
        again.output
