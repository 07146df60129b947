"""The kernel snapshot, `kernel.vsnap` (docs/formats.md §5.4): derived data that spares a replay.

It stores the kernel state (`Kernel.snapshot`, byte-identical to
`verity_spec.kernel.encode_state`) with the tenant's per-stream indexes and
the store's applied position, as of a log size `P`. Encoding and decoding
only: the tenant decides when to write one and whether it fits its log.
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from verity.errors import CorruptionError
from verity.kernel import Kernel

__all__ = ["SNAPSHOT_FILE", "Snapshot", "decode_snapshot", "encode_snapshot"]

SNAPSHOT_FILE: Final = "kernel.vsnap"
_MAGIC: Final = b"VSNP"
_VERSION: Final = 2
# magic, version, log size it reflects, chain hash of the record before that, the store's
# applied position (+1; 0: none) and hash when it was written, kernel bytes
_HEAD_V1: Final = struct.Struct(">4sBQ32sQ32sI")
# version 2 adds, after the magic and version, the chain hash of the log's record 0:
# which log the snapshot is of, so one cut short is told from a foreign one
_HEAD: Final = struct.Struct(">4sBQ32s32sQ32sI")
_STREAM: Final = struct.Struct(">QQ")
_CRC: Final = struct.Struct(">I")
_U32: Final = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Snapshot:
    size: int
    """The log size `P` it reflects."""
    head: bytes
    """The chain hash of record `P - 1` (zeros when `P` is 0)."""
    genesis: bytes | None
    """The chain hash of record 0 (zeros when `P` is 0; None in a version 1 snapshot)."""
    kernel: Kernel
    firsts: dict[int, array[int]]
    """Per stream: the first stream offset of each of its records."""
    positions: dict[int, array[int]]
    """Per stream: the log offset of each of those records."""
    store_applied: tuple[int, bytes] | None
    """The store's AppliedIndex when it was written."""


def encode_snapshot(
    size: int,
    head: bytes,
    genesis: bytes,
    kernel: bytes,
    store_applied: tuple[int, bytes] | None,
    firsts: dict[int, array[int]],
    positions: dict[int, array[int]],
) -> bytes:
    """The bytes of `kernel.vsnap`, CRC included."""
    store_position, store_hash = (0, bytes(32)) if store_applied is None else store_applied
    parts = [
        _HEAD.pack(
            _MAGIC,
            _VERSION,
            size,
            head,
            genesis,
            0 if store_applied is None else store_position + 1,
            store_hash,
            len(kernel),
        ),
        kernel,
        _U32.pack(len(firsts)),
    ]
    for stream, stream_firsts in firsts.items():
        stream_positions = positions[stream]
        assert len(stream_positions) == len(stream_firsts)
        parts.append(_STREAM.pack(stream, len(stream_firsts)))
        parts.append(_little_endian(stream_firsts))
        parts.append(_little_endian(stream_positions))
    body = b"".join(parts)
    return body + _CRC.pack(zlib.crc32(body))


def decode_snapshot(data: bytes, path: Path) -> Snapshot:
    """The snapshot in `data`; `CorruptionError` naming `path` if it does not decode."""
    body = data[: -_CRC.size]
    if len(data) < _HEAD_V1.size + _CRC.size or (
        _CRC.unpack_from(data, len(body))[0] != zlib.crc32(body)
    ):
        raise CorruptionError("CRC-32 does not match (or the file is cut)", file=str(path))
    magic, version = body[:4], body[4]
    genesis: bytes | None = None
    if magic == _MAGIC and version == 1:
        size, head, store_next, store_hash, kernel_bytes = _HEAD_V1.unpack_from(body)[2:]
        position = _HEAD_V1.size
    elif magic == _MAGIC and version == _VERSION and len(body) >= _HEAD.size:
        size, head, genesis, store_next, store_hash, kernel_bytes = _HEAD.unpack_from(body)[2:]
        position = _HEAD.size
    else:
        raise CorruptionError(f"magic {magic!r} version {version}", file=str(path))
    kernel = Kernel.restore(body[position : position + kernel_bytes])
    position += kernel_bytes
    firsts: dict[int, array[int]] = {}
    positions: dict[int, array[int]] = {}
    try:
        (streams,) = _U32.unpack_from(body, position)
        position += _U32.size
        for _ in range(streams):
            stream, count = _STREAM.unpack_from(body, position)
            position += _STREAM.size
            firsts[stream] = _from_little_endian(body[position : position + 8 * count])
            position += 8 * count
            positions[stream] = _from_little_endian(body[position : position + 8 * count])
            position += 8 * count
    except struct.error as failure:
        raise CorruptionError(f"stream indexes are cut short: {failure}", file=str(path)) from None
    known = {int(info.stream_id) for info in kernel.streams()}
    if (
        position != len(body)
        or set(firsts) != known
        or any(len(firsts[s]) != len(positions[s]) for s in known)
        or any(len(positions[s]) and positions[s][-1] >= size for s in known)
    ):
        raise CorruptionError("stream indexes do not fit the kernel state", file=str(path))
    store_applied = None if store_next == 0 else (store_next - 1, bytes(store_hash))
    genesis = None if genesis is None else bytes(genesis)
    return Snapshot(size, bytes(head), genesis, kernel, firsts, positions, store_applied)


def _little_endian(values: array[int]) -> bytes:
    """The u64s of `values` as little-endian bytes, whatever the machine's byte order."""
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array("Q", values)
    swapped.byteswap()
    return swapped.tobytes()


def _from_little_endian(data: bytes) -> array[int]:
    values = array("Q")
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values
