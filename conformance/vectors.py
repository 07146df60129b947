"""Test vectors: scenarios written once, expected results computed by the spec.

`generate(out_dir)` writes one JSON file per scenario (docs/conformance.md);
`run(vectors_dir, factory)` replays every file against an implementation and
counts passed and failed steps' files. Scenarios are plain data built from a
seeded `random.Random`, so regenerating is byte-for-byte reproducible and CI
can insist the committed vectors are fresh.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import verity_spec.log as spec_log
from verity_conformance import _runner

# Re-exported: FORMAT and VectorResult were first defined here, and callers import them from here.
from verity_conformance._runner import FORMAT as FORMAT
from verity_conformance._runner import VectorResult as VectorResult
from verity_conformance.drivers import LogDriver, Observation, SpecLogDriver, StorageLogDriver
from verity_spec.records import U64_MAX

NOW_START = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
VECTORS_DIR = Path(__file__).resolve().parent / "vectors"

Step = dict[str, Any]
DriverFactory = Callable[[Path, dict[str, Any]], LogDriver]


def default_factory(directory: Path, config: dict[str, Any]) -> LogDriver:
    return StorageLogDriver(directory, config)


def perform(driver: LogDriver, step: Step) -> Observation:
    """Run one step's operation on `driver` and return its observation."""
    op = step["op"]
    if op == "append_batch":
        return driver.append_batch([bytes.fromhex(p) for p in step["payloads"]], step["now"])
    if op == "append_checkpoint":
        return driver.append_checkpoint(step["now"])
    if op == "read":
        return driver.read(step["offset"])
    if op == "read_verified":
        return driver.read_verified(step["offset"])
    if op == "records":
        return driver.records(step["start"], step["end"])
    if op == "verify":
        return driver.verify()
    if op == "state":
        return driver.state()
    if op == "merkle_root":
        return driver.merkle_root(step["tree_size"])
    if op == "inclusion_proof":
        return driver.inclusion_proof(step["leaf_index"], step["tree_size"])
    if op == "consistency_proof":
        return driver.consistency_proof(step["old_size"], step["new_size"])
    if op == "reopen":
        return driver.reopen(step["now"])
    if op == "crash":
        return driver.crash(step["keep"], step["torn"], step["now"])
    if op == "crash_in_append":
        return driver.crash_in_append(
            [bytes.fromhex(p) for p in step["payloads"]],
            step["now"],
            step["keep"],
            step["torn"],
            step["reopen_now"],
        )
    if op == "rotate_key":
        return driver.rotate_key(bytes.fromhex(step["new_seed"]), step["now"])
    if op == "rewrite":
        return driver.rewrite(step["offset"], bytes.fromhex(step["payload"]))
    if op == "corrupt":
        return driver.corrupt(step["offset"], step["byte"])
    if op == "lose_records":
        return driver.lose_records(step["first"], step["end"])
    if op == "forge_head":
        return driver.forge_head()
    if op == "short_io":
        return driver.short_io(step["on"])
    if op == "fail_append":
        return driver.fail_append(
            [bytes.fromhex(p) for p in step["payloads"]], step["now"], step["errno"]
        )
    if op == "flip_derived":
        return driver.flip_derived(step["kind"], step["byte"], step["now"])
    if op == "delete_derived":
        return driver.delete_derived(step["kind"], step["now"])
    if op == "lock_refused":
        return driver.lock_refused(step["errno"], step["now"])
    raise ValueError(f"unknown op {op!r} in step {step!r}")


# ---------------------------------------------------------------------------
# Scenarios: each yields steps without expectations; the spec fills them in.


@dataclass
class Scenario:
    name: str
    description: str
    config: dict[str, Any]
    steps: list[Step]


class _Clock:
    def __init__(self) -> None:
        self.now = NOW_START

    def tick(self, rng: random.Random | None = None) -> int:
        # Sometimes the wall clock steps backwards: the log must stay monotonic.
        if rng is not None and rng.random() < 0.15:
            self.now -= rng.randrange(1, 1_000_000)
        else:
            self.now += 1_000_000 if rng is None else rng.randrange(1, 5_000_000)
        return self.now


def _payload(rng: random.Random, size_max: int = 300) -> str:
    return rng.randbytes(rng.randrange(0, size_max)).hex()


