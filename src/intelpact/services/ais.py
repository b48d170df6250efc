"""AIS ingest: NMEA lines in, vessels, tracks and alerts published as a person of the node.

Streaming: lines are decoded one at a time (maritime.nmea); positions join their
vessel's open track (maritime.vessels.TrackWindows); the rules see each position as it
arrives (maritime.rules), and their sweep, every 5,000 positions and at the end of the
input, reports the vessels gone dark by the feed's clock. A track is published as one
sighting when its window closes, and an alert once the sightings it cites are published.
Objects go out through the node's Publisher in batches, so labels, clearance checks,
signing, audit and federation all apply as for `intelpact publish`. Memory is bounded by
the vessels heard within one window (and a little state per vessel), never by the length
of the input.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..maritime.nmea import NmeaReader, Position, ReadStats, Static
from ..maritime.rules import Alert, RuleEngine, RuleSet
from ..maritime.vessels import (
    Track,
    TrackWindows,
    VesselInfo,
    alert_objects,
    sighting_object,
    vessel_object,
)
from ..model import Agreement, Person
from .publish import MarkingRequest, Publisher

__all__ = ["AisIngest", "IngestSummary", "default_marking"]

_RECENT = 200_000  # (vessel, window) -> sighting id, for alerts citing closed tracks


def default_marking(agreement: Agreement) -> MarkingRequest:
    """The agreement's lowest covered level, releasable to every party that holds it, in
    the MARITIME community when the agreement has one."""
    rank = min(agreement.covered)
    row = agreement.rows[rank]
    rel = tuple(p for p in agreement.parties if row.cells[p].held)
    communities = ("MARITIME",) if "MARITIME" in agreement.communities else ()
    return MarkingRequest(row.name, rel, (), communities)


@dataclass
class IngestSummary:
    """What one ingest read, published and refused."""

    stats: ReadStats
    vessels: int = 0
    sightings: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    updated: int = 0  # new versions of alerts raised in this run (a dark vessel is back)
    accepted: int = 0
    rejected: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Pending:
    alert: Alert
    refs: dict[tuple[int, float], str | None]
    emitted: bool = False


class AisIngest:
    """One ingest run as ``person`` into ``collection_id``, under ``marking``."""

    def __init__(self, publisher: Publisher, person: Person, collection_id: str, *,
                 marking: MarkingRequest, rules: RuleSet | None,
                 window_seconds: float = 600.0, batch: int = 2000,
                 clock: Callable[[], float] = time.time) -> None:
        self.publisher = publisher
        self.person = person
        self.party = person.party
        self.collection_id = collection_id
        self.marking = marking
        self.window = window_seconds
        self.batch = batch
        self.reader = NmeaReader(clock=clock)
        self.windows = TrackWindows(window_seconds)
        self.engine = RuleEngine(rules, window_seconds) if rules is not None else None
        self.summary = IngestSummary(self.reader.stats)
        self._info: dict[int, VesselInfo] = {}
        self._published: dict[int, tuple[float, bool]] = {}  # modified, data changed since
        self._recent: dict[tuple[int, float], str] = {}
        self._latest: dict[int, tuple[float, str]] = {}  # vessel -> its last track's key, id
        self._waiting: dict[tuple[int, float], list[_Pending]] = {}
        self._buffer: list[dict[str, Any]] = []

    def run(self, lines: Iterable[bytes],
            progress: Callable[[int], None] | None = None) -> IngestSummary:
        """Read every line, publish everything, and say what happened."""
        started = time.perf_counter()
        reader, windows, engine = self.reader, self.windows, self.engine
        seen = 0
        done = 0
        for n, line in enumerate(lines, 1):
            done += len(line)
            for report in reader.feed(line):
                if type(report) is Position:
                    flushed = windows.add(report)
                    if flushed is not None:
                        self._flush(flushed)
                    if engine is not None:
                        for alert in engine.observe(report):
                            self._alert(alert)
                    seen += 1
                    if seen % 5000 == 0:
                        for track in windows.expired():
                            self._flush(track)
                        if engine is not None:
                            for alert in engine.sweep(windows.clock):
                                self._alert(alert)
                elif type(report) is Static:
                    info = self._info.get(report.mmsi)
                    if info is None:
                        info = self._info[report.mmsi] = VesselInfo(report.mmsi)
                    if info.merge(report) and report.mmsi in self._published:
                        self._published[report.mmsi] = (self._published[report.mmsi][0], True)
            if progress is not None and n % 2000 == 0:
                progress(done)
                done = 0
        reader.finish()
        if engine is not None:  # a vessel silent at the end of the input is dark
            for alert in engine.sweep(windows.clock, final=True):
                self._alert(alert)
        for track in windows.drain():
            self._flush(track)
        for pendings in list(self._waiting.values()):
            for pending in pendings:
                self._emit(pending)  # cites what was published of its evidence
        self._waiting.clear()
        for mmsi in list(self._info):
            self._vessel(mmsi)  # vessels heard only in static reports, and late changes
        self._publish()
        if progress is not None and done:
            progress(done)
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _vessel(self, mmsi: int) -> None:
        """Queue the vessel's identity when it is new here, or its static data changed."""
        state = self._published.get(mmsi)
        if state is not None and not state[1]:
            return
        info = self._info.get(mmsi)
        modified = info.time if info is not None else None
        if state is not None and modified is not None and modified <= state[0]:
            modified = state[0] + 0.001  # versions only go forward
        if state is not None and modified is None:
            return
        self._buffer.append(vessel_object(mmsi, info, modified=modified))
        self._published[mmsi] = (modified if modified is not None else 0.0, False)
        if state is None:
            self.summary.vessels += 1

    def _flush(self, track: Track) -> None:
        self._vessel(track.mmsi)
        obj = sighting_object(self.party, track, self.window)
        self._buffer.append(obj)
        self.summary.sightings += 1
        key = (track.mmsi, track.start)
        recent = self._recent
        recent.pop(key, None)
        recent[key] = obj["id"]
        if len(recent) > _RECENT:
            del recent[next(iter(recent))]
        self._latest[track.mmsi] = (track.start, obj["id"])
        for pending in self._waiting.pop(key, []):
            pending.refs[key] = obj["id"]
            if all(pending.refs.values()):
                self._emit(pending)
        if len(self._buffer) >= self.batch:
            self._publish()

    def _sighting(self, key: tuple[int, float]) -> str | None:
        """The id of the published track ``key`` (vessel, window), if this run knows it.
        A dark vessel's last track may be older than every recent one, but it is still
        that vessel's latest."""
        found = self._recent.get(key)
        if found is None:
            latest = self._latest.get(key[0])
            if latest is not None and latest[0] == key[1]:
                found = latest[1]
        return found

    def _alert(self, alert: Alert) -> None:
        refs = {key: self._sighting(key) for key in alert.evidence}
        pending = _Pending(alert, refs)
        missing = [key for key, found in refs.items() if found is None]
        if not missing:
            self._emit(pending)
        for key in missing:
            self._waiting.setdefault(key, []).append(pending)

    def _emit(self, pending: _Pending) -> None:
        if pending.emitted:
            return
        pending.emitted = True
        for mmsi in pending.alert.mmsis:
            self._vessel(mmsi)
        alert = pending.alert
        evidence = [ref for ref in pending.refs.values() if ref is not None]
        objects = alert_objects(self.party, alert, evidence)
        if alert.revises:  # a new version: its location went out with the first one
            self._buffer.extend(o for o in objects if o["type"] != "location")
            self.summary.updated += 1
        else:
            self._buffer.extend(objects)
            self.summary.alerts[alert.rule] += 1

    def _publish(self) -> None:
        if not self._buffer:
            return
        objects, self._buffer = self._buffer, []
        record = self.publisher.publish(self.person, self.collection_id, objects,
                                        marking=self.marking)
        given = {o["id"] for o in objects}
        body = record.body
        summary = self.summary
        summary.accepted += sum(1 for s in body["successes"] if s["id"] in given)
        summary.rejected += body["failure_count"]
        room = 20 - len(summary.failures)
        if room > 0:
            summary.failures.extend((f["id"], f["message"]) for f in body["failures"][:room])
