"""Benchmark: national scale, side by side. intelpact on SQLite and on PostgreSQL (1 and 4
workers on each) up to 1,000,000 objects, OpenTAXII 0.9.3 and medallion 3.0.0 at the sizes they
finish in minutes, in one run, on the same data.

Run: make bench   (or .venv/bin/python bench/scale.py; --help for sizes)

Data: bench/taxii.py's generator: 10 national marking-definitions and N indicators of
about 1 KB, each under one of the 10 markings; its publisher and its reader (a JPN
analyst cleared 極秘 in MARITIME whose access filter lets them see 7 markings of 10).

- intelpact, ingest: a fresh node per store and worker count, served by ``intelpact
  serve`` (HTTP); ``--ingest-size`` indicators POSTed in envelopes of 1,000 by as many
  clients as workers. Every object is validated, labelled, signed, committed durably and
  audited before the 202.
- intelpact, reads: per store and size a fresh node, loaded in-process through the node's
  own publish path (``Node.publisher.publish``, what a TAXII POST calls after parsing:
  validation, labels, signature, audit, durable commit), by ``--loaders`` processes each
  with its own connection, from the same 1,000-object JSON envelopes; then served with
  each worker count.
- OpenTAXII 0.9.3 (its SQL persistence on a SQLite file, served by gunicorn with sync
  workers, .venv-opentaxii; bench/opentaxii_peer.py carries the one fix it needs to
  answer POSTs) and medallion 3.0.0 (memory backend, .venv-medallion), loaded over HTTP
  with the same envelopes (OpenTAXII cannot take the marking-definitions: it reads
  ``modified``, which they lack; neither peer has access control). OpenTAXII's clients
  use its JWT bearer tokens (its HTTP Basic hashes the password on every request).

Measures, per configuration: paged reads by the reader (limit=1000, following ``next``;
intelpact's reader pages with a bearer token, so that a long read never re-verifies a
password mid-way), objects/s, on one worker; single-object GETs by 8 concurrent
clients (threads, each with its own httpx client and connection), requests/s and
p50/p99 (medallion: one client, its memory backend fails some concurrent GETs); the
server's peak RSS growth while the reader pages through the whole collection (VmHWM
reset before it, as bench/taxii.py does); the first page of filtered queries
(``match[type]=indicator`` with ``added_after`` about 2,000 objects before the end;
``match[id]`` of one object; ``match[type]=marking-definition``, a sparse type),
median of ``--repeat`` requests; the client's and the servers' CPU per phase. Peers'
reads are capped (``--cap`` seconds per paged read, half for the GETs): a capped
figure is a bound, and says so.

Targets (at the largest size; 2 cores): paged reads >= 50,000 objects/s on one worker;
GETs >= 2,000 requests/s with p99 < 20 ms at 8 concurrent clients; ingest >= 5,000
objects/s; memory flat (peak RSS growth under a tenth of the collection's JSON); the
first page of the type+added_after and match[id] queries < 50 ms.

The last line printed is one JSON object with every result and the targets met.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgserver  # noqa: E402
from intelpact.jsonio import parse_json  # noqa: E402
from intelpact.services.node import Node  # noqa: E402
from taxii import (  # noqa: E402
    AGREEMENT,
    BATCH,
    PAGE,
    PUBLISHER,
    PUBLISHER_PROFILE,
    READER,
    READER_PROFILE,
    SEED,
    TAXII,
    Served,
    envelopes,
    fmt,
    free_port,
    indicators,
    marking_definitions,
    medallion_python,
    medallion_server,
    memory_kb,
    paged_read,
    post,
    reader_allows,
    reset_peak,
    rounded,
    running,
)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OPENTAXII_VENV = ROOT / ".venv-opentaxii"
OPENTAXII_VERSION = "0.9.3"
OPENTAXII_REQUIREMENTS = BENCH / "opentaxii-requirements.txt"

TARGETS = {"paged_read_per_s": 50_000, "get_per_s": 2_000, "get_p99_ms": 20.0,
           "ingest_per_s": 5_000, "read_growth_share": 0.10, "first_page_ms": 50.0}
QUERIES = ("type_added_after", "match_id", "sparse_type")
TARGET_QUERIES = ("type_added_after", "match_id")


def say(text: str, end: str = "\n") -> None:
    print(text, end=end, flush=True)


# -- data ------------------------------------------------------------------------------

@dataclass
class Data:
    """The markings and N indicators as 1,000-object envelopes (the dicts are kept only
    for the peers' sizes: medallion's read server loads them from a file)."""

    markings: list[dict[str, Any]]
    ids: list[str]
    which: list[int]
    allowed: list[bool]
    batches: list[tuple[int, bytes]]
    objects: list[dict[str, Any]]

    @classmethod
    def make(cls, n: int, keep: int) -> Data:
        markings = marking_definitions()
        objects, which = indicators(n, markings)
        batches = envelopes(objects)
        ids = [o["id"] for o in objects]
        return cls(markings, ids, which, reader_allows(markings), batches, objects[:keep])

    def visible(self, n: int) -> list[str]:
        return [i for i, k in zip(self.ids[:n], self.which[:n], strict=True) if self.allowed[k]]

    def hidden(self, n: int, k: int = 20) -> list[str]:
        return [i for i, w in zip(self.ids[:n], self.which[:n], strict=True)
                if not self.allowed[w]][:k]

    def sample(self, n: int, k: int) -> list[str]:
        visible = self.visible(n)
        return random.Random(SEED + n).sample(visible, min(k, len(visible)))

    def envelopes(self, n: int) -> list[tuple[int, bytes]]:
        return self.batches[:n // BATCH]

    def mb(self, n: int) -> float:
        return sum(len(b) for _, b in self.envelopes(n)) / 1e6


# -- processes and CPU -----------------------------------------------------------------

def _proc_stats() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds) for every process we can read."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        out[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return out


def tree_cpu(pid: int | None) -> float:
    """CPU seconds used so far by ``pid`` and its live descendants."""
    if pid is None:
        return 0.0
    stats = _proc_stats()
    children: dict[int, list[int]] = {}
    for p, (parent, _) in stats.items():
        children.setdefault(parent, []).append(p)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if p in stats:
            total += stats[p][1]
        todo.extend(children.get(p, []))
    return total


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Meter:
    """CPU seconds of the client (this process), the server's process tree and the
    database server's, over one measured phase."""

    server: int | None
    db: int | None
    start: dict[str, float] = field(default_factory=dict)

    def __enter__(self) -> Meter:
        self.start = {"t": time.perf_counter(), "client": self_cpu(),
                      "server": tree_cpu(self.server), "db": tree_cpu(self.db)}
        return self

    def __exit__(self, *_: object) -> None:
        self.start["wall"] = time.perf_counter() - self.start["t"]

    def cpu(self) -> dict[str, float]:
        wall = max(self.start.get("wall", 0.0), 1e-9)
        out = {"client_cores": (self_cpu() - self.start["client"]) / wall,
               "server_cores": (tree_cpu(self.server) - self.start["server"]) / wall}
        if self.db is not None:
            out["db_cores"] = (tree_cpu(self.db) - self.start["db"]) / wall
        return out


