"""What a refusal echoes of what a partner sent (docs/federation.md, "Limits").

A refusal is answered, logged and audited: one that quotes a partner's value or list
whole grows with the input (and an object's refusal is kept once per object). So a
refusal names a list's count and its first :data:`SHOWN_ITEMS` items, and each value
cut to :data:`SHOWN_CHARS` characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SHOWN_ITEMS = 3
SHOWN_CHARS = 100


def shown(value: Any) -> str:
    """``value`` as a refusal may echo it: a string as it is, anything else as its repr,
    cut to SHOWN_CHARS characters (saying how long it was)."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}… ({len(text):,} characters)"


def first(items: Sequence[Any], sep: str = ", ", *, cut: bool = True) -> str:
    """The first SHOWN_ITEMS of ``items``, each ``shown`` (``cut``; else as they are: this
    node's own words, short already), and how many more there are."""
    head = sep.join(shown(i) if cut else str(i) for i in items[:SHOWN_ITEMS])
    more = len(items) - SHOWN_ITEMS
    return head + (f" and {more:,} more" if more > 0 else "")


def too_many(what: str, items: Sequence[Any], limit: int) -> str | None:
    """Why a list of ``what`` is refused when it has more than ``limit`` items (its count
    and first few, then the limit: the caller says "in one …"), or None."""
    if len(items) <= limit:
        return None
    return f"{len(items):,} {what} ({first(items)}): at most {limit:,} are taken in one"
