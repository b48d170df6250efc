#!/usr/bin/env python3
"""Generate tests/vectors/decisions.json: principal x label -> decision vectors.

The vectors are curated cases over the three sample agreements (and three
variants of them, written to tests/vectors/agreements/), each with the rule a
person reading the agreement expects to decide it. The decision and its reason
come from intelpact's Policy; the generator refuses to write a vector whose
decision disagrees with the rule stated here, so the file is hand-checked as to
*which* rule decides, and machine-made as to the wording.

    python scripts/gen_vectors.py          # (re)write the files
    python scripts/gen_vectors.py --check  # exit 1 if the files are not current

The output is deterministic: tests/model/test_vectors.py fails if running this
script would change any file.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from intelpact.model import (
    Agreement,
    ConsentToken,
    Decision,
    Label,
    PartnerNode,
    Policy,
    parse_agreement,
)
from intelpact.model.labels import rel_to_order

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = "tests/vectors/decisions.json"
NOW = "2026-10-01T12:00:00+00:00"
OBJECT = "indicator--5a3c9e0b-63a5-4d53-a5a3-0a7c3f8a1f6e"
VERSION = "2026-09-30T08:00:00.000Z"
ALLOW_RULES = {"read", "release", "publish"}

SAMPLES = {
    "jn": "agreements/jpn-nzl.toml",
    "jna": "agreements/jpn-nzl-aus.toml",
    "pm": "agreements/pacific-maritime.toml",
}
# Variants: (file written, sample it derives from, (old text, new text), what changed)
VARIANTS = {
    "jn-terminated": (
        "tests/vectors/agreements/jpn-nzl-terminated.toml", "jn",
        ('state = "in-force"\nsigned = 2025-12-19\nin_force = 2026-06-01\n',
         'state = "terminated"\nsigned = 2025-12-19\nin_force = 2026-06-01\n'
         "terminated = 2026-09-01\n"),
        "agreements/jpn-nzl.toml, terminated on 2026-09-01"),
    "jn-not-yet-in-force": (
        "tests/vectors/agreements/jpn-nzl-not-yet-in-force.toml", "jn",
        ("in_force = 2026-06-01\n", "in_force = 2026-10-02\n"),
        "agreements/jpn-nzl.toml, in-force but entering into force on 2026-10-02, the day "
        "after the vectors' now"),
    "pm-wide": (
        "tests/vectors/agreements/pacific-maritime-confidential.toml", "pm",
        ('covered = ["UNCLASSIFIED", "RESTRICTED"]\n',
         'covered = ["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL"]\n'),
        "agreements/pacific-maritime.toml, with CONFIDENTIAL covered (the island partners "
        "still have no equivalent)"),
    "jna-no-consent": (
        "tests/vectors/agreements/jpn-nzl-aus-no-consent.toml", "jna",
        ("third_party_release_requires_consent = true\n",
         "third_party_release_requires_consent = false\n"),
        "agreements/jpn-nzl-aus.toml, without the third-party consent rule"),
}

FIELDS = {
    "id": "a stable name for the vector",
    "kind": "read: Policy.may_read(person, label); release: Policy.may_release(label, "
            "node, holder=..., object_id=..., version=..., consents=..., now=...); publish: "
            "Policy.check_publish(person, label)",
    "agreement": "the key of the agreement (in header.agreements) the policy applies",
    "principal.type": "person (read, publish) or node (release)",
    "principal (person)": "name; party (ISO 3166-1 alpha-3); clearance in the party's own "
                          "words; caveats and communities held (each known to the agreement, "
                          "or an ACS-derived name starting ACS-); roles (which never change "
                          "a decision)",
    "principal (node)": "party of the partner node and the agreement id it acts under",
    "label.agreement": "the agreement id the label is under",
    "label.level / label.rank": "the row of that agreement's equivalence table (shared "
                                "scale), by name and by 0-based index, lowest first",
    "label.originator": "the party that originated the information",
    "label.rel_to": "releasability, exactly: the originator first when included, then "
                    "alphabetical; null means no releasability restriction. A label made "
                    "from one marking always includes its originator; a label joined from "
                    "portions of other parties may leave it out (or be empty), and then the "
                    "originator's own nationals may not read it",
    "label.caveats": "caveats a reader must all hold",
    "label.communities": "community clauses: a reader must be in at least one community of "
                         "every clause",
    "label.sources": "every party whose information the label covers (originator included); "
                     "drives the third-party consent rule",
    "holder / object_id / version / consents / now": "release only: the party of the node "
                                                     "releasing, the object, its modified "
                                                     "timestamp, the consent tokens held "
                                                     "(fields as ConsentToken), and the time "
                                                     "of the decision",
    "expected.allowed": "true to allow",
    "expected.rule": "the rule that decided (header.rules)",
    "expected.reason": "the reason as intelpact words it, for a security officer",
}
RULES = {
    "read": "read allowed", "release": "release allowed", "publish": "publish allowed",
    "agreement": "the label or partner is under another agreement",
    "agreement-state": "the agreement is not in force (its state is not in-force, or its "
                       "date of entry into force, in UTC, is after now): no exchange",
    "party": "release: the partner or the releasing holder is not a party, or the partner "
             "is the holder itself; publish, at a node (Policy(agreement, party), which no "
             "vector here uses): the person is not of the node's party (decided first)",
    "originator": "publish: the label's originator is not the person's party (decided "
                  "before every other publish rule but party)",
    "covered": "the level is outside the agreement's covered levels",
    "equivalence": "the party has no equivalent of the level",
    "clearance": "the clearance (as the party protects the level, treat-as included) is "
                 "too low",
    "rel-to": "the party is not in REL TO (publish: REL TO names a non-party)",
    "caveat": "a caveat is not held, unknown to the agreement, or not releasable to the "
              "partner",
    "community": "not in a community of a clause, or a community unknown to the agreement "
                 "(release: or no community at all, when the agreement's rules set "
                 "release_requires_community)",
    "consent": "third-party information without the originator's valid consent",
}


# -- cases --------------------------------------------------------------------------------

def person(name: str, party: str, clearance: str, caveats: Iterable[str] = (),
           communities: Iterable[str] = (), roles: Iterable[str] = ()) -> dict[str, Any]:
    return {"type": "person", "name": name, "party": party, "clearance": clearance,
            "caveats": sorted(caveats), "communities": sorted(communities),
            "roles": sorted(roles)}


def label(level: str, originator: str, rel: Iterable[str] | None = None,
          caveats: Iterable[str] = (), clauses: Iterable[Iterable[str]] = (),
          sources: Iterable[str] = (), agreement: str | None = None,
          joined: bool = False) -> dict[str, Any]:
    """A label; ``joined``: REL TO exactly as given, as a join may leave the originator out
    (otherwise the originator is added, as for any new label)."""
    return {"level": level, "originator": originator,
            "rel_to": None if rel is None else sorted(rel), "caveats": sorted(caveats),
            "communities": sorted(sorted(c) for c in clauses), "sources": sorted(sources),
            "agreement_key": agreement, "joined": joined}


def token(consent_id: str = "consent-1", **changes: Any) -> dict[str, Any]:
    """A consent token's fields: JPN lets the NZL node pass OBJECT on to AUS."""
    t: dict[str, Any] = {
        "token_id": consent_id, "agreement": "jpn-nzl-aus-isa", "originator": "JPN",
        "holder": "NZL", "recipient": "AUS", "objects": {OBJECT: []},
        "purpose": "joint maritime picture", "issued": "2026-09-30T12:00:00+00:00",
        "expires": "2026-10-31T12:00:00+00:00"}
    t.update(changes)
    return t