class Bearer(Served):
    """A server whose clients send a bearer token per user (OpenTAXII's JWTs)."""

    tokens: dict[str, str]

    def client(self, who: tuple[str, str], timeout: float = 600.0) -> httpx.Client:
        headers = {"Accept": TAXII}
        token = getattr(self, "tokens", {}).get(who[0])
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(timeout=timeout, headers=headers)


def settle(served: Served, workers: int) -> None:
    """After the first answer, give the other worker processes time to start."""
    if workers > 1:
        time.sleep(2.0 + 0.5 * workers)


# -- intelpact -------------------------------------------------------------------------

@dataclass
class IntelpactNode:
    dir: Path
    cid: str
    root: str
    port: int
    database: str | None
    reader_token: str


def make_node(work: Path, database: str | None, markings: list[dict[str, Any]]
              ) -> IntelpactNode:
    """A fresh node with the publisher and the reader, and the 10 marking-definitions
    published (in-process, before any worker starts: see docs/performance.md)."""
    port = free_port()
    node = Node.create(work / "node", party="JPN", agreement_file=AGREEMENT, tls=False,
                       port=port, federation_port=free_port(), database=database)
    node.people.add(PUBLISHER[0], password=PUBLISHER[1], **PUBLISHER_PROFILE)
    node.people.add(READER[0], password=READER[1], **READER_PROFILE)
    cid = node.default_collection().collection_id
    status = node.publisher.publish(node.people.as_person(PUBLISHER[0]).person, cid, markings)
    if status.body["success_count"] != len(markings):
        raise RuntimeError(f"markings: {json.dumps(status.body['failures'][:3])[:300]}")
    token = node.people.issue_token(READER[0], "bench paged reads")
    made = IntelpactNode(work / "node", cid, node.config.api_root, port, database, token)
    node.close()
    return made


