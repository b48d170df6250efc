"""Test helpers: real node directories, real SQLite, real servers on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from intelpact.interfaces.taxii import create_app
from intelpact.services.node import Node

ROOT = Path(__file__).resolve().parent.parent
AGREEMENTS = ROOT / "agreements"
DATA = ROOT / "tests" / "data"
T0 = "2026-11-01T00:00:00.000Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(node: Node) -> Iterator[str]:
    """Serve ``node`` with uvicorn in a thread; yields the base URL."""
    port = free_port()
    cfg = node.config
    ssl: dict[str, Any] = {}
    if cfg.tls and cfg.tls_cert and cfg.tls_key:
        ssl = {"ssl_certfile": str(cfg.tls_cert), "ssl_keyfile": str(cfg.tls_key)}
    server = uvicorn.Server(uvicorn.Config(create_app(node), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off", **ssl))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if ssl else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def make_node(path: Path, party: str = "JPN", agreement: str = "jpn-nzl.toml",
              tls: bool = False) -> Node:
    return Node.create(path, party=party, agreement_file=AGREEMENTS / agreement, tls=tls,
                       port=free_port(), federation_port=free_port())


@contextmanager
def serving_federation(node: Node) -> Iterator[str]:
    """Serve ``node``'s mutual-TLS federation listener in a thread."""
    from intelpact.interfaces.federation import create_federation_app, federation_server_options

    options = federation_server_options(node)
    server = uvicorn.Server(uvicorn.Config(create_federation_app(node), log_level="warning",
                                           lifespan="off", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the federation server did not start")
        time.sleep(0.01)
    try:
        yield node.config.federation_url
    finally:
        server.should_exit = True
        thread.join(10)


def stix_id(kind: str) -> str:
    return f"{kind}--{uuid.uuid4()}"


def indicator(name: str, *, modified: str = T0, oid: str | None = None,
              **extra: Any) -> dict[str, Any]:
    obj = {"type": "indicator", "spec_version": "2.1", "id": oid or stix_id("indicator"),
           "created": T0, "modified": modified, "name": name,
           "description": f"{name}: description", "indicator_types": ["malicious-activity"],
           "pattern": "[ipv4-addr:value = '198.51.100.7']", "pattern_type": "stix",
           "valid_from": T0}
    obj.update(extra)
    return obj
