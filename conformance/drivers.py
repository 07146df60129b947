"""Drivers: one operation, two machines, the same JSON observation.

A driver runs one operation of the `log` machine (docs/conformance.md) and
returns what a user could observe of it as a JSON-compatible dict: the result
(`{"ok": {...}}`) or the kind of error (`{"error": kind, "record_offset": n}`).
`SpecLogDriver` runs `verity_spec`; `StorageLogDriver` runs `verity.storage`.
The lockstep machines and the vector runner compare the two, field for field.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import verity_spec.errors as spec_errors
import verity_spec.log as spec_log
import verity_spec.records as spec_records
from verity import errors as verity_errors
from verity.crypto import SigningKey
from verity.storage import Log, SegmentInfo, open_log
from verity.storage._io import IO, install, restore
from verity.types import CheckpointPolicy, SyncPolicy

Observation = dict[str, Any]

# The errno names a `fail_append` step may carry; these ones mean the disk is full.
FAIL_ERRNOS = {"EIO": errno.EIO, "ENOSPC": errno.ENOSPC, "EDQUOT": errno.EDQUOT}
FULL_ERRNO_NAMES = frozenset({"ENOSPC", "EDQUOT"})
# The errno names a `lock_refused` step may carry: the first three say another
# process holds the lock, the others that the OS could not lock at all.
LOCK_ERRNOS = {
    "EWOULDBLOCK": errno.EWOULDBLOCK,
    "EACCES": errno.EACCES,
    "ENOLCK": errno.ENOLCK,
    "EIO": errno.EIO,
}

# Scenarios in the vectors are small: the reference layout keeps them in one segment.
VECTOR_SEGMENT_BYTES_MAX = 64 * 1024 * 1024
FRAME_PREFIX_BYTES = 8
HEADER_BYTES = 53
HASH_BYTES = 32
CHAIN_DOMAIN = b"verity.chain.v1\x00"


def ok(**fields: Any) -> Observation:
    return {"ok": fields}


def error(kind: str, record_offset: int | None = None) -> Observation:
    return {"error": kind, "record_offset": record_offset}


def history_lost(first_lost: int, end_lost: int) -> Observation:
    """Open refused: durable records `first_lost .. end_lost-1` are gone."""
    return {"error": "history_lost", "record_offset": first_lost, "end_lost": end_lost}


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
    def crash_in_append(
        self, payloads: list[bytes], now: int, keep: int, torn: bool, reopen_now: int
    ) -> Observation: ...
    def lose_records(self, first: int, end: int) -> Observation: ...
    def forge_head(self) -> Observation: ...
    def corrupt(self, offset: int, byte: int) -> Observation: ...
    def rotate_key(self, new_seed: bytes, now: int) -> Observation: ...
    def rewrite(self, offset: int, payload: bytes) -> Observation: ...
    def short_io(self, on: bool) -> Observation: ...
    def fail_append(self, payloads: list[bytes], now: int, errno_name: str) -> Observation: ...
    def flip_derived(self, kind: str, byte: int, now: int) -> Observation: ...
    def delete_derived(self, kind: str, now: int) -> Observation: ...
    def lock_refused(self, errno_name: str, now: int) -> Observation: ...
    def close(self) -> None: ...


def signer_from_config(config: dict[str, Any]) -> bytes | None:
    """The log's Ed25519 private key (32-byte seed), when the scenario signs its log."""
    seed = config.get("signing_seed")
    return None if seed is None else bytes.fromhex(seed)