def _policy(every_n: int, on_shutdown: bool = True, explicit_only: bool = False) -> dict[str, Any]:
    return {
        "checkpoint_policy": {
            "every_n_records": every_n,
            "on_shutdown": on_shutdown,
            "explicit_only": explicit_only,
        }
    }


def _all_reads(size: int) -> Iterator[Step]:
    for offset in range(size):
        yield {"op": "read", "offset": offset}
        yield {"op": "read_verified", "offset": offset}


def scenario_basic() -> Scenario:
    rng = random.Random(1)
    clock = _Clock()
    steps: list[Step] = [{"op": "state"}]
    for batch in ([b"hello"], [b"", b"x" * 100, b"third"], [b"\x00" * 7]):
        steps.append(
            {"op": "append_batch", "payloads": [p.hex() for p in batch], "now": clock.tick()}
        )
    steps.append({"op": "append_batch", "payloads": [_payload(rng)], "now": clock.tick()})
    steps += list(_all_reads(6))
    steps += [{"op": "records", "start": 0, "end": 6}, {"op": "records", "start": 2, "end": 2}]
    steps += [{"op": "read", "offset": 6}, {"op": "verify"}, {"op": "state"}]
    return Scenario("basic", "append batches, read every record back, verify", _policy(1000), steps)


def scenario_checkpoints() -> Scenario:
    rng = random.Random(2)
    clock = _Clock()
    steps: list[Step] = []
    for _ in range(4):
        payloads = [_payload(rng) for _ in range(rng.randrange(1, 6))]
        steps.append({"op": "append_batch", "payloads": payloads, "now": clock.tick()})
    steps.append({"op": "append_checkpoint", "now": clock.tick()})
    steps.append({"op": "append_batch", "payloads": [_payload(rng)], "now": clock.tick()})
    steps.append({"op": "state"})
    steps += [{"op": "read_verified", "offset": offset} for offset in range(0, 24)]
    steps += [{"op": "verify"}, {"op": "reopen", "now": clock.tick()}, {"op": "verify"}]
    # Reopening again adds no second shutdown checkpoint.
    steps += [{"op": "reopen", "now": clock.tick()}, {"op": "state"}]
    return Scenario(
        "checkpoints",
        "automatic checkpoints every 3 data records (inside batches), explicit and shutdown ones",
        _policy(3),
        steps,
    )


def scenario_merkle() -> Scenario:
    clock = _Clock()
    steps: list[Step] = []
    size = 20
    for index in range(size):
        steps.append(
            {
                "op": "append_batch",
                "payloads": [f"leaf-{index}".encode().hex()],
                "now": clock.tick(),
            }
        )
    for tree_size in range(1, size + 1):
        steps.append({"op": "merkle_root", "tree_size": tree_size})
        for leaf_index in range(tree_size):
            steps.append(
                {"op": "inclusion_proof", "leaf_index": leaf_index, "tree_size": tree_size}
            )
        for old_size in range(1, tree_size + 1):
            steps.append({"op": "consistency_proof", "old_size": old_size, "new_size": tree_size})
    steps.append({"op": "merkle_root", "tree_size": 0})
    return Scenario(
        "merkle",
        "RFC 9162 roots, every inclusion proof and every consistency proof up to 20 records",
        _policy(1000, explicit_only=True),
        steps,
    )


def scenario_bad_arguments() -> Scenario:
    clock = _Clock()
    steps: list[Step] = [
        {"op": "read", "offset": 0},
        {"op": "append_batch", "payloads": ["aa", "bb", "cc"], "now": clock.tick()},
        {"op": "read", "offset": 3},
        {"op": "read_verified", "offset": 99},
        {"op": "merkle_root", "tree_size": 4},
        {"op": "inclusion_proof", "leaf_index": 3, "tree_size": 3},
        {"op": "inclusion_proof", "leaf_index": 0, "tree_size": 4},
        {"op": "consistency_proof", "old_size": 0, "new_size": 2},
        {"op": "consistency_proof", "old_size": 3, "new_size": 2},
        {"op": "consistency_proof", "old_size": 2, "new_size": 4},
        {"op": "state"},
        # Timestamps near 2**64-1: a call that could pass it is refused whole, even when
        # the clock stepped back (the last timestamp, not `now`, is what runs out).
        {"op": "append_batch", "payloads": ["dd"], "now": U64_MAX - 8},
        {"op": "append_batch", "payloads": ["ee", "ff"], "now": 5},
        {"op": "append_batch", "payloads": ["01", "02", "03", "04"], "now": 5},
        {"op": "append_batch", "payloads": ["01", "02"], "now": U64_MAX - 3},
        {"op": "state"},
        {"op": "append_checkpoint", "now": U64_MAX},
        {"op": "append_checkpoint", "now": 0},
        {"op": "append_batch", "payloads": ["05"], "now": 0},
        {"op": "state"},
    ]
    return Scenario(
        "bad-arguments",
        "offsets and tree sizes out of range are typed errors and change nothing; so are "
        "calls whose timestamps could pass 2**64-1",
        _policy(1000),
        steps,
    )


