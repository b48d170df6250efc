"""Benchmark: TAXII 2.1 over HTTP, intelpact against medallion 3.0.0 in the same run.

Run: make bench   (or .venv/bin/python bench/taxii.py)

Both servers run as their own processes on 127.0.0.1 and are driven by the
same HTTP client (httpx, one keep-alive connection), on the same
deterministic data: 10 national marking-definitions and N indicators of about
0.8 KB each, every indicator under one of the 10 markings.

- intelpact: a fresh JPN node per size in a temporary directory (TLS off by
  default, like medallion; ``--tls`` serves HTTPS), served by ``intelpact
  serve``. A publisher POSTs the data in envelopes of 1,000 objects (each
  object validated, labelled and committed durably before the 202). The reader
  is a JPN analyst cleared 極秘 in the MARITIME community whose access filter
  lets them see 7 of the 10 markings: 70 % of the indicators.
- medallion 3.0.0 (PyPI) with its memory backend, in its own virtual
  environment (.venv-medallion, made here if missing). Ingest is measured on an
  empty server by POSTing the same envelopes; reads on a second server loaded
  from a data file (discovery, an API root, one collection with the objects
  and their manifest). medallion has no access control: it serves everything.

Measures, per size: ingest objects/s, by one publisher on one worker, and (on
a second fresh node, ``--parallel`` N, default the CPU count) by N publishers
at once, on one worker by default: its pool of processes validates and signs on
every core, and a second publisher's envelope is read and parsed while the
first one's is stored (``--parallel-workers`` W serves it with ``serve --workers
W`` instead, each worker with its share of the cores); paged reads (limit=1000, following
``next``) in objects served per second, client-side JSON parsing included;
single-object GET latency p50/p95/p99 over random ids the reader may see.
Sizes 2,000 and 10,000 for both servers, 100,000 for intelpact alone. medallion
is slow on reads, so each of its read measurements is capped (``--cap``
seconds); a capped measurement reports what completed and says so (its ratio
is then a lower bound for intelpact).

Memory: the intelpact server's peak RSS (VmHWM) is reset just before the
paged read (/proc/PID/clear_refs) and read after it: the read's own peak,
beside the resident size before it and the size of the collection's JSON. A
small request just before each measured read refreshes the reader's login, so
that no argon2 verification (64 MiB by design; the node keeps a verified
password for 60 s) falls inside a measured read.

The ingest also records the server's CPU time per object (its processes, user +
system), which other work on the machine disturbs less than the rate.
``--in-process`` measures only ``Publisher.publish`` in this process, CPU time per
object on a fresh SQLite node (``--prefill 0,300000``: also on one already holding
300,000 indicators, loaded with the store API), and nothing else.

Targets (at 100,000 objects, access filter on): paged reads >= 20,000
objects/s; single-object GET p50 < 5 ms; ingest (validated, labelled, durable)
>= 5,000 objects/s; memory flat while streaming (the paged read raises the
server's peak RSS by less than a tenth of the collection's size).

The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from intelpact.model import Markings, Policy, load_agreement, national_marking
from intelpact.services.node import Node

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from helpers import free_port  # noqa: E402 - ports below the ephemeral range, as the tests

AGREEMENT = ROOT / "agreements" / "jpn-nzl.toml"
MEDALLION_VENV = ROOT / ".venv-medallion"
MEDALLION_VERSION = "3.0.0"
TAXII = "application/taxii+json;version=2.1"
STIX = "application/stix+json;version=2.1"
BATCH = 1_000
PAGE = 1_000
SEED = 20261101
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

PUBLISHER = ("tanaka", "tanaka-bench-password")
PUBLISHER_PROFILE: dict[str, Any] = {
    "party": "JPN", "clearance": "機密", "caveats": ["JPNEO"],
    "communities": ["MARITIME", "CLIMATE"], "roles": ["analyst", "publisher"]}
READER = ("sato", "sato-bench-password")
READER_PROFILE: dict[str, Any] = {
    "party": "JPN", "clearance": "極秘", "communities": ["MARITIME"], "roles": ["analyst"]}

# (level, rel_to, caveats, communities): the reader (JPN, 極秘, MARITIME) sees the
# first seven and not the last three (above clearance, another community, a caveat).
MARKINGS = [
    ("指定なし", ("NZL",), (), ()),
    ("秘", ("NZL",), (), ()),
    ("秘", (), (), ()),
    ("極秘", ("NZL",), (), ()),
    ("極秘", (), (), ()),
    ("秘", ("NZL",), (), ("MARITIME",)),
    ("極秘", (), (), ("MARITIME",)),
    ("機密", ("NZL",), (), ()),
    ("秘", ("NZL",), (), ("CLIMATE",)),
    ("極秘", (), ("JPNEO",), ()),
]

WORDS = ["vessel", "transshipment", "port", "cable", "landing", "station", "ransomware",
         "loader", "beacon", "domain", "infrastructure", "fishing", "fleet", "registry",
         "spoofed", "identity", "relay", "operator", "campaign", "exfiltration", "staging",
         "server", "certificate", "maritime", "patrol", "telemetry", "harbour", "authority",
         "supply", "chain", "implant", "credential", "phishing", "lure"]

TARGETS = {"paged_read_per_s": 20_000, "get_p50_ms": 5.0, "ingest_per_s": 5_000,
           "read_growth_share": 0.10}


# -- data ------------------------------------------------------------------------------

def stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def marking_definitions() -> list[dict[str, Any]]:
    agreement = load_agreement(AGREEMENT)
    return [national_marking(agreement, "JPN", level, rel_to=rel or None, caveats=caveats,
                             communities=communities)
            for level, rel, caveats, communities in MARKINGS]


def indicators(n: int, markings: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """``n`` indicators, and the index of each one's marking (exactly 1/10 each)."""
    rng = random.Random(SEED)
    objects, which = [], []
    block: list[int] = []
    for i in range(n):
        if not block:
            block = list(range(len(markings)))
            rng.shuffle(block)
        k = block.pop()
        objects.append(indicator(i, rng, markings[k]["id"]))
        which.append(k)
    return objects, which


