"""Record bytes, chain hash and segment frames (docs/formats.md §1, §4.1).

The write path packs frames inline with these `struct.Struct`s for speed; this
module holds the shared constants and the checks every read site applies, so
that what a writer packs and what a reader accepts are defined in one place.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import Final, final

from verity.errors import CorruptionError
from verity.storage._io import OS
from verity.types import Hash, Offset, RecordHeader, RecordKind, Timestamp

__all__ = [
    "CHAIN_DOMAIN",
    "CHECKPOINT_PAYLOAD",
    "CHECKPOINT_PAYLOAD_BYTES",
    "CHECKPOINT_VERSION",
    "CHECKPOINT_VERSION_SIGNED",
    "KIND_KEY",
    "SIGNED_CHECKPOINT_PAYLOAD_BYTES",
    "checkpoint_signature",
    "decode_key_payload",
    "encode_key_payload",
    "encode_signed_checkpoint_payload",
    "rotation_message",
    "EMPTY_TREE_ROOT",
    "FRAME_OVERHEAD_BYTES",
    "HEADER",
    "HEADER_BYTES",
    "KIND_CHECKPOINT",
    "KIND_DATA",
    "KIND_MAX",
    "PAYLOAD_BYTES_MAX",
    "PREFIX",
    "PREFIX_BYTES",
    "ZERO_HASH",
    "Record",
    "check_frame",
    "decode_record",
    "pread_exact",
    "pwrite_all",
    "write_all",
]

CHAIN_DOMAIN: Final = b"verity.chain.v1\x00"
HEADER: Final = struct.Struct(">Q32sQIB")
HEADER_BYTES: Final = 53
PREFIX: Final = struct.Struct(">II")
PREFIX_BYTES: Final = 8
FRAME_OVERHEAD_BYTES: Final = PREFIX_BYTES + HEADER_BYTES
PAYLOAD_BYTES_MAX: Final = 64 * 1024 * 1024
CHECKPOINT_PAYLOAD: Final = struct.Struct(">BQ32s32s")
CHECKPOINT_PAYLOAD_BYTES: Final = 73
CHECKPOINT_VERSION: Final = 1
SIGNED_CHECKPOINT_PAYLOAD: Final = struct.Struct(">BQ32s32s32s64s")
SIGNED_CHECKPOINT_PAYLOAD_BYTES: Final = 169
CHECKPOINT_VERSION_SIGNED: Final = 2
KEY_PAYLOAD_VERSION: Final = 1
ROTATION_DOMAIN: Final = b"verity.key-rotation.v1\x00"
KIND_DATA: Final = int(RecordKind.DATA)
KIND_CHECKPOINT: Final = int(RecordKind.CHECKPOINT)
KIND_KEY: Final = int(RecordKind.KEY)
KIND_MAX: Final = max(int(kind) for kind in RecordKind)
ZERO_HASH: Final = bytes(32)
EMPTY_TREE_ROOT: Final = hashlib.sha256(b"").digest()

assert HEADER.size == HEADER_BYTES
assert CHECKPOINT_PAYLOAD.size == CHECKPOINT_PAYLOAD_BYTES
assert SIGNED_CHECKPOINT_PAYLOAD.size == SIGNED_CHECKPOINT_PAYLOAD_BYTES


@final
@dataclass(frozen=True, slots=True)
class Record:
    """One decoded log record: its header and its payload, as stored."""

    header: RecordHeader
    payload: bytes

    def record_bytes(self) -> bytes:
        """The canonical record bytes (docs/formats.md §1.2)."""
        header = self.header
        packed = HEADER.pack(
            header.offset,
            header.prev_hash,
            header.timestamp,
            header.payload_len,
            int(header.kind),
        )
        return packed + self.payload

    def chain_hash(self) -> Hash:
        """SHA-256(CHAIN_DOMAIN ‖ record_bytes) (docs/formats.md §1.3)."""
        return Hash(hashlib.sha256(CHAIN_DOMAIN + self.record_bytes()).digest())


def decode_record(record: bytes) -> Record:
    """Decode canonical record bytes that `check_frame` has accepted."""
    offset, prev_hash, timestamp, payload_len, kind = HEADER.unpack_from(record)
    assert len(record) == HEADER_BYTES + payload_len
    header = RecordHeader(
        Offset(offset), Hash(prev_hash), Timestamp(timestamp), payload_len, RecordKind(kind)
    )
    return Record(header, bytes(record[HEADER_BYTES:]))


def check_frame(frame: bytes, offset: int, file: str, byte_offset: int) -> bytes:
    """Return the record bytes of `frame`, or raise `CorruptionError` naming where it is.

    `frame` is exactly the bytes the offset index assigns to record `offset`
    (from its position to the next one), so a damaged length field is caught
    here instead of shifting every later frame.
    """
    frame_bytes = len(frame)
    if frame_bytes < FRAME_OVERHEAD_BYTES:
        raise CorruptionError(
            f"frame is {frame_bytes} bytes, shorter than the {FRAME_OVERHEAD_BYTES}-byte minimum",
            file=file,
            byte_offset=byte_offset,
            record_offset=offset,
        )
    length, crc = PREFIX.unpack_from(frame)
    if length != frame_bytes - PREFIX_BYTES:
        raise CorruptionError(
            f"frame length field {length} != {frame_bytes - PREFIX_BYTES} bytes the index assigns",
            file=file,
            byte_offset=byte_offset,
            record_offset=offset,
        )
    record = frame[PREFIX_BYTES:]
    actual_crc = zlib.crc32(record)
    if actual_crc != crc:
        raise CorruptionError(
            f"CRC-32 {actual_crc:08x} != stored {crc:08x}",
            file=file,
            byte_offset=byte_offset,
            record_offset=offset,
        )
    stored_offset, _, _, payload_len, kind = HEADER.unpack_from(record)
    problem = header_problem(stored_offset, payload_len, kind, offset, length)
    if problem is not None:
        raise CorruptionError(problem, file=file, byte_offset=byte_offset, record_offset=offset)
    return record


def header_problem(
    stored_offset: int, payload_len: int, kind: int, offset: int, length: int
) -> str | None:
    """Why a CRC-valid header cannot be record `offset` of a `length`-byte record, or None."""
    if stored_offset != offset:
        return f"record header says offset {stored_offset}, expected {offset}"
    if payload_len != length - HEADER_BYTES:
        return f"payload_len {payload_len} != frame length {length} - {HEADER_BYTES}"
    if kind > KIND_MAX:
        return f"unknown record kind {kind}"
    return None


def pread_exact(fd: int, length: int, position: int) -> bytes:
    """Read up to `length` bytes at `position`; fewer only at end of file."""
    data = OS.pread(fd, length, position)
    if len(data) == length or not data:
        return data
    # A short read usually means end of file; keep reading until the OS says so.
    parts = [data]
    got = len(data)
    while got < length:
        more = OS.pread(fd, length - got, position + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write until every byte is written (a regular file may accept fewer).

    A full disk or a file size limit usually accepts part of the data first
    and then raises `OSError`: the bytes before it stay in the file, and the
    caller that must undo them cuts the file back.
    """
    view = memoryview(data)
    total = len(view)
    written = OS.write(fd, view)
    while written < total:
        written += OS.write(fd, view[written:])


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, position: int) -> None:
    """os.pwrite at `position` until every byte is written (see `write_all`)."""
    view = memoryview(data)
    total = len(view)
    written = OS.pwrite(fd, view, position)
    while written < total:
        written += OS.pwrite(fd, view[written:], position + written)


