"""The maritime picture (`/map`): vessel tracks and alerts on a server-rendered SVG map.

Everything drawn comes from ``Node.find`` with a type filter (sightings, then the
vessels and alert locations they name, and notes), so the label filter runs in the
store's query and every object drawn is audited as a read (``via``: ``console-map``),
exactly as for the search page; the page's banner is the join of their labels. The
projection is equirectangular (x scaled by the cosine of the middle latitude), fitted
to the bounding box of what is drawn; the coastlines are Natural Earth 1:110m land,
bundled (``data/land-110m.json``, TopoJSON, decoded here once). No tile, script or
other resource is fetched: the page works without JavaScript.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

from ...maritime.extension import AIS_EXTENSION_ID, is_position, is_timestamp
from ...model import Label
from ...services.people import Principal
from ...store.base import Query, normalise_timestamp, parse_timestamp
from . import banners
from .app import Console, ConsoleError, Page

MAX_TRACKS = 5000  # sightings read per page, newest stored first
MAX_ALERTS = 500
WIDTH, HEIGHT = 960.0, 600.0
MIN_SPAN = 16.0  # degrees of longitude shown at least
LABEL_WIDTH, LABEL_HEIGHT = 260.0, 14.0  # the room a vessel's name takes on the map
BREAK_SECONDS = 3600.0  # a vessel silent longer than this: its line is broken
PALETTE = ("#005f99", "#8a3b00", "#1b6e20", "#6a1b9a", "#00606e", "#7a5c00")
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d(T\d\d:\d\d(:\d\d)?)?$")

Point = tuple[float, float]  # lon, lat


@dataclass
class _Vessel:
    vessel_id: str
    name: str
    originator: str
    points: list[tuple[str, float, float]] = field(default_factory=list)  # time, lat, lon


@lru_cache(maxsize=1)
def coastlines() -> tuple[tuple[tuple[Point, ...], tuple[float, float, float, float]], ...]:
    """Natural Earth 1:110m land as rings of (lon, lat), each with its bounding box
    (west, south, east, north). TopoJSON: quantized, delta-encoded arcs; a ring is a
    list of arc indices, ~i meaning arc i reversed (topojson-specification 2.1)."""
    text = resources.files(__package__).joinpath("data/land-110m.json").read_text("utf-8")
    topology = json.loads(text)
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs: list[list[Point]] = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    rings = []
    for geometry in topology["objects"]["land"]["geometries"]:
        polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
        for polygon in polygons:
            for ring in polygon:
                coords: list[Point] = []
                for index in ring:
                    arc = arcs[index] if index >= 0 else arcs[~index][::-1]
                    coords.extend(arc if not coords else arc[1:])
                shift = 0.0  # a ring across the antimeridian (Fiji) made continuous
                for i in range(1, len(coords)):
                    step = coords[i][0] + shift - coords[i - 1][0]
                    if abs(step) > 180:
                        shift -= math.copysign(360.0, step)
                    coords[i] = (coords[i][0] + shift, coords[i][1])
                lons, lats = [p[0] for p in coords], [p[1] for p in coords]
                rings.append((tuple(coords), (min(lons), min(lats), max(lons), max(lats))))
    return tuple(rings)


class Projection:
    """Equirectangular, fitted to a bounding box of (lon, lat) with a margin. Longitudes
    are taken in [0, 360) when the data is nearer across the antimeridian (the Pacific)."""

    def __init__(self, points: list[Point]) -> None:
        lons = [lon for lon, _ in points] or [0.0]
        lats = [lat for _, lat in points] or [0.0]
        shifted = [lon % 360 for lon in lons]
        self.wrap = max(shifted) - min(shifted) < max(lons) - min(lons)
        if self.wrap:
            lons = shifted
        west, east, south, north = min(lons), max(lons), min(lats), max(lats)
        # a margin, and at least MIN_SPAN degrees across: the coastlines give context
        grow = max(MIN_SPAN - (east - west), (east - west) * 0.2) / 2
        west, east = west - grow, east + grow
        grow = max(MIN_SPAN * 0.6 - (north - south), (north - south) * 0.2) / 2
        # moved, never cut, to lie within the poles: a track near one keeps the box's
        # height (cut, it had none, and the scale divided by zero)
        height = min(north - south + 2 * grow, 180.0)
        south = min(max(south - grow, -90.0), 90.0 - height)
        north = south + height
        self.kx = math.cos(math.radians((south + north) / 2))
        width, height = (east - west) * self.kx, north - south
        self.scale = min(WIDTH / width, HEIGHT / height)
        self.x0 = (west + east) / 2 * self.kx - WIDTH / 2 / self.scale
        self.y0 = (south + north) / 2 + HEIGHT / 2 / self.scale
        self.bounds = (west, south, east, north)

    def lon(self, lon: float) -> float:
        return lon % 360 if self.wrap else lon

    def xy(self, lon: float, lat: float) -> tuple[float, float]:
        x = (self.lon(lon) * self.kx - self.x0) * self.scale
        return round(x, 1), round((self.y0 - lat) * self.scale, 1)

    def land(self) -> str:
        """An SVG path of the coastlines in view (each ring drawn at the offsets of the
        world that fall in the box: 0, and +/-360 across the antimeridian)."""
        west, south, east, north = self.bounds
        parts = []
        for ring, (w, s, e, n) in coastlines():
            if n < south or s > north:
                continue
            for offset in (0.0, 360.0, -360.0):
                if e + offset < west or w + offset > east:
                    continue
                clipped = _clip([(lon + offset, lat) for lon, lat in ring], self.bounds)
                if len(clipped) >= 3:
                    pts = [self.xy_raw(lon, lat) for lon, lat in clipped]
                    parts.append("M" + " L".join(f"{x},{y}" for x, y in pts) + "Z")
        return " ".join(parts)

    def xy_raw(self, lon: float, lat: float) -> tuple[float, float]:
        return (round((lon * self.kx - self.x0) * self.scale, 1),
                round((self.y0 - lat) * self.scale, 1))


def _clip(ring: list[Point], box: tuple[float, float, float, float]) -> list[Point]:
    """The part of a polygon ring inside the box (west, south, east, north), by
    Sutherland-Hodgman: one pass per edge of the box. A ring much larger than the box
    (Afro-Eurasia) would otherwise be drawn far outside it, and filled across it."""
    west, south, east, north = box
    edges: list[tuple[Any, Any]] = [
        (lambda p: p[0] >= west, lambda a, b: _at_lon(a, b, west)),
        (lambda p: p[0] <= east, lambda a, b: _at_lon(a, b, east)),
        (lambda p: p[1] >= south, lambda a, b: _at_lat(a, b, south)),
        (lambda p: p[1] <= north, lambda a, b: _at_lat(a, b, north))]
    points = ring
    for keep, cross in edges:
        if not points:
            break
        out: list[Point] = []
        previous = points[-1]
        for point in points:
            if keep(point):
                if not keep(previous):
                    out.append(cross(previous, point))
                out.append(point)
            elif keep(previous):
                out.append(cross(previous, point))
            previous = point
        points = out
    return points


def _at_lon(a: Point, b: Point, lon: float) -> Point:
    t = (lon - a[0]) / (b[0] - a[0])
    return lon, a[1] + t * (b[1] - a[1])


def _at_lat(a: Point, b: Point, lat: float) -> Point:
    t = (lat - a[1]) / (b[1] - a[1])
    return a[0] + t * (b[0] - a[0]), lat


def _when(value: str, what: str, end: bool = False) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not _STAMP.fullmatch(value):
        raise ConsoleError(400, f"'{what}' is not a time",
                           "write a time as YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)")
    if len(value) == 10:
        value += "T23:59:59.999Z" if end else "T00:00:00Z"
    elif len(value) == 16:
        value += ":59.999Z" if end else ":00Z"
    else:
        value += "Z"
    try:
        return normalise_timestamp(value)
    except ValueError:
        raise ConsoleError(400, f"'{what}' is not a time",
                           "write a time as YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)") from None


def _iso(text: str) -> str:
    """A STIX timestamp in the store's normal form, for comparing with the window."""
    try:
        return normalise_timestamp(text)
    except ValueError:
        return ""