ALL_JN = ["JPN", "NZL"]
ALL_JNA = ["JPN", "NZL", "AUS"]
ALL_PM = ["NZL", "JPN", "FJI", "TON", "WSM"]

READS: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    # (id, agreement, person, label, rule)
    ("jn-read-allow", "jn", person("Kenji", "JPN", "極秘"), label("SECRET", "NZL", ALL_JN),
     "read"),
    ("jn-read-romanised-clearance", "jn", person("Kenji", "JPN", "Gokuhi"),
     label("SECRET", "NZL", ALL_JN), "read"),
    ("jn-read-alias-clearance", "jn", person("Kenji", "JPN", "特定秘密"),
     label("CONFIDENTIAL", "NZL", ALL_JN), "read"),
    ("jn-read-other-agreement", "jn", person("Kenji", "JPN", "機密"),
     label("SECRET", "JPN", ALL_JN, agreement="jna"), "agreement"),
    ("jn-read-clearance-nzl", "jn", person("Aroha", "NZL", "CONFIDENTIAL"),
     label("SECRET", "JPN", ALL_JN), "clearance"),
    ("jn-read-clearance-jpn", "jn", person("Kenji", "JPN", "秘"),
     label("SECRET", "NZL", ALL_JN), "clearance"),
    ("jn-read-top-secret", "jn", person("Aroha", "NZL", "TOP SECRET"),
     label("TOP SECRET", "JPN", ALL_JN), "read"),
    ("jn-read-rel-to", "jn", person("Aroha", "NZL", "TOP SECRET"),
     label("SECRET", "JPN", []), "rel-to"),
    ("jn-read-originator-always-in-rel-to", "jn", person("Kenji", "JPN", "機密"),
     label("SECRET", "JPN", []), "read"),
    ("jn-read-no-rel-to", "jn", person("Aroha", "NZL", "SECRET"), label("SECRET", "JPN"),
     "read"),
    ("jn-read-caveat-missing", "jn", person("Aroha", "NZL", "SECRET"),
     label("SECRET", "NZL", ["NZL"], ["NZEO"]), "caveat"),
    ("jn-read-caveat-held", "jn", person("Aroha", "NZL", "SECRET", ["NZEO"]),
     label("SECRET", "NZL", ["NZL"], ["NZEO"]), "read"),
    ("jn-read-caveat-unknown", "jn", person("Aroha", "NZL", "SECRET", ["NZEO"]),
     label("UNCLASSIFIED", "JPN", ALL_JN, ["ACS-SENSITIVITY-LES"]), "caveat"),
    ("jn-read-acs-caveat-held", "jn",
     person("Aroha", "NZL", "SECRET", ["ACS-SENSITIVITY-LES"], ["ACS-ENTITY-GOV"]),
     label("UNCLASSIFIED", "JPN", ALL_JN, ["ACS-SENSITIVITY-LES"],
           [["ACS-ENTITY-GOV", "ACS-ENTITY-MIL"]]), "read"),
    # a JPN 極秘 report (REL TO JPN, NZL) with an NZL SECRET NZEO paragraph (REL TO NZL):
    # the whole is REL TO NZL, and no JPN national may read it
    ("jn-read-join-without-originator", "jn", person("Kenji", "JPN", "機密", ["JPNEO"]),
     label("SECRET", "JPN", ["NZL"], ["NZEO"], sources=["NZL"], joined=True), "rel-to"),
    ("jn-read-join-by-the-other-party", "jn", person("Aroha", "NZL", "SECRET", ["NZEO"]),
     label("SECRET", "JPN", ["NZL"], ["NZEO"], sources=["NZL"], joined=True), "read"),
    ("jn-read-tlp-red", "jn", person("Kenji", "JPN", "指定なし"),
     label("UNCLASSIFIED", "JPN", ["JPN"], ["TLP-RED"]), "caveat"),
    ("jn-read-community-missing", "jn", person("Kenji", "JPN", "秘", communities=["CLIMATE"]),
     label("CONFIDENTIAL", "NZL", ALL_JN, clauses=[["MARITIME"]]), "community"),
    ("jn-read-community-any-of", "jn", person("Kenji", "JPN", "秘", communities=["CLIMATE"]),
     label("CONFIDENTIAL", "NZL", ALL_JN, clauses=[["MARITIME", "CLIMATE"]]), "read"),
    ("jn-read-community-every-clause", "jn",
     person("Kenji", "JPN", "秘", communities=["CLIMATE"]),
     label("CONFIDENTIAL", "NZL", ALL_JN, clauses=[["MARITIME", "CLIMATE"],
                                                    ["INFRASTRUCTURE"]]), "community"),
    ("jn-read-first-failure-decides", "jn", person("Aroha", "NZL", "CONFIDENTIAL"),
     label("TOP SECRET", "JPN", [], ["JPNEO"]), "clearance"),
    ("jn-read-roles-do-not-bypass", "jn",
     person("Officer", "NZL", "TOP SECRET", roles=["analyst", "operator", "publisher",
                                                    "security-officer"]),
     label("SECRET", "JPN", []), "rel-to"),
    ("jna-read-treat-as-protected", "jna", person("Jack", "AUS", "PROTECTED"),
     label("RESTRICTED", "NZL", ALL_JNA), "read"),
    ("jna-read-treat-as-official", "jna", person("Jack", "AUS", "OFFICIAL"),
     label("RESTRICTED", "NZL", ALL_JNA), "clearance"),
    ("jna-read-unofficial-as-unclassified", "jna", person("Aroha", "NZL", "UNCLASSIFIED"),
     label("UNOFFICIAL", "AUS", ALL_JNA), "read"),
    ("jna-read-aus-not-in-rel-to", "jna", person("Jack", "AUS", "TOP SECRET"),
     label("SECRET", "NZL", ["NZL", "JPN"]), "rel-to"),
    ("jna-read-austeo", "jna", person("Aroha", "NZL", "TOP SECRET"),
     label("SECRET", "AUS", ["AUS"], ["AUSTEO"]), "rel-to"),
    ("jna-read-austeo-held", "jna", person("Jack", "AUS", "SECRET", ["AUSTEO"]),
     label("SECRET", "AUS", ["AUS"], ["AUSTEO"]), "read"),
    ("pm-read-no-equivalent", "pm", person("Mere", "FJI", "RESTRICTED"),
     label("CONFIDENTIAL", "NZL", ALL_PM), "equivalence"),
    ("pm-read-restricted", "pm", person("Mere", "FJI", "RESTRICTED"),
     label("RESTRICTED", "NZL", ALL_PM), "read"),
    ("pm-read-jpn-treat-as", "pm", person("Kenji", "JPN", "Hi"),
     label("RESTRICTED", "TON", ALL_PM), "read"),
    ("pm-read-jpn-treat-as-too-low", "pm", person("Kenji", "JPN", "Shitei nashi"),
     label("RESTRICTED", "TON", ALL_PM), "clearance"),
    ("pm-read-maritime", "pm", person("Sione", "TON", "RESTRICTED", communities=["MARITIME"]),
     label("RESTRICTED", "FJI", ALL_PM, clauses=[["MARITIME"]]), "read"),
    ("pm-read-maritime-missing", "pm", person("Tavita", "WSM", "RESTRICTED"),
     label("RESTRICTED", "FJI", ALL_PM, clauses=[["MARITIME"]]), "community"),
    ("pm-read-fiji-only", "pm", person("Sione", "TON", "RESTRICTED"),
     label("UNCLASSIFIED", "FJI", ["FJI"]), "rel-to"),
]

