"""Test helpers: real node directories, real SQLite (or PostgreSQL), real servers on 127.0.0.1."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from intelpact.interfaces.federation import create_federation_app, federation_server_options
from intelpact.interfaces.server import taxii_server_options
from intelpact.interfaces.taxii import create_app
from intelpact.services.courier import Courier
from intelpact.services.federation import make_card
from intelpact.services.node import Node

ROOT = Path(__file__).resolve().parent.parent
AGREEMENTS = ROOT / "agreements"
DATA = ROOT / "tests" / "data"
T0 = "2026-11-01T00:00:00.000Z"


def free_port() -> int:
    return free_ports(1)[0]


def node_ports() -> dict[str, int]:
    """``Node.create``'s port and federation_port: two different free ports."""
    port, federation_port = free_ports(2)
    return {"port": port, "federation_port": federation_port}


def free_ports(count: int) -> list[int]:
    """``count`` different ports free on 127.0.0.1 now, below the kernel's ephemeral range.
    A port the kernel hands out for ``bind(0)`` is one it also gives clients as their
    source port: between choosing it and serving on it, a client connection (a courier,
    the audit watch) could take it, and the server failed with "address already in use".
    Each socket stays bound until all are chosen: two calls of ``free_port`` once gave a
    node the same TAXII and federation port, refused by its config. Nor is a port given
    again soon (``_GIVEN``): a test's nodes choose theirs one after another and serve
    later, so a port free at the second choice could be the first node's (a consent
    test's third node once failed: "address already in use")."""
    low = _EPHEMERAL_LOW
    with ExitStack() as held:
        ports: list[int] = []
        while len(ports) < count:
            port = random.randrange(max(1024, low - 12_000), low)
            if port in _GIVEN:
                continue
            s = held.enter_context(socket.socket())
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use (a local service, another test): another one
            ports.append(port)
        _GIVEN.extend(ports)
        return ports


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_EPHEMERAL_LOW = _ephemeral_low()
_GIVEN: deque[int] = deque(maxlen=2_000)  # the ports free_ports gave last, not given again


@contextmanager
def _in_thread(app: Any, options: dict[str, Any]) -> Iterator[None]:
    """Run one uvicorn server in a thread until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the test server on port {options['port']} did not start")
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serving(node: Node) -> Iterator[str]:
    """Serve ``node``'s TAXII API in a thread (on a free port); yields the base URL."""
    options = taxii_server_options(node, "127.0.0.1", free_port())
    with _in_thread(create_app(node), options):
        yield f"{'https' if 'ssl_certfile' in options else 'http'}://127.0.0.1:{options['port']}"


def node_sql(node_dir: Path, statement: str, params: tuple[Any, ...] = ()
             ) -> list[tuple[Any, ...]]:
    """``statement`` on the database of the node of ``node_dir``, not through its store
    (which opening migrates): to make it a database of an older release, or as an
    insider who writes to it. ``params`` are bound to its ``?`` marks (``%s`` on
    PostgreSQL: the statement holds no other ``?``)."""
    database = _database(node_dir)
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database, autocommit=True) as pg_conn:
            cur = pg_conn.execute(statement.replace("?", "%s") if params  # type: ignore[arg-type]
                                  else statement, params or None)
            return cur.fetchall() if cur.description else []
    import sqlite3

    conn = sqlite3.connect(Path(node_dir) / database, isolation_level=None)
    try:
        return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def _database(node_dir: Path) -> str:
    """The ``database`` node.toml names, read as it is: not by ``load_config``, which
    finishes a pin cut short (moves the agreement text staged into place), so a test of
    what a command writes would see the helper's own write."""
    import tomllib

    node = tomllib.loads((Path(node_dir) / "node.toml").read_text(encoding="utf-8"))["node"]
    return str(node.get("database", "node.db"))


