"""Paging cursors a reader cannot read, change or carry to another reader.

The store's cursor says where a page ended: the row's ``seq``, counted over every
object stored, which a reader may not see. Two cursors a reader was given would tell,
by their difference, how many such objects were stored between two they saw (across
collections too). So the node hands out the store's cursor sealed with an AEAD
(AES-256-GCM, a random nonce each time) under a secret of the node, bound to the
person: what a reader holds says nothing, two cursors for the same place differ, and a
cursor changed, forged or given by another person is refused as the store refuses one
from another query (:class:`~intelpact.store.base.BadCursor`, TAXII's 400 "Bad 'next'
value").
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..store.base import BadCursor
from .keys import node_secret

NONCE = 12
PAD = 32  # bytes: every cursor of the store (at most 31) seals to the same length
MAX_CURSOR = 200  # characters: a sealed cursor has 80


class Cursors:
    """Seals and opens the store's paging cursors under one secret of the node."""

    def __init__(self, secret: bytes) -> None:
        self._aead = AESGCM(secret)

    @classmethod
    def from_file(cls, path: Path, *, make: bool = True) -> Cursors:
        """The node's cursor secret (32 bytes, hex; mode 0600 like its keys), made on
        first use: by ``intelpact init``, or when an older node is next opened (not one
        opened read-only, ``make`` False: its cursors are good in this process alone).
        Every worker of ``serve --workers`` reads the same file, so a cursor from one is
        good at another."""
        return cls(bytes.fromhex(node_secret(path, make=make, hint=(
            "stop the node and remove the file: a new secret is made when the node next "
            "opens (readers' paging cursors given before then start over)"))))

    def seal(self, cursor: str, person: str) -> str:
        nonce = os.urandom(NONCE)
        plain = cursor.encode()  # padded: the length of a seq would tell its size
        plain += b"\0" * (-len(plain) % PAD)
        sealed = self._aead.encrypt(nonce, plain, person.encode())
        return base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, token: str, person: str) -> str:
        """The store's cursor in ``token``, if this node sealed it for ``person``."""
        try:
            if len(token) > MAX_CURSOR or not token.isascii():
                raise ValueError
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            plain = self._aead.decrypt(raw[:NONCE], raw[NONCE:], person.encode())
            return plain.rstrip(b"\0").decode()
        except (ValueError, binascii.Error, InvalidTag):
            shown = token if len(token) <= 40 else token[:40] + "…"
            raise BadCursor(f"'next' value {shown!r} does not belong to this query",
                            hint="repeat the request with the same filters and the 'next' "
                            "value it returned") from None
