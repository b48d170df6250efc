"""Banners as the console shows them: the model's words, and a colour for each.

The words come from the model (``banner``, ``portion_mark``), in the viewer's own
national words. The colour follows what the viewer's own words protect the row as:
the shared row the viewer's national level is *directly* equivalent to (a Japanese
reader of NZ RESTRICTED sees 秘 [TREAT AS NZL RESTRICTED] and protects it as 秘, so
it is blue, as CONFIDENTIAL). Each shared row gets the colour of its band, anchored on
the four US screen-banner colours (SF 706–712, as the Astro UX design system uses
them); docs/console.md has the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ...model import Agreement, Label, banner, join_all, portion_mark

GREEN = ("#007a33", "#ffffff")  # UNCLASSIFIED, and every row below CONFIDENTIAL not classified
PURPLE = ("#502b85", "#ffffff")  # RESTRICTED-like rows: classified, below CONFIDENTIAL
BLUE = ("#0033a0", "#ffffff")  # CONFIDENTIAL
RED = ("#c8102e", "#ffffff")  # SECRET
ORANGE = ("#ff8c00", "#000000")  # TOP SECRET, and anything above it
_ANCHORS = {"UNCLASSIFIED": GREEN, "CONFIDENTIAL": BLUE, "SECRET": RED, "TOP SECRET": ORANGE}


@dataclass(frozen=True)
class Banner:
    """A banner line with its colours, ready to render."""

    text: str
    background: str
    foreground: str
    band: str  # "unclassified", "restricted", "confidential", "secret", "top-secret"


def row_colour(agreement: Agreement, rank: int, party: str) -> tuple[str, str, str]:
    """(background, foreground, band) of shared row ``rank`` as ``party`` protects it."""
    protected = agreement.required_rank(party, rank) if party in agreement.parties else rank
    row = agreement.rows[rank if protected is None else protected]
    anchors = {r.name.upper(): r.rank for r in agreement.rows if r.name.upper() in _ANCHORS}
    if row.name.upper() in _ANCHORS:
        colour = _ANCHORS[row.name.upper()]
    elif "TOP SECRET" in anchors and row.rank > anchors["TOP SECRET"]:
        colour = ORANGE
    elif "SECRET" in anchors and row.rank > anchors["SECRET"]:
        colour = ORANGE if "TOP SECRET" not in anchors else RED
    elif "CONFIDENTIAL" in anchors and row.rank > anchors["CONFIDENTIAL"]:
        colour = BLUE
    elif _classified(agreement, row.rank, party):
        colour = PURPLE
    else:
        colour = GREEN
    band = {GREEN: "unclassified", PURPLE: "restricted", BLUE: "confidential", RED: "secret",
            ORANGE: "top-secret"}[colour]
    return colour[0], colour[1], band


def _classified(agreement: Agreement, rank: int, party: str) -> bool:
    """Whether ``party``'s words for the row are a classified level (NZ RESTRICTED is;
    IN-CONFIDENCE and 取扱注意 are not). Rows a party has no words for: by the row."""
    level = agreement.words(party, rank) if party in agreement.parties else None
    if level is not None:
        return level.classified
    words = [agreement.words(p, rank) for p in agreement.parties]
    return any(w is not None and w.classified for w in words)


def for_label(label: Label, agreement: Agreement, party: str) -> Banner:
    """The banner of ``label`` for a viewer of ``party``."""
    background, foreground, band = row_colour(agreement, label.rank, party)
    return Banner(banner(label, agreement, party), background, foreground, band)


def portion(label: Label, agreement: Agreement, party: str) -> Banner:
    """A portion mark, with the colour of its level."""
    background, foreground, band = row_colour(agreement, label.rank, party)
    return Banner(portion_mark(label, agreement, party), background, foreground, band)


def page_label(agreement: Agreement, party: str, labels: Iterable[Label]) -> Label:
    """The highest label on a page: the join of every label shown, and at least the
    agreement's lowest covered level (an empty page is marked too)."""
    floor = Label(agreement.id, min(agreement.covered), party, None)
    return join_all([*labels, floor])  # the first label's originator orders REL TO
