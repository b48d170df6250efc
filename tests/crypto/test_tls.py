"""Self-signed node certificates: real handshakes with the certificate as trust anchor.

Every client here loads the node's own certificate file as its CA file, as a
partner or an analyst's tool does: Python ``ssl``, httpx, requests and curl, and
a uvicorn server in front of a trivial ASGI app.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import shutil
import socket
import ssl
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from intelpact.crypto import TlsError, fingerprint, make_self_signed
from intelpact.crypto.tls import check_names_host, der_fingerprint, load_certificate
from intelpact.services.courier import Courier
from intelpact.store.base import PeerRecord

from helpers import make_node


@dataclass(frozen=True)
class Node:
    cert: Path
    key: Path
    fp: str


def _make(tmp: Path, name: str, **kwargs: Any) -> Node:
    cert, key = tmp / name / "cert.pem", tmp / name / "key.pem"
    fp = make_self_signed(cert, key, common_name=f"intelpact {name} node", **kwargs)
    return Node(cert, key, fp)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Node]:
    tmp = tmp_path_factory.mktemp("tls")
    return {name: _make(tmp, name) for name in ("JPN", "NZL", "AUS")}


# -- the certificate itself ------------------------------------------------------------

def test_fingerprint_is_sha256_of_der(certs: dict[str, Node]) -> None:
    node = certs["JPN"]
    der = ssl.PEM_cert_to_DER_cert(node.cert.read_text())
    assert node.fp == hashlib.sha256(der).hexdigest() == fingerprint(node.cert)
    assert len(node.fp) == 64 and node.fp == node.fp.lower() and ":" not in node.fp
    assert certs["NZL"].fp != node.fp


def test_profile(certs: dict[str, Node]) -> None:
    cert = load_certificate(certs["JPN"].cert)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value \
        == "intelpact JPN node"
    assert cert.issuer == cert.subject
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 825 * 86400 <= life.total_seconds() <= 825 * 86400 + 600


def test_key_is_private_and_cert_is_readable(certs: dict[str, Node]) -> None:
    assert stat.S_IMODE(certs["JPN"].key.stat().st_mode) == 0o600
    assert stat.S_IMODE(certs["JPN"].cert.stat().st_mode) == 0o644


def test_ipv6_and_dns_hosts(tmp_path: Path) -> None:
    node = _make(tmp_path, "X", hosts=["::1", "Node.Example.org.", "10.0.0.7"], days=30)
    san = load_certificate(node.cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["::1", "10.0.0.7"]
    assert san.get_values_for_type(x509.DNSName) == ["node.example.org"]


def test_refuses_to_overwrite(certs: dict[str, Node]) -> None:
    node = certs["JPN"]
    with pytest.raises(TlsError, match="already exists"):
        make_self_signed(node.cert, node.key.with_name("other.pem"), common_name="x")
    with pytest.raises(TlsError, match="already exists"):
        make_self_signed(node.cert.with_name("other.pem"), node.key, common_name="x")
    assert fingerprint(node.cert) == node.fp
    assert not node.cert.with_name("other.pem").exists()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"hosts": []}, "expected a list"),
    ({"hosts": "127.0.0.1"}, "expected a list"),
    ({"hosts": ["*.example.org"]}, "neither an IP address nor a DNS host name"),
    ({"hosts": ["bad host"]}, "neither an IP address"),
    ({"hosts": ["-x.example"]}, "neither an IP address"),
    ({"hosts": ["evil.example\n"]}, "neither an IP address"),  # `$` let it through
    ({"days": 0}, "expected 1-825 days, found 0"),
    ({"days": 826}, "expected 1-825 days, found 826"),
    ({"common_name": "x" * 65}, "expected 1-64 characters"),
])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"common_name": "intelpact JPN node", **kwargs}
    with pytest.raises(TlsError, match=message):
        make_self_signed(tmp_path / "c.pem", tmp_path / "k.pem", **args)
    assert list(tmp_path.iterdir()) == []


def test_fingerprint_errors(tmp_path: Path) -> None:
    with pytest.raises(TlsError, match="not found"):
        fingerprint(tmp_path / "absent.pem")
    (tmp_path / "junk.pem").write_text("junk")
    with pytest.raises(TlsError, match="not a PEM certificate"):
        fingerprint(tmp_path / "junk.pem")


# -- real handshakes -----------------------------------------------------------------

@dataclass
class TlsServer:
    port: int
    peer_fps: list[str]


def _serve(node: Node, client_ca: Path | None = None) -> Iterator[TlsServer]:
    """A TLS echo-less server on 127.0.0.1: handshakes, answers b"ok", records peers."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(node.cert, node.key)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=client_ca)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    server = TlsServer(listener.getsockname()[1], [])
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            raw.settimeout(5)
            try:
                with ctx.wrap_socket(raw, server_side=True) as conn:
                    peer = conn.getpeercert(binary_form=True)
                    if peer:
                        server.peer_fps.append(der_fingerprint(peer))
                    conn.sendall(b"ok")
            except (ssl.SSLError, OSError):
                raw.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture(scope="module")
