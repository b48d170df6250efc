"""Faults on PostgreSQL (issue 8): a full disk, and SIGKILL with several TAXII workers.

Each test runs real `intelpact serve` processes (tests/served.py) on a node whose
store is PostgreSQL, reads the database directly, and runs the real `intelpact
audit verify`; after every fault the checks of test_faults.py run (everything
acknowledged stored exactly once, statuses, outbox, publish events, the log). The
full-disk tests start a PostgreSQL server of their own (tests/pg.py,
``own_cluster``) with part of it on a small tmpfs, since filling a disk (or
crashing the server) must not disturb the session's server; the workers tests use
a database on the session's server. They choose PostgreSQL themselves, so they run
in the ordinary pass, and skip (saying why) only when PostgreSQL is not installed
(or, not as root, when a tmpfs cannot be mounted).

- A full tablespace: the node's tables and indexes are on a 4 MiB tmpfs, its WAL
  is not. An insert that cannot extend a table fails with SQLSTATE 53100: the node
  answers 507 ``store-full`` and the CLI says the same, nothing is half stored, and
  once the filesystem is larger the same envelope is accepted, without a restart.
- A full pg_wal: PostgreSQL cannot write WAL and PANICs (the session that hit it is
  sent 53100 first); the server restarts, its crash recovery cannot write WAL either,
  and it shuts down. The request that met it is answered 507 (the PANIC was in its
  own session) or 503 ``store-unavailable`` (another session's: its connection was
  cut), and every request until PostgreSQL is back is a 503. Once there is room and
  PostgreSQL is started again, the node goes on without a restart, and nothing
  acknowledged is lost.
- SIGKILL of one TAXII worker (``--workers 2``) while clients publish: uvicorn's
  supervisor starts another; and SIGKILL of the whole process group, then a restart.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from test_faults import Load, assert_node_consistent, successes

import pg
from served import Pair, assert_exactly_once_and_drained, bulk, indicators, keys, marking, wait_for

# The tmpfs mounts this run made (small_filesystem), each checked unmounted when its test
# ends: another run's on this machine, in a folder named alike (intelpact-pg-*), are not
# this run's to judge.
_MOUNTED: list[Path] = []


def small_filesystem(server: pg.Cluster, name: str, size: str) -> Path:
    """A tmpfs of ``size`` at ``name`` in the server's folder, the server's own,
    unmounted when the server stops (Cluster.cleanups)."""
    assert server.root is not None
    where = server.root / name
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(where)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        reason = (f"cannot mount a tmpfs at {where} ({done.stderr.strip()}): the PostgreSQL "
                  "full-disk tests need one, a filesystem that really fills (run them as "
                  "root, as CI does)")
        if os.geteuid() != 0:  # a developer's own account; CI runs them as root
            print(f"SKIPPED: {reason}")
            pytest.skip(reason)
        raise AssertionError(reason)  # as root: these tests are the only evidence
    _MOUNTED.append(where.resolve())  # as /proc/mounts names it
    server.cleanups.append(lambda: subprocess.run(["umount", "-l", str(where)], check=False))
    server.give(where)
    return where


def free_kib(where: Path) -> int:
    stat = os.statvfs(where)
    return stat.f_bavail * stat.f_frsize // 1024


def grow(where: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def pair_on(base: Path, url: str) -> Pair:
    """A served pair whose JPN node keeps its store in ``url`` (as a with block: every
    process it started is killed at the end, whatever happens)."""
    return Pair(base, databases={"JPN": url})


def fill(pair: Pair, tag: str, envelopes: int = 400, size: int = 150
         ) -> tuple[set[tuple[str, str]], list[dict[str, Any]], httpx.Response]:
    """Publish envelopes at JPN until one is not accepted: (what was acknowledged,
    the refused envelope's objects, the refusal)."""
    mark = marking("JPN", "秘", ("NZL",))
    acknowledged: set[tuple[str, str]] = set()
    for i in range(envelopes):
        batch = indicators(size, mark["id"], f"{tag} {i} " + "x" * 400)
        answer = pair.post("JPN", [mark, *batch], timeout=90)
        if answer.status_code != 202:
            return acknowledged, batch, answer
        acknowledged |= successes(answer)
    raise AssertionError(f"the disk never filled ({len(acknowledged)} objects stored)")


def assert_store_full(answer: httpx.Response) -> str:
    """A 507 in TAXII's error shape, ``store-full``, saying what is full and the fix."""
    assert answer.status_code == 507, answer.text[:500]
    assert answer.headers["content-type"].startswith("application/taxii+json")
    error = answer.json()
    assert error["title"] == "Insufficient Storage" and error["http_status"] == "507"
    assert error["error_code"] == "store-full"
    text: str = error["description"]
    assert text.startswith("the PostgreSQL store cannot grow: "), text
    full = "No space left on device: a disk of the database server is full"
    assert (f"{full}\nHint: free space on the disk" in text
            or f"{full}{STATUS_LOST}\nHint: free space on the disk" in text), text
    assert text.endswith("'already stored'"), text
    return text


# the envelope's one transaction went in, and then its status resource found no room
STATUS_LOST = "; every object was stored, but not the status resource"


def assert_unavailable(answer: httpx.Response) -> str:
    """A 503 in TAXII's error shape, ``store-unavailable``, naming the server."""
    assert answer.status_code == 503, answer.text[:500]
    assert answer.headers["content-type"].startswith("application/taxii+json")
    error = answer.json()
    assert error["title"] == "Service Unavailable" and error["http_status"] == "503"
    assert error["error_code"] == "store-unavailable"
    text: str = error["description"]
    assert text.startswith("the PostgreSQL server at postgresql://postgres@127.0.0.1:"), text
    assert "cannot be reached or went away" in text, text
    assert "Hint: check that the database server runs and has room" in text, text
    return text


def all_or_nothing(pair: Pair, refused: list[dict[str, Any]]) -> str:
    """The refused envelope (one transaction) was stored entirely or not at all."""
    stored = keys(refused) & set(pair.rows("JPN"))
    if stored:
        assert stored == keys(refused), f"{len(stored)} of {len(refused)} half stored"
        return "all"
    return "none"


# -- a full tablespace: SQLSTATE 53100 -------------------------------------------------------

def test_a_full_tablespace_is_507_and_corrupts_nothing(tmp_path: Path) -> None:
    with pg.own_cluster() as server:
        small = small_filesystem(server, "small", "4m")
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f"CREATE TABLESPACE small LOCATION '{small}'")
        url = server.database_in("small", "full")
        print(f"full disk by: the node's tables on a 4 MiB tmpfs tablespace "
              f"({free_kib(small)} KiB free after the schema)")
        with pair_on(tmp_path, url) as pair:
            pair.start("JPN")
            acknowledged, refused, answer = fill(pair, "filling")
            text = assert_store_full(answer)
            print(f"after {len(acknowledged)} objects: {text}")
            assert "could not extend file" in text, text
            assert all_or_nothing(pair, refused) == ("all" if STATUS_LOST in text else "none")
            # the command line says the same, in one line and a hint (exit status 2)
            bundle = tmp_path / "more.json"
            more = indicators(150, "x", "by the command line " + "y" * 400)
            for o in more:
                del o["object_marking_refs"]
            bundle.write_text(json.dumps({"type": "bundle", "id": "bundle--"
                                          "2f1ad9b2-6a0e-4f6b-8d84-8a35f7a5c0a1",
                                          "objects": more}))
            done = pair.cli("JPN", "publish", str(pair.dirs["JPN"]), str(bundle), "--as",
                            "officer", "--classification", "秘", "--rel", "NZL", check=False)
            print(f"the command line: exit {done.returncode}: {done.stderr.strip()}")
            assert done.returncode == 2, (done.stdout, done.stderr)
            error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            assert len(error) == 1 and "the PostgreSQL store cannot grow: could not extend " \
                "file" in error[0] and error[0].endswith("a disk of the database server is "
                                                         "full"), done.stderr
            assert "\nhint: free space on the disk" in done.stderr
            assert "error ignored" not in done.stderr  # psycopg's noise (store/postgres.py)
            assert not keys(more) & set(pair.rows("JPN"))
            # a read is audited first; with no room for its event, nothing is served
            read = httpx.get(pair.taxii["JPN"], headers=pair.headers("JPN"), timeout=30,
                             trust_env=False)
            assert read.status_code in (200, 507), read.text[:300]
            print(f"a read meanwhile: {read.status_code}")
            # room again, while the node and the server run: the same envelope goes in
            grow(small, "64m")
            mark = marking("JPN", "秘", ("NZL",))
            acknowledged |= successes(pair.post("JPN", [mark, *refused]))
            acknowledged |= successes(pair.post("JPN", [mark, *indicators(50, mark["id"],
                                                                          "after")]))
            assert_node_consistent(pair, "JPN", acknowledged, "NZL")
            assert "PANIC" not in server.log()


