"""The certifier's boundary table: public entry points refuse out-of-domain arguments by name."""

from __future__ import annotations

from pathlib import Path

import pytest

import verity.storage._log as storage_log
from verity_conformance import boundary
from verity_conformance.__main__ import main


def test_the_installed_implementation_refuses_every_case(tmp_path: Path) -> None:
    checked, failures = boundary.run(tmp_path)
    assert failures == []
    assert checked == len(boundary.cases()) > 250


def test_an_entry_point_that_lets_a_negative_offset_through_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lenient(name: str, value: object) -> int:
        if not isinstance(value, int):
            raise storage_log.InvalidArgument(name, value, "must be an int")
        return value  # negatives and bools pass: the bug the table is for

    monkeypatch.setattr(storage_log, "_check_count", lenient)
    _, failures = boundary.run(tmp_path)
    assert any(f.startswith("Log.read(offset=-1)") for f in failures), failures
    assert any(f.startswith("Log.read(offset=True)") for f in failures), failures


def test_the_runner_checks_the_boundary_and_fails_on_a_failed_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    vectors = tmp_path / "vectors"
    vectors.mkdir()
    one = "log-bad-arguments.json"
    (vectors / one).write_bytes((Path(boundary.__file__).parent / "vectors" / one).read_bytes())
    run = ["run", "--vectors-only", "--vectors", str(vectors)]
    assert main(run) == 0
    assert "boundary: " in capsys.readouterr().out
    monkeypatch.setattr(storage_log, "_check_count", lambda name, value: value)
    assert main(run) == 1
    out = capsys.readouterr().out
    assert "FAIL boundary Log.read(offset=-1)" in out
