"""The event a SQL write records in the log: the statement's effect, self-described.

Decoding an event gives back exactly the changes the engine planned, so the
projection store can be rebuilt from the log alone: for each SQL event at position
p, `store.write_batch(p, hash, changes_of_event(event))`. The event also carries the
statement's kind, table, rows affected and SQL text, for an auditor reading the log.

Two layouts (integers big-endian). Format 1 lists the changes one by one; every
statement but INSERT is recorded so:

    magic "VQL" | format u8 = 1 | kind u8 | table: u16 length + UTF-8
    | rows_affected u64 | sql: u32 length + UTF-8 | change count u32 | changes

    change := tree: u16 length + UTF-8 | key: u32 length + bytes
              | 0 (delete) or 1 (put) + value: u32 length + bytes

Format 2 records an INSERT with each new row once (an INSERT event is mostly its
rows, and it is fsynced, hashed and kept forever, so half the bytes matter):

    magic "VQL" | format u8 = 2 | kind u8 = 4 (insert) | table: u16 length + UTF-8
    | rows_affected u64 (n) | sql: u32 length + UTF-8 | data tree: u16 length + UTF-8
    | index count u16 | per index: column u16 + tree: u16 length + UTF-8
    | n key lengths u32 | n row lengths u32 | the n keys | the n rows

Its changes are derived, in this order: for each row i, (data tree, key i, row i),
then for each index (index tree, encode_value(column value of row i) + key i,
key i), exactly the changes `_engine` plans for an INSERT (`insert_changes`).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise, repeat
from typing import Final, final

from verity.errors import CorruptionError, InvalidArgument
from verity.query._keys import encode_value
from verity.query._rows import decode_row
from verity.query._store_protocol import Change

__all__ = [
    "KINDS",
    "DecodedEvent",
    "changes_of_event",
    "decode_event",
    "encode_event",
    "encode_insert_event",
    "insert_changes",
]

KINDS: Final = ("create_table", "create_index", "drop_table", "insert", "update", "delete")
"""The kinds of write statement, in the order of their codes (1, 2, ...)."""

_MAGIC: Final = b"VQL"
_FORMAT: Final = 1
_FORMAT_INSERT: Final = 2
_KIND_INSERT: Final = KINDS.index("insert") + 1
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


def insert_changes(
    data_tree: str,
    index_trees: Sequence[str],
    keys: Sequence[bytes],
    rows: Sequence[bytes],
    index_values: Sequence[Sequence[bytes]],
) -> list[Change]:
    """The changes of an INSERT: for each row i, (data_tree, keys[i], rows[i]) and then,
    for each index j, (index_trees[j], index_values[j][i] + keys[i], keys[i]).

    `index_values[j][i]` is the encoded value of index j's column in row i.
    """
    assert len(keys) == len(rows)
    assert len(index_trees) == len(index_values)
    if not index_trees:
        return list(zip(repeat(data_tree, len(keys)), keys, rows, strict=True))
    changes: list[Change] = []
    append = changes.append
    for position, (key, row) in enumerate(zip(keys, rows, strict=True)):
        append((data_tree, key, row))
        for tree, values in zip(index_trees, index_values, strict=True):
            append((tree, values[position] + key, key))
    return changes


def encode_insert_event(
    table: str,
    sql: str,
    data_tree: str,
    indexes: Sequence[tuple[int, str]],
    keys: Sequence[bytes],
    rows: Sequence[bytes],
) -> bytes:
    """The event (format 2) recording an INSERT of `rows` under `keys` into `data_tree`,
    with `indexes` as (column position, index tree) pairs."""
    assert len(keys) == len(rows)
    assert all(0 <= column <= 0xFFFF for column, _ in indexes)
    count = len(rows)
    table_bytes = table.encode("utf-8")
    sql_bytes = sql.encode("utf-8")
    tree_bytes = data_tree.encode("utf-8")
    parts = [
        _HEADER.pack(_MAGIC, _FORMAT_INSERT, _KIND_INSERT),
        _U16.pack(len(table_bytes)),
        table_bytes,
        _U64.pack(count),
        _U32.pack(len(sql_bytes)),
        sql_bytes,
        _U16.pack(len(tree_bytes)),
        tree_bytes,
        _U16.pack(len(indexes)),
    ]
    for column, index_tree in indexes:
        index_bytes = index_tree.encode("utf-8")
        parts.append(_U16.pack(column))
        parts.append(_U16.pack(len(index_bytes)))
        parts.append(index_bytes)
    lengths = struct.Struct(f">{2 * count}I")
    parts.append(lengths.pack(*map(len, keys), *map(len, rows)))
    return b"".join([*parts, *keys, *rows])


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
    if magic != _MAGIC or version not in (_FORMAT, _FORMAT_INSERT):
        raise InvalidArgument(
            "event", event, f"is not a SQL event of format {_FORMAT} or {_FORMAT_INSERT}"
        )
    if not 1 <= kind_code <= len(KINDS):
        raise InvalidArgument("event", event, f"has unknown statement kind {kind_code}")
    if version == _FORMAT_INSERT and kind_code != _KIND_INSERT:
        raise InvalidArgument(
            "event", event, f"is of format {_FORMAT_INSERT}, which records only INSERT"
        )
    table = reader.text(_U16)
    rows_affected = reader.number(_U64)
    sql = reader.text(_U32)
    if version == _FORMAT_INSERT:
        changes = _inserted_changes(reader, rows_affected)
        return DecodedEvent(KINDS[kind_code - 1], table, rows_affected, sql, changes)
    changes = []
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


def _inserted_changes(reader: _Reader, count: int) -> list[Change]:
    """The changes of the rest of a format 2 (INSERT) event of `count` rows."""
    event = reader.data
    data_tree = reader.text(_U16)
    indexes = [(reader.number(_U16), reader.text(_U16)) for _ in range(reader.number(_U16))]
    if 8 * count > len(event) - reader.offset:
        raise InvalidArgument("event", event, f"ends before the lengths of its {count} rows")
    lengths = struct.Struct(f">{2 * count}I").unpack(reader.take(8 * count))
    ends = list(accumulate(lengths, initial=reader.offset))
    if ends[-1] != len(event):
        raise InvalidArgument(
            "event",
            event,
            f"holds {len(event) - reader.offset} bytes of keys and rows, "
            f"not the {ends[-1] - reader.offset} its lengths give",
        )
    reader.offset = ends[-1]
    fields = [event[start:end] for start, end in pairwise(ends)]
    keys = fields[:count]
    rows = fields[count:]
    index_values: list[list[bytes]] = []
    if indexes:
        try:
            decoded = [decode_row(row) for row in rows]
            for column, _ in indexes:
                index_values.append([encode_value(values[column]) for values in decoded])
        except (CorruptionError, IndexError) as error:
            raise InvalidArgument(
                "event", event, f"holds a row that does not decode: {error}"
            ) from None
    return insert_changes(data_tree, [tree for _, tree in indexes], keys, rows, index_values)


def changes_of_event(event: bytes) -> list[Change]:
    """The changes recorded by `event`: what `store.write_batch` applies for it."""
    return decode_event(event).changes
