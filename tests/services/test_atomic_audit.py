"""An act and its audit event are one store transaction, on SQLite and PostgreSQL.

Each act is tried first with its event refused inside the transaction (a trigger on
``audit_events``: SQLite ``RAISE(ABORT)``, PostgreSQL ``RAISE EXCEPTION``): the act must
not be done, and the audit log's error says so. Then, the trigger dropped, the act is
done and its event is in the log with its fields, integrated into the tree, proven in a
signed checkpoint, and ``intelpact audit verify`` passes. Made in two transactions, the
act stayed done and unrecorded (a crash between them did the same).

A holder's reclassification and an originator's destruction receipt are also tried
with the act's own write refused after the notice and its event are written: nothing
of them is kept, and the next delivery applies and records them once. Kept in one
transaction and applied in another, they stayed recorded as applied and were never
applied (a delivery again is answered "applied already")."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_controls import deliver, seen
from test_federation import pair, publish, push
from test_federation_attacks import send_to_inbox

from intelpact.crypto.merkle import leaf_hash, verify_inclusion
from intelpact.errors import IntelpactError
from intelpact.interfaces.cli import main
from intelpact.services import courier as courier_module
from intelpact.services.audit import AuditError, operator
from intelpact.services.courier import Courier
from intelpact.services.credentials import token_digest
from intelpact.services.federation import FederationError, make_card
from intelpact.services.node import Node
from intelpact.services.people import AuthError
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import AuditFilter, SessionRecord
from intelpact.store.postgres import PostgresStore
from intelpact.store.sqlite import SQLiteStore

from helpers import indicator, make_node, serving_federation

REFUSED = "refused by the test"
OLD_PW, NEW_PW = "the old password, long enough", "the new password, long enough"


@pytest.fixture()
def node(tmp_path: Path) -> Iterator[Node]:
    n = make_node(tmp_path / "jpn")
    yield n
    n.close()


@contextmanager
def refusing(store: Any, table: str, *, when: str | None = None,
             update_of: str | None = None) -> Iterator[None]:
    """Until the block ends, a trigger refuses every insert into ``table`` (``when``: only
    the rows matching, a condition on NEW), or every update of its column ``update_of``:
    the write fails inside whatever transaction makes it."""
    assert isinstance(store, SQLiteStore | PostgresStore)
    event = f"UPDATE OF {update_of}" if update_of else "INSERT"
    if isinstance(store, SQLiteStore):
        create = [f"CREATE TRIGGER refuse_for_test BEFORE {event} ON {table} "
                  + (f"WHEN {when} " if when else "")
                  + f"BEGIN SELECT RAISE(ABORT, '{REFUSED}'); END"]
        drop = ["DROP TRIGGER refuse_for_test"]
    else:
        create = ["CREATE FUNCTION refuse_for_test() RETURNS trigger LANGUAGE plpgsql AS "
                  f"$$ BEGIN RAISE EXCEPTION '{REFUSED}'; END $$",
                  f"CREATE TRIGGER refuse_for_test BEFORE {event} ON {table} FOR EACH ROW "
                  + (f"WHEN ({when}) " if when else "")
                  + "EXECUTE FUNCTION refuse_for_test()"]
        drop = [f"DROP TRIGGER refuse_for_test ON {table}", "DROP FUNCTION refuse_for_test()"]
    with store._write() as c:
        for sql in create:
            c.execute(sql)
    try:
        yield
    finally:
        with store._write() as c:
            for sql in drop:
                c.execute(sql)


def events(node: Node, kind: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in node.store.find_audit(AuditFilter(kinds=(kind,)))]


def unrecorded(node: Node, kind: str, act: Callable[[], object]) -> None:
    """``act``, with its ``kind`` event refused in its transaction, fails with the audit
    log's error, and nothing of that kind is in the log."""
    with refusing(node.store, "audit_events", when=f"NEW.kind = '{kind}'"), \
            pytest.raises(AuditError) as info:
        act()
    assert info.value.message.startswith("the audit log could not record: ")
    assert REFUSED in info.value.message and "\n" not in info.value.message
    assert info.value.hint is not None and "the act was not done" in info.value.hint
    assert events(node, kind) == []


