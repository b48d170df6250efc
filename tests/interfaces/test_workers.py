"""`intelpact serve --workers N` on PostgreSQL and on SQLite: several real processes, one
store."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from intelpact.model import national_marking
from intelpact.services.node import Node
from intelpact.store.base import AuditFilter

import pg
from helpers import indicator, make_node, start_serve, stop_group

TAXII = "application/taxii+json;version=2.1"
PW = "workers-test-password"


@pytest.fixture(params=["postgresql", "sqlite"])
def served(request: pytest.FixtureRequest, tmp_path: Path
           ) -> Iterator[tuple[str, str, Path]]:
    database = pg.database_url("workers") if request.param == "postgresql" else "node.db"
    node = make_node(tmp_path / "jpn", database=database)
    node.people.add("pub", party="JPN", clearance="機密", roles=["analyst", "publisher"],
                    password=PW)
    node.people.add("reader", party="NZL", clearance="SECRET", roles=["analyst"],
                    password=PW)
    cid = node.default_collection().collection_id
    port = node.config.port
    node.close()
    proc = start_serve(tmp_path / "jpn", "--workers", "3")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/taxii2/", headers={"Accept": TAXII},
                             auth=("pub", PW)).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("serve --workers did not start: "
                                   + (proc.stderr.read().decode() if proc.stderr else ""))
            time.sleep(0.2)
        yield url, cid, tmp_path / "jpn"
    finally:
        stop_group(proc)


def test_concurrent_writers_and_readers_across_workers(tmp_path: Path,
                                                       served: tuple[str, str, Path]) -> None:
    url, cid, node_dir = served
    from intelpact.model import load_agreement
    agreement = load_agreement(node_dir / "agreement.toml")
    marking = national_marking(agreement, "JPN", "秘", rel_to=["NZL"])
    posted: list[str] = []
    statuses: list[str] = []
    lock = threading.Lock()
    errors: list[str] = []

    def writer(k: int) -> None:
        with httpx.Client(auth=("pub", PW), timeout=30) as client:
            for batch in range(5):
                objs = [indicator(f"w{k}-{batch}-{i}", object_marking_refs=[marking["id"]])
                        for i in range(20)]
                r = client.post(f"{url}/intel/collections/{cid}/objects/",
                                content=json.dumps({"objects": [marking, *objs]}).encode(),
                                headers={"Accept": TAXII, "Content-Type": TAXII})
                if r.status_code != 202 or r.json()["failure_count"]:
                    errors.append(r.text[:300])
                    continue
                with lock:
                    posted.extend(o["id"] for o in objs)
                    statuses.append(r.json()["id"])

    seen: list[str] = []

    def reader() -> None:
        """Follows the collection while others write: `next` within a walk, then
        `added_after` from the last page's X-TAXII-Date-Added-Last (TAXII's way)."""
        with httpx.Client(auth=("reader", PW), timeout=30) as client:
            nxt, after = None, None
            for _ in range(2000):
                params = {"limit": "17", "match[type]": "indicator"}
                if after:
                    params["added_after"] = after
                if nxt:
                    params["next"] = nxt
                r = client.get(f"{url}/intel/collections/{cid}/objects/", params=params,
                               headers={"Accept": TAXII})
                page = r.json()
                seen.extend(o["id"] for o in page.get("objects", []))
                last = r.headers.get("X-TAXII-Date-Added-Last")
                if page["more"]:
                    nxt = page["next"]
                    continue
                nxt = None
                after = last or after
                if not any(t.is_alive() for t in writers) and not page.get("objects"):
                    break
                time.sleep(0.02)

    writers = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in writers:
        t.start()
    read = threading.Thread(target=reader)
    read.start()
    for t in writers:
        t.join(120)
    read.join(120)
    assert not errors, errors[:2]
    assert len(posted) == 400
    # every status is readable from whichever worker answers
    with httpx.Client(auth=("pub", PW)) as client:
        for sid in statuses:
            r = client.get(f"{url}/intel/status/{sid}", headers={"Accept": TAXII})
            assert r.status_code == 200 and r.json()["success_count"] == 21
    # the reader, following live, saw every object exactly once
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(posted)
    walked: list[str] = []
    nxt = None
    with httpx.Client(auth=("reader", PW)) as client:
        while True:
            params = {"limit": "50", "match[type]": "indicator"}
            if nxt:
                params["next"] = nxt
            page = client.get(f"{url}/intel/collections/{cid}/objects/", params=params,
                              headers={"Accept": TAXII}).json()
            walked.extend(o["id"] for o in page.get("objects", []))
            if not page["more"]:
                break
            nxt = page["next"]
        r = client.get(f"{url}/intel/collections/{cid}/objects/",
                       params={"match[type]": "indicator", "limit": "1000"},
                       headers={"Accept": TAXII})
        first = r.headers["X-TAXII-Date-Added-First"]
        last = r.headers["X-TAXII-Date-Added-Last"]
        assert first < last
    assert sorted(walked) == sorted(posted)
    # the audit log, appended by three workers at once: every publication exactly once,
    # leaf indexes without a gap, reads recorded, and the whole log verifies
    node = Node.open(node_dir)
    try:
        published = [o[0] for e in node.store.find_audit(
            AuditFilter(kinds=("publish",), limit=100_000))
            for o in json.loads(e.body)["objects"] if o[0].startswith("indicator--")]
        assert sorted(published) == sorted(posted)
        events = node.store.audit_events(0, 1_000_000)
        assert [e.index for e in events] == list(range(len(events)))
        assert node.store.find_audit(AuditFilter(kinds=("read",), limit=1))
        node.audit.checkpoint()
        assert node.audit.verify().ok
    finally:
        node.close()


def test_connections_accepted_from_a_worker_socket_get_no_delay() -> None:
    """uvicorn's workers listen on a socket made without IPPROTO_TCP, so asyncio leaves
    Nagle on for accepted connections (about 40 ms a response); the node's HTTP
    protocol turns it off, on every server it runs."""
    import socket

    from intelpact.interfaces.server import NoDelayHTTP, no_delay, taxii_server_options

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:  # proto 0
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
                no_delay(accepted)
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
                assert client is not None
    no_delay(None)  # nothing to do, no error
    node = make_node(Path(__import__("tempfile").mkdtemp()) / "n")
    try:
        protocol = taxii_server_options(node)["http"]
        assert protocol.func is NoDelayHTTP  # with the node's header deadline
        assert protocol.keywords == {"header_timeout": node.config.header_timeout}
    finally:
        node.close()