# The reference implementation's layout hints a vector's config may carry (reproductions
# written by the machines do): the spec ignores them, and so may another implementation.
SYNC_POLICIES = {
    "every_record": SyncPolicy.every_record(),
    "every_batch": SyncPolicy.every_batch(),
    "group_commit": SyncPolicy.group_commit(max_delay_ms=0, max_batch=16),
}


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
        self.signer = signer_from_config(config)
        self.log = spec_log.empty_log()
        if self.signer is not None:
            # A signed log begins with the KEY record pinning its key, at time 0.
            self.log = spec_log.pin_key(self.log, 0, self.signer)

    def _guard(self, operation: Callable[[], Observation]) -> Observation:
        try:
            return operation()
        except spec_errors.HistoryLostError as failure:
            return history_lost(failure.first_lost, failure.end_lost)
        except spec_errors.CorruptionError as failure:
            return error("corruption", failure.record_offset)
        except spec_errors.NotFoundError:
            return error("not_found")
        except spec_errors.InvalidArgumentError:
            return error("invalid_argument")
        except spec_errors.KeyMismatchError:
            return error("key_mismatch")
        except spec_errors.InUseError:
            return error("in_use")
        except spec_errors.LockFailedError:
            return error("storage_error")

    def _record(self, record: spec_records.Record) -> Observation:
        return ok(
            record_bytes=spec_records.record_bytes(record).hex(),
            chain_hash=spec_records.chain_hash(record).hex(),
        )

    def append_batch(self, payloads: list[bytes], now: int) -> Observation:
        return self._guard(lambda: self._append_batch(payloads, now))

    def _append_batch(self, payloads: list[bytes], now: int) -> Observation:
        first = spec_log.size(self.log)
        self.log = spec_log.append_batch(self.log, tuple(payloads), now, self.policy, self.signer)
        return ok(
            first_offset=first,
            size=spec_log.size(self.log),
            head_hash=spec_log.head_hash(self.log).hex(),
        )

    def append_checkpoint(self, now: int) -> Observation:
        return self._guard(lambda: self._append_checkpoint(now))

    def _append_checkpoint(self, now: int) -> Observation:
        self.log = spec_log.append_checkpoint(self.log, now, self.signer)
        record = self.log.records[-1]
        payload = spec_records.decode_checkpoint_payload(record.payload)
        assert payload is not None, "the spec appends only well-formed checkpoints"
        fields: dict[str, Any] = {
            "offset": record.offset,
            "record_count": payload.record_count,
            "chain_hash": payload.chain_hash.hex(),
            "merkle_root": payload.merkle_root.hex(),
        }
        if payload.signature is not None:
            fields["signature"] = payload.signature.hex()
        return ok(**fields)

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
        def run() -> Observation:
            checked = spec_log.verify(self.log)
            if self.signer is None:
                return ok(records_checked=checked)
            return ok(records_checked=checked, signed_through=spec_log.signed_through(self.log))

        return self._guard(run)

    def rotate_key(self, new_seed: bytes, now: int) -> Observation:
        def run() -> Observation:
            assert self.signer is not None, "rotation needs a signed log"
            self.log = spec_log.rotate_key(self.log, now, self.signer, new_seed)
            self.signer = new_seed
            return ok(
                offset=spec_log.size(self.log) - 1, head_hash=spec_log.head_hash(self.log).hex()
            )

        return self._guard(run)

    def rewrite(self, offset: int, payload: bytes) -> Observation:
        self.log = spec_log.rewrite_keyless(self.log, offset, payload)
        return self.state()

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
        self.log = spec_log.shutdown(self.log, now, self.policy, self.signer)
        return self.state()

    def _reopen_after(self, found: Callable[[], spec_log.Log]) -> Observation:
        """Open finds the log `found()` describes, or refuses (and the log stays)."""

        def run() -> Observation:
            self.log = found()
            return self.state()

        return self._guard(run)

    def crash(self, keep: int, torn: bool, now: int) -> Observation:
        return self._reopen_after(lambda: spec_log.recover_torn_tail(self.log, keep, torn, now))

    def crash_in_append(
        self, payloads: list[bytes], now: int, keep: int, torn: bool, reopen_now: int
    ) -> Observation:
        written = spec_log.write_unacknowledged(
            self.log, tuple(payloads), now, self.policy, self.signer
        )
        return self._reopen_after(
            lambda: spec_log.recover_torn_tail(written, keep, torn, reopen_now)
        )

    def lose_records(self, first: int, end: int) -> Observation:
        return self._reopen_after(lambda: spec_log.lose_records(self.log, first, end))

    def forge_head(self) -> Observation:
        return self._reopen_after(lambda: spec_log.forge_head(self.log))

    def corrupt(self, offset: int, byte: int) -> Observation:
        del byte  # the model records that the stored record is damaged, not how
        self.log = spec_log.corrupt(self.log, offset)
        return ok()

    def short_io(self, on: bool) -> Observation:
        del on  # reads and writes that return fewer bytes than asked change nothing
        return ok()

    def fail_append(self, payloads: list[bytes], now: int, errno_name: str) -> Observation:
        # The disk refuses the batch's first write: nothing of it reached the disk.
        spec_log.check_payloads(payloads)
        del now
        self.log = spec_log.fail_write(self.log, reached_disk=False)
        full = errno_name in FULL_ERRNO_NAMES
        return {"error": "storage_full" if full else "storage_error", "written": False}

    def flip_derived(self, kind: str, byte: int, now: int) -> Observation:
        # A derived file (Merkle nodes, an offset index) is checked and rebuilt from
        # the records: a flipped bit in one changes no answer. `byte` picks the bit.
        del kind, byte
        return self.reopen(now)

    def delete_derived(self, kind: str, now: int) -> Observation:
        # A derived file deleted between runs is rebuilt from the records on open.
        del kind
        return self.reopen(now)

    def lock_refused(self, errno_name: str, now: int) -> Observation:
        # A clean close, an open the folder lock refuses (it changes nothing), an open.
        self.log = spec_log.shutdown(self.log, now, self.policy, self.signer)
        refused = self._guard(
            lambda: self._opened(spec_log.open_without_lock(self.log, errno_name))
        )
        return {"refused": refused, "then": self.state()}

    def _opened(self, log: spec_log.Log) -> Observation:
        self.log = log
        return self.state()

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
        segment_bytes_max: int | None = None,
        sync_policy: SyncPolicy | None = None,
    ) -> None:
        """Segment size and sync policy: the arguments, else the config's
        `segment_bytes_max` and `sync_policy` (a name in SYNC_POLICIES), else
        one segment for everything and a sync per batch."""
        every_n, on_shutdown, explicit_only = policy_from_config(config)
        self.checkpoint_policy = CheckpointPolicy(
            every_n_records=every_n, on_shutdown=on_shutdown, explicit_only=explicit_only
        )
        self.sync_policy = sync_policy or SYNC_POLICIES[config.get("sync_policy", "every_batch")]
        self.directory = directory
        self.segment_bytes_max = segment_bytes_max or int(
            config.get("segment_bytes_max", VECTOR_SEGMENT_BYTES_MAX)
        )
        seed = signer_from_config(config)
        self.signer = None if seed is None else SigningKey.from_seed(seed)
        self.now = 0
        self.installed: IO | None = None  # what `short_io` replaced in the IO seam
        self.log = self._open()
        self.frame_lengths: list[int] = []
        self._refresh_frame_lengths()

    def _clock(self) -> int:
        return self.now

    def _open(self) -> Log:
        return open_log(
            self.directory,
            signer=self.signer,
            sync_policy=self.sync_policy,
            checkpoint_policy=self.checkpoint_policy,
            segment_bytes_max=self.segment_bytes_max,
            clock=self._clock,
        )

    def _guard(self, operation: Callable[[], Observation]) -> Observation:
        try:
            return operation()
        except verity_errors.HistoryLost as failure:
            return history_lost(failure.first_lost, failure.end_lost)
        except verity_errors.CorruptionError as failure:
            return error("corruption", failure.record_offset)
        except verity_errors.NotFound:
            return error("not_found")
        except verity_errors.InvalidArgument:
            return error("invalid_argument")
        except verity_errors.KeyError_:
            return error("key_mismatch")
        except verity_errors.InUse:
            return error("in_use")
        except verity_errors.StorageError:
            return error("storage_error")

    def _record(self, offset: int, verified: bool) -> Observation:
        record = self.log.read_verified(offset) if verified else self.log.read(offset)
        return ok(record_bytes=record.record_bytes().hex(), chain_hash=record.chain_hash().hex())

    def append_batch(self, payloads: list[bytes], now: int) -> Observation:
        self.now = now
        return self._guard(lambda: self._append_batch(payloads))

    def _append_batch(self, payloads: list[bytes]) -> Observation:
        first = self.log.append_batch(payloads)
        self._refresh_frame_lengths()
        return ok(first_offset=int(first), size=self.log.size, head_hash=self.log.head_hash.hex())

    def append_checkpoint(self, now: int) -> Observation:
        self.now = now
        return self._guard(self._append_checkpoint)

    def _append_checkpoint(self) -> Observation:
        checkpoint = self.log.append_checkpoint()
        self._refresh_frame_lengths()
        fields: dict[str, Any] = {
            "offset": int(checkpoint.offset),
            "record_count": checkpoint.record_count,
            "chain_hash": checkpoint.chain_hash.hex(),
            "merkle_root": checkpoint.merkle_root.hex(),
        }
        if self.signer is not None:
            fields["signature"] = self.log.signed_checkpoint(int(checkpoint.offset)).signature.hex()
        return ok(**fields)

    def read(self, offset: int) -> Observation:
        return self._guard(lambda: self._record(offset, verified=False))

    def read_verified(self, offset: int) -> Observation:
        return self._guard(lambda: self._record(offset, verified=True))

    def records(self, start: int, end: int) -> Observation:
        return self._guard(
            lambda: ok(chain_hashes=[r.chain_hash().hex() for r in self.log.records(start, end)])
        )

    def verify(self) -> Observation:
        def run() -> Observation:
            checked = self.log.verify()
            if self.signer is None:
                return ok(records_checked=checked)
            return ok(records_checked=checked, signed_through=self.log.signed_through())

        return self._guard(run)

    def rotate_key(self, new_seed: bytes, now: int) -> Observation:
        def run() -> Observation:
            self.now = now
            new_signer = SigningKey.from_seed(new_seed)
            offset = self.log.rotate_key(new_signer)
            self.signer = new_signer
            self._refresh_frame_lengths()
            return ok(offset=int(offset), head_hash=self.log.head_hash.hex())

        return self._guard(run)

    def rewrite(self, offset: int, payload: bytes) -> Observation:
        """An attacker with write access and no key rewrites record `offset`'s payload.

        Every keyless byte after it is recomputed (frames, CRCs, chain hashes,
        checkpoint statements; formats §1-2), signatures and KEY records are
        kept, and the derived files a rewrite would contradict are deleted.
        """
        records = [self.log.read(i).record_bytes() for i in range(self.log.size)]
        firsts = [int(segment.first_offset) for segment in self.log.segments()]
        self.log.abandon()
        forged = forge_keyless(records, offset, payload)
        bounds = [*firsts, len(forged)]
        for first, end in itertools.pairwise(bounds):
            frames = b"".join(
                len(r).to_bytes(4, "big") + zlib.crc32(r).to_bytes(4, "big") + r
                for r in forged[first:end]
            )
            (self.directory / f"{first:020d}.vlog").write_bytes(frames)
        for derived in [*self.directory.glob("*.vidx"), self.directory / "checkpoints.vcpt"]:
            derived.unlink(missing_ok=True)
        (self.directory / "durable.vmark").unlink(missing_ok=True)
        shutil.rmtree(self.directory / "merkle", ignore_errors=True)
        self.log = self._open()
        self.frame_lengths.clear()  # the rewritten record's frame changed length
        self._refresh_frame_lengths()
        return self.state()

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
        with _warnings_logged() as logged:
            self.log = self._open()
        # After a clean close nothing is damaged, torn or stale: an open that repairs
        # (rebuilds a derived file, rescans a segment) is doing work it must not need.
        assert not logged, f"an open after a clean close logged: {logged}"
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

    def segment_firsts(self) -> list[int]:
        """The first offset of every segment, oldest first."""
        return [int(segment.first_offset) for segment in self.log.segments()]

    def newest_first_after(self, payload_lengths: list[int]) -> int:
        """The newest segment's first offset once records of these payload sizes are appended.

        Follows the log's roll rule (a record that does not fit a non-empty
        segment starts the next one): the records of every segment sealed on
        the way were fsynced when it was sealed, so a crash keeps them.
        """
        newest = self.log.segments()[-1]
        first = int(newest.first_offset)
        used = newest.byte_size
        offset = self.log.size
        for payload_length in payload_lengths:
            needed = FRAME_PREFIX_BYTES + HEADER_BYTES + payload_length
            if used > 0 and used + needed > self.segment_bytes_max:
                first, used = offset, 0
            used += needed
            offset += 1
        return first

    def crashable_from(self) -> int:
        """The first offset a crash may cut: the newest segment's first record."""
        return int(self.log.segments()[-1].first_offset)

    def sealed_before(self) -> int:
        """Records below this offset live in sealed (no longer written) segments."""
        return self.crashable_from()

    def _cut(
        self, segments: list[SegmentInfo], keep: int, torn: bool, keep_later_segments: bool
    ) -> None:
        """Cut the (abandoned) log's files so that record `keep` is where they end.

        The segment holding `keep` is cut at its frame (inside it when
        `torn`); later segments are deleted, unless `keep_later_segments`.
        """
        holder = next((s for s in reversed(segments) if int(s.first_offset) <= keep), segments[0])
        first = int(holder.first_offset)
        cut = sum(self.frame_lengths[first:keep])
        if torn:
            cut += self.frame_lengths[keep] // 2
        if not keep_later_segments:
            for later in segments:
                if int(later.first_offset) > first:
                    os.unlink(later.path)
                    index = later.path.with_suffix(".vidx")
                    if index.exists():
                        os.unlink(index)
        if cut == 0 and first > 0 and keep_later_segments:
            os.unlink(holder.path)
        else:
            os.truncate(holder.path, cut)

    def _open_found(self, now: int, cut: Callable[[list[SegmentInfo]], None]) -> Observation:
        """Make the files as `cut` leaves them and open; a refused open changes no file.

        After a refusal the files are put back as they were before the cut (an
        operator restoring them) and the log is opened again.
        """
        backup = Path(tempfile.mkdtemp(prefix="verity-conformance-backup-"))
        try:
            segments = self.log.segments()
            self.log.abandon()
            shutil.copytree(self.directory, backup / "log")
            cut(segments)
            before = _folder_bytes(self.directory)
            self.now = now
            try:
                self.log = self._open()
            except verity_errors.CorruptionError as failure:
                after = _folder_bytes(self.directory)
                names = before.keys() | after.keys()
                changed = sorted(n for n in names if before.get(n) != after.get(n))
                assert not changed, f"a refused open changed files: {changed}"
                shutil.rmtree(self.directory)
                shutil.copytree(backup / "log", self.directory)
                self.log = self._open()
                if isinstance(failure, verity_errors.HistoryLost):
                    return history_lost(failure.first_lost, failure.end_lost)
                return error("corruption", failure.record_offset)
        finally:
            shutil.rmtree(backup, ignore_errors=True)
        self._refresh_frame_lengths()
        return self.state()

    def crash(self, keep: int, torn: bool, now: int) -> Observation:
        assert 0 <= keep <= self.log.size, (keep, self.log.size)
        assert not (torn and keep == self.log.size)
        return self._open_found(
            now, lambda segments: self._cut(segments, keep, torn, keep_later_segments=False)
        )

    def crash_in_append(
        self, payloads: list[bytes], now: int, keep: int, torn: bool, reopen_now: int
    ) -> Observation:
        """The process dies in this append: its frames reach the disk, it never returns."""
        mark = self.directory / "durable.vmark"
        acknowledged = mark.read_bytes()
        self.now = now
        self.log.append_batch(payloads)
        self._refresh_frame_lengths()

        def cut(segments: list[SegmentInfo]) -> None:
            self._cut(segments, keep, torn, keep_later_segments=False)
            mark.write_bytes(acknowledged)  # the mark of the last append that returned

        return self._open_found(reopen_now, cut)

    def lose_records(self, first: int, end: int) -> Observation:
        """Records `first .. end-1` (to the end of a sealed segment) vanish; later ones stay."""
        assert any(int(s.first_offset) == end for s in self.log.segments()), end
        return self._open_found(
            self.now, lambda segments: self._cut(segments, first, False, keep_later_segments=True)
        )

    def forge_head(self) -> Observation:
        """The last record's payload is edited and its frame CRC recomputed, nothing else."""
        offset = self.log.size - 1
        path, start, end = self.frame_location(offset)

        def forge(segments: list[SegmentInfo]) -> None:
            del segments
            with open(path, "r+b") as handle:
                handle.seek(start)
                frame = bytearray(handle.read(end - start))
                frame[-1] ^= 1
                frame[4:8] = zlib.crc32(bytes(frame[8:])).to_bytes(4, "big")
                handle.seek(start)
                handle.write(bytes(frame))

        return self._open_found(self.now, forge)

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

    def short_io(self, on: bool) -> Observation:
        """From now on every read and write returns fewer bytes than asked (or stop that)."""
        if self.installed is not None:
            restore(self.installed)
            self.installed = None
        if on:
            self.installed = install(FaultyIO(short_reads=True, short_writes=True).io())
        return ok()

    def fail_append(self, payloads: list[bytes], now: int, errno_name: str) -> Observation:
        """The disk refuses this batch's first write with `errno_name`."""
        self.now = now
        faults = FaultyIO(fail_errno=FAIL_ERRNOS[errno_name], fail_kind=".vlog")
        previous = install(faults.io())
        try:
            observation = self._guard(lambda: self._append_refused(payloads))
        finally:
            restore(previous)
        self._refresh_frame_lengths()
        return observation

    def _append_refused(self, payloads: list[bytes]) -> Observation:
        try:
            self.log.append_batch(payloads)
        except verity_errors.StorageError as failure:
            full = isinstance(failure, verity_errors.StorageFull)
            return {
                "error": "storage_full" if full else "storage_error",
                "written": failure.written,
            }
        return error("no_error")

    def flip_derived(self, kind: str, byte: int, now: int) -> Observation:
        """Close, flip bit `byte % 8` of byte `byte` of a derived file of `kind`, open.

        `kind` is "merkle" (the leaf-level node file), "index" (the oldest
        segment's offset index) or "mark" (the durability mark, docs/formats.md:
        one that does not check is no evidence, and changes no answer);
        "merkle_cut" cuts the leaf-level node file to
        `byte` (modulo its size) bytes instead. A file of that kind that does
        not exist (yet) is left alone.
        """
        self.now = now
        self.log.close()
        if kind == "merkle_cut":
            path = self.directory / "merkle" / "level-00.bin"
            if path.exists() and path.stat().st_size > 0:
                os.truncate(path, byte % path.stat().st_size)
            kind = ""
            paths: list[Path] = []
        elif kind == "merkle":
            paths = [self.directory / "merkle" / "level-00.bin"]
        elif kind == "index":
            paths = sorted(self.directory.glob("*.vidx"))[:1]
        elif kind == "mark":
            paths = [self.directory / "durable.vmark"]
        else:
            raise ValueError(f"unknown derived file kind {kind!r}")
        for path in paths:
            if path.exists() and path.stat().st_size > 0:
                flip_bit(path, byte % path.stat().st_size, byte % 8)
        self.log = self._open()
        self._refresh_frame_lengths()
        return self.state()

    def lock_refused(self, errno_name: str, now: int) -> Observation:
        """Close; open while the OS refuses the folder's lock with `errno_name`; open."""
        self.now = now
        self.log.close()
        previous = install(FaultyIO(lock_errno=LOCK_ERRNOS[errno_name]).io())
        try:
            refused = self._guard(self._open_refused)
        finally:
            restore(previous)
        self.log = self._open()
        self._refresh_frame_lengths()
        return {"refused": refused, "then": self.state()}

    def _open_refused(self) -> Observation:
        self.log = self._open()
        self.log.close()
        raise AssertionError("an open whose folder lock the OS refused went on")

    def delete_derived(self, kind: str, now: int) -> Observation:
        """Close, delete the derived file(s) of `kind`, open (which rebuilds them).

        `kind` is "checkpoints" (the checkpoint list), "index" (every offset
        index) or "merkle" (the Merkle node files).
        """
        self.now = now
        self.log.close()
        if kind == "checkpoints":
            (self.directory / "checkpoints.vcpt").unlink()
        elif kind == "index":
            for index in self.directory.glob("*.vidx"):
                index.unlink()
        elif kind == "merkle":
            shutil.rmtree(self.directory / "merkle")
        else:
            raise ValueError(f"unknown derived file kind {kind!r}")
        self.log = self._open()
        self._refresh_frame_lengths()
        return self.state()

    def close(self) -> None:
        if self.installed is not None:
            restore(self.installed)
            self.installed = None
        self.log.abandon()


