"""The executable specification of the log, rule by rule (spec/log.py)."""

from __future__ import annotations

import icontract
import pytest

from verity_spec import log as spec
from verity_spec.errors import (
    CorruptionError,
    HistoryLostError,
    InvalidArgumentError,
    NotFoundError,
)
from verity_spec.records import (
    KIND_CHECKPOINT,
    KIND_DATA,
    ZERO_HASH,
    chain_hash,
    decode_checkpoint_payload,
)

NOW = 1_767_225_600_000_000_000
EVERY_3 = spec.CheckpointPolicy(every_n_records=3)
EXPLICIT = spec.CheckpointPolicy(explicit_only=True)


def filled(count: int, policy: spec.CheckpointPolicy = EXPLICIT) -> spec.Log:
    payloads = tuple(f"event {index}".encode() for index in range(count))
    return spec.append_batch(spec.empty_log(), payloads, NOW, policy)


def test_records_are_dense_linked_and_later_than_the_one_before() -> None:
    log = filled(5)
    assert [r.offset for r in log.records] == [0, 1, 2, 3, 4]
    assert log.records[0].prev_hash == ZERO_HASH
    for before, after in zip(log.records, log.records[1:], strict=False):
        assert after.prev_hash == chain_hash(before)
        assert after.timestamp == before.timestamp + 1
    assert spec.head_hash(log) == chain_hash(log.records[-1])


def test_a_clock_that_steps_back_still_gives_increasing_timestamps() -> None:
    log = spec.append(spec.empty_log(), b"a", NOW, EXPLICIT)
    log = spec.append(log, b"b", NOW - 1_000, EXPLICIT)
    assert log.records[1].timestamp == NOW + 1


def test_a_checkpoint_follows_every_n_data_records() -> None:
    log = filled(7, EVERY_3)
    kinds = [r.kind for r in log.records]
    assert kinds == [KIND_DATA] * 3 + [KIND_CHECKPOINT] + [KIND_DATA] * 3 + [KIND_CHECKPOINT] + [
        KIND_DATA
    ]
    statement = decode_checkpoint_payload(log.records[3].payload)
    assert statement is not None
    assert statement.record_count == 3
    assert statement.chain_hash == chain_hash(log.records[2])
    assert statement.merkle_root == spec.merkle_root(log, 3)


def test_explicit_only_appends_checkpoints_only_on_request() -> None:
    log = filled(10)
    assert all(r.kind == KIND_DATA for r in log.records)
    log = spec.append_checkpoint(log, NOW)
    assert log.records[-1].kind == KIND_CHECKPOINT and spec.size(log) == 11


def test_shutdown_checkpoints_only_when_it_adds_something() -> None:
    assert spec.size(spec.shutdown(spec.empty_log(), NOW, EVERY_3)) == 0
    log = spec.shutdown(filled(2), NOW, EVERY_3)
    assert spec.size(log) == 3 and log.records[-1].kind == KIND_CHECKPOINT
    assert spec.shutdown(log, NOW, EVERY_3) == log
    quiet = spec.CheckpointPolicy(on_shutdown=False)
    assert spec.size(spec.shutdown(filled(2), NOW, quiet)) == 2


@pytest.mark.parametrize(
    "payloads",
    [(), (b"ok", "text"), (b"ok", bytearray(b"mutable"))],
)
def test_a_bad_batch_is_rejected_whole(payloads: tuple[object, ...]) -> None:
    log = filled(2)
    with pytest.raises(InvalidArgumentError):
        spec.append_batch(log, payloads, NOW, EXPLICIT)  # type: ignore[arg-type]
    assert spec.size(log) == 2


def test_reads_out_of_range_name_the_offset() -> None:
    log = filled(3)
    with pytest.raises(NotFoundError, match="3"):
        spec.read(log, 3)
    with pytest.raises(InvalidArgumentError, match="-1"):
        spec.read(log, -1)


def unacknowledged(log: spec.Log, count: int) -> spec.Log:
    """`log` with `count` more records from an append whose fsync never returned."""
    payloads = tuple(b"pending %d" % i for i in range(count))
    return spec.write_unacknowledged(log, payloads, NOW + 5, spec.CheckpointPolicy())


def test_a_torn_tail_is_discarded_and_accounted_for() -> None:
    log = unacknowledged(filled(3), 2)
    assert (log.durable, spec.size(log)) == (3, 5)
    recovered = spec.recover_torn_tail(log, 3, True, NOW + 10)
    assert spec.size(recovered) == 3 and recovered.durable == 3
    assert recovered.generation == 1
    [recovery] = recovered.recoveries
    assert recovery.discarded_range == (3, 4) and recovery.previous_generation == 0


