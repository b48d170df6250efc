"""Fixtures of the federation suites: national nodes pinned to each other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_federation import pair, people

from intelpact.services.node import Node

from helpers import make_node


@pytest.fixture()
def jpn_nzl(tmp_path: Path) -> Iterator[list[Node]]:
    """JPN and NZL nodes, each with its officer (``people``), pinned to each other. A
    list: a test that opens a node again puts it back, and what is there at the end is
    closed. A suite that needs more people overrides this fixture, asking for it."""
    nodes = [make_node(tmp_path / "jpn", "JPN"), make_node(tmp_path / "nzl", "NZL")]
    for node in nodes:
        people(node)
    pair(*nodes)
    yield nodes
    for node in nodes:
        node.close()
