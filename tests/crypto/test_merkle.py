"""RFC 9162 Merkle proofs: the transparency-dev vectors and property tests."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intelpact.crypto.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from intelpact.errors import IntelpactError

DATA = Path(__file__).resolve().parent.parent / "data" / "merkle"


def _vectors(kind: str) -> list[Any]:
    files = sorted((DATA / kind).rglob("*.json"))
    return [pytest.param(f, id=str(f.relative_to(DATA / kind))) for f in files]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "", validate=True)


def _proof(vector: dict[str, Any]) -> list[bytes]:
    return [_b64(p) for p in vector["proof"] or []]


def _check(vector: dict[str, Any], verify: Any) -> None:
    if vector["wantErr"]:
        with pytest.raises(ProofError) as info:
            verify()
        assert info.value.message  # a short reason, never empty
    else:
        assert verify() is None


INCLUSION = _vectors("inclusion")
CONSISTENCY = _vectors("consistency")


def test_vector_counts() -> None:
    # The README promises 98 + 98; a missing copy must not pass silently.
    assert len(INCLUSION) == 98
    assert len(CONSISTENCY) == 98
    assert (DATA / "LICENSE.txt").is_file()


@pytest.mark.parametrize("path", INCLUSION)
def test_inclusion_vector(path: Path) -> None:
    v = json.loads(path.read_text(encoding="utf-8"))
    _check(v, lambda: verify_inclusion(
        v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), _proof(v), _b64(v["root"])))


@pytest.mark.parametrize("path", CONSISTENCY)
def test_consistency_vector(path: Path) -> None:
    v = json.loads(path.read_text(encoding="utf-8"))
    _check(v, lambda: verify_consistency(
        v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _proof(v)))


@pytest.mark.skip(reason="subtreeinclusion/ and subtreeconsistency/ test subtree proofs over "
                         "[start, end) ranges (a different API, not RFC 9162 §2.1.3/§2.1.4)")
def test_subtree_vectors() -> None:  # pragma: no cover - documents the skipped folders
    raise AssertionError("subtree proofs are not implemented")


def test_happy_paths_exist_in_vectors() -> None:
    files = [*(DATA / "inclusion").rglob("*.json"), *(DATA / "consistency").rglob("*.json")]
    wanted = [json.loads(f.read_text(encoding="utf-8"))["wantErr"] for f in files]
    assert wanted.count(False) == 12  # 6 happy paths in each folder


# --- the tree itself -----------------------------------------------------------------------


def _mth_reference(d: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 §2.1.1, recursively (small trees only)."""
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = 1
    while k * 2 < len(d):
        k *= 2
    return node_hash(_mth_reference(d[:k]), _mth_reference(d[k:]))


def _path_reference(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) straight from RFC 9162 §2.1.3.1."""
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return [*_path_reference(m, d[:k]), _mth_reference(d[k:])]
    return [*_path_reference(m - k, d[k:]), _mth_reference(d[:k])]


def _subproof_reference(m: int, d: list[bytes], b: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) straight from RFC 9162 §2.1.4.1."""
    if m == len(d):
        return [] if b else [_mth_reference(d)]
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m <= k:
        return [*_subproof_reference(m, d[:k], b), _mth_reference(d[k:])]
    return [*_subproof_reference(m - k, d[k:], False), _mth_reference(d[:k])]


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    left, right = b"a" * 32, b"b" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    # RFC 6962 reference value for the empty leaf.
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")


def test_generation_matches_the_rfc_definitions() -> None:
    for n in range(1, 34):
        d = _leaves(n)
        assert root(d) == _mth_reference(d)
        for m in range(n):
            assert inclusion_proof(m, d) == _path_reference(m, d)
        for m in range(1, n + 1):
            assert consistency_proof(m, d) == _subproof_reference(m, d, True)


def test_generation_rejects_out_of_range() -> None:
    d = _leaves(5)
    for bad in (-1, 5):
        with pytest.raises(ProofError, match="outside"):
            inclusion_proof(bad, d)
    for bad in (0, 6):
        with pytest.raises(ProofError, match="outside"):
            consistency_proof(bad, d)


def test_clear_reasons() -> None:
    d = _leaves(7)
    r = root(d)
    p = inclusion_proof(3, d)
    with pytest.raises(ProofError, match="index 7 >= tree size 7"):
        verify_inclusion(7, 7, d[0], p, r)
    with pytest.raises(ProofError, match="wrong proof length 2, expected 3"):
        verify_inclusion(3, 7, d[3], p[:2], r)
    with pytest.raises(ProofError, match="root mismatch"):
        verify_inclusion(3, 7, d[4], p, r)
    c = consistency_proof(3, d)
    with pytest.raises(ProofError, match="size1 5 > size2 3"):
        verify_consistency(5, 3, r, r, c)
    with pytest.raises(ProofError, match="size1 is 0 with a non-empty proof"):
        verify_consistency(0, 7, EMPTY_ROOT, r, c)
    with pytest.raises(ProofError, match="wrong proof length"):
        verify_consistency(3, 7, root(d[:3]), r, [*c, c[0]])
    with pytest.raises(ProofError, match="root1 mismatch"):
        verify_consistency(3, 7, root(d[:2]), r, c)
    with pytest.raises(ProofError, match="root2 mismatch"):
        verify_consistency(3, 7, root(d[:3]), root(d[:6]), c)
    assert issubclass(ProofError, IntelpactError)


