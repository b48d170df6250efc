"""Strict, safe JSON for request bodies, and compact UTF-8 JSON out.

:func:`parse_json` accepts exactly RFC 8259 JSON text encoded as UTF-8 and
rejects, with one clear line, everything that is ambiguous or cannot be stored
faithfully (docs/json.md lists every choice):

- bytes that are not UTF-8, and a byte order mark (RFC 8259 §8.1: senders
  MUST NOT add one; a TAXII body has no reason to carry one);
- ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON);
- nesting deeper than ``max_depth`` arrays/objects, found by a pre-scan of the
  bytes *before* the recursive parser runs, so deep input never reaches
  ``RecursionError``;
- duplicate keys in one object (RFC 8259 §4 leaves the meaning open; two
  readers may then see two different objects, which is a security risk);
- integers outside the signed 64-bit range, and numbers that overflow a
  float (``1e400``); numbers that underflow become 0.0;
- ``\\u`` escapes that leave a lone UTF-16 surrogate (no UTF-8 form exists).

The top level may be any JSON value; callers check the type they expect.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from .errors import IntelpactError

DEFAULT_MAX_DEPTH = 64
MAX_MAX_DEPTH = 500  # well inside the interpreter's recursion limit
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

_BOM_UTF8 = b"\xef\xbb\xbf"
# bytes.translate table: "[" and "{" become +1, "]" and "}" become -1 (as signed bytes)
_SIGNS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")
_NOT_BRACKETS_OR_QUOTES = bytes(b for b in range(256) if b not in b'[{]}"')
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JsonError(IntelpactError):
    """A body is not acceptable JSON; the message says why in one line."""


def _fail(reason: str) -> JsonError:
    return JsonError(f"invalid JSON: {reason}",
                     hint="send one JSON text in UTF-8 (RFC 8259), without duplicate keys, "
                     "NaN/Infinity or a byte order mark")


def _depth(data: bytes, max_depth: int) -> int:
    """The deepest nesting of arrays/objects in ``data``, or 0 when it is surely within limit.

    Every byte but quotes and brackets is deleted, then strings are cut out (so
    brackets inside them do not count), all in C (bytes.replace, translate, split:
    linear, and the pieces split off are mostly empty); the running sum of
    +1/-1 gives the depth the parser would reach. An unterminated string is cut out to
    the end of the data: the parser stops with an error at that string, so it never
    reaches the brackets after it either. Nor does it pass a backslash outside a
    string, where this scan and the true string structure may part.
    """
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return 0
    # Drop escaped backslashes, then escaped quotes (a JSON escape is a backslash and one
    # character, so pairing backslashes from the left is exact); every quote left opens
    # or closes a string, and the pieces between them alternate outside / inside.
    plain = data.replace(b"\\\\", b"").replace(b'\\"', b"") if b"\\" in data else data
    # Only quotes and brackets matter: keep those before splitting, so that the pieces
    # are short (most of them empty) and cheap to make.
    brackets = b"".join(plain.translate(None, _NOT_BRACKETS_OR_QUOTES).split(b'"')[0::2])
    if len(brackets) <= max_depth:
        return 0
    return max(accumulate(memoryview(brackets.translate(_SIGNS)).cast("b")))


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _fail(f"duplicate key {_show(key)} in an object")
            seen.add(key)
    return obj


def _constant(name: str) -> Any:
    raise _fail(f"{name} is not a JSON number")


def _int(text: str) -> int:
    # a length check first: int() of a huge digit string is slow (and limited)
    if len(text) > 20 or not INT_MIN <= (value := int(text)) <= INT_MAX:
        raise _fail(f"integer {_show(text)} is outside the signed 64-bit range")
    return value


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _fail(f"number {_show(text)} is too large for a 64-bit float")
    return value


def _show(text: str, limit: int = 40) -> str:
    shown = text if len(text) <= limit else text[:limit] + "..."
    return json.dumps(shown)


def _lone_surrogate(value: Any) -> str | None:
    """The first string (or key) holding an unpaired surrogate, walking without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def parse_json(data: bytes | bytearray | memoryview, *,
               max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse one JSON text from UTF-8 bytes. Raises :class:`JsonError`, never anything else.

    ``max_depth`` bounds the nesting of arrays and objects (1-500; a scalar has
    depth 0, ``[]`` depth 1).
    """
    if not 1 <= max_depth <= MAX_MAX_DEPTH:
        raise ValueError(f"max_depth: expected 1-{MAX_MAX_DEPTH}, found {max_depth}")
    raw = bytes(data)

    # (1) encoding: UTF-8 only, no byte order mark
    if raw.startswith(_BOM_UTF8):
        raise _fail("starts with a UTF-8 byte order mark (RFC 8259 §8.1); remove it")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(raw) >= 2 and b"\x00" in raw[:2]):
        raise _fail("looks like UTF-16 or UTF-32; JSON bodies must be UTF-8")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(f"invalid UTF-8 at byte {exc.start}") from None

    # (2) depth, before any recursion
    depth = _depth(raw, max_depth)
    if depth > max_depth:
        raise _fail(f"nesting is {depth} levels deep; at most {max_depth} allowed")

    # (3) the grammar, with hooks for duplicates, constants and number ranges
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant,
                           parse_int=_int, parse_float=_float)
    except json.JSONDecodeError as exc:
        raise _fail(f"{exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:  # unreachable after (2); kept as a backstop
        raise _fail(f"nesting deeper than {max_depth} levels") from None
    except ValueError as exc:  # defensive: any other complaint from the parser
        raise _fail(str(exc)) from None

    # (4) escapes that decode to a lone surrogate (only possible via \\uD800-\\uDFFF)
    if _SURROGATE_ESCAPE.search(raw) is not None:
        bad = _lone_surrogate(value)
        if bad is not None:
            # _show escapes to ASCII (json.dumps), so other non-ASCII text cannot break it
            raise _fail(f"a \\u escape leaves an unpaired UTF-16 surrogate in {_show(bad)}")
    return value


def dumps(obj: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (no spaces, non-ASCII kept as is, key order kept).

    Raises :class:`JsonError` for NaN/Infinity, a circular structure or a string
    holding a lone surrogate; ``TypeError`` for values JSON cannot represent.
    """
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonError("cannot encode as JSON: a string holds an unpaired UTF-16 surrogate",
                        hint="strings must be valid Unicode") from None
    except ValueError as exc:
        raise JsonError(f"cannot encode as JSON: {exc}",
                        hint="NaN, Infinity and circular structures have no JSON form"
                        ) from None
