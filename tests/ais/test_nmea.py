"""Decoding against golden vectors: libais's typeexamples and tag blocks, pyais's samples
(with their 100 empty payloads and 20 lone first halves of 2-part messages)."""

from __future__ import annotations

import json
from functools import reduce
from operator import xor
from pathlib import Path

import pytest

from intelpact.maritime.nmea import NmeaReader, Position, Static

from helpers import DATA

AIS = DATA / "ais"


def read(path: Path) -> tuple[NmeaReader, list[Position | Static]]:
    reader = NmeaReader(clock=lambda: 0.0)
    reports = [r for line in path.read_bytes().splitlines(keepends=True)
               for r in reader.feed(line)]
    reader.finish()
    return reader, reports


def test_every_licence_travels_with_its_data() -> None:
    for folder in ("pyais", "libais"):
        assert (AIS / folder / "LICENSE.txt").is_file()


def test_typeexamples_decode_as_libais_expects() -> None:
    """Each sentence decodes to its type and MMSI; positions and static data agree with
    libais's decode; the two off-the-globe positions (type 2 at lat -101.5, type 27 at lon
    200.2) are refused, never stored."""
    lines = (AIS / "libais" / "typeexamples.nmea").read_bytes().splitlines()
    expected = [json.loads(x) for x in (AIS / "libais" / "typeexamples.json").read_text()
                .splitlines()]
    assert len(lines) == len(expected) == 26
    reader = NmeaReader(clock=lambda: 0.0)
    for line, want in zip(lines, expected, strict=True):
        decoded = reader.decode(line)
        assert decoded is not None, line
        msg, when, _, _ = decoded
        assert (msg.msg_type, msg.mmsi) == (want["type"], want["mmsi"])
        assert when is not None and when > 1.3e9  # the receiver's trailing Unix time
        reports = reader.reports(msg, when, None)
        if want["type"] in (1, 2, 3, 18, 27) and abs(want["lat"]) <= 90 \
                and abs(want["lon"]) <= 180:
            (pos,) = [r for r in reports if isinstance(r, Position)]
            assert pos.lat == pytest.approx(want["lat"], abs=1e-5)
            assert pos.lon == pytest.approx(want["lon"], abs=1e-5)
            if want.get("speed") is not None and want["speed"] < 102.2:
                assert pos.speed == pytest.approx(want["speed"], abs=0.05)
            if want.get("heading", 511) < 360:
                assert pos.heading == want["heading"]
        elif want["type"] in (2, 27):
            assert reports == ()
        if want["type"] == 5:
            (static,) = reports
            assert isinstance(static, Static)
            assert (static.name, static.call_sign, static.imo, static.ship_type) == (
                want["shipname"], want["callsign"], int(want["imo"]), want["shiptype"])
            assert static.dimensions == (want["to_bow"], want["to_stern"], want["to_port"],
                                         want["to_starboard"])
            assert static.destination == want["destination"]
        if want["type"] == 4:  # a base station at lat 91 / lon 181: not a vessel position
            assert reports == ()
    assert reader.stats.bad == {"position out of range": 2}
    assert reader.stats.sentences == 26 and reader.stats.decoded == 24


def test_tag_blocks_give_time_and_source_and_group_two_parts() -> None:
    reader, reports = read(AIS / "libais" / "tagblock.nmea")
    expected = [json.loads(x) for x in (AIS / "libais" / "tagblock.json").read_text()
                .splitlines()]
    assert reader.stats.sentences == 5 and reader.stats.decoded == 5 and not reader.stats.bad
    assert sum(reader.stats.messages.values()) == len(expected) == 4
    positions = [r for r in reports if isinstance(r, Position)]
    wanted = [w for w in expected if w["type"] == 1]
    assert [(p.mmsi, p.source) for p in positions] == [(w["mmsi"], w["tagblock_station"])
                                                       for w in wanted]
    for p, w in zip(positions, wanted, strict=True):
        assert p.lat == pytest.approx(w["lat"], abs=1e-5)
        assert p.course == pytest.approx(w["course"], abs=0.05)
    (static,) = [r for r in reports if isinstance(r, Static)]
    assert (static.mmsi, static.name, static.call_sign, static.time) == (
        219005012, "ROSINANTE", "XPD5019", 1418169601.0)


def test_pyais_sample_refuses_empty_payloads_and_lone_first_halves() -> None:
    reader, reports = read(AIS / "pyais" / "nmea_data_sample.txt")
    stats = reader.stats
    assert stats.bad == {"empty payload": 100, "missing parts": 20}
    assert stats.sentences == stats.decoded + 120
    assert stats.no_position == 4  # lat 91 / lon 181: not available, never a position
    assert stats.positions == sum(isinstance(r, Position) for r in reports) == 758
    assert all(-90 <= r.lat <= 90 and -180 <= r.lon <= 180
               for r in reports if isinstance(r, Position))


