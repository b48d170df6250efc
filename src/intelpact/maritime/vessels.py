"""Vessel reports as STIX 2.1 (docs/maritime.md has the mapping and why).

- a **vessel** is an ``identity`` (``identity_class: system``: the MMSI names the AIS
  station aboard), id UUIDv5 of its MMSI, so every node and every run names it alike;
  its static data in the intelpact AIS property-extension;
- a vessel's positions in one time window are one ``sighting`` of the vessel, with
  ``first_seen``, ``last_seen``, ``count`` and the positions as a ``track`` in the
  extension. Its id is UUIDv5 of (party, MMSI, window, the positions): the same data
  ingested again on the same node is the same object ("already stored");
- an alert is a ``note`` over its evidence (the sightings, the vessels, and a
  ``location`` for where it happened).

``TrackWindows`` holds the open tracks, one per vessel, and hands back those whose window
has closed: memory is bounded by the number of vessels heard within a window.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from .extension import AIS_EXTENSION_ID
from .nmea import Position, Static
from .rules import Alert

__all__ = ["AIS_EXTENSION_ID", "Track", "TrackWindows", "VesselInfo", "alert_objects",
           "sighting_object", "timestamp", "vessel_id", "vessel_object"]

NAMESPACE = uuid.UUID("604c99b7-c4a3-42e6-b8c3-95069fa90ec3")
VESSEL_CREATED = "1970-01-01T00:00:00.000Z"  # fixed: every node makes the same vessel object

SHIP_TYPES = {
    20: "Wing in ground", 30: "Fishing", 31: "Towing", 32: "Towing, large", 33: "Dredging",
    34: "Diving ops", 35: "Military ops", 36: "Sailing", 37: "Pleasure craft",
    40: "High speed craft", 50: "Pilot vessel", 51: "Search and rescue", 52: "Tug",
    53: "Port tender", 54: "Anti-pollution", 55: "Law enforcement", 58: "Medical transport",
    59: "Non-combatant ship", 60: "Passenger", 70: "Cargo", 80: "Tanker", 90: "Other type",
}


def ship_type_text(code: int) -> str | None:
    """The ITU-R M.1371 ship type's words (the decade's, for 21-29, 41-49, ...)."""
    return SHIP_TYPES.get(code) or SHIP_TYPES.get(code - code % 10)


_SECONDS: dict[int, str] = {}  # whole seconds already formatted (a feed repeats them)


def timestamp(t: float) -> str:
    """A STIX timestamp with milliseconds, UTC."""
    ms = int(round(t * 1000))
    second = ms // 1000
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) >= 100_000:
            _SECONDS.clear()
        prefix = _SECONDS[second] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{prefix}.{ms % 1000:03d}Z"


def vessel_id(mmsi: int) -> str:
    """The vessel's STIX id: the same on every node, in every run."""
    return f"identity--{uuid.uuid5(NAMESPACE, f'mmsi:{mmsi}')}"


@dataclass
class VesselInfo:
    """What static reports said about a vessel, merged (the latest value of each field)."""

    mmsi: int
    time: float | None = None
    name: str | None = None
    call_sign: str | None = None
    imo: int | None = None
    ship_type: int | None = None
    dimensions: tuple[int, int, int, int] | None = None
    destination: str | None = None

    def merge(self, s: Static) -> bool:
        """Take what ``s`` says; True when anything changed."""
        changed = False
        for key in ("name", "call_sign", "imo", "ship_type", "dimensions", "destination"):
            value = getattr(s, key)
            if value is not None and value != getattr(self, key):
                setattr(self, key, value)
                changed = True
        if changed:
            self.time = s.time if self.time is None else max(self.time, s.time)
        return changed


def vessel_object(mmsi: int, info: VesselInfo | None = None, *,
                  modified: float | None = None) -> dict[str, Any]:
    """The vessel's identity; ``modified`` (when its static data was last reported)
    makes a new version, else the object is the one every node makes."""
    ext: dict[str, Any] = {"extension_type": "property-extension", "mmsi": mmsi}
    name = f"MMSI {mmsi}"
    if info is not None:
        if info.name:
            name = f"{info.name} (MMSI {mmsi})"
            ext["vessel_name"] = info.name
        if info.call_sign:
            ext["call_sign"] = info.call_sign
        if info.imo:
            ext["imo"] = info.imo
        if info.ship_type:
            ext["ship_type"] = info.ship_type
            words = ship_type_text(info.ship_type)
            if words:
                ext["ship_type_text"] = words
        if info.dimensions:
            bow, stern, port, starboard = info.dimensions
            ext["dimensions"] = {"to_bow": bow, "to_stern": stern, "to_port": port,
                                 "to_starboard": starboard}
        if info.destination:
            ext["destination"] = info.destination
    return {"type": "identity", "spec_version": "2.1", "id": vessel_id(mmsi),
            "created": VESSEL_CREATED,
            "modified": VESSEL_CREATED if modified is None else timestamp(modified),
            "name": name, "identity_class": "system",
            "description": "A vessel's AIS station, named by its MMSI (from AIS reports).",
            "extensions": {AIS_EXTENSION_ID: ext}}


@dataclass
class Track:
    """One vessel's positions in one window (``start`` is the window's start)."""

    mmsi: int
    start: float
    points: list[Position] = field(default_factory=list)


def number(x: float) -> float | int:
    """``x`` as JSON writes it canonically: a whole number as an integer (RFC 8785 writes
    14.0 as 14; objects without such floats are canonicalised by the fast path)."""
    return int(x) if x.is_integer() else x


_time = attrgetter("time")


