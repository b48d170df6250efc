"""Take the screenshots in docs/console.md: a fresh JPN node with a few fictional
objects, served on 127.0.0.1, photographed by Debian's headless Chromium through
Playwright. Run: .venv/bin/python scripts/console_screenshots.py [--out docs/img]"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from intelpact.interfaces.taxii import create_app  # noqa: E402
from intelpact.services.node import Node  # noqa: E402
from intelpact.services.publish import MarkingRequest  # noqa: E402

from helpers import _in_thread, free_port, indicator  # noqa: E402

SAMPLES = [  # name, description, level, REL TO, communities
    ("Transshipment at sea, fictional vessel KAIYO MARU 7",
     "Fictional: two vessels met at night outside the EEZ; AIS dark for 6 hours.",
     "秘", ("NZL",), ("MARITIME",)),
    ("Fictional longline fleet loitering near the reef", "Fictional sample sighting.",
     "指定なし", ("NZL",), ()),
    ("Fictional beacon spoofing pattern", "Fictional: repeated MMSI across two tracks.",
     "極秘", ("NZL",), ()),
    ("Japan-only assessment (fictional)", "Fictional: stays home.", "極秘", (), ()),
]


@contextmanager
def console_page(node: Node, chromium: str) -> Iterator[Page]:
    """``node``'s console served on 127.0.0.1, and a headless Chromium page on it."""
    port = free_port()
    with _in_thread(create_app(node), {"host": "127.0.0.1", "port": port}), \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        yield browser.new_page(base_url=f"http://127.0.0.1:{port}",
                               viewport={"width": 1100, "height": 1000})
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("Chromium is missing: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="intelpact-shots-") as tmp:
        node = Node.create(Path(tmp) / "jpn", party="JPN",
                           agreement_file=ROOT / "agreements" / "jpn-nzl.toml", tls=False,
                           port=free_port(), federation_port=free_port())
        node.people.add("tanaka", party="JPN", clearance="機密", communities=["MARITIME"],
                        roles=["analyst", "publisher", "security-officer"],
                        password="tanaka-demo-password")
        tanaka = node.people.as_person("tanaka").person
        cid = node.default_collection().collection_id
        first = None
        for name, description, level, rel, communities in SAMPLES:
            obj = indicator(name, description=description)
            first = first or obj["id"]
            node.publisher.publish(tanaka, cid, [obj], marking=MarkingRequest(
                level, rel, (), communities))
        with console_page(node, chromium) as page:
            page.goto("/login")
            page.screenshot(path=str(args.out / "console-login.png"))
            page.fill("#name", "tanaka")
            page.fill("#password", "tanaka-demo-password")
            page.click("button[type=submit]")
            page.wait_for_url("**/")
            page.screenshot(path=str(args.out / "console-search.png"))
            page.goto(f"/objects/{first}")
            page.screenshot(path=str(args.out / "console-object.png"))
            page.goto("/publish")
            page.select_option("#level", "極秘")
            page.check("input[name=rel][value=NZL]")
            expect(page.locator("#preview")).to_contain_text("REL TO JPN, NZL")
            page.screenshot(path=str(args.out / "console-publish.png"))
            page.goto("/desk")
            page.screenshot(path=str(args.out / "console-desk.png"))
        node.close()
        map_shot(Path(tmp) / "fji", chromium, args.out)
    print(f"wrote 6 screenshots to {args.out}")


def map_shot(path: Path, chromium: str, out: Path) -> None:
    """The maritime picture at a Fiji node under the Pacific arrangement, holding both
    of the demo's fictional AIS feeds (samples/pacific-ais-*.nmea)."""
    from intelpact.maritime.rules import load_rules
    from intelpact.services.ais import AisIngest, default_marking

    node = Node.create(path, party="FJI",
                       agreement_file=ROOT / "agreements" / "pacific-maritime.toml",
                       tls=False, port=free_port(), federation_port=free_port())
    node.people.add("litia", party="FJI", clearance="RESTRICTED", communities=["MARITIME"],
                    roles=["analyst", "publisher"], password="litia-demo-password")
    litia = node.people.as_person("litia").person
    cid = node.default_collection().collection_id
    for feed in ("nzl", "jpn"):
        with (ROOT / "samples" / f"pacific-ais-{feed}.nmea").open("rb") as lines:
            AisIngest(node.publisher, litia, cid, marking=default_marking(node.agreement),
                      rules=load_rules(None), window_seconds=3600).run(lines)
    with console_page(node, chromium) as page:
        page.goto("/map")
        page.fill("#name", "litia")
        page.fill("#password", "litia-demo-password")
        page.click("button[type=submit]")
        page.wait_for_url("**/map")
        page.screenshot(path=str(out / "console-map.png"))
    node.close()


if __name__ == "__main__":
    main()
