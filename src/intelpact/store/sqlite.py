"""The embedded store: one SQLite file in WAL mode, durable commits.

Each thread gets its own connection. Writes take SQLite's write lock with
``BEGIN IMMEDIATE``, so ``seq`` and ``date_added`` increase together even with
several processes on one file. ``synchronous=FULL`` makes a commit durable
before it returns: a 202 means the objects are on disk.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import functools
import heapq
import itertools
import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from importlib import resources
from pathlib import Path
from types import EllipsisType
from typing import Any, TypeVar

from ..crypto.eventmacs import EventMacs
from ..crypto.merkle import Coord, Tree, blocks, extend, fold, leaf_hash
from ..model.labels import Label
from .base import (
    APPENDING,
    MAX_INTEGER,
    SERVE_LOCK_SUFFIX,
    SERVING_HINT,
    SHORT_TEXT,
    SHORT_TEXT_ROWS,
    AddResult,
    AuditError,
    AuditEvent,
    AuditFilter,
    AuditRecord,
    BadCursor,
    Checkpoint,
    Collection,
    CompromiseMessage,
    CompromiseRecord,
    ConsentRecord,
    Dissemination,
    HeldCheck,
    HeldCheckpoints,
    KeptEvent,
    MarkingConflict,
    NewObject,
    Notice,
    Onward,
    Page,
    PartnerCheckpoint,
    PeerRecord,
    PersonRecord,
    Purged,
    Purging,
    Query,
    RecallRecord,
    ReclassifiedMeanwhile,
    RotationCheck,
    Sealer,
    SessionRecord,
    Signer,
    StatusRecord,
    Store,
    StoredObject,
    StoreError,
    StoreFull,
    cited_markings,
    contains_pattern,
    event_object_ids,
    filed_under,
    fold_text,
    label_from_key,
    label_key,
    marking_differs,
    parse_timestamp,
    refuse_newer_schema,
    schema_read,
    serving_refusal,
    timestamp,
    utc_now,
)

# What SQLite says when a file cannot grow: SQLITE_FULL (no space, ENOSPC), and the
# write or truncate errors a file size limit gives (EFBIG: RLIMIT_FSIZE, some quotas).
_FULL = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR_WRITE,
                   sqlite3.SQLITE_IOERR_TRUNCATE})
_T = TypeVar("_T")
UNDECODABLE = "Could not decode to UTF-8"  # sqlite3, of a text value that is not UTF-8
# The search index's text of a row: its name and description, each only if no granular
# marking selects it (0017_search_unmarked.sql, which holds the same expression). A
# marked portion may be withheld from a reader, and a row the index found on withheld
# text, dropped by the node, would change the page: the text searched must be text every
# reader of the row is served (docs/console.md).
_MARKED = ("EXISTS (SELECT 1 FROM json_each(body, '$.granular_markings') g, "
           "json_each(g.value, '$.selectors') s WHERE s.value = '{p}' OR "
           "s.value LIKE '{p}.%')")
# It is folded by fold_text (the SQL function of that name: _fold_sql), as the query is
# (0040_search_folded.sql).
_TEXT = ("fold_text(CAST(CASE WHEN json_valid(body) THEN "
         + " || char(10) || ".join(
             f"CASE WHEN has_portions AND {_MARKED.format(p=p)} THEN '' "
             f"ELSE coalesce(json_extract(body, '$.{p}'), '') END"
             for p in ("name", "description"))
         + " ELSE '' END AS BLOB))")
# The properties whose granular-marked text the search finds for a reader who may read its
# label (0020_portion_search.sql): columns of objects_portion_text, and `{p}_label` in
# object_portions.
PORTIONS = ("name", "description")
TEXT_INDEX_BATCH = 1000  # rows per indexing statement: about 45 ms under the write lock
MAX_ATTEMPTS = 20  # an entry a partner keeps refusing stops being pushed (pull still offers it)
_RETIRE_BATCH = 50_000  # events integrated per statement in a key rotation's transaction
KIND_PAGE = 1_000  # partner events filed under no kind, read at a time for a search by kind
_OBJECT_COLUMNS = ("seq, collection_id, object_id, object_type, spec_version, version, "
                   "date_added, label_id, banner_id, originator, has_portions, body, body_hash")


def _fold_sql(value: Any) -> Any:
    """fold_text as SQL's `fold_text(x)`, which the search index's triggers and writes
    call (0040_search_folded.sql) with the text CAST AS BLOB: text folded, any other value
    as it is. sqlite3 cannot hand a function text that is not UTF-8 (a store damaged, or
    written to by something else): the statement, and with it the indexer, would fail at
    that row for good. As bytes, such a value is indexed as it is stored, and the read
    that meets the row says what is wrong (``damage``)."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return fold_text(value) if isinstance(value, str) else value


class _Busy(Exception):
    """Another writer holds the store's write lock (raised only when asked not to wait)."""


