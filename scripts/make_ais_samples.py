"""Write the demo's fictional AIS feeds: samples/pacific-ais-nzl.nmea and -jpn.nmea.

Every vessel, name and MMSI is invented. The feeds are NMEA 0183 with NMEA 4.0 tag
blocks (source and Unix time), one position every five minutes, on 2026-11-20 around
the sample Tonga zone of src/intelpact/maritime/rules.toml, and raise the shipped
rules' alerts: an unlicensed longliner entering the zone and going dark for three
hours (New Zealand's receiver), and a reefer and a fishing vessel meeting at sea for
two and a half hours inside it (Japan's receiver). The two feeds hear different
vessels, so the two nodes never name the same vessel.

tests/ais/test_samples.py fails when the files differ from what this script writes.

Usage: python scripts/make_ais_samples.py [--check]
"""

from __future__ import annotations

import math
import sys
from functools import reduce
from operator import xor
from pathlib import Path

from pyais import encode_dict

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
START = 1_795_132_800  # 2026-11-20T00:00:00Z
STEP = 300  # seconds between positions
HEADER = ("# Fictional AIS feed for the intelpact demo (scripts/make_ais_samples.py).\n"
          "# Every vessel, name and MMSI is invented. Apache-2.0, as intelpact.\n")

Leg = tuple[float, float, float, float, int]  # lon, lat at start, lon, lat at end, steps


def _tag(sentence: str, when: int, source: str) -> str:
    body = f"s:{source},c:{when}"
    return f"\\{body}*{reduce(xor, body.encode(), 0):02X}\\{sentence}\n"


def _static(mmsi: int, name: str, ship_type: int, call_sign: str, when: int,
            source: str) -> list[str]:
    msg = {"type": 5, "mmsi": mmsi, "shipname": name, "callsign": call_sign,
           "ship_type": ship_type, "to_bow": 40, "to_stern": 12, "to_port": 6,
           "to_starboard": 6, "destination": "AT SEA"}
    return [_tag(s, when, source) for s in encode_dict(msg, talker_id="AI",
                                                        sentence_type="VDM", seq_id=1)]


def _track(mmsi: int, legs: list[Leg], start: int, source: str,
           silent: tuple[int, int] | None = None) -> list[tuple[int, str]]:
    """Positions along straight legs, one every STEP seconds; none while ``silent``."""
    out: list[tuple[int, str]] = []
    when = start
    for lon0, lat0, lon1, lat1, steps in legs:
        dist_nm = math.hypot((lon1 - lon0) * math.cos(math.radians(lat0)), lat1 - lat0) * 60
        speed = round(dist_nm / (steps * STEP / 3600), 1) if steps else 0.0
        course = round(math.degrees(math.atan2((lon1 - lon0) * math.cos(math.radians(lat0)),
                                               lat1 - lat0)) % 360, 1)
        for i in range(steps):
            f = i / steps
            lat = round(lat0 + (lat1 - lat0) * f, 5)
            lon = round(lon0 + (lon1 - lon0) * f, 5)
            if silent is None or not silent[0] <= when < silent[1]:
                msg = {"type": 1, "mmsi": mmsi, "lat": lat, "lon": lon, "speed": speed,
                       "course": course, "heading": int(course), "status": 0}
                sentence = encode_dict(msg, talker_id="AI", sentence_type="VDM")[0]
                out.append((when, _tag(sentence, when, source)))
            when += STEP
    return out


def nzl_feed() -> str:
    src = "nzl-pac-rx"
    lines = _static(512000101, "AOTEA PATROL", 35, "ZMAP1", START, src)
    lines += _static(577000301, "MOANA STAR", 30, "YJMS3", START, src)
    reports = _track(512000101, [(-175.6, -21.6, -174.6, -20.4, 60),
                                 (-174.6, -20.4, -175.0, -19.4, 36)], START, src)
    # the longliner comes in from the west across the zone's edge (-177.5), fishes
    # slowly, goes dark for three hours and reappears further north
    reports += _track(577000301, [(-178.0, -21.0, -176.9, -20.7, 60),
                                  (-176.9, -20.7, -176.6, -20.0, 66)], START + 600, src,
                      silent=(START + 600 + 70 * STEP, START + 600 + 106 * STEP))
    reports.sort(key=lambda r: r[0])
    return HEADER + "".join(lines) + "".join(r[1] for r in reports)


def jpn_feed() -> str:
    src = "jpn-pac-rx"
    lines = _static(431000401, "KAIYO KENKYU 12", 58, "JKK12", START, src)
    lines += _static(636000501, "SOUTHERN REEFER 2", 71, "A8SR2", START, src)
    lines += _static(416000601, "LUCKY WAVE 9", 30, "BLW09", START, src)
    reports = _track(431000401, [(-173.4, -17.0, -174.0, -19.0, 96)], START, src)
    # a reefer and a fishing vessel meet at (-174.2, -19.8) and lie together 2.5 h
    meet = (-174.2, -19.8)
    reports += _track(636000501, [(-173.6, -20.4, *meet, 48), (*meet, -174.2005, -19.8008, 30),
                                  (-174.2005, -19.8008, -173.6, -19.4, 30)], START + 1800, src)
    reports += _track(416000601, [(-174.9, -19.3, -174.201, -19.801, 48),
                                  (-174.201, -19.801, -174.2012, -19.8015, 30),
                                  (-174.2012, -19.8015, -174.9, -19.4, 30)], START + 1800, src)
    reports.sort(key=lambda r: r[0])
    return HEADER + "".join(lines) + "".join(r[1] for r in reports)


FEEDS = {"pacific-ais-nzl.nmea": nzl_feed, "pacific-ais-jpn.nmea": jpn_feed}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, make in FEEDS.items():
        path = SAMPLES / name
        text = make()
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    if stale:
        print(f"stale: {', '.join(stale)}; run python scripts/make_ais_samples.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
