"""The store: one interface, SQLite by default (PostgreSQL to follow)."""

from __future__ import annotations

from pathlib import Path

from .base import Store, StoreError
from .sqlite import SQLiteStore


def open_store(database: str, base_dir: Path | None = None) -> Store:
    """Open the store a node's ``database`` setting names (a SQLite path for now)."""
    if database.startswith(("postgresql://", "postgres://")):
        raise StoreError("PostgreSQL is not supported yet",
                         hint='use the embedded store: database = "node.db"')
    path = Path(database)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return SQLiteStore(path)


__all__ = ["SQLiteStore", "Store", "StoreError", "open_store"]