# -- a full pg_wal: PostgreSQL stops ---------------------------------------------------------

WAL_SETTINGS = ("-c max_wal_size=1GB -c min_wal_size=2MB -c checkpoint_timeout=1h "
                "-c restart_after_crash=on")


def test_a_full_wal_stops_postgresql_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    def wal_on_tmpfs(server: pg.Cluster) -> None:
        small_filesystem(server, "wal", "64m")

    with pg.own_cluster(prepare=wal_on_tmpfs, settings=WAL_SETTINGS,
                        initdb=("--waldir={root}/wal/pg_wal", "--wal-segsize=1")) as server:
        assert server.root is not None
        wal = server.root / "wal"
        url = server.database("wal")
        with pair_on(tmp_path, url) as pair:
            pair.start("JPN")
            # JPN's courier releases to NZL throughout; NZL's every retry is logged
            pair.start("NZL", env={"INTELPACT_LOG_LEVEL": "debug"})
            with psycopg.connect(server.url, autocommit=True) as conn:
                conn.execute("CHECKPOINT")  # no checkpoint again: the WAL only grows
            # the rest of the disk is taken by something else: 3 MiB are left for WAL
            ballast = wal / "ballast"
            subprocess.run(["dd", "if=/dev/zero", f"of={ballast}", "bs=1k",
                            f"count={free_kib(wal) - 3072}"], capture_output=True, check=True)
            acknowledged, refused, answer = fill(pair, "filling the WAL")
            # 507 when the PANIC was in this request's own session (PostgreSQL sends
            # 53100 first), 503 when another session's was (the audit integrator's, the
            # courier's) and this one's connection was cut
            print(f"after {len(acknowledged)} objects: {answer.status_code} "
                  f"{answer.json().get('description')}")
            if answer.status_code == 507:
                assert "could not write to file \"pg_wal/" in assert_store_full(answer)
            else:
                assert_unavailable(answer)
            wait_for(lambda: not server.running(), 30, "PostgreSQL to stop")
            log = server.log()
            print("PostgreSQL:\n" + "\n".join(
                line for line in log.splitlines()
                if "PANIC" in line or "FATAL:  could not write" in line or "shutting" in line))
            assert "PANIC:  could not write to file \"pg_wal/xlogtemp." in log
            assert "shutting down due to startup process failure" in log
            # NZL publishes meanwhile: its courier's deliveries to JPN are not refusals
            tried = pair.log_text("NZL").count("federation with JPN")
            from_nzl = bulk(20, "sent while JPN's database is down", party="NZL")
            pair.publish("NZL", from_nzl)
            # while the database is down: a publish and a read, at once (a broken pooled
            # connection answers at once; else the pool waits its 30 s for a new one)
            started = time.monotonic()
            mark = marking("JPN", "秘", ("NZL",))
            with ThreadPoolExecutor(2) as pool:
                publish = pool.submit(pair.post, "JPN", [mark, *indicators(5, mark["id"],
                                                                           "down")], 90)
                read = pool.submit(httpx.get, pair.taxii["JPN"], headers=pair.headers("JPN"),
                                   timeout=90, trust_env=False)
                for what, got in (("publish", publish.result()), ("read", read.result())):
                    print(f"a {what} while PostgreSQL is down: {got.status_code} within "
                          f"{time.monotonic() - started:.1f} s: {got.json()['description']}")
                    assert_unavailable(got)
            wait_for(lambda: pair.log_text("NZL").count("federation with JPN") > tried, 40,
                     "NZL to try JPN", pair)
            assert pair.query("NZL", "SELECT max(attempts) FROM outbox WHERE party = 'JPN'"
                              ) == [(0,)]
            # room again, and the server started again (it does not come back by itself);
            # the node reconnects without a restart
            ballast.unlink()
            server.restart()
            # the refused envelope: all or nothing (all: its COMMIT was written before
            # the WAL write that failed, the answer lost, as in any crash at commit)
            print(f"the refused envelope after the restart: stored "
                  f"{all_or_nothing(pair, refused)}")
            for _ in range(10):  # a 503 for each cut connection still in the pool
                again = pair.post("JPN", [mark, *refused], timeout=90)
                if again.status_code != 503:
                    break
            acknowledged |= successes(again)
            print(f"the refused envelope again: "
                  f"{sum(1 for s in again.json()['successes'] if 'already' in s['message'])} "
                  "of its objects already stored")
            assert_node_consistent(pair, "JPN", acknowledged, "NZL")
            # federation goes on both ways: JPN's courier survived the outage
            wait_for(lambda: pair.undelivered("NZL", "JPN") == 0
                     and pair.undelivered("JPN", "NZL") == 0, 60,
                     "both outboxes drained after the outage", pair)
            assert_exactly_once_and_drained(pair, keys(from_nzl), "NZL", "JPN")
            at_nzl = pair.rows("NZL")
            assert all(at_nzl.get(k) == 1 for k in acknowledged), "JPN's release lost or doubled"


