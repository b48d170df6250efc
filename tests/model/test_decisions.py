"""Access decisions: reading (whole objects and portions), releasing to partner
nodes (with consent for third-party material), publishing, and principals."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import random
import tomllib
from pathlib import Path
from typing import Any

import pytest

from intelpact.model import (
    Agreement,
    ConsentToken,
    Decision,
    Label,
    Markings,
    ObjectLabels,
    PartnerNode,
    Person,
    Policy,
    national_marking,
    parse_agreement,
)
from intelpact.model.decisions import ROLES

ROOT = Path(__file__).resolve().parents[2]
F = frozenset
NOW = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)
OBJ = "indicator--5a3c9e0b-63a5-4d53-a5a3-0a7c3f8a1f6e"
VERSION = "2026-09-30T08:00:00.000Z"


def raw(name: str) -> dict[str, Any]:
    with (ROOT / "agreements" / f"{name}.toml").open("rb") as fh:
        return copy.deepcopy(tomllib.load(fh))


def lab(a: Agreement, level: str, originator: str, rel: set[str] | None = None,
        caveats: set[str] | None = None, clauses: list[set[str]] | None = None,
        sources: set[str] | None = None) -> Label:
    """A label at a shared level of ``a``."""
    return Label(a.id, a.shared_rank(level), originator, None if rel is None else F(rel),
                 F(caveats or ()), F(F(c) for c in clauses or ()), F(sources or ()))


def deny(d: Decision, rule: str, reason: str) -> None:
    assert not d.allowed and not bool(d)
    assert d.rule == rule
    assert d.reason == reason


# -- reading: each rule of the read decision, in order --------------------------------

def test_read_allowed(jn: Agreement, jn_policy: Policy) -> None:
    kenji = jn_policy.person("Kenji", "JPN", "Gokuhi")
    d = jn_policy.may_read(kenji, lab(jn, "SECRET", "NZL", {"JPN"}))
    assert d.allowed and bool(d)
    assert (d.rule, d.reason) == ("read", "Kenji (JPN, 極秘) may read SECRET")


def test_read_rule_agreement(jn: Agreement, jna: Agreement, jn_policy: Policy) -> None:
    kenji = jn_policy.person("Kenji", "JPN", "機密")
    deny(jn_policy.may_read(kenji, lab(jna, "SECRET", "JPN")), "agreement",
         "the object is marked under agreement jpn-nzl-aus-isa, not jpn-nzl-isa")


def test_read_rule_equivalence(pm: Agreement, pm_policy: Policy) -> None:
    mere = pm_policy.person("Mere", "FJI", "RESTRICTED")
    deny(pm_policy.may_read(mere, lab(pm, "CONFIDENTIAL", "NZL", {"FJI"})), "equivalence",
         "FJI has no equivalent of CONFIDENTIAL under pacific-maritime")
    assert pm_policy.may_read(mere, lab(pm, "RESTRICTED", "NZL", {"FJI"})).allowed


@pytest.mark.parametrize("party,clearance,level,reason", [
    ("NZL", "CONFIDENTIAL", "SECRET", "clearance CONFIDENTIAL does not dominate SECRET"),
    ("NZL", "SECRET", "TOP SECRET", "clearance SECRET does not dominate TOP SECRET"),
    ("NZL", "UNCLASSIFIED", "RESTRICTED", "clearance UNCLASSIFIED does not dominate RESTRICTED"),
    ("JPN", "Hi", "SECRET", "clearance 秘 (CONFIDENTIAL) does not dominate 極秘 (SECRET)"),
    # Japan protects NZ RESTRICTED as 秘: 取扱注意 is not enough
    ("JPN", "取扱注意", "RESTRICTED",
     "clearance 取扱注意 (SENSITIVE) does not dominate 秘 (RESTRICTED)"),
    ("JPN", "指定なし", "IN-CONFIDENCE",
     "clearance 指定なし (UNCLASSIFIED) does not dominate 取扱注意 (IN-CONFIDENCE)"),
])
def test_read_rule_clearance(jn: Agreement, jn_policy: Policy, party: str, clearance: str,
                             level: str, reason: str) -> None:
    person = jn_policy.person("p", party, clearance)
    deny(jn_policy.may_read(person, lab(jn, level, "NZL", {"JPN"})), "clearance", reason)


def test_treat_as_needs_the_higher_national_level(jn: Agreement, jna: Agreement) -> None:
    p, q = Policy(jn), Policy(jna)
    restricted = lab(jn, "RESTRICTED", "NZL", {"JPN"})
    assert p.may_read(p.person("a", "JPN", "秘"), restricted).allowed
    assert p.may_read(p.person("b", "NZL", "RESTRICTED"), restricted).allowed
    aus_restricted = lab(jna, "RESTRICTED", "NZL", {"AUS"})
    assert q.may_read(q.person("c", "AUS", "PROTECTED"), aus_restricted).allowed
    deny(q.may_read(q.person("d", "AUS", "OFFICIAL"), aus_restricted), "clearance",
         "clearance OFFICIAL (UNCLASSIFIED) does not dominate PROTECTED (RESTRICTED)")


def test_treat_as_may_name_a_level_further_up() -> None:
    """The clearance needed is the national level named by treat_as, not the row's rank."""
    data = raw("jpn-nzl")
    data["equivalence"][3]["JPN"] = {"treat_as": "極秘"}  # RESTRICTED protected as 極秘
    strict = parse_agreement(data, source="jpn-nzl-strict.toml")
    policy = Policy(strict)
    restricted = lab(strict, "RESTRICTED", "NZL", {"JPN"})
    deny(policy.may_read(policy.person("a", "JPN", "秘"), restricted), "clearance",
         "clearance 秘 (CONFIDENTIAL) does not dominate 極秘 (RESTRICTED)")
    assert policy.may_read(policy.person("b", "JPN", "極秘"), restricted).allowed
    assert policy.may_read(policy.person("c", "NZL", "RESTRICTED"), restricted).allowed


def test_read_rule_rel_to(jn: Agreement, jna: Agreement, jn_policy: Policy) -> None:
    aroha = jn_policy.person("Aroha", "NZL", "TOP SECRET")
    deny(jn_policy.may_read(aroha, lab(jn, "SECRET", "JPN", set())), "rel-to",
         "NZL not in REL TO JPN")
    q = Policy(jna)
    deny(q.may_read(q.person("b", "AUS", "TS"), lab(jna, "SECRET", "NZL", {"JPN"})), "rel-to",
         "AUS not in REL TO NZL, JPN")
    # the originator's nationals are always in REL TO; no REL TO means no restriction
    kenji = jn_policy.person("Kenji", "JPN", "機密")
    assert jn_policy.may_read(kenji, lab(jn, "SECRET", "JPN", set())).allowed
    assert jn_policy.may_read(aroha, lab(jn, "SECRET", "JPN")).allowed


