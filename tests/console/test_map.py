"""The maritime picture (/map): an NZL node under the Pacific arrangement with AIS
ingested at two markings, its console served on 127.0.0.1; over HTTP (what each person
may see, escaping, filters) and in headless Chromium (the track and the banner)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from functools import reduce
from operator import xor
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyais import encode_dict

from conftest import login, password, serve_console
from intelpact.maritime.rules import load_rules
from intelpact.maritime.vessels import AIS_EXTENSION_ID
from intelpact.services.ais import AisIngest
from intelpact.services.node import Node
from intelpact.services.prepare import canonical_body
from intelpact.services.publish import MarkingRequest
from intelpact.store.base import AuditFilter, NewObject, Query

from helpers import _in_thread, make_node

PEOPLE = {  # name: clearance, communities
    "aroha": ("CONFIDENTIAL", ["MARITIME"]),
    "kiri": ("UNCLASSIFIED", ["MARITIME"]),  # below RESTRICTED
    "hemi": ("CONFIDENTIAL", ["CLIMATE"]),  # not in MARITIME
}
NAUGHTY = "<SCRIPT>&\"X'"  # AIS's six-bit characters include < > & " '
OPEN_MMSI, RESTRICTED_MMSI = 512000001, 512000002
T0 = 1_790_000_000  # 2026-09-21T14:13:20Z


def _tag(sentence: str, when: float) -> bytes:  # an NMEA 4.0 tag block: source, time
    body = f"s:test,c:{int(when)}".encode()
    return b"\\" + body + b"*%02X\\" % reduce(xor, body, 0) + sentence.encode() + b"\n"


def position(mmsi: int, when: float, lat: float, lon: float) -> bytes:
    msg = {"type": 1, "mmsi": mmsi, "lat": lat, "lon": lon, "speed": 10.0, "course": 90.0,
           "heading": 90}
    return _tag(encode_dict(msg, talker_id="AI", sentence_type="VDM")[0], when)


def static(mmsi: int, when: float, name: str) -> bytes:
    msg = {"type": 5, "mmsi": mmsi, "shipname": name, "callsign": "ZM123", "ship_type": 30}
    return b"".join(_tag(s, when) for s in encode_dict(msg, talker_id="AI",
                                                        sentence_type="VDM", seq_id=3))


def _feed(mmsi: int, name: str, lons: list[float], lat: float) -> list[bytes]:
    lines = [static(mmsi, T0, name)]
    lines += [position(mmsi, T0 + 300 * i, lat, lon) for i, lon in enumerate(lons)]
    return lines


@pytest.fixture(scope="module")
def sea(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, str]]:
    node = make_node(tmp_path_factory.mktemp("map") / "nzl", "NZL",
                     agreement="pacific-maritime.toml")
    for name, (clearance, communities) in PEOPLE.items():
        node.people.add(name, party="NZL", clearance=clearance, communities=communities,
                        roles=["analyst", "publisher"], password=password(name))
    person = node.people.as_person("aroha").person
    cid = node.default_collection().collection_id
    # an unlicensed vessel crossing into the sample Tonga zone: a track and an alert
    for lines, marking in (
            (_feed(OPEN_MMSI, NAUGHTY, [-178.0 + 0.2 * i for i in range(8)], -20.0),
             MarkingRequest("UNCLASSIFIED", ("NZL", "JPN", "FJI", "TON", "WSM"), (),
                            ("MARITIME",))),
            (_feed(RESTRICTED_MMSI, "TAUTAHI", [-174.0 + 0.1 * i for i in range(6)], -18.5),
             MarkingRequest("RESTRICTED", ("NZL",), (), ("MARITIME",)))):
        run = AisIngest(node.publisher, person, cid, marking=marking, rules=load_rules(None))
        summary = run.run(iter(b"".join(lines).splitlines(keepends=True)))
        assert summary.rejected == 0 and summary.accepted > 0, summary.failures
    app, _, options = serve_console(node)
    with _in_thread(app, options):
        yield node, f"http://127.0.0.1:{options['port']}"
    node.close()


def _map(url: str, who: str, **params: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=20) as client:
        login(client, who)
        return client.get("/map", params=params)


def _banner(html: str) -> str:
    found = re.search(r'id="banner-top">([^<]*)<', html)
    assert found
    return found.group(1)


def test_the_map_shows_what_each_viewer_may_see(sea: tuple[Node, str]) -> None:
    node, url = sea
    full = _map(url, "aroha")
    assert full.status_code == 200
    html = full.text
    assert html.count('<polyline class="track"') == 2 and "TAUTAHI (MMSI 512000002)" in html
    assert _banner(html) == "RESTRICTED // MARITIME // REL TO NZL"  # the highest shown
    alert = re.search(r'<a href="/objects/(note--[0-9a-f-]+)" class="alert">', html)
    assert alert and "unlicensed vessel in Tonga EEZ" in html
    assert 'class="land" d="M' in html  # coastlines (Fiji) in the box
    # below the level: only the UNCLASSIFIED vessel and its alert
    low = _map(url, "kiri").text
    assert low.count('<polyline class="track"') == 1 and "TAUTAHI" not in low
    assert "512000001" in low and alert.group(1) in low
    assert _banner(low).startswith("UNCLASSIFIED // MARITIME")
    # not in MARITIME: no track, no vessel, no alert
    none = _map(url, "hemi").text
    assert "<polyline" not in none and "MMSI" not in none and "note--" not in none
    assert "No vessel track in view" in none
    # every object drawn was read through Node.find: audited as console-map reads
    reads = node.audit.find(AuditFilter(kinds=("read",), object_id=alert.group(1)))
    assert any(json.loads(e.body).get("via") == "console-map" for e in reads)


def test_vessel_names_are_escaped(sea: tuple[Node, str]) -> None:
    _, url = sea
    html = _map(url, "aroha").text
    assert NAUGHTY not in html and "<SCRIPT>" not in html
    assert "&lt;SCRIPT&gt;&amp;&#34;X&#39;" in html


def test_time_window_and_community_filters(sea: tuple[Node, str]) -> None:
    _, url = sea
    later = _map(url, "aroha", since="2030-01-01T00:00").text
    assert "<polyline" not in later and "note--" not in later
    # a window holding the first three reports only: the track is cut to them
    start = "2026-09-21T14:10"
    early = _map(url, "aroha", since=start, until="2026-09-21T14:24").text
    assert early.count('<polyline class="track"') == 2
    assert "3 positions" in early
    assert "<polyline" not in _map(url, "aroha", community="CLIMATE").text
    assert _map(url, "aroha", community="MARITIME").text.count('<polyline class="track"') == 2
    assert _map(url, "aroha", since="yesterday").status_code == 400
    assert _map(url, "aroha", community="FISHERIES").status_code == 400


def test_a_malformed_stored_track_is_counted_not_drawn(sea: tuple[Node, str]) -> None:
    """A track stored before publish checked the AIS extension (or by another tool on
    the database): positions that are not numbers in range, or whose time is not a
    time, are left out and counted on the page; the map still answers, for everyone.
    Its positions are all malformed, so the other tests' counts hold whatever the order."""
    node, url = sea
    viewer = node.people.as_person("kiri")
    cid = node.default_collection().collection_id
    _, rows = node.find(viewer, cid, Query(types=("sighting",), limit=1))
    row, body = rows[0]
    obj = json.loads(body)
    obj["id"] = "sighting--6d1c6a9e-1f57-4c38-9a55-4f4d1f0d2b7e"
    good = obj["extensions"][AIS_EXTENSION_ID]["track"][0]
    obj["extensions"][AIS_EXTENSION_ID]["track"] = [
        {**good, "lat": "north"}, {**good, "lat": [35]}, {**good, "lon": 181},
        {**good, "lat": float("nan")}, {**good, "time": "yesterday"}, "here"]
    text, digest = canonical_body(obj)
    labels = node.store.labels()
    node.store.add_objects(cid, [NewObject(
        obj["id"], "sighting", "2.1", row.version, text, digest, labels[row.label_id],
        labels[row.banner_id], row.originator, False)])
    for who in PEOPLE:
        page = _map(url, who)
        assert page.status_code == 200, (who, page.text[:500])
        if who == "hemi":  # not in MARITIME: the sighting is not theirs to see
            assert 'id="map-skipped"' not in page.text
        else:
            assert re.search(r'id="map-skipped">6 stored positions not drawn', page.text)
    html = _map(url, "aroha").text
    assert html.count('<polyline class="track"') == 2  # the good tracks, as before


