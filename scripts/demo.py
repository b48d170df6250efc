"""`make run`: two agreements' nodes on 127.0.0.1.

Under the sample Japan–New Zealand agreement it (re)creates DIR/jpn and DIR/nzl
(default DIR: demo-node/), adds people to each, pins each node's card on the other
and publishes the project's fictional samples and MITRE ATT&CK for ICS under
different markings on each side (including an NZEO and a Japan-only object that
must not cross). Under the sample Pacific maritime arrangement it makes DIR/nzl-pac,
DIR/jpn-pac and DIR/fji (a nation runs one node per arrangement: docs/deployment.md),
swaps their cards, and has New Zealand's and Japan's ingest their own fictional AIS
feeds (samples/pacific-ais-*.nmea). It starts the five nodes, waits for the exchange,
prints what crossed in each nation's own marking, what Fiji holds of the maritime
picture and that none of the bilateral material is there, and serves until
interrupted.

Usage: python scripts/demo.py [DIR] [--no-serve]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from intelpact.model import PartnerNode, banner  # noqa: E402
from intelpact.services.node import Node  # noqa: E402
from intelpact.store.base import Query  # noqa: E402

MARKER = ".intelpact-demo"
AGREEMENT = ROOT / "agreements" / "jpn-nzl.toml"
PACIFIC = ROOT / "agreements" / "pacific-maritime.toml"
# The bilateral nodes, under the Japan–New Zealand agreement.
NODES = {
    "JPN": {"port": 8401, "people": [
        # name, clearance, roles, communities, caveats
        ("tanaka", "機密", ["analyst", "publisher", "security-officer"],
         ["MARITIME", "CLIMATE", "INFRASTRUCTURE"], ["JPNEO", "TLP-RED"]),
        ("sato", "秘", ["analyst"], ["MARITIME", "CLIMATE", "INFRASTRUCTURE"], []),
        ("suzuki", "取扱注意", ["analyst"], ["MARITIME"], []),
    ], "publish": [
        # file, classification, REL TO, extra options
        ("tests/data/stix/attack-ics/ics-attack-18.1.json", "指定なし", "NZL", []),
        ("samples/maritime-iuu.json", "極秘", "NZL", ["--community", "MARITIME"]),
        ("samples/port-ransomware.json", "秘", "", ["--caveat", "JPNEO"]),
        ("samples/cyclone-cables.json", "秘", "NZL", []),
    ]},
    "NZL": {"port": 8411, "people": [
        ("aroha", "SECRET", ["analyst", "publisher", "security-officer"],
         ["MARITIME", "CLIMATE"], ["NZEO"]),
        ("wiremu", "RESTRICTED", ["analyst"], ["MARITIME"], []),
    ], "publish": [
        ("samples/nz-eez-sighting.json", "RESTRICTED", "JPN", ["--community", "MARITIME"]),
        ("samples/nz-source-eyes-only.json", "SECRET", "", ["--caveat", "NZEO", "--community",
                                                           "MARITIME"]),
    ]},
}
PUBLISHER = {"JPN": "tanaka", "NZL": "aroha"}
# The Pacific arrangement's nodes (docs/deployment.md: a nation runs one node per
# arrangement). New Zealand's and Japan's ingest their own AIS receivers' feeds.
ALL_COMMUNITIES = ["MARITIME", "CLIMATE", "INFRASTRUCTURE"]
PACIFIC_NODES: dict[str, dict[str, Any]] = {
    "NZL-PAC": {"party": "NZL", "port": 8421, "people": [
        ("aroha", "CONFIDENTIAL", ["analyst", "publisher", "security-officer"],
         ALL_COMMUNITIES, []),
    ], "ingest": "samples/pacific-ais-nzl.nmea", "as": "aroha"},
    "JPN-PAC": {"party": "JPN", "port": 8431, "people": [
        ("tanaka", "秘", ["analyst", "publisher", "security-officer"], ALL_COMMUNITIES, []),
    ], "ingest": "samples/pacific-ais-jpn.nmea", "as": "tanaka"},
    "FJI": {"party": "FJI", "port": 8441, "people": [
        ("litia", "RESTRICTED", ["analyst", "security-officer"], ALL_COMMUNITIES, []),
        ("josefa", "RESTRICTED", ["analyst"], ["CLIMATE"], []),
    ]},
}


def password(name: str) -> str:
    return f"{name}-demo-password"


def intelpact(*args: str, stdin: str | None = None) -> str:
    exe = Path(sys.executable).with_name("intelpact")
    result = subprocess.run([str(exe), *args], input=stdin, text=True, capture_output=True,
                            check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"demo: `intelpact {' '.join(args[:2])}` failed")
    return result.stdout


def make_nodes(base: Path, agreement: Path, nodes: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Make each node with its people, and swap cards among them, as agencies would
    out of band. Keys of ``nodes`` name the directories; ``party`` defaults to the key."""
    dirs = {}
    for key, spec in nodes.items():
        party = spec.get("party", key)
        node = base / key.lower()
        dirs[key] = node
        print(intelpact("init", str(node), "--party", party, "--agreement", str(agreement),
                        "--port", str(spec["port"])), end="")
        for name, clearance, roles, communities, caveats in spec["people"]:
            opts = [f"--role={r}" for r in roles] + [f"--community={c}" for c in communities]
            opts += [f"--caveat={c}" for c in caveats]
            print(intelpact("user", "add", str(node), name, "--party", party, "--clearance",
                            clearance, *opts, "--password-stdin",
                            stdin=password(name) + "\n"), end="")
    cards = {}
    for key, node in dirs.items():
        cards[key] = base / f"{key.lower()}-card.json"
        cards[key].write_text(intelpact("card", str(node)))
    for key, node in dirs.items():
        for other in dirs:
            if other != key:
                print(intelpact("peer", "add", str(node), str(cards[other])), end="")
    return dirs