def insider(node: Node, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run ``sql`` on the open node's database directly, in one of its store's write
    transactions, as someone who can write to it: ``params`` bound to its ``?`` marks
    (``%s`` on PostgreSQL: the statement holds no other ``?``)."""
    from intelpact.store.sqlite import SQLiteStore

    mark = "?" if isinstance(node.store, SQLiteStore) else "%s"
    with node.store._write() as c:  # type: ignore[attr-defined]  # noqa: SLF001 - an insider
        c.execute(sql.replace("?", mark), params)


def copy_node(node_dir: Path, to: Path) -> Path:
    """A copy at ``to`` of the closed node of ``node_dir``, with a database of its own:
    on PostgreSQL a new one made from the node's (``CREATE DATABASE ... TEMPLATE``, which
    no session may be connected to), named in the copy's node.toml."""
    import dataclasses
    import shutil

    from intelpact.config import load_config, write_config

    shutil.copytree(node_dir, to)
    config = load_config(to)
    if config.database.startswith("postgresql://"):
        import pg

        write_config(dataclasses.replace(config, database=pg.copy_database(config.database)))
    return to


ON_POSTGRESQL = os.environ.get("INTELPACT_TEST_DATABASE", "").lower() in ("postgresql",
                                                                          "postgres")


def sqlite_only(reason: str) -> pytest.MarkDecorator:
    """A test (or a parameter) skipped on the PostgreSQL pass, saying why: it is about
    SQLite itself (its file, its untyped columns, its lock file)."""
    return pytest.mark.skipif(ON_POSTGRESQL, reason=f"SQLite only: {reason}")
