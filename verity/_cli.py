"""The `verity` command line.

- `verity demo DIR`: the main job on the embedded default: write records to a
  log in DIR, checkpoint and sign, prove inclusion and consistency, then flip
  one byte on disk and show that it is caught.
- `verity verify LOG_DIR`: verify a whole log, with progress on long logs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from verity.crypto import SigningKey, sign_checkpoint
from verity.errors import CorruptionError, VerityError
from verity.proofs import (
    verify_consistency,
    verify_inclusion,
    verify_signed_checkpoint,
)
from verity.storage import open_log
from verity.types import CheckpointPolicy, SyncPolicy


def _say(text: str) -> None:
    print(text, flush=True)


class _Progress:
    """A one-line progress report on stderr, redrawn at most 10 times a second."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown_at = 0.0
        self.interactive = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.interactive or (now - self.shown_at < 0.1 and done < total):
            return
        self.shown_at = now
        percent = 100.0 * done / total if total else 100.0
        sys.stderr.write(f"\r{self.label}: {done:,}/{total:,} records ({percent:5.1f}%)")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def demo(directory: Path) -> int:
    log_dir = directory / "log"
    if log_dir.exists():
        # A previous demo's log: start over so the demo shows the same story every time.
        shutil.rmtree(log_dir)
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / "signing.key"
    key = SigningKey.load_or_create(key_path)
    public_key = key.public_key_bytes()
    _say(f"VerityDB demo in {directory.resolve()}")
    _say(f"  signing key {key_path} (public key {public_key.hex()})")

    events = [
        json.dumps({"patient": 1041, "event": "admitted", "ward": "cardiology"}),
        json.dumps({"patient": 1041, "event": "ecg", "result": "sinus rhythm"}),
        json.dumps({"patient": 2203, "event": "admitted", "ward": "oncology"}),
        json.dumps({"patient": 1041, "event": "discharged"}),
    ]
    with open_log(
        log_dir,
        sync_policy=SyncPolicy.every_record(),
        checkpoint_policy=CheckpointPolicy(every_n_records=3),
    ) as log:
        first = log.append_batch([e.encode() for e in events[:3]])
        _say(f"1. appended 3 records from offset {int(first)}, each fsynced before returning")
        early_size = log.size
        early_root = log.merkle_root(early_size)
        log.append(events[3].encode())
        checkpoint = log.append_checkpoint()
        _say(
            f"2. checkpoint record at offset {int(checkpoint.offset)} covers "
            f"{checkpoint.record_count} records (log size {log.size}, "
            f"one automatic checkpoint after every 3 data records)"
        )
        size = log.size
        signed = sign_checkpoint(
            key, size, log.merkle_root(size), log.head_hash, int(log.last_timestamp)
        )
        verify_signed_checkpoint(signed, public_key)
        _say(
            f"3. signed checkpoint: tree_size={signed.tree_size} root={signed.root.hex()[:16]}... "
            f"signature verified with the public key alone"
        )
        proof = log.inclusion_proof(1, size)
        verify_inclusion(proof, signed.root)
        _say(
            f"4. inclusion proof of record 1 ({len(proof.path)} hashes) checks against the signed "
            f"root: {proof.leaf[53:].decode()}"
        )
        consistency = log.consistency_proof(early_size, size)
        verify_consistency(consistency, early_root, signed.root)
        _say(
            f"5. consistency proof {early_size} -> {size}: the earlier log is a prefix of the "
            f"signed one"
        )
        checked = log.verify()
        _say(f"6. full verification: {checked} records, chain and checkpoints intact")
        segment = log.segments()[0].path

    # Flip one byte inside record 1's payload, as a disk or an editor might.
    data = bytearray(Path(segment).read_bytes())
    target = data.find(b"sinus rhythm")
    assert target > 0
    data[target] ^= 0x20
    Path(segment).write_bytes(bytes(data))
    _say(f"7. flipped one byte at {Path(segment).name}:{target} ('sinus' -> 'Sinus')")
    with open_log(log_dir) as log:
        try:
            log.verify()
        except CorruptionError as failure:
            _say(f"8. detected: {failure}")
        else:
            _say("8. NOT DETECTED: the flipped byte went unnoticed")
            return 1
    return 0


def verify(log_dir: Path) -> int:
    if not log_dir.is_dir():
        # Opening would create an empty log: verifying nothing must not look like success.
        _say(f"FAILED: {log_dir} is not a log folder")
        return 2
    try:
        with open_log(log_dir) as log:
            checked = log.verify(progress=_Progress("verify"))
            _say(
                f"ok: {checked} records verified; head {log.head_hash.hex()}; "
                f"generation {int(log.generation)}; {len(log.recoveries())} recoveries"
            )
    except VerityError as failure:
        _say(f"FAILED: {failure}")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verity", description="VerityDB command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run the demo in a folder")
    demo_parser.add_argument("directory", type=Path)
    verify_parser = commands.add_parser("verify", help="verify a log folder end to end")
    verify_parser.add_argument("log_dir", type=Path)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo(args.directory)
    return verify(args.log_dir)


if __name__ == "__main__":
    raise SystemExit(main())
