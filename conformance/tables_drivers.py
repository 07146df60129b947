"""Drivers of the `tables` machine: one SQL statement, two engines, the same observation.

`SpecTablesDriver` runs `verity_spec.tables` (plain dictionaries per log
position); `EngineTablesDriver` runs `verity.query.Engine` over the real
projection store `verity.store` in a folder. Observations are JSON-able:

    {"written": rows_affected}
    {"rows": {"columns": [...], "rows": [[value, ...], ...]}}
    {"failed": kind}
    {"failed": "limit", "limit": NAME}     NAME: the bound, e.g. "IN_LIST_MAX"

Values are encoded for JSON as `{"int": n}`, `{"float": repr}`, `{"text": s}`,
`{"bool": b}`, `{"bytes": hex}` or `null`, so that 1, 1.0 and True stay apart.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import verity_spec.tables as spec_tables
from verity.crypto import PageKey
from verity.errors import SqlError, SqlLimitExceeded
from verity.query import Engine
from verity.store import Store, open_store

Observation = dict[str, Any]

# The implementation's store is sealed, as the SDK's is (docs/formats.md §6); the
# key is fixed so that runs repeat.
_PAGE_KEY = bytes(range(32))


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


class TablesDriver(Protocol):
    def execute(self, sql: str, params: tuple[object, ...], position: int) -> Observation: ...
    def query_at(self, sql: str, params: tuple[object, ...], position: int) -> Observation: ...
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

    def execute(self, sql: str, params: tuple[object, ...], position: int) -> Observation:
        self.history, outcome = spec_tables.execute(self.history, sql, params, position)
        return self.observe(outcome)

    def query_at(self, sql: str, params: tuple[object, ...], position: int) -> Observation:
        return self.observe(spec_tables.query_at(self.history, sql, params, position))

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


class EngineTablesDriver:
    """The implementation: `verity.query.Engine` over a real `verity.store.Store`.

    Each successful write's event is kept, as the tenant log would keep it, so
    `rebuild` can make a fresh store from the events alone.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.store_path = directory / "store"
        self.store: Store = open_store(
            self.store_path, page_cache_pages=64, page_key=PageKey(_PAGE_KEY)
        )
        self.engine = Engine(self.store)
        self.events: list[tuple[int, bytes]] = []
        self.rebuilds = 0

    def execute(self, sql: str, params: tuple[object, ...], position: int) -> Observation:
        try:
            prepared = self.engine.prepare(sql)
            if prepared.is_query:
                result = self.engine.query(sql, params)
                return rows_observation(result.columns, result.rows)
            plan = self.engine.plan_write(sql, params)
        except SqlError as failure:
            return error_observation(failure)
        log_hash = hashlib.sha256(plan.event).digest()
        self.store.write_batch(position, log_hash, plan.changes)
        self.events.append((position, plan.event))
        return {"written": plan.rows_affected}

    def query_at(self, sql: str, params: tuple[object, ...], position: int) -> Observation:
        try:
            prepared = self.engine.prepare(sql)
            if not prepared.is_query:
                return {"failed": "unsupported"}
            result = self.engine.query(sql, params, as_of=position)
        except SqlError as failure:
            return error_observation(failure)
        return rows_observation(result.columns, result.rows)

    def reopen(self) -> None:
        self.store.close()
        self.store = open_store(self.store_path, page_cache_pages=64, page_key=PageKey(_PAGE_KEY))
        self.engine = Engine(self.store)

    def rebuild(self) -> None:
        """Delete the store's files and rebuild it from the recorded events alone."""
        from verity.query import changes_of_event

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


def params_to_json(params: tuple[object, ...]) -> list[object]:
    return [encode_value(p) for p in params]


def params_from_json(raw: list[object]) -> tuple[object, ...]:
    return tuple(decode_value(p) for p in raw)


def dumps(observation: Observation) -> str:
    return json.dumps(observation, sort_keys=True)
