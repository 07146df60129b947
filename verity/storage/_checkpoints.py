"""The checkpoint list, `checkpoints.vcpt` (derived; lets open skip a scan of the log).

A sequence of fixed 85-byte entries, appended in log order:

```
kind (1)          1 = checkpoint record, 2 = coverage mark, 3 = KEY record
offset (8)        checkpoint, KEY: the record's offset; mark: a log size N
chain_hash (32)   checkpoint: payload chain_hash; KEY: the public key it pins; mark: zeros
merkle_root (32)  checkpoint: payload merkle_root; mark: zeros
created_at (8)    checkpoint, KEY: the record's timestamp; mark: 0
crc32 (4)         CRC-32 of the 81 bytes before it
```

A coverage mark `N` states that every checkpoint record at an offset below
`N` has an entry before the mark. Marks are appended when a segment is
sealed, on clean close and after open repaired the list, each time after the
entries they cover, and fsynced at seal and close. The `offset` fields never
decrease along the file.

Open stays flat in the log size: it reads the file, walks back from the end
only past entries no usable mark confirms (the tail a crash may have left),
and trusts the prefix; each entry's CRC is checked when the entry is decoded
(`nearest`, `last`, `all`). The list is the trusted anchor of
`read_verified`, so a damaged entry is reported, never silently replaced.

A writer keeps in memory only the entries not yet in the file, and reads the
others from it (it holds the folder's lock: nobody else changes the file),
so its memory does not grow with the log (85 bytes per checkpoint, one per
1,000 records by default). A reader keeps every entry it loaded in memory: a
writer beside it may cut the file's tail.
"""

from __future__ import annotations

import os
import struct
import zlib
from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from verity.errors import CorruptionError
from verity.storage._files import open_private
from verity.storage._frame import ZERO_HASH, pread_exact, write_all
from verity.storage._io import OS
from verity.types import Checkpoint, Hash, Offset, Timestamp

__all__ = ["CHECKPOINTS_FILE", "CheckpointIndex"]

CHECKPOINTS_FILE: Final = "checkpoints.vcpt"
_ENTRY: Final = struct.Struct(">BQ32s32sQ")
_CRC: Final = struct.Struct(">I")
_KEY: Final = struct.Struct(">BQ")
_ENTRY_BYTES: Final = 85
_KIND_CHECKPOINT: Final = 1
_KIND_COVERED: Final = 2
_KIND_KEY: Final = 3
_SCAN_BYTES: Final = (64 << 10) // 85 * 85  # whole entries read at once when walking back

assert _ENTRY.size + _CRC.size == _ENTRY_BYTES


def _entry(kind: int, offset: int, chain_hash: bytes, merkle_root: bytes, created_at: int) -> bytes:
    body = _ENTRY.pack(kind, offset, chain_hash, merkle_root, created_at)
    return body + _CRC.pack(zlib.crc32(body))