def scenario_torn_tail() -> Scenario:
    rng = random.Random(5)
    clock = _Clock()
    steps: list[Step] = []
    for _ in range(3):
        payloads = [_payload(rng) for _ in range(4)]
        steps.append({"op": "append_batch", "payloads": payloads, "now": clock.tick()})

    def in_append(count: int, keep: int, torn: bool) -> Step:
        return {
            "op": "crash_in_append",
            "payloads": [_payload(rng) for _ in range(count)],
            "now": clock.tick(),
            "keep": keep,
            "torn": torn,
            "reopen_now": clock.tick(),
        }

    steps += [
        {"op": "crash", "keep": 12, "torn": False, "now": clock.tick()},
        in_append(3, 15, False),  # every frame of the append reached the disk
        in_append(4, 17, True),  # two whole frames and a torn third
        {"op": "verify"},
        in_append(2, 17, False),  # nothing of it reached the disk
        in_append(1, 17, True),
        {"op": "append_batch", "payloads": [_payload(rng), _payload(rng)], "now": clock.tick()},
        {"op": "verify"},
        {"op": "reopen", "now": clock.tick()},
        {"op": "state"},
    ]
    steps += list(_all_reads(19))
    return Scenario(
        "torn-tail",
        "crashes in the middle of an append: whole frames are kept, a torn last frame is "
        "discarded with a recovery record naming its offset, and the generation grows",
        _policy(1000),
        steps,
    )


def scenario_history_loss() -> Scenario:
    rng = random.Random(7)
    clock = _Clock()
    steps: list[Step] = []
    for _ in range(3):
        payloads = [_payload(rng) for _ in range(4)]
        steps.append({"op": "append_batch", "payloads": payloads, "now": clock.tick()})
    steps += [
        # Acknowledged records cut away, at a boundary or inside a frame, or all of
        # them: open refuses, names the range, and the log is as before.
        {"op": "crash", "keep": 10, "torn": False, "now": clock.tick()},
        {"op": "crash", "keep": 7, "torn": True, "now": clock.tick()},
        {"op": "crash", "keep": 0, "torn": False, "now": clock.tick()},
        {"op": "state"},
        {"op": "verify"},
        {"op": "append_checkpoint", "now": clock.tick()},
        {"op": "crash", "keep": 12, "torn": False, "now": clock.tick()},
        {"op": "reopen", "now": clock.tick()},
        {"op": "crash", "keep": 3, "torn": True, "now": clock.tick()},
        {"op": "state"},
        {"op": "append_batch", "payloads": [_payload(rng)], "now": clock.tick()},
        {"op": "verify"},
    ]
    steps += list(_all_reads(14))
    return Scenario(
        "history-loss",
        "durable records cut from the log are lost history, not a torn tail: "
        "open refuses naming the lost range, truncates nothing, appends nothing",
        _policy(1000),
        steps,
    )


def scenario_forged_head() -> Scenario:
    """The last record rewritten with a valid frame CRC, on each of open's three paths."""
    clock = _Clock()
    # 100-byte payloads make 161-byte frames: six to a 1,024-byte segment.
    payload = bytes(range(100)).hex()
    steps: list[Step] = [
        {"op": "append_batch", "payloads": [payload] * 4, "now": clock.tick()},
        # After a crash: the active segment is scanned; the durable mark names the head.
        {"op": "forge_head"},
        {"op": "state"},
        {"op": "reopen", "now": clock.tick()},
        # After a clean close: the active segment's index names the head.
        {"op": "forge_head"},
        {"op": "append_batch", "payloads": [payload] * 10, "now": clock.tick()},
        # Records 14..17 fill the active segment (sealed on the way), 18.. start the
        # next, which the crash leaves empty: the sealed segment's index names the head.
        {
            "op": "crash_in_append",
            "payloads": [payload] * 8,
            "now": clock.tick(),
            "keep": 18,
            "torn": False,
            "reopen_now": clock.tick(),
        },
        {"op": "forge_head"},
        {"op": "state"},
        {"op": "verify"},
        {"op": "append_batch", "payloads": [payload], "now": clock.tick()},
        {"op": "forge_head"},
        {"op": "verify"},
    ]
    steps += list(_all_reads(19))
    return Scenario(
        "forged-head",
        "the last record's bytes replaced by other well-framed bytes (CRC recomputed): "
        "open refuses naming that record, after a crash, after a clean close, and when "
        "it ends a sealed segment; the files are untouched and the log goes on",
        {**_policy(1000, on_shutdown=False, explicit_only=True), "segment_bytes_max": 1024},
        steps,
    )


