"""A real PostgreSQL server for the tests, started from the installed binaries.

``cluster()`` starts one server per test session the first time a test asks for
it: ``initdb`` into a temporary directory, ``pg_ctl start`` on a free port on
127.0.0.1 (its unix socket in the same directory), stopped when the session
ends. Running as root (as CI does), the server runs as the ``postgres`` user
through ``runuser``. Each test gets a database of its own, made from a template
that already holds the schema (``CREATE DATABASE ... TEMPLATE``, a file copy).

Only when no PostgreSQL binaries are installed do the PostgreSQL tests skip,
with the reason printed; a server that is installed but fails to start is an
error, unless INTELPACT_TEST_PG_URL names a server to use instead (e.g. the
machine's own service on 5432).
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg

from helpers import free_port

NO_BINARIES = ("PostgreSQL tests skipped: no PostgreSQL server binaries (initdb, pg_ctl) "
               "found on PATH, in `pg_config --bindir` or /usr/lib/postgresql/*/bin; "
               "install them (apt-get install postgresql) to run the tests on PostgreSQL too")


def bindir() -> Path | None:
    """Where initdb and pg_ctl live, or None. INTELPACT_TEST_PG_BINDIR chooses
    the folder (a server version, say); it is then the only one looked at."""
    chosen = os.environ.get("INTELPACT_TEST_PG_BINDIR")
    if chosen:
        folder = Path(chosen)
        return folder if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file() \
            else None
    candidates: list[Path] = []
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        candidates.append(Path(out))
    except (OSError, subprocess.SubprocessError):
        pass
    candidates += sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")),
                         key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                         reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


class Cluster:
    """A running server and a template database with the current schema."""

    def __init__(self) -> None:
        self.url = ""
        self.root: Path | None = None
        self.port = 0
        self.options = ""
        self.cleanups: list[Callable[[], object]] = []  # run once the server has stopped
        self.bin: Path | None = None
        self.user: str | None = None  # the OS user the server runs as, when not us
        self._template: str | None = None
        self._lock = threading.Lock()

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self.bin is not None
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self, *, prepare: Callable[[Cluster], None] | None = None,
              initdb: Sequence[str] = (), settings: str = "") -> None:
        """initdb and start. ``prepare`` runs after the cluster's folder exists and
        before initdb (to mount a small filesystem in it, say); ``initdb`` are more
        arguments for initdb (``--waldir={root}/wal/pg_wal``: ``{root}`` is the
        folder), ``settings`` more server options (``-c name=value ...``)."""
        folder = bindir()
        if folder is None:
            raise FileNotFoundError(NO_BINARIES)
        self.bin = folder
        self.root = Path(tempfile.mkdtemp(prefix="intelpact-pg-"))
        if os.geteuid() == 0:  # the server refuses to run as root
            self.user = "postgres"
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run "
                                   "the test server as") from None
            self.give(self.root)
        if prepare is not None:
            prepare(self)
        data = self.root / "data"
        done = self._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres",
                         "-E", "UTF8", "--locale=C", "--no-sync",
                         *(arg.replace("{root}", str(self.root)) for arg in initdb))
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
        self.port = port = free_port()
        # fsync off: a test server need not survive a power cut (the store still asks
        # for synchronous_commit, which is what a real server honours).
        self.options = (f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB"
                        + (f" {settings}" if settings else ""))
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self.restart(first=True)
        atexit.register(self.stop)

    def restart(self, *, first: bool = False) -> None:
        """Start the server (again, after it stopped or crashed) and wait until it
        accepts connections."""
        assert self.root is not None
        log = self.root / "server.log"
        done = self._run("pg_ctl", "-D", str(self.root / "data"), "-o", self.options, "-l",
                         str(log), "-w", "-t", "60", "start")
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            what = "start" if first else "restart"
            raise RuntimeError(f"pg_ctl {what} failed: {done.stderr or done.stdout}\n{tail}")

    def running(self) -> bool:
        """Whether the server runs (``pg_ctl status``)."""
        assert self.root is not None
        return self._run("pg_ctl", "-D", str(self.root / "data"), "status").returncode == 0

    def log(self) -> str:
        """The server's log so far."""
        log = self.root / "server.log" if self.root is not None else None
        return log.read_text(errors="replace") if log is not None and log.exists() else ""

    def give(self, path: Path) -> None:
        """Make ``path`` the server's (it runs as ``postgres`` when we are root)."""
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def stop(self) -> None:
        if self.root is None:
            return
        root, self.root = self.root, None
        if self.bin is not None:
            self._run("pg_ctl", "-D", str(root / "data"), "-m", "immediate", "-w", "stop")
        while self.cleanups:  # e.g. unmount what ``prepare`` mounted in the folder
            self.cleanups.pop()()
        shutil.rmtree(root, ignore_errors=True)

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url, autocommit=True)

    def database(self, prefix: str = "t") -> str:
        """A fresh database holding the current schema; its URL."""
        from intelpact.store.postgres import PostgresStore

        with self._lock:
            if self._template is None:
                name = f"intelpact_template_{uuid.uuid4().hex[:8]}"
                with self._admin() as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                PostgresStore(self.url_for(name)).close()  # migrate once
                self._template = name
            name = f"{prefix}_{uuid.uuid4().hex[:12]}"
            with self._admin() as conn:
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"')
        return self.url_for(name)

    def database_in(self, tablespace: str, prefix: str = "t") -> str:
        """A fresh database whose tables and indexes (not its catalogs) are made in
        ``tablespace``, with the current schema; its URL."""
        from intelpact.store.postgres import PostgresStore

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
            conn.execute(f'ALTER DATABASE "{name}" SET default_tablespace = "{tablespace}"')
        PostgresStore(self.url_for(name)).close()  # migrate: every table in the tablespace
        return self.url_for(name)

    def copy(self, url: str) -> str:
        """A new database made from the one at ``url`` (none connected to it); its URL."""
        source = url.rsplit("/", 1)[1]
        name = f"{source.split('_')[0]}_{uuid.uuid4().hex[:12]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        return self.url_for(name)

    def url_for(self, name: str) -> str:
        return self.url.rsplit("/", 1)[0] + "/" + name


