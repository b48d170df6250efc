"""Signatures on STIX objects: JCS + Ed25519 in the X.590-shaped extension."""

from __future__ import annotations

import copy

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from intelpact.crypto.keys import key_id, public_raw
from intelpact.crypto.signing import (
    SIGNATURES_EXTENSION_ID,
    SignatureError,
    sign_object,
    signatures,
    verify_object,
)

OBJ = {"type": "indicator", "spec_version": "2.1",
       "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f", "name": "x",
       "labels": ["a", "b"], "extensions": {"x-other": {"k": [1, 2]}}}


def keys(*ks: Ed25519PrivateKey) -> dict:
    return {key_id(public_raw(k)): k.public_key() for k in ks}


def test_round_trip_and_input_untouched() -> None:
    key = Ed25519PrivateKey.generate()
    original = copy.deepcopy(OBJ)
    signed = sign_object(OBJ, key, "JPN")
    assert original == OBJ  # the input is never modified
    assert verify_object(signed, "JPN", keys(key)) == key_id(public_raw(key))
    (entry,) = signatures(signed)
    assert entry["algorithm"] == "Ed25519" and entry["signer"] == "JPN"
    assert signed["extensions"]["x-other"] == OBJ["extensions"]["x-other"]
    assert sign_object(OBJ, key, "JPN") == signed  # deterministic


@pytest.mark.parametrize("change", [
    lambda o: o.update(name="y"),
    lambda o: o["labels"].append("c"),
    lambda o: o["extensions"]["x-other"].update(k=[1]),
    lambda o: o["extensions"][SIGNATURES_EXTENSION_ID]["signatures"][0].update(signer="NZL"),
    lambda o: o.pop("labels"),
])
def test_any_change_breaks_the_signature(change) -> None:  # type: ignore[no-untyped-def]
    key = Ed25519PrivateKey.generate()
    signed = copy.deepcopy(sign_object(OBJ, key, "JPN"))
    change(signed)
    with pytest.raises(SignatureError):
        verify_object(signed, "JPN", keys(key))


def test_countersigning_and_unknown_keys() -> None:
    """A countersignature covers the signatures before it, so the object verifies as
    its last signer's; it is not the first signer's object any more: that signature
    does not cover the entry after it."""
    jpn, nzl, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    both = sign_object(sign_object(OBJ, jpn, "JPN"), nzl, "NZL")
    assert verify_object(both, "NZL", keys(nzl))
    with pytest.raises(SignatureError, match="a signature entry follows JPN's"):
        verify_object(both, "JPN", keys(jpn))
    with pytest.raises(SignatureError, match="not a pinned key"):
        verify_object(sign_object(OBJ, stranger, "JPN"), "JPN", keys(jpn))
    with pytest.raises(SignatureError, match="not signed by AUS"):
        verify_object(both, "AUS", keys(jpn))


FOLLOWS = "a signature entry follows JPN's, which does not cover it: not the object JPN signed"


@pytest.mark.parametrize(("after", "problem"), [
    ({"algorithm": "Ed25519", "hash_algorithm": "none", "thumbprint": "x", "signer": "JPN",
      "value": "AAAA", "x_note": "withdrawn"}, "signed with key 'x', which is not a pinned key"),
    ({"signer": "NZL", "x_note": "withdrawn"}, FOLLOWS),
    ("withdrawn", FOLLOWS),
])
def test_nothing_may_follow_the_signature_that_verifies(after: object, problem: str) -> None:
    """Regression: an entry appended after the signer's, which its signature does not
    cover, was ignored, so an object carrying anything there verified as the signer's.
    The last entry is the one checked: the signer's own that does not verify, or
    another's."""
    key = Ed25519PrivateKey.generate()
    signed = copy.deepcopy(sign_object(OBJ, key, "JPN"))
    signed["extensions"][SIGNATURES_EXTENSION_ID]["signatures"].append(after)
    with pytest.raises(SignatureError, match=problem):
        verify_object(signed, "JPN", keys(key))


