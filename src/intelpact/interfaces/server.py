"""Running a node: the TAXII listener, the mutual-TLS federation listener and the
courier, until interrupted.

With one worker everything runs in one process. With ``workers`` > 1 the TAXII
API is served by that many processes (uvicorn's supervisor; each opens the node
itself, through :func:`taxii_worker_app`), while this process alone runs the
federation listener, the courier and the audit integrator: one sender, one signer
of receipts and checkpoints. The
workers share the store, so status resources, cursors and the outbox stay
correct (docs/node.md); PostgreSQL is the store meant for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from ..services.courier import Courier
from ..services.node import Node
from .federation import create_federation_app, federation_server_options
from .taxii import create_app

log = logging.getLogger("intelpact.server")


class NoDelayHTTP(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP protocol with Nagle's algorithm off on every connection.

    With ``workers`` > 1, uvicorn hands each worker a listening socket made without
    ``IPPROTO_TCP``, so asyncio does not set TCP_NODELAY on accepted connections, and
    a response written in two parts waits for the client's delayed acknowledgement
    (about 40 ms: Kludex/uvicorn#3149, measured by bench/scale.py)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        no_delay(transport.get_extra_info("socket"))
        super().connection_made(transport)


def no_delay(sock: Any) -> None:
    """Turn Nagle's algorithm off on a TCP connection (anything else is left alone)."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # not a TCP socket after all
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def taxii_server_options(node: Node, host: str | None = None,
                         port: int | None = None) -> dict[str, Any]:
    cfg = node.config
    options: dict[str, Any] = {"host": host or cfg.host, "port": port or cfg.port,
                               "http": NoDelayHTTP}
    if cfg.tls and cfg.tls_cert and cfg.tls_key:
        options.update(ssl_certfile=str(cfg.tls_cert), ssl_keyfile=str(cfg.tls_key))
    return options


def serve(node: Node, *, host: str | None = None, port: int | None = None,
          courier_interval: float = 2.0) -> None:
    """Serve until SIGINT/SIGTERM. Partners pinned after start need a restart to be
    trusted by the TLS listener."""
    servers = [
        uvicorn.Server(uvicorn.Config(create_app(node), log_level="warning",
                                      **taxii_server_options(node, host, port))),
        uvicorn.Server(uvicorn.Config(create_federation_app(node), log_level="warning",
                                      **federation_server_options(node))),
    ]
    courier = Courier(node, interval=courier_interval)
    courier.start()
    node.audit.start()  # integrates the audit log and signs its checkpoints

    async def run() -> None:
        await asyncio.gather(*(s.serve() for s in servers))

    try:
        asyncio.run(run())
    finally:
        courier.stop()
        node.close()


WORKER_ENV = "INTELPACT_NODE_DIR"


def taxii_worker_app() -> Starlette:
    """The TAXII app of one worker process: it opens the node named by the environment."""
    return create_app(Node.open(Path(os.environ[WORKER_ENV])))


def serve_workers(node: Node, workers: int, *, host: str | None = None,
                  port: int | None = None, courier_interval: float = 2.0) -> None:
    """Serve the TAXII API with ``workers`` processes; federation and courier here."""
    federation = uvicorn.Server(uvicorn.Config(create_federation_app(node), log_level="warning",
                                               **federation_server_options(node)))
    thread = threading.Thread(target=federation.run, name="intelpact-federation", daemon=True)
    thread.start()
    courier = Courier(node, interval=courier_interval)
    courier.start()
    node.audit.start()  # this process alone integrates and signs checkpoints
    os.environ[WORKER_ENV] = str(node.config.dir.resolve())
    try:
        uvicorn.run("intelpact.interfaces.server:taxii_worker_app", factory=True,
                    workers=workers, log_level="warning",
                    **taxii_server_options(node, host, port))
    finally:
        federation.should_exit = True
        thread.join(10)
        courier.stop()
        node.close()
