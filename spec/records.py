"""Records of the hash-chained log: their canonical bytes and their chain hash.

A record is one entry of the log. Its *canonical bytes* (docs/formats.md §1.2)
are a 53-byte big-endian header followed by the payload:

    offset        u64   position of the record in the log, from 0
    prev_hash     32    chain hash of the record before it (32 zero bytes for offset 0)
    timestamp     u64   ns since the Unix epoch, strictly increasing along the log
    payload_len   u32   length of the payload in bytes
    kind          u8    0 DATA, 1 CHECKPOINT, 2 TOMBSTONE

The *chain hash* of a record is SHA-256(b"verity.chain.v1\\x00" ‖ canonical
bytes). Because each header holds the chain hash of the record before it, the
chain hash of the last record commits to every byte of the whole log.

A CHECKPOINT record's payload (73 bytes, §1.4) states what the log held just
before it: version (u8, 1), record_count (u64, equal to the checkpoint's own
offset), chain_hash (the chain hash of record record_count - 1) and
merkle_root (RFC 9162 root over those record_count records).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import icontract

__all__ = [
    "CHAIN_DOMAIN",
    "CHECKPOINT_PAYLOAD_BYTES",
    "CHECKPOINT_VERSION",
    "HASH_BYTES",
    "HEADER_BYTES",
    "KIND_CHECKPOINT",
    "KIND_DATA",
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
KINDS = (KIND_DATA, KIND_CHECKPOINT, KIND_TOMBSTONE)

CHECKPOINT_VERSION = 1
CHECKPOINT_PAYLOAD_BYTES = 73


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
    """`KIND_DATA`, `KIND_CHECKPOINT` or `KIND_TOMBSTONE`."""

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


@icontract.require(lambda payload: 0 <= payload.record_count <= U64_MAX)
@icontract.require(lambda payload: len(payload.chain_hash) == HASH_BYTES)
@icontract.require(lambda payload: len(payload.merkle_root) == HASH_BYTES)
@icontract.ensure(lambda result: len(result) == CHECKPOINT_PAYLOAD_BYTES)
def encode_checkpoint_payload(payload: CheckpointPayload) -> bytes:
    """The 73 payload bytes of a CHECKPOINT record."""
    return (
        bytes([CHECKPOINT_VERSION])
        + u64(payload.record_count)
        + payload.chain_hash
        + payload.merkle_root
    )


@icontract.ensure(lambda data, result: result is None or encode_checkpoint_payload(result) == data)
def decode_checkpoint_payload(data: bytes) -> CheckpointPayload | None:
    """The checkpoint payload `data` encodes, or None when it is not one."""
    if len(data) != CHECKPOINT_PAYLOAD_BYTES or data[0] != CHECKPOINT_VERSION:
        return None
    return CheckpointPayload(
        record_count=int.from_bytes(data[1:9], "big"),
        chain_hash=data[9:41],
        merkle_root=data[41:73],
    )
