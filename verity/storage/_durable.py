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
from verity.storage._frame import pwrite_all
from verity.storage._io import OS

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
    """The writer's open mark file.

    `write` is best effort: the mark is evidence, and one that lags the
    records it could name only lowers that evidence (recovery never cuts a
    whole record, only a partial last frame, so a lagging mark cannot cost an
    acknowledged record). The mark is fsynced only at seal, `sync()` and
    close in any case, so between those it lags on disk after a power cut.
    A write that fails (a full disk on a copy-on-write file system, an IO
    error) leaves the mark behind; the next `write` or `fsync` retries it, and
    `fsync` raises if it still cannot be written.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / MARK_FILE
        self._fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
        self._written: tuple[int, bytes] | None = None
        self._wanted: tuple[int, bytes] | None = None
        # The error that left the mark behind, until a write succeeds again.
        self.failure: OSError | None = None

    def write(self, size: int, head_hash: bytes) -> None:
        """Record that `size` records ending in `head_hash` are durable (no fsync, no raise)."""
        self._wanted = (size, head_hash)
        if self._written == self._wanted:
            return
        try:
            self._write_wanted()
        except OSError as failure:
            if self.failure is None:
                logger.warning(
                    "durability mark %s stays at %s records, behind %d: %s; retried at the "
                    "next fsync",
                    self.path,
                    None if self._written is None else self._written[0],
                    size,
                    failure,
                )
            self.failure = failure

    def _write_wanted(self) -> None:
        assert self._wanted is not None
        pwrite_all(self._fd, encode_mark(*self._wanted), 0)
        self._written = self._wanted
        self.failure = None

    @property
    def behind(self) -> bool:
        """The mark on file names fewer records than the last `write` asked for."""
        return self._written != self._wanted

    def fsync(self) -> None:
        """Write the mark if it is behind, then fsync it; raises OSError if either fails."""
        if self.behind:
            self._write_wanted()
        OS.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