@pytest.mark.parametrize("lat", [89.8, 90.0, -90.0])
def test_a_track_near_the_pole_is_drawn_on_the_map(tmp_path: Path, lat: float) -> None:
    """A track at latitude 89.8 (or at a pole: valid positions, which ingest or a
    partner's push may store) is drawn, inside the map. Before the fix the map's box was
    cut at 85 degrees to no height at all, Projection divided by zero, and /map answered
    500 to everyone who may see that track, for as long as it was stored."""
    node = make_node(tmp_path / "nzl", "NZL", agreement="pacific-maritime.toml")
    node.people.add("aroha", party="NZL", clearance="RESTRICTED", communities=["MARITIME"],
                    roles=["analyst", "publisher"], password=password("aroha"))
    run = AisIngest(node.publisher, node.people.as_person("aroha").person,
                    node.default_collection().collection_id, rules=None,
                    marking=MarkingRequest("UNCLASSIFIED", ("NZL",), (), ("MARITIME",)))
    summary = run.run(iter([position(OPEN_MMSI, T0 + 60 * i, lat, 10.0 + 0.01 * i)
                            for i in range(3)]))
    assert summary.accepted == 2 and summary.rejected == 0, summary.failures
    app, _, options = serve_console(node)
    try:
        with _in_thread(app, options):
            page = _map(f"http://127.0.0.1:{options['port']}", "aroha")
    finally:
        node.close()
    assert page.status_code == 200, page.text[:300]
    track = re.search(r'<polyline class="track" points="([^"]+)"', page.text)
    assert track, page.text[:300]
    for point in track.group(1).split():
        x, y = map(float, point.split(","))
        assert 0 <= x <= 960 and 0 <= y <= 600, point  # on the map


