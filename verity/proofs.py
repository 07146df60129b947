"""Proof values and their verifiers, for third parties.

This module needs nothing beyond `hashlib` and `cryptography`: a regulator can
copy it, or re-implement it from `docs/formats.md`, and check a VerityDB proof
holding only the tenant's public key. The verification algorithms are those of
RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency), step by step.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final, final

from cryptography.exceptions import InvalidSignature as _CryptographyInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from verity.errors import InvalidArgument, InvalidProof, InvalidSignature

__all__ = [
    "SIGNED_DOMAIN",
    "ConsistencyProof",
    "InclusionProof",
    "SignedCheckpoint",
    "key_id_of",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
    "verify_signed_checkpoint",
]

SIGNED_DOMAIN: Final = b"verity.signed-checkpoint.v1\x00"
_HASH_BYTES: Final = 32
_SIGNATURE_BYTES: Final = 64
_U64_MAX: Final = (1 << 64) - 1


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 ‖ leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def key_id_of(public_key: bytes) -> bytes:
    """The key id of a raw 32-byte Ed25519 public key: its SHA-256."""
    if len(public_key) != 32:
        raise InvalidArgument("public_key", public_key, "must be 32 raw Ed25519 bytes")
    return hashlib.sha256(public_key).digest()


def _check_path(path: tuple[bytes, ...]) -> None:
    for index, node in enumerate(path):
        if not isinstance(node, bytes) or len(node) != _HASH_BYTES:
            raise InvalidArgument(f"path[{index}]", node, "must be 32 bytes")


@final
@dataclass(frozen=True, slots=True)
class InclusionProof:
    """RFC 9162 inclusion proof that `leaf` is entry `leaf_index` of a tree of `tree_size`.

    `leaf` is the canonical record bytes (docs/formats.md §1.2), so the proof
    carries the data it proves.
    """

    leaf_index: int
    tree_size: int
    leaf: bytes
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 0 <= self.leaf_index < self.tree_size <= _U64_MAX:
            raise InvalidArgument(
                "leaf_index",
                self.leaf_index,
                f"must satisfy 0 <= leaf_index < tree_size={self.tree_size}",
            )
        _check_path(self.path)


@final
@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """RFC 9162 consistency proof between tree sizes `old_size` and `new_size`."""

    old_size: int
    new_size: int
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 0 < self.old_size <= self.new_size <= _U64_MAX:
            raise InvalidArgument(
                "old_size",
                self.old_size,
                f"must satisfy 0 < old_size <= new_size={self.new_size}",
            )
        _check_path(self.path)


@final
@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A signed statement of a log's size, Merkle root and head hash at a time.

    `signature` is Ed25519 over `signed_bytes()` (docs/formats.md §3).
    """

    tree_size: int
    root: bytes
    chain_hash: bytes
    timestamp: int
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.tree_size <= _U64_MAX:
            raise InvalidArgument("tree_size", self.tree_size, "must be in 0..2**64-1")
        if not 0 <= self.timestamp <= _U64_MAX:
            raise InvalidArgument("timestamp", self.timestamp, "must be in 0..2**64-1")
        for name, value in (
            ("root", self.root),
            ("chain_hash", self.chain_hash),
            ("key_id", self.key_id),
        ):
            if not isinstance(value, bytes) or len(value) != _HASH_BYTES:
                raise InvalidArgument(name, value, "must be 32 bytes")
        if not isinstance(self.signature, bytes) or len(self.signature) != _SIGNATURE_BYTES:
            raise InvalidArgument("signature", self.signature, "must be 64 bytes")

    def signed_bytes(self) -> bytes:
        """The canonical bytes the signature covers (docs/formats.md §3)."""
        return signed_checkpoint_bytes(
            self.tree_size, self.root, self.chain_hash, self.timestamp, self.key_id
        )


def signed_checkpoint_bytes(
    tree_size: int, root: bytes, chain_hash: bytes, timestamp: int, key_id: bytes
) -> bytes:
    """Canonical bytes of a signed checkpoint, before it is signed."""
    body = SIGNED_DOMAIN + struct.pack(">Q", tree_size) + root + chain_hash
    body += struct.pack(">Q", timestamp) + key_id
    assert len(body) == len(SIGNED_DOMAIN) + 8 + 32 + 32 + 8 + 32
    return body


def root_from_inclusion_proof(proof: InclusionProof) -> bytes:
    """The root hash implied by `proof` (RFC 9162 §2.1.3.2, steps 1-5)."""
    fn = proof.leaf_index
    sn = proof.tree_size - 1
    r = leaf_hash(proof.leaf)
    for p in proof.path:
        if sn == 0:
            raise InvalidProof(
                f"inclusion proof for leaf {proof.leaf_index} of {proof.tree_size} is too long"
            )
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof(
            f"inclusion proof for leaf {proof.leaf_index} of {proof.tree_size} is too short"
        )
    return r


def verify_inclusion(proof: InclusionProof, root: bytes) -> None:
    """Raise `InvalidProof` unless `proof` shows its leaf is in the tree with `root`."""
    if not isinstance(root, bytes) or len(root) != _HASH_BYTES:
        raise InvalidArgument("root", root, "must be 32 bytes")
    computed = root_from_inclusion_proof(proof)
    if computed != root:
        raise InvalidProof(
            f"inclusion proof for leaf {proof.leaf_index} of {proof.tree_size} gives root "
            f"{computed.hex()}, expected {root.hex()}"
        )


def verify_consistency(proof: ConsistencyProof, old_root: bytes, new_root: bytes) -> None:
    """Raise `InvalidProof` unless the tree with `old_root` is a prefix of the one with `new_root`.

    RFC 9162 §2.1.4.2, step by step.
    """
    for name, value in (("old_root", old_root), ("new_root", new_root)):
        if not isinstance(value, bytes) or len(value) != _HASH_BYTES:
            raise InvalidArgument(name, value, "must be 32 bytes")
    first, second = proof.old_size, proof.new_size
    path = list(proof.path)
    if first == second:
        if path:
            raise InvalidProof("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise InvalidProof(f"equal sizes {first} but roots differ")
        return
    if not path:
        raise InvalidProof(f"consistency proof {first}->{second} is empty")
    # Step 2: if first is an exact power of 2, prepend first_hash to the path.
    if first & (first - 1) == 0:
        path.insert(0, old_root)
    fn = first - 1
    sn = second - 1
    # Step 4: shift right while LSB(fn) is set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = path[0]
    sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof(f"consistency proof {first}->{second} is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof(f"consistency proof {first}->{second} is too short")
    if fr != old_root:
        raise InvalidProof(f"consistency proof {first}->{second} does not match the old root")
    if sr != new_root:
        raise InvalidProof(f"consistency proof {first}->{second} does not match the new root")


def verify_signed_checkpoint(checkpoint: SignedCheckpoint, public_key: bytes) -> None:
    """Raise unless `checkpoint` is signed by the Ed25519 key `public_key` (32 raw bytes)."""
    expected_key_id = key_id_of(public_key)
    if checkpoint.key_id != expected_key_id:
        raise InvalidSignature(
            f"checkpoint key_id {checkpoint.key_id.hex()} is not the id of public key "
            f"{public_key.hex()} ({expected_key_id.hex()})"
        )
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            checkpoint.signature, checkpoint.signed_bytes()
        )
    except _CryptographyInvalidSignature:
        raise InvalidSignature(
            f"signature over checkpoint tree_size={checkpoint.tree_size} "
            f"root={checkpoint.root.hex()} does not verify"
        ) from None