def busy_ports() -> list[int]:
    """The demo's ports (each node's TAXII port and its federation port, the next one)
    that something listens on already: a `make run` still running, say."""
    busy = []
    for spec in [*NODES.values(), *PACIFIC_NODES.values()]:
        for port in (spec["port"], spec["port"] + 1):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    busy.append(port)
    return busy


def setup(base: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    # before anything is removed: a demo still serving would lose its nodes' directories
    # under it, and the new nodes could not listen
    if busy := busy_ports():
        raise SystemExit(f"demo: ports {', '.join(map(str, busy))} on 127.0.0.1 are in use "
                         "(a `make run` still running?): stop it, then run the demo again; "
                         f"{base} is left as it is")
    if base.exists():
        if not (base / MARKER).exists():
            raise SystemExit(f"demo: {base} exists and was not made by the demo; "
                             "give another directory")
        shutil.rmtree(base)
    base.mkdir(parents=True)
    (base / MARKER).write_text("made by scripts/demo.py; `make run` recreates it\n")
    dirs = make_nodes(base, AGREEMENT, NODES)
    for party, spec in NODES.items():
        for file, level, rel, extra in spec["publish"]:
            rel_opts = ["--rel", rel] if rel else []
            print(intelpact("publish", str(dirs[party]), str(ROOT / file), "--as",
                            PUBLISHER[party], "--classification", level, *rel_opts, *extra),
                  end="")
    pacific = make_nodes(base, PACIFIC, PACIFIC_NODES)
    for key, spec in PACIFIC_NODES.items():
        if "ingest" in spec:  # the default marking: U // MARITIME // REL TO every party
            print(intelpact("ingest", "ais", str(pacific[key]), str(ROOT / spec["ingest"]),
                            "--as", spec["as"], "--window", "60"), end="")
    return dirs, pacific


def start(dirs: dict[str, Path]) -> list[subprocess.Popen[bytes]]:
    exe = Path(sys.executable).with_name("intelpact")
    return [subprocess.Popen([str(exe), "serve", str(d)]) for d in dirs.values()]


def wait_for_exchange(dirs: dict[str, Path], timeout: float = 60.0) -> float:
    start_at = time.monotonic()
    while time.monotonic() - start_at < timeout:
        waiting = 0
        for d in dirs.values():
            node = Node.open(d)
            waiting += sum(len(node.store.pending(p.party, 100_000))
                           for p in node.store.peers())
            node.close()
        if waiting == 0:
            return time.monotonic() - start_at
        time.sleep(0.5)
    raise SystemExit("demo: the nodes did not finish exchanging within a minute")


def report(dirs: dict[str, Path]) -> None:
    for party, d in dirs.items():
        node = Node.open(d)
        officer = node.people.as_person(PUBLISHER[party])
        cid = node.default_collection().collection_id
        received, own = [], []
        cursor = None
        while True:
            page, rows = node.find(officer, cid, Query(limit=5000, cursor=cursor))
            for row, _ in rows:
                (received if row.originator != party else own).append(row)
            if not page.more:
                break
            cursor = page.next
        labels = node.store.labels()
        print(f"\n== {party} node: received from its partner ({len(received)} objects) ==")
        order = {"report": 0, "threat-actor": 1, "indicator": 2}
        shown = sorted(received, key=lambda r: order.get(r.object_type, 9))
        for row in shown[:4]:
            name = json.loads(row.body).get("name", row.object_id)
            print(f"  {banner(labels[row.banner_id], node.agreement, party):45} "
                  f"{row.object_type}: {name}")
        if len(shown) > 4:
            print(f"  … and {len(shown) - 4} more (ATT&CK for ICS and marking-definitions)")
        print(f"== {party} node: its own reports that stayed home, and why ==")
        other = "NZL" if party == "JPN" else "JPN"
        for row in own:
            if row.object_type not in ("report",):
                continue
            decision = node.policy.may_release(labels[row.banner_id],
                                               PartnerNode(other, node.agreement.id),
                                               holder=party, object_id=row.object_id)
            if not decision.allowed:
                name = json.loads(row.body).get("name", row.object_id)
                print(f"  {name}: {decision.reason}")
        node.close()


def _all_rows(node: Node, who: str | None) -> list[Any]:
    """Every latest version in the node's collection: as the person ``who`` (audited, the
    label filter applied), or, with None, every row whatever its label (the store)."""
    cid = node.default_collection().collection_id
    rows, cursor = [], None
    while True:
        if who is None:
            page = node.store.query(cid, list(node.store.labels()),
                                    Query(limit=5000, cursor=cursor))
            rows += page.rows
        else:
            page, found = node.find(node.people.as_person(who), cid,
                                    Query(limit=5000, cursor=cursor))
            rows += [row for row, _ in found]
        if not page.more:
            return rows
        cursor = page.next


def pacific_report(bilateral: dict[str, Path], pacific: dict[str, Path]) -> None:
    fji = Node.open(pacific["FJI"])
    try:
        rows = [r for r in _all_rows(fji, "litia") if r.object_type != "marking-definition"]
        labels = fji.store.labels()
        print(f"\n== FJI node (Pacific arrangement): the maritime picture it received "
              f"({len(rows)} objects) ==")
        kinds = {"identity": "vessels", "sighting": "tracks", "note": "alerts"}
        for origin in sorted({r.originator for r in rows}):
            mine = [r for r in rows if r.originator == origin]
            counts = ", ".join(f"{sum(1 for r in mine if r.object_type == t)} {word}"
                               for t, word in kinds.items())
            banners = sorted({banner(labels[r.banner_id], fji.agreement, "FJI") for r in mine})
            print(f"  from {origin}: {counts}, marked {' or '.join(banners)}")
        for row in sorted((r for r in rows if r.object_type == "note"),
                          key=lambda r: (r.originator, r.object_id)):
            print(f"    {row.originator} alert: {json.loads(row.body).get('abstract', '')}")
        seen = _all_rows(fji, "josefa")
        print(f"  josefa (FJI, not in MARITIME) sees {len(seen)} of them: need-to-know")
        held_ids = []
        for d in bilateral.values():
            node = Node.open(d)
            held_ids += [r.object_id for r in _all_rows(node, None)]
            node.close()
        there = fji.store.held(held_ids)
        print(f"== FJI node: of the {len(set(held_ids))} objects on the bilateral JPN and NZL "
              f"nodes (ATT&CK, reports, their markings), it holds {len(there)} ==")
        if there:
            raise SystemExit("demo: bilateral material reached the Pacific partner")
        print("  The bilateral nodes pin the Japan–New Zealand agreement; the Pacific nodes "
              "pin the\n  arrangement, and refuse a partner whose card names another "
              "agreement.")
    finally:
        fji.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dir", nargs="?", default="demo-node")
    parser.add_argument("--no-serve", action="store_true",
                        help="stop the nodes after showing what crossed")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    base = Path(args.dir)
    started = time.monotonic()
    bilateral, pacific = setup(base)
    procs = start({**bilateral, **pacific})
    try:
        took = wait_for_exchange({**bilateral, **pacific})
        report(bilateral)
        jpn, nzl = bilateral["JPN"], bilateral["NZL"]
        audit = intelpact("audit", "partner", str(jpn), "NZL").splitlines()
        print("\n== JPN's audit of how NZL handled its information (proven in NZL's log) ==")
        print("\n".join(audit[:9] + (["  …"] if len(audit) > 11 else []) + audit[-2:]))
        pacific_report(bilateral, pacific)
        fji = pacific["FJI"]
        print(f"""
The five nodes exchanged everything their agreements allow in {took:.1f} s (the demo took
{time.monotonic() - started:.0f} s in all).

Bilateral (Japan–New Zealand agreement):
  Japanese node:     https://127.0.0.1:8401/taxii2/   (certificate {jpn}/tls/cert.pem)
  New Zealand node:  https://127.0.0.1:8411/taxii2/   (certificate {nzl}/tls/cert.pem)
Pacific maritime arrangement (one node per arrangement: classified enclaves stay apart):
  NZL-PAC https://127.0.0.1:8421/taxii2/ · JPN-PAC https://127.0.0.1:8431/taxii2/ · \
FJI https://127.0.0.1:8441/taxii2/

Analyst's console (the browser asks to trust each self-signed certificate):
  https://127.0.0.1:8401/      JPN      tanaka / tanaka-demo-password
  https://127.0.0.1:8411/      NZL      aroha / aroha-demo-password
  https://127.0.0.1:8421/map   NZL-PAC  aroha / aroha-demo-password
  https://127.0.0.1:8431/map   JPN-PAC  tanaka / tanaka-demo-password
  https://127.0.0.1:8441/map   FJI      litia / litia-demo-password  (josefa: no MARITIME)
People (password = NAME-demo-password):
  JPN      tanaka 機密 (TOP SECRET, JPNEO, TLP-RED) · sato 秘 · suzuki 取扱注意 (not cleared)
  NZL      aroha SECRET (NZEO) · wiremu RESTRICTED
  NZL-PAC  aroha CONFIDENTIAL · JPN-PAC tanaka 秘 · FJI litia RESTRICTED, josefa RESTRICTED

Look as a person of each side:
  intelpact search {jpn} "fictional" --as sato
  intelpact search {nzl} "fictional" --as aroha
  intelpact search {nzl} "fictional" --as wiremu
  intelpact search {fji} "MMSI" --as litia
  intelpact disseminations {jpn}
  intelpact audit show {nzl} --originator JPN --kind read
  intelpact audit partner {jpn} NZL
  intelpact audit verify {nzl}

taxii2-client (set REQUESTS_CA_BUNDLE= first if your shell sets it):
  python -c "from taxii2client.v21 import Server; \\
s = Server('https://127.0.0.1:8411/taxii2/', user='aroha', password='aroha-demo-password', \\
verify='{nzl}/tls/cert.pem'); print(len(s.default.collections[0].get_objects()['objects']))"

curl:
  curl -u aroha:aroha-demo-password --cacert {nzl}/tls/cert.pem \\
    -H 'Accept: application/taxii+json;version=2.1' \\
    'https://127.0.0.1:8411/intel/collections/'
""")
        if args.no_serve:
            return 0
        print("Serving the five nodes; press Ctrl-C to stop.", flush=True)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        stop(procs)
    return 0


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the nodes: SIGTERM, then SIGKILL to any still running after 10 s. A second
    Ctrl-C, SIGTERM or SIGHUP meanwhile (a service manager signals the whole group, a
    hurried operator presses twice) does not cut the stop short."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            print(f"{proc.args[-1]} did not stop within 10 s of SIGTERM: killed", flush=True)
            proc.kill()
            proc.wait()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM or SIGHUP stop the nodes as Ctrl-C does


if __name__ == "__main__":
    sys.exit(main())
