"""The fast kernel (`verity.kernel`): what a shell and its callers can observe.

Equality with the spec over random command sequences is the lockstep machine's
job (tests/test_conformance_kernel.py); these tests pin the behaviour one rule
at a time, with readable examples.
"""

from __future__ import annotations

import dataclasses
import struct

import pytest

import verity.kernel as kernel_module
from verity.errors import CorruptionError, InvalidArgument, NotFound
from verity.kernel import (
    BATCH_BYTES_MAX,
    BATCH_EVENTS_MAX,
    RETENTION_NS_DEFAULT,
    STREAM_NAME_BYTES_MAX,
    AppendBatch,
    AppendRecord,
    Applied,
    CreateStream,
    Kernel,
    Rejected,
    RejectReason,
    Reply,
    StreamInfo,
    decode_events,
)
from verity.types import DataClass, Offset, StreamId, TenantId

TENANT = TenantId(7)
T0 = 1_767_225_600_000_000_000


def stream_of(tenant: int, number: int) -> int:
    return ((tenant & 0xFFFF_FFFF) << 32) | number


def outcome_of(effects: tuple[AppendRecord | Reply, ...]) -> Applied | Rejected:
    reply = effects[-1]
    assert isinstance(reply, Reply)
    return reply.outcome


def new_kernel(retention_ns: int = RETENTION_NS_DEFAULT) -> tuple[Kernel, StreamId]:
    kernel = Kernel(TENANT, retention_ns)
    outcome = outcome_of(kernel.apply(CreateStream(TENANT, "orders", DataClass.PII, T0)))
    assert isinstance(outcome, Applied)
    return kernel, outcome.stream


def append(
    stream: int,
    events: object = (b"event",),
    *,
    key: object = None,
    expected: object = None,
    timestamp: object = T0 + 1,
    tenant: object = TENANT,
) -> AppendBatch:
    return AppendBatch(tenant, stream, events, key, expected, timestamp)  # type: ignore[arg-type]


def create(
    name: object = "payments",
    data_class: object = 1,
    timestamp: object = T0,
    tenant: object = TENANT,
) -> CreateStream:
    return CreateStream(tenant, name, data_class, timestamp)  # type: ignore[arg-type]


def rejection(kernel: Kernel, command: CreateStream | AppendBatch) -> RejectReason:
    effects = kernel.apply(command)
    assert len(effects) == 1, "a rejected command records nothing"
    outcome = outcome_of(effects)
    assert isinstance(outcome, Rejected)
    return outcome.reason


# ---------------------------------------------------------------- streams


def test_streams_are_numbered_from_one_with_the_tenant_bits() -> None:
    tenant = TenantId((9 << 32) | 7)
    kernel = Kernel(tenant)
    for number, name in enumerate(["a", "b", "c"], start=1):
        effects = kernel.apply(create(name, DataClass.INTERNAL, tenant=tenant))
        assert isinstance(effects[0], AppendRecord)
        assert effects[1] == Reply(Applied(StreamId((7 << 32) | number), Offset(0), False))
    assert [info.name for info in kernel.streams()] == ["a", "b", "c"]
    assert kernel.stream((7 << 32) | 2) == StreamInfo(StreamId((7 << 32) | 2), "b", DataClass(1))
    assert kernel.stream((8 << 32) | 2) is None
    assert kernel.next_offset((7 << 32) | 3) == 0


@pytest.mark.parametrize(
    "name",
    ["", "n" * (STREAM_NAME_BYTES_MAX + 1), "é" * 65, "tab\t", "nul\x00", "\ud800", 5, None, b"x"],
)
def test_a_bad_stream_name_is_rejected(name: object) -> None:
    kernel, _ = new_kernel()
    assert rejection(kernel, create(name)) is RejectReason.INVALID_NAME
    assert len(kernel.streams()) == 1


def test_names_up_to_128_utf8_bytes_are_accepted() -> None:
    kernel, _ = new_kernel()
    for name in ["n" * STREAM_NAME_BYTES_MAX, "é" * 64, "名前", " spaced "]:
        assert isinstance(outcome_of(kernel.apply(create(name))), Applied)
    assert rejection(kernel, create("é" * 64)) is RejectReason.DUPLICATE_NAME


