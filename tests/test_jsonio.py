"""intelpact.jsonio: strict JSON in (parse_json), compact UTF-8 JSON out (dumps).

The corpora are vendored byte for byte under tests/data/json/ (see tests/data/README.md):
JSONTestSuite (y_ must parse, n_ must fail, i_ implementation-defined) and the Big List
of Naughty Strings. docs/json.md documents every choice asserted here.
"""

from __future__ import annotations

import json
import math
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intelpact.errors import IntelpactError
from intelpact.jsonio import (
    DEFAULT_MAX_DEPTH,
    INT_MAX,
    INT_MIN,
    MAX_MAX_DEPTH,
    JsonError,
    dumps,
    parse_json,
)

DATA = Path(__file__).parent / "data" / "json"
SUITE = DATA / "JSONTestSuite"
BLNS = DATA / "naughty-strings" / "blns.json"


def _suite(prefix: str) -> list[str]:
    return sorted(p.name for p in SUITE.glob(f"{prefix}*.json"))


Y_FILES, N_FILES, I_FILES = _suite("y_"), _suite("n_"), _suite("i_")

# Message fragments, one per documented reason for rejecting.
DUPLICATE = "duplicate key"
INT64 = "outside the signed 64-bit range"
FLOAT = "too large for a 64-bit float"
SURROGATE = "unpaired UTF-16 surrogate"
UTF8 = "invalid UTF-8 at byte"
UTF16 = "looks like UTF-16 or UTF-32"
BOM = "byte order mark"
DEPTH = "levels deep; at most"

# y_ files (valid JSON) that parse_json rejects on purpose, with the reason in the message.
Y_REJECTED = {
    "y_object_duplicated_key.json": DUPLICATE,  # {"a":"b","a":"c"}: two readers, two objects
    "y_object_duplicated_key_and_value.json": DUPLICATE,  # {"a":"b","a":"b"}: still ambiguous
}

# Every i_ file and the outcome docs/json.md documents for it.
I_OUTCOMES = {
    # numbers: integers beyond int64 and floats that overflow are rejected;
    # an underflow becomes 0.0 (a value that rounds, not one that cannot be stored)
    "i_number_double_huge_neg_exp.json": "accept",  # [123.456e-789] -> [0.0]
    "i_number_real_underflow.json": "accept",  # [123e-10000000] -> [0.0]
    "i_number_huge_exp.json": "reject",
    "i_number_neg_int_huge_exp.json": "reject",
    "i_number_pos_double_huge_exp.json": "reject",
    "i_number_real_neg_overflow.json": "reject",
    "i_number_real_pos_overflow.json": "reject",
    "i_number_too_big_neg_int.json": "reject",
    "i_number_too_big_pos_int.json": "reject",
    "i_number_very_big_negative_int.json": "reject",
    # \u escapes that leave a lone surrogate (value or key)
    "i_object_key_lone_2nd_surrogate.json": "reject",
    "i_string_1st_surrogate_but_2nd_missing.json": "reject",
    "i_string_1st_valid_surrogate_2nd_invalid.json": "reject",
    "i_string_incomplete_surrogate_and_escape_valid.json": "reject",
    "i_string_incomplete_surrogate_pair.json": "reject",
    "i_string_incomplete_surrogates_escape_valid.json": "reject",
    "i_string_invalid_lonely_surrogate.json": "reject",
    "i_string_invalid_surrogate.json": "reject",
    "i_string_inverted_surrogates_U+1D11E.json": "reject",
    "i_string_lone_second_surrogate.json": "reject",
    # bytes that are not UTF-8
    "i_string_UTF-8_invalid_sequence.json": "reject",
    "i_string_UTF8_surrogate_U+D800.json": "reject",
    "i_string_invalid_utf-8.json": "reject",
    "i_string_iso_latin_1.json": "reject",
    "i_string_lone_utf8_continuation_byte.json": "reject",
    "i_string_not_in_unicode_range.json": "reject",
    "i_string_overlong_sequence_2_bytes.json": "reject",
    "i_string_overlong_sequence_6_bytes.json": "reject",
    "i_string_overlong_sequence_6_bytes_null.json": "reject",
    "i_string_truncated-utf-8.json": "reject",
    # other encodings and byte order marks
    "i_string_UTF-16LE_with_BOM.json": "reject",
    "i_string_utf16BE_no_BOM.json": "reject",
    "i_string_utf16LE_no_BOM.json": "reject",
    "i_structure_UTF-8_BOM_empty_object.json": "reject",
    # depth: 500 > DEFAULT_MAX_DEPTH (64); accepted with max_depth=500 (tested below)
    "i_structure_500_nested_arrays.json": "reject",
}

