"""Benchmark: what one durable write costs on this disk, the floor under an audited read.

Run: .venv/bin/python bench/fsync.py [--dir DIR] [--writes N]

Every audited read waits for its event to be durable (docs/audit.md). This measures,
in DIR (default: a temporary directory beside the node directories of the other
benchmarks), the median time of three ways to make ~300 bytes durable:

- the node's way: one SQLite transaction in WAL mode with synchronous=FULL (the peer);
- pwrite + fdatasync on a preallocated file (what an append-only journal would do);
- a 4 KiB O_DIRECT | O_DSYNC write (the device's flush, about the least possible).

The last line printed is one JSON object with the results and the ratios of the
SQLite commit to each.
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


def median_us(op: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        start = time.perf_counter()
        op(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def sqlite_commit(where: Path, n: int) -> float:
    conn = sqlite3.connect(where / "bench.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (x BLOB)")

    def commit(_: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?)", (RECORD,))
        conn.execute("COMMIT")

    try:
        return median_us(commit, n)
    finally:
        conn.close()


def preallocated(where: Path) -> int:
    fd = os.open(where / "journal", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"\0" * PREALLOCATED)
    os.fsync(fd)
    return fd


def fdatasync_write(where: Path, n: int) -> float:
    fd = preallocated(where)

    def write(i: int) -> None:
        os.pwrite(fd, RECORD, (i * 512) % PREALLOCATED)
        os.fdatasync(fd)

    try:
        return median_us(write, n)
    finally:
        os.close(fd)


def direct_dsync_write(where: Path, n: int) -> float | None:
    os.close(preallocated(where))
    try:
        fd = os.open(where / "journal", os.O_RDWR | os.O_DSYNC | os.O_DIRECT)
    except OSError:  # a file system without O_DIRECT (tmpfs)
        return None
    block = mmap.mmap(-1, 4096)  # page-aligned, as O_DIRECT needs
    block.write(RECORD.ljust(4096, b"\0"))
    try:
        return median_us(lambda i: os.pwrite(fd, block, (i * 4096) % PREALLOCATED), n)
    finally:
        os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="where to write")
    parser.add_argument("--writes", type=int, default=500, help="durable writes per way")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        where = Path(tmp)
        commit = sqlite_commit(where, args.writes)
        synced = fdatasync_write(where, args.writes)
        direct = direct_dsync_write(where, args.writes)
    print(f"SQLite commit (WAL, synchronous=FULL)   {commit:8.1f} µs")
    print(f"pwrite + fdatasync, preallocated        {synced:8.1f} µs")
    print("4 KiB O_DIRECT|O_DSYNC write            "
          + (f"{direct:8.1f} µs" if direct is not None else "  not available here"))
    result = {"bench": "fsync", "dir": str(args.dir or tempfile.gettempdir()),
              "writes": args.writes, "sqlite_commit_us": round(commit, 1),
              "fdatasync_us": round(synced, 1),
              "direct_dsync_us": None if direct is None else round(direct, 1),
              "ratio_sqlite_to_fdatasync": round(commit / synced, 2),
              "ratio_sqlite_to_direct": None if direct is None else round(commit / direct, 2)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