def scenario_signatures() -> Scenario:
    """A signed log: its key pinned in record 0, signed checkpoints, a rotation, and a
    keyless rewrite that the next signed checkpoint exposes."""
    rng = random.Random(8)
    clock = _Clock()
    steps: list[Step] = [{"op": "state"}]
    for _ in range(2):
        payloads = [_payload(rng, 80) for _ in range(4)]
        steps.append({"op": "append_batch", "payloads": payloads, "now": clock.tick()})
    steps += [
        {"op": "append_checkpoint", "now": clock.tick()},
        {"op": "verify"},
        {"op": "rotate_key", "new_seed": bytes(range(100, 132)).hex(), "now": clock.tick()},
        {"op": "append_batch", "payloads": [_payload(rng, 80)], "now": clock.tick()},
        {"op": "append_checkpoint", "now": clock.tick()},
        {"op": "reopen", "now": clock.tick()},
        {"op": "verify"},
        {"op": "append_batch", "payloads": [_payload(rng, 80)], "now": clock.tick()},
        # amount=100 -> amount=900 in record 2, everything keyless recomputed after it.
        {"op": "rewrite", "offset": 2, "payload": b"amount=900".hex()},
        {"op": "verify"},
        {"op": "read", "offset": 2},
        {"op": "read_verified", "offset": 2},
    ]
    steps += list(_all_reads(16))
    return Scenario(
        "signatures",
        "a signed log: the key pinned in record 0, every checkpoint signed, a rotation signed by "
        "the outgoing key; a keyless rewrite fails the first signed checkpoint after it",
        {**_policy(3), "signing_seed": bytes(range(32)).hex()},
        steps,
    )


def scenario_keys_after_checkpoint() -> Scenario:
    """KEY records after the last checkpoint do not count towards the next one, across an open."""
    clock = _Clock()
    steps: list[Step] = [
        {"op": "append_batch", "payloads": ["01", "02", "03"], "now": clock.tick()},
        {"op": "rotate_key", "new_seed": bytes(range(100, 132)).hex(), "now": clock.tick()},
        {"op": "rotate_key", "new_seed": bytes(range(140, 172)).hex(), "now": clock.tick()},
        # Opened again without a shutdown checkpoint: records 5 and 6 are KEY records.
        {"op": "crash", "keep": 7, "torn": False, "now": clock.tick()},
        {"op": "state"},
    ]
    for payload in ("04", "05", "06", "07"):
        steps += [{"op": "append_batch", "payloads": [payload], "now": clock.tick()}]
        steps += [{"op": "state"}]
    steps += [{"op": "verify"}]
    return Scenario(
        "keys-after-checkpoint",
        "a checkpoint falls due after every_n_records DATA records; KEY records (rotations) "
        "after the last checkpoint do not count, also when the log was opened in between",
        {**_policy(3, on_shutdown=False), "signing_seed": bytes(range(32)).hex()},
        steps,
    )


def scenario_unsigned_tail() -> Scenario:
    rng = random.Random(9)
    clock = _Clock()
    steps: list[Step] = [
        {"op": "append_batch", "payloads": [_payload(rng) for _ in range(3)], "now": clock.tick()},
        {"op": "append_checkpoint", "now": clock.tick()},
        {"op": "append_batch", "payloads": [_payload(rng) for _ in range(2)], "now": clock.tick()},
        {"op": "rewrite", "offset": 6, "payload": b"forged".hex()},
        {"op": "verify"},
        {"op": "state"},
    ]
    return Scenario(
        "unsigned-tail",
        "records after the last signed checkpoint are only 'not yet signed': a rewrite there "
        "verifies, and signed_through says how far the signatures reach",
        {**_policy(1000, on_shutdown=False), "signing_seed": bytes(range(1, 33)).hex()},
        steps,
    )


