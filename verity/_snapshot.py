"""The kernel snapshot, `kernel.vsnap` (docs/formats.md §5.4): derived data that spares a replay.

It stores the kernel state (`Kernel.snapshot`, byte-identical to
`verity_spec.kernel.encode_state`) and the store's applied position, as of a
log size `P`. Versions 1 and 2 also held the tenant's per-stream event
indexes, 16 bytes per record, read into memory on every open; those now live
in `streams.vsix` (`verity._stream_index`), and are skipped here. Encoding
and decoding only: the tenant decides when to write one and whether it fits
its log.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from verity.errors import CorruptionError
from verity.kernel import Kernel

__all__ = ["SNAPSHOT_FILE", "Snapshot", "decode_snapshot", "encode_snapshot"]

SNAPSHOT_FILE: Final = "kernel.vsnap"
_MAGIC: Final = b"VSNP"
_VERSION: Final = 3
# magic, version, log size it reflects, chain hash of the record before that, the store's
# applied position (+1; 0: none) and hash when it was written, kernel bytes
_HEAD_V1: Final = struct.Struct(">4sBQ32sQ32sI")
# version 2 adds, after the magic and version, the chain hash of the log's record 0:
# which log the snapshot is of, so one cut short is told from a foreign one
_HEAD: Final = struct.Struct(">4sBQ32s32sQ32sI")
# version 3 has the head of version 2 and ends after the kernel bytes (no stream indexes)
_VERSIONS_WITH_GENESIS: Final = (2, 3)
_STREAM: Final = struct.Struct(">QQ")
_CRC: Final = struct.Struct(">I")
_U32: Final = struct.Struct(">I")
_LAST: Final = struct.Struct("<Q")  # versions 1 and 2 stored the index entries little-endian


@dataclass(frozen=True, slots=True)
class Snapshot:
    size: int
    """The log size `P` it reflects."""
    head: bytes
    """The chain hash of record `P - 1` (zeros when `P` is 0)."""
    genesis: bytes | None
    """The chain hash of record 0 (zeros when `P` is 0; None in a version 1 snapshot)."""
    kernel: Kernel
    store_applied: tuple[int, bytes] | None
    """The store's AppliedIndex when it was written."""


def encode_snapshot(
    size: int,
    head: bytes,
    genesis: bytes,
    kernel: bytes,
    store_applied: tuple[int, bytes] | None,
) -> bytes:
    """The bytes of `kernel.vsnap` (version 3), CRC included."""
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
    ]
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
    elif magic == _MAGIC and version in _VERSIONS_WITH_GENESIS and len(body) >= _HEAD.size:
        size, head, genesis, store_next, store_hash, kernel_bytes = _HEAD.unpack_from(body)[2:]
        position = _HEAD.size
    else:
        raise CorruptionError(f"magic {magic!r} version {version}", file=str(path))
    kernel = Kernel.restore(body[position : position + kernel_bytes])
    position += kernel_bytes
    if version < 3:
        position = _skip_stream_indexes(body, position, kernel, size, path)
    if position != len(body):
        left = len(body) - position
        raise CorruptionError(f"{left} bytes follow the kernel state", file=str(path))
    store_applied = None if store_next == 0 else (store_next - 1, bytes(store_hash))
    genesis = None if genesis is None else bytes(genesis)
    return Snapshot(size, bytes(head), genesis, kernel, store_applied)


def _skip_stream_indexes(body: bytes, position: int, kernel: Kernel, size: int, path: Path) -> int:
    """Check the stream indexes of a version 1 or 2 snapshot, without loading them; their end.

    `streams.vsix` holds them now; a snapshot whose indexes do not fit its
    kernel state is damaged all the same.
    """
    streams: set[int] = set()
    try:
        (count_streams,) = _U32.unpack_from(body, position)
        position += _U32.size
        for _ in range(count_streams):
            stream, count = _STREAM.unpack_from(body, position)
            position += _STREAM.size + 16 * count
            last_position = (
                _LAST.unpack_from(body, position - 8)[0] if count and position <= len(body) else -1
            )
            if last_position >= size:
                raise CorruptionError("stream indexes do not fit the kernel state", file=str(path))
            streams.add(stream)
    except struct.error as failure:
        raise CorruptionError(f"stream indexes are cut short: {failure}", file=str(path)) from None
    if position > len(body):
        raise CorruptionError("stream indexes are cut short", file=str(path))
    if streams != {int(info.stream_id) for info in kernel.streams()}:
        raise CorruptionError("stream indexes do not fit the kernel state", file=str(path))
    return position
