"""verity.storage: Merkle roots and proofs equal RFC 9162, stored nodes are rebuilt."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
from functools import lru_cache
from pathlib import Path

import pytest

from verity.errors import CorruptionError
from verity.proofs import verify_consistency, verify_inclusion
from verity.storage import Log, open_log
from verity.storage._merkle import BLOCK_BYTES, block_sum
from verity.types import CheckpointPolicy

T0 = 1_700_000_000_000_000_000
NO_AUTO = CheckpointPolicy(explicit_only=True, on_shutdown=False)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Reference:
    """RFC 9162 §2.1 MTH, PATH and PROOF, by the recursive definitions."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaf_hashes = [sha(b"\x00" + leaf) for leaf in leaves]
        self.mth = lru_cache(maxsize=None)(self._mth)

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return sha(b"")
        if n == 1:
            return self.leaf_hashes[start]
        k = 1 << ((n - 1).bit_length() - 1)
        return sha(b"\x01" + self.mth(start, start + k) + self.mth(start + k, end))

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = 1 << ((n - 1).bit_length() - 1)
        if m < k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m - k, start + k, end), self.mth(start, start + k)]

    def proof(self, m: int, n: int) -> list[bytes]:
        return self.subproof(m, 0, n, True)

    def subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if whole else [self.mth(start, end)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return [*self.subproof(m, start, start + k, whole), self.mth(start + k, end)]
        return [*self.subproof(m - k, start + k, end, False), self.mth(start, start + k)]


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        self.now += 1000
        return self.now


def build(path: Path, count: int, segment_bytes_max: int = 2048) -> tuple[Log, list[bytes]]:
    log = open_log(
        path, checkpoint_policy=NO_AUTO, segment_bytes_max=segment_bytes_max, clock=FakeClock()
    )
    rng = random.Random(count)
    log.append_batch([rng.randbytes(rng.randrange(0, 90)) for _ in range(count)])
    leaves = [log.read(i).record_bytes() for i in range(count)]
    return log, leaves


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "verity.storage" and r.levelno == logging.WARNING
    ]


def test_every_proof_up_to_72_leaves_equals_the_rfc(tmp_path: Path) -> None:
    log, leaves = build(tmp_path / "log", 72)
    reference = Reference(leaves)
    with log:
        assert log.merkle_root(0) == sha(b"")
        for n in range(1, 73):
            root = log.merkle_root(n)
            assert root == reference.mth(0, n)
            for m in range(n):
                proof = log.inclusion_proof(m, n)
                assert list(proof.path) == reference.path(m, 0, n), (m, n)
                assert proof.leaf == leaves[m]
                verify_inclusion(proof, root)
            for m in range(1, n + 1):
                consistency = log.consistency_proof(m, n)
                assert list(consistency.path) == reference.proof(m, n), (m, n)
                verify_consistency(consistency, log.merkle_root(m), root)


def test_sampled_proofs_in_a_larger_log_and_after_reopen(tmp_path: Path) -> None:
    log, leaves = build(tmp_path / "log", 3000, segment_bytes_max=16384)
    reference = Reference(leaves)
    rng = random.Random(9)
    samples = [(rng.randrange(1, 3001), rng.random()) for _ in range(150)]
    samples += [(3000, 0.0), (3000, 0.999), (2048, 0.5), (2049, 0.999), (1, 0.0)]
    for reopen in (False, True):
        if reopen:
            log = open_log(tmp_path / "log", checkpoint_policy=NO_AUTO, segment_bytes_max=16384)
        with log:
            assert log.merkle_root() == reference.mth(0, 3000)
            for n, fraction in samples:
                m = int(fraction * n)
                proof = log.inclusion_proof(m, n)
                assert list(proof.path) == reference.path(m, 0, n)
                verify_inclusion(proof, reference.mth(0, n))
                old = max(1, m)
                consistency = log.consistency_proof(old, n)
                assert list(consistency.path) == reference.proof(old, n)
                verify_consistency(consistency, reference.mth(0, old), reference.mth(0, n))
            assert log.consistency_proof(5).new_size == 3000
            assert log.inclusion_proof(7).tree_size == 3000


