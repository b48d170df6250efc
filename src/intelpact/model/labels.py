"""Labels: the comparable form of an object's markings, and how to print them.

A label is a point in a lattice:

- ``rank``: an index into the agreement's shared scale (higher is more sensitive);
- ``rel_to``: the parties it may be released to (``None``: no releasability
  restriction). A new label always includes its originator; a join may leave
  it out (an NZL-eyes-only portion inside a JPN object), and then no JPN
  national may read the whole;
- ``caveats``: what a reader must hold, all of them;
- ``communities``: need to know, as clauses; a reader must belong to at least
  one community of *every* clause (one clause per marking that names communities);
- ``originator`` and ``sources``: provenance. ``sources`` is every party whose
  information the label covers; it grows under join and drives the consent rule.

``a.dominates(b)`` means a is at least as restrictive as b in every dimension.
``a.join(b)`` is the least restrictive label that dominates both: the highest
rank, the intersection of releasability, the union of caveats and clauses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import InitVar, dataclass, field

from .agreement import Agreement
from .errors import LabelError


@dataclass(frozen=True)
class Label:
    agreement: str
    rank: int
    originator: str
    rel_to: frozenset[str] | None = None
    caveats: frozenset[str] = frozenset()
    communities: frozenset[frozenset[str]] = frozenset()
    sources: frozenset[str] = frozenset()
    _hash: int = field(init=False, compare=False, repr=False, default=0)
    add_originator: InitVar[bool] = True

    def __post_init__(self, add_originator: bool) -> None:
        if add_originator and self.rel_to is not None and self.originator not in self.rel_to:
            object.__setattr__(self, "rel_to", self.rel_to | {self.originator})
        if self.originator not in self.sources:
            object.__setattr__(self, "sources", self.sources | {self.originator})
        object.__setattr__(self, "_hash", hash((
            self.agreement, self.rank, self.originator, self.rel_to, self.caveats,
            self.communities, self.sources)))

    def __hash__(self) -> int:
        return self._hash

    def dominates(self, other: Label) -> bool:
        """True when this label is at least as restrictive as ``other`` everywhere."""
        if self.agreement != other.agreement:
            raise LabelError(f"labels under different agreements cannot be compared: "
                             f"{self.agreement} and {other.agreement}")
        if self.rank < other.rank:
            return False
        if other.rel_to is not None and (self.rel_to is None or not self.rel_to <= other.rel_to):
            return False
        return self.caveats >= other.caveats and self.communities >= other.communities

    def join(self, other: Label) -> Label:
        """The least upper bound. Keeps this label's originator; ``sources`` are merged."""
        if self.agreement != other.agreement:
            raise LabelError(f"labels under different agreements cannot be joined: "
                             f"{self.agreement} and {other.agreement}")
        if self.rel_to is None:
            rel = other.rel_to
        elif other.rel_to is None:
            rel = self.rel_to
        else:
            rel = self.rel_to & other.rel_to
        return Label(self.agreement, max(self.rank, other.rank), self.originator, rel,
                     self.caveats | other.caveats, self.communities | other.communities,
                     self.sources | other.sources, add_originator=False)


# A caveat no agreement can name (an agreement's caveat is a token: no space), so no
# person holds it and no partner may receive it. It closes a stored version whose markings
# no longer give a label under the agreement in force (an amendment changed what they
# mean; services/relabel.py): that version is served to no one and released to no one,
# and a join keeps it closed.
UNLABELLED = "UNLABELLED UNDER THIS AGREEMENT"


def closed(label: Label) -> Label:
    """``label`` closed to every reader and partner: with the :data:`UNLABELLED` caveat."""
    return Label(label.agreement, label.rank, label.originator, label.rel_to,
                 label.caveats | {UNLABELLED}, label.communities, label.sources,
                 add_originator=False)


def join_all(labels: Iterable[Label]) -> Label:
    it = iter(labels)
    try:
        result = next(it)
    except StopIteration:
        raise LabelError("nothing to join: no labels given") from None
    for label in it:
        result = result.join(label)
    return result


def rel_to_order(label: Label) -> list[str]:
    """REL TO parties: the originator first, then alphabetical (ISM convention)."""
    if label.rel_to is None:
        return []
    rest = sorted(p for p in label.rel_to if p != label.originator)
    return [label.originator, *rest] if label.originator in label.rel_to else rest


def _level_words(label: Label, agreement: Agreement, party: str, short: bool) -> str:
    row = agreement.rows[label.rank]
    cell = row.cells.get(party)
    if cell is None:  # the viewer's party is not in this agreement: shared words
        return row.abbrev if short else row.name
    level = agreement.words(party, label.rank)
    if level is None:
        return f"[{row.name}: NO {party} EQUIVALENT]"
    words = level.abbrev if short else level.name
    if cell.treat_as:
        return f"{words} [TREAT AS {_quoted(label, agreement)}]"
    return words


def _quoted(label: Label, agreement: Agreement) -> str:
    """What a TREAT AS quotes: the level words of the party whose own marking is at the
    label's row, named with them. The originator's, where the row is one of its own
    levels; else a source's (a banner joined from portions keeps the object's originator,
    but its level may be a portion's: an AUS OFFICIAL report with an NZ RESTRICTED
    portion is NZL RESTRICTED, not AUS PROTECTED, the level AUS only treats it as); else,
    where no party of the label has words of its own there (a TLP or ACS marking mapped
    to the row), the shared row's name, naming no party."""
    row = agreement.rows[label.rank]
    for party in [label.originator, *sorted(label.sources - {label.originator})]:
        cell = row.cells.get(party)
        level = agreement.words(party, label.rank) if cell is not None and \
            not cell.treat_as else None
        if level is not None:
            return f"{party} {level.name}"
    return row.name


def _tail(label: Label) -> list[str]:
    parts = sorted(label.caveats)
    for clause in sorted(label.communities, key=sorted):
        parts.append("|".join(sorted(clause)))
    if label.rel_to is not None:
        parts.append("REL TO " + (", ".join(rel_to_order(label)) or "NONE"))
    return parts


def banner(label: Label, agreement: Agreement, party: str) -> str:
    """The banner line in ``party``'s own words, e.g. ``極秘 // REL TO JPN, NZL``."""
    return " // ".join([_level_words(label, agreement, party, short=False), *_tail(label)])


def portion_mark(label: Label, agreement: Agreement, party: str) -> str:
    """The portion mark in ``party``'s own words, e.g. ``(S//REL TO JPN, NZL)``."""
    return "(" + "//".join([_level_words(label, agreement, party, short=True),
                            *_tail(label)]) + ")"