# Why each rejected i_ file is rejected: a fragment of the one-line message.
I_REASONS = {
    "i_number_huge_exp.json": FLOAT,
    "i_number_neg_int_huge_exp.json": FLOAT,
    "i_number_pos_double_huge_exp.json": FLOAT,
    "i_number_real_neg_overflow.json": FLOAT,
    "i_number_real_pos_overflow.json": FLOAT,
    "i_number_too_big_neg_int.json": INT64,
    "i_number_too_big_pos_int.json": INT64,
    "i_number_very_big_negative_int.json": INT64,
    "i_object_key_lone_2nd_surrogate.json": SURROGATE,
    "i_string_1st_surrogate_but_2nd_missing.json": SURROGATE,
    "i_string_1st_valid_surrogate_2nd_invalid.json": SURROGATE,
    "i_string_incomplete_surrogate_and_escape_valid.json": SURROGATE,
    "i_string_incomplete_surrogate_pair.json": SURROGATE,
    "i_string_incomplete_surrogates_escape_valid.json": SURROGATE,
    "i_string_invalid_lonely_surrogate.json": SURROGATE,
    "i_string_invalid_surrogate.json": SURROGATE,
    "i_string_inverted_surrogates_U+1D11E.json": SURROGATE,
    "i_string_lone_second_surrogate.json": SURROGATE,
    "i_string_UTF-8_invalid_sequence.json": f"{UTF8} 7",
    "i_string_UTF8_surrogate_U+D800.json": f"{UTF8} 2",
    "i_string_invalid_utf-8.json": f"{UTF8} 2",
    "i_string_iso_latin_1.json": f"{UTF8} 2",
    "i_string_lone_utf8_continuation_byte.json": f"{UTF8} 2",
    "i_string_not_in_unicode_range.json": f"{UTF8} 2",
    "i_string_overlong_sequence_2_bytes.json": f"{UTF8} 2",
    "i_string_overlong_sequence_6_bytes.json": f"{UTF8} 2",
    "i_string_overlong_sequence_6_bytes_null.json": f"{UTF8} 2",
    "i_string_truncated-utf-8.json": f"{UTF8} 2",
    "i_string_UTF-16LE_with_BOM.json": UTF16,
    "i_string_utf16BE_no_BOM.json": UTF16,
    "i_string_utf16LE_no_BOM.json": UTF16,
    "i_structure_UTF-8_BOM_empty_object.json": BOM,
    "i_structure_500_nested_arrays.json": "nesting is 500 levels deep; at most 64 allowed",
}


