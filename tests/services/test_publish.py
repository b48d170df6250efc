"""Publishing: derived information carries at least the markings of its sources."""

from __future__ import annotations

import copy
import json
import logging
import uuid
from pathlib import Path

import pytest

from intelpact.crypto.signing import SIGNATURES_EXTENSION_ID
from intelpact.model import national_marking
from intelpact.services.node import Node
from intelpact.services.prepare import CHUNK, Preparation
from intelpact.services.publish import BATCH, MIN_BATCH, MarkingRequest
from intelpact.store.base import AuditFilter

from helpers import T0, indicator, make_node, stix_id


@pytest.fixture()
def node(tmp_path: Path) -> Node:
    n = make_node(tmp_path / "jpn")
    n.people.add("aki", party="JPN", clearance="機密", caveats=["JPNEO"],
                 communities=["MARITIME"], roles=["analyst", "publisher"])
    yield n
    n.close()


def report(*refs: str) -> dict:
    return {"type": "report", "spec_version": "2.1", "id": stix_id("report"), "created": T0,
            "modified": T0, "name": "a summary", "published": T0, "object_refs": list(refs)}


def stored(body: dict) -> list[str]:
    """The ids a publication stored, markings aside."""
    return [s["id"] for s in body["successes"] if not s["id"].startswith("marking-definition")]


def publish(node: Node, objects: list[dict], level: str, rel: tuple[str, ...] = (),
            caveats: tuple[str, ...] = ()) -> dict:
    who = node.people.as_person("aki").person
    return node.publisher.publish(who, node.default_collection().collection_id, objects,
                                  marking=MarkingRequest(level, rel, caveats)).body


def test_a_report_lower_than_its_stored_sources_is_refused(node: Node) -> None:
    secret = indicator("secret source")
    assert stored(publish(node, [secret], "極秘", ("NZL",))) == [secret["id"]]
    body = publish(node, [report(secret["id"])], "秘", ("NZL",))
    assert stored(body) == []
    (failure,) = [f for f in body["failures"] if f["id"].startswith("report--")]
    assert f"derived from {secret['id']}" in failure["message"]
    assert "極秘 // REL TO JPN, NZL" in failure["message"]
    # the same report at the sources' level, or higher, is accepted
    assert publish(node, [report(secret["id"])], "極秘", ("NZL",))["failure_count"] == 0
    assert publish(node, [report(secret["id"])], "機密", ())["failure_count"] == 0
    # and the refusal is audited as a denial with its reason
    denials = node.store.find_audit(AuditFilter(kinds=("deny",)))
    assert any("derived from" in json.loads(d.body)["reason"] for d in denials)


def test_rel_to_and_caveats_count_too(node: Node) -> None:
    jpn_only = indicator("japan only")
    eyes = indicator("japanese eyes only")
    publish(node, [jpn_only], "秘", ())
    publish(node, [eyes], "秘", (), ("JPNEO",))
    wider = publish(node, [report(jpn_only["id"])], "秘", ("NZL",))
    assert stored(wider) == [] and "REL TO" in wider["failures"][-1]["message"]
    no_caveat = publish(node, [report(eyes["id"])], "秘", ())
    assert stored(no_caveat) == []
    assert publish(node, [report(eyes["id"])], "秘", (), ("JPNEO",))["failure_count"] == 0


def test_sources_in_the_same_publication_count(node: Node) -> None:
    """A bundle's report and its indicators, one marking: fine. Referencing an object
    nobody here holds cannot be checked and is not refused (it may arrive later)."""
    ind = indicator("with its report")
    body = publish(node, [ind, report(ind["id"], stix_id("indicator"))], "秘", ("NZL",))
    assert body["failure_count"] == 0
    rel = {"type": "relationship", "spec_version": "2.1", "id": stix_id("relationship"),
           "created": T0, "modified": T0, "relationship_type": "indicates",
           "source_ref": ind["id"], "target_ref": stix_id("malware")}
    assert stored(publish(node, [rel], "取扱注意", ("NZL",))) == []  # lower: refused


