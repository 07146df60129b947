"""Full verification of a log from genesis (docs/formats.md §1.3).

Reads each segment in large chunks, locates frames through the offset index
(never by trusting a length field) and checks, record by record: the frame
(length, CRC-32, offset, payload_len, kind), the `prev_hash` link, strictly
increasing timestamps, every checkpoint payload against the head hash and the
Merkle root recomputed from the leaves so far, and the stored Merkle leaf
hash. The first failure raises, naming the record.
"""

from __future__ import annotations

import hashlib
import zlib
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterable
from itertools import pairwise
from typing import Final, TypeAlias

from verity.crypto import verify_signature
from verity.errors import ChainBroken, CorruptionError, InvalidSignature
from verity.proofs import key_id_of, signed_checkpoint_bytes
from verity.storage._frame import (
    CHAIN_DOMAIN,
    EMPTY_TREE_ROOT,
    FRAME_OVERHEAD_BYTES,
    HEADER,
    HEADER_BYTES,
    KIND_CHECKPOINT,
    KIND_KEY,
    KIND_MAX,
    PREFIX,
    PREFIX_BYTES,
    ZERO_HASH,
    check_frame,
    checkpoint_signature,
    decode_checkpoint_payload,
    decode_key_payload,
    pread_exact,
    rotation_message,
)
from verity.storage._merkle import DamagedNodes

__all__ = ["SegmentView", "verify_segments"]

READ_CHUNK_BYTES: Final = 4 * 1024 * 1024

# (first offset, fd, frame positions, end byte, path) of one segment.
SegmentView: TypeAlias = "tuple[int, int, array[int], int, str]"


def verify_segments(
    views: Iterable[SegmentView],
    total: int,
    stored_nodes: Callable[[int, int, int], bytes],
    node_file: Callable[[int], str],
    progress: Callable[[int, int], None] | None,
) -> int:
    """Verify every record of `views` in order; return the number checked (== total).

    `stored_nodes(level, start, count)` reads stored Merkle nodes (checked
    against their block CRCs); every leaf and every parent node recomputed
    here is compared with the stored one, chunk by chunk. `node_file(level)`
    names the level file a mismatch is reported in.
    """
    sha256 = hashlib.sha256
    crc32 = zlib.crc32
    unpack_prefix = PREFIX.unpack_from
    unpack_header = HEADER.unpack_from
    domain = CHAIN_DOMAIN
    head = ZERO_HASH
    last_ts = -1
    # The key the last KEY record pinned: every checkpoint after it is signed by it.
    pinned: bytes | None = None
    left: list[bytes] = [b""] * 64
    # Parent nodes computed since the last comparison, per level (index 0 unused).
    parents: list[bytearray] = [bytearray() for _ in range(64)]
    compared = [0] * 64
    leaf_count = 0
    for first, fd, positions, end_bytes, path in views:
        assert first == leaf_count
        count = len(positions)
        index = 0
        while index < count:
            chunk_start = positions[index]
            chunk_stop = max(
                index + 1, bisect_right(positions, chunk_start + READ_CHUNK_BYTES, index, count)
            )
            chunk_end = positions[chunk_stop] if chunk_stop < count else end_bytes
            data = pread_exact(fd, chunk_end - chunk_start, chunk_start)
            bounds = positions[index : chunk_stop + 1].tolist()
            if chunk_stop == count:
                bounds.append(end_bytes)
            if len(data) != chunk_end - chunk_start:
                _raise_first_bad_frame(data, bounds, first + index, path)
            leaves = stored_nodes(0, first + index, chunk_stop - index)
            leaf_at = 0
            offset = first + index
            for frame_start, frame_end in pairwise(bounds):
                start = frame_start - chunk_start
                if frame_end - frame_start < FRAME_OVERHEAD_BYTES:
                    check_frame(data[start : frame_end - chunk_start], offset, path, frame_start)
                length, crc = unpack_prefix(data, start)
                record = data[start + PREFIX_BYTES : frame_end - chunk_start]
                stored_offset, prev_hash, timestamp, payload_len, kind = unpack_header(record)
                if (
                    length != len(record)
                    or crc32(record) != crc
                    or stored_offset != offset
                    or payload_len + HEADER_BYTES != length
                    or kind > KIND_MAX
                ):
                    check_frame(data[start : frame_end - chunk_start], offset, path, frame_start)
                if prev_hash != head:
                    raise ChainBroken(
                        f"prev_hash {prev_hash.hex()} != chain hash {head.hex()} of the record "
                        "before it",
                        file=path,
                        byte_offset=frame_start,
                        record_offset=offset,
                    )
                if timestamp <= last_ts:
                    raise CorruptionError(
                        f"timestamp {timestamp} is not after the previous one {last_ts}",
                        file=path,
                        byte_offset=frame_start,
                        record_offset=offset,
                    )
                if kind == KIND_CHECKPOINT:
                    _check_checkpoint(
                        record, offset, head, frontier_root(left, leaf_count), path, frame_start
                    )
                    _check_signature(record, offset, pinned, path, frame_start)
                elif kind == KIND_KEY:
                    pinned = _check_key(record, offset, pinned, path, frame_start)
                head = sha256(domain + record).digest()
                node = sha256(b"\x00" + record).digest()
                if leaves[leaf_at : leaf_at + 32] != node:
                    raise DamagedNodes(
                        f"stored Merkle leaf hash of record {offset} differs from the hash of "
                        "the record",
                        file=node_file(0),
                        byte_offset=32 * offset,
                        record_offset=offset,
                    )
                leaf_at += 32
                level = 0
                position = leaf_count
                while position & 1:
                    node = sha256(b"\x01" + left[level] + node).digest()
                    level += 1
                    position >>= 1
                    parents[level] += node
                left[level] = node
                leaf_count += 1
                last_ts = timestamp
                offset += 1
            index = chunk_stop
            _compare_parents(parents, compared, stored_nodes, node_file)
            if progress is not None:
                progress(first + index, total)
    assert leaf_count == total
    if progress is not None and total == 0:
        progress(0, 0)
    return total


