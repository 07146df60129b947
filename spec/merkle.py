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
