"""Vessels, tracks and alerts as STIX, and `intelpact ingest ais` end to end on real nodes."""

from __future__ import annotations

import json
import uuid
from functools import reduce
from operator import xor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pyais import encode_dict

from intelpact.interfaces.cli import main
from intelpact.maritime.nmea import Position, Static
from intelpact.maritime.rules import Alert
from intelpact.maritime.vessels import (
    AIS_EXTENSION_ID,
    NAMESPACE,
    Track,
    TrackWindows,
    VesselInfo,
    alert_objects,
    sighting_object,
    vessel_id,
    vessel_object,
)
from intelpact.services.ais import AisIngest, default_marking
from intelpact.services.courier import Courier
from intelpact.services.node import Node
from intelpact.stix import validate_object

from helpers import AGREEMENTS, DATA, make_node, pin_each_other, serving_federation

SAMPLE = DATA / "ais" / "pyais" / "nmea_data_sample.txt"
T0 = 1_790_000_000  # 2026-09-21T14:13:20Z


def tag(line: str, when: float, source: str = "test") -> bytes:
    body = f"s:{source},c:{int(when)}".encode()
    return b"\\" + body + b"*%02X\\" % reduce(xor, body, 0) + line.encode() + b"\n"


def position(mmsi: int, when: float, lat: float, lon: float, speed: float = 10.0) -> bytes:
    msg = {"type": 1, "mmsi": mmsi, "lat": lat, "lon": lon, "speed": speed, "course": 90.0,
           "heading": 90}
    return tag(encode_dict(msg, talker_id="AI", sentence_type="VDM")[0], when)


def static(mmsi: int, when: float, name: str) -> bytes:
    msg = {"type": 5, "mmsi": mmsi, "shipname": name, "callsign": "A3ABC", "imo": 9123456,
           "ship_type": 30, "to_bow": 30, "to_stern": 10, "to_port": 5, "to_starboard": 5}
    return b"".join(tag(s, when) for s in encode_dict(msg, talker_id="AI",
                                                        sentence_type="VDM", seq_id=3))


def test_vessel_ids_are_uuid5_of_the_mmsi_everywhere() -> None:
    assert vessel_id(512000001) == f"identity--{uuid.uuid5(NAMESPACE, 'mmsi:512000001')}"
    assert vessel_object(512000001) == vessel_object(512000001)
    assert vessel_object(512000001)["id"] == vessel_id(512000001)


def test_objects_are_valid_stix() -> None:
    info = VesselInfo(512000001)
    info.merge(Static(512000001, T0, name="KALIA", call_sign="A3ABC", imo=9123456,
                      ship_type=30, dimensions=(30, 10, 5, 5), destination="NUKUALOFA"))
    vessel = vessel_object(512000001, info, modified=info.time)
    validate_object(vessel)
    ext = vessel["extensions"][AIS_EXTENSION_ID]
    assert (ext["vessel_name"], ext["ship_type_text"], ext["imo"]) == ("KALIA", "Fishing",
                                                                       9123456)
    track = Track(512000001, T0 - T0 % 600, [
        Position(512000001, T0 + 1.5, -20.0, -175.0, 0.0, None, None, 1, "s1"),
        Position(512000001, T0 + 11, -20.0001, -175.0, 10.2, 91.5, 90, 1, "s2")])
    sighting = sighting_object("TON", track, 600)
    validate_object(sighting)
    assert sighting["count"] == 2 and sighting["sighting_of_ref"] == vessel["id"]
    assert sighting["first_seen"] == "2026-09-21T14:13:21.500Z"
    points = sighting["extensions"][AIS_EXTENSION_ID]["track"]
    assert points[0] == {"time": "2026-09-21T14:13:21.500Z", "lat": -20, "lon": -175,
                         "speed": 0}  # no course, no heading: not available
    assert sighting_object("TON", track, 600)["id"] == sighting["id"]  # deterministic
    assert sighting_object("NZL", track, 600)["id"] != sighting["id"]  # per node
    alert = Alert("encounter", T0, -20.0, -175.0, (512000001, 512000002), (), "encounter",
                  {"since": T0 - 7200.0, "distance_m": 220})
    location, note = alert_objects("TON", alert, [sighting["id"]])
    validate_object(location)
    validate_object(note)
    assert note["object_refs"] == [sighting["id"], vessel_id(512000001),
                                   vessel_id(512000002), location["id"]]


