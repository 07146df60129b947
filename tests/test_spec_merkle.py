"""The spec's RFC 9162 trees and proofs, checked by the independent verifiers in verity.proofs."""

from __future__ import annotations

import hashlib

import icontract
import pytest

from verity.errors import InvalidProof
from verity.proofs import ConsistencyProof, InclusionProof, verify_consistency, verify_inclusion
from verity_spec import merkle

LEAVES = [f"leaf {index}".encode() for index in range(17)]


def test_empty_tree_hash_is_the_hash_of_nothing() -> None:
    assert merkle.mth([]) == hashlib.sha256(b"").digest()


def test_one_leaf_tree_is_its_leaf_hash() -> None:
    assert merkle.mth([b"x"]) == hashlib.sha256(b"\x00x").digest()


def test_three_leaf_tree_splits_at_the_largest_power_of_two() -> None:
    a, b, c = (hashlib.sha256(b"\x00" + leaf).digest() for leaf in (b"a", b"b", b"c"))
    left = hashlib.sha256(b"\x01" + a + b).digest()
    assert merkle.mth([b"a", b"b", b"c"]) == hashlib.sha256(b"\x01" + left + c).digest()


@pytest.mark.parametrize("tree_size", range(1, len(LEAVES) + 1))
def test_every_audit_path_verifies(tree_size: int) -> None:
    root = merkle.mth(LEAVES[:tree_size])
    for index in range(tree_size):
        path = tuple(merkle.path(index, LEAVES[:tree_size]))
        verify_inclusion(InclusionProof(index, tree_size, LEAVES[index], path), root)
        with pytest.raises(InvalidProof):
            verify_inclusion(InclusionProof(index, tree_size, b"other", path), root)


@pytest.mark.parametrize("new_size", range(1, len(LEAVES) + 1))
def test_every_consistency_proof_verifies(new_size: int) -> None:
    new_root = merkle.mth(LEAVES[:new_size])
    for old_size in range(1, new_size + 1):
        path = tuple(merkle.proof(old_size, LEAVES[:new_size]))
        old_root = merkle.mth(LEAVES[:old_size])
        verify_consistency(ConsistencyProof(old_size, new_size, path), old_root, new_root)
        if old_size < new_size:
            with pytest.raises(InvalidProof):
                verify_consistency(
                    ConsistencyProof(old_size, new_size, path),
                    merkle.mth([b"forged", *LEAVES[1:old_size]]),
                    new_root,
                )


def test_a_proof_for_a_leaf_outside_the_tree_violates_the_precondition() -> None:
    with pytest.raises(icontract.ViolationError):
        merkle.path(3, LEAVES[:3])
    with pytest.raises(icontract.ViolationError):
        merkle.proof(0, LEAVES[:3])


@pytest.mark.parametrize("tree_size", range(1, 18))
def test_the_spec_verifiers_accept_every_genuine_proof_and_no_flipped_one(tree_size: int) -> None:
    leaves = LEAVES[:tree_size]
    root = merkle.mth(leaves)
    for index in range(tree_size):
        path = merkle.path(index, leaves)
        assert merkle.is_valid_inclusion(leaves[index], index, tree_size, path, root)
        assert not merkle.is_valid_inclusion(leaves[index] + b"!", index, tree_size, path, root)
        assert not merkle.is_valid_inclusion(leaves[index], index, tree_size, [*path, root], root)
        for at in range(len(path)):
            flipped = [*path[:at], bytes(32), *path[at + 1 :]]
            assert not merkle.is_valid_inclusion(leaves[index], index, tree_size, flipped, root)
    for old_size in range(1, tree_size + 1):
        proof = merkle.proof(old_size, leaves)
        old_root = merkle.mth(leaves[:old_size])
        assert merkle.is_valid_consistency(old_size, tree_size, proof, old_root, root)
        assert not merkle.is_valid_consistency(old_size, tree_size, proof, root[::-1], root)
        if proof:
            assert not merkle.is_valid_consistency(old_size, tree_size, proof[:-1], old_root, root)
