"""verity.store: a crash at any moment leaves the state before or after a commit.

Every `pwritev` and `fsync` the store makes is recorded. At each of those
moments the test builds disk images a power cut could leave: everything
fsynced so far, plus any subset of the 512-byte sectors written since the
last fsync (none, all, or a random mix, so writes are torn). Each image is
reopened and must hold exactly the state of the last completed commit or of
the commit in progress, never a mix, and must pass `verify()`.

A second check destroys superblock copies 0 and 1 in the same images: the
older copies must then still open a state that some commit made, exactly,
because pages a commit frees are not reused while an older copy may refer to
them; or, when no copy is left, opening must fail with CorruptionError.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from verity.errors import CorruptionError
from verity.store import MemoryStore, Store, open_store
from verity.store import _pagefile as pagefile

PAGE_BYTES = 4096
SECTOR_BYTES = 512
TREES = ("t", "u")

Change = tuple[str, bytes, bytes | None]


@dataclass
class Disk:
    """The page file as fsync left it, and the writes made since."""

    durable: bytearray
    unsynced: list[tuple[int, bytes]] = field(default_factory=list)

    def image(self, rng: random.Random, mode: str) -> bytes:
        """A state the file could be in after a power cut now."""
        image = bytearray(self.durable)
        for offset, data in self.unsynced:
            for start in range(0, len(data), SECTOR_BYTES):
                keep = mode == "all" or (mode == "mix" and rng.random() < 0.5)
                if not keep:
                    continue
                sector = data[start : start + SECTOR_BYTES]
                at = offset + start
                if len(image) < at:
                    image.extend(bytes(at - len(image)))
                image[at : at + len(sector)] = sector
        return bytes(image)


@dataclass
class Moment:
    commits_done: int
    images: list[bytes]


@dataclass
class Committed:
    applied: tuple[int, bytes] | None
    batches: list[tuple[int, bytes, list[Change]]]


def model_of(batches: Sequence[tuple[int, bytes, list[Change]]]) -> MemoryStore:
    model = MemoryStore()
    for position, log_hash, changes in batches:
        model.write_batch(position, log_hash, changes)
    return model


def random_changes(rng: random.Random) -> list[Change]:
    changes: list[Change] = []
    for _ in range(rng.randrange(1, 40)):
        key = rng.choice([b"", b"k" * 200, b"\x00"]) + rng.randbytes(1)
        size = rng.choice([0, 10, 300, 2500])
        value = None if rng.random() < 0.15 else rng.randbytes(size)
        changes.append((rng.choice(TREES), key, value))
    return changes


def assert_holds(store: Store, committed: Committed) -> None:
    """`store` answers exactly as the model of `committed` does, at every position."""
    model = model_of(committed.batches)
    assert store.applied() == model.applied()
    assert store.trees() == model.trees()
    positions = [None, *(position for position, _, _ in committed.batches)]
    for tree in model.trees():
        for as_of in positions:
            assert list(store.scan(tree, as_of=as_of)) == list(model.scan(tree, as_of=as_of))


def open_image(folder: Path, image: bytes) -> Store:
    folder.mkdir()
    (folder / "pages.vstore").write_bytes(image)
    return open_store(folder, page_cache_pages=16)


def destroy_copies_0_and_1(image: bytes) -> bytes:
    damaged = bytearray(image)
    for copy in (0, 1):
        damaged[copy * PAGE_BYTES + 100] ^= 0xFF
    return bytes(damaged)


def record_crash_images(
    folder: Path, monkeypatch: pytest.MonkeyPatch, rng: random.Random, rounds: int
) -> tuple[list[Committed], list[Moment]]:
    """Run `rounds` commits (each of 1-3 batches) and capture crash images at every write."""
    batches: list[tuple[int, bytes, list[Change]]] = []
    position = 0

    def next_batch() -> tuple[int, bytes, list[Change]]:
        nonlocal position
        position += rng.randrange(1, 4)
        batch = (position, position.to_bytes(4, "big") * 8, random_changes(rng))
        batches.append(batch)
        return batch

    with open_store(folder, page_cache_pages=16) as store:
        for _ in range(2):
            store.write_batch(*next_batch())
    committed = [Committed(batches[-1][:2], list(batches))]
    store = open_store(folder, page_cache_pages=16)  # opening fsyncs: the file is durable now
    disk = Disk(bytearray((folder / "pages.vstore").read_bytes()))
    moments: list[Moment] = []
    real_pwritev = pagefile.pwritev
    real_fsync = pagefile.fsync

    def capture() -> None:
        images = [disk.image(rng, mode) for mode in ("none", "all", "mix")]
        moments.append(Moment(len(committed) - 1, images))

    def recording_pwritev(fd: int, buffers: Sequence[bytes], offset: int) -> int:
        written = real_pwritev(fd, buffers, offset)
        disk.unsynced.append((offset, b"".join(buffers)))
        capture()
        return written

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        for offset, data in disk.unsynced:
            if len(disk.durable) < offset:
                disk.durable.extend(bytes(offset - len(disk.durable)))
            disk.durable[offset : offset + len(data)] = data
        disk.unsynced.clear()
        capture()

    monkeypatch.setattr(pagefile, "pwritev", recording_pwritev)
    monkeypatch.setattr(pagefile, "fsync", recording_fsync)
    for _ in range(rounds):
        for _ in range(rng.randrange(0, 3)):
            store.write_batch(*next_batch(), sync=False)
        store.write_batch(*next_batch(), sync=True)
        committed.append(Committed(batches[-1][:2], list(batches)))
    store.abandon()
    monkeypatch.undo()
    return committed, moments


SEEDS = [*range(2), *(pytest.param(seed, marks=pytest.mark.slow) for seed in range(2, 40))]


@pytest.mark.parametrize("seed", SEEDS)
def test_crash_at_every_write_opens_before_or_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    committed, moments = record_crash_images(tmp_path / "live", monkeypatch, rng, rounds=3)
    assert len(moments) > 15
    opened_after = 0
    for moment_index, moment in enumerate(moments):
        allowed = committed[moment.commits_done : moment.commits_done + 2]
        for image_index, image in enumerate(moment.images):
            where = f"seed={seed} moment={moment_index} image={image_index}"
            with open_image(tmp_path / f"crash-{moment_index}-{image_index}", image) as store:
                matching = [state for state in allowed if state.applied == store.applied()]
                assert matching, f"{where}: opened at {store.applied()}"
                assert_holds(store, matching[0])
                assert store.verify() > 4
                opened_after += matching[0] is not allowed[0]
    # The images cover both outcomes: the crash often lands before the commit, often after.
    assert opened_after > 0


@pytest.mark.parametrize("seed", SEEDS)
def test_older_superblock_copies_still_open_a_committed_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(100 + seed)
    committed, moments = record_crash_images(tmp_path / "live", monkeypatch, rng, rounds=3)
    by_applied = {state.applied: state for state in committed}
    outcomes = {"opened": 0, "refused": 0}
    for moment_index, moment in enumerate(moments):
        for image_index, image in enumerate(moment.images):
            folder = tmp_path / f"older-{moment_index}-{image_index}"
            try:
                store = open_image(folder, destroy_copies_0_and_1(image))
            except CorruptionError as error:
                assert "superblock" in str(error)
                outcomes["refused"] += 1
                continue
            with store:
                state = by_applied.get(store.applied())
                assert state is not None, f"seed={seed} moment={moment_index}: {store.applied()}"
                assert_holds(store, state)
                store.verify()
                outcomes["opened"] += 1
    assert outcomes["opened"] > outcomes["refused"]


def test_crash_before_sync_loses_only_unsynced_batches(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    store = open_store(folder, page_cache_pages=16)
    store.write_batch(1, b"one", [("t", b"a", b"1")])
    for position in range(2, 40):
        store.write_batch(position, b"x", [("t", os.urandom(4), os.urandom(300))], sync=False)
    store.abandon()
    with open_store(folder) as reopened:
        assert reopened.applied() == (1, b"one")
        assert list(reopened.scan("t")) == [(b"a", b"1")]
        reopened.verify()
