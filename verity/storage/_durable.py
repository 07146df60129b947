"""The durability mark, `durable.vmark`: how many records were made durable, and the last one.

The log writes the mark after every fsync of its active segment (so it never
runs ahead of what is durable), and fsyncs it with the derived files (seal,
`sync()`, close). It is the evidence that tells a torn tail (the partial last
record of an append that never returned) from lost history: a log found
holding fewer records than the mark names, or a different record at the
mark's position, lost or rewrote acknowledged records, and open refuses it.

```
"VDUR" (4) ‖ version (1) = 1 ‖ size (8) ‖ head_hash (32) ‖ crc32 (4)    big-endian, 49 bytes
```

`size` is the number of durable records, `head_hash` the chain hash of record
`size - 1` (zeros when 0), the CRC-32 covers the 45 bytes before it. One
`pwrite` at byte 0 replaces it; a torn mark (CRC fails) is ignored with a
warning: it only ever lowers the evidence, never fakes it.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from verity.storage._files import open_private

__all__ = ["MARK_FILE", "DurableMark", "MarkFile", "read_mark"]

logger = logging.getLogger("verity.storage")

MARK_FILE: Final = "durable.vmark"
_MAGIC: Final = b"VDUR"
_VERSION: Final = 1
_BODY: Final = struct.Struct(">4sBQ32s")
_CRC: Final = struct.Struct(">I")
MARK_BYTES: Final = _BODY.size + _CRC.size


@dataclass(frozen=True, slots=True)
class DurableMark:
    size: int
    head_hash: bytes


def encode_mark(size: int, head_hash: bytes) -> bytes:
    assert size >= 0 and len(head_hash) == 32
    body = _BODY.pack(_MAGIC, _VERSION, size, head_hash)
    return body + _CRC.pack(zlib.crc32(body))


def read_mark(directory: Path) -> DurableMark | None:
    """The mark in `directory`, or None if it is missing or does not check (with a warning)."""
    path = directory / MARK_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) == MARK_BYTES:
        magic, version, size, head_hash = _BODY.unpack_from(data)
        (crc,) = _CRC.unpack_from(data, _BODY.size)
        if magic == _MAGIC and version == _VERSION and zlib.crc32(data[: _BODY.size]) == crc:
            return DurableMark(int(size), bytes(head_hash))
    logger.warning("durability mark %s does not check (%d bytes); ignoring it", path, len(data))
    return None


class MarkFile:
    """The writer's open mark file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / MARK_FILE
        self._fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        self._written: tuple[int, bytes] | None = None

    def write(self, size: int, head_hash: bytes) -> None:
        """Record that `size` records ending in `head_hash` are durable (no fsync)."""
        if self._written == (size, head_hash):
            return
        data = encode_mark(size, head_hash)
        written = os.pwrite(self._fd, data, 0)
        assert written == MARK_BYTES, written
        self._written = (size, head_hash)

    def fsync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
