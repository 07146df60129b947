"""Drivers: one operation, two machines, the same JSON observation.

A driver runs one operation of the `log` machine (docs/conformance.md) and
returns what a user could observe of it as a JSON-compatible dict: the result
(`{"ok": {...}}`) or the kind of error (`{"error": kind, "record_offset": n}`).
`SpecLogDriver` runs `verity_spec`; `StorageLogDriver` runs `verity.storage`.
The lockstep machines and the vector runner compare the two, field for field.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import verity_spec.errors as spec_errors
import verity_spec.log as spec_log
import verity_spec.records as spec_records
from verity import errors as verity_errors
from verity.storage import Log, open_log
from verity.types import CheckpointPolicy, SyncPolicy

Observation = dict[str, Any]

# Scenarios in the vectors are small: the reference layout keeps them in one segment.
VECTOR_SEGMENT_BYTES_MAX = 64 * 1024 * 1024
FRAME_PREFIX_BYTES = 8
HEADER_BYTES = 53


def ok(**fields: Any) -> Observation:
    return {"ok": fields}


def error(kind: str, record_offset: int | None = None) -> Observation:
    return {"error": kind, "record_offset": record_offset}


class LogDriver(Protocol):
    """One operation per method; each returns the observation (docs/conformance.md)."""

    def append_batch(self, payloads: list[bytes], now: int) -> Observation: ...
    def append_checkpoint(self, now: int) -> Observation: ...
    def read(self, offset: int) -> Observation: ...
    def read_verified(self, offset: int) -> Observation: ...
    def records(self, start: int, end: int) -> Observation: ...
    def verify(self) -> Observation: ...
    def state(self) -> Observation: ...
    def merkle_root(self, tree_size: int) -> Observation: ...
    def inclusion_proof(self, leaf_index: int, tree_size: int) -> Observation: ...
    def consistency_proof(self, old_size: int, new_size: int) -> Observation: ...
    def reopen(self, now: int) -> Observation: ...
    def crash(self, keep: int, torn: bool, now: int) -> Observation: ...
    def corrupt(self, offset: int, byte: int) -> Observation: ...
    def close(self) -> None: ...


def policy_from_config(config: dict[str, Any]) -> tuple[int, bool, bool]:
    raw = config.get("checkpoint_policy", {})
    return (
        int(raw.get("every_n_records", 1000)),
        bool(raw.get("on_shutdown", True)),
        bool(raw.get("explicit_only", False)),
    )


# ---------------------------------------------------------------------------
# The specification


class SpecLogDriver:
    """Runs the executable specification; its observations are the expected ones."""

    def __init__(self, config: dict[str, Any]) -> None:
        every_n, on_shutdown, explicit_only = policy_from_config(config)
        self.policy = spec_log.CheckpointPolicy(
            every_n_records=every_n, on_shutdown=on_shutdown, explicit_only=explicit_only
        )
        self.log = spec_log.empty_log()

    def _guard(self, operation: Callable[[], Observation]) -> Observation:
        try:
            return operation()
        except spec_errors.CorruptionError as failure:
            return error("corruption", failure.record_offset)
        except spec_errors.NotFoundError:
            return error("not_found")
        except spec_errors.InvalidArgumentError:
            return error("invalid_argument")

    def _record(self, record: spec_records.Record) -> Observation:
        return ok(
            record_bytes=spec_records.record_bytes(record).hex(),
            chain_hash=spec_records.chain_hash(record).hex(),
        )

    def append_batch(self, payloads: list[bytes], now: int) -> Observation:
        first = spec_log.size(self.log)
        self.log = spec_log.append_batch(self.log, tuple(payloads), now, self.policy)
        return ok(
            first_offset=first,
            size=spec_log.size(self.log),
            head_hash=spec_log.head_hash(self.log).hex(),
        )

    def append_checkpoint(self, now: int) -> Observation:
        self.log = spec_log.append_checkpoint(self.log, now)
        record = self.log.records[-1]
        payload = spec_records.decode_checkpoint_payload(record.payload)
        assert payload is not None, "the spec appends only well-formed checkpoints"
        return ok(
            offset=record.offset,
            record_count=payload.record_count,
            chain_hash=payload.chain_hash.hex(),
            merkle_root=payload.merkle_root.hex(),
        )

    def read(self, offset: int) -> Observation:
        return self._guard(lambda: self._record(spec_log.read(self.log, offset)))

    def read_verified(self, offset: int) -> Observation:
        return self._guard(lambda: self._record(spec_log.read_verified(self.log, offset)))

    def records(self, start: int, end: int) -> Observation:
        def run() -> Observation:
            found = spec_log.records(self.log, start, end)
            return ok(chain_hashes=[spec_records.chain_hash(r).hex() for r in found])

        return self._guard(run)

    def verify(self) -> Observation:
        return self._guard(lambda: ok(records_checked=spec_log.verify(self.log)))

    def state(self) -> Observation:
        return ok(
            size=spec_log.size(self.log),
            head_hash=spec_log.head_hash(self.log).hex(),
            generation=self.log.generation,
            recoveries=[
                [r.generation, *(r.discarded_range or (r.known_committed, r.known_committed))]
                for r in self.log.recoveries
            ],
        )

    def merkle_root(self, tree_size: int) -> Observation:
        return self._guard(lambda: ok(root=spec_log.merkle_root(self.log, tree_size).hex()))

    def inclusion_proof(self, leaf_index: int, tree_size: int) -> Observation:
        def run() -> Observation:
            path = spec_log.inclusion_proof(self.log, leaf_index, tree_size)
            leaf = spec_records.record_bytes(self.log.records[leaf_index])
            return ok(leaf=leaf.hex(), path=[node.hex() for node in path])

        return self._guard(run)

    def consistency_proof(self, old_size: int, new_size: int) -> Observation:
        return self._guard(
            lambda: ok(
                path=[
                    node.hex() for node in spec_log.consistency_proof(self.log, old_size, new_size)
                ]
            )
        )

    def reopen(self, now: int) -> Observation:
        self.log = spec_log.shutdown(self.log, now, self.policy)
        return self.state()

    def crash(self, keep: int, torn: bool, now: int) -> Observation:
        self.log = spec_log.recover_torn_tail(self.log, keep, torn, now)
        return self.state()

    def corrupt(self, offset: int, byte: int) -> Observation:
        del byte  # the model records that the stored record is damaged, not how
        self.log = spec_log.corrupt(self.log, offset)
        return ok()

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------
# The implementation


class StorageLogDriver:
    """Runs `verity.storage` in a real folder with real files and fsync."""

    def __init__(
        self,
        directory: Path,
        config: dict[str, Any],
        *,
        segment_bytes_max: int = VECTOR_SEGMENT_BYTES_MAX,
        sync_policy: SyncPolicy | None = None,
    ) -> None:
        every_n, on_shutdown, explicit_only = policy_from_config(config)
        self.checkpoint_policy = CheckpointPolicy(
            every_n_records=every_n, on_shutdown=on_shutdown, explicit_only=explicit_only
        )
        self.sync_policy = sync_policy or SyncPolicy.every_batch()
        self.directory = directory
        self.segment_bytes_max = segment_bytes_max
        self.now = 0
        self.log = self._open()
        self.frame_lengths: list[int] = []
        self._refresh_frame_lengths()

    def _clock(self) -> int:
        return self.now

    def _open(self) -> Log:
        return open_log(
            self.directory,
            sync_policy=self.sync_policy,
            checkpoint_policy=self.checkpoint_policy,
            segment_bytes_max=self.segment_bytes_max,
            clock=self._clock,
        )

    def _guard(self, operation: Callable[[], Observation]) -> Observation:
        try:
            return operation()
        except verity_errors.CorruptionError as failure:
            return error("corruption", failure.record_offset)
        except verity_errors.NotFound:
            return error("not_found")
        except verity_errors.InvalidArgument:
            return error("invalid_argument")

    def _record(self, offset: int, verified: bool) -> Observation:
        record = self.log.read_verified(offset) if verified else self.log.read(offset)
        return ok(record_bytes=record.record_bytes().hex(), chain_hash=record.chain_hash().hex())

    def append_batch(self, payloads: list[bytes], now: int) -> Observation:
        self.now = now
        first = self.log.append_batch(payloads)
        self._refresh_frame_lengths()
        return ok(first_offset=int(first), size=self.log.size, head_hash=self.log.head_hash.hex())

    def append_checkpoint(self, now: int) -> Observation:
        self.now = now
        checkpoint = self.log.append_checkpoint()
        self._refresh_frame_lengths()
        return ok(
            offset=int(checkpoint.offset),
            record_count=checkpoint.record_count,
            chain_hash=checkpoint.chain_hash.hex(),
            merkle_root=checkpoint.merkle_root.hex(),
        )

    def read(self, offset: int) -> Observation:
        return self._guard(lambda: self._record(offset, verified=False))

    def read_verified(self, offset: int) -> Observation:
        return self._guard(lambda: self._record(offset, verified=True))

    def records(self, start: int, end: int) -> Observation:
        return self._guard(
            lambda: ok(chain_hashes=[r.chain_hash().hex() for r in self.log.records(start, end)])
        )

    def verify(self) -> Observation:
        return self._guard(lambda: ok(records_checked=self.log.verify()))

    def state(self) -> Observation:
        return ok(
            size=self.log.size,
            head_hash=self.log.head_hash.hex(),
            generation=int(self.log.generation),
            recoveries=[
                [
                    int(r.generation),
                    *(
                        (int(r.discarded_range[0]), int(r.discarded_range[1]))
                        if r.discarded_range is not None
                        else (int(r.known_committed), int(r.known_committed))
                    ),
                ]
                for r in self.log.recoveries()
            ],
        )

    def merkle_root(self, tree_size: int) -> Observation:
        return self._guard(lambda: ok(root=self.log.merkle_root(tree_size).hex()))

    def inclusion_proof(self, leaf_index: int, tree_size: int) -> Observation:
        def run() -> Observation:
            proof = self.log.inclusion_proof(leaf_index, tree_size)
            return ok(leaf=proof.leaf.hex(), path=[node.hex() for node in proof.path])

        return self._guard(run)

    def consistency_proof(self, old_size: int, new_size: int) -> Observation:
        return self._guard(
            lambda: ok(
                path=[node.hex() for node in self.log.consistency_proof(old_size, new_size).path]
            )
        )

    def reopen(self, now: int) -> Observation:
        self.now = now
        self.log.close()
        self.log = self._open()
        self._refresh_frame_lengths()
        return self.state()

    def _refresh_frame_lengths(self) -> None:
        # Learn the frame length of each new record while it is still undamaged,
        # so later corruption of one record never hides where the others are.
        del self.frame_lengths[self.log.size :]
        for offset in range(len(self.frame_lengths), self.log.size):
            payload_len = self.log.read(offset).header.payload_len
            self.frame_lengths.append(FRAME_PREFIX_BYTES + HEADER_BYTES + payload_len)

    def frame_location(self, offset: int) -> tuple[str, int, int]:
        """(segment path, start byte, end byte) of record `offset`'s frame."""
        assert 0 <= offset < len(self.frame_lengths)
        segment = next(s for s in reversed(self.log.segments()) if int(s.first_offset) <= offset)
        start = sum(self.frame_lengths[int(segment.first_offset) : offset])
        return str(segment.path), start, start + self.frame_lengths[offset]

    def crashable_from(self) -> int:
        """The first offset a crash may cut: the newest segment's first record."""
        return int(self.log.segments()[-1].first_offset)

    def sealed_before(self) -> int:
        """Records below this offset live in sealed (no longer written) segments."""
        return self.crashable_from()

    def crash(self, keep: int, torn: bool, now: int) -> Observation:
        newest = self.log.segments()[-1]
        first = int(newest.first_offset)
        assert first <= keep <= self.log.size, (first, keep, self.log.size)
        assert not (torn and keep == self.log.size)
        cut = sum(self.frame_lengths[first:keep])
        if torn:
            cut += self.frame_lengths[keep] // 2
        assert cut <= newest.byte_size
        self.log.abandon()
        os.truncate(newest.path, cut)
        self.now = now
        self.log = self._open()
        self._refresh_frame_lengths()
        return self.state()

    def corrupt(self, offset: int, byte: int) -> Observation:
        path, start, end = self.frame_location(offset)
        assert 0 <= byte < end - start, (byte, start, end)
        with open(path, "r+b") as handle:
            handle.seek(start + byte)
            original = handle.read(1)
            handle.seek(start + byte)
            handle.write(bytes([original[0] ^ 1]))
            handle.flush()
            os.fsync(handle.fileno())
        return ok()

    def close(self) -> None:
        self.log.abandon()