def _crowd(n: int, spread: float = 0.0) -> dict[str, Any]:
    """``n`` vessels at one point (a port; a feed naming thousands of MMSIs there), or
    ``spread`` degrees of latitude apart, as the map's drawing gets them."""
    from intelpact.interfaces.console.maritime import _Vessel

    return {f"identity--{i}": _Vessel(f"identity--{i}", f"MMSI {512000000 + i}", "TON",
                                      [("2026-09-21T14:13:20.000000Z",
                                        -20.0 + spread * i, -175.0)])
            for i in range(n)}


def _drawn(n: int, spread: float = 0.0) -> dict[str, Any]:
    from intelpact.interfaces.console.maritime import _drawing
    from intelpact.model import load_agreement

    from helpers import AGREEMENTS

    agreement = load_agreement(AGREEMENTS / "pacific-maritime.toml")
    return _drawing(_crowd(n, spread), [], {}, agreement, {}, "", False, 0)


def test_vessel_labels_never_overlap_and_stay_on_the_map() -> None:
    """Every vessel has its marker; a name goes just below it, moved down past the names
    it would overlap, and is left off once its baseline would be below the map (the list
    under the map names every vessel). Names never overlap; vessels apart keep theirs."""
    from intelpact.interfaces.console.maritime import HEIGHT, LABEL_HEIGHT, LABEL_WIDTH

    crowd = _drawn(1200)["markers"]
    assert len(crowd) == 1200
    placed = [m for m in crowd if m["label_y"] is not None]
    y = crowd[0]["y"]
    assert [m["label_y"] for m in placed] == [  # every row from the marker down, once
        y + 4 + LABEL_HEIGHT * k for k in range(len(placed))]
    assert placed[-1]["label_y"] <= HEIGHT < placed[-1]["label_y"] + LABEL_HEIGHT
    apart = _drawn(20, spread=1.0)["markers"]
    assert all(m["label_y"] == m["y"] + 4 for m in apart)
    for drawn in (placed, apart):
        for a in drawn:
            for b in drawn:
                assert a is b or abs(a["x"] - b["x"]) >= LABEL_WIDTH or \
                    abs(a["label_y"] - b["label_y"]) >= LABEL_HEIGHT


def _lines_run(n: int) -> int:
    """How many lines of console/maritime.py drawing ``n`` vessels at one point runs:
    its work, counted the same on any machine."""
    import sys

    from intelpact.interfaces.console import maritime

    lines = 0

    def count(frame: Any, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return count

    def calls(frame: Any, event: str, arg: Any) -> Any:
        return count if frame.f_code.co_filename == maritime.__file__ else None

    before = sys.gettrace()
    sys.settrace(calls)
    try:
        _drawn(n)
    finally:
        sys.settrace(before)
    return lines


def test_placing_vessel_labels_costs_linear_work() -> None:
    """Drawing twice the vessels at one point costs twice the work, not four (quadratic)
    or eight times (cubic) as much. Before the fix each name was checked against every
    name placed before it at each step down: 1,000 vessels close together cost ~9 s of
    CPU per page load, 5,000 (/map draws up to MAX_TRACKS) about twenty minutes, holding
    the GIL for the whole node."""
    _drawn(1)  # the coastlines, decoded once
    small, middle, large = (_lines_run(n) for n in (50, 100, 200))
    assert large - middle < 2.5 * (middle - small), (small, middle, large)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install "
                    "chromium): browser test skipped")
def test_the_map_in_chromium(sea: tuple[Node, str]) -> None:
    sync_api: Any = pytest.importorskip("playwright.sync_api", reason="playwright is not "
                                        "installed: pip install -e '.[dev]'")
    _, url = sea
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_context(base_url=url, java_script_enabled=False).new_page()
            page.set_default_timeout(10_000)
            page.goto("/map")
            page.fill("#name", "aroha")
            page.fill("#password", password("aroha"))
            page.click("button[type=submit]")
            page.wait_for_url("**/map")
            tracks = page.locator("polyline.track")
            assert tracks.count() == 2
            box = tracks.first.bounding_box()
            assert box is not None and box["width"] > 50  # drawn, across the map
            assert page.locator("svg#map text", has_text="TAUTAHI").is_visible()
            top = page.locator("#banner-top")
            assert top.inner_text() == "RESTRICTED // MARITIME // REL TO NZL"
            assert top.evaluate("e => getComputedStyle(e).backgroundColor") == \
                "rgb(80, 43, 133)"  # purple: a classified level below CONFIDENTIAL
            alert = page.locator("svg a.alert").first
            alert.focus()
            assert page.evaluate("document.activeElement.getAttribute('class')") == "alert"
            page.keyboard.press("Enter")
            page.wait_for_url("**/objects/note--*")
        finally:
            browser.close()
