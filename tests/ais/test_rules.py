"""Alert rules on constructed tracks: EEZ and licences, gaps, loitering, encounters."""

from __future__ import annotations

from pathlib import Path

import pytest

from intelpact.maritime.nmea import Position
from intelpact.maritime.rules import (
    Alert,
    RuleEngine,
    RulesError,
    RuleSet,
    Zone,
    distance_m,
    load_rules,
)

T0 = 1_790_000_000.0
HOUR = 3600.0
# Tonga EEZ of the shipped rules (illustrative): lon -177.5..-172, lat -25..-15
INSIDE, OUTSIDE = (-20.0, -175.0), (-20.0, -170.0)


def pos(mmsi: int, t: float, lat: float, lon: float, speed: float | None = 10.0) -> Position:
    return Position(mmsi, T0 + t, lat, lon, speed, 90.0, 90, 1)


def run(engine: RuleEngine, positions: list[Position]) -> list[Alert]:
    return [a for p in sorted(positions, key=lambda p: p.time) for a in engine.observe(p)]


def only(rules: RuleSet, **keep: bool) -> RuleSet:
    import dataclasses

    off = {"gap_seconds": None, "loiter_seconds": None, "encounter_seconds": None, "zones": ()}
    return dataclasses.replace(rules, **{k: v for k, v in off.items() if not keep.get(k)})


def test_the_shipped_rules_load_with_a_sample_zone() -> None:
    rules = load_rules()
    assert rules.gap_seconds == 2 * HOUR and rules.encounter_distance_m == 500
    assert rules.gap_while_dark
    (zone,) = rules.zones
    assert zone.contains(*INSIDE) and not zone.contains(*OUTSIDE)
    assert 529000001 in zone.licensed


@pytest.mark.parametrize(("mmsi", "where", "alerts"), [
    (512000001, INSIDE, 1),     # unlicensed, inside
    (529000001, INSIDE, 0),     # licensed, inside
    (512000001, OUTSIDE, 0),    # unlicensed, outside
])
def test_eez_unlicensed(mmsi: int, where: tuple[float, float], alerts: int) -> None:
    engine = RuleEngine(only(load_rules(), zones=True), 600)
    found = run(engine, [pos(mmsi, 60 * i, where[0], where[1] + 0.01 * i) for i in range(10)])
    assert len(found) == alerts  # once on entering, not for every position inside
    if alerts:
        assert found[0].rule == "eez-unlicensed" and found[0].mmsis == (mmsi,)
        assert found[0].evidence == ((mmsi, T0 - T0 % 600),)


def test_eez_entering_from_outside_raises_at_the_crossing() -> None:
    engine = RuleEngine(only(load_rules(), zones=True), 600)
    track = [pos(512000001, 600 * i, -20.0, -171.0 - 0.5 * i) for i in range(6)]
    (alert,) = run(engine, track)
    assert alert.lon < -172.0 and alert.details["zone"].startswith("Tonga")


@pytest.mark.parametrize(("gap", "alerts"), [(2 * HOUR - 1, 0), (2 * HOUR + 1, 1)])
def test_gap_just_under_and_over_the_threshold(gap: float, alerts: int) -> None:
    engine = RuleEngine(only(load_rules(), gap_seconds=True), 600)
    found = run(engine, [pos(512000002, 0, -20, -175), pos(512000002, 10, -20, -175),
                         pos(512000002, 10 + gap, -20.1, -175)])
    assert len(found) == alerts
    if alerts:
        (alert,) = found
        assert alert.rule == "ais-gap" and alert.details["gap_seconds"] == round(gap)
        assert alert.time == T0 + 10  # where and when it went dark
        assert [w for _, w in alert.evidence] == [T0 - T0 % 600, (T0 + 10 + gap) -
                                                  (T0 + 10 + gap) % 600]


def dark_run(engine: RuleEngine, positions: list[Position], sweep_at: tuple[float, ...] = ()
             ) -> list[Alert]:
    """As the ingest runs the engine: positions in time order, a sweep when the feed's
    time passes each of ``sweep_at`` (seconds after T0), and a final sweep at the end."""
    alerts: list[Alert] = []
    clock = float("-inf")
    pending = sorted(T0 + s for s in sweep_at)
    for p in sorted(positions, key=lambda p: p.time):
        clock = max(clock, p.time)
        while pending and clock >= pending[0]:
            pending.pop(0)
            alerts += engine.sweep(clock)
        alerts += engine.observe(p)
    return alerts + engine.sweep(clock, final=True)