def test_proofs_cover_records_appended_after_reopen(tmp_path: Path) -> None:
    log, leaves = build(tmp_path / "log", 100)
    log.close()
    with open_log(tmp_path / "log", checkpoint_policy=NO_AUTO, clock=FakeClock()) as log:
        log.append_batch([b"later %d" % i for i in range(37)])
        leaves += [log.read(i).record_bytes() for i in range(100, 137)]
        reference = Reference(leaves)
        for n in (100, 101, 128, 137):
            for m in (0, 50, 99, n - 1):
                assert list(log.inclusion_proof(m, n).path) == reference.path(m, 0, n)
            assert list(log.consistency_proof(100, n).path) == reference.proof(100, n)


def test_deleted_merkle_files_are_rebuilt_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, _ = build(tmp_path / "log", 300)
    with log:
        roots = [log.merkle_root(n) for n in range(301)]
        proofs = [log.inclusion_proof(m, 300) for m in range(0, 300, 7)]
        log.append_checkpoint()
    for level_file in (tmp_path / "log" / "merkle").iterdir():
        level_file.unlink()
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="verity.storage"),
        open_log(tmp_path / "log", checkpoint_policy=NO_AUTO) as log,
    ):
        assert [log.merkle_root(n) for n in range(301)] == roots
        assert [log.inclusion_proof(m, 300) for m in range(0, 300, 7)] == proofs
        assert log.verify() == 301
    assert len(warnings_of(caplog)) == 1
    assert "Merkle" in warnings_of(caplog)[0].getMessage()
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="verity.storage"),
        open_log(tmp_path / "log", checkpoint_policy=NO_AUTO) as log,
    ):
        assert log.merkle_root(300) == roots[300]
    assert warnings_of(caplog) == []


def test_wrong_merkle_nodes_are_caught_at_open_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, _ = build(tmp_path / "log", 200)
    with log:
        log.append_checkpoint()
        root = log.merkle_root(200)
    for level_file in (tmp_path / "log" / "merkle").iterdir():
        level_file.write_bytes(bytes(level_file.stat().st_size))
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="verity.storage"),
        open_log(tmp_path / "log", checkpoint_policy=NO_AUTO) as log,
    ):
        assert log.merkle_root(200) == root
        assert log.verify() == 201
    assert len(warnings_of(caplog)) == 1


def flip(path: Path, position: int, mask: int = 0x01) -> None:
    with path.open("r+b") as damaged:
        damaged.seek(position)
        byte = damaged.read(1)[0]
        damaged.seek(position)
        damaged.write(bytes([byte ^ mask]))


def merkle_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and path.stat().st_size)


def set_aside(log_folder: Path) -> list[Path]:
    return sorted(log_folder.glob("merkle.damaged-*"))


def test_a_flipped_leaf_in_a_partial_block_is_caught_at_open_and_kept_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, leaves = build(tmp_path / "log", 50)
    log.close()
    level_zero = tmp_path / "log" / "merkle" / "level-00.bin"
    flip(level_zero, 32 * 45 + 3)
    damaged = level_zero.read_bytes()
    caplog.clear()
    with (
        caplog.at_level(logging.WARNING, logger="verity.storage"),
        open_log(tmp_path / "log", checkpoint_policy=NO_AUTO) as log,
    ):
        assert list(log.inclusion_proof(45, 50).path) == Reference(leaves).path(45, 0, 50)
        assert log.verify() == 50
    [warning] = warnings_of(caplog)
    assert "node 45 of level-00.bin differs" in warning.getMessage()
    [aside] = set_aside(tmp_path / "log")
    assert (aside / "level-00.bin").read_bytes() == damaged  # the evidence is kept