def publish_as(node: Node, who: str, objects: list[dict], level: str | None = None,
               rel: tuple[str, ...] = ()) -> dict:
    person = node.people.as_person(who).person
    marking = MarkingRequest(level, rel) if level is not None else None
    return node.publisher.publish(person, node.default_collection().collection_id, objects,
                                  marking=marking).body


def messages(body: dict) -> dict[str, str]:
    return {f["id"]: f["message"] for f in body["failures"]}


def test_a_source_the_publisher_may_not_read_counts_as_one_not_held(node: Node) -> None:
    """A publisher who may not read a source cannot have derived from it: it is treated
    exactly as an id not held here, so the status says nothing of whether it exists or
    how it is marked. What they may read of a source still counts."""
    node.people.add("ren", party="JPN", clearance="秘", roles=["analyst", "publisher"])
    hidden = indicator("極秘: ren may not read it")
    assert stored(publish(node, [hidden], "極秘", ("NZL",))) == [hidden["id"]]
    top = national_marking(node.agreement, "JPN", "極秘", rel_to=["NZL"])  # stored now
    partial = indicator("秘, with a 極秘 description", granular_markings=[
        {"selectors": ["description"], "marking_ref": top["id"]}])
    assert stored(publish(node, [partial], "秘", ())) == [partial["id"]]
    ren = node.people.as_person("ren")
    assert node.get(ren, hidden["id"]) == []
    for source in (hidden["id"], stix_id("indicator")):  # hidden, and held nowhere
        body = publish_as(node, "ren", [report(source)], "秘", ("NZL",))
        assert body["failure_count"] == 0, body["failures"]
    # a source read in part: what ren is served of it (秘, JPN only) counts, not the rest
    wider = publish_as(node, "ren", [report(partial["id"])], "秘", ("NZL",))
    (message,) = messages(wider).values()
    assert "秘 // REL TO JPN" in message and "極秘" not in message
    assert stored(publish_as(node, "ren", [report(partial["id"])], "秘")) != []
    # aki, who may read all of it, is held to all of it
    (full,) = messages(publish(node, [report(partial["id"])], "秘", ())).values()
    assert "極秘 // REL TO JPN" in full


def test_a_publisher_who_may_not_read_an_object_issues_no_version_of_it(node: Node) -> None:
    """Neither a new version (which every reader would be served instead of the latest,
    under the lower marking) nor a different body under a stored (id, version): refused
    in words that name no marking and no version, the same for both."""
    node.people.add("ren", party="JPN", clearance="秘", roles=["analyst", "publisher"])
    hidden = indicator("H", modified="2026-11-01T00:00:00.000Z")
    publish(node, [hidden], "極秘", ("NZL",))
    same = dict(hidden, name="a guess")
    newer = dict(hidden, name="ren's text", modified="2026-12-01T00:00:00.000Z")
    said = [messages(publish_as(node, "ren", [obj], "秘", ("NZL",)))[hidden["id"]]
            for obj in (same, newer)]
    assert said[0] == said[1] == (f"{hidden['id']} is held here in a version you may not "
                                  "read in full: only someone who may read all of an object "
                                  "issues versions of it; publish yours with a new id")
    aki = node.people.as_person("aki")
    assert [o["name"] for o in node.get(aki, hidden["id"])] == ["H"]  # nothing of ren's
    denied = [json.loads(e.body) for e in node.store.find_audit(AuditFilter(kinds=("deny",)))]
    assert [d["objects"][0][0] for d in denied] == [hidden["id"]] * 2
    # an object whose latest version ren may read, but not an earlier one: a different body
    # under that earlier version is refused in the same words (not "already stored")
    lowered = indicator("lowered", modified="2026-11-01T00:00:00.000Z")
    publish(node, [lowered], "極秘", ("NZL",))
    publish(node, [dict(lowered, modified="2026-11-02T00:00:00.000Z")], "秘", ("NZL",))
    old = messages(publish_as(node, "ren", [dict(lowered, name="x")], "秘", ("NZL",)))
    assert old[lowered["id"]] == said[0].replace(hidden["id"], lowered["id"])
    latest = dict(lowered, modified="2026-11-02T00:00:00.000Z", name="x")
    assert "already stored" in messages(publish_as(node, "ren", [latest], "秘",
                                                   ("NZL",)))[lowered["id"]]
    # and a new version of it, which ren may read, is ren's to issue (JPN's object)
    assert publish_as(node, "ren", [dict(latest, modified="2026-11-03T00:00:00.000Z")], "秘",
                      ("NZL",))["failure_count"] == 0


