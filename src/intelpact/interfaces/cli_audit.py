"""`intelpact audit verify|show|checkpoint|alerts`: the node's tamper-evident log."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.text import Text

from ..model import banner
from ..model.labels import Label, join_all
from ..services.audit import KINDS, AuditError, operator, readable, why_not_kept
from ..services.federation import FederationError
from ..services.node import Node
from ..services.people import refused_for_node
from ..store.base import AuditFilter, AuditRecord, normalise_timestamp, objects_named
from .cli import (
    NODE_DIR,
    _plain_json,
    _progress,
    _safe,
    banner_line,
    err,
    friendly,
    main,
    out,
)


@main.group()
def audit() -> None:
    """The audit log: verify it, show its events, sign a checkpoint now."""


@audit.command("verify")
@NODE_DIR
@friendly
def audit_verify(node_dir: Path) -> None:
    """Re-check the whole log: every event against the tree, every checkpoint's signature
    and root, each checkpoint a prefix of the next; and every partner audit event kept
    here against the partner's signed checkpoint. Events not yet integrated are checked
    as far as they can be, and counted as pending. Writes nothing: the database is
    opened read-only (a copy, a backup or a read-only mount is verified as it is). Exit
    status 1 if anything is wrong."""
    # read-only: never migrated (only serve and migrate do: docs/node.md), nothing
    # integrated, signed or recorded (docs/audit.md, "Verifying a node's log")
    node = Node.open(node_dir, migrate=False, readonly=True)
    try:
        total = node.store.audit_size()
        with _progress("verifying events", total) as advance:
            verdict = node.audit.verify(advance)
        with _progress("checking the partner audit events kept here", None) as advance:
            kept, problems = node.check_kept(advance)
    finally:
        node.close()
    verdict = dataclasses.replace(verdict, problems=(*verdict.problems, *problems))
    pending = (f" ({verdict.pending} pending integration: checked for their indexes, MACs, "
               "fields and numbers, not yet covered by the tree's stored hashes or a "
               "checkpoint)" if verdict.pending else "")
    if verdict.ok:
        out.print(Text.assemble(("OK", "bold green"), f": {verdict.size} events{pending}, "
                                f"{verdict.checkpoints} signed checkpoint(s); every event, "
                                "subtree hash and checkpoint verifies"
                                + (f"; so do the {kept:,} partner audit event(s) kept here"
                                   if kept else "")))
        return
    out.print(Text.assemble(("FAILED", "bold red"), f": {len(verdict.problems)} problem(s) "
                            f"in {verdict.size} events{pending} and {verdict.checkpoints} "
                            "checkpoint(s)"))
    for problem in verdict.problems[:50]:
        out.print(Text("  - " + _safe(problem)))
    if len(verdict.problems) > 50:
        out.print(f"  … and {len(verdict.problems) - 50} more")
    sys.exit(1)


@audit.command("checkpoint")
@NODE_DIR
@friendly
def audit_checkpoint(node_dir: Path) -> None:
    """Integrate every event appended and sign a checkpoint now; print it."""
    node = Node.open(node_dir, migrate=False)
    checkpoint = node.audit.checkpoint()
    node.close()
    click.echo(checkpoint.note, nl=False)


@audit.command("show")
@NODE_DIR
@click.option("--object", "object_id", help="Only events about this object id.")
@click.option("--person", help="Only events by (or about) this person of the node.")
@click.option("--party", help="Only events involving this partner (e.g. NZL).")
@click.option("--originator", help="Only events about objects this party originated.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(sorted(KINDS)),
              metavar="KIND", help="Only events of this kind (repeatable): publish, receive, "
              "release, read, deny, refuse, login-failure, person-add, …")
@click.option("--since", help="Only events at or after this time (RFC 3339, UTC).")
@click.option("--until", help="Only events at or before this time (RFC 3339, UTC).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000),
              help="Show at most this many events (oldest first).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the events' bodies, one per line (terminal controls escaped).")
@friendly
def audit_show(node_dir: Path, object_id: str | None, person: str | None,
               party: str | None, originator: str | None, kinds: tuple[str, ...],
               since: str | None, until: str | None, limit: int, as_json: bool) -> None:
    """Show events, oldest first, between banners for the most sensitive object they name.
    People appear by name where they are people of this node (the log holds pseudonyms),
    and so does the operator running it where an event about a partner's objects names
    them by pseudonym. Writes nothing: the node is opened read-only (a copy, a backup or
    a read-only mount is read as it is)."""
    node = Node.open(node_dir, migrate=False, readonly=True)  # only reads (docs/node.md)
    parties = node.agreement.parties
    names = node.audit.pseudonyms.names([p.name for p in node.store.people()], parties,
                                        operator=operator())
    where = AuditFilter(object_id=object_id,
                        persons=node.audit.pseudonyms.every(person, parties) if person else (),
                        party=party.upper() if party else None,
                        originator=originator.upper() if originator else None,
                        kinds=kinds, since=normalise_timestamp(since) if since else None,
                        until=normalise_timestamp(until) if until else None, limit=limit)
    events = node.audit.find(where)
    if as_json:  # escaped as `get` escapes: a partner's words are in some events
        for event in events:
            click.echo(_plain_json(event.body))
        node.close()
        return
    shown = banner_for(node, events)
    out.print(shown)
    for event in events:
        data, why = readable(event.body)
        if data is None:
            _print_unreadable(event.index, event.at, event.kind, str(why))
        else:
            _print_event(data, event.index, names)
    out.print(f"{len(events)} event(s)" + (" (limit reached: narrow the filters or raise "
                                            "--limit)" if len(events) == limit else ""))
    out.print(shown)
    node.close()


@audit.command("partner")
@NODE_DIR
@click.argument("party")
@click.option("--object", "object_id", help="Only events about this object id.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(sorted(KINDS)),
              metavar="KIND", help="Only events of this kind (repeatable): receive, read, "
              "deny, release, destroy, …")
@click.option("--limit", default=10_000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Show at most this many events.")
@click.option("--kept", is_flag=True,
              help="Only what this node keeps, without asking PARTY: the events its audit "
              "watch read, each checked again against PARTY's signed checkpoint. Writes "
              "nothing (the node is opened read-only).")
@click.option("--json", "as_json", is_flag=True, help="Print the verified events as JSON lines.")
@friendly
def audit_partner(node_dir: Path, party: str, object_id: str | None, kinds: tuple[str, ...],
                  limit: int, kept: bool, as_json: bool) -> None:
    """How PARTY handled the information this node originated: its audit events about our
    objects (receipts, reads by pseudonymous people with clearance and nationality,
    onward releases, denials), each proven to be in PARTY's signed log, and its
    checkpoint checked against every earlier one we hold (a rewrite raises an alert).
    None is left out: PARTY numbers them and signs how many it holds (a number missing
    raises an alert, and exit status 1). Each event read is kept here as evidence, so
    this reads only what PARTY logged since the last time (`serve` reads on every
    gossip round); --kept shows the evidence when PARTY is out of reach. --object and
    --kind narrow what is shown; every event is still counted towards the statement
    that none is left out (`audit verify` checks every one again)."""
    from ..services.courier import Courier, Unreachable

    party = party.upper()
    narrowed = bool(object_id or kinds)
    # --kept only reads (docs/node.md); else the events read are kept, the watch moved on
    node = Node.open(node_dir, migrate=False, readonly=kept)
    courier = Courier(node)
    try:
        with _progress(f"checking the audit events of {party} kept here" if kept else
                       f"fetching {party}'s audit events",
                       None if kept or narrowed else limit) as advance:
            found = courier.partner_events(party, limit=limit, read_on=not kept,
                                           objects=(object_id,) if object_id else (),
                                           kinds=kinds, advance=advance)
        watch = node.store.partner_audit_watch(party)
    except Unreachable as exc:
        raise Unreachable(exc.message, hint=(f"{exc.hint}; " if exc.hint else "") +
                          f"--kept shows what this node keeps of {party}'s events, without "
                          "asking it") from None
    finally:
        courier.stop()
    if kept and watch is None:
        pinned = party in node.federation.peers()
        node.close()
        if not pinned:
            raise FederationError(f"{party} is not a pinned partner, and nothing of its "
                                  "audit events is kept here", hint="intelpact peer list DIR")
        err.print(f"Nothing kept of {party}'s audit events: this node has not read them yet "
                  f"(`serve` does, every gossip round; or run without --kept).")
        return
    left_out = Text.assemble(("NOT COMPLETE", "bold red"), f": {found.missing} numbered "
                             "event(s) about our objects are not here: "
                             f"{why_not_kept(party, found.missing, found.alerted)} "
                             "(intelpact audit alerts DIR; intelpact audit verify DIR names "
                             "the numbers)")
    if as_json:
        for event in found.events:
            click.echo(_plain_json(json.dumps(event, ensure_ascii=False, sort_keys=True)))
        node.close()
        if found.missing:
            err.print(left_out)
            sys.exit(1)
        return
    shown = banner_for(node, found.events)
    out.print(shown)
    for event in found.events:
        data, why = readable(event)
        if data is None:  # proven as PARTY signed it: refused by the watch since
            _print_unreadable(event["index"], event.get("at", ""), event.get("kind", ""),
                              str(why))
        else:
            _print_event(data, event["index"], {})
    count = f"{len(found.events)} event(s) from {party}'s log" + (
        f" of {_partner_filter(object_id, kinds)}" if narrowed else "")
    if watch is not None and kept:
        out.print(f"{count}, kept here, read by the audit watch to leaf {watch[0]:,} "
                  f"({watch[2]}); each checked again against {party}'s signed checkpoint "
                  f"it was proven in. Nothing was asked of {party}: run without --kept to "
                  "read on.")
    else:
        out.print(f"{count}, each proven included in its signed log; its latest "
                  f"checkpoint, of {found.size:,} events, witnessed now (signature and "
                  "consistency verified)")
    if found.missing:
        out.print(left_out)
    elif found.more:
        out.print(f"Only the first {len(found.events)}: {party} holds more (raise --limit"
                  + (", or run without --kept)." if kept else ")."))
    else:
        out.print(f"Complete: {party} signed that its log held {found.expect} numbered "
                  "event(s) about our objects" + (" when last read" if kept else "")
                  + ", and each is here" + (f" ({len(found.events)} of them shown)."
                                            if narrowed else "."))
    out.print(shown)
    node.close()
    if found.missing:
        sys.exit(1)


def _partner_filter(object_id: str | None, kinds: tuple[str, ...]) -> str:
    """The filter of `audit partner` in words: "kind read or deny about indicator--…"."""
    return " ".join(([f"kind {' or '.join(kinds)}"] if kinds else [])
                    + ([f"about {object_id}"] if object_id else []))


@audit.command("alerts")
@NODE_DIR
@click.option("--all", "show_all", is_flag=True,
              help="Also the alerts resolved, with when and what was done.")
@friendly
def audit_alerts(node_dir: Path, show_all: bool) -> None:
    """List the open alerts for the security officer (e.g. a partner rewrote its
    history), oldest first; resolve one with `intelpact audit resolve`. Writes nothing:
    the node is opened read-only."""
    node = Node.open(node_dir, migrate=False, readonly=True)  # only reads (docs/node.md)
    alerts = node.store.alerts()
    resolved = node.store.alert_resolutions()
    node.close()
    shown = [a for a in alerts if show_all or a[0] not in resolved]
    hidden = f" ({len(resolved)} resolved not shown: --all)" if resolved and not show_all \
        else ""
    if not shown:
        out.print(f"No open alerts.{hidden}" if resolved else "No alerts.")
        return
    for alert_id, kind, party, detail, raised in shown:  # as `audit show`: a head, then more
        out.print(Text(_safe(f"#{alert_id}  {raised}  {kind}" + (f"  {party}" if party
                                                                   else ""))))
        out.print(Text("    " + _safe(detail)))
        if show_all:
            done = resolved.get(alert_id)
            out.print(Text("    " + _safe(f"resolved {done[0]}: {done[1]}" if done
                                          else "open")))
    err.print(f"{len(shown)} alert(s){hidden}")


@audit.command("resolve")
@NODE_DIR
@click.argument("alert_id", metavar="ALERT_ID", type=int)
@click.option("--note", required=True, help="What was done about it (recorded).")
@click.option("--as", "as_name", default=None, metavar="NAME",
              help="Act as this person of the node, who must hold the security-officer "
              "role (default: the operator running the command, recorded by account name).")
@friendly
def audit_resolve(node_dir: Path, alert_id: int, note: str, as_name: str | None) -> None:
    """Resolve an alert, saying what was done: it leaves the list of open alerts, and the
    resolution is recorded in the audit log (`alert-resolve`). The alert itself stays."""
    node = Node.open(node_dir, migrate=False)
    person = node.people.as_person(as_name).person if as_name else None
    if person is not None and (why := refused_for_node(node.policy, node.audit, person,
                                                       "resolve alerts", alert_id=alert_id)):
        raise AuditError(why)
    node.audit.resolve_alert(alert_id, note, person=person, actor=operator())
    node.close()
    out.print(f"Resolved alert #{alert_id}.")


def _print_event(data: dict[str, Any], index: int, names: dict[str, str]) -> None:
    """Two lines: index, time, kind and who; then what about and the details."""
    who = ""
    person = data.get("person")
    if isinstance(person, dict):
        pid = str(person.get("id", ""))
        who = names.get(pid, pid)
        if "nationality" in person:
            who += f" ({person.get('nationality')}, {person.get('clearance')})"
    elif data.get("actor"):
        who = names.get(str(data["actor"]), str(data["actor"]))
    head = f"#{index}  {data.get('at', '')}  {data.get('kind', '')}"
    out.print(Text(_safe(head + (f"  by {who}" if who else ""))))
    parts = [f"{k} {data[k]}" for k in ("party", "originator") if data.get(k)]
    if data.get("subject"):
        parts.insert(0, f"subject {names.get(str(data['subject']), data['subject'])}")
    if data.get("objects"):
        parts.append("objects " + _objects(data))
    detail = _detail(data)
    if detail:
        parts.append(detail)
    if parts:
        out.print(Text("    " + _safe(" · ".join(parts))))


def _print_unreadable(index: int, at: object, kind: object, why: str) -> None:
    """An event that cannot be shown (``readable``): its index, time and kind as its
    row says, and why, but nothing it names (the banner does not cover it)."""
    out.print(Text(_safe(f"#{index}  {at}  {kind}")))
    out.print(Text("    " + _safe(f"UNREADABLE: {why}: altered? intelpact audit verify "
                                  "DIR checks every event")))


def _objects(data: dict[str, Any]) -> str:
    objects = data.get("objects", [])
    shown = ", ".join(str(o[0]) for o in objects[:2])
    if len(objects) > 2:
        shown += f" … (+{len(objects) - 2})"
    return shown


_SHOWN = {"v", "index", "at", "kind", "node", "person", "subject", "actor", "party",
          "originator", "objects"}


def _detail(data: dict[str, Any]) -> str:
    return "; ".join(f"{k}={_brief(v)}" for k, v in sorted(data.items()) if k not in _SHOWN)


def _brief(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:79] + "…"


def banner_for(node: Node, events: Sequence[AuditRecord | dict[str, Any]]) -> Text:
    """The banner line for a listing of events (or of anything naming ``objects``)."""
    return banner_line(banner(_highest(node, events), node.agreement, node.party))


def _highest(node: Node, events: Sequence[AuditRecord | dict[str, Any]]) -> Label:
    """The join of the banners of every object the events name, and at least the
    agreement's lowest covered level. An object named that this node does not hold
    (deleted since, or never held: a denied read of an id held nowhere) has no label
    left to read, and what its events say (its id, who read it, a denial's reason) is as
    sensitive as it was: it counts as the agreement's highest covered level, REL TO this
    node's party alone, never as the lowest. So does every object named while the stored
    labels are under another text than the agreement in force (a node opened read-only
    after a pin, before a read-write open worked them out again: services/relabel.py):
    the amendment may map them higher."""
    # only what is shown: an event that cannot be read names nothing on the page
    ids = sorted({oid for e in events for oid in objects_named(
        readable(e.body if isinstance(e, AuditRecord) else e)[0])})
    labels = node.store.labels()
    covered = node.agreement.covered
    found: list[Label] = [Label(node.agreement.id, min(covered), node.party, None)]
    held = node.store.held(ids)
    found.extend(labels[row.banner_id] for row in held)
    stale = node.store.labels_agreement() != node.agreement.content_hash
    if set(ids) - {row.object_id for row in held} or (ids and stale):
        found.append(Label(node.agreement.id, max(covered), node.party,
                           frozenset({node.party})))
    return join_all(found)
