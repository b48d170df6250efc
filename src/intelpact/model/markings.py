"""STIX marking-definitions: intelpact's national marking, TLP 1.0/2.0 and ACS 3.0.

intelpact carries a national classification in a marking-definition through a
property-extension (:data:`EXTENSION_ID`). The marking holds the agreement, the
originator, the originator's own level, each party's equivalent (as STANAG
4774's alternative label does), REL TO, caveats and communities. Its id is a
UUIDv5 over the RFC 8785 form of those properties, so the same marking always
has the same id on every node, and a marking whose id does not match its
content is refused.

TLP and ACS markings are mapped into labels through the agreement's
``[markings]`` table (docs/markings.md). A marking that is unknown, malformed
or inconsistent with the agreement is an error with a reason: never ignored.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785

from .agreement import Agreement
from .echo import first, shown
from .errors import LabelError, MarkingError
from .labels import Label, banner, join_all, rel_to_order

EXTENSION_ID = "extension-definition--96d07c6c-11cd-4274-b304-1c83f67f319c"
MARKING_NAMESPACE = uuid.UUID("e388bf2a-a02a-4488-bd13-59600d4bc412")
INTELPACT_IDENTITY = "identity--90f2f21c-16b3-47ea-92bb-fed05f61fe90"
MARKING_CREATED = "2026-01-01T00:00:00.000Z"
TLP2_EXTENSION_ID = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
ACS_EXTENSION_ID = "extension-definition--3a65884d-005a-4290-8335-cb2d778a83ce"
# intelpact's signatures extension (crypto.signing): it says who signed, not what
# the marking means, so it is allowed beside a marking and ignored when comparing.
SIGNATURES_EXTENSION_ID = "extension-definition--19342803-5780-46cd-99b0-311b35f33ad6"

TLP1_IDS = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "white",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "green",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "amber",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "red",
}
TLP2_IDS = {
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": "clear",
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": "green",
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": "amber",
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": "amber+strict",
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": "red",
}
_NATIONAL_KEYS = ("extension_type", "agreement", "originator", "level", "equivalents",
                  "rel_to", "caveats", "communities")
_ACS_CAVEAT_FIELDS = ("sci_controls", "logical_authority_category", "caveat", "sensitivity")
_ACS_ANY_OF_FIELDS = ("permitted_organizations", "shareability", "entity")
_ACS_INFORMATIONAL = ("identifier", "name", "create_date_time", "responsible_entity_custodian",
                      "responsible_entity_originator", "authority_reference",
                      "policy_reference", "original_classification",
                      "derivative_classification", "declassification", "resource_disposition",
                      "public_release", "access_privilege", "further_sharing", "extension_type")
_ACS_CONTROL_KEYS = ("classification", "formal_determination", "permitted_nationalities",
                     *_ACS_CAVEAT_FIELDS, *_ACS_ANY_OF_FIELDS)
_SELECTOR_INDEX = re.compile(r"^\[(0|[1-9][0-9]*)\]$")


@dataclass(frozen=True)
class LabelPart:
    """What one marking-definition says, before it is combined into a label.

    ``rank`` is None for markings that do not classify (statements, lang).
    ``rel_mode`` is "set" (use ``rel_to``), "any", "agreement" or "originator".
    """

    kind: str
    rank: int | None = None
    originator: str | None = None
    rel_mode: str = "any"
    rel_to: frozenset[str] = frozenset()
    caveats: frozenset[str] = frozenset()
    communities: frozenset[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class ObjectLabels:
    """An object's labels: the base (object markings), its portions, and the banner."""

    base: Label
    portions: Mapping[str, Label]
    banner: Label


# -- intelpact national markings ------------------------------------------------------

def national_marking(agreement: Agreement, originator: str, level: str, *,
                     rel_to: Iterable[str] | None = None, caveats: Iterable[str] = (),
                     communities: Iterable[str] = ()) -> dict[str, Any]:
    """Build the marking-definition for a national classification.

    ``level`` is in the originator's own words (name, romanisation or
    abbreviation) or the name of a shared level. ``rel_to`` None means the
    originator only (deny by default; docs/markings.md). Raises
    :class:`MarkingError` with the fix.
    """
    if originator not in agreement.parties:
        raise MarkingError(f"{originator} is not a party to agreement {agreement.id}",
                           hint=f"use one of {', '.join(agreement.parties)}")
    rank = _publish_rank(agreement, originator, level)
    rel = frozenset(rel_to or ()) | {originator}
    label = Label(agreement.id, rank, originator, rel, frozenset(caveats),
                  frozenset({frozenset(communities)}) if communities else frozenset())
    props = _national_props(agreement, label)
    _check_national(agreement, props, label)
    return _marking_object(props, banner(label, agreement, originator))