def test_read_rule_caveat(jn: Agreement, jn_policy: Policy) -> None:
    label = lab(jn, "SECRET", "NZL", {"JPN"}, caveats={"NZEO"})
    deny(jn_policy.may_read(jn_policy.person("a", "NZL", "SECRET"), label), "caveat",
         "caveat NZEO not held")
    deny(jn_policy.may_read(jn_policy.person("b", "NZL", "SECRET"),
                            lab(jn, "SECRET", "NZL", caveats={"NZEO", "ACS-CAVEAT-FISA"})),
         "caveat", "caveat ACS-CAVEAT-FISA, NZEO not held")
    holder = jn_policy.person("c", "NZL", "SECRET", caveats=["NZEO"])
    assert jn_policy.may_read(holder, label).allowed


def test_read_rule_community(jn: Agreement, jn_policy: Policy) -> None:
    label = lab(jn, "CONFIDENTIAL", "NZL", {"JPN"},
                clauses=[{"MARITIME", "CLIMATE"}, {"INFRASTRUCTURE"}])
    deny(jn_policy.may_read(jn_policy.person("a", "JPN", "秘"), label), "community",
         "not in community CLIMATE or MARITIME")
    deny(jn_policy.may_read(jn_policy.person("b", "JPN", "秘", communities=["CLIMATE"]),
                            label), "community", "not in community INFRASTRUCTURE")
    both = jn_policy.person("c", "JPN", "秘", communities=["MARITIME", "INFRASTRUCTURE"])
    assert jn_policy.may_read(both, label).allowed


def test_first_failing_rule_decides(jn: Agreement, jn_policy: Policy) -> None:
    label = lab(jn, "TOP SECRET", "JPN", set(), caveats={"JPNEO"}, clauses=[{"MARITIME"}])
    low = jn_policy.person("a", "NZL", "CONFIDENTIAL")
    assert jn_policy.may_read(low, label).rule == "clearance"
    high = jn_policy.person("b", "NZL", "TOP SECRET")
    assert jn_policy.may_read(high, label).rule == "rel-to"
    jpn = jn_policy.person("c", "JPN", "機密")
    assert jn_policy.may_read(jpn, label).rule == "caveat"
    jpn_eo = jn_policy.person("d", "JPN", "機密", caveats=["JPNEO"])
    assert jn_policy.may_read(jpn_eo, label).rule == "community"


def test_read_decisions_are_cached_per_label(jn: Agreement, jn_policy: Policy) -> None:
    person = jn_policy.person("a", "NZL", "SECRET")
    label = lab(jn, "SECRET", "JPN", {"NZL"})
    first = jn_policy.may_read(person, label)
    assert jn_policy.may_read(person, lab(jn, "SECRET", "JPN", {"NZL"})) is first
    assert jn_policy.may_read(jn_policy.person("a", "NZL", "C"), label).rule == "clearance"


# -- whole objects and portions -----------------------------------------------------------

def test_read_object_withholds_portions_with_reasons(jn: Agreement, jn_policy: Policy) -> None:
    base = lab(jn, "CONFIDENTIAL", "JPN", {"NZL"})
    portions = {
        "description": lab(jn, "TOP SECRET", "JPN", {"NZL"}),
        "name": lab(jn, "CONFIDENTIAL", "JPN", {"NZL"}),
        "external_references.[0]": lab(jn, "CONFIDENTIAL", "JPN", set()),
        "aliases.[1]": lab(jn, "CONFIDENTIAL", "JPN", {"NZL"}, clauses=[{"MARITIME"}]),
    }
    labels = ObjectLabels(base, portions, base)
    aroha = jn_policy.person("Aroha", "NZL", "SECRET")
    result = jn_policy.read_object(aroha, labels)
    assert result.decision.allowed
    assert result.withheld == ("aliases.[1]", "description", "external_references.[0]")
    assert {s: (d.rule, d.reason) for s, d in result.reasons.items()} == {
        "description": ("clearance", "clearance SECRET does not dominate TOP SECRET"),
        "external_references.[0]": ("rel-to", "NZL not in REL TO JPN"),
        "aliases.[1]": ("community", "not in community MARITIME"),
    }
    cleared = jn_policy.person("Tane", "NZL", "TOP SECRET", communities=["MARITIME"])
    result = jn_policy.read_object(cleared, labels)
    assert result.withheld == ("external_references.[0]",)


def test_read_object_denied_at_the_base(jn: Agreement, jn_policy: Policy) -> None:
    labels = ObjectLabels(lab(jn, "SECRET", "JPN", {"NZL"}),
                          {"name": lab(jn, "TOP SECRET", "JPN", {"NZL"})},
                          lab(jn, "TOP SECRET", "JPN", {"NZL"}))
    result = jn_policy.read_object(jn_policy.person("a", "NZL", "C"), labels)
    deny(result.decision, "clearance", "clearance CONFIDENTIAL does not dominate SECRET")
    assert result.withheld == () and result.reasons == {}


def test_read_object_from_markings(jn: Agreement, jn_policy: Policy) -> None:
    markings = Markings(jn)
    secret = national_marking(jn, "JPN", "極秘", rel_to=["NZL"])
    ts = national_marking(jn, "JPN", "機密", rel_to=["NZL"])
    for m in (secret, ts):
        markings.add(m)
    o = {"type": "report", "id": "report--1", "name": "n", "description": "d",
         "object_marking_refs": [secret["id"]],
         "granular_markings": [{"marking_ref": ts["id"], "selectors": ["description"]}]}
    labels = markings.label(o)
    s = jn_policy.read_object(jn_policy.person("s", "NZL", "SECRET"), labels)
    assert s.decision.allowed and s.withheld == ("description",)
    t = jn_policy.read_object(jn_policy.person("t", "JPN", "Kimitsu"), labels)
    assert t.decision.allowed and t.withheld == ()


