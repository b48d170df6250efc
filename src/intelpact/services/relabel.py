"""Stored labels under an amended agreement (docs/controls.md, "The agreement's lifecycle").

Every stored version carries a base and a banner label (``objects.label_id`` and
``banner_id``), worked out from its markings under the agreement text in force when it
was stored, and joined since with the new marking of any reclassification notice its
originator sent (Controls._joined). Access decisions read them: the label filter in the
query, the release decision, the console. An amendment that keeps the shared scale's
rows may still map a national level, or a TLP or ACS marking, to another row; the
stored labels would keep the old row, and an object could be served to a reader cleared
only for it: less than the protection the agreement now requires.

So a node opened under another text than the stored labels' (a pin, or a pin finished
at open; a store from before migration 0021) works every version's labels out again
before it serves anything: as a version's labels are worked out when it is stored
(services/publish.py, ``version_labels``), then joined with what each reclassification
notice applied to it says under the new text (Controls.raises), in batches of
:data:`BATCH` in ``seq`` order. A marking-definition read from the store means its
originator's level under the new text (``parse_marking(..., stored=True)``: the
equivalents it lists are those of its day). A version whose markings no longer give a
label (a caveat or community the amendment dropped, a REL TO party with no equivalent at
the new row), or whose notice's marking no longer does, is closed
(``model.labels.closed``): served to no one, released to no one.

Safe if cut short. The store records the text the labels are being worked out under from
the start (Store.begin_relabel: from then on a process under another text writes no
label), each batch is one transaction, and the last one records the new text with the
``relabel-agreement`` event (its counts and both hashes): until then the node works them
all out again when it next opens. That transaction also has every version with portions
wait for the labels that gate the search in its portions (Store.portions_pending: worked
out again, under the new text, by the indexer or the next search with text). Every
version is under the old text's label or the new one's at any moment, never lower than
both. Labels are never changed in place: a version points at another label row, so the
label ids readers were given and each process's cache of labels stay true.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..model import Label, Markings, Policy
from ..model.errors import LabelError
from ..model.labels import closed
from ..store.base import AuditEvent, Store, StoredObject, label_key
from .audit import AuditLog, operator
from .controls import Controls
from .publish import Raises, reclassified_labels, version_labels

log = logging.getLogger("intelpact.node")
BATCH = 1000  # versions worked out and written in one transaction
PROGRESS_EVERY = 5.0  # seconds between progress lines


@dataclass
class Relabelled:
    """What one relabel did (the ``relabel-agreement`` event's counts)."""

    versions: int = 0  # worked out again
    changed: int = 0  # whose base or banner label changed
    reclassified: int = 0  # joined with a reclassification notice's marking
    unlabelled: int = 0  # closed: their markings (or a notice's) no longer give a label
    portions: int = 0  # with portions: their search labels are worked out again
    examples: list[str] = field(default_factory=list)  # a few of those, with the reason


class Relabeller:
    """Works the stored labels out again under the node's agreement, when they are under
    another text (:meth:`run`)."""

    def __init__(self, policy: Policy, markings: Markings, store: Store, audit: AuditLog,
                 controls: Controls) -> None:
        self.policy = policy
        self.markings = markings
        self.store = store
        self.audit = audit
        self.controls = controls

    def run(self) -> Relabelled | None:
        """Bring the stored labels under the agreement in force, if they are not; returns
        what was done (None: they were under it already). From then on, this process's
        writes of labels are checked against it (Store.labelled_under)."""
        agreement = self.policy.agreement
        new = agreement.content_hash
        if self.store.labels_agreement() != new:
            begun, old = self.store.begin_relabel(new)
            if begun:  # else another process finished it meanwhile
                done = self._relabel(old, new)
                self.store.labelled_under = new
                return done
        self.store.labelled_under = new
        return None

    def _relabel(self, old: str | None, new: str) -> Relabelled:
        raises = self.controls.raises()
        done = Relabelled()
        after, shown = 0, time.monotonic()
        while True:
            rows = self.store.versions_after(after, BATCH)
            if rows and not after:
                log.warning("the stored labels are worked out again under agreement %s "
                            "version %s (%s; they were under %s)", self.policy.agreement.id,
                            self.policy.agreement.version, new, old or "a text not recorded")
            upto = rows[-1].seq if rows else after
            labels = self._batch(rows, raises, done)
            done.portions += sum(row.has_portions for row in rows)
            if self.store.relabel_versions(labels, new, upto,
                                           lambda: self._event(old, new, done)):
                break
            after = upto
            if time.monotonic() - shown >= PROGRESS_EVERY:
                shown = time.monotonic()
                log.warning("... %d stored versions worked out again so far", done.versions)
        if done.versions:
            log.warning("%d stored versions worked out again under agreement %s: %d "
                        "changed, %d joined with a reclassification, %d closed",
                        done.versions, new, done.changed, done.reclassified, done.unlabelled)
        if done.portions:
            log.info("%d stored versions with portions wait for their search labels under "
                     "%s", done.portions, new)
        if done.unlabelled:
            log.warning("%d stored versions are closed (served to no one, released to no "
                        "one): their markings no longer give a label under %s; their "
                        "originator may issue them again under markings of this text. For "
                        "example: %s", done.unlabelled, new, "; ".join(done.examples))
        return done

    def _batch(self, rows: Sequence[StoredObject], raises: Raises, done: Relabelled
               ) -> list[tuple[StoredObject, Label, Label]]:
        """Those of ``rows`` whose labels change under the agreement in force, with their
        labels."""
        stored = self.store.labels()
        out = []
        for row in rows:
            base, banner = self.labels_of(row, stored, raises, done)
            done.versions += 1
            if label_key(base) != label_key(stored[row.label_id]) or \
                    label_key(banner) != label_key(stored[row.banner_id]):
                done.changed += 1
                out.append((row, base, banner))
        return out

    def labels_of(self, row: StoredObject, stored: Mapping[int, Label], raises: Raises,
                  done: Relabelled) -> tuple[Label, Label]:
        """``row``'s (base, banner) labels under the agreement in force: its markings'
        (as when it was stored), joined with the new marking of each reclassification
        about it (:func:`reclassified_labels`, as Controls._joined joins them); closed
        where either gives no label (``stored``: the store's labels, which closing
        keeps)."""
        try:
            base, banner = version_labels(self.policy.agreement, self.markings,
                                          json.loads(row.body), row.originator)
        except (LabelError, ValueError) as exc:
            reason = exc.message if isinstance(exc, LabelError) else "its body is not JSON"
            return self._closed(row, stored[row.label_id], stored[row.banner_id], reason,
                                done)
        joined = reclassified_labels(raises, row.object_id, row.originator, row.version,
                                     base, banner)
        if joined is None:
            done.reclassified += 1
            return self._closed(row, base, banner, "the marking a reclassification gave it "
                                "no longer checks", done)
        base, banner, applied = joined
        done.reclassified += bool(applied)
        return base, banner

    @staticmethod
    def _closed(row: StoredObject, base: Label, banner: Label, reason: str,
                done: Relabelled) -> tuple[Label, Label]:
        done.unlabelled += 1
        if len(done.examples) < 3:
            done.examples.append(f"{row.object_id} version {row.version}: {reason}")
        return closed(base), closed(banner)

    def _event(self, old: str | None, new: str, done: Relabelled) -> list[AuditEvent]:
        """The ``relabel-agreement`` event, recorded with the last batch (none where
        nothing is stored: a new node)."""
        if not done.versions:
            return []
        return [self.audit.event(
            "relabel-agreement", actor=operator(), agreement=self.policy.agreement.id,
            old_hash=old, new_hash=new, versions=done.versions, changed=done.changed,
            reclassified=done.reclassified, unlabelled=done.unlabelled,
            portions=done.portions)]
