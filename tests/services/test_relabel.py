"""An amendment that maps a national level (or a TLP marking) to another row: the node
works every stored version's labels out again under the new text when it next opens
(services/relabel.py), so access and release follow the new rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_atomic_audit import REFUSED, refusing
from test_controls import deliver
from test_federation import PW, publish, push
from test_lifecycle import pin

import intelpact.services.relabel as relabel
from intelpact.model import PartnerNode, load_agreement
from intelpact.model.labels import UNLABELLED
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store import open_store
from intelpact.store.base import AuditFilter, StoredObject, StoreError

from helpers import AGREEMENTS, indicator, serving, serving_federation

TAXII = "application/taxii+json;version=2.1"
TLP_AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"  # TLP 2.0
SAMPLE = (AGREEMENTS / "jpn-nzl.toml").read_text(encoding="utf-8")


def amended(tmp_path: Path) -> Path:
    """Version 1.1 of jpn-nzl: New Zealand retires CONFIDENTIAL, so its RESTRICTED moves
    up a row to CONFIDENTIAL (Japan's 秘); Japan's 取扱注意 moves up a row to RESTRICTED;
    TLP:AMBER is exchanged at SENSITIVE, a row the agreement does not cover."""
    changes = [
        ('version = "1.0"', 'version = "1.1"'),
        ('[[schemes.NZL.levels]]\nname = "CONFIDENTIAL"\nabbrev = "C"\n\n', ""),
        ('level = "SENSITIVE"\nabbrev = "SENS"\nJPN = "取扱注意"',
         'level = "SENSITIVE"\nabbrev = "SENS"\nJPN = { treat_as = "取扱注意" }'),
        ('JPN = { treat_as = "秘" }\nNZL = "RESTRICTED"',
         'JPN = "取扱注意"\nNZL = { treat_as = "RESTRICTED" }'),
        ('JPN = "秘"\nNZL = "CONFIDENTIAL"', 'JPN = "秘"\nNZL = "RESTRICTED"'),
    ]
    text = SAMPLE
    for old, new in changes:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "jpn-nzl-v1.1.toml"
    path.write_text(text + '\n[markings.tlp]\namber = { level = "SENSITIVE" }\n',
                    encoding="utf-8")
    agreement = load_agreement(path)
    assert agreement.rank_of("NZL", "RESTRICTED") == agreement.shared_rank("CONFIDENTIAL")
    assert agreement.rank_of("JPN", "取扱注意") == agreement.shared_rank("RESTRICTED")
    return path


def readers(node: Node) -> None:
    """JPN analysts cleared 取扱注意 (RESTRICTED under the amendment, SENSITIVE before)
    and 指定なし (UNCLASSIFIED)."""
    node.people.add("suzuki", party="JPN", clearance="取扱注意", password=PW)
    node.people.add("kato", party="JPN", clearance="指定なし", password=PW)


def amber(node: Node, name: str) -> dict[str, Any]:
    """A JPN object marked 指定なし releasable to NZL, and TLP:AMBER."""
    obj = indicator(name, object_marking_refs=[TLP_AMBER])
    who = node.people.as_person("officer").person
    status = node.publisher.publish(who, node.default_collection().collection_id, [obj],
                                    marking=MarkingRequest("指定なし", ("NZL",)))
    assert status.body["failure_count"] == 0, status.body
    return obj


def served(url: str, node: Node, who: str, object_id: str) -> bool:
    """Whether ``who`` is served ``object_id`` over TAXII."""
    cid = node.default_collection().collection_id
    answer = httpx.get(f"{url}/intel/collections/{cid}/objects/{object_id}/",
                       headers={"Accept": TAXII}, auth=(who, PW), timeout=30)
    assert answer.status_code in (200, 404), answer.text
    return answer.status_code == 200 and bool(answer.json().get("objects"))


def rows_of(node: Node, object_id: str) -> list[StoredObject]:
    return sorted(node.store.held([object_id]), key=lambda r: r.version)


def releasable(node: Node, row: StoredObject) -> tuple[bool, str]:
    """The release decision on ``row`` to NZL, as the courier takes it when it leaves."""
    decision = node.policy.may_release(
        node.store.labels()[row.banner_id], PartnerNode("NZL", node.agreement.id),
        holder=node.party, object_id=row.object_id, version=row.version)
    going, _ = node.federation.outgoing("NZL", [(0, row)], ())
    assert bool(going) == decision.allowed
    return decision.allowed, decision.reason


def events(node: Node) -> list[dict[str, Any]]:
    return [json.loads(r.body)
            for r in node.store.find_audit(AuditFilter(kinds=("relabel-agreement",)))]


@pytest.fixture()
def jpn_nzl(jpn_nzl: list[Node]) -> list[Node]:
    """With JPN's readers (``readers``)."""
    readers(jpn_nzl[0])
    return jpn_nzl


def test_after_an_amendment_access_and_release_follow_the_new_rows(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    jpn, nzl = jpn_nzl
    restricted = publish(nzl, "NZ RESTRICTED", "RESTRICTED", ("JPN",))
    raised = publish(nzl, "raised by its originator", "UNCLASSIFIED", ("JPN",))
    with serving_federation(jpn), serving_federation(nzl):
        assert push(nzl, "JPN") >= 2
        officer = nzl.people.as_person("officer")
        nzl.controls.reclassify(officer, raised["id"], MarkingRequest("SECRET", ("JPN",)),
                                collection_id=nzl.default_collection().collection_id,
                                reason="a new source")
        assert deliver(nzl, "JPN") == 1  # JPN's copy is SECRET now (its body is not)
    shared = amber(jpn, "amber")
    own = publish(jpn, "JPN 秘", "秘", ("NZL",))  # the row whose NZL cell the amendment moves
    secret = jpn.agreement.shared_rank("SECRET")
    assert jpn.store.labels()[rows_of(jpn, raised["id"])[0].label_id].rank == secret
    with serving(jpn) as url:
        assert served(url, jpn, "kato", shared["id"])
        assert not served(url, jpn, "suzuki", restricted["id"])  # RESTRICTED needs 秘
        assert served(url, jpn, "officer", restricted["id"])
    (row,) = rows_of(jpn, shared["id"])
    assert releasable(jpn, row)[0]
    old_hash = jpn.agreement.content_hash

    jpn = jpn_nzl[0] = pin(jpn, amended(tmp_path))
    with serving(jpn) as url:
        # 取扱注意 now answers RESTRICTED, the row NZ RESTRICTED was stored under; NZ
        # RESTRICTED is CONFIDENTIAL now (its marking-definition's equivalents are those
        # of its day: it means its originator's level under the text in force)
        assert not served(url, jpn, "suzuki", restricted["id"])
        assert served(url, jpn, "officer", restricted["id"])
        # Japan's own 秘 stays CONFIDENTIAL, although its definition lists NZL's old cell
        assert served(url, jpn, "officer", own["id"])
        assert not served(url, jpn, "suzuki", own["id"])
        # TLP:AMBER is SENSITIVE now: 取扱注意, not 指定なし
        assert not served(url, jpn, "kato", shared["id"])
        assert served(url, jpn, "suzuki", shared["id"])
        assert served(url, jpn, "officer", raised["id"])
    (row,) = rows_of(jpn, shared["id"])
    labels = jpn.store.labels()
    assert labels[row.label_id].rank == jpn.agreement.shared_rank("SENSITIVE")
    assert releasable(jpn, row) == (False, "SENSITIVE is not covered by agreement "
                                           "jpn-nzl-isa")
    confidential = jpn.agreement.shared_rank("CONFIDENTIAL")
    for row in rows_of(jpn, restricted["id"]) + rows_of(jpn, own["id"]):
        assert labels[row.label_id].rank == labels[row.banner_id].rank == confidential
        assert UNLABELLED not in labels[row.banner_id].caveats
    # the notice's SECRET is joined with the version's own UNCLASSIFIED again
    (row,) = rows_of(jpn, raised["id"])
    assert labels[row.label_id].rank == labels[row.banner_id].rank == secret
    (event,) = events(jpn)
    assert event["old_hash"] == old_hash and event["new_hash"] == jpn.agreement.content_hash
    # nothing closed; joined with the notice: the raised version
    assert (event["unlabelled"], event["reclassified"]) == (0, 1)
    assert event["changed"] == 3  # the AMBER indicator, NZ RESTRICTED and its definition
    assert event["versions"] == len(jpn.store.versions_after(0, 100))
    jpn.close()
    jpn = jpn_nzl[0] = Node.open(jpn.config.dir)
    assert len(events(jpn)) == 1  # under the same text: not again


def test_a_relabel_cut_short_is_finished_at_the_next_open(
        jpn_nzl: list[Node], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch is one transaction; the text is recorded with the last. Cut short in
    the second batch (the store refuses it), every version is under the old text's label
    or the new one's, the node does not open, a process under the old text stores
    nothing more, and the next open works them all out."""
    jpn = jpn_nzl[0]
    ids = [amber(jpn, f"amber {n}")["id"] for n in range(3)]
    old = {oid: rows_of(jpn, oid)[0].label_id for oid in ids}
    monkeypatch.setattr(relabel, "BATCH", 2)
    path = amended(tmp_path)
    jpn.pin_agreement(path, reason="amendment 1")  # this process keeps the old text
    seqs = [rows_of(jpn, oid)[0].seq for oid in ids]
    store = open_store(jpn.config.database, jpn.config.dir)
    try:
        with refusing(store, "objects", update_of="label_id", when=f"NEW.seq = {seqs[2]}"), \
                pytest.raises(Exception, match=REFUSED):
            Node.open(jpn.config.dir)
        assert store.labels_agreement() is None  # not recorded: being worked out
        # the batches: JPN's definition and the first, then the other two (refused)
        now = [rows_of(jpn, oid)[0].label_id for oid in ids]
        sensitive = load_agreement(path).shared_rank("SENSITIVE")
        assert [store.labels()[label].rank for label in now] == [sensitive, 0, 0]
        assert now[1:] == [old[oid] for oid in ids[1:]]
        with pytest.raises(StoreError, match="the agreement was amended"):
            amber(jpn, "under the old text")
        assert not events(jpn)
    finally:
        store.close()
    jpn.close()
    jpn = jpn_nzl[0] = Node.open(jpn.config.dir)
    labels = jpn.store.labels()
    assert [labels[rows_of(jpn, oid)[0].label_id].rank for oid in ids] == [sensitive] * 3
    assert jpn.store.labels_agreement() == jpn.agreement.content_hash
    (event,) = events(jpn)
    assert event["versions"] == len(jpn.store.versions_after(0, 100))
    assert amber(jpn, "under the new text")


def test_a_version_whose_marking_the_amendment_no_longer_allows_is_closed(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    """An amendment that drops a caveat: what carries it can no longer be protected as
    marked, so it is closed (served and released to no one), not opened."""
    jpn = jpn_nzl[0]
    jpn.people.add("sato", party="JPN", clearance="機密", password=PW)
    eyes = publish(jpn, "Japan eyes only", "秘", ("JPN",), ("JPNEO",))
    plain = publish(jpn, "releasable", "秘", ("NZL",))
    text = SAMPLE.replace('version = "1.0"', 'version = "1.1"').replace(
        '[[caveats]]\nname = "JPNEO"\ntitle = "Japan Eyes Only"\nreleasable_to = ["JPN"]\n',
        "")
    assert "JPNEO" not in text
    path = tmp_path / "jpn-nzl-v1.1.toml"
    path.write_text(text, encoding="utf-8")
    jpn = jpn_nzl[0] = pin(jpn, path)
    labels = jpn.store.labels()
    for row in rows_of(jpn, eyes["id"]):
        assert UNLABELLED in labels[row.banner_id].caveats
    (row,) = rows_of(jpn, plain["id"])
    assert UNLABELLED not in labels[row.banner_id].caveats
    with serving(jpn) as url:
        assert not served(url, jpn, "sato", eyes["id"])
        assert served(url, jpn, "sato", plain["id"])
        # the officer's record names JPNEO: it no longer holds, and the login says so
        answer = httpx.get(f"{url}/intel/collections/", headers={"Accept": TAXII},
                           auth=("officer", PW), timeout=30)
        assert answer.status_code == 401, answer.text
        assert "officer's record does not hold under agreement jpn-nzl-isa version 1.1: " \
               "caveat 'JPNEO' is not known" in answer.text
    (failure,) = [json.loads(r.body) for r in jpn.store.find_audit(
        AuditFilter(kinds=("login-failure",)))]
    assert "does not hold" in failure["reason"]
    (event,) = events(jpn)
    assert event["unlabelled"] >= 1