# -- several TAXII workers under SIGKILL -----------------------------------------------------

class Traffic(Load):
    """test_faults.Load that also keeps the status id of every 202, and whose posters
    go on when a request fails (a killed worker cuts the connections it held)."""

    def __init__(self, pair: Pair, party: str, tag: str) -> None:
        super().__init__(pair, party, tag)
        self.statuses: list[str] = []
        self.cut = 0

    def _ack(self, response: httpx.Response) -> None:
        super()._ack(response)
        if response.status_code == 202:
            with self.lock:
                self.statuses.append(response.json()["id"])

    def _go_on_after_a_cut(self) -> bool:
        with self.lock:
            self.cut += 1
        time.sleep(0.05)
        return True


def assert_statuses_served(pair: Pair, statuses: list[str]) -> None:
    """Each acknowledged POST's status resource is stored, and served (by whichever
    worker answers) with what its 202 said."""
    stored = {sid for (sid,) in pair.query("JPN", "SELECT status_id FROM statuses")}
    assert set(statuses) <= stored, f"{len(set(statuses) - stored)} statuses lost"
    root = pair.taxii["JPN"].split("/collections/")[0]
    with httpx.Client(headers=pair.headers("JPN"), timeout=30, trust_env=False) as client:
        for sid in statuses:
            got = client.get(f"{root}/status/{sid}/")
            assert got.status_code == 200, got.text[:300]
            body = got.json()
            assert body["status"] == "complete" and body["failure_count"] == 0, body