def test_track_windows_flush_when_a_window_closes() -> None:
    windows = TrackWindows(600, grace=60)
    p = [Position(1, T0 + t, 0, 0, None, None, None, 1) for t in (0, 100, 700)]
    assert windows.add(p[0]) is None and windows.add(p[1]) is None
    flushed = windows.add(p[2])
    assert flushed is not None and len(flushed.points) == 2
    windows.add(Position(2, T0 + 2000, 0, 0, None, None, None, 1))
    assert [t.mmsi for t in windows.expired()] == [1]  # vessel 1's window ended long ago
    assert [t.mmsi for t in windows.drain()] == [2] and len(windows) == 0


def test_default_marking_is_the_lowest_covered_level_to_every_party() -> None:
    from intelpact.model import load_agreement

    pacific = default_marking(load_agreement(AGREEMENTS / "pacific-maritime.toml"))
    assert (pacific.classification, pacific.rel_to, pacific.communities) == (
        "UNCLASSIFIED", ("NZL", "JPN", "FJI", "TON", "WSM"), ("MARITIME",))


# --- the command, end to end -----------------------------------------------------------------

def run(*args: object, code: int = 0, input: bytes | None = None) -> Result:
    runner = CliRunner(env={"COLUMNS": "400"})
    result = runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
    assert result.exit_code == code, (args, result.output)
    return result


@pytest.fixture()
def node_dir(tmp_path: Path) -> Path:
    node = make_node(tmp_path / "ton", party="TON", agreement="pacific-maritime.toml")
    node.people.add("sione", party="TON", clearance="RESTRICTED", communities=["MARITIME"],
                    roles=("analyst", "publisher"))
    node.people.add("mele", party="TON", clearance="RESTRICTED", roles=("analyst",))
    node.people.add("losa", party="TON", clearance="RESTRICTED", roles=("publisher",))
    node.people.add("ops", party="TON", clearance="RESTRICTED", communities=["MARITIME"],
                    roles=("operator",))
    node.people.add("aroha", party="NZL", clearance="RESTRICTED", communities=["MARITIME"])
    node.close()
    return tmp_path / "ton"


def stored(node_dir: Path, person: str) -> list[dict[str, Any]]:
    from intelpact.interfaces.cli import _visible

    node = Node.open(node_dir)
    try:
        return [o for _, o in _visible(node, node.people.as_person(person), "export")
                if o["type"] != "marking-definition"]
    finally:
        node.close()


def test_ingest_the_pyais_sample(node_dir: Path) -> None:
    result = run("ingest", "ais", node_dir, SAMPLE, "--as", "sione")
    out = result.output
    assert "898 AIS sentences" in out
    assert "refused    120 sentences: empty payload 100, missing parts 20" in out
    assert "4 with no position" in out
    objects = stored(node_dir, "sione")
    vessels = [o for o in objects if o["type"] == "identity"]
    sightings = [o for o in objects if o["type"] == "sighting"]
    assert len(objects) == len(vessels) + len(sightings)  # nothing else: no bad sentence
    assert f"{len(vessels)} vessels, {len(sightings)} tracks" in out
    assert sum(s["count"] for s in sightings) == 758  # every position, once
    for obj in objects:
        validate_object(obj)
    assert stored(node_dir, "aroha") == objects  # REL TO every party, MARITIME
    assert stored(node_dir, "mele") == []  # not in MARITIME
    node = Node.open(node_dir)
    try:
        label = node.markings.label(objects[0]).banner
        assert label.rel_to == frozenset({"NZL", "JPN", "FJI", "TON", "WSM"})
        assert node.agreement.rows[label.rank].name == "UNCLASSIFIED"
    finally:
        node.close()
    again = run("ingest", "ais", node_dir, SAMPLE, "--as", "sione").output
    assert "0 rejected" in again  # the same vessels and tracks: already stored


