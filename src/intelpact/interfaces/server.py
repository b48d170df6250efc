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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from ..crypto.tls import load_certificate
from ..errors import IntelpactError
from ..logs import LOG_LEVEL_ENV, configure_logging
from ..services.courier import Courier
from ..services.node import Node
from ..services.prepare import ingest_processes
from .federation import create_federation_app, federation_server_options
from .limits import NoDelayHTTP, http_protocol, no_delay
from .taxii import create_app

log = logging.getLogger("intelpact.server")
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


def taxii_server_options(node: Node, host: str | None = None,
                         port: int | None = None) -> dict[str, Any]:
    """uvicorn options for the TAXII listener: address, TLS, and the node's HTTP protocol
    with its header deadline and connection cap (interfaces/limits.py). The client's
    address is the connection's: uvicorn's proxy_headers (on by default, trusting
    127.0.0.1) let any local client name another in X-Forwarded-For, and so escape the
    login throttle per address and choose the address its failures are audited with."""
    cfg = node.config
    options: dict[str, Any] = {"host": host or cfg.host, "port": port or cfg.port,
                               "http": http_protocol(cfg), "proxy_headers": False,
                               "limit_concurrency": cfg.max_connections,
                               "h11_max_incomplete_event_size": MAX_REQUEST_HEAD}
    if cfg.tls and cfg.tls_cert and cfg.tls_key:
        options.update(ssl_certfile=str(cfg.tls_cert), ssl_keyfile=str(cfg.tls_key))
    return options


def serve(node: Node, *, host: str | None = None, port: int | None = None,
          courier_interval: float = 2.0) -> None:
    """Serve until SIGINT, SIGTERM or SIGHUP (its terminal closed: there is nothing to
    reload, and the default action would end the process before the node is closed).
    Partners pinned after start need a restart to be trusted by the TLS listener."""
    taxii, federation = taxii_server_options(node, host, port), federation_server_options(node)
    check_free(taxii, federation)
    servers = [
        _Listener(uvicorn.Config(create_app(node), log_level="warning", **taxii)),
        _Listener(uvicorn.Config(create_federation_app(node), log_level="warning",
                                 **federation)),
    ]
    courier = Courier(node, interval=courier_interval)
    courier.start()
    node.audit.start()  # integrates the audit log and signs its checkpoints
    node.indexer.start()  # the console's search index, off the request's thread

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, _stop, servers, courier, sig)
        # large publications, on every core; a signal meanwhile stops the listeners at once
        await loop.run_in_executor(None, start_pool, node, ingest_processes(node.config, 1))
        await asyncio.gather(*(s.serve() for s in servers))

    try:
        asyncio.run(run())
    finally:
        courier.stop()
        node.close()


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


def taxii_worker_app() -> Starlette:
    """The TAXII app of one worker process: it opens the node named by the environment."""
    cap_malloc_arenas()
    configure_logging(os.environ.get(LOG_LEVEL_ENV, "info"))
    # each worker holds the serve lock as the supervisor does: one orphaned by a
    # supervisor killed still serves the schema it knows (docs/node.md)
    node = Node.open(Path(os.environ[WORKER_ENV]), serving=True)
    start_pool(node, ingest_processes(node.config, int(os.environ.get(WORKERS_ENV, "1"))))
    app = create_app(node)
    served = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with served(app):
            yield
        node.preparer.close()  # the worker's publication pool ends with it

    app.router.lifespan_context = lifespan
    return app


def serve_workers(node: Node, workers: int, *, host: str | None = None,
                  port: int | None = None, courier_interval: float = 2.0) -> None:
    """Serve the TAXII API with ``workers`` processes; federation and courier here."""
    taxii, options = taxii_server_options(node, host, port), federation_server_options(node)
    check_free(taxii, options)
    federation = uvicorn.Server(uvicorn.Config(create_federation_app(node), log_level="warning",
                                               **options))
    thread = threading.Thread(target=federation.run, name="intelpact-federation", daemon=True)
    thread.start()
    courier = Courier(node, interval=courier_interval)
    courier.start()
    node.audit.start()  # this process alone integrates and signs checkpoints
    node.indexer.start()
    os.environ[WORKER_ENV] = str(node.config.dir.resolve())
    os.environ[WORKERS_ENV] = str(workers)
    try:
        uvicorn.run("intelpact.interfaces.server:taxii_worker_app", factory=True,
                    workers=workers, log_level="warning", **taxii)
    finally:
        federation.should_exit = True
        thread.join(10)
        courier.stop()
        node.close()
