"""Find and read: the search page, an object's page, and its raw JSON.

Every object shown comes from ``Node.find`` (filtered by label in the query, audited
as a read, ``via`` naming the page). An object the viewer may not see gets exactly the
page of an object that does not exist. The filters offered come from the agreement
and the viewer's own record, never from the data: a suggestion cannot reveal what
the viewer may not see.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request

from ...crypto.signing import SignatureError, verify_object
from ...model import Label, banner
from ...services.access import WITHHELD_EXTENSION_ID
from ...services.audit import readable
from ...services.people import Principal
from ...store.base import (
    SHORT_TEXT,
    SHORT_TEXT_ROWS,
    AuditFilter,
    BadCursor,
    Query,
    StoredObject,
    fold_text,
    normalise_timestamp,
)
from . import banners
from .app import Console, ConsoleError, Page

PAGE_SIZE = 50
MAX_TEXT = 200
ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,249}--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
TYPES = ("attack-pattern", "campaign", "course-of-action", "grouping", "identity",
         "incident", "indicator", "infrastructure", "intrusion-set", "location", "malware",
         "malware-analysis", "marking-definition", "note", "observed-data", "opinion",
         "relationship", "report", "sighting", "threat-actor", "tool", "vulnerability")
NOT_FOUND = ConsoleError(404, "No such object", "no object with this id is available to "
                         "you; check the id, or search for it")


# -- search ----------------------------------------------------------------------------------
def search(console: Console, request: Request, principal: Principal,
           form: FormData | None) -> Page:
    node = console.node
    agreement = node.agreement
    party = principal.person.party
    params = request.query_params
    text = params.get("q", "").strip()
    if len(text) > MAX_TEXT:
        raise ConsoleError(400, "Search text too long", f"use at most {MAX_TEXT} characters")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ConsoleError(400, "Search text with a control character",
                           "search for words: no NUL, tab, line break or other control "
                           "character")
    kind = params.get("type", "")
    if kind and kind not in TYPES:
        raise ConsoleError(400, "Unknown type", "choose a type from the list")
    origin = params.get("originator", "")
    if origin and origin not in agreement.parties:
        raise ConsoleError(400, "Unknown originator", "choose a party of the agreement")
    level = params.get("level", "")
    covered = sorted(agreement.covered)
    if level and (not level.isdigit() or int(level) not in covered):
        raise ConsoleError(400, "Unknown classification", "choose one from the list")
    community = params.get("community", "")
    if community and community not in agreement.communities:
        raise ConsoleError(400, "Unknown community", "choose one from the list")
    since, until = _day(params.get("since", ""), "since"), _day(params.get("until", ""),
                                                                  "until", end=True)
    cursor = params.get("next") or None
    labels = node.store.labels()
    wanted: tuple[int, ...] = ()
    # Classification and community filter on the object's own marking (its base label,
    # which the viewer reads whole): a portion's marking must not make it match.
    if level or community:
        wanted = tuple(i for i, lb in labels.items()
                       if (not level or lb.rank == int(level))
                       and (not community or any(community in c for c in lb.communities)))
        wanted = wanted or (-1,)
    folded = fold_text(text)  # as the stores fold the text they search
    query = Query(text=folded or None, types=(kind,) if kind else (),
                  originators=(origin,) if origin else (), label_ids=wanted,
                  added_after=since, added_before=until, newest_first=True,
                  limit=PAGE_SIZE, cursor=cursor)
    cid = node.default_collection().collection_id
    try:
        page, visible = node.find(principal, cid, query, via="console-search")
    except BadCursor:
        raise ConsoleError(400, "This results link is out of date",
                           "start the search again from the search page") from None
    results, shown = [], []
    for row, body in visible:
        obj = json.loads(body)
        label = console.node.shown_labels(row, obj, labels).banner
        shown.append(label)
        results.append({"id": row.object_id, "type": row.object_type,
                        "name": str(obj.get("name", "")) or row.object_id,
                        "description": _brief(obj.get("description", "")),
                        "originator": row.originator, "added": row.date_added[:19] + "Z",
                        "banner": banners.for_label(label, agreement, party)})
    kept = {k: v for k, v in params.items() if k != "next" and v}
    more = urlencode({**kept, "next": page.next}) if page.more and page.next else ""
    levels = [(r, _words(agreement, party, r)) for r in covered]
    return Page("search.html", {
        "q": text, "kind": kind, "origin": origin, "level": level, "community": community,
        "since": params.get("since", ""), "until": params.get("until", ""),
        "types": TYPES, "parties": agreement.parties, "levels": levels,
        "communities": sorted(agreement.communities), "results": results, "more": more,
        "first": cursor is None,
        "short": f"{SHORT_TEXT_ROWS:,}" if 0 < len(folded) < SHORT_TEXT else ""}, labels=shown)


def _words(agreement: Any, party: str, rank: int) -> str:
    return banner(Label(agreement.id, rank, party, None), agreement, party)


def _day(value: str, what: str, end: bool = False) -> str | None:
    value = value.strip()
    if not value:
        return None
    if re.fullmatch(r"\d{4}-\d\d-\d\d", value):
        value += "T23:59:59.999999Z" if end else "T00:00:00Z"
    try:
        return normalise_timestamp(value)
    except ValueError:
        raise ConsoleError(400, f"'{what}' is not a date",
                           "write a date as YYYY-MM-DD") from None


def _brief(value: Any, size: int = 240) -> str:
    text = value if isinstance(value, str) else ""
    return text if len(text) <= size else text[:size - 1] + "…"


# -- an object ---------------------------------------------------------------------------------
def _versions(console: Console, principal: Principal, oid: str, via: str
              ) -> list[tuple[StoredObject, dict[str, Any]]]:
    if not ID.fullmatch(oid):
        raise NOT_FOUND
    found = [(row, json.loads(body))
             for row, body in console.node.versions(principal, oid, via=via)]
    if not found:
        raise NOT_FOUND
    found.sort(key=lambda item: item[0].version)
    return found


def _chosen(request: Request, found: Sequence[tuple[StoredObject, dict[str, Any]]]
            ) -> tuple[StoredObject, dict[str, Any]]:
    wanted = request.query_params.get("version")
    if not wanted:
        return found[-1]
    for row, obj in found:
        if row.version == wanted:
            return row, obj
    raise NOT_FOUND


def show(console: Console, request: Request, principal: Principal,
         form: FormData | None) -> Page:
    node = console.node
    agreement = node.agreement
    party = principal.person.party
    oid = request.path_params["oid"]
    found = _versions(console, principal, oid, "console-object")
    row, obj = _chosen(request, found)
    labels = console.node.shown_labels(row, obj)
    origin = row.originator
    portions = _portions(obj, labels.portions, agreement, party)
    withheld = obj.get("extensions", {}).get(WITHHELD_EXTENSION_ID, {}).get("withheld", [])
    refs = sorted(set(_refs(obj)))
    linked, more = _linked(console, principal, oid)
    names, named = _names(console, principal, sorted(set(refs) | {x["other"] for x in linked
                                                                 if x["other"]}))
    properties = [{"key": k, "value": _render(v), "marks": portions.get(k, []),
                   "ref": isinstance(v, str) and k.endswith("_ref") and ID.fullmatch(v) is not None}
                  for k, v in obj.items() if k not in ("extensions",)]
    return Page("object.html", {
        "obj": obj, "row": row, "title": str(obj.get("name", "")) or oid,
        "own_banner": banners.for_label(labels.banner, agreement, party),
        "marking_here": banner(labels.banner, agreement, party),
        "marking_origin": banner(labels.banner, agreement, origin)
        if origin in agreement.parties else "",
        "origin": origin, "provenance": _provenance(console, row, obj),
        "properties": properties, "withheld": withheld,
        "versions": [r.version for r, _ in found], "refs": [(r, names.get(r)) for r in refs],
        "linked": [dict(x, other_name=names.get(x["other"] or "")) for x in linked],
        "linked_more": more,
        "raw_link": f"/objects/{oid}/raw?" + urlencode({"version": row.version}),
    }, labels=[labels.banner, *named, *(x["label"] for x in linked)])


def raw(console: Console, request: Request, principal: Principal,
        form: FormData | None) -> Page:
    oid = request.path_params["oid"]
    found = _versions(console, principal, oid, "console-raw")
    row, obj = _chosen(request, found)
    label = console.node.shown_labels(row, obj).banner
    return Page("raw.html", {"oid": oid, "row": row,
                             "text": json.dumps(obj, ensure_ascii=False, indent=2)},
                labels=[label])


def _portions(obj: dict[str, Any], portions: dict[str, Label] | Any, agreement: Any,
              party: str) -> dict[str, list[banners.Banner]]:
    """Portion marks by top-level property (a selector names a property, or a part of
    one: ``external_references.[0].url`` is marked beside external_references)."""
    out: dict[str, list[banners.Banner]] = {}
    for selector, label in sorted(portions.items()):
        top = selector.split(".", 1)[0]
        out.setdefault(top, []).append(banners.portion(label, agreement, party))
    return out


def _refs(value: Any, key: str = "") -> Iterable[str]:
    """Every id the object refers to (``*_ref``, ``*_refs``), markings aside."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in ("object_marking_refs", "granular_markings", "extensions"):
                yield from _refs(v, k)
    elif isinstance(value, list) and key.endswith("_refs"):
        for item in value:
            if isinstance(item, str) and ID.fullmatch(item):
                yield item
    elif isinstance(value, str) and key.endswith("_ref") and ID.fullmatch(value):
        yield value


