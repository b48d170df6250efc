"""C2SP tlog-checkpoint bodies, signed as C2SP signed-notes with Ed25519.

A checkpoint body (c2sp.org/tlog-checkpoint) is three lines, each ending in a
newline, optionally followed by non-empty extension lines::

    example.org/log
    20852163
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

A signed note (c2sp.org/signed-note) is that text, a blank line, then one or more
signature lines: em dash (U+2014), space, key name, space, and
base64(key id (4 bytes) || signature). For Ed25519 (signature type 0x01) the key id is
SHA-256(name || 0x0A || 0x01 || public key)[:4] and the signature covers the text
including its final newline. Signatures by keys the verifier does not know are
ignored, as the spec requires; the verifier's own signature must be present and valid.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import IntelpactError

__all__ = [
    "ED25519_SIGNATURE_TYPE", "MAX_SIGNATURES", "Checkpoint", "CheckpointError", "NoteError",
    "format_checkpoint", "note_key_id", "parse_checkpoint", "sign_note", "verify_note",
]

ED25519_SIGNATURE_TYPE = 0x01
MAX_SIGNATURES = 100  # the limit the spec suggests and Go's note package applies
ROOT_SIZE = 32
MAX_TREE_SIZE = 2**64 - 1
_SIG_PREFIX = "\u2014 "  # em dash, space
_DECIMAL = re.compile(r"(?:0|[1-9][0-9]*)\Z")  # ASCII only, no sign, no leading zeroes
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII controls other than newline


class CheckpointError(IntelpactError):
    """A checkpoint body is malformed (origin, tree size, root hash or extension lines)."""


class NoteError(IntelpactError):
    """A signed note is malformed, or lacks a valid signature by the expected key."""


class Checkpoint(NamedTuple):
    """A parsed checkpoint body."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...]