_cluster: Cluster | None = None
_failure: BaseException | None = None
_guard = threading.Lock()


def cluster() -> Cluster:
    """The session's server, started on first use. Raises FileNotFoundError (with
    NO_BINARIES) when PostgreSQL is not installed, RuntimeError when it fails."""
    global _cluster, _failure
    with _guard:
        if _cluster is not None:
            return _cluster
        if _failure is not None:
            raise _failure
        made = Cluster()
        try:
            made.start()
        except BaseException as exc:
            made.stop()
            fallback = os.environ.get("INTELPACT_TEST_PG_URL")
            if fallback and not isinstance(exc, FileNotFoundError):
                made = Cluster()
                made.url = fallback
            else:
                _failure = exc
                raise
        _cluster = made
        return made


def database_url(prefix: str = "t") -> str:
    """A fresh database for one test (skipping the test if PostgreSQL is not installed)."""
    import pytest

    try:
        server = cluster()
    except FileNotFoundError as exc:
        print(f"\n{exc}")
        pytest.skip(str(exc))
    return server.database(prefix)


def copy_database(url: str) -> str:
    """A copy of the session server's database at ``url`` (none connected to it)."""
    return cluster().copy(url)


@contextmanager
def own_cluster(*, prepare: Callable[[Cluster], None] | None = None,
                initdb: Sequence[str] = (), settings: str = "") -> Iterator[Cluster]:
    """A server of the test's own (not the session's: a test that fills its disk or
    crashes it), stopped and removed when the test ends, whatever happens. Skips the
    test, printing why, when PostgreSQL is not installed. See Cluster.start."""
    import pytest

    made = Cluster()
    try:
        try:
            made.start(prepare=prepare, initdb=initdb, settings=settings)
        except FileNotFoundError as exc:
            print(f"\n{exc}")
            pytest.skip(str(exc))
        yield made
    finally:
        made.stop()
