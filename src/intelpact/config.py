"""A node directory's configuration: ``node.toml`` (docs/configuration.md).

``load_config`` checks every field, loads the agreement and refuses to go on
when its content hash is not the one pinned at ``init``: a node never applies
an agreement other than the one it was set up under.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import shutil
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .crypto.keys import generate_signing_key
from .crypto.tls import TlsError, check_host, ipv4_shorthand, make_self_signed, wildcard_host
from .errors import IntelpactError
from .model import Agreement, AgreementError, load_agreement

CONFIG_FILE = "node.toml"
_NODE_KEYS = ("party", "name", "title", "agreement", "agreement_hash", "database",
              "signing_key")
_SERVER_KEYS = ("host", "public_host", "port", "tls", "tls_cert", "tls_key", "api_root",
                "max_content_length", "federation_port", "header_timeout",
                "body_idle_timeout", "body_timeout", "max_connections", "ingest_processes",
                "partner_rate", "partner_burst", "trusted_proxies")
DEFAULT_MAX_CONTENT = 10 * 1024 * 1024
# Connections and requests in progress each listener takes before it answers 503 (uvicorn's
# limit_concurrency): a bound on what a flood of connections can hold (threads, memory).
DEFAULT_MAX_CONNECTIONS = 1000
# How long a client may take to send a request, in seconds (interfaces/limits.py):
# its headers, each wait for more of its body, and its whole body.
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_IDLE_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 120.0
# How many requests the federation listener takes from one partner (interfaces/limits.py,
# RateLimit): ``partner_burst`` at once, then ``partner_rate`` a second. A courier sends
# one request at a time: a batch of up to 500 objects, each notice or compromise message
# of a round (at most 500 of each), a page of a pull, and retries backing off to 30 s. It
# pushes after every write, so objects published one by one go one push each: about 110
# pushes a second were measured on 127.0.0.1, so the rate is above what one courier sends.
DEFAULT_PARTNER_RATE = 200.0
DEFAULT_PARTNER_BURST = 500
MAX_TIMEOUT = 3600.0
# The first path segments of the console, served at the node's root beside the API root
# (interfaces/console/app.py): an API root of one of these names hid that page.
CONSOLE_PATHS = ("login", "logout", "objects", "map", "publish", "desk", "static")


class ConfigError(IntelpactError):
    """node.toml is missing or wrong: names the file, the field and the fix."""


@dataclass(frozen=True)
class NodeConfig:
    dir: Path
    party: str
    name: str
    title: str
    agreement_path: Path
    agreement_hash: str
    database: str
    signing_key: Path
    host: str = "127.0.0.1"
    public_host: str | None = None  # None: partners are given ``host``
    port: int = 8401
    tls: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    api_root: str = "intel"
    max_content_length: int = DEFAULT_MAX_CONTENT
    federation_port: int = 8402
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_idle_timeout: float = DEFAULT_BODY_IDLE_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    ingest_processes: int | None = None  # None: services.prepare.default_processes
    partner_rate: float = DEFAULT_PARTNER_RATE
    partner_burst: int = DEFAULT_PARTNER_BURST
    # Reverse proxies in front of the TAXII listener whose X-Forwarded-For and
    # X-Forwarded-Proto are believed (addresses and networks); empty: nobody's.
    trusted_proxies: tuple[str, ...] = ()

    @property
    def advertised_host(self) -> str:
        """The host partners reach this node by: ``public_host``, else ``host`` (where it
        listens). What the card's URL is made of, and the certificate must name."""
        return self.public_host or self.host

    @property
    def advertised_field(self) -> str:
        """The setting ``advertised_host`` comes from, as errors name it."""
        return "server.public_host" if self.public_host else "server.host"

    @property
    def federation_url(self) -> str:
        """Where partners reach this node (mutual TLS); an IPv6 address in brackets. A
        wildcard ``host`` without a ``public_host`` makes one nobody reaches, which
        ``make_card`` refuses to give partners."""
        host = self.advertised_host
        return f"https://[{host}]:{self.federation_port}" if ":" in host \
            else f"https://{host}:{self.federation_port}"


def _fail(path: Path, field: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path}: {field}: {problem}", hint=fix)


