"""`intelpact recall`, `recalls`, `reclassify`: the originator's controls over what it shared."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from ..model import Agreement, load_agreement
from ..services.federation import FederationError
from ..services.node import Node
from ..services.publish import MarkingRequest
from .cli import NODE_DIR, _csv, _safe, err, friendly, main, out


def _deliver(node: Node, parties: Sequence[str]) -> None:
    """Send the queued notices now; what cannot go now waits for `intelpact serve`."""
    from ..services.courier import Courier

    with Courier(node) as courier:
        for party in parties:
            try:
                courier.deliver_notices(party)
                out.print(f"  delivered to {party} (signed receipt verified)")
            except FederationError as exc:
                err.print(Text("  " + _safe(f"{party}: not delivered now ({exc.message}); "
                                            "`intelpact serve` keeps trying")))


@main.command()
@NODE_DIR
@click.argument("object_id", metavar="ID", required=False)
@click.option("--party", "parties", multiple=True,
              help="Recall from this partner only (repeatable; default: every partner it "
              "went to).")
@click.option("--all", "everything", is_flag=True,
              help="Recall everything this node originated that went to --party.")
@click.option("--reason", required=True, help="Why: recorded, and sent to the holders.")
@click.option("--as", "as_name", help="The security officer recalling (default: the operator "
              "running this command).")
@friendly
def recall(node_dir: Path, object_id: str | None, parties: tuple[str, ...], everything: bool,
           reason: str, as_name: str | None) -> None:
    """Recall an object this node originated (or, with --all, everything that went to
    one --party): every holder purges it (keeping a tombstone), confirms with a signed
    destruction receipt, and nothing more of it goes to them. Holders that are offline
    get the recall when they come back."""
    if everything == (object_id is not None) or (everything and len(parties) != 1):
        raise click.UsageError("give an object ID, or --all with one --party")
    node = Node.open(node_dir, migrate=False)
    principal = node.people.as_person(as_name) if as_name else None
    if everything:
        recalled = node.controls.recall_all(principal, parties[0], reason=reason)
        out.print(f"Recall of {len(recalled)} object(s) queued for {parties[0].upper()}")
        targets = [parties[0].upper()]
    else:
        assert object_id is not None
        targets = node.controls.recall(principal, object_id, parties=parties, reason=reason)
        out.print(f"Recall of {object_id} queued for {', '.join(targets)}")
    _deliver(node, targets)
    node.close()


@main.command()
@NODE_DIR
@friendly
def recalls(node_dir: Path) -> None:
    """What this node recalled, from whom, and who has confirmed destruction."""
    node = Node.open(node_dir, migrate=False, readonly=True)  # only reads (docs/node.md)
    rows = node.controls.recalls()
    sent = {n.notice_id: n for n in node.store.notices()}
    node.close()
    if not rows:
        out.print("No recalls.")
        return
    table = Table("object", "holder", "recalled", "reason", "status")
    for r in rows:
        notice = sent.get(r.notice_id)
        if r.destroyed:
            status = f"destroyed (receipt {r.destroyed})"
        elif r.unconfirmed:  # answered, but its answer does not confirm it
            status = f"{r.unconfirmed}: not confirmed"
        elif notice is not None and notice.delivered:
            status = "delivered; awaiting the destruction receipt"
        else:
            status = "not delivered yet" + (f": {notice.error}" if notice and notice.error
                                            else "")
        table.add_row(*(Text(_safe(v)) for v in (r.object_id, r.party, r.issued, r.reason,
                                                 status)))
    out.print(table)


@main.command()
@NODE_DIR
@click.argument("object_id", metavar="ID")
@click.option("--as", "as_name", required=True, help="Reclassify as this person.")
@click.option("--classification", required=True,
              help="The new level, in the publisher's national words or romanisation.")
@click.option("--rel", default="", help="REL TO parties, comma-separated (e.g. JPN,NZL).")
@click.option("--caveat", "caveats", multiple=True, help="A caveat (repeatable).")
@click.option("--community", "communities", multiple=True,
              help="A community of interest (repeatable).")
@click.option("--reason", required=True, help="Why: recorded, and sent to the holders.")
@friendly
def reclassify(node_dir: Path, object_id: str, as_name: str, classification: str, rel: str,
               caveats: tuple[str, ...], communities: tuple[str, ...], reason: str) -> None:
    """Upgrade, downgrade or declassify an object this node originated: a new version
    under the new marking, signed, and a notice to every holder of earlier versions,
    who relabel their copies at once (or purge them if they may no longer hold them)."""
    node = Node.open(node_dir, migrate=False)
    principal = node.people.as_person(as_name)
    marking = MarkingRequest(classification, _csv(rel), tuple(c.upper() for c in caveats),
                             tuple(c.upper() for c in communities))
    version, holders = node.controls.reclassify(
        principal, object_id, marking, collection_id=node.default_collection().collection_id,
        reason=reason)
    out.print(f"Reclassified {object_id}: new version {version}"
              + (f"; holders told: {', '.join(holders)}" if holders else "; no holders"))
    _deliver(node, holders)
    node.close()


def _destroys(agreement: Agreement) -> bool:
    """Whether ``agreement`` is terminated, with what was received under it to go."""
    return agreement.state == "terminated" and \
        agreement.rules.on_termination in ("destroy", "return")


@main.group()
def agreement() -> None:
    """The agreement this node is pinned to: amend it, or record its termination."""


@agreement.command("pin")
@NODE_DIR
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reason", required=True, help="Why (e.g. the amendment's reference): recorded.")
@friendly
def agreement_pin(node_dir: Path, file: Path, reason: str) -> None:
    """Pin a new version of the agreement (an amendment, a party added, or its
    termination). A running `intelpact serve` of the node switches to it by itself,
    without a restart: it refuses every request and sends nothing for the second or so
    it takes, then serves under the new text only. Partners refuse every request
    until they pin the same text: exchange resumes once both sides have. A terminated
    agreement stops all new exchange from its date of termination (UTC); if its rules say
    `destroy` or `return`, what was received under it is destroyed here and each
    originator told, once: by this pin when that date has come, else by `intelpact serve`
    on the day (or when it next starts, if it was not serving then). Pinning the same text
    again finishes a destruction that was cut short."""
    node = Node.open(node_dir, migrate=False)
    old = node.agreement
    if _destroys(old) and load_agreement(file).content_hash == old.content_hash:
        # pinned already, its destruction perhaps cut short (a crash, the store away):
        # the same command finishes it
        new = old
        out.print(f"{old.id} version {old.version} is pinned already ({old.state}): "
                  "finishing what its termination requires")
    else:
        new = node.pin_agreement(file, reason=reason)
        out.print(f"Pinned {new.id} version {new.version} ({new.state}): {new.content_hash}")
        out.print(f"  was version {old.version}: {old.content_hash}")
    node.close()
    if new.state == "terminated" and not new.terminated_now:
        # terminated ahead of its date: in force until that day (Agreement.in_force_on);
        # what its termination requires is done then, by the serving node (Courier.terminate)
        out.print(f"  terminated on {new.terminated} (UTC): exchange continues until that "
                  "day, and stops from it"
                  + ("" if new.rules.on_termination == "continue-protection"
                     else f"; on that day `intelpact serve` destroys what was received "
                          f"({new.rules.on_termination}), or when it next starts if it "
                          "is not serving then"))
    elif new.state == "terminated":
        out.print("  terminated: no new exchange; what was received stays protected"
                  + ("" if new.rules.on_termination == "continue-protection"
                     else f", and is now destroyed ({new.rules.on_termination})"))
        if _destroys(new):
            node = Node.open(node_dir, migrate=False)
            count = node.controls.terminate()
            if count is None:
                out.print(f"  destroyed already, at {node.controls.terminated_at()}: nothing "
                          "more to do")
            else:
                out.print(f"  destroyed {count} object(s) holding partners' material; the "
                          "originators of those received are told")
            _deliver(node, sorted({n.party for n in node.store.notices()
                                   if n.direction == "out" and not n.delivered}))
            node.close()
    out.print("A running `intelpact serve` of this node switches to it by itself (no "
              "restart). Partners must pin the same text before exchange resumes.")
