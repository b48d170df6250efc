"""RFC 9162 Merkle tree math: hashes, roots, proofs and their verification. No I/O.

Hashing is exactly RFC 9162 §2.1.1 (SHA-256 with domain separation)::

    leaf_hash(d)    = SHA-256(0x00 || d)
    node_hash(l, r) = SHA-256(0x01 || l || r)
    MTH({})         = SHA-256()              (the empty tree)

The tree over *n* leaves splits at *k*, the largest power of two smaller than *n*.
Everything here is iterative (no recursion), so very large trees are fine.

A stored log keeps the hash of every *perfect* subtree, addressed by its coordinate
``(level, index)``: the subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``.
Those hashes never change once the leaves exist, so they can be cached forever. Any
range the proofs need is a run of such blocks (:func:`blocks`), folded from the right
(:func:`fold`); :func:`extend` integrates new leaves into a tree of known size, and
:class:`Tree` makes roots and proofs from a store of perfect-subtree hashes.

Verifiers follow RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency) step by
step. They return ``None`` on success and raise :class:`ProofError` with a short
reason otherwise. Before the RFC's steps they check the proof's length against the
length the tree shape demands, so a truncated or extended proof gets a clear message
rather than only "root mismatch".
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence

from ..errors import IntelpactError

__all__ = [
    "EMPTY_ROOT", "HASH_SIZE", "Coord", "ProofError", "Tree", "blocks", "consistency_proof",
    "consistency_ranges", "extend", "fold", "inclusion_proof", "inclusion_ranges",
    "inclusion_tiles", "leaf_hash", "node_hash", "root", "verify_consistency",
    "verify_inclusion",
]

Coord = tuple[int, int]  # (level, index) of a perfect subtree

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


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges [lo, hi) whose tree hashes make PATH(index, D[size]) (RFC 9162
    §2.1.3.1), ordered from the leaf upwards."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    # Walk down from the root: at each split, the subtree not holding the leaf is a
    # sibling on the path. The RFC lists siblings bottom-up, so reverse at the end.
    path: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf ranges [lo, hi) whose tree hashes make PROOF(size1, D[size2]) (RFC 9162
    §2.1.4.1). Empty when the sizes are equal. Requires 0 < size1 <= size2, like the
    verifier: a proof from the empty tree is meaningless."""
    if not 0 < size1 <= size2:
        raise ProofError(f"size1 {size1} is outside 1..{size2} (size2)")
    if size1 == size2:
        return []
    # SUBPROOF(m, D[lo:hi], b), unrolled: each step appends one hash after the
    # result of the recursive call, so collect them and reverse at the end.
    tail: list[tuple[int, int]] = []
    m, lo, hi, b = size1, 0, size2, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            tail.append((lo + k, hi))
            hi = lo + k
        else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            tail.append((lo, lo + k))
            lo += k
            m -= k
            b = False
    proof = [] if b else [(lo, hi)]  # SUBPROOF(m, D[m], b)
    proof.extend(reversed(tail))
    return proof


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1, ordered from the leaf upwards."""
    return [_mth(leaf_hashes, lo, hi) for lo, hi in inclusion_ranges(index, len(leaf_hashes))]


def consistency_proof(size1: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(size1, D[size2]) of RFC 9162 §2.1.4.1, where size2 = len(leaf_hashes)."""
    return [_mth(leaf_hashes, lo, hi)
            for lo, hi in consistency_ranges(size1, len(leaf_hashes))]


# --- a tree stored as perfect subtrees --------------------------------------------------------


def blocks(lo: int, hi: int) -> list[Coord]:
    """The perfect subtrees that tile [lo, hi), largest first.

    Every range in a tree's recursive split (and so in every proof) starts at a multiple
    of a power of two at least as large as itself, so it is tiled by the binary digits
    of its size, and its tree hash is :func:`fold` of theirs.
    """
    out: list[Coord] = []
    size = hi - lo
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            if lo % (1 << level):
                raise ProofError(f"range [{lo}, {hi}) is not aligned to a tree split")
            out.append((level, lo >> level))
            lo += 1 << level
    return out


