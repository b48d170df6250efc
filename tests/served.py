"""Served nodes for fault tests: real `intelpact serve` processes, real mutual TLS, SIGKILL.

Two nodes (JPN, NZL, the sample Japan–New Zealand agreement) live in a temporary
directory, each served by its own ``intelpact serve DIR`` process: the TAXII
API, the mutual-TLS federation listener, the courier and the audit integrator.
Objects are published over TAXII as each node's officer. What a node holds is
read straight from its SQLite file (a concurrent WAL reader), or from its
PostgreSQL database when the pair was made with one for it, so a test sees
exactly the rows the node committed, duplicates included. A node may be served
by several TAXII worker processes (``--workers``), in a process group of its own.

A process may run under a skewed clock (libfaketime, :func:`faketime_env`), or
as a federation listener alone (no courier: what a partner gets then, it pulled).
Every wait is bounded; :meth:`Pair.stop_all` kills every process a test started.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import psycopg

from intelpact.config import write_config
from intelpact.model import load_agreement, national_marking
from intelpact.services.federation import _public, make_card, verify_payload
from intelpact.services.node import Node
from intelpact.services.publish import object_version

from helpers import AGREEMENTS, T0, free_ports, proc_stat

EXE = Path(sys.executable).parent / "intelpact"
TAXII = "application/taxii+json;version=2.1"
AGREEMENT = AGREEMENTS / "jpn-nzl.toml"
PW = "federation-faults-pw"
PARTIES = ("JPN", "NZL")

# The federation listener alone, without the courier (so nothing is pushed).
_FEDERATION_ONLY = """
import sys, uvicorn
from intelpact.interfaces.federation import create_federation_app, federation_server_options
from intelpact.services.node import Node
node = Node.open(sys.argv[1])
uvicorn.run(create_federation_app(node), log_level="warning", **federation_server_options(node))
"""

# -- libfaketime ---------------------------------------------------------------------------

# libfaketime (0.9.10) fakes CLOCK_MONOTONIC but does not intercept sem_clockwait, which
# CPython (3.11+) uses for every timed lock wait with a deadline on that clock: under an
# offset, Event.wait(0.25) would wait the offset in real time. A child under faketime
# therefore runs with Condition.wait (Event, Queue) polling its lock between short
# sleeps (select with a relative timeout: see sleep below). Nothing of intelpact is
# changed: this stands in for the kernel's wait, which cannot see the fake clock.
_POLLED_WAITS = """
import select, sys, threading, time
from _thread import allocate_lock

def sleep(seconds):
    # CPython's time.sleep is clock_nanosleep to an absolute deadline on CLOCK_MONOTONIC,
    # computed from the faked clock; libfaketime translates it back with the offset it
    # reads then, so a sleep that straddles a change of the offset file (or a read of it
    # that saw no offset) failed with EINVAL or slept for the whole offset: an hour,
    # every thread of the node stuck in a 5 ms sleep. select's timeout is relative.
    try:
        select.select([], [], [], max(0.0, seconds))
    except (OSError, ValueError):
        pass

time.sleep = sleep

_monotonic = time.monotonic
_highest = [0.0]

def monotonic():  # said in the log when libfaketime's monotonic clock goes back
    now = _monotonic()
    if now < _highest[0] - 1.0:
        sys.stderr.write(f"faketime: the monotonic clock went back {_highest[0] - now:.1f} s\\n")
    _highest[0] = max(_highest[0], now)
    return now

time.monotonic = monotonic

def _acquire(lock, timeout):
    # ends when the faked clock passes the deadline (a jump forward ends it at once), and
    # in any case once ``timeout`` seconds have really been slept (a jump back does not
    # make it wait for the size of the jump)
    deadline, budget = time.monotonic() + timeout, timeout
    while not lock.acquire(False):
        left = min(deadline - time.monotonic(), budget)
        if left <= 0:
            return False
        step = min(left, 0.005)
        time.sleep(step)
        budget -= step
    return True

def wait(self, timeout=None):  # threading.Condition.wait, with a polled timeout
    if not self._is_owned():
        raise RuntimeError("cannot wait on un-acquired lock")
    waiter = allocate_lock()
    waiter.acquire()
    self._waiters.append(waiter)
    saved = self._release_save()
    got = False
    try:
        if timeout is None:
            waiter.acquire()
            got = True
        else:
            got = _acquire(waiter, timeout) if timeout > 0 else waiter.acquire(False)
        return got
    finally:
        self._acquire_restore(saved)
        if not got:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