@contextmanager
def _deadline(seconds: float = 5.0) -> Iterator[None]:
    """Turn a hang (or super-linear blow-up) into a failure rather than a stuck run.

    A guard, not a benchmark: every input here takes milliseconds.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not hasattr(signal, "setitimer") or not in_main_thread:
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _rejected(data: bytes, **kwargs: Any) -> JsonError:
    """parse_json(data) raises JsonError (nothing else, in time); return it, its form checked."""
    with _deadline(), pytest.raises(JsonError) as info:
        parse_json(data, **kwargs)
    error = info.value
    assert isinstance(error, IntelpactError)
    assert error.message == str(error)
    assert error.message.startswith("invalid JSON: ")
    assert "\n" not in error.message and "\r" not in error.message
    assert error.message.isascii() or "§" in error.message  # only the BOM message has "§"
    assert error.hint and "UTF-8" in error.hint
    assert error.__cause__ is None
    return error


# --- the corpus is what we think it is -------------------------------------------------------


def test_corpus_is_complete() -> None:
    assert (len(Y_FILES), len(N_FILES), len(I_FILES)) == (95, 188, 35)
    assert (SUITE / "LICENSE.txt").is_file() and BLNS.is_file()
    assert set(Y_REJECTED) <= set(Y_FILES)
    assert set(I_OUTCOMES) == set(I_FILES)
    assert set(I_OUTCOMES.values()) == {"accept", "reject"}
    assert set(I_REASONS) == {n for n, outcome in I_OUTCOMES.items() if outcome == "reject"}


# --- JSONTestSuite ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in Y_FILES if n not in Y_REJECTED])
def test_y_accepted(name: str) -> None:
    raw = (SUITE / name).read_bytes()
    with _deadline():
        value = parse_json(raw)
    assert value == json.loads(raw)
    assert parse_json(dumps(value)) == value


@pytest.mark.parametrize("name", sorted(Y_REJECTED))
def test_y_rejected_by_choice(name: str) -> None:
    raw = (SUITE / name).read_bytes()
    json.loads(raw)  # valid JSON: the stdlib takes it
    assert Y_REJECTED[name] in _rejected(raw).message


@pytest.mark.parametrize("name", N_FILES)
def test_n_rejected(name: str) -> None:
    _rejected((SUITE / name).read_bytes())


@pytest.mark.parametrize("name", I_FILES)
def test_i_documented_outcome(name: str) -> None:
    raw = (SUITE / name).read_bytes()
    if I_OUTCOMES[name] == "accept":
        with _deadline():
            assert parse_json(raw) == [0.0]  # both accepted i_ files are underflows
    else:
        assert I_REASONS[name] in _rejected(raw).message


def test_i_500_nested_arrays_accepted_at_max_depth_500() -> None:
    raw = (SUITE / "i_structure_500_nested_arrays.json").read_bytes()
    value = parse_json(raw, max_depth=500)
    for _ in range(499):
        (value,) = value
    assert value == []


def test_docs_table_matches_outcomes() -> None:
    doc = (Path(__file__).parents[1] / "docs" / "json.md").read_text(encoding="utf-8")
    for name in I_OUTCOMES:
        assert f"`{name}`" in doc, name
    rows = [line for line in doc.splitlines() if line.startswith("| `i_")]
    documented: dict[str, str] = {}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        outcome = cells[-2].strip("*").lower()
        for name in cells[0].replace("`", "").replace("<br>", " ").split():
            documented[name] = outcome
    assert documented == I_OUTCOMES
    for name in Y_REJECTED:
        assert f"`{name}`" in doc


# --- constants, encoding ---------------------------------------------------------------------


@pytest.mark.parametrize("text", [b"NaN", b"Infinity", b"-Infinity", b"[1,NaN]",
                                  b'{"a":Infinity}', b'{"a":[-Infinity]}'])
def test_nan_and_infinity_rejected(text: bytes) -> None:
    assert "is not a JSON number" in _rejected(text).message


@pytest.mark.parametrize("text", [b"nan", b"-NaN", b"inf", b"+Infinity", b"infinity"])
def test_other_spellings_rejected(text: bytes) -> None:
    _rejected(text)


@pytest.mark.parametrize("text", [b"\xef\xbb\xbf{}", b"\xef\xbb\xbf[1]", b"\xef\xbb\xbf 1",
                                  b"\xef\xbb\xbf"])
def test_utf8_bom_rejected(text: bytes) -> None:
    assert BOM in _rejected(text).message


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32",
                                      "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_rejected(encoding: str) -> None:
    for text in ('{"a":"é"}', '["x"]', "1"):
        data = text.encode(encoding)
        json.loads(data)  # the stdlib would detect and decode these
        assert UTF16 in _rejected(data).message


@pytest.mark.parametrize(("data", "offset"), [
    (b'["abc\xff"]', 5),
    (b'{"k":"\xc3"}', 6),  # truncated 2-byte sequence
    (b'["\xc0\xaf"]', 2),  # overlong "/"
    (b'["ok","\xed\xa0\x80"]', 7),  # UTF-8 encoded surrogate U+D800
    (b'["\xe6\x97\xa5\xd1\x88\xfa"]', 7),  # valid, valid, then a bad lead byte
    (b"\x80", 0),
    ('["\u00e9\u65e5\U0001d11e'.encode() + b'\xf5"]', 11),  # after 2-, 3- and 4-byte chars
])
def test_invalid_utf8_reports_byte_offset(data: bytes, offset: int) -> None:
    assert _rejected(data).message == f"invalid JSON: {UTF8} {offset}"


def test_valid_utf8_accepted() -> None:
    text = '{"name":"Zürich 日本 𝄞 \u2028","k":["ü"]}'
    assert parse_json(text.encode()) == json.loads(text)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_bytes_like_input(wrap: Any) -> None:
    assert parse_json(wrap(b'{"a":[1,2.5,"x",null,true,false]}')) == {
        "a": [1, 2.5, "x", None, True, False]}


# --- depth -----------------------------------------------------------------------------------


def _arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _mixed(depth: int) -> bytes:
    half = depth // 2  # [{"k":[{"k":...}]}] with [] (odd depth) or 1 (even) innermost
    return b'[{"k":' * half + (b"[]" if depth % 2 else b"1") + b"}]" * half


@pytest.mark.parametrize("opener", [b"[", b"{", b'{"a":', b'[{"a":', b"[" * 3 + b" "])
def test_100000_deep_is_jsonerror_not_recursionerror(opener: bytes) -> None:
    error = _rejected(opener * 100_000)  # _rejected: JsonError only, within the deadline
    assert DEPTH in error.message


@pytest.mark.parametrize("build", [_arrays, _objects, _mixed])
@pytest.mark.parametrize("max_depth", [1, 2, 17, DEFAULT_MAX_DEPTH, MAX_MAX_DEPTH])
def test_depth_limit_exact(build: Any, max_depth: int) -> None:
    value = parse_json(build(max_depth), max_depth=max_depth)
    assert value == json.loads(build(max_depth))
    error = _rejected(build(max_depth + 1), max_depth=max_depth)
    assert error.message == (f"invalid JSON: nesting is {max_depth + 1} levels deep; "
                             f"at most {max_depth} allowed")


def test_default_depth_is_64() -> None:
    assert DEFAULT_MAX_DEPTH == 64
    parse_json(_arrays(64))
    _rejected(_arrays(65))


@pytest.mark.parametrize("text", [b"1", b'"x"', b"null", b"true", b"false", b"-2.5"])
def test_scalars_have_depth_zero(text: bytes) -> None:
    assert parse_json(text, max_depth=1) == json.loads(text)


@pytest.mark.parametrize("max_depth", [0, -1, MAX_MAX_DEPTH + 1])
def test_max_depth_out_of_range_is_a_programming_error(max_depth: int) -> None:
    with pytest.raises(ValueError, match="max_depth"):
        parse_json(b"[]", max_depth=max_depth)


def test_brackets_inside_strings_do_not_count() -> None:
    noise = '[[[{{{ ]]]}}} \\" [[[ \\\\ {{{'  # JSON source: escaped quote and backslash
    text = b"[" * 64 + f'"{noise * 50}"'.encode() + b"]" * 64
    assert parse_json(text) == json.loads(text)
    keys = ("{" + ",".join(f'"{"[" * 100}{i}{"{" * 100}":{i}' for i in range(10)) + "}").encode()
    assert parse_json(keys, max_depth=1) == json.loads(keys)


def test_closing_brackets_inside_strings_do_not_hide_depth() -> None:
    # real depth 65; if the "]]]" in the string counted, the scan would see at most 33
    text = b"[" * 33 + b'"' + b"]" * 40 + b'",' + _arrays(32) + b"]" * 33
    assert json.loads(text)
    assert "nesting is 65 levels deep" in _rejected(text).message


def test_unterminated_string_with_brackets_after_it() -> None:
    _rejected(b"[" * 64 + b'"' + b"[" * 100_000)
    _rejected(b"[" * 64 + b'"\\' + b"[" * 1000)


@pytest.mark.parametrize("tail", [b'\\"', b'"\\"', b'\\\\"', b'\\"[', b'"'])
def test_depth_scan_is_linear_on_unpaired_quotes(tail: bytes) -> None:
    # regression: the string scan rescanned to the end from every unmatched quote (quadratic;
    # 80 KB took 25 s); a 400 KB body must now finish well inside the deadline
    _rejected(b"[" * 65 + b'"' + tail * (400_000 // len(tail)))


# --- duplicates, numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "key"), [
    (b'{"a":1,"a":2}', "a"),
    (b'{"a":1,"a":1}', "a"),
    (b'{"a":{"b":1,"c":2,"b":3}}', "b"),
    (b'[{"x":1},{"y":1,"y":2}]', "y"),
    (b'{"a":1,"\\u0061":2}', "a"),  # the same key after unescaping
    (b'{"":1,"":2}', ""),
    (b'{"\xc3\xa9":1,"\\u00e9":2}', "\u00e9"),
])
def test_duplicate_keys_rejected(text: bytes, key: str) -> None:
    error = _rejected(text)
    assert f"duplicate key {json.dumps(key)} in an object" in error.message


def test_distinct_keys_kept_in_order() -> None:
    value = parse_json(b'{"b":1,"a":2,"A":3,"a ":4}')
    assert list(value) == ["b", "a", "A", "a "]
    assert parse_json(b'[{"a":1},{"a":2}]') == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize("value", [INT_MIN, INT_MAX, 0, -1, 2**53 + 1])
def test_int64_range_accepted_exactly(value: int) -> None:
    parsed = parse_json(str(value).encode())
    assert parsed == value and type(parsed) is int


@pytest.mark.parametrize("text", [str(INT_MAX + 1), str(INT_MIN - 1), "1" * 25, "-" + "9" * 30,
                                  "1" * 5000, "1" * 1_000_000])
def test_ints_beyond_int64_rejected(text: str) -> None:
    assert INT64 in _rejected(text.encode()).message  # not ValueError from int() digit limits


@pytest.mark.parametrize("text", ["1e400", "-1e400", "1E400", "1.0e+309", "[2e308]",
                                  "1" * 400 + ".0", "123123e100000"])
def test_float_overflow_rejected(text: str) -> None:
    assert FLOAT in _rejected(text.encode()).message


@pytest.mark.parametrize(("text", "expected"), [
    ("1e-400", 0.0), ("-1e-400", -0.0), ("1.7976931348623157e308", 1.7976931348623157e308),
    ("5e-324", 5e-324), ("1.0", 1.0), ("1E2", 100.0), ("-0.0", -0.0),
])
def test_floats_accepted(text: str, expected: float) -> None:
    parsed = parse_json(text.encode())
    assert type(parsed) is float and parsed == expected
    assert math.copysign(1, parsed) == math.copysign(1, expected)


# --- surrogates ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    rb'"\ud800"', rb'"\uDC00"', rb'["\udd1e\ud834"]', rb'["\ud834x"]', rb'["\ud834\u0041"]',
    rb'{"\udfff":1}', rb'{"k":[{"d":"ok \uDBFF"}]}', rb'["\ud800\ud800"]',
    rb'["\uD888\u1234"]',  # regression: the message builder crashed on the non-ASCII U+1234
    '["日本 \\ud800 ü"]'.encode(),
])
def test_lone_surrogate_escapes_rejected(text: bytes) -> None:
    message = _rejected(text).message
    assert SURROGATE in message
    assert "\\u" in message  # the string is shown escaped


@pytest.mark.parametrize(("text", "expected"), [
    (rb'"\ud834\udd1e"', "\U0001d11e"), (rb'"\uD834\uDD1E"', "\U0001d11e"),
    (rb'"\ud83d\ude00\udbff\udfff"', "\U0001f600\U0010ffff"), (rb'{"\ud800\udc00":1}', None),
    (rb'"\\ud800"', "\\ud800"),  # an escaped backslash: six plain characters, no surrogate
])
def test_surrogate_pairs_accepted(text: bytes, expected: str | None) -> None:
    value = parse_json(text)
    assert value == (expected if expected is not None else {"\U00010000": 1})
    assert dumps(value).decode("utf-8")


# --- top level, grammar ----------------------------------------------------------------------


@pytest.mark.parametrize("text", [b"{}", b"[]", b'"s"', b"0", b"-1.5", b"true", b"false",
                                  b"null", b" \t\r\n[1] \n"])
def test_any_top_level_value(text: bytes) -> None:
    assert parse_json(text) == json.loads(text)


@pytest.mark.parametrize("text", [b"", b" ", b"\n", b"[] []", b"{} x", b"1 2", b"[1,]",
                                  b"{'a':1}", b'"a\tb"', b"01", b"[1e]", b"\x00", b"\x00\x00",
                                  b"1\x00", b"//\n1", b'"\x7f\x1f"'])
def test_grammar_errors_rejected(text: bytes) -> None:
    _rejected(text)


# --- naughty strings -------------------------------------------------------------------------

BLNS_RAW = BLNS.read_bytes()
NAUGHTY: list[str] = json.loads(BLNS_RAW)


def test_naughty_array_round_trips_exactly() -> None:
    strings = parse_json(BLNS_RAW)
    assert strings == NAUGHTY and len(strings) > 500
    assert all(isinstance(s, str) for s in strings)
    out = dumps(strings)
    again = parse_json(out)
    assert again == strings
    assert all(a == b and len(a) == len(b) for a, b in zip(again, strings, strict=True))
    assert dumps(again) == out


def _stix_like(s: str) -> dict[str, Any]:
    return {
        "type": "indicator", "spec_version": "2.1",
        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
        "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
        "name": s, "description": s, "labels": [s, s],
        "pattern": f"[file:name = '{s}']", "pattern_type": "stix",
        "external_references": [{"source_name": s, "external_id": s}],
        "x_naughty": {s: s, "k": s},
    }


@pytest.mark.parametrize("index", range(len(NAUGHTY)))
def test_naughty_string_round_trips_in_stix_object(index: int) -> None:
    s = NAUGHTY[index]
    obj = _stix_like(s)
    out = dumps(obj)
    assert out.decode("utf-8") == json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    back = parse_json(out)
    assert back == obj
    assert back["name"] == s and back["x_naughty"][s] == s and list(back) == list(obj)
    assert dumps(back) == out


# --- dumps -----------------------------------------------------------------------------------


def test_dumps_is_compact_utf8() -> None:
    assert dumps({"b": [1, 2.5, None], "a": "é 𝄞"}) == '{"b":[1,2.5,null],"a":"é 𝄞"}'.encode()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1, {"x": math.nan}],
                                   {"a": [math.inf]}])
def test_dumps_rejects_nan_and_infinity(value: Any) -> None:
    with pytest.raises(JsonError, match="cannot encode as JSON"):
        dumps(value)


@pytest.mark.parametrize("value", ["\ud800", ["ok", "a\udc00b"], {"\udfff": 1},
                                   {"k": {"x": ["\udbff"]}}])
def test_dumps_rejects_lone_surrogates(value: Any) -> None:
    with pytest.raises(JsonError, match="unpaired UTF-16 surrogate") as info:
        dumps(value)
    assert info.value.hint


def test_dumps_rejects_circular_and_unknown_types() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(JsonError, match="Circular reference"):
        dumps(loop)
    with pytest.raises(TypeError):
        dumps({1, 2})


# --- properties ------------------------------------------------------------------------------

_SETTINGS = settings(max_examples=300, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow])

_values = st.recursive(
    st.none() | st.booleans() | st.integers(INT_MIN, INT_MAX)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@_SETTINGS
@given(_values)
def test_property_dumps_then_parse_is_identity(value: Any) -> None:
    out = dumps(value)
    assert parse_json(out) == value == json.loads(out)
    assert dumps(parse_json(out)) == out


_SEEDS = [(SUITE / n).read_bytes() for n in Y_FILES] + [BLNS_RAW[:2000]]


@_SETTINGS
@given(st.sampled_from(_SEEDS), st.data())
def test_property_mutated_input_parses_or_raises_jsonerror(seed: bytes, data: Any) -> None:
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw)))
        action = data.draw(st.sampled_from(["insert", "replace", "delete"]))
        byte = data.draw(st.sampled_from(list(b'[]{}",:\\u0eE.-+ \x00\x80\xff\xef')))
        if action == "insert" or not raw:
            raw.insert(i, byte)
        elif action == "replace":
            raw[min(i, len(raw) - 1)] = byte
        else:
            del raw[min(i, len(raw) - 1)]
    _parses_or_jsonerror(bytes(raw))


@_SETTINGS
@given(st.binary(max_size=200))
def test_property_random_bytes_parse_or_raise_jsonerror(raw: bytes) -> None:
    _parses_or_jsonerror(raw)


def _parses_or_jsonerror(raw: bytes) -> None:
    try:
        value = parse_json(raw)
    except JsonError:
        return
    assert parse_json(dumps(value)) == value


def _depth_by_regex(data: bytes, max_depth: int) -> int:
    """The depth pre-scan as first written: strings cut out by a regular expression."""
    from itertools import accumulate

    from intelpact.jsonio import _NOT_BRACKETS, _SIGNS

    string = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return 0
    brackets = string.sub(b"", data).translate(None, _NOT_BRACKETS)
    if len(brackets) <= max_depth:
        return 0
    return max(accumulate(memoryview(brackets.translate(_SIGNS)).cast("b")))


_INSIDE = st.lists(st.sampled_from([b"a", b"[", b"]", b"{", b"}", b"\\\\", b'\\"', b"\\n",
                                    b"\\u005b"]), max_size=6).map(b"".join)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b"a", b":", b","])
                | _INSIDE.map(lambda x: b'"' + x + b'"'), max_size=30),
       st.none() | _INSIDE)
def test_depth_prescan_agrees_with_the_regex_one(parts: list[bytes],
                                                 unterminated: bytes | None) -> None:
    """Backslashes inside strings (escaped quotes, escaped backslashes) and an
    unterminated last string. A backslash outside a string is a syntax error where it
    stands, before any bracket after it: there the two scans may differ, harmlessly."""
    from intelpact.jsonio import _depth

    data = b"".join(parts) + (b'"' + unterminated if unterminated is not None else b"")
    for limit in (1, 2, 5):
        assert _depth(data, limit) == _depth_by_regex(data, limit), data


def test_depth_prescan_agrees_on_every_suite_file() -> None:
    from intelpact.jsonio import _depth

    for path in sorted(SUITE.glob("*.json")):
        data = path.read_bytes()
        assert _depth(data, 1) == _depth_by_regex(data, 1), path.name
