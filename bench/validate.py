"""Benchmark: STIX 2.1 objects validated per second, intelpact vs stix2-validator.

Run: .venv/bin/python bench/validate.py

Both validators check every object of ATT&CK for ICS 18.1 (1,826 objects) in the
same run, one object at a time, as the ingest path does:
- intelpact: ``intelpact.stix.validate_object`` (schemas compiled once; the first,
  cold pass is reported apart), best of 5 passes;
- the peer: ``stix2validator.validate_instance`` with default options for STIX 2.1,
  one pass.
The verdicts are compared object by object. Target: >= 20,000 objects/s on one core.

Then STIX 2.1 indicator patterns checked per second, in the same run: 5,000 distinct
patterns of the shape bench/taxii.py ingests (``[ipv4-addr:value = '10.x.y.z'] OR
[domain-name:value = 'relay-NNNNNN.example.net']``), each checked once, uncached:
- intelpact's pattern check (``_parse_pattern``: the fast path of
  ``intelpact.stix.patterns``, and stix2patterns for what it leaves), best of 3;
- the same check on stix2patterns' ANTLR parser only (``_library_problem``, what
  intelpact did before the fast path), on the first 1,000, one pass.
The verdicts and messages are compared on those 1,000. With INTELPACT_SLOW_PATTERNS=1
the first figure is the library's too.

The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from stix2validator import ValidationOptions, validate_instance  # type: ignore[import-untyped]

from intelpact.stix import StixValidationError, validate, validate_object

ROOT = Path(__file__).resolve().parent.parent
ATTACK = ROOT / "tests" / "data" / "stix" / "attack-ics" / "ics-attack-18.1.json"


def ours(obj: dict[str, Any]) -> bool:
    try:
        validate_object(obj)
    except StixValidationError:
        return False
    return True


def theirs(obj: dict[str, Any], options: ValidationOptions) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(validate_instance(obj, options).is_valid)
    except Exception:  # it raises on some malformed input: count it as a rejection
        return False


def bench_patterns() -> dict[str, Any]:
    """Patterns checked per second, fast path vs stix2patterns (see the docstring)."""
    patterns = [f"[ipv4-addr:value = '10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}'] OR "
                f"[domain-name:value = 'relay-{i:06d}.example.net']" for i in range(5000)]
    library_sample = patterns[:1000]
    fast_s = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        verdicts = [validate._parse_pattern(p, "2.1") for p in patterns]
        fast_s = min(fast_s, time.perf_counter() - start)
    start = time.perf_counter()
    library = [validate._library_problem(p, "2.1") for p in library_sample]
    library_s = time.perf_counter() - start
    disagree = sum(a != b for a, b in zip(verdicts, library, strict=False))
    fast_rate, library_rate = len(patterns) / fast_s, len(library_sample) / library_s
    accepted = verdicts.count(None)
    print(f"STIX 2.1 patterns of the TAXII benchmark's shape: {len(patterns)} distinct, uncached")
    print(f"  intelpact pattern check  : {fast_rate:10,.0f} patterns/s (best of 3; fast path "
          f"{'on' if validate._FAST_PATTERNS else 'OFF: INTELPACT_SLOW_PATTERNS=1'})")
    print(f"  stix2patterns (ANTLR)    : {library_rate:10,.0f} patterns/s "
          f"({len(library_sample)} patterns)")
    print(f"  speed-up                 : x{fast_rate / library_rate:,.1f}")
    print(f"  accepted                 : {accepted} of {len(patterns)}; {disagree} disagreements "
          f"with stix2patterns on {len(library_sample)}")
    return {
        "patterns": len(patterns),
        "pattern_fast_path": validate._FAST_PATTERNS,
        "intelpact_patterns_per_s": round(fast_rate, 1),
        "stix2patterns_patterns_per_s": round(library_rate, 1),
        "pattern_ratio": round(fast_rate / library_rate, 1),
        "pattern_disagreements": disagree,
    }


def main() -> None:
    objects = json.loads(ATTACK.read_text(encoding="utf-8"))["objects"]
    n = len(objects)

    start = time.perf_counter()
    verdicts = [ours(obj) for obj in objects]
    cold_s = time.perf_counter() - start
    best_s = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for obj in objects:
            ours(obj)
        best_s = min(best_s, time.perf_counter() - start)

    options = ValidationOptions(version="2.1")
    start = time.perf_counter()
    peer = [theirs(obj, options) for obj in objects]
    peer_s = time.perf_counter() - start

    disagree = [obj["id"] for obj, a, b in zip(objects, verdicts, peer, strict=True) if a != b]
    ours_rate, peer_rate = n / best_s, n / peer_s
    print(f"ATT&CK for ICS 18.1: {n} objects, validated one at a time")
    print(f"  intelpact validate_object: {ours_rate:10,.0f} objects/s "
          f"(best of 5; cold first pass, compiling schemas: {cold_s * 1000:,.0f} ms)")
    print(f"  stix2-validator          : {peer_rate:10,.0f} objects/s")
    print(f"  speed-up                 : x{ours_rate / peer_rate:,.1f}")
    print(f"  accepted                 : intelpact {sum(verdicts)}, stix2-validator {sum(peer)}; "
          f"{len(disagree)} disagreements{': ' + ', '.join(disagree) if disagree else ''}")
    pattern_results = bench_patterns()
    print(json.dumps({
        "bench": "validate", "objects": n,
        "intelpact_objects_per_s": round(ours_rate, 1),
        "stix2validator_objects_per_s": round(peer_rate, 1),
        "ratio": round(ours_rate / peer_rate, 1),
        "intelpact_cold_pass_ms": round(cold_s * 1000, 1),
        "disagreements": len(disagree),
        **pattern_results,
    }))


if __name__ == "__main__":
    main()
