"""The decision vectors (tests/vectors/decisions.json): replayed against Policy, and
checked to be exactly what scripts/gen_vectors.py produces."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from intelpact.model import (
    Agreement,
    ConsentToken,
    Decision,
    Label,
    PartnerNode,
    Policy,
    load_agreement,
)

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "decisions.json"
DOC: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_vectors",
                                                  ROOT / "scripts" / "gen_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def agreements() -> dict[str, Agreement]:
    """Each agreement the header names, loaded from its file and pinned by its hash."""
    loaded = {}
    for key, entry in DOC["header"]["agreements"].items():
        a = load_agreement(ROOT / entry["file"])
        assert a.id == entry["id"]
        assert a.content_hash == entry["content_hash"], f"{entry['file']} changed"
        loaded[key] = a
    return loaded


def test_generator_output_is_current() -> None:
    files = _generator().build()
    assert "tests/vectors/decisions.json" in files
    for path, text in files.items():
        on_disk = (ROOT / path).read_text(encoding="utf-8")
        assert on_disk == text, f"{path} is stale: run python scripts/gen_vectors.py"


def test_generator_is_deterministic() -> None:
    assert _generator().build() == _generator().build()


def test_header_documents_the_file() -> None:
    header = DOC["header"]
    for key in ("title", "about", "generator", "agreements", "fields", "rules"):
        assert header[key]
    files = {e["file"] for e in header["agreements"].values()}
    assert {"agreements/jpn-nzl.toml", "agreements/jpn-nzl-aus.toml",
            "agreements/pacific-maritime.toml"} <= files
    vectors = DOC["vectors"]
    assert 60 <= len(vectors) <= 150
    assert len({v["id"] for v in vectors}) == len(vectors)
    # every rule is exercised, by every kind of decision that has it
    seen = {(v["kind"], v["expected"]["rule"]) for v in vectors}
    assert {r for _, r in seen} == set(header["rules"])
    assert {("read", r) for r in header["read_order"]} <= seen
    assert {("release", r) for r in header["release_order"]} <= seen
    assert {("read", "read"), ("release", "release"), ("publish", "publish")} <= seen
    assert ("publish", "originator") in seen
    # a joined label whose REL TO leaves its originator out, read both ways
    joined = [v for v in vectors if v["label"]["rel_to"] is not None
              and v["label"]["originator"] not in v["label"]["rel_to"]]
    assert {v["expected"]["rule"] for v in joined} >= {"read", "rel-to"}
    assert {v["agreement"] for v in vectors} == set(header["agreements"])


def _label(spec: dict[str, Any], agreements: dict[str, Agreement]) -> Label:
    a = next(x for x in agreements.values() if x.id == spec["agreement"])
    assert a.rows[spec["rank"]].name == spec["level"]
    rel = spec["rel_to"]
    if rel is not None:
        # the originator first when included (a joined label may leave it out)
        rest = rel[1:] if rel[:1] == [spec["originator"]] else rel
        assert spec["originator"] not in rest and rest == sorted(rest)
    # REL TO is exact: nothing is added to it, not even the originator
    return Label(spec["agreement"], spec["rank"], spec["originator"],
                 None if rel is None else frozenset(rel), frozenset(spec["caveats"]),
                 frozenset(frozenset(c) for c in spec["communities"]),
                 frozenset(spec["sources"]), add_originator=False)


def _token(spec: dict[str, Any]) -> ConsentToken:
    return ConsentToken(
        token_id=spec["token_id"], agreement=spec["agreement"], originator=spec["originator"],
        holder=spec["holder"], recipient=spec["recipient"],
        objects={k: frozenset(v) for k, v in spec["objects"].items()}, purpose=spec["purpose"],
        issued=dt.datetime.fromisoformat(spec["issued"]),
        expires=dt.datetime.fromisoformat(spec["expires"]))


def _decide(v: dict[str, Any], agreements: dict[str, Agreement]) -> Decision:
    policy = Policy(agreements[v["agreement"]])
    label = _label(v["label"], agreements)
    who = v["principal"]
    if v["kind"] == "release":
        assert who["type"] == "node"
        return policy.may_release(
            label, PartnerNode(who["party"], who["agreement"]), holder=v["holder"],
            object_id=v["object_id"], version=v["version"],
            consents=[_token(c) for c in v["consents"]],
            now=dt.datetime.fromisoformat(v["now"]))
    assert who["type"] == "person"
    person = policy.person(who["name"], who["party"], who["clearance"], caveats=who["caveats"],
                           communities=who["communities"], roles=who["roles"])
    if v["kind"] == "read":
        return policy.may_read(person, label)
    assert v["kind"] == "publish"
    return policy.check_publish(person, label)


@pytest.mark.parametrize("vector", DOC["vectors"], ids=[v["id"] for v in DOC["vectors"]])
def test_vector(vector: dict[str, Any], agreements: dict[str, Agreement]) -> None:
    decision = _decide(vector, agreements)
    expected = vector["expected"]
    assert (decision.allowed, decision.rule, decision.reason) == (
        expected["allowed"], expected["rule"], expected["reason"])