def _publish_rank(agreement: Agreement, originator: str, words: str) -> int:
    try:
        return agreement.rank_of(originator, words)
    except KeyError as exc:
        try:
            rank = agreement.shared_rank(words)
        except KeyError:
            raise MarkingError(str(exc.args[0]), hint="give the level in the originator's "
                               "national words or romanisation") from None
        own = agreement.rows[rank].cells[originator]
        if own.level is None or own.treat_as:
            raise MarkingError(f"{originator} has no level equivalent to {words!r}",
                               hint="give one of the originator's own levels") from None
        return rank


def _national_props(agreement: Agreement, label: Label) -> dict[str, Any]:
    own = agreement.words(label.originator, label.rank)
    if own is None or agreement.rows[label.rank].cells[label.originator].treat_as:
        raise MarkingError(f"{label.originator} has no level of its own at "
                           f"{agreement.rows[label.rank].name}")
    equivalents = []
    for party in agreement.parties:
        cell = agreement.rows[label.rank].cells[party]
        if cell.level is None:
            continue
        entry: dict[str, Any] = {"party": party, "level": cell.level}
        if cell.treat_as:
            entry["treat_as"] = True
        equivalents.append(entry)
    props: dict[str, Any] = {
        "extension_type": "property-extension",
        "agreement": agreement.id,
        "originator": label.originator,
        "level": own.name,
        "equivalents": equivalents,
    }
    props["rel_to"] = rel_to_order(label)
    if label.caveats:
        props["caveats"] = sorted(label.caveats)
    if label.communities:
        (clause,) = label.communities
        props["communities"] = sorted(clause)
    return props


def marking_id(props: Mapping[str, Any]) -> str:
    """The deterministic id of a national marking with these extension properties."""
    digest = uuid.uuid5(MARKING_NAMESPACE, rfc8785.dumps(dict(props)).decode())
    return f"marking-definition--{digest}"


def _marking_object(props: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": marking_id(props),
        "created": MARKING_CREATED,
        "name": name,
        "extensions": {EXTENSION_ID: props},
    }


def _check_national(agreement: Agreement, props: Mapping[str, Any], label: Label) -> None:
    """Rules that hold for every national marking, made here or received."""
    if label.rel_to is not None:
        for party in label.rel_to:
            if party not in agreement.parties:
                raise MarkingError(f"REL TO {party}: {party} is not a party to agreement "
                                   f"{agreement.id}", hint="release only to parties of the "
                                   "agreement; another party needs its own agreement")
            if agreement.rows[label.rank].cells[party].level is None:
                raise MarkingError(f"REL TO {party}: {party} has no equivalent of "
                                   f"{agreement.rows[label.rank].name} under {agreement.id}",
                                   hint=f"remove {party} from REL TO or lower the level")
    for caveat in label.caveats:
        known = agreement.caveats.get(caveat)
        if known is None:
            raise MarkingError(f"caveat {caveat} is not known to agreement {agreement.id}",
                               hint="use one of: " + ", ".join(agreement.caveats))
        if known.releasable_to is not None:
            if label.originator not in known.releasable_to:
                raise MarkingError(f"caveat {caveat} is releasable only to "
                                   f"{', '.join(sorted(known.releasable_to))}: a "
                                   f"{label.originator} originator cannot apply it",
                                   hint=f"drop {caveat}; use REL TO {label.originator} to keep "
                                   "it national")
            wider = sorted((label.rel_to or frozenset(agreement.parties))
                           - known.releasable_to)
            if wider:
                raise MarkingError(f"caveat {caveat} is releasable only to "
                                   f"{', '.join(sorted(known.releasable_to))} but REL TO "
                                   f"names {', '.join(wider)}",
                                   hint=f"narrow REL TO or drop {caveat}")
    for clause in label.communities:
        for community in clause:
            if community not in agreement.communities:
                raise MarkingError(f"community {community} is not known to agreement "
                                   f"{agreement.id}",
                                   hint="use one of: " + ", ".join(agreement.communities))


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise MarkingError(f"{where} must be a list of strings, found {value!r}")
    return value


