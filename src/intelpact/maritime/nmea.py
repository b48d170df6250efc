"""AIS NMEA 0183 in, vessel reports out: positions and static data, with every line counted.

Sentences are ``!xxVDM``/``!xxVDO`` (AIVDM, AIVDO, and base-station talkers such as BS or
SA); pyais decodes the payloads, except one-sentence position reports of types 1, 2, 3 and
18, most of a feed, which ``NmeaReader._fast`` reads itself as pyais would (the same
reports and counts; tests/ais/test_nmea.py compares the two). Around it, this module:

- reads an NMEA 4.0 tag block (``\\s:source,c:unix-time*hh\\``): its checksum is checked,
  ``c`` gives the report's time (seconds, or milliseconds when larger than 10^11) and
  ``s`` its source. A receiver's trailing Unix time after the checksum (the USCG form
  that libais's examples carry) is used when there is no tag block; otherwise the
  report is stamped with the clock on arrival;
- reassembles multi-part messages (same talker, channel, sequence id and part count,
  parts in order); a part out of order, a lone first half, or an unfinished group left
  at the end counts as "missing parts";
- skips blank lines, ``#`` comments and other NMEA sentences (``$GPGGA``, ``$PGHP``...),
  counting each;
- refuses, with a reason, sentences with a bad checksum, a bad tag block, an empty
  payload, a malformed field, a payload pyais cannot decode or one cut short before a
  field a report needs, or a position outside the globe. A position report whose
  latitude is 91 or longitude 181 (AIS for "not available") counts as "no position":
  never a position.

Every AIS sentence ends in exactly one place: part of a decoded message, or refused
for one reason (``ReadStats``).
"""

from __future__ import annotations

import time
from binascii import a2b_base64
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import reduce
from operator import xor
from typing import Any

from pyais.exceptions import AISBaseException
from pyais.messages import AISSentence

__all__ = ["POSITION_TYPES", "Position", "ReadStats", "Report", "Static", "NmeaReader",
           "report_of"]

POSITION_TYPES = frozenset({1, 2, 3, 18, 19, 27})
STATIC_TYPES = frozenset({5, 19, 24})
_HASH, _BANG, _BACKSLASH, _STAR = ord("#"), ord("!"), ord("\\"), ord("*")
_AIS_TYPES = (b"VDM", b"VDO")
_LATEST = 4_102_444_800.0  # 2100-01-01T00:00:00Z: no report's time is later

# The fast path (NmeaReader._fast): one-sentence position reports of 168 bits (types 1, 2,
# 3 and 18: payloads starting "1", "2", "3" or "B", no fill bits), most of a live feed.
_FAST_FIRST = frozenset(b"123B")
_HEX2 = {f"{i:02{case}}".encode(): i for i in range(256) for case in "Xx"}
# AIS six-bit armouring is base64 with another alphabet: re-armour onto base64's and let
# binascii unpack the bits (as pyais's bit vector does; a byte outside the armour is 0).
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ARMOUR_TO_B64 = bytes(_B64[(c - 56 if c - 48 > 40 else c - 48) if 48 <= c <= 119 else 0]
                       for c in range(256))


@dataclass(slots=True)
class Position:
    """One position report. ``speed`` in knots, ``course`` and ``heading`` in degrees:
    None where the vessel reports them as not available."""

    mmsi: int
    time: float  # Unix seconds
    lat: float
    lon: float
    speed: float | None
    course: float | None
    heading: int | None
    msg_type: int
    source: str | None = None


@dataclass(slots=True)
class Static:
    """Static and voyage data (types 5, 19 and 24): what is known; None where not sent."""

    mmsi: int
    time: float
    name: str | None = None
    call_sign: str | None = None
    imo: int | None = None
    ship_type: int | None = None
    dimensions: tuple[int, int, int, int] | None = None  # to bow, stern, port, starboard
    destination: str | None = None


Report = Position | Static


@dataclass
class ReadStats:
    """What a reader saw. ``sentences`` are AIS sentences; each is in ``decoded`` (part of a
    decoded message) or in ``bad`` under one reason."""

    lines: int = 0
    sentences: int = 0
    decoded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    bad: Counter[str] = field(default_factory=Counter)
    messages: Counter[int] = field(default_factory=Counter)
    no_position: int = 0
    positions: int = 0
    statics: int = 0