def decode_checkpoint_payload(payload: bytes) -> tuple[int, bytes, bytes] | None:
    """`(record_count, chain_hash, merkle_root)` of a §1.4 payload (signed or not), or None."""
    if len(payload) == CHECKPOINT_PAYLOAD_BYTES:
        version, record_count, chain_hash, merkle_root = CHECKPOINT_PAYLOAD.unpack(payload)
        return (record_count, chain_hash, merkle_root) if version == CHECKPOINT_VERSION else None
    if len(payload) == SIGNED_CHECKPOINT_PAYLOAD_BYTES:
        version, record_count, chain_hash, merkle_root, _, _ = SIGNED_CHECKPOINT_PAYLOAD.unpack(
            payload
        )
        if version == CHECKPOINT_VERSION_SIGNED:
            return record_count, chain_hash, merkle_root
    return None


def checkpoint_signature(payload: bytes) -> tuple[bytes, bytes] | None:
    """`(public_key, signature)` of a signed checkpoint payload; None for any other."""
    if len(payload) != SIGNED_CHECKPOINT_PAYLOAD_BYTES or payload[0] != CHECKPOINT_VERSION_SIGNED:
        return None
    return bytes(payload[73:105]), bytes(payload[105:169])


def encode_signed_checkpoint_payload(
    record_count: int, chain_hash: bytes, merkle_root: bytes, public_key: bytes, signature: bytes
) -> bytes:
    return SIGNED_CHECKPOINT_PAYLOAD.pack(
        CHECKPOINT_VERSION_SIGNED, record_count, chain_hash, merkle_root, public_key, signature
    )


def encode_key_payload(public_key: bytes, signature: bytes | None) -> bytes:
    """A KEY record's payload: the genesis pin (no signature) or a rotation."""
    assert len(public_key) == 32 and (signature is None or len(signature) == 64)
    return bytes([KEY_PAYLOAD_VERSION]) + public_key + (signature or b"")


def decode_key_payload(payload: bytes) -> tuple[bytes, bytes | None] | None:
    """`(public_key, rotation signature or None)` of a KEY payload, or None if malformed."""
    if not payload or payload[0] != KEY_PAYLOAD_VERSION or len(payload) not in (33, 97):
        return None
    return bytes(payload[1:33]), (bytes(payload[33:97]) if len(payload) == 97 else None)


def rotation_message(offset: int, prev_hash: bytes, new_public_key: bytes) -> bytes:
    """What the outgoing key signs to hand the log to `new_public_key` (docs/formats.md §3.1)."""
    return ROTATION_DOMAIN + offset.to_bytes(8, "big") + prev_hash + new_public_key
