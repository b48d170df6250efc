"""The national store: PostgreSQL through psycopg 3 and a connection pool.

The same interface and the same meanings as the embedded store (sqlite.py),
on the same schema (migrations/postgres/, numbered like the SQLite ones).

Every writing transaction starts with ``pg_advisory_xact_lock(WRITE_LOCK)``: like
SQLite's ``BEGIN IMMEDIATE``, writers run one at a time across every process and
machine using the database, so ``seq``, ``outbox_id`` and ``date_added`` increase
together and commit in that order; a reader paging with ``seq > cursor`` can
never skip a row that commits later with a smaller ``seq``. Reads take no lock.
Commits are durable: a session whose ``synchronous_commit`` is off (or local) is
set to ``on``; sessions plan no parallel query (``_configure``). Every value is a
bound parameter; the readable labels are one ``bigint[]`` (``label_id = ANY(%s)``)
inside the one query that pages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from ..crypto.merkle import Coord
from ..model.labels import Label
from .base import (
    SERVE_LOCK,
    SERVING_HINT,
    SHORT_TEXT,
    SHORT_TEXT_ROWS,
    AddResult,
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
    KeptEvent,
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
    RotationCheck,
    Sealer,
    SessionRecord,
    Signer,
    StatusRecord,
    Store,
    StoredObject,
    StoreError,
    StoreFull,
    StoreUnavailable,
    contains_pattern,
    fold_text,
    label_from_key,
    label_key,
    refuse_newer_schema,
    schema_read,
    serving_refusal,
    timestamp,
    utc_now,
)
from .sqlite import (
    _AUDIT_COLUMNS,
    _AUDIT_PARTIES,
    _COMPROMISE_COLUMNS,
    _CONSENT_COLUMNS,
    _INTENTS,
    _LOGIN_LOCK,
    _MACS_FROM,
    _MESSAGE_COLUMNS,
    _NOT_RECALLED,
    _NOTICE_COLUMNS,
    _PARTNER_PARTIES,
    _RECALL_COLUMNS,
    _RESOLUTIONS,
    _RUN_SIZES,
    _WATCH_SELECT,
    MAX_ATTEMPTS,
    PORTIONS,
    _accept_rotation,
    _add_compromise,
    _add_markings,
    _add_notice,
    _add_onward,
    _add_partner_checkpoint,
    _add_peer,
    _add_person,
    _add_pulled,
    _add_refusals,
    _add_token,
    _append_audit,
    _audit_select,
    _begin_relabel,
    _Clock,
    _collections_held,
    _commas,
    _compromise_checked,
    _compromise_delivered,
    _compromise_step,
    _consent,
    _consent_step,
    _count_partner_checkpoints,
    _disseminations,
    _enqueue_order,
    _enqueue_select,
    _existing,
    _forget_portions,
    _Held,
    _insert_sql,
    _integrate,
    _intend_reclassify,
    _keep_onward,
    _keep_partner_events,
    _label_portions,
    _labels_current,
    _login_failed,
    _messages_select,
    _nodes,
    _numbered,
    _numbered_kept,
    _numbered_select,
    _of_objects,
    _partner_checkpoints,
    _partner_events,
    _partner_refs_select,
    _pending_portions,
    _person,
    _purge,
    _purge_chosen,
    _queue,
    _queue_cited,
    _queue_portions,
    _queued_for,
    _raise_alert,
    _recall_refused,
    _recalled_here,
    _reclassified,
    _reclassified_meanwhile,
    _record_release,
    _refs_select,
    _relabel_rows,
    _relabel_versions,
    _resolve_alert,
    _retire_key,
    _retired_keys,
    _revoke_person,
    _revoke_tokens,
    _set_password,
    _statements,
    _stored,
    _stored_meanwhile,
    _supersede_added,
    _supersede_again,
    _told,
    _versions_after,
    _withdrawn,
)

log = logging.getLogger("intelpact.store")

# The advisory lock every writing transaction holds (an arbitrary constant: "intelpact").
WRITE_LOCK = 0x696E74656C706163
# Planner statistics. Autovacuum analyses a table a minute or so after a large change;
# until then a page query over freshly loaded objects is planned without statistics (at
# 100,000 objects just loaded: 5,400 objects/s paged, 19,500 after ANALYZE). So the store
# analyses `objects` itself, in the background, whenever the rows it added since the last
# analysis reach the rows there were then (ANALYZE_MIN_ROWS at least).
ANALYZE_MIN_ROWS = 1_000
FOLDED_MIGRATION = 40  # objects_folded: the versions stored before it are folded then
FOLD_BATCH = 1_000  # versions folded at a time by that migration
_OBJECT_COLUMNS = ("seq, collection_id, object_id, object_type, spec_version, version, "
                   "date_added, label_id, banner_id, originator, has_portions, body, body_hash")
# The text the console's search looks in, as SQLite indexes it (store/sqlite.py, _TEXT):
# the name and description, folded (objects_folded, migration 0040), each only if no
# granular marking selects it, since a marked portion may be withheld from the reader
# (docs/console.md). Only a row with portions has its body read, as jsonb: a NUL escape
# (which jsonb cannot hold) is read as U+FFFD, so the JSON stays valid.
_MARKED = ("EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof("
           "j->'granular_markings') = 'array' THEN j->'granular_markings' ELSE '[]' END) g, "
           "jsonb_array_elements(CASE WHEN jsonb_typeof(g->'selectors') = 'array' THEN "
           "g->'selectors' ELSE '[]' END) s WHERE s #>> '{{}}' = '{p}' OR "
           "s #>> '{{}}' LIKE '{p}.%%')")
_BODY = r"(SELECT replace(o.body, '\u0000', '\ufffd')::jsonb AS j) AS b"
_TEXT = ("(SELECT " + " || chr(10) || ".join(  # noqa: S608 - constant SQL
    f"CASE WHEN o.has_portions = 0 THEN f.{p} WHEN (SELECT {_MARKED.format(p=p)} "  # noqa: S608
    f"FROM {_BODY}) THEN '' ELSE f.{p} END" for p in ("name", "description"))
    + " FROM objects_folded f WHERE f.seq = o.seq)")
# Whether a version's folded name and description (``h``, objects_folded) hold a text: a
# LIKE of the expression the trigram index (migration 0041) is made of, written as it is
# (E'\n', not chr(10): the planner does not match that to the index), which the index
# answers for text of three characters or more, where pg_trgm could be made; else it is
# tested row by row.
_HOLDS_TEXT = "h.name || E'\\n' || h.description LIKE %s ESCAPE '\\'"
# A granular-marked name or description (a portion) is searched where the label gating it
# (object_portions, migration 0020) is one the reader may read: a parameter per portion
# for the readable label ids, then one for the text.
_PORTION_TEXT = ("EXISTS (SELECT 1 FROM object_portions p JOIN objects_folded f ON "  # noqa: S608
                 "f.seq = p.seq WHERE p.seq = o.seq AND ("
                 + " OR ".join(f"(p.{p}_label = ANY(%s::bigint[]) AND strpos(f.{p}, %s) > 0)"
                               for p in PORTIONS)
                 + "))")


class _PipelineAborted(logging.Filter):
    """Drop psycopg's "error ignored terminating <Pipeline>: pipeline aborted": it is
    logged when a pipeline is left because a statement in it failed (a full disk, say),
    and that first error, which psycopg raises, is the one that says what happened."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (record.msg == "error ignored terminating %r: %s" and len(args) == 2
                    and isinstance(args[0], psycopg.Pipeline)
                    and isinstance(args[1], psycopg.errors.PipelineAborted))