def scenario_corruption() -> Scenario:
    rng = random.Random(6)
    clock = _Clock()
    steps: list[Step] = []
    for _ in range(3):
        payloads = [_payload(rng, 64) for _ in range(5)]
        steps.append({"op": "append_batch", "payloads": payloads, "now": clock.tick()})
    # Flip a payload byte of record 7 and a length-field byte of record 2.
    steps += [
        {"op": "corrupt", "offset": 7, "byte": 8 + 53},
        {"op": "corrupt", "offset": 2, "byte": 1},
        {"op": "reopen", "now": clock.tick()},
        {"op": "verify"},
    ]
    steps += list(_all_reads(16))
    steps += [
        {"op": "records", "start": 0, "end": 16},
        {"op": "records", "start": 8, "end": 16},
        {"op": "records", "start": 3, "end": 7},
        {"op": "records", "start": 16, "end": 17},
    ]
    steps += [
        {"op": "append_batch", "payloads": [_payload(rng)], "now": clock.tick()},
        {"op": "read_verified", "offset": 16},
        {"op": "merkle_root", "tree_size": 16},
        {"op": "inclusion_proof", "leaf_index": 7, "tree_size": 16},
        {"op": "state"},
    ]
    return Scenario(
        "corruption",
        "flipped bytes are reported as corruption of exactly the record they hit; "
        "nothing is truncated and the rest of the log stays readable",
        _policy(4),
        steps,
    )


def scenario_faults() -> Scenario:
    """Faults as inputs (issue 11 §3) on a log of hundreds of records in small segments."""
    rng = random.Random(11)
    clock = _Clock()

    def batch(count: int) -> Step:
        payloads = [_payload(rng, 48) for _ in range(count)]
        return {"op": "append_batch", "payloads": payloads, "now": clock.tick()}

    steps: list[Step] = [
        # A checkpoint at offset 0, then one at 6 and one at 207.
        {"op": "append_checkpoint", "now": clock.tick()},
        batch(5),
        {"op": "append_checkpoint", "now": clock.tick()},
        # Every read and write from here returns half of what it asked for.
        {"op": "short_io", "on": True},
        # Over 128 records in one batch, rolling segments inside it.
        batch(200),
        {"op": "append_checkpoint", "now": clock.tick()},
        batch(150),
        {"op": "reopen", "now": clock.tick()},
        {"op": "verify"},
        {"op": "records", "start": 0, "end": 358},
    ]
    steps += [{"op": "read", "offset": offset} for offset in range(0, 358, 7)]
    steps += [
        {"op": "short_io", "on": False},
        # The disk refuses an append: the log is as it was and takes the next one.
        {"op": "fail_append", "payloads": [_payload(rng, 48)], "now": clock.tick(), "errno": "EIO"},
        {"op": "state"},
        {
            "op": "fail_append",
            "payloads": [_payload(rng, 48) for _ in range(3)],
            "now": clock.tick(),
            "errno": "ENOSPC",
        },
        {"op": "state"},
        batch(3),
        {"op": "read", "offset": 359},
        # A batch whose first record does not fit the active segment, refused at the
        # next segment's first write: the segment it sealed held nothing unsynced, so
        # nothing of the batch reached the disk (the log is as it was and goes on).
        {"op": "fail_append", "payloads": ["5a" * 4000], "now": clock.tick(), "errno": "ENOSPC"},
        {"op": "state"},
        batch(2),
        # A flipped bit in a complete Merkle block is detected and the block rebuilt.
        {"op": "flip_derived", "kind": "merkle", "byte": 1000, "now": clock.tick()},
        {"op": "merkle_root", "tree_size": 361},
        {"op": "merkle_root", "tree_size": 130},
        {"op": "inclusion_proof", "leaf_index": 31, "tree_size": 361},
        {"op": "consistency_proof", "old_size": 100, "new_size": 361},
        # A flipped bit in an offset index: the index is rebuilt from its segment.
        {"op": "flip_derived", "kind": "index", "byte": 21, "now": clock.tick()},
        {"op": "read", "offset": 3},
        {"op": "read", "offset": 30},
        {"op": "read_verified", "offset": 360},
        {"op": "state"},
        {"op": "read_verified", "offset": 0},
        {"op": "read_verified", "offset": 1},
        # A durability mark that does not check (a bit of its size, of its head hash)
        # is no evidence: the log opens as it was.
        {"op": "flip_derived", "kind": "mark", "byte": 9, "now": clock.tick()},
        {"op": "flip_derived", "kind": "mark", "byte": 20, "now": clock.tick()},
        # Opens the folder lock refuses change nothing; only another holder is "in use".
        {"op": "lock_refused", "errno": "EWOULDBLOCK", "now": clock.tick()},
        {"op": "lock_refused", "errno": "ENOLCK", "now": clock.tick()},
        {"op": "lock_refused", "errno": "EIO", "now": clock.tick()},
        batch(2),
    ]
    config = {**_policy(1000, on_shutdown=False, explicit_only=True), "segment_bytes_max": 4096}
    return Scenario(
        "faults",
        "short reads and writes are invisible, a refused append leaves the log as it was, "
        "an open the folder lock refuses changes nothing and says why, "
        "a flipped bit in a Merkle block or an index changes no answer, and a verified read "
        "anchors on the first checkpoint",
        config,
        steps,
    )


