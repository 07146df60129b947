"""Byte layout of the projection store's page file (format version 1).

The file `pages.vstore` is a sequence of 4,096-byte pages. All integers are
unsigned big-endian. Every page starts with a CRC-32 (`zlib.crc32` of bytes
4..4096 of the page, XOR the page number), so a page that rots, or a page
written to the wrong place, fails its check. Byte 4 is the page kind:

- pages 0..3, kind 1 (superblock): four copies of the root of everything
  (sequence number, page count, catalog root, free-list head and count, the
  applied log position and hash); the newest copy whose CRC holds wins;
- kind 2 (leaf) and kind 3 (branch): B+tree nodes, described at
  `encode_leaf` and `encode_branch`;
- kind 4 (overflow): a chain of pages holding one value too large for a leaf;
- kind 5 (free list): a chain of pages listing the free page numbers.

Page number 0 is a superblock, never a node, so 0 doubles as "no page".
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final, final

from verity.errors import CorruptionError

__all__ = [
    "BRANCH_HEADER",
    "ENTRY_BYTES_MAX",
    "FORMAT_VERSION",
    "FREELIST_ENTRIES_MAX",
    "KIND_BRANCH",
    "KIND_FREELIST",
    "KIND_LEAF",
    "KIND_OVERFLOW",
    "KIND_SUPERBLOCK",
    "NODE_CONTENT_BYTES",
    "NODE_HEADER_BYTES",
    "OVERFLOW_DATA_BYTES",
    "PAGE_BYTES",
    "SUPERBLOCK_COPIES",
    "Superblock",
    "decode_branch",
    "decode_freelist",
    "decode_leaf",
    "decode_overflow",
    "decode_superblock",
    "encode_branch",
    "encode_freelist",
    "encode_leaf",
    "encode_overflow",
    "encode_superblock",
    "page_checksum",
    "page_kind",
]

PAGE_BYTES: Final = 4096
FORMAT_VERSION: Final = 1
SUPERBLOCK_COPIES: Final = 4

KIND_SUPERBLOCK: Final = 1
KIND_LEAF: Final = 2
KIND_BRANCH: Final = 3
KIND_OVERFLOW: Final = 4
KIND_FREELIST: Final = 5

# Node header: crc u32, kind u8, flags u8 (0), entry count u16.
NODE_HEADER: Final = struct.Struct(">IBBH")
NODE_HEADER_BYTES: Final = NODE_HEADER.size
BRANCH_HEADER: Final = NODE_HEADER
NODE_CONTENT_BYTES: Final = PAGE_BYTES - NODE_HEADER_BYTES
# An entry no larger than half a node's content guarantees that any overfull
# node splits into two halves that each fit a page.
ENTRY_BYTES_MAX: Final = NODE_CONTENT_BYTES // 2

# Chain pages (overflow, free list): crc u32, kind u8, flags u8, used u16, next page u32.
_CHAIN_HEADER: Final = struct.Struct(">IBBHI")
OVERFLOW_DATA_BYTES: Final = PAGE_BYTES - _CHAIN_HEADER.size
FREELIST_ENTRIES_MAX: Final = (PAGE_BYTES - _CHAIN_HEADER.size) // 4

_MAGIC: Final = b"VERITYST"
# crc, kind, version, pad, magic, sequence, page_count, catalog_root, freelist_head,
# free_count, has_applied, hash_len, pad, applied_position, applied_hash (64), page_bytes.
_SUPERBLOCK: Final = struct.Struct(">IBBH8sQIIIIBBHQ64sI")
LOG_HASH_BYTES_MAX: Final = 64

_CRC: Final = struct.Struct(">I")
_U16_STRUCTS: dict[int, struct.Struct] = {}
_U32_STRUCTS: dict[int, struct.Struct] = {}


def _u16s(count: int) -> struct.Struct:
    found = _U16_STRUCTS.get(count)
    if found is None:
        found = _U16_STRUCTS[count] = struct.Struct(f">{count}H")
    return found


def _u32s(count: int) -> struct.Struct:
    found = _U32_STRUCTS.get(count)
    if found is None:
        found = _U32_STRUCTS[count] = struct.Struct(f">{count}I")
    return found


_FIELD_FORMATS: Final = tuple(f"{size}s" for size in range(PAGE_BYTES + 1))
_LAYOUTS: dict[tuple[int, ...], struct.Struct] = {}
# Pages of fixed-width keys and values share layouts; a few hundred cover them.
_LAYOUTS_MAX: Final = 256


def _layout(lengths: tuple[int, ...]) -> struct.Struct:
    """A Struct that slices consecutive fields of `lengths` bytes in one call: decoding a
    node this way is several times faster than slicing in a Python loop."""
    layout = _LAYOUTS.get(lengths)
    if layout is None:
        if len(_LAYOUTS) >= _LAYOUTS_MAX:
            _LAYOUTS.clear()
        fields = "".join(map(_FIELD_FORMATS.__getitem__, lengths))
        layout = _LAYOUTS[lengths] = struct.Struct(">" + fields)
    return layout


def page_checksum(page: bytes | bytearray | memoryview, page_number: int) -> int:
    """CRC-32 of bytes 4.. of `page`, XOR the page number (catches misplaced writes)."""
    return zlib.crc32(memoryview(page)[4:]) ^ page_number


def page_kind(page: bytes) -> int:
    return page[4]


def _seal(body: bytes, page_number: int) -> bytes:
    """Pad `body` (the page without its CRC) to a page and prepend the CRC."""
    assert len(body) <= PAGE_BYTES - 4, len(body)
    padded = body + bytes(PAGE_BYTES - 4 - len(body))
    crc = (zlib.crc32(padded) ^ page_number) & 0xFFFFFFFF
    return _CRC.pack(crc) + padded


def _bad(page_number: int, reason: str, file: str) -> CorruptionError:
    return CorruptionError(
        f"page {page_number}: {reason}", file=file, byte_offset=page_number * PAGE_BYTES
    )


def encode_leaf(page_number: int, keys: list[bytes], values: list[bytes]) -> bytes:
    """A leaf: header, n key lengths (u16), n value lengths (u16), the keys, the values."""
    count = len(keys)
    lengths = _u16s(2 * count).pack(*map(len, keys), *map(len, values))
    head = NODE_HEADER.pack(0, KIND_LEAF, 0, count)[4:]
    return _seal(b"".join([head, lengths, *keys, *values]), page_number)


def decode_leaf(page: bytes, page_number: int, file: str) -> tuple[list[bytes], list[bytes], int]:
    """(keys, values, content bytes) of a leaf page."""
    count = NODE_HEADER.unpack_from(page)[3]
    start = NODE_HEADER_BYTES + 4 * count
    if start > PAGE_BYTES:
        raise _bad(page_number, f"leaf entry count {count} does not fit a page", file)
    lengths = _u16s(2 * count).unpack_from(page, NODE_HEADER_BYTES)
    end = start + sum(lengths)
    if end > PAGE_BYTES:
        raise _bad(page_number, f"leaf entries end at byte {end}", file)
    fields = _layout(lengths).unpack_from(page, start)
    return list(fields[:count]), list(fields[count:]), end - NODE_HEADER_BYTES


def encode_branch(page_number: int, keys: list[bytes], children: list[int]) -> bytes:
    """A branch: header, n+1 child pages (u32), n separator lengths (u16), the separators."""
    count = len(keys)
    assert len(children) == count + 1, (count, len(children))
    head = NODE_HEADER.pack(0, KIND_BRANCH, 0, count)[4:]
    pointers = _u32s(count + 1).pack(*children)
    lengths = _u16s(count).pack(*map(len, keys))
    return _seal(b"".join([head, pointers, lengths, *keys]), page_number)


def decode_branch(page: bytes, page_number: int, file: str) -> tuple[list[bytes], list[int], int]:
    """(separators, children, content bytes) of a branch page."""
    count = NODE_HEADER.unpack_from(page)[3]
    lengths_at = NODE_HEADER_BYTES + 4 * (count + 1)
    start = lengths_at + 2 * count
    if start > PAGE_BYTES:
        raise _bad(page_number, f"branch key count {count} does not fit a page", file)
    children = list(_u32s(count + 1).unpack_from(page, NODE_HEADER_BYTES))
    lengths = _u16s(count).unpack_from(page, lengths_at)
    end = start + sum(lengths)
    if end > PAGE_BYTES:
        raise _bad(page_number, f"branch keys end at byte {end}", file)
    keys = list(_layout(lengths).unpack_from(page, start))
    return keys, children, end - NODE_HEADER_BYTES


def encode_overflow(page_number: int, data: bytes, next_page: int) -> bytes:
    assert len(data) <= OVERFLOW_DATA_BYTES, len(data)
    head = _CHAIN_HEADER.pack(0, KIND_OVERFLOW, 0, len(data), next_page)[4:]
    return _seal(head + data, page_number)


def decode_overflow(page: bytes, page_number: int, file: str) -> tuple[bytes, int]:
    """The data of one overflow page and the next page of the chain (0: the last)."""
    _, _, _, used, next_page = _CHAIN_HEADER.unpack_from(page)
    if used > OVERFLOW_DATA_BYTES:
        raise _bad(page_number, f"overflow page claims {used} bytes", file)
    return page[_CHAIN_HEADER.size : _CHAIN_HEADER.size + used], next_page


def encode_freelist(page_number: int, free_pages: list[int], next_page: int) -> bytes:
    count = len(free_pages)
    assert count <= FREELIST_ENTRIES_MAX, count
    head = _CHAIN_HEADER.pack(0, KIND_FREELIST, 0, count, next_page)[4:]
    return _seal(head + _u32s(count).pack(*free_pages), page_number)


def decode_freelist(page: bytes, page_number: int, file: str) -> tuple[list[int], int]:
    _, _, _, count, next_page = _CHAIN_HEADER.unpack_from(page)
    if count > FREELIST_ENTRIES_MAX:
        raise _bad(page_number, f"free-list page claims {count} entries", file)
    return list(_u32s(count).unpack_from(page, _CHAIN_HEADER.size)), next_page


@final
@dataclass(frozen=True, slots=True)
class Superblock:
    """The root of one durable state of the store."""

    sequence: int
    """Incremented by every commit; the newest valid copy wins."""
    page_count: int
    """Pages in use by this state, superblocks included (the file may be longer)."""
    catalog_root: int
    """Root page of the catalog tree (tree name -> root page); 0 when there are no trees."""
    freelist_head: int
    """First page of the free-list chain; 0 when no page is free."""
    free_count: int
    """How many page numbers the free-list chain lists."""
    applied: tuple[int, bytes] | None
    """(log position, log hash) of the last batch this state includes."""


def encode_superblock(copy: int, superblock: Superblock) -> bytes:
    assert 0 <= copy < SUPERBLOCK_COPIES, copy
    applied = superblock.applied
    position, log_hash = applied if applied is not None else (0, b"")
    assert len(log_hash) <= LOG_HASH_BYTES_MAX, len(log_hash)
    packed = _SUPERBLOCK.pack(
        0,
        KIND_SUPERBLOCK,
        FORMAT_VERSION,
        0,
        _MAGIC,
        superblock.sequence,
        superblock.page_count,
        superblock.catalog_root,
        superblock.freelist_head,
        superblock.free_count,
        1 if applied is not None else 0,
        len(log_hash),
        0,
        position,
        log_hash.ljust(LOG_HASH_BYTES_MAX, b"\0"),
        PAGE_BYTES,
    )
    return _seal(packed[4:], copy)


def decode_superblock(page: bytes, copy: int) -> Superblock | str:
    """The superblock in `page` (copy number `copy`), or why it is not a valid one."""
    if len(page) != PAGE_BYTES:
        return f"short page ({len(page)} bytes)"
    (stored_crc,) = _CRC.unpack_from(page)
    if stored_crc != page_checksum(page, copy) & 0xFFFFFFFF:
        return "checksum mismatch"
    (
        _,
        kind,
        version,
        _,
        magic,
        sequence,
        page_count,
        catalog_root,
        freelist_head,
        free_count,
        has_applied,
        hash_len,
        _,
        position,
        hash_field,
        page_bytes,
    ) = _SUPERBLOCK.unpack_from(page)
    if kind != KIND_SUPERBLOCK or magic != _MAGIC:
        return f"not a superblock (kind {kind}, magic {magic!r})"
    if version != FORMAT_VERSION or page_bytes != PAGE_BYTES:
        return f"unsupported format version {version} / page size {page_bytes}"
    if hash_len > LOG_HASH_BYTES_MAX or page_count < SUPERBLOCK_COPIES:
        return f"bad fields (hash length {hash_len}, page count {page_count})"
    applied = (position, bytes(hash_field[:hash_len])) if has_applied else None
    return Superblock(sequence, page_count, catalog_root, freelist_head, free_count, applied)
