"""The `verity` command line: the README's demo and `verity verify`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import verity
from verity._cli import main


def test_demo_proves_records_and_catches_a_flipped_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "verified with the public key alone" in out
    assert "a retry with the same idempotency id got offset 0 and appended nothing" in out
    assert "(the PUBLIC event 'ward 3 reopens on monday', in the leaf)" in out
    assert "the PHI event is not on disk in plaintext" in out
    assert "3. SQL: table 'beds'" in out and "as of position" in out
    assert "11. detected: tenant 1, record" in out
    # The demo can run again in the same folder and tells the same story.
    assert main(["demo", str(tmp_path)]) == 0
    assert "11. detected" in capsys.readouterr().out


def test_verify_fails_on_the_demo_log_it_damaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["demo", str(tmp_path)])
    capsys.readouterr()
    [log_dir] = [p for p in (tmp_path / "db").rglob("log") if p.is_dir()]
    assert main(["verify", str(log_dir)]) == 1
    assert "FAILED: corruption (record offset" in capsys.readouterr().out


def test_a_damaged_tenant_is_never_signed_over_and_takes_no_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["demo", str(tmp_path)])
    capsys.readouterr()
    database = tmp_path / "db"
    [log_dir] = [p for p in database.rglob("log") if p.is_dir()]
    log_before = _contents(log_dir)
    assert main(["checkpoint", str(database), "--tenant", "1"]) == 1
    assert "FAILED: not signed: tenant 1 record" in capsys.readouterr().out
    assert _contents(log_dir) == log_before  # nothing appended, nothing signed
    # The damage is recorded: a later writer refuses until an operator acts.
    [marker] = list(database.rglob("DAMAGED"))
    assert oct(marker.stat().st_mode & 0o777) == "0o600"
    with verity.open(database) as db:
        t = db.tenant(verity.TenantId(1))
        with pytest.raises(verity.errors.CorruptionError, match="accepts no writes"):
            t.checkpoint()
        with pytest.raises(verity.errors.CorruptionError, match="accepts no writes"):
            t.create_stream("more", verity.DataClass.PUBLIC)
    assert _contents(log_dir) == log_before


def test_verify_passes_on_an_intact_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from verity.storage import open_log

    with open_log(tmp_path / "log") as log:
        log.append_batch([b"a", b"b", b"c"])
    assert main(["verify", str(tmp_path / "log")]) == 0
    assert "ok: 4 records verified" in capsys.readouterr().out


def test_verify_refuses_a_folder_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["verify", str(missing)]) == 2
    assert "is not a database or log folder" in capsys.readouterr().out
    assert not missing.exists()


def test_sql_statements_time_travel_and_proofs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "db")
    assert (
        main(
            [
                "sql",
                db,
                "--tenant",
                "2",
                "--create",
                "-c",
                "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)",
                "-c",
                "INSERT INTO t VALUES (1, 'ada'), (2, 'bob')",
                "-c",
                "UPDATE t SET name = 'eve' WHERE id = 2",
                "-c",
                "SELECT * FROM t",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "ok: 2 rows; log position 2" in out and "2  | eve" in out
    assert main(["sql", db, "--tenant", "2", "--at", "2", "-c", "SELECT name FROM t"]) == 0
    assert "bob" in capsys.readouterr().out
    assert main(["sql", db, "--tenant", "2", "-c", "SELECT * FROM missing"]) == 1
    assert "error: unknown_table" in capsys.readouterr().out
    # A proof is checked against the last signed checkpoint in the log (here the one
    # the clean close wrote); it never makes one: reads write nothing.
    before = _contents(tmp_path / "db")
    assert main(["proof", db, "--tenant", "2", "--leaf", "2", "--old-size", "1"]) == 0
    out = capsys.readouterr().out
    assert '"inclusion"' in out and '"consistency"' in out and "checked:" in out
    assert _contents(tmp_path / "db") == before
    first_size = json.loads(out[: out.rindex("}") + 1])["checkpoint"]["tree_size"]
    assert main(["checkpoint", db, "--tenant", "2"]) == 0
    assert '"signature"' in capsys.readouterr().out
    assert main(["proof", db, "--tenant", "2", "--leaf", "2"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[: out.rindex("}") + 1])["checkpoint"]["tree_size"] > first_size
    assert main(["verify", db]) == 0
    out = capsys.readouterr().out
    assert "ok:" in out and "signed through" in out


def _contents(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _tree(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_reads_of_a_wrong_path_or_tenant_create_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["verify", str(empty)]) != 0
    assert _tree(empty) == []
    missing = tmp_path / "no" / "such"
    assert main(["sql", str(missing), "--tenant", "1", "-c", "SELECT * FROM t"]) == 1
    assert main(["checkpoint", str(missing), "--tenant", "1"]) == 1
    assert main(["proof", str(missing), "--tenant", "1", "--leaf", "0"]) == 1
    assert not (tmp_path / "no").exists()
    db = tmp_path / "db"
    table = "CREATE TABLE {} (id BIGINT PRIMARY KEY)"
    assert main(["sql", str(db), "--tenant", "2", "--create", "-c", table.format("t")]) == 0
    assert main(["sql", str(db), "--tenant", "2", "-c", table.format("u")]) == 0
    before = _tree(db)
    assert main(["sql", str(db), "--tenant", "99", "-c", "SELECT * FROM t"]) == 1
    assert main(["sql", str(db), "--tenant", "99", "-c", table.format("t")]) == 1
    assert main(["checkpoint", str(db), "--tenant", "99"]) == 1
    assert "tenant 99 not found" in capsys.readouterr().out
    assert main(["verify", str(tmp_path)]) != 0  # the parent folder is not a database
    assert _tree(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "empty"]


def test_a_proof_without_a_signed_checkpoint_fails_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = verity.open(tmp_path / "db", create=True)
    t = db.tenant(verity.TenantId(1), create=True)
    t.create_stream("s", verity.DataClass.PUBLIC)
    db._abandon()  # a crash: no shutdown checkpoint
    before = _contents(tmp_path / "db")
    assert main(["proof", str(tmp_path / "db"), "--tenant", "1", "--leaf", "1"]) == 1
    assert "no signed checkpoint yet" in capsys.readouterr().out
    assert _contents(tmp_path / "db") == before
