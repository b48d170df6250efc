"""A node's Ed25519 signing key: made once by ``intelpact init``, kept as PKCS#8 PEM.

The private key file is created with mode 0o600 and never overwritten: losing
a node's signing key silently would orphan every signature it has made. The
public key travels as its 32 raw bytes in base64 (the node card), and is named
by its key id: the first 16 hex digits of the SHA-256 of those bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import IntelpactError

KEY_ID_LENGTH = 16


# The hint of a key file lost or damaged whose key cannot be made again
RESTORE = ("restore the file from this node's backup of its keys directory "
           "(docs/deployment.md, 'Backups and recovery')")


class KeyFileError(IntelpactError):
    """A key file is missing, unreadable, not a key, or not the expected kind of key."""


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0o600 holding ``data``; refuse if it already exists.

    The file appears whole or not at all: ``data`` is written and flushed to a new file
    of a name of its own beside it (mode 0o600 before any byte lands), which is then
    hard-linked as ``path``; the link, like ``O_EXCL``, fails if ``path`` exists, so a
    key is never written over an existing file. Another process never finds ``path``
    empty or cut short while it is written, nor does a crash leave it so (only the file
    beside it, never used). Raises :class:`KeyFileError`.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    exists = KeyFileError(f"{path}: already exists; refusing to overwrite a key file",
                          hint="move the existing file away first, or use it as it is")
    if path.exists():
        raise exists
    new = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create: {exc.strerror}",
                           hint="check that the directory exists and is writable") from None
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fd, 0o600)  # the umask cannot loosen it, but be explicit
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot write: {exc.strerror}",
                               hint="check free space and permissions") from None
        try:
            os.link(new, path)
        except FileExistsError:
            raise exists from None
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot create: {exc.strerror}",
                               hint="keep the node directory on a file system with hard "
                               "links (any local Linux one)") from None
    finally:
        new.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the name, too, survives a crash
    finally:
        os.close(dir_fd)


def node_secret(path: Path, *, hint: str = RESTORE, make: bool = True) -> str:
    """A secret of the node (32 random bytes, hex; mode 0600 like its keys) kept in
    ``path``, made on first use. Processes of one node that make it at once agree: the
    one whose creation finds the file there reads the other's. A file that holds
    anything else (empty, cut short by a crash as it was made, edited) is refused, with
    ``hint``: a shorter or guessable secret is never used in its place. ``make`` False
    (a node opened read-only): a secret missing is made for this process alone, and
    not kept (what it makes is not kept either)."""
    if not path.exists() and not make:
        return secrets.token_hex(32)
    if not path.exists():
        try:
            write_private_file(path, secrets.token_hex(32).encode())
        except KeyFileError:
            if not path.exists():
                raise
    try:
        secret = path.read_text(encoding="ascii").strip()
    except UnicodeDecodeError:
        secret = ""
    if not re.fullmatch(r"[0-9a-fA-F]{64}", secret):
        raise KeyFileError(f"{path}: not a secret of this node (64 hexadecimal digits)",
                           hint=hint)
    return secret


def generate_signing_key(path: Path) -> Ed25519PrivateKey:
    """Make a new Ed25519 key and save it to ``path`` (PKCS#8 PEM, unencrypted, mode 0o600).

    Refuses to overwrite an existing file. Raises :class:`KeyFileError`.
    """
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )
    write_private_file(Path(path), pem)
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key from a PEM file. Raises :class:`KeyFileError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        # Never made again here: the key is the node's identity, which partners pin
        raise KeyFileError(f"{path}: missing; the signing key is this node's identity, "
                           "which its partners pin, so no new one is made in its place",
                           hint=f"{RESTORE}, or fix signing_key in node.toml if it names "
                           "the wrong file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the signing key: {exc.strerror}",
                           hint="check the file's permissions (it should be readable by "
                           "the node's user only, mode 600)") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError(f"{path}: the signing key is encrypted with a password",
                           hint="intelpact expects an unencrypted PKCS#8 PEM key protected "
                           "by file permissions") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: not a PEM private key",
                           hint="point signing_key at the keys/signing.pem made by "
                           "`intelpact init`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: expected an Ed25519 private key, found "
                           f"{_describe(key)}",
                           hint="node signing keys are Ed25519; make one with "
                           "`intelpact init`") from None
    return key


def _describe(key: object) -> str:
    """A short name for a key of the wrong kind ("an RSA private key", ...)."""
    kinds: tuple[tuple[type, str], ...] = (
        (rsa.RSAPrivateKey, "an RSA"), (ec.EllipticCurvePrivateKey, "an EC"),
        (dsa.DSAPrivateKey, "a DSA"), (ed448.Ed448PrivateKey, "an Ed448"),
        (x25519.X25519PrivateKey, "an X25519"), (x448.X448PrivateKey, "an X448"),
    )
    for cls, label in kinds:
        if isinstance(key, cls):
            return f"{label} private key"
    return f"a {type(key).__name__}"


def public_raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of the public key."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(encoding=serialization.Encoding.Raw,
                            format=serialization.PublicFormat.Raw)


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as standard base64 of its 32 raw bytes (44 characters)."""
    return base64.b64encode(public_raw(key)).decode("ascii")


# The Edwards y-coordinates (sign bit cleared) of the points of small order (1, 2, 4, 8),
# with the non-canonical y = p and p + 1: libsodium's blocklist (ge25519_has_small_order).
_SMALL_ORDER = frozenset(bytes.fromhex(y) for y in (
    "00" * 32, "01" + "00" * 31,
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ec" + "ff" * 30 + "7f", "ed" + "ff" * 30 + "7f", "ee" + "ff" * 30 + "7f"))


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """The inverse of :func:`public_key_b64`; raises :class:`KeyFileError`. A key of
    small order is refused: OpenSSL's verification (as RFC 8032 allows) takes, under one,
    a signature anyone can make over a share of all messages (all of them, for the
    identity point), so whoever pinned it would take anyone's words as its holder's."""
    try:
        raw = base64.b64decode(text, validate=True)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise KeyFileError("not a base64 Ed25519 public key (32 raw bytes)") from None
    if raw[:31] + bytes([raw[31] & 0x7F]) in _SMALL_ORDER:
        raise KeyFileError("a weak Ed25519 public key (a point of small order, under which "
                           "anyone can make signatures that verify)",
                           hint="a node makes its key with `intelpact init` or "
                           "`intelpact key rotate`; ask the partner for its real card")
    return key


def key_id(public_raw: bytes) -> str:
    """The key id: the first 16 lower-case hex digits of SHA-256 over the raw public key.

    Raises :class:`KeyFileError` when ``public_raw`` is not 32 bytes.
    """
    if len(public_raw) != 32:
        raise KeyFileError(f"an Ed25519 public key is 32 bytes, found {len(public_raw)}",
                           hint="pass the raw public key bytes, not PEM or base64")
    return hashlib.sha256(public_raw).hexdigest()[:KEY_ID_LENGTH]