# Clearance matrices: "Y" allows, "N" denies for clearance, one column per shared level.
MATRICES = [
    ("jn", "JPN", "NZL", ALL_JN, ["UNCLASSIFIED", "IN-CONFIDENCE", "SENSITIVE", "RESTRICTED",
                                  "CONFIDENTIAL", "SECRET", "TOP SECRET"], {
        "指定なし": "YNNNNNN",
        "取扱注意": "YYYNNNN",
        "秘": "YYYYYNN",
        "極秘": "YYYYYYN",
        "機密": "YYYYYYY",
    }),
    ("jna", "AUS", "NZL", ALL_JNA, ["UNOFFICIAL", "UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL",
                                    "SECRET", "TOP SECRET"], {
        "UNOFFICIAL": "YNNNNN",
        "OFFICIAL": "YYNNNN",
        "PROTECTED": "YYYYNN",
        "SECRET": "YYYYYN",
        "TOP SECRET": "YYYYYY",
    }),
]

RELEASES: list[tuple[str, str, dict[str, Any], str, str, list[dict[str, Any]],
                     str | None, str]] = [
    # (id, agreement, label, partner, holder, consents, version, rule)
    ("jn-release-allow", "jn", label("SECRET", "JPN", ALL_JN), "NZL", "JPN", [], None,
     "release"),
    ("jn-release-label-other-agreement", "jn", label("SECRET", "JPN", ALL_JN, agreement="jna"),
     "NZL", "JPN", [], None, "agreement"),
    ("jn-release-terminated", "jn-terminated", label("SECRET", "JPN", ALL_JN), "NZL", "JPN",
     [], None, "agreement-state"),
    ("jn-release-before-entry-into-force", "jn-not-yet-in-force",
     label("SECRET", "JPN", ALL_JN), "NZL", "JPN", [], None, "agreement-state"),
    ("jn-release-not-a-party", "jn", label("SECRET", "JPN", ALL_JN), "AUS", "JPN", [], None,
     "party"),
    ("jn-release-to-itself", "jn", label("SECRET", "JPN", ALL_JN), "JPN", "JPN", [], None,
     "party"),
    ("jn-release-holder-not-a-party", "jn", label("SECRET", "JPN", ALL_JN), "JPN", "AUS", [],
     None, "party"),
    ("jn-release-not-covered", "jn", label("SENSITIVE", "NZL", ALL_JN), "JPN", "NZL", [], None,
     "covered"),
    ("jn-release-in-confidence-not-covered", "jn", label("IN-CONFIDENCE", "NZL", ALL_JN),
     "JPN", "NZL", [], None, "covered"),
    ("jn-release-restricted", "jn", label("RESTRICTED", "NZL", ALL_JN), "JPN", "NZL", [], None,
     "release"),
    ("jn-release-rel-to", "jn", label("SECRET", "NZL", ["NZL"]), "JPN", "NZL", [], None,
     "rel-to"),
    ("jn-release-caveat-not-releasable", "jn", label("SECRET", "NZL", ALL_JN, ["NZEO"]), "JPN",
     "NZL", [], None, "caveat"),
    ("jn-release-caveat-unknown", "jn",
     label("UNCLASSIFIED", "NZL", ALL_JN, ["ACS-SENSITIVITY-LES"]), "JPN", "NZL", [], None,
     "caveat"),
    ("jn-release-community-unknown", "jn",
     label("UNCLASSIFIED", "NZL", ALL_JN, clauses=[["ACS-ENTITY-GOV"]]), "JPN", "NZL", [],
     None, "community"),
    ("jn-release-community-known", "jn",
     label("UNCLASSIFIED", "NZL", ALL_JN, clauses=[["MARITIME"]]), "JPN", "NZL", [], None,
     "release"),
    ("pm-release-not-covered", "pm", label("CONFIDENTIAL", "NZL", ["NZL", "JPN"]), "JPN", "NZL",
     [], None, "covered"),
    ("pm-release-no-equivalent", "pm-wide", label("CONFIDENTIAL", "NZL"), "FJI", "NZL", [],
     None, "equivalence"),
    ("pm-release-covered-equivalent", "pm-wide",
     label("CONFIDENTIAL", "NZL", clauses=[["MARITIME"]]), "JPN", "NZL", [], None, "release"),
    ("pm-release-island-to-island", "pm",
     label("RESTRICTED", "FJI", ALL_PM, clauses=[["MARITIME"]]), "TON", "FJI", [], None,
     "release"),
    ("pm-release-third-party", "pm",
     label("RESTRICTED", "FJI", ALL_PM, clauses=[["MARITIME"]]), "TON", "NZL", [], None,
     "consent"),
    ("pm-release-no-community", "pm", label("UNCLASSIFIED", "NZL", ALL_PM), "FJI", "NZL", [],
     None, "community"),
    ("pm-release-community-climate", "pm",
     label("UNCLASSIFIED", "NZL", ALL_PM, clauses=[["CLIMATE"]]), "FJI", "NZL", [], None,
     "release"),
    ("jna-release-third-party-no-consent", "jna", label("SECRET", "JPN", ALL_JNA), "AUS", "NZL",
     [], None, "consent"),
    ("jna-release-third-party-consent", "jna", label("SECRET", "JPN", ALL_JNA), "AUS", "NZL",
     [token()], None, "release"),
    ("jna-release-consent-version", "jna", label("SECRET", "JPN", ALL_JNA), "AUS", "NZL",
     [token(objects={OBJECT: [VERSION]})], VERSION, "release"),
    ("jna-release-consent-other-version", "jna", label("SECRET", "JPN", ALL_JNA), "AUS", "NZL",
     [token(objects={OBJECT: [VERSION]})], "2026-10-01T00:00:00.000Z", "consent"),
    ("jna-release-consent-expired", "jna", label("SECRET", "JPN", ALL_JNA), "AUS", "NZL",
     [token(expires="2026-10-01T11:59:59+00:00")], None, "consent"),
    ("jna-release-consent-not-yet", "jna", label("SECRET", "JPN", ALL_JNA), "AUS", "NZL",
     [token(issued="2026-10-02T00:00:00+00:00")], None, "consent"),
    ("jna-release-consent-other-recipient", "jna", label("SECRET", "JPN", ALL_JNA), "AUS",
     "NZL", [token(recipient="JPN")], None, "consent"),
    ("jna-release-consent-other-holder", "jna", label("SECRET", "JPN", ALL_JNA), "AUS", "NZL",
     [token(holder="AUS", recipient="NZL")], None, "consent"),
    ("jna-release-consent-other-object", "jna", label("SECRET", "JPN", ALL_JNA), "AUS", "NZL",
     [token(objects={"indicator--00000000-0000-4000-8000-000000000000": []})], None,
     "consent"),
    ("jna-release-consent-other-agreement", "jna", label("SECRET", "JPN", ALL_JNA), "AUS",
     "NZL", [token(agreement="jpn-nzl-isa")], None, "consent"),
    ("jna-release-consent-wrong-originator", "jna", label("SECRET", "JPN", ALL_JNA), "AUS",
     "NZL", [token(originator="NZL")], None, "consent"),
    ("jna-release-consent-one-good", "jna", label("SECRET", "JPN", ALL_JNA), "AUS", "NZL",
     [token(recipient="JPN"), token("consent-2")], None, "release"),
    ("jna-release-back-to-originator", "jna", label("SECRET", "JPN", ALL_JNA), "JPN", "NZL", [],
     None, "release"),
    ("jna-release-by-originator", "jna", label("SECRET", "JPN", ALL_JNA), "AUS", "JPN", [], None,
     "release"),
    ("jna-release-two-sources", "jna", label("SECRET", "JPN", ALL_JNA, sources=["AUS"]), "JPN",
     "NZL", [token()], None, "consent"),
    ("jna-release-two-sources-consent", "jna",
     label("SECRET", "JPN", ALL_JNA, sources=["AUS"]), "JPN", "NZL",
     [token("consent-aus", originator="AUS", recipient="JPN")], None, "release"),
    ("jna-release-austeo", "jna", label("SECRET", "AUS", ALL_JNA, ["AUSTEO"]), "NZL", "AUS",
     [], None, "caveat"),
    ("jna-release-no-consent-rule", "jna-no-consent", label("SECRET", "JPN", ALL_JNA), "AUS",
     "NZL", [], None, "release"),
]

