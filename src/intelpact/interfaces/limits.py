"""How long, and how much, a client may send: the limits on both listeners.

uvicorn closes a kept-alive connection that stays idle between requests
(``timeout_keep_alive``, 5 s), but it puts no limit on how long a client takes to
send a request: one that sends a header line, or a byte of its body, every few
seconds holds its connection (and, while its body is read, a request) open for ever
(slowloris). And when an application answers before reading the whole body (a 413),
uvicorn goes on reading and discarding what the client sends. So, on the TAXII and the
federation listener alike (docs/node.md, "Limits"):

- :class:`NoDelayHTTP`, the node's HTTP protocol, closes a connection whose request
  headers are not complete ``header_timeout`` seconds after the connection was made or
  the first byte of the request arrived, and answers a request uvicorn cannot parse
  with a 400 in TAXII's error shape;
- :func:`read_body` reads a request body (a TAXII envelope, a partner's message, a
  console form) within ``max_content_length`` bytes,
  ``body_idle_timeout`` seconds of waiting for each part and ``body_timeout`` seconds in
  all, and raises :class:`BodyRefused` (413 or 408) as soon as one is exceeded; the
  endpoint answers at once with ``Connection: close``, so the rest is never read;
- ``max_connections`` (uvicorn's ``limit_concurrency``, set by the listeners' options):
  with that many connections open or requests in progress, a listener answers any
  further request with a 503 at once, so a flood of connections holds neither threads
  nor memory, and the header deadline above closes the idle ones;
- a listener that stops (SIGTERM) gives the requests in progress ``STOP_GRACE``
  seconds to finish, then cancels them: a client that trickles its body or never reads
  its answer cannot hold `serve` from stopping (:func:`listener_options`);
- on the federation listener, :class:`RateLimit`: ``partner_burst`` requests at once
  from one partner, then ``partner_rate`` a second (interfaces/federation.py answers
  the rest 429 with ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from ..config import DEFAULT_HEADER_TIMEOUT, NodeConfig

log = logging.getLogger("intelpact.limits")

TAXII = "application/taxii+json;version=2.1"
CLOSE = {"Connection": "close"}  # for an answer sent before the whole body was read
# Seconds a connection closed after the last answer of a listener that stops waits for the
# client's TLS close_notify before it is cut (its answer written by then)
CLOSE_GRACE = 1.0
# Seconds a listener that stops gives the requests in progress to finish before they are
# cancelled (uvicorn's timeout_graceful_shutdown; without it, for ever); each is named in
# the log STOP_REPORT seconds after the stop if it still runs
STOP_GRACE = 10
STOP_REPORT = 2.0


class NoDelayHTTP(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP protocol (h11, or httptools when installed), with:

    - Nagle's algorithm off on every connection. With ``workers`` > 1, uvicorn hands
      each worker a listening socket made without ``IPPROTO_TCP``, so asyncio does not
      set TCP_NODELAY on accepted connections, and a response written in two parts
      waits for the client's delayed acknowledgement (about 40 ms: Kludex/uvicorn#3149,
      measured by bench/scale.py);
    - a deadline for request headers: ``header_timeout`` seconds from the connection
      being made, or from the first byte of a later request on it, to the end of the
      headers; a connection that misses it is closed;
    - a malformed request answered in TAXII's error shape rather than plain text;
    - over TLS, the ASGI TLS extension in every request's scope
      (``scope["extensions"]["tls"]``, :func:`tls_extension`), which uvicorn does not
      provide: the federation listener names the caller by the certificate it presented
      (interfaces/federation.py).

    uvicorn makes one per connection with ``config``, ``server_state``, ``app_state`` and
    ``_loop``; :func:`listener_options` binds ``header_timeout``."""

    def __init__(self, *args: Any, header_timeout: float = DEFAULT_HEADER_TIMEOUT,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._stopping = False  # the listener stops: closed once its answer is sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        no_delay(transport.get_extra_info("socket"))
        super().connection_made(transport)
        tls = tls_extension(transport)
        if tls is not None:  # the handshake is done: the same for each request on it
            self.app = functools.partial(_with_tls, self.app, tls)  # type: ignore[has-type]
        self._arm()  # a client that connects and sends nothing is closed too

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers and self._header_deadline is None:
            self._arm()  # the first byte of the next request on a kept-alive connection
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers are complete
            self._awaiting_headers = False
            self._disarm()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if self._stopping:  # uvicorn closed it gracefully: see shutdown
            self.loop.call_later(CLOSE_GRACE, self._abort)
            return
        # Unless a pipelined request already started, the next one must come in time.
        # Until its first byte, uvicorn's keep-alive timeout bounds the idle connection.
        if self.cycle is cycle:
            self._awaiting_headers = True

    def _abort(self) -> None:
        if self in self.server_state.connections:  # not closed yet: no close_notify came
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The listener stops: a connection between requests is closed at once; one with
        a request in progress after its response, as uvicorn does. uvicorn closes an idle
        one gracefully, and over TLS that waits for the client's ``close_notify``, up to
        asyncio's 30 s: a client keeping the connection in its pool (a partner's
        courier, any TAXII client) does not answer, so ``serve`` took 30 s to stop (the
        demo's nodes, each a client of the others, were killed after 10)."""
        if self.cycle is None or self.cycle.response_complete:
            self._disarm()
            self.transport.abort()
        else:  # its answer is sent whole, then the same graceful close waits CLOSE_GRACE
            self._stopping = True  # at most (it took 30 s whenever a request was in flight)
            self.loop.call_later(STOP_REPORT, self._still_answering, self.cycle)
            super().shutdown()

    def _still_answering(self, cycle: Any) -> None:
        """Name, in the log, the request that still holds the stop ``STOP_REPORT`` s on."""
        if cycle is self.cycle and not cycle.response_complete \
                and self in self.server_state.connections:
            scope = cycle.scope
            client = scope.get("client") or ("?", 0)
            log.warning("stopping: still answering %s %s from %s:%s; it is cancelled %g s "
                        "after the stop if it has not finished", scope.get("method"),
                        scope.get("path"), client[0], client[1], STOP_GRACE)

    def send_400_response(self, msg: str) -> None:
        if self.cycle is not None and self.cycle.response_started \
                and not self.cycle.response_complete:
            self.transport.close()  # halfway through a response: nothing more can be said
            return
        body = json.dumps({"title": "Bad Request", "http_status": "400",
                           "description": msg}).encode()
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: " + TAXII.encode()
                             + b"\r\ncontent-length: " + str(len(body)).encode()
                             + b"\r\nconnection: close\r\n\r\n" + body)
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._header_deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            log.info("closed a connection from %s: its request headers were not complete "
                     "within %g s", self.client, self.header_timeout)
            self.transport.close()


