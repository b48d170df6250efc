"""Benchmark: single GETs while a publisher ingests, against the same GETs alone.

Run: .venv/bin/python bench/mixed.py   (about two minutes; --help for the options)

A fresh SQLite node with ``--objects`` indicators (bench/taxii.py's generator and
reader; loaded in-process as bench/scale.py loads its stores), served by ``intelpact
serve``. The same ``--gets`` single-object GETs by ``--clients`` concurrent clients,
first alone (the peer), then while one publisher POSTs 1,000-object envelopes over
HTTP without pause. Every read's audit event must be durable before its answer, and
the store has one writer at a time: while a publication's transaction holds the write
lock, the reads' events wait for it. This measures what that costs the reads, and what
the reads cost the ingest.

The last line printed is one JSON object with the results and the ratios (during /
alone).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

from scale import (
    BATCH,
    Data,
    Meter,
    concurrent_gets,
    fresh_login,
    git_revision,
    load_in_process,
    make_node,
    say,
    serve_intelpact,
    settle,
    workdir,
)
from taxii import PUBLISHER, READER, post, rounded


def publishing(served: Any, batches: list[tuple[int, bytes]], stop: threading.Event,
               done: dict[str, Any]) -> threading.Thread:
    """A publisher POSTing ``batches`` one after the other until ``stop``."""
    def run() -> None:
        try:
            with served.client(PUBLISHER) as c:
                for count, body in batches:
                    if stop.is_set():
                        return
                    post(c, served.objects_url, count, body)
                    done["objects"] += count
            done["ran_out"] = True
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            done["error"] = exc

    t = threading.Thread(target=run, name="publisher")
    t.start()
    return t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--objects", type=int, default=20_000,
                        help="indicators in the store before the GETs (multiple of 1,000)")
    parser.add_argument("--ingest", type=int, default=100_000,
                        help="indicators the publisher may POST during the GETs at most")
    parser.add_argument("--gets", type=int, default=4000, help="single-object GETs per phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent GET clients")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers")
    parser.add_argument("--cap", type=float, default=120.0, help="seconds per phase at most")
    parser.add_argument("--tmp", help="folder for the node (None: the system's temporary one)")
    args = parser.parse_args()
    for n in (args.objects, args.ingest):
        if n <= 0 or n % BATCH:
            parser.error(f"{n}: sizes are positive multiples of {BATCH}")

    data = Data.make(args.objects + args.ingest, keep=0)
    ids = data.sample(args.objects, args.gets)
    results: dict[str, Any] = {"bench": "mixed", "revision": git_revision(),
                               "config": {k: v for k, v in vars(args).items() if k != "tmp"}}
    with workdir(args.tmp, "intelpact-mixed-") as work:
        made = make_node(work, None, data.markings)
        say(f"loading {args.objects:,} indicators in-process …")
        results["load"] = load_in_process(made, data, args.objects, 2, "load")
        served = serve_intelpact(made, args.workers, "mixed")
        try:
            served.wait(READER)
            settle(served, args.workers)
            fresh_login(served, READER, times=4 * args.workers)
            fresh_login(served, PUBLISHER, times=4 * args.workers)
            say(f"{args.gets:,} GETs by {args.clients} clients, alone …")
            results["alone"] = concurrent_gets(served, READER, ids, args.clients, args.cap,
                                               Meter(served.proc.pid, None))
            say("the same GETs while a publisher POSTs envelopes of 1,000 …")
            stop, done = threading.Event(), {"objects": 0, "ran_out": False}
            started = time.perf_counter()
            publisher = publishing(served, data.envelopes(args.objects + args.ingest)
                                   [args.objects // BATCH:], stop, done)
            time.sleep(0.5)  # the first envelope under way
            during = concurrent_gets(served, READER, ids, args.clients, args.cap,
                                     Meter(served.proc.pid, None))
            stop.set()
            publisher.join()
            seconds = time.perf_counter() - started
            if "error" in done:
                raise done["error"]
            results["during"] = {**during, "ingested": done["objects"],
                                 "ingest_per_s": done["objects"] / seconds,
                                 "publisher_ran_out": done["ran_out"]}
        finally:
            served.stop()

    alone, during = results["alone"], results["during"]
    results["ratios"] = {"get_per_s": during["per_s"] / alone["per_s"],
                         "p50": during["p50_ms"] / alone["p50_ms"],
                         "p99": during["p99_ms"] / alone["p99_ms"]}
    say("")
    say(f"{'GETs, ' + str(args.clients) + ' clients':<28}{'alone':>12}{'during ingest':>16}"
        f"{'× alone':>10}")
    for label, key, ratio in (("requests/s", "per_s", "get_per_s"), ("p50 ms", "p50_ms", "p50"),
                              ("p99 ms", "p99_ms", "p99"), ("max ms", "max_ms", None)):
        x = f"{results['ratios'][ratio]:.2f}" if ratio else ""
        say(f"{label:<28}{alone[key]:>12,.1f}{during[key]:>16,.1f}{x:>10}")
    say(f"{'ingest objects/s':<28}{'':>12}{during['ingest_per_s']:>16,.0f}")
    print(json.dumps(rounded(results), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