def proven(node: Node) -> None:
    """Everything appended is integrated and proven in a signed checkpoint (each event's
    inclusion proof verified), and ``intelpact audit verify`` passes."""
    node.audit.checkpoint()
    appended = node.store.audit_size()
    assert node.store.audit_integrated() == appended
    size, root = node.audit.verify_checkpoint(node.audit.latest().note)  # type: ignore[union-attr]
    assert size == appended
    records = node.store.audit_events(0, appended)
    for record, proof in zip(records, node.audit.tree.inclusions(
            [r.index for r in records], size), strict=True):
        verify_inclusion(record.index, size, leaf_hash(record.body.encode("utf-8")), proof,
                         root)
    done = CliRunner().invoke(main, ["audit", "verify", str(node.config.dir)])
    assert done.exit_code == 0 and f"OK: {appended} events" in done.output, done.output


def subject(node: Node, name: str) -> dict[str, Any]:
    """The fields every people and credentials event has."""
    return {"v": 2, "node": node.party, "subject": node.audit.pseudonyms.of(name),
            "actor": operator()}


def place(node: Node, kind: str) -> int:
    """Where the one ``kind`` event is among the events about JPN's objects: its number."""
    rows = node.store.find_audit(AuditFilter(originator="JPN", limit=10_000))
    return [r.kind for r in rows].index(kind)


def without_at(event: dict[str, Any]) -> dict[str, Any]:
    assert event["at"].endswith("Z")
    return {k: v for k, v in event.items() if k != "at"}


# -- people and credentials ------------------------------------------------------------------

def test_a_person_is_added_with_the_event_or_not_at_all(node: Node) -> None:
    def add() -> object:
        return node.people.add("ana", party="JPN", clearance="秘", caveats=["JPNEO"],
                               roles=["analyst", "publisher"])

    unrecorded(node, "person-add", add)
    assert node.store.person("ana") is None
    # the same through the command: one line and the hint, exit 2, nobody added
    with refusing(node.store, "audit_events", when="NEW.kind = 'person-add'"):
        done = CliRunner().invoke(main, ["user", "add", str(node.config.dir), "cli-ana",
                                         "--party", "JPN", "--clearance", "秘"])
    assert done.exit_code == 2, done.output
    assert "the audit log could not record" in done.output and REFUSED in done.output
    assert "the act was not done" in done.output and "Traceback" not in done.output
    assert node.store.person("cli-ana") is None

    add()
    assert node.store.person("ana") is not None
    (event,) = events(node, "person-add")
    assert without_at(event) == {**subject(node, "ana"), "kind": "person-add",
                                 "nationality": "JPN", "clearance": "秘",
                                 "caveats": ["JPNEO"], "communities": [],
                                 "roles": ["analyst", "publisher"]}
    proven(node)


def test_a_person_is_revoked_with_the_event_or_not_at_all(node: Node) -> None:
    node.people.add("bo", party="JPN", clearance="秘")
    token = node.people.issue_token("bo")
    unrecorded(node, "person-revoke", lambda: node.people.revoke("bo"))
    record = node.store.person("bo")
    assert record is not None and record.revoked is None
    assert node.people.login_token(token).name == "bo"  # the token was not revoked either

    node.people.revoke("bo")
    record = node.store.person("bo")
    assert record is not None and record.revoked is not None
    with pytest.raises(AuthError):
        node.people.login_token(token)
    (event,) = events(node, "person-revoke")
    assert without_at(event) == {**subject(node, "bo"), "kind": "person-revoke"}
    proven(node)


