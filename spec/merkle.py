"""Merkle trees, inclusion proofs and consistency proofs, as RFC 9162 §2.1 defines them.

The functions below are the RFC's recursive definitions, written out with
the same names (MTH, PATH, PROOF, SUBPROOF) so a reader can hold the two side
by side. A leaf is the canonical bytes of one log record (records.py); the
tree over the first n records of a log is the tree over those n leaves.

    MTH({})      = SHA-256()
    MTH({d0})    = SHA-256(0x00 ‖ d0)
    MTH(D[n])    = SHA-256(0x01 ‖ MTH(D[0:k]) ‖ MTH(D[k:n]))
                   where k is the largest power of two smaller than n
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import icontract

__all__ = [
    "inclusion_root",
    "is_valid_consistency",
    "is_valid_inclusion",
    "largest_power_of_two_below",
    "leaf_hash",
    "mth",
    "node_hash",
    "path",
    "proof",
]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 ‖ leaf)."""
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


@icontract.require(lambda left, right: len(left) == 32 and len(right) == 32)
def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


@icontract.require(lambda n: n > 1)
@icontract.ensure(lambda n, result: result < n <= 2 * result)
def largest_power_of_two_below(n: int) -> int:
    """The largest power of two k with k < n."""
    k = 1
    while 2 * k < n:
        k *= 2
    return k


@icontract.ensure(lambda result: len(result) == 32)
def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]): the Merkle tree hash of `leaves`."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(leaves[0])
    k = largest_power_of_two_below(n)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


@icontract.require(lambda m, leaves: 0 <= m < len(leaves))
def path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the inclusion proof of leaf m in the tree over `leaves`."""
    n = len(leaves)
    if n == 1:
        return []
    k = largest_power_of_two_below(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


@icontract.require(lambda m, leaves: 0 < m <= len(leaves))
def proof(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]): the consistency proof from the first m leaves to all of `leaves`."""
    return subproof(m, leaves, True)


@icontract.require(lambda m, leaves: 0 < m <= len(leaves))
def subproof(m: int, leaves: Sequence[bytes], complete_subtree: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1."""
    n = len(leaves)
    if m == n:
        return [] if complete_subtree else [mth(leaves)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return [*subproof(m, leaves[:k], complete_subtree), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


# ---------------------------------------------------------------------------
# Verifying proofs: what an auditor who holds only roots may conclude.
#
# Each verifier walks the same recursion as PATH and SUBPROOF above, taking
# the proof's nodes from its end (the node nearest the root comes last) and
# building the roots they imply. A proof of the wrong length implies nothing.


@icontract.require(lambda m, n: 0 <= m < n)
@icontract.require(lambda leaf_hash_m: len(leaf_hash_m) == 32)
@icontract.require(lambda nodes: all(len(node) == 32 for node in nodes))
def inclusion_root(m: int, n: int, leaf_hash_m: bytes, nodes: Sequence[bytes]) -> bytes | None:
    """The root of D[n] that PATH(m, D[n]) = `nodes` implies, leaf m hashing to `leaf_hash_m`.

    None when `nodes` has not the length PATH(m, D[n]) has.
    """
    if n == 1:
        return leaf_hash_m if not nodes else None
    if not nodes:
        return None
    k = largest_power_of_two_below(n)
    *below, top = nodes
    if m < k:
        left = inclusion_root(m, k, leaf_hash_m, below)
        return None if left is None else node_hash(left, top)
    right = inclusion_root(m - k, n - k, leaf_hash_m, below)
    return None if right is None else node_hash(top, right)


@icontract.require(lambda m, n: 0 <= m < n)
@icontract.require(lambda root, nodes: len(root) == 32 and all(len(x) == 32 for x in nodes))
def is_valid_inclusion(leaf: bytes, m: int, n: int, nodes: Sequence[bytes], root: bytes) -> bool:
    """Whether `nodes` proves that `leaf` is leaf m of the tree of size n with `root`."""
    return inclusion_root(m, n, leaf_hash(leaf), nodes) == root


@icontract.require(lambda m, n: 0 < m <= n)
@icontract.require(lambda old_root: len(old_root) == 32)
@icontract.require(lambda nodes: all(len(node) == 32 for node in nodes))
def subproof_roots(
    m: int, n: int, nodes: Sequence[bytes], complete_subtree: bool, old_root: bytes
) -> tuple[bytes, bytes] | None:
    """(MTH(D[0:m]), MTH(D[n])) that SUBPROOF(m, D[n], b) = `nodes` implies.

    When b holds and m = n, D[n] is the old tree itself, whose root the
    verifier already knows (`old_root`): SUBPROOF sends nothing for it.
    None when `nodes` has not the length SUBPROOF(m, D[n], b) has.
    """
    if m == n:
        if complete_subtree:
            return (old_root, old_root) if not nodes else None
        return (nodes[0], nodes[0]) if len(nodes) == 1 else None
    if not nodes:
        return None
    k = largest_power_of_two_below(n)
    *below, top = nodes
    if m <= k:
        left = subproof_roots(m, k, below, complete_subtree, old_root)
        return None if left is None else (left[0], node_hash(left[1], top))
    right = subproof_roots(m - k, n - k, below, False, old_root)
    return None if right is None else (node_hash(top, right[0]), node_hash(top, right[1]))


@icontract.require(lambda m, n: 0 < m <= n)
@icontract.require(lambda old_root, new_root: len(old_root) == 32 and len(new_root) == 32)
@icontract.require(lambda nodes: all(len(node) == 32 for node in nodes))
def is_valid_consistency(
    m: int, n: int, nodes: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """Whether `nodes` proves the tree of size m with `old_root` a prefix of the one of size n."""
    roots = subproof_roots(m, n, nodes, True, old_root)
    return roots == (old_root, new_root)
