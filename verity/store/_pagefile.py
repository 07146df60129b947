"""The page file: CRC-checked page reads, vectored page writes, fsync.

Every byte the store reads or writes goes through `PageFile`, and every
system call it makes goes through the module-level names `pread`, `pwritev`
and `fsync`. Crash tests replace those names to record each write and build
the disk images a power cut could leave.
"""

from __future__ import annotations

import fcntl
import os
import struct
from os import fsync, pread, pwritev
from pathlib import Path
from typing import Final, final

from verity.errors import CorruptionError, InvalidArgument
from verity.store._format import PAGE_BYTES, page_checksum

__all__ = ["PageFile", "fsync", "fsync_directory", "pread", "pwritev"]

_CRC: Final = struct.Struct(">I")
# Linux accepts at most 1,024 buffers per pwritev call (IOV_MAX).
_BUFFERS_PER_WRITE_MAX: Final = 1024


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


@final
class PageFile:
    """One open page file, locked against a second opener."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InvalidArgument(
                "path", str(path), "the store is already open (its page file is locked)"
            ) from None
        self._fd = fd

    def byte_size(self) -> int:
        return os.fstat(self._fd).st_size

    def read_raw(self, page_number: int) -> bytes:
        """The bytes of one page, unchecked (superblocks are judged by their reader)."""
        return pread(self._fd, PAGE_BYTES, page_number * PAGE_BYTES)

    def read(self, page_number: int) -> bytes:
        """The bytes of one page; CorruptionError names the page if its CRC fails."""
        page = pread(self._fd, PAGE_BYTES, page_number * PAGE_BYTES)
        if len(page) != PAGE_BYTES:
            raise CorruptionError(
                f"page {page_number}: short read of {len(page)} bytes (past the end of the file)",
                file=self.name,
                byte_offset=page_number * PAGE_BYTES,
            )
        (stored,) = _CRC.unpack_from(page)
        if stored != page_checksum(page, page_number):
            raise CorruptionError(
                f"page {page_number}: checksum mismatch",
                file=self.name,
                byte_offset=page_number * PAGE_BYTES,
            )
        return page

    def write(self, pages: list[tuple[int, bytes]]) -> None:
        """Write whole pages (page number, bytes); consecutive pages share one call."""
        if not pages:
            return
        pages.sort()
        run_first, first_bytes = pages[0]
        run = [first_bytes]
        for page_number, data in pages[1:]:
            assert len(data) == PAGE_BYTES, len(data)
            if page_number == run_first + len(run) and len(run) < _BUFFERS_PER_WRITE_MAX:
                run.append(data)
            else:
                self._write_run(run_first, run)
                run_first, run = page_number, [data]
        self._write_run(run_first, run)

    def _write_run(self, first_page: int, buffers: list[bytes]) -> None:
        offset = first_page * PAGE_BYTES
        expected = len(buffers) * PAGE_BYTES
        written = pwritev(self._fd, buffers, offset)
        if written != expected:
            # A short write (a full disk, say) is finished byte by byte or fails loudly.
            data = b"".join(buffers)
            while written < expected:
                step = pwritev(self._fd, [data[written:]], offset + written)
                if step <= 0:
                    raise OSError(f"pwritev wrote nothing at byte {offset + written}")
                written += step

    def sync(self) -> None:
        fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