threading.Condition.wait = wait
"""
_CLI = """
sys.argv = ["intelpact", *sys.argv[1:]]
from intelpact.interfaces.cli import main
main()
"""

FAKETIME_PATHS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
                  "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
                  "/usr/lib/faketime/libfaketime.so.1",
                  "/usr/local/lib/faketime/libfaketime.so.1")


def faketime_library() -> str | None:
    """The libfaketime shared library (Debian package ``faketime``), or None."""
    return next((p for p in FAKETIME_PATHS if Path(p).is_file()), None)


def faketime_env(*, offset: str | None = None, file: Path | None = None) -> dict[str, str]:
    """Environment that runs a process under a skewed clock: a fixed ``offset``
    ("+4m", "-10m", "+1h"), or the offset in ``file``, re-read while it runs
    (FAKETIME_NO_CACHE), so a test can move the running process's wall and monotonic
    clocks. The caller skips when :func:`faketime_library` is None."""
    lib = faketime_library()
    assert lib is not None, "libfaketime is not installed"
    env = {"LD_PRELOAD": lib, "FAKETIME_DONT_RESET": "1"}
    if file is not None:
        env.update(FAKETIME_TIMESTAMP_FILE=str(file), FAKETIME_NO_CACHE="1")
    else:
        assert offset is not None
        env["FAKETIME"] = offset
    return env


def set_clock(file: Path, offset: str) -> None:
    """Move the clock of the processes running under ``faketime_env(file=file)``.
    Atomically: libfaketime re-reads the file on every clock call, and one that read it
    half-written (empty) would see no offset at all, say between computing a timed
    wait's deadline and waiting for it, and sleep for the whole offset instead."""
    part = file.with_name(file.name + ".part")
    part.write_text(f"{offset}\n")
    os.replace(part, file)


# -- a pair of served nodes ------------------------------------------------------------

