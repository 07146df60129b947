"""The lockstep state machine of the whole embedded SDK against a model built from the spec.

The model keeps, per tenant, the spec kernel state (`verity_spec.kernel`) and
the spec log (`verity_spec.log`) the tenant's records would form; the
implementation is `verity.open(...)` on real files, with encryption, keys and
signing. Hypothesis drives both with the same operations: create streams
(good, duplicate, empty and oversized names, every data class), appends (to
own, unknown and another tenant's streams, with fresh and reused idempotency
ids, right and stale expected offsets, empty and bad batches), reads with
byte limits, `committed`, explicit checkpoints, close/reopen and crash (stop
without shutdown, then open). After every step the observations agree:
results or error kinds, stream lists, events read back, log sizes.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import verity
import verity_spec.kernel as spec_kernel
import verity_spec.log as spec_log
import verity_spec.signing as spec_signing
from verity import CheckpointPolicy, DataClass, IdempotencyId, Offset, StreamId, TenantId
from verity.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, VerityError

NOW_START = 1_767_225_600_000_000_000
TENANTS = (TenantId(1), TenantId(2))
RETENTION_NS = 50_000
EVERY_N_RECORDS = 4

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
    signer: bytes | None = None
    """The tenant's signing key (its seed), once the SDK made it; the model signs with it."""
    holds_ciphertext: bool = False
    """Whether an event of an encrypted data class (all but PUBLIC) is in the log.

    The SDK stores those as ciphertext, which the spec does not describe yet
    (issue 11 §4): from that record on, the model's records, chain hashes
    and checkpoint statements are not the SDK's bytes.
    """

    def events(self, stream: int) -> list[bytes]:
        found: list[bytes] = []
        for payload in self.payloads:
            event = spec_kernel.decode_event(payload)
            if isinstance(event, spec_kernel.EventsAppended) and event.stream == stream:
                found.extend(event.events)
        return found


POLICY = spec_log.CheckpointPolicy(every_n_records=EVERY_N_RECORDS)

names = st.one_of(
    st.sampled_from(["audit", "labs", "billing", "notes"]),
    st.sampled_from(["", "x" * 129, "tab\there"]),
    st.text(alphabet="abcdefgh", min_size=1, max_size=6),
)
event_lists = st.lists(st.binary(max_size=40), min_size=0, max_size=5)


class SdkLockstep(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.work = Path(tempfile.mkdtemp(prefix="verity-sdk-lockstep-"))
        self.now = NOW_START
        self.models = {
            int(t): TenantModel(spec_kernel.initial_state(int(t), RETENTION_NS)) for t in TENANTS
        }
        self.keys: list[bytes] = []
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

    def _open(self) -> verity.Verity:
        return verity.open(
            self.work / "db",
            clock=self._clock,
            checkpoint_policy=CheckpointPolicy(every_n_records=EVERY_N_RECORDS),
            idempotency_retention_ns=RETENTION_NS,
            signing_key_dir=self.work / "keys",
            create=True,
        )

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

    @staticmethod
    def agree(what: str, expected: object, actual: object) -> None:
        assert actual == expected, f"{what}: model gave {expected!r}, SDK gave {actual!r}"

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
            expected[tenant] = (sizes[tenant], signed, sizes[tenant] - signed, public_key, None)
        actual = {
            int(t.tenant): (
                t.records_checked,
                t.signed_through,
                t.not_yet_signed,
                t.public_key,
                t.key_problem,
            )
            for t in report.tenants
        }
        self.agree("verify per tenant", expected, actual)

    @rule(step=st.integers(0, 100_000))
    def reopen(self, step: int) -> None:
        self.tick(step)
        for model in self.models.values():
            model.log = spec_log.shutdown(model.log, self.now, POLICY, model.signer)
        self.db.close()
        self.db = self._open()
        self.check_replay()

    @precondition(lambda self: any(m.payloads for m in self.models.values()))
    @rule(step=st.integers(0, 100_000))
    def crash(self, step: int) -> None:
        # Every append was acknowledged after its fsync: a crash loses nothing.
        self.tick(step)
        self.db._abandon()
        self.db = self._open()
        self.check_replay()

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
        self.db.close()
        shutil.rmtree(self.work, ignore_errors=True)
