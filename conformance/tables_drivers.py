"""Drivers of the `tables` machine: one SQL statement, three engines, the same observation.

`SpecTablesDriver` runs `verity_spec.tables` (plain dictionaries per log
position); `EngineTablesDriver` runs `verity.query.Engine` over the real
projection store `verity.store` in a folder; `MemoryTablesDriver` runs the same
engine over `verity.query.MemoryVersionedStore`, the public reference store in
memory. Observations are JSON-able:

    {"written": rows_affected}
    {"rows": {"columns": [...], "rows": [[value, ...], ...]}}
    {"failed": kind}
    {"failed": "limit", "limit": NAME}     NAME: the bound, e.g. "IN_LIST_MAX"
    {"error": "invalid_argument"}          query_at at something that is no log position

Values are encoded for JSON as `{"int": n}`, `{"float": repr}`, `{"text": s}`,
`{"bool": b}`, `{"bytes": hex}` or `null`, so that 1, 1.0 and True stay apart.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import verity_spec.tables as spec_tables
from verity.crypto import PageKey
from verity.errors import CorruptionError, InvalidArgument, SqlError, SqlLimitExceeded
from verity.query import Engine, MemoryVersionedStore, VersionedStore, changes_of_event
from verity.store import Store, open_store
from verity_spec.errors import InvalidArgumentError

Observation = dict[str, Any]

# The implementation's store is sealed, as the SDK's is (docs/formats.md §6); the
# key is fixed so that runs repeat.
_PAGE_KEY = bytes(range(32))

# The page file's layout, from docs/formats.md §6 (not from the implementation's code):
# the damage the machine forges is built from the documented format.
_PAGE_FILE = "pages.vstore"
_PAGE_BYTES = 4096
_SEALED_PAGE_BYTES = 12 + _PAGE_BYTES + 16  # nonce, ciphertext, tag
_SUPERBLOCK_COPIES = 4
# crc, kind, version, pad, magic, sequence, page_count, catalog_root, freelist_head,
# free_count, has_applied, hash_len, pad, applied_position, applied_hash (64), page_bytes.
_SUPERBLOCK = struct.Struct(">IBBH8sQIIIIBBHQ64sI")
_CHAIN_HEADER = struct.Struct(">IBBHI")  # crc, kind, pad, count, next page
_KIND_FREELIST = 5
FORGERIES = ("version", "free_entry_past_end", "free_chain_past_end")


def _crc_sealed(body: bytes, page_number: int) -> bytes:
    """A plain page: `body` (bytes 4..) padded, after its CRC-32 XOR the page number."""
    padded = body.ljust(_PAGE_BYTES - 4, b"\0")
    return struct.pack(">I", (zlib.crc32(padded) ^ page_number) & 0xFFFFFFFF) + padded


def encode_value(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    raise AssertionError(f"not a SQL value: {value!r}")


def decode_value(value: object) -> object:
    if value is None:
        return None
    assert isinstance(value, dict) and len(value) == 1, value
    [(tag, raw)] = value.items()
    if tag == "float":
        return float(raw)
    if tag == "bytes":
        return bytes.fromhex(raw)
    return raw


def failed_observation(kind: str, limit: str | None) -> Observation:
    """A refused statement: its kind, and for "limit" the bound it is over."""
    if kind == "limit":
        assert limit is not None
        return {"failed": kind, "limit": limit}
    return {"failed": kind}


def error_observation(failure: SqlError) -> Observation:
    limit = failure.limit if isinstance(failure, SqlLimitExceeded) else None
    return failed_observation(failure.kind, limit)


def rows_observation(columns: tuple[str, ...] | list[str], rows: Any) -> Observation:
    return {
        "rows": {
            "columns": list(columns),
            "rows": [[encode_value(v) for v in row] for row in rows],
        }
    }


INVALID_ARGUMENT: Observation = {"error": "invalid_argument"}
"""The observation of a `query_at` position that is no log position."""


class TablesDriver(Protocol):
    """`params` is a tuple of values, or (wrong-typed) the parameters argument itself;
    a `query_at` position may be anything a caller could pass."""

    def execute(self, sql: str, params: object, position: int) -> Observation: ...
    def query_at(self, sql: str, params: object, position: object) -> Observation: ...
    def reopen(self) -> None: ...
    def close(self) -> None: ...


class SpecTablesDriver:
    """The specification: its observations are the expected ones."""

    def __init__(self) -> None:
        self.history = spec_tables.empty_history()

    @staticmethod
    def observe(outcome: spec_tables.Outcome) -> Observation:
        if isinstance(outcome, spec_tables.Written):
            return {"written": outcome.rows_affected}
        if isinstance(outcome, spec_tables.Rows):
            return rows_observation(outcome.columns, outcome.rows)
        return failed_observation(outcome.kind, outcome.limit)

    def execute(self, sql: str, params: object, position: int) -> Observation:
        self.history, outcome = spec_tables.execute(self.history, sql, params, position)
        return self.observe(outcome)

    def query_at(self, sql: str, params: object, position: object) -> Observation:
        try:
            return self.observe(spec_tables.query_at(self.history, sql, params, position))
        except InvalidArgumentError:
            return INVALID_ARGUMENT

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


class _EngineDriver(abc.ABC):
    """`verity.query.Engine` over some `VersionedStore`: what the two implementation
    drivers share. Each successful write's event is kept, as the tenant log would keep
    it, so `rebuild` can make a fresh store from the events alone."""

    def __init__(self, store: VersionedStore) -> None:
        self.engine = Engine(store)
        self.events: list[tuple[int, bytes]] = []

    @abc.abstractmethod
    def write(self, position: int, log_hash: bytes, changes: Any) -> None:
        """Apply a planned write's changes to the store, as of `position`."""

    def execute(self, sql: str, params: object, position: int) -> Observation:
        try:
            prepared = self.engine.prepare(sql)
            if prepared.is_query:
                result = self.engine.query(sql, params)  # type: ignore[arg-type]
                return rows_observation(result.columns, result.rows)
            plan = self.engine.plan_write(sql, params)  # type: ignore[arg-type]
        except SqlError as failure:
            return error_observation(failure)
        self.write(position, hashlib.sha256(plan.event).digest(), plan.changes)
        self.events.append((position, plan.event))
        return {"written": plan.rows_affected}

    def query_at(self, sql: str, params: object, position: object) -> Observation:
        try:
            prepared = self.engine.prepare(sql)
            if not prepared.is_query:
                return {"failed": "unsupported"}
            result = self.engine.query(sql, params, as_of=position)  # type: ignore[arg-type]
        except SqlError as failure:
            return error_observation(failure)
        except InvalidArgument:
            return INVALID_ARGUMENT
        return rows_observation(result.columns, result.rows)