@pytest.mark.parametrize("data_class", [5, -1, 255, True, "1", None, 1.0])
def test_a_bad_data_class_is_rejected(data_class: object) -> None:
    # 1.0 == 1, but it is not an int and has no byte to be encoded as.
    kernel, _ = new_kernel()
    assert rejection(kernel, create(data_class=data_class)) is RejectReason.INVALID_DATA_CLASS


def test_too_many_streams_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2**32 - 1 streams do not fit in a test; lower the limit to reach the rule.
    kernel, _ = new_kernel()
    monkeypatch.setattr(kernel_module, "_U32_MAX", 2)
    assert isinstance(outcome_of(kernel.apply(create("second"))), Applied)
    assert rejection(kernel, create("third")) is RejectReason.TOO_MANY_STREAMS


# ---------------------------------------------------------------- appends


def test_appends_get_dense_offsets_and_record_their_events() -> None:
    kernel, stream = new_kernel()
    first = kernel.apply(append(stream, (b"a", b"b")))
    second = kernel.apply(append(stream, (b"c",), expected=2))
    assert outcome_of(first) == Applied(stream, Offset(0), False)
    assert outcome_of(second) == Applied(stream, Offset(2), False)
    record = second[0]
    assert isinstance(record, AppendRecord)
    assert decode_events(record.payload) == (stream, 2, (b"c",))
    assert kernel.next_offset(stream) == 3


def test_the_encoded_event_is_the_documented_bytes() -> None:
    kernel, stream = new_kernel()
    key = bytes(range(16))
    [record, _] = kernel.apply(append(stream, (b"hi", b""), key=key, timestamp=T0 + 5))
    assert isinstance(record, AppendRecord)
    expected = (
        struct.pack(">BBQQQB", 1, 2, T0 + 5, stream, 0, 1)
        + key
        + struct.pack(">I", 2)
        + struct.pack(">I", 2)
        + b"hi"
        + struct.pack(">I", 0)
    )
    assert record.payload == expected
    created = Kernel(TENANT).apply(create("ab", DataClass.PHI, timestamp=9))[0]
    assert isinstance(created, AppendRecord)
    assert created.payload == struct.pack(">BBQQBH", 1, 1, 9, stream_of(7, 1), 4, 2) + b"ab"


def test_expected_offset_must_be_the_next_offset() -> None:
    kernel, stream = new_kernel()
    kernel.apply(append(stream))
    assert rejection(kernel, append(stream, expected=0)) is RejectReason.OFFSET_MISMATCH
    assert rejection(kernel, append(stream, expected=2)) is RejectReason.OFFSET_MISMATCH
    assert isinstance(outcome_of(kernel.apply(append(stream, expected=1))), Applied)


