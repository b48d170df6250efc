"""Labels: dominance, join, and banners and portion marks in each party's words."""

from __future__ import annotations

import dataclasses

import pytest

from intelpact.interfaces.console.banners import for_label, page_label
from intelpact.model import Agreement, Label, LabelError, banner, join_all, portion_mark
from intelpact.model.labels import rel_to_order

F = frozenset


def L(rank: int, originator: str = "JPN", rel: set[str] | None = None,
      caveats: set[str] | None = None, clauses: set[frozenset[str]] | None = None,
      agreement: str = "jpn-nzl-isa", sources: set[str] | None = None) -> Label:
    """A label; ``rel`` None is no releasability restriction."""
    return Label(agreement, rank, originator, None if rel is None else F(rel),
                 F(caveats or ()), F(clauses or ()), F(sources or ()))


# -- the label value ------------------------------------------------------------------

def test_a_new_label_includes_its_originator_in_rel_to_and_sources() -> None:
    label = L(5, "JPN", {"NZL"})
    assert label.rel_to == F({"JPN", "NZL"})
    assert label.sources == F({"JPN"})
    assert L(5, "JPN").rel_to is None
    assert L(5, "JPN", set()).rel_to == F({"JPN"})


def test_add_originator_false_keeps_rel_to_as_given() -> None:
    exact = Label("jpn-nzl-isa", 5, "JPN", F({"NZL"}), add_originator=False)
    assert exact.rel_to == F({"NZL"})
    assert Label("jpn-nzl-isa", 5, "JPN", F(), add_originator=False).rel_to == F()
    assert Label("jpn-nzl-isa", 5, "JPN", None, add_originator=False).rel_to is None
    # sources still always hold the originator
    assert exact.sources == F({"JPN"})
    # not a field: it only decides how the value is built, and the values differ
    assert "add_originator" not in {f.name for f in dataclasses.fields(Label)}
    # a smaller REL TO is more restrictive
    assert exact != L(5, "JPN", {"NZL"}) and exact.dominates(L(5, "JPN", {"NZL"}))
    assert not L(5, "JPN", {"NZL"}).dominates(exact)
    assert exact == Label("jpn-nzl-isa", 5, "JPN", F({"NZL"}), add_originator=False)
    assert hash(exact) == hash(Label("jpn-nzl-isa", 5, "JPN", F({"NZL"}),
                                     add_originator=False))
    # with the originator already there, it changes nothing
    assert Label("jpn-nzl-isa", 5, "JPN", F({"JPN", "NZL"}), add_originator=False) == \
        L(5, "JPN", {"NZL"})


