"""Foundation value types: valid values build, invalid ones cannot be built."""

from __future__ import annotations

import pytest

import verity
from verity.errors import InvalidArgument, VerityError
from verity.types import (
    Checkpoint,
    CheckpointPolicy,
    Generation,
    Hash,
    IdempotencyId,
    Offset,
    RecordHeader,
    RecordKind,
    RecoveryReason,
    RecoveryRecord,
    StreamId,
    SyncMode,
    SyncPolicy,
    TenantId,
    Timestamp,
)


@pytest.mark.parametrize("cls", [Offset, TenantId, StreamId, Generation, Timestamp])
def test_u64_identifiers_reject_out_of_range_and_non_ints(cls: type[int]) -> None:
    assert cls(0) == 0
    assert cls(2**64 - 1) == 2**64 - 1
    for bad in (-1, 2**64, 1.5, "3", True, None):
        with pytest.raises(InvalidArgument) as info:
            cls(bad)  # type: ignore[arg-type]
        assert repr(bad)[:20] in str(info.value)
        assert isinstance(info.value, VerityError)


def test_identifier_types_keep_their_name_in_repr() -> None:
    assert repr(Offset(7)) == "Offset(7)"
    assert repr(TenantId(3)) == "TenantId(3)"


def test_timestamp_now_monotonic_never_goes_back() -> None:
    first = Timestamp.now_monotonic(None, now_ns=1_000)
    assert first == 1_000
    # The clock stepped backwards: the timestamp still moves forward by 1 ns.
    second = Timestamp.now_monotonic(first, now_ns=500)
    assert second == 1_001
    third = Timestamp.now_monotonic(second, now_ns=5_000)
    assert third == 5_000
    assert Timestamp.now_monotonic(None) > 1_600_000_000 * 10**9


def test_hash_is_exactly_32_bytes() -> None:
    assert Hash(bytes(32)) == Hash.zero()
    with pytest.raises(InvalidArgument, match="32 bytes, got 31"):
        Hash(bytes(31))
    with pytest.raises(InvalidArgument, match="must be bytes"):
        Hash("0" * 32)  # type: ignore[arg-type]


def test_idempotency_id_generate_and_round_trip() -> None:
    first = IdempotencyId.generate()
    second = IdempotencyId.generate()
    assert first != second
    assert len(first) == 16
    assert IdempotencyId.from_bytes(bytes(first)) == first
    with pytest.raises(InvalidArgument, match="16 bytes, got 15"):
        IdempotencyId.from_bytes(b"x" * 15)


def test_record_header_validates_payload_len_and_kind() -> None:
    header = RecordHeader(Offset(0), Hash.zero(), Timestamp(1), 10, RecordKind.DATA)
    assert header.payload_len == 10
    with pytest.raises(InvalidArgument, match="payload_len"):
        RecordHeader(Offset(0), Hash.zero(), Timestamp(1), -1, RecordKind.DATA)
    with pytest.raises(InvalidArgument, match="kind"):
        RecordHeader(Offset(0), Hash.zero(), Timestamp(1), 1, 1)  # type: ignore[arg-type]


def test_checkpoint_policy_defaults_and_validation() -> None:
    policy = CheckpointPolicy()
    assert (policy.every_n_records, policy.on_shutdown, policy.explicit_only) == (1000, True, False)
    with pytest.raises(InvalidArgument, match="every_n_records=0"):
        CheckpointPolicy(every_n_records=0)


def test_checkpoint_record_count_equals_offset() -> None:
    with pytest.raises(InvalidArgument, match="record_count"):
        Checkpoint(Offset(5), Hash.zero(), 4, Hash.zero(), Timestamp(1))


def test_sync_policy_constructors() -> None:
    assert SyncPolicy.every_record().mode is SyncMode.EVERY_RECORD
    assert SyncPolicy.every_batch().mode is SyncMode.EVERY_BATCH
    group = SyncPolicy.group_commit(max_delay_ms=2, max_batch=64)
    assert (group.mode, group.max_delay_ms, group.max_batch) == (SyncMode.GROUP_COMMIT, 2, 64)
    with pytest.raises(InvalidArgument, match="max_batch=0"):
        SyncPolicy.group_commit(max_batch=0)


def test_recovery_record_generation_must_advance_by_one() -> None:
    record = RecoveryRecord(
        generation=Generation(1),
        previous_generation=Generation(0),
        known_committed=Offset(10),
        recovery_point=Offset(10),
        discarded_range=(Offset(10), Offset(11)),
        discarded_bytes=("00000000000000000000.vlog", 900, 950),
        timestamp=Timestamp(5),
        reason=RecoveryReason.NODE_RESTART,
    )
    assert record.generation == record.previous_generation.next()
    with pytest.raises(InvalidArgument, match="generation"):
        RecoveryRecord(
            Generation(3),
            Generation(0),
            Offset(0),
            Offset(0),
            None,
            None,
            Timestamp(0),
            RecoveryReason.NODE_RESTART,
        )


def test_values_are_immutable() -> None:
    policy = CheckpointPolicy()
    with pytest.raises(AttributeError):
        policy.every_n_records = 5  # type: ignore[misc]


def test_public_export_list_is_locked() -> None:
    # Adding to the public surface is a decision: update this list on purpose.
    assert sorted(verity.__all__) == sorted(
        [
            "AppliedIndex",
            "BadRecord",
            "Checkpoint",
            "CheckpointPolicy",
            "ConsistencyProof",
            "DataClass",
            "Generation",
            "Hash",
            "IdempotencyId",
            "InclusionProof",
            "Offset",
            "QueryResult",
            "Receipt",
            "RecordHeader",
            "RecordKind",
            "RecoveryReason",
            "RecoveryRecord",
            "SignedCheckpoint",
            "StreamId",
            "StreamInfo",
            "SyncMode",
            "SyncPolicy",
            "TenantHandle",
            "TenantId",
            "TenantVerification",
            "Timestamp",
            "VerificationReport",
            "Verity",
            "__version__",
            "open",
        ]
    )
