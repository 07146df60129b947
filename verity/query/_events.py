"""The event a SQL write records in the log: the statement's effect, self-described.

Decoding an event gives back exactly the changes the engine planned, so the
projection store can be rebuilt from the log alone: for each SQL event at position
p, `store.write_batch(p, hash, changes_of_event(event))`. The event also carries the
statement's kind, table, rows affected and SQL text, for an auditor reading the log.

Layout (integers big-endian):

    magic "VQL" | format u8 = 1 | kind u8 | table: u16 length + UTF-8
    | rows_affected u64 | sql: u32 length + UTF-8 | change count u32 | changes

    change := tree: u16 length + UTF-8 | key: u32 length + bytes
              | 0 (delete) or 1 (put) + value: u32 length + bytes
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, final

from verity.errors import InvalidArgument
from verity.query._store_protocol import Change

__all__ = ["KINDS", "DecodedEvent", "changes_of_event", "decode_event", "encode_event"]

KINDS: Final = ("create_table", "create_index", "drop_table", "insert", "update", "delete")
"""The kinds of write statement, in the order of their codes (1, 2, ...)."""

_MAGIC: Final = b"VQL"
_FORMAT: Final = 1
_HEADER: Final = struct.Struct(">3sBB")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U64: Final = struct.Struct(">Q")


@final
@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """What a SQL event says."""

    kind: str
    """One of `KINDS`."""
    table: str
    """The table the statement wrote (created, indexed, dropped)."""
    rows_affected: int
    """Rows written by INSERT, UPDATE or DELETE; 0 for DDL."""
    sql: str
    """The statement's text, as the caller passed it."""
    changes: list[Change]
    """The changes to apply to the projection store, in order."""


def encode_event(
    kind: str, table: str, rows_affected: int, sql: str, changes: Sequence[Change]
) -> bytes:
    """The event recording a write statement and its changes."""
    assert kind in KINDS
    assert rows_affected >= 0
    table_bytes = table.encode("utf-8")
    sql_bytes = sql.encode("utf-8")
    parts = [
        _HEADER.pack(_MAGIC, _FORMAT, KINDS.index(kind) + 1),
        _U16.pack(len(table_bytes)),
        table_bytes,
        _U64.pack(rows_affected),
        _U32.pack(len(sql_bytes)),
        sql_bytes,
        _U32.pack(len(changes)),
    ]
    for tree, key, value in changes:
        tree_bytes = tree.encode("utf-8")
        parts.append(_U16.pack(len(tree_bytes)))
        parts.append(tree_bytes)
        parts.append(_U32.pack(len(key)))
        parts.append(key)
        if value is None:
            parts.append(b"\x00")
        else:
            parts.append(b"\x01")
            parts.append(_U32.pack(len(value)))
            parts.append(value)
    return b"".join(parts)


@final
class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise InvalidArgument(
                "event", self.data, f"ends at byte {len(self.data)}, inside a field"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def number(self, layout: struct.Struct) -> int:
        (value,) = layout.unpack(self.take(layout.size))
        assert isinstance(value, int)
        return value

    def text(self, layout: struct.Struct) -> str:
        raw = self.take(self.number(layout))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("event", self.data, "holds text that is not UTF-8") from None


def decode_event(event: bytes) -> DecodedEvent:
    """What `event` (made by `encode_event`) says; InvalidArgument if it is not one."""
    if not isinstance(event, bytes):
        raise InvalidArgument("event", event, "must be bytes")
    reader = _Reader(event)
    magic, version, kind_code = _HEADER.unpack(reader.take(_HEADER.size))
    if magic != _MAGIC or version != _FORMAT:
        raise InvalidArgument("event", event, f"is not a SQL event of format {_FORMAT}")
    if not 1 <= kind_code <= len(KINDS):
        raise InvalidArgument("event", event, f"has unknown statement kind {kind_code}")
    table = reader.text(_U16)
    rows_affected = reader.number(_U64)
    sql = reader.text(_U32)
    changes: list[Change] = []
    for _ in range(reader.number(_U32)):
        tree = reader.text(_U16)
        key = reader.take(reader.number(_U32))
        flag = reader.take(1)
        if flag == b"\x00":
            changes.append((tree, key, None))
        elif flag == b"\x01":
            changes.append((tree, key, reader.take(reader.number(_U32))))
        else:
            raise InvalidArgument("event", event, f"has change flag {flag!r}, not 0 or 1")
    if reader.offset != len(event):
        raise InvalidArgument("event", event, f"has {len(event) - reader.offset} trailing bytes")
    return DecodedEvent(KINDS[kind_code - 1], table, rows_affected, sql, changes)


def changes_of_event(event: bytes) -> list[Change]:
    """The changes recorded by `event`: what `store.write_batch` applies for it."""
    return decode_event(event).changes
