"""Maritime alert rules: a TOML rule set, and an engine that watches positions stream by.

Four rules (docs/maritime.md): a vessel entering an exclusive economic zone whose licence
list does not hold it (``eez-unlicensed``); an AIS gap longer than a threshold
(``ais-gap``): between two positions of one vessel, or since its last position by the
feed's clock, when it has not (yet) reappeared; loitering, slow within a small radius for
a long time (``loitering``); and an encounter, two vessels slow and close together for a
long time (``encounter``, a possible transshipment). The engine keeps a little state per
vessel and a grid of slow vessels, so each position costs a few dictionary lookups; what
only the passing of time can show (a vessel gone dark) is found by ``sweep``, now and
then, never per position.
"""

from __future__ import annotations

import math
import time
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import IntelpactError
from .nmea import Position

__all__ = ["Alert", "RuleEngine", "RuleSet", "RulesError", "Zone", "distance_m",
           "load_rules"]

EARTH_RADIUS_M = 6_371_008.8
METRES_PER_NM = 1852.0
_DEG_M = 111_320.0  # metres in one degree of latitude, near enough for a grid


_GAP_PLACE = "AIS went dark"  # the location of an ais-gap alert, in each of its versions


class RulesError(IntelpactError):
    """A rules file is malformed."""


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """The great-circle (haversine) distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _middle(lon1: float, lon2: float) -> float:
    """The longitude halfway between two close ones, across the antimeridian too (179.9
    and -179.9: 180, not 0)."""
    middle = (lon1 + lon2) / 2
    if abs(lon1 - lon2) > 180:
        middle += 180 if middle <= 0 else -180
    return middle


@dataclass(frozen=True)
class Zone:
    """An exclusive economic zone: the union of simple (lon, lat) rings."""

    name: str
    party: str | None
    rings: tuple[tuple[tuple[float, float], ...], ...]
    licensed: frozenset[int]
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # lon/lat min, max

    def contains(self, lat: float, lon: float) -> bool:
        x0, y0, x1, y1 = self.bbox
        if not (x0 <= lon <= x1 and y0 <= lat <= y1):
            return False
        return any(_in_ring(ring, lon, lat) for ring in self.rings)


def _in_ring(ring: tuple[tuple[float, float], ...], x: float, y: float) -> bool:
    inside = False
    j = len(ring) - 1
    for i in range(len(ring)):
        xi, yi = ring[i]
        xj, yj = ring[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


@dataclass(frozen=True)
class RuleSet:
    """Thresholds in seconds, metres and knots; a rule is off when its threshold is None."""

    gap_seconds: float | None = 2 * 3600.0
    gap_while_dark: bool = True  # report a gap before the vessel reappears (sweep)
    loiter_speed: float = 2.0
    loiter_radius_m: float = METRES_PER_NM
    loiter_seconds: float | None = 3 * 3600.0
    encounter_distance_m: float = 500.0
    encounter_speed: float = 2.0
    encounter_seconds: float | None = 2 * 3600.0
    encounter_report_gap: float = 15 * 60.0
    zones: tuple[Zone, ...] = ()
    source: str = "<rules>"


def load_rules(path: str | Path | None = None) -> RuleSet:
    """The rule set in ``path``, or the defaults shipped with intelpact (rules.toml)."""
    if path is None:
        text = resources.files(__package__).joinpath("rules.toml").read_text("utf-8")
        source = "intelpact/maritime/rules.toml"
    else:
        try:
            text = Path(path).read_text("utf-8")
        except OSError as exc:
            raise RulesError(f"{path}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise RulesError(f"{path}: not UTF-8 text") from None
        source = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not TOML: {exc}",
                         hint="see the shipped rules.toml in docs/maritime.md") from None
    return _parse(data, source)


def _parse(data: dict[str, Any], source: str) -> RuleSet:
    def fail(where: str, problem: str, fix: str) -> RulesError:
        return RulesError(f"{source}: {where}: {problem}", hint=fix)

    unknown = set(data) - {"gap", "loitering", "encounter", "zones"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown section",
                   "use [gap], [loitering], [encounter] and [[zones]]")

    def section(name: str, keys: dict[str, float | bool]) -> dict[str, Any]:
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise fail(name, "must be a table", f"write [{name}]")
        for key in table:
            if key != "enabled" and key not in keys:
                raise fail(f"{name}.{key}", "unknown field",
                           f"fields of [{name}]: enabled, {', '.join(keys)}")
        out: dict[str, Any] = {"enabled": table.get("enabled", True)}
        if not isinstance(out["enabled"], bool):
            raise fail(f"{name}.enabled", f"{out['enabled']!r} is not true or false",
                       "write enabled = true or enabled = false")
        for key, default in keys.items():
            value = table.get(key, default)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise fail(f"{name}.{key}", f"{value!r} is not true or false",
                               f"write {key} = {str(default).lower()}")
                out[key] = value
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise fail(f"{name}.{key}", f"{value!r} is not a positive number",
                           f"e.g. {key} = {default}")
            out[key] = float(value)
        return out

    gap = section("gap", {"min_hours": 2.0, "while_dark": True})
    loiter = section("loitering", {"max_speed_knots": 2.0, "radius_nm": 1.0,
                                   "min_hours": 3.0})
    enc = section("encounter", {"max_distance_m": 500.0, "max_speed_knots": 2.0,
                                "min_hours": 2.0, "max_report_gap_minutes": 15.0})
    zones = data.get("zones", [])
    if not isinstance(zones, list):
        raise fail("zones", "must be an array of tables", "write [[zones]] for each zone")
    return RuleSet(
        gap_seconds=gap["min_hours"] * 3600 if gap["enabled"] else None,
        gap_while_dark=gap["while_dark"],
        loiter_speed=loiter["max_speed_knots"],
        loiter_radius_m=loiter["radius_nm"] * METRES_PER_NM,
        loiter_seconds=loiter["min_hours"] * 3600 if loiter["enabled"] else None,
        encounter_distance_m=enc["max_distance_m"],
        encounter_speed=enc["max_speed_knots"],
        encounter_seconds=enc["min_hours"] * 3600 if enc["enabled"] else None,
        encounter_report_gap=enc["max_report_gap_minutes"] * 60,
        zones=tuple(_zone(z, f"zones[{i}]", fail) for i, z in enumerate(zones)),
        source=source)


def _zone(data: Any, where: str, fail: Any) -> Zone:
    if not isinstance(data, dict):
        raise fail(where, "must be a table", "write [[zones]] with name, rings, licensed")
    unknown = set(data) - {"name", "party", "rings", "licensed"}
    if unknown:
        raise fail(f"{where}.{sorted(unknown)[0]}", "unknown field",
                   "fields of a zone: name, party, rings, licensed")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail(f"{where}.name", "missing", 'e.g. name = "Tonga EEZ"')
    party = data.get("party")
    if party is not None and not isinstance(party, str):
        raise fail(f"{where}.party", f"{party!r} is not a party code", 'e.g. party = "TON"')
    licensed = data.get("licensed", [])
    if not isinstance(licensed, list) or not all(
            isinstance(m, int) and not isinstance(m, bool) and 0 < m < 10**9 for m in licensed):
        raise fail(f"{where}.licensed", "must be a list of MMSIs (9-digit integers)",
                   "e.g. licensed = [529000001]")
    rings = data.get("rings")
    if not isinstance(rings, list) or not rings:
        raise fail(f"{where}.rings", "missing or empty",
                   "give rings = [[[lon, lat], [lon, lat], ...]], each ring closed or not")
    parsed = []
    for r, ring in enumerate(rings):
        points = []
        if not isinstance(ring, list) or len(ring) < 3:
            raise fail(f"{where}.rings[{r}]", "a ring needs at least 3 [lon, lat] points",
                       "e.g. [[-177.5, -25.0], [-172.0, -25.0], [-172.0, -15.0]]")
        for p, point in enumerate(ring):
            ok = (isinstance(point, list) and len(point) == 2
                  and all(isinstance(v, int | float) and not isinstance(v, bool)
                          for v in point))
            if not ok or not (-180 <= point[0] <= 180 and -90 <= point[1] <= 90):
                raise fail(f"{where}.rings[{r}][{p}]",
                           f"{point!r} is not [longitude, latitude] in degrees",
                           "longitude -180 to 180 first, then latitude -90 to 90")
            points.append((float(point[0]), float(point[1])))
        parsed.append(tuple(points))
    xs = [x for ring in parsed for x, _ in ring]
    ys = [y for ring in parsed for _, y in ring]
    return Zone(name.strip(), party, tuple(parsed), frozenset(licensed),
                (min(xs), min(ys), max(xs), max(ys)))


@dataclass
class Alert:
    """What a rule found. ``evidence``: the (MMSI, window start) of each track showing it.

    An alert is named by its rule, vessels and ``time``; ``modified`` (default: ``time``)
    makes a later version of the same alert, as when a vessel reported dark reappears:
    one gap, one alert, whose newer version says where it came back. ``revises`` marks
    such a version when this run raised the first one. ``place`` names the alert's
    location when it must read the same in every version (default: the title)."""

    rule: str
    time: float
    lat: float
    lon: float
    mmsis: tuple[int, ...]
    evidence: tuple[tuple[int, float], ...]
    title: str
    details: dict[str, Any] = field(default_factory=dict)
    modified: float | None = None
    revises: bool = False
    place: str | None = None


class _Vessel:
    __slots__ = ("last_time", "last_lat", "last_lon", "last_window", "zones", "loiter",
                 "loiter_alerted", "cell", "dark")

    def __init__(self) -> None:
        self.last_time: float | None = None
        self.last_lat = 0.0
        self.last_lon = 0.0
        self.last_window = 0.0
        self.zones: frozenset[int] = frozenset()
        self.loiter: tuple[float, float, float, float] | None = None  # lat, lon, t, window
        self.loiter_alerted = False
        self.cell: tuple[int, int] | None = None
        self.dark = False  # reported dark since last_time (by sweep); cleared when heard


class RuleEngine:
    """Runs a rule set over positions in time order per vessel (earlier ones are ignored)."""

    def __init__(self, rules: RuleSet, window_seconds: float, max_vessels: int = 500_000) -> None:
        self.rules = rules
        self.window = window_seconds
        self.max_vessels = max_vessels
        self._vessels: dict[int, _Vessel] = {}
        self._slow: dict[int, tuple[float, float, float, float]] = {}  # t, lat, lon, window
        self._grid: dict[tuple[int, int], set[int]] = {}
        self._pairs: dict[tuple[int, int], list[float]] = {}  # start, last, alerted
        self._cell = rules.encounter_distance_m / _DEG_M  # a row's degrees of latitude
        # the columns round the globe, a whole number of them (each at least a row's
        # size), so the two either side of the antimeridian are neighbours
        self._columns = max(1, int(360 / self._cell))
        self._column = 360 / self._columns
        self._dark_checked = -math.inf  # the feed's time of the last look for dark vessels
        # every zone's bounding box in one (lon/lat min, max): most positions are outside
        boxes = [z.bbox for z in rules.zones]
        self._zones_bbox = (min(b[0] for b in boxes), min(b[1] for b in boxes),
                            max(b[2] for b in boxes), max(b[3] for b in boxes)) \
            if boxes else None

    def observe(self, p: Position) -> list[Alert]:
        """The alerts this position raises."""
        st = self._vessels.get(p.mmsi)
        if st is None:
            if len(self._vessels) >= self.max_vessels:
                self._forget()
            st = self._vessels[p.mmsi] = _Vessel()
        elif st.last_time is not None and p.time < st.last_time:
            return []
        window = p.time - p.time % self.window
        alerts: list[Alert] = []
        rules = self.rules
        if rules.gap_seconds is not None and st.last_time is not None and \
                (p.time - st.last_time > rules.gap_seconds or st.dark):
            alerts.append(self._gap(p, st, window))
            st.dark = False
        # Each rule's method is called only when it may do something: a position outside
        # every zone's box, of a vessel in no zone, changes nothing; a fast vessel only
        # drops its loitering anchor, and is outside the grid unless it was slow before.
        box = self._zones_bbox
        if box is not None and (st.zones or (box[0] <= p.lon <= box[2]
                                             and box[1] <= p.lat <= box[3])):
            self._zones(p, st, window, alerts)
        speed = p.speed
        if rules.loiter_seconds is not None:
            if speed is None or speed > rules.loiter_speed:
                st.loiter, st.loiter_alerted = None, False
            else:
                self._loiter(p, st, window, alerts, speed)
        if rules.encounter_seconds is not None and (
                st.cell is not None or (speed is not None and speed <= rules.encounter_speed)):
            self._encounter(p, st, window, alerts, speed)
        st.last_time, st.last_lat, st.last_lon, st.last_window = p.time, p.lat, p.lon, window
        return alerts

    def _gap(self, p: Position, st: _Vessel, window: float) -> Alert:
        """The gap seen whole: the vessel is back. When a sweep already reported it dark,
        this is a new version of that alert (the same gap), not a second alert."""
        assert st.last_time is not None  # noqa: S101 - checked by the caller
        silent = p.time - st.last_time
        return Alert("ais-gap", st.last_time, st.last_lat, st.last_lon, (p.mmsi,),
                     ((p.mmsi, st.last_window), (p.mmsi, window)),
                     f"AIS gap of {silent / 3600:.1f} h",
                     {"gap_seconds": round(silent), "dark_lat": st.last_lat,
                      "dark_lon": st.last_lon, "reappeared_lat": p.lat,
                      "reappeared_lon": p.lon, "reappeared": p.time},
                     modified=p.time, revises=st.dark, place=_GAP_PLACE)

    def _dark(self, mmsi: int, st: _Vessel) -> Alert:
        """A vessel still silent: the gap's first version, "dark since" its last position
        (nothing in it depends on when the sweep ran, so every run writes the same)."""
        assert st.last_time is not None  # noqa: S101 - checked by the caller
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.last_time))
        return Alert("ais-gap", st.last_time, st.last_lat, st.last_lon, (mmsi,),
                     ((mmsi, st.last_window),), f"AIS dark since {since}",
                     {"dark_lat": st.last_lat, "dark_lon": st.last_lon}, place=_GAP_PLACE)

    def _zones(self, p: Position, st: _Vessel, window: float, alerts: list[Alert]) -> None:
        hits = [i for i, z in enumerate(self.rules.zones) if z.contains(p.lat, p.lon)]
        if not hits and not st.zones:
            return
        inside = frozenset(hits)
        for i in sorted(inside - st.zones):
            zone = self.rules.zones[i]
            if p.mmsi not in zone.licensed:
                alerts.append(Alert("eez-unlicensed", p.time, p.lat, p.lon, (p.mmsi,),
                                    ((p.mmsi, window),),
                                    f"unlicensed vessel in {zone.name}",
                                    {"zone": zone.name, **({"zone_party": zone.party}
                                                           if zone.party else {})}))
        st.zones = inside

    def _loiter(self, p: Position, st: _Vessel, window: float, alerts: list[Alert],
                speed: float | None) -> None:
        rules = self.rules
        if speed is None or speed > rules.loiter_speed:
            st.loiter, st.loiter_alerted = None, False
            return
        anchor = st.loiter
        if anchor is None or distance_m(anchor[0], anchor[1], p.lat, p.lon) > \
                rules.loiter_radius_m:
            st.loiter, st.loiter_alerted = (p.lat, p.lon, p.time, window), False
            return
        assert rules.loiter_seconds is not None  # noqa: S101 - checked by the caller
        if not st.loiter_alerted and p.time - anchor[2] >= rules.loiter_seconds:
            st.loiter_alerted = True
            evidence = ((p.mmsi, anchor[3]),) + (((p.mmsi, window),)
                                                 if window != anchor[3] else ())
            alerts.append(Alert("loitering", p.time, anchor[0], anchor[1], (p.mmsi,),
                                evidence,
                                f"loitering for {(p.time - anchor[2]) / 3600:.1f} h",
                                {"since": anchor[2], "radius_m": round(rules.loiter_radius_m)}))

    def _encounter(self, p: Position, st: _Vessel, window: float, alerts: list[Alert],
                   speed: float | None) -> None:
        rules = self.rules
        size = self._cell
        if st.cell is not None:  # leave the grid; come back below if still slow
            members = self._grid.get(st.cell)
            if members is not None:
                members.discard(p.mmsi)
                if not members:
                    del self._grid[st.cell]
            st.cell = None
            self._slow.pop(p.mmsi, None)
        if speed is None or speed > rules.encounter_speed:
            return
        columns = self._columns
        ci = int(math.floor(p.lat / size))
        cj = int((p.lon + 180) / self._column) % columns
        reach = math.ceil(1 / max(math.cos(math.radians(p.lat)), 0.01))
        if reach <= cj < columns - reach:
            near: range | list[int] = range(cj - reach, cj + reach + 1)
        elif 2 * reach + 1 < columns:  # round the antimeridian
            near = [(cj + dj) % columns for dj in range(-reach, reach + 1)]
        else:
            near = range(columns)
        gap = rules.encounter_report_gap
        assert rules.encounter_seconds is not None  # noqa: S101 - checked by the caller
        for di in (-1, 0, 1):
            for cj_near in near:
                for other in self._grid.get((ci + di, cj_near), ()):
                    ot, olat, olon, owin = self._slow[other]
                    if abs(p.time - ot) > gap or \
                            distance_m(p.lat, p.lon, olat, olon) > rules.encounter_distance_m:
                        continue
                    key = (p.mmsi, other) if p.mmsi < other else (other, p.mmsi)
                    pair = self._pairs.get(key)
                    if pair is None or p.time - pair[1] > gap:
                        self._pairs[key] = [min(p.time, ot), p.time, 0.0]
                        continue
                    pair[1] = max(pair[1], p.time)
                    if not pair[2] and pair[1] - pair[0] >= rules.encounter_seconds:
                        pair[2] = 1.0
                        alerts.append(Alert(
                            "encounter", p.time, (p.lat + olat) / 2, _middle(p.lon, olon), key,
                            ((p.mmsi, window), (other, owin)),
                            f"encounter for {(pair[1] - pair[0]) / 3600:.1f} h",
                            {"since": pair[0], "distance_m": round(
                                distance_m(p.lat, p.lon, olat, olon))}))
        st.cell = (ci, cj)
        self._grid.setdefault(st.cell, set()).add(p.mmsi)
        self._slow[p.mmsi] = (p.time, p.lat, p.lon, window)

    def sweep(self, clock: float, *, final: bool = False) -> list[Alert]:
        """What only the passing of time shows: call now and then, and with ``final`` at
        the end of the feed. Returns the vessels newly gone dark; forgets encounter
        contacts older than the report gap.

        ``clock`` is the feed's time (the latest time seen in it), never the wall clock,
        so ingesting a file again raises the same alerts."""
        limit = clock - 2 * self.rules.encounter_report_gap
        stale = [k for k, pair in self._pairs.items() if pair[1] < limit]
        for k in stale:
            del self._pairs[k]
        return self._gone_dark(clock, final)

    def _gone_dark(self, clock: float, final: bool) -> list[Alert]:
        """Each vessel silent for longer than the gap threshold at ``clock``, once per
        silence. Every vessel is looked at, so this runs only when the feed's time has
        moved on by an eighth of the threshold since the last look (and when ``final``):
        a replayed day costs a hundred looks, whatever the sweeps' cadence."""
        threshold = self.rules.gap_seconds
        if threshold is None or not self.rules.gap_while_dark or not math.isfinite(clock):
            return []
        if not final and clock - self._dark_checked < threshold / 8:
            return []
        self._dark_checked = clock
        limit = clock - threshold
        alerts = []
        for mmsi, st in self._vessels.items():
            if not st.dark and st.last_time is not None and st.last_time < limit:
                st.dark = True
                alerts.append(self._dark(mmsi, st))
        return alerts

    def _forget(self) -> None:
        """Drop the quarter of vessels heard from least recently (memory stays bounded)."""
        by_time = sorted(self._vessels, key=lambda m: self._vessels[m].last_time or 0.0)
        for mmsi in by_time[:max(1, len(by_time) // 4)]:
            st = self._vessels.pop(mmsi)
            if st.cell is not None:
                self._grid.get(st.cell, set()).discard(mmsi)
            self._slow.pop(mmsi, None)