@pytest.mark.parametrize(
    ("command_fields", "reason"),
    [
        ({"tenant": 8}, RejectReason.WRONG_TENANT),
        ({"tenant": "7"}, RejectReason.WRONG_TENANT),
        ({"timestamp": -1}, RejectReason.INVALID_TIMESTAMP),
        ({"timestamp": 2**64}, RejectReason.INVALID_TIMESTAMP),
        ({"timestamp": True}, RejectReason.INVALID_TIMESTAMP),
        ({"key": b"short"}, RejectReason.INVALID_IDEMPOTENCY_ID),
        ({"key": "0" * 16}, RejectReason.INVALID_IDEMPOTENCY_ID),
        ({"events": ("text",)}, RejectReason.INVALID_EVENT),
        ({"events": [b"a list"]}, RejectReason.INVALID_EVENT),
        ({"events": ()}, RejectReason.EMPTY_BATCH),
        ({"events": (b"",) * (BATCH_EVENTS_MAX + 1)}, RejectReason.BATCH_TOO_LARGE),
        ({"events": (bytes(BATCH_BYTES_MAX // 2 + 1),) * 2}, RejectReason.BATCH_TOO_LARGE),
        ({"expected": -1}, RejectReason.INVALID_EXPECTED_OFFSET),
        ({"expected": "0"}, RejectReason.INVALID_EXPECTED_OFFSET),
        ({"stream": stream_of(8, 1)}, RejectReason.STREAM_OF_ANOTHER_TENANT),
        ({"stream": stream_of(7, 2)}, RejectReason.UNKNOWN_STREAM),
        ({"stream": "1"}, RejectReason.UNKNOWN_STREAM),
        ({"stream": 2**64}, RejectReason.UNKNOWN_STREAM),
    ],
)
def test_a_bad_append_is_rejected_and_changes_nothing(
    command_fields: dict[str, object], reason: RejectReason
) -> None:
    kernel, stream = new_kernel()
    fields: dict[str, object] = {"stream": stream, **command_fields}
    assert rejection(kernel, append(**fields)) is reason  # type: ignore[arg-type]
    assert kernel.next_offset(stream) == 0
    assert kernel.log_time == T0


def test_batches_at_the_limits_are_accepted() -> None:
    kernel, stream = new_kernel()
    at_count = kernel.apply(append(stream, (b"",) * BATCH_EVENTS_MAX))
    at_bytes = kernel.apply(append(stream, (bytes(BATCH_BYTES_MAX),)))
    assert outcome_of(at_count) == Applied(stream, Offset(0), False)
    assert outcome_of(at_bytes) == Applied(stream, Offset(BATCH_EVENTS_MAX), False)


def test_the_first_problem_in_check_order_is_reported() -> None:
    kernel, _ = new_kernel()
    everything_wrong = append(99, (), key=b"short", expected=-1, timestamp=-1, tenant=8)
    assert rejection(kernel, everything_wrong) is RejectReason.WRONG_TENANT
    assert rejection(kernel, create("", 9, timestamp=-1)) is RejectReason.INVALID_TIMESTAMP
    assert rejection(kernel, create("orders", 9)) is RejectReason.INVALID_DATA_CLASS


def test_a_command_of_another_type_is_an_invalid_argument() -> None:
    kernel, _ = new_kernel()
    with pytest.raises(InvalidArgument, match="command"):
        kernel.apply("append please")  # type: ignore[arg-type]


# ---------------------------------------------------------------- idempotency


def test_a_retry_returns_the_original_offset_and_appends_nothing() -> None:
    kernel, stream = new_kernel()
    key = b"k" * 16
    kernel.apply(append(stream, (b"x",)))
    original = kernel.apply(append(stream, (b"a", b"b"), key=key, expected=1))
    assert outcome_of(original) == Applied(stream, Offset(1), False)
    # Different events, a stale expected offset, even another stream: the same answer.
    for retry in [
        append(stream, (b"a", b"b"), key=key, expected=1),
        append(stream, (b"other",), key=key, expected=0),
        append(stream_of(7, 5), (b"z",), key=key),
    ]:
        effects = kernel.apply(retry)
        assert effects == (Reply(Applied(stream, Offset(1), True)),)
    assert kernel.next_offset(stream) == 3
    assert kernel.committed(key) == 1
    assert kernel.committed(b"n" * 16) is None


def test_an_id_is_forgotten_once_an_event_is_more_than_retention_later() -> None:
    retention = 1_000
    kernel, stream = new_kernel(retention)
    key = b"k" * 16
    kernel.apply(append(stream, key=key, timestamp=T0 + 10))
    kernel.apply(append(stream, timestamp=T0 + 10 + retention))
    assert kernel.committed(key) == 0  # exactly retention later: still remembered
    # A rejected command, however late, forgets nothing.
    kernel.apply(append(stream, (), timestamp=T0 + 100 * retention))
    assert kernel.committed(key) == 0
    kernel.apply(append(stream, timestamp=T0 + 11 + retention))
    assert kernel.committed(key) is None
    again = kernel.apply(append(stream, key=key, timestamp=T0 + 12 + retention))
    assert outcome_of(again) == Applied(stream, Offset(3), False)


def test_expiry_follows_log_time_when_timestamps_step_back() -> None:
    retention = 1_000
    kernel, stream = new_kernel(retention)
    first, second, stale = b"1" * 16, b"2" * 16, b"3" * 16
    late = T0 + 10 * retention
    kernel.apply(append(stream, key=first, timestamp=late))
    kernel.apply(append(stream, key=second, timestamp=late - retention // 2))
    kernel.apply(append(stream, key=stale, timestamp=late - 10 * retention))
    assert kernel.log_time == late
    assert kernel.committed(stale) == 2  # past retention, but kept until the next event
    kernel.apply(append(stream, timestamp=late + retention // 2 + 1))
    # `second` committed after `first` but earlier in log time: only it is forgotten.
    assert (kernel.committed(first), kernel.committed(second), kernel.committed(stale)) == (
        0,
        None,
        None,
    )


# ---------------------------------------------------------------- decide and commit


def test_decide_changes_nothing_until_commit() -> None:
    kernel, stream = new_kernel()
    decision = kernel.decide(append(stream, (b"a", b"b", b"c"), key=b"k" * 16, timestamp=T0 + 9))
    assert decision.outcome == Applied(stream, Offset(0), False)
    assert (decision.stream, decision.first_offset, decision.count) == (stream, 0, 3)
    assert decision.data_class is DataClass.PII
    assert decision.payload is not None
    assert decode_events(decision.payload) == (stream, 0, (b"a", b"b", b"c"))
    assert kernel.next_offset(stream) == 0 and kernel.committed(b"k" * 16) is None
    assert kernel.log_time == T0
    kernel.commit(decision)
    assert kernel.next_offset(stream) == 3 and kernel.committed(b"k" * 16) == 0
    assert kernel.log_time == T0 + 9


def test_a_stream_creation_decision_has_no_events() -> None:
    kernel, _ = new_kernel()
    decision = kernel.decide(create("audit", DataClass.PUBLIC))
    assert (decision.count, decision.first_offset, decision.data_class) == (
        0,
        0,
        DataClass.PUBLIC,
    )
    assert kernel.stream(decision.stream) is None
    kernel.commit(decision)
    assert kernel.stream(decision.stream) == StreamInfo(
        StreamId(decision.stream), "audit", DataClass.PUBLIC
    )


def test_decisions_that_record_nothing() -> None:
    kernel, stream = new_kernel()
    rejected = kernel.decide(append(stream_of(7, 9)))
    assert rejected.payload is None and rejected.outcome == Rejected(RejectReason.UNKNOWN_STREAM)
    # No stream concerned: the most protected class, never a weaker one.
    assert (rejected.stream, rejected.count, rejected.data_class) == (0, 0, DataClass.PHI)
    kernel.commit(rejected)  # a no-op
    kernel.apply(append(stream, key=b"k" * 16))
    duplicate = kernel.decide(append(stream, key=b"k" * 16))
    assert duplicate.payload is None and duplicate.outcome == Applied(stream, Offset(0), True)
    assert (duplicate.stream, duplicate.first_offset, duplicate.count) == (stream, 0, 0)
    assert kernel.next_offset(stream) == 1


def test_a_decision_can_only_be_committed_against_the_state_it_saw() -> None:
    kernel, stream = new_kernel()
    first = kernel.decide(append(stream))
    second = kernel.decide(append(stream))
    kernel.commit(first)
    with pytest.raises(AssertionError, match="older state"):
        kernel.commit(second)
    with pytest.raises(AssertionError, match="older state"):
        kernel.commit(first)
    twin, _ = new_kernel()
    with pytest.raises(AssertionError, match="another kernel"):
        twin.commit(kernel.decide(append(stream)))  # same version, other kernel
    assert kernel.next_offset(stream) == 1 and twin.next_offset(stream) == 0


# ---------------------------------------------------------------- replay


def recorded_history() -> tuple[Kernel, list[bytes], list[Applied | Rejected]]:
    kernel = Kernel(TENANT, retention_ns=1_000)
    commands: list[CreateStream | AppendBatch] = [
        create("orders", 3, timestamp=T0),
        create("audit", 0, timestamp=T0 + 1),
        append(stream_of(7, 1), (b"a", b"b"), key=b"1" * 16, timestamp=T0 + 2),
        append(stream_of(7, 2), (b"c",), timestamp=T0 + 3),
        append(stream_of(7, 1), (b"d",), key=b"2" * 16, timestamp=T0 + 1_500),
        append(stream_of(7, 1), (b"e",), key=b"3" * 16, timestamp=T0 + 700),
        append(stream_of(7, 9), (b"rejected",), timestamp=T0 + 1_600),
    ]
    payloads: list[bytes] = []
    outcomes: list[Applied | Rejected] = []
    for command in commands:
        effects = kernel.apply(command)
        if isinstance(effects[0], AppendRecord):
            payloads.append(effects[0].payload)
            outcomes.append(outcome_of(effects))
    return kernel, payloads, outcomes


def test_replay_rebuilds_the_same_kernel() -> None:
    original, payloads, outcomes = recorded_history()
    rebuilt = Kernel(TENANT, retention_ns=1_000)
    decisions = [rebuilt.replay(payload) for payload in payloads]
    assert [d.outcome for d in decisions] == outcomes
    assert [d.payload for d in decisions] == payloads
    assert [d.count for d in decisions] == [0, 0, 2, 1, 1, 1]
    assert rebuilt.streams() == original.streams()
    for info in original.streams():
        assert rebuilt.next_offset(info.stream_id) == original.next_offset(info.stream_id)
    for key in [b"1" * 16, b"2" * 16, b"3" * 16]:
        assert rebuilt.committed(key) == original.committed(key)
    assert rebuilt.committed(b"1" * 16) is None  # forgotten, in both
    assert rebuilt.log_time == original.log_time == T0 + 1_500
    with pytest.raises(AssertionError):
        rebuilt.commit(decisions[-1])  # already part of the state


def _flipped(payload: bytes, index: int, value: int) -> bytes:
    return payload[:index] + bytes([value]) + payload[index + 1 :]


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda p: [p[0][:-1]], "ends before byte"),
        (lambda p: [p[0] + b"\x00"], "left over"),
        (lambda p: [b""], "ends before byte"),
        (lambda p: [_flipped(p[0], 0, 2)], "version 2"),
        (lambda p: [_flipped(p[0], 1, 3)], "event type 3"),
        (lambda p: [_flipped(p[0], 18, 5)], "data class 5"),
        (lambda p: [p[0][:-1] + b"\xff"], "not UTF-8"),
        (lambda p: [p[0][:-1] + b"\n"], "cannot name a stream"),
        (lambda p: [p[0], p[0]], "creates stream"),
        (lambda p: [p[1]], "creates stream"),
        (lambda p: [p[0], p[3]], "does not exist"),
        (lambda p: [p[0], p[1], _flipped(p[2], 26, 3)], "unknown bits"),
        (lambda p: [p[0], p[1], p[2], p[2]], "offset 0 of stream"),
        (lambda p: [p[0], p[1], p[4]], "offset 2 of stream"),
    ],
)
def test_a_damaged_or_misplaced_payload_is_corruption(damage: object, problem: str) -> None:
    _, payloads, _ = recorded_history()
    damaged = damage(payloads)  # type: ignore[operator]
    kernel = Kernel(TENANT, retention_ns=1_000)
    with pytest.raises(CorruptionError, match=problem) as caught:
        for payload in damaged:
            kernel.replay(payload)
    assert "kernel event" in caught.value.reason


def test_replaying_an_id_that_already_committed_is_corruption() -> None:
    kernel, stream = new_kernel()
    [record, _] = kernel.apply(append(stream, key=b"k" * 16))
    assert isinstance(record, AppendRecord)
    moved = struct.pack(">Q", 1).join([record.payload[:18], record.payload[26:]])
    with pytest.raises(CorruptionError, match="already committed"):
        kernel.replay(moved)


def test_decode_events_refuses_a_stream_creation() -> None:
    [created, _] = Kernel(TENANT).apply(create())
    assert isinstance(created, AppendRecord)
    with pytest.raises(CorruptionError, match="event type 1"):
        decode_events(created.payload)


# ---------------------------------------------------------------- the API surface


def test_constructor_and_queries_check_their_arguments() -> None:
    with pytest.raises(InvalidArgument, match="tenant"):
        Kernel(-1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="retention_ns"):
        Kernel(TENANT, 2**64)
    kernel, stream = new_kernel()
    assert kernel.tenant == TENANT and kernel.retention_ns == RETENTION_NS_DEFAULT
    with pytest.raises(NotFound, match="stream"):
        kernel.next_offset(stream + 1)
    with pytest.raises(InvalidArgument, match="idempotency_id"):
        kernel.committed("k" * 16)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="payload"):
        kernel.replay("not bytes")  # type: ignore[arg-type]


def test_outcomes_and_effects_are_frozen_values() -> None:
    kernel, stream = new_kernel()
    record, reply = kernel.apply(append(stream))
    assert isinstance(reply, Reply) and isinstance(reply.outcome, Applied)
    assert reply == Reply(Applied(stream, Offset(0), False))
    assert type(reply.outcome.offset) is Offset and type(reply.outcome.stream) is StreamId
    with pytest.raises(dataclasses.FrozenInstanceError):
        reply.outcome.offset = Offset(5)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.payload = b""  # type: ignore[misc, union-attr]
    assert set(kernel_module.__all__) >= {"Kernel", "Decision", "decode_events", "RejectReason"}
    assert [reason.value for reason in RejectReason][:3] == [
        "wrong_tenant",
        "invalid_timestamp",
        "invalid_name",
    ]
