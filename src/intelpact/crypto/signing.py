"""Signatures on STIX objects: RFC 8785 (JCS) canonical bytes, Ed25519.

A signature travels inside the object, in the intelpact *signatures*
property-extension (:data:`SIGNATURES_EXTENSION_ID`), shaped like ITU-T X.590's
``signatures`` array::

    "extensions": {"extension-definition--19342803-…": {
        "extension_type": "property-extension",
        "signatures": [{"algorithm": "Ed25519", "hash_algorithm": "none",
                        "thumbprint": "<key id>", "signer": "JPN", "value": "<base64>"}]}}

As X.590 says, the signature is computed over the JCS form of the whole object
with the ``value`` of that signature removed; a countersignature also covers the
signatures before it, and an earlier signature ignores the ones added after it.
Changing any signed property therefore needs a new version. One verifier is
used everywhere, and it takes an object as its signer's only when the signer's
signature is the last entry: an entry after it, which that signature does not cover,
could carry anything (a holder relaying the object would add its own words).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Mapping
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import IntelpactError
from ..model.markings import SIGNATURES_EXTENSION_ID
from .keys import key_id, public_raw

__all__ = ["SIGNATURES_EXTENSION_ID", "SignatureError", "canonical", "object_signed_view",
           "sign_object", "signatures", "signed_text", "verify_object"]


class SignatureError(IntelpactError):
    """A signature is missing, malformed, made by an unknown key, or does not verify."""


_SAFE_INTEGER = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: larger integers are refused


def _plain(value: Any) -> bool:
    """True when Python's own JSON encoder gives RFC 8785 bytes for ``value``: only
    strings, booleans, null, lists, objects, integers within the safe range and floats
    with a fraction written without an exponent (JCS formats numbers as ECMAScript does;
    Python agrees on exactly those), and no key with a
    character beyond the Basic Multilingual Plane (JCS sorts keys by UTF-16 code units,
    Python by code points; the orders agree inside the BMP). Everything else, and any
    string holding a lone surrogate, goes to the rfc8785 library."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if -_SAFE_INTEGER <= v <= _SAFE_INTEGER:
                continue
            return False
        if t is float:
            # A float with no exponent in repr (1e-4 <= |v| < 1e16) and a fraction: repr's
            # shortest round-trip digits are ECMAScript's Number::toString (an integral
            # float is "14.0" in Python, "14" in ECMAScript: not plain).
            if 1e-4 <= abs(v) < 1e16 and not v.is_integer():
                continue
            return False
        if t is dict:
            for key, item in v.items():
                if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                    return False
                if type(item) is not str:
                    stack.append(item)
            continue
        if t is list:
            stack.extend(v)
            continue
        return False
    return True


def canonical(obj: Any) -> bytes:
    """RFC 8785 canonical JSON bytes.

    STIX objects are almost always :func:`_plain`, and for those Python's C encoder
    (sorted keys, no whitespace, UTF-8, the same string escapes as ECMAScript's
    JSON.stringify) writes the RFC 8785 bytes ten times faster than a general JCS
    implementation; tests/crypto/test_signing.py checks the two agree byte for byte on
    every corpus and on generated values. The rest goes to the rfc8785 library."""
    if _plain(obj):
        try:
            return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: rfc8785 says what is wrong
    try:
        return rfc8785.dumps(obj)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise SignatureError(f"cannot canonicalise the object: {exc}") from None


def object_signed_view(payload: Any) -> bool:
    """Whether ``payload`` is shaped like what an object's signature covers: a JSON
    object carrying the signatures extension. The node's key signs the objects its
    people publish, whatever else they hold; a protocol message (a consent token, a
    notice, a card) signed with the same key must never be one of those, or an object
    someone published and had signed would pass for a message the node never sent
    (``services/federation.py``, ``sign_payload`` and ``verify_payload``)."""
    if not isinstance(payload, Mapping):
        return False
    extensions = payload.get("extensions")
    return isinstance(extensions, Mapping) and SIGNATURES_EXTENSION_ID in extensions


