"""A node's self-signed TLS certificate: made by ``intelpact init``, pinned by partners.

The certificate is its own trust anchor. A client trusts the node by loading
the certificate file as its CA file (Python ``ssl``/httpx ``verify=``, curl
``--cacert``) and partners pin its SHA-256 fingerprint in the node card.

Profile (docs/configuration.md, "TLS certificate"):

- EC P-256 key, ECDSA-SHA256 signature, random 159-bit serial;
- subject and issuer ``CN=<common_name>``;
- SubjectAltName: every host, as an IP address when it parses as one, else a DNS name;
- BasicConstraints ``CA:FALSE`` (critical); KeyUsage digitalSignature (critical);
  ExtendedKeyUsage serverAuth and clientAuth (the same certificate serves for
  mutual TLS between nodes); subject and authority key identifiers.

``CA:FALSE`` is deliberate. OpenSSL (and so Python ``ssl``, httpx, curl) accepts a
self-signed end-entity certificate placed directly in the trust store, also with
``VERIFY_X509_STRICT`` (the default from Python 3.13); tests/crypto/test_tls.py
checks this with real handshakes. A ``CA:TRUE`` certificate would let whoever
holds a node's key mint certificates for *other* names that every client
trusting that node would accept, for example a client certificate claiming to be
a different partner on a server that trusts several partners at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import IntelpactError
from .keys import KeyFileError, write_private_file

DEFAULT_HOSTS = ("127.0.0.1", "localhost")
MAX_DAYS = 825  # the longest validity Apple platforms accept for a TLS server certificate
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class TlsError(IntelpactError):
    """A TLS certificate cannot be made or read."""


def _san(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """SubjectAltName entries: IP addresses as IPAddress, everything else as DNSName."""
    if isinstance(hosts, str) or not hosts:
        raise TlsError(f"expected a list of host names or IP addresses, found {hosts!r}",
                       hint='pass e.g. ["127.0.0.1", "localhost"]')
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        name = host.lower().rstrip(".")
        if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in name.split(".")):
            raise TlsError(f"{host!r} is neither an IP address nor a DNS host name",
                           hint="use an address such as 127.0.0.1 or ::1, or a name such as "
                           "node.example.org (ASCII letters, digits, '-' and '.', no wildcards)")
        names.append(x509.DNSName(name))
    return names


def check_host(host: str) -> None:
    """Refuse (:class:`TlsError`) a host that is neither an IP address nor a DNS host
    name, as a certificate's SubjectAltName would have it."""
    _san([host])


def wildcard_host(host: str) -> bool:
    """Whether ``host`` is a wildcard address, "every interface" (``0.0.0.0``, ``::``, or a
    form of them such as ``0`` or ``0x0`` that resolvers read as ``0.0.0.0``): a listener
    binds it; nobody reaches a node there. Such a host cannot go in a node card."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        shorthand = ipv4_shorthand(host)
        return shorthand is not None and shorthand.is_unspecified
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_unspecified or (mapped is not None and mapped.is_unspecified)


def ipv4_shorthand(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a name of numbers alone stands for (``127.1``, ``0x7f.1``, ``0``,
    none an address written in full), as ``inet_aton`` and so resolvers read it; None
    for anything else. A certificate would name it as a DNS name no client asks for."""
    name = host.rstrip(".")
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return None  # written in full
    if not name or ":" in name or not all(re.fullmatch(r"0[xX][0-9a-fA-F]*|[0-9]+", label)
                                          for label in name.split(".")):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(name))
    except OSError:
        return None


