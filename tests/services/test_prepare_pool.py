"""A large publication validated and signed in a pool of processes (services/prepare.py)
stores exactly what the node's own process would: the same verdicts, the same bytes."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from intelpact.config import ConfigError, load_config
from intelpact.crypto.keys import key_id, public_raw
from intelpact.crypto.signing import verify_object
from intelpact.model import national_marking
from intelpact.services.node import Node
from intelpact.services.prepare import MIN_OBJECTS, Preparer, prepare
from intelpact.services.publish import MarkingRequest

from helpers import AGREEMENTS, alive, children, indicator, node_ports, start_serve, stix_id

DATA = Path(__file__).resolve().parents[1] / "data"
MARKING = MarkingRequest("秘", ("NZL",))
TAXII = "application/taxii+json;version=2.1"


@pytest.fixture()
def twins(tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    """Two copies of one node (same key, same collection, same people): what one stores
    through the pool, the other stores in its own process. SQLite: the copy is a file."""
    first = Node.create(tmp_path / "a", party="JPN", agreement_file=AGREEMENTS / "jpn-nzl.toml",
                        tls=False, **node_ports())
    first.people.add("aki", party="JPN", clearance="極秘", caveats=["JPNEO"],
                     communities=["MARITIME"], roles=["analyst", "publisher"])
    first.close()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    pooled, alone = Node.open(tmp_path / "a"), Node.open(tmp_path / "b")
    pooled.preparer.enable(2)
    yield pooled, alone
    pooled.close()
    alone.close()


def _started(preparer: Preparer) -> list[int]:
    """Start the pool and wait until it is up: its processes' ids."""
    assert preparer.start(timeout=60), "the pool did not start in 60 s"
    return [p.pid for p in multiprocessing.active_children() if p.pid is not None]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _mixed() -> list[Any]:
    """ATT&CK ICS (every SDO kind it has), indicators with hostile text, STIX the
    validator refuses, objects citing a marking nobody defined, and non-objects."""
    attack = json.loads((DATA / "stix/attack-ics/ics-attack-18.1.json").read_text())["objects"]
    naughty = json.loads((DATA / "json/naughty-strings/blns.json").read_text())
    hostile = [indicator(f"naughty {i}", description=text)
               for i, text in enumerate(naughty[:200])]
    invalid = []
    for path in sorted((DATA / "stix/invalid").glob("*.json")):
        try:
            body = json.loads(path.read_text())
        except ValueError:
            continue  # not JSON at all: a parse error, before publishing
        invalid += body.get("objects", [body]) if isinstance(body, dict) else [body]
    unknown = [indicator("unknown marking", object_marking_refs=[stix_id("marking-definition")])]
    odd = [42, "text", None, [1, 2], {"type": "indicator"}, indicator("bad", pattern="[x")]
    defs = [o for o in attack if o["type"] == "marking-definition"]
    rest = [o for o in attack if o["type"] != "marking-definition"]
    return [*rest[:600], *hostile, *invalid, *unknown, *odd, *defs, *rest[600:900]]