@pytest.mark.parametrize(("name", "skipped", "bad", "messages"), [
    ("mixed.txt", {"not AIS": 8, "blank": 7, "comment": 5}, {"bad tag block": 3}, 10),
    ("messages.ais", {"blank": 3, "comment": 2}, {}, 6),
    ("timestamped.ais", {"not AIS": 4, "blank": 2, "comment": 1}, {}, 4),
    ("ais_test_messages", {"comment": 1}, {}, 7),
])
def test_comments_and_other_sentences_are_skipped_and_counted(
        name: str, skipped: dict[str, int], bad: dict[str, int], messages: int) -> None:
    reader, _ = read(AIS / "pyais" / name)
    assert reader.stats.skipped == skipped
    assert reader.stats.bad == bad
    assert sum(reader.stats.messages.values()) == messages


def test_bad_checksums_missing_parts_and_the_unavailable_position() -> None:
    good = b"!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0*23"
    reader = NmeaReader(clock=lambda: 5.0)
    assert len(reader.feed(good)) == 1
    assert reader.feed(good[:-2] + b"24") == ()
    assert reader.feed(b"!AIVDM,2,2,1,A,88888888880,2*25") == ()  # a second half alone
    assert reader.feed(b"!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip") == ()  # no checksum
    assert reader.stats.bad == {"bad checksum": 1, "missing parts": 1, "malformed": 1}
    from pyais import encode_dict

    (dark,) = encode_dict({"type": 1, "mmsi": 512000001, "lat": 91, "lon": 181},
                          talker_id="AI", sentence_type="VDM")
    assert reader.feed(dark.encode()) == ()
    assert reader.stats.no_position == 1 and reader.stats.positions == 1


def _tagged(sentence: bytes, body: bytes) -> bytes:
    """``sentence`` behind an NMEA 4.0 tag block of ``body``, its checksum right."""
    return b"\\" + body + b"*%02X\\" % reduce(xor, body, 0) + sentence


GOOD = b"!AIVDM,1,1,,A,13HOI:0P0000VOHLCnHQKwvL05Ip,0*23"


@pytest.mark.parametrize("when", [b"9" * 400, b"1" + b"0" * 20, b"4102444800",
                                  b"4102444800000", b"-1790000000", b"+1790000000"])
def test_a_tag_block_time_out_of_range_is_a_bad_tag_block(when: bytes) -> None:
    """A tag block's `c` must be a Unix time (digits, seconds or milliseconds) before
    2100: anything else is refused as `bad tag block`, counted, never a crash. Before the
    fix a 400-digit `c` raised OverflowError out of NmeaReader.feed, and one of 10^20 (ms:
    10^17 s) was taken as a time that vessels.timestamp (time.gmtime) could not write:
    OSError, in both cases a traceback and the rest of the feed lost."""
    reader = NmeaReader(clock=lambda: 5.0)
    assert reader.feed(_tagged(GOOD, b"s:test,c:" + when)) == ()
    assert reader.stats.sentences == 1 and reader.stats.bad == {"bad tag block": 1}
    (report,) = reader.feed(_tagged(GOOD, b"s:test,c:4102444799999"))  # just before 2100
    assert report.time == 4102444799.999


def test_a_receivers_trailing_time_out_of_range_is_not_a_time() -> None:
    """A receiver's time after the checksum (USCG form) is taken only before 2100, as a
    tag block's is; a later one is not a time, and the report is stamped on arrival."""
    reader = NmeaReader(clock=lambda: 5.0)
    (report,) = reader.feed(GOOD + b",b003669710,1790000000")
    assert report.time == 1790000000.0
    (report,) = reader.feed(GOOD + b",b003669710,9999999999")  # the year 2286
    assert report.time == 5.0


TRUNCATED = [  # checksums good, payloads cut short: pyais leaves the missing fields None
    b"!AIVDM,1,1,,A,5,0*13",  # static and voyage data, one character
    b"!AIVDM,1,1,,A,17>5HNeD>iEND=g,0*4E",  # a position report, 90 bits of 168
    b"!AIVDM,1,1,,A,2bB4Dip,4*59",  # a position report, 38 bits
]


@pytest.mark.parametrize("line", TRUNCATED)
def test_a_truncated_payload_is_refused_not_a_crash(line: bytes) -> None:
    """A payload cut short is refused as `undecodable`, counted, never a report. Before
    the fix, pyais decoded it with its missing fields None and NmeaReader.reports called
    float()/int() on them: a TypeError out of feed, which ended `ingest ais` with a
    traceback, the rest of the feed unread."""
    reader = NmeaReader(clock=lambda: 5.0)
    assert reader.feed(line) == ()
    assert reader.stats.sentences == 1 and reader.stats.decoded == 0
    assert reader.stats.bad == {"undecodable": 1}
    assert not reader.stats.messages


