"""An agreement text pinned beside a running `intelpact serve`: the serving node switches to
it without a restart (interfaces/server.py, Node.pinned_changed), and nothing is released
under the old text once it is pinned."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import httpx
from test_faults import needs_faketime

from intelpact.interfaces.server import Pinned, taxii_server_options
from intelpact.interfaces.taxii import create_app
from intelpact.services.node import Node

from helpers import AGREEMENTS, _in_thread, free_port, make_node
from served import Pair, bulk, faketime_env, indicators, keys, marking, set_clock, wait_for

SAMPLE = (AGREEMENTS / "jpn-nzl.toml").read_text(encoding="utf-8")
COVERED = '["UNCLASSIFIED", "RESTRICTED", "CONFIDENTIAL", "SECRET", "TOP SECRET"]'


def text(tmp_path: Path, name: str, *, number: str = "1.0", top_secret: bool = True,
         terminated: dt.date | None = None) -> Path:
    """The sample agreement as version ``number``: TOP SECRET covered or not, and, with
    ``terminated``, terminated on that day saying destroy."""
    body = SAMPLE.replace('version = "1.0"', f'version = "{number}"')
    assert COVERED in body
    if not top_secret:
        body = body.replace(COVERED, COVERED.replace(', "TOP SECRET"', ""))
    if terminated is not None:
        body = body.replace('state = "in-force"', 'state = "terminated"').replace(
            "in_force = 2026-06-01", f"in_force = 2026-06-01\nterminated = {terminated}")
        body = body.replace('on_termination = "continue-protection"',
                            'on_termination = "destroy"')
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def databases() -> dict[str, str] | None:
    """Each node's PostgreSQL database, when the tests run on PostgreSQL."""
    from helpers import test_database

    url = test_database()
    return None if url is None else {"JPN": url, "NZL": test_database() or ""}


def top_secret(tag: str) -> list[dict[str, Any]]:
    """A JPN 機密 (TOP SECRET) indicator REL TO NZL, with its marking."""
    m = marking("JPN", "機密", ("NZL",))
    return [m, *indicators(1, m["id"], tag)]