def _check_national_body(mid: str, obj: Mapping[str, Any], built: Mapping[str, Any]) -> None:
    """A national marking-definition must be exactly ``built``, what
    :func:`_marking_object` makes of its properties (its signatures aside). Its id covers
    only the extension's properties: anything else it carried (a TLP ``definition``,
    another ``created``) would travel under an id that does not cover it, and two nodes
    would no longer build the same definition byte for byte (docs/markings.md)."""
    found = _unsigned(obj)
    differ = sorted(k for k in found.keys() | built.keys() if found.get(k) != built.get(k))
    if differ:
        raise MarkingError(f"{mid}: a national marking-definition carries exactly what "
                           f"intelpact builds from its content; this one differs in "
                           f"{first(differ)}",
                           hint="its id covers only the extension's properties: rebuild the "
                           "marking with intelpact, and add nothing to it")


def _equivalents(value: Any, where: str) -> list[dict[str, Any]]:
    """The equivalents as listed, checked for shape before they are read: each an object
    naming its party as a string (a party given as a list, say, cannot even be looked up,
    and would raise instead of being refused with this reason)."""
    if not isinstance(value, list) or not all(
            isinstance(e, dict) and isinstance(e.get("party"), str) for e in value):
        raise MarkingError(f"{where} must be a list of objects, each naming its party as a "
                           f"string, found {shown(value)}",
                           hint="rebuild the marking with intelpact")
    return value


def _parse_national(agreement: Agreement, mid: str, obj: Mapping[str, Any],
                    stored: bool = False) -> LabelPart:
    props, name = obj["extensions"][EXTENSION_ID], obj.get("name")
    if not isinstance(props, dict):
        raise MarkingError(f"{mid}: the intelpact extension must be an object")
    unknown = sorted(set(props) - set(_NATIONAL_KEYS))
    if unknown:
        raise MarkingError(f"{mid}: unknown properties {', '.join(unknown)} in the intelpact "
                           "marking extension", hint="remove them; see docs/markings.md")
    for key in ("extension_type", "agreement", "originator", "level", "equivalents", "rel_to"):
        if key not in props:
            raise MarkingError(f"{mid}: the intelpact marking extension lacks {key!r}")
    if props["extension_type"] != "property-extension":
        raise MarkingError(f"{mid}: extension_type must be 'property-extension'")
    if props["agreement"] != agreement.id:
        raise MarkingError(f"{mid}: marking is under agreement {props['agreement']!r}, not "
                           f"{agreement.id!r}", hint="this node applies only its pinned "
                           "agreement")
    originator = props["originator"]
    if originator not in agreement.parties:
        raise MarkingError(f"{mid}: originator {originator!r} is not a party to {agreement.id}")
    if not isinstance(props["level"], str):
        raise MarkingError(f"{mid}: level must be a string")
    level = agreement.schemes[originator].find(props["level"])
    if level is None or level.name != props["level"]:
        raise MarkingError(f"{mid}: {originator} has no level {props['level']!r}")
    rank = agreement.rank_of(originator, level.name)
    rel_set = frozenset(_strings(props["rel_to"], f"{mid}: rel_to"))
    if originator not in rel_set:
        raise MarkingError(f"{mid}: REL TO must name the originator {originator}",
                           hint="list the originator first in rel_to")
    caveats = frozenset(_strings(props.get("caveats", []), f"{mid}: caveats"))
    comms = frozenset(_strings(props.get("communities", []), f"{mid}: communities"))
    label = Label(agreement.id, rank, originator, rel_set, caveats,
                  frozenset({comms}) if comms else frozenset())
    _check_national(agreement, props, label)
    expected = _national_props(agreement, label)
    listed = _equivalents(props["equivalents"], f"{mid}: equivalents")
    named = {e["party"] for e in listed}
    if stored:
        # Accepted under an earlier text: its equivalents are those of its day (an
        # amendment may have moved a cell on its row); what it means is its originator's
        # level under the text in force, worked out above.
        expected["equivalents"] = listed
    elif named < set(agreement.parties) and originator in named and rel_set <= named:
        # Made before a party joined the agreement: it lists the parties of its day,
        # each of which must still agree with the table.
        expected["equivalents"] = [e for e in expected["equivalents"] if e["party"] in named]
    elif expected != props:
        # Made under a text this node pinned before (queued then, or relayed since): its
        # equivalents are that text's table; what it means is worked out above, as for
        # one stored
        for text in agreement.earlier:
            try:
                then = _national_props(text, label)["equivalents"]
            except MarkingError:
                continue
            if then == listed:
                expected["equivalents"] = listed
                break
    if expected != props:
        raise MarkingError(f"{mid}: the marking is not in canonical form or its equivalents "
                           "disagree with the agreement's table",
                           hint=f"expected extension properties {expected}")
    # what one made here is named (one stored keeps the name of its day)
    said = None if stored else banner(label, agreement, originator)
    if said is not None and name is not None and name != said:
        raise MarkingError(f"{mid}: the marking's name {name!r} does not say what it marks "
                           f"({said!r})",
                           hint="a national marking's name is its banner in the originator's "
                           "words")
    if marking_id(props) != mid:
        raise MarkingError(f"{mid}: the id does not match the marking's content "
                           f"(expected {marking_id(props)})",
                           hint="national marking ids are derived from their content; "
                           "rebuild the marking with intelpact")
    if said is not None:
        _check_national_body(mid, obj, _marking_object(props, said))
    return LabelPart("national", rank, originator, "set", rel_set, caveats, label.communities)