def flip_bit(path: Path, position: int, bit: int) -> None:
    """Flip bit `bit` of byte `position` of the file at `path`, on disk."""
    with open(path, "r+b") as handle:
        handle.seek(position)
        original = handle.read(1)
        handle.seek(position)
        handle.write(bytes([original[0] ^ (1 << bit)]))
        handle.flush()
        os.fsync(handle.fileno())


class FaultyIO:
    """A test double for storage's IO seam (`verity.storage._io`): faults as inputs.

    - `short_reads`: a read of more than one byte returns its first half (the
      right bytes, never wrong ones); the caller must ask again for the rest.
    - `short_writes`: a write of more than one byte writes its first half and
      says so; the caller must write the rest.
    - `fail_errno`: every write, pwrite, fsync and ftruncate of a file whose
      path ends with `fail_kind` (the `fail_after`-th such call and later)
      raises `OSError(fail_errno)` before touching the file.
    - `flip_kind`: a read of a file whose path ends with it returns its bytes
      with the lowest bit of the first one flipped.
    - `lock_errno`: every flock raises `OSError(lock_errno)`.
    `io()` gives the `IO` to `install`; `calls` counts the calls made.
    """

    def __init__(
        self,
        *,
        short_reads: bool = False,
        short_writes: bool = False,
        fail_errno: int | None = None,
        fail_kind: str = "",
        fail_after: int = 1,
        flip_kind: str | None = None,
        lock_errno: int | None = None,
    ) -> None:
        self.short_reads = short_reads
        self.short_writes = short_writes
        self.fail_errno = fail_errno
        self.fail_kind = fail_kind
        self.fail_after = fail_after
        self.flip_kind = flip_kind
        self.lock_errno = lock_errno
        self.calls: dict[str, int] = {}
        self.failed = 0

    @staticmethod
    def _path(fd: int) -> str:
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return ""

    def _maybe_fail(self, kind: str, fd: int) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1
        if self.fail_errno is None or not self._path(fd).endswith(self.fail_kind):
            return
        self.failed += 1
        if self.failed >= self.fail_after:
            raise OSError(self.fail_errno, os.strerror(self.fail_errno))

    def pread(self, fd: int, length: int, position: int) -> bytes:
        self.calls["pread"] = self.calls.get("pread", 0) + 1
        asked = length // 2 if self.short_reads and length > 1 else length
        data = os.pread(fd, asked, position)
        if data and self.flip_kind is not None and self._path(fd).endswith(self.flip_kind):
            data = bytes([data[0] ^ 1]) + data[1:]
        return data

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        self._maybe_fail("write", fd)
        view = memoryview(data)
        return os.write(fd, view[: len(view) // 2] if self.short_writes and len(view) > 1 else view)

    def pwrite(self, fd: int, data: bytes | bytearray | memoryview, position: int) -> int:
        self._maybe_fail("pwrite", fd)
        view = memoryview(data)
        part = view[: len(view) // 2] if self.short_writes and len(view) > 1 else view
        return os.pwrite(fd, part, position)

    def fsync(self, fd: int) -> None:
        self._maybe_fail("fsync", fd)
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        self.calls["ftruncate"] = self.calls.get("ftruncate", 0) + 1
        os.ftruncate(fd, length)

    def flock(self, fd: int, operation: int) -> None:
        self.calls["flock"] = self.calls.get("flock", 0) + 1
        if self.lock_errno is not None:
            raise OSError(self.lock_errno, os.strerror(self.lock_errno))
        fcntl.flock(fd, operation)

    def io(self) -> IO:
        return IO(
            self.pread, self.write, self.pwrite, self.fsync, self.ftruncate, os.replace, self.flock
        )


@contextlib.contextmanager
def _warnings_logged() -> Iterator[list[str]]:
    """The messages `verity` logs at WARNING or above inside the block (even when quieted)."""
    logged: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(record.getMessage())

    verity_logger = logging.getLogger("verity")
    handler = Collect(logging.WARNING)
    saved_level, saved_propagate = verity_logger.level, verity_logger.propagate
    verity_logger.addHandler(handler)
    verity_logger.setLevel(logging.WARNING)
    verity_logger.propagate = False  # collected here, not printed
    try:
        yield logged
    finally:
        verity_logger.removeHandler(handler)
        verity_logger.setLevel(saved_level)
        verity_logger.propagate = saved_propagate


def _folder_bytes(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (but the lock file) and its bytes."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != "verity.lock"
    }


def forge_keyless(records: list[bytes], offset: int, payload: bytes) -> list[bytes]:
    """`records` (canonical bytes) with record `offset`'s payload replaced, rechained.

    What needs no key is recomputed (prev_hash, checkpoint statements); what
    does (signatures, KEY records) is kept as it was.
    """
    forged = list(records[:offset])
    leaf_hashes = [hashlib.sha256(b"\x00" + record).digest() for record in forged]
    # Subtrees of 2^k whole leaves never change as leaves are appended: each is hashed once.
    perfect: dict[tuple[int, int], bytes] = {}
    for position in range(offset, len(records)):
        old = records[position]
        prev = hashlib.sha256(CHAIN_DOMAIN + forged[-1]).digest() if forged else bytes(HASH_BYTES)
        body = payload if position == offset else old[HEADER_BYTES:]
        if old[HEADER_BYTES - 1] == 1 and len(body) in (73, 169):  # a checkpoint statement
            body = body[:9] + prev + _mth(leaf_hashes, 0, len(leaf_hashes), perfect) + body[73:]
        header = old[:8] + prev + old[40:48] + len(body).to_bytes(4, "big") + old[52:53]
        forged.append(header + body)
        leaf_hashes.append(hashlib.sha256(b"\x00" + forged[-1]).digest())
    return forged


def _mth(
    leaf_hashes: list[bytes], start: int, end: int, perfect: dict[tuple[int, int], bytes]
) -> bytes:
    """RFC 9162 MTH over the leaves `start .. end-1` (given as their leaf hashes)."""
    count = end - start
    if count == 0:
        return hashlib.sha256(b"").digest()
    if count == 1:
        return leaf_hashes[start]
    split = 1 << ((count - 1).bit_length() - 1)
    whole = count & (count - 1) == 0
    if whole and (start, count) in perfect:
        return perfect[(start, count)]
    left = _mth(leaf_hashes, start, start + split, perfect)
    right = _mth(leaf_hashes, start + split, end, perfect)
    root = hashlib.sha256(b"\x01" + left + right).digest()
    if whole:
        perfect[(start, count)] = root
    return root
