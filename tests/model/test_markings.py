"""Marking-definitions: intelpact's national marking, TLP 1.0/2.0 and ACS 3.0, the
OASIS example corpus, and resolving an object's (granular) markings into labels."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785

from intelpact.errors import IntelpactError
from intelpact.model import (
    EXTENSION_ID,
    Agreement,
    Label,
    LabelError,
    MarkingError,
    Markings,
    banner,
    national_marking,
    parse_marking,
)
from intelpact.model.markings import (
    ACS_EXTENSION_ID,
    MARKING_NAMESPACE,
    TLP1_IDS,
    TLP2_EXTENSION_ID,
    TLP2_IDS,
    marking_id,
    resolve_selector,
)

ROOT = Path(__file__).resolve().parents[2]
OASIS = ROOT / "tests" / "data" / "stix" / "oasis-examples"
DOCS = OASIS / "cti-documentation"
COMMON = OASIS / "stix-common-objects"
ACS_EXAMPLES = COMMON / "acs-marking-definition-3a6" / "examples"

TLP_GREEN_2 = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
TLP_RED_1 = "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed"
TLP_AMBER_1 = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
TLP_GREEN_1 = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def definitions(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in bundle["objects"] if o.get("type") == "marking-definition"]


def obj(*refs: str, **extra: Any) -> dict[str, Any]:
    """A small STIX object carrying ``refs`` as object markings."""
    o: dict[str, Any] = {"type": "indicator", "id": "indicator--0d2b5b3e-2a8a-4a9c-9e7d-"
                         "1b0b3f0c8a11", "name": "n", "description": "d",
                         "indicator_types": ["a", "b"], "object_marking_refs": list(refs)}
    o.update(extra)
    return o


def props_of(marking: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = marking["extensions"][EXTENSION_ID]
    return result


# -- national markings ----------------------------------------------------------------

def test_national_marking_shape(jn: Agreement) -> None:
    m = national_marking(jn, "JPN", "極秘", rel_to=["NZL"])
    assert m["type"] == "marking-definition" and m["spec_version"] == "2.1"
    assert m["name"] == "極秘 // REL TO JPN, NZL"
    assert set(m) == {"type", "spec_version", "id", "created", "name", "extensions"}
    assert props_of(m) == {
        "extension_type": "property-extension", "agreement": "jpn-nzl-isa",
        "originator": "JPN", "level": "極秘",
        "equivalents": [{"party": "JPN", "level": "極秘"}, {"party": "NZL", "level": "SECRET"}],
        "rel_to": ["JPN", "NZL"],
    }
    # a UUIDv5 over the RFC 8785 form of the extension properties
    expected = uuid.uuid5(MARKING_NAMESPACE, rfc8785.dumps(props_of(m)).decode())
    assert m["id"] == f"marking-definition--{expected}"
    assert uuid.UUID(m["id"].split("--")[1]).version == 5


def test_national_marking_records_treat_as_equivalents(jn: Agreement) -> None:
    m = national_marking(jn, "NZL", "RESTRICTED", rel_to=["JPN"])
    assert props_of(m)["equivalents"] == [
        {"party": "JPN", "level": "秘", "treat_as": True},
        {"party": "NZL", "level": "RESTRICTED"}]
    assert m["name"] == "RESTRICTED // REL TO NZL, JPN"


def test_national_marking_omits_parties_without_equivalent(pm: Agreement) -> None:
    m = national_marking(pm, "NZL", "CONFIDENTIAL")
    assert [e["party"] for e in props_of(m)["equivalents"]] == ["NZL", "JPN"]


@pytest.mark.parametrize("words", ["極秘", "Gokuhi", "gokuhi", "特定秘密", "SECRET"])
def test_national_marking_is_deterministic(jn: Agreement, words: str) -> None:
    reference = national_marking(jn, "JPN", "極秘", caveats=["JPNEO"],
                                 communities=["MARITIME", "CLIMATE"])
    again = national_marking(jn, "JPN", words, rel_to=["JPN"], caveats=["JPNEO"],
                             communities=["CLIMATE", "MARITIME"])
    assert again == reference
    assert rfc8785.dumps(again) == rfc8785.dumps(reference)
    reference = national_marking(jn, "JPN", "極秘", rel_to=["NZL"])
    again = national_marking(jn, "JPN", words, rel_to=["NZL", "JPN", "NZL"])
    assert again == reference
    assert rfc8785.dumps(again) == rfc8785.dumps(reference)


def test_national_marking_without_rel_to_is_originator_only(jn: Agreement) -> None:
    m = national_marking(jn, "NZL", "SECRET")
    assert props_of(m)["rel_to"] == ["NZL"]
    assert m == national_marking(jn, "NZL", "SECRET", rel_to=["NZL"])


def test_different_content_gives_different_ids(jn: Agreement, jna: Agreement) -> None:
    variants = [
        national_marking(jn, "JPN", "極秘", rel_to=["NZL"]),
        national_marking(jn, "JPN", "極秘"),
        national_marking(jn, "JPN", "極秘", caveats=["JPNEO"]),
        national_marking(jn, "JPN", "極秘", rel_to=["NZL"], communities=["MARITIME"]),
        national_marking(jn, "JPN", "極秘", rel_to=["NZL"], communities=["CLIMATE"]),
        national_marking(jn, "JPN", "秘", rel_to=["NZL"]),
        national_marking(jn, "NZL", "SECRET", rel_to=["JPN"]),
        national_marking(jna, "JPN", "極秘", rel_to=["NZL"]),
    ]
    assert len({m["id"] for m in variants}) == len(variants)


def test_national_marking_round_trip(jn: Agreement) -> None:
    m = national_marking(jn, "NZL", "SECRET", rel_to=["JPN"], communities=["MARITIME"])
    markings = Markings(jn)
    part = markings.add(m)
    assert (part.kind, part.rank, part.originator) == ("national", 5, "NZL")
    assert part.rel_to == frozenset({"NZL", "JPN"})
    labels = markings.label(obj(m["id"]))
    expected = Label("jpn-nzl-isa", 5, "NZL", frozenset({"NZL", "JPN"}), frozenset(),
                     frozenset({frozenset({"MARITIME"})}))
    assert labels.base == labels.banner == expected
    assert labels.portions == {}
    assert banner(labels.base, jn, "NZL") == m["name"] == "SECRET // MARITIME // REL TO NZL, JPN"
    assert banner(labels.base, jn, "JPN") == "極秘 // MARITIME // REL TO NZL, JPN"
    # re-adding the same definition is a no-op
    assert markings.add(copy.deepcopy(m)) == part


def test_round_trip_with_caveat(jn: Agreement) -> None:
    m = national_marking(jn, "NZL", "TOP SECRET", caveats=["NZEO"])
    markings = Markings(jn)
    markings.add(m)
    label = markings.label(obj(m["id"])).base
    assert label == Label(jn.id, 6, "NZL", frozenset({"NZL"}), frozenset({"NZEO"}))
    assert m["name"] == "TOP SECRET // NZEO // REL TO NZL"


def test_markings_refuses_a_different_body_under_a_known_id(jn: Agreement) -> None:
    markings = Markings(jn)
    m = national_marking(jn, "JPN", "秘", rel_to=["NZL"])
    markings.add(m)
    # a national marking is exactly what its content builds: another `created` (not part
    # of the id), or no name, is refused for itself, before it is compared
    later = {**copy.deepcopy(m), "created": "2026-02-01T00:00:00.000Z"}
    nameless = copy.deepcopy(m)
    del nameless["name"]
    for other, differs in ((later, "created"), (nameless, "name")):
        with pytest.raises(MarkingError, match=f"this one differs in {differs}$"):
            markings.add(other)
    # a marking whose id is not derived from its content cannot be versioned either
    statement = {"type": "marking-definition", "spec_version": "2.1",
                 "id": "marking-definition--" + str(uuid.UUID(int=7)),
                 "created": "2026-01-01T00:00:00.000Z", "definition_type": "statement",
                 "definition": {"statement": "Copyright 2026"}}
    markings.add(statement)
    with pytest.raises(MarkingError, match="a different marking-definition with this id"):
        markings.add({**statement, "definition": {"statement": "Copyright 2027"}})
    # a body whose name is not its banner is refused before it is compared
    renamed = {**copy.deepcopy(m), "name": "something else"}
    with pytest.raises(MarkingError, match="does not say what it marks"):
        markings.add(renamed)


@pytest.mark.parametrize("originator,level,kwargs,message", [
    ("AUS", "SECRET", {}, "AUS is not a party to agreement jpn-nzl-isa"),
    ("JPN", "COSMIC", {}, "JPN has no level 'COSMIC'"),
    ("JPN", "RESTRICTED", {}, "JPN has no level equivalent to 'RESTRICTED'"),
    ("JPN", "IN-CONFIDENCE", {}, "JPN has no level equivalent to 'IN-CONFIDENCE'"),
    ("JPN", "極秘", {"rel_to": ["AUS"]}, "REL TO AUS: AUS is not a party"),
    ("NZL", "SECRET", {"rel_to": ["JPN"], "caveats": ["NZEO"]},
     "caveat NZEO is releasable only to NZL but REL TO names JPN"),
    ("NZL", "SECRET", {"caveats": ["ORCON"]}, "caveat ORCON is not known"),
    # an eyes-only caveat belongs to the parties it is releasable to
    ("JPN", "極秘", {"caveats": ["NZEO"]},
     "caveat NZEO is releasable only to NZL: a JPN originator cannot apply it"),
    ("NZL", "SECRET", {"caveats": ["JPNEO"]},
     "caveat JPNEO is releasable only to JPN: a NZL originator cannot apply it"),
    ("NZL", "SECRET", {"communities": ["FISHERIES"]}, "community FISHERIES is not known"),
])
def test_national_marking_errors(jn: Agreement, originator: str, level: str,
                                 kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(MarkingError, match=message) as info:
        national_marking(jn, originator, level, **kwargs)
    assert info.value.hint


def test_no_equivalent_in_rel_to(pm: Agreement) -> None:
    with pytest.raises(MarkingError, match="REL TO FJI: FJI has no equivalent of CONFIDENTIAL "
                       "under pacific-maritime") as info:
        national_marking(pm, "NZL", "CONFIDENTIAL", rel_to=["FJI"])
    assert "remove FJI from REL TO" in (info.value.hint or "")
    # RESTRICTED is fine for Fiji
    assert props_of(national_marking(pm, "NZL", "RESTRICTED", rel_to=["FJI"]))["rel_to"] == [
        "NZL", "FJI"]


# -- every parse_marking error path ------------------------------------------------------

Mutation = Callable[[dict[str, Any], Agreement], Any]


def _described(props: dict[str, Any], a: Agreement) -> Label | None:
    """The label a national extension describes, exactly as written (REL TO not completed
    with the originator), or None when it describes none."""
    lists = (props.get("rel_to"), props.get("caveats", []), props.get("communities", []))
    if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in lists):
        return None
    if not isinstance(props.get("level"), str):
        return None
    try:
        rank = a.rank_of(props.get("originator", ""), props["level"])
    except KeyError:
        return None
    comms = frozenset(props.get("communities", []))
    return Label(a.id, rank, props["originator"], frozenset(props["rel_to"]),
                 frozenset(props.get("caveats", [])),
                 frozenset({comms}) if comms else frozenset(), add_originator=False)


def _rename(m: dict[str, Any], a: Agreement) -> dict[str, Any]:
    """Give the marking the name (banner) its extension describes, if it describes one."""
    label = _described(props_of(m), a)
    if label is not None:
        m["name"] = banner(label, a, label.originator)
    return m


def _ext(**changes: Any) -> Mutation:
    """Change the national extension's properties, and re-derive the id and the name so
    that the change is the marking's only defect."""

    def apply(m: dict[str, Any], a: Agreement) -> Any:
        props = props_of(m)
        for key, value in changes.items():
            if value is _DELETE:
                del props[key]
            else:
                props[key] = value
        m["id"] = marking_id(props)
        return _rename(m, a)

    return apply