class Pair:
    """JPN and NZL node directories with people and each other's cards pinned, and
    the `intelpact serve` processes this test started."""

    def __init__(self, base: Path, dirs: Mapping[str, Path] | None = None,
                 databases: Mapping[str, str] | None = None, *, pool: bool = True,
                 agreement: Path = AGREEMENT,
                 public_hosts: Mapping[str, str] | None = None) -> None:
        """``dirs``: where a node's directory goes (default ``base/jpn``, ``base/nzl``);
        ``databases``: a node's PostgreSQL URL (default: its own SQLite file); ``pool``:
        False serves both nodes without a publication pool (``ingest_processes = 0``,
        as an operator may set it), for a test whose fault is not in publishing large
        envelopes: each `serve` then starts in about a second, not waiting for its
        pool processes to import the validator (tests/services/test_prepare_pool.py
        tests the pool; the fault tests on publishing keep it). ``agreement``: the text
        both nodes are made under (default: the sample's, in force). ``public_hosts``: a
        node given one listens on every interface (``host = "0.0.0.0"``) and its card
        gives partners that host (``init --public-host``)."""
        self.base = base
        self.dirs: dict[str, Path] = {}
        self.databases: dict[str, str] = dict(databases or {})
        self.groups: dict[int, subprocess.Popen[bytes]] = {}  # --workers: pgid → supervisor
        self.taxii: dict[str, str] = {}
        self.fed_port: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.all_procs: list[subprocess.Popen[bytes]] = []
        self.starts: dict[str, int] = {p: 0 for p in PARTIES}
        self.envs: dict[str, dict[str, str]] = {}
        nodes = {}
        for party in PARTIES:
            port, fed = free_ports(2)
            where = (dirs or {}).get(party, base / party.lower())
            public = (public_hosts or {}).get(party)
            node = Node.create(where, party=party, agreement_file=agreement,
                               tls=False, port=port, federation_port=fed,
                               database=self.databases.get(party),
                               **({} if public is None else
                                  {"host": "0.0.0.0", "public_host": public}))  # noqa: S104
            if not pool:
                write_config(dataclasses.replace(node.config, ingest_processes=0))
            top = {"JPN": "機密", "NZL": "TOP SECRET"}[party]
            eyes = {"JPN": ["JPNEO"], "NZL": ["NZEO"]}[party]
            node.people.add("officer", party=party, clearance=top, caveats=eyes,
                            communities=list(node.agreement.communities),
                            roles=["analyst", "publisher", "security-officer"], password=PW)
            self.dirs[party] = node.config.dir
            self.taxii[party] = (f"http://127.0.0.1:{port}/intel/collections/"
                                 f"{node.default_collection().collection_id}/objects/")
            self.fed_port[party] = fed
            nodes[party] = node
        self.tokens = {p: n.people.issue_token("officer", "faults") for p, n in nodes.items()}
        nodes["JPN"].federation.add_peer(make_card(nodes["NZL"].identity))
        nodes["NZL"].federation.add_peer(make_card(nodes["JPN"].identity))
        for node in nodes.values():
            node.close()

    # processes
    def start(self, party: str, *, env: Mapping[str, str] | None = None,
              federation_only: bool = False, fsize: int | None = None,
              workers: int = 1) -> None:
        """Serve ``party`` (under ``env``'s clock, if given; with files limited to
        ``fsize`` bytes, if given; with ``workers`` TAXII processes, in a process
        group of their own) and wait until it answers."""
        assert party not in self.procs or self.procs[party].poll() is not None
        self.starts[party] += 1
        self.envs[party] = dict(env or {})
        log = self.base / f"{party.lower()}-serve-{self.starts[party]}.log"
        if federation_only:
            code = (_POLLED_WAITS if env and "LD_PRELOAD" in env else "") + _FEDERATION_ONLY
            argv = [sys.executable, "-c", code, str(self.dirs[party])]
        else:
            argv = [*_intelpact(env), "serve", str(self.dirs[party])]
            if workers > 1:
                argv += ["--workers", str(workers)]
        limit = None if fsize is None else functools.partial(_limit_files, fsize)
        with log.open("wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONFAULTHANDLER": "1",
                                         **(env or {})}, preexec_fn=limit,
                                    start_new_session=workers > 1)
        self.procs[party] = proc
        self.all_procs.append(proc)
        if workers > 1:
            self.groups[proc.pid] = proc
        self._wait_ready(party, proc, log, taxii=not federation_only)

    def _wait_ready(self, party: str, proc: subprocess.Popen[bytes], log: Path, *,
                    taxii: bool = True) -> None:
        deadline = time.monotonic() + 30
        root = self.taxii[party].split("/intel/")[0] + "/taxii2/"
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"{party} serve exited {proc.returncode}: "
                                     f"{log.read_text(errors='replace')[-2000:]}")
            try:
                if taxii:
                    httpx.get(root, timeout=2, trust_env=False)  # any answer: it is up
                with socket.create_connection(("127.0.0.1", self.fed_port[party]), timeout=2):
                    return
            except (httpx.HTTPError, OSError):
                pass
            assert time.monotonic() < deadline, f"{party} did not start in 30 s"
            time.sleep(0.05)

    def kill(self, party: str) -> None:
        """SIGKILL the node: its serving process, or with ``--workers`` its whole
        process group (the supervisor and every worker at once)."""
        proc = self.procs[party]
        if proc.pid in self.groups:
            if proc.poll() is None:
                _kill_group(proc)
        else:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop(self, party: str, seconds: float = 30) -> None:
        """SIGTERM the node, as an operator stops it, and wait for it to stop; one that
        does not within ``seconds`` has its threads dumped into its log, which is shown
        first."""
        proc = self.procs[party]
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # its threads, into its log (faulthandler)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            # its own log first: what CI shows of a long failure is its start and its end
            raise AssertionError(f"{party} did not stop within {seconds:.0f} s of SIGTERM\n"
                                 + self.logs(first=party)) from None

    def workers(self, party: str) -> list[int]:
        """The pids of ``party``'s TAXII worker processes (``--workers``): the
        supervisor's children that multiprocessing spawned to serve."""
        supervisor = self.procs[party].pid
        found = []
        for task in Path(f"/proc/{supervisor}/task").iterdir():
            with suppress(OSError):
                for pid in (task / "children").read_text().split():
                    with suppress(OSError):
                        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                            found.append(int(pid))
        return sorted(found)

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def stop_all(self) -> None:
        """SIGKILL every process this pair started (a with block does it on leaving)."""
        for proc in self.all_procs:
            if proc.poll() is not None:  # reaped: its pid (and group id) may be reused
                continue
            if proc.pid in self.groups:
                _kill_group(proc)
            else:
                proc.send_signal(signal.SIGKILL)
        for proc in self.all_procs:
            with suppress(subprocess.TimeoutExpired):  # SIGKILL is not ignored
                proc.wait(10)

    def log_text(self, party: str) -> str:
        return "\n".join(p.read_text(errors="replace")
                         for p in sorted(self.base.glob(f"{party.lower()}-serve-*.log")))

    def logs(self, first: str | None = None) -> str:
        """Every serving log, ``first``'s (a party) before the others."""
        paths = sorted(self.base.glob("*-serve-*.log"),
                       key=lambda p: (not p.name.startswith(f"{(first or '').lower()}-"),
                                      p.name))
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-12000:]}"
                         for p in paths)

    def dump_threads(self) -> None:
        """Make every serving process still running write where each of its threads is
        (faulthandler, on SIGABRT) into its log, for a test that timed out waiting on it."""
        running = [p for p in self.all_procs if p.poll() is None and p.pid not in self.groups]
        for proc in running:
            proc.send_signal(signal.SIGABRT)
        for proc in running:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    # the command line, as an operator runs it (under the node's clock)
    def cli(self, party: str, *args: str, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = self.envs.get(party, {})
        done = subprocess.run([*_intelpact(env), *args], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=timeout, check=False)
        if check:
            assert done.returncode == 0, f"intelpact {' '.join(args)}: {done.returncode}\n" \
                                         f"{done.stdout}\n{done.stderr}"
        return done

    def audit_verify(self, party: str) -> str:
        """`intelpact audit verify DIR` (the real command): it must exit 0 with its
        OK verdict; returns that verdict."""
        done = self.cli(party, "audit", "verify", str(self.dirs[party]), check=False)
        assert done.returncode == 0 and "OK:" in done.stdout, \
            f"audit verify {party} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done.stdout.strip()

    # publishing over TAXII as the node's officer
    def headers(self, party: str) -> dict[str, str]:
        return {"Accept": TAXII, "Content-Type": TAXII,
                "Authorization": f"Bearer {self.tokens[party]}"}

    def post(self, party: str, objects: list[dict[str, Any]],
             timeout: float = 60) -> httpx.Response:
        return httpx.post(self.taxii[party], content=json.dumps({"objects": objects}).encode(),
                          headers=self.headers(party), timeout=timeout, trust_env=False)

    def publish(self, party: str, objects: list[dict[str, Any]], batch: int = 500) -> None:
        with httpx.Client(timeout=60, trust_env=False, headers=self.headers(party)) as c:
            for i in range(0, len(objects), batch):
                chunk = objects[i:i + batch]
                r = c.post(self.taxii[party], content=json.dumps({"objects": chunk}).encode())
                assert r.status_code == 202, r.text[:500]
                status = r.json()
                assert status["failure_count"] == 0, status["failures"][:3]

    # reading the stores directly
    def db(self, party: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.dirs[party] / "node.db", timeout=30)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def query(self, party: str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """``sql`` (SQLite's dialect, ``?`` parameters) on ``party``'s store. On
        PostgreSQL the parameters become ``%s``, and ``PRAGMA foreign_key_check``
        lists the foreign keys the server has not validated (it enforces the rest)."""
        url = self.databases.get(party)
        if url is not None:
            if sql.strip() == "PRAGMA foreign_key_check":
                sql = "SELECT conrelid::regclass, conname FROM pg_constraint " \
                      "WHERE contype = 'f' AND NOT convalidated"
            with psycopg.connect(url, autocommit=True) as pg:
                return [tuple(row) for row in pg.execute(sql.replace("?", "%s"), params)]
        conn = self.db(party)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def rows(self, party: str) -> dict[tuple[str, str], int]:
        """(object id, version) -> how many rows the store holds for it."""
        found = self.query(party, "SELECT object_id, version, count(*) FROM objects "
                                  "GROUP BY object_id, version")
        return {(oid, version): n for oid, version, n in found}

    def undelivered(self, sender: str, party: str) -> int:
        return int(self.query(sender, "SELECT count(*) FROM outbox WHERE party = ? AND "
                                      "delivered IS NULL", (party,))[0][0])

    def released(self, sender: str, party: str) -> set[tuple[str, str]]:
        found = self.query(sender, "SELECT o.object_id, o.version FROM outbox b JOIN objects o "
                                   "ON o.seq = b.seq WHERE b.party = ?", (party,))
        return {(a, b) for a, b in found}


def _intelpact(env: Mapping[str, str] | None) -> list[str]:
    """The command that runs intelpact: under libfaketime, through the child above."""
    if env and "LD_PRELOAD" in env:
        return [sys.executable, "-c", _POLLED_WAITS + _CLI]
    return [str(EXE)]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL every process in ``proc``'s group (``proc`` leads it, not reaped yet, so
    the group id is still ours), reap ``proc``, and wait (10 s at most) until no other
    member of the group is alive."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (a zombie does not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = proc_stat(stat)
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _limit_files(size: int) -> None:
    """In the child: no file may grow past ``size`` bytes (writes fail with EFBIG;
    CPython ignores SIGXFSZ)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def wait_for(check: Callable[[], bool], seconds: float, what: str,
             pair: Pair | None = None) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            if pair is not None:
                pair.dump_threads()  # where each node was stuck, in its log below
            raise AssertionError(f"timed out after {seconds:.0f} s: {what}\n"
                                 + (pair.logs() if pair else ""))
        time.sleep(0.05)


# -- objects ----------------------------------------------------------------------------

AGREEMENT_MODEL = load_agreement(AGREEMENT)


def marking(party: str, level: str, rel: tuple[str, ...] = (),
            caveats: tuple[str, ...] = ()) -> dict[str, Any]:
    return national_marking(AGREEMENT_MODEL, party, level, rel_to=rel or None,
                            caveats=caveats)


def indicators(n: int, marking_id: str, tag: str) -> list[dict[str, Any]]:
    return [{"type": "indicator", "spec_version": "2.1", "id": f"indicator--{uuid.uuid4()}",
             "created": T0, "modified": T0, "name": f"{tag} {i:05d}",
             "description": f"{tag}: relay infrastructure, item {i}",
             "indicator_types": ["malicious-activity"],
             "pattern": f"[ipv4-addr:value = '10.9.{(i >> 8) & 255}.{i & 255}']",
             "pattern_type": "stix", "valid_from": T0, "object_marking_refs": [marking_id]}
            for i in range(n)]


def keys(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(id, version) as the stores key them."""
    return {(o["id"], str(object_version(o))) for o in objects}


def bulk(n: int, tag: str, party: str = "JPN") -> list[dict[str, Any]]:
    m = marking(party, {"JPN": "秘", "NZL": "SECRET"}[party],
                ({"JPN": "NZL", "NZL": "JPN"}[party],))
    return [m, *indicators(n, m["id"], tag)]


def audited(pair: Pair, party: str, kind: str) -> set[tuple[str, str]]:
    """Every (id, version) the events of ``kind`` in ``party``'s log name."""
    found: set[tuple[str, str]] = set()
    for (body,) in pair.query(party, "SELECT body FROM audit_events WHERE kind = ?", (kind,)):
        found |= {(oid, version) for oid, version in json.loads(body).get("objects", [])}
    return found


def assert_exactly_once_and_drained(pair: Pair, expected: set[tuple[str, str]],
                                    sender: str = "JPN", receiver: str = "NZL") -> None:
    """Every released object is at the receiver exactly once, nothing else of the
    sender's is, the sender's outbox for it has drained, each release has the
    receiver's verified, signed receipt, both logs record it (release, receive), and
    `intelpact audit verify` passes on both nodes."""
    found = pair.query(receiver, "SELECT object_id, version, count(*) FROM objects WHERE "
                                 "originator = ? GROUP BY object_id, version", (sender,))
    rows = {(oid, version): n for oid, version, n in found}
    assert set(rows) == expected, (len(set(rows)), len(expected))
    assert set(rows.values()) == {1}
    assert pair.released(sender, receiver) == expected
    assert pair.undelivered(sender, receiver) == 0
    conn = pair.db(sender)
    records = conn.execute("SELECT d.object_id, d.version, r.body FROM disseminations d "
                           "LEFT JOIN receipts r ON r.receipt_id = d.receipt_id "
                           "WHERE d.party = ?", (receiver,)).fetchall()
    public = _public(conn.execute("SELECT public_key FROM peers WHERE party = ?",
                                  (receiver,)).fetchone()[0])
    conn.close()
    assert {(oid, v) for oid, v, _ in records} == expected
    receipts: dict[str, Any] = {}
    for _, _, receipt in records:
        assert receipt, "a release without a receipt"
        receipts.setdefault(receipt, json.loads(receipt))
    held: set[str] = set()
    for signed in receipts.values():  # each distinct receipt: signed by the pinned key
        assert signed["receipt"]["receiver"] == receiver
        assert signed["receipt"]["sender"] == sender
        assert verify_payload(public, signed["signature"], signed["receipt"])
        held |= {o["id"] for o in signed["receipt"]["objects"]}
    assert {oid for oid, _ in expected} <= held
    assert pair.query(receiver, "SELECT party, object_id, reason FROM refusals") == []
    # the logs: each object released (before it left) and received (with it), once stored
    assert expected <= audited(pair, sender, "release")
    assert expected <= audited(pair, receiver, "receive")
    for party in (sender, receiver):
        pair.audit_verify(party)