def post(pair: Pair, party: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    """Publish over TAXII as ``party``'s officer, again while the node answers 503 (it
    is switching to the text pinned); the status resource."""
    deadline = time.monotonic() + 60
    while True:
        r = pair.post(party, objects)
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 202, r.text[:500]
    return dict(r.json())


def pin(pair: Pair, party: str, path: Path) -> str:
    return pair.cli(party, "agreement", "pin", str(pair.dirs[party]), str(path),
                    "--reason", "amendment 1").stdout


def switches(pair: Pair, party: str) -> list[dict[str, Any]]:
    return [json.loads(body) for (body,) in pair.query(
        party, "SELECT body FROM audit_events WHERE kind = 'agreement-switch'")]


def test_an_amendment_pinned_while_serving_decides_what_goes_at_once(tmp_path: Path) -> None:
    """Both nodes serve; both pin version 1.1, which no longer covers TOP SECRET, while
    serving. Before, each `serve` went on under 1.0 until restarted: JPN released a
    TOP SECRET object published after the pin, and NZL took it. Now each switches to 1.1
    by itself (the same processes), exchange goes on under it, and the TOP SECRET object
    never leaves JPN."""
    amended = text(tmp_path, "v1.1.toml", number="1.1", top_secret=False)
    with Pair(tmp_path, pool=False, databases=databases()) as pair:
        for party in ("JPN", "NZL"):
            pair.start(party)
        before = bulk(1, "before the amendment")
        pair.publish("JPN", before)
        wait_for(lambda: set(pair.rows("NZL")) >= keys(before), 60, "NZL receives", pair)
        pids = {party: proc.pid for party, proc in pair.procs.items()}
        said = [pin(pair, party, amended) for party in ("JPN", "NZL")]
        withheld, after = top_secret("not covered by 1.1"), bulk(1, "after the amendment")
        post(pair, "JPN", withheld + after)  # one envelope: the TOP SECRET one first
        wait_for(lambda: set(pair.rows("NZL")) >= keys(after), 60,
                 "NZL receives what 1.1 covers", pair)
        assert not keys(withheld[1:]) & set(pair.rows("NZL")), "released under 1.0"
        assert not keys(withheld[1:]) & pair.released("JPN", "NZL")
        for out in said:
            assert "switches to it" in out and "Restart" not in out, out
        for party in ("JPN", "NZL"):
            assert pair.procs[party].pid == pids[party] and pair.procs[party].poll() is None
            (event,) = switches(pair, party)
            assert event["version"] == "1.1" and event["new_hash"] != event["old_hash"]
            assert "serving agreement jpn-nzl-isa version 1.1" in pair.log_text(party)


def test_an_amendment_that_releases_more_sends_what_it_newly_allows(tmp_path: Path) -> None:
    """Both nodes serve 1.0 without TOP SECRET covered; JPN publishes a TOP SECRET object
    REL TO NZL, which stays home. Both pin 1.1, which covers TOP SECRET, while serving.
    Before, the object never went: not by the old processes, and not after a restart
    either (the catch-up was done once per date of entry into force, which 1.1 kept).
    Now NZL receives it, once, without a restart (Federation.catch_up, once per text)."""
    narrow = text(tmp_path, "v1.0.toml", top_secret=False)
    wider = text(tmp_path, "v1.1.toml", number="1.1")
    with Pair(tmp_path, pool=False, databases=databases(), agreement=narrow) as pair:
        for party in ("JPN", "NZL"):
            pair.start(party)
        held, sent = top_secret("held back by 1.0"), bulk(1, "covered by 1.0")
        pair.publish("JPN", held + sent)
        wait_for(lambda: set(pair.rows("NZL")) >= keys(sent), 60, "NZL receives", pair)
        assert not keys(held[1:]) & set(pair.rows("NZL"))
        for party in ("JPN", "NZL"):
            pin(pair, party, wider)
        wait_for(lambda: set(pair.rows("NZL")) >= keys(held), 60,
                 "NZL receives what 1.1 newly allows", pair)
        assert all(n == 1 for n in pair.rows("NZL").values())
        (caught,) = [event for (body,) in pair.query(
            "JPN", "SELECT body FROM audit_events WHERE kind = 'peer-catch-up'")
            if (event := json.loads(body))["version"] == "1.1"]
        assert caught["queued"] == 2  # the object and its marking-definition


def test_a_termination_pinned_while_serving_is_done_on_its_day(tmp_path: Path) -> None:
    """NZL serves under a clock the test moves, and pins, while serving, a termination
    saying destroy dated tomorrow. Before, its `serve` went on under the text in force:
    the day came and nothing was destroyed until a restart. Now it switches to the
    terminated text, and on the day destroys what it received, and says so."""
    needs_faketime()
    day = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    ending = text(tmp_path, "ending.toml", number="1.1", terminated=day)
    clock = tmp_path / "clock"
    set_clock(clock, "+0")
    with Pair(tmp_path, pool=False, databases=databases()) as pair:
        pair.start("JPN")
        pair.start("NZL", env=faketime_env(file=clock))
        sent = bulk(1, "received before the day")
        pair.publish("JPN", sent)
        wait_for(lambda: set(pair.rows("NZL")) >= keys(sent), 60, "NZL receives", pair)
        said = pin(pair, "NZL", ending)
        assert f"terminated on {day} (UTC)" in said, said

        def held() -> int:
            return int(pair.query("NZL", "SELECT count(*) FROM objects WHERE originator = "
                                         "'JPN' AND recalled IS NULL")[0][0])
        time.sleep(3)  # NZL switches, and its courier runs a round or more: not the day yet
        assert held() == 2
        set_clock(clock, "+1d")
        wait_for(lambda: held() == 0, 60, "NZL destroys on the day", pair)
        line = f"agreement jpn-nzl-isa terminated on {day} (UTC): destroyed 2 object(s)"
        wait_for(lambda: line in pair.log_text("NZL"), 30, "the operator is told", pair)
        assert pair.starts["NZL"] == 1 and pair.procs["NZL"].poll() is None
        (event,) = switches(pair, "NZL")
        assert event["state"] == "terminated"


def test_a_node_served_by_workers_switches_too(tmp_path: Path) -> None:
    """With --workers 2: JPN pins 1.1 (TOP SECRET not covered) while serving; its
    supervisor's courier and listener switch, and each TAXII worker is replaced by one
    under 1.1, so a TOP SECRET object published after the pin is never released; NZL,
    which pinned it too, receives what 1.1 covers."""
    amended = text(tmp_path, "v1.1.toml", number="1.1", top_secret=False)
    with Pair(tmp_path, pool=False, databases=databases()) as pair:
        pair.start("JPN", workers=2)
        pair.start("NZL")
        old = set(pair.workers("JPN"))
        assert len(old) == 2
        for party in ("JPN", "NZL"):
            pin(pair, party, amended)
        withheld, after = top_secret("not covered by 1.1"), bulk(1, "after the amendment")
        post(pair, "JPN", withheld + after)
        wait_for(lambda: set(pair.rows("NZL")) >= keys(after), 60,
                 "NZL receives what 1.1 covers", pair)
        assert not keys(withheld[1:]) & pair.released("JPN", "NZL"), "released under 1.0"
        wait_for(lambda: len(set(pair.workers("JPN")) - old) == 2, 30,
                 "both workers replaced", pair)
        assert pair.procs["JPN"].poll() is None
        assert len(switches(pair, "JPN")) == 1  # the supervisor's; the workers open it
        post(pair, "JPN", bulk(1, "to the new workers"))  # answered, not left refusing
        pair.stop("JPN")


def test_between_the_pin_and_the_switch_every_request_is_refused(tmp_path: Path) -> None:
    """The node as a `serve` opened it, and another text pinned beside it (as `agreement
    pin` does, from another Node): from then on, that node counts its text changed, and
    its TAXII listener answers every request 503 agreement-changed, with Retry-After,
    until `serve` has opened the node again. The same text written again is no change."""
    node = make_node(tmp_path / "jpn")
    try:
        pinned = node.config.agreement_path
        pinned.write_bytes(pinned.read_bytes())  # rewritten (another inode, time): the same
        assert not node.pinned_changed()
        options = taxii_server_options(node, "127.0.0.1", free_port())
        root = f"http://127.0.0.1:{options['port']}/taxii2/"
        with _in_thread(Pinned(create_app(node), node), options):
            assert httpx.get(root, trust_env=False).status_code != 503
            other = Node.open(node.config.dir, migrate=False)
            other.pin_agreement(text(tmp_path, "v1.1.toml", number="1.1"),
                                reason="amendment 1")
            other.close()
            assert node.pinned_changed()
            refused = httpx.get(root, trust_env=False)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error_code"] == "agreement-changed"
        assert refused.headers["Retry-After"] == "2"
    finally:
        node.close()