_DELETE = object()


def _top(**changes: Any) -> Mutation:
    def apply(m: dict[str, Any], a: Agreement) -> Any:
        for key, value in changes.items():
            if value is _DELETE:
                del m[key]
            else:
                m[key] = value
        return m

    return apply


def _with(value: Any) -> Mutation:
    return lambda m, a: value


def _tampered_content(m: dict[str, Any], a: Agreement) -> Any:
    # a valid body (and name) of another marking, kept under this marking's id
    other = national_marking(a, "JPN", "機密", rel_to=["NZL"])
    m["extensions"], m["name"] = other["extensions"], other["name"]
    return m


def _narrowed(m: dict[str, Any], a: Agreement) -> Any:
    props_of(m)["rel_to"] = ["JPN"]  # canonical, but not what the id was made from
    return _rename(m, a)


def _stale_name(m: dict[str, Any], a: Agreement) -> Any:
    # a consistent id for narrowed content, under the old name
    props_of(m)["rel_to"] = ["JPN"]
    m["id"] = marking_id(props_of(m))
    return m


def _equivalents_disagree(m: dict[str, Any], a: Agreement) -> Any:
    props_of(m)["equivalents"][1]["level"] = "CONFIDENTIAL"
    m["id"] = marking_id(props_of(m))
    return m


def _treat_as_dropped(m: dict[str, Any], a: Agreement) -> Any:
    props = props_of(national_marking(a, "NZL", "RESTRICTED"))
    del props["equivalents"][0]["treat_as"]
    m["extensions"][EXTENSION_ID] = props
    m["id"] = marking_id(props)
    return m