def _read(console: Console, principal: Principal, query: Query, limit: int
          ) -> tuple[list[tuple[Any, dict[str, Any]]], bool]:
    """Up to ``limit`` objects through Node.find (label filter, audit); whether more."""
    node = console.node
    cid = node.default_collection().collection_id
    out: list[tuple[Any, dict[str, Any]]] = []
    cursor = None
    while True:
        page, rows = node.find(principal, cid, dataclasses.replace(query, cursor=cursor),
                               via="console-map")
        out += [(row, json.loads(body)) for row, body in rows]
        if not page.more or not page.next or len(out) >= limit:
            return out[:limit], page.more or len(out) > limit
        cursor = page.next


def show(console: Console, request: Request, principal: Principal,
         form: FormData | None) -> Page:
    node = console.node
    agreement = node.agreement
    party = principal.person.party
    params = request.query_params
    community = params.get("community", "")
    if community and community not in agreement.communities:
        raise ConsoleError(400, "Unknown community", "choose one from the list")
    since, until = _when(params.get("since", ""), "from"), _when(params.get("until", ""),
                                                                 "until", end=True)
    labels = node.store.labels()
    wanted: tuple[int, ...] = ()
    if community:  # the object's own marking (its base label), as on the search page
        wanted = tuple(i for i, lb in labels.items()
                       if any(community in clause for clause in lb.communities)) or (-1,)
    shown: list[Label] = []

    def inside(stamp: str) -> bool:
        return bool(stamp) and (since is None or stamp >= since) and (
            until is None or stamp <= until)

    # tracks: the AIS sightings, newest stored first
    sightings, more_tracks = _read(console, principal, Query(
        types=("sighting",), label_ids=wanted, newest_first=True, limit=1000), MAX_TRACKS)
    vessels: dict[str, _Vessel] = {}
    skipped = 0  # positions (and alert locations) stored malformed: not drawn, counted
    for row, obj in sightings:
        ext = obj.get("extensions", {}).get(AIS_EXTENSION_ID)
        if not isinstance(ext, dict) or not isinstance(ext.get("track"), list):
            continue
        points = []
        for p in ext["track"]:  # validated on the way in; checked again: stored is stored
            if (isinstance(p, dict) and is_position(p.get("lat"), p.get("lon"))
                    and is_timestamp(p.get("time"))):
                points.append((_iso(p["time"]), float(p["lat"]), float(p["lon"])))
            else:
                skipped += 1
        points = [p for p in points if inside(p[0])]
        if not points:
            continue
        shown.append(console.node.shown_labels(row, obj, labels).banner)
        vid = str(obj.get("sighting_of_ref", ""))
        mmsi = ext.get("mmsi")
        vessel = vessels.setdefault(vid, _Vessel(
            vid, f"MMSI {mmsi if type(mmsi) is int else '?'}", row.originator))
        vessel.points += points
    # the vessels' names, where the viewer may see the vessel
    ids = tuple(vessels)
    for start in range(0, len(ids), 200):
        found, _ = _read(console, principal, Query(ids=ids[start:start + 200],
                                                   types=("identity",), limit=200), 200)
        for row, obj in found:
            shown.append(console.node.shown_labels(row, obj, labels).banner)
            vessels[row.object_id].name = str(obj.get("name", vessels[row.object_id].name))
    # alerts: AIS notes in the window, at their location
    notes, more_alerts = _read(console, principal, Query(
        types=("note",), label_ids=wanted, newest_first=True, limit=500), MAX_ALERTS)
    alerts: list[dict[str, Any]] = []
    where: dict[str, str] = {}
    for row, obj in notes:
        ext = obj.get("extensions", {}).get(AIS_EXTENSION_ID)
        if not isinstance(ext, dict) or not inside(_iso(str(ext.get("alert_time", "")))):
            continue
        label = console.node.shown_labels(row, obj, labels).banner
        shown.append(label)
        refs = [r for r in obj.get("object_refs", []) if str(r).startswith("location--")]
        alerts.append({"id": row.object_id, "abstract": str(obj.get("abstract", "")),
                       "rule": str(ext.get("rule", "")), "time": str(ext["alert_time"]),
                       "originator": row.originator, "location": refs[0] if refs else "",
                       "banner": banners.for_label(label, agreement, party)})
        if refs:
            where[refs[0]] = row.object_id
    located: dict[str, tuple[float, float]] = {}
    loc_ids = tuple(where)
    for start in range(0, len(loc_ids), 200):
        found, _ = _read(console, principal, Query(ids=loc_ids[start:start + 200],
                                                   types=("location",), limit=200), 200)
        for row, obj in found:
            if is_position(obj.get("latitude"), obj.get("longitude")):
                shown.append(console.node.shown_labels(row, obj, labels).banner)
                located[row.object_id] = (float(obj["longitude"]), float(obj["latitude"]))
            elif "latitude" in obj or "longitude" in obj:
                skipped += 1
    alerts = [a for a in alerts if a["location"] in located]
    alerts.sort(key=lambda a: a["time"], reverse=True)
    return Page("map.html", _drawing(vessels, alerts, located, agreement, params,
                                     community, more_tracks or more_alerts, skipped),
                labels=shown)