_OPEN_HINT = ("check database in node.toml: a SQLite file (relative to the node directory) "
              "in a directory that exists and this user may write, or a postgresql:// URL")


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) for every migration shipped, in order."""
    folder = resources.files("intelpact.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def _create_private(path: str) -> None:
    """Make a new database file readable and writable by this user alone, whatever the
    umask: SQLite gives its write-ahead log and shared-memory files the database's mode.
    A file that exists is left as it is (an operator may have chosen its mode)."""
    with suppress(OSError):  # there already; or not makeable: SQLite says why
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))


class SQLiteStore(Store):
    text_index_apart = True  # objects_text, written by index_text (migration 0014)
    reads_local = True

    def __init__(self, path: str | Path, *, migrate: bool = True,
                 serving: bool = False, readonly: bool = False) -> None:
        """``migrate`` False: a schema older than the code's is refused (schema_behind),
        not migrated, and a database that does not exist is not made. ``serving``: hold
        the serve lock shared until close() (a `serve` process: SERVE_LOCK_SUFFIX).
        ``readonly``: opened with SQLite's mode=ro (a read-only file, directory or mount
        is read), not migrated, and no write, nor the writers' lock file, is made."""
        self.path = str(path)
        self.readonly = readonly
        migrate = migrate and not readonly
        self._local = threading.local()
        # every connection opened, by the thread it belongs to (closed at close())
        self._all: dict[threading.Thread, sqlite3.Connection] = {}
        self._lock = threading.Lock()
        # Writers queue where the one finishing wakes the next, rather than in SQLite's
        # busy handler, which polls with growing sleeps (1, 2, 5, 10 ms…): a read's audit
        # append that found the integrator (or another worker) writing waited those out.
        # This process's threads queue on a lock, the processes (`serve --workers N`, a
        # command beside the server) on an flock of a file beside the database.
        self._writer = threading.RLock()
        self._writers_fd: int | None = None
        self._serve_fd: int | None = None  # the serve lock's file, while held
        self._labels: dict[int, Label] = {}
        self._label_ids: dict[str, int] = {}
        try:
            self.schema_version = self._migrate() if migrate else self._unmigrated()
            if serving:
                self._hold_serving()
            elif self._serve_fd is not None:  # a migration's, done
                os.close(self._serve_fd)
                self._serve_fd = None
            self._load_labels()
        except BaseException:
            self.close()
            raise

    def _serve_lock(self, how: int) -> bool:
        """flock the serve lock's file (beside the database, apart from the writers'
        lock: a serve holds this one for its life); False if not had at once."""
        if self._serve_fd is None:
            self._serve_fd = os.open(self.path + SERVE_LOCK_SUFFIX, os.O_RDWR | os.O_CREAT,
                                     0o600)
        try:
            fcntl.flock(self._serve_fd, how)
        except BlockingIOError:
            return False
        return True

    def _hold_serving(self) -> None:
        """Hold the serve lock shared until close(): a newer intelpact's migration then
        refuses to change the schema under this process. Waits while a migration holds
        it exclusive; then the schema is read again (that one may have made it newer)."""
        self._serve_lock(fcntl.LOCK_SH)  # from the migration's exclusive, if it took it
        self.schema_version = self._unmigrated()

    def _scrub(self) -> None:
        """After a destruction: copy the write-ahead log into the database and truncate it,
        so the destroyed text is in no frame of it either (secure_delete zeroed it in
        the pages written). Best effort: a reader still on an older snapshot keeps those
        frames until the next checkpoint, which SQLite runs as the log grows."""
        self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    # -- connections -------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self.readonly:  # mode=ro: SQLite refuses every write on it
                conn = self._read_only()
            else:
                conn = sqlite3.connect(self.path, isolation_level=None,
                                       check_same_thread=False, timeout=30.0)
                conn.execute("PRAGMA journal_mode=WAL")  # a write, the first time
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            # what is deleted is overwritten with zeros, not left in free space: a recall
            # or a delete destroys the text (docs/controls.md)
            conn.execute("PRAGMA secure_delete=ON")
            conn.create_function("fold_text", 1, _fold_sql, deterministic=True)
            self._local.conn = conn
            with self._lock:
                self._close_orphans()
                self._all[threading.current_thread()] = conn
        return conn

    def _read_only(self) -> sqlite3.Connection:
        """A connection that cannot write (SQLite's mode=ro). On a read-only medium (a
        read-only mount; a file and directory this user may not write) SQLite cannot
        make the shared-memory file a write-ahead-logged database needs, and refuses
        to open it: there, if no write-ahead log is beside it (a copy or a backup of a
        node closed, all of it in the file), it is read as immutable (no locks, no log
        looked for). A log that is there would be left out so: refused, as SQLite
        said."""
        uri = Path(self.path).absolute().as_uri()
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False, timeout=30.0)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            wal = Path(self.path + "-wal")
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_CANTOPEN or (
                    wal.exists() and wal.stat().st_size):
                raise
        return sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None,
                               check_same_thread=False, timeout=30.0)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        conn = self._conn()
        if conn.in_transaction:  # within a snapshot (or a write) already
            yield
            return
        conn.execute("BEGIN")  # deferred: the snapshot is taken by its first read, here
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def _judged(self, read: Callable[[sqlite3.Connection], _T]) -> _T:
        """``read`` on this thread's connection, for the tables `audit verify` and
        `audit show` must judge whatever they hold. sqlite3 cannot return a text value
        that is not UTF-8 (written there by something other than intelpact): it stops
        the whole read. Then ``read`` runs again with such values as their bytes, which
        the caller names as not text (and hashes as stored)."""
        conn = self._conn()
        try:
            return read(conn)
        except sqlite3.OperationalError as exc:
            if not str(exc).startswith(UNDECODABLE):
                raise
        factory, conn.text_factory = conn.text_factory, _text_or_bytes
        try:
            return read(conn)
        finally:
            conn.text_factory = factory

    def _close_orphans(self) -> None:
        """Close the connections of threads that have ended. The server's worker threads
        come and go (anyio retires a thread idle for 10 s); each new one opens its own
        connection, and one kept for a dead thread is a page cache never given back."""
        for thread in [t for t in self._all if not t.is_alive()]:
            self._all.pop(thread).close()

    @contextmanager
    def _writers(self, wait: bool) -> Iterator[None]:
        """Wait for the other writers: this process's (a lock), then the other processes'
        (an flock: the kernel wakes the next). Unless ``wait``, raise _Busy at once if one
        is writing."""
        self._refuse_write()  # read-only: not even the lock's file is made
        if not self._writer.acquire(blocking=wait):
            raise _Busy
        try:
            if self._writers_fd is None:
                self._writers_fd = os.open(self.path + ".writers",
                                           os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._writers_fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise _Busy from None
            try:
                yield
            finally:
                fcntl.flock(self._writers_fd, fcntl.LOCK_UN)
        finally:
            self._writer.release()

    @contextmanager
    def _write(self, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction (unless ``wait``, _Busy if another writer holds the lock)."""
        conn = self._conn()
        with self._writers(wait), self._appending():
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite may have rolled back already (a full disk, an I/O error); a
                    # failed COMMIT may leave the transaction open: never leave it so
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) in _FULL:
                    raise StoreFull(f"{self.path}: the store cannot grow ({exc}): the disk, "
                                    "its quota or the file size limit is full",
                                    hint=StoreFull.HINT) from None
                raise

    # -- the security officer's desk: bounded, newest first ----------------------------
    def latest_disseminations(self, limit: int, offset: int = 0) -> list[Dissemination]:
        return [Dissemination(*r) for r in self._conn().execute(
            "SELECT party, object_id, version, body_hash, released, receipt_at, receipt_id, via "
            "FROM disseminations ORDER BY released DESC, party DESC, object_id DESC "
            "LIMIT ? OFFSET ?", (limit, offset))]

    def latest_recalls(self, limit: int, offset: int = 0) -> list[RecallRecord]:
        return [RecallRecord(*r) for r in self._conn().execute(
            f"SELECT {_RECALL_COLUMNS} FROM recalls ORDER BY issued DESC, object_id DESC, "  # noqa: S608
            "party DESC LIMIT ? OFFSET ?",
            (limit, offset))]

    def latest_compromise_reports(self, limit: int, offset: int = 0
                                  ) -> list[CompromiseRecord]:
        return [CompromiseRecord(*r) for r in self._conn().execute(
            f"SELECT {_COMPROMISE_COLUMNS} FROM compromise_reports "  # noqa: S608
            "ORDER BY filed DESC, report_id DESC LIMIT ? OFFSET ?", (limit, offset))]

    def latest_consents(self, limit: int, offset: int = 0) -> list[ConsentRecord]:
        return [_consent(r) for r in self._conn().execute(
            f"SELECT {_CONSENT_COLUMNS} FROM consents "  # noqa: S608
            "ORDER BY made DESC, request_id DESC LIMIT ? OFFSET ?", (limit, offset))]

    def close(self) -> None:
        with self._lock:
            for conn in self._all.values():
                conn.close()
            self._all.clear()
        self._local = threading.local()
        with self._writer:
            if self._writers_fd is not None:
                os.close(self._writers_fd)
                self._writers_fd = None
            if self._serve_fd is not None:  # the serve lock, released
                os.close(self._serve_fd)
                self._serve_fd = None

    def _unmigrated(self) -> int:
        """The schema's version, read only: refused if older than the code's."""
        if not Path(self.path).is_file():  # sqlite3 would make one: not without migrating
            raise StoreError(f"{self.path}: cannot open the database: unable to open "
                             "database file", hint=_OPEN_HINT)
        try:
            done = [row[0] for row in self._conn().execute(
                "SELECT version FROM schema_migrations").fetchall()]
        except sqlite3.OperationalError as exc:
            if damage(exc) is not None:
                raise
            raise StoreError(f"{self.path}: cannot read the database's schema version: {exc}",
                             hint="check database in node.toml") from None
        return schema_read(self.path, done, [version for version, _ in migrations()])

    def _migrate(self) -> int:
        try:
            _create_private(self.path)
            conn = self._conn()
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                         "(version INTEGER PRIMARY KEY, applied TEXT NOT NULL)")
        except sqlite3.OperationalError as exc:  # no such directory, a directory, read-only
            if damage(exc) is not None:
                raise
            raise StoreError(f"{self.path}: cannot open the database: {exc}",
                             hint=_OPEN_HINT) from None
        with self._write() as c:
            done = {row[0] for row in c.execute("SELECT version FROM schema_migrations")}
            current = max(done, default=0)
            shipped = migrations()
            newest = shipped[-1][0] if shipped else 0
            refuse_newer_schema(self.path, current, newest)
            if {version for version, _ in shipped} - done \
                    and not self._serve_lock(fcntl.LOCK_EX | fcntl.LOCK_NB):
                raise StoreError(serving_refusal(self.path),
                                 hint=f"{SERVING_HINT} (those holding "
                                 f"{self.path}{SERVE_LOCK_SUFFIX})")
            for version, sql in shipped:
                if version in done:
                    continue
                for statement in _statements(sql):
                    c.execute(statement)
                c.execute("INSERT INTO schema_migrations VALUES (?, ?)",
                          (version, timestamp(utc_now())))
                current = max(current, version)  # a gap filled keeps the newest
        return current

    # -- labels -----------------------------------------------------------------------
    def _load_labels(self) -> None:
        """Learn labels added since the last look (by this or another process)."""
        with self._lock:
            newest = max(self._labels, default=0)
        rows = self._conn().execute("SELECT label_id, label_key FROM labels WHERE label_id > ?",
                                    (newest,)).fetchall()
        with self._lock:
            for label_id, key in rows:
                self._labels[label_id] = label_from_key(key)
                self._label_ids[key] = label_id

    def labels(self) -> dict[int, Label]:
        self._load_labels()
        with self._lock:
            return dict(self._labels)

    def _label_id(self, conn: sqlite3.Connection, label: Label,
                  pending: dict[str, int]) -> int:
        """The id of ``label``, inserting it; ``pending`` collects ids made in this
        transaction, learnt only once it commits."""
        key = label_key(label)
        found = self._label_ids.get(key) or pending.get(key)
        if found is not None:
            return found
        row = conn.execute("SELECT label_id FROM labels WHERE label_key = ?", (key,)).fetchone()
        if row is None:
            cur = conn.execute(
                "INSERT INTO labels (label_key, agreement, rank, originator, rel_to, caveats, "
                "communities, sources) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, label.agreement, label.rank, label.originator,
                 _commas(label.rel_to) if label.rel_to is not None else None,
                 _commas(label.caveats),
                 json.dumps(sorted(sorted(c) for c in label.communities)),
                 _commas(label.sources)))
            label_id = int(cur.lastrowid or 0)
        else:
            label_id = int(row[0])
        pending[key] = label_id
        return label_id

    # -- collections --------------------------------------------------------------------
    def add_collection(self, collection: Collection,
                       audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            c.execute("INSERT INTO collections (collection_id, title, description, alias, "
                      "created) VALUES (?, ?, ?, ?, ?)",
                      (collection.collection_id, collection.title, collection.description,
                       collection.alias, timestamp(utc_now())))
            _append_audit(c, audit)

    def collections(self) -> list[Collection]:
        rows = self._conn().execute("SELECT collection_id, title, description, alias FROM "
                                    "collections ORDER BY created, collection_id")
        return [Collection(*row) for row in rows]

    def collection(self, collection_id: str) -> Collection | None:
        row = self._conn().execute("SELECT collection_id, title, description, alias FROM "
                                   "collections WHERE collection_id = ?",
                                   (collection_id,)).fetchone()
        return Collection(*row) if row else None

    # -- objects ---------------------------------------------------------------------
    def add_objects(self, collection_id: str, objects: Sequence[NewObject],
                    markings: Iterable[tuple[str, str]] = (),
                    release: Callable[[NewObject], Iterable[str]] | None = None,
                    audit: Callable[[Sequence[AddResult]], Sequence[AuditEvent]] | None = None,
                    reclassified: Mapping[str, Iterable[dt.datetime]] | None = None
                    ) -> list[AddResult]:
        """Store ``objects`` in one transaction, in order.

        Versioned objects go in by runs, up to 500 rows in one multi-row ``INSERT``
        (:data:`_RUN_SIZES`): the search index's trigger (0011_search.sql) feeds FTS5, which
        writes its pending terms to disk at the end of every statement that may need a
        statement rollback, so one ``INSERT`` per object cost a segment (and its
        merges) per object, most of the store's CPU (docs/performance.md). Rows,
        ``seq``, ``date_added``, outbox entries and results are what one ``INSERT`` per
        object gives."""
        results: list[AddResult] = []
        pending: dict[str, int] = {}
        queued: set[tuple[str, str]] = set()  # (party, marking-definition) queued already
        with self._write() as c:
            _labels_current(c, self.labelled_under)
            if c.execute("SELECT 1 FROM collections WHERE collection_id = ?",
                         (collection_id,)).fetchone() is None:
                raise StoreError(f"no collection {collection_id}")
            _add_markings(c, "?", markings)
            _reclassified_meanwhile(c, "?", objects, reclassified)
            # The latest date_added of all: per collection, each the last entry of
            # objects_by_added (a plain max(date_added) scans that whole index, ~45 ms
            # at 300,000 objects, for every batch).
            last = c.execute("SELECT max((SELECT max(o.date_added) FROM objects o WHERE "
                             "o.collection_id = c.collection_id)) FROM collections c"
                             ).fetchone()[0]
            clock = _Clock(last)
            run: list[tuple[NewObject, str, str, int, int]] = []
            recalled = _recalled_here(c, "?", objects)
            for obj in objects:
                added = clock.next()
                if (obj.object_id, obj.originator) in recalled:
                    self._insert_run(c, collection_id, run, release, results, queued)
                    run = []
                    results.append(_recall_refused(obj))
                    continue
                if obj.version is None:  # no created/modified (an SCO): same body, same object
                    self._insert_run(c, collection_id, run, release, results, queued)
                    run = []
                    same = c.execute("SELECT version FROM objects WHERE collection_id = ? "
                                     "AND object_id = ? AND body_hash = ?",
                                     (collection_id, obj.object_id, obj.body_hash)).fetchone()
                    if same is not None:
                        results.append(AddResult(obj.object_id, same[0], "exists",
                                                 "already stored (identical)"))
                        continue
                label_id = self._label_id(c, obj.label, pending)
                banner_id = self._label_id(c, obj.banner, pending)
                run.append((obj, obj.version or added, added, label_id, banner_id))
                if len(run) >= _RUN_SIZES[0] or obj.version is None:
                    self._insert_run(c, collection_id, run, release, results, queued)
                    run = []
            self._insert_run(c, collection_id, run, release, results, queued)
            if audit is not None:
                _append_audit(c, audit(results))
        self._load_labels()
        return results

    @staticmethod
    def _insert_run(c: sqlite3.Connection, collection_id: str,
                    run: Sequence[tuple[NewObject, str, str, int, int]],
                    release: Callable[[NewObject], Iterable[str]] | None,
                    results: list[AddResult], queued: set[tuple[str, str]]) -> None:
        """Insert ``run`` (object, version, date_added, label id, banner id), in order, with
        a few multi-row statements (:data:`_RUN_SIZES`); a row whose (collection, id,
        version) is stored already, or earlier in the run, is not inserted and gets the
        result of comparing bodies. ``queued``: the (party, marking-definition) pairs this
        transaction queued already (:func:`_queue_cited`)."""
        if not run:
            return
        # The rows inserted are those after the last seq before (the write lock is held;
        # no RETURNING, which needs SQLite 3.35), and date_added is unique per row of the
        # run (the clock): it says which rows went in.
        before = c.execute("SELECT max(seq) FROM objects").fetchone()[0] or 0
        most = c.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(_INSERT_COLUMNS)
        at = 0
        while at < len(run):
            size = next(n for n in _RUN_SIZES if n <= len(run) - at and n <= max(most, 1))
            params: list[Any] = []
            for obj, version, added, label_id, banner_id in run[at:at + size]:
                params += (collection_id, obj.object_id, obj.object_type, obj.spec_version,
                           version, added, label_id, banner_id, obj.originator,
                           int(obj.has_portions), obj.body, obj.body_hash, obj.published_by,
                           obj.received_from)
            c.execute(_insert_sql(size), params)
            at += size
        seqs = dict((added, seq) for seq, added in c.execute(
            "SELECT seq, date_added FROM objects WHERE seq > ?", (before,)))
        _supersede_added(c, "?", list(seqs.values()))
        held = _collections_held(c) if release is not None and any(
            obj.marking_refs for obj, *_ in run) else []
        _queue_portions(c, "?", [seqs[added] for obj, _, added, _, _ in run
                                 if obj.has_portions and added in seqs])
        for obj, version, added, _, _ in run:
            seq = seqs.get(added)
            if seq is None:  # this version is stored already: the same body?
                row = c.execute("SELECT body_hash FROM objects WHERE collection_id = ? "
                                "AND object_id = ? AND version = ?",
                                (collection_id, obj.object_id, version)).fetchone()
                results.append(_existing(obj, version, str(row[0]) if row else ""))
                continue
            if release is not None:
                for party in release(obj):
                    _queue_cited(c, "?", party, obj, added, queued, held)
                    c.execute("INSERT INTO outbox (party, seq, enqueued) VALUES (?, ?, ?) "
                              "ON CONFLICT (party, seq) DO NOTHING", (party, seq, added))
            results.append(AddResult(obj.object_id, version, "added", "stored"))

    def query(self, collection_id: str, readable: Sequence[int], query: Query) -> Page:
        if query.text:  # folded as the index is; it misses nothing stored before the search
            query = dataclasses.replace(query, text=fold_text(query.text))
            while self.index_text(TEXT_INDEX_BATCH):
                pass
        conn = self._conn()
        if not query.text:
            rows = conn.execute(*_select(collection_id, readable, query)).fetchall()
        else:  # the unmarked text, then each portion where its label is readable (0020)
            began = not conn.in_transaction
            if began:
                conn.execute("BEGIN")  # one snapshot for the three walks
            try:
                floor = None  # short text: its window, placed once for the three walks
                if len(query.text) < SHORT_TEXT:
                    floor = int(conn.execute(*_window(collection_id, readable)).fetchone()[0])
                rows = _merged([conn.execute(*_select(collection_id, readable, query, part,
                                                      floor)).fetchall()
                                for part in (None, *PORTIONS)], query)
            finally:
                if began and conn.in_transaction:
                    conn.execute("COMMIT")
        more = len(rows) > query.limit
        rows = rows[:query.limit]
        objects = [_stored(r) for r in rows]
        next_cursor = f"{objects[-1].seq}.{query.fingerprint()}" if more and objects else None
        return Page(objects, more, next_cursor)

    def index_text(self, limit: int = TEXT_INDEX_BATCH) -> int:
        """The search's trigram index (0011_search.sql) is written here, one statement per
        batch of rows above the mark (0014_search_indexer.sql), not by a trigger in the
        objects' transaction: FTS5 costs about as much per object as everything else the
        store does, and here it runs off the request's thread (docs/console.md)."""
        conn = self._conn()
        mark, last = conn.execute(
            "SELECT seq, (SELECT max(seq) FROM objects) FROM objects_text_indexed").fetchone()
        if last is None or last <= mark:
            return 0  # current: no write lock taken
        with self._write() as c:
            (mark,) = c.execute("SELECT seq FROM objects_text_indexed").fetchone()
            (upto,) = c.execute("SELECT max(seq) FROM (SELECT seq FROM objects WHERE seq > ? "
                                "ORDER BY seq LIMIT ?)", (mark, limit)).fetchone()
            if upto is None:
                return 0
            added = c.execute(f"INSERT INTO objects_text (rowid, text) SELECT seq, {_TEXT} "  # noqa: S608
                              "FROM objects WHERE seq > ? AND seq <= ?", (mark, upto)).rowcount
            c.execute("UPDATE objects_text_indexed SET seq = ?", (upto,))
        return int(added)

    def portions_pending(self, limit: int = 1000) -> list[StoredObject]:
        return [_stored(r) for r in self._conn().execute(*_pending_portions("?", limit))]

    def label_portions(self, gates: Mapping[int, tuple[Label | None, Label | None]]) -> int:
        pending: dict[str, int] = {}
        with self._write() as c:
            _labels_current(c, self.labelled_under)
            kept = _label_portions(c, "?", gates,
                                   lambda label: self._label_id(c, label, pending))
        self._load_labels()
        return kept

    def labels_agreement(self) -> str | None:
        row = self._conn().execute("SELECT content_hash FROM labels_agreement WHERE "
                                   "relabelling IS NULL").fetchone()
        return row[0] if row else None

    def begin_relabel(self, content_hash: str) -> tuple[bool, str | None]:
        with self._write() as c:
            return _begin_relabel(c, "?", content_hash)

    def versions_after(self, seq: int, limit: int) -> list[StoredObject]:
        return [_stored(r) for r in self._conn().execute(*_versions_after("?", seq, limit))]

    def relabel_versions(self, labels: Sequence[tuple[StoredObject, Label, Label]],
                         content_hash: str, upto: int,
                         audit: Callable[[], Sequence[AuditEvent]]) -> bool:
        pending: dict[str, int] = {}
        with self._write() as c:
            done = _relabel_versions(c, "?", labels, content_hash, upto, audit,
                                     lambda label: self._label_id(c, label, pending))
        self._load_labels()
        return done

    def delete(self, collection_id: str, readable: Sequence[int], object_id: str,
               versions: tuple[str, ...], spec_versions: tuple[str, ...] = (),
               audit: Callable[[Sequence[StoredObject]], Sequence[AuditEvent]] | None = None,
               keep: Callable[[StoredObject], bool] | None = None) -> int:
        q = Query(ids=(object_id,), versions=versions, spec_versions=spec_versions,
                  limit=1_000_000)
        with self._write() as c:
            sql, params = _select(collection_id, readable, q)
            rows = [row for row in map(_stored, c.execute(sql, params))
                    if keep is None or keep(row)]
            for row in rows:
                c.execute("DELETE FROM objects WHERE seq = ?", (row.seq,))
            _forget_portions(c, "?", [row.seq for row in rows])
            if rows:
                _supersede_again(c, "?", object_id)
                if audit is not None:
                    _append_audit(c, audit(rows))
        if rows:
            self._scrub()
        return len(rows)

    def holds(self, collection_id: str, object_id: str, version: str | None,
              body_hash: str) -> bool:
        if version is None:
            row = self._conn().execute(
                "SELECT 1 FROM objects WHERE collection_id = ? AND object_id = ? AND "
                "body_hash = ? AND recalled IS NULL",
                (collection_id, object_id, body_hash)).fetchone()
        else:
            row = self._conn().execute(
                "SELECT 1 FROM objects WHERE collection_id = ? AND object_id = ? AND "
                "version = ? AND body_hash = ? AND recalled IS NULL",
                (collection_id, object_id, version, body_hash)).fetchone()
        return row is not None

    def markings(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT body FROM markings ORDER BY rowid")]

    def marking(self, marking_id: str) -> str | None:
        row = self._conn().execute("SELECT body FROM markings WHERE marking_id = ?",
                                   (marking_id,)).fetchone()
        return str(row[0]) if row else None

    def count(self, collection_id: str) -> int:
        row = self._conn().execute("SELECT count(*) FROM objects WHERE collection_id = ?",
                                   (collection_id,)).fetchone()
        return int(row[0])

    # -- statuses ---------------------------------------------------------------------
    def save_status(self, status: StatusRecord) -> None:
        with self._write() as c:
            c.execute("INSERT INTO statuses (status_id, collection_id, owner, created, body) "
                      "VALUES (?, ?, ?, ?, ?) ON CONFLICT (status_id) DO UPDATE SET "
                      "body = excluded.body",
                      (status.status_id, status.collection_id, status.owner, status.created,
                       json.dumps(status.body)))

    def status(self, status_id: str) -> StatusRecord | None:
        row = self._conn().execute("SELECT status_id, collection_id, owner, created, body "
                                   "FROM statuses WHERE status_id = ?",
                                   (status_id,)).fetchone()
        if row is None:
            return None
        return StatusRecord(row[0], row[1], row[2], row[3], json.loads(row[4]))

    # -- federation -------------------------------------------------------------------
    def add_peer(self, peer: PeerRecord, audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            _add_peer(c, "?", peer, audit)

    def peers(self) -> list[PeerRecord]:
        return [PeerRecord(*r) for r in self._conn().execute(
            "SELECT party, url, public_key, key_id, tls_cert, tls_fingerprint, card, added "
            "FROM peers ORDER BY party")]

    def enqueue(self, party: str, decide: Callable[[StoredObject], bool],
                object_ids: Sequence[str] | None = None) -> int:
        conn = self._conn()
        rows = (_stored(r) for r in conn.execute(
            *_enqueue_select(object_ids, _in, _collections_held(conn))))
        chosen = _enqueue_order(rows, decide)
        with self._write() as c:
            return _queue(c, "?", party, chosen)

    def _outbox(self, where: str, params: Sequence[Any], key: str = "outbox_id"
                ) -> list[tuple[int, StoredObject]]:
        columns = ", ".join("o." + c.strip() for c in _OBJECT_COLUMNS.split(","))
        rows = self._conn().execute(
            f"SELECT b.{key}, {columns} FROM outbox b JOIN objects o ON o.seq = b.seq "  # noqa: S608
            f"WHERE {where} AND {_NOT_RECALLED} ORDER BY b.{key} LIMIT ?", params).fetchall()
        return [(int(r[0]), _stored(r[1:])) for r in rows]

    def pending(self, party: str, limit: int) -> list[tuple[int, StoredObject]]:
        return self._outbox("b.party = ? AND b.delivered IS NULL AND b.attempts < ?",
                            (party, MAX_ATTEMPTS, limit))

    def released_after(self, party: str, after: int,
                       limit: int) -> list[tuple[int, StoredObject]]:
        return self._outbox("b.party = ? AND b.number > ?", (party, after, limit),
                            "number")

    def mark_delivered(self, party: str, outbox_ids: Sequence[int], when: str,
                       receipt: str, onward: Onward = ((), ())) -> None:
        with self._write() as c:
            _keep_onward(c, "?", onward)
            receipt_id = c.execute("INSERT INTO receipts (party, body, received) VALUES "
                                   "(?, ?, ?)", (party, receipt, when)).lastrowid
            for outbox_id in outbox_ids:
                row = c.execute("SELECT o.object_id, o.version, o.body_hash, b.enqueued FROM "
                                "outbox b JOIN objects o ON o.seq = b.seq WHERE b.outbox_id = ? "
                                "AND b.party = ?", (outbox_id, party)).fetchone()
                if row is None:
                    continue
                c.execute("UPDATE outbox SET delivered = ? WHERE outbox_id = ? AND delivered "
                          "IS NULL", (when, outbox_id))
                c.execute("INSERT INTO disseminations (party, object_id, version, body_hash, "
                          "released, receipt_at, receipt_id) VALUES (?, ?, ?, ?, ?, ?, ?) "
                          "ON CONFLICT (party, object_id, version) DO UPDATE SET receipt_at = "
                          "excluded.receipt_at, receipt_id = excluded.receipt_id",
                          (party, row[0], row[1], row[2], row[3], when, receipt_id))

    def failed_attempt(self, party: str, outbox_ids: Sequence[int]) -> None:
        with self._write() as c:
            for outbox_id in outbox_ids:
                c.execute("UPDATE outbox SET attempts = attempts + 1 WHERE outbox_id = ? AND "
                          "party = ?", (outbox_id, party))

    def record_release(self, party: str, outbox_ids: Sequence[int], when: str,
                       audit: Callable[[Sequence[int]], Sequence[AuditEvent]]) -> list[int]:
        with self._write() as c:
            return _record_release(c, "?", "(SELECT value FROM json_each(?))", party,
                                   json.dumps(list(outbox_ids)), when, audit)

    def add_pulled(self, party: str, objects: Sequence[tuple[str, str, str]], when: str,
                   audit: Callable[[Sequence[tuple[str, str, str]]], Sequence[AuditEvent]],
                   onward: Callable[[Sequence[tuple[str, str, str]]], Onward] | None = None
                   ) -> list[tuple[str, str, str]]:
        with self._write() as c:
            return _add_pulled(c, "?", party, objects, when, audit, onward)

    def disseminations(self, *, object_id: str | None = None,
                       party: str | None = None) -> list[Dissemination]:
        return [Dissemination(*r) for r in self._conn().execute(
            *_disseminations("?", object_id, party))]

    def queued_for(self, object_id: str) -> list[str]:
        return _queued_for(self._conn(), "?", object_id)

    def receipt(self, receipt_id: int) -> str | None:
        row = self._conn().execute("SELECT body FROM receipts WHERE receipt_id = ?",
                                   (receipt_id,)).fetchone()
        return str(row[0]) if row else None

    def pull_cursor(self, party: str) -> int:
        row = self._conn().execute("SELECT cursor FROM pull_cursors WHERE party = ?",
                                   (party,)).fetchone()
        return int(row[0]) if row else 0

    def set_pull_cursor(self, party: str, cursor: int) -> None:
        with self._write() as c:
            c.execute("INSERT INTO pull_cursors (party, cursor) VALUES (?, ?) ON CONFLICT "
                      "(party) DO UPDATE SET cursor = max(cursor, excluded.cursor)",
                      (party, cursor))

    def party_keys(self, party: str) -> dict[str, str]:
        return {r[0]: r[1] for r in self._conn().execute(
            "SELECT key_id, public_key FROM party_keys WHERE party = ?", (party,))}

    def retired_keys(self, party: str) -> dict[str, int]:
        return _retired_keys(self._conn(), "?", party)

    def retire_key(self, party: str, old: tuple[str, str], new: tuple[str, str], when: str,
                   seal: Sealer) -> int:
        with self._write() as c:
            return _retire_key(c, "?", party, old, new, when, seal)

    def accept_rotation(self, party: str, old_key_id: str, peer: PeerRecord,
                        final: tuple[int, bytes, str] | None, judge: RotationCheck) -> bool:
        with self._write() as c:
            return _accept_rotation(c, "?", party, old_key_id, peer, final, judge)

    def undelivered_announcements(self, party: str) -> list[tuple[int, str]]:
        return [(int(r[0]), str(r[1])) for r in self._conn().execute(
            "SELECT a.announcement_id, a.body FROM key_announcements a JOIN key_deliveries d "
            "ON d.announcement_id = a.announcement_id WHERE d.party = ? AND d.delivered IS "
            "NULL ORDER BY a.announcement_id", (party,))]

    def announcement_delivered(self, announcement_id: int, party: str, when: str) -> None:
        with self._write() as c:
            c.execute("UPDATE key_deliveries SET delivered = ? WHERE announcement_id = ? AND "
                      "party = ?", (when, announcement_id, party))

    def add_refusals(self, party: str, refused: Sequence[tuple[str, str]], when: str,
                     audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            _add_refusals(c, "?", party, refused, when, audit)

    def refusals(self) -> list[tuple[str, str, str, str]]:
        return [(r[0], r[1], r[2], r[3]) for r in self._conn().execute(
            "SELECT party, object_id, reason, at FROM refusals ORDER BY refusal_id")]

    # -- audit log --------------------------------------------------------------------------
    def append_audit(self, events: Sequence[AuditEvent], *, wait: bool = True) -> int | None:
        try:
            with self._write(wait) as c:
                return _append_audit(c, events)
        except _Busy:
            return None

    def audit_size(self) -> int:
        row = self._conn().execute("SELECT max(idx) FROM audit_events").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def audit_events(self, start: int, stop: int, limit: int | None = None
                     ) -> list[AuditRecord]:
        return self._judged(lambda c: [AuditRecord(*r) for r in c.execute(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_events WHERE idx >= ? AND idx < ? "  # noqa: S608
            "ORDER BY idx LIMIT ?", (start, stop, -1 if limit is None else limit))])

    def find_audit(self, where: AuditFilter, before: int | None = None
                   ) -> list[AuditRecord]:
        sql, params = _audit_select(where, "?", before=before)
        return self._judged(lambda c: [AuditRecord(*r) for r in c.execute(sql, params)])

    def audit_numbered(self, originator: str, before: int | None = None
                       ) -> tuple[int, int]:
        sql, params = _numbered_select(originator, before, "?")
        return _numbered(self._conn().execute(sql, params).fetchone())

    def latest_audit(self, where: AuditFilter, before: int | None = None
                     ) -> list[AuditRecord]:
        sql, params = _audit_select(where, "?", before=before, newest=True)
        return self._judged(lambda c: [AuditRecord(*r) for r in c.execute(sql, params)])

    def audit_macs_from(self) -> int | None:
        row = self._conn().execute(_MACS_FROM).fetchone()
        return None if row is None else int(row[0])

    def audit_parties(self, kind: str) -> list[str]:
        return [str(r[0]) for r in self._conn().execute(_AUDIT_PARTIES.format(m="?"), (kind,))]

    def audit_integrated(self) -> int:
        row = self._conn().execute("SELECT max(idx) FROM audit_nodes WHERE level = 0 "
                                   "AND typeof(idx) = 'integer'").fetchone()
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def audit_mistyped(self) -> list[str]:
        checks = (  # (an event body of another type: verify_log, which reads each)
            ("audit_nodes", "typeof(level) != 'integer' OR typeof(idx) != 'integer'",
             "a level or index that is not an integer"),
            ("audit_nodes", "typeof(hash) != 'blob' OR length(hash) != 32",
             "a hash that is not 32 bytes"),
            ("audit_refs", "typeof(idx) != 'integer' OR typeof(object_id) != 'text'",
             "an event index that is not an integer or an object id that is not text"),
            ("audit_checkpoints", "typeof(size) != 'integer' OR typeof(note) != 'text'",
             "a size that is not an integer or a note that is not text"))
        problems = []
        for table, where, what in checks:
            n = self._conn().execute(f"SELECT count(*) FROM {table} WHERE {where}"  # noqa: S608
                                     ).fetchone()[0]
            if n:
                problems.append(f"{table} holds {n} row(s) with {what}: the database was "
                                "written to by something other than intelpact")
        return problems

    def audit_refs(self, start: int, stop: int | None = None) -> list[tuple[str, int]]:
        sql, params = _refs_select(start, stop, "?")
        return self._judged(lambda c: [(r[0], int(r[1])) for r in c.execute(sql, params)])

    def audit_nodes(self, coords: Sequence[Coord]) -> dict[Coord, bytes]:
        return _nodes(self._conn(), coords)

    def integrate_audit(self, limit: int, sign: Signer | None = None,
                        refs: int | None = None, forged: list[int] | None = None
                        ) -> tuple[int, bytes]:
        def integrate(_: sqlite3.Connection) -> tuple[int, bytes]:
            with self._write() as c:  # this thread's connection, which _judged sets
                return _integrate(c, "?", limit, sign, refs, self.event_macs, forged)
        return self._judged(integrate)

    def checkpoints(self) -> list[Checkpoint]:
        return self._judged(lambda c: [Checkpoint(*r) for r in c.execute(
            "SELECT size, note, signed FROM audit_checkpoints ORDER BY size")])

    def latest_checkpoint(self) -> Checkpoint | None:
        row = self._judged(lambda c: c.execute("SELECT size, note, signed FROM "
                                               "audit_checkpoints ORDER BY size DESC "
                                               "LIMIT 1").fetchone())
        return Checkpoint(*row) if row else None

    def add_partner_checkpoint(self, party: str, size: int, root: bytes, note: str,
                               when: str, check: HeldCheck | None = None) -> bool:
        with self._write() as c:
            return _add_partner_checkpoint(c, "?", party, size, root, note, when, check)

    def partner_checkpoints(self, party: str, after: int = -1, limit: int | None = None
                            ) -> list[PartnerCheckpoint]:
        return self._judged(lambda c: _partner_checkpoints(c, "?", party, after,
                                                           -1 if limit is None else limit))

    def partner_parties(self) -> list[str]:
        return [r[0] for r in self._conn().execute(_PARTNER_PARTIES)]

    def partner_checkpoint_at(self, party: str, size: int) -> PartnerCheckpoint | None:
        return _Held(self._conn(), "?", party).at(size)

    def largest_partner_checkpoint(self, party: str) -> PartnerCheckpoint | None:
        return _Held(self._conn(), "?", party).largest()

    def count_partner_checkpoints(self, party: str) -> int:
        return _count_partner_checkpoints(self._conn(), "?", party)

    def partner_audit_watch(self, party: str) -> tuple[int, int, str] | None:
        row = self._conn().execute(_WATCH_SELECT.format(m="?"), (party,)).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), str(row[2]))

    def set_partner_audit_cursor(self, party: str, after: int, expect: int, when: str,
                                 events: Sequence[KeptEvent] = (),
                                 audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _keep_partner_events(c, "?", party, after, expect, when, events, audit)

    def partner_events(self, party: str, *, after: int = -1, before: int | None = None,
                       limit: int | None = None, objects: Sequence[str] = (),
                       kinds: Sequence[str] = ()) -> list[KeptEvent]:
        return self._judged(lambda c: _partner_events(c, "?", party, after, before, limit,
                                                      objects, kinds))

    def partner_event_refs(self, party: str, start: int, stop: int | None = None
                           ) -> list[tuple[str, int]]:
        sql, params = _partner_refs_select(party, start, stop, "?")
        return self._judged(lambda c: [(r[0], int(r[1])) for r in c.execute(sql, params)])

    def numbered_partner_events(self, party: str, before: int) -> int:
        return _numbered_kept(self._conn(), "?", party, before)

    def raise_alert(self, kind: str, party: str | None, detail: str, when: str,
                    audit: Sequence[AuditEvent] = (), *, once: bool = False) -> bool:
        with self._write() as c:
            return _raise_alert(c, "?", kind, party, detail, when, audit, once=once)

    def alerts(self) -> list[tuple[int, str, str | None, str, str]]:
        return self._judged(lambda c: [(int(r[0]), r[1], r[2], r[3], r[4]) for r in c.execute(
            "SELECT alert_id, kind, party, detail, raised FROM alerts ORDER BY alert_id")])

    def alert_resolutions(self) -> dict[int, tuple[str, str]]:
        return self._judged(lambda c: {int(r[0]): (r[1], r[2])
                                       for r in c.execute(_RESOLUTIONS)})

    def resolve_alert(self, alert_id: int, when: str, note: str,
                      audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _resolve_alert(c, "?", alert_id, when, note, audit)

    # -- originator controls ------------------------------------------------------------
    def add_notice(self, notice: Notice, *, recall_reason: str | None = None,
                   confirms: str | None = None,
                   accounted: Callable[[Sequence[Dissemination]], str | None] | None = None,
                   audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _add_notice(c, "?", notice, recall_reason, audit, confirms, accounted)

    def pending_notices(self, party: str, limit: int) -> list[Notice]:
        return [Notice(*r) for r in self._conn().execute(
            f"SELECT {_NOTICE_COLUMNS} FROM notices WHERE direction = 'out' AND party = ? "  # noqa: S608
            "AND delivered IS NULL AND attempts < ? ORDER BY made, notice_id LIMIT ?",
            (party, MAX_ATTEMPTS, limit))]

    def notice_delivered(self, notice_id: str, when: str, receipt: str) -> None:
        with self._write() as c:
            c.execute("UPDATE notices SET delivered = ?, receipt = ?, error = NULL WHERE "
                      "notice_id = ? AND delivered IS NULL", (when, receipt, notice_id))

    def notice_failed(self, notice_id: str, error: str, *, refused: bool) -> None:
        with self._write() as c:
            c.execute("UPDATE notices SET error = ?, attempts = attempts + ? WHERE "
                      "notice_id = ?", (error, int(refused), notice_id))

    def notices(self) -> list[Notice]:
        return [Notice(*r) for r in self._conn().execute(
            f"SELECT {_NOTICE_COLUMNS} FROM notices ORDER BY made, notice_id")]  # noqa: S608

    def notice(self, notice_id: str) -> Notice | None:
        row = self._conn().execute(
            f"SELECT {_NOTICE_COLUMNS} FROM notices WHERE notice_id = ?",  # noqa: S608
            (notice_id,)).fetchone()
        return Notice(*row) if row else None

    def reclassifications(self, object_ids: Sequence[str] | None = None
                          ) -> list[tuple[str, str, str, str]]:
        where, params = _of_objects(object_ids, "WHERE", "?")
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in self._conn().execute(
            "SELECT object_id, version, marking, reason FROM reclassifications "  # noqa: S608
            f"{where}ORDER BY made, object_id, version", params)]

    def intend_reclassify(self, object_id: str, version: str, reason: str | None) -> None:
        with self._write() as c:
            _intend_reclassify(c, "?", object_id, version, reason)

    def reclassify_intents(self) -> list[tuple[str, str, str, str]]:
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3]))
                for r in self._conn().execute(_INTENTS)]

    def withdrawn(self, object_ids: Sequence[str]) -> set[tuple[str, str]]:
        return _withdrawn(self._conn(), "?", object_ids)

    def reclassify_notices(self, object_ids: Sequence[str] | None = None) -> list[Notice]:
        where, params = _of_objects(object_ids, "AND", "?")
        return [Notice(*r) for r in self._conn().execute(
            f"SELECT {_NOTICE_COLUMNS} FROM notices WHERE kind = 'reclassify' AND "  # noqa: S608
            f"direction = 'in' {where}ORDER BY made, notice_id", params)]

    def recalls(self, object_ids: Sequence[str] | None = None) -> list[RecallRecord]:
        where, params = _of_objects(object_ids, "WHERE", "?")
        return [RecallRecord(*r) for r in self._conn().execute(
            f"SELECT {_RECALL_COLUMNS} FROM recalls {where}"  # noqa: S608
            "ORDER BY issued, object_id, party", params)]

    def purge(self, object_id: str, originator: str, tombstone: Callable[[StoredObject], str],
              when: str, audit: Callable[[Sequence[StoredObject]], Sequence[AuditEvent]],
              notices: Callable[[Sequence[StoredObject], Sequence[StoredObject]],
                                Sequence[Notice]] | None = None,
              which: Callable[[StoredObject], bool] | None = None,
              older_than: str | None = None) -> list[StoredObject]:
        with self._write() as c:
            purged = _purge(c, "?", object_id, originator, tombstone, when, audit,
                            notices, which, older_than)
        self._scrub()
        return purged

    def purge_chosen(self, choose: Callable[[str, int], bool],
                     purging: Callable[[str, str], Purging], when: str, *,
                     after: int = 0, limit: int | None = None, once: str | None = None,
                     done: Callable[[Sequence[tuple[str, str]]], AuditEvent] | None = None
                     ) -> Purged | None:
        with self._write() as c:
            purged = _purge_chosen(c, "?", choose, purging, when, after, limit, once,
                                   done)
        if purged is not None and purged.objects:
            self._scrub()
        return purged

    def relabel(self, object_id: str, originator: str,
                labels: Mapping[str, tuple[Label, Label]], audit: Sequence[AuditEvent],
                notice: Notice | None = None, *,
                reclassified: tuple[str, str, str] | None = None,
                notices: Sequence[Notice] = (),
                tell: Callable[[Sequence[str]], Onward] | None = None,
                older_than: str | None = None) -> int | None:
        pending: dict[str, int] = {}
        with self._write() as c:
            _labels_current(c, self.labelled_under)
            _stored_meanwhile(c, "?", object_id, originator, older_than, labels)
            if notice is not None and not _add_notice(c, "?", notice, None, ()):
                return None  # applied already
            if not _reclassified(c, "?", object_id, reclassified, notices):
                return None  # completed already, by another process
            told = _told(c, "?", object_id, originator, reclassified, tell)
            changed = _relabel_rows(c, "?", object_id, originator, {
                version: (self._label_id(c, base, pending), self._label_id(c, banner, pending))
                for version, (base, banner) in labels.items()})
            _supersede_again(c, "?", object_id)
            _append_audit(c, [*audit, *told])
        self._load_labels()
        return changed

    # -- consent for third-party release (services/consent.py) ---------------------------
    def consent_step(self, record: ConsentRecord, notice: Notice | None,
                     audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _consent_step(c, "?", record, notice, audit)

    def consents(self) -> list[ConsentRecord]:
        return [_consent(r) for r in self._conn().execute(
            f"SELECT {_CONSENT_COLUMNS} FROM consents ORDER BY made, request_id")]  # noqa: S608

    def consent(self, request_id: str) -> ConsentRecord | None:
        row = self._conn().execute(
            f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE request_id = ?",  # noqa: S608
            (request_id,)).fetchone()
        return _consent(row) if row else None

    def add_onward(self, party: str, via: str, objects: Sequence[tuple[str, str, str]],
                   when: str, receipt: str | None, notice: Notice,
                   audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _add_onward(c, "?", party, via, objects, when, receipt, notice, audit)

    # -- compromise reports -------------------------------------------------------------
    def add_compromise(self, report: CompromiseRecord, send_to: str | None,
                       audit: Sequence[AuditEvent] = (),
                       alert: tuple[str, str | None, str] | None = None) -> bool:
        with self._write() as c:
            return _add_compromise(c, "?", report, send_to, audit, alert)

    def compromise_step(self, report_id: str, step: str, when: str, body: str,
                        send_to: str | None, audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _compromise_step(c, "?", report_id, step, when, body, send_to, audit)

    def compromise_checked(self, report_id: str, when: str, outcome: str,
                           audit: Sequence[AuditEvent] = (),
                           alert: tuple[str, str | None, str, AuditEvent] | None = None
                           ) -> bool:
        with self._write() as c:
            return _compromise_checked(c, "?", report_id, when, outcome, audit, alert)

    def compromise_report(self, report_id: str) -> CompromiseRecord | None:
        row = self._conn().execute(
            f"SELECT {_COMPROMISE_COLUMNS} FROM compromise_reports WHERE report_id = ?",  # noqa: S608
            (report_id,)).fetchone()
        return CompromiseRecord(*row) if row else None

    def compromise_reports(self) -> list[CompromiseRecord]:
        return [CompromiseRecord(*r) for r in self._conn().execute(
            f"SELECT {_COMPROMISE_COLUMNS} FROM compromise_reports "  # noqa: S608
            "ORDER BY filed, report_id")]

    def compromise_messages(self, report_id: str | None = None) -> list[CompromiseMessage]:
        sql, params = _messages_select(report_id, "?")
        return [CompromiseMessage(*r) for r in self._conn().execute(sql, params)]

    def pending_compromise(self, party: str, limit: int) -> list[CompromiseMessage]:
        return [CompromiseMessage(*r) for r in self._conn().execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM compromise_messages WHERE party = ? AND "  # noqa: S608
            "delivered IS NULL AND attempts < ? ORDER BY message_id LIMIT ?",
            (party, MAX_ATTEMPTS, limit))]

    def compromise_delivered(self, message_id: int, when: str, receipt: str) -> None:
        with self._write() as c:
            _compromise_delivered(c, "?", message_id, when, receipt)

    def compromise_failed(self, message_id: int, error: str, refused: bool) -> None:
        with self._write() as c:
            c.execute("UPDATE compromise_messages SET error = ?, attempts = attempts + ? "
                      "WHERE message_id = ?", (error, int(refused), message_id))

    # -- people -------------------------------------------------------------------------
    def add_person(self, person: PersonRecord, audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            _add_person(c, "?", person, audit)

    def person(self, name: str) -> PersonRecord | None:
        row = self._conn().execute("SELECT * FROM people WHERE name = ?", (name,)).fetchone()
        return _person(row) if row else None

    def people(self) -> list[PersonRecord]:
        return [_person(r) for r in self._conn().execute("SELECT * FROM people ORDER BY name")]

    def revoke_person(self, name: str, when: str, audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _revoke_person(c, "?", name, when, audit)

    def set_password(self, name: str, password_hash: str,
                     audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            _set_password(c, "?", name, password_hash, audit)

    # -- failed logins ------------------------------------------------------------------
    def login_failed(self, key: str, now: float, window: float, limit: int,
                     lockout: float) -> float:
        with self._write() as c:
            return _login_failed(c, "?", key, now, window, limit, lockout)

    def login_lock(self, key: str) -> tuple[float, int]:
        row = self._conn().execute(_LOGIN_LOCK.format(m="?"), (key,)).fetchone()
        return (0.0, 0) if row is None else (float(row[0]), int(row[1]))

    def login_cleared(self, key: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM login_failures WHERE key = ?", (key,))

    # -- console sessions --------------------------------------------------------------
    def add_session(self, session: SessionRecord, *, idle_before: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM sessions WHERE seen < ?", (idle_before,))
            c.execute("INSERT INTO sessions (digest, name, csrf, created, seen) "
                      "VALUES (?, ?, ?, ?, ?)",
                      (session.digest, session.name, session.csrf, session.created,
                       session.seen))

    def session(self, digest: str, *, idle_before: str) -> SessionRecord | None:
        row = self._conn().execute("SELECT digest, name, csrf, created, seen FROM "
                                   "sessions WHERE digest = ? AND seen >= ?",
                                   (digest, idle_before)).fetchone()
        return SessionRecord(*row) if row else None

    def touch_session(self, digest: str, when: str) -> None:
        with self._write() as c:
            c.execute("UPDATE sessions SET seen = ? WHERE digest = ? AND seen < ?",
                      (when, digest, when))

    def end_session(self, digest: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM sessions WHERE digest = ?", (digest,))

    def end_sessions(self, name: str) -> int:
        with self._write() as c:
            return int(c.execute("DELETE FROM sessions WHERE name = ?", (name,)).rowcount)

    def add_token(self, digest: str, name: str, label: str, created: str,
                  audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            _add_token(c, "?", digest, name, label, created, audit)

    def token_owner(self, digest: str) -> str | None:
        row = self._conn().execute(
            "SELECT t.name FROM tokens t JOIN people p ON p.name = t.name "
            "WHERE t.digest = ? AND t.revoked IS NULL AND p.revoked IS NULL",
            (digest,)).fetchone()
        return str(row[0]) if row else None

    def revoke_tokens(self, name: str, when: str, digest: str | None = None,
                      audit: Callable[[int], Sequence[AuditEvent]] | None = None) -> int:
        with self._write() as c:
            return _revoke_tokens(c, "?", name, when, digest, audit)


# -- helpers -------------------------------------------------------------------------------

_AUDIT_COLUMNS = "idx, at, kind, person, party, originator, body, seq, mac"
# Store.audit_macs_from, either dialect: asked only when the key is missing, so a scan
_MACS_FROM = "SELECT idx FROM audit_events WHERE mac IS NOT NULL ORDER BY idx LIMIT 1"
_NOTICE_COLUMNS = ("notice_id, direction, party, kind, object_id, body, made, delivered, "
                   "receipt, attempts, error")
_RECALL_COLUMNS = "object_id, party, notice_id, reason, issued, destroyed, receipt, unconfirmed"
# Store.withdrawn: recalled from this node (a recall notice kept), or every version held
# here a tombstone; each {…} a condition on object_id (_of_objects)
_WITHDRAWN = ("SELECT object_id, party FROM notices WHERE direction = 'in' AND "
              "kind = 'recall' {recalled}UNION SELECT object_id, originator FROM objects "
              "{purged}GROUP BY object_id, originator HAVING count(recalled) = count(*)")


def _withdrawn(c: Any, mark: str, object_ids: Sequence[str]) -> set[tuple[str, str]]:
    """Store.withdrawn (both dialects): the versions found through the unique
    (collection, id, version) index, the collections held bound (_collections_held);
    given the ids alone, both stores scanned objects."""
    held = _collections_held(c)
    where, params = _of_objects(object_ids, "AND", mark)
    again, more = _of_objects(object_ids, f"WHERE {_held_in(mark, held)} AND", mark)
    return {(str(r[0]), str(r[1])) for r in c.execute(
        _WITHDRAWN.format(recalled=where, purged=again), [*params, *held, *more]).fetchall()}


# Outbox rows that may still leave: not a tombstone here, not recalled from that party.
_NOT_RECALLED = ("o.recalled IS NULL AND NOT EXISTS (SELECT 1 FROM recalls r WHERE "
                 "r.object_id = o.object_id AND r.party = b.party)")


def _disseminations(mark: str, object_id: str | None, party: str | None
                    ) -> tuple[str, list[Any]]:
    """The query of Store.disseminations (both dialects)."""
    given = [(column, value) for column, value in (("object_id", object_id), ("party", party))
             if value is not None]
    where = " AND ".join(f"{column} = {mark}" for column, _ in given)
    return ("SELECT party, object_id, version, body_hash, released, receipt_at, receipt_id, "  # noqa: S608
            f"via FROM disseminations {f'WHERE {where} ' if where else ''}"
            "ORDER BY released, party, object_id", [value for _, value in given])


# Store.queued_for: the parties an outbox entry of the object has not reached yet (its
# versions found through the unique (collection, id, version) index, the collections
# held bound as a list: _collections_held)
_QUEUED_FOR = ("SELECT DISTINCT b.party FROM objects o JOIN outbox b ON b.seq = o.seq "
               "WHERE {held} AND o.object_id = {m} AND b.delivered IS NULL ORDER BY b.party")


def _queued_for(c: Any, mark: str, object_id: str) -> list[str]:
    """Store.queued_for (both dialects)."""
    held = _collections_held(c)
    return [str(r[0]) for r in c.execute(
        _QUEUED_FOR.format(held=_held_in(mark, held, "o.collection_id"), m=mark),
        (*held, object_id)).fetchall()]


def _record_release(c: Any, mark: str, ids_in: str, party: str, ids: Any, when: str,
                    audit: Callable[[Sequence[int]], Sequence[AuditEvent]]) -> list[int]:
    """Store.record_release inside the caller's write transaction (both dialects):
    ``ids_in`` is the dialect's set of the outbox ids bound as one parameter, ``ids``."""
    fresh = [int(r[0]) for r in c.execute(
        f"UPDATE outbox SET release_recorded = {mark} WHERE party = {mark} AND "  # noqa: S608
        f"release_recorded IS NULL AND outbox_id IN {ids_in} RETURNING outbox_id",
        (when, party, ids)).fetchall()]
    if fresh:
        _append_audit(c, audit(sorted(fresh)), mark)
    return sorted(fresh)


def _recalled_here(c: Any, mark: str, objects: Sequence[NewObject]) -> set[tuple[str, str]]:
    """(id, originator) of each of ``objects`` whose originator recalled it from this node
    (a recall notice kept here): nothing more of it is stored, whoever sends it. A push or
    pull that began at the originator before it recorded the recall could otherwise bring
    a version here after the recall was applied and answered (docs/controls.md)."""
    ids = sorted({o.object_id for o in objects if o.object_type != "marking-definition"})
    found: set[tuple[str, str]] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        found.update((str(r[0]), str(r[1])) for r in c.execute(
            "SELECT object_id, party FROM notices WHERE direction = 'in' AND kind = "  # noqa: S608
            f"'recall' AND object_id IN ({', '.join([mark] * len(chunk))})", chunk).fetchall())
    return found


def _reclassified_meanwhile(c: Any, mark: str, objects: Sequence[NewObject],
                            known: Mapping[str, Iterable[dt.datetime]] | None) -> None:
    """Inside ``add_objects``' write transaction (both dialects): raise
    ReclassifiedMeanwhile if one of ``objects`` is a version older than a reclassification
    of its object kept here (this node's own, or a notice applied) that ``known`` does not
    name: it was kept after the caller joined the labels, which are then too low. None:
    the caller joined nothing (nothing to check)."""
    if known is None:
        return
    versioned = [o for o in objects if o.object_type != "marking-definition" and o.version]
    ids = sorted({o.object_id for o in versioned})
    kept: dict[str, set[dt.datetime]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ", ".join([mark] * len(chunk))
        for oid, version in c.execute("SELECT object_id, version FROM reclassifications "  # noqa: S608
                                      f"WHERE object_id IN ({marks})", chunk).fetchall():
            kept.setdefault(str(oid), set()).add(parse_timestamp(str(version)))
        for oid, body in c.execute("SELECT object_id, body FROM notices WHERE direction = "  # noqa: S608
                                   f"'in' AND kind = 'reclassify' AND object_id IN ({marks})",
                                   chunk).fetchall():
            try:  # as Controls.raises reads it (a malformed one is not applied there)
                made = parse_timestamp(str(json.loads(body)["notice"]["version"]))
            except (ValueError, TypeError, KeyError):
                continue
            kept.setdefault(str(oid), set()).add(made)
    for obj in versioned:
        if obj.object_id not in kept:
            continue
        made = parse_timestamp(str(obj.version))
        missed = {when for when in kept[obj.object_id] if made < when} - \
            set(known.get(obj.object_id, ()))
        if missed:
            raise ReclassifiedMeanwhile(
                f"{obj.object_id} was reclassified meanwhile, after version {obj.version}: "
                "its labels are to be joined with the new marking", hint="send again")


def _stored_meanwhile(c: Any, mark: str, object_id: str, originator: str,
                      older_than: str | None, labels: Mapping[str, Any]) -> None:
    """Inside ``relabel``'s write transaction (both dialects): raise
    ReclassifiedMeanwhile if a version of ``object_id`` older than the reclassified
    ``older_than``, not recalled, is not among those ``labels`` names: it was stored after
    the caller read the versions, and would keep its old label."""
    if older_than is None:
        return
    made = parse_timestamp(older_than)
    # the versions found through the unique (collection, id, version) index, the
    # originator picked here: given it, SQLite scanned objects, and PostgreSQL read every
    # object of the originator through the (collection, originator, seq) index
    held = _collections_held(c)
    missed = sorted(str(v) for v, by in c.execute(
        f"SELECT version, originator FROM objects WHERE {_held_in(mark, held)} AND "  # noqa: S608
        f"object_id = {mark} AND recalled IS NULL", (*held, object_id)).fetchall()
        if by == originator and str(v) not in labels and parse_timestamp(str(v)) < made)
    if missed:
        raise ReclassifiedMeanwhile(
            f"version {', '.join(missed)} of {object_id} was stored meanwhile, older than "
            f"the reclassified {older_than}: its labels are to be joined too")


def _recall_refused(obj: NewObject) -> AddResult:
    return AddResult(obj.object_id, obj.version or "", "recalled",
                     f"{obj.originator} recalled {obj.object_id} from this node: nothing more "
                     "of it is taken")


def _add_markings(c: Any, mark: str, markings: Iterable[tuple[str, str]]) -> None:
    """Store marking-definitions (id, body), first in a write transaction (writers are
    serialised; both dialects): one whose id holds a different body already (stored by
    another process meanwhile) raises :class:`MarkingConflict`, so nothing of it is
    stored."""
    conflicts = []
    for marking_id, body in markings:
        if c.execute(f"INSERT INTO markings (marking_id, body) VALUES ({mark}, {mark}) "  # noqa: S608
                     "ON CONFLICT (marking_id) DO NOTHING", (marking_id, body)).rowcount:
            continue
        stored = c.execute(f"SELECT body FROM markings WHERE marking_id = {mark}",  # noqa: S608
                           (marking_id,)).fetchone()
        if stored is None or marking_differs(stored[0], body):
            conflicts.append(marking_id)
    if conflicts:
        raise MarkingConflict(conflicts)


def _reclassified(c: Any, mark: str, object_id: str,
                  reclassified: tuple[str, str, str] | None, notices: Sequence[Notice]) -> bool:
    """The originator's side of ``Store.relabel`` inside the caller's write transaction
    (both dialects): its reclassification kept and its intent forgotten, the holders'
    notices queued. False, and nothing queued, if it was kept already."""
    if reclassified is not None:
        _intend_reclassify(c, mark, object_id, reclassified[0], None)
        cur = c.execute("INSERT INTO reclassifications (object_id, version, marking, reason, "  # noqa: S608
                        f"made) VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) ON CONFLICT "
                        "(object_id, version) DO NOTHING",
                        (object_id, *reclassified, timestamp(utc_now())))
        if cur.rowcount == 0:
            return False
    for queued in notices:
        _add_notice(c, mark, queued, None, ())
    return True


def _went(c: Any, mark: str, object_id: str, originator: str, version: str) -> list[str]:
    """The parties a version of ``object_id`` older than ``version`` went to, or may be
    going to (its outbox entry's release recorded: the courier decides what goes after
    recording it), inside the caller's write transaction (both dialects). The versions
    are found through the unique (collection, id, version) index (_collections_held) and
    their originator picked here: given it, PostgreSQL read every object of the
    originator through the (collection, originator, seq) index, and SQLite scanned
    objects when not given the collections."""
    went = {str(r[0]) for r in c.execute(
        f"SELECT party FROM disseminations WHERE object_id = {mark} AND version <> {mark}",  # noqa: S608
        (object_id, version)).fetchall()}
    held = _collections_held(c)
    went.update(str(party) for party, by in c.execute(
        f"SELECT b.party, o.originator FROM outbox b JOIN objects o ON o.seq = b.seq WHERE "  # noqa: S608
        f"{_held_in(mark, held, 'o.collection_id')} AND o.object_id = {mark} AND o.version < "
        f"{mark} AND b.release_recorded IS NOT NULL", (*held, object_id, version)).fetchall()
        if by == originator)
    return sorted(went)


def _relabel_rows(c: Any, mark: str, object_id: str, originator: str,
                  labels: Mapping[str, tuple[int, int]]) -> int:
    """Store.relabel's writes, inside its write transaction (both dialects): the label
    and banner ids ``labels`` gives a version of ``object_id`` by ``originator``, on each
    such row not recalled; how many were written. The rows are found through the unique
    (collection, id, version) index (_collections_held), the originator and versions
    picked here, and written by seq: given the originator, PostgreSQL read every object
    of it through the (collection, originator, seq) index, and SQLite, not given the
    collections, scanned objects per version."""
    held = _collections_held(c)
    rows = [(*labels[str(version)], seq) for seq, version, by in c.execute(
        f"SELECT seq, version, originator FROM objects WHERE {_held_in(mark, held)} AND "  # noqa: S608
        f"object_id = {mark} AND recalled IS NULL", (*held, object_id)).fetchall()
        if by == originator and str(version) in labels]
    for row in rows:
        c.execute(f"UPDATE objects SET label_id = {mark}, banner_id = {mark} WHERE "  # noqa: S608
                  f"seq = {mark}", row)
    return len(rows)


def _told(c: Any, mark: str, object_id: str, originator: str,
          reclassified: tuple[str, str, str] | None,
          tell: Callable[[Sequence[str]], Onward] | None) -> Sequence[AuditEvent]:
    """Store.relabel's ``tell``, inside its write transaction (both dialects): the notices
    for the parties an older version went or may be going to (:func:`_went`) kept, and
    their events returned, to be appended with the relabelling's."""
    if tell is None or reclassified is None:
        return ()
    notices, events = tell(_went(c, mark, object_id, originator, reclassified[0]))
    for notice in notices:
        _add_notice(c, mark, notice, None, ())
    return events


def _intend_reclassify(c: Any, mark: str, object_id: str, version: str,
                       reason: str | None) -> None:
    """Store.intend_reclassify inside the caller's write transaction (both dialects)."""
    if reason is None:
        c.execute(f"DELETE FROM reclassify_intents WHERE object_id = {mark} AND "  # noqa: S608
                  f"version = {mark}", (object_id, version))
    else:
        c.execute("INSERT INTO reclassify_intents (object_id, version, reason, made) "  # noqa: S608
                  f"VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT (object_id, version) "
                  "DO NOTHING", (object_id, version, reason, timestamp(utc_now())))


# Store.reclassify_intents, either dialect
_INTENTS = ("SELECT object_id, version, reason, made FROM reclassify_intents "
            "ORDER BY made, object_id, version")


# A notice kept (either dialect): one kept already under its id is left as it is
_NOTICE_INSERT = (f"INSERT INTO notices ({_NOTICE_COLUMNS}) VALUES ({{m}}"  # noqa: S608
                  + ", {m}" * 10 + ") ON CONFLICT (notice_id) DO NOTHING")


def _notice_values(notice: Notice) -> tuple[Any, ...]:
    return (notice.notice_id, notice.direction, notice.party, notice.kind, notice.object_id,
            notice.body, notice.made, notice.delivered, notice.receipt, notice.attempts,
            notice.error)


def _add_notice(c: Any, mark: str, notice: Notice, recall_reason: str | None,
                audit: Sequence[AuditEvent], confirms: str | None = None,
                accounted: Callable[[Sequence[Dissemination]], str | None] | None = None
                ) -> bool:
    """``Store.add_notice`` inside the caller's write transaction (both dialects)."""
    cur = c.execute(_NOTICE_INSERT.format(m=mark), _notice_values(notice))
    if cur.rowcount == 0:
        return False
    if recall_reason is not None:  # recalled again: only the answer to this one confirms it
        c.execute(f"INSERT INTO recalls (object_id, party, notice_id, reason, issued) VALUES "  # noqa: S608
                  f"({mark}, {mark}, {mark}, {mark}, {mark}) ON CONFLICT (object_id, party) "
                  "DO UPDATE SET notice_id = excluded.notice_id, reason = excluded.reason, "
                  "issued = excluded.issued, destroyed = NULL, receipt = NULL, "
                  "unconfirmed = NULL",
                  (notice.object_id, notice.party, notice.notice_id, recall_reason,
                   notice.made))
    # the holder's answer to the latest recall of that object from it (a row of recalls
    # is only ever made by a recall notice sent, of its object to its party)
    if confirms is not None and c.execute(
            f"SELECT 1 FROM recalls WHERE object_id = {mark} AND party = {mark} AND "  # noqa: S608
            f"notice_id = {mark}", (notice.object_id, notice.party, confirms)).fetchone():
        delivered = [Dissemination(*r) for r in c.execute(
            "SELECT party, object_id, version, body_hash, released, receipt_at, "  # noqa: S608
            f"receipt_id, via FROM disseminations WHERE party = {mark} AND object_id = {mark} "
            "ORDER BY version", (notice.party, notice.object_id)).fetchall()]
        problem = accounted(delivered) if accounted is not None else None
        c.execute(f"UPDATE recalls SET destroyed = {mark}, receipt = {mark}, "  # noqa: S608
                  f"unconfirmed = {mark} WHERE object_id = {mark} AND party = {mark}",
                  (None if problem else notice.made, None if problem else notice.body,
                   problem, notice.object_id, notice.party))
    _append_audit(c, audit, mark)
    return True


# Consent for third-party release: shared by both backends, inside the caller's write
# transaction (``mark`` is the dialect's placeholder). Column lists are constants; every
# value is bound.
_CONSENT_COLUMNS = ("request_id, direction, holder, originator, recipient, object_id, "
                    "versions, purpose, requested_expires, requester, made, status, decided, "
                    "reason, token, expires")


def _consent(row: Sequence[Any]) -> ConsentRecord:
    values = list(row)
    values[6] = tuple(json.loads(values[6]))
    return ConsentRecord(*values)


def _consent_step(c: Any, mark: str, record: ConsentRecord, notice: Notice | None,
                  audit: Sequence[AuditEvent]) -> bool:
    """``Store.consent_step``: the notice first (kept once), then the request's row."""
    if notice is not None and not _add_notice(c, mark, notice, None, audit):
        return False
    marks = ", ".join([mark] * 16)
    c.execute(f"INSERT INTO consents ({_CONSENT_COLUMNS}) VALUES ({marks}) "  # noqa: S608
              "ON CONFLICT (request_id) DO UPDATE SET status = excluded.status, decided = "
              "excluded.decided, reason = excluded.reason, token = excluded.token, "
              "expires = excluded.expires",
              (record.request_id, record.direction, record.holder, record.originator,
               record.recipient, record.object_id, json.dumps(list(record.versions)),
               record.purpose, record.requested_expires, record.requester, record.made,
               record.status, record.decided, record.reason, record.token, record.expires))
    if notice is None:
        _append_audit(c, audit, mark)
    return True


def _add_onward(c: Any, mark: str, party: str, via: str,
                objects: Sequence[tuple[str, str, str]], when: str, receipt: str | None,
                notice: Notice, audit: Sequence[AuditEvent]) -> bool:
    """``Store.add_onward``: the notice (kept once), the receipt, a dissemination row per
    object version (a row we made ourselves keeps its receipt)."""
    if not _add_notice(c, mark, notice, None, audit):
        return False
    receipt_id = None
    if receipt is not None:
        c.execute(f"INSERT INTO receipts (party, body, received) VALUES ({mark}, {mark}, "  # noqa: S608
                  f"{mark})", (party, receipt, when))
        receipt_id = c.execute(f"SELECT max(receipt_id) FROM receipts WHERE party = {mark}",  # noqa: S608
                               (party,)).fetchone()[0]
    _disseminated(c, mark, party, objects, when, receipt_id, via)
    return True


def _keep_onward(c: Any, mark: str, onward: Onward) -> None:
    """Keep the ``onward`` notices and append their events, inside the caller's write
    transaction (both dialects)."""
    notices, events = onward
    for notice in notices:
        _add_notice(c, mark, notice, None, ())
    _append_audit(c, events, mark)


def _add_pulled(c: Any, mark: str, party: str, objects: Sequence[tuple[str, str, str]],
                when: str,
                audit: Callable[[Sequence[tuple[str, str, str]]], Sequence[AuditEvent]],
                onward: Callable[[Sequence[tuple[str, str, str]]], Onward] | None = None
                ) -> list[tuple[str, str, str]]:
    """``Store.add_pulled`` inside the caller's write transaction (both dialects)."""
    where, params = _of_objects([o[0] for o in objects], "AND", mark)
    held = {(r[0], r[1]) for r in c.execute(
        f"SELECT object_id, version FROM disseminations WHERE party = {mark} {where}",  # noqa: S608
        [party, *params]).fetchall()}
    fresh = [o for o in objects if (o[0], o[1]) not in held]
    if fresh:
        _disseminated(c, mark, party, fresh, when, None, None)
        _append_audit(c, audit(fresh), mark)
        if onward is not None:
            _keep_onward(c, mark, onward(fresh))
    return fresh


# People, credentials, partners, refusals and alerts: shared by both backends, inside the
# caller's write transaction (``mark`` is the dialect's placeholder), each with the audit
# events of its act, so the act is never done unrecorded, nor recorded undone.
def _add_person(c: Any, mark: str, person: PersonRecord, audit: Sequence[AuditEvent]) -> None:
    if c.execute(f"SELECT 1 FROM people WHERE name = {mark}",  # noqa: S608
                 (person.name,)).fetchone():
        raise StoreError(f"a person named {person.name!r} already exists",
                         hint="choose another name; names are never reused")
    c.execute("INSERT INTO people (name, party, clearance, caveats, communities, roles, "  # noqa: S608
              f"password_hash, created, revoked) VALUES ({', '.join([mark] * 9)})",
              (person.name, person.party, person.clearance,
               json.dumps(list(person.caveats)), json.dumps(list(person.communities)),
               json.dumps(list(person.roles)), person.password_hash, person.created,
               person.revoked))
    _append_audit(c, audit, mark)


def _revoke_person(c: Any, mark: str, name: str, when: str,
                   audit: Sequence[AuditEvent]) -> bool:
    changed = c.execute(f"UPDATE people SET revoked = {mark} WHERE name = {mark} AND "  # noqa: S608
                        "revoked IS NULL", (when, name)).rowcount > 0
    c.execute(f"UPDATE tokens SET revoked = {mark} WHERE name = {mark} AND revoked IS NULL",  # noqa: S608
              (when, name))
    c.execute(f"DELETE FROM sessions WHERE name = {mark}", (name,))  # noqa: S608
    if changed:
        _append_audit(c, audit, mark)
    return bool(changed)


def _set_password(c: Any, mark: str, name: str, password_hash: str,
                  audit: Sequence[AuditEvent]) -> None:
    c.execute(f"UPDATE people SET password_hash = {mark} WHERE name = {mark}",  # noqa: S608
              (password_hash, name))
    c.execute(f"DELETE FROM sessions WHERE name = {mark}", (name,))  # noqa: S608
    _append_audit(c, audit, mark)


def _add_token(c: Any, mark: str, digest: str, name: str, label: str, created: str,
               audit: Sequence[AuditEvent]) -> None:
    c.execute(f"INSERT INTO tokens (digest, name, label, created) VALUES ({mark}, {mark}, "  # noqa: S608
              f"{mark}, {mark})", (digest, name, label, created))
    _append_audit(c, audit, mark)


def _revoke_tokens(c: Any, mark: str, name: str, when: str, digest: str | None,
                   audit: Callable[[int], Sequence[AuditEvent]] | None) -> int:
    if digest is None:
        cur = c.execute(f"UPDATE tokens SET revoked = {mark} WHERE name = {mark} AND "  # noqa: S608
                        "revoked IS NULL", (when, name))
    else:
        cur = c.execute(f"UPDATE tokens SET revoked = {mark} WHERE name = {mark} AND "  # noqa: S608
                        f"digest = {mark} AND revoked IS NULL", (when, name, digest))
    count = int(cur.rowcount)
    if audit is not None:
        _append_audit(c, audit(count), mark)
    return count


def _add_peer(c: Any, mark: str, peer: PeerRecord, audit: Sequence[AuditEvent]) -> None:
    c.execute("INSERT INTO party_keys (party, key_id, public_key, added) VALUES "  # noqa: S608
              f"({mark}, {mark}, {mark}, {mark}) ON CONFLICT (party, key_id) DO NOTHING",
              (peer.party, peer.key_id, peer.public_key, peer.added))
    c.execute("INSERT INTO peers (party, url, public_key, key_id, tls_cert, "  # noqa: S608
              f"tls_fingerprint, card, added) VALUES ({', '.join([mark] * 8)}) "
              "ON CONFLICT (party) DO UPDATE SET url = excluded.url, public_key = "
              "excluded.public_key, key_id = excluded.key_id, tls_cert = "
              "excluded.tls_cert, tls_fingerprint = excluded.tls_fingerprint, card = "
              "excluded.card, added = excluded.added",
              (peer.party, peer.url, peer.public_key, peer.key_id, peer.tls_cert,
               peer.tls_fingerprint, peer.card, peer.added))
    _append_audit(c, audit, mark)


def _add_refusals(c: Any, mark: str, party: str, refused: Sequence[tuple[str, str]],
                  when: str, audit: Sequence[AuditEvent]) -> None:
    if refused:
        c.executemany(f"INSERT INTO refusals (party, object_id, reason, at) VALUES ({mark}, "  # noqa: S608
                      f"{mark}, {mark}, {mark})",
                      [(party, object_id, reason, when) for object_id, reason in refused])
    _append_audit(c, audit, mark)


_RESOLUTIONS = "SELECT alert_id, resolved, resolution FROM alerts WHERE resolved IS NOT NULL"


def _resolve_alert(c: Any, mark: str, alert_id: int, when: str, note: str,
                   events: Sequence[AuditEvent]) -> bool:
    changed = c.execute(f"UPDATE alerts SET resolved = {mark}, resolution = {mark} "  # noqa: S608
                        f"WHERE alert_id = {mark} AND resolved IS NULL",
                        (when, note, alert_id)).rowcount
    if changed != 1:
        return False
    if events:
        _append_audit(c, events, mark)
    return True


def _raise_alert(c: Any, mark: str, kind: str, party: str | None, detail: str, when: str,
                 audit: Sequence[AuditEvent], *, once: bool = False) -> bool:
    """Raise the alert and append ``audit`` (its event); ``once``: not if the same alert
    (kind, party, detail) was raised before, open or resolved. Whether it was raised."""
    if once and c.execute(f"SELECT 1 FROM alerts WHERE kind = {mark} AND "  # noqa: S608
                          f"COALESCE(party, '') = {mark} AND detail = {mark}",
                          (kind, party or "", detail)).fetchone() is not None:
        return False
    c.execute(f"INSERT INTO alerts (kind, party, detail, raised) VALUES ({mark}, {mark}, "  # noqa: S608
              f"{mark}, {mark})", (kind, party, detail, when))
    _append_audit(c, audit, mark)
    return True


def _disseminated(c: Any, mark: str, party: str, objects: Sequence[tuple[str, str, str]],
                  when: str, receipt_id: int | None, via: str | None) -> None:
    """A dissemination row per (id, version, body hash) ``party`` did not have yet (a row
    there already keeps its receipt): so recalls and reclassifications reach it."""
    c.executemany(
        "INSERT INTO disseminations (party, object_id, version, body_hash, released, "  # noqa: S608
        f"receipt_at, receipt_id, via) VALUES ({', '.join([mark] * 8)}) ON CONFLICT "
        "(party, object_id, version) DO NOTHING",
        [(party, object_id, version, body_hash, when,
          when if receipt_id is not None else None, receipt_id, via)
         for object_id, version, body_hash in objects])


def _purge(c: Any, mark: str, object_id: str, originator: str,
           tombstone: Callable[[StoredObject], str], when: str,
           audit: Callable[[Sequence[StoredObject]], Sequence[AuditEvent]],
           notices: Callable[[Sequence[StoredObject], Sequence[StoredObject]],
                             Sequence[Notice]] | None = None,
           which: Callable[[StoredObject], bool] | None = None,
           older_than: str | None = None) -> list[StoredObject]:
    """``Store.purge`` inside the caller's write transaction (both dialects)."""
    (rows,) = _purge_many(c, mark, [(object_id, originator, Purging(tombstone, audit, notices))],
                          when, which, older_than)
    return rows


PURGE_CHUNK = 500  # ids or seqs bound in one statement of a purge


def _marks(mark: str, values: Sequence[Any]) -> str:
    return ", ".join([mark] * len(values))


def _collections_held(c: Any) -> list[str]:
    """The collections held, to bind as a list (:func:`_held_in`) where a statement finds
    an object's versions through the unique (collection, id, version) index. Asked as
    ``collection_id IN (SELECT collection_id FROM collections)``, PostgreSQL planned a
    join with collections that, before objects was first analysed (right after a bulk
    load), walked that whole index with only the id as its condition, or scanned the
    table: 4 ms at 20,000 objects, growing with them."""
    return [str(r[0]) for r in c.execute("SELECT collection_id FROM collections").fetchall()]


def _held_in(mark: str, held: Sequence[str], column: str = "collection_id") -> str:
    """SQL: ``column`` is one of ``held`` (bound in order); false when none is."""
    return f"{column} IN ({_marks(mark, held)})" if held else "1 = 0"


def _purge_many(c: Any, mark: str, objects: Sequence[tuple[str, str, Purging]], when: str,
                which: Callable[[StoredObject], bool] | None = None,
                older_than: str | None = None) -> list[list[StoredObject]]:
    """Purge each of ``objects`` (id, originator, how) as ``Store.purge`` purges one,
    inside the caller's write transaction (both dialects), a statement for them all
    where one serves: their versions read, their entries and portions deleted, their
    notices kept and their events appended (in their order, as one at a time would).
    Returns the rows purged of each ([] where none was, or one of its notices was kept
    already)."""
    # found through the unique (collection, id, version) index, the collections held
    # bound as a list (_collections_held): no index of objects leads with the id. The
    # originator is picked and the rows put in seq order here: given either, SQLite read
    # every object of that originator, or of the collection, through the index that has it
    held = _collections_held(c)
    every: dict[tuple[str, str], list[tuple[StoredObject, Any]]] = {
        (object_id, originator): [] for object_id, originator, _ in objects}
    ids = sorted({object_id for object_id, _, _ in objects})
    for at in range(0, len(ids) if held else 0, PURGE_CHUNK):
        chunk = ids[at:at + PURGE_CHUNK]
        for r in c.execute(f"SELECT {_OBJECT_COLUMNS}, recalled FROM objects WHERE "  # noqa: S608
                           f"{_held_in(mark, held)} AND object_id IN "
                           f"({_marks(mark, chunk)})", [*held, *chunk]).fetchall():
            row = _stored(r[:-1])
            every.get((row.object_id, row.originator), []).append((row, r[-1]))
    before = parse_timestamp(older_than) if older_than is not None else None
    plans = []
    for object_id, originator, how in objects:
        versions = sorted(every[(object_id, originator)], key=lambda found: found[0].seq)
        earlier = [row for row, recalled in versions if recalled is not None]
        rows = [row for row, recalled in versions if recalled is None
                and (which is None or which(row))
                and (before is None or parse_timestamp(row.version) < before)]
        plans.append((how, rows, list(how.notices(rows, earlier))
                      if how.notices is not None else []))
    # a notice kept already (the one applied, delivered twice at once: each delivery
    # looked before either was kept) means it was applied: nothing more is done
    named = [notice.notice_id for _, _, kept in plans for notice in kept]
    applied = {str(r[0]) for at in range(0, len(named), PURGE_CHUNK)
               for r in c.execute(f"SELECT notice_id FROM notices WHERE notice_id IN "  # noqa: S608
                                  f"({_marks(mark, named[at:at + PURGE_CHUNK])})",
                                  named[at:at + PURGE_CHUNK]).fetchall()}
    doing = [(how, rows, kept) if not any(n.notice_id in applied for n in kept)
             else (how, [], None) for how, rows, kept in plans]
    tombstones = [(how.tombstone(row), when, row.seq) for how, rows, kept in doing
                  if kept is not None for row in rows]
    if tombstones:
        c.executemany(f"UPDATE objects SET body = {mark}, recalled = {mark} "  # noqa: S608
                      f"WHERE seq = {mark}", tombstones)
    seqs = [seq for _, _, seq in tombstones]
    for at in range(0, len(seqs), PURGE_CHUNK):
        part = seqs[at:at + PURGE_CHUNK]
        c.execute(f"DELETE FROM outbox WHERE seq IN ({_marks(mark, part)}) "  # noqa: S608
                  "AND delivered IS NULL", part)
    _forget_portions(c, mark, seqs)  # a tombstone has no text
    kept = [notice for _, _, notices in doing for notice in notices or ()]
    if kept:
        c.executemany(_NOTICE_INSERT.format(m=mark), [_notice_values(n) for n in kept])
    _append_audit(c, [event for how, rows, notices in doing if notices is not None
                      for event in how.audit(rows)], mark)
    return [rows if notices is not None else [] for _, rows, notices in doing]


PURGE_SCAN = 1_000  # rows Store.purge_chosen reads at a time


def _purge_chosen(c: Any, mark: str, choose: Callable[[str, int], bool],
                  purging: Callable[[str, str], Purging], when: str, after: int,
                  limit: int | None, once: str | None,
                  done: Callable[[Sequence[tuple[str, str]]], AuditEvent] | None
                  ) -> Purged | None:
    """``Store.purge_chosen`` inside the caller's write transaction (both dialects): the
    objects chosen from what this transaction reads, so none stored before it escapes."""
    if once is not None and c.execute(
            f"SELECT 1 FROM audit_events WHERE kind = {mark} LIMIT 1",  # noqa: S608
            (once,)).fetchone():
        return None
    chosen: dict[tuple[str, str], None] = {}
    last = after
    # read PURGE_SCAN rows at a time (PostgreSQL's cursor would fetch the rest of the
    # table at once), up to ``limit`` objects chosen
    while limit is None or len(chosen) < limit:
        rows = c.execute(f"SELECT seq, object_id, originator, banner_id FROM objects "  # noqa: S608
                         f"WHERE seq > {mark} AND recalled IS NULL ORDER BY seq "
                         f"LIMIT {PURGE_SCAN}", (last,)).fetchall()
        for seq, object_id, originator, banner_id in rows:
            last = int(seq)
            if choose(originator, int(banner_id)):
                chosen[(object_id, originator)] = None
                if limit is not None and len(chosen) >= limit:
                    break
        if len(rows) < PURGE_SCAN:
            break
    # purged PURGE_CHUNK objects at a time (the final pass chooses any number)
    objects = list(chosen)
    purged = []
    for at in range(0, len(objects), PURGE_CHUNK):
        chunk = objects[at:at + PURGE_CHUNK]
        each = _purge_many(c, mark, [(object_id, originator, purging(object_id, originator))
                                     for object_id, originator in chunk], when,
                           which=lambda row: choose(row.originator, row.banner_id))
        purged += [key for key, rows_purged in zip(chunk, each, strict=True) if rows_purged]
    if done is not None:
        _append_audit(c, [done(purged)], mark)
    return Purged(purged, last)


# A row is superseded (0016_current_versions.sql) when a newer version of its object is
# stored under the same label and spec_version: whoever may read it may read that one.
def _alike(a: str, b: str) -> str:
    """SQL: rows ``a`` and ``b`` are versions of one object under one label and
    spec_version (``b`` superseded when ``a`` is newer), ``a`` found through the unique
    (collection, id, version) index. ``+ 0`` keeps the label out of the index
    conditions: before objects was first analysed, PostgreSQL took the (collection,
    label, seq) index for ``a`` and read every row of the label, per row worked out."""
    return (f"{a}.collection_id = {b}.collection_id AND {a}.object_id = {b}.object_id AND "
            f"{a}.label_id + 0 = {b}.label_id AND {a}.spec_version = {b}.spec_version")


def _supersede_added(c: Any, mark: str, seqs: Sequence[int]) -> None:
    """Inside the caller's write transaction (both dialects), after the rows ``seqs`` were
    added: the newest older row of each one's object, label and spec_version is
    superseded now, and so is each added row older than a row of its own. Both are found
    row by row through the unique (collection, id, version) index, walked back and
    forth from the added row's version, never by a join that PostgreSQL's planner could
    turn into a scan of the table."""
    if not seqs:
        return
    alike = _alike("m", "n")
    # each added row, the newest older row of its own, and whether a newer one is stored
    sql = (f"SELECT n.seq, (SELECT m.seq FROM objects m WHERE {alike} AND m.version < "  # noqa: S608
           f"n.version ORDER BY m.version DESC LIMIT 1), (SELECT 1 FROM objects m WHERE "
           f"{alike} AND m.version > n.version LIMIT 1) FROM objects n WHERE n.seq IN "
           f"({', '.join([mark] * len(seqs))})")
    rows = c.execute(sql, list(seqs)).fetchall()
    hit = [older for _, older, _ in rows if older is not None]
    hit += [seq for seq, _, behind in rows if behind is not None]
    if hit:
        c.execute(f"UPDATE objects SET superseded = 1 WHERE superseded = 0 AND seq IN "  # noqa: S608
                  f"({', '.join([mark] * len(hit))})", hit)


def _merged(walks: Sequence[Sequence[Sequence[Any]]], query: Query) -> list[Sequence[Any]]:
    """One page's rows (``query.limit`` + 1 at most) from walks that each give their first
    rows in the page's order (seq first in each row): a row two walks found is one row.
    Each walk stops at ``limit`` + 1 rows, so the first ``limit`` + 1 of their union are
    among them."""
    rows = {row[0]: row for walk in walks for row in walk}
    return [rows[seq] for seq in sorted(rows, reverse=query.newest_first)][:query.limit + 1]


def _queue_portions(c: Any, mark: str, seqs: Sequence[int]) -> None:
    """Inside the caller's write transaction (both dialects), after the rows ``seqs`` were
    added with portions: they wait for the node to give the labels that gate them in the
    search (0020_portion_search.sql, Store.label_portions)."""
    for at in range(0, len(seqs), 500):
        chunk = seqs[at:at + 500]
        c.execute("INSERT INTO object_portions_pending (seq) SELECT seq FROM objects "  # noqa: S608
                  f"WHERE has_portions <> 0 AND seq IN ({', '.join([mark] * len(chunk))})",
                  list(chunk))


def _forget_portions(c: Any, mark: str, seqs: Sequence[int]) -> None:
    """Inside the caller's write transaction (both dialects): rows ``seqs`` were deleted,
    or recalled (a tombstone has no text): their portions leave the search."""
    for at in range(0, len(seqs), PURGE_CHUNK):
        chunk = list(seqs[at:at + PURGE_CHUNK])
        for table in ("object_portions", "object_portions_pending"):
            c.execute(f"DELETE FROM {table} WHERE seq IN ({_marks(mark, chunk)})", chunk)  # noqa: S608


def _pending_portions(mark: str, limit: int) -> tuple[str, list[Any]]:
    """The query of Store.portions_pending (both dialects)."""
    columns = ", ".join("o." + c.strip() for c in _OBJECT_COLUMNS.split(","))
    return (f"SELECT {columns} FROM object_portions_pending w JOIN objects o ON "  # noqa: S608
            f"o.seq = w.seq ORDER BY w.seq LIMIT {mark}", [limit])


def _label_portions(c: Any, mark: str, gates: Mapping[int, tuple[Label | None, Label | None]],
                    label_id: Callable[[Label], int]) -> int:
    """Store.label_portions inside the caller's write transaction (both dialects)."""
    kept = 0
    for seq, (name, description) in gates.items():
        cur = c.execute(f"DELETE FROM object_portions_pending WHERE seq = {mark}", (seq,))  # noqa: S608
        if cur.rowcount != 1:
            continue  # recalled or deleted since, or kept by another thread
        c.execute(f"DELETE FROM object_portions WHERE seq = {mark}", (seq,))  # noqa: S608
        if name is not None or description is not None:
            c.execute("INSERT INTO object_portions (seq, name_label, description_label) "  # noqa: S608
                      f"VALUES ({mark}, {mark}, {mark})",
                      (seq, None if name is None else label_id(name),
                       None if description is None else label_id(description)))
        kept += 1
    return kept


def _portions_again(c: Any) -> None:
    """Inside the relabel's last transaction (both dialects): the portions' labels kept are
    dropped and every version with portions (not recalled) waits for them again
    (Store.portions_pending), to be worked out under the text being recorded."""
    c.execute("DELETE FROM object_portions")
    c.execute("DELETE FROM object_portions_pending")
    c.execute("INSERT INTO object_portions_pending (seq) SELECT seq FROM objects "
              "WHERE has_portions <> 0 AND recalled IS NULL")


def _labels_row(c: Any) -> tuple[str | None, str | None] | None:
    """The labels_agreement row (both dialects): the text the stored labels are under, and
    the one they are being worked out under (each None when not); None: no row yet."""
    row = c.execute("SELECT content_hash, relabelling FROM labels_agreement").fetchone()
    return None if row is None else (row[0], row[1])


def _labels_current(c: Any, expected: str | None) -> None:
    """Inside the caller's write transaction (both dialects), before it writes labels:
    refused unless the stored labels are under ``expected``, the agreement text this
    process applies (Store.labelled_under; None: not checked)."""
    if expected is None:
        return
    row = _labels_row(c)
    if row is None or row[0] != expected or row[1] is not None:
        now = "none recorded" if row is None else (
            f"being worked out under {row[1]}" if row[1] is not None else f"under {row[0]}")
        raise StoreError(f"this process applies agreement text {expected}, but the stored "
                         f"labels are {now}: the agreement was amended since it started, "
                         "and it stores no label under the old text",
                         hint="restart the node's processes (serve) so that they apply the "
                         "text pinned")


def _begin_relabel(c: Any, mark: str, content_hash: str) -> tuple[bool, str | None]:
    """Store.begin_relabel inside the caller's write transaction (both dialects)."""
    row = _labels_row(c)
    if row is None:
        c.execute("INSERT INTO labels_agreement (one, content_hash, relabelling) "  # noqa: S608
                  f"VALUES (1, NULL, {mark})", (content_hash,))
        return True, None
    if row[0] == content_hash and row[1] is None:
        return False, row[0]
    c.execute(f"UPDATE labels_agreement SET relabelling = {mark}", (content_hash,))  # noqa: S608
    return True, row[0]


def _versions_after(mark: str, seq: int, limit: int) -> tuple[str, list[Any]]:
    """The query of Store.versions_after (both dialects)."""
    return (f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE seq > {mark} AND "  # noqa: S608
            f"recalled IS NULL ORDER BY seq LIMIT {mark}", [seq, limit])


def _relabel_versions(c: Any, mark: str, labels: Sequence[tuple[StoredObject, Label, Label]],
                      content_hash: str, upto: int, audit: Callable[[], Sequence[AuditEvent]],
                      label_id: Callable[[Label], int]) -> bool:
    """Store.relabel_versions inside the caller's write transaction (both dialects): row by
    row through the primary key and object by object through the unique index, never a
    statement PostgreSQL's planner could turn into a scan of the table (each statement
    run for all of them at once: psycopg pipelines them, not a round trip each)."""
    row = _labels_row(c)
    if row is not None and row[0] == content_hash and row[1] is None:
        return True  # done by another process meanwhile: the same labels
    if row is None or row[1] != content_hash:
        raise StoreError(f"the stored labels are not being worked out under agreement text "
                         f"{content_hash} (another process began working them out under "
                         f"{row[1] if row else 'none'})",
                         hint="restart the node's processes so that they all apply the text "
                         "pinned")
    if labels:  # one recalled since it was read is left
        c.executemany(f"UPDATE objects SET label_id = {mark}, banner_id = {mark} WHERE "  # noqa: S608
                      f"seq = {mark} AND recalled IS NULL",
                      [(label_id(base), label_id(banner), version.seq)
                       for version, base, banner in labels])
        held = _collections_held(c)
        c.executemany(_supersede_sql(mark, held), [
            (*held, object_id)
            for object_id in sorted({version.object_id for version, _, _ in labels})])
    if c.execute(f"SELECT 1 FROM objects WHERE seq > {mark} AND recalled IS NULL "  # noqa: S608
                 "LIMIT 1", (upto,)).fetchone() is not None:
        return False  # stored since it was read: worked out before the text is recorded
    _portions_again(c)
    c.execute(f"UPDATE labels_agreement SET content_hash = {mark}, relabelling = NULL",  # noqa: S608
              (content_hash,))
    _append_audit(c, audit(), mark)
    return True


def _supersede_again(c: Any, mark: str, object_id: str) -> None:
    """Work out ``superseded`` afresh for every row of ``object_id`` (both dialects), after
    its versions were relabelled or deleted."""
    held = _collections_held(c)
    c.execute(_supersede_sql(mark, held), (*held, object_id))


def _supersede_sql(mark: str, held: Sequence[str]) -> str:
    """The statement of :func:`_supersede_again`, for the collections ``held``
    (:func:`_collections_held`) and one object id, bound in that order."""
    newer = ("CASE WHEN EXISTS (SELECT 1 FROM objects n WHERE "  # noqa: S608
             f"{_alike('n', 'objects')} AND n.version > objects.version) THEN 1 ELSE 0 END")
    # only the rows it changes are written (each write is a new row version on PostgreSQL)
    return (f"UPDATE objects SET superseded = {newer} WHERE {_held_in(mark, held)} AND "  # noqa: S608
            f"object_id = {mark} AND superseded <> {newer}")


# The marking-definitions an object cites go into the outbox of each party it is queued
# for, just ahead of it, in its transaction (docs/federation.md): the first stored row of
# each, unless recalled (found by the unique (collection, id, version) index). An entry
# there already that was given up is tried again (an object needs it now); one delivered
# stays delivered: a partner gets a definition once. {held}: the collections held, bound
# as a list (_collections_held).
_QUEUE_CITED = (
    "INSERT INTO outbox (party, seq, enqueued) SELECT {m}, seq, {m} FROM objects "
    "WHERE {held} AND object_id = {m} AND recalled IS NULL ORDER BY seq LIMIT 1 "
    "ON CONFLICT (party, seq) DO UPDATE SET attempts = 0 WHERE outbox.delivered IS NULL")
_MARKING_ID = re.compile(r"marking-definition--[0-9A-Fa-f-]{36}")


def _queue_cited(c: Any, mark: str, party: str, obj: NewObject, when: str,
                 queued: set[tuple[str, str]], held: Sequence[str]) -> None:
    """Queue for ``party`` the stored marking-definitions ``obj`` cites, inside the
    caller's write transaction (both dialects), each once per transaction. ``held``:
    the collections held (:func:`_collections_held`)."""
    sql = _QUEUE_CITED.format(m=mark, held=_held_in(mark, held))
    for ref in obj.marking_refs:
        if (party, ref) not in queued:
            queued.add((party, ref))
            c.execute(sql, (party, when, *held, ref))


def _enqueue_select(object_ids: Sequence[str] | None,
                    among: Callable[[str, Sequence[Any], list[Any]], str],
                    held: Sequence[str]) -> tuple[str, list[Any]]:
    """The rows ``Store.enqueue`` chooses from, in seq order: every one held, or those of
    ``object_ids`` and the marking-definitions they may cite, each part found through
    its index (every index of objects leads with the collection: the collections
    ``held`` are bound, :func:`_collections_held`). ``among`` is the dialect's test of a
    column against a list bound as one parameter (``_in`` here): a consent token's ids
    are not one parameter each, which SQLite (32,766 by default) and PostgreSQL (65,535)
    cap."""
    # constant SQL: the column list and placeholders, every value bound
    select = f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE recalled IS NULL"  # noqa: S608
    if object_ids is None:
        return f"{select} ORDER BY seq", []
    if not object_ids:
        return f"{select} AND 1 = 0", []
    params: list[Any] = []  # in the order of the SQL
    definitions = among("collection_id", held, params)
    named = among("collection_id", held, params)
    ids = among("object_id", object_ids, params)
    return (f"{select} AND {definitions} AND object_type = 'marking-definition' UNION "
            f"{select} AND {named} AND {ids} ORDER BY seq", params)


def _queue(c: Any, mark: str, party: str, seqs: Iterable[int]) -> int:
    """Queue ``seqs`` for ``party`` in the write transaction ``c`` (``mark``: the
    placeholder); how many were added: an entry queued already is left, and not counted."""
    when = timestamp(utc_now())
    sql = ("INSERT INTO outbox (party, seq, enqueued) VALUES (?, ?, ?) "
           "ON CONFLICT (party, seq) DO NOTHING").replace("?", mark)
    return sum(c.execute(sql, (party, seq, when)).rowcount for seq in seqs)


def _enqueue_order(rows: Iterable[StoredObject],
                   decide: Callable[[StoredObject], bool]) -> list[int]:
    """The seqs of ``rows`` (in seq order) that ``decide`` allows, each preceded by the
    marking-definitions among ``rows`` it cites that were not allowed on their own, once.
    A body is parsed only when such a definition's id is in it."""
    first: dict[str, int] = {}  # marking-definition id → its first row
    waiting: set[str] = set()  # definitions not allowed on their own (yet)
    chosen: dict[int, None] = {}
    for row in rows:
        if row.object_type == "marking-definition":
            first.setdefault(row.object_id, row.seq)
            if decide(row):
                chosen[row.seq] = None
            elif first[row.object_id] == row.seq:
                waiting.add(row.object_id)
            continue
        if not decide(row):
            continue
        if waiting and waiting.intersection(_MARKING_ID.findall(row.body)):
            for ref in cited_markings(json.loads(row.body)):
                if ref in waiting:
                    chosen[first[ref]] = None
                    waiting.discard(ref)
        chosen[row.seq] = None
    return list(chosen)


def _append_audit(c: Any, events: Sequence[AuditEvent], mark: str = "?") -> int:
    """Append ``events`` inside the caller's write transaction (which holds the write lock,
    so leaf indexes are contiguous, and so is each originator's numbering: an event to
    number takes the next number among the events about its originator's objects).
    Shared by both backends: ``mark`` is the dialect's placeholder. Returns the first new
    leaf index. Only the event rows are written here (the durable part a request waits
    for); the index of objects to events is written by the integrator (a page of 1,000
    objects would cost 1,000 random index inserts)."""
    try:
        row = c.execute("SELECT max(idx) FROM audit_events").fetchone()
        first = 0 if row[0] is None else int(row[0]) + 1
        if not events:
            return first
        # One statement however many originators, or none: a denied object's event is
        # numbered and a missing one's is not, and the two must cost the same SQL.
        origins = sorted({str(e.originator) for e in events if e.seq_at is not None})
        values, param = (("json_each(?) v", json.dumps(origins)) if mark == "?" else
                         ("unnest(%s::text[]) AS v(value)", origins))
        following = {origin: 0 if top is None else int(top) + 1 for origin, top in c.execute(
            "SELECT v.value, (SELECT max(seq) FROM audit_events "  # noqa: S608
            f"WHERE originator = v.value) FROM {values}", (param,)).fetchall()}
        macs = APPENDING.get()
        rows = []
        for i, e in enumerate(events):
            seq = None
            if e.seq_at is not None and e.originator is not None:
                seq = following[e.originator]
                following[e.originator] = seq + 1
            body = e.numbered(seq)
            rows.append((first + i, e.at, e.kind, e.person, e.party, e.originator, body, seq,
                         None if macs is None else macs.of(first + i, body)))
        q = ", ".join([mark] * 9)
        c.executemany(f"INSERT INTO audit_events ({_AUDIT_COLUMNS}) VALUES ({q})",  # noqa: S608
                      rows)
    except Exception as exc:
        if _left_to_the_store(exc):
            raise
        # The caller's transaction rolls back: an act whose events are refused is not done
        raise AuditError(f"the audit log could not record: {_first_line(exc)}",
                         hint="the act was not done; check the database and disk") from exc
    return first


# The parties named by events of a kind (Store.audit_parties), either dialect.
_AUDIT_PARTIES = ("SELECT DISTINCT party FROM audit_events WHERE kind = {m} "
                  "AND party IS NOT NULL ORDER BY party")
# Where a partner audit watch has checked to (Store.partner_audit_cursor), either dialect.
_WATCH_SELECT = ("SELECT read_after, next_seq, checked FROM partner_audit_cursors "
                 "WHERE party = {m}")


def _keep_partner_events(c: Any, mark: str, party: str, after: int, expect: int,
                         when: str, events: Sequence[KeptEvent],
                         audit: Sequence[AuditEvent] = ()) -> bool:
    """Inside a write transaction: keep ``events`` and move the cursor forward, appending
    ``audit`` if it moves (Store.set_partner_audit_cursor). Whether it moved."""
    row = c.execute(_WATCH_SELECT.format(m=mark), (party,)).fetchone()
    was = (-1, 0) if row is None else (int(row[0]), int(row[1]))
    moves = after >= was[0] and (after, expect) != was  # as the update below decides
    if events:
        filing = [filed_under(e.body) for e in events]
        c.executemany("INSERT INTO partner_events "  # noqa: S608
                      "(party, leaf, seq, body, proof, size, kind) "
                      f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}, {mark}, {mark}) "
                      "ON CONFLICT (party, leaf) DO NOTHING",
                      [(party, e.index, e.seq, e.body, e.proof, e.size, kind)
                       for e, (kind, _) in zip(events, filing, strict=True)])
        c.executemany("INSERT INTO partner_event_refs (party, object_id, leaf) "  # noqa: S608
                      f"VALUES ({mark}, {mark}, {mark}) ON CONFLICT DO NOTHING",
                      [(party, oid, e.index) for e, (_, ids) in zip(events, filing, strict=True)
                       for oid in sorted(ids)])
    c.execute("INSERT INTO partner_audit_cursors (party, read_after, next_seq, checked) "  # noqa: S608
              f"VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT (party) DO UPDATE SET "
              "read_after = excluded.read_after, next_seq = excluded.next_seq, "
              "checked = excluded.checked "
              "WHERE excluded.read_after >= partner_audit_cursors.read_after",
              (party, after, expect, when))
    if moves and audit:
        _append_audit(c, audit, mark)
    return moves


def _partner_events(c: Any, mark: str, party: str, after: int, before: int | None,
                    limit: int | None, objects: Sequence[str] = (),
                    kinds: Sequence[str] = ()) -> list[KeptEvent]:
    """Store.partner_events for either dialect. Of some ``kinds``: each kind's events
    by leaf (index partner_events_by_kind), and those filed under no kind, whose bodies
    say (events kept before migration 0033, and bodies with no kind to file), merged."""
    if not kinds:
        return _partner_rows(c, mark, party, after, before, limit, objects)
    runs = [_partner_rows(c, mark, party, after, before, limit, objects, kind=kind)
            for kind in sorted(set(kinds))]
    unfiled: list[KeptEvent] = []
    start = after
    while limit is None or len(unfiled) < limit:
        page = _partner_rows(c, mark, party, start, before, KIND_PAGE, objects, kind=None)
        unfiled += [e for e in page if _of_kind(e.body, kinds)]
        if len(page) < KIND_PAGE:
            break
        start = page[-1].index
    merged = heapq.merge(*runs, unfiled, key=lambda e: e.index)
    return list(merged if limit is None else itertools.islice(merged, limit))


def _of_kind(body: str, kinds: Sequence[str]) -> bool:
    """Whether an event filed under no kind is of one of ``kinds``, as its body says; one
    whose body does not decode to an object is taken, for its check
    (AuditLog.verify_kept) to say what is wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # altered here: its check says so
        return True
    return not isinstance(data, dict) or data.get("kind") in kinds


def _partner_rows(c: Any, mark: str, party: str, after: int, before: int | None,
                  limit: int | None, objects: Sequence[str] = (), *,
                  kind: str | EllipsisType | None = ...) -> list[KeptEvent]:
    """The events kept after leaf ``after`` (below ``before``, naming one of
    ``objects``), at most ``limit``, by leaf; filed under ``kind`` if given (None: under
    none)."""
    sql = ("SELECT leaf, seq, body, proof, size, kind FROM partner_events "  # noqa: S608
           f"WHERE party = {mark} AND leaf > {mark}")
    args: list[Any] = [party, after]
    if kind is None:
        sql += " AND kind IS NULL"
    elif isinstance(kind, str):
        sql += f" AND kind = {mark}"
        args.append(kind)
    if before is not None:
        sql += f" AND leaf < {mark}"
        args.append(before)
    if objects:  # by the index of the objects each names (partner_event_refs)
        sql += (f" AND leaf IN (SELECT leaf FROM partner_event_refs WHERE party = {mark} "  # noqa: S608
                f"AND object_id IN ({', '.join([mark] * len(objects))}))")
        args += [party, *objects]
    sql += " ORDER BY leaf"
    if limit is not None:
        sql += f" LIMIT {mark}"
        args.append(limit)
    return [KeptEvent(int(r[0]), None if r[1] is None else int(r[1]), str(r[2]),
                      _bytes(r[3]), int(r[4]), r[5]) for r in c.execute(sql, args)]


def damage(exc: BaseException) -> str | None:
    """What SQLite's ``exc`` says, if it says the database file was damaged or written
    to by something other than intelpact ("file is not a database", "database disk image
    is malformed", a text value that is not UTF-8), else None: not a locked or full
    database, nor a constraint. Without the text of the value it could not decode, which
    sqlite3 quotes: an object's body, say, is not for a log or a terminal."""
    if type(exc) is sqlite3.DatabaseError:
        return str(exc)
    if isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(UNDECODABLE):
        return str(exc).split(" with text ", 1)[0]
    return None


def _text_or_bytes(value: bytes) -> str | bytes:
    """A text value as sqlite3 gives it, or its bytes if they are not UTF-8 (see
    SQLiteStore._judged)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value


def _bytes(value: Any) -> bytes:
    """A value as the bytes it is hashed as: text as its UTF-8 bytes. SQLite keeps text
    in a BLOB column, or bytes in a text one (SQLiteStore._judged), if a row was altered
    so: hashed as they are, they fail their check (a proof or a leaf hash that does not
    verify) rather than stopping every read of the events with a TypeError."""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _partner_refs_select(party: str, start: int, stop: int | None, mark: str
                         ) -> tuple[str, list[Any]]:
    """The query behind ``partner_event_refs`` (index partner_event_refs_by_leaf) for
    either dialect."""
    sql = (f"SELECT object_id, leaf FROM partner_event_refs WHERE party = {mark} "  # noqa: S608
           f"AND leaf >= {mark}")
    args: list[Any] = [party, start]
    if stop is not None:
        sql += f" AND leaf < {mark}"
        args.append(stop)
    return sql + " ORDER BY leaf, object_id", args


def _numbered_kept(c: Any, mark: str, party: str, before: int) -> int:
    return int(c.execute("SELECT COUNT(seq) FROM partner_events "  # noqa: S608
                         f"WHERE party = {mark} AND leaf < {mark}",
                         (party, before)).fetchone()[0])


def _numbered_select(originator: str, before: int | None, mark: str
                     ) -> tuple[str, list[Any]]:
    """The query behind ``audit_numbered`` for either dialect: the newest event about
    ``originator``'s objects below ``before`` (index audit_by_originator). Events are
    numbered from the first one appended by a version that numbers them, so its number
    (NULL if it came before) says how many were numbered up to it."""
    if before is None:
        return ("SELECT idx, seq FROM audit_events WHERE originator = "  # noqa: S608
                f"{mark} ORDER BY idx DESC LIMIT 1", [originator])
    return (f"SELECT idx, seq FROM audit_events WHERE originator = {mark} "  # noqa: S608
            f"AND idx < {mark} ORDER BY idx DESC LIMIT 1", [originator, before])


def _numbered(row: Any) -> tuple[int, int]:
    if row is None:
        return 0, -1
    return (0 if row[1] is None else int(row[1]) + 1), int(row[0])


def _left_to_the_store(exc: Exception) -> bool:
    """Whether ``exc`` is one the store's write transaction maps itself (either driver's
    PEP 249 OperationalError: a full disk, a server gone; DataError: text PostgreSQL
    cannot hold), rather than the audit log's refusal to record (a constraint, a trigger,
    a damaged table)."""
    return any(k.__name__ in ("OperationalError", "DataError") for k in type(exc).__mro__)


def _first_line(exc: Exception) -> str:
    """The driver's own message, on one line (PostgreSQL's primary message, without its
    context lines)."""
    diag = getattr(exc, "diag", None)
    text = getattr(diag, "message_primary", None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _refs_select(start: int, stop: int | None, mark: str) -> tuple[str, list[Any]]:
    """The query behind ``audit_refs`` (index audit_refs_by_event) for either dialect."""
    if stop is None:  # bounded all the same: SQLite sorts a text above every integer
        return (f"SELECT object_id, idx FROM audit_refs WHERE idx >= {mark} "  # noqa: S608
                f"AND idx <= {mark} ORDER BY idx, object_id", [start, MAX_INTEGER])
    return (f"SELECT object_id, idx FROM audit_refs WHERE idx >= {mark} AND idx < {mark} "  # noqa: S608
            "ORDER BY idx, object_id", [start, stop])


def _audit_select(where: AuditFilter, mark: str, *, before: int | None = None,
                  newest: bool = False) -> tuple[str, list[Any]]:
    """The query behind ``find_audit`` (oldest first) and ``latest_audit`` (``newest``
    first, below ``before``) for either dialect; every value is bound."""
    clauses = [f"e.idx > {mark}"]
    params: list[Any] = [where.after]
    if before is not None:
        clauses.append(f"e.idx < {mark}")
        params.append(before)
    for column, value in (("e.party", where.party), ("e.originator", where.originator)):
        if value is not None:
            clauses.append(f"{column} = {mark}")
            params.append(value)
    if where.persons:
        clauses.append("e.person IN (" + ", ".join([mark] * len(where.persons)) + ")")
        params.extend(where.persons)
    if where.kinds:
        clauses.append("e.kind IN (" + ", ".join([mark] * len(where.kinds)) + ")")
        params.extend(where.kinds)
    if where.since is not None:
        clauses.append(f"e.at >= {mark}")
        params.append(where.since)
    if where.until is not None:
        clauses.append(f"e.at <= {mark}")
        params.append(where.until)
    if where.object_id is not None:
        clauses.append(f"e.idx IN (SELECT r.idx FROM audit_refs r "  # noqa: S608
                       f"WHERE r.object_id = {mark})")
        params.append(where.object_id)
    params.append(where.limit)
    columns = ", ".join("e." + c.strip() for c in _AUDIT_COLUMNS.split(","))
    return (f"SELECT {columns} FROM audit_events e WHERE {' AND '.join(clauses)} "  # noqa: S608
            f"ORDER BY e.idx{' DESC' if newest else ''} LIMIT {mark}"), params


# Compromise reports: shared by both backends (``mark`` is the dialect's placeholder; the
# caller holds the write transaction). Column lists are constants; values are bound.
_COMPROMISE_COLUMNS = ("report_id, direction, reporter, originator, object_count, filed, "
                       "discovered, deadline, body, delivered, acknowledged, ack_body, closed, "
                       "close_body, history_checked, history_check")
_MESSAGE_COLUMNS = "message_id, report_id, party, kind, body, made, delivered, attempts, error"
_STEPS = {"ack": ("acknowledged", "ack_body"), "close": ("closed", "close_body")}


def _add_compromise(c: Any, mark: str, report: CompromiseRecord, send_to: str | None,
                    events: Sequence[AuditEvent],
                    alert: tuple[str, str | None, str] | None = None) -> bool:
    if c.execute(f"SELECT 1 FROM compromise_reports WHERE report_id = {mark}",  # noqa: S608
                 (report.report_id,)).fetchone() is not None:
        return False
    values = dataclasses.astuple(report)
    c.execute(f"INSERT INTO compromise_reports ({_COMPROMISE_COLUMNS}) "  # noqa: S608
              f"VALUES ({', '.join([mark] * len(values))})", values)
    if send_to is not None:
        _queue_message(c, mark, report.report_id, send_to, "report", report.body, report.filed)
    if alert is not None:
        _raise_alert(c, mark, *alert, report.filed, ())
    if events:
        _append_audit(c, events, mark)
    return True


def _compromise_checked(c: Any, mark: str, report_id: str, when: str, outcome: str,
                        events: Sequence[AuditEvent],
                        alert: tuple[str, str | None, str, AuditEvent] | None) -> bool:
    c.execute(f"UPDATE compromise_reports SET history_checked = {mark}, history_check = "  # noqa: S608
              f"{mark} WHERE report_id = {mark}", (when, outcome, report_id))
    if events:
        _append_audit(c, events, mark)
    return alert is not None and _raise_alert(c, mark, *alert[:3], when, [alert[3]],
                                              once=True)


def _compromise_step(c: Any, mark: str, report_id: str, step: str, when: str, body: str,
                     send_to: str | None, events: Sequence[AuditEvent]) -> bool:
    if step not in _STEPS:
        raise StoreError(f"unknown compromise report step {step!r}")
    at, text = _STEPS[step]
    changed = c.execute(f"UPDATE compromise_reports SET {at} = {mark}, {text} = {mark} "  # noqa: S608
                        f"WHERE report_id = {mark} AND {at} IS NULL",
                        (when, body, report_id)).rowcount
    if not changed:
        return False
    if send_to is not None:
        _queue_message(c, mark, report_id, send_to, step, body, when)
    if events:
        _append_audit(c, events, mark)
    return True


def _queue_message(c: Any, mark: str, report_id: str, party: str, kind: str, body: str,
                   when: str) -> None:
    c.execute(f"INSERT INTO compromise_messages (report_id, party, kind, body, made) "  # noqa: S608
              f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark})",
              (report_id, party, kind, body, when))


def _compromise_delivered(c: Any, mark: str, message_id: int, when: str,
                          receipt: str) -> None:
    row = c.execute(f"SELECT report_id, kind FROM compromise_messages WHERE message_id = "  # noqa: S608
                    f"{mark} AND delivered IS NULL", (message_id,)).fetchone()
    if row is None:
        return  # delivered already (by another process): the first receipt stays
    c.execute(f"UPDATE compromise_messages SET delivered = {mark}, receipt = {mark}, "  # noqa: S608
              f"error = NULL WHERE message_id = {mark}", (when, receipt, message_id))
    if row[1] == "report":
        c.execute(f"UPDATE compromise_reports SET delivered = {mark} WHERE report_id = "  # noqa: S608
                  f"{mark} AND delivered IS NULL", (when, row[0]))


def _messages_select(report_id: str | None, mark: str) -> tuple[str, list[Any]]:
    where, params = ("", []) if report_id is None else (f" WHERE report_id = {mark}",
                                                         [report_id])
    return (f"SELECT {_MESSAGE_COLUMNS} FROM compromise_messages{where} "  # noqa: S608
            "ORDER BY message_id"), params


def _retired_keys(c: Any, mark: str, party: str) -> dict[str, int]:
    return {str(r[0]): int(r[1]) for r in c.execute(
        "SELECT key_id, last_size FROM party_keys "  # noqa: S608
        f"WHERE party = {mark} AND last_size IS NOT NULL", (party,))}


def _retire_key(c: Any, mark: str, party: str, old: tuple[str, str], new: tuple[str, str],
                when: str, seal: Sealer) -> int:
    """This node's key rotation inside a write transaction (Store.retire_key): the tree
    brought up to the last event appended, the old key's final checkpoint of it, the old
    key retired at its size, the new one recorded, the announcement queued for every
    partner and the audit events appended, all or nothing."""
    while True:
        size, root = _integrate(c, mark, _RETIRE_BATCH, None)
        row = c.execute("SELECT max(idx) FROM audit_events").fetchone()
        if row[0] is None or size > int(row[0]):
            break
    note, announcement, events = seal(size, root, Tree(lambda coords: _nodes(c, coords, mark)))
    c.execute(f"INSERT INTO audit_checkpoints (size, note, signed) VALUES "  # noqa: S608
              f"({mark}, {mark}, {mark}) ON CONFLICT (size) DO NOTHING",
              (size, note, when))
    c.execute("INSERT INTO party_keys (party, key_id, public_key, added, last_size) "  # noqa: S608
              f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) ON CONFLICT (party, key_id) "
              "DO UPDATE SET last_size = excluded.last_size",
              (party, old[0], old[1], when, size))
    c.execute("INSERT INTO party_keys (party, key_id, public_key, added) VALUES "  # noqa: S608
              f"({mark}, {mark}, {mark}, {mark}) ON CONFLICT (party, key_id) DO NOTHING",
              (party, new[0], new[1], when))
    c.execute(f"INSERT INTO key_announcements (body, made) VALUES ({mark}, {mark})",  # noqa: S608
              (announcement, when))
    # under the write lock, the row just added is the newest (no RETURNING: SQLite 3.35)
    announcement_id = c.execute("SELECT max(announcement_id) FROM key_announcements"
                                ).fetchone()[0]
    parties = [r[0] for r in c.execute("SELECT party FROM peers ORDER BY party")]
    c.executemany(f"INSERT INTO key_deliveries (announcement_id, party) VALUES "  # noqa: S608
                  f"({mark}, {mark})", [(announcement_id, p) for p in parties])
    _append_audit(c, events, mark)
    return size


def _accept_rotation(c: Any, mark: str, party: str, old_key_id: str, peer: PeerRecord,
                     final: tuple[int, bytes, str] | None, judge: RotationCheck) -> bool:
    """A partner's key rotation inside a write transaction (Store.accept_rotation)."""
    row = c.execute(f"SELECT key_id FROM peers WHERE party = {mark}",  # noqa: S608
                    (party,)).fetchone()
    if row is None or row[0] != old_key_id:
        return False
    bound, events = judge(_Held(c, mark, party))
    if final is not None:
        size, root, note = final
        _keep_partner_checkpoint(c, mark, party, size, root, note, peer.added)
    c.execute(f"UPDATE party_keys SET last_size = {mark} WHERE party = {mark} "  # noqa: S608
              f"AND key_id = {mark}", (bound, party, old_key_id))
    _add_peer(c, mark, peer, events)
    return True


def _partner_checkpoints(c: Any, mark: str, party: str, after: int, limit: int | None
                         ) -> list[PartnerCheckpoint]:
    return [(int(r[0]), bytes(r[1]), r[2], r[3]) for r in c.execute(
        "SELECT size, root, note, received FROM partner_checkpoints "  # noqa: S608
        f"WHERE party = {mark} AND size > {mark} ORDER BY size LIMIT {mark}",
        (party, after, limit))]


_PARTNER_PARTIES = ("SELECT party FROM party_keys UNION SELECT party FROM partner_checkpoints "
                    "UNION SELECT party FROM partner_events UNION SELECT party FROM "
                    "partner_audit_cursors ORDER BY party")


class _Held(HeldCheckpoints):
    """A partner's checkpoints kept, read through ``c`` (the table's primary key)."""

    def __init__(self, c: Any, mark: str, party: str) -> None:
        self._c, self._mark, self._party = c, mark, party

    def at(self, size: int) -> PartnerCheckpoint | None:
        return self._one(f"AND size = {self._mark}", (size,))

    def largest(self, upto: int | None = None) -> PartnerCheckpoint | None:
        return self._one(("" if upto is None else f"AND size <= {self._mark} ")
                         + "ORDER BY size DESC LIMIT 1", () if upto is None else (upto,))

    def _one(self, where: str, args: tuple[int, ...]) -> PartnerCheckpoint | None:
        row = self._c.execute("SELECT size, root, note, received FROM partner_checkpoints "  # noqa: S608
                              f"WHERE party = {self._mark} {where}",
                              (self._party, *args)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]), row[2], row[3])


_LOGIN_LOCK = "SELECT locked_until, failures FROM login_failures WHERE key = {m}"


def _login_failed(c: Any, mark: str, key: str, now: float, window: float, limit: int,
                  lockout: float) -> float:
    """Store.login_failed, inside a write transaction: count the failure (a window over
    begins again), lock the key at the ``limit``-th, and delete the keys with nothing
    left to remember."""
    m, start = mark, now - window
    c.execute(f"DELETE FROM login_failures WHERE since <= {m} AND locked_until <= {m} "  # noqa: S608
              f"AND key <> {m}", (start, now, key))
    c.execute(f"INSERT INTO login_failures (key, failures, since, locked_until) "  # noqa: S608
              f"VALUES ({m}, 1, {m}, 0) ON CONFLICT (key) DO UPDATE SET "
              f"failures = CASE WHEN login_failures.since <= {m} THEN 1 "
              f"ELSE login_failures.failures + 1 END, "
              f"since = CASE WHEN login_failures.since <= {m} THEN {m} "
              f"ELSE login_failures.since END", (key, now, start, start, now))
    c.execute(f"UPDATE login_failures SET locked_until = {m}, failures = 0, since = {m} "  # noqa: S608
              f"WHERE key = {m} AND failures >= {m}", (now + lockout, now, key, limit))
    row = c.execute(_LOGIN_LOCK.format(m=m), (key,)).fetchone()
    return float(row[0])


def _count_partner_checkpoints(c: Any, mark: str, party: str) -> int:
    row = c.execute(f"SELECT kept FROM partner_checkpoint_tally WHERE party = {mark}",  # noqa: S608
                    (party,)).fetchone()
    return 0 if row is None else int(row[0])


def _add_partner_checkpoint(c: Any, mark: str, party: str, size: int, root: bytes,
                            note: str, when: str, check: HeldCheck | None) -> bool:
    """Inside a write transaction: ``check`` what is held, then keep the checkpoint."""
    if check is not None:
        check(_Held(c, mark, party))
    return _keep_partner_checkpoint(c, mark, party, size, root, note, when)


def _keep_partner_checkpoint(c: Any, mark: str, party: str, size: int, root: bytes,
                             note: str, when: str) -> bool:
    """Keep the checkpoint, and count it in its party's tally (migration 0034), unless
    one of that size is kept already."""
    cur = c.execute("INSERT INTO partner_checkpoints (party, size, root, note, received) "  # noqa: S608
                    f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark}) "
                    "ON CONFLICT (party, size) DO NOTHING", (party, size, root, note, when))
    if cur.rowcount <= 0:
        return False
    c.execute(f"INSERT INTO partner_checkpoint_tally (party, kept) VALUES ({mark}, 1) "  # noqa: S608
              "ON CONFLICT (party) DO UPDATE SET kept = partner_checkpoint_tally.kept + 1",
              (party,))
    return True


def _nodes(c: Any, coords: Sequence[Coord], mark: str = "?") -> dict[Coord, bytes]:
    """Perfect-subtree hashes by (level, index): one query for up to 500 of them, each
    found through the primary key (the list of coordinates joined to the table)."""
    found: dict[Coord, bytes] = {}
    blob = "BLOB" if mark == "?" else "BYTEA"  # a hash altered into text still reads
    for at in range(0, len(coords), 500):
        chunk = coords[at:at + 500]
        values = ", ".join([f"({mark}, {mark})"] * len(chunk))
        for level, index, value in c.execute(
                f"SELECT n.level, n.idx, CAST(n.hash AS {blob}) FROM (VALUES {values}) AS w "  # noqa: S608
                "JOIN audit_nodes n ON n.level = w.column1 AND n.idx = w.column2",
                [v for coord in chunk for v in coord]):
            found[(int(level), int(index))] = bytes(value)
    return found


def _integrate(c: Any, mark: str, limit: int, sign: Signer | None,
               refs: int | None = None, macs: EventMacs | None = None,
               forged: list[int] | None = None) -> tuple[int, bytes]:
    """Hash appended events into the tree, inside the caller's write transaction: up to
    ``limit``, and no more than those naming ``refs`` objects in all (one at least); each
    whose MAC ``macs`` does not verify is added to ``forged`` (Store.integrate_audit)."""
    row = c.execute("SELECT max(idx) FROM audit_nodes WHERE level = 0").fetchone()
    size = 0 if row[0] is None else int(row[0]) + 1
    frontier_at = blocks(0, size)
    known = _nodes(c, frontier_at, mark)
    if len(known) != len(frontier_at):
        raise StoreError(f"the audit tree of size {size} lacks subtree hashes",
                         hint="run 'intelpact audit verify' to find what was altered")
    rows = c.execute(f"SELECT idx, body, mac FROM audit_events WHERE idx >= {mark} "  # noqa: S608
                     f"ORDER BY idx LIMIT {mark}", (size, limit)).fetchall()
    for i, r in enumerate(rows):
        if int(r[0]) != size + i:
            raise StoreError(f"audit event {size + i} is missing (found {r[0]} after "
                             f"{size + i - 1})",
                             hint="run 'intelpact audit verify' to find what was altered")
    named: set[tuple[str, int]] = set()
    for taken, r in enumerate(rows):
        if refs is not None and taken and len(named) >= refs:
            rows = rows[:taken]
            break
        named.update((oid, int(r[0])) for oid in event_object_ids(r[1]))
    if macs is not None and forged is not None:
        forged.extend(int(r[0]) for r in rows if macs.problem(int(r[0]), r[1], r[2]))
    made, frontier = extend(size, [known[k] for k in frontier_at],
                            (leaf_hash(_bytes(r[1])) for r in rows))
    if made:
        c.executemany(f"INSERT INTO audit_nodes (level, idx, hash) VALUES "  # noqa: S608
                      f"({mark}, {mark}, {mark})", made)
    if named:  # sorted: the index is filled in order, page by page
        c.executemany(f"INSERT INTO audit_refs (object_id, idx) VALUES ({mark}, {mark}) "  # noqa: S608
                      "ON CONFLICT (object_id, idx) DO NOTHING", sorted(named))
    size += len(rows)
    root = fold(frontier)
    if sign is not None:
        note = sign(size, root, Tree(lambda coords: _nodes(c, coords, mark)))
        if note is not None:
            c.execute(f"INSERT INTO audit_checkpoints (size, note, signed) VALUES "  # noqa: S608
                      f"({mark}, {mark}, {mark}) ON CONFLICT (size) DO NOTHING",
                      (size, note, timestamp(utc_now())))
    return size, root


class _Clock:
    """Hands out strictly increasing microsecond timestamps within one transaction."""

    def __init__(self, last: str | None) -> None:
        self.last = dt.datetime.strptime(last, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=dt.UTC) if last else None

    def next(self) -> str:
        now = utc_now()
        if self.last is not None and now <= self.last:
            now = self.last + dt.timedelta(microseconds=1)
        self.last = now
        return timestamp(now)


_INSERT_COLUMNS = ("collection_id", "object_id", "object_type", "spec_version", "version",
                   "date_added", "label_id", "banner_id", "originator", "has_portions", "body",
                   "body_hash", "published_by", "received_from")
# Rows per INSERT statement: a run is cut greedily into these sizes, so that a connection
# prepares (and its statement cache keeps) five statements at most, about 1 MiB in all,
# not one per run length (a prepared 500-row INSERT is about 0.7 MiB); only sizes within
# the connection's variable limit are used (32,766 by default since SQLite 3.32).
_RUN_SIZES = (500, 100, 20, 5, 1)


@functools.lru_cache(maxsize=2 * len(_RUN_SIZES))  # both dialects
def _insert_sql(rows: int, mark: str = "?", returning: str = "") -> str:
    """A multi-row INSERT of ``rows`` objects that skips stored versions (``mark``: the
    dialect's placeholder; ``returning``: columns of the rows inserted, if wanted)."""
    row = "(" + ", ".join([mark] * len(_INSERT_COLUMNS)) + ")"
    return (f"INSERT INTO objects ({', '.join(_INSERT_COLUMNS)}) "  # noqa: S608
            f"VALUES {', '.join([row] * rows)} "
            "ON CONFLICT (collection_id, object_id, version) DO NOTHING"
            + (f" RETURNING {returning}" if returning else ""))


def _existing(obj: NewObject, version: str, stored_hash: str) -> AddResult:
    """The result for a version already stored: the same body, or a conflict."""
    if stored_hash == obj.body_hash:
        return AddResult(obj.object_id, version, "exists", "already stored (identical)")
    return AddResult(obj.object_id, version, "conflict",
                     f"a different object with id {obj.object_id} and version {version} is "
                     "already stored; objects are immutable per (id, modified): issue a new "
                     "version")


def _commas(values: Iterable[str]) -> str:
    items = sorted(values)
    return "," + ",".join(items) + "," if items else ""


def _statements(sql: str) -> list[str]:
    """Split a migration into statements. Migrations hold no string literal with
    '--' or ';', so comments can be cut at '--' and statements at ';' (but for the
    statements inside a trigger's BEGIN … END, which stay with their trigger, and those
    of a PostgreSQL function's body, between two '$$')."""
    lines = [ln.split("--", 1)[0] for ln in sql.splitlines()]
    out: list[str] = []
    in_trigger = in_body = False
    for piece in (s.strip() for s in "\n".join(lines).split(";")):
        if in_trigger:  # a trigger's body ends with a line END
            out[-1] += ";\n" + piece
            in_trigger = piece.upper() != "END"
        elif in_body:
            out[-1] += ";\n" + piece
        elif piece:
            out.append(piece)
            in_trigger = piece.upper().startswith("CREATE TRIGGER") and \
                re.search(r"\bBEGIN\b", piece.upper()) is not None
        in_body = bool(out) and out[-1].count("$$") % 2 == 1
    return out


def _stored(row: Sequence[Any]) -> StoredObject:
    return StoredObject(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                        row[9], bool(row[10]), row[11], row[12])


def _person(row: Sequence[Any]) -> PersonRecord:
    return PersonRecord(row[0], row[1], row[2], tuple(json.loads(row[3])),
                        tuple(json.loads(row[4])), tuple(json.loads(row[5])), row[6], row[7],
                        row[8])


def _of_objects(object_ids: Sequence[str] | None, keyword: str, mark: str
                ) -> tuple[str, list[Any]]:
    """A condition on ``object_id`` that keeps only ``object_ids`` (none: every row),
    after ``keyword`` (WHERE, AND), with its parameters, in either dialect."""
    if object_ids is None:
        return "", []
    if mark == "?":
        params: list[Any] = []
        return f"{keyword} {_in('object_id', object_ids, params)} ", params
    return f"{keyword} object_id = ANY(%s) ", [list(object_ids)]


def _in(column: str, values: Sequence[Any], params: list[Any]) -> str:
    params.append(json.dumps(list(values)))
    return f"{column} IN (SELECT value FROM json_each(?))"  # noqa: S608 - constant column


def _select(collection_id: str, readable: Sequence[int], query: Query,
            portion: str | None = None, floor: int | None = None) -> tuple[str, list[Any]]:
    """The one query behind every read: visibility, filters, version choice and paging.
    With text, ``portion`` (one of PORTIONS) walks that portion's text index instead of
    the unmarked text's, matching only where the portion's label is readable: the page
    is the merge of the three walks (:func:`_merged`); ``floor``, for short text, is
    where its window starts (:func:`_window`), found once for the three."""
    params: list[Any] = [collection_id]
    where = ["o.collection_id = ?", _in("o.label_id", readable, params), "o.recalled IS NULL"]
    if query.cursor is not None:
        seq, _, fingerprint = query.cursor.partition(".")
        if not (seq.isascii() and seq.isdigit()) or fingerprint != query.fingerprint() \
                or len(seq) > 18:
            raise BadCursor(f"'next' value {query.cursor!r} does not belong to this query",
                            hint="repeat the request with the same filters and the 'next' "
                            "value it returned")
        where.append("o.seq < ?" if query.newest_first else "o.seq > ?")
        params.append(int(seq))
        if query.text:  # the same bound on the text index's rowid: its walk starts there
            where.append("t.rowid < ?" if query.newest_first else "t.rowid > ?")
            params.append(int(seq))
    if query.ids:
        where.append(_in("o.object_id", query.ids, params))
    _search(query, where, params, collection_id, readable, portion, floor)
    if len(query.types) == 1:
        where.append("o.object_type = ?")
        params.append(query.types[0])
    elif query.types:
        where.append(_in("o.object_type", query.types, params))
    if query.spec_versions:
        where.append(_in("o.spec_version", query.spec_versions, params))
    if query.added_after is not None:
        where.append("o.date_added > ?")
        params.append(query.added_after)
        # seq and date_added grow together (one writer at a time, one clock), so the
        # walk in seq order starts after the last row added by then, found through
        # objects_by_added, instead of walking the collection from its start.
        where.append("o.seq > coalesce((SELECT a.seq FROM objects a INDEXED BY "
                     "objects_by_added WHERE a.collection_id = ? AND a.date_added <= ? "
                     "ORDER BY a.date_added DESC LIMIT 1), 0)")
        params.extend([collection_id, query.added_after])
    current = query.versions == ("last",)
    if current:  # a row superseded is nobody's latest: the walk skips it (0016)
        where.append("o.superseded = 0")
    if "all" not in query.versions:
        choices = []
        newer = ("NOT EXISTS (SELECT 1 FROM objects n WHERE n.collection_id = o.collection_id "
                 "AND n.object_id = o.object_id AND n.version {op} o.version AND {vis}{spec})")
        spec = ""
        spec_params: list[Any] = []
        if query.spec_versions:
            spec_params.append(json.dumps(list(query.spec_versions)))
            spec = " AND n.spec_version IN (SELECT value FROM json_each(?))"
        for choice in query.versions:
            if choice in ("last", "first"):
                params.append(json.dumps(list(readable)))
                params.extend(spec_params)
                choices.append(newer.format(
                    op=">" if choice == "last" else "<",
                    vis="n.label_id IN (SELECT value FROM json_each(?))", spec=spec))
            else:
                choices.append("o.version = ?")
                params.append(choice)
        where.append("(" + " OR ".join(choices) + ")")
    params.append(query.limit + 1)
    # Only constant SQL is joined here; every value is a bound parameter.
    columns = ", ".join("o." + c.strip() for c in _OBJECT_COLUMNS.split(","))
    # Force the plan: one object's versions through the (collection, id, version) unique
    # index; a page by walking seq order (of one type, when one is asked for) and
    # stopping at `limit` (SQLite would otherwise read every visible row through
    # objects_by_label and sort them for each page); of latest versions, the rows not
    # superseded only.
    walk = "objects_current" if current else "objects"
    index = ("sqlite_autoindex_objects_1" if query.ids else
             f"{walk}_by_type" if len(query.types) == 1 else f"{walk}_by_seq")
    order = "o.seq DESC" if query.newest_first else "o.seq"
    source = f"objects o INDEXED BY {index}"
    if query.text:  # walk the text index's matches in seq order, each row by its key
        # (CROSS JOIN: a portion's index first, whatever the planner guesses: driven by
        # the objects below a cursor, it ran one FTS5 query per row, 200 ms at 5,000)
        source = ("objects_text t JOIN objects o ON o.seq = t.rowid" if portion is None else
                  "objects_portion_text t CROSS JOIN object_portions p ON p.seq = t.rowid "
                  "CROSS JOIN objects o ON o.seq = t.rowid")
        order = order.replace("o.seq", "t.rowid")
    sql = (f"SELECT {columns} FROM {source} "  # noqa: S608
           f"WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?")
    return sql, params


def _window(collection_id: str, readable: Sequence[int]) -> tuple[str, list[Any]]:
    """The seq from which short text is looked for: the SHORT_TEXT_ROWS-th newest row the
    reader may see (0: fewer)."""
    params: list[Any] = [collection_id]
    visible = _in("w.label_id", readable, params)
    params.append(SHORT_TEXT_ROWS)
    return ("SELECT coalesce((SELECT min(seq) FROM (SELECT w.seq FROM objects w INDEXED BY "  # noqa: S608
            f"objects_by_seq WHERE w.collection_id = ? AND {visible} AND w.recalled IS NULL "
            "ORDER BY w.seq DESC LIMIT ?)), 0)", params)


def _search(query: Query, where: list[str], params: list[Any], collection_id: str,
            readable: Sequence[int], portion: str | None = None,
            floor: int | None = None) -> None:
    """The console's search filters (store/migrations/0011_search.sql): the text through
    the trigram index over name and description (``t``, joined by seq: the query walks
    its matches newest first and stops at the page), the rest on the row itself. With
    ``portion``, the text is that portion's (0020_portion_search.sql), and only where
    the label gating it is one the reader may read (``p``, object_portions)."""
    if query.text:
        if portion is not None:
            assert portion in PORTIONS  # a column name: constant SQL only
            where.append(_in(f"p.{portion}_label", readable, params))
        column = "text" if portion is None else portion
        if len(query.text) >= SHORT_TEXT:  # a phrase of trigrams: the index finds it
            where.append(f"t.{'objects_text' if portion is None else portion} MATCH ?")
            params.append('"' + query.text.replace('"', '""') + '"')
        else:  # too short for a trigram: the index's table is scanned, only from the
            # SHORT_TEXT_ROWS-th newest row the reader may see (a rowid range for FTS5)
            where.append(f"t.{column} LIKE ? ESCAPE '\\'")
            params.append(contains_pattern(query.text))
            if floor is None:
                window, more = _window(collection_id, readable)
                where.append(f"t.rowid >= ({window})")
                params.extend(more)
            else:
                where.append("t.rowid >= ?")
                params.append(floor)
    if query.originators:
        where.append(_in("o.originator", query.originators, params))
    if query.label_ids:
        where.append(_in("o.label_id", query.label_ids, params))
    if query.added_before is not None:
        where.append("o.date_added < ?")
        params.append(query.added_before)
    if query.refers_to is not None:  # the id as a JSON string: bodies are canonical JSON
        where.append("instr(o.body, ?) > 0")
        params.append(json.dumps(query.refers_to))