def make_self_signed(cert_path: Path, key_path: Path, *, common_name: str,
                     hosts: Sequence[str] = DEFAULT_HOSTS, days: int = MAX_DAYS) -> str:
    """Make a self-signed certificate and its key; return the certificate's fingerprint.

    Writes ``key_path`` (PKCS#8 PEM, mode 0o600) and ``cert_path`` (PEM, mode 0o644);
    refuses to overwrite either. The fingerprint is SHA-256 over the DER
    certificate, lower-case hex without colons. Raises :class:`TlsError`.
    """
    cert_path, key_path = Path(cert_path), Path(key_path)
    if not 1 <= days <= MAX_DAYS:
        raise TlsError(f"certificate validity: expected 1-{MAX_DAYS} days, found {days}",
                       hint=f"use at most {MAX_DAYS} days; macOS and iOS clients reject "
                       "longer-lived TLS server certificates")
    if not common_name or len(common_name) > 64:
        raise TlsError(f"certificate common name: expected 1-64 characters, found "
                       f"{len(common_name)}", hint="use a short name such as 'intelpact JPN node'")
    sans = _san(hosts)
    for path in (cert_path, key_path):
        if path.exists():
            raise TlsError(f"{path}: already exists; refusing to overwrite",
                           hint="move the existing certificate and key away first")

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
    )
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    try:
        write_private_file(key_path, key_pem)
    except KeyFileError as exc:
        raise TlsError(exc.message, hint=exc.hint) from None
    try:
        cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with cert_path.open("xb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        cert_path.chmod(0o644)
    except OSError as exc:
        key_path.unlink(missing_ok=True)
        raise TlsError(f"{cert_path}: cannot write the certificate: {exc.strerror}",
                       hint="check that the directory is writable") from None
    return der_fingerprint(cert.public_bytes(serialization.Encoding.DER))


def der_fingerprint(der: bytes) -> str:
    """SHA-256 of DER certificate bytes, lower-case hex without colons.

    Use it on ``SSLSocket.getpeercert(binary_form=True)`` to check a pinned peer.
    """
    return hashlib.sha256(der).hexdigest()


def pinned_client_context(pem: str, pinned: str) -> ssl.SSLContext:
    """A client TLS context that trusts exactly one certificate: the one of ``pem`` (a
    partner's card's certificate file, perhaps with its chain) whose fingerprint is
    ``pinned``. Never the rest of the file: an agency's CA there would vouch for every
    certificate it issued for the partner's address. Partial chains are allowed, so a
    pinned certificate a CA issued is trusted on its own (the default from Python 3.13).
    Raises :class:`TlsError` when no certificate of ``pem`` is the pinned one."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        certs = []
    for cert in certs:
        if der_fingerprint(cert.public_bytes(serialization.Encoding.DER)) == pinned:
            ctx = ssl.create_default_context(
                cadata=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"))
            ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
            return ctx
    raise TlsError(f"no certificate of the card has the pinned fingerprint {pinned}",
                   hint="pin the partner again from its current card")


def load_certificate(cert_path: Path) -> x509.Certificate:
    """Read the first certificate of a PEM file. Raises :class:`TlsError`."""
    cert_path = Path(cert_path)
    try:
        data = cert_path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"{cert_path}: certificate file not found",
                       hint="restore it from this node's backup, or fix server.tls_cert in "
                            "node.toml"
                       ) from None
    except OSError as exc:
        raise TlsError(f"{cert_path}: cannot read the certificate: {exc.strerror}",
                       hint="check the file's permissions") from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TlsError(f"{cert_path}: not a PEM certificate",
                       hint="expected a file beginning with -----BEGIN CERTIFICATE-----"
                       ) from None


def check_key_pair(cert_path: Path, key_path: Path) -> None:
    """Load ``cert_path`` and ``key_path`` as a TLS server would, before it starts: a key
    that is not a PEM private key, or not the certificate's, is a TlsError naming them,
    not OpenSSL's "PEM lib" in a listener's traceback."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            str(cert_path), str(key_path))
    except ssl.SSLError as exc:
        raise TlsError(f"{key_path}: not the PEM private key of {cert_path} "
                       f"({exc.reason or exc})",
                       hint="restore both files from this node's backup (partners pin the "
                            "certificate: docs/deployment.md, 'TLS')") from None


def check_names_host(cert_path: Path, host: str, field: str = "server.host") -> None:
    """Refuse (:class:`TlsError`) a certificate whose SubjectAltName does not name
    ``host``, the node's ``server.public_host`` or else ``server.host`` (``field``, as the
    error names it): partners reach the node at ``https://<host>:<federation_port>`` (its
    card) and, as every TLS client does, refuse a certificate that does not name the host
    they asked for. A host edited in node.toml after ``init`` (which put the host in the
    certificate it made) left ``serve`` starting as before, and every partner's
    connection failing."""
    cert = load_certificate(cert_path)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = san.get_values_for_type(x509.IPAddress)
        dns = [name.lower().rstrip(".") for name in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        ips, dns = [], []
    try:
        named = ipaddress.ip_address(host) in ips
    except ValueError:
        name = host.lower().rstrip(".")
        named = name in dns or ("." in name and f"*.{name.split('.', 1)[1]}" in dns)
    if not named:
        names = ", ".join([str(ip) for ip in ips] + dns) or "no host"
        raise TlsError(f"{field}: {host} is not a host the certificate {cert_path} "
                       f"names ({names}): partners, who reach this node by it (the URL "
                       "of its card), would refuse the certificate",
                       hint="put back the host the certificate names in node.toml, or make "
                       "a certificate for the new host and give each partner the new card "
                       "(docs/deployment.md, 'TLS')")


def fingerprint(cert_path: Path) -> str:
    """SHA-256 fingerprint of a PEM certificate file (lower-case hex, no colons)."""
    cert = load_certificate(cert_path)
    return der_fingerprint(cert.public_bytes(serialization.Encoding.DER))
