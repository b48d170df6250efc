"""OpenAPI 3.1 documents of the node's two HTTP APIs: TAXII 2.1 and federation.

Each document says what the server does, no more: every path and method, the
query parameters each handler accepts with the limits it enforces (taken from
the same constants the handlers use), the request bodies, every status an
endpoint can answer with, and the shape of each answer. The TAXII document is
served at ``/taxii2/openapi.json`` to any authenticated person, the federation
document at ``/federation/openapi.json`` on the mutual-TLS listener
(docs/node.md, docs/federation.md). ``tests/interfaces/test_fuzz.py`` fuzzes a
live node against both with schemathesis.
"""

from __future__ import annotations

from typing import Any

from ..services.federation import MAX_ENVELOPE
from ..store.base import MAX_INTEGER
from . import federation as fed
from . import taxii

OPENAPI_VERSION = "3.1.0"
TAXII_DOCUMENT_PATH = "/taxii2/openapi.json"
FEDERATION_DOCUMENT_PATH = f"{fed.PREFIX}/openapi.json"
_TITLES = {200: "OK", 202: "Accepted", 400: "Bad request", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 406: "Not Acceptable",
           409: "Conflict: the state changed meanwhile; retry",
           413: "Payload Too Large", 415: "Unsupported Media Type",
           429: "Too Many Requests: retry after Retry-After seconds (TAXII: failed logins "
                "from this name or address; federation: the caller's requests past "
                "partner_burst at once and partner_rate a second, error_code "
                f"{fed.RATE_LIMITED!r})",
           503: "Service Unavailable: the node's database server cannot be reached "
                f"(error_code {taxii.STORE_UNAVAILABLE!r}), or its audit log could not "
                "record the act, which was not done; send again later",
           507: "Insufficient Storage: the node's disk is full (error_code "
                f"{taxii.STORE_FULL!r}); nothing was changed"}
_TIMESTAMP = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
              r"(Z|z|\+00:00)$")
_SERVED_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"
_DIGITS = "^[0-9]+$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], properties: dict[str, Any], *,
         closed: bool = True) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties,
            "additionalProperties": not closed}


def _string_list(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def _error_schema() -> dict[str, Any]:
    """TAXII's error message, used by both APIs for every error."""
    return _obj(["title", "http_status"], {
        "title": {"type": "string", "minLength": 1},
        "http_status": {"type": "string", "pattern": "^[0-9]{3}$"},
        "description": {"type": "string"},
        "error_code": {"type": "string", "description": "what a program may act on"}})


def _responses(ok: dict[str, Any], errors: tuple[int, ...], media: str) -> dict[str, Any]:
    out = dict(ok)
    for code in errors:
        headers: dict[str, Any] = {}
        if code == 401:
            headers["WWW-Authenticate"] = {"required": True, "schema": {"type": "string"}}
        if code == 429:
            headers["Retry-After"] = {"required": True,
                                      "schema": {"type": "string", "pattern": _DIGITS}}
        response: dict[str, Any] = {"description": _TITLES[code],
                                    "content": {media: {"schema": _ref("error")}}}
        if headers:
            response["headers"] = headers
        out[str(code)] = response
    return out


# -- TAXII 2.1 ---------------------------------------------------------------------------

def _taxii_parameters() -> dict[str, Any]:
    def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        p: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema,
                             "description": description}
        if schema.get("type") == "array":
            p.update(style="form", explode=False)
        return p

    def listed(item: dict[str, Any]) -> dict[str, Any]:
        return {"type": "array", "items": item, "minItems": 1,
                "maxItems": taxii.MAX_FILTER_VALUES}

    version = {"anyOf": [{"enum": ["first", "last", "all"]},
                         {"type": "string", "pattern": _TIMESTAMP}]}
    return {
        "added_after": query("added_after", {"type": "string", "pattern": _TIMESTAMP},
                             "only what was added after this time (UTC)"),
        "limit": query("limit", {"type": "integer", "minimum": 1,
                                 "maximum": taxii.MAX_LIMIT},
                       f"page size (default {taxii.DEFAULT_LIMIT})"),
        "next": query("next", {"type": "string", "maxLength": 200},
                      "the 'next' value of the previous page of the same query"),
        "match_id": query("match[id]", listed({"type": "string",
                                               "pattern": taxii._ID.pattern}),
                          "object ids, comma-separated"),
        "match_type": query("match[type]", listed({"type": "string",
                                                   "pattern": taxii._TYPE.pattern}),
                            "object types, comma-separated"),
        "match_version": query("match[version]", listed(version),
                               "first, last (the default), all, or a version timestamp; "
                               "'last' is the last version the caller may see"),
        "match_spec_version": query("match[spec_version]", listed({"enum": ["2.0", "2.1"]}),
                                    "STIX versions, comma-separated"),
        "cid": {"name": "cid", "in": "path", "required": True, "schema": {"type": "string"},
                "description": "the collection's id, or its alias"},
        "oid": {"name": "oid", "in": "path", "required": True,
                "schema": {"type": "string"},
                "description": "a STIX id; anything else is 404, like an unknown object"},
        "status_id": {"name": "status_id", "in": "path", "required": True,
                      "schema": {"type": "string"}},
    }