class _Bad(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _xor(data: bytes) -> int:
    """The XOR of ``data``'s bytes (NMEA's checksum). Up to 128 bytes (every sentence and
    tag block), by folding it as one integer: bit shifts run in C, a loop over the bytes
    does not."""
    if len(data) > 128:
        return reduce(xor, data, 0)
    x = int.from_bytes(data, "little")
    x ^= x >> 512
    x ^= x >> 256
    x ^= x >> 128
    x ^= x >> 64
    x ^= x >> 32
    x ^= x >> 16
    x ^= x >> 8
    return x & 0xFF


def _checksum_ok(body: bytes, given: bytes) -> bool:
    try:
        want = int(given, 16)
    except ValueError:
        return False
    return len(given) == 2 and _xor(body) == want


def _unix_time(text: bytes) -> float | None:
    """``text`` as a report's Unix time in seconds (digits; milliseconds when above
    10^11), or None when it is not one before 2100. A later time would move the feed's
    clock by centuries, and one past year 9999 cannot be written as a STIX timestamp
    (nor turned into a date by time.gmtime): either would end the ingest."""
    if not text.isdigit() or len(text) > 13:  # 14 digits are past 2100, even in ms
        return None
    when = float(int(text))
    if when > 1e11:
        when /= 1000.0
    return when if when < _LATEST else None


def _tag_block(tb: bytes) -> tuple[float | None, str | None]:
    """(time, source) from an NMEA 4.0 tag block's text (between the backslashes)."""
    star = tb.rfind(b"*")
    if star < 0 or not _checksum_ok(tb[:star], tb[star + 1:]):
        raise _Bad("bad tag block")
    when: float | None = None
    source: str | None = None
    for item in tb[:star].split(b","):
        key, _, value = item.partition(b":")
        if key == b"c":
            when = _unix_time(value)
            if when is None:
                raise _Bad("bad tag block")
        elif key == b"s":
            source = value.decode("ascii", "replace")
    return when, source


class NmeaReader:
    """Reads lines one at a time; ``feed`` returns the reports a line completes.

    ``clock`` stamps reports that carry no time. At most ``max_pending`` multi-part
    groups wait for their parts (the oldest is dropped, as missing parts): memory stays
    bounded whatever the input."""

    def __init__(self, clock: Callable[[], float] = time.time, max_pending: int = 256) -> None:
        self.clock = clock
        self.max_pending = max_pending
        self.stats = ReadStats()
        self._pending: dict[tuple[Any, ...], tuple[list[AISSentence], float | None,
                                                   str | None]] = {}
        self._tag: bytes | None = None  # the last good tag block, and what it says
        self._tag_read: tuple[float | None, str | None] = (None, None)

    def feed(self, line: bytes) -> tuple[Report, ...]:
        fast = self._fast(line)
        if fast is not None:
            return fast
        decoded = self.decode(line)
        if decoded is None:
            return ()
        msg, when, source, parts = decoded
        return self.reports(msg, self.clock() if when is None else when, source, parts)

    def decode(self, line: bytes) -> tuple[Any, float | None, str | None, int] | None:
        """The pyais message a line completes, with its time, source and sentence count;
        None when the line completes nothing (skipped, refused, or a first part)."""
        stats = self.stats
        stats.lines += 1
        line = line.strip()
        if not line:
            stats.skipped["blank"] += 1
            return None
        first = line[0]
        if first == _HASH:
            stats.skipped["comment"] += 1
            return None
        when: float | None = None
        source: str | None = None
        tag: bytes | None = None
        if first == _BACKSLASH:
            end = line.find(b"\\", 1)
            if end < 0:
                stats.sentences += 1
                stats.bad["bad tag block"] += 1
                return None
            tag, line = line[1:end], line[end + 1:]
        if not line or line[0] != _BANG or line[3:6] not in _AIS_TYPES:
            stats.skipped["not AIS"] += 1
            return None
        stats.sentences += 1
        if tag is not None:
            try:
                when, source = self._tag_block(tag)
            except _Bad as exc:
                stats.bad[exc.reason] += 1
                return None
        star = line.rfind(b"*")
        if star < 0:
            stats.bad["malformed"] += 1
            return None
        if len(line) > star + 3:  # a receiver's fields after the checksum (USCG form)
            tail = line[star + 3:].rsplit(b",", 1)[-1]
            if when is None and 9 <= len(tail) <= 10:
                when = _unix_time(tail)
            line = line[:star + 3]
        if not _checksum_ok(line[1:star], line[star + 1:star + 3]):
            stats.bad["bad checksum"] += 1
            return None
        try:
            sentence = AISSentence(line)  # what NMEASentenceFactory makes of VDM/VDO
        except (AISBaseException, ValueError):
            stats.bad["malformed"] += 1
            return None
        if not sentence.payload:
            stats.bad["empty payload"] += 1
            return None
        parts = 1
        if sentence.frag_cnt > 1:
            group = self._assemble(sentence, line, when, source)
            if group is None:
                return None
            sentence, when, source, parts = group
        try:
            msg = sentence.decode()
        except (AISBaseException, ValueError, IndexError, KeyError):
            stats.bad["undecodable"] += parts
            return None
        stats.decoded += parts
        return msg, when, source, parts

    def _tag_block(self, tag: bytes) -> tuple[float | None, str | None]:
        """``_tag_block``, remembering the last good one: a receiver stamps every sentence
        of one second with the same tag block."""
        if tag == self._tag:
            return self._tag_read
        read = _tag_block(tag)
        self._tag, self._tag_read = tag, read
        return read

    def _fast(self, line: bytes) -> tuple[Report, ...] | None:
        """``feed`` for a well-formed one-sentence position report of 168 bits (types 1,
        2, 3 and 18, no fill bits: most of a feed), without pyais's sentence and message
        objects; None, having changed nothing, for any other line, which ``decode`` then
        reads. The same reports and the same counts as ``decode`` and ``reports``, field
        for field as pyais decodes them (tests/ais/test_nmea.py compares the two)."""
        line = line.strip()
        tag = None
        if line[:1] == b"\\":
            end = line.find(b"\\", 1)
            if end < 0:
                return None
            tag, line = line[1:end], line[end + 1:]
        fields = line.split(b",")
        if len(fields) != 7 or fields[1] != b"1" or fields[2] != b"1":
            return None
        head, payload, tail = fields[0], fields[5], fields[6]
        if len(payload) != 28 or payload[0] not in _FAST_FIRST or len(head) != 6 \
                or head[0] != _BANG or head[3:] not in _AIS_TYPES or tail[:2] != b"0*":
            return None
        given = _HEX2.get(tail[2:])
        seq = fields[3]
        if given is None or (seq and not seq.isdigit()) or not line.isascii() \
                or _xor(line[1:-3]) != given:
            return None
        when: float | None = None
        source: str | None = None
        if tag is not None:
            try:
                when, source = self._tag_block(tag)
            except _Bad:
                return None
        v = int.from_bytes(a2b_base64(payload.translate(_ARMOUR_TO_B64)), "big")
        kind = v >> 162
        if kind == 18:
            speed, lon, lat = ((v >> 112) & 0x3FF) / 10.0, (v >> 83) & 0xFFFFFFF, \
                (v >> 56) & 0x7FFFFFF
            course, heading = ((v >> 44) & 0xFFF) / 10.0, (v >> 35) & 0x1FF
        else:
            speed, lon, lat = ((v >> 108) & 0x3FF) / 10.0, (v >> 79) & 0xFFFFFFF, \
                (v >> 52) & 0x7FFFFFF
            course, heading = ((v >> 40) & 0xFFF) / 10.0, (v >> 31) & 0x1FF
        if lon & 0x8000000:
            lon -= 0x10000000
        if lat & 0x4000000:
            lat -= 0x8000000
        x, y = ((10 * lon + 3) // 6) / 1e6, ((10 * lat + 3) // 6) / 1e6  # pyais's to_lat_lon
        stats = self.stats
        stats.lines += 1
        stats.sentences += 1
        if not (-90.0 <= y <= 90.0 and -180.0 <= x <= 180.0) and y != 91.0 and x != 181.0:
            stats.bad["position out of range"] += 1
            return ()
        stats.decoded += 1
        found: tuple[Report, ...] = ()
        if y == 91.0 or x == 181.0:
            stats.no_position += 1
        else:
            found = (Position((v >> 130) & 0x3FFFFFFF, self.clock() if when is None else when,
                              y, x, None if speed >= 102.25 else speed,
                              None if course >= 360 else course,
                              None if heading >= 360 else heading, kind, source),)
            stats.positions += 1
        stats.messages[kind] += 1
        return found

    def _assemble(self, sentence: AISSentence, line: bytes, when: float | None,
                  source: str | None
                  ) -> tuple[AISSentence, float | None, str | None, int] | None:
        key = (line[1:6], sentence.channel, sentence.seq_id, sentence.frag_cnt)
        pending = self._pending
        if sentence.frag_num == 1:
            old = pending.pop(key, None)
            if old is not None:
                self.stats.bad["missing parts"] += len(old[0])
            pending[key] = ([sentence], when, source)
            if len(pending) > self.max_pending:
                oldest = next(iter(pending))
                self.stats.bad["missing parts"] += len(pending.pop(oldest)[0])
            return None
        group = pending.get(key)
        if group is None or len(group[0]) != sentence.frag_num - 1:
            dropped = len(pending.pop(key)[0]) if group is not None else 0
            self.stats.bad["missing parts"] += dropped + 1
            return None
        group[0].append(sentence)
        if sentence.frag_num < sentence.frag_cnt:
            return None
        del pending[key]
        parts, first_when, first_source = group
        return (AISSentence.assemble_from_iterable(parts), first_when if first_when is not None
                else when, first_source or source, len(parts))

    def finish(self) -> None:
        """The end of input: unfinished multi-part groups count as missing parts."""
        for parts, _, _ in self._pending.values():
            self.stats.bad["missing parts"] += len(parts)
        self._pending.clear()

    def reports(self, msg: Any, when: float, source: str | None,
                parts: int = 1) -> tuple[Report, ...]:
        """The reports in one decoded message (type 19 gives a position and static data).

        A payload cut short is refused as undecodable: pyais decodes it all the same,
        leaving None every field the payload ends before, which no report can hold."""
        stats = self.stats
        kind = int(msg.msg_type)
        try:
            position = _position(msg, kind, when, source) if kind in POSITION_TYPES else None
            static = _static(msg, kind, when) if kind in STATIC_TYPES else None
        except TypeError:  # int() or float() of a field the payload did not reach
            stats.bad["undecodable"] += parts
            stats.decoded -= parts
            return ()
        found: tuple[Report, ...] = ()
        if position is not None:
            lat, lon = position.lat, position.lon
            if lat == 91.0 or lon == 181.0:
                stats.no_position += 1
            elif not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
                stats.bad["position out of range"] += parts
                stats.decoded -= parts
                return ()
            else:
                found = (position,)
                stats.positions += 1
        if static is not None:
            found = (*found, static)
            stats.statics += 1
        stats.messages[kind] += 1
        return found


def _position(msg: Any, kind: int, when: float, source: str | None) -> Position:
    lat, lon = float(msg.lat), float(msg.lon)
    if kind == 27:
        speed = float(msg.speed)
        course = float(msg.course)
        return Position(int(msg.mmsi), when, lat, lon, None if speed >= 63 else speed,
                        None if course >= 511 else course, None, kind, source)
    speed = float(msg.speed)
    course = float(msg.course)
    heading = int(msg.heading)
    return Position(int(msg.mmsi), when, lat, lon, None if speed >= 102.25 else speed,
                    None if course >= 360 else course, None if heading >= 360 else heading,
                    kind, source)


def _text(value: Any) -> str | None:
    text = str(value or "").replace("@", " ").strip()
    return text or None


def _static(msg: Any, kind: int, when: float) -> Static | None:
    mmsi = int(msg.mmsi)
    if kind == 24 and int(msg.partno) == 0:
        return Static(mmsi, when, name=_text(msg.shipname))
    dims = None
    if hasattr(msg, "to_bow"):
        dims = (int(msg.to_bow), int(msg.to_stern), int(msg.to_port), int(msg.to_starboard))
        dims = dims if any(dims) else None
    ship_type = int(msg.ship_type) if getattr(msg, "ship_type", 0) else None
    if kind == 24:
        if int(msg.partno) != 1:
            return None
        return Static(mmsi, when, call_sign=_text(msg.callsign), ship_type=ship_type,
                      dimensions=dims)
    if kind == 19:
        return Static(mmsi, when, name=_text(msg.shipname), ship_type=ship_type,
                      dimensions=dims)
    imo = int(msg.imo) or None
    return Static(mmsi, when, name=_text(msg.shipname), call_sign=_text(msg.callsign),
                  imo=imo, ship_type=ship_type, dimensions=dims,
                  destination=_text(msg.destination))


def report_of(msg: Any) -> tuple[Report, ...]:
    """The reports in one pyais message, stamped at time 0 (for tests and tools)."""
    return NmeaReader(clock=lambda: 0.0).reports(msg, 0.0, None)
