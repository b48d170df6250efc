"""Two and three national nodes on 127.0.0.1, over real mutual TLS, with real keys."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from intelpact.crypto.signing import SIGNATURES_EXTENSION_ID, sign_object
from intelpact.maritime.nmea import Position
from intelpact.maritime.vessels import AIS_EXTENSION_ID, Track, sighting_object
from intelpact.model import national_marking
from intelpact.model.markings import EXTENSION_ID
from intelpact.services import courier as courier_module
from intelpact.services.courier import BadAnswer, Courier
from intelpact.services.federation import FederationError, Received, make_card, sign_request
from intelpact.services.node import Node
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import AuditFilter, Query

from helpers import DEEP, indicator, make_node, partner_answers, pin_each_other, serving_federation
from served import wait_for

PW = "federation-test-pw"


def people(node: Node) -> None:
    party = node.party
    top = {"JPN": "機密", "NZL": "TOP SECRET", "AUS": "TOP SECRET"}[party]
    eyes = {"JPN": ["JPNEO"], "NZL": ["NZEO"], "AUS": ["AUSTEO"]}[party]
    eyes = [c for c in eyes if c in node.agreement.caveats]
    node.people.add("officer", party=party, clearance=top, caveats=eyes,
                    communities=list(node.agreement.communities),
                    roles=["analyst", "publisher", "security-officer"], password=PW)


def pair(a: Node, b: Node) -> None:
    pin_each_other(a, b)


def push(node: Node, party: str) -> int:
    with Courier(node) as courier:
        return courier.push_all(party)


def pull(node: Node, party: str) -> int:
    with Courier(node) as courier:
        return courier.pull_once(party)


def visible_ids(node: Node) -> set[str]:
    who = node.people.as_person("officer")
    _, rows = node.find(who, node.default_collection().collection_id,
                        Query(versions=("all",), limit=10_000))
    return {row.object_id for row, _ in rows}


def publish(node: Node, name: str, level: str, rel: tuple[str, ...],
            caveats: tuple[str, ...] = ()) -> dict:
    obj = indicator(name)
    who = node.people.as_person("officer").person
    status = node.publisher.publish(who, node.default_collection().collection_id, [obj],
                                    marking=MarkingRequest(level, rel, caveats))
    assert status.body["failure_count"] == 0, status.body
    return obj


def test_only_what_the_agreement_allows_crosses(jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    crosses = [publish(jpn, "secret for NZ", "極秘", ("NZL",)),
               publish(jpn, "unclassified", "指定なし", ("NZL",))]
    stays = [publish(jpn, "japan only", "極秘", ()),
             publish(jpn, "jpneo", "機密", (), ("JPNEO",)),
             publish(jpn, "not covered", "取扱注意", ("NZL",))]
    nz_stays = publish(nzl, "nz eyes only", "SECRET", (), ("NZEO",))
    nz_crosses = publish(nzl, "for japan", "RESTRICTED", ("JPN",))
    with serving_federation(jpn), serving_federation(nzl):
        assert push(jpn, "NZL") >= 2
        assert push(nzl, "JPN") >= 1
    got_nz = visible_ids(nzl)
    assert {o["id"] for o in crosses} <= got_nz
    assert not {o["id"] for o in stays} & got_nz
    got_jp = visible_ids(jpn)
    assert nz_crosses["id"] in got_jp and nz_stays["id"] not in got_jp
    # stored as received, unchanged, and shown in the receiver's own words
    nz_person = nzl.people.as_person("officer")
    (stored,) = nzl.get(nz_person, crosses[0]["id"])
    assert SIGNATURES_EXTENSION_ID in stored["extensions"]
    from intelpact.model import banner
    labels = nzl.markings.label(stored)
    assert banner(labels.banner, nzl.agreement, "NZL") == "SECRET // REL TO JPN, NZL"
    # the originator's dissemination record, with verified receipts
    records = {(d.party, d.object_id) for d in jpn.store.disseminations() if d.receipt_id}
    assert {("NZL", o["id"]) for o in crosses} <= records
    assert not any(oid == o["id"] for _, oid in records for o in stays)


def test_a_push_tried_again_records_its_release_once(jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: each push wrote its entries' release events before sending, so a
    partner down for an hour (tried about 120 times) left 120 release events per object,
    of which one went. The event is still durable before the entry first leaves; a push
    tried again writes none."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "pushed while NZ is down", "極秘", ("NZL",))

    def releases() -> list[Any]:
        return [json.loads(e.body) for e in jpn.audit.find(
            AuditFilter(kinds=("release",), object_id=obj["id"]))]

    for _ in range(3):
        with pytest.raises(FederationError, match="NZL unreachable"):
            push(jpn, "NZL")
    (event,) = releases()  # durable before the first try
    assert event["party"] == "NZL" and event["how"] == "push"
    with serving_federation(jpn), serving_federation(nzl):
        assert push(jpn, "NZL") >= 1
    assert obj["id"] in visible_ids(nzl) and len(releases()) == 1


def test_a_partner_s_answer_is_read_only_within_max_content_length(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: the courier read a partner's answer whole, however large (a pinned
    partner answering with gigabytes would exhaust this node's memory), and a pull of a
    long backlog recursed a page at a time (a RecursionError past about a thousand
    pages). Now an answer over this node's max_content_length is not read; a pull asks
    for a page too large again at half as many objects, page after page in a loop; an
    object over the limit stops the pull with the reason."""
    jpn, nzl = jpn_nzl
    who = jpn.people.as_person("officer").person
    sent = [indicator(f"pulled in small pages {n}", description="x" * 2000) for n in range(12)]
    status = jpn.publisher.publish(who, jpn.default_collection().collection_id, sent,
                                   marking=MarkingRequest("極秘", ("NZL",)))
    assert status.body["failure_count"] == 0, status.body
    with serving_federation(jpn):
        nzl.config = dataclasses.replace(nzl.config, max_content_length=1024)
        with pytest.raises(FederationError, match="JPN's answer to GET /federation/"
                           "collections/outbox/objects/ is over 1,024 bytes"):
            pull(nzl, "JPN")  # not one object fits
        assert not {o["id"] for o in sent} & visible_ids(nzl)
        nzl.config = dataclasses.replace(nzl.config, max_content_length=12 * 1024)
        assert pull(nzl, "JPN") >= len(sent)  # pages of a few objects, not one page of 12
    assert {o["id"] for o in sent} <= visible_ids(nzl)


