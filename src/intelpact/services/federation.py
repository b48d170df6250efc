"""Federation: node cards, the release filter, signed delivery and receipts.

Trust: partners swap signed node cards out of band (`intelpact card`,
`intelpact peer add`); a card pins the partner's Ed25519 key, its TLS
certificate and the agreement hash it applies. A card whose agreement hash is
not ours is refused.

Release: when an object is stored, the model's release decision is taken for
every pinned partner, and an outbox row is written for each allowed one *in
the same transaction* (a transactional outbox). A sender pushes each partner's
outbox at once and retries; a receiver also pulls what it missed. Receipt is
idempotent, so delivery is at least once and nothing is stored twice.

Receipt: the receiver checks the request signature and agreement hash, then
for every object the originator's signature against the pinned key, and that
the sender was allowed to release it to us (the same model decision, taken
again on our side). It stores the object unchanged, as received, and returns a
signed receipt naming each (id, version, body hash) it now holds.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import logging
import re
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..crypto.keys import KeyFileError, key_id, public_key_b64, public_key_from_b64, public_raw
from ..crypto.signing import SignatureError, canonical, object_signed_view, verify_object
from ..crypto.tls import der_fingerprint, wildcard_host
from ..errors import IntelpactError
from ..model import Agreement, Label, Markings, PartnerNode, Policy, parse_marking
from ..model.decisions import ConsentToken, Decision
from ..model.echo import first, shown, too_many
from ..model.errors import LabelError, MarkingError
from ..stix.validate import StixValidationError, validate_object
from ..store.base import (
    AuditEvent,
    AuditFilter,
    HeldCheckpoints,
    MarkingConflict,
    NewObject,
    Onward,
    PeerRecord,
    ReclassifiedMeanwhile,
    Store,
    StoredObject,
    cited_markings,
    parse_timestamp,
    timestamp,
    utc_now,
)
from .audit import (
    AuditError,
    AuditLog,
    LogKey,
    Sampled,
    _conflict,
    _Rewritten,
    log_keys,
    log_origin,
    operator,
    verify_checkpoint_note,
)
from .publish import (
    Raises,
    canonical_body,
    definition_label,
    derived_from,
    object_version,
    reclassified_labels,
    reclassified_versions,
)

log = logging.getLogger("intelpact.federation")
_MARKING_ID = re.compile(r"marking-definition--[0-9A-Fa-f-]{36}")
CARD_VERSION = 1
CONSENT_VERSION = 1
# What one consent token may name (docs/controls.md). An approval names one object, its
# versions and the marking-definitions they use: these are far above that, and bound
# what a partner's token makes this node read and keep.
MAX_CONSENT_OBJECTS = 1_000
MAX_CONSENT_VERSIONS = 10_000
# What one message from a partner may list (docs/federation.md, "Limits"). The body limit
# (server.max_content_length) bounds bytes, not items: 10 MiB holds millions of tiny ones,
# each parsed, checked, and refused with its own audit event, or kept with its own row.
# These are ten times what a node sends in one message, and a message over one is refused
# whole with the count, nothing kept.
# - objects in one envelope: a push sends 500 (services/courier.py BATCH), a pull page at
#   most 1,000 (interfaces/federation.py MAX_PAGE); consent tokens with it: one or two
#   per third party's object in it;
MAX_ENVELOPE = 10_000
# - [id, version] pairs (or versions of one object) a notice or compromise report names:
#   a consent request names the versions one consent may cover (MAX_CONSENT_VERSIONS), an
#   onward-release report those of one envelope, a destruction receipt the versions of one
#   object, a compromise report the versions of the objects named (filing refuses more).
MAX_NAMED = MAX_CONSENT_VERSIONS
CLOCK_SKEW = dt.timedelta(minutes=5)


class FederationError(IntelpactError):
    """A partner, card, request or receipt was refused; the message says why."""


class Oversized(FederationError):
    """A partner's message lists more than this node takes in one (MAX_ENVELOPE, MAX_NAMED):
    refused whole, answered 413."""


class KeyRetired(IntelpactError):
    """This process holds a signing key that a key rotation made by another process (the
    CLI beside a running ``serve``) retired since it opened the node: it signs nothing
    more with it, and is restarted to load the new key (Federation.signer)."""


class ProofNeeded(FederationError):
    """A key rotation announcement's final checkpoint is larger than the largest
    checkpoint of the sender's log held here (``held``), and came without a consistency
    proof from it: the sender sends it again with one (answered 409, ``error_code``
    CODE, ``x_intelpact_held``). Not a refusal."""

    CODE = "consistency-needed"

    def __init__(self, held: int) -> None:
        super().__init__(f"this node holds a checkpoint of {held} events of the sender's "
                         "log: send the announcement again with a consistency proof from "
                         "it to the final checkpoint")
        self.held = held


class SenderRefused(FederationError):
    """A federation request refused for who sent it (``tls_sender``): ``party`` is the
    partner whose card pins the certificate the client presented, where one does, and
    ``fingerprint`` that certificate's SHA-256 (empty: none presented)."""

    def __init__(self, message: str, *, party: str | None = None, fingerprint: str = "",
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.party = party
        self.fingerprint = fingerprint


class _Unproven(Exception):
    """A key rotation's final checkpoint conflicts with those held only by a consistency
    proof that nothing says is the sender's (Federation.accept_rotation)."""


class ClockSkew(FederationError):
    """A request dated too far from this node's clock: a clock to set right (or a
    replay), not a refusal of what the request carries, so senders retry it."""

    CODE = "clock-skew"  # the error_code of the TAXII error a partner answers with


@dataclass(frozen=True)
class Identity:
    """This node as its partners see it."""

    party: str
    url: str
    key: Ed25519PrivateKey
    tls_cert_pem: str
    agreement_id: str
    agreement_hash: str

    @property
    def key_id(self) -> str:
        return key_id(public_raw(self.key))


def sign_payload(key: Ed25519PrivateKey, payload: Any) -> str:
    """The signature of a protocol message, over ``payload``'s RFC 8785 form. Never one
    shaped like a STIX object's signed form (``object_signed_view``): the same key signs
    those."""
    if object_signed_view(payload):
        raise SignatureError("a protocol message carrying the signatures extension would "
                             "read as a signed STIX object: not signed")
    return base64.b64encode(key.sign(canonical(payload))).decode("ascii")


def verify_payload(public: Ed25519PublicKey, signature: str, payload: Any) -> bool:
    """Whether ``signature`` verifies over ``payload``'s RFC 8785 form. A payload that has
    none (an integer beyond ±(2**53 - 1), say) was signed by no one: False, not raised.
    Nor was one shaped like what a STIX object's signature covers (the object, its
    signature's value left out: ``object_signed_view``): the node's key signs every
    object its people publish, so a signature over one is no message from the node
    (a custom object with the properties of a consent token would otherwise pass for
    one its originator signed)."""
    if object_signed_view(payload):
        return False
    try:
        public.verify(base64.b64decode(signature, validate=True), canonical(payload))
        return True
    except (InvalidSignature, SignatureError, binascii.Error, ValueError):
        return False


def _public(b64: str) -> Ed25519PublicKey:
    try:
        return public_key_from_b64(b64)
    except KeyFileError as exc:
        raise FederationError(f"the card's public key is refused: {exc.message}") from None


# -- node cards -------------------------------------------------------------------------

def make_card(me: Identity) -> dict[str, Any]:
    """This node's signed card: what a partner pins. Refused (FederationError) when its
    URL's host is a wildcard address (a node listening on every interface with no
    ``server.public_host``): partners would be given an address that reaches none."""
    try:
        host = urllib.parse.urlsplit(me.url).hostname
    except ValueError:  # no URL: partners refuse it (_check_url)
        host = None
    if host and wildcard_host(host):
        raise FederationError(f"server.host {host} listens on every interface and no "
                              f"server.public_host is set: the card would give partners "
                              f"{me.url}, an address by which no partner reaches this node",
                              hint="set server.public_host in node.toml to the name or "
                              "address partners reach this node by, one the TLS certificate "
                              "names (docs/configuration.md)")
    cert = x509.load_pem_x509_certificate(me.tls_cert_pem.encode())
    body = {
        "intelpact_card": CARD_VERSION,
        "party": me.party,
        "url": me.url,
        "public_key": public_key_b64(me.key),
        "key_id": me.key_id,
        "tls_cert": me.tls_cert_pem,
        "tls_fingerprint": der_fingerprint(cert.public_bytes(serialization.Encoding.DER)),
        "agreement": {"id": me.agreement_id, "hash": me.agreement_hash},
        "issued": timestamp(utc_now()),
    }
    return {**body, "signature": sign_payload(me.key, body)}


def _check_url(url: Any) -> None:
    """A card's address: https, a host and a port, nothing else (partners talk over
    mutual TLS alone; a path, a query or credentials have no place in it)."""
    try:
        parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
        port = parts.port if parts is not None else None
    except ValueError:
        parts = port = None
    if parts is None or parts.scheme != "https" or not parts.hostname or port is None \
            or parts.username is not None or parts.path.strip("/") or parts.query \
            or parts.fragment:
        raise FederationError(f"the card's address {str(url)[:200]!r} is not an https "
                              "address of a host and port",
                              hint="the partner's node.toml host and federation_port make it")
    if wildcard_host(parts.hostname):
        raise FederationError(f"the card's address {url!r} is a wildcard address: it means "
                              "every interface of the partner's machine, and reaches no "
                              "partner (here it would reach this machine)",
                              hint="the partner sets server.public_host in its node.toml to "
                              "the name or address it is reached by, and gives a new card")


def check_card(card: Any, me: Identity, parties: Sequence[str]) -> PeerRecord:
    """Verify a partner's card and turn it into a pinned peer. Raises FederationError."""
    if not isinstance(card, dict) or card.get("intelpact_card") != CARD_VERSION:
        raise FederationError("not an intelpact node card",
                              hint="ask the partner for the output of `intelpact card DIR`")
    body = {k: v for k, v in card.items() if k != "signature"}
    for key in ("party", "url", "public_key", "key_id", "tls_cert", "tls_fingerprint",
                "agreement", "issued"):
        if key not in body:
            raise FederationError(f"the card lacks {key!r}")
    public = _public(str(card["public_key"]))
    if key_id(public_raw(public)) != card["key_id"]:
        raise FederationError("the card's key id does not match its public key")
    if not verify_payload(public, str(card.get("signature", "")), body):
        raise FederationError("the card's signature does not verify: altered or forged")
    _check_url(card["url"])
    party = card["party"]
    if party == me.party:
        raise FederationError(f"the card is for {party}, this node's own party")
    if party not in parties:
        raise FederationError(f"{party} is not a party to agreement {me.agreement_id}")
    agreement = card["agreement"]
    if not isinstance(agreement, dict) or agreement.get("hash") != me.agreement_hash:
        theirs = agreement.get("hash") if isinstance(agreement, dict) else agreement
        raise FederationError(f"{party} applies agreement {theirs}, this node applies "
                              f"{me.agreement_hash}: nodes whose agreements differ do not "
                              "exchange", hint="both nodes must pin the same agreement text")
    try:
        cert = x509.load_pem_x509_certificate(str(card["tls_cert"]).encode())
    except ValueError:
        raise FederationError("the card's TLS certificate is not PEM") from None
    if der_fingerprint(cert.public_bytes(serialization.Encoding.DER)) != card["tls_fingerprint"]:
        raise FederationError("the card's TLS fingerprint does not match its certificate")
    return PeerRecord(party, str(card["url"]).rstrip("/"), str(card["public_key"]),
                      str(card["key_id"]), str(card["tls_cert"]), str(card["tls_fingerprint"]),
                      json.dumps(card, sort_keys=True), timestamp(utc_now()))


# -- who is calling ----------------------------------------------------------------------

def tls_sender(certificate: bytes | None, claimed: str | None,
               peers: Mapping[str, PeerRecord]) -> str:
    """The partner a federation request comes from: the one whose card pins the TLS
    certificate the client presented (``certificate``, DER), whatever the request says.
    A request that names a sender (``claimed``, its X-Intelpact-Party) must name that
    one. Raises SenderRefused with the reason: no certificate, one no card pins (or more
    than one does), or a request claiming another party."""
    if not certificate:
        raise SenderRefused("the client presented no TLS certificate: a partner calls "
                            "with the certificate its card pins")
    fingerprint = der_fingerprint(certificate)
    owners = sorted(p.party for p in peers.values() if p.tls_fingerprint == fingerprint)
    if not owners:
        raise SenderRefused(f"the client's TLS certificate (SHA-256 {fingerprint[:16]}…) is "
                            "not one a pinned partner's card pins", fingerprint=fingerprint)
    if len(owners) > 1:
        raise SenderRefused(f"the client's TLS certificate is pinned for "
                            f"{' and '.join(owners)}: which of them calls cannot be told",
                            fingerprint=fingerprint,
                            hint="each partner's card must carry its own certificate")
    party = owners[0]
    if claimed is not None and claimed != party:
        raise SenderRefused(f"the request says it is from {shown(claimed) or '(nobody)'}, but the "
                            f"client's TLS certificate is {party}'s", party=party,
                            fingerprint=fingerprint)
    return party


# -- request signatures -------------------------------------------------------------------

def _request_payload(method: str, target: str, date: str, agreement: str,
                     body: bytes) -> dict[str, str]:
    return {"method": method.upper(), "target": target, "date": date, "agreement": agreement,
            "body_sha256": hashlib.sha256(body).hexdigest()}


@dataclass(frozen=True)
class SignedRequest:
    """A federation request as received, for the signature it carries (``signer``)."""

    headers: Mapping[str, str]
    method: str
    target: str
    body: bytes

    def signer(self, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
        """The id of the key of ``keys`` whose signature (X-Intelpact-Signature) the
        request carries over its method, target, date, agreement and body hash, or None
        when it carries none that verifies. Its date is not judged here."""
        kid, _, signature = self.headers.get("x-intelpact-signature", "").partition(":")
        public = keys.get(kid)
        payload = _request_payload(self.method, self.target,
                                   self.headers.get("x-intelpact-date", ""),
                                   self.headers.get("x-intelpact-agreement", ""), self.body)
        return kid if public is not None and verify_payload(public, signature, payload) \
            else None

    def evidence(self) -> dict[str, str]:
        """What checking its signature again needs: the signed fields and the body."""
        return {"method": self.method.upper(), "target": self.target,
                "date": self.headers.get("x-intelpact-date", ""),
                "agreement": self.headers.get("x-intelpact-agreement", ""),
                "signature": self.headers.get("x-intelpact-signature", ""),
                "body": self.body.decode("utf-8", "replace")}


def sign_request(me: Identity, method: str, target: str, body: bytes = b"") -> dict[str, str]:
    """Headers that authenticate a node-to-node request."""
    date = timestamp(utc_now())
    payload = _request_payload(method, target, date, me.agreement_hash, body)
    return {"X-Intelpact-Party": me.party, "X-Intelpact-Date": date,
            "X-Intelpact-Agreement": me.agreement_hash,
            "X-Intelpact-Signature": f"{me.key_id}:{sign_payload(me.key, payload)}"}


def verify_request(headers: Mapping[str, str], method: str, target: str, body: bytes,
                   peers: Mapping[str, PeerRecord], agreement_hash: str,
                   now: dt.datetime | None = None) -> str:
    """The party that signed this request. Raises FederationError with the reason."""
    party = headers.get("x-intelpact-party", "")
    peer = peers.get(party)
    if peer is None:
        raise FederationError(f"{party or 'the caller'} is not a pinned partner")
    theirs = headers.get("x-intelpact-agreement", "")
    if theirs != agreement_hash:
        raise FederationError(f"{party} applies agreement {theirs or '(none)'}, this node "
                              f"applies {agreement_hash}: nodes whose agreements differ do "
                              "not exchange")
    date = headers.get("x-intelpact-date", "")
    try:
        sent = dt.datetime.strptime(date, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise FederationError("the request date is missing or malformed") from None
    now = now or utc_now()
    if abs(now - sent) > CLOCK_SKEW:
        apart = abs((now - sent).total_seconds())
        raise ClockSkew(f"{party}'s request is dated {date}, {apart:.0f} s "
                        f"{'ahead of' if sent > now else 'behind'} this node's clock "
                        f"({timestamp(now)}); the clocks of partners may differ by at most "
                        f"{CLOCK_SKEW.total_seconds() / 60:.0f} minutes",
                        hint="set the clock of the node that is wrong (NTP); the request "
                        "is retried, nothing is lost. An old request replayed is refused "
                        "the same way")
    kid = headers.get("x-intelpact-signature", "").partition(":")[0]
    if kid != peer.key_id:
        raise FederationError(f"the request is signed with key {kid!r}, not {party}'s "
                              "pinned key")
    if SignedRequest(headers, method, target, body).signer(
            {kid: _public(peer.public_key)}) is None:
        raise FederationError(f"the request signature does not verify for {party}")
    return party


# -- consent tokens (services/consent.py makes them; docs/controls.md) ----------------------

def consent_token(signed: Any) -> ConsentToken:
    """The scope of a signed consent token, as the release decision takes it (its
    signature is not checked here: see Federation.check_consents). Raises
    FederationError when it is not a well-formed token, or names more than a token may
    (MAX_CONSENT_OBJECTS, MAX_CONSENT_VERSIONS)."""
    token = signed.get("consent") if isinstance(signed, dict) else None
    if not isinstance(token, dict) or token.get("intelpact_consent") != CONSENT_VERSION:
        raise FederationError("not a consent token")
    try:
        objects = token["objects"]
        if not isinstance(objects, dict) or not all(
                isinstance(v, list) and all(isinstance(x, str) for x in v)
                for v in objects.values()):
            raise ValueError("objects")
        versions = sum(len(v) for v in objects.values())
        if len(objects) > MAX_CONSENT_OBJECTS or versions > MAX_CONSENT_VERSIONS:
            raise FederationError(
                f"the consent token names {len(objects):,} objects and {versions:,} versions:"
                f" a token may name at most {MAX_CONSENT_OBJECTS:,} objects and "
                f"{MAX_CONSENT_VERSIONS:,} versions")
        # {id: {version: body hash}} of the versions consented to (absent: an older token)
        hashes = token.get("hashes", {})
        if not isinstance(hashes, dict) or not all(
                k in objects and isinstance(v, dict) and all(
                    isinstance(h, str) for h in v.values()) for k, v in hashes.items()):
            raise ValueError("hashes")
        named = sum(len(v) for v in hashes.values())
        if named > MAX_CONSENT_VERSIONS + MAX_CONSENT_OBJECTS:
            raise FederationError(
                f"the consent token names {named:,} body hashes: a token may name at most "
                f"{MAX_CONSENT_VERSIONS + MAX_CONSENT_OBJECTS:,} (one a version it names, and "
                "one a marking-definition's version)")
        return ConsentToken(
            str(token["id"]), str(token["agreement"]), str(token["originator"]),
            str(token["holder"]), str(token["recipient"]),
            {str(k): frozenset(v) for k, v in objects.items()}, str(token["purpose"]),
            parse_timestamp(str(token["issued"])), parse_timestamp(str(token["expires"])),
            str(signed.get("signature", "")),
            {str(k): {str(ver): str(h) for ver, h in v.items()} for k, v in hashes.items()})
    except (KeyError, ValueError, TypeError):
        raise FederationError("the consent token is malformed") from None


class HeldConsents:
    """This node's consent tokens as a holder, read from the store when a release
    decision first needs one (only a third party's object does), then kept."""

    def __init__(self, load: Callable[[], list[tuple[ConsentToken, dict[str, Any]]]]) -> None:
        self._load = load
        self._tokens: list[tuple[ConsentToken, dict[str, Any]]] | None = None

    def signed(self) -> list[tuple[ConsentToken, dict[str, Any]]]:
        if self._tokens is None:
            self._tokens = self._load()
        return self._tokens

    def __iter__(self) -> Any:
        return iter([token for token, _ in self.signed()])


# -- the federation service -------------------------------------------------------------------

@dataclass
class Received:
    object_id: str
    version: str | None
    ok: bool
    message: str
    body_hash: str = ""


def _in_force(party: str, agreement: Agreement) -> tuple[str, str, str]:
    """What a catch-up for ``party`` is done once for (Federation.catch_up): the
    agreement text in force (an amendment is another text: what it newly allows is
    queued then)."""
    return party, agreement.id, agreement.content_hash


class Federation:
    def __init__(self, me: Identity, policy: Policy, markings: Markings, store: Store,
                 audit: AuditLog) -> None:
        self.me = me
        self.policy = policy
        self.markings = markings
        self.store = store
        self.audit = audit
        self._unused_tokens: set[str] = set()  # consent requests whose token is not used
        # the partners queued everything releasable once the agreement came into force
        # (catch_up): (party, the agreement's id, its date of entry into force)
        self._caught_up: set[tuple[str, str, str]] = set()
        # requests the federation listener refused, audited (``refuse``) per partner and
        # reason at most once every 10 s, each record saying how many it stands for: a
        # partner retrying a refused request (its courier backs off to 30 s) cannot fill
        # the log (interfaces/federation.py)
        self.refusals = Sampled(audit, "refuse")
        # the reclassifications kept here about some objects (Controls.raises, which sets
        # it): a version older than one arrives joined with them
        self.reclassifications: Callable[[Sequence[str]], Raises] = lambda ids: {}
        # tells a partner pinned now of our reclassifications of what is queued for it
        # (Controls, which sets it)
        self.on_pinned: Callable[[str], Any] = lambda party: None

    def peers(self) -> dict[str, PeerRecord]:
        return {p.party: p for p in self.store.peers()}

    def signer(self) -> Identity:
        """This node as it signs what partners verify under every key it has had
        (objects, marking-definitions, consent tokens, notices, compromise messages, its
        card): ``me``, unless another process's key rotation has retired the key this
        process holds. One store query: asked once per publication, notice, token or
        report, not per object. Raises KeyRetired, saying to restart."""
        kid = self.me.key_id
        bound = self.store.retired_keys(self.me.party).get(kid)
        if bound is not None:
            raise KeyRetired(f"this process holds retired key {kid}: restart it (a key "
                             f"rotation retired it at the audit checkpoint of size {bound}; "
                             "it signs nothing more)",
                             hint="restart this node's processes (intelpact serve): they "
                             "load the new key")
        return self.me

    def keys_of(self, party: str) -> dict[str, Ed25519PublicKey]:
        """Every key ``party`` has signed with: old keys stay valid for old signatures."""
        keys = {kid: _public(pub) for kid, pub in self.store.party_keys(party).items()}
        if party == self.me.party:
            keys[self.me.key_id] = self.me.key.public_key()
        return keys

    def log_keys(self, party: str) -> list[LogKey]:
        """The keys ``party``'s audit checkpoints are verified with: a retired key only up
        to its bound, the last checkpoint it signed (docs/audit.md, "Keys and rotation")."""
        mine = self.me.key.public_key() if party == self.me.party else None
        return log_keys(self.store, party, mine)

    # -- key rotation -------------------------------------------------------------------
    def announce_rotation(self, old: Ed25519PrivateKey, new: Ed25519PrivateKey,
                          last_size: int, checkpoint: str) -> dict[str, Any]:
        """A rotation announcement: the new key, and the old key's bound (``last_size``)
        with its final checkpoint (``checkpoint``, signed by the old key), signed by the
        old key and by the new one."""
        body = {"intelpact_key_rotation": 1, "party": self.me.party,
                "old_key_id": key_id(public_raw(old)), "new_key_id": key_id(public_raw(new)),
                "new_public_key": public_key_b64(new), "last_size": last_size,
                "checkpoint": checkpoint, "issued": timestamp(utc_now())}
        return {**body, "signature_old": sign_payload(old, body),
                "signature_new": sign_payload(new, body)}

    def accept_rotation(self, sender: str, announcement: Any,
                        request: SignedRequest | None = None) -> str:
        """Pin a partner's new key from its announcement, delivered by ``sender`` itself
        (in ``request``); returns the new key id.

        The old key is retired at the bound the announcement carries, the size of its
        final checkpoint, which is witnessed like gossip: a different root for a size held,
        or a larger checkpoint held than the final one, is a rewritten history (the alert,
        and the rotation is refused); a final checkpoint larger than the largest held
        needs a consistency proof from it (``announcement["consistency"]``, outside the
        signed body), else ProofNeeded says from what size. A proof that does not hold
        is evidence against the sender only if ``request``, which carries it, is signed by
        the sender's old or new key: then the alert keeps it, with the signed request;
        otherwise nothing says the proof is the sender's, so the rotation is refused with
        no alert. An announcement without a
        bound (made by an older intelpact) retires the old key at the largest checkpoint
        of the sender's log held here: what it is known to have signed, no more. The
        partner's new key, the old one's bound, its final checkpoint, the new pinned
        record and the ``key-rotate`` event are written in one transaction."""
        if not isinstance(announcement, dict) or \
                announcement.get("intelpact_key_rotation") != 1:
            raise FederationError("not a key rotation announcement")
        peer = self.peers().get(sender)
        if peer is None or announcement.get("party") != sender:
            raise FederationError(f"{sender} is not a pinned partner, or the announcement "
                                  "names another party")
        body = {k: v for k, v in announcement.items()
                if k not in ("signature_old", "signature_new", "consistency")}
        new_id = str(body.get("new_key_id"))
        if new_id == peer.key_id:
            return new_id  # already applied: announcements are delivered at least once
        if body.get("old_key_id") != peer.key_id:
            raise FederationError(f"the announcement rotates key "
                                  f"{shown(repr(body.get('old_key_id')))}, "
                                  f"but {sender}'s pinned key is {peer.key_id}")
        old_public = _public(peer.public_key)
        if not verify_payload(old_public, str(announcement.get("signature_old")), body):
            raise FederationError("the announcement is not signed by the pinned (old) key")
        new_public = _public(str(body.get("new_public_key")))
        if key_id(public_raw(new_public)) != new_id or \
                not verify_payload(new_public, str(announcement.get("signature_new")), body):
            raise FederationError("the announcement's new key does not sign it")
        final = self._final_checkpoint(sender, body, LogKey(peer.key_id, old_public))
        proof = announcement.get("consistency")
        signer = request.signer({peer.key_id: old_public, new_id: new_public}) \
            if request is not None else None
        by_proof = False  # the conflict found, if any, rests on the proof not holding
        when = timestamp(utc_now())

        def judge(held: HeldCheckpoints) -> tuple[int, list[AuditEvent]]:
            """Under the store's write lock, with the checkpoints of ``sender`` held."""
            top = held.largest()
            largest = top[0] if top else 0
            if final is None:
                bound = largest
                log.warning("%s's key rotation announcement names no bound for its old key "
                            "%s (an older intelpact): retired at the largest checkpoint of "
                            "its log held here, %d", sender, peer.key_id, bound)
            else:
                bound, root, _ = final
                if 0 < largest < bound and (not isinstance(proof, dict)
                                            or proof.get("from") != largest):
                    raise ProofNeeded(largest)
                problem = _conflict(sender, held, bound, root, proof) if largest else None
                if problem is not None:
                    nonlocal by_proof
                    by_proof = largest < bound  # the checkpoints alone do not conflict
                    if by_proof and signer is None:
                        raise _Unproven(problem)
                    raise _Rewritten(problem)
            return bound, [self.audit.event(
                "key-rotate", party=sender, actor=sender, old_key_id=peer.key_id,
                new_key_id=new_id, last_size=bound, announced=final is not None)]

        try:
            self.store.accept_rotation(
                sender, peer.key_id,
                PeerRecord(sender, peer.url, str(body["new_public_key"]), new_id,
                           peer.tls_cert, peer.tls_fingerprint, peer.card, when), final, judge)
        except _Unproven as exc:
            raise FederationError(f"{exc}; the proof comes in a request {sender} did not "
                                  "sign (with its old or its new key), so it is no evidence "
                                  f"against {sender}: the rotation is refused, with no alert",
                                  hint="send the announcement again with a proof from that "
                                  "size, in a signed request") from None
        except _Rewritten as exc:
            problem = (f"{exc}: {sender} has rewritten its audit history, and its key "
                       f"rotation's final checkpoint (of its old key {peer.key_id}) is not "
                       "consistent with the checkpoints of it held")
            signed = request.evidence() if by_proof and request is not None else None
            self.audit.alert("history-rewritten", sender, f"{problem}. The final checkpoint "
                             "is kept in this alert's audit event" + (
                                 f", with the consistency proof and the request, signed by "
                                 f"{sender}'s key {signer}, that carried it" if signed
                                 else "") + ".",
                             once=True, note=final[2] if final else "", request=signed)
            raise FederationError(f"{problem}: the rotation is refused",
                                  hint="tell your security officer (intelpact audit alerts "
                                  "DIR)") from None
        return new_id

    @staticmethod
    def _final_checkpoint(sender: str, body: Mapping[str, Any], old: LogKey
                          ) -> tuple[int, bytes, str] | None:
        """The old key's final checkpoint an announcement carries, (size, root, note),
        signed by the old key for the size it names as its bound; None when it names no
        bound (an older intelpact's announcement)."""
        if "last_size" not in body and "checkpoint" not in body:
            return None
        bound, note = body.get("last_size"), body.get("checkpoint")
        if not isinstance(bound, int) or isinstance(bound, bool) or bound < 0 or \
                not isinstance(note, str):
            raise FederationError("the announcement's last_size is not a size, or its "
                                  "checkpoint is not a signed note")
        try:
            size, root = verify_checkpoint_note(note, log_origin(sender), [old])
        except AuditError as exc:
            raise FederationError(f"the announcement's final checkpoint is not the old "
                                  f"key's: {exc.message}") from None
        if size != bound:
            raise FederationError(f"the announcement retires the old key at size {bound}, "
                                  f"but its final checkpoint is of size {size}")
        return size, root, note

    def add_peer(self, card: Any) -> tuple[PeerRecord, int]:
        """Pin a partner from its card; queue everything already releasable to it."""
        peer = check_card(card, self.me, self.policy.agreement.parties)
        bound = self.store.retired_keys(peer.party).get(peer.key_id)
        if bound is not None:
            # an old card, made before a rotation: pinned, the retired key would be taken
            # for the partner's current one (its consent tokens, its requests)
            raise FederationError(f"the card carries {peer.party}'s key {peer.key_id}, but "
                                  f"{peer.party} retired key {peer.key_id} in a key rotation "
                                  f"(it signs nothing past its audit checkpoint of size "
                                  f"{bound}): an old card is not pinned again",
                                  hint=f"ask {peer.party} for its current card (intelpact card "
                                  "DIR)")
        # a request's sender is the partner whose card pins the client's TLS certificate
        # (tls_sender): one certificate names one partner
        mine = self.me.tls_cert_pem and x509.load_pem_x509_certificate(
            self.me.tls_cert_pem.encode()).public_bytes(serialization.Encoding.DER)
        if mine and der_fingerprint(mine) == peer.tls_fingerprint:
            raise FederationError(f"{peer.party}'s card carries this node's own TLS "
                                  "certificate", hint="each node makes its own (intelpact init)")
        taken = [p.party for p in self.store.peers()
                 if p.party != peer.party and p.tls_fingerprint == peer.tls_fingerprint]
        if taken:
            raise FederationError(f"{peer.party}'s card carries the TLS certificate pinned "
                                  f"for {taken[0]}: which of them calls could not be told",
                                  hint="each node makes its own (intelpact init)")
        self.store.add_peer(peer, [self.audit.event("peer-add", party=peer.party,
                                                    actor=operator(), url=peer.url,
                                                    key_id=peer.key_id,
                                                    tls_fingerprint=peer.tls_fingerprint)])
        if self.policy.agreement.in_force_now:  # queued now: no catch-up needed after
            self._caught_up.add(_in_force(peer.party, self.policy.agreement))
        queued = self._queue_releasable(peer.party)
        # an older version of an object we reclassified goes under its old marking: the
        # partner is told of the reclassification, as its holders were
        self.on_pinned(peer.party)
        return peer, queued

    def _queue_releasable(self, party: str) -> int:
        """Queue for ``party`` every stored object the release decision allows it now
        (each with the definitions it cites: ``Store.enqueue``, which queues no entry
        twice), but its own objects: the partner originated them, they never go back
        to it. How many entries that added (one queued already is not counted)."""
        labels = self.store.labels()
        return self.store.enqueue(party, lambda row: row.originator != party and
                                  self._may_release(labels[row.banner_id], party,
                                                    row).allowed)

    def catch_up(self, party: str) -> int | None:
        """Queue for ``party`` what the agreement's state held back, once it allows it:
        a text pinned in-force ahead of its date of entry into force (or a draft) lets
        nothing be queued, and what was published meanwhile was never queued after.
        Once the text pinned is in force today, everything releasable to ``party`` is
        queued (as ``peer add`` does), once per partner and text pinned: so an
        amendment that releases more (a level covered, a community shared) has what it
        newly allows go, what was delivered already staying as it is (Store.enqueue
        queues no entry twice). Recorded in the audit log (``peer-catch-up``, with the
        text's hash, its date of entry into force and how many entries it queued), so a
        restart does not scan the store again, and remembered here, so a round costs
        nothing once done. Returns how many it queued; None when not due."""
        agreement = self.policy.agreement
        key = _in_force(party, agreement)
        if key in self._caught_up or not agreement.in_force_now:
            return None
        for record in self.store.latest_audit(AuditFilter(kinds=("peer-catch-up",),
                                                          party=party, limit=1)):
            said = json.loads(record.body)
            if (party, said.get("agreement"), said.get("agreement_hash")) == key:
                self._caught_up.add(key)
                return None
        queued = self._queue_releasable(party)
        self.audit.record(self.audit.event(
            "peer-catch-up", party=party, actor=self.me.party, agreement=agreement.id,
            version=agreement.version, agreement_hash=agreement.content_hash,
            in_force=str(agreement.in_force), queued=queued))
        self._caught_up.add(key)
        if queued:
            log.info("queued %d entries for %s: agreement %s is in force", queued, party,
                     agreement.id)
        return queued

    # -- consent tokens ---------------------------------------------------------------
    def held_consents(self) -> HeldConsents:
        """The consent tokens originators gave this node (as a holder) that are valid
        now and signed by their originator's pinned key (one signed by a key the
        originator has retired since is not used: it is re-issued): read once, when a
        release decision first needs them."""

        def load() -> list[tuple[ConsentToken, dict[str, Any]]]:
            now = utc_now()
            held = []
            peers = self.peers()
            for record in self.store.consents():
                if record.direction != "out" or record.status != "approved" or \
                        record.token is None:
                    continue
                signed = json.loads(record.token)
                try:
                    token = consent_token(signed)  # verified when it arrived
                except FederationError as exc:  # kept before a token's size was bounded
                    self._unused(record.request_id, exc.message)
                    continue
                peer = peers.get(token.originator)
                if peer is None or signed.get("key_id") != peer.key_id:
                    # its originator rotated since: it re-issues the token under its new
                    # key (Consents.reissue), and until then nothing goes on this one
                    self._unused(record.request_id, f"it is not signed by "
                                 f"{token.originator}'s pinned key (a key it retired, or "
                                 "it is no longer pinned): waiting for the token re-issued "
                                 "under its current key")
                    continue
                if token.holder == self.me.party and token.issued <= now < token.expires:
                    held.append((token, signed))
            return held

        return HeldConsents(load)

    def _unused(self, request_id: str, why: str) -> None:
        """Say once per process why the token of consent request ``request_id`` is not
        used for release."""
        if request_id not in self._unused_tokens:
            self._unused_tokens.add(request_id)
            log.warning("consent request %s: its token is not used: %s", request_id, why)

    def consents_for(self, party: str, rows: Sequence[StoredObject],
                     held: HeldConsents | None = None) -> list[dict[str, Any]]:
        """The signed tokens that let ``rows`` of a third party go to ``party``: they
        travel with the objects, for the recipient to verify."""
        if all(r.originator == self.me.party for r in rows):
            labels = self.store.labels()  # ours, unless one holds a third party's portion
            if all(labels[r.banner_id].sources <= {self.me.party, party} for r in rows):
                return []
        ids = {r.object_id for r in rows}
        return [signed for token, signed in (held or self.held_consents()).signed()
                if token.recipient == party and ids & set(token.objects)]

    def consent_unsigned(self, signed: Mapping[str, Any], token: ConsentToken,
                         peers: Mapping[str, PeerRecord] | None = None) -> str | None:
        """Why ``signed`` (read as ``token``) is not its originator's consent, or None
        when the originator's pinned (current) key signed it. A token signed by a key the
        originator has retired is refused: a retired key's private half may have leaked
        (an old backup), and a token from it would let a holder pass the originator's
        objects on with a consent never given. An originator re-issues its consents under
        its new key as it rotates (``Consents.reissue``). ``peers``: read if not given."""
        origin, kid = token.originator, str(signed.get("key_id"))
        peer = (self.peers() if peers is None else peers).get(origin)
        if origin != self.me.party and peer is not None and kid != peer.key_id and \
                kid in self.store.retired_keys(origin):
            return (f"is signed by {origin}'s retired key {shown(kid)}: a retired key "
                    f"vouches for no consent ({origin} re-issued the consents it gave "
                    "under its new key when it rotated)")
        if origin == self.me.party or peer is None or kid != peer.key_id or \
                not verify_payload(_public(peer.public_key), token.signature,
                                   signed["consent"]):
            return f"is not signed by a key of {shown(origin)}: forged or altered"
        return None

    def check_consents(self, sender: str, signed_tokens: Any
                       ) -> tuple[list[ConsentToken], list[str]]:
        """Verify the consent tokens ``sender`` sent with objects: each must be signed by
        its originator's pinned key (not a retired one: ``consent_unsigned``), under our
        agreement text, for ``sender`` to us. Returns the tokens that check, and why the
        others do not."""
        good: list[ConsentToken] = []
        problems: list[str] = []
        if isinstance(signed_tokens, tuple):
            signed_tokens = list(signed_tokens)
        if not isinstance(signed_tokens, list):
            return good, ["the consent tokens are not a list"] if signed_tokens else []
        peers = self.peers()
        for signed in signed_tokens:  # at most MAX_ENVELOPE: see receive
            try:
                token = consent_token(signed)
            except FederationError as exc:
                problems.append(exc.message)
                continue
            body = signed["consent"]
            unsigned = self.consent_unsigned(signed, token, peers)
            if unsigned is not None:
                problems.append(f"consent {shown(token.token_id)} {unsigned}")
            elif body.get("agreement_hash") != self.me.agreement_hash:
                problems.append(f"consent {shown(token.token_id)} is under another "
                                "agreement text")
            elif token.holder != sender or token.recipient != self.me.party:
                problems.append(f"consent {shown(token.token_id)} is for "
                                f"{shown(token.holder)} to {shown(token.recipient)}, not "
                                f"{sender} to {self.me.party}")
            else:
                good.append(token)
        return good, problems

    # -- sending ------------------------------------------------------------------------
    def _may_release(self, banner: Label, party: str, row: StoredObject | NewObject,
                     consents: Iterable[ConsentToken] = ()) -> Any:
        partner = PartnerNode(party, self.policy.agreement.id)
        decision = self.policy.may_release(banner, partner, holder=self.me.party,
                                           object_id=row.object_id, version=row.version,
                                           consents=consents)
        third = banner.sources - {self.me.party, party}
        if decision.allowed and third and row.originator == self.me.party and \
                self.policy.agreement.rules.third_party_consent:
            withdrawn = self._withdrawn(row, partner, third, consents)
            if withdrawn is not None:
                return withdrawn
        return decision

    def _withdrawn(self, row: StoredObject | NewObject, partner: PartnerNode,
                   third: Collection[str], consents: Iterable[ConsentToken]
                   ) -> Decision | None:
        """The denial of this node's own ``row``, released to ``partner`` with the consent
        of ``third`` (parties whose information it holds), once one of them has withdrawn
        from this node an object of theirs it derives from (``derived_from``): recalled
        it, or reclassified it beyond this node's release (purged here), or so that the
        partner may not receive it even with the consent. Their own object would go no
        more (purged here, or stopped by its marking), and neither does what this node
        derived from it: their consent covers it no more. None if none has."""
        reached, latest = derived_from(self.store, [row.body], self.me.party)
        gone = sorted((oid, who) for oid, who in self.store.withdrawn(reached)
                      if who in third) if reached else []
        if gone:
            oid, who = gone[0]
            return Decision(False, "consent", f"{who} withdrew {oid} from {self.me.party} "
                            f"(recalled, or reclassified beyond its release): "
                            f"{row.object_id} derives from it, and {who}'s consent covers "
                            "it no more")
        labels = self.store.labels()
        for oid in reached:
            source = latest.get(oid)
            if source is None or source.originator not in third:
                continue
            # as this node's version carries it, with the consents held for that version
            decision = self.policy.may_release(labels[source.banner_id], partner,
                                               holder=self.me.party, object_id=row.object_id,
                                               version=row.version, consents=consents)
            if not decision.allowed:
                return Decision(False, decision.rule, f"{row.object_id} derives from {oid}, "
                                f"which {source.originator} marks so that "
                                f"{partner.party} may not receive it: {decision.reason}")
        return None

    def may_release_now(self, banner: Label, party: str, row: StoredObject,
                        consents: Iterable[ConsentToken] | None = None) -> bool:
        """The release decision taken again as an object leaves (the agreement may have
        ended, a consent expired, since it was queued). The caller has checked that
        ``party`` is pinned. ``consents``: the tokens held (default: read if needed)."""
        held = self.held_consents() if consents is None else consents
        return bool(self._may_release(banner, party, row, held).allowed)

    def outgoing(self, party: str, entries: Sequence[tuple[int, StoredObject]],
                 consents: Iterable[ConsentToken] | None = None, *, more: bool = False
                 ) -> tuple[list[tuple[int, StoredObject]], list[int]]:
        """Which of ``party``'s outbox ``entries`` (outbox id, row) leave now, in one
        envelope: each object the release decision still allows, and each marking-definition
        it allows on its own label or that an object leaving cites (queued with it: the
        partner accepts it with that object, docs/federation.md). Returns those, and the ids
        of definitions held back for the next envelope: when ``more`` (the batch was cut at
        its size), a definition no object here needs may be needed by one after the cut."""
        held = self.held_consents() if consents is None else consents
        labels = self.store.labels()
        going: set[int] = set()
        waiting: dict[str, list[int]] = {}  # definitions not releasable on their own
        for oid, row in entries:
            if self._may_release(labels[row.banner_id], party, row, held).allowed:
                going.add(oid)
            elif row.object_type == "marking-definition":
                waiting.setdefault(row.object_id, []).append(oid)
        if waiting:
            for oid, row in entries:
                if oid in going and row.object_type != "marking-definition" and \
                        any(mid in row.body for mid in waiting):
                    for ref in cited_markings(json.loads(row.body)):
                        going.update(waiting.pop(ref, ()))
        later = [oid for oids in waiting.values() for oid in oids] if more else []
        return [(oid, row) for oid, row in entries if oid in going], later

    def passed_definitions(self, party: str, rows: Sequence[StoredObject],
                           consents: Iterable[ConsentToken] | None = None
                           ) -> list[StoredObject]:
        """The marking-definitions the objects among ``rows`` (a pulled page, as it
        leaves) cite that go only with them, that are not among ``rows`` and that
        ``party`` has not had: queued for it (with an earlier object that cites them),
        they were passed by its pull's cursor without that object (recalled or raised
        since, or beyond the page's bound, MAX_PAGE rows), and the partner refuses an
        object citing a definition it does not hold. They go with these objects
        (docs/federation.md, "Definitions travel with the objects that cite them").
        Cheap for a page that needs none: its bodies are searched for ids, the store is
        asked only of those not in the page, and a body is parsed only once a definition
        it names is owed (docs/performance.md, "Definitions carried on a pull")."""
        here = {row.object_id for row in rows}
        found = set(_MARKING_ID.findall("\n".join(
            row.body for row in rows if row.object_type != "marking-definition")))
        wanted = sorted(found - here)
        if not wanted:
            return []
        held = self.held_consents() if consents is None else consents
        labels = self.store.labels()
        first: dict[str, StoredObject] = {}
        for row in self.store.held(wanted):
            if row.object_type == "marking-definition" and \
                    self.store.holds(row.collection_id, row.object_id, row.version,
                                     row.body_hash) and \
                    (row.object_id not in first or row.seq < first[row.object_id].seq):
                first[row.object_id] = row
        owed = {mid: row for mid, row in first.items()
                # one allowed on its own label went in its own turn; one never queued for
                # the partner, or that it has, is not owed
                if not self._may_release(labels[row.banner_id], party, row, held).allowed
                and party in self.store.queued_for(mid)
                and not self.store.disseminations(object_id=mid, party=party)}
        if not owed:
            return []
        # cited as a marking, not merely named (in a description, say): read the bodies
        # that name one, only now that one is owed (the common page parses none)
        cited = {ref for row in rows if row.object_type != "marking-definition"
                 and any(mid in row.body for mid in owed)
                 for ref in cited_markings(json.loads(row.body))}
        return [row for mid, row in sorted(owed.items()) if mid in cited]

    def releaser(self) -> Callable[[NewObject], list[str]]:
        """The release filter for one batch: which partners each object being stored
        goes to. The pinned partners are read once, not once per object; the consent
        tokens held, once if a third party's object needs them."""
        parties = list(self.peers())
        held = self.held_consents()

        def release_to(obj: NewObject) -> list[str]:
            return [party for party in parties if party != obj.received_from
                    and self._may_release(obj.banner, party, obj, held).allowed]

        return release_to

    # -- receiving ----------------------------------------------------------------------
    def receive(self, sender: str, collection_id: str, objects: Sequence[Any],
                consents: Any = ()) -> tuple[list[Received], dict[str, Any]]:
        """Check, store and acknowledge what ``sender`` sent, with the consent tokens
        that came with it. Returns per-object results and the signed receipt. Raises
        Oversized (audited, nothing kept) when it sends more than MAX_ENVELOPE objects or
        consent tokens."""
        for what, items in (("objects", objects), ("consent tokens", consents)):
            problem = too_many(what, items, MAX_ENVELOPE) \
                if isinstance(items, list | tuple) else None
            if problem is not None:
                problem = f"the envelope holds {problem} envelope"
                self.audit.record(self.audit.event("refuse", party=sender, actor=sender,
                                                   reason=problem))
                raise Oversized(problem)
        tokens, problems = self.check_consents(sender, consents)
        retired: dict[str, set[str]] = {}  # each originator's retired keys, once looked up
        results: list[Received] = []
        pending: list[tuple[NewObject, Received]] = []
        definitions = [o for o in objects if isinstance(o, dict)
                       and o.get("type") == "marking-definition"]
        others = [o for o in objects if not (isinstance(o, dict)
                                             and o.get("type") == "marking-definition")]
        # a definition the sender may not release on its own (its level is not exchanged)
        # is taken only with an object here that cites it and that the sender may release
        with_object: list[tuple[NewObject, Received]] = []
        for item in definitions:
            outcome, new = self._check_definition(sender, item, tokens, retired)
            if new is None:
                results.append(outcome)
            elif outcome.ok:
                pending.append((new, outcome))
            else:
                with_object.append((new, outcome))
        # an object citing a definition refused here is refused too: labelled with the
        # definition this node holds under that id, it would not be marked as its
        # originator marked it (perhaps lower)
        unlearnt = {r.object_id: r.message for r in results if not r.ok}
        # the reclassifications kept here about these objects, read once for the envelope
        raises = self.reclassifications(sorted({
            str(o["id"]) for o in others if isinstance(o, dict) and isinstance(o.get("id"),
                                                                               str)})) \
            if others else {}
        sent = frozenset(str(d.get("id")) for d in definitions)
        checked = [self._check_object(sender, collection_id, item, tokens, problems, retired,
                                      raises, sent)
                   for item in others]
        owners = self.store.originators([new.object_id for _, new in checked if new])
        claims: dict[str, set[str]] = {}  # the originators of each id's versions here
        for _, new in checked:
            if new is not None:
                claims.setdefault(new.object_id, set()).add(new.originator)
        accepted: list[tuple[NewObject, Received]] = []
        cited: set[str] = set()
        for item, (outcome, new) in zip(others, checked, strict=True):
            owner = owners.get(new.object_id, new.originator) if new else None
            if new is None:
                results.append(outcome)
                if outcome.ok:  # held already, as received before: what it cites goes too
                    cited.update(cited_markings(item))
            elif owner != new.originator:  # a holder re-versioning someone else's object
                # named alike whoever originated it (this node or a third party), or the
                # answer would tell the sender who did, of an object it may never have
                # been released: the refusal (kept and audited here) shows it is held
                results.append(Received(new.object_id, new.version, False, (
                    f"{new.object_id} is held here as another party's object: only an "
                    f"object's originator issues versions of it, and this version is "
                    f"{new.originator}'s"
                    + (f" (if {sender} originated it, another party issued a version of it "
                       "here first: a conflict for the security officers to settle)"
                       if sender == new.originator else ""))))
            elif len(claims[new.object_id]) > 1 and new.object_id not in owners:
                # not held here: which of them originated it is not known, so none is taken
                results.append(Received(new.object_id, new.version, False, (
                    f"the versions of {new.object_id} sent together are "
                    f"{' and '.join(sorted(claims[new.object_id]))}'s: only an object's "
                    "originator issues versions of it, so none of them is taken")))
            else:
                accepted.append((new, outcome))
                cited.update(new.marking_refs)
        for new, outcome in with_object:
            if new.object_id in cited:
                pending.append((new, Received(new.object_id, None, True, "")))
            else:
                results.append(outcome)
        here = {new.object_id for new, _ in pending}
        holds: dict[str, bool] = {}
        for new, outcome in accepted:
            bad = next((ref for ref in new.marking_refs if ref in unlearnt), None)
            missing = self._unheld(new.marking_refs, here, holds) if bad is None else None
            if bad is not None:
                results.append(Received(new.object_id, new.version, False, (
                    f"it cites marking-definition {bad}, which was refused with it: "
                    f"{unlearnt[bad]}")))
            elif missing is None:
                pending.append((new, outcome))
            else:
                results.append(Received(new.object_id, new.version, False, (
                    f"unknown marking-definition {missing}: this node does not hold it; "
                    "send it with (or before) the objects that use it")))
        marks = [(new.object_id, new.body) for new, _ in pending
                 if new.object_type == "marking-definition"]
        if pending:
            batch = [n for n, _ in pending]
            try:
                stored = self.store.add_objects(
                    collection_id, batch, marks, release=self.releaser(),
                    audit=lambda done: self.audit.by_originator(
                        "receive", [(r.object_id, r.version, n.originator)
                                    for n, r in zip(batch, done, strict=True)
                                    if r.outcome == "added"], party=sender, actor=sender),
                    reclassified=reclassified_versions(raises))
            except (MarkingConflict, ReclassifiedMeanwhile) as exc:
                # another worker stored a different body under a definition's id, or a
                # reclassification of one of these objects was applied since they were
                # joined with those read above: nothing is stored, what was learnt for the
                # batch is forgotten (the stored one applies), and every object is
                # refused: the sender sends it again
                self.markings.forget(mid for mid, _ in marks)
                results += [Received(n.object_id, n.version, False,
                                     f"{exc.message}; send again") for n in batch]
            else:
                for (new, _), added in zip(pending, stored, strict=True):
                    ok = added.outcome in ("added", "exists")
                    results.append(Received(new.object_id, added.version, ok, added.message,
                                            new.body_hash if ok else ""))
        when = timestamp(utc_now())
        refused = [r for r in results if not r.ok]
        if refused:  # every refusal kept with its event, all in one transaction
            self.store.add_refusals(sender, [(r.object_id, r.message) for r in refused], when,
                                    [self.audit.event("refuse", party=sender, actor=sender,
                                                      objects=[(r.object_id, r.version or "")],
                                                      reason=r.message) for r in refused])
        receipt = {"receiver": self.me.party, "sender": sender, "received": when,
                   "agreement": self.me.agreement_hash,
                   "objects": [{"id": r.object_id, "version": r.version,
                                "body_hash": r.body_hash} for r in results if r.ok]}
        return results, {"receipt": receipt, "key_id": self.me.key_id,
                         "signature": sign_payload(self.me.key, receipt)}

    def verify_definition(self, originator: str, definition: Any) -> str:
        """A national marking-definition must be signed by its originator's key: the id
        of the key that signed it."""
        try:
            return verify_object(definition, originator, self.keys_of(originator))
        except SignatureError as exc:
            raise FederationError(f"the marking-definition is not signed by {originator}: "
                                  f"{exc.message}") from None

    def _check_definition(self, sender: str, item: dict[str, Any],
                          consents: Sequence[ConsentToken] = (),
                          retired: dict[str, set[str]] | None = None
                          ) -> tuple[Received, NewObject | None]:
        mid = str(item.get("id", "?"))
        try:
            # what it says, and its originator's signature, before it is compared with
            # one held under its id (Markings.add): else a copy altered where its id does
            # not look, forged by the sender, was refused one way when a third party's
            # definition is held here and another when not, telling the sender which
            # markings that party has shared with this node
            part = parse_marking(self.policy.agreement, item,
                                 statement=self.markings.is_statement)
            body, digest = canonical_body(item)
            if part.kind == "national":  # its originator's signature, before we learn it
                kid = self.verify_definition(str(part.originator), item)
                unvouched = self._unvouched(sender, str(part.originator), kid, mid,
                                            object_version(item), digest, consents, retired)
                stored = self.store.marking(mid) if unvouched is not None else None
                if unvouched is not None and (  # unless held here already, identical
                        stored is None or canonical_body(json.loads(stored))[1] != digest):
                    return Received(mid, None, False, unvouched), None
            self.markings.add(item)
        except (MarkingError, IntelpactError) as exc:
            return Received(mid, None, False, exc.message), None
        origin = part.originator or sender
        # stored under its own label, as at its originator: served to whoever may read
        # what it marks (docs/federation.md, "Definitions travel with the objects...")
        label = definition_label(self.policy.agreement, part, origin)
        new = NewObject(mid, "marking-definition", str(item.get("spec_version", "2.1")),
                        object_version(item), body, digest, label, label, origin, False,
                        received_from=sender)
        # a definition is released on its own where what it marks may go (its own label):
        # the sender must have been allowed to release it to us, as for any other object.
        # Refused so, it is returned with the refusal: ``receive`` takes it after all with
        # an object that cites it, which the sender may release to us.
        allowed = self.policy.may_release(label, PartnerNode(self.me.party,
                                                             self.policy.agreement.id),
                                          holder=sender, object_id=mid,
                                          version=object_version(item), consents=consents)
        if not allowed.allowed:
            return Received(mid, None, False, f"{sender} may not release this to "
                            f"{self.me.party}: {allowed.reason}"), new
        return Received(mid, None, True, ""), new

    def _refused(self, sender: str, banner: Label, oid: str, version: str | None,
                 consents: Sequence[ConsentToken], problems: Sequence[str]) -> Received | None:
        """The refusal of an object ``sender`` may not release to us on ``banner``, with
        the decision's reason (and the consent tokens' problems where consent decided)."""
        allowed = self.policy.may_release(banner,
                                          PartnerNode(self.me.party, self.policy.agreement.id),
                                          holder=sender, object_id=oid, version=version,
                                          consents=consents)
        if allowed.allowed:
            return None
        why = f" (tokens refused: {first(problems, '; ', cut=False)})" if problems and \
            allowed.rule == "consent" else ""
        return Received(oid, version, False, f"{sender} may not release this to "
                        f"{self.me.party}: {allowed.reason}{why}")

    def _unheld(self, refs: Iterable[str], here: set[str], holds: dict[str, bool]
                ) -> str | None:
        """The first of ``refs`` this node does not hold: neither built in, nor stored, nor
        in ``here`` (being stored with it). One this process parsed but refused (sent on its
        own) labels an object, but is not stored: the object would outlive it. ``holds``:
        what was looked up already."""
        for ref in refs:
            if ref in here:
                continue
            held = holds.get(ref)
            if held is None:
                held = holds[ref] = (self.markings.definition(ref) is None  # built in
                                     or self.store.marking(ref) is not None)
            if not held:
                return ref
        return None

    def _unvouched(self, sender: str, originator: str, kid: str, oid: str,
                   version: str | None, digest: str, consents: Sequence[ConsentToken],
                   retired: dict[str, set[str]] | None) -> str | None:
        """Why a version ``sender`` relays (``originator``'s, signed with its key ``kid``,
        of body hash ``digest``) is not taken, or None. A retired key may have leaked: a
        version signed by one is taken from a holder only when a consent token sent with
        it (checked: signed by the originator's current key, for ``sender`` to us) and
        valid now names exactly this body. One the originator delivers itself is taken:
        its request is signed with its pinned key, over its pinned TLS certificate.
        ``retired``: the retired keys of each party looked up already."""
        if sender == originator:
            return None
        cache = {} if retired is None else retired
        keys = cache.get(originator)
        if keys is None:
            keys = cache[originator] = set(self.store.retired_keys(originator))
        if kid not in keys:
            return None
        now = utc_now()
        named = [t for t in consents if t.originator == originator
                 and t.covers(oid, version) and t.issued <= now < t.expires]
        if any(t.names(oid, version, digest) for t in named):
            return None
        other = next((t for t in named if version in t.hashes.get(oid, {})), None)
        why = (f"consent {shown(other.token_id)} names another body for this version: "
               f"not the one {originator} consented to") if other is not None else \
            "no consent token sent with it names this version's body hash"
        return (f"{oid} ({version}) is signed by {originator}'s retired key {kid} and "
                f"relayed by {sender}: a retired key vouches for a version a holder relays "
                f"only with {originator}'s consent, signed by its current key, naming that "
                f"version's body hash; {why}")

    def _check_object(self, sender: str, collection_id: str, item: Any,
                      consents: Sequence[ConsentToken] = (), problems: Sequence[str] = (),
                      retired: dict[str, set[str]] | None = None, raises: Raises | None = None,
                      sent: frozenset[str] = frozenset()) -> tuple[Received, NewObject | None]:
        """Check an object ``sender`` sent (``sent``: the ids of the definitions in the
        same envelope): the outcome, and what to store if it is taken."""
        if not isinstance(item, dict):
            return Received("?", None, False, "not a JSON object"), None
        oid = str(item.get("id", "?"))
        try:  # fast path: exactly this version is held already (pushed, then pulled)
            version, digest = object_version(item), canonical_body(item)[1]
            if self.store.holds(collection_id, oid, version, digest):
                # the release decision all the same, on the label it is held under: a
                # holder relaying a third party's object without consent is refused, not
                # acknowledged in our signed receipt because we had it from its originator
                rows = [r for r in self.store.held([oid], (version,) if version else ("all",))
                        if r.collection_id == collection_id and r.body_hash == digest]
                refused = (self._refused(sender, self.store.labels()[rows[0].banner_id], oid,
                                         version, consents, problems)
                           or self._derived_withdrawn(sender, self.store.labels()[
                               rows[0].banner_id], rows[0])) if rows else None
                return refused or Received(oid, version, True, "already stored (identical)",
                                           digest), None
        except (ValueError, TypeError):
            pass  # malformed: the full checks below say why
        try:
            validate_object(item)
            labels = self.markings.label(item)
        except StixValidationError as exc:
            return Received(oid, None, False, exc.reason), None
        except LabelError as exc:
            return Received(oid, None, False, exc.message), None
        originator = labels.base.originator
        try:
            kid = verify_object(item, originator, self.keys_of(originator))
        except SignatureError as exc:
            cited = [r for r in cited_markings(item) if self.markings.part(r).originator
                     == originator]
            if originator != sender and cited and not sent.intersection(cited):
                # forged under another party's definition held here, not sent with it:
                # refused as one citing a definition not held is, or the answer would
                # tell the sender which of that party's markings this node holds
                return Received(oid, None, False, f"unknown marking-definition {cited[0]}"), None
            return Received(oid, None, False, exc.message), None
        version = object_version(item)
        body, digest = canonical_body(item)
        unvouched = self._unvouched(sender, originator, kid, oid, version, digest, consents,
                                    retired)
        if unvouched is not None:
            return Received(oid, version, False, unvouched), None
        # A version older than a reclassification kept here (a notice applied, or our
        # own) is held at the join of its label and the new marking's, as the notice
        # relabelled the versions held when it was applied: its body still carries the
        # old marking, and whoever sends it late must not bring it in below that.
        base, banner = labels.base, labels.banner
        joined = reclassified_labels(raises, oid, originator, version, base, banner) \
            if raises and version else (base, banner, 0)
        if joined is None:
            return Received(oid, version, False, (
                f"reclassified by {originator} after this version, under a marking that "
                "no longer checks under the agreement in force: not held here")), None
        base, banner, reclassified = joined
        refused = self._refused(sender, banner, oid, version, consents, problems)
        if refused and reclassified:
            return Received(oid, version, False, (
                f"reclassified by {originator} after this version: "
                f"{refused.message}")), None
        if refused:
            return refused, None
        new = NewObject(oid, str(item["type"]), str(item.get("spec_version", "2.1")), version,
                        body, digest, base, banner, originator, bool(labels.portions),
                        received_from=sender, marking_refs=cited_markings(item))
        refused = self._derived_withdrawn(sender, banner, new)
        if refused:
            return refused, None
        return Received(oid, version, True, ""), new

    def _derived_withdrawn(self, sender: str, banner: Label, obj: StoredObject | NewObject
                           ) -> Received | None:
        """The refusal of ``sender``'s own object ``obj`` passed on here with the consent
        of parties whose information it holds (``banner``'s sources), when one of them
        withdrew from this node an object ``obj`` derives from (``derived_from``: a
        recall notice kept here, or only tombstones held): as that party's object itself
        would be refused here (``AddResult`` "recalled"), so is what the sender derived
        from it. The sender is not told of a recall from this node, so it cannot stop
        it; its consent was given before. None if none did."""
        third = banner.sources - {sender, self.me.party}
        if obj.originator != sender or not third or \
                not self.policy.agreement.rules.third_party_consent:
            return None
        reached, _ = derived_from(self.store, [obj.body], sender)
        gone = sorted((oid, who) for oid, who in self.store.withdrawn(reached)
                      if who in third) if reached else []
        if not gone:
            return None
        oid, who = gone[0]
        return Received(obj.object_id, obj.version, False, (
            f"{sender} may not release this to {self.me.party}: {who} withdrew {oid} from "
            f"{self.me.party} (recalled, or reclassified beyond its release), and "
            f"{obj.object_id} derives from it: nothing of it is held here"))

    def pulled(self, party: str, rows: Sequence[StoredObject],
               onward: Callable[[list[StoredObject]], Onward] | None = None
               ) -> list[StoredObject]:
        """Record that ``party`` pulls ``rows``, before they leave. A pull has no receipt:
        what it serves goes into the dissemination record now, with the ``release``
        events, so recalls and reclassifications reach a partner that only pulls.
        Returns the rows it did not hold yet: only those are recorded, and reported to
        their originators (``onward``: the notices and events that do so, kept in the
        same transaction; a partner may ask for one page again and again)."""
        if not rows:
            return []
        by_key = {(r.object_id, r.version, r.body_hash): r for r in rows}
        fresh = self.store.add_pulled(
            party, list(by_key), timestamp(utc_now()),
            lambda keys: self._release_events(party, [by_key[k] for k in keys], "pull"),
            None if onward is None else lambda keys: onward([by_key[k] for k in keys]))
        return [by_key[k] for k in fresh]

    def pushing(self, party: str, entries: Sequence[tuple[int, StoredObject]]) -> None:
        """Record that the outbox ``entries`` are pushed to ``party``, before they leave:
        the ``release`` events of those whose release no earlier push recorded (one event
        per entry, however often it is tried: a partner down for an hour is tried about
        120 times). A push goes into the dissemination record once its receipt verifies
        (``Store.mark_delivered``)."""
        rows = dict(entries)
        self.store.record_release(
            party, list(rows), timestamp(utc_now()),
            lambda fresh: self._release_events(party, [rows[i] for i in fresh], "push"))

    def _release_events(self, party: str, rows: Sequence[StoredObject],
                        how: str) -> list[AuditEvent]:
        return self.audit.by_originator(
            "release", [(r.object_id, r.version, r.originator) for r in rows], party=party,
            actor=self.me.party, how=how)

    def check_receipt(self, party: str, signed: Any,
                      sent: Iterable[StoredObject]) -> list[StoredObject]:
        """Verify a partner's receipt; the versions of ``sent`` it acknowledges, each by
        its id and body hash (not by id alone: an envelope may carry two versions of one
        object, and the partner refuse one of them)."""
        if not isinstance(signed, dict) or not isinstance(signed.get("receipt"), dict):
            raise FederationError(f"{party} returned no receipt")
        peer = self.peers().get(party)
        if peer is None or signed.get("key_id") != peer.key_id:
            raise FederationError(f"the receipt is not signed with {party}'s pinned key")
        receipt = signed["receipt"]
        if not verify_payload(_public(peer.public_key), str(signed.get("signature", "")), receipt):
            raise FederationError(f"{party}'s receipt signature does not verify")
        if receipt.get("receiver") != party or receipt.get("sender") != self.me.party:
            raise FederationError(f"{party}'s receipt names the wrong parties")
        acknowledged = receipt.get("objects")
        if not isinstance(acknowledged, list):
            raise FederationError(f"{party}'s receipt lists no objects")
        held = {(o.get("id"), o.get("body_hash")) for o in acknowledged if isinstance(o, dict)}
        return [row for row in sent if (row.object_id, row.body_hash) in held]