def test_a_vessel_dark_at_the_end_raises_one_alert_naming_its_last_time() -> None:
    engine = RuleEngine(only(load_rules(), gap_seconds=True), 600)
    dark = [pos(512000011, 300 * i, -20.0, -175.0 + 0.01 * i) for i in range(4)]  # to 900 s
    busy = [pos(512000012, 300 * i, -19.0, -175.0) for i in range(40)]  # to 11,700 s
    found = dark_run(engine, dark + busy, sweep_at=(5000, 9000, 10000, 11000))
    (alert,) = found  # once, though three sweeps and the end saw it silent
    assert (alert.rule, alert.mmsis, alert.time) == ("ais-gap", (512000011,), T0 + 900)
    assert alert.title == "AIS dark since 2026-09-21T14:28:20Z"  # its last position
    assert (alert.lat, alert.lon) == (-20.0, -175.0 + 0.03)
    assert alert.evidence == ((512000011, (T0 + 900) - (T0 + 900) % 600),)  # its last track
    assert "reappeared" not in alert.details and not alert.revises
    assert alert.modified is None  # the same alert whenever the sweep ran
    later = engine.sweep(T0 + 50 * HOUR, final=True)  # the busy vessel is dark by now
    assert [a.mmsis for a in later] == [(512000012,)]  # the first: never again while dark


@pytest.mark.parametrize(("silent", "alerts"), [(2 * HOUR - 1, 0), (2 * HOUR + 1, 1)])
def test_dark_just_under_and_over_the_threshold(silent: float, alerts: int) -> None:
    engine = RuleEngine(only(load_rules(), gap_seconds=True), 600)
    track = [pos(512000013, 0, -20, -175), pos(512000014, silent, -19, -175)]
    assert len(dark_run(engine, track)) == alerts


def test_the_sweep_goes_by_the_feeds_clock_not_the_wall_clock() -> None:
    engine = RuleEngine(only(load_rules(), gap_seconds=True), 600)
    old = [pos(512000015, 0, -20, -175), pos(512000016, 60, -19, -175)]  # T0 is in 2026
    assert dark_run(engine, old) == []


def test_a_vessel_back_from_dark_gets_one_alert_for_its_gap() -> None:
    engine = RuleEngine(only(load_rules(), gap_seconds=True), 600)
    vessel = [pos(512000017, 0, -20.0, -175.0), pos(512000017, 4 * HOUR, -20.1, -175.0)]
    other = [pos(512000018, 300 * i, -19.0, -175.0) for i in range(60)]  # the clock moves
    dark, back = dark_run(engine, vessel + other, sweep_at=(3 * HOUR,))
    assert dark.rule == back.rule == "ais-gap" and dark.mmsis == back.mmsis == (512000017,)
    assert dark.time == back.time == T0  # the same alert (rule, vessel, time): one gap
    assert "reappeared" not in dark.details and not dark.revises
    assert back.revises and back.modified == T0 + 4 * HOUR  # its next version: where back
    assert back.details["gap_seconds"] == 4 * HOUR and back.details["reappeared_lat"] == -20.1
    assert back.place == dark.place  # one location, in both versions
    # unswept, the gap is found when the vessel is back: one alert, that same version
    engine = RuleEngine(only(load_rules(), gap_seconds=True), 600)
    (whole,) = dark_run(engine, vessel + other)
    assert (whole.time, whole.modified, whole.details) == (back.time, back.modified,
                                                          back.details)
    assert not whole.revises


def test_a_vessel_dark_twice_raises_one_alert_per_gap() -> None:
    engine = RuleEngine(only(load_rules(), gap_seconds=True), 600)
    vessel = [pos(512000019, t * HOUR, -20.0, -175.0) for t in (0, 3, 6.5)]
    other = [pos(512000020, 300 * i, -19.0, -175.0) for i in range(110)]  # to 9.08 h
    found = dark_run(engine, vessel + other, sweep_at=(2.5 * HOUR, 4.5 * HOUR, 8 * HOUR))
    first = [a for a in found if a.time == T0]
    second = [a for a in found if a.time == T0 + 3 * HOUR]
    third = [a for a in found if a.time == T0 + 6.5 * HOUR]
    assert [a.revises for a in first] == [False, True]  # dark, then back
    assert [a.revises for a in second] == [False]  # back before a sweep saw it dark
    assert [a.revises for a in third] == [False]  # dark at the end
    assert len(found) == 4