def jpn_server(certs: dict[str, Node]) -> Iterator[TlsServer]:
    yield from _serve(certs["JPN"])


def _connect(port: int, ctx: ssl.SSLContext, hostname: str = "127.0.0.1") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=hostname) as conn:
        return conn.recv(2)


@pytest.mark.parametrize("strict", [False, True], ids=["default", "x509-strict"])
@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_ssl_trusts_the_cert_as_ca_file(certs: dict[str, Node], jpn_server: TlsServer,
                                        hostname: str, strict: bool) -> None:
    ctx = ssl.create_default_context(cafile=certs["JPN"].cert)
    if strict:  # Python 3.13 turns this on in create_default_context
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert _connect(jpn_server.port, ctx, hostname) == b"ok"


def test_other_cert_as_ca_fails(certs: dict[str, Node], jpn_server: TlsServer) -> None:
    ctx = ssl.create_default_context(cafile=certs["NZL"].cert)
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate"):
        _connect(jpn_server.port, ctx)


def test_name_not_in_san_fails(certs: dict[str, Node], jpn_server: TlsServer) -> None:
    ctx = ssl.create_default_context(cafile=certs["JPN"].cert)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _connect(jpn_server.port, ctx, "node.example.org")


def test_mutual_tls_with_pinned_certs(certs: dict[str, Node]) -> None:
    """NZL's server trusts only JPN's certificate for clients; AUS is refused."""
    for server in _serve(certs["NZL"], client_ca=certs["JPN"].cert):
        for client, accepted in (("JPN", True), ("AUS", False)):
            ctx = ssl.create_default_context(cafile=certs["NZL"].cert)
            ctx.load_cert_chain(certs[client].cert, certs[client].key)
            if accepted:
                assert _connect(server.port, ctx) == b"ok"
            else:
                # TLS 1.3: the client learns of the refusal on its first read
                with pytest.raises((ssl.SSLError, ConnectionError)):
                    _connect(server.port, ctx)
        assert server.peer_fps == [certs["JPN"].fp]


# -- uvicorn, httpx, requests, curl ----------------------------------------------------

async def _app(scope: dict[str, Any], receive: Callable[..., Any],
               send: Callable[..., Any]) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture(scope="module")