NATIONAL_ERRORS: list[tuple[str, Mutation, str]] = [
    ("not-a-dict", _with(["marking-definition"]), "not a marking-definition object"),
    ("wrong-type", _top(type="indicator"), "not a marking-definition object"),
    ("no-id", _top(id=_DELETE), "id None is malformed"),
    ("bad-id", _top(id="indicator--1"), "'indicator--1' is malformed"),
    ("extensions-not-object", _top(extensions="x"), "extensions must be an object"),
    ("unknown-extension", lambda m, a: m["extensions"].update(
        {"extension-definition--00000000-0000-4000-8000-000000000000": {}}) or m,
     "unknown marking extension extension-definition--00000000"),
    ("no-extension-no-type", _top(extensions={}),
     "exactly one of definition_type or a marking extension"),
    ("both-type-and-extension", _top(definition_type="tlp"),
     "exactly one of definition_type or a marking extension"),
    ("two-marking-extensions", lambda m, a: m["extensions"].update(
        {TLP2_EXTENSION_ID: {"tlp_2_0": "red"}}) or m,
     "exactly one of definition_type or a marking extension"),
    ("extension-not-object", lambda m, a: m["extensions"].update({EXTENSION_ID: "x"}) or m,
     "the intelpact extension must be an object"),
    ("unknown-property", _ext(colour="red"), "unknown properties colour"),
    ("missing-agreement", _ext(agreement=_DELETE), "lacks 'agreement'"),
    ("missing-originator", _ext(originator=_DELETE), "lacks 'originator'"),
    ("missing-level", _ext(level=_DELETE), "lacks 'level'"),
    ("missing-equivalents", _ext(equivalents=_DELETE), "lacks 'equivalents'"),
    ("missing-rel-to", _ext(rel_to=_DELETE), "lacks 'rel_to'"),
    ("missing-extension-type", _ext(extension_type=_DELETE), "lacks 'extension_type'"),
    ("wrong-extension-type", _ext(extension_type="new-sdo"),
     "extension_type must be 'property-extension'"),
    ("unknown-agreement", _ext(agreement="jpn-usa-gsomia"),
     "marking is under agreement 'jpn-usa-gsomia', not 'jpn-nzl-isa'"),
    ("originator-not-party", _ext(originator="AUS"), "originator 'AUS' is not a party"),
    ("level-not-string", _ext(level=5), "level must be a string"),
    ("level-unknown", _ext(level="SECRET"), "JPN has no level 'SECRET'"),
    ("level-romanised", _ext(level="Gokuhi"), "JPN has no level 'Gokuhi'"),
    ("rel-to-not-list", _ext(rel_to="JPN, NZL"), "rel_to must be a list of strings"),
    ("rel-to-not-strings", _ext(rel_to=["JPN", 554]), "rel_to must be a list of strings"),
    ("caveats-not-list", _ext(caveats="JPNEO"), "caveats must be a list of strings"),
    ("communities-not-list", _ext(communities="MARITIME"),
     "communities must be a list of strings"),
    ("unknown-caveat", _ext(caveats=["ORCON"]), "caveat ORCON is not known to agreement"),
    ("unknown-community", _ext(communities=["FISHERIES"]), "community FISHERIES is not known"),
    ("rel-to-non-party", _ext(rel_to=["JPN", "AUS", "NZL"]), "REL TO AUS: AUS is not a party"),
    ("caveat-wider-than-allowed", _ext(caveats=["JPNEO"]),
     "caveat JPNEO is releasable only to JPN but REL TO names NZL"),
    ("rel-to-order", _ext(rel_to=["NZL", "JPN"]), "not in canonical form"),
    ("rel-to-without-originator", _ext(rel_to=["NZL"]), "REL TO must name the originator JPN"),
    ("rel-to-empty", _ext(rel_to=[]), "REL TO must name the originator JPN"),
    ("rel-to-duplicate", _ext(rel_to=["JPN", "NZL", "NZL"]), "not in canonical form"),
    ("empty-caveats-listed", _ext(caveats=[]), "not in canonical form"),
    ("caveats-unsorted", _ext(rel_to=["JPN"], caveats=["TLP-RED", "JPNEO"]),
     "not in canonical form"),
    ("caveat-eyes-only-of-another-party", _ext(rel_to=["JPN"], caveats=["NZEO"]),
     "caveat NZEO is releasable only to NZL: a JPN originator cannot apply it"),
    ("name-not-string", _top(name=5), "name must be a string"),
    ("name-not-the-banner", _top(name="something else"), "the marking's name 'something "
     "else' does not say what it marks ('極秘 // REL TO JPN, NZL')"),
    ("name-in-the-partners-words", _top(name="SECRET // REL TO JPN, NZL"),
     "does not say what it marks"),
    ("name-portion-mark", _top(name="(極秘//REL TO JPN, NZL)"), "does not say what it marks"),
    ("name-stale", _stale_name, "the marking's name '極秘 // REL TO JPN, NZL' does not say "
     "what it marks ('極秘 // REL TO JPN')"),
    ("equivalents-disagree", _equivalents_disagree, "equivalents disagree"),
    ("equivalents-missing-party", lambda m, a: _ext(
        equivalents=[{"party": "JPN", "level": "極秘"}])(m, a), "equivalents disagree"),
    ("treat-as-dropped", _treat_as_dropped, "equivalents disagree"),
    ("equivalents-not-list", _ext(equivalents="JPN 極秘"),
     "equivalents must be a list of objects, each naming its party as a string"),
    ("equivalent-not-object", _ext(equivalents=["JPN"]),
     "equivalents must be a list of objects, each naming its party as a string"),
    ("equivalent-party-a-list", lambda m, a: _ext(equivalents=[
        *props_of(m)["equivalents"], {"party": ["AUS"]}])(m, a),
     "equivalents must be a list of objects, each naming its party as a string"),
    ("tampered-id", _top(id="marking-definition--" + str(uuid.UUID(int=1))),
     "the id does not match the marking's content"),
    ("tampered-content", _tampered_content, "the id does not match the marking's content"),
    ("tampered-rel-to", _narrowed, "the id does not match the marking's content"),
    ("another-created", _top(created="2020-01-01T00:00:00.000Z"),
     "a national marking-definition carries exactly what intelpact builds from its "
     "content; this one differs in created"),
    ("a-tlp-definition-beside", _top(definition={"tlp": "white"}), "differs in definition"),
    ("no-spec-version", _top(spec_version=_DELETE), "differs in spec_version"),
    ("no-name", _top(name=_DELETE), "differs in name"),
    ("more-properties", _top(labels=["x"], external_references=[{"source_name": "x"}]),
     "differs in external_references, labels"),
]


@pytest.mark.parametrize("mutate,message",
                         [pytest.param(m, s, id=i) for i, m, s in NATIONAL_ERRORS])
def test_national_parse_errors(jn: Agreement, mutate: Mutation, message: str) -> None:
    good = national_marking(jn, "JPN", "極秘", rel_to=["NZL"])
    assert parse_marking(jn, copy.deepcopy(good)).rank == 5  # the baseline parses
    bad = mutate(copy.deepcopy(good), jn)
    with pytest.raises(MarkingError) as info:
        parse_marking(jn, bad)
    assert message in info.value.message


def test_a_national_markings_name_is_its_banner(jn: Agreement) -> None:
    """The name must say what the marking marks: the banner in the originator's own
    words. A marking without a name is not what intelpact builds: refused."""
    m = national_marking(jn, "NZL", "RESTRICTED", rel_to=["JPN"], communities=["MARITIME"])
    assert m["name"] == "RESTRICTED // MARITIME // REL TO NZL, JPN"
    part = parse_marking(jn, m)
    label = Label(jn.id, part.rank or 0, "NZL", part.rel_to, part.caveats, part.communities)
    assert m["name"] == banner(label, jn, "NZL")
    nameless = copy.deepcopy(m)
    del nameless["name"]
    for unnamed in (nameless, {**copy.deepcopy(m), "name": None}):
        with pytest.raises(MarkingError, match="this one differs in name$"):
            parse_marking(jn, unnamed)
    # the partner's words, even for the same label, do not name it
    japanese = banner(label, jn, "JPN")
    assert japanese == "秘 [TREAT AS NZL RESTRICTED] // MARITIME // REL TO NZL, JPN"
    for wrong in (japanese, m["name"].lower(), m["name"] + " ", "RESTRICTED"):
        with pytest.raises(MarkingError) as info:
            parse_marking(jn, {**copy.deepcopy(m), "name": wrong})
        assert info.value.message == (
            f"{m['id']}: the marking's name {wrong!r} does not say what it marks "
            f"('RESTRICTED // MARITIME // REL TO NZL, JPN')")
        assert info.value.hint == ("a national marking's name is its banner in the "
                                   "originator's words")
    with pytest.raises(MarkingError, match="name must be a string"):
        parse_marking(jn, {**copy.deepcopy(m), "name": ["RESTRICTED"]})


def test_the_name_rule_applies_to_national_markings_only(jn: Agreement) -> None:
    tlp = {"type": "marking-definition", "spec_version": "2.1", "id": TLP_GREEN_2,
           "name": "anything at all", "created": "2022-10-01T00:00:00.000Z",
           "extensions": {TLP2_EXTENSION_ID: {"extension_type": "property-extension",
                                              "tlp_2_0": "green"}}}
    assert parse_marking(jn, tlp).kind == "TLP 2.0"


def test_rel_to_must_name_the_originator(jn: Agreement) -> None:
    good = national_marking(jn, "NZL", "SECRET", rel_to=["JPN"])
    for rel in (["JPN"], []):
        bad = _ext(rel_to=rel)(copy.deepcopy(good), jn)
        with pytest.raises(MarkingError) as info:
            parse_marking(jn, bad)
        assert info.value.message == f"{bad['id']}: REL TO must name the originator NZL"
        assert info.value.hint == "list the originator first in rel_to"
    # national_marking always names it, first
    assert props_of(national_marking(jn, "NZL", "SECRET", rel_to=["JPN", "NZL"]))["rel_to"] \
        == ["NZL", "JPN"]


@pytest.mark.parametrize("originator,level,caveat,owner,owner_level", [
    ("JPN", "極秘", "NZEO", "NZL", "SECRET"),
    ("NZL", "SECRET", "JPNEO", "JPN", "極秘"),
])
def test_an_eyes_only_caveat_is_applied_only_by_its_parties(
        jn: Agreement, originator: str, level: str, caveat: str, owner: str,
        owner_level: str) -> None:
    """Even kept national (REL TO the originator only), another party's eyes-only caveat
    cannot be applied: its own nationals could never hold it."""
    message = (f"caveat {caveat} is releasable only to {owner}: a {originator} originator "
               "cannot apply it")
    for rel in (None, [originator], [owner]):
        with pytest.raises(MarkingError) as info:
            national_marking(jn, originator, level, rel_to=rel, caveats=[caveat])
        assert info.value.message == message
        assert info.value.hint == f"drop {caveat}; use REL TO {originator} to keep it national"
    # the owner applies it, kept to itself
    own = national_marking(jn, owner, owner_level, caveats=[caveat])
    assert props_of(own)["caveats"] == [caveat] and props_of(own)["rel_to"] == [owner]
    # a received marking is held to the same rule
    received = _ext(caveats=[caveat], rel_to=[originator])(
        copy.deepcopy(national_marking(jn, originator, level)), jn)
    with pytest.raises(MarkingError, match=message):
        parse_marking(jn, received)


