"""Node signing keys: made once, kept private, read back, named by key id."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from intelpact.crypto import (
    KeyFileError,
    generate_signing_key,
    key_id,
    keys,
    load_signing_key,
    public_key_b64,
)
from intelpact.crypto.keys import node_secret, public_raw
from intelpact.errors import IntelpactError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def test_generate_then_load_gives_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.pem"
    key = generate_signing_key(path)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8
    loaded = load_signing_key(path)
    assert public_raw(loaded) == public_raw(key)
    signature = key.sign(b"message")
    loaded.public_key().verify(signature, b"message")


def test_key_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    generate_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    generate_signing_key(path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        generate_signing_key(path)
    assert path.read_bytes() == before


def test_public_key_b64_is_raw_32_bytes(tmp_path: Path) -> None:
    key = generate_signing_key(tmp_path / "k.pem")
    text = public_key_b64(key)
    raw = base64.b64decode(text, validate=True)
    assert len(raw) == 32 and len(text) == 44
    assert public_key_b64(key.public_key()) == text


def test_key_id_is_sha256_prefix() -> None:
    raw = bytes(range(32))
    assert key_id(raw) == hashlib.sha256(raw).hexdigest()[:16]
    assert len(key_id(raw)) == 16
    with pytest.raises(KeyFileError, match="32 bytes, found 31"):
        key_id(raw[:31])


def test_missing_file_says_restore_it(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="missing; .* partners pin") as info:
        load_signing_key(tmp_path / "absent.pem")
    assert info.value.hint is not None and "restore the file" in info.value.hint
    assert not (tmp_path / "absent.pem").exists()
    assert isinstance(info.value, IntelpactError)


def test_unreadable_file(tmp_path: Path) -> None:
    # a directory stands in for an unreadable file (tests may run as root)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_signing_key(tmp_path)


def test_garbage_is_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(b"not a key\n")
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_signing_key(path)


def test_public_key_pem_is_not_a_private_key(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "pub.pem"
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        load_signing_key(path)


@pytest.mark.parametrize(("make", "kind"), [
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSA"),
    (lambda: ec.generate_private_key(ec.SECP256R1()), "EC"),
])
def test_wrong_key_type(tmp_path: Path, make: Callable[[], PrivateKey], kind: str) -> None:
    other = make()
    path = tmp_path / "k.pem"
    path.write_bytes(other.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    with pytest.raises(KeyFileError, match=f"expected an Ed25519 private key, found an {kind}"):
        load_signing_key(path)


def test_encrypted_key_is_refused_clearly(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "k.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(KeyFileError, match="encrypted"):
        load_signing_key(path)


def test_a_node_secret_is_made_once_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "secret.key"
    made = node_secret(path)
    assert re.fullmatch(r"[0-9a-f]{64}", made) and node_secret(path) == made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", [b"", b"\n", b"short", b"0" * 63, b"0" * 65,
                                     b"g" * 64, b"\xff\xfe" * 32, b"00 " * 32],
                         ids=["empty", "newline", "short", "63", "65", "not hex",
                              "not ASCII", "spaced"])
def test_a_node_secret_that_is_not_64_hex_digits_is_refused(
        tmp_path: Path, content: bytes) -> None:
    """Empty (cut short by a crash as it was made), edited or damaged: never used as a
    weaker secret, and never made again over the file."""
    path = tmp_path / "secret.key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=r"secret.key: not a secret of this node "
                                           r"\(64 hexadecimal digits\)") as refused:
        node_secret(path, hint="do this")
    assert refused.value.hint == "do this" and path.read_bytes() == content


def test_a_node_secret_made_by_two_processes_at_once_is_one_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes open a node whose secret is not made yet (a command run as an older
    node is first opened by a new intelpact): the second finds the first's file after it
    is created, before a byte of it is written. It read an empty file and was refused
    ("not a secret of this node": restore from backup); a key file appears whole or not
    at all."""
    path = tmp_path / "keys" / "cursors.key"
    other: list[object] = []
    fchmod = os.fchmod

    def the_other_process_opens_the_node(fd: int, mode: int) -> None:
        fchmod(fd, mode)
        if not other:  # the first file made, not yet written
            other.append(None)
            try:
                other[0] = node_secret(path)
            except KeyFileError as exc:
                other[0] = exc

    monkeypatch.setattr(keys.os, "fchmod", the_other_process_opens_the_node)
    mine = node_secret(path)
    assert other == [mine]
    assert node_secret(path) == mine and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["cursors.key"]  # nothing left beside it


def test_a_key_file_cut_short_by_a_crash_is_not_left_behind(tmp_path: Path) -> None:
    """A process killed as it writes a key file (a node opened for the first time, a
    rotation's staged key) left an empty file under the key's name, which every later
    opening refused; none is left, and the next one makes the file."""
    path = tmp_path / "keys" / "audit-events.key"
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from intelpact.crypto.keys import node_secret\n"
        "os.fchmod = lambda fd, mode: os._exit(9)\n"
        "node_secret(Path(sys.argv[1]))\n"), str(path)], check=False)
    assert killed.returncode == 9
    assert not path.exists()
    assert re.fullmatch(r"[0-9a-f]{64}", node_secret(path))


# The Edwards y-coordinates of Ed25519's points of small order (orders 1, 2, 4 and 8),
# the non-canonical y = p and p + 1 included, as libsodium's blocklist has them; each
# with either sign bit. tests check them against OpenSSL, not against this list only.
SMALL_ORDER = ["00" * 32, "01" + "00" * 31,
               "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
               "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
               "ec" + "ff" * 30 + "7f", "ed" + "ff" * 30 + "7f", "ee" + "ff" * 30 + "7f"]


@pytest.mark.parametrize("raw", [bytes.fromhex(y[:-2]) + bytes([int(y[-2:], 16) | sign])
                                 for y in SMALL_ORDER for sign in (0, 0x80)])
def test_a_public_key_of_small_order_is_refused(raw: bytes) -> None:
    """Under a key of small order OpenSSL verifies the signature (identity, 0) over a
    good share of all messages (every one, for the identity): whoever pins one takes
    anyone's words as its holder's."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    weak = Ed25519PublicKey.from_public_bytes(raw)
    forged = bytes([1]) + bytes(63)
    verified = 0
    for i in range(64):
        try:
            weak.verify(forged, b"message %d" % i)
            verified += 1
        except InvalidSignature:
            pass
    assert verified  # what makes it weak, seen by OpenSSL itself
    with pytest.raises(KeyFileError, match="small order"):
        keys.public_key_from_b64(base64.b64encode(raw).decode())
    good = public_key_b64(Ed25519PrivateKey.generate())
    assert public_raw(keys.public_key_from_b64(good)) == base64.b64decode(good)
