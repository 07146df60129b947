"""The `verity` command line.

- `verity demo DIR`: the main job on the embedded default, through the SDK:
  a tenant with an encrypted PHI stream and a PUBLIC one, idempotent appends,
  signed checkpoints, inclusion and consistency proofs, a byte search showing
  the PHI plaintext is not on disk, then one flipped byte that is caught.
- `verity verify LOG_DIR`: verify a whole log, with progress on long logs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import verity
from verity.errors import VerityError
from verity.proofs import (
    verify_consistency,
    verify_inclusion,
    verify_signed_checkpoint,
)
from verity.storage import open_log
from verity.types import CheckpointPolicy, DataClass, IdempotencyId, SyncPolicy, TenantId


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
    """The main job on the embedded default, through the SDK (docs/sdk.md)."""
    database_dir = directory / "db"
    if database_dir.exists():
        # A previous demo's database: start over so the demo tells the same story every time.
        shutil.rmtree(database_dir)
    directory.mkdir(parents=True, exist_ok=True)
    secret = b"patient 1041: ECG shows sinus rhythm"
    bulletin = b"ward 3 reopens on monday"
    _say(f"VerityDB demo in {database_dir.resolve()}")
    with verity.open(
        database_dir,
        sync_policy=SyncPolicy.every_record(),
        checkpoint_policy=CheckpointPolicy(every_n_records=3),
    ) as db:
        t = db.tenant(TenantId(1))
        admissions = t.create_stream("admissions", DataClass.PHI)
        notices = t.create_stream("notices", DataClass.PUBLIC)
        _say("1. tenant 1: streams 'admissions' (PHI, encrypted at rest) and 'notices' (PUBLIC)")
        key = IdempotencyId.generate()
        first = t.append(
            admissions,
            [b"patient 1041 admitted to cardiology", secret, b"patient 2203 admitted"],
            idempotency_id=key,
        )
        retried = t.append(admissions, [b"(a retry)"], idempotency_id=key)
        _say(
            f"2. appended 3 events at stream offset {int(first)}, fsynced before returning; "
            f"a retry with the same idempotency id got offset {int(retried)} and appended nothing"
        )
        t.append(notices, [bulletin])
        earlier = t.checkpoint()
        t.append(admissions, [b"patient 1041 discharged"])
        signed = t.checkpoint()
        public_key = t.public_key()
        verify_signed_checkpoint(earlier, public_key)
        verify_signed_checkpoint(signed, public_key)
        _say(
            f"3. signed checkpoint: tree_size={signed.tree_size} root={signed.root.hex()[:16]}... "
            f"verified with the public key alone"
        )
        bulletin_leaf = _leaf_holding(t, bulletin, signed.tree_size)
        proof = t.inclusion_proof(bulletin_leaf, signed.tree_size)
        verify_inclusion(proof, signed.root)
        _say(
            f"4. inclusion proof of log record {bulletin_leaf} ({len(proof.path)} hashes) checks "
            f"against the signed root; its PUBLIC event is in the leaf: {bulletin.decode()!r}"
        )
        consistency = t.consistency_proof(earlier.tree_size, signed.tree_size)
        verify_consistency(consistency, earlier.root, signed.root)
        _say(
            f"5. consistency proof {earlier.tree_size} -> {signed.tree_size}: the earlier signed "
            f"log is a prefix of the later one"
        )
        events = t.read_events(admissions)
        _say(f"6. read back {len(events)} admissions events, decrypted: {events[1].decode()!r}")
        report = db.verify()
        _say(f"7. full verification: ok={report.ok}, {report.records_checked} records")
    stored = b"".join(p.read_bytes() for p in database_dir.rglob("*") if p.is_file())
    if secret in stored or bulletin not in stored:
        _say("8. NOT ENCRYPTED AS PROMISED: the PHI plaintext is on disk")
        return 1
    _say(
        "8. byte search of the data folder: the PHI event is not on disk in plaintext; "
        "the PUBLIC one is"
    )

    # Flip one byte inside the PUBLIC event on disk, as a failing disk or an editor might.
    segment = next(p for p in database_dir.rglob("*.vlog") if bulletin in p.read_bytes())
    data = bytearray(segment.read_bytes())
    target = data.find(bulletin)
    data[target] ^= 0x20
    segment.write_bytes(bytes(data))
    _say(f"9. flipped one byte at {segment.name}:{target} ('ward' -> 'Ward')")
    with verity.open(database_dir) as db:
        report = db.verify()
    if report.ok or report.first_bad is None:
        _say("10. NOT DETECTED: the flipped byte went unnoticed")
        return 1
    bad = report.first_bad
    _say(f"10. detected: tenant {int(bad.tenant)}, record {bad.record_offset}: {bad.reason}")
    return 0


def _leaf_holding(t: verity.TenantHandle, needle: bytes, tree_size: int) -> int:
    """The log position whose record bytes contain `needle` (a PUBLIC event)."""
    for leaf_index in range(tree_size):
        if needle in t.inclusion_proof(leaf_index, tree_size).leaf:
            return leaf_index
    raise AssertionError("the PUBLIC event is in no leaf")


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
