"""Property-based tests (hypothesis) of the label lattice and the read decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from intelpact.model import (
    Agreement,
    Label,
    Markings,
    Person,
    Policy,
    join_all,
    load_agreement,
    national_marking,
)
from intelpact.model.markings import TLP1_IDS, TLP2_IDS

ROOT = Path(__file__).resolve().parents[2]
AGREEMENTS = [load_agreement(ROOT / "agreements" / f"{n}.toml")
              for n in ("jpn-nzl", "jpn-nzl-aus", "pacific-maritime")]
POLICIES = {a.id: Policy(a) for a in AGREEMENTS}
F = frozenset
EXAMPLES = settings(max_examples=80, deadline=None, database=None)


# ACS-derived names are open-ended: a person may hold them without the agreement naming them
ACS_CAVEAT = "ACS-CAVEAT-FISA"
ACS_COMMUNITY = "ACS-ENTITY-GOV"


def holdable_caveats(a: Agreement) -> list[str]:
    """Caveats a person may be given (Policy.person refuses others)."""
    return [*sorted(a.caveats), ACS_CAVEAT]


def holdable_communities(a: Agreement) -> list[str]:
    return [*sorted(a.communities), ACS_COMMUNITY]


def caveat_pool(a: Agreement) -> list[str]:
    """Caveats a label may carry: also ORCON, unknown to every agreement."""
    return [*holdable_caveats(a), "ORCON"]


def community_pool(a: Agreement) -> list[str]:
    return [*holdable_communities(a), "FISHERIES"]


@st.composite
def labels(draw: st.DrawFn, a: Agreement, originator: str | None = None) -> Label:
    origin = originator or draw(st.sampled_from(a.parties))
    rel = draw(st.none() | st.frozensets(st.sampled_from([*a.parties, "USA"])))
    caveats = draw(st.frozensets(st.sampled_from(caveat_pool(a)), max_size=3))
    clauses = draw(st.frozensets(st.frozensets(st.sampled_from(community_pool(a)),
                                               min_size=1, max_size=3), max_size=2))
    return Label(a.id, draw(st.integers(0, len(a.rows) - 1)), origin, rel, caveats, clauses)


def joined_labels(a: Agreement) -> st.SearchStrategy[Label]:
    """A label, or the join of labels of (often) different originators: a join may leave
    its originator out of REL TO."""
    return labels(a) | st.lists(labels(a), min_size=2, max_size=3).map(join_all)


@st.composite
def people(draw: st.DrawFn, a: Agreement, party: str | None = None,
           level: int | None = None, holding: Label | None = None) -> Person:
    """A person; with ``holding``, one who holds every caveat and community of that label
    their nationality allows and the agreement knows, so that clearance and REL TO are what
    decide. Caveats and communities are drawn from what Policy.person accepts."""
    nation = party or draw(st.sampled_from(a.parties))
    levels = a.schemes[nation].levels
    top = len(levels) - 1
    # the highest clearance often: rank must never bypass a rule
    index = draw(st.just(top) | st.integers(0, top)) if level is None else level
    holdable = [c for c in holdable_caveats(a) if c not in a.caveats
                or a.caveats[c].releasable_to is None or nation in a.caveats[c].releasable_to]
    caveats = draw(st.frozensets(st.sampled_from(holdable), max_size=3))
    communities = draw(st.frozensets(st.sampled_from(holdable_communities(a)), max_size=3))
    if holding is not None:
        caveats = holding.caveats & F(holdable)
        communities = F().union(*holding.communities) & F(holdable_communities(a))
    return POLICIES[a.id].person("p", nation, levels[index].name, caveats=caveats,
                                 communities=communities)


agreements = st.sampled_from(AGREEMENTS)


@st.composite
def neighbours(draw: st.DrawFn, a: Agreement, x: Label) -> Label:
    """A label that differs from ``x`` in one dimension, or not at all."""
    which = draw(st.sampled_from(["same", "rank", "rel", "caveats", "communities"]))
    rank, rel, caveats, clauses = x.rank, x.rel_to, x.caveats, x.communities
    if which == "rank":
        rank = draw(st.integers(max(0, x.rank - 2), min(len(a.rows) - 1, x.rank + 2)))
    elif which == "rel":
        rel = draw(st.none() | st.frozensets(st.sampled_from(a.parties)))
    elif which == "caveats":
        caveats = draw(st.frozensets(st.sampled_from(caveat_pool(a)), max_size=2))
    elif which == "communities":
        clauses = draw(st.frozensets(st.frozensets(st.sampled_from(community_pool(a)),
                                                   min_size=1, max_size=2), max_size=2))
    return Label(a.id, rank, x.originator, rel, caveats, clauses)


# -- dominance is a partial order ---------------------------------------------------------

@EXAMPLES
@given(st.data())
def test_dominance_is_reflexive(data: st.DataObject) -> None:
    a = data.draw(agreements)
    x = data.draw(labels(a))
    assert x.dominates(x)


@EXAMPLES
@given(st.data())
def test_dominance_is_antisymmetric(data: st.DataObject) -> None:
    a = data.draw(agreements)
    origin = data.draw(st.sampled_from(a.parties))
    x = data.draw(labels(a, origin))
    # draw y near x so that mutual dominance actually happens
    y = data.draw(neighbours(a, x) | labels(a, origin))
    if x.dominates(y) and y.dominates(x):
        assert x == y


@EXAMPLES
@given(st.data())
def test_dominance_is_transitive(data: st.DataObject) -> None:
    a = data.draw(agreements)
    z = data.draw(labels(a))
    # y and x are near z or built upward from it, so chains are common
    y = data.draw(neighbours(a, z) | labels(a).map(z.join))
    x = data.draw(neighbours(a, y) | labels(a).map(y.join))
    if x.dominates(y) and y.dominates(z):
        assert x.dominates(z)


# -- join is the least upper bound -----------------------------------------------------------

@EXAMPLES
@given(st.data())
def test_join_is_the_least_upper_bound(data: st.DataObject) -> None:
    a = data.draw(agreements)
    origin = data.draw(st.sampled_from(a.parties))
    x, y = data.draw(labels(a, origin)), data.draw(labels(a, origin))
    j = x.join(y)
    assert j.dominates(x) and j.dominates(y)
    assert j == y.join(x)
    assert j.rank == max(x.rank, y.rank)
    # any label dominating both dominates the join; try the join widened in each way too
    candidates = [data.draw(labels(a)), j.join(data.draw(labels(a))),
                  Label(a.id, j.rank, data.draw(st.sampled_from(a.parties)), j.rel_to,
                        j.caveats, j.communities)]
    for c in candidates:
        if c.dominates(x) and c.dominates(y):
            assert c.dominates(j)


@EXAMPLES
@given(st.data())
def test_join_across_originators_is_the_least_upper_bound(data: st.DataObject) -> None:
    """A join adds nobody to REL TO, not even its originator: REL TO is exactly the
    intersection, so the join is the least upper bound whoever originated each side."""
    a = data.draw(agreements)
    x, y = data.draw(labels(a)), data.draw(labels(a))
    j, k = x.join(y), y.join(x)
    assert j.dominates(x) and j.dominates(y)
    assert (j.originator, k.originator) == (x.originator, y.originator)
    assert j.dominates(k) and k.dominates(j)
    assert (j.rank, j.rel_to, j.caveats, j.communities, j.sources) == \
        (k.rank, k.rel_to, k.caveats, k.communities, k.sources)
    if x.rel_to is not None and y.rel_to is not None:
        assert j.rel_to == x.rel_to & y.rel_to
    assert j.sources == x.sources | y.sources
    # the tightest label of y's originator dominating both still dominates the join
    c = Label(a.id, j.rank, y.originator, j.rel_to, j.caveats, j.communities,
              add_originator=False)
    assert c.dominates(x) and c.dominates(y) and c.dominates(j)
    candidates = [data.draw(joined_labels(a)), j.join(data.draw(joined_labels(a)))]
    for c in candidates:
        if c.dominates(x) and c.dominates(y):
            assert c.dominates(j)


@EXAMPLES
@given(st.data())
def test_join_all_is_associative_upper_bound(data: st.DataObject) -> None:
    a = data.draw(agreements)
    origin = data.draw(st.sampled_from(a.parties))
    xs = data.draw(st.lists(labels(a, origin), min_size=1, max_size=5))
    j = join_all(xs)
    assert all(j.dominates(x) for x in xs)
    assert j == join_all(reversed(xs))


# -- the banner dominates every portion -------------------------------------------------

@st.composite
def national_markings(draw: st.DrawFn, a: Agreement, originator: str) -> dict[str, Any]:
    own = [row.rank for row in a.rows
           if row.cells[originator].level is not None and not row.cells[originator].treat_as]
    rank = draw(st.sampled_from(own))
    holders = [p for p in a.parties if a.rows[rank].cells[p].held]
    rel = draw(st.none() | st.frozensets(st.sampled_from(holders)))
    readers = (rel or F()) | {originator}  # rel_to None: the originator only
    # an eyes-only caveat only by a party it is releasable to, and no wider than that
    caveats = [c.name for c in a.caveats.values()
               if c.releasable_to is None or readers <= c.releasable_to]
    words = a.words(originator, rank)
    assert words is not None
    return national_marking(
        a, originator, words.name, rel_to=rel,
        caveats=draw(st.frozensets(st.sampled_from(caveats), max_size=2)) if caveats else (),
        communities=draw(st.frozensets(st.sampled_from(sorted(a.communities)), max_size=2)))


SELECTORS = ["name", "description", "aliases.[0]", "aliases.[1]",
             "external_references.[0].url"]
TLP_REFS = [*TLP1_IDS, *TLP2_IDS]


@EXAMPLES
@given(st.data())
def test_banner_dominates_every_portion(data: st.DataObject) -> None:
    """Object markings come from one originator; each portion may come from any party
    (an NZL-eyes-only paragraph inside a JPN report). The banner still dominates all."""
    a = data.draw(agreements)
    origin = data.draw(st.sampled_from(a.parties))
    markings = Markings(a)
    pools: dict[str, list[str]] = {}
    for party in a.parties:
        drawn = data.draw(st.lists(national_markings(a, party), max_size=3))
        pools[party] = [markings.add(m) and m["id"] for m in drawn]

    def refs_of(party: str) -> st.SearchStrategy[list[str]]:
        # one party's national markings (an object or portion has one originator) and TLP
        return st.lists(st.sampled_from([*pools[party], *TLP_REFS]), min_size=1, max_size=2)

    granular = []
    for selector in data.draw(st.lists(st.sampled_from(SELECTORS), max_size=4, unique=True)):
        party = data.draw(st.sampled_from(a.parties))
        granular += [{"marking_ref": ref, "selectors": [selector]}
                     for ref in data.draw(refs_of(party))]
    obj = {"type": "campaign", "id": "campaign--1", "name": "n", "description": "d",
           "aliases": ["a", "b"], "external_references": [{"url": "https://example.org"}],
           "object_marking_refs": data.draw(refs_of(origin)),
           "granular_markings": granular}
    result = markings.label(obj, originator=origin)
    assert result.banner.dominates(result.base)
    for portion in result.portions.values():
        assert result.banner.dominates(portion)
    # whoever may read the whole may read every part of it
    person = data.draw(people(a, holding=result.banner))
    if POLICIES[a.id].may_read(person, result.banner).allowed:
        assert POLICIES[a.id].may_read(person, result.base).allowed
        assert all(POLICIES[a.id].may_read(person, p).allowed
                   for p in result.portions.values())


# -- the read decision ---------------------------------------------------------------------

@EXAMPLES
@given(st.data())
def test_read_never_allows_outside_rel_to(data: st.DataObject) -> None:
    a = data.draw(agreements)
    label = data.draw(joined_labels(a))
    person = data.draw(people(a) | people(a, holding=label))
    decision = POLICIES[a.id].may_read(person, label)
    if decision.allowed and label.rel_to is not None:
        # not even the originator: a join may have left it out
        assert person.party in label.rel_to
    if decision.allowed:
        assert label.caveats <= person.caveats
        assert all(clause & person.communities for clause in label.communities)
        required = a.required_rank(person.party, label.rank)
        assert required is not None and person.clearance_rank >= required


@EXAMPLES
@given(st.data())
def test_raising_clearance_never_denies(data: st.DataObject) -> None:
    a = data.draw(agreements)
    party = data.draw(st.sampled_from(a.parties))
    top = len(a.schemes[party].levels) - 1
    low = data.draw(st.integers(0, top))
    high = data.draw(st.integers(low, top))
    person = data.draw(people(a, party, low))
    raised = POLICIES[a.id].person("p", party, a.schemes[party].levels[high].name,
                                   caveats=person.caveats, communities=person.communities)
    label = data.draw(joined_labels(a))
    policy = POLICIES[a.id]
    if policy.may_read(person, label).allowed:
        assert policy.may_read(raised, label).allowed


@EXAMPLES
@given(st.data())
def test_more_caveats_or_communities_never_deny(data: st.DataObject) -> None:
    a = data.draw(agreements)
    person = data.draw(people(a))
    more = data.draw(people(a, person.party,
                            [lv.name for lv in a.schemes[person.party].levels].index(
                                person.clearance)))
    richer = POLICIES[a.id].person("p", person.party, person.clearance,
                                   caveats=person.caveats | more.caveats,
                                   communities=person.communities | more.communities)
    label = data.draw(joined_labels(a))
    policy = POLICIES[a.id]
    if policy.may_read(person, label).allowed:
        assert policy.may_read(richer, label).allowed


@EXAMPLES
@given(st.data())
def test_more_restrictive_labels_never_allow(data: st.DataObject) -> None:
    a = data.draw(agreements)
    label, person = data.draw(joined_labels(a)), data.draw(people(a))
    extra = data.draw(st.frozensets(st.sampled_from(caveat_pool(a)), min_size=1, max_size=2))
    # add_originator=False: a joined label's REL TO must not widen back to its originator
    tighter = Label(a.id, label.rank, label.originator, label.rel_to, label.caveats | extra,
                    label.communities, label.sources, add_originator=False)
    assert tighter.dominates(label)
    policy = POLICIES[a.id]
    if not policy.may_read(person, label).allowed:
        assert not policy.may_read(person, tighter).allowed
    # more generally, reading is monotone in dominance
    other = data.draw(joined_labels(a) | labels(a).map(label.join))
    if other.dominates(label) and policy.may_read(person, other).allowed:
        assert policy.may_read(person, label).allowed
