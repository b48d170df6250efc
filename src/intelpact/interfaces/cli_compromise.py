"""`intelpact compromise report|ack|close|list|show`: suspected loss or compromise of
information, told to its originator at once and tracked to closure."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import httpx
from rich.text import Text

from ..services.audit import operator
from ..services.compromise import CompromiseReports
from ..services.federation import FederationError
from ..services.node import Node
from ..services.people import Principal
from ..store.base import CompromiseMessage, CompromiseRecord
from ..store.sqlite import MAX_ATTEMPTS
from .cli import NODE_DIR, _progress, _safe, friendly, main, out
from .cli_audit import _print_event, banner_for

AS_OFFICER = click.option(
    "--as", "as_name", default=None, metavar="NAME",
    help="Act as this person of the node, who must hold the security-officer role "
    "(default: the operator running the command, recorded by account name or, in an "
    "event the originator is shown, by its pseudonym).")


@main.group()
def compromise() -> None:
    """Report suspected loss or compromise of information to its originator, with the
    access history from the audit log, and track each report to closure against the
    agreement's notice deadline."""


@compromise.command("report")
@NODE_DIR
@click.option("--object", "object_ids", multiple=True, required=True, metavar="ID",
              help="An object concerned (repeatable): every version this node holds.")
@click.option("--what", required=True, help="What happened, for the originator.")
@click.option("--discovered", required=True, metavar="TIME",
              help="When the compromise was discovered (RFC 3339, UTC, e.g. "
              "2026-11-01T09:30:00Z); the notice deadline counts from it.")
@click.option("--occurred", default=None, metavar="TIME",
              help="When it happened, if known (RFC 3339, UTC).")
@AS_OFFICER
@friendly
def compromise_report(node_dir: Path, object_ids: tuple[str, ...], what: str,
                      discovered: str, occurred: str | None, as_name: str | None) -> None:
    """File a report of suspected loss or compromise of the objects named. Each
    originator of them is sent its own signed report with this node's audit events about
    its objects (each proven in the signed log) at once; if it cannot be reached, the
    report stays queued and `serve` keeps retrying. Reports about this node's own
    objects are recorded here only."""
    node = Node.open(node_dir, migrate=False)
    officer = _officer(node, as_name)
    records = node.compromise.file(object_ids, what=what, discovered=discovered,
                                   occurred=occurred, officer=officer, actor=operator())
    problems = _deliver(node, {r.originator for r in records if r.direction == "outgoing"})
    hours = node.compromise.notice_hours
    for filed in records:
        record = node.store.compromise_report(filed.report_id) or filed
        if record.direction == "local":
            out.print(f"Recorded report {record.report_id} here: {record.object_count} "
                      f"object(s) this node originated; deadline {record.deadline}")
        else:
            out.print(f"Report {record.report_id} to {record.originator}: "
                      f"{record.object_count} object(s); notice deadline {record.deadline} "
                      f"({hours} h after discovery)")
            _print_delivery(node_dir, record.originator, record.delivered,
                            problems.get(record.originator))
        _print_flag(node, record)
    node.close()


@compromise.command("ack")
@NODE_DIR
@click.argument("report_id", metavar="REPORT_ID")
@click.option("--note", default=None, help="A note for the reporter.")
@AS_OFFICER
@friendly
def compromise_ack(node_dir: Path, report_id: str, note: str | None,
                   as_name: str | None) -> None:
    """Acknowledge a report about this node's objects: signed, recorded, and sent back
    to the reporter at once (queued for `serve` if it cannot be reached)."""
    node = Node.open(node_dir, migrate=False)
    record = node.compromise.acknowledge(report_id, note=note,
                                         officer=_officer(node, as_name), actor=operator())
    _sent(node, node_dir, record, "ack", "Acknowledged")
    node.close()


@compromise.command("close")
@NODE_DIR
@click.argument("report_id", metavar="REPORT_ID")
@click.option("--note", required=True, help="Why it is closed (findings, measures taken).")
@AS_OFFICER
@friendly
def compromise_close(node_dir: Path, report_id: str, note: str, as_name: str | None) -> None:
    """Close a report (either side may), saying why; the other side is sent the signed
    closure at once (queued for `serve` if it cannot be reached)."""
    node = Node.open(node_dir, migrate=False)
    record = node.compromise.close(report_id, note=note, officer=_officer(node, as_name),
                                   actor=operator())
    _sent(node, node_dir, record, "close", "Closed")
    node.close()