def test_a_marking_stored_by_another_process_is_known(node: Node) -> None:
    """Two processes of one node (TAXII workers): a marking-definition one of them
    stores is found by the other when an object uses it, without a restart."""
    from intelpact.model import national_marking

    other = Node.open(node.config.dir)  # started before the marking existed
    try:
        publish(node, [indicator("brings a new marking")], "極秘", (), ("JPNEO",))
        mid = national_marking(node.agreement, "JPN", "極秘", caveats=["JPNEO"])["id"]
        assert not other.markings.known(mid)
        marked = indicator("uses it", object_marking_refs=[mid])
        who = other.people.as_person("aki").person
        body = other.publisher.publish(who, other.default_collection().collection_id,
                                       [marked]).body
        assert stored(body) == [marked["id"]], body["failures"]
    finally:
        other.close()


def test_a_publication_of_several_batches_is_stored_batch_by_batch(node: Node) -> None:
    """No object refers to another in it: each batch of 500 is decided and stored in turn.
    A refusal in the middle (a report lower than a stored source) is reported and audited
    like any other, and every object is counted once in the progress."""
    secret = indicator("stored source")
    publish(node, [secret], "極秘", ("NZL",))
    objects = [indicator(f"bulk {i}") for i in range(1100)]
    objects.insert(700, report(secret["id"]))  # in the second batch, marked too low
    ticks: list[int] = []
    who = node.people.as_person("aki").person
    body = node.publisher.publish(who, node.default_collection().collection_id, objects,
                                  marking=MarkingRequest("秘", ("NZL",)),
                                  progress=ticks.append).body
    assert body["success_count"] == 1101 and body["failure_count"] == 1  # + the marking
    assert body["failures"][0]["id"] == objects[700]["id"]
    assert sum(ticks) == body["total_count"] and len(ticks) >= 3  # batch by batch
    assert set(stored(body)) == {o["id"] for o in objects} - {objects[700]["id"]}
    (denial,) = node.store.find_audit(AuditFilter(kinds=("deny",)))
    assert json.loads(denial.body)["objects"][0][0] == objects[700]["id"]
    # decided after the first batch was stored (its publish event is earlier in the log)
    first = {o["id"] for o in objects[:400]}
    stored_first = [e.index for e in node.store.find_audit(AuditFilter(kinds=("publish",)))
                    if {o[0] for o in json.loads(e.body)["objects"]} & first]
    assert stored_first and max(stored_first) < denial.index


class _Behind(Preparation):
    """A pool that is always behind: no chunk is back when the publisher looks."""

    def _back(self, k: int) -> bool:
        return False