def scenario_checkpoint_anchor() -> Scenario:
    """The first checkpoint anchors verified reads: damage before it is not on their path."""
    rng = random.Random(12)
    clock = _Clock()

    def batch(count: int) -> Step:
        payloads = [_payload(rng, 48) for _ in range(count)]
        return {"op": "append_batch", "payloads": payloads, "now": clock.tick()}

    steps: list[Step] = [
        batch(5),
        {"op": "append_checkpoint", "now": clock.tick()},
        batch(140),
        # Rebuilt from the log, the checkpoint list begins with that checkpoint.
        {"op": "delete_derived", "kind": "checkpoints", "now": clock.tick()},
        {"op": "delete_derived", "kind": "index", "now": clock.tick()},
        {"op": "delete_derived", "kind": "merkle", "now": clock.tick()},
        {"op": "corrupt", "offset": 2, "byte": 8 + 53},
    ]
    reads = [5, 6, 40, 145, 4, 2, 1]
    steps += [{"op": "read_verified", "offset": offset} for offset in reads]
    steps.append({"op": "reopen", "now": clock.tick()})
    steps += [{"op": "read_verified", "offset": offset} for offset in reads]
    steps += [{"op": "verify"}, {"op": "state"}]
    config = {**_policy(1000, on_shutdown=False, explicit_only=True), "segment_bytes_max": 4096}
    return Scenario(
        "checkpoint-anchor",
        "a verified read past the first checkpoint (entry 0 of the checkpoint list) anchors "
        "on it, so a damaged record before it is reported only by reads that cross it",
        config,
        steps,
    )


def scenario_random(seed: int) -> Scenario:
    """A random walk over every operation; the spec decides what each should give."""
    rng = random.Random(1000 + seed)
    clock = _Clock()
    every_n = rng.choice([1, 2, 5, 1000])
    size = 0
    checkpoints_possible = True
    damaged = False
    steps: list[Step] = []
    for _ in range(40):
        choice = rng.random()
        if choice < 0.35 or size == 0:
            payloads = [_payload(rng, 200) for _ in range(rng.randrange(1, 8))]
            steps.append({"op": "append_batch", "payloads": payloads, "now": clock.tick(rng)})
            size += len(payloads) * 2  # an upper bound; expectations come from the spec
        elif choice < 0.45 and checkpoints_possible:
            steps.append({"op": "append_checkpoint", "now": clock.tick(rng)})
        elif choice < 0.6:
            steps.append(
                {"op": rng.choice(["read", "read_verified"]), "offset": rng.randrange(size + 2)}
            )
        elif choice < 0.68:
            tree_size = rng.randrange(1, size + 1)
            steps.append(
                {
                    "op": "inclusion_proof",
                    "leaf_index": rng.randrange(tree_size + 1),
                    "tree_size": tree_size,
                }
            )
        elif choice < 0.74:
            new_size = rng.randrange(1, size + 1)
            steps.append(
                {
                    "op": "consistency_proof",
                    "old_size": rng.randrange(new_size + 1),
                    "new_size": new_size,
                }
            )
        elif choice < 0.8:
            steps.append({"op": "verify"})
        elif choice < 0.87:
            steps.append({"op": "reopen", "now": clock.tick(rng)})
        elif choice < 0.90 and not damaged:
            steps.append(
                {
                    "op": "crash_in_append_random",
                    "payloads": [_payload(rng, 200) for _ in range(rng.randrange(1, 5))],
                    "now": clock.tick(rng),
                    "fraction": rng.random(),
                    "torn": rng.random() < 0.5,
                    "reopen_now": clock.tick(rng),
                }
            )
            size += 8
        elif choice < 0.93 and not damaged:
            steps.append(
                {
                    "op": "crash_random",
                    "fraction": rng.random(),
                    "torn": rng.random() < 0.5,
                    "now": clock.tick(rng),
                }
            )
        elif not damaged:
            steps.append(
                {"op": "corrupt_random", "fraction": rng.random(), "byte_fraction": rng.random()}
            )
            damaged = True
        steps.append({"op": "state"})
    return Scenario(
        f"random-{seed:02d}",
        f"random walk {seed} over all operations (checkpoint every {every_n})",
        _policy(every_n),
        steps,
    )