# -- TLP and ACS ---------------------------------------------------------------------

def _foreign_part(agreement: Agreement, kind: str, key: str, table: str) -> LabelPart:
    mapping = (agreement.tlp if table == "tlp" else agreement.acs).get(key)
    if mapping is None:
        raise MarkingError(f"{kind} {key!r} has no mapping in agreement {agreement.id}",
                           hint=f"add [markings.{table}] {key} = {{ level = \"...\" }}")
    return LabelPart(kind, mapping.rank, None, mapping.rel_to, frozenset(), mapping.caveats)


def _parse_tlp1(agreement: Agreement, mid: str, obj: Mapping[str, Any]) -> LabelPart:
    expected = TLP1_IDS.get(mid)
    definition = obj.get("definition")
    said = definition.get("tlp") if isinstance(definition, dict) else None
    if expected is None:
        raise MarkingError(f"{mid}: a TLP 1.0 marking must use one of the four standard ids",
                           hint="use the ids from the STIX 2.1 specification, section 7.2.1.4")
    if said != expected:
        raise MarkingError(f"{mid}: is TLP:{expected.upper()} but its definition says {said!r}")
    return _foreign_part(agreement, "TLP 1.0", expected, "tlp")


def _parse_tlp2(agreement: Agreement, mid: str, props: Any) -> LabelPart:
    expected = TLP2_IDS.get(mid)
    said = props.get("tlp_2_0") if isinstance(props, dict) else None
    if expected is None:
        raise MarkingError(f"{mid}: a TLP 2.0 marking must use one of the five standard ids",
                           hint="use the ids published with the TLP 2.0 extension")
    if said != expected:
        raise MarkingError(f"{mid}: is TLP:{expected.upper()} but its extension says {said!r}")
    return _foreign_part(agreement, "TLP 2.0", expected, "tlp")


def _parse_acs(agreement: Agreement, mid: str, props: Any) -> LabelPart:
    if not isinstance(props, dict):
        raise MarkingError(f"{mid}: the ACS extension must be an object")
    unknown = sorted(set(props) - {"control_set", *_ACS_INFORMATIONAL})
    if unknown:
        raise MarkingError(f"{mid}: unknown ACS 3.0 properties {', '.join(unknown)}")
    controls = props.get("control_set")
    if not isinstance(controls, dict) or "classification" not in controls:
        raise MarkingError(f"{mid}: an ACS marking needs control_set.classification")
    unknown = sorted(set(controls) - set(_ACS_CONTROL_KEYS))
    if unknown:
        raise MarkingError(f"{mid}: unknown ACS control_set properties {', '.join(unknown)}")
    base = _foreign_part(agreement, "ACS classification", str(controls["classification"]),
                         "acs")
    rel_mode, rel = base.rel_mode, frozenset[str]()
    nations = controls.get("permitted_nationalities")
    if nations is not None and not _all(mid, "permitted_nationalities",
                                        _strings(nations, f"{mid}: permitted_nationalities")):
        for code in nations:
            if not re.fullmatch(r"[A-Z]{3}", code):
                raise MarkingError(f"{mid}: permitted_nationalities {code!r} is not an "
                                   "ISO 3166-1 alpha-3 code")
        rel_mode, rel = "set", frozenset(nations)
    caveats = set(base.caveats)
    for key in _ACS_CAVEAT_FIELDS:
        for value in _strings(controls.get(key, []), f"{mid}: {key}"):
            caveats.add(f"ACS-{key.upper()}-{value}")
    clauses = set()
    for key in _ACS_ANY_OF_FIELDS:
        values = _strings(controls.get(key, []), f"{mid}: {key}")
        if values and not _all(mid, key, values):
            clauses.add(frozenset(f"ACS-{key.upper()}-{v}" for v in values))
    _strings(controls.get("formal_determination", []), f"{mid}: formal_determination")
    return LabelPart("ACS 3.0", base.rank, None, rel_mode, rel, frozenset(caveats),
                     frozenset(clauses))


