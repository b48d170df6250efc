"""The TAXII 2.1 API: thin. Parse, authenticate, call the node, render.

Every endpoint requires an authenticated person (HTTP Basic or Bearer). Every
read is filtered by the person's label access inside the store's query; an
object they may not see is indistinguishable from one that does not exist.
Every error has the TAXII error shape, and no request produces a 500 page
without it (docs/taxii.md).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import IntelpactError
from ..jsonio import JsonError, parse_json
from ..logs import log_unexpected
from ..services.audit import AuditError
from ..services.federation import KeyRetired
from ..services.node import Node
from ..services.people import NO_READING_ROLE, AuthError, Principal
from ..store.base import (
    AuditEvent,
    BadCursor,
    Collection,
    Page,
    Query,
    StoredObject,
    StoreFull,
    StoreUnavailable,
    normalise_timestamp,
)
from .limits import CLOSE, BodyRefused, read_body

log = logging.getLogger("intelpact.taxii")
T = TypeVar("T")

TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000
MAX_OBJECTS = 100_000
MAX_FILTER_VALUES = 1_000
STORE_FULL = "store-full"  # error_code of a 507: the node's disk is full
STORE_UNAVAILABLE = "store-unavailable"  # of a 503: the node's database server is away
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,249}--[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                 r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TYPE = re.compile(r"^[a-z0-9][a-z0-9-]{0,249}$")
# Collection and status ids the node makes (UUIDs): anything else names nothing here,
# whatever bytes it holds (a NUL, say, that one store would match and another refuse).
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,249}$")
_MATCH = ("id", "type", "version", "spec_version")


class TaxiiError(Exception):
    """An HTTP error in TAXII's shape."""

    def __init__(self, status: int, title: str, description: str = "",
                 headers: dict[str, str] | None = None, code: str = "") -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.description = description
        self.headers = headers or {}
        self.code = code  # TAXII's error_code: what a program may act on


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status_code=status, media_type=TAXII, headers=headers)


def _error(exc: TaxiiError) -> Response:
    body = {"title": exc.title, "http_status": str(exc.status)}
    if exc.description:
        body["description"] = exc.description
    if exc.code:
        body["error_code"] = exc.code
    return _json(body, exc.status, exc.headers)


_QVALUE = re.compile(r"^(0(\.[0-9]{0,3})?|1(\.0{0,3})?)$")  # RFC 9110 §12.4.2


def _accepts_taxii(header: str | None) -> bool:
    """Whether ``header`` (Accept) takes TAXII 2.1's media type: named, with version 2.1
    (or none), and a weight above 0. ``q=0`` means "not acceptable" (RFC 9110 §12.4.2),
    and a weight that is not one is no acceptance either."""
    if not header:
        return False
    for item in header.split(","):
        parts = [p.strip().lower() for p in item.split(";")]
        if parts[0] != "application/taxii+json":
            continue
        params = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in parts[1:]
                                                        if p)}
        q = params.get("q", "1")
        if params.get("version", "2.1").strip('"') == "2.1" and _QVALUE.fullmatch(q) \
                and float(q) > 0:
            return True
    return False


def _media_ok(header: str | None) -> bool:
    if not header:
        return False
    parts = [p.strip().lower() for p in header.split(";")]
    params = dict(p.partition("=")[::2] for p in parts[1:] if p)
    return parts[0] == "application/taxii+json" and params.get("version", "").strip('"') == "2.1"


