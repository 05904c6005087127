"""The Merkle tree is RFC 6962/9162's: the published vectors, and a brute-force copy of the
RFC's recursive definitions for every tree up to 40 leaves."""

from __future__ import annotations

import hashlib
import importlib.util
import time
from pathlib import Path
from types import ModuleType

import pytest

from compliance.merkle import (
    EMPTY_ROOT,
    Frontier,
    MerkleTree,
    ProofError,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# RFC 6962 reference leaves and tree heads (certificate-transparency / transparency-dev tests).
CT_DATA = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}
CT_CONSISTENCY = {
    (2, 8): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}


# --- the RFC's recursive definitions, verbatim, as the oracle --------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _k(len(leaves))
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = _k(n)
    if m <= k:
        return subproof(m, leaves[:k], b) + [mth(leaves[k:])]
    return subproof(m - k, leaves[k:], False) + [mth(leaves[:k])]


LEAVES = [leaf_hash(i.to_bytes(2, "big") + b"enclave") for i in range(40)]


def _verify_py() -> ModuleType:
    """compliance/verify.py is a standalone script; load it as a module to compare."""
    spec = importlib.util.spec_from_file_location(
        "standalone_verify", Path(__file__).parents[2] / "compliance" / "verify.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- tests ------------------------------------------------------------------------------


def test_roots_match_the_rfc_6962_vectors() -> None:
    leaves = [leaf_hash(d) for d in CT_DATA]
    assert leaf_hash(b"").hex() == CT_ROOTS[1]
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    tree = MerkleTree(leaves)
    for n in range(len(leaves) + 1):
        assert root_of(leaves[:n]).hex() == CT_ROOTS[n]
        assert tree.root(n).hex() == CT_ROOTS[n]
        assert MerkleTree(leaves[:n]).root().hex() == CT_ROOTS[n]


def test_proofs_match_the_rfc_6962_vectors() -> None:
    tree = MerkleTree([leaf_hash(d) for d in CT_DATA])
    for (index, size), want in CT_INCLUSION.items():
        assert [h.hex() for h in tree.inclusion_proof(index, size)] == want
        root = bytes.fromhex(CT_ROOTS[size])
        proof = [bytes.fromhex(h) for h in want]
        assert verify_inclusion(tree.levels[0][index], index, size, proof, root)
    for (first, second), want in CT_CONSISTENCY.items():
        assert [h.hex() for h in tree.consistency_proof(first, second)] == want
        proof = [bytes.fromhex(h) for h in want]
        old, new = bytes.fromhex(CT_ROOTS[first]), bytes.fromhex(CT_ROOTS[second])
        assert verify_consistency(first, second, old, new, proof)


def test_every_root_and_inclusion_proof_agrees_with_the_rfc_definitions_up_to_40() -> None:
    """For every n <= 40, every size m <= n of the cached tree, and every leaf index."""
    for n in range(1, 41):
        tree = MerkleTree(LEAVES[:n])
        assert tree.root() == mth(LEAVES[:n])
        for m in range(1, n + 1):
            root = mth(LEAVES[:m])
            assert tree.root(m) == root
            for i in range(m):
                proof = tree.inclusion_proof(i, m)
                assert proof == path(i, LEAVES[:m]), (i, m, n)
                assert verify_inclusion(LEAVES[i], i, m, proof, root)


def test_every_consistency_proof_agrees_with_the_rfc_definitions_up_to_40() -> None:
    for n in range(1, 41):
        tree = MerkleTree(LEAVES[:n])
        new = mth(LEAVES[:n])
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m, n)
            assert proof == subproof(m, LEAVES[:n], True), (m, n)
            assert verify_consistency(m, n, mth(LEAVES[:m]), new, proof)
        # Against smaller sizes of the same cached tree too.
        big = MerkleTree(LEAVES)
        for m in range(1, n):
            assert big.consistency_proof(m, n) == subproof(m, LEAVES[:n], True)


