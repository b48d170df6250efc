"""Running a node: the TAXII listener, the mutual-TLS federation listener and the
courier, until interrupted.

With one worker everything runs in one process. With ``workers`` > 1 the TAXII
API is served by that many processes (uvicorn's supervisor; each opens the node
itself, through :func:`taxii_worker_app`), while this process alone runs the
federation listener, the courier, the audit integrator and the search indexer: one
sender, one signer of receipts and checkpoints. The workers share the store, so status
resources, cursors and the outbox stay correct (docs/node.md); PostgreSQL is the store
meant for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import ipaddress
import logging
import os
import signal
import socket
import stat
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import NodeConfig
from ..crypto.tls import load_certificate, wildcard_host
from ..errors import IntelpactError
from ..logs import LOG_LEVEL_ENV, configure_logging
from ..services.audit import operator
from ..services.courier import Courier
from ..services.node import Node
from ..services.prepare import ingest_processes
from ..store.base import PeerRecord
from .federation import create_federation_app, federation_server_options
from .limits import NoDelayHTTP, listener_options, no_delay
from .taxii import TaxiiError, _error, create_app

log = logging.getLogger("intelpact.server")
PIN_CHECK_SECONDS = 0.25  # how often a serving process looks for a text pinned beside it
PIN_RETRY_AFTER = 2  # seconds: what a request refused while the node switches is told
AGREEMENT_CHANGED = "agreement-changed"  # the error_code of those refusals
# The largest request line and headers accepted (h11's default is 16 KiB): room for the
# documented 1,000 ids in match[id] (about 50 KB percent-encoded); larger is a 400.
MAX_REQUEST_HEAD = 64 * 1024
__all__ = ["NoDelayHTTP", "cap_malloc_arenas", "no_delay", "serve", "serve_workers",
           "start_pool", "taxii_server_options", "taxii_worker_app"]

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
POOL_START_SECONDS = 60.0  # the publication pool's start, at most, before listening
MALLOC_ARENAS = 2


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process, before its threads start. glibc gives
    a thread that finds the arenas busy one of its own, up to eight per core, and memory
    freed in one arena is not reused by another: a server whose worker threads come and
    go grew its resident memory by about 2 MB a minute for as long as a soak ran while its
    Python heap stayed flat (bench/soak.py; with two arenas it was flat, docs/reliability.md).
    The GIL serialises nearly every allocation anyway. An operator's MALLOC_ARENA_MAX is
    left to decide; elsewhere than glibc this does nothing. Returns whether it capped."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))


def forwarded_allow_ips(proxies: tuple[str, ...]) -> list[str]:
    """uvicorn's ``forwarded_allow_ips`` for ``server.trusted_proxies``: each address or
    network, and an IPv4 one in its IPv4-mapped IPv6 form too, which is how a proxy's
    connection arrives on the dual-stack socket uvicorn binds for ``--workers`` on
    host "::" (::ffff:10.0.0.5)."""
    allowed = []
    for proxy in proxies:
        allowed.append(proxy)
        network = ipaddress.ip_network(proxy)
        if network.version == 4:
            mapped = ipaddress.ip_network(
                f"::ffff:{network.network_address}/{96 + network.prefixlen}")
            allowed.append(str(mapped.network_address) if mapped.prefixlen == 128
                           else str(mapped))
    return allowed


def taxii_server_options(node: Node, host: str | None = None,
                         port: int | None = None) -> dict[str, Any]:
    """uvicorn options for the TAXII listener: address, TLS, the largest request head,
    and the options every listener shares (interfaces/limits.py). With
    ``server.trusted_proxies``, a connection from one of them has its client address and
    scheme taken from X-Forwarded-For (the rightmost address not itself a trusted proxy)
    and X-Forwarded-Proto; anyone else's headers stay ignored. The options go to every
    worker (serve_workers), and never to the federation listener."""
    cfg = node.config
    options: dict[str, Any] = {"host": host or cfg.host, "port": port or cfg.port,
                               "h11_max_incomplete_event_size": MAX_REQUEST_HEAD,
                               **listener_options(cfg)}
    if cfg.trusted_proxies:
        options.update(proxy_headers=True,
                       forwarded_allow_ips=forwarded_allow_ips(cfg.trusted_proxies))
    if cfg.tls and cfg.tls_cert and cfg.tls_key:
        options.update(ssl_certfile=str(cfg.tls_cert), ssl_keyfile=str(cfg.tls_key))
    return options


class Pinned:
    """Wraps a listener's application: while the agreement text pinned in the node's
    directory is not the one the node acts under (Node.pinned_changed: `intelpact
    agreement pin` beside the running serve), every request is answered 503 with
    Retry-After before it is read, so nothing is served, released or taken under the old
    text while `serve` opens the node again under the new one (:func:`serve`)."""

    def __init__(self, app: ASGIApp, node: Node) -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.node.pinned_changed():
            await _error(TaxiiError(
                503, "Service Unavailable", "another agreement text was pinned: the node "
                "is switching to it", headers={"Retry-After": str(PIN_RETRY_AFTER)},
                code=AGREEMENT_CHANGED))(scope, receive, send)
            return
        await self.app(scope, receive, send)


def serve(node: Node, *, host: str | None = None, port: int | None = None,
          courier_interval: float = 2.0) -> None:
    """Serve until SIGINT, SIGTERM or SIGHUP (its terminal closed: there is nothing to
    reload, and the default action would end the process before the node is closed).
    When another agreement text is pinned meanwhile (`intelpact agreement pin`), the
    listeners refuse every request and the courier sends nothing (:class:`Pinned`,
    Node.pinned_changed) until everything has stopped, then the node is opened again
    under the new text (:func:`switched`) and served as before: no decision is made
    under the old text once it is noticed, nor under both. That also trusts the
    partners pinned since the start (the TLS listener's)."""
    while True:
        changed = _serve_once(node, host=host, port=port, courier_interval=courier_interval)
        if not changed:
            return
        node = switched(node)


def _serve_once(node: Node, *, host: str | None, port: int | None,
                courier_interval: float) -> bool:
    """Serve ``node`` until a signal (returns False) or until another agreement text is
    pinned (returns True, every listener and the courier stopped). The node is closed."""
    taxii, federation = taxii_server_options(node, host, port), federation_server_options(node)
    check_free(taxii, federation)
    servers = [
        _Listener(uvicorn.Config(Pinned(create_app(node), node), log_level="warning",
                                 **taxii)),
        _Listener(uvicorn.Config(Pinned(create_federation_app(node), node),
                                 log_level="warning", **federation)),
    ]
    courier = Courier(node, interval=courier_interval)
    courier.start()
    node.audit.start()  # integrates the audit log and signs its checkpoints
    node.indexer.start()  # the console's search index, off the request's thread
    changed = stopped = False

    def signalled(sig: int) -> None:  # a stop asked for is never taken for a switch
        nonlocal stopped
        stopped = True
        _stop(servers, courier, sig)

    async def watch() -> None:
        nonlocal changed
        while not node.pinned_changed():
            await asyncio.sleep(PIN_CHECK_SECONDS)
        changed = True
        log.warning("another text of agreement %s was pinned: stopping to serve it under "
                    "version %s (requests are refused meanwhile)", node.agreement.id,
                    node.agreement.version)
        _stop(servers, courier, signal.SIGTERM)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, signalled, sig)
        watcher = asyncio.create_task(watch())
        # large publications, on every core; a signal meanwhile stops the listeners at once
        await loop.run_in_executor(None, start_pool, node, ingest_processes(node.config, 1))
        await asyncio.gather(*(s.serve() for s in servers))
        watcher.cancel()

    try:
        asyncio.run(run())
    finally:
        courier.stop()
        node.close()
    return changed and not stopped