class TaxiiApi:
    """Binds a node to HTTP. ``app`` is the Starlette application."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.root = node.config.api_root
        self.max_content_length = node.config.max_content_length
        from .openapi import TAXII_DOCUMENT_PATH, taxii_document  # it reads this module

        r = f"/{self.root}"
        routes = [
            Route("/taxii2/", self._wrap(self.discovery)),
            Route(f"{r}/", self._wrap(self.api_root)),
            Route(f"{r}/status/{{status_id}}/", self._wrap(self.status)),
            Route(f"{r}/status/{{status_id}}", self._wrap(self.status)),
            Route(f"{r}/collections/", self._wrap(self.collections)),
            Route(f"{r}/collections/{{cid}}/", self._wrap(self.collection)),
            Route(f"{r}/collections/{{cid}}/manifest/", self._wrap(self.manifest)),
            Route(f"{r}/collections/{{cid}}/objects/", self._wrap(self.objects),
                  methods=["GET", "POST"]),
            Route(f"{r}/collections/{{cid}}/objects/{{oid}}/",
                  self._wrap(self.object, quick=True), methods=["GET", "DELETE"]),
            Route(f"{r}/collections/{{cid}}/objects/{{oid}}/versions/",
                  self._wrap(self.versions)),
            Route(TAXII_DOCUMENT_PATH, self._openapi),
        ]
        self.document = taxii_document(self.root, self.max_content_length)
        self.app = Starlette(routes=routes, exception_handlers={
            HTTPException: self._http_error, Exception: self._crash})

    # -- plumbing ---------------------------------------------------------------------
    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        titles = {404: "Not Found", 405: "Method Not Allowed"}
        return _error(TaxiiError(status, titles.get(status, "HTTP error"),
                                 str(getattr(exc, "detail", "")),
                                 dict(getattr(exc, "headers", None) or {})))  # 405: Allow

    async def _openapi(self, request: Request) -> Response:
        """This API's OpenAPI document (interfaces/openapi.py), for any authenticated
        person, whatever they Accept."""
        try:
            return await self._answer(self._document, request, None)
        except TaxiiError as exc:
            return _error(exc)

    def _document(self, request: Request, principal: Principal, _: bytes | None) -> Response:
        servers = [{"url": self._base(request)}]
        return Response(json.dumps({**self.document, "servers": servers}),
                        media_type="application/json")

    async def _crash(self, request: Request, exc: Exception) -> Response:
        log_unexpected(log, exc, "unexpected error on %s %s", request.method,
                       request.url.path)
        return _error(TaxiiError(500, "Internal error", "the node could not complete the "
                                 "request; nothing was changed"))

    def _wrap(self, handler: Callable[[Request, Principal, bytes | None], Response], *,
              quick: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint for ``handler``. ``quick``: its GET reads little (one object), so
        on a store whose reads are local it is answered on the event loop itself when the
        login costs no password hash (``_quick_login``), instead of in a worker thread:
        on two cores the hand-over to a thread and back, with the GIL contended, cost more
        than the read (docs/performance.md)."""
        async def endpoint(request: Request) -> Response:
            try:
                if not _accepts_taxii(request.headers.get("accept")):
                    raise TaxiiError(406, "Not Acceptable",
                                     f"send 'Accept: {TAXII}'")
                if request.method != "POST":
                    here = quick and request.method == "GET" and \
                        self.node.store.reads_local and self._quick_login(request)
                    return await self._answer(handler, request, None, here=here)
                # Who is asking before what they send: a body is read only for a person
                # (an anonymous client makes the node buffer nothing).
                try:
                    principal = await run_in_threadpool(
                        self._guard, functools.partial(self._authenticate, request))
                except TaxiiError as exc:
                    exc.headers.update(CLOSE)  # answered before the body was read
                    raise
                body = await self._read_body(request)
                return await self._answer(handler, request, body, principal)
            except TaxiiError as exc:
                return _error(exc)
        return endpoint

    async def _answer(self, handler: Callable[[Request, Principal, bytes | None], Response],
                      request: Request, body: bytes | None,
                      principal: Principal | None = None, *, here: bool = False
                      ) -> Response:
        """Handle in a worker thread (or ``here``, on the event loop); answer once every
        event the handler recorded for this answer is durable (``AuditLog.answering``), or
        with the error that kept one from being so. Neither the thread nor the loop waits
        for the disk while another transaction is under way: one committer writes for all
        the requests queued meanwhile."""
        if here:
            outcome, pending = self._call(handler, request, body, principal)
        else:
            outcome, pending = await run_in_threadpool(self._call, handler, request, body,
                                                       principal)
        waiting = [asyncio.wrap_future(f) for f in pending if not f.done()]
        if waiting:
            await asyncio.wait(waiting)
        for future in pending:
            self._guard(future.result)
        if isinstance(outcome, TaxiiError):
            raise outcome
        return outcome

    def _call(self, handler: Callable[[Request, Principal, bytes | None], Response],
              request: Request, body: bytes | None, principal: Principal | None
              ) -> tuple[Response | TaxiiError, list[Future[int]]]:
        """Authenticate (unless done already) and handle, with the node's errors mapped:
        the response or the error, and the appends the answer must wait for."""
        with self.node.audit.answering() as pending:
            try:
                return self._guard(lambda: handler(
                    request, principal or self._authenticate(request), body)), pending
            except TaxiiError as exc:
                return exc, pending

    def _guard(self, work: Callable[[], T]) -> T:
        """Run ``work`` with the node's errors mapped to TAXII's."""
        try:
            return work()
        except TaxiiError:
            raise
        except StoreFull as exc:
            raise TaxiiError(507, "Insufficient Storage", exc.diagnostics(),
                             code=STORE_FULL) from None
        except StoreUnavailable as exc:
            log.error("%s", exc.message)
            raise TaxiiError(503, "Service Unavailable", exc.diagnostics(),
                             code=STORE_UNAVAILABLE) from None
        except BadCursor as exc:
            raise TaxiiError(400, "Bad 'next' value", exc.diagnostics()) from None
        except (AuditError, KeyRetired) as exc:  # not done (a read, a publication, say):
            log.error("%s", exc.message)  # not the client's fault
            raise TaxiiError(503, "Service Unavailable", exc.diagnostics()) from None
        except IntelpactError as exc:
            raise TaxiiError(400, "Bad request", exc.diagnostics()) from None

    async def _read_body(self, request: Request) -> bytes:
        """The body of a POST, within the node's size and time limits (interfaces/limits.py).
        A refusal closes the connection: the rest of the body is never read."""
        if not _media_ok(request.headers.get("content-type")):
            raise TaxiiError(415, "Unsupported Media Type", f"send 'Content-Type: {TAXII}'",
                             dict(CLOSE))
        try:
            return await read_body(request, self.node.config)
        except BodyRefused as exc:
            raise TaxiiError(exc.status, exc.title, exc.description, dict(CLOSE)) from None

    def _authenticate(self, request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        client = request.client.host if request.client else ""
        challenge = {"WWW-Authenticate": 'Basic realm="intelpact", Bearer realm="intelpact"'}
        try:
            if scheme.lower() == "basic":
                pair = _basic(credentials)
                if pair is None:  # a failed login too: counted and audited
                    raise self.node.people.malformed(client)
                return self.node.people.login(*pair, client)
            if scheme.lower() == "bearer" and credentials.strip():
                return self.node.people.login_token(credentials.strip(), client)
        except AuthError as exc:
            if exc.retry_after is not None:
                raise TaxiiError(429, "Too Many Requests", exc.message,
                                 {"Retry-After": str(int(exc.retry_after) + 1)}) from None
            raise TaxiiError(401, "Unauthorized",
                             exc.message if exc.signed_in else "authentication failed",
                             challenge) from None
        raise TaxiiError(401, "Unauthorized", "send HTTP Basic or Bearer credentials",
                         challenge)

    def _quick_login(self, request: Request) -> bool:
        """Whether authenticating ``request`` costs no password hash: a bearer token, or
        a name and password this process verified within the last minute."""
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return True
        pair = _basic(credentials) if scheme.lower() == "basic" else None
        return pair is not None and self.node.people.verified(*pair)

    def _base(self, request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def _named(self, name: str) -> Collection | None:
        """The collection a URL names: by its id, or by its ``alias``, which TAXII 2.1
        (§5.2.1) lets a client use in its place; None if none is so named."""
        if not _NAME.fullmatch(name):
            return None
        store = self.node.store
        return store.collection(name) or next(
            (c for c in store.collections() if c.alias == name), None)

    def _collection(self, cid: str, principal: Principal) -> str:
        """The id of the collection ``cid`` (an id or an alias) names, for a reader."""
        named = self._named(cid)
        if named is None:
            raise TaxiiError(404, "Not Found", "no such collection")
        cid = named.collection_id
        if not principal.reads:
            self._denied(principal, "collection", NO_READING_ROLE, collection=cid)
            raise TaxiiError(403, "Forbidden", NO_READING_ROLE)
        return cid

    def _denied(self, principal: Principal, via: str, reason: str, **fields: Any) -> None:
        """Audit a request refused for want of a role (``deny``, with the reason), as a
        delete without the role is: the answer waits for the event (``record_served``)."""
        audit = self.node.audit
        audit.record_served(audit.event("deny", person=principal.person, via=via,
                                        reason=reason, **fields))

    # -- endpoints ---------------------------------------------------------------------
    def discovery(self, request: Request, principal: Principal, _: bytes | None) -> Response:
        root = f"{self._base(request)}/{self.root}/"
        return _json({"title": self.node.config.title,
                      "description": f"intelpact node of {self.node.party} under agreement "
                      f"{self.node.agreement.id}",
                      "default": root, "api_roots": [root]})

    def api_root(self, request: Request, principal: Principal, _: bytes | None) -> Response:
        return _json({"title": f"{self.node.party} intelligence",
                      "versions": [TAXII], "max_content_length": self.max_content_length})

    def status(self, request: Request, principal: Principal, _: bytes | None) -> Response:
        status_id = request.path_params["status_id"]
        record = self.node.store.status(status_id) if _NAME.fullmatch(status_id) else None
        if record is None or record.owner != principal.name:
            raise TaxiiError(404, "Not Found", "no such status")
        return _json(record.body)

    def _collection_info(self, principal: Principal, c: Any) -> dict[str, Any]:
        info = {"id": c.collection_id, "title": c.title, "description": c.description,
                "can_read": principal.reads, "can_write": principal.has_role("publisher"),
                "media_types": [STIX]}
        if c.alias:
            info["alias"] = c.alias
        return info

    def collections(self, request: Request, principal: Principal, _: bytes | None) -> Response:
        return _json({"collections": [self._collection_info(principal, c)
                                      for c in self.node.store.collections()]})

    def collection(self, request: Request, principal: Principal, _: bytes | None) -> Response:
        c = self._named(request.path_params["cid"])
        if c is None:
            raise TaxiiError(404, "Not Found", "no such collection")
        return _json(self._collection_info(principal, c))

    def objects(self, request: Request, principal: Principal, body: bytes | None) -> Response:
        cid = self._collection(request.path_params["cid"], principal)
        if request.method == "POST":
            return self._add(principal, cid, body or b"")
        page, visible = self.node.find(principal, cid, self._query(request), via="objects")
        return self._envelope(page, visible)

    def object(self, request: Request, principal: Principal, _: bytes | None) -> Response:
        cid = self._collection(request.path_params["cid"], principal)
        oid = self._object_id(request.path_params["oid"])
        if request.method == "DELETE":
            return self._delete(request, principal, cid, oid)
        page, visible = self.node.find(principal, cid, self._query(request, object_id=oid),
                                       via="object")
        self._seen(principal, cid, oid, visible)
        return self._envelope(page, visible)

    def _seen(self, principal: Principal, cid: str, oid: str, visible: Sequence[Any]
              ) -> None:
        """404 unless the reader may be served some version of ``oid`` (TAXII 2.1: not
        found is for an object that is not there, and one they may not be served is not,
        for them). When no version passed the request's filters (match[version],
        added_after, match[spec_version], a page past the last), the answer is empty."""
        if not visible and not self.node.holds(principal, cid, oid):
            raise TaxiiError(404, "Not Found", "no such object")

    def manifest(self, request: Request, principal: Principal, _: bytes | None) -> Response:
        cid = self._collection(request.path_params["cid"], principal)
        page, visible = self.node.find(principal, cid, self._query(request), via="manifest")
        entries = [{"id": row.object_id, "date_added": row.date_added, "version": row.version,
                    "media_type": STIX} for row, _ in visible]
        data: dict[str, Any] = {"more": page.more}
        if page.next:
            data["next"] = page.next
        if entries:
            data["objects"] = entries
        return _json(data, headers=_added_headers([r for r, _ in visible], page))

    def versions(self, request: Request, principal: Principal, _: bytes | None) -> Response:
        cid = self._collection(request.path_params["cid"], principal)
        oid = self._object_id(request.path_params["oid"])
        query = self._query(request, object_id=oid, versions_endpoint=True)
        page, visible = self.node.find(principal, cid, query, via="versions")
        self._seen(principal, cid, oid, visible)
        data: dict[str, Any] = {"more": page.more}
        if page.next:
            data["next"] = page.next
        if visible:  # like an envelope's objects: absent, never empty
            data["versions"] = [row.version for row, _ in visible]
        return _json(data, headers=_added_headers([r for r, _ in visible], page))

    # -- helpers -------------------------------------------------------------------------
    def _object_id(self, oid: str) -> str:
        if not _ID.fullmatch(oid):
            raise TaxiiError(404, "Not Found", "no such object")
        return oid

    def _query(self, request: Request, object_id: str | None = None,
               versions_endpoint: bool = False, delete: bool = False) -> Query:
        params = request.query_params
        allowed = {"added_after", "limit", "next", *(f"match[{m}]" for m in _MATCH)}
        if delete:  # TAXII 2.1 §5.8, Delete An Object: these two filters, no others
            allowed = {"match[version]", "match[spec_version]"}
        elif versions_endpoint:
            allowed -= {"match[id]", "match[type]", "match[version]"}
        elif object_id is not None:
            allowed -= {"match[id]", "match[type]"}
        for key in params:
            if key not in allowed:
                hint = "; DELETE takes match[version] and match[spec_version] only" \
                    if delete else ""
                raise TaxiiError(400, "Bad request",
                                 f"unsupported query parameter {key!r}{hint}")
        for key in allowed:
            if len(params.getlist(key)) > 1:
                raise TaxiiError(400, "Bad request", f"{key} given more than once; separate "
                                 "several values with commas")

        def values(key: str) -> tuple[str, ...]:
            raw = params.get(key)
            if raw is None:
                return ()
            items = tuple(v.strip() for v in raw.split(","))
            if len(items) > MAX_FILTER_VALUES or any(not v for v in items):
                raise TaxiiError(400, "Bad request", f"{key}: give 1 to {MAX_FILTER_VALUES} "
                                 "non-empty comma-separated values")
            return items

        ids = values("match[id]")
        for i in ids:
            if not _ID.fullmatch(i):
                raise TaxiiError(400, "Bad request", f"match[id]: {i!r} is not a STIX id")
        types = values("match[type]")
        for t in types:
            if not _TYPE.fullmatch(t):
                raise TaxiiError(400, "Bad request", f"match[type]: {t!r} is not a STIX type")
        spec_versions = values("match[spec_version]")
        for s in spec_versions:
            if s not in ("2.0", "2.1"):
                raise TaxiiError(400, "Bad request", f"match[spec_version]: {s!r} is not a "
                                 "STIX version")
        versions: tuple[str, ...]
        if versions_endpoint:
            versions = ("all",)
        else:
            versions = tuple(self._version(v) for v in values("match[version]")) or (
                ("all",) if delete else ("last",))  # DELETE: every version unless one is named
        added_after = None
        if params.get("added_after") is not None:
            added_after = self._timestamp("added_after", params["added_after"])
        limit = DEFAULT_LIMIT
        if params.get("limit") is not None:
            raw = params["limit"]
            if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
                raise TaxiiError(400, "Bad request", f"limit must be 1 to {MAX_LIMIT}")
            limit = int(raw)
        cursor = params.get("next")
        if cursor is not None and len(cursor) > 200:
            raise TaxiiError(400, "Bad 'next' value", "unknown 'next' value")
        if object_id is not None:
            ids = (object_id,)
        return Query(ids=ids, types=types, versions=versions, spec_versions=spec_versions,
                     added_after=added_after, limit=limit, cursor=cursor)

    def _version(self, value: str) -> str:
        if value in ("first", "last", "all"):
            return value
        return self._timestamp("match[version]", value)

    def _timestamp(self, key: str, value: str) -> str:
        try:
            return normalise_timestamp(value)
        except ValueError as exc:
            raise TaxiiError(400, "Bad request", f"{key}: {exc}") from None

    def _envelope(self, page: Page, visible: Sequence[tuple[Any, str]]) -> Response:
        head = '{"more":' + ("true" if page.more else "false")
        if page.next:
            head += ',"next":' + json.dumps(page.next)
        if visible:
            head += ',"objects":[' + ",".join(body for _, body in visible) + "]"
        return Response((head + "}").encode("utf-8"), media_type=TAXII,
                        headers=_added_headers([row for row, _ in visible], page))

    def _add(self, principal: Principal, cid: str, body: bytes) -> Response:
        if not principal.has_role("publisher"):
            reason = "publishing needs the publisher role"
            self._denied(principal, "publish", reason, collection=cid)
            raise TaxiiError(403, "Forbidden", reason)
        try:
            envelope = parse_json(body)
        except JsonError as exc:
            raise TaxiiError(400, "Malformed JSON", exc.message) from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("objects"), list):
            raise TaxiiError(400, "Bad envelope", "send a TAXII envelope: "
                             '{"objects": [ ...STIX objects... ]}')
        extra = sorted(set(envelope) - {"objects", "more", "next"})
        if extra:
            raise TaxiiError(400, "Bad envelope", f"unknown envelope properties: "
                             f"{', '.join(extra)[:200]}")
        objects = envelope["objects"]
        if len(objects) > MAX_OBJECTS:
            raise TaxiiError(413, "Payload Too Large", f"at most {MAX_OBJECTS} objects in one "
                             "envelope")
        record = self.node.publisher.publish(principal.person, cid, objects)
        return _json(record.body, 202)

    def _delete(self, request: Request, principal: Principal, cid: str, oid: str) -> Response:
        """Delete the versions of ``oid`` the officer could be served (``Access.view``: the
        base label, and every portion the object cannot lose) that match[version] (every
        version by default; first and last among the versions they could be served,
        ``Node.chosen``) and match[spec_version] select: exactly the rows deleted are
        audited, in the delete's transaction. The versions selected that the officer may
        not be served are left, and audited as denied with the reason, as an id held
        nowhere is (Node.denials): a refusal is recorded whoever asks. To anyone else,
        one they may not be served is answered as an id held nowhere."""
        query = self._query(request, object_id=oid, delete=True)
        person = principal.person
        labels = self.node.store.labels()
        readable = self.node.access.readable(person, labels)
        audit = self.node.audit
        store = self.node.store
        # first and last are the caller's: among the versions they may be served (none:
        # nothing is chosen, and nothing deleted)
        chosen = self.node.chosen(principal, cid, query)

        def servable(row: StoredObject) -> bool:  # else, for them, it does not exist
            return self.node.access.view(person, row, labels) is not None

        def selected(within: Sequence[int]) -> Sequence[StoredObject]:
            return store.query(cid, within, chosen).rows if chosen.versions else ()

        # A node's own security officer administers its store: one without the role, or
        # a liaison of another party holding it (Policy.acts_for_node, rule party), is
        # refused, whoever originated the object (the originator's is recall, not this)
        here = self.node.policy.acts_for_node(person, "delete objects")
        if not principal.has_role("security-officer") or not here.allowed:
            # Filed under each originator of the versions asked for, whatever the caller
            # may read, as a denied read is (Node.denials): the originator is shown it.
            # The caller is not, and is answered as before: 404 unless they may see one.
            held = self.node.store.query(cid, list(self.node.store.labels()), query).rows
            origins: list[str | None] = list(dict.fromkeys(r.originator for r in held))
            reason = here.reason if not here.allowed else \
                "deleting needs the security-officer role"
            audit.record(*[audit.event("deny", person=principal.person, originator=origin,
                                       objects=[(oid, "")], via="delete", reason=reason)
                           for origin in origins or [None]])
            # Do not reveal whether the object exists to someone who may not see it.
            if not any(map(servable, selected(readable))):
                raise TaxiiError(404, "Not Found", "no such object")
            raise TaxiiError(403, "Forbidden", reason)

        def events(rows: Sequence[StoredObject]) -> list[AuditEvent]:
            return audit.by_originator(
                "delete", [(row.object_id, row.version, row.originator) for row in rows],
                person=principal.person, versions=list(query.versions))

        deleted = store.delete(cid, readable, oid, chosen.versions, chosen.spec_versions,
                               audit=events, keep=servable) if chosen.versions else 0
        labels = store.labels()
        if not deleted or selected(list(labels)):
            audit.record(*self.node.denials(principal, [cid], query, [oid], "delete",
                                            readable, labels))
        if not deleted:
            raise TaxiiError(404, "Not Found", "no such object")
        return Response(status_code=200)


def _basic(credentials: str) -> tuple[str, str] | None:
    """The name and password of HTTP Basic credentials, or None if they are not any."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode()
    except ValueError:  # not base64 (or not ASCII at all), or not UTF-8
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


def _added_headers(rows: Sequence[StoredObject], page: Page) -> dict[str, str]:
    """The first and last ``date_added`` of a page's ``rows`` (oldest first), but neither
    later than that of the last row the page read (``page.rows``, Node.find): a client
    paging by date sends Last as the next page's added_after (TAXII 2.1 §3.6), and a
    version served in the place of one that cannot be, for match[version]=first, was
    added after that one, maybe after rows the walk has yet to read (docs/node.md)."""
    if not rows:
        return {}
    first, last = rows[0].date_added, rows[-1].date_added
    if page.rows:
        last = min(last, page.rows[-1].date_added)
    return {"X-TAXII-Date-Added-First": min(first, last), "X-TAXII-Date-Added-Last": last}


def create_app(node: Node) -> Starlette:
    app = TaxiiApi(node).app
    from .console import mount  # the analyst's console at "/" (docs/console.md)

    mount(app, node)
    return app