def test_wrong_inclusion_proofs_are_rejected() -> None:
    for n in range(2, 41):
        tree = MerkleTree(LEAVES[:n])
        root = tree.root()
        for i in range(n):
            proof = tree.inclusion_proof(i)
            leaf = LEAVES[i]
            assert not verify_inclusion(leaf, (i + 1) % n, n, proof, root)
            assert not verify_inclusion(LEAVES[(i + 1) % n], i, n, proof, root)
            assert not verify_inclusion(leaf, i, n, proof[:-1], root)
            assert not verify_inclusion(leaf, i, n, [*proof, b"\xab" * 32], root)
            assert not verify_inclusion(leaf, n, n, proof, root)
            flipped = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
            assert not verify_inclusion(leaf, i, n, flipped, root)


def test_wrong_consistency_proofs_are_rejected() -> None:
    for n in range(2, 41):
        tree = MerkleTree(LEAVES[:n])
        new = tree.root()
        for m in range(1, n):
            old = tree.root(m)
            proof = tree.consistency_proof(m, n)
            assert not verify_consistency(m, n, old, new, [])
            assert not verify_consistency(m, n, old, new, proof[:-1])
            assert not verify_consistency(m, n, old, new, [*proof, b"\xcd" * 32])
            assert not verify_consistency(m, n, new, new, proof)
            assert not verify_consistency(n, m, new, old, proof)
            other = MerkleTree([LEAVES[0][::-1], *LEAVES[1:n]])
            assert not verify_consistency(m, n, other.root(m), new, proof)
    assert verify_consistency(4, 4, LEAVES[0], LEAVES[0], [])
    assert not verify_consistency(4, 4, LEAVES[0], LEAVES[1], [])


def test_bad_requests_raise() -> None:
    tree = MerkleTree(LEAVES[:8])
    with pytest.raises(ProofError):
        tree.inclusion_proof(8)
    with pytest.raises(ProofError):
        tree.inclusion_proof(0, 9)
    with pytest.raises(ProofError):
        tree.consistency_proof(0, 8)
    with pytest.raises(ProofError):
        tree.consistency_proof(5, 3)


def test_frontier_root_equals_the_tree_root_at_every_size() -> None:
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT
    for n, leaf in enumerate(LEAVES, start=1):
        frontier.append(leaf)
        assert frontier.size == n
        assert frontier.root() == mth(LEAVES[:n])
    copy = frontier.copy()
    copy.append(LEAVES[0])
    assert frontier.size == len(LEAVES) and copy.size == len(LEAVES) + 1


def test_the_standalone_verifier_shares_the_algorithms() -> None:
    """verify.py carries its own copy (no project imports); both must agree everywhere."""
    standalone = _verify_py()
    for n in range(1, 41):
        tree = MerkleTree(LEAVES[:n])
        root = tree.root()
        assert standalone.merkle_root(LEAVES[:n]) == root
        for i in range(n):
            proof = tree.inclusion_proof(i)
            assert standalone.verify_inclusion(LEAVES[i], i, n, proof, root)
            if proof:
                assert not standalone.verify_inclusion(LEAVES[i], i, n, proof[:-1], root)
        for m in range(1, n):
            proof = tree.consistency_proof(m, n)
            assert standalone.verify_consistency(m, n, tree.root(m), root, proof)
            assert not standalone.verify_consistency(m, n, root, root, proof)


def test_a_million_leaves_root_and_proofs_are_fast() -> None:
    """The goals: the root of 10**6 leaves well under 10 s, one proof well under 1 ms."""
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(1_000_000)]
    started = time.perf_counter()
    root = root_of(leaves)
    assert time.perf_counter() - started < 10
    tree = MerkleTree(leaves)
    assert tree.root() == root
    started = time.perf_counter()
    for i in range(0, 1_000_000, 10_007):
        proof = tree.inclusion_proof(i)
        assert verify_inclusion(leaves[i], i, 1_000_000, proof, root)
    per_proof = (time.perf_counter() - started) / len(range(0, 1_000_000, 10_007))
    assert per_proof < 1e-3
