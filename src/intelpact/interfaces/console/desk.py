"""The security officer's desk: consent requests in and out, the dissemination record
of our objects, recalls, compromise reports with their deadlines, and the audit log's
proofs and partners' checkpoints.

Each list shows only entries about objects the officer may read themselves (the
model's read decision on the object's stored label): the desk is a page like any
other, and names nothing its viewer may not see. Decisions go through the services
(``Consents.approve`` / ``refuse``), which check the role again and audit them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...errors import IntelpactError
from ...model import Label
from ...services.audit import verify_log
from ...services.people import Principal
from ...store.base import utc_now
from .app import Console, ConsoleError, Page

MAX_ROWS = 200


class _Readable:
    """Which object ids the officer may read, decided once per id by the model on the
    labels of the rows this node holds (bookkeeping: nothing of them is shown)."""

    def __init__(self, console: Console, principal: Principal, ids: Iterable[str]) -> None:
        node = console.node
        labels = node.store.labels()
        self.banners: dict[str, Label] = {}
        allowed: set[str] = set()
        for row in node.store.held(sorted(set(ids))):
            if node.policy.may_read(principal.person, labels[row.label_id]).allowed:
                allowed.add(row.object_id)
                banner = labels[row.banner_id]
                known = self.banners.get(row.object_id)
                self.banners[row.object_id] = banner if known is None else known.join(banner)
        self.allowed = allowed
        self.shown: list[Label] = []

    def __call__(self, object_id: str) -> bool:
        if object_id in self.allowed:
            self.shown.append(self.banners[object_id])
            return True
        return False


def show(console: Console, request: Request, principal: Principal,
         form: FormData | None) -> Page:
    node = console.node
    verdict = None
    if form is not None and form.get("action") == "verify":
        verdict = verify_log(node.store, node.audit.origin, node.audit.public_keys())
    consents = node.consents.requests()
    dissem = node.store.disseminations()
    recalls = node.controls.recalls()
    reports = node.store.compromise_reports()
    report_objects = {r.report_id: _report_objects(r.body) for r in reports}
    ids = [c.object_id for c in consents] + [d.object_id for d in dissem] + \
        [r.object_id for r in recalls] + [o for objs in report_objects.values() for o in objs]
    may = _Readable(console, principal, ids)
    now = utc_now()
    incoming = [c for c in consents if c.direction == "in" and may(c.object_id)]
    outgoing = [c for c in consents if c.direction == "out" and may(c.object_id)]
    records = [d for d in dissem if may(d.object_id)][-MAX_ROWS:]
    recalled = [r for r in recalls if may(r.object_id)][-MAX_ROWS:]
    shown_reports = []
    for r in reports:
        objs = report_objects[r.report_id]
        if objs and all(may(o) for o in objs):
            flag = node.compromise.flag(r, now)
            shown_reports.append({"r": r, "status": node.compromise.status(r), "flag": flag,
                                  "objects": objs})
    latest = node.audit.latest()
    partners = []
    for peer in node.store.peers():
        held = node.store.partner_checkpoints(peer.party)
        last = max(held, default=None, key=lambda c: c[0])
        partners.append({"party": peer.party, "size": last[0] if last else None,
                         "received": last[3] if last else None, "count": len(held)})
    return Page("desk.html", {
        "incoming": incoming, "outgoing": outgoing, "records": records,
        "recalled": recalled, "reports": shown_reports, "verdict": verdict,
        "audit_size": node.store.audit_size(),
        "latest": _checkpoint_size(latest.note) if latest else None,
        "latest_signed": latest.signed if latest else None, "partners": partners,
        "alerts": node.store.alerts()[-20:],
        "requester": _requester}, labels=may.shown)


def consent(console: Console, request: Request, principal: Principal,
            form: FormData | None) -> Response:
    """Approve (with an expiry) or refuse an incoming consent request."""
    node = console.node
    if form is None:
        raise ConsoleError(405, "Method not allowed", "decide with the desk's buttons")
    rid = request.path_params["rid"]
    record = node.store.consent(rid)
    if record is None or record.direction != "in" or \
            not _Readable(console, principal, [record.object_id])(record.object_id):
        raise ConsoleError(404, "No such request", "it may have been decided already; "
                           "reload the desk")
    action = form.get("action")
    try:
        if action == "approve":
            days = str(form.get("days") or "").strip()
            expires = None
            if days:
                if not days.isdigit() or not 1 <= int(days) <= 365:
                    raise ConsoleError(400, "Scope refused", "give the consent's length as "
                                       "1 to 365 days, or leave it empty for the default")
                expires = utc_now() + dt.timedelta(days=int(days))
            node.consents.approve(principal, rid, expires=expires)
        elif action == "refuse":
            node.consents.refuse(principal, rid, reason=str(form.get("reason") or ""))
        else:
            raise ConsoleError(400, "Unknown action", "approve or refuse")
    except IntelpactError as exc:
        raise ConsoleError(400, "Not done", exc.diagnostics()) from None
    return RedirectResponse("/desk#consents", status_code=303)


def _report_objects(body: str) -> list[str]:
    try:
        data = json.loads(body)
    except ValueError:
        return []
    report = data.get("report", data) if isinstance(data, dict) else {}
    objects = report.get("objects", []) if isinstance(report, dict) else []
    return [str(o[0]) for o in objects if isinstance(o, list) and o]


def _checkpoint_size(note: str) -> int | None:
    lines = note.splitlines()
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None


def _requester(text: str) -> str:
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        return " ".join(str(data.get(k, "")) for k in ("nationality", "clearance", "id")
                        if data.get(k))
    return str(data)
