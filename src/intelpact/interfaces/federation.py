"""The node-to-node API, served on its own mutual-TLS listener.

TAXII-shaped: partners POST envelopes to the ``inbox`` collection and page the
``outbox`` collection (what this node released to them) with ``next``. Every
request except the card is signed by the calling node's pinned key
(services/federation.py); the TLS layer accepts only pinned certificates. On every
route, the caller is the partner whose card pins the certificate it presented
(:meth:`FederationApi._sender`, which each route asks first): a request naming another
party as its sender is refused, whatever else it carries; and a partner sending more
requests than ``partner_burst`` at once and ``partner_rate`` a second is answered 429
with ``Retry-After``, before what it sent is parsed or verified.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..jsonio import JsonError, parse_json
from ..logs import log_unexpected
from ..model.echo import shown
from ..services.audit import AuditError
from ..services.compromise import CompromiseError
from ..services.controls import ControlError
from ..services.federation import (
    ClockSkew,
    FederationError,
    KeyRetired,
    Oversized,
    ProofNeeded,
    SenderRefused,
    SignedRequest,
    make_card,
    tls_sender,
    verify_request,
)
from ..services.node import Node
from ..store.base import MAX_INTEGER, PeerRecord, StoreFull, StoreUnavailable
from .limits import CLOSE, BodyRefused, RateLimit, listener_options, read_body
from .taxii import STORE_FULL, STORE_UNAVAILABLE, TAXII, TaxiiError, _error, _json

log = logging.getLogger("intelpact.federation")
PREFIX = "/federation"
MAX_PAGE = 1000
_INTEGER = re.compile(r"-?[0-9]{1,19}")
RATE_LIMITED = "rate-limited"  # the error_code of a 429: retry after Retry-After seconds


def _integer(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in [low, high]; raises a 400 TaxiiError naming it."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw) or not low <= int(raw) <= high:
        raise TaxiiError(400, "Bad request", f"{name} must be an integer from {low} to "
                         f"{high}, not {raw[:40]!r}")
    return int(raw)


def _target(request: Request) -> str:
    """The request's target as its signature covers it: the path and any query."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