def switched(old: Node) -> Node:
    """The node of ``old``'s directory opened again, ``old`` being closed, under the
    agreement text pinned since it was opened: as a restart opens it (the pin's event
    recorded if it was not, every stored label worked out again under the new text),
    and an ``agreement-switch`` event recorded. A node that cannot be opened (a text that
    does not load) raises: `serve` stops, saying why, and serves nothing."""
    was = old.agreement
    node = Node.open(old.config.dir, migrate=False, serving=True)
    now = node.agreement
    node.audit.record(node.audit.event(
        "agreement-switch", actor=operator(), agreement=now.id, version=now.version,
        state=now.state, old_hash=was.content_hash, new_hash=now.content_hash))
    log.warning("serving agreement %s version %s (%s) from now on: it was version %s",
                now.id, now.version, now.state, was.version)
    return node


def plain_http_warning(tls: bool, host: str) -> str | None:
    """What to warn an operator of when the TAXII API and console serve plain HTTP
    (``tls = false``) on an address other hosts reach: HTTP Basic and the log-in form
    send passwords, and the session cookie travels, in clear (docs/configuration.md)."""
    if tls or host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass  # a host name: other hosts may reach it
    return (f"the TAXII API and console serve plain HTTP on {host}: passwords and session "
            "cookies cross the network in clear unless a proxy in front terminates TLS "
            "(server.tls = true serves HTTPS)")


