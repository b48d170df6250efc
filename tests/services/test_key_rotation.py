"""Key rotation: a retired key signs no new history, its private half is not kept, and a
rotation is whole or not at all at both ends (docs/audit.md, "Keys and rotation";
docs/federation.md, "Key rotation"). Real nodes, real keys, real SQLite or PostgreSQL;
failures inside a transaction come from a trigger made through the store's connection."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_federation import PW, people, publish, push

from intelpact.config import staged
from intelpact.crypto.checkpoint import format_checkpoint, sign_note
from intelpact.crypto.keys import (
    key_id,
    load_signing_key,
    public_key_b64,
    public_raw,
    write_private_file,
)
from intelpact.crypto.merkle import consistency_proof, leaf_hash
from intelpact.crypto.merkle import root as merkle_root
from intelpact.crypto.signing import SIGNATURES_EXTENSION_ID
from intelpact.interfaces.cli import main
from intelpact.model import national_marking
from intelpact.services.audit import AuditError, encode_hash
from intelpact.services.courier import Courier
from intelpact.services.federation import (
    FederationError,
    KeyRetired,
    ProofNeeded,
    SignedRequest,
    make_card,
    sign_payload,
    sign_request,
)
from intelpact.services.node import Node, NodeError
from intelpact.services.publish import MarkingRequest
from intelpact.store import Store
from intelpact.store.base import AuditFilter, Notice, timestamp, utc_now
from intelpact.store.sqlite import SQLiteStore

from helpers import indicator, make_node, pin_each_other, serving, serving_federation

TAXII = "application/taxii+json;version=2.1"
KEYS = "/federation/keys"


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _sql(store: Store, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run ``sql`` (with ``?`` placeholders) straight on ``store``'s database: what an
    intruder with the database, or a failing disk, does."""
    if isinstance(store, SQLiteStore):
        store._conn().execute(sql, params)  # noqa: SLF001
    else:
        with store._pool.connection() as conn:  # type: ignore[attr-defined]  # noqa: SLF001
            conn.execute(sql.replace("?", "%s"), params)


def _fail_key_rotate_events(store: Store) -> None:
    """A real failure at the end of a rotation's transaction: the database refuses to
    append its ``key-rotate`` event (a trigger)."""
    if isinstance(store, SQLiteStore):
        _sql(store, "CREATE TRIGGER refuse_rotation BEFORE INSERT ON audit_events "
             "WHEN NEW.kind = 'key-rotate' BEGIN SELECT RAISE(ABORT, 'the disk failed'); END")
    else:
        _sql(store, "CREATE FUNCTION refuse_rotation() RETURNS trigger LANGUAGE plpgsql AS "
             "$$ BEGIN RAISE EXCEPTION 'the disk failed'; END $$")
        _sql(store, "CREATE TRIGGER refuse_rotation BEFORE INSERT ON audit_events FOR EACH "
             "ROW WHEN (NEW.kind = 'key-rotate') EXECUTE FUNCTION refuse_rotation()")


def _heal(store: Store) -> None:
    _sql(store, "DROP TRIGGER refuse_rotation" + ("" if isinstance(store, SQLiteStore)
                                                  else " ON audit_events"))


def _gossip(node: Node, party: str) -> int:
    with Courier(node) as courier:
        return courier.gossip_once(party)


def _verify(node: Node) -> tuple[str, ...]:
    return node.audit.verify().problems


def _key_rotate(node: Node) -> dict[str, Any]:
    (event,) = node.store.find_audit(AuditFilter(kinds=("key-rotate",)))
    return dict(json.loads(event.body))


