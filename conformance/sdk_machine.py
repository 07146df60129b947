"""The lockstep state machine of the whole embedded SDK against a model built from the spec.

The model keeps, per tenant, the spec kernel state (`verity_spec.kernel`), the
spec log (`verity_spec.log`) the tenant's records would form and the spec
tables (`verity_spec.tables`) its SQL writes build; the implementation is
`verity.open(...)` on real files, with encryption, keys and signing.
Hypothesis drives both with the same operations: create streams (good,
duplicate, empty and oversized names, every data class), appends (to own,
unknown and another tenant's streams, with fresh and reused idempotency ids,
right and stale expected offsets, empty and bad batches), reads with byte
limits, `committed`, explicit checkpoints, close/reopen and crash (stop
without shutdown, then open), and SQL through the SDK (`execute`, `query`,
`query_at`: rows, rows affected and error kinds; a SQL write is one record,
so log sizes keep agreeing, and its receipt names its own record: the next
checkpoint's chain hash, when that record is the last it covers).

Files are damaged or put back between a close (or a crash) and the next open,
each found where docs/formats.md places it:

- the projection store set aside: a durable copy taken after a write, put
  back after more writes and a close or a crash (the store behind the log:
  it catches up from the log, every row as the spec has it);
- an older copy of a tenant's log put back under the newer store (the store
  ahead of the log): with the newer kernel snapshot the writer and a reader
  refuse with `HistoryLost`; without it the tenant opens as of the older log,
  its store set aside as stale and rebuilt;
- a bit flipped in a page of the projection store: a page it reads is damage,
  found at open or by the first table read, set aside and rebuilt from the
  log; every row agrees;
- `streams.vsix` with a bit flipped, cut short or deleted: no answer changes,
  damage to what the file's checks cover is noticed (a warning naming the
  file, the index rebuilt from the log), and a clean reopen or a crash
  leaves nothing to notice;
- opens that must be refused: a second writer (`InUse`), the master key
  missing (`KeyError_`), `verity.json` damaged (`CorruptionError` naming it),
  changing no file.

Read-only opens beside the live writer see every acknowledged record (the
durable prefix: streams, events, log sizes, `committed`, table rows), refuse
writes with `ReadOnly`, and write no file. After every step the observations
agree: results or error kinds, stream lists, events read back, log sizes.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import verity
import verity_spec.kernel as spec_kernel
import verity_spec.log as spec_log
import verity_spec.signing as spec_signing
import verity_spec.tables as spec_tables
from verity import CheckpointPolicy, DataClass, IdempotencyId, Offset, StreamId, TenantId
from verity.directory import SHARD_COUNT_DEFAULT, Directory
from verity.errors import (
    AlreadyExists,
    Conflict,
    CorruptionError,
    HistoryLost,
    InUse,
    InvalidArgument,
    KeyError_,
    NotFound,
    ReadOnly,
    SqlError,
    VerityError,
)
from verity_conformance.tables_drivers import (
    Observation,
    SpecTablesDriver,
    error_observation,
    rows_observation,
)

NOW_START = 1_767_225_600_000_000_000
TENANTS = (TenantId(1), TenantId(2))
RETENTION_NS = 50_000
EVERY_N_RECORDS = 4

# Where docs/formats.md (§4, §5.3, §5.5, §5.8, §6) places what the machine damages or puts back.
LAYOUT_FILE = "verity.json"
MASTER_KEY_FILE = "master.key"
LOG_FOLDER = "log"
STORE_FOLDER = "store"
SNAPSHOT_FILE = "kernel.vsnap"
STREAM_INDEX_FILE = "streams.vsix"
# streams.vsix (§5.8, version 2): a 128-byte header whose first 56 bytes (P, head, entries E)
# a CRC-32 (the next 4) covers, then extents:
# stream (8) ‖ ordinal (4) ‖ crc32 (4) ‖ min(8·2^k, 65,536) entries of 16 bytes.
VSIX_HEADER_BYTES = 128
VSIX_HEADER_CHECKED_BYTES = 60
VSIX_EXTENT_HEAD_BYTES = 16
VSIX_ENTRY_BYTES = 16
# pages.vstore (§6): sealed pages of 4,124 bytes, page n at byte 4124·n; pages 0..3 are
# the superblock copies.
STORE_PAGE_FILE = "pages.vstore"
SEALED_PAGE_BYTES = 12 + 4096 + 16
SUPERBLOCK_COPIES = 4

ERROR_KIND_OF_REASON = {
    spec_kernel.RejectReason.INVALID_NAME: "invalid_argument",
    spec_kernel.RejectReason.INVALID_DATA_CLASS: "invalid_argument",
    spec_kernel.RejectReason.DUPLICATE_NAME: "already_exists",
    spec_kernel.RejectReason.INVALID_IDEMPOTENCY_ID: "invalid_argument",
    spec_kernel.RejectReason.INVALID_EVENT: "invalid_argument",
    spec_kernel.RejectReason.EMPTY_BATCH: "invalid_argument",
    spec_kernel.RejectReason.BATCH_TOO_LARGE: "invalid_argument",
    spec_kernel.RejectReason.INVALID_EXPECTED_OFFSET: "invalid_argument",
    spec_kernel.RejectReason.STREAM_OF_ANOTHER_TENANT: "not_found",
    spec_kernel.RejectReason.UNKNOWN_STREAM: "not_found",
    spec_kernel.RejectReason.OFFSET_MISMATCH: "conflict",
}


def error_kind(failure: VerityError) -> str:
    for kind, error_type in (
        ("invalid_argument", InvalidArgument),
        ("already_exists", AlreadyExists),
        ("not_found", NotFound),
        ("conflict", Conflict),
    ):
        if isinstance(failure, error_type):
            return kind
    raise AssertionError(f"unexpected error kind {type(failure).__name__}: {failure}")


@dataclass
class TenantModel:
    """What the spec says one tenant holds."""

    kernel: spec_kernel.KernelState
    log: spec_log.Log = field(default_factory=spec_log.empty_log)
    payloads: list[bytes] = field(default_factory=list)
    """The kernel events among the log's DATA records, in order (SQL writes are not)."""
    signer: bytes | None = None
    """The tenant's signing key (its seed), once the SDK made it; the model signs with it."""
    holds_ciphertext: bool = False
    """Whether an event of an encrypted data class (all but PUBLIC) is in the log.

    The SDK stores those as ciphertext, which the spec does not describe yet
    (issue 11 §4): from that record on, the model's records, chain hashes
    and checkpoint statements are not the SDK's bytes. SQL writes are
    always sealed (docs/formats.md §5.3).
    """
    tables: spec_tables.History = field(default_factory=spec_tables.empty_history)
    """Every SQL write's tables, at the log position of its record."""
    receipts: dict[int, bytes] = field(default_factory=dict)
    """The chain hash each SQL write's receipt named, by log position."""

    def events(self, stream: int) -> list[bytes]:
        found: list[bytes] = []
        for payload in self.payloads:
            event = spec_kernel.decode_event(payload)
            if isinstance(event, spec_kernel.EventsAppended) and event.stream == stream:
                found.extend(event.events)
        return found

    def table_names(self) -> list[str]:
        return sorted(spec_tables.latest_state(self.tables).tables)


