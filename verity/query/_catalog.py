"""Table definitions, kept in the store itself so that they have history too.

The tree `catalog` holds, by key:

- `table:<name>`: the definition of the live table `<name>` (JSON, below); deleted by
  DROP TABLE. Read as of a position, it gives the table as it was then.
- `index:<name>`: the name of the table that index `<name>` belongs to (index names
  are one namespace across tables); deleted when its table is dropped.
- `next_object_id`: 8 bytes big-endian, the id the next CREATE TABLE or CREATE INDEX
  takes.

Each table incarnation and each index gets a fresh object id, and its tree is named
by it: rows live in `t:<id>:<table>` keyed by the encoded primary key; index entries
in `i:<id>:<index>` keyed by encode(column value) + encode(primary key), with the
encoded primary key as value. So a table dropped and created again starts empty in a
new tree, while reads as of an older position still find the old definition and the
old tree. The id comes from the catalog, not from the log position, so that a write
plan (and the event recording it) is complete before its position is known.

A definition is JSON (sorted keys, no spaces):
`{"columns": [{"name", "not_null", "type"}...], "format": 1, "indexes": [{"column",
"name", "object_id"}...], "name", "object_id", "primary_key": [column names]}`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Final, final

from verity.errors import CorruptionError
from verity.query._store_protocol import VersionedStore
from verity.query._types import ColumnType

__all__ = [
    "CATALOG_TREE",
    "Catalog",
    "ColumnDef",
    "IndexDef",
    "TableDef",
    "decode_table",
    "encode_table",
    "index_key",
    "next_object_id_key",
    "encode_object_id",
    "table_key",
]

CATALOG_TREE: Final = "catalog"
_TABLE_PREFIX: Final = b"table:"
_INDEX_PREFIX: Final = b"index:"
_NEXT_OBJECT_ID_KEY: Final = b"next_object_id"
_FORMAT: Final = 1
_OBJECT_ID: Final = struct.Struct(">Q")
_DECODED_MAX: Final = 512  # decoded definitions kept; plans are cached per definition


def table_key(name: str) -> bytes:
    """The catalog key of table `name`."""
    return _TABLE_PREFIX + name.encode("utf-8")


def index_key(name: str) -> bytes:
    """The catalog key of index `name`."""
    return _INDEX_PREFIX + name.encode("utf-8")


def next_object_id_key() -> bytes:
    """The catalog key of the next object id."""
    return _NEXT_OBJECT_ID_KEY


def encode_object_id(object_id: int) -> bytes:
    """The stored form of an object id."""
    return _OBJECT_ID.pack(object_id)


@final
class ColumnDef:
    """One column: lower-case name, type, and whether NULL is refused."""

    __slots__ = ("name", "not_null", "type")

    def __init__(self, name: str, column_type: ColumnType, not_null: bool) -> None:
        self.name = name
        self.type = column_type
        self.not_null = not_null

    def __repr__(self) -> str:
        suffix = " NOT NULL" if self.not_null else ""
        return f"ColumnDef({self.name} {self.type.value}{suffix})"


@final
class IndexDef:
    """A secondary index on one column (by position in the table)."""

    __slots__ = ("column", "name", "object_id", "tree")

    def __init__(self, name: str, column: int, object_id: int) -> None:
        assert column >= 0
        self.name = name
        self.column = column
        self.object_id = object_id
        self.tree = f"i:{object_id}:{name}"


@final
class TableDef:
    """A table incarnation: columns in table order, primary key, indexes, data tree.

    Compared and hashed by identity: the catalog hands out one object per stored
    definition, and plans are cached per object.
    """

    __slots__ = (
        "column_positions",
        "columns",
        "data_tree",
        "indexes",
        "name",
        "object_id",
        "primary_key",
    )

    def __init__(
        self,
        name: str,
        object_id: int,
        columns: tuple[ColumnDef, ...],
        primary_key: tuple[int, ...],
        indexes: tuple[IndexDef, ...],
    ) -> None:
        assert primary_key, "a table has a primary key"
        assert all(0 <= position < len(columns) for position in primary_key)
        self.name = name
        self.object_id = object_id
        self.columns = columns
        self.primary_key = primary_key
        self.indexes = indexes
        self.data_tree = f"t:{object_id}:{name}"
        self.column_positions: Mapping[str, int] = {
            column.name: position for position, column in enumerate(columns)
        }

    def with_index(self, index: IndexDef) -> TableDef:
        """This table with one more index."""
        return TableDef(
            self.name, self.object_id, self.columns, self.primary_key, (*self.indexes, index)
        )


def encode_table(table: TableDef) -> bytes:
    """The catalog value of `table`."""
    document = {
        "columns": [
            {"name": column.name, "not_null": column.not_null, "type": column.type.value}
            for column in table.columns
        ],
        "format": _FORMAT,
        "indexes": [
            {
                "column": table.columns[index.column].name,
                "name": index.name,
                "object_id": index.object_id,
            }
            for index in table.indexes
        ],
        "name": table.name,
        "object_id": table.object_id,
        "primary_key": [table.columns[position].name for position in table.primary_key],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def decode_table(data: bytes) -> TableDef:
    """The definition stored by `encode_table`; CorruptionError if `data` is not one."""
    try:
        document = json.loads(data)
        if document["format"] != _FORMAT:
            raise CorruptionError(f"table definition has unknown format {document['format']!r}")
        columns = tuple(
            ColumnDef(str(column["name"]), ColumnType(column["type"]), bool(column["not_null"]))
            for column in document["columns"]
        )
        positions = {column.name: position for position, column in enumerate(columns)}
        primary_key = tuple(positions[str(name)] for name in document["primary_key"])
        indexes = tuple(
            IndexDef(str(index["name"]), positions[str(index["column"])], int(index["object_id"]))
            for index in document["indexes"]
        )
        return TableDef(
            str(document["name"]), int(document["object_id"]), columns, primary_key, indexes
        )
    except (ValueError, KeyError, TypeError) as error:
        raise CorruptionError(f"table definition does not decode: {error!r}") from None


@final
class Catalog:
    """Reads table definitions from a store, caching what cannot change.

    The latest definitions are cached until the store's applied position moves;
    definitions as of a position at or before the applied one never change, so they
    are cached (boundedly) for good.
    """

    def __init__(self, store: VersionedStore) -> None:
        self._store = store
        self._decoded: dict[bytes, TableDef] = {}
        self._latest: tuple[tuple[int, bytes] | None, dict[str, TableDef | None]] = (None, {})
        self._historical: dict[tuple[str, int], TableDef | None] = {}

    def table(self, name: str, as_of: int | None = None) -> TableDef | None:
        """The definition of table `name` as of `as_of` (None: latest), or None."""
        applied = self._store.applied()
        if as_of is None:
            cached_applied, cached = self._latest
            if cached_applied != applied:
                cached = {}
                self._latest = (applied, cached)
            found = cached.get(name, self)
            if found is not self:
                assert found is None or isinstance(found, TableDef)
                return found
            table = self._load(name, None)
            cached[name] = table
            return table
        if applied is None or as_of > applied[0]:
            return self._load(name, as_of)  # later writes may still change this answer
        key = (name, as_of)
        found = self._historical.get(key, self)
        if found is not self:
            assert found is None or isinstance(found, TableDef)
            return found
        table = self._load(name, as_of)
        if len(self._historical) >= _DECODED_MAX:
            self._historical.clear()
        self._historical[key] = table
        return table

    def index_owner(self, index_name: str) -> str | None:
        """The table that index `index_name` belongs to now, or None if there is none."""
        data = self._store.get(CATALOG_TREE, index_key(index_name))
        return None if data is None else data.decode("utf-8")

    def next_object_id(self) -> int:
        """The object id the next CREATE takes."""
        data = self._store.get(CATALOG_TREE, _NEXT_OBJECT_ID_KEY)
        if data is None:
            return 1
        if len(data) != _OBJECT_ID.size:
            raise CorruptionError(f"catalog next_object_id has {len(data)} bytes, not 8")
        (object_id,) = _OBJECT_ID.unpack(data)
        assert isinstance(object_id, int)
        return object_id

    def _load(self, name: str, as_of: int | None) -> TableDef | None:
        data = self._store.get(CATALOG_TREE, table_key(name), as_of)
        if data is None:
            return None
        table = self._decoded.get(data)
        if table is None:
            table = decode_table(data)
            if table.name != name:
                raise CorruptionError(f"catalog entry {name!r} holds table {table.name!r}")
            if len(self._decoded) >= _DECODED_MAX:
                self._decoded.clear()
            self._decoded[data] = table
        return table