def test_eyes_only_caveats_under_the_trilateral(jna: Agreement) -> None:
    austeo = national_marking(jna, "AUS", "SECRET", caveats=["AUSTEO"])
    assert austeo["name"] == "SECRET // AUSTEO // REL TO AUS"
    with pytest.raises(MarkingError, match="caveat AUSTEO is releasable only to AUS but REL "
                       "TO names NZL"):
        national_marking(jna, "AUS", "SECRET", rel_to=["NZL"], caveats=["AUSTEO"])
    with pytest.raises(MarkingError, match="caveat AUSTEO is releasable only to AUS: a NZL "
                       "originator cannot apply it"):
        national_marking(jna, "NZL", "SECRET", caveats=["AUSTEO"])
    with pytest.raises(MarkingError, match="caveat NZEO is releasable only to NZL: a AUS "
                       "originator cannot apply it"):
        national_marking(jna, "AUS", "SECRET", caveats=["NZEO", "AUSTEO"])
    # a caveat with no releasability restriction is anyone's
    assert props_of(national_marking(jna, "JPN", "極秘", rel_to=["AUS"],
                                     caveats=["TLP-RED"]))["caveats"] == ["TLP-RED"]


def test_wrong_agreement_is_refused(jn: Agreement, jna: Agreement) -> None:
    m = national_marking(jn, "JPN", "極秘", rel_to=["NZL"])
    with pytest.raises(MarkingError, match="under agreement 'jpn-nzl-isa', not "
                       "'jpn-nzl-aus-isa'") as info:
        parse_marking(jna, m)
    assert "pinned agreement" in (info.value.hint or "")


def test_no_equivalent_in_a_received_marking(pm: Agreement) -> None:
    good = national_marking(pm, "NZL", "CONFIDENTIAL")
    bad = _ext(rel_to=["NZL", "FJI"])(copy.deepcopy(good), pm)
    with pytest.raises(MarkingError, match="REL TO FJI: FJI has no equivalent of CONFIDENTIAL"):
        parse_marking(pm, bad)


def _tlp1(mid: str, tlp: Any) -> dict[str, Any]:
    return {"type": "marking-definition", "spec_version": "2.1", "id": mid,
            "created": "2017-01-20T00:00:00.000Z", "definition_type": "tlp",
            "definition": {"tlp": tlp}}


def _tlp2(mid: str, props: Any) -> dict[str, Any]:
    return {"type": "marking-definition", "spec_version": "2.1", "id": mid,
            "created": "2022-10-01T00:00:00.000Z", "extensions": {TLP2_EXTENSION_ID: props}}


def _acs(control_set: Any, **extra: Any) -> dict[str, Any]:
    props = {"extension_type": "property-extension", "control_set": control_set, **extra}
    return {"type": "marking-definition", "spec_version": "2.1",
            "id": "marking-definition--20864905-06a0-47be-a04c-2164af17d635",
            "created": "2020-06-18T00:00:00Z", "extensions": {ACS_EXTENSION_ID: props}}


RANDOM_ID = "marking-definition--" + str(uuid.UUID(int=7))
FOREIGN_ERRORS: list[tuple[str, Any, str]] = [
    ("tlp1-unknown-id", _tlp1(RANDOM_ID, "red"), "must use one of the four standard ids"),
    ("tlp1-content-mismatch", _tlp1(TLP_GREEN_1, "red"),
     "is TLP:GREEN but its definition says 'red'"),
    ("tlp1-clear-is-not-1.0", _tlp1(TLP_GREEN_1, "clear"), "its definition says 'clear'"),
    ("tlp1-no-definition", {**_tlp1(TLP_RED_1, "red"), "definition": "red"},
     "is TLP:RED but its definition says None"),
    ("tlp1-2.0-id", _tlp1(TLP_GREEN_2, "green"),
     "is the standard id of TLP 2.0 TLP:GREEN: it may only be that TLP 2.0 definition"),
    ("tlp2-unknown-id", _tlp2(RANDOM_ID, {"tlp_2_0": "green"}),
     "must use one of the five standard ids"),
    ("tlp2-1.0-id", _tlp2(TLP_GREEN_1, {"tlp_2_0": "green"}),
     "is the standard id of TLP 1.0 TLP:GREEN: it may only be that TLP 1.0 definition"),
    ("tlp2-content-mismatch", _tlp2(TLP_GREEN_2, {"tlp_2_0": "amber"}),
     "is TLP:GREEN but its extension says 'amber'"),
    ("tlp2-not-object", _tlp2(TLP_GREEN_2, "green"), "its extension says None"),
    ("statement-without-text", {"type": "marking-definition", "id": RANDOM_ID,
                                "definition_type": "statement", "definition": {}},
     "needs definition.statement"),
    ("unknown-definition-type", {"type": "marking-definition", "id": RANDOM_ID,
                                 "definition_type": "nato", "definition": {}},
     "unknown definition_type 'nato'"),
    ("acs-not-object", {**_acs({}), "extensions": {ACS_EXTENSION_ID: "TS"}},
     "the ACS extension must be an object"),
    ("acs-unknown-property", _acs({"classification": "U"}, colour="red"),
     "unknown ACS 3.0 properties colour"),
    ("acs-no-control-set", {**_acs({}), "extensions": {ACS_EXTENSION_ID: {}}},
     "needs control_set.classification"),
    ("acs-no-classification", _acs({"entity": ["GOV"]}), "needs control_set.classification"),
    ("acs-unknown-control", _acs({"classification": "U", "releasable_to": ["JPN"]}),
     "unknown ACS control_set properties releasable_to"),
    ("acs-unknown-classification", _acs({"classification": "CTS"}),
     "ACS classification 'CTS' has no mapping in agreement jpn-nzl-isa"),
    ("acs-nationality-alpha2", _acs({"classification": "U", "permitted_nationalities": ["NZ"]}),
     "permitted_nationalities 'NZ' is not an ISO 3166-1 alpha-3 code"),
    ("acs-nationalities-not-list", _acs({"classification": "U",
                                         "permitted_nationalities": "NZL"}),
     "permitted_nationalities must be a list of strings"),
    ("acs-caveat-not-list", _acs({"classification": "U", "sensitivity": "LES"}),
     "sensitivity must be a list of strings"),
    ("acs-entity-not-strings", _acs({"classification": "U", "entity": [1]}),
     "entity must be a list of strings"),
    ("acs-formal-determination", _acs({"classification": "U", "formal_determination": "x"}),
     "formal_determination must be a list of strings"),
    # ALL beside codes was read as ALL, the wider (found in review)
    ("acs-nationalities-all-and-codes", _acs({"classification": "U",
                                              "permitted_nationalities": ["NZL", "ALL"]}),
     "permitted_nationalities names ALL and 1 other value(s): ALL or a list, not both"),
    ("acs-shareability-all-and-codes", _acs({"classification": "U",
                                             "shareability": ["ALL", "A", "B"]}),
     "shareability names ALL and 2 other value(s)"),
]


@pytest.mark.parametrize("definition,message",
                         [pytest.param(d, s, id=i) for i, d, s in FOREIGN_ERRORS])
def test_foreign_parse_errors(jn: Agreement, definition: Any, message: str) -> None:
    with pytest.raises(MarkingError) as info:
        parse_marking(jn, copy.deepcopy(definition))
    assert message in info.value.message


def test_acs_classification_unmapped_under_pacific(pm: Agreement) -> None:
    for classification in ("S", "TS"):
        with pytest.raises(MarkingError, match=f"ACS classification '{classification}' has no "
                           "mapping in agreement pacific-maritime") as info:
            parse_marking(pm, _acs({"classification": classification}))
        assert "[markings.acs]" in (info.value.hint or "")


def test_marking_errors_are_intelpact_errors() -> None:
    assert issubclass(MarkingError, IntelpactError)
    assert issubclass(LabelError, IntelpactError)


# -- the OASIS example corpus -------------------------------------------------------------

def _tlp_expected(a: Agreement, name: str, originator: str) -> Label:
    """The documented mapping (docs/markings.md) of a TLP marking on an object."""
    rank = a.shared_rank("UNCLASSIFIED")  # the lowest covered level of every sample
    assert rank == min(a.covered)
    rel: frozenset[str] | None
    caveats: frozenset[str] = frozenset()
    if name in ("clear", "white"):
        rel = None
    elif name in ("green", "amber"):
        rel = frozenset(a.parties)
    else:
        rel = frozenset({originator})
        if name == "red":
            caveats = frozenset({"TLP-RED"})
    return Label(a.id, rank, originator, rel, caveats)


