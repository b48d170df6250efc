"""The security officer's desk: consent requests in and out, the dissemination record
of our objects, recalls, compromise reports with their deadlines, and the audit log's
proofs and partners' checkpoints.

Each list shows only entries about objects the officer may read themselves (the
model's read decision on the object's stored label): the desk is a page like any
other, and names nothing its viewer may not see. Decisions go through the services
(``Consents.approve`` / ``refuse``), which check the role again and audit them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ...crypto.merkle import ProofError, leaf_hash, verify_inclusion
from ...errors import IntelpactError
from ...model import Label
from ...services.audit import (
    KINDS,
    AuditError,
    number_gaps,
    operator,
    readable,
    why_not_kept,
)
from ...services.node import Node
from ...services.people import Principal, refused_for_node
from ...store.base import AuditFilter, AuditRecord, KeptEvent, stored_version, utc_now
from .app import Console, ConsoleError, Page

MAX_ROWS = 200  # a page of each desk list
MAX_OFFSET = 1_000_000
EVENTS = 50  # a page of audit events
EVENT_OBJECTS = 10  # objects named per event on the page (the rest counted)
SCAN_PAGES = 20  # filtered on an object: store pages read for one page of the desk at most
PSEUDONYM = re.compile(r"p-[0-9a-f]{16}")
STIX_ID = re.compile(r"[a-z0-9][a-z0-9-]*--[0-9a-fA-F-]{36}")
T = TypeVar("T")


class _Readable:
    """Which versions of which objects the officer could be served, as TAXII and the
    object page decide it (``Access.seen``: the base label, and every portion the
    object cannot lose), once per id on the rows this node holds (bookkeeping: nothing
    of them is shown); with the label of what they would be served of each, for the
    page's banner. A version they may not be served is, for them, one that does not
    exist: nothing names it, nor says its level."""

    def __init__(self, console: Console, principal: Principal, ids: Iterable[str]) -> None:
        node = console.node
        labels = node.store.labels()
        self.versions: dict[str, dict[str, Label]] = {}
        for row in node.store.held(sorted(set(ids))):
            seen = node.access.seen(principal.person, row, labels)
            if seen is not None:
                held = self.versions.setdefault(row.object_id, {})
                known = held.get(row.version)  # the same version in two collections
                held[row.version] = seen if known is None else known.join(seen)
        self.allowed = set(self.versions)
        self.shown: list[Label] = []

    def __call__(self, object_id: str, versions: Iterable[object] = ()) -> bool:
        """Whether the page may name ``object_id``: each of ``versions`` (as an event or a
        record names them), or, naming none, some version of it."""
        held = self.versions.get(object_id)
        if held is None:
            return False
        named = [stored_version(v) for v in versions if v]
        if any(v not in held for v in named):
            return False
        self.shown.extend([held[v] for v in named] if named else held.values())
        return True


def _offset(request: Request, key: str) -> int:
    value = request.query_params.get(key, "0")
    if not value.isdigit() or int(value) > MAX_OFFSET or int(value) % MAX_ROWS:
        raise ConsoleError(400, "This desk link is out of date", "open the desk again")
    return int(value)


def _bounded(request: Request, key: str, fetch: Callable[[int, int], list[T]]
             ) -> tuple[list[T], dict[str, Any]]:
    """One page of a desk list, newest first (the store's query has the LIMIT), and the
    links to newer and older pages (``?key=offset``)."""
    offset = _offset(request, key)
    rows = fetch(MAX_ROWS + 1, offset)
    kept = {k: v for k, v in request.query_params.items() if k != key}

    def link(at: int) -> str:
        return "/desk?" + urlencode({**kept, key: at}) + "#" + key

    return rows[:MAX_ROWS], {
        "older": link(offset + MAX_ROWS) if len(rows) > MAX_ROWS else "",
        "newer": link(max(0, offset - MAX_ROWS)) if offset else "", "from": offset + 1}


def show(console: Console, request: Request, principal: Principal,
         form: FormData | None) -> Page:
    node = console.node
    store = node.store
    verdict, kept = None, 0
    if form is not None and form.get("action") == "verify":  # as `intelpact audit verify`
        verdict = node.audit.verify()
        kept, problems = node.check_kept()
        verdict = dataclasses.replace(verdict, problems=(*verdict.problems, *problems))
    consents, consents_page = _bounded(request, "consents", store.latest_consents)
    dissem, dissem_page = _bounded(request, "dissem", store.latest_disseminations)
    recalls, recalls_page = _bounded(request, "recalls", store.latest_recalls)
    reports, reports_page = _bounded(request, "reports", store.latest_compromise_reports)
    report_objects = {r.report_id: _report_objects(r.body) for r in reports}
    ids = [c.object_id for c in consents] + [d.object_id for d in dissem] + \
        [r.object_id for r in recalls] + [o for objs in report_objects.values() for o in objs]
    events, events_page, audit_filters = _events(console, request, principal)
    object_filter = audit_filters["object"]
    may = _Readable(console, principal, ids + [str(o[0]) for _, data in events
                                               for o in _named(data)]
                    + ([object_filter] if object_filter else []))
    if object_filter and object_filter not in may.allowed:
        # an object the officer may not read: as an id nothing names (no oracle)
        events, events_page = [], {**events_page, "older": "", "newer": ""}
    now = utc_now()
    incoming = [c for c in consents if c.direction == "in" and may(c.object_id, c.versions)]
    outgoing = [c for c in consents if c.direction == "out" and may(c.object_id, c.versions)]
    records = [d for d in dissem if may(d.object_id, (d.version,))]
    # passed on by a holder with our consent: the holder's own object holding our
    # information (docs/controls.md) is the holder's, and the record says so
    whose = {oid: origin for oid, origin in store.originators(
        sorted({d.object_id for d in records if d.via})).items() if origin != node.party}
    recalled = [r for r in recalls if may(r.object_id)]
    shown_reports = []
    for r in reports:
        objs = report_objects[r.report_id]
        if objs and all(may(o) for o in objs):
            flag = node.compromise.flag(r, now)
            shown_reports.append({"r": r, "status": node.compromise.status(r), "flag": flag,
                                  "objects": objs})
    resolved = store.alert_resolutions()
    latest = node.audit.latest()
    shown_events = _shown_events(console, events, may, latest.note if latest else None)
    partners = []
    for peer in store.peers():
        last = store.largest_partner_checkpoint(peer.party)
        watch = store.partner_audit_watch(peer.party)
        partners.append({"party": peer.party, "size": last[0] if last else None,
                         "received": last[3] if last else None,
                         "count": store.count_partner_checkpoints(peer.party),
                         "watch": watch})
    return Page("desk.html", {
        "incoming": incoming, "outgoing": outgoing, "records": records, "whose": whose,
        "recalled": recalled, "reports": shown_reports, "verdict": verdict, "kept": kept,
        "pages": {"consents": consents_page, "dissem": dissem_page,
                  "recalls": recalls_page, "reports": reports_page},
        "per_page": MAX_ROWS, "audit_size": store.audit_size(),
        "latest": _checkpoint_size(latest.note) if latest else None,
        "latest_signed": latest.signed if latest else None, "partners": partners,
        "alerts": [a for a in store.alerts() if a[0] not in resolved][-20:],
        "resolved": len(resolved), "events": shown_events,
        "events_page": events_page, "audit_filters": audit_filters,
        "kinds": sorted(KINDS), "events_per_page": EVENTS,
        "requester": _requester}, labels=may.shown)


def _events(console: Console, request: Request, principal: Principal
            ) -> tuple[list[tuple[AuditRecord, dict[str, Any]]], dict[str, Any],
                       dict[str, Any]]:
    """One page of the audit log, newest first (``latest_audit``: the LIMIT is in the
    store's query), filtered as ``intelpact audit show`` filters: kinds, a person (name
    of a person of this node, or a pseudonym), a party, an object id. Pages are keyed
    by leaf index (``audit_before`` / ``audit_after``), so new events do not shift
    them. Filtered on an object, only the events about versions of it the officer could
    be served: one about a version they may not be served, listed as "withheld object"
    under that id, would tell them it exists (the page reads on to stay full)."""
    node = console.node
    params = request.query_params
    kinds = tuple(k for k in params.getlist("kind") if k)
    if any(k not in KINDS for k in kinds):
        raise ConsoleError(400, "Unknown kind of event", "choose one from the list")
    person = (params.get("person") or "").strip()
    party = (params.get("party") or "").strip().upper()
    object_id = (params.get("object") or "").strip()
    before, after = _index(params.get("audit_before")), _index(params.get("audit_after"))
    if before is not None and after is not None:
        raise ConsoleError(400, "This desk link is out of date", "open the desk again")
    pseudonyms: tuple[str, ...] = ()
    if person:
        pseudonyms = (person,) if PSEUDONYM.fullmatch(person) else \
            node.audit.pseudonyms.every(person, node.agreement.parties)
    where = AuditFilter(object_id=object_id or None, persons=pseudonyms,
                        party=party or None, kinds=kinds, limit=EVENTS + 1)
    about = _About(console, principal, object_id) if object_id else None
    if about is not None and object_id not in about.may.allowed:
        rows: list[AuditRecord] = []  # an object they may not read: nothing is read
        more_newer = more_older = False
        reached = None
    elif after is not None:  # the page just newer than ``after``, shown newest first
        rows, reached = _kept(lambda at: node.audit.find(dataclasses.replace(
            where, after=after if at is None else at)), after, about, EVENTS + 1)
        more_newer, more_older = len(rows) > EVENTS or reached is not None, True
        rows = list(reversed(rows[:EVENTS]))
    else:
        rows, reached = _kept(lambda at: node.audit.newest(where, at), before, about,
                              EVENTS + 1)
        more_newer, more_older = before is not None, len(rows) > EVENTS or reached is not None
        rows = rows[:EVENTS]
    kept = [(k, v) for k, v in params.multi_items() if k not in ("audit_before", "audit_after")]

    def link(key: str, at: int) -> str:  # at < 0: the newest page
        return "/desk?" + urlencode([*kept, *([(key, str(at))] if at >= 0 else [])]) + \
            "#audit"

    top = rows[0].index if rows else (before - 1 if before is not None else -1)
    bottom = rows[-1].index if rows else (after + 1 if after is not None else 0)
    if reached is not None:  # the scan stopped at ``reached``: the next page goes on from it
        top, bottom = (reached, bottom) if after is not None else (top, reached)
    page = {"newer": link("audit_after", top) if more_newer else "",
            "older": link("audit_before", bottom) if more_older and bottom > 0 else "",
            "searched": SCAN_PAGES * (EVENTS + 1) if reached is not None else 0}
    filters = {"kinds": kinds, "person": person, "party": party, "object": object_id,
               "any": bool(kinds or person or party or object_id)}
    return [(r, _body(r)) for r in rows], page, filters


class _About:
    """Whether an event about the desk's filter object is about versions of it the
    officer could be served (each it names, or some, naming none)."""

    def __init__(self, console: Console, principal: Principal, object_id: str) -> None:
        self.object_id = object_id
        self.may = _Readable(console, principal, [object_id])

    def __call__(self, record: AuditRecord) -> bool:
        objects = _body(record).get("objects")
        named = [o for o in objects if isinstance(o, list) and o and o[0] == self.object_id] \
            if isinstance(objects, list) else []
        return all(self.may(self.object_id, o[1:2]) for o in named)


def _kept(fetch: Callable[[int | None], list[AuditRecord]], at: int | None,
          keep: Callable[[AuditRecord], bool] | None, want: int
          ) -> tuple[list[AuditRecord], int | None]:
    """Up to ``want`` events ``keep`` takes, read page after page: ``fetch(at)`` gives
    the store's page from leaf ``at`` on (in the order it reads: older, or newer), the
    next one from the last event of the page before; at most SCAN_PAGES pages, so a
    page of the desk reads a bounded number of events. Returns the events, and the last
    leaf read if the scan stopped there with more to read (the page links on from it)."""
    rows = fetch(at)
    if keep is None:
        return rows, None
    kept: list[AuditRecord] = []
    for page in range(1, SCAN_PAGES + 1):
        kept += [r for r in rows if keep(r)]
        if len(kept) >= want or len(rows) < want:
            break
        if page == SCAN_PAGES:
            return kept, rows[-1].index
        rows = fetch(rows[-1].index)
    return kept[:want], None


def _index(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 15:
        raise ConsoleError(400, "This desk link is out of date", "open the desk again")
    return int(value)


def _body(record: AuditRecord) -> dict[str, Any]:
    """The event as the page reads it: nothing of one altered into what no reader takes
    (``readable``: a body nested too deep raised RecursionError, a 500 on every visit);
    its row's time and kind are shown, and its proof says whether it still verifies."""
    return readable(record.body)[0] or {}


def _named(data: dict[str, Any]) -> list[list[Any]]:
    """The first objects an event names (those the page may show)."""
    objects = data.get("objects", [])
    if not isinstance(objects, list):
        return []
    return [o for o in objects if isinstance(o, list) and o][:EVENT_OBJECTS]


def _shown_events(console: Console, events: list[tuple[AuditRecord, dict[str, Any]]],
                  may: _Readable, note: str | None) -> list[dict[str, Any]]:
    """What the page says of each event: time, kind, who (by name for people of this
    node and for the operator account serving it, as `audit show` names the one running
    it; else the pseudonym stored), party, the objects named (an id only if the
    officer may read the object, else "withheld object"), the reason (only when every
    object named is readable: a denial's reason can tell a level), and whether the
    latest signed checkpoint covers it, with its inclusion proof checked."""
    node = console.node
    names = node.audit.pseudonyms.names([p.name for p in node.store.people()],
                                        node.agreement.parties, operator=operator())
    size, root, problem = -1, b"", ""
    if note is not None:
        try:
            size, root = node.audit.verify_checkpoint(note)
        except AuditError as exc:
            problem = exc.message
    covered = [r for r, _ in events if r.index < size]
    proofs = dict(zip([r.index for r in covered],
                      node.audit.tree.inclusions([r.index for r in covered], size)
                      if covered else [], strict=True))
    out = []
    for record, data in events:
        if record.index in proofs:
            try:
                verify_inclusion(record.index, size, leaf_hash(record.body.encode("utf-8")),
                                 proofs[record.index], root)
                proof = ("proven", f"proven by checkpoint {size}")
            except ProofError as exc:
                proof = ("failed", f"does NOT verify against checkpoint {size}: {exc}")
        elif problem:
            proof = ("failed", f"the latest checkpoint does not verify: {problem}")
        else:
            proof = ("pending", "not yet in a signed checkpoint")
        out.append({"index": record.index, "at": record.at, "kind": record.kind,
                    **_described(data, may, names), "proof": proof})
    return out


def _described(data: dict[str, Any], may: _Readable, names: dict[str, str]
               ) -> dict[str, Any]:
    """Who, the party, the objects named (an id only if the officer may read the object,
    else "withheld object") and the reason (only when every object named is readable: a
    denial's reason can tell a level) of an event, as the desk shows it."""
    objects: list[dict[str, str | None]] = []
    readable = True
    for pair in _named(data):
        oid = str(pair[0])
        if may(oid, pair[1:2]):
            objects.append({"id": oid, "version": str(pair[1]) if len(pair) > 1 else ""})
        else:
            readable = False
            objects.append({"id": None, "version": ""})
    all_objects = data.get("objects")
    more = len(all_objects) - len(objects) if isinstance(all_objects, list) else 0
    if more > 0:
        readable = False  # the reason may be about one not listed
    reason = data.get("reason")
    return {"who": _who(data, names), "party": data.get("party") or "",
            "originator": data.get("originator") or "", "objects": objects,
            "more": max(more, 0),
            "reason": (_redacted(str(reason), may) if readable else None) if reason else ""}


def _redacted(text: str, may: _Readable) -> str:
    """``text`` with the id of any object the officer may not read replaced."""
    return STIX_ID.sub(lambda m: m.group(0) if may(m.group(0)) else "[withheld object]",
                       text)


def _who(data: dict[str, Any], names: dict[str, str]) -> str:
    person = data.get("person")
    if isinstance(person, dict):
        pid = str(person.get("id", ""))
        who = names.get(pid, pid)
        if person.get("nationality"):
            who += f" ({person.get('nationality')}, {person.get('clearance')})"
        return who
    if data.get("subject"):
        subject = str(data["subject"])
        return "about " + names.get(subject, subject)
    actor = str(data.get("actor") or "")
    return names.get(actor, actor)


def consent(console: Console, request: Request, principal: Principal,
            form: FormData | None) -> Response:
    """Approve (with an expiry: days or a last day) or refuse (with a reason) an incoming
    consent request, through ``Consents.approve`` / ``refuse`` as ``intelpact consent``
    does; the signed notice is queued for the holder and the courier delivers it."""
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
            node.consents.approve(principal, rid, expires=_expiry(form))
        elif action == "refuse":
            node.consents.refuse(principal, rid, reason=str(form.get("reason") or ""))
        else:
            raise ConsoleError(400, "Unknown action", "approve or refuse")
    except IntelpactError as exc:
        raise ConsoleError(400, "Not done", exc.diagnostics()) from None
    return RedirectResponse("/desk#consents", status_code=303)


def resolve(console: Console, request: Request, principal: Principal,
            form: FormData | None) -> Response:
    """Resolve an open alert with a note, as this officer, through
    ``AuditLog.resolve_alert`` as ``intelpact audit resolve`` does."""
    if form is None:
        raise ConsoleError(405, "Method not allowed", "resolve with the desk's button")
    node = console.node
    if why := refused_for_node(node.policy, node.audit, principal.person, "resolve alerts",
                               alert_id=request.path_params["aid"]):
        raise ConsoleError(403, "Not allowed", why)
    try:
        console.node.audit.resolve_alert(int(request.path_params["aid"]),
                                         str(form.get("note") or ""),
                                         person=principal.person, actor=principal.name)
    except IntelpactError as exc:
        raise ConsoleError(400, "Not done", exc.diagnostics()) from None
    return RedirectResponse("/desk#alerts", status_code=303)


def partner(console: Console, request: Request, principal: Principal,
            form: FormData | None) -> Page:
    """How a partner handled our objects, from the evidence kept here, as `intelpact
    audit partner DIR PARTY --kept` shows it: the partner's events about our objects
    its audit watch read, oldest first, 50 to a page (keyed by leaf: ``after``),
    filtered by kind and object (found by what each is filed under); each shown checked
    again against the partner's signed checkpoint it was proven in
    (AuditLog.verify_kept). Whether every numbered event the watch read is kept is said
    for the whole log, and, unfiltered, which numbers are missing among those a page
    shows."""
    node = console.node
    party = request.path_params["party"].upper()
    if party not in {p.party for p in node.store.peers()}:
        raise ConsoleError(404, "No such partner", "the desk lists the partners pinned")
    params = request.query_params
    kinds = tuple(k for k in params.getlist("kind") if k)
    if any(k not in KINDS for k in kinds):
        raise ConsoleError(400, "Unknown kind of event", "choose one from the list")
    asked = (params.get("object") or "").strip()
    start = _index(params.get("after"))
    object_id = asked
    if asked and asked not in _Readable(console, principal, [asked]).allowed:
        object_id = "-"  # an object the officer may not read: as an id nothing names
    found, last, gaps, problems = _kept_page(node, party, start, kinds, object_id)
    watch = node.store.partner_audit_watch(party)
    missing, alerted = (0, 0) if watch is None else \
        node.audit.not_kept(party, watch[1], watch[0] + 1)
    may = _Readable(console, principal, [str(o[0]) for _, data in found
                                         for o in _named(data)])
    names = node.audit.pseudonyms.names([p.name for p in node.store.people()],
                                        node.agreement.parties)
    events = [{"index": kept.index, "at": data.get("at", ""), "kind": data.get("kind", ""),
               "seq": kept.seq, "size": kept.size, **_described(data, may, names)}
              for kept, data in found]
    later = node.store.partner_events(party, after=last, limit=1, kinds=kinds,
                                      objects=(object_id,) if object_id else ())
    kept_params = [(k, v) for k, v in params.multi_items() if k != "after"]
    return Page("partner.html", {
        "party": party, "events": events, "watch": watch,
        "gaps": [(first, end, why_not_kept(party, end - first, n)) for (first, end), n in
                 zip(gaps, node.audit.alerted_left_out(party, gaps), strict=True)],
        "missing": missing, "why": why_not_kept(party, missing, alerted) if missing else "",
        "problems": problems, "kinds": sorted(KINDS),
        "filters": {"kinds": kinds, "object": asked, "any": bool(kinds or asked)},
        "later": f"/desk/partner/{party}?" + urlencode([*kept_params, ("after", str(last))])
        if later and not problems else "",
        "first": start is not None}, labels=may.shown)


def _kept_page(node: Node, party: str, start: int | None, kinds: tuple[str, ...],
               object_id: str) -> tuple[list[tuple[KeptEvent, dict[str, Any]]], int,
                                        list[tuple[int, int]], list[str]]:
    """One page of ``party``'s events kept here after leaf ``start`` naming ``object_id``
    and of one of ``kinds``, if given (found by what each is filed under): the events,
    checked again; the last leaf shown; unfiltered, the numbers missing among them
    ([from, to)); and what does not verify."""
    store = node.store
    objects = (object_id,) if object_id else ()
    shown = store.partner_events(party, after=-1 if start is None else start,
                                 objects=objects, kinds=kinds, limit=EVENTS)
    last = shown[-1].index if shown else -1 if start is None else start
    gaps: list[tuple[int, int]] = []
    if not objects and not kinds:
        expect = 0 if start is None else None  # the number the next must have
        if start is not None:  # the number after the one at ``start``
            at = store.partner_events(party, after=start - 1, limit=1)
            if at and at[0].index == start and at[0].seq is not None:
                expect = at[0].seq + 1
        gaps = number_gaps(shown, expect)[0]
    checked, problems = node.audit.verify_kept(party, node.federation.log_keys(party), shown)
    if problems:
        return [], last, gaps, problems
    return list(zip(shown, checked, strict=True)), last, gaps, []


def _expiry(form: FormData) -> dt.datetime | None:
    """The consent's expiry from the approve form: a length in days, or a last day
    (valid to its end, UTC); neither: the service's default (the expiry asked for,
    else 30 days). The service checks the bounds again (at most a year)."""
    days = str(form.get("days") or "").strip()
    until = str(form.get("until") or "").strip()
    if days and until:
        raise ConsoleError(400, "Scope refused", "give either a length in days or a last "
                           "day, not both")
    if days:
        if not days.isdigit() or not 1 <= int(days) <= 365:
            raise ConsoleError(400, "Scope refused", "give the consent's length as 1 to 365 "
                               "days, or leave it empty for the default")
        return utc_now() + dt.timedelta(days=int(days))
    if until:
        try:
            day = dt.date.fromisoformat(until) if len(until) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise ConsoleError(400, "Scope refused", "write the last day as YYYY-MM-DD")
        return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.UTC)
    return None