def _all(mid: str, key: str, values: Sequence[str]) -> bool:
    """Whether an ACS list says ALL, alone. ALL beside codes says two things at once: which
    is meant cannot be told, so it is refused, not read as the wider."""
    if "ALL" not in values:
        return False
    if len(values) > 1:
        raise MarkingError(f"{mid}: {key} names ALL and {len(values) - 1} other value(s): "
                           "ALL or a list, not both")
    return True


def _check_standard_id(mid: str, marking_exts: list[str], definition_type: Any) -> None:
    """An id of a standard TLP definition is that definition and nothing else. Otherwise a
    statement (or ACS) marking under TLP:RED's id would be learnt, stored and, after a
    restart, read in place of the built-in TLP:RED, serving its portions to people
    without its caveat."""
    if mid in TLP1_IDS and (marking_exts or definition_type != "tlp"):
        raise MarkingError(f"{mid} is the standard id of TLP 1.0 TLP:{TLP1_IDS[mid].upper()}: "
                           "it may only be that TLP 1.0 definition (definition_type 'tlp')",
                           hint="a marking of your own needs an id of its own: issue a new id")
    if mid in TLP2_IDS and marking_exts != [TLP2_EXTENSION_ID]:
        raise MarkingError(f"{mid} is the standard id of TLP 2.0 TLP:{TLP2_IDS[mid].upper()}: "
                           "it may only be that TLP 2.0 definition (the TLP 2.0 extension)",
                           hint="a marking of your own needs an id of its own: issue a new id")


# The markings a marking-definition may carry of its own: none restricts anything (TLP
# 2.0 CLEAR, TLP 1.0 WHITE, and statements, among them the definition itself, as feeds
# such as feeds2stix mark their statement definitions).
UNRESTRICTING_IDS = frozenset(
    mid for mid, name in {**TLP1_IDS, **TLP2_IDS}.items() if name in ("white", "clear"))


def _own_markings(mid: str, obj: dict[str, Any],
                  statement: Callable[[str], bool] | None) -> list[str]:
    """What of the markings a marking-definition carries of its own would restrict it
    (each named with its field): every ref but TLP:CLEAR, TLP:WHITE, the definition
    itself and a statement definition ``statement`` says is one; anything malformed."""
    def restricts(ref: Any) -> bool:
        return not (isinstance(ref, str) and (ref in UNRESTRICTING_IDS or ref == mid or (
            statement is not None and statement(ref))))
    refused: list[str] = []
    if "granular_markings" in obj:
        granular = obj["granular_markings"]
        if not isinstance(granular, list):
            refused.append("granular_markings")
        else:
            refs = [g.get("marking_ref") if isinstance(g, dict) else g for g in granular]
            refused += [f"granular_markings: {r}" for r in refs if restricts(r)]
    if "object_marking_refs" in obj:
        refs = obj["object_marking_refs"]
        if not isinstance(refs, list):
            refused.append("object_marking_refs")
        else:
            refused += [f"object_marking_refs: {r}" for r in refs if restricts(r)]
    return refused