def wildcard_warning(cfg: NodeConfig) -> str | None:
    """What to warn an operator of when the node listens on every interface (``host`` a
    wildcard address) with no ``public_host``: the node serves, its people may reach the
    TAXII API, but it has no address to give partners (``intelpact card`` refuses)."""
    if not wildcard_host(cfg.advertised_host):
        return None
    return (f"server.host {cfg.host} listens on every interface and no server.public_host "
            "is set: partners have no address to reach this node by (its card would give "
            f"them {cfg.federation_url}, and `intelpact card` refuses); set "
            "server.public_host in node.toml to the name or address they reach it by, one "
            "the TLS certificate names")


def wildcard_peer_warnings(peers: Iterable[PeerRecord]) -> list[str]:
    """What to warn an operator of for each partner pinned at a wildcard address (from a
    card an older intelpact made while it listened on every interface; ``peer add`` now
    refuses one): the courier's requests go to this machine, and fail at every round."""
    warnings = []
    for peer in peers:
        try:
            host = urllib.parse.urlsplit(peer.url).hostname
        except ValueError:
            continue
        if host and wildcard_host(host):
            warnings.append(
                f"{peer.party} is pinned at {peer.url}, a wildcard address (every interface) "
                f"that reaches this machine, not {peer.party}: nothing is delivered to it; "
                f"ask {peer.party} for its current card, made with server.public_host set, "
                "and pin it (intelpact peer add)")
    return warnings


RENEW_DAYS = 30  # a certificate ending sooner than this is warned of at each start


def certificate_warning(cert: Path, now: dt.datetime | None = None) -> str | None:
    """What to warn an operator of when the node's certificate has ended, or ends within
    RENEW_DAYS: partners pin it (mutual TLS) and refuse it once it has ended, so
    exchanges stop until a new one is made and a new card given to each partner."""
    ends = load_certificate(cert).not_valid_after_utc
    now = now or dt.datetime.now(dt.UTC)
    if ends > now + dt.timedelta(days=RENEW_DAYS):
        return None
    when = ends.strftime("%Y-%m-%d %H:%M UTC")
    state = f"ended on {when}" if ends <= now else \
        f"ends on {when}, in {(ends - now).days} day(s)"
    return (f"the node's TLS certificate {cert} {state}: partners refuse it once it has "
            "ended, and exchanges stop; make a new one (or have your CA issue one), then "
            "give each partner the new card (intelpact card DIR; they run intelpact peer "
            "add) (docs/deployment.md, \"TLS\")")


HOLDS_NODE = "the node's objects, audit log and keys"
HOLDS_KEY = ("a private key or secret of the node (with it, another user could sign or "
                "serve as the node, or forge its audit events or undo their pseudonyms)")


