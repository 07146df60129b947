"""Signatures in the folder, the witness, and what `verify()` reports (issue 10 §3, §8).

The attacks are the ones the issue names: a keyless rewrite of a PUBLIC event
(every CRC, chain hash and checkpoint statement recomputed, derived files
deleted), a rollback (the log cut back at a record boundary, checkpoints and
durability mark included), and a fork by a key holder.
"""

from __future__ import annotations

import hashlib
import shutil
import zlib
from pathlib import Path

import pytest

import verity
from verity import CheckpointPolicy, DataClass, SignedCheckpoint, StreamId, TenantId
from verity.crypto import CHAIN_DOMAIN
from verity.proofs import verify_consistency, verify_inclusion, verify_signed_checkpoint
from verity.storage import open_log
from verity.storage._durable import encode_mark
from verity_conformance.drivers import forge_keyless

T1 = TenantId(1)
NOW = 1_767_225_600_000_000_000


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        self.now += 1_000
        return self.now


def tenant_folder(database: Path) -> Path:
    [folder] = [p for p in database.rglob("tenant-1") if p.is_dir()]
    return folder


def fill(database: Path, **options: object) -> tuple[StreamId, SignedCheckpoint]:
    """A tenant with a PUBLIC ledger; returns its stream and a checkpoint handed out."""
    with verity.open(database, create=True, clock=Clock(), **options) as db:  # type: ignore[arg-type]
        t = db.tenant(T1, create=True)
        ledger = t.create_stream("ledger", DataClass.PUBLIC)
        t.append(ledger, [b"amount=100"])
        t.append(ledger, [b"amount=250"])
        handed_out = t.checkpoint()
        t.append(ledger, [b"amount=300"])
        return ledger, handed_out


def rewrite_log(log_dir: Path, records: list[bytes]) -> None:
    """Write `records` as the log's only segment, with a fitting durability mark; drop
    every derived file (what an attacker with the folder and no key can do)."""
    for path in log_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name not in ("recovery.vrec",):
            path.unlink()
    frames = b"".join(
        len(r).to_bytes(4, "big") + zlib.crc32(r).to_bytes(4, "big") + r for r in records
    )
    (log_dir / f"{0:020d}.vlog").write_bytes(frames)
    head = hashlib.sha256(CHAIN_DOMAIN + records[-1]).digest() if records else bytes(32)
    (log_dir / "durable.vmark").write_bytes(encode_mark(len(records), head))


def log_records(log_dir: Path) -> list[bytes]:
    with open_log(log_dir, read_only=True) as log:
        return [log.read(i).record_bytes() for i in range(log.size)]


def drop_derived(tenant: Path) -> None:
    for name in ("kernel.vsnap", "store"):
        path = tenant / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def test_every_checkpoint_is_signed_in_the_folder_and_proves_without_secrets(
    tmp_path: Path,
) -> None:
    database = tmp_path / "db"
    _, handed_out = fill(database)
    # An auditor gets the folder and the public key: no master key, no signing key.
    copy = tmp_path / "copy"
    shutil.copytree(database, copy)
    (copy / "master.key").unlink()
    (tenant_folder(copy) / "signing.key").unlink()
    with open_log(tenant_folder(copy) / "log", read_only=True) as log:
        assert log.verify() == log.size
        stored = log.signed_checkpoint(handed_out.tree_size)
        assert stored == handed_out
        public_key = log.pinned_key
        assert public_key is not None
        verify_signed_checkpoint(stored, public_key)
        verify_inclusion(log.inclusion_proof(2, stored.tree_size), stored.root)
        last = log.signed_checkpoint(log.signed_through())
        verify_signed_checkpoint(last, public_key)
        verify_consistency(
            log.consistency_proof(stored.tree_size, last.tree_size), stored.root, last.root
        )


def test_a_keyless_rewrite_of_a_public_event_is_reported(tmp_path: Path) -> None:
    database = tmp_path / "db"
    ledger, _ = fill(database)
    tenant = tenant_folder(database)
    records = log_records(tenant / "log")
    [target] = [i for i, r in enumerate(records) if b"amount=100" in r]
    payload = records[target][53:].replace(b"amount=100", b"amount=900")
    rewrite_log(tenant / "log", forge_keyless(records, target, payload))
    drop_derived(tenant)
    with verity.open(database, read_only=True) as db:
        assert db.tenant(T1).read_events(ledger)[0] == b"amount=900"  # served, but:
        report = db.verify()
    assert not report.ok
    assert report.first_bad is not None
    assert "signature" in report.first_bad.reason
    assert report.first_bad.record_offset is not None
    assert report.first_bad.record_offset > target


def test_a_rollback_is_caught_by_the_witness_and_by_an_auditor(tmp_path: Path) -> None:
    database = tmp_path / "db"
    keys = tmp_path / "keys"  # the signing key and witness live outside the folder
    ledger, handed_out = fill(database, signing_key_dir=keys)
    with verity.open(database, signing_key_dir=keys, clock=Clock()) as db:
        t = db.tenant(T1)
        t.append(ledger, [b"amount=999"])
        later = t.checkpoint()
    assert later.tree_size > handed_out.tree_size
    # The attacker cuts the log back to just after the first checkpoint's record.
    tenant = tenant_folder(database)
    records = log_records(tenant / "log")
    rewrite_log(tenant / "log", records[: handed_out.tree_size + 1])
    drop_derived(tenant)
    # The database's own witness (beside the key) says a later checkpoint was handed out.
    with verity.open(database, signing_key_dir=keys, read_only=True) as db:
        report = db.verify()
    assert not report.ok and report.first_bad is None
    (found,) = report.tenants
    assert any("rollback" in promise for promise in found.broken_promises)
    # An auditor holding the later checkpoint, with neither keys nor witness, sees it too.
    with verity.open(database, read_only=True) as db:
        assert db.verify().ok  # the folder alone cannot tell
        report = db.verify(trusted=[(T1, later)])
    assert not report.ok
    assert "rollback" in report.tenants[0].broken_promises[0]
    assert f"covers {later.tree_size} records" in report.tenants[0].broken_promises[0]


