"""Benchmark: the console's search over 100,000 objects on the embedded store.

Run: .venv/bin/python bench/console.py [--objects N] [--backends sqlite,postgresql]

A fresh JPN node (SQLite, TLS off) in a temporary directory is loaded with N
indicators (default 100,000) under 10 national markings, with names and
descriptions drawn from a small vocabulary plus a rare word in one object in a
thousand. The reader is a JPN analyst cleared 極秘 in MARITIME, who may see 7 of
the 10 markings (as bench/taxii.py). The node is served by uvicorn in this process
(TAXII and the console on one listener, as ``intelpact serve`` does) and read over
HTTP with one keep-alive connection, logged in once.

Measures the median and p95 wall time (over --repeat requests) of the search page's
first page (50 results, newest first, label filter and read audit included, HTML
rendered): no text; a common word; a rare word; a word that matches nothing; a
two-character and a one-character text that match nothing (no trigram: the newest
10,000 rows of the index table are scanned, store.base.SHORT_TEXT_ROWS); filters by
originator and classification. Peer: the same person's first page of 50 through the TAXII
objects endpoint (limit=50), the node's own fast path; the ratio is console/TAXII.

With ``--portions F``, that share of the objects (spread evenly) has its description
marked as a portion (a granular marking: 極秘 REL TO NZL, which the reader may read, and
機密, which they may not, in turn), as analysts' reports with a caveated paragraph do;
the console's search looks in a portion for who may read it (migration 0020). Where the
code has migration 0020, the loaded store is then taken back to before it and opened
again, timed: the migration, and the labels of every portion worked out, as the first
node to open a store from before it does (``migration_0020``).

With ``--backends postgresql`` the node is on a PostgreSQL server of the benchmark's own
(bench/pgserver.py), and the store's search alone is timed too (``store_search``): the
reader's first 50 for a common word, a rare one and one found nowhere, with the trigram
index of migration 0041, then with that index dropped (the peer: every version's text
read, as before 0041); the ratio is without/with.

Target: every first page under 200 ms. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import pgserver  # noqa: E402
from intelpact.interfaces.taxii import create_app  # noqa: E402
from intelpact.model import national_marking  # noqa: E402
from intelpact.services.node import Node  # noqa: E402
from intelpact.services.publish import MarkingRequest  # noqa: E402

from helpers import _in_thread, free_port  # noqa: E402

WORDS = ("vessel", "transshipment", "longline", "reef", "patrol", "harbour", "buoy",
         "trawler", "beacon", "cargo", "fishing", "tuna", "container", "signal", "drift")
MARKINGS = [  # (level, rel, communities): the reader sees the first 7
    ("指定なし", ("NZL",), ()), ("秘", ("NZL",), ()), ("極秘", ("NZL",), ()),
    ("秘", ("NZL",), ("MARITIME",)), ("極秘", (), ()), ("取扱注意", ("NZL",), ()),
    ("秘", (), ("MARITIME",)), ("機密", ("NZL",), ()), ("秘", ("NZL",), ("CLIMATE",)),
    ("極秘", (), ("CLIMATE",)),
]
PASSWORD = "a long benchmark password"


def load(node: Node, count: int, portions: float = 0.0) -> None:
    rng = random.Random(7)
    publisher = node.people.as_person("pub").person
    cid = node.default_collection().collection_id
    per = count // len(MARKINGS)
    portion_marks = [national_marking(node.agreement, "JPN", level, rel_to=["NZL"])
                     for level in ("極秘", "機密")]
    if portions:
        node.publisher.publish(publisher, cid, portion_marks)
    every = round(1 / portions) if portions else 0
    marked = 0
    for m, (level, rel, communities) in enumerate(MARKINGS):
        objects = []
        for i in range(per):
            n = m * per + i
            words = " ".join(rng.choice(WORDS) for _ in range(12))
            rare = " zanzibarite" if n % 1000 == 0 else ""
            objects.append({
                "type": "indicator", "spec_version": "2.1",
                "id": f"indicator--{rng.getrandbits(128):032x}"[:-32] + _uuid(rng),
                "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-01T00:00:00.000Z",
                "name": f"sighting {n} {rng.choice(WORDS)}", "description": words + rare,
                "indicator_types": ["malicious-activity"], "pattern_type": "stix",
                "pattern": f"[ipv4-addr:value = '198.51.{n // 256 % 256}.{n % 256}']",
                "valid_from": "2026-11-01T00:00:00Z"})
            if every and n % every == every // 2:  # not the rare word's objects
                ref = portion_marks[marked % 2]["id"]
                objects[-1]["granular_markings"] = [{"selectors": ["description"],
                                                     "marking_ref": ref}]
                marked += 1
        for start in range(0, len(objects), 5000):
            status = node.publisher.publish(publisher, cid, objects[start:start + 5000],
                                            marking=MarkingRequest(level, rel, (),
                                                                   communities))
            assert status.body["failure_count"] == 0, status.body["failures"][:2]
    while node.store.index_text(10_000):  # as `serve` does in the background: the first
        pass  # search measured is not the one that indexes everything loaded
    label_portions(node)


def label_portions(node: Node) -> int:
    """Label every portion waiting (as `serve`'s indexer does), where the code has them
    (migration 0020); returns how many versions were labelled."""
    done = 0
    while step := getattr(node, "label_portions", lambda: 0)():
        done += step
    return done


def migrate_again(node: Node) -> tuple[Node, dict[str, float]]:
    """Take the loaded store back to before migration 0020 (its tables dropped, its
    version and 0022's forgotten: 0022 has every version with portions wait, their
    labels kept under no text), then open the node as an upgraded intelpact does: the
    migrations, and the labels of every version with portions worked out (as the first
    search, or `serve`'s indexer, does). Returns the node opened and the times."""
    path, folder = node.store.path, node.config.dir  # the bench's store is SQLite
    node.close()
    with sqlite3.connect(path) as c:
        for table in ("objects_portion_text", "object_portions", "object_portions_pending"):
            c.execute(f"DROP TABLE {table}")
        c.execute("DELETE FROM schema_migrations WHERE version IN (20, 22)")
    t = time.perf_counter()
    node = Node.open(folder)
    opened = time.perf_counter() - t
    waiting = len(node.store.portions_pending(1_000_000))
    t = time.perf_counter()
    done = label_portions(node)
    assert done == waiting, (done, waiting)
    return node, {"open_seconds": round(opened, 2), "versions_labelled": done,
                  "label_seconds": round(time.perf_counter() - t, 2)}


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def timed(client: httpx.Client, path: str, repeat: int, **kw: object) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.get(path, **kw)  # type: ignore[arg-type]
        times.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    times.sort()
    return {"median_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1)}


def run(work: Path, database: str | None, args: argparse.Namespace) -> dict[str, Any]:
    """Load a node on ``database`` (None: its own SQLite file) and time its searches."""
    node = Node.create(work / "jpn", party="JPN",
                       agreement_file=ROOT / "agreements" / "jpn-nzl.toml", tls=False,
                       port=free_port(), federation_port=free_port(), database=database)
    node.people.add("pub", party="JPN", clearance="機密", roles=["publisher"],
                    communities=["MARITIME", "CLIMATE"])
    node.people.add("reader", party="JPN", clearance="極秘", roles=["analyst"],
                    communities=["MARITIME"], password=PASSWORD)
    t = time.perf_counter()
    load(node, args.objects, args.portions)
    load_s = time.perf_counter() - t
    print(f"loaded {args.objects} objects in {load_s:.1f} s", file=sys.stderr)
    migration: dict[str, float] = {}
    if database is None and hasattr(node, "label_portions"):
        node, migration = migrate_again(node)
    port = free_port()
    options = {"host": "127.0.0.1", "port": port}
    with _in_thread(create_app(node), options), \
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        page = client.get("/login")
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        r = client.post("/login", data={"csrf": csrf, "name": "reader",
                                        "password": PASSWORD})
        assert r.status_code == 303, r.text[:300]
        rank = str(node.agreement.rank_of("JPN", "秘"))
        cases = {
            "first_page": ("/", {}), "common_word": ("/", {"q": "transshipment"}),
            "rare_word": ("/", {"q": "zanzibarite"}), "no_match": ("/", {"q": "qqqxqqq"}),
            "two_characters": ("/", {"q": "zz"}), "one_character": ("/", {"q": "q"}),
            "originator_and_level": ("/", {"originator": "JPN", "level": rank}),
        }
        results = {name: timed(client, path, args.repeat, params=params)
                   for name, (path, params) in cases.items()}
        cid = node.default_collection().collection_id
        basic = httpx.BasicAuth("reader", PASSWORD)
        taxii = timed(client, f"/intel/collections/{cid}/objects/", args.repeat,
                      params={"limit": "50"}, auth=basic,
                      headers={"Accept": "application/taxii+json;version=2.1"})
    store_search = trigram_index(node, args.repeat) if database is not None else {}
    node.close()
    for name, got in results.items():
        print(f"{name:>22}: {got['median_ms']:8.1f} ms (p95 {got['p95_ms']:.1f})",
              file=sys.stderr)
    worst = max(v["median_ms"] for v in results.values())
    return {"load_seconds": round(load_s, 1), "migration_0020": migration,
            "results": results, "peer_taxii_first_page_limit_50": taxii,
            "ratio_first_page_console_to_taxii": round(
                results["first_page"]["median_ms"] / taxii["median_ms"], 2),
            "store_search": store_search, "met": worst < 200}


def trigram_index(node: Node, repeat: int) -> dict[str, Any]:
    """PostgreSQL: the store's search alone (the reader's first 50, newest first), with
    the trigram index of migration 0041 and without it (dropped here, at the end of the
    run: the search then reads every version's text, as before 0041)."""
    from intelpact.store.base import Query

    reader = node.people.as_person("reader").person
    readable = node.access.readable(reader, node.store.labels())
    cid = node.default_collection().collection_id
    words = {"common_word": "transshipment", "rare_word": "zanzibarite",
             "no_match": "qqqxqqq"}

    def times() -> dict[str, float]:
        out = {}
        for name, word in words.items():
            took = []
            for _ in range(repeat):
                t = time.perf_counter()
                node.store.query(cid, readable, Query(text=word, newest_first=True, limit=50))
                took.append((time.perf_counter() - t) * 1000)
            out[name] = round(statistics.median(took), 2)
        return out

    indexed = times()
    with node.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001
        c.execute("DROP INDEX objects_folded_trigrams")
    scanned = times()
    for name in words:
        print(f"{'store ' + name:>22}: {indexed[name]:8.2f} ms with the trigram index, "
              f"{scanned[name]:.2f} ms without", file=sys.stderr)
    return {"with_index_ms": indexed, "without_index_ms": scanned,
            "ratio_without_to_with": {n: round(scanned[n] / indexed[n], 1) for n in words}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--portions", type=float, default=0.0,
                        help="share of the objects whose description is a portion")
    parser.add_argument("--backends", default="sqlite",
                        help="stores, comma-separated: sqlite, postgresql (a server of the "
                        "benchmark's own)")
    args = parser.parse_args()
    out: dict[str, Any] = {"benchmark": "console-search", "objects": args.objects,
                           "portions": args.portions, "target_ms": 200}
    with tempfile.TemporaryDirectory(prefix="intelpact-console-bench-") as tmp:
        for backend, database in pgserver.databases(args.backends):
            work = Path(tmp) / backend
            work.mkdir()
            print(f"{backend}:", file=sys.stderr)
            out[backend] = run(work, database, args)
    out["met"] = all(out[b]["met"] for b in args.backends.split(","))
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
