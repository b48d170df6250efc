"""Each audit event's MAC: proof that this node's own code appended it.

A signed checkpoint proves that no event below it was altered or removed, but not who
wrote each event: someone with write access to the database alone could append a
well-formed event before the next checkpoint, and the node would sign it. So each
event is appended with HMAC-SHA256, under a key the database does not hold, of its leaf
index and its body (``audit_events.mac``); ``audit verify`` and the integrator check it.

The key is kept in the node's key directory (``keys/audit-events.key``, mode 0600, made
on first use, like the node's other secrets), with the leaf index from which every event
carries a MAC (``since``: the log's size when the key was made, 0 for a new node; the
events of an older log, appended before, carry none). Both are out of the database's
reach: an insider who can write only the database can neither forge a MAC nor move the
point from which one is required.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable
from pathlib import Path

from .keys import RESTORE, KeyFileError, write_private_file

_KEY_HEX = 64  # a key's hex digits (32 bytes)


class EventMacs:
    """Make and check the MACs of this node's audit events."""

    def __init__(self, key: bytes, since: int) -> None:
        self._key = key
        self.since = since

    @classmethod
    def from_file(cls, path: Path, size: Callable[[], int],
                  macs_from: Callable[[], int | None], *, make: bool = True) -> EventMacs:
        """The key kept in ``path``, made on first use with ``since`` the log's ``size()``
        then. Refused when the file is missing but the log holds events with a MAC
        (``macs_from()``, the first one's index, or None): the key was lost or removed, and
        making a new one would leave every event before it unchecked. Processes of one
        node that make it at once agree: the one whose creation finds the file there
        reads the other's. ``make`` False (a node opened read-only, which appends
        nothing): a key missing is made for this process alone, and not kept."""
        if not path.exists():
            first = macs_from()
            if first is not None:
                raise KeyFileError(
                    f"{path}: missing, but the audit log holds events from {first} on "
                    "that carry a MAC made with the key it held: without it no new event "
                    "can be proven this node's, nor any old one checked",
                    hint=RESTORE)
            if not make:
                return cls(secrets.token_bytes(32), size())
            made = json.dumps({"key": secrets.token_hex(32), "since": size()})
            try:
                write_private_file(path, made.encode("ascii"))
            except KeyFileError:
                if not path.exists():
                    raise
        return cls.read(path)

    @classmethod
    def read(cls, path: Path) -> EventMacs:
        try:
            data = json.loads(path.read_text(encoding="ascii"))
            key, since = data["key"], data["since"]
            if not (isinstance(key, str) and len(key) == _KEY_HEX
                    and isinstance(since, int) and not isinstance(since, bool)
                    and since >= 0):
                raise ValueError("not a key and a leaf index")
            return cls(bytes.fromhex(key), since)
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read: {exc.strerror}",
                               hint="check the file's permissions") from None
        except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError, UnicodeError
            raise KeyFileError(f"{path}: not an audit event key ({exc})",
                               hint=RESTORE) from None

    def of(self, index: int, body: str | bytes) -> bytes:
        """The MAC of the event at leaf ``index`` with leaf data ``body``."""
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        return hmac.digest(self._key, index.to_bytes(8, "big", signed=True) + data, "sha256")

    def problem(self, index: int, body: str | bytes, mac: object) -> str | None:
        """What is wrong with the MAC stored with the event at ``index``, or None: an
        event before ``since`` needs none; one after needs this node's, of its index
        and body."""
        if index < self.since:
            return None
        if mac is None:
            return (f"event {index} carries no MAC: it was not appended by this node but "
                    "written into the database directly")
        if not isinstance(mac, bytes | bytearray | memoryview) or not hmac.compare_digest(
                bytes(mac), self.of(index, body)):
            return (f"event {index}'s MAC does not verify: it was written, altered or moved "
                    "outside this node")
        return None
