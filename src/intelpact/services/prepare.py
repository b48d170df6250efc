"""Validating and signing what is published, on every core.

Of the CPU time a publication takes, about two thirds go to two steps that depend on
nothing but the object, the marking-definitions added to it and the node's key: its
validation (STIX 2.1 schemas, MUST checks, the pattern) and its signature
(docs/performance.md). One Python process does them on one core. A :class:`Preparer`
does them, for a large publication, in a pool of processes beside the node's own, while
the node's process labels the objects whose results are back; everything else a
publication does (labels, the policy check, the originator and derivation checks, the
store, the audit) stays in the node's process, decided exactly as before.

What a pooled object gives back is what :func:`prepare` gives in the node's own process:
its verdict and its signed text, byte for byte (Ed25519 signatures are deterministic).
An object that a later check refuses has been signed for nothing; its text is dropped.
A pool that fails costs nothing but time: when a process dies (killed, say), the chunks
not yet back are prepared in the node's process and the next large publication starts
a new pool; a pool whose processes cannot start is given up, and everything is
prepared in the node's process from then on.

The pool is off until :meth:`Preparer.enable` (``intelpact serve`` turns it on, with
``[server] ingest_processes`` processes, docs/configuration.md). It starts on the
first large publication, in the background: that publication, and the next ones until
the pool's processes have started (one to two seconds), are prepared here; no
publication waits for it. ``intelpact publish`` does not use it: there the start is
not paid back (25,000 simple indicators took 11.5 s with it, 11.8 s without). The
signing key goes to the pool, over its pipe, with each chunk: a rotated key signs from
the next chunk on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..config import NodeConfig
from ..crypto.signing import SignatureError, sign_object, signed_text
from ..stix.validate import validate_object

log = logging.getLogger("intelpact.prepare")

MIN_OBJECTS = 100  # fewer objects than this are prepared here: the round trip costs more
CHUNK = 125  # objects per task: eight to an envelope of 1,000, results back in order

Signer = Callable[[], tuple[Ed25519PrivateKey, str]]  # the key signed with now, its party


@dataclass(frozen=True, slots=True)
class Prepared:
    """One object's verdict: why it is refused, or its stored text and that text's
    SHA-256 (:func:`canonical_body`)."""

    reason: str | None
    body: str = ""
    digest: str = ""


def canonical_body(obj: dict[str, Any], text: str | None = None) -> tuple[str, str]:
    """The JSON text stored and served for ``obj`` (keys sorted, no whitespace, UTF-8),
    and the SHA-256 of that text, which identifies the version's content everywhere.
    ``text``: that text, when the caller has it already (:func:`signed_text`)."""
    body = text if text is not None else json.dumps(obj, ensure_ascii=False, sort_keys=True,
                                                    separators=(",", ":"))
    return body, hashlib.sha256(body.encode("utf-8")).hexdigest()


def with_marking_refs(item: dict[str, Any], extra_refs: Sequence[str]) -> dict[str, Any]:
    """``item`` with ``extra_refs`` added to its ``object_marking_refs`` (once each)."""
    obj = dict(item)
    refs = list(obj.get("object_marking_refs", []))
    for ref in extra_refs:
        if ref not in refs:
            refs.append(ref)
    if refs:
        obj["object_marking_refs"] = refs
    return obj


def prepare(item: Any, extra_refs: Sequence[str], key: Ed25519PrivateKey,
            party: str) -> Prepared:
    """Validate ``item``; if valid, add ``extra_refs`` and sign it as ``party``. An item
    that cannot be validated or signed is refused alone, with the reason."""
    if not isinstance(item, dict):
        return Prepared("not a JSON object")
    try:
        validate_object(item)
    except Exception as exc:  # noqa: BLE001 - the validator's one error type
        return Prepared(getattr(exc, "reason", str(exc)))
    try:
        signed = sign_object(with_marking_refs(item, extra_refs), key, party)
    except SignatureError as exc:  # not writable in RFC 8785 (a NaN made in Python, say)
        return Prepared(exc.message)
    body, digest = canonical_body(signed, signed_text(signed))
    return Prepared(None, body, digest)


# --- in a pool process ---------------------------------------------------------------------

_keys: dict[bytes, Ed25519PrivateKey] = {}


def _start_process() -> None:
    # The node's process ends the pool: Ctrl-C in a terminal reaches the whole process
    # group, and a pool process stopped by it mid-task would only add a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A node's process that is killed cannot end its pool, and a pool process waiting for
    # work would wait for ever (it holds both ends of the queue it reads): it ends itself
    # when its parent is gone.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent.sentinel,), daemon=True,
                         name="intelpact-parent-watch").start()


def _end_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _ready() -> int:
    return os.getpid()


def _prepare_chunk(items: list[Any], extra_refs: list[str], raw_key: bytes,
                   party: str) -> list[Prepared]:
    key = _keys.get(raw_key)
    if key is None:
        _keys.clear()  # one key at a time: a rotated key is not kept
        key = _keys[raw_key] = Ed25519PrivateKey.from_private_bytes(raw_key)
    return [prepare(item, extra_refs, key, party) for item in items]


# --- in the node's process -----------------------------------------------------------------


def default_processes(workers: int = 1) -> int:
    """Pool processes for each of ``workers`` TAXII worker processes: the cores this
    process may run on, shared among the workers; none when that leaves fewer than two
    (a single pool process only moves the work, and the node's process waits for it)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)
    share = cores // max(1, workers)
    return share if share >= 2 else 0


def ingest_processes(config: NodeConfig, workers: int = 1) -> int:
    """The pool processes each of ``workers`` node processes validates and signs large
    publications with: ``[server] ingest_processes``, else :func:`default_processes`."""
    if config.ingest_processes is not None:
        return config.ingest_processes
    return default_processes(workers)


class Preparer:
    """Prepares a publication's objects (:func:`prepare`), in a pool of ``processes``
    once enabled and started, else in this process. Thread-safe."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.processes = 0
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._started: list[Future[int]] = []

    def enable(self, processes: int) -> None:
        """Use a pool of ``processes`` (0: none) for large publications from now on."""
        with self._lock:
            self.processes = max(0, processes)

    @property
    def ready(self) -> bool:
        """Whether the pool's processes are all up."""
        return self._pool is not None and all(
            f.done() and f.exception() is None for f in self._started)

    def prepare(self, items: Sequence[Any], extra_refs: Sequence[str]) -> Preparation:
        """Each of ``items`` prepared, in order, as the results come back."""
        key, party = self.signer()
        return Preparation(items, extra_refs, key, party, self, self._pool_for(len(items)))

    def start(self, timeout: float | None = None) -> bool:
        """Start the pool if it is enabled and not running; with ``timeout``, wait that
        many seconds for it to be up. Returns whether it is up."""
        pool, started = self._start()
        if pool is None:
            return False
        try:
            for future in started:
                if timeout is not None or future.done():
                    future.result(timeout=timeout)
        except Exception:  # noqa: BLE001 - prepared here from now on; logged
            log.exception("the publication pool did not start; validating and signing in "
                          "this process from now on")
            self.discard(pool)
            with self._lock:
                self.processes = 0  # not tried again: a pool that fails to start costs time
            return False
        return self.ready

    def _start(self) -> tuple[ProcessPoolExecutor | None, list[Future[int]]]:
        with self._lock:
            if self._pool is None and self.processes:
                ctx = multiprocessing.get_context("spawn")  # this process has threads
                try:
                    self._pool = ProcessPoolExecutor(self.processes, mp_context=ctx,
                                                     initializer=_start_process)
                    self._started = [self._pool.submit(_ready)
                                     for _ in range(self.processes)]
                except Exception:  # noqa: BLE001 - e.g. no processes left: work alone
                    log.exception("cannot start processes to validate and sign "
                                  "publications; doing it in this process from now on")
                    pool, self._pool, self._started = self._pool, None, []
                    self.processes = 0
                    if pool is not None:
                        pool.shutdown(wait=False, cancel_futures=True)
                else:
                    log.info("starting %d processes to validate and sign publications",
                             self.processes)
            return self._pool, list(self._started)

    def _pool_for(self, count: int) -> ProcessPoolExecutor | None:
        """The pool to prepare ``count`` objects with, if that is worth it and the pool
        is up (else it is started, for the next publication: none waits for it)."""
        if count < MIN_OBJECTS or not self.processes:
            return None
        return self._pool if self.start() else None

    def discard(self, pool: ProcessPoolExecutor) -> None:
        """Stop using ``pool`` (broken, or shut down): the next large publication starts
        a new one."""
        with self._lock:
            if self._pool is pool:
                self._pool, self._started = None, []
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the pool's processes (after the tasks they have begun)."""
        with self._lock:
            pool, self._pool, self._started = self._pool, None, []
            self.processes = 0
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class Preparation(Iterator[Prepared]):
    """One publication's objects prepared (:func:`prepare`), in order: in ``preparer``'s
    ``pool`` when one is given, else here as they are asked for. A context manager:
    leaving it cancels what the pool has not begun.

    :attr:`waiting` says whether the next result is still being prepared in the pool, so
    that the caller can do other work meanwhile (the publisher stores what it has decided)
    instead of waiting for it."""

    def __init__(self, items: Sequence[Any], extra_refs: Sequence[str], key: Ed25519PrivateKey,
                 party: str, preparer: Preparer | None = None,
                 pool: ProcessPoolExecutor | None = None) -> None:
        self._extra_refs = list(extra_refs)
        self._key, self._party = key, party
        self._preparer = preparer
        self._pool = pool
        self._results: list[Prepared] = []  # the chunk being handed out
        self._at = 0  # the next of _results to hand out
        self._next = 0  # the next chunk
        self._chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
        self._futures: list[Future[list[Prepared]] | None] = [None] * len(self._chunks)
        if pool is not None:
            raw = key.private_bytes_raw()
            try:
                for k, chunk in enumerate(self._chunks):
                    self._futures[k] = pool.submit(_prepare_chunk, list(chunk),
                                                   self._extra_refs, raw, party)
            except (RuntimeError, BrokenProcessPool):  # shut down or broken meanwhile
                self._lost()

    @property
    def waiting(self) -> bool:
        """Whether the next result is still being prepared in the pool."""
        return (self._at >= len(self._results) and self._next < len(self._chunks)
                and not self._back(self._next))

    def _back(self, k: int) -> bool:
        """Whether chunk ``k`` is prepared (in the pool), or is to be prepared here."""
        future = self._futures[k]
        return future is None or future.done()

    def __next__(self) -> Prepared:
        while self._at >= len(self._results):
            if self._next >= len(self._chunks):
                raise StopIteration
            self._results, self._at = self._chunk(self._next), 0
            self._futures[self._next] = None
            self._next += 1
        self._at += 1
        return self._results[self._at - 1]

    def _chunk(self, k: int) -> list[Prepared]:
        future = self._futures[k]
        if future is not None:
            try:
                return future.result()
            except BrokenProcessPool:
                log.warning("a publication process stopped; preparing here instead")
                self._lost()
            except Exception:  # noqa: BLE001 - prepared here: the same error, or none
                log.exception("a publication chunk failed in the pool; preparing it here "
                              "instead")
        return [prepare(item, self._extra_refs, self._key, self._party)
                for item in self._chunks[k]]

    def _lost(self) -> None:
        """The pool is broken: what it has not given back is prepared here."""
        if self._preparer is not None and self._pool is not None:
            self._preparer.discard(self._pool)
        self.close()

    def close(self) -> None:
        """Cancel the chunks the pool has not begun (they are not wanted)."""
        for k, future in enumerate(self._futures):
            if future is not None:
                future.cancel()
                self._futures[k] = None

    def __enter__(self) -> Preparation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