TLP2_FILES = [
    ("tlp-2.0/examples/tlp-clear.json", "clear"),
    ("tlp-2.0/examples/tlp-amber.json", "amber"),
    ("tlp-2.0/examples/tlp-amber+strict.json", "amber+strict"),
    ("objects/marking-definition/marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb.json",
     "green"),
    ("objects/marking-definition/marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003.json",
     "amber+strict"),
    ("objects/marking-definition/marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1.json",
     "red"),
]


@pytest.mark.parametrize("agreement", ["jn", "jna", "pm"])
@pytest.mark.parametrize("path,name", TLP2_FILES, ids=[n for _, n in TLP2_FILES])
def test_oasis_tlp2_definitions(request: pytest.FixtureRequest, agreement: str, path: str,
                                name: str) -> None:
    a: Agreement = request.getfixturevalue(agreement)
    (definition,) = definitions(load(COMMON / path))
    part = parse_marking(a, definition)
    assert part.kind == "TLP 2.0"
    assert TLP2_IDS[definition["id"]] == name
    markings = Markings(a)
    assert markings.add(definition) == part
    originator = a.parties[-1]
    label = markings.label(obj(definition["id"]), originator=originator).base
    assert label == _tlp_expected(a, name, originator)


@pytest.mark.parametrize("agreement", ["jn", "jna", "pm"])
def test_oasis_tlp1_definitions(request: pytest.FixtureRequest, agreement: str) -> None:
    a: Agreement = request.getfixturevalue(agreement)
    bundle = load(DOCS / "using-marking-definitions.json")
    amber, statement = definitions(bundle)
    part = parse_marking(a, amber)
    assert (part.kind, part.rank, part.rel_mode) == ("TLP 1.0", a.shared_rank("UNCLASSIFIED"),
                                                     "agreement")
    assert parse_marking(a, statement).kind == "statement"
    assert parse_marking(a, statement).rank is None
    markings = Markings(a)
    for d in definitions(bundle):
        markings.add(d)
    indicator = next(o for o in bundle["objects"] if o["type"] == "indicator")
    labels = markings.label(indicator, originator="JPN")
    assert labels.base == labels.banner == _tlp_expected(a, "amber", "JPN")
    assert labels.portions == {}
    identity = next(o for o in bundle["objects"] if o["type"] == "identity")
    with pytest.raises(LabelError, match="has no classification marking"):
        markings.label(identity, originator="JPN")


def test_tlp1_built_in_definitions_match_the_spec(jn: Agreement) -> None:
    for mid, name in TLP1_IDS.items():
        part = parse_marking(jn, _tlp1(mid, name))
        label = Markings(jn).label(obj(mid), originator="NZL").base
        assert Markings(jn).part(mid) == part
        assert label == _tlp_expected(jn, name, "NZL")


@pytest.mark.parametrize("mid,standard", [
    (TLP_RED_1, _tlp1(TLP_RED_1, "red")),
    (TLP_GREEN_2, _tlp2(TLP_GREEN_2, {"tlp_2_0": "green"})),
])
def test_a_standard_tlp_id_means_only_that_tlp_definition(jn: Agreement, mid: str,
                                                          standard: dict[str, Any]) -> None:
    """Regression: a statement marking under TLP:RED's standard id parsed, so a publisher
    (or a partner) had it learnt and stored, and after a restart it replaced the built-in
    TLP:RED: TLP:RED portions were served to people without the TLP-RED caveat."""
    markings = Markings(jn)
    built_in = markings.part(mid)
    other_tlp = _tlp2(mid, {"tlp_2_0": "red"}) if mid in TLP1_IDS else _tlp1(mid, "green")
    impostors = [
        {"type": "marking-definition", "spec_version": "2.1", "id": mid,
         "created": "2026-01-01T00:00:00.000Z", "definition_type": "statement",
         "definition": {"statement": "nothing to see"}},
        {**_acs({"classification": "U"}), "id": mid},
        other_tlp,
    ]
    for impostor in impostors:
        with pytest.raises(MarkingError, match=f"{mid} is the standard id of TLP") as info:
            markings.add(impostor)
        assert "issue a new id" in str(info.value.hint)
    assert markings.part(mid) == built_in and markings.definition(mid) is None
    assert markings.add(standard) == built_in  # the standard definition is taken


def test_tlp_banners(jn: Agreement) -> None:
    m = Markings(jn)
    red = m.label(obj(TLP_RED_1), originator="JPN").base
    assert banner(red, jn, "JPN") == "指定なし // TLP-RED // REL TO JPN"
    assert banner(red, jn, "NZL") == "UNCLASSIFIED // TLP-RED // REL TO JPN"
    green = m.label(obj(TLP_GREEN_2), originator="NZL").base
    assert banner(green, jn, "NZL") == "UNCLASSIFIED // REL TO NZL, JPN"


def test_tlp_without_originator_is_refused(jn: Agreement) -> None:
    with pytest.raises(LabelError, match="no originator") as info:
        Markings(jn).label(obj(TLP_AMBER_1))
    assert info.value.hint


ACS_CASES: dict[int, list[tuple[str, str, frozenset[str], frozenset[frozenset[str]]]]] = {
    # use case: [(marking id suffix, shared level, caveats, community clauses)]
    1: [("20864905", "TOP SECRET", frozenset(),
         frozenset({frozenset({"ACS-ENTITY-GOV", "ACS-ENTITY-CTR", "ACS-ENTITY-MIL"})}))],
    2: [("6010b3f4", "UNCLASSIFIED", frozenset(), frozenset())],
    3: [("e3896452", "SECRET", frozenset(), frozenset()),
        ("d0038fa3", "UNCLASSIFIED", frozenset(), frozenset())],
    4: [("ff7043e7", "UNCLASSIFIED", frozenset(), frozenset({
        frozenset({"ACS-PERMITTED_ORGANIZATIONS-USA.USG"}),
        frozenset({f"ACS-ENTITY-{e}" for e in ("MIL", "CTR", "GOV", "SVR", "SVC", "DEV",
                                                "NET")})}))],
    5: [("ff7043e7", "UNCLASSIFIED", frozenset({"ACS-SENSITIVITY-LES"}), frozenset({
        frozenset({"ACS-PERMITTED_ORGANIZATIONS-USA.USG", "ACS-PERMITTED_ORGANIZATIONS-USA.SLTT"}),
        frozenset({"ACS-ENTITY-MIL", "ACS-ENTITY-CTR", "ACS-ENTITY-GOV"})}))],
}


@pytest.mark.parametrize("agreement", ["jn", "jna"])
@pytest.mark.parametrize("case", sorted(ACS_CASES))
def test_oasis_acs_use_cases(request: pytest.FixtureRequest, agreement: str,
                             case: int) -> None:
    a: Agreement = request.getfixturevalue(agreement)
    bundle = load(ACS_EXAMPLES / f"acs-spec-use-case-{case}.json")
    defs = definitions(bundle)
    assert len(defs) == len(ACS_CASES[case])
    markings = Markings(a)
    for definition, (prefix, level, caveats, clauses) in zip(defs, ACS_CASES[case],
                                                             strict=True):
        assert definition["id"].startswith(f"marking-definition--{prefix}")
        part = parse_marking(a, definition)
        assert part.kind == "ACS 3.0"
        assert part.rank == a.shared_rank(level)
        assert part.rel_mode == "agreement"  # no permitted_nationalities in the control set
        assert part.caveats == caveats
        assert part.communities == clauses
        markings.add(definition)
        label = markings.label(obj(definition["id"]), originator="NZL").base
        assert label == Label(a.id, a.shared_rank(level), "NZL", frozenset(a.parties), caveats,
                              clauses)


def test_acs_use_case_3_objects_label(jn: Agreement) -> None:
    bundle = load(ACS_EXAMPLES / "acs-spec-use-case-3.json")
    markings = Markings(jn)
    for d in definitions(bundle):
        markings.add(d)
    by_type = {o["type"]: o for o in bundle["objects"]}
    address = markings.label(by_type["ipv4-addr"], originator="NZL").base
    actor = markings.label(by_type["threat-actor"], originator="NZL").base
    assert address == Label(jn.id, 0, "NZL", frozenset({"JPN", "NZL"}))
    assert actor == Label(jn.id, 5, "NZL", frozenset({"JPN", "NZL"}))
    assert actor.dominates(address) and not address.dominates(actor)
    with pytest.raises(LabelError, match="report--eff11c91.* has no classification marking"):
        markings.label(by_type["report"], originator="NZL")
    assert Markings(jn, default_rank=0).label(by_type["report"], originator="NZL").base == \
        Label(jn.id, 0, "NZL")