PUBLISHES: list[tuple[str, str, dict[str, Any], dict[str, Any], str]] = [
    ("jn-publish-allow", "jn", person("Aroha", "NZL", "SECRET"), label("SECRET", "NZL", ALL_JN),
     "publish"),
    ("jn-publish-above-clearance", "jn", person("Aroha", "NZL", "SECRET"),
     label("TOP SECRET", "NZL", ALL_JN), "clearance"),
    ("jn-publish-rel-to-beyond-agreement", "jn", person("Aroha", "NZL", "SECRET"),
     label("SECRET", "NZL", ["NZL", "JPN", "USA"]), "rel-to"),
    ("jn-publish-caveat-not-held", "jn", person("Aroha", "NZL", "SECRET"),
     label("SECRET", "NZL", ["NZL"], ["NZEO"]), "caveat"),
    ("jn-publish-other-originator", "jn", person("Aroha", "NZL", "TOP SECRET"),
     label("SECRET", "JPN", ALL_JN), "originator"),
    ("jn-publish-japanese", "jn", person("Kenji", "JPN", "機密", ["JPNEO"]),
     label("TOP SECRET", "JPN", ["JPN"], ["JPNEO"]), "publish"),
    ("pm-publish-maritime", "pm", person("Mere", "FJI", "RESTRICTED", communities=["MARITIME"]),
     label("RESTRICTED", "FJI", ALL_PM, clauses=[["MARITIME"]]), "publish"),
]