def test_a_password_is_set_with_the_event_or_not_at_all(node: Node) -> None:
    node.people.add("cy", party="JPN", clearance="秘", password=OLD_PW)
    when = "2026-11-01T00:00:00.000000Z"
    node.store.add_session(SessionRecord("d" * 64, "cy", "csrf", when, when),
                           idle_before=when)
    unrecorded(node, "password-set", lambda: node.people.set_password("cy", NEW_PW))
    assert node.people.login("cy", OLD_PW).name == "cy"  # the old one still works
    with pytest.raises(AuthError):
        node.people.login("cy", NEW_PW)
    assert node.store.session("d" * 64, idle_before=when) is not None  # not ended

    node.people.set_password("cy", NEW_PW)
    assert node.people.login("cy", NEW_PW).name == "cy"
    with pytest.raises(AuthError):
        node.people.login("cy", OLD_PW)
    assert node.store.session("d" * 64, idle_before=when) is None
    (event,) = events(node, "password-set")
    assert without_at(event) == {**subject(node, "cy"), "kind": "password-set"}
    proven(node)


def tokens_of(node: Node, name: str) -> int:
    store = node.store
    if isinstance(store, SQLiteStore):
        row = store._conn().execute("SELECT count(*) FROM tokens WHERE name = ?",
                                    (name,)).fetchone()
    else:
        assert isinstance(store, PostgresStore)
        row = store._one("SELECT count(*) FROM tokens WHERE name = %s", (name,))
    assert row is not None
    return int(row[0])


def test_a_token_is_issued_with_the_event_or_not_at_all(node: Node) -> None:
    node.people.add("di", party="JPN", clearance="秘")
    unrecorded(node, "token-issue", lambda: node.people.issue_token("di", "laptop"))
    assert tokens_of(node, "di") == 0

    token = node.people.issue_token("di", "laptop")
    assert tokens_of(node, "di") == 1 and node.people.login_token(token).name == "di"
    (event,) = events(node, "token-issue")
    assert without_at(event) == {**subject(node, "di"), "kind": "token-issue",
                                 "token": token_digest(token)[:16]}
    proven(node)


def test_tokens_are_revoked_with_the_event_or_not_at_all(node: Node) -> None:
    node.people.add("ed", party="JPN", clearance="秘")
    one, other = node.people.issue_token("ed"), node.people.issue_token("ed")
    unrecorded(node, "token-revoke", lambda: node.people.revoke_tokens("ed", one))
    assert node.people.login_token(one).name == "ed"  # still valid

    assert node.people.revoke_tokens("ed", one) == 1
    with pytest.raises(AuthError):
        node.people.login_token(one)
    assert node.people.login_token(other).name == "ed"
    assert node.people.revoke_tokens("ed") == 1  # the rest: the event counts them
    first, rest = events(node, "token-revoke")
    assert without_at(first) == {**subject(node, "ed"), "kind": "token-revoke", "count": 1,
                                 "token": token_digest(one)[:16]}
    assert without_at(rest) == {**subject(node, "ed"), "kind": "token-revoke", "count": 1}
    proven(node)


# -- alerts, partners, refusals -----------------------------------------------------------------

def test_an_alert_is_raised_with_the_event_or_not_at_all(node: Node) -> None:
    def alert() -> None:
        node.audit.alert("history-rewritten", "NZL", "NZL signed two roots", note="a note")

    unrecorded(node, "alert", alert)
    assert node.store.alerts() == []

    node.audit.start(integrate_every=0.01)  # the background integrator picks it up
    try:
        alert()
        deadline = time.monotonic() + 10
        while node.store.audit_integrated() < node.store.audit_size():
            assert time.monotonic() < deadline, "the integrator did not pick the event up"
            time.sleep(0.01)
    finally:
        node.audit.close()
    ((_, kind, party, detail, _),) = node.store.alerts()
    assert (kind, party, detail) == ("history-rewritten", "NZL", "NZL signed two roots")
    (event,) = events(node, "alert")
    assert without_at(event) == {"v": 2, "node": "JPN", "kind": "alert", "party": "NZL",
                                 "alert": "history-rewritten",
                                 "detail": "NZL signed two roots", "note": "a note"}
    proven(node)