def _taxii_schemas(max_content_length: int) -> dict[str, Any]:
    stix_object = {"type": "object", "required": ["type", "id"],
                   "properties": {"type": {"type": "string", "pattern": taxii._TYPE.pattern},
                                  "id": {"type": "string", "pattern": taxii._ID.pattern},
                                  "spec_version": {"type": "string"}}}
    more_next = {"more": {"type": "boolean"}, "next": {"type": "string", "minLength": 1}}
    status_entry = _obj(["id"], {"id": {"type": "string"}, "version": {"type": "string"},
                                 "message": {"type": "string"}})
    count = {"type": "integer", "minimum": 0}
    return {
        "error": _error_schema(),
        "discovery": _obj(["title", "description", "default", "api_roots"], {
            "title": {"type": "string"}, "description": {"type": "string"},
            "default": {"type": "string"}, "api_roots": _string_list({"type": "string"})}),
        "api-root": _obj(["title", "versions", "max_content_length"], {
            "title": {"type": "string"},
            "versions": {"type": "array", "items": {"const": taxii.TAXII}},
            "max_content_length": {"const": max_content_length}}),
        "collection": _obj(["id", "title", "description", "can_read", "can_write",
                            "media_types"], {
            "id": {"type": "string"}, "title": {"type": "string"},
            "description": {"type": "string"}, "alias": {"type": "string"},
            "can_read": {"type": "boolean"}, "can_write": {"type": "boolean"},
            "media_types": {"type": "array", "items": {"const": taxii.STIX}}}),
        "collections": _obj(["collections"], {"collections": _string_list(
            _ref("collection"))}),
        "manifest": _obj(["more"], {**more_next, "objects": {
            "type": "array", "minItems": 1, "items": _obj(
                ["id", "date_added", "version", "media_type"], {
                    "id": {"type": "string", "pattern": taxii._ID.pattern},
                    "date_added": {"type": "string", "pattern": _SERVED_TIMESTAMP},
                    "version": {"type": "string", "pattern": _SERVED_TIMESTAMP},
                    "media_type": {"const": taxii.STIX}})}}),
        "envelope": _obj(["more"], {**more_next, "objects": {
            "type": "array", "minItems": 1, "items": stix_object}}),
        "envelope-in": {
            "type": "object", "required": ["objects"], "additionalProperties": False,
            "description": "each object is checked on its own and reported in the status; "
                           "'more' and 'next' are accepted and ignored",
            "properties": {"objects": {"type": "array", "maxItems": taxii.MAX_OBJECTS},
                           "more": {}, "next": {}}},
        "versions": _obj(["more"], {**more_next, "versions": _string_list(
            {"type": "string", "pattern": _SERVED_TIMESTAMP})}),
        "status": _obj(["id", "status", "total_count", "success_count", "successes",
                        "failure_count", "failures", "pending_count", "pendings"], {
            "id": {"type": "string"}, "status": {"enum": ["complete", "pending"]},
            "request_timestamp": {"type": "string", "pattern": _SERVED_TIMESTAMP},
            "total_count": count, "success_count": count, "failure_count": count,
            "pending_count": count, "successes": _string_list(status_entry),
            "failures": _string_list(status_entry), "pendings": _string_list(status_entry)},
            closed=False),
    }


