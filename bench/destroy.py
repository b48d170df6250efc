"""Benchmark: the destruction a termination that says destroy requires.

Run: .venv/bin/python bench/destroy.py [--objects N] [--backends sqlite,postgresql]

NZL publishes N indicators (default 5,000) SECRET releasable to JPN, and pushes them to
JPN (through JPN's federation listener on 127.0.0.1). Then JPN destroys everything it
received (``Controls.destroy_received``): timed, the whole call. It is a transaction of
DESTROY_BATCH objects at a time (``Store.purge_chosen``), then a last one that reads the
whole store again; each holds the store's write lock, and every other write of the node
waits: the longest batch and the last pass are timed apart (``longest_batch_s``,
``final_s``). The peer, in the same run: the same on a pair of nodes with a tenth as many
objects (at least 100); ``scaling`` is the time an object took at N over the time it took
there (1.0: the cost grows as the objects do, no faster). On PostgreSQL the server is
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


def destroyed(work: Path, database: str | None, objects: int) -> dict[str, Any]:
    """JPN destroys the ``objects`` indicators (and the marking) NZL pushed it: the whole
    call timed, and each of its transactions."""
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
        took: list[float] = []  # each purge_chosen: a transaction, the write lock held
        purge_chosen = jpn.store.purge_chosen

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return purge_chosen(*args, **kwargs)
            finally:
                took.append(time.monotonic() - start)

        jpn.store.purge_chosen = timed  # type: ignore[method-assign]
        start = time.monotonic()
        count = jpn.controls.destroy_received("bench") or 0
        whole = time.monotonic() - start
        return {"pushed": sent, "destroyed": count, "destroy_s": whole,
                "per_s": count / whole, "per_object_ms": 1000 * whole / count,
                "final_s": took[-1], "longest_batch_s": max(took[:-1], default=0.0),
                "transactions": len(took)}
    finally:
        jpn.close()
        nzl.close()


def run(work: Path, database: str | None, objects: int) -> dict[str, Any]:
    """The destruction of ``objects`` and, first, its peer's of a tenth as many, on nodes
    of their own (on PostgreSQL, the peer's JPN in a database of its own on the same
    server)."""
    fewer = max(100, objects // 10)
    (work / "peer").mkdir()
    peer = destroyed(work / "peer", pgserver.Server(database.rsplit("/", 1)[0] + "/postgres")
                     .database() if database else None, fewer)
    figures = destroyed(work, database, objects)
    return {**figures, "peer_objects": fewer, "peer_destroy_s": peer["destroy_s"],
            "peer_per_object_ms": peer["per_object_ms"],
            "scaling": figures["per_object_ms"] / peer["per_object_ms"]}


def main() -> int:
    return pgserver.main_by_backend(__doc__ or "", 5_000, "intelpact-destroy-", run)


if __name__ == "__main__":
    sys.exit(main())