def test_a_partner_is_pinned_with_the_event_or_not_at_all(node: Node,
                                                          tmp_path: Path) -> None:
    nzl = make_node(tmp_path / "nzl", "NZL")
    try:
        card = make_card(nzl.identity)
        unrecorded(node, "peer-add", lambda: node.federation.add_peer(card))
        assert "NZL" not in node.federation.peers()

        peer, _ = node.federation.add_peer(card)
        assert node.federation.peers()["NZL"].key_id == nzl.identity.key_id
        (event,) = events(node, "peer-add")
        assert without_at(event) == {"v": 2, "node": "JPN", "kind": "peer-add",
                                     "party": "NZL", "actor": operator(), "url": peer.url,
                                     "key_id": nzl.identity.key_id,
                                     "tls_fingerprint": card["tls_fingerprint"]}
        proven(node)
    finally:
        nzl.close()


def test_a_refusal_is_kept_with_the_event_or_not_at_all(node: Node, tmp_path: Path) -> None:
    nzl = make_node(tmp_path / "nzl", "NZL")
    try:
        node.federation.add_peer(make_card(nzl.identity))
        cid = node.default_collection().collection_id
        unsigned = indicator("not signed by NZL")
        unrecorded(node, "refuse",
                   lambda: node.federation.receive("NZL", cid, [unsigned]))
        assert node.store.refusals() == []

        (result,), _ = node.federation.receive("NZL", cid, [unsigned])
        assert not result.ok
        ((party, object_id, reason, _),) = node.store.refusals()
        assert (party, object_id, reason) == ("NZL", unsigned["id"], result.message)
        (event,) = events(node, "refuse")
        assert without_at(event) == {"v": 2, "node": "JPN", "kind": "refuse",
                                     "party": "NZL", "actor": "NZL",
                                     "objects": [[unsigned["id"], result.version or ""]],
                                     "reason": result.message}
        proven(node)
    finally:
        nzl.close()


def test_the_refusals_of_an_envelope_are_kept_together_or_not_at_all(
        node: Node, tmp_path: Path) -> None:
    """Each object of an envelope refused is kept with its own event and reason, all in
    one transaction: 300 refused objects are 300 refusals and 300 ``refuse`` events; the
    last one's event refused, none of them is kept."""
    nzl = make_node(tmp_path / "nzl", "NZL")
    try:
        node.federation.add_peer(make_card(nzl.identity))
        cid = node.default_collection().collection_id
        unsigned = [indicator(f"not signed by NZL {i}") for i in range(300)]
        last = unsigned[-1]["id"]
        with refusing(node.store, "audit_events",
                      when=f"NEW.kind = 'refuse' AND NEW.body LIKE '%{last}%'"), \
                pytest.raises(AuditError):
            node.federation.receive("NZL", cid, unsigned)
        assert node.store.refusals() == [] and events(node, "refuse") == []

        results, _ = node.federation.receive("NZL", cid, unsigned)
        assert len(results) == 300 and not any(r.ok for r in results)
        expected = sorted((r.object_id, r.message) for r in results)
        assert sorted((oid, why) for party, oid, why, _ in node.store.refusals()
                      if party == "NZL") == expected
        refused = events(node, "refuse")
        assert sorted((e["objects"][0][0], e["reason"]) for e in refused) == expected
        assert {(e["party"], e["actor"]) for e in refused} == {("NZL", "NZL")}
        proven(node)
    finally:
        nzl.close()