def test_a_push_too_large_for_the_partner_goes_in_smaller_envelopes(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: a push is 500 objects whatever their size, and a partner answers an
    envelope over its max_content_length 413. That was counted as a refusal of every
    object in it: after 20 tries all 500 were given up, never pushed again, though each
    fits. Now an envelope too large is sent again with half as many objects (as a pull
    asks for a page too large), and only one object over the limit on its own is refused.
    A 408 (the envelope did not arrive within the partner's time limit) is not a refusal
    either."""
    jpn, nzl = jpn_nzl
    who = jpn.people.as_person("officer").person
    sent = [indicator(f"pushed in small envelopes {n}", description="x" * 2000)
            for n in range(6)]
    status = jpn.publisher.publish(who, jpn.default_collection().collection_id, sent,
                                   marking=MarkingRequest("極秘", ("NZL",)))
    assert status.body["failure_count"] == 0, status.body
    nzl.config = dataclasses.replace(nzl.config, max_content_length=8 * 1024)
    with serving_federation(nzl):
        assert push(jpn, "NZL") >= len(sent)
    assert {o["id"] for o in sent} <= visible_ids(nzl)
    assert jpn.store.pending("NZL", 100) == []
    alone = publish(jpn, "too large on its own", "極秘", ("NZL",))
    nzl.config = dataclasses.replace(nzl.config, max_content_length=512)
    with serving_federation(nzl), pytest.raises(FederationError, match="413"):
        push(jpn, "NZL")  # refused, and counted: it will never fit
    assert alone["id"] not in visible_ids(nzl)
    timeout = httpx.Response(408, json={"title": "Request Timeout", "http_status": "408"})
    assert not courier_module._refusal(timeout)


def test_a_pull_stops_on_a_page_that_says_more_without_moving_on(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """A partner whose outbox answers the same page, saying there is more, for ever (its
    store broken here: every page from the start): the pull takes the page once and
    stops with the reason, rather than asking for ever."""
    jpn, nzl = jpn_nzl
    for n in range(4):
        publish(jpn, f"the same page {n}", "極秘", ("NZL",))
    released_after = jpn.store.released_after
    monkeypatch.setattr(jpn.store, "released_after",
                        lambda party, after, limit: released_after(party, 0, limit))
    with Courier(nzl) as courier, serving_federation(jpn), pytest.raises(
            FederationError, match="JPN's outbox page says there is more, but does not "
            "move on from"):
        courier.pull_once("JPN", limit=2)
    assert nzl.store.pull_cursor("JPN") > 0  # the first page was taken, once


@pytest.mark.parametrize("cursor", ["99999999999999999999", str(2**63), "-1", "1e3", "٣",
                                    " 5", "x"])
def test_a_pull_stops_on_a_cursor_no_store_can_keep(
        jpn_nzl: tuple[Node, Node], cursor: str) -> None:
    """A partner's outbox page whose ``next`` is not a cursor this node's store can keep
    (past its integers, negative, not ASCII digits): the pull stops with the reason, and
    the cursor is where it was, not a database error every round."""
    jpn, nzl = jpn_nzl
    courier = Courier(nzl)
    courier._fetch = lambda peer, target, what: {  # type: ignore[method-assign]
        "objects": [], "more": True, "next": cursor}
    try:
        with pytest.raises(FederationError, match="JPN's outbox page has a 'next' that is "
                           "not a cursor"):
            courier.pull_once("JPN")
    finally:
        courier.stop()
    assert nzl.store.pull_cursor("JPN") == 0


def _released(jpn: Node) -> list[dict]:
    """What JPN's outbox holds for NZL, as a page of it carries it (signed, takeable)."""
    return [json.loads(row.body) for _, row in jpn.store.released_after("NZL", 0, 10)]


@pytest.mark.parametrize(("page", "problem"), [
    (lambda objects: objects, "it is not a JSON object"),
    (lambda objects: {"objects": 5, "more": False}, "its 'objects' is not a list"),
    (lambda objects: {"objects": {"id": objects[0]["id"]}, "more": False},
     "its 'objects' is not a list"),
    (lambda objects: {"objects": objects, "more": "false", "next": "2"},
     "its 'more' is not true or false"),
], ids=["an array", "objects 5", "objects an object", "more a string"])
def test_an_outbox_page_of_the_wrong_shape_stops_the_pull_and_takes_nothing(
        jpn_nzl: tuple[Node, Node], page: Any, problem: str) -> None:
    """A page from JPN's outbox that is not an object, or whose fields are not of the
    types a page's are: the pull stops with the reason (BadAnswer, which serve logs as a
    warning), and nothing of the page is taken, the cursor where it was. Before, an
    array raised AttributeError and objects 5 TypeError (a traceback every round), and a
    "more" of "false" took the objects and asked again."""
    jpn, nzl = jpn_nzl
    publish(jpn, "on a page of the wrong shape", "極秘", ("NZL",))
    objects = _released(jpn)
    courier = Courier(nzl)
    courier._fetch = lambda peer, target, what: page(objects)  # type: ignore[method-assign]
    try:
        with pytest.raises(BadAnswer, match=re.escape(
                f"JPN's answer to the pull is refused: {problem}")):
            courier.pull_once("JPN")
    finally:
        courier.stop()
    assert not {o["id"] for o in objects} & visible_ids(nzl)
    assert nzl.store.pull_cursor("JPN") == 0


def test_an_outbox_page_nested_too_deep_stops_the_pull_with_the_reason(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """JPN answers the pull with a page nested 100,000 deep: read as every answer is
    (jsonio.parse_json), it is refused with the reason, not a RecursionError; the next
    pull, answered as it should be, takes the page."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "behind a page nested too deep", "極秘", ("NZL",))
    with serving_federation(jpn):
        with monkeypatch.context() as patched:
            patched.setattr(Courier, "_request", partner_answers(
                "/federation/collections/outbox/", lambda r: DEEP))
            with pytest.raises(BadAnswer, match="JPN's answer to the pull is refused: "
                               "invalid JSON: nesting is 100000 levels deep"):
                pull(nzl, "JPN")
        assert obj["id"] not in visible_ids(nzl)
        assert pull(nzl, "JPN") >= 1
    assert obj["id"] in visible_ids(nzl)


def test_a_partner_applying_another_agreement_is_refused(tmp_path: Path) -> None:
    jpn = make_node(tmp_path / "jpn", "JPN")
    other = make_node(tmp_path / "nzl", "NZL", agreement="jpn-nzl-aus.toml")
    with pytest.raises(FederationError, match="agreement"):
        jpn.federation.add_peer(make_card(other.identity))
    with pytest.raises(FederationError, match="agreement"):
        other.federation.add_peer(make_card(jpn.identity))
    jpn.close()
    other.close()


def test_tampered_cards_are_refused(jpn_nzl: tuple[Node, Node], tmp_path: Path) -> None:
    jpn, nzl = jpn_nzl
    card = make_card(nzl.identity)
    for key, value in (("url", "https://127.0.0.1:1"), ("party", "AUS"),
                       ("tls_fingerprint", "00" * 32)):
        forged = dict(card, **{key: value})
        with pytest.raises(FederationError):
            jpn.federation.add_peer(forged)
    with pytest.raises(FederationError, match="own party"):
        jpn.federation.add_peer(make_card(jpn.identity))


def test_a_card_whose_url_is_no_https_address_is_refused(jpn_nzl: tuple[Node, Node]) -> None:
    """Partners talk over mutual TLS alone: a card (signed by its node) whose address is
    plain HTTP, or no address at all, was pinned, and the courier then sent the
    partner's objects where that address said, or failed at every round."""
    jpn, nzl = jpn_nzl
    pinned = jpn.federation.peers()[nzl.party].url
    for url in ("http://127.0.0.1:8402", "https://", "ftp://nzl.example:21",
                "https://user:pw@nzl.example:8402", "https://nzl.example:8402/x?y",
                "https://nzl.example:99999", "nzl.example:8402"):
        card = make_card(dataclasses.replace(nzl.identity, url=url))
        with pytest.raises(FederationError, match="address"):
            jpn.federation.add_peer(card)
    assert jpn.federation.peers()[nzl.party].url == pinned  # none replaced the pinned card
    jpn.federation.add_peer(make_card(dataclasses.replace(
        nzl.identity, url="https://[::1]:8402")))  # IPv6, bracketed as URLs write it
    assert jpn.federation.peers()[nzl.party].url == "https://[::1]:8402"


def test_a_partner_that_never_answers_holds_up_no_other(tmp_path: Path) -> None:
    """One courier thread served every partner in turn: a partner that takes the
    connection and never answers (down behind a firewall that accepts, a hung node) held
    every other partner's deliveries for the client's 30 s, at every try. Each partner
    has its lane: while JPN's request to AUS hangs, what JPN publishes for NZL arrives."""
    nodes = [make_node(tmp_path / p.lower(), p, agreement="jpn-nzl-aus.toml")
             for p in ("JPN", "NZL", "AUS")]
    jpn, nzl, aus = nodes
    for node in nodes:
        people(node)
    pair(jpn, nzl)
    pair(jpn, aus)
    hole = socket.socket()  # where AUS's card says its federation listener is
    hole.bind(("127.0.0.1", aus.config.federation_port))
    hole.listen()
    hole.settimeout(20)
    try:
        with serving_federation(nzl), Courier(jpn, push_interval=0.05, interval=0.2) as c:
            c.start()
            publish(jpn, "for both", "極秘", ("NZL", "AUS"))
            held, _ = hole.accept()  # JPN's lane to AUS is in its request, never answered
            with held:
                second = publish(jpn, "for NZL alone", "極秘", ("NZL",))
                wait_for(lambda: second["id"] in visible_ids(nzl), 15,
                         "NZL's delivery while AUS does not answer")
            hole.close()  # before the courier stops: its lane's next try is refused
    finally:
        hole.close()
        for node in nodes:
            node.close()


def test_a_partner_that_never_answers_holds_up_no_other_s_audit_watch(
        tmp_path: Path) -> None:
    """The audit watch read every partner in turn: one that takes the connection and never
    answers held the gossip with every partner after it (AUS sorts before NZL) for the
    client's 30 s, each round, and a fork at NZL went unseen that long. Each partner is
    watched in a thread of its own."""
    nodes = [make_node(tmp_path / p.lower(), p, agreement="jpn-nzl-aus.toml")
             for p in ("JPN", "NZL", "AUS")]
    jpn, nzl, aus = nodes
    pair(jpn, aus)
    pair(jpn, nzl)
    hole = socket.socket()  # AUS's federation listener: connections taken, never answered
    hole.bind(("127.0.0.1", aus.config.federation_port))
    hole.listen()
    try:
        with serving_federation(nzl), Courier(jpn, interval=3600, push_interval=3600,
                                              gossip_interval=0.2) as courier:
            courier.start()
            wait_for(lambda: jpn.store.count_partner_checkpoints("NZL") > 0, 15,
                     "NZL's checkpoint gossiped while AUS does not answer")
            hole.close()  # before the courier stops: its next try is refused
    finally:
        hole.close()
        for node in nodes:
            node.close()


def _post_inbox(sender: Node, receiver: Node, objects: list[dict]) -> httpx.Response:
    peer = sender.federation.peers()[receiver.party]
    courier = Courier(sender)
    body = json.dumps({"objects": objects}).encode()
    try:
        return courier._request(peer, "POST", "/federation/collections/inbox/objects/", body)
    finally:
        courier.stop()


def test_forged_altered_and_unknown_key_objects_are_refused_and_recorded(
        jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    good = publish(jpn, "genuine", "秘", ("NZL",))
    row = jpn.store.query(jpn.default_collection().collection_id,
                          jpn.access.readable(jpn.people.as_person("officer").person),
                          Query(ids=(good["id"],))).rows[0]
    signed = json.loads(row.body)
    marking_body = next(json.loads(b) for b in jpn.store.markings()
                        if json.loads(b)["id"] == signed["object_marking_refs"][0])
    altered = copy.deepcopy(signed)
    altered["name"] = "altered in transit"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    stranger = sign_object({k: v for k, v in signed.items() if k != "extensions"},
                           Ed25519PrivateKey.generate(), "JPN")
    stranger["id"] = "indicator--0b8a7a0e-2a1f-4d3e-9c4b-5f6a7b8c9d0e"
    unsigned = {k: v for k, v in signed.items() if k != "extensions"}
    unsigned["id"] = "indicator--1b8a7a0e-2a1f-4d3e-9c4b-5f6a7b8c9d0e"
    with serving_federation(nzl):
        r = _post_inbox(jpn, nzl, [marking_body, altered, stranger, unsigned])
    assert r.status_code == 200
    status = r.json()
    messages = {f["id"]: f["message"] for f in status["failures"]}
    assert "forged or altered" in messages[altered["id"]]
    assert "not a pinned key" in messages[stranger["id"]]
    assert "not signed by JPN" in messages[unsigned["id"]]
    assert {f[1] for f in nzl.store.refusals()} >= {altered["id"], stranger["id"],
                                                    unsigned["id"]}
    assert not {altered["id"], stranger["id"], unsigned["id"]} & visible_ids(nzl)


def test_a_malformed_ais_track_from_a_partner_is_refused_and_recorded(
        jpn_nzl: tuple[Node, Node]) -> None:
    """A partner's node (misbehaving, or not this version) signs and sends a track whose
    latitude is not a number: refused per object with the reason, as any invalid STIX
    is; the well-formed track in the same request is stored."""
    jpn, nzl = jpn_nzl
    marking = sign_object(national_marking(jpn.agreement, "JPN", "秘", rel_to=["NZL"]),
                          jpn.signing_key, "JPN")
    t = 1_790_000_000.0
    tracks = [sighting_object("JPN", Track(mmsi, t, [
        Position(mmsi, t, 35.0, 140.0, 12.5, 45.0, 44, 1)]), 600)
        for mmsi in (431000001, 431000002)]
    tracks[1]["extensions"][AIS_EXTENSION_ID]["track"][0]["lat"] = "north"
    good, bad = (sign_object({**obj, "object_marking_refs": [marking["id"]]},
                             jpn.signing_key, "JPN") for obj in tracks)
    with serving_federation(nzl):
        r = _post_inbox(jpn, nzl, [marking, good, bad])
    assert r.status_code == 200
    status = r.json()
    messages = {f["id"]: f["message"] for f in status["failures"]}
    assert list(messages) == [bad["id"]], status
    assert "track[0] 'lat' must be a latitude (a number from -90 to 90): found 'north'" \
        in messages[bad["id"]]
    assert bad["id"] in {f[1] for f in nzl.store.refusals()}
    seen = visible_ids(nzl)
    assert good["id"] in seen and bad["id"] not in seen


def test_a_malformed_national_marking_from_a_partner_is_refused_with_a_reason(
        jpn_nzl: list[Node]) -> None:
    """A marking-definition whose `equivalents` names a party as a list (hostile input)
    must be refused with a reason, audited like any refusal (docs/markings.md: "A marking
    that is unknown, malformed or inconsistent ... is an error with a reason"), not raise
    out of Federation.receive (a 500 for the whole envelope, the refusal unaudited; a
    pulled outbox page holding it stalls the pull for good). Before the fix, the
    TypeError of hashing that party escaped markings._parse_national."""
    jpn, nzl = jpn_nzl
    bad = copy.deepcopy(national_marking(nzl.agreement, "JPN", "極秘", rel_to=["NZL"]))
    bad["extensions"][EXTENSION_ID]["equivalents"].append({"party": ["AUS"]})
    collection = nzl.default_collection().collection_id
    results, _ = nzl.federation.receive("JPN", collection, [bad])
    assert [r.ok for r in results] == [False]
    assert "equivalents must be a list of objects, each naming its party as a string" \
        in results[0].message
    assert nzl.store.find_audit(AuditFilter(kinds=("refuse",), party="JPN"))


def test_requests_from_strangers_and_without_client_certificates_are_refused(
        jpn_nzl: tuple[Node, Node], tmp_path: Path) -> None:
    jpn, nzl = jpn_nzl
    intruder = make_node(tmp_path / "intruder", "JPN")  # same party, unpinned key and cert
    with serving_federation(nzl) as url:
        peer = nzl.store.peers()[0]
        import ssl
        ctx = ssl.create_default_context(cadata=nzl.identity.tls_cert_pem)
        # no client certificate: the TLS handshake itself fails
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/federation/card", verify=ctx)
        # an unpinned client certificate: refused as well
        ctx2 = ssl.create_default_context(cadata=nzl.identity.tls_cert_pem)
        ctx2.load_cert_chain(str(intruder.config.tls_cert), str(intruder.config.tls_key))
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/federation/card", verify=ctx2)
        # a pinned certificate but a request signed by another key: 403 with the reason
        ctx3 = ssl.create_default_context(cadata=nzl.identity.tls_cert_pem)
        ctx3.load_cert_chain(str(jpn.config.tls_cert), str(jpn.config.tls_key))
        target = "/federation/collections/outbox/objects/?next=0&limit=10"
        headers = sign_request(intruder.identity, "GET", target)
        r = httpx.get(url + target, verify=ctx3, headers=headers)
        assert r.status_code == 403 and "pinned key" in r.json()["description"]
        assert peer.party == "JPN"
    intruder.close()


def test_offline_partner_catches_up_by_pull(jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    sent = [publish(jpn, f"while NZ was down {i}", "秘", ("NZL",)) for i in range(5)]
    with serving_federation(jpn):
        assert pull(nzl, "JPN") >= 5
        assert pull(nzl, "JPN") == 0  # the cursor persisted
    assert {o["id"] for o in sent} <= visible_ids(nzl)
    assert nzl.store.pull_cursor("JPN") > 0


def test_push_is_idempotent(jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "once", "秘", ("NZL",))
    with serving_federation(nzl), serving_federation(jpn):
        push(jpn, "NZL")
        pull(nzl, "JPN")  # the same object again, by the other path
    rows = nzl.store.query(nzl.default_collection().collection_id,
                           nzl.access.readable(nzl.people.as_person("officer").person),
                           Query(ids=(obj["id"],), versions=("all",))).rows
    assert len(rows) == 1


def test_a_version_the_partner_refused_is_not_recorded_as_delivered(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a partner's receipt was matched to the envelope by object id, so when
    it acknowledged one version of an object and refused another sent with it, both
    were marked delivered, recorded as held by the partner, and the refused one never
    retried. Honest nodes refuse alike, so the partner's refusal is forced here."""
    jpn, nzl = jpn_nzl
    v1 = indicator("v1")
    v2 = dict(v1, modified="2026-11-02T00:00:00.000Z", name="v2")
    status = jpn.publisher.publish(jpn.people.as_person("officer").person,
                                   jpn.default_collection().collection_id, [v1, v2],
                                   marking=MarkingRequest("秘", ("NZL",)))
    assert status.body["failure_count"] == 0, status.body
    checked = nzl.federation._check_object

    def refuse_v2(sender: str, collection_id: str, item: Any, *args: Any, **kwargs: Any
                  ) -> tuple[Received, None]:
        if isinstance(item, dict) and item.get("modified") == v2["modified"]:
            return Received(item["id"], None, False, "refused for the test"), None
        return checked(sender, collection_id, item, *args, **kwargs)

    monkeypatch.setattr(nzl.federation, "_check_object", refuse_v2)
    with serving_federation(nzl):
        push(jpn, "NZL")
    first, second = "2026-11-01T00:00:00.000000Z", "2026-11-02T00:00:00.000000Z"
    assert [row.version for row in nzl.store.held([v1["id"]])] == [first]
    assert [d.version for d in jpn.store.disseminations() if d.object_id == v1["id"]] == [
        first]
    assert [(row.object_id, row.version) for _, row in jpn.store.pending("NZL", 100)] == [
        (v1["id"], second)]  # waits for the next try


def test_a_recall_reaches_a_partner_whose_receipt_lands_while_it_looks_for_holders(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a recall found the holders by reading the dissemination record, then
    the outbox entries not yet delivered. A push's receipt committed between the two
    reads moves an entry from the second to the first (Store.mark_delivered): the recall
    saw neither, and the partner that had just taken the object was never sent the
    recall ("nothing to recall", or, among several partners, left out silently). The
    receipt is made to land there."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "delivered while recalled", "秘", ("NZL",))
    queued = [oid for oid, _ in jpn.store.pending("NZL", 10)]  # with its marking
    read = jpn.store.disseminations

    def receipt_lands_after(**kwargs: Any) -> Any:
        rows = read(**kwargs)
        jpn.store.mark_delivered("NZL", queued, "2026-12-02T00:00:00.000000Z", "{}")
        return rows

    monkeypatch.setattr(jpn.store, "disseminations", receipt_lands_after)
    targets = jpn.controls.recall(jpn.people.as_person("officer"), obj["id"],
                                  reason="at risk")
    monkeypatch.undo()
    assert targets == ["NZL"]
    assert [n.kind for n in jpn.store.pending_notices("NZL", 10)] == ["recall"]


def test_a_recall_delivered_twice_at_once_is_applied_once(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a holder looked up whether a recall notice was applied already before
    the transaction that applies it. Delivered twice at once (`intelpact recall` sends its
    notices while the serving courier sends the same ones; a retry after a timeout), both
    deliveries found it not applied: the second recorded the recall again and queued a
    second destruction receipt to the originator, destroying nothing. The second
    delivery's look-up is made to run before the first is kept."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "recalled twice at once", "秘", ("NZL",))
    with serving_federation(nzl):
        assert push(jpn, "NZL") >= 1
    jpn.controls.recall(jpn.people.as_person("officer"), obj["id"], reason="at risk")
    (notice,) = jpn.store.pending_notices("NZL", 10)
    signed = json.loads(notice.body)
    first = nzl.controls.receive("JPN", signed)
    monkeypatch.setattr(nzl.store, "notice", lambda notice_id: None)  # not kept yet
    assert nzl.controls.receive("JPN", signed)["receipt"] == first["receipt"]
    monkeypatch.undo()
    assert [n.kind for n in nzl.store.pending_notices("JPN", 10)] == ["destroyed"]
    recalls = nzl.audit.find(AuditFilter(kinds=("recall",), party="JPN"))
    assert len(recalls) == 1


def test_a_recalled_object_sent_again_is_not_acknowledged(
        jpn_nzl: tuple[Node, Node]) -> None:
    """Regression: a version held here was taken as "already stored (identical)" by its
    body hash, which a recall's tombstone keeps: a push or pull that began before the
    recall and arrived after it was answered with a signed receipt saying the holder
    holds what it destroyed, and the originator marked it delivered again. It is refused
    as recalled, like any version of a recalled object."""
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "recalled, then sent again", "秘", ("NZL",))
    (row,) = [r for _, r in jpn.store.pending("NZL", 10) if r.object_id == obj["id"]]
    with serving_federation(nzl):
        assert push(jpn, "NZL") >= 1
        jpn.controls.recall(jpn.people.as_person("officer"), obj["id"], reason="at risk")
        with Courier(jpn) as courier:
            assert courier.deliver_notices("NZL") == 1
    assert obj["id"] not in visible_ids(nzl)
    results, receipt = nzl.federation.receive(
        "JPN", nzl.default_collection().collection_id, [json.loads(row.body)])
    assert [r.ok for r in results] == [False]
    assert "recalled" in results[0].message
    assert receipt["receipt"]["objects"] == []


@pytest.mark.parametrize("how", ["push", "pull"])
def test_a_version_sent_while_its_reclassification_narrows_it_is_not_left_untold(
        jpn_nzl: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Regression: a push or pull decided on a version's old label, sent after a
    reclassification narrowed it away from the partner: the reclassification read the
    holders outside the transaction that relabels (the partner was none yet, and its
    entry might no longer go), and the version went under its old marking, the partner
    never told: it kept what the originator withdrew from it. Now the courier and the
    outbox page decide again once the release is recorded, and the reclassification also
    tells the partners its transaction finds an older version went or may be going to
    (its release recorded). The reclassification is made to land before the release is
    recorded; then after the decision taken again, just before the send."""
    jpn, nzl = jpn_nzl
    officer = jpn.people.as_person("officer")
    collection = jpn.default_collection().collection_id
    fed = jpn.federation
    for when in ("before the record", "just before the send"):
        obj = publish(jpn, f"narrowed while sent, {when}", "秘", ("NZL",))

        def narrow(obj: dict = obj) -> None:
            jpn.controls.reclassify(officer, obj["id"], MarkingRequest("秘", ()),
                                    collection_id=collection, reason="for Japan only")

        if when == "before the record":
            recording = fed.pushing if how == "push" else fed.pulled

            def record(party: str, entries: Any, *args: Any, recording: Any = recording,
                       narrow: Any = narrow) -> Any:
                narrow()
                return recording(party, entries, *args)

            monkeypatch.setattr(fed, "pushing" if how == "push" else "pulled", record)
        else:
            outgoing, decisions = fed.outgoing, []

            def decide(party: str, entries: Any, *args: Any, outgoing: Any = outgoing,
                       obj: dict = obj, narrow: Any = narrow, decisions: list = decisions,
                       **kwargs: Any) -> Any:
                decided = outgoing(party, entries, *args, **kwargs)
                if any(row.object_id == obj["id"] for _, row in entries):
                    decisions.append(party)
                    if len(decisions) == 2:  # the second: taken again after the record
                        narrow()
                return decided

            monkeypatch.setattr(fed, "outgoing", decide)
        with serving_federation(jpn), serving_federation(nzl):
            if how == "push":
                push(jpn, "NZL")
            else:
                pull(nzl, "JPN")
        monkeypatch.undo()
        told = [n for n in jpn.store.pending_notices("NZL", 10)
                if n.kind == "reclassify" and n.object_id == obj["id"]]
        assert obj["id"] not in visible_ids(nzl) or told, when


def test_three_parties_no_third_party_release_without_consent(tmp_path: Path) -> None:
    nodes = {p: make_node(tmp_path / p.lower(), p, agreement="jpn-nzl-aus.toml")
             for p in ("JPN", "NZL", "AUS")}
    for node in nodes.values():
        people(node)
    jpn, nzl, aus = nodes["JPN"], nodes["NZL"], nodes["AUS"]
    pair(jpn, nzl)
    pair(nzl, aus)
    pair(jpn, aus)
    for_nz = publish(jpn, "jpn to nzl only", "秘", ("NZL",))
    for_all = publish(jpn, "jpn to all", "秘", ("NZL", "AUS"))
    with serving_federation(nzl), serving_federation(aus):
        push(jpn, "NZL")
        # NZL holds both; its release filter passes neither on to AUS (JPN's consent)
        assert {for_nz["id"], for_all["id"]} <= visible_ids(nzl)
        assert nzl.store.pending("AUS", 100) == []
        # and if NZL's node sent it anyway, AUS refuses: NZL is a third party
        row = nzl.store.query(nzl.default_collection().collection_id,
                              nzl.access.readable(nzl.people.as_person("officer").person),
                              Query(ids=(for_all["id"],))).rows[0]
        body = json.loads(row.body)
        marking = next(json.loads(b) for b in nzl.store.markings()
                       if json.loads(b)["id"] == body["object_marking_refs"][0])
        r = _post_inbox(nzl, aus, [marking, body])
        failures = {f["id"]: f["message"] for f in r.json()["failures"]}
        assert "AUS is a third party" in failures[for_all["id"]]
        assert "no consent" in failures[for_all["id"]]
        assert for_all["id"] not in visible_ids(aus)
        # from the originator itself it may go
        push(jpn, "AUS")
        assert for_all["id"] in visible_ids(aus)
        # held now, the same bytes relayed by NZL are still NZL's release to decide:
        # refused, not acknowledged as "already stored" in AUS's signed receipt
        r = _post_inbox(nzl, aus, [marking, body])
        failures = {f["id"]: f["message"] for f in r.json()["failures"]}
        assert "AUS is a third party" in failures[for_all["id"]]
        assert for_all["id"] not in {s["id"] for s in r.json().get("successes", [])}
    assert for_all["id"] in visible_ids(aus) and for_nz["id"] not in visible_ids(aus)
    for node in nodes.values():
        node.close()


def test_key_rotation_is_announced_signed_by_the_old_key(jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    before = publish(jpn, "signed with the first key", "秘", ("NZL",))
    old_id = jpn.identity.key_id
    with serving_federation(nzl):
        push(jpn, "NZL")
        new_id = jpn.rotate_key()
        assert new_id != old_id
        after = publish(jpn, "signed with the new key", "秘", ("NZL",))
        push(jpn, "NZL")  # the announcement goes first, then the new object
    assert nzl.federation.peers()["JPN"].key_id == new_id
    assert set(nzl.federation.keys_of("JPN")) == {old_id, new_id}
    assert {before["id"], after["id"]} <= visible_ids(nzl)
    # the node reopens with the new key, and still verifies its own old signatures
    reopened = Node.open(jpn.config.dir)
    try:
        assert reopened.identity.key_id == new_id
        assert set(reopened.federation.keys_of("JPN")) == {old_id, new_id}
    finally:
        reopened.close()


def test_a_forged_rotation_is_refused(jpn_nzl: tuple[Node, Node]) -> None:
    jpn, nzl = jpn_nzl
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    attacker_old, attacker_new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    forged = jpn.federation.announce_rotation(attacker_old, attacker_new, 1, "")
    forged["old_key_id"] = jpn.identity.key_id  # claims to rotate the pinned key
    with pytest.raises(FederationError):
        nzl.federation.accept_rotation("JPN", forged)
    assert nzl.federation.peers()["JPN"].key_id == jpn.identity.key_id


def test_a_rotation_announcement_that_cannot_be_canonicalised_is_refused_not_raised(
        jpn_nzl: list[Node]) -> None:
    """A key-rotation announcement (or any signed payload: verify_payload) carrying an
    integer beyond 2**53 cannot be written in RFC 8785: verify_payload must say "does not
    verify" (FederationError, answered 403 by POST /federation/keys). Before the fix the
    canonicaliser's SignatureError escaped (the route catches only JsonError and
    FederationError: a 500 with a traceback)."""
    jpn = jpn_nzl[0]
    pinned = jpn.federation.peers()["NZL"].key_id
    hostile = {"intelpact_key_rotation": 1, "party": "NZL", "old_key_id": pinned,
               "new_key_id": "k", "new_public_key": "AAAA", "last_size": 2**60,
               "checkpoint": "", "issued": "2026-12-01T00:00:00Z", "signature_old": "AAAA",
               "signature_new": "AAAA"}
    with pytest.raises(FederationError, match="not signed by the pinned"):
        jpn.federation.accept_rotation("NZL", hostile)


def test_replayed_and_stale_requests(jpn_nzl: tuple[Node, Node]) -> None:
    """A replay inside the 5-minute window repeats an idempotent delivery (stored once);
    a stale one is refused."""
    import datetime as dt

    from intelpact.services.federation import verify_request
    jpn, nzl = jpn_nzl
    obj = publish(jpn, "replayed", "秘", ("NZL",))
    row = next(r for _, r in jpn.store.pending("NZL", 10) if r.object_id == obj["id"])
    marking = next(json.loads(b) for b in jpn.store.markings())
    body = json.dumps({"objects": [marking, json.loads(row.body)]}).encode()
    target = "/federation/collections/inbox/objects/"
    headers = {"Accept": "application/taxii+json;version=2.1",
               "Content-Type": "application/taxii+json;version=2.1",
               **sign_request(jpn.identity, "POST", target, body)}
    with serving_federation(nzl) as url:
        import ssl
        ctx = ssl.create_default_context(cadata=nzl.identity.tls_cert_pem)
        ctx.load_cert_chain(str(jpn.config.tls_cert), str(jpn.config.tls_key))
        first = httpx.post(url + target, content=body, headers=headers, verify=ctx)
        again = httpx.post(url + target, content=body, headers=headers, verify=ctx)
    assert first.status_code == again.status_code == 200
    assert again.json()["failure_count"] == 0, again.json()
    assert first.json()["success_count"] == 2, first.json()
    rows = nzl.store.query(nzl.default_collection().collection_id,
                           nzl.access.readable(nzl.people.as_person("officer").person),
                           Query(ids=(obj["id"],), versions=("all",))).rows
    assert len(rows) == 1
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=6)
    lowered = {k.lower(): v for k, v in headers.items()}
    with pytest.raises(FederationError, match="s behind this node.s clock"):
        verify_request(lowered, "POST", target, body, nzl.federation.peers(),
                       nzl.agreement.content_hash, now=later)


def _said(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the courier logged of its federation with NZL, in order."""
    return [r for r in caplog.records if r.getMessage().startswith("federation with NZL")]


def test_a_partner_that_keeps_failing_is_warned_of_once_reminded_and_its_return_said(
        jpn_nzl: list[Node], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The courier retries a partner out of reach every 30 s at most, all day if need be:
    the first failure is a warning, the same failure again only debug but for a reminder
    every REMIND_EVERY seconds that says since when, and the round that reaches it again
    says so, once. Before, every retry was a warning: 2,880 a day."""
    jpn, nzl = jpn_nzl
    pair(jpn, nzl)
    monkeypatch.setattr(courier_module, "REMIND_EVERY", 1.0)
    caplog.set_level(logging.DEBUG, logger="intelpact.courier")

    with Courier(jpn, interval=0.01, push_interval=0.01, max_backoff=0.02,
                 gossip_interval=60) as courier:
        courier.start()
        wait_for(lambda: sum(r.levelno == logging.WARNING for r in _said(caplog)) >= 2, 20,
                   "a reminder that NZL is still out of reach")
        with serving_federation(nzl):
            wait_for(lambda: _said(caplog)[-1].levelno == logging.INFO, 20, "NZL reached again")
            *failed, back = _said(caplog)  # before NZL stops again
    first, *more = failed
    assert first.levelno == logging.WARNING and "unreachable" in first.getMessage()
    assert "still failing" not in first.getMessage()
    assert {r.levelno for r in more} == {logging.DEBUG, logging.WARNING}
    reminders = [r.getMessage() for r in more if r.levelno == logging.WARNING]
    assert all(re.match(r"federation with NZL: still failing \(\d+ tries since "
                        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\): .*unreachable", m)
               for m in reminders), reminders
    assert len(reminders) < len(more) / 2  # most retries were not warnings
    assert re.fullmatch(rf"federation with NZL: reached again after {len(failed)} failed "
                        r"tries since \S+Z", back.getMessage()), back.getMessage()


def test_a_partner_is_said_reached_again_only_by_a_round_that_reached_it(
        jpn_nzl: list[Node], caplog: pytest.LogCaptureFixture) -> None:
    """NZL down (its port closed), JPN's pull of it fails every ``interval``; the rounds
    between, with nothing queued, send NZL nothing. Before, each such round ended the
    run of failures: "reached again" while NZL was still down, and the next failure a
    first warning again (and its backoff started over). Only a round NZL answered says
    it is back, once, counting every failed try since the first."""
    jpn, nzl = jpn_nzl
    caplog.set_level(logging.DEBUG, logger="intelpact.courier")

    with Courier(jpn, interval=0.4, push_interval=0.02, max_backoff=0.05,
                 gossip_interval=60) as courier:
        courier.start()
        wait_for(lambda: sum("unreachable" in r.getMessage() for r in _said(caplog)) >= 4, 20,
                 "four pulls of NZL failed")
        down = _said(caplog)
        with serving_federation(nzl):
            wait_for(lambda: _said(caplog)[-1].levelno == logging.INFO, 20, "NZL reached again")
            *failed, back = _said(caplog)
    assert not [r.getMessage() for r in down if r.levelno == logging.INFO]
    assert [r.levelno for r in failed].count(logging.WARNING) == 1, \
        [r.getMessage() for r in failed]
    assert all("unreachable" in r.getMessage() for r in failed)
    assert re.fullmatch(rf"federation with NZL: reached again after {len(failed)} failed "
                        r"tries since \S+Z", back.getMessage()), back.getMessage()
