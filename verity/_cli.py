"""The `verity` command line.

- `verity demo DIR`: the main job on the embedded default, through the SDK:
  a tenant with an encrypted PHI stream and a PUBLIC one, idempotent appends,
  signed checkpoints, inclusion and consistency proofs, a byte search showing
  the PHI plaintext is not on disk, then one flipped byte that is caught.
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

import verity
from verity._layout import DATABASE_FILE
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
        create=True,
        sync_policy=SyncPolicy.every_record(),
        checkpoint_policy=CheckpointPolicy(every_n_records=3),
    ) as db:
        t = db.tenant(TenantId(1), create=True)
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
        t.execute("CREATE TABLE beds (bed BIGINT PRIMARY KEY, ward TEXT NOT NULL, patient TEXT)")
        filled = t.execute(
            "INSERT INTO beds VALUES (1, 'cardiology', 'p1041'), (2, 'cardiology', NULL), "
            "(3, 'oncology', 'p2203')"
        )
        moved = t.execute("UPDATE beds SET patient = ? WHERE bed = ?", ["p3310", 2])
        now = t.query("SELECT bed, patient FROM beds WHERE ward = 'cardiology' ORDER BY bed")
        then = t.query_at(
            "SELECT bed, patient FROM beds WHERE ward = 'cardiology' ORDER BY bed",
            [],
            int(filled.offset),
        )
        _say(
            f"3. SQL: table 'beds', 3 rows inserted (log position {int(filled.offset)}), "
            f"bed 2 assigned (position {int(moved.offset)}); now {now.rows}, "
            f"as of position {int(filled.offset)} {then.rows}"
        )
        signed = t.checkpoint()
        public_key = t.public_key()
        verify_signed_checkpoint(earlier, public_key)
        verify_signed_checkpoint(signed, public_key)
        _say(
            f"4. signed checkpoint, stored in the log: tree_size={signed.tree_size} "
            f"root={signed.root.hex()[:16]}... verified with the public key alone"
        )
        bulletin_leaf = _leaf_holding(t, bulletin, signed.tree_size)
        proof = t.inclusion_proof(bulletin_leaf, signed.tree_size)
        verify_inclusion(proof, signed.root)
        update_proof = t.inclusion_proof(int(moved.offset), signed.tree_size)
        verify_inclusion(update_proof, signed.root)
        _say(
            f"5. inclusion proofs of log records {bulletin_leaf} (the PUBLIC event "
            f"{bulletin.decode()!r}, in the leaf) and {int(moved.offset)} (the UPDATE) check "
            f"against the signed root"
        )
        consistency = t.consistency_proof(earlier.tree_size, signed.tree_size)
        verify_consistency(consistency, earlier.root, signed.root)
        _say(
            f"6. consistency proof {earlier.tree_size} -> {signed.tree_size}: the earlier signed "
            f"log is a prefix of the later one"
        )
        events = t.read_events(admissions)
        _say(f"7. read back {len(events)} admissions events, decrypted: {events[1].decode()!r}")
        report = db.verify()
        _say(f"8. full verification: ok={report.ok}, {report.records_checked} records")
    stored = b"".join(p.read_bytes() for p in database_dir.rglob("*") if p.is_file())
    if secret in stored or bulletin not in stored:
        _say("9. NOT ENCRYPTED AS PROMISED: the PHI plaintext is on disk")
        return 1
    _say(
        "9. byte search of the data folder: the PHI event is not on disk in plaintext; "
        "the PUBLIC one is"
    )

    # Flip one byte inside the PUBLIC event on disk, as a failing disk or an editor might.
    segment = next(p for p in database_dir.rglob("*.vlog") if bulletin in p.read_bytes())
    data = bytearray(segment.read_bytes())
    target = data.find(bulletin)
    data[target] ^= 0x20
    segment.write_bytes(bytes(data))
    _say(f"10. flipped one byte at {segment.name}:{target} ('ward' -> 'Ward')")
    with verity.open(database_dir, read_only=True) as db:
        report = db.verify()
    if report.ok or report.first_bad is None:
        _say("11. NOT DETECTED: the flipped byte went unnoticed")
        return 1
    bad = report.first_bad
    _say(f"11. detected: tenant {int(bad.tenant)}, record {bad.record_offset}: {bad.reason}")
    return 0


def _leaf_holding(t: verity.TenantHandle, needle: bytes, tree_size: int) -> int:
    """The log position whose record bytes contain `needle` (a PUBLIC event)."""
    for leaf_index in range(tree_size):
        if needle in t.inclusion_proof(leaf_index, tree_size).leaf:
            return leaf_index
    raise AssertionError("the PUBLIC event is in no leaf")


def _is_database(path: Path) -> bool:
    return (path / DATABASE_FILE).is_file()


def _tenant_line(found: verity.TenantVerification) -> str:
    """One tenant's verification: how much is signed, and anything wrong beside damage."""
    if found.public_key is None:
        line = f"tenant {int(found.tenant)}: {found.records_checked} records, unsigned log"
    else:
        line = (
            f"tenant {int(found.tenant)}: {found.records_checked} records, signed through "
            f"{found.signed_through}, {found.not_yet_signed} not yet signed; key "
            f"{found.public_key.hex()[:16]}..."
        )
    for promise in found.broken_promises:
        line += f"\n  BROKEN PROMISE: {promise}"
    if found.key_problem is not None:
        line += f"\n  key: {found.key_problem}"
    return line


