"""Stored RFC 9162 Merkle nodes (docs/formats.md §2, §4.3).

`merkle/level-LL.bin` holds node `k` of level `L`, `MTH(D[k·2^L : (k+1)·2^L])`,
32 bytes at byte `32·k`. Appends extend the tree incrementally (one leaf hash
and, on average, one parent hash per record); new nodes are kept in memory
and written at flush points. Any subtree hash the RFC recursion asks for is a
fold of at most `log2 n` stored nodes, so proofs at any tree size read
O(log n) nodes for an inclusion proof and O(log² n) at most for a consistency
proof, without touching the log.

Every complete 4 KiB block of a level file (128 nodes) has a CRC-32 in
`merkle/level-LL.sum`. A block is checked against it the first time it is
read after open; the partial last block of each level is never trusted from
disk: open recomputes it from the level below (level 0 from the records) and
keeps it in memory. So no node reaches a root or a proof unless it either
matched its block's CRC or was computed by this process. A flipped byte in
a node file cannot silently become a wrong proof or a wrong checkpoint root.

The files are derived data. `load` reconciles them with the log on open:
nodes past the log's end are cut, nodes the log gained since the last flush
are recomputed, and files that fall short of what a clean shutdown or a
sealed segment guarantees, or that disagree with the log, are rebuilt from
it with one warning. A read that finds a damaged block raises
`DamagedNodes`; the log then rebuilds every file from the records, with a
warning, and asks again (`verity.storage._log`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from verity.errors import CorruptionError
from verity.storage._files import make_private_dir, open_private
from verity.storage._frame import EMPTY_TREE_ROOT, pread_exact, pwrite_all, write_all
from verity.storage._io import OS

__all__ = [
    "DamagedNodes",
    "MerkleStore",
    "block_sum",
    "largest_power_of_two_below",
    "level_file_name",
    "tail_sum",
    "sum_file_name",
]

logger = logging.getLogger("verity.storage")

NODE_BYTES: Final = 32
BLOCK_NODES: Final = 128
BLOCK_BYTES: Final = NODE_BYTES * BLOCK_NODES
BLOCK_SHIFT: Final = 7
SUM_BYTES: Final = 4
_SUM: Final = struct.Struct("<I")
_BLOCK_KEY: Final = struct.Struct("<BQ")
TAILS_FILE: Final = "tails.bin"
_TAILS_HEADER: Final = struct.Struct("<4sBB")
_TAILS_ENTRY: Final = struct.Struct("<QI")
_TAILS_MAGIC: Final = b"VMTL"
_TAILS_VERSION: Final = 1
_LEVEL_NAME: Final = re.compile(r"^level-(\d{2})\.(bin|sum)$")
_REBUILD_CHUNK_NODES: Final = 1 << 15
_FLUSH_BYTES: Final = 1 << 20
_LEVELS_MAX: Final = 64

RecordSource = Callable[[int, int], Iterable[bytes]]


class DamagedNodes(CorruptionError):
    """Stored Merkle nodes failed their check; they are rebuilt from the log."""


def level_file_name(level: int) -> str:
    return f"level-{level:02d}.bin"


def sum_file_name(level: int) -> str:
    return f"level-{level:02d}.sum"


def block_sum(level: int, block_index: int, block: bytes | bytearray) -> int:
    """CRC-32 of `level (u8) ‖ block_index (u64 LE) ‖ block`: a block moved elsewhere fails."""
    assert len(block) == BLOCK_BYTES
    return zlib.crc32(block, zlib.crc32(_BLOCK_KEY.pack(level, block_index)))


def tail_sum(level: int, count: int, partial: bytes | bytearray) -> int:
    """CRC-32 of `level (u8) ‖ count (u64 LE) ‖ the nodes after the level's last full block`."""
    assert len(partial) < BLOCK_BYTES
    return zlib.crc32(partial, zlib.crc32(_BLOCK_KEY.pack(level, count)))


def largest_power_of_two_below(size: int) -> int:
    """The largest power of two strictly less than `size` (RFC 9162 `k`); size >= 2."""
    assert size >= 2
    return 1 << ((size - 1).bit_length() - 1)


class MerkleStore:
    """The Merkle node files of one log, with each level's partial last block in memory."""

    def __init__(self, directory: Path, *, read_only: bool = False) -> None:
        self.directory = directory
        # A read-only store never writes, renames or truncates: what it cannot use from
        # disk (damaged, missing, or past the files' end) it keeps in memory instead.
        self.read_only = read_only
        self._fds: list[int] = []
        self._sum_fds: list[int] = []
        # Per level: complete blocks on disk, their CRCs, and which were checked
        # since open (a block is checked once, on its first read).
        self._blocks: list[int] = []
        self._sums: list[bytearray] = []
        self._checked: list[bytearray] = []
        # Per level: the nodes after the complete blocks, always in memory;
        # the first `_tail_written[L]` bytes of them are also on disk.
        self._tails: list[bytearray] = []
        self._tail_written: list[int] = []
        self._tails_fd = -1
        # _left[L] is the last node of level L while that level has an odd count:
        # the left sibling its next node will be combined with.
        self._left: list[bytes] = [b""] * _LEVELS_MAX
        self.size = 0
        # Levels whose files may hold bytes of a write that failed part way: the next
        # flush cuts them back to what is known written before it writes again.
        self._unsure: set[int] = set()
        # Why nodes are kept in memory that should be on disk (a full disk), until a
        # flush succeeds again; they are written by the next flush.
        self.unwritten: OSError | None = None

    # ------------------------------------------------------------------ open

    def load(
        self,
        size: int,
        trusted_through: int,
        expected_root: tuple[int, bytes] | None,
        records: RecordSource,
    ) -> None:
        """Reconcile the node files with a log of `size` records.

        Nodes covering only records below `trusted_through` are expected on
        disk (a sealed segment or a clean close flushed and fsynced them); a
        shortfall there is damage and is rebuilt with a warning. Complete
        blocks are kept (checked on first read); a level's partial last block
        is kept if `tails.bin` vouches for exactly those bytes, and otherwise
        recomputed from `records(lo, hi)` (record bytes in offset order) and
        compared with what was on disk. `expected_root` is `(c, root)` of the
        last checkpoint record; if the stored nodes disagree with it they are
        all rebuilt.
        """
        assert 0 <= trusted_through <= size
        if not self.read_only:
            make_private_dir(self.directory)
        levels = size.bit_length()
        node_counts, sum_counts = self._scan_files(levels)
        vouched = self._read_tails()
        problems: list[str] = []
        kept_nodes: list[int] = []
        kept_blocks: list[int] = []
        partials: list[bytes] = []
        unvouched: list[int] = []
        for level in range(levels):
            on_disk = node_counts.get(level, 0)
            sums = sum_counts.get(level, 0)
            trusted = trusted_through >> level
            if on_disk < trusted:
                problems.append(f"{level_file_name(level)} holds {on_disk} of {trusted} nodes")
            elif sums < trusted >> BLOCK_SHIFT:
                problems.append(
                    f"{sum_file_name(level)} holds {sums} of {trusted >> BLOCK_SHIFT} block sums"
                )
            keep = min(on_disk, trusted)
            if level > 0:
                keep = min(keep, kept_nodes[level - 1] >> 1)
            blocks = min(keep >> BLOCK_SHIFT, sums)
            vouched_partial = self._vouched_partial(level, blocks, keep, vouched.get(level))
            if vouched_partial is None:
                unvouched.append(level)
                vouched_partial = b""
            partials.append(vouched_partial)
            kept_nodes.append(keep)
            kept_blocks.append(blocks)
        try:
            # Nodes on disk that no CRC vouches for are recomputed and compared
            # before any file is touched, so damaged files are set aside as found.
            for level in unvouched:
                first = kept_blocks[level] << BLOCK_SHIFT
                _, old = self._read_raw(level, first, kept_nodes[level])
                new = self._recompute(
                    level, first, kept_nodes[level], kept_blocks, partials, records
                )
                if new != old:
                    index = first + _first_difference(old, new) // NODE_BYTES
                    problems.append(
                        f"node {index} of {level_file_name(level)} differs from the node "
                        "recomputed from the log"
                    )
                elif len(new) < BLOCK_BYTES:
                    partials[level] = new
            if not problems:
                self._open_levels(kept_blocks, partials)
                self._rebuild(size, records)
            if expected_root is not None and not problems:
                tree_size, root = expected_root
                stored = self.root(tree_size)
                if stored != root:
                    problems.append(
                        f"they give root {stored.hex()} for tree size {tree_size} but the "
                        f"checkpoint record says {root.hex()}"
                    )
        except DamagedNodes as damage:
            problems.append(str(damage))
        if problems:
            aside = self.rebuild_all(size, records)
            logger.warning(
                "Merkle node files in %s were damaged or incomplete (%s); rebuilt them from "
                "the log (%s)",
                self.directory,
                "; ".join(problems),
                aside,
            )

    def _recompute(
        self,
        level: int,
        start: int,
        end: int,
        kept_blocks: list[int],
        partials: list[bytes],
        records: RecordSource,
    ) -> bytes:
        """Nodes `start .. end-1` of `level` from checked blocks, vouched partials and records.

        Used on open before any file is written; reads only what a CRC vouches for.
        """
        sha256 = hashlib.sha256
        if start >= end:
            return b""
        if level == 0:
            return b"".join(sha256(b"\x00" + record).digest() for record in records(start, end))
        below = level - 1
        blocks_end = kept_blocks[below] << BLOCK_SHIFT
        partial_end = blocks_end + len(partials[below]) // NODE_BYTES
        position, stop = 2 * start, 2 * end
        parts = []
        if position < blocks_end:
            parts.append(self._read_checked_raw(below, position, min(stop, blocks_end)))
            position = min(stop, blocks_end)
        if position < min(stop, partial_end):
            at = NODE_BYTES * (position - blocks_end)
            parts.append(partials[below][at : NODE_BYTES * (min(stop, partial_end) - blocks_end)])
            position = min(stop, partial_end)
        parts.append(self._recompute(below, position, stop, kept_blocks, partials, records))
        children = b"".join(parts)
        assert len(children) == NODE_BYTES * (stop - 2 * start)
        return b"".join(
            sha256(b"\x01" + children[at : at + 2 * NODE_BYTES]).digest()
            for at in range(0, len(children), 2 * NODE_BYTES)
        )

    def _read_checked_raw(self, level: int, start: int, end: int) -> bytes:
        """Nodes `start .. end-1` of complete blocks, each checked against its sum (pre-open)."""
        first_block = start >> BLOCK_SHIFT
        last_block = (end - 1) >> BLOCK_SHIFT
        count = last_block - first_block + 1
        _, data = self._read_raw_file(
            level_file_name(level), BLOCK_BYTES * first_block, BLOCK_BYTES * count
        )
        _, sums = self._read_raw_file(
            sum_file_name(level), SUM_BYTES * first_block, SUM_BYTES * count
        )
        for block_index in range(first_block, last_block + 1):
            at = block_index - first_block
            block = data[BLOCK_BYTES * at : BLOCK_BYTES * (at + 1)]
            stored = sums[SUM_BYTES * at : SUM_BYTES * (at + 1)]
            if (
                len(block) != BLOCK_BYTES
                or len(stored) != SUM_BYTES
                or (block_sum(level, block_index, block) != _SUM.unpack(stored)[0])
            ):
                raise DamagedNodes(
                    f"Merkle block {block_index} does not match its CRC-32 in "
                    f"{self.directory / sum_file_name(level)}",
                    file=str(self.directory / level_file_name(level)),
                    byte_offset=BLOCK_BYTES * block_index,
                )
        base = first_block << BLOCK_SHIFT
        return data[NODE_BYTES * (start - base) : NODE_BYTES * (end - base)]

    def rebuild_all(self, size: int, records: RecordSource) -> str:
        """Set the node files aside and recompute the tree of `size` records from the log.

        The old files are kept, for inspection, in `merkle.damaged-<ns>` next
        to `merkle/` (never deleted: they may be the evidence of tampering).
        Returns where the old files went, in words, for the caller's warning.
        """
        self.close()
        if self.read_only:
            self._open_levels([0] * size.bit_length(), [b""] * size.bit_length())
            self._rebuild(size, records)
            return "read-only: the nodes are recomputed in memory, no file was touched"
        kept = "no files were left to keep"
        try:
            if self.directory.is_dir() and any(self.directory.iterdir()):
                aside = self.directory.with_name(f"{self.directory.name}.damaged-{time.time_ns()}")
                self.directory.rename(aside)
                kept = f"the old files are kept in {aside}"
            make_private_dir(self.directory)
            self._open_levels([0] * size.bit_length(), [b""] * size.bit_length())
        except OSError as failure:
            # A full disk (say) leaves no room for new files: keep the nodes in memory
            # for the rest of this session, like a reader; the next open rebuilds them.
            self.close()
            self.read_only = True
            self._open_levels([0] * size.bit_length(), [b""] * size.bit_length())
            self._rebuild(size, records)
            return (
                f"{kept}; new node files could not be made ({failure}), so the nodes are "
                "kept in memory until the log is opened again"
            )
        self._rebuild(size, records)
        assert self.size == size
        return kept

    def _scan_files(self, levels: int) -> tuple[dict[int, int], dict[int, int]]:
        """Nodes in each level file and sums in each sum file; files above `levels` go."""
        node_counts: dict[int, int] = {}
        sum_counts: dict[int, int] = {}
        if not self.directory.is_dir():
            return node_counts, sum_counts
        for entry in self.directory.iterdir():
            match = _LEVEL_NAME.match(entry.name)
            if match is None:
                continue
            level = int(match.group(1))
            if level >= levels:
                if not self.read_only:
                    entry.unlink()
            elif match.group(2) == "bin":
                node_counts[level] = entry.stat().st_size // NODE_BYTES
            else:
                sum_counts[level] = entry.stat().st_size // SUM_BYTES
        return node_counts, sum_counts

    def _vouched_partial(
        self, level: int, blocks: int, keep: int, vouched: tuple[int, int] | None
    ) -> bytes | None:
        """Nodes `blocks·128 .. keep-1` from disk if a CRC vouches for them, else None.

        Either the block holding them was completed and has its sum, or
        tails.bin vouched for a prefix of that block at least as long.
        """
        start = blocks << BLOCK_SHIFT
        assert start <= keep
        if keep == start:
            return b""
        if keep - start >= BLOCK_NODES:
            return None  # whole blocks without sums: recomputed
        wanted = NODE_BYTES * (keep - start)
        _, sum_bytes = self._read_raw_file(sum_file_name(level), SUM_BYTES * blocks, SUM_BYTES)
        _, block = self._read_raw_file(level_file_name(level), BLOCK_BYTES * blocks, BLOCK_BYTES)
        if (
            len(sum_bytes) == SUM_BYTES
            and len(block) == BLOCK_BYTES
            and block_sum(level, blocks, block) == _SUM.unpack(sum_bytes)[0]
        ):
            return block[:wanted]
        if vouched is not None:
            count, crc = vouched
            if keep <= count < start + BLOCK_NODES:
                written = block[: NODE_BYTES * (count - start)]
                if (
                    len(written) == NODE_BYTES * (count - start)
                    and tail_sum(level, count, written) == crc
                ):
                    return written[:wanted]
        return None

    def _read_tails(self) -> dict[int, tuple[int, int]]:
        """`{level: (node count, tail_sum)}` from tails.bin; empty if missing or torn."""
        try:
            data = (self.directory / TAILS_FILE).read_bytes()
        except FileNotFoundError:
            return {}
        if len(data) < _TAILS_HEADER.size + SUM_BYTES:
            return {}
        magic, version, levels = _TAILS_HEADER.unpack_from(data)
        body = _TAILS_HEADER.size + levels * _TAILS_ENTRY.size
        if (
            magic != _TAILS_MAGIC
            or version != _TAILS_VERSION
            or len(data) != body + SUM_BYTES
            or zlib.crc32(data[:body]) != _SUM.unpack_from(data, body)[0]
        ):
            return {}
        return {
            level: _TAILS_ENTRY.unpack_from(data, _TAILS_HEADER.size + level * _TAILS_ENTRY.size)
            for level in range(levels)
        }

    def _write_tails(self) -> None:
        """Vouch for each level's partial last block as written (checked by the next open)."""
        body = bytearray(_TAILS_HEADER.pack(_TAILS_MAGIC, _TAILS_VERSION, len(self._tails)))
        for level, tail in enumerate(self._tails):
            assert self._tail_written[level] == len(tail)
            body += _TAILS_ENTRY.pack(self.count(level), tail_sum(level, self.count(level), tail))
        body += _SUM.pack(zlib.crc32(body))
        # A write cut short leaves a tails.bin whose CRC fails: it then vouches for nothing.
        try:
            pwrite_all(self._tails_fd, body, 0)
            OS.ftruncate(self._tails_fd, len(body))
        except OSError as failure:
            if failure.filename is None:
                failure.filename = str(self.directory / TAILS_FILE)
            raise

    def _read_raw(self, level: int, first: int, end: int) -> tuple[int, bytes]:
        """`(first, bytes)` of the nodes `first .. end-1` on disk, unchecked (for comparison)."""
        if end <= first:
            return first, b""
        _, data = self._read_raw_file(
            level_file_name(level), NODE_BYTES * first, NODE_BYTES * (end - first)
        )
        return first, data

    def _read_raw_file(self, name: str, position: int, length: int) -> tuple[int, bytes]:
        """Up to `length` bytes of `name` at `position`, before the files are opened."""
        try:
            with (self.directory / name).open("rb") as raw:
                raw.seek(position)
                return position, raw.read(length)
        except FileNotFoundError:
            return position, b""

    def _open_levels(
        self, kept_blocks: list[int], partials: list[bytes], first_level: int = 0
    ) -> None:
        """Open levels `first_level ..` keeping `kept_blocks[i]` blocks and `partials[i]` after."""
        assert first_level == len(self._fds) and len(kept_blocks) == len(partials)
        if self._tails_fd < 0 and not self.read_only:
            self._tails_fd = open_private(self.directory / TAILS_FILE, os.O_RDWR | os.O_CREAT)
        for level, (blocks, partial) in enumerate(
            zip(kept_blocks, partials, strict=True), first_level
        ):
            fd = self._open_file(level_file_name(level), blocks * BLOCK_BYTES + len(partial))
            try:
                sum_fd = self._open_file(sum_file_name(level), blocks * SUM_BYTES)
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                raise
            sums = pread_exact(sum_fd, blocks * SUM_BYTES, 0) if blocks else b""
            assert len(sums) == blocks * SUM_BYTES and len(partial) < BLOCK_BYTES
            self._fds.append(fd)
            self._sum_fds.append(sum_fd)
            self._blocks.append(blocks)
            self._sums.append(bytearray(sums))
            self._checked.append(bytearray(blocks))
            self._tails.append(bytearray(partial))
            self._tail_written.append(len(partial))

    def _open_file(self, name: str, length: int) -> int:
        if self.read_only:
            # Only the first `length` bytes are ever read; a missing file holds none.
            try:
                return os.open(self.directory / name, os.O_RDONLY)
            except FileNotFoundError:
                assert length == 0
                return -1
        fd = open_private(self.directory / name, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        if os.fstat(fd).st_size != length:
            OS.ftruncate(fd, length)
        return fd

    def _rebuild(self, size: int, records: RecordSource) -> None:
        """Recompute every node the files lack, level by level, then the frontier."""
        sha256 = hashlib.sha256
        if self._tails and self.count(0) < size:
            leaves = self._tails[0]
            for record in records(self.count(0), size):
                leaves += sha256(b"\x00" + record).digest()
                if len(leaves) - self._tail_written[0] >= _FLUSH_BYTES:
                    self._flush_or_keep(0)
        for level in range(1, len(self._tails)):
            start = self.count(level)
            end = size >> level
            parents = self._tails[level]
            while start < end:
                stop = min(end, start + _REBUILD_CHUNK_NODES)
                children = self._read_nodes(level - 1, 2 * start, 2 * (stop - start))
                for position in range(0, len(children), 2 * NODE_BYTES):
                    parents += sha256(
                        b"\x01" + children[position : position + 2 * NODE_BYTES]
                    ).digest()
                if len(parents) - self._tail_written[level] >= _FLUSH_BYTES:
                    self._flush_or_keep(level)
                start = stop
        self.size = size
        for level in range(len(self._tails)):
            count = size >> level
            assert self.count(level) == count
            if count & 1:
                self._left[level] = self.node(level, count - 1)
        self._flush_or_keep(None)

    def _flush_or_keep(self, level: int | None) -> None:
        """Flush `level` (None: all); if the disk refuses, keep the nodes in memory.

        Open and rebuilds recompute nodes from the log: they are right whether
        or not they reach the disk now, and the next flush writes them.
        """
        try:
            if level is None:
                self.flush()
            else:
                self._flush_level(level)
        except OSError as failure:
            if self.unwritten is None:
                logger.warning(
                    "Merkle nodes in %s stay in memory: %s; written at the next flush",
                    self.directory,
                    failure,
                )
            self.unwritten = failure

    # ---------------------------------------------------------------- append

    def count(self, level: int) -> int:
        """Nodes level `level` holds (on disk and in memory)."""
        return (self._blocks[level] << BLOCK_SHIFT) + len(self._tails[level]) // NODE_BYTES

    def extend(self, records: list[bytes]) -> None:
        """Add the leaves of `records` (canonical record bytes) in order."""
        sha256 = hashlib.sha256
        tails = self._tails
        left = self._left
        size = self.size
        for record in records:
            node = sha256(b"\x00" + record).digest()
            if not tails:
                self._add_level()
            tails[0] += node
            index = size
            level = 0
            while index & 1:
                node = sha256(b"\x01" + left[level] + node).digest()
                level += 1
                if level == len(tails):
                    self._add_level()
                tails[level] += node
                index >>= 1
            left[level] = node
            size += 1
        self.size = size

    def _add_level(self) -> None:
        level = len(self._tails)
        assert level < _LEVELS_MAX
        # A level a crash left behind from a longer log must not keep stale nodes.
        self._open_levels([0], [b""], first_level=level)

    def buffered_bytes(self) -> int:
        """Leaf bytes not yet written to the level-0 file."""
        return len(self._tails[0]) - self._tail_written[0] if self._tails else 0

    def flush(self) -> None:
        """Write unwritten nodes, and the sums of completed blocks, to the files (no fsync).

        Raises OSError if a file cannot be written; every node stays in
        memory then, and the next flush cuts back what the failed one left in
        the files and writes them again.
        """
        for level in range(len(self._tails)):
            if len(self._tails[level]) > self._tail_written[level] or level in self._unsure:
                self._flush_level(level)
        if self._tails_fd >= 0:
            self._write_tails()
        self.unwritten = None

    def _flush_level(self, level: int) -> None:
        if self.read_only:
            return  # nodes stay in memory, after the blocks that are on disk
        tail = self._tails[level]
        written = self._tail_written[level]
        first = self._blocks[level]
        assert len(tail) % NODE_BYTES == 0 and written <= len(tail)
        if level in self._unsure:
            OS.ftruncate(self._fds[level], first * BLOCK_BYTES + written)
            OS.ftruncate(self._sum_fds[level], first * SUM_BYTES)
            self._unsure.discard(level)
        complete = len(tail) // BLOCK_BYTES
        sums = b"".join(
            _SUM.pack(block_sum(level, first + i, tail[i * BLOCK_BYTES : (i + 1) * BLOCK_BYTES]))
            for i in range(complete)
        )
        name = level_file_name(level)
        try:
            write_all(self._fds[level], tail[written:])
            if complete:
                name = sum_file_name(level)
                write_all(self._sum_fds[level], sums)
        except BaseException as failure:
            self._unsure.add(level)
            if isinstance(failure, OSError) and failure.filename is None:
                failure.filename = str(self.directory / name)
            raise
        if complete:
            self._sums[level] += sums
            # Written, not yet read back: the first read checks them like any other block.
            self._checked[level] += bytes(complete)
            self._blocks[level] = first + complete
            del tail[: complete * BLOCK_BYTES]
        self._tail_written[level] = len(tail)

    def mark(self) -> tuple[int, list[bytes]]:
        """A point `rollback` returns to: the tree as it is now (before more `extend`s)."""
        return self.size, self._left.copy()

    def rollback(self, mark: tuple[int, list[bytes]]) -> None:
        """Forget the leaves added since `mark` (their records were cut back).

        Nothing added since was flushed: the log flushes nodes only for records
        it keeps (after their fsync), so the dropped nodes are all in memory.
        """
        size, left = mark
        for level, tail in enumerate(self._tails):
            keep_bytes = NODE_BYTES * ((size >> level) - (self._blocks[level] << BLOCK_SHIFT))
            assert self._tail_written[level] <= keep_bytes <= len(tail), (level, keep_bytes)
            del tail[keep_bytes:]
        self._left[:] = left
        self.size = size

    def fsync(self) -> None:
        if self.read_only:
            return
        for fd in self._fds:
            OS.fsync(fd)
        for fd in self._sum_fds:
            OS.fsync(fd)
        if self._tails_fd >= 0:
            OS.fsync(self._tails_fd)

    def close(self) -> None:
        """Close the files; unwritten nodes are dropped (callers flush first when clean)."""
        for fd in self._fds + self._sum_fds:
            if fd >= 0:
                os.close(fd)
        if self._tails_fd >= 0:
            os.close(self._tails_fd)
            self._tails_fd = -1
        self._fds = []
        self._sum_fds = []
        self._blocks = []
        self._sums = []
        self._checked = []
        self._tails = []
        self._tail_written = []
        self._unsure.clear()

    # ------------------------------------------------------------------ read

    def _check_block(self, level: int, block_index: int, block: bytes) -> None:
        """Raise DamagedNodes unless `block` is the complete block its sum describes."""
        at = SUM_BYTES * block_index
        (expected,) = _SUM.unpack_from(self._sums[level], at)
        if len(block) != BLOCK_BYTES:
            problem = f"block {block_index} is cut short at {len(block)} of {BLOCK_BYTES} bytes"
        elif block_sum(level, block_index, block) != expected:
            problem = (
                f"block {block_index} does not match its CRC-32 in "
                f"{self.directory / sum_file_name(level)}"
            )
        else:
            self._checked[level][block_index] = 1
            return
        raise DamagedNodes(
            f"Merkle {problem}",
            file=str(self.directory / level_file_name(level)),
            byte_offset=BLOCK_BYTES * block_index,
        )

    def node(self, level: int, index: int) -> bytes:
        blocks = self._blocks[level]
        block_index = index >> BLOCK_SHIFT
        if block_index < blocks:
            if not self._checked[level][block_index]:
                block = pread_exact(self._fds[level], BLOCK_BYTES, BLOCK_BYTES * block_index)
                self._check_block(level, block_index, block)
                at = NODE_BYTES * (index & (BLOCK_NODES - 1))
                return block[at : at + NODE_BYTES]
            node = pread_exact(self._fds[level], NODE_BYTES, NODE_BYTES * index)
        else:
            at = NODE_BYTES * (index - (blocks << BLOCK_SHIFT))
            node = bytes(self._tails[level][at : at + NODE_BYTES])
        if len(node) != NODE_BYTES:
            raise DamagedNodes(
                f"Merkle node {index} of level {level} is missing",
                file=str(self.directory / level_file_name(level)),
                byte_offset=NODE_BYTES * index,
            )
        return node

    def _read_nodes(self, level: int, start: int, count: int, *, recheck: bool = False) -> bytes:
        """Nodes `start .. start+count-1` of `level`, each block checked (short past the end)."""
        end = start + count
        blocks = self._blocks[level]
        disk_end = min(end, blocks << BLOCK_SHIFT)
        parts = []
        if start < disk_end:
            first_block = start >> BLOCK_SHIFT
            last_block = (disk_end - 1) >> BLOCK_SHIFT
            data = pread_exact(
                self._fds[level],
                BLOCK_BYTES * (last_block - first_block + 1),
                BLOCK_BYTES * first_block,
            )
            checked = self._checked[level]
            for block_index in range(first_block, last_block + 1):
                if recheck or not checked[block_index]:
                    at = BLOCK_BYTES * (block_index - first_block)
                    self._check_block(level, block_index, data[at : at + BLOCK_BYTES])
            base = first_block << BLOCK_SHIFT
            parts.append(data[NODE_BYTES * (start - base) : NODE_BYTES * (disk_end - base)])
            start = disk_end
        if start < end:
            at = NODE_BYTES * (start - (blocks << BLOCK_SHIFT))
            parts.append(bytes(self._tails[level][at : at + NODE_BYTES * (end - start)]))
        return b"".join(parts)

    def nodes(self, level: int, start: int, count: int) -> bytes:
        """Stored nodes `start .. start+count-1` of `level`, checked (short past the end)."""
        if level >= len(self._tails):
            return b""
        return self._read_nodes(level, start, count)

    def node_file(self, level: int) -> str:
        return str(self.directory / level_file_name(level))

    def check_all_blocks(self) -> None:
        """Check every complete block against its CRC again, even those read since open.

        Together with the log's verify, which compares every leaf and parent
        it recomputes with the stored nodes, this checks every stored byte.
        """
        for level in range(len(self._tails)):
            blocks = self._blocks[level]
            for first in range(0, blocks, _REBUILD_CHUNK_NODES >> BLOCK_SHIFT):
                last = min(blocks, first + (_REBUILD_CHUNK_NODES >> BLOCK_SHIFT))
                self._read_nodes(
                    level, first << BLOCK_SHIFT, (last - first) << BLOCK_SHIFT, recheck=True
                )

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range the RFC 9162 recursion produces (start aligned)."""
        assert 0 <= start <= end <= self.size
        if start == end:
            return EMPTY_TREE_ROOT
        nodes = []
        position = start
        remaining = end - start
        while remaining:
            level = remaining.bit_length() - 1
            assert position % (1 << level) == 0
            nodes.append(self.node(level, position >> level))
            position += 1 << level
            remaining -= 1 << level
        sha256 = hashlib.sha256
        accumulated = nodes.pop()
        while nodes:
            accumulated = sha256(b"\x01" + nodes.pop() + accumulated).digest()
        return accumulated

    def root(self, tree_size: int) -> bytes:
        if tree_size == self.size:
            return self.current_root()
        return self.range_hash(0, tree_size)

    def current_root(self) -> bytes:
        """MTH of all leaves, folded from the in-memory frontier (no reads)."""
        size = self.size
        if size == 0:
            return EMPTY_TREE_ROOT
        sha256 = hashlib.sha256
        left = self._left
        accumulated = b""
        for level in range(size.bit_length()):
            if (size >> level) & 1:
                if accumulated:
                    accumulated = sha256(b"\x01" + left[level] + accumulated).digest()
                else:
                    accumulated = left[level]
        return accumulated

    def inclusion_path(self, leaf_index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(m, D[n]), leaf side first."""
        assert 0 <= leaf_index < tree_size <= self.size
        siblings = []
        start = 0
        size = tree_size
        index = leaf_index
        while size > 1:
            k = largest_power_of_two_below(size)
            if index < k:
                siblings.append(self.range_hash(start + k, start + size))
                size = k
            else:
                siblings.append(self.range_hash(start, start + k))
                start += k
                index -= k
                size -= k
        siblings.reverse()
        return siblings

    def consistency_path(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
        assert 0 < old_size <= new_size <= self.size
        siblings = []
        start = 0
        size = new_size
        m = old_size
        whole = True
        while m != size:
            k = largest_power_of_two_below(size)
            if m <= k:
                siblings.append(self.range_hash(start + k, start + size))
                size = k
            else:
                siblings.append(self.range_hash(start, start + k))
                start += k
                m -= k
                size -= k
                whole = False
        if not whole:
            siblings.append(self.range_hash(start, start + size))
        siblings.reverse()
        return siblings


def _first_difference(old: bytes, new: bytes) -> int:
    """Byte position of the first difference (the shorter length if one is a prefix)."""
    for position, (a, b) in enumerate(zip(old, new, strict=False)):
        if a != b:
            return position
    return min(len(old), len(new))