def test_verify_names_the_merkle_file_for_a_bad_stored_leaf(tmp_path: Path) -> None:
    """A wrong leaf in a block whose CRC was rewritten to match: only the record disagrees."""
    log, _ = build(tmp_path / "log", 300)
    log.close()
    merkle = tmp_path / "log" / "merkle"
    level_zero = merkle / "level-00.bin"
    flip(level_zero, 32 * 45 + 3)
    block = level_zero.read_bytes()[:BLOCK_BYTES]
    (merkle / "level-00.sum").write_bytes(
        block_sum(0, 0, block).to_bytes(4, "little") + (merkle / "level-00.sum").read_bytes()[4:]
    )
    with open_log(tmp_path / "log", checkpoint_policy=NO_AUTO) as log:
        with pytest.raises(CorruptionError) as caught:
            log.verify()
        assert caught.value.record_offset == 45
        assert caught.value.file == str(level_zero)
        assert caught.value.byte_offset == 32 * 45
        # Reported, then set aside and rebuilt: the next verify passes.
        assert log.verify() == 300
    assert len(set_aside(tmp_path / "log")) == 1


def test_verify_reports_a_flipped_parent_node_and_the_next_verify_passes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, leaves = build(tmp_path / "log", 600)
    log.close()
    level_one = tmp_path / "log" / "merkle" / "level-01.bin"
    flip(level_one, 32 * 100 + 7, 0x80)
    with open_log(tmp_path / "log", checkpoint_policy=NO_AUTO) as log:
        with pytest.raises(CorruptionError) as caught:
            log.verify()
        assert caught.value.file == str(level_one)
        assert caught.value.byte_offset == 0  # the 4 KiB block that failed its CRC
        assert log.verify() == 600
        assert list(log.inclusion_proof(200, 600).path) == Reference(leaves).path(200, 0, 600)


def test_a_flip_after_open_is_caught_on_first_read_and_the_proof_is_right(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, leaves = build(tmp_path / "log", 600)
    reference = Reference(leaves)
    log.close()
    with (
        caplog.at_level(logging.WARNING, logger="verity.storage"),
        open_log(tmp_path / "log", checkpoint_policy=NO_AUTO, clock=FakeClock()) as log,
    ):
        flip(tmp_path / "log" / "merkle" / "level-02.bin", 32 * 30)
        assert list(log.inclusion_proof(121, 600).path) == reference.path(121, 0, 600)
        assert log.merkle_root(500) == reference.mth(0, 500)
        [warning] = warnings_of(caplog)
        assert "level-02.bin" in warning.getMessage()
        # The rebuilt tree keeps growing correctly, and the checkpoint root is right.
        log.append(b"after")
        log.append_checkpoint()
        assert log.verify() == 602


@pytest.mark.parametrize("seed", range(3))
def test_every_kind_of_merkle_file_damage_gives_right_answers(tmp_path: Path, seed: int) -> None:
    """Flip or cut any byte of any Merkle file of a closed log: roots and proofs stay right."""
    source = tmp_path / "source"
    log, leaves = build(source, 700, segment_bytes_max=8192)
    reference = Reference(leaves)
    log.close()
    rng = random.Random(seed)
    questions = [(rng.randrange(1, 701), rng.random()) for _ in range(12)] + [(700, 0.5)]
    for trial in range(24):
        work = tmp_path / f"work{trial}"
        shutil.copytree(source, work)
        target = rng.choice(merkle_files(work / "merkle"))
        if rng.random() < 0.8:
            flip(target, rng.randrange(target.stat().st_size), rng.randrange(1, 256))
        else:
            os.truncate(target, rng.randrange(target.stat().st_size))
        with open_log(work, checkpoint_policy=NO_AUTO) as log:
            for n, fraction in questions:
                m = int(fraction * n)
                assert log.merkle_root(n) == reference.mth(0, n), (target.name, n)
                assert list(log.inclusion_proof(m, n).path) == reference.path(m, 0, n)
                old = max(1, m)
                assert list(log.consistency_proof(old, n).path) == reference.proof(old, n)
            try:
                log.verify()
            except CorruptionError as failure:
                assert failure.file is not None and "merkle" in failure.file
            assert log.verify() == 700