def test_ingest_from_stdin_with_alerts_and_a_marking(node_dir: Path, tmp_path: Path) -> None:
    feed = [static(512000001, T0, "KALIA")]
    # an unlicensed vessel crossing into the sample Tonga EEZ, then silent for 3 h
    for i in range(12):
        feed.append(position(512000001, T0 + 300 * i, -20.0, -171.5 - 0.1 * i))
    feed.append(position(512000001, T0 + 3300 + 3 * 3600, -20.0, -173.0))
    feed.append(b"!AIVDM,1,1,,B,,0*25\n")  # an empty payload
    result = run("ingest", "ais", node_dir, "-", "--as", "sione", "--classification",
                 "RESTRICTED", "--rel", "TON,NZL", input=b"".join(feed))
    assert "2 alerts (ais-gap 1, eez-unlicensed 1)" in result.output
    assert "refused    1 sentences: empty payload 1" in result.output
    objects = {o["id"]: o for o in stored(node_dir, "sione")}
    notes = [o for o in objects.values() if o["type"] == "note"]
    assert sorted(n["extensions"][AIS_EXTENSION_ID]["rule"] for n in notes) == [
        "ais-gap", "eez-unlicensed"]
    for note in notes:
        kinds = {objects[r]["type"] for r in note["object_refs"]}
        assert kinds == {"sighting", "identity", "location"}  # evidence, all stored here
    vessel = objects[vessel_id(512000001)]
    assert vessel["name"] == "KALIA (MMSI 512000001)"
    node = Node.open(node_dir)
    try:
        for obj in objects.values():
            assert node.markings.label(obj).banner.rel_to == frozenset({"TON", "NZL"})
    finally:
        node.close()
    # the same reports under another marking: the same (id, version), another body: refused
    again = run("ingest", "ais", node_dir, "-", "--as", "sione", "--no-alerts",
                input=b"".join(feed[:3]), code=1).output
    assert "0 objects accepted" in again and "objects are immutable per (id, modified)" in again


