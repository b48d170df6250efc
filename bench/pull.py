"""Benchmark: what carrying passed definitions adds to a page a partner pulls.

Run: .venv/bin/python bench/pull.py [--repeats 30]   (about 10 s; part of `make bench`)

One fresh JPN node (agreement jpn-nzl, SQLite) with NZL pinned publishes ATT&CK for ICS
18.1 (1,826 objects, every one citing MITRE's statement marking-definition) marked 秘 REL
TO NZL, all queued for NZL. NZL's pull reads JPN's outbox a page of 500 at a time (the
default ``limit``). For each page, the median of ``--repeats`` runs of:

- the peer, ``page``: what every pull of that page does anyway, reading the page
  (``Store.released_after``) and taking the release decision on it
  (``Federation.outgoing``);
- ``passed``: ``Federation.passed_definitions`` on the objects that go, the marking-
  definitions the cursor passed that go only with these objects (docs/federation.md).
  Only the first page holds the definition; every later page cites one it does not hold,
  so each asks the store of it and finds it is owed nothing (it went on its own label).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from federation import rounded  # noqa: E402
from intelpact.services.publish import MarkingRequest  # noqa: E402

from helpers import make_node, pin_each_other  # noqa: E402

BUNDLE = ROOT / "tests" / "data" / "stix" / "attack-ics" / "ics-attack-18.1.json"
PAGE = 500


def median_ms(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def run(base: Path, repeats: int) -> dict[str, Any]:
    jpn, nzl = make_node(base / "jpn", "JPN"), make_node(base / "nzl", "NZL")
    pin_each_other(jpn, nzl)
    jpn.people.add("publisher", party="JPN", clearance="機密", roles=["publisher"])
    who = jpn.people.as_person("publisher").person
    objects = json.loads(BUNDLE.read_text())["objects"]
    status = jpn.publisher.publish(who, jpn.default_collection().collection_id, objects,
                                   marking=MarkingRequest("秘", ("NZL",), ()))
    assert status.body["failure_count"] == 0, status.body
    fed, held = jpn.federation, jpn.federation.held_consents()

    def page(after: int) -> list[Any]:
        rows = jpn.store.released_after("NZL", after, PAGE)
        return [row for _, row in fed.outgoing("NZL", rows, held)[0]]

    pages: list[tuple[int, list[Any]]] = []
    after = 0
    while rows := jpn.store.released_after("NZL", after, PAGE):
        pages.append((after, page(after)))
        after = rows[-1][0]
    out: dict[str, Any] = {"objects": len(objects), "pages": []}
    for after, going in pages:
        assert fed.passed_definitions("NZL", going, held) == []
        page_ms = median_ms(lambda: page(after), repeats)  # noqa: B023
        passed_ms = median_ms(lambda: fed.passed_definitions("NZL", going, held),  # noqa: B023
                              repeats)
        out["pages"].append({"rows": len(going), "page_ms": page_ms, "passed_ms": passed_ms,
                             "passed_to_page_ratio": passed_ms / page_ms})
        print(f"page of {len(going):>3}: read and decided {page_ms:6.2f} ms, passed "
              f"definitions {passed_ms:5.2f} ms (×{passed_ms / page_ms:.2f} of the page)")
    later = out["pages"][1:] or out["pages"]
    out["passed_to_page_ratio_later_pages"] = statistics.median(
        p["passed_to_page_ratio"] for p in later)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=30,
                        help="timed runs of each step per page (default 30; the median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="intelpact-bench-pull-") as tmp:
        out = run(Path(tmp), args.repeats)
    print(json.dumps(rounded({"bench": "pull", **out})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