def _signed_view(obj: Mapping[str, Any], entry_index: int) -> dict[str, Any]:
    """What signature ``entry_index`` covers: the object with the earlier signatures
    (countersigned, values included), this one without its value, and none of the
    later ones (copies only along that path)."""
    ext = dict(obj["extensions"][SIGNATURES_EXTENSION_ID])
    entries = list(ext["signatures"][:entry_index + 1])
    entries[entry_index] = {k: v for k, v in entries[entry_index].items() if k != "value"}
    ext["signatures"] = entries
    return {**obj, "extensions": {**obj["extensions"], SIGNATURES_EXTENSION_ID: ext}}


# A stand-in for the signature value while the object is serialised: its member is cut
# out of the text to give the signed bytes (the value sorts last in its entry, so what
# is left is the JCS form of the signed view), and the real value goes in its place to
# give the object's own JCS text. Its serialised member, a comma, a bare quote and this
# string, occurs inside no JSON string (a quote there is always escaped), so finding it
# exactly once in the text finds the stand-in.
_STAND_IN = "\x00intelpact-signature-value\x00"
_STAND_IN_MEMBER = "," + json.dumps("value") + ":" + json.dumps(_STAND_IN, ensure_ascii=False)

# The key id of the key that signed last: a node signs with one key at a time. Only that
# key is held here, so a retired key is not kept alive once the next one has signed.
_thumbprint_of: tuple[Ed25519PrivateKey, str] | None = None
_last = threading.local()  # the text of what sign_object returned last, per thread


def _thumbprint(key: Ed25519PrivateKey) -> str:
    global _thumbprint_of
    known = _thumbprint_of
    if known is not None and known[0] is key:
        return known[1]
    thumb = key_id(public_raw(key))
    _thumbprint_of = (key, thumb)
    return thumb


def sign_object(obj: Mapping[str, Any], key: Ed25519PrivateKey, signer: str) -> dict[str, Any]:
    """A copy of ``obj`` carrying the signature of ``signer`` (a party) made with ``key``.

    Any earlier signatures stay (countersigning); a signature by the same key id
    is replaced. :func:`signed_text` gives the copy's JCS text, made on the way.
    Raises :class:`SignatureError` when ``obj`` cannot be signed: a signatures extension
    that is not a list of entries, or no RFC 8785 form."""
    # Only the path to the signatures is new; everything else is shared, unchanged.
    out = dict(obj)
    thumb = _thumbprint(key)
    extensions = dict(out.get("extensions") or {})
    found = extensions.get(SIGNATURES_EXTENSION_ID) \
        or {"extension_type": "property-extension", "signatures": []}
    earlier = found.get("signatures", []) if isinstance(found, dict) else None
    if not isinstance(earlier, list) or not all(isinstance(e, dict) for e in earlier):
        raise SignatureError(f"{obj.get('id', 'object')}: the signatures extension "
                             f"({SIGNATURES_EXTENSION_ID}) must be an object whose "
                             "signatures are a list of objects",
                             hint="leave the extension out: the node signs what it "
                             "publishes")
    ext = dict(found)
    extensions[SIGNATURES_EXTENSION_ID] = ext
    out["extensions"] = extensions
    entries = [dict(e) for e in earlier if e.get("thumbprint") != thumb]
    entry = {"algorithm": "Ed25519", "hash_algorithm": "none", "thumbprint": thumb,
             "signer": signer, "value": _STAND_IN}
    entries.append(entry)
    ext["signatures"] = entries
    _last.signed = None
    text = _plain_text(out)
    if text is not None and text.count(_STAND_IN_MEMBER) == 1:
        # canonical(_signed_view(out, index)), without serialising the object twice
        value = key.sign(text.replace(_STAND_IN_MEMBER, "").encode("utf-8"))
        entry["value"] = base64.b64encode(value).decode("ascii")
        _last.signed = (out, extensions, len(out), text.replace(
            _STAND_IN_MEMBER, f',"value":"{entry["value"]}"'))
        return out
    del entry["value"]
    value = key.sign(canonical(_signed_view(out, len(entries) - 1)))
    entry["value"] = base64.b64encode(value).decode("ascii")
    return out


