"""C2SP tlog-checkpoint bodies and C2SP signed-notes (Ed25519)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from intelpact.crypto.checkpoint import (
    Checkpoint,
    CheckpointError,
    NoteError,
    format_checkpoint,
    note_key_id,
    parse_checkpoint,
    sign_note,
    verify_note,
)
from intelpact.crypto.merkle import leaf_hash, root
from intelpact.errors import IntelpactError

ORIGIN = "jpn.intelpact.example/audit"
ROOT = root([leaf_hash(b"event %d" % i) for i in range(5)])

# The known-answer vector of Go's golang.org/x/mod/sumdb/note tests (also shown in
# the C2SP signed-note ecosystem): private key "PRIVATE+KEY+PeterNeumann+c74f20a3+
# AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", verifier key "PeterNeumann+c74f20a3+
# ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW".
GO_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = GO_TEXT + (
    "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgK"
    "vqfqdngotpRZb6KE6RyyBwJnAM=\n")


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def note(key: Ed25519PrivateKey) -> str:
    return sign_note(format_checkpoint(ORIGIN, 5, ROOT), ORIGIN, key)


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


# --- key ids --------------------------------------------------------------------------------


def test_key_id_from_the_spec(key: Ed25519PrivateKey) -> None:
    # key ID = SHA-256(key name || 0x0A || signature type 0x01 || public key)[:4]
    want = hashlib.sha256(ORIGIN.encode() + b"\x0a" + b"\x01" + _raw(key)).digest()[:4]
    assert note_key_id(ORIGIN, key.public_key()) == want


def test_go_known_answer() -> None:
    key = Ed25519PrivateKey.from_private_bytes(GO_SEED)
    assert base64.b64encode(b"\x01" + _raw(key)).decode() == (
        "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    assert note_key_id("PeterNeumann", key.public_key()).hex() == "c74f20a3"
    assert sign_note(GO_TEXT, "PeterNeumann", key) == GO_NOTE  # Ed25519 is deterministic
    assert verify_note(GO_NOTE, "PeterNeumann", key.public_key()) == GO_TEXT


# --- checkpoint bodies ----------------------------------------------------------------------


def test_checkpoint_round_trip() -> None:
    body = format_checkpoint(ORIGIN, 5, ROOT)
    assert body == f"{ORIGIN}\n5\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint(body) == Checkpoint(ORIGIN, 5, ROOT, ())
    origin, size, parsed_root, extensions = parse_checkpoint(body)
    assert (origin, size, parsed_root, extensions) == (ORIGIN, 5, ROOT, ())
    with_ext = format_checkpoint(ORIGIN, 0, ROOT, ["timestamp 1700000000"])
    assert parse_checkpoint(with_ext).extensions == ("timestamp 1700000000",)
    big = format_checkpoint(ORIGIN, 2**64 - 1, ROOT)
    assert parse_checkpoint(big).size == 2**64 - 1


B64_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(("body", "message"), [
    (f"{ORIGIN}\n5\n{B64_ROOT}", "newline"),
    (f"{ORIGIN}\n5\n", "expected at least 3"),
    (f"\n5\n{B64_ROOT}\n", "origin line is empty"),
    (f"{ORIGIN}\n05\n{B64_ROOT}\n", "not a decimal"),
    (f"{ORIGIN}\n+5\n{B64_ROOT}\n", "not a decimal"),
    (f"{ORIGIN}\n-1\n{B64_ROOT}\n", "not a decimal"),
    (f"{ORIGIN}\nfive\n{B64_ROOT}\n", "not a decimal"),
    (f"{ORIGIN}\n5 \n{B64_ROOT}\n", "not a decimal"),
    (f"{ORIGIN}\n\u0665\n{B64_ROOT}\n", "not a decimal"),  # Arabic-Indic digit five
    (f"{ORIGIN}\n{2**64}\n{B64_ROOT}\n", "64 bits"),
    (f"{ORIGIN}\n5\n{B64_ROOT[:-4]}\n", "expected 32"),
    (f"{ORIGIN}\n5\n{base64.b64encode(ROOT + b'x').decode()}\n", "expected 32"),
    (f"{ORIGIN}\n5\n{B64_ROOT.rstrip('=')}\n", "not valid base64"),
    (f"{ORIGIN}\n5\n{B64_ROOT[:-2]}!=\n", "not valid base64"),
    (f"{ORIGIN}\n5\n{B64_ROOT}\n\n", "empty extension line"),
    (f"{ORIGIN}\n5\r\n{B64_ROOT}\n", "control character"),
])
def test_malformed_checkpoints(body: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_checkpoint(body)


def test_non_canonical_base64_root() -> None:
    # Same 32 bytes would decode from a last character with non-zero padding bits.
    last = B64_ROOT[-2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sibling = alphabet[alphabet.index(last) ^ 1]
    body = f"{ORIGIN}\n5\n{B64_ROOT[:-2]}{sibling}=\n"
    with pytest.raises(CheckpointError, match="canonical"):
        parse_checkpoint(body)


def test_format_rejects_bad_input() -> None:
    with pytest.raises(CheckpointError, match="origin"):
        format_checkpoint("", 1, ROOT)
    with pytest.raises(CheckpointError, match="origin"):
        format_checkpoint("a\nb", 1, ROOT)
    with pytest.raises(CheckpointError, match="tree size"):
        format_checkpoint(ORIGIN, -1, ROOT)
    with pytest.raises(CheckpointError, match="tree size"):
        format_checkpoint(ORIGIN, True, ROOT)
    with pytest.raises(CheckpointError, match="expected 32"):
        format_checkpoint(ORIGIN, 1, ROOT[:31])
    with pytest.raises(CheckpointError, match="extension"):
        format_checkpoint(ORIGIN, 1, ROOT, [""])


# --- signed notes ---------------------------------------------------------------------------


def test_note_round_trip(key: Ed25519PrivateKey, note: str) -> None:
    text = verify_note(note, ORIGIN, key.public_key())
    assert text == format_checkpoint(ORIGIN, 5, ROOT)
    assert parse_checkpoint(text) == Checkpoint(ORIGIN, 5, ROOT, ())
    sig_line = note[len(text) + 1:]
    assert sig_line.startswith(f"\u2014 {ORIGIN} ")
    blob = base64.b64decode(sig_line.split(" ")[2])
    assert blob[:4] == note_key_id(ORIGIN, key.public_key())
    assert len(blob) == 4 + 64


def test_tampering_with_any_character_fails(key: Ed25519PrivateKey, note: str) -> None:
    public = key.public_key()
    for i, ch in enumerate(note):
        for replacement in ("A" if ch != "A" else "B", ""):
            tampered = note[:i] + replacement + note[i + 1:]
            with pytest.raises(NoteError):
                verify_note(tampered, ORIGIN, public)


def test_other_key_or_name_is_not_accepted(key: Ed25519PrivateKey, note: str) -> None:
    other = Ed25519PrivateKey.generate()
    # Right name, wrong key: the key id does not match, so the signature is unknown.
    with pytest.raises(NoteError, match="unknown key id"):
        verify_note(note, ORIGIN, other.public_key())
    # Signed by another name: ours is missing.
    body = format_checkpoint(ORIGIN, 5, ROOT)
    by_other = sign_note(body, "nzl.intelpact.example/audit", key)
    with pytest.raises(NoteError, match="not signed by"):
        verify_note(by_other, ORIGIN, key.public_key())
    # A forger who knows our name and key id still cannot sign.
    forged_blob = note_key_id(ORIGIN, key.public_key()) + other.sign(body.encode())
    forged = f"{body}\n\u2014 {ORIGIN} {base64.b64encode(forged_blob).decode()}\n"
    with pytest.raises(NoteError, match="does not verify"):
        verify_note(forged, ORIGIN, key.public_key())


def test_foreign_signatures_are_ignored(key: Ed25519PrivateKey, note: str) -> None:
    witness = Ed25519PrivateKey.generate()
    body = format_checkpoint(ORIGIN, 5, ROOT)
    cosigned = note + sign_note(body, "witness.example", witness).split("\n\n", 1)[1]
    assert verify_note(cosigned, ORIGIN, key.public_key()) == body
    assert verify_note(cosigned, "witness.example", witness.public_key()) == body


def test_duplicate_signature_is_malformed(note: str, key: Ed25519PrivateKey) -> None:
    sig_line = note.split("\n\n", 1)[1]
    with pytest.raises(NoteError, match="two signatures"):
        verify_note(note + sig_line, ORIGIN, key.public_key())


def test_malformed_notes(key: Ed25519PrivateKey, note: str) -> None:
    public = key.public_key()
    body, sig_line = note.split("\n\n", 1)
    body += "\n"
    name_and_sig = sig_line[2:]
    cases = {
        "no blank line": (body + sig_line, "no blank line"),
        "no signatures": (body + "\n", "no signature lines"),
        "no final newline": (note[:-1], "do not end with a newline"),
        "hyphen not em dash": (f"{body}\n- {name_and_sig}", "does not start with"),
        "bad base64": (f"{body}\n\u2014 {ORIGIN} !!!notbase64\n", "not valid base64"),
        "short signature": (f"{body}\n\u2014 {ORIGIN} AAAA\n", "too short"),
        "no space": (f"{body}\n\u2014 {ORIGIN}\n", "no space"),
        "control character": (note.replace("\n5\n", "\n5\t\n"), "control character"),
        "empty text": ("\n" + sig_line, "no blank line|text is empty"),
        "too many": (body + "\n" + sig_line * 101, "more than 100"),
    }
    for label, (bad, message) in cases.items():
        with pytest.raises(NoteError, match=message) as info:
            verify_note(bad, ORIGIN, public)
        assert isinstance(info.value, IntelpactError), label


def test_wrong_key_id_with_valid_signature(key: Ed25519PrivateKey, note: str) -> None:
    body, sig_line = note.split("\n\n", 1)
    blob = bytearray(base64.b64decode(sig_line.split(" ")[2]))
    blob[0] ^= 0x01
    bad = f"{body}\n\n\u2014 {ORIGIN} {base64.b64encode(bytes(blob)).decode()}\n"
    with pytest.raises(NoteError, match="unknown key id"):
        verify_note(bad, ORIGIN, key.public_key())


def test_sign_note_rejects_bad_input(key: Ed25519PrivateKey) -> None:
    body = format_checkpoint(ORIGIN, 1, ROOT)
    with pytest.raises(NoteError, match="end with a newline"):
        sign_note(body[:-1], ORIGIN, key)
    with pytest.raises(NoteError, match="end with a newline"):
        sign_note("", ORIGIN, key)
    with pytest.raises(NoteError, match="blank line"):
        sign_note(body + "\n", ORIGIN, key)
    with pytest.raises(NoteError, match="control character"):
        sign_note("a\x00\n", ORIGIN, key)
    for name in ("", "a b", "a+b", "a\u2003b"):
        with pytest.raises(NoteError, match="key name"):
            sign_note(body, name, key)


def test_a_signature_spelt_with_other_padding_bits_is_refused(key: Ed25519PrivateKey,
                                                              note: str) -> None:
    """The last base64 character of a 68-byte blob carries 4 data bits and 2 padding
    bits: flipping a padding bit decodes to the same bytes. Only the canonical spelling
    is accepted, so a note has exactly one valid text."""
    import base64

    head, _, line = note.rstrip("\n").rpartition("\n")
    name_part, _, encoded = line.rpartition(" ")
    blob = base64.b64decode(encoded)
    data = encoded.rstrip("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(data[-1])
    respelt = data[:-1] + alphabet[last ^ 1] + encoded[len(data):]
    assert base64.b64decode(respelt) == blob  # the same bytes
    with pytest.raises(NoteError, match="not canonical"):
        verify_note(f"{head}\n{name_part} {respelt}\n", ORIGIN, key.public_key())
