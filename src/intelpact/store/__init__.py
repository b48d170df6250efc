"""The store: one interface, SQLite by default, PostgreSQL for a national node."""

from __future__ import annotations

from pathlib import Path

from .base import Store, StoreError
from .sqlite import SQLiteStore


def open_store(database: str, base_dir: Path | None = None, *,
               migrate: bool = True, serving: bool = False, readonly: bool = False) -> Store:
    """Open the store a node's ``database`` setting names: a ``postgresql://`` URL,
    or a SQLite file (relative to ``base_dir``). ``migrate`` False: a schema older than
    this intelpact's is refused, not migrated (a command that must not write). ``serving``:
    the store holds the serve lock shared until closed (a `serve` process), so that a
    migration refuses to run under it (base.SERVE_LOCK). ``readonly`` (`audit verify`,
    which must not change what it verifies; implies ``migrate`` False): every write is
    refused, and the database is opened so that it refuses them too (SQLite's mode=ro, so
    a read-only file or mount is read; every PostgreSQL transaction READ ONLY)."""
    if database.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore  # psycopg is only loaded when used

        return PostgresStore(database, migrate=migrate, serving=serving, readonly=readonly)
    path = Path(database)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return SQLiteStore(path, migrate=migrate, serving=serving, readonly=readonly)


__all__ = ["SQLiteStore", "Store", "StoreError", "open_store"]