def test_acs_use_cases_4_and_5_share_an_id(jn: Agreement) -> None:
    """Upstream gives two different definitions the same id: the second is refused."""
    markings = Markings(jn)
    (four,) = definitions(load(ACS_EXAMPLES / "acs-spec-use-case-4.json"))
    (five,) = definitions(load(ACS_EXAMPLES / "acs-spec-use-case-5.json"))
    assert four["id"] == five["id"]
    markings.add(four)
    with pytest.raises(MarkingError, match="a different marking-definition with this id"):
        markings.add(five)


def test_acs_under_pacific(pm: Agreement) -> None:
    (uc1,) = definitions(load(ACS_EXAMPLES / "acs-spec-use-case-1.json"))
    with pytest.raises(MarkingError, match="'TS' has no mapping in agreement pacific-maritime"):
        parse_marking(pm, uc1)
    (uc2,) = definitions(load(ACS_EXAMPLES / "acs-spec-use-case-2.json"))
    assert parse_marking(pm, uc2).rank == pm.shared_rank("UNCLASSIFIED")


def test_acs_permitted_nationalities(jn: Agreement) -> None:
    part = parse_marking(jn, _acs({"classification": "C", "permitted_nationalities": ["NZL"]}))
    assert (part.rank, part.rel_mode, part.rel_to) == (4, "set", frozenset({"NZL"}))
    markings = Markings(jn)
    markings.add(_acs({"classification": "C", "permitted_nationalities": ["NZL"]}))
    label = markings.label(obj("marking-definition--20864905-06a0-47be-a04c-2164af17d635"),
                           originator="JPN").base
    assert label.rel_to == frozenset({"JPN", "NZL"})  # the originator always may
    every = parse_marking(jn, _acs({"classification": "C", "permitted_nationalities": ["ALL"],
                                    "shareability": ["ALL"], "caveat": ["FISA"],
                                    "sci_controls": ["SI"],
                                    "logical_authority_category": ["CTI"]}))
    assert every.rel_mode == "agreement" and every.communities == frozenset()
    assert every.caveats == frozenset({"ACS-CAVEAT-FISA", "ACS-SCI_CONTROLS-SI",
                                       "ACS-LOGICAL_AUTHORITY_CATEGORY-CTI"})


def test_unknown_marking_reference_is_never_ignored(jn: Agreement) -> None:
    campaign = load(OASIS / "stix2-json-schemas" / "examples" /
                    "interop-objectmarking-test.json")
    with pytest.raises(LabelError, match="unknown marking-definition "
                       "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ec") as info:
        Markings(jn).label(campaign, originator="JPN")
    assert info.value.hint


def test_granular_markings_example(jn: Agreement) -> None:
    bundle = load(DOCS / "using-granular-markings.json")
    by_type = {o["type"]: o for o in bundle["objects"]}
    indicator = by_type["indicator"]
    with pytest.raises(LabelError, match="indicator--1ed8caa7.* has no classification marking"):
        Markings(jn).label(indicator, originator="JPN")
    labels = Markings(jn, default_rank=0).label(indicator, originator="JPN")
    assert labels.base == Label(jn.id, 0, "JPN")
    red = _tlp_expected(jn, "red", "JPN")
    amber = _tlp_expected(jn, "amber", "JPN")
    green = _tlp_expected(jn, "green", "JPN")
    assert labels.portions == {"description": red, "indicator_types.[1]": amber,
                               "indicator_types.[0]": green, "name": green, "pattern": green}
    assert labels.banner == Label(jn.id, 0, "JPN", frozenset({"JPN"}), frozenset({"TLP-RED"}))
    for portion in labels.portions.values():
        assert labels.banner.dominates(portion)
    # the objects with object markings label without a default
    for kind in ("threat-actor", "relationship"):
        assert Markings(jn).label(by_type[kind], originator="NZL").base == \
            _tlp_expected(jn, "red", "NZL")


# -- the upstream-invalid TLP 2.0 example -----------------------------------------------

GREEN_EXAMPLE = COMMON / "tlp-2.0" / "examples" / "using-tlp2.0-green.json"


def test_invalid_green_example_marking_parses(jn: Agreement) -> None:
    bundle = load(GREEN_EXAMPLE)
    (relationship,) = [o for o in bundle["objects"] if o["type"] == "relationship"]
    assert relationship["object_marking_refs"] == [TLP_GREEN_2]
    label = Markings(jn).label(relationship, originator="NZL").base
    assert label == _tlp_expected(jn, "green", "NZL")


def test_invalid_green_example_is_rejected_for_its_timestamp() -> None:
    """Upstream's relationship has "created": "2022-101-27T13:49:54.326Z"."""
    from intelpact.stix.validate import StixValidationError, validate_bundle, validate_object

    def check(candidate: dict[str, Any]) -> None:
        if candidate.get("type") != "bundle":
            validate_object(candidate)
            return
        for _, error in validate_bundle(candidate):  # a bundle is no object: its objects
            if error is not None:
                raise error

    bundle = load(GREEN_EXAMPLE)
    (relationship,) = [o for o in bundle["objects"] if o["type"] == "relationship"]
    # the file itself also lacks the bundle's "type"; with it added, the timestamp is
    # the only defect left
    for candidate in (relationship, {"type": "bundle", **bundle}):
        with pytest.raises(StixValidationError) as info:
            check(candidate)
        assert info.value.object_id == relationship["id"]
        assert "'created'" in info.value.reason
        assert "'2022-101-27T13:49:54.326Z'" in info.value.reason
        assert isinstance(info.value, IntelpactError)
        assert info.value.reason in info.value.diagnostics()
    with pytest.raises(StixValidationError) as info:
        validate_object(bundle)
    assert info.value.object_id == bundle["id"]
    assert "'type'" in info.value.reason
    # with the date corrected, the object and the bundle are valid
    fixed = {**relationship, "created": "2022-10-27T13:49:54.326Z"}
    validate_object(fixed)
    check({"type": "bundle", **bundle, "objects": [
        fixed if o is relationship else o for o in bundle["objects"]]})


# -- granular selectors -----------------------------------------------------------------

NESTED = {
    "type": "campaign", "id": "campaign--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
    "name": "Spear Phishing", "description": "desc",
    "external_references": [{"source_name": "capec", "external_id": "CAPEC-163"},
                            {"source_name": "x", "url": "https://example.org"}],
    "aliases": ["a", "b", "c"],
    "extensions": {"x-ext": {"deep": {"list": [[1, 2], [3]]}}},
}


@pytest.mark.parametrize("selector,value", [
    ("name", "Spear Phishing"),
    ("aliases", ["a", "b", "c"]),
    ("aliases.[0]", "a"),
    ("aliases.[2]", "c"),
    ("external_references.[1].url", "https://example.org"),
    ("external_references.[0]", {"source_name": "capec", "external_id": "CAPEC-163"}),
    ("extensions.x-ext.deep.list.[0].[1]", 2),
    ("extensions.x-ext.deep.list.[1].[0]", 3),
])
def test_selectors_resolve(selector: str, value: Any) -> None:
    assert resolve_selector(NESTED, selector) == value


@pytest.mark.parametrize("selector,message", [
    ("colour", "points at nothing ('colour')"),
    ("external_references.[1].colour", "points at nothing ('colour')"),
    ("aliases.[3]", "points at no list item ([3])"),
    ("external_references.[2].url", "points at no list item ([2])"),
    ("name.[0]", "points at no list item ([0])"),
    ("external_references.url", "points at nothing ('url')"),
    ("aliases.0", "points at nothing ('0')"),
    ("aliases.[01]", "points at nothing ('[01]')"),
    ("aliases.[-1]", "points at nothing ('[-1]')"),
    ("", "must be a non-empty string"),
    (3, "must be a non-empty string"),
    (None, "must be a non-empty string"),
    (["name"], "must be a non-empty string"),
])
def test_bad_selectors(selector: Any, message: str) -> None:
    with pytest.raises(LabelError) as info:
        resolve_selector(NESTED, selector)
    assert message in info.value.message


def _granular(*entries: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(NESTED), "object_marking_refs": [TLP_GREEN_2],
            "granular_markings": list(entries)}


