"""Benchmark: the destruction a termination that says destroy requires.

Run: .venv/bin/python bench/destroy.py [--objects N] [--backends sqlite,postgresql]

NZL publishes N indicators (default 5,000) SECRET releasable to JPN, and pushes them to
JPN (through JPN's federation listener on 127.0.0.1). Then JPN destroys everything it
received (``Controls.destroy_received``): timed, the whole call. Since it is one write
transaction (``Store.purge_chosen``), that time is also how long the store's write lock
is held, and every other write of the node waits. On PostgreSQL the server is
bench/pgserver.py's (durable settings). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "services"))

from test_federation import pair, people, push  # noqa: E402

import pgserver  # noqa: E402
from intelpact.services.publish import MarkingRequest  # noqa: E402

from helpers import indicator, make_node, serving_federation  # noqa: E402

BATCH = 1_000  # indicators published at a time


def run(work: Path, database: str | None, objects: int) -> dict[str, Any]:
    jpn = make_node(work / "jpn", "JPN", database=database)
    nzl = make_node(work / "nzl", "NZL")
    try:
        for node in (jpn, nzl):
            people(node)
        pair(jpn, nzl)
        who = nzl.people.as_person("officer").person
        cid = nzl.default_collection().collection_id
        for first in range(0, objects, BATCH):
            batch = [indicator(f"bench {n}") for n in range(first, min(objects, first + BATCH))]
            status = nzl.publisher.publish(who, cid, batch,
                                           marking=MarkingRequest("SECRET", ("JPN",)))
            if status.body["failure_count"]:
                raise RuntimeError(json.dumps(status.body["failures"][:3])[:300])
        with serving_federation(jpn):
            sent = push(nzl, "JPN")
        start = time.monotonic()
        destroyed = jpn.controls.destroy_received("bench")
        took = time.monotonic() - start
        return {"pushed": sent, "destroyed": destroyed or 0, "destroy_s": took,
                "per_s": (destroyed or 0) / took}
    finally:
        jpn.close()
        nzl.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=5_000)
    parser.add_argument("--backends", default="sqlite",
                        help="comma-separated: sqlite, postgresql (default sqlite)")
    parser.add_argument("--tmp", help="a directory for the nodes (default: the system's)")
    args = parser.parse_args()
    results: dict[str, Any] = {"objects": args.objects}
    with tempfile.TemporaryDirectory(prefix="intelpact-destroy-", dir=args.tmp) as tmp:
        for backend, database in pgserver.databases(args.backends, args.tmp):
            work = Path(tmp) / backend
            work.mkdir()
            results[backend] = run(work, database, args.objects)
            print(f"{backend}: " + ", ".join(f"{k} {v:.2f}" for k, v
                                             in results[backend].items()), flush=True)
    print(json.dumps({k: ({m: round(x, 3) for m, x in v.items()} if isinstance(v, dict)
                          else v) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