def taxii_document(api_root: str, max_content_length: int) -> dict[str, Any]:
    """The OpenAPI document of a node's TAXII 2.1 API (``api_root``: the root's name)."""
    t = taxii.TAXII
    added = {"X-TAXII-Date-Added-First": {"schema": {"type": "string",
                                                     "pattern": _SERVED_TIMESTAMP}},
             "X-TAXII-Date-Added-Last": {"schema": {"type": "string",
                                                    "pattern": _SERVED_TIMESTAMP}}}

    def ok(schema: str, status: int = 200, headers: bool = False) -> dict[str, Any]:
        r: dict[str, Any] = {"description": _TITLES[status],
                             "content": {t: {"schema": _ref(schema)}}}
        if headers:
            r["headers"] = added
        return {str(status): r}

    def p(*names: str) -> list[dict[str, str]]:
        return [{"$ref": f"#/components/parameters/{n}"} for n in names]

    def op(summary: str, responses: dict[str, Any], errors: tuple[int, ...],
           params: tuple[str, ...] = ()) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": summary,
                               "responses": _responses(responses,
                                                       (401, 406, 429, 503, 507, *errors), t)}
        if params:
            out["parameters"] = p(*params)
        return out

    filters = ("added_after", "limit", "next", "match_id", "match_type", "match_version",
               "match_spec_version")
    one = ("added_after", "limit", "next", "match_version", "match_spec_version")
    r = f"/{api_root}"
    c = f"{r}/collections/{{cid}}"
    status_op = op("a status resource: only its owner's", ok("status"), (404,))
    paths: dict[str, Any] = {
        "/taxii2/": {"get": op("discovery", ok("discovery"), ())},
        f"{r}/": {"get": op("the API root", ok("api-root"), ())},
        f"{r}/status/{{status_id}}/": {"parameters": p("status_id"), "get": status_op},
        f"{r}/status/{{status_id}}": {"parameters": p("status_id"), "get": status_op},
        f"{r}/collections/": {"get": op("collections", ok("collections"), ())},
        f"{c}/": {"parameters": p("cid"),
                  "get": op("a collection", ok("collection"), (404,))},
        f"{c}/manifest/": {"parameters": p("cid"), "get": op(
            "manifest entries of what the caller may see", ok("manifest", headers=True),
            (400, 403, 404), filters)},
        f"{c}/objects/": {"parameters": p("cid"), "get": op(
            "objects the caller may see", ok("envelope", headers=True), (400, 403, 404),
            filters), "post": {
            **op("add objects (publisher role); per-object results in the status",
                 ok("status", 202), (400, 403, 404, 413, 415)),
            "requestBody": {"required": True, "content": {t: {"schema": _ref("envelope-in")}},
                            "description": f"at most {max_content_length} bytes"}}},
        f"{c}/objects/{{oid}}/": {"parameters": p("cid", "oid"), "get": op(
            "one object; 404 when the caller may see no version of it, an envelope without "
            "objects when no version passes the filters", ok("envelope", headers=True),
            (400, 403, 404), one), "delete": op(
            "delete an object's versions, every one unless match[version] names some "
            "(security-officer role, of the node's own party: not a liaison); 404 when "
            "the caller may not see it",
            {"200": {"description": "deleted"}}, (400, 403, 404),
            ("match_version", "match_spec_version"))},
        f"{c}/objects/{{oid}}/versions/": {"parameters": p("cid", "oid"), "get": op(
            "the versions the caller may see (none listed when none passes the filters); 404 "
            "when they may see none", ok("versions", headers=True), (400, 403, 404),
            ("added_after", "limit", "next", "match_spec_version"))},
        TAXII_DOCUMENT_PATH: {"get": {
            "summary": "this document", "responses": _responses(
                {"200": {"description": "OK",
                         "content": {"application/json": {"schema": {"type": "object"}}}}},
                (401, 429, 503, 507), t)}},
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "intelpact TAXII 2.1 API", "version": "2.1",
                 "description": f"Every endpoint needs 'Accept: {t}' (else 406), except "
                 "this document; and an authenticated person (HTTP Basic or Bearer). What a "
                 "person may not see is absent, and answers 404 like what does not exist. "
                 "Unknown query parameters, and a parameter given twice, are 400; a method "
                 "a path does not serve is 405 with 'Allow'. Errors have TAXII's shape."},
        "security": [{"basic": []}, {"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"},
                                "bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": _taxii_parameters(),
            "schemas": _taxii_schemas(max_content_length)},
    }