def indicator(i: int, rng: random.Random, marking_id: str) -> dict[str, Any]:
    """The ``i``-th benchmark indicator (about 0.97 KB), its random parts drawn from ``rng``."""
    t = T0 + dt.timedelta(seconds=i)
    words = " ".join(rng.choice(WORDS) for _ in range(18))
    ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{uuid.UUID(int=rng.getrandbits(128), version=4)}",
        "created": stamp(t),
        "modified": stamp(t),
        "name": f"Bench indicator {i:06d}: {rng.choice(WORDS)} {rng.choice(WORDS)}",
        "description": f"Observed {words}.",
        "indicator_types": ["malicious-activity"],
        "pattern": f"[ipv4-addr:value = '{ip}'] OR "
                   f"[domain-name:value = 'relay-{i:06d}.example.net']",
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": stamp(t),
        "kill_chain_phases": [{"kill_chain_name": "mitre-attack",
                               "phase_name": "command-and-control"}],
        "confidence": rng.randint(10, 95),
        "labels": ["bench", rng.choice(WORDS)],
        "external_references": [{"source_name": "intelpact-bench",
                                 "external_id": f"IPB-{i:06d}"}],
        "object_marking_refs": [marking_id],
    }


def envelopes(objects: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    return [(len(objects[i:i + BATCH]),
             json.dumps({"objects": objects[i:i + BATCH]}, ensure_ascii=False).encode())
            for i in range(0, len(objects), BATCH)]


# -- processes ---------------------------------------------------------------------------

def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
            elif key == "Threads":
                out[key] = int(value)
    return out


def reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class Served:
    name: str
    proc: subprocess.Popen[bytes]
    base: str
    objects_url: str
    verify: str | bool = False
    log: Path | None = None

    def client(self, who: tuple[str, str], timeout: float = 600.0) -> httpx.Client:
        return httpx.Client(auth=who, verify=self.verify, timeout=timeout,
                            headers={"Accept": TAXII})

    def wait(self, who: tuple[str, str], seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        with self.client(who, timeout=5) as c:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self.proc.returncode}); see "
                                       f"{self.log}")
                try:
                    if c.get(f"{self.base}/taxii2/").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not answer in {seconds:.0f} s")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextmanager
def running(served: Served, who: tuple[str, str]) -> Iterator[Served]:
    try:
        served.wait(who)
        yield served
    finally:
        served.stop()


def reader_allows(markings: list[dict[str, Any]]) -> list[bool]:
    """For each marking, whether the reader may read what it marks: the core model says."""
    agreement = load_agreement(AGREEMENT)
    policy = Policy(agreement)
    reader = policy.person(READER[0], **READER_PROFILE)
    model = Markings(agreement)
    for m in markings:
        model.add(m)
    probe = "indicator--00000000-0000-4000-8000-000000000000"
    return [policy.may_read(reader, model.label({"id": probe, "object_marking_refs": [m["id"]]},
                                                originator="JPN").base).allowed
            for m in markings]