def test_dark_reports_can_be_turned_off(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[gap]\nwhile_dark = false\n")
    rules = load_rules(path)
    assert rules.gap_seconds == 2 * HOUR and not rules.gap_while_dark
    engine = RuleEngine(only(rules, gap_seconds=True), 600)
    assert dark_run(engine, [pos(1, 0, 0, 0), pos(2, 3 * HOUR, 0, 0)]) == []


def test_loitering_needs_slow_and_close_for_long_enough() -> None:
    rules = only(load_rules(), loiter_seconds=True)
    drift = [pos(512000003, 300 * i, -20 + 0.0002 * i, -175, speed=0.5) for i in range(40)]
    found = run(RuleEngine(rules, 600), drift)  # 3.25 h within ~1 nm
    assert [a.rule for a in found] == ["loitering"]
    moving = [pos(512000004, 300 * i, -20 + 0.01 * i, -175, speed=0.5) for i in range(40)]
    assert run(RuleEngine(rules, 600), moving) == []  # slow but leaves the radius
    short = [pos(512000005, 300 * i, -20, -175, speed=0.5) for i in range(30)]
    assert run(RuleEngine(rules, 600), short) == []  # 2.4 h < 3 h


def test_encounter_versus_passing() -> None:
    rules = only(load_rules(), encounter_seconds=True)
    a = [pos(512000006, 300 * i, -20.0, -175.0, speed=1.0) for i in range(30)]
    b = [pos(512000007, 300 * i + 30, -20.002, -175.0, speed=1.5) for i in range(30)]
    found = run(RuleEngine(rules, 600), a + b)  # ~220 m apart, slow, 2.5 h
    assert [x.rule for x in found] == ["encounter"]
    assert found[0].mmsis == (512000006, 512000007)
    assert {m for m, _ in found[0].evidence} == {512000006, 512000007}
    passing = [pos(512000008, 60 * i, -20.0, -175.05 + 0.001 * i, speed=12.0)
               for i in range(100)]
    other = [pos(512000009, 60 * i + 5, -20.0, -174.95 - 0.001 * i, speed=12.0)
             for i in range(100)]
    assert run(RuleEngine(rules, 600), passing + other) == []
    apart = [pos(512000010, 300 * i + 30, -20.02, -175.0, speed=1.0) for i in range(30)]
    assert run(RuleEngine(rules, 600), a + apart) == []  # slow, but 2.2 km apart


def test_an_encounter_across_the_antimeridian_is_raised() -> None:
    """Two vessels drifting 200 m apart for over three hours, one at 179.999 E and one at
    179.999 W (Fiji's waters straddle the antimeridian: the Pacific arrangement's own sea)
    raise one encounter, placed between them at 180, as the same pair east of it does.
    Before the fix the grid's columns did not wrap at +/-180: the pair was never compared
    and the possible transshipment never reported (and its midpoint would have been 0)."""
    rules = only(load_rules(), encounter_seconds=True)

    def encounters(lon_a: float, lon_b: float) -> list[Alert]:
        a = [pos(512000001, 300 * i, -17.0, lon_a, speed=0.5) for i in range(40)]
        b = [pos(512000002, 300 * i + 1, -17.0, lon_b, speed=0.5) for i in range(40)]
        return run(RuleEngine(rules, 600), a + b)

    (east,) = encounters(179.998, 179.9995)
    assert east.rule == "encounter" and east.lon == pytest.approx(179.99875)
    for lon_a, lon_b in ((179.999, -179.999), (-179.999, 179.999), (180.0, -179.998)):
        (across,) = encounters(lon_a, lon_b)
        assert across.rule == "encounter" and across.mmsis == (512000001, 512000002)
        assert abs(across.lon) == pytest.approx(180.0, abs=0.002)  # there, not at 0
        assert across.details["distance_m"] < 250


def test_out_of_order_positions_are_ignored_by_the_rules() -> None:
    engine = RuleEngine(only(load_rules(), gap_seconds=True), 600)
    assert run(engine, [pos(1, 10 * HOUR, 0, 0)]) == []
    assert engine.observe(pos(1, 0, 0, 0)) == []


def test_zones_split_at_the_antimeridian() -> None:
    zone = Zone("Fiji (sample)", "FJI", (((177.0, -20.0), (180.0, -20.0), (180.0, -15.0),
                                          (177.0, -15.0)),
                                         ((-180.0, -20.0), (-178.0, -20.0), (-178.0, -15.0),
                                          (-180.0, -15.0))), frozenset(),
                (-180.0, -20.0, 180.0, -15.0))
    assert zone.contains(-17.0, 179.0) and zone.contains(-17.0, -179.0)
    assert not zone.contains(-17.0, 0.0)


def test_distance() -> None:
    assert distance_m(0, 0, 0, 1) == pytest.approx(111_195, rel=1e-3)


@pytest.mark.parametrize(("text", "fragment"), [
    ("[gap]\nmin_hours = -1\n", "gap.min_hours: -1 is not a positive number"),
    ("[gap]\nmin_hour = 1\n", "gap.min_hour: unknown field"),
    ("[gap]\nwhile_dark = 1\n", "gap.while_dark: 1 is not true or false"),
    ("[radar]\n", "radar: unknown section"),
    ('[[zones]]\nname = "x"\nrings = [[[0, 0], [1, 0]]]\n', "a ring needs at least 3"),
    ('[[zones]]\nname = "x"\nrings = [[[0, 0], [1, 0], [1, 95]]]\n',
     "is not [longitude, latitude]"),
    ('[[zones]]\nname = "x"\nrings = [[[0, 0], [1, 0], [1, 1]]]\nlicensed = ["a"]\n',
     "licensed: must be a list of MMSIs"),
    ("gap = [", "not TOML"),
])
def test_rules_file_errors_name_the_field_and_the_fix(tmp_path: Path, text: str,
                                                      fragment: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert fragment in caught.value.message and str(path) in caught.value.message
    assert caught.value.hint


def test_a_rules_file_turns_rules_off(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[gap]\nenabled = false\n[encounter]\nmin_hours = 0.5\n")
    rules = load_rules(path)
    assert rules.gap_seconds is None and rules.encounter_seconds == 1800 and not rules.zones