def test_a_partner_is_answered_503_when_its_refusal_cannot_be_recorded(
        node: Node, tmp_path: Path) -> None:
    """Over the federation listener (mutual TLS), an envelope whose refusal cannot be
    recorded is answered 503 with the audit log's reason, not a 500: nothing was kept,
    and the partner retries."""
    nzl = make_node(tmp_path / "nzl", "NZL")
    try:
        pair(node, nzl)
        unsigned = indicator("not signed by NZL")
        with refusing(node.store, "audit_events", when="NEW.kind = 'refuse'"):
            answer = send_to_inbox(nzl, node, [unsigned])
        assert answer.status_code == 503, answer.text
        assert "the audit log could not record" in answer.json()["description"]
        assert node.store.refusals() == [] and events(node, "refuse") == []
        assert send_to_inbox(nzl, node, [unsigned]).json()["failure_count"] == 1
        assert len(node.store.refusals()) == 1 and len(events(node, "refuse")) == 1
    finally:
        nzl.close()


def test_the_watch_s_cursor_moves_with_its_event_or_not_at_all(
        jpn_nzl: tuple[Node, Node]) -> None:
    """A round of JPN's watch of NZL's audit log keeps the events it read, moves its
    cursor and records the move (``partner-audit-kept``) in one transaction: the event
    refused, nothing is kept and the cursor stays where it was."""
    jpn, nzl = jpn_nzl
    publish(jpn, "for NZ", "極秘", ("NZL",))
    with serving_federation(nzl):
        push(jpn, "NZL")
        (received,) = nzl.store.find_audit(AuditFilter(originator="JPN"))
        with Courier(jpn) as courier:
            unrecorded(jpn, "partner-audit-kept", lambda: courier.watch_once("NZL"))
            assert jpn.store.partner_audit_watch("NZL") is None
            assert jpn.store.partner_events("NZL") == []

            courier.watch_once("NZL")
    assert jpn.store.partner_audit_cursor("NZL") == (received.index, 1)
    assert [k.index for k in jpn.store.partner_events("NZL")] == [received.index]
    (event,) = events(jpn, "partner-audit-kept")
    assert without_at(event) == {"v": 2, "node": "JPN", "kind": "partner-audit-kept",
                                 "party": "NZL", "after": received.index, "expect": 1,
                                 "kept": 1}
    proven(jpn)


# -- originator controls: a holder's reclassification, an originator's receipt --------------

@pytest.fixture()
def jpn_nzl(jpn_nzl: list[Node]) -> list[Node]:
    """With NZL's analyst, cleared SECRET."""
    jpn_nzl[1].people.add("analyst", party="NZL", clearance="SECRET")
    return jpn_nzl


