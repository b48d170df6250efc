"""A PostgreSQL server of the benchmark's own, started from the installed binaries.

The approach of tests/pg.py: ``initdb`` into a temporary directory, ``pg_ctl start`` on a
free port on 127.0.0.1 (its unix socket in the same directory), stopped and removed at
exit; as root, the server runs as the ``postgres`` user through ``runuser``. Unlike the
test server it is durable: fsync and full-page writes stay on, so a commit is on disk
before the node answers (the node also forces ``synchronous_commit``). The settings
that differ from PostgreSQL's defaults are in ``SETTINGS``; each fresh database is a
``CREATE DATABASE`` on it.
"""

from __future__ import annotations

import argparse
import atexit
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Sized for a 1,000,000-object store on a 2-core, 24 GiB machine: a buffer cache that
# holds the hot indexes, and checkpoints spaced so that a bulk load is not mostly
# full-page images. Durability settings (fsync, full_page_writes, synchronous_commit)
# are PostgreSQL's defaults.
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
    "shared_buffers": "1GB",
    "effective_cache_size": "8GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "256MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "15min",
}


def bindir() -> Path | None:
    """Where initdb and pg_ctl live: INTELPACT_TEST_PG_BINDIR, `pg_config --bindir`,
    the newest /usr/lib/postgresql/*/bin, or PATH (as tests/pg.py looks)."""
    chosen = os.environ.get("INTELPACT_TEST_PG_BINDIR")
    candidates = [Path(chosen)] if chosen else []
    if not chosen:
        try:
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                 check=True, timeout=10).stdout.strip()
            candidates.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
        candidates += sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
                             key=lambda p: int(p.parent.name) if p.parent.name.isdigit()
                             else 0, reverse=True)
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A running server (``start``) or an existing one (``url``); ``database()`` makes a
    fresh database on it and returns its URL."""

    def __init__(self, url: str = "") -> None:
        self.url = url
        self.root: Path | None = None
        self.bin: Path | None = None
        self.user: str | None = None
        self.version = ""

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.bin is not None
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)

    def start(self, parent: str | None = None) -> Server:
        folder = bindir()
        if folder is None:
            raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl) on PATH, in "
                                    "`pg_config --bindir` or /usr/lib/postgresql/*/bin; install "
                                    "them (apt-get install postgresql) or pass --pg-url")
        self.bin = folder
        self.root = Path(tempfile.mkdtemp(prefix="intelpact-bench-pg-", dir=parent))
        if os.geteuid() == 0:  # the server refuses to run as root
            self.user = "postgres"
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        atexit.register(self.stop)
        data = self.root / "data"
        done = self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres",
                         "-E", "UTF8", "--locale=C")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
        port = _free_port()
        options = f"-p {port} -k {self.root} " + " ".join(f"-c {k}={v}"
                                                          for k, v in SETTINGS.items())
        done = self._run("pg_ctl", "-D", str(data), "-o", options, "-l",
                         str(self.root / "server.log"), "-w", "-t", "120", "start")
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr or done.stdout}\n{tail}")
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        root, self.root = self.root, None
        if self.bin is not None:
            self._run("pg_ctl", "-D", str(root / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)

    def database(self, prefix: str = "bench") -> str:
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            if not self.version:
                row = conn.execute("SHOW server_version").fetchone()
                self.version = str(row[0]) if row else ""
        return self.url.rsplit("/", 1)[0] + "/" + name

    def drop(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def databases(backends: str, parent: str | None = None) -> Iterator[tuple[str, str | None]]:
    """Each of ``backends`` (comma-separated: sqlite, postgresql) with the database a node
    on it is made with: None on SQLite (the node's own file); on PostgreSQL a fresh
    database of one server, started here at the first and stopped after the last (or at
    exit)."""
    server: Server | None = None
    try:
        for backend in backends.split(","):
            if backend == "postgresql":
                server = server or Server().start(parent)
                yield backend, server.database()
            else:
                yield backend, None
    finally:
        if server is not None:
            server.stop()


def main_by_backend(doc: str, objects: int, prefix: str,
                    run: Callable[[Path, str | None, int], dict[str, Any]]) -> int:
    """The command line of a benchmark run on each store in turn (``--objects``,
    ``--backends``, ``--tmp``): ``run(work, database, objects)`` for each, its figures
    printed as they come, then all as one JSON object on the last line."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=objects)
    parser.add_argument("--backends", default="sqlite",
                        help="comma-separated: sqlite, postgresql (default sqlite)")
    parser.add_argument("--tmp", help="a directory for the nodes (default: the system's)")
    args = parser.parse_args()
    results: dict[str, object] = {"objects": args.objects}
    with tempfile.TemporaryDirectory(prefix=prefix, dir=args.tmp) as tmp:
        for backend, database in databases(args.backends, args.tmp):
            work = Path(tmp) / backend
            work.mkdir()
            figures = run(work, database, args.objects)
            results[backend] = {k: round(v, 3) for k, v in figures.items()}
            print(f"{backend}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()),
                  flush=True)
    print(json.dumps(results))
    return 0