def scenarios() -> list[Scenario]:
    fixed = [
        scenario_basic(),
        scenario_checkpoints(),
        scenario_merkle(),
        scenario_bad_arguments(),
        scenario_torn_tail(),
        scenario_history_loss(),
        scenario_forged_head(),
        scenario_corruption(),
        scenario_signatures(),
        scenario_unsigned_tail(),
        scenario_faults(),
        scenario_keys_after_checkpoint(),
        scenario_checkpoint_anchor(),
    ]
    return fixed + [scenario_random(seed) for seed in range(12)]


def _resolve(step: Step, spec: SpecLogDriver) -> Step | None:
    """Turn a random placeholder step into a concrete one, using the spec's state."""
    size = len(spec.log.records)
    if step["op"] == "crash_random":
        if size == 0:
            return None
        keep = min(size, int(step["fraction"] * (size + 1)))
        torn = bool(step["torn"]) and keep < size
        return {"op": "crash", "keep": keep, "torn": torn, "now": step["now"]}
    if step["op"] == "crash_in_append_random":
        payloads = tuple(bytes.fromhex(p) for p in step["payloads"])
        written = size_of_write(spec, payloads, step["now"])
        keep = min(written, size + int(step["fraction"] * (written - size + 1)))
        torn = bool(step["torn"]) and keep < written
        fields = {k: step[k] for k in ("payloads", "now", "reopen_now")}
        return {"op": "crash_in_append", **fields, "keep": keep, "torn": torn}
    if step["op"] == "corrupt_random":
        if size < 2:
            return None
        # Never the last record: a damaged final frame after a crash is a torn tail.
        offset = min(size - 2, int(step["fraction"] * (size - 1)))
        frame_bytes = 8 + 53 + len(spec.log.records[offset].payload)
        return {"op": "corrupt", "offset": offset, "byte": int(step["byte_fraction"] * frame_bytes)}
    return step


def size_of_write(spec: SpecLogDriver, payloads: tuple[bytes, ...], now: int) -> int:
    """The log size once `payloads` are written (checkpoints included), before any fsync."""
    return len(spec_log.write_unacknowledged(spec.log, payloads, now, spec.policy).records)


def build_vector(scenario: Scenario) -> dict[str, Any]:
    spec = SpecLogDriver(scenario.config)
    steps: list[Step] = []
    for raw in scenario.steps:
        step = _resolve(raw, spec)
        if step is None:
            continue
        expect = perform(spec, step)
        steps.append({**step, "expect": expect})
    return {
        "format": FORMAT,
        "machine": "log",
        "name": scenario.name,
        "description": scenario.description,
        "config": scenario.config,
        "steps": steps,
    }


def generate(out_dir: Path) -> list[Path]:
    return _runner.write_vectors(out_dir, (build_vector(scenario) for scenario in scenarios()))


def run_vector(path: Path, factory: DriverFactory) -> VectorResult:
    return _runner.run_vector(
        path,
        "log",
        lambda config, scratch: factory(scratch / "log", config),
        perform,
        close=lambda driver: driver.close(),
    )


def run(vectors_dir: Path, factory: DriverFactory) -> list[VectorResult]:
    return _runner.run_all(vectors_dir, "log", lambda path: run_vector(path, factory))
