"""Shared fixtures: real node directories, real SQLite, real servers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from intelpact.services.node import Node

from helpers import make_node


@pytest.fixture()
def jpn_node(tmp_path: Path) -> Iterator[Node]:
    node = make_node(tmp_path / "jpn")
    yield node
    node.close()