@pytest.mark.parametrize("behind", [False, True])
def test_what_is_decided_is_stored_while_the_pool_prepares_the_rest(
        node: Node, monkeypatch: pytest.MonkeyPatch, behind: bool) -> None:
    """Rather than wait for the pool, the publisher stores what it has decided once that
    is MIN_BATCH objects or more; with the results all there, it stores BATCH at a time."""
    assert MIN_BATCH <= CHUNK < BATCH
    if behind:
        monkeypatch.setattr(node.preparer, "prepare", lambda items, refs: _Behind(
            items, refs, *node.preparer.signer()))
    stores: list[int] = []
    node.publisher.on_stored = lambda: stores.append(1)
    objects = [indicator(f"early {i}") for i in range(4 * CHUNK + MIN_BATCH)]
    body = publish(node, objects, "秘", ("NZL",))
    assert body["failure_count"] == 0 and set(stored(body)) == {o["id"] for o in objects}
    # behind: one transaction per chunk back; else full batches, then the rest
    assert len(stores) == (5 if behind else -(-len(objects) // BATCH))
    events = node.store.find_audit(AuditFilter(kinds=("publish",)))
    assert sum(len(json.loads(e.body)["objects"]) for e in events) == len(objects) + 1
    # a publication of BATCH objects or fewer is one transaction, all or nothing
    stores.clear()
    small = [indicator(f"whole {i}") for i in range(BATCH - 1)]  # and the marking
    assert publish(node, small, "秘", ("NZL",))["failure_count"] == 0
    assert len(stores) == 1


TLP_RED_1 = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"


def statement(mid: str) -> dict:
    return {"type": "marking-definition", "spec_version": "2.1", "id": mid, "created": T0,
            "definition_type": "statement", "definition": {"statement": "nothing to see"}}


def served_descriptions(node: Node, who: str, oid: str) -> list:
    """The description of each version of ``oid`` ``who`` is served (None: withheld)."""
    return [o.get("description") for o in node.get(node.people.as_person(who), oid)]


def test_a_publisher_cannot_redefine_tlp_red(node: Node) -> None:
    """Regression: a statement marking under TLP:RED's standard id was accepted and stored;
    after a restart it replaced the built-in TLP:RED, and a TLP:RED portion was served to
    a person without the TLP-RED caveat."""
    node.people.add("kai", party="JPN", clearance="機密", caveats=["TLP-RED"],
                    roles=["analyst", "publisher"])
    node.people.add("bo", party="JPN", clearance="機密", roles=["analyst"])
    red = indicator("red", granular_markings=[{"selectors": ["description"],
                                               "marking_ref": TLP_RED_1}])
    assert publish_as(node, "kai", [red], "秘")["failure_count"] == 0
    assert served_descriptions(node, "bo", red["id"]) == [None]
    body = publish_as(node, "kai", [statement(TLP_RED_1)])
    assert body["success_count"] == 0
    assert "is the standard id of TLP 1.0 TLP:RED" in messages(body)[TLP_RED_1]
    assert node.store.marking(TLP_RED_1) is None
    node.close()
    again = Node.open(node.config.dir)
    try:
        assert served_descriptions(again, "bo", red["id"]) == [None]
        assert served_descriptions(again, "kai", red["id"]) == ["red: description"]
    finally:
        again.close()


def test_a_redefinition_stored_by_an_older_version_is_left_out_loudly(
        node: Node, caplog: pytest.LogCaptureFixture) -> None:
    """A statement under TLP:RED's id stored by an older intelpact (which took it) does not
    replace the built-in TLP:RED when the node starts: it is left out, with an error."""
    node.people.add("bo", party="JPN", clearance="機密", roles=["analyst"])
    red = indicator("red", granular_markings=[{"selectors": ["description"],
                                               "marking_ref": TLP_RED_1}])
    node.people.add("kai", party="JPN", clearance="機密", caveats=["TLP-RED"],
                    roles=["analyst", "publisher"])
    assert publish_as(node, "kai", [red], "秘")["failure_count"] == 0
    built_in = node.markings.part(TLP_RED_1)
    poisoned = json.dumps(statement(TLP_RED_1), sort_keys=True, separators=(",", ":"))
    node.store.add_objects(node.default_collection().collection_id, [],
                           [(TLP_RED_1, poisoned)])  # as the older version stored it
    node.close()
    with caplog.at_level(logging.ERROR, logger="intelpact.node"):
        again = Node.open(node.config.dir)
    try:
        assert again.markings.part(TLP_RED_1) == built_in
        assert served_descriptions(again, "bo", red["id"]) == [None]
        (record,) = caplog.records
        assert f"the stored marking-definition {TLP_RED_1} is not used" in record.getMessage()
        assert "is the standard id of TLP 1.0 TLP:RED" in record.getMessage()
    finally:
        again.close()


ACS = "extension-definition--3a65884d-005a-4290-8335-cb2d778a83ce"


def acs(mid: str, classification: str) -> dict:
    return {"type": "marking-definition", "spec_version": "2.1", "id": mid, "created": T0,
            "extensions": {ACS: {"extension_type": "property-extension",
                                 "control_set": {"classification": classification}}}}


def secret_portion(node: Node, mid: str) -> dict:
    """An object with a portion under ``mid`` (ACS S), published by aki with the definition."""
    node.people.add("bo", party="JPN", clearance="秘", roles=["analyst"])
    secret = indicator("x", description="SECRET portion",
                       granular_markings=[{"selectors": ["description"], "marking_ref": mid}])
    assert publish(node, [acs(mid, "S"), secret], "秘")["failure_count"] == 0
    return secret


def test_a_worker_refuses_a_different_body_under_an_id_another_stored(node: Node) -> None:
    """Regression: a TAXII worker that had not seen a definition another worker stored
    took a different body under its id (ACS U for S), kept it in memory when the store
    refused it, and then served that definition's SECRET portions to a person cleared 秘."""
    other = Node.open(node.config.dir)  # a second worker, started first
    try:
        mid = f"marking-definition--{uuid.uuid4()}"
        secret = secret_portion(node, mid)
        body = publish_as(other, "aki", [acs(mid, "U")])
        assert "a different marking-definition with this id is known" in messages(body)[mid]
        assert other.markings.part(mid) == node.markings.part(mid)
        assert served_descriptions(other, "bo", secret["id"]) == [None]
    finally:
        other.close()


def test_a_definition_stored_meanwhile_by_another_worker_refuses_the_batch(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression, the race: two workers, two bodies for one new id at the same moment.
    The worker whose body the store refused had learnt it, and labelled with it the
    objects it stored beside it. Now the whole batch is refused, audited, the worker
    forgets what it learnt for it and reads the stored definition."""
    other = Node.open(node.config.dir)
    mid = f"marking-definition--{uuid.uuid4()}"
    stored_first: list[dict] = []
    decided = other.preparer.prepare

    def meanwhile(items: list, refs: list) -> Preparation:
        # once `other` decided its definitions, `node` stores its own under the id
        stored_first.append(secret_portion(node, mid))
        return decided(items, refs)

    monkeypatch.setattr(other.preparer, "prepare", meanwhile)
    try:
        low = indicator("y", description="under the other body",
                        granular_markings=[{"selectors": ["description"], "marking_ref": mid}])
        body = publish_as(other, "aki", [acs(mid, "U"), low], "秘")
        assert body["success_count"] == 0, body
        reason = (f"a different marking-definition with id {mid} was stored meanwhile; "
                  "publish again")
        assert set(messages(body).values()) == {reason} and set(messages(body)) > {mid, low["id"]}
        assert not node.store.held([low["id"]]) and node.store.marking(mid) is not None
        (denial,) = node.store.find_audit(AuditFilter(kinds=("deny",)))
        assert json.loads(denial.body)["reason"] == reason
        assert {o[0] for o in json.loads(denial.body)["objects"]} >= {mid, low["id"]}
        # it reads the stored definition now: the SECRET portion is withheld from bo
        assert other.markings.part(mid) == node.markings.part(mid)
        assert served_descriptions(other, "bo", stored_first[0]["id"]) == [None]
    finally:
        other.close()


def test_an_object_that_cannot_be_signed_is_refused_alone_with_its_reason(node: Node) -> None:
    """An integer beyond 2**53 in a custom property passed validation, but RFC 8785 (the
    signature's canonical form) cannot write it. Like any object refused in preparation
    it must be refused alone, with its reason, and the rest of the publication stored.
    Before the fix, SignatureError escaped from the signer (crypto.signing.canonical via
    prepare.prepare) and the whole publication was refused as a bad request. Validation
    refuses such an integer now; a value that passes validation but has no RFC 8785 form
    (a NaN put in by Python code) is refused by the signer, alone too."""
    good = [indicator(f"fine {i}") for i in range(3)]
    bad = indicator("too large to sign")
    bad["x_count"] = 2**60
    nan = indicator("a score computed as NaN")
    nan["x_score"] = float("nan")
    body = publish(node, [*good, bad, nan], "極秘", ("NZL",))
    assert stored(body) == [g["id"] for g in good]
    failures = {f["id"]: f["message"] for f in body["failures"]}
    assert list(failures) == [bad["id"], nan["id"]]
    assert "beyond ±(2**53 - 1)" in failures[bad["id"]]
    assert "cannot canonicalise the object" in failures[nan["id"]]


def test_an_object_with_a_malformed_signatures_extension_is_refused_alone(node: Node) -> None:
    """Regression: an object published with intelpact's signatures extension holding
    entries that are not objects made the signer raise AttributeError, and the whole
    publication failed. It is refused alone, with the reason."""
    odd = {SIGNATURES_EXTENSION_ID: {"extension_type": "property-extension",
                                     "signatures": [1]}}
    good = indicator("fine")
    bad = indicator("odd signatures")
    bad["extensions"] = odd
    body = publish(node, [good, bad], "秘", ("NZL",))
    assert stored(body) == [good["id"]]
    (failure,) = body["failures"]
    assert failure["id"] == bad["id"]
    assert "signatures are a list of objects" in failure["message"]
    # the same on a national marking-definition of ours, which the node signs too
    definition = national_marking(node.agreement, "JPN", "機密", rel_to=["NZL"])
    definition["extensions"].update(copy.deepcopy(odd))
    held = national_marking(node.agreement, "JPN", "秘", rel_to=["NZL"])["id"]  # stored above
    other = indicator("published beside it", object_marking_refs=[held])
    who = node.people.as_person("aki").person
    body = node.publisher.publish(who, node.default_collection().collection_id,
                                  [definition, other]).body
    assert [f["id"] for f in body["failures"]] == [definition["id"]]
    assert "signatures are a list of objects" in body["failures"][0]["message"]
    assert stored(body) == [other["id"]]


def test_a_national_marking_definition_carries_nothing_its_id_does_not_cover(
        node: Node) -> None:
    """docs/markings.md: a national marking's id is derived from its content and
    `created` is fixed, "so two nodes build byte-identical marking-definitions for the
    same label". The id covers only the extension's properties, yet a body with other
    top-level properties -- here a STIX 2.0-style `definition` saying TLP:WHITE and
    another `created` -- was accepted as the 極秘 marking. Stored first, it became this
    node's definition for that label (the publisher reuses a known id), was signed, cited
    by every later 極秘 // REL TO JPN, NZL object and sent to partners, telling any STIX
    consumer that reads `definition` that SECRET material is TLP:WHITE."""
    planted = copy.deepcopy(national_marking(node.agreement, "JPN", "極秘", rel_to=["NZL"]))
    planted["definition"] = {"tlp": "white"}
    planted["created"] = "2020-01-01T00:00:00.000Z"
    who = node.people.as_person("aki").person
    body = node.publisher.publish(who, node.default_collection().collection_id,
                                  [planted]).body
    assert body["failure_count"] == 1, \
        "a national marking-definition with properties outside its id was accepted"
    assert "differs in created, definition" in body["failures"][0]["message"]
    # the marking intelpact builds for that label is used instead, and is what is stored
    ind = indicator("marked 極秘 // REL TO JPN, NZL")
    assert stored(publish(node, [ind], "極秘", ("NZL",))) == [ind["id"]]
    (held,) = node.store.held([planted["id"]])
    assert "definition" not in json.loads(held.body)


def test_a_liaison_publishes_nothing_at_the_node_they_are_posted_to(node: Node) -> None:
    """An NZL liaison officer at JPN's node, with the publisher role, publishing NZL
    information under NZL's own marking: refused (rule ``party``) and audited, the
    marking-definition and the object alike. Stored, the object would be signed by JPN's
    node and go out from it as JPN's node's, though no JPN person decided it."""
    node.people.add("kiri", party="NZL", clearance="SECRET", roles=["analyst", "publisher"])
    ind = indicator("from the liaison")
    body = publish_as(node, "kiri", [ind], "SECRET", ("JPN",))
    assert body["success_count"] == 0, body["successes"]
    failures = messages(body)
    assert "only JPN's people publish at JPN's node" in failures[ind["id"]]
    assert node.store.held([ind["id"]]) == []
    denials = [json.loads(d.body) for d in node.store.find_audit(AuditFilter(kinds=("deny",)))]
    assert any(d.get("reason", "").startswith("kiri is a NZL national at JPN's node")
               for d in denials), denials
    # nor a statement marking-definition, which has no national label to check
    statement = {"type": "marking-definition", "spec_version": "2.1",
                 "id": stix_id("marking-definition"), "created": T0,
                 "definition_type": "statement",
                 "definition": {"statement": "Copyright the liaison"}}
    body = publish_as(node, "kiri", [statement])
    assert body["success_count"] == 0 and "only JPN's people publish" in \
        messages(body)[statement["id"]]
    # a JPN person of the node publishes the same as before
    assert publish_as(node, "aki", [indicator("aki's")], "秘", ("NZL",))["failure_count"] == 0
    assert publish_as(node, "aki", [statement])["failure_count"] == 0


def test_a_marking_definition_with_markings_of_its_own_is_refused(node: Node) -> None:
    """A statement marking-definition that carries ``object_marking_refs`` (TLP:RED) is
    refused with the reason, and so is the object citing it: stored, it would have been
    held, served and released at its own label, its TLP:RED ignored."""
    statement = {"type": "marking-definition", "spec_version": "2.1",
                 "id": stix_id("marking-definition"), "created": T0,
                 "definition_type": "statement", "definition": {"statement": "Copyright"},
                 "object_marking_refs": ["marking-definition--5e57c739-391a-4eb3-b6be-"
                                         "7d15ca92d5ed"]}
    ind = indicator("cites it", object_marking_refs=[statement["id"]])
    body = publish_as(node, "aki", [statement, ind], "秘", ("NZL",))
    failures = messages(body)
    assert "a marking-definition carries no markings of its own but TLP:CLEAR, TLP:WHITE " \
        "and statements (object_marking_refs: marking-definition--5e57c739" in \
        failures[statement["id"]]
    assert ind["id"] in failures and node.store.held([ind["id"]]) == []
    assert node.store.marking(statement["id"]) is None
    # without them it is stored
    del statement["object_marking_refs"]
    assert publish_as(node, "aki", [statement, ind], "秘", ("NZL",))["failure_count"] == 0


TLP_CLEAR = "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"


def test_a_feeds2stix_shaped_bundle_with_marked_statements_is_published(node: Node) -> None:
    """Shaped as muchdogesec feeds2stix writes them: the tool's statement
    marking-definition marked TLP:CLEAR, the feed's statement marked TLP:CLEAR and the
    tool's statement, and objects citing the statements. None of those markings restricts
    anything, so the definitions are stored (they were refused whole) and so is what cites
    them; one in the same bundle marked TLP:RED is still refused, and what cites it. One
    naming itself is refused by validation (STIX 2.1 forbids it, section 7.2.1)."""
    tool = "marking-definition--" + str(uuid.uuid5(uuid.NAMESPACE_URL, "feeds2stix"))
    feed = "marking-definition--" + str(uuid.uuid5(uuid.NAMESPACE_URL, "feeds2stix/feed"))
    red, itself = stix_id("marking-definition"), stix_id("marking-definition")

    def statement(mid: str, text: str, refs: list[str]) -> dict:
        return {"type": "marking-definition", "spec_version": "2.1", "id": mid,
                "created": "2020-01-01T00:00:00.000Z", "definition_type": "statement",
                "definition": {"statement": text}, "object_marking_refs": refs}
    bundle = [
        statement(tool, "This object was created using: "
                  "https://github.com/muchdogesec/feeds2stix", [TLP_CLEAR]),
        statement(feed, "Origin data source: https://example.org/feed", [TLP_CLEAR, tool]),
        statement(red, "Copyright", ["marking-definition--5e57c739-391a-4eb3-b6be-"
                                     "7d15ca92d5ed"]),
        statement(itself, "Names itself", [TLP_CLEAR, itself]),
    ]
    ind = indicator("from the feed", object_marking_refs=[tool, feed])
    cites_red = indicator("cites the TLP:RED one", object_marking_refs=[red])
    body = publish_as(node, "aki", [*bundle, ind, cites_red], "秘", ("NZL",))
    failures = messages(body)
    assert set(failures) == {red, itself, cites_red["id"]}, failures
    assert "no markings of its own but TLP:CLEAR, TLP:WHITE and statements " \
        "(object_marking_refs: marking-definition--5e57c739" in failures[red]
    assert "must not name the marking itself" in failures[itself]
    assert node.store.marking(tool) is not None and node.store.marking(feed) is not None
    assert node.store.marking(red) is None
    assert node.store.held([ind["id"]]) and node.store.held([cites_red["id"]]) == []