def _bodies(node: Node, cid: str) -> dict[tuple[str, str], str]:
    """Every stored version's body, read from the node's SQLite file."""
    with sqlite3.connect(f"file:{node.config.dir / 'node.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT object_id, version, body FROM objects "
                          "WHERE collection_id = ?", (cid,)).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def _verdicts(status: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    return ([(s["id"], s.get("version")) for s in status["successes"]],
            [(f["id"], f["message"]) for f in status["failures"]])


def test_pooled_publication_stores_the_same_bytes(twins: tuple[Node, Node]) -> None:
    pooled, alone = twins
    children = _started(pooled.preparer)
    assert len(children) >= 2
    before = {pid: _cpu_ticks(pid) for pid in children}
    objects = _mixed()
    who = pooled.people.as_person("aki").person
    cid = pooled.default_collection().collection_id
    a = pooled.publisher.publish(who, cid, objects, marking=MARKING).body
    b = alone.publisher.publish(who, cid, objects, marking=MARKING).body
    assert _verdicts(a) == _verdicts(b)
    assert a["success_count"] > 800 and a["failure_count"] > 10
    messages = " ".join(m for _, m in _verdicts(a)[1])
    assert "not a JSON object" in messages and "marking" in messages
    assert _bodies(pooled, cid) == _bodies(alone, cid)
    # the pool did the work: its processes spent CPU on it
    assert sum(_cpu_ticks(pid) - t for pid, t in before.items()) > 0


def test_pooled_signatures_use_the_rotated_key(twins: tuple[Node, Node]) -> None:
    pooled, _ = twins
    _started(pooled.preparer)
    new_id = pooled.rotate_key()
    objects = [indicator(f"after rotation {i}") for i in range(MIN_OBJECTS)]
    who = pooled.people.as_person("aki").person
    cid = pooled.default_collection().collection_id
    assert pooled.publisher.publish(who, cid, objects,
                                    marking=MARKING).body["failure_count"] == 0
    key = pooled.signing_key.public_key()
    assert key_id(public_raw(pooled.signing_key)) == new_id
    for body in _bodies(pooled, cid).values():
        obj = json.loads(body)
        if obj["type"] == "indicator":
            assert verify_object(obj, "JPN", {new_id: key}) == new_id


def test_a_killed_pool_process_loses_nothing(twins: tuple[Node, Node]) -> None:
    pooled, alone = twins
    children = _started(pooled.preparer)
    os.kill(children[0], signal.SIGKILL)
    objects = [indicator(f"survivor {i}") for i in range(3 * MIN_OBJECTS)]
    who = pooled.people.as_person("aki").person
    cid = pooled.default_collection().collection_id
    status = pooled.publisher.publish(who, cid, objects, marking=MARKING).body
    assert status["failure_count"] == 0 and status["success_count"] == len(objects) + 1
    alone.publisher.publish(who, cid, objects, marking=MARKING)
    assert _bodies(pooled, cid) == _bodies(alone, cid)
    # and the next large publication starts a new pool
    children = _started(pooled.preparer)
    assert children and all(_cpu_ticks(pid) >= 0 for pid in children)


def test_small_publications_and_a_disabled_pool_stay_here(tmp_path: Path) -> None:
    node = Node.create(tmp_path / "n", party="JPN", agreement_file=AGREEMENTS / "jpn-nzl.toml",
                       tls=False, **node_ports())
    try:
        assert not node.preparer.start(timeout=1)  # not enabled
        node.preparer.enable(2)
        list(node.preparer.prepare([indicator(str(i)) for i in range(MIN_OBJECTS - 1)], []))
        assert node.preparer._pool is None  # too small to send: not even started
    finally:
        node.close()


def test_prepare_refuses_what_the_validator_refuses() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    assert prepare("x", [], key, "JPN").reason == "not a JSON object"
    bad = prepare(indicator("bad", pattern="[x"), [], key, "JPN")
    assert bad.reason and "pattern" in bad.reason and not bad.body
    good = prepare(indicator("good"), ["marking-definition--" + "0" * 36], key, "JPN")
    assert good.reason is None and len(good.digest) == 64
    assert json.loads(good.body)["object_marking_refs"] == ["marking-definition--" + "0" * 36]


@pytest.mark.parametrize("value", ["2", -1, 65, True, 1.5])
def test_ingest_processes_is_checked(tmp_path: Path, value: Any) -> None:
    node = Node.create(tmp_path / "n", party="JPN", agreement_file=AGREEMENTS / "jpn-nzl.toml",
                       tls=False, **node_ports())
    node.close()
    path = tmp_path / "n" / "node.toml"
    path.write_text(path.read_text() + f"ingest_processes = {json.dumps(value)}\n")
    with pytest.raises(ConfigError, match="server.ingest_processes: expected 0 to 64"):
        load_config(tmp_path / "n")


def test_ingest_processes_round_trips(tmp_path: Path) -> None:
    node = Node.create(tmp_path / "n", party="JPN", agreement_file=AGREEMENTS / "jpn-nzl.toml",
                       tls=False, **node_ports())
    node.close()
    path = tmp_path / "n" / "node.toml"
    assert load_config(tmp_path / "n").ingest_processes is None
    path.write_text(path.read_text() + "ingest_processes = 3\n")
    assert load_config(tmp_path / "n").ingest_processes == 3


_POOL_THEN_WAIT = """
import multiprocessing, sys, time
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from intelpact.services.prepare import MIN_OBJECTS, Preparer

def main():
    key = Ed25519PrivateKey.generate()
    preparer = Preparer(lambda: (key, "JPN"))
    preparer.enable(2)
    assert preparer.start(timeout=60)
    print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
    time.sleep(600)

if __name__ == "__main__":
    main()
"""


def test_a_killed_node_process_leaves_no_pool_behind(tmp_path: Path) -> None:
    """SIGKILL gives the node's process no chance to end its pool: the pool's processes
    notice their parent is gone and end themselves."""
    script = tmp_path / "pool.py"
    script.write_text(_POOL_THEN_WAIT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    deadline = time.monotonic() + 20
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"pool processes {pids} outlived their parent"
        time.sleep(0.05)


def test_a_pool_that_cannot_start_leaves_the_work_here(twins: tuple[Node, Node],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """No process to be had (a limit on processes, say): the publication is not refused,
    it is prepared in the node's process, and the pool is not tried again."""
    pooled, alone = twins

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("fork: Resource temporarily unavailable")

    monkeypatch.setattr("intelpact.services.prepare.ProcessPoolExecutor", refuse)
    objects = [indicator(f"alone {i}") for i in range(2 * MIN_OBJECTS)]
    who = pooled.people.as_person("aki").person
    cid = pooled.default_collection().collection_id
    status = pooled.publisher.publish(who, cid, objects, marking=MARKING).body
    assert status["failure_count"] == 0 and status["success_count"] == len(objects) + 1
    assert pooled.preparer.processes == 0 and not pooled.preparer.start(timeout=1)
    alone.publisher.publish(who, cid, objects, marking=MARKING)
    assert _bodies(pooled, cid) == _bodies(alone, cid)


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_starts_each_pool_before_listening_and_ends_it(tmp_path: Path,
                                                             workers: int) -> None:
    """`serve` (and each of `--workers 2`) with `ingest_processes = 2` starts its pool
    before it listens: the first answer comes from a process whose pool is up (its
    processes imported the validator), large publications use it, and it ends with the
    server."""
    from helpers import stop_group

    node = Node.create(tmp_path / "n", party="JPN", agreement_file=AGREEMENTS / "jpn-nzl.toml",
                       tls=False, **node_ports())
    node.people.add("aki", party="JPN", clearance="極秘", roles=["analyst", "publisher"],
                    password="pool-test-password")
    cid, port = node.default_collection().collection_id, node.config.port
    marking = national_marking(node.agreement, "JPN", "秘", rel_to=("NZL",))
    node.close()
    path = tmp_path / "n" / "node.toml"
    path.write_text(path.read_text() + "ingest_processes = 2\n")
    proc = start_serve(tmp_path / "n", "--workers", str(workers))
    url = f"http://127.0.0.1:{port}/intel/collections/{cid}/objects/"

    def pools() -> list[list[int]]:
        """Each serving process's children (its pool, and multiprocessing's tracker)."""
        serving = [proc.pid] if workers == 1 else children(proc.pid)
        return [children(w) for w in serving if children(w)]

    found: list[list[int]] = []
    try:
        with httpx.Client(auth=("aki", "pool-test-password"), timeout=60,
                          headers={"Accept": TAXII, "Content-Type": TAXII}) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get(url.split("/intel/")[0] + "/taxii2/").raise_for_status()
                    break
                except httpx.HTTPError:
                    assert time.monotonic() < deadline and proc.poll() is None, "no server"
                    time.sleep(0.2)
            found = pools()
            assert found, "a process answered before its publication pool was started"
            assert all(len(pool) >= 2 and all(_cpu_ticks(p) for p in pool) for pool in found)
            deadline = time.monotonic() + 60
            while len(found) < workers:  # the other worker: up once it listens too
                assert time.monotonic() < deadline, f"pools: {found}"
                time.sleep(0.2)
                found = pools()
            before = sum(_cpu_ticks(p) for pool in found for p in pool)
            for k in range(4):
                objects = [marking] + [indicator(f"p{k}-{i}", object_marking_refs=[marking["id"]])
                                       for i in range(3 * MIN_OBJECTS)]
                r = client.post(url, content=json.dumps({"objects": objects}))
                assert r.status_code == 202 and r.json()["failure_count"] == 0, r.text[:300]
            assert sum(_cpu_ticks(p) for pool in found for p in pool) > before
    finally:
        proc.terminate()  # the server alone: it stops its workers, each its pool
        try:
            _, err_bytes = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            stop_group(proc)
            raise
    err = err_bytes.decode()
    assert proc.returncode == 0, err[-2000:]
    assert "leaked" not in err and "Traceback" not in err, err[-2000:]
    deadline = time.monotonic() + 20
    while any(alive(p) for pool in found for p in pool):
        assert time.monotonic() < deadline, f"pool processes {found} outlived the server"
        time.sleep(0.1)


def test_a_pool_whose_processes_fail_to_start_is_given_up(
        twins: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch) -> None:
    """A pool process that dies as it starts (here: its start-up code raises) leaves the
    work to the node's process, and the pool is not started again and again."""
    pooled, _ = twins
    monkeypatch.setattr("intelpact.services.prepare._start_process", _fail_to_start)
    assert not pooled.preparer.start(timeout=60)
    assert pooled.preparer.processes == 0 and pooled.preparer._pool is None
    objects = [indicator(f"still published {i}") for i in range(MIN_OBJECTS)]
    who = pooled.people.as_person("aki").person
    status = pooled.publisher.publish(who, pooled.default_collection().collection_id, objects,
                                      marking=MARKING).body
    assert status["failure_count"] == 0 and status["success_count"] == len(objects) + 1


def _fail_to_start() -> None:
    raise RuntimeError("cannot start")


def _wait_for(path: str) -> None:
    """Hold a pool process until ``path`` exists (at most a minute)."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_waiting_says_whether_the_pool_is_behind(twins: tuple[Node, Node],
                                                 tmp_path: Path) -> None:
    """A preparation is ``waiting`` while its next result is not back from the pool (the
    publisher stores what it has meanwhile), and the results are those of `prepare`."""
    pooled, _ = twins
    pooled.preparer.enable(1)
    _started(pooled.preparer)
    gate = tmp_path / "gate"
    assert pooled.preparer._pool is not None
    held = pooled.preparer._pool.submit(_wait_for, str(gate))  # its one process is busy
    items = [indicator(f"waiting {i}") for i in range(MIN_OBJECTS + 30)]
    refs = [national_marking(pooled.agreement, "JPN", "秘", rel_to=("NZL",))["id"]]
    with pooled.preparer.prepare(items, refs) as results:
        assert results.waiting
        gate.touch()
        held.result(timeout=60)
        got = list(results)
        assert not results.waiting
    key, party = pooled.preparer.signer()
    assert got == [prepare(item, refs, key, party) for item in items]
    with pooled.preparer.prepare(items[:5], []) as few:  # prepared here: never waiting
        assert not few.waiting and len(list(few)) == 5 and not few.waiting
