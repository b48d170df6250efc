"""Benchmark: access decisions per second, and label parsing over ATT&CK for ICS.

Run: make bench   (or .venv/bin/python bench/decisions.py)

1. Read decisions on cached labels: a realistic mix of 12 people (two parties,
   every clearance, some caveats and communities) against every distinct label of the mix (~170),
   2,000,000 decisions. Target: >= 1,000,000 decisions/s on one core.
   The peer, measured in the same run, is the same decision computed without
   the per-label cache (Policy._decide_read): the ratio shows what caching buys.
2. Label parsing: every object of ATT&CK for ICS 18.1 (1,826 objects), marked
   as `publish` marks it (its own MITRE statement marking plus a national
   marking), turned into labels with a fresh Markings (cold cache). Target:
   < 50 ms for the whole bundle.

The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import gc
import itertools
import json
import random
import sys
import time
from pathlib import Path

from intelpact.model import Markings, Policy, load_agreement, national_marking
from intelpact.model.labels import Label

ROOT = Path(__file__).resolve().parent.parent
AGREEMENT = ROOT / "agreements" / "jpn-nzl.toml"
ATTACK = ROOT / "tests" / "data" / "stix" / "attack-ics" / "ics-attack-18.1.json"


def people(policy: Policy) -> list:
    a = policy.agreement
    out = []
    for party in a.parties:
        for level in a.schemes[party].levels:
            out.append(policy.person(f"{party}-{level.name}", party, level.name,
                                     communities=["MARITIME"] if len(out) % 2 else []))
    out.append(policy.person("nz-eo", "NZL", "TOP SECRET", caveats=["NZEO"]))
    return out


def labels(policy: Policy, n: int, rng: random.Random) -> list[Label]:
    a = policy.agreement
    caveat_choices = [frozenset(), frozenset(), frozenset(), frozenset({"NZEO"})]
    community_choices = [frozenset(), frozenset(), frozenset({frozenset({"MARITIME"})}),
                         frozenset({frozenset({"CLIMATE", "MARITIME"})})]
    seen: dict[Label, None] = {}
    for _ in range(n):  # the space is small: duplicates collapse
        origin = rng.choice(a.parties)
        rel = frozenset(rng.sample(a.parties, rng.randint(1, len(a.parties))))
        label = Label(a.id, rng.randrange(len(a.rows)), origin, rel,
                      rng.choice(caveat_choices), rng.choice(community_choices))
        seen.setdefault(label)
    return list(seen)


def bench_decisions(total: int = 2_000_000) -> dict[str, float]:
    agreement = load_agreement(AGREEMENT)
    policy = Policy(agreement)
    rng = random.Random(7)
    who = people(policy)
    pool = labels(policy, 2_000, rng)
    pairs = [(rng.choice(who), rng.choice(pool)) for _ in range(10_000)]
    decide = policy.may_read
    for p, lab in pairs:  # warm the cache: "cached labels"
        decide(p, lab)
    gc.disable()
    start = time.perf_counter()
    allowed = 0
    for p, lab in itertools.islice(itertools.cycle(pairs), total):
        if decide(p, lab).allowed:
            allowed += 1
    cached = total / (time.perf_counter() - start)
    uncached_total = total // 10
    raw = policy._decide_read
    start = time.perf_counter()
    for p, lab in itertools.islice(itertools.cycle(pairs), uncached_total):
        raw(p, lab)
    uncached = uncached_total / (time.perf_counter() - start)
    gc.enable()
    return {"distinct_labels": len(pool), "decisions_per_s": cached,
            "uncached_decisions_per_s": uncached, "allowed_share": allowed / total}


def bench_parsing() -> dict[str, float]:
    agreement = load_agreement(AGREEMENT)
    bundle = json.loads(ATTACK.read_text(encoding="utf-8"))
    national = national_marking(agreement, "JPN", "秘", rel_to=["NZL"])
    definitions = [o for o in bundle["objects"] if o["type"] == "marking-definition"]
    objects = []
    for obj in bundle["objects"]:
        if obj["type"] != "marking-definition":
            obj = dict(obj)
            obj["object_marking_refs"] = [*obj.get("object_marking_refs", []), national["id"]]
            objects.append(obj)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        markings = Markings(agreement)
        markings.add(national)
        for d in definitions:
            markings.add(d)
        for obj in objects:
            markings.label(obj)
        best = min(best, time.perf_counter() - start)
    return {"attack_objects": len(objects), "attack_label_ms": best * 1000}


def main() -> int:
    results = {"bench": "decisions", **bench_decisions(), **bench_parsing()}
    results["cache_speedup"] = results["decisions_per_s"] / results["uncached_decisions_per_s"]
    print(f"read decisions, cached labels : {results['decisions_per_s']:>12,.0f} /s "
          f"(target >= 1,000,000)")
    print(f"read decisions, no cache      : {results['uncached_decisions_per_s']:>12,.0f} /s "
          f"(cache speed-up x{results['cache_speedup']:.1f})")
    print(f"ATT&CK ICS 18.1 labels        : {results['attack_label_ms']:>12.1f} ms for "
          f"{results['attack_objects']} objects (target < 50 ms)")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v
                      for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
