"""RFC 9162 Merkle tree math: hashes, roots, proofs and their verification. No I/O.

Hashing is exactly RFC 9162 §2.1.1 (SHA-256 with domain separation)::

    leaf_hash(d)    = SHA-256(0x00 || d)
    node_hash(l, r) = SHA-256(0x01 || l || r)
    MTH({})         = SHA-256()              (the empty tree)

The tree over *n* leaves splits at *k*, the largest power of two smaller than *n*.
Everything here is iterative (no recursion), so very large trees are fine.

Verifiers follow RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency) step by
step. They return ``None`` on success and raise :class:`ProofError` with a short
reason otherwise. Before the RFC's steps they check the proof's length against the
length the tree shape demands, so a truncated or extended proof gets a clear message
rather than only "root mismatch".
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from ..errors import IntelpactError

__all__ = [
    "EMPTY_ROOT", "HASH_SIZE", "ProofError", "consistency_proof", "inclusion_proof",
    "leaf_hash", "node_hash", "root", "verify_consistency", "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


class ProofError(IntelpactError):
    """A Merkle inclusion or consistency proof is malformed or does not verify."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """k: the largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) from leaf hashes, level by level.

    Pairing left to right and carrying an odd last node up unchanged gives the same
    tree as the RFC's largest-power-of-two split.
    """
    n = hi - lo
    if n == 0:
        return EMPTY_ROOT
    level = list(hashes[lo:hi])
    sha = hashlib.sha256
    while n > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, n - 1, 2)]
        if n & 1:
            nxt.append(level[-1])
        level = nxt
        n = len(level)
    return level[0]


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of a list of leaf hashes (SHA-256("") when empty)."""
    return _mth(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1, ordered from the leaf upwards."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ProofError(f"leaf index {index} is outside a tree of size {n}")
    # Walk down from the root: at each split, the subtree not holding the leaf is a
    # sibling on the path. The RFC lists siblings bottom-up, so reverse at the end.
    path: list[bytes] = []
    lo, hi = 0, n
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(_mth(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:
            path.append(_mth(leaf_hashes, lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_proof(size1: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(size1, D[size2]) of RFC 9162 §2.1.4.1, where size2 = len(leaf_hashes).

    Empty when size1 equals size2. Requires 0 < size1 <= size2, like the verifier:
    a proof from the empty tree is meaningless.
    """
    n = len(leaf_hashes)
    if not 0 < size1 <= n:
        raise ProofError(f"size1 {size1} is outside 1..{n} (size2)")
    if size1 == n:
        return []
    # SUBPROOF(m, D[lo:hi], b), unrolled: each step appends one hash after the
    # result of the recursive call, so collect them and reverse at the end.
    tail: list[bytes] = []
    m, lo, hi, b = size1, 0, n, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            tail.append(_mth(leaf_hashes, lo + k, hi))
            hi = lo + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            tail.append(_mth(leaf_hashes, lo, lo + k))
            lo += k
            m -= k
            b = False
    proof = [] if b else [_mth(leaf_hashes, lo, hi)]  # SUBPROOF(m, D[m], b)
    proof.extend(reversed(tail))
    return proof


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


def _check_proof(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise ProofError(f"wrong proof length {len(proof)}, expected {want}")
    for i, p in enumerate(proof):
        _check_hash(p, f"proof hash {i}")


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is at ``index`` in the tree ``root_hash`` of ``size``.

    RFC 9162 §2.1.3.2. Raises :class:`ProofError`; returns None on success.
    """
    if index < 0 or size < 0:
        raise ProofError(f"negative leaf index or tree size ({index}, {size})")
    # Step 1: the leaf index must be inside the tree.
    if index >= size:
        raise ProofError(f"leaf index {index} >= tree size {size}")
    _check_hash(leaf, "leaf hash")
    _check_hash(root_hash, "root hash")
    # The path has one hash per level below the point where the paths to index and to
    # size-1 meet, plus one per left-hand subtree on the right border above it.
    inner = (index ^ (size - 1)).bit_length()
    _check_proof(proof, inner + bin(index >> inner).count("1"))
    # Step 2: fn = leaf_index, sn = tree_size - 1.
    fn, sn = index, size - 1
    # Step 3: r = hash.
    r = leaf
    sha = hashlib.sha256
    # Step 4: for each p in inclusion_path:
    for p in proof:
        # 4a: if sn is 0, stop and fail.
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        # 4b: if LSB(fn) is set, or fn == sn: ...
        if fn & 1 or fn == sn:
            # 4b.1: r = HASH(0x01 || p || r).
            r = sha(b"\x01" + p + r).digest()
            # 4b.2: if LSB(fn) is not set, right-shift fn and sn until LSB(fn) is set or fn is 0.
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            # Otherwise: r = HASH(0x01 || r || p).
            r = sha(b"\x01" + r + p).digest()
        # 4c: right-shift fn and sn once.
        fn >>= 1
        sn >>= 1
    # Step 5: sn must be 0 and r must equal root_hash.
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root")
    if not _same(r, root_hash):
        raise ProofError("root mismatch: the proof does not lead to the given root")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``root1`` of ``size1`` is a prefix of the tree ``root2`` of ``size2``.

    RFC 9162 §2.1.4.2. Requires 0 < size1 <= size2 (as transparency-dev does: every
    tree extends the empty one, so a proof from size 0 is meaningless and is refused,
    with or without a proof). Raises :class:`ProofError`; returns None on success.
    """
    if size1 < 0 or size2 < 0:
        raise ProofError(f"negative tree size ({size1}, {size2})")
    if size1 > size2:
        raise ProofError(f"size1 {size1} > size2 {size2}")
    if size1 == 0:
        # The empty tree is a prefix of every tree: a proof from it proves nothing,
        # and the transparency-dev vectors reject it, with or without a proof.
        if proof:
            raise ProofError("size1 is 0 with a non-empty proof")
        raise ProofError("size1 is 0: a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        # Same tree: nothing to prove, the roots must simply be equal. Their length is
        # deliberately not checked here: the transparency-dev vectors accept equal
        # opaque roots ("sizes are equal (one) and proof is empty").
        if proof:
            raise ProofError("wrong proof length: the sizes are equal, the proof must be empty")
        if not _same(root1, root2):
            raise ProofError("root mismatch: equal sizes with different roots")
        return
    _check_hash(root1, "root1")
    _check_hash(root2, "root2")
    # Expected length: the inclusion path of leaf size1-1 in the size2 tree, minus the
    # levels inside the largest perfect subtree ending at size1, plus that subtree's
    # root unless it is the whole size1 tree (then root1 stands in for it).
    shift = (size1 & -size1).bit_length() - 1
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = bin((size1 - 1) >> inner).count("1")
    power_of_two = size1 == 1 << shift
    want = (0 if power_of_two else 1) + inner - shift + border
    # Step 1: an empty consistency_path fails.
    if not proof:
        raise ProofError(f"wrong proof length 0, expected {want}")
    _check_proof(proof, want)
    # Step 2: if size1 is an exact power of 2, prepend first_hash to the path.
    path = [root1, *proof] if power_of_two else list(proof)
    # Step 3: fn = first_tree_size - 1, sn = second_tree_size - 1.
    fn, sn = size1 - 1, size2 - 1
    # Step 4: if LSB(fn) is set, right-shift fn and sn until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5: fr = sr = the first value of the path.
    fr = sr = path[0]
    sha = hashlib.sha256
    # Step 6: for each subsequent value c in the path:
    for c in path[1:]:
        # 6a: if sn is 0, stop and fail.
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        # 6b: if LSB(fn) is set, or fn == sn: ...
        if fn & 1 or fn == sn:
            # 6b.1: fr = HASH(0x01 || c || fr); sr = HASH(0x01 || c || sr).
            fr = sha(b"\x01" + c + fr).digest()
            sr = sha(b"\x01" + c + sr).digest()
            # 6b.2: if LSB(fn) is not set, right-shift fn and sn until LSB(fn) is set or fn is 0.
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            # Otherwise: sr = HASH(0x01 || sr || c).
            sr = sha(b"\x01" + sr + c).digest()
        # 6c: right-shift fn and sn once.
        fn >>= 1
        sn >>= 1
    # Step 7: fr must equal first_hash, sr must equal second_hash, and sn must be 0.
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root")
    if not _same(fr, root1):
        raise ProofError("root1 mismatch: the proof does not lead to the first root")
    if not _same(sr, root2):
        raise ProofError("root2 mismatch: the proof does not lead to the second root")