def read_trusted_proxies(value: Any) -> tuple[tuple[str, ...], str | None]:
    """``server.trusted_proxies`` read: its addresses and networks written canonically,
    or what is wrong with it. A network of every address (``0.0.0.0/0``, ``::/0``) is
    refused: trusting every client to name its own address is what ignoring the headers
    prevents (one client escaping the login throttle and choosing the address it is
    audited under)."""
    if not isinstance(value, list):
        return (), f"expected a list of IP addresses or networks, found {value!r}"
    found: list[str] = []
    for item in value:
        if not isinstance(item, str):
            return (), f"expected an IP address or network, found {item!r}"
        try:
            network = ipaddress.ip_network(item.strip(), strict=False)
        except ValueError as exc:
            return (), f"{item!r} is not an IP address or network ({exc})"
        if ipaddress.ip_interface(item.strip()).ip != network.network_address:
            return (), f"{item!r} has host bits set: the network is {str(network)!r}"
        if network.prefixlen == 0 or network.network_address.is_unspecified:
            return (), (f"{item!r} is a wildcard: trusting every address would let any "
                        "client name the address it is counted and audited under")
        found.append(str(network.network_address) if
                     network.prefixlen == network.max_prefixlen else str(network))
    return tuple(found), None


def public_host_problem(value: Any) -> str | None:
    """What is wrong with ``value`` as a public host (``server.public_host``, ``init
    --public-host``), or None: it must be a host name or an IP address written in full,
    and not a wildcard address, since it is what partners are given to reach the node."""
    if not isinstance(value, str) or not value:
        return f"expected a non-empty string, found {value!r}"
    if wildcard_host(value):
        return (f"{value} is a wildcard address: it means every interface, which a node "
                "listens on and no partner reaches")
    shorthand = ipv4_shorthand(value)
    if shorthand is not None:
        return (f"{value!r} is not a host name, nor an IP address written in full (it "
                f"reads as {shorthand})")
    try:
        check_host(value)
    except TlsError as exc:
        return exc.message
    return None