def test_labels_are_values() -> None:
    a, b = L(5, "JPN", {"NZL"}, {"JPNEO"}), L(5, "JPN", {"NZL", "JPN"}, {"JPNEO"})
    assert a == b and hash(a) == hash(b)
    assert len({a, b, L(5, "JPN", {"NZL"})}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.rank = 6  # type: ignore[misc]


# -- dominance ------------------------------------------------------------------------

@pytest.mark.parametrize("high,low,expected", [
    (L(5), L(5), True),
    (L(6), L(5), True),
    (L(4), L(5), False),
    # releasability: a smaller REL TO is more restrictive; None is unrestricted
    (L(5, rel={"NZL"}), L(5), True),
    (L(5), L(5, rel={"NZL"}), False),
    (L(5, rel=set()), L(5, rel={"NZL"}), True),
    (L(5, rel={"NZL"}), L(5, rel=set()), False),
    (L(5, "NZL", {"JPN"}), L(5, "NZL", {"JPN", "AUS"}), True),
    # caveats: more is more restrictive
    (L(5, caveats={"JPNEO"}), L(5), True),
    (L(5), L(5, caveats={"JPNEO"}), False),
    (L(5, caveats={"A", "B"}), L(5, caveats={"A"}), True),
    (L(5, caveats={"B"}), L(5, caveats={"A"}), False),
    # community clauses: every clause must be met, so more clauses is more restrictive
    (L(5, clauses={F({"MARITIME"})}), L(5), True),
    (L(5), L(5, clauses={F({"MARITIME"})}), False),
    (L(5, clauses={F({"MARITIME"}), F({"CLIMATE"})}), L(5, clauses={F({"MARITIME"})}), True),
    (L(5, clauses={F({"CLIMATE"})}), L(5, clauses={F({"MARITIME"})}), False),
    # all dimensions at once, and a trade-off that dominates neither way
    (L(6, rel={"NZL"}, caveats={"X"}), L(5, rel={"NZL", "AUS"}), True),
    (L(6), L(5, rel={"NZL"}), False),
    (L(5, rel={"NZL"}), L(6), False),
])
def test_dominance(high: Label, low: Label, expected: bool) -> None:
    assert high.dominates(low) is expected


def test_dominance_ignores_provenance() -> None:
    assert L(5, sources={"NZL"}).dominates(L(5)) and L(5).dominates(L(5, sources={"NZL"}))


def test_labels_under_different_agreements_raise() -> None:
    a, b = L(5), L(5, agreement="jpn-nzl-aus-isa")
    with pytest.raises(LabelError, match="cannot be compared: jpn-nzl-isa and jpn-nzl-aus-isa"):
        a.dominates(b)
    with pytest.raises(LabelError, match="cannot be joined: jpn-nzl-isa and jpn-nzl-aus-isa"):
        a.join(b)
    with pytest.raises(LabelError, match="cannot be joined"):
        join_all([a, L(6), b])


# -- join -------------------------------------------------------------------------------

def test_join_is_highest_rank_intersection_and_unions() -> None:
    a = L(4, "JPN", {"NZL", "AUS"}, {"JPNEO"}, {F({"MARITIME"})})
    b = L(5, "JPN", {"NZL"}, {"TLP-RED"}, {F({"CLIMATE", "INFRASTRUCTURE"})}, sources={"AUS"})
    j = a.join(b)
    assert j == Label("jpn-nzl-isa", 5, "JPN", F({"JPN", "NZL"}), F({"JPNEO", "TLP-RED"}),
                      F({F({"MARITIME"}), F({"CLIMATE", "INFRASTRUCTURE"})}),
                      F({"JPN", "AUS"}))
    assert j.dominates(a) and j.dominates(b)


def test_join_with_unrestricted_release() -> None:
    assert L(3).join(L(2, rel={"NZL"})).rel_to == F({"JPN", "NZL"})
    assert L(3, rel={"NZL"}).join(L(2)).rel_to == F({"JPN", "NZL"})
    assert L(3).join(L(2)).rel_to is None


def test_join_keeps_the_left_originator_and_merges_sources() -> None:
    j = L(3, "JPN", {"NZL"}).join(L(3, "NZL", {"JPN"}))
    assert j.originator == "JPN" and j.sources == F({"JPN", "NZL"})
    assert j.rel_to == F({"JPN", "NZL"})


def test_join_does_not_add_the_originator() -> None:
    """A JPN-only base joined with an NZL-eyes-only portion: nobody is in both REL TOs,
    and the join does not put JPN back (that would make the banner less restrictive than
    the portion)."""
    base = L(5, "JPN", set())
    portion = L(5, "NZL", {"NZL"}, {"NZEO"})
    j = base.join(portion)
    assert (j.originator, j.rel_to, j.caveats) == ("JPN", F(), F({"NZEO"}))
    assert j.sources == F({"JPN", "NZL"})
    assert j.dominates(base) and j.dominates(portion)
    k = portion.join(base)
    assert (k.originator, k.rel_to) == ("NZL", F())
    assert j.dominates(k) and k.dominates(j)
    # REL TO JPN, NZL with REL TO NZL: NZL alone, though JPN originates the whole
    wider = L(5, "JPN", {"NZL"}).join(portion)
    assert (wider.originator, wider.rel_to) == ("JPN", F({"NZL"}))
    assert rel_to_order(wider) == ["NZL"]
    # an unrestricted side takes the other side's REL TO as it is
    assert L(3, "JPN").join(L(2, "NZL", {"AUS"})).rel_to == F({"NZL", "AUS"})
    assert L(3, "JPN").join(L(2, "NZL", set())).rel_to == F({"NZL"})
    assert L(3, "NZL", set()).join(L(2, "JPN")).rel_to == F({"NZL"})


def test_join_all_across_originators_dominates_every_part() -> None:
    parts = [L(4, "JPN", {"NZL", "AUS"}), L(5, "NZL", {"JPN"}, {"NZEO"}),
             L(3, "AUS", {"NZL"}, clauses={F({"MARITIME"})})]
    j = join_all(parts)
    assert j == Label("jpn-nzl-isa", 5, "JPN", F({"NZL"}), F({"NZEO"}),
                      F({F({"MARITIME"})}), F({"JPN", "NZL", "AUS"}), add_originator=False)
    assert all(j.dominates(p) for p in parts)
    assert join_all(reversed(parts)).rel_to == j.rel_to


def test_join_all() -> None:
    labels = [L(1), L(5, rel={"NZL", "AUS"}), L(3, rel={"NZL"}, caveats={"X"})]
    j = join_all(labels)
    assert j == L(5, rel={"NZL"}, caveats={"X"})
    assert join_all([L(2)]) == L(2)
    with pytest.raises(LabelError, match="nothing to join"):
        join_all([])


# -- banners and portion marks ---------------------------------------------------------

def test_issue_examples(jn: Agreement) -> None:
    label = L(jn.shared_rank("SECRET"), "JPN", {"NZL"}, agreement=jn.id)
    assert banner(label, jn, "JPN") == "極秘 // REL TO JPN, NZL"
    assert banner(label, jn, "NZL") == "SECRET // REL TO JPN, NZL"
    assert portion_mark(label, jn, "NZL") == "(S//REL TO JPN, NZL)"
    assert portion_mark(label, jn, "JPN") == "(極秘//REL TO JPN, NZL)"


@pytest.mark.parametrize("rank,jpn,nzl,nzl_portion", [
    (0, "指定なし", "UNCLASSIFIED", "(U)"),
    (2, "取扱注意", "SENSITIVE", "(SENS)"),
    (4, "秘", "CONFIDENTIAL", "(C)"),
    (5, "極秘", "SECRET", "(S)"),
    (6, "機密", "TOP SECRET", "(TS)"),
])
def test_each_level_in_each_partys_words(jn: Agreement, rank: int, jpn: str, nzl: str,
                                         nzl_portion: str) -> None:
    label = L(rank, "NZL", agreement=jn.id)
    assert banner(label, jn, "JPN") == jpn
    assert banner(label, jn, "NZL") == nzl
    assert portion_mark(label, jn, "NZL") == nzl_portion
    assert portion_mark(label, jn, "JPN") == f"({jpn})"  # Japanese levels have no abbreviation


def test_rel_to_is_originator_first_then_alphabetical(jna: Agreement, pm: Agreement) -> None:
    label = L(4, "NZL", {"JPN", "AUS"}, agreement=jna.id)
    assert rel_to_order(label) == ["NZL", "AUS", "JPN"]
    assert banner(label, jna, "AUS") == "SECRET // REL TO NZL, AUS, JPN"
    assert portion_mark(label, jna, "JPN") == "(極秘//REL TO NZL, AUS, JPN)"
    tonga = L(1, "TON", {"WSM", "NZL", "FJI", "JPN"}, agreement=pm.id)
    assert banner(tonga, pm, "FJI") == "RESTRICTED // REL TO TON, FJI, JPN, NZL, WSM"
    assert portion_mark(tonga, pm, "NZL") == "(R//REL TO TON, FJI, JPN, NZL, WSM)"
    assert rel_to_order(L(1)) == []


def test_caveats_and_communities(jn: Agreement) -> None:
    label = L(5, "NZL", {"JPN"}, {"NZEO", "JPNEO"}, {F({"MARITIME", "CLIMATE"}),
                                                     F({"INFRASTRUCTURE"})}, agreement=jn.id)
    assert banner(label, jn, "NZL") == (
        "SECRET // JPNEO // NZEO // CLIMATE|MARITIME // INFRASTRUCTURE // REL TO NZL, JPN")
    assert portion_mark(label, jn, "NZL") == (
        "(S//JPNEO//NZEO//CLIMATE|MARITIME//INFRASTRUCTURE//REL TO NZL, JPN)")
    assert banner(L(6, "NZL", caveats={"NZEO"}, agreement=jn.id), jn, "JPN") == "機密 // NZEO"


def test_treat_as_rendering(jn: Agreement, jna: Agreement, pm: Agreement) -> None:
    restricted = L(jn.shared_rank("RESTRICTED"), "NZL", {"JPN"}, agreement=jn.id)
    assert banner(restricted, jn, "NZL") == "RESTRICTED // REL TO NZL, JPN"
    assert banner(restricted, jn, "JPN") == "秘 [TREAT AS NZL RESTRICTED] // REL TO NZL, JPN"
    assert portion_mark(restricted, jn, "JPN") == "(秘 [TREAT AS NZL RESTRICTED]//REL TO NZL, JPN)"
    in_confidence = L(jn.shared_rank("IN-CONFIDENCE"), "NZL", agreement=jn.id)
    assert banner(in_confidence, jn, "JPN") == "取扱注意 [TREAT AS NZL IN-CONFIDENCE]"
    aus = L(jna.shared_rank("RESTRICTED"), "NZL", {"AUS"}, agreement=jna.id)
    assert banner(aus, jna, "AUS") == "PROTECTED [TREAT AS NZL RESTRICTED] // REL TO NZL, AUS"
    assert portion_mark(aus, jna, "AUS") == "(P [TREAT AS NZL RESTRICTED]//REL TO NZL, AUS)"
    unofficial = L(jna.shared_rank("UNOFFICIAL"), "AUS", agreement=jna.id)
    assert banner(unofficial, jna, "NZL") == "UNCLASSIFIED [TREAT AS AUS UNOFFICIAL]"
    assert portion_mark(unofficial, jna, "NZL") == "(U [TREAT AS AUS UNOFFICIAL])"
    fiji = L(pm.shared_rank("RESTRICTED"), "FJI", {"JPN"}, agreement=pm.id)
    assert banner(fiji, pm, "JPN") == "秘 [TREAT AS FJI RESTRICTED] // REL TO FJI, JPN"


def test_treat_as_names_the_party_whose_words_it_quotes(jn: Agreement, jna: Agreement) -> None:
    """A banner joined from portions of several parties keeps the object's originator,
    but its level may be another party's: the TREAT AS names the party whose own level
    words it quotes, the one whose marking is at that row, never the originator with a
    level of another row (an AUS OFFICIAL report with an NZ RESTRICTED portion read as
    "TREAT AS AUS PROTECTED", a JPN 指定なし report with one as "TREAT AS JPN 秘")."""
    restricted = jna.shared_rank("RESTRICTED")
    report = L(jna.shared_rank("UNCLASSIFIED"), "AUS", {"JPN", "NZL", "AUS"}, agreement=jna.id)
    joined = report.join(L(restricted, "NZL", {"JPN", "NZL", "AUS"}, agreement=jna.id))
    assert (joined.originator, joined.rank) == ("AUS", restricted)
    assert banner(joined, jna, "JPN") == "秘 [TREAT AS NZL RESTRICTED] // REL TO AUS, JPN, NZL"
    assert banner(joined, jna, "AUS") == (
        "PROTECTED [TREAT AS NZL RESTRICTED] // REL TO AUS, JPN, NZL")
    assert portion_mark(joined, jna, "JPN") == (
        "(秘 [TREAT AS NZL RESTRICTED]//REL TO AUS, JPN, NZL)")
    assert banner(joined, jna, "NZL") == "RESTRICTED // REL TO AUS, JPN, NZL"
    own = L(jn.shared_rank("UNCLASSIFIED"), "JPN", {"NZL"}).join(
        L(jn.shared_rank("RESTRICTED"), "NZL", {"JPN"}))
    assert banner(own, jn, "JPN") == "秘 [TREAT AS NZL RESTRICTED] // REL TO JPN, NZL"
    # the console's page banner: the join of what the page shows, the first one's
    # originator kept
    page = page_label(jn, "JPN", [L(jn.shared_rank("UNCLASSIFIED"), "JPN", {"NZL"}),
                                  L(jn.shared_rank("RESTRICTED"), "NZL", {"JPN"})])
    assert for_label(page, jn, "JPN").text == "秘 [TREAT AS NZL RESTRICTED] // REL TO JPN, NZL"
    # no party of the label has words of its own at the row (a TLP or ACS marking mapped
    # to it): the shared row's name, naming no party
    mapped = L(jn.shared_rank("RESTRICTED"), "JPN", {"NZL"})
    assert banner(mapped, jn, "JPN") == "秘 [TREAT AS RESTRICTED] // REL TO JPN, NZL"


def test_australian_words(jna: Agreement) -> None:
    label = L(jna.shared_rank("UNCLASSIFIED"), "JPN", {"AUS"}, agreement=jna.id)
    assert banner(label, jna, "AUS") == "OFFICIAL // REL TO JPN, AUS"
    assert portion_mark(label, jna, "AUS") == "(O//REL TO JPN, AUS)"
    assert banner(label, jna, "JPN") == "指定なし // REL TO JPN, AUS"


def test_no_equivalent_and_outsiders(pm: Agreement, jn: Agreement) -> None:
    confidential = L(pm.shared_rank("CONFIDENTIAL"), "NZL", agreement=pm.id)
    assert banner(confidential, pm, "FJI") == "[CONFIDENTIAL: NO FJI EQUIVALENT]"
    assert banner(confidential, pm, "JPN") == "秘"
    # a viewer whose party is not in the agreement sees the shared words
    secret = L(5, "JPN", {"NZL"}, agreement=jn.id)
    assert banner(secret, jn, "USA") == "SECRET // REL TO JPN, NZL"
    assert portion_mark(secret, jn, "USA") == "(S//REL TO JPN, NZL)"


def test_banner_of_a_join_without_its_originator(jn: Agreement) -> None:
    joined = L(5, "JPN", {"NZL"}, agreement=jn.id).join(
        L(5, "NZL", {"NZL"}, {"NZEO"}, agreement=jn.id))
    assert banner(joined, jn, "JPN") == "極秘 // NZEO // REL TO NZL"
    assert portion_mark(joined, jn, "NZL") == "(S//NZEO//REL TO NZL)"


def test_banner_of_an_empty_rel_to_differs_from_no_restriction(jn: Agreement) -> None:
    nobody = L(5, "JPN", set(), {"NZEO"}, agreement=jn.id).join(
        L(5, "NZL", {"NZL"}, agreement=jn.id))
    assert nobody.rel_to == F()
    unrestricted = L(5, "JPN", None, {"NZEO"}, agreement=jn.id)
    assert banner(nobody, jn, "JPN") != banner(unrestricted, jn, "JPN")
    assert banner(nobody, jn, "JPN") == "極秘 // NZEO // REL TO NONE"


def test_banner_of_a_joined_object(jn: Agreement) -> None:
    portions = [L(4, "JPN", {"NZL"}, agreement=jn.id),
                L(5, "JPN", {"NZL"}, {"JPNEO"}, agreement=jn.id),
                L(3, "JPN", {"NZL"}, clauses={F({"MARITIME"})}, agreement=jn.id)]
    overall = join_all(portions)
    assert banner(overall, jn, "JPN") == "極秘 // JPNEO // MARITIME // REL TO JPN, NZL"
    assert [portion_mark(p, jn, "NZL") for p in portions] == [
        "(C//REL TO JPN, NZL)", "(S//JPNEO//REL TO JPN, NZL)",
        "(R//MARITIME//REL TO JPN, NZL)"]
