"""Benchmark: the audit log — durable appends, proofs, and what auditing costs a read.

Run: .venv/bin/python bench/audit.py   (part of `make bench`)

Each measurement has its peer in the same run:

- appends: events recorded durably (SQLite, synchronous=FULL) by 16 threads through
  the group commit, one event per call (16 requests at once) and 100 per call (a
  publication, a page), against the naive way — one durable transaction per event —
  on the same store; and 100 per call against the same without the events' MACs
  (``Store.event_macs`` unset in this process only), which is what the MACs cost;
- integration: events hashed into the tree per second (background work);
- proofs: inclusion proofs per second from the stored tree (one at a time, and 100
  per query as a partner audit asks), against the textbook RFC 9162 definition over
  the leaf hashes held in memory (``merkle.inclusion_proof``); and verification;
- reads: the TAXII read path with every read audited, against the same node with
  the read events dropped (``AuditLog.record_served`` replaced by a no-op in this process
  only: there is no switch for that in the product). Paged reads (limit 1,000) and
  single-object GETs, from 1 client and from 8 at once; the server runs in this
  process (uvicorn in a thread), so client and server share the interpreter in both
  runs alike.

Targets (issue 6): >= 20,000 events/s appended durably; read-path overhead under
10 %; >= 10,000 proofs/s.

The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from federation import rounded  # noqa: E402
from intelpact.crypto.merkle import inclusion_proof, leaf_hash, verify_inclusion  # noqa: E402
from intelpact.interfaces.taxii import create_app  # noqa: E402
from intelpact.services.node import Node  # noqa: E402
from taxii import (  # noqa: E402 - the TAXII benchmark's data and people
    AGREEMENT,
    PUBLISHER,
    PUBLISHER_PROFILE,
    READER,
    READER_PROFILE,
    TAXII,
    envelopes,
    free_port,
    indicators,
    marking_definitions,
)

TARGETS = {"append_per_s": 20_000, "read_overhead": 0.10, "proofs_per_s": 10_000}


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


# -- appends, integration, proofs ------------------------------------------------------------

def appends(node: Node, n: int, threads: int) -> dict[str, Any]:
    log = node.audit

    def work(k: int) -> None:
        for i in range(k):
            log.record(log.event("read", name=f"bench-{i}", originator="JPN",
                                 objects=[(f"indicator--{i:08d}", "2026-01-01")], via="bench"))

    def batches(k: int) -> None:  # a page of reads, a publication: many events per call
        for i in range(0, k, 100):
            log.record(*(log.event("read", name=f"bench-{j}", originator="JPN",
                                   objects=[(f"indicator--{j:08d}", "2026-01-01")], via="bench")
                         for j in range(i, i + 100)))

    per = n // threads
    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, [per] * threads))
    grouped = time.perf_counter() - t
    t = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(batches, [per] * threads))
    batched = time.perf_counter() - t
    # the same without the events' MACs (crypto/eventmacs.py): in this process only,
    # there is no switch for that in the product
    macs, node.store.event_macs = node.store.event_macs, None
    t = time.perf_counter()
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(batches, [per] * threads))
    finally:
        node.store.event_macs = macs
    unmacked = time.perf_counter() - t
    naive_n = max(200, n // 50)
    t = time.perf_counter()
    for i in range(naive_n):  # the peer: one durable transaction per event
        node.store.append_audit([log.event("read", name=f"naive-{i}", via="bench")])
    naive = time.perf_counter() - t
    return {"events": per * threads, "threads": threads,
            "group_commit_per_s": rate(per * threads, grouped),
            "batched_per_s": rate(per * threads, batched),
            "batched_without_macs_per_s": rate(per * threads, unmacked),
            "mac_cost": batched / unmacked - 1,
            "one_per_transaction_per_s": rate(naive_n, naive),
            "ratio": rate(per * threads, grouped) / rate(naive_n, naive)}


def integration(node: Node) -> dict[str, Any]:
    pending = node.store.audit_size()
    t = time.perf_counter()
    size, _ = node.audit.integrate()
    return {"events": pending, "per_s": rate(pending, time.perf_counter() - t), "size": size}


def proofs(node: Node, count: int) -> dict[str, Any]:
    size, root = node.audit.integrate()
    rng = random.Random(7)
    picks = [rng.randrange(size) for _ in range(count)]
    tree = node.audit.tree
    node.audit._cache.clear()  # cold: every hash from the store at first
    t = time.perf_counter()
    single = [tree.inclusion(i, size) for i in picks]
    one_at_a_time = time.perf_counter() - t
    node.audit._cache.clear()
    t = time.perf_counter()
    batched: list[list[bytes]] = []
    for start in range(0, count, 100):
        batched.extend(tree.inclusions(picks[start:start + 100], size))
    in_batches = time.perf_counter() - t
    assert batched == single
    leaves = [leaf_hash(e.body.encode()) for e in node.store.audit_events(0, size)]
    peer_n = max(20, count // 100)
    t = time.perf_counter()
    for i in picks[:peer_n]:
        assert inclusion_proof(i, leaves) == single[picks.index(i)]
    peer = time.perf_counter() - t
    t = time.perf_counter()
    for i, proof in zip(picks, single, strict=True):
        verify_inclusion(i, size, leaves[i], proof, root)
    verify = time.perf_counter() - t
    return {"tree_size": size, "proofs": count,
            "per_s": rate(count, one_at_a_time), "batched_per_s": rate(count, in_batches),
            "reference_per_s": rate(peer_n, peer),
            "ratio": rate(count, one_at_a_time) / rate(peer_n, peer),
            "verify_per_s": rate(count, verify)}


# -- reads -----------------------------------------------------------------------------------

@contextmanager
def serving(node: Node) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(node), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def paged(url: str) -> tuple[int, float]:
    with httpx.Client(auth=READER, headers={"Accept": TAXII}, timeout=600) as c:
        c.get(url, params={"limit": 1})
        n, params = 0, {"limit": 1000}
        t = time.perf_counter()
        while True:
            envelope = c.get(url, params=params).json()
            n += len(envelope.get("objects", []))
            if not envelope.get("more"):
                return n, time.perf_counter() - t
            params = {"limit": 1000, "next": envelope["next"]}


def gets(url: str, ids: list[str], clients: int) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def work(chunk: list[str]) -> None:
        mine = []
        with httpx.Client(auth=READER, headers={"Accept": TAXII}, timeout=60) as c:
            c.get(f"{url}{chunk[0]}/")
            for oid in chunk:
                t = time.perf_counter()
                r = c.get(f"{url}{oid}/")
                mine.append(time.perf_counter() - t)
                assert r.status_code == 200, r.text
        with lock:
            latencies.extend(mine)

    chunks = [ids[i::clients] for i in range(clients)]
    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, chunks))
    elapsed = time.perf_counter() - t
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"per_s": rate(len(latencies), elapsed), "p50_ms": q[49] * 1000,
            "p99_ms": q[98] * 1000}


def reads(work: Path, n: int, n_gets: int, rounds: int) -> dict[str, Any]:
    node = Node.create(work / "reads", party="JPN", agreement_file=AGREEMENT, tls=False,
                       port=free_port(), federation_port=free_port())
    node.people.add(PUBLISHER[0], password=PUBLISHER[1], **PUBLISHER_PROFILE)
    node.people.add(READER[0], password=READER[1], **READER_PROFILE)
    markings = marking_definitions()
    objects, _ = indicators(n, markings)
    cid = node.default_collection().collection_id
    url = f"/{node.config.api_root}/collections/{cid}/objects/"
    real_record = node.audit.record_served

    def off(*events: Any) -> None:
        return None

    results: dict[str, dict[str, list[float]]] = {"audited": {}, "not_audited": {}}
    with serving(node) as base:
        with httpx.Client(auth=PUBLISHER, timeout=600,
                          headers={"Accept": TAXII, "Content-Type": TAXII}) as c:
            for body in [json.dumps({"objects": markings}).encode()] + \
                    [b for _, b in envelopes(objects)]:
                assert c.post(base + url, content=body).status_code == 202
        visible = [o["id"] for o in objects[:n_gets * 4]]
        with httpx.Client(auth=READER, headers={"Accept": TAXII}) as c:
            visible = [oid for oid in visible
                       if c.get(f"{base}{url}{oid}/").status_code == 200][:n_gets]
        for r in range(rounds):  # alternate, so drift hits both alike
            for mode in (("audited", "not_audited") if r % 2 == 0
                         else ("not_audited", "audited")):
                node.audit.record_served = real_record if mode == "audited" else off  # type: ignore[method-assign]
                got, seconds = paged(base + url)
                one = gets(base + url, visible, 1)
                eight = gets(base + url, visible, 8)
                sample = {"paged_per_s": rate(got, seconds), "get_p50_ms": one["p50_ms"],
                          "get_p99_ms": one["p99_ms"], "gets8_per_s": eight["per_s"],
                          "gets8_p99_ms": eight["p99_ms"]}
                for key, value in sample.items():
                    results[mode].setdefault(key, []).append(value)
        node.audit.record_served = real_record  # type: ignore[method-assign]
    node.close()
    med = {mode: {k: statistics.median(v) for k, v in values.items()}
           for mode, values in results.items()}
    on, off_ = med["audited"], med["not_audited"]
    overhead = {
        "paged": 1 - on["paged_per_s"] / off_["paged_per_s"],
        "get_p50": on["get_p50_ms"] / off_["get_p50_ms"] - 1,
        "gets8_throughput": 1 - on["gets8_per_s"] / off_["gets8_per_s"],
    }
    return {"objects": n, "gets": len(visible), "rounds": rounds, **med, "overhead": overhead}


# -- report ---------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=64_000, help="events to append")
    parser.add_argument("--threads", type=int, default=16, help="appending threads")
    parser.add_argument("--proofs", type=int, default=20_000, help="inclusion proofs")
    parser.add_argument("--objects", type=int, default=10_000, help="objects for reads")
    parser.add_argument("--gets", type=int, default=400, help="single GETs per run")
    parser.add_argument("--rounds", type=int, default=3, help="read rounds per mode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="intelpact-bench-audit-") as tmp:
        work = Path(tmp)
        node = Node.create(work / "log", party="JPN", agreement_file=AGREEMENT, tls=False,
                           port=free_port(), federation_port=free_port())
        print(f"appending {args.events:,} events from {args.threads} threads…", flush=True)
        appended = appends(node, args.events, args.threads)
        integrated = integration(node)
        print(f"proving {args.proofs:,} inclusions in a tree of {integrated['size']:,}…",
              flush=True)
        proved = proofs(node, args.proofs)
        node.close()
        print(f"reading {args.objects:,} objects, audited and not, {args.rounds} rounds "
              "each…", flush=True)
        read = reads(work, args.objects, args.gets, args.rounds)
    results = {"appends": appended, "integration": integrated, "proofs": proved,
               "reads": read}
    report(results)
    results["targets"] = {
        "append_per_s": [TARGETS["append_per_s"],
                         max(appended["group_commit_per_s"], appended["batched_per_s"])
                         >= TARGETS["append_per_s"]],
        "proofs_per_s": [TARGETS["proofs_per_s"], proved["per_s"] >= TARGETS["proofs_per_s"]],
        "read_overhead": [TARGETS["read_overhead"],
                          max(read["overhead"].values()) < TARGETS["read_overhead"]],
    }
    print(json.dumps(rounded(results, 4), sort_keys=True))
    return 0


def report(r: dict[str, Any]) -> None:
    a, p, i, rd = r["appends"], r["proofs"], r["integration"], r["reads"]
    line: Callable[..., None] = lambda *cols: print("  ".join(f"{c:>22}" for c in cols))  # noqa: E731
    print()
    line("measure", "intelpact", "peer", "ratio")
    line("append events/s", f"{a['group_commit_per_s']:,.0f}",
         f"{a['one_per_transaction_per_s']:,.0f}", f"x{a['ratio']:.1f}")
    line("  100 per call", f"{a['batched_per_s']:,.0f}",
         f"{a['batched_without_macs_per_s']:,.0f}", f"{a['mac_cost']:+.1%}")
    line("integrate events/s", f"{i['per_s']:,.0f}", "", "")
    line("inclusion proofs/s", f"{p['per_s']:,.0f}", f"{p['reference_per_s']:,.0f}",
         f"x{p['ratio']:.0f}")
    line("  batched (100/query)", f"{p['batched_per_s']:,.0f}", "", "")
    line("  verified/s", f"{p['verify_per_s']:,.0f}", "", "")
    on, off = rd["audited"], rd["not_audited"]
    line("paged read objects/s", f"{on['paged_per_s']:,.0f}", f"{off['paged_per_s']:,.0f}",
         f"{rd['overhead']['paged']:+.1%}")
    line("GET p50 ms (1 client)", f"{on['get_p50_ms']:.2f}", f"{off['get_p50_ms']:.2f}",
         f"{rd['overhead']['get_p50']:+.1%}")
    line("GETs/s (8 clients)", f"{on['gets8_per_s']:,.0f}", f"{off['gets8_per_s']:,.0f}",
         f"{rd['overhead']['gets8_throughput']:+.1%}")
    print("(100 per call: peer = the same without the events' MACs; ratio = their cost)")
    print("(reads: peer = the same node with read events dropped; ratio = overhead)")


if __name__ == "__main__":
    sys.exit(main())