def parse_marking(agreement: Agreement, obj: Any, *, stored: bool = False,
                  statement: Callable[[str], bool] | None = None) -> LabelPart:
    """What a marking-definition means under ``agreement``. Raises :class:`MarkingError`.

    ``stored``: one this node accepted before, read from its store, perhaps under an
    earlier text of the agreement. A national marking then means its originator's level
    under ``agreement`` (the row an amendment may have moved it to); the equivalents and
    the name it carries are those of its day and are not checked against the table
    again. Every other rule holds (its REL TO, caveats and communities under
    ``agreement``, its id from its content). A definition carrying markings of its own
    (``object_marking_refs``, ``granular_markings``) that restrict it is refused, except
    as stored: one accepted before that rule still reads, as what cites it is still held.
    Those that restrict nothing are allowed: TLP:CLEAR (2.0), TLP:WHITE (1.0), the
    definition itself, and a statement definition, as ``statement`` (the definitions the
    caller knows) tells of a ref; without it, no other ref is taken for a statement."""
    if not isinstance(obj, dict) or obj.get("type") != "marking-definition":
        raise MarkingError("not a marking-definition object")
    mid = obj.get("id")
    if not isinstance(mid, str) or not mid.startswith("marking-definition--"):
        raise MarkingError(f"marking-definition id {mid!r} is malformed")
    own = _own_markings(mid, obj, statement) if not stored else []
    if own:
        # STIX allows them, but a definition's label is the one it gives
        # (services/publish.py, definition_label): the node would hold, serve and release
        # it as if it had markings it never got. TLP:CLEAR/WHITE and statements restrict
        # nothing, so ignoring them loses nothing
        raise MarkingError(f"{mid}: a marking-definition carries no markings of its own "
                           f"but TLP:CLEAR, TLP:WHITE and statements ({'; '.join(own)}): it "
                           "is labelled with the marking it gives, so these would be "
                           "ignored",
                           hint="remove those markings from the marking-definition")
    extensions = obj.get("extensions") or {}
    if not isinstance(extensions, dict):
        raise MarkingError(f"{mid}: extensions must be an object")
    known = {EXTENSION_ID, TLP2_EXTENSION_ID, ACS_EXTENSION_ID}
    marking_exts = [k for k in extensions if k in known]
    others = [k for k in extensions if k not in known and k != SIGNATURES_EXTENSION_ID]
    if others:
        raise MarkingError(f"{mid}: unknown marking extension {others[0]}",
                           hint="intelpact reads its own national marking, TLP 1.0/2.0 and "
                           "ACS 3.0; other markings must be mapped first")
    if len(marking_exts) + ("definition_type" in obj) != 1:
        raise MarkingError(f"{mid}: a marking-definition needs exactly one of definition_type "
                           "or a marking extension")
    _check_standard_id(mid, marking_exts, obj.get("definition_type"))
    if marking_exts == [EXTENSION_ID]:
        name = obj.get("name")
        if name is not None and not isinstance(name, str):
            raise MarkingError(f"{mid}: name must be a string")
        return _parse_national(agreement, mid, obj, stored)
    if marking_exts == [TLP2_EXTENSION_ID]:
        return _parse_tlp2(agreement, mid, extensions[TLP2_EXTENSION_ID])
    if marking_exts == [ACS_EXTENSION_ID]:
        return _parse_acs(agreement, mid, extensions[ACS_EXTENSION_ID])
    kind = obj["definition_type"]
    if kind == "tlp":
        return _parse_tlp1(agreement, mid, obj)
    if kind == "statement":
        definition = obj.get("definition")
        if not isinstance(definition, dict) or not isinstance(definition.get("statement"), str):
            raise MarkingError(f"{mid}: a statement marking needs definition.statement")
        return LabelPart("statement")
    raise MarkingError(f"{mid}: unknown definition_type {kind!r}",
                       hint="intelpact reads 'tlp' and 'statement' definition types")


# -- resolving an object's markings ----------------------------------------------------