def serve_intelpact(made: IntelpactNode, workers: int, tag: str) -> Served:
    exe = Path(sys.executable).parent / "intelpact"
    log = made.dir.parent / f"intelpact-{tag}.log"
    cmd = [str(exe), "serve", str(made.dir)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{made.port}"
    return Served("intelpact", proc, base,
                  f"{base}/{made.root}/collections/{made.cid}/objects/", False, log)


_LOADER: dict[str, Any] = {}


def _loader_start(node_dir: str, cid: str) -> None:
    node = Node.open(node_dir)
    Finalize(node, node.close, exitpriority=10)
    _LOADER.update(node=node, cid=cid, person=node.people.as_person(PUBLISHER[0]).person)


def _load_envelopes(indexes: list[int]) -> int:
    node: Node = _LOADER["node"]
    done = 0
    for i in indexes:
        count, body = _LOADER["batches"][i]
        objects = parse_json(body)["objects"]
        status = node.publisher.publish(_LOADER["person"], _LOADER["cid"], objects)
        if status.body["success_count"] != count:
            raise RuntimeError(f"publish: {status.body['success_count']} of {count} stored: "
                               f"{json.dumps(status.body['failures'][:3])[:300]}")
        done += count
    return done


def load_in_process(made: IntelpactNode, data: Data, n: int, loaders: int,
                    label: str) -> dict[str, Any]:
    """Publish ``n`` indicators through ``Node.publisher.publish`` with ``loaders``
    processes (forked: they share the envelopes), progress as it goes."""
    _LOADER["batches"] = data.envelopes(n)
    step = max(1, min(10, len(_LOADER["batches"]) // (loaders * 4)))
    tasks = [list(range(i, min(i + step, len(_LOADER["batches"]))))
             for i in range(0, len(_LOADER["batches"]), step)]
    ctx = multiprocessing.get_context("fork")
    start = time.perf_counter()
    done, shown = 0, 0
    with ctx.Pool(loaders, initializer=_loader_start, initargs=(str(made.dir), made.cid)) as pool:
        for count in pool.imap_unordered(_load_envelopes, tasks):
            done += count
            if n >= 50_000 and done * 10 // n > shown:
                shown = done * 10 // n
                rate = done / (time.perf_counter() - start)
                say(f"    {label}: {done:>9,} of {n:,} loaded, {rate:,.0f} objects/s, "
                    f"about {(n - done) / rate:.0f} s left")
        pool.close()
        pool.join()
    seconds = time.perf_counter() - start
    _LOADER.pop("batches")
    node = Node.open(made.dir)
    stored = node.store.count(made.cid)
    started = time.perf_counter()  # the search index, which `serve` would write after
    while node.store.index_text(10_000):  # the load in the background, during the reads
        pass
    indexed = time.perf_counter() - started
    node.close()
    if stored != n + len(data.markings):
        raise RuntimeError(f"{stored} objects stored, expected {n + len(data.markings)}")
    return {"objects": n, "seconds": seconds, "per_s": n / seconds, "loaders": loaders,
            "index_seconds": indexed}


# -- measurements ----------------------------------------------------------------------

def fresh_login(served: Served, who: tuple[str, str], times: int = 1) -> None:
    """Small requests before a measured phase: the node keeps a verified password 60 s
    per process, and its argon2 check (64 MiB, tens of ms) is not what is measured."""
    with served.client(who) as c:
        for _ in range(times):
            c.get(served.objects_url, params={"limit": 1})


def concurrent_ingest(served: Served, markings: list[dict[str, Any]] | None,
                      batches: list[tuple[int, bytes]], clients: int) -> dict[str, Any]:
    """POST ``batches`` with ``clients`` concurrent clients (round robin), timed from the
    first POST to the last 202; the markings first (not timed)."""
    with served.client(PUBLISHER) as c:
        if markings:
            post(c, served.objects_url, len(markings), json.dumps({"objects": markings}).encode())
        for _ in range(4 * clients):
            c.get(served.objects_url, params={"limit": 1})
    shares = [batches[k::clients] for k in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def run(share: list[tuple[int, bytes]]) -> None:
        try:
            with served.client(PUBLISHER) as c:
                c.get(served.objects_url, params={"limit": 1})
                barrier.wait()
                for count, body in share:
                    post(c, served.objects_url, count, body)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    total = sum(n for n, _ in batches)
    return {"objects": total, "seconds": elapsed, "per_s": total / elapsed, "clients": clients}


def quantiles(latencies: list[float]) -> dict[str, float]:
    if len(latencies) < 2:
        only = latencies[0] * 1000 if latencies else float("nan")
        return {"p50_ms": only, "p95_ms": only, "p99_ms": only, "max_ms": only}
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": q[49] * 1000, "p95_ms": q[94] * 1000, "p99_ms": q[98] * 1000,
            "max_ms": max(latencies) * 1000}


def concurrent_gets(served: Served, who: tuple[str, str], ids: list[str], clients: int,
                    cap: float, meter: Meter) -> dict[str, Any]:
    """Single-object GETs of ``ids`` by ``clients`` threads, each with its own client;
    stops after ``cap`` seconds."""
    shares = [ids[k::clients] for k in range(clients)]
    clock: dict[str, float] = {}
    barrier = threading.Barrier(clients + 1,
                                action=lambda: clock.__setitem__("start", time.perf_counter()))
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            with served.client(who, timeout=max(cap, 1.0) + 30) as c:
                for oid in shares[k][:10]:  # warm up: connection, every worker's login cache
                    c.get(f"{served.objects_url}{oid}/")
                barrier.wait()
                mine = latencies[k]
                for oid in shares[k]:
                    if time.perf_counter() - clock["start"] > cap:
                        break
                    t = time.perf_counter()
                    r = c.get(f"{served.objects_url}{oid}/")
                    mine.append(time.perf_counter() - t)
                    if r.status_code != 200:
                        raise RuntimeError(f"GET {oid}: {r.status_code} {r.text[:300]}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    with meter:
        with suppress(threading.BrokenBarrierError):
            barrier.wait()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    elapsed = time.perf_counter() - clock["start"]
    flat = [x for lat in latencies for x in lat]
    return {"gets": len(flat), "clients": clients, "seconds": elapsed,
            "per_s": len(flat) / elapsed, **quantiles(flat),
            "complete": len(flat) == len(ids), **meter.cpu()}


def first_pages(served: Served, who: tuple[str, str], queries: dict[str, dict[str, str]],
                repeat: int, cap: float) -> dict[str, Any]:
    """Each filtered query ``repeat`` times, one client: ms per first page (the first
    request of each apart, as 'cold')."""
    out: dict[str, Any] = {}
    with served.client(who, timeout=cap) as c:
        for name, params in queries.items():
            times: list[float] = []
            objects = 0
            more = False
            started = time.perf_counter()
            for _ in range(repeat):
                t = time.perf_counter()
                try:
                    r = c.get(served.objects_url, params={"limit": str(PAGE), **params})
                except httpx.TimeoutException:
                    break
                times.append(time.perf_counter() - t)
                if r.status_code != 200:
                    raise RuntimeError(f"GET objects {params}: {r.status_code} {r.text[:300]}")
                envelope = json.loads(r.content) if r.content else {}
                objects = len(envelope.get("objects", []))
                more = bool(envelope.get("more"))
                if time.perf_counter() - started > cap:
                    break
            if not times:
                out[name] = {"complete": False, "over_s": cap}
                continue
            warm = times[1:] or times
            out[name] = {"median_ms": statistics.median(warm) * 1000,
                         "max_ms": max(warm) * 1000, "first_ms": times[0] * 1000,
                         "requests": len(times), "objects": objects, "more": more,
                         "complete": True}
    return out


def filtered_queries(marks: list[str], some_id: str) -> dict[str, dict[str, str]]:
    """type+added_after about two pages before the end; one id; a sparse type."""
    queries = {"match_id": {"match[id]": some_id},
               "sparse_type": {"match[type]": "marking-definition"}}
    usable = [m for m in marks if m]
    if len(usable) >= 3:
        queries = {"type_added_after": {"match[type]": "indicator",
                                        "added_after": usable[-3]}, **queries}
    return queries


def check_reader(served: Served, data: Data, n: int) -> None:
    with served.client(READER) as c:
        for oid in data.hidden(n, 5):
            r = c.get(f"{served.objects_url}{oid}/")
            if r.status_code != 404:
                raise RuntimeError(f"the reader can GET {oid}, which their access filter hides")


def measure_intelpact(served: Served, token: str, data: Data, n: int, workers: int,
                      args: argparse.Namespace, db_pid: int | None, marks: list[str] | None
                      ) -> tuple[dict[str, Any], list[str] | None]:
    """Paged read and memory (one worker), GETs, filtered first pages. ``marks``: the
    date_added marks of the pages, from the one-worker read (returned for the next)."""
    out: dict[str, Any] = {"workers": workers}
    pid = served.proc.pid
    check_reader(served, data, n)
    if workers == 1:
        # The reader pages with a bearer token: a read of 1,000,000 objects outlasts the
        # 60 s for which a verified password is kept, and a second argon2 check (64 MiB)
        # in the middle of it is not streaming memory.
        pager = Bearer(served.name, served.proc, served.base, served.objects_url,
                       served.verify, served.log)
        pager.tokens = {READER[0]: token}
        # warm up: a server that has not served a full page yet (its first pages
        # allocate buffers it then reuses; the taxii.py server had ingested first)
        with pager.client(READER) as c:
            params: dict[str, Any] = {"limit": PAGE}
            for _ in range(3):
                envelope = c.get(served.objects_url, params=params).json()
                if not envelope.get("more"):
                    break
                params["next"] = envelope["next"]
        before = memory_kb(pid)
        reset = reset_peak(pid)
        meter = Meter(pid, db_pid)
        with meter:
            marks = []
            read = paged_read(pager, READER, cap=3600, marks=marks)
        after = memory_kb(pid)
        got = set(read.pop("ids"))
        visible = data.visible(n)
        if not set(visible) <= got or got & set(data.hidden(n, n)) or \
                len(got) - len(visible) > len(data.markings):
            raise RuntimeError(f"the paged read returned {len(got)} objects; the model allows "
                               f"{len(visible)} indicators (+ marking-definitions)")
        read["visible_share"] = len(visible) / n
        read.update(meter.cpu())
        out["read"] = read
        out["memory"] = {"rss_before_kb": before["VmRSS"], "hwm_after_kb": after["VmHWM"],
                         "rss_after_kb": after["VmRSS"], "peak_reset": reset,
                         "read_growth_kb": after["VmHWM"] - before["VmRSS"]
                         if reset else after["VmHWM"] - before["VmHWM"]}
    sample = data.sample(n, args.gets)
    fresh_login(served, READER, times=4 * workers)
    out["get"] = concurrent_gets(served, READER, sample, args.clients, 600,
                                 Meter(pid, db_pid))
    fresh_login(served, READER, times=4 * workers)
    out["first_page"] = first_pages(served, READER, filtered_queries(marks or [], sample[0]),
                                    args.repeat, 15)
    return out, marks


# -- peers -----------------------------------------------------------------------------

def opentaxii_python(explicit: str | None) -> Path:
    """The OpenTAXII venv's python, creating the venv from the pinned requirements if
    needed (as `make bench` does)."""
    python = Path(explicit).absolute() if explicit else OPENTAXII_VENV / "bin" / "python"
    check = [str(python), "-c", "import opentaxii, gunicorn, sys; "
             f"sys.exit(opentaxii.__version__ != {OPENTAXII_VERSION!r})"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    if explicit:
        raise SystemExit(f"{python}: no OpenTAXII {OPENTAXII_VERSION} with gunicorn there")
    say(f"installing OpenTAXII {OPENTAXII_VERSION} into {OPENTAXII_VENV} ...")
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
    subprocess.run([base, "-m", "venv", str(OPENTAXII_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                   check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r",
                    str(OPENTAXII_REQUIREMENTS)], check=True)
    subprocess.run(check, check=True)
    return python


OPENTAXII_CONFIG = """\
domain: "127.0.0.1:{port}"
support_basic_auth: yes
return_server_error_details: no
auth_api:
  class: opentaxii.auth.sqldb.SQLDatabaseAPI
  parameters:
    db_connection: "sqlite:///{work}/opentaxii-auth.db"
    create_tables: yes
    secret: intelpact-bench-secret
    token_ttl_secs: 86400
taxii1:
taxii2:
  persistence_api:
    class: opentaxii.persistence.sqldb.Taxii2SQLDatabaseAPI
    parameters:
      db_connection: "sqlite:///{work}/opentaxii-data.db"
      create_tables: yes
  title: intelpact benchmark peer
  max_content_length: 104857600
  public_discovery: yes
logging:
  opentaxii: warning
  root: warning
"""


@dataclass
class OpenTaxii:
    python: Path
    work: Path
    port: int
    env: dict[str, str]
    root: str = ""
    collection: str = ""

    @classmethod
    def make(cls, python: Path, work: Path) -> OpenTaxii:
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        config = work / "opentaxii.yml"
        config.write_text(OPENTAXII_CONFIG.format(port=port, work=work.resolve()),
                          encoding="utf-8")
        env = {**os.environ, "OPENTAXII_CONFIG": str(config)}
        made = cls(python, work, port, env)
        done = subprocess.run([str(python), str(BENCH / "opentaxii_peer.py"), "setup",
                               ":".join(PUBLISHER), ":".join(READER)], env=env, cwd=work,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"OpenTAXII set-up failed: {done.stderr[-2000:]}")
        ids = json.loads(done.stdout.strip().splitlines()[-1])
        made.root, made.collection = ids["api_root"], ids["collection"]
        return made

    def serve(self, workers: int, tag: str) -> Bearer:
        log = self.work / f"opentaxii-{tag}.log"
        gunicorn = self.python.parent / "gunicorn"
        proc = subprocess.Popen([str(gunicorn), "-c", str(BENCH / "opentaxii_peer.py"),
                                 "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
                                 "--worker-class", "sync", "--timeout", "3600",
                                 "--no-control-socket", "opentaxii.http:app"],
                                env=self.env, cwd=self.work, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{self.port}"
        served = Bearer("opentaxii", proc, base,
                        f"{base}/taxii2/{self.root}/collections/{self.collection}/objects/",
                        False, log)
        served.tokens = {}
        return served


def opentaxii_login(served: Bearer) -> None:
    for name, password in (PUBLISHER, READER):
        r = httpx.post(f"{served.base}/management/auth",
                       json={"username": name, "password": password}, timeout=60)
        r.raise_for_status()
        served.tokens[name] = r.json()["token"]


def run_opentaxii(python: Path, data: Data, n: int, work: Path, args: argparse.Namespace,
                  workers: list[int]) -> dict[str, Any]:
    peer = OpenTaxii.make(python, work)
    out: dict[str, Any] = {}
    served = peer.serve(1, "1")
    with running(served, READER):
        opentaxii_login(served)
        out["ingest"] = concurrent_ingest(served, None, data.envelopes(n), 1)
        meter = Meter(served.proc.pid, None)
        marks: list[str] = []
        with meter:
            read = paged_read(served, READER, cap=args.cap, total=n, marks=marks)
        read.pop("ids")
        read.update(meter.cpu())
        out["read"] = read
        sample = data.sample(n, args.gets)
        out["get"] = concurrent_gets(served, READER, sample, args.clients, args.cap / 2,
                                     Meter(served.proc.pid, None))
        out["first_page"] = first_pages(served, READER, filtered_queries(marks, sample[0]),
                                        max(2, args.repeat // 4), args.cap / 2)
    if any(w > 1 for w in workers):
        w = max(workers)
        served = peer.serve(w, str(w))
        with running(served, READER):
            opentaxii_login(served)
            settle(served, w)
            out[f"get_{w}w"] = concurrent_gets(served, READER, data.sample(n, args.gets),
                                               args.clients, args.cap / 2,
                                               Meter(served.proc.pid, None))
    return out


def run_medallion(python: Path, data: Data, n: int, work: Path,
                  args: argparse.Namespace) -> dict[str, Any]:
    """Ingest on an empty medallion; GETs (one client) and the paged read on one loaded
    from a file."""
    out: dict[str, Any] = {}
    with running(medallion_server(python, work, [], f"{n}-ingest"), PUBLISHER) as s:
        out["ingest"] = concurrent_ingest(s, data.markings, data.envelopes(n), 1)
    loaded = [*data.markings, *data.objects[:n]]
    with running(medallion_server(python, work, loaded, f"{n}-read"), READER) as s:
        # one client: medallion's memory backend answers some concurrent GETs with a 500
        # (a race in its sort_and_paginate), so its GETs are one at a time
        out["get"] = concurrent_gets(s, READER, data.sample(n, args.gets), 1,
                                     args.cap / 2, Meter(s.proc.pid, None))
        meter = Meter(s.proc.pid, None)
        with meter:
            read = paged_read(s, READER, cap=args.cap, total=len(loaded))
        read.pop("ids")
        read.update(meter.cpu())
        out["read"] = read
    return out


# -- report ----------------------------------------------------------------------------

PEER_COLUMNS = ("opentaxii/1", "opentaxii/4", "medallion")
NAMES = {"sqlite": "SQLite", "postgresql": "PG", "opentaxii": "OpenTAXII"}


def heading(column: str) -> str:
    """A column's heading: 'SQLite 1w', 'PG 4w', 'OpenTAXII 1w', 'medallion'."""
    name, _, workers = column.partition("/")
    return f"{NAMES[name]} {workers}w" if workers else name


def cells(results: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """(column, size) -> the measurements shown in that cell's column."""
    table: dict[tuple[str, int], dict[str, Any]] = {}
    for backend, sizes in results["intelpact"]["reads"].items():
        for size, run in sizes.items():
            for key, m in run.items():
                if key.startswith("w"):
                    table[(f"{backend}/{key[1:]}", int(size))] = m
    for size, m in results["peers"].get("opentaxii", {}).items():
        table[("opentaxii/1", int(size))] = m
        for key, value in m.items():
            if key.startswith("get_") and key.endswith("w"):
                table[(f"opentaxii/{key[4:-1]}", int(size))] = {"get": value}
    for size, m in results["peers"].get("medallion", {}).items():
        table[("medallion", int(size))] = m
    return table


def value(m: dict[str, Any] | None, path: str) -> float | None:
    node: Any = m
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def show(m: dict[str, Any] | None, what: str, path: str) -> str:
    """One cell: a rate or a time; '*' when the peer stopped at the cap ('<' before a
    rate that is then an upper bound; '>' before a query that never answered)."""
    if m is None:
        return ""
    parts = path.split(".")
    if parts[0] == "first_page":
        query = m.get("first_page", {}).get(parts[1])
        if query is not None and not query.get("complete"):
            return f">{query['over_s']:.0f} s*"
    x = value(m, path)
    if x is None:
        return ""
    section = m.get(parts[0], {})
    capped = isinstance(section, dict) and section.get("complete") is False
    if what == "rate" and capped and "upper_bound_per_s" in section:
        return f"<{fmt(section['upper_bound_per_s'])}*"
    text = fmt(x) if what == "rate" else (f"{x:,.1f}" if x < 100 else f"{x:,.0f}")
    return text + ("*" if capped else "")


# label, kind, where in a cell's measurements, which ratio (if any) goes on the row
ROWS = [
    ("paged read objects/s (reader)", "rate", "read.per_s", "read"),
    ("GETs/s, 8 clients", "rate", "get.per_s", "get"),
    ("GET p50 ms", "ms", "get.p50_ms", ""),
    ("GET p99 ms", "ms", "get.p99_ms", ""),
    ("1st page type+added_after ms", "ms", "first_page.type_added_after.median_ms",
     "first_page.type_added_after.median_ms"),
    ("1st page match[id] ms", "ms", "first_page.match_id.median_ms",
     "first_page.match_id.median_ms"),
    ("1st page sparse type ms", "ms", "first_page.sparse_type.median_ms",
     "first_page.sparse_type.median_ms"),
    ("read peak RSS growth MB", "ms", "memory.read_growth_mb", ""),
]


def table(results: dict[str, Any]) -> None:
    grid = cells(results)
    for m in grid.values():
        if "memory" in m:
            m["memory"]["read_growth_mb"] = m["memory"]["read_growth_kb"] / 1024
    sizes = sorted({size for _, size in grid})
    ours = [f"{b}/{w}" for b in ("sqlite", "postgresql") for w in results["config"]["workers"]]
    columns = [c for c in (*ours, *PEER_COLUMNS) if any((c, s) in grid for s in sizes)]
    say("")
    header = f"{'measure':<31}{'objects':>10}" + "".join(f"{heading(c):>14}" for c in columns)
    ratio_head = f"{'x OpenTAXII':>13}{'x medallion':>13}"
    say(header + ratio_head)
    say("-" * (len(header) + len(ratio_head)))
    ingest = results["intelpact"]["ingest"]
    isize = results["config"]["ingest_size"]
    line = f"{'ingest objects/s (HTTP)':<31}{isize:>10,}"
    for c in columns:
        peer = grid.get((c, isize), {}) if c in ("opentaxii/1", "medallion") else {}
        text = fmt(ingest[c]["per_s"]) if c in ingest else \
            fmt(peer["ingest"]["per_s"]) if "ingest" in peer else ""
        line += f"{text:>14}"
    say(line + ratio_cells(results["ratios"].get(str(isize), {}), "ingest"))
    for label, kind, path, ratio in ROWS:
        for size in sizes:
            row = [show(grid.get((c, size)), kind, path) for c in columns]
            if any(row):
                say(f"{label:<31}{size:>10,}" + "".join(f"{x:>14}" for x in row)
                    + ratio_cells(results["ratios"].get(str(size), {}), ratio))
    loads = results["intelpact"]["loads"]
    for size in sizes:
        row = []
        for c in columns:
            backend, _, w = c.partition("/")
            load = loads.get(backend, {}).get(str(size)) if w == "1" else None
            row.append(fmt(load["per_s"]) if load else "")
        if any(row):
            say(f"{'in-process load objects/s':<31}{size:>10,}"
                + "".join(f"{x:>14}" for x in row))
    say("w = worker processes. x = intelpact SQLite 1w against the peer with 1 worker at "
        "that size (rates: intelpact/peer; times: peer/intelpact); '>x' when the peer was "
        "capped, so the ratio is a lower bound. * = the peer stopped at the cap.")


def ratio_cells(ratios: dict[str, Any], key: str) -> str:
    out = ""
    if not key:
        return out
    for peer in ("opentaxii", "medallion"):
        r = ratios.get(peer, {}).get(key)
        if r is None:
            out += f"{'':>13}"
        else:
            out += f"{('>' if r.get('bound') else '') + 'x' + format(r['x'], ',.1f'):>13}"
    return out


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """intelpact SQLite, 1 worker, against each peer at the same size."""
    out: dict[str, Any] = {}
    reads = results["intelpact"]["reads"].get("sqlite", {})
    isize = str(results["config"]["ingest_size"])
    for peer, sizes in results["peers"].items():
        for size, m in sizes.items():
            ours = reads.get(size, {}).get("w1")
            r: dict[str, Any] = {}
            ingest = results["intelpact"]["ingest"].get("sqlite/1")
            if size == isize and ingest and "ingest" in m:
                r["ingest"] = {"x": ingest["per_s"] / m["ingest"]["per_s"]}
            if ours:
                if "read" in m:
                    theirs = m["read"]["per_s"] if m["read"]["complete"] else \
                        m["read"]["upper_bound_per_s"]
                    r["read"] = {"x": ours["read"]["per_s"] / max(theirs, 1e-9),
                                 "bound": not m["read"]["complete"]}
                if "get" in m and m["get"]["gets"]:
                    r["get"] = {"x": ours["get"]["per_s"] / m["get"]["per_s"],
                                "bound": not m["get"]["complete"]}
                for q in QUERIES:
                    key = f"first_page.{q}.median_ms"
                    a, b = value(ours, key), value(m, key)
                    if a and b:
                        r[key] = {"x": b / a}
            out.setdefault(size, {})[peer] = r
    return out


def check_targets(results: dict[str, Any]) -> dict[str, Any]:
    met: dict[str, Any] = {}
    lines = []
    for backend, sizes in results["intelpact"]["reads"].items():
        largest = max(sizes, key=int)
        run = sizes[largest]
        mb = run["mb"]
        for key, m in run.items():
            if not key.startswith("w"):
                continue
            config = f"{backend}/{key[1:]}"
            mine: dict[str, Any] = {"objects": int(largest)}
            if "read" in m:
                mine["paged_read"] = m["read"]["per_s"] >= TARGETS["paged_read_per_s"]
                share = m["memory"]["read_growth_kb"] * 1024 / (mb * 1e6)
                mine["memory_flat"] = share < TARGETS["read_growth_share"]
                mine["read_growth_share"] = share
                lines.append(f"  {config:<14} paged read {m['read']['per_s']:>9,.0f} objects/s "
                             f"(>= 50,000)  {'met' if mine['paged_read'] else 'NOT met'}")
                growth = m["memory"]["read_growth_kb"] / 1024
                lines.append(f"  {config:<14} memory     {growth:>9.1f} MB over "
                             f"{mb:,.0f} MB ({share:.1%}; < 10%)  "
                             f"{'met' if mine['memory_flat'] else 'NOT met'}")
            g = m["get"]
            mine["get"] = (g["per_s"] >= TARGETS["get_per_s"]
                           and g["p99_ms"] < TARGETS["get_p99_ms"])
            lines.append(f"  {config:<14} GETs       {g['per_s']:>9,.0f}/s, p99 "
                         f"{g['p99_ms']:.1f} ms (>= 2,000/s, p99 < 20)  "
                         f"{'met' if mine['get'] else 'NOT met'}")
            fp = m["first_page"]
            worst = max((fp[q]["median_ms"] for q in TARGET_QUERIES
                         if fp.get(q, {}).get("complete")), default=float("inf"))
            mine["first_page"] = worst < TARGETS["first_page_ms"]
            mine["first_page_ms"] = worst
            lines.append(f"  {config:<14} 1st page   {worst:>9.1f} ms, worst of type+added_after "
                         f"and match[id] (< 50)  {'met' if mine['first_page'] else 'NOT met'}")
            ingest = results["intelpact"]["ingest"].get(config)
            if ingest:
                mine["ingest"] = ingest["per_s"] >= TARGETS["ingest_per_s"]
                lines.append(f"  {config:<14} ingest     {ingest['per_s']:>9,.0f} objects/s "
                             f"(>= 5,000)  {'met' if mine['ingest'] else 'NOT met'}")
            met[config] = mine
    say("\ntargets, at each store's largest size:")
    for line in lines:
        say(line)
    overall = {}
    for name in ("paged_read", "get", "ingest", "memory_flat", "first_page"):
        values = [m[name] for m in met.values() if name in m]
        overall[name] = bool(values) and all(values)
    return {**overall, "by_config": met}


# -- main ------------------------------------------------------------------------------

def ints(text: str) -> list[int]:
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


def git_revision() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip()


@contextmanager
def workdir(parent: str | None, prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="2000,20000,100000,1000000",
                        help="object counts for intelpact's reads (multiples of 1,000)")
    parser.add_argument("--peer-sizes", default="2000,20000",
                        help="object counts also run on the peers ('' for none)")
    parser.add_argument("--peers", default="opentaxii,medallion", help="peers to run")
    parser.add_argument("--skip-peers", action="store_true", help="run intelpact alone")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="intelpact stores: sqlite, postgresql")
    parser.add_argument("--workers", default="1,4",
                        help="worker counts, on each store")
    parser.add_argument("--ingest-size", type=int, default=20_000,
                        help="objects POSTed over HTTP per store and worker count")
    parser.add_argument("--loaders", type=int, default=os.cpu_count() or 2,
                        help="publisher processes loading a store in-process")
    parser.add_argument("--gets", type=int, default=4000,
                        help="single-object GETs per configuration")
    parser.add_argument("--clients", type=int, default=8, help="concurrent GET clients")
    parser.add_argument("--repeat", type=int, default=20,
                        help="requests per filtered query (the median is reported)")
    parser.add_argument("--cap", type=float, default=60.0,
                        help="seconds for a peer's paged read (half for its GETs and its "
                        "filtered queries)")
    parser.add_argument("--pg-url", help="make the databases on this PostgreSQL server "
                        "(e.g. postgresql://postgres@127.0.0.1:5432/postgres) instead of "
                        "starting one as tests/pg.py does")
    parser.add_argument("--tmp", help="folder for the nodes, the PostgreSQL server and the "
                        "peers' files (None: the system's temporary folder)")
    parser.add_argument("--opentaxii-python", help="a python with OpenTAXII 0.9.3 and gunicorn")
    parser.add_argument("--medallion-python", help="a python with medallion 3.0.0")
    args = parser.parse_args()

    sizes = ints(args.sizes)
    peer_sizes = [] if args.skip_peers else ints(args.peer_sizes)
    peers = [] if args.skip_peers or not peer_sizes else \
        [p.strip() for p in args.peers.split(",") if p.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    workers = ints(args.workers)
    for n in [*sizes, *peer_sizes, args.ingest_size]:
        if n <= 0 or n % BATCH:
            parser.error(f"{n}: sizes are positive multiples of {BATCH}")
    for b in backends:
        if b not in ("sqlite", "postgresql"):
            parser.error(f"{b}: the stores are sqlite and postgresql")
    for p in peers:
        if p not in ("opentaxii", "medallion"):
            parser.error(f"{p}: the peers are opentaxii and medallion")

    started = time.perf_counter()
    source = Path(sys.modules[Node.__module__].__file__ or ".").resolve().parents[2]
    results: dict[str, Any] = {
        "bench": "scale", "cpus": os.cpu_count(), "load_start": os.getloadavg()[0],
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "intelpact_from": str(source),
                    # the checkout's revision, when that is the code that runs
                    "revision": git_revision() if source == ROOT / "src" else "",
                    },
        "config": {"sizes": sizes, "peer_sizes": peer_sizes, "peers": peers,
                   "backends": backends, "workers": workers, "ingest_size": args.ingest_size,
                   "loaders": args.loaders, "gets": args.gets, "clients": args.clients,
                   "repeat": args.repeat, "cap_s": args.cap, "batch": BATCH, "page": PAGE},
        "intelpact": {"ingest": {}, "loads": {}, "reads": {}}, "peers": {}}
    say(f"scale benchmark: load average {results['load_start']:.2f} on {os.cpu_count()} CPUs"
        + ("; other work on the machine will slow every server down"
           if results["load_start"] > (os.cpu_count() or 1) * 0.5 else ""))
    otx = opentaxii_python(args.opentaxii_python) if "opentaxii" in peers else None
    med = medallion_python(args.medallion_python) if "medallion" in peers else None

    largest = max([*sizes, *peer_sizes, args.ingest_size])
    say(f"generating {largest:,} indicators ...", end="")
    t = time.perf_counter()
    data = Data.make(largest, max([0, *peer_sizes]))
    say(f" {time.perf_counter() - t:.0f} s")

    pg: pgserver.Server | None = None
    db_pid: int | None = None
    if "postgresql" in backends:
        if args.pg_url:
            pg = pgserver.Server(args.pg_url)
        else:
            say("starting PostgreSQL ...", end="")
            pg = pgserver.Server().start(args.tmp)
            pid_file = pg.root / "data" / "postmaster.pid" if pg.root else None
            if pid_file and pid_file.exists():
                db_pid = int(pid_file.read_text().split()[0])
            say(f" {pg.url}")
        pg.database("probe")
        results["machine"]["postgresql"] = pg.version
        results["machine"]["postgresql_settings"] = pgserver.SETTINGS if not args.pg_url \
            else "external"

    def database(backend: str) -> str | None:
        return pg.database() if backend == "postgresql" and pg is not None else None

    def phase(text: str) -> Callable[[], None]:
        say(f"{text} ...", end="")
        t0 = time.perf_counter()
        return lambda: say(f" {time.perf_counter() - t0:.0f} s "
                           f"(run {time.perf_counter() - started:.0f} s)")

    try:
        # the peers first: smallest, and a failure shows early
        for peer in peers:
            results["peers"][peer] = {}
            for n in peer_sizes:
                done = phase(f"{peer}: {n:,} objects (load over HTTP, reads; capped at "
                             f"{args.cap:.0f} s)")
                with workdir(args.tmp, f"{peer}-scale-") as work:
                    try:
                        if peer == "opentaxii" and otx is not None:
                            results["peers"][peer][str(n)] = run_opentaxii(
                                otx, data, n, work, args, workers)
                        elif med is not None:
                            results["peers"][peer][str(n)] = run_medallion(med, data, n, work,
                                                                           args)
                    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                        say(f" failed: {exc}")
                        results["peers"][peer][str(n)] = {"error": str(exc)[:500]}
                done()
        # intelpact: ingest over HTTP
        for backend in backends:
            for w in workers:
                done = phase(f"intelpact {backend}, {w} worker(s): ingest {args.ingest_size:,} "
                             f"objects over HTTP, {w} client(s)")
                with workdir(args.tmp, "intelpact-scale-") as work:
                    made = make_node(work, database(backend), data.markings)
                    served = serve_intelpact(made, w, "ingest")
                    with running(served, PUBLISHER):
                        settle(served, w)
                        meter = Meter(served.proc.pid, db_pid)
                        with meter:
                            ingest = concurrent_ingest(served, None,
                                                       data.envelopes(args.ingest_size), w)
                        ingest.update(meter.cpu())
                        results["intelpact"]["ingest"][f"{backend}/{w}"] = ingest
                    if made.database and pg is not None:
                        pg.drop(made.database)
                done()
        # intelpact: reads, per store and size
        for backend in backends:
            results["intelpact"]["reads"][backend] = {}
            results["intelpact"]["loads"][backend] = {}
            for n in sizes:
                with workdir(args.tmp, "intelpact-scale-") as work:
                    made = make_node(work, database(backend), data.markings)
                    done = phase(f"intelpact {backend}: loading {n:,} objects in-process "
                                 f"({args.loaders} publishers)")
                    if n >= 50_000:
                        say("")
                    load = load_in_process(made, data, n, args.loaders, backend)
                    done()
                    results["intelpact"]["loads"][backend][str(n)] = load
                    run: dict[str, Any] = {"mb": data.mb(n), "load": load}
                    marks: list[str] | None = None
                    for w in workers:
                        done = phase(f"intelpact {backend}, {n:,} objects, {w} worker(s): reads")
                        served = serve_intelpact(made, w, f"read-{w}")
                        with running(served, READER):
                            settle(served, w)
                            run[f"w{w}"], marks = measure_intelpact(
                                served, made.reader_token, data, n, w, args, db_pid, marks)
                        done()
                    results["intelpact"]["reads"][backend][str(n)] = run
                    if made.database and pg is not None:
                        pg.drop(made.database)
    finally:
        if pg is not None and not args.pg_url:
            pg.stop()

    results["seconds"] = time.perf_counter() - started
    results["load_end"] = os.getloadavg()[0]
    results["ratios"] = ratios(results)
    table(results)
    results["targets_met"] = check_targets(results)
    say(f"\nrun time {results['seconds']:.0f} s; load average {results['load_start']:.2f} at "
        f"the start, {results['load_end']:.2f} at the end, on {os.cpu_count()} CPUs")
    print(json.dumps(rounded(results), ensure_ascii=False, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
