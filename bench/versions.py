"""Benchmark: latest versions after re-publication, intelpact against medallion 3.0.0.

Run: .venv/bin/python bench/versions.py   (part of `make bench`; about 3 minutes)

A vessel tracked all day, or a new ATT&CK release, publishes new versions of the same
objects again and again, and TAXII's default read is the latest version of each. Here
N indicators of bench/taxii.py's shape (under its 10 markings, of which the reader may
read 7) are published V times, every object's next version in turn, so that each
collection holds N x V rows, the latest N at its end. The same data goes:

- to a fresh intelpact node (SQLite, and PostgreSQL with ``--backends``), published in
  this process through ``Node.publisher.publish`` (validated, labelled, signed,
  audited, durable), then served by ``intelpact serve``;
- to medallion 3.0.0's memory backend, loaded from a data file (every version in its
  collection and manifest), in its own virtual environment (.venv-medallion, made here
  if missing; ``--skip-peers`` leaves it out).

Measures, the same HTTP client (httpx, one keep-alive connection) for both, reader
JPN cleared 極秘 in MARITIME: the first page of latest versions (no ``match[version]``,
limit 1,000), p50 of ``--repeat`` requests; the first page of every version
(``match[version]=all``), the same way; and the whole read of latest versions, page
after page, in objects/s, checked: each visible object once, at its last version.
medallion's reads are capped (``--cap`` seconds, each measure); a capped one says so,
and its figure (and ratio) is then a bound.

Target: the first page of latest versions as fast as a first page on a collection of
one version each: under 50 ms (bench/scale.py's first-page target).

The last line printed is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pgserver  # noqa: E402
from intelpact.services.node import Node  # noqa: E402
from intelpact.store.base import Query  # noqa: E402
from scale import make_node, say, serve_intelpact  # noqa: E402
from taxii import (  # noqa: E402
    PAGE,
    PUBLISHER,
    READER,
    Served,
    fmt,
    indicators,
    marking_definitions,
    medallion_python,
    medallion_server,
    paged_read,
    reader_allows,
    rounded,
    running,
    stamp,
)

TARGET_FIRST_PAGE_MS = 50.0


def versions(n: int, count: int) -> tuple[list[list[dict[str, Any]]], dict[str, str], list[str]]:
    """``count`` rounds of the same ``n`` indicators, each round a minute later than the
    last (``modified``) with its own confidence; the last version of each id; the ids the
    reader may read."""
    markings = marking_definitions()
    base, which = indicators(n, markings)
    allowed = reader_allows(markings)
    rounds = []
    for v in range(count):
        round_ = []
        for obj in base:
            again = dict(obj, confidence=(obj["confidence"] + v) % 100)
            created = dt.datetime.strptime(obj["created"], "%Y-%m-%dT%H:%M:%S.%fZ")
            again["modified"] = stamp(created.replace(tzinfo=dt.UTC)
                                      + dt.timedelta(minutes=v))
            round_.append(again)
        rounds.append(round_)
    last = {o["id"]: o["modified"] for o in rounds[-1]}
    visible = [o["id"] for o, k in zip(base, which, strict=True) if allowed[k]]
    return rounds, last, visible


def first_pages(served: Served, params: dict[str, Any], repeat: int, cap: float
                ) -> dict[str, Any]:
    """p50 of ``repeat`` requests for the first page (``cap`` seconds at most)."""
    times: list[float] = []
    got = 0
    with served.client(READER, timeout=max(cap, 1.0)) as c:
        c.get(f"{served.base}/taxii2/")  # the connection and the login
        start = time.perf_counter()
        while len(times) < repeat and time.perf_counter() - start < cap:
            t = time.perf_counter()
            try:
                r = c.get(served.objects_url, params={"limit": PAGE, **params},
                          timeout=cap - (t - start))
            except httpx.TimeoutException:  # unanswered within the cap: at least this
                times.append(time.perf_counter() - t)
                break
            times.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"GET objects: {r.status_code} {r.text[:300]}")
            got = len(r.json().get("objects", []))
    return {"p50_ms": statistics.median(times) * 1000, "requests": len(times),
            "objects": got, "complete": len(times) == repeat and got > 0}


def check(read: dict[str, Any], visible: list[str]) -> None:
    """The whole read of latest versions holds each of the ``visible`` indicators once
    (and the marking-definitions the reader may read)."""
    if not read["complete"]:
        return
    ids = [i for i in read.pop("ids") if i.startswith("indicator--")]
    if sorted(ids) != sorted(visible):
        raise RuntimeError(f"the latest versions read were {len(ids)} objects "
                           f"({len(set(ids))} ids), not the {len(visible)} visible")


def measure(served: Served, visible: list[str], repeat: int, cap: float) -> dict[str, Any]:
    out = {"first_page_latest": first_pages(served, {}, repeat, cap),
           "first_page_all": first_pages(served, {"match[version]": "all"}, repeat, cap)}
    with served.client(READER) as c:  # the login the paged read's first request needs
        c.get(f"{served.base}/taxii2/")
    read = paged_read(served, READER, cap, len(visible))
    check(read, visible)
    read.pop("ids", None)
    out["latest_read"] = read
    return out


def run_intelpact(work: Path, database: str | None, rounds: list[list[dict[str, Any]]],
                  last: dict[str, str], visible: list[str], repeat: int, cap: float
                  ) -> dict[str, Any]:
    made = make_node(work, database, marking_definitions())
    node = Node.open(made.dir)
    person = node.people.as_person(PUBLISHER[0]).person
    total = sum(len(r) for r in rounds)
    start, done = time.perf_counter(), 0
    for v, round_ in enumerate(rounds):
        for i in range(0, len(round_), PAGE):
            status = node.publisher.publish(person, made.cid, round_[i:i + PAGE])
            if status.body["success_count"] != len(round_[i:i + PAGE]):
                raise RuntimeError(f"publish: {json.dumps(status.body['failures'][:3])[:300]}")
            done += len(round_[i:i + PAGE])
        if v % max(1, len(rounds) // 5) == 0 or v == len(rounds) - 1:
            rate = done / (time.perf_counter() - start)
            say(f"    {done:>9,} of {total:,} versions published, {rate:,.0f}/s")
    loaded = time.perf_counter() - start
    page = node.store.query(made.cid, list(node.store.labels()), Query(limit=PAGE)).rows
    # what `serve` would otherwise do in the background during the reads: integrate the
    # audit log (an event per envelope, naming its 1,000 objects) and index the text
    node.audit.integrate()
    while node.store.index_text(10_000):
        pass
    node.close()
    if any(last.get(r.object_id, r.version)[:19] != r.version[:19] for r in page):
        raise RuntimeError("the store's latest versions are not the last published")
    served = serve_intelpact(made, 1, "versions")
    with running(served, READER):
        out = measure(served, visible, repeat, cap)
    out["load"] = {"versions": total, "seconds": loaded, "per_s": total / loaded}
    return out


def run_medallion(python: Path, work: Path, rounds: list[list[dict[str, Any]]],
                  repeat: int, cap: float) -> dict[str, Any]:
    """medallion serves everything (it has no access control): its whole read is
    checked against every id."""
    objects = [o for r in rounds for o in r]
    served = medallion_server(python, work, objects, "versions")
    with running(served, READER):
        return measure(served, [o["id"] for o in rounds[-1]], repeat, cap)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=2_000, help="objects (default 2,000)")
    parser.add_argument("--versions", type=int, default=50,
                        help="versions of each (default 50)")
    parser.add_argument("--backends", default="sqlite",
                        help="comma-separated: sqlite, postgresql (default sqlite)")
    parser.add_argument("--repeat", type=int, default=20, help="first pages timed (20)")
    parser.add_argument("--cap", type=float, default=30.0,
                        help="seconds at most per measure (30)")
    parser.add_argument("--skip-peers", action="store_true", help="leave medallion out")
    parser.add_argument("--medallion-python", help="a Python with medallion 3.0.0")
    parser.add_argument("--tmp", help="a directory for the nodes (default: the system's)")
    args = parser.parse_args()

    say(f"making {args.objects:,} objects x {args.versions} versions ...")
    rounds, last, visible = versions(args.objects, args.versions)
    results: dict[str, Any] = {"objects": args.objects, "versions": args.versions,
                               "visible": len(visible), "intelpact": {}}
    with tempfile.TemporaryDirectory(prefix="intelpact-versions-", dir=args.tmp) as tmp:
        for backend, database in pgserver.databases(args.backends, args.tmp):
            say(f"intelpact on {backend}: publishing ...")
            work = Path(tmp) / backend
            work.mkdir()
            results["intelpact"][backend] = run_intelpact(work, database, rounds, last,
                                                          visible, args.repeat, args.cap)
        if not args.skip_peers:
            say("medallion: loading and reading ...")
            work = Path(tmp) / "medallion"
            work.mkdir()
            python = medallion_python(args.medallion_python)
            results["medallion"] = run_medallion(python, work, rounds, args.repeat,
                                                 args.cap)
    report(results)
    print(json.dumps(rounded(results)))
    return 0


def report(results: dict[str, Any]) -> None:
    peer = results.get("medallion")
    print(f"{results['objects']:,} objects x {results['versions']} versions "
          f"({results['visible']:,} visible to the reader); ratio: medallion / intelpact "
          "(times faster)")
    print(f"{'':<12} {'measure':<34} {'intelpact':>12} {'medallion':>12} {'ratio':>8}")
    for backend, ours in results["intelpact"].items():
        for key, label in (("first_page_latest", "first page, latest versions, ms"),
                           ("first_page_all", "first page, every version, ms")):
            mine, theirs = ours[key]["p50_ms"], peer[key]["p50_ms"] if peer else None
            ratio = f"x{theirs / mine:,.1f}" if theirs else ""
            capped = "" if not peer or peer[key]["complete"] else " (capped)"
            print(f"{backend:<12} {label:<34} {fmt(mine):>12} "
                  f"{fmt(theirs) + capped if theirs else '':>12} {ratio:>8}")
        mine = ours["latest_read"]["per_s"]
        theirs = peer["latest_read"].get("upper_bound_per_s", peer["latest_read"]["per_s"]) \
            if peer else None
        ratio = f"x{mine / theirs:,.1f}" if theirs else ""
        capped = "" if not peer or peer["latest_read"]["complete"] else " (capped)"
        print(f"{backend:<12} {'whole read, latest, objects/s':<34} {fmt(mine):>12} "
              f"{fmt(theirs) + capped if theirs else '':>12} {ratio:>8}")
        met = ours["first_page_latest"]["p50_ms"] < TARGET_FIRST_PAGE_MS
        ours["target_first_page_met"] = met
        print(f"{backend:<12} target: first page of latest < {TARGET_FIRST_PAGE_MS:.0f} ms: "
              f"{'met' if met else 'NOT MET'}")


if __name__ == "__main__":
    sys.exit(main())