def test_cross_originator_banner_reproducer(jn: Agreement, jn_policy: Policy) -> None:
    """A JPN 極秘 report (REL TO JPN) with an NZL SECRET NZEO paragraph (REL TO NZL).

    The banner is the join: REL TO is the intersection, which is empty, and the join does
    not put JPN back. So the banner dominates both parts and nobody may read the whole:
    not a JPN national (not in REL TO, and cannot even hold NZEO), not an NZL national
    (not in REL TO JPN)."""
    markings = Markings(jn)
    base = national_marking(jn, "JPN", "極秘")
    nzeo = national_marking(jn, "NZL", "SECRET", rel_to=["NZL"], caveats=["NZEO"])
    assert (base["name"], nzeo["name"]) == ("極秘 // REL TO JPN", "SECRET // NZEO // REL TO NZL")
    for m in (base, nzeo):
        markings.add(m)
    o = {"type": "report", "id": "report--1", "name": "n", "description": "d",
         "object_marking_refs": [base["id"]],
         "granular_markings": [{"marking_ref": nzeo["id"], "selectors": ["description"]}]}
    labels = markings.label(o)
    assert labels.base == Label(jn.id, 5, "JPN", F({"JPN"}))
    assert labels.portions == {"description": Label(jn.id, 5, "NZL", F({"NZL"}), F({"NZEO"}))}
    banner = labels.banner
    assert (banner.originator, banner.rank, banner.rel_to) == ("JPN", 5, F())
    assert banner.caveats == F({"NZEO"}) and banner.sources == F({"JPN", "NZL"})
    assert banner.dominates(labels.base) and banner.dominates(labels.portions["description"])

    kenji = jn_policy.person("Kenji", "JPN", "機密", caveats=["JPNEO"])
    # (an empty REL TO is worded as nothing at all: see test_labels' empty-REL-TO banner)
    d = jn_policy.may_read(kenji, banner)
    assert not d.allowed and d.rule == "rel-to" and d.reason.startswith("JPN not in REL TO")
    seen = jn_policy.read_object(kenji, labels)
    assert seen.decision.allowed and seen.withheld == ("description",)
    assert seen.reasons["description"].rule == "rel-to"
    with pytest.raises(ValueError, match=r"a JPN national cannot hold NZEO \(New Zealand Eyes "
                       r"Only"):
        jn_policy.person("Kenji", "JPN", "機密", caveats=["NZEO"])

    aroha = jn_policy.person("Aroha", "NZL", "TOP SECRET", caveats=["NZEO"])
    assert jn_policy.may_read(aroha, labels.portions["description"]).allowed
    d = jn_policy.may_read(aroha, banner)
    assert not d.allowed and d.rule == "rel-to" and d.reason.startswith("NZL not in REL TO")
    deny(jn_policy.read_object(aroha, labels).decision, "rel-to", "NZL not in REL TO JPN")
    # nor may the whole go anywhere
    for partner, holder in (("NZL", "JPN"), ("JPN", "NZL")):
        assert release(jn_policy, banner, partner, holder).rule == "rel-to"


def test_cross_originator_join_keeps_only_the_common_readers(jn: Agreement,
                                                             jn_policy: Policy) -> None:
    """The same report REL TO JPN, NZL: the banner is REL TO NZL, so the NZL reader holding
    NZEO reads the whole and the JPN originator's own nationals do not."""
    markings = Markings(jn)
    base = national_marking(jn, "JPN", "極秘", rel_to=["NZL"])
    nzeo = national_marking(jn, "NZL", "SECRET", caveats=["NZEO"])
    for m in (base, nzeo):
        markings.add(m)
    o = {"type": "report", "id": "report--1", "name": "n", "description": "d",
         "object_marking_refs": [base["id"]],
         "granular_markings": [{"marking_ref": nzeo["id"], "selectors": ["description"]}]}
    banner = markings.label(o).banner
    assert (banner.originator, banner.rel_to) == ("JPN", F({"NZL"}))
    aroha = jn_policy.person("Aroha", "NZL", "SECRET", caveats=["NZEO"])
    assert jn_policy.may_read(aroha, banner).allowed
    deny(jn_policy.may_read(jn_policy.person("Kenji", "JPN", "機密"), banner), "rel-to",
         "JPN not in REL TO NZL")


# -- releasing to a partner node -------------------------------------------------------

def token(**changes: Any) -> ConsentToken:
    fields: dict[str, Any] = dict(
        token_id="consent-1", agreement="jpn-nzl-aus-isa", originator="JPN", holder="NZL",
        recipient="AUS", objects={OBJ: F()}, purpose="joint maritime picture",
        issued=NOW - dt.timedelta(days=1), expires=NOW + dt.timedelta(days=30),
        signature="ed25519:...")
    fields.update(changes)
    return ConsentToken(**fields)


def release(policy: Policy, label: Label, partner: str, holder: str, **kw: Any) -> Decision:
    kw.setdefault("now", NOW)
    kw.setdefault("object_id", OBJ)
    return policy.may_release(label, PartnerNode(partner, policy.agreement.id),
                              holder=holder, **kw)


def test_release_allowed(jn: Agreement, jn_policy: Policy) -> None:
    d = release(jn_policy, lab(jn, "SECRET", "JPN", {"NZL"}), "NZL", "JPN")
    assert d.allowed and (d.rule, d.reason) == ("release", "NZL may receive SECRET")


def test_release_rule_agreement(jn: Agreement, jna: Agreement, jn_policy: Policy) -> None:
    deny(release(jn_policy, lab(jna, "SECRET", "JPN", {"NZL"}), "NZL", "JPN"), "agreement",
         "the object or partner is under another agreement than jpn-nzl-isa")
    d = jn_policy.may_release(lab(jn, "SECRET", "JPN", {"NZL"}),
                              PartnerNode("NZL", "jpn-nzl-aus-isa"), holder="JPN",
                              object_id=OBJ, now=NOW)
    deny(d, "agreement", "the object or partner is under another agreement than jpn-nzl-isa")


@pytest.mark.parametrize("status", [
    {"state": "terminated", "signed": dt.date(2025, 12, 19), "in_force": dt.date(2026, 6, 1),
     "terminated": dt.date(2026, 9, 1)},
    {"state": "draft"},
])
def test_release_rule_agreement_state(status: dict[str, Any]) -> None:
    data = raw("jpn-nzl")
    data["agreement"]["status"] = status
    ended = parse_agreement(data, source="jpn-nzl-ended.toml")
    policy = Policy(ended)
    label = Label(ended.id, 5, "JPN", F({"NZL"}))
    deny(release(policy, label, "NZL", "JPN"), "agreement-state",
         f"agreement jpn-nzl-isa is {status['state']}: no exchange")
    # what was received stays readable under the agreement's protection
    assert policy.may_read(policy.person("a", "NZL", "SECRET"), label).allowed