@compromise.command("list")
@NODE_DIR
@friendly
def compromise_list(node_dir: Path) -> None:
    """Every report filed here or received, oldest first: direction and partner, objects,
    filed, the notice deadline, status (open, acknowledged, closed), delivery, and
    OVERDUE or LATE against the deadline (docs/audit.md says exactly when)."""
    node = Node.open(node_dir, migrate=False, readonly=True)  # only reads (docs/node.md)
    records = node.store.compromise_reports()
    messages = node.store.compromise_messages()
    shown = banner_for(node, [_report(r) for r in records])
    out.print(shown)
    flagged = 0
    for record in records:
        flag = node.compromise.flag(record)
        flagged += bool(flag.state)
        head = f"{record.report_id}  {_direction(record)}  {node.compromise.status(record)}"
        out.print(Text(_safe(head)) + (Text("  " + flag.state.upper(), style="bold red")
                                       if flag.state else Text("")))
        pending = [m for m in messages if m.report_id == record.report_id]
        out.print(Text(_safe(f"    {record.object_count} object(s) · filed {record.filed} · "
                             f"deadline {record.deadline} · "
                             f"{_delivery(record, pending)}{_checked(record)}")))
    out.print(f"{len(records)} report(s), {flagged} flagged against the notice deadline")
    out.print(shown)
    node.close()


@compromise.command("show")
@NODE_DIR
@click.argument("report_id", metavar="REPORT_ID")
@click.option("--complete", is_flag=True,
              help="At the originator: read the reporter's audit events about our objects "
              "on to now (partner audit, none left out; those read before are kept here) "
              "and check that the history left none about these objects out (one missing "
              "raises an alert).")
@friendly
def compromise_show(node_dir: Path, report_id: str, complete: bool) -> None:
    """Everything about a report: what, when, who filed it, its deadline and status, the
    acknowledgement and closure, and the access history (each event by pseudonym with
    nationality and clearance, proven again now in the reporter's signed log)."""
    # only reads (docs/node.md), but --complete: it reads on, keeps and records the check
    node = Node.open(node_dir, migrate=False, readonly=not complete)
    record = node.compromise.get(report_id)
    report = _report(record)
    left_out = _check(node, record) if complete else None
    record = node.compromise.get(report_id)  # with the check's outcome
    size, events = node.compromise.history(record)
    ours = record.reporter == node.party
    names = node.audit.pseudonyms.names([p.name for p in node.store.people()],
                                        node.agreement.parties,
                                        operator=operator()) if ours else {}
    shown = banner_for(node, [report, *events])
    out.print(shown)
    rows: list[tuple[str, str]] = [
        ("report", f"{record.report_id} ({_direction(record)})"),
        ("reporter", f"{record.reporter}, filed by {_by(report.get('by'), names)}"),
        ("originator", record.originator),
        ("objects", ", ".join(f"{o[0]} ({o[1]})" for o in report.get("objects", []))),
        ("what", str(report.get("what", ""))),
        ("occurred", str(report.get("occurred") or "unknown")),
        ("discovered", record.discovered), ("filed", record.filed),
        ("deadline", f"{record.deadline} ({report.get('notice_hours')} h after discovery)"),
        ("status", node.compromise.status(record)),
        ("delivery", _delivery(record, node.store.compromise_messages(record.report_id)))]
    for step, at, body in (("acknowledged", record.acknowledged, record.ack_body),
                           ("closed", record.closed, record.close_body)):
        if at and body:
            data = json.loads(body)
            rows.append((step, f"{at} by {data.get('from')} ({_by(data.get('by'), names)})"
                         + (f": {data['note']}" if data.get("note") else "")))
    if record.direction == "incoming":
        rows.append(("history", record.history_check and f"{record.history_check} (checked "
                     f"{record.history_checked})" or "not checked yet (`serve` checks it "
                     f"against {record.reporter}'s partner audit; or --complete, now)"))
    flag = node.compromise.flag(record)
    if flag.state:
        rows.append((flag.state.upper(), flag.reason))
    for key, value in rows:
        out.print(Text(_safe(f"{key:<13}{value}")))
    more = " (more were recorded than a report carries: see `audit partner`)" \
        if report.get("history", {}).get("more") else ""
    out.print(f"Access history: {len(events)} event(s) from {record.reporter}'s audit log "
              f"about these objects, each proven included in its signed checkpoint of "
              f"{size} events{more}")
    for event in events:
        _print_event(event, event["index"], names)
    if left_out:
        out.print(Text.assemble(("LEFT OUT", "bold red"), f": {len(left_out)} event(s) of "
                                f"{record.reporter}'s log about these objects are not in the "
                                "history (alert raised: intelpact audit alerts DIR)"))
        for event in left_out:
            _print_event(event, event["index"], names)
    elif left_out is not None:  # the outcome names the bound: below the history's last
        # event when it was cut short, else below its checkpoint's size
        out.print(Text(_safe(f"Complete, checked now: "
                             f"{(record.history_check or '').removeprefix('complete: ')}.")))
    out.print(shown)
    node.close()
    if left_out:
        sys.exit(1)