def load_config(node_dir: Path, *, readonly: bool = False) -> NodeConfig:
    """Read and check ``DIR/node.toml`` and the pinned agreement. Raises ConfigError.
    ``readonly`` (a node opened read-only: ``Node.open``): nothing is written, not even
    to finish a pin cut short (``_finish_pin``); the pinned text is read where it waits,
    and ``agreement_path`` names it there."""
    node_dir = Path(node_dir)
    path = node_dir / CONFIG_FILE
    if not node_dir.is_dir():
        raise ConfigError(f"{node_dir}: no such node directory",
                          hint=f"make one with: intelpact init {node_dir} --party PARTY "
                          "--agreement FILE")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing", hint=f"{node_dir} is not a node directory; "
                          f"make one with: intelpact init {node_dir} --party PARTY "
                          "--agreement FILE") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, "(syntax)", f"not valid TOML: {exc}", "fix the syntax") from None
    for key in data:
        if key not in ("node", "server"):
            raise _fail(path, key, "unknown section", "the sections are [node] and [server]")
    node = _table(path, data, "node", _NODE_KEYS)
    server = _table(path, data, "server", _SERVER_KEYS)

    def text(table: dict[str, Any], section: str, key: str, default: str | None = None) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or not value:
            raise _fail(path, f"{section}.{key}", f"expected a non-empty string, found "
                        f"{value!r}", f'write {key} = "..."')
        return value

    party = text(node, "node", "party")
    if not re.fullmatch(r"[A-Z]{3}", party):
        raise _fail(path, "node.party", f"{party!r} is not an ISO 3166-1 alpha-3 code",
                    'write party = "JPN"')
    port = server.get("port", 8401)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise _fail(path, "server.port", f"expected 1-65535, found {port!r}", "write port = 8401")
    next_port = port + 1 if port < 65535 else port - 1
    federation_port = server.get("federation_port", next_port)
    if not isinstance(federation_port, int) or isinstance(federation_port, bool) or \
            not 1 <= federation_port <= 65535 or federation_port == port:
        raise _fail(path, "server.federation_port", f"expected 1-65535 and not the TAXII port, "
                    f"found {federation_port!r}", f"write federation_port = {next_port}")
    tls = server.get("tls", True)
    if not isinstance(tls, bool):
        raise _fail(path, "server.tls", f"expected true or false, found {tls!r}",
                    "write tls = true")
    api_root = text(server, "server", "api_root", "intel")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", api_root) or api_root == "taxii2":
        raise _fail(path, "server.api_root", f"{api_root!r} is not a valid path segment",
                    'use lower-case letters, digits and "-", e.g. api_root = "intel"')
    if api_root in CONSOLE_PATHS:
        raise _fail(path, "server.api_root", f"{api_root!r} is a path of the console, "
                    f"which /{api_root} would no longer reach",
                    f'choose another name, e.g. api_root = "intel"; the console has '
                    f'{", ".join(CONSOLE_PATHS)}')
    limit = server.get("max_content_length", DEFAULT_MAX_CONTENT)
    if not isinstance(limit, int) or isinstance(limit, bool) or \
            not 1024 <= limit <= 1024 ** 3:
        raise _fail(path, "server.max_content_length", f"expected 1024 to 1073741824 bytes, "
                    f"found {limit!r}", "write max_content_length = 10485760")

    connections = server.get("max_connections", DEFAULT_MAX_CONNECTIONS)
    if not isinstance(connections, int) or isinstance(connections, bool) or \
            not 1 <= connections <= 100_000:
        raise _fail(path, "server.max_connections", f"expected 1 to 100000, found "
                    f"{connections!r}", f"write max_connections = {DEFAULT_MAX_CONNECTIONS}")

    processes = server.get("ingest_processes")
    if processes is not None and (not isinstance(processes, int) or
                                  isinstance(processes, bool) or not 0 <= processes <= 64):
        raise _fail(path, "server.ingest_processes", f"expected 0 to 64, found {processes!r}",
                    "write ingest_processes = 0 (none), or remove it for the default")

    rate = server.get("partner_rate", DEFAULT_PARTNER_RATE)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or \
            not 0.01 <= rate <= 100_000:
        raise _fail(path, "server.partner_rate", f"expected 0.01 to 100000 requests a second, "
                    f"found {rate!r}", f"write partner_rate = {DEFAULT_PARTNER_RATE:g}")
    burst = server.get("partner_burst", DEFAULT_PARTNER_BURST)
    if not isinstance(burst, int) or isinstance(burst, bool) or not 1 <= burst <= 1_000_000:
        raise _fail(path, "server.partner_burst", f"expected 1 to 1000000 requests, found "
                    f"{burst!r}", f"write partner_burst = {DEFAULT_PARTNER_BURST}")

    proxies, problem = read_trusted_proxies(server.get("trusted_proxies", []))
    if problem:
        raise _fail(path, "server.trusted_proxies", problem,
                    'write trusted_proxies = ["10.0.0.5", "10.1.0.0/24"]: the addresses of '
                    "the reverse proxies in front of the TAXII listener, or [] for none")

    def seconds(key: str, default: float) -> float:
        value = server.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or \
                not 1 <= value <= MAX_TIMEOUT:
            raise _fail(path, f"server.{key}", f"expected 1 to {MAX_TIMEOUT:g} seconds, "
                        f"found {value!r}", f"write {key} = {default:g}")
        return float(value)

    timeouts = {key: seconds(key, default) for key, default in (
        ("header_timeout", DEFAULT_HEADER_TIMEOUT),
        ("body_idle_timeout", DEFAULT_BODY_IDLE_TIMEOUT),
        ("body_timeout", DEFAULT_BODY_TIMEOUT))}

    def file(table: dict[str, Any], section: str, key: str, default: str) -> Path:
        value = Path(text(table, section, key, default))
        return value if value.is_absolute() else node_dir / value

    agreement_path = file(node, "node", "agreement", "agreement.toml")
    pinned = text(node, "node", "agreement_hash")
    try:
        agreement = load_agreement(agreement_path, stored=True)  # pinned: checked then
        if agreement.content_hash != pinned and \
                (waiting := _finish_pin(agreement_path, pinned, move=not readonly)):
            agreement = waiting
            if readonly:
                agreement_path = staged(agreement_path)
    except AgreementError as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None
    if agreement.content_hash != pinned:
        raise _fail(path, "node.agreement_hash", f"the agreement file {agreement_path} has "
                    f"hash {agreement.content_hash}, not the pinned {pinned}",
                    "the agreement changed since init; restore it, or re-pin deliberately "
                    "after the parties agree the new version")
    if party not in agreement.parties:
        raise _fail(path, "node.party", f"{party} is not a party to {agreement.id}",
                    f"use one of {', '.join(agreement.parties)}")
    host = text(server, "server", "host", "127.0.0.1")
    try:
        check_host(host)  # what init puts in the certificate: the node card's URL is made of it
    except TlsError as exc:
        raise _fail(path, "server.host", exc.message, exc.hint or "") from None
    public_host = server.get("public_host")
    if public_host is not None and (problem := public_host_problem(public_host)):
        raise _fail(path, "server.public_host", problem, 'write public_host = '
                    '"node.example.go.jp": the name or address partners reach this node by '
                    "(one the TLS certificate names), or remove it to give them host")
    database = text(node, "node", "database", "node.db")
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", database)
    if scheme and scheme.group(1) not in ("postgresql", "postgres"):
        # not the value: a URL may hold a password
        raise _fail(path, "node.database", f"a {scheme.group(1)}:// URL is no store "
                    "intelpact opens (it would be taken for a SQLite file's name)",
                    'write a postgresql:// URL, or a SQLite file: database = "node.db"')
    return NodeConfig(
        dir=node_dir, party=party, name=text(node, "node", "name", f"{party.lower()}-node"),
        title=text(node, "node", "title", f"intelpact {party} node"),
        agreement_path=agreement_path, agreement_hash=pinned, database=database,
        signing_key=file(node, "node", "signing_key", "keys/signing.pem"),
        host=host, public_host=public_host, port=port, tls=tls,
        tls_cert=file(server, "server", "tls_cert", "tls/cert.pem"),
        tls_key=file(server, "server", "tls_key", "tls/key.pem"),
        api_root=api_root, max_content_length=limit, federation_port=federation_port,
        max_connections=connections, ingest_processes=processes, partner_rate=float(rate),
        partner_burst=burst, trusted_proxies=proxies, **timeouts)


