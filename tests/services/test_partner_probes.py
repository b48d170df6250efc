"""A pinned partner probing what a node holds of others' objects, or wearing out its
partners' logs: found in review, each docstring says what the node did before its fix."""

from __future__ import annotations

import json
import re
from typing import Any

from test_federation import push
from test_federation_attacks import publish, send_to_inbox, stored, trio  # noqa: F401

from intelpact.crypto.signing import sign_object
from intelpact.model import national_marking
from intelpact.services.node import Node

from helpers import indicator, serving_federation

LATER = "2026-11-02T00:00:00.000Z"


def _same_but_ids(a: str, b: str) -> bool:
    """Two refusal messages that say the same, apart from the STIX ids they name."""
    ids = re.compile(r"[a-z0-9-]+--[0-9a-f-]{36}")
    return ids.sub("ID", a) == ids.sub("ID", b)


def test_the_inbox_names_no_originator_of_an_object_a_sender_re_versions(
        trio: dict[str, Node]) -> None:  # noqa: F811
    """NZL knows two ids (from a reference, a deterministic SCO id, a third party) of
    objects JPN holds that were never released to NZL: one JPN's own (REL TO AUS), one
    AUS's (REL TO JPN). It sends JPN's inbox a version of each, under its own marking and
    signed with its own key. JPN's signed answer names each id's originator ("... is
    JPN's object", "... is AUS's object ... AUS issued a version of it here first"): NZL
    learns that JPN holds each one and who originated it. Correct: the refusal names no
    originator (as a notice about another party's object is answered as one about an
    object not held, docs/controls.md), so the answers for the two ids are alike."""
    jpn, nzl, aus = trio["JPN"], trio["NZL"], trio["AUS"]
    ours = publish(jpn, "JPN's, for AUS only", "秘", ("AUS",))
    theirs = publish(aus, "AUS's, for JPN only", "SECRET", ("JPN",))
    with serving_federation(jpn):
        push(aus, "JPN")
    assert stored(jpn, theirs["id"])
    assert ours["id"] not in {row.object_id for _, row in jpn.store.pending("NZL", 100)}
    low = sign_object(national_marking(nzl.agreement, "NZL", "UNCLASSIFIED",
                                       rel_to=["JPN"]), nzl.signing_key, "NZL")
    probes = [sign_object(indicator("probe", oid=oid, modified=LATER,
                                    object_marking_refs=[low["id"]]), nzl.signing_key, "NZL")
              for oid in (ours["id"], theirs["id"])]
    r = send_to_inbox(nzl, jpn, [low, *probes])
    assert r.status_code == 200, r.text
    failures = {f["id"]: f["message"] for f in r.json()["failures"]}
    on_ours, on_theirs = failures[ours["id"]], failures[theirs["id"]]
    assert "JPN's object" not in on_ours and "AUS" not in on_theirs and \
        _same_but_ids(on_ours, on_theirs), (on_ours, on_theirs)


def _aus_definitions(nodes: dict[str, Node]) -> tuple[dict[str, Any], dict[str, Any]]:
    """AUS's national definitions NZL can compute: "SECRET REL TO JPN, AUS", held at JPN
    (AUS shared something with JPN under it, never with NZL), and "SECRET REL TO JPN,
    NZL, AUS", held nowhere."""
    jpn, nzl, aus = nodes["JPN"], nodes["NZL"], nodes["AUS"]
    publish(aus, "AUS to JPN", "SECRET", ("JPN",))
    with serving_federation(jpn):
        push(aus, "JPN")
    held = national_marking(nzl.agreement, "AUS", "SECRET", rel_to=["JPN"])
    other = national_marking(nzl.agreement, "AUS", "SECRET", rel_to=["JPN", "NZL"])
    assert jpn.store.marking(held["id"]) is not None
    assert jpn.store.marking(other["id"]) is None
    return held, other


def test_a_forged_marking_definition_is_refused_alike_whether_or_not_one_is_held(
        trio: dict[str, Node]) -> None:  # noqa: F811
    """A national marking-definition's id is derived from what it says (originator,
    level, REL TO, caveats...), so NZL can compute the id of AUS's "SECRET REL TO JPN,
    AUS" definition. AUS shared something with JPN under it (never with NZL). NZL sends
    JPN a copy of that definition altered where the id does not look (``created``), and one
    of AUS's "SECRET REL TO JPN, NZL, AUS" definition, which JPN does not hold. JPN
    compares the first with the one it holds before it checks AUS's signature, so the
    answers differ: "a different marking-definition with this id is known" against "not
    signed by AUS: forged or altered". NZL learns that AUS sent JPN something marked so.
    Correct: the originator's signature is checked first (a forgery is refused as one
    whatever is held), so both answers are alike."""
    jpn, nzl = trio["JPN"], trio["NZL"]
    held, other = _aus_definitions(trio)
    forged = [dict(m, created="2020-01-01T00:00:00.000Z") for m in (held, other)]
    r = send_to_inbox(nzl, jpn, forged)
    assert r.status_code == 200, r.text
    failures = {f["id"]: f["message"] for f in r.json()["failures"]}
    assert _same_but_ids(failures[held["id"]], failures[other["id"]]), failures