class _Labels:
    """Where the vessels' names go on the map: each just below its marker, moved down
    past every name placed before that it would overlap, and left off (None) once its
    baseline would be below the map (the list under the map names every vessel).

    The names placed are kept by cell of one name's size, which holds at most one (two
    in a cell would overlap), so a place is checked against the nine cells around it,
    never against every name, and a name moves down at most HEIGHT / LABEL_HEIGHT
    times: labels cost O(n) for n vessels however close together they are (checked
    against every name, a port of vessels at one point cost O(n^3))."""

    def __init__(self) -> None:
        self._cells: dict[tuple[int, int], tuple[float, float]] = {}

    def place(self, x: float, y: float) -> float | None:
        """The baseline of the name of a marker at (x, y), or None: not drawn."""
        label_y = y + 4
        while label_y <= HEIGHT:
            if not self._overlaps(x, label_y):
                self._cells[_label_cell(x, label_y)] = (x, label_y)
                return label_y
            label_y += LABEL_HEIGHT
        return None

    def _overlaps(self, x: float, y: float) -> bool:
        i, j = _label_cell(x, y)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                other = self._cells.get((i + di, j + dj))
                if other is not None and abs(x - other[0]) < LABEL_WIDTH \
                        and abs(y - other[1]) < LABEL_HEIGHT:
                    return True
        return False