def test_a_clean_cut_loses_unsynced_records_without_a_recovery() -> None:
    recovered = spec.recover_torn_tail(unacknowledged(filled(3), 2), 4, False, NOW)
    assert spec.size(recovered) == 4 and recovered.generation == 0 and not recovered.recoveries
    assert recovered.durable == 4  # what open keeps is durable from then on


def test_durable_records_cut_away_are_lost_history_not_a_torn_tail() -> None:
    log = unacknowledged(filled(5), 1)
    for kept, torn in ((4, False), (2, True), (0, False)):
        with pytest.raises(HistoryLostError) as caught:
            spec.recover_torn_tail(log, kept, torn, NOW)
        assert (caught.value.first_lost, caught.value.end_lost) == (kept, 5)
        assert caught.value.record_offset == kept


def test_records_missing_between_others_are_lost_history() -> None:
    log = filled(6)
    with pytest.raises(HistoryLostError) as caught:
        spec.lose_records(log, 2, 4)
    assert (caught.value.first_lost, caught.value.end_lost) == (2, 4)
    # Only records no append ever acknowledged may go, and with them all after them.
    pending = unacknowledged(log, 3)
    assert spec.size(spec.lose_records(pending, 7, 8)) == 7


def test_every_acknowledging_operation_makes_its_records_durable() -> None:
    log = filled(4)
    assert log.durable == spec.size(log)
    log = spec.append_checkpoint(unacknowledged(log, 2), NOW + 20)
    assert log.durable == spec.size(log) == 7
    log = spec.shutdown(unacknowledged(log, 1), NOW + 30, spec.CheckpointPolicy())
    assert log.durable == spec.size(log)


def test_a_failed_write_leaves_the_log_as_it_was_and_the_next_record_takes_its_place() -> None:
    log = filled(3)
    for reached_disk in (False, True):
        failed = spec.fail_write(log, reached_disk)
        assert failed.records == log.records and failed.durable == log.durable
        # The retry appends exactly the record the failed call would have appended.
        assert spec.append(failed, b"retry", NOW + 9, EXPLICIT).records == (
            spec.append(log, b"retry", NOW + 9, EXPLICIT).records
        )
    assert spec.fail_write(log, False) == log


def test_a_failed_write_that_reached_the_disk_names_its_offset() -> None:
    log = spec.fail_write(spec.fail_write(filled(3), True), False)
    log = spec.fail_write(spec.append(log, b"next", NOW + 9, EXPLICIT), True)
    # Offset 3 was seen with the failed bytes, then with "next"; offset 4 with failed bytes.
    assert log.failed_writes == (3, 4)
    assert spec.fail_write(spec.empty_log(), True).failed_writes == (0,)
    with pytest.raises(InvalidArgumentError):
        spec.fail_write(log, 1)  # type: ignore[arg-type]


def test_a_torn_tail_needs_a_record_to_tear() -> None:
    with pytest.raises(icontract.ViolationError):
        spec.recover_torn_tail(filled(2), 2, True, NOW)


def test_damage_is_reported_where_it_is_and_nowhere_else() -> None:
    log = spec.corrupt(filled(6, EVERY_3), 1)
    with pytest.raises(CorruptionError) as caught:
        spec.read(log, 1)
    assert caught.value.record_offset == 1
    assert spec.read(log, 2).offset == 2
    with pytest.raises(CorruptionError) as caught:
        spec.verify(log)
    assert caught.value.record_offset == 1
    # The checkpoint at offset 3 anchors verified reads after it: the damage is behind it.
    assert spec.read_verified(log, 4).offset == 4
    with pytest.raises(CorruptionError):
        spec.read_verified(log, 2)
    with pytest.raises(CorruptionError):
        spec.inclusion_proof(log, 1, 4)
    # What was committed to does not change: roots and other proofs still answer.
    assert spec.merkle_root(log, 6) == spec.merkle_root(filled(6, EVERY_3), 6)
    assert spec.inclusion_proof(log, 2, 4)


def test_verify_counts_every_record() -> None:
    assert spec.verify(filled(9, EVERY_3)) == 12


def test_proof_arguments_are_checked_in_order() -> None:
    log = filled(3)
    with pytest.raises(NotFoundError):
        spec.merkle_root(log, 4)
    with pytest.raises(InvalidArgumentError):
        spec.inclusion_proof(log, 3, 3)
    with pytest.raises(NotFoundError):
        spec.inclusion_proof(log, 0, 4)
    with pytest.raises(InvalidArgumentError):
        spec.consistency_proof(log, 0, 2)
    with pytest.raises(InvalidArgumentError):
        spec.consistency_proof(log, 3, 2)
    assert spec.consistency_proof(log, 3, 3) == []