# -- helpers ---------------------------------------------------------------------------------

def _checked(record: CompromiseRecord) -> str:
    """What ``compromise list`` says of an incoming report's history check."""
    if record.direction != "incoming":
        return ""
    return f" · history {CompromiseReports.history_state(record)}"


def _check(node: Node, record: CompromiseRecord) -> list[dict[str, Any]]:
    """The events the report's history left out (CompromiseReports.check), from the
    reporter's partner audit, read on to now (Courier.events_before)."""
    from ..services.courier import Courier

    with Courier(node) as courier, _progress(f"fetching {record.reporter}'s audit events",
                                             None) as advance:
        return node.compromise.check(
            record, lambda party, before, objects: courier.events_before(
                party, before, objects, advance),
            actor=operator())


def _officer(node: Node, as_name: str | None) -> Principal | None:
    return node.people.as_person(as_name) if as_name else None


def _deliver(node: Node, parties: Iterable[str]) -> dict[str, str]:
    """Try to deliver what is queued for ``parties`` now; the problems, by party."""
    from ..services.courier import Courier

    problems: dict[str, str] = {}
    with Courier(node) as courier:
        for party in sorted(set(parties)):
            if party not in node.federation.peers():
                problems[party] = (f"{party} is not a pinned partner; pin it with "
                                   "`intelpact peer add`")
                continue
            try:
                courier.deliver_compromise(party)
            except (FederationError, httpx.HTTPError, ValueError, KeyError) as exc:
                problems[party] = getattr(exc, "message", str(exc))
    return problems


def _sent(node: Node, node_dir: Path, record: CompromiseRecord, kind: str,
          done: str) -> None:
    """Deliver an acknowledgement or closure now, and say what happened."""
    other = record.originator if record.reporter == node.party else record.reporter
    if record.direction == "local":
        out.print(f"{done} report {record.report_id} (a report about this node's own "
                  "objects: nothing to send)")
        return
    problem = _deliver(node, [other]).get(other)
    message = next((m for m in reversed(node.store.compromise_messages(record.report_id))
                    if m.kind == kind), None)
    out.print(f"{done} report {record.report_id}")
    _print_delivery(node_dir, other, message.delivered if message else None, problem)


def _print_delivery(node_dir: Path, party: str, delivered: str | None,
                    problem: str | None) -> None:
    if delivered:
        out.print(f"  delivered: {party}'s signed receipt verified at {delivered}")
    else:
        out.print(Text(_safe(f"  queued: {problem or 'not delivered yet'}; "
                             f"`intelpact serve {node_dir}` keeps retrying")))


def _print_flag(node: Node, record: CompromiseRecord) -> None:
    flag = node.compromise.flag(record)
    if flag.state:
        out.print(Text.assemble(("  " + flag.state.upper(), "bold red"), ": " + flag.reason))


def _report(record: CompromiseRecord) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(record.body)
    return data


def _direction(record: CompromiseRecord) -> str:
    if record.direction == "outgoing":
        return f"to {record.originator}"
    if record.direction == "incoming":
        return f"from {record.reporter}"
    return "local (this node's own objects)"


def _delivery(record: CompromiseRecord, messages: list[CompromiseMessage]) -> str:
    """Where the report and its steps are: delivered, received, or still queued (why)."""
    if record.direction == "outgoing":
        parts = [f"delivered {record.delivered}" if record.delivered else "not delivered"]
    elif record.direction == "incoming":
        parts = [f"received {record.delivered}"]
    else:
        parts = ["recorded here only"]
    for m in messages:
        if m.delivered is None and not (m.kind == "report" and record.delivered):
            what = "report" if m.kind == "report" else f"{m.kind} to {m.party}"
            state = "given up" if m.attempts >= MAX_ATTEMPTS else "queued"
            parts.append(f"{what} {state}" + (f" ({m.error})" if m.error else ""))
    return "; ".join(dict.fromkeys(parts))


def _by(by: Any, names: dict[str, str]) -> str:
    if not isinstance(by, dict) or by.get("role") != "security-officer":
        return "the operator"
    who = str(by.get("id", ""))
    return f"{names.get(who, who)} ({by.get('nationality')}, {by.get('clearance')})"



