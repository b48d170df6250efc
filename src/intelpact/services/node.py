"""A national node: its configuration, agreement, store and services, opened together."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..config import (
    NodeConfig,
    _sync_dir,
    earlier_agreements,
    keep_earlier,
    load_config,
    new_node_dir,
    staged,
    write_config,
)
from ..crypto.cursors import Cursors
from ..crypto.eventmacs import EventMacs
from ..crypto.keys import (
    KeyFileError,
    key_id,
    load_signing_key,
    public_key_b64,
    public_raw,
    write_private_file,
)
from ..crypto.merkle import Tree
from ..crypto.signing import sign_object
from ..crypto.tls import load_certificate
from ..errors import IntelpactError
from ..model import (
    Agreement,
    Label,
    MarkingError,
    Markings,
    ObjectLabels,
    Policy,
    load_agreement,
)
from ..stix.validate import validate_object
from ..store import Store, open_store
from ..store.base import (
    AuditEvent,
    AuditFilter,
    Collection,
    Page,
    Query,
    StoredObject,
    fold_text,
    timestamp,
    utc_now,
)
from .access import WITHHELD_EXTENSION_ID, Access
from .audit import AuditLog, Head, Pseudonyms, operator
from .compromise import CompromiseReports
from .consent import Consents
from .controls import Controls
from .federation import Federation, Identity
from .people import People, PeopleError, Principal
from .prepare import Preparer
from .publish import Publisher
from .relabel import Relabeller

log = logging.getLogger("intelpact.node")
DEFAULT_COLLECTION_ALIAS = "intel"
LOOK_AHEAD = 20  # rows read at a time to tell whether a servable row follows a page
VERSIONS_PAGE = 1000  # rows read at a time where every version of an object is read
DENIAL_ROWS = 50  # versions of each id looked at to tell why it was not served


class NodeError(IntelpactError):
    """A node-level change was refused."""


class SearchIndexer:
    """Keeps the store's text index (the console's search) current in the background, so
    that storing objects does not wait for it (``Store.index_text``), and the labels of
    the portions stored since (``portions``). A search brings both up to date itself
    before it runs: this only keeps that catch-up short."""

    def __init__(self, store: Store, every: float = 0.2, backoff: float = 30.0,
                 portions: Callable[[], int] | None = None) -> None:
        self.store = store
        # the node's labelling of the search's portions (Node.label_portions), kept
        # current by the same thread
        self.portions = portions
        self.every = every
        self.backoff = backoff  # after a failure (a full disk): one log entry, not five a second
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread, if there is work for it: a text index the store
        keeps apart (SQLite), or the portions' labels (every store)."""
        if self._thread is None and (self.store.text_index_apart or self.portions):
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="intelpact-search-index",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                while (self.store.index_text() + (self.portions() if self.portions else 0)
                       and not self._stop.is_set()):
                    pass
            except Exception:  # noqa: BLE001 - a search catches up itself; try again later
                log.exception("search indexing failed; trying again in %g s", self.backoff)
                self._stop.wait(self.backoff)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _refuse_used(config: NodeConfig) -> None:
    """Refuse to make a node in a store that holds one already (another node's, or this
    one's made before): its audit log would be read under keys made now, and refused for
    a missing pseudonym secret that says nothing of the cause."""
    store = open_store(config.database, config.dir)
    try:
        collections, events = len(store.collections()), store.audit_size()
    finally:
        store.close()
    if collections or events:
        raise NodeError(f"the database given holds a node already ({collections} "
                        f"collection(s), {events} audit event(s)): init makes a node in an "
                        "empty one", hint="give init --database a new, empty database (e.g. "
                        "createdb NAME); a node is moved by moving its directory with it")


