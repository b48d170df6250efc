"""`intelpact serve` stops at once on SIGTERM, though clients keep idle connections open;
and SIGHUP (the terminal it ran in was closed) stops it as cleanly, where it once ended
the process before the node was closed.

A TAXII client or a partner's courier keeps its connection to a node in its pool between
requests. uvicorn closes such a connection gracefully when it stops, and over TLS that
waits for the client's ``close_notify``, up to asyncio's 30 s, which a pooled connection
never sends: `serve` took 30 s to stop, and the demo killed its nodes after 10
(interfaces/limits.py, ``NoDelayHTTP.shutdown``)."""

from __future__ import annotations

import contextlib
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from intelpact.services.federation import make_card

from helpers import make_node, start_serve, stop_group

TAXII = "application/taxii+json;version=2.1"
PW = "serve-stop-test-password"
STOPS_WITHIN = 15.0  # seconds: well under the 30 s of a TLS close no client answers


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_serve_stops_at_once_while_clients_hold_idle_tls_connections(
        tmp_path: Path, sig: signal.Signals) -> None:
    jpn = make_node(tmp_path / "jpn", tls=True)
    nzl = make_node(tmp_path / "nzl", "NZL")
    jpn.people.add("pub", party="JPN", clearance="秘", roles=["analyst"], password=PW)
    jpn.federation.add_peer(make_card(nzl.identity))
    taxii, federation = f"https://127.0.0.1:{jpn.config.port}/taxii2/", jpn.config.federation_url
    assert jpn.config.tls_cert and nzl.config.tls_cert and nzl.config.tls_key
    trusted = ssl.create_default_context(cafile=str(jpn.config.tls_cert))
    pinned = ssl.create_default_context(cafile=str(jpn.config.tls_cert))
    pinned.load_cert_chain(str(nzl.config.tls_cert), str(nzl.config.tls_key))
    jpn.close()
    nzl.close()
    reader = httpx.Client(verify=trusted, auth=("pub", PW), trust_env=False,
                          headers={"Accept": TAXII})
    partner = httpx.Client(verify=pinned, trust_env=False)  # NZL's node, by its certificate
    proc = start_serve(tmp_path / "jpn")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answered = reader.get(taxii)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    proc.stderr.read().decode() if proc.stderr else "serve did not start"
                time.sleep(0.2)
        assert answered.status_code == 200, answered.text
        assert partner.get(f"{federation}/federation/card").status_code == 200
        # both keep their connection open, idle, as pooled clients do
        proc.send_signal(sig)
        _stops(proc, f"{sig.name}, while clients held idle TLS connections")
    finally:
        reader.close()
        partner.close()
        if proc.poll() is None:
            stop_group(proc)
        elif proc.stderr:
            proc.stderr.close()


def test_serve_stops_at_once_after_answering_a_request_in_progress_over_tls(
        tmp_path: Path) -> None:
    """A request still being sent when SIGTERM comes is answered, then its connection
    closed. uvicorn closes it gracefully, and over TLS that waits for the client's
    ``close_notify`` (asyncio's 30 s), which a client keeping the connection in its pool
    never sends: `serve` took 30 s to stop whenever a partner's courier or a reader was
    mid-request at the signal (a fault test timed out waiting 30 s for it). The answer
    still arrives whole; the close waits a second at most."""
    body = b'{"objects": []}'
    with _posting(tmp_path, len(body)) as (proc, conn, _):
        conn.sendall(body[:5])  # the request begun: the app waits for its body
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        conn.sendall(body[5:])
        conn.settimeout(10)
        answer = conn.recv(65536)
        assert answer.startswith(b"HTTP/1.1 "), answer
        stopped = time.monotonic()
        # the client keeps the connection (no close_notify), as a pooled one does
        _stops(proc, "SIGTERM, after answering a request in progress")
        assert time.monotonic() - stopped < 5


def test_serve_stops_within_its_grace_though_a_request_in_progress_never_ends(
        tmp_path: Path) -> None:
    """A client that trickles its body, a byte a second (within every body deadline:
    120 s in all), held `serve` from stopping until the body was read or timed out: a
    listener waited for the requests in progress for as long as they took. Now each has
    STOP_GRACE seconds, is named in the log meanwhile, and is then cancelled."""
    import threading

    from intelpact.interfaces.limits import STOP_GRACE

    done = threading.Event()
    with _posting(tmp_path, 100_000) as (proc, conn, path):
        def trickle() -> None:
            while not done.wait(1.0):
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

        conn.sendall(b"{")
        threading.Thread(target=trickle, daemon=True).start()
        try:
            time.sleep(1.5)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _stops(proc, "SIGTERM, while a client trickled its body")
            assert time.monotonic() - signalled < STOP_GRACE + 5
            assert proc.stderr is not None
            said = proc.stderr.read().decode()
            assert f"still answering POST {path} from 127.0.0.1:" in said, said
        finally:
            done.set()


@contextlib.contextmanager
def _posting(tmp_path: Path, length: int
             ) -> Iterator[tuple[subprocess.Popen[bytes], ssl.SSLSocket, str]]:
    """A JPN node served over TLS by a real `serve`, and a TLS connection to it on which
    the head of a publisher's POST of a ``length``-byte body has been sent: the serving
    process, the connection and the objects path. Both are ended after."""
    import base64
    import socket

    jpn = make_node(tmp_path / "jpn", tls=True)
    jpn.people.add("pub", party="JPN", clearance="秘", roles=["analyst", "publisher"],
                   password=PW)
    assert jpn.config.tls_cert
    trusted = ssl.create_default_context(cafile=str(jpn.config.tls_cert))
    port, root = jpn.config.port, jpn.config.api_root
    path = f"/{root}/collections/{jpn.default_collection().collection_id}/objects/"
    jpn.close()
    proc = start_serve(tmp_path / "jpn")
    credentials = base64.b64encode(f"pub:{PW}".encode()).decode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Basic {credentials}\r\nContent-Type: {TAXII}\r\n"
            f"Accept: {TAXII}\r\nContent-Length: {length}\r\n\r\n").encode()
    conn: ssl.SSLSocket | None = None
    try:
        deadline = time.monotonic() + 60
        while conn is None:
            try:
                conn = trusted.wrap_socket(socket.create_connection(("127.0.0.1", port), 5),
                                           server_hostname="127.0.0.1")
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    proc.stderr.read().decode() if proc.stderr else "serve did not start"
                time.sleep(0.2)
        conn.sendall(head)
        yield proc, conn, path
    finally:
        if conn is not None:
            conn.close()
        if proc.poll() is None:
            stop_group(proc)
        elif proc.stderr:
            proc.stderr.close()


def _stops(proc: subprocess.Popen[bytes], after: str) -> None:
    """``proc`` (a `serve`) exits, with 0, within STOPS_WITHIN seconds."""
    try:
        code = proc.wait(STOPS_WITHIN)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"serve did not stop within {STOPS_WITHIN} s of {after}") from None
    assert code == 0, proc.stderr.read().decode() if proc.stderr else code
