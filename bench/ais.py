"""Benchmark: AIS ingest — NMEA sentences decoded, aggregated, alerted on and stored.

Run: .venv/bin/python bench/ais.py   (part of `make bench`)

A synthetic feed is made from the pyais corpus (tests/data/ais/pyais): each vessel of
nmea_data_sample.txt starts where the corpus saw it, and more vessels are added around
them (new MMSIs), each reporting every 10 s along its course at its speed, re-encoded
with pyais's encoder behind an NMEA 4.0 tag block (source, time); every vessel's type 5
static report (re-encoded, 2 sentences) comes once per hour; the corpus itself (with its
100 empty payloads and 20 lone first halves) is mixed in. The same sentences are then:

- decoded by pyais alone (NMEASentenceFactory + decode): the decoder's own ceiling;
- ingested by `AisIngest` into a fresh node (SQLite, durable commits): decoded,
  aggregated into one sighting per vessel per 10-minute window, run through the
  default alert rules, validated, labelled, signed, audited and stored;
- ingested the naive way, one sighting per position (on the first --naive sentences
  only: it is slow), through the same Publisher.

Target (issue 10): >= 20,000 sentences/s decoded and stored. The last line printed is one
JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from functools import reduce
from operator import xor
from pathlib import Path
from typing import Any

from pyais import encode_dict
from pyais.messages import NMEASentenceFactory

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from intelpact.maritime.nmea import NmeaReader, Position  # noqa: E402
from intelpact.maritime.rules import load_rules  # noqa: E402
from intelpact.maritime.vessels import Track, sighting_object  # noqa: E402
from intelpact.services.ais import AisIngest, default_marking  # noqa: E402

from helpers import make_node  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "ais" / "pyais" / "nmea_data_sample.txt"
T0 = 1_790_000_000.0  # 2026-09-21


def _tag(source: str, when: float) -> bytes:
    body = f"s:{source},c:{int(when)}".encode()
    return b"\\" + body + b"*%02X" % reduce(xor, body, 0) + b"\\"


def make_feed(sentences: int, seed: int = 10) -> list[bytes]:
    """About ``sentences`` lines of synthetic AIS, in time order."""
    rng = random.Random(seed)
    reader = NmeaReader(clock=lambda: 0.0)
    starts: dict[int, Position] = {}
    corpus = CORPUS.read_bytes().splitlines()
    for line in corpus:
        for report in reader.feed(line):
            if isinstance(report, Position) and report.mmsi not in starts:
                starts[report.mmsi] = report
    seeds = list(starts.values())
    vessels = max(len(seeds), sentences // 400)
    fleet = []
    for i in range(vessels):
        base = seeds[i % len(seeds)]
        mmsi = base.mmsi if i < len(seeds) else 700_000_000 + i
        fleet.append([mmsi, base.lat + rng.uniform(-0.5, 0.5) * (i >= len(seeds)),
                      base.lon + rng.uniform(-0.5, 0.5) * (i >= len(seeds)),
                      base.speed if base.speed is not None else rng.uniform(0, 15),
                      base.course if base.course is not None else rng.uniform(0, 359)])
    lines: list[bytes] = []
    step = 10.0
    t = T0
    while len(lines) < sentences:
        for k, (mmsi, lat, lon, speed, course) in enumerate(fleet):
            when = t + k * step / len(fleet)
            if int(t - T0) % 3600 == 0:
                static = {"type": 5, "mmsi": mmsi, "shipname": f"BENCH {k}",
                          "callsign": f"BX{k:04d}", "imo": 9_000_000 + k, "ship_type": 30,
                          "to_bow": 20, "to_stern": 10, "to_port": 4, "to_starboard": 4}
                for part in encode_dict(static, talker_id="AI", sentence_type="VDM", seq_id=k % 10):
                    lines.append(_tag("bench", when) + part.encode())
            msg = {"type": 1, "mmsi": mmsi, "lat": round(lat, 5), "lon": round(lon, 5),
                   "speed": round(speed, 1), "course": round(course, 1),
                   "heading": int(course) % 360}
            (sentence,) = encode_dict(msg, talker_id="AI", sentence_type="VDM")
            lines.append(_tag("bench", when) + sentence.encode())
            metres = speed * 1852 / 3600 * step
            fleet[k][1] = max(-89.0, min(89.0, lat + metres * math.cos(math.radians(course))
                                         / 111_320))
            fleet[k][2] = ((lon + metres * math.sin(math.radians(course))
                            / (111_320 * max(0.1, math.cos(math.radians(lat)))) + 180) % 360
                           - 180)
        t += step
    # the corpus (real traffic, 100 empty payloads, 20 lone first halves) mid-stream, replayed
    # at the feed's time behind tag blocks (it has no times of its own)
    middle = len(lines) // 2
    when = T0 + (middle // len(fleet)) * step
    lines[middle:middle] = [_tag("corpus", when) + line for line in corpus]
    return lines


def decode_only(lines: list[bytes]) -> float:
    started = time.perf_counter()
    for line in lines:
        try:
            raw = line[line.index(b"\\", 1) + 1:] if line[:1] == b"\\" else line
            sentence = NMEASentenceFactory.produce(raw)
            if sentence.frag_cnt == 1 and sentence.payload:  # type: ignore[attr-defined]
                sentence.decode()  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001, S112 - the peer skips what it cannot decode
            continue
    return time.perf_counter() - started


def ingest(lines: list[bytes], where: Path) -> tuple[float, dict[str, Any]]:
    node = make_node(where, party="NZL", agreement="pacific-maritime.toml", database=None)
    person = node.people.add("bench", party="NZL", clearance="RESTRICTED",
                             communities=["MARITIME"], roles=("publisher",)).name
    principal = node.people.as_person(person)
    run = AisIngest(node.publisher, principal.person, node.default_collection().collection_id,
                    marking=default_marking(node.agreement), rules=load_rules())
    started, cpu = time.perf_counter(), time.process_time()
    summary = run.run(lines)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    node.close()
    return seconds, {"cpu_seconds": cpu, "sentences": summary.stats.sentences,
                     "vessels": summary.vessels,
                     "tracks": summary.sightings, "alerts": dict(summary.alerts),
                     "accepted": summary.accepted, "rejected": summary.rejected,
                     "refused": dict(summary.stats.bad)}


def naive(lines: list[bytes], where: Path) -> tuple[float, int]:
    """One sighting per position, published in batches of 500 through the Publisher."""
    node = make_node(where, party="NZL", agreement="pacific-maritime.toml", database=None)
    node.people.add("naive", party="NZL", clearance="RESTRICTED", communities=["MARITIME"],
                    roles=("publisher",))
    principal = node.people.as_person("naive")
    cid = node.default_collection().collection_id
    marking = default_marking(node.agreement)
    reader = NmeaReader()
    from intelpact.maritime.vessels import vessel_object

    started = time.perf_counter()
    buffer: list[dict[str, Any]] = []
    seen: set[int] = set()
    for line in lines:
        for report in reader.feed(line):
            if isinstance(report, Position):
                if report.mmsi not in seen:
                    seen.add(report.mmsi)
                    buffer.append(vessel_object(report.mmsi))
                buffer.append(sighting_object("NZL", Track(report.mmsi, report.time,
                                                           [report]), 600))
        if len(buffer) >= 500:
            node.publisher.publish(principal.person, cid, buffer, marking=marking)
            buffer = []
    if buffer:
        node.publisher.publish(principal.person, cid, buffer, marking=marking)
    seconds = time.perf_counter() - started
    node.close()
    return seconds, reader.stats.sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=200_000,
                        help="synthetic sentences to make (default 200,000)")
    parser.add_argument("--naive", type=int, default=10_000,
                        help="sentences for the one-object-per-sentence peer")
    args = parser.parse_args()
    made = time.perf_counter()
    lines = make_feed(args.sentences)
    made = time.perf_counter() - made
    with tempfile.TemporaryDirectory(prefix="intelpact-bench-ais-") as tmp:
        decode_s = decode_only(lines)
        ingest_s, result = ingest(lines, Path(tmp) / "node")
        naive_s, naive_n = naive(lines[:args.naive], Path(tmp) / "naive")
    n = len(lines)
    rate = result["sentences"] / ingest_s
    decode_rate = n / decode_s
    naive_rate = naive_n / naive_s
    print(f"synthetic feed: {n:,} lines ({result['sentences']:,} AIS sentences), "
          f"made in {made:.1f} s")
    print(f"{'':40} {'sentences/s':>12}")
    print(f"{'pyais decoding alone':40} {decode_rate:12,.0f}")
    cpu_rate = result["sentences"] / result["cpu_seconds"]
    print(f"{'intelpact ingest (decode..store)':40} {rate:12,.0f}   "
          f"= {rate / decode_rate:.2f} of pyais alone")
    print(f"{'  the same, per CPU second':40} {cpu_rate:12,.0f}   (the machine is shared)")
    print(f"{'naive: one sighting per position':40} {naive_rate:12,.0f}   "
          f"intelpact is x{rate / naive_rate:.1f}")
    print(f"published {result['vessels']:,} vessels, {result['tracks']:,} tracks, "
          f"alerts {result['alerts']}; {result['accepted']:,} objects accepted, "
          f"{result['rejected']} rejected; refused sentences {result['refused']}")
    target = 20_000
    print(f"target >= {target:,} sentences/s: {'met' if rate >= target else 'NOT met'}")
    print(json.dumps({"bench": "ais", "lines": n, "sentences": result["sentences"],
                      "ingest_sentences_per_s": round(rate, 1),
                      "ingest_sentences_per_cpu_s": round(cpu_rate, 1),
                      "pyais_decode_sentences_per_s": round(decode_rate, 1),
                      "naive_sentences_per_s": round(naive_rate, 1),
                      "ratio_to_pyais": round(rate / decode_rate, 3),
                      "ratio_to_naive": round(rate / naive_rate, 1),
                      "objects": result["accepted"], "rejected": result["rejected"],
                      "alerts": result["alerts"], "target": target,
                      "met": rate >= target}))


if __name__ == "__main__":
    main()