class Markings:
    """The marking-definitions a node knows, and the labels of objects that use them.

    TLP 1.0 and 2.0 definitions are built in. Others are added with :meth:`add`.
    ``default_rank`` is the shared rank given to an object that has no classifying
    object marking; None (the default) refuses such an object.
    """

    def __init__(self, agreement: Agreement, *, default_rank: int | None = None,
                 lookup: Callable[[str], dict[str, Any] | None] | None = None) -> None:
        self.agreement = agreement
        self.default_rank = default_rank
        # Where to find a definition this instance has not seen: another process of the
        # node (a TAXII worker) may have stored it since this one started.
        self._lookup = lookup
        self._built_in: dict[str, LabelPart] = {}
        for mid, name in TLP1_IDS.items():
            if name in agreement.tlp:
                self._built_in[mid] = _foreign_part(agreement, "TLP 1.0", name, "tlp")
        for mid, name in TLP2_IDS.items():
            if name in agreement.tlp:
                self._built_in[mid] = _foreign_part(agreement, "TLP 2.0", name, "tlp")
        self._parts: dict[str, LabelPart] = dict(self._built_in)
        self._definitions: dict[str, dict[str, Any]] = {}
        self._cache: dict[tuple[tuple[str, ...], str | None, int | None], Label | None] = {}

    def parse(self, definition: dict[str, Any]) -> LabelPart:
        """What a marking-definition says, checked as :meth:`add` checks it (a different
        body under an id known here or stored by another process of the node is
        refused), without learning it: a definition from a partner is learnt only once
        its originator's signature verifies, or anyone could plant a body under a
        genuine id and have the genuine one refused. A built-in TLP id means only its
        standard definition (:func:`parse_marking`)."""
        part = parse_marking(self.agreement, definition, statement=self.is_statement)
        mid = definition["id"]
        known = self._definitions.get(mid)
        if known is None and mid not in self._parts and self._lookup is not None:
            known = self._lookup(mid)  # stored by another process since this one started
        _refuse_another(mid, known, definition)
        return part

    def is_statement(self, ref: str) -> bool:
        """Whether ``ref`` is a statement marking-definition known here (or stored)."""
        try:
            return self.part(ref).kind == "statement"
        except LabelError:
            return False

    def add(self, definition: dict[str, Any]) -> LabelPart:
        """Learn a marking-definition. Re-adding the same one is a no-op; a different
        body under a known id is refused."""
        part = self.parse(definition)
        self._learn(definition, part)
        return part

    def load(self, definition: dict[str, Any]) -> LabelPart:
        """Learn a marking-definition read from the store (at start), checked as
        :meth:`add` checks it against what this instance knows, without asking the store
        about it again; read as stored (:func:`parse_marking`), so one accepted under an
        earlier text of the agreement means its originator's level under this one."""
        part = parse_marking(self.agreement, definition, stored=True)
        _refuse_another(definition["id"], self._definitions.get(definition["id"]), definition)
        self._learn(definition, part)
        return part

    def forget(self, marking_ids: Iterable[str]) -> None:
        """Forget definitions learnt under ``marking_ids`` (a built-in one stays): the
        store refused them, so the next use looks the stored one up (``lookup``)."""
        for mid in marking_ids:
            self._definitions.pop(mid, None)
            self._parts.pop(mid, None)
            if mid in self._built_in:
                self._parts[mid] = self._built_in[mid]
        self._cache.clear()  # labels made with what was forgotten

    def _learn(self, definition: dict[str, Any], part: LabelPart) -> None:
        self._definitions[definition["id"]] = definition
        self._parts[definition["id"]] = part

    def known(self, marking_id: str) -> bool:
        """True when a marking-definition with this id was added (or is built in)."""
        return marking_id in self._parts

    def definition(self, marking_id: str) -> dict[str, Any] | None:
        """The marking-definition added under ``marking_id`` (None for built-in ones)."""
        return self._definitions.get(marking_id)

    def part(self, ref: Any) -> LabelPart:
        if not isinstance(ref, str):
            raise LabelError(f"marking reference {ref!r} is not a string")
        found = self._parts.get(ref)
        if found is None and self._lookup is not None:
            definition = self._lookup(ref)
            if definition is not None:
                try:
                    found = self.load(definition)
                except MarkingError as exc:  # stored by an older intelpact, say
                    raise LabelError(f"the stored marking-definition {ref} does not check: "
                                     f"{exc.message}", hint=exc.hint) from None
        if found is None:
            raise LabelError(f"unknown marking-definition {ref}",
                             hint="send its marking-definition before (or with) the objects "
                             "that use it")
        return found

    def _combine(self, refs: tuple[str, ...], originator: str | None,
                 fallback_rank: int | None) -> Label | None:
        key = (refs, originator, fallback_rank)
        if key in self._cache:
            return self._cache[key]
        parts = [self.part(r) for r in refs]
        origins = {p.originator for p in parts if p.originator}
        if len(origins) > 1:
            raise LabelError(f"markings name two originators: {', '.join(sorted(origins))}",
                             hint="an object has one originator; mark other parties' material "
                             "as portions")
        origin = origins.pop() if origins else originator
        ranks = [p.rank for p in parts if p.rank is not None]
        if not ranks:
            if fallback_rank is None:
                self._cache[key] = None
                return None
            ranks = [fallback_rank]
        if origin is None:
            raise LabelError("no originator: the object has no national marking",
                             hint="say which party originates it (e.g. publish --as a person "
                             "of that party)")
        labels = [Label(self.agreement.id, max(ranks), origin)]
        for p in parts:
            rel: frozenset[str] | None
            if p.rel_mode == "any":
                rel = None
            elif p.rel_mode == "agreement":
                rel = frozenset(self.agreement.parties)
            elif p.rel_mode == "originator":
                rel = frozenset({origin})
            else:
                rel = p.rel_to | {origin}  # the originator may always read its own
            labels.append(Label(self.agreement.id, max(ranks), origin, rel, p.caveats,
                                p.communities))
        label = join_all(labels)
        self._cache[key] = label
        return label

    def label(self, obj: Mapping[str, Any], originator: str | None = None) -> ObjectLabels:
        """The base, portion and banner labels of a STIX object. Raises :class:`LabelError`."""
        refs = obj.get("object_marking_refs", [])
        if not isinstance(refs, list):
            raise LabelError("object_marking_refs must be a list")
        base = self._combine(tuple(refs), originator, self.default_rank)
        if base is None:
            raise LabelError(f"{obj.get('id', 'object')} has no classification marking",
                             hint="add a national, TLP or ACS marking to object_marking_refs")
        portions: dict[str, Label] = {}
        granular = obj.get("granular_markings")
        if granular is not None:
            if not isinstance(granular, list):
                raise LabelError("granular_markings must be a list")
            per_selector: dict[str, list[str]] = {}
            for i, gm in enumerate(granular):
                if not isinstance(gm, dict):
                    raise LabelError(f"granular_markings[{i}] must be an object")
                selectors = gm.get("selectors")
                if not isinstance(selectors, list) or not selectors:
                    raise LabelError(f"granular_markings[{i}] needs a non-empty selectors list")
                has_ref, has_lang = "marking_ref" in gm, "lang" in gm
                if has_ref == has_lang:
                    raise LabelError(f"granular_markings[{i}] needs exactly one of marking_ref "
                                     "or lang")
                for selector in selectors:
                    resolve_selector(obj, selector)
                    if has_ref:
                        per_selector.setdefault(selector, []).append(gm["marking_ref"])
            for selector, refs_here in per_selector.items():
                portion = self._combine(tuple(refs_here), base.originator, None)
                if portion is not None:
                    portions[selector] = portion
        overall = join_all([base, *portions.values()])
        return ObjectLabels(base, portions, overall)