# -- federation -----------------------------------------------------------------------------

_SIGNATURE_HEADERS = ("X-Intelpact-Party", "X-Intelpact-Date", "X-Intelpact-Agreement",
                      "X-Intelpact-Signature")


def federation_document(max_content_length: int) -> dict[str, Any]:
    """The OpenAPI document of the node-to-node API (mutual TLS, signed requests)."""
    t = taxii.TAXII
    signed: list[dict[str, list[str]]] = [{"mutualTLS": [],
                                           **{h: [] for h in _SIGNATURE_HEADERS}}]
    tls_only: list[dict[str, list[str]]] = [{"mutualTLS": []}]

    def ok(schema: dict[str, Any], media: str = t) -> dict[str, Any]:
        return {"200": {"description": "OK", "content": {media: {"schema": schema}}}}

    def body(schema: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": {t: {"schema": schema}},
                "description": f"JSON, at most {max_content_length} bytes (else 413); the "
                "Content-Type is not checked"}

    def query(name: str, minimum: int, maximum: int, default: int) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "schema": {
            "type": "integer", "minimum": minimum, "maximum": maximum, "default": default}}

    anything = {"type": "object"}
    envelope = _obj(["more"], {
        "more": {"type": "boolean"}, "next": {"type": "string", "pattern": _DIGITS},
        "objects": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "x_intelpact_consents": {"type": "array"}})
    receipt_status = _obj(["id", "status", "total_count", "success_count", "successes",
                           "failure_count", "failures", "pending_count", "pendings",
                           "x_intelpact_receipt"], {}, closed=False)
    audit = _obj(["checkpoint", "more", "events"], {
        "checkpoint": {"type": "string"}, "more": {"type": "boolean"},
        "events": {"type": "array", "items": _obj(["index", "body", "proof"], {
            "index": {"type": "integer"}, "body": {}, "proof": _string_list(
                {"type": "string"})})},
        "next": {"type": "integer"},
        "consistency": _obj(["from", "proof"], {"from": {"type": "integer"},
                                                "proof": _string_list({"type": "string"})}),
        "count": {"type": "string", "description": "on the last page: a signed note of how "
                  "many events about the caller's objects are numbered in the checkpoint's "
                  "tree (docs/audit.md, \"Completeness\")"}})
    rotated = _obj(["party", "key_id"], {"party": {"type": "string"},
                                         "key_id": {"type": "string"}})
    keys_responses = _responses(ok(rotated), (403, 409, 413, 429, 503, 507), t)
    error = _error_schema()
    keys_responses["409"]["content"][t]["schema"] = _obj(
        ["title", "http_status", "error_code", "x_intelpact_held"],
        {**error["properties"], "x_intelpact_held": {
            "type": "integer", "minimum": 1,
            "description": "the size of the largest checkpoint of the sender's log held"}})
    p = fed.PREFIX
    paths = {
        f"{p}/card": {"get": {"summary": "this node's signed card", "security": tls_only,
                              "responses": _responses(ok(anything, "application/json"),
                                                      (403, 429, 503), t)}},
        FEDERATION_DOCUMENT_PATH: {"get": {"summary": "this document", "security": tls_only,
                                           "responses": _responses(
                                               ok(anything, "application/json"),
                                               (403, 429, 503), t)}},
        f"{p}/collections/inbox/objects/": {"post": {
            "summary": "deliver objects (a push); answered with a status carrying a signed "
                       "receipt", "security": signed, "requestBody": body(
                {"type": "object", "required": ["objects"],
                 "properties": {"objects": {"type": "array", "maxItems": MAX_ENVELOPE},
                                "x_intelpact_consents": {
                     "maxItems": MAX_ENVELOPE,
                     "description": "consent tokens; what is not a list of well-formed, "
                     "verified tokens is ignored, and the objects that needed one refused "
                     "in the status; a list longer than maxItems is refused (413)"}}}),
            "responses": _responses(ok(receipt_status), (400, 403, 413, 429, 503, 507), t)}},
        f"{p}/collections/outbox/objects/": {"get": {
            "summary": "what this node released to the caller, after a cursor (a pull)",
            "security": signed,
            "parameters": [query("next", 0, MAX_INTEGER, 0),
                           query("limit", 1, fed.MAX_PAGE, 500)],
            "responses": _responses(ok(envelope), (400, 403, 429, 503, 507), t)}},
        f"{p}/keys": {"post": {
            "summary": "a key-rotation announcement, signed by the old and the new key, with "
                       "the old key's bound and final checkpoint; 409 asks for it again with "
                       "a consistency proof from the checkpoint of the sender's log held "
                       "(x_intelpact_held)",
            "security": [{"mutualTLS": [], "X-Intelpact-Party": [],
                          "X-Intelpact-Agreement": []}],
            "requestBody": body(anything),
            "responses": keys_responses}},
        f"{p}/audit": {"get": {
            "summary": "partner audit: events about the caller's objects, with proofs",
            "security": signed,
            "parameters": [query("after", -1, MAX_INTEGER, -1),
                           query("limit", 0, fed.MAX_PAGE, 1000),
                           query("known", 0, MAX_INTEGER, 0)],
            "responses": _responses(ok(audit), (400, 403, 429, 503, 507), t)}},
        f"{p}/compromise": {"post": {
            "summary": "a compromise report, acknowledgement or closure",
            "security": signed, "requestBody": body(anything),
            "responses": _responses(ok(anything), (400, 403, 404, 409, 413, 429, 503, 507), t)}},
        f"{p}/notices": {"post": {
            "summary": "a recall, destruction receipt, reclassification or consent notice",
            "security": signed, "requestBody": body(anything),
            "responses": _responses(ok(anything), (400, 403, 413, 429, 503, 507), t)}},
    }
    schemes: dict[str, Any] = {"mutualTLS": {
        "type": "mutualTLS", "description": "the listener accepts only pinned partners' "
        "certificates; the caller is the partner whose card pins the certificate it "
        "presented, and a request naming another party (X-Intelpact-Party) is 403"}}
    for h in _SIGNATURE_HEADERS:
        schemes[h] = {"type": "apiKey", "in": "header", "name": h}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "intelpact federation API", "version": "1",
                 "description": "Node to node, over mutual TLS. Requests are signed with the "
                 "calling node's pinned Ed25519 key over method, target, date, agreement "
                 "hash and body hash (the X-Intelpact-* headers; docs/federation.md); a "
                 "request that is not is 403 with the reason. A partner's requests past "
                 "partner_burst at once and partner_rate a second are 429 with "
                 "Retry-After. A method a path does not serve is 405 with 'Allow'."},
        "paths": paths,
        "components": {"securitySchemes": schemes, "schemas": {"error": _error_schema()}},
    }