def _label_cell(x: float, y: float) -> tuple[int, int]:
    return math.floor(x / LABEL_WIDTH), math.floor(y / LABEL_HEIGHT)


def _drawing(vessels: dict[str, _Vessel], alerts: list[dict[str, Any]],
             located: dict[str, tuple[float, float]], agreement: Any,
             params: Any, community: str, truncated: bool, skipped: int
             ) -> dict[str, Any]:
    points = [(lon, lat) for v in vessels.values() for _, lat, lon in v.points]
    points += [located[a["location"]] for a in alerts]
    projection = Projection(points)
    origins = sorted({v.originator for v in vessels.values()})
    colour = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(origins)}
    tracks: list[dict[str, Any]] = []
    markers: list[dict[str, Any]] = []
    labels = _Labels()
    for vessel in sorted(vessels.values(), key=lambda v: v.name):
        vessel.points.sort()
        lines: list[list[tuple[float, float]]] = [[]]
        previous = None
        for stamp, lat, lon in vessel.points:
            if previous is not None and _gap(previous, stamp) > BREAK_SECONDS:
                lines.append([])
            lines[-1].append(projection.xy(lon, lat))
            previous = stamp
        for line in lines:
            tracks.append({"points": " ".join(f"{x},{y}" for x, y in line),
                           "colour": colour[vessel.originator], "vessel": vessel.name})
        last = vessel.points[-1]
        x, y = projection.xy(last[2], last[1])
        markers.append({"x": x, "y": y, "label_y": labels.place(x, y), "name": vessel.name,
                        "id": vessel.vessel_id,
                        "colour": colour[vessel.originator], "time": last[0][:19] + "Z",
                        "lat": last[1], "lon": last[2], "originator": vessel.originator,
                        "positions": len(vessel.points)})
    for alert in alerts:
        lon, lat = located[alert["location"]]
        alert["x"], alert["y"] = projection.xy(lon, lat)
        alert["lat"], alert["lon"] = lat, lon
    west, south, east, north = projection.bounds
    return {"width": int(WIDTH), "height": int(HEIGHT), "land": projection.land(),
            "tracks": tracks, "markers": markers, "alerts": alerts,
            "origins": [(p, colour[p]) for p in origins],
            "bounds": f"{south:.1f}° to {north:.1f}° latitude, {_lon(west)} to {_lon(east)}",
            "communities": sorted(agreement.communities), "community": community,
            "since": params.get("since", ""), "until": params.get("until", ""),
            "truncated": truncated, "skipped": skipped, "max_tracks": f"{MAX_TRACKS:,}",
            "max_alerts": f"{MAX_ALERTS:,}"}


def _lon(value: float) -> str:
    value = (value + 180) % 360 - 180
    return f"{abs(value):.1f}°{'E' if value >= 0 else 'W'}"


def _gap(a: str, b: str) -> float:
    try:
        return (parse_timestamp(b) - parse_timestamp(a)).total_seconds()
    except ValueError:
        return 0.0