def test_granular_portions_on_nested_paths(jn: Agreement) -> None:
    secret = national_marking(jn, "JPN", "極秘", rel_to=["NZL"])
    markings = Markings(jn)
    markings.add(secret)
    o = _granular({"marking_ref": secret["id"], "selectors": ["external_references.[1].url",
                                                              "aliases.[2]"]},
                  {"marking_ref": TLP_RED_1, "selectors": ["aliases.[2]"]},
                  {"lang": "ja", "selectors": ["name"]})
    labels = markings.label(o, originator="JPN")
    assert labels.base == _tlp_expected(jn, "green", "JPN")
    secret_label = Label(jn.id, 5, "JPN", frozenset({"JPN", "NZL"}))
    assert labels.portions["external_references.[1].url"] == secret_label
    # two markings on one portion are joined: SECRET and TLP:RED
    assert labels.portions["aliases.[2]"] == Label(jn.id, 5, "JPN", frozenset({"JPN"}),
                                                   frozenset({"TLP-RED"}))
    assert "name" not in labels.portions  # a lang marking does not classify
    assert labels.banner == Label(jn.id, 5, "JPN", frozenset({"JPN"}), frozenset({"TLP-RED"}))


@pytest.mark.parametrize("granular,message", [
    ("x", "granular_markings must be a list"),
    (["x"], "granular_markings[0] must be an object"),
    ([{"marking_ref": TLP_RED_1}], "granular_markings[0] needs a non-empty selectors list"),
    ([{"marking_ref": TLP_RED_1, "selectors": []}], "needs a non-empty selectors list"),
    ([{"marking_ref": TLP_RED_1, "selectors": "name"}], "needs a non-empty selectors list"),
    ([{"marking_ref": TLP_RED_1, "lang": "en", "selectors": ["name"]}],
     "needs exactly one of marking_ref or lang"),
    ([{"selectors": ["name"]}], "needs exactly one of marking_ref or lang"),
    ([{"marking_ref": TLP_RED_1, "selectors": ["nowhere"]}], "points at nothing"),
    ([{"marking_ref": TLP_RED_1, "selectors": ["aliases.[9]"]}], "points at no list item"),
    ([{"lang": "en", "selectors": ["aliases.[9]"]}], "points at no list item"),
    ([{"marking_ref": TLP_RED_1, "selectors": [7]}], "must be a non-empty string"),
    ([{"marking_ref": TLP_RED_1, "selectors": ["name"]},
      {"marking_ref": 5, "selectors": ["description"]}], "marking reference 5 is not a string"),
    ([{"marking_ref": RANDOM_ID, "selectors": ["name"]}], "unknown marking-definition"),
])
def test_granular_errors(jn: Agreement, granular: Any, message: str) -> None:
    o = {**copy.deepcopy(NESTED), "object_marking_refs": [TLP_GREEN_2],
         "granular_markings": granular}
    with pytest.raises(LabelError) as info:
        Markings(jn).label(o, originator="JPN")
    assert message in info.value.message


def test_object_marking_refs_must_be_a_list(jn: Agreement) -> None:
    with pytest.raises(LabelError, match="object_marking_refs must be a list"):
        Markings(jn).label({"id": "x--1", "object_marking_refs": TLP_RED_1}, originator="JPN")


def test_two_originators_on_one_object_are_refused(jn: Agreement) -> None:
    markings = Markings(jn)
    a = national_marking(jn, "JPN", "秘", rel_to=["NZL"])
    b = national_marking(jn, "NZL", "CONFIDENTIAL", rel_to=["JPN"])
    markings.add(a)
    markings.add(b)
    with pytest.raises(LabelError, match="markings name two originators: JPN, NZL"):
        markings.label(obj(a["id"], b["id"]))


def test_a_portion_may_come_from_another_originator(jn: Agreement) -> None:
    """A granular portion carries its own national marking's originator; the banner keeps
    the object's originator, and REL TO only those both parts allow."""
    markings = Markings(jn)
    base = national_marking(jn, "JPN", "極秘", rel_to=["NZL"])
    nzeo = national_marking(jn, "NZL", "TOP SECRET", caveats=["NZEO"])
    for m in (base, nzeo):
        markings.add(m)
    labels = markings.label(obj(base["id"], granular_markings=[
        {"marking_ref": nzeo["id"], "selectors": ["description"]}]))
    assert labels.portions["description"] == Label(jn.id, 6, "NZL", frozenset({"NZL"}),
                                                   frozenset({"NZEO"}))
    assert labels.banner == Label(jn.id, 6, "JPN", frozenset({"NZL"}), frozenset({"NZEO"}),
                                  sources=frozenset({"JPN", "NZL"}), add_originator=False)
    assert banner(labels.banner, jn, "JPN") == "機密 // NZEO // REL TO NZL"
    assert labels.banner.dominates(labels.base)
    assert labels.banner.dominates(labels.portions["description"])
    # a portion may not mix two originators' national markings either
    other = national_marking(jn, "JPN", "秘")
    markings.add(other)
    with pytest.raises(LabelError, match="markings name two originators: JPN, NZL"):
        markings.label(obj(base["id"], granular_markings=[
            {"marking_ref": ref, "selectors": ["description"]}
            for ref in (nzeo["id"], other["id"])]))


def test_permitted_nationalities_always_add_the_objects_originator(jn: Agreement) -> None:
    """An ACS permitted_nationalities ("set" REL TO) names the readers; the party that
    originates the object (or portion) may always read its own."""
    markings = Markings(jn)
    acs = _acs({"classification": "C", "permitted_nationalities": ["NZL"]})
    markings.add(acs)
    base = national_marking(jn, "JPN", "極秘", rel_to=["NZL"])
    markings.add(base)
    labels = markings.label(obj(base["id"], granular_markings=[
        {"marking_ref": acs["id"], "selectors": ["name"]}]))
    assert labels.portions["name"] == Label(jn.id, 4, "JPN", frozenset({"JPN", "NZL"}),
                                            add_originator=False)
    for origin in ("JPN", "NZL"):
        label = markings.label(obj(acs["id"]), originator=origin).base
        assert label.rel_to == frozenset({origin, "NZL"})
    # the same, for a national marking's REL TO
    assert Markings(jn).add(base).rel_to == frozenset({"JPN", "NZL"})


def test_national_originator_wins_over_the_callers(jn: Agreement) -> None:
    markings = Markings(jn)
    m = national_marking(jn, "NZL", "SECRET", rel_to=["JPN"])
    markings.add(m)
    label = markings.label(obj(m["id"], TLP_AMBER_1), originator="JPN").base
    assert label == Label(jn.id, 5, "NZL", frozenset({"NZL", "JPN"}))


def test_labels_are_cached_and_stable(jn: Agreement) -> None:
    markings = Markings(jn)
    first = markings.label(obj(TLP_RED_1), originator="JPN")
    second = markings.label(obj(TLP_RED_1), originator="JPN")
    assert first == second
    other = markings.label(obj(TLP_RED_1), originator="NZL")
    assert other.base.originator == "NZL" and other.base != first.base


# -- the examples in docs/markings.md ------------------------------------------------------