def same_definition(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when two bodies of a marking-definition say the same, whoever signed them."""
    return _unsigned(a) == _unsigned(b)


def _refuse_another(mid: str, known: Mapping[str, Any] | None,
                    definition: Mapping[str, Any]) -> None:
    if known is not None and not same_definition(known, definition):
        raise MarkingError(f"{mid}: a different marking-definition with this id is known",
                           hint="marking-definitions cannot be versioned; issue a new id")


def _unsigned(definition: Mapping[str, Any]) -> dict[str, Any]:
    """A marking-definition without its signatures: what it says, not who vouched."""
    extensions = definition.get("extensions")
    if not isinstance(extensions, dict) or SIGNATURES_EXTENSION_ID not in extensions:
        return dict(definition)
    rest = {k: v for k, v in extensions.items() if k != SIGNATURES_EXTENSION_ID}
    out = {k: v for k, v in definition.items() if k != "extensions"}
    if rest:
        out["extensions"] = rest
    return out


def resolve_selector(obj: Mapping[str, Any], selector: Any) -> Any:
    """The value a granular-marking selector points at. Raises :class:`LabelError`."""
    if not isinstance(selector, str) or not selector:
        raise LabelError(f"selector {selector!r} must be a non-empty string")
    node: Any = obj
    for step in selector.split("."):
        index = _SELECTOR_INDEX.fullmatch(step)
        if index:
            if not isinstance(node, list) or int(index.group(1)) >= len(node):
                raise LabelError(f"selector {selector!r} points at no list item ({step})",
                                 hint="selectors must point at properties that exist")
            node = node[int(index.group(1))]
        else:
            if not isinstance(node, dict) or step not in node:
                raise LabelError(f"selector {selector!r} points at nothing ({step!r})",
                                 hint="selectors must point at properties that exist")
            node = node[step]
    return node