def _report_objects(body: str) -> list[str]:
    """The objects a report names, as its row keeps them; none (the report is not
    listed) when the row was altered into what no reader takes: a body nested too deep
    raised RecursionError, and "objects" that are not a list TypeError, a 500 on every
    visit."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return []
    report = data.get("report", data) if isinstance(data, dict) else {}
    objects = report.get("objects", []) if isinstance(report, dict) else []
    if not isinstance(objects, list):
        return []
    return [str(o[0]) for o in objects if isinstance(o, list) and o]


def _checkpoint_size(note: str) -> int | None:
    lines = note.splitlines()
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None


REQUESTER_SHOWN = 200  # characters of a requester's text shown in the desk's cell


def _requester(text: str) -> str:
    """Who asked for a consent, as its row keeps them; the row's text as it is when it
    cannot be read (a body nested too deep raised RecursionError: a 500 on every visit).
    At most REQUESTER_SHOWN characters, then how many more: a row altered by hand must
    not fill the page."""
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError):
        shown = text
    else:
        shown = " ".join(str(data.get(k, "")) for k in ("nationality", "clearance", "id")
                         if data.get(k)) if isinstance(data, dict) else str(data)
    if len(shown) <= REQUESTER_SHOWN:
        return shown
    return f"{shown[:REQUESTER_SHOWN]}… ({len(shown) - REQUESTER_SHOWN:,} more characters)"
