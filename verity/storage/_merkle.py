"""Stored RFC 9162 Merkle nodes (docs/formats.md §2, §4.3).

`merkle/level-LL.bin` holds node `k` of level `L`, `MTH(D[k·2^L : (k+1)·2^L])`,
32 bytes at byte `32·k`. Appends extend the tree incrementally (one leaf hash
and, on average, one parent hash per record); new nodes are buffered in memory
and written at flush points. Any subtree hash the RFC recursion asks for is a
fold of at most `log2 n` stored nodes, so proofs at any tree size read
O(log n) nodes for an inclusion proof and O(log² n) at most for a consistency
proof, without touching the log.

The files are derived data. `load` reconciles them with the log on open:
nodes past the log's end are cut, nodes the log gained since the last flush
are recomputed, and files that fall short of what a clean shutdown or a
sealed segment guarantees are rebuilt from the log with one warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from verity.errors import CorruptionError
from verity.storage._frame import EMPTY_TREE_ROOT, pread_exact, write_all

__all__ = ["MerkleStore", "largest_power_of_two_below", "level_file_name"]

logger = logging.getLogger("verity.storage")

NODE_BYTES: Final = 32
_LEVEL_NAME: Final = re.compile(r"^level-(\d{2})\.bin$")
_REBUILD_CHUNK_NODES: Final = 1 << 15
_FLUSH_BYTES: Final = 1 << 20
_LEVELS_MAX: Final = 64

RecordSource = Callable[[int, int], Iterable[bytes]]


def level_file_name(level: int) -> str:
    return f"level-{level:02d}.bin"


def largest_power_of_two_below(size: int) -> int:
    """The largest power of two strictly less than `size` (RFC 9162 `k`); size >= 2."""
    assert size >= 2
    return 1 << ((size - 1).bit_length() - 1)


class MerkleStore:
    """The Merkle node files of one log, with the unflushed tail in memory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fds: list[int] = []
        self._on_disk: list[int] = []
        self._buffers: list[bytearray] = []
        # _left[L] is the last node of level L while that level has an odd count:
        # the left sibling its next node will be combined with.
        self._left: list[bytes] = [b""] * _LEVELS_MAX
        self.size = 0

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
        shortfall there is damage and is rebuilt with a warning. Nodes above
        it are recomputed from `records(lo, hi)` (record bytes in offset
        order). `expected_root` is `(c, root)` of the last checkpoint record;
        if the stored nodes disagree with it they are all rebuilt.
        """
        assert 0 <= trusted_through <= size
        self.directory.mkdir(exist_ok=True)
        levels = size.bit_length()
        disk_nodes: dict[int, int] = {}
        for entry in self.directory.iterdir():
            match = _LEVEL_NAME.match(entry.name)
            if match is None:
                continue
            level = int(match.group(1))
            if level >= levels:
                entry.unlink()
            else:
                disk_nodes[level] = entry.stat().st_size // NODE_BYTES
        shortfalls = []
        counts: list[int] = []
        for level in range(levels):
            on_disk = disk_nodes.get(level, 0)
            if on_disk < trusted_through >> level:
                shortfalls.append(
                    f"{level_file_name(level)} holds {on_disk} of {trusted_through >> level} nodes"
                )
            count = min(on_disk, trusted_through >> level)
            if level > 0:
                count = min(count, counts[level - 1] >> 1)
            counts.append(count)
        warned = False
        if shortfalls:
            logger.warning(
                "Merkle node files in %s are incomplete (%s); rebuilding them from the log",
                self.directory,
                "; ".join(shortfalls),
            )
            warned = True
        self._open_levels(counts)
        self._rebuild(size, records)
        if expected_root is None:
            return
        tree_size, root = expected_root
        stored = self.root(tree_size)
        if stored == root:
            return
        if not warned:
            logger.warning(
                "Merkle node files in %s give root %s for tree size %d but the checkpoint "
                "record says %s; rebuilding them from the log",
                self.directory,
                stored.hex(),
                tree_size,
                root.hex(),
            )
        self.close()
        self._open_levels([0] * levels)
        self._rebuild(size, records)

    def _open_levels(self, counts: list[int]) -> None:
        for level, count in enumerate(counts):
            fd = os.open(
                self.directory / level_file_name(level), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644
            )
            if os.fstat(fd).st_size != count * NODE_BYTES:
                os.ftruncate(fd, count * NODE_BYTES)
            self._fds.append(fd)
            self._on_disk.append(count)
            self._buffers.append(bytearray())

    def _rebuild(self, size: int, records: RecordSource) -> None:
        """Recompute every node the files lack, level by level, then the frontier."""
        sha256 = hashlib.sha256
        leaves = self._buffers[0] if self._buffers else bytearray()
        if self._buffers and self._on_disk[0] < size:
            for record in records(self._on_disk[0], size):
                leaves += sha256(b"\x00" + record).digest()
                if len(leaves) >= _FLUSH_BYTES:
                    self._flush_level(0)
        for level in range(1, len(self._buffers)):
            start = self._on_disk[level] + len(self._buffers[level]) // NODE_BYTES
            end = size >> level
            while start < end:
                stop = min(end, start + _REBUILD_CHUNK_NODES)
                children = self._read_nodes(level - 1, 2 * start, 2 * (stop - start))
                parents = self._buffers[level]
                for position in range(0, len(children), 2 * NODE_BYTES):
                    parents += sha256(
                        b"\x01" + children[position : position + 2 * NODE_BYTES]
                    ).digest()
                if len(parents) >= _FLUSH_BYTES:
                    self._flush_level(level)
                start = stop
        self.size = size
        for level in range(len(self._buffers)):
            count = size >> level
            if count & 1:
                self._left[level] = self.node(level, count - 1)
        self.flush()

    # ---------------------------------------------------------------- append

    def extend(self, records: list[bytes]) -> None:
        """Add the leaves of `records` (canonical record bytes) in order."""
        sha256 = hashlib.sha256
        buffers = self._buffers
        left = self._left
        size = self.size
        for record in records:
            node = sha256(b"\x00" + record).digest()
            if not buffers:
                self._add_level()
            buffers[0] += node
            index = size
            level = 0
            while index & 1:
                node = sha256(b"\x01" + left[level] + node).digest()
                level += 1
                if level == len(buffers):
                    self._add_level()
                buffers[level] += node
                index >>= 1
            left[level] = node
            size += 1
        self.size = size

    def _add_level(self) -> None:
        level = len(self._buffers)
        assert level < _LEVELS_MAX
        fd = os.open(
            self.directory / level_file_name(level), os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644
        )
        # A level a crash left behind from a longer log must not keep stale nodes.
        os.ftruncate(fd, 0)
        self._fds.append(fd)
        self._on_disk.append(0)
        self._buffers.append(bytearray())

    def buffered_bytes(self) -> int:
        return len(self._buffers[0]) if self._buffers else 0

    def flush(self) -> None:
        """Write buffered nodes to the level files (no fsync)."""
        for level in range(len(self._buffers)):
            if self._buffers[level]:
                self._flush_level(level)

    def _flush_level(self, level: int) -> None:
        buffer = self._buffers[level]
        write_all(self._fds[level], buffer)
        self._on_disk[level] += len(buffer) // NODE_BYTES
        buffer.clear()

    def fsync(self) -> None:
        for fd in self._fds:
            os.fsync(fd)

    def close(self) -> None:
        """Close the files; unflushed nodes are dropped (callers flush first when clean)."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        self._on_disk = []
        self._buffers = []

    # ------------------------------------------------------------------ read

    def node(self, level: int, index: int) -> bytes:
        on_disk = self._on_disk[level]
        if index >= on_disk:
            start = NODE_BYTES * (index - on_disk)
            node = bytes(self._buffers[level][start : start + NODE_BYTES])
        else:
            node = pread_exact(self._fds[level], NODE_BYTES, NODE_BYTES * index)
        if len(node) != NODE_BYTES:
            raise CorruptionError(
                f"Merkle node {index} of level {level} is missing",
                file=str(self.directory / level_file_name(level)),
                byte_offset=NODE_BYTES * index,
            )
        return node

    def _read_nodes(self, level: int, start: int, count: int) -> bytes:
        on_disk = self._on_disk[level]
        parts = []
        if start < on_disk:
            from_disk = min(count, on_disk - start)
            parts.append(pread_exact(self._fds[level], NODE_BYTES * from_disk, NODE_BYTES * start))
            start += from_disk
            count -= from_disk
        if count:
            first = NODE_BYTES * (start - on_disk)
            parts.append(bytes(self._buffers[level][first : first + NODE_BYTES * count]))
        return b"".join(parts)

    def leaves(self, start: int, count: int) -> bytes:
        """Stored leaf hashes `start .. start+count-1`, concatenated (short if the file is)."""
        return self._read_nodes(0, start, count)

    def leaf_file(self) -> str:
        return str(self.directory / level_file_name(0))

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