def exposed_warning(*paths: Path, holds: str = HOLDS_NODE) -> str | None:
    """What to warn an operator of when the node directory or its SQLite database, or
    (``holds`` HOLDS_KEY) a private key or secret file, may be read by other users of
    this machine (any group or other bit). ``init`` makes the directory 0700 and each key
    0600, and the store makes node.db 0600, but a copy, a restore, a key put in place by
    hand or an older intelpact may not have."""
    exposed = []
    for path in paths:
        with contextlib.suppress(OSError):  # not there: the store says so, clearly
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                exposed.append(f"{path} (mode {mode:o})")
    if not exposed:
        return None
    return (f"other users of this machine may read {', '.join(exposed)}: it holds {holds}; "
            "make it the node user's alone (chmod go= PATH)")


def check_free(*listeners: dict[str, Any]) -> None:
    """Refuse, naming it, an address of ``listeners`` (uvicorn options) that cannot be
    listened on, before anything starts: another process listens there (this node
    served already?), the port is a privileged one, or two of the listeners would share
    it (``serve --port`` the federation port). uvicorn would say it only as it starts
    each listener, with SystemExit in a task and a traceback. Each address is listened
    on, and held until all are, so the listeners are probed together as they will run."""
    with contextlib.ExitStack() as held:
        taken: list[int] = []
        for options in listeners:
            host, port = options["host"], options["port"]
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            probe = held.enter_context(socket.socket(family, socket.SOCK_STREAM))
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind((host, port))
                probe.listen()
            except OSError as exc:
                if port in taken:
                    raise IntelpactError(
                        f"cannot listen on {host}:{port}: the TAXII API and the federation "
                        "listener would share the port",
                        hint="give them different ports (--port; port and federation_port "
                             "in node.toml)") from None
                raise IntelpactError(
                    f"cannot listen on {host}:{port}: {exc.strerror}",
                    hint="another process listens there (this node served already? "
                         "pgrep -af 'intelpact serve'): stop it, or choose another port "
                         "(--port; federation_port in node.toml)") from None
            taken.append(port)