def _names(console: Console, principal: Principal, refs: Sequence[str]
           ) -> tuple[dict[str, str], list[Label]]:
    """The names of the referred objects the viewer may see (read, and audited), and
    their labels (a name shown raises the page's banner like the object would)."""
    if not refs:
        return {}, []
    names: dict[str, str] = {}
    shown: list[Label] = []
    labels = console.node.store.labels()
    cid = console.node.default_collection().collection_id
    for start in range(0, min(len(refs), 1000), 500):
        chunk = tuple(refs[start:start + 500])
        _, visible = console.node.find(principal, cid, Query(ids=chunk, limit=len(chunk)),
                                       via="console-object")
        for row, body in visible:
            obj = json.loads(body)
            names[row.object_id] = str(obj.get("name", "")) or row.object_type
            shown.append(console.node.shown_labels(row, obj, labels).banner)
    return names, shown


# Which properties of a relationship or a sighting link it to an object, and the words
# for each end (this object being at that end).
LINKS = {"relationship": (("source_ref", "target_ref"), ("target_ref", "source_ref")),
         "sighting": (("sighting_of_ref", ""), ("observed_data_refs", ""),
                      ("where_sighted_refs", ""))}
MAX_LINKED = 100


def _linked(console: Console, principal: Principal, oid: str
            ) -> tuple[list[dict[str, Any]], bool]:
    """The relationships whose source or target is ``oid`` and the sightings that refer
    to it, newest first, that the viewer may see: through ``Node.find`` (label filter in
    the query, each read audited), at most MAX_LINKED of each type; whether there are
    more. The store finds the rows that name the id; here the property is checked on
    the body as served (a withheld portion links nothing)."""
    node = console.node
    labels = node.store.labels()
    cid = node.default_collection().collection_id
    out: list[dict[str, Any]] = []
    more = False
    for kind, ends in LINKS.items():
        page, visible = node.find(principal, cid, Query(
            types=(kind,), refers_to=oid, newest_first=True, limit=MAX_LINKED),
            via="console-object")
        more = more or page.more
        for row, body in visible:
            obj = json.loads(body)
            for here, there in ends:
                value = obj.get(here)
                if value == oid or (isinstance(value, list) and oid in value):
                    other = obj.get(there) if there else None
                    out.append({
                        "id": row.object_id, "type": kind, "role": here,
                        "verb": str(obj.get("relationship_type", "")) if kind ==
                        "relationship" else "sighting",
                        "other": other if isinstance(other, str) and ID.fullmatch(other) else None,
                        "name": str(obj.get("name", "")),
                        "label": console.node.shown_labels(row, obj, labels).banner})
                    break
    return out, more


def _provenance(console: Console, row: StoredObject, obj: dict[str, Any]) -> dict[str, Any]:
    node = console.node
    here = row.originator == node.party
    senders: list[str] = []
    if not here:  # of this version only: a sender of another, perhaps one the viewer may
        # not read, is not theirs to know
        events = node.audit.find(AuditFilter(object_id=row.object_id, kinds=("receive",),
                                             limit=1000))
        senders = sorted({e.party for e in events if e.party and [row.object_id, row.version]
                          in (readable(e.body)[0] or {}).get("objects", [])})
    if WITHHELD_EXTENSION_ID in obj.get("extensions", {}):
        signature = ("not checked on this view: portions are withheld from you, and the "
                     "signature covers the whole object")
        verified = None
    else:
        try:
            kid = verify_object(obj, row.originator, node.federation.keys_of(row.originator))
            signature, verified = f"verified: signed by {row.originator} (key {kid})", True
        except SignatureError as exc:
            signature, verified = str(exc), False
    return {"here": here, "senders": senders, "signature": signature, "verified": verified}


def _render(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, indent=1)
    return value
