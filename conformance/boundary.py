"""The public API's boundary: every argument out of its documented domain is refused by name.

The project's rule for bad input (README, "How we work"): an argument of the
wrong type or out of range at a public entry point gets `InvalidArgument`
from `verity.errors`, whose `name` is that argument, and nothing on disk is
touched by a refused open. The machines and vectors drive well-formed calls
(the spec's domain); this table drives each public entry point of the
implementation with good arguments except one. Each domain is the one the
entry point's docstring states (docs/sdk.md for the SDK).

A case passes when the call raises `InvalidArgument` naming the argument (a
name that starts with it, as `events[1]` for `events`); any other outcome,
including success, fails it. `run(scratch)` checks every case and returns
the failures, each saying which call answered what.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import verity
from verity import (
    CheckpointPolicy,
    DataClass,
    IdempotencyId,
    Offset,
    StreamId,
    SyncMode,
    SyncPolicy,
    TenantId,
    proofs,
)
from verity.crypto import SigningKey, Tokenizer, verify_signature
from verity.directory import Directory
from verity.errors import InvalidArgument
from verity.kernel import Kernel
from verity.query import Engine, MemoryVersionedStore
from verity.storage import Log, open_log
from verity.store import KEY_BYTES_MAX, TREE_NAME_BYTES_MAX, Store, open_store
from verity.types import Hash

_BAD_COUNTS: tuple[object, ...] = (-1, True, 1.5, "1", None)
"""What an argument that counts (an offset, a size, a number of bytes) must refuse."""
_BAD_FLAGS: tuple[object, ...] = (1, "yes", None)
"""What a bool argument must refuse (1 is not True)."""


@dataclass(frozen=True)
class Case:
    """One call: `entry`'s argument `argument` given `value`, everything else good."""

    entry: str
    argument: str
    value: object
    call: Callable[[Fixture, Any], object]