def https_url(certs: dict[str, Node]) -> Iterator[str]:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    config = uvicorn.Config(_app, host="127.0.0.1", port=port, log_level="warning",
                            ssl_certfile=str(certs["JPN"].cert),
                            ssl_keyfile=str(certs["JPN"].key), lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"https://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


def test_httpx_verifies_with_the_cert(certs: dict[str, Node], https_url: str) -> None:
    ctx = ssl.create_default_context(cafile=certs["JPN"].cert)
    with httpx.Client(verify=ctx) as client:
        assert client.get(https_url).text == "hello"
    wrong = ssl.create_default_context(cafile=certs["NZL"].cert)
    with httpx.Client(verify=wrong) as client, pytest.raises(httpx.ConnectError):
        client.get(https_url)


def test_requests_verifies_with_the_cert_path(certs: dict[str, Node], https_url: str) -> None:
    assert requests.get(https_url, verify=str(certs["JPN"].cert), timeout=5).text == "hello"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(https_url, verify=str(certs["NZL"].cert), timeout=5)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_cacert(certs: dict[str, Node], https_url: str) -> None:
    def curl(cafile: Path, url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", str(cafile), url],
                              capture_output=True, text=True, check=False)

    ok = curl(certs["JPN"].cert, https_url)
    assert (ok.returncode, ok.stdout) == (0, "hello"), ok.stderr
    ok = curl(certs["JPN"].cert, https_url.replace("127.0.0.1", "localhost"))
    assert (ok.returncode, ok.stdout) == (0, "hello"), ok.stderr
    bad = curl(certs["NZL"].cert, https_url)
    assert bad.returncode == 60, bad.stderr  # peer certificate cannot be authenticated


# -- a partner's certificate issued by its agency's CA -----------------------------------

def _issued(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], name: str,
            folder: Path) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 issued by ``ca``, its file holding the chain
    (the certificate, then the CA's), as an agency replaces ``tls/cert.pem``."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = ca_cert.not_valid_before_utc
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(ca_cert.not_valid_after_utc)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir()
    pem = serialization.Encoding.PEM
    (folder / "cert.pem").write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    (folder / "key.pem").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def test_the_courier_trusts_a_partner_s_pinned_certificate_not_its_ca(tmp_path: Path) -> None:
    """An agency replaces a node's tls/cert.pem with one its CA issued, the chain in the
    file (docs/deployment.md, "TLS"); the card carries that file. The courier took the
    whole of it as its trust store: any certificate the agency's CA issued for the
    partner's address passed for the partner, and what was pushed went to whoever held
    one. Only the certificate the card pins (its fingerprint) is trusted, also without
    its chain."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agency CA")])
    now = dt.datetime.now(dt.UTC)
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1))
               .not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    pinned = _issued((ca_cert, ca_key), "NZL node", tmp_path / "nzl")
    other = _issued((ca_cert, ca_key), "another host of the agency", tmp_path / "other")
    node = make_node(tmp_path / "jpn", "JPN")
    try:
        pem = pinned[0].read_text()
        peer = PeerRecord("NZL", "https://127.0.0.1", "", "", pem,
                          fingerprint(pinned[0]), "", "")
        for (cert, key), accepted in ((pinned, True), (other, False)):
            with socket.create_server(("127.0.0.1", 0)) as probe:
                port = probe.getsockname()[1]
            server = uvicorn.Server(uvicorn.Config(
                _app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                ssl_certfile=str(cert), ssl_keyfile=str(key)))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            try:
                while not server.started:
                    time.sleep(0.01)
                with Courier(node) as courier:
                    client = courier._client(peer)
                    if accepted:
                        assert client.get(f"https://127.0.0.1:{port}/").text == "hello"
                    else:
                        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY"):
                            client.get(f"https://127.0.0.1:{port}/")
            finally:
                server.should_exit = True
                thread.join(10)
    finally:
        node.close()


def test_the_host_a_certificate_names(tmp_path: Path) -> None:
    """server.host must be one the certificate names (partners check it): an address as
    an address (::1 written either way), a name whatever its case or final dot, and a
    CA's wildcard for one label; anything else is refused, naming what it names."""
    cert = tmp_path / "cert.pem"
    make_self_signed(cert, tmp_path / "key.pem", common_name="x",
                     hosts=["::1", "node.example.org"])
    for host in ("::1", "0:0::1", "node.example.org", "Node.Example.ORG."):
        check_names_host(cert, host)
    for host in ("127.0.0.1", "other.example.org", "example.org", "localhost"):
        with pytest.raises(TlsError, match=rf"server\.host: {host} is not a host the "
                           r"certificate \S+ names \(::1, node\.example\.org\)"):
            check_names_host(cert, host)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca issued")])
    now = dt.datetime.now(dt.UTC)
    wildcard = tmp_path / "wildcard.pem"
    wildcard.write_bytes(x509.CertificateBuilder().subject_name(name).issuer_name(name)
                         .public_key(key.public_key()).serial_number(1)
                         .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
                         .add_extension(x509.SubjectAlternativeName(
                             [x509.DNSName("*.nodes.example.org")]), critical=False)
                         .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    check_names_host(wildcard, "jpn.nodes.example.org")
    for host in ("nodes.example.org", "a.jpn.nodes.example.org"):
        with pytest.raises(TlsError, match="is not a host the certificate"):
            check_names_host(wildcard, host)