class CheckpointIndex:
    """The checkpoint list, appended in log order; a writer reads its written entries back."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self.path = directory / CHECKPOINTS_FILE
        self._read_only = read_only
        if read_only:
            # A reader repairs nothing on disk: entries it re-derives stay in memory.
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                self._fd = -1
        else:
            self._fd = open_private(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        # Entries from byte `_on_disk_bytes` on; the ones before it are read from the
        # file (a writer's written entries; always 0 for a reader).
        self._entries = bytearray()
        self._on_disk_bytes = 0
        self._written_bytes = 0
        self._file_bytes = 0

    def highest_mark(self) -> int:
        """The largest CRC-valid coverage mark in the file (0 if none).

        A mark is written only after the records it covers were fsynced, so it
        is evidence of how many records were durable: a log found shorter than
        this lost history. Marks never decrease along the file, so the last
        valid one is the highest.
        """
        if self._fd < 0:
            return 0
        data = pread_exact(self._fd, os.fstat(self._fd).st_size, 0)
        for index in range(len(data) // _ENTRY_BYTES - 1, -1, -1):
            entry = data[index * _ENTRY_BYTES : (index + 1) * _ENTRY_BYTES]
            kind, offset = _KEY.unpack_from(entry)
            (crc,) = _CRC.unpack_from(entry, _ENTRY.size)
            if kind == _KIND_COVERED and zlib.crc32(entry[: _ENTRY.size]) == crc:
                return int(offset)
        return 0

    def load(self, size: int, covered_needed: int) -> int:
        """Keep the entries a usable mark confirms; return that mark (records covered).

        The last CRC-valid mark is used, capped at `covered_needed` (and so at
        most `size`): entries about records at or past the cap are dropped, and
        checkpoints there are re-derived from the log by the caller and added
        with `append` before `commit_repair`.
        """
        assert 0 <= covered_needed <= size
        self._file_bytes = os.fstat(self._fd).st_size if self._fd >= 0 else 0
        data = pread_exact(self._fd, self._file_bytes, 0) if self._fd >= 0 else b""
        whole_entries = len(data) // _ENTRY_BYTES
        covered = 0
        kept_entries = 0
        for index in range(whole_entries - 1, -1, -1):
            entry = data[index * _ENTRY_BYTES : (index + 1) * _ENTRY_BYTES]
            kind, offset = _KEY.unpack_from(entry)
            if kind != _KIND_COVERED:
                continue
            (crc,) = _CRC.unpack_from(entry, _ENTRY.size)
            if zlib.crc32(entry[: _ENTRY.size]) != crc:
                continue
            if offset <= covered_needed:
                covered = offset
                kept_entries = index + 1
            else:
                # A mark past the records open trusts (an unscanned active segment)
                # still vouches for the entries below `covered_needed`: those records
                # are unchanged. Offsets never decrease, so they are a prefix.
                covered = covered_needed
                kept_entries = self._prefix_below(data, index, covered_needed)
            break
        self._written_bytes = kept_entries * _ENTRY_BYTES
        if self._read_only:
            self._entries = bytearray(data[: self._written_bytes])
            self._on_disk_bytes = 0
        else:
            self._entries = bytearray()
            self._on_disk_bytes = self._written_bytes
        return covered

    @staticmethod
    def _prefix_below(data: bytes, mark_index: int, end: int) -> int:
        """How many entries before `mark_index` are about records below `end` (a prefix)."""
        kept = mark_index
        while kept > 0:
            kind, offset = _KEY.unpack_from(data, (kept - 1) * _ENTRY_BYTES)
            if offset < end or (kind == _KIND_COVERED and offset == end):
                break
            kept -= 1
        assert kept == 0 or _KEY.unpack_from(data, (kept - 1) * _ENTRY_BYTES)[1] <= end
        return kept

    def commit_repair(self, size: int) -> None:
        """Make the file equal the repaired list, ending with a mark covering `size` records.

        Raises OSError if the file cannot be written; the repaired list then
        stays in memory and the next `flush` writes it.
        """
        if self._read_only:
            return
        if (
            self._written_bytes == self._file_bytes == self.entry_bytes()
            and self._last_mark() == size
        ):
            return
        self.cover(size)
        self.flush()

    def _last_mark(self) -> int | None:
        if not self._count():
            return None
        kind, offset = _KEY.unpack_from(self._raw(self._count() - 1))
        return offset if kind == _KIND_COVERED else None

    def append(self, checkpoint: Checkpoint) -> None:
        self._entries += _entry(
            _KIND_CHECKPOINT,
            int(checkpoint.offset),
            checkpoint.chain_hash,
            checkpoint.merkle_root,
            int(checkpoint.created_at),
        )

    def append_key(self, offset: int, public_key: bytes, created_at: int) -> None:
        """A KEY record at `offset` pins `public_key` from there on."""
        self._entries += _entry(_KIND_KEY, offset, public_key, ZERO_HASH, created_at)

    def last_key(self) -> tuple[int, bytes] | None:
        """`(offset, public key)` of the last KEY record listed, or None (CRC-checked)."""
        for index, entry in self._backwards():
            start = index * _ENTRY_BYTES
            if entry[0] != _KIND_KEY:
                continue
            (crc,) = _CRC.unpack_from(entry, _ENTRY.size)
            if zlib.crc32(entry[: _ENTRY.size]) != crc:
                raise CorruptionError(
                    f"checkpoint list entry {index} (a KEY record) fails its CRC-32",
                    file=str(self.path),
                    byte_offset=start,
                )
            _, offset, public_key, _, _ = _ENTRY.unpack_from(entry)
            return int(offset), bytes(public_key)
        return None

    def keys_after(self, offset: int) -> int:
        """How many KEY records are listed after log offset `offset` (they are not DATA)."""
        count = 0
        for _, entry in self._backwards():
            if _KEY.unpack_from(entry)[1] <= offset:
                break
            count += entry[0] == _KIND_KEY
        return count

    def append_covered(self, size: int) -> None:
        self._entries += _entry(_KIND_COVERED, size, ZERO_HASH, ZERO_HASH, 0)

    def cover(self, size: int) -> None:
        """Append a coverage mark for `size` records unless the list already ends with it.

        A seal or close that failed and is tried again adds no second mark.
        """
        if self._last_mark() != size:
            self.append_covered(size)

    def entry_bytes(self) -> int:
        """Bytes of entries held (written or not): a point `rollback` can return to."""
        return self._on_disk_bytes + len(self._entries)

    def rollback(self, entry_bytes: int) -> None:
        """Drop the entries added after `entry_bytes`, except those already written.

        Used when the records they list were cut back after a failed write;
        entries already in the file list only records that stayed (the log
        writes this list only after the records it lists were fsynced).
        """
        del self._entries[max(entry_bytes, self._written_bytes) - self._on_disk_bytes :]

    def flush(self) -> None:
        """Write the entries not yet in the file (no fsync); raises OSError if it cannot.

        A failed write leaves the entries in memory and the file cut back to
        what it held before (at the next flush), so a retry writes each entry
        once: a full disk delays the list, it never garbles it.
        """
        if self._read_only:
            return
        if self._file_bytes != self._written_bytes:
            # A write failed part way (or open found bytes past the kept entries).
            OS.ftruncate(self._fd, self._written_bytes)
            self._file_bytes = self._written_bytes
        if self._written_bytes < self.entry_bytes():
            unwritten = self._written_bytes - self._on_disk_bytes
            try:
                write_all(self._fd, memoryview(self._entries)[unwritten:])
            except BaseException:
                self._file_bytes = -1  # unknown: cut back to what was written first
                raise
            self._written_bytes = self.entry_bytes()
            self._file_bytes = self._written_bytes
        # Written entries are read back from the file: memory stays flat in the log.
        del self._entries[: self._written_bytes - self._on_disk_bytes]
        self._on_disk_bytes = self._written_bytes

    def fsync(self) -> None:
        if not self._read_only:
            OS.fsync(self._fd)

    def close(self) -> None:
        """Close the file; unflushed entries are dropped (callers flush first when clean)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ------------------------------------------------------------------ read

    def _count(self) -> int:
        return self.entry_bytes() // _ENTRY_BYTES

    def _raw(self, index: int) -> bytes:
        """The 85 bytes of entry `index`, from memory or from the file."""
        start = index * _ENTRY_BYTES
        if start >= self._on_disk_bytes:
            at = start - self._on_disk_bytes
            return bytes(self._entries[at : at + _ENTRY_BYTES])
        return self._read(start, _ENTRY_BYTES)

    def _read(self, start: int, length: int) -> bytes:
        data = pread_exact(self._fd, length, start)
        if len(data) != length:
            raise CorruptionError(
                f"checkpoint list ends at byte {start + len(data)}; it held {self._on_disk_bytes}",
                file=str(self.path),
                byte_offset=start + len(data),
            )
        return data

    def _backwards(self) -> Iterator[tuple[int, bytes]]:
        """`(index, entry bytes)` from the last entry to the first, reading the file in chunks."""
        for index in range(self._count() - 1, self._on_disk_bytes // _ENTRY_BYTES - 1, -1):
            yield index, self._raw(index)
        end = self._on_disk_bytes
        while end > 0:
            start = max(end - _SCAN_BYTES, 0)
            chunk = self._read(start, end - start)
            for position in range(len(chunk) - _ENTRY_BYTES, -1, -_ENTRY_BYTES):
                yield (start + position) // _ENTRY_BYTES, chunk[position : position + _ENTRY_BYTES]
            end = start

    def _key(self, index: int) -> int:
        _, offset = _KEY.unpack_from(self._raw(index))
        return int(offset)

    def _checkpoint_at_or_before(self, index: int) -> Checkpoint | None:
        while index >= 0 and self._raw(index)[0] != _KIND_CHECKPOINT:
            index -= 1
        return self._decode(index) if index >= 0 else None

    def _decode(self, index: int, entry: bytes | None = None) -> Checkpoint:
        start = index * _ENTRY_BYTES
        entry = self._raw(index) if entry is None else entry
        (crc,) = _CRC.unpack_from(entry, _ENTRY.size)
        kind, offset, chain_hash, merkle_root, created_at = _ENTRY.unpack_from(entry)
        if zlib.crc32(entry[: _ENTRY.size]) != crc or kind != _KIND_CHECKPOINT:
            raise CorruptionError(
                f"checkpoint list entry {index} fails its CRC-32; the list anchors verified "
                "reads, so it is not rebuilt silently (delete the file to rebuild it from the log)",
                file=str(self.path),
                byte_offset=start,
            )
        return Checkpoint(
            Offset(offset), Hash(chain_hash), offset, Hash(merkle_root), Timestamp(created_at)
        )

    def last(self) -> Checkpoint | None:
        return self._checkpoint_at_or_before(self._count() - 1)

    def nearest(self, offset: int) -> Checkpoint | None:
        """The last checkpoint at or before `offset`: O(log n) entry reads."""
        position = bisect_right(range(self._count()), offset, key=self._key)
        return self._checkpoint_at_or_before(position - 1)

    def all(self) -> list[Checkpoint]:
        found = [
            self._decode(index, entry)
            for index, entry in self._backwards()
            if entry[0] == _KIND_CHECKPOINT
        ]
        found.reverse()
        return found
