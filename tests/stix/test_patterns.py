"""The single-parse pattern check gives stix2patterns' own verdict on every pattern."""

from __future__ import annotations

import json
import random
from pathlib import Path

from stix2patterns.v21.pattern import Pattern
from stix2patterns.validator import run_validator

from intelpact.stix import validate

DATA = Path(__file__).resolve().parent.parent / "data" / "stix"
SEEDS = {
    "[ipv4-addr:value = '1.2.3.4'] OR [domain-name:value = 'x.example']",
    "[file:hashes.MD5 = 'abc'] REPEATS 5 TIMES WITHIN 10 SECONDS",
    "[x-a:b = 1] START t'2020-01-01T00:00:00Z' STOP t'2021-01-01T00:00:00Z'",
    "ipv4-addr:value = '1.2.3.4'",
    "[ipv4-addr:value = '1.2.3.4'",
    "[file:size > 10 AND file:name MATCHES '^x']",
    "[x-a:b = 1] WITHIN 5 SECONDS WITHIN 6 SECONDS",
    "([x-a:b=1] AND [x-c:d=2]) FOLLOWEDBY [x-e:f=3]",
}


def corpus_patterns() -> set[str]:
    found = set(SEEDS)
    for path in DATA.rglob("*.json"):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        objects = doc.get("objects", [doc]) if isinstance(doc, dict) else []
        for obj in objects:
            if isinstance(obj, dict) and isinstance(obj.get("pattern"), str):
                found.add(obj["pattern"])
    return found


def mutations(patterns: set[str], per: int, seed: int = 7) -> set[str]:
    rng = random.Random(seed)
    alphabet = "[]()':=!<>ANDORTNOT 0123456789abcxyz.-_,tbh"
    out = set()
    for p in sorted(patterns):
        for _ in range(per):
            q = list(p)
            i = rng.randrange(len(q) + 1)
            op = rng.randrange(3)
            if op == 0 and q:
                del q[min(i, len(q) - 1)]
            elif op == 1:
                q.insert(i, rng.choice(alphabet))
            elif q:
                q[min(i, len(q) - 1)] = rng.choice(alphabet)
            out.add("".join(q))
    return out


def library_accepts(pattern: str) -> bool:
    """What stix2-validator does: run_validator, then Pattern(...).inspect()."""
    if run_validator(pattern, "2.1"):
        return False
    Pattern(pattern).inspect()
    return True


def test_single_parse_matches_the_library_on_corpus_and_mutations() -> None:
    patterns = corpus_patterns()
    patterns |= mutations(patterns, per=40)
    assert len(patterns) > 1000
    accepted = 0
    for pattern in sorted(patterns):
        errors, _ = validate._run_v21(pattern)
        assert (not errors) == library_accepts(pattern), pattern
        accepted += not errors
    assert 0 < accepted < len(patterns)  # both verdicts occur
