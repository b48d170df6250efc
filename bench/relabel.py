"""Benchmark: the stored labels worked out again under an amended agreement.

Run: .venv/bin/python bench/relabel.py [--objects N] [--backends sqlite,postgresql]

A fresh JPN node (TLS off) is loaded with N indicators (default 100,000) through the
publisher, each marked 指定なし releasable to NZL and TLP:AMBER. Then jpn-nzl version
1.1 of tests/services/test_relabel.py is pinned: it maps TLP:AMBER to SENSITIVE, so
every indicator's labels change row. Timed, each the whole ``Node.open``:

- ``amended``: the first open after the pin: every version's labels worked out again and
  written (services/relabel.py);
- ``upgraded``: the open of a store whose labels' text is not recorded (as one from
  before migration 0021): every version worked out again, none written;
- ``same``: an open under the text recorded: nothing to do.

On PostgreSQL the server is bench/pgserver.py's (durable settings). The last line
printed is one JSON object.
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

from test_relabel import TLP_AMBER, amended  # noqa: E402

import pgserver  # noqa: E402
from intelpact.services.node import Node  # noqa: E402
from intelpact.services.publish import MarkingRequest  # noqa: E402

from helpers import indicator, make_node  # noqa: E402

BATCH = 10_000  # indicators published at a time


def timed_open(path: Path) -> tuple[Node, float]:
    start = time.monotonic()
    node = Node.open(path)
    return node, time.monotonic() - start


def run(work: Path, database: str | None, objects: int) -> dict[str, Any]:
    node = make_node(work / "jpn", "JPN", database=database)
    node.people.add("officer", party="JPN", clearance="機密", roles=["publisher"])
    who = node.people.as_person("officer").person
    cid = node.default_collection().collection_id
    start = time.monotonic()
    for first in range(0, objects, BATCH):
        batch = [indicator(f"bench {n}", object_marking_refs=[TLP_AMBER])
                 for n in range(first, min(objects, first + BATCH))]
        status = node.publisher.publish(who, cid, batch,
                                        marking=MarkingRequest("指定なし", ("NZL",)))
        if status.body["failure_count"]:
            raise RuntimeError(json.dumps(status.body["failures"][:3])[:300])
    loaded = time.monotonic() - start
    node.pin_agreement(amended(work), reason="bench")
    node.close()
    node, amend = timed_open(work / "jpn")
    with node.store._write() as c:  # noqa: SLF001 - as a store from before migration 0021
        c.execute("DELETE FROM labels_agreement")
    node.close()
    node, upgrade = timed_open(work / "jpn")
    node.close()
    node, same = timed_open(work / "jpn")
    node.close()
    return {"load_s": loaded, "amended_s": amend, "upgraded_s": upgrade, "same_s": same,
            "amended_per_s": objects / amend}


def main() -> int:
    return pgserver.main_by_backend(__doc__ or "", 100_000, "intelpact-relabel-", run)


if __name__ == "__main__":
    sys.exit(main())