def _compare_parents(
    parents: list[bytearray],
    compared: list[int],
    stored_nodes: Callable[[int, int, int], bytes],
    node_file: Callable[[int], str],
) -> None:
    """Compare the parent nodes computed since the last call with the stored ones."""
    for level in range(1, len(parents)):
        computed = parents[level]
        if not computed:
            continue
        start = compared[level]
        count = len(computed) // 32
        stored = stored_nodes(level, start, count)
        if stored != computed:
            at = next(
                i for i in range(0, len(computed), 32) if stored[i : i + 32] != computed[i : i + 32]
            )
            raise DamagedNodes(
                f"stored Merkle node {start + at // 32} of level {level} differs from the node "
                "recomputed from the records",
                file=node_file(level),
                byte_offset=32 * (start + at // 32),
            )
        compared[level] = start + count
        computed.clear()


def frontier_root(left: list[bytes], size: int) -> bytes:
    """MTH of `size` leaves from the last node of each odd-count level."""
    if size == 0:
        return EMPTY_TREE_ROOT
    accumulated = b""
    for level in range(size.bit_length()):
        if (size >> level) & 1:
            if accumulated:
                accumulated = hashlib.sha256(b"\x01" + left[level] + accumulated).digest()
            else:
                accumulated = left[level]
    return accumulated


def _raise_first_bad_frame(data: bytes, bounds: list[int], offset: int, path: str) -> None:
    """The chunk read came back short (the file shrank): name the first incomplete frame."""
    chunk_start = bounds[0]
    for frame_start, frame_end in pairwise(bounds):
        frame = data[frame_start - chunk_start : frame_end - chunk_start]
        check_frame(frame, offset, path, frame_start)
        offset += 1
    raise AssertionError("a short read must leave an incomplete frame")


def _check_signature(
    record: bytes, offset: int, pinned: bytes | None, path: str, byte_offset: int
) -> None:
    """A checkpoint in a log that pins a key is signed by that key; in one that does not, not."""
    signed = checkpoint_signature(record[HEADER_BYTES:])
    if pinned is None:
        if signed is None:
            return
        problem = "a signed checkpoint in a log that pins no key"
    elif signed is None:
        problem = f"an unsigned checkpoint in a log that pins key {pinned.hex()}"
    elif signed[0] != pinned:
        problem = f"signed by key {signed[0].hex()}, but the log pins {pinned.hex()}"
    else:
        decoded = decode_checkpoint_payload(record[HEADER_BYTES:])
        assert decoded is not None
        record_count, chain_hash, merkle_root = decoded
        timestamp = HEADER.unpack_from(record)[2]
        message = signed_checkpoint_bytes(
            record_count, merkle_root, chain_hash, timestamp, key_id_of(pinned)
        )
        try:
            verify_signature(pinned, message, signed[1])
            return
        except InvalidSignature:
            problem = (
                f"the signature of the checkpoint over records 0..{offset - 1} does not "
                f"verify under the pinned key {pinned.hex()}: they were rewritten"
            )
    raise CorruptionError(problem, file=path, byte_offset=byte_offset, record_offset=offset)


def _check_key(
    record: bytes, offset: int, pinned: bytes | None, path: str, byte_offset: int
) -> bytes:
    """A KEY record pins a key at offset 0, or rotates the pinned one with its signature."""
    key = decode_key_payload(record[HEADER_BYTES:])
    if key is None:
        problem = "a KEY record without a valid key payload"
    elif offset == 0 and key[1] is None:
        return key[0]
    elif offset == 0:
        problem = "the genesis KEY record carries a rotation signature"
    elif pinned is None or key[1] is None:
        problem = "a KEY record after genesis that does not rotate a pinned key"
    else:
        prev_hash = record[8:40]
        try:
            verify_signature(pinned, rotation_message(offset, prev_hash, key[0]), key[1])
            return key[0]
        except InvalidSignature:
            problem = f"the key rotation is not signed by the key it replaces ({pinned.hex()})"
    raise CorruptionError(problem, file=path, byte_offset=byte_offset, record_offset=offset)


def _check_checkpoint(
    record: bytes, offset: int, head: bytes, merkle_root: bytes, path: str, byte_offset: int
) -> None:
    decoded = decode_checkpoint_payload(record[HEADER_BYTES:])
    if decoded is None:
        problem = "checkpoint payload is not a 73-byte version-1 or a 169-byte version-2 one"
    elif decoded[0] != offset:
        problem = f"checkpoint record_count {decoded[0]} != its offset {offset}"
    elif decoded[1] != head:
        problem = f"checkpoint chain_hash {decoded[1].hex()} != head hash {head.hex()}"
    elif decoded[2] != merkle_root:
        problem = f"checkpoint merkle_root {decoded[2].hex()} != recomputed {merkle_root.hex()}"
    else:
        return
    raise CorruptionError(problem, file=path, byte_offset=byte_offset, record_offset=offset)