class MemoryTablesDriver(_EngineDriver):
    """The engine over `verity.query.MemoryVersionedStore` (public: "a reference store
    in memory, for tests and tools"). A reopen keeps it (nothing to close); a rebuild
    replays the recorded events into a new one."""

    def __init__(self) -> None:
        self.store = MemoryVersionedStore()
        super().__init__(self.store)

    def write(self, position: int, log_hash: bytes, changes: Any) -> None:
        self.store.write_batch(position, log_hash, changes)

    def reopen(self) -> None:
        pass

    def rebuild(self) -> None:
        self.store = MemoryVersionedStore()
        for position, event in self.events:
            self.store.write_batch(
                position, hashlib.sha256(event).digest(), changes_of_event(event)
            )
        self.engine = Engine(self.store)

    def close(self) -> None:
        pass


class EngineTablesDriver(_EngineDriver):
    """The implementation: `verity.query.Engine` over a real `verity.store.Store`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.store_path = directory / "store"
        self.store: Store = open_store(
            self.store_path, page_cache_pages=64, page_key=PageKey(_PAGE_KEY)
        )
        super().__init__(self.store)
        self.rebuilds = 0

    def write(self, position: int, log_hash: bytes, changes: Any) -> None:
        self.store.write_batch(position, log_hash, changes)

    def reopen(self) -> None:
        self.store.close()
        self.store = open_store(self.store_path, page_cache_pages=64, page_key=PageKey(_PAGE_KEY))
        self.engine = Engine(self.store)

    def rebuild(self) -> None:
        """Delete the store's files and rebuild it from the recorded events alone."""
        self.store.close()
        self.rebuilds += 1
        self.store_path = self.directory / f"rebuilt-{self.rebuilds}"
        self.store = open_store(self.store_path, page_cache_pages=64, page_key=PageKey(_PAGE_KEY))
        for position, event in self.events:
            self.store.write_batch(
                position, hashlib.sha256(event).digest(), changes_of_event(event)
            )
        self.engine = Engine(self.store)

    def close(self) -> None:
        self.store.close()

    @contextlib.contextmanager
    def short_writes(self) -> Iterator[None]:
        """Every write of the page file comes back short (about half done) the first time:
        the store must finish each at the right place (its `pwritev` seam)."""
        import verity.store._pagefile as pagefile

        real = pagefile.pwritev

        def short(fd: int, buffers: Any, offset: int) -> int:
            data = b"".join(bytes(buffer) for buffer in buffers)
            if len(data) < 2:
                return real(fd, buffers, offset)
            return os.pwrite(fd, data[: len(data) // 2 + 1], offset)

        setattr(pagefile, "pwritev", short)  # noqa: B010 (the seam's name, replaced)
        try:
            yield
        finally:
            setattr(pagefile, "pwritev", real)  # noqa: B010

    def forge(self, forgery: str) -> str:
        """Close the store and forge a superblock copy newer than every other one:

        - "version": of format version 2 and with no trees. It must be passed over
          (the store opens at its true state); the forged file is kept.
        - "free_entry_past_end": listing one free page past the pages in use;
        - "free_chain_past_end": whose free-list chain starts past the pages in use.
          Open must refuse both (CorruptionError); the file is then put back.

        Returns "opened" or "refused"; the store is open again afterwards.
        """
        self.store.close()
        path = self.store_path / _PAGE_FILE
        original = path.read_bytes()
        key = PageKey(_PAGE_KEY)
        newest = max(
            (
                _SUPERBLOCK.unpack_from(
                    key.open(copy, original[start : start + _SEALED_PAGE_BYTES])
                )
                for copy in range(_SUPERBLOCK_COPIES)
                for start in [copy * _SEALED_PAGE_BYTES]
            ),
            key=lambda fields: int(fields[5]),
        )
        fields = list(newest)
        fields[5] += 1_000  # sequence: newer than every copy
        pages = len(original) // _SEALED_PAGE_BYTES
        extra: list[tuple[int, bytes]] = []
        if forgery == "version":
            fields[2] = 2
            fields[7:10] = [0, 0, 0]  # no catalog, no free list
        else:
            chain = pages  # a page past the pages in use, added to the file
            listed = [pages + 1] if forgery == "free_entry_past_end" else []
            head = _CHAIN_HEADER.pack(0, _KIND_FREELIST, 0, len(listed), 0)[4:]
            body = head + b"".join(struct.pack(">I", page) for page in listed)
            extra.append((chain, _crc_sealed(body, chain)))
            fields[6] = pages + 1 if forgery == "free_entry_past_end" else pages
            fields[8:10] = [chain, len(listed)]
        forged = [(0, _crc_sealed(_SUPERBLOCK.pack(*fields)[4:], 0)), *extra]
        with path.open("r+b") as file:
            for number, plain in forged:
                file.seek(number * _SEALED_PAGE_BYTES)
                file.write(key.seal(number, plain))
        try:
            self.store = open_store(self.store_path, page_cache_pages=64, page_key=key)
            outcome = "opened"
        except CorruptionError:
            outcome = "refused"
        if forgery != "version":
            if outcome == "opened":
                self.store.close()
            path.write_bytes(original)
            self.store = open_store(self.store_path, page_cache_pages=64, page_key=key)
        self.engine = Engine(self.store)
        return outcome


def params_to_json(params: tuple[object, ...]) -> list[object]:
    return [encode_value(p) for p in params]


def params_from_json(raw: list[object]) -> tuple[object, ...]:
    return tuple(decode_value(p) for p in raw)


def dumps(observation: Observation) -> str:
    return json.dumps(observation, sort_keys=True)