def _raw_public(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _check_name(name: str) -> None:
    if not name:
        raise NoteError("key name is empty", hint="use the log's origin, e.g. example.org/log")
    if "+" in name or any(ch.isspace() for ch in name):
        raise NoteError(f"key name {name!r} contains a space or '+'",
                        hint="a key name is non-empty UTF-8 without Unicode spaces or '+'")
    if _CONTROL.search(name):
        raise NoteError(f"key name {name!r} contains a control character")


def note_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte key id: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    _check_name(name)
    material = name.encode("utf-8") + b"\n" + bytes([ED25519_SIGNATURE_TYPE])
    return hashlib.sha256(material + _raw_public(public_key)).digest()[:4]


# --- checkpoint bodies ---------------------------------------------------------------------


def format_checkpoint(
    origin: str, size: int, root: bytes, extensions: Sequence[str] = ()
) -> str:
    """The checkpoint body: origin, decimal size, base64 root, then extension lines."""
    if not origin or "\n" in origin or _CONTROL.search(origin):
        raise CheckpointError(f"origin {origin!r} must be one non-empty line")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise CheckpointError(f"tree size {size!r} must be an integer in 0..2^64-1")
    if len(root) != ROOT_SIZE:
        raise CheckpointError(f"root hash is {len(root)} bytes, expected {ROOT_SIZE}")
    for line in extensions:
        if not line or "\n" in line or _CONTROL.search(line):
            raise CheckpointError(f"extension line {line!r} must be one non-empty line")
    lines = [origin, str(size), base64.b64encode(root).decode("ascii"), *extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body strictly; raises :class:`CheckpointError`."""
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint does not end with a newline")
    if _CONTROL.search(text):
        raise CheckpointError("checkpoint contains a control character other than newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(f"checkpoint has {len(lines)} lines, expected at least 3 "
                              "(origin, tree size, root hash)")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise CheckpointError("checkpoint origin line is empty")
    if not _DECIMAL.match(size_text):
        raise CheckpointError(f"tree size {size_text!r} is not a decimal number",
                              hint="ASCII digits, no sign, no leading zeroes")
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise CheckpointError(f"tree size {size_text} does not fit in 64 bits")
    try:
        root = base64.b64decode(root_text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CheckpointError(f"root hash {root_text!r} is not valid base64") from None
    if base64.b64encode(root).decode("ascii") != root_text:
        raise CheckpointError(f"root hash {root_text!r} is not canonical base64")
    if len(root) != ROOT_SIZE:
        raise CheckpointError(f"root hash is {len(root)} bytes, expected {ROOT_SIZE}")
    for line in extensions:
        if not line:
            raise CheckpointError("checkpoint has an empty extension line")
    return Checkpoint(origin, size, root, tuple(extensions))


# --- signed notes --------------------------------------------------------------------------


def _check_text(text: str) -> None:
    if not text or not text.endswith("\n"):
        raise NoteError("note text must be non-empty and end with a newline")
    if _CONTROL.search(text):
        raise NoteError("note text contains a control character other than newline")
    if "\n\n" in text or text.startswith("\n"):
        raise NoteError("note text contains a blank line",
                        hint="a blank line separates the text from its signatures")


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """``text``, a blank line, and the Ed25519 signature line of ``name``."""
    _check_text(text)
    key_id = note_key_id(name, private_key.public_key())
    signature = private_key.sign(text.encode("utf-8"))
    encoded = base64.b64encode(key_id + signature).decode("ascii")
    return f"{text}\n{_SIG_PREFIX}{name} {encoded}\n"


def _parse_signature_line(line: str) -> tuple[str, bytes, bytes]:
    if not line.startswith(_SIG_PREFIX):
        raise NoteError(f"signature line {line[:40]!r} does not start with '\u2014 '")
    name, sep, encoded = line[len(_SIG_PREFIX):].partition(" ")
    if not sep:
        raise NoteError(f"signature line {line[:40]!r} has no space between name and signature")
    _check_name(name)
    try:
        blob = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise NoteError(f"signature by {name!r} is not valid base64") from None
    if base64.b64encode(blob).decode("ascii") != encoded:
        # non-zero padding bits: another spelling of the same bytes; one note, one text
        raise NoteError(f"signature by {name!r} is not canonical base64")
    if len(blob) < 5:
        raise NoteError(f"signature by {name!r} is too short ({len(blob)} bytes)")
    return name, blob[:4], blob[4:]


def verify_note(note: str, name: str, public_key: Ed25519PublicKey) -> str:
    """The note's text, once the signature of ``name`` with ``public_key`` verifies.

    Raises :class:`NoteError` if the note is malformed, if no signature by that key
    is present (including one by ``name`` under an unknown key id), or if it is forged.
    """
    if not isinstance(note, str):  # a BLOB where a row of notes was altered
        raise NoteError("note is not text")
    if _CONTROL.search(note):
        raise NoteError("note contains a control character other than newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not text.strip("\n"):
        raise NoteError("note text is empty")
    if not block or not block.endswith("\n"):
        raise NoteError("note has no signature lines, or they do not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")
    want_id = note_key_id(name, public_key)
    found: bytes | None = None
    other_ids: list[str] = []
    for line in lines:
        signer, key_id, signature = _parse_signature_line(line)
        if signer != name:
            continue  # another key's signature: ignored, as the spec says
        if key_id != want_id:
            other_ids.append(key_id.hex())
            continue
        if found is not None:
            raise NoteError(f"note has two signatures by {name!r} key {want_id.hex()}")
        found = signature
    if found is None:
        if other_ids:
            raise NoteError(f"signature by {name!r} uses unknown key id {other_ids[0]}, "
                            f"expected {want_id.hex()}",
                            hint="check that the right public key is configured for this name")
        raise NoteError(f"note is not signed by {name!r}")
    if len(found) != 64:
        raise NoteError(f"Ed25519 signature by {name!r} is {len(found)} bytes, expected 64")
    try:
        public_key.verify(found, text.encode("utf-8"))
    except InvalidSignature:
        raise NoteError(f"signature by {name!r} does not verify: the note was altered "
                        "or forged") from None
    return text