_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension of a connection (asgi.readthedocs.io, "TLS"), or None when
    it is not over TLS: the client's certificate (PEM) as ``client_cert_chain`` (empty
    when it presented none), and the TLS version."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return {"server_cert": None, "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)]
            if der else [], "client_cert_name": None, "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
            "cipher_suite": None}


async def _with_tls(app: Callable[..., Any], tls: dict[str, Any], scope: dict[str, Any],
                    receive: Any, send: Any) -> None:
    """``app`` called with the connection's TLS extension in the request's scope."""
    scope.setdefault("extensions", {})["tls"] = {**tls,
                                                 "client_cert_chain": list(
                                                     tls["client_cert_chain"])}
    await app(scope, receive, send)


def no_delay(sock: Any) -> None:
    """Turn Nagle's algorithm off on a TCP connection (anything else is left alone)."""
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # not a TCP socket after all
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def listener_options(cfg: NodeConfig) -> dict[str, Any]:
    """uvicorn options every listener of the node configured by ``cfg`` shares: its HTTP
    protocol (a partial of a module-level class, so uvicorn can hand it to worker
    processes), the connection cap, the stop's grace, and the client's address the
    connection's, never X-Forwarded-For's: uvicorn's proxy_headers (on by default,
    trusting 127.0.0.1) let any local client name another, and so escape the login
    throttle per address and choose the address its failures are audited with."""
    return {"http": functools.partial(NoDelayHTTP, header_timeout=cfg.header_timeout),
            "proxy_headers": False, "limit_concurrency": cfg.max_connections,
            "timeout_graceful_shutdown": STOP_GRACE}


class BodyRefused(Exception):
    """A request body the node will not read to its end: too large (413), too slow
    (408), or cut off by the client (400). Answer with :data:`CLOSE`."""

    def __init__(self, status: int, title: str, description: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.description = description


async def read_body(request: Request, cfg: NodeConfig, limit: int | None = None) -> bytes:
    """The request body, within ``cfg``'s size and time limits (``limit`` bytes instead of
    ``max_content_length`` where a body must be smaller or may carry more: a console
    form). Raises BodyRefused as soon as a limit is exceeded, without reading further."""
    limit = cfg.max_content_length if limit is None else limit
    too_large = BodyRefused(413, "Payload Too Large", f"at most {limit} bytes in a request")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise BodyRefused(400, "Bad Content-Length", "Content-Length must be a number")
        if int(declared) > limit:
            raise too_large
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.body_timeout
    chunks: list[bytes] = []
    size = 0
    stream = request.stream().__aiter__()
    while True:
        wait = min(cfg.body_idle_timeout, deadline - loop.time())
        try:
            if wait <= 0:
                raise TimeoutError
            async with asyncio.timeout(wait):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return b"".join(chunks)
        except TimeoutError:
            raise BodyRefused(408, "Request Timeout", f"the request body must arrive within "
                              f"{cfg.body_timeout:g} s, with no pause longer than "
                              f"{cfg.body_idle_timeout:g} s") from None
        except ClientDisconnect:
            raise BodyRefused(400, "Bad request", "the client went away while sending the "
                              "request body") from None
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)


class RateLimit:
    """A token bucket per key (a partner): each holds up to ``burst`` requests and fills
    at ``rate`` a second, so a key may send ``burst`` requests at once and ``rate`` a
    second for ever. Thread-safe; ``clock`` is ``time.monotonic`` unless a test gives
    another. The keys are the caller's to bound (pinned partners)."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def take(self, key: str) -> int:
        """Take a request from ``key``'s bucket: 0 when it held one, else the whole
        seconds (at least 1) until it holds one again, as ``Retry-After`` says them."""
        with self._lock:
            now = self.clock()
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + max(0.0, now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1 - tokens) / self.rate))
