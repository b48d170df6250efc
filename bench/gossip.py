"""Benchmark: witnessing a partner's checkpoint when many of its checkpoints are kept.

Run: .venv/bin/python bench/gossip.py [--held 1000,100000,1000000]
                                      [--backends sqlite,postgresql]

A node keeps every checkpoint of a partner's log it witnesses (gossip, every round), and
a busy partner signs one every 10 seconds: 8,640 a day, about 3 million a year. Each
witness judges the new checkpoint under the store's write lock, which every audited
read's append waits for. For each count of checkpoints held (``--held``), timed:

- ``witness``: ``Store.add_partner_checkpoint`` with the judgment ``AuditLog.witness``
  makes (``_conflict``: the held checkpoint of the same size, and the largest), reading
  only those through ``HeldCheckpoints``, by the table's key;
- the peer, ``witness (all)``: the same, the judgment given every checkpoint held, as
  before (the list read in the transaction, then searched);
- ``largest``: the largest held, as ``Courier.partner_audit`` asks for it before each
  page (``Store.partner_size``), against the peer's ``max`` over every one;
- ``count``: how many are held, as the console's desk shows it for every partner on every
  load (``Store.count_partner_checkpoints``: a tally kept as each is kept, migration
  0034), against the peer's ``COUNT(*)`` over the rows, as the desk counted before.

The consistency proof is left out (the same in both: it is the reads that differ), so
each judgment finds the new checkpoint unproven and keeps it all the same. The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgserver  # noqa: E402
from intelpact.services.audit import _conflict  # noqa: E402
from intelpact.store import Store, open_store  # noqa: E402
from intelpact.store.base import HeldCheckpoints, PartnerCheckpoint  # noqa: E402
from intelpact.store.sqlite import SQLiteStore  # noqa: E402

PARTY = "NZL"
NOTE = ("intelpact/NZL/audit\n{size}\n" + "A" * 43 + "=\n\n"
        "\u2014 intelpact/NZL/audit " + "B" * 86 + "==\n")
INSERT = 50_000  # checkpoints written per transaction while filling


def fill(store: Store, start: int, stop: int) -> None:
    """Checkpoints of sizes start..stop-1, as gossip keeps them, and counted."""
    lite = isinstance(store, SQLiteStore)
    mark = "?" if lite else "%s"
    for at in range(start, stop, INSERT):
        rows = [(PARTY, size, os.urandom(32), NOTE.format(size=size),
                 "2026-12-01T00:00:00.000000Z") for size in range(at, min(stop, at + INSERT))]
        with store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - bulk fill
            cur = c if lite else c.cursor()
            cur.executemany("INSERT INTO partner_checkpoints (party, size, root, note, "
                            "received) VALUES " + ", ".join([mark] * 5).join("()"), rows)
            cur.execute("INSERT INTO partner_checkpoint_tally (party, kept) VALUES "  # noqa: S608
                        f"({mark}, {mark}) ON CONFLICT (party) DO UPDATE SET kept = "
                        f"partner_checkpoint_tally.kept + {mark}", (PARTY, len(rows), len(rows)))


def count_all(store: Store) -> int:
    """The peer of ``count``: the rows counted, as the desk did before migration 0034."""
    if isinstance(store, SQLiteStore):
        return int(store._conn().execute(  # noqa: SLF001
            "SELECT COUNT(*) FROM partner_checkpoints WHERE party = ?", (PARTY,)).fetchone()[0])
    return int(store._all(  # type: ignore[attr-defined]  # noqa: SLF001
        "SELECT COUNT(*) FROM partner_checkpoints WHERE party = %s", (PARTY,))[0][0])


def old_conflict(held: list[PartnerCheckpoint], size: int, root: bytes) -> str | None:
    """The judgment before HeldCheckpoints: over the list of every checkpoint held."""
    for h_size, h_root, _, _ in held:
        if h_size == size and h_root != root:
            return "two roots"
    largest = max(held, default=None, key=lambda h: h[0])
    if largest is None or largest[0] == size:
        return None
    return "unproven" if largest[0] < size else "shrank"


def median_ms(op: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        t = time.perf_counter()
        op(i)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def run(store: Store, held: int, repeats: int) -> dict[str, float]:
    top = [held + 1]  # the next size to witness

    def witness(i: int) -> None:
        size = top[0]
        top[0] += 1

        def judge(kept: HeldCheckpoints) -> None:
            _conflict(PARTY, kept, size, os.urandom(32), None)

        store.add_partner_checkpoint(PARTY, size, os.urandom(32), NOTE.format(size=size),
                                     "t", judge)

    def witness_all(i: int) -> None:
        size = top[0]
        top[0] += 1

        def judge(kept: HeldCheckpoints) -> None:
            old_conflict(store.partner_checkpoints(PARTY), size, os.urandom(32))

        store.add_partner_checkpoint(PARTY, size, os.urandom(32), NOTE.format(size=size),
                                     "t", judge)

    slow = max(3, min(repeats, 2_000_000 // max(held, 1)))  # the peer: a few at 1,000,000
    return {
        "witness_ms": median_ms(witness, repeats),
        "witness_all_ms": median_ms(witness_all, slow),
        "largest_ms": median_ms(lambda i: store.partner_size(PARTY), repeats),
        "largest_all_ms": median_ms(
            lambda i: max((h[0] for h in store.partner_checkpoints(PARTY)), default=0), slow),
        "count_ms": median_ms(lambda i: store.count_partner_checkpoints(PARTY), repeats),
        "count_all_ms": median_ms(lambda i: count_all(store), slow),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held", default="1000,100000,1000000",
                        help="comma-separated counts of checkpoints held")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--backends", default="sqlite",
                        help="comma-separated: sqlite, postgresql (default sqlite)")
    parser.add_argument("--tmp", help="a directory for the stores (default: the system's)")
    args = parser.parse_args()
    counts = sorted(int(n) for n in args.held.split(","))
    results: dict[str, Any] = {"bench": "gossip", "held": counts}
    print(f"{'backend':>10} {'held':>10} {'witness ms':>11} {'all (peer)':>11} {'ratio':>7} "
          f"{'largest ms':>11} {'all (peer)':>11} {'count ms':>9} {'rows (peer)':>11}",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="intelpact-gossip-", dir=args.tmp) as tmp:
        for backend, database in pgserver.databases(args.backends, args.tmp):
            store = open_store(database or str(Path(tmp) / f"{backend}.db"))
            results[backend] = {}
            filled = 1
            for held in counts:
                fill(store, filled, held + 1)
                filled = held + 1
                got = run(store, held, args.repeats)
                filled += args.repeats + max(3, min(args.repeats, 2_000_000 // held))
                got["ratio"] = got["witness_all_ms"] / got["witness_ms"]
                assert store.count_partner_checkpoints(PARTY) == count_all(store)
                results[backend][str(held)] = {k: round(v, 3) for k, v in got.items()}
                print(f"{backend:>10} {held:>10,} {got['witness_ms']:>11.2f} "
                      f"{got['witness_all_ms']:>11.2f} {got['ratio']:>6.0f}x "
                      f"{got['largest_ms']:>11.3f} {got['largest_all_ms']:>11.2f} "
                      f"{got['count_ms']:>9.3f} {got['count_all_ms']:>11.2f}", flush=True)
            store.close()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