def intelpact_server(work: Path, tls: bool, workers: int = 1) -> Served:
    """A fresh node with the publisher and the reader, served by ``intelpact serve``
    (which also runs the node's federation listener and courier, with no partners),
    with ``workers`` TAXII processes."""
    port = free_port()
    node = Node.create(work / "node", party="JPN", agreement_file=AGREEMENT, tls=tls,
                       port=port, federation_port=free_port())
    node.people.add(PUBLISHER[0], password=PUBLISHER[1], **PUBLISHER_PROFILE)
    node.people.add(READER[0], password=READER[1], **READER_PROFILE)
    cid = node.default_collection().collection_id
    root = node.config.api_root
    cert = str(node.config.tls_cert) if tls and node.config.tls_cert else False
    node.close()
    exe = Path(sys.executable).parent / "intelpact"
    log = work / "intelpact.log"
    command = [str(exe), "serve", str(work / "node")]
    if workers > 1:
        command += ["--workers", str(workers)]
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    return Served("intelpact", proc, base, f"{base}/{root}/collections/{cid}/objects/",
                  cert, log)


MEDALLION_ROOT = "bench"
MEDALLION_COLLECTION = "5b0b6f58-6a2d-4c52-9bd0-0d1c6e8b4c21"
MEDALLION_USERS = {PUBLISHER[0]: PUBLISHER[1], READER[0]: READER[1]}


