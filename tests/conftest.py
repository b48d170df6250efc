"""Shared fixtures: real node directories, real SQLite, real servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from intelpact.services import credentials
from intelpact.services.node import Node

from helpers import make_node

# Passwords hashed in the tests' own process: argon2id still, at the lowest cost
# (1 pass over 1 MiB, one lane) instead of argon2-cffi's defaults (3 passes over 64 MiB,
# 4 lanes: 50-300 ms a hash here, a sixth of the whole suite's time). Verifying reads
# the cost from the hash, so nodes served in processes of their own (which keep the
# defaults) check these hashes as they check any. tests/services/test_credentials.py
# checks the defaults themselves (``real_password_hashes``).
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashes() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(credentials, "_HASHER", CHEAP_HASHER)
        yield


@pytest.fixture(scope="module")
def real_password_hashes() -> Iterator[None]:
    """The hasher the node runs with (argon2-cffi's defaults), for a module that
    checks it (use it autouse there)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(credentials, "_HASHER", PasswordHasher())
        yield


@pytest.fixture()
def jpn_node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path / "jpn")
    yield node
    node.close()