def _table(path: Path, data: dict[str, Any], name: str, allowed: tuple[str, ...]
           ) -> dict[str, Any]:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise _fail(path, name, "expected a table", f"write [{name}]")
    for key in table:
        if key not in allowed:
            raise _fail(path, f"{name}.{key}", "unknown field",
                        f"remove it; the fields of [{name}] are: {', '.join(allowed)}")
    return table


def _toml_string(value: str) -> str:
    """``value`` as a TOML basic string. Raises ConfigError for a lone surrogate
    (e.g. a command-line argument that was not UTF-8), which TOML cannot hold."""
    out = ['"']
    for ch in value:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise ConfigError(f"{value!r} is not valid Unicode text",
                              hint="use UTF-8 text in settings")
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_number(value: float) -> str:
    """``value`` as TOML that reads back as it: a whole number without its ".0" (as the
    settings are documented), any other as Python's shortest exact repr."""
    value = float(value)  # an int given in code, too
    return str(int(value)) if value.is_integer() else repr(value)


def write_config(cfg: NodeConfig) -> None:
    """Write ``node.toml`` for ``cfg`` (paths relative to the node directory)."""

    def rel(p: Path) -> str:
        try:
            return str(p.relative_to(cfg.dir))
        except ValueError:
            return str(p)

    lines = ["# intelpact node configuration (docs/configuration.md)", "[node]",
             f"party = {_toml_string(cfg.party)}", f"name = {_toml_string(cfg.name)}",
             f"title = {_toml_string(cfg.title)}",
             f"agreement = {_toml_string(rel(cfg.agreement_path))}",
             f"agreement_hash = {_toml_string(cfg.agreement_hash)}",
             f"database = {_toml_string(cfg.database)}",
             f"signing_key = {_toml_string(rel(cfg.signing_key))}", "", "[server]",
             f"host = {_toml_string(cfg.host)}"]
    if cfg.public_host is not None:
        lines.append(f"public_host = {_toml_string(cfg.public_host)}")
    lines += [f"port = {cfg.port}", f"tls = {'true' if cfg.tls else 'false'}"]
    if cfg.tls_cert and cfg.tls_key:
        lines += [f"tls_cert = {_toml_string(rel(cfg.tls_cert))}",
                  f"tls_key = {_toml_string(rel(cfg.tls_key))}"]
    lines += [f"api_root = {_toml_string(cfg.api_root)}",
              f"max_content_length = {cfg.max_content_length}",
              f"federation_port = {cfg.federation_port}",
              f"header_timeout = {_toml_number(cfg.header_timeout)}",
              f"body_idle_timeout = {_toml_number(cfg.body_idle_timeout)}",
              f"body_timeout = {_toml_number(cfg.body_timeout)}",
              f"max_connections = {cfg.max_connections}",
              f"partner_rate = {_toml_number(cfg.partner_rate)}",
              f"partner_burst = {cfg.partner_burst}"]
    if cfg.ingest_processes is not None:
        lines.append(f"ingest_processes = {cfg.ingest_processes}")
    if cfg.trusted_proxies:
        lines.append("trusted_proxies = [" + ", ".join(
            _toml_string(p) for p in cfg.trusted_proxies) + "]")
    lines.append("")
    replace_file(cfg.dir / CONFIG_FILE, "\n".join(lines).encode("utf-8"))


