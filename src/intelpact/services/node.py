"""A national node: its configuration, agreement, store and services, opened together."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..config import NodeConfig, create_node_dir, load_config, write_config
from ..crypto.keys import key_id, load_signing_key, public_key_b64, public_raw, write_private_file
from ..crypto.signing import sign_object
from ..model import Agreement, Markings, Policy, load_agreement
from ..stix.validate import validate_object
from ..store import Store, open_store
from ..store.base import Collection, Page, Query, StoredObject, timestamp, utc_now
from .access import Access
from .federation import Federation, Identity
from .people import People, Principal
from .publish import Publisher

DEFAULT_COLLECTION_ALIAS = "intel"


class Node:
    """Everything one node needs, built from its directory."""

    def __init__(self, config: NodeConfig, store: Store) -> None:
        self.config = config
        self.agreement: Agreement = load_agreement(config.agreement_path)
        self.store = store
        self.policy = Policy(self.agreement)
        self.markings = Markings(self.agreement)
        for body in store.markings():
            self.markings.add(json.loads(body))
        self.people = People(self.policy, store)
        self.signing_key = load_signing_key(config.signing_key)
        cert_pem = config.tls_cert.read_text() if config.tls_cert else ""
        self.identity = Identity(config.party, config.federation_url, self.signing_key,
                                 cert_pem, self.agreement.id, self.agreement.content_hash)
        self.federation = Federation(self.identity, self.policy, self.markings, store)
        self.stored = threading.Event()  # set after every write; wakes the courier
        self.publisher = Publisher(self.policy, self.markings, store, validate_object,
                                   sign=self.sign, releaser=self.federation.releaser,
                                   on_stored=self.stored.set)
        self.access = Access(self.policy, self.markings, store, validate_object)

    def rotate_key(self) -> str:
        """Make a new signing key; keep the old one's public half for old signatures, and
        queue an announcement signed by both keys for every partner. Returns the new id."""
        old = self.signing_key
        new = Ed25519PrivateKey.generate()
        announcement = self.federation.announce_rotation(old, new)
        when = timestamp(utc_now())
        self.store.add_party_key(self.party, key_id(public_raw(old)), public_key_b64(old), when)
        path = self.config.signing_key
        staged = path.with_name(f"{path.name}.new")
        write_private_file(staged, new.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        os.replace(path, path.with_name(f"retired-{key_id(public_raw(old))}.pem"))
        os.replace(staged, path)
        self.store.add_announcement(json.dumps(announcement), when,
                                    [p.party for p in self.store.peers()])
        self.signing_key = new
        self.identity = dataclasses.replace(self.identity, key=new)
        self.federation.me = self.identity
        return key_id(public_raw(new))

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Sign an object this node originates."""
        return sign_object(obj, self.signing_key, self.party)

    @classmethod
    def open(cls, node_dir: str | Path) -> Node:
        config = load_config(Path(node_dir))
        return cls(config, open_store(config.database, config.dir))

    @classmethod
    def create(cls, node_dir: str | Path, *, party: str, agreement_file: str | Path,
               host: str = "127.0.0.1", port: int = 8401, tls: bool = True,
               federation_port: int | None = None, database: str | None = None) -> Node:
        """Make a node directory, its database and its default collection.

        ``database``: the store to use instead of the node's own SQLite file (e.g. a
        ``postgresql://`` URL of an empty database); written to node.toml."""
        config = create_node_dir(Path(node_dir), party=party,
                                 agreement_file=Path(agreement_file), host=host, port=port,
                                 tls=tls, federation_port=federation_port)
        if database is not None:
            config = dataclasses.replace(config, database=database)
            write_config(config)
        node = cls(config, open_store(config.database, config.dir))
        node.store.add_collection(Collection(
            str(uuid.uuid4()), f"{party} intelligence",
            f"Intelligence held by the {party} node under {node.agreement.id}",
            DEFAULT_COLLECTION_ALIAS))
        return node

    @property
    def party(self) -> str:
        return self.config.party

    def default_collection(self) -> Collection:
        for c in self.store.collections():
            if c.alias == DEFAULT_COLLECTION_ALIAS:
                return c
        return self.store.collections()[0]

    def find(self, principal: Principal, collection_id: str,
             query: Query) -> tuple[Page, list[tuple[StoredObject, str]]]:
        """One page of what ``principal`` may see: each visible row with the body served.

        The page's rows were filtered on the base label in the query; a row whose
        portions make it unservable (docs/access.md) is dropped here."""
        labels = self.store.labels()  # once per page: the filter and the views share it
        page = self.store.query(collection_id,
                                self.access.readable(principal.person, labels), query)
        visible = []
        for row in page.rows:
            body = self.access.view(principal.person, row, labels)
            if body is not None:
                visible.append((row, body))
        return page, visible

    def get(self, principal: Principal, object_id: str) -> list[dict[str, Any]]:
        """Every visible version of an object across collections, oldest first."""
        found: list[dict[str, Any]] = []
        for collection in self.store.collections():
            _, visible = self.find(principal, collection.collection_id,
                                   Query(ids=(object_id,), versions=("all",), limit=1000))
            found.extend(json.loads(body) for _, body in visible)
        return found

    def close(self) -> None:
        self.store.close()
