"""Records of the hash-chained log: their canonical bytes and their chain hash.

A record is one entry of the log. Its *canonical bytes* (docs/formats.md §1.2)
are a 53-byte big-endian header followed by the payload:

    offset        u64   position of the record in the log, from 0
    prev_hash     32    chain hash of the record before it (32 zero bytes for offset 0)
    timestamp     u64   ns since the Unix epoch, strictly increasing along the log
    payload_len   u32   length of the payload in bytes
    kind          u8    0 DATA, 1 CHECKPOINT, 2 TOMBSTONE, 3 KEY

The *chain hash* of a record is SHA-256(b"verity.chain.v1\\x00" ‖ canonical
bytes). Because each header holds the chain hash of the record before it, the
chain hash of the last record commits to every byte of the whole log.

A CHECKPOINT record's payload (73 bytes, §1.4) states what the log held just
before it: version (u8, 1), record_count (u64, equal to the checkpoint's own
offset), chain_hash (the chain hash of record record_count - 1) and
merkle_root (RFC 9162 root over those record_count records). A signed one
(version 2, 169 bytes) adds the public key that signed it and the Ed25519
signature (signing.py). A KEY record pins or rotates that key (signing.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import icontract

__all__ = [
    "CHAIN_DOMAIN",
    "CHECKPOINT_PAYLOAD_BYTES",
    "CHECKPOINT_VERSION",
    "CHECKPOINT_VERSION_SIGNED",
    "KeyPayload",
    "SIGNED_CHECKPOINT_PAYLOAD_BYTES",
    "decode_key_payload",
    "encode_key_payload",
    "HASH_BYTES",
    "HEADER_BYTES",
    "KIND_CHECKPOINT",
    "KIND_DATA",
    "KIND_KEY",
    "KIND_TOMBSTONE",
    "PAYLOAD_BYTES_MAX",
    "U64_MAX",
    "ZERO_HASH",
    "CheckpointPayload",
    "Record",
    "chain_hash",
    "decode_checkpoint_payload",
    "encode_checkpoint_payload",
    "record_bytes",
]

HASH_BYTES = 32
HEADER_BYTES = 53
CHAIN_DOMAIN = b"verity.chain.v1\x00"
ZERO_HASH = bytes(HASH_BYTES)
U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1
PAYLOAD_BYTES_MAX = 64 * 1024 * 1024
"""The largest payload a record may carry."""

KIND_DATA = 0
KIND_CHECKPOINT = 1
KIND_TOMBSTONE = 2
KIND_KEY = 3
KINDS = (KIND_DATA, KIND_CHECKPOINT, KIND_TOMBSTONE, KIND_KEY)

CHECKPOINT_VERSION = 1
CHECKPOINT_PAYLOAD_BYTES = 73
CHECKPOINT_VERSION_SIGNED = 2
SIGNED_CHECKPOINT_PAYLOAD_BYTES = 169
KEY_PAYLOAD_VERSION = 1
KEY_GENESIS_PAYLOAD_BYTES = 33
KEY_ROTATION_PAYLOAD_BYTES = 97


def u64(value: int) -> bytes:
    """`value` as 8 big-endian bytes."""
    return value.to_bytes(8, "big")


def u32(value: int) -> bytes:
    """`value` as 4 big-endian bytes."""
    return value.to_bytes(4, "big")


@dataclass(frozen=True)
class Record:
    """One log record, as it was written."""

    offset: int
    """Position in the log, counting from 0."""

    prev_hash: bytes
    """Chain hash of the record at `offset - 1`, or `ZERO_HASH` for the first record."""

    timestamp: int
    """Nanoseconds since the Unix epoch; strictly greater than the previous record's."""

    kind: int
    """`KIND_DATA`, `KIND_CHECKPOINT`, `KIND_TOMBSTONE` or `KIND_KEY`."""

    payload: bytes
    """The caller's bytes (DATA) or a checkpoint payload (CHECKPOINT)."""


def is_well_formed(record: Record) -> bool:
    """Every field of `record` fits its width in the canonical bytes."""
    return (
        0 <= record.offset <= U64_MAX
        and len(record.prev_hash) == HASH_BYTES
        and 0 <= record.timestamp <= U64_MAX
        and record.kind in KINDS
        and len(record.payload) <= min(U32_MAX, PAYLOAD_BYTES_MAX)
    )


@icontract.require(lambda record: is_well_formed(record))
@icontract.ensure(lambda record, result: len(result) == HEADER_BYTES + len(record.payload))
@icontract.ensure(lambda record, result: result[8:40] == record.prev_hash)
def record_bytes(record: Record) -> bytes:
    """The canonical bytes of `record`: its 53-byte header, then its payload."""
    header = (
        u64(record.offset)
        + record.prev_hash
        + u64(record.timestamp)
        + u32(len(record.payload))
        + bytes([record.kind])
    )
    return header + record.payload