def database_digest(node_dir: Path) -> dict[str, tuple[int, str]]:
    """Each table of the node's database: its row count and the SHA-256 of its rows,
    sorted (read through node_sql, not the store): equal before and after a command, the
    command wrote nothing."""
    import hashlib

    if _database(node_dir).startswith("postgresql://"):
        listing = ("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                   "ORDER BY tablename")
    else:
        listing = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    digest = {}
    for (table,) in node_sql(node_dir, listing):
        rows = sorted(repr(row) for row in node_sql(node_dir, f'SELECT * FROM "{table}"'))  # noqa: S608
        digest[str(table)] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return digest


def files_digest(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` (its path there) and the SHA-256 of its bytes, and
    every directory ("dir"): equal before and after a command, it made, changed, moved
    or removed none."""
    import hashlib

    return {str(p.relative_to(directory)): "dir" if p.is_dir() else
            hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).rglob("*"))}


@contextmanager
def read_only(directory: Path) -> Iterator[str]:
    """``directory`` and what it holds made read-only while in the block: as root (whom
    file modes do not stop) by a read-only bind mount of it over itself (yields "mount";
    skipped where mounting is not allowed), otherwise every file 0444 and every directory
    0555 (yields "chmod")."""
    import pytest

    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [directory, *directory.rglob("*")]}
        for path in sorted(modes, reverse=True):  # a directory's files before it
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield "chmod"
        finally:
            for path, mode in sorted(modes.items()):
                path.chmod(mode)
        return
    done = subprocess.run(["mount", "--bind", str(directory), str(directory)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"root, and a read-only bind mount is not allowed: {done.stderr.strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True,
                       capture_output=True)
        yield "mount"
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True,
                          check=False).returncode != 0:  # a file still open: when it closes
            subprocess.run(["umount", "-l", str(directory)], check=False)


def older_schema(node_dir: Path) -> tuple[int, str]:
    """Make the node's database one of the release before (its newest migration recorded
    as not applied); returns that migration's row, to record it again."""
    (newest, applied), = node_sql(node_dir, "SELECT version, applied FROM schema_migrations "
                                  "ORDER BY version DESC LIMIT 1")
    node_sql(node_dir, f"DELETE FROM schema_migrations WHERE version = {int(newest)}")  # noqa: S608
    return int(newest), str(applied)


def before_newest(node_dir: Path) -> int:
    """Make the node's database truly one of the release before: its newest migration
    recorded as not applied and what it made undone (0043 made SQLite's index of the
    outbox by seq; PostgreSQL's has been there since 0002, and its 0043 makes nothing),
    so migrating it again works. Returns that migration's number. A newer migration must
    be undone here too (the test migrating fails until it is: "already exists")."""
    newest, _ = older_schema(node_dir)
    if test_database() is None:
        node_sql(node_dir, "DROP INDEX outbox_by_seq")
    return newest


def migrations_applied(node_dir: Path) -> list[int]:
    return [int(r[0]) for r in node_sql(node_dir, "SELECT version FROM schema_migrations "
                                        "ORDER BY version")]


def migrated(node_dir: Path, row: tuple[int, str]) -> None:
    """The migration ``row`` recorded again (its tables are there: as serve migrating)."""
    node_sql(node_dir, f"INSERT INTO schema_migrations VALUES ({row[0]}, '{row[1]}')")  # noqa: S608


def test_database() -> str | None:
    """The store make_node gives a node: None (its own SQLite file) unless
    INTELPACT_TEST_DATABASE=postgresql asks for a fresh database on the test
    PostgreSQL server (tests/pg.py; `make test` runs a second pass so)."""
    import os

    wanted = os.environ.get("INTELPACT_TEST_DATABASE", "sqlite").lower()
    if wanted in ("", "sqlite"):
        return None
    if wanted not in ("postgresql", "postgres"):
        raise ValueError(f"INTELPACT_TEST_DATABASE={wanted!r}: use sqlite or postgresql")
    import pg

    return pg.database_url("node")


def make_node(path: Path, party: str = "JPN", agreement: str = "jpn-nzl.toml",
              tls: bool = False, database: str | None = None) -> Node:
    """A fresh node in ``path``; ``database`` defaults to test_database()."""
    return Node.create(path, party=party, agreement_file=AGREEMENTS / agreement, tls=tls,
                       **node_ports(),
                       database=database if database is not None else test_database())


@contextmanager
def serving_federation(node: Node) -> Iterator[str]:
    """Serve ``node``'s mutual-TLS federation listener in a thread."""
    with _in_thread(create_federation_app(node), federation_server_options(node)):
        yield node.config.federation_url


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


def proc_stat(path: Path) -> list[str] | None:
    """A process's /proc stat fields after its name (state, ppid, pgrp, ...), or None
    once it is gone."""
    try:
        return path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie has ended), from /proc."""
    fields = proc_stat(Path(f"/proc/{pid}/stat"))
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``, from /proc."""
    found = []
    for path in Path("/proc").glob("[0-9]*/stat"):
        fields = proc_stat(path)
        if fields is not None and fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(path.parent.name))
    return found


def start_serve(node_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    """`intelpact serve NODE_DIR ARGS…` as an operator runs it, in a session of its own
    (stop it with :func:`stop_group`), its stderr piped to the test."""
    exe = Path(sys.executable).with_name("intelpact")
    return subprocess.Popen([str(exe), "serve", str(node_dir), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started in a session of its own (``start_new_session``), such as
    ``serve --workers N`` and its workers: SIGTERM to the group, SIGKILL after 20 s."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    if proc.stderr:
        proc.stderr.close()


def pin_each_other(*nodes: Node) -> None:
    """Every node pins every other's card, as partners do out of band."""
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.federation.add_peer(make_card(b.identity))


# A body nested deeper than any reader here decodes: json's RecursionError, not ValueError.
DEEP = b"[" * 100_000 + b"]" * 100_000


def partner_answers(target: str, answer: Callable[[httpx.Response], bytes | httpx.Response],
                    asked: bytes = b"") -> Callable[..., httpx.Response]:
    """A stand-in for Courier._request (set it on Courier with monkeypatch): each request
    is sent, and the partner acts on it, but its answer to one whose target starts with
    ``target`` (and whose body holds ``asked``) reaches this node as ``answer(the real
    answer)``: bytes under the real status, or a whole response. A hostile or faulty
    partner, as this node's courier meets it."""
    real = Courier._request

    def request(self: Courier, peer: Any, method: str, sent_to: str,
                body: bytes = b"") -> httpx.Response:
        response = real(self, peer, method, sent_to, body)
        if not sent_to.startswith(target) or asked not in body:
            return response
        made = answer(response)
        return made if isinstance(made, httpx.Response) else httpx.Response(
            response.status_code, content=made, request=response.request)

    return request