def test_a_retired_key_signs_nothing_past_its_final_checkpoint(
        jpn_nzl: tuple[Node, Node]) -> None:
    """The old key's final checkpoint bounds it, here and at the partner, which witnesses
    that checkpoint (with a proof from the one it held, asked for by a 409). Then whoever
    holds the old key re-signs a longer log with it: `audit verify` here, the partner's
    gossip and a compromise history there refuse it, with the reason, and the partner
    raises the retired-key alert; the final checkpoint itself is still accepted."""
    jpn, nzl = jpn_nzl
    publish(jpn, "before the rotation", "秘", ("NZL",))
    old = jpn.signing_key
    old_id = jpn.identity.key_id
    with serving_federation(jpn), serving_federation(nzl):
        push(jpn, "NZL")
        held = _gossip(nzl, "JPN")  # NZL holds a checkpoint of JPN's log
        publish(jpn, "after the gossip", "秘", ("NZL",))  # which grows past it
        new_id = jpn.rotate_key()
        bound = jpn.store.retired_keys("JPN")[old_id]
        assert 0 < held < bound
        push(jpn, "NZL")  # the announcement first: asked again with a proof, then taken
        assert nzl.federation.peers()["JPN"].key_id == new_id
    assert jpn.store.party_keys("JPN")[new_id] == public_key_b64(jpn.signing_key)
    assert nzl.store.retired_keys("JPN") == {old_id: bound}
    assert bound in [h[0] for h in nzl.store.partner_checkpoints("JPN")]  # witnessed
    assert {k: _key_rotate(jpn)[k] for k in ("old_key_id", "new_key_id", "last_size")} == {
        "old_key_id": old_id, "new_key_id": new_id, "last_size": bound}
    theirs = _key_rotate(nzl)
    assert (theirs["party"], theirs["last_size"], theirs["announced"]) == ("JPN", bound, True)
    assert _verify(jpn) == ()  # the old key's checkpoints, all within its bound, verify

    # the thief holds the old key: a longer log signed with it, past its bound
    for i in range(3):
        jpn.audit.record(jpn.audit.event("login-failure", name=f"intruder{i}"))
    size, root = jpn.audit.integrate()
    origin = jpn.audit.origin
    forged = sign_note(format_checkpoint(origin, size, root), origin, old)
    why = f"signed by retired key {old_id}, which signed nothing past size {bound}"
    proof = [encode_hash(h) for h in jpn.audit.tree.consistency(bound, size)]
    with pytest.raises(AuditError, match=why):  # gossip, a partner audit's answer
        nzl.audit.witness("JPN", nzl.federation.log_keys("JPN"),
                          {"checkpoint": forged, "consistency": {"from": bound,
                                                                 "proof": proof}})
    assert [a[1] for a in nzl.store.alerts()] == ["retired-key"]
    assert size not in [h[0] for h in nzl.store.partner_checkpoints("JPN")]
    with pytest.raises(AuditError, match=why):  # a compromise report's access history
        nzl.audit.check_history("JPN", nzl.federation.log_keys("JPN"),
                                {"checkpoint": forged, "events": []}, ["x"], "NZL")
    # the same checkpoint met again is not alerted anew (it was, every round, until
    # 2026-12-02: partner_checkpoint raised it without ``once``)
    assert [a[1] for a in nzl.store.alerts()] == ["retired-key"]
    # the old key's final checkpoint, no larger than its bound, is still its own
    final = next(c.note for c in jpn.store.checkpoints() if c.size == bound)
    assert nzl.audit.witness("JPN", nzl.federation.log_keys("JPN"),
                             {"checkpoint": final})[0] == bound
    # here: the new key's checkpoints past the bound replaced by the thief's
    _sql(jpn.store, "DELETE FROM audit_checkpoints WHERE size > ?", (bound,))
    _sql(jpn.store, "INSERT INTO audit_checkpoints (size, note, signed) VALUES (?, ?, ?)",
         (size, forged, timestamp(utc_now())))
    problems = _verify(jpn)
    assert len(problems) == 1 and problems[0].startswith(f"checkpoint of size {size} ")
    assert problems[0].endswith(why)