def _points(points: list[Position]) -> list[dict[str, Any]]:
    """The track's points as JSON (numbers written canonically, as ``number`` does), built
    once, when the track is published."""
    out: list[dict[str, Any]] = []
    append = out.append
    for p in points:
        lat, lon = round(p.lat, 6), round(p.lon, 6)
        point: dict[str, Any] = {"time": timestamp(p.time),
                                 "lat": int(lat) if lat.is_integer() else lat,
                                 "lon": int(lon) if lon.is_integer() else lon}
        speed, course, heading = p.speed, p.course, p.heading
        if speed is not None:
            point["speed"] = int(speed) if speed.is_integer() else speed
        if course is not None:
            point["course"] = int(course) if course.is_integer() else course
        if heading is not None:
            point["heading"] = heading
        append(point)
    return out


def sighting_object(party: str, track: Track, window_seconds: float) -> dict[str, Any]:
    """One vessel's track in one window: a sighting of the vessel."""
    points = sorted(track.points, key=_time)
    track_json = _points(points)
    digest = hashlib.sha256(repr([(p.time, p.lat, p.lon, p.speed, p.course, p.heading)
                                  for p in points]).encode()).hexdigest()
    oid = uuid.uuid5(NAMESPACE, f"sighting:{party}:{track.mmsi}:{track.start}:{digest}")
    last = track_json[-1]["time"]
    ext: dict[str, Any] = {"extension_type": "property-extension", "mmsi": track.mmsi,
                           "window_start": timestamp(track.start),
                           "window_seconds": int(window_seconds), "track": track_json}
    sources = sorted({p.source for p in points if p.source})
    if sources:
        ext["sources"] = sources
    return {"type": "sighting", "spec_version": "2.1", "id": f"sighting--{oid}",
            "created": last, "modified": last, "first_seen": track_json[0]["time"],
            "last_seen": last, "count": len(points), "sighting_of_ref": vessel_id(track.mmsi),
            "extensions": {AIS_EXTENSION_ID: ext}}


def alert_objects(party: str, alert: Alert, evidence: Iterable[str]) -> list[dict[str, Any]]:
    """A location (where) and a note (what, over its evidence) for one alert.

    Both are named by (party, rule, vessels, time); the note's ``modified`` is the
    alert's, so a later version of an alert (a dark vessel back) is a new version of the
    same note, over the same location."""
    when = timestamp(alert.time)
    modified = when if alert.modified is None else timestamp(alert.modified)
    key = f"alert:{party}:{alert.rule}:{alert.mmsis}:{alert.time}"
    note_id = f"note--{uuid.uuid5(NAMESPACE, key)}"
    location_id = f"location--{uuid.uuid5(NAMESPACE, key + ':location')}"
    vessels = ", ".join(f"MMSI {m}" for m in alert.mmsis)
    location = {"type": "location", "spec_version": "2.1", "id": location_id,
                "created": when, "modified": when,
                "name": f"{alert.place or alert.title}: {vessels} at {when}",
                "latitude": number(round(alert.lat, 6)),
                "longitude": number(round(alert.lon, 6))}
    details = {k: (timestamp(v) if k in ("since", "reappeared") else
                   number(v) if isinstance(v, float) else v)
               for k, v in alert.details.items()}
    refs = list(dict.fromkeys([*evidence, *(vessel_id(m) for m in alert.mmsis), location_id]))
    note = {"type": "note", "spec_version": "2.1", "id": note_id, "created": when,
            "modified": modified, "abstract": f"{alert.title}: {vessels}",
            "content": (f"Maritime alert ({alert.rule}) raised from AIS at {when}, "
                        f"position {alert.lat:.5f}, {alert.lon:.5f}: {alert.title}, {vessels}."),
            "object_refs": refs,
            "extensions": {AIS_EXTENSION_ID: {
                "extension_type": "property-extension", "rule": alert.rule,
                "alert_time": when, "mmsis": list(alert.mmsis), **details}}}
    return [location, note]


class TrackWindows:
    """Open tracks, one per vessel, each for one window of ``window_seconds``.

    ``add`` returns the vessel's previous track when a position opens a new window;
    ``expired`` returns the tracks whose window ended more than ``grace`` seconds before
    the latest time seen, and the oldest beyond ``max_open``; ``drain`` returns all."""

    def __init__(self, window_seconds: float, *, grace: float = 60.0,
                 max_open: int = 100_000) -> None:
        self.window = window_seconds
        self.grace = grace
        self.max_open = max_open
        self.clock = float("-inf")
        self._open: dict[int, Track] = {}

    def __len__(self) -> int:
        return len(self._open)

    def window_of(self, t: float) -> float:
        return t - t % self.window

    def add(self, p: Position) -> Track | None:
        start = p.time - p.time % self.window
        track = self._open.get(p.mmsi)
        flushed = None
        if track is None or track.start != start:
            flushed = track
            track = self._open[p.mmsi] = Track(p.mmsi, start)
        track.points.append(p)
        if p.time > self.clock:
            self.clock = p.time
        return flushed

    def expired(self) -> list[Track]:
        limit = self.clock - self.window - self.grace
        done = [t for t in self._open.values() if t.start < limit]
        for t in done:
            del self._open[t.mmsi]
        if len(self._open) > self.max_open:
            oldest = sorted(self._open.values(), key=lambda t: t.points[-1].time)
            for t in oldest[:len(self._open) - self.max_open]:
                del self._open[t.mmsi]
                done.append(t)
        return done

    def drain(self) -> list[Track]:
        done = list(self._open.values())
        self._open.clear()
        return done
