"""Publish: a report, note or indicator written in a form, or a STIX bundle uploaded,
under a national marking chosen from what the agreement and the publisher's clearance
allow. Publishing goes through ``Publisher.publish`` exactly as TAXII POST does
(validation, the publish decision, signing, release, audit)."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...errors import IntelpactError
from ...jsonio import JsonError, parse_json
from ...model import Label, MarkingError, banner, national_marking, parse_marking
from ...services.people import Principal
from ...services.publish import MarkingRequest, definition_label
from ...store.base import timestamp, utc_now
from . import banners
from .app import Console, ConsoleError, Page

KINDS = ("report", "note", "indicator", "bundle")
MAX_TEXT = 100_000


def choices(console: Console, principal: Principal) -> dict[str, Any]:
    """What the marking picker offers: levels the publisher may publish at (their own
    party's words, up to their clearance, covered by the agreement), the other parties
    for REL TO, and the publisher's own caveats and communities."""
    agreement = console.node.agreement
    person = principal.person
    levels = []
    for rank in sorted(agreement.covered):
        cell = agreement.rows[rank].cells.get(person.party)
        if cell is None or cell.level is None or cell.treat_as:
            continue  # no national level of the publisher's own at this row
        label = Label(agreement.id, rank, person.party, frozenset({person.party}))
        if console.node.policy.check_publish(person, label).allowed:
            levels.append(cell.level)
    return {"levels": levels,
            "parties": [p for p in agreement.parties if p != person.party],
            "caveats": sorted(c for c in person.caveats if c in agreement.caveats),
            "communities": sorted(c for c in person.communities if c in agreement.communities)}


def _marking(form_or_params: Any, offered: dict[str, Any]) -> MarkingRequest:
    level = str(form_or_params.get("level") or "")
    if level not in offered["levels"]:
        raise ConsoleError(400, "Choose a classification", "pick one of the levels offered")
    rel = tuple(p for p in form_or_params.getlist("rel") if p in offered["parties"])
    caveats = tuple(c for c in form_or_params.getlist("caveat") if c in offered["caveats"])
    communities = tuple(c for c in form_or_params.getlist("community")
                        if c in offered["communities"])
    if len(rel) != len(form_or_params.getlist("rel")) or \
            len(caveats) != len(form_or_params.getlist("caveat")) or \
            len(communities) != len(form_or_params.getlist("community")):
        raise ConsoleError(400, "That marking is not offered to you",
                           "choose only from the parties, caveats and communities offered")
    return MarkingRequest(level, rel, caveats, communities)


def _label(console: Console, principal: Principal, marking: MarkingRequest) -> Label:
    agreement = console.node.agreement
    try:
        definition = national_marking(agreement, principal.person.party,
                                      marking.classification, rel_to=marking.rel_to,
                                      caveats=marking.caveats, communities=marking.communities)
        part = parse_marking(agreement, definition)
    except MarkingError as exc:
        raise ConsoleError(400, "That marking cannot be made", exc.diagnostics()) from None
    return definition_label(agreement, part, principal.person.party)


def preview(console: Console, request: Request, principal: Principal,
            form: FormData | None) -> Response:
    """The banner a marking gives, as JSON, for the form's live preview."""
    offered = choices(console, principal)
    try:
        label = _label(console, principal, _marking(request.query_params, offered))
    except ConsoleError as exc:
        return JSONResponse({"error": f"{exc.title}: {exc.detail}"})
    agreement = console.node.agreement
    shown = banners.for_label(label, agreement, principal.person.party)
    decision = console.node.policy.check_publish(principal.person, label)
    return JSONResponse({"banner": shown.text, "background": shown.background,
                         "foreground": shown.foreground, "band": shown.band,
                         "rel_to": banner(label, agreement, principal.person.party)
                         .rpartition("REL TO ")[2] if label.rel_to is not None else "",
                         "allowed": decision.allowed, "reason": decision.reason})


def form(console: Console, request: Request, principal: Principal,
         data: FormData | None) -> Page:
    offered = choices(console, principal)
    context: dict[str, Any] = {"offered": offered, "kinds": KINDS, "status": None,
                               "values": {"kind": "report", "level": offered["levels"][0]
                                          if offered["levels"] else "", "rel": [],
                                          "caveat": [], "community": [], "name": "",
                                          "description": "", "pattern": "", "refs": ""}}
    labels: list[Label] = []
    if data is not None:
        values: dict[str, Any] = {
            k: data.get(k) if isinstance(data.get(k), str) else "" for k in
            ("kind", "level", "name", "description", "pattern", "refs")}
        values.update({k: [v for v in data.getlist(k) if isinstance(v, str)]
                       for k in ("rel", "caveat", "community")})
        context["values"] = values
        marking = _marking(data, offered)
        label = _label(console, principal, marking)
        labels.append(label)
        objects = _objects(data, values)
        cid = console.node.default_collection().collection_id
        try:
            record = console.node.publisher.publish(principal.person, cid, objects,
                                                    marking=marking)
        except IntelpactError as exc:
            raise ConsoleError(400, "Not published", exc.diagnostics()) from None
        status = record.body
        given = {o.get("id") for o in objects if isinstance(o, dict)}
        context["status"] = {
            "accepted": [s["id"] for s in status.get("successes", []) if s["id"] in given],
            "failures": status.get("failures", [])[:50],
            "failure_count": status.get("failure_count", 0), "id": status.get("id")}
    if context["values"]["level"] in offered["levels"]:
        with contextlib.suppress(ConsoleError):
            labels.append(_label(console, principal, _marking_of(context["values"])))
    preview_label = labels[-1] if labels else None
    context["preview"] = banners.for_label(preview_label, console.node.agreement,
                                           principal.person.party) if preview_label else None
    # The page is marked by what was published on it, not by the marking being chosen.
    return Page("publish.html", context, labels=labels[:1] if data is not None else [])


def _marking_of(values: dict[str, Any]) -> MarkingRequest:
    return MarkingRequest(str(values["level"]), tuple(values["rel"]), tuple(values["caveat"]),
                          tuple(values["community"]))


def _objects(data: FormData, values: dict[str, Any]) -> list[Any]:
    kind = values["kind"]
    if kind not in KINDS:
        raise ConsoleError(400, "Choose what to publish", f"one of {', '.join(KINDS)}")
    if kind == "bundle":
        upload = data.get("bundle")
        if not isinstance(upload, UploadFile):
            raise ConsoleError(400, "No file", "choose a STIX bundle file to upload")
        raw = upload.file.read()
        try:
            parsed = parse_json(raw)
        except JsonError as exc:
            raise ConsoleError(400, "The file is not valid JSON", exc.message) from None
        if isinstance(parsed, dict) and isinstance(parsed.get("objects"), list):
            return list(parsed["objects"])
        if isinstance(parsed, list):
            return parsed
        if isinstance(parsed, dict) and "type" in parsed:
            return [parsed]
        raise ConsoleError(400, "Not a STIX bundle", "upload a bundle, a TAXII envelope, "
                           "an object or a list of objects")
    name, description = values["name"].strip(), values["description"].strip()
    if len(name) > 1000 or len(description) > MAX_TEXT:
        raise ConsoleError(400, "Too long", f"a name of at most 1000 characters and a "
                           f"description of at most {MAX_TEXT}")
    now = timestamp(utc_now())[:23] + "Z"
    obj: dict[str, Any] = {"type": kind, "spec_version": "2.1",
                           "id": f"{kind}--{uuid.uuid4()}", "created": now, "modified": now}
    refs = [r.strip() for r in values["refs"].split() if r.strip()]
    if kind == "report":
        if not name:
            raise ConsoleError(400, "A report needs a name", "write its title")
        obj.update({"name": name, "published": now, "report_types": ["threat-report"],
                    "object_refs": refs})
        if description:
            obj["description"] = description
    elif kind == "note":
        if not description:
            raise ConsoleError(400, "A note needs text", "write it in the description")
        obj.update({"content": description, "object_refs": refs})
        if name:
            obj["abstract"] = name
    else:
        obj.update({"name": name or "indicator", "pattern": values["pattern"].strip(),
                    "pattern_type": "stix", "valid_from": now,
                    "indicator_types": ["malicious-activity"]})
        if description:
            obj["description"] = description
    if kind in ("report", "note") and not refs:
        raise ConsoleError(400, f"A {kind} must refer to objects",
                           "list the ids it is about, one per line (STIX requires object_refs)")
    return [json.loads(json.dumps(obj))]