class _GeneralReader(NmeaReader):
    """The reader without its fast path: every line through pyais's sentence and message."""

    def _fast(self, line: bytes) -> None:
        return None


def _counted(stats: object) -> dict[str, object]:
    return {k: list(v.items()) if isinstance(v, dict) else v for k, v in vars(stats).items()}


def test_the_fast_path_reads_as_pyais_does() -> None:
    """One-sentence position reports (types 1, 2, 3, 18) skip pyais's objects: the same
    reports, the same counts (in the same order) and the same refusals as through pyais,
    on every corpus line and on generated and damaged sentences of every shape."""
    import random
    from functools import reduce
    from operator import xor

    from pyais import encode_dict

    rng = random.Random(10)

    def tagged(sentence: bytes, body: bytes) -> bytes:
        return b"\\" + body + b"*%02X\\" % reduce(xor, body, 0) + sentence

    def checked(body: bytes, fill: bytes = b"0", case: str = "X") -> bytes:
        return b"!" + body + b"," + fill + b"*" + format(
            reduce(xor, body + b"," + fill, 0), "02" + case).encode()

    lines = [line for path in sorted(AIS.rglob("*")) if path.suffix in ("", ".nmea", ".txt",
                                                                        ".ais")
             and path.is_file() and path.name != "LICENSE.txt"
             for line in path.read_bytes().splitlines(keepends=True)]
    armour = bytes(range(48, 88)) + bytes(range(96, 120))
    for _ in range(3000):
        kind = rng.choice([1, 2, 3, 18])
        msg = {"type": kind, "mmsi": rng.randrange(1, 2**30),
               "lat": rng.choice([91, rng.uniform(-90, 90), round(rng.uniform(-90, 90), 4)]),
               "lon": rng.choice([181, rng.uniform(-180, 180), 0.0]),
               "speed": rng.choice([0, 102.2, 102.3, rng.uniform(0, 102.2)]),
               "course": rng.choice([0, 359.9, 360, 409.5, rng.uniform(0, 359.9)]),
               "heading": rng.choice([0, 359, 360, 511, rng.randrange(360)])}
        (sentence,) = encode_dict(msg, talker_id=rng.choice(["AI", "BS"]),
                                  sentence_type=rng.choice(["VDM", "VDO"]))
        line = sentence.encode()
        if rng.random() < 0.3:  # raw bits: off-the-globe positions, bytes outside the armour
            payload = bytes([b"123B"[rng.randrange(4)]]) + bytes(
                rng.choice(armour + b"xyz !~") for _ in range(27))
            line = checked(b"AIVDM,1,1,,%s,%s" % (rng.choice([b"A", b"B", b""]), payload),
                           case=rng.choice("Xx"))
        mutation = rng.randrange(12)
        if mutation == 0:
            line = line[:-1] + b"0" if line[-1:] != b"0" else line[:-1] + b"1"
        elif mutation == 1:
            line = checked(line[1:-5].replace(b",1,1,,", b",1,1,x,"))
        elif mutation == 2:
            line = checked(line[1:-5], fill=b"2")
        elif mutation == 3:
            line = checked(line[1:-5] + b",extra")
        elif mutation == 4:
            line = checked(line[1:-5].replace(b",1,1,", b",2,1,7"))
        elif mutation == 5:
            line = checked(line[1:-5] + b"0")  # a payload of 29 characters
        elif mutation == 6:
            line = line + b",1790000000"  # a receiver's time after the checksum
        body = rng.choice([b"s:rx,c:1790000000", b"c:1790000000123,s:rx",
                           b"s:rx", b"c:12x", b"c", b"s:\xffrx,c:1790000001"])
        if rng.random() < 0.6:
            line = tagged(line, body)
            if rng.random() < 0.1:
                line = line.replace(b"*", b"*0", 1)  # a bad tag block
        lines.append(line + rng.choice([b"", b"\n", b"\r\n"]))

    fast, general = NmeaReader(clock=lambda: 7.0), _GeneralReader(clock=lambda: 7.0)
    taken = 0
    for line in lines:
        taken += fast._fast(line) is not None
    fast = NmeaReader(clock=lambda: 7.0)
    for line in lines:
        assert fast.feed(line) == general.feed(line), line
    fast.finish()
    general.finish()
    assert _counted(fast.stats) == _counted(general.stats)
    stats = fast.stats
    assert taken > 1500 and stats.positions > 1000 and stats.no_position > 100
    assert stats.bad["position out of range"] > 50 and stats.bad["bad checksum"] > 100


def test_the_checksum_is_the_xor_of_the_bytes() -> None:
    import random
    from functools import reduce
    from operator import xor

    from intelpact.maritime.nmea import _xor

    rng = random.Random(3)
    for size in [*range(0, 140), 200, 1000]:
        data = bytes(rng.randrange(256) for _ in range(size))
        assert _xor(data) == reduce(xor, data, 0), size