def test_an_object_citing_a_third_party_s_definition_is_refused_alike_whether_or_not_held(
        trio: dict[str, Node]) -> None:  # noqa: F811
    """The same question asked with an object: NZL sends JPN two indicators of its own,
    signed by NZL, one citing AUS's "SECRET REL TO JPN, AUS" definition (held at JPN: AUS
    shared something with JPN under it) and one citing AUS's "SECRET REL TO JPN, NZL,
    AUS" (not held). The first is refused for its signature (labelled as AUS's, it is not
    signed by AUS), the second as "unknown marking-definition": NZL learns which one JPN
    holds. Correct: alike answers (for instance, an object citing a definition the
    sender was never shown is refused as citing one not held)."""
    jpn, nzl = trio["JPN"], trio["NZL"]
    held, other = _aus_definitions(trio)
    probes = [sign_object(indicator("probe", object_marking_refs=[m["id"]]),
                          nzl.signing_key, "NZL") for m in (held, other)]
    r = send_to_inbox(nzl, jpn, probes)
    assert r.status_code == 200, r.text
    failures = {f["id"]: f["message"] for f in r.json()["failures"]}
    a, b = (failures[p["id"]] for p in probes)
    assert _same_but_ids(a, b), (a, b)


def test_a_notice_id_that_is_not_a_uuid_is_refused(
        trio: dict[str, Node]) -> None:  # noqa: F811
    """NZL and AUS both hold JPN's X. NZL sends AUS a recall notice about X (it may not
    recall it) whose id is a long run of double quotes: a notice's id is bounded only by
    the body limit. AUS refuses to apply it, and records the refusal under X's originator,
    JPN, with the notice id whole (``Controls._not_theirs``). In a partner audit answer
    the event's body is a JSON string inside JSON, so each quote (two bytes in NZL's
    request) takes four: the answer holding that one event is about twice the request,
    past JPN's max_content_length (the same as AUS's, as with the defaults), and JPN's
    watch of AUS stops at it for good ("not checked past leaf ..."): a third party stops
    the originator's audit of a holder. Correct: a notice's id is refused unless it is a
    UUID (as a consent request's id is), or what a partner chose is recorded cut short
    (model/echo.py), so JPN's watch reads on."""
    import dataclasses

    from intelpact.services.courier import Courier
    from intelpact.services.federation import sign_payload

    jpn, nzl, aus = trio["JPN"], trio["NZL"], trio["AUS"]
    x = publish(jpn, "JPN's X", "秘", ("NZL", "AUS"))
    for holder in (nzl, aus):
        with serving_federation(holder):
            push(jpn, holder.party)
    assert stored(nzl, x["id"]) and stored(aus, x["id"])
    limit = 256 * 1024
    for node in (jpn, aus):
        node.config = dataclasses.replace(node.config, max_content_length=limit)
    with serving_federation(aus), Courier(jpn) as courier:
        courier.watch_once("AUS")  # the watch is up to date
    _, signed = nzl.controls._notice("recall", "AUS", {"object_id": x["id"],
                                                        "reason": "a probe"})
    notice = dict(signed["notice"], id='"' * 100_000)
    body = json.dumps({"notice": notice, "key_id": nzl.identity.key_id,
                       "signature": sign_payload(nzl.identity.key, notice)}).encode()
    assert len(body) < limit
    with serving_federation(aus), Courier(nzl) as courier:
        r = courier._request(nzl.federation.peers()["AUS"], "POST", "/federation/notices",
                             body)
    assert r.status_code in (200, 403), r.text
    assert [row.originator for row in stored(aus, x["id"])] == ["JPN"]  # nothing applied
    with serving_federation(aus), Courier(jpn) as courier:
        courier.watch_once("AUS")  # correct: reads on; now: AuditError, stopped for good


def test_a_page_pulled_again_is_reported_to_the_originator_once(
        trio: dict[str, Node]) -> None:  # noqa: F811
    """AUS may receive JPN's X from NZL with JPN's consent. Each GET of NZL's outbox page
    that serves X (the same page, ``next=0``, asked again and again: AUS chooses the
    cursor) queues another signed onward-release notice to JPN, with its audit event (and
    JPN, each with its own notice id, would keep and audit each one). The dissemination
    record and the release
    event are written once however often a page is pulled (docs/federation.md), the
    reports are not: a partner pulling in a loop (within its rate, 200 a second) makes
    the holder and the originator fill their notice tables and audit logs. Correct: what
    was reported once for that recipient is not reported again."""
    from test_consent import approve, ask, shared

    from intelpact.services.courier import Courier

    jpn, nzl, aus = trio["JPN"], trio["NZL"], trio["AUS"]
    nzl.people.add("analyst", party="NZL", clearance="SECRET", roles=["analyst"])
    with serving_federation(jpn), serving_federation(nzl):
        obj = shared(jpn, nzl)
        approve(jpn, nzl, ask(nzl, jpn, obj))
        target = "/federation/collections/outbox/objects/?next=0&limit=10"
        with Courier(aus) as courier:
            for _ in range(3):
                r = courier._request(aus.federation.peers()["NZL"], "GET", target)
                assert r.status_code == 200 and obj["id"] in r.text, r.text
    onward = [n for n in nzl.store.notices()
              if n.kind == "onward-release" and n.direction == "out"]
    assert len(onward) == 1, f"{len(onward)} onward-release reports queued for 3 pulls"