def verify(path: Path) -> int:
    """Verify a database folder (every tenant) or a bare log folder, end to end."""
    if not path.is_dir():
        # Opening would create an empty log: verifying nothing must not look like success.
        _say(f"FAILED: {path} is not a database or log folder")
        return 2
    if _is_database(path):
        with verity.open(path, read_only=True) as db:
            progress = _Progress("verify")
            report = db.verify(progress=lambda tenant, done, total: progress(done, total))
        for tenant_report in report.tenants:
            _say(_tenant_line(tenant_report))
        if report.ok:
            tenants = report.tenants_checked
            _say(
                f"ok: {report.records_checked} records in {tenants} "
                f"tenant{'s' if tenants != 1 else ''}"
            )
            return 0
        bad = report.first_bad
        if bad is not None:
            _say(f"FAILED: tenant {int(bad.tenant)}, record {bad.record_offset}: {bad.reason}")
        else:
            _say("FAILED: a signed checkpoint handed out is no longer kept by the log")
        return 1
    try:
        with open_log(path, read_only=True) as log:
            checked = log.verify(progress=_Progress("verify"))
            _say(
                f"ok: {checked} records verified; head {log.head_hash.hex()}; "
                f"generation {int(log.generation)}; {len(log.recoveries())} recoveries"
            )
    except VerityError as failure:
        _say(f"FAILED: {failure}")
        return 1
    return 0


