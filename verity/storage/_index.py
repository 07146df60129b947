"""Segment offset index files, `.vidx` (docs/formats.md §4.2).

```
magic "VIDX" (4) ‖ version (1) ‖ first_offset (8) ‖ count (8) ‖ valid_bytes (8)
‖ positions: count x u64 little-endian ‖ head_hash (32) ‖ crc32 (4)
```

An index is derived data: `decode_index` returns the reason it cannot be used
instead of raising, and the caller rebuilds it by scanning the segment.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from verity.storage._files import open_private
from verity.storage._frame import write_all
from verity.storage._io import OS

__all__ = ["IndexContents", "decode_index", "encode_index", "positions_array", "write_atomic"]

_MAGIC: Final = b"VIDX"
_VERSION: Final = 1
_HEAD: Final = struct.Struct(">4sBQQQ")
_CRC: Final = struct.Struct(">I")
_HEAD_BYTES: Final = 29
_TAIL_BYTES: Final = 32 + 4
_LITTLE_ENDIAN: Final = sys.byteorder == "little"

assert _HEAD.size == _HEAD_BYTES


def positions_array() -> array[int]:
    """An empty array of u64 frame positions (native order in memory)."""
    positions = array("Q")
    assert positions.itemsize == 8
    return positions


@dataclass(frozen=True, slots=True)
class IndexContents:
    first_offset: int
    valid_bytes: int
    positions: array[int]
    head_hash: bytes


def encode_index(
    first_offset: int, positions: array[int], valid_bytes: int, head_hash: bytes
) -> bytes:
    assert len(head_hash) == 32
    assert len(positions) == 0 or positions[-1] < valid_bytes
    raw = positions.tobytes() if _LITTLE_ENDIAN else _swapped(positions)
    body = _HEAD.pack(_MAGIC, _VERSION, first_offset, len(positions), valid_bytes) + raw + head_hash
    return body + _CRC.pack(zlib.crc32(body))


def decode_index_header(head: bytes, first_offset: int) -> tuple[int, int] | None:
    """`(count, valid_bytes)` from an index's first 29 bytes, or None if they are not one.

    Unchecked by the CRC (which covers the whole file): good enough to tell a
    sealed segment that matches its index from one that must be looked at.
    """
    if len(head) < _HEAD_BYTES:
        return None
    magic, version, stored_first, count, valid_bytes = _HEAD.unpack_from(head)
    if magic != _MAGIC or version != _VERSION or stored_first != first_offset:
        return None
    return int(count), int(valid_bytes)


def decode_index(data: bytes, first_offset: int) -> IndexContents | str:
    """The index in `data`, or why it is unusable."""
    if len(data) < _HEAD_BYTES + _TAIL_BYTES:
        return f"index is {len(data)} bytes, too short"
    (crc,) = _CRC.unpack_from(data, len(data) - 4)
    if zlib.crc32(memoryview(data)[:-4]) != crc:
        return "index CRC-32 mismatch"
    magic, version, stored_first, count, valid_bytes = _HEAD.unpack_from(data)
    if magic != _MAGIC or version != _VERSION:
        return f"index magic {magic!r} version {version} not VIDX version {_VERSION}"
    if stored_first != first_offset:
        return f"index first_offset {stored_first} != {first_offset} from the segment name"
    if len(data) != _HEAD_BYTES + 8 * count + _TAIL_BYTES:
        return f"index of {count} positions has {len(data)} bytes"
    positions = positions_array()
    positions.frombytes(data[_HEAD_BYTES : _HEAD_BYTES + 8 * count])
    if not _LITTLE_ENDIAN:
        positions.byteswap()
    if count and (positions[0] != 0 or positions[-1] >= valid_bytes):
        return f"index positions {positions[0]}..{positions[-1]} outside 0..{valid_bytes}"
    head_hash = data[len(data) - _TAIL_BYTES : len(data) - 4]
    return IndexContents(first_offset, valid_bytes, positions, head_hash)


def write_atomic(path: Path, data: bytes) -> None:
    """Write `path` so a crash leaves either the old file or the new one, never a mix."""
    temporary = path.with_name(path.name + ".tmp")
    fd = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        write_all(fd, data)
        OS.fsync(fd)
    finally:
        os.close(fd)
    OS.replace(temporary, path)
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        OS.fsync(fd)
    finally:
        os.close(fd)


def _swapped(positions: array[int]) -> bytes:
    copy = array("Q", positions)
    copy.byteswap()
    return copy.tobytes()