def test_docs_markings_examples_are_what_intelpact_builds(jn: Agreement) -> None:
    text = (ROOT / "docs" / "markings.md").read_text(encoding="utf-8")
    block = text.split("```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == national_marking(jn, "JPN", "極秘", rel_to=["NZL"])
    restricted = national_marking(jn, "NZL", "RESTRICTED", rel_to=["JPN"],
                                  communities=["MARITIME"])
    assert restricted["id"] in text
    part = Markings(jn).add(restricted)
    assert part.rank == jn.shared_rank("RESTRICTED")
    as_label = Label(jn.id, part.rank, "NZL", part.rel_to, part.caveats, part.communities)
    assert f"`{banner(as_label, jn, 'JPN')}`" in text
    assert f"`{banner(as_label, jn, 'NZL')}`" in text
    nzeo = Label(jn.id, 5, "NZL", frozenset({"NZL"}), frozenset({"NZEO"}))
    for party in ("NZL", "JPN"):
        assert f"`{banner(nzeo, jn, party)}`" in text
    amber = Markings(jn).label(obj(TLP_AMBER_1), originator="JPN").base
    assert f"`{banner(amber, jn, 'JPN')}`" in text


def test_a_marking_made_before_a_party_joined_still_reads(jn: Agreement,
                                                          tmp_path: Path) -> None:
    """An amendment adding a party adds an equivalent to every new national marking;
    markings made before list the parties of their day and stay valid, as long as each
    equivalent they list still agrees with the table."""
    import re

    from intelpact.model import load_agreement

    text = (ROOT / "agreements" / "jpn-nzl.toml").read_text(encoding="utf-8")
    text = text.replace('parties = ["JPN", "NZL"]', 'parties = ["JPN", "NZL", "AUS"]')
    nzl = text[text.index("[schemes.NZL]"):text.index("# --- the equivalence table")]
    text = text.replace("# --- the equivalence table",
                        nzl.replace("schemes.NZL", "schemes.AUS") + "# --- the equivalence table")
    text = re.sub(r"^NZL = (.*)$", r"NZL = \1\nAUS = \1", text, flags=re.MULTILINE)
    (tmp_path / "three.toml").write_text(text, encoding="utf-8")
    three = load_agreement(tmp_path / "three.toml")
    old = national_marking(jn, "JPN", "秘", rel_to=["NZL"])
    part = parse_marking(three, old)
    assert part.rel_to == {"JPN", "NZL"} and part.originator == "JPN"
    new = national_marking(three, "JPN", "秘", rel_to=["NZL"])
    assert new["id"] != old["id"]  # the new canonical form lists AUS too
    assert [e["party"] for e in new["extensions"][EXTENSION_ID]["equivalents"]] == \
        ["JPN", "NZL", "AUS"]
    # a listed equivalent that disagrees with the table is still refused
    wrong = copy.deepcopy(old)
    wrong["extensions"][EXTENSION_ID]["equivalents"][1]["level"] = "SECRET"
    with pytest.raises(MarkingError, match="canonical form"):
        parse_marking(three, wrong)


_STATEMENT = {"type": "marking-definition", "spec_version": "2.1", "id": RANDOM_ID,
              "created": "2026-01-01T00:00:00.000Z", "definition_type": "statement",
              "definition": {"statement": "Copyright the sender"}}
TLP_CLEAR_2 = "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"
TLP_WHITE_1 = "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9"
OTHER_ID = "marking-definition--" + str(uuid.UUID(int=8))
TLP_AMBER_2 = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
_OWN_MARKINGS = [
    ("object-marking-refs", {"object_marking_refs": [TLP_RED_1]},
     f"object_marking_refs: {TLP_RED_1}"),
    ("granular-markings", {"granular_markings": [
        {"selectors": ["definition.statement"], "marking_ref": TLP_RED_1}]},
     f"granular_markings: {TLP_RED_1}"),
    ("both", {"object_marking_refs": [TLP_RED_1], "granular_markings": [
        {"selectors": ["name"], "marking_ref": TLP_AMBER_1}]},
     f"granular_markings: {TLP_AMBER_1}; object_marking_refs: {TLP_RED_1}"),
    # beside ones that restrict nothing, a restricting one is still refused, and named
    ("clear-and-amber", {"object_marking_refs": [TLP_CLEAR_2, TLP_AMBER_2]},
     f"object_marking_refs: {TLP_AMBER_2}"),
    ("white-and-amber", {"object_marking_refs": [TLP_WHITE_1, TLP_AMBER_1]},
     f"object_marking_refs: {TLP_AMBER_1}"),
    ("unknown-ref", {"object_marking_refs": [TLP_CLEAR_2, OTHER_ID]},
     f"object_marking_refs: {OTHER_ID}"),
    ("granular-unknown", {"granular_markings": [
        {"selectors": ["name"], "marking_ref": TLP_CLEAR_2},
        {"selectors": ["name"], "marking_ref": OTHER_ID}]},
     f"granular_markings: {OTHER_ID}"),
    ("not-a-list", {"object_marking_refs": TLP_CLEAR_2}, "object_marking_refs"),
]


@pytest.mark.parametrize("kind", ["statement", "tlp1", "tlp2", "acs", "national"])
@pytest.mark.parametrize("extra,named", [pytest.param(e, n, id=i) for i, e, n in _OWN_MARKINGS])
def test_a_marking_definition_carries_no_markings_of_its_own(
        jn: Agreement, kind: str, extra: dict[str, Any], named: str) -> None:
    """A marking-definition is labelled with the marking it gives (and released with what
    cites it): markings on the definition itself would be ignored, so one that carries any
    is refused, naming them, rather than stored as if it had them. Read as stored (a
    definition accepted before), it still parses: the node keeps serving what cites it."""
    base = {"statement": _STATEMENT, "tlp1": _tlp1(TLP_GREEN_1, "green"),
            "tlp2": _tlp2(TLP_GREEN_2, {"tlp_2_0": "green"}),
            "acs": _acs({"classification": "U"}),
            "national": national_marking(jn, "JPN", "極秘", rel_to=["NZL"])}[kind]
    parse_marking(jn, copy.deepcopy(base))  # the baseline parses
    marked = {**copy.deepcopy(base), **copy.deepcopy(extra)}
    with pytest.raises(MarkingError) as info:
        parse_marking(jn, marked)
    assert info.value.message == (
        f"{marked['id']}: a marking-definition carries no markings of its own but "
        f"TLP:CLEAR, TLP:WHITE and statements ({named}): it is labelled with the marking it "
        "gives, so these would be ignored")
    with pytest.raises(MarkingError):
        Markings(jn).add(copy.deepcopy(marked))
    if kind != "national":  # (a national one carries exactly what intelpact builds)
        assert parse_marking(jn, marked, stored=True) == parse_marking(jn, base, stored=True)


@pytest.mark.parametrize("kind", ["statement", "tlp2", "acs"])
@pytest.mark.parametrize("refs", [
    pytest.param([TLP_CLEAR_2], id="clear"),
    pytest.param([TLP_WHITE_1], id="white"),
    pytest.param(["SELF"], id="itself"),
    pytest.param([TLP_CLEAR_2, "SELF"], id="clear-and-itself")])
def test_a_marking_definition_may_carry_markings_that_restrict_nothing(
        jn: Agreement, kind: str, refs: list[str]) -> None:
    """TLP:CLEAR, TLP:WHITE and the definition itself (feeds2stix marks its statement
    definitions with TLP:CLEAR and themselves) restrict nothing: ignoring them loses
    nothing, so a definition carrying them (as object or granular markings) is accepted,
    meaning what it meant without them. (A national one carries exactly what intelpact
    builds, so none.)"""
    base = {"statement": _STATEMENT, "tlp2": _tlp2(TLP_GREEN_2, {"tlp_2_0": "green"}),
            "acs": _acs({"classification": "U"})}[kind]
    own = [base["id"] if r == "SELF" else r for r in refs]
    for extra in ({"object_marking_refs": own},
                  {"granular_markings": [{"selectors": ["name"], "marking_ref": r}
                                         for r in own]}):
        marked = {**copy.deepcopy(base), **extra}
        assert parse_marking(jn, marked) == parse_marking(jn, copy.deepcopy(base))
        assert Markings(jn).add(marked) == parse_marking(jn, copy.deepcopy(base))


def test_a_statement_definition_known_restricts_nothing(jn: Agreement) -> None:
    """Another statement marking-definition is allowed once it is known (Markings: added,
    or stored); parse_marking alone, which cannot tell what a ref is, refuses it, as it
    refuses a known definition that is not a statement (here a national one)."""
    other = {**copy.deepcopy(_STATEMENT), "id": OTHER_ID}
    marked = {**copy.deepcopy(_STATEMENT), "object_marking_refs": [TLP_CLEAR_2, OTHER_ID]}
    with pytest.raises(MarkingError, match=f"object_marking_refs: {OTHER_ID}"):
        parse_marking(jn, copy.deepcopy(marked))
    markings = Markings(jn)
    with pytest.raises(MarkingError, match=f"object_marking_refs: {OTHER_ID}"):
        markings.add(copy.deepcopy(marked))  # not known yet
    markings.add(other)
    assert markings.add(copy.deepcopy(marked)).kind == "statement"
    stored = {OTHER_ID: other}
    assert Markings(jn, lookup=stored.get).add(copy.deepcopy(marked)).kind == "statement"
    national = national_marking(jn, "JPN", "極秘", rel_to=["NZL"])
    markings.add(national)
    classified = {**copy.deepcopy(_STATEMENT), "id": RANDOM_ID.replace("7", "9"),
                  "object_marking_refs": [national["id"]]}
    with pytest.raises(MarkingError, match=f"object_marking_refs: {national['id']}"):
        markings.add(classified)
