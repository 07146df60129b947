"""Ed25519 signatures in the log: signed checkpoints and pinned keys.

A log can carry its own proof of authorship. Its first record pins the
public key that signs it (a KEY record); every CHECKPOINT record after that
carries an Ed25519 signature (RFC 8032) over the same bytes a
`SignedCheckpoint` is signed over (docs/formats.md §3); a later KEY record
rotates the key, signed by the key it replaces. Anyone holding the log's
files and a public key obtained separately can then check that nothing was
rewritten: a rewrite without the private key fails a signature.

Signing is deterministic (RFC 8032 §5.1.6), so the specification and the
implementation sign the same bytes into the same signature, and the
conformance suite compares them byte for byte.

Record formats (all integers big-endian):

    signed checkpoint payload (169 bytes):
        version (1) = 2 ‖ record_count (8) ‖ chain_hash (32) ‖ merkle_root (32)
        ‖ public_key (32) ‖ signature (64)
        signature = Ed25519(private key, checkpoint_message(...))

    KEY payload, the genesis pin at offset 0 (33 bytes):
        version (1) = 1 ‖ public_key (32)
    KEY payload, a rotation at a later offset (97 bytes):
        version (1) = 1 ‖ public_key (32) ‖ signature (64)
        signature = Ed25519(the key pinned before, rotation_message(offset, prev_hash, new key))
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "KEY_PAYLOAD_VERSION",
    "PUBLIC_KEY_BYTES",
    "ROTATION_DOMAIN",
    "SEED_BYTES",
    "SIGNATURE_BYTES",
    "SIGNED_DOMAIN",
    "checkpoint_message",
    "is_valid_signature",
    "key_id",
    "public_key_of",
    "rotation_message",
    "sign",
]

SEED_BYTES = 32
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_PAYLOAD_VERSION = 1
SIGNED_DOMAIN = b"verity.signed-checkpoint.v1\x00"
ROTATION_DOMAIN = b"verity.key-rotation.v1\x00"


def public_key_of(seed: bytes) -> bytes:
    """The raw 32-byte Ed25519 public key of the private key `seed` (RFC 8032)."""
    private = Ed25519PrivateKey.from_private_bytes(seed)
    return private.public_key().public_bytes_raw()


def sign(seed: bytes, message: bytes) -> bytes:
    """The 64-byte Ed25519 signature of `message` by the private key `seed`."""
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def is_valid_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is `public_key`'s Ed25519 signature of `message`."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def key_id(public_key: bytes) -> bytes:
    """SHA-256 of the raw public key: how signed bytes name the key."""
    return hashlib.sha256(public_key).digest()


def checkpoint_message(
    record_count: int, merkle_root: bytes, chain_hash: bytes, timestamp: int, public_key: bytes
) -> bytes:
    """What a checkpoint's signature signs: the signed bytes of docs/formats.md §3.

    A checkpoint record at offset `record_count` states the log of the
    `record_count` records before it; `timestamp` is the record's own.
    """
    return (
        SIGNED_DOMAIN
        + record_count.to_bytes(8, "big")
        + merkle_root
        + chain_hash
        + timestamp.to_bytes(8, "big")
        + key_id(public_key)
    )


def rotation_message(offset: int, prev_hash: bytes, new_public_key: bytes) -> bytes:
    """What the outgoing key signs to hand the log over to `new_public_key` at `offset`."""
    return ROTATION_DOMAIN + offset.to_bytes(8, "big") + prev_hash + new_public_key
