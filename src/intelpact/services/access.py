"""What a person may see: the readable label ids for a query, and redacted views.

The label filter runs inside the store's query (``readable``). An object whose
base label a person may read is served; portions (granular markings) they may
not read are withheld, and the served object says so through the intelpact
``withheld`` extension. An object that would lose a property STIX requires is
not served at all: for that person it does not exist.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model import Label, Markings, Person, Policy
from ..model.errors import LabelError
from ..model.labels import join_all
from ..store.base import Store, StoredObject

WITHHELD_EXTENSION_ID = "extension-definition--c2d508d4-09fb-4d0f-86a4-ecff0c1b756c"

# The properties the console's search looks in (store/sqlite.py, PORTIONS).
SEARCHED = ("name", "description")

# Properties whose loss would make any STIX object invalid.
_CORE = frozenset({"type", "id", "spec_version", "created", "modified", "object_marking_refs",
                   "extensions"})


@dataclass
class _PersonCache:
    known: int = 0  # how many labels were considered
    readable: list[int] = field(default_factory=list)


class Access:
    """Readable label sets per person, recomputed only when new labels appear."""

    def __init__(self, policy: Policy, markings: Markings, store: Store,
                 validate: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.policy = policy
        self.markings = markings
        self.store = store
        self._validate = validate
        self._cache: dict[Person, _PersonCache] = {}

    def readable(self, person: Person, labels: Mapping[int, Label] | None = None) -> list[int]:
        """Ids of every stored label whose objects ``person`` may see (``labels``: the
        store's labels when the caller has them already)."""
        if labels is None:
            labels = self.store.labels()
        entry = self._cache.setdefault(person, _PersonCache())
        if entry.known != len(labels):
            entry.readable = sorted(label_id for label_id, label in labels.items()
                                    if self.policy.may_read(person, label).allowed)
            entry.known = len(labels)
        return entry.readable

    def view(self, person: Person, row: StoredObject,
             labels: Mapping[int, Label] | None = None) -> str | None:
        """The JSON text ``person`` is served for ``row``, or None: not visible.

        The caller's query already filtered on the base label; this re-checks it
        (never trust one path alone) and applies portion decisions. ``labels``
        (the store's labels, fetched once per page) saves a look-up per row."""
        if labels is None:
            labels = self.store.labels()
        base = labels.get(row.label_id)
        if base is None or not self.policy.may_read(person, base).allowed:
            return None
        if not row.has_portions:
            return row.body
        obj = json.loads(row.body)
        try:
            object_labels = self.markings.label(obj, originator=row.originator)
        except LabelError:
            return None  # deny by default: the stored markings no longer resolve
        decision = self.policy.read_object(person, object_labels)
        if not decision.decision.allowed:
            return None
        if not decision.withheld:
            return row.body
        redacted = redact(obj, decision.withheld)
        if redacted is None:
            return None
        if self._validate is not None:
            try:
                self._validate(redacted)
            except Exception:  # noqa: BLE001 - any invalidity hides the object
                return None
        return json.dumps(redacted, ensure_ascii=False, separators=(",", ":"))


    def portion_gates(self, row: StoredObject) -> tuple[Label | None, Label | None]:
        """The labels that gate the console's search in the name and in the description
        of ``row`` where they are portions (a granular marking selects them, so the
        store's unmarked text leaves them out: migration 0017): the label a reader must
        be allowed to read for :meth:`view` to serve that text, the row itself being
        theirs (its stored label, which the query checks). That is the portion's own
        label, worked out here as :meth:`view` does; a holder's relabel raises the row's
        stored label and banner, never a portion's, and the query checks both. A
        property selected only by a ``lang`` marking is served with the row: its gate
        is the body's base. None: not a portion (the unmarked text holds it), or never
        served (a selector into it, which labelling refuses), or the markings no longer
        resolve (nothing of the row is served). Store.label_portions keeps them."""
        if not row.has_portions:
            return None, None
        try:
            obj = json.loads(row.body)
            labels = self.markings.label(obj, originator=row.originator)
        except (ValueError, TypeError, AttributeError, LabelError):
            return None, None  # a body that does not label is never served: nor searched
        granular = obj.get("granular_markings")
        selectors = [s for gm in granular if isinstance(gm, dict)
                     for s in gm.get("selectors", ()) if isinstance(s, str)] \
            if isinstance(granular, list) else []
        gates: list[Label | None] = []
        for prop in SEARCHED:
            # what the unmarked text leaves out (store/sqlite.py _MARKED: = or LIKE 'p.%')
            marked = {s for s in selectors if s == prop or s[:len(prop) + 1].lower() == prop + "."}
            if marked != {prop}:
                gates.append(None)  # in the unmarked text, or never served
            else:
                gates.append(labels.portions.get(prop, labels.base))
        return gates[0], gates[1]

    def seen(self, person: Person, row: StoredObject,
             labels: Mapping[int, Label] | None = None) -> Label | None:
        """The label of what ``person`` is served of ``row``, or None: nothing (for them
        the row does not exist). Its banner when nothing is withheld; otherwise its base
        joined with the portions served. What a publisher may derive from (and so what
        marks their derived object: services/publish.py)."""
        if labels is None:
            labels = self.store.labels()
        if self.view(person, row, labels) is None:
            return None
        banner = labels[row.banner_id]
        if self.policy.may_read(person, banner).allowed:
            return banner
        portions = self.markings.label(json.loads(row.body), originator=row.originator)
        withheld = set(self.policy.read_object(person, portions).withheld)
        return join_all([labels[row.label_id], *(label for selector, label
                                                 in portions.portions.items()
                                                 if selector not in withheld)])


def redact(obj: Mapping[str, Any], withheld: tuple[str, ...]) -> dict[str, Any] | None:
    """Remove withheld portions. A withheld selector removes its whole top-level
    property (so no list index shifts under other selectors); granular markings
    on removed properties go too. None when a core property would be lost, or the
    granular markings themselves (a selector may name them): what is left would be
    served without the markings of its portions."""
    removed = sorted({selector.split(".", 1)[0] for selector in withheld})
    if any(name in _CORE or name == "granular_markings" for name in removed):
        return None
    out = {k: v for k, v in obj.items() if k not in removed}
    granular = [
        {**gm, "selectors": kept}
        for gm in obj.get("granular_markings", [])
        if (kept := [s for s in gm["selectors"] if s.split(".", 1)[0] not in removed])
    ]
    if granular:
        out["granular_markings"] = granular
    else:
        out.pop("granular_markings", None)
    extensions = dict(out.get("extensions", {}))
    extensions[WITHHELD_EXTENSION_ID] = {"extension_type": "property-extension",
                                         "withheld": removed}
    out["extensions"] = extensions
    return out
