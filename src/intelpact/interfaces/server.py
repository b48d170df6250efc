"""Running a node: the TAXII listener, the mutual-TLS federation listener and the
courier, in one process, until interrupted."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn

from ..services.courier import Courier
from ..services.node import Node
from .federation import create_federation_app, federation_server_options
from .taxii import create_app

log = logging.getLogger("intelpact.server")


def taxii_server_options(node: Node, host: str | None = None,
                         port: int | None = None) -> dict[str, Any]:
    cfg = node.config
    options: dict[str, Any] = {"host": host or cfg.host, "port": port or cfg.port}
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

    async def run() -> None:
        await asyncio.gather(*(s.serve() for s in servers))

    try:
        asyncio.run(run())
    finally:
        courier.stop()
        node.close()