# -- building ------------------------------------------------------------------------------

def _texts() -> dict[str, str]:
    """The agreement texts by key: the samples, and the variants derived from them."""
    texts = {key: (ROOT / path).read_text(encoding="utf-8") for key, path in SAMPLES.items()}
    for key, (_, base, (old, new), what) in VARIANTS.items():
        source = texts[base]
        if source.count(old) != 1:
            raise SystemExit(f"gen_vectors: cannot derive {key}: {old!r} is not in "
                             f"{SAMPLES[base]} exactly once")
        header = (f"# GENERATED by scripts/gen_vectors.py from {SAMPLES[base]}: do not edit.\n"
                  f"# Variant: {what}.\n")
        texts[key] = header + source.replace(old, new)
    return texts


def _path(key: str) -> str:
    return SAMPLES[key] if key in SAMPLES else VARIANTS[key][0]


def load_all() -> dict[str, Agreement]:
    """Every agreement the vectors use, parsed from the texts this script derives."""
    return {key: parse_agreement(tomllib.loads(text), source=_path(key))
            for key, text in _texts().items()}


def _label(agreements: dict[str, Agreement], key: str, spec: dict[str, Any]) -> Label:
    a = agreements[spec.get("agreement_key") or key]
    rel = spec["rel_to"]
    return Label(a.id, a.shared_rank(spec["level"]), spec["originator"],
                 None if rel is None else frozenset(rel), frozenset(spec["caveats"]),
                 frozenset(frozenset(c) for c in spec["communities"]),
                 frozenset(spec["sources"]), add_originator=not spec["joined"])


