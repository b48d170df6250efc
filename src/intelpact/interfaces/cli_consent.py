"""`intelpact consent request|list|approve|refuse`: consent for third-party release."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import click
from rich.text import Text

from ..errors import IntelpactError
from ..services.node import Node
from ..store.base import parse_timestamp, utc_now
from .cli import NODE_DIR, _safe, friendly, main, out
from .cli_controls import _deliver

_DURATION = re.compile(r"(\d{1,4})([dhm])\Z")


def _when(text: str | None) -> dt.datetime | None:
    """An expiry: RFC 3339 UTC, or a duration from now (``30d``, ``12h``, ``90m``)."""
    if text is None:
        return None
    duration = _DURATION.match(text.strip())
    if duration:
        n, unit = int(duration.group(1)), duration.group(2)
        unit_name = {"d": "days", "h": "hours", "m": "minutes"}[unit]
        return utc_now() + dt.timedelta(**{unit_name: n})
    try:
        return parse_timestamp(text.strip())
    except ValueError as exc:
        raise IntelpactError(f"--expires: {exc}",
                             hint="e.g. 2026-12-31T00:00:00Z, 30d, 12h or 90m") from None


@main.group()
def consent() -> None:
    """Consent for third-party release: a holder asks the originator; the originator's
    security officer approves with a signed token (or refuses with a reason); the object
    then goes to the third party with the token, which the recipient verifies."""


EXPIRES = click.option("--expires", help="Until when: RFC 3339 UTC (2026-12-31T00:00:00Z) "
                       "or a duration from now (30d, 12h, 90m).")


@consent.command("request")
@NODE_DIR
@click.argument("object_id", metavar="ID")
@click.option("--to", "recipient", required=True, help="The third party to release it to.")
@click.option("--purpose", required=True, help="Why: recorded, and sent to the originator.")
@EXPIRES
@click.option("--of", "of", default=None, metavar="PARTY",
              help="For this node's own object: the party whose information it holds (a "
                   "portion it marks) to ask; default the only one.")
@click.option("--as", "as_name", required=True, help="Ask as this person (who may read it).")
@friendly
def consent_request(node_dir: Path, object_id: str, recipient: str, purpose: str,
                    expires: str | None, of: str | None, as_name: str) -> None:
    """Ask the originator of an object held here to let it go to a third party (or, for
    this node's own object holding another party's information, that party)."""
    node = Node.open(node_dir, migrate=False)
    principal = node.people.as_person(as_name)
    record = node.consents.request(principal, object_id, recipient=recipient,
                                   purpose=purpose, expires=_when(expires), of=of)
    out.print(f"Consent request {record.request_id} for {object_id} to {record.recipient} "
              f"queued for {record.originator}")
    _deliver(node, [record.originator])
    node.close()


@consent.command("list")
@NODE_DIR
@friendly
def consent_list(node_dir: Path) -> None:
    """Consent requests: made by this node (outgoing) and to it (incoming), with status."""
    node = Node.open(node_dir, migrate=False, readonly=True)  # only reads (docs/node.md)
    records = node.consents.requests()
    node.close()
    if not records:
        out.print("No consent requests.")
        return
    for r in records:
        who = json.loads(r.requester)
        asked = f"{who.get('id')} ({who.get('nationality')}, {who.get('clearance')})"
        if r.status == "approved":
            status = f"approved until {r.expires}"
        elif r.status == "refused":
            status = f"refused: {r.reason}"
        else:
            status = "pending" + (f" (asked until {r.requested_expires})"
                                  if r.requested_expires else "")
        direction = "outgoing" if r.direction == "out" else "incoming"
        out.print(Text(_safe(f"{r.request_id}  {direction}  {status}")))
        out.print(Text(_safe(f"  {r.object_id}: held by {r.holder}, originated by "
                             f"{r.originator}, to {r.recipient}")))
        out.print(Text(_safe(f"  purpose: {r.purpose}; asked by {asked} on {r.made}")))


@consent.command("approve")
@NODE_DIR
@click.argument("request_id", metavar="REQUEST_ID")
@EXPIRES
@click.option("--as", "as_name", required=True, help="The security officer approving.")
@friendly
def consent_approve(node_dir: Path, request_id: str, expires: str | None,
                    as_name: str) -> None:
    """Consent to a request: a token signed by this node's key, scoped to the holder,
    the recipient, the versions asked for, the purpose, until --expires (default: the
    expiry asked for, else 30 days), sent to the holder."""
    node = Node.open(node_dir, migrate=False)
    principal = node.people.as_person(as_name)
    record = node.consents.approve(principal, request_id, expires=_when(expires))
    out.print(f"Consent given to {record.holder} to release {record.object_id} to "
              f"{record.recipient} until {record.expires}")
    _deliver(node, [record.holder])
    node.close()


@consent.command("refuse")
@NODE_DIR
@click.argument("request_id", metavar="REQUEST_ID")
@click.option("--reason", required=True, help="Why: recorded, and sent to the holder.")
@click.option("--as", "as_name", required=True, help="The security officer refusing.")
@friendly
def consent_refuse(node_dir: Path, request_id: str, reason: str, as_name: str) -> None:
    """Refuse a consent request, with the reason."""
    node = Node.open(node_dir, migrate=False)
    principal = node.people.as_person(as_name)
    record = node.consents.refuse(principal, request_id, reason=reason)
    out.print(f"Consent refused to {record.holder} for {record.object_id}")
    _deliver(node, [record.holder])
    node.close()