def test_the_retired_private_key_is_not_kept(tmp_path: Path) -> None:
    jpn = make_node(tmp_path / "jpn", "JPN")
    path = jpn.config.signing_key
    old = jpn.signing_key
    old_id = jpn.identity.key_id
    new_id = jpn.rotate_key()
    assert key_id(public_raw(load_signing_key(path))) == new_id == jpn.identity.key_id
    assert not list(path.parent.glob("retired-*")) and not staged(path).exists()
    assert jpn.store.party_keys("JPN")[old_id] == public_key_b64(old)  # its public half
    jpn.close()
    # the key file an older intelpact kept for each retired key is removed on opening
    legacy = path.parent / f"retired-{old_id}.pem"
    write_private_file(legacy, _pem(old))
    Node.open(jpn.config.dir).close()
    assert not legacy.exists()
    # nor does the node sign with a retired key put back in its place
    os.replace(path, path.with_name("current.pem"))
    write_private_file(path, _pem(old))
    with pytest.raises(NodeError, match=f"holds key {old_id}, which a key rotation retired"):
        Node.open(jpn.config.dir)
    os.replace(path.with_name("current.pem"), path)
    Node.open(jpn.config.dir).close()


def test_a_process_still_holding_the_retired_key_signs_no_checkpoint_with_it(
        tmp_path: Path) -> None:
    """`serve` opened before `key rotate` ran beside it keeps the old key until restarted:
    its integrator refuses to sign with it (read in the signing transaction), so the
    node never signs a checkpoint its own verify, and its partners, refuse."""
    jpn = make_node(tmp_path / "jpn", "JPN")
    serving = Node.open(jpn.config.dir)
    try:
        old_id = serving.identity.key_id
        jpn.rotate_key()
        serving.audit.record(serving.audit.event("login-failure", name="someone"))
        with pytest.raises(AuditError, match=f"signing key {old_id} was retired") as refused:
            serving.audit.checkpoint()
        assert "restart" in (refused.value.hint or "")
        jpn.audit.checkpoint()  # the new key signs it
        assert _verify(jpn) == ()
    finally:
        serving.close()
        jpn.close()


def test_a_process_still_holding_the_retired_key_signs_no_object_with_it(
        jpn_nzl: tuple[Node, Node]) -> None:
    """`serve` opened before `key rotate` ran beside it went on signing new objects with
    the retired key, which partners accept under every key JPN has had. Now whatever it
    would sign that way (an object, its marking-definition, a notice, its card) is
    refused with "this process holds retired key K: restart it", over TAXII and the
    federation listener a 503; nothing of a refused publication is stored or learnt.
    A process opened after the rotation signs with the new key."""
    jpn, nzl = jpn_nzl
    shared = publish(jpn, "shared before the rotation", "秘", ("NZL",))
    with serving_federation(nzl):
        push(jpn, "NZL")
    stale = Node.open(jpn.config.dir)  # `serve`, started before the rotation
    try:
        old_id = stale.identity.key_id
        new_id = jpn.rotate_key()
        why = f"this process holds retired key {old_id}: restart it"
        cid = stale.default_collection().collection_id
        officer = stale.people.as_person("officer").person
        count, notices = stale.store.count(cid), len(stale.store.notices())
        fresh = national_marking(stale.agreement, "JPN", "極秘", rel_to=["NZL"])
        for marking in (MarkingRequest("極秘", ("NZL",)), MarkingRequest("秘", ("NZL",))):
            # a definition new here (its signature), then one held (the objects')
            with pytest.raises(KeyRetired, match=why) as refused:
                stale.publisher.publish(officer, cid, [indicator("after")], marking=marking)
            assert "restart" in (refused.value.hint or "")
        assert stale.store.count(cid) == count and stale.store.marking(fresh["id"]) is None
        assert not stale.markings.known(fresh["id"])
        with pytest.raises(KeyRetired, match=why):
            stale.sign(indicator("signed by hand"))
        with pytest.raises(KeyRetired, match=why):  # a notice partners verify under any key
            stale.controls.recall(None, shared["id"], reason="a stale process")
        assert len(stale.store.notices()) == notices
        with serving(stale) as url:
            r = httpx.post(f"{url}/intel/collections/{cid}/objects/", auth=("officer", PW),
                           json={"objects": [indicator("over TAXII")]},
                           headers={"Accept": TAXII, "Content-Type": TAXII})
        assert r.status_code == 503 and why in r.json()["description"], r.text
        with serving_federation(stale) as url, httpx.Client(verify=_tls(nzl, jpn)) as client:
            r = client.get(url + "/federation/card")
        assert r.status_code == 503 and why in r.json()["description"], r.text
        assert stale.store.count(cid) == count
    finally:
        stale.close()
    obj = indicator("published by a process opened after the rotation")
    status = jpn.publisher.publish(jpn.people.as_person("officer").person,
                                   jpn.default_collection().collection_id, [obj],
                                   marking=MarkingRequest("秘", ("NZL",)))
    assert status.body["failure_count"] == 0, status.body
    (row,) = jpn.store.held([obj["id"]])
    assert [s["thumbprint"] for s in json.loads(row.body)["extensions"][
        SIGNATURES_EXTENSION_ID]["signatures"]] == [new_id]