class _Listener(uvicorn.Server):
    """A uvicorn server that leaves signals to :func:`serve`. uvicorn's own handling, with
    two servers in one process, stops only the one started last, and each re-raises the
    signal under the handler it found once it has stopped: the last under the default
    one, which ended the process before the node was closed (its pool, its audit log)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _stop(servers: list[_Listener], courier: Courier, sig: int) -> None:
    """SIGINT, SIGTERM or SIGHUP: the courier sends nothing more (partners stopped at the same
    time would only be reported unreachable), every listener finishes what it is
    answering and stops; a second SIGINT stops them without waiting."""
    courier.halt()
    for server in servers:
        if server.should_exit and sig == signal.SIGINT:
            server.force_exit = True
        server.should_exit = True


def start_pool(node: Node, processes: int) -> None:
    """Enable and start the node's publication pool before its listener: a node that
    answers takes its first large publication at full speed. Each pool process imports the
    validator (about a second of CPU) as it starts; started on that publication instead,
    the pool would compete with it for the cores (docs/node.md, "Publishing"). A pool
    that does not start in time is not used: the serving process prepares alone."""
    node.preparer.enable(processes)
    if processes and node.preparer.start(timeout=POOL_START_SECONDS):
        log.info("validating and signing large publications with %d processes", processes)


WORKER_ENV = "INTELPACT_NODE_DIR"
WORKERS_ENV = "INTELPACT_WORKERS"


def taxii_worker_app() -> ASGIApp:
    """The TAXII app of one worker process: it opens the node named by the environment."""
    cap_malloc_arenas()
    configure_logging(os.environ.get(LOG_LEVEL_ENV, "info"))
    # each worker holds the serve lock as the supervisor does: one orphaned by a
    # supervisor killed still serves the schema it knows (docs/node.md)
    node = Node.open(Path(os.environ[WORKER_ENV]), serving=True)
    start_pool(node, ingest_processes(node.config, int(os.environ.get(WORKERS_ENV, "1"))))
    app = create_app(node)
    served = app.router.lifespan_context

    async def watch() -> None:
        """Another agreement text pinned: this worker refuses every request (Pinned) and
        stops (SIGTERM, as uvicorn's supervisor stops it), and the supervisor starts
        another in its place, which opens the node under the new text."""
        while not node.pinned_changed():
            await asyncio.sleep(PIN_CHECK_SECONDS)
        log.warning("another text of agreement %s was pinned: this TAXII worker stops, "
                    "and another is started under it", node.agreement.id)
        os.kill(os.getpid(), signal.SIGTERM)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with served(app):
            watcher = asyncio.create_task(watch())
            yield
            watcher.cancel()
        node.preparer.close()  # the worker's publication pool ends with it

    app.router.lifespan_context = lifespan
    return Pinned(app, node)


def serve_workers(node: Node, workers: int, *, host: str | None = None,
                  port: int | None = None, courier_interval: float = 2.0) -> None:
    """Serve the TAXII API with ``workers`` processes; federation and courier here."""
    taxii, options = taxii_server_options(node, host, port), federation_server_options(node)
    check_free(taxii, options)
    here = _Supervised(node, courier_interval)
    os.environ[WORKER_ENV] = str(node.config.dir.resolve())
    os.environ[WORKERS_ENV] = str(workers)
    try:
        uvicorn.run("intelpact.interfaces.server:taxii_worker_app", factory=True,
                    workers=workers, log_level="warning", **taxii)
    finally:
        here.stop()


class _Supervised:
    """With workers: what the supervisor's process serves itself (the federation
    listener, the courier, the audit integrator and the search indexer), and its switch
    to an agreement text pinned beside it. A thread looks for one every
    PIN_CHECK_SECONDS; found, the listener and courier stop (each refusing and sending
    nothing meanwhile: :class:`Pinned`, Courier), and the node is opened again under the
    new text (:func:`switched`) and served. Each worker notices the text itself, refuses
    every request, and stops: uvicorn's supervisor starts another in its place
    (:func:`taxii_worker_app`). A node that cannot be opened again stops the whole
    server (SIGTERM)."""

    def __init__(self, node: Node, courier_interval: float) -> None:
        self.node = node
        self.interval = courier_interval
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._open = False
        self._start()
        self._watch = threading.Thread(target=self._run, name="intelpact-pin-watch",
                                       daemon=True)
        self._watch.start()

    def _start(self) -> None:
        node = self.node
        self.federation = uvicorn.Server(uvicorn.Config(
            Pinned(create_federation_app(node), node), log_level="warning",
            **federation_server_options(node)))
        self.thread = threading.Thread(target=self.federation.run,
                                       name="intelpact-federation", daemon=True)
        self.thread.start()
        self.courier = Courier(node, interval=self.interval)
        self.courier.start()
        node.audit.start()  # this process alone integrates and signs checkpoints
        node.indexer.start()
        self._open = True

    def _close(self) -> None:
        if not self._open:
            return
        self._open = False
        self.federation.should_exit = True
        self.thread.join(10)
        self.courier.stop()
        self.node.close()

    def _run(self) -> None:
        while not self._halt.wait(PIN_CHECK_SECONDS):
            if not self.node.pinned_changed():
                continue
            with self._lock:
                if self._halt.is_set():
                    return
                log.warning("another text of agreement %s was pinned: stopping to serve "
                            "it under version %s (requests are refused meanwhile)",
                            self.node.agreement.id, self.node.agreement.version)
                self._close()
                try:
                    self.node = switched(self.node)
                    self._start()
                except Exception:  # noqa: BLE001 - said, and the server stops
                    log.exception("the node could not be opened under the agreement text "
                                  "pinned: stopping")
                    os.kill(os.getpid(), signal.SIGTERM)
                    return

    def stop(self) -> None:
        self._halt.set()
        with self._lock:
            self._close()
        self._watch.join(10)