def test_a_signature_covers_the_entries_before_it() -> None:
    """What the signer countersigned is its content: the object verifies as its own."""
    jpn, nzl = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    both = sign_object(sign_object(OBJ, nzl, "NZL"), jpn, "JPN")
    assert verify_object(both, "JPN", keys(jpn)) == key_id(public_raw(jpn))
    altered = copy.deepcopy(both)
    altered["extensions"][SIGNATURES_EXTENSION_ID]["signatures"][0]["x_note"] = "added"
    with pytest.raises(SignatureError, match="forged or altered"):
        verify_object(altered, "JPN", keys(jpn))


@pytest.mark.parametrize("ext", ["x", {"signatures": "x"}, {"signatures": [1]},
                                 {"signatures": [{"thumbprint": "k"}, None]}])
def test_an_object_whose_signatures_extension_is_malformed_is_not_signed(ext: object) -> None:
    """Regression: an AttributeError (or ValueError) escaped sign_object."""
    with pytest.raises(SignatureError, match="must be an object whose signatures are a list "
                       "of objects"):
        sign_object({**OBJ, "extensions": {SIGNATURES_EXTENSION_ID: ext}},
                    Ed25519PrivateKey.generate(), "JPN")


# -- the fast canonical form agrees with RFC 8785 byte for byte ------------------------------

DATA = __import__("pathlib").Path(__file__).resolve().parent.parent / "data"


def _reference(value: object) -> bytes | None:
    import rfc8785

    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError):
        return None


def _ours(value: object) -> bytes | None:
    from intelpact.crypto.signing import canonical

    try:
        return canonical(value)
    except SignatureError:
        return None


def _corpus_values() -> list[object]:
    import json

    found: list[object] = []
    for path in sorted((DATA / "stix").rglob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        found.extend(doc.get("objects", [doc]) if isinstance(doc, dict) else [doc])
    for path in sorted((DATA / "json" / "JSONTestSuite").rglob("y_*.json")):
        try:
            found.append(json.loads(path.read_bytes()))
        except ValueError:
            continue
    naughty = DATA / "json" / "naughty-strings" / "blns.json"
    strings = json.loads(naughty.read_text(encoding="utf-8"))
    found.extend([{"name": s, s: [s, 1]} for s in strings])
    return found


def test_fast_canonical_form_is_rfc8785_on_every_corpus() -> None:
    values = _corpus_values()
    assert len(values) > 3000
    for value in values:
        assert _ours(value) == _reference(value), value


@settings(max_examples=400, deadline=None)
@given(st.recursive(
    st.none() | st.booleans() | st.integers(-2**60, 2**60) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=20))
def test_fast_canonical_form_is_rfc8785_on_generated_values(value: object) -> None:
    assert _ours(value) == _reference(value)


def test_keys_beyond_the_bmp_sort_as_utf16() -> None:
    value = {"\U0001f600": 1, "\ufb01": 2}  # code points and UTF-16 units disagree
    assert _ours(value) == _reference(value) == '{"\U0001f600":1,"\ufb01":2}'.encode()


@pytest.mark.parametrize("value", [1e-4, -1e-4, 0.00010000000000000002, 9.999999999999998e-05,
                                   0.1, 0.3, 2 / 3, -123.456, 1e15 + 0.5, 4503599627370495.5,
                                   9007199254740991.0, 1e16, 1e21, 1e-7, 5e-324, 14.0])
def test_floats_at_the_edges_of_the_fast_path_are_rfc8785(value: float) -> None:
    """The fast path takes floats with a fraction in [1e-4, 1e16), where Python's repr and
    ECMAScript's Number::toString agree; just outside, the reference library decides."""
    assert _ours({"x": value, "y": [value]}) == _reference({"x": value, "y": [value]})


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=1e-5, max_value=2e16, allow_nan=False))
def test_floats_around_the_fast_range_are_rfc8785(value: float) -> None:
    assert _ours([value, -value]) == _reference([value, -value])


# -- signing serialises once: the signed bytes and the object's text come from one pass -------

def _signature_by_the_book(obj: dict, key: Ed25519PrivateKey, signer: str) -> str:
    """The signature value X.590 defines: Ed25519 over the RFC 8785 bytes of the signed
    object with this signature's value left out (computed without sign_object's shortcut)."""
    import base64

    import rfc8785

    signed = copy.deepcopy(sign_object(obj, key, signer))
    (*_, mine) = signed["extensions"][SIGNATURES_EXTENSION_ID]["signatures"]
    del mine["value"]
    return base64.b64encode(key.sign(rfc8785.dumps(signed))).decode("ascii")