def _label_json(label: Label, agreements: dict[str, Agreement], key: str,
                spec: dict[str, Any]) -> dict[str, Any]:
    a = agreements[spec.get("agreement_key") or key]
    rel = None if label.rel_to is None else rel_to_order(label)
    return {"agreement": label.agreement, "level": a.rows[label.rank].name,
            "rank": label.rank, "originator": label.originator, "rel_to": rel,
            "caveats": sorted(label.caveats),
            "communities": sorted(sorted(c) for c in label.communities),
            "sources": [label.originator, *sorted(label.sources - {label.originator})]}


def _token(spec: dict[str, Any]) -> ConsentToken:
    return ConsentToken(
        token_id=spec["token_id"], agreement=spec["agreement"], originator=spec["originator"],
        holder=spec["holder"], recipient=spec["recipient"],
        objects={k: frozenset(v) for k, v in spec["objects"].items()},
        purpose=spec["purpose"], issued=dt.datetime.fromisoformat(spec["issued"]),
        expires=dt.datetime.fromisoformat(spec["expires"]))


def _check(vid: str, decision: Decision, rule: str) -> dict[str, Any]:
    if decision.rule != rule or decision.allowed != (rule in ALLOW_RULES):
        raise SystemExit(f"gen_vectors: {vid}: expected rule {rule!r}, intelpact decided "
                         f"{decision}")
    return {"allowed": decision.allowed, "rule": decision.rule, "reason": decision.reason}