def _format_value(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return "x'" + value.hex() + "'"
    return str(value)


def _print_rows(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[_format_value(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    _say(" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    _say("-+-".join("-" * w for w in widths))
    for row in cells:
        _say(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    _say(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def _run_statement(t: verity.TenantHandle, statement: str, at: int | None) -> bool:
    """Run one statement and print its answer; False when it failed."""
    text = statement.strip().rstrip(";").strip()
    if not text:
        return True
    try:
        head = text.split(None, 1)[0].upper()
        if head == "EXPLAIN":
            _say(t.explain(text.split(None, 1)[1]))
        elif head == "SELECT":
            result = t.query(text) if at is None else t.query_at(text, [], at)
            _print_rows(result.columns, result.rows)
            _say(f"as of log position {result.position}")
        else:
            receipt = t.execute(text)
            _say(
                f"ok: {receipt.rows_affected} rows; log position {int(receipt.offset)}, "
                f"record hash {receipt.hash.hex()}"
            )
    except VerityError as failure:
        _say(f"error: {failure}")
        return False
    return True


def _is_read(statement: str) -> bool:
    words = statement.strip().split(None, 1)
    return not words or words[0].upper() in ("SELECT", "EXPLAIN")


def sql(
    path: Path, tenant: int, commands: list[str] | None, at: int | None, create: bool = False
) -> int:
    """`verity sql`: run `-c` statements, or an interactive shell reading stdin."""
    # Statements given with -c that only read open the database read-only: a read,
    # even of a mistyped path or tenant, never creates or changes anything.
    reads_only = bool(commands) and all(_is_read(command) for command in commands or [])
    create = create and not reads_only
    with verity.open(path, read_only=reads_only, create=create) as db:
        t = db.tenant(TenantId(tenant), create=create)
        if commands:
            return 0 if all([_run_statement(t, c, at) for c in commands]) else 1
        interactive = sys.stdin.isatty()
        if interactive:
            _say(f"VerityDB {path} tenant {tenant}. End statements with ';'. \\q quits.")
        pending = ""
        failed = False
        while True:
            if interactive:
                sys.stdout.write("verity> " if not pending else "   ...> ")
                sys.stdout.flush()
            line = sys.stdin.readline()
            if not line or line.strip() in ("\\q", "quit", "exit"):
                break
            pending += line
            if pending.rstrip().endswith(";"):
                failed |= not _run_statement(t, pending, at)
                pending = ""
        if pending.strip():
            failed |= not _run_statement(t, pending, at)
        return 1 if failed else 0


def _checkpoint_json(signed: verity.SignedCheckpoint, public_key: bytes) -> dict[str, object]:
    return {
        "tree_size": signed.tree_size,
        "root": signed.root.hex(),
        "chain_hash": signed.chain_hash.hex(),
        "timestamp": signed.timestamp,
        "key_id": signed.key_id.hex(),
        "signature": signed.signature.hex(),
        "public_key": public_key.hex(),
    }


def checkpoint(path: Path, tenant: int) -> int:
    """`verity checkpoint`: verify the log, then append a signed checkpoint and print it as JSON.

    A log with damage is never signed over: the damage is printed (and
    recorded, so the tenant takes no writes until an operator acts) instead.
    """
    with verity.open(path) as db:
        t = db.tenant(TenantId(tenant), create=False)
        shown = _Progress("verify")
        report = db.verify(progress=lambda _, done, total: shown(done, total))
        if report.first_bad is not None:
            bad = report.first_bad
            _say(
                f"FAILED: not signed: tenant {int(bad.tenant)} record {bad.record_offset}: "
                f"{bad.reason} ({bad.file})"
            )
            return 1
        signed = t.checkpoint()
        public_key = t.public_key()
        verify_signed_checkpoint(signed, public_key)
        _say(json.dumps(_checkpoint_json(signed, public_key), indent=1))
    return 0


def proof(path: Path, tenant: int, leaf: int | None, old_size: int | None) -> int:
    """`verity proof`: print and check proofs against the tenant's last signed checkpoint.

    Opens read-only and writes nothing: the checkpoint is the one stored in
    the log (`verity checkpoint` makes a new one).
    """
    with verity.open(path, read_only=True) as db:
        t = db.tenant(TenantId(tenant), create=False)
        signed = t.latest_checkpoint()
        if signed is None:
            _say(
                f"FAILED: tenant {tenant} has no signed checkpoint yet; "
                "make one with `verity checkpoint`"
            )
            return 1
        public_key = t.public_key()
        verify_signed_checkpoint(signed, public_key)
        document: dict[str, object] = {"checkpoint": _checkpoint_json(signed, public_key)}
        try:
            if leaf is not None:
                inclusion = t.inclusion_proof(leaf, signed.tree_size)
                verify_inclusion(inclusion, signed.root)
                document["inclusion"] = {
                    "leaf_index": inclusion.leaf_index,
                    "tree_size": inclusion.tree_size,
                    "leaf": inclusion.leaf.hex(),
                    "path": [node.hex() for node in inclusion.path],
                }
            if old_size is not None:
                consistency = t.consistency_proof(old_size, signed.tree_size)
                document["consistency"] = {
                    "old_size": consistency.old_size,
                    "new_size": consistency.new_size,
                    "path": [node.hex() for node in consistency.path],
                }
        except VerityError as failure:
            _say(f"FAILED: {failure}")
            return 1
        _say(json.dumps(document, indent=1))
        _say("checked: the signature, and every proof against the signed root")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verity", description="VerityDB command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="run the demo in a folder")
    demo_parser.add_argument("directory", type=Path)
    verify_parser = commands.add_parser(
        "verify", help="verify a database (every tenant) or a log folder, end to end"
    )
    verify_parser.add_argument("path", type=Path)
    sql_parser = commands.add_parser("sql", help="run SQL (-c) or an interactive shell")
    sql_parser.add_argument("path", type=Path)
    sql_parser.add_argument("--tenant", type=int, required=True)
    sql_parser.add_argument("-c", "--command", action="append", dest="commands")
    sql_parser.add_argument("--at", type=int, default=None, help="answer as of a log position")
    sql_parser.add_argument(
        "--create",
        action="store_true",
        help="make the database and the tenant if they do not exist (never for reads)",
    )
    checkpoint_parser = commands.add_parser("checkpoint", help="append and sign a checkpoint")
    checkpoint_parser.add_argument("path", type=Path)
    checkpoint_parser.add_argument("--tenant", type=int, required=True)
    proof_parser = commands.add_parser("proof", help="print and check RFC 9162 proofs")
    proof_parser.add_argument("path", type=Path)
    proof_parser.add_argument("--tenant", type=int, required=True)
    proof_parser.add_argument("--leaf", type=int, default=None, help="inclusion of this record")
    proof_parser.add_argument("--old-size", type=int, default=None, help="consistency from size")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            return demo(args.directory)
        if args.command == "sql":
            return sql(args.path, args.tenant, args.commands, args.at, args.create)
        if args.command == "checkpoint":
            return checkpoint(args.path, args.tenant)
        if args.command == "proof":
            if args.leaf is None and args.old_size is None:
                parser.error("proof needs --leaf and/or --old-size")
            return proof(args.path, args.tenant, args.leaf, args.old_size)
        return verify(args.path)
    except VerityError as failure:
        _say(f"error: {failure}")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
