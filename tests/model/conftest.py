"""Shared fixtures for the core model tests: the three sample agreements."""

from __future__ import annotations

from pathlib import Path

import pytest

from intelpact.model import Agreement, Policy, load_agreement

AGREEMENTS = Path(__file__).resolve().parents[2] / "agreements"


@pytest.fixture(scope="session")
def jn() -> Agreement:
    """The Japan-New Zealand bilateral sample."""
    return load_agreement(AGREEMENTS / "jpn-nzl.toml")


@pytest.fixture(scope="session")
def jna() -> Agreement:
    """The Japan-New Zealand-Australia sample."""
    return load_agreement(AGREEMENTS / "jpn-nzl-aus.toml")


@pytest.fixture(scope="session")
def pm() -> Agreement:
    """The Pacific maritime sample (UNCLASSIFIED and RESTRICTED only)."""
    return load_agreement(AGREEMENTS / "pacific-maritime.toml")


@pytest.fixture
def jn_policy(jn: Agreement) -> Policy:
    return Policy(jn)


@pytest.fixture
def jna_policy(jna: Agreement) -> Policy:
    return Policy(jna)


@pytest.fixture
def pm_policy(pm: Agreement) -> Policy:
    return Policy(pm)