logging.getLogger("psycopg").addFilter(_PipelineAborted())


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) for every PostgreSQL migration shipped, in order."""
    folder = resources.files("intelpact.store") / "migrations" / "postgres"
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def describe(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        info = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://…"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    return f"postgresql://{info.get('user', '')}@{host}:{port}/{info.get('dbname', '')}"


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Each session of the pool: durable commits, and no parallel query. Every read here
    is a page with a limit through an index; a parallel plan's start-up (a worker process
    and a Gather Merge) cost more than it saved: a page of 1,000 latest versions of
    100,000 rows took 24-37 ms with one worker and 9-12 ms without (docs/node.md)."""
    row = conn.execute("SHOW synchronous_commit").fetchone()
    if row is not None and row[0] in ("off", "local"):
        conn.execute("SET synchronous_commit = on")
    conn.execute("SET max_parallel_workers_per_gather = 0")


def _configure_read_only(conn: psycopg.Connection[Any]) -> None:
    """Each session of a read-only store's pool (`audit verify`): as _configure, and
    every transaction READ ONLY, so the server itself refuses a write."""
    _configure(conn)
    conn.execute("SET default_transaction_read_only = on")


class PostgresStore(Store):
    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10,
                 timeout: float = 30.0, migrate: bool = True, serving: bool = False,
                 readonly: bool = False) -> None:
        """``migrate`` False: a schema older than the code's is refused (schema_read),
        not migrated. ``serving``: hold the serve lock (SERVE_LOCK) shared until close(),
        on a connection of its own (a session lock). ``readonly``: not migrated, every
        write refused, and every session's transactions READ ONLY
        (default_transaction_read_only), so the server refuses any write too."""
        self.url = url
        self.readonly = readonly
        migrate = migrate and not readonly
        self._where = describe(url)
        self._snapshot = threading.local()  # .conn: this thread's snapshot (snapshot())
        self._labels: dict[int, Label] = {}
        self._label_ids: dict[str, int] = {}
        self._lock = threading.Lock()
        self._serving: psycopg.Connection[Any] | None = None  # holds SERVE_LOCK shared
        try:  # one connection first: a server that is down or refuses us is said at once,
            # in one line, not after the pool's retries (and their warnings) until timeout
            psycopg.connect(url, connect_timeout=max(1, int(timeout)), autocommit=True).close()
        except psycopg.OperationalError as exc:
            reason = next((line.strip() for line in str(exc).splitlines() if line.strip()),
                          type(exc).__name__)
            raise StoreError(f"cannot connect to PostgreSQL at {self._where}: {reason}",
                             hint="check that the server runs and that database, user and "
                             "password in node.toml's 'database' are right") from None
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=min_size, max_size=max_size, timeout=timeout, open=False,
            kwargs={"autocommit": True},
            configure=_configure_read_only if readonly else _configure, name="intelpact")
        try:
            self._pool.open(wait=True, timeout=timeout)
        except PoolTimeout:
            self._pool.close()
            raise StoreError(f"cannot connect to PostgreSQL at {self._where}",
                             hint="check that the server runs and that database, user and "
                             "password in node.toml's 'database' are right") from None
        try:
            self.schema_version = self._migrate() if migrate else self._unmigrated()
            if serving:
                self._hold_serving(timeout)
            self._load_labels()
            row = self._one("SELECT reltuples FROM pg_class WHERE oid = 'objects'::regclass")
        except BaseException:
            self._pool.close()
            if self._serving is not None:
                self._serving.close()
            raise
        self._analysed = max(0, int(row[0])) if row else 0  # -1: never analysed
        self._added = 0
        self._analyser: threading.Thread | None = None

    def _hold_serving(self, timeout: float) -> None:
        """Hold SERVE_LOCK shared, for this store's life, on a connection of its own: a
        newer intelpact's migration then refuses to change the schema under this process
        (and its server frees the lock if this process dies). Waits while a migration
        holds it; then the schema is read again (that one may have made it newer)."""
        try:
            self._serving = psycopg.connect(self.url, connect_timeout=max(1, int(timeout)),
                                            autocommit=True)
            self._serving.execute("SELECT pg_advisory_lock_shared(%s)", (SERVE_LOCK,))
        except psycopg.OperationalError as exc:
            raise self._gone(exc) from None
        self.schema_version = self._unmigrated()

    # -- connections -------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        held: psycopg.Connection[Any] | None = getattr(self._snapshot, "conn", None)
        try:
            if held is not None:  # this thread reads in its snapshot
                yield held
                return
            with self._pool.connection() as conn:
                yield conn
        except psycopg.DataError as exc:
            raise _bad_text(exc) from None
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise self._gone(exc) from None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        if getattr(self._snapshot, "conn", None) is not None:
            yield  # within one already
            return
        with self._read() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SELECT 1").fetchone()  # the snapshot is taken by a first query
            self._snapshot.conn = conn
            try:
                yield
            finally:
                self._snapshot.conn = None

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        self._refuse_write()
        try:
            with self._pool.connection() as conn, conn.transaction(), self._appending():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield conn
        except psycopg.errors.DiskFull as exc:  # SQLSTATE 53100; rolled back
            # (the server's own HINT line is left out: a message stays one line)
            raise StoreFull("the PostgreSQL store cannot grow: "
                            f"{exc.diag.message_primary or exc}: a disk of the database "
                            "server is full", hint=StoreFull.HINT) from None
        except psycopg.DataError as exc:
            raise _bad_text(exc) from None
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise self._gone(exc) from None

    def _gone(self, exc: Exception) -> Exception:
        """StoreUnavailable when ``exc`` says the server cannot be reached or went away
        (no SQLSTATE, class 08, or 57P01-57P03: shut down, crashed, starting);
        otherwise ``exc`` itself (a deadlock, a cancelled query: not an outage)."""
        state = getattr(exc, "sqlstate", None)
        if isinstance(exc, PoolTimeout) or state is None or state.startswith("08") \
                or state in ("57P01", "57P02", "57P03"):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return StoreUnavailable(f"the PostgreSQL server at {self._where} cannot be "
                                    f"reached or went away: {first}")
        return exc

    def _all(self, sql: str, params: Sequence[Any] = (), *, prepare: bool | None = None
             ) -> list[tuple[Any, ...]]:
        with self._read() as conn:
            return conn.execute(sql, params, prepare=prepare).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._read() as conn:
            return conn.execute(sql, params).fetchone()

    # -- the security officer's desk: bounded, newest first ----------------------------
    def latest_disseminations(self, limit: int, offset: int = 0) -> list[Dissemination]:
        return [Dissemination(*r) for r in self._all(
            "SELECT party, object_id, version, body_hash, released, receipt_at, receipt_id, via "
            "FROM disseminations ORDER BY released DESC, party DESC, object_id DESC "
            "LIMIT %s OFFSET %s", (limit, offset))]

    def latest_recalls(self, limit: int, offset: int = 0) -> list[RecallRecord]:
        return [RecallRecord(*r) for r in self._all(
            f"SELECT {_RECALL_COLUMNS} FROM recalls ORDER BY issued DESC, object_id DESC, "  # noqa: S608
            "party DESC LIMIT %s OFFSET %s",
            (limit, offset))]

    def latest_compromise_reports(self, limit: int, offset: int = 0
                                  ) -> list[CompromiseRecord]:
        return [CompromiseRecord(*r) for r in self._all(
            f"SELECT {_COMPROMISE_COLUMNS} FROM compromise_reports "  # noqa: S608
            "ORDER BY filed DESC, report_id DESC LIMIT %s OFFSET %s", (limit, offset))]

    def latest_consents(self, limit: int, offset: int = 0) -> list[ConsentRecord]:
        return [_consent(r) for r in self._all(
            f"SELECT {_CONSENT_COLUMNS} FROM consents "  # noqa: S608
            "ORDER BY made DESC, request_id DESC LIMIT %s OFFSET %s", (limit, offset))]

    def close(self) -> None:
        with self._lock:
            analyser, self._analyser = self._analyser, None
        if analyser is not None:
            analyser.join()
        self._pool.close()
        if self._serving is not None:  # the serve lock, released
            self._serving.close()
            self._serving = None

    def _grew(self, rows: int) -> None:
        """Count rows added; start an analysis of `objects` when they are due one."""
        with self._lock:
            self._added += rows
            busy = self._analyser is not None and self._analyser.is_alive()
            if busy or self._added < max(ANALYZE_MIN_ROWS, self._analysed):
                return
            self._analysed += self._added
            self._added = 0
            self._analyser = threading.Thread(target=self._analyse, daemon=True,
                                              name="intelpact-analyse")
            self._analyser.start()

    def _analyse(self) -> None:
        try:
            with self._pool.connection() as conn:
                # objects_folded too: its statistics (and its trigram index's) tell the
                # planner how rare a searched text is, and so to look it up in the index
                conn.execute("ANALYZE objects, objects_folded")
        except Exception:  # noqa: BLE001 - autovacuum will do it later; queries still answer
            log.warning("could not refresh the planner's statistics of objects",
                        exc_info=True)

    def _unmigrated(self) -> int:
        """The schema's version, read only: refused if older than the code's."""
        try:
            done = [int(row[0]) for row in self._all("SELECT version FROM schema_migrations")]
        except psycopg.errors.UndefinedTable:
            raise StoreError(f"{self._where}: no intelpact database here",
                             hint="check database in node.toml") from None
        return schema_read(self._where, done, [version for version, _ in migrations()])

    def _migrate(self) -> int:
        with self._write() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                      "(version INTEGER PRIMARY KEY, applied TEXT NOT NULL)")
            done = {row[0] for row in c.execute("SELECT version FROM schema_migrations")}
            current = max(done, default=0)
            shipped = migrations()
            newest = shipped[-1][0] if shipped else 0
            refuse_newer_schema(self._where, current, newest)
            due = {version for version, _ in shipped} - done
            if due and not (c.execute("SELECT pg_try_advisory_xact_lock(%s)",
                                      (SERVE_LOCK,)).fetchone() or (False,))[0]:
                # a serve holds it shared: refused, and the transaction rolled back
                raise StoreError(serving_refusal(self._where), hint=SERVING_HINT)
            for version, sql in shipped:
                if version in done:
                    continue
                for statement in _statements(sql):
                    c.execute(statement)
                if version == FOLDED_MIGRATION:  # what SQL cannot do: Python's folding
                    _fold_stored(c)
                c.execute("INSERT INTO schema_migrations VALUES (%s, %s)",
                          (version, timestamp(utc_now())))
                current = max(current, version)  # a gap filled keeps the newest
        return current

    # -- labels -----------------------------------------------------------------------
    def _load_labels(self) -> None:
        """Learn labels added since the last look (by this or another process)."""
        with self._lock:
            newest = max(self._labels, default=0)
        rows = self._all("SELECT label_id, label_key FROM labels WHERE label_id > %s",
                         (newest,))
        with self._lock:
            for label_id, key in rows:
                self._labels[int(label_id)] = label_from_key(key)
                self._label_ids[key] = int(label_id)

    def labels(self) -> dict[int, Label]:
        self._load_labels()
        with self._lock:
            return dict(self._labels)

    def _label_id(self, conn: psycopg.Connection[Any], label: Label,
                  pending: dict[str, int]) -> int:
        key = label_key(label)
        found = self._label_ids.get(key) or pending.get(key)
        if found is not None:
            return found
        row = conn.execute("SELECT label_id FROM labels WHERE label_key = %s",
                           (key,)).fetchone()
        if row is None:
            row = conn.execute(
                "INSERT INTO labels (label_key, agreement, rank, originator, rel_to, caveats, "
                "communities, sources) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "RETURNING label_id",
                (key, label.agreement, label.rank, label.originator,
                 _commas(label.rel_to) if label.rel_to is not None else None,
                 _commas(label.caveats),
                 json.dumps(sorted(sorted(c) for c in label.communities)),
                 _commas(label.sources))).fetchone()
        assert row is not None
        pending[key] = int(row[0])
        return int(row[0])

    # -- collections --------------------------------------------------------------------
    def add_collection(self, collection: Collection,
                       audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            c.execute("INSERT INTO collections (collection_id, title, description, alias, "
                      "created) VALUES (%s, %s, %s, %s, %s)",
                      (collection.collection_id, collection.title, collection.description,
                       collection.alias, timestamp(utc_now())))
            _append_audit(c.cursor(), audit, "%s")

    def collections(self) -> list[Collection]:
        rows = self._all("SELECT collection_id, title, description, alias FROM collections "
                         "ORDER BY created, collection_id")
        return [Collection(*row) for row in rows]

    def collection(self, collection_id: str) -> Collection | None:
        row = self._one("SELECT collection_id, title, description, alias FROM collections "
                        "WHERE collection_id = %s", (collection_id,))
        return Collection(*row) if row else None

    # -- objects ---------------------------------------------------------------------
    def add_objects(self, collection_id: str, objects: Sequence[NewObject],
                    markings: Iterable[tuple[str, str]] = (),
                    release: Callable[[NewObject], Iterable[str]] | None = None,
                    audit: Callable[[Sequence[AddResult]], Sequence[AuditEvent]] | None = None,
                    reclassified: Mapping[str, Iterable[dt.datetime]] | None = None
                    ) -> list[AddResult]:
        results: list[AddResult] = []
        pending: dict[str, int] = {}
        queued: set[tuple[str, str]] = set()  # (party, marking-definition) queued already
        with self._write() as c:
            _labels_current(c, self.labelled_under)
            if c.execute("SELECT 1 FROM collections WHERE collection_id = %s",
                         (collection_id,)).fetchone() is None:
                raise StoreError(f"no collection {collection_id}")
            _add_markings(c, "%s", markings)
            _reclassified_meanwhile(c, "%s", objects, reclassified)
            # date_added increases with seq, so the newest row has the latest date_added
            # (and the primary key finds it without a scan).
            last = c.execute("SELECT date_added FROM objects ORDER BY seq DESC LIMIT 1"
                             ).fetchone()
            clock = _Clock(last[0] if last else None)
            # Three passes, so that the inserts travel in one pipeline (not one round
            # trip each while the write lock is held): decide what to insert, insert,
            # then read what each insert did.
            slots: list[AddResult | None] = []  # None: inserted in the pipeline below
            planned: list[tuple[NewObject, str, str, tuple[Any, ...]]] = []
            unversioned: dict[tuple[str, str], str] = {}  # planned above: (id, hash) → version
            recalled = _recalled_here(c, "%s", objects)
            for obj in objects:
                added = clock.next()
                version = obj.version or added
                if (obj.object_id, obj.originator) in recalled:
                    slots.append(_recall_refused(obj))
                    continue
                if obj.version is None:  # no created/modified (an SCO): same body, same object
                    key = (obj.object_id, obj.body_hash)
                    same = c.execute("SELECT version FROM objects WHERE collection_id = %s "
                                     "AND object_id = %s AND body_hash = %s",
                                     (collection_id, *key)).fetchone()
                    known = same[0] if same is not None else unversioned.get(key)
                    if known is not None:  # stored already, or earlier in this batch
                        slots.append(AddResult(obj.object_id, known, "exists",
                                               "already stored (identical)"))
                        continue
                    unversioned[key] = version
                label_id = self._label_id(c, obj.label, pending)
                banner_id = self._label_id(c, obj.banner, pending)
                planned.append((obj, version, added, (
                    collection_id, obj.object_id, obj.object_type, obj.spec_version, version,
                    added, label_id, banner_id, obj.originator, int(obj.has_portions),
                    obj.body, obj.body_hash, obj.published_by, obj.received_from)))
                slots.append(None)
            seqs = _insert_rows(c, [params for *_, params in planned])
            if self.schema_version >= FOLDED_MIGRATION:  # else folded as it is migrated
                _add_folded(c, {seqs[(o.object_id, v)]: o.body
                                for o, v, _, _ in reversed(planned) if (o.object_id, v) in seqs})
            _supersede_added(c, "%s", list(seqs.values()))
            _queue_portions(c, "%s", [seqs[(o.object_id, v)] for o, v, _, _ in planned
                                      if o.has_portions and (o.object_id, v) in seqs])
            held = _collections_held(c) if release is not None and any(
                o.marking_refs for o, *_ in planned) else []
            done = iter(planned)
            with c.pipeline():
                for i, slot in enumerate(slots):
                    if slot is not None:
                        continue
                    obj, version, added, _ = next(done)
                    # popped: a second copy of one version in this batch was not inserted
                    seq = seqs.pop((obj.object_id, version), None)
                    if seq is None:  # this version is stored already: the same body?
                        row = c.execute("SELECT body_hash FROM objects WHERE collection_id = "
                                        "%s AND object_id = %s AND version = %s",
                                        (collection_id, obj.object_id, version)).fetchone()
                        slots[i] = _existing(obj, version, str(row[0]) if row else "")
                        continue
                    if release is not None:
                        for party in release(obj):
                            _queue_cited(c, "%s", party, obj, added, queued, held)
                            c.execute("INSERT INTO outbox (party, seq, enqueued) VALUES "
                                      "(%s, %s, %s) ON CONFLICT (party, seq) DO NOTHING",
                                      (party, seq, added))
                    slots[i] = AddResult(obj.object_id, version, "added", "stored")
            results.extend(r for r in slots if r is not None)
            if audit is not None:
                _append_audit(c.cursor(), audit(results), "%s")
        self._load_labels()
        self._grew(sum(r.outcome == "added" for r in results))
        return results

    def query(self, collection_id: str, readable: Sequence[int], query: Query) -> Page:
        if query.text:  # folded as the name and description searched are (objects_folded)
            query = dataclasses.replace(query, text=fold_text(query.text))
        sql, params = select(collection_id, readable, query)
        # a search is planned for its text each time (never prepared): a generic plan,
        # which the server takes after a few runs of a prepared one, knows nothing of
        # the text, and reads every version rather than ask the trigram index for a
        # rare one (7 ms became 60 ms at 50,000 objects)
        rows = self._all(sql, params, prepare=False if query.text else None)
        more = len(rows) > query.limit
        rows = rows[:query.limit]
        objects = [_stored(r) for r in rows]
        next_cursor = f"{objects[-1].seq}.{query.fingerprint()}" if more and objects else None
        return Page(objects, more, next_cursor)

    def portions_pending(self, limit: int = 1000) -> list[StoredObject]:
        return [_stored(r) for r in self._all(*_pending_portions("%s", limit))]

    def label_portions(self, gates: Mapping[int, tuple[Label | None, Label | None]]) -> int:
        pending: dict[str, int] = {}
        with self._write() as c:
            _labels_current(c, self.labelled_under)
            kept = _label_portions(c.cursor(), "%s", gates,
                                   lambda label: self._label_id(c, label, pending))
        self._load_labels()
        return kept

    def labels_agreement(self) -> str | None:
        row = self._one("SELECT content_hash FROM labels_agreement WHERE relabelling IS NULL")
        return row[0] if row else None

    def begin_relabel(self, content_hash: str) -> tuple[bool, str | None]:
        with self._write() as c:
            return _begin_relabel(c, "%s", content_hash)

    def versions_after(self, seq: int, limit: int) -> list[StoredObject]:
        return [_stored(r) for r in self._all(*_versions_after("%s", seq, limit))]

    def relabel_versions(self, labels: Sequence[tuple[StoredObject, Label, Label]],
                         content_hash: str, upto: int,
                         audit: Callable[[], Sequence[AuditEvent]]) -> bool:
        pending: dict[str, int] = {}
        with self._write() as c:
            done = _relabel_versions(c.cursor(), "%s", labels, content_hash, upto, audit,
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
            sql, params = select(collection_id, readable, q)
            rows = [row for row in map(_stored, c.execute(sql, params))
                    if keep is None or keep(row)]
            if rows:
                c.execute("DELETE FROM objects WHERE seq = ANY(%s::bigint[])",
                          ([row.seq for row in rows],))
                _forget_portions(c, "%s", [row.seq for row in rows])
                _supersede_again(c, "%s", object_id)
                if audit is not None:
                    _append_audit(c.cursor(), audit(rows), "%s")
        return len(rows)

    def holds(self, collection_id: str, object_id: str, version: str | None,
              body_hash: str) -> bool:
        if version is None:
            return self._one("SELECT 1 FROM objects WHERE collection_id = %s AND object_id = "
                             "%s AND body_hash = %s AND recalled IS NULL",
                             (collection_id, object_id, body_hash)) is not None
        return self._one("SELECT 1 FROM objects WHERE collection_id = %s AND object_id = %s "
                         "AND version = %s AND body_hash = %s AND recalled IS NULL",
                         (collection_id, object_id, version, body_hash)) is not None

    def markings(self) -> list[str]:
        return [r[0] for r in self._all("SELECT body FROM markings ORDER BY marking_no")]

    def marking(self, marking_id: str) -> str | None:
        row = self._one("SELECT body FROM markings WHERE marking_id = %s", (marking_id,))
        return str(row[0]) if row else None

    def count(self, collection_id: str) -> int:
        row = self._one("SELECT count(*) FROM objects WHERE collection_id = %s",
                        (collection_id,))
        return int(row[0]) if row else 0

    # -- statuses ---------------------------------------------------------------------
    def save_status(self, status: StatusRecord) -> None:
        with self._write() as c:
            c.execute("INSERT INTO statuses (status_id, collection_id, owner, created, body) "
                      "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (status_id) DO UPDATE SET "
                      "body = excluded.body",
                      (status.status_id, status.collection_id, status.owner, status.created,
                       json.dumps(status.body)))

    def status(self, status_id: str) -> StatusRecord | None:
        row = self._one("SELECT status_id, collection_id, owner, created, body FROM statuses "
                        "WHERE status_id = %s", (status_id,))
        if row is None:
            return None
        return StatusRecord(row[0], row[1], row[2], row[3], json.loads(row[4]))

    # -- federation -------------------------------------------------------------------
    def add_peer(self, peer: PeerRecord, audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            _add_peer(c.cursor(), "%s", peer, audit)

    def peers(self) -> list[PeerRecord]:
        return [PeerRecord(*r) for r in self._all(
            "SELECT party, url, public_key, key_id, tls_cert, tls_fingerprint, card, added "
            "FROM peers ORDER BY party")]

    def enqueue(self, party: str, decide: Callable[[StoredObject], bool],
                object_ids: Sequence[str] | None = None) -> int:
        with self._read() as conn:
            cur = conn.execute(*_enqueue_select(object_ids, _any, _collections_held(conn)))
            chosen = _enqueue_order((_stored(r) for r in cur), decide)
        with self._write() as c:
            return _queue(c, "%s", party, chosen)

    def _outbox(self, where: str, params: Sequence[Any], key: str = "outbox_id"
                ) -> list[tuple[int, StoredObject]]:
        columns = ", ".join("o." + c.strip() for c in _OBJECT_COLUMNS.split(","))
        rows = self._all(
            f"SELECT b.{key}, {columns} FROM outbox b JOIN objects o ON o.seq = b.seq "  # noqa: S608
            f"WHERE {where} AND {_NOT_RECALLED} ORDER BY b.{key} LIMIT %s", params)
        return [(int(r[0]), _stored(r[1:])) for r in rows]

    def pending(self, party: str, limit: int) -> list[tuple[int, StoredObject]]:
        return self._outbox("b.party = %s AND b.delivered IS NULL AND b.attempts < %s",
                            (party, MAX_ATTEMPTS, limit))

    def released_after(self, party: str, after: int,
                       limit: int) -> list[tuple[int, StoredObject]]:
        return self._outbox("b.party = %s AND b.number > %s", (party, after, limit),
                            "number")

    def mark_delivered(self, party: str, outbox_ids: Sequence[int], when: str,
                       receipt: str, onward: Onward = ((), ())) -> None:
        with self._write() as c:
            _keep_onward(c.cursor(), "%s", onward)
            receipt_row = c.execute("INSERT INTO receipts (party, body, received) VALUES "
                                    "(%s, %s, %s) RETURNING receipt_id",
                                    (party, receipt, when)).fetchone()
            receipt_id = receipt_row[0] if receipt_row else None
            for outbox_id in outbox_ids:
                row = c.execute("SELECT o.object_id, o.version, o.body_hash, b.enqueued FROM "
                                "outbox b JOIN objects o ON o.seq = b.seq WHERE b.outbox_id = "
                                "%s AND b.party = %s", (outbox_id, party)).fetchone()
                if row is None:
                    continue
                c.execute("UPDATE outbox SET delivered = %s WHERE outbox_id = %s AND "
                          "delivered IS NULL", (when, outbox_id))
                c.execute("INSERT INTO disseminations (party, object_id, version, body_hash, "
                          "released, receipt_at, receipt_id) VALUES (%s, %s, %s, %s, %s, %s, "
                          "%s) ON CONFLICT (party, object_id, version) DO UPDATE SET "
                          "receipt_at = excluded.receipt_at, receipt_id = excluded.receipt_id",
                          (party, row[0], row[1], row[2], row[3], when, receipt_id))

    def failed_attempt(self, party: str, outbox_ids: Sequence[int]) -> None:
        with self._write() as c:
            c.execute("UPDATE outbox SET attempts = attempts + 1 WHERE outbox_id = "
                      "ANY(%s::bigint[]) AND party = %s", (list(outbox_ids), party))

    def record_release(self, party: str, outbox_ids: Sequence[int], when: str,
                       audit: Callable[[Sequence[int]], Sequence[AuditEvent]]) -> list[int]:
        with self._write() as c:
            return _record_release(c.cursor(), "%s", "(SELECT unnest(%s::bigint[]))", party,
                                   list(outbox_ids), when, audit)

    def add_pulled(self, party: str, objects: Sequence[tuple[str, str, str]], when: str,
                   audit: Callable[[Sequence[tuple[str, str, str]]], Sequence[AuditEvent]],
                   onward: Callable[[Sequence[tuple[str, str, str]]], Onward] | None = None
                   ) -> list[tuple[str, str, str]]:
        with self._write() as c:
            return _add_pulled(c.cursor(), "%s", party, objects, when, audit, onward)

    def disseminations(self, *, object_id: str | None = None,
                       party: str | None = None) -> list[Dissemination]:
        return [Dissemination(*r) for r in self._all(*_disseminations("%s", object_id, party))]

    def queued_for(self, object_id: str) -> list[str]:
        with self._read() as conn:
            return _queued_for(conn, "%s", object_id)

    def receipt(self, receipt_id: int) -> str | None:
        row = self._one("SELECT body FROM receipts WHERE receipt_id = %s", (receipt_id,))
        return str(row[0]) if row else None

    def pull_cursor(self, party: str) -> int:
        row = self._one("SELECT cursor FROM pull_cursors WHERE party = %s", (party,))
        return int(row[0]) if row else 0

    def set_pull_cursor(self, party: str, cursor: int) -> None:
        with self._write() as c:
            c.execute("INSERT INTO pull_cursors (party, cursor) VALUES (%s, %s) ON CONFLICT "
                      "(party) DO UPDATE SET cursor = GREATEST(pull_cursors.cursor, "
                      "excluded.cursor)", (party, cursor))

    def party_keys(self, party: str) -> dict[str, str]:
        return {r[0]: r[1] for r in self._all(
            "SELECT key_id, public_key FROM party_keys WHERE party = %s", (party,))}

    def retired_keys(self, party: str) -> dict[str, int]:
        with self._read() as conn:
            return _retired_keys(conn.cursor(), "%s", party)

    def retire_key(self, party: str, old: tuple[str, str], new: tuple[str, str], when: str,
                   seal: Sealer) -> int:
        with self._write() as c:
            return _retire_key(c.cursor(), "%s", party, old, new, when, seal)

    def accept_rotation(self, party: str, old_key_id: str, peer: PeerRecord,
                        final: tuple[int, bytes, str] | None, judge: RotationCheck) -> bool:
        with self._write() as c:
            return _accept_rotation(c.cursor(), "%s", party, old_key_id, peer, final, judge)

    def undelivered_announcements(self, party: str) -> list[tuple[int, str]]:
        return [(int(r[0]), str(r[1])) for r in self._all(
            "SELECT a.announcement_id, a.body FROM key_announcements a JOIN key_deliveries d "
            "ON d.announcement_id = a.announcement_id WHERE d.party = %s AND d.delivered IS "
            "NULL ORDER BY a.announcement_id", (party,))]

    def announcement_delivered(self, announcement_id: int, party: str, when: str) -> None:
        with self._write() as c:
            c.execute("UPDATE key_deliveries SET delivered = %s WHERE announcement_id = %s AND "
                      "party = %s", (when, announcement_id, party))

    def add_refusals(self, party: str, refused: Sequence[tuple[str, str]], when: str,
                     audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            _add_refusals(c.cursor(), "%s", party, refused, when, audit)

    def refusals(self) -> list[tuple[str, str, str, str]]:
        return [(r[0], r[1], r[2], r[3]) for r in self._all(
            "SELECT party, object_id, reason, at FROM refusals ORDER BY refusal_id")]

    # -- audit log --------------------------------------------------------------------------
    def append_audit(self, events: Sequence[AuditEvent], *, wait: bool = True) -> int | None:
        # always waits: the callers are worker threads (reads are not local)
        with self._write() as c:
            return _append_audit(c.cursor(), events, "%s")

    def audit_size(self) -> int:
        row = self._one("SELECT max(idx) FROM audit_events")
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def audit_events(self, start: int, stop: int, limit: int | None = None
                     ) -> list[AuditRecord]:
        return [AuditRecord(*r) for r in self._all(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_events WHERE idx >= %s AND idx < %s "  # noqa: S608
            "ORDER BY idx LIMIT %s", (start, stop, limit))]

    def find_audit(self, where: AuditFilter, before: int | None = None
                   ) -> list[AuditRecord]:
        sql, params = _audit_select(where, "%s", before=before)
        return [AuditRecord(*r) for r in self._all(sql, params)]

    def audit_numbered(self, originator: str, before: int | None = None
                       ) -> tuple[int, int]:
        sql, params = _numbered_select(originator, before, "%s")
        return _numbered(self._one(sql, params))

    def latest_audit(self, where: AuditFilter, before: int | None = None
                     ) -> list[AuditRecord]:
        sql, params = _audit_select(where, "%s", before=before, newest=True)
        return [AuditRecord(*r) for r in self._all(sql, params)]

    def audit_parties(self, kind: str) -> list[str]:
        return [str(r[0]) for r in self._all(_AUDIT_PARTIES.format(m="%s"), (kind,))]

    def audit_integrated(self) -> int:
        row = self._one("SELECT max(idx) FROM audit_nodes WHERE level = 0")
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def audit_refs(self, start: int, stop: int | None = None) -> list[tuple[str, int]]:
        sql, params = _refs_select(start, stop, "%s")
        return [(r[0], int(r[1])) for r in self._all(sql, params)]

    def audit_nodes(self, coords: Sequence[Coord]) -> dict[Coord, bytes]:
        with self._read() as conn:
            return _nodes(conn.cursor(), coords, "%s")

    def audit_macs_from(self) -> int | None:
        row = self._one(_MACS_FROM)
        return None if row is None else int(row[0])

    def integrate_audit(self, limit: int, sign: Signer | None = None,
                        refs: int | None = None, forged: list[int] | None = None
                        ) -> tuple[int, bytes]:
        with self._write() as c:
            return _integrate(c.cursor(), "%s", limit, sign, refs, self.event_macs, forged)

    def checkpoints(self) -> list[Checkpoint]:
        return [Checkpoint(int(r[0]), r[1], r[2]) for r in self._all(
            "SELECT size, note, signed FROM audit_checkpoints ORDER BY size")]

    def latest_checkpoint(self) -> Checkpoint | None:
        row = self._one("SELECT size, note, signed FROM audit_checkpoints "
                        "ORDER BY size DESC LIMIT 1")
        return Checkpoint(int(row[0]), row[1], row[2]) if row else None

    def add_partner_checkpoint(self, party: str, size: int, root: bytes, note: str,
                               when: str, check: HeldCheck | None = None) -> bool:
        with self._write() as c:
            return _add_partner_checkpoint(c.cursor(), "%s", party, size, root, note, when,
                                           check)

    def partner_checkpoints(self, party: str, after: int = -1, limit: int | None = None
                            ) -> list[PartnerCheckpoint]:
        with self._read() as conn:
            return _partner_checkpoints(conn.cursor(), "%s", party, after, limit)

    def partner_parties(self) -> list[str]:
        return [r[0] for r in self._all(_PARTNER_PARTIES)]

    def partner_checkpoint_at(self, party: str, size: int) -> PartnerCheckpoint | None:
        with self._read() as conn:
            return _Held(conn.cursor(), "%s", party).at(size)

    def largest_partner_checkpoint(self, party: str) -> PartnerCheckpoint | None:
        with self._read() as conn:
            return _Held(conn.cursor(), "%s", party).largest()

    def count_partner_checkpoints(self, party: str) -> int:
        with self._read() as conn:
            return _count_partner_checkpoints(conn.cursor(), "%s", party)

    def partner_audit_watch(self, party: str) -> tuple[int, int, str] | None:
        row = self._one(_WATCH_SELECT.format(m="%s"), (party,))
        return None if row is None else (int(row[0]), int(row[1]), str(row[2]))

    def set_partner_audit_cursor(self, party: str, after: int, expect: int, when: str,
                                 events: Sequence[KeptEvent] = (),
                                 audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _keep_partner_events(c.cursor(), "%s", party, after, expect, when,
                                        events, audit)

    def partner_events(self, party: str, *, after: int = -1, before: int | None = None,
                       limit: int | None = None, objects: Sequence[str] = (),
                       kinds: Sequence[str] = ()) -> list[KeptEvent]:
        with self._read() as conn:
            return _partner_events(conn.cursor(), "%s", party, after, before, limit,
                                   objects, kinds)

    def partner_event_refs(self, party: str, start: int, stop: int | None = None
                           ) -> list[tuple[str, int]]:
        sql, params = _partner_refs_select(party, start, stop, "%s")
        return [(r[0], int(r[1])) for r in self._all(sql, params)]

    def numbered_partner_events(self, party: str, before: int) -> int:
        with self._read() as conn:
            return _numbered_kept(conn.cursor(), "%s", party, before)

    def raise_alert(self, kind: str, party: str | None, detail: str, when: str,
                    audit: Sequence[AuditEvent] = (), *, once: bool = False) -> bool:
        with self._write() as c:
            return _raise_alert(c.cursor(), "%s", kind, party, detail, when, audit, once=once)

    def alerts(self) -> list[tuple[int, str, str | None, str, str]]:
        return [(int(r[0]), r[1], r[2], r[3], r[4]) for r in self._all(
            "SELECT alert_id, kind, party, detail, raised FROM alerts ORDER BY alert_id")]

    def alert_resolutions(self) -> dict[int, tuple[str, str]]:
        return {int(r[0]): (r[1], r[2]) for r in self._all(_RESOLUTIONS)}

    def resolve_alert(self, alert_id: int, when: str, note: str,
                      audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _resolve_alert(c.cursor(), "%s", alert_id, when, note, audit)

    # -- originator controls ------------------------------------------------------------
    def add_notice(self, notice: Notice, *, recall_reason: str | None = None,
                   confirms: str | None = None,
                   accounted: Callable[[Sequence[Dissemination]], str | None] | None = None,
                   audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _add_notice(c.cursor(), "%s", notice, recall_reason, audit, confirms,
                               accounted)

    def pending_notices(self, party: str, limit: int) -> list[Notice]:
        return [Notice(*r) for r in self._all(
            f"SELECT {_NOTICE_COLUMNS} FROM notices WHERE direction = 'out' AND party = %s "  # noqa: S608
            "AND delivered IS NULL AND attempts < %s ORDER BY made, notice_id LIMIT %s",
            (party, MAX_ATTEMPTS, limit))]

    def notice_delivered(self, notice_id: str, when: str, receipt: str) -> None:
        with self._write() as c:
            c.execute("UPDATE notices SET delivered = %s, receipt = %s, error = NULL WHERE "
                      "notice_id = %s AND delivered IS NULL", (when, receipt, notice_id))

    def notice_failed(self, notice_id: str, error: str, *, refused: bool) -> None:
        with self._write() as c:
            c.execute("UPDATE notices SET error = %s, attempts = attempts + %s WHERE "
                      "notice_id = %s", (error, int(refused), notice_id))

    def notices(self) -> list[Notice]:
        return [Notice(*r) for r in self._all(
            f"SELECT {_NOTICE_COLUMNS} FROM notices ORDER BY made, notice_id")]  # noqa: S608

    def notice(self, notice_id: str) -> Notice | None:
        row = self._one(f"SELECT {_NOTICE_COLUMNS} FROM notices WHERE notice_id = %s",  # noqa: S608
                        (notice_id,))
        return Notice(*row) if row else None

    def reclassifications(self, object_ids: Sequence[str] | None = None
                          ) -> list[tuple[str, str, str, str]]:
        where, params = _of_objects(object_ids, "WHERE", "%s")
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in self._all(
            "SELECT object_id, version, marking, reason FROM reclassifications "  # noqa: S608
            f"{where}ORDER BY made, object_id, version", params)]

    def intend_reclassify(self, object_id: str, version: str, reason: str | None) -> None:
        with self._write() as c:
            _intend_reclassify(c.cursor(), "%s", object_id, version, reason)

    def reclassify_intents(self) -> list[tuple[str, str, str, str]]:
        return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in self._all(_INTENTS)]

    def withdrawn(self, object_ids: Sequence[str]) -> set[tuple[str, str]]:
        with self._read() as conn:
            return _withdrawn(conn, "%s", object_ids)

    def reclassify_notices(self, object_ids: Sequence[str] | None = None) -> list[Notice]:
        where, params = _of_objects(object_ids, "AND", "%s")
        return [Notice(*r) for r in self._all(
            f"SELECT {_NOTICE_COLUMNS} FROM notices WHERE kind = 'reclassify' AND "  # noqa: S608
            f"direction = 'in' {where}ORDER BY made, notice_id", params)]

    def recalls(self, object_ids: Sequence[str] | None = None) -> list[RecallRecord]:
        where, params = _of_objects(object_ids, "WHERE", "%s")
        return [RecallRecord(*r) for r in self._all(
            f"SELECT {_RECALL_COLUMNS} FROM recalls {where}"  # noqa: S608
            "ORDER BY issued, object_id, party", params)]

    def purge(self, object_id: str, originator: str, tombstone: Callable[[StoredObject], str],
              when: str, audit: Callable[[Sequence[StoredObject]], Sequence[AuditEvent]],
              notices: Callable[[Sequence[StoredObject], Sequence[StoredObject]],
                                Sequence[Notice]] | None = None,
              which: Callable[[StoredObject], bool] | None = None,
              older_than: str | None = None) -> list[StoredObject]:
        with self._write() as c:
            return _purge(c.cursor(), "%s", object_id, originator, tombstone, when, audit,
                          notices, which, older_than)

    def purge_chosen(self, choose: Callable[[str, int], bool],
                     purging: Callable[[str, str], Purging], when: str, *,
                     after: int = 0, limit: int | None = None, once: str | None = None,
                     done: Callable[[Sequence[tuple[str, str]]], AuditEvent] | None = None
                     ) -> Purged | None:
        with self._write() as c:
            return _purge_chosen(c.cursor(), "%s", choose, purging, when, after, limit, once,
                                 done)

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
            _stored_meanwhile(c, "%s", object_id, originator, older_than, labels)
            if notice is not None and not _add_notice(c.cursor(), "%s", notice, None, ()):
                return None  # applied already
            if not _reclassified(c.cursor(), "%s", object_id, reclassified, notices):
                return None  # completed already, by another process
            told = _told(c.cursor(), "%s", object_id, originator, reclassified, tell)
            changed = _relabel_rows(c, "%s", object_id, originator, {
                version: (self._label_id(c, base, pending), self._label_id(c, banner, pending))
                for version, (base, banner) in labels.items()})
            _supersede_again(c, "%s", object_id)
            _append_audit(c.cursor(), [*audit, *told], "%s")
        self._load_labels()
        return changed

    # -- consent for third-party release (services/consent.py) ---------------------------
    def consent_step(self, record: ConsentRecord, notice: Notice | None,
                     audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _consent_step(c.cursor(), "%s", record, notice, audit)

    def consents(self) -> list[ConsentRecord]:
        return [_consent(r) for r in self._all(
            f"SELECT {_CONSENT_COLUMNS} FROM consents ORDER BY made, request_id")]  # noqa: S608

    def consent(self, request_id: str) -> ConsentRecord | None:
        rows = self._all(f"SELECT {_CONSENT_COLUMNS} FROM consents WHERE "  # noqa: S608
                         "request_id = %s", (request_id,))
        return _consent(rows[0]) if rows else None

    def add_onward(self, party: str, via: str, objects: Sequence[tuple[str, str, str]],
                   when: str, receipt: str | None, notice: Notice,
                   audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _add_onward(c.cursor(), "%s", party, via, objects, when, receipt, notice,
                               audit)

    # -- compromise reports -------------------------------------------------------------
    def add_compromise(self, report: CompromiseRecord, send_to: str | None,
                       audit: Sequence[AuditEvent] = (),
                       alert: tuple[str, str | None, str] | None = None) -> bool:
        with self._write() as c:
            return _add_compromise(c.cursor(), "%s", report, send_to, audit, alert)

    def compromise_step(self, report_id: str, step: str, when: str, body: str,
                        send_to: str | None, audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _compromise_step(c.cursor(), "%s", report_id, step, when, body, send_to,
                                    audit)

    def compromise_checked(self, report_id: str, when: str, outcome: str,
                           audit: Sequence[AuditEvent] = (),
                           alert: tuple[str, str | None, str, AuditEvent] | None = None
                           ) -> bool:
        with self._write() as c:
            return _compromise_checked(c.cursor(), "%s", report_id, when, outcome, audit, alert)

    def compromise_report(self, report_id: str) -> CompromiseRecord | None:
        row = self._one(f"SELECT {_COMPROMISE_COLUMNS} FROM compromise_reports "  # noqa: S608
                        "WHERE report_id = %s", (report_id,))
        return CompromiseRecord(*row) if row else None

    def compromise_reports(self) -> list[CompromiseRecord]:
        return [CompromiseRecord(*r) for r in self._all(
            f"SELECT {_COMPROMISE_COLUMNS} FROM compromise_reports "  # noqa: S608
            "ORDER BY filed, report_id")]

    def compromise_messages(self, report_id: str | None = None) -> list[CompromiseMessage]:
        sql, params = _messages_select(report_id, "%s")
        return [CompromiseMessage(*r) for r in self._all(sql, params)]

    def pending_compromise(self, party: str, limit: int) -> list[CompromiseMessage]:
        return [CompromiseMessage(*r) for r in self._all(
            f"SELECT {_MESSAGE_COLUMNS} FROM compromise_messages WHERE party = %s AND "  # noqa: S608
            "delivered IS NULL AND attempts < %s ORDER BY message_id LIMIT %s",
            (party, MAX_ATTEMPTS, limit))]

    def compromise_delivered(self, message_id: int, when: str, receipt: str) -> None:
        with self._write() as c:
            _compromise_delivered(c.cursor(), "%s", message_id, when, receipt)

    def compromise_failed(self, message_id: int, error: str, refused: bool) -> None:
        with self._write() as c:
            c.execute("UPDATE compromise_messages SET error = %s, attempts = attempts + %s "
                      "WHERE message_id = %s", (error, int(refused), message_id))

    # -- people -------------------------------------------------------------------------
    _PEOPLE = ("SELECT name, party, clearance, caveats, communities, roles, password_hash, "
               "created, revoked FROM people")

    def add_person(self, person: PersonRecord, audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            _add_person(c.cursor(), "%s", person, audit)

    def person(self, name: str) -> PersonRecord | None:
        row = self._one(self._PEOPLE + " WHERE name = %s", (name,))
        return _person(row) if row else None

    def people(self) -> list[PersonRecord]:
        return [_person(r) for r in self._all(self._PEOPLE + " ORDER BY name")]

    def revoke_person(self, name: str, when: str, audit: Sequence[AuditEvent] = ()) -> bool:
        with self._write() as c:
            return _revoke_person(c.cursor(), "%s", name, when, audit)

    def set_password(self, name: str, password_hash: str,
                     audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            _set_password(c.cursor(), "%s", name, password_hash, audit)

    # -- failed logins ------------------------------------------------------------------
    def login_failed(self, key: str, now: float, window: float, limit: int,
                     lockout: float) -> float:
        with self._write() as c:
            return _login_failed(c.cursor(), "%s", key, now, window, limit, lockout)

    def login_lock(self, key: str) -> tuple[float, int]:
        row = self._one(_LOGIN_LOCK.format(m="%s"), (key,))
        return (0.0, 0) if row is None else (float(row[0]), int(row[1]))

    def login_cleared(self, key: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM login_failures WHERE key = %s", (key,))

    # -- console sessions --------------------------------------------------------------
    def add_session(self, session: SessionRecord, *, idle_before: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM sessions WHERE seen < %s", (idle_before,))
            c.execute("INSERT INTO sessions (digest, name, csrf, created, seen) "
                      "VALUES (%s, %s, %s, %s, %s)",
                      (session.digest, session.name, session.csrf, session.created,
                       session.seen))

    def session(self, digest: str, *, idle_before: str) -> SessionRecord | None:
        row = self._one("SELECT digest, name, csrf, created, seen FROM sessions "
                        "WHERE digest = %s AND seen >= %s", (digest, idle_before))
        return SessionRecord(*row) if row else None

    def touch_session(self, digest: str, when: str) -> None:
        with self._write() as c:
            c.execute("UPDATE sessions SET seen = %s WHERE digest = %s AND seen < %s",
                      (when, digest, when))

    def end_session(self, digest: str) -> None:
        with self._write() as c:
            c.execute("DELETE FROM sessions WHERE digest = %s", (digest,))

    def end_sessions(self, name: str) -> int:
        with self._write() as c:
            return int(c.execute("DELETE FROM sessions WHERE name = %s", (name,)).rowcount)

    def add_token(self, digest: str, name: str, label: str, created: str,
                  audit: Sequence[AuditEvent] = ()) -> None:
        with self._write() as c:
            _add_token(c.cursor(), "%s", digest, name, label, created, audit)

    def token_owner(self, digest: str) -> str | None:
        row = self._one("SELECT t.name FROM tokens t JOIN people p ON p.name = t.name "
                        "WHERE t.digest = %s AND t.revoked IS NULL AND p.revoked IS NULL",
                        (digest,))
        return str(row[0]) if row else None

    def revoke_tokens(self, name: str, when: str, digest: str | None = None,
                      audit: Callable[[int], Sequence[AuditEvent]] | None = None) -> int:
        with self._write() as c:
            return _revoke_tokens(c.cursor(), "%s", name, when, digest, audit)


def _any(column: str, values: Sequence[str], params: list[Any]) -> str:
    """``column`` is one of ``values``, bound as one ``text[]`` (sqlite.py's ``_in``)."""
    params.append(list(values))
    return f"{column} = ANY(%s::text[])"


# -- the one query -----------------------------------------------------------------------

def select(collection_id: str, readable: Sequence[int], query: Query) -> tuple[str, list[Any]]:
    """The one query behind every read: visibility, filters, version choice and paging."""
    params: list[Any] = [collection_id, list(readable)]
    where = ["o.collection_id = %s", "o.label_id = ANY(%s::bigint[])", "o.recalled IS NULL"]
    if query.cursor is not None:
        seq, _, fingerprint = query.cursor.partition(".")
        if not (seq.isascii() and seq.isdigit()) or fingerprint != query.fingerprint() \
                or len(seq) > 18:
            raise BadCursor(f"'next' value {query.cursor!r} does not belong to this query",
                            hint="repeat the request with the same filters and the 'next' "
                            "value it returned")
        where.append("o.seq < %s" if query.newest_first else "o.seq > %s")
        params.append(int(seq))
    if query.ids:
        where.append("o.object_id = ANY(%s::text[])")
        params.append(list(query.ids))
    if query.text:
        text = query.text  # folded by fold_text (PostgresStore.query)
        # first whether the row's folded text holds it at all, which the checks below
        # need (_HOLDS_TEXT: along the trigram index, where there is one)
        where.append(f"EXISTS (SELECT 1 FROM objects_folded h WHERE h.seq = o.seq AND "  # noqa: S608
                     f"{_HOLDS_TEXT})")
        params.append(contains_pattern(text))
        # the unmarked name and description, or a portion whose label they may read
        where.append(f"(strpos({_TEXT}, %s) > 0 OR {_PORTION_TEXT})")
        params.append(text)
        for _ in PORTIONS:
            params.extend([list(readable), text])
        if len(text) < SHORT_TEXT:  # as on SQLite: the newest visible rows only
            where.append("o.seq >= coalesce((SELECT min(seq) FROM (SELECT w.seq FROM "
                         "objects w WHERE w.collection_id = %s AND w.label_id = "
                         "ANY(%s::bigint[]) AND w.recalled IS NULL ORDER BY w.seq DESC "
                         "LIMIT %s) AS newest), 0)")
            params.extend([collection_id, list(readable), SHORT_TEXT_ROWS])
    if query.originators:
        where.append("o.originator = ANY(%s::text[])")
        params.append(list(query.originators))
    if query.label_ids:
        where.append("o.label_id = ANY(%s::bigint[])")
        params.append(list(query.label_ids))
    if query.added_before is not None:
        where.append("o.date_added < %s")
        params.append(query.added_before)
    if query.refers_to is not None:  # the id as a JSON string: bodies are canonical JSON
        where.append("strpos(o.body, %s) > 0")
        params.append(json.dumps(query.refers_to))
    if query.types:
        where.append("o.object_type = ANY(%s::text[])")
        params.append(list(query.types))
    if query.spec_versions:
        where.append("o.spec_version = ANY(%s::text[])")
        params.append(list(query.spec_versions))
    if query.added_after is not None:
        where.append("o.date_added > %s")
        params.append(query.added_after)
        # As on SQLite: seq and date_added grow together (one writer at a time, _Clock),
        # so the walk in seq order starts after the last row added by then, whichever
        # index the planner would otherwise have walked from the collection's start.
        where.append("o.seq > coalesce((SELECT a.seq FROM objects a WHERE a.collection_id "
                     "= %s AND a.date_added <= %s ORDER BY a.date_added DESC LIMIT 1), 0)")
        params.extend([collection_id, query.added_after])
    if query.versions == ("last",):  # a superseded row is nobody's latest (0016)
        where.append("o.superseded = 0")
    if "all" not in query.versions:
        choices = []
        newer = ("NOT EXISTS (SELECT 1 FROM objects n WHERE n.collection_id = o.collection_id "
                 "AND n.object_id = o.object_id AND n.version {op} o.version "
                 "AND n.label_id = ANY(%s::bigint[]){spec})")
        spec = " AND n.spec_version = ANY(%s::text[])" if query.spec_versions else ""
        for choice in query.versions:
            if choice in ("last", "first"):
                params.append(list(readable))
                if query.spec_versions:
                    params.append(list(query.spec_versions))
                choices.append(newer.format(op=">" if choice == "last" else "<", spec=spec))
            else:
                choices.append("o.version = %s")
                params.append(choice)
        where.append("(" + " OR ".join(choices) + ")")
    params.append(query.limit + 1)
    # Only constant SQL is joined here; every value is a bound parameter.
    columns = ", ".join("o." + c.strip() for c in _OBJECT_COLUMNS.split(","))
    order = "o.seq DESC" if query.newest_first else "o.seq"
    sql = (f"SELECT {columns} FROM objects o WHERE {' AND '.join(where)} "  # noqa: S608
           f"ORDER BY {order} LIMIT %s")
    return sql, params


def _insert_rows(c: psycopg.Connection[Any], rows: Sequence[tuple[Any, ...]]
                 ) -> dict[tuple[str, str], int]:
    """Insert object rows (their columns in sqlite's ``_INSERT_COLUMNS`` order) with a few
    multi-row statements, skipping stored versions; the seq of each row inserted, by
    (object id, version). One statement of 500 rows costs the serving process a fraction
    of 500 single-row statements, even pipelined (bench/scale.py's ingest)."""
    seqs: dict[tuple[str, str], int] = {}
    at = 0
    while at < len(rows):
        size = next(n for n in _RUN_SIZES if n <= len(rows) - at)
        params = [value for row in rows[at:at + size] for value in row]
        for seq, object_id, version in c.execute(
                _insert_sql(size, "%s", "seq, object_id, version"), params):
            seqs[(object_id, version)] = seq
        at += size
    return seqs


def _folded(body: str) -> tuple[str, str]:
    """The name and description of a body as the search looks in them (fold_text), or
    empty: a value other than text as JSON text, a NUL (which PostgreSQL's text cannot
    hold) as U+FFFD, as the jsonb the search reads gives it, and a lone surrogate as '?'."""
    try:
        obj = json.loads(body)
    except ValueError:
        return "", ""
    found = []
    for p in ("name", "description"):
        value = obj.get(p) if isinstance(obj, dict) else None
        text = "" if value is None else value if isinstance(value, str) else json.dumps(
            value, ensure_ascii=False, separators=(",", ":"))
        found.append(fold_text(text).replace("\x00", "\ufffd")
                     .encode("utf-8", "replace").decode("utf-8"))
    return found[0], found[1]


def _add_folded(c: psycopg.Connection[Any], bodies: Mapping[int, str]) -> None:
    """Write the folded name and description (objects_folded) of each version stored,
    by seq, in the transaction that stores it."""
    if not bodies:
        return
    names, descriptions = zip(*(_folded(body) for body in bodies.values()), strict=True)
    c.execute("INSERT INTO objects_folded (seq, name, description) SELECT * FROM "
              "unnest(%s::bigint[], %s::text[], %s::text[])",
              (list(bodies), list(names), list(descriptions)))


def _fold_stored(c: psycopg.Connection[Any]) -> None:
    """Migration 0040: fold the versions stored before it, FOLD_BATCH at a time (a
    recall's tombstone has no text to fold)."""
    after = 0
    while rows := c.execute("SELECT seq, body FROM objects WHERE seq > %s AND recalled "
                            "IS NULL ORDER BY seq LIMIT %s", (after, FOLD_BATCH)).fetchall():
        _add_folded(c, dict(rows))
        after = rows[-1][0]


def _bad_text(exc: psycopg.DataError) -> Exception:
    """A value PostgreSQL cannot take (text with a NUL character, which SQLite stores and
    PostgreSQL's text type cannot): the caller's input, so a StoreError, never a crash.
    Anything else is re-raised as it is."""
    if "NUL" in str(exc):
        return StoreError("a text value holds a NUL (0x00) character, which the store "
                          "cannot keep or match", hint="remove the NUL character")
    return exc