def _tls(caller: Node, callee: Node) -> ssl.SSLContext:
    """The client side of mutual TLS: ``caller``'s certificate, trusting ``callee``'s."""
    ctx = ssl.create_default_context(cadata=callee.identity.tls_cert_pem)
    ctx.load_cert_chain(str(caller.config.tls_cert), str(caller.config.tls_key))
    return ctx


def test_a_rotation_whose_transaction_fails_leaves_the_old_key_in_force(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, _ = jpn_nzl
    path = jpn.config.signing_key
    old_id = jpn.identity.key_id
    checkpoints = jpn.store.checkpoints()
    _fail_key_rotate_events(jpn.store)
    with pytest.raises(Exception, match="the disk failed"):
        jpn.rotate_key()
    # nothing of it: the old key in force, in the file and in memory
    assert jpn.identity.key_id == old_id == key_id(public_raw(load_signing_key(path)))
    assert not staged(path).exists() and jpn.store.retired_keys("JPN") == {}
    assert set(jpn.store.party_keys("JPN")) == set()
    assert jpn.store.checkpoints() == checkpoints  # the final checkpoint rolled back too
    assert jpn.store.undelivered_announcements("NZL") == []
    assert not jpn.store.find_audit(AuditFilter(kinds=("key-rotate",)))
    jpn.audit.checkpoint()
    assert _verify(jpn) == ()
    # a crash after the new key was staged, before the transaction: the staged key,
    # which the store never recorded, is removed when the node is next opened
    write_private_file(staged(path), _pem(Ed25519PrivateKey.generate()))
    reopened = Node.open(jpn.config.dir)
    try:
        assert reopened.identity.key_id == old_id and not staged(path).exists()
    finally:
        reopened.close()
    _heal(jpn.store)
    new_id = jpn.rotate_key()
    assert jpn.store.retired_keys("JPN") == {old_id: jpn.store.checkpoints()[-1].size}
    assert [json.loads(b)["new_key_id"]
            for _, b in jpn.store.undelivered_announcements("NZL")] == [new_id]


def test_a_rotation_cut_short_after_it_was_recorded_is_finished_when_the_node_opens(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped between the transaction and the key file's swap: the store says the new
    key is current and the announcement is queued; opening the node puts the staged key
    in place, so it signs with it and the partner takes the announcement."""
    jpn, nzl = jpn_nzl
    path = jpn.config.signing_key
    old_id = jpn.identity.key_id
    real = os.replace

    def killed(src: Any, dst: Any) -> None:
        if Path(src) == staged(path):
            raise OSError("the process was killed")
        real(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(OSError, match="killed"):
        jpn.rotate_key()
    monkeypatch.undo()
    (announced,) = [json.loads(b) for _, b in jpn.store.undelivered_announcements("NZL")]
    new_id = announced["new_key_id"]
    assert staged(path).exists() and key_id(public_raw(load_signing_key(path))) == old_id
    assert jpn.store.retired_keys("JPN") == {old_id: announced["last_size"]}
    with pytest.raises(AuditError, match="retired"):  # this process holds the old key
        jpn.audit.checkpoint()
    # `audit verify` writes nothing: it reads the key in force as the store records it,
    # and leaves the rotation for the next open to finish
    verified = CliRunner().invoke(main, ["audit", "verify", str(jpn.config.dir)])
    assert verified.exit_code == 0, verified.output
    assert staged(path).exists() and key_id(public_raw(load_signing_key(path))) == old_id
    reopened = Node.open(jpn.config.dir)
    try:
        assert reopened.identity.key_id == new_id and not staged(path).exists()
        assert key_id(public_raw(load_signing_key(path))) == new_id
        reopened.audit.checkpoint()
        assert _verify(reopened) == ()
        with serving_federation(nzl):
            push(reopened, "NZL")
        assert nzl.federation.peers()["JPN"].key_id == new_id
        assert nzl.store.retired_keys("JPN") == {old_id: announced["last_size"]}
    finally:
        reopened.close()


def test_a_partner_takes_a_rotation_whole_or_not_at_all(jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    old_id = jpn.identity.key_id
    new_id = jpn.rotate_key()
    _fail_key_rotate_events(nzl.store)
    with serving_federation(nzl):
        with pytest.raises(FederationError, match="refused the key rotation: 503 the audit "
                           "log could not record: the disk failed"):
            push(jpn, "NZL")
        assert nzl.federation.peers()["JPN"].key_id == old_id
        assert set(nzl.store.party_keys("JPN")) == {old_id}
        assert nzl.store.retired_keys("JPN") == {} and nzl.store.partner_checkpoints("JPN") == []
        assert not nzl.store.find_audit(AuditFilter(kinds=("key-rotate",)))
        _heal(nzl.store)
        push(jpn, "NZL")  # delivered again: taken
    assert nzl.federation.peers()["JPN"].key_id == new_id
    bound = jpn.store.retired_keys("JPN")[old_id]
    assert nzl.store.retired_keys("JPN") == {old_id: bound}
    assert [h[0] for h in nzl.store.partner_checkpoints("JPN")] == [bound]
    assert _key_rotate(nzl)["new_key_id"] == new_id


def _witnessed(jpn: Node, nzl: Node) -> int:
    """NZL witnesses JPN's latest checkpoint (as gossip does); returns its size."""
    return nzl.audit.witness("JPN", nzl.federation.log_keys("JPN"),
                             jpn.audit.for_partner("NZL", limit=0))[0]


def test_an_announcement_naming_no_bound_retires_the_old_key_at_the_checkpoints_held(
        jpn_nzl: tuple[Node, Node]) -> None:
    """An older intelpact's announcement carries no bound: the old key is bounded by what
    it is known to have signed, the largest checkpoint of the sender's log held. Treating
    it as unbounded would leave the hole open; refusing would cut off a partner that has
    not upgraded."""
    jpn, nzl = jpn_nzl
    held = _witnessed(jpn, nzl)
    old, new = jpn.signing_key, Ed25519PrivateKey.generate()
    old_id, new_id = jpn.identity.key_id, key_id(public_raw(new))
    body = {"intelpact_key_rotation": 1, "party": "JPN", "old_key_id": old_id,
            "new_key_id": new_id, "new_public_key": public_key_b64(new),
            "issued": timestamp(utc_now())}
    announcement = {**body, "signature_old": sign_payload(old, body),
                    "signature_new": sign_payload(new, body)}
    assert nzl.federation.accept_rotation("JPN", announcement) == new_id
    assert nzl.store.retired_keys("JPN") == {old_id: held}
    event = _key_rotate(nzl)
    assert (event["last_size"], event["announced"]) == (held, False)
    assert nzl.federation.accept_rotation("JPN", announcement) == new_id  # again: nothing
    assert len(nzl.store.find_audit(AuditFilter(kinds=("key-rotate",)))) == 1


def test_a_final_checkpoint_that_does_not_extend_the_one_held_is_refused_with_an_alert(
        jpn_nzl: tuple[Node, Node]) -> None:
    """A final checkpoint of a forked log (its first events, then others), signed with the
    old key: asked for a proof from the checkpoint held (not a refusal), then, with a
    proof that does not hold, refused. The proof is outside the signed announcement: in
    a request JPN did not sign it is no evidence against JPN (refused, no alert); in one
    signed by JPN's new key it is a rewritten history, with the alert, which keeps the
    signed request. The partner keeps the old key pinned."""
    jpn, nzl = jpn_nzl
    held = _witnessed(jpn, nzl)
    old, new = jpn.signing_key, Ed25519PrivateKey.generate()
    leaves = [leaf_hash(e.body.encode()) for e in jpn.store.audit_events(0, held - 1)]
    leaves += [leaf_hash(f"forged {i}".encode()) for i in range(4)]
    origin = jpn.audit.origin
    final = sign_note(format_checkpoint(origin, len(leaves), merkle_root(leaves)), origin, old)
    announcement = jpn.federation.announce_rotation(old, new, len(leaves), final)
    with pytest.raises(ProofNeeded) as asked:
        nzl.federation.accept_rotation("JPN", announcement)
    assert asked.value.held == held and not nzl.store.alerts()
    announcement["consistency"] = {
        "from": held, "proof": [encode_hash(h) for h in consistency_proof(held, leaves)]}
    body = json.dumps(announcement).encode()

    def signed(key: Ed25519PrivateKey) -> SignedRequest:
        headers = sign_request(dataclasses.replace(jpn.identity, key=key), "POST", KEYS, body)
        return SignedRequest({k.lower(): v for k, v in headers.items()}, "POST", KEYS, body)

    # no request, an unsigned one, one signed by a key that is not JPN's
    for unsigned in (None, SignedRequest({}, "POST", KEYS, body),
                     signed(Ed25519PrivateKey.generate())):
        with pytest.raises(FederationError, match="is no evidence against JPN: the rotation "
                           "is refused, with no alert"):
            nzl.federation.accept_rotation("JPN", announcement, unsigned)
    assert not nzl.store.alerts()
    request = signed(new)
    with pytest.raises(FederationError, match="has rewritten its audit history"):
        nzl.federation.accept_rotation("JPN", announcement, request)
    assert [a[1] for a in nzl.store.alerts()] == ["history-rewritten"]
    assert nzl.federation.peers()["JPN"].key_id == jpn.identity.key_id
    assert nzl.store.retired_keys("JPN") == {}
    # the alert keeps what shows it: the final checkpoint, and the request JPN signed
    (alert,) = [json.loads(e.body) for e in nzl.store.find_audit(AuditFilter(kinds=("alert",)))]
    kept = alert["request"]
    assert alert["note"] == final and json.loads(kept["body"]) == announcement
    again = SignedRequest({"x-intelpact-date": kept["date"],
                           "x-intelpact-agreement": kept["agreement"],
                           "x-intelpact-signature": kept["signature"]},
                          kept["method"], kept["target"], kept["body"].encode())
    assert again.signer({key_id(public_raw(new)): new.public_key()}) == key_id(public_raw(new))
    # a final checkpoint smaller than one held: the old key signed past its "final" one
    small = jpn.federation.announce_rotation(old, new, 1, sign_note(
        format_checkpoint(origin, 1, leaves[0]), origin, old))
    with pytest.raises(FederationError, match="its log shrank"):
        nzl.federation.accept_rotation("JPN", small)  # two checkpoints it signed: no proof
    assert [a[1] for a in nzl.store.alerts()] == ["history-rewritten"] * 2


def test_a_partner_cannot_deliver_another_partners_rotation(tmp_path: Path) -> None:
    """AUS, a pinned partner, posts JPN's genuine announcement to NZL as if from JPN (the
    sender was the X-Intelpact-Party header), with a bogus consistency proof outside its
    signed body: NZL raised history-rewritten against JPN and refused the rotation. Now
    the sender is the partner whose certificate the client presented: refused as AUS's,
    audited, no alert; JPN's own delivery is taken."""
    nodes = [make_node(tmp_path / p.lower(), p, "jpn-nzl-aus.toml") for p in ("JPN", "NZL", "AUS")]
    jpn, nzl, aus = nodes
    try:
        for node in nodes:
            people(node)
        pin_each_other(*nodes)
        with serving_federation(jpn), serving_federation(nzl):
            publish(jpn, "before", "秘", ("NZL",))
            push(jpn, "NZL")
            held = _gossip(nzl, "JPN")  # NZL holds a checkpoint of JPN's log
            publish(jpn, "after", "秘", ("NZL",))
            old_id, new_id = jpn.identity.key_id, jpn.rotate_key()
            ((_, body),) = jpn.store.undelivered_announcements("AUS")  # what AUS is sent
            announcement = json.loads(body)
            assert 0 < held < announcement["last_size"]
            announcement["consistency"] = {"from": held, "proof": []}
            sent = json.dumps(announcement).encode()
            with Courier(aus) as courier:
                peer = aus.federation.peers()["NZL"]
                headers = {"Content-Type": TAXII, "X-Intelpact-Party": "JPN",
                           "X-Intelpact-Agreement": aus.agreement.content_hash}
                response = courier._client(peer).post(  # noqa: SLF001
                    peer.url + "/federation/keys", content=sent, headers=headers)
            assert response.status_code == 403, response.text
            assert response.json()["description"] == (
                "the request says it is from JPN, but the client's TLS certificate is AUS's")
            assert nzl.store.alerts() == [] and nzl.federation.peers()["JPN"].key_id == old_id
            (refused,) = [json.loads(e.body)
                          for e in nzl.store.find_audit(AuditFilter(kinds=("refuse",)))]
            assert (refused["party"], refused["claimed"], refused["request"]) == (
                "AUS", "JPN", "POST /federation/keys")
            push(jpn, "NZL")  # from JPN itself: with a proof from what NZL holds, taken
        assert nzl.federation.peers()["JPN"].key_id == new_id and nzl.store.alerts() == []
    finally:
        for node in nodes:
            node.close()


def test_a_forged_key_rotation_announcement_is_audited_as_refused(
        jpn_nzl: list[Node]) -> None:
    """A partner sent something this node refused is a `refuse` event (docs/audit.md,
    "What is recorded"). A key-rotation announcement refused at /federation/keys (not
    signed by the pinned key, its new key not signing it, a wrong agreement hash) was
    answered 403 and recorded nowhere: an attempt to replace a partner's pinned signing
    key with one an attacker holds left no trace in the log; nor did a body that is not
    JSON on the inbox, notices and compromise routes. Each is now a `refuse` event,
    sampled per partner and what was wrong."""
    jpn, nzl = jpn_nzl
    before = jpn.store.audit_size()
    with serving_federation(jpn), Courier(nzl) as courier:
        peer = nzl.federation.peers()["JPN"]
        client = courier._client(peer)  # noqa: SLF001
        for path in ("/federation/collections/inbox/objects/", "/federation/notices",
                     "/federation/compromise"):
            r = client.post(peer.url + path, content=b"{not json",
                            headers={**sign_request(nzl.identity, "POST", path, b"{not json"),
                                     "Content-Type": TAXII})
            assert r.status_code == 400 and r.json()["title"] == "Malformed JSON", r.text
        nzl.rotate_key()
        ((_, body),) = nzl.store.undelivered_announcements("JPN")
        announcement = json.loads(body)
        forged = dict(announcement, signature_old=announcement["signature_new"])
        response = client.post(
            peer.url + "/federation/keys", content=json.dumps(forged).encode(),
            headers={"Content-Type": TAXII, "X-Intelpact-Agreement": nzl.agreement.content_hash})
        assert response.status_code == 403, response.text
        assert "not signed by the pinned (old) key" in response.json()["description"]
    assert jpn.federation.peers()["NZL"].key_id != nzl.identity.key_id  # not pinned
    jpn.federation.refusals.flush()
    refused = [json.loads(e.body) for e in jpn.store.audit_events(before, jpn.store.audit_size())
               if e.kind == "refuse"]
    assert {e["party"] for e in refused} == {"NZL"}
    (rotation,) = [e for e in refused if e["request"] == "POST /federation/keys"]
    assert "not signed by the pinned (old) key" in rotation["reason"]
    # the three bodies not JSON: one sample (the first, then the count with the latest)
    assert [(e["request"], e["refusals"]) for e in refused if e is not rotation] == [
        ("POST /federation/collections/inbox/objects/", 1), ("POST /federation/compromise", 2)]


def test_a_notice_receipt_signed_by_a_retired_key_is_refused(
        jpn_nzl: tuple[Node, Node]) -> None:
    """A receipt is signed as it is answered, never queued: by the partner's pinned key,
    not one it rotated out (as object and compromise receipts already were)."""
    jpn, nzl = jpn_nzl
    old = nzl.signing_key
    with serving_federation(jpn):
        nzl.rotate_key()
        push(nzl, "JPN")
    body = json.dumps({"notice": {"id": "n1"}})
    notice = Notice("n1", "out", "NZL", "recall", "indicator--x", body, "t")

    def receipt(key: Ed25519PrivateKey) -> dict[str, Any]:
        signed = {"receiver": "NZL", "sender": "JPN", "notice": "n1",
                  "sha256": hashlib.sha256(body.encode()).hexdigest()}
        return {"receipt": signed, "key_id": key_id(public_raw(key)),
                "signature": sign_payload(key, signed)}

    assert jpn.controls.check_receipt("NZL", notice, receipt(nzl.signing_key))
    with pytest.raises(FederationError, match="not signed by its pinned key"):
        jpn.controls.check_receipt("NZL", notice, receipt(old))


def test_the_command_says_at_what_size_the_old_key_is_retired(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, _ = jpn_nzl
    old_id = jpn.identity.key_id
    result = CliRunner().invoke(main, ["key", "rotate", str(jpn.config.dir)])
    assert result.exit_code == 0, result.output
    bound = jpn.store.retired_keys("JPN")[old_id]
    new_id = key_id(public_raw(load_signing_key(jpn.config.signing_key)))
    assert " ".join(result.output.split()) == (
        f"Rotated the signing key {old_id} -> {new_id}; {old_id} is retired at the audit "
        f"checkpoint of size {bound}; announcement queued for NZL")


def test_a_card_carrying_a_key_the_partner_retired_is_not_pinned_again(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: a partner's card made before it rotated its key (an old copy, kept in
    an archive or sent again by mistake) is still a valid card, and pinning it replaced
    the partner's current key by the retired one: every request the partner signed with
    its current key was refused, and what the retired key signs (a consent token, from a
    backup that leaked, say) passed for the partner's current word. A retired key is
    never pinned again."""
    jpn, nzl = jpn_nzl
    old_card = make_card(jpn.identity)
    old_id = jpn.identity.key_id
    new_id = jpn.rotate_key()
    with serving_federation(nzl):
        push(jpn, "NZL")
    assert nzl.federation.peers()["JPN"].key_id == new_id
    with pytest.raises(FederationError, match=f"JPN retired key {old_id}"):
        nzl.federation.add_peer(old_card)
    assert nzl.federation.peers()["JPN"].key_id == new_id
    # the current card is pinned again as ever
    assert nzl.federation.add_peer(make_card(jpn.identity))[0].key_id == new_id
