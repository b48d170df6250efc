"""`make run`: a Japanese and a New Zealand node on 127.0.0.1 sharing under the
sample Japan–New Zealand agreement.

It (re)creates DIR/jpn and DIR/nzl (default DIR: demo-node/), adds people to
each, pins each node's card on the other, publishes the project's fictional
samples and MITRE ATT&CK for ICS under different markings on each side
(including an NZEO and a Japan-only object that must not cross), starts both
nodes, waits for the exchange, prints what crossed in each nation's own
marking, and serves until interrupted.

Usage: python scripts/demo.py [DIR] [--no-serve]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from intelpact.model import PartnerNode, banner  # noqa: E402
from intelpact.services.node import Node  # noqa: E402
from intelpact.store.base import Query  # noqa: E402

MARKER = ".intelpact-demo"
AGREEMENT = ROOT / "agreements" / "jpn-nzl.toml"
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


def setup(base: Path) -> dict[str, Path]:
    if base.exists():
        if not (base / MARKER).exists():
            raise SystemExit(f"demo: {base} exists and was not made by the demo; "
                             "give another directory")
        shutil.rmtree(base)
    base.mkdir(parents=True)
    (base / MARKER).write_text("made by scripts/demo.py; `make run` recreates it\n")
    dirs = {}
    for party, spec in NODES.items():
        node = base / party.lower()
        dirs[party] = node
        print(intelpact("init", str(node), "--party", party, "--agreement", str(AGREEMENT),
                        "--port", str(spec["port"])), end="")
        for name, clearance, roles, communities, caveats in spec["people"]:
            opts = [f"--role={r}" for r in roles] + [f"--community={c}" for c in communities]
            opts += [f"--caveat={c}" for c in caveats]
            print(intelpact("user", "add", str(node), name, "--party", party, "--clearance",
                            clearance, *opts, "--password-stdin",
                            stdin=password(name) + "\n"), end="")
    for party, node in dirs.items():  # swap cards, as two agencies would out of band
        card = base / f"{party.lower()}-card.json"
        card.write_text(intelpact("card", str(node)))
    for party, node in dirs.items():
        other = "NZL" if party == "JPN" else "JPN"
        print(intelpact("peer", "add", str(node), str(base / f"{other.lower()}-card.json")),
              end="")
    for party, spec in NODES.items():
        for file, level, rel, extra in spec["publish"]:
            rel_opts = ["--rel", rel] if rel else []
            print(intelpact("publish", str(dirs[party]), str(ROOT / file), "--as",
                            PUBLISHER[party], "--classification", level, *rel_opts, *extra),
                  end="")
    return dirs


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dir", nargs="?", default="demo-node")
    parser.add_argument("--no-serve", action="store_true",
                        help="stop both nodes after showing what crossed")
    args = parser.parse_args()
    base = Path(args.dir)
    dirs = setup(base)
    procs = start(dirs)
    try:
        took = wait_for_exchange(dirs)
        report(dirs)
        jpn, nzl = dirs["JPN"], dirs["NZL"]
        audit = intelpact("audit", "partner", str(jpn), "NZL").splitlines()
        print("\n== JPN's audit of how NZL handled its information (proven in NZL's log) ==")
        print("\n".join(audit[:9] + (["  …"] if len(audit) > 11 else []) + audit[-2:]))
        print(f"""
Both nodes exchanged everything the agreement allows in {took:.1f} s.

Japanese node:     https://127.0.0.1:8401/taxii2/   (certificate {jpn}/tls/cert.pem)
New Zealand node:  https://127.0.0.1:8411/taxii2/   (certificate {nzl}/tls/cert.pem)
Analyst's console: https://127.0.0.1:8401/ (JPN) and https://127.0.0.1:8411/ (NZL):
  log in as tanaka / tanaka-demo-password (JPN; the browser asks to trust the
  self-signed certificate) or aroha / aroha-demo-password (NZL)
People (password = NAME-demo-password):
  JPN  tanaka 機密 (TOP SECRET, JPNEO, TLP-RED) · sato 秘 · suzuki 取扱注意 (not cleared)
  NZL  aroha SECRET (NZEO) · wiremu RESTRICTED

Look as a person of each side:
  intelpact search {jpn} "fictional" --as sato
  intelpact search {nzl} "fictional" --as aroha
  intelpact search {nzl} "fictional" --as wiremu
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
        print("Serving both nodes; press Ctrl-C to stop.")
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