def inclusion_tiles(index: int, size: int) -> list[list[Coord]]:
    """PATH(index, D[size]) as :func:`blocks` of each of :func:`inclusion_ranges`, from
    the leaf upwards, worked out level by level instead of by splitting ranges: at each
    level below the root the sibling of the leaf's ancestor, where it exists, is one
    perfect subtree, except on the right border, where it is the rest of the tree."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    tiles: list[list[Coord]] = []
    level = 0
    while (size - 1) >> level:  # more than one node at this level
        sibling = (index >> level) ^ 1
        lo = sibling << level
        if lo < size:
            tiles.append([(level, sibling)] if lo + (1 << level) <= size
                         else blocks(lo, size))
        level += 1
    return tiles


def fold(hashes: Sequence[bytes]) -> bytes:
    """The tree hash of consecutive perfect subtrees, largest first (EMPTY_ROOT if none)."""
    if not hashes:
        return EMPTY_ROOT
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = hashlib.sha256(b"\x01" + left + h).digest()
    return h


def extend(size: int, frontier: Sequence[bytes],
           leaves: Iterable[bytes]) -> tuple[list[tuple[int, int, bytes]], list[bytes]]:
    """Integrate leaf hashes into a tree of ``size`` leaves.

    ``frontier`` holds the hashes of ``blocks(0, size)``. Returns every perfect subtree
    the new leaves complete, as (level, index, hash) with the leaves themselves at level
    0, and the new frontier."""
    if len(frontier) != size.bit_count():
        raise ProofError(f"a tree of size {size} has {size.bit_count()} frontier hashes, "
                         f"not {len(frontier)}")
    made: list[tuple[int, int, bytes]] = []
    stack = list(frontier)
    sha = hashlib.sha256
    for leaf in leaves:
        _check_hash(leaf, "leaf hash")
        h, level, index = leaf, 0, size
        made.append((0, index, h))
        while index & 1:  # a right child: its left sibling is the last frontier hash
            h = sha(b"\x01" + stack.pop() + h).digest()
            level += 1
            index >>= 1
            made.append((level, index, h))
        stack.append(h)
        size += 1
    return made, stack


class Tree:
    """Roots and proofs for a tree of perfect-subtree hashes held elsewhere.

    ``fetch(coords)`` returns the hash of every coordinate asked for (a store query, a
    cache, a list in memory); missing ones are an error, never guessed.
    """

    def __init__(self, fetch: Callable[[Sequence[Coord]], Mapping[Coord, bytes]]) -> None:
        self._fetch = fetch

    def _folded(self, tiles: Sequence[Sequence[Coord]]) -> list[bytes]:
        """The tree hash of each tile (perfect subtrees, largest first), with one fetch."""
        wanted = {c for tile in tiles for c in tile}
        found = self._fetch(list(wanted)) if wanted else {}
        if len(found) < len(wanted):
            missing = min(c for c in wanted if c not in found)
            raise ProofError(f"the tree lacks subtree {missing} (level, index): it is not "
                             "integrated that far")
        return [found[tile[0]] if len(tile) == 1 else fold([found[c] for c in tile])
                for tile in tiles]

    def _hashes(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return self._folded([blocks(lo, hi) for lo, hi in ranges])

    def root(self, size: int) -> bytes:
        return self._hashes([(0, size)])[0] if size else EMPTY_ROOT

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return self._folded(inclusion_tiles(index, size))

    def inclusions(self, indexes: Sequence[int], size: int) -> list[list[bytes]]:
        """Many inclusion proofs in the same tree with one fetch."""
        per = [inclusion_tiles(i, size) for i in indexes]
        flat = self._folded([tile for tiles in per for tile in tiles])
        out, at = [], 0
        for tiles in per:
            out.append(flat[at:at + len(tiles)])
            at += len(tiles)
        return out

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        return self._hashes(consistency_ranges(size1, size2))


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
