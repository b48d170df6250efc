"""Benchmark: what one durable write costs on this disk, the floor under an audited read.

Run: .venv/bin/python bench/fsync.py [--dir DIR] [--writes N] [--gaps MS,MS]

Every audited read waits for its event to be durable (docs/audit.md). This measures,
in DIR (default: a temporary directory beside the node directories of the other
benchmarks), the median time of three ways to make ~300 bytes durable:

- the node's way: one SQLite transaction in WAL mode with synchronous=FULL (the peer);
- pwrite + fdatasync on a preallocated file (what an append-only journal would do);
- a 4 KiB O_DIRECT | O_DSYNC write (the device's flush, about the least possible).

Each way is measured back to back, and again with a pause before each write (``--gaps``,
default 0 and 5 ms): a single client's audited reads come several milliseconds apart,
and on a virtual disk an isolated flush can cost several times what a flush right
after another does. The last line printed is one JSON object with the results and the
ratios of the SQLite commit to each.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RECORD = b"x" * 300
PREALLOCATED = 1 << 24


def median_us(op: Callable[[int], object], n: int, gap: float = 0.0) -> float:
    """The median time of ``op``, each call ``gap`` seconds after the last ended."""
    times = []
    for i in range(n):
        if gap:
            time.sleep(gap)
        start = time.perf_counter()
        op(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def sqlite_commit(where: Path, n: int, gap: float) -> float:
    conn = sqlite3.connect(where / "bench.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (x BLOB)")

    def commit(_: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (RECORD,))
        conn.execute("COMMIT")

    try:
        return median_us(commit, n, gap)
    finally:
        conn.close()


def preallocated(where: Path) -> int:
    fd = os.open(where / "journal", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"\0" * PREALLOCATED)
    os.fsync(fd)
    return fd


def fdatasync_write(where: Path, n: int, gap: float) -> float:
    fd = preallocated(where)

    def write(i: int) -> None:
        os.pwrite(fd, RECORD, (i * 512) % PREALLOCATED)
        os.fdatasync(fd)

    try:
        return median_us(write, n, gap)
    finally:
        os.close(fd)


def direct_dsync_write(where: Path, n: int, gap: float) -> float | None:
    os.close(preallocated(where))
    try:
        fd = os.open(where / "journal", os.O_RDWR | os.O_DSYNC | os.O_DIRECT)
    except OSError:  # a file system without O_DIRECT (tmpfs)
        return None
    block = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT needs
    block.write(RECORD.ljust(4096, b"\0"))
    try:
        return median_us(lambda i: os.pwrite(fd, block, (i * 4096) % PREALLOCATED), n, gap)
    finally:
        os.close(fd)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to write")
    parser.add_argument("--writes", type=int, default=500, help="durable writes per way")
    parser.add_argument("--gaps", default="0,5",
                        help="milliseconds of pause before each write, one run each "
                        "(default: 0,5)")
    args = parser.parse_args()
    runs: dict[str, dict[str, float | None]] = {}
    for gap_ms in [float(g) for g in args.gaps.split(",") if g]:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            where, gap = Path(tmp), gap_ms / 1000
            commit = sqlite_commit(where, args.writes, gap)
            synced = fdatasync_write(where, args.writes, gap)
            direct = direct_dsync_write(where, args.writes, gap)
        runs[f"{gap_ms:g}"] = {"sqlite_commit_us": round(commit, 1),
                               "fdatasync_us": round(synced, 1),
                               "direct_dsync_us": None if direct is None else round(direct, 1)}
        print(f"{gap_ms:g} ms between writes:")
        print(f"  SQLite commit (WAL, synchronous=FULL)   {commit:8.1f} µs")
        print(f"  pwrite + fdatasync, preallocated        {synced:8.1f} µs")
        print("  4 KiB O_DIRECT|O_DSYNC write            "
              + (f"{direct:8.1f} µs" if direct is not None else "  not available here"))
    first = next(iter(runs.values()))  # the first gap (0 by default): the headline figures
    ratio_synced = _ratio(first["sqlite_commit_us"], first["fdatasync_us"])
    ratio_direct = _ratio(first["sqlite_commit_us"], first["direct_dsync_us"])
    result = {"bench": "fsync", "dir": str(args.dir or tempfile.gettempdir()),
              "writes": args.writes, **first, "ratio_sqlite_to_fdatasync": ratio_synced,
              "ratio_sqlite_to_direct": ratio_direct, "by_gap_ms": runs}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