POLICY = spec_log.CheckpointPolicy(every_n_records=EVERY_N_RECORDS)

names = st.one_of(
    st.sampled_from(["audit", "labs", "billing", "notes"]),
    st.sampled_from(["", "x" * 129, "tab\there"]),
    st.text(alphabet="abcdefgh", min_size=1, max_size=6),
)
event_lists = st.lists(st.binary(max_size=40), min_size=0, max_size=5)

# SQL: two small tables (one with a text key and bytes), an index, and statements that
# fail in each way the spec names (no key, unknown table or column, wrong type,
# duplicate key, table exists, missing parameter, unsupported, syntax).
Statement = tuple[str, tuple[object, ...]]
small_ints = st.integers(-3, 12)
short_texts = st.text(alphabet="xyz", max_size=3)
sql_writes: st.SearchStrategy[Statement] = st.one_of(
    st.sampled_from(
        [
            "CREATE TABLE t1 (id BIGINT PRIMARY KEY, name TEXT, n BIGINT)",
            "CREATE TABLE t2 (k TEXT PRIMARY KEY, v BYTES NOT NULL)",
            "CREATE INDEX t1_n ON t1 (n)",
            "DROP TABLE t1",
            "DROP TABLE t2",
            "CREATE TABLE t3 (a BIGINT)",
            "INSERT INTO nope VALUES (1)",
            "INSERT INTO t1 VALUES ('x', 1, 2)",
            "UPDATE t1 SET nope = 1",
            "DELETE FROM t1 WHERE id = ?",
            "SELECT * FROM t1 JOIN t2 ON t1.name = t2.k",
            "INSERT INTO t1 VALUES (",
        ]
    ).map(lambda sql: (sql, ())),
    st.tuples(small_ints, st.one_of(st.none(), short_texts), st.one_of(st.none(), small_ints)).map(
        lambda row: ("INSERT INTO t1 VALUES (?, ?, ?)", row)
    ),
    st.lists(st.tuples(short_texts, st.binary(max_size=12)), min_size=1, max_size=3).map(
        lambda rows: (
            "INSERT INTO t2 (k, v) VALUES " + ", ".join(["(?, ?)"] * len(rows)),
            tuple(value for row in rows for value in row),
        )
    ),
    st.tuples(small_ints, small_ints).map(
        lambda values: ("UPDATE t1 SET n = ? WHERE id < ?", values)
    ),
    small_ints.map(lambda n: ("DELETE FROM t1 WHERE n = ? OR name IS NULL", (n,))),
    short_texts.map(lambda k: ("DELETE FROM t2 WHERE k = ?", (k,))),
)
sql_queries: st.SearchStrategy[Statement] = st.one_of(
    st.sampled_from(
        [
            "SELECT * FROM t1",
            "SELECT * FROM t2 ORDER BY k DESC",
            "SELECT COUNT(*) FROM t1",
            "SELECT * FROM nope",
            "SELECT nope FROM t2",
            "SELECT * FROM t1 WHERE id = 'x'",
        ]
    ).map(lambda sql: (sql, ())),
    small_ints.map(lambda n: ("SELECT id, name FROM t1 WHERE n >= ? ORDER BY id LIMIT 3", (n,))),
    short_texts.map(lambda k: ("SELECT v FROM t2 WHERE k IN (?, 'y')", (k,))),
)


class _Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def implementation_warnings() -> Iterator[list[str]]:
    """The warnings the implementation logs meanwhile (docs name some: a rebuilt index).

    The runner holds them back from its output; they are collected here all
    the same, and shown only where the runner would show them.
    """
    logger = logging.getLogger("verity")
    collected = _Collected()
    saved_level, saved_propagate = logger.level, logger.propagate
    if not logger.isEnabledFor(logging.WARNING):
        logger.propagate = False
    logger.setLevel(logging.WARNING)
    logger.addHandler(collected)
    try:
        yield collected.messages
    finally:
        logger.removeHandler(collected)
        logger.setLevel(saved_level)
        logger.propagate = saved_propagate