def medallion_python(explicit: str | None) -> Path:
    """The medallion venv's python, creating the venv and installing medallion if needed."""
    # absolute, not resolved: the venv's python is a symlink that must stay one
    python = Path(explicit).absolute() if explicit else MEDALLION_VENV / "bin" / "python"
    check = [str(python), "-c", "import medallion, sys; "
             f"sys.exit(medallion.__version__ != {MEDALLION_VERSION!r})"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    if explicit:
        raise SystemExit(f"{python}: no medallion {MEDALLION_VERSION} there")
    print(f"installing medallion {MEDALLION_VERSION} into {MEDALLION_VENV} ...", flush=True)
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
    subprocess.run([base, "-m", "venv", str(MEDALLION_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
                   check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                    f"medallion=={MEDALLION_VERSION}"], check=True)
    subprocess.run(check, check=True)
    return python


def medallion_server(python: Path, work: Path, objects: list[dict[str, Any]],
                     tag: str) -> Served:
    """medallion on a free port, its memory backend loaded with ``objects``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start = T0 + dt.timedelta(days=400)
    manifest = []
    for i, obj in enumerate(objects):
        added = start + dt.timedelta(microseconds=i)
        manifest.append({"id": obj["id"], "date_added": added.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                         "version": obj.get("modified") or obj["created"],
                         "media_type": STIX})
    data = {
        "/discovery": {"title": "medallion (bench)", "description": "bench peer",
                       "default": f"{base}/{MEDALLION_ROOT}/",
                       "api_roots": [f"{base}/{MEDALLION_ROOT}/"]},
        MEDALLION_ROOT: {
            "information": {"title": "bench", "description": "bench peer",
                            "versions": [TAXII], "max_content_length": 10 * 1024 * 1024},
            "status": [],
            "collections": [{"id": MEDALLION_COLLECTION, "title": "bench",
                             "description": "bench peer", "can_read": True,
                             "can_write": True, "media_types": [STIX],
                             "objects": objects, "manifest": manifest}],
        },
    }
    data_file = work / f"medallion-{tag}-data.json"
    data_file.write_text(json.dumps(data), encoding="utf-8")
    config = {"backend": {"module": "medallion.backends.memory_backend",
                          "module_class": "MemoryBackend", "filename": str(data_file)},
              "users": MEDALLION_USERS, "taxii": {"max_page_size": PAGE}}
    config_file = work / f"medallion-{tag}-config.json"
    config_file.write_text(json.dumps(config), encoding="utf-8")
    log = work / f"medallion-{tag}.log"
    proc = subprocess.Popen([str(python), "-m", "medallion.scripts.run", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "ERROR", str(config_file)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=work)
    return Served("medallion", proc, base,
                  f"{base}/{MEDALLION_ROOT}/collections/{MEDALLION_COLLECTION}/objects/",
                  False, log)


# -- measurements ----------------------------------------------------------------------

def post(client: httpx.Client, url: str, count: int, body: bytes) -> None:
    r = client.post(url, content=body, headers={"Content-Type": TAXII})
    if r.status_code != 202:
        raise RuntimeError(f"POST {url}: {r.status_code} {r.text[:300]}")
    status = r.json()
    if status.get("success_count") != count:
        raise RuntimeError(f"POST {url}: {status.get('success_count')} of {count} stored: "
                           f"{json.dumps(status.get('failures', [])[:3])[:300]}")


def ingest(served: Served, markings: list[dict[str, Any]],
           batches: list[tuple[int, bytes]], clients: int = 1) -> dict[str, Any]:
    """POST every envelope; with ``clients`` > 1, that many publishers at once, each on
    its own connection, taking envelopes in turn."""
    with served.client(PUBLISHER) as c:
        post(c, served.objects_url, len(markings), json.dumps({"objects": markings}).encode())
    total = sum(n for n, _ in batches)
    errors: list[BaseException] = []

    def publisher(mine: list[tuple[int, bytes]]) -> None:
        try:
            with served.client(PUBLISHER) as c:
                for n, body in mine:
                    post(c, served.objects_url, n, body)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(batches[i::clients],))
               for i in range(clients)]
    cpu = tree_cpu(served.proc.pid)
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    cpu = tree_cpu(served.proc.pid) - cpu
    if errors:
        raise RuntimeError(f"ingest failed: {errors[0]}")
    # the server's CPU per object (its processes, user + system): what other work on the
    # machine disturbs least; wall-clock rates move with the load
    return {"objects": total, "seconds": elapsed, "per_s": total / elapsed,
            "clients": clients, "server_cpu_us": cpu / total * 1e6}


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its live descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            stats[int(name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo.extend(q for q, (parent, _) in stats.items() if parent == p)
    return total


def paged_read(served: Served, who: tuple[str, str], cap: float, total: int = 0,
               marks: list[str] | None = None) -> dict[str, Any]:
    """Read the whole collection a page at a time; stop (incomplete) after ``cap`` s.

    When stopped, ``upper_bound_per_s`` bounds the whole read's rate: it would
    have taken longer than ``cap`` for at most ``total`` objects."""
    ids: list[str] = []
    pages = 0
    complete = False
    params: dict[str, Any] = {"limit": PAGE}
    with served.client(who) as c:
        start = time.perf_counter()
        while True:
            left = cap - (time.perf_counter() - start)
            if left <= 0:
                break
            try:
                r = c.get(served.objects_url, params=params, timeout=left)
            except httpx.TimeoutException:
                break
            if r.status_code != 200:
                raise RuntimeError(f"GET objects: {r.status_code} {r.text[:300]}")
            envelope = json.loads(r.content)
            ids.extend(o["id"] for o in envelope.get("objects", []))
            if marks is not None:  # each page's X-TAXII-Date-Added-Last
                marks.append(r.headers.get("X-TAXII-Date-Added-Last", ""))
            pages += 1
            if not envelope.get("more"):
                complete = True
                break
            params = {"limit": PAGE, "next": envelope["next"]}
        elapsed = time.perf_counter() - start
    out = {"objects": len(ids), "pages": pages, "seconds": elapsed, "complete": complete,
           "per_s": len(ids) / elapsed, "ids": ids}
    if not complete:
        out["upper_bound_per_s"] = max(total, len(ids)) / elapsed
    return out


def single_gets(served: Served, who: tuple[str, str], ids: list[str], cap: float
                ) -> dict[str, Any]:
    latencies = []
    with served.client(who) as c:
        for oid in ids[:5]:  # warm up: connection, login cache
            c.get(f"{served.objects_url}{oid}/")
        start = time.perf_counter()
        for oid in ids:
            if time.perf_counter() - start > cap:
                break
            t = time.perf_counter()
            r = c.get(f"{served.objects_url}{oid}/")
            latencies.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"GET {oid}: {r.status_code} {r.text[:300]}")
        elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"gets": len(latencies), "per_s": len(latencies) / elapsed,
            "p50_ms": q[49] * 1000, "p95_ms": q[94] * 1000, "p99_ms": q[98] * 1000,
            "complete": len(latencies) == len(ids)}


def fresh_login(served: Served, who: tuple[str, str]) -> None:
    """One small request before a measured read. The node keeps a verified password for
    60 s; verifying it again (argon2, 64 MiB and tens of ms by design) is not streaming."""
    with served.client(who) as c:
        c.get(served.objects_url, params={"limit": 1})


def hidden_is_404(served: Served, oid: str) -> bool:
    with served.client(READER) as c:
        return c.get(f"{served.objects_url}{oid}/").status_code == 404


@dataclass
class Dataset:
    """The markings and the first ``n`` indicators; the ids the reader may and may not see,
    and the ids every server is asked for one by one."""

    n: int
    markings: list[dict[str, Any]]
    objects: list[dict[str, Any]]
    visible: list[str]
    hidden: list[str]
    sample: list[str]
    batches: list[tuple[int, bytes]]

    @classmethod
    def make(cls, n: int, markings: list[dict[str, Any]], objects: list[dict[str, Any]],
             which: list[int], allowed: list[bool], gets: int) -> Dataset:
        objects, which = objects[:n], which[:n]
        visible = [o["id"] for o, k in zip(objects, which, strict=True) if allowed[k]]
        hidden = [o["id"] for o, k in zip(objects, which, strict=True) if not allowed[k]]
        sample = random.Random(SEED + n).sample(visible, min(gets, len(visible)))
        return cls(n, markings, objects, visible, hidden, sample, envelopes(objects))

    @property
    def mb(self) -> float:
        return sum(len(b) for _, b in self.batches) / 1e6


def run_parallel_ingest(data: Dataset, work: Path, tls: bool, clients: int,
                        workers: int) -> dict[str, Any]:
    """Ingest on a fresh node served by ``workers`` TAXII processes, with ``clients``
    publishers POSTing at once."""
    served = intelpact_server(work, tls, workers=workers)
    with running(served, PUBLISHER):
        result = ingest(served, data.markings, data.batches, clients=clients)
    result["workers"] = workers
    return result


def run_intelpact(data: Dataset, work: Path, tls: bool) -> dict[str, Any]:
    served = intelpact_server(work, tls)
    out: dict[str, Any] = {}
    with running(served, PUBLISHER):
        out["ingest"] = ingest(served, data.markings, data.batches)
        if not all(hidden_is_404(served, oid) for oid in data.hidden[:20]):
            raise RuntimeError("the reader can GET an object their access filter hides")
        out["get"] = single_gets(served, READER, data.sample, cap=3600)
        pid = served.proc.pid
        fresh_login(served, READER)
        before = memory_kb(pid)
        reset = reset_peak(pid)
        read = paged_read(served, READER, cap=3600)
        after = memory_kb(pid)
        got = set(read.pop("ids"))  # the visible indicators, and some marking-definitions
        if not set(data.visible) <= got or got & set(data.hidden) or \
                len(got) - len(data.visible) > len(data.markings):
            raise RuntimeError(f"the paged read returned {len(got)} objects; the model allows "
                               f"{len(data.visible)} indicators (+ marking-definitions)")
        read["visible_share"] = len(data.visible) / data.n
        out["read"] = read
        out["memory"] = {"rss_before_kb": before["VmRSS"], "hwm_before_kb": before["VmHWM"],
                         "hwm_after_kb": after["VmHWM"], "rss_after_kb": after["VmRSS"],
                         "anon_before_kb": before["RssAnon"], "anon_after_kb": after["RssAnon"],
                         "threads_before": before["Threads"], "threads_after": after["Threads"],
                         "peak_reset": reset,
                         "read_growth_kb": after["VmHWM"] - before["VmRSS"]
                         if reset else after["VmHWM"] - before["VmHWM"]}
        fresh_login(served, PUBLISHER)
        full = paged_read(served, PUBLISHER, cap=3600)
        full.pop("ids")
        out["read_unfiltered"] = full
    return out


def run_medallion(python: Path, data: Dataset, work: Path, cap: float) -> dict[str, Any]:
    """Ingest on an empty medallion; GETs and paged reads on one loaded from a file."""
    out: dict[str, Any] = {}
    with running(medallion_server(python, work, [], f"{data.n}-ingest"), PUBLISHER) as s:
        out["ingest"] = ingest(s, data.markings, data.batches)
    loaded = [*data.markings, *data.objects]
    with running(medallion_server(python, work, loaded, f"{data.n}-read"), READER) as s:
        out["get"] = single_gets(s, READER, data.sample, cap=cap / 2)
        read = paged_read(s, READER, cap=cap, total=len(loaded))
        read.pop("ids")
        out["read"] = read
    return out


# -- report ----------------------------------------------------------------------------

def fmt(x: float, unit: str = "") -> str:
    return f"{x:,.0f}{unit}" if x >= 100 else f"{x:,.1f}{unit}"


def row(size: str, label: str, ours: str, theirs: str = "", ratio: str = "") -> None:
    print(f"{size:>8}  {label:<30} {ours:>14} {theirs:>14} {ratio:>9}")


def table(results: dict[str, Any]) -> None:
    print()
    row("objects", "measure", "intelpact", "medallion", "ratio")
    for size, r in results["runs"].items():
        ip, md, ratios = r["intelpact"], r.get("medallion"), r.get("ratios", {})
        row(size, "ingest objects/s", fmt(ip["ingest"]["per_s"]),
            fmt(md["ingest"]["per_s"]) if md else "",
            f"x{ratios['ingest']:.1f}" if md else "")
        if "ingest_parallel" in ip:
            par = ip["ingest_parallel"]
            row(size, f"  {par['clients']} publishers, {par['workers']} worker(s)",
                fmt(par["per_s"]))
        if md:
            mr = md["read"]
            theirs = fmt(mr["per_s"]) if mr["complete"] else f"<{fmt(mr['upper_bound_per_s'])}*"
            ratio = ("" if mr["complete"] else ">") + f"x{ratios['read']:,.0f}"
        else:
            theirs = ratio = ""
        row(size, "paged read objects/s (reader)", fmt(ip["read"]["per_s"]), theirs, ratio)
        if md and not md["read"]["complete"]:
            row(size, "  medallion, when stopped", "",
                f"{md['read']['objects']} in {md['read']['seconds']:.0f} s")
        row(size, "paged read objects/s (all)", fmt(ip["read_unfiltered"]["per_s"]))
        mark = "*" if md and not md["get"]["complete"] else ""
        row(size, "GET p50 ms", f"{ip['get']['p50_ms']:.2f}",
            f"{md['get']['p50_ms']:.1f}{mark}" if md else "",
            f"x{ratios['get_p50']:.0f}" if md else "")
        row(size, "GET p95 / p99 ms", f"{ip['get']['p95_ms']:.1f} / {ip['get']['p99_ms']:.1f}",
            f"{md['get']['p95_ms']:.0f} / {md['get']['p99_ms']:.0f}{mark}" if md else "")
        row(size, "GETs/s", fmt(ip["get"]["per_s"]),
            f"{fmt(md['get']['per_s'])}{mark}" if md else "",
            f"x{ratios['get_per_s']:.0f}" if md else "")
        mem = ip["memory"]
        row(size, "server RSS before read MB", f"{mem['rss_before_kb'] / 1024:.0f}")
        row(size, "peak RSS growth in read MB", f"{mem['read_growth_kb'] / 1024:.1f}")
    print("ratio = intelpact / medallion (GET p50: medallion / intelpact). * = medallion "
          "stopped at the cap: GETs from the ids it reached; reads: an upper bound for medallion, "
          "so the ratio is a lower bound")


def check_targets(results: dict[str, Any]) -> dict[str, Any]:
    largest = max(results["runs"], key=int)
    r = results["runs"][largest]["intelpact"]
    growth_share = (r["memory"]["read_growth_kb"] * 1024) / (results["runs"][largest]["mb"] * 1e6)
    met = {
        "objects": int(largest),
        "paged_read": r["read"]["per_s"] >= TARGETS["paged_read_per_s"],
        "get_p50": r["get"]["p50_ms"] < TARGETS["get_p50_ms"],
        "ingest": max(r["ingest"]["per_s"], r.get("ingest_parallel", {}).get("per_s", 0))
        >= TARGETS["ingest_per_s"],
        "memory_flat": growth_share < TARGETS["read_growth_share"],
        "read_growth_share": growth_share,
    }
    print(f"\ntargets at {int(largest):,} objects (reader sees "
          f"{r['read']['visible_share']:.0%}):")
    print(f"  paged reads  {r['read']['per_s']:>10,.0f} objects/s  (>= 20,000)   "
          f"{'met' if met['paged_read'] else 'NOT met'}")
    print(f"  GET p50      {r['get']['p50_ms']:>10.2f} ms         (< 5)        "
          f"{'met' if met['get_p50'] else 'NOT met'}")
    best = max(r["ingest"]["per_s"], r.get("ingest_parallel", {}).get("per_s", 0))
    print(f"  ingest       {best:>10,.0f} objects/s  (>= 5,000)    "
          f"{'met' if met['ingest'] else 'NOT met'}"
          + (f"  ({r['ingest_parallel']['clients']} publishers, "
             f"{r['ingest_parallel']['workers']} worker(s))"
             if best != r["ingest"]["per_s"] else "  (1 publisher, 1 worker)"))
    print(f"  memory       {r['memory']['read_growth_kb'] / 1024:>10.1f} MB peak growth over "
          f"{results['runs'][largest]['mb']:.0f} MB of objects ({growth_share:.1%}; < 10%)  "
          f"{'met' if met['memory_flat'] else 'NOT met'}")
    return met


# -- in-process ingest: CPU per object of Publisher.publish --------------------------------

def prefill(node: Node, cid: str, k: int, markings: list[dict[str, Any]]) -> float:
    """Put ``k`` more indicators of the benchmark's shape (other ids) straight into the
    store: labelled, signed and canonical like published ones, but not validated or
    audited, in transactions of 500; returns the seconds it took."""
    from intelpact.crypto.signing import sign_object
    from intelpact.services.publish import canonical_body, object_version
    from intelpact.store.base import NewObject

    rng = random.Random(SEED + 1)
    start = time.perf_counter()
    key = node.federation.signer().key  # checked once (Node.sign asks the store each time)
    for first in range(0, k, 500):
        batch = []
        for i in range(first, min(k, first + 500)):
            obj = sign_object(indicator(i, rng, markings[i % len(markings)]["id"]), key, "JPN")
            labels = node.markings.label(obj, originator="JPN")
            body, digest = canonical_body(obj)
            batch.append(NewObject(obj["id"], "indicator", "2.1", object_version(obj), body,
                                   digest, labels.base, labels.banner, "JPN", False,
                                   published_by=PUBLISHER[0]))
        node.store.add_objects(cid, batch)
    return time.perf_counter() - start


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_in_process(n: int, prefilled: int, work: Path, processes: int = 0) -> dict[str, Any]:
    """Publish ``n`` indicators with ``Publisher.publish`` in this process, in envelopes of
    1,000 parsed by the node's JSON parser (what a TAXII POST does once it has the body;
    the parse is timed apart), on a fresh SQLite node holding ``prefilled`` objects.
    CPU time (user + system, this process) is what other work on the machine disturbs
    least; the node's audit integration, which a server runs in the background, is
    timed after. ``processes``: validate and sign in a pool of that many (started
    first); the CPU time is then this process's share only."""
    from intelpact.jsonio import parse_json

    markings = marking_definitions()
    node = Node.create(work / "node", party="JPN", agreement_file=AGREEMENT, tls=False,
                       port=free_port(), federation_port=free_port())
    try:
        node.people.add(PUBLISHER[0], password=PUBLISHER[1], **PUBLISHER_PROFILE)
        person = node.people.as_person(PUBLISHER[0]).person
        cid = node.default_collection().collection_id
        node.publisher.publish(person, cid, markings)
        fill = prefill(node, cid, prefilled, markings) if prefilled else 0.0
        node.audit.integrate()
        node.preparer.enable(processes)
        if processes and not node.preparer.start(timeout=120):
            raise RuntimeError("the publication pool did not start")
        bodies = [body for _, body in envelopes(indicators(n, markings)[0])]
        cpu, wall = cpu_seconds(), time.perf_counter()
        parsed = [parse_json(body)["objects"] for body in bodies]
        parse_cpu = cpu_seconds() - cpu
        cpu, wall = cpu_seconds(), time.perf_counter()
        for objects in parsed:
            status = node.publisher.publish(person, cid, objects)
            if status.body["success_count"] != len(objects):
                raise RuntimeError(f"publish: {json.dumps(status.body['failures'][:3])[:300]}")
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
        integrate = cpu_seconds()
        node.audit.integrate()
        integrate = cpu_seconds() - integrate
        stored = node.store.count(cid)
    finally:
        node.close()
    if stored != n + prefilled + len(markings):
        raise RuntimeError(f"{stored} objects stored, expected {n + prefilled + len(markings)}")
    return {"objects": n, "prefilled": prefilled, "processes": processes,
            "prefill_seconds": fill,
            "publish_us_cpu": cpu / n * 1e6, "publish_us_wall": wall / n * 1e6,
            "parse_us_cpu": parse_cpu / n * 1e6, "integrate_us_cpu": integrate / n * 1e6,
            "per_cpu_s": n / cpu, "per_s": n / wall,
            "with_parse_per_cpu_s": n / (cpu + parse_cpu)}


def main_in_process(sizes: list[int], prefilled: list[int], processes: list[int]) -> int:
    results: dict[str, Any] = {"bench": "taxii-in-process", "batch": BATCH,
                               "cpus": os.cpu_count(), "load_start": os.getloadavg()[0],
                               "runs": {}}
    for k, n, p in itertools.product(prefilled, sizes, processes):
        with tempfile.TemporaryDirectory(prefix=f"intelpact-inproc-{n}-") as tmp:
            run = run_in_process(n, k, Path(tmp), p)
        results["runs"][f"{n}@{k}" + (f"/{p}" if p else "")] = run
        print(f"{n:>9,} indicators on a store of {k:>9,}, pool of {p}: "
              f"{run['publish_us_cpu']:6.1f} µs "
              f"CPU/object in publish ({run['per_cpu_s']:,.0f} per CPU second, "
              f"{run['per_s']:,.0f}/s wall); parse {run['parse_us_cpu']:.1f} µs, audit "
              f"integration {run['integrate_us_cpu']:.1f} µs", flush=True)
    results["load_end"] = os.getloadavg()[0]
    print(json.dumps(rounded(results), ensure_ascii=False, separators=(",", ":")))
    return 0


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,10000,100000",
                        help="object counts for intelpact (default: 2000,10000,100000)")
    parser.add_argument("--medallion-sizes", default="2000,10000",
                        help="object counts also run on medallion (default: 2000,10000; "
                        "'' for none)")
    parser.add_argument("--gets", type=int, default=500, help="single-object GETs per size")
    parser.add_argument("--cap", type=float, default=60.0,
                        help="seconds allowed to medallion's paged read (half that to its "
                        "single-object GETs)")
    parser.add_argument("--tls", action="store_true", help="serve intelpact over HTTPS")
    parser.add_argument("--medallion-python", help="a python with medallion 3.0.0")
    parser.add_argument("--parallel", type=int, default=os.cpu_count() or 1,
                        help="also ingest with this many publishers at once (default: the "
                        "CPU count; 1 to skip)")
    parser.add_argument("--parallel-workers", type=int, default=1,
                        help="TAXII worker processes for that ingest (default 1: one worker, "
                        "whose pool validates and signs on every core)")
    parser.add_argument("--in-process", action="store_true",
                        help="only measure Publisher.publish in this process (CPU per object; "
                        "no servers, no medallion)")
    parser.add_argument("--prefill", default="0",
                        help="with --in-process: store sizes to publish onto, loaded with the "
                        "store API first (e.g. 0,300000)")
    parser.add_argument("--processes", default="0",
                        help="with --in-process: pool sizes to validate and sign with "
                        "(e.g. 0,2; 0: in this process)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.in_process:
        return main_in_process(sizes, [int(k) for k in args.prefill.split(",") if k],
                               [int(p) for p in args.processes.split(",") if p])
    msizes = {int(s) for s in args.medallion_sizes.split(",") if s}
    python = medallion_python(args.medallion_python) if msizes else None

    markings = marking_definitions()
    allowed = reader_allows(markings)
    biggest, which = indicators(max(sizes), markings)
    results: dict[str, Any] = {"bench": "taxii", "tls": args.tls, "batch": BATCH,
                               "page": PAGE, "medallion_cap_s": args.cap,
                               "cpus": os.cpu_count(), "load_start": os.getloadavg()[0],
                               "runs": {}}
    if results["load_start"] > (os.cpu_count() or 1) * 0.75:
        print(f"note: load average {results['load_start']:.1f} on {os.cpu_count()} CPUs: "
              "other work will slow both servers down", flush=True)
    started = time.perf_counter()
    for n in sizes:
        data = Dataset.make(n, markings, biggest, which, allowed, args.gets)
        run: dict[str, Any] = {"mb": data.mb, "object_bytes": data.mb * 1e6 / n}
        with tempfile.TemporaryDirectory(prefix=f"intelpact-bench-{n}-") as tmp:
            print(f"{n:>7,} objects: intelpact ...", end="", flush=True)
            run["intelpact"] = run_intelpact(data, Path(tmp), args.tls)
            if args.parallel > 1:
                print(f" {args.parallel} publishers ...", end="", flush=True)
                run["intelpact"]["ingest_parallel"] = run_parallel_ingest(
                    data, Path(tmp) / "parallel", args.tls, args.parallel,
                    args.parallel_workers)
            if n in msizes and python is not None:
                print(" medallion ...", end="", flush=True)
                run["medallion"] = run_medallion(python, data, Path(tmp), args.cap)
                ip, md = run["intelpact"], run["medallion"]
                run["ratios"] = {
                    "ingest": ip["ingest"]["per_s"] / md["ingest"]["per_s"],
                    "read": ip["read"]["per_s"] / (md["read"]["per_s"] if md["read"]["complete"]
                                                   else md["read"]["upper_bound_per_s"]),
                    "read_lower_bound": not md["read"]["complete"],
                    "get_p50": md["get"]["p50_ms"] / ip["get"]["p50_ms"],
                    "get_per_s": ip["get"]["per_s"] / md["get"]["per_s"],
                }
        print(f" {time.perf_counter() - started:.0f} s", flush=True)
        results["runs"][str(n)] = run
    results["seconds"] = time.perf_counter() - started
    results["load_end"] = os.getloadavg()[0]
    table(results)
    results["targets_met"] = check_targets(results)
    print(json.dumps(rounded(results), ensure_ascii=False, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
