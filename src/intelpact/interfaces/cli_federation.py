"""`intelpact card`, `peer add|list` and `disseminations`: partners and what went to them."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from ..crypto.tls import check_names_host
from ..errors import IntelpactError
from ..jsonio import JsonError, parse_json
from ..services.federation import make_card
from ..services.node import Node
from ..store.base import CompromiseMessage, Notice
from ..store.sqlite import MAX_ATTEMPTS
from .cli import NODE_DIR, _safe, friendly, main, out


@main.command()
@NODE_DIR
@friendly
def card(node_dir: Path) -> None:
    """Print this node's signed card: give it to partners out of band."""
    node = Node.open(node_dir, migrate=False, readonly=True)  # only reads (docs/node.md)
    try:
        made = make_card(node.identity)  # refused for an address of every interface
        cfg = node.config
        if cfg.tls_cert is not None:  # the URL it gives, the certificate it pins
            check_names_host(cfg.tls_cert, cfg.advertised_host, cfg.advertised_field)
        click.echo(json.dumps(made, indent=1))
    finally:
        node.close()


@main.group()
def peer() -> None:
    """Pin partner nodes from their cards, and list them."""


@peer.command("add")
@NODE_DIR
@click.argument("card_file", metavar="CARDFILE",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@friendly
def peer_add(node_dir: Path, card_file: Path) -> None:
    """Pin a partner from CARDFILE (its `intelpact card` output) and queue what it may
    receive. Restart `serve` so the TLS listener trusts it."""
    try:
        data = parse_json(card_file.read_bytes())
    except JsonError as exc:
        raise IntelpactError(f"{card_file}: {exc.message}",
                             hint="give the JSON printed by `intelpact card DIR`") from None
    node = Node.open(node_dir, migrate=False)
    pinned, queued = node.federation.add_peer(data)
    # the URL is the partner's word, as written in its card: escaped (cli._safe)
    out.print(Text(_safe(f"Pinned {pinned.party} at {pinned.url} (key {pinned.key_id}, TLS "
                         f"{pinned.tls_fingerprint[:16]}…); {queued} object(s) queued for "
                         "it")))
    node.close()


@peer.command("list")
@NODE_DIR
@friendly
def peer_list(node_dir: Path) -> None:
    """List pinned partners, and how far each one's audit log has been checked: the
    largest checkpoint of its log witnessed, and how many of its events about our objects
    `serve`'s watch has checked none left out, up to which leaf, and when it last did;
    and the compromise messages and notices waiting to go to each, with the partner's
    last answer to each that failed, and whether it is counted (refused: given up after
    20) or tried again every round (the partner failing: a 5xx)."""
    node = Node.open(node_dir, migrate=False, readonly=True)  # only reads (docs/node.md)
    peers = node.store.peers()
    table = Table("party", "url", "key id", "TLS fingerprint", "pinned")
    for p in peers:
        table.add_row(*(Text(_safe(v)) for v in (p.party, p.url, p.key_id,
                                                  p.tls_fingerprint[:16] + "…", p.added)))
    out.print(table)
    audit = Table("party", "checkpoint witnessed", "events about our objects checked",
                  "last round")
    for p in peers:
        held = node.store.largest_partner_checkpoint(p.party)
        watch = node.store.partner_audit_watch(p.party)
        audit.add_row(p.party, f"{held[0]:,} events" if held else "none yet",
                      (f"{watch[1]:,}" + (f", to leaf {watch[0]:,}" if watch[0] >= 0 else ""))
                      if watch else "not yet",
                      watch[2] if watch else "")
    if peers:
        out.print(audit)
    notices = [n for n in node.store.notices() if n.direction == "out" and not n.delivered]
    messages = [m for m in node.store.compromise_messages() if m.delivered is None]
    node.close()
    for p in peers:
        _waiting(p.party, [m for m in messages if m.party == p.party],
                 [n for n in notices if n.party == p.party])


SHOWN = 20  # the messages and notices failing shown per partner in `peer list`


def _waiting(party: str, messages: list[CompromiseMessage], notices: list[Notice]) -> None:
    """What waits to go to ``party``, and each message or notice that failed at its last
    try (its ``error``): the partner's last answer, and whether it is counted (refused:
    given up after MAX_ATTEMPTS) or tried again every round (a 5xx, never given up). A
    stuck destruction receipt or reclassification showed nowhere before, and a stuck
    recall only as "not delivered yet" in `recalls`."""
    if not messages and not notices:
        return
    queued: list[CompromiseMessage | Notice] = [*messages, *notices]
    failing = [x for x in queued if x.error]
    out.print(Text(_safe(f"Waiting to go to {party}: {len(messages)} compromise message(s), "
                         f"{len(notices)} notice(s)"
                         + (f"; {len(failing)} failed at their last try:" if failing
                            else ""))))
    for item in failing[:SHOWN]:
        if isinstance(item, Notice):
            what = f"{item.kind} notice {item.notice_id}" + (
                f" about {item.object_id}" if item.object_id else "")
        else:
            what = f"compromise {item.kind} of report {item.report_id}"
        counted = ("not counted: tried again every round" if not item.attempts else
                   f"given up: refused {item.attempts} times" if item.attempts >= MAX_ATTEMPTS
                   else f"refused {item.attempts} of {MAX_ATTEMPTS} times")
        out.print(Text(_safe(f"  {what}, queued {item.made}: {item.error} ({counted})")))
    if len(failing) > SHOWN:
        out.print(f"  … and {len(failing) - SHOWN} more")


@main.group()
def key() -> None:
    """Rotate this node's signing key."""


@key.command("rotate")
@NODE_DIR
@friendly
def key_rotate(node_dir: Path) -> None:
    """Make a new signing key and retire the old one. The old key signs a final
    checkpoint of the audit log: what it signed up to there stays valid, nothing past it
    is accepted, here or by partners. Its private key is destroyed. Every partner is sent
    an announcement signed by both keys, with that checkpoint, and every holder of a
    consent this node gave that is still valid the same consent signed with the new
    key. Restart `serve` afterwards."""
    node = Node.open(node_dir, migrate=False)
    old = node.identity.key_id
    new = node.rotate_key()
    bound = node.store.retired_keys(node.party)[old]
    partners = ", ".join(p.party for p in node.store.peers()) or "no partners yet"
    out.print(f"Rotated the signing key {old} -> {new}; {old} is retired at the audit "
              f"checkpoint of size {bound}; announcement queued for {partners}")
    node.close()


@main.command()
@NODE_DIR
@click.option("--party", default=None, help="Only releases to this partner.")
@friendly
def disseminations(node_dir: Path, party: str | None) -> None:
    """The dissemination record: which partner holds which version, since when, with
    its verified receipt (none for a pull); and what partners refused."""
    node = Node.open(node_dir, migrate=False, readonly=True)  # only reads (docs/node.md)
    table = Table("partner", "object", "version", "released", "receipt")
    rows = node.store.disseminations(party=party)
    # passed on by a holder with our consent: our objects, or the holder's own holding our
    # information (a portion with our marking, docs/controls.md), which is the holder's
    originators = node.store.originators(sorted({d.object_id for d in rows if d.via}))
    whose = {oid: f"{origin}'s own" for oid, origin in originators.items()
             if origin != node.party}
    for d in rows:  # a push is recorded once its receipt verifies: one without was pulled
        receipt = f"verified {d.receipt_at}" if d.receipt_id else "no receipt (pulled)"
        if d.via:
            receipt = f"via {d.via} with consent; {receipt}"
            if d.object_id in whose:
                receipt = f"{whose[d.object_id]}, holding our information: {receipt}"
        table.add_row(*(Text(_safe(v)) for v in (d.party, d.object_id, d.version, d.released,
                                                  receipt)))
    out.print(table)
    pending = {p.party: len(node.store.pending(p.party, 100_000)) for p in node.store.peers()
               if party in (None, p.party)}
    onward: dict[tuple[str, str, str], int] = {}
    for d in rows:
        if d.via:
            key = (d.party, d.via, whose.get(d.object_id, ""))
            onward[key] = onward.get(key, 0) + 1
    if onward:
        out.print("Passed on by holders with this node's consent: " + "; ".join(
            f"{n} of {held + ' holding our information' if held else 'ours'} to {to} "
            f"via {via}" for (to, via, held), n in sorted(onward.items())))
    pulled = sum(1 for d in rows if not d.receipt_id)
    out.print(f"{len(rows) - pulled} release(s) acknowledged, {pulled} pulled; waiting: "
              + (", ".join(f"{k} {v}" for k, v in pending.items()) or "none"))
    refusals = [r for r in node.store.refusals() if party in (None, r[0])]
    if refusals:
        out.print(f"{len(refusals)} object(s) received and refused:")
        for who, oid, reason, at in refusals[-20:]:
            out.print(Text(_safe(f"  {at} from {who}: {oid}: {reason}")))  # what it sent
    node.close()
