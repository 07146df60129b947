"""Segment files: names, listing, and the sequential scan used to rebuild an index.

Reads of single records never parse a segment sequentially (they go through
the offset index); the scan here runs only to rebuild a missing or stale
index, to recover the active segment after a crash, and in tests.
"""

from __future__ import annotations

import re
import struct
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Final, final

from verity.storage._frame import (
    FRAME_OVERHEAD_BYTES,
    HEADER,
    HEADER_BYTES,
    PREFIX,
    PREFIX_BYTES,
    header_problem,
)
from verity.storage._index import positions_array
from verity.types import Offset

__all__ = [
    "ScanResult",
    "SegmentInfo",
    "index_name",
    "list_segments",
    "scan_frames",
    "segment_name",
    "valid_frame_follows",
]

_SEGMENT_NAME: Final = re.compile(r"^(\d{20})\.vlog$")
_OFFSET: Final = struct.Struct(">Q")
# How many later offsets to look for after a bad frame before calling it a torn tail.
_FOLLOWING_OFFSETS_SEARCHED: Final = 64


@final
@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment file of a log: where it is and what it holds."""

    first_offset: Offset
    path: Path
    record_count: int
    byte_size: int


def segment_name(first_offset: int) -> str:
    return f"{first_offset:020d}.vlog"


def index_name(first_offset: int) -> str:
    return f"{first_offset:020d}.vidx"


def list_segments(directory: Path) -> list[int]:
    """First offsets of the segment files in `directory`, in order."""
    firsts = []
    for entry in directory.iterdir():
        match = _SEGMENT_NAME.match(entry.name)
        if match is not None:
            firsts.append(int(match.group(1)))
    firsts.sort()
    return firsts


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a sequential scan of a segment found.

    `valid_bytes` is where the last good frame ends. `problem` says why the
    scan stopped before the end of the data (None when it did not);
    `problem_crc_valid` is True when the bad frame's CRC matched, i.e. the
    bytes are as written but are not the expected record: never a torn write.
    """

    positions: array[int]
    valid_bytes: int
    problem: str | None
    problem_crc_valid: bool


def scan_frames(data: bytes, first_offset: int) -> ScanResult:
    """Parse frames from byte 0 of `data`, a segment whose first record is `first_offset`."""
    positions = positions_array()
    append_position = positions.append
    unpack_prefix = PREFIX.unpack_from
    unpack_header = HEADER.unpack_from
    crc32 = zlib.crc32
    view = memoryview(data)
    size = len(data)
    position = 0
    expected = first_offset
    while position < size:
        if size - position < FRAME_OVERHEAD_BYTES:
            return ScanResult(positions, position, "incomplete frame at end of file", False)
        length, crc = unpack_prefix(data, position)
        if length < HEADER_BYTES:
            return ScanResult(positions, position, f"frame length {length} is too small", False)
        end = position + PREFIX_BYTES + length
        if end > size:
            return ScanResult(
                positions, position, f"frame of {length} bytes runs past end of file", False
            )
        if crc32(view[position + PREFIX_BYTES : end]) != crc:
            return ScanResult(positions, position, "CRC-32 mismatch", False)
        stored_offset, _, _, payload_len, kind = unpack_header(data, position + PREFIX_BYTES)
        problem = header_problem(stored_offset, payload_len, kind, expected, length)
        if problem is not None:
            return ScanResult(positions, position, problem, True)
        append_position(position)
        position = end
        expected += 1
    return ScanResult(positions, position, None, False)


def valid_frame_follows(data: bytes, bad_position: int, bad_offset: int) -> bool:
    """Whether a good frame of a later record lies after the bad frame at `bad_position`.

    A torn write leaves nothing parseable after it; a flipped byte in the
    middle of a segment leaves good frames behind it. Looks for the header of
    each of the next few offsets (the bad frame's length field may itself be
    the damaged part, so frame boundaries cannot be trusted).
    """
    view = memoryview(data)
    for later in range(bad_offset + 1, bad_offset + 1 + _FOLLOWING_OFFSETS_SEARCHED):
        pattern = _OFFSET.pack(later)
        found = data.find(pattern, bad_position + PREFIX_BYTES + 1)
        while found != -1:
            start = found - PREFIX_BYTES
            if _good_frame_at(data, view, start, later):
                return True
            found = data.find(pattern, found + 1)
    return False


def _good_frame_at(data: bytes, view: memoryview, start: int, offset: int) -> bool:
    if start < 0 or len(data) - start < FRAME_OVERHEAD_BYTES:
        return False
    length, crc = PREFIX.unpack_from(data, start)
    end = start + PREFIX_BYTES + length
    if length < HEADER_BYTES or end > len(data):
        return False
    if zlib.crc32(view[start + PREFIX_BYTES : end]) != crc:
        return False
    stored_offset, _, _, payload_len, kind = HEADER.unpack_from(data, start + PREFIX_BYTES)
    return header_problem(stored_offset, payload_len, kind, offset, length) is None