def test_large_tree_is_iterative_and_fast() -> None:
    n = 70_001
    d = _leaves(n)
    r = root(d)
    for i in (0, 1, 65_535, 65_536, n - 1):
        verify_inclusion(i, n, d[i], inclusion_proof(i, d), r)
    for m in (1, 65_536, 65_537, n - 1):
        verify_consistency(m, n, root(d[:m]), r, consistency_proof(m, d))
    # Huge sizes are just integers: the length check answers without any hashing.
    with pytest.raises(ProofError, match="wrong proof length"):
        verify_inclusion(2**62, 2**63, d[0], [], r)


# --- properties ----------------------------------------------------------------------------


def _flip(value: bytes, bit: int) -> bytes:
    bit %= len(value) * 8
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@st.composite
def _tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    n = draw(st.integers(min_value=1, max_value=200))
    return _leaves(n), draw(st.integers(min_value=0, max_value=n - 1))


@settings(max_examples=60, deadline=None)
@given(_tree_and_index(), st.integers(min_value=0), st.integers(min_value=0))
def test_inclusion_property(tree: tuple[list[bytes], int], pick: int, bit: int) -> None:
    d, i = tree
    r = root(d)
    proof = inclusion_proof(i, d)
    verify_inclusion(i, len(d), d[i], proof, r)
    # Flip one bit anywhere in the proof, the root or the leaf hash: it must fail.
    targets = len(proof) + 2
    t = pick % targets
    if t < len(proof):
        bad = list(proof)
        bad[t] = _flip(bad[t], bit)
        args = (d[i], bad, r)
    elif t == len(proof):
        args = (d[i], proof, _flip(r, bit))
    else:
        args = (_flip(d[i], bit), proof, r)
    with pytest.raises(ProofError):
        verify_inclusion(i, len(d), *args)


@st.composite
def _two_sizes(draw: st.DrawFn) -> tuple[list[bytes], int]:
    n = draw(st.integers(min_value=1, max_value=200))
    return _leaves(n), draw(st.integers(min_value=1, max_value=n))


@settings(max_examples=60, deadline=None)
@given(_two_sizes(), st.integers(min_value=0), st.integers(min_value=0))
def test_consistency_property(tree: tuple[list[bytes], int], pick: int, bit: int) -> None:
    d, m = tree
    n = len(d)
    r1, r2 = root(d[:m]), root(d)
    proof = consistency_proof(m, d)
    verify_consistency(m, n, r1, r2, proof)
    targets = len(proof) + 2
    t = pick % targets
    if t < len(proof):
        bad = list(proof)
        bad[t] = _flip(bad[t], bit)
        args = (r1, r2, bad)
    elif t == len(proof):
        args = (_flip(r1, bit), r2, proof)
    else:
        args = (r1, _flip(r2, bit), proof)
    with pytest.raises(ProofError):
        verify_consistency(m, n, *args)


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=1, max_value=120))
def test_every_prefix_is_consistent_with_the_whole(n: int) -> None:
    d = _leaves(n)
    r = root(d)
    for m in range(1, n + 1):
        verify_consistency(m, n, root(d[:m]), r, consistency_proof(m, d))


# -- a tree stored as perfect subtrees ------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.integers(0, 300), st.data())
def test_stored_tree_matches_the_definitions(n: int, split: int, data: st.DataObject) -> None:
    """Integrating leaves in two steps (``extend``), then reading roots and proofs back
    from the perfect subtrees (``Tree``), gives exactly the RFC 9162 definitions."""
    from intelpact.crypto.merkle import Tree, extend, fold

    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    first = min(split, n)
    made, frontier = extend(0, [], leaves[:first])
    more, frontier = extend(first, frontier, leaves[first:])
    nodes = {(level, index): h for level, index, h in made + more}
    assert len(nodes) == len(made) + len(more)  # every subtree made once
    tree = Tree(lambda coords: {c: nodes[c] for c in coords if c in nodes})
    assert fold(frontier) == tree.root(n) == root(leaves)
    index = data.draw(st.integers(0, n - 1))
    size1 = data.draw(st.integers(1, n))
    assert tree.inclusion(index, n) == inclusion_proof(index, leaves)
    assert tree.consistency(size1, n) == consistency_proof(size1, leaves)
    assert tree.root(size1) == root(leaves[:size1])
    assert tree.inclusions([index, size1 - 1], n) == [inclusion_proof(index, leaves),
                                                      inclusion_proof(size1 - 1, leaves)]


def test_inclusion_tiles_are_the_blocks_of_the_inclusion_ranges() -> None:
    """The level-by-level path (what stored proofs fetch) tiles exactly the ranges of the
    RFC's recursive split, for every leaf of every tree up to 130 leaves."""
    from intelpact.crypto.merkle import blocks, inclusion_ranges, inclusion_tiles

    for n in range(1, 131):
        for index in range(n):
            assert inclusion_tiles(index, n) == [blocks(lo, hi)
                                                 for lo, hi in inclusion_ranges(index, n)]
    for index, n in ((-1, 5), (5, 5), (0, 0)):
        with pytest.raises(ProofError, match="outside"):
            inclusion_tiles(index, n)


def test_a_stored_tree_never_guesses_a_missing_subtree() -> None:
    from intelpact.crypto.merkle import Tree, blocks, extend

    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(6)]
    made, _ = extend(0, [], leaves)
    nodes = {(level, index): h for level, index, h in made}
    del nodes[(1, 2)]
    with pytest.raises(ProofError, match="lacks subtree"):
        Tree(lambda coords: {c: nodes[c] for c in coords if c in nodes}).root(6)
    with pytest.raises(ProofError, match="not aligned"):
        blocks(1, 3)
    with pytest.raises(ProofError, match="frontier"):
        extend(3, [], leaves)