def test_a_fork_by_a_key_holder_is_caught_by_an_earlier_checkpoint(tmp_path: Path) -> None:
    database = tmp_path / "db"
    keys = tmp_path / "keys"
    ledger, handed_out = fill(database, signing_key_dir=keys)
    with verity.open(database, signing_key_dir=keys, clock=Clock()) as db:
        later = db.tenant(T1).checkpoint()
    # The key holder cuts back behind `later`, writes other records and signs anew;
    # a fresh witness hides the old checkpoints from the folder.
    tenant = tenant_folder(database)
    records = log_records(tenant / "log")
    rewrite_log(tenant / "log", records[: handed_out.tree_size + 1])
    drop_derived(tenant)
    next(keys.glob("*.witness")).unlink()
    with verity.open(database, signing_key_dir=keys, clock=Clock()) as db:
        t = db.tenant(T1)
        for amount in range(5):
            t.append(ledger, [f"amount={amount}".encode()])
        t.checkpoint()
        report = db.verify(trusted=[(T1, handed_out), (T1, later)])
    assert not report.ok
    (promise,) = report.tenants[0].broken_promises
    assert promise.startswith("fork:")


def test_signing_key_dir_keeps_the_key_and_witness_out_of_the_folder(tmp_path: Path) -> None:
    database = tmp_path / "db"
    keys = tmp_path / "keys"
    fill(database, signing_key_dir=keys)
    assert not list(database.rglob("signing.key"))
    assert not list(database.rglob("*.witness"))
    key = keys / "tenant-1.signing.key"
    witness = keys / "tenant-1.checkpoints.witness"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert oct(witness.stat().st_mode & 0o777) == "0o600"
    with verity.open(database, read_only=True) as db:
        report = db.verify()
        assert report.ok
        (found,) = report.tenants
        assert found.public_key is not None and found.signed_through > 0
        assert found.not_yet_signed == found.records_checked - found.signed_through
    # Without its key the tenant opens, signs nothing and takes no write.
    with verity.open(database) as db, pytest.raises(verity.errors.KeyError_, match="missing"):
        db.tenant(T1).checkpoint()
    with pytest.raises(verity.errors.InvalidArgument, match="signing_key_dir"):
        verity.open(database, signing_key_dir=key)


def test_a_foreign_signing_key_signs_nothing_and_verify_says_why(tmp_path: Path) -> None:
    database = tmp_path / "db"
    fill(database)
    key_path = tenant_folder(database) / "signing.key"
    key_path.write_bytes(bytes(range(32)))  # any 32 bytes load as a key: not the pinned one
    with verity.open(database) as db:
        t = db.tenant(T1)
        size = t.log_size()
        with pytest.raises(verity.errors.KeyError_, match="pins"):
            t.checkpoint()
        with pytest.raises(verity.errors.KeyError_, match="pins"):
            t.create_stream("more", DataClass.PUBLIC)
        assert t.log_size() == size
        report = db.verify()
    assert report.ok
    assert report.tenants[0].key_problem is not None
    assert "pins" in report.tenants[0].key_problem


def test_records_after_the_last_signed_checkpoint_are_not_yet_signed(tmp_path: Path) -> None:
    database = tmp_path / "db"
    policy = CheckpointPolicy(on_shutdown=False)
    db = verity.open(database, create=True, clock=Clock(), checkpoint_policy=policy)
    try:
        t = db.tenant(T1, create=True)
        stream = t.create_stream("s", DataClass.PUBLIC)
        signed = t.checkpoint()
        t.append(stream, [b"a"])
        t.append(stream, [b"b"])
        report = db.verify()
    finally:
        db.close()
    (found,) = report.tenants
    assert found.signed_through == signed.tree_size
    assert found.not_yet_signed == found.records_checked - signed.tree_size == 3


def test_a_reader_beside_a_live_writer_sees_no_rollback(tmp_path: Path) -> None:
    database = tmp_path / "db"
    ledger, _ = fill(database)
    with verity.open(database, clock=Clock()) as writer:
        t = writer.tenant(T1)
        with verity.open(database, read_only=True) as reader:
            reader.tenant(T1)  # its view of the log is taken now
            t.append(ledger, [b"amount=1"])
            t.checkpoint()  # witnessed, beyond the reader's view
            report = reader.verify()
    assert report.ok, report
    assert report.tenants[0].broken_promises == ()


def test_a_deleted_tenant_is_caught_by_the_witness_outside_the_folder(tmp_path: Path) -> None:
    database = tmp_path / "db"
    keys = tmp_path / "keys"
    fill(database, signing_key_dir=keys)
    with verity.open(database, signing_key_dir=keys, clock=Clock()) as db:
        db.tenant(TenantId(2), create=True)  # another tenant, which stays
    shutil.rmtree(tenant_folder(database))
    with verity.open(database, signing_key_dir=keys, read_only=True) as db:
        assert db.tenants() == [TenantId(2)]
        report = db.verify()
    assert not report.ok
    gone = [found for found in report.tenants if found.tenant == T1]
    assert gone and "tenant 1 is gone" in gone[0].broken_promises[0]