class FederationApi:
    def __init__(self, node: Node) -> None:
        self.node = node
        # requests from each partner: partner_burst at once, then partner_rate a second
        self.rate = RateLimit(node.config.partner_rate, node.config.partner_burst)
        self.app = Starlette(routes=[
            Route(f"{PREFIX}/card", self.card),
            Route(f"{PREFIX}/openapi.json", self.openapi),
            Route(f"{PREFIX}/collections/inbox/objects/", self.inbox, methods=["POST"]),
            Route(f"{PREFIX}/collections/outbox/objects/", self.outbox),
            Route(f"{PREFIX}/keys", self.keys, methods=["POST"]),
            Route(f"{PREFIX}/audit", self.audit),
            Route(f"{PREFIX}/compromise", self.compromise, methods=["POST"]),
            Route(f"{PREFIX}/notices", self.notices, methods=["POST"]),
        ], exception_handlers={HTTPException: self._http_error, StoreFull: self._full,
                               StoreUnavailable: self._unavailable,
                               AuditError: self._unrecorded, KeyRetired: self._unrecorded,
                               Exception: self._crash})

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        titles = {404: "Not Found", 405: "Method Not Allowed"}
        return _error(TaxiiError(status, titles.get(status, "HTTP error"),
                                 headers=dict(getattr(exc, "headers", None) or {})))

    async def _full(self, request: Request, exc: Exception) -> Response:
        log.error("federation request failed: %s", exc)
        detail = exc.diagnostics() if isinstance(exc, StoreFull) else str(exc)
        return _error(TaxiiError(507, "Insufficient Storage", detail, code=STORE_FULL))

    async def _unavailable(self, request: Request, exc: Exception) -> Response:
        log.error("federation request failed: %s", exc)
        detail = exc.diagnostics() if isinstance(exc, StoreUnavailable) else str(exc)
        return _error(TaxiiError(503, "Service Unavailable", detail, code=STORE_UNAVAILABLE))

    async def _unrecorded(self, request: Request, exc: Exception) -> Response:
        """The act could not be recorded, or signed (this process holds a retired key),
        so it was not done: the sender's to retry."""
        log.error("federation request failed: %s", exc)
        detail = exc.diagnostics() if isinstance(exc, AuditError | KeyRetired) else str(exc)
        return _error(TaxiiError(503, "Service Unavailable", detail))

    async def _crash(self, request: Request, exc: Exception) -> Response:
        log_unexpected(log, exc, "federation request failed: %s %s", request.method,
                       request.url.path)
        return _error(TaxiiError(500, "Internal error", "nothing was stored"))

    def _sender(self, request: Request) -> tuple[str, PeerRecord]:
        """The partner a request comes from: the one whose card pins the TLS certificate
        its client presented (the ASGI TLS extension, interfaces/limits.py; ``tls_sender``),
        with its pinned record. Every route asks this first, whatever the request says
        of its sender (X-Intelpact-Party must name that partner, if anything). The
        partner's request is taken from its bucket (``partner_burst``, ``partner_rate``)
        before anything it sent is parsed, verified or refused: past the limit, a 429
        TaxiiError with ``Retry-After`` and the reason. A request refused for its sender
        is a 403 TaxiiError with the reason. Both are audited as refusals, sampled per
        partner and what was wrong (``_refused``): never per what the request claims."""
        peers = self.node.federation.peers()
        tls = request.scope.get("extensions", {}).get("tls") or {}
        chain = tls.get("client_cert_chain") or []
        claimed = request.headers.get("x-intelpact-party")
        try:
            sender = tls_sender(ssl.PEM_cert_to_DER_cert(chain[0]) if chain else None,
                                claimed, peers)
        except SenderRefused as exc:
            if exc.party is not None:  # a pinned partner's requests count, refused or not
                self._take(request, exc.party)
            if self._refused(request, exc.party, exc.message, "sender",
                             claimed=None if claimed is None else shown(claimed),
                             tls_fingerprint=exc.fingerprint or None):
                log.warning("refused a federation request: %s", exc.message)
            raise TaxiiError(403, "Forbidden", exc.message) from None
        self._take(request, sender)
        return sender, peers[sender]

    def _take(self, request: Request, sender: str) -> None:
        """Take a request from ``sender``'s bucket; past its rate, a 429 TaxiiError with
        ``Retry-After`` and the reason, audited (sampled) as a refusal."""
        wait = self.rate.take(sender)
        if wait:
            cfg = self.node.config
            reason = (f"{sender} sent more requests than this node takes from one partner: "
                      f"{cfg.partner_burst} at once, then {cfg.partner_rate:g} a second")
            if self._refused(request, sender, reason, "rate"):  # sampled: logged when audited
                log.warning("refused a federation request: %s", reason)
            raise TaxiiError(429, "Too Many Requests", f"{reason}; retry in {wait} s",
                             {"Retry-After": str(wait)}, code=RATE_LIMITED)

    def _refused(self, request: Request, party: str | None, reason: str, why: str,
                 **fields: Any) -> bool:
        """Audit a request refused (``refuse``), sampled per partner and ``why`` (what
        was wrong, without what varies from one request to the next): the first at once,
        then at most one record every 10 s saying how many it stands for
        (services/audit.py, Sampled). Whether a record was made (else it was counted)."""
        return self.node.federation.refusals.record(
            f"{party}\0{why}", time.monotonic(), party=party, actor=party, reason=reason,
            request=f"{request.method} {request.url.path}"[:200], **fields)

    def _caller(self, request: Request, body: bytes) -> str:
        """The partner a request comes from (by its TLS certificate), which must have
        signed it with its pinned key (verify_request)."""
        sender, peer = self._sender(request)
        try:
            return verify_request(request.headers, request.method, _target(request), body,
                                  {sender: peer}, self.node.agreement.content_hash)
        except FederationError as exc:
            log.warning("refused a federation request: %s", exc.message)
            self._refused(request, sender, exc.message, type(exc).__name__)
            if isinstance(exc, ClockSkew):  # the sender retries: a clock, not a forgery
                raise TaxiiError(403, "Forbidden", exc.diagnostics(),
                                 code=ClockSkew.CODE) from None
            raise TaxiiError(403, "Forbidden", exc.message) from None

    def _parsed(self, request: Request, sender: str, body: bytes) -> Any:
        """The JSON ``sender`` sent (jsonio.parse_json); one that is not is refused, 400,
        and audited as a refusal (sampled, ``_refused``)."""
        try:
            return parse_json(body)
        except JsonError as exc:
            self._refused(request, sender, exc.message, "json")
            raise TaxiiError(400, "Malformed JSON", exc.message) from None

    async def card(self, request: Request) -> Response:
        try:
            card = await run_in_threadpool(self._card, request)
        except TaxiiError as exc:
            return _error(exc)
        return Response(json.dumps(card, indent=1), media_type="application/json")

    def _card(self, request: Request) -> dict[str, Any]:
        self._sender(request)
        try:
            return make_card(self.node.federation.signer())  # never with a retired key
        except FederationError as exc:  # listening everywhere, no public host: no address
            raise TaxiiError(500, "No card", exc.message) from None

    async def openapi(self, request: Request) -> Response:
        """This API's OpenAPI document (interfaces/openapi.py). Like the card, it is not
        signed: only pinned partners get past the TLS handshake, and only one whose card
        pins the certificate presented gets an answer."""
        from .openapi import federation_document  # it reads this module

        try:
            await run_in_threadpool(self._sender, request)
        except TaxiiError as exc:
            return _error(exc)
        document = federation_document(self.node.config.max_content_length)
        document["servers"] = [{"url": str(request.base_url).rstrip("/")}]
        return Response(json.dumps(document), media_type="application/json")

    async def inbox(self, request: Request) -> Response:
        try:
            body = await self._body(request)
            return await run_in_threadpool(self._receive, request, body)
        except TaxiiError as exc:
            return _error(exc)

    async def _body(self, request: Request) -> bytes:
        """A request body within the node's size and time limits (interfaces/limits.py); a
        refusal closes the connection, so the rest of the body is never read."""
        try:
            return await read_body(request, self.node.config)
        except BodyRefused as exc:
            raise TaxiiError(exc.status, exc.title, exc.description, dict(CLOSE)) from None

    def _receive(self, request: Request, body: bytes) -> Response:
        sender = self._caller(request, body)
        envelope = self._parsed(request, sender, body)
        if not isinstance(envelope, dict) or not isinstance(envelope.get("objects"), list):
            self._refused(request, sender, "the envelope holds no list of objects", "envelope")
            raise TaxiiError(400, "Bad envelope", 'send {"objects": [...]}')
        collection = self.node.default_collection().collection_id
        try:
            results, receipt = self.node.federation.receive(
                sender, collection, envelope["objects"],
                envelope.get("x_intelpact_consents", []))
        except Oversized as exc:
            log.warning("refused an envelope from %s: %s", sender, exc.message)
            raise TaxiiError(413, "Payload Too Large", exc.message) from None
        self.node.stored.set()
        ok = [r for r in results if r.ok]
        bad = [r for r in results if not r.ok]
        status: dict[str, Any] = {
            "id": receipt["receipt"]["received"], "status": "complete",
            "total_count": len(results), "success_count": len(ok),
            "successes": [{"id": r.object_id, "version": r.version or ""} for r in ok],
            "failure_count": len(bad),
            "failures": [{"id": r.object_id, "message": r.message} for r in bad],
            "pending_count": 0, "pendings": [], "x_intelpact_receipt": receipt}
        return _json(status)

    async def keys(self, request: Request) -> Response:
        """A partner's key-rotation announcement, from the partner whose TLS certificate
        the client presented. It is authenticated by its own two signatures (old pinned
        key and new key), not by a request signature: the sender already signs with the
        new key, which we do not know yet. The request's signature, by the old or the
        new key, makes a consistency proof it carries evidence against the sender."""
        try:
            body = await self._body(request)
            return await run_in_threadpool(self._rotate, request, body)
        except TaxiiError as exc:
            return _error(exc)

    def _rotate(self, request: Request, body: bytes) -> Response:
        """A refused announcement (a forged one: an attempt to pin a key the attacker
        holds) is audited as a refusal, sampled, as any other (``_refused``)."""
        sender = self._sender(request)[0]  # not from a header: no pinned key signs this
        try:
            if request.headers.get("x-intelpact-agreement") != \
                    self.node.agreement.content_hash:
                raise FederationError("the agreement hash differs")
            new_id = self.node.federation.accept_rotation(
                sender, parse_json(body),
                SignedRequest(request.headers, request.method, _target(request), body))
        except ProofNeeded as exc:  # not a refusal: sent again with a consistency proof
            return _json({"title": "Conflict", "http_status": "409",
                          "description": exc.message, "error_code": ProofNeeded.CODE,
                          "x_intelpact_held": exc.held}, 409)
        except (JsonError, FederationError) as exc:
            if self._refused(request, sender, exc.message, f"keys {type(exc).__name__}"):
                log.warning("refused a key rotation from %s: %s", sender, exc.message)
            raise TaxiiError(403, "Forbidden", exc.message) from None
        log.warning("%s rotated its signing key to %s", sender, new_id)
        return _json({"party": sender, "key_id": new_id})

    async def outbox(self, request: Request) -> Response:
        try:
            return await run_in_threadpool(self._outbox, request)
        except TaxiiError as exc:
            return _error(exc)

    def _outbox(self, request: Request) -> Response:
        party = self._caller(request, b"")
        after = _integer(request, "next", 0, 0, MAX_INTEGER)
        size = _integer(request, "limit", 500, 1, MAX_PAGE)
        fed = self.node.federation
        held = fed.held_consents()  # the consent tokens: read once, if a row needs them
        while True:
            rows = self.node.store.released_after(party, after, size + 1)
            more = len(rows) > size
            rows = rows[:size]
            # as the courier decides: a definition goes on its own label or with an object
            # here that cites it; one whose object is on the next page starts that page,
            # and a page that starts with one reads on to its object (queued right behind)
            sent, later = fed.outgoing(party, rows, held, more=more)
            if not later or min(later) > rows[0][0] or size >= MAX_PAGE:
                break
            size = min(MAX_PAGE, size * 2 + 8)
        if later and min(later) > rows[0][0]:
            rows = [(oid, row) for oid, row in rows if oid < min(later)]
        going = [row for oid, row in sent if oid <= rows[-1][0]]
        # a definition an object here cites that goes only with it, passed by the cursor
        # before (its earlier object recalled, or beyond a read-on's bound): it goes now
        carried = fed.passed_definitions(party, going, held)
        going = carried + going
        tokens = fed.consents_for(party, going, held)
        # durable before it leaves; no receipt on a pull: the originators of what went on
        # with consent are told, unreceipted, once (not again for a page pulled again),
        # in the same transaction
        fed.pulled(party, going, (lambda fresh: self.node.consents.onward(
            party, fresh, "pull", None)) if tokens else None)
        # and decided again once recorded, on the rows as they are now (as the courier
        # does): a reclassification or recall committed since the first decision is seen
        # here, one committed after the record finds it (Store.relabel)
        numbers = {oid for oid, _ in sent if oid <= rows[-1][0]}
        going = [row for _, row in fed.outgoing(party, [
            (oid, row) for oid, row in self.node.store.released_after(party, after, size)
            if oid in numbers], held)[0]]
        # a carried definition goes only if an object that cites it still does
        bodies = [row.body for row in carried if any(row.object_id in other.body
                                                     for other in going)]
        bodies += [row.body for row in going]
        head = '{"more":' + ("true" if more else "false")
        if tokens:
            head += ',"x_intelpact_consents":' + json.dumps(tokens)
        if rows:
            head += f',"next":"{rows[-1][0]}"'
        if bodies:
            head += ',"objects":[' + ",".join(bodies) + "]"
        return Response((head + "}").encode(), media_type=TAXII)


    async def audit(self, request: Request) -> Response:
        try:
            return await run_in_threadpool(self._audit, request)
        except TaxiiError as exc:
            return _error(exc)

    def _audit(self, request: Request) -> Response:
        """Partner audit and checkpoint gossip: the events about the caller's objects, with
        proofs, and our latest checkpoint with a proof that it extends the one it knows."""
        party = self._caller(request, b"")
        after = _integer(request, "after", -1, -1, MAX_INTEGER)
        limit = _integer(request, "limit", 1000, 0, MAX_PAGE)
        known = _integer(request, "known", 0, 0, MAX_INTEGER)
        answer = self.node.audit.for_partner(party, after=after, limit=limit, known=known)
        return Response(json.dumps(answer, ensure_ascii=False).encode(), media_type=TAXII)

    async def compromise(self, request: Request) -> Response:
        try:
            body = await self._body(request)
            return await run_in_threadpool(self._compromise, request, body)
        except TaxiiError as exc:
            return _error(exc)

    def _compromise(self, request: Request, body: bytes) -> Response:
        """A compromise report about our objects, or the acknowledgement or closure of a
        report, from a partner (services/compromise.py); answered with a signed receipt."""
        sender = self._caller(request, body)
        envelope = self._parsed(request, sender, body)
        try:
            answer = self.node.compromise.receive(sender, envelope)
        except CompromiseError as exc:
            titles = {400: "Bad request", 404: "Not Found", 409: "Conflict"}
            raise TaxiiError(exc.status, titles.get(exc.status, "Forbidden"),
                             exc.message) from None
        return _json(answer)


    async def notices(self, request: Request) -> Response:
        try:
            body = await self._body(request)
            return await run_in_threadpool(self._notice, request, body)
        except TaxiiError as exc:
            return _error(exc)

    def _notice(self, request: Request, body: bytes) -> Response:
        """A recall, destruction receipt or reclassification from a partner
        (services/controls.py); applied once and answered with a signed receipt."""
        sender = self._caller(request, body)
        signed = self._parsed(request, sender, body)
        try:
            answer = self.node.controls.receive(sender, signed)
        except ControlError as exc:
            log.warning("refused a notice from %s: %s", sender, exc.message)
            raise TaxiiError(403, "Forbidden", exc.message) from None
        return _json(answer)


def create_federation_app(node: Node) -> Starlette:
    return FederationApi(node).app


def trust_bundle(node: Node) -> Path:
    """Write the certificates this node accepts from clients: its pinned partners'
    (and its own, so the file is never empty). Returns the file's path."""
    path = node.config.dir / "tls" / "partners.pem"
    pems = [node.identity.tls_cert_pem] + [p.tls_cert for p in node.store.peers()]
    path.write_text("".join(pem if pem.endswith("\n") else pem + "\n" for pem in pems))
    return path


def federation_server_options(node: Node) -> dict[str, Any]:
    """uvicorn options for the mutual-TLS listener: address, TLS with the partners' pinned
    certificates, and the options every listener shares (interfaces/limits.py)."""
    cfg = node.config
    if cfg.tls_cert is None or cfg.tls_key is None:
        raise TaxiiError(500, "no TLS certificate")
    return {"host": cfg.host, "port": cfg.federation_port, "ssl_certfile": str(cfg.tls_cert),
            "ssl_keyfile": str(cfg.tls_key), "ssl_ca_certs": str(trust_bundle(node)),
            "ssl_cert_reqs": ssl.CERT_REQUIRED, **listener_options(cfg)}
