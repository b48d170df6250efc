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

import json
import sys
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
    return pgserver.main_by_backend(__doc__ or "", 5_000, "intelpact-destroy-", run)


if __name__ == "__main__":
    sys.exit(main())
