"""The spec's signatures in the log: pinned keys, signed checkpoints, rotation, rewrites."""

from __future__ import annotations

import icontract
import pytest

from verity_spec import log as spec
from verity_spec import signing
from verity_spec.errors import CorruptionError, InvalidArgumentError, KeyMismatchError
from verity_spec.records import KIND_KEY, decode_checkpoint_payload

NOW = 1_767_225_600_000_000_000
SEED = bytes(range(32))
OTHER = bytes(range(32, 64))
POLICY = spec.CheckpointPolicy(every_n_records=3)


def signed_log(data_records: int, seed: bytes = SEED) -> spec.Log:
    log = spec.pin_key(spec.empty_log(), NOW, seed)
    payloads = tuple(b"event %d" % i for i in range(data_records))
    return spec.append_batch(log, payloads, NOW + 1, POLICY, seed)


def test_a_pinned_log_signs_every_checkpoint_with_the_signed_checkpoint_bytes() -> None:
    log = signed_log(7)
    assert log.records[0].kind == KIND_KEY
    assert spec.verify(log) == spec.size(log)
    checkpoints = [r for r in log.records if decode_checkpoint_payload(r.payload) is not None]
    assert len(checkpoints) == 2
    for record in checkpoints:
        statement = decode_checkpoint_payload(record.payload)
        assert statement is not None and statement.signature is not None
        assert statement.public_key == signing.public_key_of(SEED)
        message = signing.checkpoint_message(
            record.offset,
            statement.merkle_root,
            statement.chain_hash,
            record.timestamp,
            signing.public_key_of(SEED),
        )
        assert signing.is_valid_signature(signing.public_key_of(SEED), message, statement.signature)
    assert spec.signed_through(log) == checkpoints[-1].offset


def test_another_key_signs_nothing() -> None:
    log = signed_log(2)
    with pytest.raises(KeyMismatchError):
        spec.append_checkpoint(log, NOW + 5, OTHER)
    with pytest.raises(KeyMismatchError):
        spec.append_batch(log, (b"x",), NOW + 5, POLICY, OTHER)
    with pytest.raises(InvalidArgumentError):
        spec.append_checkpoint(spec.empty_log(), NOW, SEED)  # nothing pinned to sign for


def test_a_keyless_rewrite_fails_the_next_signed_checkpoint() -> None:
    log = signed_log(8)
    forged = spec.rewrite_keyless(log, 2, b"amount=900")
    assert spec.is_chained(forged)
    with pytest.raises(CorruptionError) as caught:
        spec.verify(forged)
    first_signed_after = next(
        r.offset for r in log.records[3:] if decode_checkpoint_payload(r.payload) is not None
    )
    assert caught.value.record_offset == first_signed_after


def test_a_rewrite_past_the_last_signed_checkpoint_is_only_not_yet_signed() -> None:
    log = spec.append_batch(signed_log(6), (b"late",), NOW + 9, POLICY, SEED)
    last = spec.size(log) - 1
    forged = spec.rewrite_keyless(log, last, b"forged")
    assert spec.verify(forged) == spec.size(log)
    assert spec.signed_through(forged) <= last


def test_rotation_is_signed_by_the_outgoing_key() -> None:
    log = spec.rotate_key(signed_log(4), NOW + 10, SEED, OTHER)
    log = spec.append_batch(log, (b"a", b"b", b"c"), NOW + 11, POLICY, OTHER)
    assert spec.verify(log) == spec.size(log)
    with pytest.raises(KeyMismatchError):
        spec.append_checkpoint(log, NOW + 12, SEED)
    with pytest.raises(KeyMismatchError):
        spec.rotate_key(log, NOW + 12, SEED, OTHER)


def test_pinning_is_for_an_empty_log_only() -> None:
    with pytest.raises(icontract.ViolationError):
        spec.pin_key(signed_log(1), NOW, SEED)
