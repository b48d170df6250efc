"""The demo's fictional AIS feeds (samples/pacific-ais-*.nmea): current with their
generator, and raising the alerts docs/maritime.md says they do."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from intelpact.maritime.nmea import NmeaReader, Position
from intelpact.maritime.rules import RuleEngine, load_rules

from helpers import ROOT


def test_the_samples_are_what_the_generator_writes() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_ais_samples.py"),
                             "--check"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# New Zealand's: the longliner's three-hour gap, and the patrol vessel, whose track ends
# 2.7 h before the feed does, dark at the end of it
@pytest.mark.parametrize(("feed", "vessels", "alerts"), [
    ("nzl", 2, {"eez-unlicensed": 2, "ais-gap": 2}),
    ("jpn", 3, {"eez-unlicensed": 3, "encounter": 1}),
])
def test_each_sample_raises_its_alerts(feed: str, vessels: int, alerts: dict[str, int]) -> None:
    reader = NmeaReader()
    engine = RuleEngine(load_rules(None), 3600.0)
    raised: Counter[str] = Counter()
    heard = set()
    clock = float("-inf")
    for line in (ROOT / "samples" / f"pacific-ais-{feed}.nmea").read_bytes().splitlines(True):
        for report in reader.feed(line):
            heard.add(report.mmsi)
            if type(report) is Position:
                clock = max(clock, report.time)
                raised.update(alert.rule for alert in engine.observe(report))
    reader.finish()
    raised.update(alert.rule for alert in engine.sweep(clock, final=True))  # as the ingest
    assert not reader.stats.bad and len(heard) == vessels
    assert raised == Counter(alerts)