def test_sigkill_of_a_taxii_worker_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with pair_on(tmp_path, pg.database_url("workers_kill")) as pair:
        pair.start("JPN", workers=2)
        wait_for(lambda: len(pair.workers("JPN")) == 2, 30, "two TAXII workers", pair)
        before = pair.workers("JPN")
        with Traffic(pair, "JPN", "worker killed") as load:
            time.sleep(1.0)
            with load.lock:
                at_kill = len(load.statuses)
            os.kill(before[0], signal.SIGKILL)
            # uvicorn's supervisor notices within its 0.5 s loop and starts another
            wait_for(lambda: len(pair.workers("JPN")) == 2 and pair.workers("JPN") != before,
                     30, "the supervisor to start another worker", pair)
            restarted = time.monotonic()
            wait_for(lambda: len(load.statuses) > at_kill + 6, 30,
                     "more envelopes acknowledged after the kill", pair)
            time.sleep(0.5)
        print(f"worker {before[0]} killed; workers now {pair.workers('JPN')} "
              f"(new one up {time.monotonic() - restarted:.1f} s before the load stopped); "
              f"{len(load.acknowledged)} objects in {len(load.statuses)} envelopes "
              f"acknowledged ({at_kill} envelopes before the kill); {load.cut} requests cut")
        assert pair.procs["JPN"].poll() is None, "the supervisor died"
        assert_statuses_served(pair, load.statuses)
        assert_node_consistent(pair, "JPN", load.acknowledged, "NZL")


def test_sigkill_of_every_worker_and_the_supervisor_loses_nothing_acknowledged(
        tmp_path: Path) -> None:
    with pair_on(tmp_path, pg.database_url("workers_group")) as pair:
        acknowledged: set[tuple[str, str]] = set()
        statuses: list[str] = []
        for round_, delay in enumerate((0.5, 1.5)):
            pair.start("JPN", workers=2)
            with Traffic(pair, "JPN", f"group killed {round_}") as load:
                time.sleep(delay)
                pair.kill("JPN")  # the process group: supervisor and workers at once
            acknowledged |= load.acknowledged
            statuses += load.statuses
            print(f"killed after {delay} s: {len(load.acknowledged)} objects acknowledged")
            pair.start("JPN", workers=2)
            assert_node_consistent(pair, "JPN", acknowledged, "NZL", verify=False)
            assert_statuses_served(pair, statuses)
            # the client sends the big envelope again: the rest is stored, nothing twice
            acknowledged |= successes(pair.post("JPN", [load.mark, *load.big]))
            assert_node_consistent(pair, "JPN", acknowledged | keys(load.big), "NZL")
            pair.kill("JPN")
        assert len(acknowledged) > 1200


def mount_points() -> set[str]:
    """Where a filesystem is mounted now (/proc/mounts, its octal escapes undone)."""
    return {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[1])
            for line in Path("/proc/mounts").read_text().splitlines()}


@pytest.fixture(autouse=True)
def _no_leftover_mounts() -> Iterator[None]:
    """Every tmpfs the test mounted is unmounted by its end (its server stopped); one
    left is unmounted here, and named."""
    yield
    mine, _MOUNTED[:] = _MOUNTED[:], []
    leftover = [str(where) for where in mine if str(where) in mount_points()]
    for where in leftover:
        subprocess.run(["umount", "-l", where], check=False)
    assert not leftover, leftover