def test_ingest_refusals_are_one_line(node_dir: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[gap]\nmin_hours = 0\n")
    result = run("ingest", "ais", node_dir, SAMPLE, "--as", "sione", "--rules", rules, code=2)
    assert "gap.min_hours: 0 is not a positive number" in result.stderr
    result = run("ingest", "ais", node_dir, SAMPLE, "--as", "losa", code=1)
    assert "not in community MARITIME" in result.output
    empty = tmp_path / "empty.nmea"
    empty.write_bytes(b"# nothing\n")
    assert "0 AIS sentences" in run("ingest", "ais", node_dir, empty, "--as", "sione").output


def test_one_truncated_sentence_does_not_end_the_ingest(node_dir: Path) -> None:
    """A sentence whose payload is cut short (a position report of 90 bits, its checksum
    good) is refused and counted, and the ingest goes on: the vessel's positions before
    and after it are all published. Before the fix the command died with a TypeError
    traceback at that sentence, and nothing after it was read."""
    feed = [position(512000001, T0 + 60 * i, -20.0, -171.0 + 0.01 * i) for i in range(3)]
    feed.append(b"!AIVDM,1,1,,A,17>5HNeD>iEND=g,0*4E\n")
    feed += [position(512000001, T0 + 180 + 60 * i, -20.0, -170.9 + 0.01 * i)
             for i in range(3)]
    out = run("ingest", "ais", node_dir, "-", "--as", "sione", input=b"".join(feed)).output
    assert "6 positions" in out
    assert "refused    1 sentences: undecodable 1" in out
    tracks = [o for o in stored(node_dir, "sione") if o["type"] == "sighting"]
    assert sum(t["count"] for t in tracks) == 6


def test_a_far_future_tag_block_does_not_abort_the_ingest(node_dir: Path) -> None:
    """A report stamped with a tag block `c` of 10^20 (ms: 10^17 s, far past year 9999)
    is refused as a bad tag block and the ingest goes on. Before the fix it was taken as
    a time: vessels.timestamp raised OSError (time.gmtime) while the run flushed its
    tracks, and the ingest stopped with what was already published stored and the rest
    lost."""
    feed = [position(512000001, T0 + 60 * i, -20.0, -171.0 + 0.01 * i) for i in range(5)]
    feed.append(position(512000002, 10 ** 20, -19.0, -172.0))
    out = run("ingest", "ais", node_dir, "-", "--as", "sione", input=b"".join(feed)).output
    assert "refused    1 sentences: bad tag block 1" in out
    assert "1 vessels, 1 tracks" in out


def test_ingest_ais_needs_the_publisher_role(node_dir: Path) -> None:
    """`intelpact publish --as` refuses a person without the publisher role ("as over TAXII
    and on the console"); `intelpact ingest ais --as` publishes the same kind of signed,
    federated objects and must refuse them too. Before, an analyst-only person (and an
    operator, who may not even read) published vessels and tracks."""
    feed = b"".join(position(512000001, T0 + 60 * i, -20.0, -171.0 + 0.01 * i)
                    for i in range(5))
    for who in ("mele", "ops"):
        result = run("ingest", "ais", node_dir, "-", "--as", who, input=feed, code=2)
        assert f"error: {who} may not publish: publishing needs the publisher role" \
            in result.stderr, result.stderr
    assert stored(node_dir, "sione") == [], "objects were published by people without the role"


def _notes(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["type"] == "note"]


def test_a_vessel_silent_at_the_end_of_the_input_is_reported_dark(node_dir: Path) -> None:
    # KALIA is heard for 20 minutes; TAVAKE goes on for 3 h, to the end of the input
    feed = [position(512000001, T0 + 300 * i, -20.0, -171.0 + 0.01 * i) for i in range(5)]
    feed += [position(512000002, T0 + 600 * i, -19.0, -171.0) for i in range(19)]
    result = run("ingest", "ais", node_dir, "-", "--as", "sione", input=b"".join(feed))
    assert "1 alerts (ais-gap 1)" in result.output and "updated" not in result.output
    objects = {o["id"]: o for o in stored(node_dir, "sione")}
    (note,) = _notes(list(objects.values()))
    ext = note["extensions"][AIS_EXTENSION_ID]
    last = "2026-09-21T14:33:20.000Z"  # KALIA's last position, T0 + 1200 s
    assert note["abstract"] == "AIS dark since 2026-09-21T14:33:20Z: MMSI 512000001"
    assert (ext["rule"], ext["mmsis"], ext["alert_time"]) == ("ais-gap", [512000001], last)
    assert note["created"] == note["modified"] == last and "reappeared" not in ext
    (sighting,) = [objects[r] for r in note["object_refs"] if r.startswith("sighting--")]
    assert sighting["sighting_of_ref"] == vessel_id(512000001)
    assert sighting["last_seen"] == last  # the evidence: its last track
    location = next(objects[r] for r in note["object_refs"] if r.startswith("location--"))
    assert (location["latitude"], location["longitude"]) == (-20, -170.96)
    # the same input again: the same objects, nothing new, nothing refused
    again = run("ingest", "ais", node_dir, "-", "--as", "sione", input=b"".join(feed)).output
    assert "0 rejected" in again and len(_notes(stored(node_dir, "sione"))) == 1


def test_a_gap_shorter_than_the_threshold_raises_nothing(node_dir: Path) -> None:
    feed = [position(512000001, T0 + 300 * i, -20.0, -171.0) for i in range(3)]
    feed += [position(512000002, T0 + 600 * i, -19.0, -171.0) for i in range(13)]  # to 2 h
    result = run("ingest", "ais", node_dir, "-", "--as", "sione", input=b"".join(feed))
    assert " 0 alerts" in result.output and _notes(stored(node_dir, "sione")) == []


def test_a_vessel_back_from_dark_gets_one_alert_for_its_gap(node_dir: Path) -> None:
    # KALIA is silent from T0 + 300 s; TAVAKE reports every 2 s, so the ingest's sweep
    # (every 5,000 positions) sees KALIA dark at about T0 + 10,000 s; it is back at 11,000
    feed = [position(512000001, T0 + t, -20.0, -171.0) for t in (0, 300)]
    feed += [position(512000002, T0 + 2 * i, -19.0, -171.0) for i in range(5200)]
    feed.insert(5020, position(512000001, T0 + 11_000, -20.5, -171.0))
    lines = b"".join(sorted(feed, key=lambda line: line.split(b",c:")[1]))
    result = run("ingest", "ais", node_dir, "-", "--as", "sione", input=lines)
    assert "1 alerts (ais-gap 1), 1 updated (dark vessels back)" in result.output
    assert "0 rejected" in result.output
    (note,) = _notes(stored(node_dir, "sione"))  # one alert for one gap: its latest version
    ext = note["extensions"][AIS_EXTENSION_ID]
    assert note["created"] == ext["alert_time"] == "2026-09-21T14:18:20.000Z"  # dark since
    assert note["modified"] == ext["reappeared"] == "2026-09-21T17:16:40.000Z"  # back
    assert ext["gap_seconds"] == 10_700 and ext["reappeared_lat"] == -20.5
    node = Node.open(node_dir)
    try:
        versions = sorted(json.loads(r.body)["abstract"] for r in node.store.held([note["id"]]))
        locations = [r for r in node.store.held(note["object_refs"])
                     if r.object_type == "location"]
    finally:
        node.close()
    assert versions == ["AIS dark since 2026-09-21T14:18:20Z: MMSI 512000001",
                        "AIS gap of 3.0 h: MMSI 512000001"]  # dark, then back
    assert len(locations) == 1  # where it went dark, once


def test_a_track_of_a_vessel_a_partner_named_first_is_refused_unmarked(tmp_path: Path) -> None:
    """Under an agreement that releases a party's information to a third party only with
    its consent, a track or alert refers to the vessel's identity, which is TON's where
    TON named it first: it would carry TON's information to a third party without that
    consent. The ingest marks nothing as TON's, so the track is refused, saying how to
    mark it (docs/maritime.md, docs/controls.md "Derived information")."""
    ton = make_node(tmp_path / "ton", party="TON", agreement="pacific-maritime.toml")
    nzl = make_node(tmp_path / "nzl", party="NZL", agreement="pacific-maritime.toml")
    try:
        for node in (ton, nzl):
            node.people.add("watch", party=node.party, clearance="RESTRICTED",
                            communities=["MARITIME"], roles=("analyst", "publisher"))
        pin_each_other(ton, nzl)

        def ingest(node: Node, lines: list[bytes]) -> Any:
            return AisIngest(node.publisher, node.people.as_person("watch").person,
                             node.default_collection().collection_id,
                             marking=default_marking(node.agreement), rules=None).run(lines)

        done = ingest(ton, [static(512000001, T0, "KALIA"),
                            position(512000001, T0 + 5, -21.1, -175.2)])
        assert (done.accepted, done.rejected) == (2, 0)
        with serving_federation(nzl), Courier(ton) as courier:
            assert courier.push_all("NZL") >= 2
        done = ingest(nzl, [position(512000001, T0 + 5000, -21.1, -175.2)])
        failures = dict(done.failures)
        assert (done.accepted, done.rejected) == (0, 2), failures
        assert "is TON's object" in failures[vessel_id(512000001)]
        (track,) = [why for oid, why in failures.items() if oid.startswith("sighting--")]
        assert "TON's information" in track and "[sighting_of_ref]" in track
    finally:
        ton.close()
        nzl.close()