def _person(policy: Policy, spec: dict[str, Any]) -> Any:
    return policy.person(spec["name"], spec["party"], spec["clearance"],
                         caveats=spec["caveats"], communities=spec["communities"],
                         roles=spec["roles"])


def vectors(agreements: dict[str, Agreement]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    reads = list(READS)
    for key, party, originator, rel, levels, table in MATRICES:
        for clearance, row in table.items():
            for level, mark in zip(levels, row, strict=True):
                vid = f"{key}-matrix-{party}-{clearance}-{level}".replace(" ", "_")
                reads.append((vid, key, person("Reader", party, clearance),
                              label(level, originator, rel),
                              "read" if mark == "Y" else "clearance"))
    for vid, key, who, what, rule in reads:
        policy = Policy(agreements[key])
        lab = _label(agreements, key, what)
        out.append({"id": vid, "kind": "read", "agreement": key, "principal": who,
                    "label": _label_json(lab, agreements, key, what),
                    "expected": _check(vid, policy.may_read(_person(policy, who), lab),
                                       rule)})
    for vid, key, what, partner, holder, consents, version, rule in RELEASES:
        policy = Policy(agreements[key])
        lab = _label(agreements, key, what)
        node = {"type": "node", "party": partner, "agreement": agreements[key].id}
        decision = policy.may_release(
            lab, PartnerNode(partner, agreements[key].id), holder=holder, object_id=OBJECT,
            version=version, consents=[_token(c) for c in consents],
            now=dt.datetime.fromisoformat(NOW))
        out.append({"id": vid, "kind": "release", "agreement": key, "principal": node,
                    "label": _label_json(lab, agreements, key, what), "holder": holder,
                    "object_id": OBJECT, "version": version, "consents": consents,
                    "now": NOW, "expected": _check(vid, decision, rule)})
    for vid, key, who, what, rule in PUBLISHES:
        policy = Policy(agreements[key])
        lab = _label(agreements, key, what)
        out.append({"id": vid, "kind": "publish", "agreement": key, "principal": who,
                    "label": _label_json(lab, agreements, key, what),
                    "expected": _check(vid, policy.check_publish(_person(policy, who), lab),
                                       rule)})
    ids = [v["id"] for v in out]
    if len(set(ids)) != len(ids):
        raise SystemExit("gen_vectors: duplicate vector ids")
    return out


def build() -> dict[str, str]:
    """Every file this script writes, by path relative to the repository root."""
    texts = _texts()
    agreements = load_all()
    header = {
        "title": "intelpact access decision vectors",
        "about": "Principal x label -> decision vectors for intelpact's core model, reusable "
                 "by another implementation of the same agreements. The sample agreements "
                 "are illustrative, not the text of any real agreement.",
        "generator": "scripts/gen_vectors.py (python scripts/gen_vectors.py --check verifies "
                     "the file is current)",
        "agreements": {key: {"file": _path(key), "id": a.id, "content_hash": a.content_hash,
                             **({"variant_of": SAMPLES[VARIANTS[key][1]],
                                 "change": VARIANTS[key][3]} if key in VARIANTS else {})}
                       for key, a in agreements.items()},
        "fields": FIELDS,
        "rules": RULES,
        "read_order": ["agreement", "equivalence", "clearance", "rel-to", "caveat",
                       "community"],
        "release_order": ["agreement", "agreement-state", "party", "covered", "equivalence",
                          "rel-to", "caveat", "community", "consent"],
    }
    doc = {"header": header, "vectors": vectors(agreements)}
    files = {OUTPUT: json.dumps(doc, ensure_ascii=False, indent=1) + "\n"}
    for key, (path, *_) in VARIANTS.items():
        files[path] = texts[key]
    return files


def main(argv: list[str]) -> int:
    files = build()
    if argv[1:] == ["--check"]:
        stale = [p for p, text in files.items()
                 if not (ROOT / p).exists() or (ROOT / p).read_text(encoding="utf-8") != text]
        for p in stale:
            print(f"out of date: {p} (run python scripts/gen_vectors.py)")
        return 1 if stale else 0
    if argv[1:]:
        print(__doc__)
        return 2
    for p, text in files.items():
        (ROOT / p).parent.mkdir(parents=True, exist_ok=True)
        (ROOT / p).write_text(text, encoding="utf-8")
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