def test_release_rule_agreement_state_before_entry_into_force() -> None:
    """A text whose state is in-force but whose entry into force is still to come: no
    exchange until that day (UTC), the refusal naming it; from that day on, as before."""
    data = raw("jpn-nzl")
    data["agreement"]["status"] = {"state": "in-force", "signed": dt.date(2025, 12, 19),
                                   "in_force": dt.date(2026, 10, 2)}
    soon = parse_agreement(data, source="jpn-nzl-soon.toml")
    policy = Policy(soon)
    label = Label(soon.id, 5, "JPN", F({"NZL"}))
    reason = ("agreement jpn-nzl-isa enters into force on 2026-10-02: no exchange before "
              "that day")
    deny(release(policy, label, "NZL", "JPN"), "agreement-state", reason)
    last = dt.datetime(2026, 10, 1, 23, 59, 59, tzinfo=dt.UTC)
    deny(release(policy, label, "NZL", "JPN", now=last), "agreement-state", reason)
    assert not soon.in_force_on(last.date())
    first = dt.datetime(2026, 10, 2, tzinfo=dt.UTC)
    assert release(policy, label, "NZL", "JPN", now=first).allowed
    assert soon.in_force_on(first.date())
    # a time given in another zone is the same instant: still 1 October in UTC
    tokyo = dt.datetime(2026, 10, 2, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    deny(release(policy, label, "NZL", "JPN", now=tokyo), "agreement-state", reason)


@pytest.mark.parametrize("on_termination", ["continue-protection", "destroy", "return"])
def test_may_keep_after_termination(on_termination: str) -> None:
    """A holder asked whether it may keep an object its originator reclassified: after a
    termination that continues protection, yes while it can protect the new label (rule
    keep), where release (agreement-state) says no; the rest of release's rules about what
    is exchanged still hold. A termination that says destroy or return keeps nothing.
    While the agreement is in force, it is the release decision."""
    data = raw("jpn-nzl")
    data["agreement"]["status"] = {"state": "terminated", "signed": dt.date(2025, 12, 19),
                                   "in_force": dt.date(2026, 6, 1),
                                   "terminated": dt.date(2026, 9, 1)}
    data["rules"]["on_termination"] = on_termination
    ended = parse_agreement(data, source="jpn-nzl-ended.toml")
    policy = Policy(ended, "NZL")
    raised = Label(ended.id, 6, "JPN", F({"NZL"}))
    deny(release(policy, raised, "NZL", "JPN"), "agreement-state",
         "agreement jpn-nzl-isa is terminated: no exchange")
    d = policy.may_keep(raised, "NZL", originator="JPN", object_id=OBJ)
    if on_termination != "continue-protection":
        deny(d, "agreement-state", "agreement jpn-nzl-isa is terminated: no exchange")
        return
    assert d.allowed and (d.rule, d.reason) == (
        "keep", "NZL keeps TOP SECRET: protection continues after jpn-nzl-isa's "
        "termination on 2026-09-01")
    deny(policy.may_keep(Label(ended.id, 6, "JPN", F()), "NZL", originator="JPN",
                         object_id=OBJ), "rel-to", "NZL not in REL TO JPN")
    deny(policy.may_keep(Label(ended.id, 5, "JPN", F({"NZL"}), F({"JPNEO"})), "NZL",
                         originator="JPN", object_id=OBJ),
         "caveat", "caveat JPNEO is not releasable to NZL")


def test_may_keep_in_force_is_the_release_decision(jn: Agreement) -> None:
    policy = Policy(jn, "NZL")
    for label in (Label(jn.id, 6, "JPN", F({"NZL"})), Label(jn.id, 6, "JPN", F())):
        assert policy.may_keep(label, "NZL", originator="JPN", object_id=OBJ, now=NOW) == \
            release(policy, label, "NZL", "JPN")


def test_release_rule_agreement_state_before_termination() -> None:
    """A text terminated ahead of its date of termination: in force until that day (UTC),
    releases as before; from that day on, no exchange, the refusal naming the state.
    Protection that continues after it (Policy.may_keep, rule keep) starts on the day."""
    data = raw("jpn-nzl")
    data["agreement"]["status"] = {"state": "terminated", "signed": dt.date(2025, 12, 19),
                                   "in_force": dt.date(2026, 6, 1),
                                   "terminated": dt.date(2026, 10, 2)}
    ending = parse_agreement(data, source="jpn-nzl-ending.toml")
    policy = Policy(ending)
    label = Label(ending.id, 5, "JPN", F({"NZL"}))
    last = dt.datetime(2026, 10, 1, 23, 59, 59, tzinfo=dt.UTC)
    for now in (NOW, last):
        d = release(policy, label, "NZL", "JPN", now=now)
        assert d.allowed and d.rule == "release", d
        assert ending.in_force_on(now.date()) and not ending.terminated_on(now.date())
        kept = policy.may_keep(label, "NZL", originator="JPN", object_id=OBJ, now=now)
        assert (kept.allowed, kept.rule) == (True, "release")
    first = dt.datetime(2026, 10, 2, tzinfo=dt.UTC)
    deny(release(policy, label, "NZL", "JPN", now=first), "agreement-state",
         "agreement jpn-nzl-isa is terminated: no exchange")
    assert not ending.in_force_on(first.date()) and ending.terminated_on(first.date())
    kept = policy.may_keep(label, "NZL", originator="JPN", object_id=OBJ, now=first)
    assert (kept.allowed, kept.rule) == (True, "keep")
    # a time given in another zone is the same instant: still 1 October in UTC
    tokyo = dt.datetime(2026, 10, 2, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    assert release(policy, label, "NZL", "JPN", now=tokyo).allowed


def test_release_rule_party(jn: Agreement, jn_policy: Policy) -> None:
    label = lab(jn, "SECRET", "JPN", {"NZL"})
    deny(release(jn_policy, label, "AUS", "JPN"), "party", "AUS is not a party to jpn-nzl-isa")
    deny(release(jn_policy, label, "JPN", "JPN"), "party", "JPN does not release to itself")


def test_release_rule_party_holder(jn: Agreement, jna: Agreement, jn_policy: Policy) -> None:
    """The releasing node must be a party too: a stranger holding an object may not even
    return it to its originator (no third party is involved, so no consent would be asked)."""
    label = lab(jn, "SECRET", "JPN", {"NZL"})
    deny(release(jn_policy, label, "NZL", "AUS"), "party", "AUS is not a party to jpn-nzl-isa")
    deny(release(jn_policy, label, "JPN", "AUS"), "party", "AUS is not a party to jpn-nzl-isa")
    deny(release(jn_policy, label, "NZL", "USA", consents=[token(holder="USA")]), "party",
         "USA is not a party to jpn-nzl-isa")
    # the partner is checked first, then the holder, then "to itself"
    deny(release(jn_policy, label, "USA", "AUS"), "party", "USA is not a party to jpn-nzl-isa")
    deny(release(jn_policy, label, "AUS", "AUS"), "party", "AUS is not a party to jpn-nzl-isa")
    # AUS is a party to the trilateral: there the same holder may release
    assert release(Policy(jna), lab(jna, "SECRET", "JPN", {"NZL", "AUS"}), "JPN",
                   "AUS").allowed


def test_release_rule_covered(jn: Agreement, pm: Agreement, jn_policy: Policy,
                              pm_policy: Policy) -> None:
    deny(release(jn_policy, lab(jn, "SENSITIVE", "NZL"), "JPN", "NZL"), "covered",
         "SENSITIVE is not covered by agreement jpn-nzl-isa")
    deny(release(jn_policy, lab(jn, "IN-CONFIDENCE", "NZL"), "JPN", "NZL"), "covered",
         "IN-CONFIDENCE is not covered by agreement jpn-nzl-isa")
    deny(release(pm_policy, lab(pm, "CONFIDENTIAL", "NZL"), "JPN", "NZL"), "covered",
         "CONFIDENTIAL is not covered by agreement pacific-maritime")


def test_release_rule_equivalence() -> None:
    data = raw("pacific-maritime")
    data["exchange"]["covered"].append("CONFIDENTIAL")
    wide = parse_agreement(data, source="pacific-wide.toml")
    policy = Policy(wide)
    label = lab(wide, "CONFIDENTIAL", "NZL", clauses=[{"MARITIME"}])
    deny(release(policy, label, "FJI", "NZL"), "equivalence",
         "FJI has no equivalent of CONFIDENTIAL under pacific-maritime")
    assert release(policy, label, "JPN", "NZL").allowed


def test_release_rule_rel_to(jn: Agreement, jn_policy: Policy) -> None:
    deny(release(jn_policy, lab(jn, "SECRET", "NZL", set()), "JPN", "NZL"), "rel-to",
         "JPN not in REL TO NZL")


def test_release_rule_caveat(jn: Agreement, jn_policy: Policy) -> None:
    deny(release(jn_policy, lab(jn, "SECRET", "NZL", {"JPN"}, caveats={"NZEO"}), "JPN", "NZL"),
         "caveat", "caveat NZEO is not releasable to JPN")
    deny(release(jn_policy, lab(jn, "UNCLASSIFIED", "NZL", {"JPN"},
                                caveats={"ACS-SENSITIVITY-LES"}), "JPN", "NZL"),
         "caveat", "caveat ACS-SENSITIVITY-LES is not known to jpn-nzl-isa: it cannot be "
         "released")
    # a caveat the agreement knows with no restriction travels
    assert release(jn_policy, lab(jn, "UNCLASSIFIED", "NZL", {"JPN"}, caveats={"TLP-RED"}),
                   "JPN", "NZL").allowed


def test_release_rule_community(jn: Agreement, jn_policy: Policy) -> None:
    deny(release(jn_policy, lab(jn, "UNCLASSIFIED", "NZL", {"JPN"},
                                clauses=[{"MARITIME", "ACS-ENTITY-GOV"}]), "JPN", "NZL"),
         "community", "community ACS-ENTITY-GOV is not known to jpn-nzl-isa: it cannot be "
         "released")
    assert release(jn_policy, lab(jn, "UNCLASSIFIED", "NZL", {"JPN"},
                                  clauses=[{"MARITIME"}]), "JPN", "NZL").allowed


PACIFIC_ALL = {"NZL", "JPN", "FJI", "TON", "WSM"}


@pytest.mark.parametrize("rel", [PACIFIC_ALL, None])
def test_release_under_the_pacific_arrangement_needs_one_of_its_communities(
        pm: Agreement, pm_policy: Policy, rel: set[str] | None) -> None:
    """"Partners in the Pacific arrangement receive only its communities": REL TO FJI (or
    no REL TO at all) is not enough without one."""
    assert pm.rules.release_requires_community
    for level in ("UNCLASSIFIED", "RESTRICTED"):
        deny(release(pm_policy, lab(pm, level, "NZL", rel), "FJI", "NZL"), "community",
             "pacific-maritime releases only its communities' material (MARITIME, CLIMATE, "
             "INFRASTRUCTURE): the object names no community")
        for community in ("MARITIME", "CLIMATE", "INFRASTRUCTURE"):
            d = release(pm_policy, lab(pm, level, "NZL", rel, clauses=[{community}]), "FJI",
                        "NZL")
            assert d.allowed and d.rule == "release"
    # a known community still does not carry an unknown one with it
    deny(release(pm_policy, lab(pm, "UNCLASSIFIED", "NZL", rel,
                                clauses=[{"MARITIME"}, {"ACS-ENTITY-GOV"}]), "FJI", "NZL"),
         "community", "community ACS-ENTITY-GOV is not known to pacific-maritime: it cannot "
         "be released")
    # the earlier rules still decide first: REL TO, level
    deny(release(pm_policy, lab(pm, "RESTRICTED", "NZL", {"NZL", "JPN"}), "FJI", "NZL"),
         "rel-to", "FJI not in REL TO NZL, JPN")


def test_the_community_rule_is_the_pacific_arrangements_alone(
        jn: Agreement, jn_policy: Policy, jna: Agreement) -> None:
    """The bilateral agreements leave it off: there REL TO decides, as before."""
    assert not jn.rules.release_requires_community
    assert not jna.rules.release_requires_community
    d = release(jn_policy, lab(jn, "SECRET", "NZL", {"JPN"}), "JPN", "NZL")
    assert d.allowed and (d.rule, d.reason) == ("release", "JPN may receive SECRET")


def test_the_community_rule_applies_to_what_a_partner_sends_in_too(pm: Agreement,
                                                                    pm_policy: Policy) -> None:
    """A receiving node takes the same decision on what it is sent (holder: the sender)."""
    label = lab(pm, "UNCLASSIFIED", "FJI", PACIFIC_ALL)
    assert release(pm_policy, label, "NZL", "FJI").rule == "community"
    assert release(pm_policy, lab(pm, "UNCLASSIFIED", "FJI", PACIFIC_ALL,
                                  clauses=[{"MARITIME"}]), "NZL", "FJI").allowed


def test_reading_is_not_changed_by_the_community_rule(pm: Agreement,
                                                      pm_policy: Policy) -> None:
    """At the originator's own node a label with no community is read as before: the rule
    is about what partners receive (a person's communities limit reading already)."""
    mere = pm_policy.person("Mere", "NZL", "RESTRICTED")
    assert pm_policy.may_read(mere, lab(pm, "RESTRICTED", "NZL", PACIFIC_ALL)).allowed
    assert pm_policy.check_publish(mere, lab(pm, "RESTRICTED", "NZL", PACIFIC_ALL)).allowed


def test_third_party_needs_consent(jna: Agreement, jna_policy: Policy) -> None:
    label = lab(jna, "SECRET", "JPN", {"NZL", "AUS"})
    deny(release(jna_policy, label, "AUS", "NZL"), "consent",
         f"AUS is a third party to {OBJ} originated by JPN; no consent")
    # the originator releases its own; a holder may return it to the originator
    assert release(jna_policy, label, "AUS", "JPN").allowed
    assert release(jna_policy, label, "JPN", "NZL").allowed


def test_consent_token_allows(jna: Agreement, jna_policy: Policy) -> None:
    label = lab(jna, "SECRET", "JPN", {"NZL", "AUS"})
    d = release(jna_policy, label, "AUS", "NZL", consents=[token()])
    assert d.allowed and (d.rule, d.reason) == ("release", "release to AUS with the consent of "
                                                           "JPN")
    versioned = token(objects={OBJ: F({VERSION})})
    assert release(jna_policy, label, "AUS", "NZL", version=VERSION,
                   consents=[versioned]).allowed


@pytest.mark.parametrize("changes,version,detail", [
    ({"expires": NOW}, None, "consent consent-1 is not valid now (valid from "
     "2026-09-30T12:00:00+00:00 until 2026-10-01T12:00:00+00:00)"),
    ({"issued": NOW + dt.timedelta(hours=1)}, None, "consent consent-1 is not valid now (valid "
     "from 2026-10-01T13:00:00+00:00 until 2026-10-31T12:00:00+00:00)"),
    ({"recipient": "JPN"}, None, "consent consent-1 is for NZL to JPN"),
    ({"holder": "AUS", "recipient": "NZL"}, None, "consent consent-1 is for AUS to NZL"),
    ({"objects": {"indicator--other": F()}}, None, f"consent consent-1 does not cover {OBJ}"),
    ({"objects": {OBJ: F({VERSION})}}, "2026-10-01T00:00:00.000Z",
     f"consent consent-1 does not cover {OBJ}"),
    ({"objects": {OBJ: F({VERSION})}}, None, f"consent consent-1 does not cover {OBJ}"),
    ({"agreement": "jpn-nzl-isa"}, None, "consent consent-1 is under another agreement"),
])
def test_consent_token_denied(jna: Agreement, jna_policy: Policy, changes: dict[str, Any],
                              version: str | None, detail: str) -> None:
    label = lab(jna, "SECRET", "JPN", {"NZL", "AUS"})
    d = release(jna_policy, label, "AUS", "NZL", version=version, consents=[token(**changes)])
    assert not d.allowed and d.rule == "consent"
    assert d.reason.startswith(f"AUS is a third party to {OBJ} originated by JPN; no consent (")
    assert detail in d.reason


def test_consent_from_another_originator_is_ignored(jna: Agreement,
                                                    jna_policy: Policy) -> None:
    label = lab(jna, "SECRET", "JPN", {"NZL", "AUS"})
    deny(release(jna_policy, label, "AUS", "NZL", consents=[token(originator="NZL")]),
         "consent", f"AUS is a third party to {OBJ} originated by JPN; no consent")
    # one good token among bad ones suffices
    assert release(jna_policy, label, "AUS", "NZL",
                   consents=[token(recipient="JPN"), token(token_id="consent-2")]).allowed


def test_every_source_must_consent(jna: Agreement, jna_policy: Policy) -> None:
    # NZL holds an object joining JPN and AUS material; releasing it to AUS needs JPN only,
    # releasing it to JPN needs AUS.
    label = lab(jna, "SECRET", "JPN", {"NZL", "AUS"}, sources={"AUS"})
    assert label.sources == F({"JPN", "AUS"})
    assert release(jna_policy, label, "AUS", "NZL", consents=[token()]).allowed
    deny(release(jna_policy, label, "JPN", "NZL", consents=[token()]), "consent",
         f"JPN is a third party to {OBJ} originated by AUS; no consent")
    from_aus = token(originator="AUS", recipient="JPN", token_id="consent-aus")
    assert release(jna_policy, label, "JPN", "NZL", consents=[from_aus]).allowed


def test_consent_rule_off() -> None:
    data = raw("jpn-nzl-aus")
    data["rules"]["third_party_release_requires_consent"] = False
    lax = parse_agreement(data, source="lax.toml")
    d = release(Policy(lax), lab(lax, "SECRET", "JPN", {"NZL", "AUS"}), "AUS", "NZL")
    assert d.allowed and d.reason == "AUS may receive SECRET"


# -- publishing ---------------------------------------------------------------------------

def test_check_publish(jn: Agreement, jn_policy: Policy) -> None:
    aroha = jn_policy.person("Aroha", "NZL", "SECRET")
    d = jn_policy.check_publish(aroha, lab(jn, "SECRET", "NZL", {"JPN"}))
    assert d.allowed and (d.rule, d.reason) == ("publish", "Aroha may publish SECRET")
    deny(jn_policy.check_publish(aroha, lab(jn, "TOP SECRET", "NZL", {"JPN"})), "clearance",
         "cannot publish what you may not read: clearance SECRET does not dominate TOP SECRET")
    deny(jn_policy.check_publish(aroha, lab(jn, "SECRET", "NZL", {"JPN", "USA", "AUS"})),
         "rel-to", "REL TO AUS, USA is beyond agreement jpn-nzl-isa")
    deny(jn_policy.check_publish(aroha, lab(jn, "SECRET", "NZL", caveats={"NZEO"})), "caveat",
         "cannot publish what you may not read: caveat NZEO not held")


def test_publish_rule_originator(jn: Agreement, jn_policy: Policy) -> None:
    """A person publishes only what their own party originates, whatever they may read."""
    aroha = jn_policy.person("Aroha", "NZL", "TOP SECRET")
    japanese = lab(jn, "SECRET", "JPN", {"NZL"})
    assert jn_policy.may_read(aroha, japanese).allowed
    deny(jn_policy.check_publish(aroha, japanese), "originator",
         "a NZL person cannot publish information originated by JPN")
    # decided before REL TO and clearance
    deny(jn_policy.check_publish(aroha, lab(jn, "TOP SECRET", "JPN", {"NZL", "USA"})),
         "originator", "a NZL person cannot publish information originated by JPN")
    kenji = jn_policy.person("Kenji", "JPN", "機密")
    assert jn_policy.check_publish(kenji, japanese).allowed
    # the originator, not the sources, decides: NZL may publish its own object holding JPN
    # material (releasing it is the consent rule's business)
    derived = lab(jn, "SECRET", "NZL", {"JPN"}, sources={"JPN"})
    assert jn_policy.check_publish(aroha, derived).allowed
    deny(jn_policy.check_publish(kenji, derived), "originator",
         "a JPN person cannot publish information originated by NZL")


def test_publish_a_join_that_leaves_the_originator_out(jn: Agreement,
                                                       jn_policy: Policy) -> None:
    """An NZL object joined with a JPN-only portion: its REL TO excludes NZL, so no NZL
    person may publish it (they could not read it)."""
    own = lab(jn, "SECRET", "NZL", {"JPN"})
    joined = own.join(lab(jn, "SECRET", "JPN", set()))
    assert joined.originator == "NZL" and joined.rel_to == F({"JPN"})
    aroha = jn_policy.person("Aroha", "NZL", "TOP SECRET")
    deny(jn_policy.check_publish(aroha, joined), "rel-to",
         "cannot publish what you may not read: NZL not in REL TO JPN")
    assert jn_policy.check_publish(aroha, own).allowed


def test_a_liaison_publishes_nothing_at_another_party_s_node(jn: Agreement) -> None:
    """At JPN's node (``Policy(agreement, "JPN")``) an NZL liaison officer may not publish,
    not even NZL-originated information they may read: what is published at a node is
    signed by its key and goes out from it as that party's node's. Decided first, before
    the originator rule. JPN's own people, and a policy deciding for no node, are as
    before."""
    at_jpn, anywhere = Policy(jn, "JPN"), Policy(jn)
    aroha = at_jpn.person("Aroha", "NZL", "TOP SECRET")
    kenji = at_jpn.person("Kenji", "JPN", "機密")
    own = lab(jn, "SECRET", "NZL", {"JPN"})
    assert at_jpn.may_read(aroha, own).allowed
    reason = ("Aroha is a NZL national at JPN's node: only JPN's people publish at JPN's "
              "node; publish NZL's information at NZL's node")
    deny(at_jpn.check_publish(aroha, own), "party", reason)
    deny(at_jpn.check_publish(aroha, lab(jn, "SECRET", "JPN", {"NZL"})), "party", reason)
    assert anywhere.check_publish(aroha, own).allowed
    assert at_jpn.check_publish(kenji, lab(jn, "SECRET", "JPN", {"NZL"})).allowed
    assert Policy(jn, "NZL").check_publish(aroha, own).allowed


# -- principals -------------------------------------------------------------------------

def test_person(jn_policy: Policy) -> None:
    p = jn_policy.person("Kenji", "JPN", "tokutei himitsu", caveats=["JPNEO"],
                         communities=["MARITIME"], roles=["analyst", "publisher"])
    assert isinstance(p, Person)
    assert (p.party, p.clearance, p.clearance_rank) == ("JPN", "極秘", 5)
    assert p.caveats == F({"JPNEO"}) and p.communities == F({"MARITIME"})
    assert p.roles == F({"analyst", "publisher"})
    assert jn_policy.person("a", "NZL", "s").clearance == "SECRET"


@pytest.mark.parametrize("party,clearance,kwargs,message", [
    ("AUS", "SECRET", {}, "AUS is not a party to agreement jpn-nzl-isa; use one of JPN, NZL"),
    ("NZL", "Gokuhi", {}, "NZL has no level 'Gokuhi'; its levels are: UNCLASSIFIED"),
    ("JPN", "SECRET", {}, "JPN has no level 'SECRET'"),
    ("NZL", "SECRET", {"roles": ["admin"]}, "unknown role 'admin'; roles are: analyst"),
    ("JPN", "極秘", {"caveats": ["NZEO"]},
     "a JPN national cannot hold NZEO (New Zealand Eyes Only: cleared NZ citizens only)"),
    ("NZL", "SECRET", {"caveats": ["JPNEO"]}, "a NZL national cannot hold JPNEO"),
    # caveats and communities the agreement does not know (ACS-derived names aside)
    ("NZL", "SECRET", {"caveats": ["ORCON"]}, "caveat 'ORCON' is not known to agreement "
     "jpn-nzl-isa; known caveats: NZEO, JPNEO, TLP-RED"),
    ("NZL", "SECRET", {"caveats": ["AUSTEO"]}, "caveat 'AUSTEO' is not known to agreement "
     "jpn-nzl-isa"),
    ("NZL", "SECRET", {"caveats": ["nzeo"]}, "caveat 'nzeo' is not known"),
    ("NZL", "SECRET", {"caveats": ["acs-caveat-fisa"]}, "caveat 'acs-caveat-fisa' is not known"),
    ("NZL", "SECRET", {"caveats": ["NZEO", "ORCON", "FOUO"]}, "caveat 'FOUO' is not known"),
    ("NZL", "SECRET", {"communities": ["FISHERIES"]}, "community 'FISHERIES' is not known to "
     "agreement jpn-nzl-isa; known communities: MARITIME, CLIMATE, INFRASTRUCTURE"),
    ("JPN", "極秘", {"communities": ["MARITIME", "maritime"]}, "community 'maritime' is not "
     "known"),
    # unknown names are refused before eyes-only caveats and roles are looked at
    ("JPN", "極秘", {"caveats": ["NZEO", "ORCON"]}, "caveat 'ORCON' is not known"),
    ("JPN", "極秘", {"caveats": ["ORCON"], "roles": ["admin"]}, "caveat 'ORCON' is not known"),
])
def test_person_errors(jn_policy: Policy, party: str, clearance: str, kwargs: dict[str, Any],
                       message: str) -> None:
    with pytest.raises(ValueError) as info:
        jn_policy.person("x", party, clearance, **kwargs)
    assert message in str(info.value)


def test_person_unknown_names_under_other_agreements(jna_policy: Policy,
                                                    pm_policy: Policy) -> None:
    with pytest.raises(ValueError, match="caveat 'JPNEO' is not known to agreement "
                       "jpn-nzl-aus-isa; known caveats: NZEO, AUSTEO, TLP-RED"):
        jna_policy.person("x", "JPN", "極秘", caveats=["JPNEO"])
    with pytest.raises(ValueError, match="caveat 'NZEO' is not known to agreement "
                       "pacific-maritime; known caveats: TLP-RED"):
        pm_policy.person("x", "NZL", "RESTRICTED", caveats=["NZEO"])


def test_person_may_hold_acs_derived_names(jn: Agreement, jn_policy: Policy) -> None:
    """ACS markings make caveats and communities the agreement cannot list in advance
    (ACS-<FIELD>-<VALUE>): a person may hold them, and then reads what carries them."""
    p = jn_policy.person("Aroha", "NZL", "SECRET", caveats=["ACS-SENSITIVITY-LES", "NZEO"],
                         communities=["ACS-ENTITY-GOV", "MARITIME"])
    assert p.caveats == F({"ACS-SENSITIVITY-LES", "NZEO"})
    assert p.communities == F({"ACS-ENTITY-GOV", "MARITIME"})
    acs = lab(jn, "UNCLASSIFIED", "JPN", {"NZL"}, caveats={"ACS-SENSITIVITY-LES"},
              clauses=[{"ACS-ENTITY-GOV", "ACS-ENTITY-MIL"}])
    assert jn_policy.may_read(p, acs).allowed
    deny(jn_policy.may_read(jn_policy.person("Tama", "NZL", "SECRET"), acs), "caveat",
         "caveat ACS-SENSITIVITY-LES not held")


def test_person_takes_any_iterable(jn_policy: Policy) -> None:
    """Caveats, communities and roles are read once: generators work."""
    p = jn_policy.person("Kenji", "JPN", "極秘", caveats=(c for c in ["JPNEO"]),
                         communities=iter(["MARITIME"]), roles=(r for r in ["analyst"]))
    assert (p.caveats, p.communities, p.roles) == (F({"JPNEO"}), F({"MARITIME"}),
                                                   F({"analyst"}))
    with pytest.raises(ValueError, match="a JPN national cannot hold NZEO"):
        jn_policy.person("Kenji", "JPN", "極秘", caveats=(c for c in ["NZEO"]))


def test_roles_never_change_a_decision(jn: Agreement, jna: Agreement, pm: Agreement) -> None:
    rng = random.Random(20260601)
    compared = 0
    for a in (jn, jna, pm):
        policy = Policy(a)
        # a person holds only what the agreement knows (or ACS-derived names); a label may
        # carry anything, ORCON included
        holdable = sorted(a.caveats) + ["ACS-CAVEAT-FISA"]
        caveat_names = holdable + ["ORCON"]
        community_names = sorted(a.communities)
        for _ in range(150):
            party = rng.choice(a.parties)
            level = rng.choice(a.schemes[party].levels).name
            held = [c for c in rng.sample(holdable, rng.randint(0, 2))
                    if a.caveats.get(c) is None or a.caveats[c].releasable_to is None
                    or party in a.caveats[c].releasable_to]
            comms = rng.sample(community_names, rng.randint(0, 2))
            nobody = policy.person("p", party, level, caveats=held, communities=comms)
            everyone = policy.person("p", party, level, caveats=held, communities=comms,
                                     roles=ROLES)
            originator = rng.choice(a.parties)
            rel = None if rng.random() < 0.2 else set(rng.sample(a.parties,
                                                                 rng.randint(0, len(a.parties))))
            label = Label(a.id, rng.randrange(len(a.rows)), originator,
                          None if rel is None else F(rel),
                          F(rng.sample(caveat_names, rng.randint(0, 2))),
                          F(F(rng.sample(community_names, rng.randint(1, 2)))
                            for _ in range(rng.randint(0, 2))))
            assert policy.may_read(everyone, label) == policy.may_read(nobody, label)
            assert policy.check_publish(everyone, label) == policy.check_publish(nobody, label)
            assert policy.read_object(everyone, ObjectLabels(label, {}, label)) == \
                policy.read_object(nobody, ObjectLabels(label, {}, label))
            compared += 1
    assert compared == 450


def test_roles_do_not_bypass(jn: Agreement, jn_policy: Policy) -> None:
    officer = jn_policy.person("Officer", "NZL", "TOP SECRET", roles=ROLES)
    for label, rule in [(lab(jn, "SECRET", "JPN", set()), "rel-to"),
                        (lab(jn, "SECRET", "NZL", caveats={"NZEO"}), "caveat"),
                        (lab(jn, "SECRET", "NZL", clauses=[{"CLIMATE"}]), "community")]:
        assert jn_policy.may_read(officer, label).rule == rule


def test_partner_node_and_token_are_values() -> None:
    assert PartnerNode("NZL", "jpn-nzl-isa") == PartnerNode("NZL", "jpn-nzl-isa")
    t = token()
    assert t.covers(OBJ, None) and t.covers(OBJ, VERSION)
    assert not t.covers("indicator--other", None)
    v = token(objects={OBJ: F({VERSION})})
    assert v.covers(OBJ, VERSION) and not v.covers(OBJ, None)
    assert not v.covers(OBJ, "2020-01-01T00:00:00.000Z")


def test_decision_matrix_is_total(jn: Agreement, jn_policy: Policy) -> None:
    """Every person x level x REL TO gets a decision with a non-empty reason."""
    rules = set()
    for party, level in itertools.product(jn.parties, range(len(jn.rows))):
        for clearance in jn.schemes[party].levels:
            person = jn_policy.person("p", party, clearance.name)
            for rel in (None, set(), {"JPN"}, {"NZL"}):
                d = jn_policy.may_read(person, Label(jn.id, level, "JPN",
                                                     None if rel is None else F(rel)))
                assert d.reason
                rules.add(d.rule)
    assert rules == {"read", "clearance", "rel-to"}


def test_a_liaison_reads_no_third_party_s_material_where_release_needs_consent(
        jna: Agreement) -> None:
    """At NZL's node (``Policy(agreement, "NZL")``) an AUS national is served NZL's and
    AUS's material, not JPN's: serving it would release it to AUS without JPN's
    consent. NZL's own people, and a policy deciding for no node, read it as before."""
    agreement = jna
    at_nzl, anywhere = Policy(agreement, "NZL"), Policy(agreement)
    bruce = at_nzl.person("bruce", "AUS", "SECRET")
    kiri = at_nzl.person("kiri", "NZL", "SECRET")
    for source, allowed in (("JPN", False), ("NZL", True), ("AUS", True)):
        label = lab(agreement, "SECRET", source, {"JPN", "NZL", "AUS"})
        d = at_nzl.may_read(bruce, label)
        assert d.allowed is allowed, (source, d)
        assert at_nzl.may_read(kiri, label).allowed and anywhere.may_read(bruce, label).allowed
    d = at_nzl.may_read(bruce, lab(agreement, "SECRET", "JPN", {"JPN", "NZL", "AUS"}))
    assert d.rule == "third-party" and d.reason.startswith("JPN's material, held by NZL")
