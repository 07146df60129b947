"""Third-party proof verification (verity.proofs) against RFC 9162 built by hand here."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from verity.errors import InvalidArgument, InvalidProof, InvalidSignature
from verity.proofs import (
    ConsistencyProof,
    InclusionProof,
    SignedCheckpoint,
    key_id_of,
    root_from_inclusion_proof,
    signed_checkpoint_bytes,
    verify_consistency,
    verify_inclusion,
    verify_signed_checkpoint,
)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    # RFC 9162 §2.1.1, literally.
    n = len(leaves)
    if n == 0:
        return sha(b"")
    if n == 1:
        return sha(b"\x00" + leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    # RFC 9162 §2.1.3.1 PATH(m, D[n]).
    n = len(leaves)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    # RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], b).
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, leaves[:k], b), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


LEAVES = [f"record-{i}".encode() for i in range(40)]


@pytest.mark.parametrize("tree_size", range(1, 41))
def test_every_inclusion_proof_verifies_and_any_changed_byte_fails(tree_size: int) -> None:
    leaves = LEAVES[:tree_size]
    root = mth(leaves)
    for index in range(tree_size):
        proof = InclusionProof(index, tree_size, leaves[index], tuple(path(index, leaves)))
        verify_inclusion(proof, root)
        assert root_from_inclusion_proof(proof) == root
        with pytest.raises(InvalidProof):
            verify_inclusion(
                InclusionProof(index, tree_size, leaves[index] + b"!", proof.path), root
            )
        for position in range(len(proof.path)):
            bent = list(proof.path)
            bent[position] = bytes([bent[position][0] ^ 1]) + bent[position][1:]
            with pytest.raises(InvalidProof):
                verify_inclusion(InclusionProof(index, tree_size, leaves[index], tuple(bent)), root)


def test_inclusion_proof_of_wrong_length_is_rejected_not_crashed() -> None:
    leaves = LEAVES[:8]
    root = mth(leaves)
    good = tuple(path(3, leaves))
    with pytest.raises(InvalidProof, match="too short"):
        verify_inclusion(InclusionProof(3, 8, leaves[3], good[:-1]), root)
    with pytest.raises(InvalidProof, match="too long"):
        verify_inclusion(InclusionProof(3, 8, leaves[3], (*good, good[0])), root)


@pytest.mark.parametrize("new_size", range(1, 41))
def test_every_consistency_proof_verifies_and_wrong_roots_fail(new_size: int) -> None:
    leaves = LEAVES[:new_size]
    new_root = mth(leaves)
    for old_size in range(1, new_size + 1):
        old_root = mth(leaves[:old_size])
        proof = ConsistencyProof(old_size, new_size, tuple(subproof(old_size, leaves, True)))
        verify_consistency(proof, old_root, new_root)
        if old_size < new_size:
            with pytest.raises(InvalidProof):
                verify_consistency(proof, mth(LEAVES[1 : old_size + 1]), new_root)
            with pytest.raises(InvalidProof):
                verify_consistency(proof, old_root, mth(LEAVES[1 : new_size + 1]))


def test_proof_values_reject_impossible_shapes() -> None:
    with pytest.raises(InvalidArgument, match="leaf_index=5"):
        InclusionProof(5, 5, b"x", ())
    with pytest.raises(InvalidArgument, match="old_size=0"):
        ConsistencyProof(0, 3, ())
    with pytest.raises(InvalidArgument, match=r"path\[0\]"):
        InclusionProof(0, 2, b"x", (b"short",))
    with pytest.raises(InvalidArgument, match="root"):
        verify_inclusion(InclusionProof(0, 1, b"x", ()), b"\x00" * 31)


def _signed(private: Ed25519PrivateKey, public: bytes, tree_size: int = 7) -> SignedCheckpoint:
    root, chain, timestamp, key_id = (
        sha(b"root"),
        sha(b"chain"),
        1_700_000_000_000,
        key_id_of(public),
    )
    signature = private.sign(signed_checkpoint_bytes(tree_size, root, chain, timestamp, key_id))
    return SignedCheckpoint(tree_size, root, chain, timestamp, key_id, signature)


def test_signed_checkpoint_verifies_with_the_public_key_alone() -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    checkpoint = _signed(private, public)
    verify_signed_checkpoint(checkpoint, public)
    # The documented layout: domain, then big-endian tree size.
    assert checkpoint.signed_bytes().startswith(
        b"verity.signed-checkpoint.v1\x00" + bytes(7) + b"\x07"
    )
    assert len(checkpoint.signed_bytes()) == 28 + 8 + 32 + 32 + 8 + 32


def test_signed_checkpoint_fails_on_any_changed_field_or_other_key() -> None:
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    good = _signed(private, public)
    lying = SignedCheckpoint(
        good.tree_size + 1, good.root, good.chain_hash, good.timestamp, good.key_id, good.signature
    )
    with pytest.raises(InvalidSignature, match="tree_size=8"):
        verify_signed_checkpoint(lying, public)
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    other_public = other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(InvalidSignature, match="key_id"):
        verify_signed_checkpoint(good, other_public)
