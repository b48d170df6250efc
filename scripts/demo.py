"""`make run`: a demo Japanese node on 127.0.0.1, with people and sample intelligence.

It (re)creates the node directory given on the command line (default
demo-node/), adds people at several clearances, publishes the project's
fictional samples and MITRE ATT&CK for ICS under different markings, prints how
to look at it, and serves it until interrupted.

Usage: python scripts/demo.py [DIR] [--no-serve] [--port N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = ".intelpact-demo"
PEOPLE = [
    # name, party, clearance, roles, communities, caveats
    ("tanaka", "JPN", "機密", ["analyst", "publisher", "security-officer"],
     ["MARITIME", "CLIMATE", "INFRASTRUCTURE"], ["JPNEO", "TLP-RED"]),
    ("sato", "JPN", "秘", ["analyst"], ["MARITIME", "CLIMATE", "INFRASTRUCTURE"], []),
    ("suzuki", "JPN", "取扱注意", ["analyst"], ["MARITIME"], []),
    ("aroha", "NZL", "SECRET", ["analyst"], ["MARITIME", "CLIMATE"], []),
]
PUBLICATIONS = [
    # file, classification, rel, extra options
    ("tests/data/stix/attack-ics/ics-attack-18.1.json", "指定なし", "JPN,NZL", []),
    ("samples/maritime-iuu.json", "極秘", "JPN,NZL", ["--community", "MARITIME"]),
    ("samples/port-ransomware.json", "秘", "JPN", ["--caveat", "JPNEO"]),
    ("samples/cyclone-cables.json", "秘", "JPN,NZL", []),
]


def password(name: str) -> str:
    return f"{name}-demo-password"


def intelpact(*args: str, stdin: str | None = None) -> str:
    exe = Path(sys.executable).with_name("intelpact")
    result = subprocess.run([str(exe), *args], input=stdin, text=True, capture_output=True,
                            check=False)
    if result.returncode not in (0,):
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"demo: `intelpact {' '.join(args[:2])}` failed")
    return result.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dir", nargs="?", default="demo-node")
    parser.add_argument("--port", type=int, default=8401)
    parser.add_argument("--no-serve", action="store_true")
    args = parser.parse_args()
    node = Path(args.dir)
    if node.exists():
        if not (node / MARKER).exists():
            raise SystemExit(f"demo: {node} exists and was not made by the demo; "
                             "give another directory")
        shutil.rmtree(node)
    print(intelpact("init", str(node), "--party", "JPN", "--agreement",
                    str(ROOT / "agreements" / "jpn-nzl.toml"), "--port", str(args.port)), end="")
    (node / MARKER).write_text("made by scripts/demo.py; `make run` recreates it\n")
    for name, party, clearance, roles, communities, caveats in PEOPLE:
        opts = [f"--role={r}" for r in roles] + [f"--community={c}" for c in communities]
        opts += [f"--caveat={c}" for c in caveats]
        print(intelpact("user", "add", str(node), name, "--party", party, "--clearance",
                        clearance, *opts, "--password-stdin", stdin=password(name) + "\n"),
              end="")
    for file, level, rel, extra in PUBLICATIONS:
        print(intelpact("publish", str(node), str(ROOT / file), "--as", "tanaka",
                        "--classification", level, "--rel", rel, *extra), end="")
    token = intelpact("token", "issue", str(node), "sato").strip()
    collection = _collection_id(node)
    url = f"https://127.0.0.1:{args.port}"
    cert = node / "tls" / "cert.pem"
    print(f"""
The Japanese demo node is ready: {url}/taxii2/  (collection {collection})

People (password = NAME-demo-password):
  tanaka  JPN 機密 (TOP SECRET), JPNEO, all communities; publisher, security officer
  sato    JPN 秘 (CONFIDENTIAL); analyst
  suzuki  JPN 取扱注意 (not cleared for classified material); analyst
  aroha   NZL SECRET liaison officer, MARITIME and CLIMATE; analyst

Each sees only what the agreement and their clearance allow:
  intelpact search {node} "fictional" --as aroha
  intelpact search {node} "fictional" --as sato
  intelpact get {node} report--... --as tanaka

taxii2-client:
  python -c "from taxii2client.v21 import Server; \\
s = Server('{url}/taxii2/', user='aroha', password='aroha-demo-password', verify='{cert}'); \\
c = s.default.collections[0]; print(len(c.get_objects(limit=5)['objects']))"

curl (bearer token issued for sato):
  curl --cacert {cert} -H 'Accept: application/taxii+json;version=2.1' \\
    -H 'Authorization: Bearer {token}' \\
    '{url}/intel/collections/{collection}/objects/?limit=2&match[type]=report'
""")
    if args.no_serve:
        return 0
    print("Serving; press Ctrl-C to stop.")
    exe = Path(sys.executable).with_name("intelpact")
    try:
        return subprocess.call([str(exe), "serve", str(node)])
    except KeyboardInterrupt:
        return 0


def _collection_id(node: Path) -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from intelpact.services.node import Node

    n = Node.open(node)
    try:
        return n.default_collection().collection_id
    finally:
        n.close()


if __name__ == "__main__":
    sys.exit(main())
