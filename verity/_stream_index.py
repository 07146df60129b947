"""The stream event index, `streams.vsix` (docs/formats.md §5.5): derived data, on disk, mapped.

`read_events(stream, from_offset)` has to find the log record that holds a
given stream offset. For that the tenant keeps, for every EventsAppended
record of every stream, the pair (stream offset of its first event, log
offset of the record). Kept in Python arrays that cost 16 bytes per record of
heap, forever; kept here, in one file of the tenant's folder, they cost a few
integers per stream: entries are written with `pwrite` and read through a
read-only `mmap`, so resident memory does not grow with the log.

Layout (the header's integers little-endian; everything after it in the
byte order the header names, the order of the machine that wrote it):

```
header, 128 bytes:
  "VSIX" (4) ‖ version (1) = 2 ‖ byte order (1): 1 little, 2 big ‖ zeros (2)
  ‖ covered P (8) ‖ chain hash of log record P-1 (32; zeros if P = 0)
  ‖ entries E (8): how many entries name a record below P
  ‖ crc32 (4) of the 56 bytes before it ‖ zeros up to byte 128
extents, one after another in the order they were allocated:
  stream (8) ‖ ordinal (4) ‖ crc32 (4) of the 12 bytes before it
  ‖ capacity x (first stream offset (8) ‖ log offset (8))
```

Extent `k` of a stream (its ordinal) holds `min(8·2^k, 65,536)` entries, so
a stream with one record costs 144 bytes and a long one gets a new extent
every 65,536 records; entry `i` of a stream is found by arithmetic. An entry
whose log offset is 0 is empty: no EventsAppended record is record 0, its
stream was created by an earlier one.

Trust: the header vouches that every EventsAppended record below log offset
`P` has its entry (`E` of them), and names the chain hash of record `P - 1`,
which commits to the whole prefix. `E` is what tells a file cut at an extent
boundary (whole extents gone, every remaining one intact) from a whole one.
It is written only after the entries were fsynced (at a clean close, or
after an open that indexed many records), so entries are
never fsynced one by one: those at or past `P`, which a session that then
crashed may have written, are ignored, zeroed and indexed again from the
log. `load` checks the header's CRC, that `P` is at most the log's size and
that record `P - 1` has that chain hash, and each extent's CRC and order;
a file that fails (damaged, or stale: covering more than the log, or another
history) is rebuilt from the log by the caller, with a warning. Entries
themselves are checked where they are used: the tenant reads the record an
entry names and requires it to be that stream's record at that stream
offset, continuing the one before it.

A reader (`read_only`) writes nothing in the database folder: it works on a
private copy in the system's temporary folder, unlinked as soon as it is
opened, so it vanishes when closed, even by a crash.
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
import struct
import sys
import tempfile
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final, final

from verity.storage._files import open_private

__all__ = ["STREAM_INDEX_FILE", "StreamIndex"]

logger = logging.getLogger("verity")

STREAM_INDEX_FILE: Final = "streams.vsix"
_MAGIC: Final = b"VSIX"
_VERSION: Final = 2
_BYTE_ORDER: Final = 1 if sys.byteorder == "little" else 2
_HEADER: Final = struct.Struct("<4sBBxxQ32sQ")
_CRC: Final = struct.Struct("<I")
HEADER_BYTES: Final = 128
_EXTENT_HEAD: Final = struct.Struct("=QII")  # stream, ordinal, crc32 of the first 12 bytes
_EXTENT_HEAD_BYTES: Final = 16
_ENTRY: Final = struct.Struct("=QQ")  # first stream offset, log offset
_ENTRY_BYTES: Final = 16
_U64: Final = struct.Struct("=Q")
EXTENT_ENTRIES_MIN: Final = 8
EXTENT_ENTRIES_MAX: Final = 65_536
_ORDINAL_OF_MAX: Final = 13  # 8 << 13 == 65,536
# Entries in the extents of ordinals 0..13, before the first of the largest size.
_GROWING_ENTRIES: Final = EXTENT_ENTRIES_MIN * ((1 << (_ORDINAL_OF_MAX + 1)) - 1)
# The file grows by doubling (at most 64 MiB at a time), in whole 64 KiB: few ftruncates
# and remaps, and a small tenant's file stays small.
GROW_BYTES_MIN: Final = 64 << 10
GROW_BYTES_STEP_MAX: Final = 64 << 20
# Mapped pages read since they were last dropped: past this the mapping drops them
# (they stay in the page cache), so pages a reader walked do not stay resident.
_MAPPED_BYTES_KEPT_MAX: Final = 4 << 20
# What one probe of a bisect may map: a read fault maps the pages around it too
# (Linux maps up to 64 KiB of them, when they are in the page cache).
_PROBE_BYTES: Final = 64 << 10
_COPY_CHUNK_BYTES: Final = 1 << 20

assert _HEADER.size + _CRC.size <= HEADER_BYTES
assert _EXTENT_HEAD.size == _EXTENT_HEAD_BYTES and _ENTRY.size == _ENTRY_BYTES
assert EXTENT_ENTRIES_MIN << _ORDINAL_OF_MAX == EXTENT_ENTRIES_MAX


def extent_entries(ordinal: int) -> int:
    """How many entries extent `ordinal` of a stream holds."""
    return EXTENT_ENTRIES_MIN << min(ordinal, _ORDINAL_OF_MAX)


def entries_before(ordinal: int) -> int:
    """How many entries a stream's extents before extent `ordinal` hold."""
    if ordinal <= _ORDINAL_OF_MAX + 1:
        return EXTENT_ENTRIES_MIN * ((1 << ordinal) - 1)
    return _GROWING_ENTRIES + (ordinal - _ORDINAL_OF_MAX - 1) * EXTENT_ENTRIES_MAX


