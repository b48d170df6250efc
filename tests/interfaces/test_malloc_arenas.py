"""The server caps glibc's malloc arenas (interfaces/server.py, cap_malloc_arenas): with
one arena per contending thread, the soak's servers grew about 2 MB a minute while
their Python heap stayed flat (docs/reliability.md). Each case runs in a process of its
own, since the cap holds for the process that sets it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Sixteen threads read SQLite at once (SQLite allocates with the GIL released, so the
# threads contend for malloc), then glibc's malloc_stats() names each arena on stderr.
WORKLOAD = textwrap.dedent("""
    import ctypes, os, sqlite3, sys, threading
    from intelpact.interfaces.server import cap_malloc_arenas
    print(cap_malloc_arenas() if sys.argv[1] == "cap" else None)
    path = sys.argv[2]
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (a TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [("x" * 200,)] * 20000)
    db.commit()

    def work():
        conn = sqlite3.connect(path)
        for _ in range(6):
            conn.execute("SELECT a, length(a) FROM t ORDER BY a DESC").fetchall()

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.stdout.flush()
    ctypes.CDLL(None).malloc_stats()
""")


def run(tmp_path: Path, mode: str, **env: str) -> tuple[str, int]:
    """(what cap_malloc_arenas returned, how many arenas malloc used)."""
    done = subprocess.run([sys.executable, "-c", WORKLOAD, mode, str(tmp_path / f"{mode}.db")],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items()
                               if k != "MALLOC_ARENA_MAX"} | env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), sum(line.startswith("Arena ")
                                    for line in done.stderr.splitlines())


@pytest.fixture(autouse=True)
def glibc() -> None:
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    if not libc.startswith("glibc"):
        pytest.skip("malloc arenas are glibc's")


def test_capped_threads_share_two_arenas_where_uncapped_ones_take_many(
        tmp_path: Path) -> None:
    said, capped = run(tmp_path, "cap")
    assert said == "True" and 1 <= capped <= 2, (said, capped)
    said, uncapped = run(tmp_path, "free")
    assert said == "None" and uncapped > 2, uncapped  # the workload does contend


def test_an_operators_malloc_arena_max_is_left_to_decide(tmp_path: Path) -> None:
    said, arenas = run(tmp_path, "cap", MALLOC_ARENA_MAX="4")
    assert said == "False" and arenas <= 4, (said, arenas)