STAND_IN = "\x00intelpact-signature-value\x00"


@pytest.mark.parametrize("obj", [
    OBJ,
    {**OBJ, "x_value": {"value": STAND_IN}},  # not after a comma: not the stand-in's member
    {**OBJ, "x_values": [{"a": 1, "value": STAND_IN}]},  # the member twice: the slow path
    {**OBJ, "description": ',"value":"\\u0000intelpact-signature-value\\u0000"'},
    {**OBJ, "x_float": 14.0},  # not plain: rfc8785 writes it ("14")
    {**OBJ, "x_float": 0.5, "x_é": "日本", "x_big": 2**53 - 1},
    sign_object(OBJ, Ed25519PrivateKey.generate(), "NZL"),  # countersigning
])
def test_signature_is_over_the_rfc8785_form_and_the_text_is_the_objects(obj: dict) -> None:
    import json

    from intelpact.crypto.signing import signed_text

    key = Ed25519PrivateKey.generate()
    signed = sign_object(obj, key, "JPN")
    (*_, mine) = signatures(signed)
    assert mine["value"] == _signature_by_the_book(obj, key, "JPN")
    assert verify_object(signed, "JPN", keys(key))
    signed = sign_object(obj, key, "JPN")
    text = signed_text(signed)
    if text is not None:
        assert text == json.dumps(signed, ensure_ascii=False, sort_keys=True,
                                  separators=(",", ":"))
    assert signed_text(signed) is None  # given once
    assert (text is not None) == (obj.get("x_float") != 14.0 and "x_values" not in obj)


def test_signed_text_only_for_the_object_just_signed_and_unchanged() -> None:
    from intelpact.crypto.signing import signed_text

    key = Ed25519PrivateKey.generate()
    first = sign_object(OBJ, key, "JPN")
    second = sign_object(OBJ, key, "JPN")
    assert signed_text(first) is None  # not the last one signed
    assert signed_text(dict(second)) is None  # an equal copy is not the object
    third = sign_object(OBJ, key, "JPN")
    third["x_more"] = 1  # a property added after signing: the text is not given
    assert signed_text(third) is None
    fourth = sign_object(OBJ, key, "JPN")
    fourth["extensions"] = dict(fourth["extensions"])
    assert signed_text(fourth) is None


def test_an_object_s_signature_is_no_protocol_message_signature() -> None:
    """The node's key signs objects and protocol messages alike: a payload shaped like
    what an object's signature covers is neither signed nor verified as a message
    (tests/services/test_consent.py has the consent token such a signature forged)."""
    from intelpact.services.federation import sign_payload, verify_payload
    key = Ed25519PrivateKey.generate()
    message = {"intelpact_consent": 1, "originator": "JPN", "objects": {}}
    signed = sign_object({**OBJ, **message}, key, "JPN")
    entry = signatures(signed)[-1]
    view = copy.deepcopy(signed)
    del signatures(view)[-1]["value"]
    assert not verify_payload(key.public_key(), entry["value"], view)
    with pytest.raises(SignatureError, match="signatures extension"):
        sign_payload(key, view)
    assert verify_payload(key.public_key(), sign_payload(key, message), message)


def test_a_signature_value_spelt_with_other_padding_bits_is_refused() -> None:
    """64 bytes in base64 end in a character whose last 4 bits are padding: 16 spellings
    of one signature. The value is outside what it signs, so each re-spelling was a new
    body (another hash) of the same signed version: a relaying holder could make one,
    which then stood, at a node that took it first, as a conflict for the originator's
    genuine body. One signature, one spelling, as for the audit log's notes."""
    key = Ed25519PrivateKey.generate()
    signed = sign_object(OBJ, key, "JPN")
    value = signatures(signed)[-1]["value"]
    assert value.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(value[-3])
    respelt = copy.deepcopy(signed)
    signatures(respelt)[-1]["value"] = value[:-3] + alphabet[last ^ 1] + "=="
    with pytest.raises(SignatureError, match="not canonical base64"):
        verify_object(respelt, "JPN", keys(key))
    assert verify_object(signed, "JPN", keys(key))