class Fixture:
    """What the calls act on: a log and a database with one stream, in `scratch`."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.log: Log = open_log(scratch / "log", clock=_clock())
        self.log.append_batch([b"one", b"two", b"three"])
        self.db = verity.open(scratch / "db", create=True, clock=_clock())
        self.tenant = self.db.tenant(TenantId(1), create=True)
        self.stream = self.tenant.create_stream("events", DataClass.PUBLIC)
        self.tenant.append(self.stream, [b"a", b"b"])
        self.store: Store = open_store(scratch / "store")
        self.store.write_batch(0, b"h", [("t", b"k", b"v")])
        self.engine = Engine(self.store)
        self.kernel = Kernel(TenantId(1))
        self.fresh = 0

    def new_path(self) -> Path:
        """A folder that does not exist yet: a refused open must not create it."""
        self.fresh += 1
        return self.scratch / f"fresh-{self.fresh}"

    def close(self) -> None:
        self.log.close()
        self.db.close()
        self.store.close()


def _clock() -> Callable[[], int]:
    now = [time.time_ns()]

    def clock() -> int:
        now[0] += 1_000
        return now[0]

    return clock


def _open_log_with(argument: str) -> Callable[[Fixture, Any], object]:
    def call(fixture: Fixture, value: Any) -> object:
        path = fixture.new_path()
        arguments: dict[str, Any] = {argument: value}
        try:
            return open_log(arguments.pop("path", path), **arguments)
        finally:
            if path.exists():
                raise AssertionError(f"a refused open_log created {path}")

    return call


def _open_db_with(argument: str) -> Callable[[Fixture, Any], object]:
    def call(fixture: Fixture, value: Any) -> object:
        path = fixture.new_path()
        arguments: dict[str, Any] = {"create": True, argument: value}
        try:
            return verity.open(arguments.pop("path", path), **arguments)
        finally:
            if path.exists():
                raise AssertionError(f"a refused verity.open created {path}")

    return call


def _cases_of_opens() -> Iterator[Case]:
    value: object
    for value in (-1, 0, True, 1.5, "4096"):
        yield Case("open_log", "segment_bytes_max", value, _open_log_with("segment_bytes_max"))
    for value in (0, -1, True, "64"):
        yield Case(
            "open_log", "index_cache_segments", value, _open_log_with("index_cache_segments")
        )
    for name in ("create", "read_only"):
        for value in _BAD_FLAGS:
            yield Case("open_log", name, value, _open_log_with(name))
    yield Case("open_log", "path", 3, _open_log_with("path"))
    yield Case("open_log", "sync_policy", "x", _open_log_with("sync_policy"))
    yield Case("open_log", "checkpoint_policy", 10, _open_log_with("checkpoint_policy"))
    yield Case("open_log", "clock", 5, _open_log_with("clock"))
    yield Case("open_log", "signer", b"\0" * 32, _open_log_with("signer"))
    for name in ("create", "read_only"):
        for value in _BAD_FLAGS:
            yield Case("verity.open", name, value, _open_db_with(name))
    for value in (-1, 1.5, "5", None):
        yield Case(
            "verity.open",
            "idempotency_retention_ns",
            value,
            _open_db_with("idempotency_retention_ns"),
        )
    yield Case("verity.open", "path", 3, _open_db_with("path"))
    yield Case("verity.open", "sync_policy", "x", _open_db_with("sync_policy"))
    yield Case("verity.open", "checkpoint_policy", 10, _open_db_with("checkpoint_policy"))
    yield Case("verity.open", "clock", 5, _open_db_with("clock"))
    yield Case("verity.open", "master_key_provider", 7, _open_db_with("master_key_provider"))
    yield Case("verity.open", "signing_key_dir", 5, _open_db_with("signing_key_dir"))


def _constructs(kind: Callable[[Any], object]) -> Callable[[Fixture, Any], object]:
    return lambda _, value: kind(value)


def _cases_of_values() -> Iterator[Case]:
    value: object
    for value in (0, -1, True, 2.0, "3"):
        yield Case(
            "CheckpointPolicy",
            "every_n_records",
            value,
            lambda _, v: CheckpointPolicy(every_n_records=v),
        )
    for value in (-1, 1.5, "0"):
        yield Case(
            "SyncPolicy",
            "max_delay_ms",
            value,
            lambda _, v: SyncPolicy(SyncMode.GROUP_COMMIT, max_delay_ms=v),
        )
    for value in (0, -1, "8"):
        yield Case(
            "SyncPolicy",
            "max_batch",
            value,
            lambda _, v: SyncPolicy(SyncMode.GROUP_COMMIT, max_batch=v),
        )
    yield Case("SyncPolicy", "mode", "every_batch", lambda _, v: SyncPolicy(v))
    for kind in (Offset, TenantId, StreamId):
        for value in (-1, 1 << 64, True, 1.0, "1"):
            yield Case(kind.__name__, kind.__name__, value, _constructs(kind))
    for value in (b"\0" * 31, b"\0" * 33, "00" * 32):
        yield Case("Hash", "Hash", value, lambda _, v: Hash(v))
    for value in (b"\0" * 15, b"\0" * 17, "0" * 16):
        yield Case("IdempotencyId", "IdempotencyId", value, lambda _, v: IdempotencyId(v))


def _cases_of_the_log() -> Iterator[Case]:
    value: object
    for value in _BAD_COUNTS:
        yield Case("Log.read", "offset", value, lambda f, v: f.log.read(v))
        yield Case("Log.read_verified", "offset", value, lambda f, v: f.log.read_verified(v))
        yield Case("Log.records", "start", value, lambda f, v: list(f.log.records(v)))
        if value is not None:  # end=None is the log's end
            yield Case("Log.records", "end", value, lambda f, v: list(f.log.records(0, v)))
        yield Case(
            "Log.inclusion_proof", "leaf_index", value, lambda f, v: f.log.inclusion_proof(v)
        )
        yield Case(
            "Log.consistency_proof",
            "old_size",
            value,
            lambda f, v: f.log.consistency_proof(v),
        )
    for value in ([], (), b"abc", "abc", [b"a", "b"], [b"a", bytearray(b"b")], None):
        yield Case("Log.append_batch", "payloads", value, lambda f, v: f.log.append_batch(v))
    for value in ("abc", bytearray(b"abc"), None):
        yield Case("Log.append", "payload", value, lambda f, v: f.log.append(v))
    yield Case(
        "Log.inclusion_proof", "leaf_index", 3, lambda f, v: f.log.inclusion_proof(v, tree_size=3)
    )
    yield Case("Log.consistency_proof", "old_size", 0, lambda f, v: f.log.consistency_proof(v, 3))
    yield Case("Log.consistency_proof", "old_size", 3, lambda f, v: f.log.consistency_proof(v, 2))
    yield Case("Log.rotate_key", "new_signer", b"k", lambda f, v: f.log.rotate_key(v))


def _cases_of_the_tenant() -> Iterator[Case]:
    value: object
    for value in (b"name", 3, None):
        yield Case(
            "TenantHandle.create_stream",
            "name",
            value,
            lambda f, v: f.tenant.create_stream(v, DataClass.PUBLIC),
        )
    for value in (0, 99, "PUBLIC", None):
        yield Case(
            "TenantHandle.create_stream",
            "data_class",
            value,
            lambda f, v: f.tenant.create_stream("other", v),
        )
    for value in (b"a", "a", [b"a", "b"], [b"a", None], None, 7):
        yield Case(
            "TenantHandle.append", "events", value, lambda f, v: f.tenant.append(f.stream, v)
        )
    for value in ("1", 1.5, None, True):
        yield Case("TenantHandle.append", "stream", value, lambda f, v: f.tenant.append(v, [b"x"]))
    for value in (b"\0" * 16, "id", 5):
        yield Case(
            "TenantHandle.append",
            "idempotency_id",
            value,
            lambda f, v: f.tenant.append(f.stream, [b"x"], idempotency_id=v),
        )
    for value in ("2", 2.0, True):
        yield Case(
            "TenantHandle.append",
            "expected_offset",
            value,
            lambda f, v: f.tenant.append(f.stream, [b"x"], expected_offset=v),
        )
    for value in _BAD_COUNTS:
        yield Case(
            "TenantHandle.read_events",
            "from_offset",
            value,
            lambda f, v: f.tenant.read_events(f.stream, v),
        )
        yield Case(
            "TenantHandle.read_events",
            "max_bytes",
            value,
            lambda f, v: f.tenant.read_events(f.stream, Offset(0), v),
        )
    for value in (b"SELECT 1", 5, None):
        yield Case("TenantHandle.query", "sql", value, lambda f, v: f.tenant.query(v))
        yield Case("TenantHandle.execute", "sql", value, lambda f, v: f.tenant.execute(v))
        yield Case("TenantHandle.explain", "sql", value, lambda f, v: f.tenant.explain(v))
    for value in ("ab", b"ab", 5, None):
        yield Case(
            "TenantHandle.query",
            "params",
            value,
            lambda f, v: f.tenant.query("SELECT * FROM t WHERE k = ?", v),
        )
    for value in ("1", 1.5, None, True):
        yield Case(
            "TenantHandle.query_at",
            "position",
            value,
            lambda f, v: f.tenant.query_at("SELECT * FROM t", [], v),
        )
    for value in (b"\0" * 16, "id", None):
        yield Case(
            "TenantHandle.committed",
            "idempotency_id",
            value,
            lambda f, v: f.tenant.committed(v),
        )


def _cases_of_the_store_and_engine() -> Iterator[Case]:
    value: object
    for value in ("x", 0, 15, True):
        yield Case(
            "open_store",
            "page_cache_pages",
            value,
            lambda f, v: open_store(f.new_path(), page_cache_pages=v),
        )
    yield Case(
        "open_store", "page_key", b"\0" * 32, lambda f, v: open_store(f.new_path(), page_key=v)
    )
    yield Case("open_store", "path", 3, lambda f, v: open_store(v))
    for value in ("", 3, b"t", "t" * (TREE_NAME_BYTES_MAX + 1)):
        yield Case("Store.get", "tree", value, lambda f, v: f.store.get(v, b"k"))
        yield Case("Store.scan", "tree", value, lambda f, v: list(f.store.scan(v)))
    for value in ("k", bytearray(b"k"), None, b"k" * (KEY_BYTES_MAX + 1)):
        yield Case("Store.get", "key", value, lambda f, v: f.store.get("t", v))
    for value in ("a", 1, bytearray(b"a")):
        yield Case("Store.scan", "low", value, lambda f, v: list(f.store.scan("t", v)))
        yield Case("Store.scan", "high", value, lambda f, v: list(f.store.scan("t", None, v)))
    for value in (-1, "0", 1.0, True, 1 << 64):
        yield Case("Store.get", "as_of", value, lambda f, v: f.store.get("t", b"k", as_of=v))
        yield Case(
            "Engine.query", "as_of", value, lambda f, v: f.engine.query("SELECT * FROM t", as_of=v)
        )
    for value in (-1, "1", 0, True):  # 0 is applied already: positions strictly increase
        yield Case(
            "Store.write_batch", "position", value, lambda f, v: f.store.write_batch(v, b"", [])
        )
    for value in ("h", b"h" * 65, None):
        yield Case(
            "Store.write_batch", "log_hash", value, lambda f, v: f.store.write_batch(9, v, [])
        )
    for value in (
        "abc",
        None,
        [("t", b"k")],
        [(3, b"k", b"v")],
        [("t", "k", b"v")],
        [("t", b"k", "v")],
        [["t", b"k", b"v"]],
    ):
        yield Case(
            "Store.write_batch", "changes", value, lambda f, v: f.store.write_batch(9, b"", v)
        )
    for value in (0, -1, True, "8"):
        yield Case("Engine", "cache_size", value, lambda f, v: Engine(f.store, cache_size=v))
    for value in (b"SELECT 1", 3, None):
        yield Case("Engine.query", "sql", value, lambda f, v: f.engine.query(v))


def _cases_of_the_rest() -> Iterator[Case]:
    value: object
    for value in (-1, True, "1", 1 << 64):
        yield Case("Kernel", "tenant", value, lambda _, v: Kernel(v))
        yield Case("Kernel", "retention_ns", value, lambda _, v: Kernel(TenantId(1), v))
    for value in ("id", 5, None):
        yield Case("Kernel.committed", "idempotency_id", value, lambda f, v: f.kernel.committed(v))
    for value in ("1", None, 1.5):
        yield Case("Kernel.stream", "stream_id", value, lambda f, v: f.kernel.stream(v))
        yield Case("Kernel.next_offset", "stream_id", value, lambda f, v: f.kernel.next_offset(v))
    for value in (0, -1, True, "4", 1 << 20):
        yield Case("Directory", "shard_count", value, lambda f, v: Directory(f.new_path(), v))
        yield Case("verity.open", "shard_count", value, _open_db_with("shard_count"))
    for value in (b"\0" * 31, b"\0" * 33, "00" * 32):
        yield Case("SigningKey.from_seed", "seed", value, lambda _, v: SigningKey.from_seed(v))
        yield Case("Tokenizer", "key", value, lambda _, v: Tokenizer(v))
    key = SigningKey.from_seed(bytes(32))
    public_key = key.public_key_bytes()
    for value in (b"\0" * 31, "00" * 32, None):
        yield Case(
            "verify_signature",
            "public_key",
            value,
            lambda _, v: verify_signature(v, b"m", bytes(64)),
        )
        yield Case(
            "verify_signature",
            "signature",
            value,
            lambda _, v: verify_signature(public_key, b"m", v),
        )
    for value in ("", 3, None):
        yield Case(
            "Tokenizer.token", "domain", value, lambda _, v: Tokenizer(bytes(32)).token(b"x", v)
        )
    for value in ("x", None):
        yield Case(
            "Tokenizer.token", "value", value, lambda _, v: Tokenizer(bytes(32)).token(v, "d")
        )
    inclusion = proofs.InclusionProof(0, 1, b"leaf", ())
    consistency = proofs.ConsistencyProof(1, 2, (bytes(32),))
    for value in (b"\0" * 31, "0" * 32, None):
        yield Case(
            "verify_inclusion", "root", value, lambda _, v: proofs.verify_inclusion(inclusion, v)
        )
        yield Case(
            "verify_consistency",
            "old_root",
            value,
            lambda _, v: proofs.verify_consistency(consistency, v, bytes(32)),
        )
        yield Case(
            "verify_consistency",
            "new_root",
            value,
            lambda _, v: proofs.verify_consistency(consistency, bytes(32), v),
        )


def _appends_with_a_clock_returning(value: Any) -> Callable[[Fixture, Any], object]:
    def call(fixture: Fixture, _: Any) -> object:
        log = open_log(fixture.new_path(), clock=lambda: value)
        try:
            return log.append(b"x")
        finally:
            log.close()

    return call


def _cases_of_clocks_and_reference_stores() -> Iterator[Case]:
    value: object
    # A clock is an argument too: what it returns is checked at every append.
    for value in (-1, 1 << 64, "1", 1.5, True, None):
        yield Case("Log.append", "clock()", value, _appends_with_a_clock_returning(value))
    for value in (-1, True, "1", 1.5):
        yield Case(
            "MemoryVersionedStore.write_batch",
            "position",
            value,
            lambda _, v: MemoryVersionedStore().write_batch(v, b"", []),
        )
    for value in ("0" * 32, list(range(32))):
        yield Case("Tokenizer", "key", value, lambda _, v: Tokenizer(v))


def cases() -> list[Case]:
    """Every case, in a fixed order."""
    return [
        *_cases_of_opens(),
        *_cases_of_values(),
        *_cases_of_the_log(),
        *_cases_of_the_tenant(),
        *_cases_of_the_store_and_engine(),
        *_cases_of_the_rest(),
        *_cases_of_clocks_and_reference_stores(),
    ]


def _outcome(fixture: Fixture, case: Case) -> str | None:
    """None if `case` is refused as it must be, else what happened instead."""
    try:
        answer = case.call(fixture, case.value)
    except InvalidArgument as failure:
        if failure.name == case.argument or failure.name.startswith(case.argument + "["):
            return None
        return f"InvalidArgument naming {failure.name!r} instead ({failure})"
    except Exception as failure:  # any other outcome fails the case, and is shown
        return f"{type(failure).__name__}: {failure}"
    if hasattr(answer, "close"):
        answer.close()
    return f"accepted it (returned {type(answer).__name__})"


def run(scratch: Path) -> tuple[int, list[str]]:
    """(cases checked, failures): each failure names the call and what it answered."""
    fixture = Fixture(scratch)
    failures: list[str] = []
    checked = cases()
    try:
        for case in checked:
            problem = _outcome(fixture, case)
            if problem is not None:
                failures.append(f"{case.entry}({case.argument}={case.value!r}): {problem}")
    finally:
        fixture.close()
    return len(checked), failures