def files_of(*folders: Path) -> dict[str, str]:
    """Every file under `folders`, by path, with the SHA-256 of its bytes."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def vsix_extents(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each extent of an intact streams.vsix (docs/formats.md §5.8)."""
    order = {1: "<", 2: ">"}[data[5]]
    head = struct.Struct(order + "QII")
    extents: list[tuple[int, int]] = []
    position = VSIX_HEADER_BYTES
    while position + VSIX_EXTENT_HEAD_BYTES <= len(data):
        stream, ordinal, crc = head.unpack_from(data, position)
        if (stream, ordinal, crc) == (0, 0, 0):
            break
        end = position + VSIX_EXTENT_HEAD_BYTES + VSIX_ENTRY_BYTES * min(8 << ordinal, 65_536)
        extents.append((position, end))
        position = end
    return extents


def observed_sql(call: Any) -> Observation:
    """What one SDK SQL call gave, as the tables driver observes it."""
    try:
        answer = call()
    except SqlError as failure:
        return error_observation(failure)
    except VerityError as failure:
        return {"error": error_kind(failure)}
    if isinstance(answer, verity.Receipt):
        return {"written": answer.rows_affected}
    assert isinstance(answer, verity.QueryResult), answer
    return rows_observation(answer.columns, answer.rows)