def locate(entry: int) -> tuple[int, int]:
    """(extent ordinal, slot in it) of a stream's entry number `entry`."""
    if entry < _GROWING_ENTRIES:
        ordinal = (entry // EXTENT_ENTRIES_MIN + 1).bit_length() - 1
        return ordinal, entry - entries_before(ordinal)
    beyond, slot = divmod(entry - _GROWING_ENTRIES, EXTENT_ENTRIES_MAX)
    return _ORDINAL_OF_MAX + 1 + beyond, slot


def _extent_bytes(ordinal: int) -> int:
    return _EXTENT_HEAD_BYTES + _ENTRY_BYTES * extent_entries(ordinal)


def _header(covered: int, head: bytes, entries: int) -> bytes:
    body = _HEADER.pack(_MAGIC, _VERSION, _BYTE_ORDER, covered, head, entries)
    return (body + _CRC.pack(zlib.crc32(body))).ljust(HEADER_BYTES, b"\0")


@final
class _Stream:
    """Where one stream's entries are: its extents' byte positions, and how many entries."""

    __slots__ = ("count", "extents", "last_first", "last_log_offset")

    def __init__(self) -> None:
        self.extents = array("Q")
        self.count = 0
        self.last_first = -1
        self.last_log_offset = -1


@final
class StreamIndex:
    """The stream event index of one tenant: `load` it, then `append` and `batches`.

    Creating the object touches nothing on disk: a tenant open that is
    refused before `load` leaves no file behind.
    """

    def __init__(self, folder: Path, *, read_only: bool) -> None:
        self.path = folder / STREAM_INDEX_FILE
        self._read_only = read_only
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._mapped_bytes = 0
        self._file_bytes = 0
        self._end = HEADER_BYTES  # where the next extent goes
        self._streams: dict[int, _Stream] = {}
        self._covered = 0
        self._touched_bytes = 0
        self.stale = False
        """Set when an entry could not be written: the index no longer vouches for itself."""

    # ------------------------------------------------------------ open

    def load(self, log_size: int, chain_hash: Callable[[int], bytes]) -> int:
        """Open the file, check it against the log; return `P`: records below it are indexed.

        `chain_hash(offset)` is the chain hash of log record `offset`. A file
        that fails a check is emptied (with a warning) and 0 is returned: the
        caller indexes the whole log again.
        """
        assert self._fd < 0
        self._fd = self._open_file()
        problem = self._check(log_size, chain_hash)
        if problem is not None:
            if problem:
                logger.warning("stream index %s %s; rebuilding it from the log", self.path, problem)
            self.reset()
        self._drop_pages()  # the checks probed every extent
        return self._covered

    def _open_file(self) -> int:
        if not self._read_only:
            return open_private(self.path, os.O_RDWR | os.O_CREAT)
        # A reader works on a private copy outside the database folder (mkstemp: mode
        # 0600), unlinked at once: the file system frees it when the reader closes it.
        # Where the temporary folder has no room (a full disk), the copy lives in
        # memory (memfd): a reader must still read.
        try:
            fd, temporary = tempfile.mkstemp(prefix="verity-streams-", suffix=".vsix")
            os.unlink(temporary)
        except OSError as no_room:
            logger.warning("stream index of a reader kept in memory: %s", no_room)
            return self._copied_into(os.memfd_create("verity-streams"))
        try:
            return self._copied_into(fd)
        except OSError as no_room:
            logger.warning("stream index of a reader kept in memory: %s", no_room)
            return self._copied_into(os.memfd_create("verity-streams"))

    def _copied_into(self, fd: int) -> int:
        """`fd`, now holding a copy of the index file (if any); closed if the copy fails."""
        try:
            try:
                source = open(self.path, "rb")  # noqa: SIM115 (closed just below)
            except FileNotFoundError:
                return fd
            with source, open(fd, "wb", closefd=False) as target:
                shutil.copyfileobj(source, target, _COPY_CHUNK_BYTES)
        except BaseException:
            os.close(fd)
            raise
        assert fd >= 0
        return fd

    def _check(self, log_size: int, chain_hash: Callable[[int], bytes]) -> str | None:
        """Why the file cannot be used ("" for a new, empty one), or None when it loaded."""
        self._file_bytes = os.fstat(self._fd).st_size
        if self._file_bytes == 0:
            return ""
        header = os.pread(self._fd, HEADER_BYTES, 0)
        if len(header) < HEADER_BYTES:
            return f"is {len(header)} bytes long, shorter than its header"
        body = header[: _HEADER.size]
        (crc,) = _CRC.unpack_from(header, _HEADER.size)
        magic, version, byte_order, covered, head, entries = _HEADER.unpack(body)
        if magic != _MAGIC or version != _VERSION or zlib.crc32(body) != crc:
            return f"has a damaged header (magic {magic!r}, version {version})"
        if byte_order != _BYTE_ORDER:
            return f"was written on a machine of byte order {byte_order}"
        if covered > log_size:
            return f"is stale: it covers {covered} records, the log holds {log_size}"
        if covered > 0 and chain_hash(covered - 1) != head:
            return f"is stale: log record {covered - 1} is not the one it was written for"
        self._covered = covered
        self._remap()
        problem = self._scan()
        found = sum(known.count for known in self._streams.values())
        if problem is None and found != entries:
            problem = (
                f"holds {found} entries below record {covered}, its header vouches for {entries}"
            )
        if problem is not None:
            self._covered = 0
            self._streams = {}
        return problem

    def _scan(self) -> str | None:
        """Find every extent and how many of its entries are below `P`; clear the rest."""
        assert self._map is not None
        view = self._map
        position = HEADER_BYTES
        last_used = HEADER_BYTES  # the end of the last extent holding an entry below P
        unused_from = 0  # the first extent holding none (allocated by a session that crashed)
        while position + _EXTENT_HEAD_BYTES <= self._file_bytes:
            stream, ordinal, crc = _EXTENT_HEAD.unpack_from(view, position)
            if stream == 0 and ordinal == 0 and crc == 0:
                break  # never allocated: extents are allocated one after another
            if zlib.crc32(view[position : position + 12]) != crc:
                return f"has a damaged extent header at byte {position}"
            extent_end = position + _extent_bytes(ordinal)
            if extent_end > self._file_bytes:
                return f"has an extent at byte {position} that runs past the end of the file"
            used = self._entries_below_covered(position, ordinal)
            if used == 0:
                unused_from = unused_from or position
            elif unused_from:
                return f"has entries at byte {position}, after an extent that holds none"
            else:
                known = self._streams.setdefault(stream, _Stream())
                # A stream fills its extents in order: only its last may be partly used.
                if ordinal != len(known.extents) or known.count != entries_before(ordinal):
                    return f"has extent {ordinal} of stream {stream} out of order"
                known.extents.append(position)
                known.count += used
                last_used = extent_end
            position = extent_end
            self._drop_pages_if_many()  # the scan probes every extent of a large file
        self._end = last_used
        for known in self._streams.values():
            ordinal, slot = locate(known.count - 1)
            known.last_first, known.last_log_offset = self._entry(known.extents[ordinal], slot)
            self._clear_unused(known)
        if position > self._end:
            # Extents a crashed session allocated: cut, so that a new extent reads as empty.
            self._unmap()
            os.ftruncate(self._fd, self._end)
            os.ftruncate(self._fd, self._file_bytes)
            self._remap()
        return None

    def _entries_below_covered(self, position: int, ordinal: int) -> int:
        """How many leading entries of the extent at `position` name a record below `P`.

        Entries are appended in log order: those below `P`, then those a crashed
        session wrote at or past it, then empty ones.
        """
        covered = self._covered
        capacity = extent_entries(ordinal)

        def unused(slot: int) -> bool:
            log_offset = self._entry(position, slot)[1]
            return not 0 < log_offset < covered

        # Every extent of a stream but its last is full: one probe tells.
        self._touched_bytes += 2 * _PROBE_BYTES
        if not unused(capacity - 1):
            return capacity
        self._touched_bytes += _PROBE_BYTES * capacity.bit_length()
        return bisect_left(range(capacity), True, key=unused)

    def _clear_unused(self, known: _Stream) -> None:
        """Zero the entries past the stream's last one, which a crashed session may have left."""
        ordinal, slot = locate(known.count)
        if slot == 0 or ordinal >= len(known.extents):
            return  # the last extent is full: the next entry opens a new extent
        position = known.extents[ordinal]
        if self._entry(position, slot) == (0, 0):
            return
        start = position + _EXTENT_HEAD_BYTES + _ENTRY_BYTES * slot
        os.pwrite(self._fd, bytes(_ENTRY_BYTES * (extent_entries(ordinal) - slot)), start)

    def reset(self) -> None:
        """Empty the index (covering 0 records); the caller indexes the log again."""
        self._unmap()
        self._streams = {}
        self._covered = 0
        self._end = HEADER_BYTES
        self.stale = False
        try:
            self._write_empty()
        except OSError as no_room:
            # A writer on a full disk still opens: this session indexes in memory, and
            # the file (derived) is rebuilt by a later open.
            logger.warning(
                "stream index %s cannot be rewritten (%s); this session keeps it in memory",
                self.path,
                no_room,
            )
            os.close(self._fd)
            self._fd = os.memfd_create("verity-streams")
            self._write_empty()
        self._file_bytes = HEADER_BYTES
        self._remap()

    def _write_empty(self) -> None:
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, _header(0, bytes(32), 0), 0)
        if not self._read_only:
            # Durable before any new entry is written: an older header left on disk
            # would vouch for a rebuild a crash cut short.
            os.fsync(self._fd)
        assert os.fstat(self._fd).st_size == HEADER_BYTES

    # ------------------------------------------------------------ writing

    def append(self, stream: int, first: int, log_offset: int) -> None:
        """Record that log record `log_offset` holds `stream`'s events from `first` on.

        A write the disk refuses does not fail the caller's append (its record
        is durable in the log): the index marks itself stale instead, and is
        rebuilt before it is read.
        """
        known = self._streams.get(stream)
        if known is None:
            known = self._streams[stream] = _Stream()
        assert first > known.last_first and log_offset > known.last_log_offset
        assert log_offset > 0, "record 0 holds no events"
        if self.stale:
            return
        ordinal, slot = locate(known.count)
        try:
            if slot == 0:
                self._allocate(known, stream, ordinal)
            entry_at = known.extents[ordinal] + _EXTENT_HEAD_BYTES + _ENTRY_BYTES * slot
            os.pwrite(self._fd, _ENTRY.pack(first, log_offset), entry_at)
        except OSError as failure:
            logger.warning(
                "could not write stream index %s (%s); it is rebuilt from the log before "
                "the next read",
                self.path,
                failure,
            )
            self.stale = True
            return
        known.count += 1
        known.last_first = first
        known.last_log_offset = log_offset

    def _allocate(self, known: _Stream, stream: int, ordinal: int) -> None:
        position = self._end
        end = position + _extent_bytes(ordinal)
        if end > self._file_bytes:
            wanted = max(end, self._file_bytes + min(self._file_bytes, GROW_BYTES_STEP_MAX))
            grown = -(-wanted // GROW_BYTES_MIN) * GROW_BYTES_MIN
            os.ftruncate(self._fd, grown)  # sparse: zeros, read as empty entries
            self._file_bytes = grown
        head = _EXTENT_HEAD.pack(stream, ordinal, 0)[:12]
        os.pwrite(self._fd, _EXTENT_HEAD.pack(stream, ordinal, zlib.crc32(head)), position)
        known.extents.append(position)
        self._end = end

    def flush(self, log_size: int, head: bytes) -> None:
        """Vouch for the entries of every record below `log_size`; record `log_size - 1` has `head`.

        The caller has appended an entry for every EventsAppended record below it.
        """
        assert len(head) == 32 and not self.stale and self._fd >= 0
        if not self._read_only:
            os.fsync(self._fd)  # the entries first: the header vouches for them
        entries = sum(known.count for known in self._streams.values())
        os.pwrite(self._fd, _header(log_size, head, entries), 0)
        self._covered = log_size

    # ------------------------------------------------------------ reading

    def batches(self, stream: int, from_offset: int) -> Iterator[tuple[int, int]]:
        """(first stream offset, log offset) of `stream`'s records from the one with `from_offset`.

        Starts at the stream's first record when `from_offset` is before it;
        yields nothing for a stream without records.
        """
        known = self._streams.get(stream)
        if known is None or known.count == 0:
            return
        self._drop_pages_if_many()
        self._cover(self._end)
        extents = known.extents

        def extent_first(ordinal: int) -> int:
            return self._entry(extents[ordinal], 0)[0]

        ordinal = max(bisect_right(range(len(extents)), from_offset, key=extent_first) - 1, 0)
        position = extents[ordinal]
        filled = min(extent_entries(ordinal), known.count - entries_before(ordinal))
        slot = bisect_right(range(filled), from_offset, key=lambda i: self._entry(position, i)[0])
        slot = max(slot - 1, 0)
        self._touched_bytes += _PROBE_BYTES * (len(extents).bit_length() + filled.bit_length())
        left = known.count - entries_before(ordinal) - slot
        view = self._map
        assert view is not None
        while left > 0:
            entries_at = extents[ordinal] + _EXTENT_HEAD_BYTES
            taken = min(extent_entries(ordinal) - slot, left)
            self._touched_bytes += _ENTRY_BYTES * taken
            for at in range(
                entries_at + _ENTRY_BYTES * slot,
                entries_at + _ENTRY_BYTES * (slot + taken),
                _ENTRY_BYTES,
            ):
                yield _ENTRY.unpack_from(view, at)
            left -= taken
            ordinal += 1
            slot = 0
            self._drop_pages_if_many()  # a long read walks many extents

    def _entry(self, extent_position: int, slot: int) -> tuple[int, int]:
        assert self._map is not None
        start = extent_position + _EXTENT_HEAD_BYTES + _ENTRY_BYTES * slot
        first, log_offset = _ENTRY.unpack_from(self._map, start)
        return first, log_offset

    # ------------------------------------------------------------ the mapping

    def _cover(self, end: int) -> None:
        """Map the file again if it grew past the mapping (appends write with pwrite)."""
        if end > self._mapped_bytes:
            self._remap()

    def _remap(self) -> None:
        self._unmap()
        self._file_bytes = os.fstat(self._fd).st_size
        if self._file_bytes:
            self._map = mmap.mmap(self._fd, self._file_bytes, access=mmap.ACCESS_READ)
            self._mapped_bytes = self._file_bytes

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
            self._mapped_bytes = 0

    def _drop_pages_if_many(self) -> None:
        """Drop the mapping's pages once readers may have touched many of them.

        Pages of a mapped file count in the process's resident memory as long as
        they stay mapped; dropping them unmaps them (they stay in the page cache,
        and come back on the next touch without reading the disk).
        """
        if self._touched_bytes >= _MAPPED_BYTES_KEPT_MAX:
            self._drop_pages()

    def _drop_pages(self) -> None:
        self._touched_bytes = 0
        advice = getattr(mmap, "MADV_DONTNEED", None)
        if advice is not None and self._map is not None:
            self._map.madvise(advice)

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the mapping and the file; idempotent. Unflushed entries stay unvouched."""
        self._unmap()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