class Node:
    """Everything one node needs, built from its directory."""

    def __init__(self, config: NodeConfig, store: Store) -> None:
        self.config = config
        self._closing = threading.Lock()
        self._closed = False
        # the pinned file as it was read: a pin since replaces it (pinned_changed)
        self._pinned_file = _file_key(config.agreement_path)
        self._pinned_moved = False
        current = load_agreement(config.agreement_path, stored=True)  # as pinned
        self.agreement: Agreement = dataclasses.replace(
            current, earlier=earlier_agreements(config.agreement_path, current))
        self.store = store
        self.policy = Policy(self.agreement, config.party)
        self.markings = Markings(self.agreement, lookup=self._stored_marking)
        self._load_markings()
        self.signing_key = self._signing_key()
        keys = config.signing_key.parent
        # a secret an older node lacks is made and kept; opened read-only, for this
        # process alone (nothing it makes is kept)
        make = not store.readonly
        self.audit = AuditLog(
            store, config.party, lambda: self.signing_key,
            Pseudonyms.from_file(keys / "audit-pseudonyms.key", store.audit_size, make=make),
            EventMacs.from_file(keys / "audit-events.key", store.audit_size,
                                store.audit_macs_from, make=make),
            Head(keys / "audit-head.json"))
        self.people = People(self.policy, store, self.audit)
        # paging cursors as readers get them: sealed, bound to the person (crypto/cursors.py)
        self.cursors = Cursors.from_file(config.signing_key.parent / "cursors.key", make=make)
        cert_pem = ""
        if config.tls_cert:  # what partners pin: damaged, it is said so here
            load_certificate(config.tls_cert)
            cert_pem = config.tls_cert.read_text()
        self.identity = Identity(config.party, config.federation_url, self.signing_key,
                                 cert_pem, self.agreement.id, self.agreement.content_hash)
        self.federation = Federation(self.identity, self.policy, self.markings, store,
                                     self.audit)
        self.compromise = CompromiseReports(self.federation)  # compromise reports
        self.stored = threading.Event()  # set after every write; wakes the courier
        # validates and signs what is published; `serve` gives it processes of its own.
        # Its key is asked for once per publication: never one a rotation retired
        self.preparer = Preparer(lambda: (self.federation.signer().key, self.party))
        self.access = Access(self.policy, self.markings, store, validate_object)
        self.publisher = Publisher(self.policy, self.markings, store, self.preparer,
                                   self.audit, self.access, sign=self.sign,
                                   releaser=self.federation.releaser, on_stored=self.stored.set,
                                   party=self.party)
        self.controls = Controls(self.federation, self.policy, self.markings, store,
                                 self.audit, self.publisher)  # recall, reclassify
        self.consents = Consents(self.controls)  # consent for third-party release
        self.indexer = SearchIndexer(store, portions=self.label_portions)  # started by `serve`
        if store.readonly:  # `audit verify`: what an open does besides is for the next one
            return
        self._record_unrecorded_pin()
        try:  # every stored version's labels under this agreement, before anything is served
            Relabeller(self.policy, self.markings, store, self.audit, self.controls).run()
            self.controls.resume()  # a reclassification of ours cut short by a crash
        except BaseException:
            with contextlib.suppress(Exception):
                self.close()
            raise

    def label_portions(self, limit: int = 1000) -> int:
        """Give the store the labels that gate the console's search in the portions of up
        to ``limit`` stored versions waiting for them (Access.portion_gates, worked out
        as the view is); returns how many were waiting (0: none)."""
        rows = self.store.portions_pending(limit)
        if rows:
            self.store.label_portions({row.seq: self.access.portion_gates(row) for row in rows})
        return len(rows)

    def rotate_key(self) -> str:
        """Make a new signing key and retire the old one; returns the new key's id.

        The old key signs a final checkpoint of the whole audit log, whose size is its
        bound: a checkpoint it signed of a larger tree is refused, here (``audit verify``)
        and at every partner. Its private half is destroyed; its public half stays in the
        store for what it signed. Every partner is sent an announcement, signed by both
        keys, carrying the bound and the final checkpoint.

        Crash-safe: the new key is staged beside the old; one store transaction retires
        the old key at its bound, records the new one, queues the announcement and
        appends the ``key-rotate`` event; then the new key file replaces the old. A crash
        before the transaction commits leaves the old key in force (the staged key is
        removed when the node is next opened); after it, opening the node finishes the
        swap (``_finish_rotation``), so the new key is in force with the announcement
        queued. Then every consent this node gave that is valid still is signed again
        with the new key and queued for its holder (``Consents.reissue``; the courier
        does it as ``serve`` starts, if the process died first)."""
        old = self.signing_key
        new = Ed25519PrivateKey.generate()
        old_id, new_id = key_id(public_raw(old)), key_id(public_raw(new))
        path = self.config.signing_key
        waiting = staged(path)
        with self._rotation_lock():
            self._finish_rotation()
            if key_id(public_raw(load_signing_key(path))) != old_id:
                raise NodeError(f"{path} no longer holds this process's key {old_id}: "
                                "another process rotated it", hint="open the node again")
            self.audit.integrate()  # the bulk of it outside the rotation's transaction
            write_private_file(waiting, new.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))

            def seal(size: int, root: bytes, tree: Tree) -> tuple[str, str, list[AuditEvent]]:
                """In the rotation's transaction: the old key's final checkpoint of the
                whole tree, the announcement and the event, which name its size."""
                note = self.audit.final_checkpoint(size, root, tree, old)
                announcement = self.federation.announce_rotation(old, new, size, note)
                return note, json.dumps(announcement), [self.audit.event(
                    "key-rotate", actor=operator(), old_key_id=old_id, new_key_id=new_id,
                    last_size=size)]

            try:
                self.store.retire_key(self.party, (old_id, public_key_b64(old)),
                                      (new_id, public_key_b64(new)), timestamp(utc_now()),
                                      seal)
            except BaseException:
                # not recorded (the staged key goes), or recorded after all (it goes in)
                with contextlib.suppress(Exception):
                    self._finish_rotation()
                raise
            os.replace(waiting, path)  # the retired private key is gone with it
            _sync_dir(path.parent)
        self.signing_key = new
        self.identity = dataclasses.replace(self.identity, key=new)
        self.federation.me = self.identity
        try:  # partners take no consent signed by the retired key: sign them again
            self.consents.reissue()
        except Exception as exc:  # noqa: BLE001 - the rotation is done; this is redone
            # when the node next serves (Courier.start), and nothing goes meanwhile
            log.warning("the consents this node gave are not yet re-issued under its new "
                        "key (they are when it next serves): %s", exc)
        return new_id

    @contextlib.contextmanager
    def _rotation_lock(self) -> Iterator[None]:
        """One key rotation at a time across the node's processes, and none while a
        process opening the node finishes or removes one cut short (an flock of a file
        beside the key: a staged key must never be judged while its rotation runs)."""
        path = self.config.signing_key
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _signing_key(self) -> Ed25519PrivateKey:
        """The node's signing key, once a rotation cut short is finished or undone
        (``_finish_rotation``). A key file holding a key the store records as retired is
        refused: this node does not sign with a retired key."""
        path = self.config.signing_key
        if self.store.readonly:  # `audit verify`: a rotation cut short is left as it is
            key = self._key_in_force()
        else:
            with self._rotation_lock():
                self._finish_rotation()
                key = load_signing_key(path)
        kid = key_id(public_raw(key))
        bound = self.store.retired_keys(self.party).get(kid)
        if bound is not None:
            raise NodeError(f"{path} holds key {kid}, which a key rotation retired (it "
                            f"signed nothing past size {bound}): a retired key signs no "
                            "more", hint="restore the node's current key file; the store "
                            "names the current key among party_keys (last_size empty)")
        return key

    def _key_in_force(self) -> Ed25519PrivateKey:
        """The signing key ``_finish_rotation`` would leave in force, read without
        changing a file or taking the rotation lock (a store opened read-only: `audit
        verify`, on a read-only copy too): the staged key if the store recorded its
        rotation, else the key file's."""
        path = self.config.signing_key
        waiting = staged(path)
        if waiting.is_file():
            new = load_signing_key(waiting)
            new_id = key_id(public_raw(new))
            if new_id in self.store.party_keys(self.party) \
                    and new_id not in self.store.retired_keys(self.party):
                return new
        return load_signing_key(path)

    def _finish_rotation(self) -> None:
        """Under the rotation lock: a new key staged beside the key file (``rotate_key``)
        replaces it if the store recorded the rotation (the new key current), and is
        removed, never having signed, if not: the old key stays in force. A key file of a
        key retired by an older intelpact (``retired-ID.pem``) is removed: a retired key's
        private half is not kept (its public half is in the store)."""
        path = self.config.signing_key
        waiting = staged(path)
        retired = self.store.retired_keys(self.party)
        if waiting.is_file():
            new_id = key_id(public_raw(load_signing_key(waiting)))
            if new_id in self.store.party_keys(self.party) and new_id not in retired:
                os.replace(waiting, path)
                log.warning("finished rotating this node's signing key to %s (the rotation "
                            "was cut short after it was recorded)", new_id)
            else:
                waiting.unlink()
                log.warning("removed %s: a key rotation cut short before it was recorded "
                            "(the old key stays in force)", waiting)
            _sync_dir(path.parent)
        for old in sorted(path.parent.glob("retired-*.pem")):
            try:
                kid = key_id(public_raw(load_signing_key(old)))
            except KeyFileError:
                continue
            if kid in retired:
                old.unlink()
                _sync_dir(path.parent)
                log.warning("removed %s: a retired key's private half is not kept", old)

    def _load_markings(self) -> None:
        """Learn the stored marking-definitions. One that does not check (stored by an
        older intelpact, which took a statement under a standard TLP id, say) is left
        out, loudly: it never replaces a built-in definition, and an object citing any
        other such one is not labelled, so not served."""
        for body in self.store.markings():
            definition = json.loads(body)
            try:
                self.markings.load(definition)
            except MarkingError as exc:
                log.error("the stored marking-definition %s is not used: %s (%s)",
                          definition.get("id"), exc.message, exc.hint or "")

    def _stored_marking(self, marking_id: str) -> dict[str, Any] | None:
        body = self.store.marking(marking_id)
        return json.loads(body) if body is not None else None

    def _record_unrecorded_pin(self) -> None:
        """A pin is files (``pin_agreement``), so its event comes after it, in another
        step: a crash between them left the agreement changed and the log silent. The
        log's last word on the agreement (its latest ``agreement-pin``, else the
        ``node-init``) is checked against the text pinned, and a pin it does not know of
        is recorded now, saying so."""
        for kind, field in (("agreement-pin", "new_hash"), ("node-init", "agreement_hash")):
            found = self.store.latest_audit(AuditFilter(kinds=(kind,), limit=1))
            if found:
                try:
                    said = json.loads(found[0].body)[field]
                except (ValueError, TypeError, KeyError):
                    return  # an altered event: `audit verify` says so, not guessed at here
                break
        else:
            return  # a new node: Node.create records its node-init
        new = self.agreement
        if said != new.content_hash:
            self._record_pin(new, said, "recorded when the node was next opened: the pin "
                             "was cut short before its event was recorded")
            log.warning("recorded the pin of agreement %s version %s, cut short before its "
                        "event", new.id, new.version)

    def pin_agreement(self, path: str | Path, *, reason: str) -> Agreement:
        """Pin a new version of this node's agreement: an amendment, a party added, or
        its termination. The node's agreement file and pinned hash change together; a
        running server notices the file replaced (``pinned_changed``), stops deciding
        under the old text and opens the node again under the new one
        (interfaces/server.py). Partners refuse every request until they pin the same
        text, so exchange resumes only when both have.

        Refused: another agreement, the same text, one after a termination (final), this
        party left out, a party removed or the shared scale's rows changed (stored labels
        name those rows)."""
        new = load_agreement(path)
        old = self.agreement
        if new.id != old.id:
            raise NodeError(f"{path} is agreement {new.id}, not {old.id}",
                            hint="a different agreement needs a node of its own")
        if new.content_hash == old.content_hash:
            raise NodeError(f"{path} is the text pinned already ({old.content_hash})")
        if old.state == "terminated":  # what was received under it may be destroyed
            raise NodeError(f"{old.id} was terminated (version {old.version}): a terminated "
                            "agreement is final", hint="a new agreement needs a node of "
                            "its own (intelpact init)")
        if self.party not in new.parties:
            raise NodeError(f"{self.party} is not a party to version {new.version}")
        removed = sorted(set(old.parties) - set(new.parties))
        if removed:
            raise NodeError(f"version {new.version} removes {', '.join(removed)}: not "
                            "supported (what they hold stays under the agreement)")
        if [r.name for r in new.rows] != [r.name for r in old.rows]:
            raise NodeError(f"version {new.version} changes the shared scale; stored labels "
                            "name its rows, so they would change meaning",
                            hint="keep the rows; amend the national schemes or cells")
        if not reason.strip():
            raise NodeError("give a reason (--reason): it is recorded")
        # The new text is staged, then node.toml names it, then it replaces the old: a
        # crash in between leaves what load_config finishes (config.py, _finish_pin).
        target = self.config.agreement_path
        keep_earlier(target, old)  # a partner's marking made under it is still read
        waiting = staged(target)
        waiting.write_bytes(Path(path).read_bytes())
        with open(waiting, "rb") as fh:
            os.fsync(fh.fileno())
        self.config = dataclasses.replace(self.config, agreement_hash=new.content_hash)
        write_config(self.config)
        os.replace(waiting, target)
        self._record_pin(new, old.content_hash, reason)
        return new

    def pinned_changed(self) -> bool:
        """Whether the text pinned in the node's directory is no longer the one this
        node acts under (``agreement``): another process pinned a new one since this
        node was opened (`intelpact agreement pin` beside a running `serve`). A stat of
        the agreement file, and its text read only when the file changed (a pin
        replaces it); a file that cannot be read or parsed counts as changed. Once
        changed, it stays changed for this node: `serve` opens the node again
        (interfaces/server.py), and nothing is released under this text meanwhile."""
        if self._pinned_moved:
            return True
        path = self.config.agreement_path
        seen = _file_key(path)
        if seen == self._pinned_file:
            return False
        try:
            pinned = load_agreement(path, stored=True).content_hash
        except IntelpactError:
            pinned = None
        if pinned == self.agreement.content_hash:  # the same text, written again
            self._pinned_file = seen
            return False
        self._pinned_moved = True
        return True

    def _record_pin(self, new: Agreement, old_hash: str, reason: str) -> None:
        self.audit.record(self.audit.event(
            "agreement-pin", actor=operator(), agreement=new.id, version=new.version,
            state=new.state, old_hash=old_hash, new_hash=new.content_hash,
            parties=list(new.parties), reason=reason))

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Sign an object this node originates. Raises KeyRetired when the key this
        process holds was retired by a rotation another process made (Federation.signer:
        a store query, so not for a stream of objects; the publisher's preparer asks once
        per publication)."""
        return sign_object(obj, self.federation.signer().key, self.party)

    @classmethod
    def open(cls, node_dir: str | Path, *, migrate: bool = True,
             serving: bool = False, readonly: bool = False) -> Node:
        """The node of ``node_dir``. ``migrate`` False (every command but `serve`: one
        may run beside an older serve still running on the database, which expects the
        schema it knows): a store whose schema is older than this intelpact's is refused,
        saying to migrate it (`intelpact migrate`, or serve), rather than migrated.
        ``serving`` (a `serve` process): the store holds the serve lock shared until
        closed, so no migration runs under it. ``readonly`` (`audit verify`, which must
        not change what it verifies): the store is opened read-only (open_store), and
        the node writes nothing in its directory or its store, opening or closing: no
        pin cut short finished (its staged text is read where it waits: load_config) nor
        recorded, no key rotation finished, no missing secret kept (cursors.key, an
        older node's), no relabel or reclassification resumed, nor the log integrated
        and signed as it closes."""
        return cls._on_store(load_config(Path(node_dir), readonly=readonly), migrate=migrate,
                             serving=serving, readonly=readonly)

    @classmethod
    def _on_store(cls, config: NodeConfig, *, migrate: bool = True,
                  serving: bool = False, readonly: bool = False) -> Node:
        """The node of ``config`` on its store, opened here: closed again if the node
        cannot be made (a key file refused, an agreement changed), so a caller that goes
        on (a test, the console's tests) is left no connection, file or pool thread."""
        store = open_store(config.database, config.dir, migrate=migrate, serving=serving,
                           readonly=readonly)
        try:
            return cls(config, store)
        except BaseException:
            with contextlib.suppress(Exception):
                store.close()
            raise

    @classmethod
    def create(cls, node_dir: str | Path, *, party: str, agreement_file: str | Path,
               host: str = "127.0.0.1", port: int = 8401, tls: bool = True,
               federation_port: int | None = None, database: str | None = None,
               public_host: str | None = None) -> Node:
        """Make a node directory, its database and its default collection.

        ``database``: the store to use instead of the node's own SQLite file (e.g. a
        ``postgresql://`` URL of an empty database); written to node.toml.
        ``public_host``: the host partners reach the node by, when ``host`` is not it
        (``new_node_dir``)."""
        with new_node_dir(Path(node_dir), party=party, agreement_file=Path(agreement_file),
                          host=host, port=port, tls=tls, federation_port=federation_port,
                          public_host=public_host) as config:
            node: Node | None = None
            try:
                if database is not None:
                    write_config(dataclasses.replace(config, database=database))
                    config = load_config(config.dir)  # checked as every command will
                    _refuse_used(config)
                node = cls._on_store(config)
                node.store.add_collection(Collection(
                    str(uuid.uuid4()), f"{party} intelligence",
                    f"Intelligence held by the {party} node under {node.agreement.id}",
                    DEFAULT_COLLECTION_ALIAS), [node.audit.event(
                        "node-init", actor=operator(), agreement=node.agreement.id,
                        agreement_hash=node.agreement.content_hash,
                        key_id=node.identity.key_id)])
            except BaseException:
                # Cut short (Ctrl-C, a full disk, the database refused) before the node
                # had its collection: a node without one could not publish, and `init`
                # again would find the directory not empty. new_node_dir discards the
                # directory as it discards its own part made in vain.
                if node is not None:
                    with contextlib.suppress(Exception):
                        node.close()
                raise
        return node

    @property
    def party(self) -> str:
        return self.config.party

    def default_collection(self) -> Collection:
        collections = self.store.collections()
        for c in collections:
            if c.alias == DEFAULT_COLLECTION_ALIAS:
                return c
        if not collections:  # a store this node was not made in
            raise NodeError("the node's store holds no collection: it is not the store "
                            "`intelpact init` made this node in",
                            hint="point database in node.toml back at that store; a node is "
                            "made in PostgreSQL with: intelpact init DIR … --database URL")
        return collections[0]

    def find(self, principal: Principal, collection_id: str, query: Query, *,
             via: str = "objects", deny: bool = True
             ) -> tuple[Page, list[tuple[StoredObject, str]]]:
        """One page of what ``principal`` may see: each visible row with the body served.

        The page's rows were filtered on the base label in the query; a row whose
        portions make it unservable (docs/access.md), or whose served name and
        description do not hold a searched ``query.text``, is dropped here. What is served is
        audited (``via``: the endpoint or command) before it is returned; an id asked
        for and refused, or that does not exist, is audited as a denial (:meth:`denials`;
        not with ``deny`` False: the caller does), so the two cannot be told apart by
        time. A person without a reading role (an operator alone) is refused
        (:class:`PeopleError`): every way of reading passes here."""
        if not principal.reads:
            raise PeopleError(f"{principal.name} may not read intelligence: reading needs "
                              "the analyst, publisher or security-officer role",
                              hint="a security officer gives one (intelpact user add … "
                              "--role analyst), or read as someone who has it")
        labels = self.store.labels()  # once per page: the filter and the views share it
        person = principal.person
        if query.cursor is not None:  # as sealed for this person by the page before
            query = dataclasses.replace(query, cursor=self.cursors.open(query.cursor,
                                                                        person.name))
        if query.text:  # a portion stored before the search is searched by who may read it
            while self.label_portions():
                pass
            labels = self.store.labels()  # with the portions' labels just kept
        readable = self.access.readable(person, labels)
        limit, visible = query.limit, []
        while True:
            page = self.store.query(collection_id, readable, query)
            visible += self._served(principal, collection_id, query, readable, labels,
                                    page.rows)[0]
            if len(visible) >= limit or not page.more or page.next is None:
                break
            # rows were dropped (not to be served to the person, or not holding the text
            # searched): a page short of its limit that says "more" would tell them such
            # rows are there, so read on, for as many as the page lacks
            query = dataclasses.replace(query, cursor=page.next, limit=limit - len(visible))
        # oldest first, as TAXII sorts a page (newest first, the console's search): each
        # read is, but a version served instead (_instead) on a read on may have been
        # added before the rows of the reads before it
        visible.sort(key=lambda item: item[0].date_added, reverse=query.newest_first)
        if page.more and page.next is not None and not self._follows(
                principal, collection_id, dataclasses.replace(query, cursor=page.next),
                readable, labels):
            page = dataclasses.replace(page, more=False, next=None)
        events = self.audit.by_originator(
            "read", [(row.object_id, row.version, row.originator) for row, _ in visible],
            person=person, via=via, withheld=_withheld(visible) or None)
        if query.ids and deny:
            served = {row.object_id for row, _ in visible}
            missing = [oid for oid in query.ids if oid not in served]
            if missing:
                events.extend(self.denials(principal, [collection_id], query, missing, via,
                                            readable, labels))
        self.audit.record_served(*events)
        if page.next is not None:
            page = dataclasses.replace(page, next=self.cursors.seal(page.next, person.name))
        return page, visible

    def holds(self, principal: Principal, collection_id: str, object_id: str) -> bool:
        """Whether the collection holds a version of ``object_id`` that ``principal`` may
        be served, whatever a request's filters: what tells "no version passed them" (an
        empty answer) from "no such object", which is all that one they may not be
        served is to them (docs/node.md). Reads, audits nothing."""
        labels = self.store.labels()
        readable = self.access.readable(principal.person, labels)
        query = Query(ids=(object_id,), limit=1)  # the latest they may read; and, if it
        rows = self.store.query(collection_id, readable, query).rows  # cannot be served,
        return bool(self._served(principal, collection_id, query, readable, labels,
                                 rows)[0])  # the nearest older one that can (_instead)

    def chosen(self, principal: Principal, collection_id: str, query: Query) -> Query:
        """``query`` with "first" and "last" in its versions replaced by the version each
        chooses among those ``principal`` may be served, of each of its ids (as a read
        serves them: the version served instead, :meth:`_instead`), and none where they
        may be served none: what a DELETE of first or last may choose from. The versions
        may be left empty: then it chooses nothing."""
        roles = [role for role in ("first", "last") if role in query.versions]
        if not roles or "all" in query.versions:
            return query
        labels = self.store.labels()
        readable = self.access.readable(principal.person, labels)
        best = self._nearest(principal, collection_id, query, readable, labels,
                             set(query.ids), roles)[1]
        versions = [v for v in query.versions if v not in roles]
        versions += [best[oid, role][0].version for oid in query.ids for role in roles
                     if (oid, role) in best]
        return dataclasses.replace(query, versions=tuple(dict.fromkeys(versions)))

    def _served(self, principal: Principal, collection_id: str, query: Query,
                readable: Sequence[int], labels: Mapping[int, Label],
                rows: Sequence[StoredObject]
                ) -> tuple[list[tuple[StoredObject, str]], list[StoredObject]]:
        """What of ``rows`` the person is served (each with its body, a version taken
        :meth:`_instead` where one cannot be), and the rows that cannot be served."""
        person = principal.person
        visible = []
        unservable = []
        for row in rows:
            body = self.access.view(person, row, labels)
            if body is None:
                unservable.append(row)
            elif query.text is None or _mentions(body, query.text):
                visible.append((row, body))
        if unservable:
            visible = self._instead(principal, collection_id, query, readable, labels,
                                    rows, visible, unservable)
        return visible, unservable

    def _follows(self, principal: Principal, collection_id: str, query: Query,
                 readable: Sequence[int], labels: Mapping[int, Label]) -> bool:
        """Whether the pages from ``query.cursor`` on hold a row the person may be served
        (or one dropped only because it does not hold the searched text): a page saying
        "more" before none would tell them that rows they may not be served are there.
        Read a few rows at a time: the first one usually is."""
        query = dataclasses.replace(query, limit=min(query.limit, LOOK_AHEAD))
        while True:
            page = self.store.query(collection_id, readable, query)
            visible, unservable = self._served(principal, collection_id, query, readable,
                                               labels, page.rows)
            if visible or len(unservable) < len(page.rows):
                return True
            if not page.more or page.next is None:
                return False
            query = dataclasses.replace(query, cursor=page.next)

    def _instead(self, principal: Principal, collection_id: str, query: Query,
                 readable: Sequence[int], labels: Mapping[int, Label],
                 rows: Sequence[StoredObject], visible: list[tuple[StoredObject, str]],
                 unservable: Sequence[StoredObject]) -> list[tuple[StoredObject, str]]:
        """The first or last version the person may *see*: where the version "first" or
        "last" chose on its base label cannot be served (a withheld portion is one the
        object needs), the next one in the same direction that can, if any (docs/node.md),
        where the row dropped was; with several values in match[version], for each of
        "first" and "last" that chose it. A version served in its own right (another
        value chose it) is not served again in a place of its own, nor is one version
        served instead for both "first" and "last". A version taken instead may have been
        added after the page's other rows (or before them): :meth:`find` puts the page in
        order once it is read."""
        roles = [role for role in ("first", "last") if role in query.versions]
        if not roles or "all" in query.versions:  # every version chosen: none instead
            return visible
        shown = {row.seq: (row, body) for row, body in visible}
        ends, best = self._nearest(principal, collection_id, query, readable, labels,
                                   {row.object_id for row in unservable}, roles)
        timestamps = set(query.versions) - {"first", "last"}
        dropped_seqs = {row.seq for row in unservable}
        found: dict[int, list[tuple[StoredObject, str]]] = {}
        for dropped in unservable:
            oid = dropped.object_id
            if oid not in ends:
                continue
            first, last = ends[oid]
            # the versions a value of match[version] chooses itself, when servable
            chosen = timestamps | {end.version for role, end in (("first", first),
                                                                 ("last", last))
                                   if role in roles}
            instead_of_first = best.get((oid, "first"))
            for role in roles:
                taken = best.get((oid, role))
                if taken is None or dropped.version != (first if role == "first"
                                                        else last).version:
                    continue  # none to serve, or not the version this role chose
                if taken[0].version in chosen or not _kept(query, *taken):
                    continue
                if role == "last" and instead_of_first is not None and \
                        instead_of_first[0].seq == taken[0].seq and (
                            first.seq in dropped_seqs or _kept(query, first, first.body)):
                    continue  # served in first's place (on this page or another)
                found.setdefault(dropped.seq, []).append(taken)
        out: dict[int, tuple[StoredObject, str]] = {}
        for r in rows:
            for item in ([shown[r.seq]] if r.seq in shown else []) + found.get(r.seq, []):
                out.setdefault(item[0].seq, item)
        return list(out.values())

    def _nearest(self, principal: Principal, collection_id: str, query: Query,
                 readable: Sequence[int], labels: Mapping[int, Label],
                 object_ids: set[str], roles: Sequence[str]
                 ) -> tuple[dict[str, tuple[StoredObject, StoredObject]],
                            dict[tuple[str, str], tuple[StoredObject, str]]]:
        """For each object of ``object_ids``: its first and last version the person may
        read (by base label: what "first" and "last" choose in the store), and, for each
        of ``roles``, its first (or last) version they may be served, with its body. Every
        version of those objects is read, VERSIONS_PAGE rows a query, however many they
        have: versions are stored in the order they came, not their own (an older one may
        come late), so none can be passed over. A body is viewed only for a version nearer
        than the best found yet."""
        ends: dict[str, tuple[StoredObject, StoredObject]] = {}
        best: dict[tuple[str, str], tuple[StoredObject, str]] = {}
        walk = Query(ids=tuple(object_ids), versions=("all",),
                     spec_versions=query.spec_versions, limit=VERSIONS_PAGE)
        while True:
            page = self.store.query(collection_id, readable, walk)
            for row in page.rows:
                lo, hi = ends.get(row.object_id, (row, row))
                ends[row.object_id] = (row if row.version < lo.version else lo,
                                       row if row.version > hi.version else hi)
            for role in roles:
                last = role == "last"
                # nearest first: of each object, the first servable one here is the best
                for row in sorted(page.rows, key=lambda r: r.version, reverse=last):
                    taken = best.get((row.object_id, role))
                    nearer = taken is None or (row.version > taken[0].version if last
                                               else row.version < taken[0].version)
                    if nearer and (body := self.access.view(principal.person, row,
                                                            labels)) is not None:
                        best[row.object_id, role] = (row, body)
            if not page.more or page.next is None:
                return ends, best
            walk = dataclasses.replace(walk, cursor=page.next)

    def denials(self, principal: Principal, collection_ids: Sequence[str], query: Query,
                 ids: Sequence[str], via: str, readable: Sequence[int],
                 labels: Mapping[int, Label]) -> list[AuditEvent]:
        """Audit events for ids ``principal`` asked for and was not served, with the
        reason: a version the request's filters select (its page aside) that they may not
        read, or cannot be served; no such object where none is held. An id with such a
        version they may be served is no denial: it is on another page, or the searched
        text is not in it. One event per originator and reason (a request naming a
        thousand ids makes a few events, not a thousand)."""
        person = principal.person
        wanted = dataclasses.replace(query, ids=tuple(dict.fromkeys(ids)), cursor=None,
                                     limit=DENIAL_ROWS)
        servable: set[str] = set()
        for cid in collection_ids:  # what they may be served, the page aside
            rows = self._each_id(cid, readable, wanted)
            visible, unservable = self._served(principal, cid, wanted, readable, labels,
                                               rows)
            servable.update(row.object_id for row, _ in visible)
            refused = {row.seq for row in unservable}  # the rest lack only the text
            servable.update(row.object_id for row in rows if row.seq not in refused)
        wanted = dataclasses.replace(wanted, ids=tuple(i for i in wanted.ids
                                                       if i not in servable))
        groups: dict[tuple[str | None, str], list[tuple[str, str]]] = {}
        found: set[str] = set()
        for cid in collection_ids if wanted.ids else ():
            for row in self._each_id(cid, list(labels), wanted):
                found.add(row.object_id)
                decision = self.policy.may_read(person, labels[row.label_id])
                reason = decision.reason if not decision.allowed else \
                    "every portion that makes it a valid object is withheld"
                groups.setdefault((row.originator, reason), []).append((row.object_id,
                                                                        row.version))
        missing = [(oid, "") for oid in wanted.ids if oid not in found]
        if missing:
            groups[(None, "no such object")] = missing
        return [self.audit.event("deny", person=person, originator=origin, objects=objects,
                                 via=via, reason=reason)
                for (origin, reason), objects in groups.items()]

    def _each_id(self, collection_id: str, readable: Sequence[int], query: Query
                 ) -> list[StoredObject]:
        """Rows ``query`` selects in a collection, up to ``query.limit`` of each of its ids:
        one query for them all, and one for each id the first left out when it was cut
        short (an object of many versions would crowd the others out)."""
        page = self.store.query(collection_id, readable, dataclasses.replace(
            query, limit=query.limit * len(query.ids)))
        rows = list(page.rows)
        if page.more:
            seen = {row.object_id for row in rows}
            for oid in query.ids:
                if oid not in seen:
                    rows += self.store.query(collection_id, readable, dataclasses.replace(
                        query, ids=(oid,))).rows
        return rows

    def find_all(self, principal: Principal, collection_id: str, query: Query, *,
                 via: str, deny: bool = True) -> Iterator[tuple[StoredObject, str]]:
        """Every row :meth:`find` serves for ``query``, page after page (each audited as
        it is read), to the collection's end."""
        while True:
            page, visible = self.find(principal, collection_id, query, via=via, deny=deny)
            yield from visible
            if not page.more or page.next is None:
                return
            query = dataclasses.replace(query, cursor=page.next)

    def versions(self, principal: Principal, object_id: str, *, via: str = "get"
                 ) -> list[tuple[StoredObject, str]]:
        """Every visible version of an object in every collection (each collection's
        oldest first), with the body served, however many (VERSIONS_PAGE a page, each
        audited as it is read); a denial is audited only when no collection serves any
        (not for the collections that do not hold it)."""
        query = Query(ids=(object_id,), versions=("all",), limit=VERSIONS_PAGE)
        collections = [c.collection_id for c in self.store.collections()]
        found = [served for cid in collections
                 for served in self.find_all(principal, cid, query, via=via, deny=False)]
        if not found:
            labels = self.store.labels()
            readable = self.access.readable(principal.person, labels)
            self.audit.record_served(*self.denials(principal, collections, query,
                                                    [object_id], via, readable, labels))
        return found

    def shown_labels(self, row: StoredObject, obj: dict[str, Any],
                     labels: Mapping[int, Label] | None = None) -> ObjectLabels:
        """The labels of what is shown: the stored ones, or, for a version with portions,
        those of the served body (its banner covers only what the viewer sees) joined with
        the stored base, which a holder's reclassification may have raised or narrowed above
        the marking its body carries (docs/controls.md). A marking-definition is labelled by
        the label it gives (its stored label)."""
        known = labels if labels is not None else self.store.labels()
        base = known[row.label_id]
        if row.has_portions:
            try:
                shown = self.markings.label(obj, originator=row.originator)
            except IntelpactError:
                pass
            else:
                return ObjectLabels(base.join(shown.base), shown.portions, base.join(shown.banner))
        return ObjectLabels(base, {}, known[row.banner_id])

    def get(self, principal: Principal, object_id: str) -> list[dict[str, Any]]:
        """Every visible version of an object across collections, oldest first."""
        return [json.loads(body) for _, body in self.versions(principal, object_id)]

    def check_kept(self, advance: Callable[[int], None] = lambda n: None
                   ) -> tuple[int, list[str]]:
        """How many partner audit events this node keeps as evidence, and what is wrong
        with them and the partners' checkpoints kept (AuditLog.check_kept), every
        partner's in turn, pinned or not, kept now or only recorded as kept by this log's
        ``partner-audit-kept`` events; and whether the alerts and compromise reports
        the security officer is shown are those the log records (AuditLog.check_shown):
        part of the verdict of `audit verify` and of the console's desk."""
        count, problems = 0, []
        parties = set(self.federation.peers())
        try:  # and a partner's no longer pinned (unpinned, or its row deleted), and one
            # whose rows kept here were all deleted, which this log says the watch kept
            parties.update(self.store.partner_parties())
            parties.update(self.store.audit_parties("partner-audit-kept"))
        except Exception as exc:  # noqa: BLE001 - a tampered store: part of the verdict
            problems.append("the partners of whose logs anything is kept here cannot be "
                            f"listed: {getattr(exc, 'message', None) or exc}")
        for party in sorted(parties - {self.party}):
            try:
                kept, wrong = self.audit.check_kept(party, self.federation.log_keys(party),
                                                    advance)
            except Exception as exc:  # noqa: BLE001 - a tampered store: part of the verdict
                kept, wrong = 0, [f"{party}'s audit events kept here cannot be checked: "
                                  f"{getattr(exc, 'message', None) or exc}"]
            count += kept
            problems += wrong
        try:
            problems += self.audit.check_shown()
        except Exception as exc:  # noqa: BLE001 - a tampered store: part of the verdict
            problems.append("the alerts and compromise reports shown to the security "
                            f"officer cannot be checked against this log: "
                            f"{getattr(exc, 'message', None) or exc}")
        return count, problems

    def close(self) -> None:
        """Stop the node's threads and processes, record what waits to be recorded,
        integrate and sign (not read-only), and close the store. Once: a second close
        does nothing (on PostgreSQL it integrated on the pool closed already, and logged
        that it failed)."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        self.indexer.stop()
        self.preparer.close()
        try:
            self.people.flush_refusals()
            self.federation.refusals.flush()
        finally:
            self.audit.close()
        self.store.close()


def _file_key(path: Path) -> tuple[int, int, int, int] | None:
    """What tells a file replaced or rewritten: its inode, size and times (None: it
    cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _kept(query: Query, row: StoredObject, body: str) -> bool:
    """Whether a version served in place of one that cannot be passes the query's filters,
    as the store applied them to the version it chose (after choosing it): one outside
    them is no answer, and listed would tell the person that a newer version inside them
    is stored. Its id and type are the dropped row's; spec_versions chose it."""
    return ((not query.label_ids or row.label_id in query.label_ids)
            and (not query.originators or row.originator in query.originators)
            and (query.added_after is None or row.date_added > query.added_after)
            and (query.added_before is None or row.date_added < query.added_before)
            and (query.refers_to is None or json.dumps(query.refers_to) in row.body)
            and (query.text is None or _mentions(body, query.text)))


def _mentions(body: str, text: str) -> bool:
    """Whether the served body's name or description holds ``text`` (case-folded): the
    search's index is only a first sieve, and a withheld portion never matches."""
    obj = json.loads(body)
    words = fold_text(f"{obj.get('name', '')}\n{obj.get('description', '')}")
    return fold_text(text) in words


def _withheld(visible: Sequence[tuple[StoredObject, str]]
              ) -> dict[tuple[str, str], list[str]]:
    """The portions withheld from each served object version (from the view's
    extension)."""
    out: dict[tuple[str, str], list[str]] = {}
    for row, body in visible:
        if row.has_portions and WITHHELD_EXTENSION_ID in body:
            ext = json.loads(body).get("extensions", {}).get(WITHHELD_EXTENSION_ID, {})
            out[row.object_id, row.version] = list(ext.get("withheld", []))
    return out
