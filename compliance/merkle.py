"""RFC 6962 / RFC 9162 Merkle trees over the audit log's leaf hashes.

The tree of n leaves is the RFC's: MTH(D[n]) splits at k, the largest power
of two smaller than n, into MTH(D[0:k]) and MTH(D[k:n]). Built bottom-up,
pairing neighbours level by level and carrying an unpaired last node up
unchanged, gives the same tree, and that is how it is computed here: a loop
over lists of 32-byte hashes, no recursion, about a second for 1,000,000
leaves in CPython.

Node (level, index) covers leaves [index * 2**level, min((index + 1) * 2**level, n)),
and its hash is the RFC MTH of exactly those leaves. So every subtree the RFC's
PATH and PROOF algorithms name is one look-up in a `MerkleTree`'s cached
levels, and an inclusion proof costs a few microseconds, not a rebuild.

`compliance/verify.py` holds its own copy of the verification algorithms
(it must run without this package); tests check the two agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""RFC 9162 2.1.1: the hash of an empty tree is the hash of the empty string."""

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof was asked for sizes or an index the tree does not have."""


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    sha = _sha256
    it = iter(level)
    # zip(it, it) pairs neighbours; an unpaired last node moves up unchanged.
    parents = [sha(b"\x01" + left + right).digest() for left, right in zip(it, it, strict=False)]
    if len(level) % 2:
        parents.append(level[-1])
    return parents


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes, keeping only one level in memory."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level: Sequence[bytes] = leaf_hashes
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def _largest_power_of_two_below(n: int) -> int:
    """k with k < n <= 2k (n >= 2): the RFC's split point."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """All levels of the tree over `leaf_hashes`, so roots and proofs are look-ups.

    Memory: about 2n hashes (some 150 MB for a million leaves).
    """

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        levels: list[list[bytes]] = [list(leaf_hashes)]
        while len(levels[-1]) > 1:
            levels.append(_next_level(levels[-1]))
        self.levels = levels

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (default: all)."""
        size = self.size if size is None else size
        self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._subtree(0, size)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is outside 0..{self.size}")

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range the RFC recursion produces (lo aligned to its size).

        A cached node when the range is one; otherwise (the right edge of a smaller
        tree than the cached one) folded from the perfect subtrees hi - lo splits into.
        """
        width = hi - lo
        height = (width - 1).bit_length()
        index = lo >> height
        level = self.levels[height]
        if (index << height) == lo and (hi == lo + (1 << height) or hi == self.size):
            return level[index]
        parts: list[bytes] = []
        start = lo
        for bit in range(height, -1, -1):
            if width & (1 << bit):
                parts.append(self.levels[bit][start >> bit])
                start += 1 << bit
        result = parts[-1]
        for part in reversed(parts[:-1]):
            result = node_hash(part, result)
        return result

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 2.1.3.1 PATH(index, D[0:size]), bottom-up."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ProofError(f"leaf {index} is not in a tree of size {size}")
        if size == self.size:
            return self._cached_path(index)
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _largest_power_of_two_below(hi - lo)
            if index < lo + k:
                path.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._subtree(lo, lo + k))
                lo += k
        path.reverse()
        return path

    def _cached_path(self, index: int) -> list[bytes]:
        """PATH against the full cached tree: the sibling at each level that has one."""
        path = []
        for height, level in enumerate(self.levels[:-1]):
            sibling = (index >> height) ^ 1
            if sibling < len(level):
                path.append(level[sibling])
        return path

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """RFC 9162 2.1.4.1 PROOF(first, D[0:second])."""
        second = self.size if second is None else second
        self._check_size(second)
        if not 0 < first <= second:
            raise ProofError(f"no consistency proof from size {first} to size {second}")
        path: list[bytes] = []
        lo, hi, complete = 0, second, True
        # SUBPROOF(m, D[lo:hi], b), unrolled; m is absolute (first), relative is first - lo.
        while first - lo != hi - lo:
            k = _largest_power_of_two_below(hi - lo)
            if first - lo <= k:
                path.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._subtree(lo, lo + k))
                lo += k
                complete = False
        if not complete:
            path.append(self._subtree(lo, hi))
        path.reverse()
        return path


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does `path` prove leaf hash `leaf` at `index` in the tree `root`?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree (second, second_root) an append-only extension of
    (first, first_root)?"""
    if not 0 < first <= second:
        return False
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    nodes = list(path)
    if first & (first - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        nodes.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = nodes[0]
    for c in nodes[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


class Frontier:
    """The compact range of a growing tree: the roots of the perfect subtrees its size
    splits into, largest first. Appending leaves and asking for the root cost
    O(log n) each, so checkpoints need only the events since the last one."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []

    def append(self, leaf: bytes) -> None:
        height, node = 0, leaf
        stack = self._stack
        while stack and stack[-1][0] == height:
            node = node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))
        self.size += 1

    def extend(self, leaves: Sequence[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        result = self._stack[-1][1]
        for _, node in reversed(self._stack[:-1]):
            result = node_hash(node, result)
        return result

    def copy(self) -> Frontier:
        other = Frontier()
        other.size = self.size
        other._stack = list(self._stack)
        return other
