"""The intelpact AIS extension's definition: which properties it has and what each holds.

``vessels.py`` writes the extension; ``stix/validate.py`` checks every object that
arrives (a TAXII or console publish, a partner's push or pull) against
:func:`ais_problem`, so a malformed track is refused with a reason instead of being
stored and breaking its readers (the console's map reads the coordinates as numbers).
The table is docs/maritime.md's. Pure: no third-party import, so the validator can
import it.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from typing import Any

__all__ = ["AIS_EXTENSION_ID", "MISSING", "ais_problem", "is_position", "is_timestamp"]

AIS_EXTENSION_ID = "extension-definition--e8cf8e2a-cefe-4a52-b04f-b0eff1e3510b"

# A STIX timestamp (UTC, 'Z'), with at most the 9 fractional digits the store parses
_STAMP = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
                    r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?Z\Z")


@functools.lru_cache(maxsize=1024)
def _real_day(day: str) -> bool:
    try:
        dt.date.fromisoformat(day)  # no February 30th, no year 0
    except ValueError:
        return False
    return True


def is_timestamp(value: Any) -> bool:
    """A STIX timestamp of a real date and time (the days are few: cached)."""
    return type(value) is str and _STAMP.match(value) is not None and _real_day(value[:10])


def is_position(lat: Any, lon: Any) -> bool:
    """Degrees of latitude and longitude: JSON numbers (not booleans) within range. NaN
    and infinities compare false, so they are refused too."""
    return (type(lat) in (int, float) and type(lon) in (int, float)
            and -90 <= lat <= 90 and -180 <= lon <= 180)


def _number(value: Any) -> bool:  # finite, not negative (speeds, courses, metres, seconds)
    return type(value) in (int, float) and 0 <= value < float("inf")


def _mmsi(value: Any) -> bool:  # AIS carries it in 30 bits
    return type(value) is int and 0 <= value < 1 << 30


def _text(value: Any) -> bool:
    return type(value) is str and value != ""


def _texts(value: Any) -> bool:
    return type(value) is list and value != [] and all(_text(v) for v in value)


def _mmsis(value: Any) -> bool:
    return type(value) is list and value != [] and all(_mmsi(v) for v in value)


def _dimensions(value: Any) -> bool:
    return (type(value) is dict and value != {}
            and all(k in _SIDES and type(v) is int and v >= 0 for k, v in value.items()))


_SIDES = frozenset({"to_bow", "to_stern", "to_port", "to_starboard"})
Check = tuple[Callable[[Any], bool], str]  # the test, and what it wants (for the reason)
MMSI: Check = (_mmsi, "an MMSI (an integer from 0 to 1073741823)")
TEXT: Check = (_text, "a non-empty string")
STAMP: Check = (is_timestamp, "a STIX timestamp (like '2026-09-21T14:13:20.000Z')")
NUMBER: Check = (_number, "a number, 0 or more")
LAT: Check = (lambda v: is_position(v, 0), "a latitude (a number from -90 to 90)")
LON: Check = (lambda v: is_position(0, v), "a longitude (a number from -180 to 180)")

# object type -> property -> (required, check); the track is checked by _track_problem
PROPERTIES: dict[str, dict[str, tuple[bool, Check]]] = {
    "identity": {
        "mmsi": (True, MMSI), "vessel_name": (False, TEXT), "call_sign": (False, TEXT),
        "imo": (False, NUMBER), "ship_type": (False, NUMBER), "ship_type_text": (False, TEXT),
        "destination": (False, TEXT),
        "dimensions": (False, (_dimensions, "an object of to_bow, to_stern, to_port and "
                                            "to_starboard, each an integer, 0 or more"))},
    "sighting": {
        "mmsi": (True, MMSI), "window_start": (True, STAMP),
        "window_seconds": (True, (lambda v: type(v) is int and v > 0, "a whole number of "
                                  "seconds, more than 0")),
        "track": (True, (lambda v: type(v) is list and v != [], "a non-empty list of "
                         "positions")),
        "sources": (False, (_texts, "a non-empty list of non-empty strings"))},
    "note": {
        "rule": (True, TEXT), "alert_time": (True, STAMP),
        "mmsis": (True, (_mmsis, "a non-empty list of MMSIs (integers from 0 to "
                                 "1073741823)")),
        "zone": (False, TEXT), "zone_party": (False, TEXT), "dark_lat": (False, LAT),
        "dark_lon": (False, LON), "reappeared_lat": (False, LAT),
        "reappeared_lon": (False, LON), "reappeared": (False, STAMP),
        "gap_seconds": (False, NUMBER), "since": (False, STAMP), "radius_m": (False, NUMBER),
        "distance_m": (False, NUMBER)},
}
POINT: dict[str, tuple[bool, Check]] = {
    "time": (True, STAMP), "lat": (True, LAT), "lon": (True, LON),
    "speed": (False, NUMBER), "course": (False, NUMBER), "heading": (False, NUMBER)}

MISSING = object()  # the "found" of a required property that is absent
Problem = tuple[str, Any]  # what is wrong ("'x' must be ..."), and the value found


def ais_problem(object_type: str, ext: Any) -> Problem | None:
    """What is wrong with the AIS extension ``ext`` on an object of ``object_type``:
    (what, the value found, or MISSING); None when nothing is. Unknown properties are
    refused (deny by default): nothing the node does not read can hide in it."""
    properties = PROPERTIES.get(object_type)
    if properties is None:
        return (f"it is defined for {', '.join(PROPERTIES)} objects only, not this "
                "object's type", object_type)
    if type(ext) is not dict:
        return "it must be an object", ext
    if ext.get("extension_type") != "property-extension":
        return "'extension_type' must be 'property-extension'", ext.get("extension_type",
                                                                          MISSING)
    problem = _problem(ext, properties, "", ("extension_type",))
    if problem is None and object_type == "sighting":
        return _track_problem(ext["track"])
    return problem


def _problem(values: dict[str, Any], properties: dict[str, tuple[bool, Check]],
             where: str, also: tuple[str, ...] = ()) -> Problem | None:
    for name, (required, (check, what)) in properties.items():
        if name in values:
            if not check(values[name]):
                return f"{where}{name!r} must be {what}", values[name]
        elif required:
            return f"{where}{name!r} is missing: it must be {what}", MISSING
    for name in values:
        if name not in properties and name not in also:
            return (f"{where}property {name!r} is not defined by the extension (it has "
                    f"{', '.join(properties)})", MISSING)
    return None


_POINT_NAMES = frozenset(POINT)
_INF = float("inf")


def _track_problem(track: list[Any]) -> Problem | None:
    """Each position of a track. The usual one is checked inline, without a call per
    property: tracks are long, and the node validates its own on every ingest
    (bench/ais.py); any other is described by _problem."""
    match, real_day, names = _STAMP.match, _real_day, _POINT_NAMES
    for i, point in enumerate(track):
        if type(point) is not dict:
            return f"track[{i}] must be an object with time, lat and lon", point
        lat, lon, time = point.get("lat"), point.get("lon"), point.get("time")
        speed, course = point.get("speed", 0), point.get("course", 0)
        heading = point.get("heading", 0)
        if not ((type(lat) is float or type(lat) is int) and -90 <= lat <= 90
                and (type(lon) is float or type(lon) is int) and -180 <= lon <= 180
                and type(time) is str and match(time) and real_day(time[:10])
                and (type(speed) is float or type(speed) is int) and 0 <= speed < _INF
                and (type(course) is float or type(course) is int) and 0 <= course < _INF
                and (type(heading) is int or type(heading) is float) and 0 <= heading < _INF
                and point.keys() <= names):
            return (_problem(point, POINT, f"track[{i}] ")
                    or (f"track[{i}] must be a position (time, lat, lon)", point))
    return None
