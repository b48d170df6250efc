"""Signatures on STIX objects: JCS + Ed25519 in the X.590-shaped extension."""

from __future__ import annotations

import copy

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
    jpn, nzl, stranger = (Ed25519PrivateKey.generate() for _ in range(3))
    both = sign_object(sign_object(OBJ, jpn, "JPN"), nzl, "NZL")
    assert verify_object(both, "JPN", keys(jpn)) and verify_object(both, "NZL", keys(nzl))
    with pytest.raises(SignatureError, match="not a pinned key"):
        verify_object(sign_object(OBJ, stranger, "JPN"), "JPN", keys(jpn))
    with pytest.raises(SignatureError, match="not signed by AUS"):
        verify_object(both, "AUS", keys(jpn))