class SdkLockstep(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.work = Path(tempfile.mkdtemp(prefix="verity-sdk-lockstep-"))
        self.now = NOW_START
        self.models = {
            int(t): TenantModel(spec_kernel.initial_state(int(t), RETENTION_NS)) for t in TENANTS
        }
        self.keys: list[bytes] = []
        self.aside_rows = 0
        self.db = self._open()
        # Each tenant is made now: its log begins with the KEY record pinning its new
        # signing key, which the model reads from the key folder given at open.
        for tenant in TENANTS:
            self.db.tenant(tenant, create=True)
            model = self.models[int(tenant)]
            model.signer = (self.work / "keys" / f"tenant-{int(tenant)}.signing.key").read_bytes()
            model.log = spec_log.pin_key(model.log, self.now, model.signer)

    # ------------------------------------------------------------ plumbing

    def _clock(self) -> int:
        return self.now

    def _open(self, *, read_only: bool = False) -> verity.Verity:
        return verity.open(
            self.work / "db",
            clock=self._clock,
            checkpoint_policy=CheckpointPolicy(every_n_records=EVERY_N_RECORDS),
            idempotency_retention_ns=RETENTION_NS,
            signing_key_dir=self.work / "keys",
            create=not read_only,
            read_only=read_only,
        )

    def tenant_folder(self, tenant: TenantId) -> Path:
        # docs/formats.md §5.3: shard-SSSSS/tenant-<id>, the shard placed by verity.directory.
        return Directory(self.work / "db", SHARD_COUNT_DEFAULT).tenant_path(tenant)

    def tick(self, step: int) -> None:
        self.now = max(0, self.now + step)

    def streams_known(self) -> list[int]:
        return [s.stream for m in self.models.values() for s in m.kernel.streams]

    def model_apply(self, tenant: int, command: spec_kernel.Command) -> dict[str, Any]:
        model = self.models[tenant]
        model.kernel, effects = spec_kernel.apply(model.kernel, command)
        reply = effects[-1]
        assert isinstance(reply, spec_kernel.Reply)
        for effect in effects[:-1]:
            assert isinstance(effect, spec_kernel.AppendRecord)
            model.payloads.append(effect.payload)
            event = spec_kernel.decode_event(effect.payload)
            if isinstance(event, spec_kernel.EventsAppended):
                [stream] = [s for s in model.kernel.streams if s.stream == event.stream]
                model.holds_ciphertext |= stream.data_class != DataClass.PUBLIC
            model.log = spec_log.append(model.log, effect.payload, self.now, POLICY, model.signer)
        outcome = reply.outcome
        if isinstance(outcome, spec_kernel.Rejected):
            return {"error": ERROR_KIND_OF_REASON[outcome.reason]}
        return {"ok": outcome.offset if isinstance(command, spec_kernel.AppendBatch) else None}

    def model_sql_write(self, tenant: int, sql: str, params: tuple[object, ...]) -> Observation:
        """The spec's answer to a SQL write; a written one is the log's next record."""
        model = self.models[tenant]
        position = spec_log.size(model.log)
        model.tables, outcome = spec_tables.execute(model.tables, sql, params, position)
        if isinstance(outcome, spec_tables.Rows):
            return {"error": "invalid_argument"}  # a query is not a write (docs/sdk.md)
        if isinstance(outcome, spec_tables.Written):
            # The record holds the statement's event sealed under the session key
            # (docs/formats.md §5.3), bytes the spec does not describe: the model's
            # stand-in payload only takes the record's place in the log.
            model.log = spec_log.append(
                model.log, b"\x03" + sql.encode(), self.now, POLICY, model.signer
            )
            model.holds_ciphertext = True
        return SpecTablesDriver.observe(outcome)

    @staticmethod
    def agree(what: str, expected: object, actual: object) -> None:
        assert actual == expected, f"{what}: model gave {expected!r}, SDK gave {actual!r}"

    def sql_write_checked(self, tenant: TenantId, sql: str, params: tuple[object, ...]) -> None:
        """One SQL write through the SDK and the model: same answer, receipt of its record."""
        model = self.models[int(tenant)]
        position = spec_log.size(model.log)
        expected = self.model_sql_write(int(tenant), sql, params)
        handle = self.db.tenant(tenant, create=True)
        receipts: list[verity.Receipt] = []

        def execute() -> verity.Receipt:
            receipts.append(handle.execute(sql, params))
            return receipts[-1]

        self.agree(f"execute({tenant}, {sql!r}, {params!r})", expected, observed_sql(execute))
        if not receipts:
            return
        [receipt] = receipts
        self.agree("receipt offset", position, int(receipt.offset))
        self.agree("receipt hash length", 32, len(receipt.hash))
        model.receipts[position] = bytes(receipt.hash)
        if spec_log.size(model.log) == position + 2:
            # The policy's checkpoint followed the statement's record: it covers that
            # record last, so its statement names that record's chain hash.
            latest = handle.latest_checkpoint()
            assert latest is not None
            self.agree("automatic checkpoint tree_size", position + 1, latest.tree_size)
            self.agree("receipt hash = its record's chain hash", latest.chain_hash, receipt.hash)

    def check_tables(self, tenant: int, handle: verity.TenantHandle) -> None:
        """Every table of the tenant, row by row, as the spec has it now."""
        model = self.models[tenant]
        for name in model.table_names():
            sql = f"SELECT * FROM {name}"
            now = spec_log.size(model.log)
            expected = SpecTablesDriver.observe(spec_tables.query_at(model.tables, sql, (), now))
            actual = observed_sql(lambda sql=sql: handle.query(sql))
            self.agree(f"rows of table {name} of tenant {tenant}", expected, actual)

    def close_all(self) -> None:
        """A clean close of the database: every tenant (all are open) shuts down."""
        for model in self.models.values():
            model.log = spec_log.shutdown(model.log, self.now, POLICY, model.signer)
        self.db.close()

    def reopen_all(self) -> list[str]:
        """Open the database, every tenant and all it holds read back; the warnings logged."""
        with implementation_warnings() as warned:
            self.db = self._open()
            self.check_replay()
        return warned

    def no_index_warning(self, warned: list[str], why: str) -> None:
        # docs/formats.md §5.8: the file is rebuilt (with a warning) only when damaged or stale.
        noticed = [message for message in warned if STREAM_INDEX_FILE in message]
        self.agree(f"stream index warnings after {why}", [], noticed)

    # ------------------------------------------------------------ rules

    @initialize()
    def start(self) -> None:
        pass

    @rule(
        tenant=st.sampled_from(TENANTS),
        name=names,
        data_class=st.sampled_from(list(DataClass)),
        step=st.integers(0, 20_000),
    )
    def create_stream(self, tenant: TenantId, name: str, data_class: DataClass, step: int) -> None:
        self.tick(step)
        command = spec_kernel.CreateStream(int(tenant), name, int(data_class), self.now)
        expected = self.model_apply(int(tenant), command)
        try:
            self.db.tenant(tenant, create=True).create_stream(name, data_class)
            actual: dict[str, Any] = {"ok": None}
        except VerityError as failure:
            actual = {"error": error_kind(failure)}
        self.agree(f"create_stream({tenant}, {name!r})", expected, actual)

    @rule(
        tenant=st.sampled_from(TENANTS),
        data=st.data(),
        events=event_lists,
        key_choice=st.sampled_from(["none", "fresh", "reuse"]),
        offset_choice=st.sampled_from(["none", "right", "stale"]),
        step=st.integers(-5_000, 40_000),
    )
    def append(
        self,
        tenant: TenantId,
        data: st.DataObject,
        events: list[bytes],
        key_choice: str,
        offset_choice: str,
        step: int,
    ) -> None:
        self.tick(step)
        known = self.streams_known()
        stream = (
            data.draw(st.sampled_from(known) if known else st.just(1 << 32 | 1), label="stream")
            if data.draw(st.booleans(), label="known stream")
            else data.draw(st.integers(0, (3 << 32) + 3), label="any stream")
        )
        key: bytes | None = None
        if key_choice == "fresh" or (key_choice == "reuse" and not self.keys):
            # Deterministic ids: Hypothesis must be able to replay a failing run exactly.
            key = len(self.keys).to_bytes(16, "big")
            self.keys.append(key)
        elif key_choice == "reuse":
            key = data.draw(st.sampled_from(self.keys), label="reused key")
        model = self.models[int(tenant)]
        current = next((s.next_offset for s in model.kernel.streams if s.stream == stream), 0)
        expected_offset = {"none": None, "right": current, "stale": current + 1}[offset_choice]
        command = spec_kernel.AppendBatch(
            int(tenant), stream, tuple(events), key, expected_offset, self.now
        )
        expected = self.model_apply(int(tenant), command)
        try:
            offset = self.db.tenant(tenant, create=True).append(
                StreamId(stream),
                events,
                idempotency_id=None if key is None else IdempotencyId(key),
                expected_offset=None if expected_offset is None else Offset(expected_offset),
            )
            actual: dict[str, Any] = {"ok": int(offset)}
        except VerityError as failure:
            actual = {"error": error_kind(failure)}
        self.agree(f"append({tenant}, {stream}, {len(events)} events)", expected, actual)

    @rule(
        tenant=st.sampled_from(TENANTS),
        data=st.data(),
        max_bytes=st.integers(0, 120),
    )
    def read_events(self, tenant: TenantId, data: st.DataObject, max_bytes: int) -> None:
        model = self.models[int(tenant)]
        if not model.kernel.streams:
            return
        stream = data.draw(st.sampled_from(model.kernel.streams), label="stream")
        start = data.draw(st.integers(0, stream.next_offset), label="from_offset")
        events = model.events(stream.stream)[start:]
        expected: list[bytes] = []
        used = 0
        for event in events:
            if max_bytes == 0 or (expected and used + len(event) > max_bytes):
                break
            expected.append(event)
            used += len(event)
        actual = self.db.tenant(tenant, create=True).read_events(
            StreamId(stream.stream), Offset(start), max_bytes
        )
        self.agree(f"read_events({stream.stream}, {start}, {max_bytes})", expected, actual)

    @rule(
        tenant=st.sampled_from(TENANTS),
        statements=st.lists(sql_writes, min_size=1, max_size=4),
        step=st.integers(0, 20_000),
    )
    def sql_write(self, tenant: TenantId, statements: list[Statement], step: int) -> None:
        # A few in a row: the policy's checkpoints fall after some of them (receipts).
        self.tick(step)
        for statement in statements:
            self.sql_write_checked(tenant, *statement)

    @rule(tenant=st.sampled_from(TENANTS), statement=sql_queries, data=st.data())
    def sql_query(self, tenant: TenantId, statement: Statement, data: st.DataObject) -> None:
        sql, params = statement
        model = self.models[int(tenant)]
        handle = self.db.tenant(tenant, create=True)
        size = spec_log.size(model.log)
        if data.draw(st.booleans(), label="as of a past position"):
            position = data.draw(st.integers(0, size - 1), label="position")
            expected = SpecTablesDriver.observe(
                spec_tables.query_at(model.tables, sql, params, position)
            )
            actual = observed_sql(lambda: handle.query_at(sql, params, position))
            self.agree(f"query_at({sql!r}, {params!r}, {position})", expected, actual)
            return
        expected = SpecTablesDriver.observe(spec_tables.execute(model.tables, sql, params, size)[1])
        answers: list[verity.QueryResult] = []

        def query() -> verity.QueryResult:
            answers.append(handle.query(sql, params))
            return answers[-1]

        self.agree(f"query({sql!r}, {params!r})", expected, observed_sql(query))
        for answer in answers:
            self.agree("query position", size - 1, answer.position)

    @rule(tenant=st.sampled_from(TENANTS), step=st.integers(0, 10_000))
    def checkpoint(self, tenant: TenantId, step: int) -> None:
        self.tick(step)
        model = self.models[int(tenant)]
        model.log = spec_log.append_checkpoint(model.log, self.now, model.signer)
        signed = self.db.tenant(tenant, create=True).checkpoint()
        # The checkpoint covers the records before its own; its signature is the one the
        # spec's checkpoint record carries (Ed25519 is deterministic), while the model
        # holds the very bytes the SDK stored.
        record = model.log.records[-1]
        self.agree("checkpoint tree_size", spec_log.size(model.log) - 1, signed.tree_size)
        if not model.holds_ciphertext:
            self.agree("checkpoint signature", record.payload[-64:], signed.signature)
        self.agree("signed_through", spec_log.signed_through(model.log), signed.tree_size)
        if signed.tree_size - 1 in model.receipts:
            # Its last record is a SQL write: the checkpoint names the hash the receipt did.
            self.agree(
                "checkpoint chain_hash = receipt hash",
                model.receipts[signed.tree_size - 1],
                signed.chain_hash,
            )

    @rule()
    def verify(self) -> None:
        # Every tenant's log from genesis: intact, counted record by record, and signed as
        # far as the model's last signed checkpoint reaches.
        report = self.db.verify()
        sizes = {tenant: spec_log.size(model.log) for tenant, model in self.models.items()}
        self.agree("verify ok", True, report.ok)
        self.agree("verify first_bad", None, report.first_bad)
        self.agree("verify tenants_checked", len(TENANTS), report.tenants_checked)
        self.agree("verify records_checked", sum(sizes.values()), report.records_checked)
        expected = {}
        for tenant, model in self.models.items():
            assert model.signer is not None
            signed = spec_log.signed_through(model.log)
            public_key = spec_signing.public_key_of(model.signer)
            expected[tenant] = (sizes[tenant], signed, sizes[tenant] - signed, public_key, None, ())
        actual = {
            int(t.tenant): (
                t.records_checked,
                t.signed_through,
                t.not_yet_signed,
                t.public_key,
                t.key_problem,
                t.broken_promises,
            )
            for t in report.tenants
        }
        self.agree("verify per tenant", expected, actual)

    @rule(step=st.integers(0, 100_000))
    def reopen(self, step: int) -> None:
        self.tick(step)
        self.close_all()
        # A clean close vouches for the stream index: the open trusts it, warning of nothing.
        self.no_index_warning(self.reopen_all(), "a clean close")

    @precondition(lambda self: any(m.payloads for m in self.models.values()))
    @rule(step=st.integers(0, 100_000))
    def crash(self, step: int) -> None:
        # Every append was acknowledged after its fsync: a crash loses nothing. What the
        # crashed session indexed past the index's header is dropped and indexed again:
        # that is not damage either.
        self.tick(step)
        self.db._abandon()
        self.no_index_warning(self.reopen_all(), "a crash")

    @rule(
        data_class=st.sampled_from([c for c in DataClass if c != DataClass.PUBLIC]),
        sessions=st.integers(3, 4),
        crash_between=st.booleans(),
        step=st.integers(0, 50_000),
    )
    def sessions_with_encrypted_data(
        self, data_class: DataClass, sessions: int, crash_between: bool, step: int
    ) -> None:
        """Three or more sessions in a row, each sealing events of an encrypted class
        under its own data key in every tenant, closed (or crashed) and reopened between
        them; after each reopen every event of every session reads back."""
        for session in range(sessions):
            self.tick(step)
            for tenant in TENANTS:
                model = self.models[int(tenant)]
                name = f"sealed{int(data_class)}"
                if not any(s.name == name for s in model.kernel.streams):
                    command: spec_kernel.Command = spec_kernel.CreateStream(
                        int(tenant), name, int(data_class), self.now
                    )
                    self.agree(
                        f"create_stream({tenant}, {name!r})",
                        self.model_apply(int(tenant), command),
                        {"ok": None},
                    )
                    self.db.tenant(tenant, create=True).create_stream(name, data_class)
                [stream] = [s.stream for s in model.kernel.streams if s.name == name]
                events = [f"session {session} event {i}".encode() * (i + 1) for i in range(3)]
                command = spec_kernel.AppendBatch(
                    int(tenant), stream, tuple(events), None, None, self.now
                )
                expected = self.model_apply(int(tenant), command)
                offset = self.db.tenant(tenant, create=True).append(StreamId(stream), events)
                self.agree(
                    f"append({tenant}, {stream}) in session {session}",
                    expected,
                    {"ok": int(offset)},
                )
            if crash_between:
                self.crash(step)
            else:
                self.reopen(step)

    @rule(
        tenant=st.sampled_from(TENANTS),
        between=st.sampled_from(
            ["store_set_aside", "store_pages", "older_log", "stream_index", "refused_open"]
        ),
        data=st.data(),
        step=st.integers(0, 20_000),
    )
    def between_sessions(
        self, tenant: TenantId, between: str, data: st.DataObject, step: int
    ) -> None:
        """Files damaged or put back between a close (or a crash) and the next open: one
        rule for all of them, so that they take a modest share of the steps."""
        self.tick(step)
        if between == "store_set_aside":
            statements = data.draw(st.lists(sql_writes, max_size=2), label="statements")
            self.store_set_aside(tenant, statements, data.draw(st.booleans(), label="crash"))
        elif between == "store_pages":
            self.damage_store_pages(
                tenant,
                data.draw(st.integers(0, 1 << 10), label="page"),
                data.draw(st.integers(0, SEALED_PAGE_BYTES - 1), label="byte"),
            )
        elif between == "older_log":
            snapshot = data.draw(st.sampled_from(["delete", "older"]), label="snapshot")
            self.older_log_under_newer_store(tenant, snapshot)
        elif between == "stream_index":
            self.damage_stream_index(
                tenant,
                data.draw(
                    st.sampled_from(["flip", "cut", "cut_at_extent", "delete"]), label="damage"
                ),
                data.draw(st.integers(0, 1 << 16), label="byte"),
                data.draw(st.integers(0, 7), label="bit"),
                data.draw(st.booleans(), label="reader first"),
            )
        else:
            self.refused_open(
                data.draw(
                    st.sampled_from(["in_use", "master_key_missing", "layout_damaged"]),
                    label="refusal",
                ),
                data.draw(st.integers(0, 1 << 10), label="byte"),
                data.draw(st.integers(0, 7), label="bit"),
            )

    def aside_write(self, tenant: TenantId) -> None:
        """One SQL write that succeeds: a new row of the table `aside` (made on first use)."""
        if "aside" not in self.models[int(tenant)].table_names():
            self.sql_write_checked(tenant, "CREATE TABLE aside (n BIGINT PRIMARY KEY, t TEXT)", ())
            return
        self.aside_rows += 1
        self.sql_write_checked(
            tenant, "INSERT INTO aside VALUES (?, ?)", (self.aside_rows, f"row {self.aside_rows}")
        )

    def store_set_aside(self, tenant: TenantId, statements: list[Statement], crash: bool) -> None:
        """The store behind the log: a durable copy of it, taken after a write, put back
        after more writes and a close or a crash (what a crash that lost the store's
        unsynced commits leaves). The open catches it up from the log: every row agrees."""
        self.aside_write(tenant)
        self.db.sync()  # the store is durable as of that write: its files are whole
        store = self.tenant_folder(tenant) / STORE_FOLDER
        kept = self.work / "store-copy"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(store, kept)
        self.aside_write(tenant)  # most often the very next record
        for statement in statements:
            self.sql_write_checked(tenant, *statement)
        if crash:
            self.db._abandon()
        else:
            self.close_all()
        shutil.rmtree(store)
        shutil.copytree(kept, store)
        shutil.rmtree(kept)
        set_aside_before = sorted(p.name for p in store.parent.glob(STORE_FOLDER + ".*"))
        self.reopen_all()
        # Behind is not damaged nor stale: nothing is set aside, it catches up in place.
        self.agree(
            "stores set aside",
            set_aside_before,
            sorted(p.name for p in store.parent.glob(STORE_FOLDER + ".*")),
        )

    def damage_store_pages(self, tenant: TenantId, page: int, byte: int) -> None:
        """A bit flipped in one store page past the superblock copies (page `page` modulo
        the pages in use), between a close and the next open: a page the store reads is
        damaged, so the store is set aside and rebuilt from the log, at open or at the
        first table read that meets it (docs/sdk.md, "Tables"); a free page is never
        read. Either way every row agrees."""
        self.close_all()
        folder = self.tenant_folder(tenant)
        path = folder / STORE_FOLDER / STORE_PAGE_FILE
        data = bytearray(path.read_bytes())
        pages = len(data) // SEALED_PAGE_BYTES
        if pages > SUPERBLOCK_COPIES:
            page = SUPERBLOCK_COPIES + page % (pages - SUPERBLOCK_COPIES)
            data[page * SEALED_PAGE_BYTES + byte] ^= 1 << (byte % 8)
            path.write_bytes(bytes(data))
        self.reopen_all()

    def older_log_under_newer_store(self, tenant: TenantId, snapshot: str) -> None:
        """The store ahead of the log: the tenant's log put back from a copy taken at a clean
        close, under the store that applied the SQL write made after it.

        With the newer kernel snapshot still there, the snapshot is evidence of lost
        history (docs/formats.md §5.4): the writer and a reader refuse with `HistoryLost`
        and change no file. With the snapshot deleted (derived) or put back with the log,
        the tenant opens as of the older log: its store names a record the log does not
        hold, is set aside as stale and rebuilt (docs/sdk.md, "Tables").
        """
        self.close_all()
        folder = self.tenant_folder(tenant)
        kept = self.work / "log-copy"
        shutil.rmtree(kept, ignore_errors=True)
        kept.mkdir()
        shutil.copytree(folder / LOG_FOLDER, kept / LOG_FOLDER)
        if (folder / SNAPSHOT_FILE).exists():
            shutil.copy2(folder / SNAPSHOT_FILE, kept / SNAPSHOT_FILE)
        older = copy.deepcopy(self.models[int(tenant)])
        self.reopen_all()
        self.aside_write(tenant)  # the older log's size is this record's position
        written = spec_log.size(self.models[int(tenant)].log)
        self.close_all()
        shutil.rmtree(folder / LOG_FOLDER)
        shutil.copytree(kept / LOG_FOLDER, folder / LOG_FOLDER)
        before = files_of(folder)
        # Lost: the records from the older log's end on; the snapshot vouches for the
        # SQL write at least (and may for the shutdown checkpoint after it).
        expected = ("history_lost", spec_log.size(older.log), True)
        newer_size = spec_log.size(self.models[int(tenant)].log)
        for read_only in (False, True):
            database = self._open(read_only=read_only)
            try:
                database.tenant(tenant)
                actual: tuple[object, ...] = ("opened",)
            except HistoryLost as lost:
                vouched = written <= lost.end_lost <= newer_size
                actual = ("history_lost", lost.first_lost, vouched)
            finally:
                database.close()
            self.agree(f"open beside a newer snapshot (read_only={read_only})", expected, actual)
            self.agree("files after a refused open", before, files_of(folder))
        (folder / SNAPSHOT_FILE).unlink()
        if snapshot == "older" and (kept / SNAPSHOT_FILE).exists():
            shutil.copy2(kept / SNAPSHOT_FILE, folder / SNAPSHOT_FILE)
        shutil.rmtree(kept)
        self.models[int(tenant)] = older
        stale_before = len(list(folder.glob(STORE_FOLDER + ".stale-*")))
        warned = self.reopen_all()
        self.agree(
            "stores set aside as stale",
            stale_before + 1,
            len(list(folder.glob(STORE_FOLDER + ".stale-*"))),
        )
        # The stream index covers records the older log does not hold: stale, rebuilt.
        assert any(STREAM_INDEX_FILE in message for message in warned), warned

    @rule()
    def read_only_beside_writer(self) -> None:
        """A reader opened beside the live writer sees every acknowledged record (all are
        durable under the sync policy), takes no write and changes no file."""
        before = files_of(self.work / "db", self.work / "keys")
        reader = self._open(read_only=True)
        try:
            self.agree("tenants seen by a reader", list(TENANTS), sorted(reader.tenants()))
            for tenant in TENANTS:
                handle = reader.tenant(tenant)
                self.check_handle(int(tenant), handle, "a reader")
                self.agree("a reader's writes", ["read_only"] * 3, self.writes_refused(handle))
        finally:
            reader.close()
        self.agree("files after a reader", before, files_of(self.work / "db", self.work / "keys"))

    def damage_stream_index(
        self, tenant: TenantId, damage: str, byte: int, bit: int, reader_first: bool
    ) -> None:
        """streams.vsix damaged between a close and the next open (docs/formats.md §5.8).

        Answers never change. A flip in the header's checked bytes or in an extent
        header, and a cut that loses part of an extent, are noticed: a warning names
        the file (at open or at the read that meets it) and the index is rebuilt from
        the log. A cut that loses only space past the last extent is no damage.
        """
        self.close_all()
        path = self.tenant_folder(tenant) / STREAM_INDEX_FILE
        data = path.read_bytes()
        extents = vsix_extents(data)
        extents_end = extents[-1][1] if extents else VSIX_HEADER_BYTES
        noticed: bool | None = None  # None: either (damage the file's checks do not cover)
        if damage == "flip":
            at = byte % len(data)
            path.write_bytes(data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :])
            heads = [(start, start + VSIX_EXTENT_HEAD_BYTES) for start, _ in extents]
            heads.append((extents_end, extents_end + VSIX_EXTENT_HEAD_BYTES))  # read, must be 0
            if at < VSIX_HEADER_CHECKED_BYTES or any(lo <= at < hi for lo, hi in heads):
                noticed = True
        elif damage in ("cut", "cut_at_extent"):
            ends = [end for _, end in extents] or [VSIX_HEADER_BYTES]
            at = byte % len(data) if damage == "cut" else ends[byte % len(ends)]
            path.write_bytes(data[:at])
            # The header vouches for the entries naming records below P (bytes 8..16); those
            # at or past it are not trusted (dropped at open), and an empty entry is 0.
            covered = int.from_bytes(data[8:16], "little")
            order = {1: "<", 2: ">"}[data[5]]
            vouched = any(
                0 < log_offset < covered
                for start, end in extents
                if start >= at
                for _, log_offset in struct.iter_unpack(
                    order + "QQ", data[start + VSIX_EXTENT_HEAD_BYTES : end]
                )
            )
            if at == 0:
                noticed = None  # an empty file: where no index was yet, one is made from the log
            elif at < VSIX_HEADER_BYTES or any(
                start + VSIX_EXTENT_HEAD_BYTES <= at < end for start, end in extents
            ):
                noticed = True  # a header or an extent cut short
            elif at < extents_end:
                noticed = vouched  # whole extents lost: noticed if they held vouched entries
            elif at >= extents_end:
                noticed = False  # only space past the last extent
        else:
            at = -1
            path.unlink()
        damaged = files_of(self.work / "db")
        if reader_first:
            reader = self._open(read_only=True)
            try:
                for each in TENANTS:
                    self.check_handle(int(each), reader.tenant(each), "a reader")
            finally:
                reader.close()
            self.agree("files after a reader", damaged, files_of(self.work / "db"))
        warned = self.reopen_all()
        found = any(str(path) in message for message in warned)
        if noticed is not None:
            self.agree(f"{damage} at byte {at} of {STREAM_INDEX_FILE} noticed", noticed, found)

    def refused_open(self, refusal: str, byte: int, bit: int) -> None:
        """Opens that must be refused raise their typed error and change no file
        (docs/sdk.md, "One writer, any number of readers")."""
        database = self.work / "db"
        if refusal == "in_use":
            before = files_of(database)
            try:
                self._open().close()
                outcome = "opened"
            except InUse:
                outcome = "in_use"
            self.agree("a second writer", "in_use", outcome)
            self.agree("files after a refused open", before, files_of(database))
            return
        self.close_all()
        kept = self.work / "kept"
        if refusal == "master_key_missing":
            (database / MASTER_KEY_FILE).rename(kept)
            openers, expected = [False], "key_error"
        else:
            layout = database / LAYOUT_FILE
            shutil.copy2(layout, kept)
            data = layout.read_bytes()
            at = byte % len(data)
            layout.write_bytes(data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :])
            openers, expected = [False, True], f"corruption {layout}"
        before = files_of(database)
        for read_only in openers:
            try:
                self._open(read_only=read_only).close()
                outcome = "opened"
            except KeyError_:
                outcome = "key_error"
            except CorruptionError as failure:
                outcome = f"corruption {failure.file}"
            self.agree(f"{refusal}: open (read_only={read_only})", expected, outcome)
            self.agree("files after a refused open", before, files_of(database))
        kept.rename(
            database / (MASTER_KEY_FILE if refusal == "master_key_missing" else LAYOUT_FILE)
        )
        self.reopen_all()

    @staticmethod
    def writes_refused(handle: verity.TenantHandle) -> list[str]:
        """How a stream creation, a SQL write and a checkpoint through `handle` end."""
        outcomes: list[str] = []
        for write in (
            lambda: handle.create_stream("by-reader", DataClass.PUBLIC),
            lambda: handle.execute("CREATE TABLE r (a BIGINT PRIMARY KEY)"),
            handle.checkpoint,
        ):
            try:
                write()
                outcomes.append("written")
            except ReadOnly:
                outcomes.append("read_only")
        return outcomes

    def check_handle(self, tenant: int, handle: verity.TenantHandle, who: str) -> None:
        """Streams, every event, log size, `committed` and every table, as the model has them."""
        model = self.models[tenant]
        self.agree(
            f"streams of tenant {tenant} seen by {who}",
            [(s.stream, s.name, s.data_class) for s in model.kernel.streams],
            [(int(s.stream_id), s.name, int(s.data_class)) for s in handle.streams()],
        )
        for stream in model.kernel.streams:
            self.agree(
                f"events of stream {stream.stream} seen by {who}",
                model.events(stream.stream),
                handle.read_events(StreamId(stream.stream), Offset(0), 1 << 30),
            )
        self.agree(f"log size seen by {who}", spec_log.size(model.log), handle.log_size())
        for key in self.keys:
            committed = handle.committed(IdempotencyId(key))
            self.agree(
                f"committed({key.hex()}) seen by {who}",
                spec_kernel.committed(model.kernel, key),
                None if committed is None else int(committed),
            )
        self.check_tables(tenant, handle)

    def check_replay(self) -> None:
        for tenant, model in self.models.items():
            replayed = spec_kernel.replay(tenant, tuple(model.payloads), RETENTION_NS)
            # The spec's own replay agrees with its live state on everything observable.
            self.agree("spec replay streams", model.kernel.streams, replayed.streams)
            # Everything every earlier session wrote reads back, under each session's key.
            handle = self.db.tenant(TenantId(tenant), create=True)
            for stream in model.kernel.streams:
                self.agree(
                    f"all events of stream {stream.stream} after reopen",
                    model.events(stream.stream),
                    handle.read_events(StreamId(stream.stream), Offset(0), 1 << 30),
                )
            self.check_tables(tenant, handle)

    # ------------------------------------------------------------ invariants

    @invariant()
    def same_streams_sizes_and_keys(self) -> None:
        for tenant in TENANTS:
            model = self.models[int(tenant)]
            handle = self.db.tenant(tenant, create=True)
            expected_streams = [(s.stream, s.name, s.data_class) for s in model.kernel.streams]
            actual_streams = [
                (int(s.stream_id), s.name, int(s.data_class)) for s in handle.streams()
            ]
            self.agree(f"streams of tenant {tenant}", expected_streams, actual_streams)
            self.agree(f"log size of tenant {tenant}", spec_log.size(model.log), handle.log_size())
            for key in self.keys:
                expected = spec_kernel.committed(model.kernel, key)
                actual = handle.committed(IdempotencyId(key))
                self.agree(
                    f"committed({key.hex()})", expected, None if actual is None else int(actual)
                )

    def teardown(self) -> None:
        try:
            self.db.close()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
