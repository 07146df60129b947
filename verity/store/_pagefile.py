"""The page file: CRC-checked page reads, vectored page writes, fsync, and sealing.

With a `PageKey` every 4,096-byte page is stored sealed (AES-256-GCM,
docs/formats.md §6): nonce (12) ‖ ciphertext (4,096) ‖ tag (16), 4,124 bytes
per page on disk. Everything above this class sees plain 4,096-byte pages
and byte sizes counted in them.

Every byte the store reads or writes goes through `PageFile`, and every
system call it makes goes through the module-level names `pread`, `pwritev`
and `fsync`. Crash tests replace those names to record each write and build
the disk images a power cut could leave.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from os import fsync, pread, pwritev
from pathlib import Path
from typing import Final, final

from verity.crypto import GCM_TAG_BYTES, PAGE_NONCE_BYTES, PageKey
from verity.errors import CorruptionError, CryptoError, InvalidArgument
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

    def __init__(self, path: Path, page_key: PageKey | None = None) -> None:
        self.path = path
        self.name = str(path)
        self._page_key = page_key
        # Bytes one page takes on disk.
        self.stored_page_bytes = PAGE_BYTES + (
            0 if page_key is None else PAGE_NONCE_BYTES + GCM_TAG_BYTES
        )
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
        """The file's size in plain page bytes (whole stored pages only, when sealed)."""
        size = os.fstat(self._fd).st_size
        if self._page_key is None:
            return size
        return size // self.stored_page_bytes * PAGE_BYTES

    def _read_page(self, page_number: int) -> bytes | str:
        """The plain bytes of one page, or why there are none (short, fails to open)."""
        stored = pread(self._fd, self.stored_page_bytes, page_number * self.stored_page_bytes)
        if len(stored) != self.stored_page_bytes:
            return f"short read of {len(stored)} bytes (past the end of the file)"
        if self._page_key is None:
            return stored
        try:
            return self._page_key.open(page_number, stored)
        except CryptoError:
            return "does not open under the store's page key (damaged, moved or another key)"

    def read_raw(self, page_number: int) -> bytes | str:
        """The bytes of one page, CRC unchecked (superblocks are judged by their reader).

        A page that is cut short, or sealed and does not open, is the reason why.
        """
        return self._read_page(page_number)

    def read(self, page_number: int) -> bytes:
        """The bytes of one page; CorruptionError names the page if it fails a check."""
        page = self._read_page(page_number)
        if isinstance(page, str):
            raise CorruptionError(
                f"page {page_number}: {page}",
                file=self.name,
                byte_offset=page_number * self.stored_page_bytes,
            )
        (stored,) = _CRC.unpack_from(page)
        if stored != page_checksum(page, page_number):
            raise CorruptionError(
                f"page {page_number}: checksum mismatch",
                file=self.name,
                byte_offset=page_number * self.stored_page_bytes,
            )
        return page

    def write(self, pages: list[tuple[int, bytes]]) -> None:
        """Write whole pages (page number, bytes); consecutive pages share one call."""
        if not pages:
            return
        pages.sort()
        key = self._page_key
        if key is not None:
            pages = [(number, key.seal(number, data)) for number, data in pages]
        run_first, first_bytes = pages[0]
        run = [first_bytes]
        for page_number, data in pages[1:]:
            assert len(data) == self.stored_page_bytes, len(data)
            if page_number == run_first + len(run) and len(run) < _BUFFERS_PER_WRITE_MAX:
                run.append(data)
            else:
                self._write_run(run_first, run)
                run_first, run = page_number, [data]
        self._write_run(run_first, run)

    def _write_run(self, first_page: int, buffers: list[bytes]) -> None:
        offset = first_page * self.stored_page_bytes
        expected = len(buffers) * self.stored_page_bytes
        written = pwritev(self._fd, buffers, offset)
        if written != expected:
            # A short write (a full disk, say) is finished byte by byte or fails loudly.
            data = b"".join(buffers)
            while written < expected:
                step = pwritev(self._fd, [data[written:]], offset + written)
                if step <= 0:
                    raise OSError(errno.EIO, f"pwritev wrote nothing at byte {offset + written}")
                written += step

    def sync(self) -> None:
        fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