def test_a_reclassification_is_applied_with_its_notice_and_event_or_not_at_all(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "going up", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        assert seen(nzl, obj["id"], "analyst")  # SECRET sees 秘 (CONFIDENTIAL)
        jpn.controls.reclassify(jpn.people.as_person("officer"), obj["id"],
                                MarkingRequest("機密", ("NZL",)),
                                collection_id=jpn.default_collection().collection_id,
                                reason="a new source")
        (sent,) = [n for n in jpn.store.notices() if n.kind == "reclassify"]
        # the holder's event cannot be appended; then its relabelling cannot be written,
        # after the notice and the event were: each time nothing of it is kept
        for refused in ({"table": "audit_events", "when": "NEW.kind = 'reclassify'"},
                        {"table": "objects", "update_of": "label_id"}):
            with refusing(nzl.store, **refused), pytest.raises(FederationError):
                deliver(jpn, "NZL")
            assert seen(nzl, obj["id"], "analyst"), refused  # still 秘 there
            assert nzl.store.notice(sent.notice_id) is None, refused
            assert events(nzl, "reclassify") == [], refused
        assert deliver(jpn, "NZL") == 1  # delivered again: applied, and recorded once
        assert seen(nzl, obj["id"], "analyst") == []
        assert seen(nzl, obj["id"], "officer")
        assert deliver(jpn, "NZL") == 0
    assert nzl.store.notice(sent.notice_id) is not None
    held = nzl.store.held([obj["id"]])  # the version it held, now relabelled
    assert len(held) == 1
    (event,) = events(nzl, "reclassify")
    notice = json.loads(sent.body)["notice"]
    assert without_at(event) == {
        "v": 2, "node": "NZL", "kind": "reclassify", "party": "JPN", "actor": "JPN",
        "originator": "JPN", "objects": [[obj["id"], row.version] for row in held],
        "marking": notice["marking"]["id"], "reason": "a new source",
        "notice": notice["id"], "direction": "in", "seq": place(nzl, "reclassify")}
    proven(nzl)


def reclassify_refused(jpn: Node, object_id: str, table: str) -> None:
    """JPN's reclassification of ``object_id`` to 機密 fails, every write to ``table``
    refused."""
    with refusing(jpn.store, table), pytest.raises(Exception) as info:
        jpn.controls.reclassify(jpn.people.as_person("officer"), object_id,
                                MarkingRequest("機密", ("NZL",)),
                                collection_id=jpn.default_collection().collection_id,
                                reason="a new source")
    assert REFUSED in str(info.value)


def test_a_reclassification_cut_short_after_its_publication_is_completed_at_open(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    """The originator publishes the new version in one transaction and completes the
    reclassification (older versions joined, kept, holders' notices queued) in another.
    With the second refused (as a crash between them), the node next opened completes
    it, as the operator's, `resumed`; before, the older version stayed at its old label
    for JPN's own readers and for what was queued, and NZL, which holds it, was never
    told."""
    jpn, nzl = jpn_nzl
    jpn.people.add("kato", party="JPN", clearance="秘")
    obj = publish(jpn, "going up", "秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
    reclassify_refused(jpn, obj["id"], "reclassifications")
    assert len(jpn.store.held([obj["id"]])) == 2  # the new version is published
    assert seen(jpn, obj["id"], "kato")  # and the old one is still at 秘
    assert [n for n in jpn.store.notices() if n.kind == "reclassify"] == []
    ((object_id, version, reason, _),) = jpn.store.reclassify_intents()
    assert (object_id, reason) == (obj["id"], "a new source")
    jpn.close()
    jpn = jpn_nzl[0] = Node.open(tmp_path / "jpn")  # completed as the node opens
    assert jpn.store.reclassify_intents() == []
    assert seen(jpn, obj["id"], "kato") == []
    assert [(o, v) for o, v, _, _ in jpn.store.reclassifications()] == [(obj["id"], version)]
    (sent,) = [n for n in jpn.store.notices() if n.kind == "reclassify"]
    assert sent.party == "NZL"
    told = [json.loads(r.body) for r in jpn.store.find_audit(
        AuditFilter(kinds=("reclassify",)))]
    assert sorted(str(e.get("party")) for e in told) == ["NZL", "None"]
    assert all(e["resumed"] is True and e["actor"] == operator() and e["reason"] == reason
               for e in told)
    with serving_federation(jpn), serving_federation(nzl):
        assert deliver(jpn, "NZL") == 1
    assert seen(nzl, obj["id"], "analyst") == []  # NZL's copy is 機密 now
    jpn.close()
    jpn = jpn_nzl[0] = Node.open(tmp_path / "jpn")  # and only once
    assert len([n for n in jpn.store.notices() if n.kind == "reclassify"]) == 1
    proven(jpn)


def test_a_serving_node_s_courier_completes_a_reclassification_cut_short(
        jpn_nzl: list[Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut short in a node that keeps serving (the console's reclassify, a failed write),
    it is completed by the courier once begun RESUME_AFTER seconds ago, not at once: one
    begun since may be under way in another thread."""
    jpn, _ = jpn_nzl
    jpn.people.add("kato", party="JPN", clearance="秘")
    obj = publish(jpn, "going up", "秘", ("NZL",))
    reclassify_refused(jpn, obj["id"], "reclassifications")
    assert jpn.controls.resume(begun_before=60.0) == 0  # too recent: left alone
    assert len(jpn.store.reclassify_intents()) == 1 and seen(jpn, obj["id"], "kato")
    monkeypatch.setattr(courier_module, "RESUME_AFTER", 0.0)
    courier = Courier(jpn, interval=0.1)
    courier.start()
    try:
        deadline = time.monotonic() + 30
        while jpn.store.reclassify_intents() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        courier.stop()
    assert jpn.store.reclassify_intents() == []
    assert seen(jpn, obj["id"], "kato") == []
    assert [n.party for n in jpn.store.notices() if n.kind == "reclassify"] == ["NZL"]


def test_a_reclassification_never_published_is_forgotten_at_open(
        jpn_nzl: list[Node], tmp_path: Path) -> None:
    """Its intent kept, then the publication's write failed (as a crash before it):
    nothing of it is done when the node opens, and the intent is gone."""
    jpn, _ = jpn_nzl
    obj = publish(jpn, "staying", "秘", ("NZL",))
    reclassify_refused(jpn, obj["id"], "objects")
    assert len(jpn.store.held([obj["id"]])) == 1
    assert [i[0] for i in jpn.store.reclassify_intents()] == [obj["id"]]
    labels = [(r.version, r.label_id) for r in jpn.store.held([obj["id"]])]
    with pytest.raises(IntelpactError):  # refused, not failed: forgotten at once
        jpn.controls.reclassify(jpn.people.as_person("officer"), obj["id"],
                                MarkingRequest("no such level", ("NZL",)),
                                collection_id=jpn.default_collection().collection_id,
                                reason="a new source")
    assert [i[0] for i in jpn.store.reclassify_intents()] == [obj["id"]]
    jpn.close()
    jpn = jpn_nzl[0] = Node.open(tmp_path / "jpn")
    assert jpn.store.reclassify_intents() == []
    assert [(r.version, r.label_id) for r in jpn.store.held([obj["id"]])] == labels
    assert jpn.store.reclassifications() == [] and events(jpn, "reclassify") == []


def test_a_destruction_receipt_confirms_the_recall_with_its_event_or_not_at_all(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "to be recalled", "極秘", ("NZL",))
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        jpn.controls.recall(jpn.people.as_person("officer"), obj["id"], reason="at risk")
        assert deliver(jpn, "NZL") == 1  # NZL destroys its copy and queues its receipt
        (receipt,) = [n for n in nzl.store.notices() if n.kind == "destroyed"]
        # the originator's event cannot be appended; then the recall cannot be marked
        # destroyed, after the receipt and the event were kept: each time nothing is
        for refused in ({"table": "audit_events", "when": "NEW.kind = 'destroy'"},
                        {"table": "recalls", "update_of": "destroyed"}):
            with refusing(jpn.store, **refused), pytest.raises(FederationError):
                deliver(nzl, "JPN")
            (recall,) = jpn.controls.recalls()
            assert recall.destroyed is None and recall.receipt is None, refused
            assert jpn.store.notice(receipt.notice_id) is None, refused
            assert events(jpn, "destroy") == [], refused
        assert deliver(nzl, "JPN") == 1
        assert deliver(nzl, "JPN") == 0
    (recall,) = jpn.controls.recalls()
    assert recall.destroyed is not None and recall.receipt == receipt.body
    (event,) = events(jpn, "destroy")
    destroyed = json.loads(receipt.body)["notice"]
    assert without_at(event) == {
        "v": 2, "node": "JPN", "kind": "destroy", "party": "NZL", "actor": "NZL",
        "originator": "JPN",
        "objects": [[obj["id"], version] for version, _ in destroyed["destroyed"]],
        "notice": destroyed["id"], "direction": "in", "seq": place(jpn, "destroy")}
    proven(jpn)
    proven(nzl)