def staged(path: Path) -> Path:
    """Where a new version of ``path`` waits before it replaces it (``replace_file``;
    an agreement being pinned)."""
    return path.with_name(path.name + ".new")


def replace_file(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` whole or not at all: written to its staged name
    (mode 0600: node.toml may hold a database password), flushed to disk, then renamed
    over it, and the rename flushed too."""
    new = staged(path)
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(new, path)
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def history_dir(agreement_path: Path) -> Path:
    """Where the texts of the agreement pinned before are kept, each by its content hash
    (``Node.pin_agreement``)."""
    return agreement_path.with_name("agreement-history")


def keep_earlier(agreement_path: Path, agreement: Agreement) -> None:
    """Keep ``agreement``, the text at ``agreement_path`` a pin is about to replace, in
    the history: a partner's marking made under it is still read (markings.py)."""
    history = history_dir(agreement_path)
    history.mkdir(mode=0o700, exist_ok=True)
    replace_file(history / f"{agreement.content_hash}.toml", agreement_path.read_bytes())


def earlier_agreements(agreement_path: Path, current: Agreement) -> tuple[Agreement, ...]:
    """The texts of ``current``'s agreement pinned before it (one that is not that
    agreement, or is ``current`` itself, is left out)."""
    history = history_dir(agreement_path)
    texts = [load_agreement(path, stored=True) for path in sorted(history.glob("*.toml"))] \
        if history.is_dir() else []
    return tuple(t for t in texts if t.id == current.id
                 and t.content_hash != current.content_hash)


def _finish_pin(agreement_path: Path, pinned: str, *, move: bool = True
                ) -> Agreement | None:
    """A pin interrupted after node.toml named the new agreement and before the new text
    replaced the old (``Node.pin_agreement``): its staged text, if it is the one pinned,
    takes its place now (not with ``move`` False: a node opened read-only reads it where
    it waits). None when there is no such text."""
    waiting = staged(agreement_path)
    if not waiting.is_file():
        return None
    agreement = load_agreement(waiting, stored=True)  # checked as the pin staged it
    if agreement.content_hash != pinned:
        return None
    if not move:
        return agreement
    os.replace(waiting, agreement_path)
    _sync_dir(agreement_path.parent)
    return agreement


def create_node_dir(node_dir: Path, *, party: str, agreement_file: Path,
                    host: str = "127.0.0.1", port: int = 8401, tls: bool = True,
                    federation_port: int | None = None,
                    public_host: str | None = None) -> NodeConfig:
    """Make a node directory: pinned agreement, signing key, TLS certificate, node.toml.

    The database is made by the store when the node is first opened."""
    with new_node_dir(node_dir, party=party, agreement_file=agreement_file, host=host,
                      port=port, tls=tls, federation_port=federation_port,
                      public_host=public_host) as config:
        return config


@contextlib.contextmanager
def new_node_dir(node_dir: Path, *, party: str, agreement_file: Path,
                 host: str = "127.0.0.1", port: int = 8401, tls: bool = True,
                 federation_port: int | None = None,
                 public_host: str | None = None) -> Iterator[NodeConfig]:
    """Make a node directory (as ``create_node_dir``) and hold it, locked, until the
    block ends: the block finishes the node (``Node.create`` makes its database), and
    what it raises discards the directory as a failure to make it does.

    Two ``init`` of one directory at once (a retried script, two operators): each checked
    it was empty, then both filled it, and the loser, finding keys/ made, removed the
    winner's finished node with its own half. The directory is now held by an flock of
    the directory itself from before it is checked to the end of the block, so a second
    ``init`` waits, then finds the node and refuses it ("exists and is not empty").

    ``public_host``: the host partners reach the node by, when ``host`` (where it listens)
    is not it; the certificate names it and the card gives it. Required when ``host`` is
    a wildcard address (every interface): no certificate or card could name that."""
    node_dir = Path(node_dir)
    _refuse_not_empty(node_dir)  # at once, without waiting for a lock
    if public_host is not None and (problem := public_host_problem(public_host)):
        raise ConfigError(f"public host: {problem}",
                          hint="give --public-host the name or address partners reach this "
                          "node by, e.g. --public-host node.example.go.jp")
    if public_host is None and wildcard_host(host):
        raise ConfigError(f"--host {host} listens on every interface: the TLS certificate "
                          "and the node card need the name or address partners reach this "
                          "node by", hint="give it with --public-host, e.g. --host "
                          f"{host} --public-host node.example.go.jp")
    try:
        agreement = load_agreement(agreement_file)
    except AgreementError as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None
    if party not in agreement.parties:
        raise ConfigError(f"{party} is not a party to agreement {agreement.id}",
                          hint=f"use one of {', '.join(agreement.parties)}")
    if not 1 <= port <= 65535:
        raise ConfigError(f"port {port} is out of range", hint="use 1-65535")
    with _held_node_dir(node_dir) as made_dir:
        _refuse_not_empty(node_dir)  # another init may have made a node meanwhile
        try:
            yield _fill_node_dir(node_dir, party, agreement_file, agreement.content_hash,
                                 host, port, tls, federation_port, public_host)
        except BaseException:
            discard_node_dir(node_dir, made_dir)
            raise


def _refuse_not_empty(node_dir: Path) -> None:
    if node_dir.exists() and (not node_dir.is_dir() or any(node_dir.iterdir())):
        raise ConfigError(f"{node_dir}: exists and is not empty",
                          hint="give a new directory; init never overwrites a node")


@contextlib.contextmanager
def _held_node_dir(node_dir: Path) -> Iterator[bool]:
    """``node_dir``, made if it is missing, under an exclusive flock of the directory
    itself until the block ends (one ``init`` at a time). Yields whether this call made
    it. A directory removed while this waited (an ``init`` that failed and discarded the
    directory it made) is made again and waited for again."""
    while True:
        try:
            node_dir.mkdir(parents=True)
            made = True
        except FileExistsError:
            made = False
        _refuse_not_empty(node_dir)  # a file, not a directory
        fd = os.open(node_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                now = os.stat(node_dir)
            except FileNotFoundError:
                continue
            held = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
                continue  # removed and made again by another init: hold that one
            yield made
            return
        finally:
            os.close(fd)  # releases the lock


def discard_node_dir(node_dir: Path, made_dir: bool) -> None:
    """Undo an ``init`` that failed part-way: leave nothing half-made behind, so a retry
    does not find "exists and is not empty". ``made_dir``: whether ``init`` made
    ``node_dir`` (else it was empty, and is emptied again)."""
    if made_dir:
        shutil.rmtree(node_dir, ignore_errors=True)
        return
    for child in node_dir.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _fill_node_dir(node_dir: Path, party: str, agreement_file: Path, agreement_hash: str,
                   host: str, port: int, tls: bool, federation_port: int | None,
                   public_host: str | None) -> NodeConfig:
    os.chmod(node_dir, 0o700)
    shutil.copyfile(agreement_file, node_dir / "agreement.toml")
    (node_dir / "keys").mkdir(mode=0o700)
    generate_signing_key(node_dir / "keys" / "signing.pem")
    # The certificate is made even when the TAXII API serves plain HTTP: partners
    # always talk to this node over mutual TLS.
    (node_dir / "tls").mkdir(mode=0o700)
    cert, key = node_dir / "tls" / "cert.pem", node_dir / "tls" / "key.pem"
    # the public host (the card's), and the host listened on unless it is a wildcard,
    # which names no host anyone reaches
    hosts = ["127.0.0.1", "localhost"]
    for name in (public_host, None if wildcard_host(host) else host):
        if name is not None and name.lower().rstrip(".") not in hosts:
            hosts.append(name)
    make_self_signed(cert, key, common_name=f"intelpact {party} node", hosts=hosts)
    cfg = NodeConfig(dir=node_dir, party=party, name=f"{party.lower()}-node",
                     title=f"intelpact {party} node", agreement_path=node_dir / "agreement.toml",
                     agreement_hash=agreement_hash, database="node.db",
                     signing_key=node_dir / "keys" / "signing.pem", host=host,
                     public_host=public_host, port=port,
                     tls=tls, tls_cert=cert, tls_key=key,
                     federation_port=federation_port or (port + 1 if port < 65535 else port - 1))
    write_config(cfg)
    return load_config(node_dir)