@icontract.require(lambda record: is_well_formed(record))
@icontract.ensure(lambda result: len(result) == HASH_BYTES)
def chain_hash(record: Record) -> bytes:
    """SHA-256 over the chain domain and the canonical bytes of `record`."""
    return hashlib.sha256(CHAIN_DOMAIN + record_bytes(record)).digest()


@dataclass(frozen=True)
class CheckpointPayload:
    """What a CHECKPOINT record states about the records before it."""

    record_count: int
    """How many records precede the checkpoint (its own offset)."""

    chain_hash: bytes
    """Chain hash of the last of those records (`ZERO_HASH` when there are none)."""

    merkle_root: bytes
    """RFC 9162 Merkle tree hash over the canonical bytes of those records."""

    public_key: bytes | None = None
    """The Ed25519 key that signed it (signed checkpoints only)."""

    signature: bytes | None = None
    """Its signature over `signing.checkpoint_message(...)` (signed checkpoints only)."""


def is_encodable_checkpoint(payload: CheckpointPayload) -> bool:
    signed = payload.public_key is not None or payload.signature is not None
    return (
        0 <= payload.record_count <= U64_MAX
        and len(payload.chain_hash) == HASH_BYTES
        and len(payload.merkle_root) == HASH_BYTES
        and (
            not signed
            or (
                payload.public_key is not None
                and len(payload.public_key) == 32
                and payload.signature is not None
                and len(payload.signature) == 64
            )
        )
    )


@icontract.require(lambda payload: is_encodable_checkpoint(payload))
@icontract.ensure(
    lambda result: len(result) in (CHECKPOINT_PAYLOAD_BYTES, SIGNED_CHECKPOINT_PAYLOAD_BYTES)
)
def encode_checkpoint_payload(payload: CheckpointPayload) -> bytes:
    """The payload bytes of a CHECKPOINT record: 73 unsigned, 169 signed."""
    statement = u64(payload.record_count) + payload.chain_hash + payload.merkle_root
    if payload.public_key is None or payload.signature is None:
        return bytes([CHECKPOINT_VERSION]) + statement
    return bytes([CHECKPOINT_VERSION_SIGNED]) + statement + payload.public_key + payload.signature


@icontract.ensure(lambda data, result: result is None or encode_checkpoint_payload(result) == data)
def decode_checkpoint_payload(data: bytes) -> CheckpointPayload | None:
    """The checkpoint payload `data` encodes, or None when it is not one."""
    unsigned = len(data) == CHECKPOINT_PAYLOAD_BYTES and data[0] == CHECKPOINT_VERSION
    signed = len(data) == SIGNED_CHECKPOINT_PAYLOAD_BYTES and data[0] == CHECKPOINT_VERSION_SIGNED
    if not unsigned and not signed:
        return None
    return CheckpointPayload(
        record_count=int.from_bytes(data[1:9], "big"),
        chain_hash=data[9:41],
        merkle_root=data[41:73],
        public_key=data[73:105] if signed else None,
        signature=data[105:169] if signed else None,
    )


@dataclass(frozen=True)
class KeyPayload:
    """What a KEY record states: the public key that signs the log from here on."""

    public_key: bytes
    """The raw 32-byte Ed25519 public key pinned by this record."""

    signature: bytes | None
    """A rotation's signature by the key pinned before (`signing.rotation_message`);
    None for the genesis pin at offset 0."""


@icontract.require(lambda payload: len(payload.public_key) == 32)
@icontract.require(lambda payload: payload.signature is None or len(payload.signature) == 64)
def encode_key_payload(payload: KeyPayload) -> bytes:
    """The payload bytes of a KEY record: 33 for a genesis pin, 97 for a rotation."""
    return bytes([KEY_PAYLOAD_VERSION]) + payload.public_key + (payload.signature or b"")


@icontract.ensure(lambda data, result: result is None or encode_key_payload(result) == data)
def decode_key_payload(data: bytes) -> KeyPayload | None:
    """The key payload `data` encodes, or None when it is not one."""
    if not data or data[0] != KEY_PAYLOAD_VERSION:
        return None
    if len(data) == KEY_GENESIS_PAYLOAD_BYTES:
        return KeyPayload(public_key=data[1:33], signature=None)
    if len(data) == KEY_ROTATION_PAYLOAD_BYTES:
        return KeyPayload(public_key=data[1:33], signature=data[33:97])
    return None