def _plain_text(obj: Any) -> str | None:
    """The RFC 8785 text of ``obj`` when Python's encoder writes it (:func:`canonical`)."""
    if not _plain(obj):
        return None
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None  # a lone surrogate: canonical() sends it to rfc8785
    return text


def signed_text(obj: Mapping[str, Any]) -> str | None:
    """The JCS text of ``obj`` (keys sorted, no whitespace, UTF-8 as is: what
    ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` gives)
    when ``obj`` is what :func:`sign_object` returned last in this thread, and it is
    still that object's; otherwise None. Signing made the text already: a caller that
    stores the object it has just signed need not serialise it again. Given once."""
    last = getattr(_last, "signed", None)
    if last is None or last[0] is not obj:
        return None
    _last.signed = None
    out, extensions, size, text = last
    if out.get("extensions") is not extensions or len(out) != size:
        return None
    return text  # type: ignore[no-any-return]


def signatures(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    ext = (obj.get("extensions") or {}).get(SIGNATURES_EXTENSION_ID)
    if not isinstance(ext, dict):
        return []
    entries = ext.get("signatures")
    return entries if isinstance(entries, list) else []


def verify_object(obj: Mapping[str, Any], signer: str,
                  keys: Mapping[str, Ed25519PublicKey]) -> str:
    """Check that ``signer`` signed all of ``obj`` with one of ``keys`` (key id -> public
    key): its last signature entry is ``signer``'s and verifies. That entry covers the
    whole object, the entries before it included; one after it is covered by no
    signature of ``signer``'s, so an object carrying one is not ``signer``'s as signed.

    Returns the key id that verified. Raises :class:`SignatureError` naming the
    problem: no signature by ``signer``, an entry after it, unknown key, malformed, or
    forged/altered."""
    oid = obj.get("id", "object")
    entries = signatures(obj)
    if not any(isinstance(e, dict) and e.get("signer") == signer for e in entries):
        raise SignatureError(f"{oid}: not signed by {signer}",
                             hint="every object must carry its originator's signature")
    entry = entries[-1]
    if not isinstance(entry, dict) or entry.get("signer") != signer:
        raise SignatureError(f"{oid}: a signature entry follows {signer}'s, which does not "
                             f"cover it: not the object {signer} signed",
                             hint=f"pass on {signer}'s object as {signer} signed it, with "
                             "nothing added")
    if entry.get("algorithm") != "Ed25519" or entry.get("hash_algorithm") != "none":
        raise SignatureError(f"{oid}: unsupported algorithm {entry.get('algorithm')!r}")
    thumb = entry.get("thumbprint")
    key = keys.get(thumb) if isinstance(thumb, str) else None
    if key is None:
        raise SignatureError(f"{oid}: signed with key {thumb!r}, which is not a pinned key "
                             f"of {signer}")
    text = entry.get("value")
    try:
        if not isinstance(text, str):
            raise ValueError(text)
        value = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{oid}: the signature value is not base64") from None
    if base64.b64encode(value).decode("ascii") != text:
        # another spelling of the same bytes (padding bits set): the value is outside
        # what it signs, so each spelling would be another body of the same version
        raise SignatureError(f"{oid}: the signature value is not canonical base64",
                             hint="send the object as its originator signed it")
    try:
        key.verify(value, canonical(_signed_view(obj, len(entries) - 1)))
    except InvalidSignature:
        raise SignatureError(f"{oid}: the signature does not verify: forged or "
                             "altered") from None
    return thumb  # type: ignore[return-value]
